//! InitProducerId (key 22): producer ids for idempotent producers (the Java producer's
//! default), and for transactional producers the id and epoch of their transactional id
//! from its transaction coordinator (see [`crate::txn::coordinator`]).

use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::Ctx;

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: InitProducerIdRequest,
) -> InitProducerIdResponse {
    let response = InitProducerIdResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    if let Some(transactional_id) = &request.transactional_id {
        // Kafka: both or neither of producer id and epoch (KIP-360 recovery names both).
        let expected = match (request.producer_id.0, request.producer_epoch) {
            (-1, -1) => None,
            (-1, _) | (_, -1) => {
                return response.with_error_code(ResponseError::InvalidRequest.code())
            }
            (id, epoch) => Some((id, epoch)),
        };
        let Some(broker) = ctx.broker.shared() else {
            return response.with_error_code(ResponseError::CoordinatorNotAvailable.code());
        };
        return match broker
            .txns()
            .init_producer_id(
                &broker,
                transactional_id.as_str(),
                request.transaction_timeout_ms,
                expected,
            )
            .await
        {
            Ok((id, epoch)) => response
                .with_producer_id(ProducerId(id))
                .with_producer_epoch(epoch),
            // Before v4 the client did not know PRODUCER_FENCED (Kafka maps it).
            Err(e) if e.code == ResponseError::ProducerFenced.code() && ctx.version < 4 => {
                response.with_error_code(ResponseError::InvalidProducerEpoch.code())
            }
            Err(e) => response.with_error_code(e.code),
        };
    }
    // An idempotent producer re-initialising with its old id (KIP-360) simply gets a new
    // id: sequence numbers restart at zero either way.
    match ctx.broker.allocate_producer_id().await {
        Ok(id) => response
            .with_producer_id(ProducerId(id))
            .with_producer_epoch(0),
        Err(e) => response.with_error_code(e.code),
    }
}
