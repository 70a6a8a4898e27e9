//! Replica placement for new partitions: which brokers hold the replicas, in which order
//! (the first is the preferred leader).
//!
//! The assignment follows Kafka's striped algorithm (`AdminUtils.assignReplicasToBrokers`):
//! partition `p`'s first replica is broker `(p + start) mod n` of the broker list, the others
//! follow at a shift that changes every `n` partitions, so replicas and preferred leaders are
//! spread evenly. When every broker has a `broker.rack`, the broker list alternates racks
//! (Kafka's rack-alternated list) and a partition's replicas go to distinct racks as long as
//! there are racks left. Usable brokers (unfenced, not shutting down) are used first; fenced
//! ones only when the replication factor needs them, as Kafka's placer does.

use std::collections::{BTreeMap, BTreeSet};
use std::hash::{Hash, Hasher};

use kafka_protocol::ResponseError;

use super::{ControllerError, Result};
use crate::metadata::MetadataImage;

/// A registered broker as placement sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlacementBroker {
    /// Node id.
    pub id: i32,
    /// `broker.rack`, if set.
    pub rack: Option<String>,
    /// Unfenced and not in controlled shutdown: may lead and be in the ISR.
    pub usable: bool,
}

/// The registered brokers of `image`, by id.
pub fn placement_brokers(image: &MetadataImage) -> Vec<PlacementBroker> {
    image
        .brokers
        .values()
        .map(|b| PlacementBroker {
            id: b.id,
            rack: b.rack.clone(),
            usable: !b.fenced && !b.in_controlled_shutdown,
        })
        .collect()
}

/// A placement seed for `topic`: deterministic (a retried or validate-only request places
/// the same way) but different per topic, so the preferred leaders of many topics do not all
/// start on the same broker (Kafka starts at a random broker).
pub fn seed_for(topic: &str) -> u64 {
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    topic.hash(&mut hasher);
    hasher.finish()
}

/// Replicas for partitions `first_partition .. first_partition + count`, `replication_factor`
/// each, over `brokers`; `seed` picks the starting broker and replica shift. Fails with
/// INVALID_REPLICATION_FACTOR and Kafka's message when the factor is not positive, no broker
/// is usable, or fewer brokers are registered than the factor.
pub fn place(
    brokers: &[PlacementBroker],
    first_partition: i32,
    count: i32,
    replication_factor: i16,
    seed: u64,
) -> Result<Vec<Vec<i32>>> {
    let rf = i32::from(replication_factor);
    let refuse = |why: String| {
        ControllerError::new(
            ResponseError::InvalidReplicationFactor,
            format!("Unable to replicate the partition {rf} time(s): {why}"),
        )
    };
    if rf <= 0 {
        return Err(refuse(format!(
            "Invalid replication factor {rf}: the replication factor must be positive."
        )));
    }
    let usable: Vec<&PlacementBroker> = brokers.iter().filter(|b| b.usable).collect();
    if usable.is_empty() {
        return Err(refuse("All brokers are currently fenced.".to_string()));
    }
    let rf = rf as usize;
    if rf > brokers.len() {
        return Err(refuse(format!(
            "The target replication factor of {rf} cannot be reached because only {} broker(s) are registered.",
            brokers.len()
        )));
    }
    // Fenced brokers only when the usable ones are too few, as Kafka's placer does.
    let candidates: Vec<&PlacementBroker> = if usable.len() >= rf {
        usable
    } else {
        let mut all = usable;
        all.extend(brokers.iter().filter(|b| !b.usable));
        all
    };
    let every_broker_has_a_rack = candidates.iter().all(|b| b.rack.is_some());
    let n = candidates.len();
    let start = (seed % n as u64) as usize;
    let shift = ((seed / n as u64) % n as u64) as usize;
    let first = usize::try_from(first_partition.max(0)).unwrap_or(0);
    let count = usize::try_from(count.max(0)).unwrap_or(0);
    Ok(match every_broker_has_a_rack {
        true => {
            let by_id: BTreeMap<i32, &str> = candidates
                .iter()
                .map(|b| (b.id, b.rack.as_deref().unwrap_or("")))
                .collect();
            let arranged = rack_alternated(&by_id);
            assign_rack_aware(&arranged, &by_id, first, count, rf, start, shift)
        }
        false => {
            let mut ids: Vec<i32> = candidates.iter().map(|b| b.id).collect();
            // Usable brokers in id order, then the fenced ones: the leader positions cycle
            // through usable brokers first.
            let usable_count = candidates.iter().filter(|b| b.usable).count();
            ids[..usable_count].sort_unstable();
            ids[usable_count..].sort_unstable();
            assign_striped(&ids, first, count, rf, start, shift)
        }
    })
}

/// Kafka's `replicaIndex`: the position of the `index`-th follower of a partition whose first
/// replica is at `first`, with `shift` the partition group's follower shift.
fn replica_index(first: usize, shift: usize, index: usize, n: usize) -> usize {
    let offset = 1 + (shift + index) % (n - 1);
    (first + offset) % n
}

fn assign_striped(
    brokers: &[i32],
    first_partition: usize,
    count: usize,
    rf: usize,
    start: usize,
    mut shift: usize,
) -> Vec<Vec<i32>> {
    let n = brokers.len();
    let mut out = Vec::with_capacity(count);
    for partition in first_partition..first_partition + count {
        if partition > 0 && partition % n == 0 {
            shift += 1;
        }
        let first = (partition + start) % n;
        let mut replicas = vec![brokers[first]];
        for j in 0..rf - 1 {
            replicas.push(brokers[replica_index(first, shift, j, n)]);
        }
        out.push(replicas);
    }
    out
}

/// Brokers ordered so that consecutive entries are on different racks: the first broker of
/// each rack (racks in name order, brokers in id order), then the second of each, ... (Kafka's
/// `getRackAlternatedBrokerList`).
pub fn rack_alternated(racks: &BTreeMap<i32, &str>) -> Vec<i32> {
    let mut by_rack: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (&id, &rack) in racks {
        by_rack.entry(rack).or_default().push(id);
    }
    let mut out = Vec::with_capacity(racks.len());
    let mut round = 0;
    while out.len() < racks.len() {
        for brokers in by_rack.values() {
            if let Some(&id) = brokers.get(round) {
                out.push(id);
            }
        }
        round += 1;
    }
    out
}

fn assign_rack_aware(
    arranged: &[i32],
    racks: &BTreeMap<i32, &str>,
    first_partition: usize,
    count: usize,
    rf: usize,
    start: usize,
    mut shift: usize,
) -> Vec<Vec<i32>> {
    let n = arranged.len();
    let rack_count = racks.values().collect::<BTreeSet<_>>().len();
    let rack_of = |id: i32| racks.get(&id).copied().unwrap_or("");
    let mut out = Vec::with_capacity(count);
    for partition in first_partition..first_partition + count {
        if partition > 0 && partition % n == 0 {
            shift += 1;
        }
        let first = (partition + start) % n;
        let leader = arranged[first];
        let mut replicas = vec![leader];
        let mut racks_used = BTreeSet::from([rack_of(leader)]);
        let mut brokers_used = BTreeSet::from([leader]);
        let mut k = 0;
        for _ in 0..rf - 1 {
            // Skip brokers on a rack that already has a replica (until every rack has one)
            // and brokers already chosen (until every broker is): Kafka's rule.
            loop {
                let broker = arranged[replica_index(first, shift * rack_count, k, n)];
                let rack = rack_of(broker);
                k += 1;
                if (!racks_used.contains(rack) || racks_used.len() == rack_count)
                    && (!brokers_used.contains(&broker) || brokers_used.len() == n)
                {
                    replicas.push(broker);
                    racks_used.insert(rack);
                    brokers_used.insert(broker);
                    break;
                }
            }
        }
        out.push(replicas);
    }
    out
}

/// Checks a manual assignment as Kafka's controller does: not empty, every broker
/// registered, no broker twice, and (when `replication_factor` is given, for partitions added
/// to a topic or after the first of a new topic) as many replicas as the others. Errors are
/// INVALID_REPLICA_ASSIGNMENT with Kafka's messages.
pub fn validate_manual_assignment(
    image_brokers: &[PlacementBroker],
    replicas: &[i32],
    replication_factor: Option<usize>,
) -> Result<()> {
    let invalid = |m: String| ControllerError::new(ResponseError::InvalidReplicaAssignment, m);
    if replicas.is_empty() {
        return Err(invalid(
            "The manual partition assignment includes an empty replica list.".to_string(),
        ));
    }
    let mut sorted = replicas.to_vec();
    sorted.sort_unstable();
    let mut previous = None;
    for id in sorted {
        if !image_brokers.iter().any(|b| b.id == id) {
            return Err(invalid(format!(
                "The manual partition assignment includes broker {id}, but no such broker is registered."
            )));
        }
        if previous == Some(id) {
            return Err(invalid(format!(
                "The manual partition assignment includes the broker {id} more than once."
            )));
        }
        previous = Some(id);
    }
    if let Some(rf) = replication_factor {
        if replicas.len() != rf {
            return Err(invalid(format!(
                "The manual partition assignment includes a partition with {} replica(s), but this is not consistent with previous partitions, which have {rf} replica(s).",
                replicas.len()
            )));
        }
    }
    Ok(())
}

/// The replicas of `replicas` that may be in the ISR of a new partition: usable ones, in
/// replica order (Kafka leaves fenced and shutting-down brokers out of a new ISR).
pub fn initial_isr(brokers: &[PlacementBroker], replicas: &[i32]) -> Vec<i32> {
    replicas
        .iter()
        .copied()
        .filter(|r| brokers.iter().any(|b| b.id == *r && b.usable))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(ids: &[i32]) -> Vec<PlacementBroker> {
        ids.iter()
            .map(|&id| PlacementBroker {
                id,
                rack: None,
                usable: true,
            })
            .collect()
    }

    fn racked(spec: &[(i32, &str)]) -> Vec<PlacementBroker> {
        spec.iter()
            .map(|&(id, rack)| PlacementBroker {
                id,
                rack: Some(rack.to_string()),
                usable: true,
            })
            .collect()
    }

    fn count_by<F: Fn(&Vec<i32>) -> Vec<i32>>(parts: &[Vec<i32>], pick: F) -> BTreeMap<i32, usize> {
        let mut counts = BTreeMap::new();
        for p in parts {
            for b in pick(p) {
                *counts.entry(b).or_insert(0) += 1;
            }
        }
        counts
    }

    #[test]
    fn refuses_more_replicas_than_registered_brokers_with_kafkas_message() {
        let err = place(&brokers(&[0]), 0, 3, 3, 0).unwrap_err();
        assert!(err.is(ResponseError::InvalidReplicationFactor));
        assert_eq!(
            err.message.as_deref(),
            Some("Unable to replicate the partition 3 time(s): The target replication factor of 3 cannot be reached because only 1 broker(s) are registered.")
        );
    }

    #[test]
    fn refuses_when_every_broker_is_fenced() {
        let mut b = brokers(&[0, 1]);
        for x in &mut b {
            x.usable = false;
        }
        let err = place(&b, 0, 1, 1, 0).unwrap_err();
        assert_eq!(
            err.message.as_deref(),
            Some("Unable to replicate the partition 1 time(s): All brokers are currently fenced.")
        );
    }

    #[test]
    fn seed_zero_stripes_leaders_as_before() {
        let parts = place(&brokers(&[0, 1, 2]), 0, 4, 2, 0).unwrap();
        let leaders: Vec<i32> = parts.iter().map(|p| p[0]).collect();
        assert_eq!(leaders, vec![0, 1, 2, 0]);
        assert_eq!(parts[2], vec![2, 0]);
    }

    #[test]
    fn replicas_and_preferred_leaders_spread_evenly() {
        for seed in [0, 1, 7, 12345, u64::MAX] {
            let parts = place(&brokers(&[1, 2, 3, 4, 5, 6]), 0, 12, 3, seed).unwrap();
            let leaders = count_by(&parts, |p| vec![p[0]]);
            assert!(leaders.values().all(|&c| c == 2), "{seed}: {leaders:?}");
            let replicas = count_by(&parts, |p| p.clone());
            assert!(replicas.values().all(|&c| c == 6), "{seed}: {replicas:?}");
            for p in &parts {
                let distinct: BTreeSet<_> = p.iter().collect();
                assert_eq!(distinct.len(), 3, "{p:?}");
            }
        }
    }

    #[test]
    fn added_partitions_continue_the_stripe() {
        let all = place(&brokers(&[0, 1, 2]), 0, 6, 2, 5).unwrap();
        let tail = place(&brokers(&[0, 1, 2]), 3, 3, 2, 5).unwrap();
        assert_eq!(&all[3..], &tail[..]);
    }

    #[test]
    fn rack_alternated_list_matches_kafka() {
        // Kafka's example: r1 holds 0 and 1, r2 holds 2, r3 holds 3 -> 0, 2, 3, 1.
        let r: BTreeMap<i32, &str> = [(0, "r1"), (1, "r1"), (2, "r2"), (3, "r3")]
            .into_iter()
            .collect();
        assert_eq!(rack_alternated(&r), vec![0, 2, 3, 1]);
    }

    #[test]
    fn rack_aware_placement_puts_replicas_on_distinct_racks() {
        let b = racked(&[(0, "a"), (1, "a"), (2, "b"), (3, "b"), (4, "c"), (5, "c")]);
        for seed in [0, 3, 99] {
            let parts = place(&b, 0, 12, 3, seed).unwrap();
            for p in &parts {
                let racks: BTreeSet<&str> = p
                    .iter()
                    .map(|id| {
                        b.iter()
                            .find(|x| x.id == *id)
                            .unwrap()
                            .rack
                            .as_deref()
                            .unwrap()
                    })
                    .collect();
                assert_eq!(racks.len(), 3, "{p:?}");
            }
            let leaders = count_by(&parts, |p| vec![p[0]]);
            assert!(leaders.values().all(|&c| c == 2), "{leaders:?}");
        }
    }

    #[test]
    fn rack_aware_with_fewer_racks_than_replicas_still_uses_distinct_brokers() {
        let b = racked(&[(0, "a"), (1, "a"), (2, "b"), (3, "b")]);
        let parts = place(&b, 0, 8, 3, 1).unwrap();
        for p in &parts {
            let distinct: BTreeSet<_> = p.iter().collect();
            assert_eq!(distinct.len(), 3, "{p:?}");
        }
    }

    #[test]
    fn fenced_brokers_hold_replicas_only_when_needed() {
        let mut b = brokers(&[0, 1, 2]);
        b[1].usable = false;
        let parts = place(&b, 0, 4, 2, 0).unwrap();
        assert!(parts.iter().all(|p| !p.contains(&1)), "{parts:?}");
        let parts = place(&b, 0, 4, 3, 0).unwrap();
        assert!(parts.iter().all(|p| p.contains(&1)));
        assert_eq!(initial_isr(&b, &[1, 0, 2]), vec![0, 2]);
    }

    #[test]
    fn manual_assignments_are_checked_with_kafkas_messages() {
        let b = brokers(&[0, 1, 2]);
        let msg = |r: &[i32], rf| {
            validate_manual_assignment(&b, r, rf)
                .unwrap_err()
                .message
                .unwrap()
        };
        assert_eq!(
            msg(&[], None),
            "The manual partition assignment includes an empty replica list."
        );
        assert_eq!(
            msg(&[0, 7], None),
            "The manual partition assignment includes broker 7, but no such broker is registered."
        );
        assert_eq!(
            msg(&[1, 0, 1], None),
            "The manual partition assignment includes the broker 1 more than once."
        );
        assert_eq!(
            msg(&[0, 1], Some(3)),
            "The manual partition assignment includes a partition with 2 replica(s), but this is not consistent with previous partitions, which have 3 replica(s)."
        );
        assert!(validate_manual_assignment(&b, &[2, 0], Some(2)).is_ok());
    }
}
