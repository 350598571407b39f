//! Command-line flags and the plan they resolve to (durations, data-set sizes, where data goes).

use std::path::PathBuf;
use std::time::Duration;

use clap::{Parser, Subcommand, ValueEnum};

/// The fewest input records of consume-transform-produce (two transactions of 100 and more).
const PER_TXN_MIN: u64 = 1000;
/// The fewest events of the SQL phase: one per order at least (its range query needs totals).
const ORDERS_MIN: u64 = 1000;

/// Connection string of the cluster `scripts/bench.sh` starts.
pub const DEFAULT_PG: &str = "host=127.0.0.1 port=5499 user=evident_bench password=evident_bench dbname=evident_bench";

/// Measures evident, the disk's physical limits, PostgreSQL and SQLite side by side on this
/// machine, and prints the ratios next to evident's performance targets.
#[derive(Debug, Parser)]
#[command(name = "evident-bench", version, about, long_about = None)]
pub struct Cli {
    /// Hidden helper subcommands (the restart probe re-executes the binary).
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Small data sets and 1-second workloads: a smoke test of the whole run.
    #[arg(long)]
    pub quick: bool,
    /// Seconds each timed workload runs (default 5, or 1 with --quick).
    #[arg(long, value_name = "SECS")]
    pub duration_secs: Option<f64>,
    /// Do not measure PostgreSQL.
    #[arg(long)]
    pub skip_postgres: bool,
    /// Do not measure SQLite.
    #[arg(long)]
    pub skip_sqlite: bool,
    /// Do not run the restart workload (loading its store is the longest step).
    #[arg(long)]
    pub skip_restart: bool,
    /// Do not measure Apache Kafka in the Kafka phase (by default it is started from Maven's
    /// jars with scripts/kafka-ref.sh, which fetches them on its first run).
    #[arg(long)]
    pub skip_apache_kafka: bool,
    /// Where the stores and test files are created (default: the workspace's target/ directory,
    /// or /var/tmp). Must be on the disk you want measured; a fresh subdirectory is used and
    /// removed at the end.
    #[arg(long, value_name = "DIR")]
    pub data_dir: Option<PathBuf>,
    /// Events in the restart store (default 10,000,000, or 200,000 with --quick).
    #[arg(long, value_name = "N")]
    pub restart_events: Option<u64>,
    /// Events in the read/replay data set (default 1,000,000, or 100,000 with --quick).
    #[arg(long, value_name = "N")]
    pub replay_events: Option<u64>,
    /// Records the Kafka workloads produce and then consume (default 1,000,000, or 100,000
    /// with --quick).
    #[arg(long, value_name = "N")]
    pub kafka_records: Option<u64>,
    /// Transactions phase: records loaded into consume-transform-produce's input topic
    /// (default 500,000, or 50,000 with --quick); the workload stops early if they run out.
    #[arg(long, value_name = "N")]
    pub txn_input_records: Option<u64>,
    /// Registry phase: distinct Avro schemas registered on each registry (default 1,000, or
    /// 100 with --quick).
    #[arg(long, value_name = "N")]
    pub registry_schemas: Option<usize>,
    /// Registry phase: wire-format records produced to each topic, with and without schema
    /// validation (default 2,000,000, or 50,000 with --quick): at ~900,000 records/s, long
    /// enough that a second of noise on a shared machine does not decide the ratio.
    #[arg(long, value_name = "N")]
    pub registry_records: Option<u64>,
    /// Registry phase: events in the log verify=stored reads (default 1,000,000, or 100,000
    /// with --quick).
    #[arg(long, value_name = "N")]
    pub verify_events: Option<u64>,
    /// SQL phase: order events the views are built over (default 1,000,000, or 100,000 with
    /// --quick); as many again are produced for the live maintenance.
    #[arg(long, value_name = "N")]
    pub sql_events: Option<u64>,
    /// libpq-style connection string of the PostgreSQL server to measure.
    #[arg(long, value_name = "CONNINFO", default_value = DEFAULT_PG)]
    pub pg: String,
    /// Run only these phases (comma-separated); the default runs all of them. `http` and `kafka`
    /// need the `evident` binary next to this one (cargo build --release -p evident-server);
    /// `projections` measures PostgreSQL too (skipped, with a note, when it is unreachable).
    #[arg(long, value_enum, value_delimiter = ',', value_name = "PHASES")]
    pub only: Vec<Phase>,
    /// Keep the data directory after the run.
    #[arg(long)]
    pub keep_data: bool,
    /// Save the run's figures to FILE (tab-separated), for a later `--compare`.
    #[arg(long, value_name = "FILE")]
    pub save: Option<PathBuf>,
    /// Print the run's figures beside those saved in FILE (before/after, change in %, changes
    /// for the worse beyond 10% marked REGRESSED).
    #[arg(long, value_name = "FILE")]
    pub compare: Option<PathBuf>,
}

/// The phases of a run, in the order they run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum Phase {
    /// Raw write + fdatasync rates and synced sequential bandwidth.
    Physical,
    /// Single-event appends.
    Appends,
    /// Batched appends.
    Batches,
    /// Replays, full scans and stream reads.
    Reads,
    /// The HTTP API (`evident serve`, started as a child process) beside the embedded log:
    /// appends with 1 and 64 clients, a 1,000-event stream read.
    Http,
    /// SSE fan-out: HTTP append throughput (1 client, then 8) with no subscriber and with 500
    /// subscribers reading every event, on one server in one run, and their ratio.
    #[value(name = "sse_fanout", alias = "sse-fanout")]
    SseFanout,
    /// The Kafka protocol (`evident serve`'s Kafka listener) with librdkafka: produce
    /// throughput and latency, consume throughput, beside the embedded log's batched appends;
    /// and Tansu when its binary is present.
    Kafka,
    /// Kafka transactions: librdkafka's transactional producer (10, 100 and 1,000 records per
    /// transaction, beside idempotent batches of the same sizes; 4 producers at 100) and
    /// consume-transform-produce, on evident and on durable Apache Kafka (and Tansu when its
    /// binary is present).
    Transactions,
    /// The schema registry: register latency and lookups by id on `evident serve`'s registry
    /// and on Apicurio Registry (scripts/registry-ref.sh), produce with schema validation on
    /// against off through the Kafka port, and `verify=stored` over an embedded log.
    Registry,
    /// SQL views (issue 15): seed 000's order_summary view on `evident serve` (catch-up of a
    /// new view, live maintenance, pull queries) beside the same aggregation in Kafka Streams on
    /// Apache Kafka.
    Sql,
    /// The library on a three-node Apache Kafka (issue 16; scripts/kafka-ref.sh --nodes 3):
    /// `KafkaBackend` single-event appends at an expected version (1 and 8 writers; 8 split
    /// between 2 and 3 instances) and 100-event stream reads, beside raw librdkafka produce on
    /// the same cluster (idempotent; one record per transaction) and the embedded backend.
    Cluster,
    /// The library's repository: an aggregate of 10,000 events loaded by full replay and from
    /// a snapshot (embedded backend).
    Aggregates,
    /// The library's projection runner: catch-up of a balances read model into SQLite and
    /// PostgreSQL from a pre-populated embedded log.
    Projections,
    /// Loading a large store and opening it in a fresh process.
    Restart,
}

/// Hidden subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Opens a store and prints its open time and memory (run by the restart workload).
    #[command(hide = true)]
    OpenProbe {
        /// The store's directory.
        #[arg(long)]
        dir: PathBuf,
    },
}

/// What a run will do.
#[derive(Debug, Clone)]
pub struct Plan {
    /// Length of each timed write workload.
    pub duration: Duration,
    /// Interleaved rounds of the single-writer-versus-raw-sync ratio, and their length.
    pub paired_rounds: (usize, Duration),
    /// Length of each stream-read workload.
    pub read_duration: Duration,
    /// Events in the read data set.
    pub replay_events: u64,
    /// Events in the restart store.
    pub restart_events: u64,
    /// Records the Kafka workloads produce and consume.
    pub kafka_records: u64,
    /// Full scans per system (the median is reported); also the runs of each projection
    /// catch-up.
    pub scan_repeats: usize,
    /// Full-replay loads of the 10,000-event aggregate (p50/p99 over them).
    pub aggregate_replays: usize,
    /// Snapshot loads of the aggregate, per variant.
    pub snapshot_loads: usize,
    /// Events in the projection phase's log.
    pub projection_events: u64,
    /// Records loaded into the consume-transform-produce workload's input topic.
    pub txn_input_records: u64,
    /// Registry phase: schemas registered, records produced per topic, events verified.
    pub registry_schemas: usize,
    /// See [`Plan::registry_schemas`].
    pub registry_records: u64,
    /// See [`Plan::registry_schemas`].
    pub verify_events: u64,
    /// Order events of the SQL phase.
    pub sql_events: u64,
    /// The data directory's parent.
    pub data_root: PathBuf,
    /// Phases to run.
    pub phases: Vec<Phase>,
    /// Whether the Kafka phase measures Apache Kafka too.
    pub apache_kafka: bool,
}

impl Plan {
    /// Whether `phase` runs.
    pub fn runs(&self, phase: Phase) -> bool {
        self.phases.contains(&phase)
    }
}

fn default_data_root() -> PathBuf {
    // The workspace's target/ directory when the binary was built from it, so the stores sit
    // on the same disk as the repository.
    let target = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target");
    match target.canonicalize() {
        Ok(t) if t.is_dir() => t.join("evident-bench"),
        _ => PathBuf::from("/var/tmp/evident-bench"),
    }
}

impl Cli {
    /// Resolves the flags.
    pub fn plan(&self) -> Plan {
        let secs = self.duration_secs.unwrap_or(if self.quick { 1.0 } else { 5.0 }).max(0.1);
        let duration = Duration::from_secs_f64(secs);
        Plan {
            duration,
            read_duration: duration.min(Duration::from_secs(3)),
            paired_rounds: if self.quick { (3, Duration::from_millis(300)) } else { (5, Duration::from_secs(1)) },
            replay_events: self.replay_events.unwrap_or(if self.quick { 100_000 } else { 1_000_000 }),
            restart_events: self.restart_events.unwrap_or(if self.quick { 200_000 } else { 10_000_000 }),
            kafka_records: self.kafka_records.unwrap_or(if self.quick { 100_000 } else { 1_000_000 }).max(2),
            scan_repeats: if self.quick { 1 } else { 3 },
            aggregate_replays: if self.quick { 10 } else { 50 },
            snapshot_loads: if self.quick { 100 } else { 1000 },
            projection_events: if self.quick { 50_000 } else { 200_000 },
            txn_input_records: self
                .txn_input_records
                .unwrap_or(if self.quick { 50_000 } else { 500_000 })
                .max(PER_TXN_MIN),
            registry_schemas: self.registry_schemas.unwrap_or(if self.quick { 100 } else { 1000 }).max(1),
            registry_records: self.registry_records.unwrap_or(if self.quick { 50_000 } else { 2_000_000 }).max(4),
            verify_events: self.verify_events.unwrap_or(if self.quick { 100_000 } else { 1_000_000 }).max(1),
            sql_events: self.sql_events.unwrap_or(if self.quick { 100_000 } else { 1_000_000 }).max(ORDERS_MIN),
            data_root: self.data_dir.clone().unwrap_or_else(default_data_root),
            apache_kafka: !self.skip_apache_kafka,
            phases: if self.only.is_empty() {
                Phase::value_variants().iter().copied().filter(|p| *p != Phase::Restart || !self.skip_restart).collect()
            } else {
                self.only.clone()
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quick_shrinks_everything_and_flags_win() {
        let cli = Cli::parse_from(["evident-bench", "--quick", "--restart-events", "5000"]);
        let plan = cli.plan();
        assert_eq!(plan.duration, Duration::from_secs(1));
        assert_eq!(plan.replay_events, 100_000);
        assert_eq!(plan.restart_events, 5000);
        let full = Cli::parse_from(["evident-bench"]).plan();
        assert_eq!(full.restart_events, 10_000_000);
        assert_eq!(full.duration, Duration::from_secs(5));
        assert!(full.runs(Phase::Restart) && full.runs(Phase::Physical));
        let some = Cli::parse_from(["evident-bench", "--only", "reads,restart"]).plan();
        assert!(some.runs(Phase::Reads) && some.runs(Phase::Restart) && !some.runs(Phase::Appends));
        assert!(!Cli::parse_from(["evident-bench", "--skip-restart"]).plan().runs(Phase::Restart));
        assert!(full.runs(Phase::Http), "the HTTP phase is in the default run");
        let http = Cli::parse_from(["evident-bench", "--quick", "--only", "http"]).plan();
        assert!(http.runs(Phase::Http) && !http.runs(Phase::Reads) && !http.runs(Phase::Physical));
        assert!(full.runs(Phase::Kafka), "the Kafka phase is in the default run");
        assert_eq!(full.kafka_records, 1_000_000);
        let kafka = Cli::parse_from(["evident-bench", "--quick", "--only", "kafka"]).plan();
        assert!(kafka.runs(Phase::Kafka) && !kafka.runs(Phase::Http));
        assert_eq!(kafka.kafka_records, 100_000);
        assert!(
            full.runs(Phase::Aggregates) && full.runs(Phase::Projections),
            "the library phases are in the default run"
        );
        assert_eq!((full.aggregate_replays, full.projection_events), (50, 200_000));
        let lib = Cli::parse_from(["evident-bench", "--only", "aggregates,projections"]).plan();
        assert!(lib.runs(Phase::Aggregates) && lib.runs(Phase::Projections) && !lib.runs(Phase::Reads));
        assert_eq!(lib.phases, [Phase::Aggregates, Phase::Projections]);
        assert!(full.runs(Phase::Registry), "the registry phase is in the default run");
        assert_eq!((full.registry_schemas, full.verify_events), (1000, 1_000_000));
        let reg = Cli::parse_from(["evident-bench", "--quick", "--only", "registry", "--verify-events", "5000"]).plan();
        assert_eq!(reg.phases, [Phase::Registry]);
        assert!(full.runs(Phase::Transactions), "the transactions phase is in the default run");
        let txn = Cli::parse_from(["evident-bench", "--quick", "--only", "transactions"]).plan();
        assert!(txn.runs(Phase::Transactions) && !txn.runs(Phase::Kafka));
        assert_eq!((full.txn_input_records, txn.txn_input_records), (500_000, 50_000));
        assert_eq!((reg.registry_schemas, reg.registry_records, reg.verify_events), (100, 50_000, 5000));
        assert!(full.runs(Phase::Sql), "the SQL phase is in the default run");
        let sql = Cli::parse_from(["evident-bench", "--quick", "--only", "sql"]).plan();
        assert_eq!(
            (sql.phases.as_slice(), full.sql_events, sql.sql_events),
            ([Phase::Sql].as_slice(), 1_000_000, 100_000)
        );
        assert!(full.runs(Phase::Cluster), "the cluster phase is in the default run");
        let cluster = Cli::parse_from(["evident-bench", "--only", "cluster", "--duration-secs", "2"]).plan();
        assert_eq!(
            (cluster.phases.as_slice(), cluster.duration),
            ([Phase::Cluster].as_slice(), Duration::from_secs(2))
        );
    }

    #[test]
    fn the_probe_subcommand_parses() {
        let cli = Cli::parse_from(["evident-bench", "open-probe", "--dir", "/x"]);
        assert!(matches!(cli.command, Some(Command::OpenProbe { .. })));
    }
}
