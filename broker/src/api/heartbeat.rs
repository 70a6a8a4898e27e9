//! Heartbeat (key 12): keeps a member's session alive and tells it about rebalances.

use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};

use super::Ctx;

pub(crate) async fn handle(ctx: &Ctx<'_>, request: HeartbeatRequest) -> HeartbeatResponse {
    if request.group_id.0.is_empty() {
        return HeartbeatResponse::default()
            .with_error_code(kafka_protocol::ResponseError::InvalidGroupId.code());
    }
    let code = ctx
        .broker
        .groups()
        .heartbeat(
            ctx.broker,
            request.group_id.0.as_str(),
            request.member_id.as_str(),
            request.group_instance_id.as_ref().map(|s| s.as_str()),
            request.generation_id,
        )
        .await;
    HeartbeatResponse::default().with_error_code(code)
}
