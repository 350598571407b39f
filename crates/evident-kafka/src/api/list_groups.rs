//! ListGroups: every group the coordinator knows (with its protocol type and state) and every
//! group that only has committed offsets (state `Empty`, no protocol type, as Kafka shows a
//! group used only for manual commits). v4 filters by state, ignoring case as Kafka does.

use std::collections::BTreeMap;

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use kafka_protocol::protocol::StrBytes;

use crate::handler::{Ctx, ErrorCodes};

/// Handles ListGroups.
pub async fn handle(ctx: &Ctx<'_>, req: ListGroupsRequest) -> ListGroupsResponse {
    let mut groups: BTreeMap<String, (String, &'static str)> = BTreeMap::new();
    for summary in ctx.broker.groups.list() {
        groups.insert(summary.group, (String::new(), summary.state.kafka_name()));
    }
    // The coordinator's view wins: it knows the protocol type and the rebalance state.
    for view in ctx.broker.coordinator.list() {
        groups.insert(view.group, (view.protocol_type, view.phase.name()));
    }
    let wanted: Vec<String> = req.states_filter.iter().map(|s| s.to_lowercase()).collect();
    let listed = groups
        .into_iter()
        .filter(|(_, (_, state))| wanted.is_empty() || wanted.contains(&state.to_lowercase()))
        .map(|(group, (protocol_type, state))| {
            ListedGroup::default()
                .with_group_id(GroupId(StrBytes::from_string(group)))
                .with_protocol_type(StrBytes::from_string(protocol_type))
                .with_group_state(StrBytes::from_static_str(state))
        })
        .collect();
    ListGroupsResponse::default().with_groups(listed)
}

impl ErrorCodes for ListGroupsResponse {
    fn error_codes(&self, each: &mut dyn FnMut(i16)) {
        each(self.error_code);
    }
}
