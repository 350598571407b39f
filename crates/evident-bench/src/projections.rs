//! Projection catch-up through the library (`evident::projection`): a balances read model built
//! from a pre-populated embedded log of bank-account events (200,000 events over 10,000
//! account streams by default, interleaved in commit order, written before the clock starts),
//! into SQLite (a file in the run's data directory: WAL, `synchronous = FULL`) and into
//! PostgreSQL (the bench cluster). The projection decodes each event's JSON into the account
//! event enum (`evident::event::decode`, as a real projection does). It is measured two ways,
//! side by side: as docs/library.md recommends, `handle_batch` folding each page per account
//! and writing it with one multi-row upsert (`Tx::execute_values`); and per event, the same
//! projection without its `handle_batch` (one upsert per event, the trait's default). Either
//! way the runner commits each page together with the checkpoint. Timed:
//! `ProjectionRunner::catch_up()`, from a fresh read model to the head of the log.
//!
//! Every catch-up is checked afterwards: every event applied, nothing parked, and the read
//! model's sum of balances, sum of event counts and row count equal to what the loader wrote.
//!
//! To show where the time goes, the same feed is also read without a sink (`read_all` pages
//! converted to `RecordedEvent`s, then also decoded), and the same upserts are run on SQLite
//! directly through rusqlite and the postgres crate (pre-decoded values, one statement per
//! event, transactions of the same size). SQLite configurations run 3 times (once with
//! `--quick`) and report the median; PostgreSQL ones run once.

use std::collections::BTreeMap;
use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::evident::event::decode;
use ::evident::projection::{
    EventFailed, HandlerError, Projection, RunnerOptions, Sink, SqlValue, Subscription, ToParam, Tx,
};
use ::evident::{Aggregate, Backend, EmbeddedBackend, RecordedEvent, TopicSpec, Upcasters};
use anyhow::{bail, ensure, Context, Result};
use evident_core::batch::BatchBuilder;

use crate::aggregates::{delta, event_data, nth_event, Account, AccountEvent};
use crate::payload;
use crate::report::{num, Key, Measurement, ProjectionPart, ProjectionSink, System};
use crate::stats::{median, Latencies};

/// The read model's table.
const TABLE: &str = "bench_balances";
/// The projection's name (its checkpoint key and dead-letter topic).
const NAME: &str = "bench-balances";
/// Events per account stream.
const EVENTS_PER_STREAM: u64 = 20;
/// Runs of each PostgreSQL configuration: the per-event form takes several seconds a run, and
/// the spread is small next to the gaps being shown.
const PG_RUNS: usize = 1;
/// Records per batch while loading the log.
const LOAD_BATCH: u64 = 1000;

const CREATE: &str = "CREATE TABLE IF NOT EXISTS {bench_balances} (
    account TEXT PRIMARY KEY, balance BIGINT NOT NULL, n BIGINT NOT NULL)";
const UPSERT: &str = "INSERT INTO {bench_balances} (account, balance, n) VALUES ($1, $2, 1)
    ON CONFLICT (account) DO UPDATE SET
        balance = {bench_balances}.balance + excluded.balance, n = {bench_balances}.n + 1";
/// The batch form's upsert, in two parts around its `VALUES` rows (`Tx::execute_values`).
const UPSERT_ROWS: &str = "INSERT INTO {bench_balances} (account, balance, n) VALUES";
const UPSERT_ROWS_CONFLICT: &str = "ON CONFLICT (account) DO UPDATE SET
    balance = {bench_balances}.balance + excluded.balance, n = {bench_balances}.n + excluded.n";
const CHECK: &str = "SELECT CAST(sum(balance) AS BIGINT), CAST(sum(n) AS BIGINT), count(*) FROM {bench_balances}";

/// The balances read model: one row per account, its balance and its number of events. Its
/// `handle_batch` is the form docs/library.md recommends: fold the page per account in memory,
/// then one multi-row upsert (`Tx::execute_values`) for the page.
struct Balances {
    upcasters: Upcasters,
}

impl Projection for Balances {
    fn name(&self) -> &str {
        NAME
    }

    fn subscription(&self) -> Subscription {
        Subscription::topic(Account::TOPIC)
    }

    fn tables(&self) -> Vec<String> {
        vec![TABLE.into()]
    }

    fn setup(&mut self, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        tx.batch(CREATE)?;
        Ok(())
    }

    fn handle(&mut self, event: &RecordedEvent, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        let account = event.key.as_deref().ok_or("an account event without a key")?;
        let e: AccountEvent = decode(event, &self.upcasters)?;
        tx.execute(UPSERT, &[&account, &delta(&e)])?;
        Ok(())
    }

    fn handle_batch(&mut self, events: &[&RecordedEvent], tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        // account -> (sum of deltas, events); sorted, so concurrent writers lock rows in one order.
        let mut page: BTreeMap<&str, (i64, i64)> = BTreeMap::new();
        for (index, event) in events.iter().enumerate() {
            let fail = |error: HandlerError| EventFailed { index, error };
            let account = event.key.as_deref().ok_or_else(|| fail("an account event without a key".into()))?;
            let e: AccountEvent = decode(event, &self.upcasters).map_err(|e| fail(e.into()))?;
            let row = page.entry(account).or_default();
            row.0 += delta(&e);
            row.1 += 1;
        }
        let mut params: Vec<&dyn ToParam> = Vec::with_capacity(page.len() * 3);
        for (account, (balance, n)) in &page {
            params.extend([account as &dyn ToParam, balance, n]);
        }
        tx.execute_values(UPSERT_ROWS, 3, &params, UPSERT_ROWS_CONFLICT)?;
        Ok(())
    }
}

/// The same read model written one upsert per event: `Balances` without its `handle_batch`
/// (the trait's default calls `handle` for each event), measured beside it.
struct PerEvent(Balances);

impl Projection for PerEvent {
    fn name(&self) -> &str {
        self.0.name()
    }

    fn subscription(&self) -> Subscription {
        self.0.subscription()
    }

    fn tables(&self) -> Vec<String> {
        self.0.tables()
    }

    fn setup(&mut self, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        self.0.setup(tx)
    }

    fn handle(&mut self, event: &RecordedEvent, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        self.0.handle(event, tx)
    }
}

/// How the projection writes a page.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Api {
    /// `handle_batch`: one multi-row upsert per page.
    Batch,
    /// `handle` per event: one upsert per event.
    PerEvent,
}

/// What the read model must hold after a full catch-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Expected {
    balance: i64,
    events: i64,
    accounts: i64,
}

/// The loaded log and what a catch-up of it must produce.
pub struct Projections {
    backend: Arc<dyn Backend>,
    dir: PathBuf,
    events: u64,
    accounts: u64,
    expected: Expected,
    /// `(account, delta)` of every event in commit order, for the raw SQLite floor.
    upserts: Vec<(String, i64)>,
    runs: usize,
}

fn key(account: u64) -> String {
    format!("acct-{account:06}")
}

impl Projections {
    /// Opens an embedded log in `dir`/log and loads `events` account events (20 per account,
    /// the accounts interleaved) in batches of 1,000; returns it with the load's measurement.
    /// Each catch-up configuration later runs `runs` times (the median is reported).
    pub fn load(dir: &Path, events: u64, runs: usize) -> Result<(Self, Measurement)> {
        let log_dir = dir.join("log");
        let backend = EmbeddedBackend::open(&log_dir)
            .with_context(|| format!("opening the embedded log in {}", log_dir.display()))?;
        evident::blocking::wait(backend.ensure_topic(Account::TOPIC, TopicSpec::default()))?;
        let accounts = (events / EVENTS_PER_STREAM).max(1);
        let mut expected = Expected { balance: 0, events: events as i64, accounts: accounts.min(events) as i64 };
        let mut upserts = Vec::with_capacity(events as usize);
        let start = Instant::now();
        let now = payload::now_ms();
        let mut g = 0;
        while g < events {
            let mut b = BatchBuilder::new();
            for g in g..(g + LOAD_BATCH).min(events) {
                let (account, n) = (g % accounts, g / accounts);
                let e = nth_event(account, n);
                expected.balance += delta(&e);
                upserts.push((key(account), delta(&e)));
                event_data(&e, 2, g)?.push_to(&mut b, key(account).as_bytes(), now);
            }
            backend.log().append_batch(Account::TOPIC, 0, &b.build(), None)?;
            g = (g + LOAD_BATCH).min(events);
        }
        let secs = start.elapsed().as_secs_f64();
        let head = evident::blocking::wait(backend.head_sequence())?.0;
        ensure!(head == events, "the log's head is {head} after loading {events} events into a fresh log");
        let m = Measurement::new(
            System::Evident,
            Key::ProjectionLoad,
            format!(
                "load {} account events ({} streams of {EVENTS_PER_STREAM}, interleaved; batches of 1,000; not part of any figure)",
                num(events as f64),
                num(accounts as f64)
            ),
            events as f64 / secs,
            "events/s",
        );
        let backend: Arc<dyn Backend> = Arc::new(backend);
        Ok((Self { backend, dir: dir.to_path_buf(), events, accounts, expected, upserts, runs: runs.max(1) }, m))
    }

    /// Reads the whole feed in pages of `batch` as the runner does (`Backend::read_all`, each
    /// event converted to a `RecordedEvent`); with `decode`, also builds the stream name and
    /// decodes each event as the projection does. No sink.
    pub fn feed(&self, batch: usize, decode_events: bool) -> Result<Measurement> {
        let upcasters = Upcasters::default();
        let mut secs = Vec::with_capacity(self.runs);
        for _ in 0..self.runs {
            let start = Instant::now();
            let mut position = 0;
            let mut seen = 0u64;
            let mut sum = 0i64;
            loop {
                let page = evident::blocking::wait(self.backend.read_all(evident::Sequence(position), batch))?;
                let Some(last) = page.last() else { break };
                position = last.sequence.0 + 1;
                seen += page.len() as u64;
                if decode_events {
                    for e in &page {
                        black_box(e.stream());
                        let ev: AccountEvent = decode(e, &upcasters)?;
                        sum += delta(&ev);
                    }
                }
                black_box(&page);
            }
            secs.push(start.elapsed().as_secs_f64());
            ensure!(seen == self.events, "the feed held {seen} events, expected {}", self.events);
            ensure!(
                !decode_events || sum == self.expected.balance,
                "decoded sum {sum}, expected {}",
                self.expected.balance
            );
        }
        let rates: Vec<f64> = secs.iter().map(|s| self.events as f64 / s).collect();
        let (part, what) = if decode_events {
            (ProjectionPart::FeedDecode, "feed read + stream name + decode of every event (no sink)")
        } else {
            (ProjectionPart::Feed, "feed read alone: read_all pages -> RecordedEvent (no sink)")
        };
        Ok(Measurement::new(
            System::Evident,
            Key::ProjectionPart { part },
            format!("{what}, pages of {}", num(batch as f64)),
            median(&rates),
            "events/s",
        )
        .note(runs_note(&rates, 1e6 / median(&rates))))
    }

    /// The same upserts straight through rusqlite, pre-decoded, in transactions of `batch`
    /// (the floor of the SQLite work, without the feed or the library).
    pub fn raw_sqlite(&self, batch: usize) -> Result<Measurement> {
        let mut rates = Vec::with_capacity(self.runs);
        for run in 0..self.runs {
            let path = self.dir.join(format!("raw-{run}.db"));
            let conn = rusqlite::Connection::open(&path)?;
            conn.pragma_update(None, "journal_mode", "WAL")?;
            conn.pragma_update(None, "synchronous", "FULL")?;
            let real = |s: &str| s.replace("{bench_balances}", TABLE);
            conn.execute_batch(&real(CREATE))?;
            let upsert = real(UPSERT).replace("$1", "?1").replace("$2", "?2");
            let start = Instant::now();
            for chunk in self.upserts.chunks(batch) {
                conn.execute_batch("BEGIN IMMEDIATE")?;
                {
                    let mut stmt = conn.prepare_cached(&upsert)?;
                    for (account, d) in chunk {
                        stmt.execute(rusqlite::params![account, d])?;
                    }
                }
                conn.execute_batch("COMMIT")?;
            }
            rates.push(self.events as f64 / start.elapsed().as_secs_f64());
            let got: (i64, i64, i64) = conn.query_row(&real(CHECK), [], |r| Ok((r.get(0)?, r.get(1)?, r.get(2)?)))?;
            let want = self.expected;
            ensure!(
                got == (want.balance, want.events, want.accounts),
                "raw SQLite read model {got:?}, expected {want:?}"
            );
            drop(conn);
            remove_sqlite(&path);
        }
        Ok(Measurement::new(
            System::Sqlite,
            Key::ProjectionPart { part: ProjectionPart::RawSqlite },
            format!(
                "the same upserts straight through rusqlite (pre-decoded, cached statement), transactions of {}",
                num(batch as f64)
            ),
            median(&rates),
            "events/s",
        )
        .note(runs_note(&rates, 1e6 / median(&rates))))
    }

    /// The same upserts straight through the `postgres` crate (pre-decoded, one prepared
    /// statement, one round trip per upsert as the library's `Tx` makes), in transactions of
    /// `batch`, into a fresh table on the server at `conninfo`.
    pub fn raw_postgres(&self, conninfo: &str, batch: usize) -> Result<Measurement> {
        let mut rates = Vec::with_capacity(PG_RUNS);
        let real = |s: &str| s.replace("{bench_balances}", TABLE);
        for _ in 0..PG_RUNS {
            reset_postgres(conninfo)?;
            let mut c = postgres::Client::connect(conninfo, postgres::NoTls)?;
            c.batch_execute(&real(CREATE))?;
            let stmt = c.prepare(&real(UPSERT))?;
            let start = Instant::now();
            for chunk in self.upserts.chunks(batch) {
                let mut tx = c.transaction()?;
                for (account, d) in chunk {
                    tx.execute(&stmt, &[account, d])?;
                }
                tx.commit()?;
            }
            rates.push(self.events as f64 / start.elapsed().as_secs_f64());
            let row = c.query_one(&real(CHECK), &[])?;
            let got: (i64, i64, i64) = (row.get(0), row.get(1), row.get(2));
            let want = self.expected;
            ensure!(
                got == (want.balance, want.events, want.accounts),
                "raw PostgreSQL read model {got:?}, expected {want:?}"
            );
        }
        reset_postgres(conninfo)?;
        Ok(Measurement::new(
            System::Postgres,
            Key::ProjectionPart { part: ProjectionPart::RawPostgres },
            format!(
                "the same upserts straight through the postgres crate (pre-decoded, prepared), transactions of {}",
                num(batch as f64)
            ),
            median(&rates),
            "events/s",
        )
        .note(runs_note(&rates, 1e6 / median(&rates))))
    }

    /// Catches a fresh SQLite read model up with the log, `runs` times, pages of `batch`,
    /// written through `api`.
    pub fn sqlite(&self, batch: usize, api: Api) -> Result<Measurement> {
        let mut results = Vec::with_capacity(self.runs);
        for run in 0..self.runs {
            let path = self.dir.join(format!("read-model-{batch}-{run}.db"));
            let sink = Sink::sqlite(&path)?;
            results.push(self.catch_up(sink, batch, api)?);
            remove_sqlite(&path);
        }
        Ok(self.row(
            ProjectionSink::Sqlite,
            batch,
            api,
            results,
            "SQLite file in the data directory (WAL, synchronous = FULL)",
        ))
    }

    /// Catches a fresh PostgreSQL read model (on the server at `conninfo`) up with the log,
    /// written through `api`.
    pub fn postgres(&self, conninfo: &str, batch: usize, api: Api) -> Result<Measurement> {
        let mut results = Vec::with_capacity(PG_RUNS);
        for _ in 0..PG_RUNS {
            reset_postgres(conninfo)?;
            let sink = evident::blocking::postgres_sink(conninfo)?;
            results.push(self.catch_up(sink, batch, api)?);
        }
        reset_postgres(conninfo)?;
        Ok(self.row(
            ProjectionSink::Postgres,
            batch,
            api,
            results,
            "PostgreSQL on 127.0.0.1 (fsync = on, synchronous_commit = on)",
        ))
    }

    /// One timed catch-up into `sink` (fresh), checked; returns events/s and the per-page
    /// latencies.
    fn catch_up(&self, sink: Sink, batch: usize, api: Api) -> Result<(f64, Latencies)> {
        let projection = Balances { upcasters: Upcasters::default() };
        match api {
            Api::Batch => self.catch_up_with(sink, batch, projection),
            Api::PerEvent => self.catch_up_with(sink, batch, PerEvent(projection)),
        }
    }

    fn catch_up_with<P: Projection + 'static>(
        &self,
        sink: Sink,
        batch: usize,
        projection: P,
    ) -> Result<(f64, Latencies)> {
        let options = RunnerOptions { batch_size: batch, ..RunnerOptions::default() };
        let mut runner =
            ::evident::blocking::ProjectionRunner::with_options(self.backend.clone(), sink, projection, options)?;
        ensure!(runner.position().0 == 0, "the read model was not fresh: checkpoint at {}", runner.position());
        // The progress callback runs on the runner's blocking thread: the page times come back
        // through a shared vector.
        let recorded = std::sync::Arc::new(std::sync::Mutex::new(Latencies::with_capacity(
            (self.events as usize).div_ceil(batch),
        )));
        let into = recorded.clone();
        let start = Instant::now();
        let mut last = start;
        let done = runner.catch_up_with(move |_| {
            let now = Instant::now();
            if let Ok(mut pages) = into.lock() {
                pages.push(now - last);
            }
            last = now;
        })?;
        let pages = std::mem::take(&mut *recorded.lock().map_err(|_| anyhow::anyhow!("page timings poisoned"))?);
        let secs = start.elapsed().as_secs_f64();
        ensure!(
            done.applied == self.events && done.scanned == self.events && done.parked == 0,
            "catch-up applied {} and parked {} of {} events ({} scanned)",
            done.applied,
            done.parked,
            self.events,
            done.scanned
        );
        let rows = runner.query(CHECK, &[])?;
        let got: Vec<Option<i64>> = rows.first().map(|r| r.iter().map(SqlValue::as_i64).collect()).unwrap_or_default();
        let want = self.expected;
        if got != [Some(want.balance), Some(want.events), Some(want.accounts)] {
            bail!("the read model holds (sum of balances, sum of n, rows) = {got:?}, expected {want:?}");
        }
        Ok((self.events as f64 / secs, pages))
    }

    fn row(
        &self,
        sink: ProjectionSink,
        batch: usize,
        api: Api,
        results: Vec<(f64, Latencies)>,
        into: &str,
    ) -> Measurement {
        let rates: Vec<f64> = results.iter().map(|(r, _)| *r).collect();
        let mut pages = Latencies::default();
        for (_, l) in results {
            pages.merge(l);
        }
        let (p50, p99) = pages.p50_p99();
        Measurement::new(
            System::Evident,
            Key::ProjectionCatchUp { sink, batch, per_event: api == Api::PerEvent },
            // The per-event form keeps the description of the runs before `handle_batch`, so
            // `--compare` matches it with them.
            format!(
                "catch-up of {} events ({} streams) into {into}, pages of {}{}",
                num(self.events as f64),
                num(self.accounts as f64),
                num(batch as f64),
                match api {
                    Api::Batch => ", handle_batch: one multi-row upsert per page",
                    Api::PerEvent => "",
                }
            ),
            median(&rates),
            "events/s",
        )
        .latency(p50, p99)
        .note(format!(
            "{}; p50/p99 per page (read, decode, {}, checkpoint, commit); sums checked",
            runs_note(&rates, 1e6 / median(&rates)),
            match api {
                Api::Batch => "fold per account, upsert the page",
                Api::PerEvent => "upsert each event",
            }
        ))
    }
}

/// "median of 3 runs: a, b, c events/s; x µs per event".
fn runs_note(rates: &[f64], us_per_event: f64) -> String {
    let list: Vec<String> = rates.iter().map(|r| num(*r)).collect();
    format!(
        "{} run{}: {} events/s; {us_per_event:.2} µs per event",
        rates.len(),
        if rates.len() == 1 { "" } else { "s (median)" },
        list.join(", ")
    )
}

fn remove_sqlite(path: &Path) {
    for suffix in ["", "-wal", "-shm"] {
        let mut p = path.as_os_str().to_owned();
        p.push(suffix);
        let _ = std::fs::remove_file(PathBuf::from(p));
    }
}

/// Drops the read model and the projection's bookkeeping rows on the PostgreSQL server.
fn reset_postgres(conninfo: &str) -> Result<()> {
    let mut c = postgres::Client::connect(conninfo, postgres::NoTls)?;
    c.batch_execute(&format!(
        "DROP TABLE IF EXISTS {TABLE};
         DO $$ BEGIN
           IF to_regclass('evident_checkpoints') IS NOT NULL THEN
             DELETE FROM evident_checkpoints WHERE projection LIKE '{NAME}%';
           END IF;
           IF to_regclass('evident_parked') IS NOT NULL THEN
             DELETE FROM evident_parked WHERE projection LIKE '{NAME}%';
           END IF;
         END $$;"
    ))?;
    Ok(())
}

/// Whether PostgreSQL at `conninfo` accepts a connection (the error otherwise), within a few
/// seconds.
pub fn postgres_reachable(conninfo: &str) -> std::result::Result<String, String> {
    let mut config: postgres::Config = conninfo.parse().map_err(|e| format!("{e}"))?;
    config.connect_timeout(Duration::from_secs(5));
    let mut c = config.connect(postgres::NoTls).map_err(|e| format!("{:#}", anyhow::Error::from(e)))?;
    let row = c
        .query_one(
            "SELECT current_setting('server_version'), current_setting('fsync'), current_setting('synchronous_commit')",
            &[],
        )
        .map_err(|e| format!("{e}"))?;
    let (v, fsync, sync): (String, String, String) = (row.get(0), row.get(1), row.get(2));
    if fsync != "on" || sync != "on" {
        return Err(format!("PostgreSQL {v} runs with fsync = {fsync}, synchronous_commit = {sync}; both must be on"));
    }
    Ok(format!("PostgreSQL {v} (fsync = on, synchronous_commit = on)"))
}
