//! Partition reassignment (AlterPartitionReassignments / ListPartitionReassignments), in
//! Kafka's steps:
//! 1. the target's new replicas join `replicas` as `adding_replicas`, the ones leaving are
//!    marked `removing_replicas` (one PartitionChange);
//! 2. the leader's AlterPartition adds the new replicas to the ISR as they catch up;
//! 3. once every target replica is in the ISR, that same ISR change completes the
//!    reassignment: the removed replicas leave `replicas` and the ISR, and a new leader is
//!    elected from the target if the old one is leaving (see
//!    [`super::partitions::PartitionChange`]).
//!
//! A reassignment that only reorders replicas, or whose new replicas are already in sync,
//! completes at once. Cancelling reverts to the original replicas.

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};

use super::partitions::{is_active, Election, PartitionChange};
use super::placement::{placement_brokers, validate_manual_assignment};
use super::{
    ControllerConfig, ControllerError, PartitionResult, ReassignmentTarget, Result,
    TopicPartitionName,
};
use crate::metadata::{MetadataImage, MetadataRecord, PartitionState, TopicImage};

/// A reassignment in progress, as ListPartitionReassignments reports it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct OngoingReassignment {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// All replicas, including those being added and removed.
    pub replicas: Vec<i32>,
    /// Replicas being added.
    pub adding_replicas: Vec<i32>,
    /// Replicas being removed.
    pub removing_replicas: Vec<i32>,
}

/// Decides AlterPartitionReassignments: per target, the first step of the reassignment (or
/// its completion when nothing needs to catch up), or its cancellation when `replicas` is
/// `None`. Per-partition errors, with Kafka's messages: UNKNOWN_TOPIC_OR_PARTITION,
/// INVALID_REPLICA_ASSIGNMENT (see [`validate_manual_assignment`]; a cancellation that
/// would need an unclean election while that is disabled), NO_REASSIGNMENT_IN_PROGRESS.
pub fn alter(
    config: &ControllerConfig,
    image: &MetadataImage,
    targets: &[ReassignmentTarget],
) -> (Vec<MetadataRecord>, Vec<PartitionResult>) {
    let mut records = Vec::new();
    let mut results = Vec::with_capacity(targets.len());
    for target in targets {
        let error = alter_one(config, image, target)
            .map(|record| records.extend(record))
            .err();
        results.push(PartitionResult {
            topic: target.topic.clone(),
            partition: target.partition,
            error,
        });
    }
    (records, results)
}

fn alter_one(
    config: &ControllerConfig,
    image: &MetadataImage,
    target: &ReassignmentTarget,
) -> Result<Option<MetadataRecord>> {
    let topic = image.topic(&target.topic).ok_or_else(|| {
        ControllerError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("Unable to find a topic named {}.", target.topic),
        )
    })?;
    let current = usize::try_from(target.partition)
        .ok()
        .and_then(|i| topic.partitions.get(i))
        .ok_or_else(|| {
            ControllerError::new(
                ResponseError::UnknownTopicOrPartition,
                format!(
                    "Unable to find partition {}:{}.",
                    target.topic, target.partition
                ),
            )
        })?;
    let state = match &target.replicas {
        None => cancel(config, image, topic, target.partition, current)?,
        Some(replicas) => change(image, current, replicas)?,
    };
    Ok(state.map(|state| MetadataRecord::PartitionChange {
        topic_id: topic.id,
        partition: target.partition,
        state,
    }))
}

fn in_progress(p: &PartitionState) -> bool {
    !p.adding_replicas.is_empty() || !p.removing_replicas.is_empty()
}

fn change(
    image: &MetadataImage,
    current: &PartitionState,
    target: &[i32],
) -> Result<Option<PartitionState>> {
    validate_manual_assignment(&placement_brokers(image), target, None)?;
    // Kafka's PartitionReassignmentReplicas: removing = current - target, adding =
    // target - current (both sorted), replicas = target followed by the removing ones.
    let mut removing: Vec<i32> = current
        .replicas
        .iter()
        .copied()
        .filter(|r| !target.contains(r))
        .collect();
    removing.sort_unstable();
    let mut adding: Vec<i32> = target
        .iter()
        .copied()
        .filter(|r| !current.replicas.contains(r))
        .collect();
    adding.sort_unstable();
    let mut replicas = target.to_vec();
    replicas.extend(&removing);
    let acceptable = |r: i32| is_active(image, r);
    let mut builder = PartitionChange::new(current, &acceptable);
    if replicas != current.replicas {
        builder = builder.replicas(replicas);
    }
    if !removing.is_empty() {
        builder = builder.removing(removing);
    }
    if !adding.is_empty() {
        builder = builder.adding(adding);
    }
    Ok(builder.build())
}

fn cancel(
    config: &ControllerConfig,
    image: &MetadataImage,
    topic: &TopicImage,
    partition: i32,
    current: &PartitionState,
) -> Result<Option<PartitionState>> {
    if !in_progress(current) {
        // Kafka throws this with the code's default text, and `ApiError.fromThrowable` sends
        // no message when the text is the default one: the client prints the default.
        return Err(ControllerError::code(
            ResponseError::NoReassignmentInProgress,
        ));
    }
    // Kafka's PartitionReassignmentRevert: the original replicas, the ISR without the
    // replicas being added; if that empties the ISR, the first original replica alone
    // (an unclean election, only when enabled).
    let replicas: Vec<i32> = current
        .replicas
        .iter()
        .copied()
        .filter(|r| !current.adding_replicas.contains(r))
        .collect();
    let mut isr: Vec<i32> = current
        .isr
        .iter()
        .copied()
        .filter(|r| !current.adding_replicas.contains(r))
        .collect();
    let unclean_enabled = config.unclean_election_enabled(image, topic);
    if isr.is_empty() {
        let Some(&first) = replicas.first() else {
            return Err(ControllerError::new(
                ResponseError::InvalidReplicaAssignment,
                "Invalid replica assignment: addingReplicas contains all replicas.",
            ));
        };
        if !unclean_enabled {
            return Err(ControllerError::new(
                ResponseError::InvalidReplicaAssignment,
                format!("Unable to revert partition assignment for {}:{partition} because it would require an unclean leader election.", topic.name),
            ));
        }
        isr.push(first);
    }
    let acceptable = |r: i32| is_active(image, r);
    let election = if unclean_enabled {
        Election::Unclean
    } else {
        Election::Online
    };
    Ok(PartitionChange::new(current, &acceptable)
        .election(election)
        .isr(isr)
        .replicas(replicas)
        .adding(vec![])
        .removing(vec![])
        .build())
}

/// The reassignments in progress among `partitions` (all when `None`), in topic and
/// partition order; unknown topics and partitions are left out, as Kafka does.
pub fn list(
    image: &MetadataImage,
    partitions: Option<&[TopicPartitionName]>,
) -> Vec<OngoingReassignment> {
    let entry = |topic: &TopicImage, index: usize| {
        topic
            .partitions
            .get(index)
            .filter(|p| in_progress(p))
            .map(|p| OngoingReassignment {
                topic: topic.name.clone(),
                partition: index as i32,
                replicas: p.replicas.clone(),
                adding_replicas: p.adding_replicas.clone(),
                removing_replicas: p.removing_replicas.clone(),
            })
    };
    match partitions {
        None => image
            .topics
            .values()
            .flat_map(|t| (0..t.partitions.len()).filter_map(move |i| entry(t, i)))
            .collect(),
        Some(wanted) => wanted
            .iter()
            .filter_map(|tp| {
                let topic = image.topic(&tp.topic)?;
                entry(topic, usize::try_from(tp.partition).ok()?)
            })
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::partitions::{alter_partition, AlterPartition, IsrMember};
    use crate::controller::test_support::*;

    fn target(partition: i32, replicas: Option<Vec<i32>>) -> ReassignmentTarget {
        ReassignmentTarget {
            topic: "t".into(),
            partition,
            replicas,
        }
    }

    fn state(image: &MetadataImage) -> PartitionState {
        image.topic("t").unwrap().partitions[0].clone()
    }

    fn expand_isr(image: &mut MetadataImage, isr: &[i32]) -> i16 {
        let p = state(image);
        let request = AlterPartition {
            broker_id: p.leader,
            broker_epoch: image.brokers[&p.leader].epoch,
            topic_id: image.topic("t").unwrap().id,
            partition: 0,
            leader_epoch: p.leader_epoch,
            partition_epoch: p.partition_epoch,
            new_isr: isr
                .iter()
                .map(|&broker_id| IsrMember {
                    broker_id,
                    broker_epoch: -1,
                })
                .collect(),
        };
        let (records, code, _) =
            alter_partition(&ControllerConfig::default(), image, &request).unwrap();
        commit(image, &records);
        code
    }

    #[test]
    fn moving_a_partition_adds_then_catches_up_then_drops_the_old_replica() {
        let c = ControllerConfig::default();
        let mut image = image_with_brokers(&[1, 2, 3]);
        add_topic(&mut image, "t", vec![partition(&[1, 2], &[1, 2], 1)]);
        let (records, results) = alter(&c, &image, &[target(0, Some(vec![3, 2]))]);
        assert!(results[0].error.is_none());
        commit(&mut image, &records);
        let p = state(&image);
        assert_eq!(p.replicas, vec![3, 2, 1]);
        assert_eq!(
            (p.adding_replicas.clone(), p.removing_replicas.clone()),
            (vec![3], vec![1])
        );
        assert_eq!(p.leader, 1);
        assert_eq!(list(&image, None).len(), 1);
        // The new replica catches up: the leader adds it to the ISR, which completes the
        // reassignment and moves leadership to the target's first replica.
        let code = expand_isr(&mut image, &[1, 2, 3]);
        assert_eq!(code, ResponseError::NewLeaderElected.code());
        let p = state(&image);
        assert_eq!(p.replicas, vec![3, 2]);
        assert_eq!(p.isr, vec![2, 3]);
        assert!(p.adding_replicas.is_empty() && p.removing_replicas.is_empty());
        assert_eq!(p.leader, 3);
        assert!(list(&image, None).is_empty());
    }

    #[test]
    fn reordering_replicas_completes_at_once() {
        let c = ControllerConfig::default();
        let mut image = image_with_brokers(&[1, 2]);
        add_topic(&mut image, "t", vec![partition(&[1, 2], &[1, 2], 1)]);
        let (records, _) = alter(&c, &image, &[target(0, Some(vec![2, 1]))]);
        commit(&mut image, &records);
        let p = state(&image);
        assert_eq!((p.replicas, p.leader), (vec![2, 1], 1));
        assert!(list(&image, None).is_empty());
    }

    #[test]
    fn cancelling_reverts_to_the_original_replicas() {
        let c = ControllerConfig::default();
        let mut image = image_with_brokers(&[1, 2, 3]);
        add_topic(&mut image, "t", vec![partition(&[1, 2], &[1, 2], 1)]);
        let (records, _) = alter(&c, &image, &[target(0, Some(vec![3, 2]))]);
        commit(&mut image, &records);
        let (records, results) = alter(&c, &image, &[target(0, None)]);
        assert!(results[0].error.is_none());
        commit(&mut image, &records);
        let p = state(&image);
        assert_eq!(
            (p.replicas.clone(), p.isr.clone(), p.leader),
            (vec![2, 1], vec![1, 2], 1)
        );
        assert!(p.adding_replicas.is_empty() && p.removing_replicas.is_empty());
        let (_, results) = alter(&c, &image, &[target(0, None)]);
        assert!(results[0]
            .error
            .as_ref()
            .unwrap()
            .is(ResponseError::NoReassignmentInProgress));
    }

    #[test]
    fn bad_targets_get_per_partition_errors() {
        let c = ControllerConfig::default();
        let mut image = image_with_brokers(&[1, 2]);
        add_topic(&mut image, "t", vec![partition(&[1, 2], &[1, 2], 1)]);
        let (records, results) = alter(
            &c,
            &image,
            &[
                target(0, Some(vec![1, 9])),
                target(5, Some(vec![1])),
                ReassignmentTarget {
                    topic: "x".into(),
                    partition: 0,
                    replicas: Some(vec![1]),
                },
            ],
        );
        assert!(records.is_empty());
        let codes: Vec<i16> = results
            .iter()
            .map(|r| r.error.as_ref().unwrap().code)
            .collect();
        assert_eq!(
            codes,
            vec![
                ResponseError::InvalidReplicaAssignment.code(),
                ResponseError::UnknownTopicOrPartition.code(),
                ResponseError::UnknownTopicOrPartition.code()
            ]
        );
    }
}
