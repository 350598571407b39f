//! Projections: read models built from events, in SQLite or PostgreSQL, each event's effect
//! applied exactly once across crashes.
//!
//! A [`Projection`] declares its tables, creates them in `setup`, and changes them in `handle`,
//! one event at a time, through a [`Tx`]. The [`ProjectionRunner`] feeds it the events of its
//! [`Subscription`] in commit order and commits the handler's changes together with the
//! projection's checkpoint (the next commit sequence to process) in one database transaction.
//! After a crash the runner resumes from the checkpoint: an event whose transaction committed
//! is never applied again, and one whose transaction did not is applied on restart. The
//! guarantee covers what the handler writes through the `Tx`; anything else it does (an email,
//! a call) happens at least once.
//!
//! Handlers must be deterministic in their effects on the `Tx` (the runner may roll a
//! transaction back and run its events again, see [`runner`]). A handler error is retried with
//! backoff; after the last attempt the event is parked in the projection's dead-letter topic
//! and the later events of its stream are held behind it, while other streams proceed (see
//! [`dead_letter`]).

pub mod dead_letter;
pub mod runner;
pub mod sink;
pub mod sql;

pub use dead_letter::DeadLetters;
pub use runner::{CatchUp, ProjectionRunner, RunnerOptions};
pub use sink::Sink;
pub use sql::{Dialect, Param, Row, SqlError, SqlValue, ToParam, Tx};

use crate::event::RecordedEvent;

/// What a handler returns when it cannot process an event.
pub type HandlerError = Box<dyn std::error::Error + Send + Sync>;

/// Which events a projection receives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Subscription {
    /// The events of these topics.
    Topics(Vec<String>),
    /// Every event of every topic, except the library's own (snapshot topics `*.snapshots`,
    /// dead-letter topics `*.dlq`) and internal ones (`__*`).
    All,
}

impl Subscription {
    /// The events of one topic.
    pub fn topic(topic: impl Into<String>) -> Self {
        Subscription::Topics(vec![topic.into()])
    }

    /// Whether an event of `topic` belongs to the subscription.
    pub fn wants(&self, topic: &str) -> bool {
        match self {
            Subscription::Topics(ts) => ts.iter().any(|t| t == topic),
            Subscription::All => {
                !(topic.starts_with("__")
                    || topic.ends_with(crate::snapshot::SNAPSHOT_TOPIC_SUFFIX)
                    || topic.ends_with(evident_core::dead_letter::TOPIC_SUFFIX))
            }
        }
    }
}

/// A read model.
pub trait Projection: Send {
    /// The projection's name: its checkpoint's key, and its dead-letter topic `<name>.dlq`
    /// (so it must be a valid topic name). Renaming a projection starts it over.
    fn name(&self) -> &str;

    /// The events it receives.
    fn subscription(&self) -> Subscription;

    /// The tables it owns, written `{name}` in its SQL. A rebuild fills twins of them and swaps
    /// them in when caught up.
    fn tables(&self) -> Vec<String>;

    /// Creates its tables (`CREATE TABLE IF NOT EXISTS {t} ...`), in the runner's first
    /// transaction.
    fn setup(&mut self, tx: &mut Tx<'_>) -> Result<(), HandlerError>;

    /// Applies one event.
    fn handle(&mut self, event: &RecordedEvent, tx: &mut Tx<'_>) -> Result<(), HandlerError>;
}
