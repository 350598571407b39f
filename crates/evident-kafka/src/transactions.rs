//! The transaction coordinator (Kafka's transaction version 1): transactional ids, their
//! producer id and epoch, the partitions and consumer offsets of the open transaction, and the
//! two-phase end. The storage engine keeps the transactions' records (`evident_log::Log`,
//! `end_transaction`); this keeps what Kafka's `__transaction_state` keeps, in a topic of that
//! name (one partition, compacted, one JSON record per change keyed by the transactional id,
//! synced before the answer), replayed at open.
//!
//! States, as Kafka's: `Empty` (an id with a producer and no transaction), `Ongoing` (partitions
//! added), `PrepareCommit`/`PrepareAbort` (the outcome decided and stored, markers being
//! written), `CompleteCommit`/`CompleteAbort`. Ending is: store `Prepare*` (synced), call
//! `Log::end_transaction` (markers, then the frame that commits or aborts for evident's readers),
//! apply the transaction's consumer offsets on a commit, store `Complete*`. A crash anywhere in
//! that sequence is finished at open: every `Prepare*` found is ended again, which the log and
//! the offset store make idempotent. A transaction left `Ongoing` longer than its timeout is
//! aborted with the epoch bumped, which fences its producer (as Kafka does under TV1).
//!
//! Transactional offsets (`TxnOffsetCommit`) are held with the transaction (stored in its
//! record) and committed to the group store on commit, so a consume-transform-produce loop's
//! outputs and input positions become durable together: either both or, until the end is
//! complete, neither (a crash after the `PrepareCommit` record completes both at open).

use std::collections::{BTreeMap, BTreeSet};
use std::sync::{Arc, Mutex, MutexGuard};

use evident_core::BatchBuilder;
use evident_groups::{GroupStore, OffsetCommit};
use evident_log::clock::Clock;
use evident_log::{CleanupPolicy, Log, TopicConfig};
use kafka_protocol::error::ResponseError;
use serde::{Deserialize, Serialize};

use crate::error::KafkaError;

/// The internal topic of the coordinator's state.
pub const STATE_TOPIC: &str = "__transaction_state";
/// Kafka's `transaction.max.timeout.ms` default: a longer timeout is refused.
pub const TIMEOUT_MAX_MS: i32 = 900_000;
/// Epochs at or past this are used up: the next InitProducerId gives a new producer id.
const EPOCH_MAX: i16 = i16::MAX - 1;
/// Most partitions one transaction may add (bounds what a peer makes the coordinator hold).
const PARTITIONS_MAX: usize = 10_000;
/// Most pending consumer offsets one transaction may hold.
const OFFSETS_MAX: usize = 10_000;
/// Most transactional ids kept.
const IDS_MAX: usize = 100_000;

/// A transaction's state.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum TxnState {
    /// A producer with no transaction.
    Empty,
    /// Partitions were added.
    Ongoing,
    /// Commit decided.
    PrepareCommit,
    /// Abort decided.
    PrepareAbort,
    /// Committed.
    CompleteCommit,
    /// Aborted.
    CompleteAbort,
}

impl TxnState {
    /// Kafka's name, as DescribeTransactions and `kafka-transactions` print it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Empty => "Empty",
            Self::Ongoing => "Ongoing",
            Self::PrepareCommit => "PrepareCommit",
            Self::PrepareAbort => "PrepareAbort",
            Self::CompleteCommit => "CompleteCommit",
            Self::CompleteAbort => "CompleteAbort",
        }
    }
}

/// A consumer offset committed inside a transaction.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnOffset {
    /// Group.
    pub group: String,
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: u32,
    /// Next offset to consume.
    pub offset: u64,
    /// Commit metadata.
    pub metadata: Option<String>,
    /// Committed leader epoch, if sent.
    pub leader_epoch: Option<i32>,
}

/// What the coordinator keeps per transactional id (the value of its `__transaction_state`
/// record).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TxnMeta {
    /// Producer id.
    pub producer_id: i64,
    /// Current epoch.
    pub epoch: i16,
    /// `transaction.timeout.ms`.
    pub timeout_ms: i32,
    /// State.
    pub state: TxnState,
    /// Partitions of the transaction, (topic, partition).
    pub partitions: BTreeSet<(String, u32)>,
    /// Consumer groups whose offsets the transaction commits.
    pub groups: BTreeSet<String>,
    /// Offsets to commit with it.
    pub offsets: Vec<TxnOffset>,
    /// When its last transaction became `Ongoing` (ms), or -1 (none since the session began).
    pub started_ms: i64,
    /// Last change (ms).
    pub updated_ms: i64,
}

/// The transaction coordinator.
pub struct Transactions {
    log: Arc<Log>,
    groups: Arc<GroupStore>,
    clock: Arc<dyn Clock>,
    ids: Mutex<BTreeMap<String, TxnMeta>>,
}

impl std::fmt::Debug for Transactions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Transactions").finish_non_exhaustive()
    }
}

/// Why a transactional id is refused when the broker runs without a coordinator.
pub(crate) const TRANSACTIONS_UNSUPPORTED: &str =
    "evident: this listener runs without a transaction coordinator, so transactions are refused: use an idempotent producer without transactional.id";

/// The refusal of every transaction API when the broker runs without a coordinator.
pub(crate) fn unsupported() -> KafkaError {
    KafkaError::new(ResponseError::TransactionalIdAuthorizationFailed, TRANSACTIONS_UNSUPPORTED)
}

/// Runs a coordinator call off the async workers (it waits for syncs).
pub(crate) async fn blocking(f: impl FnOnce() -> Result<(), KafkaError> + Send + 'static) -> Result<(), KafkaError> {
    tokio::task::spawn_blocking(f)
        .await
        .unwrap_or_else(|e| Err(KafkaError::new(ResponseError::UnknownServerError, format!("evident: {e}"))))
}

fn coded(code: ResponseError, message: impl Into<String>) -> KafkaError {
    KafkaError::new(code, format!("evident: {}", message.into()))
}

impl Transactions {
    /// Creates `__transaction_state` if absent, replays it, and finishes every transaction a
    /// crash left between its decision and its end.
    pub fn open(log: Arc<Log>, groups: Arc<GroupStore>, clock: Arc<dyn Clock>) -> Result<Self, String> {
        let config = TopicConfig {
            partitions: 1,
            cleanup_policy: CleanupPolicy::Compact,
            key_partition_guard: false,
            ..TopicConfig::default()
        };
        match log.create_topic(STATE_TOPIC, config) {
            Ok(_) | Err(evident_log::Error::TopicExists(_)) => {}
            Err(e) => return Err(format!("cannot create {STATE_TOPIC}: {e}")),
        }
        let mut ids: BTreeMap<String, TxnMeta> = BTreeMap::new();
        log.scan_partition(STATE_TOPIC, 0, |offset, key, value| {
            let key = key.ok_or_else(|| format!("{STATE_TOPIC} offset {offset}: a record without a key"))?;
            let id =
                String::from_utf8(key.to_vec()).map_err(|_| format!("{STATE_TOPIC} offset {offset}: key not UTF-8"))?;
            match value {
                None => {
                    ids.remove(&id);
                }
                Some(v) => {
                    let meta: TxnMeta = serde_json::from_slice(v)
                        .map_err(|e| format!("{STATE_TOPIC} offset {offset}: unreadable state: {e}"))?;
                    ids.insert(id, meta);
                }
            }
            Ok::<(), String>(())
        })
        .map_err(|e| match e {
            evident_log::ScanError::Log(e) => format!("{STATE_TOPIC}: {e}"),
            evident_log::ScanError::Damaged { offset, what } => format!("{STATE_TOPIC} offset {offset}: {what}"),
            evident_log::ScanError::Visitor(why) => why,
        })?;
        let this = Self { log, groups, clock, ids: Mutex::new(ids) };
        let decided: Vec<String> = this
            .lock()
            .iter()
            .filter(|(_, m)| matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort))
            .map(|(id, _)| id.clone())
            .collect();
        for id in decided {
            this.finish(&id).map_err(|e| format!("finishing transaction {id}: {}", e.message))?;
        }
        // Records of a producer the coordinator has no open transaction for (none should exist:
        // a partition is added, synced, before its records are accepted) would hold their
        // partitions' stable offset forever: abort them.
        let ongoing: BTreeSet<i64> =
            this.lock().values().filter(|m| m.state == TxnState::Ongoing).map(|m| m.producer_id).collect();
        for (producer, epoch) in this.log.open_transactions() {
            if !ongoing.contains(&producer) {
                tracing::warn!(producer_id = producer, "aborting a transaction the coordinator does not know of");
                this.log
                    .end_transaction(producer, epoch.max(0), false, 0)
                    .map_err(|e| format!("aborting producer {producer}'s orphaned transaction: {e}"))?;
            }
        }
        Ok(this)
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, TxnMeta>> {
        self.ids.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Stores `meta` for `id`, synced, then keeps it in memory.
    fn store(&self, ids: &mut BTreeMap<String, TxnMeta>, id: &str, mut meta: TxnMeta) -> Result<(), KafkaError> {
        meta.updated_ms = self.clock.now_ms();
        let value = serde_json::to_vec(&meta).map_err(|e| coded(ResponseError::UnknownServerError, e.to_string()))?;
        let mut batch = BatchBuilder::new();
        batch.push_parts(Some(id.as_bytes()), Some(&value), &[], meta.updated_ms);
        self.log.append_batch(STATE_TOPIC, 0, &batch.build(), None)?;
        ids.insert(id.to_string(), meta);
        Ok(())
    }

    /// InitProducerId with a transactional id: a new producer id for a new id; otherwise the
    /// open transaction (if any) is aborted and the epoch bumped, fencing the previous producer.
    pub fn init_producer(
        &self,
        id: &str,
        timeout_ms: i32,
        producer: Option<(i64, i16)>,
        new_producer_id: impl FnOnce() -> i64,
    ) -> Result<(i64, i16), KafkaError> {
        if id.is_empty() {
            return Err(coded(ResponseError::InvalidRequest, "an empty transactional id"));
        }
        if !(1..=TIMEOUT_MAX_MS).contains(&timeout_ms) {
            return Err(coded(
                ResponseError::InvalidTransactionTimeout,
                format!("transaction.timeout.ms {timeout_ms} is outside 1..={TIMEOUT_MAX_MS}"),
            ));
        }
        let mut ids = self.lock();
        let Some(mut meta) = ids.get(id).cloned() else {
            if ids.len() >= IDS_MAX {
                return Err(coded(ResponseError::PolicyViolation, format!("more than {IDS_MAX} transactional ids")));
            }
            let meta = TxnMeta {
                producer_id: new_producer_id(),
                epoch: 0,
                timeout_ms,
                state: TxnState::Empty,
                partitions: BTreeSet::new(),
                groups: BTreeSet::new(),
                offsets: Vec::new(),
                started_ms: -1,
                updated_ms: 0,
            };
            let answer = (meta.producer_id, meta.epoch);
            self.store(&mut ids, id, meta)?;
            return Ok(answer);
        };
        // KIP-360: a producer that names itself must be the current one.
        if let Some((pid, epoch)) = producer {
            if pid != meta.producer_id {
                return Err(coded(ResponseError::InvalidProducerIdMapping, format!("producer {pid} is not {id}'s")));
            }
            if epoch != meta.epoch {
                return Err(coded(
                    ResponseError::ProducerFenced,
                    format!("epoch {epoch} of {id} is fenced by {}", meta.epoch),
                ));
            }
        }
        match meta.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                return Err(coded(ResponseError::ConcurrentTransactions, format!("{id}'s transaction is ending")));
            }
            TxnState::Ongoing => {
                // Abort the open transaction under a new epoch (fencing its producer), then
                // answer with that epoch bumped again for the new producer session.
                drop(ids);
                self.end(id, meta.producer_id, meta.epoch, false, true)?;
                ids = self.lock();
                meta =
                    ids.get(id).cloned().ok_or_else(|| coded(ResponseError::UnknownServerError, "state vanished"))?;
            }
            _ => {}
        }
        if meta.epoch >= EPOCH_MAX {
            meta.producer_id = new_producer_id();
            meta.epoch = 0;
        } else {
            meta.epoch += 1;
        }
        meta.timeout_ms = timeout_ms;
        meta.state = TxnState::Empty;
        meta.partitions.clear();
        meta.groups.clear();
        meta.offsets.clear();
        meta.started_ms = -1;
        let answer = (meta.producer_id, meta.epoch);
        self.store(&mut ids, id, meta)?;
        Ok(answer)
    }

    /// The current state of `id` after the producer's checks, for a request that changes its
    /// open transaction.
    fn current(ids: &BTreeMap<String, TxnMeta>, id: &str, producer_id: i64, epoch: i16) -> Result<TxnMeta, KafkaError> {
        let meta = ids.get(id).ok_or_else(|| {
            coded(ResponseError::TransactionalIdNotFound, format!("transactional id {id} is not known"))
        })?;
        if meta.producer_id != producer_id {
            return Err(coded(
                ResponseError::InvalidProducerIdMapping,
                format!("producer {producer_id} is not {id}'s"),
            ));
        }
        if epoch != meta.epoch {
            return Err(coded(
                ResponseError::ProducerFenced,
                format!("epoch {epoch} of {id} is fenced by {}", meta.epoch),
            ));
        }
        if matches!(meta.state, TxnState::PrepareCommit | TxnState::PrepareAbort) {
            return Err(coded(ResponseError::ConcurrentTransactions, format!("{id}'s transaction is ending")));
        }
        Ok(meta.clone())
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn's offsets partition): the partitions join the
    /// transaction, which becomes `Ongoing`.
    pub fn add_partitions(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        partitions: &[(String, u32)],
    ) -> Result<(), KafkaError> {
        let mut ids = self.lock();
        let mut meta = Self::current(&ids, id, producer_id, epoch)?;
        let before = meta.partitions.len();
        meta.partitions.extend(partitions.iter().cloned());
        if meta.partitions.len() > PARTITIONS_MAX {
            return Err(coded(
                ResponseError::PolicyViolation,
                format!("more than {PARTITIONS_MAX} partitions in a transaction"),
            ));
        }
        if meta.state == TxnState::Ongoing && meta.partitions.len() == before {
            return Ok(());
        }
        if meta.state != TxnState::Ongoing {
            meta.state = TxnState::Ongoing;
            meta.started_ms = self.clock.now_ms();
        }
        self.store(&mut ids, id, meta)
    }

    /// AddOffsetsToTxn: the group's offsets will be committed with the transaction.
    pub fn add_group(&self, id: &str, producer_id: i64, epoch: i16, group: &str) -> Result<(), KafkaError> {
        let mut ids = self.lock();
        let mut meta = Self::current(&ids, id, producer_id, epoch)?;
        if meta.groups.contains(group) && meta.state == TxnState::Ongoing {
            return Ok(());
        }
        meta.groups.insert(group.to_string());
        if meta.state != TxnState::Ongoing {
            meta.state = TxnState::Ongoing;
            meta.started_ms = self.clock.now_ms();
        }
        self.store(&mut ids, id, meta)
    }

    /// TxnOffsetCommit's checks of the producer and its transaction, without change: run before
    /// the group's own check (its generation and member), as Kafka verifies the transaction
    /// first, so that a fenced zombie learns it is fenced rather than that its group moved on.
    pub fn check_offsets(&self, id: &str, producer_id: i64, epoch: i16, group: &str) -> Result<(), KafkaError> {
        let ids = self.lock();
        let meta = Self::current(&ids, id, producer_id, epoch)?;
        if meta.state != TxnState::Ongoing || !meta.groups.contains(group) {
            return Err(coded(
                ResponseError::InvalidTxnState,
                format!("group {group} was not added to {id}'s transaction (AddOffsetsToTxn first)"),
            ));
        }
        Ok(())
    }

    /// The partitions, (topic, partition), whose offsets for `group` a transaction holds and has
    /// not finished (open, or decided and being applied): OffsetFetch with `require_stable`
    /// answers them `UNSTABLE_OFFSET_COMMIT` until it ends, as Kafka does (KIP-447), so that a
    /// consumer taking over a partition does not start before a transaction that may still
    /// commit its offsets and process its records again.
    pub fn pending_offsets(&self, group: &str) -> BTreeSet<(String, u32)> {
        self.lock()
            .values()
            .filter(|m| matches!(m.state, TxnState::Ongoing | TxnState::PrepareCommit | TxnState::PrepareAbort))
            .flat_map(|m| m.offsets.iter())
            .filter(|o| o.group == group)
            .map(|o| (o.topic.clone(), o.partition))
            .collect()
    }

    /// TxnOffsetCommit: offsets held with the transaction, committed with it.
    pub fn add_offsets(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        group: &str,
        offsets: Vec<TxnOffset>,
    ) -> Result<(), KafkaError> {
        let mut ids = self.lock();
        let mut meta = Self::current(&ids, id, producer_id, epoch)?;
        if meta.state != TxnState::Ongoing || !meta.groups.contains(group) {
            return Err(coded(
                ResponseError::InvalidTxnState,
                format!("group {group} was not added to {id}'s transaction (AddOffsetsToTxn first)"),
            ));
        }
        for o in offsets {
            meta.offsets.retain(|x| !(x.group == o.group && x.topic == o.topic && x.partition == o.partition));
            meta.offsets.push(o);
        }
        if meta.offsets.len() > OFFSETS_MAX {
            return Err(coded(
                ResponseError::PolicyViolation,
                format!("more than {OFFSETS_MAX} offsets in a transaction"),
            ));
        }
        self.store(&mut ids, id, meta)
    }

    /// Whether the producer may write transactional records to the partition: its transaction
    /// is `Ongoing` with the partition added, at its current epoch. A produce under a fenced
    /// epoch is `INVALID_PRODUCER_EPOCH`, as Kafka's partition answers it (its producer state
    /// holds the newer epoch of the abort marker), not the coordinator's `PRODUCER_FENCED`:
    /// kafka-clients raises the first as InvalidProducerEpochException, which an application
    /// may abort after, the second as a fatal ProducerFencedException.
    pub fn check_produce(
        &self,
        id: &str,
        producer_id: i64,
        epoch: i16,
        topic: &str,
        partition: u32,
    ) -> Result<(), KafkaError> {
        let ids = self.lock();
        let meta = Self::current(&ids, id, producer_id, epoch).map_err(|e| match e.code {
            ResponseError::ProducerFenced => KafkaError { code: ResponseError::InvalidProducerEpoch, ..e },
            _ => e,
        })?;
        if meta.state != TxnState::Ongoing || !meta.partitions.contains(&(topic.to_string(), partition)) {
            return Err(coded(
                ResponseError::InvalidTxnState,
                format!("{topic}/{partition} was not added to {id}'s transaction (AddPartitionsToTxn first)"),
            ));
        }
        Ok(())
    }

    /// EndTxn: commits or aborts the open transaction. A repeated end with the same outcome
    /// (a retry) succeeds; the other outcome is `INVALID_TXN_STATE`.
    pub fn end_txn(&self, id: &str, producer_id: i64, epoch: i16, commit: bool) -> Result<(), KafkaError> {
        self.end(id, producer_id, epoch, commit, false)
    }

    /// Ends `id`'s transaction; with `fence`, under a bumped epoch (an abort by the coordinator
    /// itself: a timeout, or a new producer session).
    fn end(&self, id: &str, producer_id: i64, epoch: i16, commit: bool, fence: bool) -> Result<(), KafkaError> {
        {
            let mut ids = self.lock();
            let mut meta = Self::current(&ids, id, producer_id, epoch)?;
            match (meta.state, commit) {
                (TxnState::Ongoing, _) => {}
                (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => return Ok(()),
                // Nothing was added: an abort ends nothing, as Kafka answers.
                (TxnState::Empty, false) if !fence => return Ok(()),
                (state, _) => {
                    return Err(coded(
                        ResponseError::InvalidTxnState,
                        format!("{id} cannot {} in state {}", if commit { "commit" } else { "abort" }, state.name()),
                    ));
                }
            }
            if fence {
                meta.epoch = meta.epoch.saturating_add(1);
            }
            meta.state = if commit { TxnState::PrepareCommit } else { TxnState::PrepareAbort };
            self.store(&mut ids, id, meta)?;
        }
        self.finish(id)
    }

    /// Completes a decided (`Prepare*`) transaction: markers and the log's end frame, the
    /// offsets on a commit, then `Complete*`. Every step is idempotent.
    fn finish(&self, id: &str) -> Result<(), KafkaError> {
        let meta =
            self.lock().get(id).cloned().ok_or_else(|| coded(ResponseError::UnknownServerError, "state vanished"))?;
        let commit = match meta.state {
            TxnState::PrepareCommit => true,
            TxnState::PrepareAbort => false,
            _ => return Ok(()),
        };
        self.log.end_transaction(meta.producer_id, meta.epoch, commit, 0)?;
        if commit && !meta.offsets.is_empty() {
            let mut by_group: BTreeMap<&str, Vec<OffsetCommit>> = BTreeMap::new();
            for o in &meta.offsets {
                by_group.entry(o.group.as_str()).or_default().push(OffsetCommit {
                    topic: o.topic.clone(),
                    partition: o.partition,
                    offset: o.offset,
                    metadata: o.metadata.clone(),
                    leader_epoch: o.leader_epoch,
                });
            }
            for (group, offsets) in by_group {
                self.groups.commit(group, &offsets)?;
            }
        }
        let mut ids = self.lock();
        let mut done = meta;
        done.state = if commit { TxnState::CompleteCommit } else { TxnState::CompleteAbort };
        done.partitions.clear();
        done.groups.clear();
        done.offsets.clear();
        // The start time stays, as Kafka keeps it (DescribeTransactions shows the last one).
        self.store(&mut ids, id, done)
    }

    /// Aborts, with the epoch bumped, every transaction open longer than its timeout; returns
    /// how many.
    pub fn abort_expired(&self) -> usize {
        let now = self.clock.now_ms();
        let expired: Vec<(String, i64, i16)> = self
            .lock()
            .iter()
            .filter(|(_, m)| m.state == TxnState::Ongoing && now - m.started_ms > i64::from(m.timeout_ms))
            .map(|(id, m)| (id.clone(), m.producer_id, m.epoch))
            .collect();
        let mut n = 0;
        for (id, pid, epoch) in expired {
            match self.end(&id, pid, epoch, false, true) {
                Ok(()) => {
                    tracing::info!(transactional_id = %id, producer_id = pid, "transaction timed out: aborted, producer fenced");
                    n += 1;
                }
                Err(e) => {
                    tracing::warn!(transactional_id = %id, "aborting a timed-out transaction failed: {}", e.message)
                }
            }
        }
        n
    }

    /// Every transactional id with its state (ListTransactions, DescribeTransactions).
    pub fn list(&self) -> Vec<(String, TxnMeta)> {
        self.lock().iter().map(|(id, m)| (id.clone(), m.clone())).collect()
    }
}
