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
        use evident_log::Error as E;
        let message = format!("evident: {e}");
        let code = match &e {
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
            E::Poisoned(_) | E::Corrupted { .. } | E::Io(_) => ResponseError::KafkaStorageError,
            E::Closed => ResponseError::NotLeaderOrFollower,
            _ => ResponseError::UnknownServerError,
        };
        Self { code, message }
    }
}

impl From<evident_groups::Error> for KafkaError {
    fn from(e: evident_groups::Error) -> Self {
        use evident_groups::Error as E;
        let message = format!("evident: {e}");
        let code = match &e {
            E::Log(inner) => return Self { message, ..KafkaError::from_log_ref(inner) },
            E::UnknownGroup(_) => ResponseError::GroupIdNotFound,
            E::GroupNotEmpty { .. } => ResponseError::NonEmptyGroup,
            E::InvalidGroup(_) => ResponseError::InvalidGroupId,
            E::UnknownMember { .. } => ResponseError::UnknownMemberId,
            E::InvalidMember(_) => ResponseError::InvalidSessionTimeout,
            E::GroupFull { .. } => ResponseError::GroupMaxSizeReached,
            E::InvalidCommit(_) => ResponseError::InvalidCommitOffsetSize,
            _ => ResponseError::UnknownServerError,
        };
        Self { code, message }
    }
}

impl KafkaError {
    fn from_log_ref(e: &evident_log::Error) -> Self {
        use evident_log::Error as E;
        let code = match e {
            E::UnknownTopic(_) | E::UnknownPartition { .. } => ResponseError::UnknownTopicOrPartition,
            E::Poisoned(_) | E::Corrupted { .. } | E::Io(_) => ResponseError::KafkaStorageError,
            _ => ResponseError::UnknownServerError,
        };
        Self { code, message: e.to_string() }
    }
}
