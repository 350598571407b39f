//! JoinGroup: a member enters the group, or rejoins it for a rebalance. The answer waits until
//! the join phase completes (see `coordinator`); a first join at v4+ is answered at once with
//! `MEMBER_ID_REQUIRED` and the member id to join with (KIP-394).

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::protocol::StrBytes;

use crate::coordinator::{JoinParams, JoinResult};
use crate::handler::{Ctx, ErrorCodes};

/// Handles JoinGroup.
pub async fn handle(ctx: &Ctx<'_>, req: JoinGroupRequest) -> JoinGroupResponse {
    let member_id = req.member_id.to_string();
    let params = JoinParams {
        group: req.group_id.to_string(),
        member_id: member_id.clone(),
        instance_id: req.group_instance_id.map(|id| id.to_string()),
        client_id: ctx.header.client_id.as_ref().map(|id| id.to_string()).unwrap_or_default(),
        // Kafka shows hosts as Java's InetAddress prints them.
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout_ms: req.session_timeout_ms,
        // v0 has no rebalance timeout: the session timeout served as both.
        rebalance_timeout_ms: if ctx.version == 0 { req.session_timeout_ms } else { req.rebalance_timeout_ms },
        protocol_type: req.protocol_type.to_string(),
        protocols: req.protocols.into_iter().map(|p| (p.name.to_string(), p.metadata)).collect(),
        require_known_member_id: ctx.version >= 4,
    };
    let result =
        ctx.broker.coordinator.join(params).wait(&ctx.broker.shutdown, |e| JoinResult::error(&member_id, e)).await;
    response(result, ctx.version)
}

/// The wire form of a join result at `version`.
pub fn response(result: JoinResult, version: i16) -> JoinGroupResponse {
    let members = result
        .members
        .into_iter()
        .map(|m| {
            JoinGroupResponseMember::default()
                .with_member_id(StrBytes::from_string(m.member_id))
                .with_group_instance_id(m.instance_id.map(StrBytes::from_string))
                .with_metadata(m.metadata)
        })
        .collect();
    let response = JoinGroupResponse::default()
        .with_error_code(result.error.map_or(0, |e| e.code()))
        .with_generation_id(result.generation_id)
        // Not nullable before v7: Kafka sends "" when there is no protocol.
        .with_protocol_name(Some(StrBytes::from_string(result.protocol_name.clone().unwrap_or_default())))
        .with_leader(StrBytes::from_string(result.leader))
        .with_member_id(StrBytes::from_string(result.member_id))
        .with_members(members);
    // Only v7+ carries the protocol type (and may leave the protocol name null).
    if version >= 7 {
        return response
            .with_protocol_type(result.protocol_type.map(StrBytes::from_string))
            .with_protocol_name(result.protocol_name.map(StrBytes::from_string));
    }
    response
}

impl ErrorCodes for JoinGroupResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
    }
}
