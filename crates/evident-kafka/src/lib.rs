//! `evident-kafka`: the Kafka wire protocol over evident's embedded log, so that any Kafka
//! client (librdkafka and its wrappers, the Java client, kafka-python, aiokafka, kcat) can
//! produce, fetch, list offsets, administer topics and run consumer groups against evident.
//!
//! The codec is the `kafka-protocol` crate; this crate is the broker: `server` accepts
//! connections within limits, `connection` frames requests (the length is checked before any
//! allocation), `dispatch` decodes each request at its version and routes it to the handler
//! module named after its API (`produce`, `fetch`, `join_group`, ...), each exposing
//! `handle`. Group membership and rebalances live in `coordinator`; committed offsets are the
//! same `evident-groups` objects the HTTP API shows and resets.
//!
//! evident's extensions travel in record headers so plain clients can use them:
//! `evident-expected-version` (append only at that stream version), `ce_id` (idempotence by
//! event id), and the key-partition guard; their refusals come back as Kafka error codes with
//! an error message naming the stream.

pub mod alloc_guard;

/// The unit tests feed random bytes to the codec (`request::tests`), which sizes arrays from
/// the peer's length prefix: without the guard the binary installs, a random prefix can abort
/// the test process on a multi-GB allocation.
#[cfg(test)]
#[global_allocator]
static TEST_ALLOCATOR: alloc_guard::GuardedAlloc = alloc_guard::GuardedAlloc;
mod api_versions;
mod broker;
mod config;
mod connection;
mod coordinator;
mod create_partitions;
mod create_topics;
mod delete_groups;
mod delete_topics;
mod describe_configs;
mod describe_groups;
mod dispatch;
mod error;
mod fetch;
mod find_coordinator;
mod heartbeat;
mod init_producer_id;
mod join_group;
mod leave_group;
mod list_groups;
mod list_offsets;
mod metadata;
mod offset_commit;
mod offset_fetch;
mod produce;
mod records;
pub mod request;
mod server;
mod sync_group;
mod topic_config;
mod topics;

pub use broker::Broker;
pub use config::KafkaConfig;
pub use server::KafkaServer;
