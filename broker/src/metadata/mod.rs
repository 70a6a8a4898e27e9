//! Cluster metadata: topics, partitions (replicas, leader, leader epoch, ISR), configs and
//! producer-id blocks.
//!
//! Everything reads an immutable [`MetadataImage`] and changes it only through
//! [`MetadataStore::apply`] with a [`MetadataRecord`], the way KRaft brokers replay metadata
//! records. Today the store is [`LocalMetadataStore`], a crash-safe file on one broker; the
//! replicated quorum (openraft) will implement the same trait, so handlers do not change.

pub mod local;
pub mod topic_name;

use std::collections::{BTreeMap, HashMap};
use std::sync::Arc;

use serde::{Deserialize, Serialize};
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
    /// A record refers to a topic that does not exist (a caller bug or a race with a delete).
    #[error("unknown topic {0}")]
    UnknownTopic(String),
    /// A record would create a topic that exists already.
    #[error("topic {0} already exists")]
    TopicExists(String),
}

/// Result type of this module.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The replica placement and leadership of one partition.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct PartitionState {
    /// Broker ids holding a replica, preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
    /// Current leader's broker id, -1 when offline.
    pub leader: i32,
    /// Bumped on every leadership change; stamped into appended batches.
    pub leader_epoch: i32,
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
    #[serde(skip)]
    topic_ids: HashMap<Uuid, String>,
}

impl MetadataImage {
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

    /// Applies one record, producing the next image. Pure: the same image and record always
    /// give the same result, which is what a replicated log needs.
    pub fn replay(&self, record: &MetadataRecord) -> Result<MetadataImage> {
        let mut next = self.clone();
        match record {
            MetadataRecord::Topic(topic) => {
                if next.topics.contains_key(&topic.name) {
                    return Err(Error::TopicExists(topic.name.clone()));
                }
                next.topics.insert(topic.name.clone(), topic.clone());
            }
            MetadataRecord::RemoveTopic { name } => {
                if next.topics.remove(name).is_none() {
                    return Err(Error::UnknownTopic(name.clone()));
                }
            }
            MetadataRecord::AddPartitions { topic, partitions } => {
                let t = next
                    .topics
                    .get_mut(topic)
                    .ok_or_else(|| Error::UnknownTopic(topic.clone()))?;
                t.partitions.extend(partitions.iter().cloned());
            }
            MetadataRecord::TopicConfigs { topic, configs } => {
                let t = next
                    .topics
                    .get_mut(topic)
                    .ok_or_else(|| Error::UnknownTopic(topic.clone()))?;
                t.configs = configs.clone();
            }
            MetadataRecord::BrokerConfigs { entity, configs } => {
                if configs.is_empty() {
                    next.broker_configs.remove(entity);
                } else {
                    next.broker_configs.insert(entity.clone(), configs.clone());
                }
            }
            MetadataRecord::ProducerIds { next_producer_id } => {
                next.next_producer_id = next.next_producer_id.max(*next_producer_id);
            }
        }
        next.reindex();
        Ok(next)
    }
}

/// One change to the cluster metadata, in the spirit of KRaft's metadata records.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub enum MetadataRecord {
    /// A new topic with its partitions and config overrides.
    Topic(TopicImage),
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
}

/// The one interface to cluster metadata.
pub trait MetadataStore: Send + Sync {
    /// The latest committed image.
    fn image(&self) -> Arc<MetadataImage>;

    /// Makes `records` durable as one atomic change and publishes the resulting image.
    /// Either all records apply or none; on error the image is unchanged.
    fn apply(&self, records: Vec<MetadataRecord>) -> Result<Arc<MetadataImage>>;
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
                    leader_epoch: 0
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
        let img = MetadataImage::default()
            .replay(&MetadataRecord::Topic(t))
            .unwrap();
        assert_eq!(img.topic_by_id(&id).unwrap().name, "a");
        assert!(matches!(
            img.replay(&MetadataRecord::Topic(topic("a", 1))),
            Err(Error::TopicExists(_))
        ));
        let img = img
            .replay(&MetadataRecord::AddPartitions {
                topic: "a".into(),
                partitions: vec![PartitionState {
                    replicas: vec![0],
                    isr: vec![0],
                    leader: 0,
                    leader_epoch: 0,
                }],
            })
            .unwrap();
        assert_eq!(img.topic("a").unwrap().partitions.len(), 3);
        let img = img
            .replay(&MetadataRecord::RemoveTopic { name: "a".into() })
            .unwrap();
        assert!(img.topic("a").is_none());
        assert!(img.topic_by_id(&id).is_none());
    }

    #[test]
    fn uuid_encoding_matches_kafka() {
        // Kafka prints Uuid(0, 1) as AAAAAAAAAAAAAAAAAAAAAQ.
        assert_eq!(encode_uuid(&Uuid::from_u128(1)), "AAAAAAAAAAAAAAAAAAAAAQ");
        assert_eq!(new_cluster_id().len(), 22);
    }
}
