//! One group's state machine: members, phases, generations, and the deadlines of its join and
//! sync phases, as data. It reads no clock (every transition takes `now`), spawns no task and
//! touches no store: it answers waiting requests through their oneshots, queues what the group
//! store must learn as [`Mirror`] effects (applied by `mirror.rs`), and keeps its deadlines in
//! fields that `timers.rs` wakes up for. [`Group::check`] asserts the invariants after every
//! transition.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

use bytes::Bytes;
use evident_groups::MEMBERS_PER_GROUP_MAX;
use kafka_protocol::error::ResponseError;
use tokio::sync::oneshot;

use super::messages::{GroupView, JoinParams, JoinResult, JoinedMember, MemberView, Phase, Reply, SyncResult};
use super::new_member_id;

/// A new member waiting for its first join phase is dropped after this long (Kafka's
/// `NewMemberJoinTimeoutMs`): a client that disconnected during a long rebalance and retried
/// would otherwise leave a defunct member behind.
const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 300_000;
/// Most member ids handed out with MEMBER_ID_REQUIRED and not yet used, per group; beyond, the
/// oldest is forgotten (its client, if real, gets UNKNOWN_MEMBER_ID and joins afresh). Pending
/// ids do not count against the group's size: a flood of first joins must not lock real
/// consumers out of the group (reliability probe 5e), and a real client uses its id within
/// milliseconds, long before a thousand newer ones push it out.
pub const PENDING_MEMBERS_MAX: usize = 1_000;
/// A pending member id must be used within this long (or the session timeout if shorter),
/// instead of Kafka's session timeout (up to 30 minutes): clients rejoin at once.
pub const PENDING_MEMBER_TIMEOUT_MS: i64 = 10_000;
/// Most bytes of protocol metadata (names and metadata of every protocol offered) in one
/// JoinGroup; a larger one gets INVALID_REQUEST (a consumer's subscription is a few KiB).
pub const JOIN_METADATA_MAX_BYTES: usize = 1 << 20;
/// Most bytes of protocol metadata held for the members of one group; a join beyond it gets
/// GROUP_MAX_SIZE_REACHED, as a group that has no room left.
pub const GROUP_METADATA_MAX_BYTES: usize = 64 << 20;
/// Most bytes of protocol metadata held for the members of every group together; a join
/// beyond it gets GROUP_MAX_SIZE_REACHED.
pub const METADATA_MAX_BYTES: usize = 256 << 20;

/// The protocol metadata bytes of a join (the names count too).
pub(super) fn metadata_bytes(protocols: &[(String, Bytes)]) -> usize {
    protocols.iter().map(|(name, metadata)| name.len() + metadata.len()).sum()
}

/// A member's protocol metadata, charged to the coordinator-wide total while it is held.
struct Charge {
    bytes: usize,
    total: Arc<AtomicUsize>,
}

impl Charge {
    fn new(bytes: usize, total: &Arc<AtomicUsize>) -> Self {
        total.fetch_add(bytes, Ordering::Relaxed);
        Self { bytes, total: total.clone() }
    }
}

impl Drop for Charge {
    fn drop(&mut self) {
        self.total.fetch_sub(self.bytes, Ordering::Relaxed);
    }
}

/// An empty group's coordinator state (its generation and protocol type) is dropped after this
/// long, so that groups used once do not accumulate; its offsets stay in the store.
pub const EMPTY_GROUP_RETENTION_MS: i64 = 600_000;

/// What the group store must learn about a member (see `mirror.rs`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Mirror {
    /// Register or refresh the member with its current assignment.
    Upsert(MemberRecord),
    /// The member was heard from; re-register it if the store no longer has it.
    Touch(MemberRecord),
    /// The member is gone.
    Remove(String),
}

/// A member as the group store holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberRecord {
    /// Member id.
    pub member_id: String,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's host.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// The assignment the leader gave it (consumer protocol bytes when `consumer`).
    pub assignment: Bytes,
    /// The metadata of its chosen protocol (its subscription when `consumer`).
    pub metadata: Bytes,
    /// The group runs the consumer protocol, so the bytes above can be decoded.
    pub consumer: bool,
}

pub(super) struct Member {
    /// Join order: the leader is re-elected as the earliest remaining member.
    seq: u64,
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    awaiting_join: Option<oneshot::Sender<JoinResult>>,
    awaiting_sync: Option<oneshot::Sender<SyncResult>>,
    last_heartbeat_ms: i64,
    /// Joined but not yet through a join phase.
    is_new: bool,
    /// Its protocols' metadata bytes, charged to the coordinator-wide total.
    charge: Charge,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(name, _)| name == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    fn waiting(&self) -> bool {
        self.awaiting_join.is_some() || self.awaiting_sync.is_some()
    }

    /// Whether the session is over at `now_ms`. Members waiting in a JoinGroup or SyncGroup
    /// cannot heartbeat, so they are kept alive, except new members stuck in a join.
    fn expired(&self, now_ms: i64) -> bool {
        if self.is_new && self.awaiting_join.is_some() {
            now_ms >= self.last_heartbeat_ms.saturating_add(NEW_MEMBER_JOIN_TIMEOUT_MS)
        } else if self.waiting() {
            false
        } else {
            now_ms >= self.last_heartbeat_ms.saturating_add(i64::from(self.session_timeout_ms))
        }
    }
}

/// When the current join phase ends.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct JoinDeadline {
    at_ms: i64,
    /// The initial, delayed join of an empty group: it never ends early, and it is extended
    /// by the initial delay (up to this much more in total) while new members keep arriving.
    initial_remaining_ms: Option<i64>,
}

/// One consumer group's membership state.
pub(super) struct Group {
    name: String,
    phase: Phase,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED: (deadline to use them, order handed out).
    pending: HashMap<String, (i64, u64)>,
    /// Metadata bytes held by every group's members (the coordinator's total).
    metadata_total: Arc<AtomicUsize>,
    /// Members of the current generation that have not sent their SyncGroup yet.
    pending_sync: HashSet<String>,
    /// Set exactly while PreparingRebalance.
    join_deadline: Option<JoinDeadline>,
    /// A member joined during the initial delay, which therefore extends once more.
    new_member_added: bool,
    /// When members that have not synced are removed (set by each completed join phase).
    sync_deadline_ms: Option<i64>,
    next_seq: u64,
    /// When the group last became empty (clock ms).
    empty_since_ms: i64,
    /// Effects for the group store, drained after each transition.
    mirror: Vec<Mirror>,
}

impl Group {
    pub(super) fn new(name: &str, now_ms: i64, metadata_total: Arc<AtomicUsize>) -> Self {
        Self {
            name: name.to_string(),
            phase: Phase::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            metadata_total,
            pending_sync: HashSet::new(),
            join_deadline: None,
            new_member_added: false,
            sync_deadline_ms: None,
            next_seq: 0,
            empty_since_ms: now_ms,
            mirror: Vec::new(),
        }
    }

    /// Asserts the invariants every transition must keep; a failure is a coordinator bug.
    /// O(members), kept on in release builds like every assertion in evident.
    pub(super) fn check(&self) {
        let name = &self.name;
        match &self.leader {
            Some(leader) => assert!(self.members.contains_key(leader), "{name}: the leader {leader} is not a member"),
            None => assert!(self.members.is_empty(), "{name}: members but no leader"),
        }
        assert!(self.pending_sync.iter().all(|id| self.members.contains_key(id)), "{name}: pending sync ⊄ members");
        assert!(self.pending.keys().all(|id| !self.members.contains_key(id)), "{name}: a pending id is a member");
        if self.phase == Phase::Empty {
            assert!(self.members.is_empty(), "{name}: Empty with members");
        }
        assert_eq!(
            self.join_deadline.is_some(),
            self.phase == Phase::PreparingRebalance,
            "{name}: a join deadline exactly while PreparingRebalance ({:?})",
            self.phase
        );
        if matches!(self.phase, Phase::CompletingRebalance | Phase::Stable) {
            assert!(self.generation >= 1 && self.protocol_name.is_some(), "{name}: a generation without a protocol");
        } else {
            assert!(self.pending_sync.is_empty(), "{name}: pending syncs outside a generation");
        }
        for (id, m) in &self.members {
            if m.awaiting_join.is_some() {
                assert_eq!(self.phase, Phase::PreparingRebalance, "{name}: {id} waits in a join outside one");
            }
            if m.awaiting_sync.is_some() {
                assert_eq!(self.phase, Phase::CompletingRebalance, "{name}: {id} waits in a sync outside one");
            }
        }
        assert!(self.members.len() <= MEMBERS_PER_GROUP_MAX + 1, "{name}: too many members");
    }

    /// The store effects queued by the last transitions.
    pub(super) fn take_mirror(&mut self) -> Vec<Mirror> {
        std::mem::take(&mut self.mirror)
    }

    pub(super) fn phase(&self) -> Phase {
        self.phase
    }

    /// Nothing worth keeping: never had a generation, no member, nothing pending.
    pub(super) fn is_vacant(&self) -> bool {
        self.phase == Phase::Empty && self.members.is_empty() && self.pending.is_empty() && self.generation == 0
    }

    /// Whether the coordinator may forget the group at `now_ms`: vacant, or empty for
    /// [`EMPTY_GROUP_RETENTION_MS`].
    pub(super) fn forgettable(&self, now_ms: i64) -> bool {
        self.is_vacant() || (self.is_empty() && now_ms.saturating_sub(self.empty_since_ms) >= EMPTY_GROUP_RETENTION_MS)
    }

    /// No members and nothing pending (DeleteGroups may forget it).
    pub(super) fn is_empty(&self) -> bool {
        self.phase == Phase::Empty && self.members.is_empty() && self.pending.is_empty()
    }

    /// The earliest deadline the timers must wake up for (join phase, sync phase).
    pub(super) fn next_deadline(&self) -> Option<i64> {
        let join = self.join_deadline.map(|d| d.at_ms);
        [join, self.sync_deadline_ms].into_iter().flatten().min()
    }

    /// The longest rebalance timeout of the members (Kafka's group rebalance timeout).
    fn rebalance_timeout_ms(&self) -> i64 {
        self.members.values().map(|m| i64::from(m.rebalance_timeout_ms.max(0))).max().unwrap_or(0)
    }

    /// Unlike Kafka, pending member ids do not hold the join phase open: anyone can obtain
    /// them, so they must not make every rebalance last its full timeout; a real client that
    /// joins with its id after the phase completed starts the next one.
    fn all_joined(&self) -> bool {
        self.members.values().all(|m| m.awaiting_join.is_some())
    }

    /// Whether a member with these protocols fits the metadata budgets (`member_id`'s current
    /// charge, if a member, is replaced).
    fn metadata_fits(&self, member_id: &str, protocols: &[(String, Bytes)]) -> Result<(), ResponseError> {
        let bytes = metadata_bytes(protocols);
        if bytes > JOIN_METADATA_MAX_BYTES {
            return Err(ResponseError::InvalidRequest);
        }
        let current = self.members.get(member_id).map_or(0, |m| m.charge.bytes);
        let group: usize = self.members.values().map(|m| m.charge.bytes).sum();
        let total = self.metadata_total.load(Ordering::Relaxed);
        if group - current + bytes > GROUP_METADATA_MAX_BYTES || total - current + bytes > METADATA_MAX_BYTES {
            return Err(ResponseError::GroupMaxSizeReached);
        }
        Ok(())
    }

    /// Whether a member with this protocol type and these protocols may join (Kafka's
    /// `supportsProtocols`): an empty group takes any non-empty set; otherwise the type must
    /// match and one protocol must be supported by every current member.
    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && protocols.iter().any(|(name, _)| self.members.values().all(|m| m.supports(name)))
    }

    /// The protocol for the next generation: every member votes for its most preferred
    /// protocol among those all support; the most votes win, ties by the leader's preference.
    fn select_protocol(&self) -> String {
        let Some(first) = self.leader.as_ref().and_then(|l| self.members.get(l)).or(self.members.values().next())
        else {
            return String::new();
        };
        let candidates: Vec<&str> = first
            .protocols
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| self.members.values().all(|m| m.supports(name)))
            .collect();
        let mut votes: HashMap<&str, usize> = HashMap::new();
        for member in self.members.values() {
            if let Some((name, _)) = member.protocols.iter().find(|(name, _)| candidates.contains(&name.as_str())) {
                *votes.entry(name.as_str()).or_default() += 1;
            }
        }
        let best = candidates.iter().map(|c| votes.get(c).copied().unwrap_or(0)).max().unwrap_or(0);
        candidates.into_iter().find(|c| votes.get(c).copied().unwrap_or(0) == best).unwrap_or_default().to_string()
    }

    /// The current generation's join answer for `member_id` (a rejoin with nothing changed).
    fn current_join(&self, member_id: &str) -> JoinResult {
        let leader = self.leader.clone().unwrap_or_default();
        JoinResult {
            error: None,
            generation_id: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            members: if leader == member_id { self.joined_members() } else { Vec::new() },
            leader,
            member_id: member_id.to_string(),
        }
    }

    fn joined_members(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol_name.as_deref().unwrap_or_default();
        let mut members: Vec<(&String, &Member)> = self.members.iter().collect();
        members.sort_by_key(|(_, m)| m.seq);
        members
            .into_iter()
            .map(|(id, m)| JoinedMember {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    }

    pub(super) fn view(&self) -> GroupView {
        let stable = self.phase == Phase::Stable;
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let members = self
            .members
            .iter()
            .map(|(id, m)| (m.seq, (id, m)))
            .collect::<BTreeMap<_, _>>()
            .into_values()
            .map(|(id, m)| MemberView {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: if stable { m.metadata(&protocol) } else { Bytes::new() },
                assignment: if stable { m.assignment.clone() } else { Bytes::new() },
            })
            .collect();
        GroupView {
            group: self.name.clone(),
            phase: self.phase,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: if stable { protocol } else { String::new() },
            members,
        }
    }

    fn record(&self, member_id: &str) -> Option<MemberRecord> {
        let m = self.members.get(member_id)?;
        Some(MemberRecord {
            member_id: member_id.to_string(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            session_timeout_ms: m.session_timeout_ms,
            assignment: m.assignment.clone(),
            metadata: m.metadata(self.protocol_name.as_deref().unwrap_or_default()),
            consumer: self.protocol_type.as_deref() == Some(super::CONSUMER_PROTOCOL_TYPE),
        })
    }

    fn mirror_upsert(&mut self, member_id: &str) {
        if let Some(r) = self.record(member_id) {
            self.mirror.push(Mirror::Upsert(r));
        }
    }

    fn mirror_touch(&mut self, member_id: &str) {
        if let Some(r) = self.record(member_id) {
            self.mirror.push(Mirror::Touch(r));
        }
    }

    // --- JoinGroup -------------------------------------------------------------------------

    /// A JoinGroup, already checked for a valid group id and session timeout.
    pub(super) fn join(&mut self, p: &JoinParams, now: i64, initial_delay_ms: i64) -> Reply<JoinResult> {
        let reply = self.join_member(p, now, initial_delay_ms);
        if self.phase == Phase::PreparingRebalance {
            self.try_complete_join(now);
        }
        reply
    }

    fn join_member(&mut self, p: &JoinParams, now: i64, initial_delay_ms: i64) -> Reply<JoinResult> {
        let fail = |e| Reply::Now(JoinResult::error(&p.member_id, e));
        if !self.supports(&p.protocol_type, &p.protocols) {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if let Err(e) = self.metadata_fits(&p.member_id, &p.protocols) {
            tracing::debug!(group = %self.name, bytes = metadata_bytes(&p.protocols), "join refused: protocol metadata over budget");
            return fail(e);
        }
        if p.member_id.is_empty() {
            if self.members.len() >= MEMBERS_PER_GROUP_MAX {
                return fail(ResponseError::GroupMaxSizeReached);
            }
            let member_id = new_member_id(&p.client_id);
            if let Some(instance) = &p.instance_id {
                // A static member (KIP-345): if the instance is known, it restarted and takes
                // its previous incarnation's place.
                let holder = self
                    .members
                    .iter()
                    .find(|(_, m)| m.instance_id.as_ref() == Some(instance))
                    .map(|(id, _)| id.clone());
                return match holder {
                    Some(holder) => self.replace_static_member(&holder, member_id, p, now, initial_delay_ms),
                    None => self.add_member_and_rebalance(member_id, p, now, initial_delay_ms),
                };
            }
            if p.require_known_member_id {
                if self.pending.len() >= PENDING_MEMBERS_MAX {
                    let oldest = self.pending.iter().min_by_key(|(_, (_, order))| *order).map(|(id, _)| id.clone());
                    if let Some(oldest) = oldest {
                        self.pending.remove(&oldest);
                    }
                }
                let timeout = PENDING_MEMBER_TIMEOUT_MS.min(i64::from(p.session_timeout_ms));
                self.pending.insert(member_id.clone(), (now.saturating_add(timeout), self.next_seq));
                self.next_seq += 1;
                return Reply::Now(JoinResult::error(&member_id, ResponseError::MemberIdRequired));
            }
            return self.add_member_and_rebalance(member_id, p, now, initial_delay_ms);
        }
        if self.pending.contains_key(&p.member_id) {
            if self.members.len() >= MEMBERS_PER_GROUP_MAX {
                self.pending.remove(&p.member_id);
                return fail(ResponseError::GroupMaxSizeReached);
            }
            return self.add_member_and_rebalance(p.member_id.clone(), p, now, initial_delay_ms);
        }
        if let Err(e) = self.check_instance(&p.member_id, p.instance_id.as_deref()) {
            return fail(e);
        }
        let Some(member) = self.members.get(&p.member_id) else {
            return fail(ResponseError::UnknownMemberId);
        };
        let unchanged = member.protocols == p.protocols;
        let is_leader = self.leader.as_deref() == Some(p.member_id.as_str());
        match self.phase {
            Phase::PreparingRebalance => self.update_member_and_rebalance(&p.member_id, p, now, initial_delay_ms),
            // A rejoin with the same metadata (it probably missed the join answer) gets the
            // current generation; a change of metadata needs a new one.
            Phase::CompletingRebalance if unchanged => Reply::Now(self.current_join(&p.member_id)),
            Phase::CompletingRebalance => self.update_member_and_rebalance(&p.member_id, p, now, initial_delay_ms),
            // The leader rejoins to have the assignment recomputed (e.g. topics changed).
            Phase::Stable if is_leader || !unchanged => {
                self.update_member_and_rebalance(&p.member_id, p, now, initial_delay_ms)
            }
            Phase::Stable => Reply::Now(self.current_join(&p.member_id)),
            Phase::Empty => fail(ResponseError::UnknownMemberId),
        }
    }

    fn add_member_and_rebalance(
        &mut self,
        member_id: String,
        p: &JoinParams,
        now: i64,
        initial_delay_ms: i64,
    ) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        let member = Member {
            seq: self.next_seq,
            instance_id: p.instance_id.clone(),
            client_id: p.client_id.clone(),
            client_host: p.client_host.clone(),
            session_timeout_ms: p.session_timeout_ms,
            rebalance_timeout_ms: p.rebalance_timeout_ms,
            protocols: p.protocols.clone(),
            assignment: Bytes::new(),
            awaiting_join: Some(tx),
            awaiting_sync: None,
            last_heartbeat_ms: now,
            is_new: true,
            charge: Charge::new(metadata_bytes(&p.protocols), &self.metadata_total),
        };
        self.next_seq += 1;
        if self.join_deadline.is_some_and(|d| d.initial_remaining_ms.is_some()) {
            self.new_member_added = true;
        }
        if self.members.is_empty() {
            self.protocol_type = Some(p.protocol_type.clone());
        }
        if self.leader.is_none() {
            self.leader = Some(member_id.clone());
        }
        self.pending.remove(&member_id);
        tracing::debug!(group = %self.name, member = %member_id, "member joins");
        self.members.insert(member_id.clone(), member);
        self.mirror_upsert(&member_id);
        self.maybe_prepare_rebalance(now, initial_delay_ms);
        Reply::Later(rx)
    }

    /// A static member that restarted (KIP-345, Kafka's `updateStaticMemberAndRebalance`): the
    /// new incarnation takes the old one's place under a new member id, keeping its assignment,
    /// and requests the old one still has waiting are answered FENCED_INSTANCE_ID. In a stable
    /// group whose chosen protocol the member still supports, there is no rebalance: the
    /// member gets the current generation at once and its SyncGroup hands its partitions back,
    /// while the other members never notice. While the leader assigns (CompletingRebalance) a
    /// new generation is needed, since the assignment names the old id; during a join phase
    /// the member simply joins it.
    fn replace_static_member(
        &mut self,
        old_id: &str,
        new_id: String,
        p: &JoinParams,
        now: i64,
        initial_delay_ms: i64,
    ) -> Reply<JoinResult> {
        let Some(mut m) = self.members.remove(old_id) else {
            return self.add_member_and_rebalance(new_id, p, now, initial_delay_ms);
        };
        if let Some(tx) = m.awaiting_join.take() {
            let _ = tx.send(JoinResult::error(old_id, ResponseError::FencedInstanceId));
        }
        if let Some(tx) = m.awaiting_sync.take() {
            let _ = tx.send(SyncResult::error(ResponseError::FencedInstanceId));
        }
        m.client_id.clone_from(&p.client_id);
        m.client_host.clone_from(&p.client_host);
        m.last_heartbeat_ms = now;
        if self.pending_sync.remove(old_id) {
            self.pending_sync.insert(new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        self.members.insert(new_id.clone(), m);
        self.mirror.push(Mirror::Remove(old_id.to_string()));
        tracing::info!(group = %self.name, instance = ?p.instance_id, old = %old_id, new = %new_id, "static member rejoined");
        match self.phase {
            Phase::Stable => {
                let selected = self.protocol_name.clone().unwrap_or_default();
                if p.protocols.iter().any(|(name, _)| *name == selected) {
                    if let Some(m) = self.members.get_mut(&new_id) {
                        m.protocols = p.protocols.clone();
                        m.charge = Charge::new(metadata_bytes(&p.protocols), &self.metadata_total);
                        m.rebalance_timeout_ms = p.rebalance_timeout_ms;
                        m.session_timeout_ms = p.session_timeout_ms;
                    }
                    self.mirror_upsert(&new_id);
                    return Reply::Now(self.current_join(&new_id));
                }
                self.update_member_and_rebalance(&new_id, p, now, initial_delay_ms)
            }
            _ => {
                self.mirror_upsert(&new_id);
                self.update_member_and_rebalance(&new_id, p, now, initial_delay_ms)
            }
        }
    }

    fn update_member_and_rebalance(
        &mut self,
        member_id: &str,
        p: &JoinParams,
        now: i64,
        initial_delay_ms: i64,
    ) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = self.members.get_mut(member_id) {
            m.protocols = p.protocols.clone();
            m.charge = Charge::new(metadata_bytes(&p.protocols), &self.metadata_total);
            m.rebalance_timeout_ms = p.rebalance_timeout_ms;
            m.session_timeout_ms = p.session_timeout_ms;
            if let Some(previous) = m.awaiting_join.replace(tx) {
                // The same member joined again elsewhere; the earlier request is superseded.
                let _ = previous.send(JoinResult::error(member_id, ResponseError::RebalanceInProgress));
            }
        }
        self.maybe_prepare_rebalance(now, initial_delay_ms);
        Reply::Later(rx)
    }

    fn maybe_prepare_rebalance(&mut self, now: i64, initial_delay_ms: i64) {
        if matches!(self.phase, Phase::Stable | Phase::CompletingRebalance | Phase::Empty) {
            self.prepare_rebalance(now, initial_delay_ms);
        }
    }

    /// Starts a join phase. The first of an empty group waits `initial_delay_ms` (extended
    /// while members arrive, up to the rebalance timeout); any other ends when every member
    /// rejoined or at the rebalance timeout.
    fn prepare_rebalance(&mut self, now: i64, initial_delay_ms: i64) {
        if self.phase == Phase::CompletingRebalance {
            self.reset_and_propagate_assignment_error(ResponseError::RebalanceInProgress, now);
        }
        self.pending_sync.clear();
        self.sync_deadline_ms = None;
        let initial = self.phase == Phase::Empty;
        self.phase = Phase::PreparingRebalance;
        self.new_member_added = false;
        let timeout = self.rebalance_timeout_ms();
        tracing::debug!(group = %self.name, generation = self.generation, initial, "rebalance starts");
        self.join_deadline = Some(if initial {
            JoinDeadline {
                at_ms: now.saturating_add(initial_delay_ms),
                initial_remaining_ms: Some(timeout.saturating_sub(initial_delay_ms).max(0)),
            }
        } else {
            JoinDeadline { at_ms: now.saturating_add(timeout), initial_remaining_ms: None }
        });
        if !initial {
            self.try_complete_join(now);
        }
    }

    /// Ends the join phase if every member rejoined (the initial delayed phase only ends at
    /// its deadline, so that members starting together are collected).
    fn try_complete_join(&mut self, now: i64) {
        let initial = self.join_deadline.is_some_and(|d| d.initial_remaining_ms.is_some());
        if self.phase == Phase::PreparingRebalance && !initial && self.all_joined() {
            self.complete_join(now);
        }
    }

    /// Ends the join phase: members that did not rejoin are removed, the generation advances,
    /// and every waiting JoinGroup is answered (the leader with every member's metadata).
    fn complete_join(&mut self, now: i64) {
        self.join_deadline = None;
        self.new_member_added = false;
        let absent: Vec<String> =
            self.members.iter().filter(|(_, m)| m.awaiting_join.is_none()).map(|(id, _)| id.clone()).collect();
        for id in absent {
            tracing::info!(group = %self.name, member = %id, "member removed: it did not rejoin within the rebalance timeout");
            self.remove_member(&id);
        }
        self.generation = self.generation.wrapping_add(1).max(1);
        if self.members.is_empty() {
            self.phase = Phase::Empty;
            self.protocol_name = None;
            self.leader = None;
            self.empty_since_ms = now;
            tracing::debug!(group = %self.name, generation = self.generation, "group is empty");
            return;
        }
        self.protocol_name = Some(self.select_protocol());
        self.phase = Phase::CompletingRebalance;
        self.pending_sync = self.members.keys().cloned().collect();
        let everyone = self.joined_members();
        let leader = self.leader.clone().unwrap_or_default();
        let (generation, protocol_type, protocol_name) =
            (self.generation, self.protocol_type.clone(), self.protocol_name.clone());
        tracing::debug!(group = %self.name, generation, leader = %leader, members = self.members.len(), "join phase complete");
        for (id, m) in self.members.iter_mut() {
            let result = JoinResult {
                error: None,
                generation_id: generation,
                protocol_type: protocol_type.clone(),
                protocol_name: protocol_name.clone(),
                leader: leader.clone(),
                member_id: id.clone(),
                members: if *id == leader { everyone.clone() } else { Vec::new() },
            };
            if let Some(tx) = m.awaiting_join.take() {
                let _ = tx.send(result);
            }
            m.last_heartbeat_ms = now;
            m.is_new = false;
        }
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            self.mirror_touch(&id);
        }
        self.sync_deadline_ms = Some(now.saturating_add(self.rebalance_timeout_ms()));
    }

    // --- SyncGroup -------------------------------------------------------------------------

    /// A SyncGroup; `assignments` are only looked at from the leader.
    pub(super) fn sync(
        &mut self,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
        now: i64,
    ) -> Reply<SyncResult> {
        let fail = |e| Reply::Now(SyncResult::error(e));
        if !self.members.contains_key(member_id) {
            return fail(ResponseError::UnknownMemberId);
        }
        if generation != self.generation {
            return fail(ResponseError::IllegalGeneration);
        }
        match self.phase {
            Phase::Empty => fail(ResponseError::UnknownMemberId),
            Phase::PreparingRebalance => fail(ResponseError::RebalanceInProgress),
            Phase::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = self.members.get_mut(member_id) {
                    if let Some(previous) = m.awaiting_sync.replace(tx) {
                        let _ = previous.send(SyncResult::error(ResponseError::RebalanceInProgress));
                    }
                }
                self.pending_sync.remove(member_id);
                if self.leader.as_deref() == Some(member_id) {
                    // Assignments for members not in the group are dropped; members the leader
                    // left out get an empty assignment, as in Kafka.
                    let assignments: HashMap<String, Bytes> =
                        assignments.into_iter().filter(|(id, _)| self.members.contains_key(id)).collect();
                    tracing::debug!(group = %self.name, generation, "assignment received from the leader");
                    self.phase = Phase::Stable;
                    self.set_and_propagate_assignment(assignments, now);
                }
                Reply::Later(rx)
            }
            Phase::Stable => {
                self.pending_sync.remove(member_id);
                let Some(m) = self.members.get_mut(member_id) else {
                    return fail(ResponseError::UnknownMemberId);
                };
                m.last_heartbeat_ms = now;
                let result = SyncResult { error: None, assignment: m.assignment.clone() };
                self.mirror_touch(member_id);
                Reply::Now(result)
            }
        }
    }

    fn reset_and_propagate_assignment_error(&mut self, error: ResponseError, now: i64) {
        for m in self.members.values_mut() {
            m.assignment = Bytes::new();
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResult::error(error));
                m.last_heartbeat_ms = now;
            }
        }
    }

    fn set_and_propagate_assignment(&mut self, mut assignments: HashMap<String, Bytes>, now: i64) {
        for (id, m) in self.members.iter_mut() {
            m.assignment = assignments.remove(id).unwrap_or_default();
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResult { error: None, assignment: m.assignment.clone() });
                m.last_heartbeat_ms = now;
            }
        }
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            self.mirror_upsert(&id);
        }
    }

    // --- Heartbeat, LeaveGroup, OffsetCommit -----------------------------------------------

    /// Kafka's fencing of a static member's old incarnation (KIP-345): a request naming a
    /// `group.instance.id` that another member id now holds (a newer incarnation replaced it)
    /// is `FENCED_INSTANCE_ID`, fatal for the client. `UNKNOWN_MEMBER_ID` instead would make the
    /// old incarnation rejoin and replace the new one in turn, the two taking the partitions
    /// from each other for as long as both run.
    pub(super) fn check_instance(&self, member_id: &str, instance_id: Option<&str>) -> Result<(), ResponseError> {
        let Some(instance) = instance_id else { return Ok(()) };
        match self.members.iter().find(|(_, m)| m.instance_id.as_deref() == Some(instance)) {
            Some((holder, _)) if holder != member_id => Err(ResponseError::FencedInstanceId),
            _ => Ok(()),
        }
    }

    pub(super) fn heartbeat(&mut self, generation: i32, member_id: &str, now: i64) -> Result<(), ResponseError> {
        if generation != self.generation && self.members.contains_key(member_id) {
            return Err(ResponseError::IllegalGeneration);
        }
        let m = self.members.get_mut(member_id).ok_or(ResponseError::UnknownMemberId)?;
        m.last_heartbeat_ms = now;
        self.mirror_touch(member_id);
        match self.phase {
            Phase::Empty => Err(ResponseError::UnknownMemberId),
            Phase::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            Phase::CompletingRebalance | Phase::Stable => Ok(()),
        }
    }

    pub(super) fn leave(
        &mut self,
        member_ids: &[String],
        now: i64,
        initial_delay_ms: i64,
    ) -> Vec<Result<(), ResponseError>> {
        member_ids
            .iter()
            .map(|id| {
                if self.remove_pending_member(id, now) {
                    return Ok(());
                }
                if !self.members.contains_key(id) {
                    return Err(ResponseError::UnknownMemberId);
                }
                tracing::debug!(group = %self.name, member = %id, "member leaves");
                self.remove_member_and_update(id, now, initial_delay_ms);
                Ok(())
            })
            .collect()
    }

    /// Whether an OffsetCommit from this member and generation may commit now.
    /// `transactional`: a TxnOffsetCommit's (see `Coordinator::validate_txn_commit`).
    pub(super) fn validate_commit(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        now: i64,
        transactional: bool,
    ) -> Result<(), ResponseError> {
        if transactional && generation < 0 && self.phase == Phase::Empty {
            return Ok(());
        }
        self.check_instance(member_id, instance_id)?;
        let as_member = generation >= 0 || !member_id.is_empty() || instance_id.is_some();
        if as_member {
            if !self.members.contains_key(member_id) {
                return Err(ResponseError::UnknownMemberId);
            }
            if generation != self.generation {
                return Err(ResponseError::IllegalGeneration);
            }
        } else if self.phase != Phase::Empty && !transactional {
            // Only members may commit for a group that has members.
            return Err(ResponseError::UnknownMemberId);
        }
        if transactional {
            // Not a heartbeat, and not refused while the group completes a rebalance.
            return Ok(());
        }
        match self.phase {
            Phase::Empty => Ok(()),
            // Committing while the group prepares a rebalance is allowed, as in Kafka: consumers
            // commit what they processed before they give up their partitions. It counts as a
            // heartbeat.
            Phase::Stable | Phase::PreparingRebalance => {
                if let Some(m) = self.members.get_mut(member_id) {
                    m.last_heartbeat_ms = now;
                    self.mirror_touch(member_id);
                }
                Ok(())
            }
            Phase::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
        }
    }

    /// Removes a member, answering its waiting requests with `UNKNOWN_MEMBER_ID` so the client
    /// rejoins; re-elects the leader. Does not start or complete a rebalance.
    fn remove_member(&mut self, member_id: &str) -> bool {
        let Some(mut m) = self.members.remove(member_id) else {
            return false;
        };
        if let Some(tx) = m.awaiting_join.take() {
            let _ = tx.send(JoinResult::error(member_id, ResponseError::UnknownMemberId));
        }
        if let Some(tx) = m.awaiting_sync.take() {
            let _ = tx.send(SyncResult::error(ResponseError::UnknownMemberId));
        }
        self.pending_sync.remove(member_id);
        if self.leader.as_deref() == Some(member_id) {
            self.leader = self.members.iter().min_by_key(|(_, m)| m.seq).map(|(id, _)| id.clone());
        }
        self.mirror.push(Mirror::Remove(member_id.to_string()));
        true
    }

    fn remove_member_and_update(&mut self, member_id: &str, now: i64, initial_delay_ms: i64) {
        if !self.remove_member(member_id) {
            return;
        }
        match self.phase {
            Phase::Stable | Phase::CompletingRebalance => self.maybe_prepare_rebalance(now, initial_delay_ms),
            Phase::PreparingRebalance => self.try_complete_join(now),
            Phase::Empty => {}
        }
    }

    fn remove_pending_member(&mut self, member_id: &str, now: i64) -> bool {
        if self.pending.remove(member_id).is_none() {
            return false;
        }
        self.try_complete_join(now);
        true
    }

    // --- Time ------------------------------------------------------------------------------

    /// Everything due at `now`: the end of the join phase, members that did not sync in time,
    /// member ids never used, sessions over. Members kept alive by a waiting request are
    /// touched in the store so its own expiry does not drop them meanwhile.
    pub(super) fn tick(&mut self, now: i64, initial_delay_ms: i64) {
        if let Some(deadline) = self.join_deadline.filter(|d| now >= d.at_ms) {
            match deadline.initial_remaining_ms {
                Some(left) if self.new_member_added && left > 0 => {
                    // Members keep arriving: wait once more, within the rebalance timeout.
                    self.new_member_added = false;
                    let delay = initial_delay_ms.min(left);
                    self.join_deadline = Some(JoinDeadline {
                        at_ms: now.saturating_add(delay),
                        initial_remaining_ms: Some(left - delay),
                    });
                }
                _ => self.complete_join(now),
            }
        }
        if self.sync_deadline_ms.is_some_and(|at| now >= at) {
            self.sync_deadline_ms = None;
            // Kafka's pending-sync expiry: a leader that never sends its assignment would
            // otherwise leave the followers waiting forever.
            if matches!(self.phase, Phase::CompletingRebalance | Phase::Stable) && !self.pending_sync.is_empty() {
                let late: Vec<String> = self.pending_sync.iter().cloned().collect();
                for id in late {
                    tracing::info!(group = %self.name, member = %id, "member removed: no SyncGroup within the rebalance timeout");
                    self.remove_member(&id);
                }
                self.prepare_rebalance(now, initial_delay_ms);
            }
        }
        let late: Vec<String> =
            self.pending.iter().filter(|(_, (deadline, _))| now >= *deadline).map(|(id, _)| id.clone()).collect();
        for id in late {
            tracing::debug!(group = %self.name, member = %id, "pending member expired: it did not join with its member id");
            self.remove_pending_member(&id, now);
        }
        let expired: Vec<String> =
            self.members.iter().filter(|(_, m)| m.expired(now)).map(|(id, _)| id.clone()).collect();
        for id in expired {
            tracing::info!(group = %self.name, member = %id, "member removed: its session expired");
            self.remove_member_and_update(&id, now, initial_delay_ms);
        }
        let waiting: Vec<String> = self.members.iter().filter(|(_, m)| m.waiting()).map(|(id, _)| id.clone()).collect();
        for id in waiting {
            self.mirror_touch(&id);
        }
    }
}
