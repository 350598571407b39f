//! The async API on tokio and the blocking facade's guard rails: a repository and a projection
//! runner awaited on a current-thread runtime (the flavour where a blocked executor thread
//! would deadlock, since the runner's core waits on that runtime from the blocking pool), the
//! PostgreSQL sink's pipelined pages under it, and misuse (the facade inside a runtime, the
//! async API outside one) answered by `Error::Misuse` instead of a tokio panic.

mod support_projection;

use std::future::Future;
use std::sync::Arc;
use std::task::{Context, Poll, Wake, Waker};

use evident::projection::{HandlerError, Projection, ProjectionRunner, Sink, Subscription, Tx};
use evident::{Aggregate, Backend, DomainEvent, EmbeddedBackend, Error, RecordedEvent, Repository};
use serde::{Deserialize, Serialize};
use support_projection::{Db, PgSchema};

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum Ev {
    Added { n: u64 },
}
impl DomainEvent for Ev {}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
struct Counter {
    total: u64,
}

impl Aggregate for Counter {
    type Command = u64;
    type Event = Ev;
    type Error = String;
    const TOPIC: &'static str = "counters";

    fn handle(&self, n: &u64) -> Result<Vec<Ev>, String> {
        if *n == 0 {
            return Err("nothing to add".into());
        }
        Ok(vec![Ev::Added { n: *n }])
    }

    fn apply(&mut self, e: &Ev) {
        let Ev::Added { n } = e;
        self.total += n;
    }
}

/// Totals per counter.
struct Totals;

impl Projection for Totals {
    fn name(&self) -> &str {
        "totals"
    }
    fn subscription(&self) -> Subscription {
        Subscription::topic(Counter::TOPIC)
    }
    fn tables(&self) -> Vec<String> {
        vec!["totals".into()]
    }
    fn setup(&mut self, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        tx.batch(
            "CREATE TABLE IF NOT EXISTS {totals} (id TEXT PRIMARY KEY, total BIGINT NOT NULL, n BIGINT NOT NULL)",
        )?;
        Ok(())
    }
    fn handle(&mut self, e: &RecordedEvent, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        let Ev::Added { n } = evident::event::decode::<Ev>(e, &evident::Upcasters::default())?;
        tx.execute(
            "INSERT INTO {totals} (id, total, n) VALUES ($1, $2, 1)
             ON CONFLICT (id) DO UPDATE SET total = {totals}.total + excluded.total, n = {totals}.n + 1",
            &[&e.key, &n],
        )?;
        Ok(())
    }
}

/// A second connection to `db`, from async code.
async fn open(db: &Db) -> Sink {
    match db {
        Db::Sqlite(path) => Sink::sqlite(path).expect("open the SQLite sink"),
        Db::Postgres(url) => Sink::postgres(url).await.expect("connect the PostgreSQL sink"),
    }
}

fn current_thread() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread().enable_all().build().expect("runtime")
}

/// Commands through the async repository, then a projection caught up and run live, all on
/// one current-thread runtime; the read model agrees with the aggregates.
fn repository_and_runner_on_one_thread(db: Db) {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::open(dir.path().join("log")).expect("open"));
    let sink = db.sink();
    current_thread().block_on(async move {
        let repo = Repository::<Counter>::new(backend.clone());
        let mut want = std::collections::BTreeMap::new();
        for i in 0..300u64 {
            let id = format!("c{}", i % 7);
            let done = repo.execute(&id, &(i + 1)).await.expect("execute");
            want.insert(id, done.state.total);
        }
        assert!(matches!(repo.execute("c0", &0).await, Err(evident::CommandError::Domain(_))));
        assert_eq!(repo.load("c3").await.expect("load").state.total, want["c3"]);

        let options = evident::projection::RunnerOptions { batch_size: 64, ..Default::default() };
        let mut runner = ProjectionRunner::with_options(backend.clone(), sink, Totals, options).await.expect("runner");
        let done = runner.catch_up().await.expect("catch up");
        assert_eq!(done.applied, 300);
        assert_eq!(runner.position(), backend.head_sequence().await.expect("head"));

        // Live: a command lands while the runner waits; it stops when told to.
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        let live = async {
            runner
                .run_until(async {
                    let _ = stopped.await;
                })
                .await
        };
        let drive = async {
            let done = repo.execute("c0", &1000).await.expect("execute");
            want.insert("c0".into(), done.state.total);
            let head = backend.head_sequence().await.expect("head");
            // The runner's position is not visible from here while it runs: read the read model.
            let mut reader = open(&db).await;
            loop {
                let rows = reader.query("SELECT total FROM totals WHERE id = 'c0'", &[]).await.expect("read");
                if rows.first().and_then(|r| r[0].as_i64()) == Some(want["c0"] as i64) {
                    break;
                }
                backend.wait_for_sequence(head, std::time::Duration::from_millis(20)).await.expect("wait");
            }
            let _ = stop.send(());
        };
        let (ran, ()) = tokio::join!(live, drive);
        ran.expect("the live runner stops cleanly");

        let rows = runner.query("SELECT id, total FROM {totals} ORDER BY id", &[]).await.expect("query");
        let got: std::collections::BTreeMap<String, u64> = rows
            .iter()
            .map(|r| (r[0].as_str().expect("id").to_string(), r[1].as_i64().expect("total") as u64))
            .collect();
        assert_eq!(got, want);
    });
}

#[test]
fn async_repository_and_runner_on_a_current_thread_runtime_sqlite() {
    let dir = tempfile::tempdir().expect("tempdir");
    repository_and_runner_on_one_thread(Db::sqlite_in(dir.path()));
}

#[test]
fn async_repository_and_runner_on_a_current_thread_runtime_postgres() {
    let Some(schema) = PgSchema::create("async_runner") else { return };
    repository_and_runner_on_one_thread(Db::Postgres(schema.url.clone()));
}

#[test]
fn the_blocking_facade_inside_a_runtime_is_a_named_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::open(dir.path()).expect("open"));
    let repo = evident::blocking::Repository::<Counter>::new(backend.clone());
    // Outside a runtime it works.
    assert_eq!(repo.execute("a", &2).expect("execute").state.total, 2);
    // Inside one it refuses instead of panicking.
    current_thread().block_on(async {
        match repo.load("a") {
            Err(Error::Misuse(why)) => assert!(why.contains("async API"), "{why}"),
            other => panic!("expected Error::Misuse, got {other:?}"),
        }
        assert!(matches!(evident::blocking::wait(backend.head_sequence()), Err(Error::Misuse(_))));
    });
}

/// Polls `f` to completion on this thread, outside any tokio runtime.
fn poll_outside_tokio<F: Future>(f: F) -> F::Output {
    struct Unpark(std::thread::Thread);
    impl Wake for Unpark {
        fn wake(self: Arc<Self>) {
            self.0.unpark();
        }
    }
    let waker = Waker::from(Arc::new(Unpark(std::thread::current())));
    let mut cx = Context::from_waker(&waker);
    let mut f = std::pin::pin!(f);
    loop {
        if let Poll::Ready(v) = f.as_mut().poll(&mut cx) {
            return v;
        }
        std::thread::park();
    }
}

#[test]
fn the_async_api_outside_tokio_is_a_named_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::open(dir.path()).expect("open"));
    let repo = Repository::<Counter>::new(backend.clone());
    assert!(matches!(poll_outside_tokio(repo.load("a")), Err(Error::Misuse(_))));
    assert!(matches!(poll_outside_tokio(backend.read_all(evident::Sequence(0), 10)), Err(Error::Misuse(_))));
    let sink = Sink::sqlite_in_memory().expect("sink");
    assert!(matches!(poll_outside_tokio(ProjectionRunner::new(backend, sink, Totals)), Err(Error::Misuse(_))));
}
