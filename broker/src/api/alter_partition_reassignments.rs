//! AlterPartitionReassignments (key 45): start, change or cancel (null replicas) partition
//! reassignments (`kafka-reassign-partitions.sh --execute / --cancel`), decided by the
//! active controller as Kafka's `ReplicationControlManager.alterPartitionReassignments`:
//! per-partition results, in the order asked.
//!
//! The reassignment then proceeds without further requests: the new replicas are created
//! and fetch from the leader, the leader's AlterPartition adds them to the ISR, and that ISR
//! change completes the reassignment (removed replicas leave, leadership moves off them).

use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, ApiError, Ctx};
use crate::controller::{ControllerReply, ControllerRequest, ReassignmentTarget};

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: AlterPartitionReassignmentsRequest,
) -> AlterPartitionReassignmentsResponse {
    let targets: Vec<ReassignmentTarget> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| ReassignmentTarget {
                topic: t.name.0.as_str().to_string(),
                partition: p.partition_index,
                replicas: p.replicas.as_ref().map(|r| r.iter().map(|b| b.0).collect()),
            })
        })
        .collect();
    let results = match ctx
        .broker
        .submit(ControllerRequest::AlterPartitionReassignments { targets })
        .await
    {
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
    // The controller answers one result per target, in the order asked.
    let mut results = results.into_iter();
    let responses = request
        .topics
        .iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    // Success carries a null message, as Kafka's `ApiError.NONE`.
                    let mut response = ReassignablePartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_error_message(None);
                    match results.next() {
                        Some(r) => {
                            if let Some(e) = r.error {
                                response.error_code = e.code;
                                response.error_message = e.message.map(str_bytes);
                            }
                        }
                        None => response.error_code = ResponseError::UnknownServerError.code(),
                    }
                    response
                })
                .collect();
            ReassignableTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(partitions)
        })
        .collect();
    AlterPartitionReassignmentsResponse::default()
        .with_error_message(None)
        .with_responses(responses)
}

/// Kafka's `AlterPartitionReassignmentsRequest.getErrorResponse`: the error at the top level
/// and on every partition.
fn error_response(
    request: &AlterPartitionReassignmentsRequest,
    error: ApiError,
) -> AlterPartitionReassignmentsResponse {
    let responses = request
        .topics
        .iter()
        .map(|t| {
            ReassignableTopicResponse::default()
                .with_name(t.name.clone())
                .with_partitions(
                    t.partitions
                        .iter()
                        .map(|p| {
                            ReassignablePartitionResponse::default()
                                .with_partition_index(p.partition_index)
                                .with_error_code(error.code)
                                .with_error_message(error.message_str())
                        })
                        .collect(),
                )
        })
        .collect();
    AlterPartitionReassignmentsResponse::default()
        .with_error_code(error.code)
        .with_error_message(error.message_str())
        .with_responses(responses)
}
