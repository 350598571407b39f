//! End-to-end tests of the `evident` command-line client against a real `evident serve`: the
//! bank-account walkthrough through the CLI only, a version conflict, `tail` following a live
//! append, consumer-group offset resets, what happens without a server, and the first hour's
//! details: errors as JSON under `--json`, one exit code per kind of failure, `--help` listing
//! only commands that exist, `tail --from-end`, warnings for unenforced topic settings, and
//! schema validation turned on by `topics create` and shown by `topics describe`.

mod common;

use std::io::{BufRead, BufReader};
use std::process::Stdio;
use std::sync::mpsc;

use common::{balance, cli_at, next_millisecond, Server, PATIENCE};
use serde_json::{json, Value};

/// Runs the CLI, which must succeed; returns its stdout.
fn ok(server: &Server, args: &[&str]) -> String {
    let (code, out, err) = server.cli(args);
    assert_eq!(code, 0, "evident {}\n--- stdout\n{out}\n--- stderr\n{err}", args.join(" "));
    out
}

/// Runs the CLI with `--json`, which must succeed and print exactly one JSON document.
fn ok_json(server: &Server, args: &[&str]) -> Value {
    let mut with_json = args.to_vec();
    with_json.push("--json");
    let out = ok(server, &with_json);
    serde_json::from_str(&out)
        .unwrap_or_else(|e| panic!("evident {}: stdout is not one JSON document ({e}):\n{out}", args.join(" ")))
}

/// Runs `evident` with exactly `args` (no server option); returns exit code, stdout, stderr.
fn run_evident(args: &[&str]) -> (i32, String, String) {
    let out = common::command(&std::env::temp_dir()).args(args).output().expect("run evident");
    let text = |b: &[u8]| String::from_utf8_lossy(b).into_owned();
    (out.status.code().unwrap_or(-1), text(&out.stdout), text(&out.stderr))
}

/// The walkthrough: create `bank`, append four events to `acc-1` with expected versions.
fn walkthrough(server: &Server) {
    ok(server, &["topics", "create", "bank"]);
    let steps = [
        ("AccountCreated", r#"{"owner": "ada"}"#, "no_stream"),
        ("MoneyDeposited", r#"{"amount": 100}"#, "0"),
        ("MoneyWithdrawn", r#"{"amount": 30}"#, "1"),
        ("MoneyDeposited", r#"{"amount": 50}"#, "2"),
    ];
    for (event_type, data, expected) in steps {
        next_millisecond();
        ok(server, &["append", "bank", "acc-1", "--type", event_type, "--data", data, "--expected-version", expected]);
    }
}

fn versions(events: &Value) -> Vec<u64> {
    events.as_array().expect("array").iter().map(|e| e["version"].as_u64().expect("version")).collect()
}

/// The committed offset of `bank`/0 for `group`, read over HTTP.
fn committed(server: &Server, group: &str) -> Option<u64> {
    let body = server.get_ok(&format!("/v1/groups/{group}/offsets?topic=bank"));
    body["offsets"].as_array().expect("offsets").iter().find(|o| o["partition"] == 0).and_then(|o| o["offset"].as_u64())
}

#[test]
fn bank_walkthrough_through_the_cli() {
    let server = Server::start();
    walkthrough(&server);

    let events = ok_json(&server, &["read", "bank", "acc-1"]);
    let list = events.as_array().unwrap_or_else(|| panic!("read --json prints an array: {events}"));
    assert_eq!(versions(&events), [0, 1, 2, 3]);
    assert_eq!(balance(list), 120);
    let types: Vec<&str> = list.iter().map(|e| e["type"].as_str().expect("type")).collect();
    assert_eq!(types, ["AccountCreated", "MoneyDeposited", "MoneyWithdrawn", "MoneyDeposited"]);
    assert!(list.iter().all(|e| e["topic"] == "bank" && e["key"] == "acc-1"));

    // The same over HTTP: the CLI wrote what it said.
    let http = server.get_ok("/v1/topics/bank/streams/acc-1");
    assert_eq!(http["events"], events);

    // Other reads.
    let last = ok_json(&server, &["read", "bank", "acc-1", "--backward", "--limit", "1"]);
    assert_eq!(versions(&last), [3]);
    let as_of = ok_json(&server, &["read", "bank", "acc-1", "--as-of-version", "1"]);
    assert_eq!(balance(as_of.as_array().expect("array")), 100);
    let partition = ok_json(&server, &["read", "bank", "--partition", "0", "--offset", "2"]);
    let offsets: Vec<u64> =
        partition.as_array().expect("array").iter().map(|e| e["offset"].as_u64().expect("offset")).collect();
    assert_eq!(offsets, [2, 3]);
    let all = ok_json(&server, &["read", "--all"]);
    assert_eq!(all.as_array().expect("array").len(), 4);
    let human = ok(&server, &["read", "bank", "acc-1"]);
    assert!(human.contains("MoneyWithdrawn"), "{human}");

    let topics = ok_json(&server, &["topics", "list"]);
    let names: Vec<&str> =
        topics["topics"].as_array().expect("topics").iter().map(|t| t["name"].as_str().expect("name")).collect();
    assert_eq!(names, ["bank"]);
    let described = ok_json(&server, &["topics", "describe", "bank"]);
    assert_eq!(described["records"], 4);
    assert_eq!(described["streams"], 1);
}

#[test]
fn a_version_conflict_exits_1_and_appends_nothing() {
    let server = Server::start();
    walkthrough(&server);
    let (code, out, err) = server.cli(&[
        "append",
        "bank",
        "acc-1",
        "--type",
        "MoneyWithdrawn",
        "--data",
        r#"{"amount": 500}"#,
        "--expected-version",
        "0",
    ]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("wrong_expected_version"), "{err}");
    assert!(err.contains("expected 0, stream is at 3"), "{err}");
    let read = server.get_ok("/v1/topics/bank/streams/acc-1");
    assert_eq!(read["current_version"], 3);

    // A retry with the same --id appends once.
    let first =
        ok_json(&server, &["append", "bank", "acc-1", "--type", "MoneyDeposited", "--data", "5", "--id", "dep-9"]);
    let again =
        ok_json(&server, &["append", "bank", "acc-1", "--type", "MoneyDeposited", "--data", "5", "--id", "dep-9"]);
    assert_eq!(first["duplicate"], false, "{first}");
    assert_eq!(again["duplicate"], true, "{again}");
    assert_eq!(again["events"], first["events"]);
    assert_eq!(server.get_ok("/v1/topics/bank/streams/acc-1")["current_version"], 4);
}

#[test]
fn tail_prints_the_live_event_and_exits_at_its_limit() {
    let server = Server::start();
    walkthrough(&server);
    let mut child = common::command(&std::env::temp_dir())
        .args(["tail", "bank", "acc-1", "--limit", "5", "--json", "--server", &server.base()])
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn evident tail");
    let stdout = child.stdout.take().expect("stdout");
    let (tx, rx) = mpsc::channel();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let Ok(line) = line else { return };
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    let mut lines = Vec::new();
    let next = |lines: &mut Vec<Value>, child: &mut std::process::Child| {
        let line = rx.recv_timeout(PATIENCE).unwrap_or_else(|e| {
            let _ = child.kill();
            panic!("evident tail printed no line ({e}) after {lines:?}")
        });
        lines.push(serde_json::from_str::<Value>(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}")));
    };
    // The catch-up: the four existing events.
    for _ in 0..4 {
        next(&mut lines, &mut child);
    }
    assert_eq!(versions(&Value::Array(lines.clone())), [0, 1, 2, 3]);
    // A live append while tail waits.
    ok(
        &server,
        &[
            "append",
            "bank",
            "acc-1",
            "--type",
            "MoneyDeposited",
            "--data",
            r#"{"amount": 7}"#,
            "--expected-version",
            "3",
        ],
    );
    next(&mut lines, &mut child);
    assert_eq!(lines[4]["version"], 4);
    assert_eq!(lines[4]["data"], json!({"amount": 7}));
    let status = common::wait_exit(&mut child, "evident tail --limit 5");
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().expect("stderr"), &mut err).expect("stderr");
    assert_eq!(status.code(), Some(0), "stderr:\n{err}");
    reader.join().expect("reader");
    assert!(rx.try_recv().is_err(), "nothing after the limit");
}

#[test]
fn groups_reset_offsets_describe_and_delete() {
    let server = Server::start();
    walkthrough(&server);
    ok(&server, &["groups", "commit", "--group", "g", "--topic", "bank", "--partition", "0", "--offset", "3"]);
    assert_eq!(committed(&server, "g"), Some(3));

    // A dry run prints the plan and changes nothing.
    let plan = ok(&server, &["groups", "reset-offsets", "--group", "g", "--topic", "bank", "--to-earliest"]);
    assert!(plan.contains("NEW-OFFSET"), "{plan}");
    assert_eq!(committed(&server, "g"), Some(3));
    let plan = ok_json(&server, &["groups", "reset-offsets", "--group", "g", "--topic", "bank", "--to-earliest"]);
    assert_eq!(plan["executed"], false);
    assert_eq!(plan["offsets"][0]["new_offset"], 0);
    assert_eq!(plan["offsets"][0]["current_offset"], 3);
    assert_eq!(committed(&server, "g"), Some(3));

    let done =
        ok_json(&server, &["groups", "reset-offsets", "--group", "g", "--topic", "bank", "--to-earliest", "--execute"]);
    assert_eq!(done["executed"], true, "{done}");
    assert_eq!(committed(&server, "g"), Some(0));

    ok(&server, &["groups", "reset-offsets", "--group", "g", "--all-topics", "--to-latest", "--execute"]);
    assert_eq!(committed(&server, "g"), Some(4));

    ok(&server, &["groups", "reset-offsets", "--group", "g", "--topic", "bank", "--shift-by", "-1", "--execute"]);
    assert_eq!(committed(&server, "g"), Some(3));

    // The time of the record at offset 2, in Kafka's format (no zone: UTC).
    let records = server.get_ok("/v1/topics/bank/partitions/0/records")["records"].clone();
    let ts2 = records[2]["timestamp"].as_str().expect("timestamp").trim_end_matches('Z').to_string();
    ok(&server, &["groups", "reset-offsets", "--group", "g", "--topic", "bank", "--to-datetime", &ts2, "--execute"]);
    assert_eq!(committed(&server, "g"), Some(2));

    ok(
        &server,
        &["groups", "reset-offsets", "--group", "g", "--topic", "bank:0", "--by-duration", "PT1H", "--execute"],
    );
    assert_eq!(committed(&server, "g"), Some(0));

    ok(&server, &["groups", "reset-offsets", "--group", "g", "--topic", "bank", "--to-offset", "1", "--execute"]);
    assert_eq!(committed(&server, "g"), Some(1));

    let described = ok_json(&server, &["groups", "describe", "--group", "g"]);
    assert_eq!(described["group"], "g");
    let row = &described["offsets"][0];
    assert_eq!(row["topic"], "bank");
    assert_eq!(row["committed_offset"], 1, "{described}");
    assert_eq!(row["log_end_offset"], 4);
    assert_eq!(row["lag"], 3);
    assert_eq!(described["total_lag"], 3);
    let listed = ok_json(&server, &["groups", "list"]);
    assert_eq!(listed["groups"][0]["group"], "g", "{listed}");

    // Without a scope or a strategy the CLI refuses (usage error).
    let (code, _, err) = server.cli(&["groups", "reset-offsets", "--group", "g", "--to-earliest"]);
    assert_eq!(code, 2, "{err}");
    let (code, _, err) = server.cli(&["groups", "reset-offsets", "--group", "g", "--topic", "bank"]);
    assert_eq!(code, 2, "{err}");
    assert_eq!(committed(&server, "g"), Some(1));

    ok(&server, &["groups", "delete", "--group", "g"]);
    let (status, body) = server.get("/v1/groups/g");
    assert_eq!(status, 404, "{body}");
    let (code, out, err) = server.cli(&["groups", "describe", "--group", "g"]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("unknown_group"), "{err}");
}

#[test]
fn without_a_server_the_cli_exits_3_with_a_clear_message() {
    // A port that was free a moment ago; nothing listens there.
    let port = std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port();
    let url = format!("http://127.0.0.1:{port}");
    for args in [&["topics", "list"][..], &["read", "bank", "acc-1"], &["append", "bank", "acc-1", "--type", "A"]] {
        let (code, out, err) = cli_at(&url, args);
        assert_eq!(code, 3, "evident {args:?}\nstdout:\n{out}\nstderr:\n{err}");
        assert!(err.contains(&format!("127.0.0.1:{port}")), "names the address: {err}");
        assert!(err.contains("cannot connect"), "{err}");
        assert!(out.is_empty(), "nothing on stdout: {out}");
    }
    // Under --json the same failure is one JSON document on stderr.
    let (code, out, err) = cli_at(&url, &["topics", "list", "--json"]);
    assert_eq!(code, 3, "{err}");
    assert!(out.is_empty(), "{out}");
    let error: Value = serde_json::from_str(err.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {err}"));
    assert_eq!(error["error"]["code"], "unreachable", "{error}");
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("cannot connect")), "{error}");
}

/// Under `--json` a refusal is the server's error body on stderr, with its extra fields and the
/// HTTP status, and the exit code is 1; a usage error is exit code 2, as JSON too.
#[test]
fn errors_are_json_under_json_with_distinct_exit_codes() {
    let server = Server::start();
    walkthrough(&server);
    let (code, out, err) =
        server.cli(&["append", "bank", "acc-1", "--type", "MoneyWithdrawn", "--expected-version", "0", "--json"]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(out.is_empty(), "nothing on stdout: {out}");
    let error: Value = serde_json::from_str(err.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {err}"));
    assert_eq!(error["error"]["code"], "wrong_expected_version", "{error}");
    assert_eq!(error["error"]["current_version"], 3, "{error}");
    assert_eq!(error["error"]["status"], 409, "{error}");
    assert!(error["error"]["message"].as_str().is_some_and(|m| m.contains("expected 0")), "{error}");

    let (code, _, err) = server.cli(&["read", "nope", "acc-1", "--json"]);
    assert_eq!(code, 1, "{err}");
    let error: Value = serde_json::from_str(err.trim()).unwrap_or_else(|e| panic!("not JSON ({e}): {err}"));
    assert_eq!(
        (error["error"]["code"].as_str(), error["error"]["status"].as_u64()),
        (Some("unknown_topic"), Some(404))
    );

    // Usage errors: clap's (an unknown flag), and an argument no request can carry.
    for args in [&["topics", "list", "--no-such-flag", "--json"][..], &["read", "bank", "..", "--json"]] {
        let (code, out, err) = server.cli(args);
        assert_eq!(code, 2, "evident {args:?}\nstdout:\n{out}\nstderr:\n{err}");
        let error: Value =
            serde_json::from_str(err.trim()).unwrap_or_else(|e| panic!("{args:?}: not JSON ({e}): {err}"));
        assert_eq!(error["error"]["code"], "usage", "{error}");
    }
    // Without --json, a usage error is clap's text, still exit code 2.
    let (code, _, err) = server.cli(&["topics", "list", "--no-such-flag"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("--no-such-flag"), "{err}");
}

/// `--help` lists the commands that exist and says what the exit codes mean.
#[test]
fn help_lists_only_commands_that_exist() {
    let (code, out, err) = run_evident(&["--help"]);
    assert_eq!(code, 0, "{err}");
    let commands: Vec<&str> = out
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert_eq!(
        commands,
        ["serve", "topics", "append", "read", "tail", "groups", "dlq", "schemas", "sql", "help"],
        "{out}"
    );
    for command in &commands[..commands.len() - 1] {
        let (code, out, err) = run_evident(&[command, "--help"]);
        assert_eq!(code, 0, "evident {command} --help: {err}");
        assert!(out.contains("Usage: evident"), "{out}");
    }
    let (_, topics_help, _) = run_evident(&["topics", "--help"]);
    assert!(
        topics_help.contains("Exit codes: 0 success; 1 the server refused the request; 2 bad usage; 3"),
        "{topics_help}"
    );
    let (_, create_help, _) = run_evident(&["topics", "create", "--help"]);
    assert!(create_help.contains("Not enforced yet: retention"), "{create_help}");
}

/// Creating a topic with retention or compaction warns that they are not enforced yet.
#[test]
fn unenforced_topic_settings_warn() {
    let server = Server::start();
    let (code, out, err) = server.cli(&[
        "topics",
        "create",
        "kept",
        "--config",
        "retention_ms=1000",
        "--config",
        "cleanup_policy=compact",
    ]);
    assert_eq!(code, 0, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("warning: retention_ms is stored but not enforced yet"), "{err}");
    assert!(err.contains("warning: cleanup_policy compact is stored but not enforced yet"), "{err}");
    let (code, out, err) = server.cli(&["topics", "create", "plain"]);
    assert_eq!(code, 0, "{err}");
    assert!(!err.contains("warning"), "no warning without such settings: {err}\n{out}");
}

/// `topics create --config value_schema_validation=true` (or Kafka's spelling) turns validation
/// on, `topics describe` and `topics list` show it, and an append the schema refuses exits 1
/// naming the failing path, storing nothing.
#[test]
fn topics_create_turns_schema_validation_on() {
    let server = Server::start();
    ok(
        &server,
        &[
            "topics",
            "create",
            "bank",
            "--config",
            "confluent.value.schema.validation=true",
            "--config",
            "value_subject_name_strategy=io.confluent.kafka.serializers.subject.TopicNameStrategy",
        ],
    );
    let described = ok(&server, &["topics", "describe", "bank"]);
    for line in [
        "config.value_schema_validation      true",
        "config.key_schema_validation        false",
        "config.value_subject_name_strategy  TopicNameStrategy",
        "config.key_subject_name_strategy    -",
    ] {
        assert!(described.contains(line), "{line:?} in\n{described}");
    }
    let listed = ok(&server, &["topics", "list"]);
    assert!(listed.contains("value_schema_validation=true,value_subject_name_strategy=TopicNameStrategy"), "{listed}");
    let json = ok_json(&server, &["topics", "describe", "bank"]);
    assert_eq!(json["config"]["value_schema_validation"], true, "{json}");

    let schema = r#"{"type":"object","properties":{"amount":{"type":"integer"}},"required":["amount"]}"#;
    let body = json!({"schemaType": "JSON", "schema": schema}).to_string();
    let (status, _, registered) = server.registry_request("POST", "/subjects/bank-value/versions", Some(&body), None);
    assert_eq!(status, 200, "{registered}");
    let (code, out, err) =
        server.cli(&["append", "bank", "acc-1", "--type", "MoneyDeposited", "--data", r#"{"amount": "ten"}"#]);
    assert_eq!(code, 1, "stdout:\n{out}\nstderr:\n{err}");
    assert!(err.contains("schema_violation") && err.contains("/amount"), "{err}");
    assert_eq!(server.get_ok("/v1/topics/bank")["records"], 0);
    ok(&server, &["append", "bank", "acc-1", "--type", "MoneyDeposited", "--data", r#"{"amount": 10}"#]);
    assert_eq!(server.get_ok("/v1/topics/bank")["records"], 1);

    // A strategy the setting does not take is a usage error before any request.
    let (code, _, err) =
        server.cli(&["topics", "create", "keys", "--config", "key_subject_name_strategy=EventTypeNameStrategy"]);
    assert_eq!(code, 2, "{err}");
    assert!(err.contains("value subjects only"), "{err}");
}

/// `tail --from-end` prints only what is committed after it starts.
#[test]
fn tail_from_the_end_skips_what_exists() {
    let server = Server::start();
    walkthrough(&server);
    for target in [&["bank", "acc-1"][..], &["bank", "--partition", "0"], &["bank"], &[]] {
        let mut args = vec!["tail"];
        args.extend_from_slice(target);
        args.extend_from_slice(&["--from-end", "--limit", "1", "--json", "--server"]);
        let base = server.base();
        args.push(&base);
        let mut child = common::command(&std::env::temp_dir())
            .args(&args)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("spawn evident tail");
        let stdout = child.stdout.take().expect("stdout");
        let (tx, rx) = mpsc::channel();
        let reader = std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let _ = tx.send(line);
            }
        });
        // Append until tail prints: the first appends may land before it read the end, and
        // then it prints the first one after its start, which is still a new event.
        let current = server.get_ok("/v1/topics/bank/streams/acc-1")["current_version"].as_u64().expect("version");
        let mut printed = None;
        for n in 0..50u64 {
            let body = json!({"type": "MoneyDeposited", "data": {"amount": 1}});
            server.post_expect("/v1/topics/bank/streams/acc-1", &body, 201);
            if let Ok(line) = rx.recv_timeout(std::time::Duration::from_millis(200 * (n + 1))) {
                printed = Some(line);
                break;
            }
        }
        let line = printed.unwrap_or_else(|| {
            let _ = child.kill();
            panic!("evident {args:?} printed nothing")
        });
        let event: Value = serde_json::from_str(&line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(event["version"].as_u64().expect("version") > current, "{args:?} printed an old event: {event}");
        let status = common::wait_exit(&mut child, "evident tail --from-end --limit 1");
        assert_eq!(status.code(), Some(0));
        reader.join().expect("reader");
    }
}

#[test]
fn client_options_go_before_the_subcommand_or_in_the_environment() {
    let server = Server::start();
    ok(&server, &["topics", "create", "bank", "--partitions", "2"]);
    let run = |args: &[&str], env: Option<&str>| {
        let mut cmd = common::command(&std::env::temp_dir());
        cmd.args(args);
        if let Some(url) = env {
            cmd.env("EVIDENT_SERVER", url);
        }
        let out = cmd.output().expect("run evident");
        let stdout = String::from_utf8_lossy(&out.stdout).to_string();
        let stderr = String::from_utf8_lossy(&out.stderr).to_string();
        assert_eq!(out.status.code(), Some(0), "evident {args:?}\nstdout:\n{stdout}\nstderr:\n{stderr}");
        serde_json::from_str::<Value>(&stdout).unwrap_or_else(|e| panic!("not JSON ({e}): {stdout}"))
    };
    let base = server.base();
    let before = run(&["--server", &base, "--json", "topics", "list"], None);
    assert_eq!(before["topics"][0]["name"], "bank", "{before}");
    assert_eq!(before["topics"][0]["partitions"], 2);
    let from_env = run(&["topics", "list", "--json"], Some(&base));
    assert_eq!(from_env, before);
    // A flag wins over the environment.
    let flag_wins = run(&["topics", "list", "--json", "--server", &base], Some("http://127.0.0.1:1"));
    assert_eq!(flag_wins, before);
}
