//! Conformance with the Java client 4.x and Kafka Streams (issue 12): what JVM applications and
//! frameworks do with kafka-clients 4.4 (an idempotent producer, consumer groups with the range,
//! cooperative-sticky and static assignments through rebalances, the AdminClient calls Spring
//! Kafka, Connect and Streams make) and seed 000's `order_summary` view as a Kafka Streams
//! application, run against `evident serve` AND a real Apache Kafka broker in the same run.
//!
//! The client probes are one Java program (`java/client-probes/ClientProbes.java`) that sums up
//! each probe as one line; the lines must be equal on both servers, except for the differences
//! listed in [`KNOWN_DIFFERENCES`] (evident's choices, not gaps), where evident's line is pinned
//! exactly, so a change on either side fails the test until the list is revisited. Each probe's line on Kafka is also checked to hold what the probe expects, so a probe
//! that passes nowhere fails.
//!
//! The Streams application (`java/client-probes/OrderSummary.java`) is checked by what
//! `at_least_once` guarantees: without a crash the view equals a fold of the input (SUM of
//! item_price per order id, read back from the server); after SIGKILL mid-run and a restart,
//! every input record is reflected at least once and, with one crash, at most twice, so each
//! order's total lies between its fold and twice its fold (records processed after the last
//! commit are processed again; their earlier effect may already be in the changelog).
//!
//! Speed: the probes run in one JVM per server, the two servers in parallel; the Streams
//! application is its own JVM (it must be killed).

mod common;

use std::io::Write;
use std::path::Path;
use std::process::Child;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::jvm::{compare_probe_lines, java, probe_lines, tail, Java, ProbeLine, ProbeRules, Reference};
use common::{run_with_limit, Server};
use serde_json::Value;

/// The longest a whole run of the client probes against one server may take (a hang guard).
const RUN_LIMIT: Duration = Duration::from_secs(600);

/// The longest the Streams application may take to reach a point the test waits for.
const STREAMS_LIMIT: Duration = Duration::from_secs(180);

/// Probe name, what the line on Kafka must contain (the probe's own check), and for evident-only
/// differences see [`KNOWN_DIFFERENCES`].
const KAFKA_MUST_HOLD: [(&str, &[&str]); 8] = [
    (
        "idempotent producer: 3000 acked, read back in order",
        &["acked=3000 read=3000 per-key-in-order=true offsets-as-acked=true"],
    ),
    ("group range: 3 consumers join and leave", &["consumed=600/600 violations=[]"]),
    ("group cooperative-sticky: 3 consumers join and leave", &["consumed=600/600 violations=[]"]),
    ("group static members: join, leave, restart", &["same partitions=true rebalances seen by A and C=0"]),
    ("admin describeConsumerGroups (deleted)", &["GroupIdNotFoundException"]),
    ("admin deleteConsumerGroups", &["offsets left=0"]),
    ("admin incrementalAlterConfigs retention.ms", &["retention.ms=86400000"]),
    ("expected-version header", &["expect 0: appended at 2"]),
];

/// Where evident answers differently from Kafka by design (listed in docs/kafka.md): probe name,
/// evident's exact line, why. Any other line from evident fails the test.
const KNOWN_DIFFERENCES: [(&str, &str, &str); 2] = [
    (
        "expected-version header",
        "expect no_stream: appended at 0; expect 0: appended at 1; expect 0: InvalidRecordException names version 1=true",
        "evident's extension: Kafka has no expected-version header and appends all three",
    ),
    (
        "admin describeConfigs topic",
        "cleanup.policy=delete retention.ms=-1",
        "evident does not enforce retention yet, so a topic's default retention.ms is -1 (keep forever), Kafka's 7 days",
    ),
];

/// Runs the client probes against `bootstrap` in one JVM; returns (name, line) in order.
fn run_probes(java: &Java, work: &Path, label: &str, bootstrap: &str) -> Vec<(String, ProbeLine)> {
    let results = work.join(format!("client-{label}.jsonl"));
    let mut cmd = java.command();
    cmd.arg("ClientProbes").arg(bootstrap).arg(&results);
    let run = run_with_limit(&mut cmd, None, RUN_LIMIT);
    assert_eq!(run.code, Some(0), "the client probes failed on {label}\n--- stderr\n{}", tail(&run.stderr, 60));
    probe_lines(&results)
}

/// What the Streams scenario saw on one server.
struct StreamsRun {
    /// The verdict after the first 10,000 events, without a crash.
    clean: Value,
    /// Records the killed instance had processed (it prints every 500) when SIGKILL was sent.
    processed_at_kill: u64,
    /// The verdict after 20,000 more events, a SIGKILL mid-run and a restart.
    after_crash: Value,
    millis: u64,
}

/// The Streams application's process, its stdout lines on a channel.
struct App {
    child: Child,
    lines: mpsc::Receiver<String>,
}

impl App {
    fn start(java: &Java, bootstrap: &str, state: &Path, log: &Path) -> App {
        App::spawn(java, "OrderSummary", &["run", bootstrap, &state.to_string_lossy()], log)
    }

    /// Starts Java program `class` with `args`, its stdout lines on a channel and its stderr in
    /// `log`.
    fn spawn(java: &Java, class: &str, args: &[&str], log: &Path) -> App {
        let (child, lines) = java.spawn_program(class, args, log);
        App { child, lines }
    }

    /// Waits until the application printed `processed N` with N >= `at_least`; returns N.
    fn wait_processed(&mut self, at_least: u64, label: &str) -> u64 {
        let deadline = Instant::now() + STREAMS_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    if let Some(n) = line.strip_prefix("processed ").and_then(|n| n.parse::<u64>().ok()) {
                        if n >= at_least {
                            return n;
                        }
                    }
                }
                Err(e) => panic!("{label}: the Streams application did not process {at_least} records: {e}"),
            }
        }
    }
}

impl Drop for App {
    fn drop(&mut self) {
        // SIGKILL: what is tested is a crash, and a clean close is not needed after the verdict.
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn order_summary(java: &Java, bootstrap: &str, args: &[&str], label: &str) -> String {
    let mut cmd = java.command();
    cmd.arg("OrderSummary").args(args.iter().map(|a| a.replace("{B}", bootstrap)));
    let run = run_with_limit(&mut cmd, None, STREAMS_LIMIT);
    assert_eq!(run.code, Some(0), "{label}: OrderSummary {args:?} failed\n--- stderr\n{}", tail(&run.stderr, 40));
    run.stdout
}

fn verdict(java: &Java, bootstrap: &str, label: &str) -> Value {
    let out = order_summary(java, bootstrap, &["verify", "{B}", "150000"], label);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{label}: verify printed {out:?}: {e}"))
}

/// Seed 000's view on one server: 10,000 events, the view checked; 20,000 more while it runs,
/// SIGKILL once it processed 2,000 of them (the producer still running), a restart on the same state directory, checked again.
fn streams_scenario(java: &Java, work: &Path, label: &str, bootstrap: &str) -> StreamsRun {
    let started = Instant::now();
    let state = work.join(format!("streams-state-{label}"));
    order_summary(java, bootstrap, &["produce", "{B}", "0", "10000"], label);
    let mut app = App::start(java, bootstrap, &state, &work.join(format!("streams-{label}-1.log")));
    let clean = verdict(java, bootstrap, label);
    // The next 20,000 are produced while the application runs, and it is killed once it has
    // processed 2,000 of them: mid-run, with its input still arriving.
    let processed_at_kill = std::thread::scope(|s| {
        let producer = s.spawn(|| order_summary(java, bootstrap, &["produce", "{B}", "10000", "30000"], label));
        let seen = app.wait_processed(12_000, label);
        app.child.kill().expect("SIGKILL to the Streams application");
        app.child.wait().expect("reaping the Streams application");
        producer.join().expect("the producer");
        // The last count the killed instance printed.
        let later =
            app.lines.try_iter().filter_map(|l| l.strip_prefix("processed ").and_then(|n| n.parse::<u64>().ok()));
        later.fold(seen, u64::max)
    });
    drop(app);
    let _restarted = App::start(java, bootstrap, &state, &work.join(format!("streams-{label}-2.log")));
    let after_crash = verdict(java, bootstrap, label);
    StreamsRun { clean, processed_at_kill, after_crash, millis: started.elapsed().as_millis() as u64 }
}

/// The at-least-once checks on one server's Streams run; problems are pushed to `failures`.
fn check_streams(label: &str, run: &StreamsRun, failures: &mut Vec<String>) {
    let mut problem = |what: String| failures.push(format!("Kafka Streams on {label}: {what}"));
    let c = &run.clean;
    if c["caught_up"] != true || c["input_records"] != 10_000 || c["equal"] != true || c["orders"] != 101 {
        problem(format!("without a crash the view must equal the fold of 10,000 events: {c}"));
    }
    if run.processed_at_kill >= 30_000 {
        problem(format!("the kill did not land mid-run: {} records processed", run.processed_at_kill));
    }
    let a = &run.after_crash;
    if a["caught_up"] != true || a["input_records"] != 30_000 || a["orders"] != 101 || a["view_orders"] != 101 {
        problem(format!("after the crash the application must catch up on 30,000 events and 101 orders: {a}"));
    }
    if a["below"] != 0 || a["over_double"] != 0 {
        problem(format!("after the crash every order's total must lie between its fold and twice it: {a}"));
    }
    // Streams purges its repartition topic (DeleteRecords) every second: both servers must show
    // it (the earliest offsets moved), Kafka so that the probe is known to exercise it.
    if a["repartition_purged"].as_u64().unwrap_or_default() == 0 {
        problem(format!("the repartition topic was not purged: {a}"));
    }
    for verdict in [c, a] {
        let topics: Vec<&str> = verdict["internal_topics"]
            .as_array()
            .map(|t| t.iter().filter_map(Value::as_str).collect())
            .unwrap_or_default();
        for want in ["order-summary-app-by-order-repartition", "order-summary-app-order-totals-changelog"] {
            if !topics.contains(&want) {
                problem(format!("internal topic {want} was not created: {topics:?}"));
            }
        }
    }
}

#[test]
fn the_java_client_and_kafka_streams_work_on_evident_as_on_apache_kafka() {
    let test = "the_java_client_and_kafka_streams_work_on_evident_as_on_apache_kafka";
    let Some(java) = java(test) else { return };
    let started = Instant::now();
    // evident first (it starts in well under a second): a panic while it starts then leaves no
    // reference broker behind, and a panic while the reference starts stops the reference.
    let server = Server::start();
    let reference = Reference::start();
    let ready = started.elapsed();
    let work = tempfile::tempdir().expect("tempdir");
    let evident_bootstrap = server.kafka_bootstrap();
    let kafka_bootstrap = reference.bootstrap.clone();
    let run = |label: &str, bootstrap: &str| {
        let probes = run_probes(&java, work.path(), label, bootstrap);
        let streams = streams_scenario(&java, work.path(), label, bootstrap);
        (probes, streams)
    };
    let ((evident, evident_streams), (kafka, kafka_streams)) = std::thread::scope(|s| {
        let e = s.spawn(|| run("evident", &evident_bootstrap));
        let k = s.spawn(|| run("kafka", &kafka_bootstrap));
        (e.join().expect("evident run"), k.join().expect("kafka run"))
    });

    let rules = ProbeRules {
        kafka_must_hold: &KAFKA_MUST_HOLD,
        every_probe_checked: false,
        known_differences: &KNOWN_DIFFERENCES,
    };
    let mut failures = compare_probe_lines(&evident, &kafka, &rules);
    for (label, run) in [("evident", &evident_streams), ("Kafka", &kafka_streams)] {
        println!(
            "kafka streams on {label}: {} ms; clean {}; killed after {} records; after the crash {}",
            run.millis, run.clean, run.processed_at_kill, run.after_crash
        );
        check_streams(label, run, &mut failures);
    }
    println!(
        "java client and streams: {} probes, servers ready in {:.1} s, all in {:.1} s",
        evident.len(),
        ready.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        let _ = writeln!(std::io::stderr(), "evident's log:\n{}", tail(&server.stderr(), 40));
    }
    assert!(failures.is_empty(), "{} problems:\n\n{}", failures.len(), failures.join("\n\n"));
    drop(reference);
}

/// A Java client program (`java/client-probes/CrashClients.java`) running beside the test, its
/// stdout lines on a channel; the last line is its JSON summary.
fn spawn_client(java: &Java, args: &[&str], log: &Path) -> App {
    App::spawn(java, "CrashClients", args, log)
}

impl App {
    /// Waits for a line `<word> N` with N >= `at_least`.
    fn wait_count(&mut self, word: &str, at_least: u64, what: &str) {
        let deadline = Instant::now() + STREAMS_LIMIT;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let line = self.lines.recv_timeout(left).unwrap_or_else(|e| panic!("{what}: no `{word} {at_least}`: {e}"));
            let n = line.strip_prefix(word).and_then(|n| n.trim().parse::<u64>().ok());
            if n.is_some_and(|n| n >= at_least) {
                return;
            }
        }
    }

    /// Waits for the program to end with status 0; returns its JSON summary (its last line).
    fn summary(&mut self, what: &str) -> Value {
        let deadline = Instant::now() + STREAMS_LIMIT;
        let mut last = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => last = Some(line),
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: did not end within {STREAMS_LIMIT:?}"),
            }
        }
        let status = self.child.wait().expect("waiting for a Java client");
        assert!(status.success(), "{what}: exited {status:?}");
        let last = last.unwrap_or_else(|| panic!("{what}: printed nothing"));
        serde_json::from_str(&last).unwrap_or_else(|e| panic!("{what}: last line {last:?}: {e}"))
    }
}

/// A bit set as `java.util.BitSet.toByteArray` writes it (little-endian bytes), from hex.
fn bits(hex: &str) -> Vec<u8> {
    (0..hex.len() / 2).map(|i| u8::from_str_radix(&hex[2 * i..2 * i + 2], 16).expect("hex")).collect()
}

/// The Java idempotent producer and a Java consumer group while evident is killed with SIGKILL
/// and restarted on the same data and port: every acknowledged record stored exactly once, and
/// committed offsets never below a commit the client saw acknowledged (issue 12, faults).
#[test]
fn java_clients_ride_out_a_kill_9_of_evident() {
    let test = "java_clients_ride_out_a_kill_9_of_evident";
    let Some(java) = java(test) else { return };
    const N: usize = 20_000;
    let dir = tempfile::tempdir().expect("tempdir");
    let port = common::jvm::free_port_pair();
    let kafka_addr = format!("127.0.0.1:{port}");
    let args = ["--kafka-addr", kafka_addr.as_str()];
    let mut server = Server::start_in_with(dir.path(), &args);
    server.create_topic("crash", 4);
    let bootstrap = server.kafka_bootstrap();
    let n = N.to_string();

    // The producer: SIGKILL after 4,000 acknowledgements, restart, let it finish.
    let mut producer = spawn_client(&java, &["produce", &bootstrap, "crash", &n], &dir.path().join("producer.log"));
    producer.wait_count("acked", 4_000, "the producer");
    server.kill9();
    server = Server::start_in_with(dir.path(), &args);
    let produced = producer.summary("the producer");
    let mut readback = spawn_client(&java, &["readback", &bootstrap, "crash", &n], &dir.path().join("readback.log"));
    let stored = readback.summary("the read-back");
    let shown = |v: &Value| {
        let mut v = v.clone();
        for set in ["acked_set", "stored_set"] {
            if v.get(set).is_some() {
                v[set] = Value::from("(bit set)");
            }
        }
        v
    };
    println!("producer across a kill -9: {}; read back: {}", shown(&produced), shown(&stored));
    let acked = bits(produced["acked_set"].as_str().expect("acked_set"));
    let kept = bits(stored["stored_set"].as_str().expect("stored_set"));
    let lost =
        acked.iter().enumerate().map(|(i, a)| (a & !kept.get(i).copied().unwrap_or(0)).count_ones()).sum::<u32>();
    assert_eq!(lost, 0, "acknowledged records lost across the kill -9: {produced} / {stored}");
    assert_eq!(stored["stored_twice"], 0, "records stored twice (idempotence failed across the restart): {stored}");
    assert_eq!(produced["failed"], 0, "the producer gave up on records within its 120 s delivery timeout: {produced}");

    // The consumer group: SIGKILL after 6,000 consumed, restart, let it finish.
    let mut consumer =
        spawn_client(&java, &["consume", &bootstrap, "crash", "crash-group", &n], &dir.path().join("consumer.log"));
    consumer.wait_count("consumed", 6_000, "the consumer");
    server.kill9();
    server = Server::start_in_with(dir.path(), &args);
    let consumed = consumer.summary("the consumer");
    println!("consumer group across a kill -9: {consumed}");
    assert_eq!(consumed["distinct"], N, "the group did not consume every record: {consumed}");
    assert_eq!(
        consumed["backwards"],
        Value::Array(vec![]),
        "committed offsets fell behind an acknowledged commit: {consumed}"
    );
    drop(server);
}
