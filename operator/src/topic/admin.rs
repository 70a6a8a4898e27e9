//! Kafka admin calls the topic controller needs, over one [`oxbow_client::Client`] per
//! cluster (its connections are cached and reused by every KafkaTopic of that cluster).
//!
//! Requests go to any live broker: in KRaft every broker forwards topic administration to
//! the active controller, so the first broker Metadata lists serves as well as any.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use base64::Engine as _;
use oxbow_client::kafka_protocol::error::ParseResponseErrorCode;
use oxbow_client::kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use oxbow_client::kafka_protocol::messages::create_partitions_request::CreatePartitionsTopic;
use oxbow_client::kafka_protocol::messages::create_topics_request::{
    CreatableTopic, CreatableTopicConfig,
};
use oxbow_client::kafka_protocol::messages::delete_topics_request::DeleteTopicState;
use oxbow_client::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use oxbow_client::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use oxbow_client::kafka_protocol::messages::list_partition_reassignments_request::ListPartitionReassignmentsTopics;
use oxbow_client::kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use oxbow_client::kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, BrokerId, CreatePartitionsRequest, CreateTopicsRequest,
    DeleteTopicsRequest, DescribeConfigsRequest, IncrementalAlterConfigsRequest,
    ListPartitionReassignmentsRequest, MetadataRequest, TopicName,
};
use oxbow_client::kafka_protocol::protocol::StrBytes;
use oxbow_client::{Client, ConnectionConfig};

use super::plan::{Broker, ObservedTopic};

/// `ConfigResource.Type.TOPIC` on the wire.
const TOPIC_RESOURCE: i8 = 2;
/// DescribeConfigs source `DYNAMIC_TOPIC_CONFIG`: set on the topic itself.
const DYNAMIC_TOPIC_CONFIG: i8 = 1;
/// IncrementalAlterConfigs operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;
/// How long the brokers may take over a topic operation before answering REQUEST_TIMED_OUT.
const OPERATION_TIMEOUT_MS: i32 = 30_000;

/// Why an admin call failed.
#[derive(Debug, thiserror::Error)]
pub enum AdminError {
    /// The cluster could not be reached or broke the protocol.
    #[error("{0}")]
    Client(#[from] oxbow_client::Error),
    /// Kafka refused the operation; `reason` is its error in CamelCase
    /// (`InvalidReplicationFactor`, `InvalidConfig`, ...), for a condition.
    #[error("{reason}: {message}")]
    Kafka {
        /// Kafka's error name in CamelCase.
        reason: String,
        /// Kafka's message, or the error's description.
        message: String,
    },
    /// Metadata listed no broker.
    #[error("the cluster lists no brokers")]
    NoBrokers,
}

impl AdminError {
    fn kafka(code: i16, message: Option<&StrBytes>) -> Option<AdminError> {
        let error = code.err()?;
        Some(AdminError::Kafka {
            reason: format!("{error:?}"),
            message: message
                .map(|m| m.to_string())
                .filter(|m| !m.is_empty())
                .unwrap_or_else(|| error.to_string()),
        })
    }
}

/// A cluster's admin side.
pub struct Admin {
    client: Client,
}

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn text(s: &str) -> StrBytes {
    StrBytes::from_string(s.to_string())
}

/// Kafka prints topic ids as URL-safe base64 without padding.
pub fn encode_topic_id(id: &uuid::Uuid) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.as_bytes())
}

impl Admin {
    /// An admin for the cluster at `bootstrap` (`host:port` list); connects on first use.
    pub fn new(bootstrap: &[String]) -> Admin {
        let config = ConnectionConfig {
            client_id: Some("oxbow-topic-operator".to_string()),
            request_timeout: Duration::from_secs(OPERATION_TIMEOUT_MS as u64 / 1000 + 10),
            connect_timeout: Duration::from_secs(3),
            ..ConnectionConfig::default()
        };
        Admin {
            client: Client::new(bootstrap.iter().cloned(), config),
        }
    }

    /// The brokers, and `topic` as Kafka describes it (`None` if it does not exist).
    pub async fn describe(
        &self,
        topic: &str,
    ) -> Result<(Vec<Broker>, Option<ObservedTopic>), AdminError> {
        // Never auto-create: describing a topic that is not there must not make it (Kafka's
        // default auto.create.topics.enable is true, and the codec's default asks for it).
        let request = MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(Some(vec![
                MetadataRequestTopic::default().with_name(Some(topic_name(topic)))
            ]));
        let metadata = self.client.metadata(&request).await?;
        let brokers: Vec<Broker> = metadata
            .brokers
            .iter()
            .map(|b| Broker {
                id: b.node_id.0,
                rack: b.rack.as_ref().map(|r| r.to_string()),
            })
            .collect();
        let Some(t) = metadata.topics.first() else {
            return Ok((brokers, None));
        };
        // UNKNOWN_TOPIC_OR_PARTITION: it does not exist (Metadata v4+ does not create it).
        if t.error_code == 3 {
            return Ok((brokers, None));
        }
        if let Some(e) = AdminError::kafka(t.error_code, None) {
            return Err(e);
        }
        let mut partitions: Vec<(i32, Vec<i32>)> = t
            .partitions
            .iter()
            .map(|p| {
                (
                    p.partition_index,
                    p.replica_nodes.iter().map(|r| r.0).collect(),
                )
            })
            .collect();
        partitions.sort_by_key(|(i, _)| *i);
        let node = self.any_broker(&brokers)?;
        let configs = self.topic_configs(node, topic).await?;
        let indexes: Vec<i32> = partitions.iter().map(|(i, _)| *i).collect();
        let reassigning = self.reassigning(node, topic, indexes).await?;
        Ok((
            brokers,
            Some(ObservedTopic {
                topic_id: encode_topic_id(&t.topic_id),
                partitions: partitions.into_iter().map(|(_, r)| r).collect(),
                configs,
                reassigning,
            }),
        ))
    }

    fn any_broker(&self, brokers: &[Broker]) -> Result<i32, AdminError> {
        brokers.first().map(|b| b.id).ok_or(AdminError::NoBrokers)
    }

    async fn first_broker(&self) -> Result<i32, AdminError> {
        let metadata = self
            .client
            .metadata(&MetadataRequest::default().with_topics(Some(Vec::new())))
            .await?;
        metadata
            .brokers
            .first()
            .map(|b| b.node_id.0)
            .ok_or(AdminError::NoBrokers)
    }

    /// Configs set on the topic itself.
    async fn topic_configs(
        &self,
        node: i32,
        topic: &str,
    ) -> Result<BTreeMap<String, String>, AdminError> {
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(text(topic)),
        ]);
        let response = self.client.send(node, &request).await?;
        let mut configs = BTreeMap::new();
        for result in &response.results {
            if let Some(e) = AdminError::kafka(result.error_code, result.error_message.as_ref()) {
                return Err(e);
            }
            for c in &result.configs {
                if c.config_source == DYNAMIC_TOPIC_CONFIG {
                    if let Some(v) = &c.value {
                        configs.insert(c.name.to_string(), v.to_string());
                    }
                }
            }
        }
        Ok(configs)
    }

    /// Partitions of `topic` being reassigned now.
    async fn reassigning(
        &self,
        node: i32,
        topic: &str,
        partitions: Vec<i32>,
    ) -> Result<BTreeSet<i32>, AdminError> {
        let request = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(OPERATION_TIMEOUT_MS)
            .with_topics(Some(vec![ListPartitionReassignmentsTopics::default()
                .with_name(topic_name(topic))
                .with_partition_indexes(partitions)]));
        let response = self.client.send(node, &request).await?;
        if let Some(e) = AdminError::kafka(response.error_code, response.error_message.as_ref()) {
            return Err(e);
        }
        Ok(response
            .topics
            .iter()
            .filter(|t| t.name.0.as_str() == topic)
            .flat_map(|t| t.partitions.iter().map(|p| p.partition_index))
            .collect())
    }

    /// CreateTopics; returns the new topic's id. `None` counts take the cluster defaults.
    pub async fn create(
        &self,
        topic: &str,
        partitions: Option<i32>,
        replicas: Option<i32>,
        configs: &BTreeMap<String, String>,
    ) -> Result<String, AdminError> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(OPERATION_TIMEOUT_MS)
            .with_topics(vec![CreatableTopic::default()
                .with_name(topic_name(topic))
                .with_num_partitions(partitions.unwrap_or(-1))
                .with_replication_factor(replicas.map_or(-1, |r| r as i16))
                .with_configs(
                    configs
                        .iter()
                        .map(|(k, v)| {
                            CreatableTopicConfig::default()
                                .with_name(text(k))
                                .with_value(Some(text(v)))
                        })
                        .collect(),
                )]);
        let node = self.first_broker().await?;
        let response = self.client.send(node, &request).await?;
        let result = response.topics.first().ok_or_else(|| AdminError::Kafka {
            reason: "EmptyResponse".into(),
            message: "CreateTopics answered without the topic".into(),
        })?;
        // TOPIC_ALREADY_EXISTS: created meanwhile (another pass, or by hand); the next pass
        // reconciles it like any existing topic.
        if result.error_code != 36 {
            if let Some(e) = AdminError::kafka(result.error_code, result.error_message.as_ref()) {
                return Err(e);
            }
        }
        Ok(encode_topic_id(&result.topic_id))
    }

    /// CreatePartitions up to `count`.
    pub async fn raise_partitions(&self, topic: &str, count: i32) -> Result<(), AdminError> {
        let request = CreatePartitionsRequest::default()
            .with_timeout_ms(OPERATION_TIMEOUT_MS)
            .with_topics(vec![CreatePartitionsTopic::default()
                .with_name(topic_name(topic))
                .with_count(count)
                .with_assignments(None)]);
        let node = self.first_broker().await?;
        let response = self.client.send(node, &request).await?;
        for r in &response.results {
            if let Some(e) = AdminError::kafka(r.error_code, r.error_message.as_ref()) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// IncrementalAlterConfigs: SET `set`, DELETE `delete`, in one request (Kafka applies a
    /// resource's changes all or nothing).
    pub async fn alter_configs(
        &self,
        topic: &str,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<(), AdminError> {
        let mut configs: Vec<AlterableConfig> = set
            .iter()
            .map(|(k, v)| {
                AlterableConfig::default()
                    .with_name(text(k))
                    .with_config_operation(OP_SET)
                    .with_value(Some(text(v)))
            })
            .collect();
        configs.extend(delete.iter().map(|k| {
            AlterableConfig::default()
                .with_name(text(k))
                .with_config_operation(OP_DELETE)
                .with_value(None)
        }));
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(TOPIC_RESOURCE)
                .with_resource_name(text(topic))
                .with_configs(configs),
        ]);
        let node = self.first_broker().await?;
        let response = self.client.send(node, &request).await?;
        for r in &response.responses {
            if let Some(e) = AdminError::kafka(r.error_code, r.error_message.as_ref()) {
                return Err(e);
            }
        }
        Ok(())
    }

    /// AlterPartitionReassignments to `assignments` (`(partition, replicas)`).
    pub async fn reassign(
        &self,
        topic: &str,
        assignments: &[(i32, Vec<i32>)],
    ) -> Result<(), AdminError> {
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(OPERATION_TIMEOUT_MS)
            .with_topics(vec![ReassignableTopic::default()
                .with_name(topic_name(topic))
                .with_partitions(
                    assignments
                        .iter()
                        .map(|(p, r)| {
                            ReassignablePartition::default()
                                .with_partition_index(*p)
                                .with_replicas(Some(r.iter().map(|&id| BrokerId(id)).collect()))
                        })
                        .collect(),
                )]);
        let node = self.first_broker().await?;
        let response = self.client.send(node, &request).await?;
        if let Some(e) = AdminError::kafka(response.error_code, response.error_message.as_ref()) {
            return Err(e);
        }
        for t in &response.responses {
            for p in &t.partitions {
                if let Some(e) = AdminError::kafka(p.error_code, p.error_message.as_ref()) {
                    return Err(e);
                }
            }
        }
        Ok(())
    }

    /// DeleteTopics; a topic that is already gone is not an error.
    pub async fn delete(&self, topic: &str) -> Result<(), AdminError> {
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(OPERATION_TIMEOUT_MS)
            .with_topic_names(vec![topic_name(topic)])
            .with_topics(vec![
                DeleteTopicState::default().with_name(Some(topic_name(topic)))
            ]);
        let node = self.first_broker().await?;
        let response = self.client.send(node, &request).await?;
        for r in &response.responses {
            if r.error_code == 3 {
                continue; // UNKNOWN_TOPIC_OR_PARTITION: already gone
            }
            if let Some(e) = AdminError::kafka(r.error_code, r.error_message.as_ref()) {
                return Err(e);
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn topic_ids_print_as_kafka_prints_them() {
        // Kafka's Uuid.toString of these bytes (URL-safe base64, no padding).
        let id = uuid::Uuid::from_u128(0x0123_4567_89ab_cdef_fedc_ba98_7654_3210);
        assert_eq!(encode_topic_id(&id), "ASNFZ4mrze_-3LqYdlQyEA");
    }
}
