//! Where events live: the [`Backend`] trait, the one seam between the library's logic
//! (repositories, snapshots, projections) and a store. Two implementations ship:
//! [`EmbeddedBackend`] (the evident log in this process, feature `embedded`) and
//! [`HttpBackend`] (an `evident serve` over its HTTP API, feature `http`). Application code is
//! written against `Arc<dyn Backend>` and runs unchanged on either.
//!
//! The trait is shaped for a Kafka-cluster backend too (SPEC §6): every operation is one an
//! event store on Kafka can offer (a stream read is a partition scan filtered by key, or a state
//! store; an expected-version append is the partition owner's check before a transactional
//! produce; the commit-ordered feed is a merged consumer). Nothing here exposes the embedded
//! log's types.
//!
//! **Async.** The trait is async, on tokio, so an axum handler awaits it directly. It is
//! written with `async-trait` (boxed futures) rather than native `async fn` in traits because
//! native async trait methods are not object-safe, and `Arc<dyn Backend>` is the library's
//! seam; the cost, one allocation per call, is noise beside an fsync or a network round trip.
//! Implementations never block the executor: the embedded log's calls (which wait for their
//! fsync) run on tokio's blocking pool, the HTTP backend is async `reqwest`. Synchronous callers
//! use [`crate::blocking`].

use std::time::Duration;

use evident_core::{EventData, ExpectedVersion, Offset, Sequence, Version};

use crate::event::RecordedEvent;
use crate::Result;

#[cfg(feature = "embedded")]
mod embedded;
#[cfg(feature = "http")]
mod http;
#[cfg(feature = "kafka")]
mod kafka;

#[cfg(feature = "embedded")]
pub use embedded::EmbeddedBackend;
#[cfg(feature = "http")]
pub use http::HttpBackend;
#[cfg(feature = "kafka")]
pub use kafka::{KafkaAppendError, KafkaBackend, KafkaConfig, KafkaGroups};

/// Which way to read a stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Oldest first.
    #[default]
    Forward,
    /// Newest first.
    Backward,
}

/// What part of a stream to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamQuery {
    /// First version to return (default: 0 forward, the last backward).
    pub from_version: Option<Version>,
    /// Most events to return.
    pub limit: usize,
    /// Order.
    pub direction: Direction,
    /// Read the stream as it was when its last event was this version.
    pub as_of_version: Option<Version>,
    /// Read the stream as it was at this time (ms since the epoch): events stamped later are
    /// left out.
    pub as_of_time_ms: Option<i64>,
}

impl Default for StreamQuery {
    fn default() -> Self {
        Self {
            from_version: None,
            limit: 1000,
            direction: Direction::Forward,
            as_of_version: None,
            as_of_time_ms: None,
        }
    }
}

/// A page of a stream.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct StreamPage {
    /// Events in the requested order.
    pub events: Vec<RecordedEvent>,
    /// The stream's last version now (None: no event), whatever the query.
    pub current_version: Option<Version>,
}

/// How to create a topic the library needs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TopicSpec {
    /// Partitions.
    pub partitions: u32,
    /// Kafka's `cleanup.policy=compact` (latest record per key wins), as snapshot topics are.
    pub compacted: bool,
}

impl Default for TopicSpec {
    fn default() -> Self {
        Self { partitions: 1, compacted: false }
    }
}

/// Where an append landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Appended {
    /// Version of the first event appended.
    pub first_version: Version,
    /// Version of the last event appended: the stream's new version.
    pub last_version: Version,
    /// Commit sequence of the last event.
    pub last_sequence: Sequence,
    /// True when every event was already in the stream (an idempotent retry): nothing was
    /// appended and the positions are the originals.
    pub duplicate: bool,
}

/// The answer to a SQL statement (docs/sql.md): a query's `columns` (name, type) and `rows`,
/// or a statement's `message`.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct SqlAnswer {
    /// Columns: name and SQL type.
    pub columns: Vec<(String, String)>,
    /// Rows, each value in column order, as JSON.
    pub rows: Vec<Vec<serde_json::Value>>,
    /// What a statement did (CREATE, DROP, REBUILD).
    pub message: Option<String>,
}

/// A store of topics of entity streams.
#[async_trait::async_trait]
pub trait Backend: Send + Sync {
    /// Creates `topic` as `spec` says if it does not exist (an existing topic is left as it is).
    async fn ensure_topic(&self, topic: &str, spec: TopicSpec) -> Result<()>;

    /// Appends `events` to the stream `topic`/`key`, atomically, if the stream is at
    /// `expected`. Events whose ids the stream already holds are not appended twice.
    async fn append(&self, topic: &str, key: &str, expected: ExpectedVersion, events: &[EventData])
        -> Result<Appended>;

    /// Reads part of the stream `topic`/`key`. An unknown topic or stream is an empty page.
    async fn read_stream(&self, topic: &str, key: &str, query: &StreamQuery) -> Result<StreamPage>;

    /// Reads up to `limit` events of every topic in commit order, from commit sequence `from`.
    async fn read_all(&self, from: Sequence, limit: usize) -> Result<Vec<RecordedEvent>>;

    /// Reads up to `limit` events of partition `partition` of `topic` from `offset`. An
    /// unknown topic reads as empty. The default scans the commit-ordered feed (correct, slow);
    /// backends override it with a direct read.
    async fn read_partition(
        &self,
        topic: &str,
        partition: u32,
        offset: Offset,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let mut out = Vec::new();
        let mut from = Sequence(0);
        loop {
            let page = self.read_all(from, 1000).await?;
            let Some(last) = page.last() else { return Ok(out) };
            from = Sequence(last.sequence.0 + 1);
            out.extend(page.into_iter().filter(|e| e.topic == topic && e.partition == partition && e.offset >= offset));
            if out.len() >= limit {
                out.truncate(limit);
                return Ok(out);
            }
        }
    }

    /// The next commit sequence the store will assign (everything before it is readable).
    async fn head_sequence(&self) -> Result<Sequence>;

    /// Waits until an event at commit sequence `>= sequence` is readable or `timeout` passes;
    /// returns whether one is.
    async fn wait_for_sequence(&self, sequence: Sequence, timeout: Duration) -> Result<bool>;

    /// Runs one SQL statement: declares a view (`CREATE TABLE ... AS SELECT`), queries one
    /// (pull queries; `min_sequence` waits until the view applied that append, for
    /// read-your-writes), drops or rebuilds one. Push queries (`EMIT CHANGES`) are for
    /// `POST /v1/sql` and `evident sql`. The default refuses: a backend without SQL views.
    async fn sql(&self, statement: &str, min_sequence: Option<Sequence>) -> Result<SqlAnswer> {
        let _ = (statement, min_sequence);
        Err(crate::Error::Rejected("this backend has no SQL views".into()))
    }
}

/// Reads a whole stream forward from `from_version` in pages, calling `f` on each event.
pub async fn for_each_in_stream(
    backend: &dyn Backend,
    topic: &str,
    key: &str,
    mut query: StreamQuery,
    mut f: impl FnMut(RecordedEvent) -> Result<()>,
) -> Result<Option<Version>> {
    query.direction = Direction::Forward;
    query.limit = query.limit.max(1);
    let mut next = query.from_version.unwrap_or_default();
    loop {
        query.from_version = Some(next);
        let page = backend.read_stream(topic, key, &query).await?;
        let n = page.events.len();
        for event in page.events {
            if let Some(v) = event.version {
                next = Version(v.0 + 1);
            }
            f(event)?;
        }
        let end = query.as_of_version.map_or(page.current_version, |v| page.current_version.map(|c| c.min(v)));
        if n < query.limit || end.is_none_or(|end| next > end) {
            return Ok(page.current_version);
        }
    }
}
