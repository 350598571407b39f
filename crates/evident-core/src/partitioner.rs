//! The key partitioners of the Kafka clients: which partition a keyed record goes to when the
//! producer does not name one. Kafka clients disagree: the Java client and kafka-python hash
//! with murmur2, librdkafka (confluent-kafka, kcat, the `rdkafka` crate) with CRC32 by default,
//! Sarama with FNV-1a. evident keeps each key in one partition (the key-partition guard), so a
//! topic names the hash its own front doors (the HTTP API, the Rust library) place new keys
//! with ([`KeyPartitioner`]), and a refused record can be explained by computing the key's
//! partition under each of them ([`KeyPartitioner::placing`]).

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// A key hash a Kafka client partitions with, and the partition it picks for a key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum KeyPartitioner {
    /// Kafka's Java client's default (`BuiltInPartitioner`), kafka-python's, librdkafka's
    /// `murmur2`/`murmur2_random`: `(murmur2(key) & 0x7fffffff) % partitions`.
    #[default]
    Murmur2,
    /// librdkafka's default (`consistent_random`) and `consistent`: `crc32(key) % partitions`,
    /// CRC-32 as zlib computes it.
    Crc32,
    /// Sarama's default (`NewHashPartitioner`), librdkafka's `fnv1a`/`fnv1a_random`:
    /// `|fnv1a_32(key) as i32| % partitions`.
    Fnv1a,
}

impl KeyPartitioner {
    /// Every partitioner, in the order a refusal lists them.
    pub const ALL: [KeyPartitioner; 3] = [KeyPartitioner::Murmur2, KeyPartitioner::Crc32, KeyPartitioner::Fnv1a];

    /// The name used in topic configuration (`evident.key.partitioner`) and messages.
    pub fn name(self) -> &'static str {
        match self {
            KeyPartitioner::Murmur2 => "murmur2",
            KeyPartitioner::Crc32 => "crc32",
            KeyPartitioner::Fnv1a => "fnv1a",
        }
    }

    /// Whether this is the default (murmur2), so a stored configuration can leave it out.
    pub fn is_default(&self) -> bool {
        *self == KeyPartitioner::default()
    }

    /// The partition this partitioner picks for `key` among `partitions` (> 0).
    pub fn partition(self, key: &[u8], partitions: u32) -> u32 {
        assert!(partitions > 0, "a topic has at least one partition");
        match self {
            KeyPartitioner::Murmur2 => ((murmur2(key) & 0x7fff_ffff) as u32) % partitions,
            KeyPartitioner::Crc32 => crc32(key) % partitions,
            KeyPartitioner::Fnv1a => fnv1a(key) % partitions,
        }
    }

    /// The partitioners that put `key` in `partition` among `partitions`: what a producer that
    /// sent it there may be using. Empty when none does (the producer named the partition
    /// itself, or partitions with a hash evident does not know).
    pub fn placing(key: &[u8], partitions: u32, partition: u32) -> Vec<KeyPartitioner> {
        Self::ALL.into_iter().filter(|p| p.partition(key, partitions) == partition).collect()
    }
}

impl fmt::Display for KeyPartitioner {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A name that is not a known partitioner.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown key partitioner {0:?}: murmur2, crc32 or fnv1a")]
pub struct UnknownPartitioner(pub String);

impl FromStr for KeyPartitioner {
    type Err = UnknownPartitioner;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Self::ALL.into_iter().find(|p| p.name() == s).ok_or_else(|| UnknownPartitioner(s.to_string()))
    }
}

/// Kafka's `Utils.murmur2` (seed 0x9747b28c), on the key's bytes.
pub fn murmur2(data: &[u8]) -> i32 {
    const SEED: u32 = 0x9747_b28c;
    const M: u32 = 0x5bd1_e995;
    const R: u32 = 24;
    let len = data.len();
    let mut h: u32 = SEED ^ (len as u32);
    let mut chunks = data.chunks_exact(4);
    for chunk in &mut chunks {
        let mut k = u32::from_le_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
        k = k.wrapping_mul(M);
        k ^= k >> R;
        k = k.wrapping_mul(M);
        h = h.wrapping_mul(M);
        h ^= k;
    }
    let rest = chunks.remainder();
    if rest.len() >= 3 {
        h ^= u32::from(rest[2]) << 16;
    }
    if rest.len() >= 2 {
        h ^= u32::from(rest[1]) << 8;
    }
    if !rest.is_empty() {
        h ^= u32::from(rest[0]);
        h = h.wrapping_mul(M);
    }
    h ^= h >> 13;
    h = h.wrapping_mul(M);
    h ^= h >> 15;
    h as i32
}

/// CRC-32 (IEEE 802.3 polynomial, reflected, as zlib and librdkafka's `rd_crc32` compute it).
pub fn crc32(data: &[u8]) -> u32 {
    crc32fast::hash(data)
}

/// 32-bit FNV-1a, then the absolute value of it read as a signed integer: librdkafka's
/// `rd_fnv1a`, which takes it to match Sarama's `NewHashPartitioner` (Go's `hash/fnv`, then
/// `-(h % n)` for a negative `h`, the same partition). `i32::MIN` stays 2^31 in both.
pub fn fnv1a(data: &[u8]) -> u32 {
    const OFFSET: u32 = 0x811c_9dc5;
    const PRIME: u32 = 0x0100_0193;
    let h = data.iter().fold(OFFSET, |h, &b| (h ^ u32::from(b)).wrapping_mul(PRIME));
    (h as i32).unsigned_abs()
}

/// The partition Kafka's default partitioner (murmur2) picks for `key` among `partitions` (> 0).
pub fn partition_for_key(key: &[u8], partitions: u32) -> u32 {
    KeyPartitioner::Murmur2.partition(key, partitions)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn murmur2_matches_kafka_reference_values() {
        // Values from Kafka's UtilsTest.testMurmur2.
        let cases: [(&[u8], i32); 4] = [
            (b"21", -973932308),
            (b"foobar", -790332482),
            (b"a-little-bit-long-string", -985981536),
            (b"a-little-bit-longer-string", -1486304829),
        ];
        for (input, expected) in cases {
            assert_eq!(murmur2(input), expected, "{:?}", std::str::from_utf8(input));
        }
    }

    /// librdkafka's tests/0048-partitioner.c: the hash each partitioner must give its keys
    /// (CRC32 from the `crc32` command, murmur2 from the Java client, FNV-1a from Go's
    /// `hash/fnv`); a partition is that hash modulo the partition count.
    #[test]
    fn hashes_match_librdkafka_partitioner_test() {
        let keys: [&[u8]; 4] = [b"", b"23456", b"this is another string with more length to it perhaps", b"hejsan"];
        let crc: [u32; 4] = [0x0, 0xb1b4_51d7, 0xb015_0df7, 0xd077_037e];
        let murmur: [u32; 4] = [0x106e_08d9, 0x058d_780f, 0x4f77_03da, 0x5ec1_9395];
        let fnv: [u32; 4] = [0x7ee3_623b, 0x27e6_f469, 0x155e_3e5f, 0x17b1_e27a];
        for (i, key) in keys.iter().enumerate() {
            assert_eq!(crc32(key), crc[i], "crc32 {key:?}");
            assert_eq!((murmur2(key) & 0x7fff_ffff) as u32, murmur[i], "murmur2 {key:?}");
            assert_eq!(fnv1a(key), fnv[i], "fnv1a {key:?}");
            for parts in [7u32, 17] {
                assert_eq!(KeyPartitioner::Crc32.partition(key, parts), crc[i] % parts);
                assert_eq!(KeyPartitioner::Murmur2.partition(key, parts), murmur[i] % parts);
                assert_eq!(KeyPartitioner::Fnv1a.partition(key, parts), fnv[i] % parts);
            }
        }
    }

    /// librdkafka's rdfnv1a.c unit test (values from Go's `hash/fnv`, taken absolute).
    #[test]
    fn fnv1a_matches_go_reference_values() {
        let cases: [(&[u8], u32); 6] = [
            (b"kafka", 0x0d33_c4e1),
            (b"giberish123456789", 0x77a5_8295),
            (b"1234", 0x023b_dd03),
            (b"234", 0x2dea_3cd2),
            (b"PreAmbleWillBeRemoved,ThePrePartThatIs", 0x65cb_d69c),
            (b"", 0x7ee3_623b),
        ];
        for (input, expected) in cases {
            assert_eq!(fnv1a(input), expected, "{:?}", std::str::from_utf8(input));
        }
    }

    #[test]
    fn crc32_check_value() {
        assert_eq!(crc32(b"123456789"), 0xcbf4_3926);
    }

    #[test]
    fn names_round_trip_and_unknown_ones_are_refused() {
        for p in KeyPartitioner::ALL {
            assert_eq!(p.name().parse::<KeyPartitioner>(), Ok(p));
            assert_eq!(serde_json::to_string(&p).expect("json"), format!("\"{}\"", p.name()));
        }
        assert!("consistent_random".parse::<KeyPartitioner>().is_err());
        assert!(KeyPartitioner::default().is_default());
        assert!(!KeyPartitioner::Crc32.is_default());
    }

    #[test]
    fn partition_is_in_range_and_placing_finds_the_hash() {
        for n in 1..10u32 {
            for p in KeyPartitioner::ALL {
                let at = p.partition(b"order-42", n);
                assert!(at < n);
                assert!(KeyPartitioner::placing(b"order-42", n, at).contains(&p));
            }
        }
        // With one partition every hash agrees; past the last partition none does.
        assert_eq!(KeyPartitioner::placing(b"k", 1, 0), KeyPartitioner::ALL.to_vec());
        assert!(KeyPartitioner::placing(b"k", 8, 8).is_empty());
        assert_eq!(partition_for_key(b"order-42", 8), KeyPartitioner::Murmur2.partition(b"order-42", 8));
    }
}
