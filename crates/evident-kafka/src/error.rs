//! How the log's refusals become Kafka error codes and messages. evident's own conditions
//! (a wrong expected version, an event id reused, the key-partition guard) have no Kafka code of
//! their own; they become `INVALID_RECORD` (87), which clients treat as permanent (no retry)
//! and surface with the error message, which names the stream and its current version.

use kafka_protocol::error::ResponseError;

/// A Kafka error code with a message for the client.
#[derive(Debug, Clone)]
pub struct KafkaError {
    /// The code.
    pub code: ResponseError,
    /// The message (sent where the response has an error message field).
    pub message: String,
}

impl KafkaError {
    /// An error with a code and message.
    pub fn new(code: ResponseError, message: impl Into<String>) -> Self {
        Self { code, message: message.into() }
    }
}

impl From<evident_log::Error> for KafkaError {
    fn from(e: evident_log::Error) -> Self {
        Self { code: log_code(&e), message: format!("evident: {e}") }
    }
}

/// The Kafka code of a log error: the one table, used for the log's own errors and for those
/// the group store wraps. Exhaustive, so a new variant of the log's error cannot silently
/// become `UNKNOWN_SERVER_ERROR`.
fn log_code(e: &evident_log::Error) -> ResponseError {
    use evident_log::Error as E;
    match e {
        E::WrongExpectedVersion { .. }
        | E::EventIdReused { .. }
        | E::PartialDuplicate { .. }
        | E::DuplicateIdInBatch { .. }
        | E::KeyInOtherPartition { .. }
        | E::InvalidExpectedVersion(_)
        | E::InvalidEventId(_)
        | E::ExpectedVersionWithoutKey
        | E::KeyTooLarge { .. }
        | E::EmptyBatch
        | E::Unsupported(_) => ResponseError::InvalidRecord,
        E::UnknownTopic(_) | E::UnknownPartition { .. } => ResponseError::UnknownTopicOrPartition,
        E::TopicExists(_) => ResponseError::TopicAlreadyExists,
        E::InvalidTopicName(_) => ResponseError::InvalidTopicException,
        E::InvalidConfig(_) => ResponseError::InvalidConfig,
        E::InvalidBatch(_) => ResponseError::CorruptMessage,
        E::BatchTooLarge { .. } => ResponseError::MessageTooLarge,
        E::ProducerFenced { .. } => ResponseError::InvalidProducerEpoch,
        E::OutOfOrderSequence { .. } => ResponseError::OutOfOrderSequenceNumber,
        E::OffsetOutOfRange { .. } => ResponseError::OffsetOutOfRange,
        // KAFKA_STORAGE_ERROR is what a broker answers when its log directory fails, and it
        // is retriable in the Java client and librdkafka alike; an idempotent producer's retry
        // keeps its sequence, so a batch whose outcome was unknown is deduplicated if stored.
        E::Poisoned(_) | E::DiskFull(_) | E::OutcomeUnknown(_) | E::Corrupted { .. } | E::Io(_) => {
            ResponseError::KafkaStorageError
        }
        E::Closed => ResponseError::NotLeaderOrFollower,
        E::Locked(_) => ResponseError::UnknownServerError,
    }
}

impl From<evident_groups::Error> for KafkaError {
    fn from(e: evident_groups::Error) -> Self {
        use evident_groups::Error as E;
        let message = format!("evident: {e}");
        let code = match &e {
            E::Log(inner) => log_code(inner),
            E::UnknownGroup(_) => ResponseError::GroupIdNotFound,
            E::GroupNotEmpty { .. } => ResponseError::NonEmptyGroup,
            E::InvalidGroup(_) => ResponseError::InvalidGroupId,
            E::UnknownMember { .. } => ResponseError::UnknownMemberId,
            E::InvalidMember(_) => ResponseError::InvalidSessionTimeout,
            E::GroupFull { .. } => ResponseError::GroupMaxSizeReached,
            E::InvalidCommit(_) => ResponseError::InvalidCommitOffsetSize,
            E::InvalidReset(_) => ResponseError::InvalidRequest,
            E::Corrupted { .. } | E::UnsupportedFormat { .. } => ResponseError::KafkaStorageError,
        };
        Self { code, message }
    }
}
