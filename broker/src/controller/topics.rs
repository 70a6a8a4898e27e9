//! Topic administration decisions: CreateTopics, CreatePartitions, DeleteTopics and config
//! changes, checked as Kafka's controller checks them and turned into metadata records.
//! The broker applies the committed records (creates and deletes logs); nothing here touches
//! a disk.

use std::collections::BTreeMap;

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::placement::{self, PlacementBroker};
use super::{ControllerConfig, ControllerError, Result};
use crate::config;
use crate::metadata::{
    self, topic_name, MetadataImage, MetadataRecord, PartitionState, TopicImage,
};

/// Kafka's limit on partitions created by one request is the controller's mutation quota;
/// we refuse absurd counts outright so a typo cannot create a million directories.
pub const MAX_PARTITIONS_PER_TOPIC: i32 = 100_000;

/// A topic to create, as CreateTopics or auto-creation ask for it. The default leaves the
/// counts to the controller (-1), as a CreateTopics request without them does.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct NewTopic {
    /// Topic name.
    pub name: String,
    /// -1 for `num.partitions`.
    pub num_partitions: i32,
    /// -1 for `default.replication.factor`.
    pub replication_factor: i16,
    /// Manual assignment: replica broker ids per partition index (empty = let the
    /// controller place).
    pub assignments: BTreeMap<i32, Vec<i32>>,
    /// Topic config overrides.
    pub configs: BTreeMap<String, String>,
}

impl Default for NewTopic {
    fn default() -> Self {
        NewTopic {
            name: String::new(),
            num_partitions: -1,
            replication_factor: -1,
            assignments: BTreeMap::new(),
            configs: BTreeMap::new(),
        }
    }
}

fn config_error(e: config::ConfigError) -> ControllerError {
    ControllerError {
        code: e.kafka_code(),
        message: Some(e.to_string()),
        active_controller: None,
    }
}

fn unknown_topic(name: &str) -> ControllerError {
    ControllerError::new(
        ResponseError::UnknownTopicOrPartition,
        format!("The topic '{name}' does not exist."),
    )
}

/// A new partition on `replicas`: the ISR is its usable replicas and the leader the first
/// of them (Kafka's `buildPartitionRegistration`).
fn new_partition(replicas: Vec<i32>, isr: Vec<i32>) -> PartitionState {
    PartitionState {
        leader: isr.first().copied().unwrap_or(-1),
        isr,
        replicas,
        ..PartitionState::default()
    }
}

/// The topic `new` describes, checked against `image` as Kafka's controller checks
/// CreateTopics: a valid name that collides with no existing topic, valid configs, counts
/// or a manual assignment, and a placement over `brokers`. Errors carry Kafka's code and
/// message. The topic id is fresh.
pub fn plan_topic(
    image: &MetadataImage,
    brokers: &[PlacementBroker],
    defaults: &ControllerConfig,
    new: NewTopic,
) -> Result<TopicImage> {
    let invalid_topic = |m: String| ControllerError::new(ResponseError::InvalidTopicException, m);
    topic_name::validate(&new.name).map_err(|e| invalid_topic(e.to_string()))?;
    if image.topic(&new.name).is_some() {
        return Err(ControllerError::new(
            ResponseError::TopicAlreadyExists,
            format!("Topic '{}' already exists.", new.name),
        ));
    }
    let unified = topic_name::unify_collision_chars(&new.name);
    if let Some(other) = image
        .topics
        .keys()
        .find(|t| topic_name::unify_collision_chars(t) == unified)
    {
        return Err(invalid_topic(format!(
            "Topic '{}' collides with existing topic: {other}",
            new.name
        )));
    }
    for (key, value) in &new.configs {
        config::validate_topic_config(key, value).map_err(config_error)?;
    }
    let partitions: Vec<PartitionState> = if !new.assignments.is_empty() {
        if new.replication_factor != -1 {
            return Err(ControllerError::new(
                ResponseError::InvalidRequest,
                "A manual partition assignment was specified, but replication factor was not set to -1.",
            ));
        }
        if new.num_partitions != -1 {
            return Err(ControllerError::new(
                ResponseError::InvalidRequest,
                "A manual partition assignment was specified, but numPartitions was not set to -1.",
            ));
        }
        let mut out = Vec::with_capacity(new.assignments.len());
        let mut replication_factor = None;
        for (index, replicas) in &new.assignments {
            placement::validate_manual_assignment(brokers, replicas, replication_factor)?;
            replication_factor = Some(replicas.len());
            let isr = placement::initial_isr(brokers, replicas);
            if isr.is_empty() {
                return Err(ControllerError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!("All brokers specified in the manual partition assignment for partition {index} are fenced or in controlled shutdown."),
                ));
            }
            out.push(new_partition(replicas.clone(), isr));
        }
        if new
            .assignments
            .keys()
            .enumerate()
            .any(|(expected, index)| *index != expected as i32)
        {
            return Err(ControllerError::new(
                ResponseError::InvalidReplicaAssignment,
                "partitions should be a consecutive 0-based integer sequence",
            ));
        }
        out
    } else {
        if new.replication_factor < -1 || new.replication_factor == 0 {
            return Err(ControllerError::new(
                ResponseError::InvalidReplicationFactor,
                "Replication factor must be larger than 0, or -1 to use the default value.",
            ));
        }
        if new.num_partitions < -1 || new.num_partitions == 0 {
            return Err(ControllerError::new(
                ResponseError::InvalidPartitions,
                "Number of partitions was set to an invalid non-positive value.",
            ));
        }
        let count = match new.num_partitions {
            -1 => defaults.num_partitions,
            n => n,
        };
        if count <= 0 {
            return Err(ControllerError::new(
                ResponseError::InvalidPartitions,
                "Number of partitions was set to an invalid non-positive value.",
            ));
        }
        if count > MAX_PARTITIONS_PER_TOPIC {
            return Err(ControllerError::new(
                ResponseError::InvalidPartitions,
                format!("Number of partitions {count} exceeds the limit of {MAX_PARTITIONS_PER_TOPIC} per topic."),
            ));
        }
        let rf = match new.replication_factor {
            -1 => defaults.default_replication_factor,
            n => n,
        };
        placed_partitions(brokers, 0, count, rf, placement::seed_for(&new.name))?
    };
    Ok(TopicImage {
        name: new.name,
        id: metadata::new_topic_id(),
        partitions,
        configs: new.configs,
    })
}

fn placed_partitions(
    brokers: &[PlacementBroker],
    first: i32,
    count: i32,
    rf: i16,
    seed: u64,
) -> Result<Vec<PartitionState>> {
    placement::place(brokers, first, count, rf, seed)?
        .into_iter()
        .map(|replicas| {
            let isr = placement::initial_isr(brokers, &replicas);
            if isr.is_empty() {
                return Err(ControllerError::new(
                    ResponseError::InvalidReplicationFactor,
                    format!("Unable to replicate the partition {rf} time(s): All brokers are currently fenced or in controlled shutdown."),
                ));
            }
            Ok(new_partition(replicas, isr))
        })
        .collect()
}

/// The partitions CreatePartitions adds to `name` to reach `count`, placed over `brokers`
/// with the topic's replication factor, or on `assignments` (one replica list per new
/// partition). Decreases and no-ops are INVALID_PARTITIONS with Kafka's messages.
pub fn plan_create_partitions(
    image: &MetadataImage,
    brokers: &[PlacementBroker],
    name: &str,
    count: i32,
    assignments: Option<&[Vec<i32>]>,
) -> Result<Vec<PartitionState>> {
    let topic = image.topic(name).ok_or_else(|| unknown_topic(name))?;
    let current = topic.partitions.len() as i32;
    if count == current {
        return Err(ControllerError::new(
            ResponseError::InvalidPartitions,
            format!("Topic already has {current} partition(s)."),
        ));
    }
    if count < current {
        return Err(ControllerError::new(
            ResponseError::InvalidPartitions,
            format!("The topic {name} currently has {current} partition(s); {count} would not be an increase."),
        ));
    }
    if count > MAX_PARTITIONS_PER_TOPIC {
        return Err(ControllerError::new(
            ResponseError::InvalidPartitions,
            format!("Number of partitions {count} exceeds the limit of {MAX_PARTITIONS_PER_TOPIC} per topic."),
        ));
    }
    let additional = count - current;
    let rf = topic
        .partitions
        .first()
        .map(|p| p.replicas.len())
        .unwrap_or(1);
    match assignments {
        Some(assignments) => {
            if assignments.len() as i32 != additional {
                return Err(ControllerError::new(
                    ResponseError::InvalidReplicaAssignment,
                    format!(
                        "Attempted to add {additional} additional partition(s), but only {} assignment(s) were specified.",
                        assignments.len()
                    ),
                ));
            }
            let mut out = Vec::with_capacity(assignments.len());
            for (i, replicas) in assignments.iter().enumerate() {
                placement::validate_manual_assignment(brokers, replicas, Some(rf))?;
                let isr = placement::initial_isr(brokers, replicas);
                if isr.is_empty() {
                    return Err(ControllerError::new(
                        ResponseError::InvalidReplicaAssignment,
                        format!("All brokers specified in the manual partition assignment for partition {} are fenced or in controlled shutdown.", current + i as i32),
                    ));
                }
                out.push(new_partition(replicas.clone(), isr));
            }
            Ok(out)
        }
        None => {
            let rf = i16::try_from(rf).map_err(|_| {
                ControllerError::new(
                    ResponseError::UnknownServerError,
                    format!("Invalid replication factor {rf}: expected a number equal to less than 32767"),
                )
            })?;
            placed_partitions(brokers, current, additional, rf, placement::seed_for(name))
        }
    }
}

/// The record deleting topic `name`, and its id. Internal topics cannot be deleted
/// (INVALID_REQUEST), nor any topic when `delete.topic.enable` is false
/// (TOPIC_DELETION_DISABLED).
pub fn plan_delete_topic(
    image: &MetadataImage,
    config: &ControllerConfig,
    name: &str,
) -> Result<(MetadataRecord, Uuid)> {
    let topic = image
        .topic(name)
        .ok_or_else(|| ControllerError::code(ResponseError::UnknownTopicOrPartition))?;
    if topic_name::is_internal(name) {
        return Err(ControllerError::new(
            ResponseError::InvalidRequest,
            format!("Topic {name} is an internal topic and cannot be deleted."),
        ));
    }
    if !config.delete_topic_enable {
        return Err(ControllerError::code(ResponseError::TopicDeletionDisabled));
    }
    Ok((
        MetadataRecord::RemoveTopic {
            name: name.to_string(),
        },
        topic.id,
    ))
}

/// The record replacing topic `name`'s config overrides with `configs`, each checked as
/// Kafka checks topic configs.
pub fn plan_topic_configs(
    image: &MetadataImage,
    name: &str,
    configs: BTreeMap<String, String>,
) -> Result<MetadataRecord> {
    if image.topic(name).is_none() {
        return Err(unknown_topic(name));
    }
    for (key, value) in &configs {
        config::validate_topic_config(key, value).map_err(config_error)?;
    }
    Ok(MetadataRecord::TopicConfigs {
        topic: name.to_string(),
        configs,
    })
}

/// The record replacing a broker entity's dynamic configs (`""` = cluster default), checked
/// as Kafka checks dynamic broker configs.
pub fn plan_broker_configs(
    entity: &str,
    configs: BTreeMap<String, String>,
) -> Result<MetadataRecord> {
    config::validate_broker_dynamic_configs(&configs, !entity.is_empty()).map_err(config_error)?;
    Ok(MetadataRecord::BrokerConfigs {
        entity: entity.to_string(),
        configs,
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::test_support::*;

    fn topic(name: &str, partitions: i32, rf: i16) -> NewTopic {
        NewTopic {
            name: name.into(),
            num_partitions: partitions,
            replication_factor: rf,
            ..NewTopic::default()
        }
    }

    #[test]
    fn a_new_topic_is_spread_over_the_registered_brokers() {
        let image = image_with_brokers(&[0, 1, 2]);
        let brokers = placement::placement_brokers(&image);
        let t = plan_topic(
            &image,
            &brokers,
            &ControllerConfig::default(),
            topic("t", 6, 3),
        )
        .unwrap();
        assert_eq!(t.partitions.len(), 6);
        for p in &t.partitions {
            assert_eq!(p.replicas.len(), 3);
            assert_eq!(p.isr, p.replicas);
            assert_eq!(p.leader, p.replicas[0]);
        }
        let mut leaders: Vec<i32> = t.partitions.iter().map(|p| p.leader).collect();
        leaders.sort_unstable();
        assert_eq!(leaders, vec![0, 0, 1, 1, 2, 2]);
    }

    #[test]
    fn defaults_come_from_the_config() {
        let image = image_with_brokers(&[0, 1]);
        let brokers = placement::placement_brokers(&image);
        let defaults = ControllerConfig {
            num_partitions: 4,
            default_replication_factor: 2,
            ..ControllerConfig::default()
        };
        let t = plan_topic(&image, &brokers, &defaults, topic("t", -1, -1)).unwrap();
        assert_eq!(t.partitions.len(), 4);
        assert!(t.partitions.iter().all(|p| p.replicas.len() == 2));
    }

    #[test]
    fn too_few_brokers_is_invalid_replication_factor() {
        let image = image_with_brokers(&[0]);
        let brokers = placement::placement_brokers(&image);
        let err = plan_topic(
            &image,
            &brokers,
            &ControllerConfig::default(),
            topic("t", 1, 3),
        )
        .unwrap_err();
        assert!(err.is(ResponseError::InvalidReplicationFactor));
        assert_eq!(err.message.as_deref(), Some("Unable to replicate the partition 3 time(s): The target replication factor of 3 cannot be reached because only 1 broker(s) are registered."));
    }

    #[test]
    fn manual_assignments_leave_fenced_brokers_out_of_the_isr() {
        let mut image = image_with_brokers(&[0, 1, 2]);
        set_broker(&mut image, 1, true, false);
        let brokers = placement::placement_brokers(&image);
        let mut new = topic("t", -1, -1);
        new.assignments.insert(0, vec![1, 2]);
        new.assignments.insert(1, vec![2, 0]);
        let t = plan_topic(&image, &brokers, &ControllerConfig::default(), new.clone()).unwrap();
        assert_eq!(
            (t.partitions[0].leader, &t.partitions[0].isr),
            (2, &vec![2])
        );
        new.assignments.insert(2, vec![0]);
        let err =
            plan_topic(&image, &brokers, &ControllerConfig::default(), new.clone()).unwrap_err();
        assert!(err.is(ResponseError::InvalidReplicaAssignment));
        new.assignments.clear();
        new.assignments.insert(0, vec![1]);
        let err = plan_topic(&image, &brokers, &ControllerConfig::default(), new).unwrap_err();
        assert_eq!(err.message.as_deref(), Some("All brokers specified in the manual partition assignment for partition 0 are fenced or in controlled shutdown."));
    }

    #[test]
    fn manual_assignment_with_counts_is_invalid_request() {
        let image = image_with_brokers(&[0]);
        let brokers = placement::placement_brokers(&image);
        let mut new = topic("t", 1, -1);
        new.assignments.insert(0, vec![0]);
        let err = plan_topic(&image, &brokers, &ControllerConfig::default(), new).unwrap_err();
        assert!(err.is(ResponseError::InvalidRequest));
    }

    #[test]
    fn existing_and_colliding_names_are_refused() {
        let mut image = image_with_brokers(&[0]);
        add_topic(&mut image, "a.b", vec![partition(&[0], &[0], 0)]);
        let brokers = placement::placement_brokers(&image);
        let c = ControllerConfig::default();
        let err = plan_topic(&image, &brokers, &c, topic("a.b", 1, 1)).unwrap_err();
        assert!(err.is(ResponseError::TopicAlreadyExists));
        let err = plan_topic(&image, &brokers, &c, topic("a_b", 1, 1)).unwrap_err();
        assert!(err.is(ResponseError::InvalidTopicException));
    }

    #[test]
    fn create_partitions_keeps_the_replication_factor_and_checks_counts() {
        let mut image = image_with_brokers(&[0, 1, 2]);
        add_topic(
            &mut image,
            "t",
            vec![
                partition(&[0, 1], &[0, 1], 0),
                partition(&[1, 2], &[1, 2], 1),
            ],
        );
        let brokers = placement::placement_brokers(&image);
        let added = plan_create_partitions(&image, &brokers, "t", 5, None).unwrap();
        assert_eq!(added.len(), 3);
        assert!(added.iter().all(|p| p.replicas.len() == 2));
        let err = plan_create_partitions(&image, &brokers, "t", 2, None).unwrap_err();
        assert_eq!(
            err.message.as_deref(),
            Some("Topic already has 2 partition(s).")
        );
        let err = plan_create_partitions(&image, &brokers, "t", 1, None).unwrap_err();
        assert_eq!(
            err.message.as_deref(),
            Some("The topic t currently has 2 partition(s); 1 would not be an increase.")
        );
        let err = plan_create_partitions(&image, &brokers, "t", 3, Some(&[vec![0]])).unwrap_err();
        assert!(err.is(ResponseError::InvalidReplicaAssignment));
        let err =
            plan_create_partitions(&image, &brokers, "t", 4, Some(&[vec![0, 1]])).unwrap_err();
        assert_eq!(err.message.as_deref(), Some("Attempted to add 2 additional partition(s), but only 1 assignment(s) were specified."));
        let ok = plan_create_partitions(&image, &brokers, "t", 3, Some(&[vec![2, 0]])).unwrap();
        assert_eq!(ok[0].replicas, vec![2, 0]);
        let err = plan_create_partitions(&image, &brokers, "nope", 3, None).unwrap_err();
        assert!(err.is(ResponseError::UnknownTopicOrPartition));
    }

    #[test]
    fn deletion_refuses_internal_topics_and_honours_delete_topic_enable() {
        let mut image = image_with_brokers(&[0]);
        add_topic(
            &mut image,
            "__consumer_offsets",
            vec![partition(&[0], &[0], 0)],
        );
        let id = add_topic(&mut image, "t", vec![partition(&[0], &[0], 0)]);
        let mut c = ControllerConfig::default();
        let err = plan_delete_topic(&image, &c, "__consumer_offsets").unwrap_err();
        assert!(err.is(ResponseError::InvalidRequest));
        assert_eq!(plan_delete_topic(&image, &c, "t").unwrap().1, id);
        c.delete_topic_enable = false;
        let err = plan_delete_topic(&image, &c, "t").unwrap_err();
        assert!(err.is(ResponseError::TopicDeletionDisabled));
    }

    #[test]
    fn topic_configs_are_validated() {
        let mut image = image_with_brokers(&[0]);
        add_topic(&mut image, "t", vec![partition(&[0], &[0], 0)]);
        let bad: BTreeMap<String, String> =
            [("retention.ms".to_string(), "abc".to_string())].into();
        assert!(plan_topic_configs(&image, "t", bad).is_err());
        let good: BTreeMap<String, String> =
            [("retention.ms".to_string(), "1000".to_string())].into();
        assert!(plan_topic_configs(&image, "t", good.clone()).is_ok());
        assert!(plan_topic_configs(&image, "x", good)
            .unwrap_err()
            .is(ResponseError::UnknownTopicOrPartition));
    }
}
