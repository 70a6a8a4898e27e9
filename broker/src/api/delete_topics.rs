//! DeleteTopics (key 20): by name (v0-5) or by topic id (v6+).

use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{str_bytes, Ctx};

pub(crate) async fn handle(ctx: &Ctx<'_>, request: DeleteTopicsRequest) -> DeleteTopicsResponse {
    let mut targets: Vec<(Option<String>, Uuid)> = request
        .topic_names
        .iter()
        .map(|n| (Some(n.0.as_str().to_string()), Uuid::nil()))
        .collect();
    targets.extend(request.topics.iter().map(|t| {
        (
            t.name.as_ref().map(|n| n.0.as_str().to_string()),
            t.topic_id,
        )
    }));
    let mut responses = Vec::with_capacity(targets.len());
    for (name, id) in targets {
        let image = ctx.broker.image();
        let resolved = match &name {
            Some(name) => Some(name.clone()),
            None => image.topic_by_id(&id).map(|t| t.name.clone()),
        };
        let mut result = DeletableTopicResult::default()
            .with_name(name.clone().map(|n| TopicName(str_bytes(n))))
            .with_topic_id(id);
        match resolved {
            None => result.error_code = ResponseError::UnknownTopicId.code(),
            Some(resolved) => match ctx.broker.delete_topic(&resolved).await {
                Ok(topic_id) => {
                    result.name = Some(TopicName(str_bytes(resolved)));
                    if ctx.version >= 6 {
                        result.topic_id = topic_id;
                    }
                }
                Err(e) => {
                    result.error_code = e.code;
                    if ctx.version >= 5 {
                        result.error_message = e.message_str();
                    }
                }
            },
        }
        responses.push(result);
    }
    DeleteTopicsResponse::default().with_responses(responses)
}
