//! LeaveGroup (key 13): members leave at once (consumer `close()`), triggering a rebalance
//! for the rest; v3+ batches members and allows removal of static members by instance id.

use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};

use super::Ctx;

pub(crate) async fn handle(ctx: &Ctx<'_>, request: LeaveGroupRequest) -> LeaveGroupResponse {
    let group_id = request.group_id.0.as_str();
    if group_id.is_empty() {
        return LeaveGroupResponse::default()
            .with_error_code(kafka_protocol::ResponseError::InvalidGroupId.code());
    }
    let members: Vec<(String, Option<String>)> = if ctx.version >= 3 {
        request
            .members
            .iter()
            .map(|m| {
                (
                    m.member_id.as_str().to_string(),
                    m.group_instance_id.as_ref().map(|s| s.as_str().to_string()),
                )
            })
            .collect()
    } else {
        vec![(request.member_id.as_str().to_string(), None)]
    };
    match ctx
        .broker
        .groups()
        .leave(ctx.broker, group_id, &members)
        .await
    {
        Err(code) => LeaveGroupResponse::default().with_error_code(code),
        Ok(codes) if ctx.version >= 3 => LeaveGroupResponse::default().with_members(
            request
                .members
                .into_iter()
                .zip(codes)
                .map(|(m, code)| {
                    MemberResponse::default()
                        .with_member_id(m.member_id)
                        .with_group_instance_id(m.group_instance_id)
                        .with_error_code(code)
                })
                .collect(),
        ),
        Ok(codes) => {
            LeaveGroupResponse::default().with_error_code(codes.first().copied().unwrap_or(0))
        }
    }
}
