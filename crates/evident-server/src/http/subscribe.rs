//! `GET /v1/subscribe`: live subscriptions over Server-Sent Events, to a stream, a partition,
//! a topic, or everything. The response is a pull stream: the next message is prepared only
//! when the client has taken the previous one, so a slow client holds a bounded amount of
//! memory and never slows appends, and a client that disconnects drops everything it held.
//!
//! A subscription is in one of two modes:
//!
//! - *Catching up*: it reads pages (256 events) from its own position on the blocking pool,
//!   until a read comes back empty.
//! - *Live*: it follows the shared [`Feed`], one task per server that reads each newly
//!   committed range of the log once, keeps the last pages in a bounded ring, and announces its
//!   end in a `watch`. A live subscriber takes the pages past its commit sequence from the ring
//!   (cloning `Arc`s), keeps the events its target matches, and renders each event's JSON at
//!   most once for all subscribers (the rendering is cached on the page). A subscriber the
//!   ring has moved past (a slow client) goes back to catching up from its own position.
//!
//! Why: each subscription used to read the log itself on every commit, on a blocking-pool
//! thread: with 200 reading subscribers every commit cost 200 thread hand-offs and reads, and
//! append throughput fell from 950 to 150 events/s (600: 67 events/s, 518 threads). With the
//! feed, a commit round costs one read however many subscribers follow, no thread per
//! subscriber, and one rendering per event.
//!
//! Exactly once, in order: a subscriber switches to live only after a read that came back
//! empty, from the commit sequence it had seen announced *before* that read; every matching
//! event below it was visible to the read. Events at or past it come from the feed, and an
//! event is delivered only if its position (version, offset or sequence) is at or past the
//! subscriber's next position, so an event both read and fed is sent once.
//!
//! A deleted topic ends a catching-up subscription at its next read and a live one within a
//! second (live subscribers check that their topic still exists at most once a second, a
//! lookup under the log's lock, rather than on every commit).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::ops::Range;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use axum::extract::State;
use axum::http::HeaderMap;
use axum::response::Response;
use bytes::{Bytes, BytesMut};
use evident_log::{Event, StreamReadOptions};
use futures_util::stream;
use tokio::sync::{watch, OwnedSemaphorePermit};
use tokio::time::Instant;

use super::event_json::write_event;
use super::extract::{parse_u64, Params};
use super::sse;
use super::topics::is_internal;
use super::{ApiError, AppState};
use crate::metrics::Metrics;

/// Events read per page.
const PAGE: usize = 256;
/// Events the feed reads at most per read of the log.
const FEED_PAGE: usize = 1024;
/// Stored bytes a feed page holds at most (or one event): bounds what a page renders.
const FEED_PAGE_BYTES: usize = 1 << 20;
/// Events the feed's ring keeps: how far behind the feed a live subscriber may fall before it
/// goes back to reading on its own.
const FEED_RING_EVENTS: usize = 8192;
/// Stored bytes the feed's ring keeps at most (its events are slices of the mapped journal,
/// but pages read with `pread` own their bytes).
const FEED_RING_BYTES: usize = 16 << 20;
/// How often a live subscription checks that its topic still exists.
const TOPIC_CHECK_EVERY: Duration = Duration::from_secs(1);
/// The wait between two deliveries of a live subscription, per open subscription: a live
/// subscriber that delivered less than `open × LINGER_PER_SUBSCRIPTION` ago waits out the rest
/// before taking the next pages, so that what commits meanwhile goes out in the same write.
/// Profiles of 500 reading subscribers showed the cost of fan-out is the socket writes (and on
/// loopback the readers' wake-ups they cause), not reading or rendering: one write per
/// subscriber per commit round cost 1.7 ms of server CPU per append. With the linger the
/// server makes at most about 1 / LINGER_PER_SUBSCRIPTION = 5,000 subscription writes a
/// second however many subscribers there are (a write budget: in the fan-out bench the server
/// spent 584 µs of CPU per append at 50 µs, 379 µs at 200 µs); the price is delivery latency
/// under sustained load (500 subscribers: up to 100 ms), none when commits are rarer.
const LINGER_PER_SUBSCRIPTION: Duration = Duration::from_micros(200);
/// The longest linger, however many subscriptions.
const LINGER_MAX: Duration = Duration::from_millis(100);
/// A live subscription with nothing to send writes a keep-alive comment this long after its
/// last write.
const KEEP_ALIVE_EVERY: Duration = Duration::from_secs(15);
/// The most bytes of messages put in one body chunk (one socket write): past it the rest of
/// the buffered events go in the next chunk, so a page of large events is never rendered
/// into memory at once.
const CHUNK_BYTES: usize = 256 << 10;

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

    /// Whether a fed event belongs to this subscription.
    fn matches(&self, e: &Event) -> bool {
        match self {
            Target::Stream { topic, key } => e.topic.as_str() == topic && e.key.as_deref() == Some(key.as_bytes()),
            Target::Partition { topic, partition } => e.topic.as_str() == topic && e.partition == *partition,
            Target::Topic { topic } => e.topic.as_str() == topic,
            Target::All => !is_internal(e.topic.as_str()),
        }
    }

    /// The topic a live subscription checks for, if any.
    fn topic(&self) -> Option<&str> {
        match self {
            Target::Stream { topic, .. } | Target::Partition { topic, .. } | Target::Topic { topic } => Some(topic),
            Target::All => None,
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
    /// The position of the next event to deliver.
    next: u64,
    /// Messages ready to send, oldest first.
    buffer: VecDeque<Pending>,
    /// How many events `buffer` holds.
    buffered: usize,
    /// Live: the commit sequence the next fed event is looked for from; None: catching up.
    live: Option<u64>,
    /// When a live subscription last checked its topic.
    checked: Instant,
    /// When a live subscription last took events from the feed.
    fed: Option<Instant>,
    /// When the last chunk was written: a keep-alive is due `KEEP_ALIVE_EVERY` after it.
    wrote: Instant,
    done: bool,
    _open: Open,
}

/// Messages ready to send: rendered by the subscription (catching up) or shared through the
/// feed's page (live).
enum Pending {
    /// An event the subscription read itself, and its position.
    Own(u64, Event),
    /// A fed event and its position (stream and partition subscriptions, whose message ids are
    /// versions and offsets): its JSON is rendered once on the page for every subscriber.
    Fed(u64, Arc<FeedPage>, usize),
    /// Consecutive fed events whose message ids are their commit sequences (topic and
    /// everything subscriptions): a slice of the page's messages, rendered once for every such
    /// subscriber and sent without a copy.
    Run(Arc<FeedPage>, Range<usize>),
}

impl Pending {
    fn events(&self) -> usize {
        match self {
            Pending::Own(..) | Pending::Fed(..) => 1,
            Pending::Run(_, run) => run.len(),
        }
    }
}

/// The shared reader of newly committed events (see the module comment).
pub struct Feed {
    ring: Mutex<Ring>,
    /// The commit sequence after the last page in the ring; changes wake live subscribers.
    end: watch::Sender<u64>,
}

/// The feed's last pages, oldest first.
struct Ring {
    pages: VecDeque<Arc<FeedPage>>,
    events: usize,
    bytes: usize,
}

/// Committed events `[from, end)` of the whole log (internal topics included: subscribers
/// filter), each with its JSON, rendered once on first use; and, for the subscriptions whose
/// message ids are commit sequences, every event's whole message, rendered once on first use.
pub struct FeedPage {
    from: u64,
    end: u64,
    events: Vec<(Event, OnceLock<String>)>,
    by_sequence: OnceLock<Messages>,
}

/// A page's messages, one after the other, and where each ends.
struct Messages {
    bytes: Bytes,
    ends: Vec<usize>,
}

impl FeedPage {
    fn new(from: u64, end: u64, events: Vec<Event>) -> FeedPage {
        let events = events.into_iter().map(|e| (e, OnceLock::new())).collect();
        FeedPage { from, end, events, by_sequence: OnceLock::new() }
    }

    fn rendered(&self, i: usize) -> &str {
        let (e, text) = &self.events[i];
        text.get_or_init(|| render(e))
    }

    /// The messages of the events in `run`, each with its commit sequence as its id.
    fn run(&self, run: &Range<usize>) -> Bytes {
        let messages = self.by_sequence.get_or_init(|| {
            let mut bytes = BytesMut::new();
            let mut ends = Vec::with_capacity(self.events.len());
            for (e, _) in &self.events {
                sse::write_message(&mut bytes, None, Some(e.sequence), &render(e));
                ends.push(bytes.len());
            }
            Messages { bytes: bytes.freeze(), ends }
        });
        let start = if run.start == 0 { 0 } else { messages.ends[run.start - 1] };
        messages.bytes.slice(start..messages.ends[run.end - 1])
    }
}

impl Feed {
    /// The server's feed, started by the first subscription on the runtime that serves it (a
    /// connection thread's, for the server's life) and ended with the server.
    fn get(state: &AppState) -> Arc<Feed> {
        state
            .feed
            .get_or_init(|| {
                let start = state.log.stats().next_sequence;
                let (end, _) = watch::channel(start);
                let feed =
                    Arc::new(Feed { ring: Mutex::new(Ring { pages: VecDeque::new(), events: 0, bytes: 0 }), end });
                tokio::spawn(feed.clone().run(state.clone(), start));
                feed
            })
            .clone()
    }

    /// Reads each committed range once, as commits are announced. The read runs on this task:
    /// it takes the log's lock briefly and slices the mapped journal (pages just written are
    /// in the page cache), which costs less than handing it to a blocking-pool thread per
    /// commit round.
    async fn run(self: Arc<Self>, state: AppState, mut next: u64) {
        let mut commits = state.commits.clone();
        let mut shutdown = state.shutdown.clone();
        loop {
            let visible = *commits.borrow_and_update();
            if visible > next {
                let events = match state.log.read_all(next, FEED_PAGE) {
                    Ok(events) => events,
                    // A failed read (a corrupted frame) is left to the subscribers' own reads,
                    // which report it: the ring restarts past the range, so every live
                    // subscriber behind it goes back to reading for itself.
                    Err(e) => {
                        tracing::warn!(error = %e, from = next, "the subscription feed cannot read; its subscribers read on their own");
                        self.restart_at(visible);
                        next = visible;
                        continue;
                    }
                };
                // Fewer events than asked: the read examined every record visible when it ran,
                // at least up to `visible`; records it skipped belong to deleted topics.
                let last = events.last().map(|e| e.sequence + 1);
                let end =
                    if events.len() == FEED_PAGE { last.unwrap_or(visible) } else { last.unwrap_or(0).max(visible) };
                // Pages of at most FEED_PAGE_BYTES stored (and at least one event), so that what a
                // page renders stays small whatever the events' size.
                let mut events = events.into_iter().peekable();
                let mut from = next;
                loop {
                    let (mut page, mut bytes) = (Vec::new(), 0);
                    while let Some(e) =
                        events.next_if(|e| page.is_empty() || bytes + stored_bytes(e) <= FEED_PAGE_BYTES)
                    {
                        bytes += stored_bytes(&e);
                        page.push(e);
                    }
                    let page_end = match (events.peek(), page.last()) {
                        (Some(_), Some(last)) => last.sequence + 1,
                        _ => end,
                    };
                    self.push(FeedPage::new(from, page_end, page));
                    from = page_end;
                    if events.peek().is_none() {
                        break;
                    }
                }
                next = end;
                self.end.send_replace(end);
                continue;
            }
            tokio::select! {
                changed = commits.changed() => if changed.is_err() { return },
                _ = shutdown.wait_for(|stop| *stop) => return,
            }
        }
    }

    fn push(&self, page: FeedPage) {
        let bytes: usize = page.events.iter().map(|(e, _)| stored_bytes(e)).sum();
        let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        ring.events += page.events.len();
        ring.bytes += bytes;
        ring.pages.push_back(Arc::new(page));
        while ring.pages.len() > 1 && (ring.events > FEED_RING_EVENTS || ring.bytes > FEED_RING_BYTES) {
            if let Some(old) = ring.pages.pop_front() {
                ring.events -= old.events.len();
                ring.bytes -= old.events.iter().map(|(e, _)| stored_bytes(e)).sum::<usize>();
            }
        }
    }

    /// Empties the ring and starts it again at `at`, announced.
    fn restart_at(&self, at: u64) {
        {
            let mut ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
            ring.pages.clear();
            ring.pages.push_back(Arc::new(FeedPage::new(at, at, Vec::new())));
            (ring.events, ring.bytes) = (0, 0);
        }
        self.end.send_replace(at);
    }

    /// The pages that end past `from`, or None when the ring does not reach back to it.
    fn pages_after(&self, from: u64) -> Option<Vec<Arc<FeedPage>>> {
        let ring = self.ring.lock().unwrap_or_else(|p| p.into_inner());
        match ring.pages.front() {
            Some(first) if first.from <= from => Some(ring.pages.iter().filter(|p| p.end > from).cloned().collect()),
            _ => None,
        }
    }
}

fn stored_bytes(e: &Event) -> usize {
    e.key.as_ref().map_or(0, |k| k.len()) + e.value.as_ref().map_or(0, |v| v.len()) + e.encoded_headers().0.len()
}

/// An event's JSON as a `String` (what an SSE message carries).
fn render(e: &Event) -> String {
    let mut data = Vec::new();
    write_event(&mut data, e);
    // `write_event` writes UTF-8; were it ever not to, the message would carry replacement
    // characters rather than end the subscription.
    String::from_utf8(data).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned())
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
        (status = 501, description = "`not_on_cluster`: the server's storage is a Kafka cluster (`--storage kafka://`), which does not serve this route (docs/cluster.md).", body = evident_api::ErrorBody),
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
            // A partition's subscription resumes by offset, and the mirror's are not the
            // cluster's: a Kafka consumer follows a partition of the cluster itself.
            state.embedded_only(
                "partition subscriptions",
                "consume the partition from the cluster with a Kafka client",
            )?;
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
    // On a node the mirror first knows the topic (another node may just have created it).
    if let (Some(cluster), Target::Stream { topic, .. } | Target::Topic { topic }) = (&state.cluster, &target) {
        cluster.backend.catch_up_topic(topic).await.map_err(super::cluster::from_backend)?;
    }
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
    let cursor = Cursor {
        state,
        target,
        next: from,
        buffer: VecDeque::new(),
        buffered: 0,
        live: None,
        checked: Instant::now(),
        fed: None,
        wrote: Instant::now(),
        done: false,
        _open: open,
    };
    let chunks = stream::unfold(cursor, |mut c| async move {
        let chunk = next_chunk(&mut c).await?;
        c.wrote = Instant::now();
        Some((Ok::<_, Infallible>(chunk), c))
    });
    Ok(sse::response(chunks))
}

/// What a step of a subscription came to.
enum Step {
    /// Events were buffered, or the mode changed: look again.
    More,
    /// Nothing to send for `KEEP_ALIVE_EVERY`.
    KeepAlive,
    /// The subscription ends (shutdown, or the feed is gone).
    End,
}

/// The next body chunk: every buffered message (up to `CHUNK_BYTES`) in one write, a
/// keep-alive, or a final error message; None when the subscription ends (shutdown, error,
/// topic gone).
async fn next_chunk(c: &mut Cursor) -> Option<Bytes> {
    loop {
        if c.done {
            return None;
        }
        if let Some(first) = c.buffer.pop_front() {
            c.buffered -= first.events();
            if let Pending::Run(page, run) = &first {
                // Already rendered: sent as it is. hyper writes the chunks a body yields
                // without waiting in one `writev`, so consecutive runs still go out together.
                return Some(page.run(run));
            }
            let mut out = BytesMut::new();
            let mut next = Some(first);
            while let Some(pending) = next {
                match &pending {
                    Pending::Own(id, e) => sse::write_message(&mut out, None, Some(*id), &render(e)),
                    Pending::Fed(id, page, i) => sse::write_message(&mut out, None, Some(*id), page.rendered(*i)),
                    Pending::Run(..) => unreachable!("a run is sent on its own"),
                }
                next = None;
                if out.len() < CHUNK_BYTES && !matches!(c.buffer.front(), None | Some(Pending::Run(..))) {
                    next = c.buffer.pop_front();
                    c.buffered -= next.as_ref().map_or(0, Pending::events);
                }
            }
            return Some(out.freeze());
        }
        if *c.state.shutdown.borrow() {
            return None;
        }
        let step = match c.live {
            Some(from) => follow_feed(c, from).await,
            None => catch_up(c).await,
        };
        match step {
            Ok(Step::More) => continue,
            Ok(Step::KeepAlive) => return Some(Bytes::from_static(sse::KEEP_ALIVE)),
            Ok(Step::End) => return None,
            Err(message) => return Some(error_chunk(&message, &mut c.done)),
        }
    }
}

/// Reads a page from the subscription's own position; switches to live when the read comes
/// back empty.
async fn catch_up(c: &mut Cursor) -> Result<Step, String> {
    // The commit sequence announced before the read: every event below it is visible to it.
    let seen = *c.state.commits.clone().borrow_and_update();
    let (target, from, log) = (c.target.clone(), c.next, c.state.log.clone());
    let (events, next) = match tokio::task::spawn_blocking(move || target.read(&log, from)).await {
        Ok(Ok(read)) => read,
        Ok(Err(e)) => return Err(e.to_string()),
        Err(e) => return Err(format!("read failed: {e}")),
    };
    let empty = next == c.next;
    c.next = next;
    c.buffered += events.len();
    for e in events {
        c.buffer.push_back(Pending::Own(c.target.position_of(&e), e));
    }
    if empty {
        c.live = Some(seen);
        c.checked = Instant::now();
    }
    Ok(Step::More)
}

/// Takes the events past `from` from the feed, waiting for the feed when there are none.
async fn follow_feed(c: &mut Cursor, from: u64) -> Result<Step, String> {
    let feed = Feed::get(&c.state);
    let mut end = feed.end.subscribe();
    if *end.borrow_and_update() <= from {
        if c.checked.elapsed() >= TOPIC_CHECK_EVERY {
            check_topic(c)?;
        }
        let mut shutdown = c.state.shutdown.clone();
        let tick = tokio::time::sleep(TOPIC_CHECK_EVERY);
        tokio::select! {
            changed = end.changed() => if changed.is_err() { return Ok(Step::End) },
            _ = shutdown.wait_for(|stop| *stop) => return Ok(Step::End),
            () = tokio::time::sleep_until(c.wrote + KEEP_ALIVE_EVERY) => return Ok(Step::KeepAlive),
            // Wake now and then so a deleted topic ends the subscription though nothing commits.
            () = tick, if c.target.topic().is_some() => {}
        }
        if let Some(fed) = c.fed {
            let open = c.state.metrics.open_subscriptions.load(Ordering::Relaxed);
            let linger =
                LINGER_PER_SUBSCRIPTION.saturating_mul(u32::try_from(open).unwrap_or(u32::MAX)).min(LINGER_MAX);
            let until = fed + linger;
            if until > Instant::now() {
                tokio::select! {
                    () = tokio::time::sleep_until(until) => {}
                    _ = shutdown.wait_for(|stop| *stop) => return Ok(Step::End),
                }
            }
        }
        return Ok(Step::More);
    }
    let Some(pages) = feed.pages_after(from) else {
        // The ring has moved past this subscriber: read on its own until it catches up again.
        c.live = None;
        return Ok(Step::More);
    };
    let by_sequence = matches!(c.target, Target::Topic { .. } | Target::All);
    let mut at = from;
    for page in pages {
        let mut run: Option<Range<usize>> = None;
        for (i, (e, _)) in page.events.iter().enumerate() {
            let position = c.target.position_of(e);
            if e.sequence < at || !c.target.matches(e) || position < c.next {
                if let Some(run) = run.take() {
                    c.buffered += run.len();
                    c.buffer.push_back(Pending::Run(page.clone(), run));
                }
                continue;
            }
            c.next = position + 1;
            if by_sequence {
                run.get_or_insert(i..i).end = i + 1;
            } else {
                c.buffered += 1;
                c.buffer.push_back(Pending::Fed(position, page.clone(), i));
            }
        }
        if let Some(run) = run {
            c.buffered += run.len();
            c.buffer.push_back(Pending::Run(page.clone(), run));
        }
        at = page.end;
        // A slow client holds about one page of events, as when it reads for itself.
        if c.buffered >= PAGE {
            break;
        }
    }
    if matches!(c.target, Target::Topic { .. } | Target::All) {
        // Positions are commit sequences: the next one to deliver is past everything examined.
        c.next = c.next.max(at);
    }
    c.live = Some(at);
    if !c.buffer.is_empty() {
        c.fed = Some(Instant::now());
    }
    if c.checked.elapsed() >= TOPIC_CHECK_EVERY {
        check_topic(c)?;
    }
    Ok(Step::More)
}

/// Fails when the live subscription's topic (or partition) no longer exists.
fn check_topic(c: &mut Cursor) -> Result<(), String> {
    c.checked = Instant::now();
    let partition = match &c.target {
        Target::Partition { partition, .. } => *partition,
        _ => 0,
    };
    match c.target.topic() {
        Some(topic) => c.state.log.partition_offsets(topic, partition).map(|_| ()).map_err(|e| e.to_string()),
        None => Ok(()),
    }
}

/// A final `event: error` message; the subscription ends after it.
fn error_chunk(message: &str, done: &mut bool) -> Bytes {
    *done = true;
    let data = serde_json::json!({ "error": { "code": "subscription_ended", "message": message } }).to_string();
    let mut out = BytesMut::new();
    sse::write_message(&mut out, Some("error"), None, &data);
    out.freeze()
}
