//! Kafka's variable-length integers (zig-zag encoded, as protobuf's `sint32`/`sint64`), used by
//! the records inside a v2 batch. Decoding never reads past the slice and refuses encodings
//! longer than the type allows, so hostile bytes cannot loop or overflow.

/// Appends `value` zig-zag encoded.
pub fn put_varlong(out: &mut Vec<u8>, value: i64) {
    let mut v = ((value << 1) ^ (value >> 63)) as u64;
    while v >= 0x80 {
        out.push((v as u8) | 0x80);
        v >>= 7;
    }
    out.push(v as u8);
}

/// Appends `value` zig-zag encoded (Kafka's `varint`: same bytes as a varlong of the value).
pub fn put_varint(out: &mut Vec<u8>, value: i32) {
    put_varlong(out, i64::from(value));
}

/// Reads a zig-zag varlong from the front of `input`; returns it and the bytes used.
pub fn get_varlong(input: &[u8]) -> Option<(i64, usize)> {
    let mut raw: u64 = 0;
    for (i, &b) in input.iter().enumerate().take(10) {
        raw |= u64::from(b & 0x7f) << (7 * i);
        if b & 0x80 == 0 {
            if i == 9 && b > 1 {
                return None; // more than 64 bits
            }
            let value = ((raw >> 1) as i64) ^ -((raw & 1) as i64);
            return Some((value, i + 1));
        }
    }
    None
}

/// Reads a zig-zag varint (must fit in `i32`).
pub fn get_varint(input: &[u8]) -> Option<(i32, usize)> {
    let (v, n) = get_varlong(input)?;
    if n > 5 {
        return None;
    }
    i32::try_from(v).ok().map(|v| (v, n))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn known_encodings() {
        let mut out = Vec::new();
        put_varint(&mut out, -1);
        assert_eq!(out, [0x01]);
        out.clear();
        put_varint(&mut out, 300);
        assert_eq!(out, [0xd8, 0x04]);
        assert_eq!(get_varint(&[0xd8, 0x04]), Some((300, 2)));
    }

    #[test]
    fn refuses_overlong_and_truncated() {
        assert_eq!(get_varlong(&[0x80; 11]), None);
        assert_eq!(get_varlong(&[0x80, 0x80]), None);
        assert_eq!(get_varint(&[0xff, 0xff, 0xff, 0xff, 0xff, 0x01]), None);
    }

    proptest! {
        #[test]
        fn varlong_round_trips(v: i64) {
            let mut out = Vec::new();
            put_varlong(&mut out, v);
            prop_assert_eq!(get_varlong(&out), Some((v, out.len())));
        }

        #[test]
        fn varint_round_trips(v: i32) {
            let mut out = Vec::new();
            put_varint(&mut out, v);
            prop_assert_eq!(get_varint(&out), Some((v, out.len())));
        }
    }
}
