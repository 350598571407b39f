//! Goal (RELIABILITY T13): a projection runner killed with SIGKILL at random points of a
//! catch-up, then restarted, applies every event exactly once to its read model (SQLite and
//! PostgreSQL): no event skipped, none applied twice, and after every kill the checkpoint is
//! never ahead of the committed read model (nor behind it). The same handler's side effect on
//! an external file (at-least-once mode) skips nothing either; its duplicates are counted and
//! reported.
//!
//! Method: the parent test writes 20,000 events over 200 keys to an embedded log (a tenth of
//! them to a topic the projection does not subscribe to), closes it, then runs a child process
//! (this test binary re-executed on `t13_child`, configured through `EVIDENT_T13_CHILD`; without
//! it `t13_child` does nothing) that opens the log and the sink and catches up with a random
//! small batch size. The handler upserts `applied(sequence, n)` (n counts applications) and
//! appends the sequence to a file without fsync; half the children (at random) write each page
//! with a set-based `handle_batch` (one multi-row upsert, one write of the page's lines), the
//! others event by event. The parent kills the child with SIGKILL either
//! after a random delay from its start (startup, setup, first pages) or once the file has grown
//! by a random number of bytes (mid-catch-up: inside a page, during a commit), up to 200 kills,
//! then lets a last child finish. After each kill, once the killed session is gone (PostgreSQL),
//! it reads the checkpoint P and the read model: every subscribed sequence below P must be
//! there exactly once and none at or above P (else a checkpoint violation), no row may have
//! n > 1, and the file must hold every sequence below P. At the end every subscribed sequence
//! must be applied exactly once. One summary line per backend:
//! A SIGKILL can tear the file's last line: a write(2) that crosses a page boundary stops
//! after the first page once a fatal signal is pending. So each line carries a check of its
//! sequence and each child starts with a newline; a torn line fails its check, is counted
//! (`torn_lines`) and ignored: its event was not committed, so a later child handles it again.
//! `projection crash (<db>): kills=... events=... skipped=0 double_applied=0
//! checkpoint_violations=0 at_least_once_duplicates=...`. The random seed is printed
//! (`EVIDENT_T13_SEED` replays one).

mod support_projection;

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evident::blocking::ProjectionRunner;
use evident::projection::{EventFailed, HandlerError, Projection, RunnerOptions, Subscription, ToParam, Tx};
use evident::{Backend, EmbeddedBackend, EventData, ExpectedVersion, RecordedEvent, TopicSpec};
use evident_log::{FsyncPolicy, Log, LogConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde::{Deserialize, Serialize};
use support_projection::{checkpoint, int, with_param, Db, PgSchema};

/// The child's configuration, as JSON in this variable.
const CHILD_ENV: &str = "EVIDENT_T13_CHILD";
/// The child's test function (`--exact`).
const CHILD_TEST: &str = "t13_child";
const TOPIC: &str = "t13";
const NOISE: &str = "noise";
const PROJECTION: &str = "t13-applied";
const EVENTS: usize = 20_000;
const KEYS: usize = 200;
/// Fewer kills than this and the test proves nothing: it fails.
const MIN_KILLS: u32 = 5;
/// After this many kills a last child is left to finish.
const MAX_KILLS: u32 = 200;

#[derive(Debug, Clone, Serialize, Deserialize)]
enum ChildDb {
    Sqlite(PathBuf),
    Postgres(String),
}

impl ChildDb {
    fn db(&self) -> Db {
        match self {
            ChildDb::Sqlite(p) => Db::Sqlite(p.clone()),
            ChildDb::Postgres(u) => Db::Postgres(u.clone()),
        }
    }
}

#[derive(Debug, Clone, Serialize, Deserialize)]
struct ChildConfig {
    log_dir: PathBuf,
    db: ChildDb,
    batch_size: usize,
    /// Pages written by a set-based `handle_batch` (one multi-row upsert, one write of the
    /// lines) rather than by `handle` per event.
    set_based: bool,
    /// The at-least-once side effect: one line per handled event.
    lines: PathBuf,
}

/// The projection: `applied(sequence, n)` in the sink (exactly once), a line in a file (at
/// least once).
struct Applied {
    lines: File,
    set_based: bool,
}

impl Projection for Applied {
    fn name(&self) -> &str {
        PROJECTION
    }

    fn subscription(&self) -> Subscription {
        Subscription::topic(TOPIC)
    }

    fn tables(&self) -> Vec<String> {
        vec!["applied".into()]
    }

    fn setup(&mut self, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        tx.execute("CREATE TABLE IF NOT EXISTS {applied} (sequence BIGINT PRIMARY KEY, n BIGINT NOT NULL)", &[])?;
        Ok(())
    }

    fn handle(&mut self, e: &RecordedEvent, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        tx.execute(
            "INSERT INTO {applied} (sequence, n) VALUES ($1, 1) ON CONFLICT (sequence) DO UPDATE SET n = {applied}.n + 1",
            &[&e.sequence],
        )?;
        // One write(2), no buffering and no fsync: survives the process's death, not the OS's
        // (unless the kill tears it, see the module doc).
        self.lines.write_all(line(e.sequence.0).as_bytes())?;
        Ok(())
    }

    fn handle_batch(&mut self, events: &[&RecordedEvent], tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        if !self.set_based {
            for (index, e) in events.iter().enumerate() {
                self.handle(e, tx).map_err(|error| EventFailed { index, error })?;
            }
            return Ok(());
        }
        let params: Vec<&dyn ToParam> = events.iter().flat_map(|e| [&e.sequence as &dyn ToParam, &1i64]).collect();
        tx.execute_values(
            "INSERT INTO {applied} (sequence, n) VALUES",
            2,
            &params,
            "ON CONFLICT (sequence) DO UPDATE SET n = {applied}.n + 1",
        )?;
        let lines: String = events.iter().map(|e| line(e.sequence.0)).collect();
        self.lines.write_all(lines.as_bytes())?;
        Ok(())
    }
}

/// The child: catches the projection up, when run by the parent; a no-op otherwise.
#[test]
fn t13_child() {
    let Ok(config) = std::env::var(CHILD_ENV) else { return };
    let cfg: ChildConfig = serde_json::from_str(&config).expect("child config");
    let backend = Arc::new(EmbeddedBackend::open(&cfg.log_dir).expect("open the log"));
    let mut lines = OpenOptions::new().create(true).append(true).open(&cfg.lines).expect("open the lines file");
    // Ends a line the previous child's death may have torn, so it cannot swallow this child's first.
    lines.write_all(b"\n").expect("write the lines file");
    let options = RunnerOptions { batch_size: cfg.batch_size, ..RunnerOptions::default() };
    let mut runner = ProjectionRunner::with_options(
        backend.clone(),
        cfg.db.db().sink(),
        Applied { lines, set_based: cfg.set_based },
        options,
    )
    .expect("open the runner");
    let head = evident::blocking::wait(backend.head_sequence()).expect("head");
    let result = runner.catch_up().expect("catch up");
    assert_eq!(result.position, head, "the child catches up to the head");
    println!("t13 child: caught up to {head} (scanned {}, applied {})", result.scanned, result.applied);
    backend.log().close().expect("close the log");
}

#[test]
fn projection_crash_sqlite() {
    let dir = tempfile::tempdir().expect("temp dir");
    let db = ChildDb::Sqlite(dir.path().join("read-model.sqlite"));
    crash_loop("sqlite", dir.path(), db, None);
}

#[test]
fn projection_crash_postgres() {
    let Some(schema) = PgSchema::create("projection_crash") else { return };
    let dir = tempfile::tempdir().expect("temp dir");
    let app = format!("evident_t13_{}", support_projection::random_suffix());
    let db = ChildDb::Postgres(with_param(&schema.url, "application_name", &app));
    crash_loop("postgres", dir.path(), db, Some((&schema, app.as_str())));
}

/// Writes the events; returns every sequence of the subscribed topic and the feed's length.
fn populate(log_dir: &Path, rng: &mut StdRng) -> (Vec<u64>, u64) {
    let log = Log::open(log_dir, LogConfig { fsync: FsyncPolicy::Never, ..LogConfig::default() }).expect("open");
    let backend = EmbeddedBackend::from_log(Arc::new(log));
    evident::blocking::wait(backend.ensure_topic(TOPIC, TopicSpec { partitions: 3, compacted: false }))
        .expect("create topic");
    evident::blocking::wait(backend.ensure_topic(NOISE, TopicSpec::default())).expect("create topic");
    let mut written = 0;
    let mut n = 0u64;
    while written < EVENTS {
        let key = format!("k{}", rng.gen_range(0..KEYS));
        let len = rng.gen_range(1..=10).min(EVENTS - written);
        let events: Vec<EventData> = (0..len)
            .map(|_| {
                n += 1;
                EventData::json(format!("e{n}"), "Happened", format!("{{\"n\":{n}}}").into_bytes())
            })
            .collect();
        let topic = if rng.gen_ratio(1, 10) { NOISE } else { TOPIC };
        evident::blocking::wait(backend.append(topic, &key, ExpectedVersion::Any, &events)).expect("append");
        written += len;
    }
    let mut subscribed = Vec::new();
    let mut from = evident::Sequence(0);
    loop {
        let page = evident::blocking::wait(backend.read_all(from, 1000)).expect("read_all");
        let Some(last) = page.last() else { break };
        from = last.sequence.next();
        subscribed.extend(page.iter().filter(|e| e.topic == TOPIC).map(|e| e.sequence.0));
    }
    let head = evident::blocking::wait(backend.head_sequence()).expect("head");
    assert_eq!(from, head);
    backend.log().close().expect("close the log");
    (subscribed, head.0)
}

enum Outcome {
    Killed,
    Exited(ExitStatus),
}

/// Kills `child` (SIGKILL) once `when` says so, unless it exits first; fails the test (after
/// killing it) if it runs longer than `limit` (failure detection only).
fn kill_when(child: &mut Child, limit: Duration, mut when: impl FnMut() -> bool) -> Outcome {
    let spawned = Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("try_wait") {
            return Outcome::Exited(status);
        }
        if spawned.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            panic!("the child neither finished nor progressed within {limit:?}");
        }
        if when() {
            child.kill().expect("kill the child");
            child.wait().expect("reap the child");
            return Outcome::Killed;
        }
        std::thread::sleep(Duration::from_micros(300));
    }
}

fn file_len(path: &Path) -> u64 {
    std::fs::metadata(path).map(|m| m.len()).unwrap_or(0)
}

/// One line of the at-least-once file: the sequence and its check.
fn line(seq: u64) -> String {
    format!("{seq} {:x}\n", check(seq))
}

fn check(seq: u64) -> u64 {
    seq.wrapping_mul(0x9E37_79B9_7F4A_7C15) ^ 0x5EED
}

/// The at-least-once file: sequence → lines, and how many lines were torn by a kill.
fn read_lines(path: &Path) -> (HashMap<u64, u64>, u64) {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut out = HashMap::new();
    let mut torn = 0;
    for line in text.lines().filter(|l| !l.is_empty()) {
        let parsed = line.split_once(' ').and_then(|(seq, chk)| {
            let seq: u64 = seq.parse().ok()?;
            (u64::from_str_radix(chk, 16).ok()? == check(seq)).then_some(seq)
        });
        match parsed {
            Some(seq) => *out.entry(seq).or_insert(0) += 1,
            None => torn += 1,
        }
    }
    (out, torn)
}

/// The checkpoint and `applied` as they are on disk.
fn read_state(db: &Db) -> (u64, BTreeMap<u64, i64>) {
    let mut sink = db.sink();
    let Some(cp) = checkpoint(&mut sink, PROJECTION) else {
        // The runner's first transaction (tables and checkpoint row) did not commit.
        return (0, BTreeMap::new());
    };
    let rows = evident::blocking::query(&mut sink, "SELECT sequence, n FROM applied", &[])
        .expect("the applied table exists with the checkpoint");
    (cp, rows.iter().map(|r| (int(&r[0]) as u64, int(&r[1]))).collect())
}

#[derive(Debug, Default)]
struct Counts {
    skipped: u64,
    /// Sequences seen applied more than once, at any check.
    double_applied: BTreeSet<u64>,
    checkpoint_violations: u64,
    at_least_once_skipped: u64,
}

/// Checks the state after a kill (see the module doc).
fn check_after_kill(db: &Db, subscribed: &[u64], lines: &Path, counts: &mut Counts, kill: u32) {
    let (cp, applied) = read_state(db);
    let (file, _torn) = read_lines(lines);
    let mut bad = Vec::new();
    for &seq in subscribed {
        let present = applied.get(&seq).copied();
        if seq < cp {
            if present.is_none() {
                counts.checkpoint_violations += 1;
                bad.push(format!("{seq} < checkpoint {cp} is not applied"));
            }
            if !file.contains_key(&seq) {
                counts.at_least_once_skipped += 1;
                bad.push(format!("{seq} < checkpoint {cp} is not in the lines file"));
            }
        } else if present.is_some() {
            counts.checkpoint_violations += 1;
            bad.push(format!("{seq} >= checkpoint {cp} is applied"));
        }
    }
    for (&seq, &n) in &applied {
        if n != 1 {
            counts.double_applied.insert(seq);
            bad.push(format!("{seq} applied {n} times"));
        }
        if subscribed.binary_search(&seq).is_err() {
            counts.checkpoint_violations += 1;
            bad.push(format!("{seq} is not subscribed but applied"));
        }
    }
    if !bad.is_empty() {
        bad.truncate(10);
        eprintln!("after kill {kill} (checkpoint {cp}): {}", bad.join("; "));
    }
}

/// Waits until the killed child's PostgreSQL session is gone, so that a commit it sent
/// before dying has landed or been rolled back before the state is read.
fn wait_for_sessions_to_end(pg: Option<(&PgSchema, &str)>) {
    let Some((schema, app)) = pg else { return };
    let mut admin = schema.admin();
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let row = admin
            .query_one("SELECT count(*) FROM pg_stat_activity WHERE application_name = $1", &[&app])
            .expect("pg_stat_activity");
        if row.get::<_, i64>(0) == 0 {
            return;
        }
        assert!(Instant::now() < deadline, "the killed child's PostgreSQL session did not end within 60 s");
        std::thread::sleep(Duration::from_millis(2));
    }
}

fn crash_loop(label: &str, dir: &Path, child_db: ChildDb, pg: Option<(&PgSchema, &str)>) {
    let seed = std::env::var("EVIDENT_T13_SEED").ok().and_then(|s| s.parse().ok()).unwrap_or_else(rand::random::<u64>);
    println!("projection crash ({label}): seed {seed} (EVIDENT_T13_SEED={seed} replays it)");
    let mut rng = StdRng::seed_from_u64(seed);
    let log_dir = dir.join("log");
    let lines = dir.join("applied.lines");
    let (subscribed, head) = populate(&log_dir, &mut rng);
    let db = child_db.db();
    let exe = std::env::current_exe().expect("the test binary");
    // Bytes the file grows by in a full catch-up, and the most a progress kill waits for: at
    // least a few dozen progress kills before a child can finish.
    let full_bytes: u64 = subscribed.iter().map(|&s| line(s).len() as u64).sum();
    let max_growth = (full_bytes / 100).max(1);

    let mut counts = Counts::default();
    let mut kills = 0u32;
    let mut cycle = 0u32;
    let started = Instant::now();
    loop {
        cycle += 1;
        let config = ChildConfig {
            log_dir: log_dir.clone(),
            db: child_db.clone(),
            batch_size: rng.gen_range(50..=200),
            set_based: rng.gen_bool(0.5),
            lines: lines.clone(),
        };
        let output_path = dir.join(format!("child-{cycle}.out"));
        let output = File::create(&output_path).expect("child output file");
        let mut child = Command::new(&exe)
            .args(["--exact", CHILD_TEST, "--nocapture", "--test-threads=1"])
            .env(CHILD_ENV, serde_json::to_string(&config).expect("config json"))
            .stdin(Stdio::null())
            .stdout(output.try_clone().expect("dup"))
            .stderr(output)
            .spawn()
            .expect("spawn the child");
        let spawned = Instant::now();
        let outcome = if kills < MAX_KILLS {
            if rng.gen_bool(0.25) {
                // Startup, setup, the first pages.
                let delay = Duration::from_micros(rng.gen_range(0..25_000));
                kill_when(&mut child, Duration::from_secs(120), || spawned.elapsed() >= delay)
            } else {
                // Mid-catch-up: once the handler has run for a random stretch.
                let base = file_len(&lines);
                let growth = rng.gen_range(1..=max_growth);
                kill_when(&mut child, Duration::from_secs(120), || file_len(&lines) >= base + growth)
            }
        } else {
            kill_when(&mut child, Duration::from_secs(300), || false)
        };
        match outcome {
            Outcome::Killed => {
                kills += 1;
                wait_for_sessions_to_end(pg);
                check_after_kill(&db, &subscribed, &lines, &mut counts, kills);
                let _ = std::fs::remove_file(&output_path);
            }
            Outcome::Exited(status) => {
                let out = std::fs::read_to_string(&output_path).unwrap_or_default();
                assert!(status.success(), "child {cycle} failed ({status}):\n{out}");
                assert!(out.contains("t13 child: caught up"), "child {cycle} did not run the catch-up:\n{out}");
                break;
            }
        }
    }

    // The end: every subscribed event applied exactly once, in both modes at least once.
    let (cp, applied) = read_state(&db);
    assert_eq!(cp, head, "the last child's checkpoint is the head");
    for &seq in &subscribed {
        match applied.get(&seq) {
            None => counts.skipped += 1,
            Some(&n) if n != 1 => {
                counts.double_applied.insert(seq);
            }
            Some(_) => {}
        }
    }
    let (file, torn) = read_lines(&lines);
    assert!(torn <= u64::from(kills), "{torn} torn lines from {kills} kills: only a kill tears a line");
    counts.at_least_once_skipped += subscribed.iter().filter(|s| !file.contains_key(s)).count() as u64;
    let duplicates: u64 = file.values().map(|n| n - 1).sum();
    let mut stray: Vec<u64> = file.keys().copied().filter(|s| subscribed.binary_search(s).is_err()).collect();
    stray.sort_unstable();
    assert!(
        stray.is_empty(),
        "the file holds {} sequences of no subscribed event (head {head}, seed {seed}): {:?}",
        stray.len(),
        &stray[..stray.len().min(20)],
    );
    println!(
        "projection crash ({label}): kills={kills} events={} skipped={} double_applied={} checkpoint_violations={} \
         at_least_once_duplicates={duplicates} at_least_once_skipped={} torn_lines={torn} seconds={:.1}",
        subscribed.len(),
        counts.skipped,
        counts.double_applied.len(),
        counts.checkpoint_violations,
        counts.at_least_once_skipped,
        started.elapsed().as_secs_f64(),
    );
    assert_eq!(counts.skipped, 0, "events skipped");
    assert!(counts.double_applied.is_empty(), "events applied twice in exactly-once mode");
    assert_eq!(counts.checkpoint_violations, 0, "checkpoint out of step with the read model");
    assert_eq!(counts.at_least_once_skipped, 0, "events skipped in at-least-once mode");
    assert!(kills >= MIN_KILLS, "only {kills} kills: the run proves nothing (seed {seed})");
}
