//! The aggregate: the consistency boundary of the command side. Its state is rebuilt by applying
//! its events in order; a command is checked against that state and either refused (a domain
//! error) or turned into new events. `handle` decides, `apply` only changes state, so replaying
//! history can never fail or re-decide.

use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::event::DomainEvent;

/// An event-sourced entity.
///
/// The state must be `Default` (the state before the first event), `Clone` (the repository
/// keeps the loaded state to re-handle a command after a concurrent write) and serde (for
/// snapshots).
pub trait Aggregate: Default + Clone + Serialize + DeserializeOwned + Send + Sync + 'static {
    /// What callers ask of the aggregate (`Send + Sync`: a command is held across the awaits
    /// of an async `execute`, which an axum handler needs to be `Send`).
    type Command: Send + Sync;
    /// What happened to it: a serde enum, one variant per event type.
    type Event: DomainEvent;
    /// Why a command is refused.
    type Error: std::fmt::Display + std::fmt::Debug + Send;

    /// The topic holding the aggregate's streams (one stream per aggregate id).
    const TOPIC: &'static str;

    /// The schema version of the serialized state, stored with each snapshot. Bump it when the
    /// state's shape changes: older snapshots are then ignored and state is rebuilt from events.
    const SNAPSHOT_VERSION: u32 = 1;

    /// Decides: the events that `command` causes, or why it is refused. Must not change state.
    fn handle(&self, command: &Self::Command) -> Result<Vec<Self::Event>, Self::Error>;

    /// Evolves: the state after `event`. Must not fail: the event already happened.
    fn apply(&mut self, event: &Self::Event);
}

/// Applies `events` in order to a default state.
pub fn replay<'a, A: Aggregate>(events: impl IntoIterator<Item = &'a A::Event>) -> A {
    let mut state = A::default();
    for e in events {
        state.apply(e);
    }
    state
}
