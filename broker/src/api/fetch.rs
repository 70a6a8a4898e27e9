//! Fetch (key 1): return stored batches byte-for-byte, from the batch holding the requested
//! offset, within `partition_max_bytes` and `max_bytes`, waiting up to `max_wait_ms` for
//! `min_bytes` to accumulate.
//!
//! Fetch sessions (KIP-227) are not created: the response's session id is 0, which tells
//! clients to keep sending full fetch requests — correct, just without the bandwidth saving.

use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::fetch_response::{
    FetchableTopicResponse, LeaderIdAndEpoch, PartitionData,
};
use kafka_protocol::messages::{BrokerId, FetchRequest, FetchResponse, TopicName};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{str_bytes, ApiError, Ctx};

/// Kafka's isolation level READ_COMMITTED.
const READ_COMMITTED: i8 = 1;

struct Wanted {
    topic: String,
    topic_id: Uuid,
    partition: i32,
    fetch_offset: i64,
    max_bytes: usize,
    current_leader_epoch: i32,
}

pub(crate) async fn handle(ctx: &Ctx<'_>, request: FetchRequest) -> FetchResponse {
    let broker = ctx.broker;
    let image = broker.image();
    let mut wanted = Vec::new();
    for topic in &request.topics {
        // v13+ names topics by id only.
        let name = if ctx.version >= 13 {
            image
                .topic_by_id(&topic.topic_id)
                .map(|t| t.name.clone())
                .unwrap_or_default()
        } else {
            topic.topic.0.as_str().to_string()
        };
        for p in &topic.partitions {
            wanted.push(Wanted {
                topic: name.clone(),
                topic_id: topic.topic_id,
                partition: p.partition,
                fetch_offset: p.fetch_offset,
                max_bytes: p.partition_max_bytes.max(0) as usize,
                current_leader_epoch: p.current_leader_epoch,
            });
        }
    }
    drop(image);

    let max_wait = Duration::from_millis(request.max_wait_ms.max(0) as u64);
    let deadline = tokio::time::Instant::now() + max_wait;
    let min_bytes = request.min_bytes.max(0) as usize;
    let max_bytes = if request.max_bytes <= 0 {
        i32::MAX as usize
    } else {
        request.max_bytes as usize
    };
    let read_committed = request.isolation_level == READ_COMMITTED;
    let mut appends = broker.subscribe_appends();
    loop {
        appends.borrow_and_update();
        let (results, total, any_error) = read_all(ctx, &wanted, max_bytes);
        let timed_out = tokio::time::Instant::now() >= deadline;
        if total >= min_bytes || any_error || timed_out || wanted.is_empty() {
            return build_response(ctx, &wanted, results, read_committed);
        }
        // Wait for an append anywhere (or the deadline), then read again.
        let _ = tokio::time::timeout_at(deadline, appends.changed()).await;
    }
}

type PartitionResult = Result<crate::log::FetchData, ApiError>;

fn read_all(
    ctx: &Ctx<'_>,
    wanted: &[Wanted],
    max_bytes: usize,
) -> (Vec<PartitionResult>, usize, bool) {
    let mut total = 0usize;
    let mut any_error = false;
    let mut results = Vec::with_capacity(wanted.len());
    for w in wanted {
        let result = read_one(ctx, w, max_bytes.saturating_sub(total), total == 0);
        match &result {
            Ok(data) => total += data.records.len(),
            Err(_) => any_error = true,
        }
        results.push(result);
    }
    (results, total, any_error)
}

fn read_one(ctx: &Ctx<'_>, w: &Wanted, remaining: usize, first: bool) -> PartitionResult {
    if w.topic.is_empty() {
        return Err(ApiError::code(ResponseError::UnknownTopicId));
    }
    let (log, state) = ctx.broker.leader_log(&w.topic, w.partition)?;
    if w.current_leader_epoch >= 0 {
        if w.current_leader_epoch > state.leader_epoch {
            return Err(ApiError::code(ResponseError::UnknownLeaderEpoch));
        }
        if w.current_leader_epoch < state.leader_epoch {
            return Err(ApiError::code(ResponseError::FencedLeaderEpoch));
        }
    }
    let log = log.lock().unwrap_or_else(|p| p.into_inner());
    let limit = w.max_bytes.min(remaining);
    // KIP-74: the first partition with data returns at least one whole batch so a batch
    // larger than the limits never blocks a consumer.
    Ok(log.read(w.fetch_offset, limit, log.high_watermark(), first)?)
}

fn build_response(
    ctx: &Ctx<'_>,
    wanted: &[Wanted],
    results: Vec<PartitionResult>,
    read_committed: bool,
) -> FetchResponse {
    let mut topics: Vec<FetchableTopicResponse> = Vec::new();
    for (w, result) in wanted.iter().zip(results) {
        let mut p = PartitionData::default()
            .with_partition_index(w.partition)
            .with_high_watermark(-1)
            .with_last_stable_offset(-1)
            .with_log_start_offset(-1)
            .with_preferred_read_replica(BrokerId(-1))
            .with_aborted_transactions(if read_committed { Some(vec![]) } else { None });
        match result {
            Ok(data) => {
                p.high_watermark = data.high_watermark;
                p.last_stable_offset = data.last_stable_offset;
                if ctx.version >= 5 {
                    p.log_start_offset = data.log_start_offset;
                }
                p.records = Some(data.records);
            }
            Err(e) => {
                p.error_code = e.code;
                p.records = Some(Bytes::new());
                if e.code == ResponseError::OffsetOutOfRange.code() {
                    if let Ok((log, _)) = ctx.broker.leader_log(&w.topic, w.partition) {
                        let log = log.lock().unwrap_or_else(|p| p.into_inner());
                        p.high_watermark = log.high_watermark();
                        p.last_stable_offset = log.high_watermark();
                        if ctx.version >= 5 {
                            p.log_start_offset = log.log_start_offset();
                        }
                    }
                }
                if ctx.version >= 12 && e.code == ResponseError::NotLeaderOrFollower.code() {
                    p.current_leader = LeaderIdAndEpoch::default()
                        .with_leader_id(BrokerId(-1))
                        .with_leader_epoch(-1);
                }
            }
        }
        match topics.last_mut() {
            Some(t) if t.topic.0.as_str() == w.topic && t.topic_id == w.topic_id => {
                t.partitions.push(p)
            }
            _ => topics.push(
                FetchableTopicResponse::default()
                    .with_topic(TopicName(str_bytes(w.topic.clone())))
                    .with_topic_id(w.topic_id)
                    .with_partitions(vec![p]),
            ),
        }
    }
    FetchResponse::default()
        .with_session_id(0)
        .with_responses(topics)
}
