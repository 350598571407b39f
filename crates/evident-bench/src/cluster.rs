//! The library on an Apache Kafka cluster (issue 16): `evident::KafkaBackend` appending and
//! reading on a three-node cluster started by `scripts/kafka-ref.sh --nodes 3` (replication
//! factor 3, `min.insync.replicas` 2, Kafka's flush defaults: an acknowledged record is on two
//! brokers at least), beside librdkafka producing straight to the same cluster with the same
//! durability, and beside the embedded backend (fsync always), in one run.
//!
//! - *Appends through the library*: `Backend::append` of one event (the bench's JSON order event
//!   with its CloudEvents headers) at `ExpectedVersion::Exact`, each writer (a tokio task) on a
//!   stream of its own whose current version it read once before the clock started (then
//!   tracked, as the only writer of its stream), to a topic of 8 partitions; with 8 writers each
//!   stream is in its own partition, so each writer holds its own partition's transactional id
//!   (the partition's lock). Per append `KafkaBackend` asks the partition's end, checks the
//!   expected version against its mirror, produces the event in a transaction and commits it,
//!   then waits until its mirror holds the event. 1 writer, then 8; then the 8 writers split
//!   between 2 and 3 `KafkaBackend` instances **in this process** (separate mirror
//!   directories; writer w on instance w mod n, so no partition changes hands during a run).
//!   Every instance mirrors the whole cluster, so CPU time per append (this process, from
//!   /proc/self/stat; the three brokers, from their /proc/PID/stat) is the figure that scales,
//!   not appends/s on a two-core machine. Fresh instances per configuration; each writer's
//!   first two appends (taking the partition's transactional id) are untimed, and a warm-up of
//!   the 8-writer loop (so the brokers' JVMs run the transaction path compiled) precedes
//!   everything.
//! - *The embedded backend*: the same loops on `EmbeddedBackend` (fsync always), same events.
//! - *Raw produce on the same cluster*: librdkafka producers, one record (the very record
//!   `KafkaBackend` writes for the event: key, headers, value) at a time, each producer on a
//!   partition of its own of an 8-partition topic (replication factor 3, min ISR 2): an
//!   idempotent producer with `acks=all` waiting for each delivery report (a durable single
//!   append); a transactional producer committing one record per transaction exactly as
//!   `KafkaBackend`'s writer does (`BaseProducer`: begin, send, `commit_transaction`, which
//!   flushes itself); and, 1 writer only, two variants that wait for the record before calling
//!   `commit_transaction`, whose own flush then has nothing to wait for: the `BaseProducer`
//!   polled until librdkafka counts no record in flight, and a `ThreadedProducer` whose delivery
//!   report is awaited (how the transactions phase measures; it also counts, from `debug=eos`,
//!   the AddPartitionsToTxn answers CONCURRENT_TRANSACTIONS: the previous transaction's markers
//!   still being written, retried by librdkafka after 20 ms). rust-rdkafka's flush, which
//!   `commit_transaction` calls first, polls in steps of up to 100 ms while a record is counted
//!   outstanding. `linger.ms=0` everywhere.
//! - *Idle brokers*: the three JVMs' CPU over 3 idle seconds before the workloads, in the
//!   header: the brokers' CPU per op includes it (most of it when the ops are few).
//! - *Stream reads*: one 100-event stream (written in one append) read whole with
//!   `read_stream`, again and again, through `KafkaBackend` (which first asks the partition's
//!   last stable offset and waits until its mirror holds it) and through the embedded backend.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ::evident::backend::Direction;
use ::evident::{
    Backend, EmbeddedBackend, EventData, ExpectedVersion, KafkaBackend, KafkaConfig, StreamQuery, TopicSpec, Version,
};
use anyhow::{anyhow, bail, ensure, Context, Result};
use evident_core::partitioner::KeyPartitioner;
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseProducer, BaseRecord, Producer, ThreadedProducer};

use crate::cli::Plan;
use crate::kafka::{self, Broker, Ctx};
use crate::machine;
use crate::payload;
use crate::report::{dur, Key, Measurement, RawProduce, Report, System};
use crate::stats::Latencies;

/// The raw producers, in the order they run.
const RAW: [RawProduce; 4] =
    [RawProduce::Idempotent, RawProduce::Transaction, RawProduce::TransactionPolled, RawProduce::TransactionAcked];
/// Writer counts of the append workloads.
pub const WRITERS: [usize; 2] = [1, 8];
/// `KafkaBackend` instances splitting the 8 writers.
pub const INSTANCES: [usize; 3] = [1, 2, 3];
/// The library's topic (8 partitions: one per writer).
const TOPIC: &str = "cluster-bench";
/// The raw producers' topic (8 partitions).
const RAW_TOPIC: &str = "cluster-bench-raw";
const PARTITIONS: u32 = 8;
/// Events of the stream the read workload reads.
const READ_EVENTS: usize = 100;
/// Bound on one Kafka call (init, commit).
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the brokers' idle CPU is measured.
const IDLE: Duration = Duration::from_secs(3);
/// Untimed appends of each writer before the clock starts.
const WARM_APPENDS: u64 = 2;

/// The cluster phase; returns lines for the results' header.
pub fn phase(report: &mut Report, failures: &mut Vec<String>, plan: &Plan, dir: &Path) -> Vec<String> {
    let mut header = Vec::new();
    let script = match (plan.apache_kafka, kafka::kafka_ref_script()) {
        (true, Ok(script)) => script,
        (false, _) => {
            header.push("cluster: skipped (--skip-apache-kafka)".into());
            return header;
        }
        (true, Err(at)) => {
            header.push(format!("cluster: skipped (no script at {at})"));
            return header;
        }
    };
    let broker = match Broker::apache_kafka_cluster(&script, &dir.join("kafka")) {
        Ok(b) => b,
        Err(e) => {
            eprintln!("  FAILED three-node Apache Kafka start: {e:#}");
            failures.push(format!("cluster start: {e:#}"));
            return header;
        }
    };
    header.push(format!(
        "cluster: three KRaft nodes (combined broker+controller) started by {} --nodes 3 on 127.0.0.1, same disk; replication factor 3, min.insync.replicas 2, flush defaults; KafkaBackend instances in this process (tokio, {} worker threads)",
        script.display(),
        RUNTIME_THREADS
    ));
    let runtime = match tokio::runtime::Builder::new_multi_thread().worker_threads(RUNTIME_THREADS).enable_all().build()
    {
        Ok(r) => r,
        Err(e) => {
            failures.push(format!("cluster: tokio runtime: {e}"));
            return header;
        }
    };
    let bench = Bench { broker: &broker, dir, duration: plan.duration, read_duration: plan.read_duration };
    let mut step = |what: &str, r: Result<Measurement>| match r {
        Ok(m) => report.add(m),
        Err(e) => {
            eprintln!("  FAILED {what}: {e:#}");
            failures.push(format!("{what}: {e:#}"));
        }
    };
    // What the three JVMs burn with nothing to do (KRaft heartbeats, GC, timers): the brokers'
    // CPU per op below includes it, a large part when ops are few.
    let idle = bench.cpu();
    std::thread::sleep(IDLE);
    let idle = bench.cpu().brokers.saturating_sub(idle.brokers).div_f64(IDLE.as_secs_f64());
    header.push(format!(
        "cluster: the three brokers' CPU while idle, before the workloads: {} per second (included in the brokers' CPU per op)",
        dur(idle)
    ));
    let setup = runtime.block_on(bench.setup());
    if let Err(e) = setup {
        step("cluster setup", Err(e));
    } else {
        for writers in WRITERS {
            for how in RAW {
                if matches!(how, RawProduce::TransactionAcked | RawProduce::TransactionPolled) && writers > 1 {
                    continue;
                }
                step(&format!("raw produce {how:?} x{writers}"), bench.raw(writers, how));
            }
            step(&format!("KafkaBackend append x{writers}"), runtime.block_on(bench.kafka_appends(writers, 1)));
            step(&format!("embedded append x{writers}"), runtime.block_on(bench.embedded_appends(writers)));
        }
        for instances in INSTANCES.into_iter().skip(1) {
            step(
                &format!("KafkaBackend append x8, {instances} instances"),
                runtime.block_on(bench.kafka_appends(8, instances)),
            );
        }
        for nodes in INSTANCES {
            step(
                &format!("evident serve on the cluster, {nodes} node(s)"),
                runtime.block_on(bench.serve_appends(nodes)),
            );
        }
        for kafka in [true, false] {
            step(&format!("stream read (kafka: {kafka})"), runtime.block_on(bench.reads(kafka)));
        }
    }
    drop(runtime);
    if let Err(e) = broker.stop() {
        eprintln!("  FAILED three-node Apache Kafka stop: {e:#}");
        failures.push(format!("cluster stop: {e:#}"));
    }
    for line in &header {
        eprintln!("  {line}");
    }
    header
}

/// Worker threads of the phase's tokio runtime (the backends' blocking calls run on its
/// blocking pool).
const RUNTIME_THREADS: usize = 2;

struct Bench<'a> {
    broker: &'a Broker,
    dir: &'a Path,
    duration: Duration,
    read_duration: Duration,
}

/// CPU time of this process and of the brokers.
#[derive(Clone, Copy)]
struct Cpu {
    client: Duration,
    brokers: Duration,
}

impl Bench<'_> {
    fn cpu(&self) -> Cpu {
        let brokers = self.broker.pids().iter().filter_map(|p| machine::cpu_time(&p.to_string())).sum();
        Cpu { client: machine::cpu_time("self").unwrap_or_default(), brokers }
    }

    /// "CPU per append: this process X, brokers Y" since `before`, for `ops` operations.
    fn cpu_note(&self, before: Cpu, ops: u64, brokers: bool) -> String {
        let after = self.cpu();
        let per = |d: Duration| dur(d.div_f64(ops.max(1) as f64));
        let client = per(after.client.saturating_sub(before.client));
        if brokers {
            format!(
                "CPU per op: this process {client}, 3 brokers {}",
                per(after.brokers.saturating_sub(before.brokers))
            )
        } else {
            format!("CPU per op: this process {client}")
        }
    }

    /// The raw topic (admin API) and the library's (through `KafkaBackend::ensure_topic`), then
    /// an untimed warm-up of the 8-writer loop.
    async fn setup(&self) -> Result<()> {
        let admin: AdminClient<Ctx> = self
            .broker
            .config()
            .create_with_context(Ctx::new(self.broker.label("admin")))
            .context("creating the admin client")?;
        let topic =
            NewTopic::new(RAW_TOPIC, PARTITIONS as i32, TopicReplication::Fixed(3)).set("min.insync.replicas", "2");
        let options = AdminOptions::new().operation_timeout(Some(CALL_TIMEOUT));
        for r in admin.create_topics([&topic], &options).await.context("CreateTopics")? {
            if let Err((name, code)) = r {
                bail!("CreateTopics {name}: {code}");
            }
        }
        let backend = self.open_kafka("setup")?;
        backend.ensure_topic(TOPIC, TopicSpec { partitions: PARTITIONS, compacted: false }).await?;
        let created = Instant::now();
        for partition in 0..PARTITIONS {
            first_read(&backend, &key_in("ready", partition)).await?;
        }
        eprintln!("  every partition of {TOPIC} readable {} after ensure_topic returned", dur(created.elapsed()));
        let warm = self.duration.min(Duration::from_secs(3));
        let started = Instant::now();
        let backends: Vec<Arc<dyn Backend>> = vec![Arc::new(backend)];
        append_loop(&backends, 8, warm, "warm-up", payload::event, || self.cpu()).await?;
        eprintln!("  warm-up: 8 writers through KafkaBackend for {} (untimed)", dur(started.elapsed()));
        Ok(())
    }

    fn open_kafka(&self, name: &str) -> Result<KafkaBackend> {
        let mirror = self.dir.join("mirrors").join(name);
        let _ = std::fs::remove_dir_all(&mirror);
        let config = KafkaConfig::new(self.broker.bootstrap(), mirror);
        KafkaBackend::open(config).map_err(|e| anyhow!("opening KafkaBackend: {e}"))
    }

    async fn kafka_appends(&self, writers: usize, instances: usize) -> Result<Measurement> {
        let backends = (0..instances)
            .map(|i| Ok(Arc::new(self.open_kafka(&format!("w{writers}-i{instances}-{i}"))?) as Arc<dyn Backend>))
            .collect::<Result<Vec<_>>>()?;
        let tag = format!("kb-w{writers}-i{instances}");
        let run = append_loop(&backends, writers, self.duration, &tag, payload::event, || self.cpu()).await?;
        let note = self.cpu_note(run.started, run.ops, true);
        drop(backends);
        Ok(run.measurement(System::KafkaBackend, Key::ClusterAppend { writers, instances }, writers, instances).note(
            format!("{} instance(s) in this process, separate mirrors; {note}; mirror and checks included", instances),
        ))
    }

    /// 8 writers over HTTP through `nodes` `evident serve --storage kafka://` processes (writer
    /// w on node w mod n), once the ownership group has given every node partitions: an append
    /// whose partition another node owns is forwarded to it (one more HTTP hop), as any client
    /// that does not know the owners sees it. CPU per append counts the nodes and the brokers.
    async fn serve_appends(&self, nodes: usize) -> Result<Measurement> {
        let servers = (0..nodes)
            .map(|i| {
                let dir = self.dir.join(format!("serve-n{nodes}-{i}"));
                let _ = std::fs::remove_dir_all(&dir);
                std::fs::create_dir_all(&dir)?;
                let storage = format!("kafka://{}", self.broker.bootstrap());
                let group = format!("cluster-bench-n{nodes}");
                crate::http::Server::start_with(&dir, &["--storage", &storage, "--ownership-group", &group])
            })
            .collect::<Result<Vec<_>>>()?;
        // Measured once the group has settled: every node owns partitions, together at least
        // the benchmark topic's, and no node's share changed for two seconds (the group
        // rebalances once per joining node, cooperatively: revoked first, assigned next), so
        // that the run sees forwarding to stable owners rather than the group's joins.
        let deadline = Instant::now() + Duration::from_secs(60);
        let mut settled: Option<(Instant, Vec<f64>)> = None;
        loop {
            let mut shares = Vec::with_capacity(servers.len());
            for s in &servers {
                shares.push(metric(&s.base, "evident_cluster_owned_partitions ").await.unwrap_or(0.0));
            }
            let owned: f64 = shares.iter().sum();
            if shares.iter().all(|&n| n > 0.0) && owned >= f64::from(PARTITIONS) {
                match &settled {
                    Some((since, before)) if *before == shares => {
                        if since.elapsed() >= Duration::from_secs(2) {
                            break;
                        }
                    }
                    _ => settled = Some((Instant::now(), shares)),
                }
            } else {
                settled = None;
            }
            ensure!(Instant::now() < deadline, "the {nodes} node(s) did not share the partitions within 60 s");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
        let backends = servers
            .iter()
            .map(|s| Ok(Arc::new(::evident::HttpBackend::new(s.base.clone())?) as Arc<dyn Backend>))
            .collect::<Result<Vec<_>>>()?;
        let node_cpu = || servers.iter().filter_map(|s| machine::cpu_time(&s.pid()?.to_string())).sum::<Duration>();
        let nodes_before = node_cpu();
        // Over HTTP the metadata are plain headers (the API takes the CloudEvents attributes it
        // knows as fields and reserves the other `ce_` names).
        let tag = format!("serve-n{nodes}");
        let run = append_loop(&backends, 8, self.duration, &tag, payload::event_over_http, || self.cpu()).await?;
        let per = |d: Duration| dur(d.div_f64(run.ops.max(1) as f64));
        let nodes_cpu = per(node_cpu().saturating_sub(nodes_before));
        let mut forwarded = 0.0;
        for s in &servers {
            forwarded += metric(&s.base, "evident_cluster_forwarded_total ").await.unwrap_or(0.0);
        }
        let note = self.cpu_note(run.started, run.ops, true);
        drop(backends);
        drop(servers);
        Ok(run.measurement(System::ServeOnKafka, Key::ClusterAppend { writers: 8, instances: nodes }, 8, nodes).note(
            format!(
                "{nodes} evident serve node(s), writers spread over them; {forwarded} appends forwarded to their \
                 partition's owner; CPU per op: the nodes {nodes_cpu}; {note} (this process: the HTTP clients)"
            ),
        ))
    }

    async fn embedded_appends(&self, writers: usize) -> Result<Measurement> {
        let dir = self.dir.join(format!("embedded-w{writers}"));
        let _ = std::fs::remove_dir_all(&dir);
        let backend = EmbeddedBackend::open(&dir).map_err(|e| anyhow!("opening the embedded backend: {e}"))?;
        backend.ensure_topic(TOPIC, TopicSpec { partitions: PARTITIONS, compacted: false }).await?;
        let backends: Vec<Arc<dyn Backend>> = vec![Arc::new(backend)];
        let tag = format!("emb-w{writers}");
        let run = append_loop(&backends, writers, self.duration, &tag, payload::event, || self.cpu()).await?;
        let note = self.cpu_note(run.started, run.ops, false);
        drop(backends);
        let _ = std::fs::remove_dir_all(&dir);
        Ok(run
            .measurement(System::Evident, Key::ClusterAppend { writers, instances: 1 }, writers, 1)
            .note(format!("EmbeddedBackend, fsync always; {note}")))
    }

    /// Raw librdkafka producers on the cluster, `writers` threads each on its own partition.
    fn raw(&self, writers: usize, how: RawProduce) -> Result<Measurement> {
        let event = payload::event(payload::event_id(0, 0));
        let cpu = self.cpu();
        // The CONCURRENT_TRANSACTIONS answers, counted by the delivery-awaiting producer (1 writer).
        let retries = std::sync::Mutex::new(None);
        let out = crate::driver::run(
            writers,
            self.duration,
            |w| {
                let key = key_in(&format!("raw-{how:?}-w{w}"), w as u32);
                let p = RawProducer::new(self.broker, how, w)?;
                // One record untimed: metadata, InitProducerId.
                p.send(&event, &key, w as i32)?;
                if let RawProducer::TransactionalAcked(p) = &p {
                    *retries.lock().map_err(|_| anyhow!("poisoned"))? = Some(p.context().clone());
                }
                Ok((p, key))
            },
            |(p, key), w, _| p.send(&event, key, w as i32),
        )?;
        let note = self.cpu_note(cpu, out.ops, true);
        let producers = retries.into_inner().map_err(|_| anyhow!("poisoned"))?;
        let producers = producers.as_ref().map(|ctx| &ctx.concurrent_transactions);
        let mut lat = out.latencies;
        let (p50, p99) = lat.p50_p99();
        let what = match how {
            RawProduce::Idempotent => "idempotent producer, acks=all, send then await the delivery report",
            RawProduce::Transaction => {
                "transactional producer, 1 record per transaction (begin, send, commit_transaction), as KafkaBackend"
            }
            RawProduce::TransactionAcked => {
                "transactional producer, 1 record per transaction, delivery report awaited before commit_transaction"
            }
            RawProduce::TransactionPolled => {
                "transactional producer, 1 record per transaction, polled until no record is in flight before commit_transaction"
            }
        };
        let retries = match &producers {
            Some(n) => format!(
                "; AddPartitionsToTxn answered CONCURRENT_TRANSACTIONS {:.2} times per transaction",
                n.load(std::sync::atomic::Ordering::Relaxed) as f64 / (out.ops + writers as u64).max(1) as f64
            ),
            None => String::new(),
        };
        Ok(Measurement::new(
            System::KafkaCluster,
            Key::ClusterProduce { writers, how },
            format!("raw produce, one event record at a time, {what}, {writers} producer(s)"),
            out.ops as f64 / out.elapsed.as_secs_f64(),
            "records/s",
        )
        .latency(p50, p99)
        .note(format!(
            "librdkafka, linger.ms 0, each producer on its own partition; {note} (producers' set-up included in this process's CPU){retries}"
        )))
    }

    /// A 100-event stream written in one append, read whole again and again.
    async fn reads(&self, kafka: bool) -> Result<Measurement> {
        let embedded_dir = self.dir.join("embedded-read");
        let backend: Arc<dyn Backend> = if kafka {
            Arc::new(self.open_kafka("read")?)
        } else {
            let _ = std::fs::remove_dir_all(&embedded_dir);
            let b = EmbeddedBackend::open(&embedded_dir).map_err(|e| anyhow!("opening the embedded backend: {e}"))?;
            b.ensure_topic(TOPIC, TopicSpec { partitions: PARTITIONS, compacted: false }).await?;
            Arc::new(b)
        };
        let key = format!("read-{}", if kafka { "kafka" } else { "embedded" });
        let events: Vec<EventData> =
            (0..READ_EVENTS as u64).map(|i| payload::event(payload::event_id(9999, i))).collect();
        backend.append(TOPIC, &key, ExpectedVersion::NoStream, &events).await?;
        let query = StreamQuery { limit: READ_EVENTS * 2, direction: Direction::Forward, ..StreamQuery::default() };
        let read = |backend: Arc<dyn Backend>, key: String, query: StreamQuery| async move {
            let page = backend.read_stream(TOPIC, &key, &query).await?;
            ensure!(page.events.len() == READ_EVENTS, "read {} events, expected {READ_EVENTS}", page.events.len());
            Ok::<_, anyhow::Error>(())
        };
        read(backend.clone(), key.clone(), query).await?;
        let mut lat = Latencies::with_capacity(1 << 14);
        let cpu = self.cpu();
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < self.read_duration || n < 10 {
            let t = Instant::now();
            read(backend.clone(), key.clone(), query).await?;
            lat.push(t.elapsed());
            n += 1;
        }
        let elapsed = start.elapsed();
        let note = self.cpu_note(cpu, n, kafka);
        drop(backend);
        let _ = std::fs::remove_dir_all(&embedded_dir);
        let (p50, p99) = lat.p50_p99();
        let (system, how) = if kafka {
            (System::KafkaBackend, "KafkaBackend: the partition's last stable offset asked, the mirror read")
        } else {
            (System::Evident, "EmbeddedBackend")
        };
        Ok(Measurement::new(
            system,
            Key::ClusterRead,
            format!("read_stream of a {READ_EVENTS}-event stream, whole, 1 reader"),
            n as f64 / elapsed.as_secs_f64(),
            "reads/s",
        )
        .latency(p50, p99)
        .note(format!("{how}; {note}")))
    }
}

/// A key named `prefix-N` (the first N that fits) that Kafka's default partitioner (murmur2)
/// puts in `partition` of the 8-partition topics: each writer on a partition of its own.
fn key_in(prefix: &str, partition: u32) -> String {
    (0..)
        .map(|i| format!("{prefix}-{i}"))
        .find(|k| KeyPartitioner::Murmur2.partition(k.as_bytes(), PARTITIONS) == partition % PARTITIONS)
        .unwrap_or_default()
}

/// A series of a node's `/metrics`.
async fn metric(base: &str, series: &str) -> Option<f64> {
    let text = reqwest::get(format!("{base}/metrics")).await.ok()?.text().await.ok()?;
    text.lines().find_map(|l| l.strip_prefix(series)?.trim().parse().ok())
}

/// What the append loop did.
struct Run {
    ops: u64,
    elapsed: Duration,
    latencies: Latencies,
    /// CPU times when the clock started (after the untimed appends).
    started: Cpu,
}

impl Run {
    fn measurement(mut self, system: System, key: Key, writers: usize, instances: usize) -> Measurement {
        let (p50, p99) = self.latencies.p50_p99();
        let on = if instances > 1 { format!(", {instances} instances") } else { String::new() };
        Measurement::new(
            system,
            key,
            format!("append 1 event at an expected version, {writers} writer(s){on}"),
            self.ops as f64 / self.elapsed.as_secs_f64(),
            "appends/s",
        )
        .latency(p50, p99)
    }
}

/// `writers` tasks, writer w on `backends[w % n]` and a stream of its own (in partition w),
/// appending one event at a time at the version it expects for `duration`, after reading the
/// stream's current version and [`WARM_APPENDS`] untimed appends.
async fn append_loop(
    backends: &[Arc<dyn Backend>],
    writers: usize,
    duration: Duration,
    tag: &str,
    event: fn(String) -> EventData,
    cpu: impl Fn() -> Cpu,
) -> Result<Run> {
    let barrier = Arc::new(tokio::sync::Barrier::new(writers + 1));
    let deadline = Arc::new(std::sync::OnceLock::<Instant>::new());
    let mut tasks = Vec::new();
    for w in 0..writers {
        let backend = backends[w % backends.len()].clone();
        let key = key_in(&format!("{tag}-w{w}"), w as u32);
        let (barrier, deadline) = (barrier.clone(), deadline.clone());
        tasks.push(tokio::spawn(async move {
            let writer_id = (tag_hash(&key) << 8) | w as u64;
            let page = first_read(&*backend, &key).await;
            let mut version = match page {
                Ok(p) => p.current_version,
                Err(e) => {
                    barrier.wait().await;
                    return Err(anyhow!("reading {key}'s version: {e}"));
                }
            };
            let mut i = 0u64;
            let mut lat = Latencies::with_capacity(1 << 12);
            let append = |version: Option<Version>, i: u64| {
                let backend = backend.clone();
                let key = key.clone();
                async move {
                    let expected = version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
                    let event = event(payload::event_id(writer_id, i));
                    let appended = backend.append(TOPIC, &key, expected, &[event]).await?;
                    let want = version.map_or(0, |v| v.0 + 1);
                    ensure!(
                        appended.last_version.0 == want,
                        "appended at {}, expected {want}",
                        appended.last_version.0
                    );
                    Ok::<_, anyhow::Error>(appended.last_version)
                }
            };
            let mut warm = Ok(());
            while i < WARM_APPENDS {
                match append(version, i).await {
                    Ok(v) => version = Some(v),
                    Err(e) => {
                        warm = Err(e);
                        break;
                    }
                }
                i += 1;
            }
            barrier.wait().await;
            warm?;
            let deadline = *deadline.get_or_init(|| Instant::now() + duration);
            loop {
                let t = Instant::now();
                if t >= deadline {
                    break;
                }
                version = Some(append(version, i).await?);
                lat.push(t.elapsed());
                i += 1;
            }
            Ok((i - WARM_APPENDS, lat))
        }));
    }
    barrier.wait().await;
    let started = cpu();
    // Whoever passes the barrier first starts the clock.
    let start = *deadline.get_or_init(|| Instant::now() + duration) - duration;
    let mut ops = 0;
    let mut latencies = Latencies::with_capacity(1 << 14);
    let mut first_err = None;
    for t in tasks {
        match t.await {
            Ok(Ok((n, lat))) => {
                ops += n;
                latencies.merge(lat);
            }
            Ok(Err(e)) => {
                first_err.get_or_insert(e);
            }
            Err(e) => {
                first_err.get_or_insert(anyhow!("an append task failed: {e}"));
            }
        }
    }
    let elapsed = start.elapsed();
    match first_err {
        Some(e) => Err(e),
        None => Ok(Run { ops, elapsed, latencies, started }),
    }
}

/// The stream's first read (its current version), retried for up to [`CALL_TIMEOUT`]: for a
/// few seconds after `ensure_topic` returns, `KafkaBackend` fails reads with "Unknown topic or
/// partition" or "Not leader for partition" (the brokers are still electing the new
/// partitions' leaders and spreading their metadata); the bench's setup waits that out.
async fn first_read(backend: &dyn Backend, key: &str) -> ::evident::Result<::evident::backend::StreamPage> {
    let deadline = Instant::now() + CALL_TIMEOUT;
    loop {
        match backend.read_stream(TOPIC, key, &StreamQuery { limit: 1, ..StreamQuery::default() }).await {
            Err(e) if Instant::now() < deadline => {
                eprintln!("  {key}: read failed ({e}); again in 200 ms");
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
            other => return other,
        }
    }
}

/// A number from `key`, so that event ids differ between workloads.
fn tag_hash(key: &str) -> u64 {
    u64::from(crc32c::crc32c(key.as_bytes()))
}

/// A raw producer on the cluster.
enum RawProducer {
    Idempotent(ThreadedProducer<Ctx>),
    Transactional(BaseProducer),
    TransactionalPolled(BaseProducer),
    TransactionalAcked(ThreadedProducer<Ctx>),
}

impl RawProducer {
    fn new(broker: &Broker, how: RawProduce, w: usize) -> Result<Self> {
        let mut config: ClientConfig = broker.config();
        config.set("acks", "all").set("enable.idempotence", "true").set("linger.ms", "0");
        let id = format!("cluster-bench-raw-{how:?}-{w}");
        if how != RawProduce::Idempotent {
            config.set("transactional.id", &id);
        }
        Ok(match how {
            RawProduce::Idempotent => RawProducer::Idempotent(
                config.create_with_context(Ctx::new(broker.label(&id))).context("creating the producer")?,
            ),
            RawProduce::Transaction | RawProduce::TransactionPolled => {
                let p: BaseProducer = config.create().context("creating the producer")?;
                p.init_transactions(CALL_TIMEOUT).map_err(|e| anyhow!("init_transactions: {e}"))?;
                if how == RawProduce::Transaction {
                    RawProducer::Transactional(p)
                } else {
                    RawProducer::TransactionalPolled(p)
                }
            }
            RawProduce::TransactionAcked => {
                // Counted, not printed: AddPartitionsToTxn's CONCURRENT_TRANSACTIONS answers.
                config.set("debug", "eos").set_log_level(rdkafka::config::RDKafkaLogLevel::Debug);
                let p: ThreadedProducer<Ctx> =
                    config.create_with_context(Ctx::new(broker.label(&id))).context("creating the producer")?;
                p.init_transactions(CALL_TIMEOUT).map_err(|e| anyhow!("init_transactions: {e}"))?;
                RawProducer::TransactionalAcked(p)
            }
        })
    }

    /// Produces `event`'s record under `key` to `partition` and waits until it is durable
    /// (delivered, or its transaction committed).
    fn send(&self, event: &EventData, key: &str, partition: i32) -> Result<()> {
        let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
        let record = event.to_record(key.as_bytes(), now);
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            headers = headers.insert(Header { key: name, value: value.as_deref() });
        }
        let value = record.value.as_deref().unwrap_or_default();
        match self {
            RawProducer::Transactional(p) | RawProducer::TransactionalPolled(p) => {
                p.begin_transaction().map_err(|e| anyhow!("begin_transaction: {e}"))?;
                let base = BaseRecord::to(RAW_TOPIC)
                    .partition(partition)
                    .key(key.as_bytes())
                    .payload(value)
                    .headers(headers)
                    .timestamp(now);
                p.send(base).map_err(|(e, _)| anyhow!("send: {e}"))?;
                if matches!(self, RawProducer::TransactionalPolled(_)) {
                    let deadline = Instant::now() + CALL_TIMEOUT;
                    while p.in_flight_count() > 0 {
                        ensure!(Instant::now() < deadline, "the record is still in flight after {CALL_TIMEOUT:?}");
                        p.poll(Duration::from_millis(1));
                    }
                }
                p.commit_transaction(CALL_TIMEOUT).map_err(|e| anyhow!("commit_transaction: {e}"))
            }
            RawProducer::Idempotent(p) | RawProducer::TransactionalAcked(p) => {
                let txn = matches!(self, RawProducer::TransactionalAcked(_));
                let ctx = p.context();
                if txn {
                    p.begin_transaction().map_err(|e| anyhow!("begin_transaction: {e}"))?;
                }
                let target = ctx.delivered.load(std::sync::atomic::Ordering::SeqCst) + 1;
                let base = BaseRecord::<[u8], [u8], usize>::with_opaque_to(RAW_TOPIC, ctx.now_ns())
                    .partition(partition)
                    .key(key.as_bytes())
                    .payload(value)
                    .headers(headers)
                    .timestamp(now);
                p.send(base).map_err(|(e, _)| anyhow!("send: {e}"))?;
                ctx.wait_delivered(target)?;
                if txn {
                    crate::transactions::settle(p)?;
                    p.commit_transaction(CALL_TIMEOUT).map_err(|e| anyhow!("commit_transaction: {e}"))?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_writer_gets_a_key_in_its_own_partition() {
        let parts: Vec<u32> =
            (0..8).map(|w| KeyPartitioner::Murmur2.partition(key_in("t-w", w).as_bytes(), PARTITIONS)).collect();
        assert_eq!(parts, (0..8).collect::<Vec<_>>());
    }
}
