//! Bad input over HTTP, as a table: every malformed, out-of-range, oversized or misdirected
//! request gets the documented status and error code in the API's error shape
//! `{"error": {"code", "message"}}`, and none of them changes stored data.

mod common;

use common::{assert_error, Server};
use serde_json::{json, Value};

/// One bad request and what it must answer.
struct Case {
    method: &'static str,
    path: String,
    body: Option<String>,
    status: u16,
    code: &'static str,
}

fn case(method: &'static str, path: impl Into<String>, body: Option<&str>, status: u16, code: &'static str) -> Case {
    Case { method, path: path.into(), body: body.map(str::to_string), status, code }
}

/// Everything a refused request could have changed.
fn snapshot(server: &Server) -> Vec<(String, Value)> {
    [
        "/v1/all?limit=10000",
        "/v1/topics?internal=true",
        "/v1/topics/t",
        "/v1/topics/__consumer_offsets",
        "/v1/topics/t/streams/acc-1",
        "/v1/groups",
        "/v1/groups/g/offsets",
        "/v1/groups/g",
    ]
    .iter()
    .map(|path| (path.to_string(), server.get_ok(path)))
    .collect()
}

#[test]
fn bad_requests_get_json_errors_and_change_nothing() {
    let server = Server::start_with(&["--http-body-max-bytes", "2048"]);
    server.create_topic("t", 2);
    server.append("t", "acc-1", &json!({"type": "AccountCreated", "id": "e-1", "data": {"owner": "ada"}}));
    server.append("t", "acc-1", &json!({"type": "MoneyDeposited", "data": {"amount": 100}}));
    server.post_expect("/v1/groups/g/offsets", &json!({"offsets": [{"topic": "t", "partition": 0, "offset": 0}]}), 200);
    let before = snapshot(&server);

    let stream = "/v1/topics/t/streams/acc-1";
    let one = r#"{"type": "A", "data": 1}"#;
    let big = format!(r#"{{"type": "A", "data": "{}"}}"#, "x".repeat(4096));
    let long_key = format!("/v1/topics/t/streams/{}", "k".repeat(4097));
    let long_topic = format!(r#"{{"name": "{}"}}"#, "n".repeat(250));
    let cases = vec![
        // Bodies that are not what the route takes.
        case("POST", stream, Some(r#"{"type": "A", "data":"#), 400, "malformed_json"),
        case("POST", stream, Some("not json at all"), 400, "malformed_json"),
        case("POST", stream, Some(r#"[{"type": "A"}]"#), 400, "malformed_json"),
        case("POST", stream, Some(""), 400, "malformed_json"),
        case("POST", stream, Some(r#"{"type": 7}"#), 400, "malformed_json"),
        case("POST", stream, Some(r#"{"type": "A", "colour": "red"}"#), 400, "malformed_json"),
        case("POST", stream, Some(r#"{"data": {"amount": 1}}"#), 400, "missing_field"),
        case("POST", stream, Some(r#"{"events": [{"type": "A"}, {"data": 1}]}"#), 400, "missing_field"),
        case("POST", stream, Some(r#"{"events": []}"#), 400, "invalid_event"),
        case("POST", "/v1/topics", Some(r#"{"partitions": 1}"#), 400, "missing_field"),
        case("POST", "/v1/topics", Some("[]"), 400, "malformed_json"),
        case(
            "POST",
            "/v1/groups/g/offsets",
            Some(r#"{"offsets": [{"topic": "t", "partition": 0}]}"#),
            400,
            "missing_field",
        ),
        case(
            "POST",
            "/v1/groups/g/offsets",
            Some(r#"{"offsets": [{"topic": "t", "partition": 0, "offset": -1}]}"#),
            400,
            "malformed_json",
        ),
        // Unknown topics, partitions and groups.
        case("POST", "/v1/topics/nope/streams/k", Some(one), 404, "unknown_topic"),
        case("GET", "/v1/topics/nope/streams/k", None, 404, "unknown_topic"),
        case("GET", "/v1/topics/nope", None, 404, "unknown_topic"),
        case("DELETE", "/v1/topics/nope", None, 404, "unknown_topic"),
        case("GET", "/v1/topics/nope/partitions/0/records", None, 404, "unknown_topic"),
        case("GET", "/v1/topics/t/partitions/2/records", None, 404, "unknown_partition"),
        case("GET", "/v1/topics/t/partitions/x/records", None, 400, "invalid_argument"),
        case("GET", "/v1/topics/t/streams/acc-9", None, 404, "stream_not_found"),
        case("GET", "/v1/groups/nobody", None, 404, "unknown_group"),
        case("DELETE", "/v1/groups/nobody", None, 404, "unknown_group"),
        // Versions, limits and query parameters out of range.
        case("GET", format!("{stream}?from_version=-1"), None, 400, "invalid_argument"),
        case("GET", format!("{stream}?from_version=abc"), None, 400, "invalid_argument"),
        case("GET", format!("{stream}?as_of_version=-3"), None, 400, "invalid_argument"),
        case("GET", format!("{stream}?as_of_time=yesterday"), None, 400, "invalid_argument"),
        case("GET", format!("{stream}?direction=sideways"), None, 400, "invalid_argument"),
        case("POST", stream, Some(r#"{"expected_version": -1, "events": [{"type": "A"}]}"#), 400, "invalid_argument"),
        case(
            "POST",
            stream,
            Some(r#"{"expected_version": "soon", "events": [{"type": "A"}]}"#),
            400,
            "invalid_argument",
        ),
        case("POST", stream, Some(r#"{"expected_version": 1.5, "events": [{"type": "A"}]}"#), 400, "invalid_argument"),
        case("POST", format!("{stream}?expected_version=soon"), Some(one), 400, "invalid_argument"),
        case("POST", format!("{stream}?expected_version=-1"), Some(one), 400, "invalid_argument"),
        case("GET", format!("{stream}?limit=0"), None, 400, "invalid_argument"),
        case("GET", format!("{stream}?limit=10001"), None, 400, "invalid_argument"),
        case("GET", "/v1/all?limit=0", None, 400, "invalid_argument"),
        case("GET", "/v1/all?limit=10001", None, 400, "invalid_argument"),
        case("GET", "/v1/all?from_sequence=-1", None, 400, "invalid_argument"),
        case("GET", "/v1/topics/t/partitions/0/records?limit=0", None, 400, "invalid_argument"),
        case("GET", "/v1/topics/t/partitions/0/records?offset=-1", None, 400, "invalid_argument"),
        case("GET", "/v1/topics/t/partitions/0/records?timestamp=noon", None, 400, "invalid_argument"),
        case("GET", "/v1/topics/t/partitions/0/records?offset=0&timestamp=0", None, 400, "invalid_argument"),
        case("GET", format!("{stream}?form_version=3"), None, 400, "invalid_argument"),
        case("POST", format!("{stream}?colour=red"), Some(one), 400, "invalid_argument"),
        case("GET", "/v1/topics?internal=maybe", None, 400, "invalid_argument"),
        case("GET", "/v1/all?from=3", None, 400, "invalid_argument"),
        case("GET", "/v1/subscribe?topic=t&from_offset=-1&partition=0", None, 400, "invalid_argument"),
        case("GET", "/v1/subscribe?topic=t&key=acc-1&from_offset=1", None, 400, "invalid_argument"),
        // Too large.
        case("POST", stream, Some(&big), 413, "payload_too_large"),
        case("POST", "/v1/topics", Some(&big), 413, "payload_too_large"),
        // Invalid topic names.
        case("POST", "/v1/topics", Some(r#"{"name": "bad name"}"#), 400, "invalid_topic_name"),
        case("POST", "/v1/topics", Some(r#"{"name": "a/b"}"#), 400, "invalid_topic_name"),
        case("POST", "/v1/topics", Some(&long_topic), 400, "invalid_topic_name"),
        case("POST", "/v1/topics", Some(r#"{"name": "__x"}"#), 400, "invalid_topic_name"),
        case("POST", "/v1/topics", Some(r#"{"name": ".."}"#), 400, "invalid_topic_name"),
        case("POST", "/v1/topics", Some(r#"{"name": ""}"#), 400, "invalid_topic_name"),
        // A name that cannot exist names no topic.
        case("POST", "/v1/topics/a%2Fb/streams/k", Some(one), 404, "unknown_topic"),
        case("GET", "/v1/topics/bad%20name", None, 404, "unknown_topic"),
        // Invalid topic configurations.
        case("POST", "/v1/topics", Some(r#"{"name": "x", "partitions": 0}"#), 400, "invalid_config"),
        case("POST", "/v1/topics", Some(r#"{"name": "x", "partitions": 10001}"#), 400, "invalid_config"),
        case("POST", "/v1/topics", Some(r#"{"name": "x", "config": {"colour": 1}}"#), 400, "malformed_json"),
        // An event id the stream holds with other content.
        case(
            "POST",
            stream,
            Some(r#"{"type": "AccountCreated", "id": "e-1", "data": {"owner": "bob"}}"#),
            409,
            "event_id_reused",
        ),
        // Stream keys.
        case("POST", long_key.clone(), Some(one), 400, "invalid_stream_key"),
        case("GET", long_key, None, 400, "invalid_stream_key"),
        case("POST", "/v1/topics/t/streams/", Some(one), 400, "invalid_stream_key"),
        case("GET", "/v1/topics/t/streams/", None, 400, "invalid_stream_key"),
        // Events.
        case("POST", stream, Some(r#"{"type": "A", "data": 1, "data_base64": "AA=="}"#), 400, "invalid_event"),
        case("POST", stream, Some(r#"{"type": "A", "data_base64": "not base64!"}"#), 400, "invalid_event"),
        case("POST", stream, Some(r#"{"type": ""}"#), 400, "invalid_event"),
        case("POST", stream, Some(r#"{"type": "A", "id": ""}"#), 400, "invalid_event"),
        case("POST", stream, Some(r#"{"type": "A", "time": "teatime"}"#), 400, "invalid_event"),
        case("POST", stream, Some(r#"{"type": "A", "specversion": "0.3"}"#), 400, "invalid_event"),
        case("POST", stream, Some(r#"{"type": "A", "headers": {"ce_id": "x"}}"#), 400, "invalid_event"),
        case(
            "POST",
            stream,
            Some(r#"{"events": [{"type": "A", "id": "same"}, {"type": "B", "id": "same"}]}"#),
            400,
            "invalid_event",
        ),
        // Internal topics are evident's own.
        case("POST", "/v1/topics/__consumer_offsets/streams/k", Some(one), 403, "internal_topic"),
        case("DELETE", "/v1/topics/__consumer_offsets", None, 403, "internal_topic"),
        // Offset resets.
        case(
            "POST",
            "/v1/groups/g/reset-offsets",
            Some(r#"{"topics": ["t"], "execute": true}"#),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/groups/g/reset-offsets",
            Some(r#"{"topics": ["t"], "to_earliest": true, "to_latest": true, "execute": true}"#),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/groups/g/reset-offsets",
            Some(r#"{"to_earliest": true, "execute": true}"#),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/groups/g/reset-offsets",
            Some(r#"{"topics": ["t"], "all_topics": true, "to_earliest": true, "execute": true}"#),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/groups/g/reset-offsets",
            Some(r#"{"topics": ["t"], "to_datetime": "yesterday", "execute": true}"#),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/groups/g/reset-offsets",
            Some(r#"{"topics": ["t"], "by_duration": "an hour", "execute": true}"#),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/groups/g/reset-offsets",
            Some(r#"{"topics": ["t:x"], "to_earliest": true, "execute": true}"#),
            400,
            "invalid_argument",
        ),
        case(
            "POST",
            "/v1/groups/g/reset-offsets",
            Some(r#"{"topics": ["t"], "to_earliest": true, "execute": true, "dry_run": true}"#),
            400,
            "malformed_json",
        ),
        case(
            "POST",
            "/v1/groups/g/reset-offsets",
            Some(r#"{"topics": ["nope"], "to_earliest": true, "execute": true}"#),
            404,
            "unknown_topic",
        ),
        case(
            "POST",
            "/v1/groups/g/reset-offsets",
            Some(r#"{"topics": ["t:0,5"], "to_earliest": true, "execute": true}"#),
            404,
            "unknown_partition",
        ),
        // Commits: all or nothing.
        case(
            "POST",
            "/v1/groups/g/offsets",
            Some(
                r#"{"offsets": [{"topic": "t", "partition": 0, "offset": 2}, {"topic": "nope", "partition": 0, "offset": 1}]}"#,
            ),
            404,
            "unknown_topic",
        ),
        case(
            "POST",
            "/v1/groups/g/offsets",
            Some(
                r#"{"offsets": [{"topic": "t", "partition": 0, "offset": 2}, {"topic": "t", "partition": 9, "offset": 1}]}"#,
            ),
            404,
            "unknown_partition",
        ),
        case("POST", "/v1/groups/g/offsets", Some(r#"{"offsets": []}"#), 400, "invalid_argument"),
        // Group names.
        case("GET", "/v1/groups/a%01b", None, 400, "invalid_group"),
        case("GET", "/v1/groups/a%07b/offsets", None, 400, "invalid_group"),
        case(
            "POST",
            "/v1/groups/a%07b/offsets",
            Some(r#"{"offsets": [{"topic": "t", "partition": 0, "offset": 1}]}"#),
            400,
            "invalid_group",
        ),
        case(
            "POST",
            "/v1/groups/a%0Ab/reset-offsets",
            Some(r#"{"all_topics": true, "to_earliest": true}"#),
            400,
            "invalid_group",
        ),
        // Dead letters: no dead-letter topic, bad names, bad bodies.
        case("GET", "/v1/dead-letters/nobody", None, 404, "unknown_projection"),
        case("POST", "/v1/dead-letters/nobody/retry", Some(r#"{"stream": "t/acc-1"}"#), 404, "unknown_projection"),
        case(
            "POST",
            "/v1/dead-letters/nobody/skip",
            Some(r#"{"stream": "t/acc-1", "colour": 1}"#),
            400,
            "malformed_json",
        ),
        case("GET", "/v1/dead-letters/a%20b", None, 400, "invalid_projection"),
        // Routes and methods.
        case("PUT", "/v1/topics", Some("{}"), 405, "method_not_allowed"),
        case("DELETE", "/v1/all", None, 405, "method_not_allowed"),
        case("POST", "/v1/topics/t", Some("{}"), 405, "method_not_allowed"),
        case("PATCH", stream, Some(one), 405, "method_not_allowed"),
        case("GET", "/v1/groups/g/reset-offsets", None, 405, "method_not_allowed"),
        case("GET", "/v1/nothing", None, 404, "not_found"),
        case("GET", "/v2/topics", None, 404, "not_found"),
        case("POST", "/", Some("{}"), 404, "not_found"),
    ];

    let mut failures = Vec::new();
    for c in &cases {
        let shown_path = if c.path.len() > 80 { format!("{}…", &c.path[..80]) } else { c.path.clone() };
        let shown_body = c.body.as_deref().map(|b| if b.len() > 80 { format!("{}…", &b[..80]) } else { b.to_string() });
        let (status, content_type, text) =
            server.request_raw(c.method, &c.path, c.body.as_ref().map(|b| b.as_bytes().to_vec()), &[]);
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        let error = &body["error"];
        let shape_ok = body.as_object().is_some_and(|o| o.len() == 1)
            && error["code"].is_string()
            && error["message"].as_str().is_some_and(|m| !m.is_empty());
        if status != c.status || error["code"] != c.code || !shape_ok || !content_type.starts_with("application/json") {
            failures.push(format!(
                "{} {} body {:?}: expected {} {}, got {} ({}) {}",
                c.method, shown_path, shown_body, c.status, c.code, status, content_type, text
            ));
        }
    }
    assert!(failures.is_empty(), "{} of {} cases failed:\n{}", failures.len(), cases.len(), failures.join("\n"));

    // Nothing changed, and the server still answers.
    let after = snapshot(&server);
    for ((path, b), (_, a)) in before.iter().zip(&after) {
        assert_eq!(a, b, "{path} changed");
    }
    assert_eq!(server.get_ok("/health")["status"], "ok");
    // The server still takes good requests after all that.
    let ok = server.append("t", "acc-1", &json!({"type": "MoneyWithdrawn", "data": {"amount": 30}}));
    assert_eq!(ok["events"][0]["version"], 2);
}

#[test]
fn a_body_at_the_limit_is_accepted() {
    let server = Server::start_with(&["--http-body-max-bytes", "2048"]);
    server.create_topic("t", 1);
    let filler = 2048 - r#"{"type":"A","data":""}"#.len();
    let body = format!(r#"{{"type":"A","data":"{}"}}"#, "y".repeat(filler));
    assert_eq!(body.len(), 2048);
    let (status, reply) = server.request("POST", "/v1/topics/t/streams/k", Some(&body));
    assert_eq!(status, 201, "{reply}");
    let (status, reply) = server.request("POST", "/v1/topics/t/streams/k", Some(&format!("{body} ")));
    assert_eq!(status, 413, "{reply}");
    assert_error(&reply, "payload_too_large");
    let read = server.get_ok("/v1/topics/t/streams/k");
    assert_eq!(read["current_version"], 0);
}
