//! PostgreSQL used as an event store the way Marten and Message DB use it: one `events` table,
//! a `bigserial` global position, `unique (stream_id, version)` for optimistic concurrency.
//! The server is PostgreSQL 15 as Debian packages it, listening on 127.0.0.1 only, with
//! `fsync = on` and `synchronous_commit = on` (a commit returns after its WAL is flushed;
//! concurrent commits share flushes, PostgreSQL's own group commit). `scripts/bench.sh` starts
//! it; this module connects with the synchronous `postgres` crate, one connection per client.
//!
//! An append checks the expected version in the statement itself: the row is inserted only if
//! the stream's current last version (`max(version)`, an index probe) is the expected one; the
//! unique index rejects a racing writer. A batch is one `INSERT ... SELECT ... FROM unnest($)`
//! of all its events. Reads fetch every column; JSON columns arrive as raw bytes (no parsing),
//! as evident's events do.

use std::hint::black_box;
use std::time::{Duration, Instant, SystemTime};

use anyhow::{ensure, Context, Result};
use postgres::fallible_iterator::FallibleIterator;
use postgres::types::{FromSql, ToSql, Type};
use postgres::{Client, NoTls};

use crate::driver;
use crate::payload;
use crate::replay;
use crate::report::{num, Key, Measurement, System};
use crate::stats::{median, Latencies};

const SCHEMA: &str = "
DROP TABLE IF EXISTS events;
CREATE TABLE events (
  global_position bigserial PRIMARY KEY,
  stream_id text NOT NULL,
  version bigint NOT NULL,
  type text NOT NULL,
  data jsonb NOT NULL,
  metadata jsonb,
  created_at timestamptz NOT NULL DEFAULT now(),
  UNIQUE (stream_id, version)
);";

const APPEND_ONE: &str = "
INSERT INTO events (stream_id, version, type, data, metadata, created_at)
SELECT $1, $2 + 1, $3, $4::jsonb, $5::jsonb, now()
WHERE (SELECT coalesce(max(version), -1) FROM events WHERE stream_id = $1) = $2";

const APPEND_MANY: &str = "
INSERT INTO events (stream_id, version, type, data, metadata, created_at)
SELECT $1, $2 + g.i, $3, g.d::jsonb, $5::jsonb, now()
FROM unnest($4::text[]) WITH ORDINALITY AS g(d, i)
WHERE (SELECT coalesce(max(version), -1) FROM events WHERE stream_id = $1) = $2";

const READ_STREAM: &str = "
SELECT global_position, stream_id, version, type, data, metadata, created_at
FROM events WHERE stream_id = $1 ORDER BY version";

const SCAN: &str = "
SELECT global_position, stream_id, version, type, data, metadata, created_at
FROM events ORDER BY global_position";

/// Streams each single-event client cycles over.
const STREAMS_PER_WRITER: usize = 100;

/// A JSON or JSONB column's text, unparsed.
struct RawJson<'a>(&'a [u8]);

impl<'a> FromSql<'a> for RawJson<'a> {
    fn from_sql(ty: &Type, raw: &'a [u8]) -> std::result::Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        if *ty == Type::JSONB {
            match raw.split_first() {
                Some((1, text)) => Ok(RawJson(text)),
                _ => Err("unsupported jsonb binary format".into()),
            }
        } else {
            Ok(RawJson(raw))
        }
    }
    fn accepts(ty: &Type) -> bool {
        *ty == Type::JSONB || *ty == Type::JSON
    }
}

/// Decodes every column of an event row.
fn decode(row: &postgres::Row) -> Result<()> {
    let pos: i64 = row.try_get(0)?;
    let stream: &str = row.try_get(1)?;
    let version: i64 = row.try_get(2)?;
    let ty: &str = row.try_get(3)?;
    let data: RawJson<'_> = row.try_get(4)?;
    let meta: Option<RawJson<'_>> = row.try_get(5)?;
    let at: SystemTime = row.try_get(6)?;
    black_box((pos, stream, version, ty, data.0, meta.map(|m| m.0), at));
    Ok(())
}

/// A PostgreSQL server to measure.
pub struct Postgres {
    conninfo: String,
}

impl Postgres {
    /// Connects, checks the durability settings, and creates an empty `events` table. Returns
    /// the server's description.
    pub fn setup(conninfo: &str) -> Result<(Self, String)> {
        let me = Self { conninfo: conninfo.to_string() };
        let mut c = me.connect().with_context(|| {
            format!("connecting to PostgreSQL ({conninfo}); start it with scripts/bench.sh or pass --skip-postgres")
        })?;
        let row = c.query_one(
            "SELECT current_setting('server_version'), current_setting('fsync'),
                    current_setting('synchronous_commit'), current_setting('wal_sync_method'),
                    current_setting('max_connections'), current_setting('shared_buffers'),
                    current_setting('listen_addresses'), current_setting('full_page_writes')",
            &[],
        )?;
        let get = |i: usize| -> Result<String> { Ok(row.try_get::<_, String>(i)?) };
        ensure!(get(1)? == "on", "PostgreSQL must run with fsync = on");
        ensure!(get(2)? == "on", "PostgreSQL must run with synchronous_commit = on");
        let max_conn: u32 = get(4)?.parse().unwrap_or(0);
        ensure!(max_conn >= 70, "PostgreSQL max_connections is {max_conn}; the 64-client workload needs at least 70");
        let info = format!(
            "PostgreSQL {} (fsync={}, synchronous_commit={}, wal_sync_method={}, full_page_writes={}, shared_buffers={}, max_connections={}, listen_addresses={})",
            get(0)?,
            get(1)?,
            get(2)?,
            get(3)?,
            get(7)?,
            get(5)?,
            get(4)?,
            get(6)?
        );
        c.batch_execute(SCHEMA)?;
        Ok((me, info))
    }

    fn connect(&self) -> Result<Client> {
        Ok(Client::connect(&self.conninfo, NoTls)?)
    }

    fn wal_lsn(c: &mut Client) -> Result<i64> {
        let row = c.query_one("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')::bigint", &[])?;
        Ok(row.try_get(0)?)
    }

    /// Single-event appends from `clients` connections for `duration`.
    pub fn append_single(&self, clients: usize, duration: Duration) -> Result<Measurement> {
        let mut admin = self.connect()?;
        let wal0 = Self::wal_lsn(&mut admin)?;
        let mut out = driver::run(
            clients,
            duration,
            |w| {
                let mut c = self.connect()?;
                let stmt =
                    c.prepare_typed(APPEND_ONE, &[Type::TEXT, Type::INT8, Type::TEXT, Type::TEXT, Type::TEXT])?;
                let keys: Vec<String> = (0..STREAMS_PER_WRITER).map(|s| format!("c{clients}-w{w}-s{s}")).collect();
                Ok((c, stmt, keys, vec![-1i64; STREAMS_PER_WRITER]))
            },
            |(c, stmt, keys, versions), _, i| {
                let s = i as usize % STREAMS_PER_WRITER;
                let n = c.execute(
                    &*stmt,
                    &[&keys[s], &versions[s], &payload::EVENT_TYPE, &payload::DATA, &payload::METADATA],
                )?;
                ensure!(n == 1, "wrong expected version on {}", keys[s]);
                versions[s] += 1;
                Ok(())
            },
        )?;
        let wal = Self::wal_lsn(&mut admin)? - wal0;
        let (p50, p99) = out.latencies.p50_p99();
        Ok(Measurement::new(
            System::Postgres,
            Key::Append { writers: clients },
            format!("1 event per transaction, {clients} client(s)"),
            out.rate(),
            "events/s",
        )
        .latency(p50, p99)
        .mb(wal as f64 / out.elapsed.as_secs_f64() / 1e6)
        .note("MB/s = WAL bytes"))
    }

    /// Batches of `size` events, one transaction (one statement) each, each to a new stream.
    pub fn append_batches(&self, size: usize, clients: usize, duration: Duration) -> Result<Measurement> {
        let mut admin = self.connect()?;
        let wal0 = Self::wal_lsn(&mut admin)?;
        let out = driver::run(
            clients,
            duration,
            |_| {
                let mut c = self.connect()?;
                let stmt =
                    c.prepare_typed(APPEND_MANY, &[Type::TEXT, Type::INT8, Type::TEXT, Type::TEXT_ARRAY, Type::TEXT])?;
                Ok((c, stmt, vec![payload::DATA; size]))
            },
            |(c, stmt, data), w, i| {
                let key = format!("b{size}-c{clients}-w{w}-{i}");
                let n = c.execute(&*stmt, &[&key, &-1i64, &payload::EVENT_TYPE, &*data, &payload::METADATA])?;
                ensure!(n == size as u64, "batch inserted {n} rows");
                Ok(())
            },
        )?;
        let wal = Self::wal_lsn(&mut admin)? - wal0;
        let mut lat = out.latencies;
        let (p50, p99) = lat.p50_p99();
        let secs = out.elapsed.as_secs_f64();
        Ok(Measurement::new(
            System::Postgres,
            Key::Batch { size, writers: clients, kafka: false },
            format!("batches of {size} per transaction, {clients} client(s)"),
            out.ops as f64 * size as f64 / secs,
            "events/s",
        )
        .latency(p50, p99)
        .mb(wal as f64 / secs / 1e6)
        .note("MB/s = WAL bytes; p50/p99 per batch"))
    }

    /// Replaces the table's contents with the read data set (the same layout as evident's:
    /// filler streams, one scattered and one contiguous 1,000-event stream), then vacuums,
    /// analyzes and checkpoints so the reads see a settled table.
    pub fn load_reads(&self, events: u64) -> Result<Measurement> {
        let mut c = self.connect()?;
        let start = Instant::now();
        c.batch_execute("TRUNCATE events RESTART IDENTITY")?;
        let filler = events - replay::STREAM_EVENTS;
        let stride = replay::stride(events);
        // Same rule as replay::stream_of, in SQL.
        let sql = format!(
            "INSERT INTO events (stream_id, version, type, data, metadata, created_at)
             SELECT s, row_number() OVER (PARTITION BY s ORDER BY g) - 1, $1, $2::jsonb, $3::jsonb, now()
             FROM (SELECT g, CASE WHEN g % {stride} = 0 AND g / {stride} < {n}
                                  THEN '{scattered}' ELSE 'load-' || (g % {filler_streams}) END AS s
                   FROM generate_series(0::bigint, {last}::bigint) AS g) x
             ORDER BY g",
            n = replay::STREAM_EVENTS,
            scattered = replay::SCATTERED,
            filler_streams = replay::FILLER_STREAMS,
            last = filler - 1,
        );
        let stmt = c.prepare_typed(&sql, &[Type::TEXT, Type::TEXT, Type::TEXT])?;
        c.execute(&stmt, &[&payload::EVENT_TYPE, &payload::DATA, &payload::METADATA])?;
        let contig = c.prepare_typed(
            "INSERT INTO events (stream_id, version, type, data, metadata, created_at)
             SELECT $1, g, $2, $3::jsonb, $4::jsonb, now() FROM generate_series(0::bigint, $5::bigint) AS g",
            &[Type::TEXT, Type::TEXT, Type::TEXT, Type::TEXT, Type::INT8],
        )?;
        c.execute(
            &contig,
            &[
                &replay::CONTIG,
                &payload::EVENT_TYPE,
                &payload::DATA,
                &payload::METADATA,
                &(replay::STREAM_EVENTS as i64 - 1),
            ],
        )?;
        let load_secs = start.elapsed().as_secs_f64();
        c.batch_execute("VACUUM ANALYZE events")?;
        let checkpoint = c.batch_execute("CHECKPOINT").is_ok();
        let row = c.query_one(
            "SELECT count(*), pg_total_relation_size('events'),
                    (SELECT count(*) FROM events WHERE stream_id = $1),
                    (SELECT count(*) FROM events WHERE stream_id = $2)
             FROM events",
            &[&replay::SCATTERED, &replay::CONTIG],
        )?;
        let (count, size, n1, n2): (i64, i64, i64, i64) =
            (row.try_get(0)?, row.try_get(1)?, row.try_get(2)?, row.try_get(3)?);
        ensure!(count as u64 == events, "loaded {count} rows, expected {events}");
        ensure!(n1 as u64 == replay::STREAM_EVENTS && n2 as u64 == replay::STREAM_EVENTS);
        Ok(Measurement::new(
            System::Postgres,
            Key::Load,
            format!("load {} events (server-side INSERT ... SELECT, one transaction)", num(events as f64)),
            events as f64 / load_secs,
            "events/s",
        )
        .note(format!(
            "{load_secs:.1} s, then VACUUM ANALYZE{}; table + indexes {:.0} MB",
            if checkpoint { " + CHECKPOINT" } else { "" },
            size as f64 / 1e6
        )))
    }

    /// Reads one 1,000-event stream, ordered by version, back to back for `duration`.
    pub fn read_stream(&self, scattered: bool, events: u64, duration: Duration) -> Result<Measurement> {
        let mut c = self.connect()?;
        let stmt = c.prepare_typed(READ_STREAM, &[Type::TEXT])?;
        let key = if scattered { replay::SCATTERED } else { replay::CONTIG };
        let mut lat = Latencies::with_capacity(1 << 12);
        let mut n = 0u64;
        let start = Instant::now();
        while start.elapsed() < duration || lat.len() < 10 {
            let t = Instant::now();
            let rows = c.query(&stmt, &[&key])?;
            for row in &rows {
                decode(row)?;
            }
            lat.push(t.elapsed());
            ensure!(rows.len() as u64 == replay::STREAM_EVENTS);
            n += rows.len() as u64;
        }
        let secs = start.elapsed().as_secs_f64();
        let (p50, p99) = lat.p50_p99();
        Ok(Measurement::new(
            System::Postgres,
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
        .note("p50/p99 per stream read (prepared SELECT ... ORDER BY version)"))
    }

    /// Scans every event in global order `repeats` times (rows streamed, every column
    /// decoded); the row holds the median rate.
    pub fn full_scan(&self, events: u64, repeats: usize) -> Result<Measurement> {
        let mut c = self.connect()?;
        let stmt = c.prepare(SCAN)?;
        let mut rates = Vec::new();
        let mut times = Vec::new();
        for _ in 0..repeats {
            let t = Instant::now();
            let mut rows = c.query_raw(&stmt, std::iter::empty::<&(dyn ToSql + Sync)>())?;
            let mut n = 0u64;
            while let Some(row) = rows.next()? {
                decode(&row)?;
                n += 1;
            }
            let secs = t.elapsed().as_secs_f64();
            ensure!(n == events, "scan saw {n} rows of {events}");
            rates.push(n as f64 / secs);
            times.push(secs);
        }
        Ok(Measurement::new(
            System::Postgres,
            Key::ScanAll,
            format!("full scan of {} events, ORDER BY global_position", num(events as f64)),
            median(&rates),
            "events/s",
        )
        .note(format!("median of {repeats}; {:.2} s per scan; rows streamed over one connection", median(&times))))
    }

    /// Drops the table (frees the disk space).
    pub fn teardown(&self) -> Result<()> {
        self.connect()?.batch_execute("DROP TABLE IF EXISTS events")?;
        Ok(())
    }
}
