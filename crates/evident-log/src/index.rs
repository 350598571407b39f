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
#[derive(Debug, Clone, Default)]
pub(crate) struct ProducerState {
    /// Current epoch.
    pub epoch: i16,
    /// The last [`PRODUCER_BATCHES`] batches, oldest first.
    pub batches: VecDeque<ProducerBatch>,
}

/// Batches remembered per producer, as Kafka does (hence `max.in.flight.requests` <= 5).
pub(crate) const PRODUCER_BATCHES: usize = 5;

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
    /// Indices into [`Index::frames`] of this partition's batches, in offset order.
    pub batches: Vec<u32>,
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
        let streams = &self.streams;
        let live = |sid: u32| streams.get(sid as usize).is_some_and(Option::is_some);
        self.stream_ids.retain(|sid| live(sid as u32));
        self.ids.retain(|packed| live(unpack_event(packed).0));
    }

    /// Records a batch frame written at journal position `pos`.
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
        if header.first_sequence != self.next_seq {
            return Err(corrupted(format!(
                "batch frame has commit sequence {}, expected {}",
                header.first_sequence, self.next_seq
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
        let frame_index = self.frames.len() as u32;
        let entry = FrameEntry {
            pos,
            len: padded_len,
            topic: header.topic,
            partition: header.partition,
            count,
            first_seq: header.first_sequence,
            base_offset: partition.next_offset,
            base_ts: bh.base_timestamp,
            max_ts: bh.max_timestamp,
        };
        partition.next_offset += u64::from(count);
        partition.batches.push(frame_index);
        if bh.producer_id >= 0 {
            let state = partition.producers.entry(bh.producer_id).or_default();
            if bh.producer_epoch != state.epoch {
                state.epoch = bh.producer_epoch;
                state.batches.clear();
            }
            if state.batches.len() == PRODUCER_BATCHES {
                state.batches.pop_front();
            }
            state.batches.push_back(ProducerBatch {
                first_seq: bh.base_sequence,
                last_seq: bh.base_sequence.wrapping_add(bh.last_offset_delta),
                base_offset: entry.base_offset,
                first_commit: entry.first_seq,
                count,
                end_pos: entry.end_pos(),
            });
        }
        let topic_id = header.topic;
        let partition_id = header.partition;
        self.frames.push(entry);
        let payload_pos = pos + frame::HEADER_LEN as u64;
        for (i, info) in infos.iter().enumerate() {
            let Some(key) = info.key else { continue };
            let sid = match self.stream_id(topic_id, key) {
                Some(sid) => sid,
                None => {
                    let sid = u32::try_from(self.streams.len()).map_err(|_| corrupted("too many streams".into()))?;
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
                return Err(corrupted("stream of a deleted topic".into()));
            };
            let version = stream.events.len() as u32;
            let seq = header.first_sequence + i as u64;
            // A stream's versions are contiguous and in commit order: the event appended here
            // is the stream's next version and comes after its last one in the global order.
            assert!(stream.events.last().is_none_or(|e| e.seq < seq), "stream events out of commit order");
            stream.events.push(StreamEvent {
                seq,
                pos: payload_pos + u64::from(info.start),
                len: info.len,
                crc: info.crc,
            });
            if let Some(id) = info.id {
                self.ids.insert(id_hash(sid, id), pack_event(sid, version));
            }
        }
        self.next_seq = header.first_sequence + u64::from(count);
        Ok(())
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
        let at = p.batches.partition_point(|&i| self.frames[i as usize].end_offset() <= offset);
        let seq = match p.batches.get(at) {
            Some(&i) => {
                let f = &self.frames[i as usize];
                f.first_seq + (offset - f.base_offset)
            }
            None => self.next_seq,
        };
        let Some(p) = self.topics.get_mut(&topic).and_then(|t| t.partitions.get_mut(partition as usize)) else {
            return Err(format!("log start for unknown partition {partition} of topic id {topic}"));
        };
        p.log_start = offset;
        p.log_start_seq = seq;
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
