//! Goal: every bad input is refused with its own typed error and leaves the log exactly as it
//! was: nothing journaled, no sequence, offset or version consumed, no index entry, nothing
//! visible to any read, before or after reopening.
//!
//! Method: one store on real files with topics, streams and an idempotent producer already in
//! it. Each bad input (oversized, corrupt, truncated or compressed batches, unknown topics and
//! partitions, bad expected versions, keys sent to the wrong partition, bad event ids, duplicate
//! ids, bad topic names and configurations, an existing topic, an offset out of range, and
//! more) is sent once; the error is matched against the variant (and fields) expected, and a
//! fingerprint of the log (`stats()`, every topic's offsets, `read_all`, every stream) taken
//! before is compared with one taken after. A proptest then sends randomly mutated batches:
//! each is refused with the log unchanged, or accepted and read back intact. Finally the store
//! is reopened and compared with the last fingerprint.

use std::path::Path;

use evident_core::batch::{BatchBuilder, RecordBatch};
use evident_core::{BatchError, Compression, EventData, ExpectedVersion, NameError, NewRecord, PartitionId, Version};
use evident_log::{Error, Event, Log, LogConfig, PartitionOffsets, StreamReadOptions, TopicConfig};
use proptest::prelude::*;
use proptest::test_runner::{Config, TestCaseError, TestRunner};

const BATCH_MAX: usize = 16 << 10;

fn config() -> LogConfig {
    LogConfig { segment_size_max: 64 << 10, batch_size_max: BATCH_MAX, ..LogConfig::default() }
}

fn record(key: Option<&str>, value: &[u8], headers: &[(&str, Option<&[u8]>)]) -> NewRecord {
    NewRecord {
        key: key.map(|k| k.as_bytes().to_vec()),
        value: Some(value.to_vec()),
        headers: headers.iter().map(|(k, v)| (k.to_string(), v.map(<[u8]>::to_vec))).collect(),
        timestamp_ms: 1_700_000_000_000,
    }
}

fn batch(records: Vec<NewRecord>) -> Vec<u8> {
    let mut b = BatchBuilder::new();
    for r in records {
        b.push(r);
    }
    b.build()
}

fn keyed(key: &str, id: &str) -> NewRecord {
    record(Some(key), br#"{"ok":true}"#, &[("ce_id", Some(id.as_bytes())), ("ce_type", Some(b"Test"))])
}

/// Recomputes a batch's CRC32C after its covered bytes were changed.
fn fix_crc(bytes: &mut [u8]) {
    let crc = crc32c::crc32c(&bytes[21..]);
    bytes[17..21].copy_from_slice(&crc.to_be_bytes());
}

fn event(id: &str) -> EventData {
    EventData::json(id, "Test", br#"{"n":1}"#.to_vec())
}

/// Everything a caller can observe of the log.
#[derive(Debug, PartialEq)]
struct Fingerprint {
    next_sequence: u64,
    durable_position: u64,
    appends: u64,
    topics: Vec<(String, u32, Vec<PartitionOffsets>)>,
    all: Vec<Event>,
    streams: Vec<(String, Option<u64>, usize)>,
}

fn fingerprint(log: &Log) -> Fingerprint {
    let stats = log.stats();
    let mut topics: Vec<(String, u32, Vec<PartitionOffsets>)> = log
        .list_topics()
        .into_iter()
        .map(|t| {
            let offsets = log.topic_offsets(t.name.as_str()).expect("offsets");
            (t.name.to_string(), t.config.partitions, offsets)
        })
        .collect();
    topics.sort_by(|a, b| a.0.cmp(&b.0));
    let all = log.read_all(0, usize::MAX).expect("read_all");
    let mut keys: Vec<(String, Vec<u8>)> =
        all.iter().filter_map(|e| e.key.as_ref().map(|k| (e.topic.to_string(), k.to_vec()))).collect();
    keys.sort();
    keys.dedup();
    // Streams a refused append might have created (it must not have).
    for t in ["orders", "accounts"] {
        for k in ["o-1", "o-2", "fresh", "null-key", "big", "dup", "long-id", "empty-id", "bad-ev"] {
            keys.push((t.to_string(), k.as_bytes().to_vec()));
        }
    }
    let options = StreamReadOptions { limit: usize::MAX, ..StreamReadOptions::default() };
    let streams = keys
        .into_iter()
        .map(|(t, k)| {
            let s = log.read_stream(&t, &k, &options).expect("read_stream");
            (format!("{t}/{}", String::from_utf8_lossy(&k)), s.current_version, s.events.len())
        })
        .collect();
    Fingerprint {
        next_sequence: stats.next_sequence,
        durable_position: stats.durable_position,
        appends: stats.appends,
        topics,
        all,
        streams,
    }
}

/// Names what differs between two fingerprints (they are too large to print whole).
fn diff(a: &Fingerprint, b: &Fingerprint) -> String {
    let mut out = Vec::new();
    if a.next_sequence != b.next_sequence {
        out.push(format!("next_sequence {} -> {}", a.next_sequence, b.next_sequence));
    }
    if a.durable_position != b.durable_position {
        out.push(format!("durable_position {} -> {}", a.durable_position, b.durable_position));
    }
    if a.appends != b.appends {
        out.push(format!("appends {} -> {}", a.appends, b.appends));
    }
    if a.topics != b.topics {
        out.push(format!("topics {:?} -> {:?}", a.topics, b.topics));
    }
    if a.all != b.all {
        out.push(format!("read_all: {} events -> {}", a.all.len(), b.all.len()));
    }
    if a.streams != b.streams {
        out.push(format!("streams {:?} -> {:?}", a.streams, b.streams));
    }
    out.join("; ")
}

/// Runs one bad input; checks its error and that the log is unchanged.
fn refuse<T: std::fmt::Debug>(
    log: &Log,
    name: &str,
    op: impl FnOnce(&Log) -> evident_log::Result<T>,
    expected: impl FnOnce(&Error) -> bool,
    count: &mut usize,
) {
    let before = fingerprint(log);
    match op(log) {
        Ok(v) => panic!("{name}: accepted ({v:?})"),
        Err(e) => assert!(expected(&e), "{name}: wrong error: {e:?}"),
    }
    let after = fingerprint(log);
    assert!(before == after, "{name}: the refusal changed the log: {}", diff(&before, &after));
    *count += 1;
}

fn setup(dir: &Path) -> Log {
    let log = Log::open(dir, config()).expect("open");
    log.create_topic("orders", TopicConfig { partitions: 2, ..TopicConfig::default() }).expect("create");
    log.create_topic("accounts", TopicConfig::default()).expect("create");
    for i in 0..5 {
        log.append_events("orders", b"o-1", ExpectedVersion::Any, &[event(&format!("o1-{i}"))]).expect("append");
        log.append_events("accounts", b"a-1", ExpectedVersion::Any, &[event(&format!("a1-{i}"))]).expect("append");
    }
    let producer = BatchBuilder::new().idempotent(99, 3, 0);
    let mut p = producer.clone();
    p.push(record(None, b"p0", &[]));
    log.append_batch("orders", 0, &p.build(), None).expect("producer batch");
    log
}

#[test]
fn every_bad_input_gets_its_own_error_and_changes_nothing() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = setup(dir.path());
    let mut n = 0;
    let home = log.read_stream("orders", b"o-1", &Default::default()).expect("read").partition.expect("exists");
    let other = 1 - home;
    let good = batch(vec![keyed("o-1", "fresh-id")]);

    // Size and shape of the batch.
    let big = batch(vec![record(Some("big"), &vec![b'x'; BATCH_MAX], &[("ce_id", Some(b"big"))])]);
    refuse(
        &log,
        "oversized batch",
        |l| l.append_batch("orders", home, &big, None),
        |e| matches!(e, Error::BatchTooLarge { size, max: BATCH_MAX } if *size == big.len()),
        &mut n,
    );
    refuse(
        &log,
        "oversized event",
        |l| {
            l.append_events(
                "orders",
                b"big",
                ExpectedVersion::Any,
                &[EventData::json("big", "T", vec![b'1'; BATCH_MAX])],
            )
        },
        |e| matches!(e, Error::BatchTooLarge { .. }),
        &mut n,
    );
    let mut bad_crc = good.clone();
    let last = bad_crc.len() - 1;
    bad_crc[last] ^= 0x40;
    refuse(
        &log,
        "bad CRC",
        |l| l.append_batch("orders", home, &bad_crc, None),
        |e| matches!(e, Error::InvalidBatch(BatchError::BadCrc { .. })),
        &mut n,
    );
    let mut bad_stored_crc = good.clone();
    bad_stored_crc[18] ^= 1;
    refuse(
        &log,
        "bad stored CRC field",
        |l| l.append_batch("orders", home, &bad_stored_crc, None),
        |e| matches!(e, Error::InvalidBatch(BatchError::BadCrc { .. })),
        &mut n,
    );
    for cut in [1, 7, good.len() - 61, good.len() - 30, good.len() - 1] {
        refuse(
            &log,
            &format!("batch truncated by {cut} bytes"),
            |l| l.append_batch("orders", home, &good[..good.len() - cut], None),
            |e| matches!(e, Error::InvalidBatch(BatchError::Truncated { .. })),
            &mut n,
        );
    }
    refuse(
        &log,
        "empty input",
        |l| l.append_batch("orders", home, &[], None),
        |e| matches!(e, Error::InvalidBatch(BatchError::Truncated { needed: 61, available: 0 })),
        &mut n,
    );
    let mut trailing = good.clone();
    trailing.extend_from_slice(&[0, 0, 0]);
    refuse(
        &log,
        "bytes after the batch",
        |l| l.append_batch("orders", home, &trailing, None),
        |e| matches!(e, Error::InvalidBatch(BatchError::BadLength(_))),
        &mut n,
    );
    let mut magic = good.clone();
    magic[16] = 1;
    refuse(
        &log,
        "magic 1 batch",
        |l| l.append_batch("orders", home, &magic, None),
        |e| matches!(e, Error::InvalidBatch(BatchError::BadMagic(1))),
        &mut n,
    );
    for (bits, codec) in [
        (1, Compression::Gzip),
        (2, Compression::Snappy),
        (3, Compression::Lz4),
        (4, Compression::Zstd),
        (5, Compression::Unknown(5)),
        (7, Compression::Unknown(7)),
    ] {
        let mut compressed = good.clone();
        compressed[22] |= bits;
        fix_crc(&mut compressed);
        refuse(
            &log,
            &format!("compressed batch {codec:?}"),
            |l| l.append_batch("orders", home, &compressed, None),
            |e| matches!(e, Error::InvalidBatch(BatchError::UnsupportedCompression(c)) if *c == codec),
            &mut n,
        );
    }
    // Transactional batches need a producer id; control batches are the log's own.
    for (bit, what) in [(0x10, "transactional batch without a producer id"), (0x20, "control batch")] {
        let mut tx = good.clone();
        tx[22] |= bit;
        fix_crc(&mut tx);
        refuse(
            &log,
            what,
            |l| l.append_batch("orders", home, &tx, None),
            |e| matches!(e, Error::InvalidTxnState(_)),
            &mut n,
        );
    }
    let mut miscounted = batch(vec![keyed("o-1", "m1"), keyed("o-1", "m2")]);
    miscounted[57..61].copy_from_slice(&3i32.to_be_bytes());
    fix_crc(&mut miscounted);
    refuse(
        &log,
        "record count larger than the records",
        |l| l.append_batch("orders", home, &miscounted, None),
        |e| matches!(e, Error::InvalidBatch(BatchError::BadRecord { .. } | BatchError::BadCount { .. })),
        &mut n,
    );
    let mut negative = good.clone();
    negative[57..61].copy_from_slice(&(-1i32).to_be_bytes());
    fix_crc(&mut negative);
    refuse(
        &log,
        "negative record count",
        |l| l.append_batch("orders", home, &negative, None),
        |e| matches!(e, Error::InvalidBatch(BatchError::BadCount { declared: -1, .. })),
        &mut n,
    );
    let mut delta = batch(vec![keyed("o-1", "d1"), keyed("o-1", "d2")]);
    delta[23..27].copy_from_slice(&5i32.to_be_bytes());
    fix_crc(&mut delta);
    refuse(
        &log,
        "last offset delta disagrees",
        |l| l.append_batch("orders", home, &delta, None),
        |e| matches!(e, Error::InvalidBatch(BatchError::BadCount { .. })),
        &mut n,
    );
    let empty = batch(Vec::new());
    refuse(
        &log,
        "batch of no record",
        |l| l.append_batch("orders", home, &empty, None),
        |e| matches!(e, Error::EmptyBatch),
        &mut n,
    );
    refuse(
        &log,
        "no events",
        |l| l.append_events("orders", b"o-1", ExpectedVersion::Any, &[]),
        |e| matches!(e, Error::EmptyBatch),
        &mut n,
    );
    let huge_key = "k".repeat(evident_core::StreamKey::LEN_MAX + 1);
    let too_long_key = batch(vec![keyed(&huge_key, "hk")]);
    refuse(
        &log,
        "key too large",
        |l| l.append_batch("orders", home, &too_long_key, None),
        |e| matches!(e, Error::KeyTooLarge { size, .. } if *size == huge_key.len()),
        &mut n,
    );

    // Where it goes.
    refuse(
        &log,
        "unknown topic (events)",
        |l| l.append_events("nope", b"k", ExpectedVersion::Any, &[event("x")]),
        |e| matches!(e, Error::UnknownTopic(t) if t == "nope"),
        &mut n,
    );
    refuse(
        &log,
        "unknown topic (batch)",
        |l| l.append_batch("nope", 0, &good, None),
        |e| matches!(e, Error::UnknownTopic(t) if t == "nope"),
        &mut n,
    );
    refuse(
        &log,
        "unknown topic with an invalid name",
        |l| l.append_batch("no/pe", 0, &good, None),
        |e| matches!(e, Error::UnknownTopic(_)),
        &mut n,
    );
    for p in [2, 3, u32::MAX] {
        refuse(
            &log,
            &format!("unknown partition {p}"),
            |l| l.append_batch("orders", p, &good, None),
            |e| matches!(e, Error::UnknownPartition { partition: PartitionId(q), partitions: 2, .. } if *q == p),
            &mut n,
        );
    }
    let misplaced = batch(vec![keyed("o-1", "misplaced")]);
    refuse(
        &log,
        "key sent to another partition",
        |l| l.append_batch("orders", other, &misplaced, None),
        |e| {
            matches!(e, Error::KeyInOtherPartition { home: PartitionId(h), sent: PartitionId(s), key, .. }
                if *h == home && *s == other && key == "o-1")
        },
        &mut n,
    );

    // Expected versions.
    for bad in ["-1", "abc", "", " 1", "+1", "1e3", "18446744073709551616", "No_Stream"] {
        let b = batch(vec![record(
            Some("o-1"),
            b"{}",
            &[("ce_id", Some(b"ev-1")), ("evident-expected-version", Some(bad.as_bytes()))],
        )]);
        refuse(
            &log,
            &format!("expected version header {bad:?}"),
            |l| l.append_batch("orders", home, &b, None),
            |e| matches!(e, Error::InvalidExpectedVersion(_)),
            &mut n,
        );
    }
    let not_utf8 = batch(vec![record(Some("o-1"), b"{}", &[("evident-expected-version", Some(&[0xff, 0xfe]))])]);
    refuse(
        &log,
        "expected version header not UTF-8",
        |l| l.append_batch("orders", home, &not_utf8, None),
        |e| matches!(e, Error::InvalidExpectedVersion(_)),
        &mut n,
    );
    let null_key = batch(vec![record(None, b"{}", &[("evident-expected-version", Some(b"0"))])]);
    refuse(
        &log,
        "expected version header on a null-key record",
        |l| l.append_batch("orders", 0, &null_key, None),
        |e| matches!(e, Error::ExpectedVersionWithoutKey),
        &mut n,
    );
    let null_key_plain = batch(vec![record(None, b"{}", &[])]);
    refuse(
        &log,
        "expected version argument for null-key records",
        |l| l.append_batch("orders", 0, &null_key_plain, Some(ExpectedVersion::Exact(Version(0)))),
        |e| matches!(e, Error::ExpectedVersionWithoutKey),
        &mut n,
    );
    refuse(
        &log,
        "wrong expected version",
        |l| l.append_events("orders", b"o-1", ExpectedVersion::Exact(Version(1)), &[event("wev")]),
        |e| matches!(e, Error::WrongExpectedVersion { actual: Some(Version(4)), .. }),
        &mut n,
    );
    refuse(
        &log,
        "no_stream on an existing stream",
        |l| l.append_events("orders", b"o-1", ExpectedVersion::NoStream, &[event("wev")]),
        |e| matches!(e, Error::WrongExpectedVersion { actual: Some(Version(4)), .. }),
        &mut n,
    );
    refuse(
        &log,
        "stream_exists on a new stream",
        |l| l.append_events("orders", b"fresh", ExpectedVersion::StreamExists, &[event("wev")]),
        |e| matches!(e, Error::WrongExpectedVersion { actual: None, .. }),
        &mut n,
    );

    // Event ids.
    refuse(
        &log,
        "empty ce_id",
        |l| l.append_events("orders", b"empty-id", ExpectedVersion::Any, &[event("")]),
        |e| matches!(e, Error::InvalidEventId(_)),
        &mut n,
    );
    let long = "i".repeat(evident_core::envelope::ID_LEN_MAX + 1);
    refuse(
        &log,
        "too-long ce_id",
        |l| l.append_events("orders", b"long-id", ExpectedVersion::Any, &[event(&long)]),
        |e| matches!(e, Error::InvalidEventId(_)),
        &mut n,
    );
    let bad_id = batch(vec![record(Some("bad-ev"), b"{}", &[("ce_id", Some(&[0xc3, 0x28]))])]);
    refuse(
        &log,
        "ce_id not UTF-8",
        |l| l.append_batch("orders", home, &bad_id, None),
        |e| matches!(e, Error::InvalidEventId(_)),
        &mut n,
    );
    refuse(
        &log,
        "duplicate id within one batch",
        |l| l.append_events("orders", b"dup", ExpectedVersion::Any, &[event("same"), event("other"), event("same")]),
        |e| matches!(e, Error::DuplicateIdInBatch { id, key } if id == "same" && key == "dup"),
        &mut n,
    );
    refuse(
        &log,
        "event id reused with other content",
        |l| l.append_events("orders", b"o-1", ExpectedVersion::Any, &[EventData::json("o1-0", "Test", b"{}".to_vec())]),
        |e| matches!(e, Error::EventIdReused { id, version: Version(0), .. } if id == "o1-0"),
        &mut n,
    );
    refuse(
        &log,
        "retry mixing old and new events",
        |l| l.append_events("orders", b"o-1", ExpectedVersion::Any, &[event("o1-1"), event("brand-new")]),
        |e| matches!(e, Error::PartialDuplicate { .. }),
        &mut n,
    );

    // Idempotent producers.
    let mut fenced = BatchBuilder::new().idempotent(99, 2, 1);
    fenced.push(record(None, b"p1", &[]));
    let fenced = fenced.build();
    refuse(
        &log,
        "fenced producer epoch",
        |l| l.append_batch("orders", 0, &fenced, None),
        |e| matches!(e, Error::ProducerFenced { producer_id: 99, epoch: 2, current: 3 }),
        &mut n,
    );
    let mut gap = BatchBuilder::new().idempotent(99, 3, 5);
    gap.push(record(None, b"p5", &[]));
    let gap = gap.build();
    refuse(
        &log,
        "producer sequence gap",
        |l| l.append_batch("orders", 0, &gap, None),
        |e| matches!(e, Error::OutOfOrderSequence { producer_id: 99, got: 5, expected: 1 }),
        &mut n,
    );

    // Topics.
    let long_name = "t".repeat(250);
    for bad in ["", ".", "..", "a/b", "sp ace", "ünï", "tab\t", long_name.as_str()] {
        refuse(
            &log,
            &format!("topic name {bad:?}"),
            |l| l.create_topic(bad, TopicConfig::default()),
            |e| {
                matches!(
                    e,
                    Error::InvalidTopicName(
                        NameError::Empty
                            | NameError::Reserved(_)
                            | NameError::BadCharacter { .. }
                            | NameError::TooLong { .. }
                    )
                )
            },
            &mut n,
        );
    }
    for partitions in [0, TopicConfig::PARTITIONS_MAX + 1, u32::MAX] {
        refuse(
            &log,
            &format!("{partitions} partitions"),
            |l| l.create_topic("fine-name", TopicConfig { partitions, ..TopicConfig::default() }),
            |e| matches!(e, Error::InvalidConfig(_)),
            &mut n,
        );
    }
    refuse(
        &log,
        "retention_ms 0",
        |l| l.create_topic("fine-name", TopicConfig { retention_ms: Some(0), ..TopicConfig::default() }),
        |e| matches!(e, Error::InvalidConfig(_)),
        &mut n,
    );
    refuse(
        &log,
        "existing topic",
        |l| l.create_topic("orders", TopicConfig::default()),
        |e| matches!(e, Error::TopicExists(t) if t.as_str() == "orders"),
        &mut n,
    );
    refuse(
        &log,
        "existing topic, other configuration",
        |l| l.create_topic("accounts", TopicConfig { partitions: 9, ..TopicConfig::default() }),
        |e| matches!(e, Error::TopicExists(_)),
        &mut n,
    );
    refuse(&log, "delete unknown topic", |l| l.delete_topic("nope"), |e| matches!(e, Error::UnknownTopic(_)), &mut n);

    // Reads.
    let hw = log.partition_offsets("orders", home).expect("offsets").high_watermark;
    assert!(log.read_partition("orders", home, hw, 1 << 20).expect("at the high watermark").batches.is_empty());
    for offset in [hw + 1, hw + 1000, u64::MAX] {
        refuse(
            &log,
            &format!("read_partition offset {offset} past {hw}"),
            |l| l.read_partition("orders", home, offset, 1 << 20),
            |e| matches!(e, Error::OffsetOutOfRange { offset: o, high_watermark, log_start: 0, .. } if *o == offset && *high_watermark == hw),
            &mut n,
        );
    }
    refuse(
        &log,
        "read_partition unknown partition",
        |l| l.read_partition("orders", 2, 0, 1 << 20),
        |e| matches!(e, Error::UnknownPartition { .. }),
        &mut n,
    );
    refuse(
        &log,
        "read_partition unknown topic",
        |l| l.read_partition("nope", 0, 0, 1),
        |e| matches!(e, Error::UnknownTopic(_)),
        &mut n,
    );
    refuse(
        &log,
        "read_stream unknown topic",
        |l| l.read_stream("nope", b"k", &Default::default()),
        |e| matches!(e, Error::UnknownTopic(_)),
        &mut n,
    );

    // The boundaries themselves are accepted, and the log still works.
    let max_id = "i".repeat(evident_core::envelope::ID_LEN_MAX);
    log.append_events("orders", b"long-id", ExpectedVersion::NoStream, &[event(&max_id)]).expect("a 256-byte id");
    log.append_batch("orders", home, &good, None).expect("the good batch");
    let at_limit = batch(vec![record(Some("big"), &vec![b'x'; BATCH_MAX - 200], &[])]);
    assert!(at_limit.len() <= BATCH_MAX);
    log.append_batch("orders", 0, &at_limit, None).expect("a batch at the size limit");

    // Random damage to a valid batch: refused with nothing changed, or accepted intact.
    let (refused, accepted) = mutated_batches(&log, &good, home);

    let before = fingerprint(&log);
    log.close().expect("close");
    drop(log);
    let log = Log::open(dir.path(), config()).expect("reopen");
    // Counters start again at an open; everything else must be as it was.
    let reopened = fingerprint(&log);
    let expected = Fingerprint { durable_position: reopened.durable_position, appends: 0, ..before };
    assert!(reopened == expected, "the reopened log differs: {}", diff(&expected, &reopened));
    println!(
        "bad input: cases={n} refused_with_typed_error={n} log_changed=0; proptest mutations refused={refused} \
         accepted_intact={accepted}"
    );
}

/// Sends valid batches damaged at random (bytes overwritten, the length cut or extended, the
/// CRC fixed up or not). A refusal must leave the log unchanged; an acceptance must append
/// exactly the batch's records, readable back with a valid CRC.
fn mutated_batches(log: &Log, good: &[u8], partition: u32) -> (u32, u32) {
    let refused = std::cell::Cell::new(0u32);
    let accepted = std::cell::Cell::new(0u32);
    let mut runner = TestRunner::new(Config { cases: 400, failure_persistence: None, ..Config::default() });
    let strategy = (
        proptest::collection::vec((0..good.len(), any::<u8>()), 1..5),
        prop_oneof![Just(0i64), -70i64..0, 1i64..8],
        any::<bool>(),
        0u32..1000,
    );
    let result = runner.run(&strategy, |(writes, resize, fix, salt)| {
        // A fresh id per case, so an accepted batch is never answered as a duplicate.
        let mut bytes = batch(vec![keyed("o-1", &format!("mut-{salt}-{}", accepted.get()))]);
        bytes.truncate(bytes.len().min(good.len()));
        for (at, v) in writes {
            if at < bytes.len() {
                bytes[at] = v;
            }
        }
        let new_len = (bytes.len() as i64 + resize).max(0) as usize;
        bytes.resize(new_len, 0xAB);
        if fix && bytes.len() > 21 {
            fix_crc(&mut bytes);
        }
        let before = fingerprint(log);
        match log.append_batch("orders", partition, &bytes, None) {
            Err(_) => {
                let after = fingerprint(log);
                prop_assert!(before == after, "a refused batch changed the log: {}", diff(&before, &after));
                refused.set(refused.get() + 1);
            }
            Ok(out) => {
                let after = fingerprint(log);
                prop_assert_eq!(after.next_sequence, before.next_sequence + out.records.len() as u64);
                let read = log
                    .read_partition("orders", out.partition, out.base_offset, 1 << 20)
                    .map_err(|e| TestCaseError::fail(e.to_string()))?;
                let stored = read.batches.first().ok_or_else(|| TestCaseError::fail("accepted batch not readable"))?;
                let parsed = RecordBatch::parse_exact(stored).map_err(|e| TestCaseError::fail(e.to_string()))?;
                prop_assert_eq!(parsed.header().base_offset as u64, out.base_offset);
                prop_assert_eq!(&stored[8..12], &bytes[8..12], "stored batch length differs");
                prop_assert_eq!(&stored[16..], &bytes[16..], "stored batch differs beyond the fields the log assigns");
                accepted.set(accepted.get() + 1);
            }
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("mutated batch: {e}");
    }
    (refused.get(), accepted.get())
}
