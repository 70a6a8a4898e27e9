//! InitProducerId (key 22): hands out producer ids for idempotent producers (the Java
//! producer's default). Transactional producers need a transaction coordinator, which is
//! not served yet: FindCoordinator is not advertised, so clients fail before getting here.

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
    if request.transactional_id.is_some() {
        return response.with_error_code(ResponseError::CoordinatorNotAvailable.code());
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
