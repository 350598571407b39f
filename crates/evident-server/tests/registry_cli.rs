//! `evident schemas` against a real schema registry: every subcommand (list, get, register,
//! check, delete, config), their `--json` documents, the registry's refusals printed with
//! Confluent's `error_code`, and one exit code per kind of failure (1 refused or incompatible,
//! 2 usage, 3 unreachable).
//!
//! Method: the registry is the one the real binary serves (`evident serve`, its
//! `--registry-addr` listener), reached only through the CLI. With `EVIDENT_TEST_REGISTRY_URL`
//! set, the same test runs against another Confluent-compatible registry instead (Apicurio's
//! `/apis/ccompat/v7`, see scripts/registry-ref.sh), which is how the CLI's expectations were
//! checked against a reference; subjects get a per-run suffix so such a shared registry can be
//! reused.

mod common;

use std::io::Write as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Stdio;

use common::Server;
use serde_json::Value;

/// A registry to test against, and the server serving it (None for an external one).
struct Registry {
    url: String,
    _server: Option<Server>,
    files: tempfile::TempDir,
    suffix: String,
}

impl Registry {
    fn start() -> Registry {
        let files = tempfile::tempdir().expect("tempdir");
        let suffix = format!("{:08x}", rand::random::<u32>());
        if let Ok(url) = std::env::var("EVIDENT_TEST_REGISTRY_URL") {
            return Registry { url, _server: None, files, suffix };
        }
        let server = Server::start();
        let url = server.registry_url("");
        Registry { url, _server: Some(server), files, suffix }
    }

    /// A subject name unique to this run.
    fn subject(&self, name: &str) -> String {
        format!("{name}-{}", self.suffix)
    }

    /// Writes a schema file and returns its path.
    fn file(&self, name: &str, text: &str) -> PathBuf {
        let path = self.files.path().join(name);
        std::fs::write(&path, text).expect("write schema");
        path
    }

    /// Runs `evident schemas ARGS --registry URL`: (exit code, stdout, stderr).
    fn run(&self, args: &[&str]) -> (i32, String, String) {
        run_evident(&[&["schemas"], args, &["--registry", &self.url]].concat(), None)
    }

    /// Runs the CLI, which must succeed; returns stdout.
    fn ok(&self, args: &[&str]) -> String {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 0, "evident schemas {}\n--- stdout\n{out}\n--- stderr\n{err}", args.join(" "));
        out
    }

    /// Runs the CLI with `--json`, which must succeed and print one JSON document.
    fn ok_json(&self, args: &[&str]) -> Value {
        let out = self.ok(&[args, &["--json"]].concat());
        serde_json::from_str(&out).unwrap_or_else(|e| panic!("{args:?}: not one JSON document ({e}):\n{out}"))
    }

    /// Runs the CLI, which must be refused by the registry with `error_code` and one of
    /// `statuses`: exit 1, the code in the message, and under `--json` the error document on
    /// stderr.
    fn refused(&self, args: &[&str], error_code: i64, statuses: &[u16]) {
        let (code, out, err) = self.run(args);
        assert_eq!(code, 1, "{args:?} should be refused\n--- stdout\n{out}\n--- stderr\n{err}");
        assert!(err.contains(&format!("error_code {error_code}")), "{args:?}: {err}");
        let (code, out, err) = self.run(&[args, &["--json"]].concat());
        assert_eq!((code, out.as_str()), (1, ""), "{args:?} --json\n--- stderr\n{err}");
        let document: Value = serde_json::from_str(err.trim()).unwrap_or_else(|e| panic!("{args:?}: {e}: {err}"));
        assert_eq!(document["error"]["code"], "registry", "{document}");
        assert_eq!(document["error"]["error_code"], error_code, "{document}");
        let status = document["error"]["status"].as_u64().and_then(|s| u16::try_from(s).ok());
        assert!(status.is_some_and(|s| statuses.contains(&s)), "{document}");
        assert!(document["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{document}");
    }
}

/// Runs `evident` with exactly `args` (and `stdin` when given).
fn run_evident(args: &[&str], stdin: Option<&str>) -> (i32, String, String) {
    let mut command = common::command(&std::env::temp_dir());
    command.args(args).stdin(Stdio::piped()).stdout(Stdio::piped()).stderr(Stdio::piped());
    let mut child = command.spawn().expect("spawn evident");
    let mut input = child.stdin.take().expect("stdin");
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).expect("write stdin");
    }
    drop(input);
    let out = child.wait_with_output().expect("run evident");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

const ORDER_V1: &str = r#"{"type":"record","name":"OrderPlaced","namespace":"shop",
  "fields":[{"name":"order_id","type":"string"},{"name":"amount","type":"int"}]}"#;
/// v1 plus a field with a default: backward compatible.
const ORDER_V2: &str = r#"{"type":"record","name":"OrderPlaced","namespace":"shop",
  "fields":[{"name":"order_id","type":"string"},{"name":"amount","type":"int"},
            {"name":"currency","type":"string","default":"EUR"}]}"#;
/// v1 with a field added without a default: not backward compatible (old data lacks it).
const ORDER_BREAKING: &str = r#"{"type":"record","name":"OrderPlaced","namespace":"shop",
  "fields":[{"name":"order_id","type":"string"},{"name":"amount","type":"int"},
            {"name":"customer","type":"string"}]}"#;

/// The row of `subject` in `list --json`.
fn listed(list: &Value, subject: &str) -> Option<Value> {
    list.as_array().expect("a list").iter().find(|row| row["subject"] == subject).cloned()
}

#[test]
fn every_subcommand_against_a_real_registry() {
    let registry = Registry::start();
    let orders = registry.subject("orders-value");
    let v1 = registry.file("order-v1.avsc", ORDER_V1);
    let v2 = registry.file("order-v2.avsc", ORDER_V2);
    let breaking = registry.file("order-breaking.avsc", ORDER_BREAKING);
    let path = |p: &Path| p.to_str().expect("utf-8").to_owned();

    // register: a first version, then the same schema again is the same version and id.
    let out = registry.ok(&["register", &orders, &path(&v1)]);
    assert!(out.starts_with(&format!("Registered {orders} version 1 (schema id ")), "{out}");
    let first = registry.ok_json(&["register", &orders, &path(&v1)]);
    assert_eq!((&first["subject"], &first["version"]), (&Value::from(orders.as_str()), &Value::from(1)));
    let id_v1 = first["id"].as_i64().expect("an id");

    // config: set the subject's level, read it back; the global level reads too.
    let out = registry.ok(&["config", &orders, "--set", "backward"]);
    assert_eq!(out.trim(), format!("Compatibility of subject {orders} set to BACKWARD."));
    assert_eq!(registry.ok(&["config", &orders]).trim(), "BACKWARD");
    assert_eq!(registry.ok_json(&["config", &orders])["compatibilityLevel"], "BACKWARD");
    let global = registry.ok_json(&["config"]);
    assert!(global["compatibilityLevel"].is_string(), "{global}");

    // check: compatible (exit 0), incompatible (exit 1, with --json the registry's verdict).
    let out = registry.ok(&["check", &orders, &path(&v2)]);
    assert_eq!(out.trim(), format!("Compatible with {orders} version latest."));
    assert_eq!(registry.ok_json(&["check", &orders, &path(&v2), "--version", "1"])["is_compatible"], true);
    let (code, out, err) = registry.run(&["check", &orders, &path(&breaking), "--verbose"]);
    assert_eq!(code, 1, "{out}\n{err}");
    assert!(out.starts_with(&format!("Not compatible with {orders} version latest.")), "{out}");
    let (code, out, _) = registry.run(&["check", &orders, &path(&breaking), "--json"]);
    assert_eq!(code, 1);
    let verdict: Value = serde_json::from_str(&out).expect("json verdict");
    assert_eq!(verdict["is_compatible"], false, "{verdict}");

    // register: an incompatible schema is refused (409) and changes nothing.
    registry.refused(&["register", &orders, &path(&breaking)], 409, &[409]);
    let v2_registered = registry.ok_json(&["register", &orders, &path(&v2)]);
    assert_eq!(v2_registered["version"], 2, "{v2_registered}");
    let id_v2 = v2_registered["id"].as_i64().expect("an id");
    assert_ne!(id_v1, id_v2);

    // register: JSON Schema and Protobuf, by extension and by --type, and from stdin.
    let events = registry.subject("orders-OrderShipped");
    let json_schema = registry.file(
        "shipped.json",
        r#"{"$schema":"http://json-schema.org/draft-07/schema#","type":"object",
            "properties":{"carrier":{"type":"string"}},"required":["carrier"]}"#,
    );
    assert_eq!(registry.ok_json(&["register", &events, &path(&json_schema)])["version"], 1);
    let proto_subject = registry.subject("payments-value");
    let proto = registry.file(
        "payment.txt",
        "syntax = \"proto3\";\npackage shop;\nmessage Payment { string id = 1; int64 cents = 2; }\n",
    );
    assert_eq!(registry.ok_json(&["register", &proto_subject, &path(&proto), "--type", "protobuf"])["version"], 1);
    let stdin_subject = registry.subject("stdin-value");
    let (code, out, err) = run_evident(
        &["schemas", "register", &stdin_subject, "-", "--json", "--registry", &registry.url],
        Some(r#"{"type":"string"}"#),
    );
    assert_eq!(code, 0, "{out}\n{err}");
    assert_eq!(serde_json::from_str::<Value>(&out).expect("json")["version"], 1);

    // register with a reference: a record that uses a type registered under another subject.
    let money = registry.subject("money");
    let money_file = registry.file(
        "money.avsc",
        r#"{"type":"record","name":"Money","namespace":"shop","fields":[{"name":"cents","type":"long"}]}"#,
    );
    registry.ok(&["register", &money, &path(&money_file)]);
    let refund = registry.file(
        "refund.avsc",
        r#"{"type":"record","name":"Refunded","namespace":"shop","fields":[{"name":"amount","type":"shop.Money"}]}"#,
    );
    let refunds = registry.subject("refunds-value");
    let reference = format!("shop.Money={money}:1");
    registry.ok(&["register", &refunds, &path(&refund), "--reference", &reference, "--normalize"]);
    let with_reference = registry.ok_json(&["get", &refunds]);
    assert_eq!(with_reference["references"][0]["subject"], money.as_str(), "{with_reference}");
    assert!(registry.ok(&["get", &refunds]).contains(&format!("reference  shop.Money = {money} version 1")));

    // list: each subject with its latest version, id and format.
    let list = registry.ok_json(&["list"]);
    let row = listed(&list, &orders).unwrap_or_else(|| panic!("{orders} not in {list}"));
    assert_eq!((&row["version"], &row["id"], &row["schemaType"]), (&2.into(), &id_v2.into(), &"AVRO".into()));
    assert_eq!(listed(&list, &events).expect("json subject")["schemaType"], "JSON");
    assert_eq!(listed(&list, &proto_subject).expect("protobuf subject")["schemaType"], "PROTOBUF");
    let table = registry.ok(&["list"]);
    assert!(table.starts_with("SUBJECT"), "{table}");
    let line = table.lines().find(|l| l.starts_with(&orders)).expect("a row");
    assert_eq!(line.split_whitespace().collect::<Vec<_>>(), [orders.as_str(), "2", &id_v2.to_string(), "AVRO"]);

    // get: latest, a version, by id (with where it is registered).
    let latest = registry.ok_json(&["get", &orders]);
    assert_eq!((&latest["version"], &latest["id"]), (&2.into(), &id_v2.into()));
    assert_eq!(registry.ok_json(&["get", &orders, "1"])["id"], id_v1);
    let text = registry.ok(&["get", &orders, "latest"]);
    assert!(text.contains("\"name\": \"currency\""), "pretty-printed schema:\n{text}");
    let by_id = registry.ok_json(&["get", "--id", &id_v2.to_string()]);
    let schema: Value = serde_json::from_str(by_id["schema"].as_str().expect("schema")).expect("avro json");
    assert_eq!(schema["fields"][2]["name"], "currency");
    let text = registry.ok(&["get", "--id", &id_v2.to_string()]);
    assert!(text.contains(&format!("registered  {orders} version 2")), "{text}");

    // Refusals, each with Confluent's code.
    registry.refused(&["get", &registry.subject("nobody")], 40401, &[404]);
    registry.refused(&["get", &orders, "99"], 40402, &[404]);
    registry.refused(&["get", "--id", "987654"], 40403, &[404]);
    registry.refused(&["config", &orders, "--set", "SIDEWAYS"], 42203, &[422]);
    let invalid = registry.file("invalid.avsc", r#"{"type":"record","name":"X","fields":[{"name":"a"}]}"#);
    registry.refused(&["register", &registry.subject("invalid-value"), &path(&invalid)], 42201, &[422]);

    // delete: a permanent delete needs a soft one first; then the subject is listed only with
    // --deleted, and a permanent delete removes it.
    // (Confluent answers 404, Apicurio 409: the code is what clients match.)
    registry.refused(&["delete", &orders, "1", "--permanent"], 40407, &[404, 409]);
    assert_eq!(registry.ok(&["delete", &orders, "1"]).trim(), format!("Deleted {orders} version 1 (soft-deleted)."));
    assert_eq!(registry.ok_json(&["delete", &orders]), serde_json::json!([2]));
    assert!(listed(&registry.ok_json(&["list"]), &orders).is_none());
    let row = listed(&registry.ok_json(&["list", "--deleted"]), &orders).expect("listed with --deleted");
    assert_eq!(row["deleted"], true, "{row}");
    let out = registry.ok(&["delete", &orders, "--permanent"]);
    assert!(out.contains("permanently"), "{out}");
    assert!(listed(&registry.ok_json(&["list", "--deleted"]), &orders).is_none());
    registry.refused(&["get", &orders], 40401, &[404]);
}

#[test]
fn usage_and_unreachable_registries_have_their_own_exit_codes() {
    // Nothing listens on a port just freed.
    let port = TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let nowhere = format!("127.0.0.1:{port}");
    let (code, out, err) = run_evident(&["schemas", "list", "--registry", &nowhere], None);
    assert_eq!((code, out.as_str()), (3, ""), "{err}");
    assert!(err.contains("cannot connect to the schema registry"), "{err}");
    let (code, _, err) = run_evident(&["--json", "schemas", "list", "--registry", &nowhere], None);
    assert_eq!(code, 3);
    let document: Value = serde_json::from_str(err.trim()).expect("json error");
    assert_eq!(document["error"]["code"], "unreachable");
    // The environment names the registry when --registry does not.
    let mut command = common::command(&std::env::temp_dir());
    let out = command.args(["schemas", "config"]).env("EVIDENT_REGISTRY_URL", &nowhere).output().expect("run");
    assert_eq!(out.status.code(), Some(3));
    assert!(String::from_utf8_lossy(&out.stderr).contains(&nowhere));

    for args in [
        &["schemas", "list", "--registry", "https://registry.example"][..],
        &["schemas", "get"],
        &["schemas", "get", "s", "zero"],
        &["schemas", "register", "s", "/nonexistent/schema.avsc", "--registry", &nowhere],
        &["schemas", "register", "s", "f.avsc", "--reference", "no-version", "--registry", &nowhere],
        &["schemas", "config", "--delete"],
    ] {
        let (code, out, err) = run_evident(args, None);
        assert_eq!((code, out.as_str()), (2, ""), "{args:?}: {err}");
        assert!(!err.is_empty(), "{args:?}");
    }
}
