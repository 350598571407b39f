//! Goal (issue 11, reliability probe rows 7 and 1a): the log tells the truth about itself.
//! `Log::health` says `ok` for a sound store, `degraded` with the position when a read met
//! damaged bytes (and the store keeps serving the rest, never the damage), `degraded` while the
//! background checkpoint keeps failing, and `poisoned` after a failed sync. Recovery that cuts a
//! torn tail says so at `warn` with the bytes and positions cut, and so does a rebuilt index
//! checkpoint; both are kept in the recovery report `/health` shows.
//!
//! Method: damage is a byte flipped in a segment of real files after a clean close (as
//! `corruption.rs` injects it); a failed sync is the simulated disk's fault switch; a failing
//! checkpoint is the checkpoint's temporary file refused with EMFILE through
//! `common::HookedStorage`; the torn tail is a flipped byte in the last frames written under
//! `fsync = never` and abandoned with `halt` (as `kill -9` would), so no later frame proves them
//! durable. Log lines are captured by a `tracing` subscriber writing to a buffer, installed for
//! the thread that opens the log.

use std::io;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use evident_core::{EventData, ExpectedVersion};
use evident_log::clock::ManualClock;
use evident_log::storage::{FsStorage, SimFaults, SimStorage, Storage};
use evident_log::{Error, FsyncPolicy, HealthStatus, Log, LogConfig, ReasonCode, StreamReadOptions, TopicConfig};

mod common;
use common::HookedStorage;

const NOW_MS: i64 = 1_700_000_000_000;

fn event(id: &str, marker: &str) -> EventData {
    EventData::json(id, "Deposited", format!(r#"{{"marker":"{marker}","pad":"{}"}}"#, "p".repeat(64)))
}

fn open_fs(dir: &Path, config: LogConfig, clock: Arc<ManualClock>) -> Log {
    Log::open_with(Arc::new(FsStorage), dir, config, clock).expect("open")
}

/// The journal's segment files, in order.
fn segments(dir: &Path) -> Vec<PathBuf> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(dir.join("journal"))
        .expect("journal dir")
        .map(|e| e.expect("entry").path())
        .filter(|p| p.extension().is_some_and(|e| e == "journal"))
        .collect();
    files.sort();
    files
}

/// Flips one byte inside the first occurrence of `needle` in the journal; returns the file
/// and the byte's position in it.
fn flip_inside(dir: &Path, needle: &[u8]) -> (PathBuf, u64) {
    for file in segments(dir) {
        let mut bytes = std::fs::read(&file).expect("read segment");
        if let Some(at) = bytes.windows(needle.len()).position(|w| w == needle) {
            let at = at + needle.len() / 2;
            bytes[at] ^= 0x20;
            std::fs::write(&file, &bytes).expect("write segment");
            return (file, at as u64);
        }
    }
    panic!("{} not found in the journal", String::from_utf8_lossy(needle));
}

/// A `tracing` subscriber that writes plain lines to a shared buffer.
#[derive(Clone, Default)]
struct Captured(Arc<Mutex<Vec<u8>>>);

impl io::Write for Captured {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.lock().expect("buffer").extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Captured {
    /// Runs `f` with this buffer receiving every event at `info` and above; returns what `f`
    /// returned and the lines written.
    fn during<T>(f: impl FnOnce() -> T) -> (T, String) {
        let buffer = Self::default();
        let writer = buffer.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_max_level(tracing::Level::INFO)
            .with_ansi(false)
            .with_writer(move || writer.clone())
            .finish();
        let out = tracing::subscriber::with_default(subscriber, f);
        let text = String::from_utf8_lossy(&buffer.0.lock().expect("buffer")).into_owned();
        (out, text)
    }
}

#[test]
fn a_sound_store_is_ok_with_nothing_to_report() {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = open_fs(dir.path(), LogConfig::default(), Arc::new(ManualClock::new(NOW_MS)));
    log.create_topic("accounts", TopicConfig::default()).expect("topic");
    log.append_events("accounts", b"a", ExpectedVersion::Any, &[event("e1", "m1")]).expect("append");
    let health = log.health();
    assert_eq!(health.status, HealthStatus::Ok, "{health:?}");
    assert!(health.reasons.is_empty() && health.damage.reads == 0 && health.damage.sites.is_empty());
    assert_eq!(health.recovery.truncation, None);
    assert_eq!(health.recovery.checkpoint_rebuilt, None, "a new store rebuilds nothing");
}

#[test]
fn a_damaged_frame_is_refused_reported_with_its_position_and_the_rest_is_served() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(NOW_MS));
    {
        let log = open_fs(dir.path(), LogConfig::default(), clock.clone());
        log.create_topic("accounts", TopicConfig::default()).expect("topic");
        log.append_events("accounts", b"intact", ExpectedVersion::Any, &[event("e1", "intact-one")]).expect("a");
        log.append_events("accounts", b"damaged", ExpectedVersion::Any, &[event("e2", "DAMAGED-HERE")]).expect("b");
        log.append_events("accounts", b"intact", ExpectedVersion::Any, &[event("e3", "intact-two")]).expect("c");
        log.close().expect("close");
    }
    let (file, flipped) = flip_inside(dir.path(), b"DAMAGED-HERE");

    clock.set(NOW_MS + 5_000);
    let log = open_fs(dir.path(), LogConfig::default(), clock.clone());
    assert_eq!(log.health().status, HealthStatus::Ok, "nothing has read the damage yet");

    let options = StreamReadOptions::default();
    let intact = log.read_stream("accounts", b"intact", &options).expect("the intact stream is served");
    assert_eq!(intact.events.len(), 2);
    let err = log.read_stream("accounts", b"damaged", &options).expect_err("the damaged event is never served");
    assert!(matches!(err, Error::Corrupted { .. }), "{err}");
    clock.set(NOW_MS + 9_000);
    // The same damage met again counts as a read, not as a new position.
    log.read_stream("accounts", b"damaged", &options).expect_err("still refused");
    // A read by partition meets the same frame: the same position, one more read.
    log.read_partition_events("accounts", 0, 0, 100).expect_err("the partition read is refused");

    let health = log.health();
    assert_eq!(health.status, HealthStatus::Degraded, "{health:?}");
    assert_eq!(health.reasons.len(), 1);
    assert_eq!(health.reasons[0].code, ReasonCode::Damaged);
    assert!(health.reasons[0].message.contains(&file.display().to_string()), "{}", health.reasons[0].message);
    assert_eq!(health.damage.reads, 3);
    assert_eq!(log.damaged_reads(), 3);
    assert_eq!(health.damage.sites.len(), 1, "{:?}", health.damage.sites);
    let site = &health.damage.sites[0];
    assert_eq!(site.file, file);
    assert!(site.byte < flipped && flipped - site.byte < 256, "frame at {} flip at {flipped}", site.byte);
    assert_eq!(site.topic.as_ref().map(|t| t.as_str()), Some("accounts"));
    assert_eq!((site.partition, site.offset, site.sequence), (Some(0), Some(1), Some(1)));
    assert_eq!((site.first_seen_ms, site.last_seen_ms, site.reads), (NOW_MS + 5_000, NOW_MS + 9_000, 3));
    assert!(site.what.contains("checksum"), "{}", site.what);

    // Still serving: intact reads and appends work, and they do not clear the report.
    log.append_events("accounts", b"intact", ExpectedVersion::Any, &[event("e4", "after")]).expect("append");
    assert_eq!(log.read_stream("accounts", b"intact", &options).expect("read").events.len(), 3);
    assert_eq!(log.health().status, HealthStatus::Degraded);
}

#[test]
fn the_damage_registry_is_bounded() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(NOW_MS));
    let streams = evident_log::DAMAGE_SITES_MAX + 4;
    {
        let log = open_fs(dir.path(), LogConfig::default(), clock.clone());
        log.create_topic("t", TopicConfig::default()).expect("topic");
        for i in 0..streams {
            let key = format!("k{i}");
            log.append_events("t", key.as_bytes(), ExpectedVersion::Any, &[event(&key, &format!("MARK-{i:03}"))])
                .expect("append");
        }
        log.close().expect("close");
    }
    for i in 0..streams {
        flip_inside(dir.path(), format!("MARK-{i:03}").as_bytes());
    }
    let log = open_fs(dir.path(), LogConfig::default(), clock);
    for i in 0..streams {
        log.read_stream("t", format!("k{i}").as_bytes(), &StreamReadOptions::default()).expect_err("damaged");
    }
    let health = log.health();
    assert_eq!(health.damage.sites.len(), evident_log::DAMAGE_SITES_MAX);
    assert_eq!(health.damage.reads, streams as u64);
    assert_eq!(health.damage.unlisted_reads, 4);
    assert!(health.reasons[0].message.contains("or more"), "{}", health.reasons[0].message);
}

#[test]
fn a_failed_sync_poisons_and_health_says_so() {
    let sim = SimStorage::new();
    let log = Log::open_with(
        Arc::new(sim.clone()),
        Path::new("/data"),
        LogConfig::default(),
        Arc::new(ManualClock::new(NOW_MS)),
    )
    .expect("open");
    log.create_topic("t", TopicConfig::default()).expect("topic");
    sim.set_faults(SimFaults { fail_syncs: true, ..SimFaults::default() });
    log.append_events("t", b"k", ExpectedVersion::Any, &[event("e1", "m")]).expect_err("the sync fails");
    let health = log.health();
    assert_eq!(health.status, HealthStatus::Poisoned, "{health:?}");
    assert_eq!(health.reasons[0].code, ReasonCode::Poisoned);
    assert!(health.reasons[0].message.contains("sync"), "{}", health.reasons[0].message);
    log.halt();
}

#[test]
fn a_failing_background_checkpoint_degrades_until_one_is_written() {
    let sim = SimStorage::new();
    let refuse = Arc::new(AtomicBool::new(true));
    let refusing = refuse.clone();
    let storage: Arc<dyn Storage> = HookedStorage::shared(sim, move |sim, path, create| {
        let tmp = path.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".checkpoint.tmp"));
        if tmp && refusing.load(Ordering::SeqCst) {
            return Err(io::Error::from_raw_os_error(24)); // EMFILE
        }
        sim.open(path, create)
    });
    let config = LogConfig { checkpoint_interval_bytes: 4 << 10, ..LogConfig::default() };
    refuse.store(false, Ordering::SeqCst);
    let log = Log::open_with(storage, Path::new("/data"), config, Arc::new(ManualClock::new(NOW_MS))).expect("open");
    log.create_topic("t", TopicConfig::default()).expect("topic");
    refuse.store(true, Ordering::SeqCst);
    let mut i = 0;
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    // Appends until the background checkpoint thread has reported its failure.
    while log.checkpoint_error().is_none() {
        assert!(std::time::Instant::now() < deadline, "no background checkpoint was tried");
        log.append_events("t", b"k", ExpectedVersion::Any, &[event(&format!("e{i}"), "x")]).expect("append");
        i += 1;
    }
    let health = log.health();
    assert_eq!(health.status, HealthStatus::Degraded, "{health:?}");
    assert_eq!(health.reasons.len(), 1);
    assert_eq!(health.reasons[0].code, ReasonCode::CheckpointFailing);
    assert!(health.reasons[0].message.contains("Too many open files"), "{}", health.reasons[0].message);
    refuse.store(false, Ordering::SeqCst);
    log.close().expect("close writes the checkpoint");
}

#[test]
fn recovery_warns_of_every_torn_tail_it_cuts_and_reports_it() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(NOW_MS));
    // Under `never` the durable position does not move, so no frame written after the open
    // proves an earlier one durable: a flip in one of them is a torn tail, as a flip in the
    // last acknowledged round is under `always` (the probe's 500 silently cut events).
    let config = LogConfig { fsync: FsyncPolicy::Never, ..LogConfig::default() };
    {
        let log = open_fs(dir.path(), LogConfig::default(), clock.clone());
        log.create_topic("t", TopicConfig::default()).expect("topic");
        log.close().expect("close");
    }
    {
        let log = open_fs(dir.path(), config.clone(), clock.clone());
        for i in 0..10 {
            log.append_events("t", b"k", ExpectedVersion::Any, &[event(&format!("e{i}"), &format!("ROUND-{i}"))])
                .expect("append");
        }
        log.halt();
    }
    let (file, flipped) = flip_inside(dir.path(), b"ROUND-4");
    let before = std::fs::metadata(&file).expect("segment").len();

    let (log, lines) = Captured::during(|| open_fs(dir.path(), LogConfig::default(), clock));
    let cut = log.recovery_report().replay.truncation.clone().expect("a torn tail was cut");
    assert_eq!(cut.file, file);
    assert!(cut.from_byte < flipped, "the cut starts at the damaged frame");
    assert_eq!(cut.to_byte, before);
    assert_eq!(cut.bytes, before - cut.from_byte);
    assert_eq!(cut.intact_frames_cut, 5, "the five intact frames after the damaged one went with it");
    assert!(cut.intact_bytes_cut > 5 * 40 && cut.intact_bytes_cut < cut.bytes, "{cut:?}");
    assert!(cut.segments_removed.is_empty());
    assert_eq!(log.read_stream("t", b"k", &StreamReadOptions::default()).expect("read").events.len(), 4);

    let warn = lines.lines().find(|l| l.contains("torn tail")).unwrap_or_else(|| panic!("no warning in:\n{lines}"));
    assert!(warn.contains("WARN"), "{warn}");
    for field in [
        format!("file={}", file.display()),
        format!("from_byte={}", cut.from_byte),
        format!("to_byte={before}"),
        format!("bytes={}", cut.bytes),
        "intact_frames_cut=5".to_string(),
    ] {
        assert!(warn.contains(&field), "{field} missing from: {warn}");
    }
    // The tail replayed past the checkpoint is reported as a stale checkpoint, at warn too.
    assert!(lines.lines().any(|l| l.contains("WARN") && l.contains("behind the journal")), "{lines}");
    let health = log.health();
    assert_eq!(health.status, HealthStatus::Ok, "a cut is information, not a degradation");
    assert_eq!(health.recovery.truncation, Some(cut));
}

#[test]
fn a_rebuilt_checkpoint_is_logged_at_warn_with_why() {
    let dir = tempfile::tempdir().expect("tempdir");
    let clock = Arc::new(ManualClock::new(NOW_MS));
    {
        let log = open_fs(dir.path(), LogConfig::default(), clock.clone());
        log.create_topic("t", TopicConfig::default()).expect("topic");
        log.append_events("t", b"k", ExpectedVersion::Any, &[event("e1", "m")]).expect("append");
        log.close().expect("close");
    }
    let checkpoint = dir.path().join("index.checkpoint");
    let (log, lines) = Captured::during(|| open_fs(dir.path(), LogConfig::default(), clock.clone()));
    assert_eq!(log.recovery_report().checkpoint_rebuilt(), None, "a clean open rebuilds nothing");
    assert!(!lines.contains("WARN"), "{lines}");
    drop(log);

    let mut bytes = std::fs::read(&checkpoint).expect("checkpoint");
    let middle = bytes.len() / 2;
    bytes[middle] ^= 0xff;
    std::fs::write(&checkpoint, bytes).expect("damage the checkpoint");
    let (log, lines) = Captured::during(|| open_fs(dir.path(), LogConfig::default(), clock.clone()));
    let why = log.recovery_report().checkpoint_rebuilt().expect("rebuilt");
    assert!(why.contains("damaged"), "{why}");
    assert!(lines.lines().any(|l| l.contains("WARN") && l.contains("checkpoint is damaged")), "{lines}");
    assert_eq!(log.health().recovery.checkpoint_rebuilt, Some(why));
    drop(log);

    std::fs::remove_file(&checkpoint).expect("delete the checkpoint");
    let (log, lines) = Captured::during(|| open_fs(dir.path(), LogConfig::default(), clock));
    assert!(lines.lines().any(|l| l.contains("WARN") && l.contains("no index checkpoint")), "{lines}");
    assert_eq!(log.read_stream("t", b"k", &StreamReadOptions::default()).expect("read").events.len(), 1);
}
