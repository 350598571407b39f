//! Operations: the health reply.

use serde::{Deserialize, Serialize};

/// Whether the store acknowledges writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Serving reads and writes.
    Ok,
    /// A failed write or sync poisoned the store; a restart recovers.
    Unavailable,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok` or `unavailable`.
    pub status: HealthStatus,
    /// evident's version.
    pub version: String,
    /// Only when `ok`: the next commit sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_sequence: Option<u64>,
    /// Only when `ok`: journal position up to which everything is durable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable_position: Option<u64>,
    /// Only when `ok`: the sync policy (`always`, `never`, `interval:<n>ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsync: Option<String>,
    /// Only when `unavailable`: why the store is poisoned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
}
