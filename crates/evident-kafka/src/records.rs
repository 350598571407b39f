//! Produced record batches on their way to the log. An uncompressed v2 batch is appended as
//! the client sent it (the log checks its CRC and every record). A compressed one (gzip,
//! snappy, lz4, zstd) is checked against its CRC, decompressed within a bound, and rewritten as
//! the same batch uncompressed: same header fields (producer id, epoch, base sequence,
//! timestamps, offsets deltas), records byte for byte, a new length and CRC. The log stores
//! uncompressed batches because it indexes every record's key and headers (streams, event ids,
//! expected versions); Fetch then serves them as stored.

use std::io::Read;

use evident_core::batch::RecordBatch;

use crate::error::KafkaError;
use kafka_protocol::error::ResponseError;

/// Size of a v2 batch header; the records follow it.
const HEADER_LEN: usize = 61;
const LENGTH_OFFSET: usize = 8;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;

fn corrupt(message: impl Into<String>) -> KafkaError {
    KafkaError::new(ResponseError::CorruptMessage, message)
}

/// The batch to append for a produced batch: the same bytes when uncompressed, else the batch
/// rewritten uncompressed. `max` bounds the decompressed size.
pub fn to_stored(bytes: &[u8], max: usize) -> Result<std::borrow::Cow<'_, [u8]>, KafkaError> {
    let batch = RecordBatch::parse_exact(bytes).map_err(|e| corrupt(format!("evident: invalid record batch: {e}")))?;
    let attributes = batch.header().attributes;
    let codec = attributes & 0x07;
    if codec == 0 {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    let compressed = &bytes[HEADER_LEN..];
    let records = decompress(codec, compressed, max)?;
    let mut out = Vec::with_capacity(HEADER_LEN + records.len());
    out.extend_from_slice(&bytes[..HEADER_LEN]);
    out.extend_from_slice(&records);
    let batch_length = i32::try_from(out.len() - 12)
        .map_err(|_| KafkaError::new(ResponseError::MessageTooLarge, "evident: decompressed batch too large"))?;
    out[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&batch_length.to_be_bytes());
    let plain = attributes & !0x07;
    out[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&plain.to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES_OFFSET..]);
    out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(std::borrow::Cow::Owned(out))
}

fn too_large(max: usize) -> KafkaError {
    KafkaError::new(ResponseError::MessageTooLarge, format!("evident: the batch decompresses to more than {max} bytes"))
}

/// Reads all of `reader`, failing once more than `max` bytes come out.
fn read_bounded(reader: impl Read, max: usize, what: &str) -> Result<Vec<u8>, KafkaError> {
    let mut out = Vec::new();
    let mut limited = reader.take(max as u64 + 1);
    limited.read_to_end(&mut out).map_err(|e| corrupt(format!("evident: {what} data is invalid: {e}")))?;
    if out.len() > max {
        return Err(too_large(max));
    }
    Ok(out)
}

/// Kafka's Java client writes snappy in xerial's framing: this header, then blocks of a
/// big-endian length and raw snappy. librdkafka writes the same; plain raw snappy is accepted
/// too.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

fn snappy_block(block: &[u8], out: &mut Vec<u8>, max: usize) -> Result<(), KafkaError> {
    let len = snap::raw::decompress_len(block).map_err(|e| corrupt(format!("evident: snappy data is invalid: {e}")))?;
    if out.len() + len > max {
        return Err(too_large(max));
    }
    let start = out.len();
    out.resize(start + len, 0);
    snap::raw::Decoder::new()
        .decompress(block, &mut out[start..])
        .map_err(|e| corrupt(format!("evident: snappy data is invalid: {e}")))?;
    Ok(())
}

fn decompress(codec: i16, data: &[u8], max: usize) -> Result<Vec<u8>, KafkaError> {
    match codec {
        1 => read_bounded(flate2::read::GzDecoder::new(data), max, "gzip"),
        2 => {
            let mut out = Vec::new();
            if let Some(mut rest) = data.strip_prefix(XERIAL_MAGIC) {
                // Version and compatible-version fields.
                rest = rest.get(8..).ok_or_else(|| corrupt("evident: snappy framing is truncated"))?;
                while !rest.is_empty() {
                    let len_bytes: [u8; 4] = rest
                        .get(..4)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| corrupt("evident: snappy block length is truncated"))?;
                    let len = u32::from_be_bytes(len_bytes) as usize;
                    let block = rest.get(4..4 + len).ok_or_else(|| corrupt("evident: snappy block is truncated"))?;
                    snappy_block(block, &mut out, max)?;
                    rest = &rest[4 + len..];
                }
            } else {
                snappy_block(data, &mut out, max)?;
            }
            Ok(out)
        }
        3 => {
            let decoder = lz4::Decoder::new(data).map_err(|e| corrupt(format!("evident: lz4 data is invalid: {e}")))?;
            read_bounded(decoder, max, "lz4")
        }
        4 => {
            let decoder = zstd::stream::read::Decoder::new(data)
                .map_err(|e| corrupt(format!("evident: zstd data is invalid: {e}")))?;
            read_bounded(decoder, max, "zstd")
        }
        other => Err(corrupt(format!("evident: unknown compression codec {other}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evident_core::batch::{BatchBuilder, NewRecord};
    use std::io::Write;

    fn plain_batch() -> Vec<u8> {
        let mut b = BatchBuilder::new().idempotent(7, 1, 40);
        for i in 0..3 {
            b.push(NewRecord {
                key: Some(format!("k{i}").into_bytes()),
                value: Some(vec![b'x'; 100]),
                headers: vec![("h".into(), Some(b"v".to_vec()))],
                timestamp_ms: 1_000 + i,
            });
        }
        b.build()
    }

    /// Compresses the records of `plain` with `codec` into a valid compressed batch.
    fn compressed(plain: &[u8], codec: i16, body: Vec<u8>) -> Vec<u8> {
        let mut out = plain[..HEADER_LEN].to_vec();
        out.extend_from_slice(&body);
        let len = (out.len() - 12) as i32;
        out[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&len.to_be_bytes());
        let attrs = i16::from_be_bytes([plain[ATTRIBUTES_OFFSET], plain[ATTRIBUTES_OFFSET + 1]]) | codec;
        out[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attrs.to_be_bytes());
        let crc = crc32c::crc32c(&out[ATTRIBUTES_OFFSET..]);
        out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        out
    }

    #[test]
    fn every_codec_round_trips_to_the_plain_batch() {
        let plain = plain_batch();
        let records = &plain[HEADER_LEN..];
        let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::default());
        gz.write_all(records).expect("gzip");
        let gzip = gz.finish().expect("gzip");
        let raw_snappy = snap::raw::Encoder::new().compress_vec(records).expect("snappy");
        let mut xerial = XERIAL_MAGIC.to_vec();
        xerial.extend_from_slice(&[0, 0, 0, 1, 0, 0, 0, 1]);
        xerial.extend_from_slice(&(raw_snappy.len() as u32).to_be_bytes());
        xerial.extend_from_slice(&raw_snappy);
        let mut lz = lz4::EncoderBuilder::new().build(Vec::new()).expect("lz4");
        lz.write_all(records).expect("lz4");
        let (lz4_bytes, r) = lz.finish();
        r.expect("lz4");
        let zst = zstd::encode_all(records, 3).expect("zstd");
        for (codec, body) in [(1, gzip), (2, raw_snappy.clone()), (2, xerial), (3, lz4_bytes), (4, zst)] {
            let batch = compressed(&plain, codec, body);
            let stored = to_stored(&batch, 1 << 20).expect("decompresses");
            assert_eq!(&*stored, &plain[..], "codec {codec}");
        }
        assert!(matches!(to_stored(&plain, 1 << 20).expect("plain"), std::borrow::Cow::Borrowed(_)));
    }

    #[test]
    fn bombs_and_corruption_are_refused() {
        let plain = plain_batch();
        let big = vec![0u8; 4 << 20];
        let bomb = compressed(&plain, 4, zstd::encode_all(&big[..], 3).expect("zstd"));
        let err = to_stored(&bomb, 1 << 20).unwrap_err();
        assert_eq!(err.code, ResponseError::MessageTooLarge);
        let mut bad = compressed(&plain, 1, vec![1, 2, 3]);
        let err = to_stored(&bad, 1 << 20).unwrap_err();
        assert_eq!(err.code, ResponseError::CorruptMessage);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let err = to_stored(&bad, 1 << 20).unwrap_err();
        assert_eq!(err.code, ResponseError::CorruptMessage, "CRC mismatch");
    }
}
