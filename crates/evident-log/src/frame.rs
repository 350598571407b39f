//! The journal frame: the envelope in which every change (a record batch, a topic created or
//! deleted, a partition's log start moved) is written to the journal. See `docs/log-format.md`
//! for the byte layout and why each field exists.
//!
//! ```text
//! offset size field
//!      0    4 magic "EVF1"
//!      4    4 crc32c of bytes 8..length (header after this field, and payload)
//!      8    4 length: header + payload, before padding
//!     12    1 kind (1 batch, 2 topic created, 3 topic deleted, 4 topic altered, 5 log start,
//!                  6 transaction end, 7 producer advance)
//!     13    3 zero
//!     16    8 durable_before: journal position known durable when this frame was written
//!     24    8 first_sequence: commit sequence of the first record (batches; 0 for a batch
//!                  written in a transaction; a commit's first), else 0
//!     32    4 topic id
//!     36    4 partition
//!     40    . payload (the Kafka record batch, or JSON)
//!      .    . zero padding to a multiple of 8
//! ```

/// Frame header size.
pub const HEADER_LEN: usize = 40;
/// Magic bytes at the start of every frame.
pub const MAGIC: [u8; 4] = *b"EVF1";
/// Frames are padded to this alignment.
pub const ALIGN: usize = 8;
/// Largest frame the reader accepts; bounds what a corrupted length can make it allocate.
pub const LEN_MAX: usize = 1 << 30;

/// What a frame records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum FrameKind {
    /// A Kafka record batch appended to a partition.
    Batch = 1,
    /// A topic was created (payload: its metadata as JSON).
    TopicCreated = 2,
    /// A topic was deleted (payload empty).
    TopicDeleted = 3,
    /// A topic's metadata changed (payload: the new metadata as JSON); today only its
    /// partition count grows.
    TopicAltered = 4,
    /// A partition's log start moved forward (Kafka's DeleteRecords; payload: the new first
    /// offset, u64 little-endian): records below it are no longer served.
    LogStart = 5,
    /// A producer's transaction ended (payload: producer id i64, epoch i16, outcome u8: 1
    /// commit, 0 abort; `first_sequence`: on a commit, the sequence its first record takes).
    /// Written after the transaction's markers; applying it is what commits or aborts.
    TxnEnd = 6,
    /// An idempotent producer's batch was answered as a duplicate by event id without being
    /// written: its producer sequences are taken all the same (payload: `ProducerAdvance`).
    ProducerAdvance = 7,
}

/// A frame's header, decoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FrameHeader {
    /// Kind.
    pub kind: FrameKind,
    /// Header plus payload length, before padding.
    pub length: u32,
    /// Stored checksum.
    pub crc: u32,
    /// Journal position known durable when the frame was written.
    pub durable_before: u64,
    /// Commit sequence of the first record.
    pub first_sequence: u64,
    /// Topic id.
    pub topic: u32,
    /// Partition.
    pub partition: u32,
}

impl FrameHeader {
    /// Bytes the frame occupies in the journal, padding included.
    pub fn padded_len(&self) -> u64 {
        padded(self.length as usize) as u64
    }
}

/// `len` rounded up to the frame alignment.
pub fn padded(len: usize) -> usize {
    len.div_ceil(ALIGN) * ALIGN
}

/// Appends an encoded frame to `out` (which must be at an aligned length).
#[cfg(test)]
pub fn encode(
    out: &mut Vec<u8>,
    kind: FrameKind,
    durable_before: u64,
    first_sequence: u64,
    topic: u32,
    partition: u32,
    payload: &[u8],
) {
    encode_patched(out, kind, durable_before, first_sequence, topic, partition, payload, |_| {});
}

/// Like [`encode`], with `patch` applied to the payload's copy in the frame before the checksum
/// is computed (the log sets a batch's base offset this way without copying it twice).
#[allow(clippy::too_many_arguments)] // the frame header's fields, in order
pub fn encode_patched(
    out: &mut Vec<u8>,
    kind: FrameKind,
    durable_before: u64,
    first_sequence: u64,
    topic: u32,
    partition: u32,
    payload: &[u8],
    patch: impl FnOnce(&mut [u8]),
) {
    let start = out.len();
    let length = HEADER_LEN + payload.len();
    assert!(length <= LEN_MAX, "frame of {length} bytes exceeds LEN_MAX");
    out.extend_from_slice(&MAGIC);
    out.extend_from_slice(&[0; 4]);
    out.extend_from_slice(&(length as u32).to_le_bytes());
    out.push(kind as u8);
    out.extend_from_slice(&[0; 3]);
    out.extend_from_slice(&durable_before.to_le_bytes());
    out.extend_from_slice(&first_sequence.to_le_bytes());
    out.extend_from_slice(&topic.to_le_bytes());
    out.extend_from_slice(&partition.to_le_bytes());
    out.extend_from_slice(payload);
    patch(&mut out[start + HEADER_LEN..]);
    let crc = crc32c::crc32c(&out[start + 8..]);
    out[start + 4..start + 8].copy_from_slice(&crc.to_le_bytes());
    out.resize(start + padded(length), 0);
}

/// Why bytes are not a frame.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// Fewer bytes than the frame needs (maybe the rest is in the next read).
    Incomplete {
        /// Bytes needed in all.
        needed: usize,
    },
    /// The bytes are not a valid frame.
    Invalid(&'static str),
}

fn le_u32(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]])
}
fn le_u64(b: &[u8], at: usize) -> u64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[at..at + 8]);
    u64::from_le_bytes(a)
}

/// Decodes a frame header without checking the payload's checksum.
pub fn decode_header(bytes: &[u8]) -> Result<FrameHeader, FrameError> {
    if bytes.len() < HEADER_LEN {
        return Err(FrameError::Incomplete { needed: HEADER_LEN });
    }
    if bytes[0..4] != MAGIC {
        return Err(FrameError::Invalid("bad magic"));
    }
    let length = le_u32(bytes, 8);
    if (length as usize) < HEADER_LEN || length as usize > LEN_MAX {
        return Err(FrameError::Invalid("bad length"));
    }
    let kind = match bytes[12] {
        1 => FrameKind::Batch,
        2 => FrameKind::TopicCreated,
        3 => FrameKind::TopicDeleted,
        4 => FrameKind::TopicAltered,
        5 => FrameKind::LogStart,
        6 => FrameKind::TxnEnd,
        7 => FrameKind::ProducerAdvance,
        _ => return Err(FrameError::Invalid("unknown kind")),
    };
    Ok(FrameHeader {
        kind,
        length,
        crc: le_u32(bytes, 4),
        durable_before: le_u64(bytes, 16),
        first_sequence: le_u64(bytes, 24),
        topic: le_u32(bytes, 32),
        partition: le_u32(bytes, 36),
    })
}

/// Decodes and verifies the frame at the front of `bytes`; returns its header and payload.
pub fn decode(bytes: &[u8]) -> Result<(FrameHeader, &[u8]), FrameError> {
    let header = decode_header(bytes)?;
    let length = header.length as usize;
    if bytes.len() < length {
        return Err(FrameError::Incomplete { needed: length });
    }
    if crc32c::crc32c(&bytes[8..length]) != header.crc {
        return Err(FrameError::Invalid("checksum mismatch"));
    }
    if bytes[13..16] != [0; 3] {
        return Err(FrameError::Invalid("reserved bytes are not zero"));
    }
    Ok((header, &bytes[HEADER_LEN..length]))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_every_bit_flip_detected() {
        let mut out = Vec::new();
        encode(&mut out, FrameKind::Batch, 64, 7, 3, 1, b"payload");
        assert_eq!(out.len() % ALIGN, 0);
        let (h, p) = decode(&out).expect("valid");
        assert_eq!((h.kind, h.durable_before, h.first_sequence, h.topic, h.partition), (FrameKind::Batch, 64, 7, 3, 1));
        assert_eq!(p, b"payload");
        for bit in 0..(h.length as usize) * 8 {
            let mut copy = out.clone();
            copy[bit / 8] ^= 1 << (bit % 8);
            assert!(decode(&copy).is_err(), "flip of bit {bit} went unnoticed");
        }
    }

    proptest::proptest! {
        // Frames whose checksum is right but whose header is arbitrary decode or are refused,
        // never panic.
        #[test]
        fn arbitrary_frames_with_valid_checksums_never_panic(rest in proptest::collection::vec(proptest::prelude::any::<u8>(), 32..200)) {
            let mut bytes = MAGIC.to_vec();
            bytes.extend_from_slice(&[0; 4]);
            bytes.extend_from_slice(&rest);
            let len = (bytes.len() as u32).min(u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]));
            let end = (len as usize).clamp(8, bytes.len());
            let crc = crc32c::crc32c(&bytes[8..end]);
            bytes[4..8].copy_from_slice(&crc.to_le_bytes());
            let _ = decode(&bytes);
        }
    }

    #[test]
    fn zeroes_are_not_a_frame() {
        assert_eq!(decode(&[0; 64]), Err(FrameError::Invalid("bad magic")));
        assert_eq!(decode(&MAGIC), Err(FrameError::Incomplete { needed: HEADER_LEN }));
    }
}
