//! Partition ownership by consumer-group assignment (opt-in: `KafkaConfig::owner_group`). The
//! processes of one group share the cluster's partitions as Kafka's group protocol assigns
//! them (cooperative-sticky); each takes the transactional ids of the partitions assigned to
//! it at once, so the previous holder is fenced at the rebalance rather than at the first
//! append, and releases those it loses. A crashed process's partitions move after its session
//! timeout.
//!
//! Ownership decides who holds which partition's id; it is not what makes appends safe (the
//! id's epoch is, `writer`): an append to a partition this process does not own still takes
//! the id, correctly, and the owner takes it back at its next append. Routing each command to
//! its partition's owner (which `KafkaBackend::owns` tells) is what keeps the ids still.
//!
//! The group's consumer reads no records: every assigned partition is paused at once (the
//! mirror reads them). It only keeps the membership (heartbeats in librdkafka's thread, and a
//! poll every `POLL` here).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Duration;

use rdkafka::consumer::{BaseConsumer, Consumer};

use super::writer::{self, Writers};
use super::KafkaConfig;
use crate::{Error, Result};

/// How often the membership is served and the assignment looked at.
const POLL: Duration = Duration::from_millis(200);

/// What the owner thread shares.
#[derive(Default)]
pub(super) struct Owned {
    /// The partitions assigned to this process now.
    partitions: Mutex<BTreeSet<(String, u32)>>,
    /// Assignment changes seen.
    pub(super) rebalances: AtomicU64,
}

impl Owned {
    pub(super) fn contains(&self, topic: &str, partition: u32) -> bool {
        self.partitions.lock().unwrap_or_else(|e| e.into_inner()).contains(&(topic.to_string(), partition))
    }

    pub(super) fn list(&self) -> Vec<(String, u32)> {
        self.partitions.lock().unwrap_or_else(|e| e.into_inner()).iter().cloned().collect()
    }
}

/// The group member and its thread.
pub(super) struct Owner {
    owned: Arc<Owned>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Owner {
    /// Joins `group` over every topic of the cluster (but Kafka's `__` ones and `_`-prefixed
    /// internal ones).
    pub(super) fn start(config: &KafkaConfig, group: &str, writers: Arc<Writers>) -> Result<Self> {
        let consumer: BaseConsumer = config
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", config.session_timeout.as_millis().to_string())
            // New topics are matched by the subscription's pattern at the next metadata refresh.
            .set("topic.metadata.refresh.interval.ms", "2000")
            .create()
            .map_err(|e| Error::Unavailable(format!("cannot create the ownership consumer: {e}")))?;
        consumer
            .subscribe(&["^[^_].*"])
            .map_err(|e| Error::Unavailable(format!("cannot join the ownership group {group}: {e}")))?;
        let owned = Arc::new(Owned::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (o, s, c) = (owned.clone(), stop.clone(), config.clone());
        let thread = std::thread::Builder::new()
            .name("evident-kafka-owner".into())
            .spawn(move || follow_assignment(&consumer, &c, &o, &s, &writers))
            .map_err(|e| Error::Unavailable(format!("cannot start the ownership thread: {e}")))?;
        Ok(Self { owned, stop, thread: Some(thread) })
    }

    pub(super) fn owned(&self) -> &Arc<Owned> {
        &self.owned
    }
}

impl Drop for Owner {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Serves the membership; on each assignment change, pauses what is assigned, takes the ids
/// of the partitions gained and drops the writers of those lost.
fn follow_assignment(
    consumer: &BaseConsumer,
    config: &KafkaConfig,
    owned: &Owned,
    stop: &AtomicBool,
    writers: &Writers,
) {
    let mut current: BTreeSet<(String, u32)> = BTreeSet::new();
    while !stop.load(Ordering::SeqCst) {
        // Records are not wanted (the partitions are paused); errors are the client's to retry.
        let _ = consumer.poll(POLL);
        let Ok(assignment) = consumer.assignment() else { continue };
        let now: BTreeSet<(String, u32)> =
            assignment.elements().iter().map(|e| (e.topic().to_string(), e.partition() as u32)).collect();
        if now == current {
            continue;
        }
        if let Err(e) = consumer.pause(&assignment) {
            tracing::warn!(error = %e, "kafka ownership: pausing the assigned partitions failed");
        }
        let gained: Vec<_> = now.difference(&current).cloned().collect();
        let lost: Vec<_> = current.difference(&now).cloned().collect();
        *owned.partitions.lock().unwrap_or_else(|e| e.into_inner()) = now.clone();
        owned.rebalances.fetch_add(1, Ordering::Relaxed);
        tracing::info!(gained = ?gained, lost = ?lost, owned = now.len(), "kafka ownership: assignment changed");
        for (topic, partition) in &lost {
            writers.release(topic, *partition);
        }
        for (topic, partition) in &gained {
            if stop.load(Ordering::SeqCst) {
                break;
            }
            let slot = writers.slot(topic, *partition);
            let mut held = slot.lock().unwrap_or_else(|e| e.into_inner());
            if held.is_none() {
                match writer::acquire(config, topic, *partition) {
                    Ok(p) => *held = Some(p),
                    Err(e) => {
                        tracing::warn!(%topic, partition, error = %e, "kafka ownership: taking an assigned partition failed; its next append takes it")
                    }
                }
            }
        }
        current = now;
    }
    // Unsubscribing leaves the group now, rather than after the session timeout.
    consumer.unsubscribe();
}
