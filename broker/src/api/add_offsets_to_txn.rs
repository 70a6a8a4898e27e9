//! AddOffsetsToTxn (key 25): a transactional producer about to send a group's offsets in its
//! transaction (`sendOffsetsToTransaction`) adds that group's `__consumer_offsets`
//! partition to the transaction, so the end marker is written there too. Served v0–v4 as
//! Kafka 4.1 serves transaction protocol v1 (v4 only allows TRANSACTION_ABORTABLE, which
//! Oxbow's coordinator never answers).

use std::collections::BTreeSet;

use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use kafka_protocol::ResponseError;

use super::Ctx;
use crate::group::OFFSETS_TOPIC;

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: AddOffsetsToTxnRequest,
) -> AddOffsetsToTxnResponse {
    let response = AddOffsetsToTxnResponse::default();
    let Some(broker) = ctx.broker.shared() else {
        return response.with_error_code(ResponseError::CoordinatorNotAvailable.code());
    };
    // The group's partition, as the group coordinator places it (Kafka's `partitionFor`);
    // `__consumer_offsets` is created here if no group has needed it yet.
    let partition = match broker
        .groups()
        .partition_for(broker.as_ref(), request.group_id.0.as_str())
        .await
    {
        Ok(p) => p,
        Err(e) => return response.with_error_code(e.code),
    };
    let partitions = BTreeSet::from([(OFFSETS_TOPIC.to_string(), partition)]);
    let added = broker
        .txns()
        .add_partitions(
            broker.as_ref(),
            request.transactional_id.as_str(),
            request.producer_id.0,
            request.producer_epoch,
            &partitions,
        )
        .await;
    match added {
        Ok(()) => response,
        // Before v2 the client did not know PRODUCER_FENCED (Kafka maps it).
        Err(e) if e.code == ResponseError::ProducerFenced.code() && ctx.version < 2 => {
            response.with_error_code(ResponseError::InvalidProducerEpoch.code())
        }
        Err(e) => response.with_error_code(e.code),
    }
}
