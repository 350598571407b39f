//! Goal: the log's Kafka transactions behave exactly like a simple in-memory reference model
//! over thousands of random interleavings of producers, plain appends, commits, aborts and
//! reopens. What must hold after every step:
//! 1. a stream read shows exactly the committed records, versions 0..n-1 contiguous, in commit
//!    order (a transaction's records take their versions when it commits, after everything
//!    committed before it, batch by batch in the order they were written);
//! 2. the store-wide read has commit sequences 0..N with no gap, each committed record once, in
//!    commit order, and never a pending or aborted record;
//! 3. Kafka's Fetch view of a partition has every batch (pending, committed, aborted, markers)
//!    at its offsets, its last stable offset is the first offset of the oldest open transaction
//!    there (else the high watermark), its aborted list names exactly the aborted
//!    transactions' first offsets; the committed partition view stops at the stable offset;
//! 4. an expected version inside a transaction is judged against the committed stream plus the
//!    transaction's own pending records; a transaction that appends to a stream with an
//!    expectation (other than `any`) or event ids holds it until it ends, and an append is
//!    refused with `StreamInTransaction` when another transaction holds the stream, or when it
//!    conditions on the stream (an expectation other than `any`, or event ids) while another
//!    transaction has records pending there; a refused append changes nothing;
//! 5. a reopen (clean, clean without the index checkpoint so the whole journal is replayed, or
//!    a crash keeping a random part of the unsynced tail) changes nothing, byte for byte, and
//!    open transactions still end after it;
//! 6. a Kafka producer's retry of its open transaction's last batch (same producer sequence) is
//!    answered with the original offsets and changes nothing, before and after a reopen.
//!
//! Method: proptest generates sequences of operations over three transactional producers, two
//! topics of two partitions and two stream keys per partition (a key always goes to the same
//! partition, the one the topics' key partitioner gives it). Each operation runs against the
//! real `Log` on `SimStorage` and against the model (committed records in commit order, each
//! partition's batches, the open transactions' pending batches, the streams they write or
//! hold). Every answer must be the model's (accepted at the exact offsets, sequences and
//! versions, or refused with the exact error), and after every step everything the log shows
//! (every stream, `read_all`, each partition's `read_partition` and `read_partition_events`,
//! `open_transactions`) must equal what the model derives. Event ids are always fresh, so no
//! append is a duplicate by event id (only retries are, by producer sequence).
//! `EVIDENT_TXN_MODEL_CASES` sets the number of cases (default 300).

use std::cell::RefCell;
use std::collections::BTreeMap;
use std::path::Path;
use std::sync::{Arc, OnceLock};

use evident_core::control::Marker;
use evident_core::{BatchBuilder, EventData, ExpectedVersion, RecordBatch, Version};
use evident_log::clock::SystemClock;
use evident_log::storage::{SimStorage, Storage};
use evident_log::{AppendOutcome, Error, Event, Log, LogConfig, StreamReadOptions, TopicConfig};
use proptest::prelude::*;

const TOPICS: [&str; 2] = ["orders", "accounts"];
const PARTITIONS: u32 = 2;
const KEYS_PER_PARTITION: usize = 2;
/// Stream keys per topic: key `k` lives in partition `k / KEYS_PER_PARTITION`.
const KEYS: usize = PARTITIONS as usize * KEYS_PER_PARTITION;
/// The transactional producers' ids; the model names them by index.
const PRODUCERS: [i64; 3] = [101, 102, 103];
/// Every producer keeps its epoch (fencing is covered by the scenario tests).
const EPOCH: i16 = 0;
const DIR: &str = "/data";
/// Whether retries of batches with event ids are generated (the producer-sequence check that
/// recognises a retry runs before the transaction's own event-id check, which once refused it).
const RETRY_BATCHES_WITH_IDS: bool = true;

/// The stream keys, named so the topics' key partitioner puts key `k` in partition
/// `k / KEYS_PER_PARTITION`: `append_events` places a new key by it, while Kafka batches name
/// their partition, and both must agree (one key, one partition).
fn keys() -> &'static [String] {
    static NAMES: OnceLock<Vec<String>> = OnceLock::new();
    NAMES.get_or_init(|| {
        let partitioner = TopicConfig::default().key_partitioner;
        (0..PARTITIONS)
            .flat_map(|p| {
                (0u32..)
                    .map(|i| format!("k{i}"))
                    .filter(move |k| partitioner.partition(k.as_bytes(), PARTITIONS) == p)
                    .take(KEYS_PER_PARTITION)
            })
            .collect()
    })
}

fn key_name(key: usize) -> &'static str {
    &keys()[key]
}

fn partition_of(key: usize) -> u32 {
    (key / KEYS_PER_PARTITION) as u32
}

/// An expectation, turned into an `ExpectedVersion` by the model at the time of the append.
#[derive(Debug, Clone, Copy)]
enum Expect {
    Any,
    NoStream,
    StreamExists,
    /// The stream's last version as the appender sees it: for a transaction, the committed
    /// stream plus its own pending records.
    Current,
    /// The last committed version, ignoring the transaction's own pending records: right only
    /// when it has none in the stream.
    Committed,
    /// One past the current version: always wrong.
    Stale,
}

#[derive(Debug, Clone, Copy)]
enum Reopen {
    /// Close (which writes a checkpoint) and open.
    Clean,
    /// Close, delete the index checkpoint, open: the whole journal is replayed.
    Replay,
    /// Halt as a crash would, keep this part (per mille) of every file's unsynced tail, open:
    /// the last interval checkpoint is loaded and the journal after it replayed.
    Crash { keep_permille: u16 },
}

#[derive(Debug, Clone)]
enum Op {
    /// A transactional batch of producer `producer` to `topic`/`partition`, one record per
    /// entry of `records`: (key slot within the partition, whether it has an event id).
    /// `expect` goes on the first record as `evident-expected-version`.
    Txn {
        producer: usize,
        topic: usize,
        partition: u32,
        records: Vec<(usize, bool)>,
        expect: Option<Expect>,
    },
    /// A plain Kafka batch of `count` records to one stream, without event ids; `expect` is the
    /// expected version `append_batch` is given.
    Plain {
        topic: usize,
        key: usize,
        count: usize,
        expect: Option<Expect>,
    },
    /// `append_events`: `count` events, with ids (so always conditional on the stream).
    Events {
        topic: usize,
        key: usize,
        count: usize,
        expect: Expect,
    },
    /// A Kafka producer's retry of its open transaction's last batch (same bytes, same producer
    /// sequence): answered with the original offsets, changing nothing.
    Retry {
        producer: usize,
    },
    /// `end_transaction`, also for a producer with nothing open (which must change nothing).
    End {
        producer: usize,
        commit: bool,
    },
    Reopen(Reopen),
}

fn expect() -> impl Strategy<Value = Expect> {
    prop_oneof![
        3 => Just(Expect::Any),
        1 => Just(Expect::NoStream),
        1 => Just(Expect::StreamExists),
        3 => Just(Expect::Current),
        2 => Just(Expect::Committed),
        1 => Just(Expect::Stale),
    ]
}

fn op() -> impl Strategy<Value = Op> {
    let records = proptest::collection::vec((0..KEYS_PER_PARTITION, proptest::bool::weighted(0.2)), 1..4);
    let txn = (0..PRODUCERS.len(), 0..TOPICS.len(), 0..PARTITIONS, records, proptest::option::weighted(0.4, expect()));
    let reopen = prop_oneof![
        Just(Reopen::Clean),
        Just(Reopen::Replay),
        (0u16..=1000).prop_map(|keep_permille| Reopen::Crash { keep_permille }),
    ];
    prop_oneof![
        10 => txn.prop_map(|(producer, topic, partition, records, expect)| Op::Txn { producer, topic, partition, records, expect }),
        3 => (0..TOPICS.len(), 0..KEYS, 1usize..3, proptest::option::of(expect()))
            .prop_map(|(topic, key, count, expect)| Op::Plain { topic, key, count, expect }),
        2 => (0..TOPICS.len(), 0..KEYS, 1usize..3, expect())
            .prop_map(|(topic, key, count, expect)| Op::Events { topic, key, count, expect }),
        2 => (0..PRODUCERS.len()).prop_map(|producer| Op::Retry { producer }),
        3 => (0..PRODUCERS.len()).prop_map(|producer| Op::End { producer, commit: true }),
        2 => (0..PRODUCERS.len()).prop_map(|producer| Op::End { producer, commit: false }),
        1 => reopen.prop_map(Op::Reopen),
    ]
}

/// A committed record. Its index in [`Model::committed`] is its commit sequence.
#[derive(Debug, Clone)]
struct Committed {
    topic: usize,
    partition: u32,
    offset: u64,
    key: usize,
    value: String,
}

/// A batch as Kafka's Fetch returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Fetched {
    base_offset: u64,
    records: u32,
    producer: i64,
    transactional: bool,
    /// Set for a control batch: the transaction marker it carries.
    marker: Option<Marker>,
}

/// A batch of an open transaction: (key, value) records from `base_offset`.
#[derive(Debug, Clone)]
struct PendingBatch {
    topic: usize,
    partition: u32,
    base_offset: u64,
    records: Vec<(usize, String)>,
}

/// The last batch an open transaction wrote, for a retry of it.
#[derive(Debug, Clone)]
struct LastBatch {
    topic: usize,
    partition: u32,
    bytes: Vec<u8>,
    base_offset: u64,
    records: u64,
    /// Whether a record carries an event id.
    ids: bool,
}

/// A stream with records of open transactions.
#[derive(Debug, Clone, Default)]
struct PendingStream {
    /// Pending records per producer.
    writers: Vec<(usize, u64)>,
    /// The producer whose transaction appended to it with an expectation or event ids.
    held_by: Option<usize>,
}

#[derive(Debug, Clone, Default)]
struct PartitionModel {
    next_offset: u64,
    fetched: Vec<Fetched>,
    /// (producer id, first offset) of each aborted transaction, in the order of the aborts.
    aborted: Vec<(i64, u64)>,
}

/// One stream of a batch, as the append checks judge it.
#[derive(Debug, Clone, Copy)]
struct Plan {
    key: usize,
    expected: Option<ExpectedVersion>,
    /// Whether a record of the stream carries an event id.
    ids: bool,
}

impl Plan {
    /// An append whose answer depends on the stream's contents (versions, or ids to dedupe).
    fn conditional(&self) -> bool {
        self.ids || self.expected.is_some_and(|e| e != ExpectedVersion::Any)
    }
}

/// What the log must answer to an append.
#[derive(Debug)]
enum Verdict {
    Accept,
    /// Refused for the first stream (in batch order) blocked by another transaction: any of
    /// `producers` may be named.
    InTransaction {
        key: usize,
        producers: Vec<usize>,
    },
    /// Refused for the first stream whose expectation fails; `actual` is the last version as
    /// the appender sees it.
    WrongVersion {
        key: usize,
        actual: Option<u64>,
    },
}

/// The reference.
#[derive(Debug, Default)]
struct Model {
    committed: Vec<Committed>,
    partitions: BTreeMap<(usize, u32), PartitionModel>,
    /// Open transactions (producers with pending batches), their batches in the order written.
    open: BTreeMap<usize, Vec<PendingBatch>>,
    /// The last batch of each open transaction.
    last: BTreeMap<usize, LastBatch>,
    /// Streams (topic, key) with pending records.
    pending: BTreeMap<(usize, usize), PendingStream>,
    /// Next Kafka producer sequence per (producer, topic, partition).
    producer_seq: BTreeMap<(usize, usize, u32), i32>,
    next_value: u64,
}

impl Model {
    fn new() -> Self {
        let mut m = Model::default();
        for t in 0..TOPICS.len() {
            for p in 0..PARTITIONS {
                m.partitions.insert((t, p), PartitionModel::default());
            }
        }
        m
    }

    /// A fresh record value (also the number in its event id).
    fn value(&mut self) -> String {
        self.next_value += 1;
        self.next_value.to_string()
    }

    fn partition(&mut self, topic: usize, partition: u32) -> &mut PartitionModel {
        self.partitions.get_mut(&(topic, partition)).expect("every partition is in the model")
    }

    fn committed_len(&self, topic: usize, key: usize) -> u64 {
        self.committed.iter().filter(|c| c.topic == topic && c.key == key).count() as u64
    }

    fn own_pending(&self, topic: usize, key: usize, producer: usize) -> u64 {
        let stream = self.pending.get(&(topic, key));
        stream.and_then(|s| s.writers.iter().find(|w| w.0 == producer)).map_or(0, |w| w.1)
    }

    /// The stream's last version as `writer` (a transaction, or None for a plain append) sees it.
    fn current(&self, topic: usize, key: usize, writer: Option<usize>) -> Option<u64> {
        let own = writer.map_or(0, |w| self.own_pending(topic, key, w));
        (self.committed_len(topic, key) + own).checked_sub(1)
    }

    fn expected(&self, expect: Expect, topic: usize, key: usize, writer: Option<usize>) -> ExpectedVersion {
        let exact = |v: Option<u64>| v.map_or(ExpectedVersion::NoStream, |v| ExpectedVersion::Exact(Version(v)));
        match expect {
            Expect::Any => ExpectedVersion::Any,
            Expect::NoStream => ExpectedVersion::NoStream,
            Expect::StreamExists => ExpectedVersion::StreamExists,
            Expect::Current => exact(self.current(topic, key, writer)),
            Expect::Committed => exact(self.committed_len(topic, key).checked_sub(1)),
            Expect::Stale => ExpectedVersion::Exact(Version(self.current(topic, key, writer).map_or(0, |v| v + 1))),
        }
    }

    /// The rule of `txn.rs`: a stream held by another transaction takes no append; a
    /// conditional append waits while another transaction has records pending in the stream.
    /// Then the expectations, against the stream as the appender sees it.
    fn judge(&self, topic: usize, plans: &[Plan], writer: Option<usize>) -> Verdict {
        for plan in plans {
            let Some(stream) = self.pending.get(&(topic, plan.key)) else { continue };
            let others: Vec<usize> = stream.writers.iter().map(|w| w.0).filter(|&p| Some(p) != writer).collect();
            let producers = match stream.held_by {
                Some(holder) if Some(holder) != writer => vec![holder],
                _ if plan.conditional() => others,
                _ => Vec::new(),
            };
            if !producers.is_empty() {
                return Verdict::InTransaction { key: plan.key, producers };
            }
        }
        for plan in plans {
            let actual = self.current(topic, plan.key, writer);
            if plan.expected.is_some_and(|e| !e.is_satisfied_by(actual.map(Version))) {
                return Verdict::WrongVersion { key: plan.key, actual };
            }
        }
        Verdict::Accept
    }

    /// The last stable offset of a partition: the first offset of its oldest open transaction.
    fn last_stable_offset(&self, topic: usize, partition: u32) -> u64 {
        let first_of = |batches: &Vec<PendingBatch>| {
            batches.iter().find(|b| b.topic == topic && b.partition == partition).map(|b| b.base_offset)
        };
        let hw = self.partitions[&(topic, partition)].next_offset;
        self.open.values().filter_map(first_of).min().unwrap_or(hw)
    }

    /// Appends committed records (a plain append, or a commit's batch): the next sequences.
    fn commit_records(&mut self, topic: usize, partition: u32, base_offset: u64, records: &[(usize, String)]) {
        for (i, (key, value)) in records.iter().enumerate() {
            let offset = base_offset + i as u64;
            self.committed.push(Committed { topic, partition, offset, key: *key, value: value.clone() });
        }
    }

    /// An accepted transactional batch of `records` (key, value, holds the stream).
    fn add_pending(&mut self, producer: usize, topic: usize, partition: u32, records: &[(usize, String, bool)]) -> u64 {
        let n = records.len() as u64;
        let part = self.partition(topic, partition);
        let base_offset = part.next_offset;
        part.next_offset += n;
        let fetched = Fetched {
            base_offset,
            records: n as u32,
            producer: PRODUCERS[producer],
            transactional: true,
            marker: None,
        };
        part.fetched.push(fetched);
        *self.producer_seq.entry((producer, topic, partition)).or_default() += n as i32;
        for (key, _, holds) in records {
            let stream = self.pending.entry((topic, *key)).or_default();
            match stream.writers.iter_mut().find(|w| w.0 == producer) {
                Some(w) => w.1 += 1,
                None => stream.writers.push((producer, 1)),
            }
            if *holds {
                stream.held_by = Some(producer);
            }
        }
        let records = records.iter().map(|(k, v, _)| (*k, v.clone())).collect();
        self.open.entry(producer).or_default().push(PendingBatch { topic, partition, base_offset, records });
        base_offset
    }

    /// Ends `producer`'s transaction: a marker in each partition it wrote to, then its records
    /// committed (in the order written) or dropped. Returns what `end_transaction` must:
    /// markers (topic, partition, offset), records committed, first commit sequence.
    fn end(&mut self, producer: usize, commit: bool) -> (Vec<(String, u32, u64)>, u64, Option<u64>) {
        self.last.remove(&producer);
        let Some(batches) = self.open.remove(&producer) else { return (Vec::new(), 0, None) };
        let pid = PRODUCERS[producer];
        let mut runs: Vec<(usize, u32)> = batches.iter().map(|b| (b.topic, b.partition)).collect();
        runs.sort_unstable();
        runs.dedup();
        let mut markers = Vec::new();
        for (topic, partition) in runs {
            let first = batches.iter().find(|b| (b.topic, b.partition) == (topic, partition)).map(|b| b.base_offset);
            let part = self.partition(topic, partition);
            let offset = part.next_offset;
            part.next_offset += 1;
            let marker = Some(Marker::of(commit));
            part.fetched.push(Fetched { base_offset: offset, records: 1, producer: pid, transactional: true, marker });
            if !commit {
                part.aborted.push((pid, first.expect("a run has a first batch")));
            }
            markers.push((TOPICS[topic].to_string(), partition, offset));
        }
        self.pending.retain(|_, stream| {
            stream.writers.retain(|w| w.0 != producer);
            if stream.held_by == Some(producer) {
                stream.held_by = None;
            }
            !stream.writers.is_empty()
        });
        if !commit {
            return (markers, 0, None);
        }
        let first_sequence = self.committed.len() as u64;
        for b in &batches {
            self.commit_records(b.topic, b.partition, b.base_offset, &b.records);
        }
        let committed = self.committed.len() as u64 - first_sequence;
        (markers, committed, (committed > 0).then_some(first_sequence))
    }

    /// Everything the log must show.
    fn view(&self) -> View {
        let mut versions: BTreeMap<(usize, usize), u64> = BTreeMap::new();
        let rows: Vec<(usize, usize, Row)> = self
            .committed
            .iter()
            .enumerate()
            .map(|(seq, c)| {
                let v = versions.entry((c.topic, c.key)).or_default();
                *v += 1;
                let row = Row {
                    sequence: seq as u64,
                    topic: TOPICS[c.topic].to_string(),
                    partition: c.partition,
                    offset: c.offset,
                    key: Some(key_name(c.key).to_string()),
                    version: Some(*v - 1),
                    value: c.value.clone(),
                };
                (c.topic, c.key, row)
            })
            .collect();
        let mut streams = BTreeMap::new();
        for t in 0..TOPICS.len() {
            for k in 0..KEYS {
                let stream = rows.iter().filter(|r| (r.0, r.1) == (t, k)).map(|r| r.2.clone()).collect();
                streams.insert((t, k), stream);
            }
        }
        let mut partitions = BTreeMap::new();
        for (&(t, p), part) in &self.partitions {
            let lso = self.last_stable_offset(t, p);
            let mut committed: Vec<Row> = rows
                .iter()
                .filter(|r| r.0 == t && r.2.partition == p && r.2.offset < lso)
                .map(|r| r.2.clone())
                .collect();
            committed.sort_by_key(|r| r.offset);
            let view = PartitionView {
                high_watermark: part.next_offset,
                last_stable_offset: lso,
                aborted: part.aborted.clone(),
                batches: part.fetched.clone(),
                committed,
            };
            partitions.insert((t, p), view);
        }
        let open = self.open.keys().map(|&p| (PRODUCERS[p], EPOCH)).collect();
        View { streams, all: rows.into_iter().map(|r| r.2).collect(), partitions, open }
    }
}

/// A record as a reader returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Row {
    sequence: u64,
    topic: String,
    partition: u32,
    offset: u64,
    key: Option<String>,
    version: Option<u64>,
    value: String,
}

fn row(e: &Event) -> Row {
    Row {
        sequence: e.sequence,
        topic: e.topic.to_string(),
        partition: e.partition,
        offset: e.offset,
        key: e.key.as_ref().map(|k| String::from_utf8_lossy(k).into_owned()),
        version: e.version,
        value: e.value.as_ref().map(|v| String::from_utf8_lossy(v).into_owned()).unwrap_or_default(),
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct PartitionView {
    high_watermark: u64,
    last_stable_offset: u64,
    /// (producer id, first offset).
    aborted: Vec<(i64, u64)>,
    batches: Vec<Fetched>,
    /// `read_partition_events`: the committed records below the last stable offset.
    committed: Vec<Row>,
}

/// Everything the log shows, as the model derives it.
#[derive(Debug, Clone, PartialEq, Eq)]
struct View {
    /// Every stream (topic, key), in version order.
    streams: BTreeMap<(usize, usize), Vec<Row>>,
    /// `read_all` from sequence 0.
    all: Vec<Row>,
    partitions: BTreeMap<(usize, u32), PartitionView>,
    /// `open_transactions`.
    open: Vec<(i64, i16)>,
}

fn fail(what: impl std::fmt::Display) -> TestCaseError {
    TestCaseError::fail(what.to_string())
}

/// Reads everything from the log: the view, and the raw bytes of every stored batch (to check
/// a reopen changes none).
fn observe(log: &Log) -> Result<(View, Vec<Vec<u8>>), TestCaseError> {
    let mut streams = BTreeMap::new();
    let options = StreamReadOptions { limit: 100_000, ..StreamReadOptions::default() };
    for (t, topic) in TOPICS.iter().enumerate() {
        for k in 0..KEYS {
            let read = log.read_stream(topic, key_name(k).as_bytes(), &options).map_err(fail)?;
            let rows: Vec<Row> = read.events.iter().map(row).collect();
            prop_assert_eq!(read.current_version, (rows.len() as u64).checked_sub(1), "{}/{}", topic, key_name(k));
            streams.insert((t, k), rows);
        }
    }
    let all = log.read_all(0, 100_000).map_err(fail)?.iter().map(row).collect();
    let mut partitions = BTreeMap::new();
    let mut raw = Vec::new();
    for (t, topic) in TOPICS.iter().enumerate() {
        for p in 0..PARTITIONS {
            let read = log.read_partition(topic, p, 0, 1 << 24).map_err(fail)?;
            let mut batches = Vec::new();
            for bytes in &read.batches {
                let batch = RecordBatch::parse_exact(bytes).map_err(fail)?;
                let h = *batch.header();
                let marker = if h.is_control() {
                    let records = batch.validate_records().map_err(fail)?;
                    Some(Marker::from_record(&records[0]).ok_or_else(|| fail("a control batch without a marker"))?)
                } else {
                    None
                };
                let records = u32::try_from(h.record_count).map_err(fail)?;
                let base_offset = u64::try_from(h.base_offset).map_err(fail)?;
                let transactional = h.is_transactional();
                batches.push(Fetched { base_offset, records, producer: h.producer_id, transactional, marker });
                raw.push(bytes.to_vec());
            }
            let committed = log.read_partition_events(topic, p, 0, 100_000).map_err(fail)?.iter().map(row).collect();
            let view = PartitionView {
                high_watermark: read.high_watermark,
                last_stable_offset: read.last_stable_offset,
                aborted: read.aborted.iter().map(|a| (a.producer_id, a.first_offset)).collect(),
                batches,
                committed,
            };
            partitions.insert((t, p), view);
        }
    }
    Ok((View { streams, all, partitions, open: log.open_transactions() }, raw))
}

/// A transactional batch of `(key, value, event id)` records from producer `pid` at producer
/// sequence `seq`; `expected` goes on the first record as `evident-expected-version`.
fn txn_batch(pid: i64, seq: i32, records: &[(&str, &str, Option<String>)], expected: Option<&str>) -> Vec<u8> {
    let mut b = BatchBuilder::new().idempotent(pid, EPOCH, seq).transactional();
    for (i, (key, value, id)) in records.iter().enumerate() {
        let mut headers: Vec<(&str, Option<&[u8]>)> = Vec::new();
        if let Some(id) = id {
            headers.push(("ce_id", Some(id.as_bytes())));
        }
        if let (0, Some(e)) = (i, expected) {
            headers.push(("evident-expected-version", Some(e.as_bytes())));
        }
        b.push_parts(Some(key.as_bytes()), Some(value.as_bytes()), &headers, 1_000 + i as i64);
    }
    b.build()
}

/// A plain (non-transactional, non-idempotent) batch of records of one key.
fn plain_batch(key: &str, values: &[String]) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for (i, value) in values.iter().enumerate() {
        b.push_parts(Some(key.as_bytes()), Some(value.as_bytes()), &[], 1_000 + i as i64);
    }
    b.build()
}

/// What happened over the cases, to show the generator reaches the interesting paths.
#[derive(Debug, Default, Clone, Copy)]
struct Counts {
    steps: u64,
    txn_appends: u64,
    plain_appends: u64,
    commits: u64,
    aborts: u64,
    refused_in_txn: u64,
    refused_version: u64,
    reopens: u64,
    retries: u64,
    max_open: u64,
}

impl Counts {
    fn add(&mut self, o: &Counts) {
        self.steps += o.steps;
        self.txn_appends += o.txn_appends;
        self.plain_appends += o.plain_appends;
        self.commits += o.commits;
        self.aborts += o.aborts;
        self.refused_in_txn += o.refused_in_txn;
        self.refused_version += o.refused_version;
        self.reopens += o.reopens;
        self.retries += o.retries;
        self.max_open = self.max_open.max(o.max_open);
    }
}

fn config() -> LogConfig {
    // Small segments and checkpoints, so segment rolls happen and a crash reopens from a
    // checkpoint taken with transactions open, replaying the journal after it.
    LogConfig { segment_size_max: 4096, checkpoint_interval_bytes: 2048, ..LogConfig::default() }
}

fn open(sim: &SimStorage) -> Result<Log, TestCaseError> {
    Log::open_with(Arc::new(sim.clone()), Path::new(DIR), config(), Arc::new(SystemClock)).map_err(fail)
}

struct Harness {
    sim: SimStorage,
    log: Option<Log>,
    model: Model,
    counts: Counts,
}

impl Harness {
    fn new() -> Result<Self, TestCaseError> {
        let sim = SimStorage::new();
        let log = open(&sim)?;
        for topic in TOPICS {
            log.create_topic(topic, TopicConfig { partitions: PARTITIONS, ..TopicConfig::default() }).map_err(fail)?;
        }
        Ok(Harness { sim, log: Some(log), model: Model::new(), counts: Counts::default() })
    }

    fn log(&self) -> &Log {
        self.log.as_ref().expect("open")
    }

    /// Checks a refused append against the model's verdict.
    fn refused(&mut self, verdict: &Verdict, r: Result<AppendOutcome, Error>) -> Result<(), TestCaseError> {
        match (verdict, r) {
            (
                Verdict::InTransaction { key, producers },
                Err(Error::StreamInTransaction { key: k, producer_id, .. }),
            ) => {
                prop_assert_eq!(k.as_str(), key_name(*key));
                prop_assert!(producers.iter().any(|&p| PRODUCERS[p] == producer_id), "{} names {}", k, producer_id);
                self.counts.refused_in_txn += 1;
            }
            (Verdict::WrongVersion { key, actual }, Err(Error::WrongExpectedVersion { key: k, actual: a, .. })) => {
                prop_assert_eq!(k, key_name(*key));
                prop_assert_eq!(a, actual.map(Version));
                self.counts.refused_version += 1;
            }
            (verdict, r) => return Err(fail(format!("the model says {verdict:?}, the log {r:?}"))),
        }
        Ok(())
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        self.counts.steps += 1;
        match op.clone() {
            Op::Txn { producer, topic, partition, records, expect } => {
                let pid = PRODUCERS[producer];
                let keys: Vec<usize> =
                    records.iter().map(|&(slot, _)| partition as usize * KEYS_PER_PARTITION + slot).collect();
                let expected = expect.map(|e| self.model.expected(e, topic, keys[0], Some(producer)));
                let mut plans: Vec<Plan> = Vec::new();
                let mut written = Vec::new();
                for (i, (&key, &(_, with_id))) in keys.iter().zip(&records).enumerate() {
                    let value = self.model.value();
                    let id = with_id.then(|| format!("id-{value}"));
                    match plans.iter_mut().find(|p| p.key == key) {
                        Some(plan) => plan.ids |= with_id,
                        None => plans.push(Plan { key, expected: if i == 0 { expected } else { None }, ids: with_id }),
                    }
                    // A record holds its stream if it carries an event id or the expectation.
                    let holds = with_id || (i == 0 && expected.is_some_and(|e| e != ExpectedVersion::Any));
                    written.push((key, value, id, holds));
                }
                let seq = self.model.producer_seq.get(&(producer, topic, partition)).copied().unwrap_or(0);
                let batch: Vec<(&str, &str, Option<String>)> =
                    written.iter().map(|(k, v, id, _)| (key_name(*k), v.as_str(), id.clone())).collect();
                let text = expected.map(|e| e.to_string());
                let bytes = txn_batch(pid, seq, &batch, text.as_deref());
                let r = self.log().append_batch(TOPICS[topic], partition, &bytes, None);
                let verdict = self.model.judge(topic, &plans, Some(producer));
                if !matches!(verdict, Verdict::Accept) {
                    self.refused(&verdict, r)?;
                    return self.check();
                }
                let out = r.map_err(|e| fail(format!("the model accepts {op:?}, the log refuses: {e}")))?;
                let pending: Vec<(usize, String, bool)> = written.into_iter().map(|(k, v, _, h)| (k, v, h)).collect();
                let base = self.model.add_pending(producer, topic, partition, &pending);
                let ids = records.iter().any(|r| r.1);
                let last = LastBatch { topic, partition, bytes, base_offset: base, records: pending.len() as u64, ids };
                self.model.last.insert(producer, last);
                prop_assert!(out.transactional && !out.duplicate, "{:?}", out);
                prop_assert_eq!((out.partition, out.base_offset, out.first_sequence), (partition, base, 0));
                let positions: Vec<_> = out.records.iter().map(|r| (r.offset, r.sequence, r.version)).collect();
                let want: Vec<_> = (0..pending.len() as u64).map(|i| (base + i, 0, None)).collect();
                prop_assert_eq!(positions, want, "pending records have offsets, no sequence and no version yet");
                self.counts.txn_appends += 1;
                self.counts.max_open = self.counts.max_open.max(self.model.open.len() as u64);
            }
            Op::Plain { topic, key, count, expect } => {
                let values: Vec<String> = (0..count).map(|_| self.model.value()).collect();
                let expected = expect.map(|e| self.model.expected(e, topic, key, None));
                let bytes = plain_batch(key_name(key), &values);
                let r = self.log().append_batch(TOPICS[topic], partition_of(key), &bytes, expected);
                self.plain(topic, key, values, Plan { key, expected, ids: false }, r)?;
            }
            Op::Events { topic, key, count, expect } => {
                let values: Vec<String> = (0..count).map(|_| self.model.value()).collect();
                let events: Vec<EventData> = values
                    .iter()
                    .map(|v| EventData::json(format!("id-{v}"), "Happened", v.as_bytes().to_vec()))
                    .collect();
                let expected = self.model.expected(expect, topic, key, None);
                let r = self.log().append_events(TOPICS[topic], key_name(key).as_bytes(), expected, &events);
                self.plain(topic, key, values, Plan { key, expected: Some(expected), ids: true }, r)?;
            }
            Op::Retry { producer } => {
                let Some(last) = self.model.last.get(&producer).filter(|l| RETRY_BATCHES_WITH_IDS || !l.ids) else {
                    return self.check();
                };
                let r = self.log().append_batch(TOPICS[last.topic], last.partition, &last.bytes, None);
                let out =
                    r.map_err(|e| fail(format!("a retry of producer {}'s last batch: {e}", PRODUCERS[producer])))?;
                prop_assert!(out.transactional && out.duplicate, "{:?}", out);
                let (partition, base) = (last.partition, last.base_offset);
                prop_assert_eq!((out.partition, out.base_offset, out.first_sequence), (partition, base, 0));
                let positions: Vec<_> = out.records.iter().map(|r| (r.offset, r.sequence, r.version)).collect();
                let want: Vec<_> = (0..last.records).map(|i| (base + i, 0, None)).collect();
                prop_assert_eq!(positions, want, "a retry is answered with the original offsets");
                self.counts.retries += 1;
            }
            Op::End { producer, commit } => {
                let r = self.log().end_transaction(PRODUCERS[producer], EPOCH, commit, 0);
                let mut end = r.map_err(|e| fail(format!("end_transaction: {e}")))?;
                let was_open = self.model.open.contains_key(&producer);
                let (mut markers, committed, first_sequence) = self.model.end(producer, commit);
                let mut got: Vec<(String, u32, u64)> =
                    end.markers.drain(..).map(|(t, p, o)| (t.to_string(), p, o)).collect();
                got.sort();
                markers.sort();
                prop_assert_eq!(got, markers, "markers");
                prop_assert_eq!((end.committed, end.first_sequence), (committed, first_sequence));
                if was_open {
                    if commit {
                        self.counts.commits += 1;
                    } else {
                        self.counts.aborts += 1;
                    }
                }
            }
            Op::Reopen(how) => self.reopen(how)?,
        }
        self.check()
    }

    /// Checks a plain append (`append_batch` without a producer, or `append_events`) of
    /// `values` to one stream.
    fn plain(
        &mut self,
        topic: usize,
        key: usize,
        values: Vec<String>,
        plan: Plan,
        r: Result<AppendOutcome, Error>,
    ) -> Result<(), TestCaseError> {
        let verdict = self.model.judge(topic, &[plan], None);
        if !matches!(verdict, Verdict::Accept) {
            return self.refused(&verdict, r);
        }
        let out = r.map_err(|e| fail(format!("the model accepts a plain append, the log refuses: {e}")))?;
        let partition = partition_of(key);
        let base = self.model.partitions[&(topic, partition)].next_offset;
        let first_sequence = self.model.committed.len() as u64;
        let first_version = self.model.committed_len(topic, key);
        prop_assert!(!out.transactional && !out.duplicate, "{:?}", out);
        prop_assert_eq!((out.partition, out.base_offset, out.first_sequence), (partition, base, first_sequence));
        let positions: Vec<_> = out.records.iter().map(|r| (r.offset, r.sequence, r.version)).collect();
        let want: Vec<_> =
            (0..values.len() as u64).map(|i| (base + i, first_sequence + i, Some(first_version + i))).collect();
        prop_assert_eq!(positions, want);
        let part = self.model.partition(topic, partition);
        let records = values.len() as u32;
        part.fetched.push(Fetched { base_offset: base, records, producer: -1, transactional: false, marker: None });
        part.next_offset += u64::from(records);
        let records: Vec<(usize, String)> = values.into_iter().map(|v| (key, v)).collect();
        self.model.commit_records(topic, partition, base, &records);
        self.counts.plain_appends += 1;
        Ok(())
    }

    /// Closes or crashes the log and opens it again: everything it shows must be the same,
    /// down to the stored batches' bytes.
    fn reopen(&mut self, how: Reopen) -> Result<(), TestCaseError> {
        let (before, raw_before) = observe(self.log())?;
        let log = self.log.take().expect("open");
        match how {
            Reopen::Clean | Reopen::Replay => {
                log.close().map_err(fail)?;
                drop(log);
            }
            Reopen::Crash { .. } => log.halt(),
        }
        match how {
            Reopen::Clean => {}
            Reopen::Replay => self.sim.remove_file(&Path::new(DIR).join("index.checkpoint")).map_err(fail)?,
            Reopen::Crash { keep_permille } => self.sim.crash(|unsynced| unsynced * keep_permille as usize / 1000),
        }
        let log = open(&self.sim)?;
        let loaded = log.recovery_report().checkpoint_loaded;
        match how {
            Reopen::Clean => prop_assert!(loaded, "a clean close leaves a checkpoint"),
            Reopen::Replay => prop_assert!(!loaded, "the checkpoint was deleted"),
            Reopen::Crash { .. } => {}
        }
        self.log = Some(log);
        let (after, raw_after) = observe(self.log())?;
        prop_assert_eq!(after, before, "a reopen ({:?}) changed what the log shows", how);
        prop_assert!(raw_after == raw_before, "a reopen ({:?}) changed stored batches", how);
        self.counts.reopens += 1;
        Ok(())
    }

    /// Everything the log shows must be what the model derives.
    fn check(&self) -> Result<(), TestCaseError> {
        let (got, _) = observe(self.log())?;
        let want = self.model.view();
        prop_assert_eq!(&got.all, &want.all, "read_all: the committed records in commit order");
        prop_assert_eq!(&got.streams, &want.streams, "streams");
        for (at, want) in &want.partitions {
            let got = &got.partitions[at];
            let name = format!("{}/{}", TOPICS[at.0], at.1);
            prop_assert_eq!(&got.batches, &want.batches, "{} fetched batches", name);
            prop_assert_eq!(
                (got.high_watermark, got.last_stable_offset),
                (want.high_watermark, want.last_stable_offset),
                "{} high watermark, last stable offset",
                name
            );
            prop_assert_eq!(&got.aborted, &want.aborted, "{} aborted transactions", name);
            prop_assert_eq!(&got.committed, &want.committed, "{} committed records below the stable offset", name);
        }
        prop_assert_eq!(&got.open, &want.open, "open transactions");
        Ok(())
    }
}

fn cases() -> u32 {
    std::env::var("EVIDENT_TXN_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(300)
}

#[test]
fn transactions_match_reference_model() {
    assert!(keys().iter().enumerate().all(|(k, name)| {
        TopicConfig::default().key_partitioner.partition(name.as_bytes(), PARTITIONS) == partition_of(k)
    }));
    let config = ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let totals = RefCell::new(Counts::default());
    let result = runner.run(&proptest::collection::vec(op(), 1..64), |ops| {
        let mut h = Harness::new()?;
        for op in &ops {
            h.step(op)?;
        }
        totals.borrow_mut().add(&h.counts);
        Ok(())
    });
    if let Err(e) = result {
        panic!("the log disagrees with the transaction model: {e}");
    }
    println!("txn_model: cases={} {:?} mismatches=0", cases(), totals.borrow());
}
