//! SyncGroup: the leader hands in the assignment it computed; every member (the leader too)
//! gets its own part. A follower's request waits until the leader's arrives.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use crate::coordinator::SyncResult;
use crate::handler::{Ctx, ErrorCodes};

/// Handles SyncGroup.
pub async fn handle(ctx: &Ctx<'_>, req: SyncGroupRequest) -> SyncGroupResponse {
    let fenced = ctx.broker.coordinator.check_instance(
        req.group_id.as_str(),
        req.member_id.as_str(),
        req.group_instance_id.as_deref(),
    );
    if let Err(e) = fenced {
        return SyncGroupResponse::default().with_error_code(e.code());
    }
    let assignments = req.assignments.into_iter().map(|a| (a.member_id.to_string(), a.assignment)).collect();
    let result = ctx
        .broker
        .coordinator
        .sync(req.group_id.as_str(), req.generation_id, req.member_id.as_str(), assignments)
        .wait(&ctx.broker.shutdown, SyncResult::error)
        .await;
    // The protocol type and name are v5+ fields; evident serves v0-3.
    SyncGroupResponse::default().with_error_code(result.error.map_or(0, |e| e.code())).with_assignment(result.assignment)
}

impl ErrorCodes for SyncGroupResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
    }
}
