//! The embedded backend: the evident log opened in this process. No server, no network; the
//! log's own guarantees (fsync before ack, expected versions, idempotent event ids) are the
//! backend's.
//!
//! The log's calls block (an append waits for its group commit's fsync, a read may fault pages
//! in, a wait sleeps on a condition variable), so each runs on tokio's blocking pool and the
//! executor's threads never wait on the disk.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use evident_core::{envelope, EventData, ExpectedVersion, Offset, Sequence, Version};
use evident_log::{CleanupPolicy, Log, LogConfig, TopicConfig};

use super::{Appended, Backend, Direction, SqlAnswer, StreamPage, StreamQuery, TopicSpec};
use crate::event::RecordedEvent;
use crate::{Error, Result};

/// The evident log, in process.
#[derive(Clone)]
pub struct EmbeddedBackend {
    log: Arc<Log>,
    /// The SQL engine, started by the first statement (its views then run in this process).
    sql: Arc<std::sync::OnceLock<Arc<evident_sql::Engine>>>,
}

impl std::fmt::Debug for EmbeddedBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmbeddedBackend").finish_non_exhaustive()
    }
}

impl EmbeddedBackend {
    /// Opens (or creates) the log in `dir` with the default configuration (fsync always).
    pub fn open(dir: impl AsRef<Path>) -> Result<Self> {
        let log = Log::open(dir, LogConfig::default()).map_err(from_log)?;
        Ok(Self::from_log(Arc::new(log)))
    }

    /// Wraps a log opened elsewhere (shared with a server, say).
    pub fn from_log(log: Arc<Log>) -> Self {
        Self { log, sql: Arc::default() }
    }

    /// The SQL engine over this log, started at the first call.
    fn sql_engine(&self) -> Result<Arc<evident_sql::Engine>> {
        if let Some(e) = self.sql.get() {
            return Ok(e.clone());
        }
        let engine = evident_sql::Engine::open(self.log.clone()).map_err(sql_error)?;
        Ok(self.sql.get_or_init(|| engine).clone())
    }

    /// The log.
    pub fn log(&self) -> &Arc<Log> {
        &self.log
    }
}

/// Runs `f` on the log in tokio's blocking pool.
async fn on_log<T: Send + 'static>(log: &Arc<Log>, f: impl FnOnce(&Log) -> Result<T> + Send + 'static) -> Result<T> {
    let handle = crate::error::runtime()?;
    let log = log.clone();
    handle
        .spawn_blocking(move || f(&log))
        .await
        .map_err(|e| Error::Unavailable(format!("the embedded log's call did not complete: {e}")))?
}

/// Maps the log's errors onto the library's: what a caller can do about each. One arm per
/// variant, no wildcard, so a variant added to the log is a compile error here until it is
/// given its meaning (the HTTP backend's `library_error` follows the same rule for the API's
/// codes).
pub(crate) fn from_log(e: evident_log::Error) -> Error {
    use evident_log::Error as L;
    match e {
        L::WrongExpectedVersion { topic, key, expected, actual } => {
            Error::WrongExpectedVersion { stream: format!("{topic}/{key}"), expected, current: actual }
        }
        L::UnknownTopic(t) => Error::UnknownTopic(t),
        // The store failed, is damaged, held by another process or closing: the same call may
        // succeed later (after a restart or a repair).
        // A full disk and an unknown outcome too: both are safe to retry with the same event
        // ids, which the message says.
        e @ (L::Corrupted { .. }
        | L::Poisoned(_)
        | L::DiskFull(_)
        | L::OutcomeUnknown(_)
        | L::Locked(_)
        | L::Closed
        | L::Io(_)) => Error::Unavailable(e.to_string()),
        // The request as asked cannot succeed: fix it.
        e @ (L::UnknownPartition { .. }
        | L::TopicExists(_)
        | L::InvalidTopicName(_)
        | L::InvalidConfig(_)
        | L::InvalidBatch(_)
        | L::BatchTooLarge { .. }
        | L::EmptyBatch
        | L::KeyTooLarge { .. }
        | L::InvalidExpectedVersion(_)
        | L::InvalidEventId(_)
        | L::ExpectedVersionWithoutKey
        | L::KeylessOnCompacted { .. }
        | L::KeyInOtherPartition { .. }
        | L::DuplicateIdInBatch { .. }
        | L::PartialDuplicate { .. }
        | L::EventIdReused { .. }
        | L::ProducerFenced { .. }
        | L::OutOfOrderSequence { .. }
        | L::OffsetOutOfRange { .. }
        | L::InvalidTxnState(_)
        | L::EventIdInTransaction { .. }
        | L::Unsupported(_)) => Error::Rejected(e.to_string()),
        // A Kafka transaction holds the stream, or bounds what may be pending: the same call
        // succeeds once it ends (within its timeout).
        e @ (L::StreamInTransaction { .. } | L::TransactionsTooLarge { .. }) => Error::Unavailable(e.to_string()),
    }
}

/// The answer to an append from the log's positions of its events (`duplicate`: all of them
/// were already stored).
pub(crate) fn appended(outcome: &evident_log::AppendOutcome, duplicate: bool) -> Result<Appended> {
    let (Some(first), Some(last)) = (outcome.records.first(), outcome.records.last()) else {
        return Err(Error::Rejected("append returned no position".into()));
    };
    Ok(Appended {
        first_version: Version(first.version.unwrap_or_default()),
        last_version: Version(last.version.unwrap_or_default()),
        last_sequence: Sequence(last.sequence),
        duplicate,
    })
}

/// Converts a log event into the library's record.
pub(crate) fn recorded(e: &evident_log::Event) -> RecordedEvent {
    let mut id = None;
    let mut event_type = None;
    let mut headers = Vec::new();
    for (name, value) in e.headers() {
        match name {
            envelope::CE_ID if id.is_none() => id = value.map(|v| String::from_utf8_lossy(v).into_owned()),
            envelope::CE_TYPE if event_type.is_none() => {
                event_type = value.map(|v| String::from_utf8_lossy(v).into_owned())
            }
            envelope::CE_SPECVERSION => {}
            _ => headers.push((name.to_string(), value.map(<[u8]>::to_vec))),
        }
    }
    RecordedEvent {
        topic: e.topic.as_str().to_string(),
        partition: e.partition,
        offset: Offset(e.offset),
        sequence: Sequence(e.sequence),
        version: e.version.map(Version),
        key: e.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()),
        id,
        event_type,
        timestamp_ms: e.timestamp_ms,
        headers,
        data: e.value.as_deref().map(<[u8]>::to_vec).unwrap_or_default(),
    }
}

#[async_trait::async_trait]
impl Backend for EmbeddedBackend {
    async fn ensure_topic(&self, topic: &str, spec: TopicSpec) -> Result<()> {
        let topic = topic.to_string();
        on_log(&self.log, move |log| {
            if log.list_topics().iter().any(|t| t.name.as_str() == topic) {
                return Ok(());
            }
            let config = TopicConfig {
                partitions: spec.partitions,
                cleanup_policy: if spec.compacted { CleanupPolicy::Compact } else { CleanupPolicy::Delete },
                ..TopicConfig::default()
            };
            match log.create_topic(&topic, config) {
                Ok(_) | Err(evident_log::Error::TopicExists(_)) => Ok(()),
                Err(e) => Err(from_log(e)),
            }
        })
        .await
    }

    async fn append(
        &self,
        topic: &str,
        key: &str,
        expected: ExpectedVersion,
        events: &[EventData],
    ) -> Result<Appended> {
        let (topic, key, events) = (topic.to_string(), key.to_string(), events.to_vec());
        on_log(&self.log, move |log| {
            let out = log.append_events(&topic, key.as_bytes(), expected, &events).map_err(from_log)?;
            appended(&out, out.duplicate)
        })
        .await
    }

    async fn read_stream(&self, topic: &str, key: &str, query: &StreamQuery) -> Result<StreamPage> {
        let options = evident_log::StreamReadOptions {
            from_version: query.from_version.map(|v| v.0),
            limit: query.limit,
            direction: match query.direction {
                Direction::Forward => evident_log::Direction::Forward,
                Direction::Backward => evident_log::Direction::Backward,
            },
            as_of_version: query.as_of_version.map(|v| v.0),
            as_of_time_ms: query.as_of_time_ms,
        };
        let (topic, key) = (topic.to_string(), key.to_string());
        on_log(&self.log, move |log| match log.read_stream(&topic, key.as_bytes(), &options) {
            Ok(read) => Ok(StreamPage {
                events: read.events.iter().map(recorded).collect(),
                current_version: read.current_version.map(Version),
            }),
            Err(evident_log::Error::UnknownTopic(_)) => Ok(StreamPage::default()),
            Err(e) => Err(from_log(e)),
        })
        .await
    }

    async fn read_all(&self, from: Sequence, limit: usize) -> Result<Vec<RecordedEvent>> {
        on_log(&self.log, move |log| {
            let events = log.read_all(from.0, limit).map_err(from_log)?;
            Ok(events.iter().map(recorded).collect())
        })
        .await
    }

    async fn read_partition(
        &self,
        topic: &str,
        partition: u32,
        offset: Offset,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let topic = topic.to_string();
        on_log(&self.log, move |log| match log.read_partition_events(&topic, partition, offset.0, limit) {
            Ok(events) => Ok(events.iter().map(recorded).collect()),
            Err(evident_log::Error::UnknownTopic(_)) => Ok(Vec::new()),
            Err(evident_log::Error::OffsetOutOfRange { .. }) => Ok(Vec::new()),
            Err(e) => Err(from_log(e)),
        })
        .await
    }

    async fn head_sequence(&self) -> Result<Sequence> {
        // A read of a counter under the log's mutex: no I/O, no need for the blocking pool.
        Ok(Sequence(self.log.stats().next_sequence))
    }

    async fn wait_for_sequence(&self, sequence: Sequence, timeout: Duration) -> Result<bool> {
        on_log(&self.log, move |log| log.wait_for_sequence(sequence.0, timeout).map_err(from_log)).await
    }

    async fn sql(&self, statement: &str, min_sequence: Option<Sequence>) -> Result<SqlAnswer> {
        let engine = self.sql_engine()?;
        let req =
            evident_sql::Request { sql: statement.to_string(), min_sequence: min_sequence.map(|s| s.0), timeout: None };
        let outcome = tokio::task::spawn_blocking(move || engine.execute(&req))
            .await
            .map_err(|e| Error::Unavailable(format!("the SQL worker failed: {e}")))?
            .map_err(sql_error)?;
        Ok(match outcome {
            evident_sql::Outcome::Rows { columns, rows } => SqlAnswer {
                columns: columns.into_iter().map(|c| (c.name, c.ty)).collect(),
                rows: rows
                    .into_iter()
                    .map(|r| r.iter().map(|v| serde_json::to_value(v).unwrap_or_default()).collect())
                    .collect(),
                message: None,
            },
            evident_sql::Outcome::Done { message, .. } => SqlAnswer { message: Some(message), ..SqlAnswer::default() },
            evident_sql::Outcome::Push(_) => {
                return Err(Error::Rejected(
                    "push queries (EMIT CHANGES) are served by POST /v1/sql and `evident sql`".into(),
                ))
            }
        })
    }
}

/// The library's error for a SQL error: the log's own errors as the log's, a refused statement
/// as `Rejected`, a view not (yet) able to answer as `Unavailable`.
fn sql_error(e: evident_sql::SqlError) -> Error {
    use evident_sql::SqlError as S;
    match e {
        S::Log(e) => from_log(e),
        S::NotCaughtUp { .. } | S::ViewFailed { .. } | S::Corrupted(_) => Error::Unavailable(e.to_string()),
        other => Error::Rejected(other.to_string()),
    }
}
