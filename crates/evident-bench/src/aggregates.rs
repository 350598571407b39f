//! Aggregate loads through the library (`evident`'s `Repository`, called through the blocking
//! facade `evident::blocking` as a synchronous program calls it) on the embedded backend: one
//! bank account whose stream holds 10,000 events, loaded by replaying every event
//! (`Repository::load_from_events`) and from a snapshot at its last version (`Repository::load`
//! with `SnapshotPolicy::EveryEvents(100)`, so the snapshot topic is read), then from that
//! snapshot plus a 100-event tail.
//!
//! The stream is written with the backend's `append` in batches of 1,000 events encoded the way
//! the repository encodes them (`evident::event::encode`, `EventData::json`, a `ce_source`, a
//! UUID-shaped id), which is faster to set up than 10,000 commands. Every load is checked: the
//! state's balance and the version must be the expected ones, and the snapshot loads must have
//! started from the snapshot and replayed only the tail.

use std::path::Path;
use std::sync::Arc;
use std::time::{Duration, Instant};

use ::evident::event::encode;
use ::evident::{
    Aggregate, Backend, DomainEvent, EmbeddedBackend, EventData, ExpectedVersion, Loaded, SnapshotPolicy, Version,
};
use anyhow::{ensure, Context, Result};
use serde::{Deserialize, Serialize};

use crate::payload;
use crate::report::{num, Key, Measurement, System};
use crate::stats::Latencies;

/// Events in the aggregate's stream (the target is defined for this length).
pub const EVENTS: u64 = 10_000;
/// Events appended after the snapshot for the tail workload.
pub const TAIL: u64 = 100;
/// Events per append while writing the stream.
const APPEND_BATCH: u64 = 1000;
/// The aggregate's id (its stream key).
const ACCOUNT: &str = "acct-000001";

/// What can happen to a bank account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    /// The account was opened.
    AccountOpened {
        /// Who owns it.
        owner: String,
    },
    /// Money came in.
    MoneyDeposited {
        /// Amount, in cents.
        amount: u64,
    },
    /// Money went out.
    MoneyWithdrawn {
        /// Amount, in cents.
        amount: u64,
    },
}

impl DomainEvent for AccountEvent {}

/// The account's state, rebuilt from its events (serialized whole in snapshots).
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Owner (None until opened).
    pub owner: Option<String>,
    /// Balance, in cents.
    pub balance: u64,
    /// Deposits so far.
    pub deposits: u64,
    /// Withdrawals so far.
    pub withdrawals: u64,
}

/// The one command the bench's account takes (the workload only loads).
#[derive(Debug, Clone)]
pub struct Deposit(pub u64);

impl Aggregate for Account {
    type Command = Deposit;
    type Event = AccountEvent;
    type Error = String;
    const TOPIC: &'static str = "bench-accounts";

    fn handle(&self, command: &Deposit) -> Result<Vec<AccountEvent>, String> {
        match (self.owner.is_some(), command.0) {
            (false, _) => Err("the account is not open".into()),
            (true, 0) => Err("amounts must be positive".into()),
            (true, amount) => Ok(vec![AccountEvent::MoneyDeposited { amount }]),
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::AccountOpened { owner } => self.owner = Some(owner.clone()),
            AccountEvent::MoneyDeposited { amount } => {
                self.balance += amount;
                self.deposits += 1;
            }
            AccountEvent::MoneyWithdrawn { amount } => {
                self.balance -= amount;
                self.withdrawals += 1;
            }
        }
    }
}

/// Event `n` of account `account`'s history: opened first, then mostly deposits with a small
/// withdrawal every fifth event (never overdrawn: a withdrawal is at most 50 cents and every
/// deposit at least 100). Also used by the projections phase.
pub fn nth_event(account: u64, n: u64) -> AccountEvent {
    if n == 0 {
        AccountEvent::AccountOpened { owner: format!("owner-{account:06}") }
    } else if n.is_multiple_of(5) {
        AccountEvent::MoneyWithdrawn { amount: 1 + (account + n) % 50 }
    } else {
        AccountEvent::MoneyDeposited { amount: 100 + (account * 31 + n * 7919) % 10_000 }
    }
}

/// The signed change event `e` makes to a balance.
pub fn delta(e: &AccountEvent) -> i64 {
    match e {
        AccountEvent::AccountOpened { .. } => 0,
        AccountEvent::MoneyDeposited { amount } => *amount as i64,
        AccountEvent::MoneyWithdrawn { amount } => -(*amount as i64),
    }
}

/// `e` as the repository would append it (type and payload from the serde variant, a
/// UUID-shaped id, the repository's `ce_source`).
pub fn event_data(e: &AccountEvent, writer: u64, n: u64) -> Result<EventData> {
    let enc = encode(e)?;
    let mut data = EventData::json(payload::event_id(writer, n), enc.event_type, enc.data);
    data.source = Some(format!("/evident/{}", Account::TOPIC));
    Ok(data)
}

/// Appends events `from..to` of the account's history to its stream, in batches.
fn append_range(backend: &dyn Backend, from: u64, to: u64) -> Result<()> {
    let mut n = from;
    while n < to {
        let end = (n + APPEND_BATCH).min(to);
        let events = (n..end).map(|i| event_data(&nth_event(1, i), 1, i)).collect::<Result<Vec<_>>>()?;
        let expected = if n == 0 { ExpectedVersion::NoStream } else { ExpectedVersion::Exact(Version(n - 1)) };
        let appended = evident::blocking::wait(backend.append(Account::TOPIC, ACCOUNT, expected, &events))?;
        ensure!(
            appended.last_version.0 == end - 1,
            "appended up to version {}, expected {}",
            appended.last_version,
            end - 1
        );
        n = end;
    }
    Ok(())
}

/// The state after the first `events` events.
fn expected_state(events: u64) -> Account {
    let mut a = Account::default();
    for n in 0..events {
        a.apply(&nth_event(1, n));
    }
    a
}

/// Runs `load` `runs` times (after two unmeasured warm-up loads), checking each result.
fn time_loads(
    runs: usize,
    load: impl Fn() -> ::evident::Result<Loaded<Account>>,
    check: impl Fn(&Loaded<Account>) -> Result<()>,
) -> Result<(Latencies, Duration)> {
    for _ in 0..2 {
        check(&load()?)?;
    }
    let mut lat = Latencies::with_capacity(runs);
    let mut total = Duration::ZERO;
    for _ in 0..runs {
        let t = Instant::now();
        let loaded = load()?;
        let d = t.elapsed();
        check(&loaded)?;
        lat.push(d);
        total += d;
    }
    Ok((lat, total))
}

/// Writes the stream and its snapshot in a new embedded log in `dir`, then measures the full
/// replay (`replay_runs` loads) and the snapshot loads (`snapshot_runs` each).
pub fn run(dir: &Path, replay_runs: usize, snapshot_runs: usize) -> Result<Vec<Measurement>> {
    let backend =
        EmbeddedBackend::open(dir).with_context(|| format!("opening the embedded log in {}", dir.display()))?;
    let backend: Arc<dyn Backend> = Arc::new(backend);
    let repo = ::evident::blocking::Repository::<Account>::new(backend.clone())
        .with_snapshots(SnapshotPolicy::EveryEvents(100));
    repo.ensure_topics()?;
    let t = Instant::now();
    append_range(backend.as_ref(), 0, EVENTS)?;
    eprintln!("    wrote {} events to one stream in {:.2} s", num(EVENTS as f64), t.elapsed().as_secs_f64());
    let snapshot = repo.snapshot_now(ACCOUNT)?;
    ensure!(
        snapshot == Some(evident::Version(EVENTS - 1)),
        "snapshot taken at {snapshot:?}, expected version {}",
        EVENTS - 1
    );
    let state = expected_state(EVENTS);
    let check = |tail: Option<u64>, events: u64, state: &Account| {
        let state = state.clone();
        move |l: &Loaded<Account>| -> Result<()> {
            ensure!(l.state == state, "loaded state {:?}, expected {state:?}", l.state);
            ensure!(
                l.version == Some(evident::Version(events - 1)),
                "loaded version {:?}, expected {}",
                l.version,
                events - 1
            );
            match tail {
                None => ensure!(
                    l.snapshot_version.is_none() && l.events_replayed == events,
                    "full replay started from {:?} and replayed {} events",
                    l.snapshot_version,
                    l.events_replayed
                ),
                Some(tail) => ensure!(
                    l.snapshot_version == Some(evident::Version(EVENTS - 1)) && l.events_replayed == tail,
                    "snapshot load started from {:?} and replayed {} events, expected the snapshot at {} and {tail}",
                    l.snapshot_version,
                    l.events_replayed,
                    EVENTS - 1
                ),
            }
            Ok(())
        }
    };
    let mut out = Vec::new();

    let (mut lat, total) = time_loads(replay_runs, || repo.load_from_events(ACCOUNT), check(None, EVENTS, &state))?;
    let (p50, p99) = lat.p50_p99();
    let events_per_s = (EVENTS as f64 * replay_runs as f64) / total.as_secs_f64();
    out.push(
        Measurement::new(
            System::Evident,
            Key::AggregateLoad { snapshot: false, tail: 0 },
            format!("load_from_events: full replay of {} events (read, decode, apply)", num(EVENTS as f64)),
            events_per_s,
            "events/s",
        )
        .latency(p50, p99)
        .note(format!(
            "{replay_runs} loads; p50/p99 per load; {} loads/s; {:.2} µs per event at p50",
            num(replay_runs as f64 / total.as_secs_f64()),
            p50.as_secs_f64() * 1e6 / EVENTS as f64
        )),
    );

    let snapshot_row = |tail: u64, events: u64, state: &Account, out: &mut Vec<Measurement>| -> Result<()> {
        let (mut lat, total) = time_loads(snapshot_runs, || repo.load(ACCOUNT), check(Some(tail), events, state))?;
        let (p50, p99) = lat.p50_p99();
        out.push(
            Measurement::new(
                System::Evident,
                Key::AggregateLoad { snapshot: true, tail },
                format!(
                    "load: snapshot at version {} + {} tail event{}",
                    num((EVENTS - 1) as f64),
                    tail,
                    if tail == 1 { "" } else { "s" }
                ),
                snapshot_runs as f64 / total.as_secs_f64(),
                "loads/s",
            )
            .latency(p50, p99)
            .note(format!("{snapshot_runs} loads; p50/p99 per load")),
        );
        Ok(())
    };
    snapshot_row(0, EVENTS, &state, &mut out)?;
    append_range(backend.as_ref(), EVENTS, EVENTS + TAIL)?;
    snapshot_row(TAIL, EVENTS + TAIL, &expected_state(EVENTS + TAIL), &mut out)?;
    Ok(out)
}
