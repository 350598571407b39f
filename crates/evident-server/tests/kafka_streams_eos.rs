//! Kafka Streams with `processing.guarantee=exactly_once_v2` on evident and on Apache Kafka
//! (issue 14, "must show"): seed 000's `order_summary` view (`java/client-probes/OrderSummary.java`,
//! SUM of item_price per order id through a repartition topic and a changelog-backed store) must
//! EQUAL a fold of its input after crashes, not merely lie between the fold and twice it as
//! `at_least_once` allows (`kafka_java_client.rs`). Exactly-once in Streams is transactions end to
//! end: each commit is one transaction holding the repartition, changelog and output records and
//! the input offsets (AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit with the group's
//! generation, EndTxn), a restarted instance fences its predecessor (InitProducerId) and
//! everything downstream reads with read_committed. So this is the test of evident's transaction
//! coordinator under a real framework, against the reference broker in the same run.
//!
//! One history per server, checked after each fault (the fold is over the input topic as read
//! back with read_committed; the view is read from the output topic AND the store's changelog,
//! both read_committed, since what an aborted transaction wrote must not count):
//!
//! 1. 10,000 events, the application started: equal.
//! 2. The application killed with SIGKILL after processing 2,000 of 20,000 more events arriving
//!    (mid-transaction, as it commits every 200 ms), restarted on the same state directory (same
//!    transactional id: the open transaction is fenced and aborted): equal.
//! 3. Killed again mid-run with 10,000 more arriving, its state directory wiped, restarted: the
//!    store is restored from the changelog (read_committed), and the killed instance's open
//!    transaction (its transactional id is gone with the state directory) holds the last stable
//!    offsets until the coordinator aborts it on its timeout (Streams' 10 s): equal.
//! 4. The server killed with SIGKILL while 10,000 more events are produced (after 3,000 of them
//!    were acknowledged) and restarted on the same data and port; the application rides it out
//!    (or, if it stopped, is started again on its state directory): equal. The producer is
//!    idempotent with acks=all and retries through the outage; every event it saw acknowledged
//!    must be in the input exactly once.
//!
//! `commit.interval.ms` is 200 ms (Streams' own exactly-once default is 100 ms; at_least_once's
//! 30 s would leave the aggregation, which reads the repartition topic read_committed, idle
//! between commits): each commit ends a transaction and writes a marker into every partition it
//! touched, so a shorter interval only adds transactions on a 2-core machine.
//!
//! Speed: the two servers run in parallel, each history in turn (a JVM per step: producers, the
//! application, the verifier); every wait is bounded. The restarts cost the killed member's 6 s
//! session timeout, the wiped restart also the abandoned transaction's timeout, and the reference
//! broker's restart its log recovery.

mod common;

use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::Child;
use std::sync::{mpsc, Mutex};
use std::time::{Duration, Instant};

use common::jvm::{java, Java, Reference};
use common::{run_with_limit, Server};
use serde_json::Value;

/// The longest a Java program may take to reach a point the test waits for (a hang guard).
const STREAMS_LIMIT: Duration = Duration::from_secs(180);

/// The longest `OrderSummary verify` waits for the application to commit its input's end (ms).
const VERIFY_WAIT_MS: &str = "150000";

/// The orders of seed 000's events (event i belongs to order i mod 101).
const ORDERS: u64 = 101;

/// A Java program running beside the test: its stdout lines on a channel, its stderr in a file.
struct Program {
    child: Child,
    lines: mpsc::Receiver<String>,
    log: PathBuf,
    /// The highest `<word> N` seen so far (the application's `processed`, a producer's `acked`).
    count: u64,
}

impl Program {
    fn spawn(java: &Java, args: &[&str], log: &Path) -> Program {
        let (child, lines) = java.spawn_program("OrderSummary", args, log);
        Program { child, lines, log: log.to_path_buf(), count: 0 }
    }

    /// The Streams application with exactly_once_v2 on `state`.
    fn app(java: &Java, bootstrap: &str, state: &Path, log: &Path) -> Program {
        Program::spawn(java, &["run", bootstrap, &state.to_string_lossy(), "exactly_once_v2"], log)
    }

    fn note(&mut self, line: &str) {
        let n = line.split_once(' ').and_then(|(_, n)| n.trim().parse::<u64>().ok());
        if let Some(n) = n.filter(|_| line.starts_with("processed ") || line.starts_with("acked ")) {
            self.count = self.count.max(n);
        }
    }

    /// Reads the lines printed so far (the count catches up).
    fn drain(&mut self) {
        while let Ok(line) = self.lines.try_recv() {
            self.note(&line);
        }
    }

    /// Waits until the count reaches `at_least`.
    fn wait_count(&mut self, at_least: u64, what: &str) {
        let deadline = Instant::now() + STREAMS_LIMIT;
        while self.count < at_least {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => self.note(&line),
                Err(e) => {
                    panic!("{what}: the count did not reach {at_least} (at {}): {e}\n{}", self.count, self.tail())
                }
            }
        }
    }

    /// SIGKILL, and the last count printed before it.
    fn kill9(&mut self) -> u64 {
        let _ = self.child.kill();
        let _ = self.child.wait();
        self.drain();
        self.count
    }

    /// Whether the program is still running (the application may stop on an error it deems fatal).
    fn running(&mut self) -> bool {
        self.child.try_wait().expect("try_wait").is_none()
    }

    /// Waits for the program to end with status 0; returns its last line as JSON.
    fn summary(&mut self, what: &str) -> Value {
        let deadline = Instant::now() + STREAMS_LIMIT;
        let mut last = None;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.lines.recv_timeout(left) {
                Ok(line) => {
                    self.note(&line);
                    last = Some(line);
                }
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
                Err(mpsc::RecvTimeoutError::Timeout) => panic!("{what}: did not end within {STREAMS_LIMIT:?}"),
            }
        }
        let status = self.child.wait().expect("waiting for a Java program");
        assert!(status.success(), "{what}: exited {status:?}\n{}", self.tail());
        let last = last.unwrap_or_else(|| panic!("{what}: printed nothing"));
        serde_json::from_str(&last).unwrap_or_else(|e| panic!("{what}: last line {last:?}: {e}"))
    }

    /// The last lines of the program's stderr.
    fn tail(&self) -> String {
        tail(&std::fs::read_to_string(&self.log).unwrap_or_default(), 40)
    }
}

impl Drop for Program {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Runs `OrderSummary args` to its end (status 0); returns its stdout.
fn order_summary(java: &Java, args: &[&str], label: &str) -> String {
    let mut cmd = java.command();
    cmd.arg("OrderSummary").args(args);
    let run = run_with_limit(&mut cmd, None, STREAMS_LIMIT);
    assert_eq!(run.code, Some(0), "{label}: OrderSummary {args:?} failed\n--- stderr\n{}", tail(&run.stderr, 40));
    run.stdout
}

/// The verifier's verdict once the application committed the end of its input.
fn verdict(java: &Java, bootstrap: &str, expected: u64, label: &str) -> Value {
    let out = order_summary(java, &["verify", bootstrap, VERIFY_WAIT_MS, &expected.to_string()], label);
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{label}: verify printed {out:?}: {e}"))
}

/// One checked step of a history.
struct Step {
    what: &'static str,
    /// Events 0..expected were sent by then.
    expected: u64,
    verdict: Value,
    /// Events the producer reports never acknowledged (it gave up on them).
    unacked: Vec<u64>,
    /// What happened at the fault: the count at the kill, whether the application survived.
    fault: String,
    /// Whether the kill landed while there was work left (input arriving or not yet processed).
    mid_run: bool,
    millis: u64,
}

/// Produces events `from..to` (outage-tolerant) in the background.
fn producer(java: &Java, bootstrap: &str, from: u64, to: u64, log: &Path) -> Program {
    Program::spawn(java, &["produce-acked", bootstrap, &from.to_string(), &to.to_string()], log)
}

fn unacked(summary: &Value) -> Vec<u64> {
    summary["unacked"].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default()
}

/// The history of the module doc on one server; `crash` kills it with SIGKILL and restarts it
/// on the same data and port.
fn history(java: &Java, work: &Path, label: &str, bootstrap: &str, crash: &mut (dyn FnMut() + Send)) -> Vec<Step> {
    let mut steps = Vec::new();
    let state = work.join(format!("state-{label}"));
    let log = |name: &str| work.join(format!("{label}-{name}.log"));
    let mut started = Instant::now();

    // 1. Without a fault.
    order_summary(java, &["produce", bootstrap, "0", "10000"], label);
    let mut app = Program::app(java, bootstrap, &state, &log("app-1"));
    let verdict1 = verdict(java, bootstrap, 10_000, label);
    let millis = lap(&mut started);
    steps.push(Step {
        what: "no fault",
        expected: 10_000,
        verdict: verdict1,
        unacked: vec![],
        fault: String::new(),
        mid_run: true,
        millis,
    });

    // 2. SIGKILL of the application mid-run, restart on the same state directory.
    let mut input = producer(java, bootstrap, 10_000, 30_000, &log("produce-2"));
    app.wait_count(12_000, &format!("{label}: the application before its kill"));
    let at_kill = app.kill9();
    let produced = input.summary(&format!("{label}: the producer of events 10000..30000"));
    let mut app = Program::app(java, bootstrap, &state, &log("app-2"));
    let verdict2 = verdict(java, bootstrap, 30_000, label);
    steps.push(Step {
        what: "app killed, same state",
        expected: 30_000,
        verdict: verdict2,
        unacked: unacked(&produced),
        fault: format!("killed after processing {at_kill} of 30000"),
        mid_run: at_kill < 30_000,
        millis: lap(&mut started),
    });

    // 3. SIGKILL mid-run again, the state directory wiped: restore from the changelog.
    let mut input = producer(java, bootstrap, 30_000, 40_000, &log("produce-3"));
    app.drain();
    let before = app.count;
    app.wait_count(before + 2_000, &format!("{label}: the restarted application before its kill"));
    let at_kill = app.kill9();
    std::fs::remove_dir_all(&state).expect("wiping the state directory");
    let produced = input.summary(&format!("{label}: the producer of events 30000..40000"));
    let mut app = Program::app(java, bootstrap, &state, &log("app-3"));
    let verdict3 = verdict(java, bootstrap, 40_000, label);
    steps.push(Step {
        what: "app killed, state wiped",
        expected: 40_000,
        verdict: verdict3,
        unacked: unacked(&produced),
        fault: format!("killed at processed {at_kill} (was {before} before the new events)"),
        mid_run: at_kill < before + 10_000,
        millis: lap(&mut started),
    });

    // 4. SIGKILL of the server while events arrive and the application runs.
    let mut input = producer(java, bootstrap, 40_000, 50_000, &log("produce-4"));
    input.wait_count(3_000, &format!("{label}: the producer before the server's kill"));
    input.drain();
    let acked_at_kill = input.count;
    app.drain();
    let processed_at_kill = app.count;
    crash();
    let produced = input.summary(&format!("{label}: the producer of events 40000..50000 across the crash"));
    let survived = app.running();
    let _app = if survived { app } else { Program::app(java, bootstrap, &state, &log("app-4")) };
    let verdict4 = verdict(java, bootstrap, 50_000, label);
    steps.push(Step {
        what: "server killed",
        expected: 50_000,
        verdict: verdict4,
        unacked: unacked(&produced),
        fault: format!(
            "killed with {acked_at_kill} of 10000 acked, the app at processed {processed_at_kill}; the app {}",
            if survived { "rode it out" } else { "stopped and was restarted" }
        ),
        mid_run: acked_at_kill < 10_000,
        millis: lap(&mut started),
    });
    steps
}

/// Milliseconds since `started`, which is then reset.
fn lap(started: &mut Instant) -> u64 {
    let ms = started.elapsed().as_millis() as u64;
    *started = Instant::now();
    ms
}

/// The exactly-once checks on one step; problems are pushed to `failures`.
fn check(label: &str, step: &Step, failures: &mut Vec<String>) {
    let v = &step.verdict;
    let mut problem = |what: String| failures.push(format!("{label}, {}: {what}\n  verdict: {v}", step.what));
    if !step.mid_run {
        problem(format!("the kill did not land mid-run ({})", step.fault));
    }
    if v["caught_up"] != true {
        problem("the application did not commit the end of its input in time".into());
    }
    if v["orders"] != ORDERS || v["view_orders"] != ORDERS || v["changelog_orders"] != ORDERS {
        problem(format!("the fold, the view and the changelog must each hold {ORDERS} orders"));
    }
    for side in ["view", "changelog"] {
        if v[format!("{side}_equal")] != true || v[format!("{side}_below")] != 0 || v[format!("{side}_above")] != 0 {
            problem(format!("every order's total in the {side} must EQUAL its fold"));
        }
    }
    // The input: every acknowledged event exactly once (an unacknowledged one may or may not be
    // there: the fold is over what is).
    let missing: Vec<u64> =
        v["missing"].as_array().map(|a| a.iter().filter_map(Value::as_u64).collect()).unwrap_or_default();
    let lost: Vec<&u64> = missing.iter().filter(|i| !step.unacked.contains(i)).collect();
    if !lost.is_empty() {
        problem(format!("acknowledged events missing from the input: {lost:?}"));
    }
    if v["stored_twice"] != 0 || v["beyond_expected"] != 0 {
        problem("events stored twice in the input, or events nobody sent".into());
    }
    if v["input_records"].as_u64() != Some(step.expected - missing.len() as u64) {
        problem(format!("the input must hold the {} events sent, less the missing", step.expected));
    }
}

#[test]
fn kafka_streams_exactly_once_v2_totals_equal_the_fold_across_kill_9_on_evident_as_on_apache_kafka() {
    let test = "kafka_streams_exactly_once_v2_totals_equal_the_fold_across_kill_9_on_evident_as_on_apache_kafka";
    let Some(java) = java(test) else { return };
    let started = Instant::now();
    // evident on a fixed port, so that a restart is found at the same address by the clients.
    let evident_dir = tempfile::tempdir().expect("tempdir");
    let evident_addr = format!("127.0.0.1:{}", common::jvm::free_port_pair());
    let evident_args = ["--kafka-addr", evident_addr.as_str()];
    let server = Mutex::new(Server::start_in_with(evident_dir.path(), &evident_args));
    // What the killed incarnations of evident wrote on stderr.
    let evident_log = Mutex::new(String::new());
    let reference = Reference::start();
    let ready = started.elapsed();
    let work = tempfile::tempdir().expect("tempdir");
    let evident_bootstrap = server.lock().expect("lock").kafka_bootstrap();
    let kafka_bootstrap = reference.bootstrap.clone();

    let mut crash_evident = || {
        let mut s = server.lock().expect("lock");
        s.kill9();
        evident_log.lock().expect("lock").push_str(&s.stderr());
        *s = Server::start_in_with(evident_dir.path(), &evident_args);
    };
    let mut crash_kafka = || {
        reference.kill9();
        reference.resume();
    };
    let (evident, kafka) = std::thread::scope(|s| {
        let e = s.spawn(|| history(&java, work.path(), "evident", &evident_bootstrap, &mut crash_evident));
        let k = s.spawn(|| history(&java, work.path(), "kafka", &kafka_bootstrap, &mut crash_kafka));
        (e.join(), k.join())
    });
    let logs = |label: &str| {
        let mut out = String::new();
        for n in 1..=4 {
            let path = work.path().join(format!("{label}-app-{n}.log"));
            if let Ok(text) = std::fs::read_to_string(&path) {
                out.push_str(&format!("--- {}\n{}\n", path.display(), tail(&text, 30)));
            }
        }
        out
    };
    let dump = || {
        let mut log = evident_log.lock().expect("lock").clone();
        log.push_str(&server.lock().expect("lock").stderr());
        let _ =
            writeln!(std::io::stderr(), "evident's log:\n{}\n{}\n{}", tail(&log, 60), logs("evident"), logs("kafka"));
    };
    let (evident, kafka) = match (evident, kafka) {
        (Ok(e), Ok(k)) => (e, k),
        (e, k) => {
            dump();
            panic!("a history failed: evident {:?}, kafka {:?}", e.is_ok(), k.is_ok());
        }
    };

    let mut failures = Vec::new();
    for (label, steps) in [("evident", &evident), ("Kafka", &kafka)] {
        for step in steps {
            let v = &step.verdict;
            println!(
                "{label:<8} {:<24} {:>6} ms  input {} (unacked {}), fold {}, view {} / changelog {} equal {}/{}; {}",
                step.what,
                step.millis,
                v["input_records"],
                step.unacked.len(),
                v["fold_total"],
                v["view_total"],
                v["changelog_total"],
                v["view_equal"],
                v["changelog_equal"],
                step.fault
            );
            check(label, step, &mut failures);
        }
    }
    println!(
        "kafka streams exactly_once_v2: servers ready in {:.1} s, all in {:.1} s",
        ready.as_secs_f64(),
        started.elapsed().as_secs_f64()
    );
    if !failures.is_empty() {
        dump();
    }
    assert!(failures.is_empty(), "{} problems:\n\n{}", failures.len(), failures.join("\n\n"));
    drop(reference);
}

/// The last `n` lines of a program's output (a stack trace is long).
fn tail(text: &str, n: usize) -> String {
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}
