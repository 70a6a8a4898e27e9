//! ListGroups (key 16): every group this coordinator knows, filtered by state (v4+) and
//! type (v5+; all groups here are "classic").

use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};

use super::{str_bytes, Ctx};

pub(crate) async fn handle(ctx: &Ctx<'_>, request: ListGroupsRequest) -> ListGroupsResponse {
    let states: Vec<String> = request
        .states_filter
        .iter()
        .map(|s| s.as_str().to_lowercase())
        .collect();
    let types: Vec<String> = request
        .types_filter
        .iter()
        .map(|s| s.as_str().to_lowercase())
        .collect();
    let listed = match ctx.broker.groups().groups() {
        Ok(groups) => groups,
        Err(code) => return ListGroupsResponse::default().with_error_code(code),
    };
    let mut groups: Vec<ListedGroup> = listed
        .into_iter()
        .filter(|g| states.is_empty() || states.contains(&g.state().name().to_lowercase()))
        .filter(|_| types.is_empty() || types.iter().any(|t| t == "classic"))
        .map(|g| {
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(g.group_id.clone())))
                .with_protocol_type(str_bytes(g.protocol_type.clone().unwrap_or_default()));
            if ctx.version >= 4 {
                listed.group_state = str_bytes(g.state().name());
            }
            if ctx.version >= 5 {
                listed.group_type = str_bytes("classic");
            }
            listed
        })
        .collect();
    groups.sort_by(|a, b| a.group_id.0.as_str().cmp(b.group_id.0.as_str()));
    ListGroupsResponse::default().with_groups(groups)
}
