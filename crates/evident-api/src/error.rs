//! The error body every route answers with, `{"error": {"code", "message", ...}}`, and the table
//! of its stable codes with their HTTP statuses. `code` is for programs (it never changes
//! meaning), `message` for people (it may be reworded).

use serde::{Deserialize, Serialize};

/// Every error, on every route. A refused request never changes stored data.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[cfg_attr(feature = "openapi", schema(as = Error, example = json!({"error": {"code": "wrong_expected_version", "message": "stream bank/acc-1 is at version 3, not 2", "current_version": 3}})))]
pub struct ErrorBody {
    /// The error.
    pub error: ErrorDetail,
}

/// The error object: a stable code, a message, and fields some codes add.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorDetail {
    /// Stable, machine-readable code (see `ErrorCode`). A client should treat a code it does not
    /// know by the reply's HTTP status.
    #[cfg_attr(feature = "openapi", schema(value_type = ErrorCode))]
    pub code: String,
    /// Human-readable explanation.
    pub message: String,
    /// Only with `wrong_expected_version`: the stream's current version, `null` when the stream
    /// does not exist.
    #[serde(default, skip_serializing_if = "Option::is_none", with = "present_or_null")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<u64>, minimum = 0))]
    pub current_version: Option<Option<u64>>,
    /// Only with `not_first_entry`: the sequence of the stream's first dead-letter entry, the only
    /// one a skip may name.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(minimum = 0))]
    pub first_sequence: Option<u64>,
    /// Only with `schema_violation`: the registry subject the event was checked against.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    /// Only with `schema_violation`: the JSON Pointer, within the event's `data`, of the value
    /// that failed (`""` is the whole `data`), when the failure is at one.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// Only with `schema_violation`: the index of the refused event in the request's batch.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub event_index: Option<usize>,
}

impl ErrorBody {
    /// An error body with a code and a message.
    pub fn new(code: impl Into<String>, message: impl Into<String>) -> Self {
        Self {
            error: ErrorDetail {
                code: code.into(),
                message: message.into(),
                current_version: None,
                first_sequence: None,
                subject: None,
                path: None,
                event_index: None,
            },
        }
    }
}

/// `current_version` is three-state: absent (another error), `null` (no stream), a number.
mod present_or_null {
    use serde::{Deserialize, Deserializer, Serialize, Serializer};

    pub fn serialize<S: Serializer>(value: &Option<Option<u64>>, s: S) -> Result<S::Ok, S::Error> {
        // `skip_serializing_if` has removed the absent case.
        value.flatten().serialize(s)
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Option<u64>>, D::Error> {
        Option::<u64>::deserialize(d).map(Some)
    }
}

macro_rules! error_codes {
    ($( $(#[doc = $doc:literal])* $variant:ident = ($code:literal, $status:literal), )*) => {
        /// The stable error codes, each with the one HTTP status it is answered with.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
        #[serde(rename_all = "snake_case")]
        pub enum ErrorCode {
            $( $(#[doc = $doc])* $variant, )*
        }

        impl ErrorCode {
            /// Every code, in the order of the table.
            pub const ALL: &'static [ErrorCode] = &[$(ErrorCode::$variant),*];

            /// The code as it appears in the body.
            pub const fn as_str(self) -> &'static str {
                match self { $(ErrorCode::$variant => $code,)* }
            }

            /// The HTTP status the code is answered with.
            pub const fn status(self) -> u16 {
                match self { $(ErrorCode::$variant => $status,)* }
            }

            /// The code named `code`, if it is one of the table.
            pub fn from_code(code: &str) -> Option<ErrorCode> {
                match code { $($code => Some(ErrorCode::$variant),)* _ => None }
            }
        }
    };
}

error_codes! {
    /// The body is not the JSON the route takes (not JSON, unknown field, wrong type).
    MalformedJson = ("malformed_json", 400),
    /// A required field of the body is missing.
    MissingField = ("missing_field", 400),
    /// A query parameter or a value is invalid, unknown, or out of range.
    InvalidArgument = ("invalid_argument", 400),
    /// A topic name breaks Kafka's rules or is reserved (`__`).
    InvalidTopicName = ("invalid_topic_name", 400),
    /// A stream key is empty or longer than 4096 bytes.
    InvalidStreamKey = ("invalid_stream_key", 400),
    /// An event is invalid (type, id, time, payload, headers, batch).
    InvalidEvent = ("invalid_event", 400),
    /// A topic configuration is invalid.
    InvalidConfig = ("invalid_config", 400),
    /// A consumer group id is invalid.
    InvalidGroup = ("invalid_group", 400),
    /// A projection name cannot name a dead-letter topic.
    InvalidProjection = ("invalid_projection", 400),
    /// An event's `data` nests deeper than a page of events can carry.
    DataTooDeep = ("data_too_deep", 400),
    /// An offset lies outside the partition.
    OffsetOutOfRange = ("offset_out_of_range", 400),
    /// The request needs something evident does not do.
    Unsupported = ("unsupported", 400),
    /// A SQL statement does not parse (the message has the line, column and a hint).
    SqlSyntax = ("sql_syntax", 400),
    /// A SQL statement parses but does not make sense: an unknown column or function, a type
    /// error (SUM of a STRING), a column neither grouped nor aggregated.
    SqlInvalid = ("sql_invalid", 422),
    /// A SQL statement or clause evident does not run.
    SqlUnsupported = ("sql_unsupported", 422),
    /// Internal topics cannot be changed over the API.
    InternalTopic = ("internal_topic", 403),
    /// The topic does not exist.
    UnknownTopic = ("unknown_topic", 404),
    /// The partition does not exist.
    UnknownPartition = ("unknown_partition", 404),
    /// The stream holds no event.
    StreamNotFound = ("stream_not_found", 404),
    /// The consumer group does not exist.
    UnknownGroup = ("unknown_group", 404),
    /// The projection has no dead-letter topic.
    UnknownProjection = ("unknown_projection", 404),
    /// A consumer-group member that is not (or no longer) in the group.
    UnknownMember = ("unknown_member", 404),
    /// The projection has no parked or held event of the stream.
    NothingParked = ("nothing_parked", 404),
    /// No SQL view (table or stream) by that name.
    UnknownView = ("unknown_view", 404),
    /// No such route.
    NotFound = ("not_found", 404),
    /// The route does not take this method.
    MethodNotAllowed = ("method_not_allowed", 405),
    /// The stream is not at the expected version (carries `current_version`).
    WrongExpectedVersion = ("wrong_expected_version", 409),
    /// An event id the stream holds names an event with other content.
    EventIdReused = ("event_id_reused", 409),
    /// A retried batch mixes appended and new events.
    PartialDuplicate = ("partial_duplicate", 409),
    /// The topic exists already.
    TopicExists = ("topic_exists", 409),
    /// The group has active members.
    GroupNotEmpty = ("group_not_empty", 409),
    /// The key lives in another partition of the topic (the key partition guard).
    KeyInOtherPartition = ("key_in_other_partition", 409),
    /// A Kafka producer's epoch or sequence conflicts.
    ProducerConflict = ("producer_conflict", 409),
    /// A skip named an entry that is not the stream's first (carries `first_sequence`).
    NotFirstEntry = ("not_first_entry", 409),
    /// A SQL view or a topic of that name exists.
    ViewExists = ("view_exists", 409),
    /// The SQL view is the source of another view (drop that one first).
    ViewInUse = ("view_in_use", 409),
    /// The consumer group has as many members as allowed.
    GroupFull = ("group_full", 409),
    /// The request body did not arrive in time; nothing was applied.
    RequestTimeout = ("request_timeout", 408),
    /// The request body exceeds the server's limit.
    PayloadTooLarge = ("payload_too_large", 413),
    /// A query's answer would exceed the server's bounds (rows, or events scanned).
    ResultTooLarge = ("result_too_large", 413),
    /// The request target (path and query) exceeds the server's limit.
    UriTooLong = ("uri_too_long", 414),
    /// An appended event's data is not valid for the JSON Schema registered for its subject (or
    /// no schema is registered) on a topic with `confluent.value.schema.validation`; nothing of
    /// the request is stored. The body adds `subject`, `path` and `event_index`.
    SchemaViolation = ("schema_violation", 422),
    /// A bug or an unexpected failure of the server.
    Internal = ("internal", 500),
    /// A stored file is damaged.
    Corrupted = ("corrupted", 500),
    /// The route is not served by a server whose storage is an Apache Kafka cluster
    /// (`--storage kafka://`: consumer groups, dead letters and SQL are the embedded store's);
    /// the message names what serves it there.
    NotOnCluster = ("not_on_cluster", 501),
    /// The store refuses writes until it is restarted (a failed write or sync), or is closing.
    Unavailable = ("unavailable", 503),
    /// A write failed after its bytes may have reached the disk: it may or may not be
    /// stored. The body carries `"outcome": "unknown"` and the request's `event_ids`; retry
    /// with the same ids once the store is back.
    OutcomeUnknown = ("outcome_unknown", 503),
    /// The disk is full: the store serves reads and refuses writes, nothing of the request was
    /// stored, and writes resume by themselves once space is freed.
    DiskFull = ("disk_full", 507),
    /// A pull query's `min_sequence` was not applied by the view within its timeout.
    NotCaughtUp = ("not_caught_up", 503),
    /// The SQL view stopped on an error (named in the message); its rows are not served.
    ViewFailed = ("view_failed", 503),
    /// The server holds as many HTTP connections as allowed.
    TooManyConnections = ("too_many_connections", 503),
    /// The server serves as many live subscriptions as allowed.
    TooManySubscriptions = ("too_many_subscriptions", 503),
    /// The request took longer than the per-request deadline.
    DeadlineExceeded = ("deadline_exceeded", 503),
    /// Sent only inside a subscription's event stream, as its last message.
    SubscriptionEnded = ("subscription_ended", 200),
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_through_their_text_and_serde() {
        for &code in ErrorCode::ALL {
            assert_eq!(ErrorCode::from_code(code.as_str()), Some(code));
            assert_eq!(serde_json::to_value(code).expect("serialize"), code.as_str());
            assert!(
                [200, 400, 403, 404, 405, 408, 409, 413, 414, 422, 500, 501, 503, 507].contains(&code.status()),
                "{code:?}"
            );
        }
        assert_eq!(ErrorCode::from_code("no_such_code"), None);
    }

    #[test]
    fn current_version_is_absent_null_or_a_number() {
        let mut body = ErrorBody::new("wrong_expected_version", "m");
        assert_eq!(
            serde_json::to_string(&body).expect("json"),
            r#"{"error":{"code":"wrong_expected_version","message":"m"}}"#
        );
        body.error.current_version = Some(None);
        let text = serde_json::to_string(&body).expect("json");
        assert_eq!(text, r#"{"error":{"code":"wrong_expected_version","message":"m","current_version":null}}"#);
        assert_eq!(serde_json::from_str::<ErrorBody>(&text).expect("parse"), body);
        body.error.current_version = Some(Some(4));
        let text = serde_json::to_string(&body).expect("json");
        assert_eq!(serde_json::from_str::<ErrorBody>(&text).expect("parse"), body);
        let absent: ErrorBody =
            serde_json::from_str(r#"{"error":{"code":"x","message":"m","extra":1}}"#).expect("parse");
        assert_eq!(absent.error.current_version, None);
    }
}
