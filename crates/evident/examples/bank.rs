//! The bank example: accounts as event-sourced aggregates (AccountCreated, MoneyDeposited,
//! MoneyWithdrawn; no overdraft), a balances read model in SQLite, snapshots every 100 events,
//! and the state of an account as of a past time.
//!
//! Run it on the embedded log (a fresh directory, or `--data-dir DIR` to keep it):
//!
//! ```text
//! cargo run --release -p evident --example bank
//! ```
//!
//! or against a running server (`cargo run --release -- serve` in another terminal):
//!
//! ```text
//! cargo run --release -p evident --example bank -- --server http://127.0.0.1:8080
//! ```
//!
//! or on an Apache Kafka cluster (docs/cluster.md):
//!
//! ```text
//! cargo run --release -p evident --features kafka --example bank -- --kafka 127.0.0.1:9092
//! ```
//!
//! The domain code below is all an application writes; the same code runs on every backend.

// Amounts are cents, written with the decimal point as an underscore: 100_00 is 100.00.
#![allow(clippy::inconsistent_digit_grouping)]
use std::path::PathBuf;
use std::sync::Arc;

use clap::Parser;
use evident::blocking::ProjectionRunner;
use evident::blocking::Repository;
use evident::projection::{HandlerError, Projection, Sink, Subscription, Tx};
use evident::{
    Aggregate, At, Backend, CommandError, DomainEvent, EmbeddedBackend, HttpBackend, RecordedEvent, SnapshotPolicy,
};
use serde::{Deserialize, Serialize};

// ---- The domain -------------------------------------------------------------------------

/// What can happen to an account.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub enum AccountEvent {
    /// The account was opened.
    AccountCreated {
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

/// What can be asked of an account.
#[derive(Debug, Clone)]
pub enum AccountCommand {
    /// Open it.
    Open {
        /// Owner.
        owner: String,
    },
    /// Deposit cents.
    Deposit(u64),
    /// Withdraw cents.
    Withdraw(u64),
}

/// Why a command is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// Open twice.
    #[error("the account is already open")]
    AlreadyOpen,
    /// Not open yet.
    #[error("the account is not open")]
    NotOpen,
    /// A zero amount.
    #[error("amounts must be positive")]
    ZeroAmount,
    /// Would overdraw.
    #[error("insufficient funds: balance {balance} cents, asked {asked} cents")]
    InsufficientFunds {
        /// Balance.
        balance: u64,
        /// Amount asked.
        asked: u64,
    },
}

/// An account's state, rebuilt from its events.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Account {
    /// Owner (None until opened).
    pub owner: Option<String>,
    /// Balance, in cents.
    pub balance: u64,
}

impl Aggregate for Account {
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    const TOPIC: &'static str = "bank-account-events";

    fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::Open { owner } => match self.owner {
                Some(_) => Err(AccountError::AlreadyOpen),
                None => Ok(vec![AccountEvent::AccountCreated { owner: owner.clone() }]),
            },
            _ if self.owner.is_none() => Err(AccountError::NotOpen),
            AccountCommand::Deposit(0) | AccountCommand::Withdraw(0) => Err(AccountError::ZeroAmount),
            AccountCommand::Deposit(amount) => Ok(vec![AccountEvent::MoneyDeposited { amount: *amount }]),
            AccountCommand::Withdraw(amount) if *amount > self.balance => {
                Err(AccountError::InsufficientFunds { balance: self.balance, asked: *amount })
            }
            AccountCommand::Withdraw(amount) => Ok(vec![AccountEvent::MoneyWithdrawn { amount: *amount }]),
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        match event {
            AccountEvent::AccountCreated { owner } => self.owner = Some(owner.clone()),
            AccountEvent::MoneyDeposited { amount } => self.balance += amount,
            AccountEvent::MoneyWithdrawn { amount } => self.balance -= amount,
        }
    }
}

/// The balances read model: one row per account.
pub struct Balances;

impl Projection for Balances {
    fn name(&self) -> &str {
        "bank-balances"
    }
    fn subscription(&self) -> Subscription {
        Subscription::topic(Account::TOPIC)
    }
    fn tables(&self) -> Vec<String> {
        vec!["balances".into()]
    }
    fn setup(&mut self, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        tx.batch(
            "CREATE TABLE IF NOT EXISTS {balances} (
                account TEXT PRIMARY KEY, owner TEXT, balance BIGINT NOT NULL, transactions BIGINT NOT NULL)",
        )?;
        Ok(())
    }
    fn handle(&mut self, event: &RecordedEvent, tx: &mut Tx<'_>) -> Result<(), HandlerError> {
        let account = event.key.as_deref().ok_or("an account event without a key")?;
        let (owner, delta): (Option<String>, i64) =
            match evident::event::decode::<AccountEvent>(event, &evident::Upcasters::default())? {
                AccountEvent::AccountCreated { owner } => (Some(owner), 0),
                AccountEvent::MoneyDeposited { amount } => (None, i64::try_from(amount)?),
                AccountEvent::MoneyWithdrawn { amount } => (None, -i64::try_from(amount)?),
            };
        tx.execute(
            "INSERT INTO {balances} (account, owner, balance, transactions) VALUES ($1, $2, $3, 1)
             ON CONFLICT (account) DO UPDATE SET
                owner = COALESCE(excluded.owner, {balances}.owner),
                balance = {balances}.balance + excluded.balance,
                transactions = {balances}.transactions + 1",
            &[&account, &owner, &delta],
        )?;
        Ok(())
    }
}

// ---- The program ------------------------------------------------------------------------

#[derive(Parser, Debug)]
#[command(about = "evident's bank example")]
struct Args {
    /// Use an evident server at this URL instead of the embedded log.
    #[arg(long, conflicts_with = "kafka")]
    server: Option<String>,
    /// Use an Apache Kafka cluster (`host:port,...`) instead of the embedded log; its mirror
    /// goes under the data directory (docs/cluster.md). Needs the `kafka` feature.
    #[arg(long)]
    kafka: Option<String>,
    /// Keep the embedded log and the read model here (default: a fresh temporary directory).
    #[arg(long)]
    data_dir: Option<PathBuf>,
}

/// What a run found, for the test below.
#[derive(Debug)]
pub struct Report {
    /// Alice's balance now.
    pub alice: u64,
    /// Alice's balance as of the moment before her withdrawal.
    pub alice_before_withdrawal: u64,
    /// Bob's balance, loaded from a snapshot.
    pub bob: u64,
    /// The snapshot version Bob's load started from.
    pub bob_snapshot: Option<evident::Version>,
    /// Events replayed after it.
    pub bob_replayed: u64,
    /// Balances in the read model, by account.
    pub balances: Vec<(String, i64)>,
}

/// Runs the example on `backend`, with the read model in `sink`. Account ids carry `run` so
/// that runs against one server do not collide.
pub fn run(backend: Arc<dyn Backend>, sink: Sink, run: &str) -> Result<Report, Box<dyn std::error::Error>> {
    let accounts = Repository::<Account>::new(backend.clone()).with_snapshots(SnapshotPolicy::EveryEvents(100));
    accounts.ensure_topics()?;
    let alice = format!("alice-{run}");
    let bob = format!("bob-{run}");

    accounts.execute(&alice, &AccountCommand::Open { owner: "Alice".into() })?;
    accounts.execute(&alice, &AccountCommand::Deposit(100_00))?;
    accounts.execute(&alice, &AccountCommand::Deposit(20_00))?;
    // The log stamps events with milliseconds; step past this one so "before" is well defined.
    std::thread::sleep(std::time::Duration::from_millis(5));
    let before_withdrawal = jiff::Timestamp::now();
    std::thread::sleep(std::time::Duration::from_millis(5));
    let done = accounts.execute(&alice, &AccountCommand::Withdraw(30_00))?;
    println!("alice: balance {} after {} events", cents(done.state.balance), done.version.map_or(0, |v| v.0 + 1));

    match accounts.execute(&alice, &AccountCommand::Withdraw(1_000_00)) {
        Err(CommandError::Domain(e)) => println!("alice: withdrawal of 1,000.00 refused: {e}"),
        other => return Err(format!("an overdraft was not refused: {other:?}").into()),
    }
    // A command retried with the same id (a client that lost the reply) is stored once.
    let first = accounts.execute_idempotent(&alice, "deposit-42", &AccountCommand::Deposit(5_00))?;
    let again = accounts.execute_idempotent(&alice, "deposit-42", &AccountCommand::Deposit(5_00))?;
    println!("alice: command deposit-42 applied once (retry duplicate = {})", again.duplicate && !first.duplicate);

    let past = accounts.load_at(&alice, At::time(before_withdrawal))?;
    println!("alice: balance as of {before_withdrawal} was {}", cents(past.state.balance));

    accounts.execute(&bob, &AccountCommand::Open { owner: "Bob".into() })?;
    for i in 0..249u64 {
        accounts.execute(&bob, &AccountCommand::Deposit(1_00 + i % 7))?;
    }
    let loaded = accounts.load(&bob)?;
    println!(
        "bob: balance {} from the snapshot at version {:?} plus {} events (250 in the stream)",
        cents(loaded.state.balance),
        loaded.snapshot_version,
        loaded.events_replayed
    );

    let mut balances = ProjectionRunner::new(backend, sink, Balances)?;
    let caught_up = balances.catch_up()?;
    println!(
        "balances projection: {} events applied, checkpoint at sequence {}",
        caught_up.applied, caught_up.position
    );
    let rows = balances
        .query("SELECT account, balance FROM {balances} WHERE account IN ($1, $2) ORDER BY account", &[&alice, &bob])?;
    let balances: Vec<(String, i64)> = rows
        .iter()
        .map(|r| (r[0].as_str().unwrap_or_default().to_string(), r[1].as_i64().unwrap_or_default()))
        .collect();
    for (account, balance) in &balances {
        println!("  {account:<24} {}", cents(u64::try_from(*balance).unwrap_or(0)));
    }
    Ok(Report {
        alice: accounts.load(&alice)?.state.balance,
        alice_before_withdrawal: past.state.balance,
        bob: loaded.state.balance,
        bob_snapshot: loaded.snapshot_version,
        bob_replayed: loaded.events_replayed,
        balances,
    })
}

fn cents(c: u64) -> String {
    format!("{}.{:02}", c / 100, c % 100)
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let _temp;
    let dir = match args.data_dir {
        Some(d) => d,
        None => {
            _temp = tempfile::tempdir()?;
            _temp.path().to_path_buf()
        }
    };
    std::fs::create_dir_all(&dir)?;
    let run_id = uuid_like();
    let backend: Arc<dyn Backend> = match (&args.server, &args.kafka) {
        (Some(url), _) => Arc::new(HttpBackend::new(url.as_str())?),
        #[cfg(feature = "kafka")]
        (None, Some(bootstrap)) => {
            Arc::new(evident::KafkaBackend::open(evident::KafkaConfig::new(bootstrap.as_str(), dir.join("mirror")))?)
        }
        #[cfg(not(feature = "kafka"))]
        (None, Some(_)) => return Err("--kafka needs the library's `kafka` feature (--features kafka)".into()),
        (None, None) => Arc::new(EmbeddedBackend::open(dir.join("log"))?),
    };
    let sink = Sink::sqlite(dir.join("read-model.sqlite"))?;
    run(backend, sink, &run_id)?;
    Ok(())
}

/// A short id distinguishing this run's accounts.
fn uuid_like() -> String {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos());
    format!("{:x}", nanos & 0xffff_ffff)
}

#[cfg(test)]
mod tests {
    use super::*;
    use evident::testing::AggregateTest;

    #[test]
    fn no_overdraft() {
        AggregateTest::<Account>::given([AccountEvent::AccountCreated { owner: "a".into() }])
            .when(AccountCommand::Withdraw(1))
            .then_error(|e| matches!(e, AccountError::InsufficientFunds { balance: 0, asked: 1 }));
        let state = AggregateTest::<Account>::given([
            AccountEvent::AccountCreated { owner: "a".into() },
            AccountEvent::MoneyDeposited { amount: 10 },
        ])
        .when(AccountCommand::Withdraw(10))
        .then([AccountEvent::MoneyWithdrawn { amount: 10 }]);
        assert_eq!(state.balance, 0);
    }

    #[test]
    fn the_example_runs_on_the_embedded_log() {
        let dir = tempfile::tempdir().expect("tempdir");
        let backend: Arc<dyn Backend> = Arc::new(EmbeddedBackend::open(dir.path().join("log")).expect("open"));
        let sink = Sink::sqlite(dir.path().join("rm.sqlite")).expect("sink");
        let report = run(backend, sink, "t").expect("runs");
        assert_eq!(report.alice, 95_00);
        assert_eq!(report.alice_before_withdrawal, 120_00);
        let bob: u64 = (0..249u64).map(|i| 1_00 + i % 7).sum();
        assert_eq!(report.bob, bob);
        // 250 events, snapshots at 100 and 200 events: the latest covers version 199.
        assert_eq!(report.bob_snapshot, Some(evident::Version(199)));
        assert_eq!(report.bob_replayed, 50);
        assert_eq!(report.balances, vec![("alice-t".to_string(), 95_00), ("bob-t".to_string(), bob as i64)]);
    }
}
