//! Kafka topic configuration names and evident's topic configuration. The ones evident keeps:
//! `cleanup.policy`, `retention.ms`, `retention.bytes` (stored; not yet enforced, as the README
//! says), `message.timestamp.type` (LogAppendTime stamps each batch with its append time),
//! `evident.key.partition.guard` and `evident.key.partitioner` (the hash evident's own front
//! doors place new keys with, so they agree with the topic's Kafka producers), and Confluent's
//! schema validation settings `confluent.{key,value}.schema.validation` and
//! `confluent.{key,value}.subject.name.strategy` (see docs/registry-validation.md). Kafka tuning settings that have no meaning on
//! evident's single journal (segment sizes, replication, flushing, ...) are accepted and
//! ignored so existing tooling works; any other name is refused, so a typo is not lost.

use evident_core::partitioner::KeyPartitioner;
use evident_log::{CleanupPolicy, SubjectNameStrategy, TopicConfig};

/// The name of evident's key-partition guard setting.
pub const KEY_PARTITION_GUARD: &str = "evident.key.partition.guard";

/// The name of the setting that picks the hash new keys are placed with when an append names
/// no partition (HTTP, the Rust library): `murmur2` (default), `crc32` or `fnv1a`.
pub const KEY_PARTITIONER: &str = "evident.key.partitioner";

/// Confluent's setting turning on schema validation of produced values.
pub const VALUE_SCHEMA_VALIDATION: &str = "confluent.value.schema.validation";
/// Confluent's setting turning on schema validation of produced keys.
pub const KEY_SCHEMA_VALIDATION: &str = "confluent.key.schema.validation";
/// Confluent's setting naming how a value's subject is derived.
pub const VALUE_SUBJECT_NAME_STRATEGY: &str = "confluent.value.subject.name.strategy";
/// Confluent's setting naming how a key's subject is derived.
pub const KEY_SUBJECT_NAME_STRATEGY: &str = "confluent.key.subject.name.strategy";

/// Kafka settings accepted and ignored (they tune replication, segments and flushing, which
/// evident does its own way).
const IGNORED: &[&str] = &[
    "min.insync.replicas",
    "segment.bytes",
    "segment.ms",
    "segment.jitter.ms",
    "segment.index.bytes",
    "max.message.bytes",
    "compression.type",
    "unclean.leader.election.enable",
    "flush.messages",
    "flush.ms",
    "index.interval.bytes",
    "delete.retention.ms",
    "min.compaction.lag.ms",
    "max.compaction.lag.ms",
    "min.cleanable.dirty.ratio",
    "preallocate",
    "file.delete.delay.ms",
    "message.downconversion.enable",
    "follower.replication.throttled.replicas",
    "leader.replication.throttled.replicas",
];

/// Whether `name` is a Kafka setting evident accepts and ignores.
pub fn is_ignored(name: &str) -> bool {
    IGNORED.contains(&name)
}

/// Applies one Kafka setting to `config`.
pub fn apply(config: &mut TopicConfig, name: &str, value: Option<&str>) -> Result<(), String> {
    let value = value.unwrap_or("");
    let int = |v: &str| v.parse::<i64>().map_err(|_| format!("{name} must be an integer, not {v:?}"));
    match name {
        "cleanup.policy" => {
            config.cleanup_policy = match value {
                "delete" => CleanupPolicy::Delete,
                "compact" => CleanupPolicy::Compact,
                other => return Err(format!("cleanup.policy must be delete or compact, not {other:?}")),
            }
        }
        "retention.ms" => config.retention_ms = Some(int(value)?).filter(|&v| v >= 0),
        "retention.bytes" => config.retention_bytes = Some(int(value)?).filter(|&v| v >= 0),
        "message.timestamp.type" => {
            config.log_append_time = match value {
                "CreateTime" => false,
                "LogAppendTime" => true,
                other => {
                    return Err(format!(
                        "Invalid value {other} for configuration message.timestamp.type: String must be one of: CreateTime, LogAppendTime"
                    ))
                }
            }
        }
        KEY_PARTITION_GUARD => {
            config.key_partition_guard = match value {
                "true" => true,
                "false" => false,
                other => return Err(format!("{KEY_PARTITION_GUARD} must be true or false, not {other:?}")),
            }
        }
        KEY_PARTITIONER => {
            config.key_partitioner = value.parse::<KeyPartitioner>().map_err(|_| {
                format!(
                    "Invalid value {value} for configuration {KEY_PARTITIONER}: String must be one of: murmur2, crc32, fnv1a"
                )
            })?
        }
        VALUE_SCHEMA_VALIDATION | KEY_SCHEMA_VALIDATION => {
            let on = match value {
                "true" => true,
                "false" => false,
                other => return Err(format!("{name} must be true or false, not {other:?}")),
            };
            if name == VALUE_SCHEMA_VALIDATION {
                config.value_schema_validation = on;
            } else {
                config.key_schema_validation = on;
            }
        }
        VALUE_SUBJECT_NAME_STRATEGY | KEY_SUBJECT_NAME_STRATEGY => {
            let strategy = SubjectNameStrategy::from_class_name(value).ok_or_else(|| {
                format!(
                    "Invalid value {value} for configuration {name}: must be one of {}, {}, {}, {}",
                    SubjectNameStrategy::Topic.class_name(),
                    SubjectNameStrategy::Record.class_name(),
                    SubjectNameStrategy::TopicRecord.class_name(),
                    SubjectNameStrategy::EventType.class_name()
                )
            })?;
            if name == VALUE_SUBJECT_NAME_STRATEGY {
                config.value_subject_name_strategy = Some(strategy);
            } else if strategy == SubjectNameStrategy::EventType {
                // An event type names what a value is; a key has no event type of its own.
                return Err(format!("{} names value subjects only, not keys", strategy.class_name()));
            } else {
                config.key_subject_name_strategy = Some(strategy);
            }
        }
        n if IGNORED.contains(&n) => {}
        other => return Err(format!("unknown topic configuration {other:?}")),
    }
    Ok(())
}

/// Returns a setting whose default is "not set" to that state (IncrementalAlterConfigs'
/// DELETE); false for the settings whose default is a value.
pub fn unset(config: &mut TopicConfig, name: &str) -> bool {
    match name {
        VALUE_SUBJECT_NAME_STRATEGY => config.value_subject_name_strategy = None,
        KEY_SUBJECT_NAME_STRATEGY => config.key_subject_name_strategy = None,
        _ => return false,
    }
    true
}

/// The settings DescribeConfigs reports: (name, value, is the default).
pub fn describe(config: &TopicConfig) -> Vec<(&'static str, String, bool)> {
    let d = TopicConfig::default();
    vec![
        (
            "cleanup.policy",
            match config.cleanup_policy {
                CleanupPolicy::Delete => "delete".to_string(),
                CleanupPolicy::Compact => "compact".to_string(),
            },
            config.cleanup_policy == d.cleanup_policy,
        ),
        ("retention.ms", config.retention_ms.unwrap_or(-1).to_string(), config.retention_ms == d.retention_ms),
        (
            "retention.bytes",
            config.retention_bytes.unwrap_or(-1).to_string(),
            config.retention_bytes == d.retention_bytes,
        ),
        (
            "message.timestamp.type",
            if config.log_append_time { "LogAppendTime" } else { "CreateTime" }.to_string(),
            config.log_append_time == d.log_append_time,
        ),
        (
            KEY_PARTITION_GUARD,
            config.key_partition_guard.to_string(),
            config.key_partition_guard == d.key_partition_guard,
        ),
        (KEY_PARTITIONER, config.key_partitioner.to_string(), config.key_partitioner == d.key_partitioner),
        (
            VALUE_SCHEMA_VALIDATION,
            config.value_schema_validation.to_string(),
            config.value_schema_validation == d.value_schema_validation,
        ),
        (
            KEY_SCHEMA_VALIDATION,
            config.key_schema_validation.to_string(),
            config.key_schema_validation == d.key_schema_validation,
        ),
        (
            VALUE_SUBJECT_NAME_STRATEGY,
            config.value_subject_name_strategy.unwrap_or_default().class_name().to_string(),
            config.value_subject_name_strategy.is_none(),
        ),
        (
            KEY_SUBJECT_NAME_STRATEGY,
            config.key_subject_name_strategy.unwrap_or_default().class_name().to_string(),
            config.key_subject_name_strategy.is_none(),
        ),
    ]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn known_ignored_and_unknown_settings() {
        let mut c = TopicConfig::default();
        apply(&mut c, "cleanup.policy", Some("compact")).expect("ok");
        apply(&mut c, "retention.ms", Some("-1")).expect("ok");
        apply(&mut c, "retention.bytes", Some("1000")).expect("ok");
        apply(&mut c, KEY_PARTITION_GUARD, Some("false")).expect("ok");
        apply(&mut c, "min.insync.replicas", Some("2")).expect("ignored");
        assert_eq!(c.cleanup_policy, CleanupPolicy::Compact);
        assert_eq!(c.retention_ms, None);
        assert_eq!(c.retention_bytes, Some(1000));
        assert!(!c.key_partition_guard);
        assert!(apply(&mut c, "retention.mss", Some("1")).is_err());
        assert!(apply(&mut c, "retention.ms", Some("soon")).is_err());
        let d = describe(&c);
        assert_eq!(d[0], ("cleanup.policy", "compact".to_string(), false));
    }

    #[test]
    fn key_partitioner_is_set_described_and_checked() {
        let mut c = TopicConfig::default();
        assert!(describe(&c).contains(&(KEY_PARTITIONER, "murmur2".to_string(), true)));
        apply(&mut c, KEY_PARTITIONER, Some("crc32")).expect("ok");
        assert_eq!(c.key_partitioner, KeyPartitioner::Crc32);
        assert!(describe(&c).contains(&(KEY_PARTITIONER, "crc32".to_string(), false)));
        apply(&mut c, KEY_PARTITIONER, Some("fnv1a")).expect("ok");
        assert_eq!(c.key_partitioner, KeyPartitioner::Fnv1a);
        // librdkafka's names for its partitioners are not hashes: refused, with the choices.
        let e = apply(&mut c, KEY_PARTITIONER, Some("consistent_random")).expect_err("refused");
        assert!(e.contains("murmur2, crc32, fnv1a"), "{e}");
        assert_eq!(c.key_partitioner, KeyPartitioner::Fnv1a);
    }

    #[test]
    fn schema_validation_settings_are_set_described_and_checked() {
        let mut c = TopicConfig::default();
        assert!(describe(&c).contains(&(VALUE_SCHEMA_VALIDATION, "false".to_string(), true)));
        assert!(describe(&c).contains(&(
            VALUE_SUBJECT_NAME_STRATEGY,
            "io.confluent.kafka.serializers.subject.TopicNameStrategy".to_string(),
            true
        )));
        apply(&mut c, VALUE_SCHEMA_VALIDATION, Some("true")).expect("ok");
        apply(&mut c, KEY_SCHEMA_VALIDATION, Some("true")).expect("ok");
        apply(&mut c, VALUE_SUBJECT_NAME_STRATEGY, Some("evident.subject.EventTypeNameStrategy")).expect("ok");
        apply(&mut c, KEY_SUBJECT_NAME_STRATEGY, Some("io.confluent.kafka.serializers.subject.RecordNameStrategy"))
            .expect("ok");
        assert!(c.value_schema_validation && c.key_schema_validation);
        assert_eq!(c.value_subject_name_strategy, Some(SubjectNameStrategy::EventType));
        assert_eq!(c.key_subject_name_strategy, Some(SubjectNameStrategy::Record));
        assert!(describe(&c).contains(&(VALUE_SCHEMA_VALIDATION, "true".to_string(), false)));
        assert!(describe(&c).contains(&(
            VALUE_SUBJECT_NAME_STRATEGY,
            "evident.subject.EventTypeNameStrategy".to_string(),
            false
        )));
        assert!(apply(&mut c, VALUE_SCHEMA_VALIDATION, Some("yes")).is_err());
        let e = apply(&mut c, VALUE_SUBJECT_NAME_STRATEGY, Some("Nope")).expect_err("refused");
        assert!(e.contains("TopicRecordNameStrategy"), "{e}");
        assert!(apply(&mut c, KEY_SUBJECT_NAME_STRATEGY, Some("EventTypeNameStrategy")).is_err());
        assert_eq!(c.key_subject_name_strategy, Some(SubjectNameStrategy::Record));
    }
}
