//! Kafka transactions (issue 14) with a real client: librdkafka's transactional producer (the
//! `rdkafka` crate, its bundled librdkafka 2.12) against `evident serve`'s Kafka listener and
//! against Apache Kafka with `log.flush.interval.messages=1` (an fsync per append, durable as
//! evident is; started as the Kafka phase starts it), in the same run, one broker after the
//! other; Tansu too when its binary is present (skipped, with the reason, when it refuses
//! transactions). Every client setting is the same on every broker.
//!
//! - *Transactional produce*: one producer (`transactional.id` of its own, `acks=all`,
//!   idempotent, `linger.ms=0`, librdkafka's other defaults) runs, for the timed duration, transactions of
//!   10, 100 or 1,000 200-byte records to partition 0 of a one-partition topic: begin, queue the
//!   records, wait for their delivery reports, `commit_transaction`. Committed records/s and
//!   transactions/s over the whole run; the latency is a transaction's commit, from the last
//!   record queued to `commit_transaction` returning (the records' Produce, AddPartitionsToTxn,
//!   EndTxn and, on evident, the markers), so it is what `commit_transaction` costs an
//!   application, which would flush the same records. Waiting for the delivery reports
//!   before the call is what `commit_transaction` does itself first; it is done here because
//!   rust-rdkafka's `commit_transaction` flushes by polling in 100 ms steps, which would add
//!   up to 100 ms to a commit whenever a record is still counted as outstanding (so the bench
//!   also waits until librdkafka counts none). `linger.ms=0` because a transaction's records
//!   wait in librdkafka until AddPartitionsToTxn has answered, so they go in one batch anyway,
//!   and `commit_transaction`'s own flush skips the linger: librdkafka's default 5 ms would
//!   only add max(0, 5 ms - the AddPartitionsToTxn round trip) to every transaction, most to
//!   the faster broker. The same with 100 records and 4
//!   producers at once (4 threads, each with its own producer and `transactional.id`, the same
//!   partition).
//! - *Idempotent batches*: the same shape without a transaction, so the difference is the
//!   transaction's cost: an idempotent producer (no `transactional.id`, `linger.ms=0` as
//!   well) queues 10, 100 or 1,000 records and waits for their delivery reports, again and
//!   again for the duration.
//! - *Consume-transform-produce*: an input topic loaded first (untimed, idempotent produce), read
//!   from offset 0 by a `read_committed` consumer (`group.id` set, `assign`, no subscription);
//!   each record's value transformed (its bytes reversed) and produced to an output topic by a
//!   transactional producer, 100 records per transaction, the consumer's position handed to
//!   the transaction with `send_offsets_to_transaction`, then committed. Records/s over the
//!   run; at the end the group's committed offset must equal the records processed.
//! - *Warm-up, excluded*: every broker first takes the Kafka phase's untimed warm-up (up to
//!   200,000 idempotent records), then one second of 100-record transactions, so a JVM broker
//!   runs its transaction path compiled; each producer's `init_transactions` and first
//!   transaction are untimed too.

use std::path::Path;
use std::sync::Barrier;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::{ClientConfig, RDKafkaLogLevel};
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::message::Message;
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use rdkafka::{Offset, TopicPartitionList};

use crate::cli::Plan;
use crate::kafka::{self, Broker, Cpu, Ctx, RECORD_BYTES};
use crate::report::{dur, num, Key, Measurement, Report};
use crate::stats::Latencies;

/// Records per transaction (and per idempotent batch) of the produce workloads.
pub const SIZES: [usize; 3] = [10, 100, 1000];
/// Records per transaction of the consume-transform-produce workload, and of the concurrent run.
pub const PER_TXN: usize = 100;
/// Concurrent transactional producers of the concurrent run.
pub const PRODUCERS: usize = 4;
/// The transactional and idempotent produce workloads' topic (one partition).
const TOPIC: &str = "txn-bench";
/// Consume-transform-produce: the input and the output (one partition each).
const TOPIC_IN: &str = "txn-bench-in";
const TOPIC_OUT: &str = "txn-bench-out";
/// The consume-transform-produce consumer's group.
const GROUP: &str = "txn-bench-ctp";
/// Bound on one transactional call (init, commit, offsets): a hang fails the workload.
const CALL_TIMEOUT: Duration = Duration::from_secs(30);
/// How long the consumer may go without a record before the workload fails.
const STALL: Duration = Duration::from_secs(30);
/// The transactional warm-up's length.
const TXN_WARM_UP: Duration = Duration::from_secs(1);

/// A transactional producer (`acks=all`, idempotent, `transactional.id` = `id`, librdkafka's
/// other defaults) with `init_transactions` done. Err when the broker refuses transactions.
fn txn_producer(broker: &Broker, id: &str) -> Result<ThreadedProducer<Ctx>> {
    let mut config = broker.config();
    config
        .set("acks", "all")
        .set("enable.idempotence", "true")
        .set("transactional.id", id)
        .set("linger.ms", "0")
        // Counted, not printed: AddPartitionsToTxn's CONCURRENT_TRANSACTIONS answers.
        .set("debug", "eos")
        .set_log_level(RDKafkaLogLevel::Debug);
    let producer: ThreadedProducer<Ctx> = config
        .create_with_context(Ctx::new(broker.label(&format!("transactional producer {id}"))))
        .context("creating the transactional producer")?;
    producer.init_transactions(CALL_TIMEOUT).map_err(|e| anyhow!("init_transactions: {e}"))?;
    Ok(producer)
}

/// One transaction of `size` records to partition 0 of `topic`; returns its commit's duration
/// (from the last record queued to `commit_transaction` returning) and the part of it spent in
/// `commit_transaction` once the records were acknowledged.
fn transaction(producer: &ThreadedProducer<Ctx>, topic: &str, size: usize) -> Result<(Duration, Duration)> {
    let ctx = producer.context();
    let target = ctx.delivered.load(std::sync::atomic::Ordering::SeqCst) + size as u64;
    producer.begin_transaction().map_err(|e| anyhow!("begin_transaction: {e}"))?;
    for _ in 0..size {
        kafka::send(producer, topic, 0, kafka::value())?;
    }
    let t = Instant::now();
    // What commit_transaction does first (flush); see the module's doc for why it is done here.
    ctx.wait_delivered(target)?;
    settle(producer)?;
    let acked = Instant::now();
    producer.commit_transaction(CALL_TIMEOUT).map_err(|e| anyhow!("commit_transaction: {e}"))?;
    Ok((t.elapsed(), acked.elapsed()))
}

/// Waits until librdkafka counts no record outstanding: a delivery report is counted by the
/// callback before librdkafka releases its record, and rust-rdkafka's `commit_transaction`
/// polls for 100 ms when its first flush still sees one.
pub(crate) fn settle(producer: &ThreadedProducer<Ctx>) -> Result<()> {
    let deadline = Instant::now() + STALL;
    while producer.in_flight_count() > 0 {
        ensure!(Instant::now() < deadline, "librdkafka still counts records in flight after {} s", STALL.as_secs());
        std::thread::sleep(Duration::from_micros(20));
    }
    Ok(())
}

/// What one producer did in a timed run.
struct Run {
    transactions: u64,
    /// AddPartitionsToTxn answers of CONCURRENT_TRANSACTIONS over the timed run.
    retries: u64,
    elapsed: Duration,
    commit: Latencies,
    end_txn: Latencies,
}

/// One producer's timed run: transactions of `size` records until `duration` has passed
/// (after `start` is passed by every producer).
fn txn_loop(broker: &Broker, id: &str, size: usize, duration: Duration, start: &Barrier) -> Result<Run> {
    // The first transaction registers the partition and fetches metadata: untimed. Whatever
    // happens, this producer passes the barrier once, so the others are not left waiting.
    let ready = txn_producer(broker, id)
        .and_then(|p| transaction(&p, TOPIC, size).context("the warm-up transaction").map(|_| p));
    start.wait();
    let producer = ready?;
    let retried = producer.context().concurrent_transactions.load(std::sync::atomic::Ordering::Relaxed);
    let mut run = Run {
        transactions: 0,
        retries: 0,
        elapsed: Duration::ZERO,
        commit: Latencies::with_capacity(1 << 14),
        end_txn: Latencies::with_capacity(1 << 14),
    };
    let t0 = Instant::now();
    while t0.elapsed() < duration || run.transactions < 3 {
        let (commit, end_txn) = transaction(&producer, TOPIC, size)?;
        run.commit.push(commit);
        run.end_txn.push(end_txn);
        run.transactions += 1;
    }
    run.elapsed = t0.elapsed();
    run.retries =
        producer.context().concurrent_transactions.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(retried);
    let failed = producer.context().failed.load(std::sync::atomic::Ordering::SeqCst);
    ensure!(failed == 0, "{failed} records failed; first error: {}", producer.context().first_error());
    Ok(run)
}

/// `producers` transactional producers at once, each running transactions of `size` records
/// for `duration`.
fn transactional(broker: &Broker, size: usize, producers: usize, duration: Duration) -> Result<Measurement> {
    let start = Barrier::new(producers + 1);
    let cpu_before = std::cell::Cell::new(None);
    let runs: Vec<Result<Run>> = std::thread::scope(|s| {
        let handles: Vec<_> = (0..producers)
            .map(|i| {
                let start = &start;
                s.spawn(move || {
                    let id = format!("txn-bench-{size}-{producers}-{i}");
                    txn_loop(broker, &id, size, duration, start)
                })
            })
            .collect();
        start.wait();
        cpu_before.set(Some(Cpu::now(broker.pid())));
        handles.into_iter().map(|h| h.join().unwrap_or_else(|_| bail!("a producer thread panicked"))).collect()
    });
    let mut transactions = 0;
    let mut retries = 0;
    let mut elapsed = Duration::ZERO;
    let mut commit = Latencies::with_capacity(1 << 14);
    let mut end_txn = Latencies::with_capacity(1 << 14);
    for run in runs {
        let run = run?;
        transactions += run.transactions;
        retries += run.retries;
        elapsed = elapsed.max(run.elapsed);
        commit.merge(run.commit);
        end_txn.merge(run.end_txn);
    }
    let records = transactions * size as u64;
    let cpu = Cpu::per(cpu_before.get().unwrap_or(Cpu::now(None)), Cpu::now(broker.pid()), transactions, 1);
    let secs = elapsed.as_secs_f64();
    let (p50, p99) = commit.p50_p99();
    let (e50, e99) = end_txn.p50_p99();
    Ok(Measurement::new(
        broker.system(),
        Key::TxnProduce { records: size, producers },
        format!(
            "transactions of {size} {RECORD_BYTES}-byte records, {producers} transactional producer{}, 1 partition",
            if producers == 1 { "" } else { "s at once" }
        ),
        records as f64 / secs,
        "records/s",
    )
    .latency(p50, p99)
    .mb(records as f64 * RECORD_BYTES as f64 / secs / 1e6)
    .note(format!(
        "{} transactions/s ({} committed in {}); p50/p99 per commit, last record queued to commit_transaction returned; of it commit_transaction after the records' acknowledgement (EndTxn): p50 {} p99 {}; AddPartitionsToTxn answered CONCURRENT_TRANSACTIONS {} times (librdkafka retries after 20 ms); CPU per transaction: broker {}, client {}",
        num(transactions as f64 / secs),
        num(transactions as f64),
        dur(elapsed),
        dur(e50),
        dur(e99),
        retries,
        cpu.0,
        cpu.1
    )))
}

/// An idempotent producer queueing `size` records, waiting for their delivery reports, again
/// and again for `duration`: a transaction's shape without the transaction.
fn idempotent_batches(broker: &Broker, size: usize, duration: Duration) -> Result<Measurement> {
    let mut config = broker.config();
    // linger.ms as the transactional producer's.
    config.set("acks", "all").set("enable.idempotence", "true").set("linger.ms", "0");
    let producer: ThreadedProducer<Ctx> =
        config.create_with_context(Ctx::new(broker.label("idempotent producer"))).context("creating the producer")?;
    let ctx = producer.context().clone();
    // Untimed: metadata and InitProducerId.
    kafka::send(&producer, TOPIC, 0, kafka::value())?;
    ctx.wait_delivered(1).context("the warm-up record")?;
    let mut lat = Latencies::with_capacity(1 << 14);
    let mut delivered = 1u64;
    let mut batches = 0u64;
    let cpu = Cpu::now(broker.pid());
    let start = Instant::now();
    while start.elapsed() < duration || batches < 3 {
        for _ in 0..size {
            kafka::send(&producer, TOPIC, 0, kafka::value())?;
        }
        let t = Instant::now();
        delivered += size as u64;
        ctx.wait_delivered(delivered)?;
        lat.push(t.elapsed());
        batches += 1;
    }
    let elapsed = start.elapsed();
    let cpu = Cpu::per(cpu, Cpu::now(broker.pid()), batches, 1);
    let records = batches * size as u64;
    let secs = elapsed.as_secs_f64();
    let (p50, p99) = lat.p50_p99();
    Ok(Measurement::new(
        broker.system(),
        Key::TxnIdempotentBatches { records: size },
        format!("idempotent batches of {size} {RECORD_BYTES}-byte records (no transaction), 1 producer, 1 partition"),
        records as f64 / secs,
        "records/s",
    )
    .latency(p50, p99)
    .mb(records as f64 * RECORD_BYTES as f64 / secs / 1e6)
    .note(format!(
        "{} batches/s; the next {size} records are queued when the last one's delivery report arrives; p50/p99 from the last record queued to its delivery report; CPU per batch: broker {}, client {}",
        num(batches as f64 / secs),
        cpu.0,
        cpu.1
    )))
}

/// Consume-transform-produce over `input` records loaded into the input topic; see the module's
/// doc.
fn consume_transform_produce(broker: &Broker, input: u64, duration: Duration) -> Result<Measurement> {
    let load = Instant::now();
    // produce_values sends its first record (untimed) to the Kafka phase's topic.
    broker.produce_values(TOPIC_IN, input + 1, kafka::value()).context("loading the input topic")?;
    let load = load.elapsed();
    let mut config = broker.config();
    config
        .set("group.id", GROUP)
        .set("isolation.level", "read_committed")
        .set("enable.auto.commit", "false")
        .set("enable.auto.offset.store", "false")
        // As in the Kafka phase's consume: librdkafka's 1 s pause after a full prefetch queue.
        .set("fetch.queue.backoff.ms", "10");
    let consumer: BaseConsumer<Ctx> = config
        .create_with_context(Ctx::new(broker.label("read_committed consumer")))
        .context("creating the consumer")?;
    let mut tpl = TopicPartitionList::new();
    tpl.add_partition_offset(TOPIC_IN, 0, Offset::Offset(0))?;
    consumer.assign(&tpl).context("assign")?;
    let group = consumer.group_metadata().context("the consumer's group metadata")?;
    let producer = txn_producer(broker, "txn-bench-ctp")?;
    let ctx = producer.context().clone();
    let mut next = 0i64;
    let mut out = vec![0u8; RECORD_BYTES];
    let mut commit = Latencies::with_capacity(1 << 14);
    let one = |next: &mut i64, out: &mut Vec<u8>| -> Result<Duration> {
        producer.begin_transaction().map_err(|e| anyhow!("begin_transaction: {e}"))?;
        let end = (*next + PER_TXN as i64).min(input as i64);
        let mut progress = Instant::now();
        while *next < end {
            match consumer.poll(Duration::from_millis(100)) {
                Some(Ok(m)) => {
                    ensure!(m.offset() == *next, "record {next} came at offset {}", m.offset());
                    let value = m.payload().unwrap_or_default();
                    ensure!(value.len() == RECORD_BYTES, "record {next} has a {}-byte value", value.len());
                    out.clear();
                    out.extend(value.iter().rev());
                    let record = BaseRecord::<(), [u8], usize>::with_opaque_to(TOPIC_OUT, ctx.now_ns())
                        .payload(&out[..])
                        .partition(0);
                    producer.send(record).map_err(|(e, _)| anyhow!("send: {e}"))?;
                    *next += 1;
                    progress = Instant::now();
                }
                Some(Err(e)) => bail!("consuming at offset {next}: {e}"),
                None if progress.elapsed() > STALL => {
                    bail!(
                        "no record for {} s at offset {next}; first error: {}",
                        STALL.as_secs(),
                        consumer.context().first_error()
                    )
                }
                None => {}
            }
        }
        let t = Instant::now();
        let mut offsets = TopicPartitionList::new();
        offsets.add_partition_offset(TOPIC_IN, 0, Offset::Offset(*next))?;
        producer
            .send_offsets_to_transaction(&offsets, &group, CALL_TIMEOUT)
            .map_err(|e| anyhow!("send_offsets_to_transaction: {e}"))?;
        ctx.wait_delivered(*next as u64)?;
        settle(&producer)?;
        producer.commit_transaction(CALL_TIMEOUT).map_err(|e| anyhow!("commit_transaction: {e}"))?;
        Ok(t.elapsed())
    };
    // Untimed: the first transaction (partition registration, the group's coordinator).
    one(&mut next, &mut out).context("the warm-up transaction")?;
    let first = next;
    let retried = ctx.concurrent_transactions.load(std::sync::atomic::Ordering::Relaxed);
    let cpu = Cpu::now(broker.pid());
    let start = Instant::now();
    while (start.elapsed() < duration || commit.len() < 3) && next < input as i64 {
        commit.push(one(&mut next, &mut out)?);
    }
    let elapsed = start.elapsed();
    let retries = ctx.concurrent_transactions.load(std::sync::atomic::Ordering::Relaxed).saturating_sub(retried);
    let transactions = commit.len() as u64;
    let records = (next - first) as u64;
    let cpu = Cpu::per(cpu, Cpu::now(broker.pid()), transactions, 1);
    // The group's committed offset is the records processed.
    let committed = consumer.committed(CALL_TIMEOUT).context("OffsetFetch of the group")?;
    let at = committed.find_partition(TOPIC_IN, 0).map(|e| e.offset());
    ensure!(at == Some(Offset::Offset(next)), "the group's committed offset is {at:?}, {next} records were processed");
    let secs = elapsed.as_secs_f64();
    let (p50, p99) = commit.p50_p99();
    Ok(Measurement::new(
        broker.system(),
        Key::TxnConsumeTransformProduce,
        format!(
            "consume-transform-produce, {PER_TXN} records per transaction, read_committed, {RECORD_BYTES}-byte records"
        ),
        records as f64 / secs,
        "records/s",
    )
    .latency(p50, p99)
    .note(format!(
        "{} transactions/s ({} records in {}{}); one read_committed BaseConsumer (assign, group {GROUP}) and one transactional producer; p50/p99 per commit: send_offsets_to_transaction + the records' acknowledgement + commit_transaction; the group's committed offset checked at the end; input of {} records loaded (untimed) in {}; AddPartitionsToTxn answered CONCURRENT_TRANSACTIONS {} times; CPU per transaction: broker {}, client {}",
        num(transactions as f64 / secs),
        num(records as f64),
        dur(elapsed),
        if next >= input as i64 { ", the input ran out before the duration" } else { "" },
        num(input as f64),
        dur(load),
        retries,
        cpu.0,
        cpu.1
    )))
}

/// Creates the phase's topics (one partition each) with the admin API.
fn create_topics(bootstrap: &str) -> Result<()> {
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", bootstrap).create().context("creating the admin client")?;
    let topics = [TOPIC, TOPIC_IN, TOPIC_OUT].map(|t| NewTopic::new(t, 1, TopicReplication::Fixed(1)));
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    for r in kafka::block_on(admin.create_topics(&topics, &options)).context("CreateTopics")? {
        if let Err((name, code)) = r {
            bail!("CreateTopics {name}: {code}");
        }
    }
    Ok(())
}

/// Every workload on one started broker; returns a reason when the broker refused transactions
/// (the workloads are then skipped, not failed).
fn workloads(
    report: &mut Report,
    failures: &mut Vec<String>,
    plan: &Plan,
    name: &str,
    broker: &Broker,
) -> Option<String> {
    let fail = |failures: &mut Vec<String>, what: &str, e: anyhow::Error| {
        eprintln!("  FAILED {name} {what}: {e:#}");
        failures.push(format!("{name} {what}: {e:#}"));
    };
    if let Err(e) = broker.create_topic().and_then(|()| create_topics(broker.bootstrap())) {
        fail(failures, "create topics", e);
        return None;
    }
    if let Err(e) = broker.warm_up(plan.kafka_records) {
        fail(failures, "warm-up", e);
    }
    // Transactions at all? A broker without them refuses InitProducerId with a transactional id.
    let warm = Barrier::new(1);
    if let Err(e) = txn_loop(broker, "txn-bench-warm-up", PER_TXN, TXN_WARM_UP, &warm) {
        let refused = format!("{e:#}");
        eprintln!("  {name}: transactions skipped ({refused})");
        return Some(refused);
    }
    let d = plan.duration;
    for size in SIZES {
        match idempotent_batches(broker, size, d) {
            Ok(m) => report.add(m),
            Err(e) => fail(failures, &format!("idempotent batches of {size}"), e),
        }
        match transactional(broker, size, 1, d) {
            Ok(m) => report.add(m),
            Err(e) => fail(failures, &format!("transactions of {size}"), e),
        }
    }
    match transactional(broker, PER_TXN, PRODUCERS, d) {
        Ok(m) => report.add(m),
        Err(e) => fail(failures, &format!("transactions of {PER_TXN}, {PRODUCERS} producers"), e),
    }
    match consume_transform_produce(broker, plan.txn_input_records, d) {
        Ok(m) => report.add(m),
        Err(e) => fail(failures, "consume-transform-produce", e),
    }
    None
}

/// The transactions phase: evident, durable Apache Kafka (unless skipped) and Tansu (when its
/// binary is present), one after the other; returns lines for the results' header.
pub fn phase(report: &mut Report, failures: &mut Vec<String>, plan: &Plan, dir: &Path) -> Vec<String> {
    let mut header = Vec::new();
    let run = |report: &mut Report, failures: &mut Vec<String>, name: &str, started: Result<Broker>| {
        let broker = match started {
            Ok(b) => b,
            Err(e) => {
                eprintln!("  FAILED {name} start: {e:#}");
                failures.push(format!("{name} start (transactions): {e:#}"));
                return None;
            }
        };
        let skipped = workloads(report, failures, plan, name, &broker);
        if let Err(e) = broker.stop() {
            eprintln!("  FAILED {name} stop: {e:#}");
            failures.push(format!("{name} stop (transactions): {e:#}"));
        }
        skipped
    };
    if let Some(why) = run(report, failures, "evident Kafka", Broker::evident(&dir.join("evident"))) {
        // evident implements transactions: refusing them is a failure.
        failures.push(format!("evident Kafka transactions: {why}"));
    }
    match (plan.apache_kafka, kafka::kafka_ref_script()) {
        (true, Ok(script)) => {
            let name = "Apache Kafka (fsync per append)";
            if let Some(why) = run(report, failures, name, Broker::apache_kafka(&script, &dir.join("kafka"), true)) {
                failures.push(format!("{name} transactions: {why}"));
            }
            header.push(format!(
                "transactions: Apache Kafka with log.flush.interval.messages=1, started by {} (one KRaft node, transaction.state.log.replication.factor=1)",
                script.display()
            ));
        }
        (false, _) => header.push("transactions: Apache Kafka skipped (--skip-apache-kafka)".into()),
        (true, Err(at)) => header.push(format!("transactions: Apache Kafka skipped (no script at {at})")),
    }
    match kafka::tansu_binary() {
        Ok(bin) => match run(report, failures, "Tansu", Broker::tansu(&bin, &dir.join("tansu"))) {
            Some(why) => {
                header.push(format!("transactions: Tansu ({}) skipped: it refused them ({why})", bin.display()))
            }
            None => header.push(format!("transactions: Tansu {}", bin.display())),
        },
        Err(at) => header.push(format!("transactions: Tansu skipped (binary not found at {at})")),
    }
    for line in &header {
        eprintln!("  {line}");
    }
    header
}
