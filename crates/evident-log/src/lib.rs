//! `evident-log`, the storage engine of evident: a durable, crash-safe event log with entity
//! streams and optimistic concurrency.
//!
//! One journal of checksummed frames holds every topic; each frame carries a Kafka v2 record
//! batch exactly as Fetch will serve it. Appends are acknowledged only after the `fdatasync`
//! that covers them (group commit shares one sync among concurrent appenders). In-memory
//! indexes (partition offsets, stream versions, event ids, producer sequences) are derived from
//! the journal and checkpointed, so reopening re-reads only the journal's tail.
//!
//! Architecture invariants: this crate knows nothing of Kafka's network protocol, HTTP or
//! schemas; it is the only crate that syncs files (through [`storage`]).
//! See `docs/log-format.md` for the bytes on disk and the recovery rules.

#![deny(clippy::unwrap_used)]

mod append;
mod catalog;
mod checkpoint;
pub mod clock;
mod config;
mod error;
mod frame;
mod hashed;
mod health;
mod index;
mod journal;
mod log;
mod read;
mod recovery;
mod scan;
pub mod storage;
mod txn;

pub use append::{Acknowledgement, AppendOutcome, PendingAppend, RecordPosition};
pub use catalog::{CleanupPolicy, SubjectNameStrategy, TopicConfig, TopicMeta};
pub use config::{FsyncPolicy, LogConfig};
pub use error::{Error, Result};
pub use health::{
    DamageReport, DamageSite, HealthReason, HealthStatus, LogHealth, ReasonCode, RecoveryNote, DAMAGE_SITES_MAX,
};
pub use log::{CommitHook, Log, LogStats, RecoveryReport, SYNC_LATENCY_BOUNDS_US};
pub use read::{
    AbortedTransaction, ActiveProducer, Direction, Event, PartitionOffsets, PartitionRead, StreamRead,
    StreamReadOptions, TopicDescription,
};
pub use recovery::{ReplayOutcome, Truncation};
pub use scan::ScanError;
pub use txn::TxnEnd;
