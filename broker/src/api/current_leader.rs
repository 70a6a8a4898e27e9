//! KIP-951 leader discovery: a Produce (v10+) or Fetch (v16+) partition answered
//! NOT_LEADER_OR_FOLLOWER (or, for Fetch, FENCED_LEADER_EPOCH) names the partition's current
//! leader and epoch as this broker knows them, and the response carries that leader's
//! endpoint on the request's listener (`NodeEndpoints`).
//!
//! Why it matters: a client that learns the new leader from the error itself sends its next
//! batch there at once instead of waiting for a metadata refresh (`retry.backoff.ms` and a
//! round trip). With `retries=0` (Kafka's verifiable producer), every batch sent to the old
//! leader in that window fails, so without the hint a leadership move costs a hundred
//! milliseconds of failed sends rather than the few already in flight.
//!
//! As Kafka's `KafkaApis.getCurrentLeader`: the leader id and epoch come from this broker's
//! metadata (-1/-1 for a partition it does not know); the endpoint is added only when that
//! leader is a live broker with an endpoint on the listener the request arrived on.

use std::collections::BTreeMap;

use crate::metadata::MetadataImage;

use super::Ctx;

/// The current leader of a partition as this broker's metadata says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct CurrentLeader {
    /// Leader's broker id; -1 when unknown or offline.
    pub(crate) leader_id: i32,
    /// Leader epoch; -1 when the partition is unknown.
    pub(crate) leader_epoch: i32,
}

/// A broker's address on one listener: host, port, rack.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Endpoint {
    pub(crate) host: String,
    pub(crate) port: i32,
    pub(crate) rack: Option<String>,
}

/// The leaders' endpoints a response names, by broker id (each once, in id order).
#[derive(Debug, Default)]
pub(crate) struct NodeEndpoints(BTreeMap<i32, Endpoint>);

impl NodeEndpoints {
    /// Looks up the current leader of `topic`-`partition` and remembers its endpoint on the
    /// request's listener, if it has one.
    pub(crate) fn leader_of(
        &mut self,
        ctx: &Ctx<'_>,
        image: &MetadataImage,
        topic: &str,
        partition: i32,
    ) -> CurrentLeader {
        let leader = current_leader(image, topic, partition);
        if leader.leader_id >= 0 && !self.0.contains_key(&leader.leader_id) {
            let listener = ctx.listener.name.as_str();
            if let Some((host, port)) = ctx.broker.endpoint_of(image, leader.leader_id, listener) {
                let rack = ctx.broker.rack_of(image, leader.leader_id);
                self.0
                    .insert(leader.leader_id, Endpoint { host, port, rack });
            }
        }
        leader
    }

    /// The endpoints collected, by broker id.
    pub(crate) fn into_entries(self) -> impl Iterator<Item = (i32, Endpoint)> {
        self.0.into_iter()
    }
}

/// The leader and epoch of `topic`-`partition` in `image`; -1/-1 when it is not there.
pub(crate) fn current_leader(image: &MetadataImage, topic: &str, partition: i32) -> CurrentLeader {
    usize::try_from(partition)
        .ok()
        .and_then(|i| image.topic(topic)?.partitions.get(i))
        .map(|p| CurrentLeader {
            leader_id: p.leader,
            leader_epoch: p.leader_epoch,
        })
        .unwrap_or(CurrentLeader {
            leader_id: -1,
            leader_epoch: -1,
        })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{PartitionState, TopicImage};

    fn image_with(leader: i32, epoch: i32) -> MetadataImage {
        let mut image = MetadataImage::new("c".into());
        image.topics.insert(
            "t".into(),
            TopicImage {
                name: "t".into(),
                id: uuid::Uuid::new_v4(),
                partitions: vec![PartitionState {
                    replicas: vec![1, 2],
                    isr: vec![1, 2],
                    leader,
                    leader_epoch: epoch,
                    ..PartitionState::default()
                }],
                configs: BTreeMap::new(),
            },
        );
        image
    }

    #[test]
    fn names_the_leader_and_epoch_the_image_holds() {
        let image = image_with(2, 7);
        assert_eq!(
            current_leader(&image, "t", 0),
            CurrentLeader {
                leader_id: 2,
                leader_epoch: 7
            }
        );
    }

    #[test]
    fn unknown_topics_and_partitions_have_no_leader() {
        let image = image_with(2, 7);
        let none = CurrentLeader {
            leader_id: -1,
            leader_epoch: -1,
        };
        assert_eq!(current_leader(&image, "t", 1), none);
        assert_eq!(current_leader(&image, "t", -1), none);
        assert_eq!(current_leader(&image, "other", 0), none);
    }
}
