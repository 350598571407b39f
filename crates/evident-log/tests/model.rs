//! Goal: the log behaves exactly like a simple in-memory reference model, including across
//! crashes, over thousands of random operation sequences (reliability test T10).
//!
//! Method: proptest generates sequences of operations (create/delete topics, appends with every
//! expected-version form, idempotent retries, reads, clean reopen, crash-and-reopen on the
//! simulated disk with a random torn tail, and appends whose sync fails so their outcome is
//! unknown). Each operation runs against the real `Log` on `SimStorage` and against a
//! `BTreeMap<(topic, key), Vec<event>>` reference; results and full state must agree after
//! every step. An append whose outcome is unknown may land or not, but only whole.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;

use evident_core::{EventData, ExpectedVersion, Version};
use evident_log::clock::SystemClock;
use evident_log::storage::{SimFaults, SimStorage};
use evident_log::{Error, Log, LogConfig, StreamReadOptions, TopicConfig};
use proptest::prelude::*;

const TOPICS: [&str; 2] = ["orders", "accounts"];
const KEYS: [&str; 3] = ["a", "b", "c"];

#[derive(Debug, Clone)]
enum Expect {
    Any,
    NoStream,
    StreamExists,
    Current,
    Stale,
}

#[derive(Debug, Clone)]
enum Op {
    Create { topic: usize, partitions: u32 },
    Delete { topic: usize },
    Append { topic: usize, key: usize, expect: Expect, count: usize },
    RetryLast,
    Reopen,
    Crash { keep_permille: u16 },
    UnknownOutcomeAppend { topic: usize, key: usize, count: usize, keep_permille: u16 },
}

fn op() -> impl Strategy<Value = Op> {
    let expect = prop_oneof![
        Just(Expect::Any),
        Just(Expect::NoStream),
        Just(Expect::StreamExists),
        Just(Expect::Current),
        Just(Expect::Stale)
    ];
    prop_oneof![
        2 => (0..TOPICS.len(), 1u32..4).prop_map(|(topic, partitions)| Op::Create { topic, partitions }),
        1 => (0..TOPICS.len()).prop_map(|topic| Op::Delete { topic }),
        12 => (0..TOPICS.len(), 0..KEYS.len(), expect, 1usize..4).prop_map(|(topic, key, expect, count)| Op::Append { topic, key, expect, count }),
        2 => Just(Op::RetryLast),
        1 => Just(Op::Reopen),
        2 => (0u16..=1000).prop_map(|keep_permille| Op::Crash { keep_permille }),
        1 => (0..TOPICS.len(), 0..KEYS.len(), 1usize..4, 0u16..=1000)
            .prop_map(|(topic, key, count, keep_permille)| Op::UnknownOutcomeAppend { topic, key, count, keep_permille }),
    ]
}

/// A stream in the model: (event id, payload) in version order.
type ModelStream = Vec<(String, Vec<u8>)>;
/// The last successful append: (topic, key, events, versions), for idempotent retries.
type LastAppend = (usize, usize, Vec<EventData>, Vec<Option<u64>>);

/// The reference: streams of (id, payload), and the global commit order of live topics.
#[derive(Default, Debug)]
struct Model {
    topics: BTreeMap<usize, u32>,
    streams: BTreeMap<(usize, usize), ModelStream>,
    global: Vec<(usize, usize, String)>,
    last: Option<LastAppend>,
    next_id: u64,
}

struct Harness {
    sim: SimStorage,
    log: Option<Log>,
    model: Model,
}

fn config() -> LogConfig {
    // Small segments and checkpoints so rolls and checkpoint loads happen within a case.
    LogConfig { segment_size_max: 2048, checkpoint_interval_bytes: 4096, ..LogConfig::default() }
}

impl Harness {
    fn open(sim: &SimStorage) -> Log {
        Log::open_with(Arc::new(sim.clone()), Path::new("/data"), config(), Arc::new(SystemClock))
            .expect("reopen must succeed")
    }

    fn log(&self) -> &Log {
        self.log.as_ref().expect("open")
    }

    fn events(&mut self, count: usize) -> Vec<EventData> {
        (0..count)
            .map(|_| {
                self.model.next_id += 1;
                let id = format!("ev-{}", self.model.next_id);
                EventData::json(id.clone(), "Happened", format!(r#"{{"id":"{id}"}}"#).into_bytes())
            })
            .collect()
    }

    fn step(&mut self, op: &Op) -> Result<(), TestCaseError> {
        match op.clone() {
            Op::Create { topic, partitions } => {
                let r = self.log().create_topic(TOPICS[topic], TopicConfig { partitions, ..TopicConfig::default() });
                match self.model.topics.entry(topic) {
                    std::collections::btree_map::Entry::Occupied(_) => {
                        prop_assert!(matches!(r, Err(Error::TopicExists(_))), "{r:?}");
                    }
                    std::collections::btree_map::Entry::Vacant(v) => {
                        prop_assert!(r.is_ok(), "{r:?}");
                        v.insert(partitions);
                    }
                }
            }
            Op::Delete { topic } => {
                let r = self.log().delete_topic(TOPICS[topic]);
                if self.model.topics.remove(&topic).is_some() {
                    prop_assert!(r.is_ok(), "{r:?}");
                    self.model.streams.retain(|(t, _), _| *t != topic);
                    self.model.global.retain(|(t, _, _)| *t != topic);
                    if self.model.last.as_ref().is_some_and(|l| l.0 == topic) {
                        self.model.last = None;
                    }
                } else {
                    prop_assert!(matches!(r, Err(Error::UnknownTopic(_))), "{r:?}");
                }
            }
            Op::Append { topic, key, expect, count } => {
                let events = self.events(count);
                let current =
                    self.model.streams.get(&(topic, key)).map(|s| s.len() as u64).and_then(|n| n.checked_sub(1));
                let expected = match expect {
                    Expect::Any => ExpectedVersion::Any,
                    Expect::NoStream => ExpectedVersion::NoStream,
                    Expect::StreamExists => ExpectedVersion::StreamExists,
                    Expect::Current => {
                        current.map_or(ExpectedVersion::NoStream, |v| ExpectedVersion::Exact(Version(v)))
                    }
                    Expect::Stale => ExpectedVersion::Exact(Version(current.map_or(0, |v| v + 1))),
                };
                let r = self.log().append_events(TOPICS[topic], KEYS[key].as_bytes(), expected, &events);
                if !self.model.topics.contains_key(&topic) {
                    prop_assert!(matches!(r, Err(Error::UnknownTopic(_))), "{r:?}");
                } else if expected.is_satisfied_by(current.map(Version)) {
                    let out = r.map_err(|e| TestCaseError::fail(format!("append failed: {e}")))?;
                    prop_assert!(!out.duplicate);
                    let base = current.map_or(0, |v| v + 1);
                    let versions: Vec<Option<u64>> = out.records.iter().map(|r| r.version).collect();
                    prop_assert_eq!(&versions, &(0..count as u64).map(|i| Some(base + i)).collect::<Vec<_>>());
                    self.record(topic, key, &events);
                    self.model.last = Some((topic, key, events, versions));
                } else {
                    match r {
                        Err(Error::WrongExpectedVersion { actual, .. }) => {
                            prop_assert_eq!(actual, current.map(Version))
                        }
                        other => prop_assert!(false, "expected a conflict, got {other:?}"),
                    }
                }
            }
            Op::RetryLast => {
                if let Some((topic, key, events, versions)) = self.model.last.clone() {
                    let out = self
                        .log()
                        .append_events(TOPICS[topic], KEYS[key].as_bytes(), ExpectedVersion::Any, &events)
                        .map_err(|e| TestCaseError::fail(format!("retry failed: {e}")))?;
                    prop_assert!(out.duplicate, "a retry must not append again");
                    prop_assert_eq!(out.records.iter().map(|r| r.version).collect::<Vec<_>>(), versions);
                }
            }
            Op::Reopen => {
                if let Some(log) = self.log.take() {
                    log.close().map_err(|e| TestCaseError::fail(format!("close: {e}")))?;
                }
                self.log = Some(Self::open(&self.sim));
            }
            Op::Crash { keep_permille } => self.crash(keep_permille),
            Op::UnknownOutcomeAppend { topic, key, count, keep_permille } => {
                if !self.model.topics.contains_key(&topic) {
                    return Ok(());
                }
                let events = self.events(count);
                self.sim.set_faults(SimFaults { fail_syncs: true, ..SimFaults::default() });
                let r = self.log().append_events(TOPICS[topic], KEYS[key].as_bytes(), ExpectedVersion::Any, &events);
                prop_assert!(
                    // In doubt when its round's sync failed; not stored when a segment roll's
                    // sync failed before it was queued.
                    matches!(r, Err(Error::OutcomeUnknown(_) | Error::Poisoned(_))),
                    "an append whose sync failed must not be acknowledged: {r:?}"
                );
                let one_more = self.events(1);
                let after =
                    self.log().append_events(TOPICS[topic], KEYS[key].as_bytes(), ExpectedVersion::Any, &one_more);
                prop_assert!(matches!(after, Err(Error::Poisoned(_))), "a poisoned log must refuse appends: {after:?}");
                self.crash(keep_permille);
                // The batch may have landed, but only whole.
                let read = self.log().read_stream(
                    TOPICS[topic],
                    KEYS[key].as_bytes(),
                    &StreamReadOptions { limit: 100_000, ..Default::default() },
                );
                let read = read.map_err(|e| TestCaseError::fail(format!("read: {e}")))?;
                let known = self.model.streams.get(&(topic, key)).map_or(0, Vec::len);
                let extra: Vec<String> = read.events[known.min(read.events.len())..]
                    .iter()
                    .map(|e| e.id().unwrap_or_default().to_string())
                    .collect();
                if !extra.is_empty() {
                    let sent: Vec<String> = events.iter().map(|e| e.id.clone()).collect();
                    prop_assert_eq!(&extra, &sent, "an unacknowledged batch landed partially");
                    self.record(topic, key, &events);
                }
                self.model.last = None;
            }
        }
        self.check()
    }

    fn record(&mut self, topic: usize, key: usize, events: &[EventData]) {
        let stream = self.model.streams.entry((topic, key)).or_default();
        for e in events {
            stream.push((e.id.clone(), e.data.clone()));
            self.model.global.push((topic, key, e.id.clone()));
        }
    }

    fn crash(&mut self, keep_permille: u16) {
        if let Some(log) = self.log.take() {
            log.halt();
        }
        self.sim.crash(|unsynced| unsynced * keep_permille as usize / 1000);
        self.log = Some(Self::open(&self.sim));
    }

    fn check(&self) -> Result<(), TestCaseError> {
        let log = self.log();
        let mut names: Vec<String> = log.list_topics().iter().map(|t| t.name.to_string()).collect();
        names.sort();
        let mut expected: Vec<String> = self.model.topics.keys().map(|t| TOPICS[*t].to_string()).collect();
        expected.sort();
        prop_assert_eq!(names, expected);
        for &topic in self.model.topics.keys() {
            for (key, key_name) in KEYS.iter().enumerate() {
                let read = log
                    .read_stream(
                        TOPICS[topic],
                        key_name.as_bytes(),
                        &StreamReadOptions { limit: 100_000, ..Default::default() },
                    )
                    .map_err(|e| TestCaseError::fail(format!("read: {e}")))?;
                let got: Vec<(String, Vec<u8>)> = read
                    .events
                    .iter()
                    .map(|e| (e.id().unwrap_or_default().to_string(), e.value.clone().unwrap_or_default().to_vec()))
                    .collect();
                let want = self.model.streams.get(&(topic, key)).cloned().unwrap_or_default();
                prop_assert_eq!(&got, &want, "stream {}/{}", TOPICS[topic], key_name);
                for (v, e) in read.events.iter().enumerate() {
                    prop_assert_eq!(e.version, Some(v as u64));
                }
            }
        }
        let all = log.read_all(0, 1_000_000).map_err(|e| TestCaseError::fail(format!("read_all: {e}")))?;
        let got: Vec<String> = all.iter().map(|e| e.id().unwrap_or_default().to_string()).collect();
        let want: Vec<String> = self.model.global.iter().map(|(_, _, id)| id.clone()).collect();
        prop_assert_eq!(got, want, "global order");
        prop_assert!(all.windows(2).all(|w| w[0].sequence < w[1].sequence), "sequences increase");
        Ok(())
    }
}

fn cases() -> u32 {
    std::env::var("EVIDENT_MODEL_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(1000)
}

#[test]
fn log_matches_reference_model() {
    let config = ProptestConfig { cases: cases(), failure_persistence: None, ..ProptestConfig::default() };
    let mut runner = proptest::test_runner::TestRunner::new(config);
    let steps = std::cell::Cell::new(0u64);
    let crashes = std::cell::Cell::new(0u64);
    let result = runner.run(&proptest::collection::vec(op(), 1..40), |ops| {
        let sim = SimStorage::new();
        let mut h = Harness { log: Some(Harness::open(&sim)), sim, model: Model::default() };
        for op in &ops {
            h.step(op)?;
            steps.set(steps.get() + 1);
            crashes.set(crashes.get() + u64::from(matches!(op, Op::Crash { .. } | Op::UnknownOutcomeAppend { .. })));
        }
        Ok(())
    });
    if let Err(e) = result {
        panic!("the log disagrees with the model: {e}");
    }
    println!("model: cases={} steps={} crash_reopens={} mismatches=0", cases(), steps.get(), crashes.get());
}
