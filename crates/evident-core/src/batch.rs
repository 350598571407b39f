//! The Kafka record batch, format v2 ("magic 2"): evident's unit on disk and on the wire.
//!
//! ```text
//! offset  size  field                  covered by crc
//!      0     8  base_offset            no   (assigned by the log on append)
//!      8     4  batch_length           no   (bytes after this field)
//!     12     4  partition_leader_epoch no
//!     16     1  magic = 2              no
//!     17     4  crc (CRC32C)           -
//!     21     2  attributes             yes  (bits 0-2 compression, 3 timestamp type,
//!                                            4 transactional, 5 control)
//!     23     4  last_offset_delta      yes
//!     27     8  base_timestamp         yes
//!     35     8  max_timestamp          yes
//!     43     8  producer_id            yes
//!     51     2  producer_epoch         yes
//!     53     4  base_sequence          yes
//!     57     4  record_count           yes
//!     61     .  records                yes
//! ```
//!
//! Parsing is zero-copy and defensive: every length is checked against the bytes that are
//! really there before anything is read or allocated, so a hostile batch costs at most its own
//! size. The CRC is verified before any record is looked at.

use std::fmt;

use crate::varint::{get_varint, get_varlong, put_varint, put_varlong};

/// Size of the batch header up to and including `record_count`.
pub const HEADER_LEN: usize = 61;
/// Bytes of the header that precede `batch_length`'s coverage (base_offset + batch_length).
pub const LOG_OVERHEAD: usize = 12;
const CRC_OFFSET: usize = 17;
const ATTRIBUTES_OFFSET: usize = 21;
/// The smallest possible record: length, attributes, two deltas, null key, null value, no headers.
const RECORD_LEN_MIN: usize = 7;

/// Why bytes are not a valid record batch.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BatchError {
    /// Fewer bytes than a header, or than `batch_length` claims.
    #[error("record batch truncated: {needed} bytes needed, {available} present")]
    Truncated {
        /// Bytes the batch claims.
        needed: usize,
        /// Bytes present.
        available: usize,
    },
    /// `batch_length` is negative or smaller than a header.
    #[error("record batch length {0} is invalid")]
    BadLength(i32),
    /// Not a v2 batch.
    #[error("record batch magic {0} is not supported (only v2)")]
    BadMagic(i8),
    /// The CRC32C does not match the bytes.
    #[error("record batch CRC mismatch: stored {stored:#010x}, computed {computed:#010x}")]
    BadCrc {
        /// CRC in the header.
        stored: u32,
        /// CRC of the bytes.
        computed: u32,
    },
    /// The records are compressed with a codec evident does not decode.
    #[error("record batch is compressed with {0:?}; evident's log accepts uncompressed batches only")]
    UnsupportedCompression(Compression),
    /// A record inside the batch is malformed.
    #[error("record {index} of the batch is malformed: {what}")]
    BadRecord {
        /// Index of the record in the batch.
        index: usize,
        /// What is wrong.
        what: &'static str,
    },
    /// `record_count` disagrees with the records present or with `last_offset_delta`.
    #[error("record batch declares {declared} records but {what}")]
    BadCount {
        /// The declared count.
        declared: i32,
        /// What disagrees.
        what: &'static str,
    },
}

/// The compression codec named by a batch's attributes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Compression {
    /// Uncompressed.
    None,
    /// gzip.
    Gzip,
    /// Snappy.
    Snappy,
    /// LZ4.
    Lz4,
    /// Zstandard.
    Zstd,
    /// A codec id Kafka does not define.
    Unknown(u8),
}

impl Compression {
    fn from_attributes(attributes: i16) -> Self {
        match attributes & 0x07 {
            0 => Self::None,
            1 => Self::Gzip,
            2 => Self::Snappy,
            3 => Self::Lz4,
            4 => Self::Zstd,
            other => Self::Unknown(other as u8),
        }
    }
}

/// The fixed header of a v2 batch, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BatchHeader {
    /// First offset of the batch.
    pub base_offset: i64,
    /// Bytes after the `batch_length` field.
    pub batch_length: i32,
    /// Leader epoch (evident has one leader: 0).
    pub partition_leader_epoch: i32,
    /// Stored CRC32C.
    pub crc: u32,
    /// Attribute bits.
    pub attributes: i16,
    /// Offset of the last record relative to `base_offset`.
    pub last_offset_delta: i32,
    /// Timestamp of the first record (Kafka: "first timestamp").
    pub base_timestamp: i64,
    /// Largest timestamp in the batch.
    pub max_timestamp: i64,
    /// Idempotent producer id, or -1.
    pub producer_id: i64,
    /// Idempotent producer epoch, or -1.
    pub producer_epoch: i16,
    /// Idempotent producer sequence of the first record, or -1.
    pub base_sequence: i32,
    /// Number of records.
    pub record_count: i32,
}

impl BatchHeader {
    /// The codec of the records.
    pub fn compression(&self) -> Compression {
        Compression::from_attributes(self.attributes)
    }

    /// Whether this is a control batch (transaction markers).
    pub fn is_control(&self) -> bool {
        self.attributes & CONTROL != 0
    }

    /// Whether this batch belongs to a transaction.
    pub fn is_transactional(&self) -> bool {
        self.attributes & TRANSACTIONAL != 0
    }

    /// Total size of the batch in bytes, header included.
    pub fn size(&self) -> usize {
        LOG_OVERHEAD + self.batch_length as usize
    }
}

fn be_i16(b: &[u8], at: usize) -> i16 {
    i16::from_be_bytes([b[at], b[at + 1]])
}
fn be_i32(b: &[u8], at: usize) -> i32 {
    i32::from_be_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn be_i64(b: &[u8], at: usize) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    i64::from_be_bytes(a)
}

/// A validated v2 record batch over borrowed bytes: header decoded, length and CRC checked.
#[derive(Clone, Copy)]
pub struct RecordBatch<'a> {
    bytes: &'a [u8],
    header: BatchHeader,
}

impl fmt::Debug for RecordBatch<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("RecordBatch").field("header", &self.header).finish()
    }
}

impl<'a> RecordBatch<'a> {
    /// Decodes the header of the batch at the front of `bytes` without checking the CRC.
    /// Returns the header; `bytes` may hold more after the batch.
    pub fn peek_header(bytes: &[u8]) -> Result<BatchHeader, BatchError> {
        if bytes.len() < HEADER_LEN {
            return Err(BatchError::Truncated { needed: HEADER_LEN, available: bytes.len() });
        }
        let batch_length = be_i32(bytes, 8);
        if batch_length < (HEADER_LEN - LOG_OVERHEAD) as i32 {
            return Err(BatchError::BadLength(batch_length));
        }
        let magic = bytes[16] as i8;
        if magic != 2 {
            return Err(BatchError::BadMagic(magic));
        }
        Ok(BatchHeader {
            base_offset: be_i64(bytes, 0),
            batch_length,
            partition_leader_epoch: be_i32(bytes, 12),
            crc: u32::from_be_bytes([bytes[17], bytes[18], bytes[19], bytes[20]]),
            attributes: be_i16(bytes, 21),
            last_offset_delta: be_i32(bytes, 23),
            base_timestamp: be_i64(bytes, 27),
            max_timestamp: be_i64(bytes, 35),
            producer_id: be_i64(bytes, 43),
            producer_epoch: be_i16(bytes, 51),
            base_sequence: be_i32(bytes, 53),
            record_count: be_i32(bytes, 57),
        })
    }

    /// Validates the batch at the front of `bytes` (header, length, CRC) and returns it with the
    /// number of bytes it spans.
    pub fn parse(bytes: &'a [u8]) -> Result<(Self, usize), BatchError> {
        let header = Self::peek_header(bytes)?;
        let size = header.size();
        if bytes.len() < size {
            return Err(BatchError::Truncated { needed: size, available: bytes.len() });
        }
        let bytes = &bytes[..size];
        let computed = crc32c::crc32c(&bytes[ATTRIBUTES_OFFSET..]);
        if computed != header.crc {
            return Err(BatchError::BadCrc { stored: header.crc, computed });
        }
        if header.record_count < 0 {
            return Err(BatchError::BadCount { declared: header.record_count, what: "the count is negative" });
        }
        if header.record_count as usize > (size - HEADER_LEN) / RECORD_LEN_MIN {
            return Err(BatchError::BadCount {
                declared: header.record_count,
                what: "the batch is too small to hold them",
            });
        }
        Ok((Self { bytes, header }, size))
    }

    /// Validates that `bytes` is exactly one batch.
    pub fn parse_exact(bytes: &'a [u8]) -> Result<Self, BatchError> {
        let (batch, size) = Self::parse(bytes)?;
        if size != bytes.len() {
            return Err(BatchError::BadLength(batch.header.batch_length));
        }
        Ok(batch)
    }

    /// The decoded header.
    pub fn header(&self) -> &BatchHeader {
        &self.header
    }

    /// The batch's bytes.
    pub fn bytes(&self) -> &'a [u8] {
        self.bytes
    }

    /// Iterates over the records. Compressed batches are refused: evident stores what it can
    /// index, and indexing needs each record's key and headers.
    pub fn records(&self) -> Result<Records<'a>, BatchError> {
        match self.header.compression() {
            Compression::None => {}
            other => return Err(BatchError::UnsupportedCompression(other)),
        }
        Ok(Records {
            rest: &self.bytes[HEADER_LEN..],
            position: HEADER_LEN,
            check_headers: true,
            index: 0,
            count: self.header.record_count as usize,
        })
    }

    /// Decodes every record and checks the batch's internal consistency: the count matches, no
    /// byte is left over, offset deltas are 0, 1, 2, ... and end at `last_offset_delta`. The
    /// log calls this once on append, so later readers can trust the stored bytes.
    pub fn validate_records(&self) -> Result<Vec<Record<'a>>, BatchError> {
        let mut records = Vec::with_capacity(self.header.record_count as usize);
        let mut iter = self.records()?;
        for (index, record) in iter.by_ref().enumerate() {
            let record = record?;
            if record.offset_delta as i64 != index as i64 {
                return Err(BatchError::BadRecord { index, what: "offset delta is not its index" });
            }
            records.push(record);
        }
        if !iter.rest.is_empty() {
            return Err(BatchError::BadCount {
                declared: self.header.record_count,
                what: "bytes remain after the last record",
            });
        }
        let expected_last = records.len() as i64 - 1;
        if !records.is_empty() && i64::from(self.header.last_offset_delta) != expected_last {
            return Err(BatchError::BadCount {
                declared: self.header.record_count,
                what: "last_offset_delta disagrees",
            });
        }
        Ok(records)
    }
}

/// One record of a batch, borrowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Record<'a> {
    /// Offset relative to the batch's base offset.
    pub offset_delta: i32,
    /// Timestamp relative to the batch's base timestamp.
    pub timestamp_delta: i64,
    /// Key, or None for a null key.
    pub key: Option<&'a [u8]>,
    /// Value, or None for a null value (a tombstone).
    pub value: Option<&'a [u8]>,
    headers: &'a [u8],
    header_count: usize,
    /// Byte position of the record (its length prefix) within the batch.
    pub start: u32,
    /// Bytes the record spans, length prefix included.
    pub len: u32,
}

impl<'a> Record<'a> {
    /// Iterates over the record's headers (already validated when the record was decoded).
    pub fn headers(&self) -> impl Iterator<Item = (&'a str, Option<&'a [u8]>)> + 'a {
        headers_in(self.headers, self.header_count)
    }

    /// The encoded headers, for [`headers_in`].
    pub fn raw_headers(&self) -> &'a [u8] {
        self.headers
    }

    /// The value of the first header named `name`.
    pub fn header(&self, name: &str) -> Option<&'a [u8]> {
        let mut rest = self.headers;
        for _ in 0..self.header_count {
            let (key, value, used) = decode_header_raw(rest)?;
            if key == name.as_bytes() {
                return value;
            }
            rest = &rest[used..];
        }
        None
    }

    /// Number of headers.
    pub fn header_count(&self) -> usize {
        self.header_count
    }
}

/// Iterates over `count` headers encoded in `raw` (as [`Record::raw_headers`] returns them).
/// Stops early rather than failing if the bytes are not valid headers.
pub fn headers_in(raw: &[u8], count: usize) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
    // Names were checked when the record was decoded; a name that is not UTF-8 ends the
    // iteration rather than failing it.
    headers_raw_in(raw, count).map_while(|(k, v)| std::str::from_utf8(k).ok().map(|k| (k, v)))
}

/// Like [`headers_in`], with names as bytes (no UTF-8 check): for lookups by name.
pub fn headers_raw_in(raw: &[u8], count: usize) -> impl Iterator<Item = (&[u8], Option<&[u8]>)> {
    let mut rest = raw;
    let mut left = count;
    std::iter::from_fn(move || {
        if left == 0 {
            return None;
        }
        left -= 1;
        let (k, v, used) = decode_header_raw(rest)?;
        rest = &rest[used..];
        Some((k, v))
    })
}

fn take_bytes(input: &[u8], at: usize) -> Option<(Option<&[u8]>, usize)> {
    let (len, n) = get_varint(input.get(at..)?)?;
    let start = at + n;
    if len < 0 {
        return if len == -1 { Some((None, start)) } else { None };
    }
    let end = start.checked_add(len as usize)?;
    Some((Some(input.get(start..end)?), end))
}

/// A decoded header: name (bytes), value, bytes spanned.
type RawHeader<'a> = (&'a [u8], Option<&'a [u8]>, usize);

/// A header's name as bytes (not checked for UTF-8), its value, and the bytes it spans.
fn decode_header_raw(input: &[u8]) -> Option<RawHeader<'_>> {
    let (key, at) = take_bytes(input, 0)?;
    let (value, at) = take_bytes(input, at)?;
    Some((key?, value, at))
}

/// Iterator over the records of an uncompressed batch.
pub struct Records<'a> {
    rest: &'a [u8],
    position: usize,
    index: usize,
    count: usize,
    /// Walk and check every header (false only for bytes already validated and checksummed).
    check_headers: bool,
}

/// Decodes one record standing alone in `bytes` (as the log stores a record's span).
pub fn decode_record(bytes: &[u8]) -> Result<Record<'_>, BatchError> {
    decode_record_with(bytes, true)
}

/// Decodes one record whose bytes were validated when they were stored and are protected by a
/// checksum the caller verified: the headers are not walked (they are decoded on demand by
/// [`Record::headers`], which stops at anything malformed). The log's read path uses this.
pub fn decode_record_trusted(bytes: &[u8]) -> Result<Record<'_>, BatchError> {
    decode_record_with(bytes, false)
}

fn decode_record_with(bytes: &[u8], check_headers: bool) -> Result<Record<'_>, BatchError> {
    let mut records = Records { rest: bytes, position: 0, index: 0, count: 1, check_headers };
    let record = records.decode_one()?;
    if !records.rest.is_empty() {
        return Err(BatchError::BadRecord { index: 0, what: "bytes remain after the record" });
    }
    Ok(record)
}

impl<'a> Records<'a> {
    fn decode_one(&mut self) -> Result<Record<'a>, BatchError> {
        let index = self.index;
        let bad = |what| BatchError::BadRecord { index, what };
        let (len, n) = get_varint(self.rest).ok_or(bad("length is not a varint"))?;
        if len < 0 || (len as usize) > self.rest.len() - n {
            return Err(bad("length exceeds the batch"));
        }
        let body = &self.rest[n..n + len as usize];
        let start = self.position;
        let span = n + len as usize;
        self.rest = &self.rest[span..];
        self.position += span;
        // attributes (unused in v2 records)
        let mut at = 1;
        if body.is_empty() {
            return Err(bad("empty record"));
        }
        let (timestamp_delta, n) = get_varlong(&body[at..]).ok_or(bad("timestamp delta"))?;
        at += n;
        let (offset_delta, n) = get_varint(&body[at..]).ok_or(bad("offset delta"))?;
        at += n;
        let (key, next) = take_bytes(body, at).ok_or(bad("key length"))?;
        at = next;
        let (value, next) = take_bytes(body, at).ok_or(bad("value length"))?;
        at = next;
        let (header_count, n) = get_varint(&body[at..]).ok_or(bad("header count"))?;
        at += n;
        if header_count < 0 {
            return Err(bad("negative header count"));
        }
        let headers_start = at;
        for _ in 0..if self.check_headers { header_count } else { 0 } {
            let (key, _, used) = decode_header_raw(&body[at..]).ok_or(bad("header"))?;
            // Names are nearly always ASCII; the full UTF-8 check runs only when they are not.
            if !key.is_ascii() && std::str::from_utf8(key).is_err() {
                return Err(bad("header name is not UTF-8"));
            }
            at += used;
        }
        if self.check_headers && at != body.len() {
            return Err(bad("bytes remain after the headers"));
        }
        Ok(Record {
            offset_delta,
            timestamp_delta,
            key,
            value,
            headers: &body[headers_start..],
            header_count: header_count as usize,
            start: start as u32,
            len: span as u32,
        })
    }
}

impl<'a> Iterator for Records<'a> {
    type Item = Result<Record<'a>, BatchError>;
    fn next(&mut self) -> Option<Self::Item> {
        if self.index >= self.count {
            return None;
        }
        let result = self.decode_one();
        self.index += 1;
        if result.is_err() {
            self.index = self.count; // stop after the first error
        }
        Some(result)
    }
}

/// Overwrites the base offset of the batch at the front of `bytes`. The field is outside the
/// CRC, as in Kafka, so the stored CRC stays valid.
pub fn set_base_offset(bytes: &mut [u8], base_offset: i64) {
    bytes[0..8].copy_from_slice(&base_offset.to_be_bytes());
}

/// Overwrites the partition leader epoch (outside the CRC).
pub fn set_partition_leader_epoch(bytes: &mut [u8], epoch: i32) {
    bytes[12..16].copy_from_slice(&epoch.to_be_bytes());
}

/// The timestamp-type bit of the attributes: set, every record's timestamp is the batch's max
/// timestamp, the time the broker appended it (`message.timestamp.type=LogAppendTime`).
pub const LOG_APPEND_TIME: i16 = 0x08;
/// Attribute bit of a batch written inside a transaction.
pub const TRANSACTIONAL: i16 = 0x10;
/// Attribute bit of a control batch (transaction markers).
pub const CONTROL: i16 = 0x20;

/// Stamps the batch at the front of `bytes` with the broker's append time, as Kafka does for a
/// `LogAppendTime` topic: sets the timestamp-type bit and the max timestamp, and recomputes the
/// CRC (both fields are inside it). The records and the base timestamp are left as sent.
pub fn set_log_append_time(bytes: &mut [u8], now_ms: i64) {
    let attributes = i16::from_be_bytes([bytes[ATTRIBUTES_OFFSET], bytes[ATTRIBUTES_OFFSET + 1]]) | LOG_APPEND_TIME;
    bytes[ATTRIBUTES_OFFSET..ATTRIBUTES_OFFSET + 2].copy_from_slice(&attributes.to_be_bytes());
    bytes[35..43].copy_from_slice(&now_ms.to_be_bytes());
    let crc = crc32c::crc32c(&bytes[ATTRIBUTES_OFFSET..]);
    bytes[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
}

/// A record to encode.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct NewRecord {
    /// Key, or None.
    pub key: Option<Vec<u8>>,
    /// Value, or None.
    pub value: Option<Vec<u8>>,
    /// Headers, in order.
    pub headers: Vec<(String, Option<Vec<u8>>)>,
    /// Timestamp in milliseconds since the Unix epoch.
    pub timestamp_ms: i64,
}

/// Builds an uncompressed v2 batch. Records are encoded as they are pushed, so building a
/// batch allocates little beyond the batch itself.
#[derive(Debug, Clone)]
pub struct BatchBuilder {
    records: Vec<u8>,
    scratch: Vec<u8>,
    count: i32,
    base_ts: i64,
    max_ts: i64,
    producer_id: i64,
    producer_epoch: i16,
    base_sequence: i32,
    attributes: i16,
}

impl Default for BatchBuilder {
    fn default() -> Self {
        Self::new()
    }
}

impl BatchBuilder {
    /// An empty, non-idempotent batch.
    pub fn new() -> Self {
        Self {
            records: Vec::new(),
            scratch: Vec::new(),
            count: 0,
            base_ts: 0,
            max_ts: 0,
            producer_id: -1,
            producer_epoch: -1,
            base_sequence: -1,
            attributes: 0,
        }
    }

    /// Marks the batch as part of a transaction (attribute bit 4): its records count only once
    /// the transaction commits.
    pub fn transactional(mut self) -> Self {
        self.attributes |= TRANSACTIONAL;
        self
    }

    /// Marks the batch as a control batch (attribute bit 5, with the transactional bit): it
    /// holds transaction markers, not data; see [`crate::control`].
    pub fn control(mut self) -> Self {
        self.attributes |= CONTROL | TRANSACTIONAL;
        self
    }

    /// Marks the batch as sent by an idempotent producer.
    pub fn idempotent(mut self, producer_id: i64, producer_epoch: i16, base_sequence: i32) -> Self {
        self.producer_id = producer_id;
        self.producer_epoch = producer_epoch;
        self.base_sequence = base_sequence;
        self
    }

    /// Adds a record.
    pub fn push(&mut self, record: NewRecord) -> &mut Self {
        let headers: Vec<(&str, Option<&[u8]>)> =
            record.headers.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        self.push_parts(record.key.as_deref(), record.value.as_deref(), &headers, record.timestamp_ms)
    }

    /// Adds a record from borrowed parts.
    pub fn push_parts(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
        timestamp_ms: i64,
    ) -> &mut Self {
        if self.count == 0 {
            self.base_ts = timestamp_ms;
            self.max_ts = timestamp_ms;
        }
        self.max_ts = self.max_ts.max(timestamp_ms);
        let body = &mut self.scratch;
        body.clear();
        body.push(0); // record attributes
        put_varlong(body, timestamp_ms - self.base_ts);
        put_varint(body, self.count);
        put_bytes(body, key);
        put_bytes(body, value);
        put_varint(body, headers.len() as i32);
        for (k, v) in headers {
            put_bytes(body, Some(k.as_bytes()));
            put_bytes(body, *v);
        }
        put_varint(&mut self.records, body.len() as i32);
        self.records.extend_from_slice(body);
        self.count += 1;
        self
    }

    /// Number of records added.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// Whether no record was added.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Encodes the batch with base offset 0.
    pub fn build(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(HEADER_LEN + self.records.len());
        out.extend_from_slice(&0i64.to_be_bytes());
        out.extend_from_slice(&0i32.to_be_bytes()); // batch_length, patched below
        out.extend_from_slice(&0i32.to_be_bytes()); // partition leader epoch
        out.push(2); // magic
        out.extend_from_slice(&0u32.to_be_bytes()); // crc, patched below
        out.extend_from_slice(&self.attributes.to_be_bytes()); // no compression, CreateTime
        let last_delta = (self.count - 1).max(0);
        out.extend_from_slice(&last_delta.to_be_bytes());
        out.extend_from_slice(&self.base_ts.to_be_bytes());
        out.extend_from_slice(&self.max_ts.to_be_bytes());
        out.extend_from_slice(&self.producer_id.to_be_bytes());
        out.extend_from_slice(&self.producer_epoch.to_be_bytes());
        out.extend_from_slice(&self.base_sequence.to_be_bytes());
        out.extend_from_slice(&self.count.to_be_bytes());
        out.extend_from_slice(&self.records);
        let batch_length = (out.len() - LOG_OVERHEAD) as i32;
        out[8..12].copy_from_slice(&batch_length.to_be_bytes());
        let crc = crc32c::crc32c(&out[ATTRIBUTES_OFFSET..]);
        out[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        out
    }
}

fn put_bytes(out: &mut Vec<u8>, bytes: Option<&[u8]>) {
    match bytes {
        None => put_varint(out, -1),
        Some(b) => {
            put_varint(out, b.len() as i32);
            out.extend_from_slice(b);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn record(key: &str, value: &str, ts: i64) -> NewRecord {
        NewRecord {
            key: Some(key.as_bytes().to_vec()),
            value: Some(value.as_bytes().to_vec()),
            headers: vec![("ce_id".into(), Some(b"e-1".to_vec())), ("nil".into(), None)],
            timestamp_ms: ts,
        }
    }

    #[test]
    fn builds_and_parses() {
        let mut b = BatchBuilder::new();
        b.push(record("k1", "v1", 1000)).push(record("k2", "v2", 1005));
        let bytes = b.build();
        let batch = RecordBatch::parse_exact(&bytes).expect("valid");
        assert_eq!(batch.header().record_count, 2);
        assert_eq!(batch.header().max_timestamp, 1005);
        let records = batch.validate_records().expect("valid records");
        assert_eq!(records[1].key, Some(&b"k2"[..]));
        assert_eq!(records[1].timestamp_delta, 5);
        assert_eq!(records[0].header("ce_id"), Some(&b"e-1"[..]));
        assert_eq!(records[0].headers().nth(1), Some(("nil", None)));
        let r1 = &bytes[records[1].start as usize..(records[1].start + records[1].len) as usize];
        assert_eq!(decode_record(r1).expect("standalone").key, Some(&b"k2"[..]));
        let trusted = decode_record_trusted(r1).expect("standalone");
        assert_eq!(trusted.headers().collect::<Vec<_>>(), records[1].headers().collect::<Vec<_>>());
        assert_eq!(trusted.header("ce_id"), Some(&b"e-1"[..]));
    }

    #[test]
    fn base_offset_is_outside_the_crc() {
        let mut bytes = BatchBuilder::new().push(record("k", "v", 1)).build();
        set_base_offset(&mut bytes, 42);
        let batch = RecordBatch::parse_exact(&bytes).expect("still valid");
        assert_eq!(batch.header().base_offset, 42);
    }

    #[test]
    fn every_single_bit_flip_is_detected() {
        let bytes = BatchBuilder::new().push(record("key", "value", 7)).build();
        for bit in (LOG_OVERHEAD + 4) * 8..bytes.len() * 8 {
            if (16 * 8..17 * 8).contains(&bit) {
                continue; // magic: detected as BadMagic, checked below
            }
            let mut copy = bytes.clone();
            copy[bit / 8] ^= 1 << (bit % 8);
            assert!(RecordBatch::parse_exact(&copy).is_err(), "flip of bit {bit} went unnoticed");
        }
        let mut copy = bytes.clone();
        copy[16] = 1;
        assert_eq!(RecordBatch::parse_exact(&copy).unwrap_err(), BatchError::BadMagic(1));
    }

    #[test]
    fn hostile_counts_are_refused_without_allocation() {
        let mut bytes = BatchBuilder::new().push(record("k", "v", 1)).build();
        bytes[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[ATTRIBUTES_OFFSET..]);
        bytes[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(RecordBatch::parse_exact(&bytes), Err(BatchError::BadCount { .. })));
    }

    #[test]
    fn compressed_batches_are_named() {
        let mut bytes = BatchBuilder::new().push(record("k", "v", 1)).build();
        bytes[22] |= 4; // zstd
        let crc = crc32c::crc32c(&bytes[ATTRIBUTES_OFFSET..]);
        bytes[CRC_OFFSET..CRC_OFFSET + 4].copy_from_slice(&crc.to_be_bytes());
        let batch = RecordBatch::parse_exact(&bytes).expect("header valid");
        assert_eq!(batch.records().err(), Some(BatchError::UnsupportedCompression(Compression::Zstd)));
    }

    proptest! {
        #[test]
        fn round_trips(records in proptest::collection::vec(
            (proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
             proptest::option::of(proptest::collection::vec(any::<u8>(), 0..200)),
             proptest::collection::vec(("[a-z_]{1,8}", proptest::option::of(proptest::collection::vec(any::<u8>(), 0..10))), 0..4),
             0i64..1_000_000), 1..20)) {
            let mut b = BatchBuilder::new();
            for (key, value, headers, ts) in &records {
                b.push(NewRecord { key: key.clone(), value: value.clone(), headers: headers.clone(), timestamp_ms: *ts });
            }
            let bytes = b.build();
            let batch = RecordBatch::parse_exact(&bytes).expect("valid");
            let decoded = batch.validate_records().expect("valid records");
            prop_assert_eq!(decoded.len(), records.len());
            let base = batch.header().base_timestamp;
            for (d, (key, value, headers, ts)) in decoded.iter().zip(&records) {
                prop_assert_eq!(d.key, key.as_deref());
                prop_assert_eq!(d.value, value.as_deref());
                prop_assert_eq!(base + d.timestamp_delta, *ts);
                let hs: Vec<(String, Option<Vec<u8>>)> = d.headers().map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec))).collect();
                prop_assert_eq!(&hs, headers);
            }
        }

        #[test]
        fn arbitrary_bytes_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            if let Ok((batch, _)) = RecordBatch::parse(&bytes) {
                let _ = batch.validate_records();
            }
        }
    }
}
