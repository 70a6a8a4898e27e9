//! ConsumerGroupHeartbeat (key 68): joins, heartbeats in and leaves a consumer group of the
//! next-generation rebalance protocol (KIP-848); the broker computes the assignment and
//! hands it out a step at a time (see `group::consumer`).

use kafka_protocol::messages::consumer_group_heartbeat_response::{Assignment, TopicPartitions};
use kafka_protocol::messages::{ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse};

use super::{str_bytes, Ctx};
use crate::group::consumer::{self, Heartbeat};

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: ConsumerGroupHeartbeatRequest,
) -> ConsumerGroupHeartbeatResponse {
    let group_id = request.group_id.0.as_str().to_string();
    let hb = Heartbeat {
        member_id: request.member_id.as_str().to_string(),
        member_epoch: request.member_epoch,
        instance_id: request.instance_id.map(|s| s.as_str().to_string()),
        rack_id: request.rack_id.map(|s| s.as_str().to_string()),
        rebalance_timeout_ms: request.rebalance_timeout_ms,
        subscribed_topic_names: request
            .subscribed_topic_names
            .map(|names| names.iter().map(|n| n.0.as_str().to_string()).collect()),
        // librdkafka sends an empty regex with a list of topic names: that is no regex (and
        // clears one the member had), as in Kafka.
        subscribed_topic_regex: request
            .subscribed_topic_regex
            .map(|s| s.as_str().to_string()),
        server_assignor: request.server_assignor.map(|s| s.as_str().to_string()),
        owned: request.topic_partitions.map(|tps| {
            tps.into_iter()
                .map(|tp| (tp.topic_id, tp.partitions.into_iter().collect()))
                .collect()
        }),
        client_id: ctx
            .header
            .client_id
            .as_ref()
            .map(|s| s.as_str().to_string())
            .unwrap_or_default(),
        client_host: format!("/{}", ctx.peer.ip()),
    };
    let refused = |r: consumer::Refusal| {
        tracing::debug!(group = %group_id, error = ?r.error, message = %r.message, "ConsumerGroupHeartbeat refused");
        ConsumerGroupHeartbeatResponse::default()
            .with_error_code(r.error.code())
            .with_error_message((!r.message.is_empty()).then(|| str_bytes(r.message)))
    };
    if let Err(r) = consumer::validate_heartbeat(&group_id, &hb, ctx.version) {
        return refused(r);
    }
    let config = {
        let c = ctx.broker.config();
        consumer::ConsumerGroupConfig {
            session_timeout_ms: c.group_consumer_session_timeout_ms,
            heartbeat_interval_ms: c.group_consumer_heartbeat_interval_ms,
            max_size: usize::try_from(c.group_consumer_max_size).unwrap_or(usize::MAX),
        }
    };
    match ctx
        .broker
        .groups()
        .consumer_heartbeat(ctx.broker, &group_id, hb, &config)
        .await
    {
        Err(r) => refused(r),
        Ok(reply) => ConsumerGroupHeartbeatResponse::default()
            .with_member_id(Some(str_bytes(reply.member_id)))
            .with_member_epoch(reply.member_epoch)
            .with_heartbeat_interval_ms(reply.heartbeat_interval_ms)
            .with_assignment(reply.assignment.map(|a| {
                Assignment::default().with_topic_partitions(
                    a.into_iter()
                        .map(|(topic_id, ps)| {
                            TopicPartitions::default()
                                .with_topic_id(topic_id)
                                .with_partitions(ps.into_iter().collect())
                        })
                        .collect(),
                )
            })),
    }
}
