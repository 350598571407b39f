//! The library's Kafka backend under crashes (issue 16, "Faults"), on a three-broker Apache
//! Kafka (replication factor 3, min.insync.replicas 2): two processes, each a `KafkaBackend`
//! with its own mirror, append to the same streams at exact expected versions while the test
//! kills one of them with SIGKILL at random moments and starts it again on the same mirror
//! directory (the mirror recovers from the crash and resumes from Kafka), and, a third of the
//! way in, kills one broker with SIGKILL (appends must go on with two) and resumes it two
//! thirds of the way in. Then the topic is read back by a plain `read_committed` Kafka consumer
//! and checked:
//!
//! - no event id appears twice (no append applied twice);
//! - every acknowledged append is on Kafka at exactly the version it was acknowledged at (no
//!   acknowledged event lost; no two writers took one version: had two appends at expected
//!   version v both committed, one of them would sit at v + 2);
//! - everything on Kafka was written by the appenders (an append may land without its
//!   acknowledgement when its process dies between the commit and the answer: counted).
//!
//! The appender processes are this test binary run again with `EVIDENT_KAFKA_APPENDER` set
//! (`appender_process`, which does nothing otherwise).

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Write};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::jvm::{java, Cluster};
use common::kafka_contents::event_ids_by_key;
use evident::blocking::wait;
use evident::{Backend, Error, EventData, ExpectedVersion, KafkaBackend, KafkaConfig, StreamQuery, TopicSpec};
use rand::{Rng, SeedableRng};

const TOPIC: &str = "ledger";
const PARTITIONS: u32 = 3;
const KEYS: usize = 6;

/// The appender: run only as a child of `two_appenders_killed_at_random_lose_and_duplicate_nothing`.
#[test]
fn appender_process() {
    let Ok(spec) = std::env::var("EVIDENT_KAFKA_APPENDER") else { return };
    let mut parts = spec.split('|');
    let (bootstrap, mirror, name) =
        (parts.next().expect("bootstrap"), parts.next().expect("mirror"), parts.next().expect("name"));
    let mut config = KafkaConfig::new(bootstrap, mirror);
    config.timeout = Duration::from_secs(60);
    let backend = KafkaBackend::open(config).expect("open the backend");
    let mut rng = rand::rngs::StdRng::from_entropy();
    let stdout = std::io::stdout();
    for n in 0u64.. {
        let key = format!("acct-{}", rng.gen_range(0..KEYS));
        let current = match wait(backend.read_stream(TOPIC, &key, &StreamQuery { limit: 1, ..Default::default() })) {
            Ok(page) => page.current_version,
            Err(e) => {
                writeln!(stdout.lock(), "ERR read {e}").ok();
                continue;
            }
        };
        let expected = current.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
        let id = format!("{name}-{n}");
        let event = EventData::json(id.clone(), "Deposited", br#"{"amount":1}"#.to_vec());
        match wait(backend.append(TOPIC, &key, expected, &[event])) {
            Ok(a) => {
                let mut out = stdout.lock();
                writeln!(out, "ACK {key} {id} {} {}", a.first_version.0, a.duplicate).ok();
                out.flush().ok();
            }
            Err(Error::WrongExpectedVersion { .. }) => {}
            Err(e) => {
                writeln!(stdout.lock(), "ERR append {e}").ok();
            }
        }
    }
}

/// A running appender and the lines it printed.
struct Appender {
    child: Child,
    reader: Option<std::thread::JoinHandle<()>>,
}

fn spawn_appender(bootstrap: &str, mirror: &std::path::Path, name: &str, lines: Arc<Mutex<Vec<String>>>) -> Appender {
    let exe = std::env::current_exe().expect("test binary");
    // Its stderr (a panic's message) beside its mirror, for a failure's report.
    let stderr = std::fs::File::create(mirror.with_file_name(format!("stderr-{name}.txt"))).expect("stderr file");
    let mut child = Command::new(exe)
        .args(["--exact", "appender_process", "--nocapture", "--test-threads", "1"])
        .env("EVIDENT_KAFKA_APPENDER", format!("{bootstrap}|{}|{name}", mirror.display()))
        .stdout(Stdio::piped())
        .stderr(stderr)
        .spawn()
        .expect("start an appender");
    let stdout = child.stdout.take().expect("stdout");
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            if line.starts_with("ACK ") || line.starts_with("ERR ") {
                lines.lock().expect("lines").push(line);
            }
        }
    });
    Appender { child, reader: Some(reader) }
}

impl Appender {
    fn kill9(mut self) {
        let _ = self.child.kill(); // SIGKILL
        let _ = self.child.wait();
        if let Some(r) = self.reader.take() {
            let _ = r.join();
        }
    }
}

/// The appenders' last lines and any panic of theirs (for a failure's message).
fn tail_lines(lines: &Arc<Mutex<Vec<String>>>, dir: &std::path::Path) -> Vec<String> {
    let lines = lines.lock().expect("lines");
    let mut out = lines[lines.len().saturating_sub(20)..].to_vec();
    for entry in std::fs::read_dir(dir).into_iter().flatten().flatten() {
        let text = std::fs::read_to_string(entry.path()).unwrap_or_default();
        if let Some(at) = text.find("panicked") {
            out.push(format!(
                "{}: {}",
                entry.file_name().to_string_lossy(),
                text[at..].chars().take(600).collect::<String>()
            ));
        }
    }
    out
}

#[test]
fn two_appenders_killed_at_random_lose_and_duplicate_nothing() {
    let Some(_java) = java("two_appenders_killed_at_random_lose_and_duplicate_nothing") else { return };
    let kills: usize = std::env::var("EVIDENT_TEST_KAFKA_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(12);
    let seed: u64 =
        std::env::var("EVIDENT_TEST_KAFKA_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    println!("kafka appender kills: seed={seed} kills={kills} (EVIDENT_TEST_KAFKA_SEED repeats the plan)");
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let cluster = Cluster::start_nodes(3);
    let bootstrap = cluster.bootstrap.clone();
    let broker = rng.gen_range(0..3);
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let setup = KafkaBackend::open(KafkaConfig::new(bootstrap.clone(), dir.path().join("setup"))).expect("backend");
        wait(setup.ensure_topic(TOPIC, TopicSpec { partitions: PARTITIONS, compacted: false })).expect("create");
    }
    let lines = Arc::new(Mutex::new(Vec::new()));
    let names = ["a", "b"];
    let mirrors = [dir.path().join("mirror-a"), dir.path().join("mirror-b")];
    // Each restart is a new process under a new name, so event ids never repeat across lives.
    let mut lives = [0usize; 2];
    let mut appenders: Vec<Option<Appender>> = (0..2)
        .map(|i| Some(spawn_appender(&bootstrap, &mirrors[i], &format!("{}{}", names[i], 0), lines.clone())))
        .collect();
    let acks_now =
        |lines: &Arc<Mutex<Vec<String>>>| lines.lock().expect("lines").iter().filter(|l| l.starts_with("ACK")).count();
    // Let both get going before the first kill.
    let start = Instant::now();
    while acks_now(&lines) < 20 {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the appenders acknowledged nothing: {:?}",
            tail_lines(&lines, dir.path())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    let mut broker_down_acks = 0;
    for k in 0..kills {
        if k == kills / 3 {
            cluster.kill9_node(broker);
            let before = acks_now(&lines);
            let start = Instant::now();
            while acks_now(&lines) < before + 10 {
                assert!(
                    start.elapsed() < Duration::from_secs(300),
                    "appends stopped with broker {broker} down (seed {seed}): {:?}",
                    tail_lines(&lines, dir.path())
                );
                std::thread::sleep(Duration::from_millis(100));
            }
            broker_down_acks = acks_now(&lines) - before;
            println!(
                "broker {broker} killed: appends went on ({broker_down_acks} acknowledged in {:.1} s)",
                start.elapsed().as_secs_f64()
            );
        }
        if k == 2 * kills / 3 {
            cluster.resume_node(broker);
            println!("broker {broker} resumed");
        }
        std::thread::sleep(Duration::from_millis(rng.gen_range(300..2500)));
        let victim = rng.gen_range(0..2);
        if let Some(a) = appenders[victim].take() {
            a.kill9();
        }
        lives[victim] += 1;
        let name = format!("{}{}", names[victim], lives[victim]);
        appenders[victim] = Some(spawn_appender(&bootstrap, &mirrors[victim], &name, lines.clone()));
    }
    // The last lives append a while, then stop.
    let before = acks_now(&lines);
    let start = Instant::now();
    while acks_now(&lines) < before + 20 {
        assert!(
            start.elapsed() < Duration::from_secs(180),
            "the appenders stopped acknowledging after the kills (seed {seed}): {:?}",
            tail_lines(&lines, dir.path())
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    for a in appenders.iter_mut() {
        if let Some(a) = a.take() {
            a.kill9();
        }
    }

    let lines = lines.lock().expect("lines").clone();
    let contents = event_ids_by_key(&bootstrap, TOPIC, PARTITIONS);
    let mut at: HashMap<&str, (&str, usize)> = HashMap::new();
    for (key, ids) in &contents {
        for (version, id) in ids.iter().enumerate() {
            assert!(
                at.insert(id.as_str(), (key.as_str(), version)).is_none(),
                "event id {id} is on Kafka twice (seed {seed}): {key} holds {ids:?}"
            );
        }
    }
    let mut acked = 0;
    for line in lines.iter().filter(|l| l.starts_with("ACK ")) {
        let parts: Vec<&str> = line.split(' ').collect();
        let (key, id, version) = (parts[1], parts[2], parts[3].parse::<usize>().expect("version"));
        assert_eq!(
            at.get(id),
            Some(&(key, version)),
            "acknowledged {id} at {key}@{version} is not there on Kafka (seed {seed}); {key} holds {:?}; \
             the appenders' errors: {:?}",
            contents.get(key),
            lines.iter().filter(|l| l.starts_with("ERR ")).take(20).collect::<Vec<_>>()
        );
        acked += 1;
    }
    let stored: usize = contents.values().map(Vec::len).sum();
    let errors = lines.iter().filter(|l| l.starts_with("ERR ")).count();
    for l in lines.iter().filter(|l| l.starts_with("ERR ")).take(5) {
        println!("  {l}");
    }
    println!(
        "kafka appender kills: {kills} kills, {acked} appends acknowledged, {stored} events on Kafka \
         ({} landed unacknowledged), 0 lost, 0 twice, {errors} errors retried",
        stored - acked
    );
    assert!(stored >= acked);
    assert!(broker_down_acks >= 10);
}
