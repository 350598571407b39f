//! The storage format of `_schemas`: how each registry change is encoded as a Kafka record and
//! decoded on replay. [`crate::store`]'s module doc describes the format for people; this file
//! is its only implementation.
//!
//! Keys are JSON arrays, as in `__consumer_offsets`: a subject may hold any character but
//! control characters, so no separator is safe, and a JSON array is unambiguous. A key carries
//! no version (the same thing must always have the same key, or compaction would keep stale
//! entries); its first element names the record kind, and a new kind is how keys evolve.

use serde::{Deserialize, Serialize};

use crate::schema::{Compatibility, Mode, Reference, SchemaId, SchemaType};

/// Version written in every value. Readers ignore unknown fields, so adding an optional field
/// keeps version 1; any change an older reader would misread must bump it.
pub(crate) const VALUE_VERSION: u32 = 1;

const KIND_SCHEMA: &str = "schema";
const KIND_CONFIG: &str = "config";
const KIND_MODE: &str = "mode";
const KIND_IDS: &str = "ids";
const KIND_VERSIONS: &str = "versions";

/// Why a stored record cannot be decoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum DecodeError {
    /// The bytes are not a record of any known format.
    Corrupted(String),
    /// The record is of a kind or version this code does not know (a newer writer).
    Unsupported(String),
}

/// What a record is about.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub(crate) enum Key {
    /// One version of a subject: `["schema", subject, version]`.
    Schema { subject: String, version: i32 },
    /// The compatibility level, global (`None`) or of a subject: `["config", subject|null]`.
    Config(Option<String>),
    /// The mode, global or of a subject: `["mode", subject|null]`.
    Mode(Option<String>),
    /// The highest schema id ever given: `["ids"]` (written when a permanent delete could
    /// otherwise make replay forget it).
    Ids,
    /// The highest version a subject ever had: `["versions", subject]` (same reason).
    Versions(String),
}

/// A subject version as stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub(crate) struct SchemaValue {
    pub id: SchemaId,
    #[serde(rename = "schemaType")]
    pub schema_type: SchemaType,
    pub schema: String,
    #[serde(default)]
    pub references: Vec<Reference>,
    #[serde(default)]
    pub deleted: bool,
}

/// A record's value; `None` in [`Record`] is a tombstone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Value {
    Schema(SchemaValue),
    Config(Compatibility),
    Mode(Mode),
    Ids(i32),
    Versions(i32),
}

/// One record of `_schemas`.
pub(crate) type Record = (Key, Option<Value>);

#[derive(Serialize, Deserialize)]
struct SchemaV1 {
    v: u32,
    #[serde(flatten)]
    value: SchemaValue,
}

#[derive(Serialize, Deserialize)]
struct ConfigV1 {
    v: u32,
    compatibility: Compatibility,
}

#[derive(Serialize, Deserialize)]
struct ModeV1 {
    v: u32,
    mode: Mode,
}

#[derive(Serialize, Deserialize)]
struct IdsV1 {
    v: u32,
    max_id: i32,
}

#[derive(Serialize, Deserialize)]
struct VersionsV1 {
    v: u32,
    max_version: i32,
}

#[derive(Deserialize)]
struct Versioned {
    v: Option<u32>,
}

fn json<T: Serialize>(value: &T) -> Vec<u8> {
    serde_json::to_vec(value).expect("strings, integers and enums always serialize to JSON")
}

impl Key {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            Key::Schema { subject, version } => json(&(KIND_SCHEMA, subject, version)),
            Key::Config(subject) => json(&(KIND_CONFIG, subject)),
            Key::Mode(subject) => json(&(KIND_MODE, subject)),
            Key::Ids => json(&(KIND_IDS,)),
            Key::Versions(subject) => json(&(KIND_VERSIONS, subject)),
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let parts: Vec<serde_json::Value> = serde_json::from_slice(bytes)
            .map_err(|e| DecodeError::Corrupted(format!("key is not a JSON array: {e}")))?;
        let shape = |what: &str, e: serde_json::Error| DecodeError::Corrupted(format!("{what} key is malformed: {e}"));
        match parts.first().and_then(serde_json::Value::as_str) {
            Some(KIND_SCHEMA) => {
                let (_, subject, version): (String, String, i32) =
                    serde_json::from_slice(bytes).map_err(|e| shape("schema", e))?;
                if version < 1 {
                    return Err(DecodeError::Corrupted(format!("schema key holds version {version}")));
                }
                Ok(Key::Schema { subject, version })
            }
            Some(KIND_CONFIG) => {
                let (_, subject): (String, Option<String>) =
                    serde_json::from_slice(bytes).map_err(|e| shape("config", e))?;
                Ok(Key::Config(subject))
            }
            Some(KIND_MODE) => {
                let (_, subject): (String, Option<String>) =
                    serde_json::from_slice(bytes).map_err(|e| shape("mode", e))?;
                Ok(Key::Mode(subject))
            }
            Some(KIND_IDS) => {
                let (_,): (String,) = serde_json::from_slice(bytes).map_err(|e| shape("ids", e))?;
                Ok(Key::Ids)
            }
            Some(KIND_VERSIONS) => {
                let (_, subject): (String, String) = serde_json::from_slice(bytes).map_err(|e| shape("versions", e))?;
                Ok(Key::Versions(subject))
            }
            Some(other) => Err(DecodeError::Unsupported(format!("unknown record kind {other:?}"))),
            None => Err(DecodeError::Corrupted("key does not start with a record kind".into())),
        }
    }
}

impl Value {
    pub fn encode(&self) -> Vec<u8> {
        let v = VALUE_VERSION;
        match self {
            Value::Schema(value) => json(&SchemaV1 { v, value: value.clone() }),
            Value::Config(compatibility) => json(&ConfigV1 { v, compatibility: *compatibility }),
            Value::Mode(mode) => json(&ModeV1 { v, mode: *mode }),
            Value::Ids(max_id) => json(&IdsV1 { v, max_id: *max_id }),
            Value::Versions(max_version) => json(&VersionsV1 { v, max_version: *max_version }),
        }
    }

    /// Decodes the value of a record with `key` (not a tombstone).
    pub fn decode(key: &Key, bytes: &[u8]) -> Result<Self, DecodeError> {
        // The version is read on its own first, so a newer layout is reported as such rather
        // than as whatever field it happens to lack.
        let versioned: Versioned = serde_json::from_slice(bytes)
            .map_err(|e| DecodeError::Corrupted(format!("value is not a JSON object: {e}")))?;
        match versioned.v {
            Some(VALUE_VERSION) => {}
            Some(v) => return Err(DecodeError::Unsupported(format!("value format version {v}"))),
            None => return Err(DecodeError::Corrupted("value has no format version \"v\"".into())),
        }
        let bad = |what: &str, e: serde_json::Error| DecodeError::Corrupted(format!("{what} value is malformed: {e}"));
        Ok(match key {
            Key::Schema { .. } => {
                let s: SchemaV1 = serde_json::from_slice(bytes).map_err(|e| bad("schema", e))?;
                if s.value.id.0 < 1 {
                    return Err(DecodeError::Corrupted(format!("schema value holds id {}", s.value.id)));
                }
                Value::Schema(s.value)
            }
            Key::Config(_) => {
                Value::Config(serde_json::from_slice::<ConfigV1>(bytes).map_err(|e| bad("config", e))?.compatibility)
            }
            Key::Mode(_) => Value::Mode(serde_json::from_slice::<ModeV1>(bytes).map_err(|e| bad("mode", e))?.mode),
            Key::Ids => Value::Ids(serde_json::from_slice::<IdsV1>(bytes).map_err(|e| bad("ids", e))?.max_id),
            Key::Versions(_) => Value::Versions(
                serde_json::from_slice::<VersionsV1>(bytes).map_err(|e| bad("versions", e))?.max_version,
            ),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn golden_bytes() {
        // These bytes are the storage format: changing them breaks every existing registry.
        assert_eq!(
            Key::Schema { subject: "orders-value".into(), version: 2 }.encode(),
            br#"["schema","orders-value",2]"#
        );
        assert_eq!(Key::Config(None).encode(), br#"["config",null]"#);
        assert_eq!(Key::Mode(Some("a\"b".into())).encode(), br#"["mode","a\"b"]"#);
        assert_eq!(Key::Ids.encode(), br#"["ids"]"#);
        assert_eq!(Key::Versions("s".into()).encode(), br#"["versions","s"]"#);
        let value = Value::Schema(SchemaValue {
            id: SchemaId(3),
            schema_type: SchemaType::Avro,
            schema: r#""string""#.into(),
            references: vec![Reference { name: "n".into(), subject: "r".into(), version: 1 }],
            deleted: false,
        });
        assert_eq!(
            value.encode(),
            br#"{"v":1,"id":3,"schemaType":"AVRO","schema":"\"string\"","references":[{"name":"n","subject":"r","version":1}],"deleted":false}"#
        );
        assert_eq!(
            Value::Config(Compatibility::FullTransitive).encode(),
            br#"{"v":1,"compatibility":"FULL_TRANSITIVE"}"#
        );
        assert_eq!(Value::Mode(Mode::Readonly).encode(), br#"{"v":1,"mode":"READONLY"}"#);
        assert_eq!(Value::Ids(9).encode(), br#"{"v":1,"max_id":9}"#);
        assert_eq!(Value::Versions(4).encode(), br#"{"v":1,"max_version":4}"#);
    }

    #[test]
    fn round_trips_and_ignores_unknown_fields() {
        let keys = [
            Key::Schema { subject: "s,\u{e9}".into(), version: 7 },
            Key::Config(Some("s".into())),
            Key::Mode(None),
            Key::Ids,
            Key::Versions("x".into()),
        ];
        for k in keys {
            assert_eq!(Key::decode(&k.encode()), Ok(k));
        }
        let k = Key::Config(None);
        assert_eq!(
            Value::decode(&k, br#"{"v":1,"compatibility":"NONE","later":true}"#),
            Ok(Value::Config(Compatibility::None))
        );
    }

    #[test]
    fn unknown_versions_and_kinds_are_named_and_garbage_is_corrupted() {
        assert_eq!(
            Key::decode(br#"["context","x"]"#),
            Err(DecodeError::Unsupported("unknown record kind \"context\"".into()))
        );
        assert_eq!(
            Value::decode(&Key::Ids, br#"{"v":2,"max_id":1}"#),
            Err(DecodeError::Unsupported("value format version 2".into()))
        );
        for bytes in [&b"nope"[..], b"[]", br#"["schema","s"]"#, br#"["schema","s",0]"#, br#"[1]"#] {
            assert!(matches!(Key::decode(bytes), Err(DecodeError::Corrupted(_))), "{bytes:?}");
        }
        let k = Key::Schema { subject: "s".into(), version: 1 };
        for bytes in [&b"{}"[..], br#"{"v":1}"#, br#"{"v":1,"id":0,"schemaType":"AVRO","schema":""}"#] {
            assert!(matches!(Value::decode(&k, bytes), Err(DecodeError::Corrupted(_))), "{bytes:?}");
        }
    }
}
