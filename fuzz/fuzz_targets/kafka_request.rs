//! Fuzz target: a Kafka request frame, as a peer sends it (without the size prefix), through
//! the header and body decoders of every API evident serves. Must refuse, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = evident_kafka::request::decode_request(data);
});
