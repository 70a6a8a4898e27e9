//! ConsumerGroupDescribe (key 69): state, epochs, assignor and members of consumer groups of
//! the next-generation protocol (KIP-848), as `kafka-consumer-groups.sh --describe` shows
//! them. A classic group (or an unknown one) is GROUP_ID_NOT_FOUND: the admin client then
//! describes it with DescribeGroups, as it does against Kafka.

use std::collections::BTreeMap;

use kafka_protocol::messages::consumer_group_describe_response::{
    Assignment, DescribedGroup, Member, TopicPartitions,
};
use kafka_protocol::messages::{
    ConsumerGroupDescribeRequest, ConsumerGroupDescribeResponse, GroupId, TopicName,
};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{str_bytes, Ctx};
use crate::group::consumer;

/// `MemberType` of a member that speaks the consumer protocol (v1+).
const CONSUMER_MEMBER_TYPE: i8 = 1;
/// `MemberType` of a member that speaks the classic protocol in a consumer group (v1+).
const CLASSIC_MEMBER_TYPE: i8 = 0;

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: ConsumerGroupDescribeRequest,
) -> ConsumerGroupDescribeResponse {
    let mut groups = Vec::with_capacity(request.group_ids.len());
    for id in request.group_ids {
        groups.push(describe(ctx, id).await);
    }
    ConsumerGroupDescribeResponse::default().with_groups(groups)
}

async fn describe(ctx: &Ctx<'_>, id: GroupId) -> DescribedGroup {
    let described = DescribedGroup::default()
        .with_group_id(id.clone())
        .with_authorized_operations(i32::MIN);
    if id.0.is_empty() {
        return described.with_error_code(ResponseError::InvalidGroupId.code());
    }
    let found = match ctx
        .broker
        .groups()
        .describe(ctx.broker, id.0.as_str())
        .await
    {
        Ok(found) => found,
        Err(code) => return described.with_error_code(code),
    };
    let not_found = |message: String| {
        described
            .clone()
            .with_error_code(ResponseError::GroupIdNotFound.code())
            .with_error_message(Some(str_bytes(message)))
    };
    let Some(found) = found else {
        return not_found(format!("Group {} not found.", id.0.as_str()));
    };
    let Some(group) = found.consumer else {
        return not_found(format!("Group {} is not a consumer group.", id.0.as_str()));
    };
    let names: BTreeMap<Uuid, String> = group
        .subscribed_topics
        .iter()
        .map(|(name, (topic_id, _))| (*topic_id, name.clone()))
        .collect();
    let assignment = |a: &consumer::Assignment| {
        Assignment::default().with_topic_partitions(
            a.iter()
                .map(|(topic_id, ps)| {
                    TopicPartitions::default()
                        .with_topic_id(*topic_id)
                        .with_topic_name(TopicName(str_bytes(
                            names.get(topic_id).cloned().unwrap_or_default(),
                        )))
                        .with_partitions(ps.iter().copied().collect())
                })
                .collect(),
        )
    };
    let empty = consumer::Assignment::new();
    let members = group
        .members
        .values()
        .map(|m| {
            Member::default()
                .with_member_id(str_bytes(m.member_id.clone()))
                .with_instance_id(m.instance_id.clone().map(str_bytes))
                .with_rack_id(m.rack_id.clone().map(str_bytes))
                .with_member_epoch(m.member_epoch)
                .with_client_id(str_bytes(m.client_id.clone()))
                .with_client_host(str_bytes(m.client_host.clone()))
                .with_subscribed_topic_names(
                    m.subscribed_topic_names
                        .iter()
                        .map(|t| TopicName(str_bytes(t.clone())))
                        .collect(),
                )
                .with_subscribed_topic_regex(m.subscribed_topic_regex.clone().map(str_bytes))
                .with_assignment(assignment(&m.assigned))
                .with_target_assignment(assignment(
                    group.target.get(&m.member_id).unwrap_or(&empty),
                ))
                .with_member_type(if m.uses_classic() {
                    CLASSIC_MEMBER_TYPE
                } else {
                    CONSUMER_MEMBER_TYPE
                })
        })
        .collect();
    described
        .with_group_state(str_bytes(group.state().name()))
        .with_group_epoch(group.group_epoch)
        .with_assignment_epoch(group.assignment_epoch)
        .with_assignor_name(str_bytes(group.assignor()))
        .with_members(members)
}
