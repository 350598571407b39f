//! DeleteRecords (issue 12 part 4) through Apache Kafka's own tools, unmodified, against
//! `evident serve` AND a real Apache Kafka broker, compared probe by probe as in
//! `kafka_jvm_tools.rs` (same runner, one JVM per server): `kafka-delete-records.sh`
//! (`DeleteRecordsCommand`, which calls the admin client's `deleteRecords`) moves the log start,
//! `kafka-get-offsets --time -2` then answers it, a start below the current one changes nothing,
//! an offset past the high watermark is refused per partition, and a console consumer with
//! `--from-beginning` (auto.offset.reset=earliest) and a group resumes at the log start. Then
//! evident alone is killed with SIGKILL right after the acknowledged deletes and must come back
//! with the same log starts, its HTTP API showing them and refusing reads below them.
//!
//! Needs the jars of `scripts/java-setup.sh` (see `kafka_jvm_tools.rs`); skipped without them.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::Duration;

use common::jvm::{java, run_tools, Java, Reference, Tool, ToolOutcome as Outcome};
use common::Server;
use serde_json::{json, Value};

const RUN_LIMIT: Duration = Duration::from_secs(300);

const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
const PRODUCER: &str = "org.apache.kafka.tools.ConsoleProducer";
const CONSUMER: &str = "org.apache.kafka.tools.consumer.ConsoleConsumer";
const OFFSETS: &str = "org.apache.kafka.tools.GetOffsetShell";
const DELETE: &str = "org.apache.kafka.tools.DeleteRecordsCommand";

/// One tool run: name, main class, arguments (`{B}` the bootstrap, `{DIR}` the work directory),
/// stdin, and the exit status Apache Kafka gives.
struct Probe {
    name: &'static str,
    main: &'static str,
    args: Vec<String>,
    stdin: String,
    kafka_status: i64,
}

fn probe(name: &'static str, main: &'static str, args: &[&str]) -> Probe {
    let mut all = vec!["--bootstrap-server".to_string(), "{B}".to_string()];
    all.extend(args.iter().map(|a| a.to_string()));
    Probe { name, main, args: all, stdin: String::new(), kafka_status: 0 }
}

/// Twelve keyed records; the Java producer places them by murmur2, so both servers get the same
/// records in the same partitions.
fn records() -> String {
    (0..12).map(|i| format!("key-{i}\tvalue-{i}\n")).collect()
}

fn probes() -> Vec<Probe> {
    let delete = |file: &str| ["--offset-json-file".to_string(), format!("{{DIR}}/{file}")];
    let with = |mut p: Probe, extra: [String; 2]| {
        p.args.extend(extra);
        p
    };
    vec![
        probe("create purge-me", TOPICS, &["--create", "--topic", "purge-me", "--partitions", "2"]),
        Probe {
            stdin: records(),
            ..probe(
                "produce 12 keyed records",
                PRODUCER,
                &["--topic", "purge-me", "--reader-property", "parse.key=true", "--command-property", "acks=all"],
            )
        },
        probe("latest offsets", OFFSETS, &["--topic", "purge-me", "--time", "-1"]),
        with(probe("delete-records p0 to 2, p1 to the high watermark", DELETE, &[]), delete("first.json")),
        probe("earliest offsets after the delete", OFFSETS, &["--topic", "purge-me", "--time", "-2"]),
        with(probe("delete-records p0 back to 1 (no change)", DELETE, &[]), delete("lower.json")),
        with(probe("delete-records past the high watermark", DELETE, &[]), delete("past.json")),
        probe("earliest offsets unchanged", OFFSETS, &["--topic", "purge-me", "--time", "-2"]),
        probe(
            "consume --from-beginning with a group resumes at the log start",
            CONSUMER,
            &[
                "--topic",
                "purge-me",
                "--group",
                "purge-group",
                "--from-beginning",
                "--timeout-ms",
                "8000",
                "--formatter-property",
                "print.key=true",
            ],
        ),
    ]
}

fn run_probes(java: &Java, work: &Path, label: &str, bootstrap: &str, probes: &[Probe]) -> BTreeMap<String, Outcome> {
    let tools = probes.iter().map(|p| Tool { name: p.name, main: p.main, args: &p.args, stdin: &p.stdin });
    run_tools(java, work, label, bootstrap, tools, RUN_LIMIT)
}

/// The stdout lines, sorted (the tools print partitions in the order answers arrive).
fn lines(outcome: &Outcome) -> Vec<String> {
    let mut lines: Vec<String> = outcome.stdout.lines().filter(|l| !l.trim().is_empty()).map(str::to_string).collect();
    lines.sort();
    lines
}

#[test]
fn delete_records_moves_the_log_start_on_evident_as_on_apache_kafka_and_survives_kill_9() {
    let test = "delete_records_moves_the_log_start_on_evident_as_on_apache_kafka_and_survives_kill_9";
    let Some(java) = java(test) else { return };
    let evident_dir = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start_in(evident_dir.path());
    let reference = Reference::start();

    let work = tempfile::tempdir().expect("tempdir");
    let write = |file: &str, partitions: Value| {
        let body = json!({"version": 1, "partitions": partitions});
        std::fs::write(work.path().join(file), body.to_string()).expect("offsets file");
    };
    write(
        "first.json",
        json!([{"topic": "purge-me", "partition": 0, "offset": 2}, {"topic": "purge-me", "partition": 1, "offset": -1}]),
    );
    write("lower.json", json!([{"topic": "purge-me", "partition": 0, "offset": 1}]));
    write("past.json", json!([{"topic": "purge-me", "partition": 0, "offset": 1000}]));

    let probes = probes();
    let (evident_bootstrap, kafka_bootstrap) = (server.kafka_bootstrap(), reference.bootstrap.clone());
    let (evident, kafka) = std::thread::scope(|s| {
        let e = s.spawn(|| run_probes(&java, work.path(), "evident", &evident_bootstrap, &probes));
        let k = s.spawn(|| run_probes(&java, work.path(), "kafka", &kafka_bootstrap, &probes));
        (e.join().expect("evident run"), k.join().expect("kafka run"))
    });
    drop(reference);

    let mut failures = Vec::new();
    for p in &probes {
        let (Some(e), Some(k)) = (evident.get(p.name), kafka.get(p.name)) else {
            failures.push(format!("{}: no result", p.name));
            continue;
        };
        let same = e.code == k.code && lines(e) == lines(k);
        println!("{:<64} evident {:?} kafka {:?} {}", p.name, e.code, k.code, if same { "same" } else { "DIFFERS" });
        if k.code != Some(p.kafka_status) || !same {
            failures.push(format!(
                "{}: evident {:?}, Kafka {:?} (expected {})\n--- evident\n{}\n--- Kafka\n{}\n--- evident stderr\n{}\n--- Kafka stderr\n{}",
                p.name,
                e.code,
                k.code,
                p.kafka_status,
                lines(e).join("\n"),
                lines(k).join("\n"),
                e.stderr,
                k.stderr
            ));
        }
    }
    assert!(failures.is_empty(), "{} probes differ:\n\n{}", failures.len(), failures.join("\n\n"));

    // The figures themselves, so that a probe equal on both servers but wrong on both fails.
    let latest = lines(&evident["latest offsets"]);
    let ends: Vec<u64> =
        latest.iter().map(|l| l.rsplit(':').next().and_then(|n| n.parse().ok()).expect("offset")).collect();
    assert_eq!(ends.iter().sum::<u64>(), 12, "{latest:?}");
    let want_earliest = vec!["purge-me:0:2".to_string(), format!("purge-me:1:{}", ends[1])];
    assert_eq!(lines(&evident["earliest offsets after the delete"]), want_earliest);
    assert_eq!(lines(&evident["earliest offsets unchanged"]), want_earliest);
    assert!(evident["delete-records past the high watermark"].stdout.contains("OffsetOutOfRangeException"));
    let consumed = evident["consume --from-beginning with a group resumes at the log start"].stdout.lines().count();
    assert_eq!(consumed as u64, ends[0] - 2, "only partition 0's records from offset 2 are left");

    // Acknowledged, so durable: a SIGKILL right now must not move any start back.
    server.kill9();
    let server = Server::start_in(evident_dir.path());
    let topic = server.get_ok("/v1/topics/purge-me");
    let starts: Vec<u64> = topic["partition_offsets"]
        .as_array()
        .expect("partition_offsets")
        .iter()
        .map(|p| p["log_start_offset"].as_u64().expect("log_start_offset"))
        .collect();
    assert_eq!(starts, [2, ends[1]], "{topic}");
    let (status, body) = server.get("/v1/topics/purge-me/partitions/0/records?offset=1");
    assert_eq!((status, body["error"]["code"].as_str()), (400, Some("offset_out_of_range")), "{body}");
    let page = server.get_ok("/v1/topics/purge-me/partitions/0/records");
    assert_eq!(page["records"][0]["offset"].as_u64(), Some(2), "{page}");
    println!("delete records: evident and Kafka agree on {} probes; log starts {starts:?} after kill -9", probes.len());
}
