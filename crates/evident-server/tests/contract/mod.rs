//! The HTTP API's contract tests, written once against a [`Target`]: one embedded
//! `evident serve` (`tests/e2e_http.rs`) or a group of two or three `evident serve
//! --storage kafka://` nodes in front of a Kafka cluster (`tests/serve_kafka_contract.rs`),
//! the requests rotating over the nodes. The bank-account walkthrough, optimistic concurrency,
//! idempotent retries, topics, partition and store-wide reads, live subscriptions
//! (Server-Sent Events), consumer groups and every offset-reset strategy, durability across a
//! restart, and the operations routes.
//!
//! Every check holds on both wherever the documented behaviour is the same. Where a node's
//! documented behaviour differs (docs/cluster.md), the node variant checks that behaviour
//! instead, each place marked `on nodes`: offsets are Kafka's, not dense (every transaction's
//! commit marker takes one), so the checks are the properties that still hold (increasing,
//! reads from an offset return the records at or after it, the same offsets on every node);
//! `sequence` and `/v1/all` are each node's own mirror's order, so those checks stay on one
//! node; topic deletion, partition subscriptions, internal topics and topic settings other
//! than partitions and cleanup policy are answered as a node documents it (`501
//! not_on_cluster`, `400 invalid_config`).

/// Applies `$runner` (a macro of the test binary that makes one test, or several, of each
/// name) to every test of the contract: the one list, so a test added here runs on the
/// embedded server and on the nodes alike.
macro_rules! for_each_test {
    ($runner:ident) => {
        $runner!(
            bank_account_walkthrough,
            expected_version_conflicts_append_nothing,
            idempotent_retries_answer_the_original_positions,
            topics_create_list_describe_delete,
            partition_reads_from_an_offset_or_a_timestamp,
            everything_in_commit_order_without_internal_topics,
            subscribe_to_a_stream_catch_up_live_and_resume,
            subscribe_to_a_topic_a_partition_and_unknown_targets,
            disconnecting_a_subscriber_closes_its_subscription,
            consumer_groups_commit_fetch_list_describe_delete,
            reset_offsets_every_strategy_and_scope,
            data_and_group_offsets_survive_a_restart,
            health_metrics_and_openapi,
            a_stalled_subscriber_does_not_stall_appends,
            a_too_long_uri_is_414_with_the_json_error,
            topic_creation_warns_about_unenforced_settings,
        );
    };
}
pub(crate) use for_each_test;

pub mod target;

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::common::{self, assert_error, balance, eventually, next_millisecond, rfc3339_ms, Sse};
pub use target::Target;

/// The events of the walkthrough, in order, with the expected version each is appended at.
fn walkthrough_events() -> Vec<(Value, Value)> {
    vec![
        (json!({"type": "AccountCreated", "data": {"owner": "ada"}}), json!("no_stream")),
        (json!({"type": "MoneyDeposited", "data": {"amount": 100}}), json!(0)),
        (json!({"type": "MoneyWithdrawn", "data": {"amount": 30}}), json!(1)),
        (json!({"type": "MoneyDeposited", "data": {"amount": 50}}), json!(2)),
    ]
}

/// Creates `bank` and appends the walkthrough to `acc-1` (each append in a later millisecond
/// than the one before); returns the append replies.
fn bank(server: &Target) -> Vec<Value> {
    let bank = server.topic("bank");
    server.create_topic(&bank, 1);
    let mut replies = Vec::new();
    for (event, expected) in walkthrough_events() {
        next_millisecond();
        let body = json!({ "expected_version": expected, "events": [event] });
        replies.push(server.post_expect(&format!("/v1/topics/{bank}/streams/acc-1"), &body, 201));
    }
    replies
}

fn versions(events: &Value) -> Vec<u64> {
    events.as_array().expect("events array").iter().map(|e| e["version"].as_u64().expect("version")).collect()
}

fn field_u64(events: &Value, name: &str) -> Vec<u64> {
    events
        .as_array()
        .expect("array")
        .iter()
        .map(|e| e[name].as_u64().unwrap_or_else(|| panic!("{name} in {e}")))
        .collect()
}

/// Offsets of records appended one per transaction: exactly `dense` on the embedded store;
/// on nodes Kafka's, increasing with a gap after each (the transaction's commit marker).
fn assert_offsets(server: &Target, offsets: &[u64], dense: &[u64]) {
    if server.is_cluster() {
        assert_eq!(offsets.len(), dense.len(), "{offsets:?}");
        assert!(offsets.windows(2).all(|w| w[0] + 1 < w[1]), "on nodes: increasing, a marker between: {offsets:?}");
    } else {
        assert_eq!(offsets, dense);
    }
}

/// An event without its `sequence`, which on nodes is the answering node's own.
fn without_sequence(event: &Value) -> Value {
    let mut e = event.clone();
    if let Some(map) = e.as_object_mut() {
        map.remove("sequence");
    }
    e
}

/// Asserts that two lists of events are the same, `sequence` included on the embedded server
/// (on nodes each node numbers its own mirror: the rest must be the same).
fn assert_same_events(server: &Target, got: &Value, want: &Value) {
    if server.is_cluster() {
        let strip = |v: &Value| -> Vec<Value> { v.as_array().expect("events").iter().map(without_sequence).collect() };
        assert_eq!(strip(got), strip(want), "on nodes, sequences aside");
    } else {
        assert_eq!(got, want);
    }
}

/// The events of the store-wide feed in this target's topics: the embedded server's whole
/// `/v1/all`, or on nodes node 0's feed (each node's mirror follows every topic of the shared
/// cluster, with no wait: it is waited for until it holds `expected` events of ours).
fn all_events(server: &Target, expected: usize) -> Vec<Value> {
    if !server.is_cluster() {
        return server.get_ok("/v1/all")["events"].as_array().expect("events").clone();
    }
    let node = server.pinned(0);
    let ours = || -> Vec<Value> {
        let mut out = Vec::new();
        let mut from = 0u64;
        loop {
            let page = node.get_ok(&format!("/v1/all?from_sequence={from}&limit=1000"));
            let events = page["events"].as_array().expect("events");
            out.extend(events.iter().filter(|e| server.owns_topic(e["topic"].as_str().unwrap_or(""))).cloned());
            match page["next_sequence"].as_u64() {
                Some(next) => from = next,
                None => return out,
            }
        }
    };
    let mut seen = Vec::new();
    eventually("node 0's feed to hold this test's events", || {
        seen = ours();
        seen.len() >= expected
    });
    seen
}

pub fn bank_account_walkthrough(server: Target) {
    let replies = bank(&server);
    let bank = server.topic("bank");
    let acc1 = format!("/v1/topics/{bank}/streams/acc-1");
    let mut last_sequence = None;
    let mut reply_offsets = Vec::new();
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply["topic"], bank.as_str());
        assert_eq!(reply["key"], "acc-1");
        assert_eq!(reply["partition"], 0);
        assert_eq!(reply["duplicate"], false);
        let events = reply["events"].as_array().expect("events");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["version"], i as u64, "{reply}");
        reply_offsets.push(events[0]["offset"].as_u64().expect("offset"));
        assert!(events[0]["id"].as_str().is_some_and(|id| !id.is_empty()), "a generated id: {reply}");
        let sequence = events[0]["sequence"].as_u64().expect("sequence");
        // On nodes each reply's sequence is the answering node's: they increase per node only.
        if !server.is_cluster() {
            assert!(last_sequence.is_none_or(|last| sequence > last), "sequences increase: {reply}");
        }
        last_sequence = Some(sequence);
    }
    assert_offsets(&server, &reply_offsets, &[0, 1, 2, 3]);

    // Read it back and rebuild the state by replaying.
    let read = server.get_ok(&acc1);
    assert_eq!(read["topic"], bank.as_str());
    assert_eq!(read["key"], "acc-1");
    assert_eq!(read["partition"], 0);
    assert_eq!(read["current_version"], 3);
    assert_eq!(read["next_version"], Value::Null);
    let events = read["events"].as_array().expect("events").clone();
    assert_eq!(versions(&read["events"]), [0, 1, 2, 3]);
    assert_eq!(field_u64(&read["events"], "offset"), reply_offsets, "a read names the appends' offsets");
    let sequences = field_u64(&read["events"], "sequence");
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().expect("type")).collect();
    assert_eq!(types, ["AccountCreated", "MoneyDeposited", "MoneyWithdrawn", "MoneyDeposited"]);
    assert_eq!(balance(&events), 120);
    for (e, reply) in events.iter().zip(&replies) {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["source"], "/evident/http");
        assert_eq!(e["datacontenttype"], "application/json");
        assert_eq!(e["topic"], bank.as_str());
        assert_eq!(e["key"], "acc-1");
        assert_eq!(e["id"], reply["events"][0]["id"], "read ids are the appended ids");
        assert_eq!(e["offset"], reply["events"][0]["offset"]);
        if !server.is_cluster() {
            assert_eq!(e["sequence"], reply["events"][0]["sequence"]);
        }
    }
    assert_eq!(events[0]["data"], json!({"owner": "ada"}));

    // Backward, two at a time.
    let back = server.get_ok(&format!("{acc1}?direction=backward&limit=2"));
    assert_eq!(versions(&back["events"]), [3, 2]);
    assert_eq!(back["next_version"], 1);
    let back2 = server.get_ok(&format!("{acc1}?direction=backward&limit=2&from_version=1"));
    assert_eq!(versions(&back2["events"]), [1, 0]);
    assert_eq!(back2["next_version"], Value::Null);

    // Forward paging.
    let page = server.get_ok(&format!("{acc1}?limit=2"));
    assert_eq!(versions(&page["events"]), [0, 1]);
    assert_eq!(page["next_version"], 2);
    let page = server.get_ok(&format!("{acc1}?limit=2&from_version=2"));
    assert_eq!(versions(&page["events"]), [2, 3]);
    assert_eq!(page["next_version"], Value::Null);

    // As of a version: the state after the deposit of 100.
    let as_of = server.get_ok(&format!("{acc1}?as_of_version=1"));
    assert_eq!(versions(&as_of["events"]), [0, 1]);
    assert_eq!(balance(as_of["events"].as_array().expect("events")), 100);

    // As of a time: the timestamp of version 2 (inclusive), and just before it.
    let t1 = rfc3339_ms(events[1]["timestamp"].as_str().expect("timestamp"));
    let t2 = rfc3339_ms(events[2]["timestamp"].as_str().expect("timestamp"));
    assert!(t1 < t2, "appends in later milliseconds have later timestamps: {t1} {t2}");
    let ts2 = events[2]["timestamp"].as_str().expect("timestamp");
    let at = server.get_ok(&format!("{acc1}?as_of_time={ts2}"));
    assert_eq!(versions(&at["events"]), [0, 1, 2]);
    assert_eq!(balance(at["events"].as_array().expect("events")), 70);
    let before = server.get_ok(&format!("{acc1}?as_of_time={}", t2 - 1));
    assert_eq!(versions(&before["events"]), [0, 1]);
    let first = rfc3339_ms(events[0]["timestamp"].as_str().expect("timestamp"));
    let (status, body) = server.get(&format!("{acc1}?as_of_time={}", first - 1));
    // Before the stream's first event the stream held nothing.
    assert!(
        status == 404 || (status == 200 && body["events"] == json!([])),
        "as_of_time before the first event: {status} {body}"
    );
}

pub fn expected_version_conflicts_append_nothing(server: Target) {
    bank(&server);
    let bank = server.topic("bank");
    let acc1 = format!("/v1/topics/{bank}/streams/acc-1");
    let acc2 = format!("/v1/topics/{bank}/streams/acc-2");
    let (status, body) = server
        .post(&acc1, &json!({"expected_version": 0, "events": [{"type": "MoneyDeposited", "data": {"amount": 1}}]}));
    assert_eq!(status, 409, "{body}");
    let error = assert_error(&body, "wrong_expected_version");
    assert_eq!(error["current_version"], 3, "{body}");
    // The query form of the expected version.
    let (status, body) =
        server.post(&format!("{acc1}?expected_version=2"), &json!({"type": "MoneyDeposited", "data": {"amount": 1}}));
    assert_eq!(status, 409, "{body}");
    assert_eq!(assert_error(&body, "wrong_expected_version")["current_version"], 3);
    // no_stream on an existing stream.
    let (status, body) =
        server.post(&acc1, &json!({"expected_version": "no_stream", "events": [{"type": "AccountCreated"}]}));
    assert_eq!(status, 409, "{body}");
    assert_eq!(assert_error(&body, "wrong_expected_version")["current_version"], 3);
    // stream_exists on a new stream.
    let (status, body) =
        server.post(&acc2, &json!({"expected_version": "stream_exists", "events": [{"type": "MoneyDeposited"}]}));
    assert_eq!(status, 409, "{body}");
    let error = assert_error(&body, "wrong_expected_version");
    assert!(error.get("current_version").is_some_and(Value::is_null), "current_version null: {body}");

    // Nothing was appended anywhere.
    let read = server.get_ok(&acc1);
    assert_eq!(read["current_version"], 3);
    assert_eq!(versions(&read["events"]), [0, 1, 2, 3]);
    let (status, body) = server.get(&acc2);
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "stream_not_found");
    assert_eq!(all_events(&server, 4).len(), 4);

    // The right expected version goes through; `any` always does.
    let ok = server.post_expect(
        &acc1,
        &json!({"expected_version": 3, "events": [{"type": "MoneyDeposited", "data": {"amount": 5}}]}),
        201,
    );
    assert_eq!(ok["events"][0]["version"], 4);
    let ok = server.post_expect(
        &format!("{acc1}?expected_version=any"),
        &json!({"type": "MoneyDeposited", "data": {"amount": 5}}),
        201,
    );
    assert_eq!(ok["events"][0]["version"], 5);
    let ok = server.post_expect(
        &acc1,
        &json!({"expected_version": "stream_exists", "events": [{"type": "MoneyWithdrawn", "data": {"amount": 10}}]}),
        201,
    );
    assert_eq!(ok["events"][0]["version"], 6);
    let read = server.get_ok(&acc1);
    assert_eq!(balance(read["events"].as_array().expect("events")), 120);
}

pub fn idempotent_retries_answer_the_original_positions(server: Target) {
    let bank = server.topic("bank");
    let acc1 = format!("/v1/topics/{bank}/streams/acc-1");
    server.create_topic(&bank, 1);
    let request = json!({
        "expected_version": "no_stream",
        "events": [
            {"type": "AccountCreated", "id": "d-1", "data": {"owner": "ada"}},
            {"type": "MoneyDeposited", "id": "d-2", "data": {"amount": 100}}
        ]
    });
    let first = server.post_expect(&acc1, &request, 201);
    assert_eq!(first["duplicate"], false);
    assert_eq!(versions(&first["events"]), [0, 1]);
    let ids: Vec<&str> =
        first["events"].as_array().expect("events").iter().map(|e| e["id"].as_str().expect("id")).collect();
    assert_eq!(ids, ["d-1", "d-2"]);

    // The identical request again (a client retrying after a lost reply), on nodes through
    // another node than the first.
    let retry = server.post_expect(&acc1, &request, 200);
    assert_eq!(retry["duplicate"], true, "{retry}");
    assert_same_events(&server, &retry["events"], &first["events"]);

    // A single event with an id, retried.
    let single = json!({"type": "MoneyWithdrawn", "id": "w-1", "data": {"amount": 30}});
    let one = server.post_expect(&acc1, &single, 201);
    assert_eq!(one["events"][0]["version"], 2);
    let again = server.post_expect(&acc1, &single, 200);
    assert_eq!(again["duplicate"], true);
    assert_same_events(&server, &again["events"], &one["events"]);

    // The same id with other content is refused.
    let (status, body) = server.post(&acc1, &json!({"type": "MoneyWithdrawn", "id": "w-1", "data": {"amount": 3000}}));
    assert_eq!(status, 409, "{body}");
    assert_error(&body, "event_id_reused");
    let (status, body) =
        server.post(&acc1, &json!({"events": [{"type": "AccountCreated", "id": "d-1", "data": {"owner": "bob"}}]}));
    assert_eq!(status, 409, "{body}");
    assert_error(&body, "event_id_reused");

    let read = server.get_ok(&acc1);
    assert_eq!(read["current_version"], 2);
    assert_eq!(versions(&read["events"]), [0, 1, 2]);
    assert_eq!(balance(read["events"].as_array().expect("events")), 70);
    assert_eq!(all_events(&server, 3).len(), 3);
}

pub fn topics_create_list_describe_delete(server: Target) {
    let (orders, audit) = (server.topic("orders"), server.topic("audit"));
    let created = server.create_topic(&orders, 3);
    assert_eq!(created["name"], orders.as_str());
    assert_eq!(created["partitions"], 3);
    assert_eq!(created["internal"], false);
    assert!(created["created"].as_str().is_some_and(|c| c.ends_with('Z')), "{created}");
    assert_eq!(created["config"]["partitions"], 3);
    server.create_topic(&audit, 1);

    let (status, body) = server.post("/v1/topics", &json!({"name": orders}));
    assert_eq!(status, 409, "{body}");
    assert_error(&body, "topic_exists");

    // On nodes the list is the whole cluster's (what the node mirrors): this test's topics are
    // among them, sorted.
    let list = server.get_ok("/v1/topics");
    let names: Vec<&str> = list["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .filter(|n| server.owns_topic(n))
        .collect();
    assert_eq!(names, [audit.as_str(), orders.as_str()], "sorted, internal topics hidden");

    let empty = server.get_ok(&format!("/v1/topics/{orders}"));
    assert_eq!(empty["streams"], 0);
    assert_eq!(empty["records"], 0);
    assert_eq!(empty["partition_offsets"].as_array().expect("partitions").len(), 3);

    for i in 0..6 {
        server.append(&orders, &format!("order-{i}"), &json!({"type": "OrderPlaced", "data": {"n": i}}));
    }
    server.append(&orders, "order-0", &json!({"type": "OrderShipped"}));
    // On nodes a description is the node's mirror's, without a wait (docs/cluster.md).
    for partition in 0..3 {
        catch_up_partition(&server, &orders, partition);
    }
    let d = server.get_ok(&format!("/v1/topics/{orders}"));
    assert_eq!(d["name"], orders.as_str());
    assert_eq!(d["partitions"], 3);
    assert_eq!(d["streams"], 6);
    assert_eq!(d["records"], 7);
    assert!(d["size_bytes"].as_u64().expect("size_bytes") > 0, "{d}");
    let partitions = d["partition_offsets"].as_array().expect("partition_offsets");
    assert_eq!(field_u64(&d["partition_offsets"], "partition"), [0, 1, 2]);
    let total: u64 = partitions.iter().map(|p| p["high_watermark"].as_u64().expect("hw")).sum();
    if server.is_cluster() {
        // On nodes, offsets are Kafka's: seven records take at least seven.
        assert!(total >= 7, "{d}");
    } else {
        assert_eq!(total, 7);
    }
    for p in partitions {
        assert_eq!(p["log_start_offset"], 0);
        let hw = p["high_watermark"].as_u64().expect("hw");
        let size = p["size_bytes"].as_u64().expect("size_bytes");
        assert_eq!(hw > 0, size > 0, "a partition with records has bytes: {p}");
    }
    let sizes: u64 = partitions.iter().map(|p| p["size_bytes"].as_u64().expect("size")).sum();
    assert_eq!(sizes, d["size_bytes"].as_u64().expect("size_bytes"));

    if server.is_cluster() {
        // On nodes, topics are deleted on the cluster with Kafka's tools: 501 not_on_cluster,
        // and the topic stays, with its records.
        let (status, body) = server.delete(&format!("/v1/topics/{orders}"));
        assert_eq!(status, 501, "{body}");
        assert_error(&body, "not_on_cluster");
        assert_eq!(server.get_ok(&format!("/v1/topics/{orders}"))["records"], 7);
        return;
    }
    let (status, body) = server.delete(&format!("/v1/topics/{orders}"));
    assert_eq!(status, 204, "{body}");
    assert_eq!(body, Value::Null, "204 has no body");
    let (status, body) = server.get(&format!("/v1/topics/{orders}"));
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "unknown_topic");
    let (status, body) = server.delete(&format!("/v1/topics/{orders}"));
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "unknown_topic");
    let list = server.get_ok("/v1/topics");
    assert_eq!(list["topics"].as_array().expect("topics").len(), 1);
    assert!(server.get_ok("/v1/all")["events"].as_array().expect("events").is_empty(), "deleted records are gone");
    // The name can be used again.
    server.create_topic(&orders, 1);
    assert_eq!(server.get_ok(&format!("/v1/topics/{orders}"))["records"], 0);
}

pub fn partition_reads_from_an_offset_or_a_timestamp(server: Target) {
    let p = server.topic("p");
    let records_path = format!("/v1/topics/{p}/partitions/0/records");
    server.create_topic(&p, 1);
    for i in 0..5 {
        next_millisecond();
        server.append(&p, &format!("k{i}"), &json!({"type": "Tick", "data": {"i": i}}));
    }
    catch_up_partition(&server, &p, 0);
    let all = server.get_ok(&records_path);
    assert_eq!(all["topic"], p.as_str());
    assert_eq!(all["partition"], 0);
    assert_eq!(all["log_start_offset"], 0);
    let offsets = field_u64(&all["records"], "offset");
    assert_offsets(&server, &offsets, &[0, 1, 2, 3, 4]);
    let high_watermark = all["high_watermark"].as_u64().expect("high_watermark");
    if server.is_cluster() {
        assert!(high_watermark > offsets[4], "{all}");
    } else {
        assert_eq!(high_watermark, 5);
    }
    assert_eq!(all["next_offset"], Value::Null);
    let keys: Vec<&str> =
        all["records"].as_array().expect("records").iter().map(|r| r["key"].as_str().expect("key")).collect();
    assert_eq!(keys, ["k0", "k1", "k2", "k3", "k4"]);

    // Offsets as the first read named them (on the embedded store 0 to 4).
    let from = server.get_ok(&format!("{records_path}?offset={}", offsets[2]));
    assert_eq!(field_u64(&from["records"], "offset"), offsets[2..]);
    if server.is_cluster() {
        // On nodes, from a commit marker's offset: the next record on.
        let from = server.get_ok(&format!("{records_path}?offset={}", offsets[2] + 1));
        assert_eq!(field_u64(&from["records"], "offset"), offsets[3..]);
    }
    let page = server.get_ok(&format!("{records_path}?offset=0&limit=2"));
    assert_eq!(field_u64(&page["records"], "offset"), offsets[..2]);
    let next = page["next_offset"].as_u64().expect("next_offset");
    if server.is_cluster() {
        // On nodes, past the second record and at most the third (a marker may sit between).
        assert!(offsets[1] < next && next <= offsets[2], "{page}");
        let rest = server.get_ok(&format!("{records_path}?offset={next}"));
        assert_eq!(field_u64(&rest["records"], "offset"), offsets[2..]);
    } else {
        assert_eq!(next, 2);
    }
    let end = server.get_ok(&format!("{records_path}?offset={high_watermark}"));
    assert_eq!(end["records"], json!([]));

    let records = all["records"].as_array().expect("records");
    let ts3 = records[3]["timestamp"].as_str().expect("timestamp");
    let at = server.get_ok(&format!("{records_path}?timestamp={ts3}"));
    assert_eq!(field_u64(&at["records"], "offset"), offsets[3..]);
    // Milliseconds, just after record 2's time: the first record at or after is 3.
    let ms2 = rfc3339_ms(records[2]["timestamp"].as_str().expect("timestamp"));
    let after = server.get_ok(&format!("{records_path}?timestamp={}", ms2 + 1));
    assert_eq!(field_u64(&after["records"], "offset"), offsets[3..]);
    let ms4 = rfc3339_ms(records[4]["timestamp"].as_str().expect("timestamp"));
    let late = server.get_ok(&format!("{records_path}?timestamp={}", ms4 + 1));
    assert_eq!(late["records"], json!([]), "nothing at or after a time past the last record");
}

/// On nodes: a read of a partition from an offset waits until the node's mirror holds the
/// partition up to its last stable offset, and one without an offset or by timestamp does not
/// (`http/records.rs`), so that a read on one node may miss what another node acknowledged
/// just before. Every node reads from offset 0 first: the later reads are then read-your-writes
/// on every node, as on one server.
fn catch_up_partition(server: &Target, topic: &str, partition: u32) {
    if server.is_cluster() {
        for i in 0..server.len() {
            server.pinned(i).get_ok(&format!("/v1/topics/{topic}/partitions/{partition}/records?offset=0&limit=1"));
        }
    }
}

/// The store-wide feed. On nodes it is each node's mirror's commit order (a valid
/// interleaving of the partitions, docs/cluster.md), so this runs pinned to node 0: every
/// read of the feed goes there, appends still rotate over the nodes.
pub fn everything_in_commit_order_without_internal_topics(server: Target) {
    let (a, b) = (server.topic("a"), server.topic("b"));
    server.create_topic(&a, 1);
    server.create_topic(&b, 2);
    let order = [(&a, "x"), (&b, "y"), (&a, "x"), (&b, "z"), (&a, "w")];
    let mut appended = Vec::new();
    let mut replies = Vec::new();
    for (i, (topic, key)) in order.iter().enumerate() {
        let reply = server.append(topic, key, &json!({"type": "E", "data": {"i": i}}));
        appended.push(reply["events"][0]["sequence"].as_u64().expect("sequence"));
        replies.push(reply);
        // On nodes Kafka keeps consumer groups' commits in its own `__consumer_offsets`, which
        // no mirror follows: no internal record comes between (consumer groups are tested
        // on their own below).
        if i == 1 && !server.is_cluster() {
            // A group commit writes to the internal topic between two appends.
            server.post_expect(
                "/v1/groups/g/offsets",
                &json!({"offsets": [{"topic": "a", "partition": 0, "offset": 1}]}),
                200,
            );
        }
    }
    let node = server.pinned(0);
    // On nodes the feed follows node 0's mirror, without a wait: until it holds all five.
    all_events(&server, 5);
    let first = if server.is_cluster() {
        // The other tests' events on the shared cluster come before: from this test's first.
        all_events(&server, 5)[0]["sequence"].as_u64().expect("sequence")
    } else {
        0
    };
    // Page through two at a time.
    let mut seen = Vec::new();
    let mut from = first;
    for _ in 0..20 {
        let page = node.get_ok(&format!("/v1/all?from_sequence={from}&limit=2"));
        let events = page["events"].as_array().expect("events");
        assert!(events.len() <= 2, "{page}");
        seen.extend(events.iter().filter(|e| server.owns_topic(e["topic"].as_str().unwrap_or(""))).cloned());
        match page["next_sequence"].as_u64() {
            Some(next) => {
                assert!(next > from, "paging moves forward: {page}");
                from = next;
            }
            None => break,
        }
        if server.is_cluster() && seen.len() == 5 {
            break;
        }
    }
    let topics: Vec<&str> = seen.iter().map(|e| e["topic"].as_str().expect("topic")).collect();
    let sequences = field_u64(&Value::Array(seen.clone()), "sequence");
    if server.is_cluster() {
        // On nodes node 0's order interleaves the partitions, each in its own order, and
        // numbers them in increasing sequences; the ids are the appended ones.
        assert_eq!(seen.len(), 5, "{seen:?}");
        assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
        let per_partition = |events: Vec<&Value>| -> BTreeMap<(String, u64), Vec<String>> {
            let mut out: BTreeMap<(String, u64), Vec<String>> = BTreeMap::new();
            for e in events {
                let key = (e["topic"].as_str().expect("topic").to_string(), e["partition"].as_u64().expect("p"));
                out.entry(key).or_default().push(e["id"].as_str().expect("id").to_string());
            }
            out
        };
        let acknowledged: Vec<Value> = replies
            .iter()
            .map(|r| json!({"topic": r["topic"], "partition": r["partition"], "id": r["events"][0]["id"]}))
            .collect();
        assert_eq!(per_partition(seen.iter().collect()), per_partition(acknowledged.iter().collect()));
    } else {
        assert_eq!(topics, ["a", "b", "a", "b", "a"]);
        assert_eq!(sequences, appended);
        let data: Vec<u64> = seen.iter().map(|e| e["data"]["i"].as_u64().expect("i")).collect();
        assert_eq!(data, [0, 1, 2, 3, 4]);
        // The commit took a sequence of its own, which /v1/all does not show.
        assert!(appended[2] > appended[1] + 1, "the internal record sits between: {appended:?}");
    }

    let whole = all_events(&server, 5);
    assert_eq!(whole.len(), 5);
    assert!(whole.iter().all(|e| e["topic"] != "__consumer_offsets"));
    if server.is_cluster() {
        let feed = node.get_ok("/v1/all?limit=1000");
        assert!(
            feed["events"]
                .as_array()
                .expect("events")
                .iter()
                .all(|e| !e["topic"].as_str().unwrap_or("").starts_with("__")),
            "no internal topic in the feed: {feed}"
        );
    }

    let listed = node.get_ok("/v1/topics");
    let names: Vec<&str> = listed["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .map(|t| t["name"].as_str().expect("name"))
        .filter(|n| server.owns_topic(n))
        .collect();
    assert_eq!(names, [a.as_str(), b.as_str()]);
    let listed = node.get_ok("/v1/topics?internal=true");
    let internal: Vec<&Value> = listed["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter(|t| {
            ["__consumer_offsets", "_schemas", "__transaction_state", "_evident_sql"]
                .contains(&t["name"].as_str().unwrap_or(""))
        })
        .collect();
    if server.is_cluster() {
        // On nodes no mirror follows Kafka's own `__` topics, and no schema registry or SQL
        // catalog runs: none is listed, even with internal=true.
        assert_eq!(internal.len(), 0, "{listed}");
        return;
    }
    // The group coordinator's offsets, the schema registry's topic (the server runs one) and
    // the transaction coordinator's state and the SQL views' catalog.
    assert_eq!(internal.len(), 4, "{listed}");
    assert!(internal.iter().all(|t| t["internal"] == true), "{listed}");
    assert_eq!(listed["topics"].as_array().expect("topics").len(), 6);
}

pub fn subscribe_to_a_stream_catch_up_live_and_resume(server: Target) {
    let bank = server.topic("bank");
    server.create_topic(&bank, 1);
    for (event, _) in walkthrough_events().into_iter().take(3) {
        server.append(&bank, "acc-1", &event);
    }
    server.append(&bank, "acc-2", &json!({"type": "AccountCreated"}));

    let mut sse = server.sse(&format!("/v1/subscribe?topic={bank}&key=acc-1"), &[]);
    assert_eq!(sse.status, 200);
    assert!(sse.header("content-type").is_some_and(|c| c.starts_with("text/event-stream")), "{:?}", sse.headers);
    for version in 0..3u64 {
        let m = sse.next_event();
        assert_eq!(m.id.as_deref(), Some(version.to_string().as_str()), "{m:?}");
        let e = m.json();
        assert_eq!(e["version"], version);
        assert_eq!(e["key"], "acc-1");
        assert_eq!(e["topic"], bank.as_str());
    }
    // Live: appended from another thread after the catch-up (on nodes, through another node).
    let appender = std::thread::scope(|s| {
        s.spawn(|| server.append(&bank, "acc-1", &json!({"type": "MoneyDeposited", "data": {"amount": 50}})))
            .join()
            .expect("appender")
    });
    let live = sse.next_event();
    assert_eq!(live.id.as_deref(), Some("3"));
    let e = live.json();
    assert_eq!(e["type"], "MoneyDeposited");
    assert_eq!(e["id"], appender["events"][0]["id"]);
    assert_eq!(e["offset"], appender["events"][0]["offset"]);
    if !server.is_cluster() {
        assert_eq!(e["sequence"], appender["events"][0]["sequence"]);
    }
    drop(sse);

    // Reconnect after id 2: versions 3 and on only; Last-Event-ID wins over from_version.
    let mut resumed =
        server.sse(&format!("/v1/subscribe?topic={bank}&key=acc-1&from_version=0"), &[("Last-Event-ID", "2")]);
    assert_eq!(resumed.status, 200);
    assert_eq!(resumed.next_event().id.as_deref(), Some("3"));
    server.append(&bank, "acc-1", &json!({"type": "MoneyWithdrawn", "data": {"amount": 1}}));
    let m = resumed.next_event();
    assert_eq!(m.id.as_deref(), Some("4"));
    assert_eq!(m.json()["type"], "MoneyWithdrawn");

    let mut from = server.sse(&format!("/v1/subscribe?topic={bank}&key=acc-1&from_version=4"), &[]);
    assert_eq!(from.next_event().id.as_deref(), Some("4"));
}

pub fn subscribe_to_a_topic_a_partition_and_unknown_targets(server: Target) {
    let (bank, other) = (server.topic("bank"), server.topic("other"));
    let nope = server.topic("nope");
    server.create_topic(&bank, 1);
    server.create_topic(&other, 1);
    // Interleave topics so that sequences and offsets differ.
    server.append(&other, "o", &json!({"type": "Noise"}));
    server.append(&bank, "acc-1", &json!({"type": "AccountCreated"}));
    server.append(&other, "o", &json!({"type": "Noise"}));
    server.append(&bank, "acc-2", &json!({"type": "AccountCreated"}));
    server.append(&bank, "acc-1", &json!({"type": "MoneyDeposited", "data": {"amount": 10}}));

    // A topic's subscription follows the subscribed node's mirror: its ids are that node's
    // sequences (on the embedded store the store's: 1, 3 and 4 here).
    let node = server.next_node();
    let mut topic = Sse::open(node, &format!("/v1/subscribe?topic={bank}"), &[]);
    assert_eq!(topic.status, 200);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let m = topic.next_event();
        let e = m.json();
        assert_eq!(e["topic"], bank.as_str());
        assert_eq!(m.id.as_deref(), Some(e["sequence"].to_string().as_str()), "topic ids are sequences");
        ids.push(e["sequence"].as_u64().expect("sequence"));
    }
    if server.is_cluster() {
        assert!(ids.windows(2).all(|w| w[0] < w[1]), "{ids:?}");
    } else {
        assert_eq!(ids, [1, 3, 4]);
    }
    let reply = server.append(&bank, "acc-3", &json!({"type": "AccountCreated"}));
    let m = topic.next_event();
    if server.is_cluster() {
        // On nodes the reply's sequence is the answering node's: the same event by its id.
        assert_eq!(m.json()["id"], reply["events"][0]["id"]);
        assert!(m.id.as_deref().and_then(|id| id.parse::<u64>().ok()).is_some_and(|id| id > ids[2]), "{m:?}");
    } else {
        assert_eq!(m.id.as_deref(), Some(reply["events"][0]["sequence"].to_string().as_str()));
    }
    assert_eq!(m.json()["key"], "acc-3");

    if server.is_cluster() {
        // On nodes a partition's subscription is not served (it resumes by offset: a Kafka
        // consumer follows a partition of the cluster itself).
        for path in [
            format!("/v1/subscribe?topic={bank}&partition=0"),
            format!("/v1/subscribe?topic={bank}&partition=0&from_offset=2"),
        ] {
            let sse = server.sse(&path, &[]);
            assert_eq!(sse.status, 501, "{path}");
            assert_error(&sse.body_json(), "not_on_cluster");
        }
    } else {
        let mut partition = Sse::open(node, &format!("/v1/subscribe?topic={bank}&partition=0"), &[]);
        assert_eq!(partition.status, 200);
        for offset in 0..4u64 {
            let m = partition.next_event();
            assert_eq!(m.id.as_deref(), Some(offset.to_string().as_str()), "partition ids are offsets: {m:?}");
            assert_eq!(m.json()["offset"], offset);
            assert_eq!(m.json()["partition"], 0);
        }
        let mut partition_from = Sse::open(node, &format!("/v1/subscribe?topic={bank}&partition=0&from_offset=2"), &[]);
        assert_eq!(partition_from.next_event().id.as_deref(), Some("2"));
    }
    let resume_after = ids[1].to_string();
    let mut topic_resumed =
        Sse::open(node, &format!("/v1/subscribe?topic={bank}"), &[("Last-Event-ID", &resume_after)]);
    assert_eq!(topic_resumed.next_event().id, Some(ids[2].to_string()));

    let (partition_status, partition_code) =
        if server.is_cluster() { (501, "not_on_cluster") } else { (404, "unknown_partition") };
    for (path, status, code) in [
        (format!("/v1/subscribe?topic={nope}"), 404, "unknown_topic"),
        (format!("/v1/subscribe?topic={nope}&key=k"), 404, "unknown_topic"),
        (format!("/v1/subscribe?topic={bank}&partition=9"), partition_status, partition_code),
        ("/v1/subscribe?key=k".to_string(), 400, "invalid_argument"),
    ] {
        let sse = server.sse(&path, &[]);
        assert_eq!(sse.status, status, "{path}");
        assert!(
            sse.header("content-type").is_some_and(|c| c.starts_with("application/json")),
            "{path}: {:?}",
            sse.headers
        );
        assert_error(&sse.body_json(), code);
    }
}

/// The gauge counts the subscriptions of the node that holds them: both subscriptions and
/// every reading of it on one node.
pub fn disconnecting_a_subscriber_closes_its_subscription(server: Target) {
    let bank = server.topic("bank");
    server.create_topic(&bank, 1);
    server.append(&bank, "acc-1", &json!({"type": "AccountCreated"}));
    let node = server.next_node();
    assert_eq!(node.metric("evident_http_open_subscriptions"), Some(0.0));
    let mut sse = Sse::open(node, &format!("/v1/subscribe?topic={bank}&key=acc-1"), &[]);
    assert_eq!(sse.next_event().id.as_deref(), Some("0"));
    assert_eq!(node.metric("evident_http_open_subscriptions"), Some(1.0));
    let mut second = Sse::open(node, "/v1/subscribe", &[]);
    assert_eq!(second.next_event().id.as_deref(), Some("0"));
    assert_eq!(node.metric("evident_http_open_subscriptions"), Some(2.0));
    drop(sse);
    eventually("the open-subscriptions gauge to drop to 1", || {
        node.metric("evident_http_open_subscriptions") == Some(1.0)
    });
    drop(second);
    eventually("the open-subscriptions gauge to drop to 0", || {
        node.metric("evident_http_open_subscriptions") == Some(0.0)
    });
}

/// Appends events with fresh keys to `topic` until each of its `partitions` holds at least
/// `min` records; returns the high watermarks.
fn fill_partitions(server: &Target, topic: &str, partitions: usize, min: u64) -> Vec<u64> {
    let mut counts = vec![0u64; partitions];
    for i in 0..500 {
        let hws = high_watermarks(server, topic);
        assert_eq!(hws.len(), partitions);
        // On nodes offsets are Kafka's (a marker after each record): count the records.
        if server.is_cluster() && counts.iter().all(|&c| c >= min) {
            return hws;
        }
        if !server.is_cluster() && hws.iter().all(|&hw| hw >= min) {
            return hws;
        }
        let reply = server.append(topic, &format!("key-{i}"), &json!({"type": "E", "data": {"i": i}}));
        counts[reply["partition"].as_u64().expect("partition") as usize] += 1;
    }
    panic!("500 keys did not spread over {partitions} partitions");
}

/// Each partition's high watermark: the topic's description on the embedded store; on nodes
/// in Kafka's offsets, as the partition's records page names it (one past the last record;
/// the topic's description counts the node's mirror's records instead), which the groups'
/// log end offsets and lag must agree with.
fn high_watermarks(server: &Target, topic: &str) -> Vec<u64> {
    let described = field_u64(&server.get_ok(&format!("/v1/topics/{topic}"))["partition_offsets"], "high_watermark");
    if !server.is_cluster() {
        return described;
    }
    (0..described.len())
        .map(|p| {
            // From an offset: the read waits for the node's mirror (see catch_up_partition).
            server.get_ok(&format!("/v1/topics/{topic}/partitions/{p}/records?offset=0&limit=1"))["high_watermark"]
                .as_u64()
                .expect("high_watermark")
        })
        .collect()
}

/// A group's committed offsets as (topic, partition) → offset.
fn committed(server: &Target, group: &str) -> BTreeMap<(String, u64), u64> {
    let body = server.get_ok(&format!("/v1/groups/{group}/offsets"));
    assert_eq!(body["group"], group);
    body["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|o| {
            let topic = o["topic"].as_str().expect("topic").to_string();
            ((topic, o["partition"].as_u64().expect("partition")), o["offset"].as_u64().expect("offset"))
        })
        .collect()
}

/// The committed offsets of `topic`'s partitions, in partition order.
fn committed_of(server: &Target, group: &str, topic: &str) -> Vec<u64> {
    committed(server, group).into_iter().filter(|((t, _), _)| t == topic).map(|(_, o)| o).collect()
}

/// Posts a reset (must answer 200) and returns the rows' new offsets by (topic, partition).
fn reset(server: &Target, group: &str, body: Value) -> Vec<(String, u64, u64)> {
    let reply = server.post_expect(&format!("/v1/groups/{group}/reset-offsets"), &body, 200);
    assert_eq!(reply["group"], group);
    assert_eq!(reply["executed"], body.get("execute").cloned().unwrap_or(json!(false)), "{reply}");
    reply["offsets"]
        .as_array()
        .expect("offsets")
        .iter()
        .map(|r| {
            assert!(r["log_start_offset"].is_u64() && r["log_end_offset"].is_u64(), "{r}");
            (
                r["topic"].as_str().expect("topic").to_string(),
                r["partition"].as_u64().expect("partition"),
                r["new_offset"].as_u64().expect("new_offset"),
            )
        })
        .collect()
}

fn rows(topic: &str, new_offsets: &[u64]) -> Vec<(String, u64, u64)> {
    new_offsets.iter().enumerate().map(|(p, &o)| (topic.to_string(), p as u64, o)).collect()
}

/// The groups this target named (on nodes the cluster's list holds every group on it,
/// the nodes' own ownership groups among them).
fn our_groups(server: &Target) -> Vec<Value> {
    let list = server.get_ok("/v1/groups");
    list["groups"]
        .as_array()
        .expect("groups")
        .iter()
        .filter(|g| server.owns_group(g["group"].as_str().unwrap_or("")))
        .cloned()
        .collect()
}

pub fn consumer_groups_commit_fetch_list_describe_delete(server: Target) {
    let t = server.topic("t");
    let g = server.group("g");
    server.create_topic(&t, 3);
    let hw = fill_partitions(&server, &t, 3, 2);
    assert_eq!(our_groups(&server), Vec::<Value>::new());
    if !server.is_cluster() {
        assert_eq!(server.get_ok("/v1/groups"), json!({"groups": []}));
    }

    let reply = server.post_expect(
        &format!("/v1/groups/{g}/offsets"),
        &json!({"offsets": [
            {"topic": t, "partition": 0, "offset": 1, "metadata": "consumer-a"},
            {"topic": t, "partition": 2, "offset": 2}
        ]}),
        200,
    );
    assert_eq!(reply["group"], g.as_str());
    assert_eq!(reply["offsets"].as_array().expect("offsets").len(), 2);

    let fetched = server.get_ok(&format!("/v1/groups/{g}/offsets"));
    let offsets = fetched["offsets"].as_array().expect("offsets");
    assert_eq!(offsets.len(), 2);
    assert_eq!((offsets[0]["topic"].as_str(), offsets[0]["partition"].as_u64()), (Some(t.as_str()), Some(0)));
    assert_eq!(offsets[0]["offset"], 1);
    assert_eq!(offsets[0]["metadata"], "consumer-a");
    assert_eq!((offsets[1]["partition"].as_u64(), offsets[1]["offset"].as_u64()), (Some(2), Some(2)));
    assert_eq!(offsets[1]["metadata"], Value::Null);
    assert_eq!(
        server.get_ok(&format!("/v1/groups/{g}/offsets?topic={t}"))["offsets"].as_array().expect("offsets").len(),
        2
    );
    let other = server.topic("other");
    assert_eq!(server.get_ok(&format!("/v1/groups/{g}/offsets?topic={other}"))["offsets"], json!([]));

    let groups = our_groups(&server);
    assert_eq!(groups.len(), 1, "{groups:?}");
    assert_eq!(groups[0]["group"], g.as_str());
    assert_eq!(groups[0]["state"], "Empty");
    assert_eq!(groups[0]["members"], 0);

    let d = server.get_ok(&format!("/v1/groups/{g}"));
    assert_eq!(d["group"], g.as_str());
    assert_eq!(d["members"], json!([]));
    let rows = d["offsets"].as_array().expect("offsets");
    assert_eq!(rows.len(), 2);
    for (row, (partition, offset)) in rows.iter().zip([(0u64, 1u64), (2, 2)]) {
        assert_eq!(row["topic"], t.as_str());
        assert_eq!(row["partition"], partition);
        assert_eq!(row["committed_offset"], offset, "{row}");
        assert_eq!(row["log_end_offset"], hw[partition as usize]);
        assert_eq!(row["lag"], hw[partition as usize] - offset, "lag = high watermark - committed: {row}");
    }
    assert_eq!(d["total_lag"], hw[0] - 1 + hw[2] - 2);
    let series = format!("evident_group_lag{{group=\"{g}\"}}");
    if server.is_cluster() {
        // A node does not ask the cluster for every group's lag at each scrape: Kafka's own
        // lag exporters do (docs/cluster.md).
        assert_eq!(server.next_node().metric(&series), None, "{series}");
    } else {
        let lag_metric = server.next_node().metric(&series).unwrap_or_else(|| panic!("{series}"));
        assert_eq!(lag_metric, (hw[0] - 1 + hw[2] - 2) as f64);
    }

    // A later commit replaces the offset.
    server.post_expect(
        &format!("/v1/groups/{g}/offsets"),
        &json!({"offsets": [{"topic": t, "partition": 0, "offset": 2}]}),
        200,
    );
    assert_eq!(committed_of(&server, &g, &t), [2, 2]);

    let (status, body) = server.delete(&format!("/v1/groups/{g}"));
    assert_eq!(status, 204, "{body}");
    let (status, body) = server.get(&format!("/v1/groups/{g}"));
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "unknown_group");
    assert_eq!(our_groups(&server), Vec::<Value>::new());
    if !server.is_cluster() {
        assert_eq!(server.get_ok("/v1/groups"), json!({"groups": []}));
    }
    assert_eq!(server.get_ok(&format!("/v1/groups/{g}/offsets"))["offsets"], json!([]));
    let (status, body) = server.delete(&format!("/v1/groups/{g}"));
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "unknown_group");
}

pub fn reset_offsets_every_strategy_and_scope(server: Target) {
    let (t, u) = (server.topic("t"), server.topic("u"));
    server.create_topic(&t, 3);
    let hw = fill_partitions(&server, &t, 3, 3);
    server.create_topic(&u, 1);
    for i in 0..4 {
        next_millisecond();
        server.append(&u, "u-key", &json!({"type": "E", "data": {"i": i}}));
    }
    catch_up_partition(&server, &u, 0);
    // u's records' offsets (0 to 3 on the embedded store) and its end.
    let records = server.get_ok(&format!("/v1/topics/{u}/partitions/0/records"))["records"].clone();
    let u_offsets = field_u64(&records, "offset");
    assert_offsets(&server, &u_offsets, &[0, 1, 2, 3]);
    let u_end = high_watermarks(&server, &u)[0];
    let g = server.group("r");
    let g = g.as_str();
    server.post_expect(
        &format!("/v1/groups/{g}/offsets"),
        &json!({"offsets": [
            {"topic": t, "partition": 0, "offset": 1},
            {"topic": t, "partition": 1, "offset": 1},
            {"topic": t, "partition": 2, "offset": 1},
            {"topic": u, "partition": 0, "offset": 1}
        ]}),
        200,
    );

    // to_earliest: a dry run changes nothing; execute commits.
    let plan =
        server.post_expect(&format!("/v1/groups/{g}/reset-offsets"), &json!({"topics": [t], "to_earliest": true}), 200);
    assert_eq!(plan["executed"], false);
    let first = &plan["offsets"][0];
    assert_eq!(
        (&first["current_offset"], &first["new_offset"], &first["log_start_offset"], &first["log_end_offset"]),
        (&json!(1), &json!(0), &json!(0), &json!(hw[0])),
        "{plan}"
    );
    assert_eq!(committed_of(&server, g, &t), [1, 1, 1], "a plan changes nothing");
    let executed = reset(&server, g, json!({"topics": [t], "to_earliest": true, "execute": true}));
    assert_eq!(executed, rows(&t, &[0, 0, 0]));
    assert_eq!(committed_of(&server, g, &t), [0, 0, 0]);

    // to_latest.
    assert_eq!(reset(&server, g, json!({"topics": [t], "to_latest": true})), rows(&t, &hw));
    assert_eq!(committed_of(&server, g, &t), [0, 0, 0]);
    reset(&server, g, json!({"topics": [t], "to_latest": true, "execute": true}));
    assert_eq!(committed_of(&server, g, &t), hw);

    // to_current keeps what is committed.
    assert_eq!(reset(&server, g, json!({"topics": [t], "to_current": true, "execute": true})), rows(&t, &hw));
    assert_eq!(committed_of(&server, g, &t), hw);

    // to_offset, clamped to each partition's offsets.
    reset(&server, g, json!({"topics": [t], "to_offset": 2, "execute": true}));
    assert_eq!(committed_of(&server, g, &t), [2, 2, 2]);
    assert_eq!(reset(&server, g, json!({"topics": [t], "to_offset": 1_000_000, "execute": true})), rows(&t, &hw));
    assert_eq!(committed_of(&server, g, &t), hw);
    assert_eq!(reset(&server, g, json!({"topics": [t], "to_offset": -5})), rows(&t, &[0, 0, 0]));

    // shift_by, back and forth, clamped.
    let back: Vec<u64> = hw.iter().map(|h| h - 1).collect();
    assert_eq!(reset(&server, g, json!({"topics": [t], "shift_by": -1, "execute": true})), rows(&t, &back));
    assert_eq!(committed_of(&server, g, &t), back);
    reset(&server, g, json!({"topics": [t], "shift_by": -1000, "execute": true}));
    assert_eq!(committed_of(&server, g, &t), [0, 0, 0]);
    reset(&server, g, json!({"topics": [t], "shift_by": 2, "execute": true}));
    assert_eq!(committed_of(&server, g, &t), [2, 2, 2]);
    reset(&server, g, json!({"topics": [t], "shift_by": 1000, "execute": true}));
    assert_eq!(committed_of(&server, g, &t), hw);

    // A partition scope touches only those partitions.
    let scoped = reset(&server, g, json!({"topics": [format!("{t}:0,2")], "to_earliest": true, "execute": true}));
    assert_eq!(scoped, [(t.clone(), 0, 0), (t.clone(), 2, 0)]);
    assert_eq!(committed_of(&server, g, &t), [0, hw[1], 0]);

    // to_datetime on u, whose records have distinct millisecond timestamps.
    let times: Vec<i64> =
        records.as_array().expect("records").iter().map(|r| rfc3339_ms(r["timestamp"].as_str().expect("ts"))).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    // The offset a reset to a time between records 1 and 2 gives: record 2's on the embedded
    // store; on nodes Kafka's own ListOffsets answers, and record 1's commit marker, written
    // after it, carries a time too: the marker's offset may come first, which a consumer
    // reads from exactly as from record 2 (the marker is skipped).
    let to_record_2 = |plan: Vec<(String, u64, u64)>| {
        assert_eq!(plan.len(), 1, "{plan:?}");
        let (topic, partition, offset) = plan[0].clone();
        assert_eq!((topic.as_str(), partition), (u.as_str(), 0));
        if server.is_cluster() {
            assert!(
                u_offsets[1] < offset && offset <= u_offsets[2],
                "{offset} not after {u_offsets:?}[1], at most [2]"
            );
        } else {
            assert_eq!(offset, u_offsets[2]);
        }
        offset
    };
    let between = times[1] + 1; // after record 1, at or before record 2
    to_record_2(reset(&server, g, json!({"topics": [u], "to_datetime": between})));
    let ts2 = records[2]["timestamp"].as_str().expect("timestamp");
    to_record_2(reset(&server, g, json!({"topics": [u], "to_datetime": ts2})));
    // Kafka's format: no zone, taken as UTC.
    let civil = ts2.trim_end_matches('Z');
    let executed = to_record_2(reset(&server, g, json!({"topics": [u], "to_datetime": civil, "execute": true})));
    assert_eq!(committed_of(&server, g, &u), [executed]);
    // After the last record: the end (on nodes, the last commit marker's offset may come first,
    // as above).
    let after_last = reset(&server, g, json!({"topics": [u], "to_datetime": times[3] + 1}));
    if server.is_cluster() {
        let offset = after_last[0].2;
        assert!(u_offsets[3] < offset && offset <= u_end, "{after_last:?}: after {u_offsets:?}, at most {u_end}");
    } else {
        assert_eq!(after_last, rows(&u, &[u_end]));
    }
    assert_eq!(reset(&server, g, json!({"topics": [u], "to_datetime": "2000-01-01T00:00:00"})), rows(&u, &[0]));

    // by_duration: every record is from the last hour; none is from the future.
    assert_eq!(reset(&server, g, json!({"topics": [u], "by_duration": "PT1H", "execute": true})), rows(&u, &[0]));
    assert_eq!(committed_of(&server, g, &u), [0]);
    next_millisecond();
    assert_eq!(reset(&server, g, json!({"topics": [u], "by_duration": "PT0S"})), rows(&u, &[u_end]));
    assert_eq!(reset(&server, g, json!({"topics": [t], "by_duration": "P1DT2H"})), rows(&t, &[0, 0, 0]));

    // all_topics: every partition the group has committed.
    let before = committed(&server, g);
    let mut expect = rows(&t, &hw);
    expect.push((u.clone(), 0, u_end));
    assert_eq!(reset(&server, g, json!({"all_topics": true, "to_latest": true})), expect);
    assert_eq!(committed(&server, g), before, "a plan changes nothing");
    assert_eq!(reset(&server, g, json!({"all_topics": true, "to_latest": true, "execute": true})), expect);
    let after: Vec<u64> = committed(&server, g).into_values().collect();
    assert_eq!(after, [hw[0], hw[1], hw[2], u_end]);

    // The executed reset is durable (on nodes: a node restarted on its mirror answers it).
    let server = server.restart();
    let after: Vec<u64> = committed(&server, g).into_values().collect();
    assert_eq!(after, [hw[0], hw[1], hw[2], u_end]);
}

/// On nodes a node is stopped and started again on its data directory (its mirror): the
/// data lives in Kafka and is served again, through it and the others.
pub fn data_and_group_offsets_survive_a_restart(mut server: Target) {
    bank(&server);
    let bank = server.topic("bank");
    let billing = server.group("billing");
    let acc1 = format!("/v1/topics/{bank}/streams/acc-1");
    server.post_expect(
        &format!("/v1/groups/{billing}/offsets"),
        &json!({"offsets": [{"topic": bank, "partition": 0, "offset": 3, "metadata": "m"}]}),
        200,
    );
    let before = server.get_ok(&format!("/v1/groups/{billing}/offsets"));
    let stream_before = server.pinned(0).get_ok(&acc1);
    let (code, stdout, stderr) = server.stop_and_start_again();
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("evident: stopped"), "{stdout}");

    // Every node (the restarted one first) serves what was there before.
    for i in 0..server.len() {
        let node = server.pinned(i);
        let stream_after = node.get_ok(&acc1);
        if i == 0 {
            // The same node on the same data directory: sequences included.
            assert_eq!(stream_after, stream_before);
        } else {
            assert_same_events(&server, &stream_after["events"], &stream_before["events"]);
            assert_eq!(stream_after["current_version"], stream_before["current_version"]);
        }
        assert_eq!(balance(stream_after["events"].as_array().expect("events")), 120);
    }
    let offsets_after = server.pinned(0).get_ok(&format!("/v1/groups/{billing}/offsets"));
    if server.is_cluster() {
        // On nodes a commit's time may not be known (Kafka's coordinator keeps it, or not).
        let strip = |v: &Value| -> Value {
            let mut v = v.clone();
            for o in v["offsets"].as_array_mut().into_iter().flatten() {
                o.as_object_mut().map(|m| m.remove("commit_time_ms"));
            }
            v
        };
        assert_eq!(strip(&offsets_after), strip(&before));
    } else {
        assert_eq!(offsets_after, before);
    }
    let lag = if server.is_cluster() {
        // On nodes the log end is in Kafka's offsets (one past the fourth record's).
        high_watermarks(&server, &bank)[0] - 3
    } else {
        1
    };
    assert_eq!(server.pinned(0).get_ok(&format!("/v1/groups/{billing}"))["total_lag"], lag);
    // Appends continue where they left off.
    let next = server.pinned(0).post_expect(
        &acc1,
        &json!({"expected_version": 3, "events": [{"type": "MoneyDeposited", "data": {"amount": 1}}]}),
        201,
    );
    assert_eq!(next["events"][0]["version"], 4);
    if !server.is_cluster() {
        assert!(next["events"][0]["sequence"].as_u64() > stream_before["events"][3]["sequence"].as_u64());
    } else {
        assert!(next["events"][0]["offset"].as_u64() > stream_before["events"][3]["offset"].as_u64());
        let read = server.get_ok(&acc1);
        assert_eq!(versions(&read["events"]), [0, 1, 2, 3, 4]);
    }
}

pub fn health_metrics_and_openapi(server: Target) {
    let health = server.get_ok("/health");
    assert_eq!(health["status"], "ok", "{health}");

    bank(&server);
    let (bank, g) = (server.topic("bank"), server.group("g"));
    server.post_expect(
        &format!("/v1/groups/{g}/offsets"),
        &json!({"offsets": [{"topic": bank, "partition": 0, "offset": 1}]}),
        200,
    );
    let (status, content_type, text) = server.request_raw("GET", "/metrics", None, &[]);
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text") || content_type.starts_with("text/plain"),
        "{content_type}"
    );
    let lag_series = format!("evident_group_lag{{group=\"{g}\"}}");
    for name in
        ["evident_log_sync_latency_seconds_bucket", "evident_http_open_connections", "evident_log_syncs_per_append"]
    {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
    if server.is_cluster() {
        // No group lag on a node (docs/cluster.md): it is in the group's description.
        assert_eq!(common::metric_value(&text, &lag_series), None, "{lag_series}");
        let lag = high_watermarks(&server, &bank)[0] - 1;
        assert_eq!(server.get_ok(&format!("/v1/groups/{g}"))["total_lag"], lag);
    } else {
        assert_eq!(common::metric_value(&text, &lag_series), Some(3.0), "lag = 4 - 1");
    }
    let open = common::metric_value(&text, "evident_http_open_connections").expect("open connections");
    assert!(open >= 1.0, "the scrape's own connection is open: {open}");
    let syncs = common::metric_value(&text, "evident_log_syncs_per_append").expect("syncs per append");
    assert!(syncs > 0.0, "appends were synced: {syncs}");
    let count = common::metric_value(&text, "evident_log_sync_latency_seconds_count").expect("sync count");
    assert!(count >= 5.0, "4 appends and a commit were synced: {count}");

    let (status, content_type, text) = server.request_raw("GET", "/v1/openapi.json", None, &[]);
    assert_eq!(status, 200);
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let spec: Value = serde_json::from_str(&text).expect("openapi.json is JSON");
    assert!(spec["openapi"].as_str().is_some_and(|v| v.starts_with("3.")), "{}", spec["openapi"]);
    let paths = spec["paths"].as_object().expect("paths");
    for route in [
        "/v1/topics",
        "/v1/topics/{topic}",
        "/v1/topics/{topic}/streams/{key}",
        "/v1/topics/{topic}/partitions/{partition}/records",
        "/v1/all",
        "/v1/subscribe",
        "/v1/groups",
        "/v1/groups/{group}",
        "/v1/groups/{group}/offsets",
        "/v1/groups/{group}/reset-offsets",
        "/health",
        "/metrics",
        "/v1/openapi.json",
    ] {
        assert!(paths.contains_key(route), "openapi.json lacks {route}");
    }
}

/// A subscriber that stops reading must not slow appends: the server holds at most one page
/// for it and the kernel's socket buffers fill, while appends go on to completion. Then the
/// stalled subscriber, read again, still gets every event in order. On nodes the appends
/// rotate over the nodes, the subscriber stays on one.
pub fn a_stalled_subscriber_does_not_stall_appends(server: Target) {
    let bulk = server.topic("bulk");
    server.create_topic(&bulk, 1);
    let node = server.next_node();
    let mut stalled = Sse::open(node, &format!("/v1/subscribe?topic={bulk}&key=k"), &[]);
    // About 8 MiB of events: far beyond what socket buffers hold for a reader that never reads.
    let payload = "x".repeat(4096);
    let batch: Vec<Value> = (0..64).map(|_| json!({"type": "Filled", "data": {"pad": payload}})).collect();
    for round in 0..32u64 {
        let body = json!({"expected_version": if round == 0 { json!("no_stream") } else { json!(round * 64 - 1) }, "events": batch});
        server.post_expect(&format!("/v1/topics/{bulk}/streams/k"), &body, 201);
    }
    assert_eq!(node.metric("evident_http_open_subscriptions"), Some(1.0));
    for version in 0..(32 * 64) {
        let event = stalled.next_event();
        assert_eq!(event.id.as_deref(), Some(version.to_string().as_str()), "events arrive in order, none lost");
    }
}

/// A request target longer than the server takes is `414` with the JSON error body, and the
/// server goes on serving; one just under the limit is routed as usual.
pub fn a_too_long_uri_is_414_with_the_json_error(server: Target) {
    let long = format!("/v1/topics/{}", "t".repeat(evident_api::limits::URI_LEN_MAX));
    let (status, content_type, text) = server.request_raw("GET", &long, None, &[]);
    assert_eq!(status, 414, "{text}");
    assert!(content_type.starts_with("application/json"), "{content_type}");
    let body: Value = serde_json::from_str(&text).expect("JSON");
    assert_eq!(body["error"]["code"], "uri_too_long", "{body}");
    let query = format!("/v1/all?from_sequence={}", "0".repeat(evident_api::limits::URI_LEN_MAX));
    assert_eq!(server.request_raw("GET", &query, None, &[]).0, 414);
    let under = format!("/v1/topics/{}", "t".repeat(200));
    let (status, body) = server.get(&under);
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("unknown_topic")), "{body}");
    assert_eq!(server.get_ok("/health")["status"], "ok");
}

/// Settings that are stored but not enforced yet are named in the creation reply's
/// `warnings`; a topic without them gets an empty list. On nodes a topic is created on Kafka
/// with its partitions and cleanup policy only: retention is refused (`400 invalid_config`,
/// set on the cluster with kafka-configs), and compaction is Kafka's own, enforced.
pub fn topic_creation_warns_about_unenforced_settings(server: Target) {
    let (kept, plain) = (server.topic("kept"), server.topic("plain"));
    if server.is_cluster() {
        for config in [json!({"retention_ms": 60000}), json!({"retention_bytes": 1000})] {
            let (status, body) = server.post("/v1/topics", &json!({"name": kept, "config": config}));
            assert_eq!(status, 400, "{config}: {body}");
            assert_error(&body, "invalid_config");
        }
        let reply =
            server.post_expect("/v1/topics", &json!({"name": kept, "config": {"cleanup_policy": "compact"}}), 201);
        assert_eq!(reply["config"]["cleanup_policy"], "compact", "{reply}");
        let plain = server.post_expect("/v1/topics", &json!({"name": plain}), 201);
        assert_eq!(plain["warnings"], json!([]), "{plain}");
        let created: evident_api::topics::CreatedTopic = serde_json::from_value(reply).expect("CreatedTopic");
        assert_eq!(created.topic.name, kept);
        return;
    }
    let reply = server.post_expect(
        "/v1/topics",
        &json!({"name": kept, "config": {"retention_ms": 60000, "retention_bytes": 1000, "cleanup_policy": "compact"}}),
        201,
    );
    let warnings: Vec<&str> =
        reply["warnings"].as_array().expect("warnings").iter().map(|w| w.as_str().expect("text")).collect();
    assert_eq!(warnings.len(), 3, "{reply}");
    assert!(warnings[0].starts_with("retention_ms is stored but not enforced yet"), "{reply}");
    assert!(warnings[1].starts_with("retention_bytes is stored but not enforced yet"), "{reply}");
    assert!(warnings[2].starts_with("cleanup_policy compact is stored but not enforced yet"), "{reply}");
    assert_eq!(reply["config"]["retention_ms"], 60000, "the setting is stored: {reply}");
    let plain = server.post_expect("/v1/topics", &json!({"name": plain}), 201);
    assert_eq!(plain["warnings"], json!([]), "{plain}");
    // The reply decodes into the shared wire type.
    let created: evident_api::topics::CreatedTopic = serde_json::from_value(reply).expect("CreatedTopic");
    assert_eq!(created.topic.name, kept);
}
