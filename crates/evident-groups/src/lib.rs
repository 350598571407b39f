//! `evident-groups`: Kafka consumer groups for evident, shared by the HTTP API and the Kafka
//! protocol listener. A [`GroupStore`] keeps each group's committed offsets durably in the log
//! itself, in the internal topic [`OFFSETS_TOPIC`] (`__consumer_offsets`, one partition), as
//! Kafka does; tracks members and their sessions in memory; and answers the questions of
//! `kafka-consumer-groups`: list, describe (with lag), delete, and reset offsets.
//!
//! Architecture invariant: this crate reads and writes offsets only through [`evident_log::Log`]'s
//! public API and reads time only through the injected [`Clock`](evident_log::clock::Clock).
//! The server must refuse client produces to, and deletion of, `__consumer_offsets`
//! ([`is_internal_topic`]): the store is its only writer.
//!
//! # Storage format (version 1)
//!
//! Every commit, delete or executed reset is **one record batch, one append**, so it is atomic
//! and durable (synced) when the call returns. Each record is about one
//! (group, topic, partition):
//!
//! - **key**: the JSON array `["offset", group, topic, partition]`, e.g.
//!   `["offset","billing","orders",3]`. JSON makes the key unambiguous whatever characters the
//!   group holds. The first element is the record kind; the key carries no version, so that the
//!   same partition always has the same key (compaction keeps the latest per key).
//! - **value**: the JSON object `{"v":1,"offset":N,"metadata":null|"text","commit_time_ms":T}`,
//!   where `offset` is the next offset to consume and `commit_time_ms` comes from the store's
//!   clock; `"leader_epoch":E` follows when the commit carried Kafka's committed leader epoch
//!   (an optional field added within version 1). Readers ignore unknown fields, so an optional field may be added within version 1;
//!   anything an older reader would misread must bump `v`.
//! - a **null value** (tombstone) deletes the key's committed offset.
//!
//! The record's timestamp is the commit time too; records carry no headers. The topic is
//! created with `cleanup.policy=compact`, as Kafka's is.
//!
//! On [`GroupStore::open`] the topic is replayed from offset 0 to its high watermark and each
//! record applied in offset order. A record that cannot be decoded stops the open with
//! [`Error::Corrupted`] (the log checksums it, so it is a bug or damage, never to be skipped);
//! an unknown record kind or value version stops it with [`Error::UnsupportedFormat`], naming
//! it (written by a newer evident).
//!
//! # Semantics (those of Kafka's `ConsumerGroupCommand`, except where said)
//!
//! - **Group ids** are 1 to 255 bytes of UTF-8 without control characters, else
//!   [`Error::InvalidGroup`].
//! - **Commits** name existing topics and partitions (else the log's `UnknownTopic` or
//!   `UnknownPartition`, and nothing is written); at most [`OFFSETS_PER_COMMIT_MAX`] offsets,
//!   metadata up to [`METADATA_LEN_MAX`] bytes, offsets up to `i64::MAX` (else
//!   [`Error::InvalidCommit`]). An offset past the log end is accepted, as Kafka does.
//! - **Concurrency**: commits run concurrently and share the log's group-commit sync; the
//!   store's lock is never held across an append. The last record in log order wins for each
//!   key, in memory exactly as on replay.
//! - **State**: a group exists while it has a committed offset or an active member. It is
//!   `Stable` with active members and `Empty` with only offsets. Lag is `log end - committed`
//!   (0 if the commit is ahead); the total lag is the sum of the known lags.
//! - **Members** are held in memory only (after a restart clients rejoin, as their heartbeats
//!   are answered "unknown member"). A member's session ends when `session_timeout_ms` passes
//!   after its last join or heartbeat; expired members are removed whenever their group is
//!   looked at.
//! - **Delete** writes a tombstone for each committed offset; refused with
//!   [`Error::GroupNotEmpty`] while the group has active members, [`Error::UnknownGroup`] if it
//!   does not exist.
//! - **Reset scope**: all topics = every partition the group has a committed offset for, in
//!   topics that still exist; a topic = all its partitions; a topic with partitions = only
//!   those (each must exist). An empty list is [`Error::InvalidReset`].
//! - **Reset strategies**: to-earliest = log start; to-latest = log end (high watermark);
//!   to-current = the committed offset, or the log end without one; to-offset N = N clamped to
//!   [log start, log end]; shift-by N = committed + N clamped ([`Error::InvalidReset`] naming the
//!   partition if it has no committed offset); to-datetime T = the first offset whose record
//!   time is at or after T, or the log end; by-duration D = to-datetime (now - D), D >= 0.
//! - [`GroupStore::plan_reset`] changes nothing (Kafka's dry run, which evident also allows on
//!   an active group); [`GroupStore::execute_reset`] commits the plan as one batch with no
//!   metadata, and is refused with [`Error::GroupNotEmpty`] while the group has active members.
//!
//! # Example
//!
//! ```
//! use std::sync::Arc;
//! use evident_groups::{GroupStore, OffsetCommit, ResetRequest, ResetScope, ResetStrategy};
//! use evident_log::{clock::SystemClock, Log, LogConfig, TopicConfig};
//!
//! let dir = tempfile::tempdir()?;
//! let log = Arc::new(Log::open(dir.path(), LogConfig::default())?);
//! log.create_topic("orders", TopicConfig::default())?;
//! let groups = GroupStore::open(log.clone(), Arc::new(SystemClock))?;
//! let commit = OffsetCommit { topic: "orders".into(), partition: 0, offset: 0, metadata: None, leader_epoch: None };
//! groups.commit("billing", &[commit])?;
//! assert_eq!(groups.committed("billing", None)?[0].offset, 0);
//!
//! let request = ResetRequest { scope: ResetScope::AllTopics, strategy: ResetStrategy::ToLatest };
//! let plan = groups.plan_reset("billing", &request)?;
//! assert_eq!(plan[0].new_offset, 0); // the topic is empty
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```

mod error;
mod group;
mod members;
mod record;
mod reset;
mod store;

pub use error::{Error, Result};
pub use group::{
    validate_group, CommittedOffset, GroupDescription, GroupState, GroupSummary, OffsetCommit, PartitionLag,
    GROUP_LEN_MAX,
};
pub use members::{
    MemberDescription, MemberInfo, TopicPartitions, ASSIGNMENT_PARTITIONS_MAX, MEMBERS_PER_GROUP_MAX,
    MEMBER_FIELD_LEN_MAX, SESSION_TIMEOUT_MAX_MS, SESSION_TIMEOUT_MIN_MS,
};
pub use reset::{plan as plan_reset, ResetRequest, ResetRow, ResetScope, ResetStrategy, ResetTarget, TopicScope};
pub use store::{check_commit, GroupStore, METADATA_LEN_MAX, OFFSETS_PER_COMMIT_MAX};

/// The internal topic that holds committed offsets.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// The internal topic of the schema registry (`evident_registry::SCHEMAS_TOPIC`, named here
/// because this crate is the one every front door already asks; a test in `evident-registry`
/// keeps the two equal).
pub const SCHEMAS_TOPIC: &str = "_schemas";

/// The internal topic of the SQL views' definitions (`evident_sql::catalog::CATALOG_TOPIC`,
/// named here for the same reason; a test in `evident-sql` keeps the two equal).
pub const SQL_TOPIC: &str = "_evident_sql";

/// Whether `topic` is internal to evident (clients may read it but not write or delete it):
/// `__consumer_offsets`, the schema registry's `_schemas` and the SQL catalog's `_evident_sql`.
pub fn is_internal_topic(topic: &str) -> bool {
    topic == OFFSETS_TOPIC || topic == SCHEMAS_TOPIC || topic == SQL_TOPIC
}
