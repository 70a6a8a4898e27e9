//! DeleteRecords (key 21): move a partition's log start offset forward (`-1` means the high
//! watermark), deleting whole segments below it.
//!
//! Internal topics refuse it per partition with INVALID_TOPIC_EXCEPTION, as Kafka's
//! `ReplicaManager.deleteRecordsOnLocalLog` does: their records are the coordinators' state.

use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};

use kafka_protocol::ResponseError;

use super::{ApiError, Ctx};
use crate::metadata::topic_name;

pub(crate) async fn handle(ctx: &Ctx<'_>, request: DeleteRecordsRequest) -> DeleteRecordsResponse {
    let mut topics = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.as_str().to_string();
        let mut partitions = Vec::with_capacity(topic.partitions.len());
        for p in &topic.partitions {
            let result = DeleteRecordsPartitionResult::default()
                .with_partition_index(p.partition_index)
                .with_low_watermark(-1);
            partitions.push(
                match delete(ctx, &name, p.partition_index, p.offset).await {
                    Ok(low_watermark) => result.with_low_watermark(low_watermark),
                    Err(e) => result.with_error_code(e.code),
                },
            );
        }
        topics.push(
            DeleteRecordsTopicResult::default()
                .with_name(topic.name)
                .with_partitions(partitions),
        );
    }
    DeleteRecordsResponse::default().with_topics(topics)
}

/// Moves the log start offset on a blocking thread: deleting segments and writing the log
/// start offset checkpoint (fsync) must not occupy an async worker.
async fn delete(ctx: &Ctx<'_>, topic: &str, partition: i32, offset: i64) -> Result<i64, ApiError> {
    let (log, _) = ctx.broker.leader_log(topic, partition)?;
    if topic_name::is_internal(topic) {
        return Err(ApiError::code(ResponseError::InvalidTopicException));
    }
    tokio::task::spawn_blocking(move || {
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        let target = if offset == -1 {
            log.high_watermark()
        } else {
            offset
        };
        Ok(log.delete_records_before(target)?)
    })
    .await
    .map_err(|e| ApiError::new(ResponseError::UnknownServerError, e.to_string()))?
}
