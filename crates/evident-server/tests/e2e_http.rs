//! End-to-end tests of the HTTP API against the real `evident serve` binary: the bank-account
//! walkthrough, optimistic concurrency, idempotent retries, topics, partition and store-wide
//! reads, live subscriptions (Server-Sent Events), consumer groups and every offset-reset
//! strategy, durability across a restart, and the operations routes.

mod common;

use std::collections::BTreeMap;

use common::{assert_error, balance, eventually, next_millisecond, rfc3339_ms, Server, Sse};
use serde_json::{json, Value};

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
fn bank(server: &Server) -> Vec<Value> {
    server.create_topic("bank", 1);
    let mut replies = Vec::new();
    for (event, expected) in walkthrough_events() {
        next_millisecond();
        let body = json!({ "expected_version": expected, "events": [event] });
        replies.push(server.post_expect("/v1/topics/bank/streams/acc-1", &body, 201));
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

#[test]
fn bank_account_walkthrough() {
    let server = Server::start();
    let replies = bank(&server);
    let mut last_sequence = None;
    for (i, reply) in replies.iter().enumerate() {
        assert_eq!(reply["topic"], "bank");
        assert_eq!(reply["key"], "acc-1");
        assert_eq!(reply["partition"], 0);
        assert_eq!(reply["duplicate"], false);
        let events = reply["events"].as_array().expect("events");
        assert_eq!(events.len(), 1);
        assert_eq!(events[0]["version"], i as u64, "{reply}");
        assert_eq!(events[0]["offset"], i as u64, "{reply}");
        assert!(events[0]["id"].as_str().is_some_and(|id| !id.is_empty()), "a generated id: {reply}");
        let sequence = events[0]["sequence"].as_u64().expect("sequence");
        assert!(last_sequence.is_none_or(|last| sequence > last), "sequences increase: {reply}");
        last_sequence = Some(sequence);
    }

    // Read it back and rebuild the state by replaying.
    let read = server.get_ok("/v1/topics/bank/streams/acc-1");
    assert_eq!(read["topic"], "bank");
    assert_eq!(read["key"], "acc-1");
    assert_eq!(read["partition"], 0);
    assert_eq!(read["current_version"], 3);
    assert_eq!(read["next_version"], Value::Null);
    let events = read["events"].as_array().expect("events").clone();
    assert_eq!(versions(&read["events"]), [0, 1, 2, 3]);
    assert_eq!(field_u64(&read["events"], "offset"), [0, 1, 2, 3]);
    let sequences = field_u64(&read["events"], "sequence");
    assert!(sequences.windows(2).all(|w| w[0] < w[1]), "{sequences:?}");
    let types: Vec<&str> = events.iter().map(|e| e["type"].as_str().expect("type")).collect();
    assert_eq!(types, ["AccountCreated", "MoneyDeposited", "MoneyWithdrawn", "MoneyDeposited"]);
    assert_eq!(balance(&events), 120);
    for (e, reply) in events.iter().zip(&replies) {
        assert_eq!(e["specversion"], "1.0");
        assert_eq!(e["source"], "/evident/http");
        assert_eq!(e["datacontenttype"], "application/json");
        assert_eq!(e["topic"], "bank");
        assert_eq!(e["key"], "acc-1");
        assert_eq!(e["id"], reply["events"][0]["id"], "read ids are the appended ids");
        assert_eq!(e["sequence"], reply["events"][0]["sequence"]);
    }
    assert_eq!(events[0]["data"], json!({"owner": "ada"}));

    // Backward, two at a time.
    let back = server.get_ok("/v1/topics/bank/streams/acc-1?direction=backward&limit=2");
    assert_eq!(versions(&back["events"]), [3, 2]);
    assert_eq!(back["next_version"], 1);
    let back2 = server.get_ok("/v1/topics/bank/streams/acc-1?direction=backward&limit=2&from_version=1");
    assert_eq!(versions(&back2["events"]), [1, 0]);
    assert_eq!(back2["next_version"], Value::Null);

    // Forward paging.
    let page = server.get_ok("/v1/topics/bank/streams/acc-1?limit=2");
    assert_eq!(versions(&page["events"]), [0, 1]);
    assert_eq!(page["next_version"], 2);
    let page = server.get_ok("/v1/topics/bank/streams/acc-1?limit=2&from_version=2");
    assert_eq!(versions(&page["events"]), [2, 3]);
    assert_eq!(page["next_version"], Value::Null);

    // As of a version: the state after the deposit of 100.
    let as_of = server.get_ok("/v1/topics/bank/streams/acc-1?as_of_version=1");
    assert_eq!(versions(&as_of["events"]), [0, 1]);
    assert_eq!(balance(as_of["events"].as_array().expect("events")), 100);

    // As of a time: the timestamp of version 2 (inclusive), and just before it.
    let t1 = rfc3339_ms(events[1]["timestamp"].as_str().expect("timestamp"));
    let t2 = rfc3339_ms(events[2]["timestamp"].as_str().expect("timestamp"));
    assert!(t1 < t2, "appends in later milliseconds have later timestamps: {t1} {t2}");
    let ts2 = events[2]["timestamp"].as_str().expect("timestamp");
    let at = server.get_ok(&format!("/v1/topics/bank/streams/acc-1?as_of_time={ts2}"));
    assert_eq!(versions(&at["events"]), [0, 1, 2]);
    assert_eq!(balance(at["events"].as_array().expect("events")), 70);
    let before = server.get_ok(&format!("/v1/topics/bank/streams/acc-1?as_of_time={}", t2 - 1));
    assert_eq!(versions(&before["events"]), [0, 1]);
    let first = rfc3339_ms(events[0]["timestamp"].as_str().expect("timestamp"));
    let (status, body) = server.get(&format!("/v1/topics/bank/streams/acc-1?as_of_time={}", first - 1));
    // Before the stream's first event the stream held nothing.
    assert!(
        status == 404 || (status == 200 && body["events"] == json!([])),
        "as_of_time before the first event: {status} {body}"
    );
}

#[test]
fn expected_version_conflicts_append_nothing() {
    let server = Server::start();
    bank(&server);
    let (status, body) = server.post(
        "/v1/topics/bank/streams/acc-1",
        &json!({"expected_version": 0, "events": [{"type": "MoneyDeposited", "data": {"amount": 1}}]}),
    );
    assert_eq!(status, 409, "{body}");
    let error = assert_error(&body, "wrong_expected_version");
    assert_eq!(error["current_version"], 3, "{body}");
    // The query form of the expected version.
    let (status, body) = server.post(
        "/v1/topics/bank/streams/acc-1?expected_version=2",
        &json!({"type": "MoneyDeposited", "data": {"amount": 1}}),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(assert_error(&body, "wrong_expected_version")["current_version"], 3);
    // no_stream on an existing stream.
    let (status, body) = server.post(
        "/v1/topics/bank/streams/acc-1",
        &json!({"expected_version": "no_stream", "events": [{"type": "AccountCreated"}]}),
    );
    assert_eq!(status, 409, "{body}");
    assert_eq!(assert_error(&body, "wrong_expected_version")["current_version"], 3);
    // stream_exists on a new stream.
    let (status, body) = server.post(
        "/v1/topics/bank/streams/acc-2",
        &json!({"expected_version": "stream_exists", "events": [{"type": "MoneyDeposited"}]}),
    );
    assert_eq!(status, 409, "{body}");
    let error = assert_error(&body, "wrong_expected_version");
    assert!(error.get("current_version").is_some_and(Value::is_null), "current_version null: {body}");

    // Nothing was appended anywhere.
    let read = server.get_ok("/v1/topics/bank/streams/acc-1");
    assert_eq!(read["current_version"], 3);
    assert_eq!(versions(&read["events"]), [0, 1, 2, 3]);
    let (status, body) = server.get("/v1/topics/bank/streams/acc-2");
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "stream_not_found");
    let all = server.get_ok("/v1/all");
    assert_eq!(all["events"].as_array().expect("events").len(), 4);

    // The right expected version goes through; `any` always does.
    let ok = server.post_expect(
        "/v1/topics/bank/streams/acc-1",
        &json!({"expected_version": 3, "events": [{"type": "MoneyDeposited", "data": {"amount": 5}}]}),
        201,
    );
    assert_eq!(ok["events"][0]["version"], 4);
    let ok = server.post_expect(
        "/v1/topics/bank/streams/acc-1?expected_version=any",
        &json!({"type": "MoneyDeposited", "data": {"amount": 5}}),
        201,
    );
    assert_eq!(ok["events"][0]["version"], 5);
    let ok = server.post_expect(
        "/v1/topics/bank/streams/acc-1",
        &json!({"expected_version": "stream_exists", "events": [{"type": "MoneyWithdrawn", "data": {"amount": 10}}]}),
        201,
    );
    assert_eq!(ok["events"][0]["version"], 6);
    let read = server.get_ok("/v1/topics/bank/streams/acc-1");
    assert_eq!(balance(read["events"].as_array().expect("events")), 120);
}

#[test]
fn idempotent_retries_answer_the_original_positions() {
    let server = Server::start();
    server.create_topic("bank", 1);
    let request = json!({
        "expected_version": "no_stream",
        "events": [
            {"type": "AccountCreated", "id": "d-1", "data": {"owner": "ada"}},
            {"type": "MoneyDeposited", "id": "d-2", "data": {"amount": 100}}
        ]
    });
    let first = server.post_expect("/v1/topics/bank/streams/acc-1", &request, 201);
    assert_eq!(first["duplicate"], false);
    assert_eq!(versions(&first["events"]), [0, 1]);
    let ids: Vec<&str> =
        first["events"].as_array().expect("events").iter().map(|e| e["id"].as_str().expect("id")).collect();
    assert_eq!(ids, ["d-1", "d-2"]);

    // The identical request again (a client retrying after a lost reply).
    let retry = server.post_expect("/v1/topics/bank/streams/acc-1", &request, 200);
    assert_eq!(retry["duplicate"], true, "{retry}");
    assert_eq!(retry["events"], first["events"], "the original positions");

    // A single event with an id, retried.
    let single = json!({"type": "MoneyWithdrawn", "id": "w-1", "data": {"amount": 30}});
    let one = server.post_expect("/v1/topics/bank/streams/acc-1", &single, 201);
    assert_eq!(one["events"][0]["version"], 2);
    let again = server.post_expect("/v1/topics/bank/streams/acc-1", &single, 200);
    assert_eq!(again["duplicate"], true);
    assert_eq!(again["events"], one["events"]);

    // The same id with other content is refused.
    let (status, body) = server.post(
        "/v1/topics/bank/streams/acc-1",
        &json!({"type": "MoneyWithdrawn", "id": "w-1", "data": {"amount": 3000}}),
    );
    assert_eq!(status, 409, "{body}");
    assert_error(&body, "event_id_reused");
    let (status, body) = server.post(
        "/v1/topics/bank/streams/acc-1",
        &json!({"events": [{"type": "AccountCreated", "id": "d-1", "data": {"owner": "bob"}}]}),
    );
    assert_eq!(status, 409, "{body}");
    assert_error(&body, "event_id_reused");

    let read = server.get_ok("/v1/topics/bank/streams/acc-1");
    assert_eq!(read["current_version"], 2);
    assert_eq!(versions(&read["events"]), [0, 1, 2]);
    assert_eq!(balance(read["events"].as_array().expect("events")), 70);
    assert_eq!(server.get_ok("/v1/all")["events"].as_array().expect("events").len(), 3);
}

#[test]
fn topics_create_list_describe_delete() {
    let server = Server::start();
    let created = server.create_topic("orders", 3);
    assert_eq!(created["name"], "orders");
    assert_eq!(created["partitions"], 3);
    assert_eq!(created["internal"], false);
    assert!(created["created"].as_str().is_some_and(|c| c.ends_with('Z')), "{created}");
    assert_eq!(created["config"]["partitions"], 3);
    server.create_topic("audit", 1);

    let (status, body) = server.post("/v1/topics", &json!({"name": "orders"}));
    assert_eq!(status, 409, "{body}");
    assert_error(&body, "topic_exists");

    let list = server.get_ok("/v1/topics");
    let names: Vec<&str> =
        list["topics"].as_array().expect("topics").iter().map(|t| t["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["audit", "orders"], "sorted, internal topics hidden");

    let empty = server.get_ok("/v1/topics/orders");
    assert_eq!(empty["streams"], 0);
    assert_eq!(empty["records"], 0);
    assert_eq!(empty["partition_offsets"].as_array().expect("partitions").len(), 3);

    for i in 0..6 {
        server.append("orders", &format!("order-{i}"), &json!({"type": "OrderPlaced", "data": {"n": i}}));
    }
    server.append("orders", "order-0", &json!({"type": "OrderShipped"}));
    let d = server.get_ok("/v1/topics/orders");
    assert_eq!(d["name"], "orders");
    assert_eq!(d["partitions"], 3);
    assert_eq!(d["streams"], 6);
    assert_eq!(d["records"], 7);
    assert!(d["size_bytes"].as_u64().expect("size_bytes") > 0, "{d}");
    let partitions = d["partition_offsets"].as_array().expect("partition_offsets");
    assert_eq!(field_u64(&d["partition_offsets"], "partition"), [0, 1, 2]);
    let total: u64 = partitions.iter().map(|p| p["high_watermark"].as_u64().expect("hw")).sum();
    assert_eq!(total, 7);
    for p in partitions {
        assert_eq!(p["log_start_offset"], 0);
        let hw = p["high_watermark"].as_u64().expect("hw");
        let size = p["size_bytes"].as_u64().expect("size_bytes");
        assert_eq!(hw > 0, size > 0, "a partition with records has bytes: {p}");
    }
    let sizes: u64 = partitions.iter().map(|p| p["size_bytes"].as_u64().expect("size")).sum();
    assert_eq!(sizes, d["size_bytes"].as_u64().expect("size_bytes"));

    let (status, body) = server.delete("/v1/topics/orders");
    assert_eq!(status, 204, "{body}");
    assert_eq!(body, Value::Null, "204 has no body");
    let (status, body) = server.get("/v1/topics/orders");
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "unknown_topic");
    let (status, body) = server.delete("/v1/topics/orders");
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "unknown_topic");
    let list = server.get_ok("/v1/topics");
    assert_eq!(list["topics"].as_array().expect("topics").len(), 1);
    assert!(server.get_ok("/v1/all")["events"].as_array().expect("events").is_empty(), "deleted records are gone");
    // The name can be used again.
    server.create_topic("orders", 1);
    assert_eq!(server.get_ok("/v1/topics/orders")["records"], 0);
}

#[test]
fn partition_reads_from_an_offset_or_a_timestamp() {
    let server = Server::start();
    server.create_topic("p", 1);
    for i in 0..5 {
        next_millisecond();
        server.append("p", &format!("k{i}"), &json!({"type": "Tick", "data": {"i": i}}));
    }
    let all = server.get_ok("/v1/topics/p/partitions/0/records");
    assert_eq!(all["topic"], "p");
    assert_eq!(all["partition"], 0);
    assert_eq!(all["log_start_offset"], 0);
    assert_eq!(all["high_watermark"], 5);
    assert_eq!(field_u64(&all["records"], "offset"), [0, 1, 2, 3, 4]);
    assert_eq!(all["next_offset"], Value::Null);
    let keys: Vec<&str> =
        all["records"].as_array().expect("records").iter().map(|r| r["key"].as_str().expect("key")).collect();
    assert_eq!(keys, ["k0", "k1", "k2", "k3", "k4"]);

    let from = server.get_ok("/v1/topics/p/partitions/0/records?offset=2");
    assert_eq!(field_u64(&from["records"], "offset"), [2, 3, 4]);
    let page = server.get_ok("/v1/topics/p/partitions/0/records?offset=0&limit=2");
    assert_eq!(field_u64(&page["records"], "offset"), [0, 1]);
    assert_eq!(page["next_offset"], 2);
    let end = server.get_ok("/v1/topics/p/partitions/0/records?offset=5");
    assert_eq!(end["records"], json!([]));

    let records = all["records"].as_array().expect("records");
    let ts3 = records[3]["timestamp"].as_str().expect("timestamp");
    let at = server.get_ok(&format!("/v1/topics/p/partitions/0/records?timestamp={ts3}"));
    assert_eq!(field_u64(&at["records"], "offset"), [3, 4]);
    // Milliseconds, just after record 2's time: the first record at or after is 3.
    let ms2 = rfc3339_ms(records[2]["timestamp"].as_str().expect("timestamp"));
    let after = server.get_ok(&format!("/v1/topics/p/partitions/0/records?timestamp={}", ms2 + 1));
    assert_eq!(field_u64(&after["records"], "offset"), [3, 4]);
    let ms4 = rfc3339_ms(records[4]["timestamp"].as_str().expect("timestamp"));
    let late = server.get_ok(&format!("/v1/topics/p/partitions/0/records?timestamp={}", ms4 + 1));
    assert_eq!(late["records"], json!([]), "nothing at or after a time past the last record");
}

#[test]
fn everything_in_commit_order_without_internal_topics() {
    let server = Server::start();
    server.create_topic("a", 1);
    server.create_topic("b", 2);
    let order = [("a", "x"), ("b", "y"), ("a", "x"), ("b", "z"), ("a", "w")];
    let mut appended = Vec::new();
    for (i, (topic, key)) in order.iter().enumerate() {
        let reply = server.append(topic, key, &json!({"type": "E", "data": {"i": i}}));
        appended.push(reply["events"][0]["sequence"].as_u64().expect("sequence"));
        if i == 1 {
            // A group commit writes to the internal topic between two appends.
            server.post_expect(
                "/v1/groups/g/offsets",
                &json!({"offsets": [{"topic": "a", "partition": 0, "offset": 1}]}),
                200,
            );
        }
    }
    // Page through two at a time.
    let mut seen = Vec::new();
    let mut from = 0u64;
    for _ in 0..20 {
        let page = server.get_ok(&format!("/v1/all?from_sequence={from}&limit=2"));
        let events = page["events"].as_array().expect("events");
        assert!(events.len() <= 2, "{page}");
        seen.extend(events.iter().cloned());
        match page["next_sequence"].as_u64() {
            Some(next) => {
                assert!(next > from, "paging moves forward: {page}");
                from = next;
            }
            None => break,
        }
    }
    let topics: Vec<&str> = seen.iter().map(|e| e["topic"].as_str().expect("topic")).collect();
    assert_eq!(topics, ["a", "b", "a", "b", "a"]);
    assert_eq!(field_u64(&Value::Array(seen.clone()), "sequence"), appended);
    let data: Vec<u64> = seen.iter().map(|e| e["data"]["i"].as_u64().expect("i")).collect();
    assert_eq!(data, [0, 1, 2, 3, 4]);
    // The commit took a sequence of its own, which /v1/all does not show.
    assert!(appended[2] > appended[1] + 1, "the internal record sits between: {appended:?}");

    let whole = server.get_ok("/v1/all");
    assert_eq!(whole["events"].as_array().expect("events").len(), 5);
    assert!(whole["events"].as_array().expect("events").iter().all(|e| e["topic"] != "__consumer_offsets"));

    let listed = server.get_ok("/v1/topics");
    let names: Vec<&str> =
        listed["topics"].as_array().expect("topics").iter().map(|t| t["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["a", "b"]);
    let listed = server.get_ok("/v1/topics?internal=true");
    let internal: Vec<&Value> = listed["topics"]
        .as_array()
        .expect("topics")
        .iter()
        .filter(|t| {
            ["__consumer_offsets", "_schemas", "__transaction_state", "_evident_sql"]
                .contains(&t["name"].as_str().unwrap_or(""))
        })
        .collect();
    // The group coordinator's offsets, the schema registry's topic (the server runs one) and
    // the transaction coordinator's state and the SQL views' catalog.
    assert_eq!(internal.len(), 4, "{listed}");
    assert!(internal.iter().all(|t| t["internal"] == true), "{listed}");
    assert_eq!(listed["topics"].as_array().expect("topics").len(), 6);
}

#[test]
fn subscribe_to_a_stream_catch_up_live_and_resume() {
    let server = Server::start();
    server.create_topic("bank", 1);
    for (event, _) in walkthrough_events().into_iter().take(3) {
        server.append("bank", "acc-1", &event);
    }
    server.append("bank", "acc-2", &json!({"type": "AccountCreated"}));

    let mut sse = Sse::open(&server, "/v1/subscribe?topic=bank&key=acc-1", &[]);
    assert_eq!(sse.status, 200);
    assert!(sse.header("content-type").is_some_and(|c| c.starts_with("text/event-stream")), "{:?}", sse.headers);
    for version in 0..3u64 {
        let m = sse.next_event();
        assert_eq!(m.id.as_deref(), Some(version.to_string().as_str()), "{m:?}");
        let e = m.json();
        assert_eq!(e["version"], version);
        assert_eq!(e["key"], "acc-1");
        assert_eq!(e["topic"], "bank");
    }
    // Live: appended from another thread after the catch-up.
    let appender = std::thread::scope(|s| {
        s.spawn(|| server.append("bank", "acc-1", &json!({"type": "MoneyDeposited", "data": {"amount": 50}})))
            .join()
            .expect("appender")
    });
    let live = sse.next_event();
    assert_eq!(live.id.as_deref(), Some("3"));
    let e = live.json();
    assert_eq!(e["type"], "MoneyDeposited");
    assert_eq!(e["id"], appender["events"][0]["id"]);
    assert_eq!(e["sequence"], appender["events"][0]["sequence"]);
    drop(sse);

    // Reconnect after id 2: versions 3 and on only; Last-Event-ID wins over from_version.
    let mut resumed =
        Sse::open(&server, "/v1/subscribe?topic=bank&key=acc-1&from_version=0", &[("Last-Event-ID", "2")]);
    assert_eq!(resumed.status, 200);
    assert_eq!(resumed.next_event().id.as_deref(), Some("3"));
    server.append("bank", "acc-1", &json!({"type": "MoneyWithdrawn", "data": {"amount": 1}}));
    let m = resumed.next_event();
    assert_eq!(m.id.as_deref(), Some("4"));
    assert_eq!(m.json()["type"], "MoneyWithdrawn");

    let mut from = Sse::open(&server, "/v1/subscribe?topic=bank&key=acc-1&from_version=4", &[]);
    assert_eq!(from.next_event().id.as_deref(), Some("4"));
}

#[test]
fn subscribe_to_a_topic_a_partition_and_unknown_targets() {
    let server = Server::start();
    server.create_topic("bank", 1);
    server.create_topic("other", 1);
    // Interleave topics so that sequences and offsets differ.
    server.append("other", "o", &json!({"type": "Noise"}));
    server.append("bank", "acc-1", &json!({"type": "AccountCreated"}));
    server.append("other", "o", &json!({"type": "Noise"}));
    server.append("bank", "acc-2", &json!({"type": "AccountCreated"}));
    server.append("bank", "acc-1", &json!({"type": "MoneyDeposited", "data": {"amount": 10}}));

    let mut topic = Sse::open(&server, "/v1/subscribe?topic=bank", &[]);
    assert_eq!(topic.status, 200);
    let mut ids = Vec::new();
    for _ in 0..3 {
        let m = topic.next_event();
        let e = m.json();
        assert_eq!(e["topic"], "bank");
        assert_eq!(m.id.as_deref(), Some(e["sequence"].to_string().as_str()), "topic ids are sequences");
        ids.push(e["sequence"].as_u64().expect("sequence"));
    }
    assert_eq!(ids, [1, 3, 4]);
    let reply = server.append("bank", "acc-3", &json!({"type": "AccountCreated"}));
    let m = topic.next_event();
    assert_eq!(m.id.as_deref(), Some(reply["events"][0]["sequence"].to_string().as_str()));
    assert_eq!(m.json()["key"], "acc-3");

    let mut partition = Sse::open(&server, "/v1/subscribe?topic=bank&partition=0", &[]);
    assert_eq!(partition.status, 200);
    for offset in 0..4u64 {
        let m = partition.next_event();
        assert_eq!(m.id.as_deref(), Some(offset.to_string().as_str()), "partition ids are offsets: {m:?}");
        assert_eq!(m.json()["offset"], offset);
        assert_eq!(m.json()["partition"], 0);
    }
    let mut partition_from = Sse::open(&server, "/v1/subscribe?topic=bank&partition=0&from_offset=2", &[]);
    assert_eq!(partition_from.next_event().id.as_deref(), Some("2"));
    let mut topic_resumed = Sse::open(&server, "/v1/subscribe?topic=bank", &[("Last-Event-ID", "3")]);
    assert_eq!(topic_resumed.next_event().id.as_deref(), Some("4"));

    for (path, status, code) in [
        ("/v1/subscribe?topic=nope", 404, "unknown_topic"),
        ("/v1/subscribe?topic=nope&key=k", 404, "unknown_topic"),
        ("/v1/subscribe?topic=bank&partition=9", 404, "unknown_partition"),
        ("/v1/subscribe?key=k", 400, "invalid_argument"),
    ] {
        let sse = Sse::open(&server, path, &[]);
        assert_eq!(sse.status, status, "{path}");
        assert!(
            sse.header("content-type").is_some_and(|c| c.starts_with("application/json")),
            "{path}: {:?}",
            sse.headers
        );
        assert_error(&sse.body_json(), code);
    }
}

#[test]
fn disconnecting_a_subscriber_closes_its_subscription() {
    let server = Server::start();
    server.create_topic("bank", 1);
    server.append("bank", "acc-1", &json!({"type": "AccountCreated"}));
    assert_eq!(server.metric("evident_http_open_subscriptions"), Some(0.0));
    let mut sse = Sse::open(&server, "/v1/subscribe?topic=bank&key=acc-1", &[]);
    assert_eq!(sse.next_event().id.as_deref(), Some("0"));
    assert_eq!(server.metric("evident_http_open_subscriptions"), Some(1.0));
    let mut second = Sse::open(&server, "/v1/subscribe", &[]);
    assert_eq!(second.next_event().id.as_deref(), Some("0"));
    assert_eq!(server.metric("evident_http_open_subscriptions"), Some(2.0));
    drop(sse);
    eventually("the open-subscriptions gauge to drop to 1", || {
        server.metric("evident_http_open_subscriptions") == Some(1.0)
    });
    drop(second);
    eventually("the open-subscriptions gauge to drop to 0", || {
        server.metric("evident_http_open_subscriptions") == Some(0.0)
    });
}

/// Appends events with fresh keys to `topic` until each of its `partitions` holds at least
/// `min` records; returns the high watermarks.
fn fill_partitions(server: &Server, topic: &str, partitions: usize, min: u64) -> Vec<u64> {
    for i in 0..500 {
        let hws = high_watermarks(server, topic);
        assert_eq!(hws.len(), partitions);
        if hws.iter().all(|&hw| hw >= min) {
            return hws;
        }
        server.append(topic, &format!("key-{i}"), &json!({"type": "E", "data": {"i": i}}));
    }
    panic!("500 keys did not spread over {partitions} partitions");
}

fn high_watermarks(server: &Server, topic: &str) -> Vec<u64> {
    field_u64(&server.get_ok(&format!("/v1/topics/{topic}"))["partition_offsets"], "high_watermark")
}

/// A group's committed offsets as (topic, partition) → offset.
fn committed(server: &Server, group: &str) -> BTreeMap<(String, u64), u64> {
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
fn committed_of(server: &Server, group: &str, topic: &str) -> Vec<u64> {
    committed(server, group).into_iter().filter(|((t, _), _)| t == topic).map(|(_, o)| o).collect()
}

/// Posts a reset (must answer 200) and returns the rows' new offsets by (topic, partition).
fn reset(server: &Server, group: &str, body: Value) -> Vec<(String, u64, u64)> {
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

#[test]
fn consumer_groups_commit_fetch_list_describe_delete() {
    let server = Server::start();
    server.create_topic("t", 3);
    let hw = fill_partitions(&server, "t", 3, 2);
    assert_eq!(server.get_ok("/v1/groups"), json!({"groups": []}));

    let reply = server.post_expect(
        "/v1/groups/g/offsets",
        &json!({"offsets": [
            {"topic": "t", "partition": 0, "offset": 1, "metadata": "consumer-a"},
            {"topic": "t", "partition": 2, "offset": 2}
        ]}),
        200,
    );
    assert_eq!(reply["group"], "g");
    assert_eq!(reply["offsets"].as_array().expect("offsets").len(), 2);

    let fetched = server.get_ok("/v1/groups/g/offsets");
    let offsets = fetched["offsets"].as_array().expect("offsets");
    assert_eq!(offsets.len(), 2);
    assert_eq!((offsets[0]["topic"].as_str(), offsets[0]["partition"].as_u64()), (Some("t"), Some(0)));
    assert_eq!(offsets[0]["offset"], 1);
    assert_eq!(offsets[0]["metadata"], "consumer-a");
    assert_eq!((offsets[1]["partition"].as_u64(), offsets[1]["offset"].as_u64()), (Some(2), Some(2)));
    assert_eq!(offsets[1]["metadata"], Value::Null);
    assert_eq!(server.get_ok("/v1/groups/g/offsets?topic=t")["offsets"].as_array().expect("offsets").len(), 2);
    assert_eq!(server.get_ok("/v1/groups/g/offsets?topic=other")["offsets"], json!([]));

    let list = server.get_ok("/v1/groups");
    let groups = list["groups"].as_array().expect("groups");
    assert_eq!(groups.len(), 1, "{list}");
    assert_eq!(groups[0]["group"], "g");
    assert_eq!(groups[0]["state"], "Empty");
    assert_eq!(groups[0]["members"], 0);

    let d = server.get_ok("/v1/groups/g");
    assert_eq!(d["group"], "g");
    assert_eq!(d["members"], json!([]));
    let rows = d["offsets"].as_array().expect("offsets");
    assert_eq!(rows.len(), 2);
    for (row, (partition, offset)) in rows.iter().zip([(0u64, 1u64), (2, 2)]) {
        assert_eq!(row["topic"], "t");
        assert_eq!(row["partition"], partition);
        assert_eq!(row["committed_offset"], offset, "{row}");
        assert_eq!(row["log_end_offset"], hw[partition as usize]);
        assert_eq!(row["lag"], hw[partition as usize] - offset, "lag = high watermark - committed: {row}");
    }
    assert_eq!(d["total_lag"], hw[0] - 1 + hw[2] - 2);
    let lag_metric = server.metric("evident_group_lag{group=\"g\"}").expect("evident_group_lag of g");
    assert_eq!(lag_metric, (hw[0] - 1 + hw[2] - 2) as f64);

    // A later commit replaces the offset.
    server.post_expect("/v1/groups/g/offsets", &json!({"offsets": [{"topic": "t", "partition": 0, "offset": 2}]}), 200);
    assert_eq!(committed_of(&server, "g", "t"), [2, 2]);

    let (status, body) = server.delete("/v1/groups/g");
    assert_eq!(status, 204, "{body}");
    let (status, body) = server.get("/v1/groups/g");
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "unknown_group");
    assert_eq!(server.get_ok("/v1/groups"), json!({"groups": []}));
    assert_eq!(server.get_ok("/v1/groups/g/offsets")["offsets"], json!([]));
    let (status, body) = server.delete("/v1/groups/g");
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "unknown_group");
}

#[test]
fn reset_offsets_every_strategy_and_scope() {
    let server = Server::start();
    server.create_topic("t", 3);
    let hw = fill_partitions(&server, "t", 3, 3);
    server.create_topic("u", 1);
    for i in 0..4 {
        next_millisecond();
        server.append("u", "u-key", &json!({"type": "E", "data": {"i": i}}));
    }
    let g = "r";
    server.post_expect(
        &format!("/v1/groups/{g}/offsets"),
        &json!({"offsets": [
            {"topic": "t", "partition": 0, "offset": 1},
            {"topic": "t", "partition": 1, "offset": 1},
            {"topic": "t", "partition": 2, "offset": 1},
            {"topic": "u", "partition": 0, "offset": 1}
        ]}),
        200,
    );

    // to_earliest: a dry run changes nothing; execute commits.
    let plan = server.post_expect(
        &format!("/v1/groups/{g}/reset-offsets"),
        &json!({"topics": ["t"], "to_earliest": true}),
        200,
    );
    assert_eq!(plan["executed"], false);
    let first = &plan["offsets"][0];
    assert_eq!(
        (&first["current_offset"], &first["new_offset"], &first["log_start_offset"], &first["log_end_offset"]),
        (&json!(1), &json!(0), &json!(0), &json!(hw[0])),
        "{plan}"
    );
    assert_eq!(committed_of(&server, g, "t"), [1, 1, 1], "a plan changes nothing");
    let executed = reset(&server, g, json!({"topics": ["t"], "to_earliest": true, "execute": true}));
    assert_eq!(executed, rows("t", &[0, 0, 0]));
    assert_eq!(committed_of(&server, g, "t"), [0, 0, 0]);

    // to_latest.
    assert_eq!(reset(&server, g, json!({"topics": ["t"], "to_latest": true})), rows("t", &hw));
    assert_eq!(committed_of(&server, g, "t"), [0, 0, 0]);
    reset(&server, g, json!({"topics": ["t"], "to_latest": true, "execute": true}));
    assert_eq!(committed_of(&server, g, "t"), hw);

    // to_current keeps what is committed.
    assert_eq!(reset(&server, g, json!({"topics": ["t"], "to_current": true, "execute": true})), rows("t", &hw));
    assert_eq!(committed_of(&server, g, "t"), hw);

    // to_offset, clamped to each partition's offsets.
    reset(&server, g, json!({"topics": ["t"], "to_offset": 2, "execute": true}));
    assert_eq!(committed_of(&server, g, "t"), [2, 2, 2]);
    assert_eq!(reset(&server, g, json!({"topics": ["t"], "to_offset": 1_000_000, "execute": true})), rows("t", &hw));
    assert_eq!(committed_of(&server, g, "t"), hw);
    assert_eq!(reset(&server, g, json!({"topics": ["t"], "to_offset": -5})), rows("t", &[0, 0, 0]));

    // shift_by, back and forth, clamped.
    let back: Vec<u64> = hw.iter().map(|h| h - 1).collect();
    assert_eq!(reset(&server, g, json!({"topics": ["t"], "shift_by": -1, "execute": true})), rows("t", &back));
    assert_eq!(committed_of(&server, g, "t"), back);
    reset(&server, g, json!({"topics": ["t"], "shift_by": -1000, "execute": true}));
    assert_eq!(committed_of(&server, g, "t"), [0, 0, 0]);
    reset(&server, g, json!({"topics": ["t"], "shift_by": 2, "execute": true}));
    assert_eq!(committed_of(&server, g, "t"), [2, 2, 2]);
    reset(&server, g, json!({"topics": ["t"], "shift_by": 1000, "execute": true}));
    assert_eq!(committed_of(&server, g, "t"), hw);

    // A partition scope touches only those partitions.
    let scoped = reset(&server, g, json!({"topics": ["t:0,2"], "to_earliest": true, "execute": true}));
    assert_eq!(scoped, [("t".to_string(), 0, 0), ("t".to_string(), 2, 0)]);
    assert_eq!(committed_of(&server, g, "t"), [0, hw[1], 0]);

    // to_datetime on u, whose records have distinct millisecond timestamps.
    let records = server.get_ok("/v1/topics/u/partitions/0/records")["records"].clone();
    let times: Vec<i64> =
        records.as_array().expect("records").iter().map(|r| rfc3339_ms(r["timestamp"].as_str().expect("ts"))).collect();
    assert!(times.windows(2).all(|w| w[0] < w[1]), "{times:?}");
    let between = times[1] + 1; // after record 1, at or before record 2
    assert_eq!(reset(&server, g, json!({"topics": ["u"], "to_datetime": between})), rows("u", &[2]));
    let ts2 = records[2]["timestamp"].as_str().expect("timestamp");
    assert_eq!(reset(&server, g, json!({"topics": ["u"], "to_datetime": ts2})), rows("u", &[2]));
    // Kafka's format: no zone, taken as UTC.
    let civil = ts2.trim_end_matches('Z');
    assert_eq!(reset(&server, g, json!({"topics": ["u"], "to_datetime": civil, "execute": true})), rows("u", &[2]));
    assert_eq!(committed_of(&server, g, "u"), [2]);
    assert_eq!(reset(&server, g, json!({"topics": ["u"], "to_datetime": times[3] + 1})), rows("u", &[4]));
    assert_eq!(reset(&server, g, json!({"topics": ["u"], "to_datetime": "2000-01-01T00:00:00"})), rows("u", &[0]));

    // by_duration: every record is from the last hour; none is from the future.
    assert_eq!(reset(&server, g, json!({"topics": ["u"], "by_duration": "PT1H", "execute": true})), rows("u", &[0]));
    assert_eq!(committed_of(&server, g, "u"), [0]);
    next_millisecond();
    assert_eq!(reset(&server, g, json!({"topics": ["u"], "by_duration": "PT0S"})), rows("u", &[4]));
    assert_eq!(reset(&server, g, json!({"topics": ["t"], "by_duration": "P1DT2H"})), rows("t", &[0, 0, 0]));

    // all_topics: every partition the group has committed.
    let before = committed(&server, g);
    let mut expect = rows("t", &hw);
    expect.push(("u".to_string(), 0, 4));
    assert_eq!(reset(&server, g, json!({"all_topics": true, "to_latest": true})), expect);
    assert_eq!(committed(&server, g), before, "a plan changes nothing");
    assert_eq!(reset(&server, g, json!({"all_topics": true, "to_latest": true, "execute": true})), expect);
    let after: Vec<u64> = committed(&server, g).into_values().collect();
    assert_eq!(after, [hw[0], hw[1], hw[2], 4]);

    // The executed reset is durable.
    let server = server.restart();
    let after: Vec<u64> = committed(&server, g).into_values().collect();
    assert_eq!(after, [hw[0], hw[1], hw[2], 4]);
}

#[test]
fn data_and_group_offsets_survive_a_restart() {
    let mut server = Server::start();
    bank(&server);
    server.post_expect(
        "/v1/groups/billing/offsets",
        &json!({"offsets": [{"topic": "bank", "partition": 0, "offset": 3, "metadata": "m"}]}),
        200,
    );
    let before = server.get_ok("/v1/groups/billing/offsets");
    let stream_before = server.get_ok("/v1/topics/bank/streams/acc-1");
    let (code, stdout, stderr) = server.sigterm();
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");
    assert!(stdout.contains("evident: stopped"), "{stdout}");

    let dir = server.dir.clone();
    let server = Server::start_in(&dir);
    assert_eq!(server.get_ok("/v1/groups/billing/offsets"), before);
    assert_eq!(server.get_ok("/v1/groups/billing")["total_lag"], 1);
    let stream_after = server.get_ok("/v1/topics/bank/streams/acc-1");
    assert_eq!(stream_after, stream_before);
    assert_eq!(balance(stream_after["events"].as_array().expect("events")), 120);
    // Appends continue where they left off.
    let next = server.post_expect(
        "/v1/topics/bank/streams/acc-1",
        &json!({"expected_version": 3, "events": [{"type": "MoneyDeposited", "data": {"amount": 1}}]}),
        201,
    );
    assert_eq!(next["events"][0]["version"], 4);
    assert!(next["events"][0]["sequence"].as_u64() > stream_before["events"][3]["sequence"].as_u64());
}

#[test]
fn health_metrics_and_openapi() {
    let server = Server::start();
    let health = server.get_ok("/health");
    assert_eq!(health["status"], "ok", "{health}");

    bank(&server);
    server.post_expect(
        "/v1/groups/g/offsets",
        &json!({"offsets": [{"topic": "bank", "partition": 0, "offset": 1}]}),
        200,
    );
    let (status, content_type, text) = server.request_raw("GET", "/metrics", None, &[]);
    assert_eq!(status, 200);
    assert!(
        content_type.starts_with("application/openmetrics-text") || content_type.starts_with("text/plain"),
        "{content_type}"
    );
    for name in [
        "evident_log_sync_latency_seconds_bucket",
        "evident_http_open_connections",
        "evident_log_syncs_per_append",
        "evident_group_lag{group=\"g\"}",
    ] {
        assert!(text.contains(name), "/metrics lacks {name}:\n{text}");
    }
    assert_eq!(common::metric_value(&text, "evident_group_lag{group=\"g\"}"), Some(3.0), "lag = 4 - 1");
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
/// stalled subscriber, read again, still gets every event in order.
#[test]
fn a_stalled_subscriber_does_not_stall_appends() {
    let server = Server::start();
    server.create_topic("bulk", 1);
    let mut stalled = Sse::open(&server, "/v1/subscribe?topic=bulk&key=k", &[]);
    // About 8 MiB of events: far beyond what socket buffers hold for a reader that never reads.
    let payload = "x".repeat(4096);
    let batch: Vec<Value> = (0..64).map(|_| json!({"type": "Filled", "data": {"pad": payload}})).collect();
    for round in 0..32u64 {
        let body = json!({"expected_version": if round == 0 { json!("no_stream") } else { json!(round * 64 - 1) }, "events": batch});
        server.post_expect("/v1/topics/bulk/streams/k", &body, 201);
    }
    assert_eq!(server.metric("evident_http_open_subscriptions"), Some(1.0));
    for version in 0..(32 * 64) {
        let event = stalled.next_event();
        assert_eq!(event.id.as_deref(), Some(version.to_string().as_str()), "events arrive in order, none lost");
    }
}

/// A request target longer than the server takes is `414` with the JSON error body, and the
/// server goes on serving; one just under the limit is routed as usual.
#[test]
fn a_too_long_uri_is_414_with_the_json_error() {
    let server = Server::start();
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
/// `warnings`; a topic without them gets an empty list.
#[test]
fn topic_creation_warns_about_unenforced_settings() {
    let server = Server::start();
    let reply = server.post_expect(
        "/v1/topics",
        &json!({"name": "kept", "config": {"retention_ms": 60000, "retention_bytes": 1000, "cleanup_policy": "compact"}}),
        201,
    );
    let warnings: Vec<&str> =
        reply["warnings"].as_array().expect("warnings").iter().map(|w| w.as_str().expect("text")).collect();
    assert_eq!(warnings.len(), 3, "{reply}");
    assert!(warnings[0].starts_with("retention_ms is stored but not enforced yet"), "{reply}");
    assert!(warnings[1].starts_with("retention_bytes is stored but not enforced yet"), "{reply}");
    assert!(warnings[2].starts_with("cleanup_policy compact is stored but not enforced yet"), "{reply}");
    assert_eq!(reply["config"]["retention_ms"], 60000, "the setting is stored: {reply}");
    let plain = server.post_expect("/v1/topics", &json!({"name": "plain"}), 201);
    assert_eq!(plain["warnings"], json!([]), "{plain}");
    // The reply decodes into the shared wire type.
    let created: evident_api::topics::CreatedTopic = serde_json::from_value(reply).expect("CreatedTopic");
    assert_eq!(created.topic.name, "kept");
}
