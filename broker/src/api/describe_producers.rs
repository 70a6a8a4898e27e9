//! DescribeProducers (key 61): per partition, the producers its log's producer state holds
//! (producer id, epoch, last sequence and timestamp, coordinator epoch of the last marker,
//! first offset of the open transaction), as Kafka's `handleDescribeProducersRequest`.
//! Any replica answers from its own log, as in Kafka (`kafka-transactions.sh
//! describe-producers --broker-id` asks a follower); a topic that does not exist gets
//! UNKNOWN_TOPIC_OR_PARTITION, an invalid name INVALID_TOPIC_EXCEPTION, a partition this
//! broker holds no replica of NOT_LEADER_OR_FOLLOWER.

use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::{ApiError, Ctx};
use crate::log::{ActiveProducer, TopicPartition};
use crate::metadata::topic_name;

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let image = ctx.broker.image();
    let topics = request
        .topics
        .into_iter()
        .map(|t| {
            let name = t.name.0.to_string();
            let topic_error = match topic_name::validate(&name) {
                Err(e) => Some(ApiError::new(
                    ResponseError::InvalidTopicException,
                    e.to_string(),
                )),
                Ok(()) if image.topic(&name).is_none() => {
                    Some(ApiError::code(ResponseError::UnknownTopicOrPartition))
                }
                Ok(()) => None,
            };
            let partitions = t
                .partition_indexes
                .iter()
                .map(|&p| {
                    let response = PartitionResponse::default().with_partition_index(p);
                    let described = match &topic_error {
                        Some(e) => Err(e.clone()),
                        None => producers_of(ctx, &name, p),
                    };
                    match described {
                        Ok(producers) => response
                            .with_active_producers(producers.iter().map(producer_state).collect()),
                        Err(e) => response
                            .with_error_code(e.code)
                            .with_error_message(e.message_str()),
                    }
                })
                .collect();
            TopicResponse::default()
                .with_name(t.name)
                .with_partitions(partitions)
        })
        .collect();
    DescribeProducersResponse::default().with_topics(topics)
}

/// The producers of this broker's replica of `topic`/`partition` (Kafka's
/// `ReplicaManager.activeProducerState`).
fn producers_of(
    ctx: &Ctx<'_>,
    topic: &str,
    partition: i32,
) -> Result<Vec<ActiveProducer>, ApiError> {
    let tp = TopicPartition {
        topic: topic.to_string(),
        partition,
    };
    if let Some(log) = ctx.broker.logs().get(&tp) {
        return Ok(log
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .active_producers());
    }
    let exists = ctx
        .broker
        .image()
        .topic(topic)
        .is_some_and(|t| usize::try_from(partition).is_ok_and(|p| p < t.partitions.len()));
    Err(ApiError::code(if exists {
        ResponseError::NotLeaderOrFollower
    } else {
        ResponseError::UnknownTopicOrPartition
    }))
}

fn producer_state(p: &ActiveProducer) -> ProducerState {
    ProducerState::default()
        .with_producer_id(ProducerId(p.producer_id))
        .with_producer_epoch(i32::from(p.producer_epoch))
        .with_last_sequence(p.last_sequence)
        .with_last_timestamp(p.last_timestamp)
        .with_coordinator_epoch(p.coordinator_epoch)
        .with_current_txn_start_offset(p.current_txn_start_offset)
}
