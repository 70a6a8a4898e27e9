//! AddPartitionsToTxn (key 24): a transactional producer adds the partitions it is about
//! to write to its transaction (transaction protocol v1). Served v0–v3, the client's
//! versions; v4+ carry batches of transactions that brokers send their coordinators to
//! verify a produce (KIP-890), which Oxbow's partition leaders do not do, so they are not
//! advertised.

use std::collections::BTreeSet;

use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{AddPartitionsToTxnRequest, AddPartitionsToTxnResponse};
use kafka_protocol::ResponseError;

use super::Ctx;

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: AddPartitionsToTxnRequest,
) -> AddPartitionsToTxnResponse {
    let image = ctx.broker.image();
    let mut partitions = BTreeSet::new();
    let mut unknown = BTreeSet::new();
    for topic in &request.v3_and_below_topics {
        let count = image
            .topic(topic.name.as_str())
            .map(|t| t.partitions.len() as i32);
        for &p in &topic.partitions {
            let tp = (topic.name.to_string(), p);
            if count.is_some_and(|c| (0..c).contains(&p)) {
                partitions.insert(tp);
            } else {
                unknown.insert(tp);
            }
        }
    }
    // As Kafka: one unknown partition fails the request; it gets UNKNOWN_TOPIC_OR_PARTITION
    // and the others OPERATION_NOT_ATTEMPTED. Otherwise every partition gets the
    // coordinator's answer.
    let coordinator_code = if !unknown.is_empty() {
        None
    } else {
        Some(match ctx.broker.shared() {
            None => ResponseError::CoordinatorNotAvailable.code(),
            Some(broker) => match broker
                .txns()
                .add_partitions(
                    broker.as_ref(),
                    request.v3_and_below_transactional_id.as_str(),
                    request.v3_and_below_producer_id.0,
                    request.v3_and_below_producer_epoch,
                    &partitions,
                )
                .await
            {
                Ok(()) => 0,
                // Before v2 the client did not know PRODUCER_FENCED (Kafka maps it).
                Err(e) if e.code == ResponseError::ProducerFenced.code() && ctx.version < 2 => {
                    ResponseError::InvalidProducerEpoch.code()
                }
                Err(e) => e.code,
            },
        })
    };
    let outcome = |tp: &(String, i32)| match coordinator_code {
        Some(code) => code,
        None if unknown.contains(tp) => ResponseError::UnknownTopicOrPartition.code(),
        None => ResponseError::OperationNotAttempted.code(),
    };
    let results = request
        .v3_and_below_topics
        .iter()
        .map(|topic| {
            AddPartitionsToTxnTopicResult::default()
                .with_name(topic.name.clone())
                .with_results_by_partition(
                    topic
                        .partitions
                        .iter()
                        .map(|&p| {
                            AddPartitionsToTxnPartitionResult::default()
                                .with_partition_index(p)
                                .with_partition_error_code(outcome(&(topic.name.to_string(), p)))
                        })
                        .collect(),
                )
        })
        .collect();
    AddPartitionsToTxnResponse::default().with_results_by_topic_v3_and_below(results)
}
