//! Kafka transactions (issue 14) through confluent-kafka (librdkafka), unchanged, against
//! `evident serve` AND a real Apache Kafka broker in the same run: `tests/kafka/
//! confluent_transactions.py` commits and aborts over two partitions and reads back with
//! read_committed and read_uncommitted consumers (offsets included: the markers take the same
//! offsets on both), copies a topic exactly once with consume-transform-produce
//! (`send_offsets_to_transaction`, one batch aborted and redone), and fences a zombie producer;
//! the two brokers must print the same result, and so must `kafka-transactions list`,
//! `describe`, `describe-producers` and `find-hanging`. Then on evident alone: the entity stream over
//! HTTP holds only the committed events, at versions 0..n in commit order, the committed
//! partition read skips the aborted record and the markers, and after a kill -9 the same holds
//! (the coordinator's state and the transactions are replayed).
//!
//! Needs the Python clients (`EVIDENT_TEST_PYTHON`) and Kafka's jars (`scripts/java-setup.sh`);
//! skipped without them unless CI requires them.

mod common;

use std::process::Command;
use std::time::Duration;

use common::jvm::{java, Java, Reference};
use common::{kafka_python, kafka_scripts, run_with_limit, Server};
use serde_json::Value;

const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

fn run(python: &std::path::Path, bootstrap: &str, what: &str) -> Value {
    let dir = kafka_scripts();
    let mut cmd = Command::new(python);
    cmd.current_dir(&dir)
        .arg(dir.join("confluent_transactions.py"))
        .args([bootstrap, "tx"])
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let out = run_with_limit(&mut cmd, None, SCRIPT_LIMIT);
    assert_eq!(out.code, Some(0), "{what}: the script failed\n--- stdout\n{}\n--- stderr\n{}", out.stdout, out.stderr);
    out.json()
}

/// `kafka-transactions ARGS` (Apache Kafka's `TransactionsCommand`) against `bootstrap`: exit
/// status and its output as rows of cells, with what differs between two brokers by nature
/// (producer ids, times) masked: a producer id column, and the start and duration times.
fn transactions_tool(java: &Java, bootstrap: &str, args: &[&str]) -> (Option<i32>, Vec<Vec<String>>) {
    let mut cmd = java.command();
    cmd.arg("org.apache.kafka.tools.TransactionsCommand").args(["--bootstrap-server", bootstrap]).args(args);
    let out = run_with_limit(&mut cmd, None, SCRIPT_LIMIT);
    let text = format!("{}{}", out.stdout, out.stderr);
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<String> =
        lines.next().map(|h| h.split_whitespace().map(str::to_string).collect()).unwrap_or_default();
    let masked = ["ProducerId", "CurrentTransactionStartTimeMs", "TransactionDurationMs", "LastTimestamp"];
    let mut rows: Vec<Vec<String>> = lines
        .map(|l| {
            l.split('\t')
                .map(str::trim)
                .enumerate()
                .filter(|(i, _)| *i < header.len().max(1))
                .map(|(i, cell)| match header.get(i) {
                    Some(h) if masked.contains(&h.as_str()) && cell.parse::<i64>().is_ok() => "<n>".to_string(),
                    _ => cell.to_string(),
                })
                .collect()
        })
        .collect();
    rows.sort();
    rows.insert(0, header);
    (out.code, rows)
}

/// (version, offset, value) of each event of an entity stream, over HTTP.
fn stream(server: &Server, topic: &str, key: &str) -> Vec<(u64, u64, String)> {
    let read = server.get_ok(&format!("/v1/topics/{topic}/streams/{key}"));
    read["events"]
        .as_array()
        .expect("events")
        .iter()
        .map(|e| {
            let data = e["data"].as_str().map(str::to_string).unwrap_or_else(|| e["data"].to_string());
            (e["version"].as_u64().expect("version"), e["offset"].as_u64().expect("offset"), data)
        })
        .collect()
}

/// Offsets the HTTP partition read (committed records only) returns.
fn committed_offsets(server: &Server, topic: &str, partition: u32) -> Vec<u64> {
    let read = server.get_ok(&format!("/v1/topics/{topic}/partitions/{partition}/records?offset=0&limit=100"));
    let records = read["records"].as_array().or_else(|| read["events"].as_array()).expect("records");
    records.iter().map(|r| r["offset"].as_u64().expect("offset")).collect()
}

#[test]
fn transactions_behave_on_evident_as_on_apache_kafka_and_stay_committed_only_for_evident_readers() {
    let test = "transactions_behave_on_evident_as_on_apache_kafka_and_stay_committed_only_for_evident_readers";
    let Some(python) = kafka_python(test) else { return };
    let Some(java) = java(test) else { return };
    let dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start_in(dir.path());
    let reference = Reference::start();
    let (evident_bootstrap, kafka_bootstrap) = (server.kafka_bootstrap(), reference.bootstrap.clone());
    let (evident, kafka) = std::thread::scope(|s| {
        let e = s.spawn(|| run(&python, &evident_bootstrap, "evident"));
        let k = s.spawn(|| run(&python, &kafka_bootstrap, "Apache Kafka"));
        (e.join().expect("evident run"), k.join().expect("kafka run"))
    });
    println!("evident: {evident}\nkafka:   {kafka}");
    assert_eq!(evident, kafka, "evident and Apache Kafka disagree");

    // `kafka-transactions`: the same ids, states, epochs and partitions on both brokers.
    // describe-producers: each partition's producers (ids and timestamps masked), with their
    // epochs, last sequences, coordinator epochs and open transactions; find-hanging asks every
    // partition of the broker (DescribeProducers) and the coordinator (ListTransactions,
    // DescribeTransactions) and must find nothing hanging.
    let producers = |topic: &'static str, partition: &'static str| {
        ["describe-producers", "--topic", topic, "--partition", partition]
    };
    let describe_producers = [
        producers("tx-orders", "0"),
        producers("tx-orders", "1"),
        producers("tx-fenced", "0"),
        producers("tx-in", "0"),
        producers("tx-out", "0"),
    ];
    let described = describe_producers.iter().map(|a| &a[..]);
    for args in
        [&["list"][..], &["describe", "--transactional-id", "tx-tx"], &["describe", "--transactional-id", "none"]]
            .into_iter()
            .chain(described)
            .chain([&["find-hanging", "--broker-id", "1"][..]])
    {
        let on_evident = transactions_tool(&java, &evident_bootstrap, args);
        let on_kafka = transactions_tool(&java, &kafka_bootstrap, args);
        println!("kafka-transactions {}: {on_evident:?}", args.join(" "));
        assert_eq!(on_evident, on_kafka, "kafka-transactions {} differs", args.join(" "));
    }
    let (code, listed) = transactions_tool(&java, &evident_bootstrap, &["list"]);
    assert_eq!((code, listed.len()), (Some(0), 4), "three ids under a header: {listed:?}");

    // evident's own readers: committed events only, versions in commit order.
    let check = |server: &Server| {
        let orders = stream(server, "tx-orders", "order-1");
        let versions: Vec<(u64, u64)> = orders.iter().map(|e| (e.0, e.1)).collect();
        assert_eq!(versions, vec![(0, 0), (1, 1), (2, 2), (3, 6)], "{orders:?}");
        assert!(orders.iter().all(|e| !e.2.contains("aborted")), "{orders:?}");
        assert_eq!(committed_offsets(server, "tx-orders", 0), vec![0, 1, 2, 6]);
        assert_eq!(stream(server, "tx-fenced", "k").len(), 1);
    };
    check(&server);
    // A kill -9: the transactions, their markers and the coordinator's state come back.
    server.kill9();
    let server = Server::start_in(dir.path());
    check(&server);
    let copied = server.get_ok("/v1/groups/tx-copier");
    assert_eq!(copied["offsets"][0]["committed_offset"], 30, "{copied}");
}
