//! EndTxn (key 26): a transactional producer commits or aborts its transaction. Served for
//! transaction protocol v1 (v0–v4): the coordinator writes PrepareCommit/PrepareAbort and
//! answers; the markers follow (see [`crate::txn::coordinator`]). v5 is the KIP-890 v2
//! path, which Oxbow does not advertise (see [`crate::txn`]).

use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};
use kafka_protocol::ResponseError;

use super::Ctx;

pub(crate) async fn handle(ctx: &Ctx<'_>, request: EndTxnRequest) -> EndTxnResponse {
    let response = EndTxnResponse::default()
        .with_producer_id(ProducerId(-1))
        .with_producer_epoch(-1);
    let Some(broker) = ctx.broker.shared() else {
        return response.with_error_code(ResponseError::CoordinatorNotAvailable.code());
    };
    let ended = broker
        .txns()
        .end_txn(
            &broker,
            request.transactional_id.as_str(),
            request.producer_id.0,
            request.producer_epoch,
            request.committed,
        )
        .await;
    match ended {
        Ok(()) => response,
        // Before v2 of the request the client did not know PRODUCER_FENCED (Kafka's
        // EndTxnResponse maps it for old versions).
        Err(e) if e.code == ResponseError::ProducerFenced.code() && ctx.version < 2 => {
            response.with_error_code(ResponseError::InvalidProducerEpoch.code())
        }
        Err(e) => response.with_error_code(e.code),
    }
}
