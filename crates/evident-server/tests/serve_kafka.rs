//! `evident serve --storage kafka://...` (issue 16, part 2; docs/cluster.md): evident's HTTP
//! API served as a front over a real three-broker Apache Kafka (`scripts/kafka-ref.sh`,
//! replication factor 3, min.insync.replicas 2), by one node and then by two nodes sharing the
//! cluster's partitions through their ownership group. Scenarios, in turn on one cluster:
//!
//! - the HTTP contract on one node: topics created on Kafka, appends at expected versions
//!   (conflicts naming the current version, idempotent retries, batches), stream reads both
//!   ways, Kafka's offsets in every reply (checked against a plain Kafka consumer), partition
//!   reads by Kafka offset, and the routes a cluster does not serve (`501 not_on_cluster`);
//! - consumer groups are the cluster's own: a real Kafka consumer's group described through the
//!   node (members, assignment, committed offsets, lag), commits and resets refused while it
//!   consumes, then a replay: the group reset to the earliest offsets through the node, and the
//!   consumer, restarted, reads everything again; then the group deleted;
//! - two nodes appending to the same streams at exact expected versions through both (appends
//!   for a partition the other node owns are forwarded to it): every acknowledged append is on
//!   Kafka exactly once, at the version and offset acknowledged, and an append acknowledged by
//!   one node is read at once on the other;
//! - one node killed with SIGKILL while clients append through both: its clients move to the
//!   survivor, appends go on, nothing acknowledged is lost or stored twice, the node restarted
//!   on its mirror serves every event, and so does a new node with an empty mirror (which
//!   also knows that the topic exists);
//! - three nodes (the new one joins the group): each owns a share of the partitions, and
//!   clients appending through all three leave every acknowledged append on Kafka once, at
//!   its version.
//!
//! Checking against the topic's contents read by a plain consumer (`common::kafka_contents`)
//! is what makes the checks independent of the server: a version given twice would put one of
//! the two appends a version later than acknowledged.

mod common;

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use common::jvm::{java, Cluster};
use common::kafka_contents::{records, StoredRecord};
use common::{assert_error, Server};
use rand::{Rng, SeedableRng};
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::ClientConfig;
use serde_json::{json, Value};

/// The topic the two nodes' clients append to, its partitions and its streams.
const TOPIC: &str = "ledger";
const PARTITIONS: u32 = 3;
const KEYS: usize = 6;

/// The ownership group of the two-node scenarios (the one-node scenario keeps the default, so
/// its node, gone by then, is not a member the two nodes wait for).
const PAIR_GROUP: &str = "serve-kafka-pair";

/// The longest a wait on the cluster may take (group rebalances, a dead member's session
/// timeout, a mirror catching up): generous, so that a slow machine does not fail the test.
const CLUSTER_PATIENCE: Duration = Duration::from_secs(120);

/// One three-broker cluster, the scenarios in turn (a cluster takes ~20 s to start, and two
/// cores do not run three at once well); the second and third share their two nodes.
#[test]
fn serve_on_a_three_broker_cluster() {
    let Some(_java) = java("serve_on_a_three_broker_cluster") else { return };
    let cluster = Cluster::start_nodes(3);
    timed("the HTTP contract on one node", || the_http_contract_on_one_node(&cluster));
    let mut pair = timed("two nodes append to the same streams", || two_nodes_append_to_the_same_streams(&cluster));
    timed("a node killed mid-append", || a_node_killed_mid_append(&cluster, &mut pair));
}

fn timed<T>(name: &str, scenario: impl FnOnce() -> T) -> T {
    let start = Instant::now();
    let out = scenario();
    println!("{name}: ok in {:.1} s", start.elapsed().as_secs_f64());
    out
}

/// Waits (bounded by [`CLUSTER_PATIENCE`]) until `check` holds, polling.
fn eventually(what: &str, mut check: impl FnMut() -> bool) {
    let deadline = Instant::now() + CLUSTER_PATIENCE;
    while !check() {
        assert!(Instant::now() < deadline, "{what}: not within {CLUSTER_PATIENCE:?}");
        std::thread::sleep(Duration::from_millis(250));
    }
}

fn event(id: &str, event_type: &str, data: Value) -> Value {
    json!({ "id": id, "type": event_type, "data": data })
}

fn stream_path(topic: &str, key: &str) -> String {
    format!("/v1/topics/{topic}/streams/{key}")
}

/// A gauge or counter of a node's `/metrics`, which must be there.
fn metric(node: &Server, series: &str) -> f64 {
    node.metric(series).unwrap_or_else(|| panic!("{series} is not in /metrics:\n{}", node.metrics()))
}

/// Per key, the (event id, partition, offset) of its records in version order.
fn by_key(records: &[StoredRecord]) -> BTreeMap<String, Vec<(String, i32, i64)>> {
    let mut out: BTreeMap<String, Vec<(String, i32, i64)>> = BTreeMap::new();
    for r in records {
        out.entry(r.key.clone()).or_default().push((r.id.clone(), r.partition, r.offset));
    }
    out
}

/// (event id, partition, offset) of each event of a reply or a page.
fn positions(events: &Value, partition: &Value) -> Vec<(String, i32, i64)> {
    let events = events.as_array().unwrap_or_else(|| panic!("not a list of events: {events}"));
    events
        .iter()
        .map(|e| {
            let p = e.get("partition").unwrap_or(partition);
            (
                e["id"].as_str().expect("id").to_string(),
                p.as_i64().expect("partition") as i32,
                e["offset"].as_i64().expect("offset"),
            )
        })
        .collect()
}

fn versions(events: &Value) -> Vec<u64> {
    events.as_array().expect("events").iter().map(|e| e["version"].as_u64().expect("version")).collect()
}

fn the_http_contract_on_one_node(cluster: &Cluster) {
    let dir = tempfile::tempdir().expect("tempdir");
    let node = Server::start_on_kafka(dir.path(), &cluster.bootstrap, &[]);
    let _log = LogOnPanic(&node);
    assert_eq!(node.kafka_addr, cluster.bootstrap, "the storage line names the cluster as given");
    let out = node.stdout();
    assert!(out.contains("evident: schema registry disabled"), "{out}");
    assert!(!out.contains("Kafka protocol listening"), "no Kafka listener in front of a Kafka cluster: {out}");

    let created = node.create_topic("contract", 3);
    assert_eq!(created["name"], "contract", "{created}");
    let (status, body) = node.post("/v1/topics", &json!({ "name": "contract", "partitions": 3 }));
    assert_eq!(status, 409, "{body}");
    assert_error(&body, "topic_exists");
    let topic = node.get_ok("/v1/topics/contract");
    assert_eq!(topic["partitions"], 3, "{topic}");

    let acc1 = stream_path("contract", "acc-1");
    let first = node.post_expect(
        &acc1,
        &json!({ "expected_version": "no_stream",
                 "events": [event("e0", "Opened", json!({"owner": "ada"})), event("e1", "Deposited", json!({"amount": 5}))] }),
        201,
    );
    assert_eq!(first["duplicate"], false, "{first}");
    assert_eq!(versions(&first["events"]), [0, 1], "{first}");
    assert!(first["events"].as_array().expect("events").iter().all(|e| e["sequence"].is_u64()), "{first}");
    let e2 = event("e2", "Deposited", json!({"amount": 7}));
    let second = node.post_expect(&acc1, &json!({ "expected_version": 1, "events": [e2] }), 201);
    assert_eq!(versions(&second["events"]), [2], "{second}");

    let (status, body) =
        node.post(&acc1, &json!({ "expected_version": 0, "events": [event("e3", "Deposited", json!({}))] }));
    assert_eq!(status, 409, "{body}");
    assert_eq!(assert_error(&body, "wrong_expected_version")["current_version"], 2, "{body}");
    let (status, body) =
        node.post(&acc1, &json!({ "expected_version": "no_stream", "events": [event("e3", "Deposited", json!({}))] }));
    assert_eq!(status, 409, "{body}");
    assert_eq!(assert_error(&body, "wrong_expected_version")["current_version"], 2, "{body}");

    // A retry of a stored event (same id, same content) answers its original positions.
    let (status, retry) = node.post(&acc1, &json!({ "expected_version": 1, "events": [e2] }));
    assert_eq!(status, 200, "{retry}");
    assert_eq!(retry["duplicate"], true, "{retry}");
    assert_eq!(retry["events"][0]["offset"], second["events"][0]["offset"], "{retry} vs {second}");
    assert_eq!(retry["events"][0]["version"], 2, "{retry}");

    let batch: Vec<Value> = (0..3).map(|i| event(&format!("b{i}"), "Deposited", json!({ "amount": i }))).collect();
    let third = node.post_expect(&acc1, &json!({ "expected_version": 2, "events": batch }), 201);
    assert_eq!(versions(&third["events"]), [3, 4, 5], "{third}");
    let batch: Vec<Value> = (0..3).map(|i| event(&format!("c{i}"), "Opened", json!({ "n": i }))).collect();
    let acc2 = node.post_expect(
        &stream_path("contract", "acc-2"),
        &json!({ "expected_version": "no_stream", "events": batch }),
        201,
    );
    assert_eq!(versions(&acc2["events"]), [0, 1, 2], "{acc2}");

    // What the node acknowledged is what a plain Kafka consumer reads: keys, ids, Kafka offsets.
    let mut acknowledged = Vec::new();
    for reply in [&first, &second, &third] {
        acknowledged.extend(positions(&reply["events"], &reply["partition"]));
    }
    let stored = by_key(&records(&cluster.bootstrap, "contract", 3));
    assert_eq!(stored["acc-1"], acknowledged, "acc-1: the replies' offsets against the topic's contents");
    assert_eq!(stored["acc-2"], positions(&acc2["events"], &acc2["partition"]));
    let offsets: Vec<i64> = acknowledged.iter().map(|(_, _, o)| *o).collect();
    assert!(offsets.windows(2).all(|w| w[0] < w[1]), "{offsets:?}");
    // Each transaction's commit marker takes an offset: e2 comes after e1's marker.
    assert!(offsets[2] > offsets[1] + 1, "a commit marker after e1: {offsets:?}");

    // Reads: forward (whole, and in pages), backward, an unknown stream.
    let page = node.get_ok(&acc1);
    assert_eq!(page["current_version"], 5, "{page}");
    assert_eq!(versions(&page["events"]), [0, 1, 2, 3, 4, 5]);
    assert_eq!(positions(&page["events"], &page["partition"]), acknowledged, "a read names the Kafka offsets");
    assert_eq!(page["events"][0]["data"], json!({"owner": "ada"}));
    assert_eq!(page["events"][2]["type"], "Deposited");
    let page = node.get_ok(&format!("{acc1}?limit=4"));
    assert_eq!(versions(&page["events"]), [0, 1, 2, 3]);
    assert_eq!(page["next_version"], 4, "{page}");
    let page = node.get_ok(&format!("{acc1}?limit=4&from_version=4"));
    assert_eq!(versions(&page["events"]), [4, 5]);
    assert_eq!(page["next_version"], Value::Null, "{page}");
    let back = node.get_ok(&format!("{acc1}?direction=backward&limit=2"));
    assert_eq!(versions(&back["events"]), [5, 4], "{back}");
    assert_eq!(back["next_version"], 3, "{back}");
    let back = node.get_ok(&format!("{acc1}?direction=backward&from_version=1"));
    assert_eq!(versions(&back["events"]), [1, 0], "{back}");
    let (status, body) = node.get(&stream_path("contract", "nobody"));
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "stream_not_found");
    let (status, body) = node.post(&stream_path("nope", "k"), &json!({ "events": [event("x", "T", json!({}))] }));
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "unknown_topic");

    // Partition reads by Kafka offset: from a record, and from a commit marker (the next record).
    let partition = first["partition"].as_i64().expect("partition") as i32;
    let mut in_partition: Vec<(String, i32, i64)> =
        stored.values().flatten().filter(|(_, p, _)| *p == partition).cloned().collect();
    in_partition.sort_by_key(|(_, _, o)| *o);
    for from in [offsets[1] + 1, offsets[2], 0] {
        let page = node.get_ok(&format!("/v1/topics/contract/partitions/{partition}/records?offset={from}"));
        let want: Vec<_> = in_partition.iter().filter(|(_, _, o)| *o >= from).cloned().collect();
        assert_eq!(positions(&page["records"], &page["partition"]), want, "records from offset {from}: {page}");
        let last = want.last().expect("records").2;
        assert!(page["high_watermark"].as_i64().expect("high_watermark") > last, "{page}");
    }

    // What a cluster does not serve (a view would live in one node's mirror).
    let (status, body) = node.post("/v1/sql", &json!({ "sql": "SELECT 1" }));
    assert_eq!(status, 501, "{body}");
    assert_error(&body, "not_on_cluster");

    a_replay_resets_a_kafka_consumer_group(cluster, &node, stored.values().map(Vec::len).sum());

    // Alone in its group, the node owns partitions; its mirror catches up with the cluster.
    eventually("the node owns partitions", || metric(&node, "evident_cluster_owned_partitions") > 0.0);
    eventually("the node's mirror has caught up", || metric(&node, "evident_cluster_mirror_lag_records") == 0.0);
}

/// One acknowledged append (a 201): where the node said the event went.
#[derive(Debug, Clone)]
struct Ack {
    key: String,
    id: String,
    partition: i32,
    offset: i64,
    version: u64,
}

/// What the client threads did, shared with the test.
#[derive(Default)]
struct Tally {
    acks: Mutex<Vec<Ack>>,
    /// Every event id sent (acknowledged or not): what may be on Kafka.
    sent: Mutex<HashSet<String>>,
    /// Acknowledgements by clients that started on the node the third scenario kills, through
    /// the survivor after the kill.
    moved_acks: AtomicUsize,
    conflicts: AtomicUsize,
    errors: Mutex<Vec<String>>,
}

impl Tally {
    fn acked(&self) -> usize {
        self.acks.lock().expect("acks").len()
    }
}

/// The two nodes of the second and third scenarios, their clients' record, and what the
/// scenarios counted.
struct Pair {
    dirs: [tempfile::TempDir; 2],
    nodes: [Option<Server>; 2],
    tally: Arc<Tally>,
    /// Nodes killed by the test, kept for their logs.
    dead: Vec<Server>,
}

impl Drop for Pair {
    /// A failed check shows what the nodes logged.
    fn drop(&mut self) {
        if std::thread::panicking() {
            for node in self.nodes.iter().flatten().chain(&self.dead) {
                show_log(node);
            }
        }
    }
}

/// A consumer of `contract` in `group` (librdkafka, as a projection on Kafka would be),
/// polled until it has read `want` records, its position then committed; returned alive.
fn consume_contract(bootstrap: &str, group: &str, want: usize) -> BaseConsumer {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", bootstrap)
        .set("group.id", group)
        .set("client.id", "replayed-projection")
        .set("auto.offset.reset", "earliest")
        .set("enable.auto.commit", "false")
        .set("isolation.level", "read_committed")
        .create()
        .expect("consumer");
    consumer.subscribe(&["contract"]).expect("subscribe");
    let mut read = 0;
    let deadline = Instant::now() + CLUSTER_PATIENCE;
    while read < want {
        assert!(Instant::now() < deadline, "group {group} read {read} of {want} records");
        if let Some(m) = consumer.poll(Duration::from_millis(200)) {
            m.expect("message");
            read += 1;
        }
    }
    consumer.commit_consumer_state(CommitMode::Sync).expect("commit");
    consumer
}

/// Consumer groups on a node are the cluster's: what `kafka-consumer-groups` shows of a real
/// consumer's group, asked through the node, and the replay a projection's rebuild needs.
fn a_replay_resets_a_kafka_consumer_group(cluster: &Cluster, node: &Server, records: usize) {
    const GROUP: &str = "serve-kafka-replay";
    let consumer = consume_contract(&cluster.bootstrap, GROUP, records);
    // Described while it consumes: one member holding the three partitions. (Its committed
    // positions may stop before a last commit marker, which a consumer passes only with its next
    // fetch: Kafka's lag then counts the marker.)
    eventually("the consumer's group is stable", || node.get(&format!("/v1/groups/{GROUP}")).1["state"] == "Stable");
    let described = node.get_ok(&format!("/v1/groups/{GROUP}"));
    let members = described["members"].as_array().expect("members");
    assert_eq!(members.len(), 1, "{described}");
    assert_eq!(members[0]["client_id"], "replayed-projection", "{described}");
    assert_eq!(members[0]["assignment"], json!([{"topic": "contract", "partitions": [0, 1, 2]}]), "{described}");
    let rows = described["offsets"].as_array().expect("offsets");
    assert_eq!(rows.len(), 3, "{described}");
    let mut lags = 0;
    let mut commits = 0;
    for row in rows {
        assert_eq!(row["member_id"], members[0]["member_id"], "{row}");
        assert_eq!(row["commit_time_ms"], Value::Null, "Kafka does not tell the commit time: {row}");
        let end = row["log_end_offset"].as_u64().expect("log end");
        if let Some(committed) = row["committed_offset"].as_u64() {
            // Every record was read: at most the last marker is left.
            assert!(committed <= end && end - committed <= 1, "{row}");
            assert_eq!(row["lag"], end - committed, "{row}");
            lags += end - committed;
            commits += 1;
        } else {
            assert_eq!(end, 0, "a partition without a commit is empty: {row}");
        }
    }
    assert_eq!(described["total_lag"], lags, "{described}");
    let listed = node.get_ok("/v1/groups");
    let summary = listed["groups"].as_array().expect("groups").iter().find(|g| g["group"] == GROUP).cloned();
    assert_eq!(
        summary,
        Some(json!({"group": GROUP, "state": "Stable", "members": 1, "committed_partitions": commits}))
    );
    // While it consumes, only it moves its offsets (Kafka's rule); a plan is shown anyway.
    let reset = json!({ "topics": ["contract"], "to_earliest": true });
    for (path, body) in [
        (
            format!("/v1/groups/{GROUP}/offsets"),
            json!({"offsets": [{"topic": "contract", "partition": 0, "offset": 0}]}),
        ),
        (
            format!("/v1/groups/{GROUP}/reset-offsets"),
            json!({ "topics": ["contract"], "to_earliest": true, "execute": true }),
        ),
    ] {
        let (status, body) = node.post(&path, &body);
        assert_eq!(status, 409, "{path}: {body}");
        assert_error(&body, "group_not_empty");
    }
    let (status, body) = node.delete(&format!("/v1/groups/{GROUP}"));
    assert_eq!(status, 409, "{body}");
    assert_error(&body, "group_not_empty");
    let plan = node.post_expect(&format!("/v1/groups/{GROUP}/reset-offsets"), &reset, 200);
    assert_eq!(plan["executed"], false, "{plan}");
    assert!(plan["offsets"].as_array().expect("rows").iter().all(|r| r["new_offset"] == 0), "{plan}");

    // The consumer stops (leaving the group); the replay: reset to the earliest, executed.
    consumer.unsubscribe();
    drop(consumer);
    eventually("the group is empty", || node.get(&format!("/v1/groups/{GROUP}")).1["state"] == "Empty");
    let executed = node.post_expect(
        &format!("/v1/groups/{GROUP}/reset-offsets"),
        &json!({ "topics": ["contract"], "to_earliest": true, "execute": true }),
        200,
    );
    assert_eq!(executed["executed"], true, "{executed}");
    assert_eq!(executed["offsets"].as_array().expect("rows").len(), 3, "{executed}");
    let offsets = node.get_ok(&format!("/v1/groups/{GROUP}/offsets?topic=contract"));
    let committed: Vec<u64> =
        offsets["offsets"].as_array().expect("offsets").iter().map(|o| o["offset"].as_u64().expect("offset")).collect();
    assert_eq!(committed, [0, 0, 0], "{offsets}");
    // Restarted, the consumer reads every record again from its group's offsets, then commits.
    drop(consume_contract(&cluster.bootstrap, GROUP, records));
    eventually("the replayed group is empty again", || node.get(&format!("/v1/groups/{GROUP}")).1["state"] == "Empty");
    let replayed = node.get_ok(&format!("/v1/groups/{GROUP}"));
    for row in replayed["offsets"].as_array().expect("offsets") {
        let end = row["log_end_offset"].as_u64().expect("log end");
        let committed = row["committed_offset"].as_u64().expect("committed by the replay");
        assert!(committed <= end && end - committed <= 1, "read to the end again: {row}");
    }
    // A commit from outside now that it is empty, with metadata; then the group deleted.
    let committed = node.post_expect(
        &format!("/v1/groups/{GROUP}/offsets"),
        &json!({"offsets": [{"topic": "contract", "partition": 1, "offset": 1, "metadata": "by hand"}]}),
        200,
    );
    let row = committed["offsets"].as_array().expect("offsets").iter().find(|o| o["partition"] == 1).cloned();
    assert_eq!(row.map(|r| (r["offset"].clone(), r["metadata"].clone())), Some((json!(1), json!("by hand"))));
    let (status, body) = node.post(
        &format!("/v1/groups/{GROUP}/offsets"),
        &json!({"offsets": [{"topic": "contract", "partition": 9, "offset": 1}]}),
    );
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "unknown_partition");
    let (status, body) = node.delete(&format!("/v1/groups/{GROUP}"));
    assert_eq!(status, 204, "{body}");
    let (status, body) = node.get(&format!("/v1/groups/{GROUP}"));
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "unknown_group");
}

/// Prints the end of a node's stderr (when a check failed).
fn show_log(node: &Server) {
    let log = node.stderr();
    let lines: Vec<&str> = log.lines().collect();
    println!("--- the last lines of node {}'s stderr", node.addr);
    for line in &lines[lines.len().saturating_sub(60)..] {
        println!("{line}");
    }
}

/// Shows a node's log if the scenario fails while it is in scope.
struct LogOnPanic<'a>(&'a Server);

impl Drop for LogOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            show_log(self.0);
        }
    }
}

fn pair_node(cluster: &Cluster, dir: &std::path::Path) -> Server {
    Server::start_on_kafka(dir, &cluster.bootstrap, &["--ownership-group", PAIR_GROUP])
}

/// A client thread: appends a `Deposited` event at the exact current version of a random
/// stream of [`TOPIC`], through `urls[0]` (moving to the next URL when a node does not answer
/// at all), until it has `quota` acknowledgements or `stop` is set. A conflict (another client
/// appended between the read and the append) is retried with a new read; an answer that is
/// neither 201 nor 409 is counted as an error and the append is dropped (its id may still have
/// landed: the contents check allows that, never an acknowledged append missing).
fn spawn_client(
    name: String,
    urls: Vec<String>,
    seed: u64,
    quota: Option<usize>,
    stop: Arc<AtomicBool>,
    killed: Arc<AtomicBool>,
    tally: Arc<Tally>,
) -> JoinHandle<()> {
    std::thread::spawn(move || {
        let http = reqwest::blocking::Client::builder().timeout(Duration::from_secs(60)).build().expect("client");
        let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
        let mut at = 0;
        let mut mine = 0;
        let error = |what: String| {
            let mut errors = tally.errors.lock().expect("errors");
            errors.push(what);
        };
        for n in 0u64.. {
            if stop.load(Ordering::SeqCst) || quota.is_some_and(|q| mine >= q) {
                return;
            }
            let base = &urls[at % urls.len()];
            let key = format!("acct-{}", rng.gen_range(0..KEYS));
            let path = stream_path(TOPIC, &key);
            let current = match http.get(format!("{base}{path}?direction=backward&limit=1")).send() {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let body: Value = r.json().unwrap_or(Value::Null);
                    match status {
                        200 => Some(body["current_version"].as_u64().expect("current_version")),
                        404 if body["error"]["code"] == "stream_not_found" => None,
                        _ => {
                            error(format!("{name}: read {key} on {base}: {status} {body}"));
                            std::thread::sleep(Duration::from_millis(100));
                            continue;
                        }
                    }
                }
                Err(e) => {
                    // The node is gone (connection refused or reset): use the other one.
                    error(format!("{name}: read {key} on {base}: {e}"));
                    at += 1;
                    std::thread::sleep(Duration::from_millis(100));
                    continue;
                }
            };
            let expected = current.map_or(json!("no_stream"), |v| json!(v));
            let id = format!("{name}-{n}");
            tally.sent.lock().expect("sent").insert(id.clone());
            let body =
                json!({ "expected_version": expected, "events": [event(&id, "Deposited", json!({"amount": 1}))] });
            match http.post(format!("{base}{path}")).json(&body).send() {
                Ok(r) => {
                    let status = r.status().as_u16();
                    let reply: Value = r.json().unwrap_or(Value::Null);
                    match status {
                        201 => {
                            let e = &reply["events"][0];
                            assert_eq!(e["id"], id.as_str(), "{name}: {reply}");
                            assert_eq!(reply["duplicate"], false, "{name}: {reply}");
                            let version = e["version"].as_u64().expect("version");
                            let want = current.map_or(0, |v| v + 1);
                            assert_eq!(
                                version, want,
                                "{name}: appended at {expected}, acknowledged at {version}: {reply}"
                            );
                            tally.acks.lock().expect("acks").push(Ack {
                                key,
                                id,
                                partition: reply["partition"].as_i64().expect("partition") as i32,
                                offset: e["offset"].as_i64().expect("offset"),
                                version,
                            });
                            mine += 1;
                            if killed.load(Ordering::SeqCst) && at % urls.len() != 0 {
                                tally.moved_acks.fetch_add(1, Ordering::SeqCst);
                            }
                        }
                        409 if reply["error"]["code"] == "wrong_expected_version" => {
                            tally.conflicts.fetch_add(1, Ordering::SeqCst);
                        }
                        _ => {
                            error(format!("{name}: append {id} to {key} on {base}: {status} {reply}"));
                            std::thread::sleep(Duration::from_millis(100));
                        }
                    }
                }
                Err(e) => {
                    error(format!("{name}: append {id} to {key} on {base}: {e}"));
                    at += 1;
                    std::thread::sleep(Duration::from_millis(100));
                }
            }
        }
    })
}

/// Two clients per node, each starting on its node and falling back to the other.
fn spawn_clients(
    pair: &Pair,
    round: &str,
    quota: Option<usize>,
    stop: &Arc<AtomicBool>,
    killed: &Arc<AtomicBool>,
    seed: u64,
) -> Vec<JoinHandle<()>> {
    let urls: Vec<String> = pair.nodes.iter().map(|n| n.as_ref().expect("running").base()).collect();
    let mut clients = Vec::new();
    for (i, own) in [0, 0, 1, 1].into_iter().enumerate() {
        let order = vec![urls[own].clone(), urls[1 - own].clone()];
        // Only the clients of node 1 (the one the third scenario kills) count as moved.
        let killed = if own == 1 { killed.clone() } else { Arc::new(AtomicBool::new(false)) };
        let name = format!("{round}{i}n{own}");
        clients.push(spawn_client(name, order, seed + i as u64, quota, stop.clone(), killed, pair.tally.clone()));
    }
    clients
}

/// Reads [`TOPIC`] back with a plain consumer and checks every acknowledged append against it:
/// no event id twice, each acknowledged one at exactly its key, version, partition and offset,
/// and nothing there that no client sent. Returns (events on Kafka, acknowledged).
fn check_contents(cluster: &Cluster, tally: &Tally) -> (usize, usize) {
    let stored = by_key(&records(&cluster.bootstrap, TOPIC, PARTITIONS));
    let sent = tally.sent.lock().expect("sent");
    let mut at: HashMap<&str, (&str, u64, i32, i64)> = HashMap::new();
    for (key, events) in &stored {
        for (version, (id, partition, offset)) in events.iter().enumerate() {
            assert!(sent.contains(id), "{id} ({key}@{version}) is on Kafka but no client sent it");
            let was = at.insert(id.as_str(), (key.as_str(), version as u64, *partition, *offset));
            assert!(was.is_none(), "event id {id} is on Kafka twice: {was:?} and {key}@{version}");
        }
    }
    let acks = tally.acks.lock().expect("acks");
    for ack in acks.iter() {
        assert_eq!(
            at.get(ack.id.as_str()),
            Some(&(ack.key.as_str(), ack.version, ack.partition, ack.offset)),
            "acknowledged {ack:?} is not there on Kafka (key, version, partition, offset)"
        );
    }
    (at.len(), acks.len())
}

fn two_nodes_append_to_the_same_streams(cluster: &Cluster) -> Pair {
    let dirs = [tempfile::tempdir().expect("tempdir"), tempfile::tempdir().expect("tempdir")];
    let a = pair_node(cluster, dirs[0].path());
    a.create_topic(TOPIC, PARTITIONS);
    let b = pair_node(cluster, dirs[1].path());
    let pair = Pair { nodes: [Some(a), Some(b)], dirs, tally: Arc::default(), dead: Vec::new() };
    let node = |i: usize| pair.nodes[i].as_ref().expect("running");
    eventually("both nodes own partitions", || {
        (0..2).all(|i| metric(node(i), "evident_cluster_owned_partitions") > 0.0)
    });
    println!(
        "ownership: {} and {} partitions owned, rebalances {} and {}",
        metric(node(0), "evident_cluster_owned_partitions"),
        metric(node(1), "evident_cluster_owned_partitions"),
        metric(node(0), "evident_cluster_rebalances_total"),
        metric(node(1), "evident_cluster_rebalances_total"),
    );

    // Read-your-writes across nodes: acknowledged by one, read at once on the other.
    for i in 0..10 {
        let (writer, reader) = (node(i % 2), node(1 - i % 2));
        let key = format!("ryw-{i}");
        let id = format!("ryw-{i}");
        pair.tally.sent.lock().expect("sent").insert(id.clone());
        let reply = writer.post_expect(
            &stream_path(TOPIC, &key),
            &json!({ "expected_version": "no_stream", "events": [event(&id, "Opened", json!({}))] }),
            201,
        );
        let page = reader.get_ok(&stream_path(TOPIC, &key));
        assert_eq!(
            positions(&page["events"], &page["partition"]),
            positions(&reply["events"], &reply["partition"]),
            "appended on {}, read on {}",
            writer.addr,
            reader.addr
        );
        pair.tally.acks.lock().expect("acks").push(Ack {
            key,
            id,
            partition: reply["partition"].as_i64().expect("partition") as i32,
            offset: reply["events"][0]["offset"].as_i64().expect("offset"),
            version: 0,
        });
    }

    let appends: usize = std::env::var("EVIDENT_TEST_SERVE_APPENDS").ok().and_then(|v| v.parse().ok()).unwrap_or(160);
    let seed: u64 =
        std::env::var("EVIDENT_TEST_SERVE_SEED").ok().and_then(|v| v.parse().ok()).unwrap_or_else(rand::random);
    println!("serve on kafka: seed={seed} appends={appends} (EVIDENT_TEST_SERVE_SEED, EVIDENT_TEST_SERVE_APPENDS)");
    let stop = Arc::new(AtomicBool::new(false));
    let never = Arc::new(AtomicBool::new(false));
    let clients = spawn_clients(&pair, "b", Some(appends.div_ceil(4)), &stop, &never, seed);
    // A guard against a hang only: the clients stop at their quota.
    let deadline = Instant::now() + Duration::from_secs(900);
    while !clients.iter().all(JoinHandle::is_finished) {
        if Instant::now() > deadline {
            stop.store(true, Ordering::SeqCst);
            for c in clients {
                let _ = c.join();
            }
            panic!(
                "the clients made {} appends in 900 s; errors: {:?}",
                pair.tally.acked(),
                pair.tally.errors.lock().expect("errors").iter().take(10).collect::<Vec<_>>()
            );
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    for c in clients {
        c.join().expect("a client failed");
    }
    let (stored, acked) = check_contents(cluster, &pair.tally);
    let node = |i: usize| pair.nodes[i].as_ref().expect("running");
    let forwarded: Vec<f64> = (0..2).map(|i| metric(node(i), "evident_cluster_forwarded_total")).collect();
    assert!(forwarded.iter().sum::<f64>() > 0.0, "no append was forwarded to its owner: {forwarded:?}");
    let errors = pair.tally.errors.lock().expect("errors").clone();
    for e in errors.iter().take(5) {
        println!("  {e}");
    }
    println!(
        "serve on kafka, two nodes: acked={acked} stored={stored} forwarded={} conflicts={} errors={} lost=0 twice=0",
        forwarded.iter().sum::<f64>(),
        pair.tally.conflicts.load(Ordering::SeqCst),
        errors.len()
    );
    pair
}

fn a_node_killed_mid_append(cluster: &Cluster, pair: &mut Pair) {
    let acked_before = pair.tally.acked();
    let stop = Arc::new(AtomicBool::new(false));
    let killed = Arc::new(AtomicBool::new(false));
    let clients = spawn_clients(pair, "c", None, &stop, &killed, rand::random());
    let tally = pair.tally.clone();
    let wait_acks = |what: &str, more: usize, also: &dyn Fn() -> bool| {
        let from = tally.acked();
        let start = Instant::now();
        while tally.acked() < from + more || !also() {
            assert!(
                start.elapsed() < CLUSTER_PATIENCE,
                "{what}: {} appends acknowledged in {CLUSTER_PATIENCE:?} (wanted {more}); errors: {:?}",
                tally.acked() - from,
                tally.errors.lock().expect("errors").iter().rev().take(10).collect::<Vec<_>>()
            );
            std::thread::sleep(Duration::from_millis(100));
        }
        start.elapsed()
    };
    wait_acks("before the kill", 10, &|| true);
    // Node 1's last reading, then SIGKILL: no shutdown, no leaving the group.
    let node1_forwarded = metric(pair.nodes[1].as_ref().expect("running"), "evident_cluster_forwarded_total");
    let owned: f64 = pair.nodes.iter().flatten().map(|n| metric(n, "evident_cluster_owned_partitions")).sum();
    let mut victim = pair.nodes[1].take().expect("running");
    victim.kill9();
    let killed_at = Instant::now();
    pair.dead.push(victim);
    killed.store(true, Ordering::SeqCst);
    let after_kill = pair.tally.acked();
    let took = wait_acks("with node 1 killed", 10, &|| tally.moved_acks.load(Ordering::SeqCst) > 0);
    println!(
        "node 1 killed: appends went on through node 0 ({} acknowledged in {:.1} s, {} by node 1's clients)",
        pair.tally.acked() - after_kill,
        took.as_secs_f64(),
        pair.tally.moved_acks.load(Ordering::SeqCst)
    );
    // Once the dead member's session expires, the group gives its partitions to the survivor,
    // and appends go on there without a forward to try first.
    let survivor = pair.nodes[0].as_ref().expect("running");
    eventually("the survivor owns every partition", || metric(survivor, "evident_cluster_owned_partitions") == owned);
    let failures = metric(survivor, "evident_cluster_forward_failures_total");
    let took_over = killed_at.elapsed();
    let took = wait_acks("after the survivor took over", 10, &|| true);
    println!(
        "node 0 owns all {owned} partitions {:.1} s after the kill ({failures} forwards to node 1 failed meanwhile); \
         10 more appends in {:.1} s",
        took_over.as_secs_f64(),
        took.as_secs_f64()
    );
    stop.store(true, Ordering::SeqCst);
    for c in clients {
        c.join().expect("a client failed");
    }
    let survivor = pair.nodes[0].as_ref().expect("running");
    // Both counters count from their process's start (the second scenario): node 0's now and
    // node 1's last reading before the kill (what it forwarded after that reading is lost).
    let forwarded = metric(survivor, "evident_cluster_forwarded_total") + node1_forwarded;
    let (stored, acked) = check_contents(cluster, &pair.tally);

    // Node 1 again, on its mirror: it serves every event, as the cluster holds them.
    pair.nodes[1] = Some(pair_node(cluster, pair.dirs[1].path()));
    let (survivor, restarted) = (pair.nodes[0].as_ref().expect("running"), pair.nodes[1].as_ref().expect("restarted"));
    let contents = by_key(&records(&cluster.bootstrap, TOPIC, PARTITIONS));
    for (key, events) in &contents {
        for node in [restarted, survivor] {
            let page = node.get_ok(&format!("{}?limit=10000", stream_path(TOPIC, key)));
            assert_eq!(&positions(&page["events"], &page["partition"]), events, "{key} read on {}", node.addr);
            assert_eq!(page["current_version"], events.len() as u64 - 1, "{key} on {}", node.addr);
        }
    }
    // It appends again (to its own partitions or forwarded), read at once on the survivor.
    let key = "acct-0";
    let current = contents[key].len() as u64 - 1;
    pair.tally.sent.lock().expect("sent").insert("after-restart".to_string());
    let reply = restarted.post_expect(
        &stream_path(TOPIC, key),
        &json!({ "expected_version": current, "events": [event("after-restart", "Deposited", json!({"amount": 1}))] }),
        201,
    );
    let page = survivor.get_ok(&format!("{}?from_version={}", stream_path(TOPIC, key), current + 1));
    assert_eq!(positions(&page["events"], &page["partition"]), positions(&reply["events"], &reply["partition"]));
    eventually("both mirrors have caught up", || {
        [restarted, survivor].iter().all(|n| metric(n, "evident_cluster_mirror_lag_records") == 0.0)
    });

    let errors = pair.tally.errors.lock().expect("errors").clone();
    println!(
        "serve on kafka: {acked} appends acknowledged through 2 nodes ({} after the kill), {} on Kafka ({} landed \
         unacknowledged), {forwarded} forwarded, 0 lost, 0 twice",
        acked - after_kill,
        stored,
        stored - acked,
    );
    println!(
        "serve on kafka: acked={acked} acked_in_kill_round={} stored={stored} forwarded={forwarded} conflicts={} \
         errors={} lost=0 twice=0",
        acked - acked_before,
        pair.tally.conflicts.load(Ordering::SeqCst),
        errors.len()
    );

    // A node that has just joined (a new, empty mirror) serves every event too, and knows
    // the topic exists on the cluster before its mirror has listed it.
    let fresh_dir = tempfile::tempdir().expect("tempdir");
    let fresh = pair_node(cluster, fresh_dir.path());
    let _log = LogOnPanic(&fresh);
    let (status, body) = fresh.post("/v1/topics", &json!({ "name": TOPIC, "partitions": PARTITIONS }));
    assert_eq!(status, 409, "creating {TOPIC}, which the cluster has, on a node that has just started: {body}");
    assert_error(&body, "topic_exists");
    let contents = by_key(&records(&cluster.bootstrap, TOPIC, PARTITIONS));
    for (key, events) in &contents {
        let page = fresh.get_ok(&format!("{}?limit=10000", stream_path(TOPIC, key)));
        assert_eq!(&positions(&page["events"], &page["partition"]), events, "{key} read on a new node");
    }

    // Three nodes: the new one is a member of the group too. Once each owns a share of the
    // partitions, a client per node appends to the same streams; the contents check again.
    let three = [pair.nodes[0].as_ref().expect("running"), pair.nodes[1].as_ref().expect("running"), &fresh];
    eventually("three nodes own partitions", || {
        three.iter().all(|n| metric(n, "evident_cluster_owned_partitions") > 0.0)
    });
    let forwarded_before: f64 = three.iter().map(|n| metric(n, "evident_cluster_forwarded_total")).sum();
    let acked_before = pair.tally.acked();
    let urls: Vec<String> = three.iter().map(|n| n.base()).collect();
    let (stop, never) = (Arc::new(AtomicBool::new(false)), Arc::new(AtomicBool::new(false)));
    let clients: Vec<JoinHandle<()>> = (0..3)
        .map(|i| {
            let order: Vec<String> = (0..3).map(|j| urls[(i + j) % 3].clone()).collect();
            spawn_client(
                format!("t{i}"),
                order,
                rand::random(),
                Some(20),
                stop.clone(),
                never.clone(),
                pair.tally.clone(),
            )
        })
        .collect();
    for c in clients {
        c.join().expect("a client failed");
    }
    let (stored, acked) = check_contents(cluster, &pair.tally);
    let forwarded: f64 =
        three.iter().map(|n| metric(n, "evident_cluster_forwarded_total")).sum::<f64>() - forwarded_before;
    let owned: Vec<f64> = three.iter().map(|n| metric(n, "evident_cluster_owned_partitions")).collect();
    println!(
        "serve on kafka, three nodes: owned={owned:?} acked={} forwarded={forwarded} stored={stored} total_acked={acked} \
         lost=0 twice=0",
        acked - acked_before
    );
}
