//! `POST /v1/sql`: one SQL statement in, a result set or a status out (docs/sql.md).

use serde::{Deserialize, Serialize};

/// The request: one statement, and for pull queries read-your-writes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct SqlRequest {
    /// One statement (a trailing `;` is allowed): `CREATE TABLE|STREAM name AS SELECT ...`,
    /// `SELECT ...` (a pull query; with `EMIT CHANGES` a push query, answered as
    /// `text/event-stream`), `SHOW TABLES|STREAMS|QUERIES`, `DESCRIBE name`,
    /// `DROP TABLE|STREAM name`, `EXPLAIN statement`.
    pub sql: String,
    /// A pull query waits until the view has applied the source event with this commit
    /// sequence (the `sequence` an append returned): read-your-writes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min_sequence: Option<u64>,
    /// How long `min_sequence` may wait, in ms (default 5,000; at most 30,000).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(maximum = 30000))]
    pub timeout_ms: Option<u64>,
}

/// A column of a result.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SqlColumn {
    /// Name.
    pub name: String,
    /// SQL type: BOOLEAN, BIGINT, DOUBLE, STRING, ARRAY, STRUCT, or ANY (a JSON field whose
    /// events disagree on its type).
    #[serde(rename = "type")]
    pub ty: String,
}

/// The answer: `columns` and `rows` for a query; `status`, `statement` and `message` for a
/// statement that changes something.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SqlResponse {
    /// The result's columns (queries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub columns: Option<Vec<SqlColumn>>,
    /// The result's rows, each a list of values in column order (queries).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[cfg_attr(feature = "openapi", schema(value_type = Option<Vec<Vec<Object>>>))]
    pub rows: Option<Vec<Vec<serde_json::Value>>>,
    /// `ok` (statements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub status: Option<String>,
    /// Which statement ran, e.g. `CREATE TABLE` (statements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub statement: Option<String>,
    /// What happened (statements).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message: Option<String>,
}
