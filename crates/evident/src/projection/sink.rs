//! Where a projection's read model lives: a SQLite file (embedded, the default) or a
//! PostgreSQL database. The sink also keeps the projection's bookkeeping, in the same database
//! so that it commits in the same transaction as the read model:
//! - `evident_checkpoints(projection, position, updated_ms)`: the next commit sequence to
//!   process;
//! - `evident_parked(projection, sequence, stream, kind)`: events parked in (or held for) the
//!   dead-letter queue.
//!
//! Durability: SQLite runs in WAL mode with `synchronous=FULL` (each commit is fsynced before
//! it returns); PostgreSQL with its defaults (`fsync=on`, `synchronous_commit=on`). A commit
//! that returned is therefore on disk, and so is the checkpoint inside it.

use std::collections::HashMap;
use std::path::Path;

use super::sql::{pg_message, Dialect, Row, SqlError, TableNames, ToParam, Tx, TxInner};
use crate::{Error, Result};

/// The database of a projection's read model.
pub struct Sink {
    conn: Conn,
    statements: HashMap<String, postgres::Statement>,
    in_tx: bool,
}

enum Conn {
    Sqlite(rusqlite::Connection),
    Postgres(Box<postgres::Client>),
}

impl std::fmt::Debug for Sink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sink").field("dialect", &self.dialect()).finish_non_exhaustive()
    }
}

const BOOKKEEPING: &str = "
CREATE TABLE IF NOT EXISTS evident_checkpoints (
    projection TEXT PRIMARY KEY,
    position BIGINT NOT NULL,
    updated_ms BIGINT NOT NULL
);
CREATE TABLE IF NOT EXISTS evident_parked (
    projection TEXT NOT NULL,
    sequence BIGINT NOT NULL,
    stream TEXT NOT NULL,
    kind TEXT NOT NULL,
    PRIMARY KEY (projection, sequence)
);";

fn sqlite_err(e: rusqlite::Error) -> Error {
    Error::Sink(format!("SQLite: {e}"))
}

fn pg_err(e: postgres::Error) -> Error {
    Error::Sink(format!("PostgreSQL: {}", pg_message(&e)))
}

impl Sink {
    /// Opens (or creates) the SQLite database at `path`.
    pub fn sqlite(path: impl AsRef<Path>) -> Result<Self> {
        let conn = rusqlite::Connection::open(path.as_ref()).map_err(sqlite_err)?;
        Self::from_sqlite(conn)
    }

    /// An in-memory SQLite database (tests; nothing survives the process).
    pub fn sqlite_in_memory() -> Result<Self> {
        Self::from_sqlite(rusqlite::Connection::open_in_memory().map_err(sqlite_err)?)
    }

    fn from_sqlite(conn: rusqlite::Connection) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sqlite_err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sqlite_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(sqlite_err)?;
        conn.set_prepared_statement_cache_capacity(128);
        let mut sink = Self { conn: Conn::Sqlite(conn), statements: HashMap::new(), in_tx: false };
        sink.batch(BOOKKEEPING)?;
        Ok(sink)
    }

    /// Connects to PostgreSQL (`postgresql://user:password@host:port/db`, without TLS: use a
    /// loopback or otherwise trusted network).
    pub fn postgres(url: &str) -> Result<Self> {
        let client = postgres::Client::connect(url, postgres::NoTls).map_err(pg_err)?;
        let mut sink = Self { conn: Conn::Postgres(Box::new(client)), statements: HashMap::new(), in_tx: false };
        // Concurrent runners creating the bookkeeping tables at once would race in CREATE
        // TABLE IF NOT EXISTS; a transaction-scoped advisory lock serializes them.
        sink.begin()?;
        sink.batch("SELECT pg_advisory_xact_lock(7301966385)")?;
        sink.batch(BOOKKEEPING)?;
        sink.commit()?;
        Ok(sink)
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        match self.conn {
            Conn::Sqlite(_) => Dialect::Sqlite,
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        match &mut self.conn {
            Conn::Sqlite(c) => c.execute_batch(sql).map_err(sqlite_err),
            Conn::Postgres(c) => c.batch_execute(sql).map_err(pg_err),
        }
    }

    /// Starts a transaction (SQLite: `BEGIN IMMEDIATE`, taking the write lock at once).
    pub(crate) fn begin(&mut self) -> Result<()> {
        if self.in_tx {
            return Err(Error::Sink("a transaction is already open".into()));
        }
        match &mut self.conn {
            Conn::Sqlite(c) => c.execute_batch("BEGIN IMMEDIATE").map_err(sqlite_err)?,
            Conn::Postgres(c) => c.batch_execute("BEGIN").map_err(pg_err)?,
        }
        self.in_tx = true;
        Ok(())
    }

    /// Commits the open transaction; when this returns, it is durable.
    pub(crate) fn commit(&mut self) -> Result<()> {
        self.in_tx = false;
        self.batch("COMMIT")
    }

    /// Rolls the open transaction back (nothing of it remains).
    pub(crate) fn rollback(&mut self) -> Result<()> {
        if !std::mem::take(&mut self.in_tx) {
            return Ok(());
        }
        self.batch("ROLLBACK")
    }

    /// The open transaction, with `names` for table substitution.
    pub(crate) fn tx<'a>(&'a mut self, names: &'a mut TableNames) -> Tx<'a> {
        let inner = match &mut self.conn {
            Conn::Sqlite(c) => TxInner::Sqlite(c),
            Conn::Postgres(c) => TxInner::Postgres(c, &mut self.statements),
        };
        Tx { inner, names }
    }

    /// Runs a query outside the runner's transactions (to read the read model). Table names
    /// are literal here.
    pub fn query(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>, SqlError> {
        let mut names = TableNames::default();
        self.tx(&mut names).query(sql, params)
    }
}
