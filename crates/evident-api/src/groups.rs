//! Consumer groups: list, describe, committed offsets, commits and `reset-offsets`.

use serde::{Deserialize, Serialize};

/// A group's state, as far as evident tracks it (Kafka's names). The embedded store's groups
/// are `Stable` or `Empty`; a node on a Kafka cluster also shows a group rebalancing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
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

/// A group in a list.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupSummary {
    /// Group id.
    pub group: String,
    /// State.
    pub state: GroupState,
    /// Number of active members.
    pub members: u64,
    /// Number of partitions with a committed offset.
    pub committed_partitions: u64,
}

/// `GET /v1/groups`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupList {
    /// By name.
    pub groups: Vec<GroupSummary>,
}

/// Partitions of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TopicPartitions {
    /// Topic.
    pub topic: String,
    /// Partition numbers.
    pub partitions: Vec<u32>,
}

/// An active member of a group.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's host.
    pub client_host: String,
    /// Session timeout; `null` on a node in front of a Kafka cluster (Kafka's DescribeGroups
    /// does not tell).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub session_timeout_ms: Option<u32>,
    /// When the member last joined or heartbeated (ms since the epoch); `null` on a node in
    /// front of a Kafka cluster.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub last_heartbeat_ms: Option<i64>,
    /// Partitions the member consumes.
    pub assignment: Vec<TopicPartitions>,
}

/// A partition the group has committed for or is assigned.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartitionLag {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Committed offset, if any.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub committed_offset: Option<u64>,
    /// Metadata of the commit.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub metadata: Option<String>,
    /// When the commit was made (ms since the epoch).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub commit_time_ms: Option<i64>,
    /// `null` if the topic or partition no longer exists.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub log_start_offset: Option<u64>,
    /// High watermark; `null` if the topic or partition no longer exists.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub log_end_offset: Option<u64>,
    /// `log_end_offset - committed_offset` (0 if the commit is ahead); `null` when either is
    /// unknown.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub lag: Option<u64>,
    /// The member consuming the partition, if one is assigned it.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub member_id: Option<String>,
}

/// `GET /v1/groups/{group}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupDescription {
    /// Group id.
    pub group: String,
    /// State.
    pub state: GroupState,
    /// Active members, by member id.
    pub members: Vec<MemberDescription>,
    /// By topic and partition.
    pub offsets: Vec<PartitionLag>,
    /// Sum of the known lags.
    pub total_lag: u64,
}

/// A committed offset.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CommittedOffset {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The next offset the group will consume (last processed + 1).
    pub offset: u64,
    /// The consumer's metadata.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub metadata: Option<String>,
    /// When the commit was made (ms since the epoch, the store's clock); `null` on a node in
    /// front of a Kafka cluster (Kafka's OffsetFetch does not tell).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub commit_time_ms: Option<i64>,
}

/// `GET` and `POST /v1/groups/{group}/offsets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct GroupOffsets {
    /// Group id.
    pub group: String,
    /// By topic and partition.
    pub offsets: Vec<CommittedOffset>,
}

/// One offset to commit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct OffsetCommit {
    /// Must exist (`404 unknown_topic`).
    pub topic: String,
    /// Must exist (`404 unknown_partition`).
    pub partition: u32,
    /// The next offset the group will consume (Kafka's convention: last processed + 1).
    #[cfg_attr(feature = "openapi", schema(maximum = 9223372036854775807_u64))]
    pub offset: u64,
    /// Free text kept with the offset (at most 4096 bytes).
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(max_length = 4096))]
    pub metadata: Option<String>,
}

/// `POST /v1/groups/{group}/offsets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct CommitOffsets {
    /// Committed atomically; when a partition appears twice the later entry wins.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 10000))]
    #[serde(deserialize_with = "crate::objects::list")]
    pub offsets: Vec<OffsetCommit>,
}

/// A time for `to_datetime`: text or milliseconds since the epoch.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum DateTimeArg {
    /// `YYYY-MM-DDTHH:mm:SS[.sss]` with an optional zone (none means UTC), RFC 3339, or
    /// milliseconds as text.
    Text(String),
    /// Milliseconds since the epoch.
    Millis(i64),
}

/// The flags of `kafka-consumer-groups --reset-offsets`. Exactly one scope (`topics` or
/// `all_topics`) and exactly one strategy (`to_earliest`, `to_latest`, `to_current`,
/// `to_offset`, `shift_by`, `to_datetime`, `by_duration`); otherwise `400 invalid_argument`.
/// Without `"execute": true` it is a plan that changes nothing.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"topics": ["bank", "orders:0,2"], "to_earliest": true})))]
#[serde(deny_unknown_fields, default)]
pub struct ResetOffsets {
    /// Scope: topics, each `topic` (every partition) or `topic:0,2` (those partitions).
    pub topics: Vec<String>,
    /// Scope: every partition the group has a committed offset for, in topics that still exist.
    pub all_topics: bool,
    /// Strategy: the log start offset.
    pub to_earliest: bool,
    /// Strategy: the log end offset (high watermark).
    pub to_latest: bool,
    /// Strategy: the committed offset, or the log end offset for a partition without one.
    pub to_current: bool,
    /// Strategy: this offset, clamped to the partition's offsets.
    pub to_offset: Option<i64>,
    /// Strategy: the committed offset plus N (negative moves back), clamped; refused for a
    /// partition without a committed offset.
    pub shift_by: Option<i64>,
    /// Strategy: the first offset whose record time is at or after this time, or the log end
    /// offset if there is none.
    pub to_datetime: Option<DateTimeArg>,
    /// Strategy: `to_datetime` of now minus this ISO 8601 duration (`PT1H`, `P1DT2H`; days are 24
    /// hours; not negative).
    pub by_duration: Option<String>,
    /// Commit the plan. Refused (`409 group_not_empty`) while the group has active members. A
    /// group that does not exist yet is created.
    pub execute: bool,
}

/// One partition of a reset plan (a row of `kafka-consumer-groups --reset-offsets`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResetRow {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// The committed offset before the reset, if any.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub current_offset: Option<u64>,
    /// The offset the reset commits.
    pub new_offset: u64,
    /// First offset of the partition.
    pub log_start_offset: u64,
    /// High watermark.
    pub log_end_offset: u64,
}

/// The reply to `reset-offsets`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ResetPlan {
    /// Group id.
    pub group: String,
    /// Whether the offsets were committed (`execute: true`) or only planned.
    pub executed: bool,
    /// By topic and partition.
    pub offsets: Vec<ResetRow>,
}
