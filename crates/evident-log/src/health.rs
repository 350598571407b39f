//! The store's health, as one answer an operator or a load balancer can act on: `ok`,
//! `degraded` (serving, but something needs a human) or `poisoned` (writes refused until a
//! restart), with a reason per condition, each with a stable code and a message.
//!
//! Why a registry of damaged reads. A frame whose checksum does not match is never served: the
//! read that meets it fails with `Error::Corrupted`. But that read is one request among many,
//! and the store keeps serving every other region, so without a record of it the damage would
//! show only as scattered 500s while `/health` said `ok` (the reliability probe, row 7). Every
//! read that meets damage therefore notes it here: the first [`DAMAGE_SITES_MAX`] distinct
//! positions in full (file, byte, topic/partition/offset and commit sequence when the read
//! knew them, first and last time seen, how many reads met it) and a count of every such read,
//! so memory stays bounded however often a client retries the damaged region. The registry
//! lives in memory: a restart forgets it, and the first read of the region records it again
//! (recovery re-reads only the journal's tail, so damage in checkpointed data is found by reads).

use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

use evident_core::TopicName;

use crate::log::{Log, RecoveryReport};
use crate::recovery::Truncation;

/// How many distinct damaged positions are kept in full; later ones are only counted.
pub const DAMAGE_SITES_MAX: usize = 16;

/// The overall state, the worst of the reasons.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum HealthStatus {
    /// Serving reads and writes; nothing needs attention.
    Ok,
    /// Serving, but a condition needs attention (a damaged region, a failing checkpoint, a
    /// full disk): reads of intact data and (unless read-only) appends are still answered.
    Degraded,
    /// A failure that can lose or reorder acknowledged data (a failed `fdatasync` or journal
    /// write): writes are refused until the store is reopened.
    Poisoned,
}

impl HealthStatus {
    /// The wire name: `ok`, `degraded`, `poisoned`.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Ok => "ok",
            Self::Degraded => "degraded",
            Self::Poisoned => "poisoned",
        }
    }
}

/// The stable code of a reason, for alerting rules and scripts; the message is for people.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ReasonCode {
    /// A failed sync or journal write: writes refused until restart (status `poisoned`).
    Poisoned,
    /// The background index checkpoint keeps failing: data is safe, restart time grows.
    CheckpointFailing,
    /// A read found a frame or record whose checksum does not match; it is never served.
    Damaged,
    /// The disk is full: the log is read-only ([`Log::read_only`]) until a probe finds space.
    DiskFull,
}

impl ReasonCode {
    /// The wire name, in snake case.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::Poisoned => "poisoned",
            Self::CheckpointFailing => "checkpoint_failing",
            Self::Damaged => "damaged",
            Self::DiskFull => "disk_full",
        }
    }

    /// The status this reason alone puts the store in.
    pub fn status(self) -> HealthStatus {
        match self {
            Self::Poisoned => HealthStatus::Poisoned,
            Self::CheckpointFailing | Self::Damaged | Self::DiskFull => HealthStatus::Degraded,
        }
    }
}

/// One condition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HealthReason {
    /// What kind of condition.
    pub code: ReasonCode,
    /// What happened, where, and what it means, for a person.
    pub message: String,
}

/// Where a read found damage.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DamageSite {
    /// The segment file.
    pub file: PathBuf,
    /// Byte position within the file of the damaged frame or record.
    pub byte: u64,
    /// The topic the read was for, when the read knew it.
    pub topic: Option<TopicName>,
    /// The partition, when known.
    pub partition: Option<u32>,
    /// The first offset the damaged frame or record holds, when known.
    pub offset: Option<u64>,
    /// The first commit sequence it holds, when known.
    pub sequence: Option<u64>,
    /// What the check found.
    pub what: String,
    /// When a read first met it (ms since the epoch, the log's clock).
    pub first_seen_ms: i64,
    /// When a read last met it.
    pub last_seen_ms: i64,
    /// Reads that met it.
    pub reads: u64,
}

/// What reads found damaged since the log was opened.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DamageReport {
    /// Reads refused because they met damage (every one, listed position or not).
    pub reads: u64,
    /// The first [`DAMAGE_SITES_MAX`] distinct positions, in the order they were found.
    pub sites: Vec<DamageSite>,
    /// Reads that met damage at a position not listed because the list was full.
    pub unlisted_reads: u64,
}

/// What the last open found, for information: a torn tail cut or a rebuilt checkpoint is
/// reported but does not by itself make the store degraded (recovery did what it must).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RecoveryNote {
    /// The torn tail cut, if one was.
    pub truncation: Option<Truncation>,
    /// Why the index checkpoint was rebuilt (damaged, missing or behind the journal), if it was.
    pub checkpoint_rebuilt: Option<String>,
    /// Frames replayed.
    pub frames_replayed: u64,
    /// How long opening took, in milliseconds.
    pub duration_ms: u64,
}

/// [`Log::health`]'s answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogHealth {
    /// The worst status among the reasons (`Ok` when there is none).
    pub status: HealthStatus,
    /// Every current condition, worst first.
    pub reasons: Vec<HealthReason>,
    /// What reads found damaged.
    pub damage: DamageReport,
    /// What the last open found.
    pub recovery: RecoveryNote,
}

/// Where a read was when it met damage: what it knew of the data (file and byte come from the
/// error itself).
#[derive(Debug, Clone, Copy)]
pub(crate) struct ReadSite<'a> {
    pub topic: &'a TopicName,
    pub partition: u32,
    pub offset: u64,
    pub sequence: u64,
}

/// The bounded record of damage found by reads; one per log.
#[derive(Debug, Default)]
pub(crate) struct DamageRegistry {
    /// Every read that met damage (read by metrics without the lock).
    reads: AtomicU64,
    sites: Mutex<(Vec<DamageSite>, u64)>,
}

impl DamageRegistry {
    /// Notes that a read met `error` at `site`, if `error` is damage; passes the error on.
    pub(crate) fn note(&self, error: crate::Error, site: ReadSite<'_>, now_ms: i64) -> crate::Error {
        if let crate::Error::Corrupted { file, offset, what } = &error {
            self.record(file, *offset, what, site, now_ms);
        }
        error
    }

    fn record(&self, file: &std::path::Path, byte: u64, what: &str, site: ReadSite<'_>, now_ms: i64) {
        self.reads.fetch_add(1, Ordering::Relaxed);
        let mut guard = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        let (sites, unlisted) = &mut *guard;
        if let Some(known) = sites.iter_mut().find(|s| s.byte == byte && s.file == file) {
            known.reads += 1;
            known.last_seen_ms = now_ms;
            return;
        }
        if sites.len() >= DAMAGE_SITES_MAX {
            *unlisted += 1;
            return;
        }
        tracing::error!(
            file = %file.display(), byte, topic = %site.topic, partition = site.partition, offset = site.offset,
            sequence = site.sequence, what, "a read found damaged bytes; they are not served"
        );
        sites.push(DamageSite {
            file: file.to_path_buf(),
            byte,
            topic: Some(site.topic.clone()),
            partition: Some(site.partition),
            offset: Some(site.offset),
            sequence: Some(site.sequence),
            what: what.to_string(),
            first_seen_ms: now_ms,
            last_seen_ms: now_ms,
            reads: 1,
        });
    }

    /// Reads that met damage so far.
    pub(crate) fn reads(&self) -> u64 {
        self.reads.load(Ordering::Relaxed)
    }

    fn report(&self) -> DamageReport {
        let guard = self.sites.lock().unwrap_or_else(|e| e.into_inner());
        DamageReport { reads: self.reads(), sites: guard.0.clone(), unlisted_reads: guard.1 }
    }
}

impl RecoveryNote {
    fn of(report: &RecoveryReport) -> Self {
        Self {
            truncation: report.replay.truncation.clone(),
            checkpoint_rebuilt: report.checkpoint_rebuilt(),
            frames_replayed: report.replay.frames,
            duration_ms: u64::try_from(report.duration.as_millis()).unwrap_or(u64::MAX),
        }
    }
}

impl Log {
    /// The store's health: `poisoned` if a failed write or sync refuses writes until restart,
    /// `degraded` if it serves but a condition needs attention, `ok` otherwise; with every
    /// condition as a reason, what reads found damaged, and what the last open found.
    pub fn health(&self) -> LogHealth {
        let (poisoned, disk_full, checkpoint_failing) = {
            let st = self.inner.lock();
            (
                st.poisoned.clone(),
                st.disk_full.as_ref().map(|d| d.reason.clone()),
                st.checkpoint_failed.as_ref().map(|(why, _)| why.clone()),
            )
        };
        let damage = self.inner.damage.report();
        let mut reasons = Vec::new();
        if let Some(why) = poisoned {
            reasons.push(HealthReason {
                code: ReasonCode::Poisoned,
                message: format!("{why}; writes are refused until the store is restarted, reads are served"),
            });
        }
        // The log's only read-only state is a full disk (`Log::read_only`): writes are refused
        // with `DiskFull` until a probe finds space again, reads keep being served.
        if let Some(why) = disk_full {
            reasons.push(HealthReason {
                code: ReasonCode::DiskFull,
                message: format!(
                    "{why}; the store is read-only: writes are refused (nothing refused is stored) until free \
                     space is found again (probed with backoff), reads are served"
                ),
            });
        }
        if let Some(why) = checkpoint_failing {
            reasons.push(HealthReason {
                code: ReasonCode::CheckpointFailing,
                message: format!(
                    "{why}; the previous checkpoint stays in place and no data is at risk, but the next \
                     restart replays more journal (retried with backoff)"
                ),
            });
        }
        if damage.reads > 0 {
            reasons.push(HealthReason { code: ReasonCode::Damaged, message: damage_message(&damage) });
        }
        reasons.sort_by_key(|r| std::cmp::Reverse(r.code.status()));
        let status = reasons.iter().map(|r| r.code.status()).max().unwrap_or(HealthStatus::Ok);
        LogHealth { status, reasons, damage, recovery: RecoveryNote::of(self.recovery_report()) }
    }

    /// Reads refused since open because they met damaged bytes (for metrics; cheap).
    pub fn damaged_reads(&self) -> u64 {
        self.inner.damage.reads()
    }
}

fn damage_message(damage: &DamageReport) -> String {
    let mut message = format!(
        "{} read(s) met damaged bytes at {}{} position(s) and were refused; the damage is never served and \
         other data keeps being served",
        damage.reads,
        damage.sites.len(),
        if damage.unlisted_reads > 0 { " or more" } else { "" }
    );
    if let Some(first) = damage.sites.first() {
        message.push_str(&format!("; first: {} byte {}", first.file.display(), first.byte));
        if let (Some(topic), Some(partition), Some(offset)) = (&first.topic, first.partition, first.offset) {
            message.push_str(&format!(" ({topic}/{partition} offset {offset}"));
            if let Some(sequence) = first.sequence {
                message.push_str(&format!(", sequence {sequence}"));
            }
            message.push(')');
        }
        message.push_str(&format!(": {}", first.what));
    }
    message
}
