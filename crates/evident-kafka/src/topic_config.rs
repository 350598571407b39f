//! Kafka topic configuration names and evident's topic configuration. The ones evident keeps:
//! `cleanup.policy`, `retention.ms`, `retention.bytes` (stored; not yet enforced, as the README
//! says), `message.timestamp.type` (LogAppendTime stamps each batch with its append time),
//! `evident.key.partition.guard` and `evident.key.partitioner` (the hash evident's own front
//! doors place new keys with, so they agree with the topic's Kafka producers). Kafka tuning settings that have no meaning on
//! evident's single journal (segment sizes, replication, flushing, ...) are accepted and
//! ignored so existing tooling works; any other name is refused, so a typo is not lost.

use evident_core::partitioner::KeyPartitioner;
use evident_log::{CleanupPolicy, TopicConfig};

/// The name of evident's key-partition guard setting.
pub const KEY_PARTITION_GUARD: &str = "evident.key.partition.guard";

/// The name of the setting that picks the hash new keys are placed with when an append names
/// no partition (HTTP, the Rust library): `murmur2` (default), `crc32` or `fnv1a`.
pub const KEY_PARTITIONER: &str = "evident.key.partitioner";

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
        n if IGNORED.contains(&n) => {}
        other => return Err(format!("unknown topic configuration {other:?}")),
    }
    Ok(())
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
}
