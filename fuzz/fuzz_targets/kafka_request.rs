//! Fuzz target: a Kafka request frame, as a peer sends it (without the size prefix), through
//! the header and body decoders of every API evident serves. Must refuse, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

/// The server's allocator, so the fuzzer sees what the server would do with a request that
/// announces a huge array (see `evident_kafka::alloc_guard`).
#[global_allocator]
static ALLOCATOR: evident_kafka::alloc_guard::GuardedAlloc = evident_kafka::alloc_guard::GuardedAlloc;

fuzz_target!(|data: &[u8]| {
    let _ = evident_kafka::request::decode_request(data);
});
