//! Fuzz target: a produced record batch through the CRC check, bounded decompression (gzip,
//! snappy, lz4, zstd) and record validation that Produce applies. Must refuse, never panic.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = evident_kafka::request::check_batch(data, 1 << 20);
});
