//! Goal (reliability test T4): corruption of bytes on disk is never served as data and never
//! silently drops acknowledged events. Either the store refuses to open with
//! `Error::Corrupted` naming the damaged file, or it opens and every read returns exactly the
//! events it held before the damage or `Error::Corrupted`. Garbage after the journal's clean end
//! is cut off as a torn tail with every event intact; a damaged index checkpoint is rejected and
//! the index rebuilt from the journal.
//!
//! Method: build a store on real files (three topics, 160 streams, a few thousand events in
//! batches of one to four, plus null-key and idempotent-producer Kafka batches; deterministic
//! for a seed) with 64 KiB segments so the journal spans many segment files; close it cleanly
//! and keep its bytes. Read everything once from a pristine copy as the reference (`read_all`,
//! every stream with `read_stream`, every partition with `read_partition`). Then, for each of
//! `EVIDENT_CORRUPTION_CASES` injections (default 500), restore the pristine bytes, inject ONE
//! fault chosen at random (a bit flip, a 1-32 bit burst, a zeroed aligned 4 KiB block, a
//! truncation at a random offset, garbage appended to a file's tail) into a segment's header, a
//! segment's body, or `index.checkpoint`; open the store and read everything again, comparing
//! each event (ids, values, headers, versions, offsets, sequences, timestamps) and each stored
//! batch byte for byte with the reference, then check the store still accepts an append. A
//! flip in bytes no read verifies while the checkpoint is valid (frame padding; the header of a
//! sealed segment or a topic-metadata frame, which only a full replay re-reads) is classified
//! "harmless: data intact"; a wrong event served is always a failure. The seed is random unless
//! `EVIDENT_CORRUPTION_SEED` is set, and printed with the summary line.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use bytes::Bytes;
use evident_core::batch::{BatchBuilder, RecordBatch};
use evident_core::{EventData, ExpectedVersion, NewRecord, Version};
use evident_log::clock::ManualClock;
use evident_log::storage::FsStorage;
use evident_log::{Error, Event, Log, LogConfig, StreamReadOptions, TopicConfig};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

const SEGMENT_SIZE: u64 = 64 << 10;
const TOPICS: [(&str, u32); 3] = [("accounts", 1), ("orders", 3), ("audit-log", 4)];
const STREAMS: usize = 160;
const WRITERS: usize = 8;
const EVENTS_PER_WRITER: usize = 380;
const FRAME_HEADER_LEN: usize = 40;
const SEGMENT_HEADER_LEN: usize = 64;

fn config() -> LogConfig {
    LogConfig { segment_size_max: SEGMENT_SIZE, ..LogConfig::default() }
}

/// Stream `i`: its topic and key.
fn stream(i: usize) -> (&'static str, Vec<u8>) {
    let (topic, _) = TOPICS[i % TOPICS.len()];
    (topic, format!("{topic}-entity-{i:03}").into_bytes())
}

fn payload(rng: &mut StdRng, n: usize) -> Vec<u8> {
    let pad: String = (0..rng.gen_range(8..280)).map(|_| char::from(rng.gen_range(b'a'..=b'z'))).collect();
    format!(r#"{{"n":{n},"amount":{},"memo":"{pad}"}}"#, rng.gen_range(1..100_000)).into_bytes()
}

/// Builds the store in `dir` and closes it cleanly. Deterministic for a seed (one thread
/// interleaving the writers, a manual clock), so a seed reproduces the same bytes.
fn build_store(dir: &Path, seed: u64) {
    let clock = Arc::new(ManualClock::new(1_700_000_000_000));
    let log = Log::open_with(Arc::new(FsStorage), dir, config(), clock.clone()).expect("open a fresh store");
    for (name, partitions) in TOPICS {
        log.create_topic(name, TopicConfig { partitions, ..TopicConfig::default() }).expect("create topic");
    }
    let mut rng = StdRng::seed_from_u64(seed);
    let mut versions: BTreeMap<usize, u64> = BTreeMap::new();
    let mut written = [0usize; WRITERS];
    let mut producer_seq = [0i32; 4];
    let mut n = 0;
    let mut now = 1_700_000_000_000;
    while written.iter().any(|&w| w < EVENTS_PER_WRITER) {
        let w = rng.gen_range(0..WRITERS);
        if written[w] >= EVENTS_PER_WRITER {
            continue;
        }
        now += rng.gen_range(0..50);
        clock.set(now);
        let s = w + WRITERS * rng.gen_range(0..STREAMS / WRITERS);
        let (topic, key) = stream(s);
        let count = rng.gen_range(1..=4);
        let events: Vec<EventData> = (0..count)
            .map(|_| {
                n += 1;
                EventData::json(
                    format!("w{w}-e{n}"),
                    ["Opened", "Deposited", "Withdrawn", "Noted"][n % 4],
                    payload(&mut rng, n),
                )
            })
            .collect();
        let expected = match versions.get(&s) {
            None => ExpectedVersion::NoStream,
            Some(v) => ExpectedVersion::Exact(Version(*v)),
        };
        let out = log.append_events(topic, &key, expected, &events).expect("append while building");
        versions.insert(s, out.records.last().and_then(|r| r.version).unwrap_or(0));
        written[w] += count;
        if rng.gen_ratio(1, 25) {
            // Null-key records (no stream) and idempotent-producer batches too.
            let partition = rng.gen_range(0..4u32);
            let records = rng.gen_range(1..4);
            let mut b = if rng.gen_bool(0.5) {
                let p = partition as usize;
                producer_seq[p] += records as i32;
                BatchBuilder::new().idempotent(7 + i64::from(partition), 0, producer_seq[p] - records as i32)
            } else {
                BatchBuilder::new()
            };
            for j in 0..records {
                b.push(NewRecord {
                    key: None,
                    value: Some(payload(&mut rng, n + j)),
                    headers: vec![("ce_id".into(), Some(format!("k{n}-{j}").into_bytes()))],
                    timestamp_ms: now,
                });
            }
            log.append_batch("audit-log", partition, &b.build(), None).expect("append a Kafka batch while building");
        }
    }
    log.close().expect("clean close");
}

/// Every file of a store directory, by path relative to it.
#[derive(Clone)]
struct Snapshot {
    files: BTreeMap<PathBuf, Vec<u8>>,
}

impl Snapshot {
    fn take(dir: &Path) -> Self {
        let mut files = BTreeMap::new();
        let mut todo = vec![dir.to_path_buf()];
        while let Some(d) = todo.pop() {
            for entry in std::fs::read_dir(&d).expect("ls") {
                let path = entry.expect("entry").path();
                if path.is_dir() {
                    todo.push(path);
                } else {
                    let rel = path.strip_prefix(dir).expect("inside").to_path_buf();
                    files.insert(rel, std::fs::read(&path).expect("read file"));
                }
            }
        }
        Self { files }
    }

    fn restore(&self, dir: &Path) {
        if dir.exists() {
            std::fs::remove_dir_all(dir).expect("rm -r");
        }
        for (rel, bytes) in &self.files {
            let path = dir.join(rel);
            std::fs::create_dir_all(path.parent().expect("parent")).expect("mkdir");
            std::fs::write(&path, bytes).expect("write file");
        }
    }

    fn segments(&self) -> Vec<PathBuf> {
        self.files.keys().filter(|p| p.extension().is_some_and(|e| e == "journal")).cloned().collect()
    }
}

/// What a full read of the store returned. Each read is the items it returned before an error
/// (if any) and the error.
struct Observed {
    all: (Vec<Event>, Option<Error>),
    streams: Vec<(Vec<Event>, Option<Error>)>,
    partitions: Vec<(Vec<Bytes>, Option<Error>)>,
}

fn all_partitions() -> Vec<(&'static str, u32)> {
    TOPICS.iter().flat_map(|&(t, n)| (0..n).map(move |p| (t, p))).collect()
}

fn read_everything(log: &Log) -> Observed {
    let mut all = Vec::new();
    let mut all_err = None;
    loop {
        let from = all.last().map_or(0, |e: &Event| e.sequence + 1);
        match log.read_all(from, 700) {
            Ok(page) if page.is_empty() => break,
            Ok(page) => all.extend(page),
            Err(e) => {
                all_err = Some(e);
                break;
            }
        }
    }
    let options = StreamReadOptions { limit: usize::MAX, ..StreamReadOptions::default() };
    let streams = (0..STREAMS)
        .map(|i| {
            let (topic, key) = stream(i);
            match log.read_stream(topic, &key, &options) {
                Ok(r) => (r.events, None),
                Err(e) => (Vec::new(), Some(e)),
            }
        })
        .collect();
    let partitions = all_partitions()
        .into_iter()
        .map(|(topic, p)| {
            let mut batches: Vec<Bytes> = Vec::new();
            let mut offset = 0u64;
            loop {
                match log.read_partition(topic, p, offset, 48 << 10) {
                    Ok(r) if r.batches.is_empty() => return (batches, None),
                    Ok(r) => {
                        let before = offset;
                        for b in r.batches {
                            let Ok(h) = RecordBatch::peek_header(&b) else {
                                batches.push(b);
                                return (batches, None);
                            };
                            offset = (h.base_offset + i64::from(h.last_offset_delta) + 1) as u64;
                            batches.push(b);
                        }
                        if offset >= r.high_watermark || offset <= before {
                            return (batches, None);
                        }
                    }
                    Err(e) => return (batches, Some(e)),
                }
            }
        })
        .collect();
    Observed { all: (all, all_err), streams, partitions }
}

/// How one read compared with the reference.
#[derive(Default)]
struct Verdict {
    /// Items served that differ from the pristine ones (or that the pristine store lacks).
    wrong: Vec<String>,
    /// Events missing from reads that reported success: (topic, partition, offset).
    dropped: BTreeSet<(String, u32, u64)>,
    /// Reads that reported corruption, with the file named.
    detected: Vec<PathBuf>,
    /// Reads that failed with anything but `Corrupted`.
    other_errors: Vec<String>,
}

impl Verdict {
    fn error(&mut self, what: &str, e: &Error) {
        match e {
            Error::Corrupted { file, .. } => self.detected.push(file.clone()),
            other => self.other_errors.push(format!("{what}: {other}")),
        }
    }

    fn events(&mut self, what: &str, got: &(Vec<Event>, Option<Error>), want: &[Event]) {
        let (events, err) = got;
        for (i, e) in events.iter().enumerate() {
            if want.get(i) != Some(e) {
                self.wrong.push(format!(
                    "{what}: item {i} is {:?}@{}/{} seq {} id {:?}, expected {:?}",
                    e.topic,
                    e.partition,
                    e.offset,
                    e.sequence,
                    e.id(),
                    want.get(i).map(|w| (w.sequence, w.id().map(str::to_string)))
                ));
                return;
            }
        }
        match err {
            Some(e) => self.error(what, e),
            None => {
                for w in &want[events.len().min(want.len())..] {
                    self.dropped.insert((w.topic.to_string(), w.partition, w.offset));
                }
            }
        }
    }

    fn batches(&mut self, what: &str, (topic, p): (&str, u32), got: &(Vec<Bytes>, Option<Error>), want: &[Bytes]) {
        let (batches, err) = got;
        for (i, b) in batches.iter().enumerate() {
            if want.get(i) != Some(b) {
                self.wrong.push(format!("{what}: batch {i} differs from the pristine one"));
                return;
            }
        }
        match err {
            Some(e) => self.error(what, e),
            None => {
                for w in &want[batches.len().min(want.len())..] {
                    let h = RecordBatch::peek_header(w).expect("pristine batch");
                    for o in 0..=h.last_offset_delta {
                        self.dropped.insert((topic.to_string(), p, (h.base_offset + i64::from(o)) as u64));
                    }
                }
            }
        }
    }

    fn intact(&self) -> bool {
        self.wrong.is_empty() && self.dropped.is_empty() && self.detected.is_empty() && self.other_errors.is_empty()
    }
}

fn compare(got: &Observed, want: &Observed) -> Verdict {
    let mut v = Verdict::default();
    v.events("read_all", &got.all, &want.all.0);
    for (i, (g, w)) in got.streams.iter().zip(&want.streams).enumerate() {
        let (topic, key) = stream(i);
        let what = format!("read_stream {topic}/{}", String::from_utf8_lossy(&key));
        v.events(&what, g, &w.0);
    }
    for ((g, w), tp) in got.partitions.iter().zip(&want.partitions).zip(all_partitions()) {
        v.batches(&format!("read_partition {}/{}", tp.0, tp.1), tp, g, &w.0);
    }
    v
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    BitFlip,
    Burst,
    ZeroBlock,
    Truncate,
    Garbage,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Location {
    SegmentHeader,
    SegmentBody,
    SegmentTail,
    Checkpoint,
}

struct Injection {
    kind: Kind,
    location: Location,
    file: PathBuf,
    last_segment: bool,
    /// Bytes changed in place (flips, bursts, zeroing), by offset.
    changed: Vec<usize>,
    /// Length appended (garbage).
    appended: usize,
    what: String,
}

/// Why nothing verifies a byte while the checkpoint is valid (None: something does).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Unread {
    /// Zero padding after a frame, outside its checksum.
    Padding,
    /// The header of a segment other than the last: recovery starts at the checkpoint's
    /// segment, so sealed headers are checked only by a full replay.
    SealedHeader,
    /// A topic-metadata frame: applied at replay and then only held in the index, so it is
    /// re-read (and checked) only by a full replay.
    TopicFrame,
    /// Zeros pre-allocated past a segment's data (`LogConfig::preallocate_bytes`): never read
    /// as data; in the active segment, anything but zeros there is a torn tail.
    Preallocated,
}

impl Unread {
    fn why(self) -> &'static str {
        match self {
            Self::Padding => "frame padding",
            Self::SealedHeader => "sealed segment header (checked only by a full replay)",
            Self::TopicFrame => "topic metadata frame (checked only by a full replay)",
            Self::Preallocated => "pre-allocated zeros past the data",
        }
    }
}

/// For each segment, which bytes no read verifies while the checkpoint is valid, and why.
fn unverified_bytes(snapshot: &Snapshot) -> BTreeMap<PathBuf, Vec<Option<Unread>>> {
    let segments = snapshot.segments();
    let mut out = BTreeMap::new();
    for (i, path) in segments.iter().enumerate() {
        let bytes = &snapshot.files[path];
        let mut mask = vec![None; bytes.len()];
        if i + 1 < segments.len() {
            mask[..SEGMENT_HEADER_LEN].fill(Some(Unread::SealedHeader));
        }
        let mut pos = SEGMENT_HEADER_LEN;
        while pos + FRAME_HEADER_LEN <= bytes.len() {
            if bytes[pos..pos + 4] != *b"EVF1" {
                break; // the data ends; pre-allocated zeros follow
            }
            let len = u32::from_le_bytes(bytes[pos + 8..pos + 12].try_into().expect("4 bytes")) as usize;
            let padded = len.div_ceil(8) * 8;
            if bytes[pos + 12] != 1 {
                mask[pos..pos + len].fill(Some(Unread::TopicFrame));
            }
            mask[pos + len..pos + padded].fill(Some(Unread::Padding));
            pos += padded;
        }
        assert!(bytes[pos..].iter().all(|&b| b == 0), "pristine segment {path:?} tiles into frames, then zeros");
        mask[pos..].fill(Some(Unread::Preallocated));
        out.insert(path.clone(), mask);
    }
    out
}

fn inject(rng: &mut StdRng, snapshot: &Snapshot, dir: &Path) -> Injection {
    let kind = match rng.gen_range(0..5) {
        0 => Kind::BitFlip,
        1 => Kind::Burst,
        2 => Kind::ZeroBlock,
        3 => Kind::Truncate,
        _ => Kind::Garbage,
    };
    let segments = snapshot.segments();
    let checkpoint = rng.gen_ratio(1, 4);
    // The last segment is special (recovery re-reads it); pick it more often.
    let seg_i = if rng.gen_ratio(2, 5) { segments.len() - 1 } else { rng.gen_range(0..segments.len()) };
    let (location, rel) = if checkpoint {
        (Location::Checkpoint, PathBuf::from("index.checkpoint"))
    } else if kind == Kind::Garbage {
        (Location::SegmentTail, segments[seg_i].clone())
    } else if rng.gen_ratio(1, 5) {
        (Location::SegmentHeader, segments[seg_i].clone())
    } else {
        (Location::SegmentBody, segments[seg_i].clone())
    };
    let mut bytes = snapshot.files[&rel].clone();
    let len = bytes.len();
    let offset = match location {
        Location::SegmentHeader => rng.gen_range(0..SEGMENT_HEADER_LEN),
        Location::SegmentBody => rng.gen_range(SEGMENT_HEADER_LEN..len),
        Location::SegmentTail => len,
        Location::Checkpoint => rng.gen_range(0..len),
    };
    let mut appended = 0;
    let what = match kind {
        Kind::BitFlip => {
            let bit = rng.gen_range(0..8);
            bytes[offset] ^= 1 << bit;
            format!("flip bit {bit} of byte {offset}")
        }
        Kind::Burst => {
            // A burst of `n` bits: its first and last bits flip, those between at random.
            let n = rng.gen_range(1..=32usize);
            let start = offset * 8 + rng.gen_range(0..8);
            let start = start.min(len * 8 - n);
            for b in 0..n {
                if b == 0 || b == n - 1 || rng.gen_bool(0.5) {
                    let at = start + b;
                    bytes[at / 8] ^= 1 << (at % 8);
                }
            }
            format!("{n}-bit burst at bit {start}")
        }
        Kind::ZeroBlock => {
            let block = offset / 4096 * 4096;
            let end = (block + 4096).min(len);
            bytes[block..end].fill(0);
            format!("zero 4 KiB block at {block} (to {end})")
        }
        Kind::Truncate => {
            bytes.truncate(offset);
            format!("truncate to {offset} of {len} bytes")
        }
        Kind::Garbage => {
            appended = rng.gen_range(1..=4096);
            bytes.extend((0..appended).map(|_| rng.gen::<u8>()));
            format!("append {appended} garbage bytes to {len}")
        }
    };
    let original = &snapshot.files[&rel];
    let changed = if bytes.len() == original.len() {
        (0..len).filter(|&i| bytes[i] != original[i]).collect()
    } else {
        Vec::new()
    };
    std::fs::write(dir.join(&rel), &bytes).expect("write corrupted file");
    Injection {
        kind,
        location,
        last_segment: location != Location::Checkpoint && seg_i + 1 == segments.len(),
        file: rel,
        changed,
        appended,
        what,
    }
}

enum Outcome {
    DetectedAtOpen,
    DetectedAtRead,
    TailTruncated,
    Rebuilt,
    Harmless(&'static str),
    Failure(String),
}

fn names(file: &Path, injected: &Path) -> bool {
    file.ends_with(injected)
}

fn run_case(
    rng: &mut StdRng,
    snapshot: &Snapshot,
    reference: &Observed,
    unverified: &BTreeMap<PathBuf, Vec<Option<Unread>>>,
    dir: &Path,
) -> (Injection, Outcome, usize, usize) {
    snapshot.restore(dir);
    let inj = inject(rng, snapshot, dir);
    let log = match Log::open(dir, config()) {
        Err(Error::Corrupted { file, offset, what }) => {
            let outcome = if names(&file, &inj.file) {
                Outcome::DetectedAtOpen
            } else {
                Outcome::Failure(format!(
                    "open refused, but named {} (at {offset}: {what}) instead of the damaged file",
                    file.display()
                ))
            };
            return (inj, outcome, 0, 0);
        }
        Err(e) => return (inj, Outcome::Failure(format!("open failed with {e}")), 0, 0),
        Ok(log) => log,
    };
    let report = log.recovery_report().clone();
    let verdict = compare(&read_everything(&log), reference);
    let mut failures = Vec::new();
    if !verdict.wrong.is_empty() {
        failures.push(format!("served wrong data: {}", verdict.wrong.join("; ")));
    }
    if !verdict.dropped.is_empty() {
        failures
            .push(format!("opened (report {report:?}) and silently returned {} fewer events", verdict.dropped.len()));
    }
    if !verdict.other_errors.is_empty() {
        failures.push(format!("reads failed with errors other than Corrupted: {}", verdict.other_errors.join("; ")));
    }
    if let Some(file) = verdict.detected.iter().find(|f| !names(f, &inj.file)) {
        failures.push(format!("a read reported corruption in {} instead of the damaged file", file.display()));
    }
    if inj.location == Location::Checkpoint && report.checkpoint_rejected.is_none() {
        failures.push("the damaged checkpoint was not rejected".into());
    }
    if inj.location == Location::SegmentTail && inj.last_segment && verdict.intact() {
        // Everything after the clean end goes: the pre-allocated zeros and the garbage.
        let zeros = unverified
            .get(&inj.file)
            .map_or(0, |mask| mask.iter().filter(|m| matches!(m, Some(Unread::Preallocated))).count());
        let cut = report.replay.truncated_bytes;
        if cut != (inj.appended + zeros) as u64 {
            failures.push(format!(
                "garbage of {} bytes after the clean end (and {zeros} pre-allocated zeros), but {cut} bytes truncated",
                inj.appended
            ));
        }
    }
    // The store that opened must accept writes.
    if let Err(e) = log.append_events(
        "accounts",
        b"after-the-damage",
        ExpectedVersion::Any,
        &[EventData::json("after-1", "Probe", b"{}".to_vec())],
    ) {
        failures.push(format!("the opened store refuses an append: {e}"));
    }
    if let Err(e) = log.close() {
        failures.push(format!("close failed: {e}"));
    }
    let wrong = verdict.wrong.len();
    let dropped = verdict.dropped.len();
    let outcome = if !failures.is_empty() {
        Outcome::Failure(failures.join(" | "))
    } else if !verdict.detected.is_empty() {
        Outcome::DetectedAtRead
    } else if report.replay.truncated_bytes > 0 {
        Outcome::TailTruncated
    } else if report.checkpoint_rejected.is_some() {
        Outcome::Rebuilt
    } else {
        let reasons: Vec<Option<Unread>> = match unverified.get(&inj.file) {
            Some(mask) => inj.changed.iter().map(|&i| mask[i]).collect(),
            None => vec![None],
        };
        match reasons.first() {
            Some(Some(first)) if reasons.iter().all(Option::is_some) => Outcome::Harmless(first.why()),
            _ => Outcome::Harmless("other: data intact"),
        }
    };
    (inj, outcome, wrong, dropped)
}

#[test]
fn corruption_campaign() {
    let cases: usize = std::env::var("EVIDENT_CORRUPTION_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(500);
    let seed: u64 = std::env::var("EVIDENT_CORRUPTION_SEED")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| rand::thread_rng().gen());
    let started = std::time::Instant::now();
    let root = tempfile::tempdir().expect("tmp");
    let pristine_dir = root.path().join("pristine");
    build_store(&pristine_dir, seed);
    let snapshot = Snapshot::take(&pristine_dir);
    let segments = snapshot.segments().len();
    assert!(segments >= 5, "the store spans several segments: {segments}");
    let work = root.path().join("work");
    snapshot.restore(&work);
    let reference = {
        let log = Log::open(&work, config()).expect("open the pristine copy");
        assert!(log.recovery_report().checkpoint_loaded);
        let r = read_everything(&log);
        log.close().expect("close");
        r
    };
    assert!(reference.all.1.is_none(), "pristine read_all fails");
    assert!(reference.streams.iter().all(|s| s.1.is_none()));
    assert!(reference.partitions.iter().all(|p| p.1.is_none()));
    let events = reference.all.0.len();
    assert!(events > 3000, "{events} events");
    let unverified = unverified_bytes(&snapshot);

    let mut rng = StdRng::seed_from_u64(seed);
    let mut by_kind: BTreeMap<Kind, usize> = BTreeMap::new();
    let mut by_location: BTreeMap<Location, usize> = BTreeMap::new();
    let mut by_outcome: BTreeMap<&'static str, usize> = BTreeMap::new();
    let mut harmless: BTreeMap<&'static str, usize> = BTreeMap::new();
    let (mut served, mut dropped) = (0usize, 0usize);
    let mut failures = Vec::new();
    for case in 0..cases {
        let (inj, outcome, wrong, lost) = run_case(&mut rng, &snapshot, &reference, &unverified, &work);
        *by_kind.entry(inj.kind).or_default() += 1;
        *by_location.entry(inj.location).or_default() += 1;
        served += wrong;
        dropped += lost;
        let name = match outcome {
            Outcome::DetectedAtOpen => "detected_at_open",
            Outcome::DetectedAtRead => "detected_at_read",
            Outcome::TailTruncated => "tail_truncated",
            Outcome::Rebuilt => "checkpoint_rebuilt",
            Outcome::Harmless(why) => {
                *harmless.entry(why).or_default() += 1;
                "harmless"
            }
            Outcome::Failure(why) => {
                failures.push(format!(
                    "case {case}: {:?} in {:?} of {}{} ({}): {why}",
                    inj.kind,
                    inj.location,
                    inj.file.display(),
                    if inj.last_segment { " (last segment)" } else { "" },
                    inj.what
                ));
                "failed"
            }
        };
        *by_outcome.entry(name).or_default() += 1;
    }
    let count = |k: &str| by_outcome.get(k).copied().unwrap_or(0);
    println!(
        "T4 corruption: seed={seed} segments={segments} events={events} injections={cases} \
         by_kind={by_kind:?} by_location={by_location:?} detected={} (open={} read={}) \
         tail_truncated={} rebuilds={} harmless={} {harmless:?} corrupt_events_served={served} \
         acked_events_silently_dropped={dropped} failures={} elapsed={:.1}s",
        count("detected_at_open") + count("detected_at_read"),
        count("detected_at_open"),
        count("detected_at_read"),
        count("tail_truncated"),
        count("checkpoint_rebuilt"),
        count("harmless"),
        failures.len(),
        started.elapsed().as_secs_f64()
    );
    assert!(
        failures.is_empty(),
        "{} of {cases} injections failed (seed {seed}; rerun with EVIDENT_CORRUPTION_SEED={seed}):\n{}",
        failures.len(),
        failures.iter().take(25).cloned().collect::<Vec<_>>().join("\n")
    );
}
