//! `evident-bench`: measures evident's storage engine, the disk's physical limits, PostgreSQL
//! and SQLite side by side, in one run on one machine, and prints the ratios next to the
//! performance targets. Run it through `scripts/bench.sh` (which starts a PostgreSQL cluster on
//! 127.0.0.1); `BENCHMARKS.md` explains every workload and holds the latest full results.
//!
//! Order of a run: physical limits, then each write workload on every system back to back (so
//! the ratios compare figures taken minutes apart at most: this machine's flush latency changes
//! regime within minutes), the raw sync rate again, the reads, the HTTP API beside the embedded
//! log, the Kafka protocol (librdkafka) beside the embedded log, Kafka transactions (beside
//! durable Apache Kafka), the schema registry (beside
//! Apicurio Registry; validation at produce; verify=stored), SQL views (seed 000's view beside
//! Kafka Streams), the library on a three-node Apache Kafka (`KafkaBackend` beside raw produce
//! on the same cluster and the embedded backend), the library's aggregate loads
//! (full replay against a snapshot) and projection catch-up (into SQLite and PostgreSQL), and
//! the restart last.

mod aggregates;
mod cli;
mod cluster;
mod compare;
mod driver;
mod evident;
mod http;
mod http_client;
mod kafka;
mod machine;
mod paired;
mod payload;
mod physical;
mod postgres;
mod projections;
mod registry;
mod replay;
mod report;
mod restart;
mod sql;
mod sqlite;
mod stats;
mod transactions;

use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{Context, Result};
use clap::Parser;

use crate::cli::{Cli, Command, Phase, Plan};
use crate::physical::Mode;
use crate::report::{Key, Measurement, Report};

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match &cli.command {
        Some(Command::OpenProbe { dir }) => restart::child_main(dir),
        None => run(&cli),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("evident-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

/// Runs the workloads, recording failures instead of stopping at the first one.
struct Runner {
    report: Report,
    failures: Vec<String>,
}

impl Runner {
    fn step(&mut self, what: &str, f: impl FnOnce() -> Result<Measurement>) {
        match f() {
            Ok(m) => self.report.add(m),
            Err(e) => {
                eprintln!("  FAILED {what}: {e:#}");
                self.failures.push(format!("{what}: {e:#}"));
            }
        }
    }

    fn step_opt(&mut self, what: &str, f: impl FnOnce() -> Result<Option<Measurement>>) {
        match f() {
            Ok(Some(m)) => self.report.add(m),
            Ok(None) => eprintln!("  skipped {what}: cannot drop the page cache (not root)"),
            Err(e) => {
                eprintln!("  FAILED {what}: {e:#}");
                self.failures.push(format!("{what}: {e:#}"));
            }
        }
    }
}

fn fresh_dir(parent: &Path, name: &str) -> Result<PathBuf> {
    let dir = parent.join(name);
    if dir.exists() {
        std::fs::remove_dir_all(&dir)?;
    }
    std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    Ok(dir)
}

fn phase(name: &str) {
    eprintln!("\n== {name} ({}; load average {})", machine::now_utc(), machine::load_average());
}

fn run(cli: &Cli) -> Result<()> {
    let plan = cli.plan();
    let run_dir = plan.data_root.join(format!("run-{}", std::process::id()));
    std::fs::create_dir_all(&run_dir).with_context(|| format!("creating the data directory {}", run_dir.display()))?;
    let result = run_in(cli, &plan, &run_dir);
    if !cli.keep_data {
        let _ = std::fs::remove_dir_all(&run_dir);
    }
    result
}

/// The SQL peers being measured (None: skipped).
struct Peers {
    pg: Option<postgres::Postgres>,
    sq: Option<sqlite::Sqlite>,
}

/// Single-event and batched appends, each workload on every system back to back.
fn write_phases(r: &mut Runner, plan: &Plan, peers: &Peers, dir: &Path, raw: &Path) -> Result<()> {
    let d = plan.duration;
    let writes = evident::Writes::open(dir)?;
    if plan.runs(Phase::Appends) && plan.runs(Phase::Physical) {
        phase("single writer against the raw sync rate, interleaved");
        let (rounds, round) = plan.paired_rounds;
        match paired::single_writer_vs_raw(raw, &writes, rounds, round) {
            Ok(rows) => rows.into_iter().for_each(|m| r.report.add(m)),
            Err(e) => {
                eprintln!("  FAILED interleaved rounds: {e:#}");
                r.failures.push(format!("interleaved rounds: {e:#}"));
            }
        }
    }
    if plan.runs(Phase::Appends) {
        phase("single-event appends");
        for w in [1usize, 8, 64] {
            r.step(&format!("evident append x{w}"), || writes.append_single(w, d));
            if let Some(pg) = &peers.pg {
                r.step(&format!("PostgreSQL append x{w}"), || pg.append_single(w, d));
            }
            if let Some(sq) = peers.sq.as_ref().filter(|_| w <= 8) {
                r.step(&format!("SQLite append x{w}"), || sq.append_single(w, d));
            }
        }
    }
    if plan.runs(Phase::Batches) {
        phase("batched appends");
        for size in [100usize, 1000] {
            r.step(&format!("evident batch {size}"), || writes.append_batches(size, 1, false, d));
            if size == 1000 {
                r.step("evident Kafka batch 1000", || writes.append_batches(size, 1, true, d));
                r.step("evident batch 1000 x4", || writes.append_batches(size, 4, false, d));
            }
            if let Some(pg) = &peers.pg {
                r.step(&format!("PostgreSQL batch {size}"), || pg.append_batches(size, 1, d));
                if size == 1000 {
                    r.step("PostgreSQL batch 1000 x4", || pg.append_batches(size, 4, d));
                }
            }
            if let Some(sq) = &peers.sq {
                r.step(&format!("SQLite batch {size}"), || sq.append_batches(size, d));
            }
        }
    }
    writes.close()
}

/// Replays, full scans and stream reads over the same data set on every system.
fn read_phase(r: &mut Runner, plan: &Plan, peers: &Peers, dir: &Path) -> Result<()> {
    phase("reads");
    let n = plan.replay_events;
    let rd = plan.read_duration;
    match replay::Reads::load(dir, n) {
        Ok((reads, load)) => {
            r.report.add(load);
            r.step("evident read_partition replay", || reads.replay_partition(plan.scan_repeats));
            r.step("evident read_all replay", || reads.replay_all(plan.scan_repeats));
            r.step("evident stream (contiguous)", || reads.read_stream(false, rd));
            r.step("evident stream (scattered)", || reads.read_stream(true, rd));
            reads.close()?;
        }
        Err(e) => {
            eprintln!("  FAILED evident read load: {e:#}");
            r.failures.push(format!("evident read load: {e:#}"));
        }
    }
    if let Some(pg) = &peers.pg {
        r.step("PostgreSQL load", || pg.load_reads(n));
        r.step("PostgreSQL stream (contiguous)", || pg.read_stream(false, n, rd));
        r.step("PostgreSQL stream (scattered)", || pg.read_stream(true, n, rd));
        r.step("PostgreSQL full scan", || pg.full_scan(n, plan.scan_repeats));
        if let Err(e) = pg.teardown() {
            eprintln!("  could not drop the PostgreSQL table: {e:#}");
        }
    }
    if let Some(sq) = &peers.sq {
        r.step("SQLite load", || sq.load_reads(n));
        r.step("SQLite stream (contiguous)", || sq.read_stream(false, n, rd));
        r.step("SQLite stream (scattered)", || sq.read_stream(true, n, rd));
        r.step("SQLite full scan", || sq.full_scan(n, plan.scan_repeats));
    }
    Ok(())
}

/// The HTTP API (`evident serve` as a child process) beside the embedded log, each workload
/// back to back on both.
fn http_phase(r: &mut Runner, plan: &Plan, dir: &Path) {
    phase("HTTP API beside the embedded log");
    let h = match http::Http::start(dir) {
        Ok(h) => h,
        Err(e) => {
            eprintln!("  FAILED HTTP start: {e:#}");
            r.failures.push(format!("HTTP start: {e:#}"));
            return;
        }
    };
    // Each side runs `plan.duration` in all, in interleaved rounds.
    let rounds = plan.paired_rounds.0;
    let round = plan.duration.div_f64(rounds as f64);
    for clients in [1usize, 64] {
        match h.appends(clients, rounds, round) {
            Ok(rows) => rows.into_iter().for_each(|m| r.report.add(m)),
            Err(e) => {
                eprintln!("  FAILED HTTP appends x{clients}: {e:#}");
                r.failures.push(format!("HTTP appends x{clients}: {e:#}"));
            }
        }
    }
    match h.load_read_stream() {
        Ok(()) => {
            r.step("embedded stream read (HTTP comparison)", || h.read_embedded(plan.read_duration));
            r.step("HTTP stream read", || h.read_http(plan.read_duration, false));
            r.step("HTTP stream read, NDJSON", || h.read_http(plan.read_duration, true));
        }
        Err(e) => {
            eprintln!("  FAILED HTTP read load: {e:#}");
            r.failures.push(format!("HTTP read load: {e:#}"));
        }
    }
    if let Err(e) = h.stop() {
        eprintln!("  FAILED HTTP stop: {e:#}");
        r.failures.push(format!("HTTP stop: {e:#}"));
    }
}

/// SSE fan-out: appends with and without reading subscribers on one server, with one
/// appending client (appends bound by the sync's latency, as in the reliability probe) and with
/// eight (bound by CPU on a small machine).
fn sse_fanout_phase(r: &mut Runner, plan: &Plan, dir: &Path) {
    phase("SSE fan-out (HTTP appends with live subscribers)");
    for clients in [1, 8] {
        match http::sse_fanout(&dir.join(format!("clients-{clients}")), clients, 500, plan.duration) {
            Ok(rows) => rows.into_iter().for_each(|m| r.report.add(m)),
            Err(e) => {
                eprintln!("  FAILED SSE fan-out, {clients} client(s): {e:#}");
                r.failures.push(format!("SSE fan-out, {clients} client(s): {e:#}"));
            }
        }
    }
}

/// The Kafka protocol with librdkafka: produce against `evident serve`, the embedded log's
/// batched appends right after it, consume, produce one at a time, kafka-producer-perf-test;
/// then the same against Apache Kafka (fsync per append, then its defaults) and Tansu when
/// they can run. Returns lines for the results' header (what ran of the peers).
fn kafka_phase(r: &mut Runner, plan: &Plan, dir: &Path) -> Vec<String> {
    phase("Kafka protocol (librdkafka) beside the embedded log and Apache Kafka");
    let mut header = Vec::new();
    // Kafka's jars (for kafka-producer-perf-test): where scripts/java-setup.sh put them.
    let java_lib = std::env::var_os("KAFKA_JAVA_LIB")
        .map(PathBuf::from)
        .or_else(|| Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../target/java/lib")))
        .filter(|lib| lib.is_dir());
    let java_lib = java_lib.as_deref();
    let baseline = Some((dir.join("embedded"), plan.duration));
    kafka_workloads(r, plan, "evident Kafka", kafka::Broker::evident(&dir.join("evident")), baseline, java_lib);
    match (plan.apache_kafka, kafka::kafka_ref_script()) {
        (true, Ok(script)) => {
            for (durable, name) in [(true, "Apache Kafka (fsync per append)"), (false, "Apache Kafka (defaults)")] {
                let started = kafka::Broker::apache_kafka(
                    &script,
                    &dir.join(if durable { "kafka-durable" } else { "kafka" }),
                    durable,
                );
                kafka_workloads(r, plan, name, started, None, java_lib);
            }
            header.push(format!(
                "Apache Kafka: one KRaft node started by {} from Maven's jars on 127.0.0.1, same disk; kafka-producer-perf-test: {}",
                script.display(),
                java_lib.map_or("skipped (no jars: run scripts/java-setup.sh)".into(), |l| format!("jars in {}", l.display()))
            ));
        }
        (false, _) => header.push("Apache Kafka: skipped (--skip-apache-kafka)".into()),
        (true, Err(at)) => header.push(format!("Apache Kafka: skipped (no script at {at})")),
    }
    match kafka::tansu_binary() {
        Ok(bin) => {
            kafka_workloads(r, plan, "Tansu", kafka::Broker::tansu(&bin, &dir.join("tansu")), None, None);
            header.push(format!(
                "tansu: {} (--storage-engine {}), started by the benchmark on 127.0.0.1",
                bin.display(),
                kafka::Broker::tansu_storage()
            ));
        }
        Err(at) => {
            header.push(format!("tansu: skipped (binary not found at {at}; see BENCHMARKS.md for how to build it)"));
        }
    }
    for line in &header {
        eprintln!("  {line}");
    }
    header
}

/// Creates the topic on a started broker, produces `plan.kafka_records` records, then (with
/// `baseline`: a directory and a duration) measures the embedded log appending batches of the
/// size librdkafka sent, consumes the records, produces one record at a time, and stops the
/// broker.
fn kafka_workloads(
    r: &mut Runner,
    plan: &Plan,
    name: &str,
    started: Result<kafka::Broker>,
    baseline: Option<(PathBuf, std::time::Duration)>,
    java_lib: Option<&Path>,
) {
    let broker = match started {
        Ok(b) => b,
        Err(e) => {
            eprintln!("  FAILED {name} start: {e:#}");
            r.failures.push(format!("{name} start: {e:#}"));
            return;
        }
    };
    let records = plan.kafka_records;
    match broker.create_topic() {
        Ok(()) => {
            let mut mean_batch = None;
            if let Err(e) = broker.warm_up(records) {
                eprintln!("  FAILED {name} warm-up: {e:#}");
                r.failures.push(format!("{name} warm-up: {e:#}"));
            }
            r.step(&format!("{name} produce"), || {
                let (m, batch) = broker.produce(records, 1)?;
                mean_batch = batch;
                Ok(m)
            });
            r.step(&format!("{name} produce to 8 partitions"), || Ok(broker.produce(records, 8)?.0));
            if let Some((dir, duration)) = &baseline {
                // Batches as large as librdkafka's (when its statistics told), then of 1,000.
                let sizes = match mean_batch {
                    Some(b) if b >= 1.0 => vec![(b.round() as usize, true), (kafka::BASELINE_BATCH, false)],
                    _ => vec![(kafka::BASELINE_BATCH, false)],
                };
                for (size, matched) in sizes {
                    r.step(&format!("embedded Kafka batches of {size}"), || {
                        kafka::embedded_batches(dir, *duration, size, matched)
                    });
                    let _ = std::fs::remove_dir_all(dir);
                }
            }
            r.step(&format!("{name} consume"), || broker.consume(records));
            // After the consume, which reads exactly the records produced above.
            r.step(&format!("{name} produce one at a time"), || broker.produce_one_at_a_time(plan.read_duration));
            if let Some(lib) = java_lib {
                r.step(&format!("{name} kafka-producer-perf-test"), || broker.perf_test(lib, records));
            }
            for m in broker.footprint() {
                r.report.add(m);
            }
        }
        Err(e) => {
            eprintln!("  FAILED {name} create topic: {e:#}");
            r.failures.push(format!("{name} create topic: {e:#}"));
        }
    }
    if let Err(e) = broker.stop() {
        eprintln!("  FAILED {name} stop: {e:#}");
        r.failures.push(format!("{name} stop: {e:#}"));
    }
}

/// The library's aggregate loads: full replay against a snapshot, on the embedded backend.
fn aggregates_phase(r: &mut Runner, plan: &Plan, dir: &Path) {
    phase("aggregate loads through the library (embedded backend)");
    match aggregates::run(dir, plan.aggregate_replays, plan.snapshot_loads) {
        Ok(rows) => rows.into_iter().for_each(|m| r.report.add(m)),
        Err(e) => {
            eprintln!("  FAILED aggregate loads: {e:#}");
            r.failures.push(format!("aggregate loads: {e:#}"));
        }
    }
}

/// The library's projection catch-up into SQLite and PostgreSQL (`pg`: its connection string,
/// None to skip it), plus the feed and the raw SQLite upserts alone. Returns a line for the
/// results' header (what happened to PostgreSQL).
fn projections_phase(r: &mut Runner, plan: &Plan, pg: Option<&str>, dir: &Path) -> String {
    use projections::Api;
    phase("projection catch-up through the library (SQLite, PostgreSQL)");
    let pg_line;
    let pg = match pg.map(|c| (c, projections::postgres_reachable(c))) {
        None => {
            pg_line = "projections into PostgreSQL: skipped (--skip-postgres)".to_string();
            None
        }
        Some((c, Ok(info))) => {
            pg_line = format!("projections into PostgreSQL: {info}");
            Some(c)
        }
        Some((_, Err(e))) => {
            pg_line = format!(
                "projections into PostgreSQL: skipped (cannot connect: {e}; scripts/bench.sh starts the cluster, --pg names another)"
            );
            None
        }
    };
    eprintln!("  {pg_line}");
    let (p, load) = match projections::Projections::load(dir, plan.projection_events, plan.scan_repeats) {
        Ok(loaded) => loaded,
        Err(e) => {
            eprintln!("  FAILED projection load: {e:#}");
            r.failures.push(format!("projection load: {e:#}"));
            return pg_line;
        }
    };
    r.report.add(load);
    r.step("projection feed alone", || p.feed(1000, false));
    r.step("projection feed + decode", || p.feed(1000, true));
    r.step("raw SQLite upserts", || p.raw_sqlite(1000));
    for batch in [1000usize, 5000] {
        for (api, how) in [(Api::Batch, "handle_batch"), (Api::PerEvent, "per event")] {
            r.step(&format!("projection into SQLite, pages of {batch}, {how}"), || p.sqlite(batch, api));
        }
    }
    if let Some(pg) = pg {
        r.step("raw PostgreSQL upserts", || p.raw_postgres(pg, 1000));
        for batch in [1000usize, 5000] {
            for (api, how) in [(Api::Batch, "handle_batch"), (Api::PerEvent, "per event")] {
                r.step(&format!("projection into PostgreSQL, pages of {batch}, {how}"), || p.postgres(pg, batch, api));
            }
        }
    }
    pg_line
}

fn run_in(cli: &Cli, plan: &Plan, run_dir: &Path) -> Result<()> {
    let started = std::time::Instant::now();
    let mut header = vec![
        format!("date: {}", machine::now_utc()),
        format!("machine: {}", machine::describe()),
        format!(
            "data directory: {} on {}",
            run_dir.display(),
            machine::filesystem_of(run_dir)
        ),
        format!("load average at start: {}", machine::load_average()),
        format!(
            "mode: {}; {} s per timed workload; read data set {} events; restart store {} events",
            if cli.quick { "quick" } else { "full" },
            plan.duration.as_secs_f64(),
            report::num(plan.replay_events as f64),
            report::num(plan.restart_events as f64)
        ),
        "evident: evident-log with its default configuration (fsync = always: fdatasync before every acknowledgement, group commit)".to_string(),
    ];
    let mut r = Runner { report: Report::new(plan.replay_events, plan.restart_events), failures: Vec::new() };
    for line in &header {
        eprintln!("{line}");
    }

    let peers_needed = [Phase::Appends, Phase::Batches, Phase::Reads].iter().any(|p| plan.runs(*p));
    let pg = if cli.skip_postgres || !peers_needed {
        None
    } else {
        let (pg, info) = postgres::Postgres::setup(&cli.pg)?;
        eprintln!("{info}");
        header.push(info);
        Some(pg)
    };
    let sq = if cli.skip_sqlite || !peers_needed {
        None
    } else {
        let (sq, info) = sqlite::Sqlite::setup(&fresh_dir(run_dir, "sqlite")?)?;
        eprintln!("{info}");
        header.push(info);
        Some(sq)
    };
    let peers = Peers { pg, sq };
    let raw = fresh_dir(run_dir, "raw")?;
    let d = plan.duration;
    if plan.runs(Phase::Physical) {
        phase("physical limits");
        r.step("raw sync (overwrite)", || physical::sync_4k(&raw, Mode::Overwrite, d, Key::SyncOverwrite));
        r.step("raw sync (grow)", || physical::sync_4k(&raw, Mode::Grow, d, Key::SyncGrow));
        r.step("sequential 1 MiB", || physical::seq_write_1m(&raw, d));
    }
    if plan.runs(Phase::Appends) || plan.runs(Phase::Batches) {
        write_phases(&mut r, plan, &peers, &fresh_dir(run_dir, "evident-writes")?, &raw)?;
        std::fs::remove_dir_all(run_dir.join("evident-writes"))?;
        if plan.runs(Phase::Physical) {
            r.step("raw sync (overwrite, after)", || {
                physical::sync_4k(&raw, Mode::Overwrite, d, Key::SyncOverwriteAfter)
            });
        }
    }
    if plan.runs(Phase::Reads) {
        read_phase(&mut r, plan, &peers, &fresh_dir(run_dir, "evident-reads")?)?;
        std::fs::remove_dir_all(run_dir.join("evident-reads"))?;
    }
    drop(peers);
    let _ = std::fs::remove_dir_all(run_dir.join("sqlite"));
    if plan.runs(Phase::Http) {
        http_phase(&mut r, plan, &fresh_dir(run_dir, "http")?);
        std::fs::remove_dir_all(run_dir.join("http"))?;
    }
    if plan.runs(Phase::SseFanout) {
        sse_fanout_phase(&mut r, plan, &fresh_dir(run_dir, "sse-fanout")?);
        std::fs::remove_dir_all(run_dir.join("sse-fanout"))?;
    }
    if plan.runs(Phase::Kafka) {
        header.extend(kafka_phase(&mut r, plan, &fresh_dir(run_dir, "kafka")?));
        std::fs::remove_dir_all(run_dir.join("kafka"))?;
    }
    if plan.runs(Phase::Transactions) {
        phase("Kafka transactions (librdkafka) on evident and durable Apache Kafka");
        header.extend(transactions::phase(&mut r.report, &mut r.failures, plan, &fresh_dir(run_dir, "transactions")?));
        std::fs::remove_dir_all(run_dir.join("transactions"))?;
    }
    if plan.runs(Phase::Registry) {
        phase("schema registry (evident serve beside Apicurio Registry; validation at produce; verify=stored)");
        header.extend(registry::phase(&mut r.report, &mut r.failures, plan, &fresh_dir(run_dir, "registry")?));
        std::fs::remove_dir_all(run_dir.join("registry"))?;
    }
    if plan.runs(Phase::Sql) {
        phase("SQL views: seed 000's order_summary on evident beside Kafka Streams on Apache Kafka");
        header.extend(sql::phase(&mut r.report, &mut r.failures, plan, &fresh_dir(run_dir, "sql")?));
        std::fs::remove_dir_all(run_dir.join("sql"))?;
    }
    if plan.runs(Phase::Cluster) {
        phase("the library on a three-node Apache Kafka (KafkaBackend) beside raw produce and the embedded backend");
        header.extend(cluster::phase(&mut r.report, &mut r.failures, plan, &fresh_dir(run_dir, "cluster")?));
        std::fs::remove_dir_all(run_dir.join("cluster"))?;
    }
    if plan.runs(Phase::Aggregates) {
        aggregates_phase(&mut r, plan, &fresh_dir(run_dir, "aggregates")?);
        std::fs::remove_dir_all(run_dir.join("aggregates"))?;
    }
    if plan.runs(Phase::Projections) {
        let pg = if cli.skip_postgres { None } else { Some(cli.pg.as_str()) };
        let line = projections_phase(&mut r, plan, pg, &fresh_dir(run_dir, "projections")?);
        header.push(line);
        std::fs::remove_dir_all(run_dir.join("projections"))?;
    }
    if plan.runs(Phase::Restart) {
        phase("restart");
        let m = plan.restart_events;
        let dir = fresh_dir(run_dir, "evident-restart")?;
        r.step("evident restart load", || restart::load(&dir, m, 2));
        if r.report.get(report::System::Evident, Key::RestartLoad).is_some() {
            r.step_opt("evident open (warm)", || restart::probe(&dir, m, false, true));
            r.step_opt("evident open (cold)", || restart::probe(&dir, m, true, true));
            r.step_opt("evident open (no checkpoint)", || restart::probe(&dir, m, true, false));
        }
        if !cli.keep_data {
            std::fs::remove_dir_all(&dir)?;
        }
    }

    println!("## evident-bench results\n");
    for line in &header {
        println!("- {line}");
    }
    println!(
        "- load average at end: {}; total run time {:.0} s",
        machine::load_average(),
        started.elapsed().as_secs_f64()
    );
    r.report.print_tables();
    r.report.print_ratios();
    if let Some(path) = &cli.save {
        compare::save(path, r.report.rows())?;
        eprintln!("figures saved to {}", path.display());
    }
    if let Some(path) = &cli.compare {
        let regressions = compare::compare(path, r.report.rows())?;
        if regressions > 0 {
            println!("\n{regressions} workload(s) regressed by more than 10%.");
        }
    }
    if !r.failures.is_empty() {
        println!("\n### Failures\n");
        for f in &r.failures {
            println!("- {f}");
        }
        anyhow::bail!("{} workload(s) failed", r.failures.len());
    }
    Ok(())
}
