//! Goal: the projection runner keeps its promises on SQLite and on PostgreSQL, with the same
//! projection code: a catch-up equals a fold of the events computed in Rust; a reopened runner
//! resumes from its checkpoint without applying anything twice; a live runner follows appends
//! from another thread; subscriptions filter by topic (and `All` leaves out snapshot,
//! dead-letter and internal topics); a rebuild fills fresh tables, reports its progress and
//! swaps them in with the right checkpoint; a handler that fails (bad SQL, a poison event) is
//! retried, then parked in the dead-letter topic with the later events of its stream held while
//! other streams proceed; a retry after the fix applies the parked then the held events exactly
//! once, in order; a skip drops the poison event and applies the rest; a retry interrupted by a
//! crash resumes where it stopped; re-running requests changes nothing.
//!
//! Method: a bank projection (balances per stream by upsert, a counter, and an `applied` table
//! recording each sequence with how many times it was applied and in which order) over an
//! embedded log in a temporary directory. Each scenario runs twice, `<scenario>::sqlite` and
//! `<scenario>::postgres` (a schema of its own in the test database; skipped with a message
//! when `EVIDENT_TEST_POSTGRES_URL` is unset, failed when `EVIDENT_REQUIRE_POSTGRES=1`). The
//! expected read model is always computed from the events read back from the store. A crash in
//! a handler is a panic caught by the test, after which the runner and its connection are
//! dropped (an open transaction is rolled back, as when a process dies).

#[cfg(feature = "kafka")]
#[path = "support/kafka.rs"]
mod kafka_store;
mod support_projection;

use std::collections::{BTreeMap, BTreeSet};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use evident::blocking::ProjectionRunner;
use evident::projection::runner::Progress;
use evident::projection::{EventFailed, HandlerError, Projection, RunnerOptions, Subscription, ToParam, Tx};
use evident::{Backend, EmbeddedBackend, EventData, ExpectedVersion, Offset, RecordedEvent, Sequence, TopicSpec};
use evident_core::dead_letter::{self as dlq, Kind};
use support_projection::{checkpoint, checkpoints, int, parked_rows, set_checkpoint, text, Db, PgSchema};
use tempfile::TempDir;

const ACCOUNTS: &str = "accounts";

/// Knobs a test turns while a runner owns the projection.
#[derive(Debug, Default)]
struct Knobs {
    /// The handler can process `Poison` and `BadSql` events (the fix was deployed).
    fixed: AtomicBool,
    /// Calls of the handler on a `Poison` or `BadSql` event while not fixed.
    failing_calls: AtomicU32,
    /// The handler panics on the event with this sequence + 1 (0: never).
    crash_at: AtomicU64,
    /// Calls of `handle` (any event).
    handle_calls: AtomicU32,
    /// Calls of `BatchBank::handle_batch`.
    batch_calls: AtomicU32,
}

/// The projection under test: balances per stream, a counter, and a record of each sequence
/// applied (how often, in which order).
struct Bank {
    name: String,
    subscription: Subscription,
    tables: Vec<String>,
    knobs: Arc<Knobs>,
    create: Vec<String>,
    upsert: String,
    record: String,
    count: String,
    bad_sql: String,
    /// A statement that fails when it runs, not when it is prepared (a unique violation): on
    /// PostgreSQL a pipelined statement's failure arrives after later statements were sent.
    conflict: String,
}

impl Bank {
    /// Projection `name` with tables `<prefix>balances`, `<prefix>applied`, `<prefix>counter`.
    fn new(name: &str, prefix: &str, subscription: Subscription, knobs: Arc<Knobs>) -> Self {
        let t = |s: &str| {
            s.replace("{balances}", &format!("{{{prefix}balances}}"))
                .replace("{applied}", &format!("{{{prefix}applied}}"))
                .replace("{counter}", &format!("{{{prefix}counter}}"))
        };
        Self {
            name: name.to_string(),
            subscription,
            tables: vec![format!("{prefix}balances"), format!("{prefix}applied"), format!("{prefix}counter")],
            knobs,
            create: vec![
                t("CREATE TABLE IF NOT EXISTS {balances} (id TEXT PRIMARY KEY, amount BIGINT NOT NULL)"),
                t("CREATE TABLE IF NOT EXISTS {applied} (sequence BIGINT PRIMARY KEY, stream TEXT NOT NULL, \
                   n BIGINT NOT NULL, ord BIGINT NOT NULL)"),
                t("CREATE TABLE IF NOT EXISTS {counter} (id BIGINT PRIMARY KEY, n BIGINT NOT NULL)"),
                t("INSERT INTO {counter} (id, n) VALUES (1, 0) ON CONFLICT (id) DO NOTHING"),
                // Named after its table, so a rebuild's twin gets its own (index names are global).
                t("CREATE INDEX IF NOT EXISTS {balances}_by_amount ON {balances} (amount)"),
            ],
            upsert: t("INSERT INTO {balances} (id, amount) VALUES ($1, $2) \
                       ON CONFLICT (id) DO UPDATE SET amount = {balances}.amount + excluded.amount"),
            record: t("INSERT INTO {applied} (sequence, stream, n, ord) \
                       VALUES ($1, $2, 1, (SELECT COALESCE(MAX(ord), 0) + 1 FROM {applied})) \
                       ON CONFLICT (sequence) DO UPDATE SET n = {applied}.n + 1"),
            count: t("UPDATE {counter} SET n = n + 1 WHERE id = 1"),
            bad_sql: t("INSERT INTO {balances} (no_such_column) VALUES ($1)"),
            conflict: t("INSERT INTO {counter} (id, n) VALUES (1, 0)"),
        }
    }

    /// The usual bank: projection `bank` on `accounts`, unprefixed tables.
    fn accounts(knobs: Arc<Knobs>) -> Self {
        Self::new("bank", "", Subscription::topic(ACCOUNTS), knobs)
    }
}

impl Projection for Bank {
    fn name(&self) -> &str {
        &self.name
    }

    fn subscription(&self) -> Subscription {
        self.subscription.clone()
    }

    fn tables(&self) -> Vec<String> {
        self.tables.clone()
    }

    fn setup(&mut self, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        for s in &self.create {
            tx.execute(s, &[])?;
        }
        Ok(())
    }

    fn handle(&mut self, e: &RecordedEvent, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        self.knobs.handle_calls.fetch_add(1, Ordering::SeqCst);
        if self.knobs.crash_at.load(Ordering::SeqCst) == e.sequence.0 + 1 {
            panic!("simulated crash while handling sequence {}", e.sequence);
        }
        if !self.knobs.fixed.load(Ordering::SeqCst) {
            match e.event_type.as_deref() {
                Some("Poison") => {
                    self.knobs.failing_calls.fetch_add(1, Ordering::SeqCst);
                    return Err(format!("poison event at sequence {} cannot be processed yet", e.sequence).into());
                }
                Some("BadSql") => {
                    self.knobs.failing_calls.fetch_add(1, Ordering::SeqCst);
                    tx.execute(&self.bad_sql, &[&1i64])?;
                }
                Some("Conflict") => {
                    self.knobs.failing_calls.fetch_add(1, Ordering::SeqCst);
                    tx.execute(&self.conflict, &[])?;
                }
                _ => {}
            }
        }
        let amount = amount_of(e);
        let stream = e.stream();
        tx.execute(&self.upsert, &[&stream, &amount])?;
        tx.execute(&self.record, &[&e.sequence, &stream])?;
        tx.execute(&self.count, &[])?;
        Ok(())
    }
}

/// The bank written a page at a time, as docs/library.md recommends: the page folded in memory
/// (balance per stream, the sequences applied), then one multi-row statement per table. On a
/// `Poison` event (while not fixed) the whole batch fails, naming the event (`EventFailed`) or
/// not (a plain error, which makes the runner search the page event by event with `handle`).
struct BatchBank {
    bank: Bank,
    name_failures: bool,
}

impl Projection for BatchBank {
    fn name(&self) -> &str {
        self.bank.name()
    }

    fn subscription(&self) -> Subscription {
        self.bank.subscription()
    }

    fn tables(&self) -> Vec<String> {
        self.bank.tables()
    }

    fn setup(&mut self, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        self.bank.setup(tx)
    }

    fn handle(&mut self, e: &RecordedEvent, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        self.bank.handle(e, tx)
    }

    fn handle_batch(&mut self, events: &[&RecordedEvent], tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        let knobs = &self.bank.knobs;
        knobs.batch_calls.fetch_add(1, Ordering::SeqCst);
        let mut balances: BTreeMap<String, i64> = BTreeMap::new();
        let mut applied: Vec<(Sequence, String)> = Vec::with_capacity(events.len());
        for (index, e) in events.iter().enumerate() {
            if knobs.crash_at.load(Ordering::SeqCst) == e.sequence.0 + 1 {
                panic!("simulated crash while handling sequence {}", e.sequence);
            }
            if !knobs.fixed.load(Ordering::SeqCst) && e.event_type.as_deref() == Some("Conflict") {
                // Fails when it runs (on PostgreSQL: at the flush, after the batch returned).
                knobs.failing_calls.fetch_add(1, Ordering::SeqCst);
                tx.execute(&self.bank.conflict, &[])?;
            }
            if !knobs.fixed.load(Ordering::SeqCst) && e.event_type.as_deref() == Some("Poison") {
                knobs.failing_calls.fetch_add(1, Ordering::SeqCst);
                let error: HandlerError =
                    format!("poison event at sequence {} cannot be processed yet", e.sequence).into();
                return Err(if self.name_failures { Box::new(EventFailed { index, error }) } else { error });
            }
            *balances.entry(e.stream()).or_default() += amount_of(e);
            applied.push((e.sequence, e.stream()));
        }
        let ord = tx.query("SELECT COALESCE(MAX(ord), 0) FROM {applied}", &[])?;
        let ord = int(&ord[0][0]);
        let ords: Vec<i64> = (1..=applied.len() as i64).map(|i| ord + i).collect();
        let mut params: Vec<&dyn ToParam> = Vec::new();
        for (stream, amount) in &balances {
            params.extend([stream as &dyn ToParam, amount]);
        }
        tx.execute_values(
            "INSERT INTO {balances} (id, amount) VALUES",
            2,
            &params,
            "ON CONFLICT (id) DO UPDATE SET amount = {balances}.amount + excluded.amount",
        )?;
        let mut params: Vec<&dyn ToParam> = Vec::new();
        for ((sequence, stream), ord) in applied.iter().zip(&ords) {
            params.extend([sequence as &dyn ToParam, stream, &1i64, ord]);
        }
        tx.execute_values(
            "INSERT INTO {applied} (sequence, stream, n, ord) VALUES",
            4,
            &params,
            "ON CONFLICT (sequence) DO UPDATE SET n = {applied}.n + 1",
        )?;
        tx.execute("UPDATE {counter} SET n = n + $1 WHERE id = 1", &[&(events.len() as i64)])?;
        Ok(())
    }
}

fn amount_of(e: &RecordedEvent) -> i64 {
    let v: serde_json::Value = e.json().expect("events carry JSON");
    v["amount"].as_i64().expect("events carry an amount")
}

fn event(event_type: &str, amount: i64) -> EventData {
    EventData::json(
        uuid::Uuid::new_v4().to_string(),
        event_type,
        serde_json::json!({ "amount": amount }).to_string().into_bytes(),
    )
}

fn deposit(amount: i64) -> EventData {
    event("Deposited", amount)
}

fn options(batch_size: usize) -> RunnerOptions {
    RunnerOptions {
        batch_size,
        retry: evident::RetryPolicy {
            max_attempts: 3,
            initial_backoff: Duration::from_millis(1),
            max_backoff: Duration::from_millis(2),
        },
        idle_wait: Duration::from_millis(20),
    }
}

/// A scenario's world: a store (an embedded log, or a namespace of its own on a Kafka
/// cluster) and a read-model database.
struct Env {
    db: Db,
    backend: Arc<dyn Backend>,
    /// On a Kafka cluster, where every append is a transaction: scenarios append fewer events.
    on_kafka: bool,
    // Dropped after the connections of the scenario (declared last).
    _pg: Option<PgSchema>,
    _dir: TempDir,
}

#[derive(Clone, Copy)]
enum Kind2 {
    Sqlite,
    Postgres,
    /// SQLite read models over the library's Kafka backend, on the cluster named by
    /// `EVIDENT_TEST_KAFKA_BOOTSTRAP` (scripts/test.sh starts three brokers for it).
    #[cfg(feature = "kafka")]
    Kafka,
}

impl Env {
    fn new(kind: Kind2, test: &str) -> Option<Self> {
        let dir = tempfile::tempdir().expect("temp dir");
        let (db, pg) = match kind {
            Kind2::Postgres => {
                let schema = PgSchema::create(test)?;
                (Db::Postgres(schema.url.clone()), Some(schema))
            }
            _ => (Db::sqlite_in(dir.path()), None),
        };
        let backend: Arc<dyn Backend> = match kind {
            #[cfg(feature = "kafka")]
            Kind2::Kafka => kafka_store::kafka_backend(&format!("projections-{test}"), dir.path())?,
            _ => Arc::new(EmbeddedBackend::open(dir.path().join("log")).expect("open the log")),
        };
        let on_kafka = !matches!(kind, Kind2::Sqlite | Kind2::Postgres);
        evident::blocking::wait(backend.ensure_topic(ACCOUNTS, TopicSpec::default())).expect("create accounts");
        Some(Self { db, backend, on_kafka, _pg: pg, _dir: dir })
    }

    fn dyn_backend(&self) -> Arc<dyn Backend> {
        self.backend.clone()
    }

    fn runner<P: Projection + 'static>(&self, projection: P, batch_size: usize) -> ProjectionRunner<P> {
        ProjectionRunner::with_options(self.dyn_backend(), self.db.sink(), projection, options(batch_size))
            .expect("open the runner")
    }

    /// Appends one event to `topic`/`key`; returns its sequence.
    fn append(&self, topic: &str, key: &str, e: EventData) -> u64 {
        evident::blocking::wait(self.backend.append(topic, key, ExpectedVersion::Any, &[e]))
            .expect("append")
            .last_sequence
            .0
    }

    fn head(&self) -> Sequence {
        evident::blocking::wait(self.backend.head_sequence()).expect("head")
    }

    /// Every event of the store, in commit order.
    fn all_events(&self) -> Vec<RecordedEvent> {
        let mut out = Vec::new();
        loop {
            let from = out.last().map_or(Sequence(0), |e: &RecordedEvent| e.sequence.next());
            let page = evident::blocking::wait(self.backend.read_all(from, 500)).expect("read_all");
            if page.is_empty() {
                return out;
            }
            out.extend(page);
        }
    }

    /// The read model `subscription` should produce, minus the events in `except`.
    fn fold(&self, subscription: &Subscription, except: &BTreeSet<u64>) -> Model {
        let mut m = Model::default();
        for e in self.all_events() {
            if !subscription.wants(&e.topic) || except.contains(&e.sequence.0) {
                continue;
            }
            *m.balances.entry(e.stream()).or_default() += amount_of(&e);
            m.applied.insert(e.sequence.0, (e.stream(), 1));
            m.counter += 1;
        }
        m
    }

    /// The read model in tables `<prefix>*`, read over a connection of its own.
    fn model(&self, prefix: &str) -> Model {
        let mut sink = self.db.sink();
        let mut m = Model::default();
        for r in evident::blocking::query(&mut sink, &format!("SELECT id, amount FROM {prefix}balances"), &[])
            .expect("read balances")
        {
            m.balances.insert(text(&r[0]), int(&r[1]));
        }
        for r in evident::blocking::query(&mut sink, &format!("SELECT sequence, stream, n FROM {prefix}applied"), &[])
            .expect("read applied")
        {
            m.applied.insert(int(&r[0]) as u64, (text(&r[1]), int(&r[2])));
        }
        let rows = evident::blocking::query(&mut sink, &format!("SELECT n FROM {prefix}counter WHERE id = 1"), &[])
            .expect("read counter");
        m.counter = int(&rows[0][0]);
        m
    }

    /// The sequences of `stream` in the order they were applied.
    fn apply_order(&self, prefix: &str, stream: &str) -> Vec<u64> {
        let mut sink = self.db.sink();
        let rows = evident::blocking::query(
            &mut sink,
            &format!("SELECT sequence FROM {prefix}applied WHERE stream = $1 ORDER BY ord"),
            &[&stream],
        )
        .expect("read applied");
        rows.iter().map(|r| int(&r[0]) as u64).collect()
    }

    fn checkpoint(&self, key: &str) -> Option<Sequence> {
        checkpoint(&mut self.db.sink(), key).map(Sequence)
    }

    /// Catches `runner` up until it is at the head, its own dead-letter records included (a
    /// catch-up stops at the head as of its start, before the records it writes itself).
    fn settle<P: Projection + 'static>(&self, runner: &mut ProjectionRunner<P>) {
        for _ in 0..10 {
            if runner.position() >= self.head() {
                return;
            }
            runner.catch_up().expect("catch up");
        }
        panic!("the runner does not reach the head {}: at {}", self.head(), runner.position());
    }
}

/// A read model: balance per stream, sequence → (stream, times applied), counter.
#[derive(Debug, Default, PartialEq, Eq)]
struct Model {
    balances: BTreeMap<String, i64>,
    applied: BTreeMap<u64, (String, i64)>,
    counter: i64,
}

/// Declares `<scenario>::sqlite` and `<scenario>::postgres`, each running `fn <scenario>(Env)`.
macro_rules! on_both {
    ($($scenario:ident),* $(,)?) => {$(
        mod $scenario {
            #[test]
            fn sqlite() {
                if let Some(env) = super::Env::new(super::Kind2::Sqlite, stringify!($scenario)) {
                    super::$scenario(env);
                }
            }

            #[test]
            fn postgres() {
                if let Some(env) = super::Env::new(super::Kind2::Postgres, stringify!($scenario)) {
                    super::$scenario(env);
                }
            }
        }
    )*};
}

/// Declares `on_kafka::<scenario>::sqlite`, each running `fn <scenario>(Env)` with SQLite read
/// models over the library's Kafka backend.
#[cfg(feature = "kafka")]
macro_rules! on_kafka {
    ($($scenario:ident),* $(,)?) => {
        mod on_kafka {$(
            mod $scenario {
                #[test]
                fn sqlite() {
                    if let Some(env) = super::super::Env::new(super::super::Kind2::Kafka, stringify!($scenario)) {
                        super::super::$scenario(env);
                    }
                }
            }
        )*}
    };
}

// The scenarios whose store is only reached through the `Backend` trait (the rest create an
// internal `__` topic, which a Kafka backend does not mirror, or repeat these).
#[cfg(feature = "kafka")]
on_kafka!(
    catch_up_equals_fold,
    a_second_runner_of_the_projection_is_fenced,
    resume_after_reopen_applies_nothing_twice,
    live_runner_follows_appends,
    rebuild_fills_fresh_tables_and_swaps,
    poison_event_is_parked_and_its_stream_held,
    skip_drops_the_poison_event,
    failed_park_commit_leaves_no_phantom_entry,
);

on_both!(
    catch_up_equals_fold,
    a_second_runner_of_the_projection_is_fenced,
    resume_after_reopen_applies_nothing_twice,
    live_runner_follows_appends,
    subscriptions_filter_topics,
    rebuild_fills_fresh_tables_and_swaps,
    bad_sql_is_retried_then_parked,
    poison_event_is_parked_and_its_stream_held,
    skip_drops_the_poison_event,
    rebuild_after_the_fix_leaves_no_dead_letters,
    rebuild_that_parks_again_lists_the_entry,
    failed_park_commit_leaves_no_phantom_entry,
    batch_catch_up_equals_fold,
    batch_failure_is_searched_event_by_event,
    batch_failure_naming_its_event_is_not_searched,
    batch_statement_failure_is_searched_statement_by_statement,
);

/// Appends `n` deposits over `keys` accounts (and a few to `other`), pseudo-randomly.
fn populate(env: &Env, n: usize, keys: usize, seed: u64) {
    use rand::{Rng, SeedableRng};
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    // Each append is a Kafka transaction there (milliseconds): a fifth of the events.
    let n = if env.on_kafka { n.div_ceil(5) } else { n };
    evident::blocking::wait(env.backend.ensure_topic("other", TopicSpec::default())).expect("create other");
    let mut done = 0;
    while done < n {
        let key = format!("acct-{}", rng.gen_range(0..keys));
        let len = rng.gen_range(1..=5).min(n - done);
        let events: Vec<EventData> = (0..len).map(|_| deposit(rng.gen_range(-50..=200))).collect();
        let topic = if rng.gen_ratio(1, 10) { "other" } else { ACCOUNTS };
        evident::blocking::wait(env.backend.append(topic, &key, ExpectedVersion::Any, &events)).expect("append");
        done += len;
    }
}

fn a_second_runner_of_the_projection_is_fenced(env: Env) {
    populate(&env, 500, 10, 11);
    // Two runners of one projection, both opened at checkpoint 0 (two processes, say).
    let mut first = env.runner(Bank::accounts(Arc::default()), 100);
    let mut second = env.runner(Bank::accounts(Arc::default()), 100);
    first.catch_up().expect("the first catches up");
    match second.step() {
        Err(evident::Error::Fenced(msg)) => assert!(msg.contains("another runner"), "{msg}"),
        other => panic!("the second runner must be fenced, got {other:?}"),
    }
    assert_eq!(second.position(), Sequence(0), "the fenced runner committed nothing");
    let expected = env.fold(&Subscription::topic(ACCOUNTS), &BTreeSet::new());
    assert_eq!(env.model(""), expected, "nothing was applied twice");
    drop(second);
    // Reopened, it resumes from the checkpoint the first one committed.
    let mut reopened = env.runner(Bank::accounts(Arc::default()), 100);
    assert_eq!(reopened.position(), env.head());
    assert_eq!(reopened.catch_up().expect("catch up").applied, 0);
    assert_eq!(env.model(""), expected);
}

fn catch_up_equals_fold(env: Env) {
    populate(&env, 2_000, 25, 1);
    let mut runner = env.runner(Bank::accounts(Arc::default()), 64);
    let result = runner.catch_up().expect("catch up");
    let head = env.head();
    let expected = env.fold(&Subscription::topic(ACCOUNTS), &BTreeSet::new());
    assert_eq!(result.position, head, "catch-up stops at the head");
    assert_eq!(result.scanned, head.0, "every event of the feed is read once");
    assert_eq!(result.applied, expected.applied.len() as u64, "every subscribed event is handled once");
    assert_eq!(result.parked, 0);
    assert_eq!(runner.position(), head);
    assert_eq!(env.model(""), expected, "the read model equals the fold");
    assert_eq!(env.checkpoint("bank"), Some(head), "the checkpoint is committed at the head");
    // The runner's own queries see the same tables.
    let rows = runner.query("SELECT COUNT(*) FROM {applied}", &[]).expect("query");
    assert_eq!(int(&rows[0][0]), expected.applied.len() as i64);
    // Nothing new: a second catch-up does nothing.
    let again = runner.catch_up().expect("catch up again");
    assert_eq!((again.scanned, again.applied), (0, 0));
    assert_eq!(env.model(""), expected);
}

fn resume_after_reopen_applies_nothing_twice(env: Env) {
    populate(&env, 700, 10, 2);
    let first_head = env.head();
    {
        let mut runner = env.runner(Bank::accounts(Arc::default()), 50);
        assert_eq!(runner.catch_up().expect("catch up").position, first_head);
    }
    populate(&env, 500, 12, 3);
    let mut runner = env.runner(Bank::accounts(Arc::default()), 37);
    assert_eq!(runner.position(), first_head, "a reopened runner resumes from its checkpoint");
    let result = runner.catch_up().expect("catch up");
    assert_eq!(result.scanned, env.head().0 - first_head.0, "only the new events are read");
    drop(runner);
    let expected = env.fold(&Subscription::topic(ACCOUNTS), &BTreeSet::new());
    let model = env.model("");
    let twice: Vec<_> = model.applied.iter().filter(|(_, (_, n))| *n != 1).collect();
    assert!(twice.is_empty(), "events applied more than once: {twice:?}");
    assert_eq!(model, expected);
    // A third runner, with nothing new, applies nothing.
    let mut runner = env.runner(Bank::accounts(Arc::default()), 1000);
    assert_eq!(runner.catch_up().expect("catch up").applied, 0);
    assert_eq!(env.model(""), expected);
}

fn live_runner_follows_appends(env: Env) {
    populate(&env, 100, 5, 4);
    let mut runner = env.runner(Bank::accounts(Arc::default()), 16);
    let stop = Arc::new(AtomicBool::new(false));
    let live = {
        let stop = stop.clone();
        std::thread::spawn(move || {
            let result = runner.run(&stop);
            (runner, result)
        })
    };
    let writer = {
        let backend = env.backend.clone();
        std::thread::spawn(move || {
            for i in 0..300i64 {
                let key = format!("acct-{}", i % 7);
                let events = vec![deposit(i), deposit(1)];
                evident::blocking::wait(backend.append(ACCOUNTS, &key, ExpectedVersion::Any, &events)).expect("append");
                if i % 50 == 0 {
                    std::thread::yield_now();
                }
            }
        })
    };
    writer.join().expect("writer thread");
    let head = env.head();
    // Bounded wait, for failure detection only: the live runner must reach the head.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if env.checkpoint("bank").unwrap_or_default() >= head {
            break;
        }
        assert!(!live.is_finished(), "the live runner stopped early");
        assert!(Instant::now() < deadline, "the live runner did not reach the head {head} within 60 s");
        std::thread::sleep(Duration::from_millis(10));
    }
    stop.store(true, Ordering::SeqCst);
    let (runner, result) = live.join().expect("runner thread");
    result.expect("run ends without error");
    assert_eq!(runner.position(), head);
    assert_eq!(env.checkpoint("bank"), Some(head));
    assert_eq!(env.model(""), env.fold(&Subscription::topic(ACCOUNTS), &BTreeSet::new()));
}

fn subscriptions_filter_topics(env: Env) {
    let b = &env.backend;
    for topic in ["audit", "accounts.snapshots", "orders.dlq", "__internal"] {
        evident::blocking::wait(b.ensure_topic(topic, TopicSpec::default())).expect("create topic");
    }
    for i in 0..40i64 {
        let topic = ["accounts", "audit", "accounts.snapshots", "orders.dlq", "__internal"][(i % 5) as usize];
        env.append(topic, &format!("k{}", i % 3), deposit(i));
    }
    let all = Subscription::All;
    let audit = Subscription::topic("audit");
    let knobs = Arc::<Knobs>::default();
    let mut r_all = env.runner(Bank::new("bank-all", "all_", all.clone(), knobs.clone()), 7);
    let mut r_audit = env.runner(Bank::new("bank-audit", "aud_", audit.clone(), knobs), 7);
    r_all.catch_up().expect("catch up all");
    r_audit.catch_up().expect("catch up audit");
    // A further event in each projection's own dead-letter topic must not reach either.
    env.append("bank-all.dlq", "k", deposit(1000));
    env.append("bank-audit.dlq", "k", deposit(1000));
    r_all.catch_up().expect("catch up all");
    r_audit.catch_up().expect("catch up audit");

    let events = env.all_events();
    let topics_of = |m: &Model| -> BTreeSet<String> {
        m.applied.keys().map(|s| events.iter().find(|e| e.sequence.0 == *s).expect("known").topic.clone()).collect()
    };
    let got_all = env.model("all_");
    let got_audit = env.model("aud_");
    assert_eq!(topics_of(&got_all), BTreeSet::from(["accounts".to_string(), "audit".to_string()]));
    assert_eq!(topics_of(&got_audit), BTreeSet::from(["audit".to_string()]));
    assert_eq!(got_all, env.fold(&all, &BTreeSet::new()));
    assert_eq!(got_audit, env.fold(&audit, &BTreeSet::new()));
    assert_eq!(got_all.counter, 16, "8 accounts + 8 audit events");
    assert_eq!(got_audit.counter, 8);
    assert_eq!(env.checkpoint("bank-all"), Some(env.head()));
    assert_eq!(env.checkpoint("bank-audit"), Some(env.head()));
}

fn rebuild_fills_fresh_tables_and_swaps(env: Env) {
    populate(&env, 600, 8, 5);
    {
        let mut runner = env.runner(Bank::accounts(Arc::default()), 100);
        runner.catch_up().expect("catch up");
    }
    // Damage the live read model: a rebuild must recompute it from the events alone.
    evident::blocking::query(&mut env.db.sink(), "UPDATE balances SET amount = amount + 1000000 RETURNING id", &[])
        .expect("damage");
    populate(&env, 400, 8, 6);
    let head = env.head();
    let reported: Arc<Mutex<Vec<Progress>>> = Arc::default();
    let sent = reported.clone();
    let mut runner = ProjectionRunner::rebuild(
        env.dyn_backend(),
        env.db.sink(),
        Bank::accounts(Arc::default()),
        options(64),
        move |p| sent.lock().expect("lock").push(*p),
    )
    .expect("rebuild");
    let progress = reported.lock().expect("lock").clone();
    let expected = env.fold(&Subscription::topic(ACCOUNTS), &BTreeSet::new());
    assert!(progress.len() >= 2, "progress is reported per page: {progress:?}");
    let last = progress.last().expect("some progress");
    assert_eq!((last.position, last.target), (head, head), "progress reaches the target");
    assert_eq!(last.applied, expected.applied.len() as u64);
    assert!(progress.windows(2).all(|w| w[0].position < w[1].position && w[0].applied <= w[1].applied));
    assert!(progress.iter().all(|p| p.target == head && p.rate >= 0.0));
    assert_eq!(runner.position(), head);
    assert_eq!(env.model(""), expected, "the swapped-in tables equal the fold");
    assert_eq!(checkpoints(&mut env.db.sink()), vec![("bank".to_string(), head.0)], "only the live checkpoint remains");
    let leftovers: Vec<String> = env.db.table_names().into_iter().filter(|t| t.contains("rebuild")).collect();
    assert!(leftovers.is_empty(), "rebuild tables left behind: {leftovers:?}");
    assert_eq!(indexes(&env, "balances"), vec!["balances_by_amount".to_string()], "the index has its live name");
    // The returned runner works on the live tables.
    populate(&env, 150, 8, 7);
    runner.catch_up().expect("catch up after the rebuild");
    drop(runner);
    let expected = env.fold(&Subscription::topic(ACCOUNTS), &BTreeSet::new());
    assert_eq!(env.model(""), expected);
    assert_eq!(env.checkpoint("bank"), Some(env.head()));
    // And a reopened runner resumes from the swapped checkpoint.
    let mut runner = env.runner(Bank::accounts(Arc::default()), 64);
    assert_eq!(runner.position(), env.head());
    assert_eq!(runner.catch_up().expect("catch up").applied, 0);
    drop(runner);
    // A second rebuild over the swapped-in tables (whose constraints kept the twins' names).
    let runner = ProjectionRunner::rebuild(
        env.dyn_backend(),
        env.db.sink(),
        Bank::accounts(Arc::default()),
        options(500),
        |_| {},
    )
    .expect("second rebuild");
    assert_eq!(runner.position(), env.head());
    assert_eq!(env.model(""), expected);
    assert_eq!(checkpoints(&mut env.db.sink()), vec![("bank".to_string(), env.head().0)]);
    assert_eq!(indexes(&env, "balances"), vec!["balances_by_amount".to_string()], "after a second rebuild too");
}

/// The explicitly created indexes of `table` (not those backing constraints).
fn indexes(env: &Env, table: &str) -> Vec<String> {
    let mut sink = env.db.sink();
    let sql = match sink.dialect() {
        evident::projection::Dialect::Sqlite => {
            "SELECT name FROM sqlite_master WHERE type = 'index' AND tbl_name = $1 AND sql IS NOT NULL ORDER BY name"
        }
        evident::projection::Dialect::Postgres => {
            "SELECT i.indexname FROM pg_indexes i WHERE i.schemaname = current_schema() AND i.tablename = $1 \
             AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname) ORDER BY 1"
        }
    };
    evident::blocking::query(&mut sink, sql, &[&table]).expect("list indexes").iter().map(|r| text(&r[0])).collect()
}

fn bad_sql_is_retried_then_parked(env: Env) {
    let knobs = Arc::<Knobs>::default();
    let mut bad = 0;
    for i in 0..60i64 {
        let key = format!("acct-{}", i % 4);
        if i == 21 {
            bad = env.append(ACCOUNTS, &key, event("BadSql", 7));
        } else {
            env.append(ACCOUNTS, &key, deposit(i));
        }
    }
    let bad_stream = format!("{ACCOUNTS}/acct-1");
    let mut runner = env.runner(Bank::accounts(knobs.clone()), 10);
    let head = env.head();
    let result = runner.catch_up().expect("a failing handler is not a crash");
    assert!(env.head() > head, "parking wrote dead-letter records");
    assert_eq!(result.position, env.head(), "the catch-up reads past its own dead-letter records to the head");
    assert_eq!(knobs.failing_calls.load(Ordering::SeqCst), 3, "tried max_attempts times");
    let list = runner.dead_letters().list().expect("list");
    assert_eq!(list.keys().collect::<Vec<_>>(), vec![&bad_stream], "only the bad event's stream is parked");
    let entries = &list[&bad_stream];
    assert_eq!(entries[0].sequence.0, bad);
    assert_eq!(entries[0].kind, Kind::Parked);
    assert_eq!(entries[0].attempts, 3);
    let error = entries[0].error.as_deref().unwrap_or_default();
    assert!(error.contains("no_such_column"), "the database's error is kept: {error:?}");
    assert!(entries[1..].iter().all(|e| e.kind == Kind::Held), "later events of the stream are held");
    assert_eq!(result.parked, entries.len() as u64);
    let held: BTreeSet<u64> = entries.iter().map(|e| e.sequence.0).collect();
    assert_eq!(env.model(""), env.fold(&Subscription::topic(ACCOUNTS), &held), "other streams proceed");
    assert_eq!(
        parked_rows(&mut env.db.sink(), "bank").iter().map(|r| r.0).collect::<BTreeSet<_>>(),
        held,
        "evident_parked holds the same entries"
    );
}

/// Asserts `stream`'s applied sequences, in the order they were applied, are `expected`.
fn assert_order(env: &Env, stream: &str, expected: &[u64]) {
    assert_eq!(env.apply_order("", stream), expected, "{stream} is applied in stream order");
}

fn assert_once(m: &Model) {
    let twice: Vec<_> = m.applied.iter().filter(|(_, (_, n))| *n != 1).collect();
    assert!(twice.is_empty(), "events applied more than once: {twice:?}");
}

fn poison_event_is_parked_and_its_stream_held(env: Env) {
    let knobs = Arc::<Knobs>::default();
    let sa = format!("{ACCOUNTS}/a");
    let mut a = vec![env.append(ACCOUNTS, "a", deposit(1))];
    let b1 = env.append(ACCOUNTS, "b", deposit(10));
    a.push(env.append(ACCOUNTS, "a", deposit(2)));
    let poison = env.append(ACCOUNTS, "a", event("Poison", 100));
    a.push(poison);
    env.append(ACCOUNTS, "b", deposit(20));
    a.push(env.append(ACCOUNTS, "a", deposit(3)));
    env.append(ACCOUNTS, "c", deposit(5));
    a.push(env.append(ACCOUNTS, "a", deposit(4)));
    env.append(ACCOUNTS, "b", deposit(30));
    let sub = Subscription::topic(ACCOUNTS);

    let mut runner = env.runner(Bank::accounts(knobs.clone()), 3);
    let head = env.head();
    let result = runner.catch_up().expect("catch up");
    assert!(env.head() > head, "parking wrote dead-letter records");
    assert_eq!(result.position, env.head(), "the catch-up reads past its own dead-letter records to the head");
    assert_eq!(result.parked, 3, "the poison event and the two after it in its stream");
    assert_eq!(knobs.failing_calls.load(Ordering::SeqCst), 3, "tried max_attempts times, then parked");
    let waiting: BTreeSet<u64> = a[2..].iter().copied().collect();
    let model = env.model("");
    assert_eq!(model, env.fold(&sub, &waiting), "a's later events wait; b and c proceed");
    assert_eq!(model.balances[&sa], 3);
    assert_eq!(model.balances[&format!("{ACCOUNTS}/b")], 60);

    // The list: the parked event with its error and attempts, then the held ones.
    let dl = runner.dead_letters();
    let list = dl.list().expect("list");
    assert_eq!(list.len(), 1, "only stream a: {list:?}");
    let entries = &list[&sa];
    assert_eq!(entries.iter().map(|e| e.sequence.0).collect::<Vec<_>>(), a[2..].to_vec());
    assert_eq!(entries.iter().map(|e| e.kind).collect::<Vec<_>>(), vec![Kind::Parked, Kind::Held, Kind::Held]);
    assert_eq!(entries[0].attempts, 3);
    assert!(entries[0].error.as_deref().unwrap_or_default().contains("cannot be processed yet"));
    assert_eq!(entries[0].event_type.as_deref(), Some("Poison"));
    assert!(entries[1..].iter().all(|e| e.attempts == 0));

    // The dead-letter records carry the original event, its position, the error, the attempts.
    let original = env.all_events().into_iter().find(|e| e.sequence.0 == poison).expect("poison event");
    let records =
        evident::blocking::wait(env.backend.read_partition(dl.topic(), 0, Offset(0), 1000)).expect("read the dlq");
    let parked = records.iter().find(|r| r.header_str(dlq::KIND) == Some("parked")).expect("a parked record");
    assert_eq!(parked.key.as_deref(), Some(sa.as_str()), "keyed by the original stream");
    assert_eq!(parked.event_type.as_deref(), Some("Poison"));
    assert_eq!(parked.data, original.data, "the original payload");
    assert_eq!(parked.header_str(dlq::TOPIC), Some(ACCOUNTS));
    assert_eq!(parked.header_str(dlq::PARTITION), Some(original.partition.to_string().as_str()));
    assert_eq!(parked.header_str(dlq::OFFSET), Some(original.offset.to_string().as_str()));
    assert_eq!(parked.header_str(dlq::SEQUENCE), Some(poison.to_string().as_str()));
    assert_eq!(parked.header_str(dlq::EVENT_ID), original.id.as_deref());
    assert_eq!(parked.header_str(dlq::PROJECTION), Some("bank"));
    assert_eq!(parked.header_str(dlq::ATTEMPTS), Some("3"));
    assert!(parked.header_str(dlq::ERROR).unwrap_or_default().contains("cannot be processed yet"));
    let held: Vec<&RecordedEvent> = records.iter().filter(|r| r.header_str(dlq::KIND) == Some("held")).collect();
    assert_eq!(held.len(), 2);
    assert!(held.iter().all(|r| r.header_str(dlq::ATTEMPTS) == Some("0") && r.key.as_deref() == Some(&sa)));

    // A later event of a is held too; b still proceeds.
    a.push(env.append(ACCOUNTS, "a", deposit(5)));
    env.append(ACCOUNTS, "b", deposit(40));
    env.settle(&mut runner);
    let waiting: BTreeSet<u64> = a[2..].iter().copied().collect();
    assert_eq!(env.model(""), env.fold(&sub, &waiting));
    assert_eq!(dl.list().expect("list")[&sa].len(), 4);

    // A retry before the fix fails again: the entries stay, nothing of a is applied.
    let first_request = env.head();
    dl.retry(&sa).expect("retry");
    env.settle(&mut runner);
    assert_eq!(knobs.failing_calls.load(Ordering::SeqCst), 6, "the retry tried max_attempts times again");
    let list = dl.list().expect("list");
    assert_eq!(list[&sa].iter().map(|e| e.sequence.0).collect::<Vec<_>>(), a[2..].to_vec());
    assert_eq!(list[&sa][0].kind, Kind::Parked);
    assert_eq!(list[&sa][0].attempts, 6, "attempts add up across the failed retry");
    assert_eq!(env.model(""), env.fold(&sub, &waiting));
    assert_eq!(runner.position(), env.head());

    // The fix, then a retry that crashes after the parked event and one held event.
    knobs.fixed.store(true, Ordering::SeqCst);
    knobs.crash_at.store(a[4] + 1, Ordering::SeqCst);
    let second_request = env.head();
    dl.retry(&sa).expect("retry");
    let crashed = catch_unwind(AssertUnwindSafe(|| runner.catch_up()));
    assert!(crashed.is_err(), "the handler's simulated crash");
    drop(runner);
    let model = env.model("");
    assert_eq!(model.applied.keys().filter(|s| a.contains(s)).copied().collect::<Vec<_>>(), a[..4].to_vec());
    assert_eq!(
        parked_rows(&mut env.db.sink(), "bank").iter().map(|r| r.0).collect::<Vec<_>>(),
        a[4..].to_vec(),
        "each applied entry left evident_parked with its transaction"
    );
    let cp = env.checkpoint("bank").expect("checkpoint");
    assert!(cp <= second_request, "the request's checkpoint is written last ({cp} > {second_request})");

    // Restart: the request resumes where it stopped.
    knobs.crash_at.store(0, Ordering::SeqCst);
    let mut runner = env.runner(Bank::accounts(knobs.clone()), 3);
    env.settle(&mut runner);
    let model = env.model("");
    assert_once(&model);
    assert_eq!(model, env.fold(&sub, &BTreeSet::new()), "every event applied exactly once");
    assert_eq!(model.balances[&sa], 1 + 2 + 100 + 3 + 4 + 5);
    assert_order(&env, &sa, &a);
    assert!(dl.list().expect("list").is_empty(), "the list is empty once all is applied");
    assert!(parked_rows(&mut env.db.sink(), "bank").is_empty());
    assert_eq!(env.checkpoint("bank"), Some(env.head()));
    let _ = b1;

    // Idempotent requests: the same request records replayed (checkpoint moved back to the
    // first request) and a new retry of the now-empty stream change nothing.
    drop(runner);
    set_checkpoint(&mut env.db.sink(), "bank", first_request.0);
    let mut runner = env.runner(Bank::accounts(knobs.clone()), 3);
    env.settle(&mut runner);
    dl.retry(&sa).expect("retry");
    env.settle(&mut runner);
    let model = env.model("");
    assert_once(&model);
    assert_eq!(model, env.fold(&sub, &BTreeSet::new()));
    assert_eq!(knobs.failing_calls.load(Ordering::SeqCst), 6);
    assert!(dl.list().expect("list").is_empty());
    assert_eq!(env.checkpoint("bank"), Some(env.head()));
}

fn skip_drops_the_poison_event(env: Env) {
    let knobs = Arc::<Knobs>::default();
    let sa = format!("{ACCOUNTS}/a");
    let mut a = vec![env.append(ACCOUNTS, "a", deposit(1))];
    let poison = env.append(ACCOUNTS, "a", event("Poison", 100));
    env.append(ACCOUNTS, "b", deposit(10));
    a.push(env.append(ACCOUNTS, "a", deposit(2)));
    a.push(env.append(ACCOUNTS, "a", deposit(3)));
    env.append(ACCOUNTS, "b", deposit(20));
    let sub = Subscription::topic(ACCOUNTS);

    let mut runner = env.runner(Bank::accounts(knobs.clone()), 4);
    runner.catch_up().expect("catch up");
    let dl = runner.dead_letters();
    let list = dl.list().expect("list");
    assert_eq!(list[&sa].iter().map(|e| e.sequence.0).collect::<Vec<_>>(), vec![poison, a[1], a[2]]);
    let calls = knobs.failing_calls.load(Ordering::SeqCst);
    assert_eq!(calls, 3);

    // Skip, without fixing the handler: the poison event is never handled again.
    let request = env.head();
    assert_eq!(dl.skip(&sa).expect("skip").0, poison, "skip names the stream's first entry");
    env.settle(&mut runner);
    assert_eq!(knobs.failing_calls.load(Ordering::SeqCst), calls, "a skipped event is not handled");
    let model = env.model("");
    assert_once(&model);
    assert_eq!(model, env.fold(&sub, &BTreeSet::from([poison])), "everything but the poison event");
    assert_eq!(model.balances[&sa], 1 + 2 + 3);
    assert_order(&env, &sa, &a);
    assert!(dl.list().expect("list").is_empty());
    assert!(dl.skip(&sa).is_err(), "nothing left to skip");
    let records =
        evident::blocking::wait(env.backend.read_partition(dl.topic(), 0, Offset(0), 1000)).expect("read the dlq");
    let outcome = |seq: u64| {
        records
            .iter()
            .find(|r| {
                r.header_str(dlq::KIND) == Some("resolved") && r.header_str(dlq::SEQUENCE) == Some(&seq.to_string())
            })
            .and_then(|r| r.header_str(dlq::OUTCOME).map(str::to_string))
    };
    assert_eq!(outcome(poison).as_deref(), Some("skipped"));
    assert_eq!(outcome(a[1]).as_deref(), Some("applied"));
    assert_eq!(outcome(a[2]).as_deref(), Some("applied"));

    // Replaying the skip request changes nothing.
    drop(runner);
    set_checkpoint(&mut env.db.sink(), "bank", request.0);
    let mut runner = env.runner(Bank::accounts(knobs.clone()), 4);
    env.settle(&mut runner);
    let model = env.model("");
    assert_once(&model);
    assert_eq!(model, env.fold(&sub, &BTreeSet::from([poison])));
    assert_eq!(knobs.failing_calls.load(Ordering::SeqCst), calls);
    assert_eq!(env.checkpoint("bank"), Some(env.head()));
}

/// Appends a, poison, a, b, a: returns (a's sequences with the poison one, poison).
fn poisoned_stream(env: &Env) -> (Vec<u64>, u64) {
    let mut a = vec![env.append(ACCOUNTS, "a", deposit(1))];
    let poison = env.append(ACCOUNTS, "a", event("Poison", 100));
    a.push(poison);
    a.push(env.append(ACCOUNTS, "a", deposit(2)));
    env.append(ACCOUNTS, "b", deposit(10));
    a.push(env.append(ACCOUNTS, "a", deposit(3)));
    (a, poison)
}

fn rebuild_after_the_fix_leaves_no_dead_letters(env: Env) {
    let knobs = Arc::<Knobs>::default();
    let sa = format!("{ACCOUNTS}/a");
    let (_, poison) = poisoned_stream(&env);
    let mut runner = env.runner(Bank::accounts(knobs.clone()), 2);
    env.settle(&mut runner);
    let dl = runner.dead_letters();
    assert_eq!(dl.list().expect("list")[&sa][0].sequence.0, poison);
    drop(runner);
    // Fix the handler, and rebuild instead of retrying: every event now applies.
    knobs.fixed.store(true, Ordering::SeqCst);
    let mut runner =
        ProjectionRunner::rebuild(env.dyn_backend(), env.db.sink(), Bank::accounts(knobs.clone()), options(2), |_| {})
            .expect("rebuild");
    env.settle(&mut runner);
    let model = env.model("");
    assert_once(&model);
    assert_eq!(model, env.fold(&Subscription::topic(ACCOUNTS), &BTreeSet::new()));
    assert!(parked_rows(&mut env.db.sink(), "bank").is_empty());
    let list = dl.list().expect("list");
    assert!(list.is_empty(), "entries the rebuild applied are still listed as dead letters: {list:?}");
}

fn rebuild_that_parks_again_lists_the_entry(env: Env) {
    let knobs = Arc::<Knobs>::default();
    let sa = format!("{ACCOUNTS}/a");
    let (a, poison) = poisoned_stream(&env);
    let mut runner = env.runner(Bank::accounts(knobs.clone()), 2);
    env.settle(&mut runner);
    let dl = runner.dead_letters();
    knobs.fixed.store(true, Ordering::SeqCst);
    dl.retry(&sa).expect("retry");
    env.settle(&mut runner);
    assert!(dl.list().expect("list").is_empty());
    drop(runner);
    // The fix is reverted, then the projection rebuilt: the poison event is parked again (and
    // the old retry request, replayed, fails again).
    knobs.fixed.store(false, Ordering::SeqCst);
    let mut runner =
        ProjectionRunner::rebuild(env.dyn_backend(), env.db.sink(), Bank::accounts(knobs.clone()), options(2), |_| {})
            .expect("rebuild");
    env.settle(&mut runner);
    let parked: Vec<u64> = parked_rows(&mut env.db.sink(), "bank").iter().map(|r| r.0).collect();
    assert_eq!(parked, a[1..].to_vec(), "the rebuild parked the poison event and held the rest");
    let list = dl.list().expect("list");
    let listed: Vec<u64> = list.get(&sa).map(|v| v.iter().map(|e| e.sequence.0).collect()).unwrap_or_default();
    assert_eq!(listed, parked, "the list shows what the runner holds (poison {poison})");
    // Fixed again, a retry applies them and empties the list (its resolutions land too).
    knobs.fixed.store(true, Ordering::SeqCst);
    dl.retry(&sa).expect("retry");
    env.settle(&mut runner);
    let model = env.model("");
    assert_once(&model);
    assert_eq!(model, env.fold(&Subscription::topic(ACCOUNTS), &BTreeSet::new()));
    assert_order(&env, &sa, &a);
    let list = dl.list().expect("list");
    assert!(list.is_empty(), "resolved entries are still listed: {list:?}");
}

/// Makes every insert into `evident_parked` fail while `evident_fault.on = 1`.
fn install_park_fault(env: &Env) {
    let mut sink = env.db.sink();
    let statements: &[&str] = match env.db {
        Db::Sqlite(_) => &[
            "CREATE TABLE evident_fault (on_ BIGINT NOT NULL)",
            "INSERT INTO evident_fault (on_) VALUES (1) RETURNING on_",
            "CREATE TRIGGER evident_fault_park BEFORE INSERT ON evident_parked \
             WHEN (SELECT on_ FROM evident_fault) = 1 BEGIN SELECT RAISE(ABORT, 'injected fault'); END",
        ],
        Db::Postgres(_) => &[
            "CREATE TABLE evident_fault (on_ BIGINT NOT NULL)",
            "INSERT INTO evident_fault (on_) VALUES (1) RETURNING on_",
            "CREATE FUNCTION evident_fault_fn() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN \
             IF (SELECT on_ FROM evident_fault) = 1 THEN RAISE EXCEPTION 'injected fault'; END IF; \
             RETURN NEW; END $$",
            "CREATE TRIGGER evident_fault_park BEFORE INSERT ON evident_parked \
             FOR EACH ROW EXECUTE FUNCTION evident_fault_fn()",
        ],
    };
    for s in statements {
        evident::blocking::query(&mut sink, s, &[]).unwrap_or_else(|e| panic!("{s}: {e}"));
    }
}

fn failed_park_commit_leaves_no_phantom_entry(env: Env) {
    let knobs = Arc::<Knobs>::default();
    let (_, _poison) = poisoned_stream(&env);
    install_park_fault(&env);
    let mut runner = env.runner(Bank::accounts(knobs.clone()), 2);
    // The park's journal record is written, then its commit fails: as a crash between the two.
    assert!(runner.catch_up().is_err(), "the injected fault fails the park's transaction");
    drop(runner);
    evident::blocking::query(&mut env.db.sink(), "UPDATE evident_fault SET on_ = 0 RETURNING on_", &[])
        .expect("clear the fault");
    // The failure was transient: on restart the event applies.
    knobs.fixed.store(true, Ordering::SeqCst);
    let mut runner = env.runner(Bank::accounts(knobs.clone()), 2);
    env.settle(&mut runner);
    let model = env.model("");
    assert_once(&model);
    assert_eq!(model, env.fold(&Subscription::topic(ACCOUNTS), &BTreeSet::new()));
    assert!(parked_rows(&mut env.db.sink(), "bank").is_empty());
    let list = runner.dead_letters().list().expect("list");
    assert!(list.is_empty(), "an event that was never parked is listed as a dead letter: {list:?}");
}

fn batch_catch_up_equals_fold(env: Env) {
    populate(&env, 2_000, 25, 5);
    let knobs = Arc::<Knobs>::default();
    let mut runner = env.runner(BatchBank { bank: Bank::accounts(knobs.clone()), name_failures: false }, 64);
    let result = runner.catch_up().expect("catch up");
    let expected = env.fold(&Subscription::topic(ACCOUNTS), &BTreeSet::new());
    assert_eq!(result.applied, expected.applied.len() as u64);
    assert_eq!(env.model(""), expected, "the read model equals the fold");
    assert_eq!(env.checkpoint("bank"), Some(env.head()));
    assert_eq!(knobs.handle_calls.load(Ordering::SeqCst), 0, "every page went through handle_batch");
    assert!(knobs.batch_calls.load(Ordering::SeqCst) >= 2000 / 64, "one batch per page");
    // Pages are committed in order: the `applied` order is the commit order.
    let mut sink = env.db.sink();
    let rows = evident::blocking::query(&mut sink, "SELECT sequence FROM applied ORDER BY ord", &[]).expect("read");
    let order: Vec<u64> = rows.iter().map(|r| int(&r[0]) as u64).collect();
    assert!(order.windows(2).all(|w| w[0] < w[1]), "applied in commit order");
}

fn batch_failure_is_searched_event_by_event(env: Env) {
    poison_in_a_batch(env, "Poison", false);
}

fn batch_failure_naming_its_event_is_not_searched(env: Env) {
    poison_in_a_batch(env, "Poison", true);
}

fn batch_statement_failure_is_searched_statement_by_statement(env: Env) {
    poison_in_a_batch(env, "Conflict", false);
}

/// A page of 12 events over streams a, b, c with a poison event of a (of type `poison_type`) in
/// the middle, handled by `BatchBank` in one page: the poison event is found, retried and
/// parked, a's later event held, everything else applied once; after the fix a retry applies
/// the rest once, in order. A `Conflict` event's statement fails when it runs: on PostgreSQL
/// the batch's handler returns and the failure arrives at the flush, so the page is searched
/// statement by statement.
fn poison_in_a_batch(env: Env, poison_type: &str, name_failures: bool) {
    let knobs = Arc::<Knobs>::default();
    let (sa, sub) = (format!("{ACCOUNTS}/a"), Subscription::topic(ACCOUNTS));
    let mut a = Vec::new();
    let mut poison = 0;
    for i in 0..12i64 {
        let key = ["a", "b", "c"][i as usize % 3];
        let seq = if i == 6 {
            env.append(ACCOUNTS, key, event(poison_type, 100))
        } else {
            env.append(ACCOUNTS, key, deposit(i))
        };
        if i == 6 {
            poison = seq;
        }
        if key == "a" {
            a.push(seq);
        }
    }
    let held = a[3];
    let mut runner = env.runner(BatchBank { bank: Bank::accounts(knobs.clone()), name_failures }, 12);
    let result = runner.catch_up().expect("a failing batch is not a crash");
    assert_eq!(result.parked, 2, "the poison event and a's event after it");
    assert_eq!(result.applied, 10);
    let model = env.model("");
    assert_once(&model);
    assert_eq!(model, env.fold(&sub, &BTreeSet::from([poison, held])), "every other event applied once");
    if name_failures {
        // The batch's failure is the first attempt; the retries call `handle` on it alone.
        assert_eq!(knobs.failing_calls.load(Ordering::SeqCst), 3);
        assert_eq!(knobs.handle_calls.load(Ordering::SeqCst), 2, "no search of the page");
    } else if poison_type == "Conflict" && matches!(env.db, Db::Postgres(_)) {
        // The failed statement surfaces in the batch at its next query (a handler error
        // naming no event); the page handled event by event with pipelined statements fails
        // at the flush (12 calls), so statement by statement: 7 calls up to the failing one,
        // its first attempt; then it is retried alone twice.
        assert_eq!(knobs.failing_calls.load(Ordering::SeqCst), 5);
        assert_eq!(knobs.handle_calls.load(Ordering::SeqCst), 12 + 7 + 2);
    } else {
        // The batch's failure names no event: the page is handled event by event up to the
        // poison event (7 calls, its first attempt), then it is retried alone twice.
        assert_eq!(knobs.failing_calls.load(Ordering::SeqCst), 4);
        assert_eq!(knobs.handle_calls.load(Ordering::SeqCst), 7 + 2);
    }
    // The failed batch, the events before the poison one, the events after it.
    assert_eq!(knobs.batch_calls.load(Ordering::SeqCst), 3);
    let list = runner.dead_letters().list().expect("list");
    let entries = &list[&sa];
    assert_eq!(
        entries.iter().map(|e| (e.sequence.0, e.kind)).collect::<Vec<_>>(),
        vec![(poison, Kind::Parked), (held, Kind::Held)]
    );
    assert_eq!(entries[0].attempts, 3);
    let error = entries[0].error.as_deref().unwrap_or_default().to_lowercase();
    let expected = if poison_type == "Conflict" { "unique" } else { "cannot be processed yet" };
    assert!(error.contains(expected), "the handler's error is kept: {error:?}");

    knobs.fixed.store(true, Ordering::SeqCst);
    runner.dead_letters().retry(&sa).expect("retry");
    env.settle(&mut runner);
    let model = env.model("");
    assert_once(&model);
    assert_eq!(model, env.fold(&sub, &BTreeSet::new()), "every event applied exactly once");
    assert_order(&env, &sa, &a);
    assert!(runner.dead_letters().list().expect("list").is_empty());
    assert_eq!(env.checkpoint("bank"), Some(env.head()));
}
