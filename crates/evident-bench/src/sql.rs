//! SQL views (issue 15): seed 000's `order_summary` view maintained by `evident serve`, beside
//! the same aggregation as a Kafka Streams application on Apache Kafka, in the same run, over
//! the same events.
//!
//! The events are seed 000's order events as `java/client-probes/OrderSummary.java` writes
//! them: event `i` is `{"eventType":"ItemAdded","orderId":"order-<i % 101>","customerId":
//! "customer-<i % 37>","item":"item-<i>","item_price":<1 + 7i % 50>}`, keyed by its customer, in
//! topic `order-events` (4 partitions), produced by librdkafka (acks=all, idempotent, murmur2
//! partitioner as the Java client's, default batching). The bench folds what it produced
//! (total per order) and every side's answer must equal the fold: a measurement of a wrong
//! answer fails the workload.
//!
//! - *Kafka Streams*: Apache Kafka (one KRaft node from Maven's jars, `scripts/kafka-ref.sh`),
//!   with `log.flush.interval.messages=1` (an fsync per append, durable as evident) and then
//!   with its defaults. After the events are produced, `OrderSummary bench` (the seed's
//!   aggregation: re-keyed by order id through its repartition topic, summed in a RocksDB store
//!   backed by its changelog topic, written to `order-summary`; at_least_once, one stream
//!   thread, a fresh state directory, commit interval 100 ms, Streams' other defaults) runs
//!   until its group's committed offsets reach the input's end and then the repartition
//!   topic's. Its rate is the events over the time from `KafkaStreams.start()` to that commit;
//!   the JVM's start, the time to the first record and the rate from the first record are in
//!   the notes. Its totals are read from the store by an interactive query.
//! - *evident, catch-up*: the events produced to `evident serve`'s Kafka listener first, then
//!   `POST /v1/sql` with the seed's statement verbatim; the rate is the events over the time from
//!   the request to the first `SHOW TABLES` (polled every 2 ms on one keep-alive connection) in
//!   which the view's lag is 0 and its position reaches the last event's commit sequence (read
//!   from the partitions' last records). The server's CPU time over the catch-up gives events
//!   per CPU-second (the target's "on one core"). Then `SELECT * FROM order_summary` must equal
//!   the fold.
//! - *evident, live*: with the view running, as many events again are produced; the rate is
//!   the events over the time from the first send to the view having applied the last one, so
//!   it cannot exceed the produce rate (the produce alone is in the note, and the wait after
//!   the last delivery report).
//! - *Pull queries*: for the read duration, one client on one keep-alive connection
//!   (`http_client`, no async runtime) sends a key lookup (`WHERE orderId = 'order-7'`), then a
//!   range query (`WHERE total > X ORDER BY total DESC LIMIT 10`, X the median total); p50/p99
//!   of the HTTP round trip. The first answer of each is checked against the fold, every later
//!   one must be the same bytes (the view does not change meanwhile).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, ensure, Context, Result};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::config::ClientConfig;
use rdkafka::error::{KafkaError, RDKafkaErrorCode};
use rdkafka::producer::{BaseRecord, Producer, ThreadedProducer};
use serde_json::Value;

use crate::cli::Plan;
use crate::http::Server;
use crate::http_client::Connection;
use crate::kafka::{self, Broker, Ctx};
use crate::machine;
use crate::report::{dur, num, Key, Measurement, Report, System};
use crate::stats::Latencies;

/// Seed 000's statement, verbatim.
pub const SEED_STATEMENT: &str =
    "CREATE TABLE order_summary AS SELECT orderId, SUM(item_price) AS total FROM order-events GROUP BY orderId;";
/// The view's name and its source topic.
const VIEW: &str = "order_summary";
const TOPIC: &str = "order-events";
/// Kafka Streams' output topic (OrderSummary.OUTPUT; created before the application runs).
const STREAMS_OUTPUT: &str = "order-summary";
/// Partitions of the topics (OrderSummary.PARTITIONS).
const PARTITIONS: i32 = 4;
/// Distinct orders and customers of the events (OrderSummary.event).
const ORDERS: u64 = 101;
const CUSTOMERS: u64 = 37;
/// The key-lookup's order.
const LOOKUP_ORDER: &str = "order-7";
/// How long the view or the Streams application may take to catch up before the workload fails.
const CATCH_UP_LIMIT: Duration = Duration::from_secs(600);
/// How often `SHOW TABLES` is polled.
const POLL_EVERY: Duration = Duration::from_millis(2);
/// How long one HTTP request may take.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);

/// Event `i`: its key (the customer) and its JSON value, byte for byte as OrderSummary.event
/// writes it (Jackson, fields in this order).
fn event(i: u64) -> (String, String) {
    let customer = format!("customer-{}", i % CUSTOMERS);
    let value = format!(
        r#"{{"eventType":"ItemAdded","orderId":"order-{}","customerId":"{customer}","item":"item-{i}","item_price":{}}}"#,
        i % ORDERS,
        price(i)
    );
    (customer, value)
}

fn price(i: u64) -> i64 {
    1 + (i as i64 * 7) % 50
}

/// The total per order of events `0..n`.
fn fold(n: u64) -> BTreeMap<String, i64> {
    let mut totals = BTreeMap::new();
    for i in 0..n {
        *totals.entry(format!("order-{}", i % ORDERS)).or_insert(0) += price(i);
    }
    totals
}

/// Names the first differences between a view and the fold; Err when they differ.
fn check_totals(what: &str, view: &BTreeMap<String, i64>, fold: &BTreeMap<String, i64>) -> Result<()> {
    if view == fold {
        return Ok(());
    }
    let mut diffs = Vec::new();
    for (order, want) in fold {
        match view.get(order) {
            Some(got) if got == want => {}
            got => diffs.push(format!("{order}: {got:?}, fold {want}")),
        }
    }
    for order in view.keys().filter(|o| !fold.contains_key(*o)) {
        diffs.push(format!("{order}: {:?}, not in the fold", view[order]));
    }
    let shown: Vec<&String> = diffs.iter().take(10).collect();
    bail!(
        "WRONG ANSWER: {what} differs from the fold of the events produced in {} of {} orders ({} orders in the view): {shown:?}",
        diffs.len(),
        fold.len(),
        view.len()
    )
}

/// Creates `order-events` (and, for Kafka Streams, its output topic) with 4 partitions.
fn create_topics(bootstrap: &str, topics: &[&str]) -> Result<()> {
    let admin: AdminClient<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .create_with_context(Ctx::new("admin (sql)".into()))
        .context("creating the admin client")?;
    let new: Vec<NewTopic> = topics.iter().map(|t| NewTopic::new(t, PARTITIONS, TopicReplication::Fixed(1))).collect();
    let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(30)));
    for r in kafka::block_on(admin.create_topics(&new, &options)).context("CreateTopics")? {
        if let Err((name, code)) = r {
            bail!("CreateTopics {name}: {code}");
        }
    }
    Ok(())
}

/// Produces events `from..to` to `order-events` on `bootstrap`, keyed by customer; returns the
/// time from the first send to the last delivery report.
fn produce(bootstrap: &str, label: &str, from: u64, to: u64) -> Result<Duration> {
    let producer: ThreadedProducer<Ctx> = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("acks", "all")
        .set("enable.idempotence", "true")
        // The Java client's partitioner, so both brokers and OrderSummary's own producer place
        // a customer alike.
        .set("partitioner", "murmur2_random")
        .create_with_context(Ctx::new(format!("{label} producer (sql)")))
        .context("creating the producer")?;
    let ctx = producer.context().clone();
    let start = Instant::now();
    for i in from..to {
        let (key, value) = event(i);
        let mut record =
            BaseRecord::<str, str, usize>::with_opaque_to(TOPIC, 0).key(key.as_str()).payload(value.as_str());
        loop {
            record.delivery_opaque = ctx.now_ns();
            match producer.send(record) {
                Ok(()) => break,
                Err((KafkaError::MessageProduction(RDKafkaErrorCode::QueueFull), r)) => {
                    record = r;
                    ctx.wait_delivered(ctx.delivered.load(Ordering::SeqCst) + 1)?;
                }
                Err((e, _)) => bail!("send: {e}"),
            }
        }
    }
    ctx.wait_delivered(to - from)?;
    let elapsed = start.elapsed();
    let failed = ctx.failed.load(Ordering::SeqCst);
    ensure!(failed == 0, "{failed} events failed; first error: {}", ctx.first_error());
    Ok(elapsed)
}

/// A produce as a row (not a figure of merit: the views' input).
fn produce_row(system: System, records: u64, elapsed: Duration) -> Measurement {
    Measurement::new(
        system,
        Key::SqlProduce,
        format!("produce {} order events (the views' input), keyed by customer, 4 partitions", num(records as f64)),
        records as f64 / elapsed.as_secs_f64(),
        "events/s",
    )
    .note(format!(
        "librdkafka ThreadedProducer, acks=all, idempotent, murmur2 partitioner, default batching; {} events in {}",
        num(records as f64),
        dur(elapsed)
    ))
}

/// Where OrderSummary runs from: Kafka's jars, the compiled probes and the log configuration,
/// as scripts/java-setup.sh prints them (else their places under this repository).
struct JavaEnv {
    lib: PathBuf,
    classes: PathBuf,
    conf: PathBuf,
}

impl JavaEnv {
    fn find() -> Result<Self> {
        let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../..");
        let dir = |var: &str, default: PathBuf| -> Result<PathBuf> {
            let path = std::env::var_os(var).map(PathBuf::from).unwrap_or(default);
            ensure!(path.is_dir(), "{var}: {} is not a directory (run scripts/java-setup.sh)", path.display());
            Ok(path)
        };
        Ok(Self {
            lib: dir("KAFKA_JAVA_LIB", repo.join("target/java/lib"))?,
            classes: dir("KAFKA_JAVA_CLASSES", repo.join("target/java/classes"))?,
            conf: dir("KAFKA_JAVA_CONF", repo.join("java/kafka-ref"))?,
        })
    }

    fn command(&self) -> Command {
        let mut cmd = Command::new("java");
        cmd.arg("-Xmx512m")
            .arg("-Dfile.encoding=UTF-8")
            .arg(format!("-Dlog4j2.configurationFile={}", self.conf.join("log4j2-tools.properties").display()))
            .arg("-cp")
            .arg(format!("{}/*:{}", self.lib.display(), self.classes.display()));
        cmd
    }
}

/// The Kafka Streams side on one broker: produce, run OrderSummary bench, check its totals.
fn kafka_streams(report: &mut Report, java: &JavaEnv, broker: &Broker, dir: &Path, records: u64) -> Result<()> {
    let system = broker.system();
    create_topics(broker.bootstrap(), &[TOPIC, STREAMS_OUTPUT])?;
    let produced = produce(broker.bootstrap(), &system.to_string(), 0, records)?;
    report.add(produce_row(system, records, produced));
    let state = dir.join("streams-state");
    let cpu = kafka::Cpu::now(broker.pid());
    let mut cmd = java.command();
    cmd.arg("OrderSummary")
        .args(["bench", broker.bootstrap()])
        .arg(&state)
        .arg(CATCH_UP_LIMIT.as_millis().to_string())
        .stdin(Stdio::null());
    let ran = Instant::now();
    let out = cmd.output().context("running java OrderSummary bench")?;
    let ran = ran.elapsed();
    let cpu = kafka::Cpu::per(cpu, kafka::Cpu::now(broker.pid()), records, 1000);
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    let tail = |s: &str| s.lines().rev().take(20).collect::<Vec<_>>().into_iter().rev().collect::<Vec<_>>().join("\n");
    ensure!(out.status.success(), "OrderSummary bench failed ({}): {}\n{}", out.status, tail(&stdout), tail(&stderr));
    let line = stdout.lines().rev().find(|l| l.starts_with('{')).context("no JSON line from OrderSummary bench")?;
    let v: Value = serde_json::from_str(line).with_context(|| format!("OrderSummary bench printed {line}"))?;
    let field = |k: &str| v[k].as_f64().with_context(|| format!("no {k} in {line}"));
    ensure!(
        field("input_records")? as u64 == records,
        "the input holds {} records, {records} were produced",
        field("input_records")?
    );
    let totals: BTreeMap<String, i64> = v["totals"]
        .as_object()
        .context("no totals")?
        .iter()
        .map(|(k, t)| Ok((k.clone(), t.as_i64().with_context(|| format!("total of {k}: {t}"))?)))
        .collect::<Result<_>>()?;
    check_totals("Kafka Streams' store (order-totals)", &totals, &fold(records))?;
    let caught_up = Duration::from_secs_f64(field("caught_up_ms")? / 1e3);
    let first = Duration::from_secs_f64(field("first_record_ms")?.max(0.0) / 1e3);
    let from_first = caught_up.saturating_sub(first).as_secs_f64();
    let jvm_cpu = field("cpu_ms").ok().filter(|c| *c >= 0.0).map(|c| Duration::from_secs_f64(c / 1e3));
    report.add(
        Measurement::new(
            system,
            Key::SqlCatchUp,
            format!(
                "seed 000's order_summary over {} events: Kafka Streams (OrderSummary, at_least_once), from start() to the input committed",
                num(records as f64)
            ),
            records as f64 / caught_up.as_secs_f64(),
            "events/s",
        )
        .note(format!(
            "one stream thread, commit.interval.ms {}, fresh state dir (RocksDB), Streams' other defaults; {} from KafkaStreams.start() to the group's committed offsets at the input's and then the repartition topic's end; first record processed after {} (group join, internal topics), {} events/s from it; JVM start to main {} ms, main to start() {} ms; whole java process {}; processed {} records; totals (interactive query) equal the fold; CPU per 1,000 events: broker {}, Kafka Streams JVM {} ({} events per JVM CPU-second)",
            v["commit_interval_ms"],
            dur(caught_up),
            dur(first),
            num(records as f64 / from_first),
            v["jvm_to_main_ms"],
            v["main_to_start_ms"],
            dur(ran),
            v["processed"],
            cpu.0,
            jvm_cpu.map_or("?".into(), |c| dur(c.mul_f64(1000.0 / records as f64))),
            jvm_cpu.map_or("?".into(), |c| num(records as f64 / c.as_secs_f64().max(1e-3)))
        )),
    );
    report.add(
        Measurement::new(
            system,
            Key::SqlStreamsFromFirst,
            format!(
                "seed 000's order_summary over {} events: Kafka Streams from its first record processed to the input committed",
                num(records as f64)
            ),
            records as f64 / from_first,
            "events/s",
        )
        .note(format!(
            "the same run without its first {} (group join, internal topics' creation, the first fetch)",
            dur(first)
        )),
    );
    Ok(())
}

/// One keep-alive connection to `POST /v1/sql`.
struct Sql {
    conn: Connection,
}

/// A query's answer: column names and rows.
struct Answer {
    columns: Vec<String>,
    rows: Vec<Vec<Value>>,
}

impl Answer {
    fn column(&self, name: &str) -> Result<usize> {
        self.columns
            .iter()
            .position(|c| c.eq_ignore_ascii_case(name))
            .with_context(|| format!("no column {name} in {:?}", self.columns))
    }

    /// The rows as order id -> total.
    fn totals(&self) -> Result<BTreeMap<String, i64>> {
        let (o, t) = (self.column("orderId")?, self.column("total")?);
        self.rows
            .iter()
            .map(|r| {
                let order = r.get(o).and_then(Value::as_str).with_context(|| format!("orderId in {r:?}"))?;
                Ok((order.to_string(), integer(r.get(t)).with_context(|| format!("total in {r:?}"))?))
            })
            .collect()
    }
}

/// A JSON number that is an integer (a SUM may come as 12 or 12.0).
fn integer(v: Option<&Value>) -> Option<i64> {
    let v = v?;
    v.as_i64().or_else(|| v.as_f64().filter(|f| f.fract() == 0.0).map(|f| f as i64))
}

impl Sql {
    fn connect(base: &str) -> Result<Self> {
        Ok(Self { conn: Connection::connect(base, REQUEST_TIMEOUT)? })
    }

    /// The request body of `sql`.
    fn body(sql: &str) -> Vec<u8> {
        serde_json::json!({ "sql": sql }).to_string().into_bytes()
    }

    /// Sends a prepared body; returns the reply's body, which must come with 200.
    fn send(&mut self, body: &[u8]) -> Result<Vec<u8>> {
        let reply = self.conn.request("POST", "/v1/sql", Some(("application/json", body)))?;
        ensure!(
            reply.status == 200,
            "POST /v1/sql {} answered {}: {}",
            String::from_utf8_lossy(body),
            reply.status,
            String::from_utf8_lossy(&reply.body)
        );
        Ok(reply.body)
    }

    fn query(&mut self, sql: &str) -> Result<Answer> {
        parse_answer(&self.send(&Self::body(sql))?)
    }

    fn statement(&mut self, sql: &str) -> Result<Value> {
        let body = self.send(&Self::body(sql))?;
        let v: Value = serde_json::from_slice(&body).context("a statement's reply")?;
        ensure!(v["status"] == "ok", "{sql} answered {v}");
        Ok(v)
    }

    /// The view's `(position, lag, status)` in `SHOW TABLES`.
    fn view_state(&mut self, show: &[u8]) -> Result<(u64, u64, String)> {
        let a = parse_answer(&self.send(show)?)?;
        let (n, p, l, s) = (a.column("name")?, a.column("position")?, a.column("lag")?, a.column("status")?);
        let row = a
            .rows
            .iter()
            .find(|r| r.get(n).and_then(Value::as_str) == Some(VIEW))
            .with_context(|| format!("{VIEW} not in SHOW TABLES: {:?}", a.rows))?;
        let status = row.get(s).and_then(Value::as_str).unwrap_or_default().to_string();
        let number = |i: usize| row.get(i).and_then(Value::as_u64);
        // Before the view applied anything its position may be null.
        Ok((number(p).unwrap_or(0), number(l).unwrap_or(u64::MAX), status))
    }

    /// Polls `SHOW TABLES` until the view's lag is 0 and its position is at least `sequence`.
    fn wait_applied(&mut self, sequence: u64) -> Result<()> {
        let show = Self::body("SHOW TABLES");
        let deadline = Instant::now() + CATCH_UP_LIMIT;
        loop {
            let (position, lag, status) = self.view_state(&show)?;
            ensure!(status == "running", "the view's status is {status:?} (position {position}, lag {lag})");
            if lag == 0 && position >= sequence {
                return Ok(());
            }
            ensure!(
                Instant::now() < deadline,
                "the view did not reach sequence {sequence} within {} s (position {position}, lag {lag})",
                CATCH_UP_LIMIT.as_secs()
            );
            std::thread::sleep(POLL_EVERY);
        }
    }
}

fn parse_answer(body: &[u8]) -> Result<Answer> {
    let v: Value = serde_json::from_slice(body)
        .with_context(|| format!("a query's reply is not JSON: {}", String::from_utf8_lossy(body)))?;
    let columns = v["columns"]
        .as_array()
        .with_context(|| format!("no columns in {v}"))?
        .iter()
        .map(|c| c["name"].as_str().map(str::to_string).with_context(|| format!("a column without a name: {c}")))
        .collect::<Result<_>>()?;
    let rows = v["rows"]
        .as_array()
        .with_context(|| format!("no rows in {v}"))?
        .iter()
        .map(|r| r.as_array().cloned().with_context(|| format!("a row that is not an array: {r}")))
        .collect::<Result<_>>()?;
    Ok(Answer { columns, rows })
}

/// The commit sequence of the last event in `order-events`: the largest sequence of each
/// partition's last record (HTTP API).
fn last_sequence(conn: &mut Connection) -> Result<u64> {
    let get = |conn: &mut Connection, path: &str| -> Result<Value> {
        let reply = conn.request("GET", path, None)?;
        ensure!(reply.status == 200, "GET {path} answered {}: {}", reply.status, String::from_utf8_lossy(&reply.body));
        serde_json::from_slice(&reply.body).with_context(|| format!("GET {path}"))
    };
    let topic = get(conn, &format!("/v1/topics/{TOPIC}"))?;
    let mut last = None;
    for p in topic["partition_offsets"].as_array().context("no partition_offsets")? {
        let (partition, hw) =
            (p["partition"].as_u64().context("partition")?, p["high_watermark"].as_u64().context("hw")?);
        if hw == 0 {
            continue;
        }
        let page = get(conn, &format!("/v1/topics/{TOPIC}/partitions/{partition}/records?offset={}&limit=1", hw - 1))?;
        let seq = page["records"][0]["sequence"].as_u64().with_context(|| format!("no sequence in {page}"))?;
        last = last.max(Some(seq));
    }
    last.context("order-events holds no event")
}

/// CPU time of the server so far.
fn server_cpu(server: &Server) -> Option<Duration> {
    server.pid().and_then(|p| machine::cpu_time(&p.to_string()))
}

/// The evident side: produce, create the view (catch-up), produce again (live), pull queries.
fn evident(report: &mut Report, plan: &Plan, dir: &Path, records: u64) -> Result<()> {
    std::fs::create_dir_all(dir)?;
    let server = Server::start(dir)?;
    let system = System::EvidentKafka;
    create_topics(&server.kafka, &[TOPIC])?;
    let produced = produce(&server.kafka, "evident", 0, records)?;
    report.add(produce_row(system, records, produced));
    let mut http = Connection::connect(&server.base, REQUEST_TIMEOUT)?;
    let last = last_sequence(&mut http)?;
    let mut sql = Sql::connect(&server.base)?;

    // Catch-up of a new view over everything produced.
    let cpu = server_cpu(&server);
    let start = Instant::now();
    let created = sql.statement(SEED_STATEMENT)?;
    let answered = start.elapsed();
    sql.wait_applied(last)?;
    let elapsed = start.elapsed();
    let cpu = cpu.zip(server_cpu(&server)).map(|(a, b)| b.saturating_sub(a));
    check_totals(
        "evident's view (SELECT * FROM order_summary)",
        &sql.query(&format!("SELECT * FROM {VIEW}"))?.totals()?,
        &fold(records),
    )?;
    let per_cpu = cpu.map_or("?".into(), |c| num(records as f64 / c.as_secs_f64().max(1e-3)));
    report.add(
        Measurement::new(
            System::EvidentSql,
            Key::SqlCatchUp,
            format!(
                "seed 000's order_summary over {} events: evident's view (CREATE TABLE, verbatim), from the request to caught up",
                num(records as f64)
            ),
            records as f64 / elapsed.as_secs_f64(),
            "events/s",
        )
        .note(format!(
            "POST /v1/sql answered in {} ({}); caught up after {}: SHOW TABLES polled every {} ms until lag 0 and position >= sequence {last} (the last event's); server CPU {} = {per_cpu} events per CPU-second; SELECT * equals the fold",
            dur(answered),
            created["message"].as_str().unwrap_or_default(),
            dur(elapsed),
            POLL_EVERY.as_millis(),
            cpu.map_or("?".into(), dur)
        )),
    );

    // Live maintenance: as many events again, the view running.
    let cpu = server_cpu(&server);
    let start = Instant::now();
    let produced = produce(&server.kafka, "evident", records, 2 * records)?;
    let after_produce = start.elapsed();
    let last = last_sequence(&mut http)?;
    sql.wait_applied(last)?;
    let elapsed = start.elapsed();
    let cpu = cpu.zip(server_cpu(&server)).map(|(a, b)| b.saturating_sub(a));
    let totals = fold(2 * records);
    check_totals(
        "evident's view after the live batch",
        &sql.query(&format!("SELECT * FROM {VIEW}"))?.totals()?,
        &totals,
    )?;
    report.add(
        Measurement::new(
            System::EvidentSql,
            Key::SqlLive,
            format!(
                "seed 000's order_summary maintained live: {} more events produced while it runs, from the first send to applied",
                num(records as f64)
            ),
            records as f64 / elapsed.as_secs_f64(),
            "events/s",
        )
        .note(format!(
            "bounded by the produce: librdkafka delivered them all in {} ({} events/s); the view had applied them {} after the last delivery report; server CPU over it (produce included) {}; SELECT * equals the fold of all {} events",
            dur(produced),
            num(records as f64 / produced.as_secs_f64()),
            dur(elapsed.saturating_sub(after_produce)),
            cpu.map_or("?".into(), dur),
            num(2.0 * records as f64)
        )),
    );

    // Pull queries.
    let want = totals[LOOKUP_ORDER];
    let lookup = format!("SELECT * FROM {VIEW} WHERE orderId = '{LOOKUP_ORDER}'");
    let first = sql.query(&lookup)?;
    let got = first.totals()?;
    ensure!(
        got.len() == 1 && got.get(LOOKUP_ORDER) == Some(&want),
        "WRONG ANSWER: {lookup} gave {got:?}, the fold says {want}"
    );
    report.add(pull(&mut sql, &lookup, false, plan.read_duration)?);
    let mut sorted: Vec<i64> = totals.values().copied().collect();
    sorted.sort_unstable();
    let threshold = sorted[sorted.len() / 2];
    let range = format!("SELECT * FROM {VIEW} WHERE total > {threshold} ORDER BY total DESC LIMIT 10");
    let answer = sql.query(&range)?;
    let (o, t) = (answer.column("orderId")?, answer.column("total")?);
    let got: Vec<(String, i64)> = answer
        .rows
        .iter()
        .map(|r| {
            Ok((r.get(o).and_then(Value::as_str).context("orderId")?.to_string(), integer(r.get(t)).context("total")?))
        })
        .collect::<Result<_>>()?;
    let mut want: Vec<i64> = totals.values().copied().filter(|&x| x > threshold).collect();
    want.sort_unstable_by(|a, b| b.cmp(a));
    want.truncate(10);
    ensure!(
        got.iter().map(|(_, t)| *t).collect::<Vec<_>>() == want
            && got.iter().all(|(order, t)| totals.get(order) == Some(t)),
        "WRONG ANSWER: {range} gave {got:?}, the fold's top totals are {want:?}"
    );
    report.add(pull(&mut sql, &range, true, plan.read_duration)?);
    drop(sql);
    drop(http);
    let mut server = server;
    server.stop()
}

/// Sends `query` again and again for `duration` (at least 100 times); every answer must be the
/// first one's bytes.
fn pull(sql: &mut Sql, query: &str, range: bool, duration: Duration) -> Result<Measurement> {
    let body = Sql::body(query);
    let expected = sql.send(&body)?;
    let mut lat = Latencies::with_capacity(1 << 16);
    let start = Instant::now();
    while start.elapsed() < duration || lat.len() < 100 {
        let t = Instant::now();
        let got = sql.send(&body)?;
        lat.push(t.elapsed());
        ensure!(
            got == expected,
            "WRONG ANSWER: {query} answered {} after {}",
            String::from_utf8_lossy(&got),
            String::from_utf8_lossy(&expected)
        );
    }
    let elapsed = start.elapsed();
    let n = lat.len();
    let (p50, p99) = lat.p50_p99();
    Ok(Measurement::new(
        System::EvidentSql,
        Key::SqlPull { range },
        if range {
            "pull query, range: WHERE total > (median) ORDER BY total DESC LIMIT 10, over HTTP".to_string()
        } else {
            format!("pull query, key lookup: WHERE orderId = '{LOOKUP_ORDER}', over HTTP")
        },
        n as f64 / elapsed.as_secs_f64(),
        "queries/s",
    )
    .latency(p50, p99)
    .note(format!(
        "{query}; one client, one keep-alive connection, one query at a time; p50/p99 of the HTTP round trip (request written to reply read); {n} queries, every answer checked against the first (checked against the fold), {}-byte reply",
        expected.len()
    )))
}

/// The SQL phase: Kafka Streams on Apache Kafka (fsync per append, then defaults), then
/// evident; returns lines for the results' header.
pub fn phase(report: &mut Report, failures: &mut Vec<String>, plan: &Plan, dir: &Path) -> Vec<String> {
    let mut header = Vec::new();
    let records = plan.sql_events;
    let fail = |failures: &mut Vec<String>, what: &str, e: anyhow::Error| {
        eprintln!("  FAILED {what}: {e:#}");
        failures.push(format!("{what}: {e:#}"));
    };
    match (plan.apache_kafka, kafka::kafka_ref_script(), JavaEnv::find()) {
        (true, Ok(script), Ok(java)) => {
            for (durable, sub) in [(true, "kafka-durable"), (false, "kafka")] {
                let name = if durable { "Apache Kafka (fsync per append)" } else { "Apache Kafka (defaults)" };
                let side = dir.join(sub);
                match Broker::apache_kafka(&script, &side.join("broker"), durable) {
                    Ok(broker) => {
                        if let Err(e) = kafka_streams(report, &java, &broker, &side, records) {
                            fail(failures, &format!("{name} Kafka Streams order_summary"), e);
                        }
                        if let Err(e) = broker.stop() {
                            fail(failures, &format!("{name} stop (sql)"), e);
                        }
                    }
                    Err(e) => fail(failures, &format!("{name} start (sql)"), e),
                }
            }
            header.push(format!(
                "sql: Kafka Streams (java/client-probes/OrderSummary.java bench, classes in {}) on Apache Kafka started by {}",
                java.classes.display(),
                script.display()
            ));
        }
        (false, _, _) => header.push("sql: Kafka Streams skipped (--skip-apache-kafka)".into()),
        (true, Err(at), _) => header.push(format!("sql: Kafka Streams skipped (no script at {at})")),
        (true, _, Err(e)) => {
            fail(failures, "sql: Kafka Streams (Java)", anyhow!("{e:#}"));
        }
    }
    if let Err(e) = evident(report, plan, &dir.join("evident"), records) {
        fail(failures, "evident SQL order_summary", e);
    }
    for line in &header {
        eprintln!("  {line}");
    }
    header
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_are_order_summarys() {
        // OrderSummary.event(7), as Jackson writes it.
        let (key, value) = event(7);
        assert_eq!(key, "customer-7");
        assert_eq!(
            value,
            r#"{"eventType":"ItemAdded","orderId":"order-7","customerId":"customer-7","item":"item-7","item_price":50}"#
        );
        let parsed: Value = serde_json::from_str(&event(1234).1).expect("JSON");
        assert_eq!(parsed["item_price"], 1 + (1234 * 7) % 50);
    }

    #[test]
    fn the_fold_sums_every_event_once() {
        let f = fold(1000);
        assert_eq!(f.len(), ORDERS as usize);
        assert_eq!(f.values().sum::<i64>(), (0..1000).map(price).sum::<i64>());
        assert!(check_totals("x", &f, &f).is_ok());
        let mut wrong = f.clone();
        *wrong.get_mut("order-3").expect("order-3") += 1;
        let e = check_totals("x", &wrong, &f).expect_err("differs").to_string();
        assert!(e.contains("WRONG ANSWER") && e.contains("order-3"), "{e}");
    }

    #[test]
    fn answers_are_read_by_column_name() {
        let a = parse_answer(
            br#"{"columns":[{"name":"orderId","type":"STRING"},{"name":"total","type":"BIGINT"}],"rows":[["order-1",12],["order-2",3.0]]}"#,
        )
        .expect("answer");
        let t = a.totals().expect("totals");
        assert_eq!(t["order-1"], 12);
        assert_eq!(t["order-2"], 3);
    }
}
