//! WriteTxnMarkers (key 27, v1): writes the end-transaction marker (COMMIT or ABORT) of
//! each producer to each named partition this broker leads, as Kafka's
//! `handleWriteTxnMarkersRequest`: a control batch with the producer's epoch and the
//! coordinator epoch, appended with acks=all through the same path as the coordinator's own
//! markers ([`crate::txn::coordinator::TxnHost::write_marker`]), so a marker to
//! `__consumer_offsets` also ends the transaction's pending offsets there.
//!
//! A transaction coordinator sends it to the leaders of its transaction's partitions on
//! other brokers ([`crate::txn::markers`]; its own partitions it writes in-process), and
//! `Admin.abortTransaction` (`kafka-transactions.sh abort`) to the leader of a partition
//! with a hanging transaction. Per partition errors as
//! Kafka's: UNKNOWN_TOPIC_OR_PARTITION, NOT_LEADER_OR_FOLLOWER, INVALID_PRODUCER_EPOCH for
//! an epoch older than the partition has seen, TRANSACTION_COORDINATOR_FENCED for an older
//! coordinator epoch, and the errors of an acks=all append.

use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use kafka_protocol::ResponseError;

use super::Ctx;
use crate::txn::coordinator::TxnHost;

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let mut results = Vec::with_capacity(request.markers.len());
    for marker in request.markers {
        let mut topics = Vec::with_capacity(marker.topics.len());
        for topic in marker.topics {
            let mut partitions = Vec::with_capacity(topic.partition_indexes.len());
            for &index in &topic.partition_indexes {
                let written = ctx
                    .broker
                    .write_marker(
                        (topic.name.0.to_string(), index),
                        marker.producer_id.0,
                        marker.producer_epoch,
                        marker.transaction_result,
                        marker.coordinator_epoch,
                    )
                    .await;
                partitions.push(
                    WritableTxnMarkerPartitionResult::default()
                        .with_partition_index(index)
                        .with_error_code(match written {
                            Ok(()) => 0,
                            Err(e) => marker_error(e.code),
                        }),
                );
            }
            topics.push(
                WritableTxnMarkerTopicResult::default()
                    .with_name(topic.name)
                    .with_partitions(partitions),
            );
        }
        results.push(
            WritableTxnMarkerResult::default()
                .with_producer_id(marker.producer_id)
                .with_topics(topics),
        );
    }
    WriteTxnMarkersResponse::default().with_markers(results)
}

/// The code a marker's sender gets for `code`: the group coordinator's "not ready" answers
/// on a `__consumer_offsets` partition become NOT_LEADER_OR_FOLLOWER, which a transaction
/// coordinator retries (Kafka's handler translates them the same way).
fn marker_error(code: i16) -> i16 {
    let not_ready = [
        ResponseError::CoordinatorNotAvailable.code(),
        ResponseError::CoordinatorLoadInProgress.code(),
        ResponseError::NotCoordinator.code(),
    ];
    if not_ready.contains(&code) {
        ResponseError::NotLeaderOrFollower.code()
    } else {
        code
    }
}
