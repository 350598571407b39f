//! The API's one error type and its JSON body `{"error": {"code", "message", ...}}`. Errors are
//! mapped here, at the edge, from the log's and the group store's error enums, so each
//! condition has one status and one stable code (docs/http-api.md lists them). The body is
//! `evident_api::ErrorBody`, the type clients decode, and the codes are the table of
//! `evident_api::ErrorCode`; a test checks that every status and code this module answers
//! with is in the table with that status.

use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use evident_api::{ErrorBody, ErrorCode, ErrorDetail};

/// An error answered to the client.
#[derive(Debug)]
pub struct ApiError {
    /// HTTP status.
    pub status: StatusCode,
    /// Stable machine-readable code.
    pub code: &'static str,
    /// Human-readable message.
    pub message: String,
    /// `current_version` of `wrong_expected_version` (`Some(None)`: the stream does not exist).
    pub current_version: Option<Option<u64>>,
    /// `first_sequence` of `not_first_entry`.
    pub first_sequence: Option<u64>,
    /// The request's event ids, for `outcome_unknown` (sent with `"outcome": "unknown"`).
    pub event_ids: Option<Vec<String>>,
    /// `subject`, `path` and `event_index` of `schema_violation` (boxed: rare, and it would
    /// make every `Result<_, ApiError>` larger).
    pub schema: Option<Box<SchemaFields>>,
}

/// `schema_violation`'s `subject`, `path` and `event_index`.
pub type SchemaFields = (Option<String>, Option<String>, usize);

impl ApiError {
    /// An error with a status, code and message.
    pub fn new(status: StatusCode, code: &'static str, message: impl Into<String>) -> Self {
        Self {
            status,
            code,
            message: message.into(),
            current_version: None,
            first_sequence: None,
            event_ids: None,
            schema: None,
        }
    }
    /// An error of a code of the table, with the code's status.
    pub fn of(code: ErrorCode, message: impl Into<String>) -> Self {
        let status = StatusCode::from_u16(code.status()).expect("the table holds valid statuses");
        Self::new(status, code.as_str(), message)
    }
    /// 400 `invalid_argument`.
    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(StatusCode::BAD_REQUEST, "invalid_argument", message)
    }
    /// 500 `internal`.
    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(StatusCode::INTERNAL_SERVER_ERROR, "internal", message)
    }
    /// Adds the stream's current version (None: no stream) to a conflict.
    pub fn with_current_version(mut self, version: Option<u64>) -> Self {
        self.current_version = Some(version);
        self
    }
    /// Adds the request's event ids to an `outcome_unknown` refusal (and nothing to any other:
    /// the ids tell a client what to retry only when the outcome is in doubt).
    pub fn with_event_ids(mut self, ids: impl FnOnce() -> Vec<String>) -> Self {
        if self.code == "outcome_unknown" {
            self.event_ids = Some(ids());
        }
        self
    }
    /// 422 `schema_violation`: event `index` of an append is not valid for its subject's schema.
    pub fn schema_violation(index: usize, refusal: evident_registry::Refusal) -> Self {
        let message = format!("event {index} refused by schema validation: {refusal}; nothing was stored");
        let mut e = Self::of(evident_api::ErrorCode::SchemaViolation, message);
        e.schema = Some(Box::new((refusal.subject, refusal.path, index)));
        e
    }
    /// Adds the first entry's sequence to a refused skip.
    pub fn with_first_sequence(mut self, sequence: u64) -> Self {
        self.first_sequence = Some(sequence);
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
        let body = ErrorBody {
            error: ErrorDetail {
                code: self.code.to_string(),
                message: self.message,
                current_version: self.current_version,
                first_sequence: self.first_sequence,
                subject: self.schema.as_ref().and_then(|s| s.0.clone()),
                path: self.schema.as_ref().and_then(|s| s.1.clone()),
                event_index: self.schema.as_ref().map(|s| s.2),
            },
        };
        let mut response = match self.event_ids {
            // The outcome-unknown body: the common error object, plus what the client needs to
            // retry idempotently (kept beside `error`, not in the shared `ErrorBody` type).
            Some(ids) => (self.status, axum::Json(unknown_outcome_body(&body, ids))).into_response(),
            None => (self.status, axum::Json(body)).into_response(),
        };
        response.extensions_mut().insert(reason);
        response
    }
}

/// The body of `outcome_unknown`: the error object, `"outcome": "unknown"` and the ids to retry
/// with.
fn unknown_outcome_body(body: &ErrorBody, ids: Vec<String>) -> serde_json::Value {
    let mut value = serde_json::to_value(body).unwrap_or_default();
    if let Some(object) = value.as_object_mut() {
        object.insert("outcome".into(), "unknown".into());
        object.insert("event_ids".into(), ids.into());
    }
    value
}

impl From<evident_log::Error> for ApiError {
    fn from(e: evident_log::Error) -> Self {
        use evident_log::Error as E;
        let message = e.to_string();
        let (status, code) = match &e {
            E::WrongExpectedVersion { actual, .. } => {
                return Self::new(StatusCode::CONFLICT, "wrong_expected_version", message)
                    .with_current_version(actual.map(|v| v.0));
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
            E::InvalidExpectedVersion(_) | E::ExpectedVersionWithoutKey | E::KeylessOnCompacted { .. } => {
                (StatusCode::BAD_REQUEST, "invalid_argument")
            }
            E::KeyInOtherPartition { .. } => (StatusCode::CONFLICT, "key_in_other_partition"),
            E::PartialDuplicate { .. } => (StatusCode::CONFLICT, "partial_duplicate"),
            E::EventIdReused { .. } => (StatusCode::CONFLICT, "event_id_reused"),
            E::ProducerFenced { .. } | E::OutOfOrderSequence { .. } => (StatusCode::CONFLICT, "producer_conflict"),
            E::OffsetOutOfRange { .. } => (StatusCode::BAD_REQUEST, "offset_out_of_range"),
            E::Unsupported(_) => (StatusCode::BAD_REQUEST, "unsupported"),
            E::InvalidTxnState(_) => (StatusCode::CONFLICT, "invalid_transaction_state"),
            E::EventIdInTransaction { .. } => (StatusCode::CONFLICT, "event_id_reused"),
            // Retry once the Kafka transaction that holds the stream ends (within its timeout).
            E::StreamInTransaction { .. } => (StatusCode::CONFLICT, "stream_in_transaction"),
            E::TransactionsTooLarge { .. } => (StatusCode::SERVICE_UNAVAILABLE, "transactions_too_large"),
            E::Poisoned(_) | E::Closed => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            E::OutcomeUnknown(_) => (StatusCode::SERVICE_UNAVAILABLE, "outcome_unknown"),
            E::DiskFull(_) => (StatusCode::INSUFFICIENT_STORAGE, "disk_full"),
            E::Corrupted { .. } => (StatusCode::INTERNAL_SERVER_ERROR, "corrupted"),
            // Locked is an open-time condition (another process holds the data directory); if a
            // running server ever sees it, or an I/O error, it is the server's fault.
            E::Locked(_) | E::Io(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
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
            E::InvalidReset(_) | E::InvalidCommit(_) | E::InvalidMember(_) => Self::invalid(e.to_string()),
            E::UnknownMember { .. } => Self::new(StatusCode::NOT_FOUND, "unknown_member", e.to_string()),
            E::GroupFull { .. } => Self::new(StatusCode::CONFLICT, "group_full", e.to_string()),
            E::Cluster(_) => Self::new(StatusCode::SERVICE_UNAVAILABLE, "unavailable", e.to_string()),
            E::Corrupted { .. } | E::UnsupportedFormat { .. } => {
                Self::new(StatusCode::INTERNAL_SERVER_ERROR, "corrupted", e.to_string())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use evident_core::{TopicName, Version};

    use super::*;

    /// Every error this module maps to is in the table, with the table's status.
    #[test]
    fn mapped_errors_follow_the_table_of_codes() {
        let topic = || TopicName::new("t").expect("name");
        let log_errors = [
            evident_log::Error::UnknownTopic("t".into()),
            evident_log::Error::TopicExists(topic()),
            evident_log::Error::Closed,
            evident_log::Error::DiskFull("no space".into()),
            evident_log::Error::OutcomeUnknown("sync failed".into()),
            evident_log::Error::EmptyBatch,
            evident_log::Error::WrongExpectedVersion {
                topic: topic(),
                key: "k".into(),
                expected: evident_core::ExpectedVersion::NoStream,
                actual: Some(Version(3)),
            },
        ];
        let mut errors: Vec<ApiError> = log_errors.into_iter().map(ApiError::from).collect();
        errors.push(evident_groups::Error::UnknownGroup("g".into()).into());
        errors.push(ApiError::invalid("x"));
        errors.push(ApiError::internal("x"));
        for error in &errors {
            let code = ErrorCode::from_code(error.code).unwrap_or_else(|| panic!("{} is not in the table", error.code));
            assert_eq!(error.status.as_u16(), code.status(), "{}", error.code);
        }
        let conflict = errors.iter().find(|e| e.code == "wrong_expected_version").expect("conflict");
        assert_eq!(conflict.current_version, Some(Some(3)));
    }

    /// Only an unknown outcome carries the ids to retry with, beside the error object.
    #[test]
    fn an_unknown_outcome_names_the_ids_to_retry_with() {
        let ids = || vec!["a".to_string(), "b".to_string()];
        let full = ApiError::from(evident_log::Error::DiskFull("no space".into())).with_event_ids(ids);
        assert_eq!((full.status.as_u16(), full.code, full.event_ids), (507, "disk_full", None));
        let unknown = ApiError::from(evident_log::Error::OutcomeUnknown("sync failed".into())).with_event_ids(ids);
        assert_eq!((unknown.status.as_u16(), unknown.code), (503, "outcome_unknown"));
        let body = ErrorBody::new(unknown.code, unknown.message.clone());
        let json = unknown_outcome_body(&body, unknown.event_ids.expect("ids"));
        assert_eq!(json["error"]["code"], "outcome_unknown");
        assert_eq!(json["outcome"], "unknown");
        assert_eq!(json["event_ids"], serde_json::json!(["a", "b"]));
    }
}
