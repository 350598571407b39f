//! Operations: the health reply.

use serde::{Deserialize, Serialize};

/// The store's state, the worst of its reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HealthStatus {
    /// Serving reads and writes; nothing needs attention.
    Ok,
    /// Serving (HTTP 200), but a condition in `reasons` needs attention: a damaged region
    /// (never served), a failing index checkpoint, a full disk.
    Degraded,
    /// A failed write or sync poisoned the store: writes are refused until a restart (HTTP 503).
    Poisoned,
}

/// The stable code of a health reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum HealthReasonCode {
    /// A failed sync or journal write: writes refused until restart.
    Poisoned,
    /// The background index checkpoint keeps failing: data safe, restart time grows.
    CheckpointFailing,
    /// A read found bytes whose checksum does not match; they are never served.
    Damaged,
    /// The disk is full: the store is read-only (writes refused, nothing refused is stored,
    /// reads served) until free space is found again.
    DiskFull,
}

/// One condition of the store.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthReason {
    /// What kind of condition (stable, for alerting rules).
    pub code: HealthReasonCode,
    /// What happened, where, and what it means.
    pub message: String,
}

/// A position where reads found damage.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct DamagedPosition {
    /// The segment file.
    pub file: String,
    /// Byte position within the file of the damaged frame or record.
    pub byte: u64,
    /// The topic the read was for.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub topic: Option<String>,
    /// The partition.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub partition: Option<u32>,
    /// The first offset the damaged frame or record holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub offset: Option<u64>,
    /// The first commit sequence it holds.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sequence: Option<u64>,
    /// What the check found.
    pub what: String,
    /// When a read first met it (ms since the epoch).
    pub first_seen_ms: i64,
    /// When a read last met it (ms since the epoch).
    pub last_seen_ms: i64,
    /// Reads that met it.
    pub reads: u64,
}

/// What reads found damaged since the server started.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct HealthDamage {
    /// Reads refused because they met damaged bytes.
    pub reads: u64,
    /// The first 16 distinct positions, in the order found.
    pub positions: Vec<DamagedPosition>,
    /// Reads that met damage at a position not listed because the list was full.
    pub unlisted_reads: u64,
}

/// A torn tail the last recovery cut.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RecoveryTruncation {
    /// The segment file in which the cut starts.
    pub file: String,
    /// Byte within that file where the cut starts.
    pub from_byte: u64,
    /// That file's length before the cut.
    pub to_byte: u64,
    /// Journal position where the cut starts.
    pub journal_position: u64,
    /// Bytes cut in all, later segment files included (pre-allocated zeros count too).
    pub bytes: u64,
    /// Segment files removed whole.
    pub segments_removed: Vec<String>,
    /// Intact frames found after the bad point and cut with it.
    pub intact_frames_cut: u64,
    /// The bytes those intact frames took.
    pub intact_bytes_cut: u64,
    /// Why no valid frame starts where the cut starts.
    pub why: String,
}

/// What the last start's recovery found: information, not a degradation.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LastRecovery {
    /// The torn tail cut, if one was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub truncation: Option<RecoveryTruncation>,
    /// Why the index checkpoint was rebuilt (damaged, missing, behind the journal), if it was.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub checkpoint_rebuilt: Option<String>,
    /// Journal frames replayed.
    pub frames_replayed: u64,
    /// How long recovery took, in milliseconds.
    pub duration_ms: u64,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// `ok`, `degraded` or `poisoned`.
    pub status: HealthStatus,
    /// evident's version.
    pub version: String,
    /// Unless `poisoned`: the next commit sequence.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next_sequence: Option<u64>,
    /// Unless `poisoned`: journal position up to which everything is durable.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub durable_position: Option<u64>,
    /// Unless `poisoned`: the sync policy (`always`, `never`, `interval:<n>ms`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fsync: Option<String>,
    /// Only when `poisoned`: why the store is poisoned.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub reason: Option<String>,
    /// Every current condition, worst first (absent when `ok`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub reasons: Vec<HealthReason>,
    /// Where reads found damage, if any did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub damage: Option<HealthDamage>,
    /// What the last start's recovery found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_recovery: Option<LastRecovery>,
}
