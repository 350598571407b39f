//! Goal: an append awaited as a future (`PendingAppend` is `IntoFuture`, what the HTTP server
//! uses so that no thread waits per append) is acknowledged exactly as `PendingAppend::wait`
//! is: only after the sync that covers it returns, woken by the commit thread itself, and with
//! the error when that sync fails. The commit hook sees every commit round's visible sequence.
//! And who runs a round: an appender that waits on an idle log runs it on its own thread;
//! an append arriving while that round is in flight waits for it and goes in the next round;
//! an append whose caller drops it unwaited is still committed.
//!
//! Method: the log runs on `SimStorage` behind a wrapper whose `sync_data` can be held shut,
//! so the test decides when the commit round's sync returns; the future is polled by hand with
//! a waker that records when it was woken and how many syncs had completed by then.

use std::future::{Future, IntoFuture};
use std::io;
use std::path::Path;
use std::pin::pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::task::{Context, Poll, Wake, Waker};
use std::thread::Thread;
use std::time::{Duration, Instant};

use evident_core::{EventData, ExpectedVersion};
use evident_log::clock::SystemClock;
use evident_log::storage::{SimFaults, SimStorage, Storage, StorageFile};
use evident_log::{Error, Log, LogConfig, TopicConfig};

mod common;
use common::HookedStorage;

const DIR: &str = "/data";
/// Bounds every wait for the commit thread, so a regression fails instead of hanging.
const PATIENCE: Duration = Duration::from_secs(30);

/// Syncs that can be held: while `held` is true, `sync_data` waits.
#[derive(Default)]
struct SyncGate {
    held: Mutex<bool>,
    opened: Condvar,
    /// Syncs that returned.
    done: AtomicU64,
    /// The name of the thread of each sync, in order.
    syncers: Mutex<Vec<String>>,
}

#[derive(Clone)]
struct HeldSyncs {
    sim: SimStorage,
    gate: Arc<SyncGate>,
}

impl HeldSyncs {
    /// The disk, its files' syncs going through the gate.
    fn storage(&self) -> Arc<dyn Storage> {
        let gate = self.gate.clone();
        HookedStorage::shared(self.sim.clone(), move |sim, path, create| {
            Ok(Arc::new(HeldFile { inner: sim.open(path, create)?, gate: gate.clone() }) as Arc<dyn StorageFile>)
        })
    }

    fn hold(&self, held: bool) {
        *self.gate.held.lock().expect("gate") = held;
        self.gate.opened.notify_all();
    }
}

struct HeldFile {
    inner: Arc<dyn StorageFile>,
    gate: Arc<SyncGate>,
}

impl StorageFile for HeldFile {
    fn read_exact_at(&self, buf: &mut [u8], offset: u64) -> io::Result<()> {
        self.inner.read_exact_at(buf, offset)
    }
    fn write_all_at(&self, buf: &[u8], offset: u64) -> io::Result<()> {
        self.inner.write_all_at(buf, offset)
    }
    fn len(&self) -> io::Result<u64> {
        self.inner.len()
    }
    fn set_len(&self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }
    fn sync_data(&self) -> io::Result<()> {
        let name = std::thread::current().name().unwrap_or("unnamed").to_string();
        self.gate.syncers.lock().expect("syncers").push(name);
        let mut held = self.gate.held.lock().expect("gate");
        while *held {
            held = self.gate.opened.wait(held).expect("gate");
        }
        drop(held);
        let synced = self.inner.sync_data();
        self.gate.done.fetch_add(1, Ordering::SeqCst);
        synced
    }
}

/// A waker that unparks the test thread and records, at each wake, how many syncs had
/// returned.
struct Recorder {
    thread: Thread,
    gate: Arc<SyncGate>,
    wakes: Mutex<Vec<u64>>,
}

impl Wake for Recorder {
    fn wake(self: Arc<Self>) {
        self.wake_by_ref();
    }
    fn wake_by_ref(self: &Arc<Self>) {
        self.wakes.lock().expect("wakes").push(self.gate.done.load(Ordering::SeqCst));
        self.thread.unpark();
    }
}

impl Recorder {
    fn woken(&self) -> Vec<u64> {
        self.wakes.lock().expect("wakes").clone()
    }

    /// Parks until woken at least once (bounded by [`PATIENCE`]).
    fn wait_for_wake(&self) {
        let deadline = Instant::now() + PATIENCE;
        while self.woken().is_empty() {
            let left = deadline.checked_duration_since(Instant::now()).expect("the commit thread never woke the task");
            std::thread::park_timeout(left);
        }
    }
}

fn event(id: &str) -> EventData {
    EventData::json(id, "Deposited", br#"{"amount":1}"#.to_vec())
}

fn open(storage: Arc<dyn Storage>) -> Log {
    let log = Log::open_with(storage, Path::new(DIR), LogConfig::default(), Arc::new(SystemClock)).expect("open");
    log.create_topic("t", TopicConfig::default()).expect("topic");
    log
}

#[test]
fn an_awaited_append_is_woken_by_the_commit_thread_only_after_its_sync() {
    let storage = HeldSyncs { sim: SimStorage::new(), gate: Arc::default() };
    let log = open(storage.storage());
    let seen = Arc::new(Mutex::new(Vec::new()));
    let hooked = seen.clone();
    log.set_commit_hook(Some(Box::new(move |visible| hooked.lock().unwrap_or_else(|e| e.into_inner()).push(visible))));

    storage.hold(true);
    let pending = log.append_events_deferred("t", b"k", ExpectedVersion::NoStream, &[event("e1")]).expect("append");
    let sequence = pending.outcome().records[0].sequence;
    let syncs_before = storage.gate.done.load(Ordering::SeqCst);
    let recorder =
        Arc::new(Recorder { thread: std::thread::current(), gate: storage.gate.clone(), wakes: Mutex::default() });
    let waker = Waker::from(recorder.clone());
    let mut cx = Context::from_waker(&waker);
    let mut acknowledgement = pin!(pending.into_future());
    // The sync is held: the append is positioned but not durable, so not acknowledged.
    assert!(acknowledgement.as_mut().poll(&mut cx).is_pending());
    assert!(acknowledgement.as_mut().poll(&mut cx).is_pending(), "polling again re-registers, nothing more");
    assert!(seen.lock().expect("seen").iter().all(|&v| v <= sequence), "announced before its sync");

    storage.hold(false);
    recorder.wait_for_wake();
    let woken = recorder.woken();
    assert!(woken[0] > syncs_before, "woken before the sync returned: {woken:?} (syncs before {syncs_before})");
    let Poll::Ready(outcome) = acknowledgement.as_mut().poll(&mut cx) else {
        panic!("woken but not ready");
    };
    let outcome = outcome.expect("acknowledged");
    assert_eq!((outcome.records[0].sequence, outcome.records[0].version), (sequence, Some(0)));
    let announced = seen.lock().expect("seen").clone();
    assert!(announced.contains(&(sequence + 1)), "the hook did not see the round before the wake: {announced:?}");

    // An append that is visible by the time it is awaited is ready at the first poll.
    let pending = log.append_events_deferred("t", b"k", ExpectedVersion::Any, &[event("e2")]).expect("append");
    let after = pending.outcome().records[0].sequence + 1;
    assert!(log.wait_for_sequence(after - 1, PATIENCE).expect("wait"));
    let mut acknowledgement = pin!(pending.into_future());
    assert!(matches!(acknowledgement.as_mut().poll(&mut cx), Poll::Ready(Ok(_))));

    log.set_commit_hook(None);
    log.close().expect("close");
}

#[test]
fn an_awaited_append_fails_when_its_sync_fails() {
    let sim = SimStorage::new();
    let log = open(Arc::new(sim.clone()));
    let seen = Arc::new(Mutex::new(0u32));
    let hooked = seen.clone();
    log.set_commit_hook(Some(Box::new(move |_| *hooked.lock().unwrap_or_else(|e| e.into_inner()) += 1)));
    sim.set_faults(SimFaults { fail_syncs: true, ..SimFaults::default() });

    let pending = log.append_events_deferred("t", b"k", ExpectedVersion::NoStream, &[event("e1")]).expect("append");
    let recorder = Arc::new(Recorder { thread: std::thread::current(), gate: Arc::default(), wakes: Mutex::default() });
    let waker = Waker::from(recorder.clone());
    let mut cx = Context::from_waker(&waker);
    let mut acknowledgement = pin!(pending.into_future());
    let outcome = loop {
        if let Poll::Ready(outcome) = acknowledgement.as_mut().poll(&mut cx) {
            break outcome;
        }
        recorder.wait_for_wake();
    };
    // Its bytes were written before the sync failed: the truth is that nobody knows.
    assert!(matches!(outcome, Err(Error::OutcomeUnknown(_))), "a failed sync acknowledged an append: {outcome:?}");
    assert!(*seen.lock().expect("seen") >= 1, "the hook was not told of the poisoned round");
    assert!(log.poisoned().is_some());
    log.halt();
}

/// The names of the threads that synced, from the `from`-th sync on.
fn syncers(storage: &HeldSyncs, from: usize) -> Vec<String> {
    storage.gate.syncers.lock().expect("syncers")[from..].to_vec()
}

/// Appends the first event of stream `key` on a new thread called `name`.
fn append_on_thread(
    log: &Arc<Log>,
    name: &str,
    key: &'static [u8],
) -> std::thread::JoinHandle<evident_log::Result<evident_log::AppendOutcome>> {
    let (log, id) = (log.clone(), format!("{name}-1"));
    std::thread::Builder::new()
        .name(name.into())
        .spawn(move || log.append_events("t", key, ExpectedVersion::NoStream, &[event(&id)]))
        .expect("spawn")
}

/// Waits (bounded) until `n` syncs have started since `from`.
fn wait_for_syncs(storage: &HeldSyncs, from: usize, n: usize) {
    let deadline = Instant::now() + PATIENCE;
    while syncers(storage, from).len() < n {
        assert!(Instant::now() < deadline, "no sync started: {:?}", syncers(storage, from));
        std::thread::sleep(Duration::from_millis(1));
    }
}

#[test]
fn an_append_waited_on_an_idle_log_is_committed_on_its_own_thread_and_one_arriving_meanwhile_waits_for_that_round() {
    let storage = HeldSyncs { sim: SimStorage::new(), gate: Arc::default() };
    let log = Arc::new(open(storage.storage()));
    let from = storage.gate.syncers.lock().expect("syncers").len();

    // The first append finds no round in flight and leads one; its sync is held.
    storage.hold(true);
    let first = append_on_thread(&log, "leader", b"a");
    wait_for_syncs(&storage, from, 1);
    assert_eq!(syncers(&storage, from), ["leader"], "the idle log's round ran elsewhere");

    // A second append arrives while that round is in flight: it queues and is handed to the
    // commit thread, which must wait for the leader's round before writing its own.
    let second = append_on_thread(&log, "follower", b"b");
    let deadline = Instant::now() + PATIENCE;
    while log.stats().appends < 2 {
        assert!(Instant::now() < deadline, "the second append was never queued");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert_eq!(syncers(&storage, from).len(), 1, "a second round started beside the one in flight");

    storage.hold(false);
    let first = first.join().expect("leader thread").expect("first append");
    let second = second.join().expect("follower thread").expect("second append");
    assert_eq!((first.records[0].sequence, second.records[0].sequence), (0, 1));
    let rounds = syncers(&storage, from);
    // The second round is the commit thread's when the follower was already waiting as the
    // first ended (nearly always), the follower's own if it came to wait just after.
    assert!(
        rounds.len() == 2 && rounds[0] == "leader" && ["evident-commit", "follower"].contains(&rounds[1].as_str()),
        "who synced the two rounds: {rounds:?}"
    );
    Arc::into_inner(log).expect("one owner").close().expect("close");
}

#[test]
fn a_pending_append_dropped_unwaited_is_still_committed() {
    let storage = HeldSyncs { sim: SimStorage::new(), gate: Arc::default() };
    let log = open(storage.storage());
    let from = storage.gate.syncers.lock().expect("syncers").len();
    let pending = log.append_events_deferred("t", b"k", ExpectedVersion::NoStream, &[event("e1")]).expect("append");
    let sequence = pending.outcome().records[0].sequence;
    drop(pending);
    // Not `wait_for_sequence`, which starts the round itself: the drop must have.
    let deadline = Instant::now() + PATIENCE;
    while syncers(&storage, from).is_empty() {
        assert!(Instant::now() < deadline, "the dropped append was never committed");
        std::thread::sleep(Duration::from_millis(1));
    }
    assert!(log.wait_for_sequence(sequence, PATIENCE).expect("wait"));
    assert_eq!(log.read_stream("t", b"k", &Default::default()).expect("read").events.len(), 1);
    log.close().expect("close");
}
