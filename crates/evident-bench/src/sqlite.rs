//! SQLite used as an event store, in process (rusqlite, SQLite bundled): the same `events`
//! table as PostgreSQL (JSON as text), `journal_mode = WAL`, `synchronous = FULL` (every commit
//! syncs the WAL before it returns). SQLite has one writer at a time and no group commit: with
//! 8 writers, each thread has its own connection and waits in the busy handler for the lock.
//!
//! An append is `BEGIN IMMEDIATE`, the expected-version check (`max(version)` of the stream),
//! the insert(s) through a cached prepared statement, `COMMIT`.

use std::hint::black_box;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{ensure, Context, Result};
use rusqlite::{params, Connection, TransactionBehavior};

use crate::driver;
use crate::payload;
use crate::replay;
use crate::report::{num, Key, Measurement, System};
use crate::stats::{median, Latencies};

const SCHEMA: &str = "
DROP TABLE IF EXISTS events;
CREATE TABLE events (
  global_position INTEGER PRIMARY KEY AUTOINCREMENT,
  stream_id TEXT NOT NULL,
  version INTEGER NOT NULL,
  type TEXT NOT NULL,
  data TEXT NOT NULL,
  metadata TEXT,
  created_at TEXT NOT NULL DEFAULT (strftime('%Y-%m-%dT%H:%M:%fZ','now')),
  UNIQUE (stream_id, version)
);";

const CURRENT: &str = "SELECT coalesce(max(version), -1) FROM events WHERE stream_id = ?1";
const INSERT: &str = "INSERT INTO events (stream_id, version, type, data, metadata)
                      VALUES (?1, ?2, ?3, ?4, ?5)";
const READ_STREAM: &str = "SELECT global_position, stream_id, version, type, data, metadata, created_at
                           FROM events WHERE stream_id = ?1 ORDER BY version";
const SCAN: &str = "SELECT global_position, stream_id, version, type, data, metadata, created_at
                    FROM events ORDER BY global_position";

/// Streams each single-event writer cycles over.
const STREAMS_PER_WRITER: usize = 100;

/// A SQLite database file to measure.
pub struct Sqlite {
    path: PathBuf,
}

fn decode(row: &rusqlite::Row<'_>) -> rusqlite::Result<()> {
    let pos: i64 = row.get(0)?;
    let stream = row.get_ref(1)?.as_str()?;
    let version: i64 = row.get(2)?;
    let ty = row.get_ref(3)?.as_str()?;
    let data = row.get_ref(4)?.as_bytes()?;
    let meta = row.get_ref(5)?.as_bytes_or_null()?;
    let at = row.get_ref(6)?.as_str()?;
    black_box((pos, stream, version, ty, data, meta, at));
    Ok(())
}

/// Appends `events` to `stream` if its last version is `expected` (-1: no stream), in one
/// immediate transaction.
fn append(conn: &mut Connection, stream: &str, expected: i64, events: usize) -> Result<()> {
    let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
    let current: i64 = tx.prepare_cached(CURRENT)?.query_row([stream], |r| r.get(0))?;
    ensure!(current == expected, "wrong expected version on {stream}");
    {
        let mut insert = tx.prepare_cached(INSERT)?;
        for v in 0..events as i64 {
            insert.execute(params![stream, expected + 1 + v, payload::EVENT_TYPE, payload::DATA, payload::METADATA])?;
        }
    }
    tx.commit()?;
    Ok(())
}

impl Sqlite {
    /// Creates the database in `dir` with an empty `events` table; returns it with a
    /// description of its settings.
    pub fn setup(dir: &Path) -> Result<(Self, String)> {
        let me = Self { path: dir.join("events.db") };
        let c = me.connect()?;
        c.execute_batch(SCHEMA)?;
        let mode: String = c.query_row("PRAGMA journal_mode", [], |r| r.get(0))?;
        let sync: i64 = c.query_row("PRAGMA synchronous", [], |r| r.get(0))?;
        ensure!(mode == "wal" && sync == 2, "SQLite must run in WAL mode with synchronous=FULL");
        let version = rusqlite::version();
        Ok((me, format!("SQLite {version} (bundled), journal_mode=WAL, synchronous=FULL")))
    }

    fn connect(&self) -> Result<Connection> {
        let c = Connection::open(&self.path).with_context(|| format!("opening {}", self.path.display()))?;
        c.pragma_update(None, "journal_mode", "WAL")?;
        c.pragma_update(None, "synchronous", "FULL")?;
        c.busy_timeout(Duration::from_secs(60))?;
        Ok(c)
    }

    /// Single-event appends from `writers` connections for `duration`.
    pub fn append_single(&self, writers: usize, duration: Duration) -> Result<Measurement> {
        let mut out = driver::run(
            writers,
            duration,
            |w| {
                let keys: Vec<String> = (0..STREAMS_PER_WRITER).map(|s| format!("c{writers}-w{w}-s{s}")).collect();
                Ok((self.connect()?, keys, vec![-1i64; STREAMS_PER_WRITER]))
            },
            |(c, keys, versions), _, i| {
                let s = i as usize % STREAMS_PER_WRITER;
                append(c, &keys[s], versions[s], 1)?;
                versions[s] += 1;
                Ok(())
            },
        )?;
        let (p50, p99) = out.latencies.p50_p99();
        Ok(Measurement::new(
            System::Sqlite,
            Key::Append { writers },
            format!("1 event per transaction, {writers} writer(s)"),
            out.rate(),
            "events/s",
        )
        .latency(p50, p99))
    }

    /// Batches of `size` events per transaction, each to a new stream, one writer.
    pub fn append_batches(&self, size: usize, duration: Duration) -> Result<Measurement> {
        let mut out =
            driver::run(1, duration, |_| self.connect(), |c, _, i| append(c, &format!("b{size}-{i}"), -1, size))?;
        let (p50, p99) = out.latencies.p50_p99();
        Ok(Measurement::new(
            System::Sqlite,
            Key::Batch { size, writers: 1, kafka: false },
            format!("batches of {size} per transaction, 1 writer"),
            out.ops as f64 * size as f64 / out.elapsed.as_secs_f64(),
            "events/s",
        )
        .latency(p50, p99)
        .note("p50/p99 per batch"))
    }

    /// Replaces the table's contents with the read data set (the same layout as evident's).
    pub fn load_reads(&self, events: u64) -> Result<Measurement> {
        let mut c = self.connect()?;
        let start = Instant::now();
        c.execute_batch(SCHEMA)?;
        let filler = events - replay::STREAM_EVENTS;
        let stride = replay::stride(events);
        let tx = c.transaction()?;
        {
            let mut insert = tx.prepare(INSERT)?;
            let mut versions = std::collections::HashMap::<String, i64>::new();
            for g in 0..filler {
                let s = replay::stream_of(g, stride);
                let v = versions.entry(s.clone()).or_insert(-1);
                *v += 1;
                insert.execute(params![s, *v, payload::EVENT_TYPE, payload::DATA, payload::METADATA])?;
            }
            for v in 0..replay::STREAM_EVENTS as i64 {
                insert.execute(params![replay::CONTIG, v, payload::EVENT_TYPE, payload::DATA, payload::METADATA])?;
            }
        }
        tx.commit()?;
        c.execute_batch("PRAGMA wal_checkpoint(TRUNCATE); ANALYZE;")?;
        let secs = start.elapsed().as_secs_f64();
        let count: i64 = c.query_row("SELECT count(*) FROM events", [], |r| r.get(0))?;
        ensure!(count as u64 == events, "loaded {count} rows, expected {events}");
        let size = std::fs::metadata(&self.path).map_or(0, |m| m.len());
        Ok(Measurement::new(
            System::Sqlite,
            Key::Load,
            format!("load {} events (one transaction, prepared INSERT)", num(events as f64)),
            events as f64 / secs,
            "events/s",
        )
        .note(format!("{secs:.1} s; database file {:.0} MB", size as f64 / 1e6)))
    }

    /// Reads one 1,000-event stream, ordered by version, back to back for `duration`.
    pub fn read_stream(&self, scattered: bool, events: u64, duration: Duration) -> Result<Measurement> {
        let c = self.connect()?;
        let mut stmt = c.prepare(READ_STREAM)?;
        let key = if scattered { replay::SCATTERED } else { replay::CONTIG };
        let mut lat = Latencies::with_capacity(1 << 12);
        let mut n = 0u64;
        let start = Instant::now();
        while start.elapsed() < duration || lat.len() < 10 {
            let t = Instant::now();
            let mut rows = stmt.query([key])?;
            let mut got = 0u64;
            while let Some(row) = rows.next()? {
                decode(row)?;
                got += 1;
            }
            lat.push(t.elapsed());
            ensure!(got == replay::STREAM_EVENTS);
            n += got;
        }
        let secs = start.elapsed().as_secs_f64();
        let (p50, p99) = lat.p50_p99();
        Ok(Measurement::new(
            System::Sqlite,
            if scattered { Key::StreamScattered } else { Key::StreamContig },
            format!(
                "read one 1,000-event stream ({}) among {}",
                if scattered { "scattered" } else { "contiguous" },
                num(events as f64)
            ),
            n as f64 / secs,
            "events/s",
        )
        .latency(p50, p99)
        .note("p50/p99 per stream read"))
    }

    /// Scans every event in global order `repeats` times (every column decoded); the row
    /// holds the median rate.
    pub fn full_scan(&self, events: u64, repeats: usize) -> Result<Measurement> {
        let c = self.connect()?;
        let mut stmt = c.prepare(SCAN)?;
        let mut rates = Vec::new();
        let mut times = Vec::new();
        for _ in 0..repeats {
            let t = Instant::now();
            let mut rows = stmt.query([])?;
            let mut n = 0u64;
            while let Some(row) = rows.next()? {
                decode(row)?;
                n += 1;
            }
            let secs = t.elapsed().as_secs_f64();
            ensure!(n == events, "scan saw {n} rows of {events}");
            rates.push(n as f64 / secs);
            times.push(secs);
        }
        Ok(Measurement::new(
            System::Sqlite,
            Key::ScanAll,
            format!("full scan of {} events, ORDER BY global_position", num(events as f64)),
            median(&rates),
            "events/s",
        )
        .note(format!("median of {repeats}; {:.2} s per scan; one cursor", median(&times))))
    }
}
