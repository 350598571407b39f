//! The in-memory indexes, all derived from the journal: the topic catalog, where each batch
//! frame lives (by commit sequence and by partition offset), each entity stream's events by
//! version, event ids for idempotence, and Kafka idempotent-producer state.
//!
//! The same [`Index::apply_batch`] runs when an append is accepted and when the journal is
//! replayed on open, so the two cannot disagree. Checks that can refuse an append live in
//! `append.rs`; this file only records what the journal holds.

use std::collections::{BTreeMap, HashMap, VecDeque};

use bytes::Bytes;
use evident_core::batch::RecordBatch;
use evident_core::{envelope, TopicName};

use crate::catalog::TopicMeta;
use crate::error::{Error, Result};
use crate::frame;
use crate::hashed::{hash_key, HashedMap, SortedRun};

/// A batch frame: where it is in the journal and what it holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameEntry {
    /// Journal position of the frame header.
    pub pos: u64,
    /// Bytes the frame occupies, padding included.
    pub len: u32,
    /// Topic id.
    pub topic: u32,
    /// Partition.
    pub partition: u32,
    /// Records in the batch.
    pub count: u32,
    /// Commit sequence of the first record.
    pub first_seq: u64,
    /// Offset of the first record.
    pub base_offset: u64,
    /// Batch base timestamp.
    pub base_ts: i64,
    /// Batch max timestamp.
    pub max_ts: i64,
    /// Written by a transaction: the stored frame's sequence field is 0, and `first_seq` is the
    /// one its commit gave (in [`Index::frames`]) or 0 (in the transactions' own table, `txn.rs`).
    pub txn: bool,
}

impl FrameEntry {
    /// One past the last commit sequence in the frame.
    pub fn end_seq(&self) -> u64 {
        self.first_seq + u64::from(self.count)
    }
    /// One past the last offset in the frame.
    pub fn end_offset(&self) -> u64 {
        self.base_offset + u64::from(self.count)
    }
    /// Journal position just past the frame.
    pub fn end_pos(&self) -> u64 {
        self.pos + u64::from(self.len)
    }
}

/// One event of a stream: enough to read and verify its record without touching its batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct StreamEvent {
    /// Commit sequence.
    pub seq: u64,
    /// Journal position of the record's bytes.
    pub pos: u64,
    /// Length of the record's bytes.
    pub len: u32,
    /// CRC32C of the record's bytes, taken when the batch CRC was verified; checked on every
    /// read so a corrupted record is never served.
    pub crc: u32,
}

/// An entity stream.
#[derive(Debug, Clone)]
pub(crate) struct Stream {
    /// Topic id.
    pub topic: u32,
    /// Partition the stream lives in.
    pub partition: u32,
    /// Key.
    pub key: Bytes,
    /// Events; the index is the version.
    pub events: Vec<StreamEvent>,
}

/// A batch an idempotent producer sent, remembered to answer retries.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerBatch {
    /// Producer sequence of the first record.
    pub first_seq: i32,
    /// Producer sequence of the last record.
    pub last_seq: i32,
    /// Offset of the first record.
    pub base_offset: u64,
    /// Commit sequence of the first record.
    pub first_commit: u64,
    /// Records.
    pub count: u32,
    /// Journal position just past the frame (what a retry waits for).
    pub end_pos: u64,
}

/// Per-producer state of one partition.
#[derive(Debug, Clone)]
pub(crate) struct ProducerState {
    /// Current epoch.
    pub epoch: i16,
    /// The last [`PRODUCER_BATCHES`] batches, oldest first.
    pub batches: VecDeque<ProducerBatch>,
    /// Largest timestamp of the producer's last batch or marker written here (-1: none), as
    /// Kafka keeps it for DescribeProducers.
    pub last_timestamp: i64,
    /// Coordinator epoch of the producer's last transaction marker here (-1: none).
    pub coordinator_epoch: i32,
}

impl Default for ProducerState {
    fn default() -> Self {
        Self { epoch: 0, batches: VecDeque::new(), last_timestamp: -1, coordinator_epoch: -1 }
    }
}

/// Batches remembered per producer, as Kafka does (hence `max.in.flight.requests` <= 5).
pub(crate) const PRODUCER_BATCHES: usize = 5;

impl ProducerState {
    /// Takes a batch the producer sent at `epoch`: a newer epoch forgets the older one's
    /// batches; the last [`PRODUCER_BATCHES`] are kept. `None`: a transaction marker, which
    /// carries the epoch only.
    pub fn record(&mut self, epoch: i16, batch: Option<ProducerBatch>) {
        if epoch != self.epoch {
            self.epoch = epoch;
            self.batches.clear();
        }
        if let Some(batch) = batch {
            if self.batches.len() == PRODUCER_BATCHES {
                self.batches.pop_front();
            }
            self.batches.push_back(batch);
        }
    }
}

/// The bit of a [`PartitionState::batches`] entry that says it indexes the transactions'
/// frames rather than [`Index::frames`].
pub(crate) const TXN_REF: u32 = 1 << 31;

/// The commit sequence of a transactional batch not committed (yet): remembered in the
/// producer state so a retry is answered without one.
pub(crate) const NO_SEQ: u64 = u64::MAX;

/// An idempotent producer's batch that was answered without being written (every record a
/// duplicate by event id): its producer sequences are taken all the same. Stored as the payload
/// of a `ProducerAdvance` frame (little-endian: producer id i64, epoch i16, first sequence i32,
/// last offset delta i32, base offset u64, first commit sequence u64, count u32).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ProducerAdvance {
    pub producer_id: i64,
    pub epoch: i16,
    pub first_seq: i32,
    pub last_offset_delta: i32,
    /// Offset of the first original record (what a retry of this batch is answered with).
    pub base_offset: u64,
    /// Commit sequence of the first original record ([`NO_SEQ`]: none).
    pub first_commit: u64,
    pub count: u32,
}

impl ProducerAdvance {
    const LEN: usize = 38;

    /// The frame payload.
    pub fn encode(&self) -> [u8; Self::LEN] {
        let mut out = [0u8; Self::LEN];
        out[..8].copy_from_slice(&self.producer_id.to_le_bytes());
        out[8..10].copy_from_slice(&self.epoch.to_le_bytes());
        out[10..14].copy_from_slice(&self.first_seq.to_le_bytes());
        out[14..18].copy_from_slice(&self.last_offset_delta.to_le_bytes());
        out[18..26].copy_from_slice(&self.base_offset.to_le_bytes());
        out[26..34].copy_from_slice(&self.first_commit.to_le_bytes());
        out[34..38].copy_from_slice(&self.count.to_le_bytes());
        out
    }

    /// Reads a frame payload.
    pub fn decode(payload: &[u8]) -> std::result::Result<Self, String> {
        let b: &[u8; Self::LEN] =
            payload.try_into().map_err(|_| format!("producer advance payload of {} bytes", payload.len()))?;
        let i64_at = |at: usize| {
            i64::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3], b[at + 4], b[at + 5], b[at + 6], b[at + 7]])
        };
        let i32_at = |at: usize| i32::from_le_bytes([b[at], b[at + 1], b[at + 2], b[at + 3]]);
        Ok(Self {
            producer_id: i64_at(0),
            epoch: i16::from_le_bytes([b[8], b[9]]),
            first_seq: i32_at(10),
            last_offset_delta: i32_at(14),
            base_offset: i64_at(18) as u64,
            first_commit: i64_at(26) as u64,
            count: i32_at(34) as u32,
        })
    }
}

/// A partition.
#[derive(Debug, Clone, Default)]
pub(crate) struct PartitionState {
    /// Next offset to assign (pending appends included).
    pub next_offset: u64,
    /// First offset served (Kafka's log start offset): records below it were deleted by
    /// DeleteRecords and no read returns them. Only moves forward.
    pub log_start: u64,
    /// Commit sequence of the record at `log_start`, or the store's next commit sequence when
    /// the start was moved to the partition's end: a record of this partition is retained iff
    /// its sequence is at least this (offsets and sequences grow together within a partition),
    /// which is how stream and store-wide reads, which go by sequence, honour the start.
    pub log_start_seq: u64,
    /// This partition's batches in offset order: indices into [`Index::frames`], or with
    /// [`TXN_REF`] set into the transactions' frames (`txn.rs`). See [`Index::batch`].
    pub batches: Vec<u32>,
    /// Open transactions with records here: (producer id, offset of their first record here),
    /// oldest first. The first gives the last stable offset.
    pub open_txns: Vec<(i64, u64)>,
    /// Aborted transactions, in the order of their markers: what a `read_committed` Kafka fetch
    /// is told to skip.
    pub aborted: Vec<crate::txn::Aborted>,
    /// Idempotent producers.
    pub producers: HashMap<i64, ProducerState>,
}

/// A topic.
#[derive(Debug, Clone)]
pub(crate) struct TopicState {
    /// Metadata.
    pub meta: TopicMeta,
    /// Partitions.
    pub partitions: Vec<PartitionState>,
}

/// Packs a stream id and a version into an event-id map value.
pub(crate) fn pack_event(stream: u32, version: u32) -> u64 {
    (u64::from(stream) << 32) | u64::from(version)
}
/// Unpacks [`pack_event`].
pub(crate) fn unpack_event(v: u64) -> (u32, u32) {
    ((v >> 32) as u32, v as u32)
}

/// The event-id table key: a hash of the stream and the id.
pub(crate) fn id_hash(stream: u32, id: &str) -> u64 {
    hash_key(stream, id.as_bytes())
}

/// What the log needs of one record, computed from a CRC-verified batch.
#[derive(Debug, Clone, Copy)]
pub(crate) struct RecordInfo<'a> {
    pub key: Option<&'a [u8]>,
    pub id: Option<&'a str>,
    /// The record's value.
    pub value: Option<&'a [u8]>,
    /// Raw `ce_type` header, if present.
    pub event_type: Option<&'a [u8]>,
    /// Raw `evident-expected-version` header, if present.
    pub expected: Option<&'a [u8]>,
    pub start: u32,
    pub len: u32,
    pub crc: u32,
}

/// Decodes the records of a CRC-verified batch and checks what the index relies on.
pub(crate) fn record_infos<'a>(batch: &RecordBatch<'a>) -> Result<Vec<RecordInfo<'a>>> {
    let records = batch.validate_records()?;
    let bytes = batch.bytes();
    let mut infos = Vec::with_capacity(records.len());
    for r in &records {
        if let Some(key) = r.key {
            if key.len() > evident_core::StreamKey::LEN_MAX {
                return Err(Error::KeyTooLarge { size: key.len(), max: evident_core::StreamKey::LEN_MAX });
            }
        }
        // One pass over the headers for the three the log reads (the first of each name wins).
        let (mut raw_id, mut event_type, mut expected) = (None, None, None);
        for (name, value) in evident_core::batch::headers_raw_in(r.raw_headers(), r.header_count()) {
            let slot = match name {
                n if n == envelope::CE_ID.as_bytes() => &mut raw_id,
                n if n == envelope::CE_TYPE.as_bytes() => &mut event_type,
                n if n == envelope::EXPECTED_VERSION.as_bytes() => &mut expected,
                _ => continue,
            };
            if slot.is_none() {
                *slot = Some(value);
            }
        }
        let id = match raw_id.flatten() {
            None => None,
            Some(raw) => {
                let id = std::str::from_utf8(raw).map_err(|_| Error::InvalidEventId("ce_id is not UTF-8".into()))?;
                if id.is_empty() || id.len() > envelope::ID_LEN_MAX {
                    return Err(Error::InvalidEventId(format!(
                        "ce_id must be 1 to {} bytes, not {}",
                        envelope::ID_LEN_MAX,
                        id.len()
                    )));
                }
                Some(id)
            }
        };
        let span = &bytes[r.start as usize..(r.start + r.len) as usize];
        infos.push(RecordInfo {
            key: r.key,
            id,
            value: r.value,
            event_type: event_type.flatten(),
            expected: expected.flatten(),
            start: r.start,
            len: r.len,
            crc: crc32c::crc32c(span),
        });
    }
    Ok(infos)
}

/// A committed record to index: its key, event id and where its bytes are.
#[derive(Debug, Clone, Copy)]
pub(crate) struct IndexedRecord<'a> {
    pub key: Option<&'a [u8]>,
    pub id: Option<&'a str>,
    pub pos: u64,
    pub len: u32,
    pub crc: u32,
}

/// What a partition's batch is to readers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum BatchKind {
    /// Committed records (a plain batch, or a committed transaction's): they have sequences.
    Committed,
    /// Records of a transaction that has not ended.
    Pending,
    /// Records of an aborted transaction.
    Aborted,
    /// A transaction marker.
    Marker,
}

/// A batch of a partition as offset readers see it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PartitionBatch {
    /// The frame (for a committed transaction's batch, with its commit sequences).
    pub entry: FrameEntry,
    /// What it holds.
    pub kind: BatchKind,
}

/// Every index of the log.
#[derive(Debug, Default)]
pub(crate) struct Index {
    pub topics: HashMap<u32, TopicState>,
    pub names: BTreeMap<TopicName, u32>,
    pub next_topic_id: u32,
    /// Batch frames in journal (and commit-sequence) order.
    pub frames: Vec<FrameEntry>,
    /// Hash of (topic, key) -> stream id.
    pub stream_ids: HashedMap,
    /// Streams by id; None once their topic is deleted (ids are never reused).
    pub streams: Vec<Option<Stream>>,
    /// Event-id hash -> packed (stream, version).
    pub ids: SortedRun,
    /// Next commit sequence to assign.
    pub next_seq: u64,
    /// Transactions: their frames, the open ones and the streams they touch.
    pub txns: crate::txn::Transactions,
}

impl Index {
    /// The topic named `name`.
    pub fn topic_by_name(&self, name: &str) -> Result<&TopicState> {
        let id = TopicName::new(name).ok().and_then(|n| self.names.get(&n).copied());
        id.and_then(|id| self.topics.get(&id)).ok_or_else(|| Error::UnknownTopic(name.to_string()))
    }

    /// Records a topic creation.
    pub fn apply_topic_created(&mut self, meta: TopicMeta) -> Result<()> {
        if self.topics.contains_key(&meta.id) || self.names.contains_key(&meta.name) {
            return Err(Error::TopicExists(meta.name));
        }
        self.next_topic_id = self.next_topic_id.max(meta.id + 1);
        let partitions = (0..meta.config.partitions).map(|_| PartitionState::default()).collect();
        self.names.insert(meta.name.clone(), meta.id);
        self.topics.insert(meta.id, TopicState { meta, partitions });
        Ok(())
    }

    /// Records a change of a topic's metadata: more partitions (never fewer: offsets and
    /// streams live in the existing ones).
    pub fn apply_topic_altered(&mut self, meta: TopicMeta) -> Result<()> {
        let Some(state) = self.topics.get_mut(&meta.id) else {
            return Err(Error::UnknownTopic(meta.name.to_string()));
        };
        let (old, new) = (state.meta.config.partitions, meta.config.partitions);
        if new < old || state.meta.name != meta.name {
            return Err(Error::InvalidConfig(format!(
                "topic {} cannot go from {old} to {new} partitions (partitions can only be added)",
                meta.name
            )));
        }
        state.partitions.extend((old..new).map(|_| PartitionState::default()));
        state.meta = meta;
        Ok(())
    }

    /// Records a topic deletion: the topic, its streams and their event ids leave the index.
    /// The frames stay (the journal is append-only) but are skipped by every read.
    pub fn apply_topic_deleted(&mut self, topic: u32) {
        if let Some(state) = self.topics.remove(&topic) {
            self.names.remove(&state.meta.name);
        }
        for stream in &mut self.streams {
            if stream.as_ref().is_some_and(|s| s.topic == topic) {
                *stream = None;
            }
        }
        self.txns.keys.retain(|(t, _), _| *t != topic);
        let streams = &self.streams;
        let live = |sid: u32| streams.get(sid as usize).is_some_and(Option::is_some);
        self.stream_ids.retain(|sid| live(sid as u32));
        self.ids.retain(|packed| live(unpack_event(packed).0));
    }

    /// Records a batch frame written at journal position `pos`. A batch written inside a
    /// transaction (and a control batch) takes its offsets now and its commit sequence and
    /// stream versions only when the transaction commits (`txn.rs`).
    pub fn apply_batch(
        &mut self,
        pos: u64,
        padded_len: u32,
        header: &frame::FrameHeader,
        bh: &evident_core::BatchHeader,
        infos: &[RecordInfo<'_>],
    ) -> Result<()> {
        let count = infos.len() as u32;
        let corrupted = |what: String| Error::Corrupted { file: "journal".into(), offset: pos, what };
        let expected_seq = if bh.is_transactional() { 0 } else { self.next_seq };
        if header.first_sequence != expected_seq {
            return Err(corrupted(format!(
                "batch frame has commit sequence {}, expected {expected_seq}",
                header.first_sequence
            )));
        }
        let topic = self
            .topics
            .get_mut(&header.topic)
            .ok_or_else(|| corrupted(format!("batch for unknown topic id {}", header.topic)))?;
        let partition = topic
            .partitions
            .get_mut(header.partition as usize)
            .ok_or_else(|| corrupted(format!("batch for unknown partition {}", header.partition)))?;
        if bh.base_offset < 0 || bh.base_offset as u64 != partition.next_offset {
            return Err(corrupted(format!(
                "batch base offset {} does not follow the partition's last offset {}",
                bh.base_offset, partition.next_offset
            )));
        }
        let entry = FrameEntry {
            pos,
            len: padded_len,
            topic: header.topic,
            partition: header.partition,
            count,
            first_seq: if bh.is_transactional() { 0 } else { header.first_sequence },
            base_offset: partition.next_offset,
            base_ts: bh.base_timestamp,
            max_ts: bh.max_timestamp,
            txn: bh.is_transactional(),
        };
        partition.next_offset += u64::from(count);
        if bh.producer_id >= 0 {
            // Markers carry no producer sequence (-1): only the epoch counts.
            let batch = (!bh.is_control()).then(|| ProducerBatch {
                first_seq: bh.base_sequence,
                last_seq: bh.base_sequence.wrapping_add(bh.last_offset_delta),
                base_offset: entry.base_offset,
                first_commit: if entry.txn { NO_SEQ } else { entry.first_seq },
                count,
                end_pos: entry.end_pos(),
            });
            let state = partition.producers.entry(bh.producer_id).or_default();
            state.record(bh.producer_epoch, batch);
            state.last_timestamp = bh.max_timestamp;
            if bh.is_control() {
                let value = infos.first().and_then(|r| r.value);
                state.coordinator_epoch =
                    value.and_then(evident_core::control::marker_coordinator_epoch).unwrap_or(state.coordinator_epoch);
            }
        }
        if bh.is_transactional() {
            return crate::txn::apply_txn_batch(self, entry, bh, infos).map_err(corrupted);
        }
        let frame_index = self.frames.len() as u32;
        assert!(frame_index < TXN_REF, "more than 2^31 batch frames");
        self.topics
            .get_mut(&header.topic)
            .and_then(|t| t.partitions.get_mut(header.partition as usize))
            .map(|p| p.batches.push(frame_index))
            .ok_or_else(|| corrupted("partition vanished while indexing".into()))?;
        self.frames.push(entry);
        let payload_pos = pos + frame::HEADER_LEN as u64;
        let records = infos.iter().map(|info| IndexedRecord {
            key: info.key,
            id: info.id,
            pos: payload_pos + u64::from(info.start),
            len: info.len,
            crc: info.crc,
        });
        self.index_records(header.topic, header.partition, header.first_sequence, records).map_err(corrupted)?;
        self.next_seq = header.first_sequence + u64::from(count);
        Ok(())
    }

    /// Gives committed records (a batch's, or a transaction's at its commit) their stream
    /// versions and event-id entries, from commit sequence `first_seq` on.
    pub fn index_records<'r>(
        &mut self,
        topic_id: u32,
        partition_id: u32,
        first_seq: u64,
        records: impl Iterator<Item = IndexedRecord<'r>>,
    ) -> std::result::Result<(), String> {
        for (i, record) in records.enumerate() {
            let Some(key) = record.key else { continue };
            let sid = match self.stream_id(topic_id, key) {
                Some(sid) => sid,
                None => {
                    let sid = u32::try_from(self.streams.len()).map_err(|_| "too many streams".to_string())?;
                    let key = Bytes::copy_from_slice(key);
                    self.stream_ids.insert(hash_key(topic_id, &key), u64::from(sid));
                    self.streams.push(Some(Stream {
                        topic: topic_id,
                        partition: partition_id,
                        key,
                        events: Vec::new(),
                    }));
                    sid
                }
            };
            let Some(stream) = self.streams[sid as usize].as_mut() else {
                return Err("stream of a deleted topic".into());
            };
            let version = stream.events.len() as u32;
            let seq = first_seq + i as u64;
            // A stream's versions are contiguous and in commit order: the event appended here
            // is the stream's next version and comes after its last one in the global order.
            assert!(stream.events.last().is_none_or(|e| e.seq < seq), "stream events out of commit order");
            stream.events.push(StreamEvent { seq, pos: record.pos, len: record.len, crc: record.crc });
            if let Some(id) = record.id {
                self.ids.insert(id_hash(sid, id), pack_event(sid, version));
            }
        }
        Ok(())
    }

    /// The frame a [`PartitionState::batches`] entry names, as offset readers see it: for a
    /// committed transactional batch, the copy its commit gave sequences to.
    pub fn batch(&self, r: u32) -> PartitionBatch {
        if r & TXN_REF == 0 {
            return PartitionBatch { entry: self.frames[r as usize], kind: BatchKind::Committed };
        }
        self.txns.partition_batch(&self.frames, r & !TXN_REF)
    }

    /// Records that partition `partition` of topic `topic` starts at `offset` (a `LogStart`
    /// frame, on append and on replay). A start at or below the current one changes nothing, so
    /// the start never moves back whatever the order of concurrent moves. The start's commit
    /// sequence is derived from the frames indexed so far, which are exactly the frames before
    /// this one in the journal, so append and replay derive the same one.
    pub fn apply_log_start(&mut self, topic: u32, partition: u32, offset: u64) -> std::result::Result<(), String> {
        let state = self.topics.get(&topic).ok_or_else(|| format!("log start for unknown topic id {topic}"))?;
        let p = state
            .partitions
            .get(partition as usize)
            .ok_or_else(|| format!("log start for unknown partition {partition} of topic id {topic}"))?;
        if offset > p.next_offset {
            return Err(format!("log start {offset} is past the partition's end {}", p.next_offset));
        }
        if offset <= p.log_start {
            return Ok(());
        }
        // Offsets past the last stable offset may belong to a transaction that has not ended:
        // its records take their sequences later, above any threshold set now.
        let lso = p.open_txns.first().map_or(p.next_offset, |&(_, first)| first);
        if offset > lso {
            return Err(format!("log start {offset} is past the last stable offset {lso} (an open transaction)"));
        }
        // Records are retained iff their sequence is at least the start's: one past the largest
        // sequence of a committed record below the new start. Without transactions that is the
        // sequence of the record at the start (offsets and sequences grow together); with
        // them, a transaction committed late has records below the start with sequences above
        // later records', and those later records are hidden from the readers that go by
        // sequence too (the offset readers still serve them): conservative, never serving a
        // deleted record. The scan is of this partition's batches, on a rare operation.
        let mut seq = p.log_start_seq;
        for &r in &p.batches {
            let b = self.batch(r);
            if b.entry.base_offset >= offset {
                break;
            }
            if b.kind == BatchKind::Committed {
                let deleted = (offset - b.entry.base_offset).min(u64::from(b.entry.count));
                seq = seq.max(b.entry.first_seq + deleted);
            }
        }
        if offset == p.next_offset {
            seq = seq.max(self.next_seq);
        }
        let Some(p) = self.topics.get_mut(&topic).and_then(|t| t.partitions.get_mut(partition as usize)) else {
            return Err(format!("log start for unknown partition {partition} of topic id {topic}"));
        };
        p.log_start = offset;
        p.log_start_seq = seq;
        // Aborts that end below the start are never listed again (see `txn::close_run`).
        p.aborted.retain(|a| a.last_offset >= offset);
        Ok(())
    }

    /// Records a `ProducerAdvance` frame ending at journal position `end`: the producer's
    /// state in the partition takes the batch as if it had been written.
    pub fn apply_producer_advance(
        &mut self,
        topic: u32,
        partition: u32,
        a: &ProducerAdvance,
        end: u64,
    ) -> std::result::Result<(), String> {
        let p = self
            .topics
            .get_mut(&topic)
            .and_then(|t| t.partitions.get_mut(partition as usize))
            .ok_or_else(|| format!("producer advance for unknown partition {partition} of topic id {topic}"))?;
        if a.producer_id < 0 {
            return Err(format!("producer advance for producer id {}", a.producer_id));
        }
        let batch = ProducerBatch {
            first_seq: a.first_seq,
            last_seq: a.first_seq.wrapping_add(a.last_offset_delta),
            base_offset: a.base_offset,
            first_commit: a.first_commit,
            count: a.count,
            end_pos: end,
        };
        p.producers.entry(a.producer_id).or_default().record(a.epoch, Some(batch));
        Ok(())
    }

    /// The log start (offset, commit sequence) of a partition; (0, 0) for one not known.
    pub fn log_start(&self, topic: u32, partition: u32) -> (u64, u64) {
        self.topics
            .get(&topic)
            .and_then(|t| t.partitions.get(partition as usize))
            .map_or((0, 0), |p| (p.log_start, p.log_start_seq))
    }

    /// Index into `frames` of the frame holding commit sequence `seq`, or the first frame after
    /// it.
    pub fn frame_at_or_after_seq(&self, seq: u64) -> usize {
        self.frames.partition_point(|f| f.end_seq() <= seq)
    }

    /// The frame holding commit sequence `seq`.
    pub fn frame_of_seq(&self, seq: u64) -> Option<&FrameEntry> {
        self.frames.get(self.frame_at_or_after_seq(seq)).filter(|f| f.first_seq <= seq)
    }

    /// Stream id of `(topic, key)`.
    pub fn stream_id(&self, topic: u32, key: &[u8]) -> Option<u32> {
        self.stream_ids.get(hash_key(topic, key)).map(|sid| sid as u32).find(|&sid| {
            self.streams.get(sid as usize).and_then(Option::as_ref).is_some_and(|s| s.topic == topic && s.key == key)
        })
    }

    /// Candidate events (stream, version) whose id hashes like `id` in stream `sid`; the
    /// caller confirms against the stored record.
    pub fn id_candidates(&self, sid: u32, id: &str) -> Vec<(u32, u32)> {
        self.ids.get(id_hash(sid, id)).map(unpack_event).filter(|(s, _)| *s == sid).collect()
    }

    /// Number of live streams of a topic.
    pub fn stream_count(&self, topic: u32) -> usize {
        self.streams.iter().flatten().filter(|s| s.topic == topic).count()
    }
}
