//! DescribeGroups: state, protocol and members of each group. As in Kafka, a member's metadata
//! and assignment (the bytes it and the leader sent) and the protocol name are only shown while
//! the group is `Stable`; a group with only committed offsets is `Empty`; a group that does not
//! exist is `Dead` with no error at v0–v5, and `GROUP_ID_NOT_FOUND` with Kafka's message
//! ("Group G not found.") from v6 (KIP-1043), which the 4.x admin client and
//! `kafka-consumer-groups --describe` show for a deleted group.

use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse, GroupId};
use kafka_protocol::protocol::StrBytes;

use crate::handler::{Ctx, ErrorCodes};

fn describe(ctx: &Ctx<'_>, group: GroupId) -> DescribedGroup {
    let described = DescribedGroup::default().with_group_id(group.clone());
    if let Some(view) = ctx.broker.coordinator.describe(group.as_str()) {
        let members = view
            .members
            .into_iter()
            .map(|m| {
                DescribedGroupMember::default()
                    .with_member_id(StrBytes::from_string(m.member_id))
                    .with_group_instance_id(m.instance_id.map(StrBytes::from_string))
                    .with_client_id(StrBytes::from_string(m.client_id))
                    .with_client_host(StrBytes::from_string(m.client_host))
                    .with_member_metadata(m.metadata)
                    .with_member_assignment(m.assignment)
            })
            .collect();
        return described
            .with_group_state(StrBytes::from_static_str(view.phase.name()))
            .with_protocol_type(StrBytes::from_string(view.protocol_type))
            .with_protocol_data(StrBytes::from_string(view.protocol_name))
            .with_members(members);
    }
    let has_offsets = ctx.broker.groups.committed(group.as_str(), None).is_ok_and(|c| !c.is_empty());
    if has_offsets {
        return described.with_group_state(StrBytes::from_static_str("Empty"));
    }
    let dead = described.with_group_state(StrBytes::from_static_str("Dead"));
    if ctx.version >= 6 {
        let message = format!("Group {} not found.", group.as_str());
        dead.with_error_code(ResponseError::GroupIdNotFound.code()).with_error_message(Some(StrBytes::from_string(message)))
    } else {
        dead
    }
}

/// Handles DescribeGroups.
pub async fn handle(ctx: &Ctx<'_>, req: DescribeGroupsRequest) -> DescribeGroupsResponse {
    let groups = req.groups.into_iter().map(|group| describe(ctx, group)).collect();
    DescribeGroupsResponse::default().with_groups(groups)
}

impl ErrorCodes for DescribeGroupsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        self.groups.iter().for_each(|g| each(g.error_code));
    }
}
