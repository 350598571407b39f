//! Is a stored payload one JSON value? Every read asks it of every event (a payload is embedded
//! as `data` only when it is; Kafka producers can store anything under a JSON content type), so
//! the check is a single pass written for this one question rather than a parser that could
//! build a value: no allocation below 128 levels of nesting, strings skipped eight bytes at a
//! time, no error values built. It accepts exactly what serde_json's
//! `from_str::<&RawValue>` accepts (what the read path used before; the tests compare the two
//! on crafted and on random inputs): RFC 8259 grammar, any nesting depth, `\u` escapes not
//! checked for surrogate pairing, whitespace around the value ignored.

/// The payload's JSON text without the whitespace around it, when the payload is UTF-8 and
/// exactly one JSON value; otherwise None.
pub(super) fn json_value(bytes: &[u8]) -> Option<&str> {
    let start = bytes.iter().position(|&b| !is_space(b))?;
    let end = bytes.iter().rposition(|&b| !is_space(b))? + 1;
    let text = std::str::from_utf8(&bytes[start..end]).ok()?;
    one_value(text.as_bytes()).then_some(text)
}

/// JSON's four whitespace bytes.
const fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\n' | b'\t' | b'\r')
}

/// Whether `t` (UTF-8, no whitespace at either end) is exactly one JSON value.
fn one_value(t: &[u8]) -> bool {
    let mut open = Nesting::default();
    let mut i = 0;
    'value: loop {
        // A value starts at `i`, after any whitespace.
        i = skip_space(t, i);
        let Some(&b) = t.get(i) else { return false };
        i = match b {
            b'{' => {
                i = skip_space(t, i + 1);
                if t.get(i) == Some(&b'}') {
                    i + 1
                } else {
                    open.push(Container::Object);
                    let Some(next) = member_key(t, i) else { return false };
                    i = next;
                    continue 'value;
                }
            }
            b'[' => {
                i = skip_space(t, i + 1);
                if t.get(i) == Some(&b']') {
                    i + 1
                } else {
                    open.push(Container::Array);
                    continue 'value;
                }
            }
            b'"' => match string_end(t, i + 1) {
                Some(next) => next,
                None => return false,
            },
            b't' if t[i..].starts_with(b"true") => i + 4,
            b'f' if t[i..].starts_with(b"false") => i + 5,
            b'n' if t[i..].starts_with(b"null") => i + 4,
            b'-' | b'0'..=b'9' => match number_end(t, i) {
                Some(next) => next,
                None => return false,
            },
            _ => return false,
        };
        // A value ended at `i`: close what it completes, or go on to the next element.
        loop {
            let Some(container) = open.top() else { return i == t.len() };
            i = skip_space(t, i);
            match (t.get(i), container) {
                (Some(b','), Container::Object) => {
                    let Some(next) = member_key(t, skip_space(t, i + 1)) else { return false };
                    i = next;
                    continue 'value;
                }
                (Some(b','), Container::Array) => {
                    i += 1;
                    continue 'value;
                }
                (Some(b'}'), Container::Object) | (Some(b']'), Container::Array) => {
                    open.pop();
                    i += 1;
                }
                _ => return false,
            }
        }
    }
}

fn skip_space(t: &[u8], mut i: usize) -> usize {
    while t.get(i).is_some_and(|&b| is_space(b)) {
        i += 1;
    }
    i
}

/// An object member's key and colon at `i`; where its value may start.
fn member_key(t: &[u8], i: usize) -> Option<usize> {
    if t.get(i) != Some(&b'"') {
        return None;
    }
    let i = skip_space(t, string_end(t, i + 1)?);
    (t.get(i) == Some(&b':')).then_some(i + 1)
}

/// Whether a byte ends a run of plain string contents: the closing quote, an escape, or a
/// control character (which JSON does not allow unescaped). The same bytes are the ones a
/// writer must escape.
pub(super) const fn is_special(b: u8) -> bool {
    b == b'"' || b == b'\\' || b < 0x20
}

/// The index of the first [`is_special`] byte. Scans eight bytes at a time as one `u64`
/// (bit tricks that flag a byte equal to a value, or below one, anywhere in a word), then
/// finds the byte within the word that has one: strings are mostly plain, so this is a few
/// instructions per eight bytes where a byte-by-byte loop takes a branch per byte.
pub(super) fn find_special(bytes: &[u8]) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGH: u64 = 0x8080_8080_8080_8080;
    // Some byte of `x` is zero (resp. below `n`, for n <= 128): exact as a yes/no.
    let below = |x: u64, n: u8| x.wrapping_sub(ONES * u64::from(n)) & !x & HIGH != 0;
    let mut chunks = bytes.chunks_exact(8);
    let mut at = 0;
    for chunk in &mut chunks {
        let word = u64::from_le_bytes(chunk.try_into().expect("chunks_exact yields eight bytes"));
        if below(word ^ (ONES * u64::from(b'"')), 1) || below(word ^ (ONES * u64::from(b'\\')), 1) || below(word, 0x20)
        {
            return chunk.iter().position(|&b| is_special(b)).map(|i| at + i);
        }
        at += 8;
    }
    chunks.remainder().iter().position(|&b| is_special(b)).map(|i| at + i)
}

/// The index after the closing quote of a string whose contents start at `i`.
fn string_end(t: &[u8], mut i: usize) -> Option<usize> {
    loop {
        i += find_special(t.get(i..)?)?;
        match t[i] {
            b'"' => return Some(i + 1),
            b'\\' => {
                i += match *t.get(i + 1)? {
                    b'"' | b'\\' | b'/' | b'b' | b'f' | b'n' | b'r' | b't' => 2,
                    b'u' if t.get(i + 2..i + 6)?.iter().all(u8::is_ascii_hexdigit) => 6,
                    _ => return None,
                };
            }
            _ => return None,
        }
    }
}

/// The index after a number starting at `i`: `-? (0 | [1-9][0-9]*) (. [0-9]+)? ([eE] [+-]? [0-9]+)?`.
/// A digit right after a leading zero is left for the caller, which refuses it as it refuses
/// any byte out of place.
fn number_end(t: &[u8], mut i: usize) -> Option<usize> {
    let digits = |mut i: usize| {
        let start = i;
        while t.get(i).is_some_and(u8::is_ascii_digit) {
            i += 1;
        }
        (i > start).then_some(i)
    };
    if t[i] == b'-' {
        i += 1;
    }
    i = match t.get(i)? {
        b'0' => i + 1,
        b'1'..=b'9' => digits(i)?,
        _ => return None,
    };
    if t.get(i) == Some(&b'.') {
        i = digits(i + 1)?;
    }
    if matches!(t.get(i), Some(b'e' | b'E')) {
        i += 1;
        if matches!(t.get(i), Some(b'+' | b'-')) {
            i += 1;
        }
        i = digits(i)?;
    }
    Some(i)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Container {
    Object,
    Array,
}

/// The containers open around the current position, innermost last: one bit each for the
/// first 128 levels (the JSON written by serde_json-based clients never goes deeper), a vector
/// beyond, so any depth is accepted as serde_json's raw-value check accepts it.
#[derive(Default)]
struct Nesting {
    depth: usize,
    objects: u128,
    deeper: Vec<Container>,
}

impl Nesting {
    fn push(&mut self, c: Container) {
        if self.depth < 128 {
            let bit = 1u128 << self.depth;
            self.objects = if c == Container::Object { self.objects | bit } else { self.objects & !bit };
        } else {
            self.deeper.push(c);
        }
        self.depth += 1;
    }

    fn pop(&mut self) {
        if self.depth > 128 {
            self.deeper.pop();
        }
        self.depth = self.depth.saturating_sub(1);
    }

    fn top(&self) -> Option<Container> {
        match self.depth {
            0 => None,
            d if d > 128 => self.deeper.last().copied(),
            d if self.objects & (1u128 << (d - 1)) != 0 => Some(Container::Object),
            _ => Some(Container::Array),
        }
    }
}

#[cfg(test)]
mod tests {
    use serde_json::value::RawValue;

    use super::*;

    /// What the read path used to embed: serde_json's verdict and trimmed text.
    fn serde(bytes: &[u8]) -> Option<&str> {
        let text = std::str::from_utf8(bytes).ok()?;
        serde_json::from_str::<&RawValue>(text).ok().map(RawValue::get)
    }

    fn same(bytes: &[u8]) {
        assert_eq!(json_value(bytes), serde(bytes), "{:?}", String::from_utf8_lossy(bytes));
    }

    #[test]
    fn agrees_with_serde_json_on_crafted_payloads() {
        let cases: &[&[u8]] = &[
            b"",
            b" ",
            b"null",
            b"nul",
            b"nulll",
            b"true",
            b"tru",
            b"false",
            b"falsee",
            b" \n\t\r1\r\t\n ",
            b"1 2",
            b"0",
            b"-0",
            b"-",
            b"01",
            b"-01",
            b"1.",
            b"1.5",
            b".5",
            b"1e",
            b"1e+",
            b"1e-5",
            b"1E+05",
            b"1.e5",
            b"1.5e",
            b"12345678901234567890123456789",
            b"+1",
            b"0x1",
            b"1f",
            b"\"\"",
            b"\"",
            b"\"abc",
            b"\"a\\\"b\"",
            b"\"\\/\\b\\f\\n\\r\\t\\\\\"",
            b"\"\\u00e9\\uD800\\uDFFF\"",
            b"\"\\u00g0\"",
            b"\"\\u00\"",
            b"\"\\x\"",
            b"\"tab\there\"",
            b"\"nul\0\"",
            b"\"del\x7f\"",
            "\"é 日本 🦀\"".as_bytes(),
            b"\"\xff\"",
            b"\xff",
            b"\"\xc3\x28\"",
            b"\"\xed\xa0\x80\"",
            b"[]",
            b"[ ]",
            b"[1,]",
            b"[,1]",
            b"[1 2]",
            b"[1,2]",
            b"[[]]",
            b"[[]",
            b"[]]",
            b"{}",
            b"{ }",
            b"{\"a\":1}",
            b"{\"a\" : 1 , \"b\" : [ ] }",
            b"{\"a\":1,}",
            b"{\"a\"}",
            b"{\"a\":}",
            b"{1:2}",
            b"{\"a\":1 \"b\":2}",
            b"{\"a\":1]",
            b"[1}",
            b"{\"a\":{\"b\":{}}}",
            b"[{}, {\"x\": [null]}]",
            b"[true,false,null]",
            b"[truefalse]",
            b"\"a\"\"b\"",
            b"{}{}",
            b"[\"\xe2\x80\xa8\"]",
        ];
        for case in cases {
            same(case);
        }
        for depth in [1, 127, 128, 129, 300] {
            same(format!("{}1{}", "[".repeat(depth), "]".repeat(depth)).as_bytes());
            same(format!("{}1{}", "[".repeat(depth), "]".repeat(depth - 1)).as_bytes());
            same(format!("{}{}", "{\"k\":[".repeat(depth), "]}".repeat(depth)).as_bytes());
        }
        // Strings around the edges of a scanned word, with each stop byte at each place.
        for stop in [b'"', b'\\', b'\n', b'\0', 0x1f, b'a', 0xc3] {
            for at in 0..34 {
                let mut s = vec![b'x'; 34];
                s[at] = stop;
                let mut text = vec![b'"'];
                text.extend_from_slice(&s);
                text.push(b'"');
                same(&text);
            }
        }
    }

    #[test]
    fn agrees_with_serde_json_on_random_mutations() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(10);
        let seeds: &[&[u8]] = &[
            br#"{"orderId": "5f1c", "items": [{"sku": "SKU-1", "qty": 2, "price": 19.99e-1}], "ok": true, "n": null}"#,
            br#"[-0.5, 1E+2, "\u00e9\n", {"a": {"b": []}}, false]"#,
            "\"é 🦀 \\\" \\\\\"".as_bytes(),
        ];
        let alphabet = b"{}[]\":,.-+eE0123456789 \n\\utrfanlsx\x01\xc3\xa9\xff";
        for _ in 0..20_000 {
            let mut bytes = seeds[rng.gen_range(0..seeds.len())].to_vec();
            for _ in 0..rng.gen_range(1..4) {
                let at = rng.gen_range(0..=bytes.len());
                match rng.gen_range(0..3) {
                    0 if at < bytes.len() => {
                        bytes.remove(at);
                    }
                    1 if at < bytes.len() => bytes[at] = alphabet[rng.gen_range(0..alphabet.len())],
                    _ => bytes.insert(at, alphabet[rng.gen_range(0..alphabet.len())]),
                }
            }
            same(&bytes);
        }
    }
}
