//! Results: every workload produces [`Measurement`]s; the [`Report`] prints them as Markdown
//! tables (one per section, so the output can be pasted into `BENCHMARKS.md`), then the ratios
//! between systems and against the physical limits, each next to its target.

use std::fmt;
use std::time::Duration;

/// Who was measured.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum System {
    /// The raw disk (plain files, no store).
    Disk,
    /// evident's storage engine (`evident-log`), in process.
    Evident,
    /// evident behind its HTTP API (`evident serve`, a separate process on 127.0.0.1).
    EvidentHttp,
    /// evident behind its Kafka listener (`evident serve`), driven by librdkafka.
    EvidentKafka,
    /// Tansu (a Kafka-compatible broker; SQLite storage by default), driven by librdkafka.
    Tansu,
    /// Apache Kafka (one KRaft node from Maven's jars) with `log.flush.interval.messages=1`:
    /// an fsync per append before the acknowledgement, durable as evident is.
    KafkaDurable,
    /// Apache Kafka with its defaults: appends acknowledged from the page cache, flushed by the
    /// OS later (not durable on power loss with one replica).
    KafkaDefault,
    /// The library on a three-node Apache Kafka cluster (`evident::KafkaBackend`).
    KafkaBackend,
    /// `evident serve --storage kafka://` nodes in front of the three-node cluster, over HTTP.
    ServeOnKafka,
    /// Apache Kafka, three KRaft nodes (replication factor 3, `min.insync.replicas` 2, flush
    /// defaults), driven by librdkafka directly.
    KafkaCluster,
    /// evident's schema registry (`evident serve`'s registry listener, Confluent's REST API).
    EvidentRegistry,
    /// evident's SQL views (`evident serve`'s `POST /v1/sql`).
    EvidentSql,
    /// Apicurio Registry 3.3.3 (its Confluent-compatible API, in-memory storage), started by
    /// `scripts/registry-ref.sh`.
    Apicurio,
    /// PostgreSQL used as an event store.
    Postgres,
    /// SQLite used as an event store.
    Sqlite,
}

impl fmt::Display for System {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            System::Disk => "disk",
            System::Evident => "evident",
            System::EvidentHttp => "evident HTTP",
            System::EvidentKafka => "evident Kafka",
            System::Tansu => "Tansu",
            System::KafkaDurable => "Apache Kafka, fsync per append",
            System::KafkaDefault => "Apache Kafka, defaults (not durable on power loss)",
            System::KafkaBackend => "evident KafkaBackend",
            System::ServeOnKafka => "evident serve on the cluster (HTTP)",
            System::KafkaCluster => "Apache Kafka, 3 nodes (librdkafka)",
            System::EvidentRegistry => "evident registry",
            System::EvidentSql => "evident SQL",
            System::Apicurio => "Apicurio Registry 3.3.3",
            System::Postgres => "PostgreSQL",
            System::Sqlite => "SQLite",
        })
    }
}

/// Where a projection's read model lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectionSink {
    /// A SQLite file.
    Sqlite,
    /// A PostgreSQL database.
    Postgres,
}

/// A part of a projection catch-up, measured alone.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ProjectionPart {
    /// Reading the feed (`read_all` pages converted to `RecordedEvent`s).
    Feed,
    /// The feed plus the per-event stream name and JSON decode.
    FeedDecode,
    /// The same upserts straight through rusqlite, pre-decoded.
    RawSqlite,
    /// The same upserts straight through the postgres crate, pre-decoded.
    RawPostgres,
}

/// How the cluster phase's raw producer writes one record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RawProduce {
    /// An idempotent producer: send, wait for the delivery report.
    Idempotent,
    /// A transactional producer, one record per transaction: begin, send, `commit_transaction`
    /// (what `KafkaBackend` does per append).
    Transaction,
    /// The same, the record's delivery report awaited before `commit_transaction`.
    TransactionAcked,
    /// As [`RawProduce::Transaction`], but polled until no record is in flight before
    /// `commit_transaction` (so its own flush finds nothing to wait for).
    TransactionPolled,
}

/// What was measured; the same key on two systems is the same workload.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Key {
    /// 4 KiB write + `fdatasync`, overwriting a pre-written file.
    SyncOverwrite,
    /// 4 KiB write + `fdatasync`, growing the file.
    SyncGrow,
    /// 1 MiB write + `fdatasync`, growing the file.
    SeqWrite1M,
    /// [`Key::SyncOverwrite`] again after the write workloads (detects a regime change).
    SyncOverwriteAfter,
    /// evident's single writer over the raw sync rate, in interleaved rounds (the value is a
    /// ratio).
    Paired {
        /// Against the growing file (else the pre-written one).
        grow: bool,
    },
    /// Durable single-event appends with expected-version check.
    Append {
        /// Concurrent writers (threads or connections).
        writers: usize,
    },
    /// Durable appends of `size` events per call/transaction, each to a new stream.
    Batch {
        /// Events per batch.
        size: usize,
        /// Concurrent writers.
        writers: usize,
        /// evident only: a Kafka record batch through `append_batch`.
        kafka: bool,
    },
    /// Loading the read data set.
    Load,
    /// evident: the partition read start to end, every record decoded.
    ScanPartition,
    /// Everything in global (commit) order: evident's `read_all`, a SQL `ORDER BY
    /// global_position` scan.
    ScanAll,
    /// One 1,000-event stream whose events are contiguous in the log/table.
    StreamContig,
    /// One 1,000-event stream whose events are spread over the whole log/table.
    StreamScattered,
    /// The HTTP comparison: single-event appends, each client (or in-process writer) on its
    /// own stream; [`System::EvidentHttp`] over HTTP, [`System::Evident`] in process.
    HttpAppend {
        /// Concurrent clients (threads, each with its own connection) or writers.
        clients: usize,
    },
    /// The HTTP comparison's append ratio, HTTP / embedded, taken in interleaved rounds (the
    /// value is a ratio).
    HttpAppendPaired {
        /// Concurrent clients.
        clients: usize,
    },
    /// The HTTP comparison: one 1,000-event stream read whole.
    HttpRead,
    /// The same read in the streamed format (NDJSON).
    HttpReadNdjson,
    /// SSE fan-out: concurrent HTTP appends while this many subscribers read every event.
    SseFanout {
        /// Concurrent appending clients.
        clients: usize,
        /// Live subscribers reading the appended topic.
        subscribers: usize,
    },
    /// SSE fan-out: append throughput with subscribers / without (the value is a ratio).
    SseFanoutRatio {
        /// Concurrent appending clients.
        clients: usize,
    },
    /// The Kafka comparison's baseline: the embedded log appending Kafka batches of 200-byte
    /// records to one partition.
    KafkaEmbeddedBatch {
        /// As many records per batch as librdkafka sent (else 1,000).
        matched: bool,
    },
    /// A Kafka client producing 200-byte records (acks=all, idempotent).
    KafkaProduce {
        /// Partitions of the topic (records spread round-robin).
        partitions: u32,
    },
    /// Kafka's own `kafka-producer-perf-test` (`ProducerPerformance`, the Java client) producing
    /// 200-byte records, acks=all, idempotent.
    KafkaPerfTest,
    /// A broker's start: from the command to accepting connections (the value is seconds).
    KafkaStart,
    /// A broker's peak resident memory over the Kafka workloads (the value is MiB).
    KafkaRss,
    /// A Kafka client producing one record at a time (latency).
    KafkaProduceOne,
    /// A Kafka client consuming a partition from offset 0.
    KafkaConsume,
    /// Kafka transactions: a transactional producer (librdkafka) committing transactions of
    /// 200-byte records to one partition.
    TxnProduce {
        /// Records per transaction.
        records: usize,
        /// Transactional producers at once.
        producers: usize,
    },
    /// The same shape without a transaction: an idempotent producer queueing `records` records
    /// and waiting for their delivery reports, again and again.
    TxnIdempotentBatches {
        /// Records per batch.
        records: usize,
    },
    /// Consume-transform-produce: a read_committed consumer and a transactional producer,
    /// offsets committed with the transaction.
    TxnConsumeTransformProduce,
    /// An aggregate of [`crate::aggregates::EVENTS`] events loaded through the library's
    /// repository on the embedded backend.
    AggregateLoad {
        /// From a snapshot (else a full replay).
        snapshot: bool,
        /// Events after the snapshot.
        tail: u64,
    },
    /// Loading the projection phase's log (not a figure of merit).
    ProjectionLoad,
    /// A part of a projection catch-up measured alone, to show where the time goes.
    ProjectionPart {
        /// Which part.
        part: ProjectionPart,
    },
    /// A projection catching a fresh read model up with the log.
    ProjectionCatchUp {
        /// Where the read model lives.
        sink: ProjectionSink,
        /// Events per page (and per transaction).
        batch: usize,
        /// Written one upsert per event (`handle`), not per page (`handle_batch`).
        per_event: bool,
    },
    /// Schema registry: sequential registrations of distinct Avro schemas, each in its own
    /// subject (the value is registrations/s).
    RegistryRegister,
    /// Schema registry: `GET /schemas/ids/{id}` (the value is requests/s).
    RegistryLookup {
        /// Concurrent clients, each on its own keep-alive connection.
        clients: usize,
    },
    /// Producing Confluent wire-format Avro records through the Kafka port.
    RegistryProduce {
        /// To a topic with `confluent.value.schema.validation=true` (else without).
        validation: bool,
    },
    /// `verify=stored`: every stored event of a subject read with a candidate schema, in
    /// process (the value is events/s).
    RegistryVerify,
    /// SQL phase: producing the order events a view is built over (not a figure of merit).
    SqlProduce,
    /// Seed 000's view over the order events produced before: evident's catch-up of a new
    /// view, or Kafka Streams from its start to the input committed (the value is events/s).
    SqlCatchUp,
    /// Kafka Streams' rate from its first record processed to the input committed (its group
    /// join and internal topics' creation left out).
    SqlStreamsFromFirst,
    /// Seed 000's view maintained while more events are produced (events/s).
    SqlLive,
    /// A pull query on the view over HTTP (queries/s, with latency percentiles).
    SqlPull {
        /// The range query (else the key lookup).
        range: bool,
    },
    /// Cluster phase: single-event appends at an expected version through the library
    /// (`KafkaBackend` on the three-node cluster, or the embedded backend), each writer on its
    /// own stream.
    ClusterAppend {
        /// Concurrent writers (tokio tasks).
        writers: usize,
        /// Backend instances (separate mirrors) splitting the writers.
        instances: usize,
    },
    /// Cluster phase: one record at a time produced by librdkafka straight to the cluster.
    ClusterProduce {
        /// Concurrent producers (threads, each its own partition).
        writers: usize,
        /// How.
        how: RawProduce,
    },
    /// Cluster phase: a 100-event stream read whole through the library.
    ClusterRead,
    /// Loading the restart data set.
    RestartLoad,
    /// Opening the restart data set in a fresh process.
    Open {
        /// Page cache dropped before the open.
        cold: bool,
        /// Index checkpoint present (false: full journal replay).
        checkpoint: bool,
    },
}

impl Key {
    fn section(&self) -> Section {
        match self {
            Key::SyncOverwrite | Key::SyncGrow | Key::SeqWrite1M | Key::SyncOverwriteAfter => Section::Physical,
            Key::Append { .. } | Key::Paired { .. } => Section::Appends,
            Key::Batch { .. } => Section::Batches,
            Key::Load | Key::ScanPartition | Key::ScanAll | Key::StreamContig | Key::StreamScattered => Section::Reads,
            Key::HttpAppend { .. }
            | Key::HttpAppendPaired { .. }
            | Key::HttpRead
            | Key::HttpReadNdjson
            | Key::SseFanout { .. }
            | Key::SseFanoutRatio { .. } => Section::Http,
            Key::KafkaEmbeddedBatch { .. }
            | Key::KafkaProduce { .. }
            | Key::KafkaPerfTest
            | Key::KafkaStart
            | Key::KafkaRss
            | Key::KafkaProduceOne
            | Key::KafkaConsume => Section::Kafka,
            Key::TxnProduce { .. } | Key::TxnIdempotentBatches { .. } | Key::TxnConsumeTransformProduce => {
                Section::Transactions
            }
            Key::RegistryRegister | Key::RegistryLookup { .. } | Key::RegistryProduce { .. } | Key::RegistryVerify => {
                Section::Registry
            }
            Key::SqlProduce | Key::SqlCatchUp | Key::SqlStreamsFromFirst | Key::SqlLive | Key::SqlPull { .. } => {
                Section::Sql
            }
            Key::ClusterAppend { .. } | Key::ClusterProduce { .. } | Key::ClusterRead => Section::Cluster,
            Key::AggregateLoad { .. } => Section::Aggregates,
            Key::ProjectionLoad | Key::ProjectionPart { .. } | Key::ProjectionCatchUp { .. } => Section::Projections,
            Key::RestartLoad | Key::Open { .. } => Section::Restart,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Section {
    Physical,
    Appends,
    Batches,
    Reads,
    Http,
    Kafka,
    Transactions,
    Registry,
    Sql,
    Cluster,
    Aggregates,
    Projections,
    Restart,
}

const SECTIONS: [(Section, &str); 13] = [
    (Section::Physical, "Physical limits (plain files on the data directory's disk)"),
    (Section::Appends, "Durable single-event appends (expected version checked, each writer on its own streams)"),
    (Section::Batches, "Durable batched appends (one new stream per batch)"),
    (Section::Reads, "Reads"),
    (Section::Http, "HTTP API (evident serve on 127.0.0.1) beside the embedded log, same events, back to back"),
    (
        Section::Kafka,
        "Kafka protocol (librdkafka against evident serve on 127.0.0.1) beside the embedded log, same run",
    ),
    (
        Section::Transactions,
        "Kafka transactions (librdkafka's transactional producer against evident serve and durable Apache Kafka, same run)",
    ),
    (
        Section::Registry,
        "Schema registry (evident serve beside Apicurio Registry 3.3.3; validation at produce; verify=stored in process)",
    ),
    (
        Section::Sql,
        "SQL views: seed 000's order_summary (evident serve beside Kafka Streams on Apache Kafka, same events, same run)",
    ),
    (
        Section::Cluster,
        "The library on a three-node Apache Kafka (KafkaBackend) beside librdkafka on the same cluster and the embedded backend, same run",
    ),
    (Section::Aggregates, "Aggregate loads through the library (Repository on the embedded backend)"),
    (Section::Projections, "Projection catch-up through the library (embedded log to a SQL read model, checkpoint in the same transaction)"),
    (Section::Restart, "Restart"),
];

/// One result row.
#[derive(Debug, Clone)]
pub struct Measurement {
    /// Who.
    pub system: System,
    /// What.
    pub key: Key,
    /// Human description of the workload.
    pub workload: String,
    /// The headline figure.
    pub rate: f64,
    /// Its unit (`events/s`, `syncs/s`, `s`, ...).
    pub unit: &'static str,
    /// Bytes written to the log/WAL (or read), per second, if known.
    pub mb_per_s: Option<f64>,
    /// Median latency of one operation.
    pub p50: Option<Duration>,
    /// 99th percentile latency of one operation.
    pub p99: Option<Duration>,
    /// Anything else worth a column.
    pub note: String,
}

impl Measurement {
    /// A row with only the headline figure.
    pub fn new(system: System, key: Key, workload: impl Into<String>, rate: f64, unit: &'static str) -> Self {
        Self {
            system,
            key,
            workload: workload.into(),
            rate,
            unit,
            mb_per_s: None,
            p50: None,
            p99: None,
            note: String::new(),
        }
    }

    /// Adds latency percentiles.
    pub fn latency(mut self, p50: Duration, p99: Duration) -> Self {
        self.p50 = Some(p50);
        self.p99 = Some(p99);
        self
    }

    /// Adds a bandwidth.
    pub fn mb(mut self, mb_per_s: f64) -> Self {
        self.mb_per_s = Some(mb_per_s);
        self
    }

    /// Adds a note.
    pub fn note(mut self, note: impl Into<String>) -> Self {
        self.note = note.into();
        self
    }
}

/// Formats a number with thousands separators (`1234567.8` -> `1,234,568`), or with
/// significant decimals when small.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        return "-".into();
    }
    if v.abs() < 10.0 {
        return format!("{v:.2}");
    }
    if v.abs() < 100.0 {
        return format!("{v:.1}");
    }
    let n = v.round() as i64;
    let s = n.unsigned_abs().to_string();
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i).is_multiple_of(3) {
            out.push(',');
        }
        out.push(c);
    }
    if n < 0 {
        out.insert(0, '-');
    }
    out
}

/// Formats a duration in the most readable unit.
pub fn dur(d: Duration) -> String {
    let s = d.as_secs_f64();
    if s >= 1.0 {
        format!("{s:.2} s")
    } else if s >= 0.01 {
        format!("{:.1} ms", s * 1e3)
    } else if s >= 0.001 {
        format!("{:.2} ms", s * 1e3)
    } else {
        format!("{:.0} µs", s * 1e6)
    }
}

/// Prints a Markdown table with aligned columns.
pub fn print_table(header: &[&str], rows: &[Vec<String>]) {
    let mut widths: Vec<usize> = header.iter().map(|h| h.chars().count()).collect();
    for row in rows {
        for (i, cell) in row.iter().enumerate() {
            widths[i] = widths[i].max(cell.chars().count());
        }
    }
    let line = |cells: Vec<String>| {
        let padded: Vec<String> = cells.iter().enumerate().map(|(i, c)| format!("{c:<w$}", w = widths[i])).collect();
        println!("| {} |", padded.join(" | "));
    };
    line(header.iter().map(|h| h.to_string()).collect());
    println!("|{}|", widths.iter().map(|w| "-".repeat(w + 2)).collect::<Vec<_>>().join("|"));
    for row in rows {
        line(row.clone());
    }
}

/// All results of a run.
#[derive(Debug, Default)]
pub struct Report {
    rows: Vec<Measurement>,
    /// Events in the restart data set (for the open-time target's wording).
    pub restart_events: u64,
    /// Events in the read data set.
    pub replay_events: u64,
}

/// How a ratio compares with its target.
#[derive(Clone, Copy)]
enum Target {
    AtLeast(f64),
    AtMost(f64),
    /// A latency in milliseconds, at most this.
    AtMostMs(f64),
    None,
    /// A time in seconds, without a target.
    Seconds,
}

impl Report {
    /// An empty report for data sets of these sizes.
    pub fn new(replay_events: u64, restart_events: u64) -> Self {
        Self { rows: Vec::new(), restart_events, replay_events }
    }

    /// Records a result and prints it at once (so a long run shows progress).
    pub fn add(&mut self, m: Measurement) {
        let lat = match (m.p50, m.p99) {
            (Some(a), Some(b)) => format!(", p50 {} p99 {}", dur(a), dur(b)),
            _ => String::new(),
        };
        let mb = m.mb_per_s.map_or(String::new(), |v| format!(", {} MB/s", num(v)));
        let note = if m.note.is_empty() { String::new() } else { format!(" [{}]", m.note) };
        eprintln!("  {:<10} {}: {} {}{mb}{lat}{note}", m.system.to_string(), m.workload, num(m.rate), m.unit);
        self.rows.push(m);
    }

    /// Every result, in the order measured.
    pub fn rows(&self) -> &[Measurement] {
        &self.rows
    }

    /// The result of `system` for `key`, if measured.
    pub fn get(&self, system: System, key: Key) -> Option<&Measurement> {
        self.rows.iter().rev().find(|m| m.system == system && m.key == key)
    }

    /// Describes the flush regime from the raw `fdatasync` runs. A regime is judged by the
    /// rate (the mean), not the median: a mixed period has a quiet median and a noisy p99.
    pub fn regime(&self) -> String {
        let label = |rate: f64| {
            if rate >= 2000.0 {
                "quiet"
            } else if rate <= 500.0 {
                "noisy"
            } else {
                "mixed"
            }
        };
        let describe = |m: &Measurement| {
            format!(
                "{} ({} syncs/s, p50 {}, p99 {})",
                label(m.rate),
                num(m.rate),
                m.p50.map_or("-".into(), dur),
                m.p99.map_or("-".into(), dur)
            )
        };
        let before = self.get(System::Disk, Key::SyncOverwrite);
        let after = self.get(System::Disk, Key::SyncOverwriteAfter);
        match (before, after) {
            (Some(a), Some(b)) if label(a.rate) == label(b.rate) => format!(
                "{} throughout: raw 4 KiB write+fdatasync before the write workloads {}, after them {}",
                label(a.rate),
                describe(a),
                describe(b)
            ),
            (Some(a), Some(b)) => format!(
                "CHANGED during the run: raw 4 KiB write+fdatasync before the write workloads {}, after them {}; ratios of append figures taken minutes apart are unreliable (the interleaved single-writer ratio is not affected)",
                describe(a),
                describe(b)
            ),
            (Some(a), None) => format!("raw 4 KiB write+fdatasync {}", describe(a)),
            _ => "unknown (physical phase not run)".into(),
        }
    }

    /// Prints every section's table.
    pub fn print_tables(&self) {
        for (section, title) in SECTIONS {
            let rows: Vec<Vec<String>> = self
                .rows
                .iter()
                .filter(|m| m.key.section() == section)
                .map(|m| {
                    vec![
                        m.workload.clone(),
                        m.system.to_string(),
                        format!("{} {}", num(m.rate), m.unit),
                        m.mb_per_s.map_or("".into(), num),
                        m.p50.map_or("".into(), dur),
                        m.p99.map_or("".into(), dur),
                        m.note.clone(),
                    ]
                })
                .collect();
            if rows.is_empty() {
                continue;
            }
            println!("\n### {title}\n");
            print_table(&["workload", "system", "rate", "MB/s", "p50", "p99", "notes"], &rows);
        }
    }

    /// Prints the ratios and the targets.
    pub fn print_ratios(&self) {
        let mut rows: Vec<Vec<String>> = Vec::new();
        let mut push = |what: String, ratio: Option<f64>, target: Target| {
            let (t, verdict) = match (&target, ratio) {
                (Target::AtLeast(t), Some(r)) => {
                    (format!(">= {}", ratio_text(*t)), if r >= *t { "met" } else { "MISSED" })
                }
                (Target::AtMost(t), Some(r)) => (format!("< {} s", num(*t)), if r < *t { "met" } else { "MISSED" }),
                (Target::AtMostMs(t), Some(r)) => {
                    (format!("<= {} ms", num(*t)), if r <= *t { "met" } else { "MISSED" })
                }
                (Target::AtLeast(t), None) => (format!(">= {}", ratio_text(*t)), "not measured"),
                (Target::AtMost(t), None) => (format!("< {} s", num(*t)), "not measured"),
                (Target::AtMostMs(t), None) => (format!("<= {} ms", num(*t)), "not measured"),
                (Target::None | Target::Seconds, _) => (String::new(), ""),
            };
            let shown = match (&target, ratio) {
                (_, None) => "-".to_string(),
                (Target::AtMost(_) | Target::Seconds, Some(r)) => format!("{r:.2} s"),
                (Target::AtMostMs(_), Some(r)) => format!("{r:.3} ms"),
                (_, Some(r)) => ratio_text(r),
            };
            rows.push(vec![what, shown, t, verdict.to_string()]);
        };
        let rate = |s: System, k: Key| self.get(s, k).map(|m| m.rate);
        let mbs = |s: System, k: Key| self.get(s, k).and_then(|m| m.mb_per_s);
        let div = |a: Option<f64>, b: Option<f64>| match (a, b) {
            (Some(a), Some(b)) if b > 0.0 => Some(a / b),
            _ => None,
        };
        let ev = System::Evident;
        let pg = System::Postgres;
        let sq = System::Sqlite;
        let a = |w| Key::Append { writers: w };

        // Physical limits.
        push(
            "evident 1 writer / raw 4 KiB write+fdatasync rate (pre-written file), interleaved rounds".into(),
            rate(ev, Key::Paired { grow: false }),
            Target::AtLeast(0.8),
        );
        push(
            "evident 1 writer / raw 4 KiB write+fdatasync rate (growing file), interleaved rounds".into(),
            rate(ev, Key::Paired { grow: true }),
            Target::None,
        );
        push(
            "evident 1 writer / raw 4 KiB write+fdatasync rate (pre-written file), separate runs".into(),
            div(rate(ev, a(1)), rate(System::Disk, Key::SyncOverwrite)),
            Target::None,
        );
        for writers in [1, 4] {
            for kafka in [false, true] {
                let k = Key::Batch { size: 1000, writers, kafka };
                if self.get(ev, k).is_none() {
                    continue;
                }
                push(
                    format!(
                        "evident batch-1000 ({}, {writers} writer{}) journal MB/s / synced sequential MB/s (1 MiB + fdatasync)",
                        if kafka { "Kafka batch" } else { "append_events" },
                        if writers == 1 { "" } else { "s" }
                    ),
                    div(mbs(ev, k), mbs(System::Disk, Key::SeqWrite1M)),
                    Target::AtLeast(0.5),
                );
            }
        }
        // Scaling.
        push(
            "evident 64 writers / evident 1 writer".into(),
            div(rate(ev, a(64)), rate(ev, a(1))),
            Target::AtLeast(20.0),
        );
        push("evident 8 writers / evident 1 writer".into(), div(rate(ev, a(8)), rate(ev, a(1))), Target::None);
        // Peers: appends.
        for (peer, writers) in [(pg, [1, 8, 64].as_slice()), (sq, [1, 8].as_slice())] {
            for &w in writers {
                let target = if peer == pg && w == 64 { Target::AtLeast(10.0) } else { Target::None };
                push(
                    format!("evident / {peer}: single-event appends, {w} writer(s)"),
                    div(rate(ev, a(w)), rate(peer, a(w))),
                    target,
                );
            }
        }
        for peer in [pg, sq] {
            for (size, writers) in [(100, 1), (1000, 1), (1000, 4)] {
                let k = Key::Batch { size, writers, kafka: false };
                if self.get(peer, k).is_none() {
                    continue;
                }
                push(
                    format!("evident / {peer}: batches of {size}, {writers} writer(s), events/s"),
                    div(rate(ev, k), rate(peer, k)),
                    Target::None,
                );
            }
        }
        // Reads.
        push(
            format!(
                "evident replay, read_partition + decode every record ({} events): events/s",
                num(self.replay_events as f64)
            ),
            rate(ev, Key::ScanPartition).map(|r| r / 5_000_000.0),
            Target::AtLeast(1.0),
        );
        push(
            "evident replay, read_all: events/s".into(),
            rate(ev, Key::ScanAll).map(|r| r / 5_000_000.0),
            Target::AtLeast(1.0),
        );
        for peer in [pg, sq] {
            let target = |t| if peer == pg { Target::AtLeast(t) } else { Target::None };
            push(
                format!("evident read_partition replay / {peer} full ordered scan"),
                div(rate(ev, Key::ScanPartition), rate(peer, Key::ScanAll)),
                target(20.0),
            );
            push(
                format!("evident read_all replay / {peer} full ordered scan"),
                div(rate(ev, Key::ScanAll), rate(peer, Key::ScanAll)),
                target(20.0),
            );
            for (k, what) in [(Key::StreamContig, "contiguous"), (Key::StreamScattered, "scattered")] {
                let lat = |s| self.get(s, k).and_then(|m| m.p50).map(|d| d.as_secs_f64());
                push(
                    format!("1,000-event stream read ({what}), {peer} p50 latency / evident p50 latency"),
                    div(lat(peer), lat(ev)),
                    target(20.0),
                );
            }
        }
        // HTTP API.
        let http = System::EvidentHttp;
        for clients in [1, 64] {
            let k = Key::HttpAppendPaired { clients };
            if self.get(http, k).is_none() {
                continue;
            }
            push(
                format!(
                    "evident HTTP / embedded: single-event appends, {clients} client(s), events/s, interleaved rounds"
                ),
                rate(http, k),
                Target::None,
            );
        }
        if self.get(http, Key::HttpRead).is_some() {
            push(
                "evident HTTP / embedded: 1,000-event stream read (JSON decoded by the client), reads/s".into(),
                div(rate(http, Key::HttpRead), rate(ev, Key::HttpRead)),
                Target::None,
            );
            let lat = |s| self.get(s, Key::HttpRead).and_then(|m| m.p50).map(|d| d.as_secs_f64());
            push(
                "1,000-event stream read, evident HTTP p50 latency / embedded p50 latency".into(),
                div(lat(http), lat(ev)),
                Target::None,
            );
        }
        if self.get(http, Key::HttpReadNdjson).is_some() {
            push(
                "evident HTTP NDJSON / embedded: 1,000-event stream read (each line decoded by the client), reads/s"
                    .into(),
                div(rate(http, Key::HttpReadNdjson), rate(ev, Key::HttpRead)),
                Target::None,
            );
        }
        // Kafka protocol.
        let kafka = System::EvidentKafka;
        let produce1 = Key::KafkaProduce { partitions: 1 };
        if self.get(kafka, produce1).is_some() {
            let same = Key::KafkaEmbeddedBatch { matched: true };
            let fixed = Key::KafkaEmbeddedBatch { matched: false };
            push(
                "evident Kafka produce (librdkafka, acks=all, idempotent) / embedded append_batch, batches as large as librdkafka's, 200-byte records, records/s".into(),
                div(rate(kafka, produce1), rate(ev, same)),
                Target::AtLeast(0.5),
            );
            push(
                "evident Kafka produce / embedded append_batch of 1,000-record batches, 200-byte records, records/s"
                    .into(),
                div(rate(kafka, produce1), rate(ev, fixed)),
                Target::None,
            );
        }
        if let Some(m) = self.get(kafka, Key::KafkaConsume) {
            push(
                format!("evident Kafka consume from offset 0 ({}): records/s / 1,000,000", m.workload),
                Some(m.rate / 1_000_000.0),
                Target::AtLeast(1.0),
            );
        }
        for (k, what) in [
            (produce1, "produce"),
            (Key::KafkaProduceOne, "produce one record at a time"),
            (Key::KafkaConsume, "consume"),
        ] {
            if self.get(System::Tansu, k).is_some() {
                push(
                    format!("evident Kafka / Tansu: {what}, records/s"),
                    div(rate(kafka, k), rate(System::Tansu, k)),
                    Target::None,
                );
            }
        }
        // Apache Kafka itself (issue 12's targets): produce >= 1.5x durable Kafka and >= 0.5x
        // Kafka's defaults, one-at-a-time p99 <= durable Kafka's, consume >= 1.0x.
        let (durable, default) = (System::KafkaDurable, System::KafkaDefault);
        for (peer, produce_target) in [(durable, 1.5), (default, 0.5)] {
            for k in [produce1, Key::KafkaProduce { partitions: 8 }, Key::KafkaPerfTest] {
                if let (Some(m), Some(_)) = (self.get(kafka, k), self.get(peer, k)) {
                    push(
                        format!("evident Kafka / {peer}: {}, records/s", m.workload),
                        div(rate(kafka, k), rate(peer, k)),
                        if k == Key::KafkaPerfTest { Target::None } else { Target::AtLeast(produce_target) },
                    );
                }
            }
            if self.get(peer, Key::KafkaConsume).is_some() {
                push(
                    format!("evident Kafka / {peer}: consume from offset 0, records/s"),
                    div(rate(kafka, Key::KafkaConsume), rate(peer, Key::KafkaConsume)),
                    Target::AtLeast(1.0),
                );
            }
            let p99 = |s| self.get(s, Key::KafkaProduceOne).and_then(|m| m.p99).map(|d| d.as_secs_f64());
            if p99(peer).is_some() {
                push(
                    format!("one record at a time: {peer} p99 / evident Kafka p99"),
                    div(p99(peer), p99(kafka)),
                    if peer == durable { Target::AtLeast(1.0) } else { Target::None },
                );
            }
        }
        // Kafka transactions (issue 14): transactional throughput >= 1.5x durable Kafka's at
        // 100 records per transaction.
        let txn = |records, producers| Key::TxnProduce { records, producers };
        let mut txn_rows: Vec<Key> = crate::transactions::SIZES.iter().map(|&size| txn(size, 1)).collect();
        txn_rows.push(txn(crate::transactions::PER_TXN, crate::transactions::PRODUCERS));
        txn_rows.extend(crate::transactions::SIZES.iter().map(|&records| Key::TxnIdempotentBatches { records }));
        txn_rows.push(Key::TxnConsumeTransformProduce);
        for peer in [durable, System::Tansu] {
            for &k in &txn_rows {
                if let (Some(m), Some(_)) = (self.get(kafka, k), self.get(peer, k)) {
                    let target = if k == txn(100, 1) && peer == durable { Target::AtLeast(1.5) } else { Target::None };
                    push(
                        format!("evident Kafka / {peer}: {}, records/s", m.workload),
                        div(rate(kafka, k), rate(peer, k)),
                        target,
                    );
                }
            }
        }
        for system in [kafka, durable] {
            for size in crate::transactions::SIZES {
                let plain = Key::TxnIdempotentBatches { records: size };
                if let (Some(_), Some(_)) = (self.get(system, txn(size, 1)), self.get(system, plain)) {
                    push(
                        format!("{system}: transactions of {size} / idempotent batches of {size} (what a transaction costs), records/s"),
                        div(rate(system, txn(size, 1)), rate(system, plain)),
                        Target::None,
                    );
                }
            }
        }
        // Schema registry (issue 13).
        let (reg, apicurio) = (System::EvidentRegistry, System::Apicurio);
        if let Some(m) = self.get(apicurio, Key::RegistryRegister) {
            push(
                format!("evident registry / Apicurio: {}, registrations/s", m.workload),
                div(rate(reg, Key::RegistryRegister), rate(apicurio, Key::RegistryRegister)),
                Target::None,
            );
        }
        for clients in [1, 8] {
            let k = Key::RegistryLookup { clients };
            if self.get(apicurio, k).is_some() {
                push(
                    format!("evident registry / Apicurio: GET /schemas/ids/{{id}}, {clients} client(s), requests/s"),
                    div(rate(reg, k), rate(apicurio, k)),
                    Target::None,
                );
            }
        }
        let validated = Key::RegistryProduce { validation: true };
        if self.get(kafka, validated).is_some() {
            push(
                "evident Kafka produce, wire-format Avro records: topic with confluent.value.schema.validation / without, records/s".into(),
                div(rate(kafka, validated), rate(kafka, Key::RegistryProduce { validation: false })),
                Target::AtLeast(0.8),
            );
        }
        // SQL views (issue 15): the seed's view >= 500,000 events/s on one core, >= 5x Kafka
        // Streams' throughput, pull query p99 <= 1 ms.
        let evsql = System::EvidentSql;
        if let Some(m) = self.get(evsql, Key::SqlCatchUp) {
            push(format!("{}: events/s / 500,000", m.workload), Some(m.rate / 500_000.0), Target::AtLeast(1.0));
        }
        for peer in [durable, default] {
            if let (Some(_), Some(k)) = (self.get(evsql, Key::SqlCatchUp), self.get(peer, Key::SqlCatchUp)) {
                push(
                    format!("evident SQL catch-up / Kafka Streams on {peer} (from start()), seed 000's view, events/s"),
                    div(rate(evsql, Key::SqlCatchUp), Some(k.rate)),
                    Target::AtLeast(5.0),
                );
            }
            if let (Some(_), Some(k)) = (self.get(evsql, Key::SqlCatchUp), self.get(peer, Key::SqlStreamsFromFirst)) {
                push(
                    format!("evident SQL catch-up / Kafka Streams on {peer} from its first record, seed 000's view, events/s"),
                    div(rate(evsql, Key::SqlCatchUp), Some(k.rate)),
                    Target::None,
                );
            }
        }
        if let Some(m) = self.get(evsql, Key::SqlLive) {
            push(format!("{}: events/s / 500,000", m.workload), Some(m.rate / 500_000.0), Target::None);
        }
        for range in [false, true] {
            if let Some(m) = self.get(evsql, Key::SqlPull { range }) {
                push(format!("{}: p99", m.workload), m.p99.map(|d| d.as_secs_f64() * 1e3), Target::AtMostMs(1.0));
            }
        }
        // The library on a Kafka cluster (issue 16): no target, the cost of the library's
        // guarantees over the cluster's own durable single-record write, and of the cluster over
        // the embedded store.
        let (kb, raw) = (System::KafkaBackend, System::KafkaCluster);
        let p50 = |s, k| self.get(s, k).and_then(|m: &Measurement| m.p50).map(|d| d.as_secs_f64());
        for writers in [1, 8] {
            let append = Key::ClusterAppend { writers, instances: 1 };
            if self.get(kb, append).is_none() {
                continue;
            }
            for (how, what) in [
                (RawProduce::Transaction, "raw transactional produce (1 record per transaction)"),
                (RawProduce::Idempotent, "raw idempotent produce (1 record, acks=all, awaited)"),
            ] {
                let k = Key::ClusterProduce { writers, how };
                if self.get(raw, k).is_some() {
                    push(
                        format!("KafkaBackend / {what}, {writers} writer(s), appends/s"),
                        div(rate(kb, append), rate(raw, k)),
                        Target::None,
                    );
                    push(
                        format!("KafkaBackend / {what}, {writers} writer(s), p50 latency"),
                        div(p50(kb, append), p50(raw, k)),
                        Target::None,
                    );
                }
            }
            if self.get(ev, append).is_some() {
                push(
                    format!("KafkaBackend / embedded backend (fsync always), {writers} writer(s), appends/s"),
                    div(rate(kb, append), rate(ev, append)),
                    Target::None,
                );
                push(
                    format!("KafkaBackend / embedded backend (fsync always), {writers} writer(s), p50 latency"),
                    div(p50(kb, append), p50(ev, append)),
                    Target::None,
                );
            }
        }
        for instances in [2, 3] {
            let (one, many) =
                (Key::ClusterAppend { writers: 8, instances: 1 }, Key::ClusterAppend { writers: 8, instances });
            if self.get(kb, many).is_some() {
                push(
                    format!("KafkaBackend, 8 writers: {instances} instances / 1 instance, appends/s"),
                    div(rate(kb, many), rate(kb, one)),
                    Target::None,
                );
            }
        }
        let serve = System::ServeOnKafka;
        for nodes in [1, 2, 3] {
            let (lib, http) =
                (Key::ClusterAppend { writers: 8, instances: 1 }, Key::ClusterAppend { writers: 8, instances: nodes });
            if self.get(serve, http).is_some() {
                push(
                    format!("evident serve on the cluster, 8 HTTP writers, {nodes} node(s) / KafkaBackend 1 instance, appends/s"),
                    div(rate(serve, http), rate(kb, lib)),
                    Target::None,
                );
            }
        }
        if self.get(kb, Key::ClusterRead).is_some() {
            push(
                "stream read of 100 events: KafkaBackend p50 / embedded p50".into(),
                div(p50(kb, Key::ClusterRead), p50(ev, Key::ClusterRead)),
                Target::None,
            );
        }
        // The library: aggregate loads.
        let load_p50 = |snapshot, tail| {
            self.get(ev, Key::AggregateLoad { snapshot, tail }).and_then(|m| m.p50).map(|d| d.as_secs_f64())
        };
        if self.get(ev, Key::AggregateLoad { snapshot: false, tail: 0 }).is_some() {
            let n = num(crate::aggregates::EVENTS as f64);
            push(
                format!("aggregate of {n} events: full replay p50 / snapshot load p50 (snapshot at the last version)"),
                div(load_p50(false, 0), load_p50(true, 0)),
                Target::AtLeast(50.0),
            );
            let tail = crate::aggregates::TAIL;
            push(
                format!("aggregate of {n} events: full replay p50 / snapshot + {tail}-event tail p50"),
                div(load_p50(false, 0), load_p50(true, tail)),
                Target::None,
            );
        }
        // The library: projections.
        let catch_up = |sink, batch| rate(ev, Key::ProjectionCatchUp { sink, batch, per_event: false });
        for batch in [1000, 5000] {
            for (sink, name) in [(ProjectionSink::Sqlite, "SQLite"), (ProjectionSink::Postgres, "PostgreSQL")] {
                let Some(r) = catch_up(sink, batch) else {
                    continue;
                };
                // Issue 10's targets: SQLite >= 200,000 events/s, PostgreSQL >= 60,000 (pages of 1,000).
                let target = match (sink, batch) {
                    (ProjectionSink::Sqlite, 1000) => Target::AtLeast(2.0),
                    (ProjectionSink::Postgres, 1000) => Target::AtLeast(0.6),
                    _ => Target::None,
                };
                push(
                    format!("projection catch-up into {name}, pages of {}: events/s / 100,000", num(batch as f64)),
                    Some(r / 100_000.0),
                    target,
                );
            }
            if let (Some(_), Some(_)) =
                (catch_up(ProjectionSink::Sqlite, batch), catch_up(ProjectionSink::Postgres, batch))
            {
                push(
                    format!("projection catch-up, pages of {}: SQLite / PostgreSQL events/s", num(batch as f64)),
                    div(catch_up(ProjectionSink::Sqlite, batch), catch_up(ProjectionSink::Postgres, batch)),
                    Target::None,
                );
            }
        }
        // Restart.
        for (cold, checkpoint) in [(false, true), (true, true), (true, false)] {
            let Some(m) = self.get(ev, Key::Open { cold, checkpoint }) else {
                continue;
            };
            push(
                format!(
                    "open of {} events ({}, {})",
                    num(self.restart_events as f64),
                    if cold { "page cache dropped" } else { "page cache warm" },
                    if checkpoint { "index checkpoint" } else { "checkpoint removed: full journal replay" }
                ),
                Some(m.rate),
                if checkpoint { Target::AtMost(2.0) } else { Target::Seconds },
            );
        }
        println!("\n### Ratios and targets\n");
        println!("Flush regime: {}\n", self.regime());
        if self.restart_events != 10_000_000 {
            println!(
                "Note: the open-time target is defined for 10,000,000 events; this run opened {}.\n",
                num(self.restart_events as f64)
            );
        }
        print_table(&["comparison", "measured", "target", "verdict"], &rows);
    }
}

fn ratio_text(r: f64) -> String {
    if r >= 100.0 {
        format!("{}x", num(r))
    } else if r >= 10.0 {
        format!("{r:.1}x")
    } else if r >= 0.1 || r <= 0.0 {
        format!("{r:.2}x")
    } else {
        // Three significant digits (0.00104x): the cluster phase's ratios to the embedded
        // backend are that small.
        let digits = (2.0 - r.log10().floor()).clamp(2.0, 12.0) as usize;
        format!("{r:.digits$}x")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_get_separators() {
        assert_eq!(num(1_234_567.4), "1,234,567");
        assert_eq!(num(999.0), "999");
        assert_eq!(num(12.345), "12.3");
        assert_eq!(num(1.234), "1.23");
        assert_eq!(num(-1234.0), "-1,234");
    }

    #[test]
    fn small_ratios_keep_three_significant_digits() {
        assert_eq!(ratio_text(0.86), "0.86x");
        assert_eq!(ratio_text(0.0418), "0.0418x");
        assert_eq!(ratio_text(0.00104), "0.00104x");
        assert_eq!(ratio_text(12.34), "12.3x");
    }

    #[test]
    fn durations_pick_a_unit() {
        assert_eq!(dur(Duration::from_micros(190)), "190 µs");
        assert_eq!(dur(Duration::from_micros(4010)), "4.01 ms");
        assert_eq!(dur(Duration::from_millis(25)), "25.0 ms");
        assert_eq!(dur(Duration::from_millis(1500)), "1.50 s");
    }

    #[test]
    fn regime_follows_the_raw_sync_rate() {
        let mut r = Report::default();
        let row = |k, rate| {
            Measurement::new(System::Disk, k, "x", rate, "syncs/s")
                .latency(Duration::from_micros(150), Duration::from_millis(9))
        };
        r.add(row(Key::SyncOverwrite, 5000.0));
        r.add(row(Key::SyncOverwriteAfter, 4000.0));
        assert!(r.regime().starts_with("quiet"), "{}", r.regime());
        r.add(row(Key::SyncOverwriteAfter, 300.0));
        assert!(r.regime().starts_with("CHANGED"), "{}", r.regime());
    }
}
