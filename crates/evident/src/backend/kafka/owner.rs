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

use std::collections::{BTreeSet, HashMap};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use rdkafka::client::ClientContext;
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::error::KafkaError;
use rdkafka::types::RDKafkaErrorCode;

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
    group: String,
    owned: Arc<Owned>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    /// Who owns what by the group's description.
    addresses: Mutex<Option<Addresses>>,
}

impl Owner {
    /// Joins `group` over every topic of the cluster (but Kafka's `__` ones and `_`-prefixed
    /// internal ones).
    pub(super) fn start(config: &KafkaConfig, group: &str, writers: Arc<Writers>) -> Result<Self> {
        let mut client = config.client_config();
        if let Some(address) = &config.node_address {
            // Other members read it from the group's description (`address_of`).
            client.set("client.id", address);
        }
        let consumer: BaseConsumer<Quiet> = client
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .set("partition.assignment.strategy", "cooperative-sticky")
            .set("session.timeout.ms", config.session_timeout.as_millis().to_string())
            // New topics are matched by the subscription's pattern at the next metadata refresh.
            .set("topic.metadata.refresh.interval.ms", "2000")
            .create_with_context(Quiet)
            .map_err(|e| Error::Unavailable(format!("cannot create the ownership consumer: {e}")))?;
        // Every topic of the namespace but the internal ones (a regular expression: the
        // prefix's dots escaped; its other characters are literal).
        let pattern = format!("^{}[^_].*", config.topic_prefix.replace('.', "\\."));
        consumer
            .subscribe(&[pattern.as_str()])
            .map_err(|e| Error::Unavailable(format!("cannot join the ownership group {group}: {e}")))?;
        let owned = Arc::new(Owned::default());
        let stop = Arc::new(AtomicBool::new(false));
        let (o, s, c) = (owned.clone(), stop.clone(), config.clone());
        let thread = std::thread::Builder::new()
            .name("evident-kafka-owner".into())
            .spawn(move || follow_assignment(&consumer, &c, &o, &s, &writers))
            .map_err(|e| Error::Unavailable(format!("cannot start the ownership thread: {e}")))?;
        Ok(Self { group: group.to_string(), owned, stop, thread: Some(thread), addresses: Mutex::new(None) })
    }

    pub(super) fn owned(&self) -> &Arc<Owned> {
        &self.owned
    }

    /// The advertised address of the member the group assigned `topic`/`partition` to, from
    /// the group's description (asked through `client`), read again once a second or after
    /// this member saw a rebalance. None when no member holds it or its owner advertises none.
    pub(super) fn address_of(
        &self,
        client: &BaseConsumer,
        config: &KafkaConfig,
        topic: &str,
        partition: u32,
        timeout: Duration,
    ) -> Option<String> {
        let rebalances = self.owned.rebalances.load(Ordering::Relaxed);
        let mut cache = self.addresses.lock().unwrap_or_else(|e| e.into_inner());
        let fresh = cache.as_ref().is_some_and(|(at, seen, _)| at.elapsed() < ADDRESSES_FOR && *seen == rebalances);
        if !fresh {
            match client.fetch_group_list(Some(&self.group), timeout) {
                Ok(list) => {
                    let mut map = HashMap::new();
                    for member in list.groups().iter().flat_map(|g| g.members()) {
                        if member.client_id().is_empty() {
                            continue;
                        }
                        for (t, p) in member.assignment().map(decode_assignment).unwrap_or_default() {
                            if let Some(t) = config.evident_topic(&t) {
                                map.insert((t.to_string(), p), member.client_id().to_string());
                            }
                        }
                    }
                    *cache = Some((Instant::now(), rebalances, map));
                }
                Err(e) => {
                    tracing::debug!(group = %self.group, error = %e, "kafka ownership: describing the group failed");
                    return None;
                }
            }
        }
        cache.as_ref().and_then(|(_, _, map)| map.get(&(topic.to_string(), partition)).cloned())
    }
}

/// The ownership consumer's context: a cluster without topics yet makes the client report its
/// pattern subscription as matching nothing (`UnknownTopicOrPartition`), which is the normal
/// state of a new cluster, logged at debug; other client errors are warnings.
struct Quiet;

impl ClientContext for Quiet {
    fn error(&self, error: KafkaError, reason: &str) {
        if error.rdkafka_error_code() == Some(RDKafkaErrorCode::UnknownTopicOrPartition) {
            tracing::debug!(%error, reason, "kafka ownership: the subscription matches no topic yet");
        } else {
            tracing::warn!(%error, reason, "kafka ownership: client error");
        }
    }
}

impl ConsumerContext for Quiet {}

/// The group's assignment as last read: when, the rebalances this member had seen then, and
/// each partition's owner's advertised address.
type Addresses = (Instant, u64, HashMap<(String, u32), String>);

/// How long a read of the group's assignment is used.
const ADDRESSES_FOR: Duration = Duration::from_secs(1);

/// The partitions of a member's assignment as the consumer protocol encodes it (Kafka's
/// `ConsumerProtocolAssignment`, versions 0 to 3, none flexible: version int16, then an array
/// (int32 count) of topic (int16-length string) with an array of int32 partitions, then user
/// data). Malformed bytes give what was read before them.
pub(super) fn decode_assignment(bytes: &[u8]) -> Vec<(String, u32)> {
    let mut out = Vec::new();
    let mut at = 2; // the version
    let mut take = |n: usize| {
        let piece = bytes.get(at..at + n);
        at += n;
        piece
    };
    let i32_of = |b: &[u8]| i32::from_be_bytes([b[0], b[1], b[2], b[3]]);
    let Some(topics) = take(4).map(i32_of) else { return out };
    for _ in 0..topics.max(0) {
        let Some(len) = take(2).map(|b| i16::from_be_bytes([b[0], b[1]])) else { return out };
        let Some(name) = take(usize::try_from(len).unwrap_or(0)) else { return out };
        let name = String::from_utf8_lossy(name).into_owned();
        let Some(count) = take(4).map(i32_of) else { return out };
        for _ in 0..count.max(0) {
            let Some(p) = take(4).map(i32_of) else { return out };
            if let Ok(p) = u32::try_from(p) {
                out.push((name.clone(), p));
            }
        }
    }
    out
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
    consumer: &BaseConsumer<Quiet>,
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
        // Kept under evident's names (the writers' slots are).
        let now: BTreeSet<(String, u32)> = assignment
            .elements()
            .iter()
            .filter_map(|e| Some((config.evident_topic(e.topic())?.to_string(), e.partition() as u32)))
            .collect();
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
                match writer::acquire(config, &config.kafka_topic(topic), *partition) {
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

#[cfg(test)]
mod tests {
    use super::decode_assignment;

    #[test]
    fn an_assignment_decodes_to_its_partitions_and_bad_bytes_stop_the_reading() {
        // Version 1, two topics: "a" with 0 and 2, "bc" with 1; then empty user data.
        let mut bytes = vec![0, 1, 0, 0, 0, 2];
        bytes.extend_from_slice(&[0, 1, b'a', 0, 0, 0, 2, 0, 0, 0, 0, 0, 0, 0, 2]);
        bytes.extend_from_slice(&[0, 2, b'b', b'c', 0, 0, 0, 1, 0, 0, 0, 1]);
        bytes.extend_from_slice(&[0, 0, 0, 0]);
        let expected = vec![("a".to_string(), 0), ("a".to_string(), 2), ("bc".to_string(), 1)];
        assert_eq!(decode_assignment(&bytes), expected);
        // Cut in the middle of the second topic: the first topic's partitions are kept (its
        // two partitions end at byte 21); cut in the middle of a partition: those before it.
        assert_eq!(decode_assignment(&bytes[..23]), expected[..2]);
        assert_eq!(decode_assignment(&bytes[..20]), expected[..1]);
        assert_eq!(decode_assignment(&[0, 1, 0xff, 0xff, 0xff, 0xff]), Vec::<(String, u32)>::new());
        assert!(decode_assignment(&[]).is_empty());
    }
}
