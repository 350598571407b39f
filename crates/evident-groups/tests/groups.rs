//! Goal: consumer groups do what the crate docs say on a real log: committed offsets survive a
//! reopen because they live in `__consumer_offsets`, concurrent writers leave memory equal to
//! what a replay builds, every reset scope and strategy yields Kafka's rows, and refusals
//! (invalid ids, unknown topics, active members) write nothing.
//!
//! Method: each test opens a fresh log in a temporary directory with real files and fsync,
//! writes topics whose records carry chosen timestamps, drives a `GroupStore` with a
//! `ManualClock`, and checks concrete values, often again after closing and reopening both the
//! log and the store.

use std::sync::{Arc, Barrier};

use evident_core::{BatchBuilder, TopicName};
use evident_groups::{
    CommittedOffset, Error, GroupState, GroupStore, GroupSummary, MemberInfo, OffsetCommit, PartitionLag, ResetRequest,
    ResetRow, ResetScope, ResetStrategy, TopicPartitions, TopicScope, OFFSETS_TOPIC,
};
use evident_log::clock::ManualClock;
use evident_log::{Log, LogConfig, TopicConfig};

const NOW: i64 = 1_700_000_000_000;

struct Fixture {
    dir: tempfile::TempDir,
    log: Arc<Log>,
    clock: Arc<ManualClock>,
    store: GroupStore,
}

impl Fixture {
    /// A log with `orders` (3 partitions: 10, 4 and 0 records) and `payments` (1 partition,
    /// 2 records). Record `o` of a partition was written at `NOW - 100_000 + 1000 * o`.
    fn new() -> Self {
        let dir = tempfile::tempdir().expect("tmp");
        let log = Arc::new(Log::open(dir.path(), LogConfig::default()).expect("open log"));
        log.create_topic("orders", TopicConfig { partitions: 3, ..TopicConfig::default() }).expect("orders");
        log.create_topic("payments", TopicConfig::default()).expect("payments");
        for (topic, partition, count) in [("orders", 0, 10), ("orders", 1, 4), ("payments", 0, 2)] {
            let mut batch = BatchBuilder::new();
            for o in 0..count {
                batch.push_parts(None, Some(b"x"), &[], record_time(o));
            }
            log.append_batch(topic, partition, &batch.build(), None).expect("append");
        }
        let clock = Arc::new(ManualClock::new(NOW));
        let store = GroupStore::open(log.clone(), clock.clone()).expect("open store");
        Self { dir, log, clock, store }
    }

    /// Closes the store and the log, and opens both again from the files.
    fn reopen(self) -> Self {
        let Self { dir, log, clock, store } = self;
        drop(store);
        drop(log);
        let log = Arc::new(Log::open(dir.path(), LogConfig::default()).expect("reopen log"));
        let store = GroupStore::open(log.clone(), clock.clone()).expect("reopen store");
        Self { dir, log, clock, store }
    }

    /// High watermark of `__consumer_offsets`: how many records the store ever wrote.
    fn offsets_written(&self) -> u64 {
        self.log.partition_offsets(OFFSETS_TOPIC, 0).expect("offsets topic").high_watermark
    }

    fn committed(&self, group: &str) -> Vec<(String, u32, u64)> {
        let committed = self.store.committed(group, None).expect("committed");
        committed.into_iter().map(|c| (c.topic.to_string(), c.partition, c.offset)).collect()
    }

    fn plan(&self, group: &str, scope: ResetScope, strategy: ResetStrategy) -> Result<Vec<Row>, Error> {
        let rows = self.store.plan_reset(group, &ResetRequest { scope, strategy })?;
        Ok(rows.into_iter().map(Row::from).collect())
    }
}

fn record_time(offset: u64) -> i64 {
    NOW - 100_000 + 1000 * offset as i64
}

fn commit(topic: &str, partition: u32, offset: u64) -> OffsetCommit {
    OffsetCommit { topic: topic.into(), partition, offset, metadata: None, leader_epoch: None }
}

fn topic(name: &str) -> TopicName {
    TopicName::new(name).expect("topic")
}

fn member(id: &str, timeout_ms: u32) -> MemberInfo {
    MemberInfo {
        member_id: id.into(),
        client_id: "rdkafka".into(),
        client_host: "/127.0.0.1".into(),
        session_timeout_ms: timeout_ms,
        assignment: vec![TopicPartitions { topic: topic("orders"), partitions: vec![0, 1] }],
    }
}

fn scope(name: &str, partitions: Option<Vec<u32>>) -> ResetScope {
    ResetScope::Topics(vec![TopicScope { topic: name.into(), partitions }])
}

/// A reset row as (topic, partition, current, new, log start, log end), for compact asserts.
#[derive(Debug, PartialEq, Eq)]
struct Row(String, u32, Option<u64>, u64, u64, u64);

impl From<ResetRow> for Row {
    fn from(r: ResetRow) -> Self {
        Row(r.topic.to_string(), r.partition, r.current_offset, r.new_offset, r.log_start_offset, r.log_end_offset)
    }
}

fn row(topic: &str, partition: u32, current: Option<u64>, new: u64, end: u64) -> Row {
    Row(topic.into(), partition, current, new, 0, end)
}

#[test]
fn commits_survive_reopening_the_log() {
    let f = Fixture::new();
    let with_metadata = OffsetCommit { metadata: Some("consumer-7".into()), ..commit("orders", 2, 0) };
    f.store.commit("billing", &[commit("orders", 0, 3), with_metadata, commit("payments", 0, 2)]).expect("commit");
    f.clock.set(NOW + 5);
    f.store.commit("billing", &[commit("orders", 0, 7)]).expect("commit again");
    f.store.commit("audit", &[commit("orders", 1, 1)]).expect("commit audit");
    assert_eq!(f.offsets_written(), 5);

    let f = f.reopen();
    let expect = vec![
        CommittedOffset {
            topic: topic("orders"),
            partition: 0,
            offset: 7,
            metadata: None,
            leader_epoch: None,
            commit_time_ms: Some(NOW + 5),
        },
        CommittedOffset {
            topic: topic("orders"),
            partition: 2,
            offset: 0,
            metadata: Some("consumer-7".into()),
            leader_epoch: None,
            commit_time_ms: Some(NOW),
        },
        CommittedOffset {
            topic: topic("payments"),
            partition: 0,
            offset: 2,
            metadata: None,
            leader_epoch: None,
            commit_time_ms: Some(NOW),
        },
    ];
    assert_eq!(f.store.committed("billing", None).expect("committed"), expect);
    assert_eq!(f.store.committed("billing", Some("payments")).expect("committed"), expect[2..]);
    assert_eq!(f.committed("audit"), [("orders".to_string(), 1, 1)]);
    assert_eq!(f.store.committed("nobody", None).expect("committed"), []);
    let names: Vec<String> = f.store.list().into_iter().map(|g| g.group).collect();
    assert_eq!(names, ["audit", "billing"]);
}

#[test]
fn the_stored_records_are_the_documented_format() {
    let f = Fixture::new();
    let commit = OffsetCommit { metadata: Some("m".into()), ..commit("orders", 1, 3) };
    f.store.commit("a,\"b\"", &[commit]).expect("commit");
    f.store.delete("a,\"b\"").expect("delete");
    let read = f.log.read_partition(OFFSETS_TOPIC, 0, 0, 1 << 20).expect("read");
    let mut records = Vec::new();
    for bytes in &read.batches {
        let batch = evident_core::RecordBatch::parse_exact(bytes).expect("batch");
        for record in batch.records().expect("records") {
            let record = record.expect("record");
            let text = |b: Option<&[u8]>| b.map(|b| String::from_utf8(b.to_vec()).expect("utf-8"));
            records.push((text(record.key), text(record.value)));
        }
    }
    let key = r#"["offset","a,\"b\"","orders",1]"#.to_string();
    let value = format!(r#"{{"v":1,"offset":3,"metadata":"m","commit_time_ms":{NOW}}}"#);
    assert_eq!(records, [(Some(key.clone()), Some(value)), (Some(key), None)]);
}

/// Several threads commit to shared and private groups while one deletes a shared group over
/// and over; afterwards, memory must equal a replay of the log.
#[test]
fn concurrent_writers_leave_memory_equal_to_the_replay() {
    const THREADS: usize = 8;
    const COMMITS: u64 = 40;
    let f = Fixture::new();
    let barrier = Barrier::new(THREADS + 1);
    std::thread::scope(|s| {
        for t in 0..THREADS {
            let (store, barrier) = (&f.store, &barrier);
            s.spawn(move || {
                barrier.wait();
                for i in 0..COMMITS {
                    let shared = format!("shared-{}", i % 2);
                    let offsets = [commit("orders", (i % 3) as u32, t as u64 * 1000 + i), commit("payments", 0, i)];
                    store.commit(&shared, &offsets).expect("commit shared");
                    store.commit(&format!("own-{t}"), &offsets[..1]).expect("commit own");
                }
            });
        }
        let (store, barrier) = (&f.store, &barrier);
        s.spawn(move || {
            barrier.wait();
            for _ in 0..COMMITS {
                match store.delete("shared-1") {
                    Ok(()) | Err(Error::UnknownGroup(_)) => {}
                    Err(e) => panic!("delete: {e}"),
                }
            }
        });
    });
    let groups: Vec<GroupSummary> = f.store.list();
    let before: Vec<(String, Vec<CommittedOffset>)> =
        groups.iter().map(|g| (g.group.clone(), f.store.committed(&g.group, None).expect("committed"))).collect();
    for t in 0..THREADS {
        // A private group's last commit is its thread's last, whatever the interleaving.
        let own = f.committed(&format!("own-{t}"));
        assert_eq!(
            own,
            [
                ("orders".to_string(), 0, t as u64 * 1000 + 39),
                ("orders".to_string(), 1, t as u64 * 1000 + 37),
                ("orders".to_string(), 2, t as u64 * 1000 + 38)
            ]
        );
    }
    assert!(f.committed("shared-0").len() == 4, "{:?}", f.committed("shared-0"));

    let f = f.reopen();
    let after: Vec<(String, Vec<CommittedOffset>)> = f
        .store
        .list()
        .iter()
        .map(|g| (g.group.clone(), f.store.committed(&g.group, None).expect("committed")))
        .collect();
    assert_eq!(before, after);
}

#[test]
fn reset_strategies_on_a_topic() {
    let f = Fixture::new();
    f.store.commit("g", &[commit("orders", 0, 5), commit("orders", 2, 0)]).expect("commit");
    let orders = || scope("orders", None);
    let plan = |strategy| f.plan("g", orders(), strategy).expect("plan");
    // orders/0 holds offsets [0, 10), committed 5; orders/1 [0, 4), none; orders/2 empty, 0.
    assert_eq!(
        plan(ResetStrategy::ToEarliest),
        [row("orders", 0, Some(5), 0, 10), row("orders", 1, None, 0, 4), row("orders", 2, Some(0), 0, 0)]
    );
    let news = |strategy| plan(strategy).into_iter().map(|r| r.3).collect::<Vec<_>>();
    assert_eq!(news(ResetStrategy::ToLatest), [10, 4, 0]);
    assert_eq!(news(ResetStrategy::ToCurrent), [5, 4, 0]);
    assert_eq!(news(ResetStrategy::ToOffset(3)), [3, 3, 0]);
    assert_eq!(news(ResetStrategy::ToOffset(-1)), [0, 0, 0]);
    assert_eq!(news(ResetStrategy::ToOffset(99)), [10, 4, 0]);
    assert_eq!(news(ResetStrategy::ToDatetime(record_time(2))), [2, 2, 0]);
    assert_eq!(news(ResetStrategy::ToDatetime(record_time(2) + 1)), [3, 3, 0]);
    assert_eq!(news(ResetStrategy::ToDatetime(record_time(6))), [6, 4, 0]);
    assert_eq!(news(ResetStrategy::ToDatetime(0)), [0, 0, 0]);
    // NOW - 97_000 is the time of offset 3.
    assert_eq!(news(ResetStrategy::ByDuration(97_000)), [3, 3, 0]);
    assert_eq!(news(ResetStrategy::ByDuration(0)), [10, 4, 0]);

    let err = f.plan("g", orders(), ResetStrategy::ShiftBy(1)).unwrap_err();
    assert!(matches!(&err, Error::InvalidReset(m) if m.contains("orders/1")), "{err}");
    let shift = |n| f.plan("g", scope("orders", Some(vec![0, 2])), ResetStrategy::ShiftBy(n)).expect("shift");
    assert_eq!(shift(-2), [row("orders", 0, Some(5), 3, 10), row("orders", 2, Some(0), 0, 0)]);
    assert_eq!(shift(-9).into_iter().map(|r| r.3).collect::<Vec<_>>(), [0, 0]);
    assert_eq!(shift(9).into_iter().map(|r| r.3).collect::<Vec<_>>(), [10, 0]);
}

#[test]
fn reset_scopes() {
    let f = Fixture::new();
    f.store.commit("g", &[commit("orders", 1, 2), commit("payments", 0, 1)]).expect("commit");
    let latest = ResetStrategy::ToLatest;
    // All topics: only the partitions with a committed offset.
    assert_eq!(
        f.plan("g", ResetScope::AllTopics, latest).expect("all"),
        [row("orders", 1, Some(2), 4, 4), row("payments", 0, Some(1), 2, 2)]
    );
    assert_eq!(f.plan("g", scope("orders", Some(vec![1])), latest).expect("t:1"), [row("orders", 1, Some(2), 4, 4)]);
    assert_eq!(
        f.plan("g", scope("orders", Some(vec![2, 0, 2])), latest).expect("t:2,0,2"),
        [row("orders", 0, None, 10, 10), row("orders", 2, None, 0, 0)]
    );
    let two = ResetScope::Topics(vec![
        TopicScope { topic: "payments".into(), partitions: None },
        TopicScope { topic: "orders".into(), partitions: Some(vec![0]) },
    ]);
    assert_eq!(
        f.plan("g", two, ResetStrategy::ToEarliest).expect("two topics"),
        [row("orders", 0, None, 0, 10), row("payments", 0, Some(1), 0, 2)]
    );
    // A group with no offsets yet: all topics covers nothing, a topic covers its partitions.
    assert_eq!(f.plan("new", ResetScope::AllTopics, latest).expect("new"), []);
    assert_eq!(f.plan("new", scope("payments", None), latest).expect("new"), [row("payments", 0, None, 2, 2)]);

    let err = f.plan("g", scope("orders", Some(vec![3])), latest).unwrap_err();
    assert!(
        matches!(
            err,
            Error::Log(evident_log::Error::UnknownPartition {
                partition: evident_core::PartitionId(3),
                partitions: 3,
                ..
            })
        ),
        "{err}"
    );
    let err = f.plan("g", scope("nope", None), latest).unwrap_err();
    assert!(matches!(err, Error::Log(evident_log::Error::UnknownTopic(_))), "{err}");
    let err = f.plan("g", ResetScope::Topics(vec![]), latest).unwrap_err();
    assert!(matches!(err, Error::InvalidReset(_)), "{err}");
    let err = f.plan("g", scope("orders", Some(vec![])), latest).unwrap_err();
    assert!(matches!(err, Error::InvalidReset(_)), "{err}");
    let err = f.plan("g", ResetScope::AllTopics, ResetStrategy::ByDuration(-5)).unwrap_err();
    assert!(matches!(err, Error::InvalidReset(_)), "{err}");

    // A deleted topic drops out of all topics, though its offsets stay.
    f.log.delete_topic("payments").expect("delete topic");
    assert_eq!(f.plan("g", ResetScope::AllTopics, latest).expect("all"), [row("orders", 1, Some(2), 4, 4)]);
    assert_eq!(f.committed("g").len(), 2);
}

#[test]
fn plan_changes_nothing_and_execute_survives_reopen() {
    let f = Fixture::new();
    f.store.commit("g", &[commit("orders", 0, 5), commit("orders", 1, 1)]).expect("commit");
    let written = f.offsets_written();
    let request = ResetRequest { scope: ResetScope::AllTopics, strategy: ResetStrategy::ShiftBy(-2) };
    let planned = f.store.plan_reset("g", &request).expect("plan");
    assert_eq!(f.offsets_written(), written);
    assert_eq!(f.committed("g"), [("orders".to_string(), 0, 5), ("orders".to_string(), 1, 1)]);

    f.clock.set(NOW + 60_000);
    let executed = f.store.execute_reset("g", &request).expect("execute");
    assert_eq!(executed, planned);
    assert_eq!(
        executed.into_iter().map(Row::from).collect::<Vec<_>>(),
        [row("orders", 0, Some(5), 3, 10), row("orders", 1, Some(1), 0, 4)]
    );
    assert_eq!(f.offsets_written(), written + 2);

    let f = f.reopen();
    let committed = f.store.committed("g", None).expect("committed");
    assert_eq!(
        committed,
        [
            CommittedOffset {
                topic: topic("orders"),
                partition: 0,
                offset: 3,
                metadata: None,
                leader_epoch: None,
                commit_time_ms: Some(NOW + 60_000)
            },
            CommittedOffset {
                topic: topic("orders"),
                partition: 1,
                offset: 0,
                metadata: None,
                leader_epoch: None,
                commit_time_ms: Some(NOW + 60_000)
            },
        ]
    );
    // A reset can create a group, so offsets can be set before its consumers start.
    f.store
        .execute_reset("fresh", &ResetRequest { scope: scope("payments", None), strategy: ResetStrategy::ToLatest })
        .expect("fresh");
    assert_eq!(f.committed("fresh"), [("payments".to_string(), 0, 2)]);
}

#[test]
fn delete_survives_reopen() {
    let f = Fixture::new();
    f.store.commit("gone", &[commit("orders", 0, 1), commit("payments", 0, 1)]).expect("commit");
    f.store.commit("kept", &[commit("orders", 0, 4)]).expect("commit");
    f.store.delete("gone").expect("delete");
    assert_eq!(f.offsets_written(), 5);
    assert!(matches!(f.store.describe("gone"), Err(Error::UnknownGroup(g)) if g == "gone"));
    let err = f.store.delete("gone").unwrap_err();
    assert!(matches!(&err, Error::UnknownGroup(g) if g == "gone"), "{err}");
    assert_eq!(f.offsets_written(), 5);

    let f = f.reopen();
    assert!(matches!(f.store.describe("gone"), Err(Error::UnknownGroup(_))));
    assert_eq!(f.committed("gone"), []);
    assert_eq!(
        f.store.list(),
        [GroupSummary { group: "kept".into(), state: GroupState::Empty, members: 0, committed_partitions: 1 }]
    );
    // A group deleted and committed to again is back, with only the new offsets.
    f.store.commit("gone", &[commit("orders", 2, 0)]).expect("commit");
    let f = f.reopen();
    assert_eq!(f.committed("gone"), [("orders".to_string(), 2, 0)]);
}

#[test]
fn delete_offsets_removes_only_the_named_partitions_and_survives_reopen() {
    let f = Fixture::new();
    f.store.commit("g", &[commit("orders", 0, 3), commit("orders", 1, 2), commit("payments", 0, 1)]).expect("commit");
    let written = f.offsets_written();
    // orders/2 has no committed offset: nothing to delete there, and no error.
    let parts = [("orders".to_string(), 0), ("orders".to_string(), 2)];
    f.store.delete_offsets("g", &parts).expect("delete offsets");
    assert_eq!(f.offsets_written(), written + 1, "one tombstone, for orders/0 only");
    let f = f.reopen();
    assert_eq!(f.committed("g"), [("orders".to_string(), 1, 2), ("payments".to_string(), 0, 1)]);

    let err = f.store.delete_offsets("nobody", &parts).unwrap_err();
    assert!(matches!(&err, Error::UnknownGroup(g) if g == "nobody"), "{err}");
    f.store.join_member("g", member("m-1", 10_000)).expect("join");
    let err = f.store.delete_offsets("g", &[("payments".to_string(), 0)]).unwrap_err();
    assert!(matches!(err, Error::GroupNotEmpty { members: 1, .. }), "{err}");
    assert_eq!(f.committed("g").len(), 2);
}

#[test]
fn active_members_block_delete_and_reset_until_they_leave() {
    let f = Fixture::new();
    f.store.commit("g", &[commit("orders", 0, 5)]).expect("commit");
    f.store.join_member("g", member("m-1", 10_000)).expect("join");
    assert!(f.store.has_active_members("g"));
    let written = f.offsets_written();

    let err = f.store.delete("g").unwrap_err();
    assert!(matches!(&err, Error::GroupNotEmpty { group, members: 1 } if group == "g"), "{err}");
    assert_eq!(err.to_string(), "consumer group \"g\" has 1 active member(s); stop them first");
    let request = ResetRequest { scope: ResetScope::AllTopics, strategy: ResetStrategy::ToEarliest };
    let err = f.store.execute_reset("g", &request).unwrap_err();
    assert!(matches!(err, Error::GroupNotEmpty { members: 1, .. }), "{err}");
    // The plan is still shown.
    assert_eq!(f.store.plan_reset("g", &request).expect("plan")[0].new_offset, 0);
    assert_eq!(f.offsets_written(), written);
    assert_eq!(f.committed("g"), [("orders".to_string(), 0, 5)]);

    f.store.leave_member("g", "m-1").expect("leave");
    assert!(!f.store.has_active_members("g"));
    let err = f.store.leave_member("g", "m-1").unwrap_err();
    assert!(matches!(&err, Error::UnknownMember { member_id, .. } if member_id == "m-1"), "{err}");
    f.store.execute_reset("g", &request).expect("execute");
    assert_eq!(f.committed("g"), [("orders".to_string(), 0, 0)]);
    f.store.delete("g").expect("delete");
    assert_eq!(f.store.list(), []);
}

#[test]
fn sessions_expire_without_heartbeats() {
    let f = Fixture::new();
    f.store.commit("g", &[commit("orders", 0, 5)]).expect("commit");
    f.store.join_member("g", member("m-1", 10_000)).expect("join");
    f.store.join_member("g", member("m-2", 30_000)).expect("join");

    f.clock.set(NOW + 9_000);
    f.store.heartbeat("g", "m-1").expect("heartbeat"); // m-1 now lasts until NOW + 19_000
    f.clock.set(NOW + 18_999);
    assert_eq!(f.store.describe("g").expect("describe").members.len(), 2);
    f.clock.set(NOW + 19_000);
    let description = f.store.describe("g").expect("describe");
    assert_eq!(description.members.iter().map(|m| m.member_id.as_str()).collect::<Vec<_>>(), ["m-2"]);
    let err = f.store.heartbeat("g", "m-1").unwrap_err();
    assert!(matches!(&err, Error::UnknownMember { member_id, .. } if member_id == "m-1"), "{err}");
    assert!(matches!(f.store.delete("g"), Err(Error::GroupNotEmpty { members: 1, .. })));

    f.clock.set(NOW + 30_000);
    assert!(!f.store.has_active_members("g"));
    assert_eq!(f.store.list()[0].state, GroupState::Empty);
    f.store.delete("g").expect("delete after expiry");
    assert_eq!(f.store.list(), []);

    // A group with members only exists while they do.
    f.store.join_member("members-only", member("m", 6_000)).expect("join");
    assert_eq!(
        f.store.list(),
        [GroupSummary { group: "members-only".into(), state: GroupState::Stable, members: 1, committed_partitions: 0 }]
    );
    f.clock.set(NOW + 36_000);
    assert_eq!(f.store.list(), []);
    assert!(matches!(f.store.describe("members-only"), Err(Error::UnknownGroup(_))));
}

#[test]
fn describe_shows_members_offsets_and_lag() {
    let f = Fixture::new();
    f.store.commit("g", &[commit("orders", 0, 4), commit("orders", 2, 0), commit("payments", 0, 5)]).expect("commit");
    f.store.join_member("g", member("m-1", 10_000)).expect("join");
    let d = f.store.describe("g").expect("describe");
    assert_eq!(d.group, "g");
    assert_eq!(d.state, GroupState::Stable);
    assert_eq!(d.members.len(), 1);
    assert_eq!((d.members[0].member_id.as_str(), d.members[0].last_heartbeat_ms), ("m-1", Some(NOW)));
    let lag = |topic: &str, partition, committed: Option<u64>, end: u64, lag: Option<u64>, member: bool| PartitionLag {
        topic: TopicName::new(topic).expect("topic"),
        partition,
        committed_offset: committed,
        metadata: None,
        commit_time_ms: committed.map(|_| NOW),
        log_start_offset: Some(0),
        log_end_offset: Some(end),
        lag,
        member_id: member.then(|| "m-1".to_string()),
    };
    assert_eq!(
        d.offsets,
        [
            lag("orders", 0, Some(4), 10, Some(6), true),
            lag("orders", 1, None, 4, None, true),
            lag("orders", 2, Some(0), 0, Some(0), false),
            // Committed past the end (Kafka accepts it): no negative lag.
            lag("payments", 0, Some(5), 2, Some(0), false),
        ]
    );
    assert_eq!(d.total_lag, 6);

    // A deleted topic keeps its committed offset, with unknown log offsets.
    f.log.delete_topic("payments").expect("delete topic");
    let d = f.store.describe("g").expect("describe");
    let payments = d.offsets.last().expect("row");
    assert_eq!((payments.committed_offset, payments.log_end_offset, payments.lag), (Some(5), None, None));
    let json = serde_json::to_value(&d.offsets[0]).expect("json");
    assert_eq!(json["committed_offset"], 4);
    assert_eq!(json["log_end_offset"], 10);
    assert_eq!(json["topic"], "orders");
}

#[test]
fn invalid_group_ids_are_refused_everywhere() {
    let f = Fixture::new();
    let long = "g".repeat(256);
    for bad in ["", "a\u{0}b", "tab\there", long.as_str()] {
        let is_invalid = |r: Result<(), Error>| matches!(r, Err(Error::InvalidGroup(_)));
        assert!(is_invalid(f.store.commit(bad, &[commit("orders", 0, 1)])), "{bad:?}");
        assert!(is_invalid(f.store.committed(bad, None).map(drop)), "{bad:?}");
        assert!(is_invalid(f.store.describe(bad).map(drop)), "{bad:?}");
        assert!(is_invalid(f.store.delete(bad)), "{bad:?}");
        let request = ResetRequest { scope: ResetScope::AllTopics, strategy: ResetStrategy::ToLatest };
        assert!(is_invalid(f.store.plan_reset(bad, &request).map(drop)), "{bad:?}");
        assert!(is_invalid(f.store.execute_reset(bad, &request).map(drop)), "{bad:?}");
        assert!(is_invalid(f.store.join_member(bad, member("m", 10_000))), "{bad:?}");
        assert!(is_invalid(f.store.heartbeat(bad, "m")), "{bad:?}");
        assert!(is_invalid(f.store.leave_member(bad, "m")), "{bad:?}");
    }
    assert_eq!(f.offsets_written(), 0);
    assert_eq!(f.store.list(), []);
    f.store.commit(&"g".repeat(255), &[commit("orders", 0, 1)]).expect("255 bytes is fine");
}

#[test]
fn refused_commits_write_nothing() {
    let f = Fixture::new();
    f.store.commit("g", &[commit("orders", 0, 1)]).expect("commit");
    let written = f.offsets_written();
    let err = f.store.commit("g", &[commit("orders", 0, 9), commit("nope", 0, 1)]).unwrap_err();
    assert!(matches!(&err, Error::Log(evident_log::Error::UnknownTopic(t)) if t == "nope"), "{err}");
    let err = f.store.commit("g", &[commit("orders", 0, 9), commit("orders", 3, 1)]).unwrap_err();
    assert!(matches!(err, Error::Log(evident_log::Error::UnknownPartition { partitions: 3, .. })), "{err}");
    let too_many: Vec<OffsetCommit> = (0..10_001).map(|_| commit("orders", 0, 1)).collect();
    assert!(matches!(f.store.commit("g", &too_many), Err(Error::InvalidCommit(_))));
    let long = OffsetCommit { metadata: Some("m".repeat(4097)), ..commit("orders", 0, 9) };
    assert!(matches!(f.store.commit("g", &[long]), Err(Error::InvalidCommit(_))));
    assert!(matches!(f.store.commit("g", &[commit("orders", 0, 1 << 63)]), Err(Error::InvalidCommit(_))));
    assert_eq!(f.offsets_written(), written);
    assert_eq!(f.committed("g"), [("orders".to_string(), 0, 1)]);
    // An empty commit is no write at all.
    f.store.commit("g", &[]).expect("empty");
    assert_eq!(f.offsets_written(), written);
}

#[test]
fn unreadable_records_stop_the_open() {
    for (value, expect) in [
        (&br#"{"v":2,"offset":1}"#[..], "uses a format this version of evident does not read (value format version 2)"),
        (b"not json", "is corrupted at offset 1: value is not a JSON object"),
    ] {
        let f = Fixture::new();
        f.store.commit("g", &[commit("orders", 0, 1)]).expect("commit");
        // What a newer evident, or damage, would leave in the topic.
        let mut batch = BatchBuilder::new();
        batch.push_parts(Some(br#"["offset","g","orders",1]"#), Some(value), &[], NOW);
        f.log.append_batch(OFFSETS_TOPIC, 0, &batch.build(), None).expect("append");
        let err = GroupStore::open(f.log.clone(), f.clock.clone()).unwrap_err();
        assert!(err.to_string().contains(expect), "{err}");
        match value[0] {
            b'{' => assert!(matches!(err, Error::UnsupportedFormat { offset: 1, .. }), "{err}"),
            _ => assert!(matches!(err, Error::Corrupted { offset: 1, .. }), "{err}"),
        }
    }
}
