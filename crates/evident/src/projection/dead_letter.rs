//! The library side of the dead-letter queue: the records the runner writes to a projection's
//! dead-letter topic (format in [`evident_core::dead_letter`]), and [`DeadLetters`], which lists
//! a projection's parked events and asks its runner to retry or skip them.
//!
//! Requests are records in the dead-letter topic, not calls into the runner: the runner acts on
//! them in commit order, inside its own transactions, so a retry is exactly-once like any other
//! event, works whether the runner is up or not, and can come from another process (the
//! server's HTTP API and CLI write the same records).

use std::collections::BTreeMap;
use std::sync::Arc;

use evident_core::dead_letter::{self as fmt, DlqRecord, Entry, Kind};
use evident_core::{EventData, ExpectedVersion, Offset, Sequence};

use crate::backend::{Backend, TopicSpec};
use crate::event::RecordedEvent;
use crate::{Error, Result};

/// The record parking (or holding) `event`.
pub(crate) fn parked(projection: &str, event: &RecordedEvent, kind: Kind, error: &str, attempts: u32) -> EventData {
    let prefix = if kind == Kind::Held { "held" } else { "parked" };
    let mut data = EventData {
        id: format!("{prefix}-{}", event.sequence),
        event_type: event.event_type.clone().unwrap_or_default(),
        source: Some(format!("/evident/projections/{projection}")),
        content_type: event.header_str(evident_core::envelope::CONTENT_TYPE).map(str::to_string),
        time: None,
        extra_headers: Vec::new(),
        data: event.data.clone(),
    };
    let mut h = |k: &str, v: String| data.extra_headers.push((k.to_string(), Some(v.into_bytes())));
    h(fmt::KIND, kind.as_str().into());
    h(fmt::PROJECTION, projection.into());
    h(fmt::TOPIC, event.topic.clone());
    h(fmt::PARTITION, event.partition.to_string());
    h(fmt::OFFSET, event.offset.to_string());
    h(fmt::SEQUENCE, event.sequence.to_string());
    if let Some(id) = &event.id {
        h(fmt::EVENT_ID, id.clone());
    }
    h(fmt::ERROR, truncate(error, 4096));
    h(fmt::ATTEMPTS, attempts.to_string());
    data
}

/// The record saying entry `sequence` was applied or skipped.
pub(crate) fn resolved(projection: &str, sequence: u64, outcome: &str) -> EventData {
    let body = serde_json::json!({ "sequence": sequence, "outcome": outcome }).to_string();
    let mut data = EventData::json(format!("resolved-{sequence}"), fmt::RESOLVED_TYPE, body);
    data.source = Some(format!("/evident/projections/{projection}"));
    data.extra_headers = vec![
        (fmt::KIND.into(), Some(Kind::Resolved.as_str().as_bytes().to_vec())),
        (fmt::SEQUENCE.into(), Some(sequence.to_string().into_bytes())),
        (fmt::OUTCOME.into(), Some(outcome.as_bytes().to_vec())),
    ];
    data
}

/// The record saying a retry of entry `sequence` failed again.
pub(crate) fn failed(projection: &str, sequence: u64, error: &str, attempts: u32) -> EventData {
    let body = serde_json::json!({ "sequence": sequence, "error": error }).to_string();
    let mut data = EventData::json(uuid::Uuid::new_v4().to_string(), fmt::FAILED_TYPE, body);
    data.source = Some(format!("/evident/projections/{projection}"));
    data.extra_headers = vec![
        (fmt::KIND.into(), Some(Kind::Failed.as_str().as_bytes().to_vec())),
        (fmt::SEQUENCE.into(), Some(sequence.to_string().into_bytes())),
        (fmt::ERROR.into(), Some(truncate(error, 4096).into_bytes())),
        (fmt::ATTEMPTS.into(), Some(attempts.to_string().into_bytes())),
    ];
    data
}

/// A retry or skip request (see [`fmt::request`]).
pub fn request(kind: Kind, sequence: Option<Sequence>) -> EventData {
    fmt::request(kind, uuid::Uuid::new_v4().to_string(), sequence.map(|s| s.0))
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

/// Reads a dead-letter record's fields.
pub fn to_dlq_record(e: &RecordedEvent) -> Option<DlqRecord> {
    DlqRecord::from_record(e.key.clone().unwrap_or_default(), e.event_type.clone(), e.timestamp_ms, |h| e.header_str(h))
}

/// A projection's dead-letter queue, seen from anywhere (the runner need not be in this
/// process).
#[derive(Clone)]
pub struct DeadLetters {
    backend: Arc<dyn Backend>,
    projection: String,
    topic: String,
}

impl std::fmt::Debug for DeadLetters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DeadLetters").field("topic", &self.topic).finish_non_exhaustive()
    }
}

impl DeadLetters {
    /// The dead-letter queue of projection `projection`.
    pub fn new(backend: Arc<dyn Backend>, projection: &str) -> Self {
        Self { backend, projection: projection.to_string(), topic: fmt::topic_for(projection) }
    }

    /// The dead-letter topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The entries still parked or held, by stream, each stream's in order.
    pub async fn list(&self) -> Result<BTreeMap<String, Vec<Entry>>> {
        let mut records = Vec::new();
        let mut offset = Offset(0);
        loop {
            let page = self.backend.read_partition(&self.topic, 0, offset, 1000).await?;
            let Some(last) = page.last() else { break };
            offset = last.offset.next();
            records.extend(page.iter().filter_map(to_dlq_record));
        }
        Ok(fmt::fold(records))
    }

    /// Asks the runner to retry `stream`'s entries, in order, stopping at the first that fails
    /// again.
    pub async fn retry(&self, stream: &str) -> Result<()> {
        self.send(stream, request(Kind::Retry, None)).await
    }

    /// Asks the runner to skip `stream`'s first entry (it is never applied), then retry the
    /// rest. Returns the skipped entry's sequence.
    pub async fn skip(&self, stream: &str) -> Result<Sequence> {
        let list = self.list().await?;
        let head = list
            .get(stream)
            .and_then(|entries| entries.first())
            .ok_or_else(|| Error::Rejected(format!("stream {stream} has no parked event in {}", self.topic)))?;
        let sequence = head.sequence;
        self.send(stream, request(Kind::Skip, Some(sequence))).await?;
        Ok(sequence)
    }

    async fn send(&self, stream: &str, record: EventData) -> Result<()> {
        self.backend.ensure_topic(&self.topic, TopicSpec::default()).await?;
        self.backend.append(&self.topic, stream, ExpectedVersion::Any, &[record]).await?;
        tracing::debug!(projection = %self.projection, stream, "dead-letter request sent");
        Ok(())
    }
}
