//! The follower: one Kafka consumer (`read_committed`, no group, no commits) that copies every
//! topic of the cluster into the process's mirror log, partition by partition, in each
//! partition's order, and resumes where the mirror ends.
//!
//! **Why a mirror.** What evident adds to Kafka needs an index Kafka does not keep: a stream's
//! events by key, its version, its event ids, a store-wide order for projections. The mirror is
//! an evident log (the embedded engine: checksummed, fsynced, recovered after a crash) holding a
//! copy of the cluster's committed records, so the library's reads, its expected-version and
//! event-id checks and its commit-ordered feed are the embedded log's own, with the same code
//! and the same rules. Kafka stays the source of truth: the mirror is only ever written from
//! what Kafka committed, and can be deleted and rebuilt from the topics.
//!
//! **Kafka offsets.** The mirror's offsets are dense; Kafka's are not (transaction markers and
//! aborted records take offsets). Each mirrored record carries its Kafka offset in a last header,
//! [`KAFKA_OFFSET`], which the backend reports as the event's offset and strips, and from which
//! the follower resumes: the next Kafka offset of a partition is one past its last mirrored
//! record's, so a crash between a mirror append and anything else neither skips nor repeats a
//! record.
//!
//! **Caught up.** `position(topic, partition)` is the consumer's position once what it
//! returned is durable in the mirror: every committed record below it is mirrored (aborted
//! records and markers below it are skipped). A reader that wants the cluster's present waits
//! until that position reaches the partition's high watermark (`catch_up`).
//!
//! **Duplicates.** Records written through evident never repeat an event id in a stream (the
//! writer checks first). A plain Kafka producer may write one; the mirror, like the embedded
//! store, keeps one event per id: a batch the log refuses for an id is copied record by record
//! and the refused records are left out (counted, logged).

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use evident_core::batch::{BatchBuilder, NewRecord};
use evident_core::ExpectedVersion;
use evident_log::{CleanupPolicy, Log, TopicConfig};
use rdkafka::admin::{AdminClient, AdminOptions, OwnedResourceSpecifier, ResourceSpecifier};
use rdkafka::client::{ClientContext, DefaultClientContext};
use rdkafka::consumer::{BaseConsumer, Consumer, ConsumerContext};
use rdkafka::message::{BorrowedMessage, Headers, Message};
use rdkafka::statistics::Statistics;
use rdkafka::{Offset, TopicPartitionList};

use super::KafkaConfig;
use crate::{Error, Result};

/// Header carrying a mirrored record's offset in its Kafka partition (decimal).
pub(super) use evident_core::envelope::KAFKA_OFFSET;

/// Records polled before they are written to the mirror, at most.
const DRAIN_MAX: usize = 2000;
/// Bytes of one mirror batch, at most (the log's default batch limit is 1 MiB).
const BATCH_BYTES_MAX: usize = 512 * 1024;
/// How often the cluster's topic list is read for new topics and partitions.
const REFRESH_EVERY: Duration = Duration::from_secs(2);

/// What the follower shares with the backend.
pub(super) struct Shared {
    log: Arc<Log>,
    state: Mutex<State>,
    moved: Condvar,
    stop: AtomicBool,
    refresh: AtomicBool,
    /// Records refused by the mirror (an event id repeated by a plain Kafka producer).
    pub(super) skipped: AtomicU64,
    /// The Kafka topics' prefix (`KafkaConfig::topic_prefix`): the mirror's topics are
    /// evident's names, without it.
    prefix: String,
    /// Per (topic, partition): its last stable offset as the client's last statistics gave
    /// it (every `STATS_EVERY`), for the mirror's lag.
    ends: Arc<Mutex<HashMap<(String, u32), i64>>>,
}

#[derive(Default)]
struct State {
    /// Per (topic, partition): the consumer's position once what it returned is mirrored.
    positions: HashMap<(String, u32), i64>,
    /// Topics mirrored, and their partition counts.
    topics: HashMap<String, u32>,
    /// Completed refreshes of the topic list (a waiter for a new topic waits for the next).
    refreshes: u64,
    /// Why the follower stopped, if it did.
    failure: Option<String>,
}

/// The follower thread and its shared state.
pub(super) struct Follower {
    shared: Arc<Shared>,
    thread: Option<JoinHandle<()>>,
}

impl Follower {
    /// Starts following the cluster into `log`.
    pub(super) fn start(config: &KafkaConfig, log: Arc<Log>) -> Result<Self> {
        let ends = Arc::new(Mutex::new(HashMap::new()));
        let consumer: BaseConsumer<Statistician> = config
            .client_config()
            // A group id is required by the client but unused: partitions are assigned by hand,
            // nothing is committed (the mirror is the position).
            .set("group.id", format!("{}-mirror", config.transactional_id_prefix))
            .set("enable.auto.commit", "false")
            .set("enable.auto.offset.store", "false")
            .set("isolation.level", "read_committed")
            .set("auto.offset.reset", "earliest")
            .set("enable.partition.eof", "false")
            .set("statistics.interval.ms", STATS_EVERY.as_millis().to_string())
            .create_with_context(Statistician { ends: ends.clone(), prefix: config.topic_prefix.clone() })
            .map_err(|e| Error::Unavailable(format!("cannot create the mirror's Kafka consumer: {e}")))?;
        let shared = Arc::new(Shared {
            log,
            state: Mutex::new(State::default()),
            moved: Condvar::new(),
            stop: AtomicBool::new(false),
            refresh: AtomicBool::new(true),
            skipped: AtomicU64::new(0),
            prefix: config.topic_prefix.clone(),
            ends,
        });
        let admin: AdminClient<DefaultClientContext> = config
            .client_config()
            .create()
            .map_err(|e| Error::Unavailable(format!("cannot create the mirror's Kafka admin client: {e}")))?;
        let configs = TopicConfigs {
            admin,
            runtime: tokio::runtime::Builder::new_current_thread()
                .build()
                .map_err(|e| Error::Unavailable(format!("cannot start the mirror's admin runtime: {e}")))?,
        };
        let run = shared.clone();
        let thread = std::thread::Builder::new()
            .name("evident-kafka-mirror".into())
            .spawn(move || {
                let failure = run.follow(&consumer, &configs);
                let mut st = run.state.lock().unwrap_or_else(|e| e.into_inner());
                st.failure = failure;
                run.moved.notify_all();
            })
            .map_err(|e| Error::Unavailable(format!("cannot start the mirror thread: {e}")))?;
        Ok(Self { shared, thread: Some(thread) })
    }

    pub(super) fn shared(&self) -> &Arc<Shared> {
        &self.shared
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.shared.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads topics' configs from the cluster for the mirror thread (the admin client answers
/// with futures; the thread blocks on them with a runtime of its own).
struct TopicConfigs {
    admin: AdminClient<DefaultClientContext>,
    runtime: tokio::runtime::Runtime,
}

impl TopicConfigs {
    /// Those of `kafka_topics` whose `cleanup.policy` includes `compact`. A topic the cluster
    /// did not describe counts as not compacted (logged): its mirror copy still holds every
    /// record, only the policy it names is Kafka's default.
    fn compacted(&self, kafka_topics: &[&str]) -> std::collections::HashSet<String> {
        let resources: Vec<ResourceSpecifier<'_>> = kafka_topics.iter().map(|t| ResourceSpecifier::Topic(t)).collect();
        let options = AdminOptions::new().request_timeout(Some(Duration::from_secs(10)));
        let described = self.runtime.block_on(self.admin.describe_configs(resources.iter(), &options));
        let mut out = std::collections::HashSet::new();
        match described {
            Ok(results) => {
                for result in results {
                    match result {
                        Ok(resource) => {
                            let OwnedResourceSpecifier::Topic(name) = &resource.specifier else { continue };
                            let compact = resource
                                .get("cleanup.policy")
                                .and_then(|e| e.value.as_deref())
                                .is_some_and(|v| v.split(',').any(|p| p.trim() == "compact"));
                            if compact {
                                out.insert(name.clone());
                            }
                        }
                        Err(code) => tracing::warn!(%code, "kafka mirror: describing a topic's config failed"),
                    }
                }
            }
            Err(e) => tracing::warn!(error = %e, "kafka mirror: describing the new topics' configs failed"),
        }
        out
    }
}

impl Shared {
    /// The partition count of `topic` once it is mirrored, reading the cluster's topic list
    /// again if it is not yet (None: the cluster has no such topic).
    pub(super) fn topic_partitions(&self, topic: &str, timeout: Duration) -> Result<Option<u32>> {
        let st = self.after_refresh(timeout, |st| st.topics.contains_key(topic))?;
        Ok(st.topics.get(topic).copied())
    }

    /// Waits until the topic list has been read again after this call, or fails after
    /// `timeout`.
    pub(super) fn refreshed(&self, timeout: Duration) -> Result<()> {
        self.after_refresh(timeout, |_| false).map(|_| ())
    }

    /// Asks for the topic list to be read again and waits until `enough` holds or two
    /// refreshes completed after the call (the first may have read the list before it was
    /// asked, e.g. before a topic was created); fails after `timeout` or if the mirror
    /// stopped.
    fn after_refresh(
        &self,
        timeout: Duration,
        enough: impl Fn(&State) -> bool,
    ) -> Result<std::sync::MutexGuard<'_, State>> {
        let deadline = Instant::now() + timeout;
        let mut st = self.lock();
        if enough(&st) {
            return Ok(st);
        }
        let target = st.refreshes + 2;
        self.refresh.store(true, Ordering::SeqCst);
        loop {
            if enough(&st) || st.refreshes >= target {
                return Ok(st);
            }
            if let Some(why) = &st.failure {
                return Err(Error::Unavailable(format!("the Kafka mirror stopped: {why}")));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return Err(Error::Unavailable(format!(
                    "the Kafka cluster's topic list was not read within {timeout:?}"
                )));
            }
            if st.refreshes + 1 == target {
                self.refresh.store(true, Ordering::SeqCst);
            }
            st = self.moved.wait_timeout(st, left.min(Duration::from_millis(100))).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// The next Kafka offset the mirror expects in `topic`/`partition` (past transaction
    /// markers and aborted records too): the partition's end as far as it is mirrored.
    pub(super) fn position(&self, topic: &str, partition: u32) -> Option<i64> {
        self.lock().positions.get(&(topic.to_string(), partition)).copied()
    }

    /// Asks for the topic list to be read again now (after a topic was created).
    pub(super) fn request_refresh(&self) {
        self.refresh.store(true, Ordering::SeqCst);
    }

    /// Waits until the mirror holds every committed record of `topic`/`partition` below
    /// `offset` (a high watermark), or fails after `timeout`.
    pub(super) fn wait_for(&self, topic: &str, partition: u32, offset: i64, timeout: Duration) -> Result<()> {
        let deadline = Instant::now() + timeout;
        let key = (topic.to_string(), partition);
        let mut st = self.lock();
        loop {
            if st.positions.get(&key).is_some_and(|&p| p >= offset) {
                return Ok(());
            }
            if let Some(why) = &st.failure {
                return Err(Error::Unavailable(format!("the Kafka mirror stopped: {why}")));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                let at = st.positions.get(&key).copied().unwrap_or(-1);
                return Err(Error::Unavailable(format!(
                    "the mirror of {topic}/{partition} did not reach offset {offset} within {timeout:?} (at {at}; \
                     an open Kafka transaction holds read_committed readers until it ends or times out)"
                )));
            }
            st = self.moved.wait_timeout(st, left).unwrap_or_else(|e| e.into_inner()).0;
        }
    }

    /// Committed records on the cluster not yet in the mirror, summed over partitions, as of
    /// the client's last statistics.
    pub(super) fn lag(&self) -> u64 {
        let ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        let st = self.lock();
        st.positions.iter().map(|(k, &at)| ends.get(k).map_or(0, |&end| u64::try_from(end - at).unwrap_or(0))).sum()
    }

    /// Per mirrored partition: (topic, partition, position).
    pub(super) fn positions(&self) -> Vec<(String, u32, i64)> {
        let st = self.lock();
        let mut out: Vec<_> = st.positions.iter().map(|((t, p), o)| (t.clone(), *p, *o)).collect();
        out.sort();
        out
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The thread's loop; returns why it stopped (None: asked to).
    fn follow(&self, consumer: &BaseConsumer<Statistician>, configs: &TopicConfigs) -> Option<String> {
        let mut last_refresh: Option<Instant> = None;
        let mut assigned: HashMap<String, u32> = HashMap::new();
        while !self.stop.load(Ordering::SeqCst) {
            if self.refresh.swap(false, Ordering::SeqCst) || last_refresh.is_none_or(|t| t.elapsed() >= REFRESH_EVERY) {
                match self.refresh_topics(consumer, configs, &mut assigned) {
                    Ok(()) => last_refresh = Some(Instant::now()),
                    Err(e) => {
                        tracing::warn!(error = %e, "kafka mirror: reading the cluster's topics failed; retrying");
                        // Retry soon, without spinning.
                        std::thread::sleep(Duration::from_millis(200));
                        continue;
                    }
                }
                let mut st = self.lock();
                st.refreshes += 1;
                self.moved.notify_all();
            }
            if let Err(e) = self.drain(consumer) {
                return Some(e.to_string());
            }
        }
        None
    }

    /// Reads the cluster's topics; mirrors new ones and new partitions from where the mirror
    /// ends.
    fn refresh_topics(
        &self,
        consumer: &BaseConsumer<Statistician>,
        configs: &TopicConfigs,
        assigned: &mut HashMap<String, u32>,
    ) -> Result<()> {
        let metadata = consumer
            .fetch_metadata(None, Duration::from_secs(10))
            .map_err(|e| Error::Unavailable(format!("Kafka metadata: {e}")))?;
        // The topics new to the mirror take Kafka's cleanup policy (one question for all).
        let new: Vec<&str> = metadata
            .topics()
            .iter()
            .map(|t| t.name())
            .filter(|t| self.mirrored_name(t).is_some_and(|n| self.log.topic_meta(n).is_err()))
            .collect();
        let compacted = if new.is_empty() { Default::default() } else { configs.compacted(&new) };
        let mut add = TopicPartitionList::new();
        let mut grown = Vec::new();
        for topic in metadata.topics() {
            // Only this backend's namespace; Kafka's internal topics (`__consumer_offsets`,
            // `__transaction_state`) are not events.
            let Some(name) = self.mirrored_name(topic.name()) else { continue };
            if topic.error().is_some() || topic.partitions().is_empty() {
                continue;
            }
            let partitions = topic.partitions().len() as u32;
            let have = assigned.get(name).copied().unwrap_or(0);
            if partitions <= have {
                continue;
            }
            self.ensure_mirror_topic(name, partitions, compacted.contains(topic.name()))?;
            for p in have..partitions {
                let next = self.mirrored_end(name, p)?;
                add.add_partition_offset(
                    topic.name(),
                    p as i32,
                    if next == 0 { Offset::Beginning } else { Offset::Offset(next) },
                )
                .map_err(|e| Error::Unavailable(format!("assigning {name}/{p}: {e}")))?;
                grown.push((name.to_string(), p, next));
            }
            assigned.insert(name.to_string(), partitions);
        }
        if add.count() > 0 {
            consumer.incremental_assign(&add).map_err(|e| Error::Unavailable(format!("assigning partitions: {e}")))?;
        }
        let mut st = self.lock();
        for (topic, p, next) in grown {
            st.positions.entry((topic, p)).or_insert(next);
        }
        for (topic, n) in assigned.iter() {
            st.topics.insert(topic.clone(), *n);
        }
        Ok(())
    }

    /// Evident's name of a Kafka topic the mirror follows: in this backend's namespace, and not
    /// one of Kafka's internal topics (`__consumer_offsets`, `__transaction_state`), which are
    /// not events.
    fn mirrored_name<'a>(&self, kafka: &'a str) -> Option<&'a str> {
        kafka.strip_prefix(self.prefix.as_str()).filter(|n| !n.is_empty() && !n.starts_with("__"))
    }

    /// Evident's name of a Kafka topic the follower was assigned (all in its namespace).
    fn evident_name<'a>(&self, kafka: &'a str) -> &'a str {
        kafka.strip_prefix(self.prefix.as_str()).unwrap_or(kafka)
    }

    /// Creates the mirror's copy of `topic` with `partitions` partitions (its config names
    /// Kafka's cleanup policy; the mirror itself keeps every record it copied), or adds
    /// partitions.
    fn ensure_mirror_topic(&self, topic: &str, partitions: u32, compacted: bool) -> Result<()> {
        match self.log.topic_meta(topic) {
            Ok(meta) if meta.config.partitions >= partitions => Ok(()),
            Ok(_) => self.log.create_partitions(topic, partitions).map(|_| ()).map_err(super::from_log),
            Err(evident_log::Error::UnknownTopic(_)) => {
                let config = TopicConfig {
                    partitions,
                    // The mirror holds what Kafka committed, wherever Kafka's producers put a
                    // key: a stream that a plain client wrote into two partitions is two
                    // streams here, as on Kafka.
                    key_partition_guard: false,
                    cleanup_policy: if compacted { CleanupPolicy::Compact } else { CleanupPolicy::Delete },
                    ..TopicConfig::default()
                };
                match self.log.create_topic(topic, config) {
                    Ok(_) | Err(evident_log::Error::TopicExists(_)) => Ok(()),
                    Err(e) => Err(super::from_log(e)),
                }
            }
            Err(e) => Err(super::from_log(e)),
        }
    }

    /// The next Kafka offset to mirror in `topic`/`partition`: one past the last mirrored
    /// record's (0 for an empty mirror).
    fn mirrored_end(&self, topic: &str, partition: u32) -> Result<i64> {
        let offsets = self.log.partition_offsets(topic, partition).map_err(super::from_log)?;
        if offsets.high_watermark == offsets.log_start_offset {
            return Ok(0);
        }
        let last =
            self.log.read_partition_events(topic, partition, offsets.high_watermark - 1, 1).map_err(super::from_log)?;
        let offset = last.first().and_then(kafka_offset).ok_or_else(|| {
            Error::Unavailable(format!(
                "the mirror's last record of {topic}/{partition} has no {KAFKA_OFFSET} header: \
                 the mirror directory holds something else"
            ))
        })?;
        Ok(offset + 1)
    }

    /// Polls what is available, writes it to the mirror, then publishes the new positions.
    fn drain(&self, consumer: &BaseConsumer<Statistician>) -> Result<()> {
        let mut by_partition: Vec<((String, u32), Vec<NewRecord>)> = Vec::new();
        let mut polled = 0;
        let mut wait = Duration::from_millis(50);
        while polled < DRAIN_MAX {
            let Some(message) = consumer.poll(wait) else { break };
            // Errors count too: a burst of them ends the round (positions are published and
            // the stop flag looked at) rather than keeping it.
            polled += 1;
            let message = match message {
                Ok(m) => m,
                Err(e) => {
                    // A broker down, a leader moving: the client retries by itself.
                    tracing::debug!(error = %e, "kafka mirror: poll error");
                    continue;
                }
            };
            wait = Duration::ZERO;
            let key = (self.evident_name(message.topic()).to_string(), message.partition() as u32);
            let record = mirrored_record(&message);
            match by_partition.iter_mut().find(|(k, _)| *k == key) {
                Some((_, records)) => records.push(record),
                None => by_partition.push((key, vec![record])),
            }
        }
        for ((topic, partition), records) in &by_partition {
            let mut batch = BatchBuilder::new();
            let mut bytes = 0;
            let mut first = 0;
            for (i, record) in records.iter().enumerate() {
                if bytes >= BATCH_BYTES_MAX {
                    self.mirror_batch(topic, *partition, &batch, &records[first..i])?;
                    (batch, bytes, first) = (BatchBuilder::new(), 0, i);
                }
                bytes += record_size(record);
                batch.push(record.clone());
            }
            self.mirror_batch(topic, *partition, &batch, &records[first..])?;
        }
        // Published even when nothing was returned: the position moves past transaction
        // markers and aborted records too.
        let positions = consumer.position().map_err(|e| Error::Unavailable(format!("consumer position: {e}")))?;
        let mut st = self.lock();
        let mut moved = false;
        for element in positions.elements() {
            if let Offset::Offset(o) = element.offset() {
                let key = (self.evident_name(element.topic()).to_string(), element.partition() as u32);
                let slot = st.positions.entry(key).or_insert(o);
                if o > *slot {
                    *slot = o;
                    moved = true;
                }
            }
        }
        if moved {
            self.moved.notify_all();
        }
        Ok(())
    }

    /// Appends a batch of mirrored records (`records`, built into `batch`); if the log
    /// refuses it for an event id, appends the records one by one and leaves out those it
    /// refuses.
    fn mirror_batch(&self, topic: &str, partition: u32, batch: &BatchBuilder, records: &[NewRecord]) -> Result<()> {
        if batch.is_empty() {
            return Ok(());
        }
        match self.log.append_batch(topic, partition, &batch.build(), Some(ExpectedVersion::Any)) {
            Ok(_) => Ok(()),
            Err(e) if id_refusal(&e) => {
                for record in records {
                    let mut one = BatchBuilder::new();
                    one.push(record.clone());
                    match self.log.append_batch(topic, partition, &one.build(), Some(ExpectedVersion::Any)) {
                        Ok(_) => {}
                        Err(e) if id_refusal(&e) => {
                            self.skipped.fetch_add(1, Ordering::Relaxed);
                            tracing::warn!(%topic, partition, error = %e, "kafka mirror: a record left out (its event id is taken)");
                        }
                        Err(e) => return Err(super::from_log(e)),
                    }
                }
                Ok(())
            }
            Err(e) => Err(super::from_log(e)),
        }
    }
}

/// How often the mirror's client reports its statistics (partitions' last stable offsets).
const STATS_EVERY: Duration = Duration::from_secs(5);

/// The mirror's client context: keeps each partition's last stable offset from the client's
/// statistics, so the mirror's lag is known without asking the cluster.
struct Statistician {
    ends: Arc<Mutex<HashMap<(String, u32), i64>>>,
    /// The Kafka topics' prefix (the ends are kept under evident's names).
    prefix: String,
}

impl ClientContext for Statistician {
    fn stats(&self, statistics: Statistics) {
        let mut ends = self.ends.lock().unwrap_or_else(|e| e.into_inner());
        for (name, topic) in &statistics.topics {
            for partition in topic.partitions.values() {
                // -1 is librdkafka's internal "unassigned" partition; an unknown end is < 0.
                if let (Ok(p), true) = (u32::try_from(partition.partition), partition.ls_offset >= 0) {
                    let name = name.strip_prefix(self.prefix.as_str()).unwrap_or(name);
                    ends.insert((name.to_string(), p), partition.ls_offset);
                }
            }
        }
    }
}

impl ConsumerContext for Statistician {}

/// Whether the log refused a batch for its event ids (which a plain Kafka producer may repeat).
fn id_refusal(e: &evident_log::Error) -> bool {
    matches!(
        e,
        evident_log::Error::PartialDuplicate { .. }
            | evident_log::Error::DuplicateIdInBatch { .. }
            | evident_log::Error::EventIdReused { .. }
    )
}

/// A consumed Kafka record as the mirror stores it: its Kafka offset as the last header.
fn mirrored_record(message: &BorrowedMessage<'_>) -> NewRecord {
    let mut headers: Vec<(String, Option<Vec<u8>>)> = Vec::new();
    if let Some(h) = message.headers() {
        for header in h.iter() {
            if header.key != KAFKA_OFFSET {
                headers.push((header.key.to_string(), header.value.map(<[u8]>::to_vec)));
            }
        }
    }
    headers.push((KAFKA_OFFSET.to_string(), Some(message.offset().to_string().into_bytes())));
    NewRecord {
        key: message.key().map(<[u8]>::to_vec),
        value: message.payload().map(<[u8]>::to_vec),
        headers,
        timestamp_ms: message.timestamp().to_millis().unwrap_or(0),
    }
}

/// A record's encoded size, roughly (for bounding batches).
fn record_size(record: &NewRecord) -> usize {
    let headers: usize = record.headers.iter().map(|(k, v)| k.len() + v.as_ref().map_or(0, Vec::len) + 4).sum();
    record.key.as_ref().map_or(0, Vec::len) + record.value.as_ref().map_or(0, Vec::len) + headers + 16
}

/// A mirrored event's Kafka offset.
pub(super) fn kafka_offset(event: &evident_log::Event) -> Option<i64> {
    event.header(KAFKA_OFFSET).and_then(|v| std::str::from_utf8(v).ok()).and_then(|s| s.parse().ok())
}
