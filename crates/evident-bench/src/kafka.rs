//! The Kafka protocol with a real client: librdkafka (the `rdkafka` crate, its bundled
//! librdkafka 2.12) against `evident serve`'s Kafka listener, next to the embedded log's own
//! batched appends measured in the same run, and optionally against Tansu (a Kafka-compatible
//! broker in Rust, with its SQLite storage) when its binary is present. Every client is
//! synchronous (no async runtime); librdkafka's warnings and errors are printed.
//!
//! - *Produce*: 200-byte values without keys, `acks=all`, `enable.idempotence=true`, every other
//!   producer setting at librdkafka's default (`linger.ms=5`, `batch.size` 1 MB, at most 5
//!   requests in flight, up to 100,000 records queued), to partition 0 of a one-partition
//!   topic, from one thread that sends as fast as librdkafka's queue takes the records (a
//!   `ThreadedProducer`: its own thread serves the delivery reports). Throughput is records over
//!   the time from the first send to the last delivery report; every record's latency runs from
//!   the `send` that queued it to its delivery report, so it includes the wait in the full
//!   queue. One record is produced and delivered before the clock starts: it fetches the
//!   metadata and runs the idempotent producer's `InitProducerId`, which librdkafka paces with a
//!   ~500 ms timer.
//! - *Consume*: the same topic, now holding the records just produced (1,000,000 in a full run),
//!   read from offset 0 by a `BaseConsumer` with `assign` (no group), every record's offset and
//!   value length checked, polled one record at a time; throughput over the time from `assign`
//!   to the last record. The consumer runs with `debug=fetch`, its lines counted rather than
//!   printed: the Fetch responses that carried records (and their mean record count), and the
//!   fetches librdkafka postponed because its prefetch queue was full. That postponement is
//!   `fetch.queue.backoff.ms` (1 s by default): once `queued.min.messages` (100,000) wait
//!   unread, librdkafka sends no Fetch for a second, and this consumer drains 100,000 records
//!   in ~0.1 s, so each one costs the run ~0.9 s idle, charged to the broker that served
//!   fastest: a figure of when the queue first fills, not of the broker. So the bench sets
//!   `fetch.queue.backoff.ms=10` on every broker alike (the pauses are still counted and
//!   printed); `EVIDENT_BENCH_CONSUME_EXTRA=key=value,...` sets more consumer properties, again
//!   on every broker alike (`fetch.queue.backoff.ms=1000` measures with librdkafka's default).
//! - *Embedded baseline*: the embedded log (`LogConfig::default()`, `fsync = always`) appending,
//!   with `Log::append_batch` from one thread, Kafka record batches of the same 200-byte records
//!   (idempotent: a producer id and advancing sequence numbers, as librdkafka sends) to a
//!   one-partition topic in a fresh log in the run's data directory, right after the produce
//!   workload: first batches as large as librdkafka's mean batch in that workload (from its
//!   statistics; the target's baseline), then batches of 1,000. The server handles a
//!   connection's requests one at a time, so one writer is its counterpart.
//! - *One at a time*: after the consume, a second producer (`linger.ms=0`) sends one record and
//!   waits for its delivery report before the next: the latency of one acknowledged record.
//! - *Eight partitions*: the produce workload again to an 8-partition topic, records sent
//!   round-robin to the partitions (no keys).
//! - *kafka-producer-perf-test*: Kafka's own tool (`ProducerPerformance`, the Java client 4.4)
//!   producing the same number of 200-byte records, acks=all, idempotent, to a one-partition
//!   topic; its own summary line is parsed (throughput, p50, p99).
//! - *Start-up and memory*: every broker's start (from the command to accepting connections;
//!   Kafka's includes formatting its storage) and its peak resident memory (`VmHWM`) at the
//!   end of the workloads.
//! - *Apache Kafka* (issue 12's peer): one KRaft node from Maven Central's jars, started by
//!   `scripts/kafka-ref.sh` on the same disk, twice: with `log.flush.interval.messages=1` (an
//!   fsync per append before the acknowledgement, durable like evident) and with its defaults
//!   (acknowledged from the page cache: not durable on power loss with one replica).
//! - *Tansu*: if a binary is found (`$EVIDENT_BENCH_TANSU`, else
//!   `~/.cache/evident-bench/tansu/bin/tansu`), `tansu broker` on a free port of 127.0.0.1 with
//!   `--storage-engine sqlite://tansu.db` (or `$EVIDENT_BENCH_TANSU_STORAGE`) and the same
//!   produce, consume and one-at-a-time workloads.

use std::future::Future;
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicI64, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context as TaskContext, Poll, Wake, Waker};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use evident_core::batch::{BatchBuilder, NewRecord};
use evident_log::{Log, LogConfig, TopicConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::message::{DeliveryResult, Message};
use rdkafka::producer::{BaseRecord, Producer, ProducerContext, ThreadedProducer};
use rdkafka::{ClientContext, Offset, TopicPartitionList};

use crate::driver;
use crate::http::Server;
use crate::machine;
use crate::payload;
use crate::report::{dur, num, Key, Measurement, System};

/// The benchmark's topic (one partition).
const TOPIC: &str = "kafka-bench";
/// The eight-partition topic.
const TOPIC8: &str = "kafka-bench-8";
/// kafka-producer-perf-test's topic (one partition).
const TOPIC_PERF: &str = "kafka-bench-perf";
/// The warm-up's topic (one partition).
const TOPIC_WARM_UP: &str = "kafka-bench-warm-up";
/// Records the warm-up produces (at most; never more than the workloads).
const WARM_UP_RECORDS: u64 = 200_000;
/// The script that starts and stops Apache Kafka from its jars (relative to the repository).
const KAFKA_REF: &str = "scripts/kafka-ref.sh";
/// Value size of every record.
pub const RECORD_BYTES: usize = 200;
/// Records per batch of the embedded baseline's fixed-size run.
pub const BASELINE_BATCH: usize = 1000;
/// Environment variable naming a Tansu binary.
pub const TANSU_ENV: &str = "EVIDENT_BENCH_TANSU";
/// Environment variable overriding Tansu's `--storage-engine` URL (default [`TANSU_STORAGE`]).
pub const TANSU_STORAGE_ENV: &str = "EVIDENT_BENCH_TANSU_STORAGE";
/// Tansu's storage: SQLite in its working directory (needs a build with `--features libsql`).
pub const TANSU_STORAGE: &str = "sqlite://tansu.db";
/// How long a client may go without progress before the workload fails.
const STALL: Duration = Duration::from_secs(30);
/// How long a broker may take to accept connections.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// librdkafka log lines (warning or worse) printed per client, at most.
const LOG_LINES_MAX: u32 = 20;

/// Where the batch CRC sits, where the bytes it covers start, and where the base sequence sits
/// (Kafka record batch v2).
const CRC_AT: usize = 17;
const CRC_FROM: usize = 21;
const BASE_SEQUENCE_AT: usize = 53;

/// The value of every record: the first 200 bytes of the benchmark's JSON payload.
pub(crate) fn value() -> &'static [u8] {
    &payload::DATA.as_bytes()[..RECORD_BYTES]
}

/// Runs a future to completion on this thread (the admin client's futures are completed by its
/// own polling thread; no async runtime is needed).
pub(crate) fn block_on<F: Future>(future: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = TaskContext::from_waker(&waker);
    let mut future = std::pin::pin!(future);
    loop {
        if let Poll::Ready(v) = future.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park_timeout(Duration::from_millis(100));
    }
}

/// A librdkafka client's context: prints librdkafka's warnings and errors (they would go to the
/// `log` crate, which has no logger here), keeps the first error, and for a producer records
/// each delivery's latency and the batch sizes from librdkafka's statistics.
pub(crate) struct Ctx {
    label: String,
    start: Instant,
    logged: AtomicU32,
    first_error: Mutex<Option<String>>,
    pub(crate) delivered: AtomicU64,
    pub(crate) failed: AtomicU64,
    /// Set while a thread waits in [`Ctx::wait_delivered`]; the delivery callback then wakes it.
    waiting: AtomicBool,
    wake: (Mutex<()>, Condvar),
    latencies: Mutex<crate::stats::Latencies>,
    /// Sum of records over all batches, and batches, from the statistics windows.
    batch_records: AtomicI64,
    batches: AtomicI64,
    /// A consumer's Fetch responses that carried records, the records they carried, and the
    /// fetches it postponed because its prefetch queue was full (from `debug=fetch` lines).
    fetch_responses: AtomicU64,
    fetched_records: AtomicU64,
    queue_full_backoffs: AtomicU64,
    /// A transactional producer's AddPartitionsToTxn answered `CONCURRENT_TRANSACTIONS` (the
    /// previous transaction still completing), counted from `debug=eos` lines; librdkafka
    /// retries each after 20 ms.
    pub(crate) concurrent_transactions: AtomicU64,
}

impl Ctx {
    pub(crate) fn new(label: String) -> Self {
        Self {
            label,
            start: Instant::now(),
            logged: AtomicU32::new(0),
            first_error: Mutex::new(None),
            delivered: AtomicU64::new(0),
            failed: AtomicU64::new(0),
            waiting: AtomicBool::new(false),
            wake: (Mutex::new(()), Condvar::new()),
            latencies: Mutex::new(crate::stats::Latencies::with_capacity(1 << 20)),
            batch_records: AtomicI64::new(0),
            batches: AtomicI64::new(0),
            fetch_responses: AtomicU64::new(0),
            fetched_records: AtomicU64::new(0),
            queue_full_backoffs: AtomicU64::new(0),
            concurrent_transactions: AtomicU64::new(0),
        }
    }

    fn keep_error(&self, e: String) {
        if let Ok(mut first) = self.first_error.lock() {
            first.get_or_insert(e);
        }
    }

    pub(crate) fn first_error(&self) -> String {
        self.first_error.lock().ok().and_then(|e| e.clone()).unwrap_or_else(|| "none reported".into())
    }

    /// Nanoseconds since the context was made (a record's send time, its delivery opaque).
    pub(crate) fn now_ns(&self) -> usize {
        self.start.elapsed().as_nanos() as usize
    }

    /// Waits until `target` records are delivered; fails when one failed, or when none is
    /// delivered for [`STALL`].
    pub(crate) fn wait_delivered(&self, target: u64) -> Result<()> {
        let (lock, cv) = &self.wake;
        let mut guard = lock.lock().map_err(|_| anyhow!("wake lock poisoned"))?;
        let mut seen = self.delivered.load(Ordering::SeqCst);
        let mut progress = Instant::now();
        loop {
            self.waiting.store(true, Ordering::SeqCst);
            let delivered = self.delivered.load(Ordering::SeqCst);
            if self.failed.load(Ordering::SeqCst) > 0 {
                self.waiting.store(false, Ordering::SeqCst);
                bail!("a record failed: {}", self.first_error());
            }
            if delivered >= target {
                self.waiting.store(false, Ordering::SeqCst);
                return Ok(());
            }
            if delivered > seen {
                (seen, progress) = (delivered, Instant::now());
            } else if progress.elapsed() > STALL {
                self.waiting.store(false, Ordering::SeqCst);
                bail!(
                    "no delivery report for {} s ({delivered} of {target} delivered); first error: {}",
                    STALL.as_secs(),
                    self.first_error()
                );
            }
            guard = cv.wait_timeout(guard, Duration::from_millis(50)).map_err(|_| anyhow!("wake lock poisoned"))?.0;
        }
    }

    /// Counts a consumer's `debug=fetch` lines: `Enqueue N message(s) …` once per Fetch
    /// response with records, and `… Fetch backoff for Nms: Local: Queue full` each time the
    /// prefetch queue held `queued.min.messages` or `queued.max.messages.kbytes` and librdkafka
    /// postponed the next fetch by `fetch.queue.backoff.ms`.
    fn count_fetch(&self, fac: &str, line: &str) {
        if fac == "CONSUME" {
            if let Some(n) =
                line.split_once("Enqueue ").and_then(|(_, rest)| rest.split(' ').next()?.parse::<u64>().ok())
            {
                self.fetch_responses.fetch_add(1, Ordering::Relaxed);
                self.fetched_records.fetch_add(n, Ordering::Relaxed);
            }
        } else if fac == "BACKOFF" && line.contains("Queue full") {
            self.queue_full_backoffs.fetch_add(1, Ordering::Relaxed);
        }
    }

    fn mean_batch(&self) -> Option<f64> {
        let batches = self.batches.load(Ordering::Relaxed);
        (batches > 0).then(|| self.batch_records.load(Ordering::Relaxed) as f64 / batches as f64)
    }
}

impl ClientContext for Ctx {
    fn log(&self, level: RDKafkaLogLevel, fac: &str, log_message: &str) {
        if matches!(level, RDKafkaLogLevel::Debug) {
            self.count_fetch(fac, log_message);
            // librdkafka's text for CONCURRENT_TRANSACTIONS.
            if fac == "ADDPARTS" && log_message.contains("another concurrent operation") {
                self.concurrent_transactions.fetch_add(1, Ordering::Relaxed);
            }
            return;
        }
        if (level as i32) <= (RDKafkaLogLevel::Warning as i32)
            && self.logged.fetch_add(1, Ordering::Relaxed) < LOG_LINES_MAX
        {
            eprintln!("  librdkafka ({}) {level:?} {fac}: {log_message}", self.label);
        }
    }

    fn error(&self, error: KafkaError, reason: &str) {
        if self.logged.fetch_add(1, Ordering::Relaxed) < LOG_LINES_MAX {
            eprintln!("  librdkafka ({}) error: {error}: {reason}", self.label);
        }
        self.keep_error(format!("{error}: {reason}"));
    }

    fn stats_raw(&self, statistics: &[u8]) {
        // Only the topics' batch-size windows (records per batch since the last statistics).
        let Ok(v) = serde_json::from_slice::<serde_json::Value>(statistics) else { return };
        let Some(topics) = v["topics"].as_object() else { return };
        for topic in topics.values() {
            let window = &topic["batchcnt"];
            if let (Some(sum), Some(cnt)) = (window["sum"].as_i64(), window["cnt"].as_i64()) {
                self.batch_records.fetch_add(sum, Ordering::Relaxed);
                self.batches.fetch_add(cnt, Ordering::Relaxed);
            }
        }
    }
}

impl ProducerContext for Ctx {
    type DeliveryOpaque = usize;

    fn delivery(&self, result: &DeliveryResult<'_>, sent_ns: usize) {
        match result {
            Ok(_) => {
                let ns = self.now_ns().saturating_sub(sent_ns);
                if let Ok(mut l) = self.latencies.lock() {
                    l.push(Duration::from_nanos(ns as u64));
                }
                self.delivered.fetch_add(1, Ordering::SeqCst);
            }
            Err((e, _)) => {
                self.keep_error(format!("delivery failed: {e}"));
                self.failed.fetch_add(1, Ordering::SeqCst);
            }
        }
        // One wake-up per wait: the waiter sets the flag again before it checks the count.
        if self.waiting.swap(false, Ordering::SeqCst) {
            let _guard = self.wake.0.lock();
            self.wake.1.notify_all();
        }
    }
}

impl ConsumerContext for Ctx {}

/// Queues one record (`value`) for `partition` of `topic`, its send time as the delivery opaque; while
/// librdkafka's queue is full, waits for the next delivery report.
pub(crate) fn send(producer: &ThreadedProducer<Ctx>, topic: &str, partition: i32, value: &[u8]) -> Result<()> {
    let ctx = producer.context();
    let mut record = BaseRecord::<(), [u8], usize>::with_opaque_to(topic, 0).payload(value).partition(partition);
    loop {
        record.delivery_opaque = ctx.now_ns();
        match producer.send(record) {
            Ok(()) => return Ok(()),
            Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                record = r;
                ctx.wait_delivered(ctx.delivered.load(Ordering::SeqCst) + 1)?;
            }
            Err((e, _)) => bail!("send: {e}"),
        }
    }
}

/// CPU time (user + system) of the broker process and of this one (the client and its
/// librdkafka threads).
#[derive(Clone, Copy)]
pub(crate) struct Cpu {
    broker: Option<Duration>,
    client: Option<Duration>,
}

impl Cpu {
    pub(crate) fn now(pid: Option<u32>) -> Self {
        Self { broker: pid.and_then(|p| machine::cpu_time(&p.to_string())), client: machine::cpu_time("self") }
    }

    /// CPU per `unit` records since `before`, for the broker and the client.
    pub(crate) fn per(before: Cpu, after: Cpu, records: u64, unit: u64) -> (String, String) {
        let per = |a: Option<Duration>, b: Option<Duration>| match (a, b) {
            (Some(a), Some(b)) if records > 0 => {
                dur(Duration::from_secs_f64(b.saturating_sub(a).as_secs_f64() * unit as f64 / records as f64))
            }
            _ => "?".into(),
        };
        (per(before.broker, after.broker), per(before.client, after.client))
    }
}

/// The embedded log appending Kafka batches of `batch` 200-byte records to one partition, one
/// writer, for `duration`; `matched`: the batch size is librdkafka's mean in the produce workload.
pub fn embedded_batches(dir: &Path, duration: Duration, batch: usize, matched: bool) -> Result<Measurement> {
    let batch = batch.max(1);
    let how = if matched { "librdkafka's mean batch in the produce workload" } else { "fixed" };
    let log =
        Log::open(dir, LogConfig::default()).with_context(|| format!("opening evident log in {}", dir.display()))?;
    log.create_topic(TOPIC, TopicConfig { partitions: 1, ..TopicConfig::default() })?;
    let now = payload::now_ms();
    let mut builder = BatchBuilder::new().idempotent(1, 0, 0);
    for _ in 0..batch {
        builder.push(NewRecord { key: None, value: Some(value().to_vec()), headers: Vec::new(), timestamp_ms: now });
    }
    let template = builder.build();
    let before = log.stats();
    let mut out = driver::run(
        1,
        duration,
        |_| Ok(template.clone()),
        |bytes, _, i| {
            // An idempotent producer's next batch: the base sequence advances by the batch size.
            let sequence = (i * batch as u64 % (i32::MAX as u64 + 1)) as i32;
            bytes[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&sequence.to_be_bytes());
            let crc = crc32c::crc32c(&bytes[CRC_FROM..]);
            bytes[CRC_AT..CRC_FROM].copy_from_slice(&crc.to_be_bytes());
            let outcome = log.append_batch(TOPIC, 0, bytes, None)?;
            ensure!(outcome.records.len() == batch && !outcome.duplicate, "batch {i} not appended whole");
            Ok(())
        },
    )?;
    let after = log.stats();
    log.close()?;
    let secs = out.elapsed.as_secs_f64();
    let (p50, p99) = out.latencies.p50_p99();
    let syncs = after.syncs - before.syncs;
    Ok(Measurement::new(
        System::Evident,
        Key::KafkaEmbeddedBatch { matched },
        format!("batches of {} {RECORD_BYTES}-byte records (Kafka batch via append_batch), 1 writer", num(batch as f64)),
        out.ops as f64 * batch as f64 / secs,
        "records/s",
    )
    .latency(p50, p99)
    .mb((after.bytes_written - before.bytes_written) as f64 / secs / 1e6)
    .note(format!(
        "in process, one partition, keyless records, idempotent producer fields; batch size {how}; run right after the produce workload, in a fresh log; MB/s = journal bytes; {:.2} syncs per batch; p50/p99 per batch",
        syncs as f64 / out.ops.max(1) as f64
    )))
}

/// The broker being measured.
enum Process {
    Evident(Server),
    Tansu(Child),
    /// Apache Kafka, started by `script` with its storage and PID file under `dir`.
    Kafka {
        script: PathBuf,
        dir: PathBuf,
    },
}

/// A broker on 127.0.0.1 and the Kafka workloads against it.
pub struct Broker {
    system: System,
    bootstrap: String,
    process: Option<Process>,
    /// From the start command to accepting connections.
    started_in: Duration,
}

impl Broker {
    /// Starts `evident serve` (its HTTP API and Kafka listener) with its data in `dir`.
    pub fn evident(dir: &Path) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        let start = Instant::now();
        let server = Server::start(dir)?;
        let started_in = start.elapsed();
        let bootstrap = server.kafka.clone();
        Ok(Self { system: System::EvidentKafka, bootstrap, process: Some(Process::Evident(server)), started_in })
    }

    /// Starts Apache Kafka (one KRaft node, combined broker and controller) from Maven's jars
    /// with `scripts/kafka-ref.sh`, its storage in `dir`, on two free ports of 127.0.0.1:
    /// `durable` adds `log.flush.interval.messages=1` (an fsync per append), else Kafka's
    /// defaults. The script fetches the jars on its first run (`scripts/java-setup.sh`).
    pub fn apache_kafka(script: &Path, dir: &Path, durable: bool) -> Result<Self> {
        Self::kafka_ref(script, dir, durable, 1)
    }

    /// Starts a three-node Apache Kafka cluster (each node a combined broker and controller;
    /// replication factor 3, `min.insync.replicas` 2, Kafka's flush defaults: durable by
    /// replication) with `scripts/kafka-ref.sh --nodes 3`, storage in `dir`.
    pub fn apache_kafka_cluster(script: &Path, dir: &Path) -> Result<Self> {
        Self::kafka_ref(script, dir, false, 3)
    }

    fn kafka_ref(script: &Path, dir: &Path, durable: bool, nodes: u16) -> Result<Self> {
        std::fs::create_dir_all(dir)?;
        // The script takes a port P and gives node i P + 2i for clients, P + 2i + 1 for its
        // controller: 2 * nodes consecutive free ports.
        let port = loop {
            let p = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
            if p < u16::MAX - 2 * nodes && (1..2 * nodes).all(|i| TcpListener::bind(("127.0.0.1", p + i)).is_ok()) {
                break p;
            }
        };
        let mut cmd = Command::new("bash");
        cmd.arg(script).args(["start", "--dir"]).arg(dir).args(["--port", &port.to_string()]);
        cmd.args(["--nodes", &nodes.to_string()]);
        if durable {
            cmd.arg("--flush-every-message");
        }
        let start = Instant::now();
        let out = cmd.stdin(Stdio::null()).output().with_context(|| format!("running {}", script.display()))?;
        let started_in = start.elapsed();
        let process = Some(Process::Kafka { script: script.to_path_buf(), dir: dir.to_path_buf() });
        let system = match (nodes, durable) {
            (3, _) => System::KafkaCluster,
            (_, true) => System::KafkaDurable,
            (_, false) => System::KafkaDefault,
        };
        // Stopped by Drop if anything below fails.
        let mut broker = Self { system, bootstrap: String::new(), process, started_in };
        ensure!(
            out.status.success(),
            "{} start failed ({}): {}",
            script.display(),
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let stdout = String::from_utf8_lossy(&out.stdout);
        broker.bootstrap = stdout
            .lines()
            .find_map(|l| l.strip_prefix("KAFKA_REF_BOOTSTRAP="))
            .map(|b| b.trim().trim_matches('\'').to_string())
            .with_context(|| format!("no KAFKA_REF_BOOTSTRAP in the script's output: {stdout}"))?;
        eprintln!(
            "  Apache Kafka (pid {}) listening on {} after {}, storage in {}{}",
            broker.pid().map_or("?".into(), |p| p.to_string()),
            broker.bootstrap,
            dur(started_in),
            dir.display(),
            match (nodes, durable) {
                (3, _) => ", three nodes (replication factor 3, min.insync.replicas 2)",
                (_, true) => ", log.flush.interval.messages=1",
                (_, false) => ", defaults",
            }
        );
        Ok(broker)
    }

    /// Tansu's storage engine URL.
    pub fn tansu_storage() -> String {
        std::env::var(TANSU_STORAGE_ENV).ok().filter(|s| !s.is_empty()).unwrap_or_else(|| TANSU_STORAGE.into())
    }

    /// Starts `bin broker` on a free port of 127.0.0.1 with its storage (SQLite unless
    /// `$EVIDENT_BENCH_TANSU_STORAGE` says otherwise) in `dir` (its log in `dir/tansu.log`), and
    /// waits until it accepts connections.
    pub fn tansu(bin: &Path, dir: &Path) -> Result<Self> {
        let storage = Self::tansu_storage();
        std::fs::create_dir_all(dir)?;
        let start = Instant::now();
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let url = format!("tcp://127.0.0.1:{port}");
        let log = std::fs::File::create(dir.join("tansu.log"))?;
        let mut child = Command::new(bin)
            .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
            .args(["--storage-engine", &storage])
            .env("RUST_LOG", "warn")
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(log.try_clone()?)
            .stderr(log)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let addr = SocketAddr::from(([127, 0, 0, 1], port));
        let deadline = Instant::now() + START_TIMEOUT;
        loop {
            if let Some(status) = child.try_wait()? {
                let log = std::fs::read_to_string(dir.join("tansu.log")).unwrap_or_default();
                bail!("tansu exited before listening ({status}); its output: {log}");
            }
            if TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_ok() {
                break;
            }
            if Instant::now() >= deadline {
                let _ = child.kill();
                let _ = child.wait();
                bail!("tansu did not listen on {addr} within {} s", START_TIMEOUT.as_secs());
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        eprintln!("  tansu (pid {}) listening on 127.0.0.1:{port}, storage {storage} in {}", child.id(), dir.display());
        Ok(Self {
            system: System::Tansu,
            bootstrap: format!("127.0.0.1:{port}"),
            process: Some(Process::Tansu(child)),
            started_in: start.elapsed(),
        })
    }

    pub(crate) fn pid(&self) -> Option<u32> {
        match &self.process {
            Some(Process::Evident(s)) => s.pid(),
            Some(Process::Tansu(c)) => Some(c.id()),
            Some(Process::Kafka { dir, .. }) => std::fs::read_to_string(dir.join("n0/pid")).ok()?.trim().parse().ok(),
            None => None,
        }
    }

    /// The PIDs of every node of an Apache Kafka started by the script (n0, n1, ...), else
    /// of the broker.
    pub(crate) fn pids(&self) -> Vec<u32> {
        match &self.process {
            Some(Process::Kafka { dir, .. }) => (0..)
                .map_while(|i| std::fs::read_to_string(dir.join(format!("n{i}/pid"))).ok())
                .filter_map(|p| p.trim().parse().ok())
                .collect(),
            _ => self.pid().into_iter().collect(),
        }
    }

    pub(crate) fn config(&self) -> ClientConfig {
        let mut c = ClientConfig::new();
        c.set("bootstrap.servers", &self.bootstrap);
        c
    }

    pub(crate) fn label(&self, role: &str) -> String {
        format!("{} {role}", self.system)
    }

    /// Creates the topics with the admin API (CreateTopics): one partition, eight, and
    /// kafka-producer-perf-test's.
    pub fn create_topic(&self) -> Result<()> {
        let admin: AdminClient<Ctx> =
            self.config().create_with_context(Ctx::new(self.label("admin"))).context("creating the admin client")?;
        let topics = [
            NewTopic::new(TOPIC, 1, TopicReplication::Fixed(1)),
            NewTopic::new(TOPIC8, 8, TopicReplication::Fixed(1)),
            NewTopic::new(TOPIC_PERF, 1, TopicReplication::Fixed(1)),
            NewTopic::new(TOPIC_WARM_UP, 1, TopicReplication::Fixed(1)),
        ];
        let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
        let results = block_on(admin.create_topics(&topics, &options)).context("CreateTopics")?;
        for r in results {
            if let Err((name, code)) = r {
                bail!("CreateTopics {name}: {code}");
            }
        }
        Ok(())
    }

    /// A producer (acks=all, idempotent, `extra` settings over librdkafka's defaults) that has
    /// delivered one warm-up record: metadata fetched, `InitProducerId` done. Returns it and the
    /// warm-up's duration. Its own thread polls for delivery reports (the callback wakes a
    /// waiting sender at once; `flush` would poll in 100 ms steps).
    fn producer(&self, role: &str, extra: &[(&str, &str)]) -> Result<(ThreadedProducer<Ctx>, Duration)> {
        let mut config = self.config();
        config.set("acks", "all").set("enable.idempotence", "true");
        for (k, v) in extra {
            config.set(*k, *v);
        }
        let producer: ThreadedProducer<Ctx> =
            config.create_with_context(Ctx::new(self.label(role))).context("creating the producer")?;
        let warm = Instant::now();
        send(&producer, TOPIC, 0, value())?;
        let ctx = producer.context().clone();
        ctx.wait_delivered(1).context("the warm-up record")?;
        let warm = warm.elapsed();
        ctx.latencies.lock().map_err(|_| anyhow!("latencies poisoned"))?.clear();
        Ok((producer, warm))
    }

    /// Produces `records` records as fast as librdkafka takes them (the first as a warm-up,
    /// untimed) to the one-partition topic or, with `partitions` 8, round-robin to the
    /// eight-partition one; see the module's doc.
    pub fn produce(&self, records: u64, partitions: u32) -> Result<(Measurement, Option<f64>)> {
        let topic = if partitions == 1 { TOPIC } else { TOPIC8 };
        ensure!(partitions == 1 || partitions == 8, "the topics have 1 or 8 partitions");
        self.produce_to(topic, records, partitions, value())
    }

    /// Produces up to [`WARM_UP_RECORDS`] records to a topic of their own, untimed, so that
    /// every broker is measured warm: a JVM broker runs interpreted until its JIT compiles
    /// the hot paths, which a short run would otherwise charge to the first workload.
    pub fn warm_up(&self, records: u64) -> Result<()> {
        self.produce_to(TOPIC_WARM_UP, records.clamp(2, WARM_UP_RECORDS), 1, value()).map(|_| ())
    }

    /// The produce workload with `value` as every record's value, to partition 0 of `topic`
    /// (created by the caller; [`Broker::create_topic`] must have run, for the warm-up record).
    /// The row is keyed and worded as [`Broker::produce`]'s; the caller rewords it.
    pub(crate) fn produce_values(&self, topic: &str, records: u64, value: &[u8]) -> Result<Measurement> {
        Ok(self.produce_to(topic, records, 1, value)?.0)
    }

    /// The evident server's schema registry (`http://127.0.0.1:PORT`), if this broker is evident.
    pub(crate) fn registry_url(&self) -> Option<&str> {
        match &self.process {
            Some(Process::Evident(s)) if !s.registry.is_empty() => Some(&s.registry),
            _ => None,
        }
    }

    /// Who this broker is (for the report's rows).
    pub(crate) fn system(&self) -> System {
        self.system
    }

    /// The broker's `host:port`.
    pub(crate) fn bootstrap(&self) -> &str {
        &self.bootstrap
    }

    fn produce_to(
        &self,
        topic: &str,
        records: u64,
        partitions: u32,
        value: &[u8],
    ) -> Result<(Measurement, Option<f64>)> {
        ensure!(records >= 2, "produce needs at least 2 records");
        let (producer, warm) = self.producer("producer", &[("statistics.interval.ms", "100")])?;
        let ctx = producer.context().clone();
        let timed = records - 1;
        let cpu = Cpu::now(self.pid());
        let start = Instant::now();
        for i in 0..timed {
            send(&producer, topic, (i % u64::from(partitions)) as i32, value)?;
        }
        let waited = ctx.wait_delivered(records);
        let elapsed = start.elapsed();
        let cpu = Cpu::per(cpu, Cpu::now(self.pid()), timed, 1000);
        waited?;
        let failed = ctx.failed.load(Ordering::SeqCst);
        ensure!(failed == 0, "{failed} records failed; first error: {}", ctx.first_error());
        // The last statistics window.
        std::thread::sleep(Duration::from_millis(250));
        let (p50, p99) = ctx.latencies.lock().map_err(|_| anyhow!("latencies poisoned"))?.p50_p99();
        let secs = elapsed.as_secs_f64();
        let mean_batch = ctx.mean_batch();
        let batch = mean_batch.map_or("?".into(), num);
        let m = Measurement::new(
            self.system,
            Key::KafkaProduce { partitions },
            format!(
                "produce {} {}-byte records, acks=all, idempotent, {partitions} partition{}",
                num(timed as f64),
                value.len(),
                if partitions == 1 { "" } else { "s" }
            ),
            timed as f64 / secs,
            "records/s",
        )
        .latency(p50, p99)
        .mb(timed as f64 * value.len() as f64 / secs / 1e6)
        .note(format!(
            "librdkafka ThreadedProducer, default batching (linger.ms 5, batch.size 1 MB, up to 100,000 records queued); {batch} records per batch (librdkafka statistics); p50/p99 per record from send() to its delivery report, so they include the wait in librdkafka's full queue; warm-up (metadata, InitProducerId) {}; CPU per 1,000 records: broker {}, client {}; MB/s = values",
            dur(warm),
            cpu.0,
            cpu.1
        ));
        Ok((m, mean_batch))
    }

    /// Produces one record at a time (send, then wait for its delivery report) for `duration`,
    /// with `linger.ms=0`: the latency of one acknowledged record.
    pub fn produce_one_at_a_time(&self, duration: Duration) -> Result<Measurement> {
        let (producer, _) = self.producer("producer (one at a time)", &[("linger.ms", "0")])?;
        let ctx = producer.context().clone();
        let mut lat = crate::stats::Latencies::with_capacity(1 << 16);
        let cpu = Cpu::now(self.pid());
        let start = Instant::now();
        let mut n = 0u64;
        while start.elapsed() < duration || n < 10 {
            let t = Instant::now();
            send(&producer, TOPIC, 0, value())?;
            n += 1;
            ctx.wait_delivered(n + 1)?;
            lat.push(t.elapsed());
        }
        let elapsed = start.elapsed();
        let cpu = Cpu::per(cpu, Cpu::now(self.pid()), n, 1);
        let (p50, p99) = lat.p50_p99();
        Ok(Measurement::new(
            self.system,
            Key::KafkaProduceOne,
            format!("produce one {RECORD_BYTES}-byte record at a time, acks=all, idempotent"),
            n as f64 / elapsed.as_secs_f64(),
            "records/s",
        )
        .latency(p50, p99)
        .note(format!(
            "librdkafka ThreadedProducer, linger.ms 0; the next record is sent when the previous one's delivery report arrives; p50/p99 per record, send() to delivery report; CPU per record: broker {}, client {}",
            cpu.0, cpu.1
        )))
    }

    /// Reads `records` records from offset 0 of the topic's partition; see the module's doc.
    pub fn consume(&self, records: u64) -> Result<Measurement> {
        let mut config = self.config();
        // librdkafka's assign() needs a group id, though no group is joined (no subscribe, no
        // commits).
        config
            .set("group.id", "evident-bench")
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            // Counted, not printed: the Fetch responses and the queue-full backoffs.
            .set("debug", "fetch")
            .set_log_level(RDKafkaLogLevel::Debug)
            // librdkafka's 1 s default pause after a full prefetch queue idles the consumer for
            // ~0.9 s of a ~1 s run, charged to whichever broker filled the queue first.
            .set("fetch.queue.backoff.ms", "10");
        let mut settings = "default fetch settings but fetch.queue.backoff.ms=10".to_string();
        if let Ok(extra) = std::env::var("EVIDENT_BENCH_CONSUME_EXTRA") {
            for kv in extra.split(',').filter(|kv| !kv.is_empty()) {
                let (k, v) = kv.split_once('=').context("EVIDENT_BENCH_CONSUME_EXTRA: k=v,...")?;
                config.set(k, v);
                settings.push_str(&format!(", {k}={v}"));
            }
        }
        let consumer: BaseConsumer<Ctx> =
            config.create_with_context(Ctx::new(self.label("consumer"))).context("creating the consumer")?;
        let mut tpl = TopicPartitionList::new();
        tpl.add_partition_offset(TOPIC, 0, Offset::Offset(0))?;
        let cpu = Cpu::now(self.pid());
        let start = Instant::now();
        consumer.assign(&tpl).context("assign")?;
        let mut n = 0u64;
        let mut bytes = 0u64;
        let mut first = None;
        let mut last_progress = Instant::now();
        while n < records {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    ensure!(m.offset() == n as i64, "record {n} came at offset {}", m.offset());
                    let len = m.payload().map_or(0, <[u8]>::len);
                    ensure!(len == RECORD_BYTES, "record at offset {n} has a {len}-byte value");
                    bytes += len as u64;
                    n += 1;
                    if first.is_none() {
                        first = Some(start.elapsed());
                    }
                    last_progress = Instant::now();
                }
                Some(Err(e)) => bail!("consuming after {n} records: {e}"),
                None if last_progress.elapsed() > STALL => bail!(
                    "no record for {} s after {n} of {records}; first error: {}",
                    STALL.as_secs(),
                    consumer.context().first_error()
                ),
                None => {}
            }
        }
        let elapsed = start.elapsed();
        let cpu = Cpu::per(cpu, Cpu::now(self.pid()), records, 1000);
        let secs = elapsed.as_secs_f64();
        let ctx = consumer.context();
        let responses = ctx.fetch_responses.load(Ordering::Relaxed);
        let fetched = ctx.fetched_records.load(Ordering::Relaxed);
        let backoffs = ctx.queue_full_backoffs.load(Ordering::Relaxed);
        Ok(Measurement::new(
            self.system,
            Key::KafkaConsume,
            format!("consume {} records from offset 0, 1 partition", num(records as f64)),
            records as f64 / secs,
            "records/s",
        )
        .mb(bytes as f64 / secs / 1e6)
        .note(format!(
            "librdkafka BaseConsumer, assign() without a group, {settings}, one poll() per record, offsets and value sizes checked; first record after {}; CPU per 1,000 records: broker {}, client {}; {} Fetch responses with records ({} records each on average), {} fetches postponed by a full prefetch queue; MB/s = values",
            first.map_or("-".into(), dur),
            cpu.0,
            cpu.1,
            num(responses as f64),
            if responses == 0 { "-".into() } else { num(fetched as f64 / responses as f64) },
            backoffs
        )))
    }

    /// Stops the broker: `evident serve` with SIGTERM and a clean exit checked; Tansu with
    /// SIGTERM (killed after 10 s).
    pub fn stop(mut self) -> Result<()> {
        match self.process.take() {
            Some(Process::Evident(mut server)) => server.stop(),
            Some(Process::Tansu(mut child)) => stop_child(&mut child),
            Some(Process::Kafka { script, dir }) => stop_kafka(&script, &dir),
            None => Ok(()),
        }
    }

    /// The broker's start-up time and its peak resident memory so far (`VmHWM`).
    pub fn footprint(&self) -> Vec<Measurement> {
        let mut rows = vec![Measurement::new(
            self.system,
            Key::KafkaStart,
            "start-up: from the command to accepting connections",
            self.started_in.as_secs_f64(),
            "s",
        )
        .note(match self.process {
            Some(Process::Kafka { .. }) => "scripts/kafka-ref.sh start: formats the storage (kafka.tools.StorageTool, a JVM of its own) then starts the broker and waits until it logs that it started",
            Some(Process::Evident(_)) => "evident serve on a fresh data directory, until its listeners accept connections",
            _ => "until it accepts connections",
        })];
        let peak = self.pid().and_then(|p| machine::pid_status_kib(p, "VmHWM"));
        if let Some(kib) = peak {
            rows.push(Measurement::new(
                self.system,
                Key::KafkaRss,
                "peak resident memory (VmHWM) after the Kafka workloads",
                kib as f64 / 1024.0,
                "MiB",
            ));
        }
        rows
    }

    /// Runs Kafka's own `kafka-producer-perf-test` (the Java client, from the jars
    /// `scripts/java-setup.sh` installed in `lib`): `records` 200-byte records, acks=all,
    /// idempotent, to the perf topic; parses its summary line.
    pub fn perf_test(&self, lib: &Path, records: u64) -> Result<Measurement> {
        let cpu = Cpu::now(self.pid());
        let out = Command::new("java")
            .arg("-Xmx512m")
            .arg("-cp")
            .arg(format!("{}/*", lib.display()))
            .arg("org.apache.kafka.tools.ProducerPerformance")
            .args(["--topic", TOPIC_PERF, "--num-records", &records.to_string()])
            .args(["--record-size", &RECORD_BYTES.to_string(), "--throughput", "-1", "--producer-props"])
            .arg(format!("bootstrap.servers={}", self.bootstrap))
            .args(["acks=all", "enable.idempotence=true"])
            .stdin(Stdio::null())
            .output()
            .context("running java (kafka-producer-perf-test)")?;
        let cpu = Cpu::per(cpu, Cpu::now(self.pid()), records, 1000);
        let stdout = String::from_utf8_lossy(&out.stdout);
        ensure!(
            out.status.success(),
            "kafka-producer-perf-test failed ({}): {stdout} {}",
            out.status,
            String::from_utf8_lossy(&out.stderr)
        );
        let summary = perf_test_summary(&stdout)
            .with_context(|| format!("no summary line in kafka-producer-perf-test's output: {stdout}"))?;
        ensure!(summary.records == records, "kafka-producer-perf-test sent {} of {records} records", summary.records);
        Ok(Measurement::new(
            self.system,
            Key::KafkaPerfTest,
            format!(
                "kafka-producer-perf-test, {} {RECORD_BYTES}-byte records, acks=all, idempotent, 1 partition",
                num(records as f64)
            ),
            summary.rate,
            "records/s",
        )
        .latency(summary.p50, summary.p99)
        .mb(records as f64 * RECORD_BYTES as f64 / (records as f64 / summary.rate) / 1e6)
        .note(format!(
            "Kafka 4.4's ProducerPerformance (Java client, its defaults: linger.ms 5, batch.size 16 KiB), --throughput -1; its own p50/p99 (ms resolution); broker CPU per 1,000 records {}",
            cpu.0
        )))
    }
}

/// The figures of kafka-producer-perf-test's last line: `N records sent, R records/sec (M MB/sec),
/// A ms avg latency, X ms max latency, P50 ms 50th, P95 ms 95th, P99 ms 99th, P999 ms 99.9th.`
#[derive(Debug, PartialEq)]
struct PerfSummary {
    records: u64,
    rate: f64,
    p50: Duration,
    p99: Duration,
}

fn perf_test_summary(output: &str) -> Option<PerfSummary> {
    let line = output.lines().rev().find(|l| l.contains("records sent") && l.contains("50th"))?;
    let records = line.split_whitespace().next()?.parse().ok()?;
    let rate = line.split(", ").nth(1)?.split_whitespace().next()?.parse().ok()?;
    let ms_before = |suffix: &str| -> Option<Duration> {
        let part = line.split(", ").find(|p| p.trim_end_matches('.').ends_with(suffix))?;
        let ms: f64 = part.split_whitespace().next()?.parse().ok()?;
        Some(Duration::from_secs_f64(ms / 1e3))
    };
    Some(PerfSummary { records, rate, p50: ms_before("ms 50th")?, p99: ms_before("ms 99th")? })
}

/// Stops Apache Kafka with its script (SIGTERM, SIGKILL after a bound).
fn stop_kafka(script: &Path, dir: &Path) -> Result<()> {
    let status = Command::new("bash")
        .arg(script)
        .args(["stop", "--dir"])
        .arg(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .status()
        .with_context(|| format!("running {} stop", script.display()))?;
    ensure!(status.success(), "{} stop: {status}", script.display());
    Ok(())
}

/// The script that runs Apache Kafka: `scripts/kafka-ref.sh` of this repository (found from
/// the working directory or the bench's source tree); Err says where it was looked for.
pub fn kafka_ref_script() -> std::result::Result<PathBuf, String> {
    let here = PathBuf::from(KAFKA_REF);
    if here.is_file() {
        return Ok(here);
    }
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("../..").join(KAFKA_REF);
    if source.is_file() {
        Ok(source)
    } else {
        Err(format!("{KAFKA_REF} and {}", source.display()))
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        match self.process.take() {
            Some(Process::Tansu(mut child)) => {
                let _ = stop_child(&mut child);
            }
            Some(Process::Kafka { script, dir }) => {
                let _ = stop_kafka(&script, &dir);
            }
            _ => {}
        }
    }
}

fn stop_child(child: &mut Child) -> Result<()> {
    let pid = child.id().to_string();
    let _ = Command::new("kill").args(["-TERM", &pid]).stdout(Stdio::null()).status();
    let deadline = Instant::now() + Duration::from_secs(10);
    while Instant::now() < deadline {
        if child.try_wait()?.is_some() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.kill()?;
    child.wait()?;
    Ok(())
}

/// The Tansu binary: `$EVIDENT_BENCH_TANSU`, else `~/.cache/evident-bench/tansu/bin/tansu`;
/// Err names where it was looked for.
pub fn tansu_binary() -> std::result::Result<PathBuf, String> {
    let path = match std::env::var_os(TANSU_ENV) {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => match std::env::var_os("HOME") {
            Some(home) => PathBuf::from(home).join(".cache/evident-bench/tansu/bin/tansu"),
            None => return Err(format!("${TANSU_ENV} unset and no $HOME")),
        },
    };
    if path.is_file() {
        Ok(path)
    } else {
        Err(path.display().to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_value_is_200_bytes() {
        assert_eq!(value().len(), RECORD_BYTES);
    }

    #[test]
    fn the_perf_test_summary_is_parsed() {
        let out = "500000 records sent, 98765.4 records/sec (18.84 MB/sec), 12.3 ms avg latency, 456.0 ms max latency.\n\
                   1000000 records sent, 123456.7 records/sec (23.55 MB/sec), 12.30 ms avg latency, 456.00 ms max latency, 5 ms 50th, 20 ms 95th, 31 ms 99th, 40 ms 99.9th.\n";
        let s = perf_test_summary(out).expect("a summary");
        assert_eq!(s.records, 1_000_000);
        assert!((s.rate - 123_456.7).abs() < 1e-6);
        assert_eq!(s.p50, Duration::from_millis(5));
        assert_eq!(s.p99, Duration::from_millis(31));
    }

    #[test]
    fn the_consumers_fetch_lines_are_counted() {
        let ctx = Ctx::new("test".into());
        // librdkafka 2.12's `debug=fetch` lines, as the log callback receives them.
        ctx.count_fetch("CONSUME", "127.0.0.1:19092/1: Enqueue 4761 message(s) (952200 bytes, 4761 ops) on t [0] fetch queue (qlen 0, v2, last_offset 4760, 0 ctrl msgs, 0 aborted msgsets, uncompressed)");
        ctx.count_fetch("CONSUME", "127.0.0.1:19092/1: Enqueue 17 message(s) (3400 bytes, 17 ops) on t [0] fetch queue (qlen 4283, v2, last_offset 4777, 0 ctrl msgs, 0 aborted msgsets, uncompressed)");
        ctx.count_fetch("BACKOFF", "127.0.0.1:19092/1: t [0]: Fetch backoff for 1000ms: Local: Queue full");
        // Neither a response nor a queue-full backoff.
        ctx.count_fetch("FETCH", "127.0.0.1:19092/1: Fetch backoff for 1000ms");
        ctx.count_fetch(
            "BACKOFF",
            "127.0.0.1:19092/1: t [0]: Fetch backoff for 500ms: Broker: Not leader for partition",
        );
        assert_eq!(ctx.fetch_responses.load(Ordering::Relaxed), 2);
        assert_eq!(ctx.fetched_records.load(Ordering::Relaxed), 4778);
        assert_eq!(ctx.queue_full_backoffs.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn concurrent_transactions_answers_are_counted() {
        let ctx = Ctx::new("test".into());
        // librdkafka 2.12's `debug=eos` line for an AddPartitionsToTxn retried on CONCURRENT_TRANSACTIONS.
        ctx.log(RDKafkaLogLevel::Debug, "ADDPARTS", "127.0.0.1:9092/1: AddPartitionsToTxn response: partition \"t\": [0]: Broker: Producer attempted to update a transaction while another concurrent operation on the same transaction was ongoing");
        ctx.log(RDKafkaLogLevel::Debug, "ADDPARTS", "127.0.0.1:9092/1: Adding partitions t [0] to transaction");
        assert_eq!(ctx.concurrent_transactions.load(Ordering::Relaxed), 1);
    }

    #[test]
    fn block_on_completes_a_ready_future() {
        assert_eq!(block_on(async { 7 }), 7);
    }

    #[test]
    fn the_sequence_and_crc_sit_where_the_baseline_patches_them() {
        let mut b = BatchBuilder::new().idempotent(1, 0, 0);
        b.push(NewRecord { key: None, value: Some(value().to_vec()), headers: Vec::new(), timestamp_ms: 1 });
        let mut bytes = b.build();
        bytes[BASE_SEQUENCE_AT..BASE_SEQUENCE_AT + 4].copy_from_slice(&5000i32.to_be_bytes());
        let crc = crc32c::crc32c(&bytes[CRC_FROM..]);
        bytes[CRC_AT..CRC_FROM].copy_from_slice(&crc.to_be_bytes());
        let batch = evident_core::RecordBatch::parse_exact(&bytes).expect("valid CRC");
        assert_eq!(batch.header().base_sequence, 5000);
        assert_eq!(batch.header().producer_id, 1);
    }
}
