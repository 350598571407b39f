//! The log's one error type. Conditions a caller is expected to handle (a wrong expected
//! version, an unknown topic) are variants with the data needed to answer the peer precisely;
//! `Corrupted` and `Poisoned` are kept apart from `Io` because they call for different actions
//! (stop and repair; restart). A failed write is reported by what the caller can know about
//! it: `DiskFull` and `Poisoned` refuse a request that was not stored (retry safe),
//! `OutcomeUnknown` one that may or may not be (retry with the same ids).

use std::path::PathBuf;

use evident_core::partitioner::KeyPartitioner;
use evident_core::{BatchError, ExpectedVersion, NameError, PartitionId, TopicName, Version};

/// Result alias for the log.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in the log.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The stream is not at the version the append expected; nothing was appended.
    #[error("wrong expected version for stream {topic}/{key}: expected {expected}, stream is at {}", display_version(*.actual))]
    WrongExpectedVersion {
        /// Topic of the stream.
        topic: TopicName,
        /// Key of the stream (UTF-8, or hex for binary keys).
        key: String,
        /// What the append expected.
        expected: ExpectedVersion,
        /// The stream's last version, or None if it holds no event.
        actual: Option<Version>,
    },
    /// The topic does not exist.
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// The partition does not exist in the topic.
    #[error("topic {topic} has {partitions} partitions; partition {partition} does not exist")]
    UnknownPartition {
        /// Topic.
        topic: TopicName,
        /// The partition asked for.
        partition: PartitionId,
        /// How many the topic has.
        partitions: u32,
    },
    /// A topic of that name exists already.
    #[error("topic {0} already exists")]
    TopicExists(TopicName),
    /// A topic name breaks the naming rules.
    #[error(transparent)]
    InvalidTopicName(#[from] NameError),
    /// A topic configuration value is invalid.
    #[error("invalid topic configuration: {0}")]
    InvalidConfig(String),
    /// The batch is malformed (bad CRC, truncated, bad record, unsupported compression).
    #[error("invalid record batch: {0}")]
    InvalidBatch(#[from] BatchError),
    /// The batch is larger than the log accepts.
    #[error("record batch of {size} bytes exceeds the limit of {max} bytes")]
    BatchTooLarge {
        /// Size of the batch.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// A batch must hold at least one record.
    #[error("record batch holds no record")]
    EmptyBatch,
    /// A record's key is larger than the stream index accepts.
    #[error("record key of {size} bytes exceeds the limit of {max} bytes")]
    KeyTooLarge {
        /// Size of the key.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// An expected-version header or argument is not one.
    #[error("{0}")]
    InvalidExpectedVersion(String),
    /// An event id (`ce_id`) is empty, not UTF-8 or too long.
    #[error("invalid event id: {0}")]
    InvalidEventId(String),
    /// An expected version was given for records that have no key, hence no stream.
    #[error("an expected version needs a keyed record: records with a null key belong to no stream")]
    ExpectedVersionWithoutKey,
    /// A record without a key was sent to a compacted topic: compaction keeps the latest
    /// record per key, so a keyless one has nothing to be kept by (Kafka's message and rule).
    #[error("Compacted topic cannot accept message without key in topic partition {topic}-{partition}.")]
    KeylessOnCompacted {
        /// Topic.
        topic: TopicName,
        /// Partition the record was sent to.
        partition: PartitionId,
    },
    /// The key already lives in another partition of the topic (the key-partition guard). The
    /// message says which key partitioners put the key where it was sent, which is how a
    /// producer hashing with another partitioner than the topic's is told apart from one that
    /// names partitions itself.
    #[error(
        "stream {topic}/{key} lives in partition {home} ({}); a record for it was sent to partition {sent} ({})",
        placed_text(home_by),
        placed_text(sent_by)
    )]
    KeyInOtherPartition {
        /// Topic.
        topic: TopicName,
        /// Key.
        key: String,
        /// Partition that holds the stream.
        home: PartitionId,
        /// Partition the record was sent to.
        sent: PartitionId,
        /// The partitioners that place the key in `home` (empty: none does).
        home_by: Vec<KeyPartitioner>,
        /// The partitioners that place the key in `sent` (empty: none does).
        sent_by: Vec<KeyPartitioner>,
        /// The topic's own partitioner (`evident.key.partitioner`).
        key_partitioner: KeyPartitioner,
    },
    /// The same event id appears twice in one batch for one stream.
    #[error("event id {id:?} appears twice in the batch for stream {key}")]
    DuplicateIdInBatch {
        /// Stream key.
        key: String,
        /// The id.
        id: String,
    },
    /// Some events of the batch are already in their streams and some are not: a retry must
    /// resend exactly the original batch.
    #[error("the batch mixes events already appended (id {id:?}) with new ones")]
    PartialDuplicate {
        /// An id that was already appended.
        id: String,
    },
    /// An event id is reused with other content.
    #[error("event id {id:?} already names another event in stream {key} (version {version})")]
    EventIdReused {
        /// Stream key.
        key: String,
        /// The id.
        id: String,
        /// Version of the original event.
        version: Version,
    },
    /// Kafka idempotent producer: the epoch is older than the one the log knows.
    #[error("producer {producer_id} epoch {epoch} is fenced by epoch {current}")]
    ProducerFenced {
        /// Producer id.
        producer_id: i64,
        /// Epoch sent.
        epoch: i16,
        /// Epoch known.
        current: i16,
    },
    /// Kafka idempotent producer: the sequence number is not the next one.
    #[error("producer {producer_id} sent sequence {got}, expected {expected}")]
    OutOfOrderSequence {
        /// Producer id.
        producer_id: i64,
        /// Sequence sent.
        got: i32,
        /// Sequence expected.
        expected: i32,
    },
    /// A transaction rule was broken: a control batch sent by a client, a transactional batch
    /// without a producer id, a batch outside a producer's open transaction.
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    /// The stream has records of another producer's open transaction that decide the answer:
    /// held by it (it appended with an expected version or event ids), or this append
    /// conditions on the stream (an expected version, event ids) while that transaction may
    /// still add to it. Nothing was appended; retry once the transaction ends (at most its
    /// timeout).
    #[error("stream {topic}/{key} has records of the open transaction of producer {producer_id}: retry once it ends")]
    StreamInTransaction {
        /// Topic.
        topic: TopicName,
        /// Key.
        key: String,
        /// The transaction's producer id.
        producer_id: i64,
    },
    /// An event id given twice inside one transaction, for one stream.
    #[error("event id {id:?} is already used in stream {key} by this transaction")]
    EventIdInTransaction {
        /// Stream key.
        key: String,
        /// The id.
        id: String,
    },
    /// Open transactions would hold more pending records than the log keeps in memory
    /// (`LogConfig::txn_pending_records_max`). Nothing was appended.
    #[error("open transactions hold {pending} records; {records} more would pass the limit of {max}")]
    TransactionsTooLarge {
        /// Records pending now.
        pending: usize,
        /// Records in this batch.
        records: usize,
        /// The limit.
        max: usize,
    },
    /// A file of the log is corrupted somewhere acknowledged data lives; the log refuses to
    /// open (or to serve the damaged bytes) rather than drop data silently.
    #[error("corruption in {file} at byte {offset}: {what}")]
    Corrupted {
        /// The file.
        file: PathBuf,
        /// Byte offset within the file.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// A sync failed earlier; the log acknowledges nothing more until it is reopened.
    #[error("the log is poisoned by an earlier failed write or sync ({0}); restart to recover")]
    Poisoned(String),
    /// The disk is full, so the log refuses writes: nothing of this request was stored (its
    /// bytes were never written, or were cut back and the cut synced), so retrying it is safe.
    /// The log serves reads meanwhile and accepts writes again, without a restart, once a
    /// probe finds free space ([`crate::Log::read_only`] says why until then).
    #[error("the disk is full ({0}): nothing of this request was stored; writes resume once space is freed")]
    DiskFull(String),
    /// A write or sync failed after this request's bytes may have reached the file: it may or
    /// may not be stored, and the log is poisoned until restart. Retry it with the same event
    /// ids (or, over Kafka, the same producer sequence) once the store is back: a stored copy
    /// then answers the retry as a duplicate, so it is stored exactly once either way.
    #[error("the outcome of this write is unknown ({0}): it may or may not be stored; retry it with the same event ids once the store is back")]
    OutcomeUnknown(String),
    /// The data directory is locked by another process.
    #[error("{0}")]
    Locked(String),
    /// An offset past the partition's high watermark.
    #[error("offset {offset} is out of range for {topic}/{partition}: the log holds offsets {log_start} to {high_watermark} (exclusive)")]
    OffsetOutOfRange {
        /// Topic.
        topic: TopicName,
        /// Partition.
        partition: PartitionId,
        /// Offset asked for.
        offset: u64,
        /// First offset.
        log_start: u64,
        /// One past the last offset.
        high_watermark: u64,
    },
    /// A feature the log does not support (yet), named.
    #[error("unsupported: {0}")]
    Unsupported(String),
    /// The log is closed.
    #[error("the log is closed")]
    Closed,
    /// An I/O error.
    #[error("I/O error: {0}")]
    Io(#[from] std::io::Error),
}

/// "where crc32 puts its key", or that no known partitioner does.
fn placed_text(by: &[KeyPartitioner]) -> String {
    match by {
        [] => "where none of the murmur2, crc32 and fnv1a partitioners puts its key".to_string(),
        [only] => format!("where the {only} partitioner puts its key"),
        _ => {
            let names: Vec<&str> = by.iter().map(|p| p.name()).collect();
            format!("where the {} partitioners put its key", names.join(" and "))
        }
    }
}

fn display_version(v: Option<Version>) -> String {
    match v {
        Some(v) => v.to_string(),
        None => "no_stream (no event)".to_string(),
    }
}
