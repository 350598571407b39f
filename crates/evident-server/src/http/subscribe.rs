//! `GET /v1/subscribe`: live subscriptions over Server-Sent Events, to a stream, a partition,
//! a topic, or everything. Catch-up and live delivery are one loop: read a page from the
//! position, send it, and when a read comes back empty wait for the commit notifier (or
//! shutdown). The response is a pull stream: the next page is read only when the client has
//! taken the previous one, so a slow client holds one page in memory and never slows
//! appends, and a client that disconnects drops the stream and everything it held.

use std::collections::VecDeque;
use std::convert::Infallible;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::sse::{Event as SseEvent, KeepAlive, Sse};
use axum::response::{IntoResponse, Response};
use evident_log::{Event, StreamReadOptions};
use futures_util::stream;
use tokio::sync::OwnedSemaphorePermit;

use super::event_json::write_event;
use super::extract::{parse_u64, Params};
use super::topics::is_internal;
use super::{ApiError, AppState};
use crate::metrics::Metrics;

/// Events read per page.
const PAGE: usize = 256;

/// What a subscription follows; the position is the next one to deliver.
#[derive(Debug, Clone)]
enum Target {
    Stream { topic: String, key: String },
    Partition { topic: String, partition: u32 },
    Topic { topic: String },
    All,
}

impl Target {
    /// The `id:` of an event: the position a client resumes after.
    fn position_of(&self, e: &Event) -> u64 {
        match self {
            Target::Stream { .. } => e.version.unwrap_or(0),
            Target::Partition { .. } => e.offset,
            Target::Topic { .. } | Target::All => e.sequence,
        }
    }

    /// Reads the next page from `from`; returns the events and the position after the last
    /// one examined (which, for filtered reads, may be past the last event returned).
    fn read(&self, log: &evident_log::Log, from: u64) -> Result<(Vec<Event>, u64), evident_log::Error> {
        match self {
            Target::Stream { topic, key } => {
                let options = StreamReadOptions { from_version: Some(from), limit: PAGE, ..Default::default() };
                let read = log.read_stream(topic, key.as_bytes(), &options)?;
                let next = read.events.last().and_then(|e| e.version).map_or(from, |v| v + 1);
                Ok((read.events, next))
            }
            Target::Partition { topic, partition } => {
                let events = log.read_partition_events(topic, *partition, from, PAGE)?;
                let next = events.last().map_or(from, |e| e.offset + 1);
                Ok((events, next))
            }
            Target::Topic { topic } => {
                // Make sure the topic still exists (a deleted topic ends the subscription).
                log.describe_topic(topic)?;
                let mut events = log.read_all(from, PAGE)?;
                let next = events.last().map_or(from, |e| e.sequence + 1);
                events.retain(|e| e.topic.as_str() == topic);
                Ok((events, next))
            }
            Target::All => {
                let mut events = log.read_all(from, PAGE)?;
                let next = events.last().map_or(from, |e| e.sequence + 1);
                events.retain(|e| !is_internal(e.topic.as_str()));
                Ok((events, next))
            }
        }
    }
}

/// Keeps the open-subscriptions gauge true, and holds the subscription's slot, however the
/// stream ends.
struct Open(Arc<Metrics>, #[allow(dead_code)] OwnedSemaphorePermit);

impl Drop for Open {
    fn drop(&mut self) {
        self.0.open_subscriptions.fetch_sub(1, Ordering::Relaxed);
    }
}

struct Cursor {
    state: AppState,
    target: Target,
    next: u64,
    buffer: VecDeque<Event>,
    done: bool,
    _open: Open,
}

/// Subscribe to live events (Server-Sent Events).
#[utoipa::path(
    get,
    path = "/v1/subscribe",
    tag = "subscriptions",
    operation_id = "subscribe",
    description = "Follows a stream (`topic` and `key`, from `from_version`), a partition (`topic` and `partition`, from `from_offset`), a whole topic in commit order (`topic`, from `from_sequence`), or everything in commit order, internal topics excluded (no parameter, from `from_sequence`). Starting positions default to 0; only the one that fits the target is accepted. `key` and `partition` need a `topic` and exclude each other. The topic (and partition) must exist when subscribing (`404`); a stream need not exist yet. A slow client holds at most one read page (256 events) and never slows appends.",
    params(
        evident_api::params::SubscribeQuery,
        ("Last-Event-ID" = Option<String>, Header, pattern = "^\\s*[0-9]+\\s*$",
            description = "Sent by browsers on reconnect: the `id:` of the last message received. Delivery resumes after that position, and it wins over the `from_*` parameter."),
    ),
    responses(
        (status = 200, content_type = "text/event-stream", body = String,
            description = "A Server-Sent Events stream. Each message is one event: `id: <position>` and `data: <the event as JSON, as the Event schema>`. The `id:` is the event's version (stream subscription), offset (partition subscription) or commit sequence (topic and everything). A comment line (`:keep-alive`) is sent every 15 seconds. If reading fails (for instance the topic is deleted), a last message `event: error` with `data: {\"error\":{\"code\":\"subscription_ended\",\"message\":\"...\"}}` is sent and the stream ends; it also ends when the server shuts down."),
        (status = 400, description = "`invalid_argument` (bad combination or value, bad `Last-Event-ID`), `invalid_stream_key`.", body = evident_api::ErrorBody),
        (status = 404, description = "`unknown_topic`, `unknown_partition`.", body = evident_api::ErrorBody),
        (status = 500, description = "`internal`, `corrupted`.", body = evident_api::ErrorBody),
    )
)]
pub(super) async fn subscribe(
    State(state): State<AppState>,
    headers: HeaderMap,
    params: Params,
) -> Result<Response, ApiError> {
    params.allow(&["topic", "key", "partition", "from_version", "from_offset", "from_sequence"])?;
    let topic = params.str("topic").map(str::to_string);
    let key = params.str("key").map(str::to_string);
    let partition = params.u64("partition")?;
    let (target, from_name) = match (topic, key, partition) {
        (Some(topic), Some(key), None) => {
            if key.is_empty() {
                return Err(ApiError::new(
                    axum::http::StatusCode::BAD_REQUEST,
                    "invalid_stream_key",
                    "the stream key is empty",
                ));
            }
            (Target::Stream { topic, key }, "from_version")
        }
        (Some(topic), None, Some(p)) => {
            let partition =
                u32::try_from(p).map_err(|_| ApiError::invalid(format!("partition {p} is out of range")))?;
            (Target::Partition { topic, partition }, "from_offset")
        }
        (Some(topic), None, None) => (Target::Topic { topic }, "from_sequence"),
        (None, None, None) => (Target::All, "from_sequence"),
        (None, _, _) => return Err(ApiError::invalid("key and partition need a topic")),
        (Some(_), Some(_), Some(_)) => return Err(ApiError::invalid("give key or partition, not both")),
    };
    for other in ["from_version", "from_offset", "from_sequence"] {
        if other != from_name && params.str(other).is_some() {
            return Err(ApiError::invalid(format!("{other} does not apply to this subscription; use {from_name}")));
        }
    }
    // Last-Event-ID (a reconnecting client) wins over the starting parameter.
    let from = match headers.get("last-event-id") {
        Some(v) => {
            let text = v.to_str().map_err(|_| ApiError::invalid("Last-Event-ID is not text"))?;
            parse_u64("Last-Event-ID", text.trim())?.saturating_add(1)
        }
        None => params.u64(from_name)?.unwrap_or(0),
    };
    // Take a slot before the probe: a full server refuses without spending a blocking thread.
    let slot = state.subscriptions.clone().try_acquire_owned().map_err(|_| {
        ApiError::new(
            axum::http::StatusCode::SERVICE_UNAVAILABLE,
            "too_many_subscriptions",
            format!(
                "the server already serves {} live subscriptions (--http-subscriptions-max); retry later",
                state.subscriptions_max
            ),
        )
    })?;
    // Check the target exists now, so a typo is a 404 rather than an empty stream.
    let probe = target.clone();
    let log = state.log.clone();
    state
        .blocking(move || {
            match &probe {
                Target::Stream { topic, .. } | Target::Topic { topic } => {
                    log.describe_topic(topic)?;
                }
                Target::Partition { topic, partition } => {
                    log.partition_offsets(topic, *partition)?;
                }
                Target::All => {}
            }
            Ok(())
        })
        .await?;

    state.metrics.open_subscriptions.fetch_add(1, Ordering::Relaxed);
    let open = Open(state.metrics.clone(), slot);
    let cursor = Cursor { state, target, next: from, buffer: VecDeque::new(), done: false, _open: open };
    let events = stream::unfold(cursor, |mut c| async move {
        let item = next_item(&mut c).await?;
        Some((Ok::<_, Infallible>(item), c))
    });
    Ok(Sse::new(events)
        .keep_alive(KeepAlive::new().interval(Duration::from_secs(15)).text("keep-alive"))
        .into_response())
}

/// The next SSE message, or None when the subscription ends (shutdown, error, topic gone).
async fn next_item(c: &mut Cursor) -> Option<SseEvent> {
    loop {
        if c.done {
            return None;
        }
        if let Some(e) = c.buffer.pop_front() {
            let id = c.target.position_of(&e);
            let mut data = Vec::new();
            write_event(&mut data, &e);
            // `write_event` writes UTF-8; were it ever not to, the message would carry
            // replacement characters rather than end the subscription.
            let data = String::from_utf8(data).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
            return Some(SseEvent::default().id(id.to_string()).data(data));
        }
        if *c.state.shutdown.borrow() {
            return None;
        }
        // Mark the commit signal seen before reading, so a commit that lands after the read
        // wakes the wait below.
        let mut commits = c.state.commits.clone();
        commits.borrow_and_update();
        let (target, from, log) = (c.target.clone(), c.next, c.state.log.clone());
        let read = tokio::task::spawn_blocking(move || target.read(&log, from)).await;
        match read {
            Ok(Ok((events, next))) => {
                let empty = next == c.next;
                c.next = next;
                c.buffer.extend(events);
                if !empty {
                    continue;
                }
            }
            Ok(Err(e)) => return Some(error_event(&e.to_string(), &mut c.done)),
            Err(e) => return Some(error_event(&format!("read failed: {e}"), &mut c.done)),
        }
        let mut shutdown = c.state.shutdown.clone();
        tokio::select! {
            changed = commits.changed() => {
                if changed.is_err() {
                    return None;
                }
            }
            _ = shutdown.wait_for(|stop| *stop) => return None,
        }
    }
}

/// A final `event: error` message; the subscription ends after it.
fn error_event(message: &str, done: &mut bool) -> SseEvent {
    *done = true;
    SseEvent::default()
        .event("error")
        .data(serde_json::json!({ "error": { "code": "subscription_ended", "message": message } }).to_string())
}
