//! TxnOffsetCommit (key 28): a transactional producer commits a group's offsets in its
//! transaction (`sendOffsetsToTransaction`). The group coordinator writes them as a
//! transactional batch of the producer to the group's `__consumer_offsets` partition; they
//! become the group's committed offsets only when the transaction commits (see
//! [`crate::group::GroupCoordinator::txn_commit`]). Served v0–v3 (v3 carries the member id,
//! generation and group instance id, checked as for OffsetCommit); v4+ belong to KIP-890.

use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::Ctx;
use crate::group::OffsetCommit;

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: TxnOffsetCommitRequest,
) -> TxnOffsetCommitResponse {
    let image = ctx.broker.image();
    // As Kafka: partitions of unknown topics (or beyond a topic's partitions) are answered
    // UNKNOWN_TOPIC_OR_PARTITION and not committed; the others go to the coordinator.
    let mut known = Vec::new();
    let mut codes: Vec<Option<i16>> = Vec::new();
    for topic in &request.topics {
        let count = image
            .topic(topic.name.as_str())
            .map(|t| t.partitions.len() as i32);
        for p in &topic.partitions {
            if count.is_some_and(|c| (0..c).contains(&p.partition_index)) {
                codes.push(None);
                known.push(OffsetCommit {
                    topic: topic.name.to_string(),
                    partition: p.partition_index,
                    offset: p.committed_offset,
                    leader_epoch: p.committed_leader_epoch,
                    metadata: p.committed_metadata.as_ref().map(|m| m.to_string()),
                });
            } else {
                codes.push(Some(ResponseError::UnknownTopicOrPartition.code()));
            }
        }
    }
    let group_id = request.group_id.0.as_str();
    let committed = if known.is_empty() {
        Vec::new()
    } else if group_id.is_empty() {
        vec![ResponseError::InvalidGroupId.code(); known.len()]
    } else {
        let broker = ctx.broker;
        broker
            .groups()
            .txn_commit(
                broker,
                group_id,
                request.producer_id.0,
                request.producer_epoch,
                request.member_id.as_str(),
                request.group_instance_id.as_ref().map(|s| s.as_str()),
                request.generation_id,
                known,
            )
            .await
    };
    let mut committed = committed.into_iter();
    let mut codes = codes.into_iter();
    let mut next_code = || {
        let code = match codes.next().flatten() {
            Some(code) => code,
            None => committed.next().unwrap_or(0),
        };
        // Clients before v2 (0.11 to 2.0) could crash on COORDINATOR_LOAD_IN_PROGRESS;
        // Kafka answers them COORDINATOR_NOT_AVAILABLE instead.
        if ctx.version < 2 && code == ResponseError::CoordinatorLoadInProgress.code() {
            ResponseError::CoordinatorNotAvailable.code()
        } else {
            code
        }
    };
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    TxnOffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(next_code())
                })
                .collect();
            TxnOffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    TxnOffsetCommitResponse::default().with_topics(topics)
}
