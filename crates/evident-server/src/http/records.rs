//! Reads by position: one partition from an offset or a timestamp, and everything in
//! store-wide commit order (`/v1/all`), each page telling where the next one starts. The
//! pages are written by hand straight from the stored events (no intermediate tree, see
//! `PageWriter`); their wire form is `evident_api::records::{PartitionPage, AllPage}`, which the
//! document names, fields in its order.

use axum::extract::State;
use axum::response::Response;

use super::event_json::PageWriter;
use super::extract::{Params, PathParams};
use super::topics::is_internal;
use super::{ApiError, AppState};
use evident_api::limits::{READ_LIMIT_DEFAULT, READ_LIMIT_MAX};
use evident_api::params::{AllQuery, PartitionPath, PartitionReadQuery};
use evident_api::ErrorBody;

/// Read a partition by offset or time.
///
/// From `offset` (default: the log start offset) or from the first record at or after
/// `timestamp`, at most `limit` records. A
/// page also stops before its body passes `--http-response-max-bytes` (default 4 MiB), holding at
/// least one event; so it may hold fewer than `limit` events with more to come: follow
/// `next_offset` until it is `null`, never take a short page for the end.
#[utoipa::path(
    get,
    path = "/v1/topics/{topic}/partitions/{partition}/records",
    tag = "records",
    operation_id = "readPartition",
    params(PartitionPath, PartitionReadQuery),
    responses(
        (status = 200, description = "A page of records.", body = evident_api::records::PartitionPage),
        (status = 400, description = "`invalid_argument` (bad value, unknown parameter, both `offset` and `timestamp`), `offset_out_of_range`.", body = ErrorBody),
        (status = 404, description = "`unknown_topic`, `unknown_partition`.", body = ErrorBody),
        (status = 500, description = "`internal`, `corrupted`.", body = ErrorBody),
    )
)]
pub(super) async fn partition(
    State(state): State<AppState>,
    PathParams((topic, partition)): PathParams<(String, u32)>,
    params: Params,
) -> Result<Response, ApiError> {
    params.allow(&["offset", "timestamp", "limit"])?;
    let limit = params.count("limit", READ_LIMIT_DEFAULT, 1, READ_LIMIT_MAX)?;
    let offset = params.u64("offset")?;
    let timestamp = params.time_ms("timestamp")?;
    if offset.is_some() && timestamp.is_some() {
        return Err(ApiError::invalid("give offset or timestamp, not both"));
    }
    // With Kafka storage the mirror first catches up with the partition's last stable offset
    // (a read sees every append acknowledged before it, by any node), then is read from the
    // record holding Kafka offset `offset` or the next one (offsets are the cluster's; markers
    // and aborted records leave gaps).
    let mirror_start = match &state.cluster {
        Some(cluster) => {
            let start = cluster.mirror_offset(&topic, partition, offset.unwrap_or(0)).await?;
            offset.map(|_| start)
        }
        None => None,
    };
    let log = state.log.clone();
    let topic2 = topic.clone();
    let (events, offsets) = state
        .blocking(move || {
            let offsets = log.partition_offsets(&topic2, partition)?;
            let start = match (timestamp, mirror_start) {
                (Some(ts), _) => log.offset_for_timestamp(&topic2, partition, ts)?.unwrap_or(offsets.high_watermark),
                (None, Some(mirrored)) => mirrored.unwrap_or(offsets.high_watermark),
                (None, None) => offset.unwrap_or(offsets.log_start_offset),
            };
            let events = log.read_partition_events(&topic2, partition, start, limit)?;
            Ok((events, offsets))
        })
        .await?;
    if state.cluster.is_some() {
        return Ok(kafka_partition_page(&state, &topic, partition, events, limit).await);
    }
    let reservation = state.responses.reserve(&events).await;
    let mut page = PageWriter::bounded(&events, state.responses.per_response);
    page.str("topic", &topic)
        .u64("partition", u64::from(partition))
        .u64("log_start_offset", offsets.log_start_offset)
        .u64("high_watermark", offsets.high_watermark)
        .events("records", &events);
    // A page cut by its byte budget continues at the first record it left out.
    let next_offset = match page.left_out(&events) {
        Some(e) => Some(e.offset),
        None => events.last().map(|e| e.offset + 1).filter(|&n| n < offsets.high_watermark),
    };
    page.opt_u64("next_offset", next_offset);
    Ok(reservation.respond(page.finish()))
}

/// A page of a partition read from a Kafka cluster's mirror, with the cluster's offsets:
/// `high_watermark` is the partition's end as the mirror reached it (Kafka's, past transaction
/// markers: where a consumer that read everything stands, so a group's lag is 0 there),
/// `log_start_offset` the first mirrored record's offset, and `next_offset` one past the page's
/// last record while the mirror holds more (the next record's own offset is known only once
/// read), else null.
async fn kafka_partition_page(
    state: &AppState,
    topic: &str,
    partition: u32,
    events: Vec<evident_log::Event>,
    limit: usize,
) -> Response {
    let kafka = |e: &evident_log::Event| super::cluster::kafka_offset(e).unwrap_or(e.offset);
    let log = state.log.clone();
    let t = topic.to_string();
    let first = state
        .blocking(move || {
            let o = log.partition_offsets(&t, partition)?;
            let at = |offset| log.read_partition_events(&t, partition, offset, 1).map(|e| e.first().map(kafka));
            let first = if o.high_watermark > o.log_start_offset { at(o.log_start_offset)? } else { None };
            Ok(first)
        })
        .await
        .unwrap_or(None);
    let end = state.cluster.as_ref().map_or(0, |c| c.backend.mirror_end(topic, partition));
    let bounds = (first.unwrap_or(end).min(end), end);
    let reservation = state.responses.reserve(&events).await;
    let mut page = PageWriter::bounded(&events, state.responses.per_response);
    page.str("topic", topic)
        .u64("partition", u64::from(partition))
        .u64("log_start_offset", bounds.0)
        .u64("high_watermark", bounds.1)
        .events("records", &events);
    let next_offset = match page.left_out(&events) {
        Some(e) => Some(kafka(e)),
        // A short page ended where the mirror ends.
        None if events.len() < limit => None,
        None => events.last().map(|e| kafka(e) + 1).filter(|&n| n < bounds.1),
    };
    page.opt_u64("next_offset", next_offset);
    reservation.respond(page.finish())
}

/// Read everything in commit order.
///
/// Events of every topic in store-wide commit order from `from_sequence`, internal topics
/// excluded; `limit` bounds the records examined, so a page may hold fewer events. A
/// page also stops before its body passes `--http-response-max-bytes` (default 4 MiB), holding at
/// least one event; so it may hold fewer than `limit` events with more to come: follow
/// `next_sequence` until it is `null`, never take a short page for the end.
#[utoipa::path(
    get,
    path = "/v1/all",
    tag = "records",
    operation_id = "readAll",
    params(AllQuery),
    responses(
        (status = 200, description = "A page of events.", body = evident_api::records::AllPage),
        (status = 400, description = "`invalid_argument`.", body = ErrorBody),
        (status = 500, description = "`internal`, `corrupted`.", body = ErrorBody),
    )
)]
pub(super) async fn all(State(state): State<AppState>, params: Params) -> Result<Response, ApiError> {
    params.allow(&["from_sequence", "limit"])?;
    let limit = params.count("limit", READ_LIMIT_DEFAULT, 1, READ_LIMIT_MAX)?;
    let from = params.u64("from_sequence")?.unwrap_or(0);
    let log = state.log.clone();
    let (mut events, visible) = state
        .blocking(move || {
            let events = log.read_all(from, limit)?;
            // Measured after the read, so it covers every record the read saw: a page that
            // stops short of it is followed by `next_sequence`.
            let visible = log.stats().next_sequence;
            Ok((events, visible))
        })
        .await?;
    let next_sequence = events.last().map(|e| e.sequence + 1).filter(|&n| n < visible);
    events.retain(|e| !is_internal(e.topic.as_str()));
    let reservation = state.responses.reserve(&events).await;
    let mut page = PageWriter::bounded(&events, state.responses.per_response);
    page.events("events", &events);
    // A page cut by its byte budget continues at the first event it left out.
    let next_sequence = page.left_out(&events).map(|e| e.sequence).or(next_sequence);
    // `head_sequence` is the log's next commit sequence when the page was read: everything
    // before it is readable (the library's HTTP backend asks for it with an empty page).
    page.opt_u64("next_sequence", next_sequence).u64("head_sequence", visible);
    Ok(reservation.respond(page.finish()))
}
