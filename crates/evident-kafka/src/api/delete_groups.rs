//! DeleteGroups: deletes a group's committed offsets (tombstones in `__consumer_offsets`) and
//! its coordinator state. Refused with `NON_EMPTY_GROUP` while it has members; a group that
//! does not exist is `GROUP_ID_NOT_FOUND`.

use evident_groups::validate_group;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse, GroupId};

use crate::handler::{Ctx, ErrorCodes};
use crate::error::KafkaError;

async fn delete(ctx: &Ctx<'_>, group: &str) -> Result<(), ResponseError> {
    validate_group(group).map_err(|_| ResponseError::InvalidGroupId)?;
    let known = ctx.broker.coordinator.forget_empty(group)?;
    let (groups, name) = (ctx.broker.groups.clone(), group.to_string());
    // Deleting appends tombstones and waits for the log's sync: off the async workers.
    let deleted = tokio::task::spawn_blocking(move || groups.delete(&name)).await;
    match deleted {
        Ok(Ok(())) => Ok(()),
        // Known to the coordinator but without offsets: forgetting it was the whole deletion.
        Ok(Err(evident_groups::Error::UnknownGroup(_))) if known => Ok(()),
        Ok(Err(e)) => Err(KafkaError::from(e).code),
        Err(e) => {
            tracing::error!(error = %e, "group deletion task failed");
            Err(ResponseError::UnknownServerError)
        }
    }
}

/// Handles DeleteGroups.
pub async fn handle(ctx: &Ctx<'_>, req: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(req.groups_names.len());
    for group in req.groups_names {
        let code = delete(ctx, group.as_str()).await.err().map_or(0, |e| e.code());
        results.push(DeletableGroupResult::default().with_group_id(GroupId(group.0)).with_error_code(code));
    }
    DeleteGroupsResponse::default().with_results(results)
}

impl ErrorCodes for DeleteGroupsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.results.iter().for_each(|r| each(r.error_code));
    }
}
