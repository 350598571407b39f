//! Decoding a request frame, routing it to its API's handler, and encoding the reply. The
//! table [`SUPPORTED`] is both the ApiVersions advertisement and the gate: a request for a key
//! or version outside it is refused here, before its body is decoded.

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Encodable};

use crate::broker::Broker;
use crate::{
    api_versions, create_partitions, create_topics, delete_topics, describe_configs, fetch, init_producer_id,
    list_offsets, metadata, produce,
};

/// What to do after a request.
pub enum Outcome {
    /// Send these bytes (response header and body, without the size prefix).
    Reply(BytesMut),
    /// Send nothing (a produce with `acks=0`).
    NoReply,
    /// Close the connection, for this reason.
    Close(String),
    /// The request is under way (a produce whose appends are queued but not yet synced): the
    /// reply comes when this finishes. The connection reads the next request meanwhile and
    /// writes replies in request order.
    Later(std::pin::Pin<Box<dyn std::future::Future<Output = Outcome> + Send>>),
}

impl std::fmt::Debug for Outcome {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Outcome::Reply(b) => write!(f, "Reply({} bytes)", b.len()),
            Outcome::NoReply => f.write_str("NoReply"),
            Outcome::Close(why) => write!(f, "Close({why})"),
            Outcome::Later(_) => f.write_str("Later"),
        }
    }
}

/// The versions evident serves, per API: the ranges real clients negotiate
/// (research/kafka-infra.md §4), within what the codec supports. Transactions and telemetry are
/// left out on purpose: clients then do not try them.
pub const SUPPORTED: &[(ApiKey, i16, i16)] = &[
    (ApiKey::ApiVersions, 0, 3),
    // log and topics (begin)
    (ApiKey::Metadata, 0, 12),
    (ApiKey::Produce, 3, 9),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::ListOffsets, 1, 7),
    (ApiKey::InitProducerId, 0, 4),
    (ApiKey::CreateTopics, 2, 4),
    (ApiKey::DeleteTopics, 1, 4),
    (ApiKey::DescribeConfigs, 1, 1),
    (ApiKey::CreatePartitions, 0, 3),
    // log and topics (end)
    // groups (begin)
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::OffsetFetch, 1, 7),
    (ApiKey::FindCoordinator, 0, 2),
    (ApiKey::JoinGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 3),
    (ApiKey::LeaveGroup, 0, 1),
    (ApiKey::SyncGroup, 0, 3),
    (ApiKey::DescribeGroups, 0, 4),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::DeleteGroups, 0, 1),
    // groups (end)
];

/// The supported range of `key`, if any.
pub fn supported(key: ApiKey) -> Option<(i16, i16)> {
    SUPPORTED.iter().find(|(k, _, _)| *k == key).map(|&(_, lo, hi)| (lo, hi))
}

/// What a handler knows about the request it answers.
#[derive(Debug)]
pub struct Ctx<'a> {
    /// The shared state.
    pub broker: &'a Arc<Broker>,
    /// The request header (client id, correlation id).
    pub header: &'a RequestHeader,
    /// The peer's address.
    pub peer: SocketAddr,
    /// The request's version.
    pub version: i16,
}

fn encode<R: Encodable>(key: ApiKey, correlation_id: i32, version: i16, body: &R) -> Outcome {
    let mut out = BytesMut::new();
    let header = ResponseHeader::default().with_correlation_id(correlation_id);
    if let Err(e) = header.encode(&mut out, key.response_header_version(version)) {
        return Outcome::Close(format!("cannot encode the response header: {e}"));
    }
    match body.encode(&mut out, version) {
        Ok(()) => Outcome::Reply(out),
        Err(e) => Outcome::Close(format!("cannot encode the {key:?} v{version} response: {e}")),
    }
}

macro_rules! route {
    ($ctx:expr, $buf:expr, $key:expr, $req:ty, $handler:path) => {{
        let req = match <$req>::decode(&mut $buf, $ctx.version) {
            Ok(req) => req,
            Err(e) => return Outcome::Close(format!("malformed {:?} v{} request: {e}", $key, $ctx.version)),
        };
        let response = $handler(&$ctx, req).await;
        encode($key, $ctx.header.correlation_id, $ctx.version, &response)
    }};
}

/// Handles one request frame.
pub async fn handle(broker: &Arc<Broker>, peer: SocketAddr, frame: Bytes) -> Outcome {
    if frame.len() < 8 {
        return Outcome::Close(format!("a request of {} bytes is shorter than any request header", frame.len()));
    }
    let raw_key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let correlation_id = i32::from_be_bytes([frame[4], frame[5], frame[6], frame[7]]);
    let Ok(key) = ApiKey::try_from(raw_key) else {
        return Outcome::Close(format!("unknown API key {raw_key}"));
    };
    let Some((lo, hi)) = supported(key) else {
        return Outcome::Close(format!("API {key:?} (key {raw_key}) is not supported by evident"));
    };
    if key == ApiKey::ApiVersions && version > hi {
        // KIP-511: answer a newer ApiVersions with UNSUPPORTED_VERSION at v0 and our table, so
        // the client retries at a version we speak.
        return encode(key, correlation_id, 0, &api_versions::unsupported_version());
    }
    if version < lo || version > hi {
        return Outcome::Close(format!("{key:?} v{version} is not supported (evident serves v{lo} to v{hi})"));
    }
    let mut buf = frame;
    let header = match RequestHeader::decode(&mut buf, key.request_header_version(version)) {
        Ok(h) => h,
        Err(e) => return Outcome::Close(format!("malformed request header: {e}")),
    };
    let ctx = Ctx { broker, header: &header, peer, version };
    match key {
        ApiKey::ApiVersions => route!(ctx, buf, key, ApiVersionsRequest, api_versions::handle),
        // log and topics (begin)
        ApiKey::Metadata => route!(ctx, buf, key, MetadataRequest, metadata::handle),
        ApiKey::Produce => {
            let req = match ProduceRequest::decode(&mut buf, ctx.version) {
                Ok(req) => req,
                Err(e) => return Outcome::Close(format!("malformed Produce v{} request: {e}", ctx.version)),
            };
            let durable = produce::begin(&ctx, req).await;
            let (correlation_id, version) = (header.correlation_id, ctx.version);
            Outcome::Later(Box::pin(async move {
                match durable.await {
                    Some(response) => encode(key, correlation_id, version, &response),
                    None => Outcome::NoReply,
                }
            }))
        }
        ApiKey::Fetch => route!(ctx, buf, key, FetchRequest, fetch::handle),
        ApiKey::ListOffsets => route!(ctx, buf, key, ListOffsetsRequest, list_offsets::handle),
        ApiKey::InitProducerId => route!(ctx, buf, key, InitProducerIdRequest, init_producer_id::handle),
        ApiKey::CreateTopics => route!(ctx, buf, key, CreateTopicsRequest, create_topics::handle),
        ApiKey::DeleteTopics => route!(ctx, buf, key, DeleteTopicsRequest, delete_topics::handle),
        ApiKey::DescribeConfigs => route!(ctx, buf, key, DescribeConfigsRequest, describe_configs::handle),
        ApiKey::CreatePartitions => route!(ctx, buf, key, CreatePartitionsRequest, create_partitions::handle),
        // log and topics (end)
        // groups (begin)
        ApiKey::OffsetCommit => route!(ctx, buf, key, OffsetCommitRequest, crate::offset_commit::handle),
        ApiKey::OffsetFetch => route!(ctx, buf, key, OffsetFetchRequest, crate::offset_fetch::handle),
        ApiKey::FindCoordinator => route!(ctx, buf, key, FindCoordinatorRequest, crate::find_coordinator::handle),
        ApiKey::JoinGroup => route!(ctx, buf, key, JoinGroupRequest, crate::join_group::handle),
        ApiKey::Heartbeat => route!(ctx, buf, key, HeartbeatRequest, crate::heartbeat::handle),
        ApiKey::LeaveGroup => route!(ctx, buf, key, LeaveGroupRequest, crate::leave_group::handle),
        ApiKey::SyncGroup => route!(ctx, buf, key, SyncGroupRequest, crate::sync_group::handle),
        ApiKey::DescribeGroups => route!(ctx, buf, key, DescribeGroupsRequest, crate::describe_groups::handle),
        ApiKey::ListGroups => route!(ctx, buf, key, ListGroupsRequest, crate::list_groups::handle),
        ApiKey::DeleteGroups => route!(ctx, buf, key, DeleteGroupsRequest, crate::delete_groups::handle),
        // groups (end)
        other => Outcome::Close(format!("API {other:?} is not routed")),
    }
}
