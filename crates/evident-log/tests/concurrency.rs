//! Goal (reliability test T11): optimistic concurrency holds under contention. When many
//! writers race to append to one stream at the version they last read, each version has exactly
//! one winner, every loser gets `Error::WrongExpectedVersion` naming the version the stream had
//! moved to, and the final stream is dense and holds every winner's event at the version it was
//! acknowledged with (no lost update). Group commit must also survive many appenders rolling
//! through many small segments within one commit round.
//!
//! Method: real files in a temporary directory, fsync on every commit. C = 8 threads start
//! together (a barrier) and loop: read the stream's current version, append one event with
//! `ExpectedVersion::Exact(v)` (or `NoStream` before the first event), record the outcome, until
//! the stream reaches N versions. The records are then checked against the stream read back,
//! before and after reopening. A second race has every thread create the same fresh streams
//! with `NoStream`. A third runs 32 appenders with batches of a third of a 4 KiB segment.

use std::collections::BTreeMap;
use std::sync::{Arc, Barrier};

use evident_core::{EventData, ExpectedVersion, Version};
use evident_log::{Direction, Error, Log, LogConfig, StreamReadOptions, TopicConfig};

const CONTENDERS: usize = 8;
const VERSIONS: u64 = 400;
const KEY: &[u8] = b"account-1";

fn open(dir: &std::path::Path) -> Log {
    Log::open(dir, LogConfig { segment_size_max: 64 << 10, ..LogConfig::default() }).expect("open")
}

fn event(id: &str, body: String) -> EventData {
    EventData::json(id, "BalanceChanged", body.into_bytes())
}

/// What one contender saw.
#[derive(Default)]
struct Seen {
    /// (version won, event id, commit sequence)
    wins: Vec<(u64, String, u64)>,
    /// (expected version, actual version reported)
    conflicts: Vec<(Option<u64>, Option<u64>)>,
}

#[test]
fn contenders_on_one_stream_have_exactly_one_winner_per_version() {
    let dir = tempfile::tempdir().expect("tmp");
    let log = Arc::new(open(dir.path()));
    log.create_topic("ledger", TopicConfig { partitions: 4, ..TopicConfig::default() }).expect("create");
    let start = Arc::new(Barrier::new(CONTENDERS));
    let handles: Vec<_> = (0..CONTENDERS)
        .map(|c| {
            let (log, start) = (log.clone(), start.clone());
            std::thread::spawn(move || {
                let mut seen = Seen::default();
                let last = StreamReadOptions { limit: 1, direction: Direction::Backward, ..Default::default() };
                start.wait();
                for attempt in 0.. {
                    let current = log.read_stream("ledger", KEY, &last).expect("read").current_version;
                    let next = current.map_or(0, |v| v + 1);
                    if next >= VERSIONS {
                        break;
                    }
                    let expected = current.map_or(ExpectedVersion::NoStream, |v| ExpectedVersion::Exact(Version(v)));
                    let id = format!("c{c}-a{attempt}");
                    let body = format!(r#"{{"contender":{c},"attempt":{attempt},"after":{current:?}}}"#);
                    match log.append_events("ledger", KEY, expected, &[event(&id, body)]) {
                        Ok(out) => {
                            assert_eq!(out.records[0].version, Some(next), "{id} won at another version");
                            seen.wins.push((next, id, out.records[0].sequence));
                        }
                        Err(Error::WrongExpectedVersion { expected: e, actual, .. }) => {
                            assert_eq!(e, expected, "the conflict names the expected version sent");
                            let actual = actual.map(|v| v.0);
                            assert!(
                                actual.is_some_and(|a| current.is_none_or(|cur| a > cur)),
                                "{id}: expected {current:?}, the conflict reports {actual:?}: the stream must have moved on"
                            );
                            seen.conflicts.push((current, actual));
                            // The winner may still be waiting for its fsync; let it finish.
                            std::thread::yield_now();
                        }
                        Err(e) => panic!("{id}: unexpected error {e}"),
                    }
                }
                seen
            })
        })
        .collect();
    let mut winners: BTreeMap<u64, Vec<(String, u64)>> = BTreeMap::new();
    let mut conflicts = Vec::new();
    for h in handles {
        let seen = h.join().expect("contender");
        for (v, id, seq) in seen.wins {
            winners.entry(v).or_default().push((id, seq));
        }
        conflicts.extend(seen.conflicts);
    }
    // Exactly one winner per version, for every version.
    assert_eq!(winners.len() as u64, VERSIONS, "versions won");
    for (v, w) in &winners {
        assert_eq!(w.len(), 1, "version {v} has {} winners: {w:?}", w.len());
    }
    assert_eq!(winners.keys().copied().collect::<Vec<_>>(), (0..VERSIONS).collect::<Vec<_>>());
    // Every conflict reported a version the stream really reached.
    for (expected, actual) in &conflicts {
        let a = actual.expect("a conflict on an existing stream");
        assert!(a < VERSIONS && expected.is_none_or(|e| a > e), "conflict {expected:?} -> {actual:?}");
    }
    let check = |log: &Log| -> usize {
        let all = StreamReadOptions { limit: usize::MAX, ..Default::default() };
        let s = log.read_stream("ledger", KEY, &all).expect("read stream");
        assert_eq!(s.current_version, Some(VERSIONS - 1));
        assert_eq!(s.events.len() as u64, VERSIONS, "the stream is dense");
        let mut lost = 0;
        let mut last_seq = None;
        for (v, e) in s.events.iter().enumerate() {
            assert_eq!(e.version, Some(v as u64));
            assert!(last_seq.is_none_or(|l| e.sequence > l), "sequences increase along the stream");
            last_seq = Some(e.sequence);
            let (id, seq) = &winners[&(v as u64)][0];
            if e.id() != Some(id.as_str()) || e.sequence != *seq {
                lost += 1;
            }
        }
        let everything = log.read_all(0, usize::MAX).expect("read_all");
        assert_eq!(everything.len() as u64, VERSIONS, "no loser's event was stored");
        lost
    };
    let lost_updates = check(&log);
    let log = Arc::try_unwrap(log).expect("sole owner");
    log.close().expect("close");
    drop(log);
    let reopened = open(dir.path());
    let lost_after_reopen = check(&reopened);
    println!(
        "T11 concurrency: contenders={CONTENDERS} versions={VERSIONS} winners_per_version=1 conflicts={} \
         lost_updates={lost_updates} lost_after_reopen={lost_after_reopen}",
        conflicts.len()
    );
    assert_eq!(lost_updates, 0, "lost updates");
    assert_eq!(lost_after_reopen, 0, "lost updates after reopen");
}

#[test]
fn racing_stream_creations_have_one_winner_each() {
    const STREAMS: usize = 60;
    let dir = tempfile::tempdir().expect("tmp");
    let log = Arc::new(open(dir.path()));
    log.create_topic("users", TopicConfig { partitions: 3, ..TopicConfig::default() }).expect("create");
    let start = Arc::new(Barrier::new(CONTENDERS));
    let handles: Vec<_> = (0..CONTENDERS)
        .map(|c| {
            let (log, start) = (log.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut won = Vec::new();
                for s in 0..STREAMS {
                    let key = format!("user-{s}");
                    let id = format!("created-by-{c}");
                    let body = format!(r#"{{"by":{c}}}"#);
                    match log.append_events("users", key.as_bytes(), ExpectedVersion::NoStream, &[event(&id, body)]) {
                        Ok(out) => {
                            assert_eq!(out.records[0].version, Some(0));
                            won.push((s, id));
                        }
                        Err(Error::WrongExpectedVersion { actual: Some(Version(0)), .. }) => {}
                        Err(e) => panic!("contender {c}, stream {s}: {e}"),
                    }
                }
                won
            })
        })
        .collect();
    let mut winners: BTreeMap<usize, Vec<String>> = BTreeMap::new();
    for h in handles {
        for (s, id) in h.join().expect("contender") {
            winners.entry(s).or_default().push(id);
        }
    }
    for s in 0..STREAMS {
        let w = winners.get(&s).cloned().unwrap_or_default();
        assert_eq!(w.len(), 1, "stream {s} was created by {w:?}");
        let read = log.read_stream("users", format!("user-{s}").as_bytes(), &Default::default()).expect("read");
        assert_eq!(read.events.len(), 1, "stream {s}");
        assert_eq!(read.events[0].id(), Some(w[0].as_str()));
    }
    println!(
        "T11 stream creation race: contenders={CONTENDERS} streams={STREAMS} creators_per_stream=1 conflicts={}",
        STREAMS * (CONTENDERS - 1)
    );
}

/// Many appenders queue frames while a commit round is in flight, and with small segments
/// those frames roll through several new segments before the committer takes them: the round
/// must still write each frame into its own segment.
#[test]
fn group_commit_across_many_segment_rolls() {
    const WRITERS: usize = 32;
    const APPENDS: usize = 20;
    let dir = tempfile::tempdir().expect("tmp");
    let config = LogConfig { segment_size_max: 4096, ..LogConfig::default() };
    let log = Arc::new(Log::open(dir.path(), config.clone()).expect("open"));
    log.create_topic("bulk", TopicConfig { partitions: 2, ..TopicConfig::default() }).expect("create");
    let start = Arc::new(Barrier::new(WRITERS));
    let handles: Vec<_> = (0..WRITERS)
        .map(|w| {
            let (log, start) = (log.clone(), start.clone());
            std::thread::spawn(move || {
                start.wait();
                let mut errors = Vec::new();
                for i in 0..APPENDS {
                    let id = format!("w{w}-{i}");
                    let body = format!(r#"{{"pad":"{}"}}"#, "p".repeat(1200));
                    let key = format!("writer-{w}");
                    if let Err(e) = log.append_events("bulk", key.as_bytes(), ExpectedVersion::Any, &[event(&id, body)])
                    {
                        errors.push(format!("{id}: {e}"));
                        break;
                    }
                }
                errors
            })
        })
        .collect();
    let errors: Vec<String> = handles.into_iter().flat_map(|h| h.join().expect("writer")).collect();
    let stats = log.stats();
    let segments = std::fs::read_dir(dir.path().join("journal")).expect("ls").count();
    println!(
        "group commit across segment rolls: writers={WRITERS} appends={} commit_rounds={} segments={segments} errors={}",
        stats.appends,
        stats.commit_rounds,
        errors.len()
    );
    assert!(errors.is_empty(), "appends failed: {:?}", &errors[..errors.len().min(5)]);
    let log = Arc::try_unwrap(log).expect("sole owner");
    log.close().expect("close");
    drop(log);
    let log = Log::open(dir.path(), config).expect("reopen");
    assert_eq!(log.read_all(0, usize::MAX).expect("read_all").len(), WRITERS * APPENDS);
}
