//! Appending: the checks that decide whether a batch may enter the log, in the order a peer
//! would want its errors (malformed bytes first, then where it goes, then idempotent retries,
//! then optimistic concurrency), and the assignment of offsets, versions and commit sequences.
//! A refused batch changes nothing.

use std::collections::{HashMap, HashSet};

use xxhash_rust::xxh3::Xxh3DefaultBuilder;

use evident_core::batch::{
    decode_record, set_base_offset, set_log_append_time, set_partition_leader_epoch, BatchBuilder, RecordBatch,
};
use evident_core::partitioner::KeyPartitioner;
use evident_core::{envelope, EventData, ExpectedVersion, PartitionId, StreamKey, TopicName, Version};

use crate::catalog::CleanupPolicy;
use crate::error::{Error, Result};
use crate::frame::{FrameHeader, FrameKind};
use crate::index::{record_infos, Index, ProducerBatch, RecordInfo, NO_SEQ};
use crate::log::{Durability, Log, State};

/// Where one appended record landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecordPosition {
    /// Offset in the partition.
    pub offset: u64,
    /// Store-wide commit sequence.
    pub sequence: u64,
    /// Version in its stream (None for a record with a null key).
    pub version: Option<u64>,
}

/// The reply to an append.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendOutcome {
    /// Topic.
    pub topic: TopicName,
    /// Partition the batch went to.
    pub partition: u32,
    /// Offset of the first record.
    pub base_offset: u64,
    /// Commit sequence of the first record.
    pub first_sequence: u64,
    /// Each record's position, in batch order.
    pub records: Vec<RecordPosition>,
    /// True when the batch was a retry of one already in the log (by event ids or by Kafka
    /// producer sequence): nothing was appended and the positions are the originals.
    pub duplicate: bool,
    /// The time the log stamped the batch with, on a `LogAppendTime` topic (Kafka's Produce
    /// response carries it); None otherwise, and for a duplicate.
    pub log_append_time_ms: Option<i64>,
    /// True for a batch written inside a transaction: its records have their offsets, but take
    /// their commit sequences and stream versions only when the transaction commits
    /// ([`Log::end_transaction`]); until then `first_sequence` and each record's `sequence` are
    /// 0 and its `version` None.
    pub transactional: bool,
}

/// An append that is positioned and queued but not yet acknowledged; see
/// [`Log::append_batch_deferred`].
#[must_use = "an append is acknowledged only by waiting for it"]
pub struct PendingAppend {
    outcome: AppendOutcome,
    durability: Durability,
}

impl std::fmt::Debug for PendingAppend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PendingAppend").field("outcome", &self.outcome).finish_non_exhaustive()
    }
}

impl PendingAppend {
    /// Where the append landed. Not yet durable: a caller may wait for these positions to
    /// become visible (the commit sequence passing the last one) by its own means, but reports
    /// them only after [`PendingAppend::wait`] returns.
    ///
    /// The commit round that makes it durable starts when the append is waited for, awaited,
    /// given [`PendingAppend::commit_if_idle`] or dropped, when [`Log::wait_for_sequence`] or
    /// [`Log::wait_for_offset`] waits, or with any later append's round: queuing alone wakes
    /// no thread (see the module `log`), so a caller that holds the value and watches only
    /// the commit hook must do one of these.
    pub fn outcome(&self) -> &AppendOutcome {
        &self.outcome
    }

    /// Waits for the sync that makes the append durable, then returns where it landed (or the
    /// error that poisoned the log before it was durable).
    pub fn wait(self) -> Result<AppendOutcome> {
        self.durability.wait()?;
        Ok(self.outcome)
    }

    /// Runs the commit round that makes this append durable on the calling thread, if the
    /// log is idle (policy `always`, no round in flight); otherwise hands it to the commit
    /// thread and returns at once. Then await (or [`PendingAppend::wait`]) as usual.
    ///
    /// For an async server that would rather block one worker for one write and
    /// `fdatasync` than pay the two thread wake-ups of the commit thread's hand-off: on an
    /// idle log that is most of an append's CPU. At most one thread leads a round at a time,
    /// so at most one worker is ever blocked this way; under load appends find a round in
    /// flight and do not block. [`PendingAppend::wait`] does this by itself; awaiting alone
    /// never blocks.
    pub fn commit_if_idle(&mut self) {
        self.durability.commit_if_idle();
    }
}

/// Awaiting a [`PendingAppend`] is [`PendingAppend::wait`] without blocking a thread: the
/// round that covers the append (the commit thread's, or another appender's) wakes the task
/// when its sync returns (or the log is poisoned), so an async server waits for durability
/// with no thread hand-off in between. The future needs no particular runtime. See
/// [`PendingAppend::commit_if_idle`] for running the round on the caller's thread instead.
impl std::future::IntoFuture for PendingAppend {
    type Output = Result<AppendOutcome>;
    type IntoFuture = Acknowledgement;

    fn into_future(self) -> Acknowledgement {
        Acknowledgement(Some(self))
    }
}

/// The future of an awaited [`PendingAppend`]: resolves once the append is durable (or the
/// log was poisoned before it was). Dropping it abandons the wait, not the append.
#[must_use = "futures do nothing unless awaited"]
#[derive(Debug)]
pub struct Acknowledgement(Option<PendingAppend>);

impl std::future::Future for Acknowledgement {
    type Output = Result<AppendOutcome>;

    fn poll(mut self: std::pin::Pin<&mut Self>, cx: &mut std::task::Context<'_>) -> std::task::Poll<Self::Output> {
        let Some(pending) = self.0.as_mut() else {
            panic!("an append acknowledgement polled after it completed");
        };
        let done = std::task::ready!(pending.durability.poll_ready(cx));
        let outcome = self.0.take().map(|p| p.outcome);
        std::task::Poll::Ready(done.and_then(|()| outcome.ok_or(Error::Closed)))
    }
}

/// Whether an append is made or only checked ([`Log::check_events`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Append,
    Check,
}

enum Route<'a> {
    Partition(u32),
    Key(&'a [u8]),
}

struct KeyPlan<'a> {
    key: &'a [u8],
    expected: Option<ExpectedVersion>,
    sid: Option<u32>,
}

fn key_text(key: &[u8]) -> String {
    StreamKey(bytes::Bytes::copy_from_slice(key)).to_string()
}

impl Log {
    /// Appends a Kafka record batch (v2, uncompressed) to a partition. `expected` applies to
    /// every keyed record's stream; without it, the `evident-expected-version` header on the
    /// first record of each key is honoured.
    pub fn append_batch(
        &self,
        topic: &str,
        partition: u32,
        batch: &[u8],
        expected: Option<ExpectedVersion>,
    ) -> Result<AppendOutcome> {
        self.append_inner(topic, Route::Partition(partition), batch, expected, Mode::Append)?.wait()
    }

    /// Like [`Log::append_batch`], but returns as soon as the batch is checked, positioned and
    /// queued for the commit thread, without waiting for its sync. The append's place in the
    /// log is fixed on return (so a protocol that must apply a connection's requests in order,
    /// like Kafka's, can accept the next request at once), but it is acknowledged only by
    /// [`PendingAppend::wait`], after the sync: until then a crash may lose it.
    pub fn append_batch_deferred(
        &self,
        topic: &str,
        partition: u32,
        batch: &[u8],
        expected: Option<ExpectedVersion>,
    ) -> Result<PendingAppend> {
        self.append_inner(topic, Route::Partition(partition), batch, expected, Mode::Append)
    }

    /// Appends events to the stream `topic`/`key`, in its partition (Kafka's default
    /// partitioner picks it for a new stream), stamped with the log's clock.
    pub fn append_events(
        &self,
        topic: &str,
        key: &[u8],
        expected: ExpectedVersion,
        events: &[EventData],
    ) -> Result<AppendOutcome> {
        self.append_events_deferred(topic, key, expected, events)?.wait()
    }

    /// Like [`Log::append_events`], but returns once the events are checked, positioned and
    /// queued, without waiting for their sync (see [`Log::append_batch_deferred`]). A server
    /// can then wait for the commit without holding a thread.
    pub fn append_events_deferred(
        &self,
        topic: &str,
        key: &[u8],
        expected: ExpectedVersion,
        events: &[EventData],
    ) -> Result<PendingAppend> {
        let batch = self.events_batch(key, events)?;
        self.append_inner(topic, Route::Key(key), &batch, Some(expected), Mode::Append)
    }

    /// The batch carrying `events` under `key`, stamped with the log's clock.
    fn events_batch(&self, key: &[u8], events: &[EventData]) -> Result<Vec<u8>> {
        if events.is_empty() {
            return Err(Error::EmptyBatch);
        }
        let now = self.inner.clock.now_ms();
        let mut builder = BatchBuilder::new();
        for event in events {
            event.push_to(&mut builder, key, now);
        }
        Ok(builder.build())
    }

    /// Checks what [`Log::append_events`] would do now, writing nothing: the stream's expected
    /// version, its event ids (an outcome with `duplicate` set names the originals), the
    /// partition a new stream would take, and the offsets and versions the events would get
    /// (no commit sequence: 0). A store that writes elsewhere first (the library's Kafka
    /// backend, which appends to a Kafka cluster and mirrors it here) asks this under its
    /// writer's lock, with the same rules as a local append.
    pub fn check_events(
        &self,
        topic: &str,
        key: &[u8],
        expected: ExpectedVersion,
        events: &[EventData],
    ) -> Result<AppendOutcome> {
        let batch = self.events_batch(key, events)?;
        self.append_inner(topic, Route::Key(key), &batch, Some(expected), Mode::Check)?.wait()
    }

    fn append_inner(
        &self,
        topic: &str,
        route: Route<'_>,
        bytes: &[u8],
        expected_override: Option<ExpectedVersion>,
        mode: Mode,
    ) -> Result<PendingAppend> {
        let max = self.inner.config.batch_size_max;
        if bytes.len() > max {
            return Err(Error::BatchTooLarge { size: bytes.len(), max });
        }
        let batch = RecordBatch::parse_exact(bytes)?;
        let bh = *batch.header();
        if bh.is_control() {
            return Err(Error::InvalidTxnState(
                "control batches (transaction markers) are written by the log itself".into(),
            ));
        }
        let txn = bh.is_transactional();
        if txn && bh.producer_id < 0 {
            return Err(Error::InvalidTxnState("a transactional batch without a producer id".into()));
        }
        // The transaction a batch belongs to, as the pending streams name their writers: a
        // plain append is None.
        let writer = txn.then_some(bh.producer_id);
        let infos = record_infos(&batch)?;
        if infos.is_empty() {
            return Err(Error::EmptyBatch);
        }
        let mut plans: Vec<KeyPlan<'_>> = Vec::new();
        let mut plan_of: HashMap<&[u8], usize, Xxh3DefaultBuilder> = HashMap::default();
        for info in &infos {
            let Some(key) = info.key else {
                if info.expected.is_some() || expected_override.is_some_and(|e| e != ExpectedVersion::Any) {
                    return Err(Error::ExpectedVersionWithoutKey);
                }
                continue;
            };
            if plan_of.contains_key(key) {
                continue;
            }
            let expected = match (expected_override, info.expected) {
                (Some(e), _) => Some(e),
                (None, Some(raw)) => {
                    let text = std::str::from_utf8(raw).map_err(|_| {
                        Error::InvalidExpectedVersion("evident-expected-version header is not UTF-8".into())
                    })?;
                    Some(text.parse::<ExpectedVersion>().map_err(|e| Error::InvalidExpectedVersion(e.to_string()))?)
                }
                (None, None) => None,
            };
            plan_of.insert(key, plans.len());
            plans.push(KeyPlan { key, expected, sid: None });
        }

        let mut st = self.inner.writable()?;
        let topic_state = st.index.topic_by_name(topic)?;
        let topic_name = topic_state.meta.name.clone();
        let topic_id = topic_state.meta.id;
        let guard = topic_state.meta.config.key_partition_guard;
        let key_partitioner = topic_state.meta.config.key_partitioner;
        let compacted = topic_state.meta.config.cleanup_policy == CleanupPolicy::Compact;
        let log_append_time = topic_state.meta.config.log_append_time;
        let partitions = topic_state.meta.config.partitions;
        let partition = match route {
            Route::Partition(p) if p < partitions => p,
            Route::Partition(p) => {
                return Err(Error::UnknownPartition { topic: topic_name, partition: PartitionId(p), partitions });
            }
            Route::Key(key) => {
                match st.index.stream_id(topic_id, key).and_then(|sid| st.index.streams[sid as usize].as_ref()) {
                    Some(stream) => stream.partition,
                    None => match st.index.txns.key(topic_id, key) {
                        Some(pending) => pending.partition,
                        None => key_partitioner.partition(key, partitions),
                    },
                }
            }
        };
        if compacted && plans.len() < infos.len() && infos.iter().any(|i| i.key.is_none()) {
            return Err(Error::KeylessOnCompacted { topic: topic_name, partition: PartitionId(partition) });
        }
        for plan in &mut plans {
            plan.sid = st.index.stream_id(topic_id, plan.key);
            let pending = st.index.txns.key(topic_id, plan.key);
            let home = plan
                .sid
                .and_then(|sid| st.index.streams[sid as usize].as_ref())
                .map(|stream| stream.partition)
                .or(pending.map(|p| p.partition));
            if let Some(home) = home.filter(|&home| guard && home != partition) {
                return Err(Error::KeyInOtherPartition {
                    topic: topic_name,
                    key: key_text(plan.key),
                    home: PartitionId(home),
                    sent: PartitionId(partition),
                    home_by: KeyPartitioner::placing(plan.key, partitions, home),
                    sent_by: KeyPartitioner::placing(plan.key, partitions, partition),
                    key_partitioner,
                });
            }
        }
        // Kafka idempotent producer: a retried batch is answered with its original offsets.
        if bh.producer_id >= 0 {
            if let Some(original) = check_producer(&st, topic_id, partition, &bh)? {
                let outcome = producer_duplicate(&st.index, topic_name, topic_id, partition, &original, &infos);
                let durability = self.inner.defer_visible(st, original.end_pos)?;
                return Ok(PendingAppend { outcome, durability });
            }
        }

        // Transactions: a retry was answered above; what follows may refuse a new batch.
        if let Some(open) = st.index.txns.open.get(&bh.producer_id).filter(|_| bh.producer_id >= 0) {
            if bh.producer_epoch < open.epoch {
                return Err(Error::ProducerFenced {
                    producer_id: bh.producer_id,
                    epoch: bh.producer_epoch,
                    current: open.epoch,
                });
            }
            if !txn {
                return Err(Error::InvalidTxnState(format!(
                    "producer {} has an open transaction: a batch outside it is refused until it ends",
                    bh.producer_id
                )));
            }
        }
        let mut ids_in: HashSet<&[u8], Xxh3DefaultBuilder> = HashSet::default();
        for info in &infos {
            if let (Some(key), Some(_)) = (info.key, info.id) {
                ids_in.insert(key);
            }
        }
        for plan in &plans {
            let pending = st.index.txns.key(topic_id, plan.key);
            // Open transactions' records in this stream: a stream one of them holds takes no
            // other append; an append whose answer depends on their outcome (an expected
            // version, or event ids to deduplicate) waits until they end.
            if let Some(pending) = pending {
                let conditional = plan.expected.is_some_and(|e| e != ExpectedVersion::Any) || ids_in.contains(plan.key);
                let blocker = match pending.held_by {
                    Some(holder) if Some(holder) != writer => Some(holder),
                    _ if conditional => pending.other_writer(writer),
                    _ => None,
                };
                if let Some(producer_id) = blocker {
                    return Err(Error::StreamInTransaction { topic: topic_name, key: key_text(plan.key), producer_id });
                }
            }
        }
        if txn {
            let max = self.inner.config.txn_pending_records_max;
            let pending = st.index.txns.pending_records;
            if pending + infos.len() > max {
                return Err(Error::TransactionsTooLarge { pending, records: infos.len(), max });
            }
            // Event ids already given to records of this transaction.
            for info in &infos {
                if let (Some(key), Some(id)) = (info.key, info.id) {
                    let hash = crate::txn::id_hash_for(key, id);
                    let own = st.index.txns.key(topic_id, key).is_some_and(|p| p.ids.contains(&(bh.producer_id, hash)));
                    if own {
                        return Err(Error::EventIdInTransaction { key: key_text(key), id: id.to_string() });
                    }
                }
            }
        }

        // Event-id idempotence.
        if let Some((outcome, mut wait_for)) =
            find_duplicates(&st, topic_name.clone(), partition, &infos, &plans, &plan_of)?
        {
            // An idempotent producer's batch answered as a duplicate still took its producer
            // sequences: its next batch follows them. That is remembered durably (a frame of its
            // own), or the producer's next batch would be refused as out of order.
            if bh.producer_id >= 0 {
                let advance = crate::index::ProducerAdvance {
                    producer_id: bh.producer_id,
                    epoch: bh.producer_epoch,
                    first_seq: bh.base_sequence,
                    last_offset_delta: bh.last_offset_delta,
                    base_offset: outcome.base_offset,
                    first_commit: if outcome.transactional { NO_SEQ } else { outcome.first_sequence },
                    count: infos.len() as u32,
                };
                let payload = advance.encode();
                let (pos, end) = self.inner.enqueue_frame(
                    &mut st,
                    FrameKind::ProducerAdvance,
                    0,
                    topic_id,
                    partition,
                    &payload,
                    |_| {},
                )?;
                st.index
                    .apply_producer_advance(topic_id, partition, &advance, end)
                    .unwrap_or_else(|e| panic!("recording a checked producer sequence at {pos} failed: {e}"));
                wait_for = wait_for.max(end);
            }
            let durability = self.inner.defer_visible(st, wait_for)?;
            return Ok(PendingAppend { outcome, durability });
        }

        // Optimistic concurrency.
        let mut next_version: HashMap<&[u8], u64, Xxh3DefaultBuilder> =
            HashMap::with_capacity_and_hasher(plans.len(), Xxh3DefaultBuilder);
        for plan in &plans {
            let committed =
                plan.sid.and_then(|sid| st.index.streams[sid as usize].as_ref()).map_or(0, |s| s.events.len() as u64);
            // Inside a transaction, the stream as the transaction sees it: committed events, then
            // its own pending ones.
            let own = writer.and_then(|p| st.index.txns.key(topic_id, plan.key).map(|k| u64::from(k.own(p))));
            let len = committed + own.unwrap_or(0);
            let current = len.checked_sub(1).map(Version);
            if let Some(expected) = plan.expected {
                if !expected.is_satisfied_by(current) {
                    return Err(Error::WrongExpectedVersion {
                        topic: topic_name,
                        key: key_text(plan.key),
                        expected,
                        actual: current,
                    });
                }
            }
            if len + infos.len() as u64 > u64::from(u32::MAX) {
                return Err(Error::Unsupported("a stream of more than 4,294,967,295 events".into()));
            }
            next_version.insert(plan.key, len);
        }

        // Accepted: assign positions, queue the frame, index it.
        let partition_state = &st.index.topics[&topic_id].partitions[partition as usize];
        let base_offset = partition_state.next_offset;
        if mode == Mode::Check {
            // Nothing is written: the positions the append would take, had it been made now.
            let records = infos
                .iter()
                .enumerate()
                .map(|(i, info)| RecordPosition {
                    offset: base_offset + i as u64,
                    sequence: 0,
                    version: info.key.and_then(|k| next_version.get_mut(k)).map(|v| {
                        *v += 1;
                        *v - 1
                    }),
                })
                .collect();
            let durability = self.inner.defer_visible(st, 0)?;
            let outcome = AppendOutcome {
                topic: topic_name,
                partition,
                base_offset,
                first_sequence: 0,
                records,
                duplicate: false,
                log_append_time_ms: None,
                transactional: false,
            };
            return Ok(PendingAppend { outcome, durability });
        }
        // A transaction's batch is stored without a commit sequence: its commit gives them.
        let first_sequence = if txn { 0 } else { st.index.next_seq };
        // The stored copy differs from what the producer sent only in the two fields outside
        // the batch CRC: the base offset the log assigns, and leader epoch 0; and on a
        // LogAppendTime topic in the timestamp type and max timestamp (CRC recomputed), the
        // append time taken under the log's lock, so it never goes backwards in a partition
        // while the clock does not.
        let log_append_time_ms = log_append_time.then(|| self.inner.clock.now_ms());
        let patch = |stored: &mut [u8]| {
            set_base_offset(stored, base_offset as i64);
            set_partition_leader_epoch(stored, 0);
            if let Some(now) = log_append_time_ms {
                set_log_append_time(stored, now);
            }
        };
        let (pos, end) =
            self.inner.enqueue_frame(&mut st, FrameKind::Batch, first_sequence, topic_id, partition, bytes, patch)?;
        let mut stored_header =
            evident_core::BatchHeader { base_offset: base_offset as i64, partition_leader_epoch: 0, ..bh };
        if let Some(now) = log_append_time_ms {
            stored_header.attributes |= evident_core::batch::LOG_APPEND_TIME;
            stored_header.max_timestamp = now;
        }
        let header = FrameHeader {
            kind: FrameKind::Batch,
            length: 0,
            crc: 0,
            durable_before: 0,
            first_sequence,
            topic: topic_id,
            partition,
        };
        // Everything was validated above, so indexing cannot fail; if it does, a frame is queued
        // that the index does not describe, and the only safe answer is to stop.
        st.index
            .apply_batch(pos, (end - pos) as u32, &header, &stored_header, &infos)
            .unwrap_or_else(|e| panic!("indexing a validated batch failed: {e}"));
        st.stats.appends += 1;
        let records = infos
            .iter()
            .enumerate()
            .map(|(i, info)| RecordPosition {
                offset: base_offset + i as u64,
                sequence: if txn { 0 } else { first_sequence + i as u64 },
                version: info.key.and_then(|k| next_version.get_mut(k)).filter(|_| !txn).map(|v| {
                    *v += 1;
                    *v - 1
                }),
            })
            .collect();
        if !txn {
            check_indexed(&st.index, topic_id, partition, base_offset, first_sequence, &infos, &plans, &next_version);
        }
        let durability = self.inner.defer_visible(st, end)?;
        let outcome = AppendOutcome {
            topic: topic_name,
            partition,
            base_offset,
            first_sequence,
            records,
            duplicate: false,
            log_append_time_ms,
            transactional: txn,
        };
        Ok(PendingAppend { outcome, durability })
    }
}

/// Kafka's idempotent-producer rules. Returns the original batch if this one is a retry.
fn check_producer(
    st: &State,
    topic: u32,
    partition: u32,
    bh: &evident_core::BatchHeader,
) -> Result<Option<ProducerBatch>> {
    let Some(producer) = st.index.topics[&topic].partitions[partition as usize].producers.get(&bh.producer_id) else {
        return Ok(None);
    };
    let last_seq = bh.base_sequence.wrapping_add(bh.last_offset_delta);
    if bh.producer_epoch < producer.epoch {
        return Err(Error::ProducerFenced {
            producer_id: bh.producer_id,
            epoch: bh.producer_epoch,
            current: producer.epoch,
        });
    }
    if bh.producer_epoch > producer.epoch {
        if bh.base_sequence != 0 {
            return Err(Error::OutOfOrderSequence { producer_id: bh.producer_id, got: bh.base_sequence, expected: 0 });
        }
        return Ok(None);
    }
    if let Some(original) = producer.batches.iter().find(|b| b.first_seq == bh.base_sequence && b.last_seq == last_seq)
    {
        return Ok(Some(*original));
    }
    if let Some(latest) = producer.batches.back() {
        // Sequences wrap from i32::MAX to 0, as in Kafka.
        let expected = if latest.last_seq == i32::MAX { 0 } else { latest.last_seq + 1 };
        if bh.base_sequence != expected {
            return Err(Error::OutOfOrderSequence { producer_id: bh.producer_id, got: bh.base_sequence, expected });
        }
    }
    Ok(None)
}

fn version_of_seq(index: &Index, topic: u32, key: Option<&[u8]>, seq: u64) -> Option<u64> {
    let stream = index.stream_id(topic, key?).and_then(|sid| index.streams[sid as usize].as_ref())?;
    let v = stream.events.partition_point(|e| e.seq < seq);
    (stream.events.get(v)?.seq == seq).then_some(v as u64)
}

fn producer_duplicate(
    index: &Index,
    topic: TopicName,
    topic_id: u32,
    partition: u32,
    original: &ProducerBatch,
    infos: &[RecordInfo<'_>],
) -> AppendOutcome {
    // A transaction's batch had no sequence when it was written; the commit that gave it some
    // is found by offset, but a retry comes within its transaction, so none is looked for.
    let transactional = original.first_commit == NO_SEQ;
    let records = infos
        .iter()
        .enumerate()
        .map(|(i, info)| {
            let sequence = if transactional { 0 } else { original.first_commit + i as u64 };
            RecordPosition {
                offset: original.base_offset + i as u64,
                sequence,
                version: if transactional { None } else { version_of_seq(index, topic_id, info.key, sequence) },
            }
        })
        .collect();
    AppendOutcome {
        topic,
        partition,
        base_offset: original.base_offset,
        first_sequence: if transactional { 0 } else { original.first_commit },
        records,
        duplicate: true,
        log_append_time_ms: None,
        transactional,
    }
}

/// Event-id idempotence: if every record of the batch is already in its stream (same id, same
/// content), returns the original positions and the journal position to wait for.
fn find_duplicates(
    st: &State,
    topic: TopicName,
    partition: u32,
    infos: &[RecordInfo<'_>],
    plans: &[KeyPlan<'_>],
    plan_of: &HashMap<&[u8], usize, Xxh3DefaultBuilder>,
) -> Result<Option<(AppendOutcome, u64)>> {
    let mut seen: HashSet<(&[u8], &str), Xxh3DefaultBuilder> = HashSet::default();
    let mut originals = Vec::new();
    let mut first_dup_id = None;
    for info in infos {
        let (Some(key), Some(id)) = (info.key, info.id) else {
            continue;
        };
        if !seen.insert((key, id)) {
            return Err(Error::DuplicateIdInBatch { key: key_text(key), id: id.to_string() });
        }
        let Some(sid) = plans[plan_of[key]].sid else {
            continue;
        };
        let Some(stream) = st.index.streams[sid as usize].as_ref() else {
            continue;
        };
        for (_, version) in st.index.id_candidates(sid, id) {
            let Some(event) = stream.events.get(version as usize) else {
                continue;
            };
            let bytes = st.read_bytes(event.pos, event.len as usize)?;
            if crc32c::crc32c(&bytes) != event.crc {
                return Err(Error::Corrupted {
                    file: "journal".into(),
                    offset: event.pos,
                    what: "record checksum mismatch while checking an event id".into(),
                });
            }
            let record = decode_record(&bytes)?;
            if record.header(envelope::CE_ID) != Some(id.as_bytes()) {
                continue; // a hash collision, not the same id
            }
            first_dup_id.get_or_insert(id);
            originals.push((info, version, event.seq, bytes));
            break;
        }
    }
    if originals.is_empty() {
        return Ok(None);
    }
    if originals.len() != infos.len() {
        return Err(Error::PartialDuplicate { id: first_dup_id.unwrap_or_default().to_string() });
    }
    let mut records = Vec::with_capacity(originals.len());
    let mut wait_for = 0;
    let mut original_partition = partition;
    for (info, version, seq, original_bytes) in &originals {
        let original = decode_record(original_bytes)?;
        let key = info.key.unwrap_or_default();
        // Same id must mean the same event: payload and type.
        let same = original.value == info.value && original.header(envelope::CE_TYPE) == info.event_type;
        if !same {
            return Err(Error::EventIdReused {
                key: key_text(key),
                id: info.id.unwrap_or_default().to_string(),
                version: Version(*version as u64),
            });
        }
        let frame = st.index.frame_of_seq(*seq).ok_or_else(|| Error::Corrupted {
            file: "journal".into(),
            offset: 0,
            what: format!("commit sequence {seq} has no frame"),
        })?;
        original_partition = frame.partition;
        wait_for = wait_for.max(frame.end_pos());
        records.push(RecordPosition {
            offset: frame.base_offset + (seq - frame.first_seq),
            sequence: *seq,
            version: Some(*version as u64),
        });
    }
    let base_offset = records[0].offset;
    let first_sequence = records[0].sequence;
    Ok(Some((
        AppendOutcome {
            topic,
            partition: original_partition,
            base_offset,
            first_sequence,
            records,
            duplicate: true,
            log_append_time_ms: None,
            transactional: false,
        },
        wait_for,
    )))
}

/// Paired with the checks that accepted a batch: what the index recorded is what the append
/// planned. Offsets stay dense (the partition's next offset moved by exactly the record
/// count), the commit sequence stays gapless, and each stream's versions stay contiguous (the
/// stream now ends at the version the expected-version check computed). A failure is a bug
/// in the index, caught before the batch is acknowledged.
#[allow(clippy::too_many_arguments)] // the plan, as the caller holds it
fn check_indexed(
    index: &Index,
    topic_id: u32,
    partition: u32,
    base_offset: u64,
    first_sequence: u64,
    infos: &[RecordInfo<'_>],
    plans: &[KeyPlan<'_>],
    next_version: &HashMap<&[u8], u64, Xxh3DefaultBuilder>,
) {
    let count = infos.len() as u64;
    let next_offset =
        index.topics.get(&topic_id).and_then(|t| t.partitions.get(partition as usize)).map(|p| p.next_offset);
    assert_eq!(next_offset, Some(base_offset + count), "offsets dense after indexing");
    assert_eq!(index.next_seq, first_sequence + count, "commit sequence gapless after indexing");
    for plan in plans {
        let len = index
            .stream_id(topic_id, plan.key)
            .and_then(|sid| index.streams.get(sid as usize))
            .and_then(Option::as_ref)
            .map(|s| s.events.len() as u64);
        assert_eq!(len, next_version.get(plan.key).copied(), "stream versions contiguous after indexing");
    }
}
