//! Projections' dead-letter queues: summaries, entries, and the retry and skip requests.

use serde::{Deserialize, Serialize};

/// A projection with a dead-letter topic.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLetterSummary {
    /// Projection name.
    pub projection: String,
    /// `<projection>.dlq`.
    pub topic: String,
    /// Streams with at least one entry.
    pub streams: u64,
    /// Entries whose handler failed.
    pub parked: u64,
    /// Entries held behind a parked one of their stream.
    pub held: u64,
}

/// `GET /v1/dead-letters`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLetterList {
    /// By projection name.
    pub projections: Vec<DeadLetterSummary>,
}

/// Why an entry is in the queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum EntryKind {
    /// The handler failed on it.
    Parked,
    /// Held behind a parked event of its stream.
    Held,
}

/// An event still parked or held, as the dead-letter records describe it; a field the records
/// did not carry is `null`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLetterEntry {
    /// The original event's commit sequence: the entry's identity.
    pub sequence: u64,
    /// Parked or held.
    pub kind: EntryKind,
    /// The original event's topic.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub topic: Option<String>,
    /// The original event's partition.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub partition: Option<u32>,
    /// The original event's offset.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub offset: Option<u64>,
    /// The original event's type.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub event_type: Option<String>,
    /// The original event's id.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub event_id: Option<String>,
    /// The handler's last error (a failed retry's, once there was one).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub error: Option<String>,
    /// How many times the handler was tried (0 for held entries).
    pub attempts: u32,
    /// When the entry was parked or held (the record's timestamp).
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub parked_at: String,
}

/// The entries of one original stream.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLetterStream {
    /// The original stream, `topic/key`.
    pub stream: String,
    /// In the original order.
    pub entries: Vec<DeadLetterEntry>,
}

/// `GET /v1/dead-letters/{projection}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DeadLetterQueue {
    /// Projection name.
    pub projection: String,
    /// Its dead-letter topic.
    pub topic: String,
    /// Sorted by stream; only streams with entries.
    pub streams: Vec<DeadLetterStream>,
}

/// `POST /v1/dead-letters/{projection}/retry`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct RetryDeadLetters {
    /// The original stream, `topic/key`.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 4096))]
    pub stream: String,
}

/// `POST /v1/dead-letters/{projection}/skip`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SkipDeadLetter {
    /// The original stream, `topic/key`.
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 4096))]
    pub stream: String,
    /// The entry to skip, which must be the stream's first (default: the first).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
}

/// The request that was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum Requested {
    /// A retry of the stream's entries.
    Retry,
    /// A skip of the stream's first entry.
    Skip,
}

/// The reply to a retry request (`202`: recorded, carried out by the projection's runner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RetryRequested {
    /// `retry`.
    pub requested: Requested,
    /// The original stream.
    pub stream: String,
    /// The stream's entries when the request was made.
    #[cfg_attr(feature = "openapi", schema(minimum = 1))]
    pub entries: u64,
}

/// The reply to a skip request (`202`: recorded, carried out by the projection's runner).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SkipRequested {
    /// `skip`.
    pub requested: Requested,
    /// The original stream.
    pub stream: String,
    /// The entry to be skipped.
    pub sequence: u64,
}
