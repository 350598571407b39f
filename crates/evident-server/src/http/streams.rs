//! `/v1/topics/{topic}/streams/{key}`: append to an entity stream with an expected version,
//! and read it forward, backward, or as of a version or a time.

use axum::extract::{Request, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::Json;
use evident_core::{ExpectedVersion, StreamKey};
use evident_log::{Direction, StreamReadOptions};
use serde::Serialize;
use serde_json::json;

use super::event_json::{events_response, parse_append, parse_expected_text, EventsView};
use super::extract::{body_bytes, Params, PathParams};
use super::topics::refuse_internal;
use super::{ApiError, AppState};

/// Most events one read returns.
pub const READ_LIMIT_MAX: usize = 10_000;
/// Events one read returns by default.
pub const READ_LIMIT_DEFAULT: usize = 100;

fn check_key(key: &str) -> Result<(), ApiError> {
    if key.is_empty() || key.len() > StreamKey::LEN_MAX {
        return Err(ApiError::new(
            StatusCode::BAD_REQUEST,
            "invalid_stream_key",
            format!("a stream key must be 1 to {} bytes, not {}", StreamKey::LEN_MAX, key.len()),
        ));
    }
    Ok(())
}

/// A page of a stream read.
#[derive(Serialize)]
struct StreamPage<'a> {
    topic: &'a str,
    key: &'a str,
    partition: Option<u32>,
    current_version: u64,
    events: EventsView<'a>,
    next_version: Option<u64>,
}

/// `/v1/topics/{topic}/streams/` (no key).
pub(super) async fn empty_key() -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_stream_key", "the stream key is empty")
}

/// `POST /v1/topics/{topic}/streams/{key}`.
pub(super) async fn append(
    State(state): State<AppState>,
    PathParams((topic, key)): PathParams<(String, String)>,
    params: Params,
    req: Request,
) -> Result<Response, ApiError> {
    params.allow(&["expected_version"])?;
    refuse_internal(&topic)?;
    check_key(&key)?;
    let body = body_bytes(req, &()).await?;
    let request = parse_append(&body)?;
    let query_expected = params.str("expected_version").map(parse_expected_text).transpose()?;
    let expected = match (request.expected, query_expected) {
        (Some(_), Some(_)) => {
            return Err(ApiError::invalid("expected_version is given in both the query and the body"));
        }
        (Some(e), None) | (None, Some(e)) => e,
        (None, None) => ExpectedVersion::Any,
    };
    let events = request.events;
    let bytes: usize = events.iter().map(|e| e.data.len()).sum();
    let log = state.log.clone();
    let (topic2, key2) = (topic.clone(), key.clone());
    let ids: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
    let outcome = state.blocking(move || Ok(log.append_events(&topic2, key2.as_bytes(), expected, &events)?)).await?;
    if !outcome.duplicate {
        state.metrics.record_append(ids.len() as u64, bytes as u64);
    }
    let positions: Vec<_> = outcome
        .records
        .iter()
        .zip(&ids)
        .map(|(r, id)| json!({ "id": id, "offset": r.offset, "version": r.version, "sequence": r.sequence }))
        .collect();
    let status = if outcome.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    let body = json!({
        "topic": topic,
        "key": key,
        "partition": outcome.partition,
        "duplicate": outcome.duplicate,
        "events": positions,
    });
    Ok((status, Json(body)).into_response())
}

/// `GET /v1/topics/{topic}/streams/{key}`.
pub(super) async fn read(
    State(state): State<AppState>,
    PathParams((topic, key)): PathParams<(String, String)>,
    params: Params,
) -> Result<Response, ApiError> {
    params.allow(&["from_version", "limit", "direction", "as_of_version", "as_of_time"])?;
    check_key(&key)?;
    let direction = match params.str("direction") {
        None | Some("forward") => Direction::Forward,
        Some("backward") => Direction::Backward,
        Some(other) => return Err(ApiError::invalid(format!("direction must be forward or backward, not {other:?}"))),
    };
    let limit = params.count("limit", READ_LIMIT_DEFAULT, 1, READ_LIMIT_MAX)?;
    let options = StreamReadOptions {
        from_version: params.u64("from_version")?,
        limit,
        direction,
        as_of_version: params.u64("as_of_version")?,
        as_of_time_ms: params.time_ms("as_of_time")?,
    };
    let log = state.log.clone();
    let (topic2, key2) = (topic.clone(), key.clone());
    let read = state.blocking(move || Ok(log.read_stream(&topic2, key2.as_bytes(), &options)?)).await?;
    let Some(current) = read.current_version else {
        return Err(ApiError::new(
            StatusCode::NOT_FOUND,
            "stream_not_found",
            format!("stream {topic}/{key} holds no event"),
        ));
    };
    let end = options.as_of_version.map_or(current, |v| v.min(current));
    let next_version = match (read.events.last().and_then(|e| e.version), direction) {
        (Some(v), Direction::Forward) if read.events.len() == limit && v < end => Some(v + 1),
        (Some(v), Direction::Backward) if read.events.len() == limit && v > 0 => Some(v - 1),
        _ => None,
    };
    // Serialized straight from the events (no intermediate JSON tree): reads are the hot path.
    let page = StreamPage {
        topic: &topic,
        key: &key,
        partition: read.partition,
        current_version: current,
        events: EventsView(&read.events),
        next_version,
    };
    events_response(&page, read.events.len())
}
