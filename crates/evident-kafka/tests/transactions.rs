//! The transaction coordinator's rules, driven directly (no network) over a real log on disk
//! with a manual clock: a new session of a transactional id fences the previous one and aborts
//! its open transaction; a transaction open past its timeout is aborted with its producer
//! fenced; produce checks name the partition that was not added; EndTxn retries succeed and
//! the other outcome is refused; misuse gets Kafka's codes and changes nothing; the offsets an
//! unfinished transaction holds are pending (OffsetFetch's require_stable); and the state
//! (including offsets committed with a transaction) survives a reopen.

use std::sync::Arc;

use evident_core::BatchBuilder;
use evident_groups::GroupStore;
use evident_kafka::transactions::{Transactions, TxnOffset, TxnState};
use evident_log::clock::{Clock, ManualClock};
use evident_log::{Log, LogConfig, StreamReadOptions, TopicConfig};
use kafka_protocol::error::ResponseError;

fn open(dir: &std::path::Path, clock: Arc<ManualClock>) -> (Arc<Log>, Arc<GroupStore>, Transactions) {
    let log = Arc::new(Log::open(dir, LogConfig::default()).expect("open log"));
    let clock: Arc<dyn Clock> = clock;
    let groups = Arc::new(GroupStore::open(log.clone(), clock.clone()).expect("groups"));
    let txns = Transactions::open(log.clone(), groups.clone(), clock).expect("coordinator");
    (log, groups, txns)
}

fn txn_batch(pid: i64, epoch: i16, seq: i32, key: &str) -> Vec<u8> {
    let mut b = BatchBuilder::new().idempotent(pid, epoch, seq).transactional();
    b.push_parts(Some(key.as_bytes()), Some(b"v"), &[], 1);
    b.build()
}

/// Records of a transaction the coordinator does not know of (written to the log directly here;
/// a coordinator never lets this happen) are aborted when it opens, so no partition's stable
/// offset is held forever.
#[test]
fn an_orphaned_transaction_in_the_log_is_aborted_at_open() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(1_000_000));
    {
        let log = Log::open(dir.path(), LogConfig::default()).expect("open log");
        log.create_topic("out", TopicConfig::default()).expect("topic");
        log.append_batch("out", 0, &txn_batch(55, 2, 0, "k"), None).expect("pending");
        assert_eq!(log.open_transactions(), vec![(55, 2)]);
        log.close().expect("close");
    }
    let (log, _, _) = open(dir.path(), clock);
    assert!(log.open_transactions().is_empty());
    let offsets = log.partition_offsets("out", 0).expect("offsets");
    assert_eq!((offsets.last_stable_offset, offsets.high_watermark), (2, 2), "aborted: a marker after the record");
    assert!(log.read_stream("out", b"k", &StreamReadOptions::default()).expect("read").events.is_empty());
}

#[test]
fn sessions_fence_timeouts_abort_and_the_state_survives_a_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(1_000_000));
    let mut next_pid = 100;
    let mut new_pid = || {
        next_pid += 1;
        next_pid
    };
    {
        let (log, groups, txns) = open(dir.path(), clock.clone());
        log.create_topic("out", TopicConfig { partitions: 2, ..TopicConfig::default() }).expect("topic");
        let (pid, epoch) = txns.init_producer("app", 60_000, None, &mut new_pid).expect("init");
        assert_eq!((pid, epoch), (101, 0));
        // Misuse: wrong producer, old epoch, unknown id, a produce to a partition not added.
        let e = txns.add_partitions("app", 999, 0, &[("out".into(), 0)]).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidProducerIdMapping);
        let e = txns.add_partitions("nope", pid, 0, &[("out".into(), 0)]).unwrap_err();
        assert_eq!(e.code, ResponseError::TransactionalIdNotFound);
        let e = txns.check_produce("app", pid, epoch, "out", 0).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidTxnState);
        assert!(e.message.contains("out/0"), "{}", e.message);
        let e = txns.init_producer("app", 1_000_000, None, &mut new_pid).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidTransactionTimeout);

        // A committed transaction with offsets.
        txns.add_partitions("app", pid, epoch, &[("out".into(), 0), ("out".into(), 1)]).expect("add");
        txns.check_produce("app", pid, epoch, "out", 1).expect("added");
        log.append_batch("out", 0, &txn_batch(pid, epoch, 0, "k"), None).expect("produce");
        txns.add_group("app", pid, epoch, "copier").expect("add group");
        let offset = TxnOffset {
            group: "copier".into(),
            topic: "out".into(),
            partition: 1,
            offset: 7,
            metadata: None,
            leader_epoch: None,
        };
        txns.add_offsets("app", pid, epoch, "copier", vec![offset]).expect("offsets");
        assert!(groups.committed("copier", None).map(|o| o.is_empty()).unwrap_or(true), "not before the commit");
        txns.end_txn("app", pid, epoch, true).expect("commit");
        txns.end_txn("app", pid, epoch, true).expect("a retried commit succeeds");
        let e = txns.end_txn("app", pid, epoch, false).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidTxnState);
        assert_eq!(groups.committed("copier", None).expect("offsets")[0].offset, 7);
        assert_eq!(log.read_stream("out", b"k", &StreamReadOptions::default()).expect("read").events.len(), 1);

        // A second session fences the first and aborts its open transaction.
        txns.add_partitions("app", pid, epoch, &[("out".into(), 0)]).expect("add");
        log.append_batch("out", 0, &txn_batch(pid, epoch, 1, "k"), None).expect("produce");
        let (pid2, epoch2) = txns.init_producer("app", 60_000, None, &mut new_pid).expect("second session");
        assert_eq!((pid2, epoch2), (pid, epoch + 2), "one bump fences and aborts, one is the new session's");
        let e = txns.end_txn("app", pid, epoch, true).unwrap_err();
        assert_eq!(e.code, ResponseError::ProducerFenced);
        // A produce under the fenced epoch: Kafka's partition answers INVALID_PRODUCER_EPOCH.
        let e = txns.check_produce("app", pid, epoch, "out", 0).unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidProducerEpoch);
        assert!(log.open_transactions().is_empty());
        assert_eq!(log.read_stream("out", b"k", &StreamReadOptions::default()).expect("read").events.len(), 1);

        // A transaction open past its timeout is aborted, its producer fenced.
        txns.add_partitions("app", pid2, epoch2, &[("out".into(), 1)]).expect("add");
        log.append_batch("out", 1, &txn_batch(pid2, epoch2, 0, "j"), None).expect("produce");
        clock.set(1_000_000 + 59_000);
        assert_eq!(txns.abort_expired(), 0, "not yet");
        clock.set(1_000_000 + 61_000);
        assert_eq!(txns.abort_expired(), 1);
        let e = txns.add_partitions("app", pid2, epoch2, &[("out".into(), 1)]).unwrap_err();
        assert_eq!(e.code, ResponseError::ProducerFenced);
        assert!(log.open_transactions().is_empty());
        assert!(log.read_stream("out", b"j", &StreamReadOptions::default()).expect("read").events.is_empty());
        log.close().expect("close");
    }
    // Reopened: the id keeps its producer and fenced epoch; a new session bumps it again.
    let (_, groups, txns) = open(dir.path(), clock);
    let (id, meta) = txns.list().into_iter().next().expect("the id");
    assert_eq!((id.as_str(), meta.producer_id, meta.epoch, meta.state), ("app", 101, 3, TxnState::CompleteAbort));
    assert_eq!(txns.init_producer("app", 60_000, None, &mut new_pid).expect("init"), (101, 4));
    assert_eq!(groups.committed("copier", None).expect("offsets")[0].offset, 7);
}

/// The offsets a transaction holds are pending for their group until it ends, committed or
/// aborted (OffsetFetch with require_stable answers them UNSTABLE_OFFSET_COMMIT); TxnOffsetCommit's
/// check of the producer changes nothing and refuses as add_offsets does.
#[test]
fn offsets_held_by_an_unfinished_transaction_are_pending_until_it_ends() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(1_000_000));
    let (log, groups, txns) = open(dir.path(), clock);
    log.create_topic("in", TopicConfig { partitions: 2, ..TopicConfig::default() }).expect("topic");
    let mut pid = 300;
    let (pid, epoch) = txns
        .init_producer("copier", 60_000, None, &mut || {
            pid += 1;
            pid
        })
        .expect("init");
    let offset = |partition, offset| TxnOffset {
        group: "g".into(),
        topic: "in".into(),
        partition,
        offset,
        metadata: None,
        leader_epoch: None,
    };
    for commit in [false, true] {
        let e = txns.check_offsets("copier", pid, epoch, "g").unwrap_err();
        assert_eq!(e.code, ResponseError::InvalidTxnState, "the group was not added");
        txns.add_group("copier", pid, epoch, "g").expect("add group");
        txns.check_offsets("copier", pid, epoch, "g").expect("added");
        assert_eq!(txns.check_offsets("copier", pid, epoch + 1, "g").unwrap_err().code, ResponseError::ProducerFenced);
        assert!(txns.pending_offsets("g").is_empty(), "no offsets sent yet");
        txns.add_offsets("copier", pid, epoch, "g", vec![offset(1, 5)]).expect("offsets");
        assert_eq!(txns.pending_offsets("g").into_iter().collect::<Vec<_>>(), vec![("in".to_string(), 1)]);
        assert!(txns.pending_offsets("other").is_empty());
        txns.end_txn("copier", pid, epoch, commit).expect("end");
        assert!(txns.pending_offsets("g").is_empty(), "ended (commit={commit})");
    }
    assert_eq!(groups.committed("g", None).expect("offsets")[0].offset, 5, "the committed one");
}
