//! The limits of the HTTP API that clients must respect, in one place: a client that pages with
//! a larger `limit` than [`READ_LIMIT_MAX`] is refused, so the server, the CLI and the library's
//! HTTP backend read these constants instead of spelling the numbers again.

/// Most events one read returns (`limit` of stream, partition and `/v1/all` reads).
pub const READ_LIMIT_MAX: usize = 10_000;

/// Events one read returns when `limit` is absent.
pub const READ_LIMIT_DEFAULT: usize = 100;

/// Most events one append request carries.
pub const EVENTS_PER_APPEND_MAX: usize = 10_000;

/// Most offsets one commit request carries (the group store's own bound).
pub const OFFSETS_PER_COMMIT_MAX: usize = 10_000;

/// Longest event `type` and event `id`, in bytes.
pub const EVENT_TYPE_LEN_MAX: usize = 256;

/// Longest stream key, in bytes (the log's bound on keys).
pub const STREAM_KEY_LEN_MAX: usize = 4096;

/// Longest consumer group id, in bytes (Kafka's).
pub const GROUP_LEN_MAX: usize = 255;

/// Longest topic name (Kafka's rule).
pub const TOPIC_NAME_LEN_MAX: usize = 249;

/// Longest commit metadata, in bytes.
pub const METADATA_LEN_MAX: usize = 4096;

/// Most partitions a topic may have.
pub const PARTITIONS_MAX: u32 = 10_000;

/// Events a live subscription reads per page: what a slow subscriber can hold in the server.
pub const SUBSCRIBE_PAGE: usize = 256;

/// Longest request target (path and query) the server reads; a longer one is `414`.
pub const URI_LEN_MAX: usize = 16 * 1024;
