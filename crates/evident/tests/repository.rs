//! Goal: the repository keeps its promises on the embedded log: aggregates decide and evolve
//! as their given/when/then specifications say; a command that loses a race is re-decided on
//! the newer state and lands exactly once (or gives up after its retry budget); a command id
//! makes a command land once however often it is sent, lost replies included; a load from a
//! snapshot equals a replay of every event, at the head and at any earlier version or time; an
//! unusable snapshot is ignored, never an error; three generations of an event's shape are
//! read as the current one.
//!
//! Method: a bank account aggregate (tests/support). Races are made deterministic by backend
//! wrappers that let a "concurrent writer" append just before the repository's append, lose
//! the reply of an append that landed, or conflict on every append; real races by threads
//! hammering one stream. Snapshot equivalence is a proptest over random command histories on
//! several accounts and random snapshot intervals, comparing every load with a pure fold of the
//! stored events. Time is pinned with the log's `ManualClock`. Old event generations are
//! written straight to the backend, as the old code would have.

mod support;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use evident::backend::{StreamPage, StreamQuery};
use evident::blocking::Repository;
use evident::event::SCHEMA_VERSION_HEADER;
use evident::snapshot::{SNAPSHOT_TYPE, SNAPSHOT_VERSION_HEADER};
use evident::testing::AggregateTest;
use evident::{
    Aggregate, Appended, At, Backend, CommandError, DomainEvent, EmbeddedBackend, Error, EventData, ExpectedVersion,
    RecordedEvent, RetryPolicy, Sequence, SnapshotPolicy, TopicSpec, Upcasters, Version,
};
use evident_log::clock::ManualClock;
use proptest::prelude::*;
use serde::{Deserialize, Serialize};
use serde_json::json;
use support::{
    backend, backend_with_clock, fast_backend, fold, read_stream, stored_events, Account, AccountCommand as Cmd,
    AccountError, AccountEvent as Ev, ACCOUNTS,
};

const SNAPSHOTS: &str = "accounts.snapshots";

fn open(owner: &str) -> Cmd {
    Cmd::Open { owner: owner.into() }
}

fn deposit(amount: u64) -> Cmd {
    Cmd::Deposit { amount }
}

fn withdraw(amount: u64) -> Cmd {
    Cmd::Withdraw { amount }
}

/// `event` as the repository would store it, under `id`.
fn event_data(event: &Ev, id: &str) -> EventData {
    let enc = evident::event::encode(event).expect("encode");
    EventData::json(id, enc.event_type, enc.data)
}

/// The decoded events of an account's stream.
fn events_of(backend: &dyn Backend, id: &str) -> Vec<Ev> {
    stored_events::<Account>(backend, ACCOUNTS, id, &Upcasters::default())
}

fn fast_retry(max_attempts: u32) -> RetryPolicy {
    RetryPolicy { max_attempts, initial_backoff: Duration::from_micros(50), max_backoff: Duration::from_millis(2) }
}

// ---------------------------------------------------------------------------------------------
// Given / when / then

#[test]
fn opening_an_account() {
    let state =
        AggregateTest::<Account>::given_no_events().when(open("ann")).then([Ev::Opened { owner: "ann".into() }]);
    assert_eq!(state.owner.as_deref(), Some("ann"));
    assert_eq!(state.balance, 0);
    AggregateTest::<Account>::given([Ev::Opened { owner: "ann".into() }])
        .when(open("bob"))
        .then_error(|e| *e == AccountError::AlreadyOpen);
}

#[test]
fn deposits_and_withdrawals_move_the_balance() {
    let opened = Ev::Opened { owner: "ann".into() };
    let state = AggregateTest::<Account>::given([opened.clone(), Ev::Deposited { amount: 30 }])
        .when(withdraw(20))
        .then([Ev::Withdrawn { amount: 20 }]);
    assert_eq!(state.balance, 10);
    AggregateTest::<Account>::given([opened.clone(), Ev::Deposited { amount: 30 }, Ev::Withdrawn { amount: 20 }])
        .when(withdraw(11))
        .then_error(|e| *e == AccountError::InsufficientFunds { balance: 10, requested: 11 });
    let state = AggregateTest::<Account>::given([opened.clone()]).when(deposit(5)).then([Ev::Deposited { amount: 5 }]);
    assert_eq!(state.balance, 5);
    // A zero deposit decides that nothing happened.
    let state = AggregateTest::<Account>::given([opened]).when(deposit(0)).then([]);
    assert_eq!(state.events, 1);
}

#[test]
fn several_deposits_at_once_are_one_event_each_in_order() {
    let state = AggregateTest::<Account>::given([Ev::Opened { owner: "ann".into() }])
        .when(Cmd::DepositAll { amounts: vec![3, 0, 4] })
        .then([Ev::Deposited { amount: 3 }, Ev::Deposited { amount: 4 }]);
    assert_eq!(state.balance, 7);
    assert_eq!(state.events, 3);
}

#[test]
fn an_account_must_be_open_and_not_closed() {
    AggregateTest::<Account>::given_no_events().when(deposit(1)).then_error(|e| *e == AccountError::NotOpen);
    AggregateTest::<Account>::given([Ev::Opened { owner: "ann".into() }, Ev::Deposited { amount: 2 }])
        .when(Cmd::Close)
        .then_error(|e| *e == AccountError::NotEmpty(2));
    let state =
        AggregateTest::<Account>::given([Ev::Opened { owner: "ann".into() }]).when(Cmd::Close).then([Ev::Closed]);
    assert!(state.closed);
    AggregateTest::<Account>::given([Ev::Opened { owner: "ann".into() }, Ev::Closed])
        .when(deposit(1))
        .then_error(|e| *e == AccountError::Closed);
}

#[test]
#[should_panic(expected = "other events than expected")]
fn a_wrong_expectation_fails_the_test() {
    AggregateTest::<Account>::given([Ev::Opened { owner: "ann".into() }])
        .when(deposit(5))
        .then([Ev::Deposited { amount: 6 }]);
}

// ---------------------------------------------------------------------------------------------
// Backend wrappers

/// What a hook has happen at an append to the accounts topic, before (or instead of) the
/// repository's own append.
enum Before {
    /// The repository's append goes through.
    Proceed,
    /// Another writer appends these events (expected version any) first: a lost race.
    TheirsFirst(Vec<EventData>),
    /// The append is answered with this error, and nothing is appended.
    Refuse(Error),
    /// The append lands, and its reply is lost (a connection reset after the store committed).
    LandThenLoseTheReply,
}

/// Decides, for each append of the repository to the accounts topic (key, expected version,
/// events), what happens ([`Before`]).
type Hook = Box<dyn Fn(&str, ExpectedVersion, &[EventData]) -> Before + Send + Sync>;

/// Delegates everything to a backend (embedded or Kafka), except that a hook decides what
/// happens at each append to the accounts topic (snapshot appends pass straight through): the
/// hook's writes go through the same backend, standing for another process.
struct Hooked {
    inner: Arc<dyn Backend>,
    /// Appends the repository made to the accounts topic.
    appends: AtomicU32,
    hook: Hook,
}

impl Hooked {
    fn new(inner: Arc<dyn Backend>, hook: Hook) -> Arc<Self> {
        Arc::new(Self { inner, appends: AtomicU32::new(0), hook })
    }
}

#[async_trait::async_trait]
impl Backend for Hooked {
    async fn ensure_topic(&self, topic: &str, spec: TopicSpec) -> evident::Result<()> {
        self.inner.ensure_topic(topic, spec).await
    }

    async fn append(
        &self,
        topic: &str,
        key: &str,
        expected: ExpectedVersion,
        events: &[EventData],
    ) -> evident::Result<Appended> {
        if topic == ACCOUNTS {
            self.appends.fetch_add(1, Ordering::SeqCst);
            match (self.hook)(key, expected, events) {
                Before::Proceed => {}
                Before::TheirsFirst(theirs) => {
                    self.inner
                        .append(ACCOUNTS, key, ExpectedVersion::Any, &theirs)
                        .await
                        .expect("the concurrent writer appends");
                }
                Before::Refuse(e) => return Err(e),
                Before::LandThenLoseTheReply => {
                    self.inner.append(topic, key, expected, events).await.expect("the append lands");
                    return Err(Error::Unavailable("connection reset before the reply".into()));
                }
            }
        }
        self.inner.append(topic, key, expected, events).await
    }

    async fn read_stream(&self, topic: &str, key: &str, query: &StreamQuery) -> evident::Result<StreamPage> {
        self.inner.read_stream(topic, key, query).await
    }

    async fn read_all(&self, from: Sequence, limit: usize) -> evident::Result<Vec<RecordedEvent>> {
        self.inner.read_all(from, limit).await
    }

    async fn head_sequence(&self) -> evident::Result<Sequence> {
        self.inner.head_sequence().await
    }

    async fn wait_for_sequence(&self, sequence: Sequence, timeout: Duration) -> evident::Result<bool> {
        self.inner.wait_for_sequence(sequence, timeout).await
    }
}

/// Refuses every append as if another writer had always just moved the stream.
fn always_conflicts() -> Hook {
    Box::new(|key, expected, _| {
        Before::Refuse(Error::WrongExpectedVersion {
            stream: format!("{ACCOUNTS}/{key}"),
            expected,
            current: Some(Version(99)),
        })
    })
}

/// A concurrent writer: appends `theirs` (once, or before every append when `always`) to the
/// stream the repository is about to append to, without any version check.
fn concurrent_writer(theirs: Vec<Ev>, always: bool) -> Hook {
    let n = AtomicU32::new(0);
    let pending = Mutex::new(Some(()));
    Box::new(move |_key, _expected, _events| {
        let go = if always { true } else { pending.lock().expect("lock").take().is_some() };
        if !go {
            return Before::Proceed;
        }
        let i = n.fetch_add(1, Ordering::SeqCst);
        Before::TheirsFirst(
            theirs.iter().enumerate().map(|(j, e)| event_data(e, &format!("concurrent-{i}-{j}"))).collect(),
        )
    })
}

/// Lets the next `lose` appends land, then reports a failure instead of their reply.
fn lost_replies(lose: u32) -> Hook {
    let left = AtomicU32::new(lose);
    Box::new(move |_, _, _| match left.fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1)) {
        Ok(_) => Before::LandThenLoseTheReply,
        Err(_) => Before::Proceed,
    })
}

/// Declares `<test>::embedded` and, with the `kafka` feature, `<test>::kafka` (the library's
/// Kafka backend on the cluster of `EVIDENT_TEST_KAFKA_BOOTSTRAP`, in a topic namespace of
/// its own), each running `fn <test>(Arc<dyn Backend>)`: the repository's promises hold on
/// either store.
macro_rules! on_both_stores {
    ($($test:ident),* $(,)?) => {$(
        mod $test {
            use std::sync::Arc;

            use evident::Backend;

            #[test]
            fn embedded() {
                let dir = tempfile::tempdir().expect("tmp");
                let store: Arc<dyn Backend> = super::support::backend(dir.path());
                super::$test(store);
            }

            #[cfg(feature = "kafka")]
            #[test]
            fn kafka() {
                let dir = tempfile::tempdir().expect("tmp");
                let name = format!("repository-{}", stringify!($test).replace('_', "-"));
                let Some(store) = super::support::kafka::kafka_backend(&name, dir.path()) else { return };
                super::$test(store);
            }
        }
    )*};
}

on_both_stores!(
    a_command_that_loses_a_race_is_retried_and_both_effects_land_once,
    a_retried_command_is_decided_again_on_the_newer_state,
    a_race_on_an_empty_stream_is_retried_too,
    a_stream_that_keeps_moving_exhausts_the_retries,
    a_backend_that_always_conflicts_exhausts_the_retries,
    without_retries_a_lost_race_is_the_wrong_expected_version,
    threads_depositing_into_one_account_through_one_repository_lose_nothing,
    threads_with_their_own_repositories_and_snapshots_lose_nothing_and_duplicate_nothing,
    the_same_command_id_twice_lands_once,
    a_command_id_must_be_1_to_200_bytes,
    a_command_whose_reply_was_lost_is_stored_once_when_sent_again,
    a_lost_reply_sent_again_after_other_writes_is_still_a_duplicate,
);

/// An account `id` opened (and funded with `balance`) through a plain repository on `inner`.
fn opened_account(inner: &Arc<dyn Backend>, id: &str, balance: u64) {
    let repo = Repository::<Account>::new(inner.clone());
    repo.ensure_topics().expect("topics");
    repo.execute(id, &open("ann")).expect("open");
    if balance > 0 {
        repo.execute(id, &deposit(balance)).expect("fund");
    }
}

// ---------------------------------------------------------------------------------------------
// Optimistic concurrency

fn a_command_that_loses_a_race_is_retried_and_both_effects_land_once(inner: Arc<dyn Backend>) {
    opened_account(&inner, "a1", 0);
    let hooked = Hooked::new(inner.clone(), concurrent_writer(vec![Ev::Deposited { amount: 7 }], false));
    let repo = Repository::<Account>::new(hooked.clone()).with_retry(fast_retry(5));

    let done = repo.execute("a1", &deposit(5)).expect("the command lands after one retry");
    assert_eq!(done.attempts, 2, "one lost race, one retry");
    assert!(!done.duplicate);
    assert_eq!(done.events, vec![Ev::Deposited { amount: 5 }]);
    assert_eq!(done.version, Some(Version(2)));
    assert_eq!(done.state.balance, 12, "the retry handled the command on the state including the concurrent deposit");
    let appended = done.appended.expect("appended");
    assert_eq!((appended.first_version, appended.last_version), (Version(2), Version(2)));
    assert_eq!(hooked.appends.load(Ordering::SeqCst), 2);

    let stored = events_of(inner.as_ref(), "a1");
    assert_eq!(
        stored,
        vec![Ev::Opened { owner: "ann".into() }, Ev::Deposited { amount: 7 }, Ev::Deposited { amount: 5 }],
        "both deposits, each exactly once, the concurrent one first"
    );
    let loaded = repo.load("a1").expect("load");
    assert_eq!(loaded.state, fold::<Account>(&stored));
    assert_eq!(loaded.state.balance, 12);
}

fn a_retried_command_is_decided_again_on_the_newer_state(inner: Arc<dyn Backend>) {
    opened_account(&inner, "a1", 10);
    // While we withdraw 10, someone else withdraws 5: on the newer state ours is refused.
    let hooked = Hooked::new(inner.clone(), concurrent_writer(vec![Ev::Withdrawn { amount: 5 }], false));
    let repo = Repository::<Account>::new(hooked.clone()).with_retry(fast_retry(5));
    match repo.execute("a1", &withdraw(10)) {
        Err(CommandError::Domain(AccountError::InsufficientFunds { balance: 5, requested: 10 })) => {}
        other => panic!("expected the retry to refuse the withdrawal on balance 5, got {other:?}"),
    }
    assert_eq!(hooked.appends.load(Ordering::SeqCst), 1, "the refused retry appends nothing");
    let stored = events_of(inner.as_ref(), "a1");
    assert_eq!(stored.len(), 3, "opened, deposited, their withdrawal; not ours: {stored:?}");
    assert_eq!(fold::<Account>(&stored).balance, 5);
}

fn a_race_on_an_empty_stream_is_retried_too(inner: Arc<dyn Backend>) {
    Repository::<Account>::new(inner.clone()).ensure_topics().expect("topics");
    // Someone opens the account (as bob) while we open it (as ann): ours is refused on retry.
    let hooked = Hooked::new(inner.clone(), concurrent_writer(vec![Ev::Opened { owner: "bob".into() }], false));
    let repo = Repository::<Account>::new(hooked.clone()).with_retry(fast_retry(5));
    match repo.execute("a1", &open("ann")) {
        Err(CommandError::Domain(AccountError::AlreadyOpen)) => {}
        other => panic!("expected AlreadyOpen after the lost race, got {other:?}"),
    }
    let stored = events_of(inner.as_ref(), "a1");
    assert_eq!(stored, vec![Ev::Opened { owner: "bob".into() }]);
}

fn a_stream_that_keeps_moving_exhausts_the_retries(inner: Arc<dyn Backend>) {
    opened_account(&inner, "a1", 0);
    let hooked = Hooked::new(inner.clone(), concurrent_writer(vec![Ev::Deposited { amount: 1 }], true));
    let repo = Repository::<Account>::new(hooked.clone()).with_retry(fast_retry(3));
    match repo.execute("a1", &deposit(100)) {
        Err(CommandError::Store(Error::RetriesExhausted { stream, attempts: 3 })) => {
            assert_eq!(stream, "accounts/a1");
        }
        other => panic!("expected RetriesExhausted after 3 attempts, got {other:?}"),
    }
    assert_eq!(hooked.appends.load(Ordering::SeqCst), 3, "exactly max_attempts appends");
    let stored = events_of(inner.as_ref(), "a1");
    assert_eq!(stored.len(), 4, "opened and the three concurrent deposits");
    assert!(!stored.contains(&Ev::Deposited { amount: 100 }), "our deposit never landed");
}

fn a_backend_that_always_conflicts_exhausts_the_retries(inner: Arc<dyn Backend>) {
    opened_account(&inner, "a1", 0);
    let hooked = Hooked::new(inner.clone(), always_conflicts());
    for max_attempts in [2, 4] {
        hooked.appends.store(0, Ordering::SeqCst);
        let repo = Repository::<Account>::new(hooked.clone()).with_retry(fast_retry(max_attempts));
        match repo.execute_idempotent("a1", "c1", &deposit(100)) {
            Err(CommandError::Store(Error::RetriesExhausted { attempts, .. })) => assert_eq!(attempts, max_attempts),
            other => panic!("expected RetriesExhausted, got {other:?}"),
        }
        assert_eq!(hooked.appends.load(Ordering::SeqCst), max_attempts);
    }
    assert_eq!(events_of(inner.as_ref(), "a1").len(), 1);
}

fn without_retries_a_lost_race_is_the_wrong_expected_version(inner: Arc<dyn Backend>) {
    // RetryPolicy::none's contract: "a lost race is returned as Error::WrongExpectedVersion".
    opened_account(&inner, "a1", 0);
    let hooked = Hooked::new(inner.clone(), concurrent_writer(vec![Ev::Deposited { amount: 7 }], false));
    let repo = Repository::<Account>::new(hooked.clone()).with_retry(RetryPolicy::none());
    match repo.execute("a1", &deposit(5)) {
        Err(CommandError::Store(Error::WrongExpectedVersion { stream, current: Some(Version(1)), .. })) => {
            assert_eq!(stream, "accounts/a1")
        }
        other => panic!("expected WrongExpectedVersion, got {other:?}"),
    }
    assert_eq!(hooked.appends.load(Ordering::SeqCst), 1);
    assert_eq!(events_of(inner.as_ref(), "a1").len(), 2);
}

/// N threads each deposit M distinct amounts into one account; `repos(i)` gives thread i's
/// repository. Every deposit must be stored exactly once, and the balance be their sum.
fn hammer(inner: &Arc<dyn Backend>, threads: u64, per_thread: u64, repos: &[Repository<Account>], twice: bool) {
    let attempts = AtomicU32::new(0);
    std::thread::scope(|s| {
        for t in 0..threads {
            let repo = &repos[t as usize % repos.len()];
            let attempts = &attempts;
            s.spawn(move || {
                for i in 0..per_thread {
                    let amount = t * 1000 + i + 1;
                    let id = format!("t{t}-{i}");
                    let done = repo.execute_idempotent("hot", &id, &deposit(amount)).expect("deposit");
                    assert!(!done.duplicate, "{id} ran for the first time");
                    assert_eq!(done.events, vec![Ev::Deposited { amount }]);
                    attempts.fetch_add(done.attempts, Ordering::Relaxed);
                    if twice {
                        let again = repo.execute_idempotent("hot", &id, &deposit(amount)).expect("deposit again");
                        assert!(again.duplicate, "{id} ran twice");
                        assert!(again.events.is_empty());
                    }
                }
            });
        }
    });
    let stored = read_stream(inner.as_ref(), ACCOUNTS, "hot");
    assert_eq!(stored.len() as u64, 1 + threads * per_thread, "opened, then every deposit once");
    let mut seen: HashMap<u64, String> = HashMap::new();
    for record in &stored[1..] {
        let ev: Ev = evident::event::decode(record, &Upcasters::default()).expect("decode");
        let Ev::Deposited { amount } = ev else { panic!("unexpected {ev:?}") };
        let id = record.id.clone().expect("id");
        let (t, i) = ((amount - 1) / 1000, (amount - 1) % 1000);
        assert_eq!(id, format!("t{t}-{i}.0"), "the event id derives from the command id");
        assert!(seen.insert(amount, id).is_none(), "deposit {amount} stored twice");
    }
    let want: u64 = (0..threads).flat_map(|t| (0..per_thread).map(move |i| t * 1000 + i + 1)).sum();
    for repo in repos {
        let loaded = repo.load("hot").expect("load");
        assert_eq!(loaded.state.balance, want);
        assert_eq!(loaded.version, Some(Version(threads * per_thread)));
        assert_eq!(loaded.state, repo.load_from_events("hot").expect("replay").state);
    }
    let n = threads * per_thread;
    let total = attempts.load(Ordering::Relaxed);
    println!(
        "repository contention ({threads} threads x {per_thread} deposits, {} repositories): commands={n} attempts={total} retries={}",
        repos.len(),
        u64::from(total) - n
    );
}

fn threads_depositing_into_one_account_through_one_repository_lose_nothing(inner: Arc<dyn Backend>) {
    opened_account(&inner, "hot", 0);
    let repo = Repository::<Account>::new(inner.clone()).with_retry(RetryPolicy {
        max_attempts: 10_000,
        initial_backoff: Duration::from_micros(100),
        max_backoff: Duration::from_millis(5),
    });
    hammer(&inner, 4, 25, std::slice::from_ref(&repo), false);
}

fn threads_with_their_own_repositories_and_snapshots_lose_nothing_and_duplicate_nothing(inner: Arc<dyn Backend>) {
    opened_account(&inner, "hot", 0);
    let retry = RetryPolicy {
        max_attempts: 10_000,
        initial_backoff: Duration::from_micros(100),
        max_backoff: Duration::from_millis(5),
    };
    let repos: Vec<Repository<Account>> =
        [SnapshotPolicy::EveryEvents(3), SnapshotPolicy::Never, SnapshotPolicy::EveryEvents(7)]
            .into_iter()
            .map(|p| Repository::<Account>::new(inner.clone()).with_snapshots(p).with_retry(retry))
            .collect();
    hammer(&inner, 3, 20, &repos, true);
}

// ---------------------------------------------------------------------------------------------
// Idempotent commands

fn the_same_command_id_twice_lands_once(inner: Arc<dyn Backend>) {
    opened_account(&inner, "a1", 0);
    let repo = Repository::<Account>::new(inner.clone());
    let cmd = Cmd::DepositAll { amounts: vec![5, 6] };
    let first = repo.execute_idempotent("a1", "cmd-1", &cmd).expect("first");
    assert!(!first.duplicate);
    assert_eq!(first.events.len(), 2);
    assert_eq!(first.version, Some(Version(2)));
    let second = repo.execute_idempotent("a1", "cmd-1", &cmd).expect("second");
    assert!(second.duplicate, "the second run is reported as a duplicate");
    assert!(second.events.is_empty());
    assert_eq!(second.version, Some(Version(2)));
    assert_eq!(second.state, first.state);
    assert_eq!(second.state.balance, 11);
    let stored = read_stream(inner.as_ref(), ACCOUNTS, "a1");
    assert_eq!(stored.len(), 3);
    let ids: Vec<_> = stored[1..].iter().map(|e| e.id.clone().expect("id")).collect();
    assert_eq!(ids, ["cmd-1.0", "cmd-1.1"]);

    // Another command id is another command.
    let third = repo.execute_idempotent("a1", "cmd-2", &cmd).expect("third");
    assert!(!third.duplicate);
    assert_eq!(third.state.balance, 22);
    // And the id is per stream: the same id on another account is a new command there.
    opened_account(&inner, "a2", 0);
    let other = repo.execute_idempotent("a2", "cmd-1", &cmd).expect("other account");
    assert!(!other.duplicate);
    assert_eq!(events_of(inner.as_ref(), "a1").len(), 5);
    assert_eq!(events_of(inner.as_ref(), "a2").len(), 3);
}

fn a_command_id_must_be_1_to_200_bytes(inner: Arc<dyn Backend>) {
    opened_account(&inner, "a1", 0);
    let repo = Repository::<Account>::new(inner.clone());
    for bad in [String::new(), "x".repeat(201)] {
        match repo.execute_idempotent("a1", &bad, &deposit(1)) {
            Err(CommandError::Store(Error::Rejected(_))) => {}
            other => panic!("expected Rejected for a {}-byte id, got {other:?}", bad.len()),
        }
    }
    repo.execute_idempotent("a1", &"x".repeat(200), &deposit(1)).expect("200 bytes is fine");
    assert_eq!(events_of(inner.as_ref(), "a1").len(), 2);
}

fn a_command_whose_reply_was_lost_is_stored_once_when_sent_again(inner: Arc<dyn Backend>) {
    opened_account(&inner, "a1", 0);
    let hooked = Hooked::new(inner.clone(), lost_replies(1));
    let repo = Repository::<Account>::new(hooked.clone());
    let cmd = Cmd::DepositAll { amounts: vec![5, 6] };
    match repo.execute_idempotent("a1", "cmd-1", &cmd) {
        Err(CommandError::Store(Error::Unavailable(_))) => {}
        other => panic!("expected the lost reply to surface as Unavailable, got {other:?}"),
    }
    assert_eq!(events_of(inner.as_ref(), "a1").len(), 3, "the append did land");
    let again = repo.execute_idempotent("a1", "cmd-1", &cmd).expect("sent again");
    assert!(again.duplicate);
    assert!(again.events.is_empty());
    assert_eq!(again.state.balance, 11);
    assert_eq!(again.version, Some(Version(2)));
    assert_eq!(events_of(inner.as_ref(), "a1").len(), 3, "nothing appended the second time");
}

fn a_lost_reply_sent_again_after_other_writes_is_still_a_duplicate(inner: Arc<dyn Backend>) {
    opened_account(&inner, "a1", 10);
    let hooked = Hooked::new(inner.clone(), lost_replies(1));
    let repo = Repository::<Account>::new(hooked.clone());
    assert!(repo.execute_idempotent("a1", "w-1", &withdraw(10)).is_err(), "reply lost");
    // Someone else deposits before the caller sends again: the withdrawal is not re-decided
    // (it would now be allowed and taken twice).
    repo.execute("a1", &deposit(10)).expect("other deposit");
    let again = repo.execute_idempotent("a1", "w-1", &withdraw(10)).expect("sent again");
    assert!(again.duplicate);
    assert_eq!(again.state.balance, 10);
    assert_eq!(again.version, Some(Version(3)));
    assert_eq!(
        events_of(inner.as_ref(), "a1"),
        vec![
            Ev::Opened { owner: "ann".into() },
            Ev::Deposited { amount: 10 },
            Ev::Withdrawn { amount: 10 },
            Ev::Deposited { amount: 10 }
        ]
    );
}

#[test]
fn a_lost_reply_sent_again_is_a_duplicate_even_when_a_snapshot_covers_it() {
    // The command lands (its reply lost); the account moves on and a snapshot is taken after
    // it. Sent again, the command must be recognized as done, not decided again on the
    // snapshot's state, where it is refused (withdraw 10 of 3), decides nothing (withdraw all
    // of 0), or decides another event under the same id (withdraw all of 3, not 10).
    let scenarios: [(&str, Cmd, Option<Cmd>, u64); 4] = [
        ("refused on the newer state", withdraw(10), Some(deposit(3)), 3),
        ("another event on the newer state", Cmd::WithdrawAll, Some(deposit(3)), 3),
        ("no event on the newer state", Cmd::WithdrawAll, None, 0),
        ("the same event again", deposit(5), Some(deposit(3)), 18),
    ];
    for (scenario, cmd, then, balance) in scenarios {
        for snapshot_by_policy in [true, false] {
            let case = format!("{scenario} (snapshot by policy: {snapshot_by_policy})");
            let dir = tempfile::tempdir().expect("tmp");
            let inner: Arc<dyn Backend> = backend(dir.path());
            opened_account(&inner, "a1", 10);
            let hooked = Hooked::new(inner.clone(), lost_replies(1));
            let policy = if snapshot_by_policy { SnapshotPolicy::EveryEvents(1) } else { SnapshotPolicy::Never };
            let repo = Repository::<Account>::new(hooked.clone()).with_snapshots(policy);
            assert!(repo.execute_idempotent("a1", "c-1", &cmd).is_err(), "{case}: reply lost");
            if let Some(then) = &then {
                repo.execute("a1", then).expect("the account moves on");
            }
            let last = if then.is_some() { 3 } else { 2 };
            if !snapshot_by_policy || then.is_none() {
                let snap = Repository::<Account>::new(inner.clone()).with_snapshots(SnapshotPolicy::EveryEvents(1000));
                assert_eq!(snap.snapshot_now("a1").expect("snapshot"), Some(Version(last)));
            }
            let reader = Repository::<Account>::new(inner.clone()).with_snapshots(SnapshotPolicy::EveryEvents(1));
            assert_eq!(
                reader.load("a1").expect("load").snapshot_version,
                Some(Version(last)),
                "{case}: a snapshot covers it"
            );

            match reader.execute_idempotent("a1", "c-1", &cmd) {
                Ok(done) => {
                    assert!(done.duplicate, "{case}: must be a duplicate, got {done:?}");
                    assert!(done.events.is_empty(), "{case}");
                    assert_eq!(done.state.balance, balance, "{case}");
                    assert_eq!(done.version, Some(Version(last)), "{case}");
                }
                Err(e) => panic!("{case}: expected a duplicate, got {e}"),
            }
            assert_eq!(events_of(inner.as_ref(), "a1").len() as u64, last + 1, "{case}: nothing appended again");
            // A new command id is still a new command.
            let fresh = reader.execute_idempotent("a1", "c-2", &deposit(1)).expect("new command");
            assert!(!fresh.duplicate, "{case}");
            assert_eq!(fresh.state.balance, balance + 1, "{case}");
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Snapshots

#[derive(Debug, Clone)]
enum Op {
    Command(usize, Cmd),
    SnapshotNow(usize),
}

fn command() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        1 => "[a-z]{1,5}".prop_map(|owner| Cmd::Open { owner }),
        6 => (0u64..50).prop_map(|amount| Cmd::Deposit { amount }),
        3 => (0u64..80).prop_map(|amount| Cmd::Withdraw { amount }),
        1 => Just(Cmd::WithdrawAll),
        3 => prop::collection::vec(0u64..20, 1..5).prop_map(|amounts| Cmd::DepositAll { amounts }),
        1 => Just(Cmd::Close),
    ]
}

const AGGREGATES: usize = 3;

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        12 => (0..AGGREGATES, command()).prop_map(|(a, c)| Op::Command(a, c)),
        1 => (0..AGGREGATES).prop_map(Op::SnapshotNow),
    ]
}

fn run_history(k: u64, opened: &[bool], ops: &[Op]) -> Result<(), TestCaseError> {
    let dir = tempfile::tempdir().expect("tmp");
    let inner = fast_backend(dir.path());
    let snap = Repository::<Account>::new(inner.clone()).with_snapshots(SnapshotPolicy::EveryEvents(k));
    let plain = Repository::<Account>::new(inner.clone());
    snap.ensure_topics().expect("topics");
    let ids: Vec<String> = (0..AGGREGATES).map(|a| format!("acc-{a}")).collect();
    let mut model = vec![Account::default(); AGGREGATES];
    let mut len = [0u64; AGGREGATES];
    let mut snapshot_taken = [false; AGGREGATES];
    let open_ops = opened.iter().enumerate().filter(|(_, &o)| o).map(|(a, _)| Op::Command(a, open("owner")));
    for op in open_ops.chain(ops.iter().cloned()) {
        match op {
            Op::Command(a, cmd) => {
                let decided = model[a].handle(&cmd);
                match (snap.execute(&ids[a], &cmd), decided) {
                    (Ok(done), Ok(events)) => {
                        prop_assert_eq!(&done.events, &events);
                        for e in &events {
                            model[a].apply(e);
                        }
                        len[a] += events.len() as u64;
                        prop_assert_eq!(&done.state, &model[a]);
                        prop_assert_eq!(done.version, len[a].checked_sub(1).map(Version));
                    }
                    (Err(CommandError::Domain(got)), Err(want)) => prop_assert_eq!(got, want),
                    (got, want) => prop_assert!(false, "{cmd:?}: repository {got:?}, model {want:?}"),
                }
            }
            Op::SnapshotNow(a) => {
                let v = snap.snapshot_now(&ids[a]).expect("snapshot now");
                prop_assert_eq!(v, len[a].checked_sub(1).map(Version));
                snapshot_taken[a] |= v.is_some();
            }
        }
    }
    for a in 0..AGGREGATES {
        let id = &ids[a];
        let events = stored_events::<Account>(inner.as_ref(), ACCOUNTS, id, &Upcasters::default());
        prop_assert_eq!(events.len() as u64, len[a]);
        let folded = fold::<Account>(&events);
        prop_assert_eq!(&folded, &model[a]);
        let version = len[a].checked_sub(1).map(Version);

        let from_snapshot = snap.load(id).expect("load");
        let from_events = snap.load_from_events(id).expect("load from events");
        let without = plain.load(id).expect("load without snapshots");
        for loaded in [&from_snapshot, &from_events, &without] {
            prop_assert_eq!(&loaded.state, &folded);
            prop_assert_eq!(loaded.version, version);
        }
        prop_assert_eq!(from_events.events_replayed, len[a]);
        prop_assert_eq!(without.snapshot_version, None);
        // The snapshots were really used: one exists once k events were written, and the tail
        // after it is shorter than k.
        prop_assert_eq!(from_snapshot.snapshot_version.is_some(), len[a] >= k || snapshot_taken[a]);
        prop_assert!(
            from_snapshot.events_replayed < k,
            "replayed {} events with k = {k}",
            from_snapshot.events_replayed
        );
        prop_assert_eq!(from_snapshot.snapshot_version.map_or(0, |s| s.0 + 1) + from_snapshot.events_replayed, len[a]);

        for v in 0..len[a] + 2 {
            let want = fold::<Account>(&events[..(v as usize + 1).min(events.len())]);
            for (name, repo) in [("with snapshots", &snap), ("without", &plain)] {
                let at = repo.load_at(id, At::Version(Version(v))).expect("load_at");
                prop_assert_eq!(&at.state, &want, "load_at(Version({})) {}", v, name);
                prop_assert_eq!(
                    at.version,
                    version.map(|last| last.min(Version(v))),
                    "load_at(Version({})) {}",
                    v,
                    name
                );
                prop_assert!(at.snapshot_version.is_none_or(|s| s <= Version(v)));
            }
        }
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 96, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn a_load_from_a_snapshot_equals_a_replay_of_every_event(
        k in 1u64..7,
        opened in prop::collection::vec(prop::bool::weighted(0.8), AGGREGATES),
        ops in prop::collection::vec(op(), 0..60),
    ) {
        run_history(k, &opened, &ops)?;
    }
}

/// The account under another snapshot schema version (same events, same state shape).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(transparent)]
struct AccountV2(Account);

impl Aggregate for AccountV2 {
    type Command = Cmd;
    type Event = Ev;
    type Error = AccountError;
    const TOPIC: &'static str = ACCOUNTS;
    const SNAPSHOT_VERSION: u32 = 2;

    fn handle(&self, command: &Cmd) -> Result<Vec<Ev>, AccountError> {
        self.0.handle(command)
    }

    fn apply(&mut self, event: &Ev) {
        self.0.apply(event)
    }
}

/// A snapshot record as `snapshot::encode` writes them, with the headers given.
fn snapshot_record(id: &str, data: &[u8], schema: Option<&str>, version: Option<&str>) -> EventData {
    let mut e = EventData::json(id, SNAPSHOT_TYPE, data.to_vec());
    if let Some(s) = schema {
        e.extra_headers.push((SCHEMA_VERSION_HEADER.into(), Some(s.as_bytes().to_vec())));
    }
    if let Some(v) = version {
        e.extra_headers.push((SNAPSHOT_VERSION_HEADER.into(), Some(v.as_bytes().to_vec())));
    }
    e
}

/// An account with 6 events and snapshots (every 2 events) at versions 1, 3 and 5.
fn account_with_snapshots(inner: &Arc<EmbeddedBackend>) -> Repository<Account> {
    let repo = Repository::<Account>::new(inner.clone()).with_snapshots(SnapshotPolicy::EveryEvents(2));
    repo.ensure_topics().expect("topics");
    for cmd in [open("ann"), deposit(10), deposit(20), withdraw(5), deposit(1), deposit(2)] {
        repo.execute("a1", &cmd).expect("command");
    }
    assert_eq!(repo.load("a1").expect("load").snapshot_version, Some(Version(5)));
    assert_eq!(read_stream(inner.as_ref(), SNAPSHOTS, "a1").len(), 3);
    repo
}

/// Checks that every load of `a1` equals the fold of its events, and that a command still
/// lands (at the right version, on the right state).
fn assert_loads_ignore_bad_snapshots(inner: &Arc<EmbeddedBackend>, repo: &Repository<Account>, case: &str) {
    let events = events_of(inner.as_ref(), "a1");
    let want = fold::<Account>(&events);
    let loaded = repo.load("a1").unwrap_or_else(|e| panic!("{case}: load failed: {e}"));
    assert_eq!(loaded.state, want, "{case}");
    assert_eq!(loaded.version, Some(Version(events.len() as u64 - 1)), "{case}");
    for v in 0..events.len() as u64 {
        let at = repo.load_at("a1", At::Version(Version(v))).unwrap_or_else(|e| panic!("{case}: load_at failed: {e}"));
        assert_eq!(at.state, fold::<Account>(&events[..=v as usize]), "{case}: load_at(Version({v}))");
        assert_eq!(at.version, Some(Version(v)), "{case}");
    }
    let done = repo.execute("a1", &deposit(100)).unwrap_or_else(|e| panic!("{case}: a command failed: {e}"));
    assert_eq!(done.attempts, 1, "{case}");
    assert_eq!(done.version, Some(Version(events.len() as u64)), "{case}");
    assert_eq!(done.state.balance, want.balance + 100, "{case}");
    assert_eq!(repo.load("a1").expect("load").state, done.state, "{case}");
}

#[test]
fn snapshots_that_do_not_decode_are_ignored() {
    let state = serde_json::to_vec(&Account { balance: 999_999, ..Account::default() }).expect("json");
    let cases: Vec<(&str, EventData)> = vec![
        ("not a snapshot record", EventData::json("junk-1", "Garbage", b"\x00\xff not json".to_vec())),
        ("not JSON", snapshot_record("junk-2", b"{not json", Some("1"), Some("5"))),
        ("JSON of another shape", snapshot_record("junk-3", br#"{"balance":"lots"}"#, Some("1"), Some("5"))),
        ("no version header", snapshot_record("junk-4", &state, Some("1"), None)),
        ("a bad version header", snapshot_record("junk-5", &state, Some("1"), Some("five"))),
        ("a bad schema header", snapshot_record("junk-6", &state, Some("zero"), Some("5"))),
        ("a newer schema version", snapshot_record("junk-7", &state, Some("2"), Some("5"))),
        ("an empty payload", snapshot_record("junk-8", b"", Some("1"), Some("5"))),
    ];
    for (case, junk) in cases {
        let dir = tempfile::tempdir().expect("tmp");
        let inner = backend(dir.path());
        let repo = account_with_snapshots(&inner);
        evident::blocking::wait(inner.append(SNAPSHOTS, "a1", ExpectedVersion::Any, &[junk]))
            .expect("write the junk snapshot");
        assert_loads_ignore_bad_snapshots(&inner, &repo, case);
    }
}

#[test]
fn a_snapshot_beyond_the_end_of_the_stream_is_ignored() {
    let dir = tempfile::tempdir().expect("tmp");
    let inner = backend(dir.path());
    let repo = account_with_snapshots(&inner);
    let state = serde_json::to_vec(&Account { balance: 999_999, ..Account::default() }).expect("json");
    evident::blocking::wait(inner.append(
        SNAPSHOTS,
        "a1",
        ExpectedVersion::Any,
        &[snapshot_record("beyond", &state, Some("1"), Some("99"))],
    ))
    .expect("write the snapshot");
    assert_loads_ignore_bad_snapshots(&inner, &repo, "a snapshot at version 99 of a 6-event stream");
}

#[test]
fn snapshots_of_another_schema_version_are_ignored_and_replaced() {
    let dir = tempfile::tempdir().expect("tmp");
    let inner = backend(dir.path());
    let v1 = account_with_snapshots(&inner);
    let v2 = Repository::<AccountV2>::new(inner.clone()).with_snapshots(SnapshotPolicy::EveryEvents(2));
    let events = events_of(inner.as_ref(), "a1");
    let loaded = v2.load("a1").expect("v2 loads");
    assert_eq!(loaded.snapshot_version, None, "v1 snapshots are not read as v2");
    assert_eq!(loaded.state.0, fold::<Account>(&events));
    assert_eq!(loaded.events_replayed, 6);
    for v in 0..6u64 {
        let at = v2.load_at("a1", At::Version(Version(v))).expect("v2 load_at");
        assert_eq!(at.snapshot_version, None);
        assert_eq!(at.state.0, fold::<Account>(&events[..=v as usize]));
    }
    // The new code snapshots at the current version (where a v1 snapshot exists already):
    // the v2 snapshot must be stored and used, not mistaken for the v1 one.
    assert_eq!(v2.snapshot_now("a1").expect("snapshot v2"), Some(Version(5)));
    let loaded = v2.load("a1").expect("v2 loads");
    assert_eq!(loaded.snapshot_version, Some(Version(5)), "v2 uses its own snapshot");
    assert_eq!(loaded.events_replayed, 0);
    // The old code, in turn, ignores the v2 snapshot and replays.
    let loaded = v1.load("a1").expect("v1 loads");
    assert_eq!(loaded.snapshot_version, None);
    assert_eq!(loaded.state, fold::<Account>(&events));
    // Commands under the new code write v2 snapshots by policy.
    let done = v2.execute("a1", &deposit(4)).expect("command");
    assert_eq!(done.version, Some(Version(6)));
    v2.execute("a1", &deposit(4)).expect("command");
    let loaded = v2.load("a1").expect("v2 loads");
    assert_eq!(loaded.snapshot_version, Some(Version(7)));
    assert_eq!(loaded.state.0, fold::<Account>(&events_of(inner.as_ref(), "a1")));
}

// ---------------------------------------------------------------------------------------------
// Temporal queries

#[test]
fn load_at_a_time_sees_the_events_stamped_until_then() {
    let dir = tempfile::tempdir().expect("tmp");
    let clock = Arc::new(ManualClock::new(1_000));
    let inner = backend_with_clock(dir.path(), clock.clone());
    let plain = Repository::<Account>::new(inner.clone());
    let snap = Repository::<Account>::new(inner.clone()).with_snapshots(SnapshotPolicy::EveryEvents(1));
    snap.ensure_topics().expect("topics");
    snap.execute("a1", &open("ann")).expect("open"); // v0 at 1000
    clock.set(2_000);
    snap.execute("a1", &deposit(10)).expect("deposit"); // v1 at 2000
    clock.set(3_000);
    snap.execute("a1", &Cmd::DepositAll { amounts: vec![20, 30] }).expect("deposits"); // v2, v3 at 3000
    clock.set(4_000);
    snap.execute("a1", &withdraw(5)).expect("withdraw"); // v4 at 4000
    clock.set(5_000);

    let stored = read_stream(inner.as_ref(), ACCOUNTS, "a1");
    let stamps: Vec<i64> = stored.iter().map(|e| e.timestamp_ms).collect();
    assert_eq!(stamps, [1_000, 2_000, 3_000, 3_000, 4_000], "events carry the manual clock's time");

    // (time, version expected, balance expected)
    let cases: [(i64, Option<Version>, u64); 10] = [
        (i64::MIN, None, 0),
        (0, None, 0),
        (999, None, 0),
        (1_000, Some(Version(0)), 0),
        (1_999, Some(Version(0)), 0),
        (2_000, Some(Version(1)), 10),
        (2_999, Some(Version(1)), 10),
        (3_000, Some(Version(3)), 60),
        (4_000, Some(Version(4)), 55),
        (i64::MAX, Some(Version(4)), 55),
    ];
    for (t, version, balance) in cases {
        let want = fold::<Account>(
            &evident::repository::decode_all::<Account>(
                &stored.iter().filter(|e| e.timestamp_ms <= t).cloned().collect::<Vec<_>>(),
                &Upcasters::default(),
            )
            .expect("decode"),
        );
        for repo in [&plain, &snap] {
            let at = repo.load_at("a1", At::TimeMs(t)).expect("load_at time");
            assert_eq!(at.version, version, "as of {t}");
            assert_eq!(at.state.balance, balance, "as of {t}");
            assert_eq!(at.state, want, "as of {t}");
            assert_eq!(at.snapshot_version, None, "a time query does not start from a snapshot");
            assert_eq!(at.state.owner.is_some(), t >= 1_000);
        }
    }
    let ts = jiff::Timestamp::from_millisecond(2_500).expect("timestamp");
    assert_eq!(At::time(ts), At::TimeMs(2_500));
    assert_eq!(snap.load_at("a1", At::time(ts)).expect("load_at").state.balance, 10);
    // A stream that does not exist is empty at any time.
    let none = plain.load_at("nobody", At::TimeMs(i64::MAX)).expect("load_at");
    assert_eq!((none.version, none.state), (None, Account::default()));
}

// ---------------------------------------------------------------------------------------------
// Upcasters

/// A wallet whose deposit event went through three shapes:
/// v1 `{"amount": 5}` (whole euros), v2 `{"amount": 5, "currency": "USD"}`, v3 (current)
/// `{"cents": 500, "currency": "USD"}`.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
struct Wallet {
    cents: BTreeMap<String, u64>,
    labels: Vec<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
enum WalletEvent {
    Deposited { cents: u64, currency: String },
    Labelled { label: String },
}

impl DomainEvent for WalletEvent {
    fn schema_version(event_type: &str) -> u32 {
        if event_type == "Deposited" {
            3
        } else {
            1
        }
    }
}

impl Aggregate for Wallet {
    type Command = WalletEvent;
    type Event = WalletEvent;
    type Error = String;
    const TOPIC: &'static str = "wallets";

    fn handle(&self, command: &WalletEvent) -> Result<Vec<WalletEvent>, String> {
        Ok(vec![command.clone()])
    }

    fn apply(&mut self, event: &WalletEvent) {
        match event {
            WalletEvent::Deposited { cents, currency } => *self.cents.entry(currency.clone()).or_default() += cents,
            WalletEvent::Labelled { label } => self.labels.push(label.clone()),
        }
    }
}

fn wallet_upcasters(with_v2_to_v3: bool) -> Upcasters {
    let up = Upcasters::new().register("Deposited", 1, |mut v| {
        v["currency"] = json!("EUR");
        Ok(v)
    });
    if !with_v2_to_v3 {
        return up;
    }
    up.register("Deposited", 2, |v| {
        let amount = v["amount"].as_u64().ok_or("amount is not a number")?;
        Ok(json!({"cents": amount * 100, "currency": v["currency"]}))
    })
}

/// An old-code event: type, payload, and the schema version header (None: absent, i.e. 1).
fn old_event(id: &str, event_type: &str, payload: serde_json::Value, schema: Option<u32>) -> EventData {
    let mut e = EventData::json(id, event_type, serde_json::to_vec(&payload).expect("json"));
    if let Some(s) = schema {
        e.extra_headers.push((SCHEMA_VERSION_HEADER.into(), Some(s.to_string().into_bytes())));
    }
    e
}

#[test]
fn three_generations_of_an_event_load_as_the_current_one() {
    let dir = tempfile::tempdir().expect("tmp");
    let inner = backend(dir.path());
    evident::blocking::wait(inner.ensure_topic("wallets", TopicSpec::default())).expect("topic");
    // What the first and second versions of the code wrote.
    let history = [
        old_event("e0", "Deposited", json!({"amount": 5}), None),
        old_event("e1", "Labelled", json!({"label": "savings"}), None),
        old_event("e2", "Deposited", json!({"amount": 7}), Some(1)),
        old_event("e3", "Deposited", json!({"amount": 2, "currency": "USD"}), Some(2)),
    ];
    evident::blocking::wait(inner.append("wallets", "w1", ExpectedVersion::NoStream, &history[..3]))
        .expect("v1 events");
    evident::blocking::wait(inner.append(
        "wallets",
        "w1",
        ExpectedVersion::Exact(evident_core::Version(2)),
        &history[3..],
    ))
    .expect("v2 event");

    let repo = Repository::<Wallet>::new(inner.clone()).with_upcasters(wallet_upcasters(true));
    // The current code appends a v3 event, stamped as such.
    let done =
        repo.execute("w1", &WalletEvent::Deposited { cents: 150, currency: "USD".into() }).expect("a v3 deposit");
    assert_eq!(done.version, Some(Version(4)));
    let stored = read_stream(inner.as_ref(), "wallets", "w1");
    assert_eq!(stored[4].header_str(SCHEMA_VERSION_HEADER), Some("3"));
    assert_eq!(stored[4].json::<serde_json::Value>().expect("json"), json!({"cents": 150, "currency": "USD"}));

    let want = Wallet {
        cents: BTreeMap::from([("EUR".to_string(), 1_200), ("USD".to_string(), 350)]),
        labels: vec!["savings".into()],
    };
    assert_eq!(done.state, want, "the command's state was built from the upcast history");
    assert_eq!(repo.load("w1").expect("load").state, want);
    assert_eq!(repo.load_from_events("w1").expect("load").state, want);
    let events = evident::repository::decode_all::<Wallet>(&stored, &wallet_upcasters(true)).expect("decode");
    assert_eq!(
        events[..4],
        [
            WalletEvent::Deposited { cents: 500, currency: "EUR".into() },
            WalletEvent::Labelled { label: "savings".into() },
            WalletEvent::Deposited { cents: 700, currency: "EUR".into() },
            WalletEvent::Deposited { cents: 200, currency: "USD".into() },
        ]
    );
    let at = repo.load_at("w1", At::Version(Version(2))).expect("load_at");
    assert_eq!(at.state.cents, BTreeMap::from([("EUR".to_string(), 1_200)]));

    // Snapshots hold the current shape; loading from one after the upcast history agrees.
    let snap = Repository::<Wallet>::new(inner.clone())
        .with_upcasters(wallet_upcasters(true))
        .with_snapshots(SnapshotPolicy::EveryEvents(1));
    assert_eq!(snap.snapshot_now("w1").expect("snapshot"), Some(Version(4)));
    let loaded = snap.load("w1").expect("load");
    assert_eq!((loaded.snapshot_version, &loaded.state), (Some(Version(4)), &want));

    // A missing step is a decode error, on load and on command, never a silent skip.
    let missing = Repository::<Wallet>::new(inner.clone()).with_upcasters(wallet_upcasters(false));
    match missing.load("w1") {
        Err(Error::Decode(msg)) => assert!(msg.contains("no upcaster"), "{msg}"),
        other => panic!("expected a decode error, got {other:?}"),
    }
    match missing.load_from_events("w1") {
        Err(Error::Decode(_)) => {}
        other => panic!("expected a decode error, got {other:?}"),
    }
    match missing.execute("w1", &WalletEvent::Labelled { label: "x".into() }) {
        Err(CommandError::Store(Error::Decode(_))) => {}
        other => panic!("expected a decode error, got {other:?}"),
    }
    match Repository::<Wallet>::new(inner.clone()).load("w1") {
        Err(Error::Decode(_)) => {}
        other => panic!("no upcasters at all: expected a decode error, got {other:?}"),
    }
    assert_eq!(read_stream(inner.as_ref(), "wallets", "w1").len(), 5, "the failed command appended nothing");
}

#[test]
fn an_event_newer_than_the_code_or_an_upcaster_that_fails_is_a_decode_error() {
    let dir = tempfile::tempdir().expect("tmp");
    let inner = backend(dir.path());
    evident::blocking::wait(inner.ensure_topic("wallets", TopicSpec::default())).expect("topic");
    let repo = Repository::<Wallet>::new(inner.clone()).with_upcasters(wallet_upcasters(true));
    evident::blocking::wait(inner.append(
        "wallets",
        "newer",
        ExpectedVersion::Any,
        &[old_event("e0", "Deposited", json!({"cents": 1}), Some(4))],
    ))
    .expect("append");
    match repo.load("newer") {
        Err(Error::Decode(msg)) => assert!(msg.contains("newer"), "{msg}"),
        other => panic!("expected a decode error, got {other:?}"),
    }
    evident::blocking::wait(inner.append(
        "wallets",
        "bad",
        ExpectedVersion::Any,
        &[old_event("e0", "Deposited", json!({"amount": "x"}), None)],
    ))
    .expect("append");
    match repo.load("bad") {
        Err(Error::Decode(msg)) => assert!(msg.contains("not a number"), "{msg}"),
        other => panic!("expected a decode error, got {other:?}"),
    }
}
