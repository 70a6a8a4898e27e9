//! What to do to make a topic in Kafka match its KafkaTopic: a pure function of the manifest
//! and of what Kafka reported, unit-tested without a cluster.
//!
//! Rules (issue 10; Strimzi's unidirectional topic operator in spirit, Kubernetes is the
//! source of truth):
//! - a missing topic is created with the manifest's partitions, replicas and configs (unset
//!   ones take the cluster's defaults);
//! - partitions are raised, never lowered: a manifest asking for fewer partitions than the
//!   topic has (lowered in the manifest, or raised directly in Kafka) is refused with a
//!   reason and the topic's partitions are left alone;
//! - a different replication factor becomes a reassignment whose placement [`place`]
//!   computes; one above the number of brokers is refused; none is planned while a
//!   reassignment of the topic is still running;
//! - configs: a key whose value in Kafka differs is set; a key set on the topic in Kafka but
//!   absent from the manifest is deleted (reset to the cluster's default), so a config
//!   altered directly in Kafka is brought back to the manifest.
//!
//! A refusal never stops the other changes: they touch different things.

use std::collections::{BTreeMap, BTreeSet};

/// The topic as Kafka describes it.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ObservedTopic {
    /// The topic id, as `kafka-topics.sh --describe` prints it.
    pub topic_id: String,
    /// Each partition's replicas, by partition index (`partitions[i]` is partition `i`).
    pub partitions: Vec<Vec<i32>>,
    /// Configs set on the topic itself (DescribeConfigs source `DYNAMIC_TOPIC_CONFIG`).
    pub configs: BTreeMap<String, String>,
    /// Partitions Kafka is reassigning now (ListPartitionReassignments).
    pub reassigning: BTreeSet<i32>,
}

/// A broker that can hold replicas.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Node id.
    pub id: i32,
    /// `broker.rack`, if set.
    pub rack: Option<String>,
}

/// What the manifest asks for.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct DesiredTopic {
    /// Partitions; `None` keeps whatever Kafka has (the cluster default at creation).
    pub partitions: Option<i32>,
    /// Replication factor; `None` likewise.
    pub replicas: Option<i32>,
    /// Topic configs, as text.
    pub configs: BTreeMap<String, String>,
}

/// One change to make in Kafka.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    /// CreateTopics; `None` means the cluster default (-1 on the wire).
    Create {
        /// Partitions.
        partitions: Option<i32>,
        /// Replication factor.
        replicas: Option<i32>,
        /// Configs.
        configs: BTreeMap<String, String>,
    },
    /// CreatePartitions up to `count` partitions in all.
    RaisePartitions {
        /// The new partition count.
        count: i32,
    },
    /// IncrementalAlterConfigs: SET these, DELETE those.
    AlterConfigs {
        /// Keys to set, with their values.
        set: BTreeMap<String, String>,
        /// Keys to reset to the default.
        delete: Vec<String>,
    },
    /// AlterPartitionReassignments to these replica lists.
    Reassign {
        /// `(partition, replicas)`; the first replica is the preferred leader.
        assignments: Vec<(i32, Vec<i32>)>,
    },
}

/// A change the manifest asks for that Kafka cannot make.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// CamelCase reason for the condition.
    pub reason: String,
    /// What a human needs to know.
    pub message: String,
}

/// The changes to make now and the ones refused.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Plan {
    /// In this order.
    pub changes: Vec<Change>,
    /// Refused, with reasons; nothing of these is touched.
    pub refusals: Vec<Refusal>,
}

/// The plan that brings `observed` (`None`: no such topic) to `desired` on `brokers`.
pub fn plan(desired: &DesiredTopic, observed: Option<&ObservedTopic>, brokers: &[Broker]) -> Plan {
    let mut plan = Plan::default();
    let Some(observed) = observed else {
        plan.changes.push(Change::Create {
            partitions: desired.partitions,
            replicas: desired.replicas,
            configs: desired.configs.clone(),
        });
        return plan;
    };

    let current = observed.partitions.len() as i32;
    match desired.partitions {
        Some(p) if p > current => plan.changes.push(Change::RaisePartitions { count: p }),
        Some(p) if p < current => plan.refusals.push(Refusal {
            reason: "PartitionDecreaseNotSupported".to_string(),
            message: format!(
                "spec.partitions is {p} but the topic has {current} partitions: Kafka cannot \
                 remove partitions (raise spec.partitions to {current}, or delete and recreate \
                 the topic); the partitions are left as they are"
            ),
        }),
        _ => {}
    }

    let set: BTreeMap<String, String> = desired
        .configs
        .iter()
        .filter(|(k, v)| observed.configs.get(*k) != Some(*v))
        .map(|(k, v)| (k.clone(), v.clone()))
        .collect();
    let delete: Vec<String> = observed
        .configs
        .keys()
        .filter(|k| !desired.configs.contains_key(*k))
        .cloned()
        .collect();
    if !set.is_empty() || !delete.is_empty() {
        plan.changes.push(Change::AlterConfigs { set, delete });
    }

    if let Some(rf) = desired.replicas {
        let differs = observed.partitions.iter().any(|r| r.len() as i32 != rf);
        if differs && rf as usize > brokers.len() {
            plan.refusals.push(Refusal {
                reason: "ReplicationFactorTooHigh".to_string(),
                message: format!(
                    "spec.replicas is {rf} but the cluster has {} broker(s): each replica needs \
                     its own broker; the replicas are left as they are",
                    brokers.len()
                ),
            });
        } else if differs && observed.reassigning.is_empty() {
            let assignments = place(&observed.partitions, rf, brokers);
            if !assignments.is_empty() {
                plan.changes.push(Change::Reassign { assignments });
            }
        }
    }
    plan
}

/// New replica lists giving every partition `rf` replicas, for the partitions whose count
/// differs. A partition keeps its current replicas in order (its preferred leader stays
/// first, so leadership does not move): growing adds the brokers holding the fewest replicas
/// of this topic, preferring racks the partition does not use yet; shrinking drops the
/// replicas on the most loaded brokers, never the first.
pub fn place(partitions: &[Vec<i32>], rf: i32, brokers: &[Broker]) -> Vec<(i32, Vec<i32>)> {
    let rf = rf.max(1) as usize;
    let known: BTreeSet<i32> = brokers.iter().map(|b| b.id).collect();
    let rack_of = |id: i32| {
        brokers
            .iter()
            .find(|b| b.id == id)
            .and_then(|b| b.rack.clone())
    };
    // Replicas per broker over the whole topic, updated as the plan goes.
    let mut load: BTreeMap<i32, usize> = known.iter().map(|&id| (id, 0)).collect();
    for replicas in partitions {
        for r in replicas {
            *load.entry(*r).or_insert(0) += 1;
        }
    }
    let mut out = Vec::new();
    for (index, current) in partitions.iter().enumerate() {
        if current.len() == rf {
            continue;
        }
        let mut replicas = current.clone();
        while replicas.len() > rf {
            // Drop the most loaded broker's replica, never the preferred leader.
            let Some((pos, _)) = replicas
                .iter()
                .enumerate()
                .skip(1)
                .max_by_key(|(pos, id)| (load.get(id).copied().unwrap_or(0), *pos))
            else {
                break;
            };
            let id = replicas.remove(pos);
            if let Some(n) = load.get_mut(&id) {
                *n = n.saturating_sub(1);
            }
        }
        while replicas.len() < rf {
            let used_racks: BTreeSet<Option<String>> =
                replicas.iter().map(|&id| rack_of(id)).collect();
            // Fewest replicas first, a new rack before a used one, then rotate by partition
            // so equal brokers take turns.
            let candidate = known
                .iter()
                .filter(|id| !replicas.contains(id))
                .min_by_key(|&&id| {
                    let rack_used = rack_of(id).is_some() && used_racks.contains(&rack_of(id));
                    let rotation = (id as i64 - index as i64).rem_euclid(known.len() as i64 + 1);
                    (rack_used, load.get(&id).copied().unwrap_or(0), rotation)
                })
                .copied();
            let Some(id) = candidate else { break };
            replicas.push(id);
            *load.entry(id).or_insert(0) += 1;
        }
        out.push((index as i32, replicas));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(n: i32) -> Vec<Broker> {
        (0..n).map(|id| Broker { id, rack: None }).collect()
    }

    fn configs(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn observed(partitions: Vec<Vec<i32>>, cfg: &[(&str, &str)]) -> ObservedTopic {
        ObservedTopic {
            topic_id: "id".into(),
            partitions,
            configs: configs(cfg),
            reassigning: BTreeSet::new(),
        }
    }

    #[test]
    fn a_missing_topic_is_created_as_asked() {
        let d = DesiredTopic {
            partitions: Some(3),
            replicas: None,
            configs: configs(&[("retention.ms", "1000")]),
        };
        let p = plan(&d, None, &brokers(3));
        assert_eq!(
            p.changes,
            vec![Change::Create {
                partitions: Some(3),
                replicas: None,
                configs: configs(&[("retention.ms", "1000")])
            }]
        );
        assert!(p.refusals.is_empty());
    }

    #[test]
    fn a_matching_topic_needs_nothing() {
        let d = DesiredTopic {
            partitions: Some(2),
            replicas: Some(1),
            configs: configs(&[("cleanup.policy", "compact")]),
        };
        let o = observed(vec![vec![0], vec![1]], &[("cleanup.policy", "compact")]);
        assert_eq!(plan(&d, Some(&o), &brokers(3)), Plan::default());
        // Unset partitions and replicas keep whatever the topic has.
        let unset = DesiredTopic {
            configs: configs(&[("cleanup.policy", "compact")]),
            ..DesiredTopic::default()
        };
        assert_eq!(plan(&unset, Some(&o), &brokers(3)), Plan::default());
    }

    #[test]
    fn partitions_are_raised_and_a_decrease_is_refused_without_touching_the_rest() {
        let o = observed(vec![vec![0], vec![1], vec![2]], &[]);
        let up = DesiredTopic {
            partitions: Some(5),
            ..DesiredTopic::default()
        };
        assert_eq!(
            plan(&up, Some(&o), &brokers(3)).changes,
            vec![Change::RaisePartitions { count: 5 }]
        );
        let down = DesiredTopic {
            partitions: Some(2),
            configs: configs(&[("retention.ms", "5")]),
            ..DesiredTopic::default()
        };
        let p = plan(&down, Some(&o), &brokers(3));
        assert_eq!(p.refusals.len(), 1);
        assert_eq!(p.refusals[0].reason, "PartitionDecreaseNotSupported");
        assert!(
            p.refusals[0].message.contains("has 3"),
            "{}",
            p.refusals[0].message
        );
        // The config change still happens.
        assert_eq!(
            p.changes,
            vec![Change::AlterConfigs {
                set: configs(&[("retention.ms", "5")]),
                delete: vec![]
            }]
        );
    }

    #[test]
    fn configs_altered_in_kafka_are_brought_back_and_extra_keys_reset() {
        let d = DesiredTopic {
            configs: configs(&[("retention.ms", "1000"), ("segment.bytes", "1048576")]),
            ..DesiredTopic::default()
        };
        let o = observed(
            vec![vec![0]],
            &[
                ("retention.ms", "999"),
                ("segment.bytes", "1048576"),
                ("max.message.bytes", "10"),
            ],
        );
        assert_eq!(
            plan(&d, Some(&o), &brokers(1)).changes,
            vec![Change::AlterConfigs {
                set: configs(&[("retention.ms", "1000")]),
                delete: vec!["max.message.bytes".into()],
            }]
        );
    }

    #[test]
    fn a_replication_factor_above_the_broker_count_is_refused() {
        let d = DesiredTopic {
            replicas: Some(4),
            ..DesiredTopic::default()
        };
        let o = observed(vec![vec![0], vec![1]], &[]);
        let p = plan(&d, Some(&o), &brokers(3));
        assert!(p.changes.is_empty());
        assert_eq!(p.refusals[0].reason, "ReplicationFactorTooHigh");
        assert!(
            p.refusals[0].message.contains("3 broker"),
            "{}",
            p.refusals[0].message
        );
    }

    #[test]
    fn raising_replicas_keeps_leaders_and_spreads_evenly() {
        let d = DesiredTopic {
            replicas: Some(3),
            ..DesiredTopic::default()
        };
        let o = observed(vec![vec![0], vec![1], vec![2]], &[]);
        let p = plan(&d, Some(&o), &brokers(3));
        let Change::Reassign { assignments } = &p.changes[0] else {
            panic!("expected a reassignment: {p:?}")
        };
        assert_eq!(assignments.len(), 3);
        for (partition, replicas) in assignments {
            assert_eq!(
                replicas[0], *partition,
                "preferred leader kept: {assignments:?}"
            );
            let mut sorted = replicas.clone();
            sorted.sort_unstable();
            assert_eq!(sorted, vec![0, 1, 2]);
        }
        // From RF 1 to 2 on 4 brokers with 4 partitions: every broker ends with 2 replicas.
        let o = observed(vec![vec![0], vec![1], vec![2], vec![3]], &[]);
        let assignments = place(&o.partitions, 2, &brokers(4));
        let mut load = BTreeMap::new();
        for (_, r) in &assignments {
            assert_eq!(r.len(), 2);
            assert_ne!(r[0], r[1]);
            for id in r {
                *load.entry(*id).or_insert(0) += 1;
            }
        }
        assert!(
            load.values().all(|&n| n == 2),
            "uneven: {load:?} from {assignments:?}"
        );
    }

    #[test]
    fn lowering_replicas_keeps_the_preferred_leader() {
        let o = observed(vec![vec![2, 0, 1], vec![0, 1, 2]], &[]);
        let assignments = place(&o.partitions, 1, &brokers(3));
        assert_eq!(assignments, vec![(0, vec![2]), (1, vec![0])]);
    }

    #[test]
    fn new_replicas_go_to_racks_the_partition_does_not_use() {
        let racked = vec![
            Broker {
                id: 0,
                rack: Some("a".into()),
            },
            Broker {
                id: 1,
                rack: Some("a".into()),
            },
            Broker {
                id: 2,
                rack: Some("b".into()),
            },
        ];
        assert_eq!(place(&[vec![0]], 2, &racked), vec![(0, vec![0, 2])]);
    }

    #[test]
    fn no_reassignment_is_planned_while_one_runs() {
        let d = DesiredTopic {
            replicas: Some(3),
            ..DesiredTopic::default()
        };
        let mut o = observed(vec![vec![0, 1]], &[]);
        o.reassigning.insert(0);
        assert_eq!(plan(&d, Some(&o), &brokers(3)), Plan::default());
    }
}
