//! ListTransactions (key 66): the transactional ids this broker's transaction coordinator
//! serves, filtered by state names, producer ids, (v1, KIP-994) how long their transaction
//! has been running and (v2, KIP-1152) a regular expression the whole id must match (see
//! [`crate::txn::ListFilter`]). State names Kafka does not know are returned in
//! `unknown_state_filters`; a pattern that does not compile fails the request with
//! INVALID_REGULAR_EXPRESSION, as in Kafka.

use kafka_protocol::messages::list_transactions_response::TransactionState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};

use kafka_protocol::ResponseError;

use super::{str_bytes, Ctx};
use crate::time::now_ms;
use crate::txn::ListFilter;

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: ListTransactionsRequest,
) -> ListTransactionsResponse {
    let names: Vec<&str> = request.state_filters.iter().map(|s| s.as_str()).collect();
    let producer_ids: Vec<i64> = request.producer_id_filters.iter().map(|p| p.0).collect();
    // v0 has no duration filter: the field's default (-1) lists every duration.
    let duration_ms = if ctx.version >= 1 {
        request.duration_filter
    } else {
        -1
    };
    // v2 adds the transactional id pattern (KIP-1152).
    let pattern = if ctx.version >= 2 {
        request
            .transactional_id_pattern
            .as_ref()
            .map(|p| p.as_str())
    } else {
        None
    };
    let response = ListTransactionsResponse::default();
    let (filter, unknown) = match ListFilter::new(&names, &producer_ids, duration_ms, pattern) {
        Ok(f) => f,
        Err(_) => return response.with_error_code(ResponseError::InvalidRegularExpression.code()),
    };
    match ctx.broker.txns().list(&filter, now_ms()) {
        // As Kafka, the unknown filters come with a listing only (not with an error).
        Ok(listed) => response
            .with_unknown_state_filters(unknown.into_iter().map(str_bytes).collect())
            .with_transaction_states(
                listed
                    .into_iter()
                    .map(|m| {
                        TransactionState::default()
                            .with_transactional_id(TransactionalId(str_bytes(m.transactional_id)))
                            .with_producer_id(ProducerId(m.producer_id))
                            .with_transaction_state(str_bytes(m.state.name()))
                    })
                    .collect(),
            ),
        Err(e) => response.with_error_code(e.code),
    }
}
