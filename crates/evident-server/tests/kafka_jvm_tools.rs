//! Conformance with Apache Kafka's own Java command-line tools (issue 12): kafka-topics,
//! kafka-configs, the console producer and consumer, kafka-get-offsets and kafka-consumer-groups
//! (seed 000 resets its consumer group with the last), unmodified, run from Kafka 4.4's published
//! jars against `evident serve` AND against a real Apache Kafka broker started for this test, and
//! their results compared probe by probe: same exit status, same output once the parts that
//! name a particular server (topic ids, node ids, ports, consumer ids) are masked. Running each
//! probe on the reference too catches a probe that passes nowhere.
//!
//! The jars and the tool runner are installed by `scripts/java-setup.sh`, which prints
//! `KAFKA_JAVA_LIB`, `KAFKA_JAVA_CLASSES` and `KAFKA_JAVA_CONF`; `scripts/test.sh` exports them
//! and sets `EVIDENT_REQUIRE_KAFKA_JAVA=1`. Without them (a plain `cargo test`) the test prints a
//! skip line and passes. The reference broker is started by `scripts/kafka-ref.sh` in a temporary
//! directory on free ports and stopped when the test ends, failed or not.
//!
//! Speed: a JVM takes seconds to start and load Kafka's classes on a small machine, so each
//! server's probes run in ONE JVM (`java/tool-runner/ToolRunner.java` calls each tool's `main`
//! in turn), and the two servers' runs go in parallel.

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::jvm::{java, run_tools, Java, Reference, Tool, ToolOutcome as Outcome};
use common::Server;

/// The longest a whole run of the probes against one server may take (a hang guard).
const RUN_LIMIT: Duration = Duration::from_secs(600);

const TOPICS: &str = "org.apache.kafka.tools.TopicCommand";
const CONFIGS: &str = "org.apache.kafka.tools.ConfigCommand";
const PRODUCER: &str = "org.apache.kafka.tools.ConsoleProducer";
const CONSUMER: &str = "org.apache.kafka.tools.consumer.ConsoleConsumer";
const OFFSETS: &str = "org.apache.kafka.tools.GetOffsetShell";
const GROUPS: &str = "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand";

/// How a probe's two results are compared.
#[derive(Clone, Copy)]
enum Compare {
    /// Same exit status and the same masked stdout, line for line.
    Output,
    /// Same exit status and the same masked stdout lines in any order (partitions answered in a
    /// server's own order: a consumer's records, a group's partitions).
    Unordered,
    /// Same exit status and the same masked stdout lines that start with a topic or group name
    /// this test made (a listing that may also hold a server's internal topics).
    Ours,
    /// Same exit status and the same Kafka exception class in stderr: a refusal whose message
    /// is the server's own words (evident's say "evident: ..." and name the stream or topic).
    Error,
    /// Same exit status, and on both stdout holds the text exactly this many times (a tool that
    /// prints timings or JSON events: the count of what matters is compared, not the figures).
    Count(&'static str, usize),
    /// Same exit status only: the output names server-specific facts (a configuration listing).
    Status,
}

struct Probe {
    name: &'static str,
    main: &'static str,
    args: Vec<String>,
    stdin: String,
    /// The status Apache Kafka gives: checked on the reference, so a probe that is wrong fails.
    kafka_status: i32,
    compare: Compare,
}

fn probe(name: &'static str, main: &'static str, args: &[&str], kafka_status: i32, compare: Compare) -> Probe {
    Probe {
        name,
        main,
        args: args.iter().map(|a| a.to_string()).collect(),
        stdin: String::new(),
        kafka_status,
        compare,
    }
}

/// The names the probes create; `Compare::Ours` keeps the listing lines that start with them.
const OURS: [&str; 7] =
    ["order-events", "scratch", "order-consumer-group", "audit-group", "perf", "verifiable", "verifiable-group"];

/// `--bootstrap-server {B}` followed by `args`.
fn with_b<'a>(args: &[&'a str]) -> Vec<&'a str> {
    ["--bootstrap-server", "{B}"].iter().chain(args).copied().collect()
}

/// The probes, in order (they build on each other: a topic, records, a group, its offsets).
/// `{B}` stands for the bootstrap address and `{DIR}` for a scratch directory.
fn probes() -> Vec<Probe> {
    use Compare::*;
    let mut list = vec![
        // kafka-topics
        probe(
            "topics --create order-events (3 partitions)",
            TOPICS,
            &with_b(&["--create", "--topic", "order-events", "--partitions", "3", "--replication-factor", "1"]),
            0,
            Output,
        ),
        probe(
            "topics --create order-events again (exists)",
            TOPICS,
            &with_b(&["--create", "--topic", "order-events", "--partitions", "3"]),
            1,
            Error,
        ),
        probe(
            "topics --create scratch (1 partition)",
            TOPICS,
            &with_b(&["--create", "--topic", "scratch", "--partitions", "1"]),
            0,
            Output,
        ),
        probe("topics --describe order-events", TOPICS, &with_b(&["--describe", "--topic", "order-events"]), 0, Output),
        // Kafka's metadata reaches its broker a moment after a topic is created or deleted: the
        // probes that list or describe a changed topic come a few probes after the change.
        probe("topics --list", TOPICS, &with_b(&["--list", "--exclude-internal"]), 0, Ours),
        probe(
            "topics --alter scratch --partitions 2",
            TOPICS,
            &with_b(&["--alter", "--topic", "scratch", "--partitions", "2"]),
            0,
            Output,
        ),
        probe(
            "topics --describe missing topic",
            TOPICS,
            &with_b(&["--describe", "--topic", "no-such-topic"]),
            1,
            Output,
        ),
        probe("topics --describe scratch (grown)", TOPICS, &with_b(&["--describe", "--topic", "scratch"]), 0, Output),
        // kafka-configs
        probe(
            "configs --describe topic",
            CONFIGS,
            &with_b(&["--describe", "--entity-type", "topics", "--entity-name", "order-events"]),
            0,
            Status,
        ),
        probe(
            "configs --describe topic --all",
            CONFIGS,
            &with_b(&["--describe", "--entity-type", "topics", "--entity-name", "order-events", "--all"]),
            0,
            Status,
        ),
        probe(
            "configs --alter topic --add-config retention.ms",
            CONFIGS,
            &with_b(&[
                "--alter",
                "--entity-type",
                "topics",
                "--entity-name",
                "order-events",
                "--add-config",
                "retention.ms=86400000",
            ]),
            0,
            Output,
        ),
        probe(
            "configs --describe topic (altered)",
            CONFIGS,
            &with_b(&["--describe", "--entity-type", "topics", "--entity-name", "order-events"]),
            0,
            Count("  retention.ms=86400000 sensitive=false", 1),
        ),
        probe(
            "configs --alter topic --delete-config retention.ms",
            CONFIGS,
            &with_b(&[
                "--alter",
                "--entity-type",
                "topics",
                "--entity-name",
                "order-events",
                "--delete-config",
                "retention.ms",
            ]),
            0,
            Output,
        ),
        probe(
            "configs --alter topic --add-config unknown",
            CONFIGS,
            &with_b(&[
                "--alter",
                "--entity-type",
                "topics",
                "--entity-name",
                "order-events",
                "--add-config",
                "no.such.config=1",
            ]),
            1,
            Error,
        ),
        // The console producer: keys and headers (defaults: headers, key and value separated by
        // tabs, headers `k:v` separated by commas).
        Probe {
            stdin: [
                "source:web,trace:t1\torder-1\t{\"item\":\"apple\",\"price\":3}",
                "source:web,trace:t2\torder-2\t{\"item\":\"pear\",\"price\":5}",
                "source:app,trace:t3\torder-1\t{\"item\":\"plum\",\"price\":7}",
                "source:app,trace:t4\torder-3\t{\"item\":\"fig\",\"price\":11}",
                "source:web,trace:t5\torder-2\t{\"item\":\"kiwi\",\"price\":13}",
                "source:web,trace:t6\torder-3\t{\"item\":\"lime\",\"price\":17}",
            ]
            .map(|l| format!("{l}\n"))
            .concat(),
            ..probe(
                "console-producer keys and headers",
                PRODUCER,
                &with_b(&[
                    "--topic",
                    "order-events",
                    "--reader-property",
                    "parse.key=true",
                    "--reader-property",
                    "parse.headers=true",
                    "--command-property",
                    "acks=all",
                ]),
                0,
                Output,
            )
        },
        probe(
            "console-consumer --group --from-beginning (keys, headers)",
            CONSUMER,
            &with_b(&[
                "--topic",
                "order-events",
                "--group",
                "order-consumer-group",
                "--from-beginning",
                "--max-messages",
                "6",
                "--timeout-ms",
                "30000",
                "--formatter-property",
                "print.key=true",
                "--formatter-property",
                "print.headers=true",
                "--formatter-property",
                "print.partition=true",
                "--formatter-property",
                "print.offset=true",
            ]),
            0,
            Unordered,
        ),
        // kafka-get-offsets
        probe("get-offsets latest", OFFSETS, &with_b(&["--topic", "order-events"]), 0, Unordered),
        probe("get-offsets earliest", OFFSETS, &with_b(&["--topic", "order-events", "--time", "-2"]), 0, Unordered),
        probe(
            "get-offsets by timestamp (2020)",
            OFFSETS,
            &with_b(&["--topic", "order-events", "--time", "1577836800000"]),
            0,
            Unordered,
        ),
        // kafka-consumer-groups
        probe("consumer-groups --list", GROUPS, &with_b(&["--list"]), 0, Ours),
        probe(
            "consumer-groups --describe (lag)",
            GROUPS,
            &with_b(&["--describe", "--group", "order-consumer-group"]),
            0,
            Unordered,
        ),
        probe(
            "consumer-groups --describe --state",
            GROUPS,
            &with_b(&["--describe", "--group", "order-consumer-group", "--state"]),
            0,
            Output,
        ),
        probe(
            "consumer-groups --describe --members",
            GROUPS,
            &with_b(&["--describe", "--group", "order-consumer-group", "--members"]),
            0,
            Output,
        ),
    ];
    // Every reset strategy, as a dry run (the default without --execute).
    let strategies: [(&'static str, &[&str]); 8] = [
        ("reset --to-earliest (dry run)", &["--to-earliest"]),
        ("reset --to-latest (dry run)", &["--to-latest"]),
        ("reset --to-current (dry run)", &["--to-current"]),
        ("reset --to-offset 1 (dry run)", &["--to-offset", "1"]),
        ("reset --shift-by -1 (dry run)", &["--shift-by", "-1"]),
        ("reset --to-datetime 2020 (dry run)", &["--to-datetime", "2020-01-01T00:00:00.000"]),
        ("reset --by-duration P1D (dry run)", &["--by-duration", "P1D"]),
        ("reset --from-file (dry run)", &["--from-file", "{DIR}/offsets.csv"]),
    ];
    for (name, strategy) in strategies {
        let mut args = with_b(&["--reset-offsets", "--group", "order-consumer-group", "--topic", "order-events"]);
        args.extend_from_slice(strategy);
        list.push(probe(name, GROUPS, &args, 0, Unordered));
    }
    list.extend([
        probe(
            "reset --to-offset 2 --execute",
            GROUPS,
            &with_b(&[
                "--reset-offsets",
                "--group",
                "order-consumer-group",
                "--topic",
                "order-events",
                "--to-offset",
                "2",
                "--execute",
            ]),
            0,
            Unordered,
        ),
        probe(
            "consumer-groups --describe after --to-offset 2",
            GROUPS,
            &with_b(&["--describe", "--group", "order-consumer-group"]),
            0,
            Unordered,
        ),
        // Seed 000's command, verbatim but for --bootstrap-server.
        probe(
            "seed 000: reset --to-earliest --execute",
            GROUPS,
            &with_b(&[
                "--reset-offsets",
                "--to-earliest",
                "--group",
                "order-consumer-group",
                "--topic",
                "order-events",
                "--execute",
            ]),
            0,
            Unordered,
        ),
        probe(
            "consumer-groups --describe after the seed's reset",
            GROUPS,
            &with_b(&["--describe", "--group", "order-consumer-group"]),
            0,
            Unordered,
        ),
        // A second group whose offsets are deleted per topic (OffsetDelete), then groups deleted.
        probe(
            "console-consumer --group audit-group",
            CONSUMER,
            &with_b(&[
                "--topic",
                "order-events",
                "--group",
                "audit-group",
                "--from-beginning",
                "--max-messages",
                "6",
                "--timeout-ms",
                "30000",
            ]),
            0,
            Unordered,
        ),
        probe(
            "consumer-groups --delete-offsets audit-group",
            GROUPS,
            &with_b(&["--delete-offsets", "--group", "audit-group", "--topic", "order-events"]),
            0,
            Unordered,
        ),
        probe(
            "consumer-groups --delete order-consumer-group",
            GROUPS,
            &with_b(&["--delete", "--group", "order-consumer-group"]),
            0,
            Output,
        ),
        probe("consumer-groups --list after --delete", GROUPS, &with_b(&["--list"]), 0, Ours),
        probe(
            "consumer-groups --describe deleted group",
            GROUPS,
            &with_b(&["--describe", "--group", "order-consumer-group"]),
            0,
            Output,
        ),
        probe("topics --delete scratch", TOPICS, &with_b(&["--delete", "--topic", "scratch"]), 0, Output),
        // The perf tests and the verifiable producer/consumer (Kafka's system tests use them).
        probe(
            "topics --create perf",
            TOPICS,
            &with_b(&["--create", "--topic", "perf", "--partitions", "1"]),
            0,
            Output,
        ),
        probe(
            "producer-perf-test 2000 x 100 B, acks=all",
            "org.apache.kafka.tools.ProducerPerformance",
            &with_b(&[
                "--topic",
                "perf",
                "--num-records",
                "2000",
                "--record-size",
                "100",
                "--throughput",
                "-1",
                "--command-property",
                "acks=all",
            ]),
            0,
            Count("2000 records sent", 1),
        ),
        probe(
            "consumer-perf-test 2000",
            "org.apache.kafka.tools.ConsumerPerformance",
            &with_b(&["--topic", "perf", "--num-records", "2000", "--timeout", "30000", "--show-detailed-stats"]),
            0,
            Status,
        ),
        // One partition: keyless records go to a partition the sticky partitioner picks at random.
        probe(
            "topics --create verifiable",
            TOPICS,
            &with_b(&["--create", "--topic", "verifiable", "--partitions", "1"]),
            0,
            Output,
        ),
        probe(
            "verifiable-producer 200, acks=all",
            "org.apache.kafka.tools.VerifiableProducer",
            &with_b(&["--topic", "verifiable", "--max-messages", "200", "--acks", "-1"]),
            0,
            Count("\"name\":\"producer_send_success\"", 200),
        ),
        probe(
            "verifiable-consumer 200 --group-id",
            "org.apache.kafka.tools.VerifiableConsumer",
            &with_b(&[
                "--topic",
                "verifiable",
                "--group-id",
                "verifiable-group",
                "--max-messages",
                "200",
                "--reset-policy",
                "earliest",
            ]),
            0,
            Count("\"name\":\"shutdown_complete\"", 1),
        ),
        probe(
            "consumer-groups --describe verifiable-group",
            GROUPS,
            &with_b(&["--describe", "--group", "verifiable-group"]),
            0,
            Unordered,
        ),
        probe("topics --list after --delete", TOPICS, &with_b(&["--list", "--exclude-internal"]), 0, Ours),
    ]);
    list
}

/// Runs every probe against `bootstrap` in one JVM; returns the outcomes by probe name.
fn run_probes(java: &Java, work: &Path, label: &str, bootstrap: &str, probes: &[Probe]) -> BTreeMap<String, Outcome> {
    let tools = probes.iter().map(|p| Tool { name: p.name, main: p.main, args: &p.args, stdin: &p.stdin });
    run_tools(java, work, label, bootstrap, tools, RUN_LIMIT)
}

/// Masks what names a particular server in one output line: ids the server chose (topic ids,
/// node ids, consumer and client ids), its address, and column padding (widths follow them).
fn mask_line(line: &str, bootstrap: &str) -> String {
    let line = line.replace(bootstrap, "BROKER");
    let mut out = Vec::new();
    let mut words = line.split_whitespace().peekable();
    while let Some(word) = words.next() {
        // A topic's configs: Kafka 4.4 (eligible leader replicas on) writes the cluster-wide
        // min.insync.replicas as a dynamic default, so every topic lists it; evident has no such
        // broker layer. The value is the default (1) on both, so it is dropped from the list.
        if word == "Configs:" {
            out.push(word.to_string());
            if let Some(list) = words.next_if(|w| !w.ends_with(':')) {
                let kept: Vec<&str> = list.split(',').filter(|c| *c != "min.insync.replicas=1").collect();
                if !kept.is_empty() {
                    out.push(kept.join(","));
                }
            }
            continue;
        }
        let masked_next = matches!(word, "TopicId:" | "Leader:" | "Replicas:" | "Isr:");
        out.push(mask_word(word));
        if masked_next {
            // The value, if any (an empty list has none).
            if words.peek().is_some_and(|w| !w.ends_with(':')) {
                words.next();
                out.push("<ID>".to_string());
            }
        }
    }
    out.join(" ")
}

fn mask_word(word: &str) -> String {
    // A coordinator or member host: `BROKER (id: 1)` or `/127.0.0.1`.
    if word.starts_with("/127.0.0.1") {
        return "<HOST>".to_string();
    }
    // Client-made member ids: console-consumer-<uuid>, or a client id with a number.
    if word.starts_with("console-consumer-") || word.starts_with("consumer-") {
        return "<CLIENT>".to_string();
    }
    if word.chars().all(|c| c.is_ascii_digit()) && word.len() > 8 {
        // Timestamps and coordinator epochs.
        return "<N>".to_string();
    }
    if let Some(id) = word.strip_suffix(')') {
        if id.chars().all(|c| c.is_ascii_digit()) {
            return "<N>)".to_string();
        }
    }
    word.to_string()
}

fn masked(outcome: &Outcome, bootstrap: &str, compare: Compare) -> Vec<String> {
    let mut lines: Vec<String> =
        outcome.stdout.lines().map(|l| mask_line(l, bootstrap)).filter(|l| !l.is_empty()).collect();
    match compare {
        Compare::Output | Compare::Status => {}
        Compare::Count(needle, _) => lines = vec![format!("{} x {needle}", outcome.stdout.matches(needle).count())],
        Compare::Error => lines = exception_classes(&outcome.stderr),
        Compare::Unordered => lines.sort(),
        Compare::Ours => {
            lines.retain(|l| OURS.iter().any(|o| l.starts_with(o)));
            lines.sort();
        }
    }
    lines
}

#[test]
fn kafka_java_tools_give_the_same_results_on_evident_as_on_apache_kafka() {
    let test = "kafka_java_tools_give_the_same_results_on_evident_as_on_apache_kafka";
    let Some(java) = java(test) else { return };
    let started = Instant::now();
    // evident first (it starts in well under a second): a panic while it starts then leaves no
    // reference broker behind, and a panic while the reference starts stops the reference.
    let server = Server::start();
    let reference = Reference::start();
    let ready = started.elapsed();

    let work = tempfile::tempdir().expect("tempdir");
    // --from-file's CSV: topic,partition,offset.
    std::fs::write(work.path().join("offsets.csv"), "order-events,0,1\norder-events,1,0\norder-events,2,1\n")
        .expect("csv");
    let probes = probes();
    let evident_bootstrap = server.kafka_bootstrap();
    let kafka_bootstrap = reference.bootstrap.clone();
    let (evident, kafka) = std::thread::scope(|s| {
        let e = s.spawn(|| run_probes(&java, work.path(), "evident", &evident_bootstrap, &probes));
        let k = s.spawn(|| run_probes(&java, work.path(), "kafka", &kafka_bootstrap, &probes));
        (e.join().expect("evident run"), k.join().expect("kafka run"))
    });

    let mut failures = Vec::new();
    println!("{:<58} {:>8} {:>8} {:>7} {:>7}  result", "probe", "evident", "kafka", "ms(e)", "ms(k)");
    for p in &probes {
        let (Some(e), Some(k)) = (evident.get(p.name), kafka.get(p.name)) else {
            failures.push(format!("{}: no result (the runner stopped early)", p.name));
            continue;
        };
        let e_lines = masked(e, &evident_bootstrap, p.compare);
        let k_lines = masked(k, &kafka_bootstrap, p.compare);
        let mut problems = Vec::new();
        if k.code != Some(i64::from(p.kafka_status)) || k.timed_out {
            problems.push(format!(
                "Kafka exited {:?} (timed out: {}), the probe expects {}",
                k.code, k.timed_out, p.kafka_status
            ));
        }
        if e.code != k.code || e.timed_out {
            problems
                .push(format!("exit status: evident {:?} (timed out: {}), Kafka {:?}", e.code, e.timed_out, k.code));
        }
        if !matches!(p.compare, Compare::Status) && e_lines != k_lines {
            problems.push("output differs".to_string());
        }
        if let Compare::Count(needle, want) = p.compare {
            if k_lines != [format!("{want} x {needle}")] {
                problems.push(format!("Kafka's stdout does not hold {needle:?} {want} times"));
            }
        }
        let verdict = if problems.is_empty() { "same" } else { "DIFFERS" };
        println!(
            "{:<58} {:>8} {:>8} {:>7} {:>7}  {verdict}",
            p.name,
            format!("{:?}", e.code),
            format!("{:?}", k.code),
            e.millis,
            k.millis
        );
        if !problems.is_empty() {
            failures.push(format!(
                "{}: {}\n  args: {}\n  --- evident stdout (masked)\n{}\n  --- Kafka stdout (masked)\n{}\n  --- evident stderr\n{}\n  --- Kafka stderr\n{}",
                p.name,
                problems.join("; "),
                p.args.join(" "),
                e_lines.join("\n"),
                k_lines.join("\n"),
                tail(&e.stderr),
                tail(&k.stderr),
            ));
        }
    }
    println!(
        "kafka java tools: {} probes, servers ready in {:.1} s, all in {:.1} s",
        probes.len(),
        ready.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    assert!(failures.is_empty(), "{} of {} probes differ:\n\n{}", failures.len(), probes.len(), failures.join("\n\n"));
    drop(reference);
}

/// The Kafka exception classes named in `text`, in order (`...errors.TopicExistsException`).
fn exception_classes(text: &str) -> Vec<String> {
    text.split(|c: char| c.is_whitespace() || c == ':')
        .filter(|w| w.starts_with("org.apache.kafka.common.errors.") && w.ends_with("Exception"))
        .map(str::to_string)
        .collect()
}

/// The last lines of a tool's stderr (a stack trace is long).
fn tail(text: &str) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(15)..].join("\n")
}
