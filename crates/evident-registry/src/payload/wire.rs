//! Confluent's wire format: what its serializers put before the encoded payload. A magic byte
//! `0`, the schema id as a 4-byte big-endian integer, and for Protobuf the message-index array
//! naming which message of the schema's file the payload is (a zigzag-varint count, then that
//! many zigzag-varint indexes: the first into the file's top-level messages, each next into the
//! previous message's nested ones; a count of `0` alone is the common case `[0]`).

use std::fmt;

use crate::schema::SchemaId;

/// The first byte of every wire-format payload.
pub const MAGIC: u8 = 0;

/// Most message indexes a Protobuf payload may name. A nesting deeper than this is not a schema
/// anyone writes, and the bound keeps a peer from making us allocate for a claimed count.
pub const MESSAGE_INDEXES_MAX: usize = 64;

/// Why a payload's wire-format framing is not valid.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum WireError {
    /// Fewer than the 5 bytes of magic byte and id.
    TooShort(usize),
    /// The first byte is not the magic byte `0`.
    BadMagic(u8),
    /// The Protobuf message-index array is truncated, overlong or negative.
    BadIndexes(String),
}

impl fmt::Display for WireError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            WireError::TooShort(n) => write!(
                f,
                "not in the schema registry wire format: {n} bytes, fewer than the magic byte and 4-byte schema id"
            ),
            WireError::BadMagic(b) => {
                write!(f, "not in the schema registry wire format: first byte is {b}, not the magic byte 0")
            }
            WireError::BadIndexes(why) => write!(f, "bad Protobuf message indexes: {why}"),
        }
    }
}

/// Splits a wire-format payload into its schema id and the bytes after the id.
pub fn split(payload: &[u8]) -> Result<(SchemaId, &[u8]), WireError> {
    if payload.len() < 5 {
        return Err(WireError::TooShort(payload.len()));
    }
    if payload[0] != MAGIC {
        return Err(WireError::BadMagic(payload[0]));
    }
    let id = i32::from_be_bytes([payload[1], payload[2], payload[3], payload[4]]);
    Ok((SchemaId(id), &payload[5..]))
}

/// Frames `body` with the magic byte and `id` (what a serializer sends).
pub fn frame(id: SchemaId, body: &[u8]) -> Vec<u8> {
    let mut out = Vec::with_capacity(5 + body.len());
    out.push(MAGIC);
    out.extend_from_slice(&id.0.to_be_bytes());
    out.extend_from_slice(body);
    out
}

/// Reads the Protobuf message-index array at the start of `body`: the indexes (`[0]` for the
/// single-zero shorthand) and the message bytes after them.
pub fn message_indexes(body: &[u8]) -> Result<(Vec<usize>, &[u8]), WireError> {
    let (count, mut rest) = zigzag(body)?;
    if count == 0 {
        return Ok((vec![0], rest));
    }
    let count = usize::try_from(count)
        .ok()
        .filter(|&c| c <= MESSAGE_INDEXES_MAX)
        .ok_or_else(|| WireError::BadIndexes(format!("count {count} is not 1 to {MESSAGE_INDEXES_MAX}")))?;
    let mut indexes = Vec::with_capacity(count);
    for _ in 0..count {
        let (index, after) = zigzag(rest)?;
        let index = usize::try_from(index).map_err(|_| WireError::BadIndexes(format!("negative index {index}")))?;
        indexes.push(index);
        rest = after;
    }
    Ok((indexes, rest))
}

/// Encodes a message-index array as the serializers do (`[0]` as the single byte `0`).
pub fn encode_message_indexes(indexes: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    if indexes == [0] {
        out.push(0);
        return out;
    }
    put_zigzag(&mut out, indexes.len() as i64);
    for &i in indexes {
        put_zigzag(&mut out, i as i64);
    }
    out
}

fn put_zigzag(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// One zigzag varint of at most 32 bits (the serializers write Java ints).
fn zigzag(bytes: &[u8]) -> Result<(i64, &[u8]), WireError> {
    let mut value: u64 = 0;
    for (i, &b) in bytes.iter().enumerate().take(5) {
        value |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            let decoded = ((value >> 1) as i64) ^ -((value & 1) as i64);
            return Ok((decoded, &bytes[i + 1..]));
        }
    }
    Err(WireError::BadIndexes(if bytes.len() < 5 {
        "truncated varint".into()
    } else {
        "varint longer than 5 bytes".into()
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn splits_magic_and_big_endian_id() {
        let p = frame(SchemaId(258), b"xy");
        assert_eq!(p, [0, 0, 0, 1, 2, b'x', b'y']);
        assert_eq!(split(&p), Ok((SchemaId(258), &b"xy"[..])));
        assert_eq!(split(&[0, 0, 0, 1]), Err(WireError::TooShort(4)));
        assert_eq!(split(b"{\"a\":1}"), Err(WireError::BadMagic(b'{')));
    }

    #[test]
    fn message_indexes_round_trip() {
        assert_eq!(message_indexes(&[0, 9]), Ok((vec![0], &[9u8][..])));
        for indexes in [vec![0], vec![1], vec![2, 0, 3], vec![200]] {
            let mut bytes = encode_message_indexes(&indexes);
            bytes.push(42);
            assert_eq!(message_indexes(&bytes), Ok((indexes.clone(), &[42u8][..])), "{bytes:?}");
        }
        // count 1, index 1 — what the Python serializer writes for the second top-level message.
        assert_eq!(message_indexes(&[2, 2]).unwrap().0, vec![1]);
    }

    #[test]
    fn bad_message_indexes_are_refused() {
        assert!(message_indexes(&[]).is_err(), "empty");
        assert!(message_indexes(&[0x80]).is_err(), "truncated");
        assert!(message_indexes(&[1]).is_err(), "negative count");
        assert!(message_indexes(&[2, 1]).is_err(), "negative index");
        assert!(message_indexes(&[0xfe, 0x01]).is_err(), "count 127 > max");
        assert!(message_indexes(&[4, 2]).is_err(), "count 2, one index");
        assert!(message_indexes(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]).is_err(), "overlong");
    }
}
