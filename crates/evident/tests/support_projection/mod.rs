//! Shared helpers of the projection tests: where a read model lives (a SQLite file, or a fresh
//! PostgreSQL schema of the test database named by `EVIDENT_TEST_POSTGRES_URL`), and readers of
//! the bookkeeping tables that do not go through the runner.
//!
//! PostgreSQL tests are skipped, with a line saying so, when `EVIDENT_TEST_POSTGRES_URL` is
//! unset, unless `EVIDENT_REQUIRE_POSTGRES=1` (CI), where a missing database fails them. Each
//! test gets its own schema (put first on the connection's `search_path`), so the bookkeeping
//! tables `evident_checkpoints` and `evident_parked` are its own too and tests run in parallel
//! against one database; the schema is dropped when the test ends.

// Each test file uses its own part of the helpers.
#![allow(dead_code)]

use std::path::{Path, PathBuf};

use evident::projection::{Sink, SqlValue};

/// The variable naming the test database.
pub const POSTGRES_URL_ENV: &str = "EVIDENT_TEST_POSTGRES_URL";
/// Set to `1` where PostgreSQL tests must run (CI): a missing database fails them.
pub const REQUIRE_POSTGRES_ENV: &str = "EVIDENT_REQUIRE_POSTGRES";

/// The test database's URL; None (after printing why the test is skipped) when there is none
/// and none is required.
pub fn postgres_url(test: &str) -> Option<String> {
    match std::env::var(POSTGRES_URL_ENV) {
        Ok(url) if !url.trim().is_empty() => Some(url),
        _ => {
            if std::env::var(REQUIRE_POSTGRES_ENV).as_deref() == Ok("1") {
                panic!("{test}: {REQUIRE_POSTGRES_ENV}=1 but {POSTGRES_URL_ENV} is not set (run scripts/postgres-setup.sh)");
            }
            println!("skipped: {test} (PostgreSQL): {POSTGRES_URL_ENV} is not set");
            None
        }
    }
}

/// A random lowercase hex suffix for names that must not collide between runs.
pub fn random_suffix() -> String {
    format!("{:08x}", rand::random::<u32>())
}

/// `url` with `key=value` added to its query string (value percent-encoded).
pub fn with_param(url: &str, key: &str, value: &str) -> String {
    let mut encoded = String::new();
    for b in value.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') {
            encoded.push(char::from(b));
        } else {
            encoded.push_str(&format!("%{b:02X}"));
        }
    }
    let sep = if url.contains('?') { '&' } else { '?' };
    format!("{url}{sep}{key}={encoded}")
}

/// A schema of its own in the test database, dropped (with everything in it) on drop.
pub struct PgSchema {
    admin_url: String,
    /// The schema's name.
    pub schema: String,
    /// The test database's URL with this schema first on the search path.
    pub url: String,
}

impl PgSchema {
    /// Creates schema `evt_<test>_<random>`; None when PostgreSQL tests are skipped.
    pub fn create(test: &str) -> Option<Self> {
        let admin_url = postgres_url(test)?;
        let clean: String =
            test.chars().map(|c| if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' }).collect();
        let mut schema = format!("evt_{clean}");
        schema.truncate(48);
        schema.push('_');
        schema.push_str(&random_suffix());
        let mut client = postgres::Client::connect(&admin_url, postgres::NoTls)
            .unwrap_or_else(|e| panic!("{test}: cannot connect to {POSTGRES_URL_ENV}: {e}"));
        client.batch_execute(&format!("CREATE SCHEMA {schema}")).expect("create the test schema");
        let url = with_param(&admin_url, "options", &format!("-c search_path={schema}"));
        Some(Self { admin_url, schema, url })
    }

    /// A connection to the database (not confined to the schema).
    pub fn admin(&self) -> postgres::Client {
        postgres::Client::connect(&self.admin_url, postgres::NoTls).expect("connect to the test database")
    }
}

impl Drop for PgSchema {
    fn drop(&mut self) {
        if let Ok(mut client) = postgres::Client::connect(&self.admin_url, postgres::NoTls) {
            let _ = client.batch_execute(&format!("DROP SCHEMA IF EXISTS {} CASCADE", self.schema));
        }
    }
}

/// Where a read model lives.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Db {
    /// A SQLite file.
    Sqlite(PathBuf),
    /// A PostgreSQL URL (with its schema on the search path).
    Postgres(String),
}

impl Db {
    /// A SQLite database file in `dir`.
    pub fn sqlite_in(dir: &Path) -> Self {
        Db::Sqlite(dir.join("read-model.sqlite"))
    }

    /// A new connection.
    pub fn sink(&self) -> Sink {
        match self {
            Db::Sqlite(path) => Sink::sqlite(path).expect("open the SQLite sink"),
            Db::Postgres(url) => evident::blocking::postgres_sink(url).expect("connect the PostgreSQL sink"),
        }
    }

    /// `sqlite` or `postgres`, for messages.
    pub fn label(&self) -> &'static str {
        match self {
            Db::Sqlite(_) => "sqlite",
            Db::Postgres(_) => "postgres",
        }
    }

    /// The names of the tables of the database (of the schema, on PostgreSQL).
    pub fn table_names(&self) -> Vec<String> {
        let sql = match self {
            Db::Sqlite(_) => "SELECT name FROM sqlite_master WHERE type = 'table' ORDER BY name",
            Db::Postgres(_) => {
                "SELECT table_name::text FROM information_schema.tables \
                 WHERE table_schema = current_schema() ORDER BY 1"
            }
        };
        let rows = evident::blocking::query(&mut self.sink(), sql, &[]).expect("list tables");
        rows.iter().map(|r| text(&r[0])).collect()
    }
}

/// An integer column.
pub fn int(v: &SqlValue) -> i64 {
    v.as_i64().unwrap_or_else(|| panic!("expected an integer, read {v:?}"))
}

/// A text column.
pub fn text(v: &SqlValue) -> String {
    v.as_str().unwrap_or_else(|| panic!("expected text, read {v:?}")).to_string()
}

/// The checkpoint of projection `key` (None: no row).
pub fn checkpoint(sink: &mut Sink, key: &str) -> Option<u64> {
    let rows =
        evident::blocking::query(sink, "SELECT position FROM evident_checkpoints WHERE projection = $1", &[&key])
            .expect("read the checkpoint");
    rows.first().map(|r| u64::try_from(int(&r[0])).expect("non-negative checkpoint"))
}

/// Every checkpoint row: projection → position.
pub fn checkpoints(sink: &mut Sink) -> Vec<(String, u64)> {
    let rows =
        evident::blocking::query(sink, "SELECT projection, position FROM evident_checkpoints ORDER BY projection", &[])
            .expect("read");
    rows.iter().map(|r| (text(&r[0]), int(&r[1]) as u64)).collect()
}

/// The `evident_parked` rows of projection `key`: (sequence, stream, kind), by sequence.
pub fn parked_rows(sink: &mut Sink, key: &str) -> Vec<(u64, String, String)> {
    let rows = evident::blocking::query(
        sink,
        "SELECT sequence, stream, kind FROM evident_parked WHERE projection = $1 ORDER BY sequence",
        &[&key],
    )
    .expect("read evident_parked");
    rows.iter().map(|r| (int(&r[0]) as u64, text(&r[1]), text(&r[2]))).collect()
}

/// Moves projection `key`'s checkpoint to `position` (to replay what follows it).
pub fn set_checkpoint(sink: &mut Sink, key: &str, position: u64) {
    let pos = i64::try_from(position).expect("fits");
    evident::blocking::query(
        sink,
        "UPDATE evident_checkpoints SET position = $1 WHERE projection = $2 RETURNING position",
        &[&pos, &key],
    )
    .expect("move the checkpoint");
}
