//! DeleteGroups (key 42): delete groups without active members, with their offsets.

use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use kafka_protocol::ResponseError;

use super::Ctx;

pub(crate) async fn handle(ctx: &Ctx<'_>, request: DeleteGroupsRequest) -> DeleteGroupsResponse {
    let mut results = Vec::with_capacity(request.groups_names.len());
    for id in request.groups_names {
        let code = if id.0.is_empty() {
            ResponseError::InvalidGroupId.code()
        } else {
            match ctx
                .broker
                .groups()
                .delete_group(ctx.broker, id.0.as_str())
                .await
            {
                Ok(()) => 0,
                Err(e) => e.code(),
            }
        };
        results.push(
            DeletableGroupResult::default()
                .with_group_id(id)
                .with_error_code(code),
        );
    }
    DeleteGroupsResponse::default().with_results(results)
}
