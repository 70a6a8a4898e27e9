//! CreatePartitions (key 37): increase a topic's partition count; decreases are refused.

use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};

use super::Ctx;

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.as_str().to_string();
        let assignments = topic.assignments.map(|list| {
            list.into_iter()
                .map(|a| a.broker_ids.into_iter().map(|b| b.0).collect())
                .collect()
        });
        let mut result = CreatePartitionsTopicResult::default().with_name(topic.name);
        if let Err(e) = ctx
            .broker
            .create_partitions(&name, topic.count, assignments, request.validate_only)
            .await
        {
            result.error_code = e.code;
            result.error_message = e.message_str();
        }
        results.push(result);
    }
    CreatePartitionsResponse::default().with_results(results)
}
