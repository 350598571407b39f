//! End-to-end tests of dead-letter queue administration against the real `evident serve`:
//! `/v1/dead-letters` and `evident dlq` over dead-letter topics written in the documented record
//! format (appended over HTTP, as the library's runner writes them), the retry and skip requests
//! they append, every refusal with its status and code, and the whole loop with the real
//! library: a projection runner over `evident::HttpBackend` parks a failing event through the
//! server, `evident dlq retry` (and `skip`) ask for it, and the runner's next catch-up acts.

mod common;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use common::{assert_error, rfc3339_ms, Server};
use evident::blocking::ProjectionRunner;
use evident::projection::{HandlerError, Projection, RunnerOptions, Sink, Subscription, Tx};
use evident::{HttpBackend, RecordedEvent};
use evident_core::dead_letter as dlq;
use serde_json::{json, Value};

/// A record of the dead-letter format as CloudEvents JSON: `kind` with these other headers
/// (names without the `evident-dlq-` prefix).
fn dlq_event(id: &str, event_type: &str, kind: &str, headers: &[(&str, &str)]) -> Value {
    let mut h = serde_json::Map::new();
    h.insert(dlq::KIND.into(), json!(kind));
    for (name, value) in headers {
        h.insert(format!("evident-dlq-{name}"), json!(value));
    }
    json!({ "id": id, "type": event_type, "data": {"original": true}, "headers": h })
}

/// A `parked` record of projection `proj` for the event at `sequence`.
fn parked(sequence: u64, event_type: &str, error: &str) -> Value {
    let seq = sequence.to_string();
    let event_id = format!("e-{sequence}");
    dlq_event(
        &format!("parked-{sequence}"),
        event_type,
        "parked",
        &[
            ("projection", "proj"),
            ("topic", "orders"),
            ("partition", "0"),
            ("offset", "3"),
            ("sequence", &seq),
            ("event-id", &event_id),
            ("error", error),
            ("attempts", "3"),
        ],
    )
}

/// A `held` record for the event at `sequence`.
fn held(sequence: u64, event_type: &str) -> Value {
    let seq = sequence.to_string();
    dlq_event(
        &format!("held-{sequence}"),
        event_type,
        "held",
        &[("projection", "proj"), ("topic", "orders"), ("sequence", &seq), ("attempts", "0")],
    )
}

/// Appends a record to `proj.dlq` under `stream` (percent-encoded: streams hold a `/`).
fn put(server: &Server, stream: &str, record: &Value) {
    server.append("proj.dlq", &stream.replace('/', "%2F"), record);
}

/// `proj.dlq` with: orders/1 parked at 10 and held at 12; orders/2 parked at 11 whose retry
/// failed again (new error, 4 more attempts); orders/3 parked at 5 then resolved; and a record of
/// no dead-letter kind.
fn seed(server: &Server) {
    server.create_topic("orders", 1);
    server.create_topic("proj.dlq", 1);
    put(server, "orders/3", &parked(5, "OrderPlaced", "old"));
    put(server, "orders/1", &parked(10, "OrderPlaced", "boom: no such customer"));
    put(server, "orders/2", &parked(11, "OrderPaid", "timeout"));
    put(server, "orders/1", &held(12, "OrderShipped"));
    put(
        server,
        "orders/2",
        &dlq_event(
            "failed-11",
            dlq::FAILED_TYPE,
            "failed",
            &[("sequence", "11"), ("error", "timeout again"), ("attempts", "4")],
        ),
    );
    put(
        server,
        "orders/3",
        &dlq_event("resolved-5", dlq::RESOLVED_TYPE, "resolved", &[("sequence", "5"), ("outcome", "applied")]),
    );
    server.append("proj.dlq", "orders%2F1", &json!({"type": "SomethingElse"}));
}

/// The records of `proj.dlq` (one partition), in order.
fn dlq_records(server: &Server) -> Vec<Value> {
    let page = server.get_ok("/v1/topics/proj.dlq/partitions/0/records?limit=1000");
    page["records"].as_array().expect("records").clone()
}

/// The sequences of a stream's entries in a describe reply.
fn sequences(reply: &Value, stream: &str) -> Vec<u64> {
    let streams = reply["streams"].as_array().expect("streams");
    let s = streams.iter().find(|s| s["stream"] == stream).unwrap_or_else(|| panic!("no {stream} in {reply}"));
    s["entries"].as_array().expect("entries").iter().map(|e| e["sequence"].as_u64().expect("sequence")).collect()
}

#[test]
fn list_describe_retry_and_skip_over_http() {
    let server = Server::start();
    seed(&server);
    server.create_topic("empty.dlq", 1);
    let now = jiff::Timestamp::now().as_millisecond();

    // Every projection with a dead-letter topic, with its counts; other topics are not listed.
    let list = server.get_ok("/v1/dead-letters");
    assert_eq!(
        list,
        json!({"projections": [
            {"projection": "empty", "topic": "empty.dlq", "streams": 0, "parked": 0, "held": 0},
            {"projection": "proj", "topic": "proj.dlq", "streams": 2, "parked": 2, "held": 1},
        ]})
    );

    // One projection: its entries by stream, in order, with what the records said.
    let d = server.get_ok("/v1/dead-letters/proj");
    assert_eq!((d["projection"].as_str(), d["topic"].as_str()), (Some("proj"), Some("proj.dlq")));
    let streams: Vec<&str> =
        d["streams"].as_array().expect("streams").iter().map(|s| s["stream"].as_str().expect("stream")).collect();
    assert_eq!(streams, ["orders/1", "orders/2"], "orders/3 was resolved: {d}");
    assert_eq!(sequences(&d, "orders/1"), [10, 12]);
    let first = &d["streams"][0]["entries"][0];
    let parked_at = first["parked_at"].as_str().expect("parked_at").to_string();
    assert!((rfc3339_ms(&parked_at) - now).abs() < 60_000, "parked_at is the record's time: {parked_at}");
    assert_eq!(
        first,
        &json!({"sequence": 10, "kind": "parked", "topic": "orders", "partition": 0, "offset": 3,
                "event_type": "OrderPlaced", "event_id": "e-10", "error": "boom: no such customer",
                "attempts": 3, "parked_at": parked_at})
    );
    let second = &d["streams"][0]["entries"][1];
    assert_eq!((second["kind"].as_str(), second["event_type"].as_str()), (Some("held"), Some("OrderShipped")));
    assert_eq!((second["partition"].clone(), second["attempts"].clone()), (Value::Null, json!(0)));
    let failed = &d["streams"][1]["entries"][0];
    assert_eq!(
        (failed["kind"].as_str(), failed["error"].as_str(), failed["attempts"].as_u64()),
        (Some("parked"), Some("timeout again"), Some(3 + 4)),
        "a failed retry updates its entry's error and adds its attempts: {failed}"
    );
    let empty = server.get_ok("/v1/dead-letters/empty");
    assert_eq!(empty, json!({"projection": "empty", "topic": "empty.dlq", "streams": []}));

    // Retry: a request record keyed by the stream; the entries stay until the runner acts.
    let before = dlq_records(&server).len();
    let reply = server.post_expect("/v1/dead-letters/proj/retry", &json!({"stream": "orders/1"}), 202);
    assert_eq!(reply, json!({"requested": "retry", "stream": "orders/1", "entries": 2}));
    let records = dlq_records(&server);
    assert_eq!(records.len(), before + 1, "one request record");
    let request = records.last().expect("request");
    assert_eq!((request["key"].as_str(), request["type"].as_str()), (Some("orders/1"), Some(dlq::RETRY_TYPE)));
    assert_eq!(request["headers"][dlq::KIND], "retry");
    assert_eq!(request["source"], "/evident/dead-letters");
    assert!(request["id"].as_str().is_some_and(|id| id.len() == 36), "a UUID: {request}");
    assert_eq!(
        sequences(&server.get_ok("/v1/dead-letters/proj"), "orders/1"),
        [10, 12],
        "a request is not a resolution"
    );
    // A second retry is a second request (a new id), not a duplicate.
    server.post_expect("/v1/dead-letters/proj/retry", &json!({"stream": "orders/1"}), 202);
    assert_eq!(dlq_records(&server).len(), before + 2);

    // Skip: the first entry by default, or the one named if it is the first.
    let reply = server.post_expect("/v1/dead-letters/proj/skip", &json!({"stream": "orders/1"}), 202);
    assert_eq!(reply, json!({"requested": "skip", "stream": "orders/1", "sequence": 10}));
    let request = dlq_records(&server).last().expect("request").clone();
    assert_eq!((request["key"].as_str(), request["type"].as_str()), (Some("orders/1"), Some(dlq::SKIP_TYPE)));
    assert_eq!(request["headers"][dlq::KIND], "skip");
    assert_eq!(request["headers"][dlq::SEQUENCE], "10");
    assert_eq!(request["data"], json!({"sequence": 10}));
    let reply = server.post_expect("/v1/dead-letters/proj/skip", &json!({"stream": "orders/2", "sequence": 11}), 202);
    assert_eq!(reply["sequence"], 11);

    // Another entry than the first: 409 naming the first, and nothing appended.
    let before = dlq_records(&server).len();
    let (status, body) = server.post("/v1/dead-letters/proj/skip", &json!({"stream": "orders/1", "sequence": 12}));
    assert_eq!(status, 409, "{body}");
    let error = assert_error(&body, "not_first_entry");
    assert_eq!(error["first_sequence"], 10);
    let message = error["message"].as_str().expect("message");
    assert!(message.contains("12") && message.contains("first is 10"), "{message}");
    assert_eq!(dlq_records(&server).len(), before, "a refused request appends nothing");

    // What does not exist.
    for (method, path, body) in [
        ("GET", "/v1/dead-letters/nope", None),
        ("POST", "/v1/dead-letters/nope/retry", Some(r#"{"stream":"orders/1"}"#)),
        ("POST", "/v1/dead-letters/nope/skip", Some(r#"{"stream":"orders/1"}"#)),
        ("GET", "/v1/dead-letters/orders", None),
    ] {
        let (status, reply) = server.request(method, path, body);
        assert_eq!(status, 404, "{method} {path}: {reply}");
        let error = assert_error(&reply, "unknown_projection");
        assert!(error["message"].as_str().is_some_and(|m| m.contains(".dlq")), "{reply}");
    }
    for path in ["/v1/dead-letters/proj/retry", "/v1/dead-letters/proj/skip"] {
        for stream in ["orders/3", "orders/9", "elsewhere"] {
            let (status, reply) = server.post(path, &json!({"stream": stream}));
            assert_eq!(status, 404, "{path} {stream}: {reply}");
            assert_error(&reply, "nothing_parked");
        }
    }
    assert_eq!(dlq_records(&server).len(), before, "refusals append nothing");

    // Bad input.
    let bad: &[(&str, &str, Option<&str>, u16, &str)] = &[
        ("POST", "/v1/dead-letters/proj/retry", Some("{}"), 400, "missing_field"),
        ("POST", "/v1/dead-letters/proj/retry", Some(""), 400, "malformed_json"),
        ("POST", "/v1/dead-letters/proj/retry", Some("not json"), 400, "malformed_json"),
        ("POST", "/v1/dead-letters/proj/retry", Some(r#"{"stream":"orders/1","sequence":10}"#), 400, "malformed_json"),
        ("POST", "/v1/dead-letters/proj/retry", Some(r#"{"stream":5}"#), 400, "malformed_json"),
        ("POST", "/v1/dead-letters/proj/retry", Some(r#"{"stream":""}"#), 400, "invalid_stream_key"),
        ("POST", "/v1/dead-letters/proj/skip", Some(r#"{"stream":"orders/1","sequence":-1}"#), 400, "malformed_json"),
        ("POST", "/v1/dead-letters/proj/skip", Some(r#"{"stream":"orders/1","seq":10}"#), 400, "malformed_json"),
        ("POST", "/v1/dead-letters/proj/skip", Some(r#"{"sequence":10}"#), 400, "missing_field"),
        ("POST", "/v1/dead-letters/proj/retry?force=true", Some(r#"{"stream":"orders/1"}"#), 400, "invalid_argument"),
        ("GET", "/v1/dead-letters?all=true", None, 400, "invalid_argument"),
        ("GET", "/v1/dead-letters/proj?stream=orders%2F1", None, 400, "invalid_argument"),
        ("GET", "/v1/dead-letters/bad%20name", None, 400, "invalid_projection"),
        ("POST", "/v1/dead-letters/bad%20name/retry", Some(r#"{"stream":"orders/1"}"#), 400, "invalid_projection"),
        ("POST", "/v1/dead-letters/__internal/retry", Some(r#"{"stream":"orders/1"}"#), 403, "internal_topic"),
        ("GET", "/v1/dead-letters/proj/retry", None, 405, "method_not_allowed"),
        ("DELETE", "/v1/dead-letters/proj", None, 405, "method_not_allowed"),
    ];
    for (method, path, body, status, code) in bad {
        let (got, reply) = server.request(method, path, *body);
        assert_eq!(got, *status, "{method} {path} {body:?}: {reply}");
        assert_error(&reply, code);
    }
    let long = "x".repeat(4097);
    let (status, reply) = server.post("/v1/dead-letters/proj/retry", &json!({"stream": long}));
    assert_eq!(status, 400, "{reply}");
    assert_error(&reply, "invalid_stream_key");
    assert_eq!(dlq_records(&server).len(), before, "bad input appends nothing");

    // The description lists the routes.
    let spec = server.get_ok("/v1/openapi.json");
    for route in [
        "/v1/dead-letters",
        "/v1/dead-letters/{projection}",
        "/v1/dead-letters/{projection}/retry",
        "/v1/dead-letters/{projection}/skip",
    ] {
        assert!(spec["paths"].get(route).is_some(), "openapi.json lacks {route}");
    }
}

/// Runs the CLI, which must succeed; returns its stdout.
fn ok(server: &Server, args: &[&str]) -> String {
    let (code, out, err) = server.cli(args);
    assert_eq!(code, 0, "evident {}\n--- stdout\n{out}\n--- stderr\n{err}", args.join(" "));
    assert!(err.is_empty(), "evident {}: nothing on stderr, got {err}", args.join(" "));
    out
}

/// Runs the CLI with `--json`, which must succeed and print one JSON document.
fn ok_json(server: &Server, args: &[&str]) -> Value {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let out = ok(server, &with_json);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("evident {}: not one JSON document ({e}):\n{out}", args.join(" ")))
}

/// Runs the CLI, which must fail with exit code 1 and this error code on stderr.
fn fails(server: &Server, args: &[&str], code: &str) -> String {
    let (status, out, err) = server.cli(args);
    assert_eq!(status, 1, "evident {}\n--- stdout\n{out}\n--- stderr\n{err}", args.join(" "));
    assert!(out.is_empty(), "nothing on stdout: {out}");
    assert!(err.contains(code), "evident {}: stderr names {code}: {err}", args.join(" "));
    err
}

#[test]
fn the_dlq_commands() {
    let server = Server::start();
    seed(&server);

    // Lists: tables for people, the server's JSON for scripts.
    let out = ok(&server, &["dlq", "list"]);
    assert_eq!(out, "PROJECTION  TOPIC     STREAMS  PARKED  HELD\nproj        proj.dlq  2        2       1\n");
    assert_eq!(ok_json(&server, &["dlq", "list"]), server.get_ok("/v1/dead-letters"));
    let out = ok(&server, &["dlq", "list", "proj"]);
    let expected = "\
STREAM    SEQUENCE  KIND    TYPE          ATTEMPTS  ERROR
orders/1  10        parked  OrderPlaced   3         boom: no such customer
orders/1  12        held    OrderShipped  0         -
orders/2  11        parked  OrderPaid     7         timeout again
";
    assert_eq!(out, expected);
    assert_eq!(ok_json(&server, &["dlq", "list", "proj"]), server.get_ok("/v1/dead-letters/proj"));

    // Retry and skip, as text and as JSON, each appending its request.
    let before = dlq_records(&server).len();
    let out = ok(&server, &["dlq", "retry", "proj", "orders/1"]);
    assert!(out.starts_with("Asked projection proj to retry 2 entries of stream orders/1"), "{out}");
    let reply = ok_json(&server, &["dlq", "retry", "proj", "orders/2"]);
    assert_eq!(reply, json!({"requested": "retry", "stream": "orders/2", "entries": 1}));
    let out = ok(&server, &["dlq", "skip", "proj", "orders/1"]);
    assert!(out.starts_with("Asked projection proj to skip entry 10 of stream orders/1"), "{out}");
    let reply = ok_json(&server, &["dlq", "skip", "proj", "orders/2", "--sequence", "11"]);
    assert_eq!(reply, json!({"requested": "skip", "stream": "orders/2", "sequence": 11}));
    let records = dlq_records(&server);
    let kinds: Vec<&str> = records[before..].iter().map(|r| r["headers"][dlq::KIND].as_str().expect("kind")).collect();
    assert_eq!(kinds, ["retry", "retry", "skip", "skip"]);
    let keys: Vec<&str> = records[before..].iter().map(|r| r["key"].as_str().expect("key")).collect();
    assert_eq!(keys, ["orders/1", "orders/2", "orders/1", "orders/2"]);

    // Refusals: exit 1, the server's code on stderr, nothing on stdout.
    let err = fails(&server, &["dlq", "skip", "proj", "orders/1", "--sequence", "12"], "not_first_entry");
    assert!(err.contains("first is 10"), "{err}");
    fails(&server, &["dlq", "list", "nope"], "unknown_projection");
    fails(&server, &["dlq", "retry", "nope", "orders/1"], "unknown_projection");
    fails(&server, &["dlq", "retry", "proj", "orders/9", "--json"], "nothing_parked");
    fails(&server, &["dlq", "list", "bad name"], "invalid_projection");
    assert_eq!(dlq_records(&server).len(), before + 4, "refusals append nothing");

    // Bad usage is clap's (exit 2).
    let (code, _, err) = server.cli(&["dlq", "skip", "proj", "orders/1", "--sequence", "-3"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = server.cli(&["dlq", "retry", "proj"]);
    assert_eq!(code, 2, "{err}");

    // No dead-letter topics at all.
    let empty = Server::start();
    assert_eq!(ok(&empty, &["dlq", "list"]), "No dead-letter topics.\n");
    empty.create_topic("p.dlq", 1);
    assert_eq!(ok(&empty, &["dlq", "list", "p"]), "Projection p has no parked events.\n");
}

/// A read model of shipments: one row per event handled. `Poison` fails until `fixed`;
/// `Doomed` always fails.
struct Shipping {
    fixed: Arc<AtomicBool>,
}

impl Projection for Shipping {
    fn name(&self) -> &str {
        "shipping"
    }

    fn subscription(&self) -> Subscription {
        Subscription::topic("orders")
    }

    fn tables(&self) -> Vec<String> {
        vec!["shipped".into()]
    }

    fn setup(&mut self, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        tx.execute(
            "CREATE TABLE IF NOT EXISTS {shipped} (sequence BIGINT PRIMARY KEY, stream TEXT NOT NULL, type TEXT NOT NULL)",
            &[],
        )?;
        Ok(())
    }

    fn handle(&mut self, e: &RecordedEvent, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        let event_type = e.event_type.clone().unwrap_or_default();
        match event_type.as_str() {
            "Poison" if !self.fixed.load(Ordering::SeqCst) => return Err("the address service is down".into()),
            "Doomed" => return Err("this event can never be shipped".into()),
            _ => {}
        }
        let sequence = i64::try_from(e.sequence.0)?;
        tx.execute(
            "INSERT INTO {shipped} (sequence, stream, type) VALUES ($1, $2, $3)",
            &[&sequence, &e.stream(), &event_type],
        )?;
        Ok(())
    }
}

/// The events the projection applied: (stream, type), in sequence order.
fn shipped(runner: &mut ProjectionRunner<Shipping>) -> Vec<(String, String)> {
    let rows = runner.query("SELECT stream, type FROM {shipped} ORDER BY sequence", &[]).expect("query");
    rows.iter()
        .map(|r| (r[0].as_str().expect("stream").to_string(), r[1].as_str().expect("type").to_string()))
        .collect()
}

#[test]
fn a_runner_over_http_parks_then_applies_what_the_cli_retries() {
    let server = Server::start();
    server.create_topic("orders", 1);
    let backend = Arc::new(HttpBackend::new(server.base()).expect("backend"));
    let fixed = Arc::new(AtomicBool::new(false));
    let options = RunnerOptions {
        retry: evident::RetryPolicy {
            max_attempts: 2,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(5),
        },
        ..RunnerOptions::default()
    };
    let mut runner = ProjectionRunner::with_options(
        backend,
        Sink::sqlite_in_memory().expect("sink"),
        Shipping { fixed: fixed.clone() },
        options,
    )
    .expect("runner");
    assert!(server.get_ok("/v1/topics").to_string().contains("shipping.dlq"), "the runner made its dead-letter topic");

    for (key, event_type) in
        [("a", "Placed"), ("a", "Poison"), ("b", "Placed"), ("a", "Shipped"), ("c", "Doomed"), ("c", "Placed")]
    {
        server.append("orders", key, &json!({"type": event_type, "data": {"key": key}}));
    }
    let done = runner.catch_up().expect("catch up");
    assert_eq!(done.parked, 4, "a's poison and the event after it, c's doomed one and the event after it");
    assert_eq!(
        shipped(&mut runner),
        [("orders/a".to_string(), "Placed".to_string()), ("orders/b".to_string(), "Placed".to_string())]
    );

    // The server lists what the runner parked, from the records it wrote over HTTP.
    let list = ok_json(&server, &["dlq", "list", "shipping"]);
    let streams: Vec<&str> =
        list["streams"].as_array().expect("streams").iter().map(|s| s["stream"].as_str().expect("stream")).collect();
    assert_eq!(streams, ["orders/a", "orders/c"]);
    let a = &list["streams"][0]["entries"];
    assert_eq!((a[0]["kind"].as_str(), a[0]["event_type"].as_str()), (Some("parked"), Some("Poison")));
    assert_eq!((a[0]["attempts"].as_u64(), a[0]["error"].as_str()), (Some(2), Some("the address service is down")));
    assert_eq!(
        (a[0]["topic"].as_str(), a[0]["partition"].as_u64(), a[0]["offset"].as_u64()),
        (Some("orders"), Some(0), Some(1))
    );
    assert_eq!((a[1]["kind"].as_str(), a[1]["event_type"].as_str()), (Some("held"), Some("Shipped")));
    let table = ok(&server, &["dlq", "list"]);
    assert!(table.contains("shipping    shipping.dlq  2        2       2"), "{table}");

    // The fix is deployed; the CLI asks for a retry of a and a skip of c's first entry.
    fixed.store(true, Ordering::SeqCst);
    ok(&server, &["dlq", "retry", "shipping", "orders/a"]);
    let doomed = list["streams"][1]["entries"][0]["sequence"].as_u64().expect("sequence");
    let skip = ok_json(&server, &["dlq", "skip", "shipping", "orders/c"]);
    assert_eq!(skip["sequence"], doomed);

    // The runner's next catch-up acts on both: a's events applied in order, c's doomed event
    // never, its held one applied.
    runner.catch_up().expect("catch up");
    let expected: Vec<(String, String)> =
        [("a", "Placed"), ("a", "Poison"), ("b", "Placed"), ("a", "Shipped"), ("c", "Placed")]
            .iter()
            .map(|(k, t)| (format!("orders/{k}"), t.to_string()))
            .collect();
    assert_eq!(shipped(&mut runner), expected, "every event applied once, in its place; the doomed one never");
    assert_eq!(ok_json(&server, &["dlq", "list", "shipping"])["streams"], json!([]), "nothing parked any more");
    assert_eq!(
        ok(&server, &["dlq", "list"]),
        "PROJECTION  TOPIC         STREAMS  PARKED  HELD\nshipping    shipping.dlq  0        0       0\n"
    );

    // The records the runner wrote say how each entry ended.
    let page = server.get_ok("/v1/topics/shipping.dlq/partitions/0/records?limit=1000");
    let outcomes: Vec<&str> = page["records"]
        .as_array()
        .expect("records")
        .iter()
        .filter(|r| r["headers"][dlq::KIND] == "resolved")
        .map(|r| r["headers"][dlq::OUTCOME].as_str().expect("outcome"))
        .collect();
    let mut outcomes = outcomes;
    outcomes.sort_unstable();
    assert_eq!(outcomes, ["applied", "applied", "applied", "skipped"]);
}
