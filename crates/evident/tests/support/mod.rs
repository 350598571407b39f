//! Shared helpers of the `evident` library's integration tests: a small bank [`Account`]
//! aggregate (open, deposit, withdraw some or all, several deposits at once, close), embedded backends on
//! temporary directories (with the system clock or a [`ManualClock`]), and readers that fold a
//! stream's stored events without the repository, to compare the repository's answers with.

// Each test file uses its own part of the helpers.
#![allow(dead_code)]

#[cfg(feature = "kafka")]
pub mod kafka;

use std::path::Path;
use std::sync::Arc;

use evident::backend::{for_each_in_stream, StreamQuery};
use evident::{Aggregate, Backend, DomainEvent, EmbeddedBackend, RecordedEvent, Upcasters};
use evident_log::clock::ManualClock;
use evident_log::storage::FsStorage;
use evident_log::{FsyncPolicy, Log, LogConfig};
use serde::{Deserialize, Serialize};

/// The topic of [`Account`] streams.
pub const ACCOUNTS: &str = "accounts";

/// A bank account. Besides the balance it keeps an order-sensitive digest of every event it
/// applied, so two states are equal only if they saw the same events in the same order.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Account {
    /// Owner, once opened.
    pub owner: Option<String>,
    /// Balance in cents.
    pub balance: u64,
    /// Closed for good.
    pub closed: bool,
    /// Events applied.
    pub events: u64,
    /// Order-sensitive digest of the events applied.
    pub digest: u64,
}

/// What callers ask of an account.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AccountCommand {
    /// Open the account (once).
    Open {
        /// Owner.
        owner: String,
    },
    /// Deposit; a zero amount changes nothing (no event).
    Deposit {
        /// Cents.
        amount: u64,
    },
    /// Withdraw, refused beyond the balance.
    Withdraw {
        /// Cents.
        amount: u64,
    },
    /// Withdraw the whole balance (no event when it is zero): a command whose event depends
    /// on the state it is decided on.
    WithdrawAll,
    /// Several deposits, one event each, stored atomically.
    DepositAll {
        /// Cents, one event per nonzero amount.
        amounts: Vec<u64>,
    },
    /// Close the account (only when empty).
    Close,
}

/// What happened to an account.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum AccountEvent {
    /// Opened.
    Opened {
        /// Owner.
        owner: String,
    },
    /// Money came in.
    Deposited {
        /// Cents.
        amount: u64,
    },
    /// Money went out.
    Withdrawn {
        /// Cents.
        amount: u64,
    },
    /// Closed.
    Closed,
}

impl DomainEvent for AccountEvent {}

/// Why an account refused a command.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccountError {
    /// Not opened yet.
    #[error("the account is not open")]
    NotOpen,
    /// Opened already.
    #[error("the account is already open")]
    AlreadyOpen,
    /// Closed.
    #[error("the account is closed")]
    Closed,
    /// Not enough money.
    #[error("insufficient funds: balance {balance}, requested {requested}")]
    InsufficientFunds {
        /// The balance.
        balance: u64,
        /// The amount asked for.
        requested: u64,
    },
    /// Only an empty account can close.
    #[error("the account still holds {0}")]
    NotEmpty(u64),
}

impl Account {
    fn usable(&self) -> Result<(), AccountError> {
        if self.closed {
            Err(AccountError::Closed)
        } else if self.owner.is_none() {
            Err(AccountError::NotOpen)
        } else {
            Ok(())
        }
    }
}

impl Aggregate for Account {
    type Command = AccountCommand;
    type Event = AccountEvent;
    type Error = AccountError;
    const TOPIC: &'static str = ACCOUNTS;

    fn handle(&self, command: &AccountCommand) -> Result<Vec<AccountEvent>, AccountError> {
        match command {
            AccountCommand::Open { owner } => {
                if self.owner.is_some() {
                    return Err(AccountError::AlreadyOpen);
                }
                Ok(vec![AccountEvent::Opened { owner: owner.clone() }])
            }
            AccountCommand::Deposit { amount } => {
                self.usable()?;
                Ok(if *amount == 0 { vec![] } else { vec![AccountEvent::Deposited { amount: *amount }] })
            }
            AccountCommand::Withdraw { amount } => {
                self.usable()?;
                if *amount > self.balance {
                    return Err(AccountError::InsufficientFunds { balance: self.balance, requested: *amount });
                }
                Ok(vec![AccountEvent::Withdrawn { amount: *amount }])
            }
            AccountCommand::WithdrawAll => {
                self.usable()?;
                Ok(if self.balance == 0 { vec![] } else { vec![AccountEvent::Withdrawn { amount: self.balance }] })
            }
            AccountCommand::DepositAll { amounts } => {
                self.usable()?;
                Ok(amounts.iter().filter(|&&a| a > 0).map(|&amount| AccountEvent::Deposited { amount }).collect())
            }
            AccountCommand::Close => {
                self.usable()?;
                if self.balance != 0 {
                    return Err(AccountError::NotEmpty(self.balance));
                }
                Ok(vec![AccountEvent::Closed])
            }
        }
    }

    fn apply(&mut self, event: &AccountEvent) {
        let (tag, value) = match event {
            AccountEvent::Opened { owner } => {
                self.owner = Some(owner.clone());
                (1, owner.len() as u64)
            }
            AccountEvent::Deposited { amount } => {
                self.balance += amount;
                (2, *amount)
            }
            AccountEvent::Withdrawn { amount } => {
                self.balance -= amount;
                (3, *amount)
            }
            AccountEvent::Closed => {
                self.closed = true;
                (4, 0)
            }
        };
        self.events += 1;
        self.digest = self.digest.wrapping_mul(1_000_003).wrapping_add(tag * 7919 + value);
    }
}

/// A log configuration for tests: real files, and fsync as given.
pub fn log_config(fsync: FsyncPolicy) -> LogConfig {
    LogConfig { fsync, ..LogConfig::default() }
}

/// An embedded backend on `dir` (fsync on every append, as in production).
pub fn backend(dir: &Path) -> Arc<EmbeddedBackend> {
    Arc::new(EmbeddedBackend::open(dir).expect("open the embedded log"))
}

/// An embedded backend on `dir` that never syncs (for tests that append a lot and do not
/// crash: durability is not what they check).
pub fn fast_backend(dir: &Path) -> Arc<EmbeddedBackend> {
    let log = Log::open(dir, log_config(FsyncPolicy::Never)).expect("open the embedded log");
    Arc::new(EmbeddedBackend::from_log(Arc::new(log)))
}

/// An embedded backend on `dir` whose log stamps events with `clock`.
pub fn backend_with_clock(dir: &Path, clock: Arc<ManualClock>) -> Arc<EmbeddedBackend> {
    let log = Log::open_with(Arc::new(FsStorage), dir, LogConfig::default(), clock).expect("open the embedded log");
    Arc::new(EmbeddedBackend::from_log(Arc::new(log)))
}

/// Every stored event of `topic`/`key`, in version order, read directly from the backend.
pub fn read_stream(backend: &dyn Backend, topic: &str, key: &str) -> Vec<RecordedEvent> {
    let mut out = Vec::new();
    let query = StreamQuery { limit: 7, ..StreamQuery::default() };
    evident::blocking::wait(for_each_in_stream(backend, topic, key, query, |e| {
        out.push(e);
        Ok(())
    }))
    .expect("read the stream");
    for (i, e) in out.iter().enumerate() {
        assert_eq!(
            e.version,
            Some(evident::Version(i as u64)),
            "stream {topic}/{key} is not read back in version order"
        );
    }
    out
}

/// The events of `topic`/`key` decoded as `A`'s events (no repository involved).
pub fn stored_events<A: Aggregate>(backend: &dyn Backend, topic: &str, key: &str, up: &Upcasters) -> Vec<A::Event> {
    evident::repository::decode_all::<A>(&read_stream(backend, topic, key), up).expect("decode the stored events")
}

/// The state after `events`: the pure fold the repository's loads are compared with.
pub fn fold<A: Aggregate>(events: &[A::Event]) -> A {
    evident::aggregate::replay::<A>(events)
}
