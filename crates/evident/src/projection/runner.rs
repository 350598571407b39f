//! The projection runner: reads the commit-ordered feed from the projection's checkpoint,
//! applies events in transactions that also move the checkpoint, retries and parks failing
//! events, acts on dead-letter requests, and rebuilds a projection into fresh tables.
//!
//! **Async.** [`ProjectionRunner`] is async (`async_api.rs`); its work runs on tokio's
//! blocking pool, a page at a time, in the synchronous core below: handlers are plain functions
//! over a synchronous [`Tx`] (SQLite blocks on its file; PostgreSQL statements are pipelined
//! and waited for on the runtime), and the executor's threads never wait on a database.
//!
//! **Batching.** Events are applied a page at a time (`batch_size`, default 1,000) in one
//! transaction, so the database's commit cost (an fsync) is paid once per page, not per event.
//! The page's events that the projection receives (less those held behind a parked event) go to
//! one [`Projection::handle_batch`] call, which a projection may answer with a few set-based
//! statements instead of one per event. If the batch fails, the transaction is rolled back;
//! unless the error names the event at fault ([`EventFailed`], which the default
//! `handle_batch` returns), the page is applied again event by event to find it. Then the
//! events before the failure are applied again in their own transaction (handlers must be
//! deterministic in their database effects), and the failing event is retried alone, each
//! attempt its own transaction: the batch that failed counts as none of its attempts.
//!
//! **Failures.** After `retry.max_attempts` the event is parked: a `parked` record goes to the
//! dead-letter topic (before the commit, under an id derived from the event's sequence, so a
//! crash between the two only rewrites the same record), and a row in `evident_parked` commits
//! with the checkpoint. Later events of the same stream are held the same way (a sequenced
//! dead-letter queue) while other streams proceed.
//!
//! **Requests.** `retry`/`skip` records in the projection's dead-letter topic are acted on when
//! the feed reaches them: entries are applied (or skipped) in stream order, each with its
//! `evident_parked` row deleted in the same transaction; the request's own position is
//! checkpointed last, so a crash mid-way resumes the request where it stopped.
//!
//! **Journal.** `evident_parked` is the authority; the dead-letter topic is its journal, written
//! before the commit it describes. A record whose id an earlier one used (a rebuild parking
//! again what the live runner resolved) is written again under a fresh id, since the topic
//! deduplicates ids. When the runner opens, after a failed step and after a rebuild's swap, it
//! reconciles the journal with `evident_parked`: an entry listed but not held (its commit never
//! happened, or a rebuild applied it) gets a `resolved` record, one held but not listed gets a
//! new record.

use std::collections::{BTreeMap, HashSet};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evident_core::dead_letter::{self as fmt, Kind};
use evident_core::{EventData, ExpectedVersion, Sequence};

use super::dead_letter::{self, DeadLetters};
use super::sink::Sink;
use super::sql::{Row, SqlError, SqlValue, TableNames, ToParam, Tx};
use super::{EventFailed, HandlerError, Projection, Subscription};

mod async_api;
mod journal;
mod rebuild;
use crate::backend::{Backend, TopicSpec};
use crate::event::RecordedEvent;
use crate::{Error, Result, RetryPolicy};
pub use async_api::ProjectionRunner;

/// Suffix of the tables a rebuild fills before they are swapped in.
const REBUILD_SUFFIX: &str = "__rebuild";

/// How a runner works.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RunnerOptions {
    /// Events read and applied per transaction.
    pub batch_size: usize,
    /// Retries of a failing handler (default [`RetryPolicy::handler`]).
    pub retry: RetryPolicy,
    /// How long a live runner waits for new events before checking whether it should stop.
    pub idle_wait: Duration,
}

impl Default for RunnerOptions {
    fn default() -> Self {
        Self { batch_size: 1000, retry: RetryPolicy::handler(), idle_wait: Duration::from_millis(200) }
    }
}

/// Progress of a catch-up, reported after each page.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Progress {
    /// The next commit sequence to process.
    pub position: Sequence,
    /// Where the catch-up is going (the store's head when it started).
    pub target: Sequence,
    /// Events handled so far in this catch-up.
    pub applied: u64,
    /// Events per second so far (of the feed, whether subscribed or not).
    pub rate: f64,
}

/// The result of a catch-up.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CatchUp {
    /// Events of the feed read (whether subscribed or not).
    pub scanned: u64,
    /// Events handled.
    pub applied: u64,
    /// Events parked or held.
    pub parked: u64,
    /// How long it took.
    pub elapsed: Duration,
    /// The checkpoint reached.
    pub position: Sequence,
}

/// How [`Core::apply_run_once`] applies a run of events.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// One `handle_batch` call for the run, statements pipelined.
    Batch,
    /// `handle` per event, statements pipelined.
    PerEvent,
    /// `handle` per event, each statement waited for.
    Waited,
}

/// A failure whose event is not known.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unlocated {
    /// `handle_batch` failed without naming the event ([`EventFailed`]).
    Handler,
    /// A pipelined statement failed.
    Statement,
}

enum RunEnd {
    /// Every event was applied (or filtered, or held) and committed.
    Done,
    /// Stopped before a dead-letter request at this index; what precedes it is committed.
    Request(usize),
    /// The handler failed at this index; nothing was committed.
    Failed(usize, HandlerError),
}

/// The runner's synchronous core: it runs on a thread of tokio's blocking pool and waits on
/// the runtime (`rt`) for the backend.
pub(crate) struct Core<P: Projection> {
    rt: tokio::runtime::Handle,
    backend: Arc<dyn Backend>,
    sink: Sink,
    projection: P,
    options: RunnerOptions,
    name: String,
    /// Checkpoint and parked-row key: the name, or `<name>#rebuild` while rebuilding.
    key: String,
    subscription: Subscription,
    names: TableNames,
    position: u64,
    parked: HashSet<String>,
    dlq_topic: String,
    counters: CatchUp,
    /// The dead-letter journal may disagree with `evident_parked` (see the module doc).
    reconcile_pending: bool,
    /// Records this runner wrote to its dead-letter topic (they move the store's head).
    journal_writes: AtomicU64,
    /// The next page, being read while this one is applied: its first position and the read.
    ahead: Option<(u64, ReadAhead)>,
}

/// A page of the feed being read on the runtime.
type ReadAhead = tokio::task::JoinHandle<Result<Vec<RecordedEvent>>>;

impl<P: Projection> std::fmt::Debug for Core<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Core")
            .field("key", &self.key)
            .field("position", &self.position)
            .field("parked_streams", &self.parked.len())
            .finish_non_exhaustive()
    }
}

fn sql(e: SqlError) -> Error {
    Error::Sink(e.0)
}

/// Whether `e` (a record of the runner's dead-letter topic) is a retry or skip request.
fn is_request(e: &RecordedEvent) -> bool {
    matches!(e.header_str(fmt::KIND).and_then(Kind::parse), Some(Kind::Retry | Kind::Skip))
}

fn now_ms() -> i64 {
    jiff::Timestamp::now().as_millisecond()
}

fn int(row: &Row, i: usize) -> Result<i64> {
    row.get(i).and_then(SqlValue::as_i64).ok_or_else(|| Error::Sink(format!("column {i} is not an integer")))
}

fn seq_param(v: u64) -> Result<i64> {
    i64::try_from(v).map_err(|_| Error::Sink(format!("position {v} does not fit a BIGINT")))
}

/// Moves the checkpoint of `key` from `from` to `to`, fenced: if it is no longer at `from`,
/// another runner of the projection committed in between, and the transaction must not commit.
/// (On PostgreSQL the conditional UPDATE waits for the other transaction and re-checks the row;
/// on SQLite `BEGIN IMMEDIATE` serializes writers.)
fn write_checkpoint(tx: &mut Tx<'_>, key: &str, from: u64, to: u64) -> Result<()> {
    let n = tx
        .execute_count(
            "UPDATE evident_checkpoints SET position = $1, updated_ms = $2 WHERE projection = $3 AND position = $4",
            &[&seq_param(to)?, &now_ms(), &key, &seq_param(from)?],
        )
        .map_err(sql)?;
    if n != 1 {
        return Err(Error::Fenced(format!(
            "the checkpoint of {key} is no longer at {from}: another runner of this projection is running"
        )));
    }
    Ok(())
}

impl<P: Projection> Core<P> {
    /// Waits for `f` on the runtime (the core runs on a blocking-pool thread, where this is
    /// allowed).
    fn wait<F: std::future::Future>(&self, f: F) -> F::Output {
        self.rt.block_on(f)
    }

    pub(crate) fn open(
        rt: tokio::runtime::Handle,
        backend: Arc<dyn Backend>,
        sink: Sink,
        projection: P,
        options: RunnerOptions,
        rebuild: bool,
    ) -> Result<Self> {
        let name = projection.name().to_string();
        let dlq_topic = fmt::topic_for(&name);
        evident_core::TopicName::new(dlq_topic.as_str())
            .map_err(|e| Error::Rejected(format!("projection name {name:?} cannot name a dead-letter topic: {e}")))?;
        if options.batch_size == 0 {
            return Err(Error::Rejected("batch_size must be at least 1".into()));
        }
        rt.block_on(backend.ensure_topic(&dlq_topic, TopicSpec::default()))?;
        let tables = projection.tables();
        let key = if rebuild { format!("{name}#rebuild") } else { name.clone() };
        let names = TableNames::new(&tables, if rebuild { REBUILD_SUFFIX } else { "" });
        let subscription = projection.subscription();
        let mut runner = Self {
            rt,
            backend,
            sink,
            projection,
            options,
            name,
            key,
            subscription,
            names,
            position: 0,
            parked: HashSet::new(),
            dlq_topic,
            counters: CatchUp { scanned: 0, applied: 0, parked: 0, elapsed: Duration::ZERO, position: Sequence(0) },
            reconcile_pending: !rebuild,
            journal_writes: AtomicU64::new(0),
            ahead: None,
        };
        runner.transaction(|r| {
            let mut tx = r.sink.tx(&mut r.names);
            if rebuild {
                // A rebuild always starts over: drop what an interrupted one left.
                for t in &tables {
                    tx.batch(&format!("DROP TABLE IF EXISTS {t}{REBUILD_SUFFIX}")).map_err(sql)?;
                }
                tx.execute("DELETE FROM evident_checkpoints WHERE projection = $1", &[&r.key]).map_err(sql)?;
                tx.execute("DELETE FROM evident_parked WHERE projection = $1", &[&r.key]).map_err(sql)?;
            }
            r.projection.setup(&mut tx).map_err(|e| Error::Sink(format!("setup of {}: {e}", r.name)))?;
            let row = tx
                .query_opt("SELECT position FROM evident_checkpoints WHERE projection = $1", &[&r.key])
                .map_err(sql)?;
            r.position = match row {
                Some(row) => u64::try_from(int(&row, 0)?).map_err(|_| Error::Sink("negative checkpoint".into()))?,
                None => {
                    tx.execute(
                        "INSERT INTO evident_checkpoints (projection, position, updated_ms) VALUES ($1, 0, $2)",
                        &[&r.key, &now_ms()],
                    )
                    .map_err(sql)?;
                    0
                }
            };
            let rows =
                tx.query("SELECT DISTINCT stream FROM evident_parked WHERE projection = $1", &[&r.key]).map_err(sql)?;
            r.parked =
                rows.iter().filter_map(|row| row.first().and_then(SqlValue::as_str).map(str::to_string)).collect();
            Ok(())
        })?;
        runner.counters.position = Sequence(runner.position);
        runner.reconcile()?;
        Ok(runner)
    }

    /// Runs `f` in a transaction: commit on Ok, rollback on Err.
    fn transaction<T>(&mut self, f: impl FnOnce(&mut Self) -> Result<T>) -> Result<T> {
        self.sink.begin()?;
        match f(self) {
            Ok(v) => {
                self.sink.commit()?;
                Ok(v)
            }
            Err(e) => {
                if let Err(rb) = self.sink.rollback() {
                    tracing::warn!(error = %rb, "rollback failed");
                }
                Err(e)
            }
        }
    }

    /// The projection's dead-letter queue.
    pub(crate) fn dead_letters(&self) -> DeadLetters {
        DeadLetters::new(self.backend.clone(), &self.name)
    }

    /// Runs a query on the read model; `{table}` names resolve to the tables this runner
    /// fills.
    pub(crate) fn query(&mut self, sql_text: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>> {
        self.sink.tx(&mut self.names).query(sql_text, params).map_err(sql)
    }

    /// Reads one page of the feed from the checkpoint and processes it. Returns the number of
    /// events read (0: nothing new).
    ///
    /// After a full page (more are likely waiting) the next page is read on the runtime while
    /// this one is applied, so the feed's read (a few microseconds per event) overlaps the
    /// database's work instead of adding to it. The page read ahead is used only if it starts
    /// where this one left the checkpoint (always, unless this one failed) and is not empty
    /// (it may be stale: a catch-up must not take it for the end of the feed); it is a prefix
    /// of the feed from there like any read, and whatever was appended after it is read next.
    pub(crate) fn step(&mut self) -> Result<usize> {
        self.reconcile()?;
        let ahead = match self.ahead.take() {
            Some((from, read)) if from == self.position => match self.wait(read) {
                Ok(page) => Some(page?),
                Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
                Err(e) => return Err(Error::Unavailable(format!("the read of the next page of the feed: {e}"))),
            },
            Some((_, read)) => {
                read.abort();
                None
            }
            None => None,
        };
        let events = match ahead {
            Some(page) if !page.is_empty() => page,
            // Nothing was there when it was read ahead; there may be now.
            _ => self.wait(self.backend.read_all(Sequence(self.position), self.options.batch_size))?,
        };
        let Some(last) = events.last() else {
            return Ok(0);
        };
        if events.len() == self.options.batch_size {
            let (backend, from, limit) = (self.backend.clone(), last.sequence.0 + 1, self.options.batch_size);
            let read = self.rt.spawn(async move { backend.read_all(Sequence(from), limit).await });
            self.ahead = Some((from, read));
        }
        if let Err(e) = self.process(&events) {
            // A journal record may have been written for a commit that did not happen.
            self.reconcile_pending = true;
            return Err(e);
        }
        self.counters.scanned += events.len() as u64;
        self.counters.position = Sequence(self.position);
        Ok(events.len())
    }

    /// Processes everything up to the store's head as of now, reporting progress after each
    /// page, then returns.
    pub(crate) fn catch_up_with(&mut self, mut progress: impl FnMut(&Progress)) -> Result<CatchUp> {
        let start = Instant::now();
        let before = self.counters;
        // The runner's own dead-letter records move the head while it catches up; one more
        // pass reads past them (and whatever else arrived meanwhile), so a catch-up that parked
        // something still ends at the head. A few passes at most: a live stream never ends.
        for _pass in 0..4 {
            let writes = self.journal_writes.load(Ordering::Relaxed);
            let target = self.wait(self.backend.head_sequence())?;
            while self.position < target.0 {
                if self.step()? == 0 {
                    // Everything left before the head belonged to deleted topics.
                    break;
                }
                let elapsed = start.elapsed().as_secs_f64().max(1e-9);
                progress(&Progress {
                    position: Sequence(self.position),
                    target,
                    applied: self.counters.applied - before.applied,
                    rate: (self.counters.scanned - before.scanned) as f64 / elapsed,
                });
            }
            if self.journal_writes.load(Ordering::Relaxed) == writes {
                break;
            }
        }
        Ok(CatchUp {
            scanned: self.counters.scanned - before.scanned,
            applied: self.counters.applied - before.applied,
            parked: self.counters.parked - before.parked,
            elapsed: start.elapsed(),
            position: Sequence(self.position),
        })
    }

    fn process(&mut self, events: &[RecordedEvent]) -> Result<()> {
        let mut i = 0;
        while i < events.len() {
            match self.apply_run(&events[i..])? {
                RunEnd::Done => return Ok(()),
                RunEnd::Request(j) => {
                    self.request(&events[i + j])?;
                    i += j + 1;
                }
                RunEnd::Failed(j, err) => {
                    if j > 0 {
                        self.process(&events[i..i + j])?;
                    }
                    self.retry_or_park(&events[i + j], err)?;
                    i += j + 1;
                }
            }
        }
        Ok(())
    }

    /// Applies a run of events in one transaction, up to the first request or failure: first
    /// as one batch ([`Projection::handle_batch`], PostgreSQL statements pipelined). If the
    /// batch fails without naming the event at fault, nothing was committed and the run is
    /// applied again event by event to find it: pipelined when the handler failed (its error
    /// comes back from the event that caused it), each statement waited for when a pipelined
    /// statement failed (its answer arrives after later events' statements were sent).
    fn apply_run(&mut self, events: &[RecordedEvent]) -> Result<RunEnd> {
        let mut mode = Mode::Batch;
        loop {
            if mode == Mode::Waited {
                self.sink.set_pipelined(false);
            }
            let attempt = self.apply_run_once(events, mode);
            if mode == Mode::Waited {
                self.sink.set_pipelined(true);
            }
            mode = match (attempt?, mode) {
                (Ok(end), _) => return Ok(end),
                (Err(Unlocated::Handler), Mode::Batch) => Mode::PerEvent,
                (Err(Unlocated::Statement), Mode::Batch | Mode::PerEvent) => Mode::Waited,
                (Err(_), _) => {
                    return Err(Error::Sink("a statement failed in a page applied statement by statement".into()))
                }
            };
        }
    }

    /// One attempt of [`Self::apply_run`]; `Err(Unlocated)` when something failed but not at
    /// a known event (nothing was committed).
    fn apply_run_once(&mut self, events: &[RecordedEvent], mode: Mode) -> Result<Result<RunEnd, Unlocated>> {
        self.sink.begin()?;
        let mut unlocated = None;
        let mut end = events.len();
        let mut outcome = RunEnd::Done;
        let mut held: Vec<&RecordedEvent> = Vec::new();
        let mut held_streams: HashSet<String> = HashSet::new();
        // In batch mode: the events handed to `handle_batch`, and their indexes in `events`.
        let capacity = if mode == Mode::Batch { events.len() } else { 0 };
        let mut batch: Vec<&RecordedEvent> = Vec::with_capacity(capacity);
        let mut batch_at: Vec<usize> = Vec::with_capacity(capacity);
        let mut applied = 0u64;
        let result = (|| -> Result<()> {
            let mut tx = self.sink.tx(&mut self.names);
            for (j, e) in events.iter().enumerate() {
                if e.topic == self.dlq_topic {
                    if is_request(e) {
                        end = j;
                        outcome = RunEnd::Request(j);
                        break;
                    }
                    continue;
                }
                if !self.subscription.wants(&e.topic) {
                    continue;
                }
                // Only when some stream is parked does an event's stream name need building.
                let held_stream = if self.parked.is_empty() && held_streams.is_empty() {
                    None
                } else {
                    Some(e.stream()).filter(|s| self.parked.contains(s) || held_streams.contains(s))
                };
                if let Some(stream) = held_stream {
                    tx.execute(
                        "INSERT INTO evident_parked (projection, sequence, stream, kind) VALUES ($1, $2, $3, 'held')",
                        &[&self.key, &seq_param(e.sequence.0)?, &stream],
                    )
                    .map_err(sql)?;
                    held.push(e);
                    held_streams.insert(stream);
                    continue;
                }
                if mode == Mode::Batch {
                    batch.push(e);
                    batch_at.push(j);
                    continue;
                }
                if let Err(err) = self.projection.handle(e, &mut tx) {
                    end = j;
                    outcome = RunEnd::Failed(j, err);
                    break;
                }
                applied += 1;
            }
            if !batch.is_empty() {
                match self.projection.handle_batch(&batch, &mut tx) {
                    Ok(()) => applied = batch.len() as u64,
                    Err(err) => match err.downcast::<EventFailed>() {
                        Ok(failed) if failed.index < batch_at.len() => {
                            end = batch_at[failed.index];
                            outcome = RunEnd::Failed(end, failed.error);
                        }
                        _ => {
                            unlocated = Some(Unlocated::Handler);
                            return Ok(());
                        }
                    },
                }
            }
            if matches!(outcome, RunEnd::Failed(..)) {
                return Ok(());
            }
            if tx.flush().is_err() {
                unlocated = Some(Unlocated::Statement);
                return Ok(());
            }
            if end > 0 {
                write_checkpoint(&mut tx, &self.key, self.position, events[end - 1].sequence.0 + 1)?;
            }
            Ok(())
        })();
        if let Err(e) = result {
            let _ = self.sink.rollback();
            return Err(e);
        }
        if let Some(u) = unlocated {
            self.sink.rollback()?;
            return Ok(Err(u));
        }
        if matches!(outcome, RunEnd::Failed(..)) {
            self.sink.rollback()?;
            return Ok(Ok(outcome));
        }
        // Journal the held events before the commit that records them (see the module doc).
        for e in &held {
            let record = dead_letter::parked(&self.name, e, Kind::Held, "held behind an earlier parked event", 0);
            if let Err(err) = self.journal(&e.stream(), record) {
                let _ = self.sink.rollback();
                return Err(err);
            }
        }
        self.sink.commit()?;
        if end > 0 {
            self.position = events[end - 1].sequence.0 + 1;
        }
        self.counters.applied += applied;
        self.counters.parked += held.len() as u64;
        self.parked.extend(held_streams);
        Ok(Ok(outcome))
    }

    /// Handles `e` once in its own transaction, deleting `delete_parked`'s row with it.
    fn apply_one(
        &mut self,
        e: &RecordedEvent,
        checkpoint: Option<u64>,
        resolve: Option<u64>,
    ) -> Result<Result<(), String>> {
        self.sink.begin()?;
        let key = self.key.clone();
        let from = self.position;
        let r = (|| -> Result<Result<(), String>> {
            let mut tx = self.sink.tx(&mut self.names);
            if let Err(err) = self.projection.handle(e, &mut tx) {
                return Ok(Err(err.to_string()));
            }
            // A pipelined statement of the handler that failed (a constraint the event breaks)
            // is the handler's failure, retried and parked like one, not the runner's.
            if let Err(err) = tx.flush() {
                return Ok(Err(err.to_string()));
            }
            if let Some(seq) = resolve {
                let n = tx
                    .execute_count(
                        "DELETE FROM evident_parked WHERE projection = $1 AND sequence = $2",
                        &[&key, &seq_param(seq)?],
                    )
                    .map_err(sql)?;
                if n != 1 {
                    return Err(Error::Fenced(format!(
                        "parked event {seq} of {key} was resolved by another runner of this projection"
                    )));
                }
            }
            if let Some(pos) = checkpoint {
                write_checkpoint(&mut tx, &key, from, pos)?;
            }
            Ok(Ok(()))
        })();
        match r {
            Ok(Ok(())) => {
                if let Some(seq) = resolve {
                    let record = dead_letter::resolved(&self.name, seq, "applied");
                    if let Err(err) = self.journal(&e.stream(), record) {
                        let _ = self.sink.rollback();
                        return Err(err);
                    }
                }
                self.sink.commit()?;
                self.counters.applied += 1;
                Ok(Ok(()))
            }
            Ok(Err(msg)) => {
                self.sink.rollback()?;
                Ok(Err(msg))
            }
            Err(err) => {
                let _ = self.sink.rollback();
                Err(err)
            }
        }
    }

    /// Retries `e` alone; parks it when the attempts run out.
    fn retry_or_park(&mut self, e: &RecordedEvent, first: HandlerError) -> Result<()> {
        let retry = self.options.retry;
        let mut attempts = 1;
        let mut last = first.to_string();
        while attempts < retry.max_attempts.max(1) {
            std::thread::sleep(retry.backoff(attempts));
            attempts += 1;
            match self.apply_one(e, Some(e.sequence.0 + 1), None)? {
                Ok(()) => {
                    self.position = e.sequence.0 + 1;
                    return Ok(());
                }
                Err(msg) => last = msg,
            }
        }
        let stream = e.stream();
        tracing::warn!(projection = %self.name, %stream, sequence = e.sequence.0, attempts, error = %last, "event parked in the dead-letter topic");
        let record = dead_letter::parked(&self.name, e, Kind::Parked, &last, attempts);
        self.journal(&stream, record)?;
        let key = self.key.clone();
        self.transaction(|r| {
            let mut tx = r.sink.tx(&mut r.names);
            tx.execute(
                "INSERT INTO evident_parked (projection, sequence, stream, kind) VALUES ($1, $2, $3, 'parked')",
                &[&key, &seq_param(e.sequence.0)?, &stream],
            )
            .map_err(sql)?;
            write_checkpoint(&mut tx, &key, r.position, e.sequence.0 + 1)
        })?;
        self.parked.insert(stream);
        self.position = e.sequence.0 + 1;
        self.counters.parked += 1;
        Ok(())
    }

    /// Acts on a retry or skip request.
    fn request(&mut self, req: &RecordedEvent) -> Result<()> {
        let stream = req.key.clone().unwrap_or_default();
        let kind = req.header_str(fmt::KIND).and_then(Kind::parse);
        let key = self.key.clone();
        let rows = self
            .query_bookkeeping(
                "SELECT sequence FROM evident_parked WHERE projection = $1 AND stream = $2 ORDER BY sequence",
                &[&key, &stream],
            )?
            .iter()
            .map(|row| int(row, 0).map(|v| v as u64))
            .collect::<Result<Vec<u64>>>()?;
        let mut entries = rows.as_slice();
        if kind == Some(Kind::Skip) {
            let target = req.header_str(fmt::SEQUENCE).and_then(|v| v.parse::<u64>().ok());
            if let Some(seq) = target.filter(|s| entries.first() == Some(s)) {
                self.resolve_without_applying(&stream, seq, "skipped")?;
                entries = &entries[1..];
            }
        }
        let retry = self.options.retry;
        for &seq in entries {
            let original = self.event_at(seq)?;
            let Some(original) = original else {
                // The event's topic was deleted: nothing left to apply.
                self.resolve_without_applying(&stream, seq, "skipped")?;
                continue;
            };
            let mut attempts = 0;
            let outcome = loop {
                attempts += 1;
                match self.apply_one(&original, None, Some(seq))? {
                    Ok(()) => break Ok(()),
                    Err(msg) if attempts >= retry.max_attempts.max(1) => break Err(msg),
                    Err(_) => std::thread::sleep(retry.backoff(attempts)),
                }
            };
            if let Err(msg) = outcome {
                tracing::warn!(projection = %self.name, %stream, sequence = seq, error = %msg, "retry of a parked event failed again");
                let record = dead_letter::failed(&self.name, seq, &msg, attempts);
                self.wait(self.backend.append(&self.dlq_topic, &stream, ExpectedVersion::Any, &[record]))?;
                break;
            }
        }
        let left = self.query_bookkeeping(
            "SELECT COUNT(*) FROM evident_parked WHERE projection = $1 AND stream = $2",
            &[&key, &stream],
        )?;
        if left.first().map(|r| int(r, 0)).transpose()?.unwrap_or(0) == 0 {
            self.parked.remove(&stream);
        }
        let pos = req.sequence.0 + 1;
        self.transaction(|r| {
            let mut tx = r.sink.tx(&mut r.names);
            write_checkpoint(&mut tx, &key, r.position, pos)
        })?;
        self.position = pos;
        Ok(())
    }

    /// The event at commit sequence `seq` (None once its topic is deleted).
    pub(super) fn event_at(&self, seq: u64) -> Result<Option<RecordedEvent>> {
        Ok(self.wait(self.backend.read_all(Sequence(seq), 1))?.into_iter().next().filter(|e| e.sequence.0 == seq))
    }

    fn resolve_without_applying(&mut self, stream: &str, seq: u64, outcome: &str) -> Result<()> {
        let key = self.key.clone();
        let record = dead_letter::resolved(&self.name, seq, outcome);
        self.transaction(|r| {
            let mut tx = r.sink.tx(&mut r.names);
            tx.execute("DELETE FROM evident_parked WHERE projection = $1 AND sequence = $2", &[&key, &seq_param(seq)?])
                .map_err(sql)?;
            r.journal(stream, record)
        })
    }

    fn query_bookkeeping(&mut self, text: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>> {
        let mut names = TableNames::default();
        self.sink.tx(&mut names).query(text, params).map_err(sql)
    }
}
