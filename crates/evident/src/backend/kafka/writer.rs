//! Partition writers: the transactional producers through which this process appends to a
//! Kafka partition, one per (topic, partition), each with a transactional id derived from the
//! partition alone (`{prefix}-{topic}-{partition}`).
//!
//! **The transactional id is the partition's lock.** `init_transactions` with a partition's id
//! bumps its producer epoch on the cluster: the previous holder (another process, or a zombie of
//! this one) is fenced, any transaction it left open is completed or aborted first, and no
//! commit of an older epoch succeeds afterwards. So a writer that (1) took the id, (2) read the
//! partition up to its end, (3) checked the expected version and event ids, (4) produced and
//! (5) committed, did so with no other commit in between: another writer would have had to
//! take the id, fencing this one and failing its commit. Commits are serialized by epoch, and
//! each was decided on everything committed before it. This holds whoever appends; ownership
//! (docs/cluster.md) only decides who usually holds which id, so that the lock is not passed
//! back and forth.
//!
//! **Failures.** Any error in a transaction drops the producer (an abort is tried first): the
//! next attempt takes the id again, which resolves whatever the cluster holds of the failed
//! transaction, and checks again. A commit whose outcome was unknown is then found by its event
//! ids: the retry answers it as already appended.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use evident_core::EventData;
use rdkafka::error::KafkaError;
use rdkafka::message::{Header, OwnedHeaders};
use rdkafka::producer::{BaseRecord, DefaultProducerContext, Producer, ThreadedProducer};

use super::KafkaConfig;
use crate::{Error, Result};

/// A partition's transactional producer. Threaded: librdkafka's events (delivery reports) are
/// served by its own thread, so an append waits for its records' delivery without polling.
pub(super) type TxnProducer = ThreadedProducer<DefaultProducerContext>;

/// A partition's writer: its producer once the transactional id is held.
pub(super) type Slot = Arc<Mutex<Option<TxnProducer>>>;

/// The writers of this process, by partition.
#[derive(Default)]
pub(super) struct Writers {
    slots: Mutex<HashMap<(String, u32), Slot>>,
}

impl Writers {
    /// The writer slot of `topic`/`partition` (appends to one partition from this process
    /// take turns on its lock).
    pub(super) fn slot(&self, topic: &str, partition: u32) -> Slot {
        let mut slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        slots.entry((topic.to_string(), partition)).or_default().clone()
    }

    /// Drops the writer of `topic`/`partition` (after an append in flight on it).
    pub(super) fn release(&self, topic: &str, partition: u32) {
        let slot = self.slot(topic, partition);
        let mut held = slot.lock().unwrap_or_else(|e| e.into_inner());
        *held = None;
    }

    /// Partitions whose transactional id this process holds.
    pub(super) fn held(&self) -> Vec<(String, u32)> {
        let slots = self.slots.lock().unwrap_or_else(|e| e.into_inner());
        let mut out: Vec<_> = slots
            .iter()
            .filter(|(_, s)| s.lock().map(|p| p.is_some()).unwrap_or(false))
            .map(|(k, _)| k.clone())
            .collect();
        out.sort();
        out
    }
}

/// The transactional id of `topic`/`partition`.
pub(super) fn transactional_id(prefix: &str, topic: &str, partition: u32) -> String {
    format!("{prefix}-{topic}-{partition}")
}

/// Takes the transactional id of `topic`/`partition`: a producer whose `init_transactions`
/// fenced the previous holder.
pub(super) fn acquire(config: &KafkaConfig, topic: &str, partition: u32) -> Result<TxnProducer> {
    let id = transactional_id(&config.transactional_id_prefix, topic, partition);
    let producer: TxnProducer = config
        .client_config()
        .set("transactional.id", &id)
        .set("transaction.timeout.ms", config.transaction_timeout.as_millis().to_string())
        .set("enable.idempotence", "true")
        .set("acks", "all")
        .set("linger.ms", "0")
        .create()
        .map_err(|e| Error::Unavailable(format!("cannot create the producer {id}: {e}")))?;
    producer
        .init_transactions(config.timeout)
        .map_err(|e| Error::Unavailable(format!("taking the transactional id {id} failed: {e}")))?;
    tracing::info!(transactional_id = %id, "kafka backend: partition writer acquired (previous holder fenced)");
    Ok(producer)
}

/// Produces `events` under `key` to `topic`/`partition` in one transaction and commits it.
/// On an error the transaction is aborted if it can be, and the error returned: the caller
/// drops the producer.
pub(super) fn produce(
    producer: &TxnProducer,
    topic: &str,
    partition: u32,
    key: &str,
    events: &[EventData],
    timeout: Duration,
) -> Result<()> {
    let fail = |what: &str, e: &dyn std::fmt::Display| {
        let _ = producer.abort_transaction(timeout);
        Error::Unavailable(format!("{what} on {topic}/{partition}: {e}"))
    };
    producer.begin_transaction().map_err(|e| fail("begin_transaction", &e))?;
    let now = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as i64);
    for event in events {
        let record = event.to_record(key.as_bytes(), now);
        let mut headers = OwnedHeaders::new_with_capacity(record.headers.len());
        for (name, value) in &record.headers {
            headers = headers.insert(Header { key: name, value: value.as_deref() });
        }
        let value = record.value.as_deref().unwrap_or_default();
        let base = BaseRecord::to(topic)
            .partition(partition as i32)
            .key(key.as_bytes())
            .payload(value)
            .headers(headers)
            .timestamp(now);
        producer.send(base).map_err(|(e, _)| fail("producing", &e))?;
    }
    // The records' delivery is awaited here (the producer's thread serves the reports):
    // rdkafka's own flush, which commit_transaction runs first, polls in steps of up to
    // 100 ms and so waited a whole step for every append (measured: 102-104 ms per one-event
    // transaction on the three-node reference; docs/cluster-bench.md).
    let deadline = std::time::Instant::now() + timeout;
    while producer.in_flight_count() > 0 && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_micros(200));
    }
    // commit_transaction flushes the records first and fails if any was not acknowledged by
    // all in-sync replicas. A broker's death stalls a commit for ~10-23 s (until the
    // controller fences the broker and leaders move; docs/cluster.md, "Faults"); a bounded
    // commit then fails with a timeout that leaves the transaction open and resumable: the
    // call is made again (rdkafka reports the flush's timeout as `KafkaError::Flush`, and
    // librdkafka's own as a retriable transaction error).
    let mut last = None;
    for _ in 0..COMMIT_ATTEMPTS {
        match producer.commit_transaction(timeout) {
            Ok(()) => return Ok(()),
            Err(e @ KafkaError::Flush(_)) => last = Some(e),
            Err(KafkaError::Transaction(e)) if e.is_retriable() && !e.is_fatal() && !e.txn_requires_abort() => {
                last = Some(KafkaError::Transaction(e));
            }
            Err(e) => return Err(fail("commit_transaction", &e)),
        }
        tracing::warn!(%topic, partition, error = ?last, "kafka backend: a commit timed out; resuming it");
    }
    let e = last.map_or_else(|| "no attempt".to_string(), |e| e.to_string());
    Err(fail("commit_transaction (attempts exhausted)", &e))
}

/// Commits tried before the transaction is given up (each bounded by the backend's timeout).
const COMMIT_ATTEMPTS: u32 = 3;
