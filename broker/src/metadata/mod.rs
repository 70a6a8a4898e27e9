//! Cluster metadata: topics, partitions (replicas, leader, leader epoch, ISR), configs and
//! producer-id blocks.
//!
//! Everything reads an immutable [`MetadataImage`] and changes it only by committing
//! [`MetadataRecord`]s through [`MetadataStore::propose`], the way KRaft brokers replay the
//! metadata log. Two stores implement the seam: [`LocalMetadataStore`], a crash-safe file for a
//! single node that is its own controller, and the replicated quorum (openraft), where only
//! the active controller may propose and every node replays the committed log.
//!
//! The seam, as issue 8 asks for it:
//! - decisions are made by the controller (`crate::controller`, pure functions from a request
//!   and the current image to records) and committed with [`MetadataStore::propose`], which
//!   answers the committed offset, or [`ProposeError::NotController`] with the active
//!   controller's id so the caller can forward;
//! - [`MetadataStore::subscribe`] hands out committed images in order; the broker reacts to
//!   them (creates and deletes logs, becomes leader or follower, loads coordinators);
//! - [`MetadataImage::replay`] cannot fail: a record is checked before it is committed, and a
//!   committed record must apply on every node, today and after an upgrade;
//! - committed batches carry a version ([`MetadataBatch`]).

pub mod local;
pub mod quorum;
pub mod topic_name;

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;

use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use uuid::Uuid;

pub use local::LocalMetadataStore;

/// Failures of the metadata store itself (not Kafka-level refusals, which callers decide
/// before applying a record).
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The store could not be read or written.
    #[error("metadata store I/O error at {path}: {source}")]
    Io {
        /// The file involved.
        path: std::path::PathBuf,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The stored metadata could not be parsed.
    #[error("metadata store at {path} is corrupt: {reason}")]
    Corrupt {
        /// The file involved.
        path: std::path::PathBuf,
        /// What is wrong with it.
        reason: String,
    },
}

/// Why a proposal was not committed.
#[derive(Debug, thiserror::Error)]
pub enum ProposeError {
    /// This node is not the active controller (or lost leadership before the records
    /// committed, so they may or may not be in the log: the controller decides again).
    /// `leader` is the active controller's node id when known, for forwarding.
    #[error("this node is not the active controller (leader: {leader:?})")]
    NotController {
        /// The active controller's node id, if known.
        leader: Option<i32>,
    },
    /// The store failed (disk, or the quorum shut down).
    #[error(transparent)]
    Store(#[from] Error),
}

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The replica placement and leadership of one partition (Kafka's PartitionRecord /
/// PartitionChangeRecord fields).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Broker ids holding a replica, preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Current leader's broker id, -1 when offline.
    pub leader: i32,
    /// Bumped on every leadership change; stamped into appended batches.
    pub leader_epoch: i32,
    /// Bumped on every change of this partition's state (AlterPartition's
    /// `partitionEpoch`): a leader's ISR change based on an older epoch is refused.
    #[serde(default)]
    pub partition_epoch: i32,
    /// Replicas being added by a reassignment (also in `replicas`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub adding_replicas: Vec<i32>,
    /// Replicas being removed by a reassignment (still in `replicas`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub removing_replicas: Vec<i32>,
}

/// One listener of a registered broker, as Metadata and DescribeCluster advertise it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerEndpoint {
    /// Listener name (`PLAINTEXT`, `INTERNAL`, ...).
    pub listener: String,
    /// Advertised host.
    pub host: String,
    /// Advertised port.
    pub port: u16,
    /// Security protocol (`PLAINTEXT`, ...).
    pub security_protocol: String,
}

/// A broker as the controller knows it (Kafka's RegisterBrokerRecord and its changes).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BrokerRegistration {
    /// `node.id`.
    pub id: i32,
    /// Random per process start: a re-registration with a new incarnation is a restart.
    pub incarnation_id: Uuid,
    /// The broker epoch: the metadata offset of its registration. Heartbeats and
    /// AlterPartition carry it so requests from an earlier incarnation are refused.
    pub epoch: i64,
    /// `broker.rack`.
    #[serde(default)]
    pub rack: Option<String>,
    /// Advertised listeners.
    pub endpoints: Vec<BrokerEndpoint>,
    /// A fenced broker leads nothing and is not in any ISR; new brokers start fenced until
    /// they have caught up with the metadata log.
    pub fenced: bool,
    /// Set while the broker moves its leaderships away before exiting (SIGTERM).
    #[serde(default)]
    pub in_controlled_shutdown: bool,
}

/// A topic as the cluster knows it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct TopicImage {
    /// Topic name.
    pub name: String,
    /// Topic id (KIP-516), fixed at creation.
    pub id: Uuid,
    /// Partitions by index 0..n.
    pub partitions: Vec<PartitionState>,
    /// Topic-level config overrides (`retention.ms`, ...); absent keys fall back to the broker.
    pub configs: BTreeMap<String, String>,
}

/// A consistent snapshot of the cluster metadata. Cheap to share (`Arc`), never mutated.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataImage {
    /// The cluster id (Kafka's 22-character base64 uuid).
    pub cluster_id: String,
    /// Topics by name.
    pub topics: BTreeMap<String, TopicImage>,
    /// Dynamic broker configs by entity: `""` is the cluster-wide default, `"0"` broker 0.
    pub broker_configs: BTreeMap<String, BTreeMap<String, String>>,
    /// First producer id not yet handed out.
    pub next_producer_id: i64,
    /// Registered brokers by node id.
    #[serde(default)]
    pub brokers: BTreeMap<i32, BrokerRegistration>,
    /// Offset of the last metadata record applied to this image (-1: none). A node that has
    /// replayed up to a proposal's committed offset sees its effects.
    #[serde(default = "no_offset")]
    pub offset: i64,
    #[serde(skip)]
    topic_ids: HashMap<Uuid, String>,
}

fn no_offset() -> i64 {
    -1
}

impl MetadataImage {
    /// An empty image of cluster `cluster_id`.
    pub fn new(cluster_id: String) -> Self {
        MetadataImage {
            cluster_id,
            offset: -1,
            ..MetadataImage::default()
        }
    }

    /// A topic by name.
    pub fn topic(&self, name: &str) -> Option<&TopicImage> {
        self.topics.get(name)
    }

    /// A topic by id.
    pub fn topic_by_id(&self, id: &Uuid) -> Option<&TopicImage> {
        self.topic_ids
            .get(id)
            .and_then(|name| self.topics.get(name))
    }

    /// Dynamic configs of one broker entity (`""` for the cluster default).
    pub fn broker_config(&self, entity: &str) -> BTreeMap<String, String> {
        self.broker_configs.get(entity).cloned().unwrap_or_default()
    }

    fn reindex(&mut self) {
        self.topic_ids = self
            .topics
            .values()
            .map(|t| (t.id, t.name.clone()))
            .collect();
    }

    /// Rebuilds derived indexes; call after deserialising an image.
    pub fn rebuild_indexes(&mut self) {
        self.reindex();
    }

    /// Applies one committed record. Cannot fail: the controller checked the record against
    /// the image it was committed on top of, so a record that no longer fits (its topic is
    /// gone) is one a later record overtook, and is skipped as Kafka's image replay skips it.
    /// The caller sets [`Self::offset`].
    pub fn replay(&mut self, record: &MetadataRecord) {
        match record {
            MetadataRecord::Topic(topic) => {
                self.topics.insert(topic.name.clone(), topic.clone());
            }
            MetadataRecord::RemoveTopic { name } => {
                self.topics.remove(name);
            }
            MetadataRecord::ClusterId { cluster_id } => {
                if self.cluster_id.is_empty() {
                    self.cluster_id = cluster_id.clone();
                }
            }
            MetadataRecord::AddPartitions { topic, partitions } => {
                if let Some(t) = self.topics.get_mut(topic) {
                    t.partitions.extend(partitions.iter().cloned());
                }
            }
            MetadataRecord::TopicConfigs { topic, configs } => {
                if let Some(t) = self.topics.get_mut(topic) {
                    t.configs = configs.clone();
                }
            }
            MetadataRecord::BrokerConfigs { entity, configs } => {
                if configs.is_empty() {
                    self.broker_configs.remove(entity);
                } else {
                    self.broker_configs.insert(entity.clone(), configs.clone());
                }
            }
            MetadataRecord::ProducerIds { next_producer_id } => {
                self.next_producer_id = self.next_producer_id.max(*next_producer_id);
            }
            MetadataRecord::RegisterBroker(registration) => {
                self.brokers.insert(registration.id, registration.clone());
            }
            MetadataRecord::BrokerChange {
                id,
                epoch,
                fenced,
                in_controlled_shutdown,
            } => {
                if let Some(b) = self.brokers.get_mut(id).filter(|b| b.epoch == *epoch) {
                    if let Some(fenced) = fenced {
                        b.fenced = *fenced;
                    }
                    if let Some(shutting_down) = in_controlled_shutdown {
                        b.in_controlled_shutdown = *shutting_down;
                    }
                }
            }
            MetadataRecord::UnregisterBroker { id } => {
                self.brokers.remove(id);
            }
            MetadataRecord::PartitionChange {
                topic_id,
                partition,
                state,
            } => {
                let name = self.topic_ids.get(topic_id).cloned();
                if let Some(t) = name.and_then(|n| self.topics.get_mut(&n)) {
                    if let Some(p) = usize::try_from(*partition)
                        .ok()
                        .and_then(|i| t.partitions.get_mut(i))
                    {
                        *p = state.clone();
                    }
                }
            }
        }
        if matches!(
            record,
            MetadataRecord::Topic(_) | MetadataRecord::RemoveTopic { .. }
        ) {
            self.reindex();
        }
    }

    /// Applies a committed batch ending at metadata offset `offset`.
    pub fn replay_batch(&mut self, records: &[MetadataRecord], offset: i64) {
        for record in records {
            self.replay(record);
        }
        self.offset = self.offset.max(offset);
    }
}

/// The version of the metadata record format this code writes. Replay accepts every version
/// up to this one; a node that finds a newer version in its log refuses to start (it would
/// misread the cluster's state) with a message naming both versions.
pub const METADATA_RECORD_VERSION: u16 = 1;

/// What one committed entry of the metadata log holds: records that apply together.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct MetadataBatch {
    /// [`METADATA_RECORD_VERSION`] of the writer.
    pub version: u16,
    /// The records, applied in order.
    pub records: Vec<MetadataRecord>,
}

/// One change to the cluster metadata, in the spirit of KRaft's metadata records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// A new topic with its partitions and config overrides.
    Topic(TopicImage),
    /// The cluster's id, written once by the first active controller of a new replicated
    /// quorum so every node agrees on it. Only the first one in the log counts: a later one
    /// (a new controller that had not replayed the first yet) changes nothing.
    ClusterId {
        /// Kafka's 22-character base64 uuid, or `cluster.id` when configured.
        cluster_id: String,
    },
    /// A topic is deleted.
    RemoveTopic {
        /// Topic name.
        name: String,
    },
    /// Partitions appended to a topic (CreatePartitions).
    AddPartitions {
        /// Topic name.
        topic: String,
        /// The new partitions, in index order after the existing ones.
        partitions: Vec<PartitionState>,
    },
    /// The complete set of a topic's config overrides.
    TopicConfigs {
        /// Topic name.
        topic: String,
        /// All overrides after the change.
        configs: BTreeMap<String, String>,
    },
    /// The complete set of dynamic configs of one broker entity.
    BrokerConfigs {
        /// `""` for the cluster-wide default, else the broker id.
        entity: String,
        /// All dynamic configs after the change.
        configs: BTreeMap<String, String>,
    },
    /// Producer ids below this value are handed out.
    ProducerIds {
        /// The new high-water mark of allocated producer ids.
        next_producer_id: i64,
    },
    /// A broker registers (or re-registers after a restart, replacing its old registration).
    RegisterBroker(BrokerRegistration),
    /// A registered broker's state changes; ignored unless `epoch` is its current epoch.
    BrokerChange {
        /// Node id.
        id: i32,
        /// The registration this change applies to.
        epoch: i64,
        /// New fenced state, if it changes.
        fenced: Option<bool>,
        /// New controlled-shutdown state, if it changes.
        in_controlled_shutdown: Option<bool>,
    },
    /// A broker is removed from the cluster (`kafka-cluster.sh unregister`).
    UnregisterBroker {
        /// Node id.
        id: i32,
    },
    /// A partition's replicas, ISR, leader or epochs change (election, ISR change,
    /// reassignment step): the complete new state, decided by the controller.
    PartitionChange {
        /// The topic's id (a recreated topic of the same name has another id).
        topic_id: Uuid,
        /// Partition index.
        partition: i32,
        /// The partition's state after the change.
        state: PartitionState,
    },
}

/// A boxed, sendable future, so [`MetadataStore`] stays usable as `dyn`.
pub type BoxFuture<'a, T> = Pin<Box<dyn Future<Output = T> + Send + 'a>>;

/// One voter or observer of the metadata quorum, as DescribeQuorum reports it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumReplica {
    /// Node id.
    pub id: i32,
    /// Its metadata log end offset as the leader last saw it (-1 unknown).
    pub log_end_offset: i64,
    /// When the leader last heard from it, ms since the epoch (-1 unknown).
    pub last_fetch_ms: i64,
    /// When it was last caught up with the leader, ms since the epoch (-1 unknown).
    pub last_caught_up_ms: i64,
    /// Its controller listeners (for voters; DescribeQuorum v2 lists them as nodes).
    pub listeners: Vec<BrokerEndpoint>,
}

/// The state of the metadata quorum as this node sees it (DescribeQuorum,
/// `kafka-metadata-quorum.sh describe --status / --replication`).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct QuorumInfo {
    /// The active controller's node id, -1 if there is none.
    pub leader_id: i32,
    /// The Raft term (Kafka's leader epoch of the metadata quorum).
    pub leader_epoch: i32,
    /// The committed offset of the metadata log.
    pub high_watermark: i64,
    /// The voters.
    pub voters: Vec<QuorumReplica>,
    /// Non-voting replicas of the metadata log (brokers that are not controllers).
    pub observers: Vec<QuorumReplica>,
}

/// A KIP-853 change of the quorum's voters, as AddRaftVoter and RemoveRaftVoter ask it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum VoterChange {
    /// Make `id`, reached at `host:port` on its controller listener, a voter: caught up as a
    /// non-voter first, within `timeout_ms`.
    Add {
        /// Its node id.
        id: i32,
        /// Its metadata log dir's `directory.id` (nil: none given).
        directory_id: Uuid,
        /// Its controller listener's host.
        host: String,
        /// Its controller listener's port.
        port: u16,
        /// The request's TimeoutMs.
        timeout_ms: i32,
    },
    /// Make `id` a voter no more.
    Remove {
        /// Its node id.
        id: i32,
        /// Its `directory.id` as the request names it.
        directory_id: Uuid,
    },
}

/// A refused or failed [`VoterChange`]: Kafka's error code and message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VoterChangeError {
    /// Kafka's error code.
    pub code: i16,
    /// Its message.
    pub message: String,
}

/// The one interface to cluster metadata.
pub trait MetadataStore: Send + Sync {
    /// The latest image this node has applied.
    fn image(&self) -> Arc<MetadataImage>;

    /// Committed images in order, starting with the current one. A slow receiver skips
    /// intermediate images (a `watch`), so reactions compare the new image with the last one
    /// they handled rather than assuming one step per record.
    fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>>;

    /// Commits `records` as one atomic batch and resolves, once this node's image includes
    /// them, to the batch's metadata offset. Only the active controller may propose; any
    /// other node gets [`ProposeError::NotController`].
    fn propose(&self, records: Vec<MetadataRecord>) -> BoxFuture<'_, Result<i64, ProposeError>>;

    /// The active controller's node id, if one is known.
    fn active_controller(&self) -> Option<i32>;

    /// Resolves once [`Self::active_controller`] is no longer `seen` (a new controller is
    /// known, or the old one is no longer), so a caller retrying a controller request goes
    /// to the new one at once. Stores that cannot tell never resolve: callers bound the wait.
    fn active_controller_changed(&self, seen: Option<i32>) -> BoxFuture<'_, ()> {
        let _ = seen;
        Box::pin(std::future::pending())
    }

    /// The quorum's state for DescribeQuorum.
    fn quorum_info(&self) -> QuorumInfo;

    /// Carries out `change` on the active controller of a replicated quorum and resolves once
    /// it is committed. Stores without Raft voters (the single node) answer
    /// UNSUPPORTED_VERSION, as Kafka does when `kraft.version` is 0.
    fn change_voters(&self, change: VoterChange) -> BoxFuture<'_, Result<(), VoterChangeError>> {
        let _ = change;
        Box::pin(async {
            Err(VoterChangeError {
                code: kafka_protocol::ResponseError::UnsupportedVersion.code(),
                message: "Cluster doesn't support changing voters because the kraft.version \
                          feature is 0 (a single node has no metadata quorum)"
                    .to_string(),
            })
        })
    }

    /// The `kraft.version` feature level: 1 where the voter set can change at runtime (the
    /// replicated quorum, whose membership is in its Raft log), 0 for the single node.
    fn kraft_version(&self) -> i16 {
        0
    }
}

/// A new cluster id in Kafka's format: a random UUID as 22 characters of URL-safe base64.
pub fn new_cluster_id() -> String {
    encode_uuid(&Uuid::new_v4())
}

/// Kafka prints uuids (topic ids, cluster ids) as URL-safe base64 without padding.
pub fn encode_uuid(id: &Uuid) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = id.as_bytes();
    let mut out = String::with_capacity(22);
    let mut acc: u32 = 0;
    let mut bits = 0;
    for &b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 0x3f) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 0x3f) as usize] as char);
    }
    out
}

/// A new topic id: random, and never one of Kafka's reserved ids (zero and one).
pub fn new_topic_id() -> Uuid {
    loop {
        let id = Uuid::new_v4();
        if id.as_u128() > 1 {
            return id;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn topic(name: &str, partitions: usize) -> TopicImage {
        TopicImage {
            name: name.into(),
            id: new_topic_id(),
            partitions: vec![
                PartitionState {
                    replicas: vec![0],
                    isr: vec![0],
                    leader: 0,
                    ..PartitionState::default()
                };
                partitions
            ],
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn replay_creates_alters_and_removes_topics() {
        let t = topic("a", 2);
        let id = t.id;
        let mut img = MetadataImage::new("c".into());
        img.replay_batch(&[MetadataRecord::Topic(t)], 0);
        assert_eq!(img.topic_by_id(&id).unwrap().name, "a");
        assert_eq!(img.offset, 0);
        img.replay(&MetadataRecord::AddPartitions {
            topic: "a".into(),
            partitions: vec![PartitionState {
                replicas: vec![0],
                isr: vec![0],
                leader: 0,
                ..PartitionState::default()
            }],
        });
        assert_eq!(img.topic("a").unwrap().partitions.len(), 3);
        let changed = PartitionState {
            replicas: vec![0],
            isr: vec![],
            leader: -1,
            leader_epoch: 1,
            partition_epoch: 1,
            ..PartitionState::default()
        };
        img.replay(&MetadataRecord::PartitionChange {
            topic_id: id,
            partition: 1,
            state: changed.clone(),
        });
        assert_eq!(img.topic("a").unwrap().partitions[1], changed);
        img.replay(&MetadataRecord::RemoveTopic { name: "a".into() });
        assert!(img.topic("a").is_none());
        assert!(img.topic_by_id(&id).is_none());
    }

    #[test]
    fn replay_of_records_that_no_longer_fit_changes_nothing() {
        let mut img = MetadataImage::new("c".into());
        let before = img.clone();
        img.replay(&MetadataRecord::RemoveTopic { name: "x".into() });
        img.replay(&MetadataRecord::PartitionChange {
            topic_id: new_topic_id(),
            partition: 0,
            state: PartitionState::default(),
        });
        img.replay(&MetadataRecord::BrokerChange {
            id: 1,
            epoch: 5,
            fenced: Some(false),
            in_controlled_shutdown: None,
        });
        assert_eq!(img, before);
    }

    #[test]
    fn broker_changes_apply_only_to_the_current_registration() {
        let mut img = MetadataImage::new("c".into());
        let reg = BrokerRegistration {
            id: 1,
            incarnation_id: Uuid::new_v4(),
            epoch: 7,
            rack: None,
            endpoints: vec![],
            fenced: true,
            in_controlled_shutdown: false,
        };
        img.replay(&MetadataRecord::RegisterBroker(reg));
        let stale = MetadataRecord::BrokerChange {
            id: 1,
            epoch: 3,
            fenced: Some(false),
            in_controlled_shutdown: None,
        };
        img.replay(&stale);
        assert!(img.brokers[&1].fenced);
        img.replay(&MetadataRecord::BrokerChange {
            id: 1,
            epoch: 7,
            fenced: Some(false),
            in_controlled_shutdown: None,
        });
        assert!(!img.brokers[&1].fenced);
    }

    #[test]
    fn images_written_before_brokers_existed_still_load() {
        let old = r#"{"cluster_id":"c","topics":{},"broker_configs":{},"next_producer_id":0}"#;
        let img: MetadataImage = serde_json::from_str(old).unwrap();
        assert_eq!(img.offset, -1);
        assert!(img.brokers.is_empty());
        let old_partition = r#"{"replicas":[0],"isr":[0],"leader":0,"leader_epoch":3}"#;
        let p: PartitionState = serde_json::from_str(old_partition).unwrap();
        assert_eq!((p.leader_epoch, p.partition_epoch), (3, 0));
    }

    #[test]
    fn uuid_encoding_matches_kafka() {
        // Kafka prints Uuid(0, 1) as AAAAAAAAAAAAAAAAAAAAAQ.
        assert_eq!(encode_uuid(&Uuid::from_u128(1)), "AAAAAAAAAAAAAAAAAAAAAQ");
        assert_eq!(new_cluster_id().len(), 22);
    }
}
