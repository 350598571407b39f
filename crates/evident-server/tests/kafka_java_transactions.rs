//! Kafka transactions (issue 14) with the Java client 4.x and with Apache Kafka's own
//! exactly-once tool, against `evident serve` AND a real Apache Kafka broker in the same run.
//! `tests/kafka_transactions.rs` proves the coordinator with librdkafka; this proves it with
//! kafka-clients, the client of Kafka Streams, Spring Kafka and Flink, whose transaction manager
//! is a different implementation with its own error handling.
//!
//! The probes (`java/client-probes/TxnProbes.java`) sum up each behaviour as one line: commits
//! and aborts over two topics of three partitions read back under both isolation levels (the
//! offsets the markers take included), a transaction left open (last stable offsets, where a
//! read_committed reader stops, offsetsForTimes), a consume-transform-produce loop with
//! `sendOffsetsToTransaction(offsets, groupMetadata)` and an aborted round, zombie fencing by a
//! second producer, a transaction timing out, offsets sent with stale group metadata, OffsetFetch
//! while a transaction holds offsets, and a timeout over the maximum. The lines must be equal on
//! both servers, except those listed in [`KNOWN_DIFFERENCES`], where evident's line is pinned
//! exactly; each line on Kafka must also hold what the probe expects ([`KAFKA_MUST_HOLD`]), so a
//! probe that passes nowhere fails.
//!
//! Then Apache Kafka's `TransactionalMessageCopier` (kafka-tools, the tool of Kafka's own
//! exactly-once system tests), unmodified: it copies 3 x 2,000 records in transactions of 100
//! with `--enable-random-aborts` (a third of its transactions are aborted and redone from the
//! group's committed offsets), in group mode with `--use-group-metadata`; a read_committed
//! reader must then find each input record in the output exactly once, in order, and the
//! group's offsets at the input's end, on both servers.
//!
//! The reference is set to `transaction.version` 1 first: Kafka 4 clusters start at version 2
//! (partitions added implicitly by the produce, the epoch bumped at every transaction's end),
//! evident serves version 1 and advertises no version, so the Java client speaks version 1 to
//! both. Speed: one JVM runs the probes per server, the two servers in parallel, then the
//! copier (its own JVM: it ends with System.exit).

mod common;

use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use common::jvm::{compare_probe_lines, java, probe_lines, tail, Java, ProbeLine, ProbeRules, Reference};
use common::{run_with_limit, Server, ToolRun};
use serde_json::Value;

/// The longest a run of the probes against one server may take (a hang guard).
const RUN_LIMIT: Duration = Duration::from_secs(400);

/// The longest the copier or one of its helper runs may take (a hang guard).
const COPIER_LIMIT: Duration = Duration::from_secs(300);

/// Records per input partition for the copier (3 partitions).
const COPIER_PER_PARTITION: u64 = 2_000;

/// Probe name, and what its line on Kafka must contain (the probe's own checks).
const KAFKA_MUST_HOLD: [(&str, &[&str]); 9] = [
    ("admin createTopics", &["created 7 topics"]),
    (
        "commit and abort: 6 transactions over 2 topics x 3 partitions",
        &["read_committed as committed=true (72) read_uncommitted as sent=true (108)"],
    ),
    (
        "an open transaction: read_committed stops at the last stable offset",
        &[
            "read_committed=[24, 24, 24] read_uncommitted=[26, 26, 26]",
            "(open records 0)",
            "offsetsForTimes(open) read_committed=none",
            "ends equal=true",
            "open records read 6",
        ],
    ),
    (
        "consume-transform-produce: sendOffsetsToTransaction(groupMetadata), one round aborted",
        &[
            "input=300 output read_committed=300 each once in order=true aborted outputs seen by read_uncommitted=true",
            "offsets unchanged by the abort=true",
            "group offsets={0=100, 1=100, 2=100}",
        ],
    ),
    (
        "zombie fencing: a second producer with the same transactional.id",
        &["A's send after B's init: InvalidProducerEpochException", "B's commit: ok", "read_committed=[from-B]"],
    ),
    (
        "transaction timeout: the coordinator aborts the open transaction",
        &["expired: state=CompleteAbort", "commit: ProducerFencedException", "read_committed=[] "],
    ),
    (
        "sendOffsetsToTransaction: a stale generation, a member that left, never joined",
        &["stale generation: CommitFailedException", "member that left: CommitFailedException", "group holds 42"],
    ),
    (
        "OffsetFetch while a transaction holds the group's offsets (require_stable)",
        &["pending: read_committed TimeoutException", "committed: read_committed 7"],
    ),
    (
        "transaction.timeout.ms above the broker's maximum",
        &["The transaction timeout is larger than the maximum value allowed by the broker"],
    ),
];

/// Where evident's line differs from Kafka's: probe name, evident's exact line, why. Any other
/// line from evident fails the test, so the entry must go when evident changes.
const KNOWN_DIFFERENCES: [(&str, &str, &str); 0] = [];

/// `java CLASS ARGS`, bounded by `limit`; fails the test unless it exits 0.
fn run_java(java: &Java, args: &[&str], limit: Duration, what: &str) -> ToolRun {
    let mut cmd = java.command();
    cmd.args(args);
    let run = run_with_limit(&mut cmd, None, limit);
    assert_eq!(
        run.code,
        Some(0),
        "{what} failed\n--- stdout\n{}\n--- stderr\n{}",
        tail(&run.stdout, 20),
        tail(&run.stderr, 60)
    );
    run
}

/// Runs the probes against `bootstrap` in one JVM; returns (name, line) in order.
fn run_probes(java: &Java, work: &Path, label: &str, bootstrap: &str) -> Vec<(String, ProbeLine)> {
    let results = work.join(format!("txn-{label}.jsonl"));
    let path = results.to_str().expect("utf-8 path");
    run_java(java, &["TxnProbes", "probes", bootstrap, path], RUN_LIMIT, &format!("the probes on {label}"));
    probe_lines(&results)
}

/// What the copier did on one server.
struct CopierRun {
    /// Its last line: `{"stage":"ShutdownComplete","totalProcessed":..,"remaining":..}`.
    shutdown: Value,
    /// How many progress lines it printed (one per poll loop).
    progress_lines: usize,
    /// TxnProbes copier-verify's verdict on the output.
    verdict: Value,
    millis: u64,
}

/// Fills the copier's input, runs Kafka's TransactionalMessageCopier over it with random
/// aborts, and reads back what it wrote.
fn copier(java: &Java, label: &str, bootstrap: &str) -> CopierRun {
    let started = Instant::now();
    let per = COPIER_PER_PARTITION.to_string();
    let input = run_java(
        java,
        &["TxnProbes", "copier-input", bootstrap, "copy-in", "copy-out", "3", &per],
        COPIER_LIMIT,
        &format!("filling the copier's input on {label}"),
    );
    assert_eq!(input.json()["input"], 3 * COPIER_PER_PARTITION, "{label}: the copier's input");
    let tool = run_java(
        java,
        &[
            "org.apache.kafka.tools.TransactionalMessageCopier",
            "--broker-list",
            bootstrap,
            "--input-topic",
            "copy-in",
            // Ignored in group mode (the group assigns all three), but required.
            "--input-partition",
            "0",
            "--output-topic",
            "copy-out",
            "--transactional-id",
            "copier-tx",
            "--consumer-group",
            "copier-group",
            "--transaction-size",
            "100",
            "--enable-random-aborts",
            "--group-mode",
            "--use-group-metadata",
        ],
        COPIER_LIMIT,
        &format!("Kafka's TransactionalMessageCopier on {label}"),
    );
    let lines: Vec<Value> = tool.stdout.lines().filter_map(|l| serde_json::from_str(l).ok()).collect();
    let shutdown = lines.iter().rev().find(|v| v["stage"] == "ShutdownComplete").cloned().unwrap_or_else(|| {
        panic!("{label}: the copier printed no ShutdownComplete line\n--- stdout\n{}", tail(&tool.stdout, 20))
    });
    let progress_lines = lines.iter().filter(|v| v["stage"] == "ProcessLoop").count();
    let verdict = run_java(
        java,
        &["TxnProbes", "copier-verify", bootstrap, "copy-in", "copy-out", "3", "copier-group"],
        COPIER_LIMIT,
        &format!("reading the copier's output on {label}"),
    )
    .json();
    CopierRun { shutdown, progress_lines, verdict, millis: started.elapsed().as_millis() as u64 }
}

/// The exactly-once checks on one server's copier run; problems are pushed to `failures`.
fn check_copier(label: &str, run: &CopierRun, failures: &mut Vec<String>) {
    let n = 3 * COPIER_PER_PARTITION;
    let (s, v) = (&run.shutdown, &run.verdict);
    let mut problem = |what: String| failures.push(format!("TransactionalMessageCopier on {label}: {what}"));
    if s["totalProcessed"] != n || s["remaining"] != 0 {
        problem(format!("the copier must report {n} processed and none remaining: {s}"));
    }
    if v["input"] != n
        || v["output_committed"] != n
        || v["missing"] != 0
        || v["duplicated"] != 0
        || v["in_order"] != true
    {
        problem(format!("the output must hold each of the {n} input records once, in order: {v}"));
    }
    if v["group_offsets_at_input_end"] != true {
        problem(format!("the group's committed offsets must be the input's end: {v}"));
    }
    // The aborted transactions' records are in the log (read_uncommitted sees them): the random
    // aborts happened, so the run proved something about them. A third of about 90
    // transactions is aborted; none at all has a probability of (2/3)^60.
    if v["output_uncommitted"].as_u64().unwrap_or_default() <= n {
        problem(format!("no aborted record in the output: the random aborts did not happen: {v}"));
    }
}

#[test]
fn the_java_client_and_kafkas_exactly_once_copier_use_transactions_on_evident_as_on_apache_kafka() {
    let test = "the_java_client_and_kafkas_exactly_once_copier_use_transactions_on_evident_as_on_apache_kafka";
    let Some(java) = java(test) else { return };
    let started = Instant::now();
    // evident first (it starts in well under a second): a panic while it starts then leaves no
    // reference broker behind, and a panic while the reference starts stops the reference.
    let server = Server::start();
    let reference = Reference::start();
    let evident_bootstrap = server.kafka_bootstrap();
    let kafka_bootstrap = reference.bootstrap.clone();
    let tv =
        run_java(&java, &["TxnProbes", "tv1", &kafka_bootstrap], COPIER_LIMIT, "setting transaction.version 1").json();
    assert_eq!(tv["after"], 1, "the reference must run transaction version 1: {tv}");
    let ready = started.elapsed();
    let work = tempfile::tempdir().expect("tempdir");
    let run = |label: &str, bootstrap: &str| {
        (run_probes(&java, work.path(), label, bootstrap), copier(&java, label, bootstrap))
    };
    let ((evident, evident_copier), (kafka, kafka_copier)) = std::thread::scope(|s| {
        let e = s.spawn(|| run("evident", &evident_bootstrap));
        let k = s.spawn(|| run("kafka", &kafka_bootstrap));
        (e.join().expect("evident run"), k.join().expect("kafka run"))
    });

    let rules = ProbeRules {
        kafka_must_hold: &KAFKA_MUST_HOLD,
        every_probe_checked: true,
        known_differences: &KNOWN_DIFFERENCES,
    };
    let mut failures = compare_probe_lines(&evident, &kafka, &rules);
    for (label, run) in [("evident", &evident_copier), ("Kafka", &kafka_copier)] {
        println!(
            "TransactionalMessageCopier on {label}: {} ms, {} poll loops; {}; output {}",
            run.millis, run.progress_lines, run.shutdown, run.verdict
        );
        check_copier(label, run, &mut failures);
    }
    println!(
        "java transactions: {} probes and the copier, servers ready in {:.1} s (transaction.version {} -> 1), all in {:.1} s",
        evident.len(),
        ready.as_secs_f64(),
        tv["before"],
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        let _ = writeln!(std::io::stderr(), "evident's log:\n{}", tail(&server.stderr(), 40));
    }
    assert!(failures.is_empty(), "{} problems:\n\n{}", failures.len(), failures.join("\n\n"));
    drop(reference);
}
