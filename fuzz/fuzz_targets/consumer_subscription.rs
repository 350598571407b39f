//! Fuzz target: the consumer protocol subscription a member sends as JoinGroup protocol
//! metadata, as evident decodes it. Peer bytes: must refuse, never panic, and never allocate
//! beyond what the input can describe.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = evident_kafka::consumer_protocol::decode_subscription(data);
});
