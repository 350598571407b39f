//! The [`Log`]: opening and recovering a store, the group-commit pipeline, topic admin and
//! closing. Appends are in `append.rs`, reads in `read.rs`.
//!
//! Concurrency. One mutex guards the index and the queue of encoded-but-unwritten frames. An
//! appender validates, assigns offsets, versions and commit sequences, encodes its frame into
//! the queue and updates the index, all under the mutex, so expected-version checks see every
//! earlier append, written or not. It then waits. A commit round takes the whole queue, writes
//! it with the mutex released, calls `fdatasync` once, and publishes the new durable position:
//! every appender whose frame it covered is acknowledged by that one sync (group commit).
//! Readers see only frames below the published position.
//!
//! Who runs a round. Under `fsync = always`, an appender that waits while no round is in flight
//! runs the round itself, on its own thread ("leads" it, as a write-group leader does in
//! RocksDB or a backend flushing WAL does in PostgreSQL): an append on an idle log then costs
//! no thread hand-off at all, where handing the queue to a commit thread and being woken by it
//! costs two wake-ups and four context switches, which on a virtual machine are most of an
//! append's CPU. Appenders that arrive while a round is in flight queue behind it and the
//! commit thread runs their round, so under load rounds follow each other as before and at
//! most one appender's thread is ever blocked in a sync. At most one round is in flight
//! (`State::in_flight`), whoever runs it. The relaxed policies always use the commit thread,
//! which also owns their timed syncs.

use std::any::Any;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::task::{Context as TaskContext, Poll, Waker};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use evident_core::batch::RecordBatch;
use evident_core::TopicName;

use crate::catalog::{TopicConfig, TopicMeta};
use crate::checkpoint::{self, Mark};
use crate::clock::{Clock, SystemClock};
use crate::config::{FsyncPolicy, LogConfig};
use crate::error::{Error, Result};
use crate::frame::{self, FrameHeader, FrameKind};
use crate::index::{record_infos, Index};
use crate::journal::{Journal, SEGMENT_HEADER_LEN};
use crate::recovery::{self, ReplayOutcome};
use crate::storage::{FsStorage, Storage, StorageFile};

/// What opening the log found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryReport {
    /// Whether an index checkpoint was loaded.
    pub checkpoint_loaded: bool,
    /// Why a checkpoint present on disk was not used, if it was not.
    pub checkpoint_rejected: Option<String>,
    /// What the journal replay found (frames and bytes re-read, torn tail cut).
    pub replay: ReplayOutcome,
    /// How long opening took.
    pub duration: Duration,
}

/// Counters, for benchmarks and metrics.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct LogStats {
    /// Successful `fdatasync` calls on journal segments by the commit pipeline.
    pub syncs: u64,
    /// Commit rounds (one write, one sync, many appends).
    pub commit_rounds: u64,
    /// Appends accepted (batches; retries answered from the index excluded).
    pub appends: u64,
    /// Journal bytes written.
    pub bytes_written: u64,
    /// Checkpoints written (encoded and handed to the writer).
    pub checkpoints: u64,
    /// Background checkpoints that failed to be written (each retried later; see
    /// [`Log::checkpoint_error`]).
    pub checkpoint_failures: u64,
    /// Journal position up to which everything is durable.
    pub durable_position: u64,
    /// Next commit sequence.
    pub next_sequence: u64,
    /// Commit rounds' `fdatasync` latency: how many fell at or under each bound of
    /// [`SYNC_LATENCY_BOUNDS_US`] (not cumulative; the last slot counts the slower ones).
    pub sync_latency_counts: [u64; SYNC_LATENCY_BOUNDS_US.len() + 1],
    /// Sum of the commit rounds' `fdatasync` latencies, in microseconds.
    pub sync_latency_sum_us: u64,
}

/// Upper bounds (µs) of the sync latency histogram's buckets: from a fast NVMe flush to a
/// stalled disk.
pub const SYNC_LATENCY_BOUNDS_US: [u64; 12] =
    [100, 250, 500, 1_000, 2_500, 5_000, 10_000, 25_000, 50_000, 100_000, 250_000, 1_000_000];

impl LogStats {
    fn record_sync_latency(&mut self, elapsed: Duration) {
        let us = u64::try_from(elapsed.as_micros()).unwrap_or(u64::MAX);
        let slot = SYNC_LATENCY_BOUNDS_US.iter().position(|&b| us <= b).unwrap_or(SYNC_LATENCY_BOUNDS_US.len());
        self.sync_latency_counts[slot] += 1;
        self.sync_latency_sum_us = self.sync_latency_sum_us.saturating_add(us);
    }
}

/// Zeros a commit round writes past its own end in the active segment.
struct Preallocation {
    file: Arc<dyn StorageFile>,
    base: u64,
    from: u64,
    to: u64,
}

impl Preallocation {
    fn write(&self) -> std::io::Result<()> {
        let zeros = vec![0u8; ((self.to - self.from) as usize).min(1 << 20)];
        let mut at = self.from;
        while at < self.to {
            let n = zeros.len().min((self.to - at) as usize);
            self.file.write_all_at(&zeros[..n], at - self.base)?;
            at += n as u64;
        }
        Ok(())
    }
}

/// Encoded frames waiting for the committer, contiguous within one segment.
pub(crate) struct Chunk {
    pub pos: u64,
    pub bytes: Vec<u8>,
}

/// One appender waiting for the journal to be visible up to `end`. Each has its own slot so a
/// commit round wakes exactly the appenders it acknowledged, not all of them: a thread blocked
/// in [`Durability::wait`] through the condition variable, an async task awaiting
/// [`Durability::poll_ready`] through its waker, which the commit thread wakes directly (no
/// thread in between, so an acknowledgement costs the async caller one wake-up).
pub(crate) struct Waiter {
    end: u64,
    slot: Mutex<Slot>,
    ready: Condvar,
}

/// Why a waiter's frame will not be acknowledged: what its appender may tell its client.
#[derive(Debug, Clone)]
pub(crate) enum Refusal {
    /// Never written (the log was poisoned before its round): not stored.
    Poisoned(String),
    /// Its round hit a full disk and its bytes were never written or were cut back durably:
    /// not stored.
    DiskFull(String),
    /// Its round's write or sync failed after its bytes may have reached the file.
    Unknown(String),
}

impl From<Refusal> for Error {
    fn from(r: Refusal) -> Self {
        match r {
            Refusal::Poisoned(why) => Error::Poisoned(why),
            Refusal::DiskFull(why) => Error::DiskFull(why),
            Refusal::Unknown(why) => Error::OutcomeUnknown(why),
        }
    }
}

/// What a [`Waiter`] learns, and who to tell.
#[derive(Default)]
struct Slot {
    outcome: Option<std::result::Result<(), Refusal>>,
    waker: Option<Waker>,
}

impl Waiter {
    fn resolve(&self, outcome: std::result::Result<(), Refusal>) {
        let waker = {
            let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
            slot.outcome = Some(outcome);
            slot.waker.take()
        };
        self.ready.notify_one();
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    fn wait(&self) -> Result<()> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        loop {
            if let Some(done) = slot.outcome.take() {
                return done.map_err(Error::from);
            }
            slot = self.ready.wait(slot).unwrap_or_else(|e| e.into_inner());
        }
    }

    fn poll(&self, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        let mut slot = self.slot.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(done) = slot.outcome.take() {
            return Poll::Ready(done.map_err(Error::from));
        }
        match &mut slot.waker {
            Some(w) if w.will_wake(cx.waker()) => {}
            other => *other = Some(cx.waker().clone()),
        }
        Poll::Pending
    }
}

/// A registered wait for a journal position to become visible (no waiter: it already is, or
/// the outcome was taken). Every registered waiter is resolved: by the round that makes its
/// position visible, or with the error when the log is poisoned or halted.
///
/// It also owes the log a commit: queuing a frame does not wake the commit thread, so whoever
/// holds the `Durability` of a queued frame either runs the round itself
/// ([`Durability::wait`], [`Durability::commit_if_idle`]) or hands it to the commit thread
/// (awaiting, or dropping it). `owed` is that debt, paid once.
pub(crate) struct Durability {
    waiter: Option<Arc<Waiter>>,
    owed: Option<Arc<Inner>>,
}

impl Durability {
    /// Blocks until the position is visible, or the sync covering it failed; runs the commit
    /// round on this thread when none is in flight (see the module comment).
    pub(crate) fn wait(mut self) -> Result<()> {
        self.commit_if_idle();
        match self.waiter.take() {
            None => Ok(()),
            Some(waiter) => waiter.wait(),
        }
    }

    /// Runs the round that makes the position visible on this thread, if no round is in
    /// flight and the policy is `always`; otherwise hands it to the commit thread. Returns at
    /// once in the second case.
    pub(crate) fn commit_if_idle(&mut self) {
        if let (Some(inner), Some(waiter)) = (self.owed.take(), &self.waiter) {
            inner.lead_or_hand_off(waiter.end);
        }
    }

    /// The same wait without a thread: ready once the position is visible, or the sync
    /// covering it failed. The round is the commit thread's (a future must not block), and
    /// it wakes the task.
    pub(crate) fn poll_ready(&mut self, cx: &mut TaskContext<'_>) -> Poll<Result<()>> {
        if let Some(inner) = self.owed.take() {
            inner.hand_off();
        }
        let Some(waiter) = &self.waiter else { return Poll::Ready(Ok(())) };
        let done = std::task::ready!(waiter.poll(cx));
        self.waiter = None;
        Poll::Ready(done)
    }
}

impl Drop for Durability {
    /// A wait abandoned before it started still owes its frame a commit: the append stands.
    fn drop(&mut self) {
        if let Some(inner) = self.owed.take() {
            inner.hand_off();
        }
    }
}

/// The first wait before retrying a failed background checkpoint.
pub const CHECKPOINT_RETRY_MIN: Duration = Duration::from_secs(1);
/// The longest wait between tries of a failing background checkpoint.
pub const CHECKPOINT_RETRY_MAX: Duration = Duration::from_secs(60);

/// The first wait before looking for free space again after the disk filled up.
pub const SPACE_PROBE_MIN: Duration = Duration::from_millis(100);
/// The longest wait between looks for free space while the disk is full.
pub const SPACE_PROBE_MAX: Duration = Duration::from_secs(5);
/// The least free space a probe must find before writes resume: a round's pre-allocation
/// needs [`LogConfig::preallocate_bytes`], and resuming with less would only refuse again
/// at the next round (hysteresis, so the log does not flap at the edge of a full disk).
pub const SPACE_PROBE_BYTES_MIN: u64 = 1 << 20;
/// The file a space probe writes and removes, in the data directory.
const SPACE_PROBE_FILE: &str = "space.probe";

/// Whether an I/O error says the file system has no room (ENOSPC) or the owner's quota is
/// spent (EDQUOT): the conditions that freeing space ends, as opposed to a failing device.
pub(crate) fn is_out_of_space(e: &std::io::Error) -> bool {
    const ENOSPC: i32 = 28;
    const EDQUOT: i32 = 122;
    e.kind() == std::io::ErrorKind::StorageFull || matches!(e.raw_os_error(), Some(ENOSPC | EDQUOT))
}

/// The log refuses writes because the disk is full; reads go on.
pub(crate) struct DiskFull {
    /// The failure that put the log in this state.
    pub reason: String,
    /// When the next probe for free space may run.
    pub next_probe: Instant,
    /// The wait after the next failed probe: doubles per failure up to [`SPACE_PROBE_MAX`].
    pub backoff: Duration,
}

impl DiskFull {
    fn new(reason: String) -> Self {
        Self { reason, next_probe: Instant::now() + SPACE_PROBE_MIN, backoff: SPACE_PROBE_MIN * 2 }
    }
}

/// How a commit round failed: a failed write leaves bytes that may be cut back, a failed
/// sync leaves the page cache in a state nothing can trust (fsyncgate).
enum RoundFailure {
    Write(std::io::Error),
    Sync(std::io::Error),
}

/// Called by the commit thread with the visible commit sequence after every round (see
/// [`Log::set_commit_hook`]).
pub type CommitHook = Box<dyn Fn(u64) + Send + Sync>;

pub(crate) struct State {
    pub index: Index,
    pub journal: Journal,
    pub pending: Vec<Chunk>,
    /// Chunks the committer is writing right now (readable while it does).
    pub in_flight: Option<Arc<Vec<Chunk>>>,
    /// The active segment's base and the journal position its file is allocated to (written,
    /// data or pre-allocated zeros).
    pub alloc: (u64, u64),
    /// Appenders waiting for their frame, in order of the position they wait for.
    pub waiters: std::collections::VecDeque<Arc<Waiter>>,
    /// Journal position for the next frame.
    pub next_pos: u64,
    /// Everything below is written to the files.
    pub written_pos: u64,
    /// Everything below is durable (synced).
    pub durable_pos: u64,
    /// Everything below may be read and has been acknowledged.
    pub visible_pos: u64,
    /// Commit sequences below this may be read.
    pub visible_seq: u64,
    pub poisoned: Option<String>,
    /// Set while the disk is full: writes are refused (nothing was lost), reads go on, and a
    /// probe for free space returns the log to writable.
    pub disk_full: Option<DiskFull>,
    pub closed: bool,
    pub since_checkpoint: u64,
    /// Size of the last checkpoint written; the next waits for twice as many journal bytes,
    /// so checkpointing costs at most half the journal's write volume however large the
    /// index grows.
    pub last_checkpoint_len: u64,
    /// Journal position the newest checkpoint (written or loaded) covers.
    pub checkpoint_pos: Option<u64>,
    /// Why the last background checkpoint failed and when the next may be tried; None once
    /// one succeeds.
    pub checkpoint_failed: Option<(String, Instant)>,
    /// The wait before the next try after a failure: doubles per failure, up to
    /// [`CHECKPOINT_RETRY_MAX`].
    pub checkpoint_backoff: Duration,
    pub last_frame: Option<(u64, u32)>,
    pub last_sync: Instant,
    pub stats: LogStats,
}

impl State {
    /// The ordering of the journal positions, checked after every commit round (cheap: a few
    /// comparisons, so it stays on in release builds). `visible <= durable` holds only under
    /// `always`: the relaxed policies acknowledge before the sync, which is what makes them
    /// relaxed.
    fn check_positions(&self, policy: FsyncPolicy) {
        assert!(self.durable_pos <= self.written_pos, "durable {} > written {}", self.durable_pos, self.written_pos);
        assert!(self.written_pos <= self.next_pos, "written {} > next {}", self.written_pos, self.next_pos);
        assert!(self.visible_pos <= self.written_pos, "visible {} > written {}", self.visible_pos, self.written_pos);
        assert!(
            self.visible_seq <= self.index.next_seq,
            "visible seq {} > next {}",
            self.visible_seq,
            self.index.next_seq
        );
        if policy == FsyncPolicy::Always {
            // Nothing is acknowledged that a sync does not cover.
            assert!(
                self.visible_pos <= self.durable_pos,
                "visible {} > durable {}",
                self.visible_pos,
                self.durable_pos
            );
        }
    }
}

pub(crate) struct Inner {
    pub storage: Arc<dyn Storage>,
    pub dir: PathBuf,
    pub config: LogConfig,
    pub clock: Arc<dyn Clock>,
    pub state: Mutex<State>,
    /// Signalled when the commit thread has work: frames queued that no appender will commit
    /// itself, a round ended with more queued, or the log closes.
    pub work: Condvar,
    /// Signalled when the visible position moves or the log is poisoned.
    pub progress: Condvar,
    /// Told the visible commit sequence whenever `progress` is signalled.
    commit_hook: Mutex<Option<CommitHook>>,
    pub recovery: RecoveryReport,
    /// Hands encoded checkpoints to the checkpoint writer thread.
    checkpoint_tx: Mutex<Option<SyncSender<Vec<u8>>>>,
    /// A checkpoint is being written in the background.
    checkpoint_busy: AtomicBool,
    /// Damage found by reads, for [`Log::health`] (see `health.rs`).
    pub damage: crate::health::DamageRegistry,
    _lock: Box<dyn Any + Send + Sync>,
}

/// An open event log. Cheap to share: wrap it in an `Arc`; every method takes `&self`.
///
/// ```
/// use evident_core::{EventData, ExpectedVersion};
/// use evident_log::{Log, LogConfig, TopicConfig};
///
/// let dir = tempfile::tempdir()?;
/// let log = Log::open(dir.path(), LogConfig::default())?;
/// log.create_topic("accounts", TopicConfig::default())?;
/// let deposit = EventData::json("evt-1", "MoneyDeposited", br#"{"amount":10}"#.to_vec());
/// let appended = log.append_events("accounts", b"acct-1", ExpectedVersion::NoStream, &[deposit])?;
/// assert_eq!(appended.records[0].version, Some(0));
/// let read = log.read_stream("accounts", b"acct-1", &Default::default())?;
/// assert_eq!(read.events[0].event_type(), Some("MoneyDeposited"));
/// # Ok::<(), Box<dyn std::error::Error>>(())
/// ```
pub struct Log {
    pub(crate) inner: Arc<Inner>,
    committer: Mutex<Option<JoinHandle<()>>>,
    checkpointer: Mutex<Option<JoinHandle<()>>>,
}

impl std::fmt::Debug for Log {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Log").field("dir", &self.inner.dir).finish_non_exhaustive()
    }
}

fn lock(m: &Mutex<State>) -> MutexGuard<'_, State> {
    // A panic while holding the lock is a bug that already broke an invariant check; keep
    // serving reads rather than cascading panics, the poisoned flag stops writes.
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// `len` bytes of the journal at `pos`.
fn journal_bytes(journal: &Journal, pos: u64, len: usize) -> Result<Vec<u8>> {
    let mut buf = vec![0u8; len];
    journal.read(pos, &mut buf)?;
    Ok(buf)
}

fn apply_frame(index: &mut Index, pos: u64, header: &FrameHeader, payload: &[u8]) -> Result<()> {
    let corrupted = |what: String| Error::Corrupted { file: "journal".into(), offset: pos, what };
    match header.kind {
        FrameKind::Batch => {
            let batch =
                RecordBatch::parse_exact(payload).map_err(|e| corrupted(format!("stored batch invalid: {e}")))?;
            let infos = record_infos(&batch).map_err(|e| corrupted(format!("stored batch invalid: {e}")))?;
            index.apply_batch(pos, header.padded_len() as u32, header, batch.header(), &infos)
        }
        FrameKind::TopicCreated => {
            let meta: TopicMeta =
                serde_json::from_slice(payload).map_err(|e| corrupted(format!("topic metadata invalid: {e}")))?;
            index.apply_topic_created(meta)
        }
        FrameKind::TopicDeleted => {
            index.apply_topic_deleted(header.topic);
            Ok(())
        }
        FrameKind::TopicAltered => {
            let meta: TopicMeta =
                serde_json::from_slice(payload).map_err(|e| corrupted(format!("topic metadata invalid: {e}")))?;
            index.apply_topic_altered(meta)
        }
        FrameKind::LogStart => {
            let offset: [u8; 8] =
                payload.try_into().map_err(|_| corrupted(format!("log start payload of {} bytes", payload.len())))?;
            index.apply_log_start(header.topic, header.partition, u64::from_le_bytes(offset)).map_err(corrupted)
        }
        FrameKind::ProducerAdvance => {
            let advance = crate::index::ProducerAdvance::decode(payload).map_err(corrupted)?;
            index
                .apply_producer_advance(header.topic, header.partition, &advance, pos + header.padded_len())
                .map_err(corrupted)
        }
        FrameKind::TxnEnd => {
            let (producer, _, commit) = crate::txn::decode_end(payload).map_err(corrupted)?;
            crate::txn::apply_txn_end(index, producer, commit, header.first_sequence).map_err(corrupted)
        }
    }
}

impl Log {
    /// Opens (creating if needed) the log in `dir` on the real file system.
    pub fn open(dir: impl AsRef<Path>, config: LogConfig) -> Result<Self> {
        Self::open_with(Arc::new(FsStorage), dir.as_ref(), config, Arc::new(SystemClock))
    }

    /// Opens the log on any storage, with any clock.
    pub fn open_with(storage: Arc<dyn Storage>, dir: &Path, config: LogConfig, clock: Arc<dyn Clock>) -> Result<Self> {
        let started = Instant::now();
        storage.create_dir_all(dir)?;
        let dir_lock = storage.lock_dir(dir).map_err(|e| {
            if e.kind() == std::io::ErrorKind::WouldBlock {
                Error::Locked(e.to_string())
            } else {
                Error::Io(e)
            }
        })?;
        let mut journal = Journal::open(storage.clone(), &dir.join("journal"), config.segment_size_max)?;
        let mut report = RecoveryReport::default();
        let (mut index, mark) = match checkpoint::read(&storage, dir)? {
            None => (Index::default(), None),
            Some(bytes) => match checkpoint::decode(&bytes) {
                Ok((mut index, mark)) => {
                    // The checkpoint is intact, so its claims are facts: it was written only
                    // over durable bytes. A journal that disagrees has lost acknowledged data.
                    check_mark(&journal, mark)?;
                    // Open transactions' records are not in the checkpoint: they are read back
                    // from the journal. If that fails the journal replay finds out why.
                    match crate::txn::restore(&mut index, |pos, len| journal_bytes(&journal, pos, len)) {
                        Ok(()) => {
                            report.checkpoint_loaded = true;
                            (index, Some(mark))
                        }
                        Err(why) => {
                            report.checkpoint_rejected = Some(format!("its open transactions: {why}"));
                            (Index::default(), None)
                        }
                    }
                }
                Err(why) => {
                    report.checkpoint_rejected = Some(why);
                    (Index::default(), None)
                }
            },
        };
        let start = mark.map_or(0, |m| m.pos);
        let outcome = recovery::replay(&mut journal, start, start, |pos, header, payload| {
            apply_frame(&mut index, pos, header, payload)
        })?;
        if journal.segments.is_empty() {
            journal.create_segment(0)?;
        }
        let next_pos = outcome.end_pos.max(SEGMENT_HEADER_LEN);
        let last_frame = outcome.last_frame.or(mark.and_then(|m| m.last_frame));
        let must_checkpoint = outcome.bytes > 0 || outcome.truncated_bytes > 0 || mark.is_none();
        report.replay = outcome;
        let next_seq = index.next_seq;
        let alloc = match journal.segments.last() {
            Some(s) => (s.base, s.base + s.file.len()?),
            None => (0, SEGMENT_HEADER_LEN),
        };
        let state = State {
            index,
            journal,
            pending: Vec::new(),
            in_flight: None,
            alloc,
            waiters: std::collections::VecDeque::new(),
            next_pos,
            written_pos: next_pos,
            durable_pos: next_pos,
            visible_pos: next_pos,
            visible_seq: next_seq,
            poisoned: None,
            disk_full: None,
            closed: false,
            since_checkpoint: 0,
            last_checkpoint_len: 0,
            checkpoint_pos: mark.map(|m| m.pos).filter(|_| !must_checkpoint),
            checkpoint_failed: None,
            checkpoint_backoff: CHECKPOINT_RETRY_MIN,
            last_frame,
            last_sync: Instant::now(),
            stats: LogStats { durable_position: next_pos, next_sequence: next_seq, ..LogStats::default() },
        };
        report.duration = started.elapsed();
        recovery::warn_checkpoint(&report);
        let (checkpoint_tx, checkpoint_rx) = std::sync::mpsc::sync_channel::<Vec<u8>>(1);
        let inner = Arc::new(Inner {
            storage,
            dir: dir.to_path_buf(),
            config,
            clock,
            state: Mutex::new(state),
            work: Condvar::new(),
            progress: Condvar::new(),
            commit_hook: Mutex::new(None),
            recovery: report,
            checkpoint_tx: Mutex::new(Some(checkpoint_tx)),
            checkpoint_busy: AtomicBool::new(false),
            damage: crate::health::DamageRegistry::default(),
            _lock: dir_lock,
        });
        if must_checkpoint {
            // Replay work done now is not redone at the next open. But a checkpoint only
            // shortens recovery, so one that cannot be written (a full disk, no descriptor
            // left) must not keep the store from opening: it is reported and retried like a
            // background one, and a full disk makes the store read-only until space returns.
            let mut st = lock(&inner.state);
            if let Err(e) = inner.checkpoint_locked(&mut st) {
                let Error::Io(io) = e else { return Err(e) };
                let why = format!("writing the index checkpoint failed: {io}");
                st.stats.checkpoint_failures += 1;
                st.checkpoint_pos = None;
                st.since_checkpoint = inner.checkpoint_threshold(&st);
                st.checkpoint_failed = Some((why.clone(), Instant::now() + CHECKPOINT_RETRY_MIN));
                st.checkpoint_backoff = CHECKPOINT_RETRY_MIN * 2;
                if is_out_of_space(&io) {
                    st.disk_full = Some(DiskFull::new(why));
                }
            }
        }
        let worker = inner.clone();
        let committer = std::thread::Builder::new()
            .name("evident-commit".into())
            .spawn(move || worker.run_committer())
            .map_err(Error::Io)?;
        let worker = inner.clone();
        let checkpointer = std::thread::Builder::new()
            .name("evident-checkpoint".into())
            .spawn(move || worker.run_checkpointer(checkpoint_rx))
            .map_err(Error::Io)?;
        Ok(Self { inner, committer: Mutex::new(Some(committer)), checkpointer: Mutex::new(Some(checkpointer)) })
    }

    /// What opening found.
    pub fn recovery_report(&self) -> &RecoveryReport {
        &self.inner.recovery
    }

    /// Counters.
    pub fn stats(&self) -> LogStats {
        let st = lock(&self.inner.state);
        LogStats { durable_position: st.durable_pos, next_sequence: st.visible_seq, ..st.stats }
    }

    /// Why the last background checkpoint failed, while it keeps failing (None once one is
    /// written). The log keeps accepting writes meanwhile; a restart replays more journal.
    pub fn checkpoint_error(&self) -> Option<String> {
        self.inner.lock().checkpoint_failed.as_ref().map(|(why, _)| why.clone())
    }

    /// Why the log refuses writes, if a failed write or sync poisoned it (until reopened).
    pub fn poisoned(&self) -> Option<String> {
        self.inner.lock().poisoned.clone()
    }

    /// Why the log is read-only, while the disk is full: writes are refused with
    /// [`Error::DiskFull`] (nothing acknowledged was lost, nothing refused was stored) and
    /// reads are served. None once a probe finds free space again, which the commit thread
    /// tries with backoff ([`SPACE_PROBE_MIN`] to [`SPACE_PROBE_MAX`]) and every refused
    /// write tries when one is due. A poisoned log is reported by [`Log::poisoned`] instead.
    pub fn read_only(&self) -> Option<String> {
        self.inner.lock().disk_full.as_ref().map(|d| d.reason.clone())
    }

    /// Looks for free space now, whatever the backoff says; true if the log accepts writes
    /// afterwards (it was not read-only, or space was found). For operators' tools and tests
    /// that freed space and would rather not wait for the next scheduled probe.
    pub fn probe_space(&self) -> bool {
        let mut st = self.inner.lock();
        self.inner.probe_space(&mut st, true);
        st.disk_full.is_none()
    }

    /// Installs (or with `None` removes) a function the commit thread calls with the visible
    /// commit sequence (one past the last readable event) after every commit round, and when
    /// the log is poisoned or closed. It runs under the log's lock, so it must be quick and
    /// must not call into the log: publishing the number to an async channel is what it is
    /// for (a server wakes its subscribers this way without a thread of its own waiting on
    /// [`Log::wait_for_sequence`], which would cost a thread wake-up per commit round).
    pub fn set_commit_hook(&self, hook: Option<CommitHook>) {
        let old = std::mem::replace(&mut *self.inner.commit_hook.lock().unwrap_or_else(|e| e.into_inner()), hook);
        // Dropped outside the lock: a hook may own a channel whose receivers react to its end.
        drop(old);
    }

    /// The configuration the log was opened with.
    pub fn config(&self) -> &LogConfig {
        &self.inner.config
    }

    /// Creates a topic.
    pub fn create_topic(&self, name: &str, config: TopicConfig) -> Result<TopicMeta> {
        let name = TopicName::new(name)?;
        config.validate()?;
        let mut st = self.inner.writable()?;
        if st.index.names.contains_key(&name) {
            return Err(Error::TopicExists(name));
        }
        let meta = TopicMeta { id: st.index.next_topic_id, name, config, created_ms: self.inner.clock.now_ms() };
        let payload = serde_json::to_vec(&meta).map_err(|e| Error::Io(std::io::Error::other(e)))?;
        let (_, end) = self.inner.enqueue_frame(&mut st, FrameKind::TopicCreated, 0, meta.id, 0, &payload, |_| {})?;
        st.index.apply_topic_created(meta.clone())?;
        self.inner.wait_visible(st, end)?;
        Ok(meta)
    }

    /// Deletes a topic. Its records leave every index at once; their bytes stay in the journal
    /// until segment cleanup (not implemented yet) reclaims them.
    pub fn delete_topic(&self, name: &str) -> Result<()> {
        let mut st = self.inner.writable()?;
        let id = st.index.topic_by_name(name)?.meta.id;
        let (_, end) = self.inner.enqueue_frame(&mut st, FrameKind::TopicDeleted, 0, id, 0, &[], |_| {})?;
        st.index.apply_topic_deleted(id);
        self.inner.wait_visible(st, end)
    }

    /// Grows a topic to `partitions` partitions (Kafka's CreatePartitions). Partitions are
    /// only ever added: existing offsets and streams stay where they are, and new keys spread
    /// over all partitions by the default partitioner.
    pub fn create_partitions(&self, name: &str, partitions: u32) -> Result<TopicMeta> {
        let mut st = self.inner.writable()?;
        let current = st.index.topic_by_name(name)?.meta.clone();
        if partitions <= current.config.partitions {
            return Err(Error::InvalidConfig(format!(
                "topic {name} has {} partitions; it can only grow (asked for {partitions})",
                current.config.partitions
            )));
        }
        let config = TopicConfig { partitions, ..current.config.clone() };
        config.validate()?;
        let meta = TopicMeta { config, ..current };
        let payload = serde_json::to_vec(&meta).map_err(|e| Error::Io(std::io::Error::other(e)))?;
        let (_, end) = self.inner.enqueue_frame(&mut st, FrameKind::TopicAltered, 0, meta.id, 0, &payload, |_| {})?;
        st.index.apply_topic_altered(meta.clone())?;
        self.inner.wait_visible(st, end)?;
        Ok(meta)
    }

    /// Replaces a topic's configuration (Kafka's AlterConfigs): every setting but the partition
    /// count, which only [`Log::create_partitions`] changes. Written as a `TopicAltered` frame,
    /// so the change is durable when this returns and replayed in order with the records.
    pub fn alter_topic_config(&self, name: &str, config: TopicConfig) -> Result<TopicMeta> {
        config.validate()?;
        let mut st = self.inner.writable()?;
        let current = st.index.topic_by_name(name)?.meta.clone();
        if config.partitions != current.config.partitions {
            return Err(Error::InvalidConfig(format!(
                "topic {name} has {} partitions: its configuration cannot change them (asked for {})",
                current.config.partitions, config.partitions
            )));
        }
        let meta = TopicMeta { config, ..current };
        let payload = serde_json::to_vec(&meta).map_err(|e| Error::Io(std::io::Error::other(e)))?;
        let (_, end) = self.inner.enqueue_frame(&mut st, FrameKind::TopicAltered, 0, meta.id, 0, &payload, |_| {})?;
        st.index.apply_topic_altered(meta.clone())?;
        self.inner.wait_visible(st, end)?;
        Ok(meta)
    }

    /// Moves the log start of a partition to `offset` (Kafka's DeleteRecords; `None` means
    /// the high watermark) and returns the log start afterwards (Kafka's low watermark). The
    /// records below it are never served again by any read (see `read.rs`), and a stream whose
    /// first events are gone starts at its first retained version; versions, expected-version
    /// checks and idempotence by event id are unchanged. An offset past the high watermark is
    /// [`Error::OffsetOutOfRange`]; one at or below the current start changes nothing (the start
    /// never moves back), as in Kafka.
    ///
    /// The move is a `LogStart` frame in the journal, so it is durable when this returns (under
    /// `fsync = always`) and replayed in order with the records. The index records it when the
    /// frame is queued, like every other change, so a read that runs during the sync may already
    /// be refused the records; if that sync fails the log is poisoned, this returns the error,
    /// and the records come back at the next open (nothing is ever served that a restart
    /// withdraws: only withheld early).
    pub fn delete_records(&self, topic: &str, partition: u32, offset: Option<u64>) -> Result<u64> {
        let mut st = self.inner.writable()?;
        let t = st.index.topic_by_name(topic)?;
        let (tid, name) = (t.meta.id, t.meta.name.clone());
        let Some(p) = t.partitions.get(partition as usize) else {
            return Err(Error::UnknownPartition {
                topic: name,
                partition: evident_core::PartitionId(partition),
                partitions: t.meta.config.partitions,
            });
        };
        let start = p.log_start;
        let hw = crate::read::visible_high_watermark(&st.index, tid, partition, st.visible_pos);
        let offset = offset.unwrap_or(hw);
        if offset > hw {
            return Err(Error::OffsetOutOfRange {
                topic: name,
                partition: evident_core::PartitionId(partition),
                offset,
                log_start: start,
                high_watermark: hw,
            });
        }
        if offset <= start {
            return Ok(start);
        }
        let lso = crate::read::last_stable_offset(&st.index, tid, partition, st.visible_pos);
        if offset > lso {
            return Err(Error::InvalidTxnState(format!(
                "records cannot be deleted past the last stable offset {lso} of {name}/{partition}: a transaction \
                 with records there has not ended"
            )));
        }
        let payload = offset.to_le_bytes();
        let (_, end) = self.inner.enqueue_frame(&mut st, FrameKind::LogStart, 0, tid, partition, &payload, |_| {})?;
        // Checked above under the same lock: a refusal here would be a bug, with the frame queued.
        if let Err(why) = st.index.apply_log_start(tid, partition, offset) {
            panic!("a log start checked against the partition was refused: {why}");
        }
        self.inner.wait_visible(st, end)?;
        Ok(offset)
    }

    /// Every topic, by name.
    pub fn list_topics(&self) -> Vec<TopicMeta> {
        let st = lock(&self.inner.state);
        st.index.names.values().filter_map(|id| st.index.topics.get(id)).map(|t| t.meta.clone()).collect()
    }

    /// Stops the log the way a crash would: queued frames are dropped, nothing more is written,
    /// synced or checkpointed, and the directory lock is released. Every append that returned
    /// `Ok` is already durable (under `always`), so this is the state a `kill -9` leaves; crash
    /// tests call it before [`crate::storage::SimStorage::crash`] and reopening.
    pub fn halt(self) {
        {
            let mut st = lock(&self.inner.state);
            st.poisoned.get_or_insert_with(|| "halted".to_string());
            st.closed = true;
            self.inner.publish(&mut st);
            // An appender leading a round finishes it (its frames may already be on disk, as
            // at a crash); nothing is written once this returns.
            while st.in_flight.is_some() {
                st = self.inner.progress.wait(st).unwrap_or_else(|e| e.into_inner());
            }
        }
        self.inner.work.notify_all();
        let handle = self.committer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
        self.stop_checkpointer();
    }

    /// Stops the background checkpoint writer after it finishes the checkpoint it is writing.
    fn stop_checkpointer(&self) {
        self.inner.checkpoint_tx.lock().unwrap_or_else(|e| e.into_inner()).take();
        let handle = self.checkpointer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        }
    }

    /// Flushes, syncs, writes a checkpoint and stops the commit thread. Called by `Drop` too;
    /// calling it first lets the caller see errors.
    pub fn close(&self) -> Result<()> {
        {
            let mut st = lock(&self.inner.state);
            st.closed = true;
        }
        self.inner.work.notify_all();
        let handle = self.committer.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(handle) = handle {
            let _ = handle.join();
        } else {
            return Ok(());
        }
        // The final checkpoint must not be overwritten by an older one still being written.
        self.stop_checkpointer();
        let mut st = lock(&self.inner.state);
        if let Some(why) = &st.poisoned {
            return Err(Error::Poisoned(why.clone()));
        }
        let result = match self.inner.checkpoint_locked(&mut st) {
            // On a full disk the final checkpoint cannot be written, but it only shortens the
            // next recovery: the journal, synced, holds everything. A clean stop stays clean.
            Err(Error::Io(e)) if is_out_of_space(&e) => {
                st.stats.checkpoint_failures += 1;
                st.checkpoint_failed = Some((format!("writing the index checkpoint failed: {e}"), Instant::now()));
                Ok(())
            }
            other => other,
        };
        self.inner.publish(&mut st);
        result
    }
}

impl Drop for Log {
    fn drop(&mut self) {
        let _ = self.close();
    }
}

/// Whether the frame ending at `end` is among those the committer is writing right now, so its
/// outcome is still being decided.
fn in_flight_covers(st: &State, end: u64) -> bool {
    let Some(chunks) = st.in_flight.as_ref() else { return false };
    match (chunks.first(), chunks.last()) {
        (Some(first), Some(last)) => first.pos < end && end <= last.pos + last.bytes.len() as u64,
        _ => false,
    }
}

/// Writes `len` zero bytes to a new file at `path`, then removes it: whether the file system
/// has that much room now. The file is emptied and removed whatever happens (best effort: a
/// leftover is harmless, the next probe truncates it).
fn probe_write(storage: &Arc<dyn Storage>, path: &Path, len: u64) -> std::io::Result<()> {
    let file = storage.open(path, true)?;
    let zeros = vec![0u8; len.min(1 << 20) as usize];
    let mut at = 0;
    let mut result = file.set_len(0);
    while result.is_ok() && at < len {
        let n = zeros.len().min((len - at) as usize);
        result = file.write_all_at(&zeros[..n], at);
        at += n as u64;
    }
    let _ = file.set_len(0);
    drop(file);
    let _ = storage.remove_file(path);
    result
}

/// Checks that an intact checkpoint's mark agrees with the journal on disk.
fn check_mark(journal: &Journal, mark: Mark) -> Result<()> {
    let corrupted = |file: PathBuf, offset: u64, what: String| Err(Error::Corrupted { file, offset, what });
    let Some(seg) = journal.segment_for(mark.pos) else {
        if mark.pos <= SEGMENT_HEADER_LEN && journal.segments.is_empty() {
            return Ok(());
        }
        return corrupted(
            journal.dir().to_path_buf(),
            mark.pos,
            format!("the checkpoint covers journal position {} but no segment holds it", mark.pos),
        );
    };
    let len = seg.file.len()?;
    if mark.pos > seg.base + len {
        return corrupted(
            seg.path.clone(),
            len,
            format!(
                "the segment ends at journal position {} but the checkpoint covers up to {}",
                seg.base + len,
                mark.pos
            ),
        );
    }
    if let Some((pos, crc)) = mark.last_frame {
        let mut head = [0u8; frame::HEADER_LEN];
        journal.read(pos, &mut head)?;
        match frame::decode_header(&head) {
            Ok(h) if h.crc == crc && pos + h.padded_len() <= mark.pos => {}
            _ => {
                let seg = journal.segment_for(pos).map_or(journal.dir().to_path_buf(), |s| s.path.clone());
                return corrupted(seg, pos, "the frame the checkpoint ends with is damaged or missing".into());
            }
        }
    }
    Ok(())
}

impl State {
    /// Reads journal bytes at `pos`, from the commit queue if they are not written yet.
    pub(crate) fn read_bytes(&self, pos: u64, len: usize) -> Result<Vec<u8>> {
        let queued = self.pending.iter().chain(self.in_flight.iter().flat_map(|c| c.iter()));
        for chunk in queued {
            let end = chunk.pos + chunk.bytes.len() as u64;
            if pos >= chunk.pos && pos + len as u64 <= end {
                let at = (pos - chunk.pos) as usize;
                return Ok(chunk.bytes[at..at + len].to_vec());
            }
        }
        let mut buf = vec![0u8; len];
        self.journal.read(pos, &mut buf)?;
        Ok(buf)
    }
}

impl Inner {
    pub(crate) fn lock(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// The state, if the log accepts writes.
    pub(crate) fn writable(&self) -> Result<MutexGuard<'_, State>> {
        let mut st = self.lock();
        if let Some(why) = &st.poisoned {
            return Err(Error::Poisoned(why.clone()));
        }
        if st.closed {
            return Err(Error::Closed);
        }
        if st.disk_full.is_some() {
            self.probe_space(&mut st, false);
            if let Some(full) = &st.disk_full {
                return Err(Error::DiskFull(full.reason.clone()));
            }
        }
        Ok(st)
    }

    /// While the disk is full: if a probe is due (or `force`), writes and removes a probe
    /// file of the space a round needs; success returns the log to writable. The probe goes
    /// through the storage seam like every write, so tests can fail it.
    fn probe_space(&self, st: &mut State, force: bool) {
        let Some(full) = st.disk_full.as_mut() else { return };
        let now = Instant::now();
        if !force && now < full.next_probe {
            return;
        }
        let want = self.config.preallocate_bytes.max(SPACE_PROBE_BYTES_MIN);
        match probe_write(&self.storage, &self.dir.join(SPACE_PROBE_FILE), want) {
            Ok(()) => st.disk_full = None,
            Err(_) => {
                full.next_probe = now + full.backoff;
                full.backoff = (full.backoff * 2).min(SPACE_PROBE_MAX);
            }
        }
    }

    /// Encodes a frame into the commit queue (rolling to a new segment first if the frame
    /// would overflow the current one). Returns the frame's position and the position the
    /// caller must wait for.
    #[allow(clippy::too_many_arguments)] // the frame's fields, plus the payload patch
    pub(crate) fn enqueue_frame(
        &self,
        st: &mut State,
        kind: FrameKind,
        first_seq: u64,
        topic: u32,
        partition: u32,
        payload: &[u8],
        patch: impl FnOnce(&mut [u8]),
    ) -> Result<(u64, u64)> {
        let frame_len = frame::padded(frame::HEADER_LEN + payload.len()) as u64;
        let seg_base = st.journal.segments.last().map_or(0, |s| s.base);
        if st.next_pos + frame_len > seg_base + self.config.segment_size_max
            && st.next_pos > seg_base + SEGMENT_HEADER_LEN
        {
            let base = st.next_pos;
            match st.journal.create_segment(base) {
                Ok(()) => {}
                // Nothing was left behind (see `Journal::create_segment`) and nothing of this
                // append is queued yet: out of descriptors is this append's failure only, a
                // full disk makes the log read-only until space returns.
                Err(Error::Io(io)) if is_out_of_space(&io) => {
                    let why = format!("creating a journal segment failed: {io}");
                    st.disk_full = Some(DiskFull::new(why.clone()));
                    return Err(Error::DiskFull(why));
                }
                Err(Error::Io(io)) => return Err(Error::Io(io)),
                Err(e) => {
                    // A failed sync while creating a segment (or a failed clean-up) is as
                    // fatal as one on the journal: the file system's state is unknown until
                    // recovery.
                    let io = std::io::Error::other(match e {
                        Error::Poisoned(why) => why,
                        other => other.to_string(),
                    });
                    self.poison(st, "creating a journal segment failed", &io);
                    return Err(Error::Poisoned(format!("creating a journal segment failed: {io}")));
                }
            }
            st.next_pos = base + SEGMENT_HEADER_LEN;
            st.alloc = (base, st.next_pos);
        }
        let pos = st.next_pos;
        let chunk = match st.pending.last_mut() {
            Some(c) if c.pos + c.bytes.len() as u64 == pos => c,
            _ => {
                st.pending.push(Chunk { pos, bytes: Vec::with_capacity(frame_len as usize) });
                st.pending.last_mut().ok_or(Error::Closed)?
            }
        };
        let at = chunk.bytes.len();
        let durable = st.durable_pos;
        frame::encode_patched(&mut chunk.bytes, kind, durable, first_seq, topic, partition, payload, patch);
        assert_eq!((chunk.bytes.len() - at) as u64, frame_len, "frame length as planned");
        let crc =
            u32::from_le_bytes([chunk.bytes[at + 4], chunk.bytes[at + 5], chunk.bytes[at + 6], chunk.bytes[at + 7]]);
        st.last_frame = Some((pos, crc));
        st.next_pos = pos + frame_len;
        // No wake-up here: the caller's `Durability` commits the frame or hands it over.
        Ok((pos, st.next_pos))
    }

    /// Waits until everything below `end` is visible (durable under `always`), or the log is
    /// poisoned.
    pub(crate) fn wait_visible(self: &Arc<Self>, st: MutexGuard<'_, State>, end: u64) -> Result<()> {
        self.defer_visible(st, end)?.wait()
    }

    /// Registers interest in journal position `end` becoming visible (durable and
    /// acknowledged) and releases the lock; the returned [`Durability`] waits for it.
    pub(crate) fn defer_visible(self: &Arc<Self>, mut st: MutexGuard<'_, State>, end: u64) -> Result<Durability> {
        if st.visible_pos >= end {
            return Ok(Durability { waiter: None, owed: None });
        }
        if let (Some(why), false) = (&st.poisoned, in_flight_covers(&st, end)) {
            return Err(Error::Poisoned(why.clone()));
        }
        let waiter = Arc::new(Waiter { end, slot: Mutex::new(Slot::default()), ready: Condvar::new() });
        // Frames are queued in position order, so this is nearly always a push at the back.
        let at = st.waiters.partition_point(|w| w.end <= end);
        st.waiters.insert(at, waiter.clone());
        drop(st);
        Ok(Durability { waiter: Some(waiter), owed: Some(self.clone()) })
    }

    /// Makes `end` visible by running the commit round on this thread when the log is idle
    /// (`always`, no round in flight, not poisoned or closing); otherwise wakes the commit
    /// thread, whose round (this one's successor, if one is in flight) covers `end`.
    fn lead_or_hand_off(&self, end: u64) {
        let st = self.lock();
        if st.visible_pos >= end {
            return;
        }
        let idle = st.in_flight.is_none() && st.poisoned.is_none() && !st.closed && !st.pending.is_empty();
        if self.config.fsync == FsyncPolicy::Always && idle {
            drop(self.commit_round(st));
        } else {
            drop(st);
            self.hand_off();
        }
    }

    /// Wakes the commit thread for frames queued under the lock earlier. Without the lock:
    /// the thread either waits (and is woken) or has not yet looked at the queue (and finds
    /// the frames), since queuing them took the lock its check-then-wait holds.
    pub(crate) fn hand_off(&self) {
        self.work.notify_one();
    }

    /// Tells waiters what the latest round decided: those whose frames are now visible are
    /// acknowledged; if the log is poisoned, those whose frames were not being written fail.
    /// Waiters whose frames the committer is writing right now wait for that round's end: their
    /// frames may still become durable. Also wakes readers waiting for new records.
    fn publish(&self, st: &mut State) {
        if self.config.fsync == FsyncPolicy::Always {
            // An acknowledgement below is a promise that the bytes survive power loss.
            assert!(st.visible_pos <= st.durable_pos, "acknowledging past the synced position");
        }
        // The hook first: an appender woken below then finds the round already announced.
        self.announce(st);
        while st.waiters.front().is_some_and(|w| w.end <= st.visible_pos) {
            if let Some(w) = st.waiters.pop_front() {
                w.resolve(Ok(()));
            }
        }
        if let Some(why) = st.poisoned.clone() {
            let keep = st.in_flight.as_ref().and_then(|c| c.last()).map_or(0, |c| c.pos + c.bytes.len() as u64);
            while st.waiters.back().is_some_and(|w| w.end > keep) {
                if let Some(w) = st.waiters.pop_back() {
                    w.resolve(Err(Refusal::Poisoned(why.clone())));
                }
            }
        }
        self.progress.notify_all();
    }

    /// Tells the commit hook the visible commit sequence (and so whoever follows it, such as
    /// live subscriptions, that something was decided).
    fn announce(&self, st: &State) {
        if let Some(hook) = self.commit_hook.lock().unwrap_or_else(|e| e.into_inner()).as_ref() {
            hook(st.visible_seq);
        }
    }

    fn poison(&self, st: &mut State, what: &str, e: &std::io::Error) {
        if st.poisoned.is_none() {
            st.poisoned = Some(format!("{what}: {e}"));
        }
        self.publish(st);
    }

    /// A round (whose frames end at `round_end`) failed to be written or synced. Called with
    /// the lock held, no round in flight. What each waiting appender is told must be the
    /// truth about its bytes:
    /// - a full disk whose partial write could be cut back and the cut synced: nothing of the
    ///   round (nor of what was queued after it) is stored. The log turns read-only
    ///   ([`DiskFull`]) instead of poisoned, its index is rebuilt from the journal as written,
    ///   and a probe for free space returns it to writable;
    /// - any other failed write, a failed cut-back, or any failed sync: the round's bytes may
    ///   or may not be on disk. Its appenders learn that the outcome is unknown, the log is
    ///   poisoned until restart (a failed fsync cannot be retried, fsyncgate), and appenders
    ///   queued behind the round, never written, learn they were not stored.
    fn round_failed(&self, st: &mut State, failure: RoundFailure, round_end: u64) {
        let e = match failure {
            RoundFailure::Write(e) if is_out_of_space(&e) => e,
            RoundFailure::Write(e) => return self.poison_unknown(st, "journal write failed", &e, round_end),
            RoundFailure::Sync(e) => return self.poison_unknown(st, "journal sync failed", &e, round_end),
        };
        if let Err(cut) = self.cut_back(st) {
            let what = format!("journal write failed ({e}) and cutting its bytes back failed");
            return self.poison_unknown(st, &what, &cut, round_end);
        }
        // Not stored: neither the round nor the frames queued behind it will ever be written.
        let why = format!("journal write failed: {e}");
        st.pending.clear();
        while let Some(w) = st.waiters.pop_back() {
            w.resolve(Err(Refusal::DiskFull(why.clone())));
        }
        st.disk_full = Some(DiskFull::new(why));
        // Their frames are in the index, which must describe the journal exactly again.
        if let Err(rebuild) = self.rebuild_index(st) {
            let io = std::io::Error::other(rebuild.to_string());
            self.poison(st, "rebuilding the index after a full disk failed", &io);
        }
        self.publish(st);
    }

    /// Poisons the log after a failure that leaves the round ending at `round_end` in doubt:
    /// its appenders learn the outcome is unknown, the rest (never written) that it was not
    /// stored.
    fn poison_unknown(&self, st: &mut State, what: &str, e: &std::io::Error, round_end: u64) {
        let why = format!("{what}: {e}");
        // Poisoned and announced before any appender is told: one woken below must find the
        // log poisoned and the round announced, as `publish` does for acknowledgements (an
        // appender told first could see neither yet).
        if st.poisoned.is_none() {
            st.poisoned = Some(why.clone());
        }
        self.announce(st);
        while st.waiters.front().is_some_and(|w| w.end <= round_end) {
            if let Some(w) = st.waiters.pop_front() {
                w.resolve(Err(Refusal::Unknown(why.clone())));
            }
        }
        self.poison(st, what, e);
    }

    /// Cuts the journal back to the written position after a failed write: zeros the failed
    /// round's bytes inside the segment's earlier allocation and truncates what lies past it
    /// (or truncates to the written position), removes the segments created after it, and
    /// syncs both (the file and the directory), so no byte of the failed round survives a
    /// crash: recovery reads the zeros as the unused end of the active segment.
    fn cut_back(&self, st: &mut State) -> std::io::Result<()> {
        let keep_to = st.written_pos;
        let keep = st.journal.segments.partition_point(|s| s.base < keep_to);
        let last = keep
            .checked_sub(1)
            .and_then(|i| st.journal.segments.get(i).cloned())
            .ok_or_else(|| std::io::Error::other("no segment holds the written journal"))?;
        // The allocation made before the failed round stays, zeroed over the round's bytes (the
        // space is the file's already, so this cannot run out of it): giving it back would
        // let the next probe find exactly that space and the log flap between writable and
        // full, one index rebuild per flap. If zeroing fails anyway, the file is cut to the
        // written position, which is always correct.
        let (alloc_base, alloc_end) = st.alloc;
        let zeroed = alloc_base == last.base
            && alloc_end > keep_to
            && Preallocation { file: last.file.clone(), base: last.base, from: keep_to, to: alloc_end }.write().is_ok();
        let keep_len = if zeroed { alloc_end } else { keep_to };
        last.file.set_len(keep_len - last.base)?;
        // What the relaxed policies wrote but had not synced yet becomes durable here too.
        for (_, f) in Self::segment_files(st, st.durable_pos.min(keep_to)) {
            f.sync_data()?;
        }
        st.journal.remove_segments_after(keep - 1).map_err(|e| match e {
            Error::Io(io) => io,
            other => std::io::Error::other(other.to_string()),
        })?;
        st.alloc = (last.base, keep_len);
        st.next_pos = keep_to;
        st.durable_pos = keep_to;
        Ok(())
    }

    /// Rebuilds the index from the checkpoint on disk and the journal after it, as opening
    /// does, after a failed round's frames were cut back: they were indexed when queued. The
    /// rebuilt index must end exactly where the journal is written and acknowledged.
    fn rebuild_index(&self, st: &mut State) -> Result<()> {
        // The old index goes first: two of them may not fit in memory.
        st.index = Index::default();
        let (mut index, mark) = match checkpoint::read(&self.storage, &self.dir)? {
            None => (Index::default(), None),
            Some(bytes) => match checkpoint::decode(&bytes) {
                Ok((mut index, mark)) if mark.pos <= st.written_pos => {
                    match crate::txn::restore(&mut index, |pos, len| journal_bytes(&st.journal, pos, len)) {
                        Ok(()) => (index, Some(mark)),
                        Err(_) => (Index::default(), None),
                    }
                }
                _ => (Index::default(), None),
            },
        };
        let start = mark.map_or(0, |m| m.pos);
        let outcome = recovery::replay(&mut st.journal, start, start, |pos, header, payload| {
            apply_frame(&mut index, pos, header, payload)
        })?;
        let end = outcome.end_pos.max(SEGMENT_HEADER_LEN);
        if end != st.written_pos || index.next_seq != st.visible_seq {
            return Err(Error::Corrupted {
                file: self.dir.join("journal"),
                offset: end,
                what: format!(
                    "the rebuilt index ends at journal position {end} and sequence {}, the log at {} and {}",
                    index.next_seq, st.written_pos, st.visible_seq
                ),
            });
        }
        st.index = index;
        st.last_frame = outcome.last_frame.or(mark.and_then(|m| m.last_frame));
        Ok(())
    }

    /// Writes the queued chunks; returns the files to sync.
    fn write_chunks(
        journal_segments: &[(u64, Arc<dyn StorageFile>)],
        chunks: &[Chunk],
    ) -> std::io::Result<Vec<Arc<dyn StorageFile>>> {
        let mut touched: Vec<Arc<dyn StorageFile>> = Vec::new();
        let mut touched_bases: Vec<u64> = Vec::new();
        for chunk in chunks {
            let i = journal_segments.partition_point(|(b, _)| *b <= chunk.pos);
            let (base, file) =
                &journal_segments[i.checked_sub(1).ok_or_else(|| std::io::Error::other("no segment"))?];
            file.write_all_at(&chunk.bytes, chunk.pos - base)?;
            if !touched_bases.contains(base) {
                touched_bases.push(*base);
                touched.push(file.clone());
            }
        }
        Ok(touched)
    }

    /// The segments holding journal positions at or after `from`: the ones a commit round or
    /// a sync must touch. Several rolls can happen while a round is in flight, so this is not
    /// a fixed number of trailing segments.
    fn segment_files(st: &State, from: u64) -> Vec<(u64, Arc<dyn StorageFile>)> {
        let first = st.journal.segments.partition_point(|s| s.base <= from).saturating_sub(1);
        st.journal.segments[first..].iter().map(|s| (s.base, s.file.clone())).collect()
    }

    /// The commit thread: run a round whenever frames are queued and nobody else runs one,
    /// and the timed syncs of the relaxed policies.
    fn run_committer(self: Arc<Self>) {
        let mut st = self.lock();
        loop {
            if st.in_flight.is_some() {
                // An appender is leading a round; it signals `work` when the round ends with
                // more queued or the log closing. Nothing may be written beside it, and
                // closing must wait for it.
                st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            if st.poisoned.is_some() {
                // Fail-stop: nothing queued will ever be acknowledged.
                st.pending.clear();
                self.publish(&mut st);
                if st.closed {
                    return;
                }
                st = self.work.wait(st).unwrap_or_else(|e| e.into_inner());
                continue;
            }
            if st.pending.is_empty() {
                if st.closed {
                    self.final_sync(&mut st);
                    return;
                }
                if let Some(due) = st.disk_full.as_ref().map(|f| f.next_probe) {
                    // Nothing can be queued while the disk is full: look for space on time.
                    let now = Instant::now();
                    if now >= due {
                        self.probe_space(&mut st, false);
                    } else {
                        st = self.work.wait_timeout(st, due - now).unwrap_or_else(|e| e.into_inner()).0;
                    }
                    continue;
                }
                st = match self.config.fsync {
                    FsyncPolicy::Interval(every) if st.written_pos > st.durable_pos => {
                        let due = st.last_sync + every;
                        let now = Instant::now();
                        if now >= due {
                            self.final_sync(&mut st);
                            continue;
                        }
                        self.work.wait_timeout(st, due - now).unwrap_or_else(|e| e.into_inner()).0
                    }
                    _ => self.work.wait(st).unwrap_or_else(|e| e.into_inner()),
                };
                continue;
            }
            st = self.commit_round(st);
        }
    }

    /// One commit round: takes the whole queue, writes it (and pre-allocation zeros) with the
    /// lock released, syncs under `always`, then publishes the new visible position. Run by
    /// the commit thread or by an appender leading its own round; the caller checked that
    /// frames are queued, no round is in flight and the log is not poisoned.
    fn commit_round<'a>(&'a self, mut st: MutexGuard<'a, State>) -> MutexGuard<'a, State> {
        assert!(st.in_flight.is_none(), "two commit rounds at once");
        assert!(!st.pending.is_empty(), "a commit round with nothing queued");
        let chunks = Arc::new(std::mem::take(&mut st.pending));
        // The round writes strictly after what is written, in position order and without
        // overlap (a roll to a new segment skips its header, so gaps are allowed).
        let mut written_to = st.written_pos;
        for c in chunks.iter() {
            assert!(c.pos >= written_to, "chunk at {} overlaps the journal up to {written_to}", c.pos);
            written_to = c.pos + c.bytes.len() as u64;
        }
        assert_eq!(written_to, st.next_pos, "the queued chunks end where the next frame goes");
        st.in_flight = Some(chunks.clone());
        let end_pos = st.next_pos;
        let end_seq = st.index.next_seq;
        let files = Self::segment_files(&st, chunks.first().map_or(st.next_pos, |c| c.pos));
        let policy = self.config.fsync;
        let bytes: u64 = chunks.iter().map(|c| c.bytes.len() as u64).sum();
        let prealloc = self.plan_preallocation(&st, &chunks, bytes);
        drop(st);
        // The pre-allocation first: on a full disk it fails before any byte of the round is
        // written, and the frames then go into space the file already holds.
        let result = (|| {
            if let Some(p) = &prealloc {
                p.write().map_err(RoundFailure::Write)?;
            }
            let touched = Self::write_chunks(&files, &chunks).map_err(RoundFailure::Write)?;
            let started = Instant::now();
            if policy == FsyncPolicy::Always {
                for f in &touched {
                    f.sync_data().map_err(RoundFailure::Sync)?;
                }
            }
            Ok((touched.len() as u64, started.elapsed()))
        })();
        st = self.lock();
        st.in_flight = None;
        match result {
            Ok((synced, sync_took)) => {
                // Positions only move forward; the round ends where it was planned to.
                assert!(end_pos >= st.written_pos && end_seq >= st.visible_seq, "a commit round moved backwards");
                if let Some(p) = prealloc.filter(|p| st.alloc.0 == p.base) {
                    st.alloc.1 = st.alloc.1.max(p.to);
                }
                st.written_pos = end_pos;
                if policy == FsyncPolicy::Always {
                    st.durable_pos = end_pos;
                    st.stats.syncs += synced;
                    st.stats.record_sync_latency(sync_took);
                    st.last_sync = Instant::now();
                }
                st.visible_pos = end_pos;
                st.visible_seq = end_seq;
                st.since_checkpoint += bytes;
                st.stats.commit_rounds += 1;
                st.stats.bytes_written += bytes;
                st.check_positions(policy);
                self.publish(&mut st);
                self.maybe_checkpoint(&mut st);
            }
            Err(failure) => self.round_failed(&mut st, failure, end_pos),
        }
        if !st.pending.is_empty() || st.closed {
            // Frames queued during the round, or a close waiting for it: the commit thread's.
            self.work.notify_one();
        }
        st
    }

    /// Whether this round should write zeros ahead of itself, and where (see
    /// [`LogConfig::preallocate_bytes`]).
    fn plan_preallocation(&self, st: &State, chunks: &[Chunk], bytes: u64) -> Option<Preallocation> {
        let last = chunks.last()?;
        let round_end = last.pos + last.bytes.len() as u64;
        let (base, allocated) = st.alloc;
        if self.config.preallocate_bytes == 0 || bytes > crate::config::PREALLOCATE_ROUND_MAX || round_end <= allocated
        {
            return None;
        }
        let seg = st.journal.segments.last().filter(|s| s.base == base && last.pos >= base)?;
        let to = (round_end + self.config.preallocate_bytes).min(base + self.config.segment_size_max);
        // From what is allocated, not from the round's end: the zeros go first (see
        // `commit_round`), so the round's own bytes past the allocation are covered too.
        // Never below the written position: a large round grows the file without moving
        // the allocation, and zeros there would overwrite acknowledged frames.
        let from = allocated.max(st.written_pos).max(base + SEGMENT_HEADER_LEN);
        (to > from).then(|| Preallocation { file: seg.file.clone(), base, from, to })
    }

    /// Starts a background checkpoint when enough journal was written since the last one and
    /// none is being written. Encoding happens here, under the lock (appends wait for it);
    /// writing and syncing the file happens on the checkpoint thread.
    fn maybe_checkpoint(&self, st: &mut State) {
        if st.since_checkpoint < self.checkpoint_threshold(st) || self.checkpoint_busy.load(Ordering::Acquire) {
            return;
        }
        if st.checkpoint_failed.as_ref().is_some_and(|(_, retry_at)| Instant::now() < *retry_at) {
            return; // backing off after a failure: encoding costs the appenders the lock
        }
        let tx = self.checkpoint_tx.lock().unwrap_or_else(|e| e.into_inner()).clone();
        let Some(tx) = tx else { return };
        match self.encode_checkpoint_locked(st) {
            Ok(bytes) => {
                self.checkpoint_busy.store(true, Ordering::Release);
                if tx.send(bytes).is_err() {
                    self.checkpoint_busy.store(false, Ordering::Release);
                }
            }
            // The queued frames hit a full disk and were refused, not stored: read-only, not
            // poisoned.
            Err(Error::DiskFull(_)) => {}
            Err(e) => {
                let io = std::io::Error::other(e.to_string());
                self.poison(st, "checkpoint failed", &io);
            }
        }
    }

    /// Journal bytes written since the last checkpoint that call for the next one.
    fn checkpoint_threshold(&self, st: &State) -> u64 {
        self.config.checkpoint_interval_bytes.max(2 * st.last_checkpoint_len)
    }

    /// The checkpoint writer thread. A checkpoint only shortens the next recovery: the journal
    /// holds every acknowledged byte, and a failed write leaves the previous checkpoint in
    /// place (atomic replace), which recovery replays from. So a failure (out of descriptors,
    /// a full disk) is reported ([`Log::checkpoint_error`], `LogStats::checkpoint_failures`)
    /// and retried with backoff, never a poison: it cannot lose or reorder acknowledged data.
    fn run_checkpointer(self: Arc<Self>, rx: std::sync::mpsc::Receiver<Vec<u8>>) {
        for bytes in rx {
            let result = checkpoint::write(&self.storage, &self.dir, &bytes);
            let mut st = self.lock();
            match result {
                Ok(()) => {
                    st.checkpoint_failed = None;
                    st.checkpoint_backoff = CHECKPOINT_RETRY_MIN;
                }
                Err(e) => {
                    st.stats.checkpoint_failures += 1;
                    // The file on disk is older than the state says: close must write one,
                    // and the next round may try again once the backoff has passed.
                    st.checkpoint_pos = None;
                    st.since_checkpoint = st.since_checkpoint.max(self.checkpoint_threshold(&st));
                    let backoff = st.checkpoint_backoff;
                    st.checkpoint_failed =
                        Some((format!("writing the index checkpoint failed: {e}"), Instant::now() + backoff));
                    st.checkpoint_backoff = (backoff * 2).min(CHECKPOINT_RETRY_MAX);
                }
            }
            self.checkpoint_busy.store(false, Ordering::Release);
        }
    }

    /// Syncs what is written but not yet durable (relaxed policies; and at close).
    fn final_sync(&self, st: &mut State) {
        if st.written_pos <= st.durable_pos {
            return;
        }
        let files = Self::segment_files(st, st.durable_pos);
        for (_, f) in &files {
            if let Err(e) = f.sync_data() {
                self.poison(st, "journal sync failed", &e);
                return;
            }
        }
        st.stats.syncs += files.len() as u64;
        st.durable_pos = st.written_pos;
        st.last_sync = Instant::now();
    }

    /// Writes and syncs everything queued while holding the lock (appenders wait), then
    /// writes an index checkpoint covering the whole journal. Called every
    /// `checkpoint_interval_bytes`, at open after a replay, and at close.
    pub(crate) fn checkpoint_locked(&self, st: &mut State) -> Result<()> {
        if st.pending.is_empty() && st.checkpoint_pos == Some(st.next_pos) && st.written_pos == st.durable_pos {
            return Ok(()); // nothing happened since the last checkpoint: it is still exact
        }
        let bytes = self.encode_checkpoint_locked(st)?;
        checkpoint::write(&self.storage, &self.dir, &bytes)?;
        Ok(())
    }

    /// Drains and syncs the commit queue, then encodes the index as a checkpoint covering the
    /// whole journal (everything it describes is durable).
    fn encode_checkpoint_locked(&self, st: &mut State) -> Result<Vec<u8>> {
        if !st.pending.is_empty() {
            let chunks = std::mem::take(&mut st.pending);
            let files = Self::segment_files(st, chunks.first().map_or(st.next_pos, |c| c.pos));
            let end = st.next_pos;
            let synced = Self::write_chunks(&files, &chunks).map_err(RoundFailure::Write).and_then(|touched| {
                for f in &touched {
                    f.sync_data().map_err(RoundFailure::Sync)?;
                }
                Ok(touched)
            });
            let touched = match synced {
                Ok(touched) => touched,
                Err(failure) => {
                    self.round_failed(st, failure, end);
                    return Err(match (&st.poisoned, &st.disk_full) {
                        (Some(why), _) => Error::Poisoned(why.clone()),
                        (None, Some(full)) => Error::DiskFull(full.reason.clone()),
                        (None, None) => Error::Poisoned("journal write failed".into()),
                    });
                }
            };
            st.stats.syncs += touched.len() as u64;
            st.written_pos = st.next_pos;
            st.durable_pos = st.next_pos;
            st.visible_pos = st.next_pos;
            st.visible_seq = st.index.next_seq;
            self.publish(st);
        }
        self.final_sync(st);
        if let Some(why) = &st.poisoned {
            return Err(Error::Poisoned(why.clone()));
        }
        st.index.ids.compact();
        let bytes = checkpoint::encode(&st.index, Mark { pos: st.next_pos, last_frame: st.last_frame });
        st.since_checkpoint = 0;
        st.checkpoint_pos = Some(st.next_pos);
        st.last_checkpoint_len = bytes.len() as u64;
        st.stats.checkpoints += 1;
        Ok(bytes)
    }
}
