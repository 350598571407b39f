//! Keeping a view up to date, exactly once. A thread per view reads its source topic in
//! commit-sequence order, applies the events to the view's state, and writes what changed to
//! the view's topic in **one batch** whose last record carries, in the header
//! [`POSITION_HEADER`], the commit sequence of the last source event applied. A batch is
//! stored whole or not at all (one frame, one checksum), so the view's rows and its position
//! in the source can never disagree: after a crash the view reads its topic back (rows and
//! the aggregates' whole state, header [`STATE_HEADER`]) and resumes after that position. No
//! event is counted twice or missed.
//!
//! A table's topic is its changelog (compacted: the key is the group, the value the row as
//! JSON, a tombstone when a row goes away), readable by any Kafka consumer. A stream's topic
//! holds its rows as events, keyed by the source event's key.
//!
//! A source event the view cannot apply (not JSON, a value of another type than planned, an
//! overflow) is parked in the view's dead-letter topic `<view>.dlq` (the format of
//! `evident_core::dead_letter`, so `evident dlq` lists it) and the view goes on.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Condvar, Mutex, RwLock};
use std::time::{Duration, Instant};

use evident_core::dead_letter;
use evident_core::envelope::EventData;
use evident_core::{BatchBuilder, ExpectedVersion};
use evident_log::{CleanupPolicy, Event, Log, TopicConfig};

use crate::catalog::ViewDef;
use crate::error::{Result, SqlError};
use crate::join::Source;
use crate::parse::ViewKind;
use crate::plan::{Column, Plan};
use crate::value::Value;
use crate::view::{project, row_json, Aggregator, Change};

/// Header on the last record of each batch a view writes: the source position it covers.
pub const POSITION_HEADER: &str = "evident-sql-position";
/// Header on the last record of each batch of a windowed table: its stream time (the largest
/// event time applied), so windows close at the same point after a restart.
pub const STREAM_TIME_HEADER: &str = "evident-sql-stream-time";
/// Header on each changelog record of a table: the group's whole state.
pub const STATE_HEADER: &str = "evident-sql-state";
/// Source events read per round.
const ROUND_EVENTS: usize = 8192;
/// Changed rows per batch: a round stops early rather than write a larger batch.
const ROUND_CHANGES: usize = 4096;

/// A change sent to push queries.
#[derive(Debug, Clone)]
pub struct PushChange {
    /// The row (None: deleted).
    pub row: Option<Arc<[Value]>>,
    /// Its changelog key.
    pub key: Vec<u8>,
}

/// What a view holds in memory.
#[derive(Debug)]
pub struct ViewData {
    /// A table's groups.
    pub agg: Option<Aggregator>,
    /// Commit sequence of the last source event applied (None: none yet).
    pub position: Option<u64>,
    /// Source events applied since the view started in this process.
    pub applied: u64,
    /// Events parked.
    pub parked: u64,
    /// Why the view stopped, if it did.
    pub failed: Option<String>,
}

/// A running view.
pub struct ViewHandle {
    /// Its definition.
    pub def: ViewDef,
    /// Its plan.
    pub plan: Plan,
    /// The source topic.
    pub source: String,
    /// The input as planned (cloned per reader).
    pub input: Source,
    /// State.
    pub data: RwLock<ViewData>,
    /// Wakes pull queries waiting for a position.
    pub moved: Condvar,
    moved_lock: Mutex<()>,
    stop: AtomicBool,
    subscribers: Mutex<Vec<std::sync::mpsc::SyncSender<PushChange>>>,
    thread: Mutex<Option<std::thread::JoinHandle<()>>>,
}

impl std::fmt::Debug for ViewHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ViewHandle").field("name", &self.def.name).finish()
    }
}

/// Most changes a push query may have queued before it is cut off as too slow.
pub const PUSH_QUEUE: usize = 10_000;

impl ViewHandle {
    /// The view's columns.
    pub fn columns(&self) -> &[Column] {
        &self.plan.columns
    }

    /// The position (last source sequence applied).
    pub fn position(&self) -> Option<u64> {
        self.data.read().unwrap_or_else(|e| e.into_inner()).position
    }

    /// Waits until the view has applied source sequence `seq`, at most `timeout`.
    pub fn wait_for(&self, seq: u64, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut guard = self.moved_lock.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if self.position().is_some_and(|p| p >= seq) {
                return true;
            }
            let now = Instant::now();
            if now >= deadline {
                return false;
            }
            guard = self
                .moved
                .wait_timeout(guard, (deadline - now).min(Duration::from_millis(50)))
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
    }

    /// Registers a push query.
    pub fn subscribe(&self) -> std::sync::mpsc::Receiver<PushChange> {
        let (tx, rx) = std::sync::mpsc::sync_channel(PUSH_QUEUE);
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner()).push(tx);
        rx
    }

    /// Stops the maintenance thread and waits for it.
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.lock().unwrap_or_else(|e| e.into_inner()).take() {
            let _ = t.join();
        }
        self.subscribers.lock().unwrap_or_else(|e| e.into_inner()).clear();
    }

    fn publish(&self, changes: &[Change]) {
        let mut subs = self.subscribers.lock().unwrap_or_else(|e| e.into_inner());
        if subs.is_empty() {
            return;
        }
        // A subscriber that cannot keep up (queue full) or went away is dropped: its stream
        // ends, and the client reconnects. The view never waits for a reader.
        subs.retain(|tx| {
            changes.iter().all(|c| tx.try_send(PushChange { row: c.row.clone(), key: c.key.clone() }).is_ok())
        });
    }
}

/// The topic config of a view's topic.
pub fn view_topic_config(kind: ViewKind) -> TopicConfig {
    TopicConfig {
        partitions: 1,
        cleanup_policy: if kind == ViewKind::Table { CleanupPolicy::Compact } else { CleanupPolicy::Delete },
        key_partition_guard: false,
        ..TopicConfig::default()
    }
}

/// Builds a handle, restores its state from its topic, and starts its thread.
pub fn start(log: Arc<Log>, def: ViewDef, plan: Plan, source: String, input: Source) -> Result<Arc<ViewHandle>> {
    let mut agg = (def.kind == ViewKind::Table).then(|| Aggregator::new(&plan, false));
    let position = restore(&log, &def.name, agg.as_mut())?;
    let handle = Arc::new(ViewHandle {
        def,
        plan,
        source,
        input,
        data: RwLock::new(ViewData { agg, position, applied: 0, parked: 0, failed: None }),
        moved: Condvar::new(),
        moved_lock: Mutex::new(()),
        stop: AtomicBool::new(false),
        subscribers: Mutex::new(Vec::new()),
        thread: Mutex::new(None),
    });
    let h = handle.clone();
    let thread = std::thread::Builder::new()
        .name(format!("sql-{}", handle.def.name))
        .spawn(move || run(&log, &h))
        .map_err(|e| SqlError::Corrupted(format!("cannot start the view's thread: {e}")))?;
    *handle.thread.lock().unwrap_or_else(|e| e.into_inner()) = Some(thread);
    Ok(handle)
}

/// Reads the view's topic back: a table's rows and state, and the position of the last batch.
fn restore(log: &Log, topic: &str, mut agg: Option<&mut Aggregator>) -> Result<Option<u64>> {
    let hw = log.partition_offsets(topic, 0)?.high_watermark;
    let mut offset = 0;
    let mut position = None;
    if agg.is_none() {
        // A stream keeps no state: only the last batch's position matters, on its last record.
        offset = hw.saturating_sub(1);
    }
    while offset < hw {
        let events = log.read_partition_events(topic, 0, offset, ROUND_EVENTS)?;
        let Some(last) = events.last() else { break };
        offset = last.offset + 1;
        for e in &events {
            if let (Some(agg), Some(t)) = (agg.as_deref_mut(), e.header(STREAM_TIME_HEADER)) {
                if let Some(t) = std::str::from_utf8(t).ok().and_then(|t| t.parse::<i64>().ok()) {
                    agg.stream_time = t;
                }
            }
            if let Some(p) = e.header(POSITION_HEADER) {
                let text = std::str::from_utf8(p).unwrap_or("");
                position = Some(text.parse::<u64>().map_err(|_| {
                    SqlError::Corrupted(format!("view topic {topic:?} offset {}: position header {text:?}", e.offset))
                })?);
            }
            let Some(agg) = agg.as_deref_mut() else { continue };
            let key = e.key.as_ref().map(|k| k.to_vec()).unwrap_or_default();
            match (&e.value, e.header(STATE_HEADER)) {
                // A row, or a group its HAVING hides: that tombstone still carries the group's
                // state, which the next events add to (dropping it lost them after a restart).
                (_, Some(state)) => agg
                    .restore(key, &String::from_utf8_lossy(state))
                    .map_err(|why| SqlError::Corrupted(format!("view topic {topic:?} offset {}: {why}", e.offset)))?,
                (None, None) => agg.remove(&key),
                // A record someone else produced to the view's topic is not the view's.
                (Some(_), None) => {}
            }
        }
    }
    Ok(position)
}

fn run(log: &Log, h: &ViewHandle) {
    let mut input = h.input.clone();
    if let Err(e) = input.restore_table(log, h.position()) {
        fail(h, format!("rebuilding its join's table failed: {e}"));
        return;
    }
    let topics = input.topics();
    let topics: Vec<&str> = topics.iter().map(String::as_str).collect();
    let with_versions = input.needs_versions();
    let windowed = h.plan.grouping.as_ref().is_some_and(|g| g.window.is_some());
    let mut next = h.position().map_or(0, |p| p + 1);
    let mut row = vec![Value::Null; input.width()];
    let mut rows_out = Vec::new();
    while !h.stop.load(Ordering::SeqCst) {
        let read = log.read_topics_events(&topics, next, ROUND_EVENTS, with_versions);
        let (events, after) = match read {
            Ok(r) => r,
            Err(evident_log::Error::UnknownTopic(t)) => {
                fail(h, format!("its source topic {t:?} was deleted"));
                return;
            }
            Err(e) => {
                // A damaged or unreadable source stops the view rather than skip events.
                fail(h, format!("reading {:?} failed: {e}", h.source));
                return;
            }
        };
        if events.is_empty() {
            next = next.max(after);
            let _ = log.wait_for_sequence(next, Duration::from_millis(200));
            continue;
        }
        let mut applied_to = None;
        let mut parked = Vec::new();
        let changes: Vec<Change>;
        let stream_time: Option<i64>;
        let mut stream_rows: Vec<(Option<Vec<u8>>, String)> = Vec::new();
        {
            let mut data = h.data.write().unwrap_or_else(|e| e.into_inner());
            let ViewData { agg, .. } = &mut *data;
            for e in &events {
                let outcome = input.read(&h.plan, e, &mut row).and_then(|hit| match agg.as_mut() {
                    _ if !hit => Ok(()),
                    Some(agg) => match &h.plan.filter {
                        Some(f) if !f.eval(&row)?.is_true() => Ok(()),
                        _ => agg.add(&row, if windowed { crate::source::event_time(e) } else { e.timestamp_ms }),
                    },
                    None => {
                        rows_out.clear();
                        project(&h.plan, &row, &mut rows_out)?;
                        for r in rows_out.drain(..) {
                            stream_rows.push((
                                e.key.as_ref().map(|k| k.to_vec()),
                                row_json(&h.plan.columns, &r[..h.plan.columns.len()]),
                            ));
                        }
                        Ok(())
                    }
                });
                if let Err(why) = outcome {
                    parked.push((e.clone(), why));
                }
                applied_to = Some(e.sequence);
                let dirty = agg.as_ref().map_or(stream_rows.len(), Aggregator::dirty_len);
                if dirty >= ROUND_CHANGES {
                    break;
                }
            }
            changes = agg.as_mut().map(|a| a.changes(true)).unwrap_or_default();
            stream_time = agg.as_ref().filter(|_| windowed).map(|a| a.stream_time);
            data.applied += events.len() as u64;
        }
        let Some(position) = applied_to else { continue };
        if !parked.is_empty() {
            if let Err(e) = park(log, &h.def.name, &parked) {
                fail(h, format!("cannot park {} event(s): {e}", parked.len()));
                return;
            }
        }
        let write = if h.def.kind == ViewKind::Table {
            commit_table(log, &h.def.name, &h.plan.columns, &changes, position, stream_time)
        } else {
            commit_stream(log, &h.def.name, &stream_rows, position)
        };
        if let Err(e) = write {
            fail(h, format!("writing its topic failed: {e}"));
            return;
        }
        {
            let mut data = h.data.write().unwrap_or_else(|e| e.into_inner());
            data.position = Some(position);
            data.parked += parked.len() as u64;
        }
        // Push queries follow tables' changes; a stream's rows are read from its topic.
        h.publish(&changes);
        let _guard = h.moved_lock.lock().unwrap_or_else(|e| e.into_inner());
        h.moved.notify_all();
        next = position + 1;
    }
}

fn fail(h: &ViewHandle, why: String) {
    tracing::error!(view = %h.def.name, "view stopped: {why}");
    h.data.write().unwrap_or_else(|e| e.into_inner()).failed = Some(why);
    h.moved.notify_all();
}

fn now_ms() -> i64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64)
}

fn commit_table(
    log: &Log,
    topic: &str,
    columns: &[Column],
    changes: &[Change],
    position: u64,
    stream_time: Option<i64>,
) -> Result<()> {
    let mut b = BatchBuilder::new();
    let now = now_ms();
    let pos = position.to_string();
    let time = stream_time.map(|t| t.to_string());
    if changes.is_empty() {
        // Nothing changed (all filtered or parked): the position still moves, on a record
        // keyed by the view's own reserved key, so a restart need not re-read those events.
        let mut headers = vec![(POSITION_HEADER, Some(pos.as_bytes()))];
        if let Some(t) = &time {
            headers.push((STREAM_TIME_HEADER, Some(t.as_bytes())));
        }
        b.push_parts(Some(b"__evident_position"), None, &headers, now);
    }
    for (i, c) in changes.iter().enumerate() {
        let value = c.row.as_ref().map(|r| row_json(columns, r));
        let last = i + 1 == changes.len();
        let mut headers: Vec<(&str, Option<&[u8]>)> = Vec::with_capacity(2);
        if let Some(s) = &c.state {
            headers.push((STATE_HEADER, Some(s.as_bytes())));
        }
        if last {
            headers.push((POSITION_HEADER, Some(pos.as_bytes())));
            if let Some(t) = &time {
                headers.push((STREAM_TIME_HEADER, Some(t.as_bytes())));
            }
        }
        b.push_parts(Some(&c.key), value.as_deref().map(str::as_bytes), &headers, now);
    }
    log.append_batch(topic, 0, &b.build(), None)?;
    Ok(())
}

fn commit_stream(log: &Log, topic: &str, rows: &[(Option<Vec<u8>>, String)], position: u64) -> Result<()> {
    let mut b = BatchBuilder::new();
    let now = now_ms();
    let pos = position.to_string();
    if rows.is_empty() {
        return Ok(());
    }
    for (i, (key, value)) in rows.iter().enumerate() {
        let headers: Vec<(&str, Option<&[u8]>)> =
            if i + 1 == rows.len() { vec![(POSITION_HEADER, Some(pos.as_bytes()))] } else { Vec::new() };
        b.push_parts(key.as_deref(), Some(value.as_bytes()), &headers, now);
    }
    log.append_batch(topic, 0, &b.build(), None)?;
    Ok(())
}

/// Parks events in `<view>.dlq`, once each (the id derives from the event's sequence).
fn park(log: &Log, view: &str, parked: &[(Event, String)]) -> Result<()> {
    let topic = dead_letter::topic_for(view);
    match log.create_topic(&topic, TopicConfig::default()) {
        Ok(_) | Err(evident_log::Error::TopicExists(_)) => {}
        Err(e) => return Err(e.into()),
    }
    for (e, why) in parked {
        tracing::warn!(view, sequence = e.sequence, "event parked: {why}");
        let stream = format!(
            "{}/{}",
            e.topic,
            e.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default()
        );
        let mut data = EventData::json(
            format!("parked-{}", e.sequence),
            e.event_type().unwrap_or("unknown"),
            e.value.as_ref().map(|v| v.to_vec()).unwrap_or_default(),
        );
        data.source = Some(format!("/evident/sql/{view}"));
        let n = |v: u64| Some(v.to_string().into_bytes());
        data.extra_headers = vec![
            (dead_letter::KIND.into(), Some(b"parked".to_vec())),
            (dead_letter::PROJECTION.into(), Some(view.as_bytes().to_vec())),
            (dead_letter::TOPIC.into(), Some(e.topic.as_str().as_bytes().to_vec())),
            (dead_letter::PARTITION.into(), n(u64::from(e.partition))),
            (dead_letter::OFFSET.into(), n(e.offset)),
            (dead_letter::SEQUENCE.into(), n(e.sequence)),
            (dead_letter::ERROR.into(), Some(why.as_bytes().to_vec())),
            (dead_letter::ATTEMPTS.into(), Some(b"1".to_vec())),
        ];
        if let Some(id) = e.id() {
            data.extra_headers.push((dead_letter::EVENT_ID.into(), Some(id.as_bytes().to_vec())));
        }
        match log.append_events(&topic, stream.as_bytes(), ExpectedVersion::Any, &[data]) {
            Ok(_) => {}
            Err(e) => return Err(e.into()),
        }
    }
    Ok(())
}
