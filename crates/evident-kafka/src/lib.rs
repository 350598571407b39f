//! `evident-kafka`: the Kafka wire protocol over evident's embedded log, so that any Kafka
//! client (librdkafka and its wrappers, the Java client, kafka-python, aiokafka, kcat) can
//! produce, fetch, list offsets, administer topics and run consumer groups against evident.
//!
//! The codec is the `kafka-protocol` crate; this crate is the broker: `server` accepts
//! connections within limits (`connections`, the registry of open connections, which the
//! HTTP listener uses too), `connection` frames requests (the length is checked before any
//! allocation), `request` gates each frame against the table of served APIs, and `api`
//! registers every API once and routes it to the handler module named after it
//! (`api/produce.rs`, `api/fetch.rs`, `api/join_group.rs`, ...), each exposing `handle`. Group membership and rebalances live in `coordinator`; committed offsets are the
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
pub mod api;
mod broker;
mod config;
mod connection;
pub mod connections;
pub mod consumer_protocol;
mod coordinator;
mod dispatch;
mod error;
pub mod handler;
mod metrics;
mod records;
pub mod request;
mod server;
mod topic_config;
mod topics;
pub mod transactions;

pub use broker::Broker;
pub use config::KafkaConfig;
pub use metrics::{ErrorCount, KafkaMetrics, KafkaSnapshot};
pub use server::KafkaServer;
