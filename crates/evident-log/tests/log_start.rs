//! Goal: a partition's log start (Kafka's DeleteRecords, `Log::delete_records`) hides the records
//! below it from every read, keeps stream versions and idempotence as they were, never moves
//! back, and is durable when acknowledged: it survives a reopen from the checkpoint, a reopen
//! that replays the journal, and a crash that drops every unsynced byte.
//! Method: one scenario per behaviour on a fresh directory (or the simulated disk for the
//! crash), each checking the exact offsets, versions and sequences a read returns.

use std::path::Path;
use std::sync::Arc;

use evident_core::{EventData, ExpectedVersion, Version};
use evident_log::clock::SystemClock;
use evident_log::storage::SimStorage;
use evident_log::{Direction, Error, Log, LogConfig, StreamReadOptions, TopicConfig};

fn event(id: &str, n: u64) -> EventData {
    EventData::json(id, "Happened", format!(r#"{{"n":{n}}}"#).into_bytes())
}

fn open(dir: &Path) -> Log {
    Log::open(dir, LogConfig::default()).expect("open")
}

/// One topic of one partition holding stream `a` (versions 0..4, offsets 0..4, one event per
/// append) and stream `b` (versions 0..2 at offsets 4..6, one append of two events).
fn seeded(log: &Log) {
    log.create_topic("t", TopicConfig { partitions: 1, ..TopicConfig::default() }).expect("create");
    for n in 0..4 {
        log.append_events("t", b"a", ExpectedVersion::Any, &[event(&format!("a{n}"), n)]).expect("append a");
    }
    log.append_events("t", b"b", ExpectedVersion::NoStream, &[event("b0", 0), event("b1", 1)]).expect("append b");
}

fn offsets(events: &[evident_log::Event]) -> Vec<u64> {
    events.iter().map(|e| e.offset).collect()
}

fn versions(read: &evident_log::StreamRead) -> Vec<Option<u64>> {
    read.events.iter().map(|e| e.version).collect()
}

#[test]
fn reads_below_the_start_are_refused_or_skipped() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    seeded(&log);
    assert_eq!(log.delete_records("t", 0, Some(5)).expect("delete"), 5);
    let o = log.partition_offsets("t", 0).expect("offsets");
    assert_eq!((o.log_start_offset, o.high_watermark), (5, 6));
    assert_eq!(log.topic_offsets("t").expect("offsets")[0].log_start_offset, 5);
    assert_eq!(log.describe_topic("t").expect("describe").partitions[0].log_start_offset, 5);

    // Kafka Fetch and the partition reads: below the start is out of range, naming the start.
    for offset in [0, 4] {
        let err = log.read_partition("t", 0, offset, 1 << 20).unwrap_err();
        assert!(matches!(err, Error::OffsetOutOfRange { log_start: 5, high_watermark: 6, .. }), "{err}");
        let err = log.read_partition_events("t", 0, offset, 10).unwrap_err();
        assert!(matches!(err, Error::OffsetOutOfRange { log_start: 5, .. }), "{err}");
    }
    // At the start: the stored batch holding offsets 4 and 5 is served whole (its CRC covers
    // both records), and the record view returns only offset 5.
    let read = log.read_partition("t", 0, 5, 1 << 20).expect("fetch");
    assert_eq!((read.log_start_offset, read.high_watermark, read.batches.len()), (5, 6, 1));
    assert_eq!(offsets(&log.read_partition_events("t", 0, 5, 10).expect("events")), [5]);

    // Streams: `a` lost every event but keeps its version; `b` starts at its version 1.
    let a = log.read_stream("t", b"a", &StreamReadOptions::default()).expect("a");
    assert_eq!((a.events.len(), a.current_version), (0, Some(3)));
    let b = log.read_stream("t", b"b", &StreamReadOptions::default()).expect("b");
    assert_eq!((versions(&b), b.current_version), (vec![Some(1)], Some(1)));
    let back = StreamReadOptions { direction: Direction::Backward, ..StreamReadOptions::default() };
    assert_eq!(versions(&log.read_stream("t", b"b", &back).expect("b back")), [Some(1)]);
    let from0 = StreamReadOptions { from_version: Some(0), ..StreamReadOptions::default() };
    assert_eq!(versions(&log.read_stream("t", b"b", &from0).expect("b from 0")), [Some(1)]);

    // The store-wide reader (projections) skips them too: only sequence 5 is left.
    let all = log.read_all(0, 100).expect("all");
    assert_eq!(all.iter().map(|e| (e.sequence, e.version)).collect::<Vec<_>>(), [(5, Some(1))]);

    // Timestamps: every record is at or after time 0, but the first one served is offset 5.
    assert_eq!(log.offset_for_timestamp("t", 0, 0).expect("by time"), Some(5));
    assert_eq!(log.record_with_max_timestamp("t", 0).expect("max").map(|(o, _)| o), Some(5));
}

#[test]
fn versions_expected_versions_and_event_ids_count_from_the_true_start() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    seeded(&log);
    log.delete_records("t", 0, None).expect("delete up to the high watermark");
    assert_eq!(log.partition_offsets("t", 0).expect("offsets").log_start_offset, 6);
    // The stream's version is still 3: an expected version of 3 is right, 0 or no-stream wrong.
    let err = log.append_events("t", b"a", ExpectedVersion::NoStream, &[event("a4", 4)]).unwrap_err();
    assert!(matches!(err, Error::WrongExpectedVersion { actual: Some(Version(3)), .. }), "{err}");
    let next = log.append_events("t", b"a", ExpectedVersion::Exact(Version(3)), &[event("a4", 4)]).expect("append");
    assert_eq!((next.base_offset, next.records[0].version), (6, Some(4)));
    // A retry of a deleted event is still a duplicate, answered with its original position:
    // it was stored once, and an at-least-once writer retrying must not bring it back.
    let retry = log.append_events("t", b"a", ExpectedVersion::Any, &[event("a1", 1)]).expect("retry");
    assert!(retry.duplicate);
    assert_eq!((retry.base_offset, retry.records[0].version), (1, Some(1)));
    let a = log.read_stream("t", b"a", &StreamReadOptions::default()).expect("a");
    assert_eq!((versions(&a), a.current_version), (vec![Some(4)], Some(4)));
    assert_eq!(offsets(&log.read_partition_events("t", 0, 6, 10).expect("events")), [6]);
}

#[test]
fn the_start_never_moves_back_and_never_passes_the_high_watermark() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    seeded(&log);
    assert_eq!(log.delete_records("t", 0, Some(3)).expect("delete"), 3);
    assert_eq!(log.delete_records("t", 0, Some(1)).expect("lower: no change"), 3);
    assert_eq!(log.delete_records("t", 0, Some(3)).expect("same: no change"), 3);
    let err = log.delete_records("t", 0, Some(7)).unwrap_err();
    assert!(matches!(err, Error::OffsetOutOfRange { offset: 7, log_start: 3, high_watermark: 6, .. }), "{err}");
    assert!(matches!(log.delete_records("t", 1, Some(0)), Err(Error::UnknownPartition { .. })));
    assert!(matches!(log.delete_records("nope", 0, Some(0)), Err(Error::UnknownTopic(_))));
    assert_eq!(log.partition_offsets("t", 0).expect("offsets").log_start_offset, 3);
}

#[test]
fn other_partitions_and_topics_keep_their_records() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    seeded(&log);
    log.create_topic("u", TopicConfig { partitions: 1, ..TopicConfig::default() }).expect("create u");
    log.append_events("u", b"x", ExpectedVersion::Any, &[event("x0", 0)]).expect("append u");
    log.append_events("t", b"a", ExpectedVersion::Any, &[event("a4", 4)]).expect("append t");
    log.delete_records("t", 0, Some(2)).expect("delete");
    let all = log.read_all(0, 100).expect("all");
    let seen: Vec<(String, u64)> = all.iter().map(|e| (e.topic.to_string(), e.offset)).collect();
    let want: Vec<(String, u64)> =
        [("t", 2), ("t", 3), ("t", 4), ("t", 5), ("u", 0), ("t", 6)].iter().map(|(t, o)| (t.to_string(), *o)).collect();
    assert_eq!(seen, want);
    // A read from the middle of the sequence, and with a limit, keeps to the same rule.
    let tail = log.read_all(3, 2).expect("tail");
    assert_eq!(tail.iter().map(|e| e.sequence).collect::<Vec<_>>(), [3, 4]);
    assert_eq!(log.partition_offsets("u", 0).expect("u").log_start_offset, 0);
}

#[test]
fn the_start_survives_reopening_from_the_checkpoint_and_from_the_journal() {
    let dir = tempfile::tempdir().expect("tmp");
    {
        let log = open(dir.path());
        seeded(&log);
        log.delete_records("t", 0, Some(5)).expect("delete");
        log.close().expect("close");
    }
    for round in ["checkpoint", "journal"] {
        if round == "journal" {
            std::fs::remove_file(dir.path().join("index.checkpoint")).expect("drop checkpoint");
        }
        let log = open(dir.path());
        assert_eq!(log.recovery_report().checkpoint_loaded, round == "checkpoint", "{round}");
        assert_eq!(log.partition_offsets("t", 0).expect("offsets").log_start_offset, 5, "{round}");
        let b = log.read_stream("t", b"b", &StreamReadOptions::default()).expect("b");
        let all = log.read_all(0, 100).expect("all");
        if round == "checkpoint" {
            assert_eq!((versions(&b), all.len()), (vec![Some(1)], 1));
            // Written after the checkpoint, replayed at the next open behind the start's frame.
            log.append_events("t", b"b", ExpectedVersion::Any, &[event("b2", 2)]).expect("append");
            log.halt();
        } else {
            assert_eq!((versions(&b), all.len()), (vec![Some(1), Some(2)], 2));
        }
    }
}

#[test]
fn an_acknowledged_start_survives_a_crash_that_drops_every_unsynced_byte() {
    let sim = SimStorage::new();
    let dir = Path::new("/data");
    let open_sim =
        || Log::open_with(Arc::new(sim.clone()), dir, LogConfig::default(), Arc::new(SystemClock)).expect("open");
    let log = open_sim();
    seeded(&log);
    log.delete_records("t", 0, Some(4)).expect("delete");
    log.halt();
    sim.crash(|_| 0);
    let log = open_sim();
    assert_eq!(log.partition_offsets("t", 0).expect("offsets").log_start_offset, 4);
    assert!(matches!(log.read_partition("t", 0, 3, 1 << 20), Err(Error::OffsetOutOfRange { log_start: 4, .. })));
    assert_eq!(offsets(&log.read_partition_events("t", 0, 4, 10).expect("events")), [4, 5]);
}

#[test]
fn timestamp_lookups_ignore_the_deleted_records_of_the_batch_the_start_cuts() {
    use evident_core::{BatchBuilder, NewRecord};
    let batch = |stamps: &[i64]| {
        let mut b = BatchBuilder::new();
        for &ts in stamps {
            b.push(NewRecord { key: None, value: Some(b"v".to_vec()), headers: Vec::new(), timestamp_ms: ts });
        }
        b.build()
    };
    let dir = tempfile::tempdir().expect("tmp");
    let log = open(dir.path());
    log.create_topic("t", TopicConfig { partitions: 1, ..TopicConfig::default() }).expect("create");
    // Offsets 0..3 in one batch (the largest time at offset 0), then offset 3 alone.
    log.append_batch("t", 0, &batch(&[1_000, 500, 300]), None).expect("first batch");
    log.append_batch("t", 0, &batch(&[400]), None).expect("second batch");
    assert_eq!(log.record_with_max_timestamp("t", 0).expect("max"), Some((0, 1_000)));
    log.delete_records("t", 0, Some(1)).expect("delete");
    // The cut batch's largest retained time (500 at offset 1) beats the next batch's 400.
    assert_eq!(log.record_with_max_timestamp("t", 0).expect("max"), Some((1, 500)));
    assert_eq!(log.record_at_or_after("t", 0, 600).expect("by time"), None);
    assert_eq!(log.record_at_or_after("t", 0, 350).expect("by time"), Some((1, 500)));
    log.delete_records("t", 0, Some(2)).expect("delete");
    // Now only 300 is left of the cut batch: the next batch's 400 is the largest.
    assert_eq!(log.record_with_max_timestamp("t", 0).expect("max"), Some((3, 400)));
    assert_eq!(log.record_at_or_after("t", 0, 350).expect("by time"), Some((3, 400)));
}
