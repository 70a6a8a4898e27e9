//! OffsetForLeaderEpoch (key 23): the end offset of a leader epoch, used by consumers to
//! detect log truncation and by followers to truncate before fetching.

use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use kafka_protocol::ResponseError;

use super::Ctx;

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let topics = request
        .topics
        .into_iter()
        .map(|topic| {
            let name = topic.topic.0.as_str().to_string();
            let partitions = topic
                .partitions
                .iter()
                .map(|p| {
                    let response = EpochEndOffset::default()
                        .with_partition(p.partition)
                        .with_leader_epoch(-1)
                        .with_end_offset(-1);
                    match ctx.broker.leader_log(&name, p.partition) {
                        Err(e) => response.with_error_code(e.code),
                        Ok((_, state))
                            if p.current_leader_epoch >= 0
                                && p.current_leader_epoch > state.leader_epoch =>
                        {
                            response.with_error_code(ResponseError::UnknownLeaderEpoch.code())
                        }
                        Ok((_, state))
                            if p.current_leader_epoch >= 0
                                && p.current_leader_epoch < state.leader_epoch =>
                        {
                            response.with_error_code(ResponseError::FencedLeaderEpoch.code())
                        }
                        Ok((log, _)) => {
                            let log = log.lock().unwrap_or_else(|p| p.into_inner());
                            let (epoch, end_offset) = log.end_offset_for_epoch(p.leader_epoch);
                            response
                                .with_leader_epoch(epoch)
                                .with_end_offset(end_offset)
                        }
                    }
                })
                .collect();
            OffsetForLeaderTopicResult::default()
                .with_topic(topic.topic)
                .with_partitions(partitions)
        })
        .collect();
    OffsetForLeaderEpochResponse::default().with_topics(topics)
}
