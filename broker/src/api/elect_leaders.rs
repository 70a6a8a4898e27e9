//! ElectLeaders (key 43): preferred or unclean leader elections (`kafka-leader-election.sh`),
//! decided by the active controller (this node's, or forwarded to it), as Kafka's
//! `ReplicationControlManager.electLeaders`.
//!
//! A null partition list means every partition of every topic: each topic gets an entry,
//! but partitions whose leader is already the desired one (ELECTION_NOT_NEEDED) are left
//! out of it. Named partitions are answered one by one in the order asked.

use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse, TopicName};
use kafka_protocol::ResponseError;

use super::{str_bytes, ApiError, Ctx};
use crate::controller::{
    ControllerReply, ControllerRequest, ElectionType, PartitionResult as ElectionResult,
    TopicPartitionName,
};

pub(crate) async fn handle(ctx: &Ctx<'_>, request: ElectLeadersRequest) -> ElectLeadersResponse {
    // v0 has no election type and means PREFERRED; kafka-protocol decodes it as 0.
    let election_type = match request.election_type {
        0 => ElectionType::Preferred,
        1 => ElectionType::Unclean,
        other => {
            return error_response(
                &request,
                ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("Unknown election type {other}"),
                ),
            )
        }
    };
    let partitions = request.topic_partitions.as_ref().map(|topics| {
        topics
            .iter()
            .flat_map(|t| {
                t.partitions.iter().map(|&partition| TopicPartitionName {
                    topic: t.topic.0.as_str().to_string(),
                    partition,
                })
            })
            .collect::<Vec<_>>()
    });
    let asked_all = partitions.is_none();
    let reply = ctx
        .broker
        .submit(ControllerRequest::ElectLeaders {
            election_type,
            partitions,
        })
        .await;
    let results = match reply {
        Ok(ControllerReply::Partitions(results)) => results,
        Ok(other) => {
            return error_response(
                &request,
                ApiError::new(
                    ResponseError::UnknownServerError,
                    format!("unexpected controller reply {other:?}"),
                ),
            )
        }
        Err(e) => return error_response(&request, e),
    };
    let by_topic = if asked_all {
        group_every_topic(results)
    } else {
        group_as_asked(&request, results)
    };
    ElectLeadersResponse::default().with_replica_election_results(by_topic)
}

fn partition_result(r: &ElectionResult) -> PartitionResult {
    // Success carries a null message, as Kafka's `ApiError.NONE`.
    let mut result = PartitionResult::default()
        .with_partition_id(r.partition)
        .with_error_message(None);
    if let Some(e) = &r.error {
        result.error_code = e.code;
        result.error_message = e.message.clone().map(str_bytes);
    }
    result
}

/// The answer to a null partition list: one entry per topic, in the controller's order,
/// without the partitions that needed no election.
fn group_every_topic(results: Vec<ElectionResult>) -> Vec<ReplicaElectionResult> {
    let mut out: Vec<ReplicaElectionResult> = Vec::new();
    for r in &results {
        let new_topic = out.last().is_none_or(|t| t.topic.0.as_str() != r.topic);
        if new_topic {
            out.push(ReplicaElectionResult::default().with_topic(TopicName(str_bytes(&r.topic))));
        }
        let not_needed = r
            .error
            .as_ref()
            .is_some_and(|e| e.is(ResponseError::ElectionNotNeeded));
        if !not_needed {
            if let Some(topic) = out.last_mut() {
                topic.partition_result.push(partition_result(r));
            }
        }
    }
    out
}

/// The answer to named partitions: one entry per requested topic, every partition in the
/// order asked (the controller answers them in that order).
fn group_as_asked(
    request: &ElectLeadersRequest,
    results: Vec<ElectionResult>,
) -> Vec<ReplicaElectionResult> {
    let mut results = results.iter();
    request
        .topic_partitions
        .iter()
        .flatten()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|&p| match results.next() {
                    Some(r) => partition_result(r),
                    // The controller answers every partition asked; a short answer is a bug
                    // between versions, reported rather than hidden.
                    None => PartitionResult::default()
                        .with_partition_id(p)
                        .with_error_message(None)
                        .with_error_code(ResponseError::UnknownServerError.code()),
                })
                .collect();
            ReplicaElectionResult::default()
                .with_topic(t.topic.clone())
                .with_partition_result(partitions)
        })
        .collect()
}

/// Kafka's `ElectLeadersRequest.getErrorResponse`: the error at the top level and on every
/// named partition.
fn error_response(request: &ElectLeadersRequest, error: ApiError) -> ElectLeadersResponse {
    let results = request
        .topic_partitions
        .iter()
        .flatten()
        .map(|t| {
            ReplicaElectionResult::default()
                .with_topic(t.topic.clone())
                .with_partition_result(
                    t.partitions
                        .iter()
                        .map(|&p| {
                            PartitionResult::default()
                                .with_partition_id(p)
                                .with_error_code(error.code)
                                .with_error_message(error.message_str())
                        })
                        .collect(),
                )
        })
        .collect();
    ElectLeadersResponse::default()
        .with_error_code(error.code)
        .with_replica_election_results(results)
}
