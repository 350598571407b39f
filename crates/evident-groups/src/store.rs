//! [`GroupStore`]: committed offsets written to and replayed from `__consumer_offsets`, the
//! in-memory view of every group, membership, and the operations of `kafka-consumer-groups`.
//!
//! Writes never hold the store's lock while the log appends, so commits of many groups share
//! the log's group-commit sync. Two writes to the same key may therefore return in either
//! order; each record is applied to memory only if it is newer, by its offset in
//! `__consumer_offsets`, than what memory holds for that key. Offsets within one partition are
//! assigned in commit-sequence order, so this is the order replay applies records in, and
//! memory always equals what a replay of the log would build.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use evident_core::{BatchBuilder, TopicName};
use evident_log::clock::Clock;
use evident_log::{CleanupPolicy, Log, ScanError, TopicConfig};

use crate::error::{Error, Result};
use crate::group::{
    validate_group, CommittedOffset, Group, GroupDescription, GroupSummary, OffsetCommit, PartitionLag, Slot,
};
use crate::members::{self, Member, MemberInfo, MEMBERS_PER_GROUP_MAX};
use crate::record::{DecodeError, OffsetKey, OffsetValue};
use crate::reset::{self, ResetRequest, ResetRow, ResetScope, ResetTarget};
use crate::OFFSETS_TOPIC;

/// Most offsets in one commit; bounds what one HTTP or Kafka request can make the store do.
pub const OFFSETS_PER_COMMIT_MAX: usize = 10_000;
/// Longest commit metadata, in bytes (Kafka's `offset.metadata.max.bytes` default).
pub const METADATA_LEN_MAX: usize = 4_096;

/// One record to write: a committed offset, or a tombstone (None) that deletes it.
type Write = (OffsetKey, Option<OffsetValue>);

#[derive(Debug, Default)]
struct State {
    groups: BTreeMap<String, Group>,
    /// Writes appended to the log but not yet applied to memory. While none is, no record
    /// older than what memory holds can arrive, so tombstones can be forgotten.
    writes_in_flight: usize,
}

impl State {
    /// Applies one record if it is newer than what memory holds for its key.
    fn apply(&mut self, order: u64, key: OffsetKey, value: Option<OffsetValue>) {
        let group = self.groups.entry(key.group).or_default();
        match group.offsets.entry((key.topic, key.partition)) {
            std::collections::btree_map::Entry::Vacant(e) => {
                e.insert(Slot { order, value });
            }
            std::collections::btree_map::Entry::Occupied(mut e) => {
                if order > e.get().order {
                    e.insert(Slot { order, value });
                }
            }
        }
    }

    /// Drops tombstones and the groups left with nothing; only safe with no write in flight.
    fn prune(&mut self) {
        assert_eq!(self.writes_in_flight, 0, "pruning tombstones while a write is in flight");
        self.groups.retain(|_, g| {
            g.offsets.retain(|_, slot| slot.value.is_some());
            !g.offsets.is_empty() || !g.members.is_empty()
        });
    }

    /// Drops the group from memory if nothing at all (not even a tombstone) is left of it.
    fn forget_if_empty(&mut self, group: &str) {
        if self.groups.get(group).is_some_and(|g| g.offsets.is_empty() && g.members.is_empty()) {
            self.groups.remove(group);
        }
    }

    /// Expires the group's timed-out members and returns the group, if it exists.
    fn live_group(&mut self, group: &str, now_ms: i64) -> Option<&Group> {
        if let Some(g) = self.groups.get_mut(group) {
            members::expire(&mut g.members, now_ms);
        }
        self.forget_if_empty(group);
        self.groups.get(group).filter(|g| g.exists())
    }

    /// Number of active members, after expiring the timed-out ones.
    fn active_members(&mut self, group: &str, now_ms: i64) -> usize {
        self.live_group(group, now_ms).map_or(0, |g| g.members.len())
    }
}

/// Consumer groups: committed offsets kept durably in `__consumer_offsets`, and members.
/// Open one per [`Log`]: the store assumes it is the only writer of that topic.
pub struct GroupStore {
    log: Arc<Log>,
    clock: Arc<dyn Clock>,
    state: Mutex<State>,
}

impl std::fmt::Debug for GroupStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupStore").field("log", &self.log).finish_non_exhaustive()
    }
}

impl GroupStore {
    /// Creates `__consumer_offsets` if absent (one partition, compacted) and replays it to
    /// rebuild every group's committed offsets. Fails on a record it cannot read rather than
    /// forget offsets.
    pub fn open(log: Arc<Log>, clock: Arc<dyn Clock>) -> Result<Self> {
        let config = TopicConfig {
            partitions: 1,
            cleanup_policy: CleanupPolicy::Compact,
            // Irrelevant with one partition; off so the guard's bookkeeping never matters here.
            key_partition_guard: false,
            ..TopicConfig::default()
        };
        match log.create_topic(OFFSETS_TOPIC, config) {
            Ok(_) | Err(evident_log::Error::TopicExists(_)) => {}
            Err(e) => return Err(e.into()),
        }
        let state = replay(&log)?;
        Ok(Self { log, clock, state: Mutex::new(state) })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        // A panic under the lock is a bug caught by an assertion; the state it left is still
        // the log's replay, so keep serving rather than cascade panics.
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Commits offsets atomically: one record batch, one append, durable (synced) before this
    /// returns. Every topic and partition must exist; if one does not, nothing is written.
    /// When the same partition appears twice, the later entry wins.
    pub fn commit(&self, group: &str, offsets: &[OffsetCommit]) -> Result<()> {
        validate_group(group)?;
        check_commit(offsets)?;
        let now = self.clock.now_ms();
        let mut partitions_of: HashMap<&str, (TopicName, u32)> = HashMap::new();
        let mut writes = Vec::with_capacity(offsets.len());
        for commit in offsets {
            let (topic, partitions) = match partitions_of.get(commit.topic.as_str()) {
                Some(known) => known.clone(),
                None => {
                    let description = self.log.describe_topic(&commit.topic)?;
                    let known = (description.meta.name, description.meta.config.partitions);
                    partitions_of.insert(&commit.topic, known.clone());
                    known
                }
            };
            if commit.partition >= partitions {
                return Err(evident_log::Error::UnknownPartition {
                    topic,
                    partition: evident_core::PartitionId(commit.partition),
                    partitions,
                }
                .into());
            }
            let key = OffsetKey { group: group.to_string(), topic, partition: commit.partition };
            let value = OffsetValue {
                offset: commit.offset,
                metadata: commit.metadata.clone(),
                commit_time_ms: now,
                leader_epoch: commit.leader_epoch,
            };
            writes.push((key, Some(value)));
        }
        self.write(writes, now)
    }

    /// Appends `writes` as one batch and applies them to memory by log order.
    fn write(&self, writes: Vec<Write>, now_ms: i64) -> Result<()> {
        if writes.is_empty() {
            return Ok(());
        }
        let mut builder = BatchBuilder::new();
        for (key, value) in &writes {
            let value = value.as_ref().map(OffsetValue::encode);
            builder.push_parts(Some(&key.encode()), value.as_deref(), &[], now_ms);
        }
        let batch = builder.build();
        self.lock().writes_in_flight += 1;
        let appended = self.log.append_batch(OFFSETS_TOPIC, 0, &batch, None);
        let mut st = self.lock();
        st.writes_in_flight -= 1;
        let result = appended.map_err(Error::from).map(|outcome| {
            assert!(!outcome.duplicate, "a batch without ids or producer was taken for a retry");
            assert_eq!(outcome.records.len(), writes.len(), "the log reported another number of records");
            for (position, (key, value)) in outcome.records.iter().zip(writes) {
                st.apply(position.offset, key, value);
            }
        });
        if st.writes_in_flight == 0 {
            st.prune();
        }
        result
    }

    /// Committed offsets of a group (of one topic if given), by topic and partition. A group
    /// without any has none: as Kafka's OffsetFetch, this is not an error.
    pub fn committed(&self, group: &str, topic: Option<&str>) -> Result<Vec<CommittedOffset>> {
        validate_group(group)?;
        let st = self.lock();
        let Some(g) = st.groups.get(group) else {
            return Ok(Vec::new());
        };
        Ok(g.committed()
            .filter(|((t, _), _)| topic.is_none_or(|want| t.as_str() == want))
            .map(|((topic, partition), value)| CommittedOffset {
                topic: topic.clone(),
                partition: *partition,
                offset: value.offset,
                metadata: value.metadata.clone(),
                leader_epoch: value.leader_epoch,
                commit_time_ms: Some(value.commit_time_ms),
            })
            .collect())
    }

    /// Every group with committed offsets or active members, by name.
    pub fn list(&self) -> Vec<GroupSummary> {
        let now = self.clock.now_ms();
        let mut st = self.lock();
        for g in st.groups.values_mut() {
            members::expire(&mut g.members, now);
        }
        st.groups.iter().filter(|(_, g)| g.exists()).map(|(name, g)| g.summary(name)).collect()
    }

    /// A group's members and, for every partition it committed or is assigned, the committed
    /// offset, the partition's offsets and the lag. [`Error::UnknownGroup`] if the group has
    /// neither offsets nor members.
    pub fn describe(&self, group: &str) -> Result<GroupDescription> {
        validate_group(group)?;
        let now = self.clock.now_ms();
        let g = {
            let mut st = self.lock();
            st.live_group(group, now).cloned().ok_or_else(|| Error::UnknownGroup(group.to_string()))?
        };
        // Rows are gathered first and the log asked afterwards, outside the store's lock.
        let mut rows: BTreeMap<(TopicName, u32), PartitionLag> = BTreeMap::new();
        for ((topic, partition), value) in g.committed() {
            let row = rows.entry((topic.clone(), *partition)).or_insert_with(|| PartitionLag::blank(topic, *partition));
            row.committed_offset = Some(value.offset);
            row.metadata.clone_from(&value.metadata);
            row.commit_time_ms = Some(value.commit_time_ms);
        }
        for member in g.members.values() {
            for assigned in &member.info.assignment {
                for &partition in &assigned.partitions {
                    let row = rows
                        .entry((assigned.topic.clone(), partition))
                        .or_insert_with(|| PartitionLag::blank(&assigned.topic, partition));
                    row.member_id = Some(member.info.member_id.clone());
                }
            }
        }
        let mut total_lag = 0u64;
        for row in rows.values_mut() {
            match self.log.partition_offsets(row.topic.as_str(), row.partition) {
                Ok(offsets) => {
                    row.log_start_offset = Some(offsets.log_start_offset);
                    row.log_end_offset = Some(offsets.high_watermark);
                    row.lag = row.committed_offset.map(|c| offsets.high_watermark.saturating_sub(c));
                    total_lag = total_lag.saturating_add(row.lag.unwrap_or(0));
                }
                // A deleted topic or partition leaves its offsets behind, as in Kafka.
                Err(evident_log::Error::UnknownTopic(_) | evident_log::Error::UnknownPartition { .. }) => {}
                Err(e) => return Err(e.into()),
            }
        }
        Ok(GroupDescription {
            group: group.to_string(),
            state: g.state(),
            members: g.members.values().map(Member::describe).collect(),
            offsets: rows.into_values().collect(),
            total_lag,
        })
    }

    /// Deletes the group's committed offsets (one batch of tombstones). Refused with
    /// [`Error::GroupNotEmpty`] while the group has active members; [`Error::UnknownGroup`] if
    /// it does not exist.
    pub fn delete(&self, group: &str) -> Result<()> {
        validate_group(group)?;
        let now = self.clock.now_ms();
        let writes: Vec<Write> = {
            let mut st = self.lock();
            let g = st.live_group(group, now).ok_or_else(|| Error::UnknownGroup(group.to_string()))?;
            if !g.members.is_empty() {
                return Err(Error::GroupNotEmpty { group: group.to_string(), members: g.members.len() });
            }
            g.committed()
                .map(|((topic, partition), _)| {
                    (OffsetKey { group: group.to_string(), topic: topic.clone(), partition: *partition }, None)
                })
                .collect()
        };
        self.write(writes, now)
    }

    /// Deletes the group's committed offsets of the given partitions (one batch of tombstones;
    /// Kafka's OffsetDelete, `kafka-consumer-groups --delete-offsets`). A partition without a
    /// committed offset is nothing to delete, and not an error (as in Kafka). Refused with
    /// [`Error::GroupNotEmpty`] while the group has active members (Kafka refuses only the
    /// topics the members subscribe to; the store does not know subscriptions, so it keeps
    /// every offset of an active group); [`Error::UnknownGroup`] if it does not exist.
    pub fn delete_offsets(&self, group: &str, partitions: &[(String, u32)]) -> Result<()> {
        validate_group(group)?;
        let now = self.clock.now_ms();
        let writes: Vec<Write> = {
            let mut st = self.lock();
            let g = st.live_group(group, now).ok_or_else(|| Error::UnknownGroup(group.to_string()))?;
            if !g.members.is_empty() {
                return Err(Error::GroupNotEmpty { group: group.to_string(), members: g.members.len() });
            }
            g.committed()
                .filter(|((topic, partition), _)| {
                    partitions.iter().any(|(t, p)| t.as_str() == topic.as_str() && p == partition)
                })
                .map(|((topic, partition), _)| {
                    (OffsetKey { group: group.to_string(), topic: topic.clone(), partition: *partition }, None)
                })
                .collect()
        };
        self.write(writes, now)
    }

    /// The plan of `kafka-consumer-groups --reset-offsets` without `--execute`: the rows, and
    /// nothing written. Unlike Kafka, a plan is shown even while the group is active.
    pub fn plan_reset(&self, group: &str, request: &ResetRequest) -> Result<Vec<ResetRow>> {
        validate_group(group)?;
        let targets = self.targets(group, &request.scope)?;
        let now = self.clock.now_ms();
        reset::plan(request.strategy, &targets, now, |topic, partition, ms| {
            Ok(self.log.offset_for_timestamp(topic.as_str(), partition, ms)?)
        })
    }

    /// Plans the reset and commits it (one batch). Refused with [`Error::GroupNotEmpty`] while
    /// the group has active members, because they would overwrite it with their next commit.
    /// A group that does not exist yet is created, as Kafka does, so offsets can be set before
    /// its consumers first start.
    pub fn execute_reset(&self, group: &str, request: &ResetRequest) -> Result<Vec<ResetRow>> {
        validate_group(group)?;
        let now = self.clock.now_ms();
        let members = self.lock().active_members(group, now);
        if members > 0 {
            return Err(Error::GroupNotEmpty { group: group.to_string(), members });
        }
        let rows = self.plan_reset(group, request)?;
        let writes = rows
            .iter()
            .map(|row| {
                let key = OffsetKey { group: group.to_string(), topic: row.topic.clone(), partition: row.partition };
                (
                    key,
                    Some(OffsetValue {
                        offset: row.new_offset,
                        metadata: None,
                        commit_time_ms: now,
                        leader_epoch: None,
                    }),
                )
            })
            .collect();
        self.write(writes, now)?;
        Ok(rows)
    }

    /// The partitions a reset scope covers, with their committed and log offsets, by topic
    /// and partition.
    fn targets(&self, group: &str, scope: &ResetScope) -> Result<Vec<ResetTarget>> {
        let committed: BTreeMap<(TopicName, u32), u64> = self
            .lock()
            .groups
            .get(group)
            .map(|g| g.committed().map(|(k, v)| (k.clone(), v.offset)).collect())
            .unwrap_or_default();
        let mut partitions: BTreeSet<(TopicName, u32)> = BTreeSet::new();
        match scope {
            ResetScope::AllTopics => partitions.extend(committed.keys().cloned()),
            ResetScope::Topics(topics) => {
                if topics.is_empty() {
                    return Err(Error::InvalidReset("no topic given; name at least one, or all topics".into()));
                }
                for scope in topics {
                    let description = self.log.describe_topic(&scope.topic)?;
                    let name = description.meta.name;
                    match &scope.partitions {
                        None => partitions.extend(description.partitions.iter().map(|p| (name.clone(), p.partition))),
                        Some(list) if list.is_empty() => {
                            return Err(Error::InvalidReset(format!("no partition given for topic {name}")));
                        }
                        Some(list) => {
                            for &partition in list {
                                if partition >= description.meta.config.partitions {
                                    return Err(evident_log::Error::UnknownPartition {
                                        topic: name,
                                        partition: evident_core::PartitionId(partition),
                                        partitions: description.meta.config.partitions,
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
            let offsets = match self.log.partition_offsets(topic.as_str(), partition) {
                Ok(offsets) => offsets,
                // Only reachable for all-topics: offsets of a topic deleted since are skipped,
                // as Kafka skips partitions it cannot find.
                Err(evident_log::Error::UnknownTopic(_) | evident_log::Error::UnknownPartition { .. })
                    if matches!(scope, ResetScope::AllTopics) =>
                {
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            let committed = committed.get(&(topic.clone(), partition)).copied();
            targets.push(ResetTarget {
                topic,
                partition,
                committed,
                log_start: offsets.log_start_offset,
                log_end: offsets.high_watermark,
            });
        }
        Ok(targets)
    }

    /// Registers a member, or refreshes one that joins again (its info is replaced); its
    /// heartbeat is now.
    pub fn join_member(&self, group: &str, member: MemberInfo) -> Result<()> {
        validate_group(group)?;
        members::validate(&member)?;
        let now = self.clock.now_ms();
        let mut st = self.lock();
        let g = st.groups.entry(group.to_string()).or_default();
        members::expire(&mut g.members, now);
        if !g.members.contains_key(&member.member_id) && g.members.len() >= MEMBERS_PER_GROUP_MAX {
            let err = Error::GroupFull { group: group.to_string(), max: MEMBERS_PER_GROUP_MAX };
            st.forget_if_empty(group);
            return Err(err);
        }
        g.members.insert(member.member_id.clone(), Member { info: member, last_heartbeat_ms: now });
        Ok(())
    }

    /// Records a heartbeat. [`Error::UnknownMember`] if the member is not in the group
    /// (never joined, left, or expired: the client must rejoin, as in Kafka).
    pub fn heartbeat(&self, group: &str, member_id: &str) -> Result<()> {
        validate_group(group)?;
        let now = self.clock.now_ms();
        let mut st = self.lock();
        st.live_group(group, now);
        let member = st.groups.get_mut(group).and_then(|g| g.members.get_mut(member_id));
        let Some(member) = member else {
            return Err(Error::UnknownMember { group: group.to_string(), member_id: member_id.to_string() });
        };
        member.last_heartbeat_ms = now;
        Ok(())
    }

    /// Removes a member (Kafka's LeaveGroup). [`Error::UnknownMember`] if it is not in the
    /// group.
    pub fn leave_member(&self, group: &str, member_id: &str) -> Result<()> {
        validate_group(group)?;
        let now = self.clock.now_ms();
        let mut st = self.lock();
        st.live_group(group, now);
        let removed = st.groups.get_mut(group).and_then(|g| g.members.remove(member_id));
        st.forget_if_empty(group);
        match removed {
            Some(_) => Ok(()),
            None => Err(Error::UnknownMember { group: group.to_string(), member_id: member_id.to_string() }),
        }
    }

    /// Whether the group has active members, after expiring those whose session timed out.
    pub fn has_active_members(&self, group: &str) -> bool {
        let now = self.clock.now_ms();
        self.lock().active_members(group, now) > 0
    }
}

/// Rebuilds the state from `__consumer_offsets`, from offset 0 to the high watermark.
fn replay(log: &Log) -> Result<State> {
    let mut st = State::default();
    log.scan_partition(OFFSETS_TOPIC, 0, |offset, key, value| {
        let (key, value) = decode(offset, key, value)?;
        st.apply(offset, key, value);
        Ok(())
    })
    .map_err(|e| match e {
        ScanError::Log(e) => e.into(),
        ScanError::Damaged { offset, what } => Error::Corrupted { offset, what },
        ScanError::Visitor(e) => e,
    })?;
    st.prune();
    Ok(st)
}

fn decode(offset: u64, key: Option<&[u8]>, value: Option<&[u8]>) -> Result<Write> {
    let failed = |e: DecodeError| match e {
        DecodeError::Corrupted(what) => Error::Corrupted { offset, what },
        DecodeError::Unsupported(what) => Error::UnsupportedFormat { offset, what },
    };
    let key = key.ok_or_else(|| Error::Corrupted { offset, what: "record has no key".into() })?;
    let key = OffsetKey::decode(key).map_err(failed)?;
    let value = value.map(OffsetValue::decode).transpose().map_err(failed)?;
    Ok((key, value))
}

/// The limits every offset commit keeps, wherever the group lives (the embedded store or a
/// Kafka cluster): at most [`OFFSETS_PER_COMMIT_MAX`] offsets, metadata up to
/// [`METADATA_LEN_MAX`] bytes, offsets up to Kafka's largest (`i64::MAX`), else
/// [`Error::InvalidCommit`].
pub fn check_commit(offsets: &[OffsetCommit]) -> Result<()> {
    if offsets.len() > OFFSETS_PER_COMMIT_MAX {
        return Err(Error::InvalidCommit(format!(
            "{} offsets in one commit; at most {OFFSETS_PER_COMMIT_MAX} are allowed",
            offsets.len()
        )));
    }
    for commit in offsets {
        if let Some(metadata) = &commit.metadata {
            if metadata.len() > METADATA_LEN_MAX {
                return Err(Error::InvalidCommit(format!(
                    "metadata for {}/{} is {} bytes long; at most {METADATA_LEN_MAX} are allowed",
                    commit.topic,
                    commit.partition,
                    metadata.len()
                )));
            }
        }
        // Kafka's offsets are signed 64-bit; a larger one could not be served to clients.
        if commit.offset > i64::MAX as u64 {
            return Err(Error::InvalidCommit(format!(
                "offset {} for {}/{} exceeds Kafka's largest offset {}",
                commit.offset,
                commit.topic,
                commit.partition,
                i64::MAX
            )));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn key(group: &str, partition: u32) -> OffsetKey {
        OffsetKey { group: group.into(), topic: TopicName::new("t").expect("topic"), partition }
    }

    fn value(offset: u64) -> Option<OffsetValue> {
        Some(OffsetValue { offset, metadata: None, commit_time_ms: 0, leader_epoch: None })
    }

    /// The newest record by log order wins, whatever order the writes return in, and a
    /// tombstone is not undone by an older commit that returns after it.
    #[test]
    fn apply_is_by_log_order() {
        let mut st = State { writes_in_flight: 1, ..State::default() };
        st.apply(7, key("g", 0), None);
        st.apply(3, key("g", 0), value(30));
        st.apply(5, key("g", 1), value(50));
        st.apply(4, key("g", 1), value(40));
        let g = &st.groups["g"];
        let live: Vec<(u32, u64)> = g.committed().map(|((_, p), v)| (*p, v.offset)).collect();
        assert_eq!(live, [(1, 50)]);
        assert_eq!(g.offsets[&(TopicName::new("t").expect("t"), 0)].order, 7);
        st.writes_in_flight = 0;
        st.prune();
        assert_eq!(st.groups["g"].offsets.len(), 1);
        st.apply(8, key("g", 1), None);
        st.prune();
        assert!(st.groups.is_empty());
    }

    #[test]
    fn decode_names_the_offset_and_the_problem() {
        let err = decode(12, None, None).unwrap_err();
        assert_eq!(err.to_string(), "__consumer_offsets is corrupted at offset 12: record has no key");
        let err = decode(13, Some(br#"["offset","g","t",0]"#), Some(br#"{"v":9}"#)).unwrap_err();
        assert_eq!(
            err.to_string(),
            "__consumer_offsets offset 13 uses a format this version of evident does not read (value format version 9); upgrade evident"
        );
        let (k, v) = decode(14, Some(br#"["offset","g","t",2]"#), None).expect("tombstone");
        assert_eq!((k, v), (key("g", 2), None));
    }
}
