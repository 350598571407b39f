//! The path and query parameters of each route, as structs: clients serialize them into URLs,
//! and with the `openapi` feature they document the routes' parameters (`IntoParams`). The
//! server refuses a query parameter a route does not take (`400 invalid_argument`), so a typo
//! such as `?form_version=3` is not silently ignored.

use serde::{Deserialize, Serialize};

/// `{topic}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Path))]
pub struct TopicPath {
    /// Topic name.
    #[cfg_attr(feature = "openapi", param(min_length = 1, max_length = 249))]
    pub topic: String,
}

/// `{topic}` and `{key}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Path))]
pub struct StreamPath {
    /// Topic name.
    #[cfg_attr(feature = "openapi", param(min_length = 1, max_length = 249))]
    pub topic: String,
    /// Stream key: the URL path segment, percent-decoded (`%2F` for a `/`). 1 to 4096 bytes, else
    /// `400 invalid_stream_key`.
    #[cfg_attr(feature = "openapi", param(min_length = 1))]
    pub key: String,
}

/// `{topic}` and `{partition}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Path))]
pub struct PartitionPath {
    /// Topic name.
    #[cfg_attr(feature = "openapi", param(min_length = 1, max_length = 249))]
    pub topic: String,
    /// Partition number.
    pub partition: u32,
}

/// `{group}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Path))]
pub struct GroupPath {
    /// Consumer group id: 1 to 255 bytes, no control characters (else `400 invalid_group`).
    #[cfg_attr(feature = "openapi", param(min_length = 1, max_length = 255, pattern = "^[^\\x00-\\x1f\\x7f-\\x9f]+$"))]
    pub group: String,
}

/// `{projection}`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Path))]
pub struct ProjectionPath {
    /// Projection name; its dead-letter topic `<projection>.dlq` must be a valid topic name (else
    /// `400 invalid_projection`).
    #[cfg_attr(feature = "openapi", param(min_length = 1, max_length = 245, pattern = "^[a-zA-Z0-9._-]+$"))]
    pub projection: String,
}

/// The query of `GET /v1/topics`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct TopicListQuery {
    /// Also list evident's internal topics (`__consumer_offsets`): `true` (or empty, as in
    /// `?internal`) or `false`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(value_type = Option<String>, pattern = "^(true|false|)$"))]
    pub internal: Option<bool>,
}

/// The query of an append.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct AppendQuery {
    /// `any`, `no_stream`, `stream_exists`, or a version (plain decimal digits), instead of the
    /// body's `expected_version` (giving both is `400 invalid_argument`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(pattern = "^(any|no_stream|stream_exists|[0-9]+)$"))]
    pub expected_version: Option<String>,
}

/// Which way a stream read goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ReadDirection {
    /// Oldest first.
    #[default]
    Forward,
    /// Newest first.
    Backward,
}

/// The query of a stream read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct StreamReadQuery {
    /// First version to return (default: the first, or the last when reading backward).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(format = "uint64"))]
    pub from_version: Option<u64>,
    /// Most events to return (1 to 10000, default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 10000))]
    pub limit: Option<u64>,
    /// `forward` (default) or `backward`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(inline))]
    pub direction: Option<ReadDirection>,
    /// Read the stream as it was at this version (later events are left out).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(format = "uint64"))]
    pub as_of_version: Option<u64>,
    /// Read the stream as it was at this time: RFC 3339, a date-time in UTC, or milliseconds
    /// since the epoch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_of_time: Option<String>,
}

/// The query of a partition read.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct PartitionReadQuery {
    /// First offset to return (default: the log start offset). Not with `timestamp`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(format = "uint64"))]
    pub offset: Option<u64>,
    /// Start at the first record at or after this time (RFC 3339, a date-time in UTC, or
    /// milliseconds since the epoch). Not with `offset`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<String>,
    /// Most records to return (1 to 10000, default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 10000))]
    pub limit: Option<u64>,
}

/// The query of `GET /v1/all`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct AllQuery {
    /// First commit sequence to return (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(format = "uint64"))]
    pub from_sequence: Option<u64>,
    /// Most events to examine (1 to 10000, default 100).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(minimum = 1, maximum = 10000))]
    pub limit: Option<u64>,
}

/// The query of `GET /v1/subscribe`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct SubscribeQuery {
    /// Topic to follow.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// Stream key to follow (with `topic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(min_length = 1))]
    pub key: Option<String>,
    /// Partition to follow (with `topic`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// Stream subscription: first version to deliver (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(format = "uint64"))]
    pub from_version: Option<u64>,
    /// Partition subscription: first offset to deliver (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(format = "uint64"))]
    pub from_offset: Option<u64>,
    /// Topic or everything subscription: first commit sequence to deliver (default 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", param(format = "uint64"))]
    pub from_sequence: Option<u64>,
}

/// The query of `GET /v1/groups/{group}/offsets`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::IntoParams))]
#[cfg_attr(feature = "openapi", into_params(parameter_in = Query))]
pub struct OffsetsQuery {
    /// Only this topic's offsets.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
}
