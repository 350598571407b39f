//! What the coordinator takes and gives: the parameters of a join, the answers to joins and
//! syncs (now, or later through a oneshot), and the views DescribeGroups and ListGroups show.
//! Plain data, so the handlers depend on these types and not on the state machine.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use tokio::sync::{oneshot, watch};

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

/// The answer to a SyncGroup (v0–3 carry no protocol type or name).
#[derive(Debug, Clone)]
pub struct SyncResult {
    /// The error, if any.
    pub error: Option<ResponseError>,
    /// This member's assignment, as the leader gave it.
    pub assignment: Bytes,
}

impl SyncResult {
    /// A failed sync.
    pub fn error(error: ResponseError) -> Self {
        Self { error: Some(error), assignment: Bytes::new() }
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
