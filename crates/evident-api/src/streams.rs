//! Entity streams: the append request (one event or a batch with an expected version), its
//! reply, the stored event as reads return it, and a page of a stream read.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::value::RawValue;
use serde_json::Value;

/// A named expected version.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ExpectedState {
    /// No check.
    Any,
    /// The stream must not exist.
    NoStream,
    /// The stream must exist.
    StreamExists,
}

/// What the stream must be at for the append to be accepted: `any` (no check), `no_stream`
/// (the stream must not exist), `stream_exists`, or the exact current version (0-based). A
/// mismatch is `409 wrong_expected_version`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum ExpectedVersion {
    /// `any`, `no_stream` or `stream_exists`.
    State(ExpectedState),
    /// The stream's exact current version.
    Exact(u64),
}

impl ExpectedVersion {
    /// The form of the `expected_version` query parameter.
    pub fn to_query(self) -> String {
        match self {
            ExpectedVersion::State(ExpectedState::Any) => "any".into(),
            ExpectedVersion::State(ExpectedState::NoStream) => "no_stream".into(),
            ExpectedVersion::State(ExpectedState::StreamExists) => "stream_exists".into(),
            ExpectedVersion::Exact(v) => v.to_string(),
        }
    }
}

/// One CloudEvents JSON event as a client sends it. Attributes become `ce_*` record headers
/// (the Kafka binding's binary mode), `data` the record value. Give `data` or `data_base64`, not
/// both. Unknown fields are refused (`400 malformed_json`).
// `data` is JSON text (`RawValue`), not a parsed tree, because the server stores it byte for
// byte: a client that sends `{"a": 1}` reads back `{"a": 1}`, spaces included. (A `//` comment:
// doc comments here become the OpenAPI description, written for API users.)
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(example = json!({"type": "MoneyDeposited", "data": {"amount": 50}, "id": "acc-1-dep-1", "source": "/teller/7"})))]
#[serde(deny_unknown_fields)]
pub struct AppendEvent {
    /// Event type (required, 1 to 256 characters).
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 256))]
    pub event_type: String,
    /// Any JSON value, stored as its JSON text, byte for byte. Absent (and no `data_base64`):
    /// stored as `null`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Value>))]
    pub data: Option<Box<RawValue>>,
    /// Binary payload (standard base64) instead of `data`; `datacontenttype` then defaults to
    /// `application/octet-stream`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(content_encoding = "base64"))]
    pub data_base64: Option<String>,
    /// 1 to 256 bytes. Makes retries idempotent: an id the stream holds already, with the same
    /// content, appends nothing (status 200, `duplicate: true`); with other content it is
    /// `409 event_id_reused`. When absent the server generates a UUID v4.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(min_length = 1, max_length = 256))]
    pub id: Option<String>,
    /// CloudEvents `source` (default `/evident/http`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub source: Option<String>,
    /// RFC 3339; kept as the `ce_time` header as given. The record timestamp is the server's
    /// clock at append.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub time: Option<String>,
    /// Defaults to `application/json` (or `application/octet-stream` with `data_base64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// Optional; only `1.0` is accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(pattern = "^1\\.0$"))]
    pub specversion: Option<String>,
    /// Kept as the `ce_subject` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Kept as the `ce_dataschema` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dataschema: Option<String>,
    /// Record headers beyond CloudEvents' attributes (text values, or `null`). Names must be
    /// non-empty and not `ce_*`, `content-type` or `evident-expected-version`
    /// (`400 invalid_event`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, Option<String>>>,
}

impl AppendEvent {
    /// An event of `event_type` with a JSON payload (its text, sent as it is) and every other
    /// attribute left to the server.
    pub fn json(event_type: impl Into<String>, data: Box<RawValue>) -> Self {
        Self {
            event_type: event_type.into(),
            data: Some(data),
            data_base64: None,
            id: None,
            source: None,
            time: None,
            datacontenttype: None,
            specversion: None,
            subject: None,
            dataschema: None,
            headers: None,
        }
    }
}

/// Several events appended atomically (all or none), with an optional expected version. A body
/// object with an `events` key is taken for this form.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct AppendBatch {
    /// Default `any`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<ExpectedVersion>,
    /// 1 to 10000 events.
    #[cfg_attr(feature = "openapi", schema(min_items = 1, max_items = 10000))]
    pub events: Vec<AppendEvent>,
}

/// The body of an append: a batch, or a single event.
#[derive(Debug, Clone, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(untagged)]
pub enum AppendRequest {
    /// Several events, atomically.
    Batch(AppendBatch),
    /// One event (boxed: it is far larger than a batch's vector).
    Event(Box<AppendEvent>),
}

/// By hand rather than `untagged`: an untagged enum buffers its input, and a buffered value
/// cannot become the `RawValue` an event's `data` is kept as (its bytes go out as they came).
/// So the body is taken raw once, probed for an `events` key, and parsed as that form.
impl<'de> Deserialize<'de> for AppendRequest {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        use serde::de::{Error, IgnoredAny};
        #[derive(Deserialize)]
        struct Probe {
            events: Option<IgnoredAny>,
        }
        let raw = Box::<RawValue>::deserialize(deserializer)?;
        let probe: Probe = serde_json::from_str(raw.get()).map_err(D::Error::custom)?;
        if probe.events.is_some() {
            serde_json::from_str(raw.get()).map(AppendRequest::Batch).map_err(D::Error::custom)
        } else {
            serde_json::from_str(raw.get()).map(|e| AppendRequest::Event(Box::new(e))).map_err(D::Error::custom)
        }
    }
}

/// Where an appended event was stored.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventPosition {
    /// The event id (the client's, or the one the server generated).
    pub id: String,
    /// Offset in the partition.
    pub offset: u64,
    /// Version in the stream (0-based).
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub version: Option<u64>,
    /// Store-wide commit sequence.
    pub sequence: u64,
}

/// The reply to an append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AppendResult {
    /// Topic.
    pub topic: String,
    /// Stream key.
    pub key: String,
    /// The partition the stream lives in.
    pub partition: u32,
    /// True when the request was a retry of events already appended: nothing was appended and
    /// the positions are the originals.
    pub duplicate: bool,
    /// Each event's position, in request order.
    pub events: Vec<EventPosition>,
}

/// A stored event as CloudEvents JSON plus its positions. `time` is the `ce_time` header when
/// the event has one, else the record timestamp. `data` is the parsed JSON when the payload is
/// JSON (or the content type is absent or contains `json`), else `data_base64` is given instead.
/// CloudEvents extension attributes (`ce_*` headers other than the core ones, e.g. `subject`,
/// `dataschema`) appear as top-level fields named without the `ce_` prefix. Records written by
/// Kafka clients without CloudEvents headers read the same way (`id`, `type`, `source` are then
/// `null`).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Event {
    /// Always `1.0`.
    pub specversion: String,
    /// Event id.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub id: Option<String>,
    /// Event type.
    #[serde(rename = "type")]
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub event_type: Option<String>,
    /// CloudEvents `source`.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub source: Option<String>,
    /// The `ce_time` header as appended, else the record timestamp (RFC 3339, milliseconds).
    pub time: String,
    /// Absent when the record has no `content-type` header.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub datacontenttype: Option<String>,
    /// The payload as JSON; `null` for a record with no value. Absent when the payload is not
    /// JSON (see `data_base64`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub data: Option<Value>,
    /// The payload, when it is not JSON.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(content_encoding = "base64"))]
    pub data_base64: Option<String>,
    /// Topic.
    pub topic: String,
    /// The stream key; `null` for a record with no key. Absent when the key is not UTF-8 (see
    /// `key_base64`).
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present_or_null")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<String>))]
    pub key: Option<Option<String>>,
    /// A binary key that is not UTF-8.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(content_encoding = "base64"))]
    pub key_base64: Option<String>,
    /// Partition.
    pub partition: u32,
    /// Offset in the partition.
    pub offset: u64,
    /// Version in the stream; `null` for a record with no key.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub version: Option<u64>,
    /// Store-wide commit sequence.
    pub sequence: u64,
    /// Record timestamp (RFC 3339, milliseconds).
    #[cfg_attr(feature = "openapi", schema(format = DateTime))]
    pub timestamp: String,
    /// Record headers that are not CloudEvents attributes (values as UTF-8 text, or `null`).
    /// Absent when there are none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub headers: Option<BTreeMap<String, Option<String>>>,
    /// CloudEvents extension attributes, as top-level fields.
    #[serde(flatten)]
    pub extensions: BTreeMap<String, Value>,
}

/// A field that is absent, `null`, or a string.
mod present_or_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Option<String>>, s: S) -> Result<S::Ok, S::Error> {
        value.as_ref().and_then(Option::as_ref).serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<String>>, D::Error> {
        Option::<String>::deserialize(d).map(Some)
    }
}

/// `GET /v1/topics/{topic}/streams/{key}`: a page of a stream.
// Generic over the event's form (default `Event`) so that a client which must keep each event
// exactly as stored (its attributes' order, its `data` text byte for byte, as the library's
// HTTP backend does) reads the page into `StreamPage<&RawValue>` and decodes the events itself,
// the page's own fields still defined here once. utoipa does not collect the schema of a
// generic argument, so the server registers `Event` itself.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = StreamPage))]
pub struct StreamPage<E = Event> {
    /// Topic.
    pub topic: String,
    /// Stream key.
    pub key: String,
    /// The partition the stream lives in.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub partition: Option<u32>,
    /// The stream's current (last) version, whatever `as_of_*` asked.
    pub current_version: u64,
    /// The events, in the direction asked.
    pub events: Vec<E>,
    /// `from_version` of the next page in the same direction; `null` at the end.
    #[cfg_attr(feature = "openapi", schema(required = true))]
    pub next_version: Option<u64>,
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;

    #[test]
    fn an_append_body_is_a_batch_or_one_event() {
        let batch: AppendRequest =
            serde_json::from_value(json!({"expected_version": "no_stream", "events": [{"type": "A"}]})).expect("batch");
        let AppendRequest::Batch(batch) = batch else { panic!("a batch: {batch:?}") };
        assert_eq!(batch.expected_version, Some(ExpectedVersion::State(ExpectedState::NoStream)));
        let one: AppendRequest = serde_json::from_str(r#"{"type": "A", "data": {"n":  1}}"#).expect("event");
        let AppendRequest::Event(one) = one else { panic!("one event: {one:?}") };
        assert_eq!((one.event_type.as_str(), one.data.as_deref().map(RawValue::get)), ("A", Some(r#"{"n":  1}"#)));
        let data = RawValue::from_string(r#"{"n":  1}"#.into()).expect("json");
        let text = serde_json::to_string(&AppendEvent::json("A", data)).expect("json");
        assert_eq!(text, r#"{"type":"A","data":{"n":  1}}"#, "data goes out byte for byte");
        let exact: ExpectedVersion = serde_json::from_value(json!(7)).expect("exact");
        assert_eq!((exact, exact.to_query()), (ExpectedVersion::Exact(7), "7".to_string()));
        assert!(serde_json::from_value::<AppendEvent>(json!({"type": "A", "typo": 1})).is_err());
    }

    #[test]
    fn an_event_keeps_its_extensions_and_a_null_key() {
        let text = json!({
            "specversion": "1.0", "id": "e", "type": "T", "source": "/s", "time": "t",
            "data": {"a": 1}, "topic": "bank", "key": null, "partition": 0, "offset": 1,
            "version": null, "sequence": 2, "timestamp": "t", "subject": "acc"
        });
        let event: Event = serde_json::from_value(text.clone()).expect("event");
        assert_eq!(event.key, Some(None));
        assert_eq!(event.extensions.get("subject"), Some(&json!("acc")));
        assert_eq!(serde_json::to_value(&event).expect("json"), text);
    }
}
