//! OffsetCommit (key 8): store committed offsets in `__consumer_offsets`, checking the
//! member and generation as Kafka's classic coordinator does.

use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use kafka_protocol::ResponseError;

use super::Ctx;
use crate::group::OffsetCommit;

pub(crate) async fn handle(ctx: &Ctx<'_>, request: OffsetCommitRequest) -> OffsetCommitResponse {
    let group_id = request.group_id.0.as_str().to_string();
    let commits: Vec<OffsetCommit> = request
        .topics
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(move |p| OffsetCommit {
                topic: t.name.0.as_str().to_string(),
                partition: p.partition_index,
                offset: p.committed_offset,
                leader_epoch: p.committed_leader_epoch,
                metadata: p
                    .committed_metadata
                    .as_ref()
                    .map(|m| m.as_str().to_string()),
            })
        })
        .collect();
    let codes = if group_id.is_empty() {
        vec![ResponseError::InvalidGroupId.code(); commits.len()]
    } else {
        let broker = ctx.broker;
        broker
            .groups()
            .commit(
                broker,
                &group_id,
                request.member_id.as_str(),
                request.group_instance_id.as_ref().map(|s| s.as_str()),
                request.generation_id_or_member_epoch,
                commits,
            )
            .await
    };
    let mut codes = codes.into_iter();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let partitions = t
                .partitions
                .iter()
                .map(|p| {
                    OffsetCommitResponsePartition::default()
                        .with_partition_index(p.partition_index)
                        .with_error_code(codes.next().unwrap_or(0))
                })
                .collect();
            OffsetCommitResponseTopic::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    OffsetCommitResponse::default().with_topics(topics)
}
