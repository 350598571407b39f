//! Goal (reliability test T1): `kill -9` at any moment, on real files, never loses an
//! acknowledged append, and recovery never duplicates, renumbers or reorders events.
//! Method: the test binary re-executes itself as a child process (`crash_loop_child`) that
//! opens the log (fsync `always`, small segments), appends from four threads (some with the
//! exact expected version, some with `Any`, some with a stale one the log must refuse) and
//! reports on stdout every batch before it sends it and every acknowledgement after it gets it.
//! The parent (`crash_loop_kill9`) SIGKILLs the child after a random delay (sometimes while
//! it is still opening the log), keeps a ledger of every ACK it saw, then opens the log itself
//! and checks everything it holds (read back in commit order) against the ledger: every acked
//! event at its acked version, offset and sequence; no id twice; versions, sequences and
//! offsets dense and in order; every few cycles it also reads each stream and each partition
//! back and checks that they agree with the commit-order read. Batches sent but never
//! acknowledged are handed to the next child, which resends them unchanged; each must come
//! back either as a duplicate (it had landed) or as a fresh append (it had not).
//! Knobs: `EVIDENT_CRASH_CYCLES` (default 200), `EVIDENT_CRASH_SEED` (default: the time; the
//! seed is printed, and repeats the kill schedule, not the exact timing).

use std::collections::{BTreeMap, HashMap, HashSet};
use std::fs::File;
use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::AsFd;
use std::os::unix::process::ExitStatusExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use evident_core::batch::RecordBatch;
use evident_core::{EventData, ExpectedVersion, Version};
use evident_log::{AppendOutcome, Error, Event, Log, LogConfig, StreamReadOptions, TopicConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

// ---------------------------------------------------------------------------------------------
// Shared by parent and child: the workload's names, ids and contents, all deterministic so the
// parent can check what the log holds without being told the content.
// ---------------------------------------------------------------------------------------------

const TOPIC: &str = "crash";
const PARTITIONS: u32 = 3;
const WRITERS: u64 = 4;
const STREAMS_PER_WRITER: u64 = 6;

/// Set by the parent for the child: the log's directory (its presence makes the child run).
const ENV_DIR: &str = "EVIDENT_CRASH_CHILD_DIR";
/// File of batches whose outcome the previous child never reported, one per line.
const ENV_INFLIGHT: &str = "EVIDENT_CRASH_CHILD_INFLIGHT";
/// Cycle number: part of every event id, so ids never repeat across children.
const ENV_CYCLE: &str = "EVIDENT_CRASH_CHILD_CYCLE";
/// The child's random seed.
const ENV_SEED: &str = "EVIDENT_CRASH_CHILD_SEED";

/// Prefix of every line of the child's protocol. The test harness prints on the same stdout
/// ("running 1 test", "test crash_loop_child ... ", sometimes without a newline), so the parent
/// looks for this marker instead of trusting line starts.
const MARK: &str = "@@ ";

/// A child the parent failed to kill exits by itself after this long.
const CHILD_LIFETIME: Duration = Duration::from_secs(60);
/// Every how many cycles the parent also reads the log back by stream and by partition.
const CROSS_CHECK_EVERY: u64 = 5;
/// How long the parent waits for the child to reach the phase it means to kill it in.
const PHASE_TIMEOUT: Duration = Duration::from_secs(30);

fn log_config() -> LogConfig {
    LogConfig {
        // Small segments: the loop rolls segments often, so kills land around rolls too.
        segment_size_max: 256 << 10,
        // Frequent checkpoints: kills also land while one is being written during appends.
        checkpoint_interval_bytes: 1 << 20,
        // fsync `always`, the default: an ACK means durable.
        ..LogConfig::default()
    }
}

fn topic_config() -> TopicConfig {
    TopicConfig { partitions: PARTITIONS, ..TopicConfig::default() }
}

fn stream_name(writer: u64, k: u64) -> String {
    format!("w{writer}-s{k}")
}

fn all_streams() -> impl Iterator<Item = String> {
    (0..WRITERS).flat_map(|w| (0..STREAMS_PER_WRITER).map(move |k| stream_name(w, k)))
}

fn event_id(cycle: u64, writer: u64, n: u64) -> String {
    format!("c{cycle}-w{writer}-{n}")
}

/// The cycle and writer an id was made by (`c{cycle}-w{writer}-{n}`).
fn id_origin(id: &str) -> Option<(u64, u64)> {
    let mut parts = id.split('-');
    let cycle = parts.next()?.strip_prefix('c')?.parse().ok()?;
    let writer = parts.next()?.strip_prefix('w')?.parse().ok()?;
    Some((cycle, writer))
}

/// FNV-1a: a hash that is the same in every process and every Rust release.
fn fnv1a(s: &str) -> u64 {
    s.bytes().fold(0xcbf2_9ce4_8422_2325, |h, b| (h ^ u64::from(b)).wrapping_mul(0x0100_0000_01b3))
}

fn event_type(id: &str) -> String {
    format!("Crash{}", fnv1a(id) % 4)
}

fn payload(id: &str) -> Vec<u8> {
    // 0 to 1 KiB of padding: frames of varied sizes, and segments fill fast enough to roll.
    let pad = (fnv1a(id) >> 8) % 1024;
    format!(r#"{{"id":"{id}","pad":"{}"}}"#, "x".repeat(pad as usize)).into_bytes()
}

fn event_for(id: &str) -> EventData {
    EventData::json(id, event_type(id), payload(id))
}

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

/// A batch as sent to one stream: what SEND, REFUSED and the in-flight file carry, as
/// `<stream> <id> <id>...`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SentBatch {
    stream: String,
    ids: Vec<String>,
}

impl SentBatch {
    fn parse(text: &str) -> Option<Self> {
        let mut words = text.split_whitespace();
        let stream = words.next()?.to_string();
        let ids: Vec<String> = words.map(str::to_string).collect();
        (!ids.is_empty()).then_some(Self { stream, ids })
    }

    fn events(&self) -> Vec<EventData> {
        self.ids.iter().map(|id| event_for(id)).collect()
    }
}

impl std::fmt::Display for SentBatch {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} {}", self.stream, self.ids.join(" "))
    }
}

// ---------------------------------------------------------------------------------------------
// The child: appends until it is killed, reporting on stdout.
// ---------------------------------------------------------------------------------------------

/// The child's entry point, not a test of its own: `crash_loop_kill9` runs this binary again
/// with `--exact crash_loop_child --nocapture` and `EVIDENT_CRASH_CHILD_DIR` set, and this
/// function then appends until it is killed. Without the variable (any ordinary `cargo test`
/// run) it returns at once and passes.
#[test]
fn crash_loop_child() {
    let Some(dir) = std::env::var_os(ENV_DIR) else {
        return;
    };
    let inflight = std::env::var_os(ENV_INFLIGHT).map(PathBuf::from);
    let cycle = env_u64(ENV_CYCLE).unwrap_or(0);
    let seed = env_u64(ENV_SEED).unwrap_or(0);
    child_main(Path::new(&dir), inflight.as_deref(), cycle, seed);
}

fn line(text: &str) -> String {
    format!("{MARK}{text}\n")
}

/// Writes complete protocol lines with one `write(2)` on an unbuffered stdout: a pipe write of
/// under `PIPE_BUF` bytes is atomic, so concurrent writers never interleave and a kill never
/// leaves half a line. Exits if the parent is gone.
fn emit(text: &str) {
    static OUT: OnceLock<File> = OnceLock::new();
    let out = OUT.get_or_init(|| {
        let fd = std::io::stdout().as_fd().try_clone_to_owned().expect("dup stdout");
        File::from(fd)
    });
    if (&*out).write_all(text.as_bytes()).is_err() {
        std::process::exit(4);
    }
}

/// Reports something the log must never do, and stops: the parent fails on a FATAL line or on
/// a child that exits by itself.
fn fatal(what: &str) -> ! {
    emit(&line(&format!("FATAL {what}")));
    std::process::exit(3);
}

fn child_main(dir: &Path, inflight: Option<&Path>, cycle: u64, seed: u64) {
    std::thread::spawn(|| {
        std::thread::sleep(CHILD_LIFETIME);
        fatal("the parent never killed this child");
    });
    emit(&line("START"));
    let log = Log::open(dir, log_config()).unwrap_or_else(|e| fatal(&format!("open: {e}")));
    match log.create_topic(TOPIC, topic_config()) {
        Ok(_) | Err(Error::TopicExists(_)) => {}
        Err(e) => fatal(&format!("create_topic: {e}")),
    }
    emit(&line("READY"));
    // Retries first, before any writer runs, so writers start from settled stream versions.
    for batch in read_inflight(inflight) {
        retry(&log, &batch);
    }
    let log = &log;
    std::thread::scope(|s| {
        for writer in 0..WRITERS {
            s.spawn(move || writer_loop(log, cycle, writer, seed));
        }
    });
}

fn read_inflight(path: Option<&Path>) -> Vec<SentBatch> {
    let Some(text) = path.and_then(|p| std::fs::read_to_string(p).ok()) else {
        return Vec::new();
    };
    text.lines().filter_map(SentBatch::parse).collect()
}

/// The ACK lines for an append: one per record, in batch order, written together.
fn ack_lines(batch: &SentBatch, outcome: &AppendOutcome) -> String {
    if outcome.records.len() != batch.ids.len() {
        fatal(&format!("{batch}: {} positions returned", outcome.records.len()));
    }
    let mut text = String::new();
    for (id, r) in batch.ids.iter().zip(&outcome.records) {
        let Some(version) = r.version else {
            fatal(&format!("{batch}: a keyed record without a version"));
        };
        text += &line(&format!("ACK {} {id} {version} {} {}", batch.stream, r.offset, r.sequence));
    }
    text
}

/// Resends a batch whose outcome the previous child never reported, exactly as it was first
/// sent (same ids, same content) but with `Any`: either it had landed and the log answers
/// `duplicate` with the original positions, or it had not and it is appended now. Any error
/// (`PartialDuplicate` above all: half a batch survived) is a bug.
fn retry(log: &Log, batch: &SentBatch) {
    match log.append_events(TOPIC, batch.stream.as_bytes(), ExpectedVersion::Any, &batch.events()) {
        Ok(outcome) => {
            let kind = if outcome.duplicate { "dup" } else { "fresh" };
            let text = ack_lines(batch, &outcome) + &line(&format!("RETRIED {kind} {batch}"));
            emit(&text);
        }
        Err(e) => fatal(&format!("retry of {batch}: {e}")),
    }
}

/// How a writer states its expectation: mostly the exact current version (as an application
/// doing optimistic concurrency would) or `Any`, and one time in ten a stale version, which
/// the log must refuse without appending anything. Returns the expectation and whether a
/// refusal is the right answer.
fn pick_expected(rng: &mut StdRng, current: Option<u64>) -> (ExpectedVersion, bool) {
    match rng.gen_range(0..100) {
        0..45 => match current {
            Some(v) => (ExpectedVersion::Exact(Version(v)), false),
            None => (ExpectedVersion::NoStream, false),
        },
        45..90 => (ExpectedVersion::Any, false),
        _ => match current {
            None => (ExpectedVersion::Exact(Version(0)), true),
            Some(0) => (ExpectedVersion::NoStream, true),
            Some(v) => (ExpectedVersion::Exact(Version(v - 1)), true),
        },
    }
}

fn current_version(log: &Log, stream: &str) -> Option<u64> {
    let options = StreamReadOptions { limit: 1, ..StreamReadOptions::default() };
    log.read_stream(TOPIC, stream.as_bytes(), &options)
        .unwrap_or_else(|e| fatal(&format!("read_stream {stream}: {e}")))
        .current_version
}

/// One writer: appends batches of 1 to 3 events to its own streams, forever.
fn writer_loop(log: &Log, cycle: u64, writer: u64, seed: u64) {
    let mut rng = StdRng::seed_from_u64(seed ^ writer.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    let streams: Vec<String> = (0..STREAMS_PER_WRITER).map(|k| stream_name(writer, k)).collect();
    // Only this writer appends to these streams, so it knows their versions: an exact
    // expectation that fails is a bug, not a race.
    let mut current: Vec<Option<u64>> = streams.iter().map(|s| current_version(log, s)).collect();
    let mut n = 0;
    loop {
        let k = rng.gen_range(0..streams.len());
        let ids = (0..rng.gen_range(1..=3))
            .map(|_| {
                n += 1;
                event_id(cycle, writer, n)
            })
            .collect();
        let batch = SentBatch { stream: streams[k].clone(), ids };
        let (expected, refusal) = pick_expected(&mut rng, current[k]);
        emit(&line(&format!("SEND {batch}")));
        let result = log.append_events(TOPIC, batch.stream.as_bytes(), expected, &batch.events());
        match (result, refusal) {
            (Ok(outcome), false) if !outcome.duplicate => {
                current[k] = outcome.records.last().and_then(|r| r.version);
                emit(&ack_lines(&batch, &outcome));
            }
            (Err(Error::WrongExpectedVersion { .. }), true) => {
                emit(&line(&format!("REFUSED {batch}")));
            }
            (result, _) => {
                fatal(&format!("append {batch} expecting {expected} (should be refused: {refusal}): {result:?}"))
            }
        }
    }
}

// ---------------------------------------------------------------------------------------------
// The parent: runs children, kills them, checks the log against what was acknowledged.
// ---------------------------------------------------------------------------------------------

/// Where in the child's life the kill lands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// Counted from the child's START line: during `Log::open` (recovery).
    Start,
    /// Counted from READY: during the in-flight retries and the appends.
    Ready,
}

#[derive(Debug, Clone, Copy)]
struct KillPlan {
    phase: Phase,
    delay: Duration,
    /// Remove the index checkpoint first, so the child's open replays the whole journal and
    /// writes a new checkpoint, which is then what the kill interrupts. (The parent closes
    /// the log cleanly between children, so otherwise the child's open has nothing to do.)
    drop_checkpoint: bool,
}

impl KillPlan {
    fn pick(rng: &mut StdRng) -> Self {
        let micros = |rng: &mut StdRng, ms: std::ops::Range<u64>| {
            Duration::from_micros(rng.gen_range(ms.start * 1000..ms.end * 1000))
        };
        match rng.gen_range(0..100) {
            0..15 => Self { phase: Phase::Start, delay: micros(rng, 0..5), drop_checkpoint: rng.gen_bool(0.5) },
            15..25 => Self { phase: Phase::Ready, delay: micros(rng, 0..5), drop_checkpoint: false },
            _ => Self { phase: Phase::Ready, delay: micros(rng, 5..300), drop_checkpoint: false },
        }
    }
}

/// Kills the child if the parent leaves early (a panic), so no child outlives the test.
struct ChildGuard(Child);

impl Drop for ChildGuard {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// One child's life as the parent saw it.
struct ChildRun {
    plan: KillPlan,
    /// Protocol lines (the marker removed), in the order the child wrote them.
    lines: Vec<String>,
    /// Whether the child reached the phase the plan aimed at.
    reached: bool,
    status: ExitStatus,
    stderr: String,
}

impl ChildRun {
    fn killed_by_us(&self) -> bool {
        self.reached && self.status.signal() == Some(libc::SIGKILL)
    }

    /// Whether the kill landed inside `Log::open` (the child said START, never READY).
    fn killed_in_open(&self) -> bool {
        let said = |what: &str| self.lines.iter().any(|l| l == what);
        said("START") && !said("READY")
    }
}

/// Forwards the child's complete protocol lines; a line cut by the kill has no newline and is
/// dropped (it cannot happen with atomic pipe writes, but the ledger must not trust one).
fn forward_lines(stdout: impl Read, tx: mpsc::Sender<String>) {
    let mut reader = BufReader::new(stdout);
    let mut buf = String::new();
    loop {
        buf.clear();
        match reader.read_line(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(_) if !buf.ends_with('\n') => return,
            Ok(_) => {
                if let Some(at) = buf.find(MARK) {
                    let _ = tx.send(buf[at + MARK.len()..].trim_end().to_string());
                }
            }
        }
    }
}

/// Collects lines until `wanted` arrives; false if the child ends or times out first.
fn wait_for(rx: &Receiver<String>, lines: &mut Vec<String>, wanted: &str) -> bool {
    let deadline = Instant::now() + PHASE_TIMEOUT;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match rx.recv_timeout(left) {
            Ok(l) => {
                let found = l == wanted;
                lines.push(l);
                if found {
                    return true;
                }
            }
            Err(RecvTimeoutError::Timeout | RecvTimeoutError::Disconnected) => return false,
        }
    }
}

fn run_child(data: &Path, inflight: &Path, cycle: u64, seed: u64, plan: KillPlan) -> ChildRun {
    let exe = std::env::current_exe().expect("current_exe");
    let child = Command::new(exe)
        .args(["--exact", "crash_loop_child", "--nocapture"])
        .env(ENV_DIR, data)
        .env(ENV_INFLIGHT, inflight)
        .env(ENV_CYCLE, cycle.to_string())
        .env(ENV_SEED, seed.to_string())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn the child");
    let mut child = ChildGuard(child);
    let stdout = child.0.stdout.take().expect("child stdout");
    let mut stderr = child.0.stderr.take().expect("child stderr");
    let (tx, rx) = mpsc::channel();
    let out_reader = std::thread::spawn(move || forward_lines(stdout, tx));
    let err_reader = std::thread::spawn(move || {
        let mut text = String::new();
        let _ = stderr.read_to_string(&mut text);
        text
    });
    let mut lines = Vec::new();
    let wanted = match plan.phase {
        Phase::Start => "START",
        Phase::Ready => "READY",
    };
    let reached = wait_for(&rx, &mut lines, wanted);
    if reached {
        std::thread::sleep(plan.delay);
    }
    // `Child::kill` is SIGKILL on Unix: no destructor, no flush, no close.
    let _ = child.0.kill();
    let status = child.0.wait().expect("wait for the child");
    // The pipe closes with the process: the reader drains what was written, then stops.
    lines.extend(rx.iter());
    out_reader.join().expect("stdout reader");
    let stderr = err_reader.join().expect("stderr reader");
    ChildRun { plan, lines, reached, status, stderr }
}

fn write_inflight(path: &Path, pending: &[SentBatch]) {
    let text: String = pending.iter().map(|b| format!("{b}\n")).collect();
    std::fs::write(path, text).expect("write the in-flight file");
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    LostAcked,
    Duplicate,
    Gap,
    Order,
    Other,
}

/// Everything found wrong; the test fails at the end of any cycle that found something.
#[derive(Default)]
struct Violations {
    lost_acked: u64,
    duplicates: u64,
    gaps: u64,
    order: u64,
    other: u64,
    details: Vec<String>,
}

impl Violations {
    fn record(&mut self, kind: Kind, detail: String) {
        match kind {
            Kind::LostAcked => self.lost_acked += 1,
            Kind::Duplicate => self.duplicates += 1,
            Kind::Gap => self.gaps += 1,
            Kind::Order => self.order += 1,
            Kind::Other => self.other += 1,
        }
        if self.details.len() < 40 {
            self.details.push(format!("{kind:?}: {detail}"));
        }
    }

    fn total(&self) -> u64 {
        self.lost_acked + self.duplicates + self.gaps + self.order + self.other
    }
}

/// Where an ACK said an event landed.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Ack {
    id: String,
    offset: u64,
    sequence: u64,
}

/// What the parent knows from the children's stdout, across all cycles.
#[derive(Default)]
struct Ledger {
    /// Stream, then version: what its ACK said.
    acked: HashMap<String, BTreeMap<u64, Ack>>,
    /// Id: the (stream, version) it was acknowledged at.
    acked_at: HashMap<String, (String, u64)>,
    /// Sent, neither acknowledged nor refused: the next child resends these.
    pending: Vec<SentBatch>,
    sent: HashSet<String>,
    refused: HashSet<String>,
    /// Ids found in the log after a kill before their ACK was seen (the kill ate the ACK).
    unacked_present: HashSet<String>,
    retried: u64,
    retried_dup: u64,
    /// Highest sequence acknowledged so far, and as of the start of the current cycle (this
    /// cycle's new appends must come after it).
    max_acked_seq: Option<u64>,
    seq_floor: Option<u64>,
    /// This cycle's last new ACK per stream (version, offset, sequence), and per writer
    /// (sequence): one writer's appends are sequential, so these must only grow.
    last_in_stream: HashMap<String, (u64, u64, u64)>,
    last_of_writer: HashMap<u64, u64>,
    violations: Violations,
}

impl Ledger {
    fn begin_cycle(&mut self) {
        self.seq_floor = self.max_acked_seq;
        self.last_in_stream.clear();
        self.last_of_writer.clear();
    }

    fn apply(&mut self, cycle: u64, line: &str) {
        let (word, rest) = line.split_once(' ').unwrap_or((line, ""));
        match word {
            "SEND" => {
                if let Some(batch) = SentBatch::parse(rest) {
                    self.sent.extend(batch.ids.iter().cloned());
                    self.pending.push(batch);
                }
            }
            "ACK" => self.apply_ack(cycle, rest),
            "REFUSED" => {
                if let Some(batch) = SentBatch::parse(rest) {
                    self.pending.retain(|b| *b != batch);
                    self.refused.extend(batch.ids);
                }
            }
            "RETRIED" => {
                self.retried += 1;
                if rest.starts_with("dup ") {
                    self.retried_dup += 1;
                }
            }
            "FATAL" => self.violations.record(Kind::Other, format!("the child stopped: {rest}")),
            _ => {}
        }
    }

    fn apply_ack(&mut self, cycle: u64, rest: &str) {
        let words: Vec<&str> = rest.split_whitespace().collect();
        let parsed = match words[..] {
            [stream, id, version, offset, sequence] => match (version.parse(), offset.parse(), sequence.parse()) {
                (Ok(v), Ok(o), Ok(s)) => Some((stream, id, v, o, s)),
                _ => None,
            },
            _ => None,
        };
        let Some((stream, id, version, offset, sequence)) = parsed else {
            let detail = format!("unreadable ACK line {rest:?}");
            return self.violations.record(Kind::Other, detail);
        };
        let ack = Ack { id: id.to_string(), offset, sequence };
        self.max_acked_seq = self.max_acked_seq.max(Some(sequence));
        if !self.sent.contains(id) {
            let detail = format!("ACK for {id}, which was never sent");
            self.violations.record(Kind::Other, detail);
        }
        for batch in &mut self.pending {
            batch.ids.retain(|i| i != id);
        }
        self.pending.retain(|b| !b.ids.is_empty());

        // One slot, one event: a second, different ACK for a version means one was lost.
        let slots = self.acked.entry(stream.to_string()).or_default();
        match slots.get(&version) {
            Some(earlier) if *earlier != ack => self
                .violations
                .record(Kind::LostAcked, format!("{stream} v{version} acknowledged as {earlier:?}, later as {ack:?}")),
            Some(_) => {}
            None => {
                slots.insert(version, ack);
            }
        }
        // One event, one slot: a retry must report the original position.
        let at = (stream.to_string(), version);
        match self.acked_at.get(id) {
            Some(earlier) if *earlier != at => {
                self.violations.record(Kind::Duplicate, format!("{id} acknowledged at {earlier:?} and at {at:?}"))
            }
            Some(_) => {}
            None => {
                self.acked_at.insert(id.to_string(), at);
            }
        }
        // Appends made in this cycle (not retries) follow everything acknowledged before
        // and, per stream and per writer, each other.
        let Some((id_cycle, writer)) = id_origin(id) else {
            return;
        };
        if id_cycle != cycle {
            return;
        }
        if self.seq_floor.is_some_and(|floor| sequence <= floor) {
            let detail = format!("{id} got sequence {sequence}, not after the earlier cycles' {:?}", self.seq_floor);
            self.violations.record(Kind::Order, detail);
        }
        let now = (version, offset, sequence);
        if let Some(last) = self.last_in_stream.insert(stream.to_string(), now) {
            if !(now.0 > last.0 && now.1 > last.1 && now.2 > last.2) {
                let detail = format!("{stream}: {id} at (version, offset, sequence) {now:?} after {last:?}");
                self.violations.record(Kind::Order, detail);
            }
        }
        if let Some(last) = self.last_of_writer.insert(writer, sequence) {
            if sequence <= last {
                let detail = format!("writer {writer}: {id} at sequence {sequence} after {last}");
                self.violations.record(Kind::Order, detail);
            }
        }
    }

    /// Checks what the log holds after a recovery against every ACK ever seen.
    fn check_against(&mut self, view: &LogView) {
        for (stream, slots) in &self.acked {
            let held = view.streams.get(stream).map_or(&[][..], Vec::as_slice);
            for (version, ack) in slots {
                match held.get(*version as usize) {
                    Some(e) if e.id == ack.id && e.offset == ack.offset && e.sequence == ack.sequence => {}
                    found => self.violations.record(
                        Kind::LostAcked,
                        format!(
                            "{stream} v{version}: acknowledged {ack:?}, the log holds {found:?} \
                             (stream length {})",
                            held.len()
                        ),
                    ),
                }
            }
        }
        for id in view.ids.keys() {
            if !self.sent.contains(id) {
                let detail = format!("{id} is in the log but was never sent");
                self.violations.record(Kind::Other, detail);
            } else if self.refused.contains(id) {
                let detail = format!("{id} is in the log but its append was refused");
                self.violations.record(Kind::Other, detail);
            } else if !self.acked_at.contains_key(id) {
                self.unacked_present.insert(id.clone());
            }
        }
        // A batch is atomic: all of its events landed, or none.
        for batch in &self.pending {
            let present = batch.ids.iter().filter(|id| view.ids.contains_key(*id)).count();
            if present != 0 && present != batch.ids.len() {
                let detail = format!("torn batch {batch}: {present} of its events are in the log");
                self.violations.record(Kind::Other, detail);
            }
        }
    }
}

/// One event as read back.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Stored {
    id: String,
    offset: u64,
    sequence: u64,
}

/// What the log holds, from `read_all` (everything in commit-sequence order), checked for
/// consistency while it is built; [`LogView::cross_check`] compares the other read paths
/// with it.
#[derive(Default)]
struct LogView {
    /// Stream: its events by version.
    streams: HashMap<String, Vec<Stored>>,
    /// Id: (stream, version).
    ids: HashMap<String, (String, u64)>,
    /// Partition: its record count.
    partition_ends: Vec<u64>,
}

fn read_everything(log: &Log) -> evident_log::Result<Vec<Event>> {
    let mut all: Vec<Event> = Vec::new();
    loop {
        let from = all.last().map_or(0, |e| e.sequence + 1);
        let page = log.read_all(from, 10_000)?;
        let stalled = page.last().is_some_and(|e| e.sequence < from);
        if page.is_empty() {
            return Ok(all);
        }
        all.extend(page);
        if stalled {
            return Ok(all); // sequences went backwards: reported by the checks
        }
    }
}

/// Reports `got` against `want` for a counter that must go up by exactly one: a jump is a
/// gap, a step back an order violation. `what` names it, only when something is wrong (this
/// runs for every event of every check).
fn check_dense(v: &mut Violations, want: u64, got: u64, what: impl FnOnce() -> String) {
    let kind = match got.cmp(&want) {
        std::cmp::Ordering::Equal => return,
        std::cmp::Ordering::Greater => Kind::Gap,
        std::cmp::Ordering::Less => Kind::Order,
    };
    v.record(kind, format!("{}: expected {want}, found {got}", what()));
}

/// Whether an event read back is the one its id names (type and payload as sent).
fn content_matches(e: &Event, id: &str) -> bool {
    e.value.as_deref() == Some(&payload(id)[..]) && e.event_type() == Some(&event_type(id)[..])
}

impl LogView {
    /// Reads everything in sequence order and checks it: sequences dense from 0, offsets
    /// dense per partition, versions dense per stream with offsets and sequences increasing,
    /// one partition per stream, each id once, contents as sent.
    fn read(log: &Log, v: &mut Violations) -> Self {
        let mut view = Self { partition_ends: vec![0; PARTITIONS as usize], ..Self::default() };
        if !log.list_topics().iter().any(|t| t.name.as_str() == TOPIC) {
            return view; // killed before the topic was created
        }
        let all = match read_everything(log) {
            Ok(all) => all,
            Err(e) => {
                v.record(Kind::Other, format!("read_all failed: {e}"));
                return view;
            }
        };
        let mut home: HashMap<String, u32> = HashMap::new();
        for (i, e) in all.iter().enumerate() {
            check_dense(v, i as u64, e.sequence, || "read_all sequence".into());
            let p = e.partition as usize;
            let Some(next_offset) = view.partition_ends.get_mut(p) else {
                v.record(Kind::Other, format!("partition {p} does not exist"));
                continue;
            };
            check_dense(v, *next_offset, e.offset, || format!("partition {p} offset"));
            *next_offset = e.offset + 1;
            let key = e.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()).unwrap_or_default();
            let id = e.id().unwrap_or_default().to_string();
            if !content_matches(e, &id) {
                v.record(Kind::Other, format!("seq {}: {id:?} is not the content that was sent", e.sequence));
            }
            if *home.entry(key.clone()).or_insert(e.partition) != e.partition {
                v.record(Kind::Other, format!("{key} has events in two partitions"));
            }
            let events = view.streams.entry(key.clone()).or_default();
            let version = e.version.unwrap_or(u64::MAX);
            check_dense(v, events.len() as u64, version, || format!("{key} version"));
            if let Some(last) = events.last() {
                if e.sequence <= last.sequence || e.offset <= last.offset {
                    let (offset, sequence) = (e.offset, e.sequence);
                    let detail = format!("{key} v{version}: offset {offset}, sequence {sequence} after {last:?}");
                    v.record(Kind::Order, detail);
                }
            }
            events.push(Stored { id: id.clone(), offset: e.offset, sequence: e.sequence });
            if let Some(first) = view.ids.insert(id.clone(), (key.clone(), version)) {
                v.record(Kind::Duplicate, format!("{id} at {first:?} and at ({key}, {version})"));
            }
        }
        view
    }

    /// The other read paths agree: each stream read by version returns exactly the events
    /// `read_all` placed in it, and each partition's stored batches tile its offsets.
    fn cross_check(&self, log: &Log, v: &mut Violations) {
        if !log.list_topics().iter().any(|t| t.name.as_str() == TOPIC) {
            return;
        }
        let options = StreamReadOptions { limit: usize::MAX, ..StreamReadOptions::default() };
        for stream in all_streams() {
            let read = match log.read_stream(TOPIC, stream.as_bytes(), &options) {
                Ok(read) => read,
                Err(e) => {
                    v.record(Kind::Other, format!("read_stream {stream}: {e}"));
                    continue;
                }
            };
            let want = self.streams.get(&stream).map_or(&[][..], Vec::as_slice);
            let n = read.events.len() as u64;
            if read.current_version != n.checked_sub(1) || read.events.len() != want.len() {
                let detail = format!(
                    "{stream}: read_stream returns {n} events (current version {:?}), read_all {}",
                    read.current_version,
                    want.len()
                );
                v.record(Kind::Gap, detail);
            }
            for ((i, e), w) in read.events.iter().enumerate().zip(want) {
                let id = e.id().unwrap_or_default();
                let same = e.version == Some(i as u64)
                    && id == w.id
                    && e.offset == w.offset
                    && e.sequence == w.sequence
                    && content_matches(e, id);
                if !same {
                    let detail = format!("{stream} v{i}: read_stream has {e:?}, read_all {w:?}");
                    v.record(Kind::Other, detail);
                }
            }
        }
        check_partitions(log, &self.partition_ends, v);
    }
}

/// Each partition by offset: stored batches tile the offsets from 0 to the high watermark,
/// which matches what `read_all` found.
fn check_partitions(log: &Log, records: &[u64], v: &mut Violations) {
    for (p, &count) in (0..PARTITIONS).zip(records) {
        let mut next = 0u64;
        let high_watermark = loop {
            let read = match log.read_partition(TOPIC, p, next, 1 << 20) {
                Ok(read) => read,
                Err(e) => {
                    v.record(Kind::Other, format!("read_partition {p} at {next}: {e}"));
                    return;
                }
            };
            if read.batches.is_empty() {
                break read.high_watermark;
            }
            for bytes in &read.batches {
                let header = match RecordBatch::parse_exact(bytes) {
                    Ok(batch) => *batch.header(),
                    Err(e) => {
                        v.record(Kind::Other, format!("partition {p}: bad batch: {e}"));
                        return;
                    }
                };
                let base = u64::try_from(header.base_offset).unwrap_or(u64::MAX);
                check_dense(v, next, base, || format!("partition {p} batch base offset"));
                next = base + u64::try_from(header.last_offset_delta).unwrap_or(0) + 1;
            }
        };
        if high_watermark != next || next != count {
            let detail = format!(
                "partition {p}: batches end at {next}, high watermark {high_watermark}, \
                 read_all found {count} records"
            );
            v.record(Kind::Gap, detail);
        }
    }
}

/// What one recovery took and found.
struct Recovery {
    open_time: Duration,
    torn_tail: bool,
}

/// Opens the log as the next process would after the kill, checks it against the ledger (and,
/// if `cross_check`, the stream and partition read paths against `read_all`), closes it.
fn recover_and_check(data: &Path, ledger: &mut Ledger, cross_check: bool) -> Recovery {
    let started = Instant::now();
    let log = match Log::open(data, log_config()) {
        Ok(log) => log,
        Err(e) => {
            let detail = format!("the log does not open after the kill: {e}");
            ledger.violations.record(Kind::Other, detail);
            return Recovery { open_time: started.elapsed(), torn_tail: false };
        }
    };
    let recovery =
        Recovery { open_time: started.elapsed(), torn_tail: log.recovery_report().replay.truncated_bytes > 0 };
    let view = LogView::read(&log, &mut ledger.violations);
    ledger.check_against(&view);
    if cross_check {
        view.cross_check(&log, &mut ledger.violations);
    }
    if let Err(e) = log.close() {
        ledger.violations.record(Kind::Other, format!("close: {e}"));
    }
    recovery
}

fn fail(cycle: u64, seed: u64, run: &ChildRun, ledger: &Ledger) -> ! {
    let v = &ledger.violations;
    let tail: Vec<&String> = run.lines.iter().rev().take(20).collect();
    panic!(
        "crash loop failed at cycle {cycle} (EVIDENT_CRASH_SEED={seed}), kill plan {:?}, child \
         {:?} (reached its phase: {}):\n  lost_acked={} duplicates={} gaps={} order={} other={}\n  \
         {}\nlast child lines (newest first):\n  {}\nchild stderr:\n{}",
        run.plan,
        run.status,
        run.reached,
        v.lost_acked,
        v.duplicates,
        v.gaps,
        v.order,
        v.other,
        v.details.join("\n  "),
        tail.iter().map(|s| s.as_str()).collect::<Vec<_>>().join("\n  "),
        run.stderr
    );
}

fn percentile_ms(sorted: &[Duration], p: f64) -> f64 {
    if sorted.is_empty() {
        return 0.0;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i].as_secs_f64() * 1000.0
}

/// The crash loop: K cycles of run, kill -9, recover, check.
#[test]
fn crash_loop_kill9() {
    let cycles = env_u64("EVIDENT_CRASH_CYCLES").unwrap_or(200);
    let seed = env_u64("EVIDENT_CRASH_SEED")
        .unwrap_or_else(|| SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64));
    println!("crash_loop: seed={seed} cycles={cycles} (EVIDENT_CRASH_SEED repeats the schedule)");
    let tmp = tempfile::tempdir().expect("tempdir");
    let data = tmp.path().join("data");
    let inflight = tmp.path().join("inflight.txt");
    let mut rng = StdRng::seed_from_u64(seed);
    let mut ledger = Ledger::default();
    let mut open_times = Vec::new();
    let mut torn_tails = 0;
    let mut kills_in_open = 0;
    let started = Instant::now();
    for cycle in 0..cycles {
        let plan = KillPlan::pick(&mut rng);
        if plan.drop_checkpoint {
            let _ = std::fs::remove_file(data.join("index.checkpoint"));
        }
        write_inflight(&inflight, &ledger.pending);
        let run = run_child(&data, &inflight, cycle, rng.gen(), plan);
        ledger.begin_cycle();
        for l in &run.lines {
            ledger.apply(cycle, l);
        }
        kills_in_open += u64::from(run.killed_in_open());
        if !run.killed_by_us() {
            let detail = "the child did not live until the planned kill".to_string();
            ledger.violations.record(Kind::Other, detail);
        }
        // The ledger is checked after every kill. Re-reading the whole log through the stream
        // and partition paths too costs as much again, and the log grows every cycle, so that
        // cross-check runs every few cycles (and after the last).
        let cross_check = cycle % CROSS_CHECK_EVERY == 0 || cycle + 1 == cycles;
        let recovery = recover_and_check(&data, &mut ledger, cross_check);
        open_times.push(recovery.open_time);
        torn_tails += u64::from(recovery.torn_tail);
        if ledger.violations.total() > 0 {
            fail(cycle, seed, &run, &ledger);
        }
    }
    let segments = std::fs::read_dir(data.join("journal")).map_or(0, Iterator::count);
    open_times.sort();
    let v = &ledger.violations;
    println!(
        "crash_loop: cycles={cycles} acked={} lost_acked={} duplicates={} gaps={} \
         order_violations={} other_violations={} unacked_present={} retried={} retried_dup={} \
         refused={} torn_tails={torn_tails} kills_in_open={kills_in_open} segments={segments} recovery_ms_p50={:.1} \
         p99={:.1} max={:.1} wall_s={:.1}",
        ledger.acked_at.len(),
        v.lost_acked,
        v.duplicates,
        v.gaps,
        v.order,
        v.other,
        ledger.unacked_present.len(),
        ledger.retried,
        ledger.retried_dup,
        ledger.refused.len(),
        percentile_ms(&open_times, 0.50),
        percentile_ms(&open_times, 0.99),
        percentile_ms(&open_times, 1.0),
        started.elapsed().as_secs_f64(),
    );
    if cycles >= 20 {
        assert!(!ledger.acked_at.is_empty(), "the loop acknowledged nothing");
    }
}
