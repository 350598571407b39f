//! Consumer groups on an Apache Kafka cluster: the questions of `kafka-consumer-groups` (list,
//! describe with lag, committed offsets, commit, delete, and `--reset-offsets` with every
//! scope and strategy) asked of the cluster's own group coordinators, with the answers in
//! `evident-groups`' model, so `evident serve --storage kafka://` serves `/v1/groups` as the
//! embedded store does and a replay can reset a projection's group from Rust.
//!
//! Kafka keeps the groups; nothing is stored here. The reset planner is `evident-groups`' own
//! ([`evident_groups::plan_reset`]): the strategies mean exactly what they mean on one machine.
//! What differs, because Kafka's APIs do not tell it: a committed offset's commit time and a
//! member's session timeout and last heartbeat are `None`. As Kafka, a commit, a reset or a
//! delete needs a group without active members (Kafka refuses a member-less commit to a group
//! that has some, so a consumer joining between the check and the commit is refused too).
//!
//! With a topic prefix ([`KafkaConfig::topic_prefix`]) the answers name evident's topics and
//! cover only the cluster's topics in that namespace; the list then shows the groups that have
//! offsets or members' partitions there. Groups themselves are not namespaced: deleting one
//! deletes all its offsets, as `kafka-consumer-groups --delete` does.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;
use std::time::Duration;

use evident_core::TopicName;
use evident_groups::{
    validate_group, CommittedOffset, Error, GroupDescription, GroupState, GroupSummary, MemberDescription,
    OffsetCommit, PartitionLag, ResetRequest, ResetRow, ResetScope, ResetTarget, Result, TopicPartitions,
};
use rdkafka::admin::{AdminClient, AdminOptions};
use rdkafka::client::DefaultClientContext;
use rdkafka::consumer::{BaseConsumer, CommitMode, Consumer};
use rdkafka::error::KafkaError;
use rdkafka::groups::GroupInfo;
use rdkafka::types::RDKafkaErrorCode;
use rdkafka::{Offset, TopicPartitionList};

use super::owner::decode_assignment;
use super::KafkaConfig;

/// How long one question to the cluster may take.
const ASK_TIMEOUT: Duration = Duration::from_secs(10);

/// The consumer groups of the cluster a [`KafkaConfig`] names.
#[derive(Clone)]
pub struct KafkaGroups {
    inner: Arc<Inner>,
}

struct Inner {
    config: KafkaConfig,
    /// Metadata, group lists, watermarks and offsets by time (no group of its own).
    probe: BaseConsumer,
    admin: AdminClient<DefaultClientContext>,
}

impl std::fmt::Debug for KafkaGroups {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("KafkaGroups").field("bootstrap", &self.inner.config.bootstrap).finish_non_exhaustive()
    }
}

/// A failure of the Kafka client, as the groups' error.
fn cluster(what: &str, e: impl std::fmt::Display) -> Error {
    Error::Cluster(format!("{what}: {e}"))
}

impl KafkaGroups {
    /// The groups of `config`'s cluster (the clients connect lazily: a cluster that cannot be
    /// reached fails the first question, not this).
    pub fn new(config: &KafkaConfig) -> Result<Self> {
        let probe = config
            .client_config()
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| cluster("cannot create the Kafka client", e))?;
        let admin = config.client_config().create().map_err(|e| cluster("cannot create the Kafka admin client", e))?;
        Ok(Self { inner: Arc::new(Inner { config: config.clone(), probe, admin }) })
    }

    /// Every group (in this namespace), by name.
    pub async fn list(&self) -> Result<Vec<GroupSummary>> {
        self.blocking(|i| i.list()).await
    }

    /// A group's members and, for every partition it committed or is assigned, the committed
    /// offset, the partition's offsets and the lag. [`Error::UnknownGroup`] if Kafka does not
    /// know the group.
    pub async fn describe(&self, group: &str) -> Result<GroupDescription> {
        let group = group.to_string();
        self.blocking(move |i| i.describe(&group)).await
    }

    /// The group's committed offsets (of one topic if given), by topic and partition.
    pub async fn committed(&self, group: &str, topic: Option<&str>) -> Result<Vec<CommittedOffset>> {
        let (group, topic) = (group.to_string(), topic.map(str::to_string));
        self.blocking(move |i| i.committed(&group, topic.as_deref())).await
    }

    /// How many members the group has (0 for an empty or unknown group).
    pub async fn active_members(&self, group: &str) -> Result<usize> {
        let group = group.to_string();
        self.blocking(move |i| i.active_members(&group)).await
    }

    /// Commits offsets for a group without active members; every topic and partition must
    /// exist (nothing is committed otherwise). The rules of `evident_groups::check_commit`.
    pub async fn commit(&self, group: &str, offsets: &[OffsetCommit]) -> Result<()> {
        let (group, offsets) = (group.to_string(), offsets.to_vec());
        self.blocking(move |i| i.commit(&group, &offsets)).await
    }

    /// Deletes the group (its offsets) on the cluster; [`Error::GroupNotEmpty`] while it has
    /// members, [`Error::UnknownGroup`] if Kafka does not know it.
    pub async fn delete(&self, group: &str) -> Result<()> {
        validate_group(group)?;
        let options = AdminOptions::new().request_timeout(Some(ASK_TIMEOUT));
        let results = self
            .inner
            .admin
            .delete_groups(&[group], &options)
            .await
            .map_err(|e| cluster(&format!("deleting group {group}"), e))?;
        for result in results {
            match result {
                Ok(_) => {}
                Err((_, RDKafkaErrorCode::GroupIdNotFound)) => return Err(Error::UnknownGroup(group.to_string())),
                Err((_, RDKafkaErrorCode::NonEmptyGroup)) => {
                    let members = self.active_members(group).await.unwrap_or(1).max(1);
                    return Err(Error::GroupNotEmpty { group: group.to_string(), members });
                }
                Err((_, code)) => return Err(cluster(&format!("deleting group {group}"), code)),
            }
        }
        Ok(())
    }

    /// The plan of `kafka-consumer-groups --reset-offsets` without `--execute`: nothing is
    /// changed (shown even while the group is active, as on one machine).
    pub async fn plan_reset(&self, group: &str, request: &ResetRequest) -> Result<Vec<ResetRow>> {
        let (group, request) = (group.to_string(), request.clone());
        self.blocking(move |i| i.plan_reset(&group, &request)).await
    }

    /// Plans the reset and commits it; refused with [`Error::GroupNotEmpty`] while the group has
    /// active members. A group Kafka does not know yet is created by the commit, as Kafka does.
    pub async fn execute_reset(&self, group: &str, request: &ResetRequest) -> Result<Vec<ResetRow>> {
        let (group, request) = (group.to_string(), request.clone());
        self.blocking(move |i| {
            let members = i.active_members(&group)?;
            if members > 0 {
                return Err(Error::GroupNotEmpty { group: group.clone(), members });
            }
            let rows = i.plan_reset(&group, &request)?;
            let offsets: Vec<OffsetCommit> = rows
                .iter()
                .map(|r| OffsetCommit {
                    topic: r.topic.as_str().to_string(),
                    partition: r.partition,
                    offset: r.new_offset,
                    metadata: None,
                    leader_epoch: None,
                })
                .collect();
            i.commit_checked(&group, &offsets)?;
            Ok(rows)
        })
        .await
    }

    /// Runs `f` on tokio's blocking pool (the Kafka client's calls block).
    async fn blocking<T: Send + 'static>(&self, f: impl FnOnce(&Inner) -> Result<T> + Send + 'static) -> Result<T> {
        let handle = crate::error::runtime().map_err(|e| Error::Cluster(e.to_string()))?;
        let inner = self.inner.clone();
        handle
            .spawn_blocking(move || f(&inner))
            .await
            .map_err(|e| Error::Cluster(format!("the call to the cluster did not complete: {e}")))?
    }
}

/// A group as Kafka describes it: its state and members (None: Kafka does not know it).
struct Described {
    state: GroupState,
    members: Vec<MemberDescription>,
}

impl Inner {
    /// Evident's topic of a Kafka topic, if it is in this namespace and not one of Kafka's
    /// internal topics.
    fn evident_topic(&self, kafka_topic: &str) -> Option<TopicName> {
        if kafka_topic.starts_with("__") {
            return None;
        }
        self.config.evident_topic(kafka_topic).and_then(|t| TopicName::new(t).ok())
    }

    /// Kafka's description of the group, None when Kafka does not know it (`Dead`).
    fn described(&self, group: &str) -> Result<Option<Described>> {
        let list = self
            .probe
            .fetch_group_list(Some(group), ASK_TIMEOUT)
            .map_err(|e| cluster(&format!("describing group {group}"), e))?;
        Ok(list.groups().iter().find(|g| g.name() == group).and_then(|g| self.describe_info(g)))
    }

    fn describe_info(&self, info: &GroupInfo) -> Option<Described> {
        // Kafka's classic group states; a state this version does not know (a newer protocol's)
        // is reported by whether the group has members.
        let state = match info.state() {
            "Dead" | "" => return None,
            "Empty" => GroupState::Empty,
            "PreparingRebalance" => GroupState::PreparingRebalance,
            "CompletingRebalance" | "AwaitingSync" => GroupState::CompletingRebalance,
            "Stable" => GroupState::Stable,
            _ if info.members().is_empty() => GroupState::Empty,
            _ => GroupState::Stable,
        };
        let members = info
            .members()
            .iter()
            .map(|m| {
                let mut assignment: BTreeMap<TopicName, Vec<u32>> = BTreeMap::new();
                for (topic, partition) in m.assignment().map(decode_assignment).unwrap_or_default() {
                    if let Some(topic) = self.evident_topic(&topic) {
                        assignment.entry(topic).or_default().push(partition);
                    }
                }
                MemberDescription {
                    member_id: m.id().to_string(),
                    client_id: m.client_id().to_string(),
                    client_host: m.client_host().to_string(),
                    session_timeout_ms: None,
                    last_heartbeat_ms: None,
                    assignment: assignment
                        .into_iter()
                        .map(|(topic, partitions)| TopicPartitions { topic, partitions })
                        .collect(),
                }
            })
            .collect();
        Some(Described { state, members })
    }

    fn active_members(&self, group: &str) -> Result<usize> {
        validate_group(group)?;
        Ok(self.described(group)?.map_or(0, |d| d.members.len()))
    }

    /// Every partition of the namespace's topics (or of `only`), by evident's topic name.
    fn partitions(&self, only: Option<&str>) -> Result<Vec<(TopicName, u32)>> {
        let kafka_topic = only.map(|t| self.config.kafka_topic(t));
        let md = self
            .probe
            .fetch_metadata(kafka_topic.as_deref(), ASK_TIMEOUT)
            .map_err(|e| cluster("reading the cluster's metadata", e))?;
        let mut out = Vec::new();
        for topic in md.topics() {
            // Asking for one topic that does not exist answers it with an error and no partition.
            if topic.error().is_some() {
                continue;
            }
            if let Some(name) = self.evident_topic(topic.name()) {
                out.extend(topic.partitions().iter().map(|p| (name.clone(), p.id() as u32)));
            }
        }
        Ok(out)
    }

    /// A client in `group` (not joining it): what commits and fetches its offsets.
    fn member_less(&self, group: &str) -> Result<BaseConsumer> {
        self.config
            .client_config()
            .set("group.id", group)
            .set("enable.auto.commit", "false")
            .create()
            .map_err(|e| cluster("cannot create the Kafka client", e))
    }

    fn committed(&self, group: &str, topic: Option<&str>) -> Result<Vec<CommittedOffset>> {
        validate_group(group)?;
        let partitions = self.partitions(topic)?;
        if partitions.is_empty() {
            return Ok(Vec::new());
        }
        let mut tpl = TopicPartitionList::new();
        for (t, p) in &partitions {
            tpl.add_partition(&self.config.kafka_topic(t.as_str()), *p as i32);
        }
        let fetched = self
            .member_less(group)?
            .committed_offsets(tpl, ASK_TIMEOUT)
            .map_err(|e| cluster(&format!("fetching the offsets of group {group}"), e))?;
        let mut out = Vec::new();
        for e in fetched.elements() {
            let (Offset::Offset(offset), Some(topic)) = (e.offset(), self.evident_topic(e.topic())) else {
                continue;
            };
            let Ok(offset) = u64::try_from(offset) else { continue };
            let metadata = Some(e.metadata()).filter(|m| !m.is_empty()).map(str::to_string);
            out.push(CommittedOffset {
                topic,
                partition: e.partition() as u32,
                offset,
                metadata,
                leader_epoch: None,
                commit_time_ms: None,
            });
        }
        out.sort_by(|a, b| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok(out)
    }

    fn list(&self) -> Result<Vec<GroupSummary>> {
        let list = self.probe.fetch_group_list(None, ASK_TIMEOUT).map_err(|e| cluster("listing the groups", e))?;
        let mut out = Vec::new();
        for info in list.groups() {
            let Some(described) = self.describe_info(info) else { continue };
            let committed = self.committed(info.name(), None)?.len();
            let assigned = described.members.iter().any(|m| !m.assignment.is_empty());
            // With a namespace, only the groups that touch it (without one, every group).
            if !self.config.topic_prefix.is_empty() && committed == 0 && !assigned {
                continue;
            }
            out.push(GroupSummary {
                group: info.name().to_string(),
                state: described.state,
                members: described.members.len(),
                committed_partitions: committed,
            });
        }
        out.sort_by(|a, b| a.group.cmp(&b.group));
        Ok(out)
    }

    /// The partition's first offset and high watermark.
    fn watermarks(&self, topic: &TopicName, partition: u32) -> Result<(u64, u64)> {
        let (low, high) = self
            .probe
            .fetch_watermarks(&self.config.kafka_topic(topic.as_str()), partition as i32, ASK_TIMEOUT)
            .map_err(|e| cluster(&format!("reading the offsets of {topic}/{partition}"), e))?;
        Ok((u64::try_from(low).unwrap_or(0), u64::try_from(high).unwrap_or(0)))
    }

    fn describe(&self, group: &str) -> Result<GroupDescription> {
        validate_group(group)?;
        let Some(described) = self.described(group)? else {
            return Err(Error::UnknownGroup(group.to_string()));
        };
        let mut rows: BTreeMap<(TopicName, u32), PartitionLag> = BTreeMap::new();
        for c in self.committed(group, None)? {
            let row = rows
                .entry((c.topic.clone(), c.partition))
                .or_insert_with(|| PartitionLag::blank(&c.topic, c.partition));
            row.committed_offset = Some(c.offset);
            row.metadata = c.metadata;
        }
        for member in &described.members {
            for assigned in &member.assignment {
                for &partition in &assigned.partitions {
                    let row = rows
                        .entry((assigned.topic.clone(), partition))
                        .or_insert_with(|| PartitionLag::blank(&assigned.topic, partition));
                    row.member_id = Some(member.member_id.clone());
                }
            }
        }
        let mut total_lag = 0u64;
        for row in rows.values_mut() {
            let (start, end) = self.watermarks(&row.topic, row.partition)?;
            row.log_start_offset = Some(start);
            row.log_end_offset = Some(end);
            row.lag = row.committed_offset.map(|c| end.saturating_sub(c));
            total_lag = total_lag.saturating_add(row.lag.unwrap_or(0));
        }
        Ok(GroupDescription {
            group: group.to_string(),
            state: described.state,
            members: described.members,
            offsets: rows.into_values().collect(),
            total_lag,
        })
    }

    fn commit(&self, group: &str, offsets: &[OffsetCommit]) -> Result<()> {
        validate_group(group)?;
        let members = self.active_members(group)?;
        if members > 0 {
            return Err(Error::GroupNotEmpty { group: group.to_string(), members });
        }
        self.commit_checked(group, offsets)
    }

    /// Commits `offsets` after checking them and that each partition exists (a group's
    /// members were checked by the caller; Kafka refuses a member-less commit to a group that
    /// has some).
    fn commit_checked(&self, group: &str, offsets: &[OffsetCommit]) -> Result<()> {
        evident_groups::check_commit(offsets)?;
        if offsets.is_empty() {
            return Ok(());
        }
        let mut counts: BTreeMap<&str, u32> = BTreeMap::new();
        for c in offsets {
            let partitions = match counts.get(c.topic.as_str()) {
                Some(n) => *n,
                None => {
                    let n = self.partitions(Some(&c.topic))?.len() as u32;
                    if n == 0 {
                        return Err(evident_log::Error::UnknownTopic(c.topic.clone()).into());
                    }
                    counts.insert(&c.topic, n);
                    n
                }
            };
            if c.partition >= partitions {
                return Err(evident_log::Error::UnknownPartition {
                    topic: TopicName::new(&c.topic).map_err(|e| Error::InvalidCommit(e.to_string()))?,
                    partition: evident_core::PartitionId(c.partition),
                    partitions,
                }
                .into());
            }
        }
        // The later entry for a partition wins, as on one machine.
        let latest: BTreeMap<(String, i32), &OffsetCommit> =
            offsets.iter().map(|c| ((self.config.kafka_topic(&c.topic), c.partition as i32), c)).collect();
        let mut tpl = TopicPartitionList::new();
        for ((kafka_topic, partition), c) in latest {
            let mut element = tpl.add_partition(&kafka_topic, partition);
            // check_commit bounded the offset to i64::MAX.
            element.set_offset(Offset::Offset(c.offset as i64)).map_err(|e| cluster("building the commit", e))?;
            if let Some(metadata) = &c.metadata {
                element.set_metadata(metadata.clone());
            }
        }
        match self.member_less(group)?.commit(&tpl, CommitMode::Sync) {
            Ok(()) => Ok(()),
            // A member joined after the check: Kafka refused the member-less commit.
            Err(KafkaError::ConsumerCommit(
                RDKafkaErrorCode::UnknownMemberId
                | RDKafkaErrorCode::IllegalGeneration
                | RDKafkaErrorCode::RebalanceInProgress,
            )) => Err(Error::GroupNotEmpty { group: group.to_string(), members: self.active_members(group)?.max(1) }),
            Err(e) => Err(cluster(&format!("committing offsets of group {group}"), e)),
        }
    }

    fn plan_reset(&self, group: &str, request: &ResetRequest) -> Result<Vec<ResetRow>> {
        validate_group(group)?;
        let committed: BTreeMap<(TopicName, u32), u64> =
            self.committed(group, None)?.into_iter().map(|c| ((c.topic, c.partition), c.offset)).collect();
        let mut partitions: BTreeSet<(TopicName, u32)> = BTreeSet::new();
        match &request.scope {
            ResetScope::AllTopics => partitions.extend(committed.keys().cloned()),
            ResetScope::Topics(topics) => {
                if topics.is_empty() {
                    return Err(Error::InvalidReset("no topic given; name at least one, or all topics".into()));
                }
                for scope in topics {
                    let all = self.partitions(Some(&scope.topic))?;
                    let Some((name, _)) = all.first().cloned() else {
                        return Err(evident_log::Error::UnknownTopic(scope.topic.clone()).into());
                    };
                    match &scope.partitions {
                        None => partitions.extend(all),
                        Some(list) if list.is_empty() => {
                            return Err(Error::InvalidReset(format!("no partition given for topic {name}")));
                        }
                        Some(list) => {
                            for &partition in list {
                                if partition as usize >= all.len() {
                                    return Err(evident_log::Error::UnknownPartition {
                                        topic: name,
                                        partition: evident_core::PartitionId(partition),
                                        partitions: all.len() as u32,
                                    }
                                    .into());
                                }
                                partitions.insert((name.clone(), partition));
                            }
                        }
                    }
                }
            }
        }
        let mut targets = Vec::with_capacity(partitions.len());
        for (topic, partition) in partitions {
            let (log_start, log_end) = self.watermarks(&topic, partition)?;
            let committed = committed.get(&(topic.clone(), partition)).copied();
            targets.push(ResetTarget { topic, partition, committed, log_start, log_end });
        }
        let now_ms = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX));
        evident_groups::plan_reset(request.strategy, &targets, now_ms, |topic, partition, ms| {
            let mut tpl = TopicPartitionList::new();
            let kafka_topic = self.config.kafka_topic(topic.as_str());
            tpl.add_partition_offset(&kafka_topic, partition as i32, Offset::Offset(ms))
                .map_err(|e| cluster("building the time lookup", e))?;
            let found = self
                .probe
                .offsets_for_times(tpl, ASK_TIMEOUT)
                .map_err(|e| cluster(&format!("finding the offset of {topic}/{partition} at {ms} ms"), e))?;
            Ok(found.elements().first().and_then(|e| match e.offset() {
                Offset::Offset(o) => u64::try_from(o).ok(),
                _ => None,
            }))
        })
    }
}
