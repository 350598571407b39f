//! The classic consumer-group protocol over a real TCP connection, with requests encoded by
//! `kafka-protocol` as a client would: the JoinGroup sequence librdkafka uses (twice, the first
//! answered MEMBER_ID_REQUIRED), assignments handed out by SyncGroup, rebalances on a new
//! member, a leave and an expired session, generation fencing of commits, simple commits, offset
//! fetches, and list/describe/delete. Every group API is also exercised at every version evident
//! advertises, so that no response fails to encode. Time is one manual clock, shared by the
//! broker, its coordinator and the group store: sessions, the initial rebalance delay and the
//! rebalance timeouts all run on it. It stands still except while a JoinGroup waits for its
//! answer, when the client moves it forward as the wall clock goes (`Client::join`), and when a
//! test sets it to expire a session.

mod support;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use evident_log::clock::{Clock, ManualClock};
use evident_log::TopicConfig;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic};
use kafka_protocol::messages::offset_delete_request::{OffsetDeleteRequestPartition, OffsetDeleteRequestTopic};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use support::{Server, Wire};

const SESSION: i32 = 10_000;
const GROUP: &str = "billing";

const NONE: i16 = 0;
const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
const OFFSET_METADATA_TOO_LARGE: i16 = 12;
const TRANSACTIONAL_ID_AUTHORIZATION_FAILED: i16 = 53;
const ILLEGAL_GENERATION: i16 = 22;
const UNKNOWN_MEMBER_ID: i16 = 25;
const REBALANCE_IN_PROGRESS: i16 = 27;
const NON_EMPTY_GROUP: i16 = 68;
const GROUP_ID_NOT_FOUND: i16 = 69;
const MEMBER_ID_REQUIRED: i16 = 79;
const GROUP_SUBSCRIBED_TO_TOPIC: i16 = 86;

async fn start() -> Server {
    support::start(&[("orders", TopicConfig { partitions: 4, ..TopicConfig::default() })]).await
}

/// One client connection speaking the Kafka protocol, moving the shared clock while it waits
/// for a JoinGroup's answer.
struct Client {
    wire: Wire,
    client_id: String,
    clock: Arc<ManualClock>,
}

impl Client {
    async fn connect(server: &Server, client_id: &str) -> Self {
        Self {
            wire: Wire::connect(server.addr, client_id).await,
            client_id: client_id.to_string(),
            clock: server.clock.clone(),
        }
    }

    async fn send<Req: Encodable, Resp: Decodable>(&mut self, key: ApiKey, version: i16, request: &Req) -> Resp {
        self.wire.send(key, version, request).await
    }

    async fn join(&mut self, version: i16, group: &str, member_id: &str, metadata: &'static [u8]) -> JoinGroupResponse {
        let mut request = JoinGroupRequest::default()
            .with_group_id(group_id(group))
            .with_session_timeout_ms(SESSION)
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("range"))
                    .with_metadata(Bytes::from_static(metadata)),
                JoinGroupRequestProtocol::default()
                    .with_name(StrBytes::from_static_str("roundrobin"))
                    .with_metadata(Bytes::from_static(metadata)),
            ]);
        if version >= 1 {
            request = request.with_rebalance_timeout_ms(30_000);
        }
        // A join waits for the join phase, whose delays run on the manual clock: move it while
        // waiting, as the wall clock would.
        let clock = self.clock.clone();
        let time_passes = async move {
            loop {
                tokio::time::sleep(Duration::from_millis(5)).await;
                clock.set(clock.now_ms() + 5);
            }
        };
        tokio::select! {
            response = self.send(ApiKey::JoinGroup, version, &request) => response,
            () = time_passes => panic!("time passing never ends"),
        }
    }

    /// JoinGroup v5 as librdkafka does it: without member id, then with the one handed out.
    async fn first_join(&mut self, group: &str, metadata: &'static [u8]) -> String {
        let response = self.join(5, group, "", metadata).await;
        assert_eq!(response.error_code, MEMBER_ID_REQUIRED);
        let member_id = response.member_id.to_string();
        assert!(member_id.starts_with(&format!("{}-", self.client_id)), "{member_id}");
        member_id
    }

    async fn sync(
        &mut self,
        version: i16,
        group: &str,
        generation: i32,
        member_id: &str,
        assignments: Vec<(String, Bytes)>,
    ) -> SyncGroupResponse {
        let assignments = assignments
            .into_iter()
            .map(|(id, a)| SyncGroupRequestAssignment::default().with_member_id(id.into()).with_assignment(a))
            .collect();
        let request = SyncGroupRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_assignments(assignments);
        self.send(ApiKey::SyncGroup, version, &request).await
    }

    async fn heartbeat(&mut self, group: &str, generation: i32, member_id: &str) -> i16 {
        let request = HeartbeatRequest::default()
            .with_group_id(group_id(group))
            .with_generation_id(generation)
            .with_member_id(StrBytes::from_string(member_id.to_string()));
        let response: HeartbeatResponse = self.send(ApiKey::Heartbeat, 3, &request).await;
        response.error_code
    }

    async fn leave(&mut self, version: i16, group: &str, member_id: &str) -> i16 {
        let request = LeaveGroupRequest::default()
            .with_group_id(group_id(group))
            .with_member_id(StrBytes::from_string(member_id.to_string()));
        let response: LeaveGroupResponse = self.send(ApiKey::LeaveGroup, version, &request).await;
        response.error_code
    }

    /// Commits (partition, offset, metadata) of `topic`; the error code of each partition.
    async fn commit(
        &mut self,
        version: i16,
        generation: i32,
        member_id: &str,
        topic: &str,
        offsets: &[(i32, i64, Option<String>)],
    ) -> Vec<i16> {
        let partitions = offsets
            .iter()
            .map(|(p, o, m)| {
                OffsetCommitRequestPartition::default()
                    .with_partition_index(*p)
                    .with_committed_offset(*o)
                    .with_committed_metadata(m.clone().map(StrBytes::from_string))
            })
            .collect();
        let request = OffsetCommitRequest::default()
            .with_group_id(group_id(GROUP))
            .with_generation_id_or_member_epoch(generation)
            .with_member_id(StrBytes::from_string(member_id.to_string()))
            .with_topics(vec![OffsetCommitRequestTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(partitions)]);
        let response: OffsetCommitResponse = self.send(ApiKey::OffsetCommit, version, &request).await;
        assert_eq!(response.topics.len(), 1);
        assert_eq!(response.topics[0].name.as_str(), topic);
        response.topics[0].partitions.iter().map(|p| p.error_code).collect()
    }

    /// Fetches committed offsets (None: all); (topic, partition, offset, metadata, error).
    async fn fetch(
        &mut self,
        version: i16,
        group: &str,
        asked: Option<&[(&str, &[i32])]>,
    ) -> (i16, Vec<(String, i32, i64, Option<String>, i16)>) {
        let topics = asked.map(|asked| {
            asked
                .iter()
                .map(|(t, ps)| {
                    OffsetFetchRequestTopic::default().with_name(topic_name(t)).with_partition_indexes(ps.to_vec())
                })
                .collect()
        });
        let request = OffsetFetchRequest::default().with_group_id(group_id(group)).with_topics(topics);
        let response: OffsetFetchResponse = self.send(ApiKey::OffsetFetch, version, &request).await;
        let rows = response
            .topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(move |p| {
                    (
                        t.name.to_string(),
                        p.partition_index,
                        p.committed_offset,
                        p.metadata.as_ref().map(|m| m.to_string()),
                        p.error_code,
                    )
                })
            })
            .collect();
        (response.error_code, rows)
    }

    async fn describe(&mut self, version: i16, group: &str) -> DescribeGroupsResponse {
        let request = DescribeGroupsRequest::default().with_groups(vec![group_id(group)]);
        self.send(ApiKey::DescribeGroups, version, &request).await
    }

    async fn list(&mut self, version: i16, states: &[&'static str]) -> Vec<(String, String, String)> {
        let mut request = ListGroupsRequest::default();
        if version >= 4 {
            request = request.with_states_filter(states.iter().map(|s| StrBytes::from_static_str(s)).collect());
        }
        let response: ListGroupsResponse = self.send(ApiKey::ListGroups, version, &request).await;
        assert_eq!(response.error_code, NONE);
        response
            .groups
            .iter()
            .map(|g| (g.group_id.to_string(), g.protocol_type.to_string(), g.group_state.to_string()))
            .collect()
    }

    /// OffsetDelete (v0) of `partitions` of `topic`: the top-level error and (partition, error).
    async fn delete_offsets(&mut self, group: &str, topic: &str, partitions: &[i32]) -> (i16, Vec<(i32, i16)>) {
        let request = OffsetDeleteRequest::default().with_group_id(group_id(group)).with_topics(vec![
            OffsetDeleteRequestTopic::default().with_name(topic_name(topic)).with_partitions(
                partitions.iter().map(|p| OffsetDeleteRequestPartition::default().with_partition_index(*p)).collect(),
            ),
        ]);
        let response: OffsetDeleteResponse = self.send(ApiKey::OffsetDelete, 0, &request).await;
        let rows = response.topics.iter().flat_map(|t| t.partitions.iter().map(|p| (p.partition_index, p.error_code)));
        (response.error_code, rows.collect())
    }

    async fn delete(&mut self, version: i16, group: &str) -> i16 {
        let request = DeleteGroupsRequest::default().with_groups_names(vec![group_id(group)]);
        let response: DeleteGroupsResponse = self.send(ApiKey::DeleteGroups, version, &request).await;
        assert_eq!(response.results.len(), 1);
        assert_eq!(response.results[0].group_id.as_str(), group);
        response.results[0].error_code
    }
}

fn group_id(group: &str) -> GroupId {
    GroupId(StrBytes::from_string(group.to_string()))
}

fn topic_name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

/// A consumer-protocol assignment (version 0) of `partitions` of `topic`.
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
    b.extend_from_slice(&(-1i32).to_be_bytes());
    Bytes::from(b)
}

/// Two consumers joined and synced: (leader client, leader id, follower client, follower id,
/// generation). Partitions 0-1 go to the leader, 2-3 to the follower.
async fn stable_pair(server: &Server) -> (Client, String, Client, String, i32) {
    let mut c1 = Client::connect(server, "consumer-1").await;
    let mut c2 = Client::connect(server, "consumer-2").await;
    let id1 = c1.first_join(GROUP, b"meta-1").await;
    let id2 = c2.first_join(GROUP, b"meta-2").await;
    let (j1, j2) = tokio::join!(c1.join(5, GROUP, &id1, b"meta-1"), c2.join(5, GROUP, &id2, b"meta-2"));
    assert_eq!((j1.error_code, j2.error_code), (NONE, NONE));
    assert_eq!(j1.generation_id, j2.generation_id);
    assert_eq!(j1.leader, j2.leader);
    assert_eq!(j1.protocol_name.as_deref(), Some("range"));
    let (mut leader, leader_id, join_of_leader, mut follower, follower_id) =
        if j1.leader.as_str() == id1 { (c1, id1, j1, c2, id2) } else { (c2, id2, j2, c1, id1) };
    let generation = join_of_leader.generation_id;
    let mut seen: Vec<(String, Bytes)> =
        join_of_leader.members.iter().map(|m| (m.member_id.to_string(), m.metadata.clone())).collect();
    seen.sort();
    let mut expected = vec![
        (leader_id.clone(), Bytes::from_static(if leader.client_id == "consumer-1" { b"meta-1" } else { b"meta-2" })),
        (follower_id.clone(), Bytes::from_static(if leader.client_id == "consumer-1" { b"meta-2" } else { b"meta-1" })),
    ];
    expected.sort();
    assert_eq!(seen, expected, "the leader sees every member's metadata");
    let assignments =
        vec![(leader_id.clone(), assignment("orders", &[0, 1])), (follower_id.clone(), assignment("orders", &[2, 3]))];
    // The follower asks first and waits for the leader's assignment.
    let (sf, sl) = tokio::join!(follower.sync(3, GROUP, generation, &follower_id, Vec::new()), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        leader.sync(3, GROUP, generation, &leader_id, assignments).await
    });
    assert_eq!((sf.error_code, sl.error_code), (NONE, NONE));
    assert_eq!(sl.assignment, assignment("orders", &[0, 1]));
    assert_eq!(sf.assignment, assignment("orders", &[2, 3]));
    (leader, leader_id, follower, follower_id, generation)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn consumers_join_sync_and_rebalance() {
    let server = start().await;
    let (mut leader, leader_id, mut follower, follower_id, generation) = stable_pair(&server).await;

    // Describe and list show the stable group as Kafka's tools expect.
    let described = leader.describe(4, GROUP).await;
    let group = &described.groups[0];
    assert_eq!(group.error_code, NONE);
    assert_eq!(group.group_state.as_str(), "Stable");
    assert_eq!(group.protocol_type.as_str(), "consumer");
    assert_eq!(group.protocol_data.as_str(), "range");
    assert_eq!(group.members.len(), 2);
    for m in &group.members {
        assert_eq!(m.client_host.as_str(), "/127.0.0.1");
        let expected = if m.member_id.as_str() == leader_id { &[0, 1] } else { &[2, 3] };
        assert_eq!(m.member_assignment, assignment("orders", expected));
    }
    let listed = leader.list(4, &["stable"]).await;
    assert_eq!(listed, [(GROUP.to_string(), "consumer".to_string(), "Stable".to_string())]);
    assert!(leader.list(4, &["Empty"]).await.is_empty());

    // The group store (and so the HTTP API) shows the members and what they consume.
    let store_view = server.groups.describe(GROUP).expect("store describe");
    let mut assigned: Vec<(String, Vec<u32>)> = store_view
        .members
        .iter()
        .map(|m| (m.client_id.clone(), m.assignment.iter().flat_map(|t| t.partitions.clone()).collect()))
        .collect();
    assigned.sort();
    assert_eq!(assigned.len(), 2);
    assert!(server.groups.has_active_members(GROUP));

    assert_eq!(leader.heartbeat(GROUP, generation, &leader_id).await, NONE);
    assert_eq!(follower.heartbeat(GROUP, generation - 1, &follower_id).await, ILLEGAL_GENERATION);
    assert_eq!(follower.heartbeat(GROUP, generation, "stranger").await, UNKNOWN_MEMBER_ID);

    // A third consumer joins: the others hear of the rebalance by heartbeat and rejoin.
    let mut third = Client::connect(&server, "consumer-3").await;
    let third_id = third.first_join(GROUP, b"meta-3").await;
    let (j3, (hl, hf, jl, jf)) = tokio::join!(third.join(5, GROUP, &third_id, b"meta-3"), async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        let hl = leader.heartbeat(GROUP, generation, &leader_id).await;
        let hf = follower.heartbeat(GROUP, generation, &follower_id).await;
        let (jl, jf) = tokio::join!(
            leader.join(5, GROUP, &leader_id, b"meta-l"),
            follower.join(5, GROUP, &follower_id, b"meta-f")
        );
        (hl, hf, jl, jf)
    });
    assert_eq!((hl, hf), (REBALANCE_IN_PROGRESS, REBALANCE_IN_PROGRESS));
    assert_eq!([j3.error_code, jl.error_code, jf.error_code], [NONE; 3]);
    assert_eq!([j3.generation_id, jl.generation_id, jf.generation_id], [generation + 1; 3]);
    assert_eq!(jl.leader.as_str(), leader_id, "the leader stays the leader");
    assert_eq!(jl.members.len(), 3);
    let generation = generation + 1;
    let (s3, sf, sl) = tokio::join!(
        third.sync(3, GROUP, generation, &third_id, Vec::new()),
        follower.sync(3, GROUP, generation, &follower_id, Vec::new()),
        leader.sync(
            3,
            GROUP,
            generation,
            &leader_id,
            vec![
                (leader_id.clone(), assignment("orders", &[0, 1])),
                (follower_id.clone(), assignment("orders", &[2])),
                (third_id.clone(), assignment("orders", &[3])),
            ]
        )
    );
    assert_eq!(s3.assignment, assignment("orders", &[3]));
    assert_eq!(sf.assignment, assignment("orders", &[2]));
    assert_eq!(sl.assignment, assignment("orders", &[0, 1]));

    // The third leaves: the others rebalance without it.
    assert_eq!(third.leave(1, GROUP, &third_id).await, NONE);
    assert_eq!(third.leave(1, GROUP, &third_id).await, UNKNOWN_MEMBER_ID);
    assert_eq!(leader.heartbeat(GROUP, generation, &leader_id).await, REBALANCE_IN_PROGRESS);
    let (jl, jf) =
        tokio::join!(leader.join(5, GROUP, &leader_id, b"meta-l"), follower.join(5, GROUP, &follower_id, b"meta-f"));
    assert_eq!((jl.generation_id, jf.generation_id), (generation + 1, generation + 1));
    assert_eq!(jl.members.len(), 2);
    assert_eq!(server.groups.describe(GROUP).expect("describe").members.len(), 2);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_silent_member_is_expired_and_the_others_rebalance() {
    let server = start().await;
    let (mut leader, leader_id, mut follower, follower_id, generation) = stable_pair(&server).await;
    // The follower's last heartbeat was its SyncGroup, since which the clock stood still.
    let synced_at = server.clock.now_ms();
    server.clock.set(synced_at + i64::from(SESSION) - 1);
    assert_eq!(leader.heartbeat(GROUP, generation, &leader_id).await, NONE);
    // The follower stays silent past its session; the coordinator's timer task notices within
    // its sweep interval.
    server.clock.set(synced_at + i64::from(SESSION));
    let mut code = NONE;
    for _ in 0..40 {
        code = leader.heartbeat(GROUP, generation, &leader_id).await;
        if code != NONE {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    assert_eq!(code, REBALANCE_IN_PROGRESS);
    assert_eq!(follower.heartbeat(GROUP, generation, &follower_id).await, UNKNOWN_MEMBER_ID);
    let joined = leader.join(5, GROUP, &leader_id, b"meta").await;
    assert_eq!((joined.generation_id, joined.members.len()), (generation + 1, 1));
    let ids: Vec<String> =
        server.groups.describe(GROUP).expect("describe").members.into_iter().map(|m| m.member_id).collect();
    assert_eq!(ids, [leader_id]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn commits_are_fenced_by_generation_and_fetched_back() {
    let server = start().await;
    let (mut leader, leader_id, mut follower, follower_id, generation) = stable_pair(&server).await;
    let ok = |n: usize| vec![NONE; n];
    assert_eq!(
        leader.commit(8, generation, &leader_id, "orders", &[(0, 10, None), (1, 20, Some("m".into()))]).await,
        ok(2)
    );
    assert_eq!(follower.commit(8, generation - 1, &follower_id, "orders", &[(2, 5, None)]).await, [ILLEGAL_GENERATION]);
    assert_eq!(follower.commit(8, generation, "stranger", "orders", &[(2, 5, None)]).await, [UNKNOWN_MEMBER_ID]);
    // A simple commit is refused while the group has members.
    assert_eq!(follower.commit(2, -1, "", "orders", &[(2, 5, None)]).await, [UNKNOWN_MEMBER_ID]);
    let (top, rows) = leader.fetch(7, GROUP, Some(&[("orders", &[0, 1, 2])])).await;
    assert_eq!(top, NONE);
    assert_eq!(
        rows,
        [
            ("orders".into(), 0, 10, Some(String::new()), NONE),
            ("orders".into(), 1, 20, Some("m".into()), NONE),
            ("orders".into(), 2, -1, Some(String::new()), NONE),
        ]
    );

    // Once both leave, the group is empty: simple commits work, delete works.
    assert_eq!(leader.delete(1, GROUP).await, NON_EMPTY_GROUP);
    assert_eq!(follower.leave(1, GROUP, &follower_id).await, NONE);
    assert_eq!(leader.leave(1, GROUP, &leader_id).await, NONE);
    assert!(!server.groups.has_active_members(GROUP));
    assert_eq!(leader.commit(2, -1, "", "orders", &[(2, 7, None)]).await, ok(1));
    let described = leader.describe(0, GROUP).await;
    assert_eq!(described.groups[0].group_state.as_str(), "Empty");
    assert_eq!(described.groups[0].protocol_type.as_str(), "consumer");
    assert_eq!(leader.delete(1, GROUP).await, NONE);
    assert_eq!(leader.delete(1, GROUP).await, GROUP_ID_NOT_FOUND);
    let (_, rows) = leader.fetch(7, GROUP, Some(&[("orders", &[0])])).await;
    assert_eq!(rows, [("orders".into(), 0, -1, Some(String::new()), NONE)]);
    assert_eq!(leader.describe(4, GROUP).await.groups[0].group_state.as_str(), "Dead");
    // From v6 (KIP-1043) a group that does not exist is an error, with Kafka's message.
    let gone = leader.describe(6, GROUP).await;
    assert_eq!(gone.groups[0].error_code, GROUP_ID_NOT_FOUND);
    assert_eq!(gone.groups[0].error_message.as_deref(), Some(format!("Group {GROUP} not found.").as_str()));
    assert_eq!(leader.describe(5, GROUP).await.groups[0].error_code, NONE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_delete_removes_partitions_of_an_empty_group_only() {
    let server = start().await;
    let (mut leader, leader_id, mut follower, follower_id, generation) = stable_pair(&server).await;
    assert_eq!(leader.commit(8, generation, &leader_id, "orders", &[(0, 4, None), (1, 6, None)]).await, [NONE, NONE]);
    // With members: every partition is in use (evident does not track subscriptions).
    let (top, rows) = leader.delete_offsets(GROUP, "orders", &[0]).await;
    assert_eq!((top, rows), (NONE, vec![(0, GROUP_SUBSCRIBED_TO_TOPIC)]));
    assert_eq!(follower.leave(1, GROUP, &follower_id).await, NONE);
    assert_eq!(leader.leave(1, GROUP, &leader_id).await, NONE);
    // Empty: deleted; an unknown partition fails alone; orders/2 had nothing to delete.
    let (top, rows) = leader.delete_offsets(GROUP, "orders", &[0, 2, 99]).await;
    assert_eq!((top, rows), (NONE, vec![(0, NONE), (2, NONE), (99, UNKNOWN_TOPIC_OR_PARTITION)]));
    let (_, rows) = leader.fetch(7, GROUP, Some(&[("orders", &[0, 1])])).await;
    assert_eq!(
        rows,
        [("orders".into(), 0, -1, Some(String::new()), NONE), ("orders".into(), 1, 6, Some(String::new()), NONE)]
    );
    let (top, rows) = leader.delete_offsets("no-such-group", "orders", &[0]).await;
    assert_eq!((top, rows.len()), (GROUP_ID_NOT_FOUND, 0));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn simple_commits_and_offset_fetches_at_every_version() {
    let server = start().await;
    let mut client = Client::connect(&server, "kcat").await;
    for version in 2..=8 {
        let offset = i64::from(version) * 100;
        let errors = client
            .commit(
                version,
                -1,
                "",
                "orders",
                &[(0, offset, None), (1, offset + 1, Some("note".into())), (99, 1, None), (-1, 1, None)],
            )
            .await;
        assert_eq!(errors, [NONE, NONE, UNKNOWN_TOPIC_OR_PARTITION, UNKNOWN_TOPIC_OR_PARTITION], "v{version}");
        let errors = client.commit(version, -1, "", "no-such-topic", &[(0, 1, None)]).await;
        assert_eq!(errors, [UNKNOWN_TOPIC_OR_PARTITION], "v{version}");
        let errors = client.commit(version, -1, "", "orders", &[(2, 1, Some("x".repeat(5_000))), (3, 9, None)]).await;
        assert_eq!(errors, [OFFSET_METADATA_TOO_LARGE, NONE], "v{version}");
        for fetch_version in 1..=7 {
            let (top, rows) =
                client.fetch(fetch_version, GROUP, Some(&[("orders", &[0, 1, 2]), ("other", &[0])])).await;
            assert_eq!(top, NONE);
            assert_eq!(
                rows,
                [
                    ("orders".into(), 0, offset, Some(String::new()), NONE),
                    ("orders".into(), 1, offset + 1, Some("note".into()), NONE),
                    ("orders".into(), 2, -1, Some(String::new()), NONE),
                    ("other".into(), 0, -1, Some(String::new()), NONE),
                ],
                "commit v{version}, fetch v{fetch_version}"
            );
        }
    }
    // Null topics (v2+): everything the group committed.
    let (_, rows) = client.fetch(7, GROUP, None).await;
    let positions: Vec<(i32, i64)> = rows.iter().map(|r| (r.1, r.2)).collect();
    assert_eq!(positions, [(0, 800), (1, 801), (3, 9)]);
    // A group nobody used has nothing: -1 everywhere, no error.
    let (top, rows) = client.fetch(2, "unused", Some(&[("orders", &[0])])).await;
    assert_eq!((top, rows), (NONE, vec![("orders".into(), 0, -1, Some(String::new()), NONE)]));
    // Commits claiming a generation of a group without members are stale.
    assert_eq!(client.commit(8, 4, "gone", "orders", &[(0, 1, None)]).await, [ILLEGAL_GENERATION]);
    assert_eq!(client.list(4, &[]).await, [(GROUP.into(), String::new(), "Empty".into())]);
    // Before v4 there is no state.
    assert_eq!(client.list(3, &[]).await, [(GROUP.into(), String::new(), String::new())]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn find_coordinator_names_this_broker() {
    let server = start().await;
    let mut client = Client::connect(&server, "finder").await;
    for version in 0..=2 {
        let request = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str(GROUP));
        let response: FindCoordinatorResponse = client.send(ApiKey::FindCoordinator, version, &request).await;
        assert_eq!(response.error_code, NONE, "v{version}");
        assert_eq!(response.node_id.0, 1);
        assert_eq!(response.host.as_str(), "127.0.0.1");
        assert_eq!(response.port, i32::from(server.addr.port()));
    }
    let request = FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("tx")).with_key_type(1);
    let response: FindCoordinatorResponse = client.send(ApiKey::FindCoordinator, 2, &request).await;
    // Transactions are not supported: the fatal error Kafka gives a transactional id the client
    // may not use (gaps_protocol.rs checks InitProducerId too).
    assert_eq!(response.error_code, TRANSACTIONAL_ID_AUTHORIZATION_FAILED);
    assert!(response.error_message.is_some_and(|m| m.contains("transactions")));
}

/// Each group API at every advertised version, on a one-member group per version.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn every_advertised_version_round_trips() {
    let server = start().await;
    let mut client = Client::connect(&server, "versions").await;
    for version in 0..=5i16 {
        let group = format!("g-v{version}");
        let mut joined = client.join(version, &group, "", b"meta").await;
        if version >= 4 {
            assert_eq!(joined.error_code, MEMBER_ID_REQUIRED, "v{version}");
            let id = joined.member_id.to_string();
            joined = client.join(version, &group, &id, b"meta").await;
        }
        assert_eq!(joined.error_code, NONE, "join v{version}");
        assert_eq!(joined.members.len(), 1);
        let id = joined.member_id.to_string();
        let generation = joined.generation_id;
        let sync_version = version.min(3);
        let synced =
            client.sync(sync_version, &group, generation, &id, vec![(id.clone(), assignment("orders", &[0]))]).await;
        assert_eq!(synced.error_code, NONE, "sync v{sync_version}");
        assert_eq!(synced.assignment, assignment("orders", &[0]));
        for hb_version in 0..=3 {
            let request = HeartbeatRequest::default()
                .with_group_id(group_id(&group))
                .with_generation_id(generation)
                .with_member_id(StrBytes::from_string(id.clone()));
            let response: HeartbeatResponse = client.send(ApiKey::Heartbeat, hb_version, &request).await;
            assert_eq!(response.error_code, NONE, "heartbeat v{hb_version}");
        }
        let describe_version = version.min(4);
        let described = client.describe(describe_version, &group).await;
        assert_eq!(described.groups[0].members.len(), 1, "describe v{describe_version}");
        assert_eq!(described.groups[0].members[0].client_id.as_str(), "versions");
        let list_version = version.min(4);
        assert!(client.list(list_version, &[]).await.iter().any(|(g, _, _)| *g == group), "list v{list_version}");
        assert_eq!(client.leave(version.min(1), &group, &id).await, NONE);
        assert_eq!(client.delete(version.min(1), &group).await, NONE, "delete v{}", version.min(1));
    }
}

/// DescribeTopicPartitions (not a group API; this file has the protocol harness): topics in
/// name order, an unknown one refused and not created, partitions paged by the cursor.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn describe_topic_partitions_pages_by_cursor() {
    use kafka_protocol::messages::describe_topic_partitions_request::{Cursor, TopicRequest};
    let server = start().await;
    let mut client = Client::connect(&server, "admin").await;
    let ask = |cursor: Option<Cursor>| {
        DescribeTopicPartitionsRequest::default()
            .with_topics(vec![
                TopicRequest::default().with_name(topic_name("orders")),
                TopicRequest::default().with_name(topic_name("missing")),
            ])
            .with_response_partition_limit(3)
            .with_cursor(cursor)
    };
    let rows = |r: &DescribeTopicPartitionsResponse| -> Vec<(String, i16, Vec<i32>)> {
        r.topics
            .iter()
            .map(|t| {
                let name = t.name.as_ref().map(|n| n.to_string()).unwrap_or_default();
                (name, t.error_code, t.partitions.iter().map(|p| p.partition_index).collect())
            })
            .collect()
    };
    let first: DescribeTopicPartitionsResponse = client.send(ApiKey::DescribeTopicPartitions, 0, &ask(None)).await;
    assert_eq!(
        rows(&first),
        [("missing".to_string(), UNKNOWN_TOPIC_OR_PARTITION, vec![]), ("orders".to_string(), NONE, vec![0, 1, 2])]
    );
    let p = &first.topics[1].partitions[0];
    assert_eq!((p.leader_id.0, p.replica_nodes.len(), p.isr_nodes.len()), (1, 1, 1));
    assert_eq!(p.eligible_leader_replicas.as_deref(), Some(&[][..]));
    let next = first.next_cursor.expect("the limit cut orders");
    assert_eq!((next.topic_name.as_str(), next.partition_index), ("orders", 3));
    let cursor = Cursor::default().with_topic_name(next.topic_name).with_partition_index(next.partition_index);
    let second: DescribeTopicPartitionsResponse =
        client.send(ApiKey::DescribeTopicPartitions, 0, &ask(Some(cursor))).await;
    assert_eq!(rows(&second), [("orders".to_string(), NONE, vec![3])]);
    assert!(second.next_cursor.is_none());
}
