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

//!
//! Both are features (`sqlite`, `postgres`). PostgreSQL is reached through `tokio-postgres`,
//! its connection task spawned on the caller's tokio runtime; the runner's statements are
//! pipelined (see [`super::sql`]).

#[cfg(feature = "sqlite")]
use std::path::Path;

#[cfg(feature = "postgres")]
use super::sql::OwnedParam;
#[cfg(feature = "postgres")]
use super::sql::{pg_message, PgConn};
use super::sql::{Dialect, Row, SqlError, TableNames, ToParam, Tx, TxInner};
use crate::{Error, Result};

/// The database of a projection's read model.
pub struct Sink {
    conn: Conn,
    in_tx: bool,
}

enum Conn {
    #[cfg(feature = "sqlite")]
    Sqlite(rusqlite::Connection),
    #[cfg(feature = "postgres")]
    Postgres(Box<PgConn>),
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

#[cfg(feature = "sqlite")]
fn sqlite_err(e: rusqlite::Error) -> Error {
    Error::Sink(format!("SQLite: {e}"))
}

#[cfg(feature = "postgres")]
fn pg_err(e: tokio_postgres::Error) -> Error {
    Error::Sink(format!("PostgreSQL: {}", pg_message(&e)))
}

#[cfg(feature = "postgres")]
fn sql_err(e: SqlError) -> Error {
    Error::Sink(e.0)
}

impl Sink {
    /// Opens (or creates) the SQLite database at `path`. Synchronous (it opens a local file and
    /// creates the bookkeeping tables): open sinks at start-up, before serving.
    #[cfg(feature = "sqlite")]
    pub fn sqlite(path: impl AsRef<Path>) -> Result<Self> {
        let conn = rusqlite::Connection::open(path.as_ref()).map_err(sqlite_err)?;
        Self::from_sqlite(conn)
    }

    /// An in-memory SQLite database (tests; nothing survives the process).
    #[cfg(feature = "sqlite")]
    pub fn sqlite_in_memory() -> Result<Self> {
        Self::from_sqlite(rusqlite::Connection::open_in_memory().map_err(sqlite_err)?)
    }

    #[cfg(feature = "sqlite")]
    fn from_sqlite(conn: rusqlite::Connection) -> Result<Self> {
        conn.pragma_update(None, "journal_mode", "WAL").map_err(sqlite_err)?;
        conn.pragma_update(None, "synchronous", "FULL").map_err(sqlite_err)?;
        conn.busy_timeout(std::time::Duration::from_secs(10)).map_err(sqlite_err)?;
        conn.set_prepared_statement_cache_capacity(128);
        conn.execute_batch(BOOKKEEPING).map_err(sqlite_err)?;
        Ok(Self { conn: Conn::Sqlite(conn), in_tx: false })
    }

    /// Connects to PostgreSQL (`postgresql://user:password@host:port/db`, without TLS: use a
    /// loopback or otherwise trusted network). The connection's task runs on the current tokio
    /// runtime; the sink must be used on that runtime.
    #[cfg(feature = "postgres")]
    pub async fn postgres(url: &str) -> Result<Self> {
        let handle = crate::error::runtime()?;
        let (client, connection) = tokio_postgres::connect(url, tokio_postgres::NoTls).await.map_err(pg_err)?;
        handle.spawn(async move {
            if let Err(e) = connection.await {
                tracing::warn!(error = %e, "PostgreSQL connection of a projection sink ended");
            }
        });
        // Concurrent runners creating the bookkeeping tables at once would race in CREATE
        // TABLE IF NOT EXISTS; a transaction-scoped advisory lock serializes them.
        client
            .batch_execute(&format!("BEGIN; SELECT pg_advisory_xact_lock(7301966385); {BOOKKEEPING} COMMIT;"))
            .await
            .map_err(pg_err)?;
        Ok(Self { conn: Conn::Postgres(Box::new(PgConn::new(client, handle))), in_tx: false })
    }

    /// Which database this is.
    pub fn dialect(&self) -> Dialect {
        match self.conn {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(_) => Dialect::Sqlite,
            #[cfg(feature = "postgres")]
            Conn::Postgres(_) => Dialect::Postgres,
        }
    }

    fn batch(&mut self, sql: &str) -> Result<()> {
        match &mut self.conn {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => c.execute_batch(sql).map_err(sqlite_err),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => c.batch(sql).map_err(sql_err),
        }
    }

    /// Starts a transaction (SQLite: `BEGIN IMMEDIATE`, taking the write lock at once).
    pub(crate) fn begin(&mut self) -> Result<()> {
        if self.in_tx {
            return Err(Error::Sink("a transaction is already open".into()));
        }
        match &mut self.conn {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => c.execute_batch("BEGIN IMMEDIATE").map_err(sqlite_err)?,
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => c.batch("BEGIN").map_err(sql_err)?,
        }
        self.in_tx = true;
        Ok(())
    }

    /// Commits the open transaction; when this returns, it is durable. A pipelined statement
    /// that failed fails the commit (the transaction is rolled back): PostgreSQL would answer
    /// `COMMIT` of an aborted transaction with a silent rollback.
    // Irrefutable when PostgreSQL is the only sink compiled.
    #[allow(irrefutable_let_patterns)]
    pub(crate) fn commit(&mut self) -> Result<()> {
        #[cfg(feature = "postgres")]
        if let Conn::Postgres(c) = &mut self.conn {
            if let Err(e) = c.flush() {
                let _ = self.rollback();
                return Err(sql_err(e));
            }
        }
        self.in_tx = false;
        self.batch("COMMIT")
    }

    /// Rolls the open transaction back (nothing of it remains).
    // Irrefutable when PostgreSQL is the only sink compiled.
    #[allow(irrefutable_let_patterns)]
    pub(crate) fn rollback(&mut self) -> Result<()> {
        #[cfg(feature = "postgres")]
        if let Conn::Postgres(c) = &mut self.conn {
            c.discard();
        }
        if !std::mem::take(&mut self.in_tx) {
            return Ok(());
        }
        self.batch("ROLLBACK")
    }

    /// Turns pipelining of [`Tx::execute`] on or off (off while the runner looks for the event
    /// whose statement failed). SQLite does not pipeline.
    // Irrefutable when PostgreSQL is the only sink compiled.
    #[allow(irrefutable_let_patterns)]
    pub(crate) fn set_pipelined(&mut self, on: bool) {
        #[cfg(feature = "postgres")]
        if let Conn::Postgres(c) = &mut self.conn {
            c.pipelined = on;
        }
        let _ = on;
    }

    /// The open transaction, with `names` for table substitution.
    pub(crate) fn tx<'a>(&'a mut self, names: &'a mut TableNames) -> Tx<'a> {
        let inner = match &mut self.conn {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => TxInner::Sqlite(c),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => TxInner::Postgres(c),
        };
        Tx { inner, names }
    }

    /// Runs a query outside the runner's transactions (to read the read model). Table names
    /// are literal here. On PostgreSQL it awaits the connection; on SQLite it reads the local
    /// file in place (a read of the page cache, no fsync; `ProjectionRunner::query` runs it on
    /// the blocking pool instead).
    pub async fn query(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>, SqlError> {
        match &mut self.conn {
            #[cfg(feature = "sqlite")]
            Conn::Sqlite(c) => super::sql::sqlite_query(c, sql, params),
            #[cfg(feature = "postgres")]
            Conn::Postgres(c) => {
                let client = c.client.clone();
                super::sql::pg_query(&client, sql, &OwnedParam::all(params)).await
            }
        }
    }
}
