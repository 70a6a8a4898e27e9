//! CreateTopics (key 19): create topics with defaults, explicit counts, manual assignments
//! and config overrides; `validate_only` checks without creating.

use std::collections::{BTreeMap, HashMap};

use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, ApiError, Ctx};
use crate::broker::NewTopic;
use crate::config;

pub(crate) async fn handle(ctx: &Ctx<'_>, request: CreateTopicsRequest) -> CreateTopicsResponse {
    let mut seen: HashMap<String, usize> = HashMap::new();
    for t in &request.topics {
        *seen.entry(t.name.0.as_str().to_string()).or_default() += 1;
    }
    let mut results = Vec::with_capacity(request.topics.len());
    for topic in request.topics {
        let name = topic.name.0.as_str().to_string();
        let mut result = CreatableTopicResult::default()
            .with_name(topic.name.clone())
            .with_num_partitions(-1)
            .with_replication_factor(-1);
        let outcome = if crate::metadata::topic_name::is_internal(&name) {
            Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("Creation of internal topic {name} is prohibited."),
            ))
        } else if seen.get(&name).copied().unwrap_or(0) > 1 {
            Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("Duplicate topic name: {name}"),
            ))
        } else {
            new_topic(topic)
        };
        let outcome = match outcome {
            Ok(new) => ctx.broker.create_topic(new, request.validate_only).await,
            Err(e) => Err(e),
        };
        match outcome {
            Ok(created) => {
                if ctx.version >= 7 && !request.validate_only {
                    result.topic_id = created.id;
                }
                if ctx.version >= 5 {
                    result.num_partitions = created.partitions.len() as i32;
                    result.replication_factor = created
                        .partitions
                        .first()
                        .map(|p| p.replicas.len() as i16)
                        .unwrap_or(-1);
                    let image = ctx.broker.image();
                    let described = config::describe_topic_configs_with(
                        ctx.broker.config(),
                        &image.broker_config(&ctx.broker.node_id().to_string()),
                        &image.broker_config(""),
                        &created.configs,
                        None,
                        false,
                        false,
                    );
                    result.configs = Some(
                        described
                            .into_iter()
                            .map(|c| {
                                CreatableTopicConfigs::default()
                                    .with_name(str_bytes(c.name))
                                    .with_value(c.value.map(str_bytes))
                                    .with_read_only(c.read_only)
                                    .with_config_source(c.source.code())
                                    .with_is_sensitive(c.sensitive)
                            })
                            .collect(),
                    );
                }
            }
            Err(e) => {
                result.error_code = e.code;
                result.error_message = e.message_str();
            }
        }
        results.push(result);
    }
    CreateTopicsResponse::default().with_topics(results)
}

fn new_topic(
    topic: kafka_protocol::messages::create_topics_request::CreatableTopic,
) -> Result<NewTopic, ApiError> {
    let mut configs = BTreeMap::new();
    for c in topic.configs {
        let key = c.name.as_str().to_string();
        let Some(value) = c.value else {
            return Err(ApiError::new(
                ResponseError::InvalidConfig,
                format!("Null value not supported for topic configs: {key}"),
            ));
        };
        configs.insert(key, value.as_str().to_string());
    }
    let mut assignments = BTreeMap::new();
    for a in topic.assignments {
        let replicas = a.broker_ids.into_iter().map(|b| b.0).collect();
        // Kafka's controller refuses a partition assigned twice; the map would keep only
        // the last assignment.
        if assignments.insert(a.partition_index, replicas).is_some() {
            return Err(ApiError::new(
                ResponseError::InvalidReplicaAssignment,
                format!(
                    "Found multiple manual partition assignments for partition {}",
                    a.partition_index
                ),
            ));
        }
    }
    Ok(NewTopic {
        name: topic.name.0.as_str().to_string(),
        num_partitions: topic.num_partitions,
        replication_factor: topic.replication_factor,
        assignments,
        configs,
    })
}
