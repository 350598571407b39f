//! Heartbeat: keeps a member's session open, and tells it (`REBALANCE_IN_PROGRESS`) when the
//! group rebalances so it rejoins.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use crate::handler::{Ctx, ErrorCodes};

/// Handles Heartbeat.
pub async fn handle(ctx: &Ctx<'_>, req: HeartbeatRequest) -> HeartbeatResponse {
    let coordinator = &ctx.broker.coordinator;
    let group = req.group_id.as_str();
    let result = coordinator
        .check_instance(group, req.member_id.as_str(), req.group_instance_id.as_deref())
        .and_then(|()| coordinator.heartbeat(group, req.generation_id, req.member_id.as_str()));
    HeartbeatResponse::default().with_error_code(result.err().map_or(0, |e| e.code()))
}

impl ErrorCodes for HeartbeatResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
    }
}
