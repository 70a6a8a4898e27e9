//! What the brokers say about their cluster, and the few admin requests the operator sends
//! them: Metadata without topics (cluster id, registered brokers, as `kcat -L` asks),
//! DescribeQuorum (the active controller, as `kafka-metadata-quorum.sh describe --status` asks:
//! Metadata's controller id is a live broker in KRaft, not the active controller),
//! Metadata of every topic with each topic's effective `min.insync.replicas` (DescribeConfigs),
//! for the roll planner, and the cluster-wide dynamic broker defaults (DescribeConfigs and
//! IncrementalAlterConfigs on the broker resource `""`, as `kafka-configs.sh --entity-type
//! brokers --entity-default` sends them), and for the rebalance the replica assignment
//! (Metadata), reassignments in progress (ListPartitionReassignments), new assignments
//! (AlterPartitionReassignments, as `kafka-reassign-partitions.sh --execute`) and preferred
//! leader elections (ElectLeaders, as `kafka-leader-election.sh --election-type preferred`).

use std::collections::{BTreeMap, HashMap};
use std::time::Duration;

use oxbow_client::kafka_protocol::messages::add_raft_voter_request;
use oxbow_client::kafka_protocol::messages::alter_partition_reassignments_request::{
    ReassignablePartition, ReassignableTopic,
};
use oxbow_client::kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use oxbow_client::kafka_protocol::messages::describe_quorum_request::{PartitionData, TopicData};
use oxbow_client::kafka_protocol::messages::describe_quorum_response::ReplicaState;
use oxbow_client::kafka_protocol::messages::elect_leaders_request::TopicPartitions;
use oxbow_client::kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use oxbow_client::kafka_protocol::messages::{
    AddRaftVoterRequest, AlterPartitionReassignmentsRequest, BrokerId, DescribeConfigsRequest,
    DescribeQuorumRequest, ElectLeadersRequest, IncrementalAlterConfigsRequest,
    ListPartitionReassignmentsRequest, MetadataRequest, RemoveRaftVoterRequest, TopicName,
};
use oxbow_client::kafka_protocol::protocol::StrBytes;
use oxbow_client::{Client, ConnectionConfig};

use crate::quorum::{QuorumReplica, QuorumView};
use crate::rebalance::Assignment;
use crate::roll::PartitionState;

/// Kafka's ConfigResource type of a topic.
const RESOURCE_TOPIC: i8 = 2;
/// Kafka's ConfigResource type of a broker (name `""`: the cluster-wide default).
const RESOURCE_BROKER: i8 = 4;
/// DescribeConfigs' source of a cluster-wide dynamic broker default.
const SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG: i8 = 3;
/// ElectLeaders' election type PREFERRED.
const ELECTION_PREFERRED: i8 = 0;
/// ElectLeaders' ELECTION_NOT_NEEDED: the preferred replica leads already.
const ELECTION_NOT_NEEDED: i16 = 84;
/// How long the controller may take over a reassignment or an election before it answers.
const ADMIN_TIMEOUT_MS: i32 = 4_000;
/// How long the active controller may take to catch a new voter up and commit a voter change
/// before it answers REQUEST_TIMED_OUT (the pass after tries again).
const VOTER_CHANGE_TIMEOUT_MS: i32 = 4_000;
/// IncrementalAlterConfigs' operations.
const OP_SET: i8 = 0;
const OP_DELETE: i8 = 1;

/// Why a probe got no usable answer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No broker answered, or the answer could not be read.
    #[error(transparent)]
    Client(#[from] oxbow_client::Error),
    /// A broker answered with a Kafka error code.
    #[error("{what}: Kafka error {code}{}", message.as_deref().map(|m| format!(" ({m})")).unwrap_or_default())]
    Kafka {
        /// The request and resource.
        what: String,
        /// Kafka's error code.
        code: i16,
        /// The broker's message, if any.
        message: Option<String>,
    },
    /// Metadata listed no broker to send the request to.
    #[error("the cluster's Metadata lists no broker")]
    NoBroker,
}

/// Each registered broker's `broker.rack` (`None` when it has none), by node id.
pub type Racks = BTreeMap<i32, Option<String>>;

/// The cluster as one broker described it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// The cluster id; `None` if the broker did not send one.
    pub cluster_id: Option<String>,
    /// The metadata quorum's leader (the active controller) as DescribeQuorum names it; `None`
    /// while there is none (-1) or if the broker did not answer it.
    pub controller_id: Option<i32>,
    /// Node ids of the registered brokers, sorted.
    pub brokers: Vec<i32>,
    /// The metadata quorum's voters and observers, when DescribeQuorum named a leader.
    pub quorum: Option<QuorumView>,
}

/// One change of a cluster-wide dynamic broker default.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigChange {
    /// Set `key` to `value`.
    Set(String, String),
    /// Remove `key`: brokers fall back to their `server.properties` (or Kafka's default).
    Delete(String),
}

/// The changes that turn the cluster-wide dynamic defaults `current` into `desired`, in key
/// order: keys set to another value or missing are set, keys not desired are deleted (the
/// operator owns the cluster-wide defaults, as Strimzi owns its brokers' dynamic configs: a
/// `kafka-configs.sh --entity-default` change outside the KafkaCluster is undone).
pub fn config_changes(
    current: &BTreeMap<String, String>,
    desired: &BTreeMap<String, String>,
) -> Vec<ConfigChange> {
    let mut changes: Vec<ConfigChange> = desired
        .iter()
        .filter(|(k, v)| current.get(*k) != Some(*v))
        .map(|(k, v)| ConfigChange::Set(k.clone(), v.clone()))
        .collect();
    changes.extend(
        current
            .keys()
            .filter(|k| !desired.contains_key(*k))
            .map(|k| ConfigChange::Delete(k.clone())),
    );
    changes.sort_by(|a, b| change_key(a).cmp(change_key(b)));
    changes
}

fn change_key(c: &ConfigChange) -> &str {
    match c {
        ConfigChange::Set(k, _) | ConfigChange::Delete(k) => k,
    }
}

impl std::fmt::Display for ConfigChange {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            ConfigChange::Set(k, v) => write!(f, "{k}={v}"),
            ConfigChange::Delete(k) => write!(f, "{k} removed"),
        }
    }
}

/// Talks to the brokers at `host:port` addresses (tried in order). Short timeouts: a broker
/// that does not answer within seconds is not ready, and the reconciler asks again at its
/// next pass.
pub struct Probe {
    client: Client,
}

impl Probe {
    /// A probe of the brokers at `addresses`; nothing is connected until the first request.
    pub fn new(addresses: &[String]) -> Probe {
        let config = ConnectionConfig {
            client_id: Some("oxbow-operator".to_string()),
            request_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(3),
            ..ConnectionConfig::default()
        };
        Probe {
            client: Client::new(addresses.iter().cloned(), config),
        }
    }

    /// Metadata without topics, then DescribeQuorum to the first broker listed.
    pub async fn cluster(&self) -> Result<ClusterView, Error> {
        // An empty topic list (not null) asks for no topics; version 1+ carries the controller id.
        let request = MetadataRequest::default().with_topics(Some(Vec::new()));
        let response = self.client.metadata(&request).await?;
        let mut brokers: Vec<i32> = response.brokers.iter().map(|b| b.node_id.0).collect();
        brokers.sort_unstable();
        let quorum = DescribeQuorumRequest::default().with_topics(vec![TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
            .with_partitions(vec![PartitionData::default().with_partition_index(0)])]);
        let mut controller_id = None;
        let mut quorum_view = None;
        if let Some(&broker) = brokers.first() {
            let answer = self.client.send(broker, &quorum).await?;
            let partition = answer
                .topics
                .first()
                .and_then(|t| t.partitions.first())
                .filter(|p| p.error_code == 0 && p.leader_id.0 >= 0);
            if let Some(p) = partition {
                controller_id = Some(p.leader_id.0);
                let replicas = |states: &[ReplicaState]| {
                    states
                        .iter()
                        .map(|r| QuorumReplica {
                            id: r.replica_id.0,
                            log_end_offset: r.log_end_offset,
                        })
                        .collect()
                };
                quorum_view = Some(QuorumView {
                    leader: p.leader_id.0,
                    high_watermark: p.high_watermark,
                    voters: replicas(&p.current_voters),
                    observers: replicas(&p.observers),
                });
            }
        }
        Ok(ClusterView {
            cluster_id: response.cluster_id.as_ref().map(|s| s.to_string()),
            controller_id,
            brokers,
            quorum: quorum_view,
        })
    }

    /// AddRaftVoter for node `id`, reachable on its CONTROLLER listener at `host:port` (as
    /// `kafka-metadata-quorum.sh add-controller` sends it). Kafka's voters carry the directory
    /// id of their metadata log dir; Oxbow's keep none and only check that one is given, so a
    /// fresh one is sent. Any broker takes it and the active controller carries it out; the
    /// answer comes once the change is committed or refused.
    pub async fn add_voter(
        &self,
        cluster_id: Option<&str>,
        id: i32,
        host: &str,
        port: u16,
    ) -> Result<(), Error> {
        let request = AddRaftVoterRequest::default()
            .with_cluster_id(cluster_id.map(|c| StrBytes::from_string(c.to_string())))
            .with_timeout_ms(VOTER_CHANGE_TIMEOUT_MS)
            .with_voter_id(id)
            .with_voter_directory_id(uuid::Uuid::new_v4())
            .with_listeners(vec![add_raft_voter_request::Listener::default()
                .with_name(StrBytes::from_static_str("CONTROLLER"))
                .with_host(StrBytes::from_string(host.to_string()))
                .with_port(port)]);
        let broker = self.any_broker().await?;
        let answer = self.client.send(broker, &request).await?;
        kafka_error(
            format!("AddRaftVoter {id}"),
            answer.error_code,
            answer.error_message.as_ref().map(|m| m.to_string()),
        )
    }

    /// RemoveRaftVoter for node `id` (as `kafka-metadata-quorum.sh remove-controller` sends
    /// it; Oxbow's voters are named by their node id alone, see [`Probe::add_voter`]).
    pub async fn remove_voter(&self, cluster_id: Option<&str>, id: i32) -> Result<(), Error> {
        let request = RemoveRaftVoterRequest::default()
            .with_cluster_id(cluster_id.map(|c| StrBytes::from_string(c.to_string())))
            .with_voter_id(id)
            .with_voter_directory_id(uuid::Uuid::new_v4());
        let broker = self.any_broker().await?;
        let answer = self.client.send(broker, &request).await?;
        kafka_error(
            format!("RemoveRaftVoter {id}"),
            answer.error_code,
            answer.error_message.as_ref().map(|m| m.to_string()),
        )
    }

    /// Every partition of every topic (internal ones included: `__consumer_offsets` matters
    /// as much as users' topics) with its replicas, ISR and the topic's effective
    /// `min.insync.replicas`, sorted by topic and partition. A topic whose Metadata or configs
    /// come with an error fails the whole answer: the roll must not go on a partial view.
    pub async fn partitions(&self) -> Result<Vec<PartitionState>, Error> {
        let response = self
            .client
            .metadata(&MetadataRequest::default().with_topics(None))
            .await?;
        let broker = first_broker(&response.brokers)?;
        let mut topics = Vec::new();
        for t in &response.topics {
            let name = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            if t.error_code != 0 {
                return Err(Error::Kafka {
                    what: format!("Metadata of topic {name}"),
                    code: t.error_code,
                    message: None,
                });
            }
            topics.push((name, t));
        }
        if topics.is_empty() {
            return Ok(Vec::new());
        }
        let request = DescribeConfigsRequest::default().with_resources(
            topics
                .iter()
                .map(|(name, _)| {
                    DescribeConfigsResource::default()
                        .with_resource_type(RESOURCE_TOPIC)
                        .with_resource_name(StrBytes::from_string(name.clone()))
                        .with_configuration_keys(Some(vec![StrBytes::from_static_str(
                            "min.insync.replicas",
                        )]))
                })
                .collect(),
        );
        let answer = self.client.send(broker, &request).await?;
        let mut min_isr: HashMap<String, i32> = HashMap::new();
        for r in &answer.results {
            let name = r.resource_name.to_string();
            if r.error_code != 0 {
                return Err(Error::Kafka {
                    what: format!("DescribeConfigs of topic {name}"),
                    code: r.error_code,
                    message: r.error_message.as_ref().map(|m| m.to_string()),
                });
            }
            let value = r
                .configs
                .iter()
                .find(|c| c.name.as_str() == "min.insync.replicas")
                .and_then(|c| c.value.as_ref())
                .and_then(|v| v.as_str().parse::<i32>().ok());
            if let Some(v) = value {
                min_isr.insert(name, v);
            }
        }
        let mut partitions = Vec::new();
        for (name, t) in topics {
            // Kafka's broker default applies when a topic's answer lacks it.
            let min = min_isr.get(&name).copied().unwrap_or(1);
            for p in &t.partitions {
                partitions.push(PartitionState {
                    name: format!("{name}-{}", p.partition_index),
                    replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    isr: p.isr_nodes.iter().map(|b| b.0).collect(),
                    min_insync_replicas: min,
                });
            }
        }
        partitions.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(partitions)
    }

    /// The cluster-wide dynamic broker defaults (broker resource `""`).
    pub async fn dynamic_defaults(&self) -> Result<BTreeMap<String, String>, Error> {
        let broker = self.any_broker().await?;
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(RESOURCE_BROKER)
                .with_resource_name(StrBytes::from_static_str(""))
                .with_configuration_keys(None),
        ]);
        let answer = self.client.send(broker, &request).await?;
        let mut configs = BTreeMap::new();
        for r in &answer.results {
            if r.error_code != 0 {
                return Err(Error::Kafka {
                    what: "DescribeConfigs of the cluster-wide broker defaults".into(),
                    code: r.error_code,
                    message: r.error_message.as_ref().map(|m| m.to_string()),
                });
            }
            for c in &r.configs {
                // Only the dynamic defaults themselves; a broker may describe more.
                if c.config_source != SOURCE_DYNAMIC_DEFAULT_BROKER_CONFIG {
                    continue;
                }
                if let Some(v) = &c.value {
                    configs.insert(c.name.to_string(), v.to_string());
                }
            }
        }
        Ok(configs)
    }

    /// Applies `changes` to the cluster-wide dynamic broker defaults in one
    /// IncrementalAlterConfigs.
    pub async fn alter_dynamic_defaults(&self, changes: &[ConfigChange]) -> Result<(), Error> {
        let broker = self.any_broker().await?;
        let configs = changes
            .iter()
            .map(|c| match c {
                ConfigChange::Set(k, v) => AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(OP_SET)
                    .with_value(Some(StrBytes::from_string(v.clone()))),
                ConfigChange::Delete(k) => AlterableConfig::default()
                    .with_name(StrBytes::from_string(k.clone()))
                    .with_config_operation(OP_DELETE)
                    .with_value(None),
            })
            .collect();
        let request = IncrementalAlterConfigsRequest::default().with_resources(vec![
            AlterConfigsResource::default()
                .with_resource_type(RESOURCE_BROKER)
                .with_resource_name(StrBytes::from_static_str(""))
                .with_configs(configs),
        ]);
        let answer = self.client.send(broker, &request).await?;
        for r in &answer.responses {
            if r.error_code != 0 {
                return Err(Error::Kafka {
                    what: "IncrementalAlterConfigs of the cluster-wide broker defaults".into(),
                    code: r.error_code,
                    message: r.error_message.as_ref().map(|m| m.to_string()),
                });
            }
        }
        Ok(())
    }

    /// Every partition's replicas (preferred leader first) and current leader, sorted by topic
    /// and partition, and each registered broker's rack, from one Metadata of every topic.
    pub async fn assignment(&self) -> Result<(Vec<(Assignment, i32)>, Racks), Error> {
        let response = self
            .client
            .metadata(&MetadataRequest::default().with_topics(None))
            .await?;
        let racks: Racks = response
            .brokers
            .iter()
            .map(|b| (b.node_id.0, b.rack.as_ref().map(|r| r.to_string())))
            .collect();
        let mut all = Vec::new();
        for t in &response.topics {
            let topic = t.name.as_ref().map(|n| n.0.to_string()).unwrap_or_default();
            if t.error_code != 0 {
                return Err(Error::Kafka {
                    what: format!("Metadata of topic {topic}"),
                    code: t.error_code,
                    message: None,
                });
            }
            for p in &t.partitions {
                all.push((
                    Assignment {
                        topic: topic.clone(),
                        partition: p.partition_index,
                        replicas: p.replica_nodes.iter().map(|b| b.0).collect(),
                    },
                    p.leader_id.0,
                ));
            }
        }
        all.sort_by(|(a, _), (b, _)| (&a.topic, a.partition).cmp(&(&b.topic, b.partition)));
        Ok((all, racks))
    }

    /// How many partition reassignments are in progress (anyone's: the KafkaTopic operator's,
    /// `kafka-reassign-partitions.sh`'s or this operator's).
    pub async fn reassignments_in_progress(&self) -> Result<usize, Error> {
        let broker = self.any_broker().await?;
        let request = ListPartitionReassignmentsRequest::default()
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_topics(None);
        let answer = self.client.send(broker, &request).await?;
        if answer.error_code != 0 {
            return Err(Error::Kafka {
                what: "ListPartitionReassignments".into(),
                code: answer.error_code,
                message: answer.error_message.as_ref().map(|m| m.to_string()),
            });
        }
        Ok(answer.topics.iter().map(|t| t.partitions.len()).sum())
    }

    /// Starts the reassignment of every partition of `moves` to its replica list in one
    /// AlterPartitionReassignments; any partition refused fails the call.
    pub async fn reassign(&self, moves: &[Assignment]) -> Result<(), Error> {
        let broker = self.any_broker().await?;
        let mut topics: BTreeMap<&str, Vec<ReassignablePartition>> = BTreeMap::new();
        for m in moves {
            topics.entry(&m.topic).or_default().push(
                ReassignablePartition::default()
                    .with_partition_index(m.partition)
                    .with_replicas(Some(m.replicas.iter().map(|&b| BrokerId(b)).collect())),
            );
        }
        let request = AlterPartitionReassignmentsRequest::default()
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_topics(
                topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        ReassignableTopic::default()
                            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
                            .with_partitions(partitions)
                    })
                    .collect(),
            );
        let answer = self.client.send(broker, &request).await?;
        if answer.error_code != 0 {
            return Err(Error::Kafka {
                what: "AlterPartitionReassignments".into(),
                code: answer.error_code,
                message: answer.error_message.as_ref().map(|m| m.to_string()),
            });
        }
        for t in &answer.responses {
            for p in &t.partitions {
                if p.error_code != 0 {
                    return Err(Error::Kafka {
                        what: format!(
                            "AlterPartitionReassignments of {}-{}",
                            t.name.0, p.partition_index
                        ),
                        code: p.error_code,
                        message: p.error_message.as_ref().map(|m| m.to_string()),
                    });
                }
            }
        }
        Ok(())
    }

    /// Makes each of `partitions` (`(topic, partition)`) led by its preferred replica (the
    /// first) with one ElectLeaders; one already led by it is not an error.
    pub async fn elect_preferred_leaders(&self, partitions: &[(String, i32)]) -> Result<(), Error> {
        let broker = self.any_broker().await?;
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for (topic, partition) in partitions {
            topics.entry(topic).or_default().push(*partition);
        }
        let request = ElectLeadersRequest::default()
            .with_election_type(ELECTION_PREFERRED)
            .with_timeout_ms(ADMIN_TIMEOUT_MS)
            .with_topic_partitions(Some(
                topics
                    .into_iter()
                    .map(|(topic, partitions)| {
                        TopicPartitions::default()
                            .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                            .with_partitions(partitions)
                    })
                    .collect(),
            ));
        let answer = self.client.send(broker, &request).await?;
        if answer.error_code != 0 {
            return Err(Error::Kafka {
                what: "ElectLeaders".into(),
                code: answer.error_code,
                message: None,
            });
        }
        for t in &answer.replica_election_results {
            for p in &t.partition_result {
                if p.error_code != 0 && p.error_code != ELECTION_NOT_NEEDED {
                    return Err(Error::Kafka {
                        what: format!("ElectLeaders of {}-{}", t.topic.0, p.partition_id),
                        code: p.error_code,
                        message: p.error_message.as_ref().map(|m| m.to_string()),
                    });
                }
            }
        }
        Ok(())
    }

    async fn any_broker(&self) -> Result<i32, Error> {
        let response = self
            .client
            .metadata(&MetadataRequest::default().with_topics(Some(Vec::new())))
            .await?;
        first_broker(&response.brokers)
    }
}

fn first_broker(
    brokers: &[oxbow_client::kafka_protocol::messages::metadata_response::MetadataResponseBroker],
) -> Result<i32, Error> {
    brokers
        .iter()
        .map(|b| b.node_id.0)
        .min()
        .ok_or(Error::NoBroker)
}

/// `Ok` for error code 0, else the Kafka error of `what`.
fn kafka_error(what: String, code: i16, message: Option<String>) -> Result<(), Error> {
    if code == 0 {
        Ok(())
    } else {
        Err(Error::Kafka {
            what,
            code,
            message,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn changes_set_what_differs_and_delete_what_is_no_longer_asked_for() {
        let current = map(&[
            ("log.retention.ms", "1000"),
            ("message.max.bytes", "2000000"),
            ("min.insync.replicas", "2"),
        ]);
        let desired = map(&[
            ("log.retention.ms", "2000"),
            ("min.insync.replicas", "2"),
            ("num.io.threads", "9"),
        ]);
        assert_eq!(
            config_changes(&current, &desired),
            vec![
                ConfigChange::Set("log.retention.ms".into(), "2000".into()),
                ConfigChange::Delete("message.max.bytes".into()),
                ConfigChange::Set("num.io.threads".into(), "9".into()),
            ]
        );
        assert!(config_changes(&desired, &desired).is_empty());
        assert_eq!(
            config_changes(&current, &desired)[1].to_string(),
            "message.max.bytes removed"
        );
    }
}
