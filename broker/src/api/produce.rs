//! Produce (key 0): append record batches as sent, assign offsets, answer per partition.
//!
//! Batches are handed to the partition leader as bytes; the log validates headers and CRCs
//! and patches offsets without decoding records. acks=0 gets no response (and a closed
//! connection if anything failed, as Kafka does); acks=1 is answered once appended. acks=all
//! is refused with NOT_ENOUGH_REPLICAS before appending when the ISR is smaller than
//! `min.insync.replicas`, else waits (Kafka's delayed produce, per partition, up to the
//! request's `timeout_ms`) until the high watermark covers the appended records: with a
//! single replica at once, with followers once the whole ISR has fetched them.
//!
//! Internal topics (`__consumer_offsets`, `__transaction_state`, `__share_group_state`) are
//! written only by the broker's coordinators: a client's batch for one of them gets
//! INVALID_TOPIC_EXCEPTION for that partition (Kafka's `ReplicaManager.appendToLocalLog`,
//! without a message, as Kafka sends none). Otherwise any client could forge committed
//! offsets or group metadata, which the coordinator replays on restart. Kafka lets a client
//! whose `client.id` is `__admin_client` through; oxbow does not, because that is the same
//! forgery with one more setting.

use kafka_protocol::messages::produce_response::{
    LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse, TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use kafka_protocol::ResponseError;

use std::sync::{Arc, Mutex};
use std::time::Duration;

use super::current_leader::NodeEndpoints;
use super::{str_bytes, ApiError, Ctx};
use crate::config;
use crate::log::PartitionLog;
use crate::metadata::topic_name;
use crate::replica::{Partition, ReplicaError};
use crate::time::now_ms;

/// A partition log as the log manager shares it.
type SharedLog = Arc<Mutex<PartitionLog>>;

/// An acks=all append waiting for the ISR: where its response is, and what to wait for.
struct DelayedProduce {
    topic: usize,
    partition: usize,
    handle: Arc<Partition>,
    leader_epoch: i32,
    required_offset: i64,
    min_insync_replicas: i32,
}

/// What [`append`] did: the append, the log if it reached `flush.messages`, and the
/// acks=all wait it leaves.
struct Appended {
    info: crate::log::AppendInfo,
    flush: Option<SharedLog>,
    handle: Arc<Partition>,
    leader_epoch: i32,
    min_insync_replicas: i32,
}

pub(crate) async fn handle(ctx: &Ctx<'_>, request: ProduceRequest) -> ProduceResponse {
    let acks = request.acks;
    let deadline =
        tokio::time::Instant::now() + Duration::from_millis(request.timeout_ms.max(0) as u64);
    let mut delayed = Vec::new();
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
                Ok(Appended {
                    info,
                    flush,
                    handle,
                    leader_epoch,
                    min_insync_replicas,
                }) => {
                    if let Some(log) = flush {
                        to_flush.push((responses.len(), partitions.len(), log));
                    }
                    if acks == -1 {
                        delayed.push(DelayedProduce {
                            topic: responses.len(),
                            partition: partitions.len(),
                            handle,
                            leader_epoch,
                            required_offset: info.last_offset + 1,
                            min_insync_replicas,
                        });
                    }
                    response.base_offset = info.base_offset;
                    response.log_append_time_ms = info.log_append_time;
                    if ctx.version >= 5 {
                        response.log_start_offset = info.log_start_offset;
                    }
                }
                Err(e) => {
                    any_error = true;
                    fail(ctx.version, &mut response, e);
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
    for d in delayed {
        let response = &mut responses[d.topic].partition_responses[d.partition];
        if response.error_code != 0 {
            continue;
        }
        let outcome = d
            .handle
            .wait_for_acks_all(
                d.leader_epoch,
                d.required_offset,
                d.min_insync_replicas,
                deadline,
            )
            .await;
        if let Err(e) = outcome {
            fail(ctx.version, response, ApiError::from(e));
        }
    }
    let mut node_endpoints = NodeEndpoints::default();
    if ctx.version >= 10 {
        // KIP-951: name the current leader of every partition refused as not led here.
        let image = ctx.broker.image();
        for topic in &mut responses {
            for response in &mut topic.partition_responses {
                if response.error_code == ResponseError::NotLeaderOrFollower.code() {
                    let leader = node_endpoints.leader_of(
                        ctx,
                        &image,
                        topic.name.0.as_str(),
                        response.index,
                    );
                    response.current_leader = LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(leader.leader_id))
                        .with_leader_epoch(leader.leader_epoch);
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
    ProduceResponse::default()
        .with_responses(responses)
        .with_node_endpoints(
            node_endpoints
                .into_entries()
                .map(|(id, e)| {
                    NodeEndpoint::default()
                        .with_node_id(BrokerId(id))
                        .with_host(str_bytes(e.host))
                        .with_port(e.port)
                        .with_rack(e.rack.map(str_bytes))
                })
                .collect(),
        )
}

/// Puts `e` into a partition's response (Kafka answers no offsets with an error).
fn fail(version: i16, response: &mut PartitionProduceResponse, e: ApiError) {
    response.error_code = e.code;
    response.base_offset = -1;
    response.log_append_time_ms = -1;
    if version >= 5 {
        response.log_start_offset = -1;
    }
    if version >= 8 {
        response.error_message = e.message_str();
    }
}

/// Appends what the client sent as the partition's leader; also returns the log if it
/// reached `flush.messages` and must be flushed before the append is acknowledged.
fn append(
    ctx: &Ctx<'_>,
    topic: &str,
    partition: i32,
    records: Option<&[u8]>,
    acks: i16,
) -> Result<Appended, ApiError> {
    let broker = ctx.broker;
    let (partition_handle, _) = broker.leader_partition(topic, partition)?;
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
    let min_insync_replicas = if acks == -1 {
        let image = broker.image();
        let overrides = image
            .topic(topic)
            .map(|t| t.configs.clone())
            .unwrap_or_default();
        config::effective_min_insync_replicas(&broker.effective_config(), &overrides)
    } else {
        1
    };
    let (info, leader_epoch) = partition_handle
        .append_records_to_leader(records, acks, min_insync_replicas, now_ms())
        .map_err(|e| match e {
            ReplicaError::NotEnoughReplicas { .. } => ApiError::new(
                ResponseError::NotEnoughReplicas,
                format!("{e} for partition {topic}-{partition}"),
            ),
            e => ApiError::from(e),
        })?;
    if !info.duplicate && info.base_offset >= 0 {
        let count = (info.last_offset - info.base_offset + 1).max(0) as u64;
        crate::metrics::metrics().produced(count, records.len() as u64);
    }
    let flush = partition_handle
        .log()
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .flush_due_by_messages();
    Ok(Appended {
        info,
        flush: flush.then(|| partition_handle.log().clone()),
        handle: partition_handle,
        leader_epoch,
        min_insync_replicas,
    })
}
