//! AlterConfigs (key 33): the legacy whole-set form — the listed configs replace every
//! dynamic override of the resource.

use std::collections::BTreeMap;

use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::ResponseError;

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{ApiError, Ctx};

pub(crate) async fn handle(ctx: &Ctx<'_>, request: AlterConfigsRequest) -> AlterConfigsResponse {
    let mut responses = Vec::with_capacity(request.resources.len());
    for resource in request.resources {
        let name = resource.resource_name.as_str().to_string();
        let mut configs = BTreeMap::new();
        let mut null_key = None;
        for c in &resource.configs {
            match &c.value {
                Some(v) => {
                    configs.insert(c.name.as_str().to_string(), v.as_str().to_string());
                }
                None => null_key = Some(c.name.as_str().to_string()),
            }
        }
        let outcome = match null_key {
            Some(key) => Err(ApiError::new(
                ResponseError::InvalidRequest,
                format!("Null value not supported for : {key}"),
            )),
            None => {
                apply(
                    ctx,
                    resource.resource_type,
                    &name,
                    configs,
                    request.validate_only,
                )
                .await
            }
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
    AlterConfigsResponse::default().with_responses(responses)
}

/// Replaces the resource's dynamic configs with `configs`. Shared with
/// IncrementalAlterConfigs, which computes the full set first.
pub(crate) async fn apply(
    ctx: &Ctx<'_>,
    resource_type: i8,
    name: &str,
    configs: BTreeMap<String, String>,
    validate_only: bool,
) -> Result<(), ApiError> {
    match resource_type {
        RESOURCE_TOPIC => {
            ctx.broker
                .set_topic_configs(name, configs, validate_only)
                .await
        }
        RESOURCE_BROKER => {
            let node = ctx.broker.node_id().to_string();
            if !name.is_empty() && name != node {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("Unexpected broker id, expected {node} or empty string, but received {name}"),
                ));
            }
            ctx.broker
                .set_broker_configs(name, configs, validate_only)
                .await
        }
        other => Err(ApiError::new(
            ResponseError::InvalidRequest,
            format!("Unsupported resource type {other}"),
        )),
    }
}
