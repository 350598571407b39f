//! Goal: the schema registry's REST API on `--registry-addr` answers every Confluent route as
//! Confluent does (shapes, media types, error codes and statuses), bad input changes nothing,
//! what it acknowledges survives a restart, `_schemas` is closed to clients, and the listener
//! can be disabled.
//!
//! Method: the real `evident serve` binary (the harness gives the registry a free port),
//! driven over HTTP with reqwest; state is compared before and after every refused request,
//! including the high watermark of `_schemas` read through the main HTTP API.

mod common;

use common::Server;
use serde_json::{json, Value};

const SR: &str = "application/vnd.schemaregistry.v1+json";

fn order(fields: &str) -> String {
    format!(r#"{{"type":"record","name":"Order","namespace":"shop","fields":[{fields}]}}"#)
}

const F1: &str = r#"{"name":"id","type":"string"}"#;
const F2: &str = r#"{"name":"id","type":"string"},{"name":"qty","type":"int","default":1}"#;
const F_BAD: &str = r#"{"name":"id","type":"string"},{"name":"price","type":"double"}"#;

fn body(schema: &str) -> String {
    json!({ "schema": schema }).to_string()
}

/// `method path` with a JSON body; asserts the status; returns the answer.
fn call(server: &Server, method: &str, path: &str, body: Option<&str>, status: u16) -> Value {
    let (got, content_type, answer) = server.registry_request(method, path, body, None);
    assert_eq!(got, status, "{method} {path} answered {got}: {answer}");
    if !matches!(path, "/openapi.json") && !path.ends_with("/schema") {
        assert_eq!(content_type, SR, "{method} {path}");
    }
    answer
}

fn get(server: &Server, path: &str) -> Value {
    call(server, "GET", path, None, 200)
}

/// Asserts an error answer's code and returns its message.
fn error(server: &Server, method: &str, path: &str, body: Option<&str>, status: u16, code: u64) -> String {
    let answer = call(server, method, path, body, status);
    assert_eq!(answer["error_code"], json!(code), "{method} {path}: {answer}");
    answer["message"].as_str().unwrap_or_else(|| panic!("{method} {path}: no message in {answer}")).to_string()
}

/// Everything a client can observe, to compare before and after refused requests.
fn snapshot(server: &Server) -> Value {
    let subjects = get(server, "/subjects?deleted=true");
    let mut versions = serde_json::Map::new();
    for s in subjects.as_array().expect("subjects") {
        let s = s.as_str().expect("name");
        versions.insert(s.to_string(), get(server, &format!("/subjects/{s}/versions?deleted=true")));
    }
    let (_, topic) = server.get("/v1/topics/_schemas");
    json!({
        "subjects": subjects,
        "versions": versions,
        "config": get(server, "/config"),
        "mode": get(server, "/mode"),
        "schemas_topic": topic["partitions"],
    })
}

#[test]
fn every_route_answers_as_confluent_does() {
    let server = Server::start();
    assert_eq!(get(&server, "/"), json!({}));
    assert_eq!(get(&server, "/schemas/types"), json!(["JSON", "PROTOBUF", "AVRO"]));
    assert_eq!(get(&server, "/subjects"), json!([]));

    // Register, idempotently, and evolve.
    let v1 = body(&order(F1));
    assert_eq!(call(&server, "POST", "/subjects/orders-value/versions", Some(&v1), 200), json!({"id": 1}));
    assert_eq!(call(&server, "POST", "/subjects/orders-value/versions", Some(&v1), 200), json!({"id": 1}));
    let v2 = body(&order(F2));
    assert_eq!(
        call(&server, "POST", "/subjects/orders-value/versions?normalize=true", Some(&v2), 200),
        json!({"id": 2})
    );
    // The same content elsewhere keeps its id; the other media types and none are accepted.
    for (subject, ct) in
        [("copy-a", "application/vnd.schemaregistry+json"), ("copy-b", "application/json"), ("copy-c", "")]
    {
        let (status, _, answer) =
            server.registry_request("POST", &format!("/subjects/{subject}/versions"), Some(&v1), Some(ct));
        assert_eq!((status, answer), (200, json!({"id": 1})), "{ct}");
    }
    assert_eq!(get(&server, "/subjects"), json!(["copy-a", "copy-b", "copy-c", "orders-value"]));
    assert_eq!(get(&server, "/subjects?subjectPrefix=copy-"), json!(["copy-a", "copy-b", "copy-c"]));
    assert_eq!(get(&server, "/subjects/orders-value/versions"), json!([1, 2]));
    let latest = get(&server, "/subjects/orders-value/versions/latest");
    assert_eq!(latest, json!({"subject": "orders-value", "version": 2, "id": 2, "schema": order(F2)}));
    assert_eq!(get(&server, "/subjects/orders-value/versions/1")["id"], json!(1));
    let (status, _, raw) = server.registry_request("GET", "/subjects/orders-value/versions/1/schema", None, None);
    assert_eq!((status, raw), (200, serde_json::from_str::<Value>(&order(F1)).expect("json")));

    // Lookup, by canonical form (whitespace differs) and normalized.
    let spaced = body(&order(F1).replace(',', ", "));
    let found = call(&server, "POST", "/subjects/orders-value", Some(&spaced), 200);
    assert_eq!((found["version"].clone(), found["id"].clone()), (json!(1), json!(1)));
    call(&server, "POST", "/subjects/orders-value?normalize=true", Some(&spaced), 200);

    // By id.
    assert_eq!(get(&server, "/schemas/ids/2"), json!({"schema": order(F2)}));
    assert_eq!(get(&server, "/schemas/ids/1?subject=copy-a"), json!({"schema": order(F1)}));
    // `subject` selects a context in Confluent, not a filter: any subject finds the id.
    assert_eq!(get(&server, "/schemas/ids/2?subject=copy-a"), json!({"schema": order(F2)}));
    let (status, _, raw) = server.registry_request("GET", "/schemas/ids/2/schema", None, None);
    assert_eq!((status, raw["name"].clone()), (200, json!("Order")));
    assert_eq!(get(&server, "/schemas/ids/1/subjects"), json!(["copy-a", "copy-b", "copy-c", "orders-value"]));
    assert_eq!(get(&server, "/schemas/ids/2/versions"), json!([{"subject": "orders-value", "version": 2}]));

    // Compatibility checks, with and without reasons.
    let bad = body(&order(F_BAD));
    let verdict = call(&server, "POST", "/compatibility/subjects/orders-value/versions/latest", Some(&bad), 200);
    assert_eq!(verdict, json!({"is_compatible": false}));
    let verdict = call(&server, "POST", "/compatibility/subjects/orders-value/versions?verbose=true", Some(&bad), 200);
    assert_eq!(verdict["is_compatible"], json!(false));
    assert!(verdict["messages"][0].as_str().expect("reason").contains("version 2"), "{verdict}");
    let fine = call(&server, "POST", "/compatibility/subjects/orders-value/versions/1?verbose=true", Some(&v2), 200);
    assert_eq!(fine, json!({"is_compatible": true, "messages": []}));
    let empty = call(&server, "POST", "/compatibility/subjects/nobody/versions", Some(&bad), 200);
    assert_eq!(empty, json!({"is_compatible": true}));

    // Config and mode, global and per subject.
    assert_eq!(get(&server, "/config"), json!({"compatibilityLevel": "BACKWARD"}));
    let full = json!({"compatibility": "full"}).to_string();
    assert_eq!(call(&server, "PUT", "/config/orders-value", Some(&full), 200), json!({"compatibility": "FULL"}));
    assert_eq!(get(&server, "/config/orders-value"), json!({"compatibilityLevel": "FULL"}));
    assert_eq!(get(&server, "/config/copy-a?defaultToGlobal=true"), json!({"compatibilityLevel": "BACKWARD"}));
    assert_eq!(call(&server, "DELETE", "/config/orders-value", None, 200), json!({"compatibilityLevel": "FULL"}));
    let none = json!({"compatibility": "NONE"}).to_string();
    call(&server, "PUT", "/config", Some(&none), 200);
    assert_eq!(get(&server, "/config"), json!({"compatibilityLevel": "NONE"}));
    assert_eq!(call(&server, "DELETE", "/config", None, 200), json!({"compatibilityLevel": "NONE"}));
    assert_eq!(get(&server, "/config"), json!({"compatibilityLevel": "BACKWARD"}));
    assert_eq!(get(&server, "/mode"), json!({"mode": "READWRITE"}));
    let readonly = json!({"mode": "READONLY"}).to_string();
    assert_eq!(call(&server, "PUT", "/mode/copy-c", Some(&readonly), 200), json!({"mode": "READONLY"}));
    assert_eq!(get(&server, "/mode/copy-c"), json!({"mode": "READONLY"}));
    assert_eq!(get(&server, "/mode/copy-b?defaultToGlobal=true"), json!({"mode": "READWRITE"}));
    error(&server, "DELETE", "/subjects/copy-c", None, 422, 42205);
    assert_eq!(call(&server, "DELETE", "/mode/copy-c", None, 200), json!({"mode": "READONLY"}));
    call(&server, "PUT", "/mode", Some(&json!({"mode": "READWRITE"}).to_string()), 200);

    // References, and what they protect.
    let money = r#"{"type":"record","name":"Money","namespace":"shop","fields":[{"name":"cents","type":"long"}]}"#;
    let money_id = call(&server, "POST", "/subjects/money/versions", Some(&body(money)), 200)["id"].clone();
    let line = json!({
        "schema": r#"{"type":"record","name":"Line","namespace":"shop","fields":[{"name":"price","type":"shop.Money"}]}"#,
        "references": [{"name": "shop.Money", "subject": "money", "version": 1}],
    })
    .to_string();
    let line_id = call(&server, "POST", "/subjects/line/versions", Some(&line), 200)["id"].clone();
    assert_eq!(get(&server, "/subjects/money/versions/1/referencedby"), json!([line_id]));
    let line_version = get(&server, "/subjects/line/versions/1");
    assert_eq!(line_version["references"], json!([{"name": "shop.Money", "subject": "money", "version": 1}]));
    assert_eq!(get(&server, &format!("/schemas/ids/{line_id}"))["references"][0]["subject"], json!("money"));
    assert!(money_id.is_number());
    error(&server, "DELETE", "/subjects/money/versions/1", None, 422, 42206);

    // JSON Schema and Protobuf (with the serialized form confluent-kafka's serializer asks).
    let json_schema =
        json!({"schemaType": "JSON", "schema": r#"{"type":"object","properties":{"a":{"type":"string"}}}"#});
    let json_id = call(&server, "POST", "/subjects/js/versions", Some(&json_schema.to_string()), 200)["id"].clone();
    assert_eq!(get(&server, &format!("/schemas/ids/{json_id}"))["schemaType"], json!("JSON"));
    let proto = json!({"schemaType": "PROTOBUF", "schema": "syntax = \"proto3\";\npackage shop;\nmessage Placed { string id = 1; }\n"});
    let proto_id = call(&server, "POST", "/subjects/pb/versions", Some(&proto.to_string()), 200)["id"].clone();
    let text = get(&server, &format!("/schemas/ids/{proto_id}"));
    assert_eq!(text["schemaType"], json!("PROTOBUF"));
    assert!(text["schema"].as_str().expect("text").contains("message Placed"));
    let serialized = get(&server, &format!("/schemas/ids/{proto_id}?format=serialized"));
    let b64 = serialized["schema"].as_str().expect("base64");
    assert!(!b64.contains("message") && !b64.is_empty(), "{b64}");
    // The serialized form registers as the same schema.
    let again = json!({"schemaType": "PROTOBUF", "schema": b64});
    assert_eq!(call(&server, "POST", "/subjects/pb/versions", Some(&again.to_string()), 200)["id"], proto_id);

    // Deletes: soft, listings with deleted=true, permanent.
    assert_eq!(call(&server, "DELETE", "/subjects/orders-value/versions/2", None, 200), json!(2));
    assert_eq!(get(&server, "/subjects/orders-value/versions"), json!([1]));
    assert_eq!(get(&server, "/subjects/orders-value/versions?deleted=true"), json!([1, 2]));
    assert_eq!(get(&server, "/subjects/orders-value/versions/2?deleted=true")["id"], json!(2));
    assert_eq!(get(&server, "/schemas/ids/2"), json!({"schema": order(F2)}), "a soft-deleted id still resolves");
    assert_eq!(get(&server, "/schemas/ids/2/versions"), json!([]));
    assert_eq!(
        get(&server, "/schemas/ids/2/versions?deleted=true"),
        json!([{"subject": "orders-value", "version": 2}])
    );
    assert_eq!(call(&server, "DELETE", "/subjects/orders-value/versions/2?permanent=true", None, 200), json!(2));
    error(&server, "GET", "/schemas/ids/2", None, 404, 40403);
    assert_eq!(call(&server, "DELETE", "/subjects/copy-a", None, 200), json!([1]));
    assert!(!get(&server, "/subjects").as_array().expect("list").contains(&json!("copy-a")));
    assert!(get(&server, "/subjects?deleted=true").as_array().expect("list").contains(&json!("copy-a")));
    let found = call(&server, "POST", "/subjects/copy-a?deleted=true", Some(&v1), 200);
    assert_eq!(found["version"], json!(1));
    assert_eq!(call(&server, "DELETE", "/subjects/copy-a?permanent=true", None, 200), json!([1]));
    assert!(!get(&server, "/subjects?deleted=true").as_array().expect("list").contains(&json!("copy-a")));
    // A new version after a permanent delete never reuses the id; the permanently deleted
    // highest version's number is given again, as Confluent does.
    assert_eq!(
        call(&server, "POST", "/subjects/orders-value/versions", Some(&v2), 200)["id"].as_i64().map(|id| id > 2),
        Some(true)
    );
    assert_eq!(get(&server, "/subjects/orders-value/versions"), json!([1, 2]));

    // The description of all this.
    let (status, content_type, doc) = server.registry_request("GET", "/openapi.json", None, None);
    assert_eq!((status, content_type.as_str()), (200, "application/json"));
    for path in [
        "/subjects/{subject}/versions",
        "/schemas/ids/{id}",
        "/mode/{subject}",
        "/compatibility/subjects/{subject}/versions",
    ] {
        assert!(doc["paths"][path].is_object(), "{path} undocumented");
    }
}

#[test]
fn every_error_code_and_no_refusal_changes_anything() {
    let server = Server::start_with(&["--http-body-max-bytes", "65536"]);
    call(&server, "POST", "/subjects/s/versions", Some(&body(&order(F1))), 200);
    call(&server, "POST", "/subjects/gone/versions", Some(&body(r#""string""#)), 200);
    call(&server, "DELETE", "/subjects/gone", None, 200);
    call(&server, "POST", "/subjects/half/versions", Some(&body(r#""int""#)), 200);
    call(&server, "POST", "/subjects/half/versions", Some(&json!({"schema": "\"long\""}).to_string()), 200);
    call(&server, "DELETE", "/subjects/half/versions/1", None, 200);
    call(&server, "PUT", "/config/levelled", Some(&json!({"compatibility": "FULL"}).to_string()), 200);
    call(&server, "PUT", "/mode/levelled", Some(&json!({"mode": "READWRITE"}).to_string()), 200);
    let before = snapshot(&server);

    let cases: Vec<(&str, String, Option<String>, u16, u64)> = vec![
        ("GET", "/subjects/nobody/versions".into(), None, 404, 40401),
        ("GET", "/subjects/nobody/versions/1".into(), None, 404, 40401),
        ("DELETE", "/subjects/nobody".into(), None, 404, 40401),
        ("POST", "/subjects/nobody".into(), Some(body(&order(F1))), 404, 40401),
        ("GET", "/subjects/s/versions/9".into(), None, 404, 40402),
        ("POST", "/compatibility/subjects/s/versions/9".into(), Some(body(&order(F1))), 404, 40402),
        ("GET", "/subjects/half/versions/1".into(), None, 404, 40402),
        ("GET", "/schemas/ids/999".into(), None, 404, 40403),
        ("GET", "/schemas/ids/abc".into(), None, 404, 40403),
        ("GET", "/schemas/ids/999/subjects".into(), None, 404, 40403),
        ("POST", "/subjects/s".into(), Some(body(r#""boolean""#)), 404, 40403),
        ("DELETE", "/subjects/gone".into(), None, 404, 40404),
        ("DELETE", "/subjects/s?permanent=true".into(), None, 404, 40405),
        ("DELETE", "/subjects/half/versions/1".into(), None, 404, 40406),
        ("DELETE", "/subjects/half/versions/2?permanent=true".into(), None, 404, 40407),
        ("GET", "/config/s".into(), None, 404, 40408),
        ("DELETE", "/config/s".into(), None, 404, 40408),
        ("GET", "/mode/s".into(), None, 404, 40409),
        ("DELETE", "/mode/s".into(), None, 404, 40409),
        ("POST", "/subjects/s/versions".into(), Some(body(&order(F_BAD))), 409, 409),
        ("POST", "/subjects/s/versions".into(), Some(body("{not a schema")), 422, 42201),
        ("POST", "/subjects/s/versions".into(), Some(body("")), 422, 42201),
        ("POST", "/subjects/x/versions".into(), Some(json!({"schema": "\"int\"", "schemaType": "XML"}).to_string()), 422, 42201),
        (
            "POST",
            "/subjects/x/versions".into(),
            Some(json!({"schema": order(r#"{"name":"m","type":"shop.Missing"}"#), "references": [{"name": "shop.Missing", "subject": "nobody", "version": 1}]}).to_string()),
            422,
            42201,
        ),
        ("POST", "/compatibility/subjects/s/versions".into(), Some(body("[")), 422, 42201),
        ("GET", "/subjects/s/versions/0".into(), None, 422, 42202),
        ("GET", "/subjects/s/versions/two".into(), None, 422, 42202),
        ("DELETE", "/subjects/s/versions/-5".into(), None, 422, 42202),
        ("PUT", "/config".into(), Some(json!({"compatibility": "SIDEWAYS"}).to_string()), 422, 42203),
        ("PUT", "/config/s".into(), Some(json!({"compatibility": ""}).to_string()), 422, 42203),
        ("PUT", "/mode".into(), Some(json!({"mode": "WRITEONLY"}).to_string()), 422, 42204),
        ("PUT", "/mode".into(), Some(json!({"mode": "IMPORT"}).to_string()), 422, 42205),
        ("POST", "/subjects/s/versions".into(), Some(json!({"schema": order(F2), "id": 77}).to_string()), 422, 42205),
        ("POST", "/subjects/%01/versions".into(), Some(body(r#""int""#)), 422, 42208),
        ("POST", "/subjects/s/versions".into(), Some("{bad".into()), 400, 400),
        ("POST", "/subjects/s/versions".into(), Some(json!({"schema": {"type": "string"}}).to_string()), 400, 400),
        ("POST", "/subjects/s/versions".into(), Some(json!({"schemaType": "AVRO"}).to_string()), 400, 400),
        ("PUT", "/config".into(), Some("".into()), 400, 400),
        ("GET", "/subjects?deleted=maybe".into(), None, 400, 400),
        // A bad flag is refused even where it would not be used (found by schemathesis).
        ("GET", "/config/levelled?defaultToGlobal=maybe".into(), None, 400, 400),
        ("GET", "/mode/levelled?defaultToGlobal=maybe".into(), None, 400, 400),
        // A path that is not UTF-8 is answered in the registry's shape, not axum's plain text.
        ("GET", "/subjects/%FF/versions".into(), None, 400, 400),
        ("GET", "/schemas/ids/%FF".into(), None, 400, 400),
        ("POST", "/subjects/s/versions?verify=everything".into(), Some(body(&order(F2))), 400, 400),
        ("POST", "/subjects/s/versions".into(), Some(body(&"x".repeat(70_000))), 413, 413),
        ("GET", "/no/such/route".into(), None, 404, 404),
        ("PATCH", "/config".into(), None, 405, 405),
    ];
    for (method, path, body, status, code) in &cases {
        let message = error(&server, method, path, body.as_deref(), *status, *code);
        assert!(!message.is_empty());
    }
    // The incompatible answer carries the reasons.
    let message = error(&server, "POST", "/subjects/s/versions", Some(&body(&order(F_BAD))), 409, 409);
    assert!(message.contains("price"), "{message}");
    // A media type Confluent does not take.
    let (status, _, answer) =
        server.registry_request("POST", "/subjects/s/versions", Some(&body(&order(F2))), Some("text/plain"));
    assert_eq!((status, answer["error_code"].clone()), (415, json!(415)));
    // One Confluent does take: its resources read `application/octet-stream` as JSON.
    let (status, _, answer) =
        server.registry_request("POST", "/subjects/s", Some(&body(&order(F1))), Some("application/octet-stream"));
    assert_eq!((status, answer["version"].clone()), (200, json!(1)), "{answer}");
    assert_eq!(snapshot(&server), before, "a refused request changed the registry");
    // A version referenced by another.
    call(&server, "POST", "/subjects/base/versions", Some(&body(&order(F1))), 200);
    let referrer = json!({
        "schema": r#"{"type":"record","name":"Wrap","fields":[{"name":"o","type":"shop.Order"}]}"#,
        "references": [{"name": "shop.Order", "subject": "base", "version": 1}],
    });
    call(&server, "POST", "/subjects/wrap/versions", Some(&referrer.to_string()), 200);
    let before = snapshot(&server);
    error(&server, "DELETE", "/subjects/base/versions/1", None, 422, 42206);
    error(&server, "DELETE", "/subjects/base", None, 422, 42206);
    // A reference cycle cannot be built through the API (a reference names an existing
    // version), and a self-reference names a version that does not exist yet.
    let selfref = json!({
        "schema": r#"{"type":"record","name":"Loop","fields":[{"name":"o","type":"Loop"}]}"#,
        "references": [{"name": "Loop", "subject": "loop", "version": 1}],
    });
    error(&server, "POST", "/subjects/loop/versions", Some(&selfref.to_string()), 422, 42201);
    assert_eq!(snapshot(&server), before, "a refused request changed the registry");
}

#[test]
fn acknowledged_state_survives_a_restart_and_schemas_is_internal() {
    let server = Server::start();
    call(&server, "POST", "/subjects/a/versions", Some(&body(&order(F1))), 200);
    call(&server, "POST", "/subjects/a/versions", Some(&body(&order(F2))), 200);
    call(&server, "DELETE", "/subjects/a/versions/1", None, 200);
    call(&server, "PUT", "/config/a", Some(&json!({"compatibility": "FULL"}).to_string()), 200);
    call(&server, "PUT", "/mode/b", Some(&json!({"mode": "READONLY"}).to_string()), 200);
    let before = snapshot(&server);
    let server = server.restart();
    assert_eq!(snapshot(&server), before);
    assert_eq!(get(&server, "/config/a"), json!({"compatibilityLevel": "FULL"}));
    assert_eq!(get(&server, "/mode/b"), json!({"mode": "READONLY"}));
    assert_eq!(get(&server, "/subjects/a/versions?deleted=true"), json!([1, 2]));

    // Clients may not write or delete `_schemas` over the main HTTP API.
    let (status, answer) = server.delete("/v1/topics/_schemas");
    assert_eq!(status, 403, "{answer}");
    let (status, answer) =
        server.post("/v1/topics/_schemas/streams/k", &json!({"events": [{"type": "x", "data": {}}]}));
    assert_eq!(status, 403, "{answer}");
    let (_, topics) = server.get("/v1/topics");
    assert!(!topics.to_string().contains("_schemas"), "internal topics are hidden by default: {topics}");
    assert_eq!(snapshot(&server), before);
}

#[test]
fn the_registry_listener_can_be_disabled() {
    let tmp = tempfile::tempdir().expect("tmp");
    let data = tmp.path().join("data");
    let data = data.to_str().expect("utf-8");
    let server = Server::launch(
        tmp.path(),
        &["serve", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--registry-addr", "none"],
        &[],
    )
    .unwrap_or_else(|e| panic!("serve exited: {}", e.stderr));
    assert_eq!(server.registry_addr, None);
    assert!(server.stdout().contains("evident: schema registry disabled"), "{}", server.stdout());
    let bad = Server::launch(
        tmp.path(),
        &["serve", "--data-dir", data, "--http-addr", "127.0.0.1:0", "--registry-addr", "nowhere"],
        &[],
    );
    drop(server);
    let Err(exited) = bad else { panic!("an invalid --registry-addr was accepted") };
    assert!(exited.stderr.contains("registry_addr"), "{}", exited.stderr);
}

/// `?verify=stored` (issue 13, "beyond the anchors"): a schema the rules accept, tried on the
/// events actually stored, is refused for the one event it cannot read, named by position.
#[test]
fn verify_stored_finds_the_stored_event_a_rule_compatible_schema_cannot_read() {
    let server = Server::start();
    server.post_expect("/v1/topics", &json!({"name": "ledger", "partitions": 1}), 201);
    // Appended before any schema was registered (the topic does not validate): the second event
    // already holds a `note`, as a number.
    server.post_expect(
        "/v1/topics/ledger/streams/acct-1",
        &json!({"events": [
            {"type": "Deposited", "data": {"amount": 5}},
            {"type": "Deposited", "data": {"amount": 7, "note": 12}},
        ]}),
        201,
    );
    let schema = |extra: &str| {
        json!({
            "schemaType": "JSON",
            "schema": format!(
                r#"{{"type":"object","properties":{{"amount":{{"type":"number"}}{extra}}},"required":["amount"],"additionalProperties":false}}"#
            ),
        })
        .to_string()
    };
    let v1 = schema("");
    call(&server, "POST", "/subjects/ledger-Deposited/versions", Some(&v1), 200);
    // v2 adds an optional string `note` to a closed content model: BACKWARD by the rules.
    let v2 = schema(r#","note":{"type":"string"}"#);
    let by_rules = call(&server, "POST", "/compatibility/subjects/ledger-Deposited/versions/latest", Some(&v2), 200);
    assert_eq!(by_rules, json!({"is_compatible": true}));
    let path = "/compatibility/subjects/ledger-Deposited/versions/latest?verify=stored&verbose=true";
    let verified = call(&server, "POST", path, Some(&v2), 200);
    assert_eq!(verified["is_compatible"], json!(false), "{verified}");
    let messages = verified["messages"].as_array().expect("messages");
    assert_eq!(messages.len(), 1, "only the second event is unreadable: {verified}");
    let message = messages[0].as_str().expect("text");
    assert!(message.contains("ledger/0@1") && message.contains("note"), "{message}");
    // Registering with the check refuses (409, nothing stored); without it the rules admit it.
    let refused = error(&server, "POST", "/subjects/ledger-Deposited/versions?verify=stored", Some(&v2), 409, 409);
    assert!(refused.contains("ledger/0@1"), "{refused}");
    assert_eq!(get(&server, "/subjects/ledger-Deposited/versions"), json!([1]));
    // A candidate that reads every stored event passes the same check.
    let v2_ok = schema(r#","note":{"type":["string","number"]}"#);
    let fine = call(&server, "POST", path, Some(&v2_ok), 200);
    assert_eq!(fine["is_compatible"], json!(true), "{fine}");
}
