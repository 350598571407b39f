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
//!
//! The same settings set over HTTP instead (`POST /v1/topics` with `value_schema_validation`)
//! take effect on HTTP appends and are what Kafka's DescribeConfigs reports, and settings
//! changed over Kafka (AlterConfigs) are what `GET /v1/topics/{topic}` shows. That test talks
//! Kafka with librdkafka's AdminClient through the `rdkafka` crate, so it needs no Python and
//! never skips.

mod common;

use std::process::Command;
use std::time::Duration;

use common::{kafka_python, kafka_scripts, run_with_limit, Server, PATIENCE};
use rdkafka::admin::{AdminClient, AdminOptions, AlterConfig, ResourceSpecifier};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
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

/// A topic's configs as Kafka's DescribeConfigs gives them: (name, value, is the default).
fn describe_configs(admin: &AdminClient<DefaultClientContext>, topic: &str) -> Vec<(String, String, bool)> {
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let options = AdminOptions::new().request_timeout(Some(PATIENCE));
    let results = runtime.block_on(admin.describe_configs(&[ResourceSpecifier::Topic(topic)], &options));
    let resource = results.expect("DescribeConfigs").remove(0).expect("the topic's configs");
    resource.entries.into_iter().map(|e| (e.name, e.value.unwrap_or_default(), e.is_default)).collect()
}

/// The value of one described config.
fn config<'a>(described: &'a [(String, String, bool)], name: &str) -> (&'a str, bool) {
    let (_, value, is_default) =
        described.iter().find(|(n, _, _)| n == name).unwrap_or_else(|| panic!("{name} in {described:?}"));
    (value, *is_default)
}

#[test]
fn validation_turned_on_over_http_is_enforced_and_is_kafkas_config() {
    let server = Server::start();
    let (status, created) =
        server.post("/v1/topics", &json!({"name": "ledger", "config": {"value_schema_validation": true}}));
    assert_eq!(status, 201, "{created}");
    assert_eq!(created["config"]["value_schema_validation"], true, "{created}");
    assert_eq!(created["config"]["key_schema_validation"], false, "{created}");
    assert_eq!(created["config"]["value_subject_name_strategy"], Value::Null, "{created}");
    assert_eq!(created["warnings"], json!([]), "{created}");
    let described = server.get_ok("/v1/topics/ledger");
    assert_eq!(described["config"], created["config"], "{described}");

    // The strategy is not set: HTTP appends take the event-type subject, <topic>-<type>.
    let deposit_id = register(&server, "ledger-MoneyDeposited", DEPOSIT);
    let (status, body) = server.post(
        "/v1/topics/ledger/streams/acct-1",
        &json!({"events": [{"type": "MoneyDeposited", "data": {"amount": "five"}}]}),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["code"], "schema_violation", "{body}");
    assert_eq!(body["error"]["subject"], "ledger-MoneyDeposited", "{body}");
    assert_eq!(body["error"]["path"], "/amount", "{body}");
    assert_eq!(body["error"]["event_index"], 0, "{body}");
    let (status, body) = server.get("/v1/topics/ledger/streams/acct-1");
    assert_eq!(status, 404, "nothing of the refused append was stored: {body}");
    assert_eq!(server.get_ok("/v1/topics/ledger")["records"], 0);

    let (status, body) = server.post(
        "/v1/topics/ledger/streams/acct-1",
        &json!({"events": [{"type": "MoneyDeposited", "data": {"amount": 5}}]}),
    );
    assert_eq!(status, 201, "{body}");
    let stream = server.get_ok("/v1/topics/ledger/streams/acct-1");
    let events = stream["events"].as_array().expect("events");
    assert_eq!(events.len(), 1, "{stream}");
    assert_eq!(events[0]["data"], json!({"amount": 5}), "{stream}");
    assert_eq!(events[0]["headers"]["evident-schema-id"], deposit_id.to_string(), "{stream}");

    // A strategy set over HTTP is the one validation uses: TopicNameStrategy's <topic>-value.
    let (status, body) = server.post(
        "/v1/topics",
        &json!({"name": "orders", "config": {
            "value_schema_validation": true, "value_subject_name_strategy": "TopicNameStrategy"}}),
    );
    assert_eq!(status, 201, "{body}");
    register(&server, "orders-value", ORDER);
    let (status, body) = server.post(
        "/v1/topics/orders/streams/order-1",
        &json!({"events": [{"type": "OrderPlaced", "data": {"order_id": "o-1"}}]}),
    );
    assert_eq!(status, 422, "{body}");
    assert_eq!(body["error"]["subject"], "orders-value", "{body}");
    let (status, body) = server.post(
        "/v1/topics/orders/streams/order-1",
        &json!({"events": [{"type": "OrderPlaced", "data": {"order_id": "o-1", "amount": 3}}]}),
    );
    assert_eq!(status, 201, "{body}");

    // Kafka sees what HTTP set.
    let admin: AdminClient<DefaultClientContext> =
        ClientConfig::new().set("bootstrap.servers", server.kafka_bootstrap()).create().expect("admin client");
    let ledger = describe_configs(&admin, "ledger");
    assert_eq!(config(&ledger, "confluent.value.schema.validation"), ("true", false), "{ledger:?}");
    assert_eq!(config(&ledger, "confluent.key.schema.validation"), ("false", true), "{ledger:?}");
    assert_eq!(
        config(&ledger, "confluent.value.subject.name.strategy"),
        ("io.confluent.kafka.serializers.subject.TopicNameStrategy", true),
        "not set: Kafka produce's default {ledger:?}"
    );
    let orders = describe_configs(&admin, "orders");
    assert_eq!(
        config(&orders, "confluent.value.subject.name.strategy"),
        ("io.confluent.kafka.serializers.subject.TopicNameStrategy", false),
        "set over HTTP: {orders:?}"
    );

    // And HTTP shows what Kafka changed: AlterConfigs replaces the topic's whole configuration.
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime");
    let change = AlterConfig::new(ResourceSpecifier::Topic("ledger"))
        .set("confluent.value.schema.validation", "true")
        .set("confluent.key.schema.validation", "true")
        .set("confluent.value.subject.name.strategy", "io.confluent.kafka.serializers.subject.RecordNameStrategy")
        .set("confluent.key.subject.name.strategy", "TopicRecordNameStrategy");
    let altered = runtime
        .block_on(admin.alter_configs(&[change], &AdminOptions::new().request_timeout(Some(PATIENCE))))
        .expect("AlterConfigs");
    assert!(altered.iter().all(Result::is_ok), "{altered:?}");
    let shown = server.get_ok("/v1/topics/ledger")["config"].clone();
    assert_eq!(shown["value_schema_validation"], true, "{shown}");
    assert_eq!(shown["key_schema_validation"], true, "{shown}");
    assert_eq!(shown["value_subject_name_strategy"], "RecordNameStrategy", "{shown}");
    assert_eq!(shown["key_subject_name_strategy"], "TopicRecordNameStrategy", "{shown}");
}
