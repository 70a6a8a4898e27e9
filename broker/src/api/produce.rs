//! Produce (key 0): append record batches as sent, assign offsets, answer per partition.
//!
//! Batches are handed to the log as bytes; the log validates headers and CRCs and patches
//! offsets without decoding records. acks=0 gets no response (and a closed connection if
//! anything failed, as Kafka does); acks=1 and acks=all are answered once appended — with a
//! single replica the ISR is this broker, so both are satisfied by the local append, but
//! acks=all still enforces `min.insync.replicas`.
//!
//! Internal topics (`__consumer_offsets`, `__transaction_state`, `__share_group_state`) are
//! written only by the broker's coordinators: a client's batch for one of them gets
//! INVALID_TOPIC_EXCEPTION for that partition (Kafka's `ReplicaManager.appendToLocalLog`,
//! without a message, as Kafka sends none). Otherwise any client could forge committed
//! offsets or group metadata, which the coordinator replays on restart. Kafka lets a client
//! whose `client.id` is `__admin_client` through; oxbow does not, because that is the same
//! forgery with one more setting.

use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;

use std::sync::{Arc, Mutex};

use super::{ApiError, Ctx};
use crate::config;
use crate::log::PartitionLog;
use crate::metadata::topic_name;
use crate::time::now_ms;

/// A partition log as the log manager shares it.
type SharedLog = Arc<Mutex<PartitionLog>>;

pub(crate) async fn handle(ctx: &Ctx<'_>, request: ProduceRequest) -> ProduceResponse {
    let acks = request.acks;
    let mut any_error = false;
    let mut responses = Vec::with_capacity(request.topic_data.len());
    // (topic index, partition index, log) of logs that reached `flush.messages`.
    let mut to_flush = Vec::new();
    for topic in request.topic_data {
        let name = topic.name.0.as_str().to_string();
        let mut partitions = Vec::with_capacity(topic.partition_data.len());
        for data in topic.partition_data {
            let mut response = PartitionProduceResponse::default()
                .with_index(data.index)
                .with_base_offset(-1)
                .with_log_append_time_ms(-1)
                .with_log_start_offset(-1);
            let result = if !(-1..=1).contains(&acks) {
                Err(ApiError::code(ResponseError::InvalidRequiredAcks))
            } else {
                append(ctx, &name, data.index, data.records.as_deref(), acks)
            };
            match result {
                Ok((info, log)) => {
                    if let Some(log) = log {
                        to_flush.push((responses.len(), partitions.len(), log));
                    }
                    response.base_offset = info.base_offset;
                    response.log_append_time_ms = info.log_append_time;
                    if ctx.version >= 5 {
                        response.log_start_offset = info.log_start_offset;
                    }
                }
                Err(e) => {
                    any_error = true;
                    response.error_code = e.code;
                    if ctx.version >= 8 {
                        response.error_message = e.message_str();
                    }
                    if ctx.version >= 10 && e.code == ResponseError::NotLeaderOrFollower.code() {
                        response.current_leader = LeaderIdAndEpoch::default()
                            .with_leader_id(BrokerId(-1))
                            .with_leader_epoch(-1);
                    }
                }
            }
            partitions.push(response);
        }
        responses.push(
            TopicProduceResponse::default()
                .with_name(topic.name)
                .with_partition_responses(partitions),
        );
    }
    if !to_flush.is_empty() {
        // Kafka flushes a log that reached flush.messages before acknowledging the append.
        // fsync can take long: it runs on the blocking pool, never on an async worker.
        let logs: Vec<_> = to_flush.iter().map(|(_, _, log)| log.clone()).collect();
        let results = tokio::task::spawn_blocking(move || {
            logs.iter()
                .map(|log| {
                    let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
                    log.flush().map_err(ApiError::from)
                })
                .collect::<Vec<_>>()
        })
        .await;
        for (i, (t, p, _)) in to_flush.iter().enumerate() {
            let failure = match &results {
                Ok(results) => match &results[i] {
                    Ok(()) => None,
                    Err(e) => Some(e.clone()),
                },
                Err(_) => Some(ApiError::new(
                    ResponseError::KafkaStorageError,
                    "flushing the log failed",
                )),
            };
            if let Some(e) = failure {
                any_error = true;
                let response = &mut responses[*t].partition_responses[*p];
                response.error_code = e.code;
                response.base_offset = -1;
                if ctx.version >= 8 {
                    response.error_message = e.message_str();
                }
            }
        }
    }
    if acks == 0 {
        if any_error {
            ctx.close_connection();
        } else {
            ctx.suppress_response();
        }
    }
    ProduceResponse::default().with_responses(responses)
}

/// Appends what the client sent; also returns the log if it reached `flush.messages` and
/// must be flushed before the append is acknowledged.
fn append(
    ctx: &Ctx<'_>,
    topic: &str,
    partition: i32,
    records: Option<&[u8]>,
    acks: i16,
) -> Result<(crate::log::AppendInfo, Option<SharedLog>), ApiError> {
    let broker = ctx.broker;
    let (partition_handle, state) = broker.leader_partition(topic, partition)?;
    let records = match records {
        Some(r) if !r.is_empty() => r,
        _ => {
            return Err(ApiError::new(
                ResponseError::CorruptMessage,
                "Produce request contains no record batch",
            ))
        }
    };
    if topic_name::is_internal(topic) {
        return Err(ApiError::code(ResponseError::InvalidTopicException));
    }
    if acks == -1 {
        let image = broker.image();
        let overrides = image
            .topic(topic)
            .map(|t| t.configs.clone())
            .unwrap_or_default();
        let min_isr = config::effective_min_insync_replicas(&broker.effective_config(), &overrides);
        if (state.isr.len() as i32) < min_isr {
            return Err(ApiError::new(
                ResponseError::NotEnoughReplicas,
                format!(
                    "The size of the current ISR {} is insufficient to satisfy the min.isr requirement of {min_isr} for partition {topic}-{partition}",
                    state.isr.len()
                ),
            ));
        }
    }
    let (info, flush) = {
        let mut log = partition_handle
            .log()
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        let info = log.append(records, state.leader_epoch, now_ms())?;
        (info, log.flush_due_by_messages())
    };
    if !info.duplicate {
        // With one replica the high watermark moved with the append: wake the fetches
        // waiting on this partition (and only those).
        partition_handle.wake_fetches();
    }
    Ok((info, flush.then(|| partition_handle.log().clone())))
}
