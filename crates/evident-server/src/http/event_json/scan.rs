//! The byte scans of the read path: where the bytes of a JSON string first need an escape, and
//! where the one JSON value of a stored payload sits within the whitespace around it.
//!
//! The escape scan is by hand: a page of 1,000 events escapes about ten thousand short strings,
//! and the byte-at-a-time scan was an eighth of the server's CPU in profiles of that read. It
//! looks at eight bytes at a time with the word-at-a-time tests of "Bit Twiddling Hacks"
//! (`haszero`/`hasless`), in safe code.
//!
//! The payload check is serde_json's (`from_slice::<&RawValue>`), the ecosystem's parser: a
//! hand-written validator measured about 0.1-0.2 ms faster per 1,000-event read (a tenth of
//! it), but a second JSON grammar to keep exactly in step with the one clients parse with is
//! not worth that much; what is embedded as `data` is what serde_json accepts.

use std::ops::Range;

use serde_json::value::RawValue;

/// `0x01` in every byte of a word.
const ONES: u64 = u64::from_le_bytes([1; 8]);
/// `0x80` in every byte of a word.
const HIGHS: u64 = ONES * 0x80;

/// Bit 7 of each byte of `word` that needs an escape in a JSON string (a quote, a backslash,
/// below 0x20), plus possibly some bytes above the first such byte: the lowest set bit is exact
/// (a subtraction's borrow only starts at a byte that matches, and only moves up), which is
/// all [`escape_free_len`] uses.
#[inline(always)]
fn escape_mask(word: u64) -> u64 {
    let zero_byte = |x: u64| x.wrapping_sub(ONES) & !x;
    let quote = zero_byte(word ^ (ONES * u64::from(b'"')));
    let backslash = zero_byte(word ^ (ONES * u64::from(b'\\')));
    let control = word.wrapping_sub(ONES * 0x20) & !word;
    (quote | backslash | control) & HIGHS
}

/// How many bytes at the start of `bytes` need no escape in a JSON string: the index of the
/// first quote, backslash or control character, or the length when there is none.
#[inline]
pub(super) fn escape_free_len(bytes: &[u8]) -> usize {
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let mask = escape_mask(word_of(chunk));
        if mask != 0 {
            return at + (mask.trailing_zeros() / 8) as usize;
        }
        at += 8;
    }
    let rest = chunks.remainder();
    if rest.is_empty() {
        return bytes.len();
    }
    // The tail: the last eight bytes when there are that many (the ones before the tail were
    // found clean, so they set no bit), or the short text padded with spaces, which need no
    // escape. The word is built in registers: copying the tail into a buffer and loading it
    // back stalled on the store (half of this function's time in profiles).
    let (base, word) = if bytes.len() >= 8 {
        (bytes.len() - 8, word_of(&bytes[bytes.len() - 8..]))
    } else {
        let spaces = ONES * u64::from(b' ');
        let word = rest
            .iter()
            .enumerate()
            .fold(spaces, |word, (i, &b)| (word & !(0xff << (8 * i))) | (u64::from(b) << (8 * i)));
        (0, word)
    };
    let mask = escape_mask(word);
    if mask != 0 {
        base + (mask.trailing_zeros() / 8) as usize
    } else {
        bytes.len()
    }
}

/// Eight bytes as a little-endian word.
#[inline(always)]
fn word_of(chunk: &[u8]) -> u64 {
    let mut word = [0u8; 8];
    word.copy_from_slice(&chunk[..8]);
    u64::from_le_bytes(word)
}

/// The span of the one JSON value `text` holds, without the whitespace around it, or None
/// when `text` is not exactly one JSON value (serde_json decides; a raw value has no nesting
/// limit).
pub(super) fn json_value_span(text: &[u8]) -> Option<Range<usize>> {
    let raw = serde_json::from_slice::<&RawValue>(text).ok()?;
    // The raw value borrows from `text`: its offset is where its bytes start.
    let start = raw.get().as_ptr() as usize - text.as_ptr() as usize;
    Some(start..start + raw.get().len())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escape_free_len_finds_the_first_byte_to_escape() {
        for len in 0..40 {
            for at in 0..=len {
                for special in [b'"', b'\\', 0, 0x1f, b'\n'] {
                    // Bytes around the special one that sit next to it in value: a borrow
                    // must not make them look special.
                    for filler in [b'x', b' ', 0x21, 0x5b, 0x5d, 0x23, 0x80, 0xff, 0x7f] {
                        let mut bytes = vec![filler; len];
                        if at < len {
                            bytes[at] = special;
                        }
                        assert_eq!(escape_free_len(&bytes), at, "{bytes:?}");
                    }
                }
            }
        }
    }

    #[test]
    fn the_span_of_a_payload_leaves_out_the_whitespace_around_its_value() {
        for (text, span) in [
            (&b"{\"a\":1}"[..], Some(0..7)),
            (b" \n\t[1, 2]\r ", Some(3..9)),
            (b"\"x\"", Some(0..3)),
            (b"17", Some(0..2)),
            (b"", None),
            (b"{\"a\":1} {}", None),
            (b"{\"a\":}", None),
            (b"\x0c1", None),
        ] {
            assert_eq!(json_value_span(text), span, "{:?}", String::from_utf8_lossy(text));
        }
    }
}
