//! Goal: the log's public API does what its docs say, end to end, on real files.
//! Method: one scenario per behaviour (append, conflicts, idempotent retries, reads in every
//! shape, reopen with and without a checkpoint, segment roll), each on a fresh directory.

use std::sync::Arc;

use evident_core::batch::BatchBuilder;
use evident_core::{EventData, ExpectedVersion, NewRecord};
use evident_log::{Direction, Error, Log, LogConfig, StreamReadOptions, TopicConfig};

fn event(id: &str, ty: &str, n: u64) -> EventData {
    EventData::json(id, ty, format!(r#"{{"n":{n}}}"#).into_bytes())
}

fn open(dir: &std::path::Path) -> Log {
    Log::open(dir, LogConfig { segment_size_max: 64 << 10, ..LogConfig::default() }).expect("open")
}

#[test]
fn append_read_and_conflicts() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.create_topic("accounts", TopicConfig { partitions: 3, ..TopicConfig::default() }).expect("create");
    let a = log
        .append_events(
            "accounts",
            b"acct-1",
            ExpectedVersion::NoStream,
            &[event("e0", "Opened", 0), event("e1", "Deposited", 1)],
        )
        .expect("append");
    assert_eq!(a.records.iter().map(|r| r.version).collect::<Vec<_>>(), vec![Some(0), Some(1)]);
    assert!(!a.duplicate);
    let err = log
        .append_events(
            "accounts",
            b"acct-1",
            ExpectedVersion::Exact(evident_core::Version(0)),
            &[event("e2", "Deposited", 2)],
        )
        .unwrap_err();
    assert!(matches!(err, Error::WrongExpectedVersion { actual: Some(evident_core::Version(1)), .. }), "{err}");
    let b = log
        .append_events(
            "accounts",
            b"acct-1",
            ExpectedVersion::Exact(evident_core::Version(1)),
            &[event("e2", "Deposited", 2)],
        )
        .expect("append");
    assert_eq!(b.records[0].version, Some(2));
    assert_eq!(b.partition, a.partition);

    // Idempotent retry of the first batch.
    let retry = log
        .append_events(
            "accounts",
            b"acct-1",
            ExpectedVersion::NoStream,
            &[event("e0", "Opened", 0), event("e1", "Deposited", 1)],
        )
        .expect("retry");
    assert!(retry.duplicate);
    assert_eq!(retry.records, a.records);
    // Same id, other content.
    let err = log.append_events("accounts", b"acct-1", ExpectedVersion::Any, &[event("e0", "Opened", 99)]).unwrap_err();
    assert!(matches!(err, Error::EventIdReused { .. }), "{err}");
    // Partial duplicate.
    let err = log
        .append_events("accounts", b"acct-1", ExpectedVersion::Any, &[event("e0", "Opened", 0), event("new", "X", 0)])
        .unwrap_err();
    assert!(matches!(err, Error::PartialDuplicate { .. }), "{err}");

    let fwd = log.read_stream("accounts", b"acct-1", &StreamReadOptions::default()).expect("read");
    assert_eq!(
        fwd.events.iter().map(|e| e.id().unwrap_or_default().to_string()).collect::<Vec<_>>(),
        ["e0", "e1", "e2"]
    );
    assert_eq!(fwd.current_version, Some(2));
    let back = log
        .read_stream(
            "accounts",
            b"acct-1",
            &StreamReadOptions { direction: Direction::Backward, limit: 2, ..Default::default() },
        )
        .expect("read");
    assert_eq!(back.events.iter().map(|e| e.version).collect::<Vec<_>>(), [Some(2), Some(1)]);
    let asof = log
        .read_stream("accounts", b"acct-1", &StreamReadOptions { as_of_version: Some(1), ..Default::default() })
        .expect("read");
    assert_eq!(asof.events.len(), 2);

    let all = log.read_all(0, 100).expect("all");
    assert_eq!(all.iter().map(|e| e.sequence).collect::<Vec<_>>(), [0, 1, 2]);
    assert_eq!(all[2].version, Some(2));

    let described = log.describe_topic("accounts").expect("describe");
    assert_eq!(described.meta.config.partitions, 3);
    assert_eq!(described.streams, 1);
    assert_eq!(described.partitions[a.partition as usize].high_watermark, 3);
    let p = log.read_partition("accounts", a.partition, 0, 1 << 20).expect("partition");
    assert_eq!(p.high_watermark, 3);
    assert_eq!(p.batches.len(), 2);
}

#[test]
fn kafka_batches_with_header_expected_version_and_guard() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.create_topic("orders", TopicConfig { partitions: 2, ..TopicConfig::default() }).expect("create");
    let mut b = BatchBuilder::new();
    b.push(NewRecord {
        key: Some(b"o-1".to_vec()),
        value: Some(b"{}".to_vec()),
        headers: vec![("evident-expected-version".into(), Some(b"no_stream".to_vec()))],
        timestamp_ms: 5,
    });
    let bytes = b.build();
    log.append_batch("orders", 0, &bytes, None).expect("first");
    let err = log.append_batch("orders", 0, &bytes, None).unwrap_err();
    assert!(matches!(err, Error::WrongExpectedVersion { .. }), "{err}");
    let mut plain = BatchBuilder::new();
    plain.push(NewRecord { key: Some(b"o-1".to_vec()), value: Some(b"{}".to_vec()), headers: vec![], timestamp_ms: 6 });
    let err = log.append_batch("orders", 1, &plain.build(), None).unwrap_err();
    assert!(matches!(err, Error::KeyInOtherPartition { .. }), "{err}");
    assert_eq!(log.offset_for_timestamp("orders", 0, 5).expect("ts"), Some(0));
    assert_eq!(log.offset_for_timestamp("orders", 0, 6).expect("ts"), None);
}

#[test]
fn reopen_with_and_without_checkpoint_and_across_segments() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let log = open(dir.path());
        log.create_topic("t", TopicConfig::default()).expect("create");
        for i in 0..500u64 {
            log.append_events(
                "t",
                format!("s{}", i % 7).as_bytes(),
                ExpectedVersion::Any,
                &[event(&format!("id{i}"), "E", i)],
            )
            .expect("append");
        }
        log.close().expect("close");
    }
    let segments = std::fs::read_dir(dir.path().join("journal")).expect("ls").count();
    assert!(segments > 1, "small segments roll: {segments}");
    let check = |log: &Log| {
        let all = log.read_all(0, 10_000).expect("all");
        assert_eq!(all.len(), 500);
        let s3 = log.read_stream("t", b"s3", &StreamReadOptions { limit: 10_000, ..Default::default() }).expect("s3");
        assert_eq!(s3.events.len(), (0..500).filter(|i| i % 7 == 3).count());
    };
    {
        let log = open(dir.path());
        assert!(log.recovery_report().checkpoint_loaded);
        check(&log);
        let retry = log.append_events("t", b"s0", ExpectedVersion::Any, &[event("id0", "E", 0)]).expect("retry");
        assert!(retry.duplicate, "idempotence survives restart");
    }
    std::fs::remove_file(dir.path().join("index.checkpoint")).expect("rm");
    let log = open(dir.path());
    assert!(!log.recovery_report().checkpoint_loaded);
    check(&log);
}

#[test]
fn second_open_is_refused() {
    let dir = tempfile::tempdir().expect("tmp");
    let _log = open(dir.path());
    let err = Log::open(dir.path(), LogConfig::default()).unwrap_err();
    assert!(matches!(err, Error::Locked(_)), "{err}");
}

#[test]
fn group_commit_shares_syncs() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = Arc::new(open(dir.path()));
    log.create_topic("t", TopicConfig::default()).expect("create");
    let before = log.stats().syncs;
    let threads: Vec<_> = (0..16)
        .map(|w| {
            let log = log.clone();
            std::thread::spawn(move || {
                for i in 0..50 {
                    log.append_events(
                        "t",
                        format!("w{w}").as_bytes(),
                        ExpectedVersion::Any,
                        &[event(&format!("{w}-{i}"), "E", i)],
                    )
                    .expect("append");
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("join");
    }
    let syncs = log.stats().syncs - before;
    assert!(syncs < 800, "800 appends took {syncs} syncs: group commit is not sharing");
}

#[test]
fn tailing_readers_wake_on_new_records_and_time_out_otherwise() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = Arc::new(open(dir.path()));
    log.create_topic("t", TopicConfig::default()).expect("create");
    // Nothing arrives: the wait times out and says so.
    assert!(!log.wait_for_offset("t", 0, 0, std::time::Duration::from_millis(20)).expect("wait"));
    assert!(!log.wait_for_sequence(0, std::time::Duration::from_millis(20)).expect("wait"));
    let waiter = {
        let log = log.clone();
        std::thread::spawn(move || {
            let by_offset = log.wait_for_offset("t", 0, 0, std::time::Duration::from_secs(60)).expect("wait");
            let by_sequence = log.wait_for_sequence(0, std::time::Duration::from_secs(60)).expect("wait");
            (by_offset, by_sequence)
        })
    };
    log.append_events("t", b"k", ExpectedVersion::Any, &[event("x", "E", 1)]).expect("append");
    assert_eq!(waiter.join().expect("join"), (true, true));
    assert!(matches!(
        log.wait_for_offset("t", 9, 0, std::time::Duration::from_millis(1)),
        Err(Error::UnknownPartition { .. })
    ));
}

/// Regression (found by the kill -9 crash loop): a process killed while creating a segment can
/// leave the new file empty or with a zeroed header. Recovery must remove it rather than take
/// its zeros for the pre-allocated end of a segment, or the next frame lands where the header
/// belongs and the store no longer opens.
#[test]
fn a_torn_segment_creation_is_removed_not_written_into() {
    for torn in [Vec::new(), vec![0u8; 64], vec![0u8; 4096]] {
        let dir = tempfile::tempdir().expect("tmp");
        let end = {
            let log = open(dir.path());
            log.create_topic("t", TopicConfig::default()).expect("create");
            for i in 0..50u64 {
                log.append_events("t", b"k", ExpectedVersion::Any, &[event(&format!("a{i}"), "E", i)]).expect("append");
            }
            log.close().expect("close");
            log.stats().durable_position
        };
        std::fs::write(dir.path().join("journal").join(format!("{end:020}.journal")), &torn).expect("torn file");
        {
            let log = open(dir.path());
            for i in 0..50u64 {
                log.append_events("t", b"k", ExpectedVersion::Any, &[event(&format!("b{i}"), "E", i)]).expect("append");
            }
            log.close().expect("close");
        }
        let log = open(dir.path());
        let read = log.read_stream("t", b"k", &StreamReadOptions { limit: 1000, ..Default::default() }).expect("read");
        assert_eq!(read.events.len(), 100, "torn file of {} bytes", torn.len());
    }
}

#[test]
fn partition_events_carry_versions_sequences_and_sizes() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.create_topic("t", TopicConfig::default()).expect("create");
    log.create_topic("u", TopicConfig::default()).expect("create");
    log.append_events("t", b"a", ExpectedVersion::NoStream, &[event("a0", "X", 0), event("a1", "X", 1)]).expect("a");
    log.append_events("u", b"z", ExpectedVersion::NoStream, &[event("z0", "X", 0)]).expect("z");
    log.append_events("t", b"b", ExpectedVersion::NoStream, &[event("b0", "X", 0)]).expect("b");
    log.append_events("t", b"a", ExpectedVersion::Exact(evident_core::Version(1)), &[event("a2", "X", 2)]).expect("a2");
    let events = log.read_partition_events("t", 0, 1, 100).expect("read");
    let seen: Vec<(u64, Option<u64>, u64, Option<&str>)> =
        events.iter().map(|e| (e.offset, e.version, e.sequence, e.id())).collect();
    assert_eq!(
        seen,
        vec![(1, Some(1), 1, Some("a1")), (2, Some(0), 3, Some("b0")), (3, Some(2), 4, Some("a2"))],
        "starts inside a batch, skips the other topic, fills versions per stream"
    );
    assert_eq!(log.read_partition_events("t", 0, 0, 2).expect("limit").len(), 2);
    assert!(log.read_partition_events("t", 0, 4, 10).expect("at the end").is_empty());
    assert!(matches!(log.read_partition_events("t", 0, 5, 10), Err(Error::OffsetOutOfRange { .. })));
    let d = log.describe_topic("t").expect("describe");
    assert_eq!(d.partition_bytes.len(), 1);
    assert!(d.partition_bytes[0] > 0);
    let stats = log.stats();
    assert_eq!(stats.sync_latency_counts.iter().sum::<u64>(), stats.commit_rounds, "one latency sample per round");
    assert!(log.poisoned().is_none());
}

/// A topic's configuration altered (Kafka's AlterConfigs) is durable: replayed from the journal
/// and kept by the checkpoint; a LogAppendTime topic stamps its batches with the log's clock
/// (timestamp-type bit, max timestamp, a valid CRC) and refuses nothing else; a compacted one
/// refuses keyless records.
#[test]
fn an_altered_configuration_applies_at_once_and_survives_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    let keyless = || {
        let mut b = BatchBuilder::new();
        b.push(NewRecord { key: None, value: Some(b"v".to_vec()), headers: vec![], timestamp_ms: 1 });
        b.build()
    };
    {
        let log = open(dir.path());
        log.create_topic("t", TopicConfig { partitions: 2, ..TopicConfig::default() }).expect("create");
        log.append_batch("t", 0, &keyless(), None).expect("keyless records on a delete-policy topic");
        let wanted = TopicConfig {
            partitions: 2,
            cleanup_policy: evident_log::CleanupPolicy::Compact,
            log_append_time: true,
            ..TopicConfig::default()
        };
        assert!(
            matches!(
                log.alter_topic_config("t", TopicConfig { partitions: 3, ..wanted.clone() }),
                Err(Error::InvalidConfig(_))
            ),
            "the partition count is not a setting"
        );
        assert!(matches!(log.alter_topic_config("nope", wanted.clone()), Err(Error::UnknownTopic(_))));
        assert_eq!(log.alter_topic_config("t", wanted.clone()).expect("alter").config, wanted);
        assert!(matches!(log.append_batch("t", 0, &keyless(), None), Err(Error::KeylessOnCompacted { .. })));
        let mut b = BatchBuilder::new();
        b.push(NewRecord { key: Some(b"k".to_vec()), value: Some(b"v".to_vec()), headers: vec![], timestamp_ms: 1 });
        let out = log.append_batch("t", 0, &b.build(), None).expect("keyed");
        let stamped = out.log_append_time_ms.expect("a LogAppendTime topic answers its append time");
        assert!(stamped > 1);
        let read = log.read_partition("t", 0, 1, 1 << 20).expect("read");
        let batch = evident_core::RecordBatch::parse_exact(&read.batches[0]).expect("valid CRC");
        assert_eq!(batch.header().max_timestamp, stamped);
        assert_eq!(
            batch.header().attributes & evident_core::batch::LOG_APPEND_TIME,
            evident_core::batch::LOG_APPEND_TIME
        );
        log.close().expect("close");
    }
    for remove_checkpoint in [false, true] {
        if remove_checkpoint {
            let _ = std::fs::remove_file(dir.path().join("index.checkpoint"));
        }
        let log = open(dir.path());
        let d = log.describe_topic("t").expect("describe");
        assert!(d.meta.config.log_append_time && d.meta.config.cleanup_policy == evident_log::CleanupPolicy::Compact);
        assert_eq!(d.partitions[0].high_watermark, 2);
        log.close().expect("close");
    }
}

#[test]
fn partitions_can_be_added_and_survive_reopen() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let log = open(dir.path());
        log.create_topic("t", TopicConfig { partitions: 2, ..TopicConfig::default() }).expect("create");
        log.append_events("t", b"a", ExpectedVersion::NoStream, &[event("a0", "X", 0)]).expect("a");
        assert!(matches!(log.create_partitions("t", 2), Err(Error::InvalidConfig(_))), "cannot stay or shrink");
        assert!(matches!(log.create_partitions("nope", 3), Err(Error::UnknownTopic(_))));
        let meta = log.create_partitions("t", 4).expect("grow");
        assert_eq!(meta.config.partitions, 4);
        let mut b = BatchBuilder::new();
        b.push(NewRecord { key: Some(b"z".to_vec()), value: Some(b"v".to_vec()), headers: vec![], timestamp_ms: 1 });
        let out = log.append_batch("t", 3, &b.build(), None).expect("append to a new partition");
        assert_eq!(out.base_offset, 0);
        log.close().expect("close");
    }
    for remove_checkpoint in [false, true] {
        if remove_checkpoint {
            let _ = std::fs::remove_file(dir.path().join("index.checkpoint"));
        }
        let log = open(dir.path());
        let d = log.describe_topic("t").expect("describe");
        assert_eq!(d.meta.config.partitions, 4);
        assert_eq!(d.partitions[3].high_watermark, 1);
        let a = log.read_stream("t", b"a", &StreamReadOptions::default()).expect("stream a");
        assert_eq!(a.current_version, Some(0), "existing streams stay put");
        log.close().expect("close");
    }
}

/// `scan_partition` visits every record once, in offset order, across many reads' worth of
/// batches, and stops at the first record its visitor refuses.
#[test]
fn scan_partition_visits_every_record_in_order() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.create_topic("internal", TopicConfig::default()).expect("create");
    // Enough bytes to take the scan several reads (it reads 4 MiB at a time).
    let big = vec![b'x'; 100_000];
    for i in 0..100u64 {
        let events: Vec<EventData> = (0..3).map(|j| EventData::json(format!("e{i}-{j}"), "T", big.clone())).collect();
        log.append_events("internal", format!("k{}", i % 7).as_bytes(), ExpectedVersion::Any, &events).expect("append");
    }
    let mut seen = Vec::new();
    log.scan_partition("internal", 0, |offset, key, value| {
        assert_eq!(value.map(<[u8]>::len), Some(big.len()));
        seen.push((offset, key.map(<[u8]>::to_vec)));
        Ok::<(), ()>(())
    })
    .expect("scan");
    assert_eq!(seen.iter().map(|(o, _)| *o).collect::<Vec<_>>(), (0..300).collect::<Vec<_>>());
    assert_eq!(seen[299].1.as_deref(), Some(&b"k1"[..]));
    let mut visited = 0;
    let stopped = log.scan_partition("internal", 0, |offset, _, _| {
        visited += 1;
        if offset == 150 {
            Err("stop")
        } else {
            Ok(())
        }
    });
    assert!(matches!(stopped, Err(evident_log::ScanError::Visitor("stop"))), "{stopped:?}");
    assert_eq!(visited, 151);
    assert!(matches!(log.scan_partition("nope", 0, |_, _, _| Ok::<(), ()>(())), Err(evident_log::ScanError::Log(_))));
}

/// An idempotent producer's batch whose every record is already stored (same event ids) is
/// answered with the originals, and still takes its producer sequences: the producer's next
/// batch follows them, before and after a reopen (replayed, and from the checkpoint), and a
/// retry of the deduplicated batch is answered again.
#[test]
fn a_batch_deduplicated_by_event_id_takes_its_producer_sequences() {
    let dir = tempfile::tempdir().expect("tmp");
    let keyed = |pid: i64, seq: i32, id: &str| {
        let mut b = evident_core::BatchBuilder::new().idempotent(pid, 0, seq);
        b.push_parts(Some(b"acct"), Some(b"v"), &[("ce_id", Some(id.as_bytes()))], 1);
        b.build()
    };
    for reopen in [None, Some(false), Some(true)] {
        let _ = std::fs::remove_dir_all(dir.path());
        let log = open(dir.path());
        log.create_topic("t", TopicConfig::default()).expect("create");
        // Another producer stored the event first (a consumer re-processing, say).
        log.append_batch("t", 0, &keyed(1, 0, "e-1"), None).expect("first");
        log.append_batch("t", 0, &keyed(2, 0, "e-0"), None).expect("producer 2, seq 0");
        let dup = log.append_batch("t", 0, &keyed(2, 1, "e-1"), None).expect("duplicate by id");
        assert!(dup.duplicate);
        assert_eq!(dup.base_offset, 0);
        let log = match reopen {
            None => log,
            Some(replay) => {
                log.close().expect("close");
                drop(log);
                if replay {
                    std::fs::remove_file(dir.path().join("index.checkpoint")).expect("rm checkpoint");
                }
                open(dir.path())
            }
        };
        // A retry of the deduplicated batch is a retry, answered the same way.
        let again = log.append_batch("t", 0, &keyed(2, 1, "e-1"), None).expect("retry");
        assert_eq!((again.duplicate, again.base_offset), (true, 0), "reopen {reopen:?}");
        // The next batch follows the deduplicated one's sequence.
        let next = log.append_batch("t", 0, &keyed(2, 2, "e-2"), None).expect("next sequence");
        assert_eq!((next.duplicate, next.base_offset), (false, 2), "reopen {reopen:?}");
        drop(log);
    }
}

/// `check_events` answers what `append_events` would, and writes nothing: the same conflicts,
/// duplicates and refusals, the partition and versions a new append would take.
#[test]
fn check_events_predicts_the_append_and_writes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.create_topic("accounts", TopicConfig { partitions: 3, ..TopicConfig::default() }).expect("create");
    let v = |n| ExpectedVersion::Exact(evident_core::Version(n));
    let batch = [event("e0", "Opened", 0), event("e1", "Deposited", 1)];

    let check = log.check_events("accounts", b"acct-1", ExpectedVersion::NoStream, &batch).expect("check");
    assert!(!check.duplicate);
    assert_eq!(check.records.iter().map(|r| (r.offset, r.version)).collect::<Vec<_>>(), [(0, Some(0)), (1, Some(1))]);
    assert_eq!(log.stats().next_sequence, 0, "a check writes nothing");
    assert_eq!(log.partition_offsets("accounts", check.partition).expect("offsets").high_watermark, 0);
    let again = log.check_events("accounts", b"acct-1", ExpectedVersion::NoStream, &batch).expect("check");
    assert_eq!(again, check, "checking twice changes nothing");

    let made = log.append_events("accounts", b"acct-1", ExpectedVersion::NoStream, &batch).expect("append");
    assert_eq!((made.partition, made.base_offset), (check.partition, check.base_offset), "the check predicted it");
    let next = log.check_events("accounts", b"acct-1", v(1), &[event("e2", "Deposited", 2)]).expect("check");
    assert_eq!((next.base_offset, next.records[0].version), (2, Some(2)));

    // The same refusals as an append, for the same reasons.
    let check_err = log.check_events("accounts", b"acct-1", v(0), &[event("e2", "Deposited", 2)]).unwrap_err();
    let append_err = log.append_events("accounts", b"acct-1", v(0), &[event("e2", "Deposited", 2)]).unwrap_err();
    assert_eq!(check_err.to_string(), append_err.to_string());
    assert!(matches!(check_err, Error::WrongExpectedVersion { actual: Some(evident_core::Version(1)), .. }));
    let reused = log.check_events("accounts", b"acct-1", ExpectedVersion::Any, &[event("e1", "Withdrawn", 9)]);
    assert!(matches!(reused, Err(Error::EventIdReused { .. })), "{reused:?}");
    let partial = log.check_events(
        "accounts",
        b"acct-1",
        ExpectedVersion::Any,
        &[event("e1", "Deposited", 1), event("e9", "Deposited", 9)],
    );
    assert!(matches!(partial, Err(Error::PartialDuplicate { .. })), "{partial:?}");
    assert!(matches!(log.check_events("nope", b"k", ExpectedVersion::Any, &batch), Err(Error::UnknownTopic(_))));
    assert!(matches!(log.check_events("accounts", b"k", ExpectedVersion::Any, &[]), Err(Error::EmptyBatch)));

    // A retry of stored events: the originals' positions, whatever the expected version says.
    let dup = log.check_events("accounts", b"acct-1", v(7), &batch).expect("check");
    assert!(dup.duplicate);
    assert_eq!(dup.records, made.records);
    assert_eq!(log.stats().next_sequence, 2, "still only the one append");
}
