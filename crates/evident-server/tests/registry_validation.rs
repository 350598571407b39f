//! Schema validation at the store, against the real binary: a JSON Schema registered over the
//! registry's REST API, topics created by confluent-kafka's AdminClient with
//! `confluent.value.schema.validation=true`, records produced by confluent-kafka (librdkafka)
//! and events appended over HTTP. A batch with one invalid record is refused whole with
//! INVALID_RECORD and nothing of it is stored; an HTTP append with an invalid event is refused
//! with 422 `schema_violation` and the failing path; accepted events carry `evident-schema-id`;
//! the topic's validation survives a kill -9.
//!
//! The Python client comes from `scripts/kafka-clients-setup.sh` (`EVIDENT_TEST_PYTHON`);
//! without it the test prints a skip line and passes, as the other client tests do.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{kafka_python, kafka_scripts, run_with_limit, Server};
use serde_json::{json, Value};

const ORDER: &str = r#"{"type":"object","properties":{"order_id":{"type":"string"},"amount":{"type":"number"}},"required":["order_id","amount"]}"#;
const DEPOSIT: &str =
    r#"{"type":"object","properties":{"amount":{"type":"integer","minimum":1}},"required":["amount"]}"#;

/// Registers a JSON Schema under `subject` over the registry's REST API; its id.
fn register(server: &Server, subject: &str, schema: &str) -> i64 {
    let response = reqwest::blocking::Client::new()
        .post(server.registry_url(&format!("/subjects/{subject}/versions")))
        .header("content-type", "application/vnd.schemaregistry.v1+json")
        .body(json!({"schemaType": "JSON", "schema": schema}).to_string())
        .send()
        .expect("register");
    let status = response.status().as_u16();
    let body: Value = response.json().expect("json");
    assert_eq!(status, 200, "{body}");
    body["id"].as_i64().expect("id")
}

#[test]
fn produce_and_append_are_validated_against_registered_schemas() {
    let Some(python) = kafka_python("produce_and_append_are_validated_against_registered_schemas") else { return };
    let mut server = Server::start();
    let order_id = register(&server, "orders-value", ORDER);
    let deposit_id = register(&server, "bank-MoneyDeposited", DEPOSIT);

    let dir = kafka_scripts();
    let mut cmd = Command::new(&python);
    cmd.current_dir(&dir)
        .arg(dir.join("registry_validation.py"))
        .args([server.kafka_bootstrap(), "orders".into(), order_id.to_string(), "bank".into()])
        .env("PYTHONDONTWRITEBYTECODE", "1");
    let run = run_with_limit(&mut cmd, None, Duration::from_secs(120));
    assert_eq!(run.code, Some(0), "{}\n{}\n--- server\n{}", run.stdout, run.stderr, server.stderr());
    let result = run.json();
    println!("{result}");

    assert_eq!(result["configs"]["confluent.value.schema.validation"], "true", "{result}");
    assert_eq!(
        result["configs"]["confluent.value.subject.name.strategy"],
        "io.confluent.kafka.serializers.subject.TopicNameStrategy"
    );
    // The valid record shared its batch with the invalid one: both refused.
    for outcome in result["mixed"].as_array().expect("mixed") {
        assert_eq!(outcome["error"], "INVALID_RECORD", "{result}");
    }
    assert_eq!(result["unframed"][0]["error"], "INVALID_RECORD", "{result}");
    // Only the lone valid record is stored, at offset 0: nothing of the refused batches was.
    assert_eq!(result["good"][0]["offset"], 0, "{result}");
    let stored = server.get_ok("/v1/topics/orders/partitions/0/records?offset=0");
    println!("{stored}");
    let refused = server.stderr();
    assert!(
        refused.contains("orders-value") && refused.contains("/amount"),
        "the refusal names the subject and the failing path:\n{refused}"
    );

    // HTTP: the event-type subject bank-MoneyDeposited.
    let (status, body) = server.post(
        "/v1/topics/bank/streams/acct-1",
        &json!({"events": [{"type": "MoneyDeposited", "data": {"amount": 5}}]}),
    );
    assert_eq!(status, 201, "{body}");
    let (status, body) = server.post(
        "/v1/topics/bank/streams/acct-1",
        &json!({"events": [
            {"type": "MoneyDeposited", "data": {"amount": 6}},
            {"type": "MoneyDeposited", "data": {"amount": "seven"}}
        ]}),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "schema_violation", "{body}");
    assert_eq!(body["error"]["path"], "/amount", "{body}");
    assert_eq!(body["error"]["subject"], "bank-MoneyDeposited", "{body}");
    assert_eq!(body["error"]["event_index"], 1, "{body}");
    let (status, body) = server.post(
        "/v1/topics/bank/streams/acct-1",
        &json!({"events": [{"type": "MoneyWithdrawn", "data": {"amount": 1}}]}),
    );
    assert_eq!(status, 422, "no schema for the type: {body}");
    // A client cannot forge the schema id header.
    let (status, body) = server.post(
        "/v1/topics/bank/streams/acct-1",
        &json!({"events": [{"type": "MoneyDeposited", "data": {"amount": 5}, "headers": {"evident-schema-id": "1"}}]}),
    );
    assert_eq!(status, 400, "{body}");
    let stream = server.get_ok("/v1/topics/bank/streams/acct-1");
    let events = stream["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "nothing of the refused appends was stored: {stream}");
    assert_eq!(events[0]["headers"]["evident-schema-id"], deposit_id.to_string(), "{stream}");

    // The topic's validation is in the catalog: after kill -9, still refused.
    let dir = server.dir.clone();
    server.kill9();
    let server = Server::start_in(&dir);
    let (status, body) = server.post(
        "/v1/topics/bank/streams/acct-1",
        &json!({"events": [{"type": "MoneyDeposited", "data": {"amount": 0}}]}),
    );
    assert_eq!(status, 422, "{body}");
    assert!(body["error"]["message"].as_str().unwrap_or_default().contains("minimum"), "{body}");
}
