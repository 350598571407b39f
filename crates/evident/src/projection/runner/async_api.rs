//! The runner's public, async face. Each call moves the synchronous [`Core`] to a thread of
//! tokio's blocking pool, runs a step or a catch-up there, and takes it back, so an axum
//! service (or any tokio task) drives a projection without blocking its executor. Waiting for
//! new events while live is an await on the backend, which holds no thread.
//!
//! A call whose future is dropped before it completes (a cancelled task, a `select!` that
//! chose another branch) leaves its page to finish on the blocking pool, committed or rolled
//! back as usual, but the core does not come back: later calls return [`Error::Misuse`], and
//! the projection is opened again with a new runner, which resumes from the checkpoint.

use std::future::Future;
use std::sync::atomic::AtomicBool;

use super::*;

/// Runs a projection against a backend and a sink.
pub struct ProjectionRunner<P: Projection> {
    core: Option<Box<Core<P>>>,
    backend: Arc<dyn Backend>,
    name: String,
    idle_wait: Duration,
    /// The last position and counters the core reported (kept when the core is lost).
    position: u64,
    counters: CatchUp,
}

impl<P: Projection> std::fmt::Debug for ProjectionRunner<P> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRunner")
            .field("name", &self.name)
            .field("position", &self.position)
            .field("core", &self.core)
            .finish_non_exhaustive()
    }
}

/// Runs `f` on tokio's blocking pool and waits for it without blocking the executor. A panic
/// there (a handler's) continues in the caller, as it would have in a synchronous call.
async fn off_executor<T: Send + 'static>(f: impl FnOnce() -> T + Send + 'static) -> Result<T> {
    match crate::error::runtime()?.spawn_blocking(f).await {
        Ok(v) => Ok(v),
        Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
        Err(e) => Err(Error::Sink(format!("the projection's work did not complete: {e}"))),
    }
}

impl<P: Projection + 'static> ProjectionRunner<P> {
    /// A runner with default options, resuming from the projection's checkpoint in `sink`.
    pub async fn new(backend: Arc<dyn Backend>, sink: Sink, projection: P) -> Result<Self> {
        Self::with_options(backend, sink, projection, RunnerOptions::default()).await
    }

    /// A runner with `options`.
    pub async fn with_options(
        backend: Arc<dyn Backend>,
        sink: Sink,
        projection: P,
        options: RunnerOptions,
    ) -> Result<Self> {
        let rt = crate::error::runtime()?;
        let b = backend.clone();
        let core = off_executor(move || Core::open(rt, b, sink, projection, options, false)).await??;
        Ok(Self::around(core, backend, options))
    }

    /// Rebuilds the projection from the start of the feed into fresh twins of its tables,
    /// reporting progress, then swaps them in (in one transaction) with the checkpoint and
    /// parked entries they reached. The live tables stay readable until the swap. Run it while
    /// no live runner of the same projection is running; it returns the live runner.
    pub async fn rebuild(
        backend: Arc<dyn Backend>,
        sink: Sink,
        projection: P,
        options: RunnerOptions,
        progress: impl FnMut(&Progress) + Send + 'static,
    ) -> Result<Self> {
        let rt = crate::error::runtime()?;
        let b = backend.clone();
        let core = off_executor(move || Core::rebuild(rt, b, sink, projection, options, progress)).await??;
        Ok(Self::around(core, backend, options))
    }

    fn around(core: Core<P>, backend: Arc<dyn Backend>, options: RunnerOptions) -> Self {
        Self {
            name: core.name.clone(),
            position: core.position,
            counters: core.counters,
            core: Some(Box::new(core)),
            backend,
            idle_wait: options.idle_wait,
        }
    }

    /// Runs `f` on the core, on the blocking pool.
    async fn on_core<T: Send + 'static>(
        &mut self,
        f: impl FnOnce(&mut Core<P>) -> Result<T> + Send + 'static,
    ) -> Result<T> {
        let mut core = self.core.take().ok_or_else(|| self.lost())?;
        let (core, r) = off_executor(move || {
            let r = f(&mut core);
            (core, r)
        })
        .await?;
        self.position = core.position;
        self.counters = core.counters;
        self.core = Some(core);
        r
    }

    fn lost(&self) -> Error {
        Error::Misuse(format!(
            "the runner of {} lost its state: an earlier call was cancelled or panicked; open the projection again",
            self.name
        ))
    }

    /// The next commit sequence to process (everything before it is applied, parked or not
    /// subscribed).
    pub fn position(&self) -> Sequence {
        Sequence(self.position)
    }

    /// The projection ([`Error::Misuse`] if an earlier call was cancelled, see the module doc).
    pub fn projection(&self) -> Result<&P> {
        self.core.as_ref().map(|c| &c.projection).ok_or_else(|| self.lost())
    }

    /// The projection, mutably (for state it keeps outside the database).
    pub fn projection_mut(&mut self) -> Result<&mut P> {
        let lost = self.lost();
        self.core.as_mut().map(|c| &mut c.projection).ok_or(lost)
    }

    /// The projection's dead-letter queue.
    pub fn dead_letters(&self) -> DeadLetters {
        DeadLetters::new(self.backend.clone(), &self.name)
    }

    /// Counters since the runner started.
    pub fn counters(&self) -> CatchUp {
        self.counters
    }

    /// Runs a query on the read model; `{table}` names resolve to the tables this runner
    /// fills.
    pub async fn query(&mut self, sql_text: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>> {
        let (sql_text, params) = (sql_text.to_string(), super::super::sql::OwnedParam::all(params));
        self.on_core(move |core| {
            let refs: Vec<&dyn ToParam> = params.iter().map(|p| p as &dyn ToParam).collect();
            core.query(&sql_text, &refs)
        })
        .await
    }

    /// Reads one page of the feed from the checkpoint and processes it. Returns the number of
    /// events read (0: nothing new).
    pub async fn step(&mut self) -> Result<usize> {
        self.on_core(Core::step).await
    }

    /// Processes everything up to the store's head as of now, then returns.
    pub async fn catch_up(&mut self) -> Result<CatchUp> {
        self.catch_up_with(|_| {}).await
    }

    /// Like [`ProjectionRunner::catch_up`], reporting progress after each page (the callback
    /// runs on the blocking pool).
    pub async fn catch_up_with(&mut self, progress: impl FnMut(&Progress) + Send + 'static) -> Result<CatchUp> {
        self.on_core(move |core| core.catch_up_with(progress)).await
    }

    /// Runs live: processes events as they are appended until `stop` is set (checked at least
    /// every `idle_wait`).
    pub async fn run(&mut self, stop: &AtomicBool) -> Result<()> {
        let poll = self.idle_wait.min(Duration::from_millis(50));
        self.run_until(async {
            while !stop.load(Ordering::Relaxed) {
                tokio::time::sleep(poll).await;
            }
        })
        .await
    }

    /// Runs live until `shutdown` completes (a signal, a channel closing...). A page being
    /// applied when it does is finished first, so the runner stops between transactions.
    pub async fn run_until(&mut self, shutdown: impl Future<Output = ()>) -> Result<()> {
        let mut shutdown = std::pin::pin!(shutdown);
        loop {
            if futures_util::poll!(shutdown.as_mut()).is_ready() {
                return Ok(());
            }
            if self.step().await? == 0 {
                let position = self.position;
                tokio::select! {
                    () = &mut shutdown => return Ok(()),
                    woke = self.backend.wait_for_sequence(Sequence(position), self.idle_wait) => { woke?; }
                }
            }
        }
    }
}
