//! Conformance with real Kafka clients: each test starts its own `evident serve` and drives it
//! with a client from a package registry (kafka-python, confluent-kafka with librdkafka 2.16,
//! aiokafka, and Debian's kcat with librdkafka 2.0.2), through the scripts in `tests/kafka/`.
//! A script prints one JSON object as its last line and exits non-zero with a message when a
//! check fails; the test asserts the exit and the values.
//!
//! The clients are installed by `scripts/kafka-clients-setup.sh`; `scripts/test.sh` runs it and
//! sets `EVIDENT_TEST_PYTHON` and `EVIDENT_REQUIRE_KAFKA_CLIENTS=1`. Without them (a plain
//! `cargo test`) each test prints a skip line and passes.
//!
//! Waits are bounded only to fail a hang; no result depends on how fast the machine is.

mod common;

use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use common::{kafka_python, kafka_scripts, kcat, next_millisecond, run_with_limit, Server, ToolRun};
use serde_json::{json, Value};

/// The longest a client script may run (a hang guard; they take seconds).
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

/// Runs `tests/kafka/<script>` with `args` (the bootstrap address among them) and returns its
/// JSON result; fails with the script's output and the server's stderr if it fails.
fn run_script(python: &Path, server: &Server, script: &str, args: &[&str]) -> Value {
    let started = Instant::now();
    let dir = kafka_scripts();
    let mut cmd = Command::new(python);
    cmd.current_dir(&dir).arg(dir.join(script)).args(args).env("PYTHONDONTWRITEBYTECODE", "1");
    let run = run_with_limit(&mut cmd, None, SCRIPT_LIMIT);
    assert_script_ok(&run, &format!("{script} {}", args.join(" ")), server);
    let value = run.json();
    println!(
        "{script} {}: {value} ({:.1} s)",
        args.first().copied().unwrap_or_default(),
        started.elapsed().as_secs_f64()
    );
    value
}

fn assert_script_ok(run: &ToolRun, what: &str, server: &Server) {
    assert_eq!(
        run.code,
        Some(0),
        "{what} failed\n--- stdout\n{}\n--- stderr\n{}\n--- server stderr\n{}",
        run.stdout,
        run.stderr,
        server.stderr()
    );
}

/// Runs a confluent-kafka check (`tests/kafka/confluent_checks.py CHECK BOOTSTRAP`).
fn confluent(test: &str, check: &str) -> Option<Value> {
    let python = kafka_python(test)?;
    let server = Server::start();
    Some(run_script(&python, &server, "confluent_checks.py", &[check, &server.kafka_bootstrap()]))
}

#[test]
fn kafka_python_bank_account_example_rebuilds_the_balance() {
    let Some(python) = kafka_python("kafka_python_bank_account_example_rebuilds_the_balance") else { return };
    let server = Server::start();
    let result = run_script(&python, &server, "bank_account.py", &[&server.kafka_bootstrap()]);
    assert_eq!(result, json!({ "balance": 120, "processed": 3 }));
    // The group committed as it went (enable_auto_commit, committed on close): the HTTP API
    // shows the same group and offset.
    let group = server.get_ok("/v1/groups/balance-calculator");
    assert_eq!(group["offsets"][0]["topic"], "bank-account-events", "{group}");
    assert_eq!(group["offsets"][0]["committed_offset"], 3, "{group}");
}

#[test]
fn kafka_python_expected_version_conflict_names_the_stream() {
    let Some(python) = kafka_python("kafka_python_expected_version_conflict_names_the_stream") else { return };
    let server = Server::start();
    let result =
        run_script(&python, &server, "kafka_python_checks.py", &["expected_version", &server.kafka_bootstrap()]);
    let message = result["stale_message"].as_str().expect("stale_message");
    assert!(
        message.contains("evident: wrong expected version for stream ledger/acct-7: expected 0, stream is at 1"),
        "message: {message}"
    );
    assert_eq!(result["right_offset"], 2);
}

#[test]
fn kafka_python_offsets_for_times_gives_the_found_records_timestamp() {
    let Some(python) = kafka_python("kafka_python_offsets_for_times_gives_the_found_records_timestamp") else {
        return;
    };
    let server = Server::start();
    let result =
        run_script(&python, &server, "kafka_python_checks.py", &["offsets_for_times", &server.kafka_bootstrap()]);
    assert_eq!(result["found"], json!({ "exact_2": [2, 2000], "between_2_3": [3, 3000], "before": [0, 0] }));
}

#[test]
fn confluent_idempotent_producer_delivers_each_message_once_in_key_order() {
    let Some(result) = confluent("confluent_idempotent_producer_delivers_each_message_once_in_key_order", "idempotent")
    else {
        return;
    };
    assert_eq!(result["delivered"], 1000);
    assert_eq!(result["read"], 1000);
    assert_eq!(result["high_watermarks"], 1000);
    assert_eq!(result["keys"], 10);
}

#[test]
fn confluent_consumer_group_rebalances_commits_resumes_and_is_administered() {
    let Some(result) = confluent("confluent_consumer_group_rebalances_commits_resumes_and_is_administered", "groups")
    else {
        return;
    };
    let first = &result["first_assignment"];
    let mut parts: Vec<i64> = [&first["a"], &first["b"]]
        .iter()
        .flat_map(|p| p.as_array().expect("partition list").iter().map(|v| v.as_i64().expect("partition")))
        .collect();
    parts.sort_unstable();
    assert_eq!(parts, [0, 1], "one partition each: {first}");
    assert_eq!(result["took_over"].as_array().expect("took_over").len(), 5, "{result}");
    assert_eq!(result["committed"], json!([10, 10]));
    // ListGroups and DescribeGroups saw the group empty; DeleteGroups removed it.
    assert_eq!((&result["listed_state"], &result["described_state"]), (&json!("EMPTY"), &json!("EMPTY")));
    let mut resumed: Vec<&str> =
        result["resumed"].as_array().expect("resumed").iter().filter_map(Value::as_str).collect();
    resumed.sort_unstable();
    assert_eq!(resumed, ["0:10", "0:11", "0:12", "0:13", "0:14", "1:10", "1:11", "1:12", "1:13", "1:14"]);
}

#[test]
fn confluent_offsets_for_times_and_watermarks() {
    let Some(result) = confluent("confluent_offsets_for_times_and_watermarks", "offsets") else { return };
    assert_eq!(
        result["offsets_for_times"],
        json!({ "before": 0, "exact_2": 2, "between_2_3": 3, "last": 4, "after": -1 })
    );
    assert_eq!(result["watermarks"], json!([0, 5]));
}

#[test]
fn confluent_admin_creates_describes_and_deletes_topics() {
    let Some(result) = confluent("confluent_admin_creates_describes_and_deletes_topics", "admin") else { return };
    assert_eq!(result["partitions"], json!([0, 1, 2]));
    assert_eq!(result["cleanup_policy"], "delete");
    let names = result["config_names"].to_string();
    for name in ["cleanup.policy", "retention.ms"] {
        assert!(names.contains(name), "describe_configs lacks {name}: {names}");
    }
    assert_eq!(result["deleted"], true);
}

#[test]
fn confluent_expected_version_conflict_is_invalid_record() {
    let Some(result) = confluent("confluent_expected_version_conflict_is_invalid_record", "expected_version") else {
        return;
    };
    assert_eq!(result["stale_code"], 87);
    assert_eq!(result["stale_name"], "INVALID_RECORD");
    assert_eq!(result["right_offset"], 2);
    assert_eq!(result["high_watermark"], 4);
}

#[test]
fn confluent_compressed_batches_read_back_identical() {
    let Some(result) = confluent("confluent_compressed_batches_read_back_identical", "compression") else { return };
    assert_eq!(result["read_back"], json!({ "gzip": 200, "snappy": 200, "lz4": 200, "zstd": 200 }));
}

#[test]
fn aiokafka_idempotent_producer_and_committing_group() {
    let Some(python) = kafka_python("aiokafka_idempotent_producer_and_committing_group") else { return };
    let server = Server::start();
    let result = run_script(&python, &server, "aiokafka_checks.py", &[&server.kafka_bootstrap()]);
    assert_eq!(result["produced"], 25);
    assert_eq!(result["first"], 20);
    assert_eq!(result["resumed"], json!([20, 21, 22, 23, 24]));
    assert_eq!(result["committed"], 25);
}

/// Runs kcat with `args` against `server`, optionally feeding `stdin`; asserts success.
fn kcat_run(kcat: &Path, server: &Server, args: &[&str], stdin: Option<&str>) -> ToolRun {
    let mut cmd = Command::new(kcat);
    cmd.arg("-b").arg(server.kafka_bootstrap()).args(args);
    let run = run_with_limit(&mut cmd, stdin.map(str::as_bytes), SCRIPT_LIMIT);
    assert_script_ok(&run, &format!("kcat {}", args.join(" ")), server);
    run
}

fn now_ms() -> i64 {
    SystemTime::now().duration_since(UNIX_EPOCH).expect("clock after 1970").as_millis() as i64
}

#[test]
fn kcat_metadata_produce_consume_mid_batch_and_offsets_by_time() {
    let Some(kcat) = kcat("kcat_metadata_produce_consume_mid_batch_and_offsets_by_time") else { return };
    let server = Server::start();
    let version = run_with_limit(Command::new(&kcat).arg("-V"), None, SCRIPT_LIMIT);
    let version = version.stdout.lines().find(|l| l.starts_with("Version")).unwrap_or_default().to_string();
    println!("kcat: {version}");

    // Keyed produce; the three lines go in ONE batch (linger, and librdkafka's debug output
    // proves it), so that offset 1 below is inside a batch.
    let before = now_ms() - 1;
    next_millisecond();
    let produced = kcat_run(
        &kcat,
        &server,
        &["-t", "smoke", "-P", "-K:", "-X", "linger.ms=1000", "-X", "debug=msg"],
        Some("user-1:created\nuser-2:created\nuser-1:renamed\n"),
    );
    assert!(
        produced.stderr.contains("Produce MessageSet with 3 message(s)"),
        "the three records were not sent as one batch:\n{}",
        produced.stderr
    );

    let metadata = kcat_run(&kcat, &server, &["-L", "-t", "smoke"], None);
    assert!(metadata.stdout.contains("topic \"smoke\" with 1 partitions"), "kcat -L:\n{}", metadata.stdout);
    assert!(metadata.stdout.contains("partition 0, leader 1"), "kcat -L:\n{}", metadata.stdout);

    let format = ["-f", "%p %o %k %s\n"];
    let all = kcat_run(&kcat, &server, &[&["-t", "smoke", "-C", "-o", "beginning", "-e"][..], &format].concat(), None);
    assert_eq!(all.stdout, "0 0 user-1 created\n0 1 user-2 created\n0 2 user-1 renamed\n");

    // From an offset inside the batch: the broker serves the whole batch, the client skips
    // the records before the offset.
    let mid = kcat_run(&kcat, &server, &[&["-t", "smoke", "-C", "-o", "1", "-e"][..], &format].concat(), None);
    assert_eq!(mid.stdout, "0 1 user-2 created\n0 2 user-1 renamed\n");

    // A second batch, strictly later on the clock than the first.
    next_millisecond();
    let between = now_ms();
    next_millisecond();
    kcat_run(&kcat, &server, &["-t", "smoke", "-P", "-K:"], Some("user-3:created\nuser-2:renamed\n"));
    let all = kcat_run(&kcat, &server, &[&["-t", "smoke", "-C", "-o", "beginning", "-e"][..], &format].concat(), None);
    assert_eq!(all.stdout.lines().count(), 5, "{}", all.stdout);

    // Offsets by time (-Q): -1 is the end; a time before everything is 0; a time between the
    // batches is the first record of the second; a time after everything is -1.
    let queries = [
        ("-1".to_string(), 5),
        (before.to_string(), 0),
        (between.to_string(), 3),
        ((now_ms() + 3_600_000).to_string(), -1),
    ];
    for (time, expected) in queries {
        let q = kcat_run(&kcat, &server, &["-Q", "-t", &format!("smoke:0:{time}")], None);
        assert_eq!(q.stdout.trim(), format!("smoke [0] offset {expected}"), "kcat -Q smoke:0:{time}");
    }
}

/// Members that joined over Kafka are visible in the HTTP API, and the HTTP API refuses to
/// execute a reset, delete the group or commit from outside while they are active; after the
/// consumer leaves, the reset executes.
#[test]
fn http_reset_is_refused_while_a_kafka_consumer_is_a_member() {
    let Some(python) = kafka_python("http_reset_is_refused_while_a_kafka_consumer_is_a_member") else {
        return;
    };
    let server = Server::start();
    let result = run_script(&python, &server, "group_admin.py", &[&server.kafka_bootstrap(), &server.base()]);
    assert_eq!(result["refused"], "group_not_empty");
    assert_eq!(result["after_reset"], 0);
    assert_eq!(result["lag"], 5);
}
