//! The two byte scans of the read path: where the bytes of a JSON string first need an escape,
//! and whether a stored payload is exactly one JSON value (and where it sits within the
//! whitespace around it).
//!
//! Why by hand: a page of 1,000 events escapes about ten thousand short strings and checks a
//! thousand payloads. In profiles of that read, serde_json's check of a payload
//! (`from_str::<&RawValue>`, which walks it byte by byte) took a quarter of the server's CPU
//! and the byte-at-a-time escape scan another eighth. Both scans here look at eight bytes at a
//! time where text runs long (inside strings) with the word-at-a-time tests of "Bit Twiddling
//! Hacks" (`haszero`/`hasless`), in safe code.
//!
//! The validator accepts exactly what `serde_json::from_str::<&RawValue>` accepts, because the
//! page must be what it was when serde_json decided (the tests compare the two on generated
//! texts, valid and broken): RFC 8259's grammar, no nesting limit (serde_json ignores a raw
//! value with an explicit stack, not recursion), any `\uXXXX` escape (lone surrogates
//! included), the four whitespace bytes around the value and nothing else. UTF-8 is the
//! caller's check.

use std::ops::Range;

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
/// when `text` is not exactly one JSON value (see the module comment for the grammar).
pub(super) fn json_value_span(text: &[u8]) -> Option<Range<usize>> {
    let start = skip_whitespace(text, 0);
    let end = value_end(text, start)?;
    (skip_whitespace(text, end) == text.len()).then_some(start..end)
}

fn skip_whitespace(text: &[u8], mut at: usize) -> usize {
    while let Some(b' ' | b'\n' | b'\t' | b'\r') = text.get(at) {
        at += 1;
    }
    at
}

/// Where the value starting at `at` ends. Arrays and objects are walked with an explicit stack
/// ([`Frames`]), so nesting costs no recursion whatever the input.
fn value_end(text: &[u8], mut at: usize) -> Option<usize> {
    let mut frames = Frames::default();
    loop {
        // A value starts here (after whitespace).
        at = skip_whitespace(text, at);
        match *text.get(at)? {
            b'{' => {
                at = skip_whitespace(text, at + 1);
                if text.get(at) == Some(&b'}') {
                    at += 1;
                } else {
                    frames.push(Frame::Object);
                    at = key_end(text, at)?;
                    continue;
                }
            }
            b'[' => {
                at = skip_whitespace(text, at + 1);
                if text.get(at) == Some(&b']') {
                    at += 1;
                } else {
                    frames.push(Frame::Array);
                    continue;
                }
            }
            b'"' => at = string_end(text, at + 1)?,
            b'n' => at = literal_end(text, at, b"null")?,
            b't' => at = literal_end(text, at, b"true")?,
            b'f' => at = literal_end(text, at, b"false")?,
            b'-' | b'0'..=b'9' => at = number_end(text, at)?,
            _ => return None,
        }
        // A value ended at `at`: a comma starts the next member of its array or object, a
        // closing bracket ends that array or object (itself a value that ended).
        loop {
            let Some(frame) = frames.top() else { return Some(at) };
            at = skip_whitespace(text, at);
            match (*text.get(at)?, frame) {
                (b',', Frame::Array) => {
                    at += 1;
                    break;
                }
                (b',', Frame::Object) => {
                    at = key_end(text, skip_whitespace(text, at + 1))?;
                    break;
                }
                (b']', Frame::Array) | (b'}', Frame::Object) => {
                    frames.pop();
                    at += 1;
                }
                _ => return None,
            }
        }
    }
}

/// Where an object member's key and its colon end, the key starting at `at`.
fn key_end(text: &[u8], at: usize) -> Option<usize> {
    if text.get(at) != Some(&b'"') {
        return None;
    }
    let at = skip_whitespace(text, string_end(text, at + 1)?);
    (text.get(at) == Some(&b':')).then_some(at + 1)
}

/// Where a string ends, its content starting at `at` (after the opening quote). The text
/// goes on after the string, so the scan reads whole words past short strings' ends while
/// eight bytes remain, and byte by byte only at the text's very end.
fn string_end(text: &[u8], mut at: usize) -> Option<usize> {
    loop {
        while let Some(chunk) = text.get(at..at + 8) {
            let mask = escape_mask(word_of(chunk));
            if mask != 0 {
                at += (mask.trailing_zeros() / 8) as usize;
                break;
            }
            at += 8;
        }
        while text.get(at).is_some_and(|&b| b >= 0x20 && b != b'"' && b != b'\\') {
            at += 1;
        }
        match *text.get(at)? {
            b'"' => return Some(at + 1),
            b'\\' => match *text.get(at + 1)? {
                b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => at += 2,
                b'u' => {
                    if !text.get(at + 2..at + 6)?.iter().all(u8::is_ascii_hexdigit) {
                        return None;
                    }
                    at += 6;
                }
                _ => return None,
            },
            // A control character: JSON strings must escape them.
            _ => return None,
        }
    }
}

fn literal_end(text: &[u8], at: usize, literal: &[u8]) -> Option<usize> {
    text[at..].starts_with(literal).then_some(at + literal.len())
}

/// Where a number ends: `-`? (`0` | [1-9][0-9]*) (`.` [0-9]+)? ([eE] [+-]? [0-9]+)?.
fn number_end(text: &[u8], mut at: usize) -> Option<usize> {
    let digits = |mut at: usize| {
        while text.get(at).is_some_and(u8::is_ascii_digit) {
            at += 1;
        }
        at
    };
    if text.get(at) == Some(&b'-') {
        at += 1;
    }
    match *text.get(at)? {
        // One leading zero, not followed by another digit.
        b'0' => {
            at += 1;
            if text.get(at).is_some_and(u8::is_ascii_digit) {
                return None;
            }
        }
        b'1'..=b'9' => at = digits(at + 1),
        _ => return None,
    }
    if text.get(at) == Some(&b'.') {
        let end = digits(at + 1);
        if end == at + 1 {
            return None;
        }
        at = end;
    }
    if let Some(b'e' | b'E') = text.get(at) {
        at += 1;
        if let Some(b'+' | b'-') = text.get(at) {
            at += 1;
        }
        let end = digits(at);
        if end == at {
            return None;
        }
        at = end;
    }
    Some(at)
}

/// What an open bracket opened.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Frame {
    Array,
    Object,
}

/// The stack of open arrays and objects, one bit each: 64 levels in a word, deeper ones
/// spilled a word at a time (payloads nest a few levels; nothing bounds what a Kafka producer
/// stores, and a page must not cost an allocation per event).
#[derive(Default)]
struct Frames {
    depth: usize,
    bits: u64,
    spilled: Vec<u64>,
}

impl Frames {
    fn push(&mut self, frame: Frame) {
        if self.depth > 0 && self.depth.is_multiple_of(64) {
            self.spilled.push(self.bits);
            self.bits = 0;
        }
        self.bits = (self.bits << 1) | u64::from(frame == Frame::Object);
        self.depth += 1;
    }

    fn top(&self) -> Option<Frame> {
        (self.depth > 0).then_some(if self.bits & 1 == 1 { Frame::Object } else { Frame::Array })
    }

    fn pop(&mut self) {
        debug_assert!(self.depth > 0, "a pop without a push");
        self.bits >>= 1;
        self.depth -= 1;
        if self.depth > 0 && self.depth.is_multiple_of(64) {
            self.bits = self.spilled.pop().unwrap_or_default();
        }
    }
}

#[cfg(test)]
mod tests {
    use rand::rngs::StdRng;
    use rand::{Rng, SeedableRng};
    use serde_json::value::RawValue;

    use super::*;

    /// What serde_json says of `text`: the span of its one value, or None.
    fn serde_span(text: &str) -> Option<Range<usize>> {
        let raw = serde_json::from_str::<&RawValue>(text).ok()?;
        let start = raw.get().as_ptr() as usize - text.as_ptr() as usize;
        Some(start..start + raw.get().len())
    }

    fn check(text: &str) {
        assert_eq!(json_value_span(text.as_bytes()), serde_span(text), "{text:?}");
    }

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
    fn agrees_with_serde_json_on_edge_cases() {
        let cases = [
            "",
            " ",
            "null",
            " null ",
            "nul",
            "nulll",
            "nullx",
            "true",
            "tru",
            "false",
            "falsey",
            "0",
            "-0",
            "-",
            "01",
            "-01",
            "1.",
            "1.5",
            ".5",
            "1e",
            "1e+",
            "1e+5",
            "1E-5",
            "1.5e3",
            "2 3",
            "1x",
            "\"\"",
            "\"a",
            "\"\\u00e9\"",
            "\"\\ud800\"",
            "\"\\u12g4\"",
            "\"\\u123\"",
            "\"\\x\"",
            "\"\\/\"",
            "\"tab\there\"",
            "\"del\u{7f}\"",
            "\"é 日本 🦀\"",
            "[]",
            "[ ]",
            "[1,]",
            "[,1]",
            "[1 2]",
            "[1,2]",
            "{}",
            "{ }",
            "{\"a\":1}",
            "{\"a\" : 1 , \"b\":[{}]}",
            "{\"a\":1,}",
            "{,}",
            "{\"a\"}",
            "{\"a\":}",
            "{1:2}",
            "{\"a\":1\"b\":2}",
            "[}",
            "{]",
            "[[[]]]",
            "[[[]]",
            "\u{feff}1",
            "\u{a0}1",
            "\n\t\r 1 \n\t\r",
            "1\u{0}",
            "[\"a\\\"b\"]",
            "{\"items\": [{\"sku\": \"SKU-12345\", \"qty\": 2, \"price\": 1999}], \"total\": 89.97e-1}",
        ];
        for case in cases {
            check(case);
        }
        for depth in [1, 63, 64, 65, 127, 128, 129, 200, 1000] {
            let nested = format!("{}{}", "[{\"k\":".repeat(depth), "}]".repeat(depth));
            check(&nested);
            check(&nested[..nested.len() - 1]);
        }
    }

    /// A random JSON value, at most `depth` levels deep, with the whitespace and number forms
    /// serde_json distinguishes.
    fn random_value(rng: &mut StdRng, depth: usize, out: &mut String) {
        let space = |rng: &mut StdRng, out: &mut String| {
            for _ in 0..rng.gen_range(0..3) {
                out.push([' ', '\n', '\t', '\r'][rng.gen_range(0..4)]);
            }
        };
        space(rng, out);
        match rng.gen_range(0..if depth == 0 { 5 } else { 7 }) {
            0 => out.push_str(["null", "true", "false"][rng.gen_range(0..3)]),
            1 | 2 => {
                out.push_str(["", "-"][rng.gen_range(0..2)]);
                out.push_str(["0", "7", "123", "10"][rng.gen_range(0..4)]);
                out.push_str(["", ".5", ".01"][rng.gen_range(0..3)]);
                out.push_str(["", "e5", "E-2", "e+10"][rng.gen_range(0..4)]);
            }
            3 | 4 => {
                out.push('"');
                for _ in 0..rng.gen_range(0..20) {
                    out.push_str(
                        ["a", "Z", " ", "é", "🦀", "\\n", "\\\"", "\\\\", "\\u00e9", "\\ud83e", "/"]
                            [rng.gen_range(0..11)],
                    );
                }
                out.push('"');
            }
            5 => {
                out.push('[');
                for i in 0..rng.gen_range(0..4) {
                    if i > 0 {
                        out.push(',');
                    }
                    random_value(rng, depth - 1, out);
                }
                space(rng, out);
                out.push(']');
            }
            _ => {
                out.push('{');
                for i in 0..rng.gen_range(0..4) {
                    if i > 0 {
                        out.push(',');
                    }
                    space(rng, out);
                    out.push_str(["\"a\"", "\"\"", "\"k\\u0041\""][rng.gen_range(0..3)]);
                    space(rng, out);
                    out.push(':');
                    random_value(rng, depth - 1, out);
                }
                space(rng, out);
                out.push('}');
            }
        }
        space(rng, out);
    }

    #[test]
    fn agrees_with_serde_json_on_generated_texts_and_their_mutations() {
        // Bytes a mutation puts in: JSON's structure, the starts of its tokens, and what
        // breaks strings (control characters, a lone backslash).
        const INSERTED: &[&str] = &[
            "{", "}", "[", "]", ",", ":", "\"", "\\", "-", "+", ".", "e", "0", "1", " ", "\n", "\u{1}", "\u{7f}", "n",
            "x", "é",
        ];
        let mut rng = StdRng::seed_from_u64(0x5eed_0fe7_1d00);
        let (mut valid, mut invalid) = (0, 0);
        for _ in 0..20_000 {
            let mut text = String::new();
            random_value(&mut rng, 4, &mut text);
            check(&text);
            // One to three mutations at character boundaries: a deletion, an insertion, a
            // replacement.
            for _ in 0..rng.gen_range(1..4) {
                let boundaries: Vec<usize> = (0..=text.len()).filter(|&i| text.is_char_boundary(i)).collect();
                let at = boundaries[rng.gen_range(0..boundaries.len())];
                let next = boundaries.iter().copied().find(|&i| i > at);
                match (rng.gen_range(0..3), next) {
                    (0, Some(next)) => text.replace_range(at..next, ""),
                    (1, Some(next)) => text.replace_range(at..next, INSERTED[rng.gen_range(0..INSERTED.len())]),
                    _ => text.insert_str(at, INSERTED[rng.gen_range(0..INSERTED.len())]),
                }
            }
            check(&text);
            if serde_span(&text).is_some() {
                valid += 1;
            } else {
                invalid += 1;
            }
        }
        // The mutations must exercise both answers, or the comparison proves little.
        assert!(valid > 1_000 && invalid > 1_000, "{valid} valid, {invalid} invalid mutations");
    }
}
