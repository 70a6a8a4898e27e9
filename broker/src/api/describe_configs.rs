//! DescribeConfigs (key 32): topic and broker configs with their sources and synonyms, as
//! Apache Kafka reports them (`kafka-configs.sh --describe`, `--all`).

use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use kafka_protocol::ResponseError;

use super::{str_bytes, ApiError, Ctx};
use crate::config::{self, DescribedConfig};

/// Kafka's ConfigResource.Type codes.
pub(crate) const RESOURCE_TOPIC: i8 = 2;
pub(crate) const RESOURCE_BROKER: i8 = 4;
pub(crate) const RESOURCE_BROKER_LOGGER: i8 = 8;

pub(crate) async fn handle(
    ctx: &Ctx<'_>,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let synonyms = request.include_synonyms;
    let docs = request.include_documentation;
    let results = request
        .resources
        .into_iter()
        .map(|resource| {
            let name = resource.resource_name.as_str().to_string();
            let keys: Option<Vec<String>> = resource
                .configuration_keys
                .map(|k| k.iter().map(|s| s.as_str().to_string()).collect());
            let result = DescribeConfigsResult::default()
                .with_resource_type(resource.resource_type)
                .with_resource_name(resource.resource_name);
            match describe(
                ctx,
                resource.resource_type,
                &name,
                keys.as_deref(),
                synonyms,
                docs,
            ) {
                Ok(configs) => result.with_configs(
                    configs
                        .into_iter()
                        .map(|c| encode(c, ctx.version))
                        .collect(),
                ),
                Err(e) => result
                    .with_error_code(e.code)
                    .with_error_message(e.message_str()),
            }
        })
        .collect();
    DescribeConfigsResponse::default().with_results(results)
}

fn describe(
    ctx: &Ctx<'_>,
    resource_type: i8,
    name: &str,
    keys: Option<&[String]>,
    synonyms: bool,
    docs: bool,
) -> Result<Vec<DescribedConfig>, ApiError> {
    let broker = ctx.broker;
    let image = broker.image();
    let node = broker.node_id().to_string();
    match resource_type {
        RESOURCE_TOPIC => {
            let topic = image.topic(name).ok_or_else(|| {
                ApiError::new(ResponseError::UnknownTopicOrPartition, format!("The topic '{name}' does not exist."))
            })?;
            Ok(config::describe_topic_configs_with(
                broker.config(),
                &image.broker_config(&node),
                &image.broker_config(""),
                &topic.configs,
                keys,
                synonyms,
                docs,
            ))
        }
        RESOURCE_BROKER => {
            if !name.is_empty() && name != node {
                return Err(ApiError::new(
                    ResponseError::InvalidRequest,
                    format!("Unexpected broker id, expected {node} or empty string, but received {name}"),
                ));
            }
            if name.is_empty() {
                // The cluster-wide default entity lists only its dynamic configs, as Kafka does.
                return Ok(config::describe_cluster_default_broker_configs(&image.broker_config(""), keys, synonyms, docs));
            }
            Ok(config::describe_broker_configs(
                broker.config(),
                &image.broker_config(&node),
                &image.broker_config(""),
                keys,
                synonyms,
                docs,
            ))
        }
        RESOURCE_BROKER_LOGGER => Err(ApiError::new(
            ResponseError::InvalidRequest,
            "Broker logger configs are not supported: oxbow-broker logs through tracing (set RUST_LOG).",
        )),
        other => Err(ApiError::new(ResponseError::InvalidRequest, format!("Unsupported resource type {other}"))),
    }
}

fn encode(c: DescribedConfig, version: i16) -> DescribeConfigsResourceResult {
    let synonyms = c
        .synonyms
        .into_iter()
        .map(|s| {
            DescribeConfigsSynonym::default()
                .with_name(str_bytes(s.name))
                .with_value(s.value.map(str_bytes))
                .with_source(s.source.code())
        })
        .collect();
    let mut result = DescribeConfigsResourceResult::default()
        .with_name(str_bytes(c.name))
        .with_value(c.value.map(str_bytes))
        .with_read_only(c.read_only)
        .with_config_source(c.source.code())
        .with_is_sensitive(c.sensitive)
        .with_synonyms(synonyms);
    // config_type and documentation exist from v3.
    if version >= 3 {
        result.config_type = c.config_type;
        result.documentation = c.documentation.map(str_bytes);
    }
    result
}
