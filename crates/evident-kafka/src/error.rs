//! How the log's refusals become Kafka error codes and messages. evident's own conditions
//! (a wrong expected version, an event id reused, the key-partition guard) have no Kafka code of
//! their own; they become `INVALID_RECORD` (87), which clients treat as permanent (no retry)
//! and surface with the error message, which names the stream and its current version.

use evident_core::partitioner::KeyPartitioner;
use kafka_protocol::error::ResponseError;

/// A Kafka error code with a message for the client.
#[derive(Debug, Clone)]
pub struct KafkaError {
    /// The code.
    pub code: ResponseError,
    /// The message (sent where the response has an error message field).
    pub message: String,
    /// For a refused produce batch, the records that caused it: index in the batch and why
    /// (ProduceResponse's `record_errors`, v8+).
    pub record_errors: Vec<(i32, String)>,
}

impl KafkaError {
    /// An error with a code and message.
    pub fn new(code: ResponseError, message: impl Into<String>) -> Self {
        Self { code, message: message.into(), record_errors: Vec::new() }
    }
}

impl From<evident_log::Error> for KafkaError {
    fn from(e: evident_log::Error) -> Self {
        let mut message = format!("evident: {e}");
        if let evident_log::Error::KeyInOtherPartition { sent_by, key_partitioner, .. } = &e {
            message.push_str(&key_partition_advice(sent_by, *key_partitioner));
        }
        Self { code: log_code(&e), message, record_errors: Vec::new() }
    }
}

/// The way out of a key-partition refusal, for the producer the refused partition points to:
/// the client whose default partitioner puts the key where it was sent, the producer setting
/// that makes it agree with the topic, and the topic setting that makes evident agree with the
/// producer for keys it has not stored yet (a stored key stays in its partition).
pub fn key_partition_advice(sent_by: &[KeyPartitioner], topic: KeyPartitioner) -> String {
    // librdkafka's partitioner setting that hashes as the topic does.
    let rdkafka = match topic {
        KeyPartitioner::Murmur2 => "murmur2_random",
        KeyPartitioner::Crc32 => "consistent_random",
        KeyPartitioner::Fnv1a => "fnv1a_random",
    };
    let Some(&producer) = sent_by.iter().find(|&&p| p != topic) else {
        if sent_by.contains(&topic) {
            // The producer agrees with the topic; the stream was placed otherwise (by another
            // producer, or before evident.key.partitioner changed), and a stored key stays.
            return ". The stream was placed by another partitioner (another producer, or before the topic's \
                    evident.key.partitioner changed) and a stored key keeps its partition: produce this key with \
                    the partitioner that placed it"
                .to_string();
        }
        return format!(
            ". The producer named the partition, or hashes with a partitioner evident does not know: let it \
             choose by key with {topic} (librdkafka: partitioner={rdkafka}), or set the topic config \
             evident.key.partition.guard=false to allow a key in several partitions"
        );
    };
    let topic_config = format!("or, for keys not yet stored, the topic config evident.key.partitioner={producer}");
    match producer {
        KeyPartitioner::Crc32 => format!(
            ". librdkafka's default partitioner (CRC32)? set partitioner={rdkafka} in the producer (this topic places \
             keys with {topic}), {topic_config}"
        ),
        KeyPartitioner::Fnv1a => format!(
            ". Sarama's default partitioner (FNV-1a, librdkafka's fnv1a)? hash with {topic} in the producer \
             (librdkafka: partitioner={rdkafka}), {topic_config}"
        ),
        KeyPartitioner::Murmur2 => format!(
            ". The Java client's default partitioner (murmur2, also kafka-python's)? this topic places keys with \
             {topic}: hash with it in the producer (librdkafka: partitioner={rdkafka}), {topic_config}"
        ),
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
        | E::KeylessOnCompacted { .. }
        | E::KeyTooLarge { .. }
        | E::EmptyBatch
        | E::EventIdInTransaction { .. }
        | E::Unsupported(_) => ResponseError::InvalidRecord,
        E::InvalidTxnState(_) => ResponseError::InvalidTxnState,
        // Retriable in the Java client: the stream is free again once the transaction ends.
        E::StreamInTransaction { .. } => ResponseError::ConcurrentTransactions,
        E::TransactionsTooLarge { .. } => ResponseError::PolicyViolation,
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
            // Only the groups of a node on a Kafka cluster meet it, and such a node runs no
            // Kafka listener; mapped for completeness.
            E::Cluster(_) => ResponseError::CoordinatorNotAvailable,
        };
        Self { code, message, record_errors: Vec::new() }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evident_core::{PartitionId, TopicName};

    fn refusal(sent_by: Vec<KeyPartitioner>, topic: KeyPartitioner) -> KafkaError {
        KafkaError::from(evident_log::Error::KeyInOtherPartition {
            topic: TopicName::new("orders").expect("name"),
            key: "order-1".into(),
            home: PartitionId(3),
            sent: PartitionId(5),
            home_by: vec![topic],
            sent_by,
            key_partitioner: topic,
        })
    }

    /// The refusal names the stream, both partitions, the producer's likely partitioner and
    /// both ways out, for each hash the producer may be using.
    #[test]
    fn key_partition_refusal_names_the_partitioner_and_the_way_out() {
        let e = refusal(vec![KeyPartitioner::Crc32], KeyPartitioner::Murmur2);
        assert_eq!(e.code, ResponseError::InvalidRecord);
        assert_eq!(
            e.message,
            "evident: stream orders/order-1 lives in partition 3 (where the murmur2 partitioner puts its key); a \
             record for it was sent to partition 5 (where the crc32 partitioner puts its key). librdkafka's default \
             partitioner (CRC32)? set partitioner=murmur2_random in the producer (this topic places keys with \
             murmur2), or, for keys not yet stored, the topic config evident.key.partitioner=crc32"
        );
        let e = refusal(vec![KeyPartitioner::Murmur2], KeyPartitioner::Crc32);
        assert!(e.message.contains("The Java client's default partitioner (murmur2"), "{}", e.message);
        assert!(e.message.contains("partitioner=consistent_random"), "{}", e.message);
        assert!(e.message.ends_with("evident.key.partitioner=murmur2"), "{}", e.message);
        let e = refusal(vec![KeyPartitioner::Fnv1a], KeyPartitioner::Murmur2);
        assert!(e.message.contains("Sarama's default partitioner (FNV-1a"), "{}", e.message);
        let e = refusal(vec![], KeyPartitioner::Murmur2);
        assert!(e.message.contains("where none of the murmur2, crc32 and fnv1a partitioners puts its key"));
        assert!(e.message.contains("The producer named the partition"), "{}", e.message);
        let e = refusal(vec![KeyPartitioner::Crc32], KeyPartitioner::Crc32);
        assert!(e.message.contains("a stored key keeps its partition"), "{}", e.message);
    }
}
