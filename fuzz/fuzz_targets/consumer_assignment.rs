//! Fuzz target: the consumer protocol assignment a group leader hands in with SyncGroup, as
//! evident decodes it to show each member's partitions. Peer bytes: must refuse, never panic,
//! and never allocate beyond what the input can describe.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = evident_kafka::consumer_protocol::decode_assignment(data);
});
