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

/// What the compressed batches of one Produce request may inflate to, together. Kafka inflates a
/// batch while it validates it and stores it compressed; evident stores every batch
/// uncompressed (it indexes each record), so the inflated bytes are held until the log has them
/// and a request of many small bombs could hold many times the per-batch bound. This budget is
/// evident's own rule: every byte a decompressor produces for the request is charged to it,
/// including the bytes of a batch refused half-way (they cost the same CPU and memory), so a
/// request can never inflate more than `request_max` bytes in all, whatever its entries.
#[derive(Debug, Clone)]
pub struct Budget {
    /// Bytes the request may still inflate.
    left: usize,
    /// The request's whole budget, for messages.
    request_max: usize,
    /// Most one batch's records may inflate to: beyond it the log refuses the batch anyway,
    /// so inflating further is wasted.
    batch_max: usize,
}

impl Budget {
    /// A request's budget: `request_max` bytes in all, at most `stored_batch_max` bytes for
    /// one stored batch (header included: the log's `batch_size_max`).
    pub fn new(request_max: usize, stored_batch_max: usize) -> Self {
        Self { left: request_max, request_max, batch_max: stored_batch_max.saturating_sub(HEADER_LEN) }
    }

    /// Bytes the request may still inflate.
    #[cfg(test)]
    pub(crate) fn left(&self) -> usize {
        self.left
    }
}

/// The batch to append for a produced batch: the same bytes when uncompressed, else the batch
/// rewritten uncompressed, its records inflated within `budget` (and charged to it).
pub fn to_stored<'a>(bytes: &'a [u8], budget: &mut Budget) -> Result<std::borrow::Cow<'a, [u8]>, KafkaError> {
    let batch = RecordBatch::parse_exact(bytes).map_err(|e| corrupt(format!("evident: invalid record batch: {e}")))?;
    let attributes = batch.header().attributes;
    let codec = attributes & 0x07;
    if codec == 0 {
        return Ok(std::borrow::Cow::Borrowed(bytes));
    }
    if budget.left == 0 {
        return Err(KafkaError::new(
            ResponseError::MessageTooLarge,
            format!(
                "evident: not decompressed: the request's compressed batches already inflated to its budget of {} bytes",
                budget.request_max
            ),
        ));
    }
    let limit = budget.left.min(budget.batch_max);
    // The records are inflated straight after the header: one buffer, no copy.
    let mut out = bytes[..HEADER_LEN].to_vec();
    let result = decompress(codec, &bytes[HEADER_LEN..], &mut out, limit);
    let inflated = out.len() - HEADER_LEN;
    budget.left = budget.left.saturating_sub(inflated);
    match result {
        Ok(()) => {}
        Err(Inflate::Invalid(e)) => return Err(e),
        Err(Inflate::OverLimit) => {
            let message = if limit == budget.batch_max {
                format!("evident: the batch decompresses to more than {} bytes (the largest batch stored)", limit)
            } else {
                format!(
                    "evident: the request's compressed batches decompress to more than {} bytes together",
                    budget.request_max
                )
            };
            return Err(KafkaError::new(ResponseError::MessageTooLarge, message));
        }
    }
    let batch_length = i32::try_from(out.len() - 12)
        .map_err(|_| KafkaError::new(ResponseError::MessageTooLarge, "evident: decompressed batch too large"))?;
    out[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&batch_length.to_be_bytes());
    let plain = attributes & !0x07;
    out[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&plain.to_be_bytes());
    let crc = crc32c::crc32c(&out[ATTRIBUTES_OFFSET..]);
    out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(std::borrow::Cow::Owned(out))
}

/// Why inflating stopped.
enum Inflate {
    /// More than the limit came out (the output holds the limit plus at most one block).
    OverLimit,
    /// The data is not valid for its codec.
    Invalid(KafkaError),
}

/// Appends all of `reader` to `out`, stopping once more than `limit` bytes came out.
fn read_bounded(reader: impl Read, out: &mut Vec<u8>, limit: usize, what: &str) -> Result<(), Inflate> {
    let start = out.len();
    let mut limited = reader.take(limit as u64 + 1);
    // On an error, what was read stays in `out`, so the caller charges it.
    limited.read_to_end(out).map_err(|e| Inflate::Invalid(corrupt(format!("evident: {what} data is invalid: {e}"))))?;
    if out.len() - start > limit {
        return Err(Inflate::OverLimit);
    }
    Ok(())
}

/// Kafka's Java client writes snappy in xerial's framing: this header, then blocks of a
/// big-endian length and raw snappy. librdkafka writes the same; plain raw snappy is accepted
/// too.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

/// Appends one raw snappy block to `out`; `end` is the length `out` may not exceed. The block
/// states its inflated length up front, so an over-long one is refused before any allocation.
fn snappy_block(block: &[u8], out: &mut Vec<u8>, end: usize) -> Result<(), Inflate> {
    let invalid = |e: snap::Error| Inflate::Invalid(corrupt(format!("evident: snappy data is invalid: {e}")));
    let len = snap::raw::decompress_len(block).map_err(invalid)?;
    if out.len() + len > end {
        return Err(Inflate::OverLimit);
    }
    let start = out.len();
    out.resize(start + len, 0);
    if let Err(e) = snap::raw::Decoder::new().decompress(block, &mut out[start..]) {
        out.truncate(start);
        return Err(invalid(e));
    }
    Ok(())
}

/// Inflates `data` onto the end of `out`, at most `limit` bytes.
fn decompress(codec: i16, data: &[u8], out: &mut Vec<u8>, limit: usize) -> Result<(), Inflate> {
    let invalid = |what: &str| Inflate::Invalid(corrupt(format!("evident: {what}")));
    match codec {
        1 => read_bounded(flate2::read::GzDecoder::new(data), out, limit, "gzip"),
        2 => {
            let end = out.len() + limit;
            if let Some(mut rest) = data.strip_prefix(XERIAL_MAGIC) {
                // Version and compatible-version fields.
                rest = rest.get(8..).ok_or_else(|| invalid("snappy framing is truncated"))?;
                while !rest.is_empty() {
                    let len_bytes: [u8; 4] = rest
                        .get(..4)
                        .and_then(|b| b.try_into().ok())
                        .ok_or_else(|| invalid("snappy block length is truncated"))?;
                    let len = u32::from_be_bytes(len_bytes) as usize;
                    let block = rest.get(4..4 + len).ok_or_else(|| invalid("snappy block is truncated"))?;
                    snappy_block(block, out, end)?;
                    rest = &rest[4 + len..];
                }
                Ok(())
            } else {
                snappy_block(data, out, end)
            }
        }
        3 => {
            let decoder = lz4::Decoder::new(data)
                .map_err(|e| Inflate::Invalid(corrupt(format!("evident: lz4 data is invalid: {e}"))))?;
            read_bounded(decoder, out, limit, "lz4")
        }
        4 => {
            let decoder = zstd::stream::read::Decoder::new(data)
                .map_err(|e| Inflate::Invalid(corrupt(format!("evident: zstd data is invalid: {e}"))))?;
            read_bounded(decoder, out, limit, "zstd")
        }
        other => Err(invalid(&format!("unknown compression codec {other}"))),
    }
}

#[cfg(test)]
pub(crate) mod tests {
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
            let mut budget = Budget::new(1 << 20, 1 << 20);
            let stored = to_stored(&batch, &mut budget).expect("decompresses");
            assert_eq!(&*stored, &plain[..], "codec {codec}");
            assert_eq!(budget.left, (1 << 20) - (plain.len() - HEADER_LEN), "codec {codec}: charged its records");
        }
        let mut budget = Budget::new(1 << 20, 1 << 20);
        assert!(matches!(to_stored(&plain, &mut budget).expect("plain"), std::borrow::Cow::Borrowed(_)));
        assert_eq!(budget.left, 1 << 20, "an uncompressed batch costs no budget");
    }

    #[test]
    fn bombs_and_corruption_are_refused() {
        let plain = plain_batch();
        let big = vec![0u8; 4 << 20];
        let bomb = compressed(&plain, 4, zstd::encode_all(&big[..], 3).expect("zstd"));
        let err = to_stored(&bomb, &mut Budget::new(64 << 20, 1 << 20)).unwrap_err();
        assert_eq!(err.code, ResponseError::MessageTooLarge);
        assert!(err.message.contains("the largest batch stored"), "{}", err.message);
        let mut bad = compressed(&plain, 1, vec![1, 2, 3]);
        let err = to_stored(&bad, &mut Budget::new(1 << 20, 1 << 20)).unwrap_err();
        assert_eq!(err.code, ResponseError::CorruptMessage);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        let err = to_stored(&bad, &mut Budget::new(1 << 20, 1 << 20)).unwrap_err();
        assert_eq!(err.code, ResponseError::CorruptMessage, "CRC mismatch");
    }

    /// A zstd batch whose records inflate to `size` zero bytes (not valid records: the budget
    /// is spent before the log would look at them).
    pub(crate) fn zstd_bomb(size: usize) -> Vec<u8> {
        compressed(&plain_batch(), 4, zstd::encode_all(&vec![0u8; size][..], 3).expect("zstd"))
    }

    #[test]
    fn one_budget_bounds_every_batch_of_a_request_together() {
        // Four bombs of 300 KiB each under a 1 MiB per-batch bound: each alone would inflate,
        // but the request's budget of 700 KiB takes two, refuses the third half-way and the
        // fourth without inflating it.
        let bomb = zstd_bomb(300 << 10);
        let mut budget = Budget::new(700 << 10, 1 << 20);
        for _ in 0..2 {
            let stored = to_stored(&bomb, &mut budget).expect("within the budget");
            assert_eq!(stored.len(), HEADER_LEN + (300 << 10));
        }
        assert_eq!(budget.left, 100 << 10);
        let err = to_stored(&bomb, &mut budget).unwrap_err();
        assert_eq!(err.code, ResponseError::MessageTooLarge);
        assert!(err.message.contains("together"), "{}", err.message);
        assert_eq!(budget.left, 0, "the refused batch's inflated bytes are charged");
        let err = to_stored(&bomb, &mut budget).unwrap_err();
        assert_eq!(err.code, ResponseError::MessageTooLarge);
        assert!(err.message.contains("not decompressed"), "{}", err.message);
        // An uncompressed batch needs no decompression and still passes.
        assert!(to_stored(&plain_batch(), &mut budget).is_ok());
    }

    #[test]
    fn a_batch_over_the_stored_batch_size_is_cut_there_and_charged_only_that() {
        let bomb = zstd_bomb(4 << 20);
        let mut budget = Budget::new(64 << 20, 1 << 20);
        let err = to_stored(&bomb, &mut budget).unwrap_err();
        assert_eq!(err.code, ResponseError::MessageTooLarge);
        let charged = (64 << 20) - budget.left;
        assert!(charged > (1 << 20) - HEADER_LEN && charged <= (1 << 20) + (256 << 10), "charged {charged}");
    }

    #[test]
    fn a_corrupt_stream_is_charged_what_it_inflated_before_failing() {
        // A valid zstd frame of 512 KiB of zeros, cut short: the decoder produces some output,
        // then fails. Repeating such entries must drain the budget, not cost nothing.
        let mut body = zstd::encode_all(&vec![0u8; 512 << 10][..], 1).expect("zstd");
        body.truncate(body.len() - 4);
        let batch = compressed(&plain_batch(), 4, body);
        let mut budget = Budget::new(64 << 20, 1 << 20);
        let err = to_stored(&batch, &mut budget).unwrap_err();
        assert_eq!(err.code, ResponseError::CorruptMessage, "{}", err.message);
        assert!(budget.left < 64 << 20, "nothing charged for a corrupt stream");
    }

    #[test]
    fn a_lying_snappy_length_is_refused_before_allocating() {
        // A raw snappy block whose header claims 2 GiB.
        let mut block = Vec::new();
        let mut n: u64 = 2 << 30;
        while n >= 0x80 {
            block.push((n as u8) | 0x80);
            n >>= 7;
        }
        block.push(n as u8);
        block.extend_from_slice(&[0; 64]);
        let batch = compressed(&plain_batch(), 2, block);
        let mut budget = Budget::new(64 << 20, 8 << 20);
        let err = to_stored(&batch, &mut budget).unwrap_err();
        assert_eq!(err.code, ResponseError::MessageTooLarge, "{}", err.message);
        assert_eq!(budget.left, 64 << 20, "nothing was inflated");
    }
}
