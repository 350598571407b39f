//! Topics: their names, ids and configuration. A topic's metadata is written to the journal as
//! a frame when it is created (and a tombstone when deleted), so the catalog is recovered by the
//! same replay, and ordered with the same commit protocol, as the records it describes.

use evident_core::partitioner::KeyPartitioner;
use evident_core::TopicName;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// What happens to old records (kept for Kafka's `cleanup.policy`; enforcement comes with
/// retention and compaction, which the log does not run yet).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CleanupPolicy {
    /// Delete old segments past retention.
    #[default]
    Delete,
    /// Keep the last record per key.
    Compact,
}

/// How schema validation names the registry subject a record's key or value belongs to
/// (Confluent's `confluent.{key,value}.subject.name.strategy`). Kept here because it is part of
/// a topic's persisted configuration; `evident-registry` turns it into subject names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SubjectNameStrategy {
    /// `<topic>-key` / `<topic>-value` (Confluent's default).
    #[default]
    Topic,
    /// The record's full name (Avro record, JSON Schema `title`, Protobuf message).
    Record,
    /// `<topic>-<record full name>`.
    TopicRecord,
    /// evident's: `<topic>-<event type>`, the event type being the `ce_type` header, so each
    /// event type of a stream has its own subject and its own evolution.
    EventType,
}

impl SubjectNameStrategy {
    /// The Kafka config value naming this strategy: Confluent's class names, and evident's own.
    pub fn class_name(self) -> &'static str {
        match self {
            SubjectNameStrategy::Topic => "io.confluent.kafka.serializers.subject.TopicNameStrategy",
            SubjectNameStrategy::Record => "io.confluent.kafka.serializers.subject.RecordNameStrategy",
            SubjectNameStrategy::TopicRecord => "io.confluent.kafka.serializers.subject.TopicRecordNameStrategy",
            SubjectNameStrategy::EventType => "evident.subject.EventTypeNameStrategy",
        }
    }

    /// The strategy a Kafka config value names: the full class name or its last component.
    pub fn from_class_name(name: &str) -> Option<Self> {
        [Self::Topic, Self::Record, Self::TopicRecord, Self::EventType].into_iter().find(|s| {
            let class = s.class_name();
            name == class || class.rsplit('.').next() == Some(name)
        })
    }

    /// Whether this is the default (not written to the catalog then).
    pub fn is_default(&self) -> bool {
        *self == Self::default()
    }
}

/// A topic's configuration, persisted with the topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct TopicConfig {
    /// Number of partitions (1 to [`TopicConfig::PARTITIONS_MAX`]).
    pub partitions: u32,
    /// Kafka's `retention.ms`; None keeps records forever (evident's default: an event store
    /// is a system of record).
    pub retention_ms: Option<i64>,
    /// Kafka's `retention.bytes`; None means unbounded.
    pub retention_bytes: Option<i64>,
    /// Kafka's `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// Refuse a record whose key already lives in another partition of the topic, because
    /// per-entity ordering holds only within one partition.
    pub key_partition_guard: bool,
    /// The hash that places a key the topic has not seen when the append does not name a
    /// partition (the HTTP API, the Rust library): murmur2 as Kafka's Java client, or the one
    /// the topic's Kafka producers use, so that they and evident agree. Changing it moves no
    /// stored key: a known key is appended where it lives. Not written when murmur2, so a
    /// catalog of a topic without it reads the same as before it existed.
    #[serde(skip_serializing_if = "KeyPartitioner::is_default")]
    pub key_partitioner: KeyPartitioner,
    /// Kafka's `message.timestamp.type=LogAppendTime`: each batch is stamped with the time the
    /// log appends it. Not written when false, so the catalog of a topic without it reads the
    /// same as before it existed.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub log_append_time: bool,
    /// `confluent.value.schema.validation`: a produced or appended value must be data of a
    /// schema registered for its subject. Not written when false (as the fields above).
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub value_schema_validation: bool,
    /// `confluent.key.schema.validation`: the same for keys.
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    pub key_schema_validation: bool,
    /// `confluent.value.subject.name.strategy`; `None` when not set, which Kafka produce
    /// reads as TopicNameStrategy (Confluent's default) and HTTP appends as the event-type
    /// strategy (an HTTP append always names its event type).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub value_subject_name_strategy: Option<SubjectNameStrategy>,
    /// `confluent.key.subject.name.strategy`; `None` is TopicNameStrategy.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub key_subject_name_strategy: Option<SubjectNameStrategy>,
}

impl Default for TopicConfig {
    fn default() -> Self {
        Self {
            partitions: 1,
            retention_ms: None,
            retention_bytes: None,
            cleanup_policy: CleanupPolicy::Delete,
            key_partition_guard: true,
            key_partitioner: KeyPartitioner::Murmur2,
            log_append_time: false,
            value_schema_validation: false,
            key_schema_validation: false,
            value_subject_name_strategy: None,
            key_subject_name_strategy: None,
        }
    }
}

impl TopicConfig {
    /// Most partitions a topic may have; bounds the memory a create request can claim.
    pub const PARTITIONS_MAX: u32 = 10_000;

    /// Checks the values.
    pub fn validate(&self) -> Result<()> {
        if self.partitions == 0 || self.partitions > Self::PARTITIONS_MAX {
            return Err(Error::InvalidConfig(format!(
                "partitions must be between 1 and {}, not {}",
                Self::PARTITIONS_MAX,
                self.partitions
            )));
        }
        if let Some(ms) = self.retention_ms {
            if ms < 1 {
                return Err(Error::InvalidConfig(format!("retention_ms must be positive, not {ms}")));
            }
        }
        if let Some(b) = self.retention_bytes {
            if b < 1 {
                return Err(Error::InvalidConfig(format!("retention_bytes must be positive, not {b}")));
            }
        }
        Ok(())
    }
}

/// A topic as recorded in the journal.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicMeta {
    /// Store-unique id, never reused, so records of a deleted topic never leak into a new
    /// topic of the same name.
    pub id: u32,
    /// Name.
    pub name: TopicName,
    /// Configuration.
    pub config: TopicConfig,
    /// Creation time (ms since the epoch).
    pub created_ms: i64,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn config_bounds() {
        assert!(TopicConfig::default().validate().is_ok());
        let bad = TopicConfig { partitions: 0, ..TopicConfig::default() };
        assert!(matches!(bad.validate(), Err(Error::InvalidConfig(_))));
        let bad = TopicConfig { retention_ms: Some(0), ..TopicConfig::default() };
        assert!(bad.validate().is_err());
    }

    #[test]
    fn config_json_refuses_unknown_fields() {
        let parsed: TopicConfig = serde_json::from_str(r#"{"partitions":3}"#).expect("valid");
        assert_eq!(parsed.partitions, 3);
        assert!(parsed.key_partition_guard);
        assert!(serde_json::from_str::<TopicConfig>(r#"{"partitons":3}"#).is_err());
    }

    /// The partitioner is stored only when it is not murmur2, so catalogs written before it
    /// existed, and topics that keep the default, read and write the same bytes.
    #[test]
    fn key_partitioner_is_stored_only_when_chosen() {
        let default = serde_json::to_string(&TopicConfig::default()).expect("json");
        assert!(!default.contains("key_partitioner"), "{default}");
        let crc = TopicConfig { key_partitioner: KeyPartitioner::Crc32, ..TopicConfig::default() };
        let json = serde_json::to_string(&crc).expect("json");
        assert!(json.contains(r#""key_partitioner":"crc32""#), "{json}");
        assert_eq!(serde_json::from_str::<TopicConfig>(&json).expect("parse"), crc);
    }

    /// Schema validation settings round-trip through the catalog and are absent when unset.
    #[test]
    fn schema_validation_is_stored_only_when_chosen() {
        let default = serde_json::to_string(&TopicConfig::default()).expect("json");
        assert!(!default.contains("schema"), "{default}");
        let on = TopicConfig {
            value_schema_validation: true,
            value_subject_name_strategy: Some(SubjectNameStrategy::EventType),
            ..TopicConfig::default()
        };
        let json = serde_json::to_string(&on).expect("json");
        assert!(json.contains(r#""value_subject_name_strategy":"event_type""#), "{json}");
        assert_eq!(serde_json::from_str::<TopicConfig>(&json).expect("parse"), on);
        assert_eq!(
            SubjectNameStrategy::from_class_name("io.confluent.kafka.serializers.subject.RecordNameStrategy"),
            Some(SubjectNameStrategy::Record)
        );
        assert_eq!(
            SubjectNameStrategy::from_class_name("TopicRecordNameStrategy"),
            Some(SubjectNameStrategy::TopicRecord)
        );
        assert_eq!(SubjectNameStrategy::from_class_name("RecordName"), None);
    }
}
