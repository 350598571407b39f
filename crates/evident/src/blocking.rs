//! The blocking facade, for synchronous callers (a CLI, a script, a test, a thread-per-request
//! server), as `reqwest::blocking` is for `reqwest`: the same types and behaviour, each call
//! run to completion on a runtime the facade owns.
//!
//! **One runtime per process.** The facade's runtime is created on first use and lives as long
//! as the process (two worker threads). One, not one per object, because the HTTP backend's
//! pooled connections and a PostgreSQL sink's connection task belong to the runtime that opened
//! them: a backend shared by a facade repository and a facade runner must stay on one runtime.
//!
//! **Not inside a runtime.** Blocking an executor thread would stall every task on it (and
//! tokio panics when asked to); calling the facade from inside a tokio runtime therefore
//! returns [`Error::Misuse`] instead, naming the async API to use there.

use std::future::Future;
use std::sync::{Arc, OnceLock};

use crate::backend::Backend;
use crate::repository::{At, CommandError, Executed, Loaded, RetryPolicy};
use crate::{Aggregate, Error, Result, SnapshotPolicy, Upcasters};

/// The facade's runtime (see the module doc).
fn runtime() -> Result<&'static tokio::runtime::Runtime> {
    static RUNTIME: OnceLock<std::result::Result<tokio::runtime::Runtime, String>> = OnceLock::new();
    if tokio::runtime::Handle::try_current().is_ok() {
        return Err(Error::Misuse(
            "evident::blocking was called inside a tokio runtime, where it would block the executor; \
             use the async API (evident::Repository, evident::projection::ProjectionRunner) there"
                .into(),
        ));
    }
    RUNTIME
        .get_or_init(|| {
            tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .thread_name("evident-blocking")
                .enable_all()
                .build()
                .map_err(|e| e.to_string())
        })
        .as_ref()
        .map_err(|e| Error::Unavailable(format!("cannot start the blocking facade's runtime: {e}")))
}

/// Runs one of the library's futures to completion on the facade's runtime: the escape hatch
/// for calls the facade does not wrap (a [`Backend`] method, say:
/// `blocking::wait(backend.head_sequence())`).
pub fn wait<T>(f: impl Future<Output = Result<T>>) -> Result<T> {
    runtime()?.block_on(f)
}

/// [`crate::Repository`], blocking.
#[derive(Debug)]
pub struct Repository<A: Aggregate>(crate::Repository<A>);

impl<A: Aggregate> Repository<A> {
    /// A repository on `backend` for the topic [`Aggregate::TOPIC`], without snapshots.
    pub fn new(backend: Arc<dyn Backend>) -> Self {
        Self(crate::Repository::new(backend))
    }

    /// Uses `topic` instead of [`Aggregate::TOPIC`].
    pub fn with_topic(self, topic: impl Into<String>) -> Self {
        Self(self.0.with_topic(topic))
    }

    /// Partitions of the topic when the repository creates it.
    pub fn with_partitions(self, partitions: u32) -> Self {
        Self(self.0.with_partitions(partitions))
    }

    /// Takes snapshots as `policy` says.
    pub fn with_snapshots(self, policy: SnapshotPolicy) -> Self {
        Self(self.0.with_snapshots(policy))
    }

    /// Uses registered schema versions ([`crate::Repository::with_schemas`]).
    #[cfg(feature = "schemas")]
    pub fn with_schemas(self, schemas: crate::schemas::EventSchemas) -> Self {
        Self(self.0.with_schemas(schemas))
    }

    /// Retries lost races as `policy` says.
    pub fn with_retry(self, policy: RetryPolicy) -> Self {
        Self(self.0.with_retry(policy))
    }

    /// Upcasts events on read.
    pub fn with_upcasters(self, upcasters: Upcasters) -> Self {
        Self(self.0.with_upcasters(upcasters))
    }

    /// The `source` of the events it appends.
    pub fn with_source(self, source: impl Into<String>) -> Self {
        Self(self.0.with_source(source))
    }

    /// The async repository underneath.
    pub fn inner(&self) -> &crate::Repository<A> {
        &self.0
    }

    /// The topic.
    pub fn topic(&self) -> &str {
        self.0.topic()
    }

    /// The backend.
    pub fn backend(&self) -> &Arc<dyn Backend> {
        self.0.backend()
    }

    /// See [`crate::Repository::ensure_topics`].
    pub fn ensure_topics(&self) -> Result<()> {
        wait(self.0.ensure_topics())
    }

    /// See [`crate::Repository::load`].
    pub fn load(&self, id: &str) -> Result<Loaded<A>> {
        wait(self.0.load(id))
    }

    /// See [`crate::Repository::load_from_events`].
    pub fn load_from_events(&self, id: &str) -> Result<Loaded<A>> {
        wait(self.0.load_from_events(id))
    }

    /// See [`crate::Repository::load_at`].
    pub fn load_at(&self, id: &str, at: At) -> Result<Loaded<A>> {
        wait(self.0.load_at(id, at))
    }

    /// See [`crate::Repository::execute`].
    pub fn execute(&self, id: &str, command: &A::Command) -> Result<Executed<A>, CommandError<A::Error>> {
        runtime()?.block_on(self.0.execute(id, command))
    }

    /// See [`crate::Repository::execute_idempotent`].
    pub fn execute_idempotent(
        &self,
        id: &str,
        command_id: &str,
        command: &A::Command,
    ) -> Result<Executed<A>, CommandError<A::Error>> {
        runtime()?.block_on(self.0.execute_idempotent(id, command_id, command))
    }

    /// See [`crate::Repository::snapshot_now`].
    pub fn snapshot_now(&self, id: &str) -> Result<Option<crate::Version>> {
        wait(self.0.snapshot_now(id))
    }
}

/// [`crate::projection::DeadLetters`], blocking.
#[cfg(any(feature = "sqlite", feature = "postgres"))]
#[derive(Debug, Clone)]
pub struct DeadLetters(crate::projection::DeadLetters);

#[cfg(any(feature = "sqlite", feature = "postgres"))]
impl DeadLetters {
    /// The dead-letter queue of projection `projection`.
    pub fn new(backend: Arc<dyn Backend>, projection: &str) -> Self {
        Self(crate::projection::DeadLetters::new(backend, projection))
    }

    /// The dead-letter topic.
    pub fn topic(&self) -> &str {
        self.0.topic()
    }

    /// See [`crate::projection::DeadLetters::list`].
    pub fn list(&self) -> Result<std::collections::BTreeMap<String, Vec<evident_core::dead_letter::Entry>>> {
        wait(self.0.list())
    }

    /// See [`crate::projection::DeadLetters::retry`].
    pub fn retry(&self, stream: &str) -> Result<()> {
        wait(self.0.retry(stream))
    }

    /// See [`crate::projection::DeadLetters::skip`].
    pub fn skip(&self, stream: &str) -> Result<crate::Sequence> {
        wait(self.0.skip(stream))
    }
}

#[cfg(any(feature = "sqlite", feature = "postgres"))]
pub use runner::*;

#[cfg(any(feature = "sqlite", feature = "postgres"))]
mod runner {
    use std::sync::atomic::AtomicBool;

    use super::*;
    use crate::projection::runner::{CatchUp, Progress, RunnerOptions};
    use crate::projection::{Projection, Row, Sink, SqlError, ToParam};

    /// Connects a PostgreSQL sink on the facade's runtime (see [`Sink::postgres`]).
    #[cfg(feature = "postgres")]
    pub fn postgres_sink(url: &str) -> Result<Sink> {
        wait(Sink::postgres(url))
    }

    /// Queries a sink's read model (see [`Sink::query`]).
    pub fn query(sink: &mut Sink, sql: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>, SqlError> {
        runtime().map_err(|e| SqlError(e.to_string()))?.block_on(sink.query(sql, params))
    }

    /// [`crate::projection::ProjectionRunner`], blocking.
    #[derive(Debug)]
    pub struct ProjectionRunner<P: Projection>(crate::projection::ProjectionRunner<P>);

    impl<P: Projection + 'static> ProjectionRunner<P> {
        /// A runner with default options, resuming from the projection's checkpoint in `sink`.
        pub fn new(backend: Arc<dyn Backend>, sink: Sink, projection: P) -> Result<Self> {
            wait(crate::projection::ProjectionRunner::new(backend, sink, projection)).map(Self)
        }

        /// A runner with `options`.
        pub fn with_options(
            backend: Arc<dyn Backend>,
            sink: Sink,
            projection: P,
            options: RunnerOptions,
        ) -> Result<Self> {
            wait(crate::projection::ProjectionRunner::with_options(backend, sink, projection, options)).map(Self)
        }

        /// See [`crate::projection::ProjectionRunner::rebuild`].
        pub fn rebuild(
            backend: Arc<dyn Backend>,
            sink: Sink,
            projection: P,
            options: RunnerOptions,
            progress: impl FnMut(&Progress) + Send + 'static,
        ) -> Result<Self> {
            wait(crate::projection::ProjectionRunner::rebuild(backend, sink, projection, options, progress)).map(Self)
        }

        /// The async runner underneath.
        pub fn inner_mut(&mut self) -> &mut crate::projection::ProjectionRunner<P> {
            &mut self.0
        }

        /// See [`crate::projection::ProjectionRunner::position`].
        pub fn position(&self) -> crate::Sequence {
            self.0.position()
        }

        /// See [`crate::projection::ProjectionRunner::projection`].
        pub fn projection(&self) -> Result<&P> {
            self.0.projection()
        }

        /// See [`crate::projection::ProjectionRunner::projection_mut`].
        pub fn projection_mut(&mut self) -> Result<&mut P> {
            self.0.projection_mut()
        }

        /// The projection's dead-letter queue.
        pub fn dead_letters(&self) -> DeadLetters {
            DeadLetters(self.0.dead_letters())
        }

        /// See [`crate::projection::ProjectionRunner::counters`].
        pub fn counters(&self) -> CatchUp {
            self.0.counters()
        }

        /// See [`crate::projection::ProjectionRunner::query`].
        pub fn query(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>> {
            wait(self.0.query(sql, params))
        }

        /// See [`crate::projection::ProjectionRunner::step`].
        pub fn step(&mut self) -> Result<usize> {
            wait(self.0.step())
        }

        /// See [`crate::projection::ProjectionRunner::catch_up`].
        pub fn catch_up(&mut self) -> Result<CatchUp> {
            wait(self.0.catch_up())
        }

        /// See [`crate::projection::ProjectionRunner::catch_up_with`].
        pub fn catch_up_with(&mut self, progress: impl FnMut(&Progress) + Send + 'static) -> Result<CatchUp> {
            wait(self.0.catch_up_with(progress))
        }

        /// See [`crate::projection::ProjectionRunner::run`].
        pub fn run(&mut self, stop: &AtomicBool) -> Result<()> {
            wait(self.0.run(stop))
        }
    }
}
