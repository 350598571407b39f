//! Snapshots: an aggregate's serialized state at a version, so loading reads the latest
//! snapshot and only the events after it.
//!
//! Snapshots of topic `t` live in the topic `t.snapshots`, one stream per aggregate id, created
//! with `cleanup.policy=compact` (only the latest per key matters; evident does not compact
//! yet, so older snapshots stay readable, which `load_at` uses). Each snapshot record carries
//! the state's schema version ([`crate::Aggregate::SNAPSHOT_VERSION`]) and the aggregate version
//! it covers. A snapshot that cannot be used (another schema version, a shape that no longer
//! decodes, a version beyond the stream) is ignored and the state rebuilt from events: a
//! snapshot is a cache, never a source of truth or of failure.

use std::time::Duration;

use evident_core::{EventData, Version};

use crate::event::{RecordedEvent, SCHEMA_VERSION_HEADER};
use crate::{Aggregate, Error, Result};

/// Event type of snapshot records.
pub const SNAPSHOT_TYPE: &str = "evident.snapshot";
/// Header holding the aggregate version a snapshot covers.
pub const SNAPSHOT_VERSION_HEADER: &str = "evident-snapshot-version";
/// Suffix of the snapshot topic of an aggregate topic.
pub const SNAPSHOT_TOPIC_SUFFIX: &str = ".snapshots";

/// The snapshot topic of an aggregate topic.
pub fn snapshot_topic(topic: &str) -> String {
    format!("{topic}{SNAPSHOT_TOPIC_SUFFIX}")
}

/// When the repository takes a snapshot, after a successful command.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SnapshotPolicy {
    /// Never (the default): load replays the whole stream.
    #[default]
    Never,
    /// Each time the stream's length crosses a multiple of N events.
    EveryEvents(u64),
    /// When the latest snapshot is older than this (or there is none), on the next write.
    EveryInterval(Duration),
}

impl SnapshotPolicy {
    /// Whether to snapshot after a write moved the stream from `before` (None: empty) to
    /// `after`, with the latest snapshot taken at `last_snapshot_ms` (now is `now_ms`).
    pub fn due(&self, before: Option<u64>, after: u64, last_snapshot_ms: Option<i64>, now_ms: i64) -> bool {
        match *self {
            SnapshotPolicy::Never => false,
            SnapshotPolicy::EveryEvents(0) => false,
            SnapshotPolicy::EveryEvents(n) => {
                let len_before = before.map_or(0, |v| v + 1);
                (after + 1) / n > len_before / n
            }
            SnapshotPolicy::EveryInterval(interval) => last_snapshot_ms
                .is_none_or(|at| now_ms.saturating_sub(at) >= i64::try_from(interval.as_millis()).unwrap_or(i64::MAX)),
        }
    }
}

/// A decoded snapshot.
#[derive(Debug, Clone)]
pub struct Snapshot<A> {
    /// The state after the event at `version`.
    pub state: A,
    /// The aggregate version the state covers.
    pub version: Version,
    /// When it was taken (ms since the epoch).
    pub taken_ms: i64,
}

/// The record of a snapshot of `state` at `version`. Its id is derived from the version and
/// the state's schema version, so writing the same snapshot twice stores it once, while code
/// with a newer [`Aggregate::SNAPSHOT_VERSION`] can still snapshot a version that older code
/// snapshotted (the same id would make the log answer "duplicate" and keep the old record,
/// which the new code cannot use).
pub fn encode<A: Aggregate>(state: &A, version: Version) -> Result<EventData> {
    let data = serde_json::to_vec(state).map_err(|e| Error::Encode(format!("snapshot state: {e}")))?;
    let id = format!("snapshot-{version}-s{}", A::SNAPSHOT_VERSION);
    let mut event = EventData::json(id, SNAPSHOT_TYPE, data);
    event.extra_headers = vec![
        (SCHEMA_VERSION_HEADER.into(), Some(A::SNAPSHOT_VERSION.to_string().into_bytes())),
        (SNAPSHOT_VERSION_HEADER.into(), Some(version.to_string().into_bytes())),
    ];
    Ok(event)
}

/// Decodes a snapshot record, or says why it is not usable.
pub fn decode<A: Aggregate>(record: &RecordedEvent) -> std::result::Result<Snapshot<A>, String> {
    if record.event_type.as_deref() != Some(SNAPSHOT_TYPE) {
        return Err(format!("{} is not a snapshot", record.position()));
    }
    let schema = record.schema_version().map_err(|e| e.to_string())?;
    if schema != A::SNAPSHOT_VERSION {
        return Err(format!("snapshot schema version {schema}, the aggregate's is {}", A::SNAPSHOT_VERSION));
    }
    let version = record
        .header_str(SNAPSHOT_VERSION_HEADER)
        .and_then(|v| v.parse::<u64>().ok())
        .map(Version)
        .ok_or_else(|| format!("{} has no valid {SNAPSHOT_VERSION_HEADER}", record.position()))?;
    let state = serde_json::from_slice(&record.data).map_err(|e| format!("snapshot state does not decode: {e}"))?;
    Ok(Snapshot { state, version, taken_ms: record.timestamp_ms })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_n_events_fires_when_a_multiple_is_crossed() {
        let p = SnapshotPolicy::EveryEvents(100);
        assert!(!p.due(None, 98, None, 0)); // 99 events
        assert!(p.due(None, 99, None, 0)); // 100 events
        assert!(p.due(Some(98), 99, None, 0));
        assert!(!p.due(Some(99), 100, None, 0));
        assert!(p.due(Some(150), 250, None, 0)); // a batch that jumps past 200
        assert!(!SnapshotPolicy::EveryEvents(0).due(None, 1000, None, 0));
        assert!(!SnapshotPolicy::Never.due(None, 1000, None, 0));
    }

    #[test]
    fn every_interval_fires_when_the_last_snapshot_is_old_enough() {
        let p = SnapshotPolicy::EveryInterval(Duration::from_secs(60));
        assert!(p.due(None, 0, None, 1_000));
        assert!(!p.due(Some(0), 1, Some(1_000), 30_000));
        assert!(p.due(Some(0), 1, Some(1_000), 61_000));
    }
}
