//! The storage format of `__consumer_offsets`: how one committed offset (or its deletion) is
//! encoded as a Kafka record, and decoded on replay. The crate docs describe the format for
//! people; this file is its only implementation.
//!
//! Keys are JSON arrays rather than a separator-joined string because a group id may hold any
//! character but control characters, so no separator is safe; a JSON array is unambiguous for
//! every name. The key carries no version: a key must stay byte-identical for the same
//! (group, topic, partition) across versions, or compaction would keep stale entries. Its first
//! element names the record kind instead, and a new kind is how the key format evolves.

use evident_core::TopicName;
use serde::{Deserialize, Serialize};

/// First element of an offset key.
pub(crate) const KIND_OFFSET: &str = "offset";

/// Version written in every value. Readers ignore unknown fields, so adding an optional field
/// keeps version 1; any change an older reader would misread must bump it.
pub(crate) const VALUE_VERSION: u32 = 1;

/// Why a stored record cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The bytes are not a record of any known format.
    Corrupted(String),
    /// The record is of a kind or version this code does not know (a newer writer).
    Unsupported(String),
}

/// Which committed offset a record is about.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct OffsetKey {
    pub group: String,
    pub topic: TopicName,
    pub partition: u32,
}

/// A committed offset as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct OffsetValue {
    pub offset: u64,
    pub metadata: Option<String>,
    pub commit_time_ms: i64,
    pub leader_epoch: Option<i32>,
}

#[derive(Serialize, Deserialize)]
struct ValueV1<'a> {
    v: u32,
    offset: u64,
    #[serde(borrow)]
    metadata: Option<std::borrow::Cow<'a, str>>,
    commit_time_ms: i64,
    /// Optional within version 1 (older readers ignore it; older records lack it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    leader_epoch: Option<i32>,
}

#[derive(Deserialize)]
struct Versioned {
    v: Option<u32>,
}

impl OffsetKey {
    /// The record key: `["offset",group,topic,partition]`.
    pub fn encode(&self) -> Vec<u8> {
        serde_json::to_vec(&(KIND_OFFSET, &self.group, self.topic.as_str(), self.partition))
            .expect("a tuple of strings and an integer always serializes to JSON")
    }

    /// Decodes a record key.
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let parts: Vec<serde_json::Value> = serde_json::from_slice(bytes)
            .map_err(|e| DecodeError::Corrupted(format!("key is not a JSON array: {e}")))?;
        match parts.first().and_then(serde_json::Value::as_str) {
            Some(KIND_OFFSET) => {}
            Some(other) => return Err(DecodeError::Unsupported(format!("unknown record kind {other:?}"))),
            None => return Err(DecodeError::Corrupted("key does not start with a record kind".into())),
        }
        let (_, group, topic, partition): (String, String, String, u32) = serde_json::from_slice(bytes)
            .map_err(|e| DecodeError::Corrupted(format!("offset key is not [kind, group, topic, partition]: {e}")))?;
        crate::group::validate_group(&group)
            .map_err(|e| DecodeError::Corrupted(format!("offset key holds an invalid group: {e}")))?;
        let topic = TopicName::new(topic)
            .map_err(|e| DecodeError::Corrupted(format!("offset key holds an invalid topic: {e}")))?;
        Ok(Self { group, topic, partition })
    }
}

impl OffsetValue {
    /// The record value: `{"v":1,"offset":N,"metadata":...,"commit_time_ms":T}`.
    pub fn encode(&self) -> Vec<u8> {
        let value = ValueV1 {
            v: VALUE_VERSION,
            offset: self.offset,
            metadata: self.metadata.as_deref().map(std::borrow::Cow::Borrowed),
            commit_time_ms: self.commit_time_ms,
            leader_epoch: self.leader_epoch,
        };
        serde_json::to_vec(&value).expect("a struct of integers and strings always serializes to JSON")
    }

    /// Decodes a record value (not a tombstone: the caller handles null values).
    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        // The version is read on its own first, so a newer layout is reported as such rather
        // than as whatever field it happens to lack.
        let versioned: Versioned = serde_json::from_slice(bytes)
            .map_err(|e| DecodeError::Corrupted(format!("value is not a JSON object: {e}")))?;
        match versioned.v {
            Some(VALUE_VERSION) => {}
            Some(v) => return Err(DecodeError::Unsupported(format!("value format version {v}"))),
            None => return Err(DecodeError::Corrupted("value has no format version \"v\"".into())),
        }
        let value: ValueV1<'_> = serde_json::from_slice(bytes)
            .map_err(|e| DecodeError::Corrupted(format!("value is not a version 1 offset: {e}")))?;
        if value.offset > i64::MAX as u64 {
            return Err(DecodeError::Corrupted(format!("offset {} exceeds Kafka's range", value.offset)));
        }
        Ok(Self {
            offset: value.offset,
            metadata: value.metadata.map(std::borrow::Cow::into_owned),
            commit_time_ms: value.commit_time_ms,
            leader_epoch: value.leader_epoch,
        })
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn key(group: &str, topic: &str, partition: u32) -> OffsetKey {
        OffsetKey { group: group.into(), topic: TopicName::new(topic).expect("topic"), partition }
    }

    #[test]
    fn golden_bytes() {
        // These bytes are the storage format: changing them breaks every existing store.
        assert_eq!(key("billing", "orders", 3).encode(), br#"["offset","billing","orders",3]"#);
        assert_eq!(key("a\"b\\c,", "t", 0).encode(), br#"["offset","a\"b\\c,","t",0]"#);
        let value = OffsetValue {
            offset: 42,
            metadata: Some("m".into()),
            commit_time_ms: 1_700_000_000_000,
            leader_epoch: None,
        };
        assert_eq!(value.encode(), br#"{"v":1,"offset":42,"metadata":"m","commit_time_ms":1700000000000}"#);
        let value = OffsetValue { offset: 0, metadata: None, commit_time_ms: 5, leader_epoch: None };
        assert_eq!(value.encode(), br#"{"v":1,"offset":0,"metadata":null,"commit_time_ms":5}"#);
        let value = OffsetValue { leader_epoch: Some(3), ..value };
        assert_eq!(value.encode(), br#"{"v":1,"offset":0,"metadata":null,"commit_time_ms":5,"leader_epoch":3}"#);
        assert_eq!(OffsetValue::decode(&value.encode()), Ok(value.clone()));
    }

    #[test]
    fn unknown_versions_and_kinds_are_named() {
        let err = OffsetValue::decode(br#"{"v":2,"offset":1}"#).unwrap_err();
        assert_eq!(err, DecodeError::Unsupported("value format version 2".into()));
        let err = OffsetKey::decode(br#"["member","g","m"]"#).unwrap_err();
        assert_eq!(err, DecodeError::Unsupported("unknown record kind \"member\"".into()));
    }

    #[test]
    fn malformed_records_are_corrupted() {
        for bytes in [&b"nope"[..], br#"{"offset":1,"commit_time_ms":0}"#, br#"{"v":1,"offset":-1}"#] {
            assert!(matches!(OffsetValue::decode(bytes), Err(DecodeError::Corrupted(_))), "{bytes:?}");
        }
        for bytes in [
            &b"{}"[..],
            b"[]",
            br#"[1,"g","t",0]"#,
            br#"["offset","g","t"]"#,
            br#"["offset","g","bad topic",0]"#,
            br#"["offset","","t",0]"#,
            br#"["offset","g","t",-1]"#,
        ] {
            assert!(matches!(OffsetKey::decode(bytes), Err(DecodeError::Corrupted(_))), "{bytes:?}");
        }
    }

    #[test]
    fn readers_ignore_unknown_fields_within_a_version() {
        let value = OffsetValue::decode(br#"{"v":1,"offset":7,"metadata":null,"commit_time_ms":3,"later_field":9}"#)
            .expect("decode");
        assert_eq!(value, OffsetValue { offset: 7, metadata: None, commit_time_ms: 3, leader_epoch: None });
    }

    proptest! {
        #[test]
        fn round_trip(
            group in "[^\\p{Cc}]{1,60}",
            topic in "[a-zA-Z0-9._-]{1,40}",
            partition in any::<u32>(),
            offset in 0..=i64::MAX as u64,
            metadata in proptest::option::of("\\PC{0,80}"),
            commit_time_ms in any::<i64>(),
            leader_epoch in proptest::option::of(0..=i32::MAX),
        ) {
            prop_assume!(topic != "." && topic != "..");
            let k = key(&group, &topic, partition);
            prop_assert_eq!(OffsetKey::decode(&k.encode()), Ok(k));
            let v = OffsetValue { offset, metadata, commit_time_ms, leader_epoch };
            prop_assert_eq!(OffsetValue::decode(&v.encode()), Ok(v));
        }
    }
}
