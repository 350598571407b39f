//! Goal (issue 11: background writes never poison): a background index checkpoint that cannot
//! be written (the process out of file descriptors, as an attacker holding idle connections
//! made it in the reliability probe, or a full disk) is reported and retried, and the log keeps
//! accepting and acknowledging appends; a checkpoint only shortens recovery, so its failure
//! loses nothing. Once the fault is gone, `close` writes the checkpoint and the store reopens
//! from it with every acknowledged event.
//!
//! Method: the log runs on `SimStorage` behind a hook (`common::HookedStorage`) that answers EMFILE when the
//! checkpoint's temporary file is opened while `refuse` is set; the checkpoint interval is
//! small so that ordinary appends trigger background checkpoints.

use std::io;
use std::path::Path;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use evident_core::{EventData, ExpectedVersion};
use evident_log::clock::SystemClock;
use evident_log::storage::{SimStorage, Storage};
use evident_log::{Log, LogConfig, TopicConfig};

mod common;
use common::HookedStorage;

const DIR: &str = "/data";
const PATIENCE: Duration = Duration::from_secs(30);

/// The checkpoint's temporary file refused with EMFILE while `refuse` is set.
#[derive(Clone, Default)]
struct NoDescriptors {
    sim: SimStorage,
    refuse: Arc<AtomicBool>,
    refused: Arc<AtomicU64>,
}

impl NoDescriptors {
    fn storage(&self) -> Arc<dyn Storage> {
        let (refuse, refused) = (self.refuse.clone(), self.refused.clone());
        HookedStorage::shared(self.sim.clone(), move |sim, path, create| {
            let checkpoint_tmp = path.file_name().is_some_and(|n| n.to_string_lossy().ends_with(".checkpoint.tmp"));
            if checkpoint_tmp && refuse.load(Ordering::SeqCst) {
                refused.fetch_add(1, Ordering::SeqCst);
                return Err(io::Error::from_raw_os_error(24)); // EMFILE
            }
            sim.open(path, create)
        })
    }
}

fn config() -> LogConfig {
    LogConfig { checkpoint_interval_bytes: 4 << 10, ..LogConfig::default() }
}

fn open(storage: &NoDescriptors) -> Log {
    Log::open_with(storage.storage(), Path::new(DIR), config(), Arc::new(SystemClock)).expect("open")
}

fn event(i: usize) -> EventData {
    EventData::json(format!("e{i}"), "Deposited", format!(r#"{{"amount":{i},"note":"{}"}}"#, "x".repeat(200)))
}

#[test]
fn a_checkpoint_that_cannot_be_written_is_reported_and_retried_never_a_poison() {
    let storage = NoDescriptors::default();
    let log = open(&storage);
    log.create_topic("t", TopicConfig::default()).expect("topic");

    storage.refuse.store(true, Ordering::SeqCst);
    let mut appended = 0;
    let deadline = Instant::now() + PATIENCE;
    // Appends past the interval until a background checkpoint has been refused.
    while storage.refused.load(Ordering::SeqCst) == 0 || log.checkpoint_error().is_none() {
        assert!(Instant::now() < deadline, "no background checkpoint was tried");
        log.append_events("t", b"k", ExpectedVersion::Any, &[event(appended)])
            .expect("an append while checkpoints fail");
        appended += 1;
    }
    assert!(log.poisoned().is_none(), "a failed checkpoint poisoned the log: {:?}", log.poisoned());
    let why = log.checkpoint_error().expect("the failure is reported");
    assert!(why.contains("checkpoint") && why.contains("Too many open files"), "{why}");
    assert!(log.stats().checkpoint_failures >= 1);
    // Appends keep being acknowledged while the checkpoint keeps failing.
    for _ in 0..50 {
        log.append_events("t", b"k", ExpectedVersion::Any, &[event(appended)]).expect("append after the failure");
        appended += 1;
    }
    assert!(log.poisoned().is_none());

    // The fault goes away: closing writes the checkpoint the failed one did not.
    storage.refuse.store(false, Ordering::SeqCst);
    log.close().expect("close writes the checkpoint");
    drop(log);
    let log = open(&storage);
    assert!(log.recovery_report().checkpoint_loaded, "the store reopened without a checkpoint");
    assert_eq!(log.recovery_report().replay.frames, 0, "the final checkpoint does not cover the journal");
    let read = log.read_stream("t", b"k", &evident_log::StreamReadOptions { limit: 10_000, ..Default::default() });
    assert_eq!(read.expect("read").events.len(), appended, "acknowledged events after the reopen");
    assert!(log.checkpoint_error().is_none());
}
