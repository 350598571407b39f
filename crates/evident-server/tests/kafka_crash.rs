//! kill -9 during idempotent produce, with a real client: a confluent-kafka idempotent producer
//! (acks=all, unbounded retries, a two-minute message timeout; `tests/kafka/crash_producer.py`)
//! sends 20,000 numbered messages while this test kills the server twice with SIGKILL (when a
//! quarter, then 60 %, are acknowledged; the restarted server's record count shows the stream
//! was not finished) and restarts it on the same Kafka port and data directory. The producer retries what was in flight; the server must answer retries of
//! batches it already appended with their original offsets, across the restart. Then the whole
//! topic is read back: no message twice (duplicates = 0), and every message whose delivery
//! report succeeded is there (lost acknowledged = 0).
//!
//! Skipped without the Python clients unless `EVIDENT_REQUIRE_KAFKA_CLIENTS=1` (see
//! `kafka_clients.rs`). Waits are bounded only to fail a hang.

mod common;

use std::path::Path;
use std::process::Command;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use common::{kafka_python, kafka_scripts, spawn_piped, Piped, Server, PATIENCE};

/// Messages produced.
const MESSAGES: u32 = 20_000;
/// When to kill: fractions of [`MESSAGES`] acknowledged.
const KILL_AT: &str = "0.25,0.6";
/// Kills that follow from [`KILL_AT`].
const KILLS: u32 = 2;
/// The longest the whole run may take (a hang guard).
const RUN_LIMIT: Duration = Duration::from_secs(900);

/// Starts the server on `dir`'s data with its Kafka listener on `kafka_addr`, retrying while
/// the port is briefly unavailable after the kill.
fn restart(dir: &Path, kafka_addr: &str) -> Server {
    let data = dir.join("data");
    let data = data.to_str().expect("utf-8 path");
    let args = ["serve", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--kafka-addr", kafka_addr];
    let deadline = Instant::now() + PATIENCE;
    loop {
        match Server::launch(dir, &args, &[]) {
            Ok(server) => return server,
            Err(exited) if exited.stderr.contains("cannot listen") && Instant::now() < deadline => {
                std::thread::sleep(Duration::from_millis(100));
            }
            Err(exited) => panic!(
                "restarting evident serve on {kafka_addr} failed (code {:?})\n--- stdout\n{}\n--- stderr\n{}",
                exited.code, exited.stdout, exited.stderr
            ),
        }
    }
}

#[test]
fn kill_9_during_idempotent_produce_loses_no_acknowledged_message_and_duplicates_none() {
    let Some(python) =
        kafka_python("kill_9_during_idempotent_produce_loses_no_acknowledged_message_and_duplicates_none")
    else {
        return;
    };
    let started = Instant::now();
    let tmp = tempfile::tempdir().expect("tempdir");
    let mut server = Server::start_in(tmp.path());
    let kafka_addr = server.kafka_bootstrap();

    let dir = kafka_scripts();
    let Piped { mut child, lines, stderr } = spawn_piped(
        Command::new(&python)
            .current_dir(&dir)
            .arg(dir.join("crash_producer.py"))
            .args([&kafka_addr, &MESSAGES.to_string(), KILL_AT])
            .env("PYTHONDONTWRITEBYTECODE", "1"),
        "the producer script",
    );

    let deadline = Instant::now() + RUN_LIMIT;
    let mut kills = 0;
    let mut persisted_at_kills = Vec::new();
    let mut server_logs = Vec::new();
    let mut last = String::new();
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) if line.starts_with("KILL ") => {
                // Messages are in flight and more are to come: kill the server now and bring it
                // back on the same port and data while the producer retries.
                server.kill9();
                server_logs.push(server.stderr());
                kills += 1;
                server = restart(tmp.path(), &kafka_addr);
                let persisted = server.get_ok("/v1/topics/crash")["records"].as_u64().expect("records");
                println!("kafka crash: {line}; kill -9; {persisted} records persisted at the kill");
                assert!(persisted < u64::from(MESSAGES), "the kill came after the stream ended ({persisted} records)");
                persisted_at_kills.push(persisted);
            }
            Ok(line) => last = line,
            Err(mpsc::RecvTimeoutError::Disconnected) => break,
            Err(mpsc::RecvTimeoutError::Timeout) => {
                let _ = child.kill();
                let _ = child.wait();
                panic!("the producer script did not finish within {RUN_LIMIT:?}");
            }
        }
    }
    let status = child.wait().expect("waiting for the producer script");
    let stderr = stderr.join().expect("stderr reader");
    server_logs.push(server.stderr());
    assert!(
        status.success(),
        "the producer script failed ({status})\n--- its stderr\n{stderr}\n--- last stdout line\n{last}\n--- server stderr (per run)\n{}",
        server_logs.join("\n--- next run\n")
    );
    let result: serde_json::Value =
        serde_json::from_str(&last).unwrap_or_else(|e| panic!("the producer's result is not JSON ({e}): {last:?}"));
    println!("kafka crash: {result}");
    let count = |name: &str| result[name].as_u64().unwrap_or_else(|| panic!("{name} missing from {result}"));
    println!(
        "kafka crash: kills={kills} produced={} acked={} duplicates={} lost={} ({:.1} s)",
        count("produced"),
        count("acked"),
        count("duplicates"),
        count("lost"),
        started.elapsed().as_secs_f64()
    );
    assert_eq!(kills, KILLS, "kills at {KILL_AT} of the messages acknowledged");
    assert!(
        persisted_at_kills.windows(2).all(|w| w[0] <= w[1]),
        "records lost across restarts: {persisted_at_kills:?}"
    );
    assert_eq!(count("duplicates"), 0, "duplicated messages: {result}");
    assert_eq!(count("lost"), 0, "acknowledged messages missing: {result}");
    assert_eq!(count("produced"), u64::from(MESSAGES));
    // With unbounded retries and a long timeout every message is eventually delivered.
    assert_eq!(count("failed"), 0, "failed deliveries: {result}\n--- producer stderr\n{stderr}");
    assert_eq!(count("acked"), u64::from(MESSAGES), "{result}");
    assert_eq!(count("read"), u64::from(MESSAGES), "{result}");
}
