//! Reads by position: a page of a partition, and a page of everything in commit order.

use serde::{Deserialize, Serialize};

use crate::streams::Event;

/// `GET /v1/topics/{topic}/partitions/{partition}/records`: a page of a partition.
// Generic over the event's form, as `StreamPage` is and for the same reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = PartitionPage))]
pub struct PartitionPage<E = Event> {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// First offset still held.
    pub log_start_offset: u64,
    /// One past the last acknowledged offset.
    pub high_watermark: u64,
    /// The records, by offset.
    pub records: Vec<E>,
    /// `offset` of the next page; `null` when the page reaches the high watermark.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_offset: Option<u64>,
}

/// `GET /v1/all`: a page of every topic in commit order.
// Generic over the event's form, as `StreamPage` is and for the same reason.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = AllPage))]
pub struct AllPage<E = Event> {
    /// Events of every topic in store-wide commit order, internal topics excluded (so a page may
    /// hold fewer than `limit` events, even none, and still have a `next_sequence`).
    pub events: Vec<E>,
    /// `from_sequence` of the next page; `null` when the page reaches the last committed event.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_sequence: Option<u64>,
    /// The store's next commit sequence when the page was read (internal records included):
    /// everything before it is readable. `GET /v1/all?from_sequence=18446744073709551615&limit=1`
    /// is a cheap way to ask for it alone.
    pub head_sequence: u64,
}
