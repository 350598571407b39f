//! The Kafka backend: the library on an Apache Kafka cluster (feature `kafka`, the `rdkafka`
//! client). Kafka stores and replicates the events; this process keeps a **mirror** of the
//! cluster's committed records in a local evident log (`follower`), which answers stream reads,
//! the commit-ordered feed and the checks an append needs; appends go to Kafka through
//! per-partition **transactional writers** whose transactional id is the partition's lock
//! (`writer`). docs/cluster.md is the design and names each choice.
//!
//! An append: take the partition's transactional id (fencing the previous holder) unless this
//! process holds it; wait until the mirror holds the partition up to its last stable offset;
//! check the expected version and event ids against the mirror with the embedded log's own
//! rules ([`evident_log::Log::check_events`]); produce the events in one transaction and commit
//! it; wait until the mirror holds them, and answer their versions and mirror sequence. A
//! failed attempt is retried from the top (bounded), and a commit whose outcome was unknown is
//! found by its event ids.
//!
//! Stream reads wait until the mirror holds the stream's partition up to the last stable
//! offset at the time of the call: a read sees every append acknowledged before it began,
//! from any process. The feed (`read_all`) is the mirror's own commit order: its sequence
//! numbers are this mirror's, stable as long as the mirror directory is kept (a projection's
//! checkpoint refers to them; with a new mirror, rebuild the projection).

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use evident_core::partitioner::KeyPartitioner;
use evident_core::{EventData, ExpectedVersion, Offset, Sequence};
use evident_log::{AppendOutcome, Log, LogConfig};
use rdkafka::admin::{AdminClient, AdminOptions, NewTopic, TopicReplication};
use rdkafka::client::DefaultClientContext;
use rdkafka::config::ClientConfig;
use rdkafka::consumer::{BaseConsumer, Consumer};
use rdkafka::types::RDKafkaErrorCode;

use super::embedded::{appended, from_log};
use super::{Appended, Backend, EmbeddedBackend, StreamPage, StreamQuery, TopicSpec};
use crate::event::RecordedEvent;
use crate::{Error, Result};

mod follower;
mod groups;
mod owner;
mod writer;

pub use groups::KafkaGroups;

use follower::{Follower, KAFKA_OFFSET};
use writer::Writers;

/// The largest batch the mirror accepts (one mirrored record may be as large as the cluster
/// allows).
const MIRROR_BATCH_MAX: usize = 64 << 20;

/// The longest one attempt to read a partition's end waits (then the metadata is read again).
const WATERMARK_ATTEMPT: Duration = Duration::from_secs(5);

/// Appends tried before giving up (each after a fresh take of the partition's id).
const APPEND_ATTEMPTS: u32 = 4;

/// How to reach the cluster and where to keep the mirror.
#[derive(Debug, Clone)]
pub struct KafkaConfig {
    /// `host:port,...` of the cluster's brokers.
    pub bootstrap: String,
    /// Directory of the local mirror (an evident log). Keep it: a projection's checkpoints
    /// refer to its commit sequence. Deleted, it is rebuilt from the topics.
    pub mirror_dir: PathBuf,
    /// Replication factor of the topics the backend creates (None: three, or the number of
    /// brokers if fewer).
    pub replication_factor: Option<i32>,
    /// `min.insync.replicas` of the topics the backend creates (None: two with three or more
    /// replicas, else one).
    pub min_insync_replicas: Option<i32>,
    /// Prefix of the partitions' transactional ids; every evident process writing to the
    /// cluster must use the same one, or they do not fence each other.
    pub transactional_id_prefix: String,
    /// `transaction.timeout.ms` of the writers: how long a transaction left open by a crashed
    /// process holds the partition's readers if no other process takes the partition.
    pub transaction_timeout: Duration,
    /// Bound on each wait: a Kafka call, the mirror catching up.
    pub timeout: Duration,
    /// Further librdkafka settings for every client (security, say).
    pub client_options: Vec<(String, String)>,
    /// Share the cluster's partitions with the other processes of this consumer group
    /// (None: no ownership; any process appends anywhere). Each process takes the ids of the
    /// partitions assigned to it at once and releases those it loses; route each command to
    /// its partition's owner ([`KafkaBackend::owns`]) to keep the ids still (docs/cluster.md).
    pub owner_group: Option<String>,
    /// `session.timeout.ms` of the ownership group: how long a crashed owner keeps its
    /// partitions.
    pub session_timeout: Duration,
    /// Prefix of the Kafka topics this backend uses (default none): evident's topic `orders`
    /// is Kafka's `{topic_prefix}orders`, and the mirror follows only the cluster's topics
    /// that start with it. Several applications (or test runs) share one cluster this way
    /// without seeing each other's topics. Letters, digits, `.`, `_` and `-`.
    pub topic_prefix: String,
    /// The address other processes of the ownership group reach this one at (an `evident
    /// serve` node's HTTP URL), advertised as the member's `client.id`
    /// ([`KafkaBackend::owner_address`]).
    pub node_address: Option<String>,
}

impl KafkaConfig {
    /// The defaults for a cluster at `bootstrap`, mirrored in `mirror_dir`.
    pub fn new(bootstrap: impl Into<String>, mirror_dir: impl Into<PathBuf>) -> Self {
        Self {
            bootstrap: bootstrap.into(),
            mirror_dir: mirror_dir.into(),
            replication_factor: None,
            min_insync_replicas: None,
            transactional_id_prefix: "evident".into(),
            transaction_timeout: Duration::from_secs(10),
            timeout: Duration::from_secs(30),
            client_options: Vec::new(),
            owner_group: None,
            session_timeout: Duration::from_secs(10),
            node_address: None,
            topic_prefix: String::new(),
        }
    }

    /// The Kafka topic of evident's topic `topic`.
    fn kafka_topic(&self, topic: &str) -> String {
        format!("{}{topic}", self.topic_prefix)
    }

    /// Evident's topic of the Kafka topic `name`, if it is in this backend's namespace.
    fn evident_topic<'a>(&self, name: &'a str) -> Option<&'a str> {
        name.strip_prefix(self.topic_prefix.as_str()).filter(|t| !t.is_empty())
    }

    /// A librdkafka configuration with the bootstrap servers and the extra options.
    fn client_config(&self) -> ClientConfig {
        let mut config = ClientConfig::new();
        config.set("bootstrap.servers", &self.bootstrap);
        for (k, v) in &self.client_options {
            config.set(k, v);
        }
        config
    }
}

/// The library on an Apache Kafka cluster.
#[derive(Clone)]
pub struct KafkaBackend {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaConfig,
    log: Arc<Log>,
    /// The mirror, read as the embedded backend reads its log.
    reads: EmbeddedBackend,
    follower: Follower,
    admin: AdminClient<DefaultClientContext>,
    /// Asks partitions' last stable offsets (a `read_committed` consumer's "high watermark").
    probe: BaseConsumer,
    /// Asks partitions' high watermarks (`read_uncommitted`).
    probe_written: BaseConsumer,
    writers: Arc<Writers>,
    /// Ownership by group assignment, when configured (dropped, it leaves the group).
    owner: Option<owner::Owner>,
}

impl std::fmt::Debug for KafkaBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaBackend").field("bootstrap", &self.inner.config.bootstrap).finish_non_exhaustive()
    }
}

impl KafkaBackend {
    /// Opens the mirror (created if missing) and starts following the cluster.
    pub fn open(config: KafkaConfig) -> Result<Self> {
        let valid = |c: char| c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | '-');
        if config.topic_prefix.len() > 200 || !config.topic_prefix.chars().all(valid) {
            return Err(Error::Misuse(format!(
                "topic_prefix {:?} must be at most 200 letters, digits, '.', '_' or '-'",
                config.topic_prefix
            )));
        }
        // The mirror takes whatever the cluster accepted: a record up to a topic's
        // `max.message.bytes` (1 MiB by default, raised per topic at will) must not stop it,
        // so the bound is well above the log's default (8 MiB).
        let mirror_config = LogConfig { batch_size_max: MIRROR_BATCH_MAX, ..LogConfig::default() };
        let log = Arc::new(Log::open(&config.mirror_dir, mirror_config).map_err(from_log)?);
        let follower = Follower::start(&config, log.clone())?;
        let admin: AdminClient<DefaultClientContext> = config
            .client_config()
            .create()
            .map_err(|e| Error::Unavailable(format!("cannot create the Kafka admin client: {e}")))?;
        let probe = offsets_client(&config, "read_committed")?;
        let probe_written = offsets_client(&config, "read_uncommitted")?;
        let reads = EmbeddedBackend::from_log(log.clone());
        let writers = Arc::new(Writers::default());
        let owner = match &config.owner_group {
            Some(group) => Some(owner::Owner::start(&config, group, writers.clone())?),
            None => None,
        };
        let inner = Inner { config, log, reads, follower, admin, probe, probe_written, writers, owner };
        Ok(Self { inner: Arc::new(inner) })
    }

    /// Per mirrored partition: topic, partition and the next Kafka offset the mirror expects.
    pub fn mirror_positions(&self) -> Vec<(String, u32, i64)> {
        self.inner.follower.shared().positions()
    }

    /// Partitions whose transactional id this process holds now.
    pub fn held_partitions(&self) -> Vec<(String, u32)> {
        self.inner.writers.held()
    }

    /// Whether this process owns the partition `key`'s stream lives in (always true without
    /// an ownership group). An application routes a command for `key` to the owner.
    pub async fn owns(&self, topic: &str, key: &str) -> Result<bool> {
        let (topic, key) = (topic.to_string(), key.to_string());
        blocking(&self.inner, move |i| {
            let Some(owner) = &i.owner else { return Ok(true) };
            let partition = i.partition_of(&topic, &key, i.partitions(&topic)?)?;
            Ok(owner.owned().contains(&topic, partition))
        })
        .await
    }

    /// The partitions assigned to this process by its ownership group (empty without one).
    pub fn owned_partitions(&self) -> Vec<(String, u32)> {
        self.inner.owner.as_ref().map(|o| o.owned().list()).unwrap_or_default()
    }

    /// Assignment changes seen by the ownership group's member.
    pub fn rebalances(&self) -> u64 {
        self.inner.owner.as_ref().map_or(0, |o| o.owned().rebalances.load(std::sync::atomic::Ordering::Relaxed))
    }

    /// Records the mirror left out because a plain Kafka producer repeated an event id.
    pub fn mirror_skipped(&self) -> u64 {
        self.inner.follower.shared().skipped.load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Committed records on the cluster not yet in the mirror, summed over partitions, as of
    /// the mirror's last fetch (no call to the cluster).
    pub fn mirror_lag(&self) -> u64 {
        self.inner.follower.shared().lag()
    }

    /// The mirror: an evident log holding the cluster's committed records, each with its Kafka
    /// offset in the header `evident-kafka-offset` (`evident_core::envelope::KAFKA_OFFSET`).
    /// For a server that serves reads from it; write to it never.
    pub fn mirror(&self) -> Arc<Log> {
        self.inner.log.clone()
    }

    /// As [`Backend::append`], with every event's position: Kafka offsets, versions and the
    /// mirror's commit sequences; a refusal keeps the embedded log's precise error.
    pub async fn append_outcome(
        &self,
        topic: &str,
        key: &str,
        expected: ExpectedVersion,
        events: &[EventData],
    ) -> std::result::Result<AppendOutcome, KafkaAppendError> {
        let (topic, key, events) = (topic.to_string(), key.to_string(), events.to_vec());
        let inner = self.inner.clone();
        let handle = crate::error::runtime()?;
        handle
            .spawn_blocking(move || {
                let outcome = inner.append(&topic, &key, expected, &events)?;
                Ok(inner.kafka_positions(outcome)?)
            })
            .await
            .map_err(|e| Error::Unavailable(format!("the Kafka backend's call did not complete: {e}")))?
    }

    /// Waits until the mirror holds `topic`/`key`'s partition up to its last stable offset
    /// now: a read of the mirror after it sees every append acknowledged before the call.
    /// False when the cluster has no such topic.
    pub async fn catch_up_stream(&self, topic: &str, key: &str) -> Result<bool> {
        let (topic, key) = (topic.to_string(), key.to_string());
        blocking(&self.inner, move |i| {
            let Some(partitions) = i.follower.shared().topic_partitions(&topic, i.config.timeout)? else {
                return Ok(false);
            };
            let partition = i.partition_of(&topic, &key, partitions)?;
            i.catch_up(&topic, partition, Upto::Committed)?;
            Ok(true)
        })
        .await
    }

    /// Waits until this process's mirror has read the cluster's topic list after the call: a
    /// topic another process created before it is then known here.
    pub async fn refresh_topics(&self) -> Result<()> {
        blocking(&self.inner, |i| i.follower.shared().refreshed(i.config.timeout)).await
    }

    /// Waits until the mirror knows `topic` and holds each of its partitions up to its last
    /// stable offset now; answers, per partition, the Kafka offset the mirror has reached
    /// since (its end as `read_committed` readers see it, markers included). None when the
    /// cluster has no such topic.
    pub async fn catch_up_topic(&self, topic: &str) -> Result<Option<Vec<u64>>> {
        let topic = topic.to_string();
        blocking(&self.inner, move |i| {
            let Some(partitions) = i.follower.shared().topic_partitions(&topic, i.config.timeout)? else {
                return Ok(None);
            };
            let mut ends = Vec::with_capacity(partitions as usize);
            for partition in 0..partitions {
                i.catch_up(&topic, partition, Upto::Committed)?;
                ends.push(i.mirror_end(&topic, partition));
            }
            Ok(Some(ends))
        })
        .await
    }

    /// The Kafka offset the mirror has reached in `topic`/`partition` (0 before it follows it):
    /// after [`KafkaBackend::mirror_offset_of`] or [`KafkaBackend::catch_up_topic`], the
    /// partition's end as `read_committed` readers saw it then, or later.
    pub fn mirror_end(&self, topic: &str, partition: u32) -> u64 {
        self.inner.mirror_end(topic, partition)
    }

    /// Waits until the mirror holds `topic`/`partition` up to its last stable offset now,
    /// then answers the mirror offset of the first record at or after Kafka offset `offset`
    /// (None: none yet, or no such topic).
    pub async fn mirror_offset_of(&self, topic: &str, partition: u32, offset: u64) -> Result<Option<u64>> {
        let topic = topic.to_string();
        let kafka = i64::try_from(offset).unwrap_or(i64::MAX);
        blocking(&self.inner, move |i| {
            match i.follower.shared().topic_partitions(&topic, i.config.timeout)? {
                Some(n) if partition < n => {}
                _ => return Ok(None),
            }
            i.catch_up(&topic, partition, Upto::Committed)?;
            i.mirror_offset(&topic, partition, kafka)
        })
        .await
    }

    /// Creates `topic` on the cluster unless it exists, and waits until this process's mirror
    /// follows it: true when this call created it, false when the cluster had it already
    /// (whatever its partitions: [`Backend::ensure_topic`] is this, idempotent).
    pub async fn create_topic(&self, topic: &str, spec: TopicSpec) -> Result<bool> {
        let inner = &self.inner;
        let brokers = {
            let topic = topic.to_string();
            blocking(inner, move |i| {
                let md = i
                    .probe
                    .fetch_metadata(Some(&i.config.kafka_topic(&topic)), i.config.timeout)
                    .map_err(|e| Error::Unavailable(format!("Kafka metadata: {e}")))?;
                Ok(md.brokers().len() as i32)
            })
            .await?
        };
        let rf = inner.config.replication_factor.unwrap_or(brokers.clamp(1, 3));
        let min_isr = inner.config.min_insync_replicas.unwrap_or(if rf >= 3 { 2 } else { 1 }).to_string();
        let cleanup = if spec.compacted { "compact" } else { "delete" };
        let kafka_topic = inner.config.kafka_topic(topic);
        let new = NewTopic::new(&kafka_topic, spec.partitions as i32, TopicReplication::Fixed(rf))
            .set("min.insync.replicas", &min_isr)
            .set("cleanup.policy", cleanup);
        let options = AdminOptions::new().operation_timeout(Some(inner.config.timeout));
        let results = inner
            .admin
            .create_topics([&new], &options)
            .await
            .map_err(|e| Error::Unavailable(format!("creating topic {topic}: {e}")))?;
        let mut created = true;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::TopicAlreadyExists)) => created = false,
                Err((name, RDKafkaErrorCode::InvalidTopic)) => {
                    return Err(Error::Rejected(format!("invalid topic name {name}")));
                }
                Err((name, code)) => return Err(Error::Unavailable(format!("creating topic {name}: {code}"))),
            }
        }
        // Until the mirror follows it, the topic is unknown to this process.
        let topic = topic.to_string();
        blocking(inner, move |i| {
            let deadline = std::time::Instant::now() + i.config.timeout;
            loop {
                i.follower.shared().request_refresh();
                if i.follower.shared().topic_partitions(&topic, i.config.timeout)?.is_some() {
                    return Ok(created);
                }
                if std::time::Instant::now() >= deadline {
                    return Err(Error::Unavailable(format!(
                        "topic {topic} was created but is not in the cluster's metadata"
                    )));
                }
                std::thread::sleep(Duration::from_millis(100));
            }
        })
        .await
    }

    /// The advertised address ([`KafkaConfig::node_address`]) of the process of the
    /// ownership group that owns `key`'s partition, when it is another process that
    /// advertises one (None: this process owns it, no ownership group, or not known now).
    /// Read from the group's description, cached for a second.
    pub async fn owner_address(&self, topic: &str, key: &str) -> Result<Option<String>> {
        let (topic, key) = (topic.to_string(), key.to_string());
        blocking(&self.inner, move |i| {
            let Some(owner) = &i.owner else { return Ok(None) };
            let Some(partitions) = i.follower.shared().topic_partitions(&topic, i.config.timeout)? else {
                return Ok(None);
            };
            let partition = i.partition_of(&topic, &key, partitions)?;
            if owner.owned().contains(&topic, partition) {
                return Ok(None);
            }
            Ok(owner.address_of(&i.probe, &i.config, &topic, partition, i.config.timeout))
        })
        .await
    }
}

/// A consumer that only asks partitions' ends: with `read_committed`, a partition's "high
/// watermark" is its last stable offset.
fn offsets_client(config: &KafkaConfig, isolation: &str) -> Result<BaseConsumer> {
    config
        .client_config()
        .set("group.id", format!("{}-probe", config.transactional_id_prefix))
        .set("isolation.level", isolation)
        .set("enable.auto.commit", "false")
        .create()
        .map_err(|e| Error::Unavailable(format!("cannot create the Kafka offsets client: {e}")))
}

/// Runs `f` on tokio's blocking pool (the Kafka client's calls and the mirror's block).
async fn blocking<T: Send + 'static>(
    inner: &Arc<Inner>,
    f: impl FnOnce(&Inner) -> Result<T> + Send + 'static,
) -> Result<T> {
    let handle = crate::error::runtime()?;
    let inner = inner.clone();
    handle
        .spawn_blocking(move || f(&inner))
        .await
        .map_err(|e| Error::Unavailable(format!("the Kafka backend's call did not complete: {e}")))?
}

impl Inner {
    fn mirror_end(&self, topic: &str, partition: u32) -> u64 {
        self.follower.shared().position(topic, partition).and_then(|p| u64::try_from(p).ok()).unwrap_or(0)
    }

    /// The partition `key`'s stream lives in, or will: where the mirror has it, else Kafka's
    /// default partitioner (murmur2, the Java client's).
    fn partition_of(&self, topic: &str, key: &str, partitions: u32) -> Result<u32> {
        let options = evident_log::StreamReadOptions { limit: 1, ..Default::default() };
        let read = self.log.read_stream(topic, key.as_bytes(), &options).map_err(from_log)?;
        Ok(read.partition.unwrap_or_else(|| KeyPartitioner::Murmur2.partition(key.as_bytes(), partitions)))
    }

    /// Waits until the mirror holds `topic`/`partition` up to its end now: up to the last
    /// stable offset (`Upto::Committed`: what readers may see; an open transaction does not
    /// hold the wait), or up to the high watermark (`Upto::Written`: every record written,
    /// each transaction decided first). A writer waits for the high watermark: after its
    /// commit returns, the commit's markers are still being written and the last stable offset
    /// may not include its records yet; before its check, with the partition's id held, every
    /// earlier evident transaction is decided.
    fn catch_up(&self, topic: &str, partition: u32, upto: Upto) -> Result<()> {
        let probe = match upto {
            Upto::Committed => &self.probe,
            Upto::Written => &self.probe_written,
        };
        // A topic just created may not be in this client's metadata yet (another client
        // created it, or the follower saw it first), and a partition's leader may have died
        // (its leadership moves after the broker's session timeout): each attempt is short,
        // and a failed one reads the topic's metadata again before the next, so the client
        // asks the new leader instead of waiting out the whole bound on the dead one (which
        // it did: a minute per read while a broker was down).
        let kafka_topic = self.config.kafka_topic(topic);
        let deadline = std::time::Instant::now() + self.config.timeout;
        let end = loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match probe.fetch_watermarks(&kafka_topic, partition as i32, left.min(WATERMARK_ATTEMPT)) {
                Ok((_, end)) => break end,
                Err(e) if std::time::Instant::now() < deadline => {
                    tracing::debug!(%topic, partition, error = %e, "kafka backend: the partition's end is not known yet");
                    let left = deadline.saturating_duration_since(std::time::Instant::now());
                    let _ = probe.fetch_metadata(Some(&kafka_topic), left.min(WATERMARK_ATTEMPT));
                    std::thread::sleep(Duration::from_millis(100));
                }
                Err(e) => return Err(Error::Unavailable(format!("the end of {topic}/{partition}: {e}"))),
            }
        };
        self.follower.shared().wait_for(topic, partition, end, self.config.timeout)
    }

    fn partitions(&self, topic: &str) -> Result<u32> {
        self.follower
            .shared()
            .topic_partitions(topic, self.config.timeout)?
            .ok_or_else(|| Error::UnknownTopic(topic.to_string()))
    }

    /// Appends `events` to `topic`/`key` at `expected`; the outcome's positions are the
    /// mirror's (`duplicate`: every event was there already).
    fn append(
        &self,
        topic: &str,
        key: &str,
        expected: ExpectedVersion,
        events: &[EventData],
    ) -> std::result::Result<AppendOutcome, KafkaAppendError> {
        if events.is_empty() {
            return Err(KafkaAppendError::Failed(Error::Rejected("an append needs at least one event".into())));
        }
        let partitions = self.partitions(topic)?;
        let mut last_error = None;
        for attempt in 0..APPEND_ATTEMPTS {
            if attempt > 0 {
                std::thread::sleep(Duration::from_millis(50 << attempt.min(4)));
            }
            let partition = self.partition_of(topic, key, partitions)?;
            let slot = self.writers.slot(topic, partition);
            let mut held = slot.lock().unwrap_or_else(|e| e.into_inner());
            if held.is_none() {
                match writer::acquire(&self.config, &self.config.kafka_topic(topic), partition) {
                    Ok(p) => *held = Some(p),
                    Err(e) => {
                        last_error = Some(e);
                        continue;
                    }
                }
            }
            self.catch_up(topic, partition, Upto::Written)?;
            let check =
                self.log.check_events(topic, key.as_bytes(), expected, events).map_err(KafkaAppendError::Refused)?;
            if check.partition != partition {
                // The stream appeared in another partition meanwhile (a plain Kafka producer
                // with another partitioner): append where it is.
                continue;
            }
            if check.duplicate {
                return Ok(check);
            }
            let Some(producer) = held.as_ref() else { continue };
            let kafka_topic = self.config.kafka_topic(topic);
            if let Err(e) = writer::produce(producer, &kafka_topic, partition, key, events, self.config.timeout) {
                tracing::warn!(%topic, partition, error = %e, "kafka backend: append failed; the partition's id is taken again");
                *held = None;
                last_error = Some(e);
                continue;
            }
            self.catch_up(topic, partition, Upto::Written)?;
            let mut landed = self
                .log
                .check_events(topic, key.as_bytes(), ExpectedVersion::Any, events)
                .map_err(KafkaAppendError::Refused)?;
            if !landed.duplicate {
                return Err(KafkaAppendError::Failed(Error::Unavailable(format!(
                    "the append to {topic}/{key} committed on Kafka but is not in the mirror after catching up"
                ))));
            }
            // Written now, not found as a retry's original.
            landed.duplicate = false;
            return Ok(landed);
        }
        Err(KafkaAppendError::Failed(last_error.unwrap_or_else(|| {
            Error::Unavailable(format!("the append to {topic}/{key} did not complete in {APPEND_ATTEMPTS} attempts"))
        })))
    }

    /// `outcome` (mirror positions) with each record's Kafka offset instead of its mirror
    /// offset.
    fn kafka_positions(&self, mut outcome: AppendOutcome) -> Result<AppendOutcome> {
        let topic = outcome.topic.as_str().to_string();
        for record in &mut outcome.records {
            let at = self.log.read_partition_events(&topic, outcome.partition, record.offset, 1).map_err(from_log)?;
            let kafka = at.first().and_then(follower::kafka_offset).ok_or_else(|| {
                Error::Unavailable(format!(
                    "the mirror's record {topic}/{}@{} has no Kafka offset",
                    outcome.partition, record.offset
                ))
            })?;
            record.offset = u64::try_from(kafka).unwrap_or_default();
        }
        outcome.base_offset = outcome.records.first().map_or(0, |r| r.offset);
        Ok(outcome)
    }

    /// The mirror's offset holding Kafka offset `offset` or the next one after it in
    /// `topic`/`partition` (Kafka offsets grow with the mirror's).
    fn mirror_offset(&self, topic: &str, partition: u32, offset: i64) -> Result<Option<u64>> {
        let bounds = match self.log.partition_offsets(topic, partition) {
            Ok(b) => b,
            Err(evident_log::Error::UnknownTopic(_) | evident_log::Error::UnknownPartition { .. }) => return Ok(None),
            Err(e) => return Err(from_log(e)),
        };
        let (mut lo, mut hi) = (bounds.log_start_offset, bounds.high_watermark);
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let at = self.log.read_partition_events(topic, partition, mid, 1).map_err(from_log)?;
            let kafka = at.first().and_then(follower::kafka_offset).unwrap_or(i64::MAX);
            if kafka < offset {
                lo = mid + 1;
            } else {
                hi = mid;
            }
        }
        Ok((lo < bounds.high_watermark).then_some(lo))
    }
}

/// Why an append through [`KafkaBackend::append_outcome`] failed.
#[derive(Debug)]
pub enum KafkaAppendError {
    /// The mirror refused it with the embedded log's own rules (a wrong expected version,
    /// an event id reused with other content, ...): nothing was written to Kafka.
    Refused(evident_log::Error),
    /// The cluster or the mirror failed (unavailable, unknown topic, ...).
    Failed(Error),
}

impl From<Error> for KafkaAppendError {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

impl std::fmt::Display for KafkaAppendError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Refused(e) => e.fmt(f),
            Self::Failed(e) => e.fmt(f),
        }
    }
}

/// How far [`Inner::catch_up`] waits.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Upto {
    /// The last stable offset.
    Committed,
    /// The high watermark.
    Written,
}

/// A mirrored event as the cluster holds it: its Kafka offset, without the mirror's header.
fn from_mirror(mut event: RecordedEvent) -> RecordedEvent {
    if let Some(i) = event.headers.iter().rposition(|(k, _)| k == KAFKA_OFFSET) {
        let (_, value) = event.headers.remove(i);
        if let Some(o) = value.as_deref().and_then(|v| std::str::from_utf8(v).ok()).and_then(|s| s.parse().ok()) {
            event.offset = Offset(o);
        }
    }
    event
}

#[async_trait::async_trait]
impl Backend for KafkaBackend {
    async fn ensure_topic(&self, topic: &str, spec: TopicSpec) -> Result<()> {
        self.create_topic(topic, spec).await.map(|_| ())
    }

    async fn append(
        &self,
        topic: &str,
        key: &str,
        expected: ExpectedVersion,
        events: &[EventData],
    ) -> Result<Appended> {
        let (topic, key, events) = (topic.to_string(), key.to_string(), events.to_vec());
        blocking(&self.inner, move |i| match i.append(&topic, &key, expected, &events) {
            Ok(outcome) => appended(&outcome, outcome.duplicate),
            Err(KafkaAppendError::Refused(e)) => Err(from_log(e)),
            Err(KafkaAppendError::Failed(e)) => Err(e),
        })
        .await
    }

    async fn read_stream(&self, topic: &str, key: &str, query: &StreamQuery) -> Result<StreamPage> {
        let (t, k) = (topic.to_string(), key.to_string());
        let known = blocking(&self.inner, move |i| {
            let Some(partitions) = i.follower.shared().topic_partitions(&t, i.config.timeout)? else {
                return Ok(false);
            };
            let partition = i.partition_of(&t, &k, partitions)?;
            i.catch_up(&t, partition, Upto::Committed)?;
            Ok(true)
        })
        .await?;
        if !known {
            return Ok(StreamPage::default());
        }
        let mut page = self.inner.reads.read_stream(topic, key, query).await?;
        page.events = page.events.into_iter().map(from_mirror).collect();
        Ok(page)
    }

    async fn read_all(&self, from: Sequence, limit: usize) -> Result<Vec<RecordedEvent>> {
        Ok(self.inner.reads.read_all(from, limit).await?.into_iter().map(from_mirror).collect())
    }

    async fn read_partition(
        &self,
        topic: &str,
        partition: u32,
        offset: Offset,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>> {
        let t = topic.to_string();
        let kafka = i64::try_from(offset.0).unwrap_or(i64::MAX);
        let start = blocking(&self.inner, move |i| {
            if i.follower.shared().topic_partitions(&t, i.config.timeout)?.is_none() {
                return Ok(None);
            }
            i.catch_up(&t, partition, Upto::Committed)?;
            i.mirror_offset(&t, partition, kafka)
        })
        .await?;
        let Some(start) = start else { return Ok(Vec::new()) };
        let events = self.inner.reads.read_partition(topic, partition, Offset(start), limit).await?;
        Ok(events.into_iter().map(from_mirror).collect())
    }

    async fn head_sequence(&self) -> Result<Sequence> {
        self.inner.reads.head_sequence().await
    }

    async fn wait_for_sequence(&self, sequence: Sequence, timeout: Duration) -> Result<bool> {
        self.inner.reads.wait_for_sequence(sequence, timeout).await
    }
}
