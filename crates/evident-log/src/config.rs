//! How a log is opened: where it syncs, how big its files grow, what it accepts.

use std::fmt;
use std::str::FromStr;
use std::time::Duration;

/// When appends become durable, and so when they are acknowledged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsyncPolicy {
    /// `fdatasync` before every acknowledgement; concurrent appends share one sync (group
    /// commit). The default, and the only policy under which an acknowledged append survives a
    /// power loss.
    #[default]
    Always,
    /// Acknowledge after `write(2)`; sync at most this long later. A process crash loses
    /// nothing, a power loss loses up to the interval.
    Interval(Duration),
    /// Acknowledge after `write(2)`; never sync (the kernel writes back when it likes). For
    /// tests and throw-away data only.
    Never,
}

impl FromStr for FsyncPolicy {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "always" => Ok(Self::Always),
            "never" => Ok(Self::Never),
            other => {
                let Some(ms) = other.strip_prefix("interval:").and_then(|r| r.strip_suffix("ms")) else {
                    return Err(format!("invalid fsync policy {s:?}: use always, interval:<N>ms or never"));
                };
                let ms: u64 = ms.parse().map_err(|_| format!("invalid fsync interval in {s:?}"))?;
                if ms == 0 {
                    return Err("fsync interval must be at least 1ms (use always)".into());
                }
                Ok(Self::Interval(Duration::from_millis(ms)))
            }
        }
    }
}

impl fmt::Display for FsyncPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Always => f.write_str("always"),
            Self::Interval(d) => write!(f, "interval:{}ms", d.as_millis()),
            Self::Never => f.write_str("never"),
        }
    }
}

/// Options of [`crate::Log::open`].
#[derive(Debug, Clone)]
pub struct LogConfig {
    /// Sync policy.
    pub fsync: FsyncPolicy,
    /// A journal segment is closed and a new one started once it would grow past this size.
    pub segment_size_max: u64,
    /// Largest record batch accepted in one append (Kafka's `message.max.bytes` is ~1 MiB;
    /// evident allows more for bulk imports).
    pub batch_size_max: usize,
    /// An index checkpoint is written after this many journal bytes, so a restart re-reads
    /// at most this much of the journal.
    pub checkpoint_interval_bytes: u64,
    /// When a small commit round would grow the active segment, zeros are written this far
    /// ahead of it (in the same round, under the same sync), so the rounds that follow
    /// overwrite allocated space and their `fdatasync` has no file size to commit. 0 turns it
    /// off. Rounds larger than [`PREALLOCATE_ROUND_MAX`] grow the file directly: their sync
    /// costs more than a size update anyway.
    pub preallocate_bytes: u64,
    /// Most records that open transactions may hold pending at once, over all producers: each
    /// pending record is kept in memory (key, event id, place) until its transaction ends.
    /// Kafka bounds a transaction only by its timeout; this bounds the memory too.
    pub txn_pending_records_max: usize,
}

/// Largest commit round that pre-allocates ahead of itself (see
/// [`LogConfig::preallocate_bytes`]).
pub const PREALLOCATE_ROUND_MAX: u64 = 256 << 10;

impl Default for LogConfig {
    fn default() -> Self {
        Self {
            fsync: FsyncPolicy::Always,
            segment_size_max: 256 << 20,
            batch_size_max: 8 << 20,
            checkpoint_interval_bytes: 64 << 20,
            preallocate_bytes: 8 << 20,
            txn_pending_records_max: 1 << 20,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn fsync_policy_parses_its_display() {
        for p in [FsyncPolicy::Always, FsyncPolicy::Never, FsyncPolicy::Interval(Duration::from_millis(10))] {
            assert_eq!(p.to_string().parse::<FsyncPolicy>(), Ok(p));
        }
        assert!("interval:0ms".parse::<FsyncPolicy>().is_err());
        assert!("interval:10".parse::<FsyncPolicy>().is_err());
        assert!("sometimes".parse::<FsyncPolicy>().is_err());
    }
}
