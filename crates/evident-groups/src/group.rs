//! A consumer group in memory, and the shapes in which groups are shown: committed offsets,
//! summaries, descriptions with lag. Also the group id rules.

use std::collections::BTreeMap;

use evident_core::TopicName;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::members::{Member, MemberDescription};
use crate::record::OffsetValue;

/// Longest group id, in bytes. Kafka sets no limit, but a group id is part of every key in
/// `__consumer_offsets` and of every request, so evident bounds it like a topic name.
pub const GROUP_LEN_MAX: usize = 255;

/// Checks a group id: 1 to [`GROUP_LEN_MAX`] bytes of UTF-8 without control characters (they
/// would make ids that look alike in every tool that prints them).
pub fn validate_group(group: &str) -> Result<()> {
    if group.is_empty() {
        return Err(Error::InvalidGroup("group id is empty".into()));
    }
    if group.len() > GROUP_LEN_MAX {
        return Err(Error::InvalidGroup(format!(
            "group id is {} bytes long; at most {GROUP_LEN_MAX} are allowed",
            group.len()
        )));
    }
    if let Some(bad) = group.chars().find(|c| c.is_control()) {
        return Err(Error::InvalidGroup(format!("group id {group:?} holds the control character {bad:?}")));
    }
    Ok(())
}

/// One offset to commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OffsetCommit {
    /// Topic (must exist).
    pub topic: String,
    /// Partition (must exist).
    pub partition: u32,
    /// The next offset the group will consume (Kafka's convention: last processed + 1).
    pub offset: u64,
    /// Free text the consumer keeps with the offset (Kafka's commit metadata).
    #[serde(default)]
    pub metadata: Option<String>,
    /// The leader epoch of the last record consumed (Kafka's `committed_leader_epoch`, KIP-320),
    /// kept so that OffsetFetch hands it back; None when the client sent none (-1).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_epoch: Option<i32>,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CommittedOffset {
    /// Topic.
    pub topic: TopicName,
    /// Partition.
    pub partition: u32,
    /// The next offset the group will consume.
    pub offset: u64,
    /// The consumer's metadata.
    pub metadata: Option<String>,
    /// The leader epoch the consumer committed with, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub leader_epoch: Option<i32>,
    /// When the commit was made (ms since the epoch, the store's clock); `None` for a group on
    /// a Kafka cluster, whose OffsetFetch does not tell.
    pub commit_time_ms: Option<i64>,
}

/// Kafka's group states, as far as evident tracks them. evident's own store reports `Stable`
/// or `Empty`; a group on a Kafka cluster (`evident serve --storage kafka://`) may also be
/// rebalancing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum GroupState {
    /// Active members consume for the group.
    Stable,
    /// Only committed offsets remain.
    Empty,
    /// Members are (re)joining.
    PreparingRebalance,
    /// The members joined and wait for their assignment.
    CompletingRebalance,
}

impl GroupState {
    /// Kafka's name of the state (ListGroups, DescribeGroups, `kafka-consumer-groups`).
    pub fn kafka_name(self) -> &'static str {
        match self {
            Self::Stable => "Stable",
            Self::Empty => "Empty",
            Self::PreparingRebalance => "PreparingRebalance",
            Self::CompletingRebalance => "CompletingRebalance",
        }
    }
}

/// A group in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupSummary {
    /// Group id.
    pub group: String,
    /// State.
    pub state: GroupState,
    /// Number of active members.
    pub members: usize,
    /// Number of partitions with a committed offset.
    pub committed_partitions: usize,
}

/// One row of a group description: a partition the group has committed for or is assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionLag {
    /// Topic.
    pub topic: TopicName,
    /// Partition.
    pub partition: u32,
    /// Committed offset, if any.
    pub committed_offset: Option<u64>,
    /// Metadata of the commit.
    pub metadata: Option<String>,
    /// When the commit was made.
    pub commit_time_ms: Option<i64>,
    /// First offset of the partition; None if the topic or partition no longer exists.
    pub log_start_offset: Option<u64>,
    /// High watermark of the partition; None if the topic or partition no longer exists.
    pub log_end_offset: Option<u64>,
    /// `log_end_offset - committed_offset` (0 if the commit is ahead); None when either is
    /// unknown.
    pub lag: Option<u64>,
    /// The member consuming the partition, if one is assigned it.
    pub member_id: Option<String>,
}

impl PartitionLag {
    /// A row of `topic`/`partition` with nothing known yet (filled in by a description).
    pub fn blank(topic: &TopicName, partition: u32) -> Self {
        Self {
            topic: topic.clone(),
            partition,
            committed_offset: None,
            metadata: None,
            commit_time_ms: None,
            log_start_offset: None,
            log_end_offset: None,
            lag: None,
            member_id: None,
        }
    }
}

/// What `describe` tells about a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct GroupDescription {
    /// Group id.
    pub group: String,
    /// State.
    pub state: GroupState,
    /// Active members, by member id.
    pub members: Vec<MemberDescription>,
    /// Committed and assigned partitions, by topic and partition.
    pub offsets: Vec<PartitionLag>,
    /// Sum of the known lags.
    pub total_lag: u64,
}

/// The latest record seen for one (topic, partition) of a group.
#[derive(Debug, Clone)]
pub(crate) struct Slot {
    /// Offset of the record in `__consumer_offsets`: the log-order position that decides which
    /// of two records for the same key is the newer.
    pub order: u64,
    /// The committed offset, or None after a tombstone. Tombstones stay while appends are in
    /// flight, so that an older commit finishing late cannot resurrect a deleted offset.
    pub value: Option<OffsetValue>,
}

/// A group in memory.
#[derive(Debug, Clone, Default)]
pub(crate) struct Group {
    pub offsets: BTreeMap<(TopicName, u32), Slot>,
    pub members: BTreeMap<String, Member>,
}

impl Group {
    /// Live committed offsets, by topic and partition.
    pub fn committed(&self) -> impl Iterator<Item = (&(TopicName, u32), &OffsetValue)> {
        self.offsets.iter().filter_map(|(k, slot)| slot.value.as_ref().map(|v| (k, v)))
    }

    /// Whether the group exists for its users: it has a committed offset or a member.
    pub fn exists(&self) -> bool {
        !self.members.is_empty() || self.committed().next().is_some()
    }

    pub fn state(&self) -> GroupState {
        if self.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        }
    }

    pub fn summary(&self, name: &str) -> GroupSummary {
        GroupSummary {
            group: name.to_string(),
            state: self.state(),
            members: self.members.len(),
            committed_partitions: self.committed().count(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn group_ids() {
        assert!(validate_group("billing").is_ok());
        assert!(validate_group("équipe ünïcode / with spaces, commas \"and\" quotes").is_ok());
        assert!(validate_group(&"g".repeat(255)).is_ok());
        let cases = [
            (String::new(), "group id is empty"),
            ("g".repeat(256), "group id is 256 bytes long; at most 255 are allowed"),
            ("a\nb".to_string(), "group id \"a\\nb\" holds the control character '\\n'"),
            ("a\u{7f}".to_string(), "group id \"a\\u{7f}\" holds the control character '\\u{7f}'"),
        ];
        for (group, expect) in cases {
            let err = validate_group(&group).unwrap_err();
            assert!(matches!(&err, Error::InvalidGroup(m) if m == expect), "{err}");
        }
    }
}
