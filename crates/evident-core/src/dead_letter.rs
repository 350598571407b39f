//! The dead-letter topic's record format, shared by the library's projection runner (which
//! writes it) and the server (which lists it and takes retry/skip requests over HTTP and the
//! CLI).
//!
//! Projection `p` parks events it cannot process in the topic `p.dlq`. Each record's key is the
//! original event's stream (`topic/key`), so the records of one stream stay in order and event
//! ids are deduplicated per stream. Kinds, in the header [`KIND`]:
//! - `parked`: the event failed its handler [`ATTEMPTS`] times; the record carries the original
//!   type, content type and payload, plus its position and the last error in headers (as
//!   Spring's and Kafka Connect's dead-letter topics do), under the id `parked-<sequence>`;
//! - `held`: a later event of a stream with a parked event, set aside unprocessed to keep the
//!   stream's order (a sequenced dead-letter queue, as Axon's), id `held-<sequence>`;
//! - `retry` / `skip`: requests, from anyone, to retry a stream's parked events or to skip the
//!   first of them; the runner acts on them in commit order;
//! - `resolved`: the runner applied (`outcome: applied`) or skipped an entry, id
//!   `resolved-<sequence>`;
//! - `failed`: a retry failed again (the entry stays parked), with the new error.
//!
//! Ids derive from the entry's sequence so that rewriting a record after a crash stores it once;
//! when the runner must write a record whose id an earlier one used (a rebuild parking again what
//! the live runner resolved), it adds a `-<uuid>` suffix. [`fold`] keys entries by sequence, so
//! repeated records of one entry are harmless.
//!
//! The runner's own sink holds the authoritative parked set (in the same transaction as its
//! checkpoint); this topic is its durable, shareable journal. [`fold`] rebuilds the list of
//! entries still parked from the topic's records.

use std::collections::BTreeMap;

use crate::envelope::EventData;
use crate::{Offset, Sequence};

/// Suffix of a projection's dead-letter topic.
pub const TOPIC_SUFFIX: &str = ".dlq";
/// Header: the record's kind (`parked`, `held`, `retry`, `skip`, `resolved`, `failed`).
pub const KIND: &str = "evident-dlq-kind";
/// Header: the projection.
pub const PROJECTION: &str = "evident-dlq-projection";
/// Header: the original event's topic.
pub const TOPIC: &str = "evident-dlq-topic";
/// Header: the original event's partition.
pub const PARTITION: &str = "evident-dlq-partition";
/// Header: the original event's offset.
pub const OFFSET: &str = "evident-dlq-offset";
/// Header: the original event's commit sequence (the entry's identity).
pub const SEQUENCE: &str = "evident-dlq-sequence";
/// Header: the original event's id.
pub const EVENT_ID: &str = "evident-dlq-event-id";
/// Header: the handler's last error.
pub const ERROR: &str = "evident-dlq-error";
/// Header: how many times the handler was tried.
pub const ATTEMPTS: &str = "evident-dlq-attempts";
/// Header: how a `resolved` entry ended (`applied` or `skipped`).
pub const OUTCOME: &str = "evident-dlq-outcome";
/// Event type of retry requests.
pub const RETRY_TYPE: &str = "evident.dlq.retry";
/// Event type of skip requests.
pub const SKIP_TYPE: &str = "evident.dlq.skip";
/// Event type of resolutions.
pub const RESOLVED_TYPE: &str = "evident.dlq.resolved";
/// Event type of failed retries.
pub const FAILED_TYPE: &str = "evident.dlq.failed";

/// The dead-letter topic of projection `projection`.
pub fn topic_for(projection: &str) -> String {
    format!("{projection}{TOPIC_SUFFIX}")
}

/// A record's kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    /// An event that failed its handler.
    Parked,
    /// An event held back behind a parked one of its stream.
    Held,
    /// A request to retry a stream's entries.
    Retry,
    /// A request to skip a stream's first entry.
    Skip,
    /// An entry applied or skipped.
    Resolved,
    /// A retry that failed again.
    Failed,
}

impl Kind {
    /// The header value.
    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Parked => "parked",
            Kind::Held => "held",
            Kind::Retry => "retry",
            Kind::Skip => "skip",
            Kind::Resolved => "resolved",
            Kind::Failed => "failed",
        }
    }

    /// Parses a header value.
    pub fn parse(s: &str) -> Option<Self> {
        Some(match s {
            "parked" => Kind::Parked,
            "held" => Kind::Held,
            "retry" => Kind::Retry,
            "skip" => Kind::Skip,
            "resolved" => Kind::Resolved,
            "failed" => Kind::Failed,
            _ => return None,
        })
    }
}

/// One record of a dead-letter topic, as [`fold`] needs it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DlqRecord {
    /// The record's key: the original stream.
    pub stream: String,
    /// Kind.
    pub kind: Kind,
    /// The original event's commit sequence (for parked, held, resolved and failed).
    pub sequence: Option<u64>,
    /// Original topic, partition and offset.
    pub topic: Option<String>,
    /// Original partition.
    pub partition: Option<u32>,
    /// Original offset.
    pub offset: Option<u64>,
    /// Original event type.
    pub event_type: Option<String>,
    /// Original event id.
    pub event_id: Option<String>,
    /// Last error.
    pub error: Option<String>,
    /// Attempts.
    pub attempts: Option<u32>,
    /// When the record was written (ms since the epoch).
    pub timestamp_ms: i64,
}

impl DlqRecord {
    /// Reads a dead-letter topic's record: `stream` is its key, `header` looks up a header's
    /// UTF-8 value. None when the record is not one of the kinds above.
    pub fn from_record<'a>(
        stream: String,
        event_type: Option<String>,
        timestamp_ms: i64,
        header: impl Fn(&str) -> Option<&'a str>,
    ) -> Option<Self> {
        let kind = Kind::parse(header(KIND)?)?;
        let num = |h: &str| header(h).and_then(|v| v.parse::<u64>().ok());
        Some(DlqRecord {
            stream,
            kind,
            sequence: num(SEQUENCE),
            topic: header(TOPIC).map(str::to_string),
            partition: num(PARTITION).and_then(|p| u32::try_from(p).ok()),
            offset: num(OFFSET),
            event_type,
            event_id: header(EVENT_ID).map(str::to_string),
            error: header(ERROR).map(str::to_string),
            attempts: num(ATTEMPTS).and_then(|a| u32::try_from(a).ok()),
            timestamp_ms,
        })
    }
}

/// A retry or skip request, to append (under any event id) to the dead-letter topic with the
/// stream as key. A skip names the entry it skips (`sequence`), so that acting on it twice
/// (after a crash) cannot skip a second entry.
pub fn request(kind: Kind, id: String, sequence: Option<u64>) -> EventData {
    let (event_type, body) = match (kind, sequence) {
        (Kind::Skip, Some(seq)) => (SKIP_TYPE, format!("{{\"sequence\":{seq}}}")),
        _ => (RETRY_TYPE, "{}".to_string()),
    };
    let kind = if event_type == SKIP_TYPE { Kind::Skip } else { Kind::Retry };
    let mut data = EventData::json(id, event_type, body.into_bytes());
    data.source = Some("/evident/dead-letters".into());
    data.extra_headers = vec![(KIND.into(), Some(kind.as_str().as_bytes().to_vec()))];
    if let (Kind::Skip, Some(seq)) = (kind, sequence) {
        data.extra_headers.push((SEQUENCE.into(), Some(seq.to_string().into_bytes())));
    }
    data
}

/// An event still parked or held.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// The original stream.
    pub stream: String,
    /// The original event's commit sequence.
    pub sequence: Sequence,
    /// `parked` or `held`.
    pub kind: Kind,
    /// Original topic.
    pub topic: Option<String>,
    /// Original partition.
    pub partition: Option<u32>,
    /// Original offset.
    pub offset: Option<Offset>,
    /// Original type.
    pub event_type: Option<String>,
    /// Original id.
    pub event_id: Option<String>,
    /// Last error (parked entries).
    pub error: Option<String>,
    /// Attempts so far.
    pub attempts: u32,
    /// When it was parked (ms since the epoch).
    pub parked_ms: i64,
}

/// Folds a dead-letter topic's records (in order) into the entries still parked or held, by
/// stream, each stream's entries in their original order.
pub fn fold(records: impl IntoIterator<Item = DlqRecord>) -> BTreeMap<String, Vec<Entry>> {
    let mut entries: BTreeMap<u64, Entry> = BTreeMap::new();
    for r in records {
        match (r.kind, r.sequence) {
            (Kind::Parked | Kind::Held, Some(seq)) => {
                entries.insert(
                    seq,
                    Entry {
                        stream: r.stream,
                        sequence: Sequence(seq),
                        kind: r.kind,
                        topic: r.topic,
                        partition: r.partition,
                        offset: r.offset.map(Offset),
                        event_type: r.event_type,
                        event_id: r.event_id,
                        error: r.error,
                        attempts: r.attempts.unwrap_or(0),
                        parked_ms: r.timestamp_ms,
                    },
                );
            }
            (Kind::Resolved, Some(seq)) => {
                entries.remove(&seq);
            }
            (Kind::Failed, Some(seq)) => {
                if let Some(e) = entries.get_mut(&seq) {
                    e.kind = Kind::Parked;
                    e.error = r.error.or(e.error.take());
                    // A failed retry reports its own attempts; the entry shows the total.
                    e.attempts = e.attempts.saturating_add(r.attempts.unwrap_or(0));
                }
            }
            _ => {}
        }
    }
    let mut by_stream: BTreeMap<String, Vec<Entry>> = BTreeMap::new();
    for (_, e) in entries {
        by_stream.entry(e.stream.clone()).or_default().push(e);
    }
    by_stream
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rec(stream: &str, kind: Kind, seq: u64) -> DlqRecord {
        DlqRecord {
            stream: stream.into(),
            kind,
            sequence: Some(seq),
            topic: None,
            partition: None,
            offset: None,
            event_type: None,
            event_id: None,
            error: Some(format!("e{seq}")),
            attempts: Some(3),
            timestamp_ms: 0,
        }
    }

    #[test]
    fn resolutions_remove_entries_and_streams_keep_their_order() {
        let folded = fold([
            rec("orders/a", Kind::Parked, 5),
            rec("orders/b", Kind::Parked, 6),
            rec("orders/a", Kind::Held, 9),
            rec("orders/a", Kind::Retry, 0),
            rec("orders/b", Kind::Resolved, 6),
            DlqRecord { error: Some("again".into()), attempts: Some(4), ..rec("orders/a", Kind::Failed, 5) },
        ]);
        assert_eq!(folded.len(), 1);
        let a = &folded["orders/a"];
        assert_eq!(a.iter().map(|e| e.sequence.0).collect::<Vec<_>>(), vec![5, 9]);
        assert_eq!(a[0].error.as_deref(), Some("again"));
        assert_eq!(a[0].attempts, 3 + 4, "attempts add up across retries");
        assert_eq!(a[1].kind, Kind::Held);
    }
}
