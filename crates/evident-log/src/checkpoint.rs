//! The index checkpoint: the whole in-memory index written to one file, so that opening the
//! store re-reads only the journal written since, not all of it. The file is a hint: it is
//! checksummed, cross-checked against the journal (the frame it claims to end at must be there
//! with the same checksum), and if anything is off the index is rebuilt from the journal, which
//! is the only source of truth.
//!
//! Written with the atomic-replace protocol: write `index.checkpoint.tmp`, `fdatasync` it,
//! rename over `index.checkpoint`, `fsync` the directory. It is written only when every frame
//! it covers is durable.

use std::collections::{HashMap, VecDeque};
use std::path::Path;
use std::sync::Arc;

use bytes::Bytes;

use crate::catalog::TopicMeta;
use evident_core::control::Marker;

use crate::index::{
    FrameEntry, Index, PartitionState, ProducerBatch, ProducerState, Stream, StreamEvent, TopicState, TXN_REF,
};
use crate::storage::Storage;
use crate::txn::{TxnFrame, TxnFrameState};

/// Version 2 added each partition's log start (offset and commit sequence, after its next
/// offset); version 3 a flag per batch frame (written by a transaction) and, at the end, the
/// table of transactional frames (`txn.rs`; what else transactions keep in memory is rebuilt
/// from it and the journal at load, by `txn::restore`). Older files are still read (with every
/// log start at 0, and no transaction: they were written before either could exist), so
/// upgrading does not cost a full replay. Version 4 added each producer's last timestamp and
/// coordinator epoch (DescribeProducers; -1 when read from an older file, until the producer
/// writes again).
const MAGIC: &[u8; 8] = b"EVCKPT04";
const MAGIC_V3: &[u8; 8] = b"EVCKPT03";
const MAGIC_V2: &[u8; 8] = b"EVCKPT02";
const MAGIC_V1: &[u8; 8] = b"EVCKPT01";
/// File name of the checkpoint.
pub(crate) const FILE: &str = "index.checkpoint";
const TMP: &str = "index.checkpoint.tmp";

/// Where the checkpoint stands in the journal.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Mark {
    /// Journal position the checkpoint covers up to (a frame boundary).
    pub pos: u64,
    /// Position and checksum of the last frame before `pos`, if any.
    pub last_frame: Option<(u64, u32)>,
}

struct W(Vec<u8>);
impl W {
    fn u8(&mut self, v: u8) {
        self.0.push(v);
    }
    fn u16(&mut self, v: u16) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u32(&mut self, v: u32) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn u64(&mut self, v: u64) {
        self.0.extend_from_slice(&v.to_le_bytes());
    }
    fn bytes(&mut self, b: &[u8]) {
        self.u32(b.len() as u32);
        self.0.extend_from_slice(b);
    }
}

struct R<'a> {
    b: &'a [u8],
    at: usize,
}
type Bad = &'static str;
impl<'a> R<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Bad> {
        let end = self.at.checked_add(n).ok_or("length overflow")?;
        let s = self.b.get(self.at..end).ok_or("truncated")?;
        self.at = end;
        Ok(s)
    }
    fn u8(&mut self) -> Result<u8, Bad> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Bad> {
        let s = self.take(2)?;
        Ok(u16::from_le_bytes([s[0], s[1]]))
    }
    fn u32(&mut self) -> Result<u32, Bad> {
        let s = self.take(4)?;
        Ok(u32::from_le_bytes([s[0], s[1], s[2], s[3]]))
    }
    fn u64(&mut self) -> Result<u64, Bad> {
        let mut a = [0u8; 8];
        a.copy_from_slice(self.take(8)?);
        Ok(u64::from_le_bytes(a))
    }
    fn bytes(&mut self) -> Result<&'a [u8], Bad> {
        let n = self.u32()? as usize;
        self.take(n)
    }
    /// A count of items each at least `item_len` bytes: bounded by the bytes left, so a bad
    /// count cannot make the loader allocate more than the file's size.
    fn count(&mut self, item_len: usize) -> Result<usize, Bad> {
        let n = self.u64()? as usize;
        if n.checked_mul(item_len.max(1)).is_none_or(|total| total > self.b.len() - self.at) {
            return Err("count exceeds the file");
        }
        Ok(n)
    }
}

/// Serializes `index` as of `mark`.
pub(crate) fn encode(index: &Index, mark: Mark) -> Vec<u8> {
    let mut w = W(Vec::with_capacity(1 << 20));
    w.0.extend_from_slice(MAGIC);
    w.u64(mark.pos);
    match mark.last_frame {
        Some((pos, crc)) => {
            w.u8(1);
            w.u64(pos);
            w.u32(crc);
        }
        None => w.u8(0),
    }
    w.u64(index.next_seq);
    w.u32(index.next_topic_id);
    let mut topic_ids: Vec<&u32> = index.topics.keys().collect();
    topic_ids.sort();
    w.u64(topic_ids.len() as u64);
    for id in topic_ids {
        let t = &index.topics[id];
        w.bytes(&serde_json::to_vec(&t.meta).unwrap_or_default());
        w.u64(t.partitions.len() as u64);
        for p in &t.partitions {
            w.u64(p.next_offset);
            w.u64(p.log_start);
            w.u64(p.log_start_seq);
            w.u64(p.batches.len() as u64);
            for b in &p.batches {
                w.u32(*b);
            }
            w.u64(p.producers.len() as u64);
            for (pid, st) in &p.producers {
                w.u64(*pid as u64);
                w.u16(st.epoch as u16);
                w.u64(st.batches.len() as u64);
                for b in &st.batches {
                    w.u32(b.first_seq as u32);
                    w.u32(b.last_seq as u32);
                    w.u64(b.base_offset);
                    w.u64(b.first_commit);
                    w.u32(b.count);
                    w.u64(b.end_pos);
                }
                w.u64(st.last_timestamp as u64);
                w.u32(st.coordinator_epoch as u32);
            }
        }
    }
    w.u64(index.frames.len() as u64);
    for f in &index.frames {
        w.u64(f.pos);
        w.u32(f.len);
        w.u32(f.topic);
        w.u32(f.partition);
        w.u32(f.count);
        w.u64(f.first_seq);
        w.u64(f.base_offset);
        w.u64(f.base_ts as u64);
        w.u64(f.max_ts as u64);
        w.u8(u8::from(f.txn));
    }
    w.u64(index.streams.len() as u64);
    for s in &index.streams {
        match s {
            None => w.u8(0),
            Some(s) => {
                w.u8(1);
                w.u32(s.topic);
                w.u32(s.partition);
                w.bytes(&s.key);
                w.u64(s.events.len() as u64);
                for e in &s.events {
                    w.u64(e.seq);
                    w.u64(e.pos);
                    w.u32(e.len);
                    w.u32(e.crc);
                }
            }
        }
    }
    // The caller compacts the event-id table first, so the sorted run is all of it.
    assert_eq!(index.ids.sorted().len(), index.ids.len(), "event-id table compacted before encoding");
    w.u64(index.ids.len() as u64);
    for (h, v) in index.ids.sorted() {
        w.u64(*h);
        w.u64(*v);
    }
    w.u64(index.txns.frames.len() as u64);
    for t in &index.txns.frames {
        let f = &t.entry;
        for v in [f.pos, u64::from(f.len), u64::from(f.topic), u64::from(f.partition), u64::from(f.count)] {
            w.u64(v);
        }
        w.u64(f.base_offset);
        w.u64(f.base_ts as u64);
        w.u64(f.max_ts as u64);
        w.u64(t.producer as u64);
        w.u16(t.epoch as u16);
        let (tag, arg) = match t.state {
            TxnFrameState::Pending => (0, 0),
            TxnFrameState::Committed(copy) => (1, copy),
            TxnFrameState::Aborted => (2, 0),
            TxnFrameState::Marker(Marker::Abort) => (3, 0),
            TxnFrameState::Marker(Marker::Commit) => (4, 0),
        };
        w.u8(tag);
        w.u32(arg);
    }
    let crc = crc32c::crc32c(&w.0);
    w.u32(crc);
    w.0
}

/// Decodes a checkpoint; any inconsistency is an error string (the caller rebuilds).
pub(crate) fn decode(bytes: &[u8]) -> Result<(Index, Mark), String> {
    if bytes.len() < MAGIC.len() + 4 {
        return Err("checkpoint truncated".into());
    }
    let (body, crc) = bytes.split_at(bytes.len() - 4);
    if crc32c::crc32c(body) != u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]) {
        return Err("checkpoint checksum mismatch".into());
    }
    decode_body(body).map_err(|e| format!("checkpoint malformed: {e}"))
}

fn decode_body(body: &[u8]) -> Result<(Index, Mark), Bad> {
    let mut r = R { b: body, at: 0 };
    let version = match r.take(8)? {
        m if m == MAGIC => 4,
        m if m == MAGIC_V3 => 3,
        m if m == MAGIC_V2 => 2,
        m if m == MAGIC_V1 => 1,
        _ => return Err("bad magic"),
    };
    let v2 = version >= 2;
    let pos = r.u64()?;
    let last_frame = match r.u8()? {
        0 => None,
        1 => Some((r.u64()?, r.u32()?)),
        _ => return Err("bad last-frame tag"),
    };
    let mut index = Index { next_seq: r.u64()?, next_topic_id: r.u32()?, ..Index::default() };
    let topics = r.count(8)?;
    for _ in 0..topics {
        let meta: TopicMeta = serde_json::from_slice(r.bytes()?).map_err(|_| "bad topic metadata")?;
        let n = r.count(if v2 { 40 } else { 24 })?;
        let mut partitions = Vec::with_capacity(n);
        for _ in 0..n {
            let next_offset = r.u64()?;
            let (log_start, log_start_seq) = if v2 { (r.u64()?, r.u64()?) } else { (0, 0) };
            if log_start > next_offset {
                return Err("log start past the partition's end");
            }
            let nb = r.count(4)?;
            let mut batches = Vec::with_capacity(nb);
            for _ in 0..nb {
                batches.push(r.u32()?);
            }
            let np = r.count(18)?;
            let mut producers = HashMap::with_capacity(np);
            for _ in 0..np {
                let pid = r.u64()? as i64;
                let epoch = r.u16()? as i16;
                let nbatch = r.count(36)?;
                let mut pb = VecDeque::with_capacity(nbatch);
                for _ in 0..nbatch {
                    pb.push_back(ProducerBatch {
                        first_seq: r.u32()? as i32,
                        last_seq: r.u32()? as i32,
                        base_offset: r.u64()?,
                        first_commit: r.u64()?,
                        count: r.u32()?,
                        end_pos: r.u64()?,
                    });
                }
                let (last_timestamp, coordinator_epoch) =
                    if version >= 4 { (r.u64()? as i64, r.u32()? as i32) } else { (-1, -1) };
                producers.insert(pid, ProducerState { epoch, batches: pb, last_timestamp, coordinator_epoch });
            }
            partitions.push(PartitionState {
                next_offset,
                log_start,
                log_start_seq,
                batches,
                producers,
                ..PartitionState::default()
            });
        }
        if partitions.len() != meta.config.partitions as usize {
            return Err("partition count disagrees with the topic's config");
        }
        index.names.insert(meta.name.clone(), meta.id);
        index.topics.insert(meta.id, TopicState { meta, partitions });
    }
    let nf = r.count(56)?;
    index.frames.reserve_exact(nf);
    for _ in 0..nf {
        index.frames.push(FrameEntry {
            pos: r.u64()?,
            len: r.u32()?,
            topic: r.u32()?,
            partition: r.u32()?,
            count: r.u32()?,
            first_seq: r.u64()?,
            base_offset: r.u64()?,
            base_ts: r.u64()? as i64,
            max_ts: r.u64()? as i64,
            txn: version >= 3 && r.u8()? == 1,
        });
    }
    let ns = r.count(1)?;
    index.streams.reserve_exact(ns);
    index.stream_ids.reserve(ns);
    for sid in 0..ns {
        match r.u8()? {
            0 => index.streams.push(None),
            1 => {
                let topic = r.u32()?;
                let partition = r.u32()?;
                let key = Bytes::copy_from_slice(r.bytes()?);
                let ne = r.count(24)?;
                let mut events = Vec::with_capacity(ne);
                for _ in 0..ne {
                    events.push(StreamEvent { seq: r.u64()?, pos: r.u64()?, len: r.u32()?, crc: r.u32()? });
                }
                index.stream_ids.insert(crate::hashed::hash_key(topic, &key), sid as u64);
                index.streams.push(Some(Stream { topic, partition, key, events }));
            }
            _ => return Err("bad stream tag"),
        }
    }
    let ni = r.count(16)?;
    let mut run = Vec::with_capacity(ni);
    for _ in 0..ni {
        run.push((r.u64()?, r.u64()?));
    }
    index.ids = crate::hashed::SortedRun::from_sorted(run).ok_or("event-id table is not sorted")?;
    if version >= 3 {
        let nt = r.count(71)?;
        index.txns.frames.reserve_exact(nt);
        for _ in 0..nt {
            let (pos, len, topic, partition, count) = (r.u64()?, r.u64()?, r.u64()?, r.u64()?, r.u64()?);
            let narrow = |v: u64| u32::try_from(v).map_err(|_| "transactional frame field out of range");
            let entry = FrameEntry {
                pos,
                len: narrow(len)?,
                topic: narrow(topic)?,
                partition: narrow(partition)?,
                count: narrow(count)?,
                first_seq: 0,
                base_offset: r.u64()?,
                base_ts: r.u64()? as i64,
                max_ts: r.u64()? as i64,
                txn: true,
            };
            let producer = r.u64()? as i64;
            let epoch = r.u16()? as i16;
            let (tag, arg) = (r.u8()?, r.u32()?);
            let state = match tag {
                0 => TxnFrameState::Pending,
                1 if (arg as usize) < index.frames.len() => TxnFrameState::Committed(arg),
                2 => TxnFrameState::Aborted,
                3 => TxnFrameState::Marker(Marker::Abort),
                4 => TxnFrameState::Marker(Marker::Commit),
                _ => return Err("bad transactional frame state"),
            };
            index.txns.frames.push(TxnFrame { entry, producer, epoch, state });
        }
    }
    // Every batch a partition names must exist (a reader indexes by them without checking).
    for t in index.topics.values() {
        for p in &t.partitions {
            let bad = p.batches.iter().any(|&b| match b & TXN_REF {
                0 => b as usize >= index.frames.len(),
                _ => (b & !TXN_REF) as usize >= index.txns.frames.len(),
            });
            if bad {
                return Err("a partition names a batch frame that does not exist");
            }
        }
    }
    if r.at != body.len() {
        return Err("bytes remain after the checkpoint");
    }
    Ok((index, Mark { pos, last_frame }))
}

/// Writes the checkpoint durably with the atomic-replace protocol.
pub(crate) fn write(storage: &Arc<dyn Storage>, dir: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = dir.join(TMP);
    let file = storage.open(&tmp, true)?;
    file.set_len(0)?;
    if let Err(e) = file.write_all_at(bytes, 0) {
        // Give back what the partial write took: on a full disk those blocks are what the
        // journal needs to resume. Best effort: the file is rewritten from empty next time.
        let _ = file.set_len(0);
        return Err(e);
    }
    file.sync_data()?;
    drop(file);
    storage.rename(&tmp, &dir.join(FILE))?;
    storage.sync_dir(dir)
}

/// Reads the checkpoint file, if there is one.
pub(crate) fn read(storage: &Arc<dyn Storage>, dir: &Path) -> std::io::Result<Option<Vec<u8>>> {
    let path = dir.join(FILE);
    if !storage.exists(&path)? {
        return Ok(None);
    }
    let file = storage.open(&path, false)?;
    let len = file.len()?;
    let mut bytes = vec![0u8; usize::try_from(len).map_err(std::io::Error::other)?];
    file.read_exact_at(&mut bytes, 0)?;
    Ok(Some(bytes))
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn with_crc(mut body: Vec<u8>) -> Vec<u8> {
        let crc = crc32c::crc32c(&body);
        body.extend_from_slice(&crc.to_le_bytes());
        body
    }

    #[test]
    fn empty_index_round_trips() {
        let mark = Mark { pos: 64, last_frame: Some((64, 7)) };
        let bytes = encode(&Index::default(), mark);
        let (index, decoded) = decode(&bytes).expect("valid");
        assert_eq!(decoded, mark);
        assert_eq!(index.next_seq, 0);
        let mut flipped = bytes.clone();
        flipped[10] ^= 1;
        assert!(decode(&flipped).is_err());
    }

    proptest! {
        // A checkpoint whose checksum is right but whose structure is hostile (counts, lengths,
        // tags) must be refused without panicking or allocating beyond its size.
        #[test]
        fn hostile_bodies_with_valid_checksums_never_panic(rest in proptest::collection::vec(any::<u8>(), 0..512)) {
            let mut body = MAGIC.to_vec();
            body.extend_from_slice(&rest);
            let _ = decode(&with_crc(body));
        }

        #[test]
        fn hostile_counts_never_panic(pos: u64, counts in proptest::collection::vec(any::<u64>(), 1..12)) {
            let mut body = MAGIC.to_vec();
            body.extend_from_slice(&pos.to_le_bytes());
            body.push(0);
            for c in counts {
                body.extend_from_slice(&c.to_le_bytes());
            }
            let _ = decode(&with_crc(body));
        }
    }
}
