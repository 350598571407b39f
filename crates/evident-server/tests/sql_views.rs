//! SQL views through the real binary (issue 15): seed 000's statement verbatim over events a
//! plain Kafka client (confluent-kafka) produced, checked against a fold of the same events;
//! live updates, pull queries by key and by range, a push query, read-your-writes, the
//! changelog topic read back by confluent-kafka, and the view across kill -9. A second test
//! drives windows, EXPLODE, AS OF and the error answers over HTTP alone.

mod common;

use std::collections::BTreeMap;
use std::process::Command;
use std::time::Duration;

use common::{assert_error, eventually, kafka_python, kafka_scripts, run_with_limit, Server, Sse};
use serde_json::{json, Value};

const SEED: &str =
    "CREATE TABLE order_summary AS\nSELECT orderId, SUM(item_price) AS total\nFROM order-events\nGROUP BY orderId;";

/// The fold of order events `0..n` (the formula of tests/kafka/sql_orders.py).
fn fold(n: u64) -> BTreeMap<String, i64> {
    let mut totals = BTreeMap::new();
    for i in 0..n {
        *totals.entry(format!("order-{}", i % 101)).or_insert(0) += 1 + (i as i64 * 7) % 50;
    }
    totals
}

fn sql(server: &Server, statement: &str) -> (u16, Value) {
    server.post("/v1/sql", &json!({ "sql": statement }))
}

fn sql_ok(server: &Server, statement: &str) -> Value {
    let (status, body) = sql(server, statement);
    assert_eq!(status, 200, "{statement}: {body}");
    body
}

/// The view's rows as orderId -> total.
fn totals(server: &Server) -> BTreeMap<String, i64> {
    let body = sql_ok(server, "SELECT orderId, total FROM order_summary");
    body["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r[0].as_str().expect("orderId").to_string(), r[1].as_i64().expect("total")))
        .collect()
}

fn caught_up(server: &Server, view: &str) -> bool {
    let body = sql_ok(server, "SHOW TABLES");
    body["rows"].as_array().expect("rows").iter().any(|r| r[0] == view && r[5] == 0 && r[7] == "running")
}

fn python_script(python: &std::path::Path, server: &Server, args: &[&str]) -> Value {
    let dir = kafka_scripts();
    let mut cmd = Command::new(python);
    cmd.current_dir(&dir).arg(dir.join("sql_orders.py")).args(args).env("PYTHONDONTWRITEBYTECODE", "1");
    let run = run_with_limit(&mut cmd, None, Duration::from_secs(300));
    assert_eq!(run.code, Some(0), "sql_orders.py {args:?}\n{}\n{}\n{}", run.stdout, run.stderr, server.stderr());
    run.json()
}

#[test]
fn the_seed_statement_over_kafka_events_equals_a_fold() {
    let Some(python) = kafka_python("the_seed_statement_over_kafka_events_equals_a_fold") else { return };
    let server = Server::start();
    server.create_topic("order-events", 4);
    let bootstrap = server.kafka_bootstrap();
    let produced = python_script(&python, &server, &["produce", &bootstrap, "0", "3000"]);
    assert_eq!(produced["acked"], 3000);

    // The statement exactly as seed 000 writes it: hyphenated topic, unquoted.
    let created = sql_ok(&server, SEED);
    assert_eq!(created["status"], "ok", "{created}");
    assert_eq!(created["statement"], "CREATE TABLE");
    eventually("the view catches up", || caught_up(&server, "order_summary"));
    assert_eq!(totals(&server), fold(3000));
    let cols = sql_ok(&server, "SELECT * FROM order_summary LIMIT 1");
    assert_eq!(cols["columns"], json!([{"name": "orderId", "type": "STRING"}, {"name": "total", "type": "BIGINT"}]));

    // A push query sees the changes made after it started.
    let mut push = Sse::post(
        &server,
        "/v1/sql",
        &json!({"sql": "SELECT orderId, total FROM order_summary WHERE orderId = 'order-5' EMIT CHANGES"}),
    );
    assert_eq!(push.status, 200);
    let header = push.next().expect("header");
    assert_eq!(header.event.as_deref(), Some("header"));
    assert_eq!(header.json()["columns"][1]["name"], "total");

    // Live: more events, the view follows.
    python_script(&python, &server, &["produce", &bootstrap, "3000", "4000"]);
    eventually("the view follows new events", || totals(&server) == fold(4000));
    let change = push.next_event().json();
    assert_eq!(change["op"], "upsert");
    assert_eq!(change["row"][0], "order-5");
    assert!(change["row"][1].as_i64().expect("total") > fold(3000)["order-5"], "{change}");

    // Per-view numbers in /metrics.
    let metrics = server.metrics();
    assert_eq!(
        common::metric_value(&metrics, "evident_sql_view_lag{view=\"order_summary\",kind=\"TABLE\"}"),
        Some(0.0),
        "{metrics}"
    );
    assert_eq!(
        common::metric_value(&metrics, "evident_sql_view_rows{view=\"order_summary\",kind=\"TABLE\"}"),
        Some(101.0)
    );
    assert!(
        common::metric_value(&metrics, "evident_sql_view_applied_total{view=\"order_summary\",kind=\"TABLE\"}")
            .is_some_and(|n| n >= 4000.0),
        "{metrics}"
    );

    // Pull by key and by range.
    let want = fold(4000);
    let one = sql_ok(&server, "SELECT * FROM order_summary WHERE orderId = 'order-7'");
    assert_eq!(one["rows"], json!([["order-7", want["order-7"]]]));
    let mut by_total: Vec<(i64, String)> = want.iter().map(|(k, v)| (*v, k.clone())).collect();
    by_total.sort_by(|a, b| b.cmp(a));
    let (lo, hi) = (by_total[9].0, by_total[0].0);
    let range = sql_ok(&server, &format!("SELECT orderId, total FROM order_summary WHERE total BETWEEN {lo} AND {hi} ORDER BY total DESC, orderId DESC LIMIT 10"));
    let got: Vec<(i64, String)> = range["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r[1].as_i64().expect("t"), r[0].as_str().expect("k").to_string()))
        .collect();
    assert_eq!(got, by_total[..10].to_vec());

    // Read-your-writes: an append's sequence, then a pull that waits for it.
    let appended = server.append(
        "order-events",
        "customer-1",
        &json!({"type": "ItemAdded", "data": {"orderId": "order-7", "item_price": 1000}}),
    );
    let seq = appended["events"][0]["sequence"].as_u64().expect("sequence");
    let (status, ryw) = server.post(
        "/v1/sql",
        &json!({"sql": "SELECT total FROM order_summary WHERE orderId = 'order-7'", "min_sequence": seq}),
    );
    assert_eq!(status, 200, "{ryw}");
    assert_eq!(ryw["rows"], json!([[want["order-7"] + 1000]]));
    let mut want = want;
    *want.get_mut("order-7").expect("order-7") += 1000;

    // The changelog topic, read by a plain Kafka consumer, equals the view.
    let changelog = python_script(&python, &server, &["changelog", &bootstrap, "order_summary"]);
    let from_topic: BTreeMap<String, i64> = changelog["rows"]
        .as_object()
        .expect("rows")
        .iter()
        .map(|(k, v)| (k.clone(), v["total"].as_i64().expect("total")))
        .collect();
    assert_eq!(from_topic, want);

    // Avro events through the registry (Confluent's AvroSerializer): the same statement over
    // them gives the same totals, and a column's type comes from the data (item_price: BIGINT).
    server.create_topic("order-events-avro", 2);
    let registry = server.registry_url("");
    let produced = python_script(&python, &server, &["produce-avro", &bootstrap, &registry, "0", "2000"]);
    assert_eq!(produced["acked"], 2000);
    sql_ok(
        &server,
        "CREATE TABLE avro_summary AS SELECT orderId, SUM(item_price) AS total FROM order-events-avro GROUP BY orderId",
    );
    eventually("the Avro view catches up", || caught_up(&server, "avro_summary"));
    let avro = sql_ok(&server, "SELECT orderId, total FROM avro_summary");
    assert_eq!(avro["columns"][1]["type"], "BIGINT", "{avro}");
    let got: BTreeMap<String, i64> = avro["rows"]
        .as_array()
        .expect("rows")
        .iter()
        .map(|r| (r[0].as_str().expect("k").to_string(), r[1].as_i64().expect("t")))
        .collect();
    assert_eq!(got, fold(2000));

    // kill -9: the view comes back with exactly its rows, then goes on.
    let server = server.crash_restart();
    eventually("the view is back", || caught_up(&server, "order_summary"));
    assert_eq!(totals(&server), want);
    python_script(&python, &server, &["produce", &server.kafka_bootstrap(), "4000", "4500"]);
    let mut want = fold(4500);
    *want.get_mut("order-7").expect("order-7") += 1000;
    eventually("the restored view follows new events", || totals(&server) == want);
}

fn append_at(server: &Server, topic: &str, key: &str, time: &str, data: Value) -> u64 {
    let body = server.append(topic, key, &json!({"type": "Reading", "time": time, "data": data}));
    body["events"][0]["sequence"].as_u64().expect("sequence")
}

#[test]
fn windows_explode_as_of_and_errors() {
    let server = Server::start();
    server.create_topic("readings", 1);
    // Tumbling windows of one minute with a grace of one minute.
    let times = ["2026-12-01T10:00:05Z", "2026-12-01T10:00:50Z", "2026-12-01T10:01:10Z", "2026-12-01T10:02:30Z"];
    let mut seqs = Vec::new();
    for (i, t) in times.iter().enumerate() {
        seqs.push(append_at(&server, "readings", "dev-1", t, json!({"device": "dev-1", "value": i as i64 + 1})));
    }
    sql_ok(&server, "CREATE TABLE per_minute AS SELECT device, WINDOWSTART AS ws, COUNT(*) AS n, SUM(value) AS total FROM readings WINDOW TUMBLING (SIZE 1 MINUTE, GRACE PERIOD 1 MINUTE) GROUP BY device");
    eventually("windows", || caught_up(&server, "per_minute"));
    let rows = sql_ok(&server, "SELECT ws, n, total FROM per_minute ORDER BY ws");
    let t0 = 1_796_119_200_000i64; // 2026-12-01T10:00:00Z
    assert_eq!(rows["rows"], json!([[t0, 2, 3], [t0 + 60_000, 1, 3], [t0 + 120_000, 1, 4]]));
    // A late event (its window closed: stream time 10:02:30 is past 10:00 + 1 min + 1 min grace)
    // is dropped; one inside the grace period counts.
    append_at(&server, "readings", "dev-1", "2026-12-01T10:00:30Z", json!({"device": "dev-1", "value": 100}));
    append_at(&server, "readings", "dev-1", "2026-12-01T10:01:40Z", json!({"device": "dev-1", "value": 10}));
    eventually("late and in-grace events", || {
        sql_ok(&server, "SELECT ws, n, total FROM per_minute ORDER BY ws")["rows"]
            == json!([[t0, 2, 3], [t0 + 60_000, 2, 13], [t0 + 120_000, 1, 4]])
    });

    // Session windows: a gap of one minute; an event that bridges two sessions merges them.
    server.create_topic("clicks", 1);
    for t in ["2026-12-01T10:00:00Z", "2026-12-01T10:00:40Z", "2026-12-01T10:02:00Z"] {
        append_at(&server, "clicks", "u-1", t, json!({"uid": "u-1"}));
    }
    sql_ok(&server, "CREATE TABLE visits AS SELECT uid, WINDOWSTART AS ws, WINDOWEND AS we, COUNT(*) AS n FROM clicks WINDOW SESSION (60 SECONDS) GROUP BY uid");
    eventually("sessions", || caught_up(&server, "visits"));
    let rows = sql_ok(&server, "SELECT ws, we, n FROM visits ORDER BY ws");
    assert_eq!(rows["rows"], json!([[t0, t0 + 40_000, 2], [t0 + 120_000, t0 + 120_000, 1]]));
    append_at(&server, "clicks", "u-1", "2026-12-01T10:01:20Z", json!({"uid": "u-1"}));
    eventually("merged session", || {
        sql_ok(&server, "SELECT ws, we, n FROM visits ORDER BY ws")["rows"] == json!([[t0, t0 + 120_000, 4]])
    });

    // EXPLODE into a derived stream, aggregated by a table over it.
    server.create_topic("orders", 1);
    let mut want: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    let mut mid = 0;
    for i in 0..20i64 {
        let order = format!("o-{}", i % 3);
        let items: Vec<Value> = (0..(i % 4)).map(|j| json!({"sku": format!("s{j}"), "price": i + j})).collect();
        let seq =
            append_at(&server, "orders", &order, "2026-12-01T10:00:00Z", json!({"orderId": order, "items": items}));
        if i == 9 {
            mid = seq;
        }
        let e = want.entry(order).or_default();
        for j in 0..(i % 4) {
            e.0 += i + j;
            e.1 += 1;
        }
    }
    sql_ok(&server, "CREATE STREAM order_items AS SELECT orderId, EXPLODE(items) AS item FROM orders");
    sql_ok(&server, "CREATE TABLE item_totals AS SELECT orderId, SUM(item->price) AS total, COUNT(*) AS n FROM order_items GROUP BY orderId");
    eventually("exploded totals", || {
        let got: BTreeMap<String, (i64, i64)> = sql_ok(&server, "SELECT * FROM item_totals")["rows"]
            .as_array()
            .expect("rows")
            .iter()
            .map(|r| (r[0].as_str().expect("k").to_string(), (r[1].as_i64().unwrap_or(0), r[2].as_i64().unwrap_or(0))))
            .collect();
        got == want
    });

    // AS OF a past sequence: the view as it was after the tenth order event.
    sql_ok(&server, "CREATE TABLE order_count AS SELECT orderId, COUNT(*) AS n FROM orders GROUP BY orderId");
    eventually("order_count", || caught_up(&server, "order_count"));
    let then = sql_ok(&server, &format!("SELECT orderId, n FROM order_count AS OF SEQUENCE {mid} ORDER BY orderId"));
    assert_eq!(then["rows"], json!([["o-0", 4], ["o-1", 3], ["o-2", 3]]));
    let now = sql_ok(&server, "SELECT orderId, n FROM order_count ORDER BY orderId");
    assert_eq!(now["rows"], json!([["o-0", 7], ["o-1", 7], ["o-2", 6]]));
    // Rebuilt on demand: recomputed from the first event, to the same rows.
    let rebuilt = sql_ok(&server, "REBUILD TABLE order_count");
    assert_eq!(rebuilt["statement"], "REBUILD TABLE", "{rebuilt}");
    eventually("rebuilt", || {
        caught_up(&server, "order_count")
            && sql_ok(&server, "SELECT orderId, n FROM order_count ORDER BY orderId")["rows"] == now["rows"]
    });

    // A stream-table join: purchases enriched with the customer's tier as it was when each
    // purchase was committed (the table side is a topic read as a table: latest value per key).
    server.create_topic("customers", 1);
    server.create_topic("purchases", 2);
    let customer = |id: &str, tier: &str| {
        server.append(
            "customers",
            id,
            &json!({"type": "CustomerSet", "data": {"name": format!("name of {id}"), "tier": tier}}),
        );
    };
    let purchase = |id: &str, amount: i64| {
        server.append("purchases", id, &json!({"type": "Purchased", "data": {"customerId": id, "amount": amount}}));
    };
    customer("c1", "gold");
    customer("c2", "silver");
    purchase("c1", 10);
    purchase("c2", 20);
    purchase("c3", 5); // no customer: dropped by the inner join, kept by the LEFT one
    customer("c1", "silver");
    purchase("c1", 30);
    customer("c3", "gold");
    purchase("c3", 7);
    sql_ok(&server, "CREATE TABLE spend_by_tier AS SELECT c.tier, SUM(p.amount) AS total, COUNT(*) AS n FROM purchases p JOIN customers c ON p.customerId = c.ROWKEY GROUP BY c.tier");
    eventually("join", || caught_up(&server, "spend_by_tier"));
    let by_tier = sql_ok(&server, "SELECT tier, total, n FROM spend_by_tier ORDER BY tier");
    assert_eq!(by_tier["rows"], json!([["gold", 17, 2], ["silver", 50, 2]]), "{by_tier}");
    sql_ok(&server, "CREATE STREAM enriched AS SELECT p.customerId AS customer, c.tier AS tier, p.amount AS amount FROM purchases p LEFT JOIN customers c ON p.customerId = c.ROWKEY");
    sql_ok(&server, "CREATE TABLE enriched_count AS SELECT customer, COUNT(*) AS n, COLLECT_LIST(tier) AS tiers FROM enriched GROUP BY customer");
    eventually("left join", || caught_up(&server, "enriched_count"));
    let left = sql_ok(&server, "SELECT customer, n, tiers FROM enriched_count ORDER BY customer");
    assert_eq!(
        left["rows"],
        json!([["c1", 2, ["gold", "silver"]], ["c2", 1, ["silver"]], ["c3", 2, ["gold"]]]),
        "{left}"
    );
    // Joined against a table view by its key column.
    sql_ok(&server, "CREATE TABLE spend AS SELECT customerId, SUM(amount) AS total FROM purchases GROUP BY customerId");
    eventually("spend", || caught_up(&server, "spend"));
    sql_ok(&server, "CREATE STREAM repeat_buyers AS SELECT p.customerId AS customer, s.total AS spent_before, p.amount AS amount FROM purchases p JOIN spend s ON p.customerId = s.customerId");
    purchase("c2", 1);
    sql_ok(&server, "CREATE TABLE repeat_count AS SELECT customer, LATEST_BY_OFFSET(spent_before) AS before FROM repeat_buyers GROUP BY customer");
    eventually("join with a table view", || {
        sql_ok(&server, "SELECT customer, before FROM repeat_count")["rows"] == json!([["c2", 20]])
    });
    sql_ok(&server, "DROP TABLE repeat_count");
    sql_ok(&server, "DROP STREAM repeat_buyers");
    let (status, body) = sql(&server, "DROP TABLE spend_by_tier");
    assert_eq!(status, 200, "{body}");
    let (status, body) = sql(&server, "DROP STREAM enriched");
    assert_eq!(status, 409, "{body}");

    // Bad input: precise errors, nothing changed.
    let (status, body) = sql(&server, "SELECT orderId\nFROM orders WHERE (");
    assert_eq!(status, 400, "{body}");
    let e = assert_error(&body, "sql_syntax");
    assert!(e["message"].as_str().expect("message").contains("line 2"), "{body}");
    let (status, body) =
        sql(&server, "CREATE TABLE t AS SELECT orderId, SUM(orderId) AS s FROM orders GROUP BY orderId");
    assert_eq!(status, 422, "{body}");
    assert_error(&body, "sql_invalid");
    let (status, body) = sql(&server, "CREATE TABLE t AS SELECT nope, COUNT(*) AS n FROM orders GROUP BY nope2");
    assert_eq!(status, 422, "{body}");
    let (status, body) = sql(&server, "CREATE TABLE t AS SELECT x, FOO(x) AS n FROM orders GROUP BY x");
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().expect("message").contains("FOO"), "{body}");
    let (status, body) = sql(&server, "CREATE TABLE t AS SELECT orderId, COUNT(*) AS n FROM missing GROUP BY orderId");
    assert_eq!(status, 404, "{body}");
    assert_error(&body, "unknown_topic");
    let (status, body) =
        sql(&server, "CREATE TABLE order_count AS SELECT orderId, COUNT(*) AS n FROM orders GROUP BY orderId");
    assert_eq!(status, 409, "{body}");
    assert_error(&body, "view_exists");
    let (status, body) = sql(&server, "DROP STREAM order_items");
    assert_eq!(status, 409, "{body}");
    assert_error(&body, "view_in_use");
    let (status, body) = sql(&server, "SELECT * FROM nothing_here");
    assert_eq!(status, 404, "{body}");
    // Dropping in order works, and the names are free again.
    sql_ok(&server, "DROP TABLE item_totals");
    sql_ok(&server, "DROP STREAM order_items");
    let (status, _) = server.get("/v1/topics/order_items");
    assert_eq!(status, 404);
    let streams = sql_ok(&server, "SHOW STREAMS");
    assert_eq!(
        streams["rows"].as_array().expect("rows").iter().map(|r| r[0].clone()).collect::<Vec<_>>(),
        [json!("enriched")]
    );
}
