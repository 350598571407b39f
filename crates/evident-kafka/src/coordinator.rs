//! The group coordinator of Kafka's classic consumer-group protocol: membership, rebalances
//! and generations, run the way Kafka's `GroupCoordinator` runs them, so that librdkafka (and
//! its wrappers), the Java client, kafka-python and aiokafka behave against evident as they do
//! against Kafka. The handlers (`join_group`, `sync_group`, `heartbeat`, `leave_group`,
//! `offset_commit`, `describe_groups`, ...) translate the wire messages; the decisions are here.
//!
//! # States
//!
//! A group is `Empty` (no members), `PreparingRebalance` (members are (re)joining),
//! `CompletingRebalance` (the join phase ended: a new generation exists and the leader computes
//! the assignment) or `Stable` (the leader's assignment was handed out). `Dead` is only shown
//! for groups that do not exist. A rebalance starts when a member joins, leaves, changes its
//! protocols, when the leader rejoins, or when a session expires; every completed join phase
//! increments the generation. The leader is the first member to join, or a remaining one when
//! it goes. The protocol is one every member supports, chosen by the members' votes (each votes
//! for its most preferred candidate), ties going to the leader's preference.
//!
//! A JoinGroup (v4+) without a member id gets `MEMBER_ID_REQUIRED` with a fresh id
//! `{client_id}-{uuid}` (KIP-394) and the member is "pending" until it joins again with it (or
//! its session timeout passes). A JoinGroup's answer waits until the join phase completes:
//! every member has rejoined and no pending member is left, or the rebalance timeout (the
//! largest of the members') passed, and then the members that did not rejoin are removed. The
//! first join of an empty group waits [`INITIAL_REBALANCE_DELAY`] more, extended by the same
//! again each time another member arrives (up to the rebalance timeout), so consumers started
//! together land in one generation. A SyncGroup waits until the leader's assignment arrives,
//! or the rebalance restarts (`REBALANCE_IN_PROGRESS`); members that do not sync within the
//! rebalance timeout are removed and the group rebalances again.
//!
//! # Time
//!
//! Session deadlines read the injected [`Clock`], the same one `GroupStore` expires members
//! with, so both agree and tests can drive sessions with a manual clock. A sweeper task
//! (started with the first join, holding only a weak reference) expires sessions and pending
//! members every [`SWEEP_INTERVAL`]. Members waiting in a JoinGroup or SyncGroup are kept alive
//! meanwhile, as in Kafka (they cannot heartbeat while waiting), except that a brand-new member
//! waiting to join is dropped after five minutes. Rebalance delays and timeouts are tokio
//! timers: one task per phase, which does nothing if the phase it was started for is over.
//! Nothing blocks a tokio worker: waiting requests hold a oneshot receiver; the group map's
//! mutex is only held for bookkeeping, never across an await or an append.
//!
//! # GroupStore
//!
//! Membership is mirrored into [`GroupStore`] (`join_member` with the client id, host, session
//! timeout and the decoded assignment; `heartbeat`; `leave_member`) so the HTTP API shows the
//! members and their partitions and refuses resets and deletes while a group is active. The
//! coordinator is the authority: the mirror is refreshed for members kept alive by a pending
//! request, and re-registered if the store expired it first. Committed offsets live only in
//! the store.
//!
//! # Deviations from Kafka
//!
//! - The initial rebalance delay is [`INITIAL_REBALANCE_DELAY`] (200 ms) instead of Kafka's
//!   `group.initial.rebalance.delay.ms` of 3 s: a single broker on one machine sees consumers
//!   started together within milliseconds, and tests and CLIs should not pay 3 s per group. It
//!   is extended for every new member of any empty group, not only of a never-used one.
//! - Membership is not persisted: after a restart the members' requests are answered
//!   `UNKNOWN_MEMBER_ID` (or `ILLEGAL_GENERATION` for a commit) and they rejoin.
//! - Static membership (KIP-345) is approximated: a join with a `group.instance.id` held by
//!   another member replaces that member (and rebalances) instead of taking over its assignment
//!   without a rebalance; `FENCED_INSTANCE_ID` is never returned.
//! - A group that stays empty for [`EMPTY_GROUP_RETENTION_MS`] is forgotten by the coordinator
//!   (its committed offsets stay in the store); its next join starts again at generation 1.

use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use evident_core::TopicName;
use evident_groups::{
    validate_group, GroupStore, MemberInfo, TopicPartitions, MEMBERS_PER_GROUP_MAX, MEMBER_FIELD_LEN_MAX,
    SESSION_TIMEOUT_MAX_MS, SESSION_TIMEOUT_MIN_MS,
};
use evident_log::clock::Clock;
use kafka_protocol::error::ResponseError;
use tokio::sync::{oneshot, watch};

/// How long the first join of an empty group waits for more members (Kafka's
/// `group.initial.rebalance.delay.ms`, 3 s there; see the module documentation).
pub const INITIAL_REBALANCE_DELAY: Duration = Duration::from_millis(200);
/// How often sessions and pending members are checked; a session ends at most this late.
pub const SWEEP_INTERVAL: Duration = Duration::from_millis(250);
/// A new member waiting for its first join phase is dropped after this long (Kafka's
/// `NewMemberJoinTimeoutMs`): a client that disconnected during a long rebalance and retried
/// would otherwise leave a defunct member behind.
const NEW_MEMBER_JOIN_TIMEOUT_MS: i64 = 300_000;
/// An empty group's coordinator state (its generation and protocol type) is dropped after this
/// long, so that groups used once do not accumulate; its offsets stay in the store.
pub const EMPTY_GROUP_RETENTION_MS: i64 = 600_000;
/// The protocol type of Kafka consumers, whose assignments evident decodes for the store.
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";
/// Longest client id used as a member id's prefix: the store bounds member ids (and Kafka's
/// are the client id plus a UUID, so a longer client id would make an id the store refuses).
const MEMBER_ID_PREFIX_MAX: usize = MEMBER_FIELD_LEN_MAX - 64;

/// A group's state, as Kafka names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// No members.
    Empty,
    /// Members are (re)joining.
    PreparingRebalance,
    /// The join phase completed; waiting for the leader's assignment.
    CompletingRebalance,
    /// Members have their assignment.
    Stable,
}

impl Phase {
    /// Kafka's name of the state (ListGroups, DescribeGroups).
    pub fn name(self) -> &'static str {
        match self {
            Phase::Empty => "Empty",
            Phase::PreparingRebalance => "PreparingRebalance",
            Phase::CompletingRebalance => "CompletingRebalance",
            Phase::Stable => "Stable",
        }
    }
}

/// What a JoinGroup asks.
#[derive(Debug, Clone)]
pub struct JoinParams {
    /// Group id.
    pub group: String,
    /// Member id; empty for a member joining for the first time.
    pub member_id: String,
    /// `group.instance.id` (static membership), if any.
    pub instance_id: Option<String>,
    /// The client's `client.id`.
    pub client_id: String,
    /// The client's host, as Kafka shows it (`/127.0.0.1`).
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// How long the group waits for members to rejoin in a rebalance.
    pub rebalance_timeout_ms: i32,
    /// Protocol type (`consumer` for consumers).
    pub protocol_type: String,
    /// Supported protocols with their metadata, most preferred first.
    pub protocols: Vec<(String, Bytes)>,
    /// Answer a join without member id with `MEMBER_ID_REQUIRED` (JoinGroup v4+).
    pub require_known_member_id: bool,
}

/// A member as the leader's JoinGroup response lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`, if any.
    pub instance_id: Option<String>,
    /// The member's metadata for the chosen protocol.
    pub metadata: Bytes,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone)]
pub struct JoinResult {
    /// The error, if any.
    pub error: Option<ResponseError>,
    /// The generation (-1 on error).
    pub generation_id: i32,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen protocol.
    pub protocol_name: Option<String>,
    /// The leader's member id.
    pub leader: String,
    /// The member's id (the generated one for a new member).
    pub member_id: String,
    /// Every member with its metadata, for the leader only.
    pub members: Vec<JoinedMember>,
}

impl JoinResult {
    /// A failed join.
    pub fn error(member_id: &str, error: ResponseError) -> Self {
        Self {
            error: Some(error),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: Vec::new(),
        }
    }
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone)]
pub struct SyncResult {
    /// The error, if any.
    pub error: Option<ResponseError>,
    /// The group's protocol type.
    pub protocol_type: Option<String>,
    /// The chosen protocol.
    pub protocol_name: Option<String>,
    /// This member's assignment, as the leader gave it.
    pub assignment: Bytes,
}

impl SyncResult {
    /// A failed sync.
    pub fn error(error: ResponseError) -> Self {
        Self { error: Some(error), protocol_type: None, protocol_name: None, assignment: Bytes::new() }
    }
}

/// An answer now, or later (a JoinGroup or SyncGroup waiting for the rebalance).
#[derive(Debug)]
pub enum Reply<T> {
    /// Available now.
    Now(T),
    /// Sent when the rebalance gets there.
    Later(oneshot::Receiver<T>),
}

impl<T> Reply<T> {
    /// Waits for the answer. At shutdown the answer is `fallback(NOT_COORDINATOR)`, so the
    /// client looks for the coordinator again; if the coordinator dropped the request without
    /// answering (it cannot, short of being dropped itself) it is `fallback(UNKNOWN_MEMBER_ID)`,
    /// which makes the client rejoin.
    pub async fn wait(self, shutdown: &watch::Receiver<bool>, fallback: impl FnOnce(ResponseError) -> T) -> T {
        let rx = match self {
            Reply::Now(value) => return value,
            Reply::Later(rx) => rx,
        };
        let mut shutdown = shutdown.clone();
        let stopping = async move {
            // A dropped sender means no shutdown will ever be signalled: wait forever then.
            if shutdown.wait_for(|stop| *stop).await.is_err() {
                std::future::pending::<()>().await;
            }
        };
        tokio::select! {
            answer = rx => answer.unwrap_or_else(|_| fallback(ResponseError::UnknownMemberId)),
            () = stopping => fallback(ResponseError::NotCoordinator),
        }
    }
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberView {
    /// Member id.
    pub member_id: String,
    /// `group.instance.id`, if any.
    pub instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client host.
    pub client_host: String,
    /// Metadata for the chosen protocol (only when the group is stable, as in Kafka).
    pub metadata: Bytes,
    /// Assignment (only when the group is stable, as in Kafka).
    pub assignment: Bytes,
}

/// A group as DescribeGroups and ListGroups show it.
#[derive(Debug, Clone)]
pub struct GroupView {
    /// Group id.
    pub group: String,
    /// State.
    pub phase: Phase,
    /// Protocol type, or empty.
    pub protocol_type: String,
    /// The chosen protocol when stable, else empty.
    pub protocol_name: String,
    /// Members, in join order.
    pub members: Vec<MemberView>,
}

struct Member {
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
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(name, _)| name == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }

    fn supports(&self, protocol: &str) -> bool {
        self.protocols.iter().any(|(name, _)| name == protocol)
    }

    /// Whether the session is over at `now_ms`. Members waiting in a JoinGroup or SyncGroup
    /// cannot heartbeat, so they are kept alive, except new members stuck in a join.
    fn expired(&self, now_ms: i64) -> bool {
        if self.is_new && self.awaiting_join.is_some() {
            now_ms >= self.last_heartbeat_ms.saturating_add(NEW_MEMBER_JOIN_TIMEOUT_MS)
        } else if self.awaiting_join.is_some() || self.awaiting_sync.is_some() {
            false
        } else {
            now_ms >= self.last_heartbeat_ms.saturating_add(i64::from(self.session_timeout_ms))
        }
    }
}

struct Group {
    phase: Phase,
    generation: i32,
    protocol_type: Option<String>,
    protocol_name: Option<String>,
    leader: Option<String>,
    members: BTreeMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with the deadline to use them.
    pending: HashMap<String, i64>,
    /// Members of the current generation that have not sent their SyncGroup yet.
    pending_sync: HashSet<String>,
    /// The current join phase is the initial, delayed one (it never completes early).
    initial_join: bool,
    /// A member joined during the initial delay, which therefore extends once more.
    new_member_added: bool,
    /// Identifies the current join phase; a timer started for an earlier one does nothing.
    join_token: u64,
    next_seq: u64,
    /// When the group last became empty (clock ms).
    empty_since_ms: i64,
}

impl Group {
    fn new(now_ms: i64) -> Self {
        Self {
            phase: Phase::Empty,
            generation: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            pending_sync: HashSet::new(),
            initial_join: false,
            new_member_added: false,
            join_token: 0,
            next_seq: 0,
            empty_since_ms: now_ms,
        }
    }

    /// Nothing worth keeping: never had a generation, no member, nothing pending.
    fn is_vacant(&self) -> bool {
        self.phase == Phase::Empty && self.members.is_empty() && self.pending.is_empty() && self.generation == 0
    }

    /// The longest rebalance timeout of the members (Kafka's group rebalance timeout).
    fn rebalance_timeout(&self) -> Duration {
        let ms = self.members.values().map(|m| m.rebalance_timeout_ms.max(0)).max().unwrap_or(0);
        Duration::from_millis(u64::try_from(ms).unwrap_or(0))
    }

    fn all_joined(&self) -> bool {
        self.pending.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
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

    fn view(&self, name: &str) -> GroupView {
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
            group: name.to_string(),
            phase: self.phase,
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            protocol_name: if stable { protocol } else { String::new() },
            members,
        }
    }
}

/// The group coordinator.
pub struct Coordinator {
    inner: Arc<Inner>,
}

struct Inner {
    /// Timers and the sweeper hold this, so they end when the coordinator is dropped.
    me: Weak<Inner>,
    store: Arc<GroupStore>,
    clock: Arc<dyn Clock>,
    initial_delay: Duration,
    groups: Mutex<HashMap<String, Group>>,
    sweeper_started: AtomicBool,
}

impl Coordinator {
    /// A coordinator over the group store.
    pub fn new(groups: Arc<GroupStore>, clock: Arc<dyn Clock>) -> Self {
        Self::with_initial_delay(groups, clock, INITIAL_REBALANCE_DELAY)
    }

    /// A coordinator with another initial rebalance delay.
    pub fn with_initial_delay(groups: Arc<GroupStore>, clock: Arc<dyn Clock>, initial_delay: Duration) -> Self {
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            store: groups,
            clock,
            initial_delay,
            groups: Mutex::new(HashMap::new()),
            sweeper_started: AtomicBool::new(false),
        });
        Self { inner }
    }

    /// JoinGroup.
    pub fn join(&self, params: JoinParams) -> Reply<JoinResult> {
        self.inner.ensure_sweeper();
        self.inner.join(params)
    }

    /// SyncGroup; `assignments` (member id, assignment) are only looked at from the leader.
    pub fn sync(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> Reply<SyncResult> {
        self.inner.sync(group, generation, member_id, assignments)
    }

    /// Heartbeat.
    pub fn heartbeat(&self, group: &str, generation: i32, member_id: &str) -> Result<(), ResponseError> {
        self.inner.heartbeat(group, generation, member_id)
    }

    /// LeaveGroup of the given members: the group-level error, or each member's result.
    pub fn leave(&self, group: &str, member_ids: &[String]) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        self.inner.leave(group, member_ids)
    }

    /// Whether an OffsetCommit from this member and generation may commit now.
    pub fn validate_commit(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        self.inner.validate_commit(group, member_id, instance_id, generation)
    }

    /// The group as the coordinator knows it (None: it has no membership state).
    pub fn describe(&self, group: &str) -> Option<GroupView> {
        self.inner.lock().get(group).map(|g| g.view(group))
    }

    /// Every group the coordinator knows, by name.
    pub fn list(&self) -> Vec<GroupView> {
        let st = self.inner.lock();
        let mut views: Vec<GroupView> = st.iter().map(|(name, g)| g.view(name)).collect();
        views.sort_by(|a, b| a.group.cmp(&b.group));
        views
    }

    /// Forgets an empty group's membership state before its offsets are deleted:
    /// `NON_EMPTY_GROUP` while it has members; Ok(whether the coordinator knew it).
    pub fn forget_empty(&self, group: &str) -> Result<bool, ResponseError> {
        let mut st = self.inner.lock();
        match st.get(group) {
            None => Ok(false),
            Some(g) if g.members.is_empty() && g.phase == Phase::Empty => {
                st.remove(group);
                Ok(true)
            }
            Some(_) => Err(ResponseError::NonEmptyGroup),
        }
    }

    /// Expires sessions and pending members now (the sweeper does this periodically).
    #[cfg(test)]
    pub fn sweep(&self) {
        self.inner.sweep();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        // A panic under the lock is a bug; the map is still consistent enough to keep serving
        // other groups rather than fail every later request.
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    fn ensure_sweeper(&self) {
        if self.sweeper_started.swap(true, Ordering::SeqCst) {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            // Called outside a runtime (only possible from a test): try again next time.
            self.sweeper_started.store(false, Ordering::SeqCst);
            return;
        };
        let me = self.me.clone();
        runtime.spawn(async move {
            let mut tick = tokio::time::interval(SWEEP_INTERVAL);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
            loop {
                tick.tick().await;
                let Some(inner) = me.upgrade() else { return };
                inner.sweep();
            }
        });
    }

    fn join(&self, p: JoinParams) -> Reply<JoinResult> {
        if validate_group(&p.group).is_err() {
            return Reply::Now(JoinResult::error(&p.member_id, ResponseError::InvalidGroupId));
        }
        let session_ok = u32::try_from(p.session_timeout_ms)
            .is_ok_and(|ms| (SESSION_TIMEOUT_MIN_MS..=SESSION_TIMEOUT_MAX_MS).contains(&ms));
        if !session_ok {
            return Reply::Now(JoinResult::error(&p.member_id, ResponseError::InvalidSessionTimeout));
        }
        let now = self.now();
        let mut st = self.lock();
        if !p.member_id.is_empty() && !st.contains_key(&p.group) {
            return Reply::Now(JoinResult::error(&p.member_id, ResponseError::UnknownMemberId));
        }
        let g = st.entry(p.group.clone()).or_insert_with(|| Group::new(now));
        let reply = self.join_locked(g, &p, now);
        if g.phase == Phase::PreparingRebalance {
            self.try_complete_join(&p.group, g);
        }
        if g.is_vacant() {
            st.remove(&p.group);
        }
        reply
    }

    fn join_locked(&self, g: &mut Group, p: &JoinParams, now: i64) -> Reply<JoinResult> {
        let name = p.group.as_str();
        let fail = |e| Reply::Now(JoinResult::error(&p.member_id, e));
        if !g.supports(&p.protocol_type, &p.protocols) {
            return fail(ResponseError::InconsistentGroupProtocol);
        }
        if p.member_id.is_empty() {
            // Ids handed out count too: a client looping on first joins could otherwise grow
            // the pending set without bound.
            if g.members.len() + g.pending.len() >= MEMBERS_PER_GROUP_MAX {
                return fail(ResponseError::GroupMaxSizeReached);
            }
            let member_id = new_member_id(&p.client_id);
            if let Some(instance) = &p.instance_id {
                // The instance restarted: its previous incarnation is replaced, after the new
                // one is added so the group does not pass through Empty.
                let holder =
                    g.members.iter().find(|(_, m)| m.instance_id.as_ref() == Some(instance)).map(|(id, _)| id.clone());
                let reply = self.add_member_and_rebalance(name, g, member_id, p);
                if let Some(holder) = holder {
                    self.remove_member_and_update_group(name, g, &holder);
                }
                return reply;
            }
            if p.require_known_member_id {
                g.pending.insert(member_id.clone(), now.saturating_add(i64::from(p.session_timeout_ms)));
                return Reply::Now(JoinResult::error(&member_id, ResponseError::MemberIdRequired));
            }
            return self.add_member_and_rebalance(name, g, member_id, p);
        }
        if g.pending.contains_key(&p.member_id) {
            if g.members.len() >= MEMBERS_PER_GROUP_MAX {
                g.pending.remove(&p.member_id);
                return fail(ResponseError::GroupMaxSizeReached);
            }
            return self.add_member_and_rebalance(name, g, p.member_id.clone(), p);
        }
        let Some(member) = g.members.get(&p.member_id) else {
            return fail(ResponseError::UnknownMemberId);
        };
        let unchanged = member.protocols == p.protocols;
        let is_leader = g.leader.as_deref() == Some(p.member_id.as_str());
        match g.phase {
            Phase::PreparingRebalance => self.update_member_and_rebalance(name, g, p),
            // A rejoin with the same metadata (it probably missed the join answer) gets the
            // current generation; a change of metadata needs a new one.
            Phase::CompletingRebalance if unchanged => Reply::Now(g.current_join(&p.member_id)),
            Phase::CompletingRebalance => self.update_member_and_rebalance(name, g, p),
            // The leader rejoins to have the assignment recomputed (e.g. topics changed).
            Phase::Stable if is_leader || !unchanged => self.update_member_and_rebalance(name, g, p),
            Phase::Stable => Reply::Now(g.current_join(&p.member_id)),
            Phase::Empty => fail(ResponseError::UnknownMemberId),
        }
    }

    fn add_member_and_rebalance(
        &self,
        name: &str,
        g: &mut Group,
        member_id: String,
        p: &JoinParams,
    ) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        let member = Member {
            seq: g.next_seq,
            instance_id: p.instance_id.clone(),
            client_id: p.client_id.clone(),
            client_host: p.client_host.clone(),
            session_timeout_ms: p.session_timeout_ms,
            rebalance_timeout_ms: p.rebalance_timeout_ms,
            protocols: p.protocols.clone(),
            assignment: Bytes::new(),
            awaiting_join: Some(tx),
            awaiting_sync: None,
            last_heartbeat_ms: self.now(),
            is_new: true,
        };
        g.next_seq += 1;
        if g.phase == Phase::PreparingRebalance && g.initial_join {
            g.new_member_added = true;
        }
        if g.members.is_empty() {
            g.protocol_type = Some(p.protocol_type.clone());
        }
        if g.leader.is_none() {
            g.leader = Some(member_id.clone());
        }
        g.pending.remove(&member_id);
        self.mirror_join(name, &member_id, &member, g.protocol_type.as_deref());
        tracing::debug!(group = name, member = %member_id, "member joins");
        g.members.insert(member_id, member);
        self.maybe_prepare_rebalance(name, g);
        Reply::Later(rx)
    }

    fn update_member_and_rebalance(&self, name: &str, g: &mut Group, p: &JoinParams) -> Reply<JoinResult> {
        let (tx, rx) = oneshot::channel();
        if let Some(m) = g.members.get_mut(&p.member_id) {
            m.protocols = p.protocols.clone();
            m.rebalance_timeout_ms = p.rebalance_timeout_ms;
            m.session_timeout_ms = p.session_timeout_ms;
            if let Some(previous) = m.awaiting_join.replace(tx) {
                // The same member joined again elsewhere; the earlier request is superseded.
                let _ = previous.send(JoinResult::error(&p.member_id, ResponseError::RebalanceInProgress));
            }
        }
        self.maybe_prepare_rebalance(name, g);
        Reply::Later(rx)
    }

    fn maybe_prepare_rebalance(&self, name: &str, g: &mut Group) {
        if matches!(g.phase, Phase::Stable | Phase::CompletingRebalance | Phase::Empty) {
            self.prepare_rebalance(name, g);
        }
    }

    fn prepare_rebalance(&self, name: &str, g: &mut Group) {
        if g.phase == Phase::CompletingRebalance {
            self.reset_and_propagate_assignment_error(g, ResponseError::RebalanceInProgress);
        }
        g.pending_sync.clear();
        let initial = g.phase == Phase::Empty;
        g.phase = Phase::PreparingRebalance;
        g.initial_join = initial;
        g.new_member_added = false;
        g.join_token += 1;
        let timeout = g.rebalance_timeout();
        tracing::debug!(group = name, generation = g.generation, initial, "rebalance starts");
        if initial {
            let delay = self.initial_delay;
            self.spawn_join_timer(name, g.join_token, delay, Some(timeout.saturating_sub(delay)));
        } else {
            self.spawn_join_timer(name, g.join_token, timeout, None);
            self.try_complete_join(name, g);
        }
    }

    /// Ends the join phase if every member rejoined (the initial delayed phase only ends by
    /// its timer, so that members starting together are collected).
    fn try_complete_join(&self, name: &str, g: &mut Group) {
        if g.phase == Phase::PreparingRebalance && !g.initial_join && g.all_joined() {
            self.complete_join(name, g);
        }
    }

    /// Starts the task that ends the join phase `token` after `delay`. With `remaining`, it
    /// is the initial delayed join: it waits again while new members keep arriving.
    fn spawn_join_timer(&self, name: &str, token: u64, delay: Duration, remaining: Option<Duration>) {
        let me = self.me.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            let (mut delay, mut remaining) = (delay, remaining);
            loop {
                tokio::time::sleep(delay).await;
                let Some(inner) = me.upgrade() else { return };
                let mut st = inner.lock();
                let Some(g) = st.get_mut(&name) else { return };
                if g.join_token != token || g.phase != Phase::PreparingRebalance {
                    return;
                }
                if let Some(left) = remaining {
                    if g.new_member_added && !left.is_zero() {
                        g.new_member_added = false;
                        delay = inner.initial_delay.min(left);
                        remaining = Some(left.saturating_sub(delay));
                        continue;
                    }
                }
                inner.complete_join(&name, g);
                return;
            }
        });
    }

    /// Ends the join phase: members that did not rejoin are removed, the generation advances,
    /// and every waiting JoinGroup is answered (the leader with every member's metadata).
    fn complete_join(&self, name: &str, g: &mut Group) {
        g.join_token += 1;
        g.initial_join = false;
        g.new_member_added = false;
        let absent: Vec<String> =
            g.members.iter().filter(|(_, m)| m.awaiting_join.is_none()).map(|(id, _)| id.clone()).collect();
        for id in absent {
            tracing::info!(group = name, member = %id, "member removed: it did not rejoin within the rebalance timeout");
            self.remove_member(name, g, &id);
        }
        g.generation = g.generation.wrapping_add(1).max(1);
        let now = self.now();
        if g.members.is_empty() {
            g.phase = Phase::Empty;
            g.protocol_name = None;
            g.leader = None;
            g.empty_since_ms = now;
            tracing::debug!(group = name, generation = g.generation, "group is empty");
            return;
        }
        g.protocol_name = Some(g.select_protocol());
        g.phase = Phase::CompletingRebalance;
        g.pending_sync = g.members.keys().cloned().collect();
        let everyone = g.joined_members();
        let leader = g.leader.clone().unwrap_or_default();
        let (generation, protocol_type, protocol_name) =
            (g.generation, g.protocol_type.clone(), g.protocol_name.clone());
        tracing::debug!(group = name, generation, leader = %leader, members = g.members.len(), "join phase complete");
        for (id, m) in g.members.iter_mut() {
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
        for id in g.members.keys() {
            self.mirror_heartbeat(name, id, g);
        }
        self.spawn_sync_timer(name, generation, g.rebalance_timeout());
    }

    /// Removes the members of `generation` that have not synced after `timeout` and
    /// rebalances (Kafka's pending-sync expiry): a leader that never sends its assignment would
    /// otherwise leave the followers waiting forever.
    fn spawn_sync_timer(&self, name: &str, generation: i32, timeout: Duration) {
        let me = self.me.clone();
        let name = name.to_string();
        tokio::spawn(async move {
            tokio::time::sleep(timeout).await;
            let Some(inner) = me.upgrade() else { return };
            let mut st = inner.lock();
            let Some(g) = st.get_mut(&name) else { return };
            if g.generation != generation
                || !matches!(g.phase, Phase::CompletingRebalance | Phase::Stable)
                || g.pending_sync.is_empty()
            {
                return;
            }
            let late: Vec<String> = g.pending_sync.iter().cloned().collect();
            for id in late {
                tracing::info!(group = %name, member = %id, "member removed: no SyncGroup within the rebalance timeout");
                inner.remove_member(&name, g, &id);
            }
            inner.prepare_rebalance(&name, g);
        });
    }

    fn reset_and_propagate_assignment_error(&self, g: &mut Group, error: ResponseError) {
        let now = self.now();
        for m in g.members.values_mut() {
            m.assignment = Bytes::new();
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResult::error(error));
                m.last_heartbeat_ms = now;
            }
        }
    }

    fn set_and_propagate_assignment(&self, name: &str, g: &mut Group, mut assignments: HashMap<String, Bytes>) {
        let now = self.now();
        let (protocol_type, protocol_name) = (g.protocol_type.clone(), g.protocol_name.clone());
        for (id, m) in g.members.iter_mut() {
            m.assignment = assignments.remove(id).unwrap_or_default();
            if let Some(tx) = m.awaiting_sync.take() {
                let _ = tx.send(SyncResult {
                    error: None,
                    protocol_type: protocol_type.clone(),
                    protocol_name: protocol_name.clone(),
                    assignment: m.assignment.clone(),
                });
                m.last_heartbeat_ms = now;
            }
        }
        for (id, m) in &g.members {
            self.mirror_join(name, id, m, protocol_type.as_deref());
        }
    }

    /// Removes a member, answering its waiting requests with `UNKNOWN_MEMBER_ID` so the client
    /// rejoins; re-elects the leader. Does not start or complete a rebalance.
    fn remove_member(&self, name: &str, g: &mut Group, member_id: &str) -> bool {
        let Some(mut m) = g.members.remove(member_id) else {
            return false;
        };
        if let Some(tx) = m.awaiting_join.take() {
            let _ = tx.send(JoinResult::error(member_id, ResponseError::UnknownMemberId));
        }
        if let Some(tx) = m.awaiting_sync.take() {
            let _ = tx.send(SyncResult::error(ResponseError::UnknownMemberId));
        }
        g.pending_sync.remove(member_id);
        if g.leader.as_deref() == Some(member_id) {
            g.leader = g.members.iter().min_by_key(|(_, m)| m.seq).map(|(id, _)| id.clone());
        }
        if let Err(e) = self.store.leave_member(name, member_id) {
            if !matches!(e, evident_groups::Error::UnknownMember { .. }) {
                tracing::warn!(group = name, member = member_id, error = %e, "cannot remove the member from the group store");
            }
        }
        true
    }

    fn remove_member_and_update_group(&self, name: &str, g: &mut Group, member_id: &str) {
        if !self.remove_member(name, g, member_id) {
            return;
        }
        match g.phase {
            Phase::Stable | Phase::CompletingRebalance => self.maybe_prepare_rebalance(name, g),
            Phase::PreparingRebalance => self.try_complete_join(name, g),
            Phase::Empty => {}
        }
    }

    fn remove_pending_member(&self, name: &str, g: &mut Group, member_id: &str) -> bool {
        if g.pending.remove(member_id).is_none() {
            return false;
        }
        self.try_complete_join(name, g);
        true
    }

    fn sync(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> Reply<SyncResult> {
        let fail = |e| Reply::Now(SyncResult::error(e));
        if validate_group(group).is_err() {
            return fail(ResponseError::InvalidGroupId);
        }
        let mut st = self.lock();
        let Some(g) = st.get_mut(group) else {
            return fail(ResponseError::UnknownMemberId);
        };
        if !g.members.contains_key(member_id) {
            return fail(ResponseError::UnknownMemberId);
        }
        if generation != g.generation {
            return fail(ResponseError::IllegalGeneration);
        }
        match g.phase {
            Phase::Empty => fail(ResponseError::UnknownMemberId),
            Phase::PreparingRebalance => fail(ResponseError::RebalanceInProgress),
            Phase::CompletingRebalance => {
                let (tx, rx) = oneshot::channel();
                if let Some(m) = g.members.get_mut(member_id) {
                    if let Some(previous) = m.awaiting_sync.replace(tx) {
                        let _ = previous.send(SyncResult::error(ResponseError::RebalanceInProgress));
                    }
                }
                g.pending_sync.remove(member_id);
                if g.leader.as_deref() == Some(member_id) {
                    // Assignments for members not in the group are dropped; members the leader
                    // left out get an empty assignment, as in Kafka.
                    let assignments: HashMap<String, Bytes> =
                        assignments.into_iter().filter(|(id, _)| g.members.contains_key(id)).collect();
                    tracing::debug!(group, generation, "assignment received from the leader");
                    self.set_and_propagate_assignment(group, g, assignments);
                    g.phase = Phase::Stable;
                }
                Reply::Later(rx)
            }
            Phase::Stable => {
                g.pending_sync.remove(member_id);
                let now = self.now();
                let Some(m) = g.members.get_mut(member_id) else {
                    return fail(ResponseError::UnknownMemberId);
                };
                m.last_heartbeat_ms = now;
                let result = SyncResult {
                    error: None,
                    protocol_type: g.protocol_type.clone(),
                    protocol_name: g.protocol_name.clone(),
                    assignment: m.assignment.clone(),
                };
                self.mirror_heartbeat(group, member_id, g);
                Reply::Now(result)
            }
        }
    }

    fn heartbeat(&self, group: &str, generation: i32, member_id: &str) -> Result<(), ResponseError> {
        validate_group(group).map_err(|_| ResponseError::InvalidGroupId)?;
        let now = self.now();
        let mut st = self.lock();
        let g = st.get_mut(group).ok_or(ResponseError::UnknownMemberId)?;
        if generation != g.generation && g.members.contains_key(member_id) {
            return Err(ResponseError::IllegalGeneration);
        }
        let m = g.members.get_mut(member_id).ok_or(ResponseError::UnknownMemberId)?;
        m.last_heartbeat_ms = now;
        let phase = g.phase;
        self.mirror_heartbeat(group, member_id, g);
        match phase {
            Phase::Empty => Err(ResponseError::UnknownMemberId),
            Phase::PreparingRebalance => Err(ResponseError::RebalanceInProgress),
            Phase::CompletingRebalance | Phase::Stable => Ok(()),
        }
    }

    fn leave(&self, group: &str, member_ids: &[String]) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        validate_group(group).map_err(|_| ResponseError::InvalidGroupId)?;
        let mut st = self.lock();
        let Some(g) = st.get_mut(group) else {
            return Ok(member_ids.iter().map(|_| Err(ResponseError::UnknownMemberId)).collect());
        };
        let results = member_ids
            .iter()
            .map(|id| {
                if self.remove_pending_member(group, g, id) {
                    return Ok(());
                }
                if !g.members.contains_key(id) {
                    return Err(ResponseError::UnknownMemberId);
                }
                tracing::debug!(group, member = %id, "member leaves");
                self.remove_member_and_update_group(group, g, id);
                Ok(())
            })
            .collect();
        Ok(results)
    }

    fn validate_commit(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        let now = self.now();
        let mut st = self.lock();
        let Some(g) = st.get_mut(group) else {
            // No membership: a simple (manual) commit is accepted; a commit claiming a
            // generation comes from a member of a group that no longer exists.
            return match (generation < 0, member_id.is_empty()) {
                (true, true) => Ok(()),
                (true, false) => Err(ResponseError::UnknownMemberId),
                (false, _) => Err(ResponseError::IllegalGeneration),
            };
        };
        let as_member = generation >= 0 || !member_id.is_empty() || instance_id.is_some();
        if as_member {
            if !g.members.contains_key(member_id) {
                return Err(ResponseError::UnknownMemberId);
            }
            if generation != g.generation {
                return Err(ResponseError::IllegalGeneration);
            }
        } else if g.phase != Phase::Empty {
            // Only members may commit for a group that has members.
            return Err(ResponseError::UnknownMemberId);
        }
        match g.phase {
            Phase::Empty => Ok(()),
            // Committing while the group prepares a rebalance is allowed, as in Kafka: consumers
            // commit what they processed before they give up their partitions. It counts as a
            // heartbeat.
            Phase::Stable | Phase::PreparingRebalance => {
                if let Some(m) = g.members.get_mut(member_id) {
                    m.last_heartbeat_ms = now;
                    self.mirror_heartbeat(group, member_id, g);
                }
                Ok(())
            }
            Phase::CompletingRebalance => Err(ResponseError::RebalanceInProgress),
        }
    }

    fn sweep(&self) {
        let now = self.now();
        let mut st = self.lock();
        for (name, g) in st.iter_mut() {
            let late: Vec<String> =
                g.pending.iter().filter(|(_, deadline)| now >= **deadline).map(|(id, _)| id.clone()).collect();
            for id in late {
                tracing::debug!(group = %name, member = %id, "pending member expired: it did not join with its member id");
                self.remove_pending_member(name, g, &id);
            }
            let expired: Vec<String> =
                g.members.iter().filter(|(_, m)| m.expired(now)).map(|(id, _)| id.clone()).collect();
            for id in expired {
                tracing::info!(group = %name, member = %id, "member removed: its session expired");
                self.remove_member_and_update_group(name, g, &id);
            }
            // Members kept alive by a waiting request must not be expired by the store either.
            let waiting: Vec<String> = g
                .members
                .iter()
                .filter(|(_, m)| m.awaiting_join.is_some() || m.awaiting_sync.is_some())
                .map(|(id, _)| id.clone())
                .collect();
            for id in waiting {
                self.mirror_heartbeat(name, &id, g);
            }
        }
        st.retain(|_, g| {
            !(g.is_vacant()
                || (g.phase == Phase::Empty
                    && g.members.is_empty()
                    && g.pending.is_empty()
                    && now.saturating_sub(g.empty_since_ms) >= EMPTY_GROUP_RETENTION_MS))
        });
    }

    fn mirror_join(&self, group: &str, member_id: &str, m: &Member, protocol_type: Option<&str>) {
        let assignment = if protocol_type == Some(CONSUMER_PROTOCOL_TYPE) {
            decode_assignment(&m.assignment).unwrap_or_default()
        } else {
            Vec::new()
        };
        let info = MemberInfo {
            member_id: member_id.to_string(),
            client_id: m.client_id.clone(),
            client_host: m.client_host.clone(),
            session_timeout_ms: u32::try_from(m.session_timeout_ms).unwrap_or(SESSION_TIMEOUT_MIN_MS),
            assignment,
        };
        if let Err(e) = self.store.join_member(group, info) {
            tracing::warn!(group, member = member_id, error = %e, "cannot mirror the member into the group store");
        }
    }

    fn mirror_heartbeat(&self, group: &str, member_id: &str, g: &Group) {
        match self.store.heartbeat(group, member_id) {
            Ok(()) => {}
            // The store expired it first (its clock moved past the deadline between two of our
            // sweeps): the coordinator decides, so register it again.
            Err(evident_groups::Error::UnknownMember { .. }) => {
                if let Some(m) = g.members.get(member_id) {
                    self.mirror_join(group, member_id, m, g.protocol_type.as_deref());
                }
            }
            Err(e) => {
                tracing::warn!(group, member = member_id, error = %e, "cannot mirror a heartbeat into the group store")
            }
        }
    }
}

/// A new member id: the client id, a dash and a UUID, as Kafka makes them.
fn new_member_id(client_id: &str) -> String {
    let mut end = client_id.len().min(MEMBER_ID_PREFIX_MAX);
    while !client_id.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}-{}", &client_id[..end], uuid::Uuid::new_v4())
}

/// Decodes a consumer protocol assignment (version i16, then an array of (topic string,
/// array of i32 partitions), then user data, which is ignored) into topics and partitions.
/// None if it is not one; topics whose names evident cannot hold are skipped (no such topic
/// can exist here).
pub fn decode_assignment(bytes: &[u8]) -> Option<Vec<TopicPartitions>> {
    let mut r = Reader(bytes);
    if r.i16()? < 0 {
        return None;
    }
    let topics = usize::try_from(r.i32()?).ok()?;
    // Each topic takes at least 6 bytes: bounds the allocation by what was sent.
    if topics > r.0.len() / 6 {
        return None;
    }
    let mut out = Vec::with_capacity(topics);
    for _ in 0..topics {
        let len = usize::try_from(r.i16()?).ok()?;
        let name = std::str::from_utf8(r.take(len)?).ok()?.to_string();
        let count = usize::try_from(r.i32()?).ok()?;
        if count > r.0.len() / 4 {
            return None;
        }
        let mut partitions = Vec::with_capacity(count);
        for _ in 0..count {
            partitions.push(u32::try_from(r.i32()?).ok()?);
        }
        if let Ok(topic) = TopicName::new(name) {
            out.push(TopicPartitions { topic, partitions });
        }
    }
    Some(out)
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Option<&'a [u8]> {
        if self.0.len() < n {
            return None;
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Some(head)
    }

    fn i16(&mut self) -> Option<i16> {
        self.take(2).map(|b| i16::from_be_bytes([b[0], b[1]]))
    }

    fn i32(&mut self) -> Option<i32> {
        self.take(4).map(|b| i32::from_be_bytes([b[0], b[1], b[2], b[3]]))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use evident_log::clock::ManualClock;
    use evident_log::{Log, LogConfig, TopicConfig};

    const T0: i64 = 1_700_000_000_000;
    const SESSION: i32 = 10_000;

    struct Fixture {
        _dir: tempfile::TempDir,
        store: Arc<GroupStore>,
        clock: Arc<ManualClock>,
        coordinator: Coordinator,
    }

    fn fixture() -> Fixture {
        let dir = tempfile::tempdir().expect("tempdir");
        let log = Arc::new(Log::open(dir.path(), LogConfig::default()).expect("log"));
        log.create_topic("orders", TopicConfig { partitions: 4, ..TopicConfig::default() }).expect("topic");
        let clock = Arc::new(ManualClock::new(T0));
        let store = Arc::new(GroupStore::open(log, clock.clone()).expect("store"));
        let coordinator = Coordinator::with_initial_delay(store.clone(), clock.clone(), Duration::from_millis(30));
        Fixture { _dir: dir, store, clock, coordinator }
    }

    fn params(member_id: &str, client: &str, protocols: &[(&str, &'static [u8])]) -> JoinParams {
        JoinParams {
            group: "g".into(),
            member_id: member_id.into(),
            instance_id: None,
            client_id: client.into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: SESSION,
            rebalance_timeout_ms: 5_000,
            protocol_type: "consumer".into(),
            protocols: protocols.iter().map(|(n, m)| (n.to_string(), Bytes::from_static(m))).collect(),
            require_known_member_id: true,
        }
    }

    async fn resolve<T>(reply: Reply<T>) -> T {
        match reply {
            Reply::Now(value) => value,
            Reply::Later(rx) => tokio::time::timeout(Duration::from_secs(10), rx)
                .await
                .expect("the answer came in time")
                .expect("answered"),
        }
    }

    fn pending<T>(reply: &Reply<T>) -> bool {
        matches!(reply, Reply::Later(_))
    }

    /// A consumer-protocol assignment of `partitions` of `topic`.
    fn assignment(topic: &str, partitions: &[i32]) -> Bytes {
        let mut b = Vec::new();
        b.extend_from_slice(&0i16.to_be_bytes());
        b.extend_from_slice(&1i32.to_be_bytes());
        b.extend_from_slice(&(topic.len() as i16).to_be_bytes());
        b.extend_from_slice(topic.as_bytes());
        b.extend_from_slice(&(partitions.len() as i32).to_be_bytes());
        for p in partitions {
            b.extend_from_slice(&p.to_be_bytes());
        }
        b.extend_from_slice(&(-1i32).to_be_bytes()); // null user data
        Bytes::from(b)
    }

    /// Joins the way librdkafka does at v4+: first without id (MEMBER_ID_REQUIRED), then with it.
    fn join_twice(c: &Coordinator, client: &str, protocols: &[(&str, &'static [u8])]) -> (String, Reply<JoinResult>) {
        let Reply::Now(first) = c.join(params("", client, protocols)) else {
            panic!("the first join must answer at once")
        };
        assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
        assert!(first.member_id.starts_with(&format!("{client}-")), "{}", first.member_id);
        let id = first.member_id.clone();
        (id.clone(), c.join(params(&id, client, protocols)))
    }

    /// Two members in a stable generation: (leader, follower, generation).
    async fn stable_pair(f: &Fixture) -> (String, String, i32) {
        let c = &f.coordinator;
        let (a, ja) = join_twice(c, "a", &[("range", b"ma")]);
        let (b, jb) = join_twice(c, "b", &[("range", b"mb")]);
        let (ja, jb) = (resolve(ja).await, resolve(jb).await);
        let generation = ja.generation_id;
        let sb = c.sync("g", generation, &b, Vec::new());
        let sa = c.sync(
            "g",
            generation,
            &a,
            vec![(a.clone(), assignment("orders", &[0, 1])), (b.clone(), assignment("orders", &[2, 3]))],
        );
        assert_eq!(resolve(sa).await.error, None);
        assert_eq!(resolve(sb).await.error, None);
        assert_eq!(jb.generation_id, generation);
        (a, b, generation)
    }

    #[tokio::test]
    async fn two_members_join_one_generation_and_the_leader_sees_both() {
        let f = fixture();
        let c = &f.coordinator;
        let (a, ja) = join_twice(c, "a", &[("range", b"ma-range"), ("roundrobin", b"ma-rr")]);
        let (b, jb) = join_twice(c, "b", &[("roundrobin", b"mb-rr"), ("range", b"mb-range")]);
        assert!(pending(&ja) && pending(&jb), "joins wait for the join phase to end");
        let (ja, jb) = (resolve(ja).await, resolve(jb).await);
        assert_eq!((ja.error, jb.error), (None, None));
        assert_eq!((ja.generation_id, jb.generation_id), (1, 1));
        assert_eq!(ja.leader, a);
        assert_eq!(jb.leader, a);
        // One vote each: the leader's preference breaks the tie.
        assert_eq!(ja.protocol_name.as_deref(), Some("range"));
        assert_eq!(jb.protocol_name.as_deref(), Some("range"));
        let seen: Vec<(String, Bytes)> = ja.members.iter().map(|m| (m.member_id.clone(), m.metadata.clone())).collect();
        assert_eq!(seen, [(a.clone(), Bytes::from_static(b"ma-range")), (b.clone(), Bytes::from_static(b"mb-range"))]);
        assert!(jb.members.is_empty(), "followers do not get the member list");
        assert_eq!(c.describe("g").expect("group").phase, Phase::CompletingRebalance);
        assert!(f.store.has_active_members("g"));
    }

    #[tokio::test]
    async fn sync_hands_each_member_its_assignment_once_the_leader_sends_it() {
        let f = fixture();
        let c = &f.coordinator;
        let (a, ja) = join_twice(c, "a", &[("range", b"ma")]);
        let (b, jb) = join_twice(c, "b", &[("range", b"mb")]);
        let (ja, _) = (resolve(ja).await, resolve(jb).await);
        let follower = c.sync("g", 1, &b, Vec::new());
        let Reply::Later(mut follower) = follower else { panic!("the follower waits for the leader") };
        assert!(follower.try_recv().is_err());
        assert_eq!(c.sync("g", 0, &b, Vec::new()).now_error(), Some(ResponseError::IllegalGeneration));
        assert_eq!(c.sync("g", 1, "nobody", Vec::new()).now_error(), Some(ResponseError::UnknownMemberId));
        let leader = c.sync(
            "g",
            ja.generation_id,
            &a,
            vec![
                (a.clone(), assignment("orders", &[0, 1])),
                (b.clone(), assignment("orders", &[2, 3])),
                ("stranger".into(), assignment("orders", &[9])),
            ],
        );
        let leader = resolve(leader).await;
        assert_eq!(leader.assignment, assignment("orders", &[0, 1]));
        let follower =
            tokio::time::timeout(Duration::from_secs(5), &mut follower).await.expect("answered").expect("sent");
        assert_eq!(follower.assignment, assignment("orders", &[2, 3]));
        assert_eq!(follower.protocol_name.as_deref(), Some("range"));
        // A late sync in the stable group gets the stored assignment.
        assert_eq!(resolve(c.sync("g", 1, &b, Vec::new())).await.assignment, assignment("orders", &[2, 3]));
        let view = c.describe("g").expect("group");
        assert_eq!(view.phase, Phase::Stable);
        assert_eq!(view.protocol_name, "range");
        assert_eq!(view.members[1].assignment, assignment("orders", &[2, 3]));
        assert_eq!(view.members[1].metadata, Bytes::from_static(b"mb"));
        // The store shows the members and the partitions they consume.
        let described = f.store.describe("g").expect("store describe");
        let assigned: Vec<(String, Vec<u32>)> = described
            .members
            .iter()
            .map(|m| (m.client_id.clone(), m.assignment.iter().flat_map(|t| t.partitions.clone()).collect()))
            .collect();
        assert_eq!(assigned.len(), 2);
        assert!(assigned.contains(&("a".to_string(), vec![0, 1])));
        assert!(assigned.contains(&("b".to_string(), vec![2, 3])));
        assert_eq!(c.heartbeat("g", 1, &a), Ok(()));
    }

    #[tokio::test]
    async fn a_new_member_makes_the_others_rejoin_into_a_new_generation() {
        let f = fixture();
        let c = &f.coordinator;
        let (a, b, generation) = stable_pair(&f).await;
        let (cid, jc) = join_twice(c, "c", &[("range", b"mc")]);
        assert_eq!(c.heartbeat("g", generation, &a), Err(ResponseError::RebalanceInProgress));
        assert_eq!(c.heartbeat("g", generation, &b), Err(ResponseError::RebalanceInProgress));
        // Commits are still accepted while the group prepares the rebalance.
        assert_eq!(c.validate_commit("g", &a, None, generation), Ok(()));
        let ja = c.join(params(&a, "a", &[("range", b"ma")]));
        assert!(pending(&ja), "the join phase waits for b");
        let jb = c.join(params(&b, "b", &[("range", b"mb")]));
        let (ja, jb, jc) = (resolve(ja).await, resolve(jb).await, resolve(jc).await);
        assert_eq!([ja.generation_id, jb.generation_id, jc.generation_id], [generation + 1; 3]);
        assert_eq!(ja.leader, a);
        assert_eq!(ja.members.len(), 3);
        assert_eq!(jc.member_id, cid);
        assert_eq!(c.heartbeat("g", generation, &a), Err(ResponseError::IllegalGeneration));
        assert_eq!(c.heartbeat("g", generation + 1, &a), Ok(()));
    }

    #[tokio::test]
    async fn a_member_that_does_not_rejoin_is_removed_after_the_rebalance_timeout() {
        let f = fixture();
        let c = &f.coordinator;
        let quick = |id: &str, client: &str| {
            let mut p = params(id, client, &[("range", b"m")]);
            p.rebalance_timeout_ms = 300;
            p
        };
        let (a, ja) = join_twice(c, "a", &[("range", b"m")]);
        let (b, jb) = join_twice(c, "b", &[("range", b"m")]);
        drop((ja, jb));
        // Rejoin both with a short rebalance timeout; then only b rejoins for the next one.
        let (ja, jb) = (c.join(quick(&a, "a")), c.join(quick(&b, "b")));
        let (ja, jb) = (resolve(ja).await, resolve(jb).await);
        let generation = ja.generation_id;
        resolve(c.sync("g", generation, &a, Vec::new())).await;
        resolve(c.sync("g", generation, &b, Vec::new())).await;
        let mut changed = quick(&b, "b");
        changed.protocols = vec![("range".into(), Bytes::from_static(b"new metadata"))];
        let started = std::time::Instant::now();
        let jb2 = resolve(c.join(changed)).await;
        assert!(started.elapsed() >= Duration::from_millis(300), "{:?}", started.elapsed());
        assert_eq!(jb2.generation_id, generation + 1);
        assert_eq!(jb2.leader, b, "the remaining member leads");
        assert_eq!(jb2.members.len(), 1);
        assert_eq!(jb.leader, a);
        assert_eq!(c.heartbeat("g", jb2.generation_id, &a), Err(ResponseError::UnknownMemberId));
        assert_eq!(resolve(c.join(quick(&a, "a"))).await.error, Some(ResponseError::UnknownMemberId));
    }

    #[tokio::test]
    async fn leaving_rebalances_the_others() {
        let f = fixture();
        let c = &f.coordinator;
        let (a, b, generation) = stable_pair(&f).await;
        assert_eq!(c.leave("g", std::slice::from_ref(&a)), Ok(vec![Ok(())]));
        assert_eq!(c.leave("g", std::slice::from_ref(&a)), Ok(vec![Err(ResponseError::UnknownMemberId)]));
        assert_eq!(c.heartbeat("g", generation, &b), Err(ResponseError::RebalanceInProgress));
        let jb = resolve(c.join(params(&b, "b", &[("range", b"mb")]))).await;
        assert_eq!(jb.generation_id, generation + 1);
        assert_eq!(jb.leader, b);
        assert_eq!(jb.members.len(), 1);
        assert_eq!(f.store.describe("g").expect("describe").members.len(), 1);
        // The last one leaving empties the group; a simple commit is then accepted again.
        assert_eq!(c.validate_commit("g", "", None, -1), Err(ResponseError::UnknownMemberId));
        assert_eq!(c.leave("g", std::slice::from_ref(&b)), Ok(vec![Ok(())]));
        let view = c.describe("g").expect("group");
        assert_eq!(view.phase, Phase::Empty);
        assert_eq!(view.protocol_type, "consumer");
        assert!(!f.store.has_active_members("g"));
        assert_eq!(c.validate_commit("g", "", None, -1), Ok(()));
        assert_eq!(c.forget_empty("g"), Ok(true));
        assert!(c.describe("g").is_none());
    }

    #[tokio::test]
    async fn a_silent_member_expires_with_its_session() {
        let f = fixture();
        let c = &f.coordinator;
        let (a, b, generation) = stable_pair(&f).await;
        f.clock.set(T0 + i64::from(SESSION) - 1);
        assert_eq!(c.heartbeat("g", generation, &a), Ok(()));
        c.sweep();
        assert!(c.describe("g").expect("group").members.len() == 2, "b's session is not over yet");
        f.clock.set(T0 + i64::from(SESSION));
        c.sweep();
        assert_eq!(c.heartbeat("g", generation, &b), Err(ResponseError::UnknownMemberId));
        assert_eq!(c.heartbeat("g", generation, &a), Err(ResponseError::RebalanceInProgress));
        let ja = resolve(c.join(params(&a, "a", &[("range", b"ma")]))).await;
        assert_eq!((ja.generation_id, ja.members.len()), (generation + 1, 1));
        let ids: Vec<String> =
            f.store.describe("g").expect("describe").members.into_iter().map(|m| m.member_id).collect();
        assert_eq!(ids, [a]);
    }

    #[tokio::test]
    async fn members_waiting_in_a_join_are_kept_alive() {
        let f = fixture();
        let c = &f.coordinator;
        let (a, b, _) = stable_pair(&f).await;
        // a rejoins and waits for b; far past a's session, a is still a member.
        let ja = c.join(params(&a, "a", &[("range", b"ma")]));
        f.clock.set(T0 + 3 * i64::from(SESSION));
        c.sweep();
        let view = c.describe("g").expect("group");
        assert_eq!(view.members.len(), 1, "b expired, a is kept alive by its join");
        assert!(f.store.has_active_members("g"), "the store keeps a too");
        let ja = resolve(ja).await;
        assert_eq!(ja.members.len(), 1);
        assert_ne!(ja.leader, b);
    }

    #[tokio::test]
    async fn an_unused_member_id_expires() {
        let f = fixture();
        let c = &f.coordinator;
        let Reply::Now(first) = c.join(params("", "a", &[("range", b"ma")])) else { panic!("answered at once") };
        assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
        f.clock.set(T0 + i64::from(SESSION));
        c.sweep();
        assert!(c.describe("g").is_none(), "a group with nothing left is forgotten");
        let late = resolve(c.join(params(&first.member_id, "a", &[("range", b"ma")]))).await;
        assert_eq!(late.error, Some(ResponseError::UnknownMemberId));
    }

    #[tokio::test]
    async fn old_versions_join_without_member_id_required() {
        let f = fixture();
        let c = &f.coordinator;
        let mut p = params("", "a", &[("range", b"ma")]);
        p.require_known_member_id = false;
        let joined = resolve(c.join(p)).await;
        assert_eq!(joined.error, None);
        assert_eq!(joined.generation_id, 1);
        assert_eq!(joined.leader, joined.member_id);
    }

    #[tokio::test]
    async fn joins_are_checked() {
        let f = fixture();
        let c = &f.coordinator;
        let mut p = params("", "a", &[("range", b"ma")]);
        p.session_timeout_ms = 5_999;
        assert_eq!(c.join(p).now_error(), Some(ResponseError::InvalidSessionTimeout));
        let mut p = params("", "a", &[("range", b"ma")]);
        p.group = String::new();
        assert_eq!(c.join(p).now_error(), Some(ResponseError::InvalidGroupId));
        assert_eq!(c.join(params("", "a", &[])).now_error(), Some(ResponseError::InconsistentGroupProtocol));
        assert_eq!(c.join(params("ghost", "a", &[("range", b"m")])).now_error(), Some(ResponseError::UnknownMemberId));
        let (_a, ja) = join_twice(c, "a", &[("range", b"ma")]);
        resolve(ja).await;
        let mut other_type = params("", "x", &[("range", b"m")]);
        other_type.protocol_type = "connect".into();
        assert_eq!(c.join(other_type).now_error(), Some(ResponseError::InconsistentGroupProtocol));
        assert_eq!(
            c.join(params("", "x", &[("sticky", b"m")])).now_error(),
            Some(ResponseError::InconsistentGroupProtocol)
        );
        assert_eq!(c.heartbeat("g", 1, "ghost"), Err(ResponseError::UnknownMemberId));
        assert_eq!(c.heartbeat("nope", 1, "ghost"), Err(ResponseError::UnknownMemberId));
    }

    #[tokio::test]
    async fn commits_are_fenced_by_member_and_generation() {
        let f = fixture();
        let c = &f.coordinator;
        assert_eq!(c.validate_commit("fresh", "", None, -1), Ok(()), "a simple commit needs no group");
        assert_eq!(c.validate_commit("fresh", "", None, 3), Err(ResponseError::IllegalGeneration));
        assert_eq!(c.validate_commit("fresh", "m", None, -1), Err(ResponseError::UnknownMemberId));
        let (a, ja) = join_twice(c, "a", &[("range", b"ma")]);
        let ja = resolve(ja).await;
        // Joined but not synced: the generation is not complete.
        assert_eq!(c.validate_commit("g", &a, None, ja.generation_id), Err(ResponseError::RebalanceInProgress));
        resolve(c.sync("g", ja.generation_id, &a, vec![(a.clone(), assignment("orders", &[0]))])).await;
        assert_eq!(c.validate_commit("g", &a, None, ja.generation_id), Ok(()));
        assert_eq!(c.validate_commit("g", &a, None, ja.generation_id + 1), Err(ResponseError::IllegalGeneration));
        assert_eq!(c.validate_commit("g", "ghost", None, ja.generation_id), Err(ResponseError::UnknownMemberId));
        assert_eq!(c.validate_commit("g", "", None, -1), Err(ResponseError::UnknownMemberId));
    }

    #[tokio::test]
    async fn a_leader_that_never_syncs_is_removed() {
        let f = fixture();
        let c = &f.coordinator;
        let mut pa = params("", "a", &[("range", b"ma")]);
        pa.rebalance_timeout_ms = 200;
        pa.require_known_member_id = false;
        let mut pb = pa.clone();
        pb.client_id = "b".into();
        let (ja, jb) = (c.join(pa), c.join(pb));
        let (ja, jb) = (resolve(ja).await, resolve(jb).await);
        let leader = ja.leader.clone();
        let follower = if ja.member_id == leader { jb.member_id.clone() } else { ja.member_id.clone() };
        let waiting = c.sync("g", ja.generation_id, &follower, Vec::new());
        let answer = resolve(waiting).await;
        assert_eq!(
            answer.error,
            Some(ResponseError::RebalanceInProgress),
            "the sync is released when the leader is dropped"
        );
        assert_eq!(c.heartbeat("g", ja.generation_id, &leader), Err(ResponseError::UnknownMemberId));
    }

    #[tokio::test]
    async fn static_members_replace_their_previous_incarnation() {
        let f = fixture();
        let c = &f.coordinator;
        let mut p = params("", "a", &[("range", b"ma")]);
        p.instance_id = Some("instance-1".into());
        let first = resolve(c.join(p.clone())).await;
        assert_eq!(first.error, None, "static members need no second join");
        let second = resolve(c.join(p)).await;
        assert_eq!(second.generation_id, first.generation_id + 1);
        assert_eq!(second.members.len(), 1);
        assert_eq!(second.members[0].instance_id.as_deref(), Some("instance-1"));
        assert_eq!(c.heartbeat("g", second.generation_id, &first.member_id), Err(ResponseError::UnknownMemberId));
    }

    #[test]
    fn assignments_decode() {
        let decoded = decode_assignment(&assignment("orders", &[2, 0])).expect("decodes");
        assert_eq!(decoded.len(), 1);
        assert_eq!(decoded[0].topic.as_str(), "orders");
        assert_eq!(decoded[0].partitions, [2, 0]);
        assert!(decode_assignment(&[]).is_none());
        assert!(decode_assignment(&assignment("orders", &[-1])).is_none());
        // A count larger than the bytes that follow is refused before allocating.
        let mut huge = vec![0, 0];
        huge.extend_from_slice(&i32::MAX.to_be_bytes());
        assert!(decode_assignment(&huge).is_none());
        let bad_name = decode_assignment(&assignment("not a topic!", &[1])).expect("decodes");
        assert!(bad_name.is_empty(), "topics evident cannot hold are skipped");
    }

    impl<T> Reply<T> {
        fn now_error(self) -> Option<ResponseError>
        where
            T: HasError,
        {
            match self {
                Reply::Now(value) => value.error(),
                Reply::Later(_) => panic!("expected an immediate answer"),
            }
        }
    }

    trait HasError {
        fn error(&self) -> Option<ResponseError>;
    }

    impl HasError for JoinResult {
        fn error(&self) -> Option<ResponseError> {
            self.error
        }
    }

    impl HasError for SyncResult {
        fn error(&self) -> Option<ResponseError> {
            self.error
        }
    }
}
