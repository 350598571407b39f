//! Visiting every committed record of a partition in offset order, up to its high watermark:
//! how the stores kept in internal topics (consumer offsets in `__consumer_offsets`, the schema
//! registry in `_schemas`) rebuild their state when the server opens. Transaction markers and
//! the records of aborted and still open transactions are skipped (a store applies an open
//! transaction's records when it commits).
//!
//! The stored batches are read a few MiB at a time and their records handed to the visitor
//! as borrowed key and value bytes. Damage the log's checksums catch is the log's error; a
//! batch that passes its checksum and still does not parse, or a read that returns nothing
//! below the high watermark, is reported with the offset where it happened, because the
//! visitor's owner (not the log) knows what the topic holds and how to say it is corrupted.

use evident_core::batch::RecordBatch;

use crate::error::Error;
use crate::log::Log;
use crate::read::View;

/// Bytes read per step of a scan.
const SCAN_READ_BYTES: usize = 4 << 20;

/// Why a scan stopped.
#[derive(Debug)]
pub enum ScanError<E> {
    /// Reading failed (damage the checksums caught, I/O, an unknown topic).
    Log(Error),
    /// A stored batch or record at `offset` does not parse, or the log returned no record
    /// below the high watermark.
    Damaged {
        /// The offset the scan had reached.
        offset: u64,
        /// What is wrong.
        what: String,
    },
    /// The visitor refused a record.
    Visitor(E),
}

impl Log {
    /// Calls `visit(offset, key, value)` for every record of `topic`/`partition` from offset 0
    /// up to the high watermark as it is when the scan starts, in order.
    pub fn scan_partition<E>(
        &self,
        topic: &str,
        partition: u32,
        mut visit: impl FnMut(u64, Option<&[u8]>, Option<&[u8]>) -> Result<(), E>,
    ) -> Result<(), ScanError<E>> {
        let high_watermark = self.partition_offsets(topic, partition).map_err(ScanError::Log)?.high_watermark;
        let mut next = 0u64;
        while next < high_watermark {
            let read = self
                .read_partition_view(topic, partition, next, SCAN_READ_BYTES, View::CommittedSkipping)
                .map_err(ScanError::Log)?;
            let before = next;
            for bytes in &read.batches {
                let damaged = |what: String| ScanError::Damaged { offset: next, what };
                let batch =
                    RecordBatch::parse_exact(bytes).map_err(|e| damaged(format!("stored batch invalid: {e}")))?;
                let base_offset = u64::try_from(batch.header().base_offset)
                    .map_err(|_| damaged(format!("negative base offset {}", batch.header().base_offset)))?;
                let records = batch.records().map_err(|e| damaged(format!("stored batch invalid: {e}")))?;
                for record in records {
                    let record = record.map_err(|e| ScanError::Damaged {
                        offset: next,
                        what: format!("stored record invalid: {e}"),
                    })?;
                    let offset = base_offset + u64::try_from(record.offset_delta).unwrap_or(u64::MAX);
                    // A read may start with a batch that begins before the offset asked for.
                    if offset < next {
                        continue;
                    }
                    visit(offset, record.key, record.value).map_err(ScanError::Visitor)?;
                    next = offset + 1;
                }
            }
            // Nothing returned: what remains below the high watermark is skipped (markers,
            // aborted or open transactions' records).
            if read.batches.is_empty() {
                break;
            }
            // Bounds the loop: a read that returns batches returns a record at or after `next`.
            if next == before {
                return Err(ScanError::Damaged {
                    offset: next,
                    what: format!("the log returned no record below the high watermark {high_watermark}"),
                });
            }
        }
        Ok(())
    }
}
