//! `/v1/topics/{topic}/streams/{key}`: append to an entity stream with an expected version,
//! and read it forward, backward, or as of a version or a time.

use axum::extract::{Request, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use evident_core::{ExpectedVersion, StreamKey};
use evident_log::{Direction, StreamReadOptions};
use serde::Serialize;

use super::cluster::Appended;
use super::event_json::{json_response, ndjson_response, parse_append, parse_expected_text, wants_ndjson, PageWriter};
use super::extract::{body_bytes, Params, PathParams};
use super::topics::refuse_internal;
use super::{ApiError, AppState};

pub use evident_api::limits::{READ_LIMIT_DEFAULT, READ_LIMIT_MAX};

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

/// `/v1/topics/{topic}/streams/` (no key).
#[utoipa::path(
    method(get, post),
    path = "/v1/topics/{topic}/streams/",
    tag = "streams",
    operation_id = "emptyStreamKey",
    summary = "An empty stream key (always refused)",
    description = "A stream key is 1 to 4096 bytes: the path with an empty key is answered `400 invalid_stream_key`, so a client that built it by mistake learns why.",
    params(evident_api::params::TopicPath),
    responses((status = 400, description = "`invalid_stream_key`.", body = evident_api::ErrorBody))
)]
pub(super) async fn empty_key() -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, "invalid_stream_key", "the stream key is empty")
}

/// `POST /v1/topics/{topic}/streams/{key}`.
#[utoipa::path(
    post,
    path = "/v1/topics/{topic}/streams/{key}",
    tag = "streams",
    operation_id = "appendToStream",
    summary = "Append to a stream",
    description = "Appends to the stream `topic`/`key`. The body is one event (`AppendEvent`), or a batch (`AppendBatch`: 1 to 10000 events, atomic: all or none) with an optional `expected_version`. `?expected_version=` may be given instead of the body's (giving both is `400 invalid_argument`); the default is `any`. Replies `201`, or `200` with `duplicate: true` for an idempotent retry (every event id already appended with the same content). Internal topics are refused (`403`).",
    params(evident_api::params::StreamPath, evident_api::params::AppendQuery),
    request_body = evident_api::streams::AppendRequest,
    responses(
        (status = 201, description = "The events were appended.", body = evident_api::streams::AppendResult),
        (status = 200, description = "An idempotent retry: nothing was appended; the positions are the originals (`duplicate: true`).", body = evident_api::streams::AppendResult),
        (status = 400, description = "`malformed_json` (not a JSON object, unknown field, wrong type), `missing_field`, `invalid_event` (bad `type`, `id`, `time`, `specversion`, `data_base64`, both `data` and `data_base64`, reserved header, empty or oversized batch, an id twice in the batch), `invalid_argument` (bad `expected_version`, given twice), `invalid_stream_key`.", body = evident_api::ErrorBody),
        (status = 403, description = "`internal_topic`.", body = evident_api::ErrorBody),
        (status = 404, description = "`unknown_topic`.", body = evident_api::ErrorBody),
        (status = 422, description = "`schema_violation`: on a topic with `confluent.value.schema.validation`, an event's `data` is not valid for the JSON Schema registered for its subject (default `<topic>-<type>`; see docs/registry-validation.md), or none is registered. The body adds `subject`, `path` (JSON Pointer into `data`) and `event_index`. Nothing was stored.", body = evident_api::ErrorBody),
        (status = 409, description = "`wrong_expected_version` (carries `current_version`, `null` when there is no stream), `event_id_reused`, `partial_duplicate`, `key_in_other_partition`.", body = evident_api::ErrorBody),
        (status = 413, description = "`payload_too_large`.", body = evident_api::ErrorBody),
        (status = 500, description = "`internal`, `corrupted`.", body = evident_api::ErrorBody),
        (status = 503, description = "`unavailable` (not stored), `outcome_unknown` (a write failed after the events may have reached the disk: the body adds `\"outcome\": \"unknown\"` and `event_ids`; retry with the same ids).", body = evident_api::ErrorBody),
        (status = 507, description = "`disk_full`: nothing was stored; reads go on and writes resume once space is freed.", body = evident_api::ErrorBody),
    )
)]
pub(super) async fn append(
    State(state): State<AppState>,
    PathParams((topic, key)): PathParams<(String, String)>,
    params: Params,
    req: Request,
) -> Result<Response, ApiError> {
    params.allow(&["expected_version"])?;
    refuse_internal(&topic)?;
    check_key(&key)?;
    let (headers, query) = (req.headers().clone(), req.uri().query().map(str::to_string));
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
    let mut events = request.events;
    validate_schemas(&state, &topic, &mut events)?;
    let bytes: usize = events.iter().map(|e| e.data.len()).sum();
    if let Some(cluster) = &state.cluster {
        let outcome = match cluster.append(&topic, &key, expected, &events, &headers, query.as_deref(), &body).await? {
            Appended::Here(outcome) => outcome,
            Appended::Forwarded(response) => return Ok(response),
        };
        return append_reply(&state, &topic, &key, &events, bytes, &outcome);
    }
    // The append is checked, positioned and queued right here: that part is CPU work under the
    // log's lock. When no commit round is in flight, this thread then runs the round itself
    // (one write and one fdatasync, the wait the reply owes anyway): thread wake-ups were most
    // of an HTTP append's CPU in profiles, and this path has none. Otherwise the sync is
    // awaited as a future that the round covering it wakes directly. At most one thread blocks
    // in a sync at a time (see evident-log's module `log`).
    let mut pending = state.log.append_events_deferred(&topic, key.as_bytes(), expected, &events)?;
    // First let the other requests this thread has ready queue their appends (the yield lets
    // the reactor and every ready task run), so the round this one may lead commits them too:
    // without it a connection thread would sync once per request under load.
    tokio::task::yield_now().await;
    pending.commit_if_idle();
    // An unknown outcome carries the ids (generated ones too) the client must retry with.
    let outcome = pending
        .await
        .map_err(|e| ApiError::from(e).with_event_ids(|| events.iter().map(|e| e.id.to_string()).collect()))?;
    append_reply(&state, &topic, &key, &events, bytes, &outcome)
}

/// The reply to an append: `201` with each event's position, or `200` for an idempotent retry.
fn append_reply(
    state: &AppState,
    topic: &str,
    key: &str,
    events: &[evident_core::EventData],
    bytes: usize,
    outcome: &evident_log::AppendOutcome,
) -> Result<Response, ApiError> {
    if !outcome.duplicate {
        state.metrics.record_append(events.len() as u64, bytes as u64);
    }
    let reply = AppendReply {
        topic,
        key,
        partition: outcome.partition,
        duplicate: outcome.duplicate,
        events: outcome
            .records
            .iter()
            .zip(events)
            .map(|(r, e)| Position { id: &e.id, offset: r.offset, version: r.version, sequence: r.sequence })
            .collect(),
    };
    let status = if outcome.duplicate { StatusCode::OK } else { StatusCode::CREATED };
    let mut response = json_response(&reply, reply.events.len())?;
    *response.status_mut() = status;
    Ok(response)
}

/// On a topic with `confluent.value.schema.validation`, checks each event's data against the
/// JSON Schema of its subject's latest version (the event-type subject `<topic>-<type>` unless
/// the topic names another strategy) and stamps the event with the schema's id in the reserved
/// `evident-schema-id` header. The first event that fails refuses the request (422
/// `schema_violation`, with the subject and the failing path), before anything is queued. An
/// unknown topic is left to the append's own refusal.
fn validate_schemas(state: &AppState, topic: &str, events: &mut [evident_core::EventData]) -> Result<(), ApiError> {
    let Ok(meta) = state.log.topic_meta(topic) else { return Ok(()) };
    if !meta.config.value_schema_validation {
        return Ok(());
    }
    let Some(validation) = &state.validation else {
        return Err(ApiError::of(
            evident_api::ErrorCode::SchemaViolation,
            format!("topic {topic} has schema validation on, and no schema registry runs in this server; nothing was stored"),
        ));
    };
    for (index, event) in events.iter_mut().enumerate() {
        let refuse = |reason: String| evident_registry::Refusal { subject: None, reason, path: None };
        let data: serde_json::Value = serde_json::from_slice(&event.data)
            .map_err(|e| ApiError::schema_violation(index, refuse(format!("data is not JSON: {e}"))))?;
        let id = validation
            .check_event(topic, meta.config.value_subject_name_strategy, &event.event_type, &data)
            .map_err(|r| ApiError::schema_violation(index, r))?;
        event.extra_headers.push((evident_core::envelope::SCHEMA_ID.to_string(), Some(id.to_string().into_bytes())));
    }
    Ok(())
}

/// The reply to an append.
#[derive(Serialize)]
struct AppendReply<'a> {
    topic: &'a str,
    key: &'a str,
    partition: u32,
    duplicate: bool,
    events: Vec<Position<'a>>,
}

/// Where one appended event landed.
#[derive(Serialize)]
struct Position<'a> {
    id: &'a str,
    offset: u64,
    version: Option<u64>,
    sequence: u64,
}

/// `GET /v1/topics/{topic}/streams/{key}`. With `Accept: application/x-ndjson` the events come
/// as newline-delimited JSON, one event object per line, rendered and sent a chunk at a time
/// (the page's fields move to `evident-*` response headers); otherwise as one JSON page.
#[utoipa::path(
    get,
    path = "/v1/topics/{topic}/streams/{key}",
    tag = "streams",
    operation_id = "readStream",
    summary = "Read a stream",
    description = "Reads the stream `topic`/`key` forward or backward from `from_version`, at most `limit` events, optionally as it was at a version (`as_of_version`) or a time (`as_of_time`). A stream with no event is `404 stream_not_found`. A page also stops before its body passes `--http-response-max-bytes` (default 4 MiB), holding at least one event; so it may hold fewer than `limit` events with more to come: follow `next_version` until it is `null`, never take a short page for the end.",
    params(evident_api::params::StreamPath, evident_api::params::StreamReadQuery),
    responses(
        (status = 200, description = "A page of the stream; with `Accept: application/x-ndjson`, the events as newline-delimited JSON (one `Event` object per line), the page's other fields in the `evident-*` response headers.",
            content((evident_api::streams::StreamPage = "application/json"), (String = "application/x-ndjson"))),
        (status = 400, description = "`invalid_argument`, `invalid_stream_key`.", body = evident_api::ErrorBody),
        (status = 404, description = "`unknown_topic`, `stream_not_found`.", body = evident_api::ErrorBody),
        (status = 500, description = "`internal`, `corrupted`.", body = evident_api::ErrorBody),
    )
)]
pub(super) async fn read(
    State(state): State<AppState>,
    PathParams((topic, key)): PathParams<(String, String)>,
    params: Params,
    headers: HeaderMap,
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
    if let Some(cluster) = &state.cluster {
        cluster.catch_up_stream(&topic, &key).await?;
    }
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
    if wants_ndjson(&headers) {
        return Ok(ndjson_response(read.events, read.partition, current, next_version));
    }
    // Written straight from the events (no intermediate JSON tree): reads are the hot path. The
    // wire form is `evident_api::streams::StreamPage`, fields in its order.
    let reservation = state.responses.reserve(&read.events).await;
    let mut page = PageWriter::bounded(&read.events, state.responses.per_response);
    page.str("topic", &topic)
        .str("key", &key)
        .opt_u64("partition", read.partition.map(u64::from))
        .u64("current_version", current)
        .events("events", &read.events);
    // A page cut by its byte budget continues at the first event it left out (forward or
    // backward, that event's version is where the next read starts).
    let next_version = page.left_out(&read.events).and_then(|e| e.version).or(next_version);
    page.opt_u64("next_version", next_version);
    Ok(reservation.respond(page.finish()))
}
