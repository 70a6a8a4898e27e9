//! ListPartitionReassignments (key 46): the reassignments in progress
//! (`kafka-reassign-partitions.sh --verify / --list`), answered by the active controller
//! from its image as Kafka's `ReplicationControlManager.listPartitionReassignments`: every
//! reassigning partition for a null topic list, else the named partitions that are
//! reassigning; topics without one are left out.

use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, ApiError, Ctx};
use crate::controller::{ControllerReply, ControllerRequest, TopicPartitionName};

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let partitions = request.topics.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| {
                t.partition_indexes
                    .iter()
                    .map(|&partition| TopicPartitionName {
                        topic: t.name.0.as_str().to_string(),
                        partition,
                    })
            })
            .collect::<Vec<_>>()
    });
    let ongoing = match ctx
        .broker
        .submit(ControllerRequest::ListPartitionReassignments { partitions })
        .await
    {
        Ok(ControllerReply::Reassignments(ongoing)) => ongoing,
        Ok(other) => {
            return error_response(ApiError::new(
                ResponseError::UnknownServerError,
                format!("unexpected controller reply {other:?}"),
            ))
        }
        Err(e) => return error_response(e),
    };
    let ids = |v: &[i32]| v.iter().map(|&b| BrokerId(b)).collect::<Vec<_>>();
    let mut topics: Vec<OngoingTopicReassignment> = Vec::new();
    for r in &ongoing {
        let new_topic = topics.last().is_none_or(|t| t.name.0.as_str() != r.topic);
        if new_topic {
            topics.push(
                OngoingTopicReassignment::default().with_name(TopicName(str_bytes(&r.topic))),
            );
        }
        if let Some(topic) = topics.last_mut() {
            topic.partitions.push(
                OngoingPartitionReassignment::default()
                    .with_partition_index(r.partition)
                    .with_replicas(ids(&r.replicas))
                    .with_adding_replicas(ids(&r.adding_replicas))
                    .with_removing_replicas(ids(&r.removing_replicas)),
            );
        }
    }
    // Kafka sets a null top-level message on success.
    ListPartitionReassignmentsResponse::default()
        .with_error_message(None)
        .with_topics(topics)
}

/// Kafka's `ListPartitionReassignmentsRequest.getErrorResponse`: the error at the top level.
fn error_response(error: ApiError) -> ListPartitionReassignmentsResponse {
    ListPartitionReassignmentsResponse::default()
        .with_error_code(error.code)
        .with_error_message(error.message_str())
}
