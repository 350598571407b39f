//! Transactions in the log: batches written inside a Kafka transaction, pending until the
//! transaction ends, then committed (given commit sequences and stream versions, all at once)
//! or aborted (never visible to evident's readers). See `docs/transactions-design.md`.
//!
//! A transactional batch is written to the journal when produced, at its partition's next
//! offsets, so a `read_uncommitted` Kafka consumer sees it at once, as Kafka's do. It is kept
//! here, in a table of its own, not in [`Index::frames`] (which is in commit-sequence order):
//! it has no sequence yet. Ending the transaction ([`crate::Log::end_transaction`]) writes a
//! control batch (the marker Kafka's consumers read) into each partition the transaction still
//! has records in, then one `TxnEnd` frame. Only that frame changes what evident's own readers
//! see: applying it, at append and at replay alike, gives the transaction's records, batch by
//! batch in journal order, the next commit sequences and their streams' next versions (a copy
//! of each batch's entry goes into [`Index::frames`]), or drops them on an abort. So a
//! transaction over several partitions and topics becomes visible all at once or not at all,
//! and versions are given in commit order.
//!
//! Streams a transaction touches are tracked while it is open ([`PendingKey`]): a key keeps
//! the partition its pending records went to (one key, one partition); a transaction that
//! appends to a stream with an expected version or event ids *holds* it until it ends, and an
//! append that conditions on a stream (or dedupes by event id) is refused while another
//! transaction has records pending there, because its outcome would decide the answer.

use std::collections::HashMap;

use bytes::Bytes;
use evident_core::batch::set_base_offset;
use evident_core::control::Marker;
use evident_core::{RecordBatch, TopicName};

use crate::error::{Error, Result};
use crate::frame::{FrameHeader, FrameKind};
use crate::log::Log;

use crate::hashed::hash_key;
use crate::index::{
    record_infos, BatchKind, FrameEntry, Index, IndexedRecord, PartitionBatch, PartitionState, RecordInfo, TXN_REF,
};

/// The state of a batch written by a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TxnFrameState {
    /// Its transaction has not ended.
    Pending,
    /// Committed: the index in [`Index::frames`] of the copy with its commit sequences.
    Committed(u32),
    /// Aborted.
    Aborted,
    /// A control batch: the marker that ended its transaction in this partition.
    Marker(Marker),
}

/// A batch written by a transaction.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TxnFrame {
    /// Where it is (`first_seq` 0, `txn` set).
    pub entry: FrameEntry,
    /// Producer id.
    pub producer: i64,
    /// Producer epoch it was written with.
    pub epoch: i16,
    /// Its state.
    pub state: TxnFrameState,
}

/// A record of a pending batch: what its commit will index.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PendingRecord {
    pub key: Option<Bytes>,
    pub id: Option<Box<str>>,
    /// Journal position of the record's bytes.
    pub pos: u64,
    pub len: u32,
    pub crc: u32,
}

/// An open transaction, as the log sees it: a producer with pending batches.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct OpenTxn {
    /// Epoch of its batches.
    pub epoch: i16,
    /// Its pending batches, indices into [`Transactions::frames`], in journal order.
    pub frames: Vec<u32>,
}

/// A stream (topic, key) with records of open transactions.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub(crate) struct PendingKey {
    /// The partition the records went to.
    pub partition: u32,
    /// Pending records per producer.
    pub writers: Vec<(i64, u32)>,
    /// The transaction that conditioned on the stream (an expected version) or gave its
    /// records event ids: no other append may touch the stream until it ends.
    pub held_by: Option<i64>,
    /// Event ids of the pending records, per producer (hashes as in the event-id table).
    pub ids: Vec<(i64, u64)>,
}

impl PendingKey {
    /// Pending records of `producer` in this stream.
    pub fn own(&self, producer: i64) -> u32 {
        self.writers.iter().find(|w| w.0 == producer).map_or(0, |w| w.1)
    }

    /// A producer other than `producer` (None: a plain append) with records pending here.
    pub fn other_writer(&self, producer: Option<i64>) -> Option<i64> {
        self.writers.iter().map(|w| w.0).find(|&p| Some(p) != producer)
    }
}

/// An aborted transaction's span in a partition: what Kafka's Fetch lists for
/// `read_committed` consumers to skip.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Aborted {
    /// Producer id.
    pub producer: i64,
    /// Offset of its first record in the partition.
    pub first_offset: u64,
    /// Offset of its abort marker.
    pub last_offset: u64,
}

/// Every transaction the log knows of.
#[derive(Debug, Clone, Default)]
pub(crate) struct Transactions {
    /// Batches written by transactions (data and markers), in journal order.
    pub frames: Vec<TxnFrame>,
    /// The records of pending batches, by index into `frames`.
    pub records: HashMap<u32, Vec<PendingRecord>>,
    /// Open transactions by producer id.
    pub open: HashMap<i64, OpenTxn>,
    /// Streams with pending records, by (topic id, key).
    pub keys: HashMap<(u32, Bytes), PendingKey>,
    /// Pending records in all.
    pub pending_records: usize,
}

impl Transactions {
    /// The partition batch `frames[i]` is, as offset readers see it.
    pub fn partition_batch(&self, committed: &[FrameEntry], i: u32) -> PartitionBatch {
        let f = &self.frames[i as usize];
        match f.state {
            TxnFrameState::Committed(copy) => {
                PartitionBatch { entry: committed[copy as usize], kind: BatchKind::Committed }
            }
            TxnFrameState::Pending => PartitionBatch { entry: f.entry, kind: BatchKind::Pending },
            TxnFrameState::Aborted => PartitionBatch { entry: f.entry, kind: BatchKind::Aborted },
            TxnFrameState::Marker(_) => PartitionBatch { entry: f.entry, kind: BatchKind::Marker },
        }
    }

    /// The pending stream `(topic, key)`, if a transaction has records in it.
    pub fn key(&self, topic: u32, key: &[u8]) -> Option<&PendingKey> {
        self.keys.get(&(topic, Bytes::copy_from_slice(key)))
    }
}

/// Whether a record's headers make its transaction hold its stream: an expected version other
/// than `any`, or an event id.
fn holds(info: &RecordInfo<'_>) -> bool {
    info.id.is_some() || info.expected.is_some_and(|e| e != b"any")
}

/// Records a transactional batch (data or marker) whose offsets the caller has taken.
pub(crate) fn apply_txn_batch(
    index: &mut Index,
    entry: FrameEntry,
    bh: &evident_core::BatchHeader,
    infos: &[RecordInfo<'_>],
) -> Result<(), String> {
    if bh.producer_id < 0 {
        return Err("transactional batch without a producer id".into());
    }
    let at =
        u32::try_from(index.txns.frames.len()).ok().filter(|&i| i < TXN_REF).ok_or("too many transactional batches")?;
    let producer = bh.producer_id;
    let partition = partition_mut(index, entry.topic, entry.partition)?;
    partition.batches.push(at | TXN_REF);
    let state = if bh.is_control() {
        let marker = match infos {
            [only] => only.key.and_then(Marker::from_key).ok_or("control batch without a transaction marker")?,
            _ => return Err(format!("control batch of {} records", infos.len())),
        };
        close_run(partition, producer, marker, entry.base_offset);
        TxnFrameState::Marker(marker)
    } else {
        open_run(partition, producer, entry.base_offset);
        record_pending(&mut index.txns, at, &entry, producer, bh.producer_epoch, infos);
        TxnFrameState::Pending
    };
    index.txns.frames.push(TxnFrame { entry, producer, epoch: bh.producer_epoch, state });
    Ok(())
}

/// A producer's transaction has records in this partition from `offset` on (if it had none).
fn open_run(partition: &mut PartitionState, producer: i64, offset: u64) {
    if !partition.open_txns.iter().any(|&(p, _)| p == producer) {
        partition.open_txns.push((producer, offset));
    }
}

/// A marker at `offset` ends the producer's transaction in this partition: the stable offset
/// moves past it, and an abort is listed for read_committed fetches.
fn close_run(partition: &mut PartitionState, producer: i64, marker: Marker, offset: u64) {
    if let Some(i) = partition.open_txns.iter().position(|&(p, _)| p == producer) {
        let (_, first_offset) = partition.open_txns.remove(i);
        // An abort wholly below the log start is never listed again (a fetch starts at or
        // above it, and lists only the aborts ending there or later).
        if marker == Marker::Abort && offset >= partition.log_start {
            // Markers come in offset order: the list stays sorted by last offset, which the
            // read_committed fetch's search relies on.
            debug_assert!(partition.aborted.last().is_none_or(|a| a.last_offset < offset));
            partition.aborted.push(Aborted { producer, first_offset, last_offset: offset });
        }
    }
}

/// Remembers a pending batch's records, its transaction and the streams it touches.
fn record_pending(
    txns: &mut Transactions,
    at: u32,
    entry: &FrameEntry,
    producer: i64,
    epoch: i16,
    infos: &[RecordInfo<'_>],
) {
    let open = txns.open.entry(producer).or_insert_with(|| OpenTxn { epoch, frames: Vec::new() });
    open.epoch = epoch;
    open.frames.push(at);
    let payload_pos = entry.pos + crate::frame::HEADER_LEN as u64;
    let mut records = Vec::with_capacity(infos.len());
    for info in infos {
        let key = info.key.map(Bytes::copy_from_slice);
        if let Some(k) = &key {
            let pending = txns
                .keys
                .entry((entry.topic, k.clone()))
                .or_insert_with(|| PendingKey { partition: entry.partition, ..PendingKey::default() });
            match pending.writers.iter_mut().find(|w| w.0 == producer) {
                Some(w) => w.1 += 1,
                None => pending.writers.push((producer, 1)),
            }
            if holds(info) {
                pending.held_by = Some(producer);
            }
            if let Some(id) = info.id {
                pending.ids.push((producer, id_hash_for(k, id)));
            }
        }
        records.push(PendingRecord {
            key,
            id: info.id.map(Box::from),
            pos: payload_pos + u64::from(info.start),
            len: info.len,
            crc: info.crc,
        });
    }
    txns.pending_records += records.len();
    txns.records.insert(at, records);
}

/// The hash under which a pending record's event id is remembered (the stream is named by its
/// key: the pending record may have no stream id yet).
pub(crate) fn id_hash_for(key: &[u8], id: &str) -> u64 {
    hash_key(u32::MAX, &[key, b"\0", id.as_bytes()].concat())
}

fn partition_mut(index: &mut Index, topic: u32, partition: u32) -> Result<&mut PartitionState, String> {
    index
        .topics
        .get_mut(&topic)
        .and_then(|t| t.partitions.get_mut(partition as usize))
        .ok_or_else(|| format!("transactional batch for unknown partition {topic}/{partition}"))
}

/// Records the end of `producer`'s transaction (a `TxnEnd` frame): on a commit its pending
/// batches, in journal order, take commit sequences from `first_seq` (which must be the next
/// one) and their streams' next versions; on an abort they are dropped. Every partition of the
/// transaction must have its marker already. A producer with nothing pending is an error: the
/// log writes a `TxnEnd` frame only for an open transaction.
pub(crate) fn apply_txn_end(index: &mut Index, producer: i64, commit: bool, first_seq: u64) -> Result<(), String> {
    let Some(open) = index.txns.open.remove(&producer) else {
        return Err(format!("end of a transaction of producer {producer}, which has none open"));
    };
    if commit && first_seq != index.next_seq {
        return Err(format!("transaction commit at sequence {first_seq}, expected {}", index.next_seq));
    }
    for &at in &open.frames {
        let entry = index.txns.frames[at as usize].entry;
        // A batch whose topic was deleted meanwhile is dropped with it, whatever the outcome.
        let live = match partition_mut(index, entry.topic, entry.partition) {
            Ok(p) if p.open_txns.iter().any(|&(q, _)| q == producer) => {
                return Err(format!(
                    "end of producer {producer}'s transaction before its marker in partition {}/{}",
                    entry.topic, entry.partition
                ));
            }
            Ok(_) => true,
            Err(_) => false,
        };
        let records = index.txns.records.remove(&at).ok_or("pending batch without its records")?;
        index.txns.pending_records -= records.len();
        for r in &records {
            if let Some(key) = &r.key {
                release_key(&mut index.txns.keys, entry.topic, key, producer);
            }
        }
        if !commit || !live {
            index.txns.frames[at as usize].state = TxnFrameState::Aborted;
            continue;
        }
        let copy = u32::try_from(index.frames.len()).ok().filter(|&i| i < TXN_REF).ok_or("too many batch frames")?;
        let first = index.next_seq;
        index.frames.push(FrameEntry { first_seq: first, ..entry });
        index.txns.frames[at as usize].state = TxnFrameState::Committed(copy);
        let indexed = records.iter().map(|r| IndexedRecord {
            key: r.key.as_deref(),
            id: r.id.as_deref(),
            pos: r.pos,
            len: r.len,
            crc: r.crc,
        });
        index.index_records(entry.topic, entry.partition, first, indexed)?;
        index.next_seq = first + u64::from(entry.count);
    }
    Ok(())
}

fn release_key(keys: &mut HashMap<(u32, Bytes), PendingKey>, topic: u32, key: &Bytes, producer: i64) {
    let k = (topic, key.clone());
    let Some(pending) = keys.get_mut(&k) else { return };
    pending.writers.retain(|w| w.0 != producer);
    pending.ids.retain(|i| i.0 != producer);
    if pending.held_by == Some(producer) {
        pending.held_by = None;
    }
    if pending.writers.is_empty() {
        keys.remove(&k);
    }
}

/// Rebuilds what a checkpoint does not store (the pending batches' records, the open
/// transactions, the pending streams, each partition's open and aborted transactions) from the
/// transactional frames it does store, reading the pending batches back from the journal with
/// `read(pos, len)`: the same steps as applying the frames in journal order the first time.
pub(crate) fn restore(index: &mut Index, mut read: impl FnMut(u64, usize) -> Result<Vec<u8>>) -> Result<()> {
    let frames = std::mem::take(&mut index.txns.frames);
    index.txns = Transactions::default();
    for t in index.topics.values_mut() {
        for p in &mut t.partitions {
            p.open_txns.clear();
            p.aborted.clear();
        }
    }
    let corrupted = |pos: u64, what: String| Error::Corrupted { file: "journal".into(), offset: pos, what };
    for (at, f) in frames.into_iter().enumerate() {
        let entry = f.entry;
        let p = partition_mut(index, entry.topic, entry.partition).map_err(|e| corrupted(entry.pos, e))?;
        match f.state {
            TxnFrameState::Marker(marker) => close_run(p, f.producer, marker, entry.base_offset),
            TxnFrameState::Committed(_) | TxnFrameState::Aborted => open_run(p, f.producer, entry.base_offset),
            TxnFrameState::Pending => {
                open_run(p, f.producer, entry.base_offset);
                let bytes = read(entry.pos, entry.len as usize)?;
                let (header, payload) = crate::frame::decode(&bytes)
                    .map_err(|e| corrupted(entry.pos, format!("pending transactional batch unreadable: {e:?}")))?;
                let batch = evident_core::RecordBatch::parse_exact(payload)
                    .map_err(|e| corrupted(entry.pos, format!("pending transactional batch invalid: {e}")))?;
                let bh = *batch.header();
                if header.topic != entry.topic
                    || header.partition != entry.partition
                    || !bh.is_transactional()
                    || bh.producer_id != f.producer
                {
                    return Err(corrupted(entry.pos, "a pending batch is not the one the checkpoint names".into()));
                }
                let infos = record_infos(&batch)?;
                record_pending(&mut index.txns, at as u32, &entry, f.producer, f.epoch, &infos);
            }
        }
        index.txns.frames.push(f);
    }
    Ok(())
}

/// The payload of a `TxnEnd` frame: producer id (i64), epoch (i16), outcome (1 commit, 0 abort),
/// little-endian.
pub(crate) fn encode_end(producer: i64, epoch: i16, commit: bool) -> [u8; 11] {
    let mut out = [0u8; 11];
    out[..8].copy_from_slice(&producer.to_le_bytes());
    out[8..10].copy_from_slice(&epoch.to_le_bytes());
    out[10] = u8::from(commit);
    out
}

/// Reads a `TxnEnd` frame's payload: (producer, epoch, commit).
pub(crate) fn decode_end(payload: &[u8]) -> Result<(i64, i16, bool), String> {
    let bytes: [u8; 11] =
        payload.try_into().map_err(|_| format!("transaction end payload of {} bytes", payload.len()))?;
    let producer = i64::from_le_bytes(bytes[..8].try_into().map_err(|_| "short producer id")?);
    let epoch = i16::from_le_bytes([bytes[8], bytes[9]]);
    let commit = match bytes[10] {
        0 => false,
        1 => true,
        other => return Err(format!("transaction end outcome {other}")),
    };
    Ok((producer, epoch, commit))
}

/// What ending a transaction did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnEnd {
    /// The markers written: topic, partition, offset. Empty when the transaction had already
    /// ended everywhere (a repeated end, as after a crash, writes nothing).
    pub markers: Vec<(TopicName, u32, u64)>,
    /// Records committed (0 on an abort).
    pub committed: u64,
    /// The commit sequence of the first committed record, on a commit of any record.
    pub first_sequence: Option<u64>,
}

impl Log {
    /// Ends producer `producer_id`'s transaction, committing it or aborting it: writes a
    /// transaction marker (a control batch with `epoch` and `coordinator_epoch`) into every
    /// partition where it has records not yet ended, then the frame that makes a commit
    /// visible to evident's readers all at once (stream versions and commit sequences in commit
    /// order) or drops an abort's records; and returns once all of it is durable.
    ///
    /// Idempotent, so a coordinator that crashed while ending a transaction simply ends it
    /// again: markers are written only where the producer still has an open run, the final
    /// frame only if it still has pending records. `epoch` may be newer than the transaction's
    /// (a coordinator aborting a timed-out transaction fences its producer with a new epoch);
    /// an older one is refused with [`Error::ProducerFenced`].
    pub fn end_transaction(
        &self,
        producer_id: i64,
        epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<TxnEnd> {
        let mut st = self.inner.writable()?;
        if let Some(open) = st.index.txns.open.get(&producer_id) {
            if epoch < open.epoch {
                return Err(Error::ProducerFenced { producer_id, epoch, current: open.epoch });
            }
        }
        let mut runs: Vec<(u32, u32)> = Vec::new();
        for (tid, t) in &st.index.topics {
            for (p, state) in t.partitions.iter().enumerate() {
                if state.open_txns.iter().any(|&(q, _)| q == producer_id) {
                    runs.push((*tid, p as u32));
                }
            }
        }
        runs.sort_unstable();
        let now = self.inner.clock.now_ms();
        let marker =
            evident_core::control::marker_batch(Marker::of(commit), producer_id, epoch, coordinator_epoch, now);
        let mut markers = Vec::with_capacity(runs.len());
        let mut end = st.next_pos;
        for (tid, p) in runs {
            let base_offset = st.index.topics[&tid].partitions[p as usize].next_offset;
            let name = st.index.topics[&tid].meta.name.clone();
            let patch = |stored: &mut [u8]| set_base_offset(stored, base_offset as i64);
            let (pos, frame_end) = self.inner.enqueue_frame(&mut st, FrameKind::Batch, 0, tid, p, &marker, patch)?;
            let mut stored = marker.clone();
            set_base_offset(&mut stored, base_offset as i64);
            let batch = RecordBatch::parse_exact(&stored)?;
            let infos = record_infos(&batch)?;
            let header = FrameHeader {
                kind: FrameKind::Batch,
                length: 0,
                crc: 0,
                durable_before: 0,
                first_sequence: 0,
                topic: tid,
                partition: p,
            };
            // Built here and checked above: indexing it cannot fail unless the index is wrong,
            // with the frame already queued, so stop.
            st.index
                .apply_batch(pos, (frame_end - pos) as u32, &header, batch.header(), &infos)
                .unwrap_or_else(|e| panic!("indexing a transaction marker failed: {e}"));
            markers.push((name, p, base_offset));
            end = frame_end;
        }
        let mut committed = 0;
        let mut first_sequence = None;
        if let Some(open) = st.index.txns.open.get(&producer_id) {
            if commit {
                committed = open.frames.iter().map(|&i| u64::from(st.index.txns.frames[i as usize].entry.count)).sum();
                first_sequence = (committed > 0).then_some(st.index.next_seq);
            }
            let seq = if commit { st.index.next_seq } else { 0 };
            let payload = encode_end(producer_id, epoch, commit);
            let (_, frame_end) = self.inner.enqueue_frame(&mut st, FrameKind::TxnEnd, seq, 0, 0, &payload, |_| {})?;
            apply_txn_end(&mut st.index, producer_id, commit, seq)
                .unwrap_or_else(|e| panic!("applying a transaction's end failed: {e}"));
            end = frame_end;
        }
        self.inner.wait_visible(st, end)?;
        Ok(TxnEnd { markers, committed, first_sequence })
    }

    /// The producers with an open transaction in the log (pending records not yet ended), with
    /// the epoch of their records: what a coordinator finds at open to finish what a crash cut.
    pub fn open_transactions(&self) -> Vec<(i64, i16)> {
        let st = self.inner.lock();
        let mut open: Vec<(i64, i16)> = st.index.txns.open.iter().map(|(&p, o)| (p, o.epoch)).collect();
        let mut markerless: Vec<i64> = Vec::new();
        for t in st.index.topics.values() {
            for p in &t.partitions {
                markerless.extend(p.open_txns.iter().map(|&(q, _)| q));
            }
        }
        for q in markerless {
            if !open.iter().any(|&(p, _)| p == q) {
                open.push((q, -1));
            }
        }
        open.sort_unstable();
        open
    }
}
