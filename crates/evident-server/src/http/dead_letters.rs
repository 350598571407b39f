//! `/v1/dead-letters`: the dead-letter queues of the library's projections, read and acted on
//! from outside the projection's process.
//!
//! Projection `p` parks the events it cannot process in the topic `p.dlq`, in the record
//! format of [`evident_core::dead_letter`]. The server holds no state of its own here: a list
//! folds the topic's records into the entries still parked or held, and a retry or a skip is
//! one more record (a request) appended to the topic, keyed by the stream, which the
//! projection's runner acts on when its feed reaches it (at once if it runs, else when it next
//! starts). So `202 Accepted`: the request is durable, not yet carried out.

use std::collections::BTreeMap;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use evident_api::dead_letters::{
    DeadLetterEntry, DeadLetterList, DeadLetterQueue, DeadLetterStream, DeadLetterSummary, EntryKind, Requested,
    RetryDeadLetters, RetryRequested, SkipDeadLetter, SkipRequested,
};
use evident_api::params::ProjectionPath;
use evident_api::ErrorBody;
use evident_core::dead_letter::{self as fmt, DlqRecord, Entry, Kind};
use evident_core::{ExpectedVersion, StreamKey, TopicName};
use evident_log::{Event, Log};

use super::event_json::rfc3339;
use super::extract::{JsonBody, Params, PathParams};
use super::topics::{is_internal, refuse_internal};
use super::{ApiError, AppState};

/// Records read from the log per page while folding a dead-letter topic: memory holds one
/// page and the entries still parked, whatever the topic's length.
const PAGE: usize = 1000;

/// The dead-letter topic of `projection`, refusing names that cannot make one.
fn dlq_topic(projection: &str) -> Result<String, ApiError> {
    let topic = fmt::topic_for(projection);
    match TopicName::new(topic.as_str()) {
        Ok(_) if !projection.is_empty() => Ok(topic),
        Ok(_) => Err(invalid_projection("the projection name is empty".into())),
        Err(e) => Err(invalid_projection(format!(
            "projection name {projection:?} cannot name a dead-letter topic ({topic}): {e}"
        ))),
    }
}

fn invalid_projection(message: String) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_projection", message)
}

fn unknown_projection(projection: &str, topic: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "unknown_projection",
        format!("projection {projection} has no dead-letter topic ({topic} does not exist)"),
    )
}

fn check_stream(stream: &str) -> Result<(), ApiError> {
    if stream.is_empty() || stream.len() > StreamKey::LEN_MAX {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_stream_key",
            format!("stream must be 1 to {} bytes, not {}", StreamKey::LEN_MAX, stream.len()),
        ));
    }
    Ok(())
}

/// Reads a stored record of a dead-letter topic; None for records of other kinds.
fn dlq_record(e: &Event) -> Option<DlqRecord> {
    let stream = e.key.as_deref().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
    DlqRecord::from_record(stream, e.event_type().map(str::to_string), e.timestamp_ms, |h| {
        e.header(h).and_then(|v| std::str::from_utf8(v).ok())
    })
}

/// The records of a dead-letter topic, every partition from its start to its high watermark
/// as of the first read, a page at a time. A read error ends the iteration and is kept in
/// `failure`.
struct Records<'a> {
    log: &'a Log,
    topic: &'a str,
    /// (partition, log start offset, high watermark) still to read, the current one first.
    partitions: Vec<(u32, u64, u64)>,
    offset: u64,
    page: std::vec::IntoIter<Event>,
    failure: &'a mut Option<evident_log::Error>,
}

impl Iterator for Records<'_> {
    type Item = DlqRecord;

    fn next(&mut self) -> Option<DlqRecord> {
        loop {
            if let Some(e) = self.page.next() {
                self.offset = e.offset + 1;
                match dlq_record(&e) {
                    Some(r) => return Some(r),
                    None => continue,
                }
            }
            let &(partition, start, end) = self.partitions.first()?;
            self.offset = self.offset.max(start);
            if self.offset >= end {
                self.partitions.remove(0);
                self.offset = 0;
                continue;
            }
            let limit = PAGE.min(usize::try_from(end - self.offset).unwrap_or(PAGE));
            match self.log.read_partition_events(self.topic, partition, self.offset, limit) {
                Ok(page) if page.is_empty() => {
                    // Nothing readable before the watermark (cannot happen on a live topic).
                    self.partitions.remove(0);
                    self.offset = 0;
                }
                Ok(page) => self.page = page.into_iter(),
                Err(e) => {
                    *self.failure = Some(e);
                    return None;
                }
            }
        }
    }
}

/// Folds dead-letter topic `topic` into the entries still parked or held, by stream; None
/// when the topic does not exist.
fn fold_topic(log: &Log, topic: &str) -> Result<Option<BTreeMap<String, Vec<Entry>>>, ApiError> {
    let offsets = match log.topic_offsets(topic) {
        Ok(offsets) => offsets,
        Err(evident_log::Error::UnknownTopic(_)) => return Ok(None),
        Err(e) => return Err(e.into()),
    };
    let mut failure = None;
    let records = Records {
        log,
        topic,
        partitions: offsets.iter().map(|p| (p.partition, p.log_start_offset, p.high_watermark)).collect(),
        offset: 0,
        page: Vec::new().into_iter(),
        failure: &mut failure,
    };
    let folded = fmt::fold(records);
    match failure {
        // Deleted while being read: as if it had not existed.
        Some(evident_log::Error::UnknownTopic(_)) => Ok(None),
        Some(e) => Err(e.into()),
        None => Ok(Some(folded)),
    }
}

/// Folds `projection`'s dead-letter topic, which must exist.
fn fold_projection(log: &Log, projection: &str, topic: &str) -> Result<BTreeMap<String, Vec<Entry>>, ApiError> {
    fold_topic(log, topic)?.ok_or_else(|| unknown_projection(projection, topic))
}

/// The wire form of an entry; the fold keeps only parked and held entries.
fn entry_wire(e: &Entry) -> Result<DeadLetterEntry, ApiError> {
    let kind = match e.kind {
        Kind::Parked => EntryKind::Parked,
        Kind::Held => EntryKind::Held,
        other @ (Kind::Retry | Kind::Skip | Kind::Resolved | Kind::Failed) => {
            return Err(ApiError::internal(format!("a folded dead-letter entry of kind {}", other.as_str())))
        }
    };
    Ok(DeadLetterEntry {
        sequence: e.sequence.0,
        kind,
        topic: e.topic.clone(),
        partition: e.partition,
        offset: e.offset.map(|o| o.0),
        event_type: e.event_type.clone(),
        event_id: e.event_id.clone(),
        error: e.error.clone(),
        attempts: e.attempts,
        parked_at: rfc3339(e.parked_ms),
    })
}

/// Where a projection's dead letters are with Kafka storage.
const DEAD_LETTERS_ON_KAFKA: &str =
    "a projection on the cluster parks events in its dead-letter topic there; the library's DeadLetters reads and retries them";

/// List the projections with a dead-letter queue.
#[utoipa::path(
    get,
    path = "/v1/dead-letters",
    tag = "dead-letters",
    operation_id = "listDeadLetters",
    responses(
        (status = 200, description = "Each projection's counts, by name.", body = DeadLetterList),
        (status = 400, description = "`invalid_argument`.", body = ErrorBody),
        (status = 500, description = "`internal`, `corrupted`.", body = ErrorBody),
    )
)]
pub(super) async fn list(State(state): State<AppState>, params: Params) -> Result<Json<DeadLetterList>, ApiError> {
    params.allow(&[])?;
    state.embedded_only("dead letters", DEAD_LETTERS_ON_KAFKA)?;
    let mut topics: Vec<(String, String)> = state
        .log
        .list_topics()
        .iter()
        .map(|t| t.name.as_str())
        .filter(|name| !is_internal(name))
        .filter_map(|name| {
            let projection = name.strip_suffix(fmt::TOPIC_SUFFIX).filter(|p| !p.is_empty())?;
            Some((projection.to_string(), name.to_string()))
        })
        .collect();
    topics.sort();
    let log = state.log.clone();
    let projections = state
        .blocking(move || {
            let mut out = Vec::new();
            for (projection, topic) in topics {
                let Some(folded) = fold_topic(&log, &topic)? else { continue };
                let count = |kind: Kind| folded.values().flatten().filter(|e| e.kind == kind).count();
                out.push(DeadLetterSummary {
                    projection,
                    topic,
                    streams: folded.len() as u64,
                    parked: count(Kind::Parked) as u64,
                    held: count(Kind::Held) as u64,
                });
            }
            Ok(out)
        })
        .await?;
    Ok(Json(DeadLetterList { projections }))
}

/// A projection's parked and held events, by stream.
#[utoipa::path(
    get,
    path = "/v1/dead-letters/{projection}",
    tag = "dead-letters",
    operation_id = "describeDeadLetters",
    params(ProjectionPath),
    responses(
        (status = 200, description = "The entries still parked or held.", body = DeadLetterQueue),
        (status = 400, description = "`invalid_argument`, `invalid_projection`.", body = ErrorBody),
        (status = 404, description = "`unknown_projection`.", body = ErrorBody),
        (status = 500, description = "`internal`, `corrupted`.", body = ErrorBody),
    )
)]
pub(super) async fn describe(
    State(state): State<AppState>,
    PathParams(projection): PathParams<String>,
    params: Params,
) -> Result<Json<DeadLetterQueue>, ApiError> {
    params.allow(&[])?;
    state.embedded_only("dead letters", DEAD_LETTERS_ON_KAFKA)?;
    let topic = dlq_topic(&projection)?;
    let log = state.log.clone();
    let (p, t) = (projection.clone(), topic.clone());
    let folded = state.blocking(move || fold_projection(&log, &p, &t)).await?;
    let streams = folded
        .iter()
        .map(|(stream, entries)| {
            Ok(DeadLetterStream {
                stream: stream.clone(),
                entries: entries.iter().map(entry_wire).collect::<Result<_, ApiError>>()?,
            })
        })
        .collect::<Result<_, ApiError>>()?;
    Ok(Json(DeadLetterQueue { projection, topic, streams }))
}

/// Appends a request record to the dead-letter topic, keyed by the stream.
fn send_request(
    state: &AppState,
    log: &Log,
    topic: &str,
    stream: &str,
    kind: Kind,
    sequence: Option<u64>,
) -> Result<(), ApiError> {
    let request = fmt::request(kind, uuid::Uuid::new_v4().to_string(), sequence);
    let bytes = request.data.len() as u64;
    log.append_events(topic, stream.as_bytes(), ExpectedVersion::Any, std::slice::from_ref(&request))?;
    state.metrics.record_append(1, bytes);
    Ok(())
}

/// Ask a projection to retry a stream's parked events.
///
/// Recorded in the dead-letter topic (`202`); the projection's runner carries it out when its
/// feed reaches it (at once if it runs, else when it next starts).
#[utoipa::path(
    post,
    path = "/v1/dead-letters/{projection}/retry",
    tag = "dead-letters",
    operation_id = "retryDeadLetters",
    params(ProjectionPath),
    request_body = RetryDeadLetters,
    responses(
        (status = 202, description = "The request is recorded.", body = RetryRequested),
        (status = 400, description = "`malformed_json`, `missing_field`, `invalid_argument`, `invalid_projection`, `invalid_stream_key`.", body = ErrorBody),
        (status = 403, description = "`internal_topic`.", body = ErrorBody),
        (status = 404, description = "`unknown_projection`, `nothing_parked`.", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
        (status = 500, description = "`internal`, `corrupted`.", body = ErrorBody),
        (status = 503, description = "`unavailable`.", body = ErrorBody),
    )
)]
pub(super) async fn retry(
    State(state): State<AppState>,
    PathParams(projection): PathParams<String>,
    params: Params,
    JsonBody(body): JsonBody<RetryDeadLetters>,
) -> Result<Response, ApiError> {
    params.allow(&[])?;
    state.embedded_only("dead letters", DEAD_LETTERS_ON_KAFKA)?;
    let topic = dlq_topic(&projection)?;
    refuse_internal(&topic)?;
    check_stream(&body.stream)?;
    let (log, st) = (state.log.clone(), state.clone());
    let (p, t, stream) = (projection.clone(), topic.clone(), body.stream.clone());
    let entries = state
        .blocking(move || {
            let folded = fold_projection(&log, &p, &t)?;
            let entries = folded.get(&stream).map_or(0, Vec::len);
            if entries == 0 {
                return Err(nothing_parked(&p, &stream));
            }
            send_request(&st, &log, &t, &stream, Kind::Retry, None)?;
            Ok(entries)
        })
        .await?;
    let reply = RetryRequested { requested: Requested::Retry, stream: body.stream, entries: entries as u64 };
    Ok((StatusCode::ACCEPTED, Json(reply)).into_response())
}

/// Ask a projection to skip a stream's first parked event.
///
/// Recorded in the dead-letter topic (`202`); the projection's runner carries it out when its
/// feed reaches it.
#[utoipa::path(
    post,
    path = "/v1/dead-letters/{projection}/skip",
    tag = "dead-letters",
    operation_id = "skipDeadLetter",
    params(ProjectionPath),
    request_body = SkipDeadLetter,
    responses(
        (status = 202, description = "The request is recorded.", body = SkipRequested),
        (status = 400, description = "`malformed_json`, `missing_field`, `invalid_argument`, `invalid_projection`, `invalid_stream_key`.", body = ErrorBody),
        (status = 403, description = "`internal_topic`.", body = ErrorBody),
        (status = 404, description = "`unknown_projection`, `nothing_parked`.", body = ErrorBody),
        (status = 409, description = "`not_first_entry` (carries `first_sequence`).", body = ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = ErrorBody),
        (status = 500, description = "`internal`, `corrupted`.", body = ErrorBody),
        (status = 503, description = "`unavailable`.", body = ErrorBody),
    )
)]
pub(super) async fn skip(
    State(state): State<AppState>,
    PathParams(projection): PathParams<String>,
    params: Params,
    JsonBody(body): JsonBody<SkipDeadLetter>,
) -> Result<Response, ApiError> {
    params.allow(&[])?;
    state.embedded_only("dead letters", DEAD_LETTERS_ON_KAFKA)?;
    let topic = dlq_topic(&projection)?;
    refuse_internal(&topic)?;
    check_stream(&body.stream)?;
    let (log, st) = (state.log.clone(), state.clone());
    let (p, t, stream, wanted) = (projection.clone(), topic.clone(), body.stream.clone(), body.sequence);
    let sequence = state
        .blocking(move || {
            let folded = fold_projection(&log, &p, &t)?;
            let head = folded.get(&stream).and_then(|entries| entries.first()).ok_or_else(|| nothing_parked(&p, &stream))?;
            let head = head.sequence.0;
            if let Some(wanted) = wanted.filter(|&w| w != head) {
                return Err(ApiError::new(
                    StatusCode::CONFLICT,
                    "not_first_entry",
                    format!(
                        "entry {wanted} is not the first of stream {stream} in {t}: the first is {head}, and a stream's entries are skipped in order"
                    ),
                )
                .with_first_sequence(head));
            }
            send_request(&st, &log, &t, &stream, Kind::Skip, Some(head))?;
            Ok(head)
        })
        .await?;
    let reply = SkipRequested { requested: Requested::Skip, stream: body.stream, sequence };
    Ok((StatusCode::ACCEPTED, Json(reply)).into_response())
}

fn nothing_parked(projection: &str, stream: &str) -> ApiError {
    ApiError::new(
        StatusCode::NOT_FOUND,
        "nothing_parked",
        format!("projection {projection} has no parked or held event of stream {stream}"),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn projection_names_must_make_a_topic_name() {
        assert_eq!(dlq_topic("orders-view").expect("valid"), "orders-view.dlq");
        for bad in ["", "a b", "é", &"x".repeat(246)] {
            assert_eq!(dlq_topic(bad).unwrap_err().code, "invalid_projection", "{bad:?}");
        }
    }

    #[test]
    fn a_topic_folds_page_by_page() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = Log::open(dir.path(), evident_log::LogConfig::default()).expect("open");
        assert!(fold_topic(&log, "p.dlq").expect("fold").is_none(), "no topic: none");
        log.create_topic("p.dlq", evident_log::TopicConfig::default()).expect("topic");
        let parked = |seq: u64| {
            let mut data = evident_core::EventData::json(format!("parked-{seq}"), "OrderPlaced", b"{}".to_vec());
            data.extra_headers = vec![
                (fmt::KIND.into(), Some(b"parked".to_vec())),
                (fmt::SEQUENCE.into(), Some(seq.to_string().into_bytes())),
                (fmt::ATTEMPTS.into(), Some(b"3".to_vec())),
            ];
            data
        };
        // More than a page of entries, one resolved, and a record of another kind.
        for seq in 0..(PAGE as u64 + 5) {
            log.append_events("p.dlq", format!("orders/{}", seq % 3).as_bytes(), ExpectedVersion::Any, &[parked(seq)])
                .expect("append");
        }
        let mut resolved = evident_core::EventData::json("resolved-4", fmt::RESOLVED_TYPE, b"{}".to_vec());
        resolved.extra_headers =
            vec![(fmt::KIND.into(), Some(b"resolved".to_vec())), (fmt::SEQUENCE.into(), Some(b"4".to_vec()))];
        log.append_events("p.dlq", b"orders/1", ExpectedVersion::Any, &[resolved]).expect("append");
        log.append_events(
            "p.dlq",
            b"orders/1",
            ExpectedVersion::Any,
            &[evident_core::EventData::json("x", "Other", b"1".to_vec())],
        )
        .expect("append");
        let folded = fold_topic(&log, "p.dlq").expect("fold").expect("exists");
        assert_eq!(folded.len(), 3);
        assert_eq!(folded.values().map(Vec::len).sum::<usize>(), PAGE + 4);
        assert!(folded["orders/1"].iter().all(|e| e.sequence.0 != 4));
        assert_eq!(folded["orders/0"][0].attempts, 3);
        assert_eq!(folded["orders/0"][0].event_type.as_deref(), Some("OrderPlaced"));
    }
}
