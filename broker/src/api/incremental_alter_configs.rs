//! IncrementalAlterConfigs (key 44): SET, DELETE, APPEND and SUBTRACT individual configs —
//! what `kafka-configs.sh --alter --add-config/--delete-config` sends.

use std::collections::BTreeMap;

use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use kafka_protocol::ResponseError;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{alter_configs, ApiError, Ctx};
use crate::config;

const SET: i8 = 0;
const DELETE: i8 = 1;
const APPEND: i8 = 2;
const SUBTRACT: i8 = 3;
/// Kafka's ConfigType code for LIST.
const TYPE_LIST: i8 = 7;

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: IncrementalAlterConfigsRequest,
) -> IncrementalAlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let name = resource.resource_name.as_str().to_string();
        let ops: Vec<(String, i8, Option<String>)> = resource
            .configs
            .iter()
            .map(|c| {
                (
                    c.name.as_str().to_string(),
                    c.config_operation,
                    c.value.as_ref().map(|v| v.as_str().to_string()),
                )
            })
            .collect();
        let outcome = match merged(ctx, resource.resource_type, &name, &ops) {
            Ok(configs) => {
                alter_configs::apply(
                    ctx,
                    resource.resource_type,
                    &name,
                    configs,
                    request.validate_only,
                )
                .await
            }
            Err(e) => Err(e),
        };
        let mut response = AlterConfigsResourceResponse::default()
            .with_resource_type(resource.resource_type)
            .with_resource_name(resource.resource_name);
        if let Err(e) = outcome {
            response.error_code = e.code;
            response.error_message = e.message_str();
        }
        responses.push(response);
    }
    IncrementalAlterConfigsResponse::default().with_responses(responses)
}

/// The resource's dynamic configs after applying `ops` in order.
fn merged(
    ctx: &Ctx<'_>,
    resource_type: i8,
    name: &str,
    ops: &[(String, i8, Option<String>)],
) -> Result<BTreeMap<String, String>, ApiError> {
    let image = ctx.broker.image();
    let mut current = match resource_type {
        RESOURCE_TOPIC => image
            .topic(name)
            .ok_or_else(|| {
                ApiError::new(
                    ResponseError::UnknownTopicOrPartition,
                    format!("The topic '{name}' does not exist."),
                )
            })?
            .configs
            .clone(),
        RESOURCE_BROKER => image.broker_config(name),
        other => {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("Unsupported resource type {other}"),
            ))
        }
    };
    let mut seen = std::collections::HashSet::new();
    for (key, op, value) in ops {
        if !seen.insert(key.clone()) {
            return Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("Error due to duplicate config keys : {key}"),
            ));
        }
        match *op {
            SET => {
                let value = value.clone().ok_or_else(|| {
                    ApiError::new(
                        ResponseError::InvalidRequest,
                        format!("Null value not supported for : {key}"),
                    )
                })?;
                current.insert(key.clone(), value);
            }
            DELETE => {
                current.remove(key);
            }
            APPEND | SUBTRACT => {
                if resource_type == RESOURCE_TOPIC && !is_list_topic_config(ctx, key) {
                    let verb = if *op == APPEND { "append" } else { "subtract" };
                    return Err(ApiError::new(
                        ResponseError::InvalidConfig,
                        format!("Config value {verb} is not allowed for config key: {key}"),
                    ));
                }
                let mut items: Vec<String> = match current.get(key) {
                    Some(v) => split_list(v),
                    None => effective_list(ctx, key),
                };
                for item in split_list(value.as_deref().unwrap_or("")) {
                    if *op == APPEND {
                        if !items.contains(&item) {
                            items.push(item);
                        }
                    } else {
                        items.retain(|i| *i != item);
                    }
                }
                current.insert(key.clone(), items.join(","));
            }
            other => {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("Unknown config operation {other}"),
                ))
            }
        }
    }
    Ok(current)
}

fn split_list(value: &str) -> Vec<String> {
    value
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::to_string)
        .collect()
}

fn describe_one(ctx: &Ctx<'_>, key: &str) -> Option<config::DescribedConfig> {
    let keys = [key.to_string()];
    config::describe_topic_configs(
        ctx.broker.config(),
        &BTreeMap::new(),
        &BTreeMap::new(),
        Some(&keys),
        false,
        false,
    )
    .into_iter()
    .next()
}

fn is_list_topic_config(ctx: &Ctx<'_>, key: &str) -> bool {
    describe_one(ctx, key)
        .map(|c| c.config_type == TYPE_LIST)
        .unwrap_or(false)
}

fn effective_list(ctx: &Ctx<'_>, key: &str) -> Vec<String> {
    describe_one(ctx, key)
        .and_then(|c| c.value)
        .map(|v| split_list(&v))
        .unwrap_or_default()
}
