//! The SQL a projection writes, the same for SQLite and PostgreSQL: parameters and values that
//! both drivers understand, and [`Tx`], the transaction a handler runs in.
//!
//! Placeholders are PostgreSQL's `$1, $2, ...` on both (SQLite reads `$1` as a named
//! parameter; [`Tx`] binds it by name, so `$2` may come before `$1`). Table names are written
//! `{name}` for the tables a projection declares in [`super::Projection::tables`]: the runner
//! substitutes the live table, or its rebuild twin while rebuilding. Values convert to the
//! column's type on PostgreSQL (an integer parameter works for `INT`, `BIGINT` or `REAL`
//! columns), so the same statement runs unchanged on both.
//!
//! **Pipelining.** [`Tx::execute`] does not wait for PostgreSQL's answer: the statement is sent
//! at once on the connection (`tokio-postgres` pipelines requests) and its result is collected
//! before the next statement that needs an answer ([`Tx::execute_count`], [`Tx::query`],
//! [`Tx::batch`]) or before the commit. A page of 1,000 events therefore costs a handful of
//! round trips instead of one per statement. A failed statement still fails the transaction;
//! the runner then replays the page one statement at a time to find the event that failed.
//! SQLite runs each statement in place (it is a function call, not a round trip).
//!
//! The `Tx` is synchronous: handlers run on tokio's blocking pool (SQLite blocks on its file;
//! see [`super::runner`]), and the PostgreSQL calls that need an answer wait on the runtime.

use std::collections::HashMap;
#[cfg(feature = "postgres")]
use std::future::Future;
#[cfg(feature = "postgres")]
use std::pin::Pin;
#[cfg(feature = "postgres")]
use std::sync::Arc;

/// A parameter value, borrowed from the caller.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Param<'a> {
    /// SQL NULL.
    Null,
    /// An integer.
    Int(i64),
    /// A floating-point number.
    Real(f64),
    /// Text.
    Text(&'a str),
    /// Bytes.
    Blob(&'a [u8]),
    /// A boolean (SQLite stores 0 or 1).
    Bool(bool),
}

/// A value a statement can take as a parameter (`Sync`, so that async code can hold a
/// statement's parameters across an await).
pub trait ToParam: Sync {
    /// The value as a parameter.
    fn to_param(&self) -> Param<'_>;
}

macro_rules! int_param {
    ($($t:ty),*) => {$(
        impl ToParam for $t {
            fn to_param(&self) -> Param<'_> {
                Param::Int(i64::from(*self))
            }
        }
    )*};
}
int_param!(i8, i16, i32, i64, u8, u16, u32);

impl ToParam for u64 {
    /// Values above `i64::MAX` do not fit SQL integers; they become NULL rather than wrap.
    fn to_param(&self) -> Param<'_> {
        i64::try_from(*self).map_or(Param::Null, Param::Int)
    }
}
/// Positions bind as their number, so a handler can store `e.sequence` (or an offset or a
/// version) in its read model as it is.
macro_rules! position_param {
    ($($t:ty),*) => {$(
        impl ToParam for $t {
            fn to_param(&self) -> Param<'_> {
                self.0.to_param()
            }
        }
    )*};
}
position_param!(evident_core::Offset, evident_core::Sequence, evident_core::Version);
impl ToParam for f64 {
    fn to_param(&self) -> Param<'_> {
        Param::Real(*self)
    }
}
impl ToParam for bool {
    fn to_param(&self) -> Param<'_> {
        Param::Bool(*self)
    }
}
impl ToParam for str {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}
impl ToParam for &str {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}
impl ToParam for String {
    fn to_param(&self) -> Param<'_> {
        Param::Text(self)
    }
}
impl ToParam for [u8] {
    fn to_param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}
impl ToParam for Vec<u8> {
    fn to_param(&self) -> Param<'_> {
        Param::Blob(self)
    }
}
impl<T: ToParam> ToParam for Option<T> {
    fn to_param(&self) -> Param<'_> {
        self.as_ref().map_or(Param::Null, ToParam::to_param)
    }
}
impl ToParam for Param<'_> {
    fn to_param(&self) -> Param<'_> {
        *self
    }
}

/// A parameter's value, owned: what a pipelined statement keeps until it is sent, and what a
/// query from async code moves to the thread that runs it.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum OwnedParam {
    Null,
    Int(i64),
    Real(f64),
    Text(String),
    Blob(Vec<u8>),
    Bool(bool),
}

impl OwnedParam {
    pub(crate) fn all(params: &[&dyn ToParam]) -> Vec<OwnedParam> {
        params
            .iter()
            .map(|p| match p.to_param() {
                Param::Null => OwnedParam::Null,
                Param::Int(v) => OwnedParam::Int(v),
                Param::Real(v) => OwnedParam::Real(v),
                Param::Text(v) => OwnedParam::Text(v.to_string()),
                Param::Blob(v) => OwnedParam::Blob(v.to_vec()),
                Param::Bool(v) => OwnedParam::Bool(v),
            })
            .collect()
    }
}

impl ToParam for OwnedParam {
    fn to_param(&self) -> Param<'_> {
        match self {
            OwnedParam::Null => Param::Null,
            OwnedParam::Int(v) => Param::Int(*v),
            OwnedParam::Real(v) => Param::Real(*v),
            OwnedParam::Text(v) => Param::Text(v),
            OwnedParam::Blob(v) => Param::Blob(v),
            OwnedParam::Bool(v) => Param::Bool(*v),
        }
    }
}

/// A value read back.
#[derive(Debug, Clone, PartialEq)]
pub enum SqlValue {
    /// NULL.
    Null,
    /// An integer (PostgreSQL booleans read as 0/1).
    Int(i64),
    /// A floating-point number.
    Real(f64),
    /// Text (PostgreSQL JSON/JSONB read as their text).
    Text(String),
    /// Bytes.
    Blob(Vec<u8>),
}

impl SqlValue {
    /// The integer, if it is one.
    pub fn as_i64(&self) -> Option<i64> {
        match self {
            SqlValue::Int(v) => Some(*v),
            _ => None,
        }
    }
    /// The number as f64, if it is one.
    pub fn as_f64(&self) -> Option<f64> {
        match self {
            SqlValue::Real(v) => Some(*v),
            SqlValue::Int(v) => Some(*v as f64),
            _ => None,
        }
    }
    /// The text, if it is text.
    pub fn as_str(&self) -> Option<&str> {
        match self {
            SqlValue::Text(v) => Some(v),
            _ => None,
        }
    }
}

/// A row: values in column order.
pub type Row = Vec<SqlValue>;

/// Which database a [`Tx`] talks to, for the rare statement that must differ.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// SQLite.
    Sqlite,
    /// PostgreSQL.
    Postgres,
}

/// An error from a statement.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SqlError(pub String);

/// Most rows in one statement of [`Tx::execute_values`]: enough that a page of 1,000 events
/// takes a handful of statements, few enough that planning one stays cheap.
const VALUES_MAX_ROWS: usize = 512;
/// Most parameters in one statement of [`Tx::execute_values`]: SQLite's limit (since 3.32;
/// PostgreSQL allows 65,535).
const VALUES_MAX_PARAMS: usize = 32_766;

/// Maps `{table}` names to real table names, caching each statement's rewrite.
#[derive(Debug, Default)]
pub(crate) struct TableNames {
    map: HashMap<String, String>,
    rewritten: HashMap<String, std::sync::Arc<str>>,
    /// The statements [`Tx::execute_values`] built, by dialect, head, tail and shape.
    values: Vec<ValuesStatement>,
}

impl TableNames {
    pub(crate) fn new<S: AsRef<str>>(tables: &[S], suffix: &str) -> Self {
        Self {
            map: tables.iter().map(|t| (t.as_ref().to_string(), format!("{}{suffix}", t.as_ref()))).collect(),
            rewritten: HashMap::new(),
            values: Vec::new(),
        }
    }

    /// The statement `head VALUES-rows tail` for `rows` rows of `columns` parameters, built
    /// once per shape: `$N` placeholders on PostgreSQL, `?` on SQLite (bound in order: SQLite
    /// looks a named parameter up by a linear scan, which thousands of them make quadratic).
    fn values(
        &mut self,
        dialect: Dialect,
        head: &str,
        tail: &str,
        columns: usize,
        rows: usize,
    ) -> Result<std::sync::Arc<str>, SqlError> {
        // The key's strings are only allocated on a miss: hits compare against borrowed ones.
        // A handful of shapes per call site (see `Tx::execute_values`): a list scan is enough.
        if let Some(v) = self.values.iter().find(|v| {
            v.dialect == dialect && v.head == head && v.tail == tail && v.columns == columns && v.rows == rows
        }) {
            return Ok(v.text.clone());
        }
        let (head_real, tail_real) = (self.rewrite(head)?.to_string(), self.rewrite(tail)?.to_string());
        let mut text = String::with_capacity(head_real.len() + tail_real.len() + rows * columns * 7);
        text.push_str(&head_real);
        text.push(' ');
        let mut n = 0;
        for row in 0..rows {
            text.push_str(if row == 0 { "(" } else { ", (" });
            for column in 0..columns {
                if column > 0 {
                    text.push_str(", ");
                }
                n += 1;
                match dialect {
                    Dialect::Sqlite => text.push('?'),
                    Dialect::Postgres => {
                        use std::fmt::Write as _;
                        let _ = write!(text, "${n}");
                    }
                }
            }
            text.push(')');
        }
        text.push(' ');
        text.push_str(&tail_real);
        let text: std::sync::Arc<str> = text.into();
        if self.values.len() >= 256 {
            self.values.clear(); // only bounds a runaway: a projection has a few call sites
        }
        self.values.push(ValuesStatement {
            dialect,
            head: head.to_string(),
            tail: tail.to_string(),
            columns,
            rows,
            text: text.clone(),
        });
        Ok(text)
    }

    pub(crate) fn real(&self, table: &str) -> Option<&str> {
        self.map.get(table).map(String::as_str)
    }

    /// `sql` with each `{name}` of a declared table replaced.
    pub(crate) fn rewrite<'s>(&mut self, sql: &'s str) -> Result<Rewritten<'s>, SqlError> {
        if !sql.contains('{') {
            return Ok(Rewritten::Same(sql));
        }
        if let Some(done) = self.rewritten.get(sql) {
            return Ok(Rewritten::Cached(done.clone()));
        }
        let mut out = String::with_capacity(sql.len() + 16);
        let mut rest = sql;
        while let Some(open) = rest.find('{') {
            out.push_str(&rest[..open]);
            let after = &rest[open + 1..];
            let close = after.find('}').ok_or_else(|| SqlError(format!("unclosed '{{' in {sql:?}")))?;
            let name = &after[..close];
            let real = self.map.get(name).ok_or_else(|| {
                SqlError(format!("{{{name}}} in {sql:?} is not a table the projection declares in tables()"))
            })?;
            out.push_str(real);
            rest = &after[close + 1..];
        }
        out.push_str(rest);
        let out: std::sync::Arc<str> = out.into();
        self.rewritten.insert(sql.to_string(), out.clone());
        Ok(Rewritten::Cached(out))
    }
}

/// A statement built by [`Tx::execute_values`], by what it was built from.
#[derive(Debug)]
struct ValuesStatement {
    dialect: Dialect,
    head: String,
    tail: String,
    columns: usize,
    rows: usize,
    text: std::sync::Arc<str>,
}

/// A statement after table substitution: the caller's text, or a shared cached rewrite (a
/// handler runs the same few statements for every event, so each is rewritten once).
pub(crate) enum Rewritten<'s> {
    Same(&'s str),
    Cached(std::sync::Arc<str>),
}

impl std::fmt::Debug for Rewritten<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(&**self, f)
    }
}

impl std::ops::Deref for Rewritten<'_> {
    type Target = str;
    fn deref(&self) -> &str {
        match self {
            Rewritten::Same(s) => s,
            Rewritten::Cached(s) => s,
        }
    }
}

/// The transaction a handler runs in: its statements commit together with the projection's
/// checkpoint, or not at all. (The runner opens and ends it; a handler's statements run on
/// the open connection between its `BEGIN` and `COMMIT`.)
pub struct Tx<'a> {
    pub(crate) inner: TxInner<'a>,
    pub(crate) names: &'a mut TableNames,
}

pub(crate) enum TxInner<'a> {
    #[cfg(feature = "sqlite")]
    Sqlite(&'a rusqlite::Connection),
    #[cfg(feature = "postgres")]
    Postgres(&'a mut PgConn),
}

impl std::fmt::Debug for Tx<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Tx").field("dialect", &self.dialect()).finish_non_exhaustive()
    }
}

impl Tx<'_> {
    /// The database.
    pub fn dialect(&self) -> Dialect {
        match self.inner {
            #[cfg(feature = "sqlite")]
            TxInner::Sqlite(_) => Dialect::Sqlite,
            #[cfg(feature = "postgres")]
            TxInner::Postgres(..) => Dialect::Postgres,
        }
    }

    /// The real name of declared table `table` (for statements built at run time).
    pub fn table(&self, table: &str) -> Result<&str, SqlError> {
        self.names.real(table).ok_or_else(|| SqlError(format!("{table} is not a table the projection declares")))
    }

    /// Runs a statement. On PostgreSQL it is pipelined: sent now, its outcome checked before
    /// the next statement that needs an answer or the commit (see the module doc); use
    /// [`Tx::execute_count`] for the number of rows changed.
    pub fn execute(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<(), SqlError> {
        let sql = self.names.rewrite(sql)?;
        self.execute_substituted(&sql, params)
    }

    /// Runs `head`, then the rows of `params` (`columns` parameters each, row after row) as a
    /// `VALUES` list, then `tail`: a multi-row `INSERT` (or upsert) in a few statements instead
    /// of one per row. `head` and `tail` take no parameters of their own, and `{table}` names
    /// in them are substituted as in [`Tx::execute`]. For example
    ///
    /// ```text
    /// tx.execute_values(
    ///     "INSERT INTO {balances} (account, balance) VALUES", 2, &params,
    ///     "ON CONFLICT (account) DO UPDATE SET balance = {balances}.balance + excluded.balance")?;
    /// ```
    ///
    /// The rows go in statements of up to 512 rows (fewer when rows are wide: SQLite takes at
    /// most 32,766 parameters), the last ones in power-of-two sizes, so that each call site
    /// prepares at most about ten distinct statements, all cached. On PostgreSQL an upsert
    /// must not name a key twice in one call ("ON CONFLICT DO UPDATE command cannot affect row
    /// a second time"): fold the rows per key first. Pipelined on PostgreSQL like
    /// [`Tx::execute`].
    pub fn execute_values(
        &mut self,
        head: &str,
        columns: usize,
        params: &[&dyn ToParam],
        tail: &str,
    ) -> Result<(), SqlError> {
        if columns == 0 || !params.len().is_multiple_of(columns) {
            return Err(SqlError(format!(
                "execute_values: {} parameters do not make rows of {columns} columns",
                params.len()
            )));
        }
        if columns > VALUES_MAX_PARAMS {
            return Err(SqlError(format!("execute_values: rows of {columns} columns exceed SQLite's parameter limit")));
        }
        let dialect = self.dialect();
        let full = 1usize << (VALUES_MAX_ROWS.min(VALUES_MAX_PARAMS / columns)).ilog2();
        let mut rest = params;
        while !rest.is_empty() {
            let rows = rest.len() / columns;
            // Full statements first, then the remainder in falling powers of two.
            let take = if rows >= full { full } else { 1usize << rows.ilog2() };
            let (chunk, after) = rest.split_at(take * columns);
            let text = self.names.values(dialect, head, tail, columns, take)?;
            self.execute_substituted(&text, chunk)?;
            rest = after;
        }
        Ok(())
    }

    /// Runs a statement whose table names are already substituted.
    fn execute_substituted(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<(), SqlError> {
        match &mut self.inner {
            #[cfg(feature = "sqlite")]
            TxInner::Sqlite(conn) => sqlite_execute(conn, sql, params).map(drop),
            #[cfg(feature = "postgres")]
            TxInner::Postgres(pg) => pg.execute_pipelined(sql, params),
        }
    }

    /// Runs a statement and waits for it; returns the number of rows it changed.
    pub fn execute_count(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<u64, SqlError> {
        let sql = self.names.rewrite(sql)?;
        match &mut self.inner {
            #[cfg(feature = "sqlite")]
            TxInner::Sqlite(conn) => sqlite_execute(conn, &sql, params),
            #[cfg(feature = "postgres")]
            TxInner::Postgres(pg) => pg.execute_count(&sql, params),
        }
    }

    /// Runs a query; returns its rows.
    pub fn query(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>, SqlError> {
        let sql = self.names.rewrite(sql)?;
        match &mut self.inner {
            #[cfg(feature = "sqlite")]
            TxInner::Sqlite(conn) => sqlite_query(conn, &sql, params),
            #[cfg(feature = "postgres")]
            TxInner::Postgres(pg) => pg.query(&sql, params),
        }
    }

    /// Runs a query expected to return at most one row.
    pub fn query_opt(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<Option<Row>, SqlError> {
        let mut rows = self.query(sql, params)?;
        if rows.len() > 1 {
            return Err(SqlError(format!("{sql:?} returned {} rows, at most one was expected", rows.len())));
        }
        Ok(rows.pop())
    }

    /// Runs statements with no parameters, separated by `;` (DDL in `setup`).
    pub fn batch(&mut self, sql: &str) -> Result<(), SqlError> {
        let sql = self.names.rewrite(sql)?;
        match &mut self.inner {
            #[cfg(feature = "sqlite")]
            TxInner::Sqlite(conn) => conn.execute_batch(&sql).map_err(|e| SqlError(format!("{e} in {sql:?}"))),
            #[cfg(feature = "postgres")]
            TxInner::Postgres(pg) => pg.batch(&sql),
        }
    }

    /// Waits for every pipelined statement; the first failure, if any.
    pub(crate) fn flush(&mut self) -> Result<(), SqlError> {
        match &mut self.inner {
            #[cfg(feature = "sqlite")]
            TxInner::Sqlite(_) => Ok(()),
            #[cfg(feature = "postgres")]
            TxInner::Postgres(pg) => pg.flush(),
        }
    }
}

#[cfg(feature = "sqlite")]
fn sqlite_execute(conn: &rusqlite::Connection, sql: &str, params: &[&dyn ToParam]) -> Result<u64, SqlError> {
    let mut stmt = conn.prepare_cached(sql).map_err(|e| SqlError(format!("{e} in {sql:?}")))?;
    bind_sqlite(&mut stmt, params)?;
    let n = stmt.raw_execute().map_err(|e| SqlError(format!("{e} in {sql:?}")))?;
    Ok(n as u64)
}

#[cfg(feature = "sqlite")]
pub(crate) fn sqlite_query(
    conn: &rusqlite::Connection,
    sql: &str,
    params: &[&dyn ToParam],
) -> Result<Vec<Row>, SqlError> {
    let mut stmt = conn.prepare_cached(sql).map_err(|e| SqlError(format!("{e} in {sql:?}")))?;
    bind_sqlite(&mut stmt, params)?;
    let columns = stmt.column_count();
    let mut rows = stmt.raw_query();
    let mut out = Vec::new();
    while let Some(row) = rows.next().map_err(|e| SqlError(format!("{e} in {sql:?}")))? {
        let mut values = Vec::with_capacity(columns);
        for i in 0..columns {
            let v = row.get_ref(i).map_err(|e| SqlError(e.to_string()))?;
            values.push(match v {
                rusqlite::types::ValueRef::Null => SqlValue::Null,
                rusqlite::types::ValueRef::Integer(i) => SqlValue::Int(i),
                rusqlite::types::ValueRef::Real(r) => SqlValue::Real(r),
                rusqlite::types::ValueRef::Text(t) => SqlValue::Text(String::from_utf8_lossy(t).into_owned()),
                rusqlite::types::ValueRef::Blob(b) => SqlValue::Blob(b.to_vec()),
            });
        }
        out.push(values);
    }
    Ok(out)
}

#[cfg(feature = "sqlite")]
fn bind_sqlite(stmt: &mut rusqlite::CachedStatement<'_>, params: &[&dyn ToParam]) -> Result<(), SqlError> {
    let count = stmt.parameter_count();
    for i in 1..=count {
        // `$N` binds the N-th parameter whatever its place in the statement; `?` binds in order.
        let slot = match stmt.parameter_name(i) {
            Some(name) => match name.strip_prefix('$').and_then(|n| n.parse::<usize>().ok()) {
                Some(n) if n >= 1 => n - 1,
                _ => return Err(SqlError(format!("parameter {name} is not of the form $N"))),
            },
            None => i - 1,
        };
        let p = params.get(slot).ok_or_else(|| {
            SqlError(format!("the statement uses parameter ${}, only {} were given", slot + 1, params.len()))
        })?;
        let r = match p.to_param() {
            Param::Null => stmt.raw_bind_parameter(i, rusqlite::types::Null),
            Param::Int(v) => stmt.raw_bind_parameter(i, v),
            Param::Real(v) => stmt.raw_bind_parameter(i, v),
            Param::Text(v) => stmt.raw_bind_parameter(i, v),
            Param::Blob(v) => stmt.raw_bind_parameter(i, v),
            Param::Bool(v) => stmt.raw_bind_parameter(i, v),
        };
        r.map_err(|e| SqlError(e.to_string()))?;
    }
    Ok(())
}

/// A pipelined statement: sent, its outcome not yet read (or read already, if it was ready
/// when first polled).
#[cfg(feature = "postgres")]
enum Pending {
    Sent(Arc<str>, Pin<Box<dyn Future<Output = Result<u64, tokio_postgres::Error>> + Send>>),
    Done(Arc<str>, Result<u64, tokio_postgres::Error>),
}

/// A PostgreSQL connection as the runner uses it: prepared statements cached by text, and the
/// pipelined statements whose outcomes are still to be read. Its methods run on a thread of
/// tokio's blocking pool and wait on the runtime (`handle`) where they need an answer.
#[cfg(feature = "postgres")]
pub(crate) struct PgConn {
    pub(crate) client: Arc<tokio_postgres::Client>,
    pub(crate) handle: tokio::runtime::Handle,
    statements: HashMap<String, tokio_postgres::Statement>,
    pending: Vec<Pending>,
    /// False while the runner replays a failed page statement by statement.
    pub(crate) pipelined: bool,
}

#[cfg(feature = "postgres")]
impl PgConn {
    pub(crate) fn new(client: tokio_postgres::Client, handle: tokio::runtime::Handle) -> Self {
        Self { client: Arc::new(client), handle, statements: HashMap::new(), pending: Vec::new(), pipelined: true }
    }

    fn statement(&mut self, sql: &str) -> Result<tokio_postgres::Statement, SqlError> {
        if let Some(s) = self.statements.get(sql) {
            return Ok(s.clone());
        }
        self.flush()?;
        let stmt = self
            .handle
            .block_on(self.client.prepare(sql))
            .map_err(|e| SqlError(format!("{} in {sql:?}", pg_message(&e))))?;
        if self.statements.len() >= 256 {
            self.statements.clear(); // a projection has a handful of statements; this only bounds a runaway
        }
        self.statements.insert(sql.to_string(), stmt.clone());
        Ok(stmt)
    }

    fn execute_pipelined(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<(), SqlError> {
        if !self.pipelined {
            return self.execute_count(sql, params).map(drop);
        }
        let stmt = self.statement(sql)?;
        let params = OwnedParam::all(params);
        let client = self.client.clone();
        let mut fut: Pin<Box<dyn Future<Output = _> + Send>> =
            Box::pin(async move { client.execute_raw(&stmt, params.iter().map(PgParam::owned)).await });
        // The first poll encodes the statement and queues it on the connection (tokio-postgres
        // sends requests in the order they are first polled); the answer is read at the flush.
        let mut cx = std::task::Context::from_waker(futures_util::task::noop_waker_ref());
        let sql: Arc<str> = sql.into();
        self.pending.push(match fut.as_mut().poll(&mut cx) {
            std::task::Poll::Ready(r) => Pending::Done(sql, r),
            std::task::Poll::Pending => Pending::Sent(sql, fut),
        });
        Ok(())
    }

    /// Reads the outcome of every pipelined statement, in order; the first failure.
    pub(crate) fn flush(&mut self) -> Result<(), SqlError> {
        if self.pending.is_empty() {
            return Ok(());
        }
        let pending = std::mem::take(&mut self.pending);
        self.handle.block_on(async move {
            let mut first = None;
            // Every answer is read, even after a failure, so none is left on the connection.
            for p in pending {
                let (sql, r) = match p {
                    Pending::Sent(sql, fut) => (sql, fut.await),
                    Pending::Done(sql, r) => (sql, r),
                };
                if let (Err(e), None) = (r, &first) {
                    first = Some(SqlError(format!("{} in {sql:?}", pg_message(&e))));
                }
            }
            first.map_or(Ok(()), Err)
        })
    }

    /// Drops the outcomes of pipelined statements (the transaction is being rolled back).
    pub(crate) fn discard(&mut self) {
        let _ = self.flush();
    }

    fn execute_count(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<u64, SqlError> {
        let stmt = self.statement(sql)?;
        self.flush()?;
        let params: Vec<PgParam<'_>> = params.iter().map(|p| PgParam(p.to_param())).collect();
        self.handle
            .block_on(self.client.execute_raw(&stmt, params.iter()))
            .map_err(|e| SqlError(format!("{} in {sql:?}", pg_message(&e))))
    }

    fn query(&mut self, sql: &str, params: &[&dyn ToParam]) -> Result<Vec<Row>, SqlError> {
        let stmt = self.statement(sql)?;
        self.flush()?;
        let params: Vec<PgParam<'_>> = params.iter().map(|p| PgParam(p.to_param())).collect();
        let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
            params.iter().map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
        let rows = self
            .handle
            .block_on(self.client.query(&stmt, &refs))
            .map_err(|e| SqlError(format!("{} in {sql:?}", pg_message(&e))))?;
        pg_rows(&rows)
    }

    pub(crate) fn batch(&mut self, sql: &str) -> Result<(), SqlError> {
        self.flush()?;
        self.handle
            .block_on(self.client.batch_execute(sql))
            .map_err(|e| SqlError(format!("{} in {sql:?}", pg_message(&e))))
    }
}

/// Runs a query from async code (outside the runner's transactions).
#[cfg(feature = "postgres")]
pub(crate) async fn pg_query(
    client: &tokio_postgres::Client,
    sql: &str,
    params: &[OwnedParam],
) -> Result<Vec<Row>, SqlError> {
    let params: Vec<PgParam<'_>> = params.iter().map(PgParam::owned).collect();
    let refs: Vec<&(dyn tokio_postgres::types::ToSql + Sync)> =
        params.iter().map(|p| p as &(dyn tokio_postgres::types::ToSql + Sync)).collect();
    let rows = client.query(sql, &refs).await.map_err(|e| SqlError(format!("{} in {sql:?}", pg_message(&e))))?;
    pg_rows(&rows)
}

/// Rows decoded into [`SqlValue`]s by their column types.
#[cfg(feature = "postgres")]
pub(crate) fn pg_rows(rows: &[tokio_postgres::Row]) -> Result<Vec<Row>, SqlError> {
    rows.iter()
        .map(|row| {
            (0..row.len())
                .map(|i| row.try_get::<_, PgValue>(i).map(|v| v.0).map_err(|e| SqlError(e.to_string())))
                .collect()
        })
        .collect()
}

/// The server's message (with its detail) rather than postgres' terse "db error".
#[cfg(feature = "postgres")]
pub(crate) fn pg_message(e: &tokio_postgres::Error) -> String {
    match e.as_db_error() {
        Some(db) => match db.detail() {
            Some(d) => format!("{}: {} ({d})", db.severity(), db.message()),
            None => format!("{}: {}", db.severity(), db.message()),
        },
        None => e.to_string(),
    }
}

/// A parameter converted to the type PostgreSQL expects for its slot.
#[cfg(feature = "postgres")]
#[derive(Debug)]
struct PgParam<'a>(Param<'a>);

#[cfg(feature = "postgres")]
impl PgParam<'_> {
    fn owned(p: &OwnedParam) -> PgParam<'_> {
        PgParam(p.to_param())
    }
}

#[cfg(feature = "postgres")]
impl tokio_postgres::types::ToSql for PgParam<'_> {
    fn to_sql(
        &self,
        ty: &tokio_postgres::types::Type,
        out: &mut bytes::BytesMut,
    ) -> Result<tokio_postgres::types::IsNull, Box<dyn std::error::Error + Sync + Send>> {
        use bytes::BufMut;
        use tokio_postgres::types::{IsNull, Type};
        let mismatch = || -> Box<dyn std::error::Error + Sync + Send> {
            format!("cannot send {:?} to a parameter of type {ty}", self.0).into()
        };
        match (self.0, ty) {
            (Param::Null, _) => return Ok(IsNull::Yes),
            (Param::Int(v), &Type::INT2) => out.put_i16(i16::try_from(v)?),
            (Param::Int(v), &Type::INT4) => out.put_i32(i32::try_from(v)?),
            (Param::Int(v), &Type::INT8) => out.put_i64(v),
            (Param::Int(v), &Type::FLOAT4) => out.put_f32(v as f32),
            (Param::Int(v), &Type::FLOAT8) => out.put_f64(v as f64),
            (Param::Int(v), &Type::TEXT | &Type::VARCHAR) => {
                return PgParam(Param::Text(&v.to_string())).to_sql(&Type::TEXT, out)
            }
            (Param::Real(v), &Type::FLOAT4) => out.put_f32(v as f32),
            (Param::Real(v), &Type::FLOAT8) => out.put_f64(v),
            (Param::Bool(v), &Type::BOOL) => out.put_u8(u8::from(v)),
            (Param::Bool(v), &Type::INT2 | &Type::INT4 | &Type::INT8) => {
                return PgParam(Param::Int(i64::from(v))).to_sql(ty, out)
            }
            (
                Param::Text(v),
                &Type::TEXT | &Type::VARCHAR | &Type::BPCHAR | &Type::NAME | &Type::UNKNOWN | &Type::JSON,
            ) => out.put_slice(v.as_bytes()),
            (Param::Text(v), &Type::JSONB) => {
                out.put_u8(1); // JSONB's binary format: a version byte, then the text
                out.put_slice(v.as_bytes());
            }
            (Param::Blob(v), &Type::BYTEA) => out.put_slice(v),
            _ => return Err(mismatch()),
        }
        Ok(IsNull::No)
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true // checked per value in to_sql, where the mismatch can be named
    }

    tokio_postgres::types::to_sql_checked!();
}

/// A column value decoded from PostgreSQL's binary format by its type.
#[cfg(feature = "postgres")]
struct PgValue(SqlValue);

#[cfg(feature = "postgres")]
impl<'a> tokio_postgres::types::FromSql<'a> for PgValue {
    fn from_sql(
        ty: &tokio_postgres::types::Type,
        raw: &'a [u8],
    ) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        use tokio_postgres::types::Type;
        let v = match *ty {
            Type::INT2 => SqlValue::Int(i64::from(i16::from_be_bytes(raw.try_into()?))),
            Type::INT4 => SqlValue::Int(i64::from(i32::from_be_bytes(raw.try_into()?))),
            Type::INT8 => SqlValue::Int(i64::from_be_bytes(raw.try_into()?)),
            Type::FLOAT4 => SqlValue::Real(f64::from(f32::from_be_bytes(raw.try_into()?))),
            Type::FLOAT8 => SqlValue::Real(f64::from_be_bytes(raw.try_into()?)),
            Type::BOOL => SqlValue::Int(i64::from(raw.first().copied().unwrap_or(0) != 0)),
            Type::BYTEA => SqlValue::Blob(raw.to_vec()),
            Type::JSONB => SqlValue::Text(String::from_utf8(raw.get(1..).unwrap_or_default().to_vec())?),
            Type::TEXT | Type::VARCHAR | Type::BPCHAR | Type::NAME | Type::JSON | Type::UNKNOWN => {
                SqlValue::Text(String::from_utf8(raw.to_vec())?)
            }
            ref other => {
                return Err(format!(
                "column type {other} is not supported by evident's projection SQL; cast it (e.g. ::text or ::bigint)"
            )
                .into())
            }
        };
        Ok(PgValue(v))
    }

    fn from_sql_null(_: &tokio_postgres::types::Type) -> Result<Self, Box<dyn std::error::Error + Sync + Send>> {
        Ok(PgValue(SqlValue::Null))
    }

    fn accepts(_: &tokio_postgres::types::Type) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn declared_tables_are_substituted_and_others_refused() {
        let mut names = TableNames::new(&["balances"], "__rebuild");
        assert_eq!(
            &*names.rewrite("UPDATE {balances} SET x = {balances}.x + 1").expect("ok"),
            "UPDATE balances__rebuild SET x = balances__rebuild.x + 1"
        );
        assert_eq!(&*names.rewrite("SELECT 1").expect("ok"), "SELECT 1");
        assert!(names.rewrite("SELECT * FROM {other}").is_err());
        assert!(names.rewrite("SELECT * FROM {balances").is_err());
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn sqlite_binds_dollar_parameters_by_number() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        let mut names = TableNames::new(&["t"], "");
        let mut tx = Tx { inner: TxInner::Sqlite(&conn), names: &mut names };
        tx.batch("CREATE TABLE {t} (a TEXT, b BIGINT)").expect("create");
        tx.execute("INSERT INTO {t} (b, a) VALUES ($2, $1)", &[&"x", &7i64]).expect("insert");
        assert_eq!(tx.execute_count("UPDATE {t} SET b = $1", &[&7i64]).expect("update"), 1);
        let rows = tx.query("SELECT a, b FROM {t} WHERE b = $1", &[&7i64]).expect("query");
        assert_eq!(rows, vec![vec![SqlValue::Text("x".into()), SqlValue::Int(7)]]);
        assert!(tx.execute("INSERT INTO {t} (a) VALUES ($3)", &[&"x"]).is_err());
    }

    #[cfg(feature = "sqlite")]
    #[test]
    fn execute_values_writes_every_row_in_few_cached_shapes() {
        let conn = rusqlite::Connection::open_in_memory().expect("open");
        let mut names = TableNames::new(&["t"], "");
        let mut tx = Tx { inner: TxInner::Sqlite(&conn), names: &mut names };
        tx.batch("CREATE TABLE {t} (k TEXT PRIMARY KEY, v BIGINT NOT NULL, n BIGINT NOT NULL)").expect("create");
        let (head, tail) =
            ("INSERT INTO {t} (k, v, n) VALUES", "ON CONFLICT (k) DO UPDATE SET v = {t}.v + excluded.v, n = {t}.n + 1");
        // 1,300 rows: two full statements of 512, then 256 + 16 + 4.
        let keys: Vec<String> = (0..1300).map(|i| format!("k{i}")).collect();
        let values: Vec<i64> = (0..1300).collect();
        let mut params: Vec<&dyn ToParam> = Vec::new();
        for (k, v) in keys.iter().zip(&values) {
            params.extend([k as &dyn ToParam, v, &1i64]);
        }
        tx.execute_values(head, 3, &params, tail).expect("insert");
        tx.execute_values(head, 3, &params[..3 * 7], tail).expect("upsert seven again");
        let rows = tx.query("SELECT count(*), sum(v), sum(n) FROM {t}", &[]).expect("read");
        let sum: i64 = values.iter().sum::<i64>() + values[..7].iter().sum::<i64>();
        assert_eq!(rows, vec![vec![SqlValue::Int(1300), SqlValue::Int(sum), SqlValue::Int(1307)]]);
        let shapes: Vec<usize> = tx.names.values.iter().map(|v| v.rows).collect();
        assert_eq!(shapes, vec![512, 256, 16, 4, 2, 1], "one statement per shape, each built once");
        assert!(tx.names.values.iter().all(|v| v.text.starts_with("INSERT INTO t (k, v, n) VALUES (?, ?, ?)")));
        assert!(tx.execute_values(head, 3, &params[..4], tail).is_err(), "4 parameters are not rows of 3");
        assert!(tx.execute_values(head, 0, &[], tail).is_err());
    }
}
