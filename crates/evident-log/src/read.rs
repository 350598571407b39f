//! Reading: a partition from an offset (stored batches, ready for Kafka Fetch without
//! re-encoding), a stream by version forward or backward (optionally as of a version or a
//! time), everything in commit-sequence order, the offset for a timestamp, and waiting for new
//! records. Reads see only what is acknowledged, and verify a checksum on every byte they
//! return: a frame's CRC for batches, the record's CRC (taken at append) for stream events.
//!
//! Locations are gathered under the log's lock; the file reads happen after it is released, so
//! readers never stall appenders on I/O. Adjacent locations are read with one `pread`.
//!
//! A read that meets damage (a checksum that does not match, a frame that is not the one the
//! index points to, a file shorter than the index says) fails with `Error::Corrupted` and notes
//! where in the log's damage registry (`health.rs`), so `/health` and the metrics show it.

use std::time::{Duration, Instant};

use bytes::Bytes;
use evident_core::batch::{decode_record_trusted, RecordBatch};
use evident_core::{envelope, PartitionId, TopicName};

use crate::catalog::TopicMeta;
use crate::error::{Error, Result};
use crate::frame;
use crate::health::ReadSite;
use crate::index::{BatchKind, FrameEntry, Index, StreamEvent};
use crate::journal::Segment;
use crate::log::{Log, State};

/// Largest single read; bigger spans are split.
const READ_SPAN_MAX: u64 = 8 << 20;
/// Locations closer than this are read together (one syscall beats two for small gaps).
const READ_GAP_MAX: u64 = 64 << 10;

/// An event read back, with its positions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    /// Topic.
    pub topic: TopicName,
    /// Partition.
    pub partition: u32,
    /// Offset in the partition.
    pub offset: u64,
    /// Store-wide commit sequence.
    pub sequence: u64,
    /// Version in its stream (None for a null key).
    pub version: Option<u64>,
    /// Record timestamp (ms since the epoch).
    pub timestamp_ms: i64,
    /// Key.
    pub key: Option<Bytes>,
    /// Value.
    pub value: Option<Bytes>,
    /// The record's encoded headers (decoded on demand by [`Event::headers`], so reading an
    /// event costs no allocation per header).
    raw_headers: Bytes,
    header_count: u32,
}

impl Event {
    /// The headers, in order: name and value (None for a null value).
    pub fn headers(&self) -> impl Iterator<Item = (&str, Option<&[u8]>)> {
        evident_core::batch::headers_in(&self.raw_headers, self.header_count as usize)
    }

    /// The headers as stored: Kafka's record encoding of `count` headers (for the name and then
    /// the value, a zig-zag varint length, -1 for null, then the bytes), as `(bytes, count)`.
    /// For callers that walk every header of many events (the HTTP API's rendering) and decode
    /// them in bulk; [`Event::headers`] decodes them one at a time.
    pub fn encoded_headers(&self) -> (&[u8], usize) {
        (&self.raw_headers, self.header_count as usize)
    }

    /// The first header named `name`.
    pub fn header(&self, name: &str) -> Option<&[u8]> {
        self.headers().find(|(k, _)| *k == name).and_then(|(_, v)| v)
    }
    /// The event id (`ce_id`), if it is UTF-8.
    pub fn id(&self) -> Option<&str> {
        self.header(envelope::CE_ID).and_then(|v| std::str::from_utf8(v).ok())
    }
    /// The event type (`ce_type`), if it is UTF-8.
    pub fn event_type(&self) -> Option<&str> {
        self.header(envelope::CE_TYPE).and_then(|v| std::str::from_utf8(v).ok())
    }
}

/// Direction of a stream read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Direction {
    /// Oldest first.
    #[default]
    Forward,
    /// Newest first.
    Backward,
}

/// What part of a stream to read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StreamReadOptions {
    /// First version to return (default: 0 forward, the last version backward).
    pub from_version: Option<u64>,
    /// Most events to return.
    pub limit: usize,
    /// Order.
    pub direction: Direction,
    /// Read the stream as it was when its last event was this version.
    pub as_of_version: Option<u64>,
    /// Read only events whose timestamp is at or before this time (ms since the epoch).
    pub as_of_time_ms: Option<i64>,
}

impl Default for StreamReadOptions {
    fn default() -> Self {
        Self {
            from_version: None,
            limit: 4096,
            direction: Direction::Forward,
            as_of_version: None,
            as_of_time_ms: None,
        }
    }
}

/// A stream read's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StreamRead {
    /// Events in the requested order.
    pub events: Vec<Event>,
    /// The stream's last acknowledged version (None: no event), regardless of the options.
    pub current_version: Option<u64>,
    /// The partition the stream lives in, if it exists.
    pub partition: Option<u32>,
}

/// A partition read's result.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionRead {
    /// Stored batches (Kafka v2 record batches, CRC-valid), the first possibly starting before
    /// the requested offset, as Kafka's Fetch does.
    pub batches: Vec<Bytes>,
    /// One past the last acknowledged offset.
    pub high_watermark: u64,
    /// First offset still held.
    pub log_start_offset: u64,
    /// The last stable offset: the first offset of the oldest open transaction, or the high
    /// watermark. A `read_committed` reader takes no batch from here on.
    pub last_stable_offset: u64,
    /// The aborted transactions with records among the returned batches, in the order of their
    /// abort markers: what Kafka's Fetch lists for `read_committed` consumers to skip.
    pub aborted: Vec<AbortedTransaction>,
}

/// A transaction that was aborted, as Kafka's Fetch response names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AbortedTransaction {
    /// Producer id.
    pub producer_id: i64,
    /// Offset of its first record in the partition.
    pub first_offset: u64,
}

/// A partition's offsets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PartitionOffsets {
    /// Partition.
    pub partition: u32,
    /// First offset still held.
    pub log_start_offset: u64,
    /// One past the last acknowledged offset.
    pub high_watermark: u64,
    /// The last stable offset: the first offset of the oldest open transaction, or the high
    /// watermark.
    pub last_stable_offset: u64,
}

/// An idempotent or transactional producer that wrote into a partition, as Kafka's
/// DescribeProducers reports it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    /// Producer id.
    pub producer_id: i64,
    /// Its current epoch.
    pub epoch: i16,
    /// The producer sequence of its last record here, or -1 (none since its epoch began).
    pub last_sequence: i32,
    /// Largest timestamp of its last batch or transaction marker here, or -1.
    pub last_timestamp: i64,
    /// Coordinator epoch of its last transaction marker here, or -1.
    pub coordinator_epoch: i32,
    /// First offset of its open transaction here, if one is open.
    pub current_txn_start_offset: Option<u64>,
}

/// What [`Log::describe_topic`] tells.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicDescription {
    /// Name, id, configuration.
    pub meta: crate::catalog::TopicMeta,
    /// Each partition's offsets.
    pub partitions: Vec<PartitionOffsets>,
    /// Number of entity streams (distinct keys) in the topic.
    pub streams: usize,
    /// Journal bytes each partition's batches take (frame headers included).
    pub partition_bytes: Vec<u64>,
}

/// One contiguous read.
struct Span {
    segment: Segment,
    pos: u64,
    len: u64,
}

impl Span {
    fn read(&self) -> Result<Bytes> {
        let offset = (self.pos - self.segment.base) as usize;
        if let Some(map) = &self.segment.map {
            if offset + self.len as usize <= map.len() {
                return Ok(map.slice(offset..offset + self.len as usize));
            }
        }
        let mut buf = vec![0u8; self.len as usize];
        self.segment.file.read_exact_at(&mut buf, self.pos - self.segment.base).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                Error::Corrupted {
                    file: self.segment.path.clone(),
                    offset: self.pos - self.segment.base,
                    what: "file is shorter than its index says".into(),
                }
            } else {
                Error::Io(e)
            }
        })?;
        Ok(Bytes::from(buf))
    }
}

/// Groups `(pos, len)` locations, sorted by position, into spans; returns the spans and, for
/// each location, its span index.
fn plan_spans(st: &State, locs: &[(u64, u64)]) -> Result<(Vec<Span>, Vec<usize>)> {
    let mut spans: Vec<Span> = Vec::new();
    let mut which = Vec::with_capacity(locs.len());
    for &(pos, len) in locs {
        if let Some(last) = spans.last_mut() {
            let last_end = last.pos + last.len;
            let seg_end_ok = st.journal.segment_for(pos).is_some_and(|s| s.base == last.segment.base);
            if pos >= last.pos && pos <= last_end + READ_GAP_MAX && seg_end_ok && pos + len - last.pos <= READ_SPAN_MAX
            {
                last.len = last.len.max(pos + len - last.pos);
                which.push(spans.len() - 1);
                continue;
            }
        }
        let segment = st.journal.segment_for(pos).cloned().ok_or_else(|| Error::Corrupted {
            file: st.journal.dir().to_path_buf(),
            offset: pos,
            what: "no segment holds this position".into(),
        })?;
        spans.push(Span { segment, pos, len });
        which.push(spans.len() - 1);
    }
    Ok((spans, which))
}

/// One past the last visible (acknowledged) offset of a partition: Kafka's high watermark.
/// Records of open transactions count, as in Kafka; they are below the last stable offset
/// only once their transaction ended.
pub(crate) fn visible_high_watermark(index: &Index, topic: u32, partition: u32, visible_pos: u64) -> u64 {
    let p = &index.topics[&topic].partitions[partition as usize];
    for &r in p.batches.iter().rev() {
        let f = index.batch(r).entry;
        if f.end_pos() <= visible_pos {
            return f.end_offset();
        }
    }
    0
}

/// The last stable offset of a partition (Kafka's LSO): the first offset of its oldest open
/// transaction, or the high watermark. `read_committed` readers, and all of evident's own
/// readers, stop there.
pub(crate) fn last_stable_offset(index: &Index, topic: u32, partition: u32, visible_pos: u64) -> u64 {
    let hw = visible_high_watermark(index, topic, partition, visible_pos);
    let p = &index.topics[&topic].partitions[partition as usize];
    p.open_txns.iter().map(|&(_, first)| first).min().map_or(hw, |first| first.min(hw))
}

fn partition_offsets(st: &State, topic: u32, partition: u32) -> PartitionOffsets {
    PartitionOffsets {
        partition,
        log_start_offset: st.index.log_start(topic, partition).0,
        high_watermark: visible_high_watermark(&st.index, topic, partition, st.visible_pos),
        last_stable_offset: last_stable_offset(&st.index, topic, partition, st.visible_pos),
    }
}

fn resolve_partition(index: &Index, topic: &str, partition: u32) -> Result<(u32, TopicName)> {
    let t = index.topic_by_name(topic)?;
    if partition >= t.meta.config.partitions {
        return Err(Error::UnknownPartition {
            topic: t.meta.name.clone(),
            partition: PartitionId(partition),
            partitions: t.meta.config.partitions,
        });
    }
    Ok((t.meta.id, t.meta.name.clone()))
}

/// The visible batch frames of a partition from the one holding `offset`, while `take(frame,
/// frames taken so far)` says so; with the high watermark, the topic's name and the log start.
/// An offset past the high watermark or below the log start is an error. The first frame may
/// begin below `offset` (and so below the log start): a stored batch is served whole, as
/// Kafka's Fetch serves it, and its readers skip the records before the offset they asked for.
/// Other views than [`View::Kafka`] take only committed records' batches (a committed
/// transaction's with the sequences its commit gave).
fn partition_frames(
    st: &State,
    topic: &str,
    partition: u32,
    offset: u64,
    view: View,
    mut take: impl FnMut(&FrameEntry, usize) -> bool,
) -> Result<(Vec<FrameEntry>, u64, TopicName, u64)> {
    let committed_only = view != View::Kafka;
    let (tid, name) = resolve_partition(&st.index, topic, partition)?;
    let hw = visible_high_watermark(&st.index, tid, partition, st.visible_pos);
    let (log_start, _) = st.index.log_start(tid, partition);
    if offset > hw || offset < log_start {
        return Err(Error::OffsetOutOfRange {
            topic: name,
            partition: PartitionId(partition),
            offset,
            log_start,
            high_watermark: hw,
        });
    }
    let end = if view == View::Committed { last_stable_offset(&st.index, tid, partition, st.visible_pos) } else { hw };
    let p = &st.index.topics[&tid].partitions[partition as usize];
    let first = p.batches.partition_point(|&r| st.index.batch(r).entry.end_offset() <= offset);
    let mut frames = Vec::new();
    for &r in &p.batches[first..] {
        let b = st.index.batch(r);
        if b.entry.base_offset >= end {
            break;
        }
        if committed_only && b.kind != BatchKind::Committed {
            continue;
        }
        if !take(&b.entry, frames.len()) {
            break;
        }
        frames.push(b.entry);
    }
    Ok((frames, hw, name, log_start))
}

/// Which batches of a partition a reader takes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum View {
    /// Every batch up to the high watermark, as Kafka's Fetch serves them: open and aborted
    /// transactions' records and markers included.
    Kafka,
    /// Committed records up to the last stable offset: what a `read_committed` consumer
    /// reads, and what a reader that resumes from an offset may safely skip past.
    Committed,
    /// Every committed record up to the high watermark, skipping the records of open
    /// transactions rather than stopping at them: for a one-off scan whose owner learns of
    /// their commits otherwise.
    CommittedSkipping,
}

/// Verifies the batch frames in `bytes` (a span read starting at `span_pos`) for `frames`.
fn frame_payload(bytes: &Bytes, span: &Span, f: &FrameEntry) -> Result<Bytes> {
    let at = (f.pos - span.pos) as usize;
    let slice = &bytes[at..at + f.len as usize];
    let corrupted =
        |what: String| Error::Corrupted { file: span.segment.path.clone(), offset: f.pos - span.segment.base, what };
    let (header, payload) = frame::decode(slice).map_err(|e| corrupted(format!("frame unreadable: {e:?}")))?;
    // A transaction's batch is stored without a sequence; its commit gave it one in the index.
    let stored_seq = if f.txn { 0 } else { f.first_seq };
    if header.first_sequence != stored_seq || header.topic != f.topic || header.partition != f.partition {
        return Err(corrupted("frame is not the one the index points to".into()));
    }
    let start = at + frame::HEADER_LEN;
    Ok(bytes.slice(start..start + payload.len()))
}

/// The frames (with their spans) that a stream read of `locs` should verify whole rather than
/// record by record, and for each location the index of its frame among them, if any. A frame
/// qualifies when the records the read returns from it make up at least half of its bytes and
/// it is memory-mapped (slicing a map is free; a `pread` of the whole frame would copy bytes
/// the read does not return). The records are then sliced from the frame's verified bytes.
/// One CRC32C pass over a batch runs the CPU's instruction on three interleaved streams, where
/// a record's few hundred bytes run on one, so a dense read spends about a third of the time
/// on its checksums.
fn dense_frames(
    st: &State,
    locs: &[(usize, StreamEvent, u64, FrameEntry)],
) -> (Vec<(FrameEntry, Span)>, Vec<Option<usize>>) {
    let mut dense = Vec::new();
    let mut of_loc = vec![None; locs.len()];
    let mut at = 0;
    while at < locs.len() {
        let f = locs[at].3;
        let run = locs[at..].iter().take_while(|l| l.3.first_seq == f.first_seq).count();
        let covered: u64 = locs[at..at + run].iter().map(|l| u64::from(l.1.len)).sum();
        let mapped = st.journal.segment_for(f.pos).filter(|segment| {
            segment.map.as_ref().is_some_and(|m| f.pos - segment.base + u64::from(f.len) <= m.len() as u64)
        });
        if let (true, Some(segment)) = (covered * 2 >= u64::from(f.len), mapped) {
            of_loc[at..at + run].fill(Some(dense.len()));
            dense.push((f, Span { segment: segment.clone(), pos: f.pos, len: u64::from(f.len) }));
        }
        at += run;
    }
    (dense, of_loc)
}

impl Log {
    /// The offsets of a partition.
    pub fn partition_offsets(&self, topic: &str, partition: u32) -> Result<PartitionOffsets> {
        let st = self.inner.lock();
        let (tid, _) = resolve_partition(&st.index, topic, partition)?;
        Ok(partition_offsets(&st, tid, partition))
    }

    /// The producers that wrote into a partition, by producer id.
    pub fn partition_producers(&self, topic: &str, partition: u32) -> Result<Vec<ActiveProducer>> {
        let st = self.inner.lock();
        let (tid, _) = resolve_partition(&st.index, topic, partition)?;
        let p = &st.index.topics[&tid].partitions[partition as usize];
        let mut producers: Vec<ActiveProducer> = p
            .producers
            .iter()
            .map(|(&producer_id, state)| ActiveProducer {
                producer_id,
                epoch: state.epoch,
                last_sequence: state.batches.back().map_or(-1, |b| b.last_seq),
                last_timestamp: state.last_timestamp,
                coordinator_epoch: state.coordinator_epoch,
                current_txn_start_offset: p.open_txns.iter().find(|&&(id, _)| id == producer_id).map(|&(_, at)| at),
            })
            .collect();
        producers.sort_by_key(|a| a.producer_id);
        Ok(producers)
    }

    /// Every partition's offsets.
    pub fn topic_offsets(&self, topic: &str) -> Result<Vec<PartitionOffsets>> {
        let st = self.inner.lock();
        let t = st.index.topic_by_name(topic)?;
        Ok((0..t.meta.config.partitions).map(|p| partition_offsets(&st, t.meta.id, p)).collect())
    }

    /// A topic's metadata, partition offsets and number of streams.
    pub fn describe_topic(&self, topic: &str) -> Result<TopicDescription> {
        let st = self.inner.lock();
        let t = st.index.topic_by_name(topic)?;
        let partitions = (0..t.meta.config.partitions).map(|p| partition_offsets(&st, t.meta.id, p)).collect();
        let streams = st.index.stream_count(t.meta.id);
        let partition_bytes = st.index.topics[&t.meta.id]
            .partitions
            .iter()
            .map(|p| p.batches.iter().map(|&r| u64::from(st.index.batch(r).entry.len)).sum())
            .collect();
        Ok(TopicDescription { meta: t.meta.clone(), partitions, streams, partition_bytes })
    }

    /// A topic's metadata (name, id, configuration), without the per-partition figures
    /// [`Log::describe_topic`] gathers: what a front door reads per request to see how the
    /// topic is configured.
    pub fn topic_meta(&self, topic: &str) -> Result<TopicMeta> {
        let st = self.inner.lock();
        Ok(st.index.topic_by_name(topic)?.meta.clone())
    }

    /// Reads stored batches of a partition from `offset`, up to about `max_bytes` (at least
    /// one batch when any is available).
    pub fn read_partition(&self, topic: &str, partition: u32, offset: u64, max_bytes: usize) -> Result<PartitionRead> {
        self.read_partition_view(topic, partition, offset, max_bytes, View::Kafka)
    }

    /// [`Log::read_partition`] through another [`View`].
    pub(crate) fn read_partition_view(
        &self,
        topic: &str,
        partition: u32,
        offset: u64,
        max_bytes: usize,
        view: View,
    ) -> Result<PartitionRead> {
        let st = self.inner.lock();
        let mut total = 0usize;
        let (frames, hw, name, log_start) = partition_frames(&st, topic, partition, offset, view, |f, taken| {
            if taken > 0 && total + f.len as usize > max_bytes {
                return false;
            }
            total += f.len as usize;
            true
        })?;
        let (tid, _) = resolve_partition(&st.index, topic, partition)?;
        let last_stable_offset = last_stable_offset(&st.index, tid, partition, st.visible_pos);
        // Kafka lists the aborted transactions that overlap the fetched range. The list is in
        // marker order, so by last offset: those ending before the range are skipped by search
        // (a reader at the tail does not walk the partition's whole history of aborts).
        let upper = frames.last().map_or(offset, FrameEntry::end_offset);
        let all_aborted = &st.index.topics[&tid].partitions[partition as usize].aborted;
        let from = all_aborted.partition_point(|a| a.last_offset < offset);
        let aborted = all_aborted[from..]
            .iter()
            .filter(|a| a.last_offset >= offset && a.first_offset < upper)
            .map(|a| AbortedTransaction { producer_id: a.producer, first_offset: a.first_offset })
            .collect();
        let locs: Vec<(u64, u64)> = frames.iter().map(|f| (f.pos, u64::from(f.len))).collect();
        let (spans, which) = plan_spans(&st, &locs)?;
        drop(st);
        let mut batches = Vec::with_capacity(frames.len());
        let mut cur: Option<(usize, Bytes)> = None;
        for (f, &si) in frames.iter().zip(&which) {
            if cur.as_ref().is_none_or(|(i, _)| *i != si) {
                cur = Some((si, spans[si].read().map_err(|e| self.damaged_frame(e, &name, f))?));
            }
            let Some((_, bytes)) = &cur else { continue };
            batches.push(frame_payload(bytes, &spans[si], f).map_err(|e| self.damaged_frame(e, &name, f))?);
        }
        Ok(PartitionRead { batches, high_watermark: hw, log_start_offset: log_start, last_stable_offset, aborted })
    }

    /// Reads a stream.
    pub fn read_stream(&self, topic: &str, key: &[u8], options: &StreamReadOptions) -> Result<StreamRead> {
        let st = self.inner.lock();
        let t = st.index.topic_by_name(topic)?;
        let topic_name = t.meta.name.clone();
        let Some(stream) = st.index.stream_id(t.meta.id, key).and_then(|sid| st.index.streams[sid as usize].as_ref())
        else {
            return Ok(StreamRead { events: Vec::new(), current_version: None, partition: None });
        };
        let visible = stream.events.partition_point(|e| e.seq < st.visible_seq);
        let current_version = visible.checked_sub(1).map(|v| v as u64);
        // Versions below the partition's log start were deleted: the stream starts at its first
        // retained version, and versions keep counting from the stream's true start.
        let (_, start_seq) = st.index.log_start(stream.topic, stream.partition);
        let first = stream.events.partition_point(|e| e.seq < start_seq);
        let cap = match options.as_of_version {
            Some(v) => visible.min(usize::try_from(v.saturating_add(1)).unwrap_or(usize::MAX)),
            None => visible,
        };
        let versions: Vec<usize> = match options.direction {
            Direction::Forward => {
                let from = options.from_version.map_or(0, |v| usize::try_from(v).unwrap_or(usize::MAX));
                (from.max(first).min(cap)..cap).collect()
            }
            Direction::Backward => {
                let from = options
                    .from_version
                    .map_or(cap, |v| usize::try_from(v.saturating_add(1)).unwrap_or(usize::MAX).min(cap));
                (first.min(from)..from).rev().collect()
            }
        };
        // Without a time filter the limit applies before reading; with one, after.
        let versions: Vec<usize> =
            if options.as_of_time_ms.is_none() { versions.into_iter().take(options.limit).collect() } else { versions };
        let mut locs = Vec::with_capacity(versions.len());
        // Consecutive versions often share a frame (events appended together): look the frame
        // up again only when the event is outside the last one found.
        let mut frame: Option<FrameEntry> = None;
        for &v in &versions {
            let e = stream.events[v];
            let f = match frame {
                Some(f) if f.first_seq <= e.seq && e.seq < f.end_seq() => f,
                _ => *st.index.frame_of_seq(e.seq).ok_or_else(|| Error::Corrupted {
                    file: "journal".into(),
                    offset: e.pos,
                    what: format!("commit sequence {} has no frame", e.seq),
                })?,
            };
            frame = Some(f);
            locs.push((v, e, f.base_offset + (e.seq - f.first_seq), f));
        }
        let partition = stream.partition;
        // Forward reads come in position order, backward reads in reverse: sort only otherwise.
        let mut order: Vec<usize> = (0..locs.len()).collect();
        if locs.windows(2).all(|w| w[0].1.pos >= w[1].1.pos) {
            order.reverse();
        } else if !locs.windows(2).all(|w| w[0].1.pos <= w[1].1.pos) {
            order.sort_by_key(|&i| locs[i].1.pos);
        }
        let sorted: Vec<(u64, u64)> = order.iter().map(|&i| (locs[i].1.pos, u64::from(locs[i].1.len))).collect();
        let (spans, which_sorted) = plan_spans(&st, &sorted)?;
        let (dense, dense_of) = dense_frames(&st, &locs);
        drop(st);
        let mut which = vec![0usize; locs.len()];
        for (k, &i) in order.iter().enumerate() {
            which[i] = which_sorted[k];
        }
        // Frames this read covers densely are read and verified whole, once, when their first
        // event is reached; their events are then sliced from those verified bytes and skip
        // their own checksum. Other events are read by span and checked record by record.
        let mut frames: Vec<Option<Bytes>> = vec![None; dense.len()];
        let mut buffers: Vec<Option<Bytes>> = vec![None; spans.len()];
        let mut events = Vec::with_capacity(locs.len());
        for (i, (version, e, offset, f)) in locs.iter().enumerate() {
            let si = which[i];
            let site = ReadSite { topic: &topic_name, partition, offset: *offset, sequence: e.seq };
            let corrupted = |what: String| {
                let error = Error::Corrupted {
                    file: spans[si].segment.path.clone(),
                    offset: e.pos - spans[si].segment.base,
                    what,
                };
                self.inner.damage.note(error, site, self.inner.clock.now_ms())
            };
            let (buf, at) = match dense_of[i] {
                Some(k) => {
                    let (frame, span) = &dense[k];
                    if frames[k].is_none() {
                        let bytes = span.read().map_err(|e| self.damaged_frame(e, &topic_name, frame))?;
                        frame_payload(&bytes, span, frame).map_err(|e| self.damaged_frame(e, &topic_name, frame))?;
                        frames[k] = Some(bytes);
                    }
                    let Some(buf) = &frames[k] else { continue };
                    (buf, (e.pos - span.pos) as usize)
                }
                None => {
                    if buffers[si].is_none() {
                        buffers[si] = Some(spans[si].read().map_err(|e| self.damaged_frame(e, &topic_name, f))?);
                    }
                    let Some(buf) = &buffers[si] else { continue };
                    (buf, (e.pos - spans[si].pos) as usize)
                }
            };
            let record = buf.get(at..at + e.len as usize).ok_or_else(|| {
                corrupted(format!("record outside its frame (stream {topic_name}, version {version})"))
            })?;
            if dense_of[i].is_none() && crc32c::crc32c(record) != e.crc {
                return Err(corrupted(format!("record checksum mismatch (stream {topic_name}, version {version})")));
            }
            let event =
                to_event(buf, record, &topic_name, partition, *offset, e.seq, Some(*version as u64), f.base_ts)?;
            if options.as_of_time_ms.is_some_and(|t| event.timestamp_ms > t) {
                continue;
            }
            events.push(event);
            if events.len() >= options.limit {
                break;
            }
        }
        Ok(StreamRead { events, current_version, partition: Some(partition) })
    }

    /// Reads up to `limit` events of every topic in commit-sequence order, from `from`.
    /// Events of deleted topics are skipped (their sequence numbers are not reused), and so are
    /// records below their partition's log start: a projection reading everything sees what
    /// the store still holds, with gaps in the sequence where records were deleted, as it does
    /// where a topic was.
    pub fn read_all(&self, from: u64, limit: usize) -> Result<Vec<Event>> {
        let st = self.inner.lock();
        let walk =
            frames_since(&st, from, limit, usize::MAX, |id| st.index.topics.get(&id).map(|t| t.meta.name.clone()));
        self.decode_frames(st, &walk.frames, |f, seq, _| walk.keeps(f, seq, from), limit, true)
    }

    /// Reads up to `limit` events of one topic in commit-sequence order, from sequence `from`,
    /// as [`Log::read_all`] does for every topic (committed records only; records below a
    /// partition's log start skipped). `with_versions` fills in stream versions (one index
    /// lookup per event; a reader that does not show them skips the cost). Returns the events
    /// and the sequence to read from next, which moves past other topics' records even when
    /// no event of this topic was found, so a reader of a quiet topic in a busy log does not
    /// scan the same frames again.
    pub fn read_topic_events(
        &self,
        topic: &str,
        from: u64,
        limit: usize,
        with_versions: bool,
    ) -> Result<(Vec<Event>, u64)> {
        self.read_topics_events(&[topic], from, limit, with_versions)
    }

    /// [`Log::read_topic_events`] over several topics at once, their events merged in commit
    /// order (a join reads its two sources this way, so it sees them in one order).
    pub fn read_topics_events(
        &self,
        topics: &[&str],
        from: u64,
        limit: usize,
        with_versions: bool,
    ) -> Result<(Vec<Event>, u64)> {
        let st = self.inner.lock();
        let mut wanted: Vec<(u32, TopicName)> = Vec::with_capacity(topics.len());
        for t in topics {
            let meta = &st.index.topic_by_name(t)?.meta;
            wanted.push((meta.id, meta.name.clone()));
        }
        // Other topics' frames are passed over; bound the walk so one call stays short.
        const FRAMES_MAX: usize = 65_536;
        let walk = frames_since(&st, from, limit, FRAMES_MAX, |id| {
            wanted.iter().find(|(t, _)| *t == id).map(|(_, name)| name.clone())
        });
        let mut next = walk.next;
        let out = self.decode_frames(st, &walk.frames, |f, seq, _| walk.keeps(f, seq, from), limit, with_versions)?;
        // A batch cut by `limit` ends the read at its last event, not at the frame's end.
        if out.len() >= limit {
            next = out.last().map_or(next, |e| e.sequence + 1);
        }
        Ok((out, next))
    }

    /// The commit sequence of the topic's last committed event, and how many of its events
    /// have a sequence above `after` (a view's lag behind its source).
    pub fn topic_sequence_lag(&self, topic: &str, after: Option<u64>) -> Result<(Option<u64>, u64)> {
        let st = self.inner.lock();
        let tid = st.index.topic_by_name(topic)?.meta.id;
        let from = after.map_or(0, |a| a + 1);
        let start = st.index.frame_at_or_after_seq(from);
        let mut lag = 0u64;
        let mut last = None;
        for f in &st.index.frames[start..] {
            if f.end_seq() > st.visible_seq {
                break;
            }
            if f.topic != tid || f.count == 0 {
                continue;
            }
            let (_, start_seq) = st.index.log_start(f.topic, f.partition);
            lag += f.end_seq().saturating_sub(from.max(f.first_seq).max(start_seq));
            last = Some(f.end_seq() - 1);
        }
        if last.is_none() {
            // Nothing after `after`: the topic's last event is at or before it.
            last =
                st.index.frames[..start].iter().rev().find(|f| f.topic == tid && f.count > 0).map(|f| f.end_seq() - 1);
        }
        Ok((last, lag))
    }

    /// Reads up to `limit` committed events of one partition from `offset`, with their stream
    /// versions and commit sequences (the record-by-record view of [`Log::read_partition`], as
    /// a `read_committed` reader sees it: up to the last stable offset, without transaction
    /// markers or aborted records, whose offsets are skipped).
    pub fn read_partition_events(&self, topic: &str, partition: u32, offset: u64, limit: usize) -> Result<Vec<Event>> {
        let st = self.inner.lock();
        let mut count = 0usize;
        let (frames, _, name, _) = partition_frames(&st, topic, partition, offset, View::Committed, |f, _| {
            if count >= limit {
                return false;
            }
            count += f.end_offset().saturating_sub(offset.max(f.base_offset)) as usize;
            true
        })?;
        let frames: Vec<(FrameEntry, TopicName)> = frames.into_iter().map(|f| (f, name.clone())).collect();
        self.decode_frames(st, &frames, |_, _, off| off >= offset, limit, true)
    }

    /// Decodes the records of `frames` (in order) that `keep(frame, sequence, offset)` accepts, up to
    /// `limit`, then fills in their stream versions. Takes the lock guard so the file reads
    /// happen after it is released.
    fn decode_frames(
        &self,
        st: std::sync::MutexGuard<'_, State>,
        frames: &[(FrameEntry, TopicName)],
        keep: impl Fn(&FrameEntry, u64, u64) -> bool,
        limit: usize,
        with_versions: bool,
    ) -> Result<Vec<Event>> {
        let locs: Vec<(u64, u64)> = frames.iter().map(|(f, _)| (f.pos, u64::from(f.len))).collect();
        let (spans, which) = plan_spans(&st, &locs)?;
        drop(st);
        let mut out = Vec::new();
        let mut topic_ids = Vec::new();
        let mut cur: Option<(usize, Bytes)> = None;
        'frames: for ((f, name), &si) in frames.iter().zip(&which) {
            if cur.as_ref().is_none_or(|(i, _)| *i != si) {
                cur = Some((si, spans[si].read().map_err(|e| self.damaged_frame(e, name, f))?));
            }
            let Some((_, bytes)) = &cur else { continue };
            let payload = frame_payload(bytes, &spans[si], f).map_err(|e| self.damaged_frame(e, name, f))?;
            let batch = RecordBatch::parse_exact(&payload)?;
            for (i, record) in batch.records()?.enumerate() {
                let record = record?;
                let seq = f.first_seq + i as u64;
                let offset = f.base_offset + i as u64;
                if !keep(f, seq, offset) {
                    continue;
                }
                if out.len() >= limit {
                    break 'frames;
                }
                let bytes = &payload[record.start as usize..(record.start + record.len) as usize];
                out.push(to_event(&payload, bytes, name, f.partition, offset, seq, None, f.base_ts)?);
                topic_ids.push(f.topic);
            }
        }
        if !with_versions {
            return Ok(out);
        }
        // Versions need the stream index: one more short look under the lock.
        // A stream's events come in sequence order, so after the first one is found by binary
        // search the next is usually the following version: keep a cursor per stream.
        let st = self.inner.lock();
        let mut cursors: std::collections::HashMap<u32, usize, xxhash_rust::xxh3::Xxh3DefaultBuilder> =
            Default::default();
        for (e, tid) in out.iter_mut().zip(&topic_ids) {
            let Some(sid) = e.key.as_ref().and_then(|k| st.index.stream_id(*tid, k)) else { continue };
            let Some(stream) = st.index.streams[sid as usize].as_ref() else { continue };
            let next = cursors.get(&sid).map(|v| v + 1);
            let v = match next {
                Some(v) if stream.events.get(v).is_some_and(|x| x.seq == e.sequence) => v,
                _ => stream.events.partition_point(|x| x.seq < e.sequence),
            };
            if stream.events.get(v).is_some_and(|x| x.seq == e.sequence) {
                e.version = Some(v as u64);
                cursors.insert(sid, v);
            }
        }
        Ok(out)
    }

    /// The first offset of the partition whose record timestamp is at or after `timestamp_ms`
    /// (Kafka's ListOffsets by time), or None if there is none.
    pub fn offset_for_timestamp(&self, topic: &str, partition: u32, timestamp_ms: i64) -> Result<Option<u64>> {
        Ok(self.record_at_or_after(topic, partition, timestamp_ms)?.map(|(offset, _)| offset))
    }

    /// The first record of the partition whose timestamp is at or after `timestamp_ms`: its
    /// offset and its own timestamp (what Kafka's ListOffsets answers), or None if there is none.
    pub fn record_at_or_after(&self, topic: &str, partition: u32, timestamp_ms: i64) -> Result<Option<(u64, i64)>> {
        let st = self.inner.lock();
        let (tid, name) = resolve_partition(&st.index, topic, partition)?;
        let p = &st.index.topics[&tid].partitions[partition as usize];
        let start = p.log_start;
        let mut found = p
            .batches
            .iter()
            .map(|&r| st.index.batch(r).entry)
            .skip_while(|f| f.end_offset() <= start)
            .take_while(|f| f.end_pos() <= st.visible_pos)
            .filter(|f| f.max_ts >= timestamp_ms);
        let (Some(f), next) = (found.next(), found.next()) else {
            return Ok(None);
        };
        // Only the batch holding the log start has records below it; if none of its retained
        // ones is late enough, the next batch whose maximum is (all retained) holds the answer.
        if let Some(hit) = self.first_record_where(st, &name, &f, start, |ts| ts >= timestamp_ms)? {
            return Ok(Some(hit));
        }
        match next {
            Some(g) => self.first_record_where(self.inner.lock(), &name, &g, start, |ts| ts >= timestamp_ms),
            None => Ok(None),
        }
    }

    /// The record of the partition with the largest timestamp, the first of them on a tie (what
    /// Kafka's ListOffsets answers for MAX_TIMESTAMP, -3): its offset and timestamp, or None
    /// for an empty partition. The batch is found from the index's per-batch maximum (a scan
    /// of the partition's index entries, in memory); only that batch is read.
    pub fn record_with_max_timestamp(&self, topic: &str, partition: u32) -> Result<Option<(u64, i64)>> {
        let st = self.inner.lock();
        let (tid, name) = resolve_partition(&st.index, topic, partition)?;
        let p = &st.index.topics[&tid].partitions[partition as usize];
        let start = p.log_start;
        let retained: Vec<FrameEntry> = p
            .batches
            .iter()
            .map(|&r| st.index.batch(r).entry)
            .skip_while(|f| f.end_offset() <= start)
            .take_while(|f| f.end_pos() <= st.visible_pos)
            .collect();
        // The batch the log start cuts (the first, if any) has a maximum that may belong to a
        // deleted record: its retained maximum is found by reading its retained records.
        let (cut, whole) = match retained.split_first() {
            Some((first, rest)) if first.base_offset < start => (Some(*first), rest),
            _ => (None, &retained[..]),
        };
        let mut best: Option<FrameEntry> = None;
        for f in whole {
            if best.is_none_or(|b| f.max_ts > b.max_ts) {
                best = Some(*f);
            }
        }
        if let Some(c) = cut {
            let max = std::cell::Cell::new(i64::MIN);
            self.first_record_where(st, &name, &c, start, |ts| {
                max.set(max.get().max(ts));
                false
            })?;
            let max = max.get();
            // Ties go to the earliest record, which is in the cut batch.
            if best.is_none_or(|b| max >= b.max_ts) {
                return self.first_record_where(self.inner.lock(), &name, &c, start, |ts| ts == max);
            }
            let Some(f) = best else { return Ok(None) };
            return self.first_record_where(self.inner.lock(), &name, &f, start, |ts| ts == f.max_ts);
        }
        let Some(f) = best else {
            return Ok(None);
        };
        let max_ts = f.max_ts;
        self.first_record_where(st, &name, &f, start, |ts| ts == max_ts)
    }

    /// The first record of batch `f` at or after offset `from` whose timestamp passes `wanted`:
    /// its offset and timestamp. Takes the state lock's guard to drop it before reading the disk.
    fn first_record_where(
        &self,
        st: std::sync::MutexGuard<'_, State>,
        name: &TopicName,
        f: &FrameEntry,
        from: u64,
        wanted: impl Fn(i64) -> bool,
    ) -> Result<Option<(u64, i64)>> {
        let (spans, _) = plan_spans(&st, &[(f.pos, u64::from(f.len))])?;
        drop(st);
        let bytes = spans[0].read().map_err(|e| self.damaged_frame(e, name, f))?;
        let payload = frame_payload(&bytes, &spans[0], f).map_err(|e| self.damaged_frame(e, name, f))?;
        let batch = RecordBatch::parse_exact(&payload)?;
        let header = batch.header();
        // A LogAppendTime batch stamps every record with the batch's max timestamp.
        let log_append_time = header.attributes & 0x08 != 0;
        for (i, record) in batch.records()?.enumerate() {
            let ts =
                if log_append_time { header.max_timestamp } else { header.base_timestamp + record?.timestamp_delta };
            if f.base_offset + i as u64 >= from && wanted(ts) {
                return Ok(Some((f.base_offset + i as u64, ts)));
            }
        }
        Ok(None)
    }

    /// Notes in the damage registry that a read of frame `f` of `topic` met `error`, if it is
    /// damage (`health.rs`); passes the error on.
    fn damaged_frame(&self, error: Error, topic: &TopicName, f: &FrameEntry) -> Error {
        let site = ReadSite { topic, partition: f.partition, offset: f.base_offset, sequence: f.first_seq };
        self.inner.damage.note(error, site, self.inner.clock.now_ms())
    }

    /// Waits until an event with commit sequence `>= sequence` is readable, or `timeout`
    /// passes. Returns whether one is.
    pub fn wait_for_sequence(&self, sequence: u64, timeout: Duration) -> Result<bool> {
        self.wait_until(timeout, |st| Ok(st.visible_seq > sequence))
    }

    /// Waits until the partition holds a record at `offset`, or `timeout` passes. Returns
    /// whether it does.
    pub fn wait_for_offset(&self, topic: &str, partition: u32, offset: u64, timeout: Duration) -> Result<bool> {
        self.wait_until(timeout, |st| {
            let (tid, _) = resolve_partition(&st.index, topic, partition)?;
            Ok(visible_high_watermark(&st.index, tid, partition, st.visible_pos) > offset)
        })
    }

    /// Waits, woken by each commit round, until `ready` holds or `timeout` passes.
    fn wait_until(&self, timeout: Duration, ready: impl Fn(&State) -> Result<bool>) -> Result<bool> {
        let deadline = Instant::now() + timeout;
        let mut st = self.inner.lock();
        loop {
            if ready(&st)? {
                return Ok(true);
            }
            if st.closed {
                return Err(Error::Closed);
            }
            let now = Instant::now();
            if now >= deadline {
                return Ok(false);
            }
            if !st.pending.is_empty() {
                // Queued frames whose appenders have not waited yet (a deferred append held
                // while its caller waits here, by its own means): what this waits for may be
                // among them, so their round must not wait for their appenders.
                self.inner.hand_off();
            }
            st = self.inner.progress.wait_timeout(st, deadline - now).unwrap_or_else(|e| e.into_inner()).0;
        }
    }
}

/// The frames a commit-ordered read from sequence `from` visits: those of the topics `topic`
/// names (by id), committed, not wholly below their partition's log start, until they hold
/// `limit` events or `frames_max` frames were walked.
struct FrameWalk {
    frames: Vec<(FrameEntry, TopicName)>,
    /// (topic, partition) -> first retained sequence, for the frames a log start cuts through.
    cut: std::collections::HashMap<(u32, u32), u64>,
    /// The sequence after the last frame walked (of any topic).
    next: u64,
}

impl FrameWalk {
    /// Whether the record at `seq` of frame `f` is part of a read from `from`.
    fn keeps(&self, f: &FrameEntry, seq: u64, from: u64) -> bool {
        seq >= from && self.cut.get(&(f.topic, f.partition)).is_none_or(|&s| seq >= s)
    }
}

fn frames_since(
    st: &State,
    from: u64,
    limit: usize,
    frames_max: usize,
    topic: impl Fn(u32) -> Option<TopicName>,
) -> FrameWalk {
    let start = st.index.frame_at_or_after_seq(from);
    let mut walk = FrameWalk { frames: Vec::new(), cut: std::collections::HashMap::new(), next: from };
    let mut count = 0usize;
    for f in st.index.frames[start..].iter().take(frames_max) {
        if f.end_seq() > st.visible_seq || count >= limit {
            break;
        }
        walk.next = f.end_seq();
        let Some(name) = topic(f.topic) else {
            continue;
        };
        let (_, start_seq) = st.index.log_start(f.topic, f.partition);
        if f.end_seq() <= start_seq {
            continue;
        }
        if f.first_seq < start_seq {
            walk.cut.insert((f.topic, f.partition), start_seq);
        }
        count += f.end_seq().saturating_sub(from.max(f.first_seq).max(start_seq)) as usize;
        walk.frames.push((*f, name));
    }
    walk
}

/// The event of the record `bytes`, a slice of `owner` (which its key, value and headers then
/// share, rather than a copy or a second handle on the record).
#[allow(clippy::too_many_arguments)]
fn to_event(
    owner: &Bytes,
    bytes: &[u8],
    topic: &TopicName,
    partition: u32,
    offset: u64,
    sequence: u64,
    version: Option<u64>,
    base_ts: i64,
) -> Result<Event> {
    // The caller verified a checksum over these bytes, and they were validated when stored.
    let record = decode_record_trusted(bytes)?;
    let owned = |s: &[u8]| owner.slice_ref(s);
    Ok(Event {
        topic: topic.clone(),
        partition,
        offset,
        sequence,
        version,
        timestamp_ms: base_ts + record.timestamp_delta,
        key: record.key.map(owned),
        value: record.value.map(owned),
        raw_headers: owned(record.raw_headers()),
        header_count: record.header_count() as u32,
    })
}
