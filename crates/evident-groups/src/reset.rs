//! The offset-reset planner of `kafka-consumer-groups --reset-offsets`: which partitions a
//! reset covers (its scope) and where each goes (its strategy). The planner is a pure function
//! of the partitions' committed and log offsets, the time, and a timestamp lookup, so every
//! strategy is tested here without a log.

use evident_core::TopicName;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// One topic of a reset scope (Kafka's `--topic t` or `--topic t:0,2`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicScope {
    /// Topic (must exist).
    pub topic: String,
    /// Only these partitions (each must exist); None means every partition of the topic.
    #[serde(default)]
    pub partitions: Option<Vec<u32>>,
}

/// Which partitions a reset covers.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetScope {
    /// `--all-topics`: every partition the group has a committed offset for, in topics that
    /// still exist (as Kafka, partitions without a committed offset are left out).
    AllTopics,
    /// `--topic`, repeated.
    Topics(Vec<TopicScope>),
}

/// Where a reset moves each partition's offset.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ResetStrategy {
    /// `--to-earliest`: the log start offset.
    ToEarliest,
    /// `--to-latest`: the log end offset (high watermark).
    ToLatest,
    /// `--to-current`: the committed offset, or the log end offset for a partition without one.
    ToCurrent,
    /// `--to-offset N`, clamped to the partition's offsets.
    ToOffset(i64),
    /// `--shift-by N`: the committed offset plus N (negative moves back), clamped; refused for a
    /// partition without a committed offset.
    ShiftBy(i64),
    /// `--to-datetime`: the first offset whose record time is at or after this time (ms since
    /// the epoch), or the log end offset if there is none.
    ToDatetime(i64),
    /// `--by-duration`: `ToDatetime(now - duration)`; the duration (ms) must not be negative.
    ByDuration(i64),
}

/// An offset reset: what and where.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetRequest {
    /// Which partitions.
    pub scope: ResetScope,
    /// Where to.
    pub strategy: ResetStrategy,
}

/// One partition of a reset plan (a row of `kafka-consumer-groups --reset-offsets`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResetRow {
    /// Topic.
    pub topic: TopicName,
    /// Partition.
    pub partition: u32,
    /// The committed offset before the reset, if any.
    pub current_offset: Option<u64>,
    /// The offset the reset commits.
    pub new_offset: u64,
    /// First offset of the partition.
    pub log_start_offset: u64,
    /// High watermark of the partition.
    pub log_end_offset: u64,
}

/// A partition a reset covers, with what the planner needs to know of it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResetTarget {
    /// Topic.
    pub topic: TopicName,
    /// Partition.
    pub partition: u32,
    /// The group's committed offset, if any.
    pub committed: Option<u64>,
    /// The partition's first offset.
    pub log_start: u64,
    /// The partition's high watermark.
    pub log_end: u64,
}

/// Plans a reset of `targets` (already in the order the rows should have). `offset_for_time`
/// is the log's ListOffsets by time: the first offset at or after a timestamp, if any.
pub fn plan(
    strategy: ResetStrategy,
    targets: &[ResetTarget],
    now_ms: i64,
    mut offset_for_time: impl FnMut(&TopicName, u32, i64) -> Result<Option<u64>>,
) -> Result<Vec<ResetRow>> {
    if let ResetStrategy::ByDuration(d) = strategy {
        if d < 0 {
            return Err(Error::InvalidReset(format!("duration must not be negative, not {d} ms")));
        }
    }
    let mut rows = Vec::with_capacity(targets.len());
    for t in targets {
        assert!(
            t.log_start <= t.log_end,
            "log start {} past log end {} for {}/{}",
            t.log_start,
            t.log_end,
            t.topic,
            t.partition
        );
        let clamp = |offset: i128| offset.clamp(i128::from(t.log_start), i128::from(t.log_end)) as u64;
        let new_offset = match strategy {
            ResetStrategy::ToEarliest => t.log_start,
            ResetStrategy::ToLatest => t.log_end,
            ResetStrategy::ToCurrent => t.committed.unwrap_or(t.log_end),
            ResetStrategy::ToOffset(n) => clamp(i128::from(n)),
            ResetStrategy::ShiftBy(n) => {
                let Some(committed) = t.committed else {
                    return Err(Error::InvalidReset(format!(
                        "cannot shift the offset of {}/{}: the group has no committed offset for it",
                        t.topic, t.partition
                    )));
                };
                clamp(i128::from(committed) + i128::from(n))
            }
            ResetStrategy::ToDatetime(ms) => offset_at(&mut offset_for_time, t, ms)?,
            ResetStrategy::ByDuration(d) => offset_at(&mut offset_for_time, t, now_ms.saturating_sub(d))?,
        };
        rows.push(ResetRow {
            topic: t.topic.clone(),
            partition: t.partition,
            current_offset: t.committed,
            new_offset,
            log_start_offset: t.log_start,
            log_end_offset: t.log_end,
        });
    }
    Ok(rows)
}

/// The first offset of `t` at or after `ms`, or its end offset when no record is that recent
/// (Kafka's `--to-datetime`).
fn offset_at(
    offset_for_time: &mut impl FnMut(&TopicName, u32, i64) -> Result<Option<u64>>,
    t: &ResetTarget,
    ms: i64,
) -> Result<u64> {
    Ok(match offset_for_time(&t.topic, t.partition, ms)? {
        Some(offset) => offset.clamp(t.log_start, t.log_end),
        None => t.log_end,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(partition: u32, committed: Option<u64>, log_start: u64, log_end: u64) -> ResetTarget {
        ResetTarget { topic: TopicName::new("orders").expect("topic"), partition, committed, log_start, log_end }
    }

    /// Partition 0: committed 5 in [2, 10). Partition 1: nothing committed, [0, 4). Partition 2:
    /// committed 20, beyond its end [0, 8) (Kafka accepts commits past the end).
    fn targets() -> Vec<ResetTarget> {
        vec![target(0, Some(5), 2, 10), target(1, None, 0, 4), target(2, Some(20), 0, 8)]
    }

    /// Record times: partition p's offset o was written at 1000 * (o + 1); the lookup answers
    /// like the log's.
    fn lookup(topic: &TopicName, partition: u32, ms: i64) -> Result<Option<u64>> {
        assert_eq!(topic.as_str(), "orders");
        let end = match partition {
            0 => 10,
            1 => 4,
            _ => 8,
        };
        let start = if partition == 0 { 2 } else { 0 };
        Ok((start..end).find(|o| 1000 * (*o as i64 + 1) >= ms))
    }

    /// The new offsets of `targets()` under `strategy` at time 100_000.
    fn check(strategy: ResetStrategy, expect: [u64; 3]) {
        let rows = plan(strategy, &targets(), 100_000, lookup).expect("plan");
        let got: Vec<u64> = rows.iter().map(|r| r.new_offset).collect();
        assert_eq!(got, expect, "{strategy:?}");
        let current: Vec<Option<u64>> = rows.iter().map(|r| r.current_offset).collect();
        assert_eq!(current, [Some(5), None, Some(20)]);
    }

    #[test]
    fn strategies() {
        check(ResetStrategy::ToEarliest, [2, 0, 0]);
        check(ResetStrategy::ToLatest, [10, 4, 8]);
        check(ResetStrategy::ToCurrent, [5, 4, 20]);
        check(ResetStrategy::ToOffset(3), [3, 3, 3]);
        check(ResetStrategy::ToOffset(-7), [2, 0, 0]);
        check(ResetStrategy::ToOffset(i64::MAX), [10, 4, 8]);
        check(ResetStrategy::ToDatetime(3_500), [3, 3, 3]);
        check(ResetStrategy::ToDatetime(i64::MIN), [2, 0, 0]);
        check(ResetStrategy::ToDatetime(9_000), [8, 4, 8]);
        check(ResetStrategy::ByDuration(100_000 - 3_500), [3, 3, 3]);
        check(ResetStrategy::ByDuration(0), [10, 4, 8]);
    }

    #[test]
    fn shift_by_clamps_and_needs_a_committed_offset() {
        let committed = [target(0, Some(5), 2, 10), target(2, Some(20), 0, 8)];
        let shift = |n| plan(ResetStrategy::ShiftBy(n), &committed, 0, lookup).expect("plan");
        assert_eq!(shift(-2).iter().map(|r| r.new_offset).collect::<Vec<_>>(), [3, 8]);
        assert_eq!(shift(-100).iter().map(|r| r.new_offset).collect::<Vec<_>>(), [2, 0]);
        assert_eq!(shift(i64::MAX).iter().map(|r| r.new_offset).collect::<Vec<_>>(), [10, 8]);
        let err = plan(ResetStrategy::ShiftBy(1), &targets(), 0, lookup).unwrap_err();
        let expect = "cannot shift the offset of orders/1: the group has no committed offset for it";
        assert!(matches!(&err, Error::InvalidReset(m) if m == expect), "{err}");
    }

    #[test]
    fn a_negative_duration_is_refused() {
        let err = plan(ResetStrategy::ByDuration(-1), &targets(), 0, lookup).unwrap_err();
        assert!(matches!(&err, Error::InvalidReset(m) if m == "duration must not be negative, not -1 ms"), "{err}");
    }

    #[test]
    fn rows_carry_the_partition_offsets() {
        let rows = plan(ResetStrategy::ToEarliest, &targets()[..1], 0, lookup).expect("plan");
        let expect = ResetRow {
            topic: TopicName::new("orders").expect("topic"),
            partition: 0,
            current_offset: Some(5),
            new_offset: 2,
            log_start_offset: 2,
            log_end_offset: 10,
        };
        assert_eq!(rows, [expect]);
    }

    #[test]
    fn json_shape() {
        let request = ResetRequest {
            scope: ResetScope::Topics(vec![TopicScope { topic: "orders".into(), partitions: Some(vec![0, 2]) }]),
            strategy: ResetStrategy::ShiftBy(-3),
        };
        let json = serde_json::to_string(&request).expect("json");
        assert_eq!(json, r#"{"scope":{"topics":[{"topic":"orders","partitions":[0,2]}]},"strategy":{"shift_by":-3}}"#);
        let all: ResetRequest =
            serde_json::from_str(r#"{"scope":"all_topics","strategy":"to_earliest"}"#).expect("parse");
        assert_eq!(all, ResetRequest { scope: ResetScope::AllTopics, strategy: ResetStrategy::ToEarliest });
    }
}
