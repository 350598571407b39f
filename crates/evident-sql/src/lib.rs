//! SQL over evident's topics, as ksqlDB writes it: materialized views declared with
//! `CREATE TABLE name AS SELECT ... GROUP BY ...` (and row-by-row `CREATE STREAM`), kept up
//! to date incrementally from the log, exactly once across crashes, each published as a
//! topic Kafka consumers can read; pull queries with any WHERE/ORDER BY/LIMIT, `AS OF` a
//! past sequence or time, read-your-writes (`min_sequence`), and push queries.
//!
//! The path of a statement: [`parse`] (sqlparser, plus ksqlDB's clauses) → [`plan`] (names
//! resolved, types checked) → [`engine`] (runs it). Views are kept by [`maintain`] (one thread
//! each, state and source position written together in one batch of the view's topic) over
//! [`view`] (grouped state and row projection) and [`aggregate`]; their definitions live in
//! [`catalog`]. docs/sql.md is the user's guide.

pub mod aggregate;
pub mod catalog;
pub mod engine;
pub mod error;
pub mod expr;
pub mod functions;
pub mod join;
pub mod maintain;
pub mod parse;
pub mod plan;
pub mod source;
pub mod value;
pub mod view;
pub mod window;

pub use engine::{Engine, Outcome, PushQuery, PushRow, Request, ViewStatus};
pub use error::{Result, SqlError};
pub use plan::Column;
pub use value::{SqlType, Value};
