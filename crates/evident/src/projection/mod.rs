//! Projections: read models built from events, in SQLite or PostgreSQL, each event's effect
//! applied exactly once across crashes.
//!
//! A [`Projection`] declares its tables, creates them in `setup`, and changes them in `handle`,
//! one event at a time, through a [`Tx`] (or, overriding `handle_batch`, a page of events at a
//! time with set-based statements). The [`ProjectionRunner`] feeds it the events of its
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

/// An error of [`Projection::handle_batch`] that names the event at fault: the runner then
/// retries (and eventually parks) that event without handling the page again event by event
/// to find it. Any other error from a batch makes the runner do that search.
#[derive(Debug, thiserror::Error)]
#[error("event {index} of the batch: {error}")]
pub struct EventFailed {
    /// The event's index in the slice given to `handle_batch`.
    pub index: usize,
    /// Why it failed (what the retries and the dead-letter record see).
    pub error: HandlerError,
}

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

    /// Applies a page's events at once, in commit order: the events of one page of the feed
    /// that the projection receives, without those held behind a parked event. The default
    /// calls [`Projection::handle`] for each; a projection overrides it to fold the page in
    /// memory and write it with a few set-based statements (one multi-row upsert instead of
    /// one statement per event: see [`Tx::execute_values`]).
    ///
    /// Its effects must be those of handling the events one by one, in order: when it fails,
    /// the runner rolls the page back and handles the page event by event, to find the event
    /// that fails and retry or park it alone (see [`runner`]). An event is never applied twice
    /// or skipped because a batch failed.
    fn handle_batch(&mut self, events: &[&RecordedEvent], tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        for (index, e) in events.iter().enumerate() {
            self.handle(e, tx).map_err(|error| EventFailed { index, error })?;
        }
        Ok(())
    }
}
