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

    /// Most bytes the request's next compressed batch may inflate to (0: none, it is refused
    /// without inflating): what it reserves of the broker-wide budget before inflating.
    pub fn inflation_max(&self) -> usize {
        self.left.min(self.batch_max)
    }
}

/// Whether a produced batch says it is compressed (its attributes' codec bits), read without
/// parsing or checking it: [`to_stored`] does that. A batch too short to say is not.
pub fn is_compressed(bytes: &[u8]) -> bool {
    bytes.get(ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2).is_some_and(|a| a[1] & 0x07 != 0)
}

/// Inflated bytes past which a batch leaves the heap for an anonymous mapping of its bound.
/// Why: glibc keeps freed large blocks in its per-thread arenas (after the first free of a
/// mapped block it raises its mapping threshold), so many threads inflating 8 MiB bombs left
/// the server's RSS far above what was live (measured: +160 MiB with 32 MiB live). A mapping is
/// backed only where written and is returned to the kernel when dropped, so the RSS follows
/// the bytes actually held, which the broker-wide budget bounds. Real batches (a producer's
/// `batch.size` is 16 KiB to 1 MiB) stay on the heap, where small allocations are cheaper.
const SPILL_BYTES: usize = 1 << 20;

/// Most bytes asked of a decompressor per read; the first reads ask for less (as much as came
/// out so far, from [`READ_FIRST`]), so that a small batch does not zero a whole chunk.
const READ_CHUNK: usize = 64 << 10;
const READ_FIRST: usize = 8 << 10;

/// The buffer a batch inflates into: the heap while small, past [`SPILL_BYTES`] an anonymous
/// mapping sized for the most the batch may reach.
#[derive(Debug)]
enum Buffer {
    Heap(Vec<u8>),
    Mapped { map: memmap2::MmapMut, len: usize },
}

impl Buffer {
    fn len(&self) -> usize {
        match self {
            Buffer::Heap(v) => v.len(),
            Buffer::Mapped { len, .. } => *len,
        }
    }

    fn filled_mut(&mut self) -> &mut [u8] {
        match self {
            Buffer::Heap(v) => v,
            Buffer::Mapped { map, len } => &mut map[..*len],
        }
    }

    /// Appends `n` zero bytes and returns them to be written; `end` is the most the buffer will
    /// ever hold (the size of a mapping, if it spills now).
    fn grow(&mut self, n: usize, end: usize) -> Result<&mut [u8], Inflate> {
        let len = self.len();
        if let Buffer::Heap(v) = self {
            if len + n > SPILL_BYTES {
                let mut map = memmap2::MmapMut::map_anon(end.max(len + n)).map_err(|e| {
                    Inflate::Invalid(KafkaError::new(
                        ResponseError::UnknownServerError,
                        format!("evident: no memory to decompress the batch: {e}"),
                    ))
                })?;
                map[..len].copy_from_slice(v);
                *self = Buffer::Mapped { map, len };
            }
        }
        match self {
            Buffer::Heap(v) => {
                v.resize(len + n, 0);
                Ok(&mut v[len..])
            }
            Buffer::Mapped { map, len: filled } => {
                let room = map.len() - *filled;
                if n > room {
                    return Err(Inflate::OverLimit);
                }
                *filled += n;
                Ok(&mut map[*filled - n..*filled])
            }
        }
    }

    /// Drops the last `n` bytes (grown but not written).
    fn shrink(&mut self, n: usize) {
        match self {
            Buffer::Heap(v) => v.truncate(v.len() - n),
            Buffer::Mapped { len, .. } => *len -= n,
        }
    }
}

/// A produced batch as it is stored: the bytes sent, or the batch rewritten uncompressed.
#[derive(Debug)]
pub struct Stored<'a>(Repr<'a>);

#[derive(Debug)]
enum Repr<'a> {
    /// An uncompressed batch, stored as sent.
    Sent(&'a [u8]),
    /// A compressed batch, inflated and rewritten.
    Inflated(Buffer),
}

impl Stored<'_> {
    /// Bytes it took to inflate: its records when rewritten; 0 for a batch stored as sent.
    pub fn inflated_len(&self) -> usize {
        match &self.0 {
            Repr::Sent(_) => 0,
            Repr::Inflated(b) => b.len().saturating_sub(HEADER_LEN),
        }
    }

    /// Whether the batch is stored as sent (uncompressed: no copy was made).
    #[cfg(test)]
    fn is_sent(&self) -> bool {
        matches!(self.0, Repr::Sent(_))
    }

    /// Whether the batch was inflated into an anonymous mapping.
    #[cfg(test)]
    fn is_mapped(&self) -> bool {
        matches!(self.0, Repr::Inflated(Buffer::Mapped { .. }))
    }
}

impl std::ops::Deref for Stored<'_> {
    type Target = [u8];

    fn deref(&self) -> &[u8] {
        match &self.0 {
            Repr::Sent(bytes) => bytes,
            Repr::Inflated(Buffer::Heap(v)) => v,
            Repr::Inflated(Buffer::Mapped { map, len }) => &map[..*len],
        }
    }
}

/// The batch to append for a produced batch: the same bytes when uncompressed, else the batch
/// rewritten uncompressed, its records inflated within `budget` (and charged to it).
pub fn to_stored<'a>(bytes: &'a [u8], budget: &mut Budget) -> Result<Stored<'a>, KafkaError> {
    let batch = RecordBatch::parse_exact(bytes).map_err(|e| corrupt(format!("evident: invalid record batch: {e}")))?;
    let attributes = batch.header().attributes;
    let codec = attributes & 0x07;
    if codec == 0 {
        return Ok(Stored(Repr::Sent(bytes)));
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
    let mut out = Buffer::Heap(bytes[..HEADER_LEN].to_vec());
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
    let out_bytes = out.filled_mut();
    out_bytes[LENGTH_OFFSET..LENGTH_OFFSET + 4].copy_from_slice(&batch_length.to_be_bytes());
    let plain = attributes & !0x07;
    out_bytes[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&plain.to_be_bytes());
    let crc = crc32c::crc32c(&out_bytes[ATTRIBUTES_OFFSET..]);
    out_bytes[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
    Ok(Stored(Repr::Inflated(out)))
}

/// Why inflating stopped.
enum Inflate {
    /// More than the limit came out (the output holds the limit plus at most one block).
    OverLimit,
    /// The data is not valid for its codec.
    Invalid(KafkaError),
}

/// Appends all of `reader` to `out`, stopping once more than `limit` bytes came out.
fn read_bounded(mut reader: impl Read, out: &mut Buffer, limit: usize, what: &str) -> Result<(), Inflate> {
    let start = out.len();
    // The most the buffer holds: the limit and the one byte that shows it was passed.
    let end = start + limit + 1;
    loop {
        let filled = out.len() - start;
        if filled > limit {
            return Err(Inflate::OverLimit);
        }
        let want = filled.clamp(READ_FIRST, READ_CHUNK).min(limit + 1 - filled);
        let room = out.grow(want, end)?;
        let read = reader.read(room);
        let n = *read.as_ref().unwrap_or(&0);
        out.shrink(want - n);
        match read {
            Ok(0) => return Ok(()),
            Ok(_) => {}
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            // What was read stays in `out`, so the caller charges it.
            Err(e) => return Err(Inflate::Invalid(corrupt(format!("evident: {what} data is invalid: {e}")))),
        }
    }
}

/// Kafka's Java client writes snappy in xerial's framing: this header, then blocks of a
/// big-endian length and raw snappy. librdkafka writes the same; plain raw snappy is accepted
/// too.
const XERIAL_MAGIC: &[u8] = b"\x82SNAPPY\x00";

/// Appends one raw snappy block to `out`; `end` is the length `out` may not exceed. The block
/// states its inflated length up front, so an over-long one is refused before any allocation.
fn snappy_block(block: &[u8], out: &mut Buffer, end: usize) -> Result<(), Inflate> {
    let invalid = |e: snap::Error| Inflate::Invalid(corrupt(format!("evident: snappy data is invalid: {e}")));
    let len = snap::raw::decompress_len(block).map_err(invalid)?;
    if out.len() + len > end {
        return Err(Inflate::OverLimit);
    }
    let room = out.grow(len, end)?;
    if let Err(e) = snap::raw::Decoder::new().decompress(block, room) {
        out.shrink(len);
        return Err(invalid(e));
    }
    Ok(())
}

/// Inflates `data` onto the end of `out`, at most `limit` bytes.
fn decompress(codec: i16, data: &[u8], out: &mut Buffer, limit: usize) -> Result<(), Inflate> {
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
        assert!(to_stored(&plain, &mut budget).expect("plain").is_sent());
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

    /// A valid zstd batch: [`plain_batch`]'s records compressed (producer 7, epoch 1,
    /// sequence 40).
    pub(crate) fn zstd_batch() -> Vec<u8> {
        let plain = plain_batch();
        compressed(&plain, 4, zstd::encode_all(&plain[HEADER_LEN..], 3).expect("zstd"))
    }

    #[test]
    fn compression_is_read_from_the_attributes_and_inflated_bytes_from_the_stored_batch() {
        let plain = plain_batch();
        assert!(!is_compressed(&plain));
        let batch = zstd_batch();
        assert!(is_compressed(&batch));
        assert!(!is_compressed(&batch[..10]), "too short to say");
        let stored = to_stored(&batch, &mut Budget::new(1 << 20, 1 << 20)).expect("inflates");
        assert_eq!(stored.inflated_len(), plain.len() - HEADER_LEN);
        assert_eq!(to_stored(&plain, &mut Budget::new(1 << 20, 1 << 20)).expect("plain").inflated_len(), 0);
        let budget = Budget::new(3 << 20, 1 << 20);
        assert_eq!(budget.inflation_max(), (1 << 20) - HEADER_LEN, "one batch's bound");
        assert_eq!(Budget::new(1000, 1 << 20).inflation_max(), 1000, "what the request has left");
    }

    #[test]
    fn a_batch_past_the_spill_size_inflates_into_a_mapping_with_the_same_result() {
        let small_bomb = zstd_bomb(SPILL_BYTES / 2);
        let small = to_stored(&small_bomb, &mut Budget::new(64 << 20, 8 << 20)).expect("small");
        assert!(!small.is_mapped(), "under the spill size on the heap");
        let big_size = 3 * SPILL_BYTES + 12_345;
        let mut budget = Budget::new(64 << 20, 8 << 20);
        let big_bomb = zstd_bomb(big_size);
        let big = to_stored(&big_bomb, &mut budget).expect("big");
        assert!(big.is_mapped());
        assert_eq!(big.len(), HEADER_LEN + big_size);
        assert_eq!(big.inflated_len(), big_size);
        assert!(big[HEADER_LEN..].iter().all(|&b| b == 0), "the records as compressed");
        assert_eq!(budget.left(), (64 << 20) - big_size);
        let crc = u32::from_be_bytes(big[CRC_OFFSET..CRC_OFFSET + 4].try_into().expect("4 bytes"));
        assert_eq!(crc, crc32c::crc32c(&big[ATTRIBUTES_OFFSET..]), "the header is rewritten in the mapping");
        assert_eq!(i16::from_be_bytes([big[ATTRIBUTES_OFFSET], big[ATTRIBUTES_OFFSET + 1]]) & 0x07, 0);
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
