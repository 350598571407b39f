//! The HTTP backend: an `evident serve` reached over its HTTP API (docs/http-api.md), so that
//! code written against [`Backend`] runs unchanged against a server, with the same results as
//! on the [`EmbeddedBackend`](super::EmbeddedBackend) for everything the library writes.
//!
//! **Transport.** One async `reqwest` client per backend (cheap to clone, shared), with
//! keep-alive connections, `TCP_NODELAY`, a connect timeout of 5 s, a per-request timeout of
//! 60 s ([`HttpBackend::with_request_timeout`] changes it) and no redirects (a data API that
//! redirects is misconfigured; following a redirect would turn a `POST` into a `GET`). Only
//! `http://` URLs: this build of `reqwest` has no TLS (put a TLS-terminating proxy beside the
//! client if the network needs one). The client's pooled connections belong to the tokio runtime
//! that opened them: keep a backend on one runtime (the [`crate::blocking`] facade uses one
//! process-wide runtime for this reason).
//!
//! **Wire types.** Requests and replies are `evident-api`'s types, the ones the server and the
//! CLI use, so a field renamed there is renamed here at compile time: appends are an
//! [`AppendRequest`], queries the route's parameter struct, replies and errors decoded into the
//! API's page, position and [`ErrorBody`] types. Each [`ErrorCode`] maps to one [`Error`]
//! variant in an exhaustive `match` ([`library_error`]), so a code added to the API does not
//! compile here until it is given one; a code this build does not know (a newer server's) is
//! taken by its HTTP status, as the API tells clients to. Events inside pages are the one part
//! not decoded into the API's [`Event`](api::streams::Event): a page is read as
//! `StreamPage<&RawValue>` and each event decoded here, keeping its attributes' order and its
//! `data` text byte for byte, which a parsed tree would lose.
//!
//! **Bounded allocation.** A response body larger than [`RESPONSE_MAX_BYTES`] is refused
//! (checked against `Content-Length` first, then while reading), so a hostile or broken server
//! cannot make the client allocate without bound. Reads that hit the cap are retried with half
//! the page size, down to one event, so large events still read.
//!
//! **Paths.** Stream keys may hold any character: each path segment is percent-encoded (every
//! byte but `A-Z a-z 0-9 - . _ ~`). The keys `.` and `..` alone cannot be addressed: URL parsing
//! (WHATWG, which `reqwest` follows) removes dot segments, even percent-encoded ones, so such a
//! key is refused (`Error::Rejected`) instead of silently reaching another resource.
//!
//! **Appends.** Each [`EventData`] becomes a CloudEvents JSON event. The payload goes as `data`
//! (raw JSON text, stored byte for byte) when the content type is JSON (or absent) and the bytes
//! are one JSON value without surrounding whitespace, else as `data_base64`, so the stored bytes
//! are always exactly the caller's. Extra headers: `ce_subject` and `ce_dataschema` become the
//! `subject` and `dataschema` attributes; every other header goes in `headers` and must have a
//! UTF-8 value (else `Error::Rejected`: the API carries header values as text); other `ce_*`
//! extensions, and a name given twice, cannot be expressed over the API and are refused.
//!
//! **Reads.** The server renders each record as CloudEvents JSON; this backend turns it back
//! into the [`RecordedEvent`] that `EmbeddedBackend` builds from the same record: `id`, `type`,
//! positions, `timestamp` (RFC 3339, parsed to milliseconds), `data` as its raw JSON text (the
//! stored bytes) or decoded from `data_base64`, and the headers rebuilt in the order the library
//! and the HTTP API store them: `ce_source` (from `source`), `ce_time` (from `time`, see below),
//! `content-type` (from `datacontenttype`), the `ce_*` extensions (top-level attributes, in
//! order), then the plain `headers`. A stream read longer than the server's page (10,000
//! events) is fetched in pages pinned to the version the first page saw, so it is one snapshot
//! of the stream as the embedded read is. An unknown topic or stream is an empty page, as there.
//! Partition reads (the dead-letter queue's listing) use the server's partition route, in pages.
//!
//! **What cannot match the embedded backend** (the cross-backend test in
//! `crates/evident-server/tests/library_http.rs` pins the rest):
//! - The server fills in what an event leaves out: an event without `source` is stored with
//!   `ce_source: /evident/http`, one without a content type with `content-type:
//!   application/json` (or `application/octet-stream` for non-JSON bytes). The library's
//!   repository and snapshots always set both, so their records are identical.
//! - The server stores `subject`, `dataschema`, then the plain headers sorted by name; the
//!   embedded log keeps the caller's order. Identical when the caller's extra headers are in
//!   that order (the repository's and the snapshots' are).
//! - `time` is `ce_time` when the record has one, else the record timestamp: a stored `ce_time`
//!   equal, character for character, to the server's rendering of the record's own timestamp
//!   (`2026-01-01T00:00:00.123Z`) is taken for the timestamp and left out.
//! - The server validates more: `time` must be RFC 3339, a header value UTF-8, an append at
//!   most the server's body limit (8 MiB by default); internal topics (`__*`) cannot be written.
//! - Records not written through the library or the HTTP API (Kafka producers) may differ
//!   further: header values that are not UTF-8 read as `None`, a duplicated CloudEvents header
//!   appears once, a record with no value reads as `null` (embedded: empty), JSON payloads with
//!   whitespace around them read trimmed, and headers come back in the canonical order above.
//! - `read_all` and `wait_for_sequence` see what the API shows: internal topics
//!   (`__consumer_offsets`) are left out, so a commit there wakes no waiter (the embedded log
//!   counts it). `head_sequence` counts every commit, as the embedded one does.
//!
//! **Waiting.** [`Backend::wait_for_sequence`] opens the Server-Sent Events subscription
//! `GET /v1/subscribe?from_sequence=` with the caller's timeout as the request's deadline, and
//! returns true at the first message (an event at or after the sequence, already there or
//! committed later), false when the deadline passes. The server holds no thread for an idle
//! subscription, and the wake-up is immediate, which long polling in a loop could only
//! approximate at the cost of requests. A timeout under 50 ms is answered with one read instead
//! (a connection could not be set up within it reliably).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::time::Duration;

use base64::Engine;
use evident_api::params::{AllQuery, PartitionReadQuery, ReadDirection, StreamReadQuery, SubscribeQuery};
use evident_api::streams::{AppendBatch, AppendEvent, AppendRequest, AppendResult, ExpectedState};
use evident_api::topics::{CleanupPolicy, CreateTopic, TopicConfig};
use evident_api::{self as api, ErrorBody, ErrorCode, ErrorDetail};
use evident_core::{envelope, EventData, ExpectedVersion, Offset, Sequence, StreamKey, Version};
use reqwest::{Client, RequestBuilder};
use reqwest::{StatusCode, Url};
use serde::de::{Deserializer, MapAccess, Visitor};
use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;

use super::{Appended, Backend, Direction, SqlAnswer, StreamPage, StreamQuery, TopicSpec};
use crate::event::{Header, RecordedEvent};
use crate::{Error, Result};

/// Largest response body the backend reads; a larger one is refused (reads retry with smaller
/// pages).
pub const RESPONSE_MAX_BYTES: usize = 64 << 20;
/// Most events the server returns per read.
const PAGE_MAX: usize = api::limits::READ_LIMIT_MAX;
/// Waits shorter than this are answered by one read instead of a subscription.
const WAIT_PROBE_BELOW: Duration = Duration::from_millis(50);
/// Longest single wait (a longer one returns false after this long; callers loop anyway).
const WAIT_MAX: Duration = Duration::from_secs(365 * 24 * 3600);
/// Connect timeout.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Default per-request timeout.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(60);
/// How long an idle keep-alive connection is kept.
const IDLE_TIMEOUT: Duration = Duration::from_secs(60);

/// An evident server over HTTP.
#[derive(Debug, Clone)]
pub struct HttpBackend {
    /// The base URL without a trailing slash (it may hold a path prefix, behind a proxy).
    base: String,
    client: Client,
}

impl HttpBackend {
    /// A backend for the server at `base` (e.g. `http://127.0.0.1:8080`, or with a path prefix
    /// when a proxy serves the API under one). Checks the URL; connects only when used.
    pub fn new(base: impl Into<String>) -> Result<Self> {
        let base = base.into();
        let url = Url::parse(&base).map_err(|e| Error::Rejected(format!("invalid server URL {base:?}: {e}")))?;
        match url.scheme() {
            "http" => {}
            "https" => {
                return Err(Error::Rejected(format!(
                    "server URL {base:?}: https is not supported by this build (no TLS); use http:// or a local TLS-terminating proxy"
                )))
            }
            other => return Err(Error::Rejected(format!("server URL {base:?}: scheme {other:?} is not http"))),
        }
        if url.host_str().is_none_or(str::is_empty) {
            return Err(Error::Rejected(format!("server URL {base:?} has no host")));
        }
        if url.query().is_some() || url.fragment().is_some() {
            return Err(Error::Rejected(format!("server URL {base:?} must not have a query or a fragment")));
        }
        let base = url.as_str().trim_end_matches('/').to_string();
        Ok(Self { base, client: build_client(REQUEST_TIMEOUT)? })
    }

    /// The same backend with another per-request timeout (default 60 s). Waits
    /// ([`Backend::wait_for_sequence`]) use their own timeout instead.
    pub fn with_request_timeout(mut self, timeout: Duration) -> Result<Self> {
        self.client = build_client(timeout)?;
        Ok(self)
    }

    /// The server's base URL.
    pub fn base_url(&self) -> &str {
        &self.base
    }

    /// The URL of `path` (segments already encoded); queries are added from the route's
    /// parameter struct (`RequestBuilder::query`).
    fn url(&self, path: &str) -> Result<Url> {
        Url::parse(&format!("{}{path}", self.base))
            .map_err(|e| Error::Rejected(format!("cannot build a URL for {path}: {e}")))
    }

    /// The path of stream `topic`/`key`.
    fn stream_path(topic: &str, key: &str) -> Result<String> {
        Ok(format!("/v1/topics/{}/streams/{}", segment("topic", topic)?, segment("stream key", key)?))
    }

    /// Sends `req` and reads the reply, within [`RESPONSE_MAX_BYTES`].
    async fn call(&self, req: RequestBuilder, what: &str) -> Result<Reply> {
        let mut resp = req.send().await.map_err(|e| Error::Unavailable(format!("{what}: {}", chain(&e))))?;
        let status = resp.status();
        if resp.content_length().is_some_and(|n| n > RESPONSE_MAX_BYTES as u64) {
            return Ok(Reply { status, body: None });
        }
        let mut body = Vec::new();
        while let Some(chunk) =
            resp.chunk().await.map_err(|e| Error::Unavailable(format!("{what}: reading the reply: {}", chain(&e))))?
        {
            if body.len() + chunk.len() > RESPONSE_MAX_BYTES {
                return Ok(Reply { status, body: None });
            }
            body.extend_from_slice(&chunk);
        }
        Ok(Reply { status, body: Some(body) })
    }

    /// A GET of a page of events, its query built by `query(limit)`: on a reply over the cap,
    /// asks again for half as many, down to one. Returns the reply and the limit it was asked
    /// with.
    async fn get_page<Q: Serialize>(
        &self,
        path: &str,
        query: impl Fn(u64) -> Q,
        limit: usize,
        what: &str,
    ) -> Result<(Reply, usize)> {
        let mut limit = limit.clamp(1, PAGE_MAX);
        loop {
            let request = self.client.get(self.url(path)?).query(&query(limit as u64));
            let reply = self.call(request, what).await?;
            if reply.body.is_some() || limit == 1 {
                return Ok((reply, limit));
            }
            limit /= 2;
        }
    }

    /// The store's next commit sequence, from an empty read past the end.
    async fn head(&self) -> Result<u64> {
        let what = "GET /v1/all";
        let query = AllQuery { from_sequence: Some(u64::MAX), limit: Some(1) };
        let reply = self.call(self.client.get(self.url("/v1/all")?).query(&query), what).await?;
        let body = reply.ok_body(what, On::Store)?;
        let page: api::records::AllPage<&RawValue> = parse_json(&body, what)?;
        Ok(page.head_sequence)
    }
}

fn build_client(timeout: Duration) -> Result<Client> {
    Client::builder()
        .connect_timeout(CONNECT_TIMEOUT)
        .timeout(timeout)
        .pool_idle_timeout(IDLE_TIMEOUT)
        .tcp_nodelay(true)
        .redirect(reqwest::redirect::Policy::none())
        .user_agent(concat!("evident-library/", env!("CARGO_PKG_VERSION")))
        .build()
        .map_err(|e| Error::Unavailable(format!("cannot build the HTTP client: {}", chain(&e))))
}

/// A reply: its status and body (None: over [`RESPONSE_MAX_BYTES`]).
struct Reply {
    status: StatusCode,
    body: Option<Vec<u8>>,
}

/// What a request was about: the codes that name one of the library's own variants
/// (`unknown_topic`, `wrong_expected_version`) need it to fill the variant in.
#[derive(Debug, Clone, Copy)]
enum On<'a> {
    /// No topic in particular (`/v1/all`, a subscription to everything).
    Store,
    /// A topic.
    Topic(&'a str),
    /// An append to a stream, with what it expected.
    Append { topic: &'a str, key: &'a str, expected: ExpectedVersion },
}

/// A refused request: the status and, when the body was the API's JSON error, its fields.
struct Refusal {
    status: StatusCode,
    // Boxed: the detail grew with the schema-violation fields and would make every
    // `Result<_, Refusal>` large.
    detail: Option<Box<ErrorDetail>>,
    what: String,
}

impl Refusal {
    /// The reply's code, when it had one this build knows.
    fn code(&self) -> Option<ErrorCode> {
        self.detail.as_ref().and_then(|d| ErrorCode::from_code(&d.code))
    }

    /// The library's error for this refusal, when no caller-specific handling applies.
    fn into_error(self, on: On<'_>) -> Error {
        match self.detail {
            Some(detail) => match ErrorCode::from_code(&detail.code) {
                Some(code) => library_error(code, *detail, on, &self.what, self.status),
                // A newer server's code: taken by its HTTP status, as the API tells clients to.
                None => by_status(self.status, &self.what, detail.message),
            },
            None => {
                let message = format!("{}: HTTP {}", self.what, self.status);
                by_status(self.status, &self.what, message)
            }
        }
    }
}

/// The library's error for an API error code: one arm per code, no wildcard, so a code added to
/// `evident-api` is a compile error here until it is given its variant. The rule: a code that
/// names a library variant maps to it; a refusal of the request as asked is
/// [`Error::Rejected`] (fix the request); a failure of the server or of its limits, after which
/// the same request may succeed later, is [`Error::Unavailable`] (retry).
fn library_error(code: ErrorCode, detail: ErrorDetail, on: On<'_>, what: &str, status: StatusCode) -> Error {
    use ErrorCode as C;
    let message = detail.message;
    match code {
        C::WrongExpectedVersion => match on {
            On::Append { topic, key, expected } => Error::WrongExpectedVersion {
                stream: format!("{topic}/{key}"),
                expected,
                current: detail.current_version.flatten().map(Version),
            },
            // Only appends are answered with it.
            On::Store | On::Topic(_) => Error::Rejected(message),
        },
        C::UnknownTopic => match on {
            On::Topic(topic) | On::Append { topic, .. } => Error::UnknownTopic(topic.to_string()),
            On::Store => Error::Rejected(message),
        },
        C::MalformedJson
        | C::MissingField
        | C::InvalidArgument
        | C::InvalidTopicName
        | C::InvalidStreamKey
        | C::InvalidEvent
        | C::SchemaViolation
        | C::InvalidConfig
        | C::InvalidGroup
        | C::InvalidProjection
        | C::DataTooDeep
        | C::OffsetOutOfRange
        | C::Unsupported
        | C::InternalTopic
        | C::UnknownPartition
        | C::StreamNotFound
        | C::UnknownGroup
        | C::UnknownProjection
        | C::UnknownMember
        | C::NothingParked
        | C::NotFound
        | C::MethodNotAllowed
        | C::EventIdReused
        | C::PartialDuplicate
        | C::TopicExists
        | C::GroupNotEmpty
        | C::KeyInOtherPartition
        | C::ProducerConflict
        | C::NotFirstEntry
        | C::GroupFull
        | C::PayloadTooLarge
        | C::UriTooLong
        | C::SqlSyntax
        | C::SqlInvalid
        | C::SqlUnsupported
        | C::UnknownView
        | C::ViewExists
        | C::ViewInUse
        | C::ResultTooLarge
        // The server's storage does not serve the route (a node in front of a Kafka
        // cluster): asking it again will not help, asking the cluster will.
        | C::NotOnCluster => Error::Rejected(message),
        // The body did not arrive in time (nothing was applied), the server failed, is at one of
        // its limits, or ended a subscription: the same request may succeed later.
        C::NotCaughtUp
        | C::ViewFailed
        | C::RequestTimeout
        | C::Internal
        | C::Corrupted
        | C::Unavailable
        | C::OutcomeUnknown
        | C::DiskFull
        | C::TooManyConnections
        | C::TooManySubscriptions
        | C::DeadlineExceeded
        | C::SubscriptionEnded => Error::Unavailable(format!("{what} (HTTP {status}): {message}")),
    }
}

/// The error for a reply without a code this build knows: a server error (or a status no API
/// route answers with) may pass, a client error will not.
fn by_status(status: StatusCode, what: &str, message: String) -> Error {
    if status.is_server_error() || status.is_redirection() || status.is_informational() {
        Error::Unavailable(format!("{what} (HTTP {status}): {message}"))
    } else {
        Error::Rejected(message)
    }
}

impl Reply {
    /// The body of a successful reply, or the refusal.
    fn body_or_refusal(self, what: &str) -> std::result::Result<Result<Vec<u8>>, Refusal> {
        if self.status.is_success() {
            return Ok(self.body.ok_or_else(|| too_large(what)));
        }
        let detail =
            self.body.as_deref().and_then(|b| serde_json::from_slice::<ErrorBody>(b).ok()).map(|b| Box::new(b.error));
        Err(Refusal { status: self.status, detail, what: what.to_string() })
    }

    /// The body of a successful reply, or the mapped error.
    fn ok_body(self, what: &str, on: On<'_>) -> Result<Vec<u8>> {
        self.body_or_refusal(what).map_err(|r| r.into_error(on))?
    }
}

fn too_large(what: &str) -> Error {
    Error::Unavailable(format!("{what}: the reply exceeds {RESPONSE_MAX_BYTES} bytes"))
}

fn parse_json<'a, T: Deserialize<'a>>(body: &'a [u8], what: &str) -> Result<T> {
    serde_json::from_slice(body).map_err(|e| Error::Decode(format!("{what}: unexpected reply from the server: {e}")))
}

/// An error and its causes, for messages (reqwest's own text names only the outer layer).
fn chain(e: &(dyn std::error::Error + 'static)) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        let _ = write!(text, ": {s}");
        source = s.source();
    }
    text
}

/// Whether `e` or a cause of it is a timeout.
fn is_timeout(e: &(dyn std::error::Error + 'static)) -> bool {
    let mut current = Some(e);
    while let Some(e) = current {
        if let Some(r) = e.downcast_ref::<reqwest::Error>() {
            if r.is_timeout() {
                return true;
            }
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            if io.kind() == std::io::ErrorKind::TimedOut {
                return true;
            }
            // An io::Error's `source` skips the error it wraps (reqwest's, on a body read).
            if let Some(inner) = io.get_ref() {
                current = Some(inner);
                continue;
            }
        }
        current = e.source();
    }
    false
}

/// Percent-encodes one path segment: every byte but the URL's unreserved characters.
fn segment(what: &str, s: &str) -> Result<String> {
    if s == "." || s == ".." {
        return Err(Error::Rejected(format!(
            "the {what} {s:?} cannot be addressed over HTTP: URL parsing removes dot segments"
        )));
    }
    let mut out = String::with_capacity(s.len());
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~') {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
    Ok(out)
}

// ===== appends =====

/// The API's form of an expected version.
fn wire_expected(expected: ExpectedVersion) -> api::streams::ExpectedVersion {
    use api::streams::ExpectedVersion as W;
    match expected {
        ExpectedVersion::Any => W::State(ExpectedState::Any),
        ExpectedVersion::NoStream => W::State(ExpectedState::NoStream),
        ExpectedVersion::StreamExists => W::State(ExpectedState::StreamExists),
        ExpectedVersion::Exact(v) => W::Exact(v.0),
    }
}

/// Whether a content type says JSON, as the server decides when rendering (absent counts).
fn is_json_type(content_type: Option<&str>) -> bool {
    content_type.is_none_or(|ct| ct.contains("json"))
}

/// The JSON event for `e`, or why the API cannot carry it.
fn event_out(e: &EventData) -> Result<AppendEvent> {
    let raw = if is_json_type(e.content_type.as_deref()) {
        serde_json::from_slice::<&RawValue>(&e.data).ok().filter(|raw| raw.get().len() == e.data.len())
    } else {
        None
    };
    let mut headers = BTreeMap::new();
    let mut out = AppendEvent {
        event_type: e.event_type.clone(),
        data_base64: raw.is_none().then(|| base64::engine::general_purpose::STANDARD.encode(&e.data)),
        data: raw.map(RawValue::to_owned),
        id: Some(e.id.clone()),
        source: e.source.clone(),
        time: e.time.clone(),
        datacontenttype: e.content_type.clone(),
        specversion: None,
        subject: None,
        dataschema: None,
        headers: None,
    };
    for (name, value) in &e.extra_headers {
        let text = value.as_deref().map(std::str::from_utf8).transpose().map_err(|_| {
            Error::Rejected(format!("event {}: header {name:?} is not UTF-8, which the HTTP API cannot carry", e.id))
        })?;
        let twice = || {
            Error::Rejected(format!("event {}: header {name:?} is given twice, which the HTTP API cannot carry", e.id))
        };
        let attribute = match name.as_str() {
            "ce_subject" => Some(&mut out.subject),
            "ce_dataschema" => Some(&mut out.dataschema),
            n if n.starts_with("ce_") => {
                return Err(Error::Rejected(format!(
                "event {}: the HTTP API takes no CloudEvents extension {name:?} (only ce_subject and ce_dataschema)",
                e.id
            )))
            }
            _ => None,
        };
        match attribute {
            Some(slot) => {
                if slot.is_some() {
                    return Err(twice());
                }
                *slot = Some(
                    text.ok_or_else(|| {
                        Error::Rejected(format!(
                            "event {}: header {name:?} has no value, which the HTTP API cannot carry",
                            e.id
                        ))
                    })?
                    .to_string(),
                );
            }
            None => {
                if headers.insert(name.clone(), text.map(str::to_string)).is_some() {
                    return Err(twice());
                }
            }
        }
    }
    out.headers = (!headers.is_empty()).then_some(headers);
    Ok(out)
}

// ===== reading events =====

/// A JSON object's entries in order, values unparsed (duplicates kept).
struct Entries<'a>(Vec<(String, &'a RawValue)>);

impl<'de> Deserialize<'de> for Entries<'de> {
    fn deserialize<D: Deserializer<'de>>(d: D) -> std::result::Result<Self, D::Error> {
        struct V;
        impl<'de> Visitor<'de> for V {
            type Value = Entries<'de>;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a JSON object")
            }
            fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> std::result::Result<Self::Value, A::Error> {
                let mut out = Vec::new();
                while let Some(entry) = map.next_entry::<String, &'de RawValue>()? {
                    out.push(entry);
                }
                Ok(Entries(out))
            }
        }
        d.deserialize_map(V)
    }
}

/// The attributes the server renders after an event's payload.
const AFTER_DATA: [&str; 9] =
    ["topic", "key", "key_base64", "partition", "offset", "version", "sequence", "timestamp", "headers"];

fn field<'a, T: Deserialize<'a>>(name: &str, raw: &'a RawValue) -> Result<T> {
    serde_json::from_str(raw.get())
        .map_err(|e| Error::Decode(format!("event from the server: field {name:?} is not what was expected: {e}")))
}

fn bad_event(what: &str) -> Error {
    Error::Decode(format!("event from the server: {what}"))
}

fn base64_field(name: &str, raw: &RawValue) -> Result<Vec<u8>> {
    let text: &str = field(name, raw)?;
    base64::engine::general_purpose::STANDARD.decode(text).map_err(|e| bad_event(&format!("{name} is not base64: {e}")))
}

/// A header value as the server renders it: text, `null`, or `{"base64": "..."}` for bytes
/// that are not UTF-8.
fn header_value(name: &str, raw: &RawValue) -> Result<Option<Vec<u8>>> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Value {
        Text(Option<String>),
        Bytes { base64: String },
    }
    match field(name, raw)? {
        Value::Text(text) => Ok(text.map(String::into_bytes)),
        Value::Bytes { base64 } => base64::engine::general_purpose::STANDARD
            .decode(base64)
            .map(Some)
            .map_err(|e| bad_event(&format!("header {name:?} is not base64: {e}"))),
    }
}

/// Milliseconds of the server's rendering of a record timestamp (RFC 3339, or the number when
/// out of the calendar's range).
fn timestamp_ms(text: &str) -> Result<i64> {
    if let Ok(ts) = text.parse::<jiff::Timestamp>() {
        return Ok(ts.as_millisecond());
    }
    text.parse::<i64>().map_err(|_| bad_event(&format!("timestamp {text:?} is not RFC 3339")))
}

/// Rebuilds the record the embedded backend would return from the server's CloudEvents JSON
/// (see the module comment for the mapping).
fn decode_event(raw: &RawValue) -> Result<RecordedEvent> {
    let Entries(entries) = field("event", raw)?;
    // The payload is the last attribute before the positions; extensions (which may bear any
    // name, even `data` or `topic`) all come before it.
    let data_at = entries
        .iter()
        .rposition(|(k, _)| !AFTER_DATA.contains(&k.as_str()))
        .filter(|&i| matches!(entries[i].0.as_str(), "data" | "data_base64"))
        .ok_or_else(|| bad_event("no data or data_base64 before the positions"))?;
    let (mut id, mut event_type, mut source, mut time, mut content_type) = (None, None, None, None, None);
    let mut extensions: Vec<Header> = Vec::new();
    for (name, value) in &entries[..data_at] {
        match name.as_str() {
            "specversion" => {}
            "id" if id.is_none() => id = Some(field::<Option<String>>(name, value)?),
            "type" if event_type.is_none() => event_type = Some(field::<Option<String>>(name, value)?),
            "source" if source.is_none() => source = Some(field::<Option<String>>(name, value)?),
            "time" if time.is_none() => time = Some(field::<String>(name, value)?),
            "datacontenttype" if content_type.is_none() && extensions.is_empty() => {
                content_type = Some(field::<String>(name, value)?)
            }
            other => extensions.push((format!("ce_{other}"), header_value(name, value)?)),
        }
    }
    let (data_name, data_value) = &entries[data_at];
    let data = match data_name.as_str() {
        "data" => data_value.get().as_bytes().to_vec(),
        _ => base64_field(data_name, data_value)?,
    };
    let (mut topic, mut key, mut partition, mut offset, mut version, mut sequence, mut timestamp, mut plain) =
        (None, None, None, None, None, None, None, Vec::new());
    for (name, value) in &entries[data_at + 1..] {
        match name.as_str() {
            "topic" => topic = Some(field::<String>(name, value)?),
            "key" => key = field::<Option<String>>(name, value)?,
            "key_base64" => key = Some(String::from_utf8_lossy(&base64_field(name, value)?).into_owned()),
            "partition" => partition = Some(field::<u32>(name, value)?),
            "offset" => offset = Some(field::<u64>(name, value)?),
            "version" => version = field::<Option<u64>>(name, value)?,
            "sequence" => sequence = Some(field::<u64>(name, value)?),
            "timestamp" => timestamp = Some(field::<String>(name, value)?),
            _ => {
                let Entries(headers) = field(name, value)?;
                for (header, value) in headers {
                    let value = header_value(&header, value)?;
                    plain.push((header, value));
                }
            }
        }
    }
    let missing = |what: &str| bad_event(&format!("no {what}"));
    let timestamp = timestamp.ok_or_else(|| missing("timestamp"))?;
    let mut headers: Vec<Header> = Vec::with_capacity(3 + extensions.len() + plain.len());
    if let Some(Some(source)) = source {
        headers.push((envelope::CE_SOURCE.into(), Some(source.into_bytes())));
    }
    // `time` is the record timestamp's rendering when the record has no ce_time.
    if let Some(time) = time.filter(|t| *t != timestamp) {
        headers.push((envelope::CE_TIME.into(), Some(time.into_bytes())));
    }
    if let Some(ct) = content_type {
        headers.push((envelope::CONTENT_TYPE.into(), Some(ct.into_bytes())));
    }
    headers.extend(extensions);
    headers.extend(plain);
    Ok(RecordedEvent {
        topic: topic.ok_or_else(|| missing("topic"))?,
        partition: partition.ok_or_else(|| missing("partition"))?,
        offset: Offset(offset.ok_or_else(|| missing("offset"))?),
        sequence: Sequence(sequence.ok_or_else(|| missing("sequence"))?),
        version: version.map(Version),
        key,
        id: id.flatten(),
        event_type: event_type.flatten(),
        timestamp_ms: timestamp_ms(&timestamp)?,
        headers,
        data,
    })
}

#[async_trait::async_trait]
impl Backend for HttpBackend {
    async fn ensure_topic(&self, topic: &str, spec: TopicSpec) -> Result<()> {
        let body = CreateTopic {
            name: topic.to_string(),
            partitions: Some(spec.partitions),
            config: Some(TopicConfig {
                partitions: spec.partitions,
                cleanup_policy: if spec.compacted { CleanupPolicy::Compact } else { CleanupPolicy::Delete },
                ..TopicConfig::default()
            }),
        };
        let what = "POST /v1/topics";
        let reply = self.call(self.client.post(self.url("/v1/topics")?).json(&body), what).await?;
        match reply.body_or_refusal(what) {
            Ok(body) => body.map(drop),
            Err(r) if r.code() == Some(ErrorCode::TopicExists) => Ok(()),
            Err(r) => Err(r.into_error(On::Topic(topic))),
        }
    }

    async fn append(
        &self,
        topic: &str,
        key: &str,
        expected: ExpectedVersion,
        events: &[EventData],
    ) -> Result<Appended> {
        let path = Self::stream_path(topic, key)?;
        let body = AppendRequest::Batch(AppendBatch {
            expected_version: Some(wire_expected(expected)),
            events: events.iter().map(event_out).collect::<Result<_>>()?,
        });
        let body = serde_json::to_vec(&body).map_err(|e| Error::Encode(format!("append body: {e}")))?;
        let what = format!("POST {path}");
        let req =
            self.client.post(self.url(&path)?).header(reqwest::header::CONTENT_TYPE, "application/json").body(body);
        let body = self.call(req, &what).await?.ok_body(&what, On::Append { topic, key, expected })?;
        let reply: AppendResult = parse_json(&body, &what)?;
        let (first, last) = match (reply.events.first(), reply.events.last()) {
            (Some(f), Some(l)) => (f, l),
            _ => return Err(Error::Rejected("append returned no position".into())),
        };
        Ok(Appended {
            first_version: Version(first.version.unwrap_or_default()),
            last_version: Version(last.version.unwrap_or_default()),
            last_sequence: Sequence(last.sequence),
            duplicate: reply.duplicate,
        })
    }

    async fn read_stream(&self, topic: &str, key: &str, query: &StreamQuery) -> Result<StreamPage> {
        // Keys the API cannot hold name no stream, and ``, `.` and `..` are no topic's name
        // (the embedded log finds nothing either).
        if key.is_empty() || key.len() > StreamKey::LEN_MAX || matches!(topic, "" | "." | "..") {
            return Ok(StreamPage::default());
        }
        let path = Self::stream_path(topic, key)?;
        let what = format!("GET {path}");
        let want = query.limit;
        let mut events: Vec<RecordedEvent> = Vec::new();
        let mut current_version = None;
        let mut from = query.from_version;
        let mut as_of_version = query.as_of_version;
        let mut page_limit = want.clamp(1, PAGE_MAX);
        let direction = match query.direction {
            Direction::Forward => None,
            Direction::Backward => Some(ReadDirection::Backward),
        };
        let as_of_time = query.as_of_time_ms.map(|t| t.to_string());
        loop {
            let params = |limit| StreamReadQuery {
                from_version: from.map(|v: Version| v.0),
                limit: Some(limit),
                direction,
                as_of_version: as_of_version.map(|v: Version| v.0),
                as_of_time: as_of_time.clone(),
            };
            let ask = page_limit.min(want.saturating_sub(events.len())).max(1);
            let (reply, asked) = self.get_page(&path, params, ask, &what).await?;
            page_limit = asked;
            let body = match reply.body_or_refusal(&what) {
                Ok(body) => body?,
                Err(r)
                    if matches!(
                        r.code(),
                        Some(ErrorCode::UnknownTopic | ErrorCode::StreamNotFound | ErrorCode::InvalidStreamKey)
                    ) =>
                {
                    return Ok(StreamPage::default())
                }
                Err(r) => return Err(r.into_error(On::Topic(topic))),
            };
            let page: api::streams::StreamPage<&RawValue> = parse_json(&body, &what)?;
            let next_version = page.next_version;
            if current_version.is_none() {
                let current = Version(page.current_version);
                current_version = Some(current);
                // Later pages read the stream as the first one saw it: one snapshot, as the
                // embedded read is.
                as_of_version = Some(as_of_version.map_or(current, |a| a.min(current)));
            }
            for raw in page.events {
                events.push(decode_event(raw)?);
            }
            // The server's cursor, not the page's length, says whether there is more: a page
            // holds fewer events than asked when its byte budget (--http-response-max-bytes)
            // cut it, and then `next_version` names the first event it left out.
            if events.len() >= want {
                break;
            }
            let (Some(next), Some(last)) = (next_version, events.last().and_then(|e| e.version)) else { break };
            let advances = match query.direction {
                Direction::Forward => next > last.0,
                Direction::Backward => next < last.0,
            };
            if !advances {
                return Err(Error::Unavailable(format!(
                    "{what}: the server's cursor does not advance (version {} is followed by {next})",
                    last.0
                )));
            }
            from = Some(Version(next));
        }
        events.truncate(want);
        Ok(StreamPage { events, current_version })
    }

    async fn read_all(&self, from: Sequence, limit: usize) -> Result<Vec<RecordedEvent>> {
        let mut events = Vec::new();
        let mut from = from.0;
        let mut page_limit = limit.clamp(1, PAGE_MAX);
        while events.len() < limit {
            let ask = page_limit.min(limit - events.len());
            let query = |limit| AllQuery { from_sequence: Some(from), limit: Some(limit) };
            let (reply, asked) = self.get_page("/v1/all", query, ask, "GET /v1/all").await?;
            page_limit = asked;
            let body = reply.ok_body("GET /v1/all", On::Store)?;
            let page: api::records::AllPage<&RawValue> = parse_json(&body, "GET /v1/all")?;
            for raw in page.events {
                events.push(decode_event(raw)?);
            }
            // A page may hold fewer events than asked (internal records are left out) and
            // still be followed by more; `next_sequence` always moves forward.
            match page.next_sequence {
                Some(next) if next > from => from = next,
                _ => break,
            }
        }
        events.truncate(limit);
        Ok(events)
    }

    /// The server's partition route (`GET /v1/topics/{t}/partitions/{p}/records`), in pages,
    /// rather than the trait's scan of the whole feed.
    async fn read_partition(
        &self,
        topic: &str,
        partition: u32,
        offset: Offset,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        if matches!(topic, "" | "." | "..") {
            return Ok(Vec::new());
        }
        let path = format!("/v1/topics/{}/partitions/{partition}/records", segment("topic", topic)?);
        let what = format!("GET {path}");
        let mut events = Vec::new();
        let mut from = offset.0;
        let mut page_limit = limit.clamp(1, PAGE_MAX);
        while events.len() < limit {
            let ask = page_limit.min(limit - events.len());
            let query = |limit| PartitionReadQuery { offset: Some(from), timestamp: None, limit: Some(limit) };
            let (reply, asked) = self.get_page(&path, query, ask, &what).await?;
            page_limit = asked;
            let body = match reply.body_or_refusal(&what) {
                Ok(body) => body?,
                // As the embedded backend: an unknown topic, or an offset past the end, is empty.
                Err(r) if matches!(r.code(), Some(ErrorCode::UnknownTopic | ErrorCode::OffsetOutOfRange)) => {
                    return Ok(events)
                }
                Err(r) => return Err(r.into_error(On::Topic(topic))),
            };
            let page: api::records::PartitionPage<&RawValue> = parse_json(&body, &what)?;
            for raw in page.records {
                events.push(decode_event(raw)?);
            }
            match page.next_offset {
                Some(next) if next > from => from = next,
                _ => break,
            }
        }
        events.truncate(limit);
        Ok(events)
    }

    async fn head_sequence(&self) -> Result<Sequence> {
        self.head().await.map(Sequence)
    }

    async fn sql(&self, statement: &str, min_sequence: Option<Sequence>) -> Result<SqlAnswer> {
        let body = evident_api::sql::SqlRequest {
            sql: statement.to_string(),
            min_sequence: min_sequence.map(|s| s.0),
            timeout_ms: None,
        };
        let what = "POST /v1/sql";
        let reply = self.call(self.client.post(self.url("/v1/sql")?).json(&body), what).await?;
        let bytes = reply.body_or_refusal(what).map_err(|r| r.into_error(On::Store))??;
        let answer: evident_api::sql::SqlResponse = parse_json(&bytes, what)?;
        Ok(SqlAnswer {
            columns: answer.columns.unwrap_or_default().into_iter().map(|c| (c.name, c.ty)).collect(),
            rows: answer.rows.unwrap_or_default(),
            message: answer.message,
        })
    }

    async fn wait_for_sequence(&self, sequence: Sequence, timeout: Duration) -> Result<bool> {
        if timeout < WAIT_PROBE_BELOW {
            return Ok(!self.read_all(sequence, 1).await?.is_empty());
        }
        // A deadline past WAIT_MAX would overflow the client's `Instant` arithmetic.
        let timeout = timeout.min(WAIT_MAX);
        let what = "GET /v1/subscribe";
        let query = SubscribeQuery { from_sequence: Some(sequence.0), ..SubscribeQuery::default() };
        let mut resp = match self
            .client
            .get(self.url("/v1/subscribe")?)
            .query(&query)
            .header(reqwest::header::ACCEPT, "text/event-stream")
            .timeout(timeout)
            .send()
            .await
        {
            Ok(resp) => resp,
            Err(e) if e.is_timeout() => return Ok(false),
            Err(e) => return Err(Error::Unavailable(format!("{what}: {}", chain(&e)))),
        };
        if !resp.status().is_success() {
            let status = resp.status();
            let mut body = Vec::new();
            while let Ok(Some(chunk)) = resp.chunk().await {
                if body.len() + chunk.len() > RESPONSE_MAX_BYTES {
                    break;
                }
                body.extend_from_slice(&chunk);
            }
            return Err(Reply { status, body: Some(body) }
                .ok_body(what, On::Store)
                .err()
                .unwrap_or_else(|| Error::Unavailable(format!("{what}: HTTP {status}"))));
        }
        // Server-Sent Events: messages end at a blank line; a line starting with ':' is a
        // comment (keep-alive). Only each line's start is kept, so an event of any size costs
        // a bounded buffer.
        let mut line: Vec<u8> = Vec::with_capacity(16);
        let mut line_len = 0usize;
        let (mut has_field, mut is_error) = (false, false);
        loop {
            let buf = match resp.chunk().await {
                Ok(Some(buf)) => buf,
                Ok(None) => return Err(Error::Unavailable(format!("{what}: the server ended the subscription"))),
                Err(e) if is_timeout(&e) => return Ok(false),
                Err(e) => return Err(Error::Unavailable(format!("{what}: {}", chain(&e)))),
            };
            for &b in buf.iter() {
                if b != b'\n' {
                    if line.len() < 16 {
                        line.push(b);
                    }
                    line_len += 1;
                    continue;
                }
                let text = line.strip_suffix(b"\r").unwrap_or(&line);
                if line_len == 0 || text.is_empty() {
                    // End of a message.
                    if is_error {
                        return Err(Error::Unavailable(format!("{what}: the server ended the subscription")));
                    }
                    if has_field {
                        return Ok(true);
                    }
                } else if !text.starts_with(b":") {
                    has_field = true;
                    if text.starts_with(b"event:") && text[6..].trim_ascii() == b"error" {
                        is_error = true;
                    }
                }
                line.clear();
                line_len = 0;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_checked_and_segments_encoded() {
        assert!(HttpBackend::new("http://127.0.0.1:8080/").is_ok());
        assert_eq!(HttpBackend::new("http://h:1/prefix/").expect("ok").base_url(), "http://h:1/prefix");
        for bad in ["", "127.0.0.1:8080", "ftp://h", "https://h", "http://h/?q=1", "http://h/#f"] {
            assert!(matches!(HttpBackend::new(bad), Err(Error::Rejected(_))), "{bad}");
        }
        assert_eq!(segment("k", "a/b c%é").expect("ok"), "a%2Fb%20c%25%C3%A9");
        assert_eq!(segment("k", "...").expect("ok"), "...");
        assert!(segment("k", "..").is_err());
        let b = HttpBackend::new("http://h:1").expect("ok");
        let url = b.url(&HttpBackend::stream_path("t", "a/b?#").expect("ok")).expect("url");
        assert_eq!(url.as_str(), "http://h:1/v1/topics/t/streams/a%2Fb%3F%23");
    }

    /// A one-thread HTTP server answering each connection's request with `answer(request line)`.
    fn fake_server(answer: fn(&str) -> Vec<u8>) -> String {
        use std::io::{BufRead, BufReader, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let addr = listener.local_addr().expect("addr");
        std::thread::spawn(move || {
            for stream in listener.incoming() {
                let Ok(mut stream) = stream else { return };
                let mut reader = BufReader::new(stream.try_clone().expect("clone"));
                let mut request_line = String::new();
                let _ = reader.read_line(&mut request_line);
                loop {
                    let mut header = String::new();
                    if reader.read_line(&mut header).map_or(true, |n| n == 0) || header.trim().is_empty() {
                        break;
                    }
                }
                let _ = stream.write_all(&answer(&request_line));
            }
        });
        format!("http://{addr}")
    }

    #[tokio::test]
    async fn replies_over_the_cap_are_refused_and_pages_shrink_to_fit() {
        let base = fake_server(|request| {
            if request.contains("from_sequence=0&limit=1 ") {
                let event = r#"{"specversion":"1.0","id":"e","type":"T","source":null,"time":"1970-01-01T00:00:00.000Z",
                    "data":1,"topic":"t","key":"k","partition":0,"offset":0,"version":0,"sequence":0,
                    "timestamp":"1970-01-01T00:00:00.000Z"}"#;
                let body = format!(r#"{{"events":[{event}],"next_sequence":null,"head_sequence":1}}"#);
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}", body.len())
                    .into_bytes()
            } else if request.contains("limit=2 ") {
                // Over the cap without announcing it: refused while reading.
                let mut reply = b"HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n".to_vec();
                reply.resize(reply.len() + RESPONSE_MAX_BYTES + 10, b' ');
                reply
            } else {
                format!("HTTP/1.1 200 OK\r\nContent-Length: {}\r\nConnection: close\r\n\r\n", 1u64 << 40).into_bytes()
            }
        });
        let b = HttpBackend::new(base).expect("backend");
        let events = b.read_all(Sequence(0), 4).await.expect("read");
        assert_eq!(ids_of(&events), ["e"], "asked for 4, 2, then 1");
        match b.head_sequence().await {
            Err(Error::Unavailable(m)) => assert!(m.contains("exceeds"), "{m}"),
            other => panic!("a reply over the cap is refused, not {other:?}"),
        }
    }

    /// Every code of the API's table maps to the library variant its HTTP status implies:
    /// a client error is `Rejected` (or the variant the code names), a server error, a timeout
    /// or an ended subscription `Unavailable`.
    #[test]
    fn every_error_code_maps_to_the_variant_its_status_implies() {
        let on = On::Append { topic: "t", key: "k", expected: ExpectedVersion::Exact(Version(3)) };
        for &code in ErrorCode::ALL {
            let body = format!(r#"{{"error":{{"code":"{}","message":"m","current_version":4}}}}"#, code.as_str());
            let status = StatusCode::from_u16(code.status()).expect("a status");
            let detail = serde_json::from_str::<ErrorBody>(&body).expect("an error body").error;
            let refusal = Refusal { status, detail: Some(Box::new(detail)), what: "POST /x".into() };
            assert_eq!(refusal.code(), Some(code));
            let error = refusal.into_error(on);
            match (&error, code.status()) {
                (Error::WrongExpectedVersion { stream, expected, current }, 409) => {
                    assert_eq!(code, ErrorCode::WrongExpectedVersion);
                    assert_eq!(
                        (stream.as_str(), *expected, *current),
                        ("t/k", ExpectedVersion::Exact(Version(3)), Some(Version(4)))
                    );
                }
                (Error::UnknownTopic(topic), 404) => assert_eq!((code, topic.as_str()), (ErrorCode::UnknownTopic, "t")),
                (Error::Rejected(m), 400..=499 | 501) if code != ErrorCode::RequestTimeout => assert_eq!(m, "m"),
                (Error::Unavailable(m), 408 | 500..=599 | 200) => assert!(m.ends_with(": m"), "{m}"),
                _ => panic!("{code:?} (HTTP {}) maps to {error:?}", code.status()),
            }
        }
        // A code this build does not know, or a body that is not the API's, goes by the status.
        let unknown = |status: u16, body: &str| {
            Reply { status: StatusCode::from_u16(status).expect("status"), body: Some(body.as_bytes().to_vec()) }
                .ok_body("GET /x", On::Store)
                .expect_err("refused")
        };
        let newer = r#"{"error":{"code":"from_the_future","message":"later"}}"#;
        assert!(matches!(unknown(409, newer), Error::Rejected(m) if m == "later"));
        assert!(matches!(unknown(503, newer), Error::Unavailable(m) if m.ends_with("later")));
        assert!(matches!(unknown(502, "<html>proxy</html>"), Error::Unavailable(m) if m.contains("502")));
        // Outside an append a conflict code names no stream.
        let wrong = r#"{"error":{"code":"wrong_expected_version","message":"w"}}"#;
        assert!(matches!(unknown(409, wrong), Error::Rejected(m) if m == "w"));
    }

    fn ids_of(events: &[RecordedEvent]) -> Vec<&str> {
        events.iter().filter_map(|e| e.id.as_deref()).collect()
    }

    #[test]
    fn events_go_out_as_the_api_takes_them() {
        let mut e = EventData::json("i", "T", br#"{"a": 1}"#.to_vec());
        e.extra_headers = vec![
            ("ce_subject".into(), Some(b"s".to_vec())),
            ("tenant".into(), Some(b"acme".to_vec())),
            ("flag".into(), None),
        ];
        let json = serde_json::to_string(&event_out(&e).expect("ok")).expect("json");
        assert_eq!(
            json,
            r#"{"type":"T","data":{"a": 1},"id":"i","datacontenttype":"application/json","subject":"s","headers":{"flag":null,"tenant":"acme"}}"#
        );
        e.data = b" 1".to_vec();
        let json = serde_json::to_string(&event_out(&e).expect("ok")).expect("json");
        assert!(json.contains(r#""data_base64":"IDE=""#), "whitespace around JSON keeps the bytes: {json}");
        e.extra_headers = vec![("bin".into(), Some(vec![0xff]))];
        assert!(matches!(event_out(&e), Err(Error::Rejected(_))));
        e.extra_headers = vec![("ce_other".into(), Some(b"x".to_vec()))];
        assert!(matches!(event_out(&e), Err(Error::Rejected(_))));
        e.extra_headers = vec![("h".into(), None), ("h".into(), None)];
        assert!(matches!(event_out(&e), Err(Error::Rejected(_))));
    }

    #[test]
    fn events_come_back_as_the_embedded_backend_builds_them() {
        let text = r#"{"specversion":"1.0","id":"e1","type":"T","source":"/s","time":"2026-01-01T00:00:00Z",
            "datacontenttype":"application/json","subject":"acct","data":"not the payload","topic":"x",
            "data":{"amount": 5},"topic":"bank","key":"a/b","partition":0,"offset":3,"version":2,"sequence":9,
            "timestamp":"1970-01-01T00:00:01.000Z","headers":{"tenant":"acme","z":null}}"#;
        let raw: &RawValue = serde_json::from_str(text).expect("json");
        let e = decode_event(raw).expect("decodes");
        let h = |k: &str, v: Option<&str>| (k.to_string(), v.map(|v| v.as_bytes().to_vec()));
        assert_eq!(
            e,
            RecordedEvent {
                topic: "bank".into(),
                partition: 0,
                offset: Offset(3),
                sequence: Sequence(9),
                version: Some(Version(2)),
                key: Some("a/b".into()),
                id: Some("e1".into()),
                event_type: Some("T".into()),
                timestamp_ms: 1000,
                headers: vec![
                    h("ce_source", Some("/s")),
                    h("ce_time", Some("2026-01-01T00:00:00Z")),
                    h("content-type", Some("application/json")),
                    h("ce_subject", Some("acct")),
                    h("ce_data", Some("not the payload")),
                    h("ce_topic", Some("x")),
                    h("tenant", Some("acme")),
                    h("z", None),
                ],
                data: br#"{"amount": 5}"#.to_vec(),
            }
        );
        let text = r#"{"specversion":"1.0","id":null,"type":null,"source":null,"time":"1970-01-01T00:00:02.000Z",
            "data_base64":"AJ8=","topic":"t","key_base64":"/w==","partition":1,"offset":0,"version":null,
            "sequence":1,"timestamp":"1970-01-01T00:00:02.000Z"}"#;
        let e = decode_event(serde_json::from_str(text).expect("json")).expect("decodes");
        assert_eq!((e.id, e.event_type, e.headers, e.data), (None, None, vec![], vec![0, 159]));
        assert_eq!(e.key.as_deref(), Some("\u{fffd}"));
        assert_eq!(e.timestamp_ms, 2000);
        let missing = r#"{"specversion":"1.0","topic":"t"}"#;
        assert!(matches!(decode_event(serde_json::from_str(missing).expect("json")), Err(Error::Decode(_))));
    }
}
