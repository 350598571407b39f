//! Kafka's control records: the transaction markers a commit or an abort writes into every
//! partition a transaction touched, so that `read_committed` consumers know where a
//! transaction's records end and whether to keep them.
//!
//! A control batch has the transactional and control attribute bits set, the producer id and
//! epoch of the transaction, base sequence -1 and one record whose key is
//! `version: i16 = 0, type: i16` (0 abort, 1 commit) and whose value is
//! `version: i16 = 0, coordinator_epoch: i32` (Kafka's `ControlRecordType` and
//! `EndTransactionMarker`, both big-endian). Consumers skip control batches; they only read the
//! type to close a transaction.

use crate::batch::{BatchBuilder, Record};

/// What a transaction marker says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Marker {
    /// The transaction was aborted: its records are to be skipped.
    Abort,
    /// The transaction committed.
    Commit,
}

impl Marker {
    /// The marker for a transaction's outcome.
    pub fn of(commit: bool) -> Self {
        if commit {
            Self::Commit
        } else {
            Self::Abort
        }
    }

    fn code(self) -> i16 {
        match self {
            Self::Abort => 0,
            Self::Commit => 1,
        }
    }

    /// Reads a control record's key; None for an unknown version or type (newer brokers may
    /// write other control types, which readers must ignore).
    pub fn from_key(key: &[u8]) -> Option<Self> {
        let [v0, v1, t0, t1] = key.get(..4)?.try_into().ok()?;
        if i16::from_be_bytes([v0, v1]) != 0 {
            return None;
        }
        match i16::from_be_bytes([t0, t1]) {
            0 => Some(Self::Abort),
            1 => Some(Self::Commit),
            _ => None,
        }
    }

    /// The marker a control record holds.
    pub fn from_record(record: &Record<'_>) -> Option<Self> {
        record.key.and_then(Self::from_key)
    }
}

/// The coordinator epoch a transaction marker's value carries (`version: i16 = 0,
/// coordinator_epoch: i32`); None for an unknown version or a short value.
pub fn marker_coordinator_epoch(value: &[u8]) -> Option<i32> {
    let [v0, v1, e0, e1, e2, e3] = value.get(..6)?.try_into().ok()?;
    (i16::from_be_bytes([v0, v1]) == 0).then(|| i32::from_be_bytes([e0, e1, e2, e3]))
}

/// Encodes a control batch holding one transaction marker (base offset 0; the log sets the
/// real one).
pub fn marker_batch(
    marker: Marker,
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    now_ms: i64,
) -> Vec<u8> {
    let mut key = Vec::with_capacity(4);
    key.extend_from_slice(&0i16.to_be_bytes());
    key.extend_from_slice(&marker.code().to_be_bytes());
    let mut value = Vec::with_capacity(6);
    value.extend_from_slice(&0i16.to_be_bytes());
    value.extend_from_slice(&coordinator_epoch.to_be_bytes());
    let mut builder = BatchBuilder::new().idempotent(producer_id, producer_epoch, -1).control();
    builder.push_parts(Some(&key), Some(&value), &[], now_ms);
    builder.build()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::batch::RecordBatch;

    #[test]
    fn a_marker_batch_is_a_control_batch_kafka_clients_read() {
        for marker in [Marker::Abort, Marker::Commit] {
            let bytes = marker_batch(marker, 42, 3, 7, 1_000);
            let batch = RecordBatch::parse_exact(&bytes).expect("valid batch");
            let h = batch.header();
            assert!(h.is_control() && h.is_transactional());
            assert_eq!((h.producer_id, h.producer_epoch, h.base_sequence, h.record_count), (42, 3, -1, 1));
            let records = batch.validate_records().expect("valid records");
            assert_eq!(Marker::from_record(&records[0]), Some(marker));
            assert_eq!(records[0].value, Some(&[0, 0, 0, 0, 0, 7][..]));
            assert_eq!(records[0].value.and_then(marker_coordinator_epoch), Some(7));
        }
    }

    #[test]
    fn unknown_control_keys_are_not_markers() {
        assert_eq!(Marker::from_key(&[0, 0, 0, 1]), Some(Marker::Commit));
        assert_eq!(Marker::from_key(&[0, 1, 0, 1]), None, "unknown version");
        assert_eq!(Marker::from_key(&[0, 0, 0, 5]), None, "unknown type");
        assert_eq!(Marker::from_key(&[0, 0, 0]), None, "short");
        assert_eq!(marker_coordinator_epoch(&[0, 1, 0, 0, 0, 7]), None, "unknown version");
        assert_eq!(marker_coordinator_epoch(&[0, 0, 0, 0, 7]), None, "short");
    }
}
