//! Goal: transactions in the log keep evident's invariants. Records of an open or aborted
//! transaction are never visible to stream reads, the store-wide read or the committed
//! partition read, while Kafka's offset view (Fetch) has them at once with the right last
//! stable offset and aborted list; a commit makes all of a transaction's records visible at
//! once, over several topics and partitions, with stream versions and commit sequences in
//! commit order and gapless; expected versions and event ids inside a transaction see the
//! committed stream plus the transaction's own records, and of two transactions conditioning
//! on one stream only one gets in. All of it survives a reopen (journal replay and checkpoint)
//! and a crash at every byte of a commit, after which ending the transaction again converges.
//! Method: scenarios on a fresh directory checking exact offsets, versions and sequences; the
//! crash on the simulated disk, cutting the unsynced tail of a commit at every length.

use std::path::Path;
use std::sync::Arc;

use evident_core::control::Marker;
use evident_core::{BatchBuilder, EventData, ExpectedVersion, RecordBatch};
use evident_log::clock::SystemClock;
use evident_log::storage::SimStorage;
use evident_log::{Error, FsyncPolicy, Log, LogConfig, StreamReadOptions, TopicConfig};

const PID: i64 = 7;
const EPOCH: i16 = 0;

/// A transactional batch of `(key, id)` records from producer `pid` at producer sequence `seq`;
/// `expected` goes on the first record as `evident-expected-version`.
fn txn_batch(pid: i64, epoch: i16, seq: i32, records: &[(&str, Option<&str>)], expected: Option<&str>) -> Vec<u8> {
    let mut b = BatchBuilder::new().idempotent(pid, epoch, seq).transactional();
    for (i, (key, id)) in records.iter().enumerate() {
        let mut headers: Vec<(&str, Option<&[u8]>)> = Vec::new();
        if let Some(id) = id {
            headers.push(("ce_id", Some(id.as_bytes())));
        }
        if let (0, Some(e)) = (i, expected) {
            headers.push(("evident-expected-version", Some(e.as_bytes())));
        }
        b.push_parts(Some(key.as_bytes()), Some(format!("{key}-{i}").as_bytes()), &headers, 1_000 + i as i64);
    }
    b.build()
}

fn event(id: &str) -> EventData {
    EventData::json(id, "Happened", br#"{"n":1}"#.to_vec())
}

fn topics(log: &Log) {
    log.create_topic("orders", TopicConfig { partitions: 2, ..TopicConfig::default() }).expect("create orders");
    log.create_topic("payments", TopicConfig { partitions: 1, ..TopicConfig::default() }).expect("create payments");
}

fn stream(log: &Log, topic: &str, key: &str) -> Vec<(u64, u64, u64)> {
    let read = log.read_stream(topic, key.as_bytes(), &StreamReadOptions::default()).expect("read stream");
    read.events.iter().map(|e| (e.version.expect("version"), e.offset, e.sequence)).collect()
}

fn all_sequences(log: &Log) -> Vec<u64> {
    log.read_all(0, 10_000).expect("read all").iter().map(|e| e.sequence).collect()
}

/// Per batch read by Kafka's Fetch: (base offset, records, is control, marker).
fn fetched(log: &Log, topic: &str, partition: u32) -> Vec<(i64, i32, bool, Option<Marker>)> {
    let read = log.read_partition(topic, partition, 0, 1 << 20).expect("read partition");
    read.batches
        .iter()
        .map(|bytes| {
            let batch = RecordBatch::parse_exact(bytes).expect("stored batch");
            let h = *batch.header();
            let marker = h.is_control().then(|| {
                let records = batch.validate_records().expect("records");
                Marker::from_record(&records[0]).expect("a marker")
            });
            (h.base_offset, h.record_count, h.is_control(), marker)
        })
        .collect()
}

#[test]
fn a_commit_over_topics_and_partitions_is_visible_all_at_once_in_commit_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = Log::open(dir.path(), LogConfig::default()).expect("open");
    topics(&log);
    // A plain event first: sequence 0.
    log.append_batch("orders", 0, &plain_batch("o-1"), None).expect("plain");
    let a = log.append_batch("orders", 0, &txn_batch(PID, EPOCH, 0, &[("o-1", None), ("o-2", None)], None), None);
    let a = a.expect("txn orders/0");
    assert!(a.transactional && a.records.iter().all(|r| r.version.is_none()));
    assert_eq!((a.base_offset, a.first_sequence), (1, 0));
    log.append_batch("payments", 0, &txn_batch(PID, EPOCH, 2, &[("p-1", None)], None), None).expect("txn payments");
    // A plain append behind the open transaction, in the same partition and the same stream.
    let behind = log.append_batch("orders", 0, &plain_batch("o-1"), None).expect("plain behind");
    assert_eq!((behind.base_offset, behind.first_sequence, behind.records[0].version), (3, 1, Some(1)));

    // Open: Kafka's view has the records, with the stable offset at the transaction's first;
    // evident's readers have none of them.
    let read = log.read_partition("orders", 0, 0, 1 << 20).expect("fetch");
    assert_eq!((read.high_watermark, read.last_stable_offset), (4, 1));
    assert_eq!(stream(&log, "orders", "o-1"), vec![(0, 0, 0), (1, 3, 1)]);
    assert!(stream(&log, "orders", "o-2").is_empty());
    assert!(stream(&log, "payments", "p-1").is_empty());
    assert_eq!(all_sequences(&log), vec![0, 1]);
    let committed_view: Vec<u64> =
        log.read_partition_events("orders", 0, 0, 100).expect("events").iter().map(|e| e.offset).collect();
    assert_eq!(committed_view, vec![0], "the committed partition view stops at the stable offset");
    assert_eq!(log.open_transactions(), vec![(PID, EPOCH)]);

    let end = log.end_transaction(PID, EPOCH, true, 0).expect("commit");
    assert_eq!(end.committed, 3);
    assert_eq!(end.first_sequence, Some(2));
    assert_eq!(end.markers.len(), 2);
    assert!(log.open_transactions().is_empty());

    // Committed in commit order: after the plain event that was appended behind them.
    assert_eq!(stream(&log, "orders", "o-1"), vec![(0, 0, 0), (1, 3, 1), (2, 1, 2)]);
    assert_eq!(stream(&log, "orders", "o-2"), vec![(0, 2, 3)]);
    assert_eq!(stream(&log, "payments", "p-1"), vec![(0, 0, 4)]);
    assert_eq!(all_sequences(&log), vec![0, 1, 2, 3, 4]);
    assert_eq!(
        fetched(&log, "orders", 0),
        vec![(0, 1, false, None), (1, 2, false, None), (3, 1, false, None), (4, 1, true, Some(Marker::Commit))]
    );
    assert_eq!(fetched(&log, "payments", 0), vec![(0, 1, false, None), (1, 1, true, Some(Marker::Commit))]);
    let read = log.read_partition("orders", 0, 0, 1 << 20).expect("fetch");
    assert_eq!((read.high_watermark, read.last_stable_offset, read.aborted.len()), (5, 5, 0));
    let committed_view: Vec<(u64, u64)> = log
        .read_partition_events("orders", 0, 0, 100)
        .expect("events")
        .iter()
        .map(|e| (e.offset, e.sequence))
        .collect();
    assert_eq!(committed_view, vec![(0, 0), (1, 2), (2, 3), (3, 1)], "markers are skipped");
    // Ending it again changes nothing.
    let again = log.end_transaction(PID, EPOCH, true, 0).expect("again");
    assert_eq!((again.markers.len(), again.committed), (0, 0));
    assert_eq!(all_sequences(&log), vec![0, 1, 2, 3, 4]);
}

fn plain_batch(key: &str) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    b.push_parts(Some(key.as_bytes()), Some(b"plain"), &[], 1_000);
    b.build()
}

#[test]
fn an_abort_is_never_visible_and_is_listed_for_read_committed_fetches() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = Log::open(dir.path(), LogConfig::default()).expect("open");
    topics(&log);
    log.append_batch("orders", 1, &txn_batch(PID, EPOCH, 0, &[("x", Some("id-1")), ("x", None)], None), None)
        .expect("txn");
    let end = log.end_transaction(PID, EPOCH + 1, false, 3).expect("abort with a bumped epoch");
    assert_eq!((end.committed, end.first_sequence, end.markers.len()), (0, None, 1));
    assert!(stream(&log, "orders", "x").is_empty());
    assert!(all_sequences(&log).is_empty());
    let read = log.read_partition("orders", 1, 0, 1 << 20).expect("fetch");
    assert_eq!((read.high_watermark, read.last_stable_offset), (3, 3));
    assert_eq!(read.aborted, vec![evident_log::AbortedTransaction { producer_id: PID, first_offset: 0 }]);
    assert_eq!(fetched(&log, "orders", 1).last(), Some(&(2, 1, true, Some(Marker::Abort))));
    assert!(log.read_partition_events("orders", 1, 0, 10).expect("events").is_empty());
    // The aborted id is free, and the key is no longer tied to the partition the aborted
    // records went to: the stream starts at version 0 with it, wherever the partitioner puts it.
    let out = log.append_events("orders", b"x", ExpectedVersion::NoStream, &[event("id-1")]).expect("after abort");
    assert_eq!((out.records[0].version, out.records[0].sequence), (Some(0), 0));
    // The bumped epoch fences the old one.
    let err = log.append_batch("orders", 1, &txn_batch(PID, EPOCH, 2, &[("y", None)], None), None).unwrap_err();
    assert!(matches!(err, Error::ProducerFenced { .. }), "{err}");
}

#[test]
fn expected_versions_inside_a_transaction_and_streams_it_holds() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = Log::open(dir.path(), LogConfig::default()).expect("open");
    topics(&log);
    log.append_events("payments", b"acct", ExpectedVersion::NoStream, &[event("e0"), event("e1")]).expect("seed");
    // The transaction sees the committed stream (version 1) plus its own records.
    let first = txn_batch(PID, EPOCH, 0, &[("acct", None)], Some("1"));
    log.append_batch("payments", 0, &first, None).expect("at version 1");
    let stale = txn_batch(PID, EPOCH, 1, &[("acct", None)], Some("1"));
    let err = log.append_batch("payments", 0, &stale, None).unwrap_err();
    assert!(matches!(err, Error::WrongExpectedVersion { .. }), "its own record is version 2 now: {err}");
    log.append_batch("payments", 0, &txn_batch(PID, EPOCH, 1, &[("acct", None)], Some("2")), None).expect("at 2");

    // Held: another transaction, a conditional append and a plain one are all refused, naming
    // the stream and the producer.
    let other = txn_batch(8, 0, 0, &[("acct", None)], Some("1"));
    let err = log.append_batch("payments", 0, &other, None).unwrap_err();
    assert!(matches!(&err, Error::StreamInTransaction { key, producer_id: PID, .. } if key == "acct"), "{err}");
    assert!(err.to_string().contains("payments/acct"), "{err}");
    for expected in [ExpectedVersion::Exact(evident_core::Version(1)), ExpectedVersion::Any] {
        let err = log.append_events("payments", b"acct", expected, &[event("e9")]).unwrap_err();
        assert!(matches!(err, Error::StreamInTransaction { producer_id: PID, .. }), "{err}");
    }
    // An id given twice in one transaction is refused.
    let twice = txn_batch(PID, EPOCH, 2, &[("acct", Some("t-1"))], None);
    log.append_batch("payments", 0, &twice, None).expect("id once");
    let err = log.append_batch("payments", 0, &txn_batch(PID, EPOCH, 3, &[("acct", Some("t-1"))], None), None);
    assert!(matches!(err, Err(Error::EventIdInTransaction { .. })), "{err:?}");
    // A producer with an open transaction cannot write outside it.
    let mut outside = BatchBuilder::new().idempotent(PID, EPOCH, 3);
    outside.push_parts(Some(b"other"), Some(b"v"), &[], 1);
    let err = log.append_batch("payments", 0, &outside.build(), None).unwrap_err();
    assert!(matches!(err, Error::InvalidTxnState(_)), "{err}");

    log.end_transaction(PID, EPOCH, true, 0).expect("commit");
    let versions: Vec<u64> = stream(&log, "payments", "acct").iter().map(|e| e.0).collect();
    assert_eq!(versions, vec![0, 1, 2, 3, 4]);
    // Released: the other transaction now conditions on the committed stream.
    log.append_batch("payments", 0, &txn_batch(8, 0, 0, &[("acct", None)], Some("4")), None).expect("after");
    log.end_transaction(8, 0, true, 0).expect("commit the second");
    assert_eq!(stream(&log, "payments", "acct").len(), 6);
    assert_eq!(all_sequences(&log), (0..6).collect::<Vec<u64>>());
}

#[test]
fn unconditional_transactions_interleave_and_conditional_appends_wait_for_them() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = Log::open(dir.path(), LogConfig::default()).expect("open");
    topics(&log);
    // Two transactions write one stream without conditions: both get in.
    log.append_batch("orders", 0, &txn_batch(1, 0, 0, &[("k", None)], None), None).expect("txn 1");
    log.append_batch("orders", 0, &txn_batch(2, 0, 0, &[("k", None)], None), None).expect("txn 2");
    // A conditional append cannot be judged while they are open.
    let err = log.append_events("orders", b"k", ExpectedVersion::NoStream, &[event("c")]).unwrap_err();
    assert!(matches!(err, Error::StreamInTransaction { .. }), "{err}");
    // The key stays in the partition its pending records went to.
    let mut elsewhere = BatchBuilder::new();
    elsewhere.push_parts(Some(b"k"), Some(b"v"), &[], 1);
    let err = log.append_batch("orders", 1, &elsewhere.build(), None).unwrap_err();
    assert!(matches!(err, Error::KeyInOtherPartition { .. }), "{err}");
    // Commit order decides versions: the second transaction commits first.
    log.end_transaction(2, 0, true, 0).expect("commit 2");
    log.end_transaction(1, 0, true, 0).expect("commit 1");
    assert_eq!(stream(&log, "orders", "k"), vec![(0, 1, 0), (1, 0, 1)]);
    let read = log.read_partition("orders", 0, 0, 1 << 20).expect("fetch");
    assert_eq!(read.last_stable_offset, read.high_watermark);
}

/// Everything evident's readers and Kafka's Fetch see, to compare a log before and after a
/// reopen.
fn snapshot(log: &Log) -> String {
    let mut out = String::new();
    for (topic, partitions) in [("orders", 2), ("payments", 1)] {
        for p in 0..partitions {
            let read = log.read_partition(topic, p, 0, 1 << 20).expect("fetch");
            out += &format!(
                "{topic}/{p} hw {} lso {} aborted {:?} batches {:?}\n",
                read.high_watermark,
                read.last_stable_offset,
                read.aborted,
                fetched(log, topic, p)
            );
            // Markers carry the time they were written: the timestamps are left out, so that
            // two runs compare equal.
            let producers: Vec<_> = log
                .partition_producers(topic, p)
                .expect("producers")
                .iter()
                .map(|a| (a.producer_id, a.epoch, a.last_sequence, a.coordinator_epoch, a.current_txn_start_offset))
                .collect();
            out += &format!("{topic}/{p} producers {producers:?}\n");
        }
    }
    for (topic, key) in [("orders", "a"), ("orders", "b"), ("payments", "c")] {
        out += &format!("{topic}/{key} {:?}\n", stream(log, topic, key));
    }
    out += &format!("all {:?}\nopen {:?}\n", all_sequences(log), log.open_transactions());
    out
}

/// Plain appends, a committed, an aborted and an open transaction.
fn mixed_history(log: &Log) {
    topics(log);
    log.append_events("orders", b"a", ExpectedVersion::Any, &[event("a0")]).expect("a0");
    log.append_batch("orders", 0, &txn_batch(1, 0, 0, &[("a", None), ("b", Some("b-id"))], None), None).expect("t1");
    log.append_batch("payments", 0, &txn_batch(1, 0, 2, &[("c", None)], Some("no_stream")), None).expect("t1 p");
    log.append_batch("orders", 1, &txn_batch(2, 0, 0, &[("z", None)], None), None).expect("t2");
    log.end_transaction(1, 0, true, 5).expect("commit t1");
    log.end_transaction(2, 0, false, 6).expect("abort t2");
    log.append_batch("payments", 0, &txn_batch(3, 0, 0, &[("c", None)], Some("0")), None).expect("t3 open");
    log.append_events("orders", b"a", ExpectedVersion::Any, &[event("a2")]).expect("a2");
}

#[test]
fn each_partition_describes_its_producers_as_describe_producers_reports_them() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = Log::open(dir.path(), LogConfig::default()).expect("open");
    mixed_history(&log);
    let producers = |topic: &str, p: u32| -> Vec<(i64, i16, i32, i32, Option<u64>)> {
        let list = log.partition_producers(topic, p).expect("producers");
        list.iter()
            .map(|a| (a.producer_id, a.epoch, a.last_sequence, a.coordinator_epoch, a.current_txn_start_offset))
            .collect()
    };
    // Producer 1 wrote sequences 0-1 to orders/0 and 2 to payments/0 and committed (its
    // markers carry coordinator epoch 5); producer 2 aborted on orders/1 (epoch 6); producer
    // 3's transaction is open from payments' offset 2 (after t1's record and marker) and has
    // no marker yet (-1).
    assert_eq!(producers("orders", 0), vec![(1, 0, 1, 5, None)]);
    assert_eq!(producers("orders", 1), vec![(2, 0, 0, 6, None)]);
    assert_eq!(producers("payments", 0), vec![(1, 0, 2, 5, None), (3, 0, 0, -1, Some(2))]);
    let open = &log.partition_producers("payments", 0).expect("producers")[1];
    assert_eq!(open.last_timestamp, 1_000, "the open batch's largest timestamp");
    assert!(matches!(log.partition_producers("orders", 2), Err(Error::UnknownPartition { .. })));
}

#[test]
fn deleting_records_drops_only_the_aborts_no_fetch_can_need_and_they_stay_dropped() {
    let dir = tempfile::tempdir().expect("tmp");
    let config = LogConfig { checkpoint_interval_bytes: 1, ..LogConfig::default() };
    let log = Log::open(dir.path(), config.clone()).expect("open");
    topics(&log);
    log.append_batch("orders", 1, &txn_batch(PID, EPOCH, 0, &[("x", None)], None), None).expect("txn 1");
    log.end_transaction(PID, EPOCH, false, 0).expect("abort 1");
    log.append_batch("orders", 1, &txn_batch(PID, EPOCH, 1, &[("x", None)], None), None).expect("txn 2");
    log.end_transaction(PID, EPOCH, false, 0).expect("abort 2");
    log.append_batch("orders", 1, &plain_batch("y"), None).expect("plain");
    let aborted = |log: &Log, from: u64| log.read_partition("orders", 1, from, 1 << 20).expect("fetch").aborted;
    assert_eq!(aborted(&log, 0).len(), 2);
    // A fetch past the first abort's marker no longer lists it.
    assert_eq!(aborted(&log, 2), vec![evident_log::AbortedTransaction { producer_id: PID, first_offset: 2 }]);
    // The start at the second abort's marker (offset 3): a fetch from there still needs it.
    log.delete_records("orders", 1, Some(3)).expect("delete records");
    assert_eq!(aborted(&log, 3), vec![evident_log::AbortedTransaction { producer_id: PID, first_offset: 2 }]);
    log.close().expect("close");
    drop(log);
    // The start and the list come back the same from the checkpoint and from a replay.
    for replay in [false, true] {
        if replay {
            std::fs::remove_file(dir.path().join("index.checkpoint")).expect("remove the checkpoint");
        }
        let log = Log::open(dir.path(), config.clone()).expect("reopen");
        assert_eq!(aborted(&log, 3), vec![evident_log::AbortedTransaction { producer_id: PID, first_offset: 2 }]);
        assert_eq!(log.partition_offsets("orders", 1).expect("offsets").log_start_offset, 3);
        log.close().expect("close");
    }
}

#[test]
fn transactions_survive_reopening_by_replay_and_from_the_checkpoint() {
    for from_checkpoint in [false, true] {
        let dir = tempfile::tempdir().expect("tmp");
        let config =
            LogConfig { checkpoint_interval_bytes: if from_checkpoint { 1 } else { 1 << 40 }, ..LogConfig::default() };
        let producers = |log: &Log| -> Vec<_> {
            [("orders", 0), ("orders", 1), ("payments", 0)]
                .iter()
                .map(|(t, p)| log.partition_producers(t, *p).expect("producers"))
                .collect()
        };
        let (before, producers_before) = {
            let log = Log::open(dir.path(), config.clone()).expect("open");
            mixed_history(&log);
            let s = (snapshot(&log), producers(&log));
            log.close().expect("close");
            s
        };
        if !from_checkpoint {
            // Without the checkpoint, opening replays the whole journal.
            std::fs::remove_file(dir.path().join("index.checkpoint")).expect("remove the checkpoint");
        }
        let log = Log::open(dir.path(), config.clone()).expect("reopen");
        assert_eq!(log.recovery_report().checkpoint_loaded, from_checkpoint, "{:?}", log.recovery_report());
        assert_eq!(snapshot(&log), before, "reopened (checkpoint: {from_checkpoint})");
        assert_eq!(producers(&log), producers_before, "producers, timestamps included (checkpoint: {from_checkpoint})");
        assert_eq!(log.open_transactions(), vec![(3, 0)]);
        // The open transaction is still held and still ends.
        let err = log.append_events("payments", b"c", ExpectedVersion::Any, &[event("c9")]).unwrap_err();
        assert!(matches!(err, Error::StreamInTransaction { producer_id: 3, .. }), "{err}");
        log.end_transaction(3, 0, true, 0).expect("commit t3");
        assert_eq!(stream(&log, "payments", "c").iter().map(|e| e.0).collect::<Vec<_>>(), vec![0, 1]);
    }
}

fn sim_config() -> LogConfig {
    LogConfig { fsync: FsyncPolicy::Never, preallocate_bytes: 0, ..LogConfig::default() }
}

fn sim_open(sim: &SimStorage) -> Log {
    Log::open_with(Arc::new(sim.clone()), Path::new("/data"), sim_config(), Arc::new(SystemClock)).expect("open sim")
}

/// The history up to an open transaction over three partitions, closed cleanly (durable),
/// reopened, then the commit written and not synced: the caller crashes it.
fn commit_unsynced(sim: &SimStorage) -> Log {
    {
        let log = sim_open(sim);
        mixed_history(&log);
        log.end_transaction(3, 0, true, 0).expect("commit t3");
        log.append_batch("orders", 0, &txn_batch(4, 0, 0, &[("a", None)], None), None).expect("t4 a");
        log.append_batch("orders", 1, &txn_batch(4, 0, 1, &[("b2", None)], None), None).expect("t4 b");
        log.append_batch("payments", 0, &txn_batch(4, 0, 2, &[("c", None)], None), None).expect("t4 c");
        log.close().expect("close");
    }
    let log = sim_open(sim);
    log.end_transaction(4, 0, true, 0).expect("commit t4");
    log
}

#[test]
fn a_crash_at_every_byte_of_a_commit_leaves_it_whole_or_not_at_all_and_ending_again_converges() {
    // The unsynced tail of the commit: three markers and the end frame.
    let probe = SimStorage::new();
    let log = commit_unsynced(&probe);
    let full = snapshot(&log);
    log.halt();
    let mut tail = 0;
    probe.crash(|unsynced| {
        tail = tail.max(unsynced);
        unsynced
    });
    assert!(tail > 0, "the commit was not left unsynced");
    let (mut whole, mut none) = (0, 0);
    for keep in 0..=tail {
        let sim = SimStorage::new();
        let log = commit_unsynced(&sim);
        log.halt();
        sim.crash(|unsynced| keep.min(unsynced));
        let log = sim_open(&sim);
        let a = stream(&log, "orders", "a");
        if log.open_transactions().iter().any(|&(p, _)| p == 4) {
            // Not committed yet, whatever markers made it: none of its records is visible.
            assert_eq!(a.len(), 3, "keep {keep}: t4's record of stream a is visible before its commit");
            assert!(stream(&log, "orders", "b2").is_empty(), "keep {keep}");
            none += 1;
            // The coordinator ends it again.
            log.end_transaction(4, 0, true, 0).expect("commit again");
        } else {
            whole += 1;
        }
        assert_eq!(snapshot(&log), full, "keep {keep} of {tail}");
        drop(log);
    }
    assert!(whole > 0 && none > 0, "both outcomes were cut ({whole} whole, {none} not yet)");
}
