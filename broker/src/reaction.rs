//! How a node reacts to committed metadata: the difference between the image it last acted
//! on and the next one, as the local changes it must make (Kafka's brokers do the same in
//! `ReplicaManager.applyDelta` from a metadata delta).
//!
//! [`changes`] is a pure function of two images and this node's id, so every rule is tested
//! without logs, sockets or a quorum; the broker executes the changes it returns in order
//! (creating and deleting logs on the blocking pool, telling the replica layer its new role,
//! loading and unloading coordinator partitions). Images may skip intermediate states (a
//! subscriber can miss images), so the rules compare states, never count steps.

use crate::log::TopicPartition;
use crate::metadata::{MetadataImage, PartitionState, TopicImage};

/// One thing this node must do because the committed metadata changed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// A replica of this partition is now assigned to this node: create its log (empty, or
    /// reuse the one on disk if it belongs to the same topic id).
    CreateLog {
        /// The partition.
        tp: TopicPartition,
        /// Its topic's id.
        topic_id: uuid::Uuid,
    },
    /// This node no longer hosts the partition (its topic was deleted, or a reassignment
    /// moved the replica away): stop serving it and delete its log.
    DeleteLog {
        /// The partition.
        tp: TopicPartition,
        /// The id of the topic the log belonged to.
        topic_id: uuid::Uuid,
    },
    /// This node leads the partition in `state` (a new leadership, a new leader epoch, or a
    /// changed ISR under the same epoch).
    BecomeLeader {
        /// The partition.
        tp: TopicPartition,
        /// Its topic's id.
        topic_id: uuid::Uuid,
        /// The committed state (leader epoch, partition epoch, ISR, replicas).
        state: PartitionState,
    },
    /// This node follows the partition's leader in `state` (or the partition has no leader
    /// and this node keeps its replica without serving it).
    BecomeFollower {
        /// The partition.
        tp: TopicPartition,
        /// Its topic's id.
        topic_id: uuid::Uuid,
        /// The committed state (leader, leader epoch, replicas).
        state: PartitionState,
    },
    /// A hosted topic's config overrides changed: its logs take the new effective config.
    TopicConfig {
        /// Topic name.
        topic: String,
    },
}

/// The changes that take this node (`node_id`) from acting on `prev` to acting on `next`:
/// deletions first (so a topic deleted and recreated under the same name frees its
/// directories before the new logs are made), then creations, then roles, then configs.
pub fn changes(prev: &MetadataImage, next: &MetadataImage, node_id: i32) -> Vec<Change> {
    let mut deletes = Vec::new();
    let mut creates = Vec::new();
    let mut roles = Vec::new();
    let mut configs = Vec::new();
    for old in prev.topics.values() {
        let current = next.topic(&old.name).filter(|t| t.id == old.id);
        for (index, p) in old.partitions.iter().enumerate() {
            let still_hosted = current
                .and_then(|t| t.partitions.get(index))
                .is_some_and(|n| n.replicas.contains(&node_id));
            if p.replicas.contains(&node_id) && !still_hosted {
                deletes.push(Change::DeleteLog {
                    tp: tp(&old.name, index),
                    topic_id: old.id,
                });
            }
        }
    }
    for topic in next.topics.values() {
        let before = prev.topic(&topic.name).filter(|t| t.id == topic.id);
        let mut hosts_any = false;
        for (index, state) in topic.partitions.iter().enumerate() {
            if !state.replicas.contains(&node_id) {
                continue;
            }
            hosts_any = true;
            let old = before
                .and_then(|t| t.partitions.get(index))
                .filter(|p| p.replicas.contains(&node_id));
            if old.is_none() {
                creates.push(Change::CreateLog {
                    tp: tp(&topic.name, index),
                    topic_id: topic.id,
                });
            }
            if old == Some(state) {
                continue;
            }
            let (tp, topic_id, state) = (tp(&topic.name, index), topic.id, state.clone());
            roles.push(if state.leader == node_id {
                Change::BecomeLeader {
                    tp,
                    topic_id,
                    state,
                }
            } else {
                Change::BecomeFollower {
                    tp,
                    topic_id,
                    state,
                }
            });
        }
        if hosts_any && before.is_some_and(|b| b.configs != topic.configs) {
            configs.push(Change::TopicConfig {
                topic: topic.name.clone(),
            });
        }
    }
    deletes
        .into_iter()
        .chain(creates)
        .chain(roles)
        .chain(configs)
        .collect()
}

/// Partitions of `topic` this node leads in `image`.
pub fn led_partitions<'a>(
    image: &'a MetadataImage,
    topic: &'a str,
    node_id: i32,
) -> impl Iterator<Item = i32> + 'a {
    image
        .topic(topic)
        .map(|t: &TopicImage| t.partitions.as_slice())
        .unwrap_or_default()
        .iter()
        .enumerate()
        .filter(move |(_, p)| p.leader == node_id)
        .filter_map(|(i, _)| i32::try_from(i).ok())
}

fn tp(topic: &str, index: usize) -> TopicPartition {
    TopicPartition::new(topic, i32::try_from(index).unwrap_or(i32::MAX))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{new_topic_id, MetadataRecord};
    use std::collections::BTreeMap;

    fn state(replicas: &[i32], leader: i32, epoch: i32) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: replicas.to_vec(),
            leader,
            leader_epoch: epoch,
            partition_epoch: epoch,
            ..PartitionState::default()
        }
    }

    fn image_with(topics: Vec<TopicImage>) -> MetadataImage {
        let mut image = MetadataImage::new("c".into());
        for t in topics {
            image.replay(&MetadataRecord::Topic(t));
        }
        image
    }

    fn topic(name: &str, id: uuid::Uuid, partitions: Vec<PartitionState>) -> TopicImage {
        TopicImage {
            name: name.into(),
            id,
            partitions,
            configs: BTreeMap::new(),
        }
    }

    #[test]
    fn a_new_topic_creates_the_hosted_logs_and_sets_each_role() {
        let id = new_topic_id();
        let next = image_with(vec![topic(
            "t",
            id,
            vec![
                state(&[1, 2], 1, 0),
                state(&[2, 3], 2, 0),
                state(&[3, 1], 3, 0),
            ],
        )]);
        let got = changes(&MetadataImage::new("c".into()), &next, 1);
        assert_eq!(
            got,
            vec![
                Change::CreateLog {
                    tp: TopicPartition::new("t", 0),
                    topic_id: id
                },
                Change::CreateLog {
                    tp: TopicPartition::new("t", 2),
                    topic_id: id
                },
                Change::BecomeLeader {
                    tp: TopicPartition::new("t", 0),
                    topic_id: id,
                    state: state(&[1, 2], 1, 0)
                },
                Change::BecomeFollower {
                    tp: TopicPartition::new("t", 2),
                    topic_id: id,
                    state: state(&[3, 1], 3, 0)
                },
            ]
        );
    }

    #[test]
    fn an_unchanged_image_needs_nothing() {
        let image = image_with(vec![topic("t", new_topic_id(), vec![state(&[1], 1, 0)])]);
        assert!(changes(&image, &image, 1).is_empty());
    }

    #[test]
    fn a_leadership_moving_here_or_away_changes_the_role_only() {
        let id = new_topic_id();
        let before = image_with(vec![topic("t", id, vec![state(&[1, 2], 1, 0)])]);
        let after = image_with(vec![topic("t", id, vec![state(&[1, 2], 2, 1)])]);
        assert_eq!(
            changes(&before, &after, 1),
            vec![Change::BecomeFollower {
                tp: TopicPartition::new("t", 0),
                topic_id: id,
                state: state(&[1, 2], 2, 1)
            }]
        );
        assert_eq!(
            changes(&before, &after, 2),
            vec![Change::BecomeLeader {
                tp: TopicPartition::new("t", 0),
                topic_id: id,
                state: state(&[1, 2], 2, 1)
            }]
        );
        // A node that holds no replica of the partition does nothing.
        assert!(changes(&before, &after, 3).is_empty());
    }

    #[test]
    fn an_isr_change_under_the_same_epoch_reaches_the_leader() {
        let id = new_topic_id();
        let before = image_with(vec![topic("t", id, vec![state(&[1, 2], 1, 4)])]);
        let mut shrunk = state(&[1, 2], 1, 4);
        shrunk.isr = vec![1];
        shrunk.partition_epoch = 5;
        let after = image_with(vec![topic("t", id, vec![shrunk.clone()])]);
        assert_eq!(
            changes(&before, &after, 1),
            vec![Change::BecomeLeader {
                tp: TopicPartition::new("t", 0),
                topic_id: id,
                state: shrunk
            }]
        );
    }

    #[test]
    fn a_deleted_topic_deletes_only_hosted_logs() {
        let id = new_topic_id();
        let before = image_with(vec![topic(
            "t",
            id,
            vec![state(&[1, 2], 1, 0), state(&[2, 3], 2, 0)],
        )]);
        let after = MetadataImage::new("c".into());
        assert_eq!(
            changes(&before, &after, 1),
            vec![Change::DeleteLog {
                tp: TopicPartition::new("t", 0),
                topic_id: id
            }]
        );
    }

    #[test]
    fn a_topic_recreated_under_its_name_deletes_the_old_logs_before_creating_new_ones() {
        let (old_id, new_id) = (new_topic_id(), new_topic_id());
        let before = image_with(vec![topic("t", old_id, vec![state(&[1], 1, 0)])]);
        let after = image_with(vec![topic("t", new_id, vec![state(&[1], 1, 0)])]);
        assert_eq!(
            changes(&before, &after, 1),
            vec![
                Change::DeleteLog {
                    tp: TopicPartition::new("t", 0),
                    topic_id: old_id
                },
                Change::CreateLog {
                    tp: TopicPartition::new("t", 0),
                    topic_id: new_id
                },
                Change::BecomeLeader {
                    tp: TopicPartition::new("t", 0),
                    topic_id: new_id,
                    state: state(&[1], 1, 0)
                },
            ]
        );
    }

    #[test]
    fn a_reassignment_adds_and_removes_replicas() {
        let id = new_topic_id();
        let before = image_with(vec![topic("t", id, vec![state(&[1, 2], 1, 0)])]);
        let after = image_with(vec![topic("t", id, vec![state(&[2, 3], 2, 1)])]);
        assert_eq!(
            changes(&before, &after, 1),
            vec![Change::DeleteLog {
                tp: TopicPartition::new("t", 0),
                topic_id: id
            }]
        );
        assert_eq!(
            changes(&before, &after, 3),
            vec![
                Change::CreateLog {
                    tp: TopicPartition::new("t", 0),
                    topic_id: id
                },
                Change::BecomeFollower {
                    tp: TopicPartition::new("t", 0),
                    topic_id: id,
                    state: state(&[2, 3], 2, 1)
                },
            ]
        );
    }

    #[test]
    fn added_partitions_and_config_changes_reach_hosting_nodes() {
        let id = new_topic_id();
        let before = image_with(vec![topic("t", id, vec![state(&[1], 1, 0)])]);
        let mut grown = topic("t", id, vec![state(&[1], 1, 0), state(&[1], 1, 0)]);
        grown.configs.insert("retention.ms".into(), "1000".into());
        let after = image_with(vec![grown]);
        assert_eq!(
            changes(&before, &after, 1),
            vec![
                Change::CreateLog {
                    tp: TopicPartition::new("t", 1),
                    topic_id: id
                },
                Change::BecomeLeader {
                    tp: TopicPartition::new("t", 1),
                    topic_id: id,
                    state: state(&[1], 1, 0)
                },
                Change::TopicConfig { topic: "t".into() },
            ]
        );
        assert!(changes(&before, &after, 2).is_empty());
    }

    #[test]
    fn led_partitions_lists_this_nodes_leaderships() {
        let image = image_with(vec![topic(
            "__consumer_offsets",
            new_topic_id(),
            vec![state(&[1], 1, 0), state(&[2], 2, 0), state(&[1], 1, 0)],
        )]);
        assert_eq!(
            led_partitions(&image, "__consumer_offsets", 1).collect::<Vec<_>>(),
            vec![0, 2]
        );
        assert_eq!(led_partitions(&image, "missing", 1).count(), 0);
    }
}
