//! DescribeGroups (key 15): state, protocol and members of groups. As in Kafka, member
//! metadata and assignments are only reported for a Stable group, and an unknown group is
//! GROUP_ID_NOT_FOUND from v6 (as "Dead" without an error before).

use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, Ctx};
use crate::group::GroupState;

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: DescribeGroupsRequest,
) -> DescribeGroupsResponse {
    let mut groups = Vec::with_capacity(request.groups.len());
    for id in request.groups {
        groups.push(describe(ctx, id).await);
    }
    DescribeGroupsResponse::default().with_groups(groups)
}

/// One group's description, or its error.
async fn describe(ctx: &Ctx<'_>, id: kafka_protocol::messages::GroupId) -> DescribedGroup {
    let described = DescribedGroup::default()
        .with_group_id(id.clone())
        .with_authorized_operations(i32::MIN);
    if id.0.is_empty() {
        return described.with_error_code(ResponseError::InvalidGroupId.code());
    }
    let g = match ctx
        .broker
        .groups()
        .describe(ctx.broker, id.0.as_str())
        .await
    {
        Ok(g) => g,
        // Kafka answers an empty description with the error (NOT_COORDINATOR,
        // COORDINATOR_LOAD_IN_PROGRESS).
        Err(code) => return described.with_error_code(code),
    };
    // A consumer-protocol (KIP-848) group is not a classic group: Kafka answers as for an
    // unknown one, and the admin client describes it with ConsumerGroupDescribe.
    let consumer_group = g.as_ref().is_some_and(|g| g.consumer.is_some());
    let Some(g) = g.filter(|g| g.consumer.is_none()) else {
        // Kafka 4.x answers v6+ with GROUP_ID_NOT_FOUND and says which of the two it is;
        // older versions get "Dead".
        if ctx.version >= 6 {
            let message = if consumer_group {
                format!("Group {} is not a classic group.", id.0.as_str())
            } else {
                format!("Group {} not found.", id.0.as_str())
            };
            return described
                .with_error_code(ResponseError::GroupIdNotFound.code())
                .with_error_message(Some(str_bytes(message)))
                .with_group_state(str_bytes(GroupState::Dead.name()));
        }
        return described.with_group_state(str_bytes(GroupState::Dead.name()));
    };
    let stable = g.state() == GroupState::Stable;
    let protocol = g.protocol_name.clone().unwrap_or_default();
    let members = g
        .members()
        .map(|m| {
            let mut d = DescribedGroupMember::default()
                .with_member_id(str_bytes(m.member_id.clone()))
                .with_client_id(str_bytes(m.client_id.clone()))
                .with_client_host(str_bytes(m.client_host.clone()));
            if ctx.version >= 4 {
                d.group_instance_id = m.group_instance_id.clone().map(str_bytes);
            }
            if stable {
                d.member_metadata = m.metadata(&protocol);
                d.member_assignment = m.assignment.clone();
            }
            d
        })
        .collect();
    described
        .with_group_state(str_bytes(g.state().name()))
        .with_protocol_type(str_bytes(g.protocol_type.clone().unwrap_or_default()))
        .with_protocol_data(str_bytes(if stable { protocol } else { String::new() }))
        .with_members(members)
}
