//! CloudEvents JSON in and out. On append, a CloudEvents JSON object (or a batch of them with
//! an expected version) becomes [`EventData`]: attributes go to `ce_*` headers (the Kafka
//! binding's binary mode), `data` to the record value. On read, a stored record becomes the
//! same JSON plus its positions (topic, key, partition, offset, version, sequence), written
//! straight to the output without building an intermediate tree.

use std::collections::BTreeMap;

use base64::Engine;
use evident_core::envelope::{self, EventData};
use evident_core::ExpectedVersion;
use evident_log::Event;
use serde::ser::{SerializeMap, Serializer};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::extract::json_error;
use super::ApiError;

/// Most events in one append request.
pub const EVENTS_PER_APPEND_MAX: usize = 10_000;
/// The deepest nesting of arrays and objects serde_json parses (its recursion limit of 128
/// refuses the 128th level). The CLI, the library's HTTP backend and most clients parse with
/// such a limit.
const JSON_DEPTH_MAX: usize = 127;
/// Levels a stream page puts around an event's `data`: the page object, its `events` array and
/// the event object (a subscription message puts one, a record page three).
const PAGE_NESTING: usize = 3;
/// The deepest `data` an append accepts: deeper data would be stored but then make every page
/// holding it unparseable, so it is refused up front (400 `data_too_deep`).
pub const DATA_DEPTH_MAX: usize = JSON_DEPTH_MAX - PAGE_NESTING;
/// Where events appended over HTTP say they come from, when they do not say.
const DEFAULT_SOURCE: &str = "/evident/http";

/// One event as a client sends it.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventIn {
    #[serde(rename = "type")]
    event_type: String,
    #[serde(default)]
    data: Option<Box<RawValue>>,
    #[serde(default)]
    data_base64: Option<String>,
    #[serde(default)]
    id: Option<String>,
    #[serde(default)]
    source: Option<String>,
    #[serde(default)]
    time: Option<String>,
    #[serde(default)]
    datacontenttype: Option<String>,
    #[serde(default)]
    specversion: Option<String>,
    #[serde(default)]
    subject: Option<String>,
    #[serde(default)]
    dataschema: Option<String>,
    /// Record headers beyond CloudEvents' attributes (text values).
    #[serde(default)]
    headers: BTreeMap<String, Option<String>>,
}

/// The batch form of an append body.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct BatchIn {
    #[serde(default)]
    expected_version: Option<Value>,
    events: Vec<Box<RawValue>>,
}

/// A parsed append request.
#[derive(Debug)]
pub struct AppendRequest {
    /// The events, ids filled in.
    pub events: Vec<EventData>,
    /// The expected version from the body, if it gave one.
    pub expected: Option<ExpectedVersion>,
}

/// Parses an append body: one event, or `{"expected_version", "events": [...]}`.
pub fn parse_append(body: &[u8]) -> Result<AppendRequest, ApiError> {
    let raw: Box<RawValue> = super::extract::parse_json(body).map_err(|e| {
        // Past serde_json's limit the body cannot even be parsed; name the real fault.
        if e.message.contains("recursion limit exceeded") {
            too_deep(format!("the body nests arrays and objects deeper than {JSON_DEPTH_MAX} levels"))
        } else {
            e
        }
    })?;
    let trimmed = raw.get().trim_start();
    if !trimmed.starts_with('{') {
        return Err(ApiError::new(
            axum::http::StatusCode::BAD_REQUEST,
            "malformed_json",
            "the body must be a JSON object: one event, or {\"expected_version\", \"events\": [...]}",
        ));
    }
    // An object with `events` is the batch form; anything else is one event.
    let probe: BTreeMap<String, &RawValue> = serde_json::from_str(raw.get()).map_err(json_error)?;
    if probe.contains_key("events") {
        let batch: BatchIn = serde_json::from_str(raw.get()).map_err(json_error)?;
        if batch.events.is_empty() {
            return Err(invalid_event("events must hold at least one event"));
        }
        if batch.events.len() > EVENTS_PER_APPEND_MAX {
            return Err(invalid_event(format!(
                "an append holds at most {EVENTS_PER_APPEND_MAX} events, not {}",
                batch.events.len()
            )));
        }
        let expected = batch.expected_version.as_ref().map(parse_expected_value).transpose()?;
        let events = batch
            .events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let parsed: EventIn = serde_json::from_str(e.get()).map_err(|err| prefix(i, json_error(err)))?;
                to_event_data(parsed).map_err(|err| prefix(i, err))
            })
            .collect::<Result<_, _>>()?;
        Ok(AppendRequest { events, expected })
    } else {
        let event: EventIn = serde_json::from_str(raw.get()).map_err(json_error)?;
        Ok(AppendRequest { events: vec![to_event_data(event)?], expected: None })
    }
}

fn prefix(i: usize, mut e: ApiError) -> ApiError {
    e.message = format!("events[{i}]: {}", e.message);
    e
}

fn too_deep(message: String) -> ApiError {
    ApiError::new(axum::http::StatusCode::BAD_REQUEST, "data_too_deep", message)
}

/// The deepest nesting of arrays and objects in a JSON text (0 for a scalar). The text is
/// valid JSON (serde_json parsed it), so brackets outside strings balance.
fn json_depth(text: &[u8]) -> usize {
    let (mut depth, mut deepest, mut in_string, mut escaped) = (0usize, 0usize, false, false);
    for &b in text {
        if in_string {
            if escaped {
                escaped = false;
            } else if b == b'\\' {
                escaped = true;
            } else if b == b'"' {
                in_string = false;
            }
            continue;
        }
        match b {
            b'"' => in_string = true,
            b'[' | b'{' => {
                depth += 1;
                deepest = deepest.max(depth);
            }
            b']' | b'}' => depth = depth.saturating_sub(1),
            _ => {}
        }
    }
    deepest
}

fn invalid_event(message: impl Into<String>) -> ApiError {
    ApiError::new(axum::http::StatusCode::BAD_REQUEST, "invalid_event", message)
}

/// Parses an expected version given as JSON: a keyword string or a non-negative integer.
pub fn parse_expected_value(v: &Value) -> Result<ExpectedVersion, ApiError> {
    match v {
        Value::String(s) => parse_expected_text(s),
        Value::Number(n) => match n.as_u64() {
            Some(n) => Ok(ExpectedVersion::Exact(evident_core::Version(n))),
            None => Err(ApiError::invalid(format!(
                "expected_version must be any, no_stream, stream_exists or a non-negative integer, not {n}"
            ))),
        },
        other => Err(ApiError::invalid(format!(
            "expected_version must be any, no_stream, stream_exists or a non-negative integer, not {other}"
        ))),
    }
}

/// Parses an expected version given as text.
pub fn parse_expected_text(s: &str) -> Result<ExpectedVersion, ApiError> {
    s.parse::<ExpectedVersion>().map_err(|_| {
        ApiError::invalid(format!(
            "expected_version must be any, no_stream, stream_exists or a non-negative integer, not {s:?}"
        ))
    })
}

fn to_event_data(e: EventIn) -> Result<EventData, ApiError> {
    if e.event_type.is_empty() || e.event_type.len() > 256 {
        return Err(invalid_event("type must be 1 to 256 characters"));
    }
    if let Some(v) = &e.specversion {
        if v != "1.0" {
            return Err(invalid_event(format!("specversion {v:?} is not supported; use 1.0")));
        }
    }
    let (data, default_type) = match (e.data, e.data_base64) {
        (Some(_), Some(_)) => return Err(invalid_event("give data or data_base64, not both")),
        (Some(raw), None) => {
            let depth = json_depth(raw.get().as_bytes());
            if depth > DATA_DEPTH_MAX {
                return Err(too_deep(format!(
                    "data nests arrays and objects {depth} levels deep; the most is {DATA_DEPTH_MAX}, so that pages \
                     of events holding it stay within the {JSON_DEPTH_MAX} levels JSON parsers accept"
                )));
            }
            (raw.get().as_bytes().to_vec(), "application/json")
        }
        (None, Some(b64)) => (
            base64::engine::general_purpose::STANDARD
                .decode(b64.as_bytes())
                .map_err(|err| invalid_event(format!("data_base64 is not valid base64: {err}")))?,
            "application/octet-stream",
        ),
        (None, None) => (b"null".to_vec(), "application/json"),
    };
    let id = match e.id {
        Some(id) => {
            if id.is_empty() || id.len() > envelope::ID_LEN_MAX {
                return Err(invalid_event(format!("id must be 1 to {} bytes", envelope::ID_LEN_MAX)));
            }
            id
        }
        None => uuid::Uuid::new_v4().to_string(),
    };
    if let Some(t) = &e.time {
        if t.parse::<jiff::Timestamp>().is_err() {
            return Err(invalid_event(format!("time must be an RFC 3339 timestamp, not {t:?}")));
        }
    }
    let mut extra_headers = Vec::new();
    if let Some(s) = e.subject {
        extra_headers.push(("ce_subject".to_string(), Some(s.into_bytes())));
    }
    if let Some(s) = e.dataschema {
        extra_headers.push(("ce_dataschema".to_string(), Some(s.into_bytes())));
    }
    for (name, value) in e.headers {
        if name.is_empty()
            || name.starts_with("ce_")
            || name == envelope::CONTENT_TYPE
            || name == envelope::EXPECTED_VERSION
        {
            return Err(invalid_event(format!(
                "header {name:?} is reserved: set CloudEvents attributes as fields, the expected version as expected_version"
            )));
        }
        extra_headers.push((name, value.map(String::into_bytes)));
    }
    Ok(EventData {
        id,
        event_type: e.event_type,
        source: Some(e.source.unwrap_or_else(|| DEFAULT_SOURCE.to_string())),
        content_type: Some(e.datacontenttype.unwrap_or_else(|| default_type.to_string())),
        time: e.time,
        extra_headers,
        data,
    })
}

/// An RFC 3339 rendering of a millisecond timestamp.
pub fn rfc3339(ms: i64) -> String {
    jiff::Timestamp::from_millisecond(ms).map_or_else(|_| ms.to_string(), |t| format!("{t:.3}"))
}

/// A stored event as CloudEvents JSON with its positions.
pub struct EventView<'a>(pub &'a Event);

impl Serialize for EventView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let e = self.0;
        // One pass over the headers (reads render thousands of events per request); the first
        // header of a name wins, as `Event::header` has it.
        let (mut id, mut event_type, mut source, mut ce_time, mut content_type) = (None, None, None, None, None);
        let mut extensions: Vec<(&str, HeaderValue<'_>)> = Vec::new();
        let mut headers: Vec<(&str, HeaderValue<'_>)> = Vec::new();
        for (name, value) in e.headers() {
            let slot = match name {
                envelope::CE_ID => &mut id,
                envelope::CE_TYPE => &mut event_type,
                envelope::CE_SOURCE => &mut source,
                envelope::CE_TIME => &mut ce_time,
                envelope::CONTENT_TYPE => &mut content_type,
                envelope::CE_SPECVERSION => continue,
                n if n.starts_with("ce_") => {
                    extensions.push((&n[3..], HeaderValue(value)));
                    continue;
                }
                n => {
                    headers.push((n, HeaderValue(value)));
                    continue;
                }
            };
            if slot.is_none() {
                *slot = Some(text(value));
            }
        }
        let (id, event_type, source, content_type) =
            (id.flatten(), event_type.flatten(), source.flatten(), content_type.flatten());
        let timestamp = rfc3339_memo(e.timestamp_ms);
        let mut map = s.serialize_map(None)?;
        map.serialize_entry("specversion", "1.0")?;
        map.serialize_entry("id", &id)?;
        map.serialize_entry("type", &event_type)?;
        map.serialize_entry("source", &source)?;
        map.serialize_entry("time", ce_time.flatten().unwrap_or(&timestamp))?;
        if let Some(ct) = content_type {
            map.serialize_entry("datacontenttype", ct)?;
        }
        for (name, value) in &extensions {
            map.serialize_entry(name, value)?;
        }
        match e.value.as_deref() {
            None => map.serialize_entry("data", &Value::Null)?,
            Some(bytes) => {
                let json_ok = content_type.is_none_or(|ct| ct.contains("json"));
                match std::str::from_utf8(bytes)
                    .ok()
                    .filter(|_| json_ok)
                    .and_then(|t| serde_json::from_str::<&RawValue>(t).ok())
                {
                    Some(raw) => map.serialize_entry("data", raw)?,
                    None => {
                        map.serialize_entry("data_base64", &base64::engine::general_purpose::STANDARD.encode(bytes))?
                    }
                }
            }
        }
        map.serialize_entry("topic", e.topic.as_str())?;
        match e.key.as_deref() {
            None => map.serialize_entry("key", &Value::Null)?,
            Some(k) => match std::str::from_utf8(k) {
                Ok(k) => map.serialize_entry("key", k)?,
                Err(_) => map.serialize_entry("key_base64", &base64::engine::general_purpose::STANDARD.encode(k))?,
            },
        }
        map.serialize_entry("partition", &e.partition)?;
        map.serialize_entry("offset", &e.offset)?;
        map.serialize_entry("version", &e.version)?;
        map.serialize_entry("sequence", &e.sequence)?;
        map.serialize_entry("timestamp", &timestamp)?;
        if !headers.is_empty() {
            // Sorted by name, the last of a repeated name kept: what collecting into a
            // `BTreeMap` gave, without building one per event.
            headers.sort_by(|a, b| a.0.cmp(b.0));
            map.serialize_entry("headers", &SortedHeaders(&headers))?;
        }
        map.end()
    }
}

/// Header entries sorted by name, serialized as a map keeping the last of each name.
struct SortedHeaders<'a>(&'a [(&'a str, HeaderValue<'a>)]);

impl Serialize for SortedHeaders<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let entries = self.0;
        let last_of_name = |i: usize| entries.get(i + 1).is_none_or(|next| next.0 != entries[i].0);
        s.collect_map((0..entries.len()).filter(|&i| last_of_name(i)).map(|i| (entries[i].0, &entries[i].1)))
    }
}

/// [`rfc3339`] remembering its last answer per thread: the events of a batch share their
/// timestamp, so a page of them renders it once instead of once per event.
fn rfc3339_memo(ms: i64) -> String {
    thread_local! {
        static LAST: std::cell::RefCell<Option<(i64, String)>> = const { std::cell::RefCell::new(None) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        match &*last {
            Some((at, text)) if *at == ms => text.clone(),
            _ => {
                let text = rfc3339(ms);
                *last = Some((ms, text.clone()));
                text
            }
        }
    })
}

fn text(v: Option<&[u8]>) -> Option<&str> {
    v.and_then(|b| std::str::from_utf8(b).ok())
}

/// A header value as JSON: its text when it is UTF-8, `null` when absent, and otherwise
/// `{"base64": "..."}` (standard alphabet, padded). Kafka producers may put any bytes in a
/// header; an object cannot be mistaken for a text value (a string prefix such as `base64:`
/// could be a real value), and it keeps the name where clients look for it.
struct HeaderValue<'a>(Option<&'a [u8]>);

impl Serialize for HeaderValue<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self.0 {
            None => s.serialize_none(),
            Some(bytes) => match std::str::from_utf8(bytes) {
                Ok(text) => s.serialize_str(text),
                Err(_) => {
                    let mut map = s.serialize_map(Some(1))?;
                    map.serialize_entry("base64", &base64::engine::general_purpose::STANDARD.encode(bytes))?;
                    map.end()
                }
            },
        }
    }
}

/// A JSON response for a page of events, serialized into one buffer sized for them. axum's
/// `Json` writes through a `BufMut` writer whose per-call overhead dominated profiles of large
/// reads (serde_json makes many small writes); a `Vec` takes them at memcpy speed.
pub fn events_response<T: Serialize>(page: &T, events: usize) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let mut buf = Vec::with_capacity(256 + events * 640);
    serde_json::to_writer(&mut buf, page).map_err(|e| ApiError::internal(format!("cannot encode the events: {e}")))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], buf).into_response())
}

/// The media type of the streamed event format.
pub const NDJSON: &str = "application/x-ndjson";
/// Bytes of NDJSON rendered before a chunk is handed to the connection.
const NDJSON_CHUNK: usize = 64 << 10;

/// Whether the client asked for NDJSON (`Accept: application/x-ndjson`).
pub fn wants_ndjson(headers: &axum::http::HeaderMap) -> bool {
    headers
        .get_all(axum::http::header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split(',').any(|t| t.split(';').next().is_some_and(|t| t.trim().eq_ignore_ascii_case(NDJSON))))
}

/// A read as NDJSON: one event object per line, rendered a chunk at a time while the previous
/// chunk is being sent, so the first bytes leave before the last event is rendered and the
/// server never holds the whole rendering. The page's other fields are response headers:
/// `evident-partition`, `evident-current-version` and, when there is more, `evident-next-version`.
pub fn ndjson_response(
    events: Vec<Event>,
    partition: Option<u32>,
    current_version: u64,
    next_version: Option<u64>,
) -> axum::response::Response {
    use axum::http::header::CONTENT_TYPE;
    let chunks = futures_util::stream::unfold((events, 0usize), |(events, at)| async move {
        if at >= events.len() {
            return None;
        }
        let mut buf = Vec::with_capacity(NDJSON_CHUNK + 4096);
        let mut next = at;
        while next < events.len() && buf.len() < NDJSON_CHUNK {
            if let Err(e) = serde_json::to_writer(&mut buf, &EventView(&events[next])) {
                // Ends the body early: the client sees a truncated chunked body, not bad JSON.
                return Some((Err(std::io::Error::other(e)), (events, usize::MAX)));
            }
            buf.push(b'\n');
            next += 1;
        }
        Some((Ok(axum::body::Bytes::from(buf)), (events, next)))
    });
    let mut response = axum::response::Response::new(axum::body::Body::from_stream(chunks));
    let headers = response.headers_mut();
    headers.insert(CONTENT_TYPE, axum::http::HeaderValue::from_static(NDJSON));
    if let Some(p) = partition {
        headers.insert("evident-partition", p.into());
    }
    headers.insert("evident-current-version", current_version.into());
    if let Some(v) = next_version {
        headers.insert("evident-next-version", v.into());
    }
    response
}

/// A list of events, serialized lazily.
pub struct EventsView<'a>(pub &'a [Event]);

impl Serialize for EventsView<'_> {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_seq(self.0.iter().map(EventView))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn one_event_or_a_batch() {
        let one = parse_append(br#"{"type":"AccountCreated","data":{"owner":"ada"},"id":"e1"}"#).expect("one");
        assert_eq!(one.events.len(), 1);
        assert_eq!(one.events[0].id, "e1");
        assert_eq!(one.events[0].data, br#"{"owner":"ada"}"#);
        assert!(one.expected.is_none());
        let batch = parse_append(
            br#"{"expected_version":3,"events":[{"type":"A","data":1},{"type":"B","data_base64":"AAE="}]}"#,
        )
        .expect("batch");
        assert_eq!(batch.expected, Some(ExpectedVersion::Exact(evident_core::Version(3))));
        assert_eq!(batch.events[1].data, vec![0u8, 1]);
        assert_eq!(batch.events[1].content_type.as_deref(), Some("application/octet-stream"));
        assert!(!batch.events[0].id.is_empty(), "an id is generated");
    }

    #[test]
    fn stored_records_render_as_cloudevents_with_their_positions() {
        use evident_core::batch::{BatchBuilder, NewRecord};
        let dir = tempfile::tempdir().expect("tmp");
        let log = evident_log::Log::open(dir.path(), evident_log::LogConfig::default()).expect("open");
        log.create_topic("t", evident_log::TopicConfig::default()).expect("topic");
        let h = |k: &str, v: &str| (k.to_string(), Some(v.as_bytes().to_vec()));
        let mut b = BatchBuilder::new();
        b.push(NewRecord {
            key: Some(b"k".to_vec()),
            value: Some(br#"{"amount": 5}"#.to_vec()),
            headers: vec![
                h("ce_id", "e1"),
                h("ce_type", "MoneyDeposited"),
                h("ce_time", "2026-01-01T00:00:00Z"),
                h("ce_subject", "acct"),
                h("content-type", "application/json"),
                h("tenant", "acme"),
                h("ce_id", "ignored: the first header of a name wins"),
            ],
            timestamp_ms: 1_000,
        });
        b.push(NewRecord { key: None, value: Some(vec![0, 159]), headers: vec![], timestamp_ms: 2_000 });
        log.append_batch("t", 0, &b.build(), None).expect("append");
        let events = log.read_partition_events("t", 0, 0, 10).expect("read");
        let first: Value = serde_json::to_value(EventView(&events[0])).expect("json");
        assert_eq!(first["id"], "e1");
        assert_eq!(first["type"], "MoneyDeposited");
        assert_eq!(first["time"], "2026-01-01T00:00:00Z", "ce_time as sent");
        assert_eq!(first["timestamp"], "1970-01-01T00:00:01.000Z");
        assert_eq!(first["subject"], "acct", "extensions are attributes");
        assert_eq!(first["headers"]["tenant"], "acme");
        assert_eq!(first["data"]["amount"], 5);
        assert_eq!(
            (first["key"].as_str(), first["version"].as_u64(), first["offset"].as_u64()),
            (Some("k"), Some(0), Some(0))
        );
        let second: Value = serde_json::to_value(EventView(&events[1])).expect("json");
        assert_eq!(second["id"], Value::Null);
        assert_eq!(second["time"], "1970-01-01T00:00:02.000Z", "no ce_time: the record timestamp");
        assert_eq!(second["data_base64"], "AJ8=", "not JSON: base64");
        assert_eq!((second["key"].clone(), second["version"].clone()), (Value::Null, Value::Null));
        assert!(second.get("headers").is_none());
    }

    fn nested(depth: usize) -> String {
        format!("{}1{}", "[".repeat(depth), "]".repeat(depth))
    }

    #[test]
    fn data_deeper_than_a_page_can_carry_is_refused() {
        assert_eq!(json_depth(br#"{"a":"[[[{\"","b":[1,{"c":[]}]}"#), 4, "brackets in strings do not count");
        let at_limit = nested(DATA_DEPTH_MAX);
        let body = format!(r#"{{"type":"A","data":{at_limit}}}"#);
        parse_append(body.as_bytes()).expect("the deepest data accepted");
        // A page holding it parses (this pins DATA_DEPTH_MAX to serde_json's real limit).
        let page = format!(r#"{{"events":[{{"data":{at_limit}}}]}}"#);
        serde_json::from_str::<Value>(&page).expect("a page of the deepest data parses");
        let deeper = nested(DATA_DEPTH_MAX + 1);
        let page = format!(r#"{{"events":[{{"data":{deeper}}}]}}"#);
        assert!(serde_json::from_str::<Value>(&page).is_err(), "one level more does not");
        let e = parse_append(format!(r#"{{"type":"A","data":{deeper}}}"#).as_bytes()).unwrap_err();
        assert_eq!((e.status.as_u16(), e.code), (400, "data_too_deep"), "{}", e.message);
        let e =
            parse_append(format!(r#"{{"events":[{{"type":"A","data":{}}}]}}"#, nested(200)).as_bytes()).unwrap_err();
        assert_eq!(e.code, "data_too_deep", "{}", e.message);
    }

    #[test]
    fn header_values_that_are_not_text_read_as_base64() {
        use evident_core::batch::{BatchBuilder, NewRecord};
        let dir = tempfile::tempdir().expect("tmp");
        let log = evident_log::Log::open(dir.path(), evident_log::LogConfig::default()).expect("open");
        log.create_topic("t", evident_log::TopicConfig::default()).expect("topic");
        let mut b = BatchBuilder::new();
        b.push(NewRecord {
            key: Some(b"k".to_vec()),
            value: Some(b"1".to_vec()),
            headers: vec![
                ("bin".to_string(), Some(vec![0xff, 0x00])),
                ("ce_trace".to_string(), Some(vec![0xc3])),
                ("text".to_string(), Some(b"ok".to_vec())),
                ("none".to_string(), None),
            ],
            timestamp_ms: 1_000,
        });
        log.append_batch("t", 0, &b.build(), None).expect("append");
        let events = log.read_partition_events("t", 0, 0, 10).expect("read");
        let json: Value = serde_json::to_value(EventView(&events[0])).expect("json");
        assert_eq!(json["headers"]["bin"], serde_json::json!({ "base64": "/wA=" }));
        assert_eq!(json["trace"], serde_json::json!({ "base64": "ww==" }), "extension attributes too");
        assert_eq!(json["headers"]["text"], "ok");
        assert_eq!(json["headers"]["none"], Value::Null);
    }

    #[test]
    fn ndjson_is_one_event_per_line_with_the_page_in_headers() {
        use axum::http::{header, HeaderMap, HeaderValue};
        let mut accept = HeaderMap::new();
        accept.insert(header::ACCEPT, HeaderValue::from_static("text/html, Application/X-NDJSON;q=0.9"));
        assert!(wants_ndjson(&accept));
        accept.insert(header::ACCEPT, HeaderValue::from_static("application/json"));
        assert!(!wants_ndjson(&accept));
        assert!(!wants_ndjson(&HeaderMap::new()));

        let dir = tempfile::tempdir().expect("tmp");
        let log = evident_log::Log::open(dir.path(), evident_log::LogConfig::default()).expect("open");
        log.create_topic("t", evident_log::TopicConfig::default()).expect("topic");
        // Enough events for several chunks.
        let events: Vec<EventData> = (0..400)
            .map(|i| {
                EventData::json(
                    format!("e{i}"),
                    "T",
                    format!(r#"{{"n":{i},"pad":"{}"}}"#, "x".repeat(300)).into_bytes(),
                )
            })
            .collect();
        log.append_events("t", b"k", ExpectedVersion::NoStream, &events).expect("append");
        let read = log
            .read_stream("t", b"k", &evident_log::StreamReadOptions { limit: 1000, ..Default::default() })
            .expect("read");
        let expected: Vec<Value> =
            read.events.iter().map(|e| serde_json::to_value(EventView(e)).expect("json")).collect();
        let response = ndjson_response(read.events, Some(0), 399, Some(400));
        assert_eq!(response.headers()[header::CONTENT_TYPE], NDJSON);
        assert_eq!(response.headers()["evident-current-version"], "399");
        assert_eq!(response.headers()["evident-next-version"], "400");
        let body = tokio::runtime::Builder::new_current_thread()
            .build()
            .expect("runtime")
            .block_on(axum::body::to_bytes(response.into_body(), usize::MAX))
            .expect("body");
        assert!(body.ends_with(b"\n"));
        let lines: Vec<Value> = body
            .split(|&b| b == b'\n')
            .filter(|l| !l.is_empty())
            .map(|l| serde_json::from_slice(l).expect("a JSON line"))
            .collect();
        assert_eq!(lines, expected, "the same objects as the JSON page's events, in order");
    }

    #[test]
    fn bad_events_name_their_fault() {
        let e = parse_append(br#"{"data":1}"#).unwrap_err();
        assert_eq!(e.code, "missing_field");
        let e = parse_append(br#"{"type":"A","data":1,"data_base64":"AA=="}"#).unwrap_err();
        assert_eq!(e.code, "invalid_event");
        let e = parse_append(br#"{"expected_version":-1,"events":[{"type":"A"}]}"#).unwrap_err();
        assert_eq!(e.code, "invalid_argument");
        let e = parse_append(br#"{"expected_version":"soon","events":[{"type":"A"}]}"#).unwrap_err();
        assert_eq!(e.code, "invalid_argument");
        let e = parse_append(br#"{"type":"A","colour":"red"}"#).unwrap_err();
        assert_eq!(e.code, "malformed_json");
        let e = parse_append(b"[1]").unwrap_err();
        assert_eq!(e.code, "malformed_json");
        let e = parse_append(br#"{"events":[{"type":"A"},{"tipe":"B"}]}"#).unwrap_err();
        assert!(e.message.starts_with("events[1]"), "{}", e.message);
        let e = parse_append(br#"{"type":"A","headers":{"ce_id":"x"}}"#).unwrap_err();
        assert_eq!(e.code, "invalid_event");
    }
}
