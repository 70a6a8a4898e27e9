//! Kafka admin calls the topic controller needs, over one [`oxbow_client::Client`] per
//! cluster (its connections are cached and reused by every KafkaTopic of that cluster).
//!
//! Requests go to any live broker: in KRaft every broker forwards topic administration to
//! the active controller, so the first broker Metadata lists serves as well as any.
//!
//! [`Admin::describe`], [`Admin::create`] and [`Admin::delete`] are what every pass (and a
//! resync of hundreds of topics) calls: they go through a [`Batcher`] each, so the calls of
//! concurrent passes become one Metadata + one DescribeConfigs + one
//! ListPartitionReassignments, one CreateTopics, one DeleteTopics for many topics. Changes
//! to one topic's partitions, configs or replicas stay one request per topic: they follow
//! edits, which come one at a time.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::Arc;
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

use super::batch::{Batcher, Keyed};
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
    /// The request that carried this call with others failed as a whole (the connection
    /// broke, ...): every call of the batch gets the same failure.
    #[error("{0}")]
    Batch(Arc<AdminError>),
    /// The task that sends batched calls is gone (the runtime is shutting down).
    #[error("the admin request queue has stopped")]
    Stopped,
}

impl AdminError {
    /// This failure of a whole batch, once for each of its `n` calls: Kafka's refusals keep
    /// their reason (the controller reports them in a condition), the rest is shared.
    fn fan_out(self, n: usize) -> Vec<AdminError> {
        match self {
            AdminError::Kafka { reason, message } => (0..n)
                .map(|_| AdminError::Kafka {
                    reason: reason.clone(),
                    message: message.clone(),
                })
                .collect(),
            AdminError::NoBrokers => (0..n).map(|_| AdminError::NoBrokers).collect(),
            other => {
                let shared = Arc::new(other);
                (0..n).map(|_| AdminError::Batch(shared.clone())).collect()
            }
        }
    }

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

/// The brokers and a topic as Kafka describes it (`None`: it does not exist).
pub type Described = (Vec<Broker>, Option<ObservedTopic>);

/// A topic to create: name, partitions and replicas (`None` takes the cluster's defaults),
/// configs.
pub struct NewTopic {
    name: String,
    partitions: Option<i32>,
    replicas: Option<i32>,
    configs: BTreeMap<String, String>,
}

impl Keyed for NewTopic {
    fn key(&self) -> &str {
        &self.name
    }
}

/// A cluster's admin side.
pub struct Admin {
    requests: Arc<Requests>,
    describe: Batcher<String, Result<Described, AdminError>>,
    create: Batcher<NewTopic, Result<String, AdminError>>,
    delete: Batcher<String, Result<(), AdminError>>,
}

/// The requests themselves, over the cluster's one client.
struct Requests {
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
    /// Spawns the batching tasks on the current Tokio runtime.
    pub fn new(bootstrap: &[String]) -> Admin {
        let config = ConnectionConfig {
            client_id: Some("oxbow-topic-operator".to_string()),
            request_timeout: Duration::from_secs(OPERATION_TIMEOUT_MS as u64 / 1000 + 10),
            connect_timeout: Duration::from_secs(3),
            ..ConnectionConfig::default()
        };
        let requests = Arc::new(Requests {
            client: Client::new(bootstrap.iter().cloned(), config),
        });
        let r = requests.clone();
        let describe = Batcher::spawn("describe", move |topics: Vec<String>| {
            let r = r.clone();
            async move { r.describe_many(topics).await }
        });
        let r = requests.clone();
        let create = Batcher::spawn("create", move |topics: Vec<NewTopic>| {
            let r = r.clone();
            async move { r.create_many(topics).await }
        });
        let r = requests.clone();
        let delete = Batcher::spawn("delete", move |topics: Vec<String>| {
            let r = r.clone();
            async move { r.delete_many(topics).await }
        });
        Admin {
            requests,
            describe,
            create,
            delete,
        }
    }

    /// The brokers, and `topic` as Kafka describes it (`None` if it does not exist).
    pub async fn describe(&self, topic: &str) -> Result<Described, AdminError> {
        self.describe
            .call(topic.to_string())
            .await
            .unwrap_or(Err(AdminError::Stopped))
    }

    /// CreateTopics; returns the new topic's id. `None` counts take the cluster defaults.
    pub async fn create(
        &self,
        topic: &str,
        partitions: Option<i32>,
        replicas: Option<i32>,
        configs: &BTreeMap<String, String>,
    ) -> Result<String, AdminError> {
        let new = NewTopic {
            name: topic.to_string(),
            partitions,
            replicas,
            configs: configs.clone(),
        };
        self.create
            .call(new)
            .await
            .unwrap_or(Err(AdminError::Stopped))
    }

    /// DeleteTopics; a topic that is already gone is not an error.
    pub async fn delete(&self, topic: &str) -> Result<(), AdminError> {
        self.delete
            .call(topic.to_string())
            .await
            .unwrap_or(Err(AdminError::Stopped))
    }

    /// CreatePartitions up to `count`.
    pub async fn raise_partitions(&self, topic: &str, count: i32) -> Result<(), AdminError> {
        self.requests.raise_partitions(topic, count).await
    }

    /// IncrementalAlterConfigs: SET `set`, DELETE `delete`, in one request (Kafka applies a
    /// resource's changes all or nothing).
    pub async fn alter_configs(
        &self,
        topic: &str,
        set: &BTreeMap<String, String>,
        delete: &[String],
    ) -> Result<(), AdminError> {
        self.requests.alter_configs(topic, set, delete).await
    }

    /// AlterPartitionReassignments to `assignments` (`(partition, replicas)`).
    pub async fn reassign(
        &self,
        topic: &str,
        assignments: &[(i32, Vec<i32>)],
    ) -> Result<(), AdminError> {
        self.requests.reassign(topic, assignments).await
    }
}

impl Requests {
    /// Describes `topics` with one Metadata, one DescribeConfigs and one
    /// ListPartitionReassignments; one answer per topic, in order.
    async fn describe_many(&self, topics: Vec<String>) -> Vec<Result<Described, AdminError>> {
        let n = topics.len();
        match self.try_describe_many(&topics).await {
            Ok(answers) => answers,
            Err(e) => e.fan_out(n).into_iter().map(Err).collect(),
        }
    }

    async fn try_describe_many(
        &self,
        topics: &[String],
    ) -> Result<Vec<Result<Described, AdminError>>, AdminError> {
        // Never auto-create: describing a topic that is not there must not make it (Kafka's
        // default auto.create.topics.enable is true, and the codec's default asks for it).
        let request = MetadataRequest::default()
            .with_allow_auto_topic_creation(false)
            .with_topics(Some(
                topics
                    .iter()
                    .map(|t| MetadataRequestTopic::default().with_name(Some(topic_name(t))))
                    .collect(),
            ));
        let metadata = self.client.metadata(&request).await?;
        let brokers: Vec<Broker> = metadata
            .brokers
            .iter()
            .map(|b| Broker {
                id: b.node_id.0,
                rack: b.rack.as_ref().map(|r| r.to_string()),
            })
            .collect();
        // Per topic: Err (Kafka refused to describe it), None (it does not exist), or its
        // partitions' replicas by index, with its id.
        type Found = Result<Option<(uuid::Uuid, Vec<(i32, Vec<i32>)>)>, AdminError>;
        let mut found: HashMap<String, Found> = HashMap::new();
        for t in &metadata.topics {
            let Some(name) = &t.name else { continue };
            // UNKNOWN_TOPIC_OR_PARTITION: it does not exist (Metadata v4+ does not create it).
            let entry = if t.error_code == 3 {
                Ok(None)
            } else if let Some(e) = AdminError::kafka(t.error_code, None) {
                Err(e)
            } else {
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
                Ok(Some((t.topic_id, partitions)))
            };
            found.insert(name.0.to_string(), entry);
        }
        let existing: Vec<(&str, Vec<i32>)> = topics
            .iter()
            .filter_map(|t| match found.get(t) {
                Some(Ok(Some((_, partitions)))) => {
                    Some((t.as_str(), partitions.iter().map(|(i, _)| *i).collect()))
                }
                _ => None,
            })
            .collect();
        let (mut configs, mut reassigning) = (HashMap::new(), HashMap::new());
        if !existing.is_empty() {
            let node = brokers.first().map(|b| b.id).ok_or(AdminError::NoBrokers)?;
            let names: Vec<&str> = existing.iter().map(|(t, _)| *t).collect();
            configs = self.topic_configs(node, &names).await?;
            reassigning = self.reassigning(node, &existing).await?;
        }
        Ok(topics
            .iter()
            .map(|t| match found.remove(t) {
                // Metadata answers every topic asked; one it left out is not there.
                None | Some(Ok(None)) => Ok((brokers.clone(), None)),
                Some(Err(e)) => Err(e),
                Some(Ok(Some((id, partitions)))) => {
                    let configs = configs.remove(t).unwrap_or_else(|| Ok(BTreeMap::new()))?;
                    Ok((
                        brokers.clone(),
                        Some(ObservedTopic {
                            topic_id: encode_topic_id(&id),
                            partitions: partitions.into_iter().map(|(_, r)| r).collect(),
                            configs,
                            reassigning: reassigning.remove(t).unwrap_or_default(),
                        }),
                    ))
                }
            })
            .collect())
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

    /// Configs set on each of `topics` itself (DYNAMIC_TOPIC_CONFIG), or Kafka's refusal to
    /// describe that topic.
    async fn topic_configs(
        &self,
        node: i32,
        topics: &[&str],
    ) -> Result<HashMap<String, Result<BTreeMap<String, String>, AdminError>>, AdminError> {
        let request = DescribeConfigsRequest::default().with_resources(
            topics
                .iter()
                .map(|t| {
                    DescribeConfigsResource::default()
                        .with_resource_type(TOPIC_RESOURCE)
                        .with_resource_name(text(t))
                })
                .collect(),
        );
        let response = self.client.send(node, &request).await?;
        let mut all = HashMap::new();
        for result in &response.results {
            let answer = match AdminError::kafka(result.error_code, result.error_message.as_ref()) {
                Some(e) => Err(e),
                None => Ok(result
                    .configs
                    .iter()
                    .filter(|c| c.config_source == DYNAMIC_TOPIC_CONFIG)
                    .filter_map(|c| Some((c.name.to_string(), c.value.as_ref()?.to_string())))
                    .collect()),
            };
            all.insert(result.resource_name.to_string(), answer);
        }
        Ok(all)
    }

    /// The partitions of each of `topics` (name, partition indexes) being reassigned now.
    async fn reassigning(
        &self,
        node: i32,
        topics: &[(&str, Vec<i32>)],
    ) -> Result<HashMap<String, BTreeSet<i32>>, AdminError> {
        let request = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(OPERATION_TIMEOUT_MS)
            .with_topics(Some(
                topics
                    .iter()
                    .map(|(t, partitions)| {
                        ListPartitionReassignmentsTopics::default()
                            .with_name(topic_name(t))
                            .with_partition_indexes(partitions.clone())
                    })
                    .collect(),
            ));
        let response = self.client.send(node, &request).await?;
        if let Some(e) = AdminError::kafka(response.error_code, response.error_message.as_ref()) {
            return Err(e);
        }
        let mut all: HashMap<String, BTreeSet<i32>> = HashMap::new();
        for t in &response.topics {
            all.entry(t.name.0.to_string())
                .or_default()
                .extend(t.partitions.iter().map(|p| p.partition_index));
        }
        Ok(all)
    }

    /// One CreateTopics for `topics`; each topic's id, or Kafka's refusal of that topic.
    async fn create_many(&self, topics: Vec<NewTopic>) -> Vec<Result<String, AdminError>> {
        let n = topics.len();
        match self.try_create_many(&topics).await {
            Ok(answers) => answers,
            Err(e) => e.fan_out(n).into_iter().map(Err).collect(),
        }
    }

    async fn try_create_many(
        &self,
        topics: &[NewTopic],
    ) -> Result<Vec<Result<String, AdminError>>, AdminError> {
        let request = CreateTopicsRequest::default()
            .with_timeout_ms(OPERATION_TIMEOUT_MS)
            .with_topics(
                topics
                    .iter()
                    .map(|t| {
                        CreatableTopic::default()
                            .with_name(topic_name(&t.name))
                            .with_num_partitions(t.partitions.unwrap_or(-1))
                            .with_replication_factor(t.replicas.map_or(-1, |r| r as i16))
                            .with_configs(
                                t.configs
                                    .iter()
                                    .map(|(k, v)| {
                                        CreatableTopicConfig::default()
                                            .with_name(text(k))
                                            .with_value(Some(text(v)))
                                    })
                                    .collect(),
                            )
                    })
                    .collect(),
            );
        let node = self.first_broker().await?;
        let response = self.client.send(node, &request).await?;
        let mut results: HashMap<String, Result<String, AdminError>> = response
            .topics
            .iter()
            .map(|r| {
                // TOPIC_ALREADY_EXISTS: created meanwhile (another pass, or by hand); the
                // next pass reconciles it like any existing topic.
                let answer = match AdminError::kafka(r.error_code, r.error_message.as_ref()) {
                    Some(e) if r.error_code != 36 => Err(e),
                    _ => Ok(encode_topic_id(&r.topic_id)),
                };
                (r.name.0.to_string(), answer)
            })
            .collect();
        Ok(topics
            .iter()
            .map(|t| {
                results.remove(&t.name).unwrap_or_else(|| {
                    Err(AdminError::Kafka {
                        reason: "EmptyResponse".into(),
                        message: format!("CreateTopics answered without topic '{}'", t.name),
                    })
                })
            })
            .collect())
    }

    /// One DeleteTopics for `topics`; a topic that is already gone is not an error.
    async fn delete_many(&self, topics: Vec<String>) -> Vec<Result<(), AdminError>> {
        let n = topics.len();
        match self.try_delete_many(&topics).await {
            Ok(answers) => answers,
            Err(e) => e.fan_out(n).into_iter().map(Err).collect(),
        }
    }

    async fn try_delete_many(
        &self,
        topics: &[String],
    ) -> Result<Vec<Result<(), AdminError>>, AdminError> {
        let request = DeleteTopicsRequest::default()
            .with_timeout_ms(OPERATION_TIMEOUT_MS)
            .with_topic_names(topics.iter().map(|t| topic_name(t)).collect())
            .with_topics(
                topics
                    .iter()
                    .map(|t| DeleteTopicState::default().with_name(Some(topic_name(t))))
                    .collect(),
            );
        let node = self.first_broker().await?;
        let response = self.client.send(node, &request).await?;
        let mut results: HashMap<String, Result<(), AdminError>> = HashMap::new();
        for r in &response.responses {
            let Some(name) = &r.name else { continue };
            // UNKNOWN_TOPIC_OR_PARTITION: already gone.
            let answer = match AdminError::kafka(r.error_code, r.error_message.as_ref()) {
                Some(e) if r.error_code != 3 => Err(e),
                _ => Ok(()),
            };
            results.insert(name.0.to_string(), answer);
        }
        Ok(topics
            .iter()
            .map(|t| results.remove(t).unwrap_or(Ok(())))
            .collect())
    }

    /// CreatePartitions up to `count`.
    async fn raise_partitions(&self, topic: &str, count: i32) -> Result<(), AdminError> {
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
    async fn alter_configs(
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
    async fn reassign(
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
