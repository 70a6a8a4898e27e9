//! JoinGroup (key 11): join or rejoin a group; parked until the rebalance completes.

use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, Ctx};
use crate::group::JoinRequest;

pub(crate) async fn handle(ctx: &Ctx<'_>, request: JoinGroupRequest) -> JoinGroupResponse {
    let group_id = request.group_id.0.as_str().to_string();
    if group_id.is_empty() {
        return JoinGroupResponse::default()
            .with_error_code(ResponseError::InvalidGroupId.code())
            .with_generation_id(-1)
            .with_member_id(request.member_id);
    }
    let join = JoinRequest {
        member_id: request.member_id.as_str().to_string(),
        group_instance_id: request
            .group_instance_id
            .as_ref()
            .map(|s| s.as_str().to_string()),
        client_id: ctx
            .header
            .client_id
            .as_ref()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", ctx.peer.ip()),
        session_timeout_ms: request.session_timeout_ms,
        // v0 has no rebalance timeout: Kafka uses the session timeout.
        rebalance_timeout_ms: if ctx.version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        },
        protocol_type: request.protocol_type.as_str().to_string(),
        protocols: request
            .protocols
            .iter()
            .map(|p| (p.name.as_str().to_string(), p.metadata.clone()))
            .collect(),
        require_known_member_id: ctx.version >= 4,
    };
    let r = ctx.broker.groups().join(ctx.broker, &group_id, join).await;
    let mut response = JoinGroupResponse::default()
        .with_error_code(r.error_code)
        .with_generation_id(r.generation_id)
        .with_protocol_name(r.protocol_name.map(str_bytes))
        .with_leader(str_bytes(r.leader))
        .with_member_id(str_bytes(r.member_id))
        .with_members(
            r.members
                .into_iter()
                .map(|m| {
                    JoinGroupResponseMember::default()
                        .with_member_id(str_bytes(m.member_id))
                        .with_group_instance_id(if ctx.version >= 5 {
                            m.group_instance_id.map(str_bytes)
                        } else {
                            None
                        })
                        .with_metadata(m.metadata)
                })
                .collect(),
        );
    if ctx.version >= 9 {
        response.skip_assignment = r.skip_assignment;
    }
    if ctx.version >= 7 {
        response.protocol_type = r.protocol_type.map(str_bytes);
    }
    // Before v7 the protocol name is a non-nullable string.
    if ctx.version < 7 && response.protocol_name.is_none() {
        response.protocol_name = Some(str_bytes(""));
    }
    response
}
