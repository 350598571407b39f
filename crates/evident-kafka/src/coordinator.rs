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
//! 10 s pass; see the deviations). A JoinGroup's answer waits until the join phase completes:
//! every member has rejoined, or the rebalance timeout (the
//! largest of the members') passed, and then the members that did not rejoin are removed. The
//! first join of an empty group waits [`INITIAL_REBALANCE_DELAY`] more, extended by the same
//! again each time another member arrives (up to the rebalance timeout), so consumers started
//! together land in one generation. A SyncGroup waits until the leader's assignment arrives,
//! or the rebalance restarts (`REBALANCE_IN_PROGRESS`); members that do not sync within the
//! rebalance timeout are removed and the group rebalances again.
//!
//! # Layout
//!
//! - `coordinator/group.rs`: one group's state machine, pure (it takes `now`, reads no clock,
//!   spawns nothing), with `check()` asserting its invariants after every transition;
//! - `coordinator/timers.rs`: the task that runs the due deadlines (`tick`) when they come;
//! - `coordinator/mirror.rs`: membership mirrored into `evident-groups`, and which of the two
//!   is the authority (the coordinator);
//! - `coordinator/messages.rs`: what the handlers pass in and get back;
//! - `crate::consumer_protocol`: the decoders of the consumer protocol's embedded bytes.
//!
//! # Time
//!
//! One clock: the injected [`Clock`], the one `GroupStore` expires members with. Session
//! deadlines, the initial rebalance delay, the rebalance (join) timeout and the sync timeout
//! are all deadlines in its milliseconds, held by each group; `tick` runs what is due. In the
//! server a task calls it when the earliest deadline comes (timers.rs); tests move a
//! `ManualClock` and call it, so they never sleep. Members waiting in a JoinGroup or
//! SyncGroup are kept alive meanwhile, as in Kafka (they cannot heartbeat while waiting),
//! except that a brand-new member waiting to join is dropped after five minutes. Nothing
//! blocks a tokio worker: waiting requests hold a oneshot receiver; the group map's mutex is
//! only held for bookkeeping, never across an await or an append.
//!
//! # Deviations from Kafka
//!
//! - The initial rebalance delay is [`INITIAL_REBALANCE_DELAY`] (200 ms) instead of Kafka's
//!   `group.initial.rebalance.delay.ms` of 3 s: a single broker on one machine sees consumers
//!   started together within milliseconds, and tests and CLIs should not pay 3 s per group. It
//!   is extended for every new member of any empty group, not only of a never-used one.
//! - Membership is not persisted: after a restart the members' requests are answered
//!   `UNKNOWN_MEMBER_ID` (or `ILLEGAL_GENERATION` for a commit) and they rejoin.
//! - Static membership (KIP-345): see `Group::replace_static_member` (a restarted member gets
//!   its partitions back without a rebalance) and `Group::check_instance` (the replaced
//!   incarnation is fenced).
//! - Pending member ids (KIP-394) are kept 10 s (`PENDING_MEMBER_TIMEOUT_MS`) instead of
//!   the session timeout, at most `PENDING_MEMBERS_MAX` (1,000) per group with the oldest
//!   forgotten beyond, do not count against the group's size, and do not hold a join phase
//!   open: in Kafka anyone can fill a group with pending ids and lock its consumers out for up
//!   to 30 minutes (reliability probe 5e). A real client rejoins within milliseconds.
//! - Protocol metadata is bounded: 1 MiB per JoinGroup (`INVALID_REQUEST` beyond), 64 MiB per
//!   group and 256 MiB over every group (`GROUP_MAX_SIZE_REACHED` beyond: the group has no
//!   room for this member). Kafka bounds it only by the request size and the size of the
//!   group's record in `__consumer_offsets`.
//! - A group that stays empty for `EMPTY_GROUP_RETENTION_MS` (10 minutes) is forgotten by the
//!   coordinator (its committed offsets stay in the store); its next join starts again at
//!   generation 1.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};
use std::time::Duration;

use bytes::Bytes;
use evident_groups::{
    validate_group, GroupStore, MEMBER_FIELD_LEN_MAX, SESSION_TIMEOUT_MAX_MS, SESSION_TIMEOUT_MIN_MS,
};
use evident_log::clock::Clock;
use kafka_protocol::error::ResponseError;
use tokio::sync::Notify;

mod group;
mod messages;
mod mirror;
mod timers;

use group::Group;
pub use messages::{GroupView, JoinParams, JoinResult, Phase, Reply, SyncResult};

/// How long the first join of an empty group waits for more members (Kafka's
/// `group.initial.rebalance.delay.ms`, 3 s there; see the module documentation).
pub const INITIAL_REBALANCE_DELAY: Duration = Duration::from_millis(200);
/// The protocol type of Kafka consumers, whose assignments evident decodes for the store.
const CONSUMER_PROTOCOL_TYPE: &str = "consumer";
/// Longest client id used as a member id's prefix: the store bounds member ids (and Kafka's
/// are the client id plus a UUID, so a longer client id would make an id the store refuses).
const MEMBER_ID_PREFIX_MAX: usize = MEMBER_FIELD_LEN_MAX - 64;

/// The group coordinator.
pub struct Coordinator {
    inner: Arc<Inner>,
}

struct Inner {
    /// The timer task holds this, so it ends when the coordinator is dropped.
    me: Weak<Inner>,
    store: Arc<GroupStore>,
    clock: Arc<dyn Clock>,
    initial_delay_ms: i64,
    groups: Mutex<HashMap<String, Group>>,
    /// Protocol metadata bytes held by every group's members (see `group::METADATA_MAX_BYTES`).
    metadata_total: Arc<AtomicUsize>,
    /// Wakes the timer task when a transition may have set an earlier deadline.
    rearmed: Arc<Notify>,
    /// The timer task runs (or, for a coordinator ticked by hand, never will).
    timers_started: AtomicBool,
}

impl Coordinator {
    /// A coordinator over the group store, its deadlines run by a task on the current tokio
    /// runtime (started with the first join).
    pub fn new(groups: Arc<GroupStore>, clock: Arc<dyn Clock>) -> Self {
        Self::build(groups, clock, INITIAL_REBALANCE_DELAY, false)
    }

    /// A coordinator whose deadlines run only when [`Coordinator::tick`] is called: for tests
    /// on a manual clock.
    #[cfg(test)]
    pub(crate) fn ticked_by_hand(groups: Arc<GroupStore>, clock: Arc<dyn Clock>, initial_delay: Duration) -> Self {
        Self::build(groups, clock, initial_delay, true)
    }

    fn build(groups: Arc<GroupStore>, clock: Arc<dyn Clock>, initial_delay: Duration, by_hand: bool) -> Self {
        let inner = Arc::new_cyclic(|me| Inner {
            me: me.clone(),
            store: groups,
            clock,
            initial_delay_ms: i64::try_from(initial_delay.as_millis()).unwrap_or(i64::MAX),
            groups: Mutex::new(HashMap::new()),
            metadata_total: Arc::default(),
            rearmed: Arc::new(Notify::new()),
            timers_started: AtomicBool::new(by_hand),
        });
        Self { inner }
    }

    /// JoinGroup.
    pub fn join(&self, p: JoinParams) -> Reply<JoinResult> {
        let inner = &self.inner;
        if !inner.timers_started.swap(true, Ordering::SeqCst) && !timers::spawn(inner.me.clone()) {
            // Outside a runtime (only possible from a test): try again next time.
            inner.timers_started.store(false, Ordering::SeqCst);
        }
        if validate_group(&p.group).is_err() {
            return Reply::Now(JoinResult::error(&p.member_id, ResponseError::InvalidGroupId));
        }
        let session_ok = u32::try_from(p.session_timeout_ms)
            .is_ok_and(|ms| (SESSION_TIMEOUT_MIN_MS..=SESSION_TIMEOUT_MAX_MS).contains(&ms));
        if !session_ok {
            return Reply::Now(JoinResult::error(&p.member_id, ResponseError::InvalidSessionTimeout));
        }
        let now = inner.now();
        let mut st = inner.lock();
        if !p.member_id.is_empty() && !st.contains_key(&p.group) {
            return Reply::Now(JoinResult::error(&p.member_id, ResponseError::UnknownMemberId));
        }
        let g = st.entry(p.group.clone()).or_insert_with(|| Group::new(&p.group, now, inner.metadata_total.clone()));
        let reply = g.join(&p, now, inner.initial_delay_ms);
        inner.settle(&mut st, &p.group);
        inner.rearmed.notify_one();
        reply
    }

    /// SyncGroup; `assignments` (member id, assignment) are only looked at from the leader.
    pub fn sync(
        &self,
        group: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> Reply<SyncResult> {
        if validate_group(group).is_err() {
            return Reply::Now(SyncResult::error(ResponseError::InvalidGroupId));
        }
        let inner = &self.inner;
        let now = inner.now();
        let mut st = inner.lock();
        let Some(g) = st.get_mut(group) else {
            return Reply::Now(SyncResult::error(ResponseError::UnknownMemberId));
        };
        let reply = g.sync(generation, member_id, assignments, now);
        inner.settle(&mut st, group);
        reply
    }

    /// Whether a Heartbeat or SyncGroup from this member, naming this `group.instance.id`, comes
    /// from a static member's replaced incarnation (`FENCED_INSTANCE_ID`; see
    /// `Group::check_instance`). Checked by the handlers before the call itself: an incarnation
    /// replaced in between is answered `UNKNOWN_MEMBER_ID` by that call, as before.
    pub fn check_instance(&self, group: &str, member_id: &str, instance_id: Option<&str>) -> Result<(), ResponseError> {
        let st = self.inner.lock();
        st.get(group).map_or(Ok(()), |g| g.check_instance(member_id, instance_id))
    }

    /// Heartbeat.
    pub fn heartbeat(&self, group: &str, generation: i32, member_id: &str) -> Result<(), ResponseError> {
        validate_group(group).map_err(|_| ResponseError::InvalidGroupId)?;
        let inner = &self.inner;
        let now = inner.now();
        let mut st = inner.lock();
        let g = st.get_mut(group).ok_or(ResponseError::UnknownMemberId)?;
        let result = g.heartbeat(generation, member_id, now);
        inner.settle(&mut st, group);
        result
    }

    /// LeaveGroup of the given members: the group-level error, or each member's result.
    pub fn leave(&self, group: &str, member_ids: &[String]) -> Result<Vec<Result<(), ResponseError>>, ResponseError> {
        validate_group(group).map_err(|_| ResponseError::InvalidGroupId)?;
        let inner = &self.inner;
        let now = inner.now();
        let mut st = inner.lock();
        let Some(g) = st.get_mut(group) else {
            return Ok(member_ids.iter().map(|_| Err(ResponseError::UnknownMemberId)).collect());
        };
        let results = g.leave(member_ids, now, inner.initial_delay_ms);
        inner.settle(&mut st, group);
        inner.rearmed.notify_one();
        Ok(results)
    }

    /// Whether an OffsetCommit from this member and generation may commit now.
    pub fn validate_commit(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        self.validate(group, member_id, instance_id, generation, false)
    }

    /// TxnOffsetCommit's check of the group metadata a transaction's offsets carry (KIP-447: the
    /// offsets of a zombie, whose consumer's generation is over or who left, are refused with
    /// `ILLEGAL_GENERATION` or `UNKNOWN_MEMBER_ID`, which kafka-clients raises as
    /// CommitFailedException), as Kafka's classic groups check it: as OffsetCommit, except that
    /// offsets naming no member (generation -1: a producer whose consumer never joined, or a
    /// TxnOffsetCommit before v3) are taken whatever the group, and a rebalance in progress does
    /// not refuse them.
    pub fn validate_txn_commit(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
    ) -> Result<(), ResponseError> {
        self.validate(group, member_id, instance_id, generation, true)
    }

    fn validate(
        &self,
        group: &str,
        member_id: &str,
        instance_id: Option<&str>,
        generation: i32,
        transactional: bool,
    ) -> Result<(), ResponseError> {
        let inner = &self.inner;
        let now = inner.now();
        let mut st = inner.lock();
        let Some(g) = st.get_mut(group) else {
            // No membership: a simple (manual) commit is accepted; a commit claiming a
            // generation comes from a member of a group that no longer exists.
            return match (generation < 0, member_id.is_empty()) {
                (true, true) => Ok(()),
                // Kafka makes the group (a simple one) for a transaction's offsets and takes them.
                (true, false) if transactional => Ok(()),
                (true, false) => Err(ResponseError::UnknownMemberId),
                (false, _) => Err(ResponseError::IllegalGeneration),
            };
        };
        let result = g.validate_commit(member_id, instance_id, generation, now, transactional);
        inner.settle(&mut st, group);
        result
    }

    /// The group as the coordinator knows it (None: it has no membership state).
    pub fn describe(&self, group: &str) -> Option<GroupView> {
        self.inner.lock().get(group).map(Group::view)
    }

    /// Every group the coordinator knows, by name.
    pub fn list(&self) -> Vec<GroupView> {
        let st = self.inner.lock();
        let mut views: Vec<GroupView> = st.values().map(Group::view).collect();
        views.sort_by(|a, b| a.group.cmp(&b.group));
        views
    }

    /// Forgets an empty group's membership state before its offsets are deleted:
    /// `NON_EMPTY_GROUP` while it has members; Ok(whether the coordinator knew it).
    pub fn forget_empty(&self, group: &str) -> Result<bool, ResponseError> {
        let mut st = self.inner.lock();
        match st.get(group) {
            None => Ok(false),
            Some(g) if g.phase() == Phase::Empty => {
                st.remove(group);
                Ok(true)
            }
            Some(_) => Err(ResponseError::NonEmptyGroup),
        }
    }

    /// Runs everything due at the clock's now: ends join phases, removes members that did not
    /// sync, expires sessions and unused member ids, forgets long-empty groups. The timer task
    /// runs the same (`Inner::tick`); tests call this after moving a manual clock.
    #[cfg(test)]
    pub(crate) fn tick(&self) {
        self.inner.tick();
    }
}

impl Inner {
    fn lock(&self) -> MutexGuard<'_, HashMap<String, Group>> {
        // A panic under the lock is a bug (a failed `check`); the other groups are still
        // consistent, so keep serving them rather than fail every later request.
        self.groups.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }

    /// After a transition of `name`: check its invariants, mirror its effects into the store,
    /// and drop it if nothing is left worth keeping.
    fn settle(&self, st: &mut HashMap<String, Group>, name: &str) {
        let Some(g) = st.get_mut(name) else { return };
        g.check();
        mirror::apply(&self.store, name, g.take_mirror());
        if g.is_vacant() {
            st.remove(name);
        }
    }

    fn tick(&self) {
        let now = self.now();
        let mut st = self.lock();
        let names: Vec<String> = st.keys().cloned().collect();
        for name in names {
            if let Some(g) = st.get_mut(&name) {
                g.tick(now, self.initial_delay_ms);
                g.check();
                mirror::apply(&self.store, &name, g.take_mirror());
            }
        }
        st.retain(|_, g| !g.forgettable(now));
    }

    /// The earliest join or sync deadline of any group.
    fn next_deadline(&self) -> Option<i64> {
        self.lock().values().filter_map(Group::next_deadline).min()
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

#[cfg(test)]
mod tests;
