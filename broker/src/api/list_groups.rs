//! ListGroups (key 16): every group this coordinator knows, filtered by state (v4+) and
//! type (v5+): "consumer" for groups of the KIP-848 protocol, "classic" for the others.

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
        .map(|g| {
            let (kind, state, protocol_type) = match &g.consumer {
                Some(c) => ("consumer", c.state().name(), "consumer".to_string()),
                None => (
                    "classic",
                    g.state().name(),
                    g.protocol_type.clone().unwrap_or_default(),
                ),
            };
            (g.group_id, kind, state, protocol_type)
        })
        .filter(|(_, _, state, _)| states.is_empty() || states.contains(&state.to_lowercase()))
        .filter(|(_, kind, _, _)| types.is_empty() || types.iter().any(|t| t == kind))
        .map(|(group_id, kind, state, protocol_type)| {
            let mut listed = ListedGroup::default()
                .with_group_id(GroupId(str_bytes(group_id)))
                .with_protocol_type(str_bytes(protocol_type));
            if ctx.version >= 4 {
                listed.group_state = str_bytes(state);
            }
            if ctx.version >= 5 {
                listed.group_type = str_bytes(kind);
            }
            listed
        })
        .collect();
    groups.sort_by(|a, b| a.group_id.0.as_str().cmp(b.group_id.0.as_str()));
    ListGroupsResponse::default().with_groups(groups)
}
