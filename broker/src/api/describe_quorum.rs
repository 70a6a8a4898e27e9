//! DescribeQuorum (key 55): the metadata quorum's leader, epoch, high watermark, voters and
//! observers (`kafka-metadata-quorum.sh describe --status` and `--replication`).
//!
//! Kafka's brokers forward this request to the active controller. Every oxbow node answers
//! it from its own view of the quorum ([`crate::metadata::MetadataStore::quorum_info`]): a
//! voter knows the leader's view of every replica when it is the leader, and the leader,
//! epoch and high watermark otherwise, which is what the tool prints for `--status`.

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, Ctx};
use crate::metadata::QuorumReplica;

/// Kafka's name of the metadata log, the one topic DescribeQuorum describes.
const CLUSTER_METADATA_TOPIC: &str = "__cluster_metadata";

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let quorum = ctx.broker.quorum_info();
    let replica = |r: &QuorumReplica| {
        ReplicaState::default()
            .with_replica_id(BrokerId(r.id))
            .with_log_end_offset(r.log_end_offset)
            .with_last_fetch_timestamp(r.last_fetch_ms)
            .with_last_caught_up_timestamp(r.last_caught_up_ms)
    };
    let topics = request
        .topics
        .iter()
        .map(|topic| {
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    if topic.topic_name.as_str() != CLUSTER_METADATA_TOPIC || p.partition_index != 0
                    {
                        return PartitionData::default()
                            .with_partition_index(p.partition_index)
                            .with_error_code(ResponseError::UnknownTopicOrPartition.code());
                    }
                    PartitionData::default()
                        .with_partition_index(0)
                        .with_leader_id(BrokerId(quorum.leader_id))
                        .with_leader_epoch(quorum.leader_epoch)
                        .with_high_watermark(quorum.high_watermark)
                        .with_current_voters(quorum.voters.iter().map(replica).collect())
                        .with_observers(quorum.observers.iter().map(replica).collect())
                })
                .collect();
            TopicData::default()
                .with_topic_name(TopicName(topic.topic_name.0.clone()))
                .with_partitions(partitions)
        })
        .collect();
    let nodes = quorum
        .voters
        .iter()
        .map(|v| {
            Node::default().with_node_id(BrokerId(v.id)).with_listeners(
                v.listeners
                    .iter()
                    .map(|l| {
                        Listener::default()
                            .with_name(str_bytes(l.listener.clone()))
                            .with_host(str_bytes(l.host.clone()))
                            .with_port(l.port)
                    })
                    .collect(),
            )
        })
        .collect();
    DescribeQuorumResponse::default()
        .with_topics(topics)
        .with_nodes(nodes)
}
