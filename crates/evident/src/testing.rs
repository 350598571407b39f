//! Given/when/then tests for aggregates, without a store: given past events, when a command is
//! handled, then these events (or this refusal) follow. The events also go through the JSON
//! codec both ways, so a test fails if an event would not survive being stored.

use crate::event::{self, DomainEvent, RecordedEvent};
use crate::upcast::Upcasters;
use crate::Aggregate;

/// A given/when/then test of aggregate `A`.
#[derive(Debug)]
pub struct AggregateTest<A: Aggregate> {
    state: A,
}

/// The result of the `when` step, to be checked with `then*`.
#[derive(Debug)]
pub struct WhenResult<A: Aggregate> {
    state: A,
    result: Result<Vec<A::Event>, A::Error>,
}

fn through_codec<E: DomainEvent>(e: &E) -> E {
    let enc = event::encode(e).unwrap_or_else(|err| panic!("event {e:?} does not encode: {err}"));
    let record = RecordedEvent {
        topic: "test".into(),
        partition: 0,
        offset: evident_core::Offset(0),
        sequence: evident_core::Sequence(0),
        version: Some(evident_core::Version(0)),
        key: Some("test".into()),
        id: Some("test".into()),
        event_type: Some(enc.event_type),
        timestamp_ms: 0,
        headers: vec![(event::SCHEMA_VERSION_HEADER.into(), Some(enc.schema_version.to_string().into_bytes()))],
        data: enc.data,
    };
    event::decode(&record, &Upcasters::default()).unwrap_or_else(|err| panic!("event {e:?} does not decode: {err}"))
}

impl<A: Aggregate> AggregateTest<A> {
    /// Starts from the state after `events`.
    pub fn given(events: impl IntoIterator<Item = A::Event>) -> Self {
        let mut state = A::default();
        for e in events {
            state.apply(&through_codec(&e));
        }
        Self { state }
    }

    /// Starts from an empty stream.
    pub fn given_no_events() -> Self {
        Self::given(Vec::new())
    }

    /// Handles `command`.
    pub fn when(self, command: A::Command) -> WhenResult<A> {
        let result = self.state.handle(&command);
        WhenResult { state: self.state, result }
    }
}

impl<A: Aggregate> WhenResult<A>
where
    A::Event: PartialEq,
{
    /// Asserts that the command produced exactly `expected`, and returns the state after them.
    #[track_caller]
    pub fn then(self, expected: impl IntoIterator<Item = A::Event>) -> A {
        let expected: Vec<A::Event> = expected.into_iter().collect();
        match self.result {
            Ok(events) => {
                let events: Vec<A::Event> = events.iter().map(through_codec).collect();
                assert_eq!(events, expected, "the command produced other events than expected");
                let mut state = self.state;
                for e in &events {
                    state.apply(e);
                }
                state
            }
            Err(e) => panic!("expected events {expected:?}, the command was refused: {e}"),
        }
    }

    /// Asserts that the command was refused, with an error `check` accepts.
    #[track_caller]
    pub fn then_error(self, check: impl FnOnce(&A::Error) -> bool) {
        match self.result {
            Ok(events) => panic!("expected a refusal, the command produced {events:?}"),
            Err(e) => assert!(check(&e), "the command was refused with an unexpected error: {e}"),
        }
    }
}
