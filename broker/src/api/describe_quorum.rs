//! DescribeQuorum (key 55): the metadata quorum's leader, epoch, high watermark, voters and
//! observers (`kafka-metadata-quorum.sh describe --status` and `--replication`).
//!
//! Kafka's brokers forward this request to the active controller, the quorum's leader: only
//! it knows every voter's and observer's log end offset and last fetch (a follower knows its
//! own log end and nobody else's, which made `--replication` print -1 for the leader's log
//! end and a negative lag for the follower). Oxbow's nodes do the same through the controller
//! channel ([`ControllerRequest::DescribeQuorum`]), which retries while there is no leader;
//! a request that still finds none is answered with the channel's error at the top level.
//!
//! Fields newer than the request's version stay unset (the codec refuses to encode them, which
//! closed the connection of every v0 and v1 client): v1 added the replicas' fetch timestamps,
//! v2 the top-level error message and the voters' endpoints.

use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{
    BrokerId, DescribeQuorumRequest, DescribeQuorumResponse, TopicName,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, ApiError, Ctx};
use crate::controller::{ControllerReply, ControllerRequest};
use crate::metadata::QuorumReplica;

/// Kafka's name of the metadata log, the one topic DescribeQuorum describes.
const CLUSTER_METADATA_TOPIC: &str = "__cluster_metadata";

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: DescribeQuorumRequest,
) -> DescribeQuorumResponse {
    let quorum = match ctx.broker.submit(ControllerRequest::DescribeQuorum).await {
        Ok(ControllerReply::Quorum(quorum)) => quorum,
        Ok(other) => {
            return error_response(
                ApiError::new(
                    ResponseError::UnknownServerError,
                    format!("unexpected controller reply {other:?}"),
                ),
                ctx.version,
            )
        }
        Err(e) => return error_response(e, ctx.version),
    };
    let version = ctx.version;
    let replica = |r: &QuorumReplica| {
        let state = ReplicaState::default()
            .with_replica_id(BrokerId(r.id))
            .with_log_end_offset(r.log_end_offset);
        if version >= 1 {
            state
                .with_last_fetch_timestamp(r.last_fetch_ms)
                .with_last_caught_up_timestamp(r.last_caught_up_ms)
        } else {
            state
        }
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
    let response = DescribeQuorumResponse::default().with_topics(topics);
    if version >= 2 {
        response.with_nodes(nodes)
    } else {
        response
    }
}

/// Kafka's `DescribeQuorumRequest.getErrorResponse`: the error at the top level (its
/// message from v2).
fn error_response(error: ApiError, version: i16) -> DescribeQuorumResponse {
    let response = DescribeQuorumResponse::default().with_error_code(error.code);
    if version >= 2 {
        response.with_error_message(error.message_str())
    } else {
        response
    }
}
