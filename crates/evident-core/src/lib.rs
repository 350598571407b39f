//! evident's vocabulary, shared by every other crate: names and positions (topics, partitions,
//! offsets, stream keys, versions, the store-wide commit sequence), the expected-version rule of
//! optimistic concurrency, the Kafka record batch (format v2) that is evident's unit on disk and
//! on the wire, the CloudEvents envelope carried in record headers, and the Kafka clients' key
//! partitioners (murmur2, CRC32, FNV-1a).
//!
//! Architecture invariant: this crate does no I/O and reads no clock. Everything here is a pure
//! function of its arguments, so it can be tested and fuzzed without a file or a socket.

pub mod batch;
pub mod control;
pub mod dead_letter;
pub mod envelope;
pub mod expected_version;
pub mod ids;
pub mod partitioner;
pub mod varint;

pub use batch::{BatchBuilder, BatchError, BatchHeader, Compression, NewRecord, Record, RecordBatch};
pub use envelope::{EventData, Header};
pub use expected_version::ExpectedVersion;
pub use ids::{NameError, Offset, PartitionId, Sequence, StreamKey, TopicName, Version};
