//! FindCoordinator (key 10): the broker that coordinates a group — the leader of the group's
//! `__consumer_offsets` partition (created on first use) — and the broker that coordinates a
//! transactional id, the leader of its `__transaction_state` partition (created on first
//! use too, with `transaction.state.log.replication.factor`), on a single node and on the
//! replicated cluster alike.

use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;

use super::{str_bytes, ApiError, Ctx};
use crate::group::OFFSETS_TOPIC;
use crate::txn::TRANSACTION_STATE_TOPIC;

const KEY_TYPE_GROUP: i8 = 0;
const KEY_TYPE_TRANSACTION: i8 = 1;

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: FindCoordinatorRequest,
) -> FindCoordinatorResponse {
    if ctx.version >= 4 {
        let mut coordinators = Vec::with_capacity(request.coordinator_keys.len());
        for key in request.coordinator_keys {
            let c = Coordinator::default().with_key(key.clone());
            coordinators.push(match find(ctx, request.key_type, key.as_str()).await {
                Ok((node, host, port)) => c
                    .with_node_id(BrokerId(node))
                    .with_host(str_bytes(host))
                    .with_port(port),
                Err(e) => c
                    .with_node_id(BrokerId(-1))
                    .with_port(-1)
                    .with_error_code(e.code)
                    .with_error_message(e.message_str()),
            });
        }
        return FindCoordinatorResponse::default().with_coordinators(coordinators);
    }
    let response = FindCoordinatorResponse::default();
    match find(ctx, request.key_type, request.key.as_str()).await {
        Ok((node, host, port)) => response
            .with_node_id(BrokerId(node))
            .with_host(str_bytes(host))
            .with_port(port),
        Err(e) => response
            .with_node_id(BrokerId(-1))
            .with_host(StrBytes::default())
            .with_port(-1)
            .with_error_code(e.code)
            .with_error_message(if ctx.version >= 1 {
                e.message_str()
            } else {
                None
            }),
    }
}

async fn find(ctx: &Ctx<'_>, key_type: i8, key: &str) -> Result<(i32, String, i32), ApiError> {
    let broker = ctx.broker;
    let (topic, partition) = match key_type {
        KEY_TYPE_GROUP => (
            OFFSETS_TOPIC,
            broker.groups().partition_for(broker, key).await?,
        ),
        KEY_TYPE_TRANSACTION => {
            let partition = broker.txns().partition_for(broker, key).await?;
            (TRANSACTION_STATE_TOPIC, partition)
        }
        // Share coordinators (type 2) are not served, and Kafka refuses unknown types too.
        _ => {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("Unknown coordinator type {key_type}"),
            ))
        }
    };
    let leader = broker
        .image()
        .topic(topic)
        .and_then(|t| t.partitions.get(partition as usize).map(|p| p.leader))
        .ok_or_else(|| ApiError::code(ResponseError::CoordinatorNotAvailable))?;
    if leader != broker.node_id() {
        // Another broker leads the group's partition: it is the coordinator.
        return broker
            .endpoint_of(&broker.image(), leader, &ctx.listener.name)
            .map(|(host, port)| (leader, host, port))
            .ok_or_else(|| ApiError::code(ResponseError::CoordinatorNotAvailable));
    }
    // The topic is in the metadata image before its logs exist (they are created on the
    // blocking pool after the commit). Until the group's partition is loaded here, Kafka
    // answers COORDINATOR_NOT_AVAILABLE and the client retries; answering earlier let a
    // group join whose records could not be written to `__consumer_offsets`.
    if broker.leader_partition(topic, partition).is_err() {
        return Err(ApiError::code(ResponseError::CoordinatorNotAvailable));
    }
    // Kafka answers COORDINATOR_NOT_AVAILABLE when the coordinator has no endpoint on the
    // listener the request came in on.
    let (host, port) = broker
        .advertised_endpoint(&ctx.listener.name)
        .ok_or_else(|| ApiError::code(ResponseError::CoordinatorNotAvailable))?;
    Ok((leader, host, port))
}
