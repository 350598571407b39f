//! Topics: the create request, a topic's configuration, and the list and describe replies.
//!
//! The subject name strategies are this crate's own enums rather than the log's or the
//! registry's, so that HTTP clients build with serde alone; the server maps them.

use serde::{Deserialize, Serialize};

/// What happens to old records: Kafka's `cleanup.policy`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum CleanupPolicy {
    /// Delete old records past retention.
    #[default]
    Delete,
    /// Keep the last record per key.
    Compact,
}

/// The hash that places a key the topic has not stored yet when an append names no partition
/// (the HTTP API, the Rust library): choose the one the topic's Kafka producers use, so that a
/// key sent both ways lands in one partition. Changing it moves no stored key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum KeyPartitioner {
    /// Kafka's Java client's default, kafka-python's, librdkafka's `murmur2_random`.
    #[default]
    Murmur2,
    /// librdkafka's default (`consistent_random`): confluent-kafka, kcat, the `rdkafka` crate.
    Crc32,
    /// Sarama's default, librdkafka's `fnv1a_random`.
    Fnv1a,
}

/// How schema validation names the registry subject an HTTP-appended event's data, or a Kafka
/// record's value, is checked against (Confluent's `confluent.value.subject.name.strategy`).
/// Given as Kafka's config value is: the last part of the class name, or the whole of it
/// (`io.confluent.kafka.serializers.subject.TopicNameStrategy`, `evident.subject.EventTypeNameStrategy`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum SubjectNameStrategy {
    /// `<topic>-value` (Confluent's default).
    #[serde(rename = "TopicNameStrategy", alias = "io.confluent.kafka.serializers.subject.TopicNameStrategy")]
    Topic,
    /// The record's full name (Avro record, JSON Schema `title`, Protobuf message); for an HTTP
    /// append, the event type.
    #[serde(rename = "RecordNameStrategy", alias = "io.confluent.kafka.serializers.subject.RecordNameStrategy")]
    Record,
    /// `<topic>-<record full name>`; for an HTTP append, `<topic>-<event type>`.
    #[serde(
        rename = "TopicRecordNameStrategy",
        alias = "io.confluent.kafka.serializers.subject.TopicRecordNameStrategy"
    )]
    TopicRecord,
    /// evident's: `<topic>-<event type>` (the event's `type`, a Kafka record's `ce_type`
    /// header), so each event type has its own subject and evolves on its own.
    #[serde(rename = "EventTypeNameStrategy", alias = "evident.subject.EventTypeNameStrategy")]
    EventType,
}

/// How schema validation names the registry subject a Kafka record's key is checked against
/// (Confluent's `confluent.key.subject.name.strategy`): Confluent's three, by the last part of
/// the class name or the whole of it. evident's event-type strategy names values only.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum KeySubjectNameStrategy {
    /// `<topic>-key` (Confluent's default).
    #[serde(rename = "TopicNameStrategy", alias = "io.confluent.kafka.serializers.subject.TopicNameStrategy")]
    Topic,
    /// The key's record full name (Avro record, JSON Schema `title`, Protobuf message).
    #[serde(rename = "RecordNameStrategy", alias = "io.confluent.kafka.serializers.subject.RecordNameStrategy")]
    Record,
    /// `<topic>-<record full name>`.
    #[serde(
        rename = "TopicRecordNameStrategy",
        alias = "io.confluent.kafka.serializers.subject.TopicRecordNameStrategy"
    )]
    TopicRecord,
}

/// A topic's configuration. Every field is optional on input (defaults shown); unknown keys are
/// refused (`400 malformed_json`). Retention (`retention_ms`, `retention_bytes`) and compaction
/// (`cleanup_policy: compact`) are stored but **not enforced yet**: every record is kept.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields, default)]
pub struct TopicConfig {
    /// Number of partitions. If `partitions` is also given at the top level of `CreateTopic`, the
    /// two must agree (`400 invalid_config`) unless this one is left at 1.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000, default = 1))]
    pub partitions: u32,
    /// Kafka's `retention.ms`; `null` keeps records forever. Stored, not enforced yet.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub retention_ms: Option<i64>,
    /// Kafka's `retention.bytes`; `null` means unbounded. Stored, not enforced yet.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub retention_bytes: Option<i64>,
    /// Kafka's `cleanup.policy`. Stored; neither deletion nor compaction runs yet.
    #[cfg_attr(feature = "openapi", schema(default = "delete"))]
    pub cleanup_policy: CleanupPolicy,
    /// Refuse a record whose key already lives in another partition of the topic
    /// (`409 key_in_other_partition`), because per-entity order holds only within one partition.
    #[cfg_attr(feature = "openapi", schema(default = true))]
    pub key_partition_guard: bool,
    /// The hash new keys are placed with when an append names no partition (Kafka topic config
    /// `evident.key.partitioner`).
    #[cfg_attr(feature = "openapi", schema(default = "murmur2"))]
    pub key_partitioner: KeyPartitioner,
    /// Check each event's `data` (HTTP appends) and each record's value (Kafka produce) against
    /// the schema registry: it must be data of the latest schema of its subject (HTTP) or of the
    /// schema its id names (Kafka), else the append is refused (`422 schema_violation`) and
    /// nothing is stored. With no schema registry running in the server, every append and
    /// produce to the topic is refused rather than stored unchecked. Kafka topic config
    /// `confluent.value.schema.validation`.
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub value_schema_validation: bool,
    /// Check each Kafka record's key against the schema registry. HTTP appends are not checked:
    /// their keys are stream keys, not schema data. Kafka topic config
    /// `confluent.key.schema.validation`.
    #[cfg_attr(feature = "openapi", schema(default = false))]
    pub key_schema_validation: bool,
    /// The subject a value is checked against (`confluent.value.subject.name.strategy`). `null`
    /// (not set): the event-type strategy for HTTP appends (`<topic>-<type>`), TopicNameStrategy
    /// for Kafka produce, as Confluent's default.
    pub value_subject_name_strategy: Option<SubjectNameStrategy>,
    /// The subject a Kafka record's key is checked against
    /// (`confluent.key.subject.name.strategy`). `null` (not set): TopicNameStrategy.
    pub key_subject_name_strategy: Option<KeySubjectNameStrategy>,
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
            value_schema_validation: false,
            key_schema_validation: false,
            value_subject_name_strategy: None,
            key_subject_name_strategy: None,
        }
    }
}

impl TopicConfig {
    /// The warnings a topic with this configuration gets: one per setting that is stored but
    /// not enforced yet, so nobody believes old records are being deleted or compacted.
    pub fn unenforced_warnings(&self) -> Vec<String> {
        let mut warnings = Vec::new();
        if self.retention_ms.is_some() {
            warnings.push("retention_ms is stored but not enforced yet: evident keeps every record".to_string());
        }
        if self.retention_bytes.is_some() {
            warnings.push("retention_bytes is stored but not enforced yet: evident keeps every record".to_string());
        }
        if self.cleanup_policy == CleanupPolicy::Compact {
            warnings.push(
                "cleanup_policy compact is stored but not enforced yet: evident does not compact topics".to_string(),
            );
        }
        warnings
    }
}

/// `POST /v1/topics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"name": "bank", "partitions": 1})))]
#[serde(deny_unknown_fields)]
pub struct CreateTopic {
    /// Kafka's rules: 1 to 249 of `[a-zA-Z0-9._-]`, not `.` or `..`. Names starting with `__` are
    /// reserved for evident's internal topics.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 249, pattern = "^[a-zA-Z0-9._-]+$"))]
    pub name: String,
    /// Number of partitions (default 1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
    pub partitions: Option<u32>,
    /// The configuration; absent fields take their defaults.
    #[serde(default, skip_serializing_if = "Option::is_none", deserialize_with = "crate::objects::optional")]
    pub config: Option<TopicConfig>,
}

/// A topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Topic {
    /// Name.
    pub name: String,
    /// Store-unique id, never reused.
    pub id: u32,
    /// Number of partitions.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 10000))]
    pub partitions: u32,
    /// True for evident's internal topics (names starting with `__`).
    pub internal: bool,
    /// Creation time: RFC 3339, millisecond precision.
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub created: String,
    /// The configuration, every field present.
    pub config: TopicConfig,
}

/// The reply to a topic creation: the topic, and warnings about settings that are stored but
/// not enforced yet.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreatedTopic {
    /// The topic as created.
    #[serde(flatten)]
    pub topic: Topic,
    /// One sentence per setting that is stored but not enforced yet (retention, compaction);
    /// empty when every setting takes effect.
    #[serde(default)]
    pub warnings: Vec<String>,
}

/// `GET /v1/topics`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopicList {
    /// Sorted by name.
    pub topics: Vec<Topic>,
}

/// A partition's offsets and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionOffsets {
    /// Partition number.
    pub partition: u32,
    /// First offset still held.
    pub log_start_offset: u64,
    /// One past the last acknowledged offset.
    pub high_watermark: u64,
    /// Journal bytes the partition's batches take.
    pub size_bytes: u64,
}

/// `GET /v1/topics/{topic}`: a topic with its counts and each partition's offsets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopicDescription {
    /// The topic.
    #[serde(flatten)]
    pub topic: Topic,
    /// Number of entity streams (distinct keys).
    pub streams: u64,
    /// Records held: the sum of `high_watermark - log_start_offset`.
    pub records: u64,
    /// Sum of the partitions' `size_bytes`.
    pub size_bytes: u64,
    /// Each partition's offsets.
    pub partition_offsets: Vec<PartitionOffsets>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_unenforced_settings_warn() {
        assert!(TopicConfig::default().unenforced_warnings().is_empty());
        let config =
            TopicConfig { retention_ms: Some(1000), cleanup_policy: CleanupPolicy::Compact, ..TopicConfig::default() };
        let warnings = config.unenforced_warnings();
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(warnings[0].starts_with("retention_ms"), "{warnings:?}");
        assert!(warnings[1].contains("compact"), "{warnings:?}");
    }

    #[test]
    fn config_refuses_unknown_keys_and_defaults_the_rest() {
        let config: TopicConfig = serde_json::from_str(r#"{"partitions": 3}"#).expect("valid");
        assert_eq!(config, TopicConfig { partitions: 3, ..TopicConfig::default() });
        assert!(serde_json::from_str::<TopicConfig>(r#"{"partitons": 3}"#).is_err());
    }

    #[test]
    fn strategies_take_kafka_config_names() {
        let config: TopicConfig = serde_json::from_str(
            r#"{"value_schema_validation": true, "value_subject_name_strategy": "EventTypeNameStrategy",
                "key_subject_name_strategy": "io.confluent.kafka.serializers.subject.RecordNameStrategy"}"#,
        )
        .expect("valid");
        assert!(config.value_schema_validation && !config.key_schema_validation);
        assert_eq!(config.value_subject_name_strategy, Some(SubjectNameStrategy::EventType));
        assert_eq!(config.key_subject_name_strategy, Some(KeySubjectNameStrategy::Record));
        // Written back with the short name, and an unset strategy as null: every field present.
        let written = serde_json::to_value(&config).expect("json");
        assert_eq!(written["key_subject_name_strategy"], "RecordNameStrategy");
        let written = serde_json::to_value(TopicConfig::default()).expect("json");
        assert_eq!(written["value_subject_name_strategy"], serde_json::Value::Null);
        assert_eq!(written["value_schema_validation"], false);
        for bad in [
            r#"{"value_subject_name_strategy": "TopicName"}"#,
            r#"{"value_subject_name_strategy": "topic_name_strategy"}"#,
            r#"{"key_subject_name_strategy": "EventTypeNameStrategy"}"#,
            r#"{"value_schema_validation": "true"}"#,
        ] {
            assert!(serde_json::from_str::<TopicConfig>(bad).is_err(), "{bad}");
        }
    }
}
