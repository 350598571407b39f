//! The gaps librdkafka's own test suite found (issue 12, part 4), checked with the client that
//! found them: confluent-kafka (librdkafka 2.16) against a real `evident serve`, through
//! `tests/kafka/gaps_checks.py`. The protocol-level answers are pinned in
//! `evident-kafka/tests/gaps_protocol.rs`; these tests show the client's behaviour that follows
//! from them. Without the clients installed (`scripts/kafka-clients-setup.sh`, which
//! `scripts/test.sh` runs) each test prints a skip line and passes.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{kafka_python, kafka_scripts, run_with_limit, Server};
use serde_json::{json, Value};

/// The longest a client script may run (a hang guard; they take seconds).
const SCRIPT_LIMIT: Duration = Duration::from_secs(300);

/// Runs `gaps_checks.py CHECK BOOTSTRAP` against a fresh server; its JSON result.
fn gaps(test: &str, check: &str) -> Option<Value> {
    let python = kafka_python(test)?;
    let server = Server::start();
    let dir = kafka_scripts();
    let mut cmd = Command::new(python);
    cmd.current_dir(&dir)
        .arg(dir.join("gaps_checks.py"))
        .args([check, &server.kafka_bootstrap()])
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let run = run_with_limit(&mut cmd, None, SCRIPT_LIMIT);
    assert_eq!(
        run.code,
        Some(0),
        "gaps_checks.py {check} failed\n--- stdout\n{}\n--- stderr\n{}\n--- server stderr\n{}",
        run.stdout,
        run.stderr,
        server.stderr()
    );
    let value = run.json();
    println!("gaps_checks.py {check}: {value}");
    Some(value)
}

#[test]
fn confluent_consumer_resets_an_out_of_range_committed_offset_to_earliest() {
    let Some(result) = gaps("confluent_consumer_resets_an_out_of_range_committed_offset_to_earliest", "offset_reset")
    else {
        return;
    };
    assert_eq!(result["offsets"], json!([0, 1, 2]));
}
