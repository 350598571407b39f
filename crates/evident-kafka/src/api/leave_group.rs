//! LeaveGroup: a member leaves (a consumer closing), so the others rebalance at once instead of
//! waiting for its session to expire. Served at v0–v1, which name one member and report its
//! error at the top level; the batch form of v3+ (KIP-345) is not advertised.

use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use crate::handler::{Ctx, ErrorCodes};

/// Handles LeaveGroup.
pub async fn handle(ctx: &Ctx<'_>, req: LeaveGroupRequest) -> LeaveGroupResponse {
    let member = [req.member_id.to_string()];
    let code = match ctx.broker.coordinator.leave(req.group_id.as_str(), &member) {
        Err(e) => e.code(),
        Ok(results) => results.first().and_then(|r| r.err()).map_or(0, |e| e.code()),
    };
    LeaveGroupResponse::default().with_error_code(code)
}

impl ErrorCodes for LeaveGroupResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
    }
}
