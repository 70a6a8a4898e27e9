//! ListOffsets (key 2): earliest (-2), latest (-1), max timestamp (-3), earliest local (-4)
//! and offset by timestamp, answered from the log's indexes. As in Kafka, a consumer's
//! isolation level bounds what it is told: latest is the high watermark, or the last stable
//! offset for READ_COMMITTED (1), and a timestamp lookup whose record lies at or beyond that
//! bound finds nothing (offset and timestamp -1).

use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use kafka_protocol::ResponseError;

use super::{ApiError, Ctx};

const LATEST: i64 = -1;
const EARLIEST: i64 = -2;
const MAX_TIMESTAMP: i64 = -3;
const EARLIEST_LOCAL: i64 = -4;

/// Kafka's isolation level READ_COMMITTED.
const READ_COMMITTED: i8 = 1;

pub(crate) async fn handle(ctx: &Ctx<'_>, request: ListOffsetsRequest) -> ListOffsetsResponse {
    let read_committed = request.isolation_level == READ_COMMITTED;
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.name.0.as_str().to_string();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let response = ListOffsetsPartitionResponse::default()
                        .with_partition_index(p.partition_index)
                        .with_timestamp(-1)
                        .with_offset(-1)
                        .with_leader_epoch(-1);
                    match lookup(
                        ctx,
                        &name,
                        p.partition_index,
                        p.current_leader_epoch,
                        p.timestamp,
                        read_committed,
                    ) {
                        Ok(Some((timestamp, offset, epoch))) => response
                            .with_timestamp(timestamp)
                            .with_offset(offset)
                            .with_leader_epoch(if ctx.version >= 4 { epoch } else { -1 }),
                        Ok(None) => response,
                        Err(e) => response.with_error_code(e.code),
                    }
                })
                .collect();
            ListOffsetsTopicResponse::default()
                .with_name(topic.name)
                .with_partitions(partitions)
        })
        .collect();
    ListOffsetsResponse::default().with_topics(topics)
}

/// (timestamp, offset, leader epoch) or None when no record matches the timestamp.
fn lookup(
    ctx: &Ctx<'_>,
    topic: &str,
    partition: i32,
    current_leader_epoch: i32,
    timestamp: i64,
    read_committed: bool,
) -> Result<Option<(i64, i64, i32)>, ApiError> {
    let (log, state) = ctx.broker.leader_log(topic, partition)?;
    if current_leader_epoch >= 0 && current_leader_epoch != state.leader_epoch {
        return Err(ApiError::code(
            if current_leader_epoch > state.leader_epoch {
                ResponseError::UnknownLeaderEpoch
            } else {
                ResponseError::FencedLeaderEpoch
            },
        ));
    }
    let log = log.lock().unwrap_or_else(|p| p.into_inner());
    let epoch = log.latest_epoch().unwrap_or(-1);
    let last_fetchable = if read_committed {
        log.last_stable_offset()
    } else {
        log.high_watermark()
    };
    let fetchable = |found: Option<(i64, i64)>| {
        found
            .filter(|&(_, offset)| offset < last_fetchable)
            .map(|(ts, offset)| (ts, offset, epoch))
    };
    Ok(match timestamp {
        LATEST => Some((-1, last_fetchable, epoch)),
        EARLIEST | EARLIEST_LOCAL => Some((-1, log.log_start_offset(), epoch)),
        MAX_TIMESTAMP => fetchable(log.max_timestamp()?),
        ts if ts < 0 => {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("unsupported special timestamp {ts}"),
            ))
        }
        ts => fetchable(log.offset_for_timestamp(ts)?),
    })
}
