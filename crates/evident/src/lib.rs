//! `evident`, the library: write only your domain, get event sourcing right by construction.
//!
//! - [`Aggregate`]: `handle(command) -> events`, `apply(event)`; events are a serde enum
//!   ([`DomainEvent`]) whose variant names are the stored event types.
//! - [`Repository`]: loads an aggregate from its latest snapshot plus the events after it,
//!   executes commands with optimistic concurrency (bounded retries on a lost race), appends
//!   idempotently given a command id, answers temporal queries ([`At`]).
//! - [`SnapshotPolicy`], [`Upcasters`]: load fast, evolve event shapes without rewriting history.
//! - [`projection`]: read models in SQLite or PostgreSQL whose checkpoint commits in the same
//!   transaction as the change (exactly once across crashes), with a sequenced dead-letter
//!   queue for events a handler cannot process.
//! - [`Backend`]: the store underneath: the embedded log in this process
//!   ([`EmbeddedBackend`]), an `evident serve` over HTTP ([`HttpBackend`]), or an Apache Kafka
//!   cluster (`KafkaBackend`, feature `kafka`, docs/cluster.md); the same application code
//!   runs on each.
//!
//! The API is async, on tokio (an axum handler awaits a repository directly); synchronous code
//! uses the [`blocking`] facade, which owns a runtime. Cargo features choose what is built:
//! `embedded`, `http`, `sqlite`, `postgres` (all by default), `schemas` (off by default:
//! versions from a schema registry, [`schemas`]) and `kafka` (off by default: librdkafka is a
//! C build).

pub mod aggregate;
pub mod backend;
pub mod blocking;
pub mod error;
pub mod event;
#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub mod projection;
pub mod repository;
mod retry;
#[cfg(feature = "schemas")]
pub mod schemas;
pub mod snapshot;
pub mod testing;
pub mod upcast;

pub use aggregate::Aggregate;
#[cfg(feature = "embedded")]
pub use backend::EmbeddedBackend;
#[cfg(feature = "http")]
pub use backend::HttpBackend;
pub use backend::{Appended, Backend, SqlAnswer, StreamQuery, TopicSpec};
#[cfg(feature = "kafka")]
pub use backend::{KafkaAppendError, KafkaBackend, KafkaConfig, KafkaGroups};
pub use error::{Error, Result};
pub use event::{DomainEvent, RecordedEvent};
pub use evident_core::{EventData, ExpectedVersion, Offset, Sequence, Version};
/// The consumer groups' model ([`KafkaGroups`] answers in it).
#[cfg(feature = "kafka")]
pub use evident_groups as consumer_groups;
pub use repository::{At, CommandError, Executed, Loaded, Repository};
pub use retry::RetryPolicy;
pub use snapshot::SnapshotPolicy;
pub use upcast::Upcasters;
#[cfg(feature = "schemas")]
pub use {
    schemars,
    schemas::{EventSchemas, RegistryClient},
};
