//! CloudEvents JSON in and out. On append, a CloudEvents JSON object (or a batch of them with
//! an expected version) becomes [`EventData`]: attributes go to `ce_*` headers (the Kafka
//! binding's binary mode), `data` to the record value. On read, a stored record becomes the
//! same JSON plus its positions (topic, key, partition, offset, version, sequence), written
//! straight to the output without building an intermediate tree.
//!
//! Reads render every event of a page, so the read side is a hand-written writer
//! ([`write_event`]) rather than serde: constant keys, `itoa` numbers, strings escaped eight
//! bytes at a time exactly as serde_json escapes them, headers decoded once onto the stack. The pages
//! around the events are written the same way ([`PageWriter`]), so no serde struct has to embed
//! text already rendered. A stored
//! payload is still checked to be JSON before it is embedded as `data`: a content type of
//! `application/json` is no evidence (Kafka producers set it on anything, and an HTTP append
//! may pair it with `data_base64`), and invalid JSON must never reach a client as a page; the
//! check is serde_json's (`scan.rs`).

use std::collections::BTreeMap;

use base64::Engine;
use evident_core::envelope::{self, EventData};
use evident_core::ExpectedVersion;
use evident_log::Event;
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

use super::extract::json_error;
use super::ApiError;

mod scan;

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
            || name == envelope::SCHEMA_ID
            || name == envelope::KAFKA_OFFSET
        {
            return Err(invalid_event(format!(
                "header {name:?} is reserved: set CloudEvents attributes as fields, the expected version as expected_version; evident-schema-id is set by schema validation, evident-kafka-offset by a mirror of a Kafka cluster"
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

/// Renders a stored event as one compact CloudEvents JSON object onto `out`: `specversion`,
/// `id`, `type`, `source`, `time`, `datacontenttype` (when stored), the extension attributes
/// (`ce_*` headers) in stored order, `data` (or `data_base64` when the payload is not JSON),
/// then the positions (`topic`, `key` or `key_base64`, `partition`, `offset`, `version`,
/// `sequence`, `timestamp`) and the other headers sorted by name under `headers`. What is
/// written is UTF-8: every byte comes from a constant, a number, text checked to be UTF-8
/// (escaped) or base64.
///
/// Written by hand rather than through serde: reads render every event of a page, and the
/// fixed keys as constant text, numbers through `itoa`, strings escaped eight bytes at a time,
/// one UTF-8 check over all of an event's headers and no allocation per event (headers are
/// walked in place) cost a fraction of the generic path. The output is bytes rather than a
/// `String` so that text checked once in bulk is not checked again piece by piece (the
/// workspace allows no `unsafe`, so a `String` would re-check every piece). The text is what
/// serde_json writes for the same object (the tests compare them).
pub fn write_event(out: &mut Vec<u8>, e: &Event) {
    let (encoded, count) = e.encoded_headers();
    // One pass over every header's bytes: when they are all ASCII (names are in practice, and
    // so are the length prefixes of pieces shorter than 64 bytes), every name and value is
    // text, and none needs a check of its own.
    let ascii = encoded.is_ascii();
    let is_text = |bytes: &[u8]| ascii || std::str::from_utf8(bytes).is_ok();
    // The headers are decoded once, onto the stack when they are few (as events' are): the
    // passes below (attributes, extensions, other headers) then walk a slice.
    let mut inline = [(&[][..], None::<&[u8]>); HEADERS_INLINE];
    let (mut decoded, mut spilled) = (0, Vec::new());
    for header in (StoredHeaders { rest: encoded, left: count, names_ascii: ascii }) {
        if decoded < HEADERS_INLINE {
            inline[decoded] = header;
        } else {
            if spilled.is_empty() {
                spilled.extend_from_slice(&inline);
            }
            spilled.push(header);
        }
        decoded += 1;
    }
    let headers = if decoded <= HEADERS_INLINE { &inline[..decoded] } else { &spilled[..] };
    // The CloudEvents attributes with their own keys: the first header of a name wins, as
    // `Event::header` has it; a value that is not UTF-8 reads as null.
    let (mut id, mut event_type, mut source, mut ce_time, mut content_type) = (None, None, None, None, None);
    // The other headers: how many, and whether they are stored sorted with no name twice (the
    // HTTP append path stores them so), which lets them be written in one pass as they are.
    let (mut plain, mut plain_sorted, mut previous) = (0usize, true, None::<&[u8]>);
    // A mirror of a Kafka cluster: the event's Kafka offset, which stands for its offset.
    let kafka_offsets = KAFKA_OFFSETS.load(std::sync::atomic::Ordering::Relaxed);
    let mut kafka_offset = None;
    for &(name, value) in headers {
        let slot = match name {
            KAFKA_OFFSET if kafka_offsets => {
                kafka_offset = kafka_offset.or_else(|| value.and_then(|v| std::str::from_utf8(v).ok()?.parse().ok()));
                continue;
            }
            CE_ID => &mut id,
            CE_TYPE => &mut event_type,
            CE_SOURCE => &mut source,
            CE_TIME => &mut ce_time,
            CONTENT_TYPE => &mut content_type,
            n if n.starts_with(b"ce_") => continue,
            n => {
                plain += 1;
                plain_sorted &= previous.is_none_or(|p| p < n);
                previous = Some(n);
                continue;
            }
        };
        if slot.is_none() {
            *slot = Some(value.filter(|v| is_text(v)));
        }
    }
    let (id, event_type, source, ce_time, content_type) =
        (id.flatten(), event_type.flatten(), source.flatten(), ce_time.flatten(), content_type.flatten());

    out.extend_from_slice(b"{\"specversion\":\"1.0\",\"id\":");
    push_opt_str(out, id);
    out.extend_from_slice(b",\"type\":");
    push_opt_str(out, event_type);
    out.extend_from_slice(b",\"source\":");
    push_opt_str(out, source);
    out.extend_from_slice(b",\"time\":");
    match ce_time {
        Some(t) => push_str(out, t),
        None => push_timestamp(out, e.timestamp_ms),
    }
    if let Some(ct) = content_type {
        out.extend_from_slice(b",\"datacontenttype\":");
        push_str(out, ct);
    }
    for &(name, value) in headers {
        if let Some(attribute) = extension(name) {
            out.push(b',');
            push_str(out, attribute);
            out.push(b':');
            push_header_value(out, value, is_text);
        }
    }
    match e.value.as_deref() {
        None => out.extend_from_slice(b",\"data\":null"),
        Some(bytes) => match json_data(bytes, content_type) {
            Some(json) => {
                out.extend_from_slice(b",\"data\":");
                out.extend_from_slice(json);
            }
            None => {
                out.extend_from_slice(b",\"data_base64\":\"");
                push_base64(out, bytes);
                out.push(b'"');
            }
        },
    }
    out.extend_from_slice(b",\"topic\":");
    push_str(out, e.topic.as_str().as_bytes());
    match e.key.as_deref() {
        None => out.extend_from_slice(b",\"key\":null"),
        Some(k) if k.is_ascii() || std::str::from_utf8(k).is_ok() => {
            out.extend_from_slice(b",\"key\":");
            push_str(out, k);
        }
        Some(k) => {
            out.extend_from_slice(b",\"key_base64\":\"");
            push_base64(out, k);
            out.push(b'"');
        }
    }
    let mut digits = itoa::Buffer::new();
    out.extend_from_slice(b",\"partition\":");
    out.extend_from_slice(digits.format(e.partition).as_bytes());
    out.extend_from_slice(b",\"offset\":");
    out.extend_from_slice(digits.format(kafka_offset.unwrap_or(e.offset)).as_bytes());
    out.extend_from_slice(b",\"version\":");
    match e.version {
        Some(v) => out.extend_from_slice(digits.format(v).as_bytes()),
        None => out.extend_from_slice(b"null"),
    }
    out.extend_from_slice(b",\"sequence\":");
    out.extend_from_slice(digits.format(e.sequence).as_bytes());
    out.extend_from_slice(b",\"timestamp\":");
    push_timestamp(out, e.timestamp_ms);
    if plain > 0 {
        out.extend_from_slice(b",\"headers\":{");
        let is_plain =
            |name: &[u8]| !name.starts_with(b"ce_") && name != CONTENT_TYPE && !(kafka_offsets && name == KAFKA_OFFSET);
        if plain_sorted {
            for (i, &(name, value)) in headers.iter().filter(|(name, _)| is_plain(name)).enumerate() {
                push_header_entry(out, i, name, value, is_text);
            }
        } else {
            // Sorted by name (stably), the last of a repeated name kept: what collecting into
            // a map gives. Byte order is the order of the names as text.
            let mut entries: Vec<(&[u8], Option<&[u8]>)> =
                headers.iter().copied().filter(|(name, _)| is_plain(name)).collect();
            entries.sort_by(|a, b| a.0.cmp(b.0));
            let last_of_name = |i: usize| entries.get(i + 1).is_none_or(|next| next.0 != entries[i].0);
            for (i, j) in (0..entries.len()).filter(|&j| last_of_name(j)).enumerate() {
                push_header_entry(out, i, entries[j].0, entries[j].1, is_text);
            }
        }
        out.push(b'}');
    }
    out.push(b'}');
}

/// Whether events are read from a mirror of a Kafka cluster (`--storage kafka://`), whose
/// records carry their Kafka offset in the [`envelope::KAFKA_OFFSET`] header: then that offset
/// is rendered as the event's `offset` and the header is not shown. Process-wide, set once at
/// start ([`render_kafka_offsets`]): a server runs on one storage, and every page, stream read
/// and subscription renders through [`write_event`].
static KAFKA_OFFSETS: std::sync::atomic::AtomicBool = std::sync::atomic::AtomicBool::new(false);

/// Renders events' Kafka offsets from now on (a server on Kafka storage, at start).
pub fn render_kafka_offsets() {
    KAFKA_OFFSETS.store(true, std::sync::atomic::Ordering::Relaxed);
}

/// Headers of an event decoded onto the stack before spilling to the heap: events carry a
/// handful (the CloudEvents attributes, a content type, some metadata).
const HEADERS_INLINE: usize = 16;

/// The header names [`write_event`] gives their own keys, as bytes (so they can be patterns).
const CE_ID: &[u8] = envelope::CE_ID.as_bytes();
const CE_TYPE: &[u8] = envelope::CE_TYPE.as_bytes();
const CE_SOURCE: &[u8] = envelope::CE_SOURCE.as_bytes();
const CE_TIME: &[u8] = envelope::CE_TIME.as_bytes();
const CE_SPECVERSION: &[u8] = envelope::CE_SPECVERSION.as_bytes();
const CONTENT_TYPE: &[u8] = envelope::CONTENT_TYPE.as_bytes();
const KAFKA_OFFSET: &[u8] = envelope::KAFKA_OFFSET.as_bytes();

/// The headers of a stored record, decoded from Kafka's record encoding (for the name and
/// then the value: a zig-zag varint length, -1 for null, then the bytes) exactly as
/// `Event::headers` decodes them, stopping where it stops: at bytes that are not a header, at
/// a null name, at a name that is not UTF-8. Written here rather than through that iterator
/// because a page decodes thousands of headers: one-byte lengths (below 64, as names' and most
/// values' are) are decoded inline, and names are not checked one by one when the caller
/// checked all the bytes at once (`names_ascii`).
struct StoredHeaders<'a> {
    rest: &'a [u8],
    left: usize,
    names_ascii: bool,
}

impl<'a> StoredHeaders<'a> {
    /// The next length-prefixed piece: Some(None) for a null one, None for bytes that are not
    /// a piece.
    #[inline]
    fn piece(&mut self) -> Option<Option<&'a [u8]>> {
        let (len, used) = match self.rest.first() {
            Some(&b) if b < 0x80 => (i32::from(b >> 1) ^ -i32::from(b & 1), 1),
            _ => evident_core::varint::get_varint(self.rest)?,
        };
        let body = &self.rest[used..];
        match usize::try_from(len) {
            Ok(len) => {
                let piece = body.get(..len)?;
                self.rest = &body[len..];
                Some(Some(piece))
            }
            Err(_) if len == -1 => {
                self.rest = body;
                Some(None)
            }
            Err(_) => None,
        }
    }
}

impl<'a> Iterator for StoredHeaders<'a> {
    type Item = (&'a [u8], Option<&'a [u8]>);

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        self.left -= 1;
        let header = match (self.piece(), self.piece()) {
            (Some(Some(name)), Some(value)) if self.names_ascii || std::str::from_utf8(name).is_ok() => {
                Some((name, value))
            }
            _ => None,
        };
        if header.is_none() {
            self.left = 0;
        }
        header
    }
}

/// The attribute name of an extension header (`ce_` and a name CloudEvents does not give its
/// own key), or None.
fn extension(name: &[u8]) -> Option<&[u8]> {
    match name {
        CE_ID | CE_TYPE | CE_SOURCE | CE_TIME | CE_SPECVERSION => None,
        n => n.strip_prefix(b"ce_"),
    }
}

/// The payload as JSON text when it can be embedded as `data`: its content type (if any) says
/// JSON, it is UTF-8 and it is exactly one JSON value. Records written by Kafka producers can
/// claim JSON and carry anything, so the check stays: invalid JSON goes out as `data_base64`,
/// never as broken output. The text is the value without the whitespace around it, as
/// serde_json's raw-value parse finds it (see `scan`).
fn json_data<'a>(bytes: &'a [u8], content_type: Option<&[u8]>) -> Option<&'a [u8]> {
    if !content_type.is_none_or(|ct| ct.windows(4).any(|w| w == b"json")) {
        return None;
    }
    if !bytes.is_ascii() && std::str::from_utf8(bytes).is_err() {
        return None;
    }
    let json = &bytes[scan::json_value_span(bytes)?];
    // A Kafka producer can store JSON of any depth (the append path refuses what HTTP clients
    // send deeper than DATA_DEPTH_MAX, Kafka's cannot). Rendered as JSON it would make the
    // whole page unparseable for serde_json (the CLI, the library) and Python alike, and block
    // every reader of `/v1/all`, the topic and the stream at that event: such a value goes out
    // as `data_base64` instead, its `datacontenttype` still saying it is JSON. Nesting `d`
    // deep takes at least `2d` bytes, so short values skip the scan.
    if json.len() > 2 * DATA_DEPTH_MAX && json_depth(json) > DATA_DEPTH_MAX {
        return None;
    }
    Some(json)
}

fn push_header_entry(out: &mut Vec<u8>, i: usize, name: &[u8], value: Option<&[u8]>, is_text: impl Fn(&[u8]) -> bool) {
    if i > 0 {
        out.push(b',');
    }
    push_str(out, name);
    out.push(b':');
    push_header_value(out, value, is_text);
}

/// A header value as JSON: its text when it is UTF-8, `null` when absent, and otherwise
/// `{"base64": "..."}` (standard alphabet, padded). Kafka producers may put any bytes in a
/// header; an object cannot be mistaken for a text value (a string prefix such as `base64:`
/// could be a real value), and it keeps the name where clients look for it.
fn push_header_value(out: &mut Vec<u8>, value: Option<&[u8]>, is_text: impl Fn(&[u8]) -> bool) {
    match value {
        None => out.extend_from_slice(b"null"),
        Some(bytes) if is_text(bytes) => push_str(out, bytes),
        Some(bytes) => {
            out.extend_from_slice(b"{\"base64\":\"");
            push_base64(out, bytes);
            out.extend_from_slice(b"\"}");
        }
    }
}

/// `bytes` in standard, padded base64.
fn push_base64(out: &mut Vec<u8>, bytes: &[u8]) {
    let at = out.len();
    // Four characters for every three bytes or fewer: the exact length with padding.
    out.resize(at + bytes.len().div_ceil(3) * 4, 0);
    let written = base64::engine::general_purpose::STANDARD
        .encode_slice(bytes, &mut out[at..])
        .expect("the buffer holds the padded encoding");
    out.truncate(at + written);
}

fn push_opt_str(out: &mut Vec<u8>, s: Option<&[u8]>) {
    match s {
        Some(s) => push_str(out, s),
        None => out.extend_from_slice(b"null"),
    }
}

/// `s`, which is UTF-8, as a JSON string, escaped as serde_json escapes: `\"`, `\\`, `\b`,
/// `\f`, `\n`, `\r`, `\t`, other control characters as `\u00XX` (lower-case hex); everything
/// else, non-ASCII included, as it is (U+2028 and U+2029 are valid in JSON strings). Runs
/// that need no escape, the common case, are found eight bytes at a time and copied whole.
fn push_str(out: &mut Vec<u8>, s: &[u8]) {
    debug_assert!(std::str::from_utf8(s).is_ok(), "only text is written as a JSON string");
    out.reserve(s.len() + 2);
    out.push(b'"');
    let mut rest = s;
    loop {
        let clean = scan::escape_free_len(rest);
        out.extend_from_slice(&rest[..clean]);
        let Some(&b) = rest.get(clean) else { break };
        // `b` is ASCII, so the rest starts on a character boundary.
        push_escape(out, b);
        rest = &rest[clean + 1..];
    }
    out.push(b'"');
}

fn push_escape(out: &mut Vec<u8>, b: u8) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    match b {
        b'"' => out.extend_from_slice(b"\\\""),
        b'\\' => out.extend_from_slice(b"\\\\"),
        0x08 => out.extend_from_slice(b"\\b"),
        0x0c => out.extend_from_slice(b"\\f"),
        b'\n' => out.extend_from_slice(b"\\n"),
        b'\r' => out.extend_from_slice(b"\\r"),
        b'\t' => out.extend_from_slice(b"\\t"),
        _ => out.extend_from_slice(&[b'\\', b'u', b'0', b'0', HEX[usize::from(b >> 4)], HEX[usize::from(b & 0xf)]]),
    }
}

/// The record timestamp as a JSON string, the RFC 3339 text remembered per thread as JSON:
/// the events of a batch share their timestamp, so a page of them formats it once instead of
/// per event, and copies it.
fn push_timestamp(out: &mut Vec<u8>, ms: i64) {
    thread_local! {
        static LAST: std::cell::RefCell<(i64, Vec<u8>)> = const { std::cell::RefCell::new((i64::MIN, Vec::new())) };
    }
    LAST.with(|last| {
        let mut last = last.borrow_mut();
        if last.0 != ms || last.1.is_empty() {
            let mut json = Vec::new();
            push_str(&mut json, rfc3339(ms).as_bytes());
            *last = (ms, json);
        }
        out.extend_from_slice(&last.1);
    });
}

/// A JSON response serialized into one buffer (the append reply: one position per event).
/// axum's `Json` writes through a `BufMut` writer whose per-call overhead shows in profiles
/// (serde_json makes many small writes); a `Vec` takes them at memcpy speed.
pub fn json_response<T: Serialize>(value: &T, items: usize) -> Result<axum::response::Response, ApiError> {
    use axum::response::IntoResponse;
    let mut buf = Vec::with_capacity(256 + items * 64);
    serde_json::to_writer(&mut buf, value).map_err(|e| ApiError::internal(format!("cannot encode the reply: {e}")))?;
    Ok(([(axum::http::header::CONTENT_TYPE, "application/json")], buf).into_response())
}

/// A page of events (a stream, partition or `/v1/all` read) written by hand, as [`write_event`]
/// writes an event: the page's few fixed fields in the order they are given (keys as constant
/// text, numbers through `itoa`, strings escaped as serde_json escapes them, `null` for None)
/// and its events with [`write_event`]. Pages were serde structs once, with the events
/// embedded through serde_json's private raw-value name; writing the page too keeps the
/// events' rendering on the fast path without relying on a serde_json internal. The wire form
/// is `evident_api`'s page schemas, which the OpenAPI document names; the tests compare the
/// text with what serde_json writes for the same fields.
pub struct PageWriter {
    out: Vec<u8>,
    /// The body size past which [`PageWriter::events`] takes no further event.
    budget: usize,
    /// How many events the last [`PageWriter::events`] wrote.
    shown: usize,
}

impl PageWriter {
    /// A page of at most `budget` bytes, about to hold (a prefix of) `events`: the buffer is
    /// sized for the events that fit, from their stored bytes ([`rendering_bytes_max_likely`]),
    /// because growing it copies everything rendered so far (profiles of 1,000-event reads
    /// showed the `realloc`), while capacity never written costs no memory, and [`PageWriter::events`] stops before the event that
    /// would take the body past `budget` (writing at least one). See `http/budget.rs`.
    pub fn bounded(events: &[Event], budget: usize) -> Self {
        let mut out = Vec::with_capacity(super::budget::page_bytes_likely(events, budget));
        out.push(b'{');
        PageWriter { out, budget, shown: 0 }
    }

    /// The first event of `events` that the page left out for its byte budget, if any: where
    /// the next page starts.
    pub fn left_out<'a>(&self, events: &'a [Event]) -> Option<&'a Event> {
        events.get(self.shown)
    }

    /// Opens a field. `name` is written as it is: it is a constant of the page's schema, a
    /// plain identifier that needs no escape.
    fn key(&mut self, name: &'static str) {
        debug_assert!(
            scan::escape_free_len(name.as_bytes()) == name.len(),
            "{name:?} is a field name that needs no escape"
        );
        if self.out.len() > 1 {
            self.out.push(b',');
        }
        self.out.push(b'"');
        self.out.extend_from_slice(name.as_bytes());
        self.out.extend_from_slice(b"\":");
    }

    /// A text field.
    pub fn str(&mut self, name: &'static str, value: &str) -> &mut Self {
        self.key(name);
        push_str(&mut self.out, value.as_bytes());
        self
    }

    /// A number field.
    pub fn u64(&mut self, name: &'static str, value: u64) -> &mut Self {
        self.key(name);
        self.out.extend_from_slice(itoa::Buffer::new().format(value).as_bytes());
        self
    }

    /// A number field that may be `null`.
    pub fn opt_u64(&mut self, name: &'static str, value: Option<u64>) -> &mut Self {
        match value {
            Some(v) => self.u64(name, v),
            None => {
                self.key(name);
                self.out.extend_from_slice(b"null");
                self
            }
        }
    }

    /// An array of events, each as [`write_event`] renders it, as many as fit the page's byte
    /// budget and at least one ([`PageWriter::left_out`] names the first left out). An event
    /// is rendered and then taken back if it passes the budget: rendering is the only exact
    /// measure (escapes, base64), and it costs at most one event per page.
    pub fn events(&mut self, name: &'static str, events: &[Event]) -> &mut Self {
        self.key(name);
        self.out.push(b'[');
        self.shown = 0;
        for (i, e) in events.iter().enumerate() {
            let before = self.out.len();
            if i > 0 {
                self.out.push(b',');
            }
            write_event(&mut self.out, e);
            // Room for the closing bracket and brace and the fields after the events.
            if i > 0 && self.out.len().saturating_add(PAGE_TAIL_BYTES) > self.budget {
                self.out.truncate(before);
                break;
            }
            self.shown = i + 1;
        }
        self.out.push(b']');
        self
    }

    /// The page's text (UTF-8), closed.
    pub fn finish(mut self) -> Vec<u8> {
        self.out.push(b'}');
        self.out
    }
}

/// The bytes the rendering of `events` takes, unless their strings need many escapes: per
/// event the fixed keys, numbers and timestamps ([`EVENT_FIXED_BYTES`]), the topic, and the
/// stored key, value and headers a third larger (what base64 makes of bytes that are not
/// text or JSON; text and JSON are written as they are).
pub(super) fn rendering_bytes_max_likely(events: &[Event]) -> usize {
    events
        .iter()
        .map(|e| {
            let stored = e.key.as_ref().map_or(0, |k| k.len())
                + e.value.as_ref().map_or(0, |v| v.len())
                + e.encoded_headers().0.len();
            EVENT_FIXED_BYTES + e.topic.as_str().len() + stored.div_ceil(3) * 4
        })
        .sum()
}

/// What a page writes after its events: the brackets and its cursor fields.
const PAGE_TAIL_BYTES: usize = 64;

/// What an event's rendering takes beyond its stored bytes: the keys (about 170 bytes), the
/// positions and two timestamps, rounded up.
const EVENT_FIXED_BYTES: usize = 320;

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
            write_event(&mut buf, &events[next]);
            buf.push(b'\n');
            next += 1;
        }
        Some((Ok::<_, std::io::Error>(axum::body::Bytes::from(buf)), (events, next)))
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
        let first: Value = value(&events[0]);
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
        let second: Value = value(&events[1]);
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
    fn stored_json_deeper_than_a_page_can_carry_reads_as_base64() {
        for (depth, as_json) in [(DATA_DEPTH_MAX, true), (DATA_DEPTH_MAX + 1, false), (100_000, false)] {
            let data = nested(depth);
            let rendered = json_data(data.as_bytes(), Some(b"application/json"));
            assert_eq!(rendered.is_some(), as_json, "depth {depth}");
            // Whatever the depth, a page carrying the event parses with serde_json's limit.
            let field = match rendered {
                Some(json) => format!(r#""data":{}"#, std::str::from_utf8(json).unwrap()),
                None => r#""data_base64":"AA==""#.to_string(),
            };
            let page = format!(r#"{{"events":[{{{field}}}]}}"#);
            serde_json::from_str::<Value>(&page).unwrap_or_else(|e| panic!("depth {depth}: {e}"));
        }
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
        let json: Value = value(&events[0]);
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
        let expected: Vec<Value> = read.events.iter().map(value).collect();
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
    fn strings_escape_as_serde_json_escapes_them() {
        let mut cases: Vec<String> = vec![
            String::new(),
            "plain".into(),
            "quote \" and backslash \\ inside".into(),
            "\"\\".into(),
            "new\nline, tab\t, return\r, backspace\u{8}, form feed\u{c}, nul \u{0}, unit separator \u{1f}, del \u{7f}"
                .into(),
            "non-ASCII: é, 日本, 🦀".into(),
            "line separators \u{2028} and \u{2029} stay as they are".into(),
        ];
        // Every ASCII byte, alone and at each place around the edges of the eight-byte words
        // the scan reads.
        for b in 0u8..0x80 {
            let c = char::from(b);
            cases.push(c.to_string());
            for at in [0, 7, 8, 9, 15, 16, 17, 23, 24] {
                let mut s = "x".repeat(26);
                s.replace_range(at..at + 1, &c.to_string());
                cases.push(s);
            }
        }
        for case in &cases {
            let mut out = Vec::new();
            push_str(&mut out, case.as_bytes());
            let out = String::from_utf8(out).expect("UTF-8");
            assert_eq!(out, serde_json::to_string(case).expect("json"), "{case:?}");
            assert_eq!(serde_json::from_str::<String>(&out).expect("parses"), *case);
        }
    }

    /// One record appended to a fresh log, read back.
    fn stored(record: evident_core::batch::NewRecord) -> (tempfile::TempDir, Event) {
        use evident_core::batch::BatchBuilder;
        let dir = tempfile::tempdir().expect("tmp");
        let log = evident_log::Log::open(dir.path(), evident_log::LogConfig::default()).expect("open");
        log.create_topic("t", evident_log::TopicConfig::default()).expect("topic");
        let mut b = BatchBuilder::new();
        b.push(record);
        log.append_batch("t", 0, &b.build(), None).expect("append");
        let mut events = log.read_partition_events("t", 0, 0, 10).expect("read");
        (dir, events.remove(0))
    }

    fn rendered(e: &Event) -> String {
        let mut out = Vec::new();
        write_event(&mut out, e);
        String::from_utf8(out).expect("write_event writes UTF-8")
    }

    #[test]
    fn escapes_and_bytes_that_are_not_text_in_keys_headers_and_attributes() {
        use evident_core::batch::NewRecord;
        let h = |k: &str, v: &[u8]| (k.to_string(), Some(v.to_vec()));
        let (_dir, e) = stored(NewRecord {
            key: Some(vec![b'k', 0xff]),
            value: Some(b"\"text\"".to_vec()),
            headers: vec![
                h("ce_id", b"quote\" backslash\\ nul\0"),
                h("ce_type", &[0xc3, 0x28]),
                h("ce_source", "/\u{2028}é".as_bytes()),
                h("ce_trace\n", b"line\nbreak"),
                h("ce_specversion", b"0.3"),
                h("z\"name", b"last"),
                h("a", &[0x80]),
            ],
            timestamp_ms: 1_500,
        });
        let text = rendered(&e);
        let json: Value = serde_json::from_str(&text).expect("valid JSON");
        assert_eq!(json["id"], "quote\" backslash\\ nul\0");
        assert_eq!(json["type"], Value::Null, "an attribute that is not UTF-8 reads as null");
        assert_eq!(json["source"], "/\u{2028}é");
        assert!(text.contains("\"/\u{2028}é\""), "non-ASCII and U+2028 are written as they are");
        assert_eq!(json["specversion"], "1.0", "the stored specversion does not repeat");
        assert_eq!(json["trace\n"], "line\nbreak");
        assert_eq!(json["time"], "1970-01-01T00:00:01.500Z");
        assert_eq!(json["data"], "text");
        assert_eq!(json["key_base64"], "a/8=");
        assert!(json.get("key").is_none());
        assert_eq!(json["headers"]["a"], serde_json::json!({ "base64": "gA==" }));
        assert_eq!(json["headers"]["z\"name"], "last");
        let names: Vec<&String> = json["headers"].as_object().expect("object").keys().collect();
        assert_eq!(names, ["a", "z\"name"], "headers sorted by name");
    }

    #[test]
    fn headers_stored_out_of_order_or_repeated_read_sorted_with_the_last_of_a_name() {
        use evident_core::batch::NewRecord;
        let h = |k: &str, v: &str| (k.to_string(), Some(v.as_bytes().to_vec()));
        let (_dir, e) = stored(NewRecord {
            key: None,
            value: None,
            headers: vec![h("b", "1"), h("content-type", "text/plain"), h("a", "2"), h("b", "3"), ("c".into(), None)],
            timestamp_ms: 0,
        });
        let text = rendered(&e);
        assert!(text.ends_with(r#""headers":{"a":"2","b":"3","c":null}}"#), "{text}");
        assert!(text.contains(r#","datacontenttype":"text/plain","data":null,"topic":"t","key":null,"#), "{text}");
        assert!(text.contains(r#""version":null,"#), "{text}");
    }

    #[test]
    fn payloads_that_are_not_json_read_as_base64_never_as_broken_output() {
        use evident_core::batch::NewRecord;
        let with = |value: &[u8], ct: Option<&str>| {
            let headers = ct.map(|ct| ("content-type".to_string(), Some(ct.as_bytes().to_vec()))).into_iter().collect();
            let (_dir, e) = stored(NewRecord { key: None, value: Some(value.to_vec()), headers, timestamp_ms: 0 });
            let text = rendered(&e);
            serde_json::from_str::<Value>(&text).unwrap_or_else(|err| panic!("{err}: {text}"))
        };
        // A Kafka producer can claim JSON and send anything.
        assert_eq!(with(b"{\"a\":", Some("application/json"))["data_base64"], "eyJhIjo=");
        assert_eq!(with(b"1 2", None)["data_base64"], "MSAy", "two values are not one");
        assert_eq!(with(&[b'"', 0xff, b'"'], None)["data_base64"], "Iv8i");
        assert_eq!(with(b"{}", Some("text/plain"))["data_base64"], "e30=", "not a JSON type");
        let spaced = with(b" \n{\"a\": [1, 2]}\t", Some("application/cloudevents+json"));
        assert_eq!(spaced["data"], serde_json::json!({ "a": [1, 2] }), "the value without its surrounding space");
    }

    /// A rendered event parsed back.
    fn value(e: &Event) -> Value {
        serde_json::from_str(&rendered(e)).expect("valid JSON")
    }

    #[test]
    fn pages_are_what_serde_json_writes_for_the_same_fields() {
        use evident_core::batch::NewRecord;
        let (_dir, e) = stored(NewRecord {
            key: Some(b"k".to_vec()),
            value: Some(br#"{"n": 1}"#.to_vec()),
            headers: vec![("tenant".into(), Some(b"acme".to_vec()))],
            timestamp_ms: 7,
        });
        let events = [e.clone(), e];
        // The events as `RawValue`s of their rendering (the public, checking constructor), so
        // serde_json writes them as they are and the page's fixed fields are what is compared.
        let raw: Vec<Box<RawValue>> =
            events.iter().map(|e| RawValue::from_string(rendered(e)).expect("valid JSON")).collect();
        #[derive(Serialize)]
        struct Page<'a> {
            topic: &'a str,
            partition: Option<u32>,
            current_version: u64,
            events: &'a [Box<RawValue>],
            next_version: Option<u64>,
        }
        for (topic, partition, next_version) in
            [("t", Some(3), None), ("quote \" backslash \\ nl \n \u{1} é", None, Some(u64::MAX))]
        {
            let mut page = PageWriter::bounded(&events, usize::MAX);
            page.str("topic", topic)
                .opt_u64("partition", partition.map(u64::from))
                .u64("current_version", 0)
                .events("events", &events)
                .opt_u64("next_version", next_version);
            let expected = Page { topic, partition, current_version: 0, events: &raw, next_version };
            assert_eq!(page.finish(), serde_json::to_string(&expected).expect("text").into_bytes());
        }
        let mut empty = PageWriter::bounded(&[], usize::MAX);
        empty.events("events", &[]).opt_u64("next_sequence", None).u64("head_sequence", 9);
        assert_eq!(empty.finish(), br#"{"events":[],"next_sequence":null,"head_sequence":9}"#);
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

/// What a 1,000-event read costs in this process: the log's read, the JSON page and the NDJSON
/// rendering, on the HTTP benchmark's event (a 216-byte JSON payload, three metadata headers).
/// Not a check (timings vary with the machine): run it by name with `--ignored --nocapture`,
/// and under `perf record` to see where the time goes (`EVIDENT_COST_ONLY=page` runs one part).
///
/// Kept beside `evident-bench --only http` because the bench cannot give this split: it
/// measures the server whole (engine, rendering, hyper, the kernel's loopback send, the
/// blocking-pool hand-off, and the client's decoding competing for the same cores), where the
/// rendering's own cost is a share of a profile; here it is a number, measured without the
/// server's noise, which is what a change to the rendering is judged by.
#[cfg(test)]
mod cost {
    use std::time::{Duration, Instant};

    use evident_core::envelope::EventData;
    use evident_core::ExpectedVersion;

    use super::*;

    const DATA: &str = r#"{"orderId": "5f1c7c2e-8d3b-4a51-9b7e-2f6d3c1a9e44", "customerId": "c-000123", "items": [{"sku": "SKU-12345", "qty": 2, "price": 1999}, {"sku": "SKU-67890", "qty": 1, "price": 4999}], "currency": "EUR", "total": 8997}"#;

    /// This thread's time on a CPU (the machine may be shared: wall time would count waiting).
    fn cpu_time() -> Duration {
        let stat = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap_or_default();
        Duration::from_nanos(stat.split_whitespace().next().and_then(|ns| ns.parse().ok()).unwrap_or(0))
    }

    fn per_call(what: &str, mut f: impl FnMut() -> usize) {
        let mut sink = 0usize;
        for _ in 0..20 {
            sink = sink.wrapping_add(f());
        }
        let (start, cpu, mut calls) = (Instant::now(), cpu_time(), 0u32);
        while start.elapsed() < Duration::from_secs(2) {
            sink = sink.wrapping_add(f());
            calls += 1;
        }
        println!("{what}: {:?} CPU per call ({calls} calls, {sink})", (cpu_time() - cpu) / calls);
    }

    #[test]
    #[ignore = "a measurement, not a check: run by name with --ignored --nocapture"]
    fn a_1000_event_read() {
        let dir = tempfile::tempdir().expect("tmp");
        let log = evident_log::Log::open(dir.path(), evident_log::LogConfig::default()).expect("open");
        log.create_topic("t", evident_log::TopicConfig::default()).expect("topic");
        let events: Vec<EventData> = (0..1000)
            .map(|i| {
                let mut e = EventData::json(format!("00000009-0000-4000-8000-{i:012x}"), "OrderPlaced", DATA);
                e.source = Some(DEFAULT_SOURCE.into());
                e.extra_headers = vec![
                    ("causationid".into(), Some(b"cmd-42".to_vec())),
                    ("correlationid".into(), Some(b"9b2f6a4e-1c3d-4e5f-8a7b-6c5d4e3f2a1b".to_vec())),
                    ("userid".into(), Some(b"u-42".to_vec())),
                ];
                e
            })
            .collect();
        log.append_events("t", b"bench-read", ExpectedVersion::NoStream, &events).expect("append");
        let options = evident_log::StreamReadOptions { limit: 1000, ..Default::default() };
        let read = || log.read_stream("t", b"bench-read", &options).expect("read").events;
        let page = |events: &[Event]| {
            let mut page = PageWriter::bounded(events, usize::MAX);
            page.str("topic", "t").str("key", "bench-read").opt_u64("partition", Some(0)).u64("current_version", 999);
            page.events("events", events).opt_u64("next_version", None);
            page.finish()
        };
        let held = read();
        println!("page: {} bytes", page(&held).len());
        let only = std::env::var("EVIDENT_COST_ONLY").unwrap_or_default();
        if only.is_empty() || only == "read" {
            per_call("Log::read_stream", || read().len());
        }
        if only.is_empty() || only == "page" {
            per_call("JSON page of held events", || page(&held).len());
        }
        if only.is_empty() || only == "ndjson" {
            per_call("NDJSON of held events", || {
                let mut out = Vec::with_capacity(NDJSON_CHUNK + 4096);
                let mut total = 0;
                for e in &held {
                    write_event(&mut out, e);
                    out.push(b'\n');
                    if out.len() >= NDJSON_CHUNK {
                        total += out.len();
                        out = Vec::with_capacity(NDJSON_CHUNK + 4096);
                    }
                }
                total + out.len()
            });
        }
        if only.is_empty() || only == "both" {
            per_call("read and JSON page", || page(&read()).len());
        }
    }
}
