//! The API's one error type and its JSON body `{"error": {"code", "message", ...}}`. Errors are
//! mapped here, at the edge, from the log's and the group store's error enums, so each
//! condition has one status and one stable code (docs/http-api.md lists them).

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// Extra fields of the error object (e.g. `current_version`).
    pub extra: Map<String, Value>,
}

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self { status, code, message: message.into(), extra: Map::new() }
    }
    /// 400 `invalid_argument`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }
    /// 500 `internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    /// Adds a field to the error object.
    pub fn with(mut self, key: &str, value: Value) -> Self {
        self.extra.insert(key.to_string(), value);
        self
    }
}

/// The code and message of an error response, kept on the response (an extension) so the
/// server can log a refused write with its reason without parsing the body it sends.
#[derive(Debug, Clone)]
pub struct ErrorReason {
    /// The stable code.
    pub code: &'static str,
    /// The message.
    pub message: String,
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        if self.status.is_server_error() {
            tracing::error!(code = self.code, message = %self.message, "request failed");
        }
        let reason = ErrorReason { code: self.code, message: self.message.clone() };
        let mut error = Map::new();
        error.insert("code".into(), Value::from(self.code));
        error.insert("message".into(), Value::from(self.message));
        error.extend(self.extra);
        let mut response = (self.status, axum::Json(json!({ "error": error }))).into_response();
        response.extensions_mut().insert(reason);
        response
    }
}

impl From<evident_log::Error> for ApiError {
    fn from(e: evident_log::Error) -> Self {
        use evident_log::Error as E;
        let message = e.to_string();
        let (status, code) = match &e {
            E::WrongExpectedVersion { actual, .. } => {
                return Self::new(StatusCode::CONFLICT, "wrong_expected_version", message)
                    .with("current_version", actual.map_or(Value::Null, |v| Value::from(v.0)));
            }
            E::UnknownTopic(_) => (StatusCode::NOT_FOUND, "unknown_topic"),
            E::UnknownPartition { .. } => (StatusCode::NOT_FOUND, "unknown_partition"),
            E::TopicExists(_) => (StatusCode::CONFLICT, "topic_exists"),
            E::InvalidTopicName(_) => (StatusCode::BAD_REQUEST, "invalid_topic_name"),
            E::InvalidConfig(_) => (StatusCode::BAD_REQUEST, "invalid_config"),
            E::BatchTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            E::KeyTooLarge { .. } => (StatusCode::BAD_REQUEST, "invalid_stream_key"),
            E::EmptyBatch | E::InvalidEventId(_) | E::DuplicateIdInBatch { .. } | E::InvalidBatch(_) => {
                (StatusCode::BAD_REQUEST, "invalid_event")
            }
            E::InvalidExpectedVersion(_) | E::ExpectedVersionWithoutKey => {
                (StatusCode::BAD_REQUEST, "invalid_argument")
            }
            E::KeyInOtherPartition { .. } => (StatusCode::CONFLICT, "key_in_other_partition"),
            E::PartialDuplicate { .. } => (StatusCode::CONFLICT, "partial_duplicate"),
            E::EventIdReused { .. } => (StatusCode::CONFLICT, "event_id_reused"),
            E::ProducerFenced { .. } | E::OutOfOrderSequence { .. } => (StatusCode::CONFLICT, "producer_conflict"),
            E::OffsetOutOfRange { .. } => (StatusCode::BAD_REQUEST, "offset_out_of_range"),
            E::Unsupported(_) => (StatusCode::BAD_REQUEST, "unsupported"),
            E::Poisoned(_) | E::Closed => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            E::Corrupted { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "corrupted"),
            _ => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        };
        Self::new(status, code, message)
    }
}

impl From<evident_groups::Error> for ApiError {
    fn from(e: evident_groups::Error) -> Self {
        use evident_groups::Error as E;
        match e {
            E::Log(inner) => inner.into(),
            E::UnknownGroup(_) => Self::new(StatusCode::NOT_FOUND, "unknown_group", e.to_string()),
            E::GroupNotEmpty { .. } => Self::new(StatusCode::CONFLICT, "group_not_empty", e.to_string()),
            E::InvalidGroup(_) => Self::new(StatusCode::BAD_REQUEST, "invalid_group", e.to_string()),
            E::InvalidReset(_) | E::InvalidCommit(_) => Self::invalid(e.to_string()),
            _ => Self::internal(e.to_string()),
        }
    }
}
