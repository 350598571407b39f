//! The repository: loads an aggregate (latest usable snapshot, then the events after it,
//! upcast to their current shape) and executes commands against it with optimistic
//! concurrency.
//!
//! A command runs as: load → `handle` → append with the expected version of what was loaded.
//! If another writer got there first, the append is refused (nothing written), the repository
//! reads only the events it missed, and handles the command again on the newer state, up to the
//! [`RetryPolicy`]'s bound. Given a command id, the events' ids derive from it
//! (`<command id>.<n>`), so a command retried by its caller after a lost reply is stored once:
//! the log recognizes the ids, and a retry that finds its first event in the stream it replays
//! returns without handling again.
//!
//! Every operation is async (it awaits the [`Backend`]); the futures are `Send`, so an axum
//! handler awaits them directly. A lost race backs off with `tokio::time::sleep`, which holds
//! no thread.

use std::sync::Arc;

use evident_core::{EventData, ExpectedVersion, Version};

use crate::backend::{for_each_in_stream, Appended, Backend, Direction, StreamQuery, TopicSpec};
use crate::event::{self, RecordedEvent, SCHEMA_VERSION_HEADER};
/// The bound on a command's retries after lost races (shared with the projection runner's
/// handler retries).
pub use crate::retry::RetryPolicy;
use crate::snapshot::{self, SnapshotPolicy};
use crate::upcast::Upcasters;
use crate::{Aggregate, Error, Result};

/// A point in an aggregate's history, for temporal queries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum At {
    /// Just after the event at this version.
    Version(Version),
    /// At this time (ms since the epoch): events stamped later are left out.
    TimeMs(i64),
}

impl At {
    /// At a time.
    pub fn time(t: jiff::Timestamp) -> Self {
        At::TimeMs(t.as_millisecond())
    }
}

/// An aggregate as loaded.
#[derive(Debug, Clone)]
pub struct Loaded<A> {
    /// The state.
    pub state: A,
    /// Version of the last event applied (None: the stream is empty).
    pub version: Option<Version>,
    /// Version of the snapshot the load started from, if one was used.
    pub snapshot_version: Option<Version>,
    /// Events read and applied after the snapshot (or from the start).
    pub events_replayed: u64,
}

impl<A: Default> Loaded<A> {
    /// The state at `snapshot` (or before the first event), before any event is read.
    fn starting_from(snapshot: Option<snapshot::Snapshot<A>>) -> Self {
        match snapshot {
            Some(s) => Loaded {
                version: Some(s.version),
                snapshot_version: Some(s.version),
                state: s.state,
                events_replayed: 0,
            },
            None => Loaded { state: A::default(), version: None, snapshot_version: None, events_replayed: 0 },
        }
    }
}

/// The outcome of a command.
#[derive(Debug, Clone)]
pub struct Executed<A: Aggregate> {
    /// The state after the command.
    pub state: A,
    /// The stream's version after the command (None: still empty).
    pub version: Option<Version>,
    /// The events the command produced (empty when it changed nothing, or was a duplicate).
    pub events: Vec<A::Event>,
    /// Where they landed (None when nothing was appended).
    pub appended: Option<Appended>,
    /// Attempts made (more than 1 after lost races).
    pub attempts: u32,
    /// True when the command id had already been executed: nothing new was appended.
    pub duplicate: bool,
}

/// Why a command did not take effect.
#[derive(Debug, thiserror::Error)]
pub enum CommandError<E: std::fmt::Display + std::fmt::Debug> {
    /// The aggregate refused it.
    #[error("command refused: {0}")]
    Domain(E),
    /// The store failed, or concurrent writers outlasted the retry policy.
    #[error(transparent)]
    Store(#[from] Error),
}

/// Loads aggregates of type `A` and executes commands on them.
pub struct Repository<A: Aggregate> {
    backend: Arc<dyn Backend>,
    topic: String,
    snapshot_topic: String,
    partitions: u32,
    snapshots: SnapshotPolicy,
    retry: RetryPolicy,
    upcasters: Upcasters,
    source: String,
    page: usize,
    /// The registered schema versions, when the repository uses a registry's.
    #[cfg(feature = "schemas")]
    schemas: Option<Arc<crate::schemas::EventSchemas>>,
    _marker: std::marker::PhantomData<fn() -> A>,
}

impl<A: Aggregate> std::fmt::Debug for Repository<A> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Repository")
            .field("topic", &self.topic)
            .field("snapshots", &self.snapshots)
            .field("retry", &self.retry)
            .finish_non_exhaustive()
    }
}

impl<A: Aggregate> Repository<A> {
    /// A repository on `backend` for the topic [`Aggregate::TOPIC`], without snapshots.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self {
            backend,
            topic: A::TOPIC.to_string(),
            snapshot_topic: snapshot::snapshot_topic(A::TOPIC),
            partitions: 1,
            snapshots: SnapshotPolicy::Never,
            retry: RetryPolicy::default(),
            upcasters: Upcasters::default(),
            source: format!("/evident/{}", A::TOPIC),
            page: 1000,
            #[cfg(feature = "schemas")]
            schemas: None,
            _marker: std::marker::PhantomData,
        }
    }

    /// Uses `topic` instead of [`Aggregate::TOPIC`] (its snapshots go to `<topic>.snapshots`).
    pub fn with_topic(mut self, topic: impl Into<String>) -> Self {
        self.topic = topic.into();
        self.snapshot_topic = snapshot::snapshot_topic(&self.topic);
        self
    }

    /// Partitions to create the topic with, if it does not exist (default 1).
    pub fn with_partitions(mut self, partitions: u32) -> Self {
        self.partitions = partitions;
        self
    }

    /// Takes snapshots as `policy` says.
    pub fn with_snapshots(mut self, policy: SnapshotPolicy) -> Self {
        self.snapshots = policy;
        self
    }

    /// Retries lost races as `policy` says.
    pub fn with_retry(mut self, policy: RetryPolicy) -> Self {
        self.retry = policy;
        self
    }

    /// Upcasts stored events with `upcasters`.
    pub fn with_upcasters(mut self, upcasters: Upcasters) -> Self {
        self.upcasters = upcasters;
        self
    }

    /// Uses the schema versions registered in a schema registry (feature `schemas`): each
    /// appended event is stamped with its type's registered version, and stored events are
    /// upcast from the version they carry to the registered one, so the [`Upcasters`] are keyed
    /// by registered versions (`crate::schemas`). An event type `schemas` does not know is
    /// refused on append ([`Error::Schema`]); the schemas' topic must be the repository's.
    #[cfg(feature = "schemas")]
    pub fn with_schemas(mut self, schemas: crate::schemas::EventSchemas) -> Self {
        self.schemas = Some(Arc::new(schemas));
        self
    }

    /// The current schema version of `event_type`: the registered one when the repository
    /// has registered schemas (1 for a type they do not know, which then fails to decode
    /// unless stored at 1), else the code's [`crate::DomainEvent::schema_version`].
    fn current_version(&self, event_type: &str) -> u32 {
        #[cfg(feature = "schemas")]
        if let Some(schemas) = &self.schemas {
            return schemas.version(event_type).unwrap_or(1);
        }
        <A::Event as crate::DomainEvent>::schema_version(event_type)
    }

    /// The schema version an appended event of `event_type` is stamped with, and whether the
    /// header is written even for version 1 (with registered schemas it always is, so a
    /// reader sees the version came from the registry).
    #[cfg_attr(not(feature = "schemas"), allow(unused_variables))]
    fn append_version(&self, event_type: &str, code_version: u32) -> Result<(u32, bool)> {
        #[cfg(feature = "schemas")]
        if let Some(schemas) = &self.schemas {
            if schemas.topic() != self.topic {
                return Err(Error::Schema(format!(
                    "the schemas were registered for topic {}, the repository writes to {}",
                    schemas.topic(),
                    self.topic
                )));
            }
            let version = schemas.version(event_type).ok_or_else(|| {
                Error::Schema(format!(
                    "event type {event_type} has no schema registered under {}",
                    crate::schemas::EventSchemas::subject(&self.topic, event_type)
                ))
            })?;
            return Ok((version, true));
        }
        Ok((code_version, false))
    }

    /// The `ce_source` of appended events (default `/evident/<topic>`).
    pub fn with_source(mut self, source: impl Into<String>) -> Self {
        self.source = source.into();
        self
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        &self.topic
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        &self.backend
    }

    /// Creates the topic and the snapshot topic if they do not exist.
    pub async fn ensure_topics(&self) -> Result<()> {
        self.backend.ensure_topic(&self.topic, TopicSpec { partitions: self.partitions, compacted: false }).await?;
        if self.snapshots != SnapshotPolicy::Never {
            self.backend.ensure_topic(&self.snapshot_topic, TopicSpec { partitions: 1, compacted: true }).await?;
        }
        Ok(())
    }

    /// Loads the current state of aggregate `id`, from its latest usable snapshot.
    pub async fn load(&self, id: &str) -> Result<Loaded<A>> {
        let start = self.latest_snapshot(id, None).await?;
        let mut loaded = Loaded::starting_from(start);
        self.catch_up(id, &mut loaded, None, None).await?;
        Ok(loaded)
    }

    /// Loads aggregate `id` without snapshots, replaying every event (to check a snapshot, or
    /// when state must be derived from the events alone).
    pub async fn load_from_events(&self, id: &str) -> Result<Loaded<A>> {
        let mut loaded = Loaded::starting_from(None);
        self.catch_up(id, &mut loaded, None, None).await?;
        Ok(loaded)
    }

    /// Loads aggregate `id` as it was at `at`: after the event at a version, or at a time. A
    /// version query starts from the latest snapshot at or before that version; a time query
    /// replays from the start (a snapshot's time says when it was taken, not when its events
    /// happened).
    pub async fn load_at(&self, id: &str, at: At) -> Result<Loaded<A>> {
        let start = match at {
            At::Version(v) => self.latest_snapshot(id, Some(v)).await?,
            At::TimeMs(_) => None,
        };
        let mut loaded = Loaded::starting_from(start);
        self.catch_up(id, &mut loaded, Some(at), None).await?;
        Ok(loaded)
    }

    /// Applies the events of `id` after `loaded.version` to `loaded`, stopping at `at`. When
    /// `watch_id` is given, returns whether an event with that id was seen.
    async fn catch_up(&self, id: &str, loaded: &mut Loaded<A>, at: Option<At>, watch_id: Option<&str>) -> Result<bool> {
        loop {
            if let Some(seen) = self.catch_up_once(id, loaded, at, watch_id).await? {
                return Ok(seen);
            }
        }
    }

    /// One pass of [`Self::catch_up`]; None when the snapshot it started from was unusable and
    /// `loaded` was reset to replay from the first event.
    async fn catch_up_once(
        &self,
        id: &str,
        loaded: &mut Loaded<A>,
        at: Option<At>,
        watch_id: Option<&str>,
    ) -> Result<Option<bool>> {
        let query = StreamQuery {
            from_version: Some(loaded.version.map_or(Version(0), Version::next)),
            limit: self.page,
            direction: Direction::Forward,
            as_of_version: match at {
                Some(At::Version(v)) => Some(v),
                _ => None,
            },
            as_of_time_ms: match at {
                Some(At::TimeMs(t)) => Some(t),
                _ => None,
            },
        };
        // (No shortcut when a snapshot already reaches a version asked for: the read also says
        // whether the stream really reaches the snapshot.)
        let mut seen = false;
        let current = for_each_in_stream(self.backend.as_ref(), &self.topic, id, query, |recorded| {
            if watch_id.is_some() && recorded.id.as_deref() == watch_id {
                seen = true;
            }
            let event: A::Event = event::decode_with(&recorded, &self.upcasters, |t| self.current_version(t))?;
            loaded.state.apply(&event);
            loaded.version = recorded.version;
            loaded.events_replayed += 1;
            Ok(())
        })
        .await?;
        if let Some(s) = loaded.snapshot_version {
            if current.is_none_or(|c| s > c) {
                // A snapshot of events the stream does not hold (a topic recreated, a foreign
                // record): not a source of truth; rebuild from the events.
                tracing::warn!(topic = %self.topic, id, snapshot_version = %s, stream_version = ?current,
                    "snapshot beyond the end of the stream ignored; rebuilding from events");
                *loaded = Loaded::starting_from(None);
                return Ok(None);
            }
        }
        Ok(Some(seen))
    }

    /// Whether an event with id `event_id` is in the stream `id` at or before `version`: the
    /// part a snapshot covers, which [`Self::catch_up`] does not read. Read only on the rare
    /// paths where an idempotent command sent again may have landed before the snapshot.
    async fn landed_before(&self, id: &str, event_id: &str, version: Version) -> Result<bool> {
        let query = StreamQuery {
            from_version: Some(Version(0)),
            limit: self.page,
            direction: Direction::Forward,
            as_of_version: Some(version),
            as_of_time_ms: None,
        };
        let mut seen = false;
        for_each_in_stream(self.backend.as_ref(), &self.topic, id, query, |recorded| {
            seen |= recorded.id.as_deref() == Some(event_id);
            Ok(())
        })
        .await?;
        Ok(seen)
    }

    /// The latest snapshot of `id` (at or before `max_version`, if given) that this code can use.
    async fn latest_snapshot(&self, id: &str, max_version: Option<Version>) -> Result<Option<snapshot::Snapshot<A>>> {
        if self.snapshots == SnapshotPolicy::Never {
            return Ok(None);
        }
        // A temporal query looks back through a bounded number of older snapshots; past that,
        // replaying from the start is the simpler answer.
        let limit = if max_version.is_some() { 64 } else { 1 };
        let query = StreamQuery { direction: Direction::Backward, limit, ..StreamQuery::default() };
        let page = self.backend.read_stream(&self.snapshot_topic, id, &query).await?;
        for record in &page.events {
            match snapshot::decode::<A>(record) {
                Ok(s) if max_version.is_none_or(|m| s.version <= m) => return Ok(Some(s)),
                Ok(_) => continue,
                Err(why) => {
                    tracing::warn!(stream = %record.stream(), %why, "snapshot ignored; rebuilding from events");
                    if max_version.is_none() {
                        return Ok(None);
                    }
                }
            }
        }
        Ok(None)
    }

    /// Executes `command` on aggregate `id`, retrying lost races. Events get random ids.
    pub async fn execute(&self, id: &str, command: &A::Command) -> Result<Executed<A>, CommandError<A::Error>> {
        self.execute_inner(id, None, command).await
    }

    /// Executes `command` on aggregate `id` idempotently: `command_id` (unique per command,
    /// e.g. from the request that carried it) names its events, so executing it again appends
    /// nothing and reports `duplicate`.
    pub async fn execute_idempotent(
        &self,
        id: &str,
        command_id: &str,
        command: &A::Command,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        if command_id.is_empty() || command_id.len() > 200 {
            return Err(Error::Rejected("a command id must be 1 to 200 bytes".into()).into());
        }
        self.execute_inner(id, Some(command_id), command).await
    }

    /// Whether an idempotent command decided again on `loaded` already landed in the part of
    /// the stream its snapshot covers (see [`Self::execute_inner`]).
    async fn covered_duplicate(&self, id: &str, first_id: Option<&str>, loaded: &Loaded<A>) -> Result<bool> {
        match (first_id, loaded.snapshot_version) {
            (Some(event_id), Some(s)) => self.landed_before(id, event_id, s).await,
            _ => Ok(false),
        }
    }

    async fn execute_inner(
        &self,
        id: &str,
        command_id: Option<&str>,
        command: &A::Command,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        let first_id = command_id.map(|c| format!("{c}.0"));
        let start = self.latest_snapshot(id, None).await?;
        let last_snapshot_ms = start.as_ref().map(|s| s.taken_ms);
        let mut loaded = Loaded::starting_from(start);
        let mut attempts = 0;
        loop {
            attempts += 1;
            let seen = self.catch_up(id, &mut loaded, None, first_id.as_deref()).await?;
            if seen {
                return Ok(Executed {
                    state: loaded.state,
                    version: loaded.version,
                    events: Vec::new(),
                    appended: None,
                    attempts,
                    duplicate: true,
                });
            }
            // A command sent again after its reply was lost is recognized above when its events
            // are after the snapshot the load started from. When the snapshot covers them, the
            // command is decided again on a state that already holds its effects: a refusal,
            // no events, or events the log refuses as reusing the ids may then all mean "done
            // already", which the covered part of the stream tells.
            let duplicate = |loaded: Loaded<A>, attempts| Executed {
                state: loaded.state,
                version: loaded.version,
                events: Vec::new(),
                appended: None,
                attempts,
                duplicate: true,
            };
            let events = match loaded.state.handle(command) {
                Ok(events) => events,
                Err(e) => {
                    if self.covered_duplicate(id, first_id.as_deref(), &loaded).await? {
                        return Ok(duplicate(loaded, attempts));
                    }
                    return Err(CommandError::Domain(e));
                }
            };
            if events.is_empty() {
                if self.covered_duplicate(id, first_id.as_deref(), &loaded).await? {
                    return Ok(duplicate(loaded, attempts));
                }
                return Ok(Executed {
                    state: loaded.state,
                    version: loaded.version,
                    events,
                    appended: None,
                    attempts,
                    duplicate: false,
                });
            }
            let data = self.to_event_data(&events, command_id)?;
            let expected = loaded.version.map_or(ExpectedVersion::NoStream, ExpectedVersion::Exact);
            match self.append_creating_topic(id, expected, &data).await {
                Ok(appended) => {
                    if appended.duplicate {
                        // The ids were already there: an earlier run of this command landed
                        // (possibly at another version); report the stream as it is.
                        self.catch_up(id, &mut loaded, None, None).await?;
                        return Ok(Executed {
                            state: loaded.state,
                            version: loaded.version,
                            events: Vec::new(),
                            appended: Some(appended),
                            attempts,
                            duplicate: true,
                        });
                    }
                    let before = loaded.version;
                    for e in &events {
                        loaded.state.apply(e);
                    }
                    loaded.version = Some(appended.last_version);
                    let now_ms = jiff::Timestamp::now().as_millisecond();
                    if self.snapshots.due(before.map(|v| v.0), appended.last_version.0, last_snapshot_ms, now_ms) {
                        self.write_snapshot(id, &loaded.state, appended.last_version).await;
                    }
                    return Ok(Executed {
                        state: loaded.state,
                        version: loaded.version,
                        events,
                        appended: Some(appended),
                        attempts,
                        duplicate: false,
                    });
                }
                Err(Error::WrongExpectedVersion { stream, expected, current }) => {
                    if self.retry.max_attempts <= 1 {
                        // No retry policy: the lost race is the caller's to handle.
                        return Err(Error::WrongExpectedVersion { stream, expected, current }.into());
                    }
                    if attempts >= self.retry.max_attempts {
                        return Err(Error::RetriesExhausted { stream, attempts }.into());
                    }
                    tokio::time::sleep(self.retry.backoff(attempts)).await;
                    // Loop: read what was missed, then handle again on the newer state.
                }
                Err(Error::Rejected(why)) => {
                    if self.covered_duplicate(id, first_id.as_deref(), &loaded).await? {
                        return Ok(duplicate(loaded, attempts));
                    }
                    return Err(Error::Rejected(why).into());
                }
                Err(e) => return Err(e.into()),
            }
        }
    }

    /// Takes a snapshot of aggregate `id` now (whatever the policy), and returns its version
    /// (None for an empty stream).
    pub async fn snapshot_now(&self, id: &str) -> Result<Option<Version>> {
        let loaded = self.load(id).await?;
        let Some(version) = loaded.version else {
            return Ok(None);
        };
        self.backend.ensure_topic(&self.snapshot_topic, TopicSpec { partitions: 1, compacted: true }).await?;
        self.backend
            .append(&self.snapshot_topic, id, ExpectedVersion::Any, &[snapshot::encode(&loaded.state, version)?])
            .await?;
        Ok(Some(version))
    }

    /// Writes a snapshot after a command. Failing to write one costs only load time later, so
    /// the failure is logged, not returned: the command's events are already durable.
    async fn write_snapshot(&self, id: &str, state: &A, version: Version) {
        let write = async {
            let record = snapshot::encode(state, version)?;
            let topic = &self.snapshot_topic;
            match self.backend.append(topic, id, ExpectedVersion::Any, std::slice::from_ref(&record)).await {
                Err(Error::UnknownTopic(_)) => {
                    // Most likely the snapshot topic is missing (created lazily): create, retry.
                    self.backend.ensure_topic(topic, TopicSpec { partitions: 1, compacted: true }).await?;
                    self.backend.append(topic, id, ExpectedVersion::Any, &[record]).await.map(drop)
                }
                other => other.map(drop),
            }
        };
        if let Err(e) = write.await {
            tracing::warn!(topic = %self.snapshot_topic, id, %version, error = %e, "snapshot not written");
        }
    }

    async fn append_creating_topic(&self, id: &str, expected: ExpectedVersion, data: &[EventData]) -> Result<Appended> {
        match self.backend.append(&self.topic, id, expected, data).await {
            Err(Error::UnknownTopic(_)) => {
                let spec = TopicSpec { partitions: self.partitions, compacted: false };
                self.backend.ensure_topic(&self.topic, spec).await?;
                self.backend.append(&self.topic, id, expected, data).await
            }
            other => other,
        }
    }

    fn to_event_data(&self, events: &[A::Event], command_id: Option<&str>) -> Result<Vec<EventData>> {
        events
            .iter()
            .enumerate()
            .map(|(i, e)| {
                let enc = event::encode(e)?;
                let id = match command_id {
                    Some(c) => format!("{c}.{i}"),
                    None => uuid::Uuid::new_v4().to_string(),
                };
                let (schema_version, stamp) = self.append_version(&enc.event_type, enc.schema_version)?;
                let mut data = EventData::json(id, enc.event_type, enc.data);
                data.source = Some(self.source.clone());
                if stamp || schema_version != 1 {
                    data.extra_headers
                        .push((SCHEMA_VERSION_HEADER.into(), Some(schema_version.to_string().into_bytes())));
                }
                Ok(data)
            })
            .collect()
    }
}

/// Decodes a stream's recorded events into `A`'s event type (for tools and tests that read
/// streams directly).
pub fn decode_all<A: Aggregate>(records: &[RecordedEvent], upcasters: &Upcasters) -> Result<Vec<A::Event>> {
    records.iter().map(|r| event::decode(r, upcasters)).collect()
}
