//! The controller: Kafka's `QuorumController` decisions as pure functions, and the service
//! that runs them on the active controller.
//!
//! A decision takes a request, the current [`MetadataImage`], the controller's soft state
//! ([`ControllerState`]: configuration and broker heartbeats) and the logical time `now_ms`,
//! and answers the [`MetadataRecord`]s to commit with the reply to send once they are
//! committed. Nothing in the pure parts does I/O or reads a clock, so every rule (placement,
//! elections, fencing, ISR changes, reassignment steps) is tested with plain asserts.
//!
//! - [`placement`]: where the replicas of new partitions go (even spread, racks).
//! - [`topics`]: CreateTopics, CreatePartitions, DeleteTopics and config changes.
//! - [`brokers`]: registration, heartbeats, session expiry, controlled shutdown.
//! - [`partitions`]: leader election, fencing's effect on partitions, AlterPartition,
//!   ElectLeaders and the automatic preferred-leader rebalance.
//! - [`reassignment`]: AlterPartitionReassignments / ListPartitionReassignments.
//! - [`service`]: [`Controller`], which decides one request at a time on the latest image,
//!   proposes the records and answers once they are committed.
//!
//! [`ControllerRequest`] and [`ControllerReply`] travel as JSON between nodes (the control
//! channel of the replicated cluster), so both are serde types.

pub mod brokers;
pub mod partitions;
pub mod placement;
pub mod reassignment;
pub mod service;
pub mod topics;

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use crate::metadata::{
    BrokerEndpoint, MetadataImage, MetadataRecord, PartitionState, QuorumInfo, TopicImage,
};

pub use brokers::{BrokerHeartbeat, BrokerHeartbeats, HeartbeatReply};
pub use partitions::{ElectionType, IsrMember};
pub use reassignment::OngoingReassignment;
pub use service::{decode_response, Controller, ControllerTimers};
pub use topics::NewTopic;

/// A Kafka-level refusal: the error code a client or broker sees, and Kafka's message.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, thiserror::Error)]
#[error("error code {code}: {}", message.as_deref().unwrap_or("(no message)"))]
pub struct ControllerError {
    /// Kafka's error code (`ResponseError::code`).
    pub code: i16,
    /// Kafka's message, when it sends one.
    pub message: Option<String>,
    /// For NOT_CONTROLLER: the active controller's node id, when known, so the caller can
    /// send the request there instead.
    #[serde(default)]
    pub active_controller: Option<i32>,
}

impl ControllerError {
    /// `error` with `message`.
    pub fn new(error: ResponseError, message: impl Into<String>) -> Self {
        ControllerError {
            code: error.code(),
            message: Some(message.into()),
            active_controller: None,
        }
    }

    /// `error` without a message (the client prints Kafka's default text for the code).
    pub fn code(error: ResponseError) -> Self {
        ControllerError {
            code: error.code(),
            message: None,
            active_controller: None,
        }
    }

    /// NOT_CONTROLLER naming the active controller, if known.
    pub fn not_controller(active_controller: Option<i32>) -> Self {
        ControllerError {
            code: ResponseError::NotController.code(),
            message: Some(match active_controller {
                Some(id) => format!("This node is not the active controller; node {id} is."),
                None => "This node is not the active controller, and no controller is known."
                    .to_string(),
            }),
            active_controller,
        }
    }

    /// Whether this is `error`.
    pub fn is(&self, error: ResponseError) -> bool {
        self.code == error.code()
    }
}

/// Result type of controller decisions.
pub type Result<T, E = ControllerError> = std::result::Result<T, E>;

/// The broker settings controller decisions depend on (Kafka's names; the cluster-wide
/// dynamic configs in the image override the static ones where Kafka allows it).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ControllerConfig {
    /// `num.partitions` (1): partitions of a topic created with -1.
    pub num_partitions: i32,
    /// `default.replication.factor` (1): replication factor of a topic created with -1.
    pub default_replication_factor: i16,
    /// `delete.topic.enable` (true).
    pub delete_topic_enable: bool,
    /// `unclean.leader.election.enable` (false): the default for topics without an
    /// override; the cluster-wide dynamic value in the image wins over it.
    pub unclean_leader_election_enable: bool,
    /// `broker.session.timeout.ms` (9000): a broker that has not heartbeated for longer is
    /// fenced.
    pub broker_session_timeout_ms: i64,
}

impl Default for ControllerConfig {
    fn default() -> Self {
        ControllerConfig {
            num_partitions: 1,
            default_replication_factor: 1,
            delete_topic_enable: true,
            unclean_leader_election_enable: false,
            broker_session_timeout_ms: 9000,
        }
    }
}

impl ControllerConfig {
    /// The settings a broker's configuration gives the controller.
    pub fn from_broker(config: &crate::config::BrokerConfig) -> Self {
        ControllerConfig {
            num_partitions: config.num_partitions,
            default_replication_factor: config.default_replication_factor,
            delete_topic_enable: config.delete_topic_enable,
            unclean_leader_election_enable: config.unclean_leader_election_enable,
            broker_session_timeout_ms: i64::from(config.broker_session_timeout_ms),
        }
    }

    /// Whether unclean leader election is enabled for `topic`: its
    /// `unclean.leader.election.enable` override, else the cluster-wide dynamic value, else
    /// the static broker value (Kafka's `uncleanLeaderElectionEnabledForTopic`).
    pub fn unclean_election_enabled(&self, image: &MetadataImage, topic: &TopicImage) -> bool {
        const KEY: &str = "unclean.leader.election.enable";
        let parse = |v: &String| v.trim().eq_ignore_ascii_case("true");
        if let Some(v) = topic.configs.get(KEY) {
            return parse(v);
        }
        match image.broker_configs.get("").and_then(|c| c.get(KEY)) {
            Some(v) => parse(v),
            None => self.unclean_leader_election_enable,
        }
    }
}

/// The active controller's soft state: not in the metadata log, rebuilt by a new active
/// controller (as Kafka's `BrokerHeartbeatManager` is).
#[derive(Debug, Clone, Default)]
pub struct ControllerState {
    /// The settings decisions use.
    pub config: ControllerConfig,
    /// Last contact and metadata offset per broker.
    pub heartbeats: BrokerHeartbeats,
}

impl ControllerState {
    /// A fresh state with `config`.
    pub fn new(config: ControllerConfig) -> Self {
        ControllerState {
            config,
            heartbeats: BrokerHeartbeats::default(),
        }
    }

    /// Tells the state at which metadata offset the records decided for `request` were
    /// committed: a registration's offset is what a broker must catch up to before it is
    /// unfenced; a controlled shutdown's is what every active broker must have replayed
    /// before the broker may exit.
    pub fn committed(&mut self, request: &ControllerRequest, reply: &ControllerReply, offset: i64) {
        match (request, reply) {
            (ControllerRequest::RegisterBroker { id, .. }, ControllerReply::Registered { .. }) => {
                self.heartbeats.registered_at(*id, offset);
            }
            (
                ControllerRequest::BrokerHeartbeat(hb),
                ControllerReply::Heartbeat(HeartbeatReply {
                    in_controlled_shutdown: true,
                    ..
                }),
            ) => self.heartbeats.controlled_shutdown_at(hb.id, offset),
            _ => {}
        }
    }
}

/// One partition named by topic and index, as admin requests name them.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
pub struct TopicPartitionName {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

/// One partition's target of AlterPartitionReassignments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReassignmentTarget {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// The new replicas, preferred leader first; `None` cancels an ongoing reassignment.
    pub replicas: Option<Vec<i32>>,
}

/// What brokers (and admin requests forwarded by brokers) ask the active controller.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerRequest {
    /// CreateTopics, one topic (auto-creation uses it too).
    CreateTopic {
        /// The topic as asked for.
        topic: NewTopic,
        /// Check only; commit nothing.
        validate_only: bool,
    },
    /// CreatePartitions, one topic.
    CreatePartitions {
        /// Topic name.
        topic: String,
        /// The new total partition count.
        count: i32,
        /// Manual replicas of each new partition, in index order.
        assignments: Option<Vec<Vec<i32>>>,
        /// Check only; commit nothing.
        validate_only: bool,
    },
    /// DeleteTopics, one topic.
    DeleteTopic {
        /// Topic name.
        name: String,
    },
    /// The complete set of a topic's config overrides (AlterConfigs /
    /// IncrementalAlterConfigs, after the broker computed the new set).
    AlterTopicConfigs {
        /// Topic name.
        topic: String,
        /// All overrides after the change.
        configs: BTreeMap<String, String>,
        /// Check only; commit nothing.
        validate_only: bool,
    },
    /// The complete set of a broker entity's dynamic configs (`""` = cluster default).
    AlterBrokerConfigs {
        /// `""` or a broker id.
        entity: String,
        /// All dynamic configs after the change.
        configs: BTreeMap<String, String>,
        /// Check only; commit nothing.
        validate_only: bool,
    },
    /// A block of producer ids for a broker (Kafka's AllocateProducerIds).
    AllocateProducerIds {
        /// The broker asking.
        broker_id: i32,
        /// Its broker epoch (STALE_BROKER_EPOCH if it is not the registered one).
        broker_epoch: i64,
        /// How many ids.
        count: i64,
    },
    /// BrokerRegistration: a broker (re)starts.
    RegisterBroker {
        /// `node.id`.
        id: i32,
        /// The cluster id the broker's `meta.properties` holds.
        cluster_id: String,
        /// Random per process start.
        incarnation_id: Uuid,
        /// `broker.rack`.
        rack: Option<String>,
        /// Advertised listeners.
        endpoints: Vec<BrokerEndpoint>,
    },
    /// BrokerHeartbeat.
    BrokerHeartbeat(BrokerHeartbeat),
    /// UnregisterBroker (`kafka-cluster.sh unregister`).
    UnregisterBroker {
        /// Node id.
        id: i32,
    },
    /// AlterPartition from a partition leader: a new ISR for one partition.
    AlterPartition {
        /// The leader asking.
        broker_id: i32,
        /// Its broker epoch.
        broker_epoch: i64,
        /// The topic's id.
        topic_id: Uuid,
        /// Partition index.
        partition: i32,
        /// The leader epoch the leader is in.
        leader_epoch: i32,
        /// The partition epoch the leader's view is based on.
        partition_epoch: i32,
        /// The ISR the leader wants, with each member's broker epoch (-1: unchecked).
        new_isr: Vec<IsrMember>,
    },
    /// ElectLeaders (`kafka-leader-election.sh`).
    ElectLeaders {
        /// PREFERRED or UNCLEAN.
        election_type: ElectionType,
        /// The partitions; `None` means every partition.
        partitions: Option<Vec<TopicPartitionName>>,
    },
    /// AlterPartitionReassignments (`kafka-reassign-partitions.sh --execute / --cancel`).
    AlterPartitionReassignments {
        /// One target per partition.
        targets: Vec<ReassignmentTarget>,
    },
    /// ListPartitionReassignments; answers from the image, commits nothing.
    ListPartitionReassignments {
        /// The partitions to look at; `None` means every partition.
        partitions: Option<Vec<TopicPartitionName>>,
    },
    /// DescribeQuorum: the metadata quorum as its leader sees it. Kafka's brokers forward
    /// it to the active controller, since only the leader knows every voter's log end
    /// offset and last fetch; answered from the quorum's state, commits nothing.
    DescribeQuorum,
    /// AddRaftVoter / RemoveRaftVoter (KIP-853, `kafka-metadata-quorum.sh add-controller` /
    /// `remove-controller`): carried out by the metadata store of the active controller,
    /// not decided on an image.
    ChangeVoters(crate::metadata::VoterChange),
}

/// The result of one partition of ElectLeaders or AlterPartitionReassignments.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionResult {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// `None` on success.
    pub error: Option<ControllerError>,
}

/// What the active controller answers once the decided records are committed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum ControllerReply {
    /// The request changed (or, validating only, would change) what was asked; nothing more
    /// to say.
    Done,
    /// The topic created (or, validating only, the topic that would be created).
    TopicCreated(TopicImage),
    /// The deleted topic's id.
    TopicDeleted {
        /// Its id.
        id: Uuid,
    },
    /// Producer ids `first .. first + count` are this broker's.
    ProducerIds {
        /// First id of the block.
        first: i64,
        /// Block size.
        count: i64,
    },
    /// The broker is registered with this epoch.
    Registered {
        /// Its broker epoch.
        broker_epoch: i64,
    },
    /// The answer to a heartbeat.
    Heartbeat(HeartbeatReply),
    /// The answer to AlterPartition: `error` is NONE (0), or NEW_LEADER_ELECTED when the ISR
    /// change completed a reassignment that moved leadership away; `state` is the
    /// partition's state after the change.
    AlterPartition {
        /// 0 or NEW_LEADER_ELECTED.
        error_code: i16,
        /// The partition's state after the change.
        state: PartitionState,
    },
    /// Per-partition results of ElectLeaders or AlterPartitionReassignments.
    Partitions(Vec<PartitionResult>),
    /// Ongoing reassignments.
    Reassignments(Vec<OngoingReassignment>),
    /// The metadata quorum as the active controller (its leader) sees it.
    Quorum(QuorumInfo),
}

/// Decides `request` on `image` at logical time `now_ms`: the records to commit (applied as
/// one batch) and the reply to give once they are committed. A refusal of the whole request
/// is an `Err` with Kafka's code and message; per-partition refusals are in the reply.
/// Heartbeats and registrations update `state`'s soft state (last contact), as Kafka's
/// heartbeat manager does when it processes them.
pub fn decide(
    state: &mut ControllerState,
    image: &MetadataImage,
    request: &ControllerRequest,
    now_ms: i64,
) -> Result<(Vec<MetadataRecord>, ControllerReply)> {
    state.heartbeats.observe(image, now_ms);
    match request {
        ControllerRequest::CreateTopic {
            topic,
            validate_only,
        } => {
            let brokers = placement::placement_brokers(image);
            let planned = topics::plan_topic(image, &brokers, &state.config, topic.clone())?;
            let records = if *validate_only {
                vec![]
            } else {
                vec![MetadataRecord::Topic(planned.clone())]
            };
            Ok((records, ControllerReply::TopicCreated(planned)))
        }
        ControllerRequest::CreatePartitions {
            topic,
            count,
            assignments,
            validate_only,
        } => {
            let brokers = placement::placement_brokers(image);
            let added = topics::plan_create_partitions(
                image,
                &brokers,
                topic,
                *count,
                assignments.as_deref(),
            )?;
            let records = if *validate_only {
                vec![]
            } else {
                vec![MetadataRecord::AddPartitions {
                    topic: topic.clone(),
                    partitions: added,
                }]
            };
            Ok((records, ControllerReply::Done))
        }
        ControllerRequest::DeleteTopic { name } => {
            let (record, id) = topics::plan_delete_topic(image, &state.config, name)?;
            Ok((vec![record], ControllerReply::TopicDeleted { id }))
        }
        ControllerRequest::AlterTopicConfigs {
            topic,
            configs,
            validate_only,
        } => {
            let record = topics::plan_topic_configs(image, topic, configs.clone())?;
            let records = if *validate_only { vec![] } else { vec![record] };
            Ok((records, ControllerReply::Done))
        }
        ControllerRequest::AlterBrokerConfigs {
            entity,
            configs,
            validate_only,
        } => {
            let record = topics::plan_broker_configs(entity, configs.clone())?;
            let records = if *validate_only { vec![] } else { vec![record] };
            Ok((records, ControllerReply::Done))
        }
        ControllerRequest::AllocateProducerIds {
            broker_id,
            broker_epoch,
            count,
        } => {
            partitions::check_broker_epoch(image, *broker_id, *broker_epoch)?;
            if *count <= 0 {
                return Err(ControllerError::new(
                    ResponseError::InvalidRequest,
                    format!("Invalid producer id block size {count}."),
                ));
            }
            let first = image.next_producer_id;
            let next = first.checked_add(*count).ok_or_else(|| {
                ControllerError::new(
                    ResponseError::UnknownServerError,
                    "Exhausted all producerIds as the next block's end producerId is has exceeded the int64 type limit",
                )
            })?;
            Ok((
                vec![MetadataRecord::ProducerIds {
                    next_producer_id: next,
                }],
                ControllerReply::ProducerIds {
                    first,
                    count: *count,
                },
            ))
        }
        ControllerRequest::RegisterBroker {
            id,
            cluster_id,
            incarnation_id,
            rack,
            endpoints,
        } => {
            let (records, epoch) = brokers::register(
                &mut state.heartbeats,
                &state.config,
                image,
                brokers::Registration {
                    id: *id,
                    cluster_id,
                    incarnation_id: *incarnation_id,
                    rack: rack.clone(),
                    endpoints: endpoints.clone(),
                },
                now_ms,
            )?;
            Ok((
                records,
                ControllerReply::Registered {
                    broker_epoch: epoch,
                },
            ))
        }
        ControllerRequest::BrokerHeartbeat(hb) => {
            let (records, reply) =
                brokers::heartbeat(&mut state.heartbeats, &state.config, image, hb, now_ms)?;
            Ok((records, ControllerReply::Heartbeat(reply)))
        }
        ControllerRequest::UnregisterBroker { id } => {
            let records = brokers::unregister(&mut state.heartbeats, &state.config, image, *id)?;
            Ok((records, ControllerReply::Done))
        }
        ControllerRequest::AlterPartition {
            broker_id,
            broker_epoch,
            topic_id,
            partition,
            leader_epoch,
            partition_epoch,
            new_isr,
        } => {
            let (records, error_code, state_after) = partitions::alter_partition(
                &state.config,
                image,
                &partitions::AlterPartition {
                    broker_id: *broker_id,
                    broker_epoch: *broker_epoch,
                    topic_id: *topic_id,
                    partition: *partition,
                    leader_epoch: *leader_epoch,
                    partition_epoch: *partition_epoch,
                    new_isr: new_isr.clone(),
                },
            )?;
            Ok((
                records,
                ControllerReply::AlterPartition {
                    error_code,
                    state: state_after,
                },
            ))
        }
        ControllerRequest::ElectLeaders {
            election_type,
            partitions,
        } => {
            let (records, results) =
                partitions::elect_leaders(image, *election_type, partitions.as_deref());
            Ok((records, ControllerReply::Partitions(results)))
        }
        ControllerRequest::AlterPartitionReassignments { targets } => {
            let (records, results) = reassignment::alter(&state.config, image, targets);
            Ok((records, ControllerReply::Partitions(results)))
        }
        ControllerRequest::ListPartitionReassignments { partitions } => Ok((
            vec![],
            ControllerReply::Reassignments(reassignment::list(image, partitions.as_deref())),
        )),
        // The image does not hold the quorum's replication progress: the service answers it
        // from the metadata store before deciding anything (`Controller::handle_at`).
        ControllerRequest::DescribeQuorum | ControllerRequest::ChangeVoters(_) => {
            Err(ControllerError::new(
                ResponseError::UnknownServerError,
                "quorum requests are answered from the quorum's state, not decided on an image",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::test_support::*;
    use super::*;

    #[test]
    fn producer_id_blocks_follow_each_other_and_need_the_current_broker_epoch() {
        let mut state = ControllerState::default();
        let mut image = image_with_brokers(&[1]);
        let ask = |epoch| ControllerRequest::AllocateProducerIds {
            broker_id: 1,
            broker_epoch: epoch,
            count: 1000,
        };
        let epoch = image.brokers[&1].epoch;
        let (records, reply) = decide(&mut state, &image, &ask(epoch), 0).unwrap();
        assert_eq!(
            reply,
            ControllerReply::ProducerIds {
                first: 0,
                count: 1000
            }
        );
        commit(&mut image, &records);
        let (_, reply) = decide(&mut state, &image, &ask(epoch), 0).unwrap();
        assert_eq!(
            reply,
            ControllerReply::ProducerIds {
                first: 1000,
                count: 1000
            }
        );
        let err = decide(&mut state, &image, &ask(epoch - 1), 0).unwrap_err();
        assert!(err.is(ResponseError::StaleBrokerEpoch));
    }

    #[test]
    fn requests_and_replies_survive_the_control_channels_json() {
        let request = ControllerRequest::AlterPartition {
            broker_id: 1,
            broker_epoch: 7,
            topic_id: Uuid::from_u128(5),
            partition: 2,
            leader_epoch: 3,
            partition_epoch: 4,
            new_isr: vec![IsrMember {
                broker_id: 1,
                broker_epoch: -1,
            }],
        };
        let json = serde_json::to_value(&request).unwrap();
        assert_eq!(
            serde_json::from_value::<ControllerRequest>(json).unwrap(),
            request
        );
        let reply = ControllerReply::Heartbeat(HeartbeatReply {
            is_caught_up: true,
            is_fenced: false,
            in_controlled_shutdown: false,
            should_shut_down: false,
        });
        let json = serde_json::to_value(&reply).unwrap();
        assert_eq!(
            serde_json::from_value::<ControllerReply>(json).unwrap(),
            reply
        );
    }

    #[test]
    fn validate_only_creation_answers_the_topic_without_records() {
        let mut state = ControllerState::default();
        let image = image_with_brokers(&[1, 2]);
        let request = ControllerRequest::CreateTopic {
            topic: NewTopic {
                name: "t".into(),
                num_partitions: 2,
                replication_factor: 2,
                ..NewTopic::default()
            },
            validate_only: true,
        };
        let (records, reply) = decide(&mut state, &image, &request, 0).unwrap();
        assert!(records.is_empty());
        assert!(matches!(reply, ControllerReply::TopicCreated(t) if t.partitions.len() == 2));
    }
}

#[cfg(test)]
pub(crate) mod test_support {
    //! Images with registered brokers and topics, built by chaining, for the decision tests.
    use super::*;
    use crate::metadata::BrokerRegistration;

    /// An image with brokers `ids` registered (unfenced, no rack) at epochs 100 + id.
    pub(crate) fn image_with_brokers(ids: &[i32]) -> MetadataImage {
        let mut image = MetadataImage::new("test-cluster".into());
        for &id in ids {
            image.replay(&MetadataRecord::RegisterBroker(BrokerRegistration {
                id,
                incarnation_id: Uuid::from_u128(id as u128 + 1),
                epoch: 100 + i64::from(id),
                rack: None,
                endpoints: vec![],
                fenced: false,
                in_controlled_shutdown: false,
            }));
        }
        image.offset = 200;
        image
    }

    /// Adds topic `name` with the given partition states; returns its id.
    pub(crate) fn add_topic(
        image: &mut MetadataImage,
        name: &str,
        partitions: Vec<PartitionState>,
    ) -> Uuid {
        let id = Uuid::from_u128(0xabc0 + image.topics.len() as u128);
        image.replay(&MetadataRecord::Topic(TopicImage {
            name: name.into(),
            id,
            partitions,
            configs: BTreeMap::new(),
        }));
        id
    }

    /// A partition with `replicas`, `isr` and `leader`, epochs 5/7.
    pub(crate) fn partition(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            leader_epoch: 5,
            partition_epoch: 7,
            ..PartitionState::default()
        }
    }

    /// Applies `records` to `image` as one committed batch.
    pub(crate) fn commit(image: &mut MetadataImage, records: &[MetadataRecord]) {
        let next = image.offset + 1;
        image.replay_batch(records, next);
    }

    /// Sets broker `id`'s fenced / shutting-down state in `image`.
    pub(crate) fn set_broker(image: &mut MetadataImage, id: i32, fenced: bool, shutting: bool) {
        let epoch = image.brokers[&id].epoch;
        image.replay(&MetadataRecord::BrokerChange {
            id,
            epoch,
            fenced: Some(fenced),
            in_controlled_shutdown: Some(shutting),
        });
    }
}
