//! DescribeTransactions (key 65): the state of transactional ids this broker coordinates —
//! state, producer id and epoch, timeout, when the open transaction started and its
//! partitions — or per id NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
//! TRANSACTIONAL_ID_NOT_FOUND or INVALID_REQUEST (an empty id), as Kafka's
//! `handleDescribeTransactions`.

use std::collections::BTreeMap;

use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId, TopicName,
};
use kafka_protocol::ResponseError;

use super::{str_bytes, Ctx};

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: DescribeTransactionsRequest,
) -> DescribeTransactionsResponse {
    let mut states = Vec::with_capacity(request.transactional_ids.len());
    for id in request.transactional_ids {
        states.push(describe(ctx, id).await);
    }
    DescribeTransactionsResponse::default().with_transaction_states(states)
}

async fn describe(
    ctx: &Ctx<'_>,
    id: kafka_protocol::messages::TransactionalId,
) -> TransactionState {
    let described = TransactionState::default().with_transactional_id(id.clone());
    let Some(broker) = ctx.broker.shared() else {
        return described.with_error_code(ResponseError::CoordinatorNotAvailable.code());
    };
    let m = match broker.txns().describe(broker.as_ref(), id.0.as_str()).await {
        Ok(m) => m,
        Err(e) => return described.with_error_code(e.code),
    };
    let mut by_topic: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for (topic, p) in &m.partitions {
        by_topic.entry(topic.clone()).or_default().push(*p);
    }
    described
        .with_transaction_state(str_bytes(m.state.name()))
        .with_transaction_timeout_ms(m.timeout_ms)
        .with_transaction_start_time_ms(m.start_timestamp_ms)
        .with_producer_id(ProducerId(m.producer_id))
        .with_producer_epoch(m.producer_epoch)
        .with_topics(
            by_topic
                .into_iter()
                .map(|(topic, partitions)| {
                    TopicData::default()
                        .with_topic(TopicName(str_bytes(topic)))
                        .with_partitions(partitions)
                })
                .collect(),
        )
}
