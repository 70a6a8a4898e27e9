//! SyncGroup (key 14): the leader hands out assignments; followers wait for theirs.

use kafka_protocol::messages::{SyncGroupRequest, SyncGroupResponse};

use super::{str_bytes, Ctx};
use crate::group::SyncRequest;

pub(crate) async fn handle(ctx: &Ctx<'_>, request: SyncGroupRequest) -> SyncGroupResponse {
    let group_id = request.group_id.0.as_str().to_string();
    if group_id.is_empty() {
        return SyncGroupResponse::default()
            .with_error_code(kafka_protocol::ResponseError::InvalidGroupId.code());
    }
    let sync = SyncRequest {
        member_id: request.member_id.as_str().to_string(),
        group_instance_id: request
            .group_instance_id
            .as_ref()
            .map(|s| s.as_str().to_string()),
        generation_id: request.generation_id,
        protocol_type: request
            .protocol_type
            .as_ref()
            .map(|s| s.as_str().to_string()),
        protocol_name: request
            .protocol_name
            .as_ref()
            .map(|s| s.as_str().to_string()),
        assignments: request
            .assignments
            .iter()
            .map(|a| (a.member_id.as_str().to_string(), a.assignment.clone()))
            .collect(),
    };
    let r = ctx.broker.groups().sync(ctx.broker, &group_id, sync).await;
    let mut response = SyncGroupResponse::default()
        .with_error_code(r.error_code)
        .with_assignment(r.assignment);
    if ctx.version >= 5 {
        response.protocol_type = r.protocol_type.map(str_bytes);
        response.protocol_name = r.protocol_name.map(str_bytes);
    }
    response
}
