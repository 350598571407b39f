//! The library's Kafka backend (`evident::KafkaBackend`, docs/cluster.md) on a real Apache
//! Kafka (`scripts/kafka-ref.sh`): the backend contract (appends with expected versions,
//! idempotent retries, conflicts, reads with Kafka's offsets, the feed, partitions), a
//! repository over it, two processes' backends appending to the same streams at once (no
//! version given twice, no command applied twice, checked from the topic's contents read by
//! a plain Kafka consumer), and the library's two examples, compiled unchanged from
//! `crates/evident/examples/`, with their projections, snapshots and dead letters on Kafka.

mod common;

// The examples' `main`s are not called here; they test the library's `kafka` feature, which
// this crate does not declare.
#[allow(dead_code, unexpected_cfgs)]
#[path = "../../evident/examples/bank.rs"]
mod bank;
// Event names follow the seeds' vocabulary (OrderPlaced, OrderPaid, OrderShipped).
#[allow(dead_code, unexpected_cfgs, clippy::enum_variant_names)]
#[path = "../../evident/examples/orders.rs"]
mod orders;

use std::collections::BTreeSet;
use std::sync::Arc;
use std::time::Duration;

use common::jvm::{java, Cluster, Reference};
use common::kafka_contents::event_ids_by_key;
use evident::blocking::{wait, Repository};
use evident::{
    Aggregate, Backend, DomainEvent, Error, EventData, ExpectedVersion, KafkaBackend, KafkaConfig, RetryPolicy,
    SnapshotPolicy, StreamQuery, TopicSpec,
};
use evident_core::{Sequence, Version};
use serde::{Deserialize, Serialize};

fn backend(reference: &Reference, dir: &std::path::Path) -> KafkaBackend {
    let mut config = KafkaConfig::new(reference.bootstrap.clone(), dir);
    config.timeout = Duration::from_secs(60);
    KafkaBackend::open(config).expect("kafka backend")
}

fn event(id: &str, event_type: &str, data: &str) -> EventData {
    EventData::json(id, event_type, data.as_bytes().to_vec())
}

/// One three-broker cluster (replication factor 3, min.insync.replicas 2), the scenarios in
/// turn: a cluster takes ~20 s to start, and two cores do not run three at once well.
#[test]
fn the_library_on_a_three_broker_cluster() {
    let Some(_java) = java("the_library_on_a_three_broker_cluster") else { return };
    let cluster = Cluster::start_nodes(3);
    for (name, scenario) in [
        ("the backend contract", the_backend_contract as fn(&Reference)),
        ("two processes deposit into the same accounts", two_processes_deposit_into_the_same_accounts),
        ("the examples run unchanged", the_examples_run_unchanged),
        ("two owners share the partitions", two_owners_share_the_partitions),
    ] {
        let start = std::time::Instant::now();
        scenario(&cluster);
        println!("{name}: ok in {:.1} s", start.elapsed().as_secs_f64());
    }
}

fn the_backend_contract(reference: &Reference) {
    let dir = tempfile::tempdir().expect("tempdir");
    let b = backend(reference, dir.path());
    wait(b.ensure_topic("bank", TopicSpec { partitions: 3, compacted: false })).expect("create");
    wait(b.ensure_topic("bank", TopicSpec { partitions: 1, compacted: false })).expect("an existing topic is fine");

    let events = [event("e0", "Opened", r#"{"owner":"ada"}"#), event("e1", "Deposited", r#"{"amount":5}"#)];
    let first = wait(b.append("bank", "acc-1", ExpectedVersion::NoStream, &events)).expect("append");
    assert_eq!((first.first_version, first.last_version, first.duplicate), (Version(0), Version(1), false));
    let retry = wait(b.append("bank", "acc-1", ExpectedVersion::NoStream, &events)).expect("retry");
    assert_eq!((retry.first_version, retry.last_version, retry.duplicate), (Version(0), Version(1), true));
    assert_eq!(retry.last_sequence, first.last_sequence, "a retry names the original positions");

    let conflict =
        wait(b.append("bank", "acc-1", ExpectedVersion::Exact(Version(0)), &[event("e2", "Deposited", "{}")]));
    match conflict {
        Err(Error::WrongExpectedVersion { current, .. }) => assert_eq!(current, Some(Version(1))),
        other => panic!("expected a version conflict, got {other:?}"),
    }
    let next = wait(b.append("bank", "acc-1", ExpectedVersion::Exact(Version(1)), &[event("e2", "Deposited", "{}")]))
        .expect("append at the right version");
    assert_eq!(next.last_version, Version(2));
    match wait(b.append("bank", "acc-1", ExpectedVersion::Any, &[event("e2", "Withdrawn", "{}")])) {
        Err(Error::Rejected(why)) => assert!(why.contains("e2"), "{why}"),
        other => panic!("an id reused with other content is refused, got {other:?}"),
    }

    let page = wait(b.read_stream("bank", "acc-1", &StreamQuery::default())).expect("read");
    assert_eq!(page.current_version, Some(Version(2)));
    let ids: Vec<_> = page.events.iter().map(|e| e.id.clone().unwrap_or_default()).collect();
    assert_eq!(ids, ["e0", "e1", "e2"]);
    assert!(page.events.iter().all(|e| !e.headers.iter().any(|(k, _)| k.starts_with("evident-kafka"))));
    // Kafka's offsets: each transaction's commit marker takes one, so the third event is at 4
    // (0, 1, marker 2, then 3, marker 4: e2 is at 3).
    let offsets: Vec<_> = page.events.iter().map(|e| e.offset.0).collect();
    assert_eq!(offsets, [0, 1, 3], "the events' Kafka offsets (markers take one each)");
    let partition = page.events[0].partition;
    let from_two = wait(b.read_partition("bank", partition, evident::Offset(2), 10)).expect("partition read");
    assert_eq!(from_two.iter().map(|e| e.offset.0).collect::<Vec<_>>(), [3], "offset 2 is a marker: the next event");

    assert_eq!(wait(b.read_stream("nope", "k", &StreamQuery::default())).expect("read").events.len(), 0);
    match wait(b.append("nope", "k", ExpectedVersion::Any, &[event("x", "T", "{}")])) {
        Err(Error::UnknownTopic(t)) => assert_eq!(t, "nope"),
        other => panic!("expected an unknown topic, got {other:?}"),
    }

    // A second process (its own mirror) sees the first one's appends and conflicts with them.
    let dir2 = tempfile::tempdir().expect("tempdir");
    let b2 = backend(reference, dir2.path());
    let page2 = wait(b2.read_stream("bank", "acc-1", &StreamQuery::default())).expect("read");
    assert_eq!(page2.events.iter().map(|e| e.offset.0).collect::<Vec<_>>(), offsets);
    let took = wait(b2.append("bank", "acc-1", ExpectedVersion::Exact(Version(2)), &[event("e3", "Deposited", "{}")]))
        .expect("the second process appends");
    assert_eq!(took.last_version, Version(3));
    // The first process's writer was fenced; its next append takes the partition back.
    let back = wait(b.append("bank", "acc-1", ExpectedVersion::Exact(Version(3)), &[event("e4", "Deposited", "{}")]))
        .expect("the first process appends after being fenced");
    assert_eq!(back.last_version, Version(4));
    let all = wait(b.read_all(Sequence(0), 100)).expect("feed");
    assert_eq!(all.iter().filter(|e| e.topic == "bank").count(), 5);
    assert_eq!(event_ids_by_key(&reference.bootstrap, "bank", 3)["acc-1"], ["e0", "e1", "e2", "e3", "e4"]);
}

/// A bank account, for the repository running over Kafka.
#[derive(Debug, Default, Clone, Serialize, Deserialize)]
struct Account {
    balance: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
enum AccountEvent {
    Deposited { amount: i64 },
}

impl DomainEvent for AccountEvent {}

impl Aggregate for Account {
    type Command = i64;
    type Event = AccountEvent;
    type Error = std::convert::Infallible;
    const TOPIC: &'static str = "deposits";

    fn handle(&self, amount: &i64) -> Result<Vec<AccountEvent>, Self::Error> {
        Ok(vec![AccountEvent::Deposited { amount: *amount }])
    }

    fn apply(&mut self, event: &AccountEvent) {
        let AccountEvent::Deposited { amount } = event;
        self.balance += amount;
    }
}

fn two_processes_deposit_into_the_same_accounts(reference: &Reference) {
    let (d1, d2) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let b1: Arc<dyn Backend> = Arc::new(backend(reference, d1.path()));
    let b2: Arc<dyn Backend> = Arc::new(backend(reference, d2.path()));
    wait(b1.ensure_topic("deposits", TopicSpec { partitions: 2, compacted: false })).expect("create");
    let retry = RetryPolicy { max_attempts: 50, ..RetryPolicy::default() };
    let accounts = ["a", "b", "c"];
    let per_thread = 10;
    let threads: Vec<_> = [b1.clone(), b2.clone()]
        .into_iter()
        .enumerate()
        .map(|(n, b)| {
            std::thread::spawn(move || {
                // Snapshots every 10 events: the snapshot topic (compacted) lives on Kafka too.
                let repo =
                    Repository::<Account>::new(b).with_retry(retry).with_snapshots(SnapshotPolicy::EveryEvents(10));
                for i in 0..per_thread {
                    for account in accounts {
                        let id = format!("p{n}-{account}-{i}");
                        repo.execute_idempotent(account, &id, &1).expect("deposit");
                    }
                }
            })
        })
        .collect();
    for t in threads {
        t.join().expect("depositor");
    }
    let contents = event_ids_by_key(&reference.bootstrap, "deposits", 2);
    let mut total = 0;
    for account in accounts {
        let ids = &contents[account];
        let mut unique = ids.clone();
        unique.sort();
        unique.dedup();
        assert_eq!(unique.len(), ids.len(), "{account}: an event id appears twice on Kafka: {ids:?}");
        assert_eq!(ids.len(), 2 * per_thread, "{account}: every deposit once");
        total += ids.len();
        let repo = Repository::<Account>::new(b2.clone()).with_snapshots(SnapshotPolicy::EveryEvents(10));
        let loaded = repo.load(account).expect("load");
        assert_eq!(loaded.state.balance, 2 * per_thread as i64);
        assert!(loaded.snapshot_version.is_some(), "{account}: loaded from a snapshot stored on Kafka");
    }
    println!("two processes, {total} deposits into {} accounts: 0 lost, 0 twice", accounts.len());
}

fn the_examples_run_unchanged(reference: &Reference) {
    let dir = tempfile::tempdir().expect("tempdir");
    let kafka: Arc<dyn Backend> = Arc::new(backend(reference, &dir.path().join("mirror")));

    let sink = evident::projection::Sink::sqlite(dir.path().join("rm.sqlite")).expect("sink");
    let report = bank::run(kafka.clone(), sink, "k").expect("the bank example runs on Kafka");
    assert_eq!(report.alice, 9_500);
    assert_eq!(report.alice_before_withdrawal, 12_000);
    let bob: u64 = (0..249u64).map(|i| 100 + i % 7).sum();
    assert_eq!(report.bob, bob);
    assert_eq!(report.bob_snapshot, Some(Version(199)), "the snapshot stored on Kafka is used");
    assert_eq!(report.bob_replayed, 50);
    assert_eq!(report.balances, vec![("alice-k".to_string(), 9500), ("bob-k".to_string(), bob as i64)]);

    let orders_dir = dir.path().join("orders");
    std::fs::create_dir_all(&orders_dir).expect("dir");
    let report = orders::run(kafka, &orders_dir, "k").expect("the orders example runs on Kafka");
    let stream = "order-events/order-k-legacy".to_string();
    assert_eq!(report.payments, 4);
    assert_eq!(report.revenue_before_fix, 2500 + 4000 + 1550);
    assert_eq!(report.shipped_before_fix, 3);
    assert_eq!(report.parked, vec![(stream.clone(), "parked".to_string()), (stream, "held".to_string())]);
    assert_eq!(report.revenue_after_fix, 2500 + 4000 + 1550 + 999);
    assert_eq!(report.shipped_after_fix, 4);
    assert_eq!(report.parked_after_fix, 0);
}

/// Waits (bounded) until `check` holds, polling.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(120);
    while !check() {
        assert!(std::time::Instant::now() < deadline, "{what}: not within 120 s");
        std::thread::sleep(Duration::from_millis(200));
    }
}

fn two_owners_share_the_partitions(reference: &Reference) {
    let owner = |dir: &std::path::Path| {
        let mut config = KafkaConfig::new(reference.bootstrap.clone(), dir);
        config.timeout = Duration::from_secs(60);
        config.owner_group = Some("library-kafka-owners".into());
        config.session_timeout = Duration::from_secs(6);
        KafkaBackend::open(config).expect("kafka backend")
    };
    let (d1, d2) = (tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir"));
    let b1 = owner(d1.path());
    wait(b1.ensure_topic("owned", TopicSpec { partitions: 4, compacted: false })).expect("create");
    // Every partition of the cluster's topics (the group shares them all, "owned" and the
    // earlier scenarios' topics), as the mirror follows them.
    let everything = || -> BTreeSet<(String, u32)> {
        b1.mirror_positions().into_iter().map(|(t, p, _)| (t, p)).filter(|(t, _)| !t.starts_with('_')).collect()
    };
    let owned = |b: &KafkaBackend| -> BTreeSet<(String, u32)> { b.owned_partitions().into_iter().collect() };
    eventually("one member owns every partition", || owned(&b1) == everything());
    eventually("it holds their ids", || owned(&b1).iter().all(|tp| b1.held_partitions().contains(tp)));
    let b2 = owner(d2.path());
    eventually("two members share the partitions", || {
        let (one, two) = (owned(&b1), owned(&b2));
        !one.is_empty()
            && !two.is_empty()
            && one.is_disjoint(&two)
            && one.union(&two).cloned().collect::<BTreeSet<_>>() == everything()
    });
    println!(
        "ownership: {} partitions, {} and {} owned, rebalances {} and {}",
        everything().len(),
        owned(&b1).len(),
        owned(&b2).len(),
        b1.rebalances(),
        b2.rebalances()
    );
    // Each command to its owner.
    for i in 0..20 {
        let key = format!("k-{i}");
        let (one, two) = (wait(b1.owns("owned", &key)).expect("owns"), wait(b2.owns("owned", &key)).expect("owns"));
        assert!(one != two, "{key}: exactly one owner");
        let to = if one { &b1 } else { &b2 };
        wait(to.append("owned", &key, ExpectedVersion::NoStream, &[event(&format!("o-{i}"), "Opened", "{}")]))
            .expect("append at the owner");
    }
    // The first member leaves: the second owns everything, and appends go on there.
    drop(b1);
    let all: BTreeSet<(String, u32)> =
        b2.mirror_positions().into_iter().map(|(t, p, _)| (t, p)).filter(|(t, _)| !t.starts_with('_')).collect();
    eventually("the remaining member owns every partition", || owned(&b2) == all);
    for i in 0..20 {
        let key = format!("k-{i}");
        assert!(wait(b2.owns("owned", &key)).expect("owns"));
        wait(b2.append("owned", &key, ExpectedVersion::Exact(Version(0)), &[event(&format!("p-{i}"), "Paid", "{}")]))
            .expect("append after the rebalance");
    }
    let contents = event_ids_by_key(&reference.bootstrap, "owned", 4);
    assert_eq!(contents.len(), 20);
    assert!(contents.values().all(|ids| ids.len() == 2), "{contents:?}");
}
