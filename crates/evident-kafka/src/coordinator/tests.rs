//! The coordinator's behaviour, driven as the handlers drive it, on a manual clock: every
//! delay and timeout (initial rebalance delay, rebalance timeout, sync timeout, sessions) runs
//! when the test moves the clock and calls `tick`, so no test sleeps or waits on the wall
//! clock, and each asserts both sides of a deadline (one millisecond before, and at it).

use std::sync::Arc;

use bytes::Bytes;
use evident_groups::GroupStore;
use evident_log::clock::{Clock, ManualClock};
use evident_log::{Log, LogConfig, TopicConfig};
use kafka_protocol::error::ResponseError;

use super::*;

const T0: i64 = 1_700_000_000_000;
const SESSION: i32 = 10_000;
/// The initial rebalance delay of the fixture's coordinator.
const DELAY: i64 = 30;

struct Fixture {
    _dir: tempfile::TempDir,
    store: Arc<GroupStore>,
    clock: Arc<ManualClock>,
    coordinator: Coordinator,
}

impl Fixture {
    /// Moves the clock `ms` forward and runs what is due.
    fn advance(&self, ms: i64) {
        self.clock.set(self.clock.now_ms() + ms);
        self.coordinator.tick();
    }

    /// Ends an initial join phase in which a second member arrived (so it was extended once).
    fn end_initial_join(&self) {
        self.advance(DELAY);
        self.advance(DELAY);
    }

    fn now(&self) -> i64 {
        self.clock.now_ms()
    }
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().expect("tempdir");
    let log = Arc::new(Log::open(dir.path(), LogConfig::default()).expect("log"));
    log.create_topic("orders", TopicConfig { partitions: 4, ..TopicConfig::default() }).expect("topic");
    let clock = Arc::new(ManualClock::new(T0));
    let store = Arc::new(GroupStore::open(log, clock.clone()).expect("store"));
    let coordinator =
        Coordinator::ticked_by_hand(store.clone(), clock.clone(), Duration::from_millis(DELAY.unsigned_abs()));
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

/// The answer, which must have been given by now.
fn answer<T>(reply: &mut Reply<T>) -> T
where
    T: Clone,
{
    match reply {
        Reply::Now(value) => value.clone(),
        Reply::Later(rx) => rx.try_recv().expect("answered by now"),
    }
}

fn answered<T>(reply: &mut Reply<T>) -> bool {
    match reply {
        Reply::Now(_) => true,
        Reply::Later(rx) => !rx.is_empty(),
    }
}

fn now_error<T: HasError>(reply: Reply<T>) -> Option<ResponseError> {
    match reply {
        Reply::Now(value) => value.error(),
        Reply::Later(_) => panic!("expected an immediate answer"),
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

/// A consumer-protocol assignment of `partitions` of `topic`.
fn assignment(topic: &str, partitions: &[i32]) -> Bytes {
    Bytes::from(crate::consumer_protocol::tests::assignment(&[(topic, partitions)]))
}

/// Joins the way librdkafka does at v4+: first without id (MEMBER_ID_REQUIRED), then with it.
fn join_twice(c: &Coordinator, client: &str, protocols: &[(&str, &'static [u8])]) -> (String, Reply<JoinResult>) {
    let Reply::Now(first) = c.join(params("", client, protocols)) else { panic!("the first join must answer at once") };
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    assert!(first.member_id.starts_with(&format!("{client}-")), "{}", first.member_id);
    let id = first.member_id.clone();
    (id.clone(), c.join(params(&id, client, protocols)))
}

/// Two members in a stable generation: (leader, follower, generation).
fn stable_pair(f: &Fixture) -> (String, String, i32) {
    let c = &f.coordinator;
    let (a, mut ja) = join_twice(c, "a", &[("range", b"ma")]);
    let (b, mut jb) = join_twice(c, "b", &[("range", b"mb")]);
    f.end_initial_join();
    let (ja, jb) = (answer(&mut ja), answer(&mut jb));
    let generation = ja.generation_id;
    let mut sb = c.sync("g", generation, &b, Vec::new());
    let mut sa = c.sync(
        "g",
        generation,
        &a,
        vec![(a.clone(), assignment("orders", &[0, 1])), (b.clone(), assignment("orders", &[2, 3]))],
    );
    assert_eq!(answer(&mut sa).error, None);
    assert_eq!(answer(&mut sb).error, None);
    assert_eq!(jb.generation_id, generation);
    (a, b, generation)
}

#[test]
fn two_members_join_one_generation_and_the_leader_sees_both() {
    let f = fixture();
    let c = &f.coordinator;
    let (a, mut ja) = join_twice(c, "a", &[("range", b"ma-range"), ("roundrobin", b"ma-rr")]);
    let (b, mut jb) = join_twice(c, "b", &[("roundrobin", b"mb-rr"), ("range", b"mb-range")]);
    f.advance(DELAY - 1);
    assert!(!answered(&mut ja) && !answered(&mut jb), "joins wait for the initial delay");
    f.advance(1);
    assert!(!answered(&mut ja), "b arrived during the delay, which therefore extends once");
    f.advance(DELAY);
    let (ja, jb) = (answer(&mut ja), answer(&mut jb));
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

#[test]
fn the_initial_delay_extends_at_most_to_the_rebalance_timeout() {
    let f = fixture();
    let c = &f.coordinator;
    let quick = |client: &str| {
        let mut p = params("", client, &[("range", b"m")]);
        p.rebalance_timeout_ms = 50;
        p.require_known_member_id = false;
        p
    };
    let mut first = c.join(quick("a"));
    // A member arrives in every delay: the phase still ends by the rebalance timeout (50 ms).
    let mut late = Vec::new();
    for client in ["b", "c", "d"] {
        late.push(c.join(quick(client)));
        f.advance(DELAY / 2);
        f.advance(DELAY / 2);
    }
    assert_eq!(f.now() - T0, 3 * DELAY);
    assert!(answered(&mut first), "30 ms, then the 20 left of the timeout, then done");
    assert_eq!(answer(&mut first).generation_id, 1);
}

#[test]
fn sync_hands_each_member_its_assignment_once_the_leader_sends_it() {
    let f = fixture();
    let c = &f.coordinator;
    let (a, mut ja) = join_twice(c, "a", &[("range", b"ma")]);
    let (b, _jb) = join_twice(c, "b", &[("range", b"mb")]);
    f.end_initial_join();
    let ja = answer(&mut ja);
    let mut follower = c.sync("g", 1, &b, Vec::new());
    assert!(!answered(&mut follower), "the follower waits for the leader");
    assert_eq!(now_error(c.sync("g", 0, &b, Vec::new())), Some(ResponseError::IllegalGeneration));
    assert_eq!(now_error(c.sync("g", 1, "nobody", Vec::new())), Some(ResponseError::UnknownMemberId));
    let mut leader = c.sync(
        "g",
        ja.generation_id,
        &a,
        vec![
            (a.clone(), assignment("orders", &[0, 1])),
            (b.clone(), assignment("orders", &[2, 3])),
            ("stranger".into(), assignment("orders", &[9])),
        ],
    );
    assert_eq!(answer(&mut leader).assignment, assignment("orders", &[0, 1]));
    assert_eq!(answer(&mut follower).assignment, assignment("orders", &[2, 3]));
    // A late sync in the stable group gets the stored assignment.
    assert_eq!(answer(&mut c.sync("g", 1, &b, Vec::new())).assignment, assignment("orders", &[2, 3]));
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

#[test]
fn a_new_member_makes_the_others_rejoin_into_a_new_generation() {
    let f = fixture();
    let c = &f.coordinator;
    let (a, b, generation) = stable_pair(&f);
    let (cid, mut jc) = join_twice(c, "c", &[("range", b"mc")]);
    assert_eq!(c.heartbeat("g", generation, &a), Err(ResponseError::RebalanceInProgress));
    assert_eq!(c.heartbeat("g", generation, &b), Err(ResponseError::RebalanceInProgress));
    // Commits are still accepted while the group prepares the rebalance.
    assert_eq!(c.validate_commit("g", &a, None, generation), Ok(()));
    let mut ja = c.join(params(&a, "a", &[("range", b"ma")]));
    assert!(!answered(&mut ja), "the join phase waits for b");
    let mut jb = c.join(params(&b, "b", &[("range", b"mb")]));
    let (ja, jb, jc) = (answer(&mut ja), answer(&mut jb), answer(&mut jc));
    assert_eq!([ja.generation_id, jb.generation_id, jc.generation_id], [generation + 1; 3]);
    assert_eq!(ja.leader, a);
    assert_eq!(ja.members.len(), 3);
    assert_eq!(jc.member_id, cid);
    assert_eq!(c.heartbeat("g", generation, &a), Err(ResponseError::IllegalGeneration));
    assert_eq!(c.heartbeat("g", generation + 1, &a), Ok(()));
}

#[test]
fn a_member_that_does_not_rejoin_is_removed_at_the_rebalance_timeout() {
    let f = fixture();
    let c = &f.coordinator;
    let quick = |id: &str, client: &str| {
        let mut p = params(id, client, &[("range", b"m")]);
        p.rebalance_timeout_ms = 300;
        p
    };
    let (a, _) = join_twice(c, "a", &[("range", b"m")]);
    let (b, _) = join_twice(c, "b", &[("range", b"m")]);
    // Rejoin both with a short rebalance timeout; then only b rejoins for the next one.
    let (mut ja, mut jb) = (c.join(quick(&a, "a")), c.join(quick(&b, "b")));
    f.end_initial_join();
    let (ja, jb) = (answer(&mut ja), answer(&mut jb));
    let generation = ja.generation_id;
    answer(&mut c.sync("g", generation, &a, Vec::new()));
    answer(&mut c.sync("g", generation, &b, Vec::new()));
    let mut changed = quick(&b, "b");
    changed.protocols = vec![("range".into(), Bytes::from_static(b"new metadata"))];
    let mut jb2 = c.join(changed);
    f.advance(299);
    assert!(!answered(&mut jb2), "a still has 1 ms to rejoin");
    f.advance(1);
    let jb2 = answer(&mut jb2);
    assert_eq!(jb2.generation_id, generation + 1);
    assert_eq!(jb2.leader, b, "the remaining member leads");
    assert_eq!(jb2.members.len(), 1);
    assert_eq!(jb.leader, a);
    assert_eq!(c.heartbeat("g", jb2.generation_id, &a), Err(ResponseError::UnknownMemberId));
    assert_eq!(answer(&mut c.join(quick(&a, "a"))).error, Some(ResponseError::UnknownMemberId));
}

#[test]
fn leaving_rebalances_the_others() {
    let f = fixture();
    let c = &f.coordinator;
    let (a, b, generation) = stable_pair(&f);
    assert_eq!(c.leave("g", std::slice::from_ref(&a)), Ok(vec![Ok(())]));
    assert_eq!(c.leave("g", std::slice::from_ref(&a)), Ok(vec![Err(ResponseError::UnknownMemberId)]));
    assert_eq!(c.heartbeat("g", generation, &b), Err(ResponseError::RebalanceInProgress));
    let jb = answer(&mut c.join(params(&b, "b", &[("range", b"mb")])));
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

#[test]
fn a_silent_member_expires_with_its_session() {
    let f = fixture();
    let c = &f.coordinator;
    let (a, b, generation) = stable_pair(&f);
    let t = f.now();
    f.advance(i64::from(SESSION) - 1);
    assert_eq!(c.heartbeat("g", generation, &a), Ok(()));
    c.tick();
    assert_eq!(c.describe("g").expect("group").members.len(), 2, "b's session is not over yet");
    f.clock.set(t + i64::from(SESSION));
    c.tick();
    assert_eq!(c.heartbeat("g", generation, &b), Err(ResponseError::UnknownMemberId));
    assert_eq!(c.heartbeat("g", generation, &a), Err(ResponseError::RebalanceInProgress));
    let ja = answer(&mut c.join(params(&a, "a", &[("range", b"ma")])));
    assert_eq!((ja.generation_id, ja.members.len()), (generation + 1, 1));
    let ids: Vec<String> = f.store.describe("g").expect("describe").members.into_iter().map(|m| m.member_id).collect();
    assert_eq!(ids, [a], "the store follows the coordinator");
}

#[test]
fn members_waiting_in_a_join_are_kept_alive() {
    let f = fixture();
    let c = &f.coordinator;
    let (a, b, generation) = stable_pair(&f);
    // a rejoins (with a long rebalance timeout) and waits for b, which keeps heartbeating
    // without rejoining: far past a's session, a is still a member, in the store too.
    let mut rejoin = params(&a, "a", &[("range", b"ma")]);
    rejoin.rebalance_timeout_ms = 60_000;
    let mut ja = c.join(rejoin);
    for _ in 0..3 {
        f.advance(i64::from(SESSION) / 2);
        assert_eq!(c.heartbeat("g", generation, &b), Err(ResponseError::RebalanceInProgress));
        let ids: Vec<String> =
            f.store.describe("g").expect("describe").members.into_iter().map(|m| m.member_id).collect();
        assert!(ids.contains(&a), "the store keeps a while it waits: {ids:?}");
    }
    assert_eq!(c.describe("g").expect("group").members.len(), 2);
    assert!(!answered(&mut ja));
    let jb = answer(&mut c.join(params(&b, "b", &[("range", b"mb")])));
    let ja = answer(&mut ja);
    assert_eq!((ja.generation_id, jb.generation_id), (generation + 1, generation + 1));
    assert_eq!(ja.members.len(), 2);
}

#[test]
fn an_unused_member_id_expires() {
    let f = fixture();
    let c = &f.coordinator;
    let Reply::Now(first) = c.join(params("", "a", &[("range", b"ma")])) else { panic!("answered at once") };
    assert_eq!(first.error, Some(ResponseError::MemberIdRequired));
    f.advance(i64::from(SESSION) - 1);
    assert!(c.describe("g").is_some(), "the id may still be used");
    f.advance(1);
    assert!(c.describe("g").is_none(), "a group with nothing left is forgotten");
    let late = answer(&mut c.join(params(&first.member_id, "a", &[("range", b"ma")])));
    assert_eq!(late.error, Some(ResponseError::UnknownMemberId));
}

#[test]
fn old_versions_join_without_member_id_required() {
    let f = fixture();
    let c = &f.coordinator;
    let mut p = params("", "a", &[("range", b"ma")]);
    p.require_known_member_id = false;
    let mut joined = c.join(p);
    f.advance(DELAY);
    let joined = answer(&mut joined);
    assert_eq!(joined.error, None);
    assert_eq!(joined.generation_id, 1);
    assert_eq!(joined.leader, joined.member_id);
}

#[test]
fn joins_are_checked() {
    let f = fixture();
    let c = &f.coordinator;
    let mut p = params("", "a", &[("range", b"ma")]);
    p.session_timeout_ms = 5_999;
    assert_eq!(now_error(c.join(p)), Some(ResponseError::InvalidSessionTimeout));
    let mut p = params("", "a", &[("range", b"ma")]);
    p.group = String::new();
    assert_eq!(now_error(c.join(p)), Some(ResponseError::InvalidGroupId));
    assert_eq!(now_error(c.join(params("", "a", &[]))), Some(ResponseError::InconsistentGroupProtocol));
    assert_eq!(now_error(c.join(params("ghost", "a", &[("range", b"m")]))), Some(ResponseError::UnknownMemberId));
    let (_a, mut ja) = join_twice(c, "a", &[("range", b"ma")]);
    f.advance(DELAY);
    answer(&mut ja);
    let mut other_type = params("", "x", &[("range", b"m")]);
    other_type.protocol_type = "connect".into();
    assert_eq!(now_error(c.join(other_type)), Some(ResponseError::InconsistentGroupProtocol));
    assert_eq!(now_error(c.join(params("", "x", &[("sticky", b"m")]))), Some(ResponseError::InconsistentGroupProtocol));
    assert_eq!(c.heartbeat("g", 1, "ghost"), Err(ResponseError::UnknownMemberId));
    assert_eq!(c.heartbeat("nope", 1, "ghost"), Err(ResponseError::UnknownMemberId));
}

#[test]
fn commits_are_fenced_by_member_and_generation() {
    let f = fixture();
    let c = &f.coordinator;
    assert_eq!(c.validate_commit("fresh", "", None, -1), Ok(()), "a simple commit needs no group");
    assert_eq!(c.validate_commit("fresh", "", None, 3), Err(ResponseError::IllegalGeneration));
    assert_eq!(c.validate_commit("fresh", "m", None, -1), Err(ResponseError::UnknownMemberId));
    let (a, mut ja) = join_twice(c, "a", &[("range", b"ma")]);
    f.advance(DELAY);
    let ja = answer(&mut ja);
    // Joined but not synced: the generation is not complete.
    assert_eq!(c.validate_commit("g", &a, None, ja.generation_id), Err(ResponseError::RebalanceInProgress));
    answer(&mut c.sync("g", ja.generation_id, &a, vec![(a.clone(), assignment("orders", &[0]))]));
    assert_eq!(c.validate_commit("g", &a, None, ja.generation_id), Ok(()));
    assert_eq!(c.validate_commit("g", &a, None, ja.generation_id + 1), Err(ResponseError::IllegalGeneration));
    assert_eq!(c.validate_commit("g", "ghost", None, ja.generation_id), Err(ResponseError::UnknownMemberId));
    assert_eq!(c.validate_commit("g", "", None, -1), Err(ResponseError::UnknownMemberId));
}

/// TxnOffsetCommit (KIP-447) as Kafka's classic groups check it: a zombie's stale generation or
/// departed member is refused as OffsetCommit's is; offsets naming no member are taken whatever
/// the group; a rebalance in progress does not refuse a member's.
#[test]
fn transactional_commits_are_fenced_by_member_and_generation_but_not_by_a_rebalance() {
    let f = fixture();
    let c = &f.coordinator;
    assert_eq!(c.validate_txn_commit("fresh", "", None, -1), Ok(()));
    assert_eq!(c.validate_txn_commit("fresh", "m", None, -1), Ok(()), "Kafka makes a simple group for it");
    assert_eq!(c.validate_txn_commit("fresh", "", None, 3), Err(ResponseError::IllegalGeneration));
    let (a, mut ja) = join_twice(c, "a", &[("range", b"ma")]);
    f.advance(DELAY);
    let ja = answer(&mut ja);
    // Joined but not synced: OffsetCommit is told to wait, a transaction's offsets are taken.
    assert_eq!(c.validate_txn_commit("g", &a, None, ja.generation_id), Ok(()));
    answer(&mut c.sync("g", ja.generation_id, &a, vec![(a.clone(), assignment("orders", &[0]))]));
    assert_eq!(c.validate_txn_commit("g", &a, None, ja.generation_id), Ok(()));
    assert_eq!(c.validate_txn_commit("g", &a, None, ja.generation_id - 1), Err(ResponseError::IllegalGeneration));
    assert_eq!(c.validate_txn_commit("g", "ghost", None, ja.generation_id), Err(ResponseError::UnknownMemberId));
    assert_eq!(c.validate_txn_commit("g", "", None, -1), Ok(()), "no member named: taken while a has the group");
    assert_eq!(c.validate_commit("g", "", None, -1), Err(ResponseError::UnknownMemberId), "OffsetCommit's is not");
}

#[test]
fn a_leader_that_never_syncs_is_removed_at_the_rebalance_timeout() {
    let f = fixture();
    let c = &f.coordinator;
    let mut pa = params("", "a", &[("range", b"ma")]);
    pa.rebalance_timeout_ms = 200;
    pa.require_known_member_id = false;
    let mut pb = pa.clone();
    pb.client_id = "b".into();
    let (mut ja, mut jb) = (c.join(pa), c.join(pb));
    f.end_initial_join();
    let (ja, jb) = (answer(&mut ja), answer(&mut jb));
    let leader = ja.leader.clone();
    let follower = if ja.member_id == leader { jb.member_id.clone() } else { ja.member_id.clone() };
    let mut waiting = c.sync("g", ja.generation_id, &follower, Vec::new());
    f.advance(199);
    assert!(!answered(&mut waiting), "the leader still has 1 ms");
    f.advance(1);
    assert_eq!(
        answer(&mut waiting).error,
        Some(ResponseError::RebalanceInProgress),
        "the sync is released when the leader is dropped"
    );
    assert_eq!(c.heartbeat("g", ja.generation_id, &leader), Err(ResponseError::UnknownMemberId));
}

#[test]
fn static_members_replace_their_previous_incarnation() {
    let f = fixture();
    let c = &f.coordinator;
    let mut p = params("", "a", &[("range", b"ma")]);
    p.instance_id = Some("instance-1".into());
    let mut first = c.join(p.clone());
    f.advance(DELAY);
    let first = answer(&mut first);
    assert_eq!(first.error, None, "static members need no second join");
    let second = answer(&mut c.join(p));
    assert_eq!(second.generation_id, first.generation_id + 1);
    assert_eq!(second.members.len(), 1);
    assert_eq!(second.members[0].instance_id.as_deref(), Some("instance-1"));
    assert_eq!(c.heartbeat("g", second.generation_id, &first.member_id), Err(ResponseError::UnknownMemberId));
}

/// KIP-345: the replaced incarnation of a static member, still running, is fenced
/// (`FENCED_INSTANCE_ID`, fatal for the client) wherever it names its instance: rejoining with
/// UNKNOWN_MEMBER_ID would replace the new incarnation in turn (librdkafka's test 0102).
#[test]
fn a_replaced_static_member_is_fenced() {
    let f = fixture();
    let c = &f.coordinator;
    let mut p = params("", "a", &[("range", b"ma")]);
    p.instance_id = Some("instance-1".into());
    let mut first = c.join(p.clone());
    f.advance(DELAY);
    let first = answer(&mut first);
    let second = answer(&mut c.join(p.clone()));
    let (old, new, generation) = (first.member_id.as_str(), second.member_id.as_str(), second.generation_id);
    assert_eq!(c.check_instance("g", old, Some("instance-1")), Err(ResponseError::FencedInstanceId));
    assert_eq!(c.validate_commit("g", old, Some("instance-1"), generation), Err(ResponseError::FencedInstanceId));
    let mut rejoin = p.clone();
    rejoin.member_id = old.to_string();
    assert_eq!(answer(&mut c.join(rejoin)).error, Some(ResponseError::FencedInstanceId));
    // The current incarnation, a dynamic member, and a group the coordinator does not know pass.
    assert_eq!(c.check_instance("g", new, Some("instance-1")), Ok(()));
    assert_eq!(c.check_instance("g", old, None), Ok(()));
    assert_eq!(c.check_instance("unknown", old, Some("instance-1")), Ok(()));
}

/// KIP-345: a static member that restarts within its session gets its partitions back in the
/// same generation, without a rebalance; its old incarnation is gone and the other member
/// keeps heartbeating undisturbed. A restart while the leader assigns needs a new generation.
#[test]
fn a_restarted_static_member_gets_its_partitions_back_without_a_rebalance() {
    let f = fixture();
    let c = &f.coordinator;
    let static_params = |client: &str, member_id: &str, metadata: &'static [u8]| {
        let mut p = params(member_id, client, &[("range", metadata)]);
        p.instance_id = Some(format!("{client}-instance"));
        p
    };
    let mut ja = c.join(static_params("a", "", b"ma"));
    let mut jb = c.join(static_params("b", "", b"mb"));
    f.end_initial_join();
    let (ja, jb) = (answer(&mut ja), answer(&mut jb));
    let (a, b, generation) = (ja.member_id.clone(), jb.member_id.clone(), ja.generation_id);
    assert_eq!(ja.leader, a);
    let mut sb = c.sync("g", generation, &b, Vec::new());
    let mut sa = c.sync(
        "g",
        generation,
        &a,
        vec![(a.clone(), assignment("orders", &[0, 1])), (b.clone(), assignment("orders", &[2, 3]))],
    );
    assert_eq!((answer(&mut sa).error, answer(&mut sb).error), (None, None));

    // b restarts (no LeaveGroup: a static member does not send one) and rejoins.
    f.advance(SESSION as i64 / 2);
    let rejoined = now_answer(c.join(static_params("b", "", b"mb")));
    assert_eq!(rejoined.error, None);
    assert_eq!(rejoined.generation_id, generation, "no new generation");
    assert_ne!(rejoined.member_id, b, "the new incarnation has a new member id");
    assert_eq!(rejoined.leader, a);
    assert!(rejoined.members.is_empty(), "only the leader is sent the members");
    let synced = now_answer(c.sync("g", generation, &rejoined.member_id, Vec::new()));
    assert_eq!((synced.error, synced.assignment), (None, assignment("orders", &[2, 3])));
    assert_eq!(c.heartbeat("g", generation, &a), Ok(()), "the other member sees no rebalance");
    assert_eq!(c.heartbeat("g", generation, &b), Err(ResponseError::UnknownMemberId), "the old incarnation is gone");

    // The leader restarts too: it is still the leader, under its new id, and sees both members.
    let leader = now_answer(c.join(static_params("a", "", b"ma")));
    assert_eq!((leader.error, leader.generation_id), (None, generation));
    assert_eq!(leader.leader, leader.member_id);
    let mut ids: Vec<String> = leader.members.iter().map(|m| m.member_id.clone()).collect();
    ids.sort();
    let mut want = vec![leader.member_id.clone(), rejoined.member_id.clone()];
    want.sort();
    assert_eq!(ids, want);
    assert_eq!(c.heartbeat("g", generation, &rejoined.member_id), Ok(()));
}

fn now_answer<T>(reply: Reply<T>) -> T {
    match reply {
        Reply::Now(value) => value,
        Reply::Later(_) => panic!("expected an immediate answer"),
    }
}

#[test]
fn an_empty_group_is_forgotten_after_its_retention() {
    let f = fixture();
    let c = &f.coordinator;
    let (a, b, _) = stable_pair(&f);
    assert_eq!(c.leave("g", &[a, b]), Ok(vec![Ok(()), Ok(())]));
    assert_eq!(c.describe("g").expect("kept").phase, Phase::Empty);
    f.advance(group::EMPTY_GROUP_RETENTION_MS - 1);
    assert!(c.describe("g").is_some(), "its generation is kept for a while");
    f.advance(1);
    assert!(c.describe("g").is_none(), "then forgotten");
}

/// Reliability probe 5e: first joins flooding a group (each handed a pending id) do not lock a
/// real consumer out, whether they outnumber the group's size or not; the pending ids beyond
/// [`group::PENDING_MEMBERS_MAX`] are forgotten oldest first, and a join phase does not wait
/// for them.
#[test]
fn a_flood_of_first_joins_does_not_lock_a_real_consumer_out() {
    let f = fixture();
    let c = &f.coordinator;
    let flood = evident_groups::MEMBERS_PER_GROUP_MAX + 50;
    let mut first_ids = Vec::new();
    for _ in 0..flood {
        let Reply::Now(r) = c.join(params("", "attacker", &[("range", b"x")])) else { panic!("answered at once") };
        assert_eq!(r.error, Some(ResponseError::MemberIdRequired), "every first join gets an id");
        first_ids.push(r.member_id);
    }
    // The real consumer joins with its id and is answered when the initial delay ends.
    let (real, mut joined) = join_twice(c, "real", &[("range", b"r")]);
    f.advance(DELAY);
    let joined = answer(&mut joined);
    assert_eq!(joined.error, None, "the real consumer joined");
    assert_eq!((joined.generation_id, joined.leader.as_str()), (1, real.as_str()));
    // The oldest flooded ids were forgotten; the newest are still usable.
    let oldest = answer(&mut c.join(params(&first_ids[0], "attacker", &[("range", b"r")])));
    assert_eq!(oldest.error, Some(ResponseError::UnknownMemberId));
    let newest = first_ids.last().expect("ids");
    assert!(matches!(c.join(params(newest, "attacker", &[("range", b"r")])), Reply::Later(_)));
}

#[test]
fn protocol_metadata_is_bounded_per_join_and_per_group() {
    let f = fixture();
    let c = &f.coordinator;
    let mut too_big = params("", "a", &[]);
    too_big.protocols = vec![("range".into(), Bytes::from(vec![0u8; group::JOIN_METADATA_MAX_BYTES]))];
    assert_eq!(now_error(c.join(too_big)), Some(ResponseError::InvalidRequest));
    // Members of 1 MiB (just under the per-join cap) fill the group's 64 MiB.
    let big = Bytes::from(vec![0u8; group::JOIN_METADATA_MAX_BYTES - 100]);
    let mut refused = None;
    for n in 0..=group::GROUP_METADATA_MAX_BYTES / group::JOIN_METADATA_MAX_BYTES + 1 {
        let mut p = params("", &format!("m{n}"), &[]);
        p.require_known_member_id = false;
        p.protocols = vec![("range".into(), big.clone())];
        if let Reply::Now(r) = c.join(p) {
            refused = Some((n, r.error));
            break;
        }
    }
    let (n, error) = refused.expect("a join refused");
    assert_eq!(error, Some(ResponseError::GroupMaxSizeReached));
    assert_eq!(n, group::GROUP_METADATA_MAX_BYTES / (group::JOIN_METADATA_MAX_BYTES - 100 + 5));
    // Another group still has room; the budget returns when members go.
    let mut other = params("", "o", &[("range", b"x")]);
    other.group = "other".into();
    other.require_known_member_id = false;
    assert!(matches!(c.join(other), Reply::Later(_)));
}
