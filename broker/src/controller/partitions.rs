//! Partition leadership and ISR decisions (Kafka's `PartitionChangeBuilder` and the parts
//! of `ReplicationControlManager` that use it), without eligible leader replicas (ELR).
//!
//! Rules, as Kafka applies them:
//! - A leader is a replica in the ISR whose broker is active (registered, unfenced, not in
//!   controlled shutdown). The current leader stays while it qualifies; otherwise the first
//!   qualifying replica in `replicas` order wins. A PREFERRED election first tries the
//!   first replica. An UNCLEAN election (only when enabled, or asked for) may pick any active
//!   replica, and then the ISR becomes that leader alone.
//! - The ISR never becomes empty: when its last member goes, the leader becomes -1 and the
//!   ISR keeps that member, so it is the one to come back as leader.
//! - Every leader change (including to -1) bumps the leader epoch; every change bumps the
//!   partition epoch. Removing replicas (end of a reassignment) bumps the leader epoch too.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use serde::{Deserialize, Serialize};
use uuid::Uuid;

use super::{ControllerConfig, ControllerError, PartitionResult, Result, TopicPartitionName};
use crate::metadata::{MetadataImage, MetadataRecord, PartitionState};

/// Kafka's `NO_LEADER`.
pub const NO_LEADER: i32 = -1;

/// Kafka caps the preferred-leader elections of one rebalance run
/// (`MAX_ELECTIONS_PER_IMBALANCE`); the next run continues.
pub const MAX_ELECTIONS_PER_IMBALANCE: usize = 1000;

/// How a leader may be chosen.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum Election {
    /// Move leadership to the first replica if it qualifies; else keep the partition online.
    Preferred,
    /// Keep the partition online with a leader from the ISR.
    Online,
    /// Prefer the ISR, but pick any active replica rather than stay offline (may lose data).
    Unclean,
}

/// ElectLeaders' election types.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ElectionType {
    /// `kafka-leader-election.sh --election-type PREFERRED` (0).
    Preferred,
    /// `--election-type UNCLEAN` (1).
    Unclean,
}

/// One member of the ISR a leader proposes, with its broker epoch (AlterPartition v3's
/// `BrokerState`); -1 skips the epoch check.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct IsrMember {
    /// Node id.
    pub broker_id: i32,
    /// The broker epoch the leader knows it by, or -1.
    pub broker_epoch: i64,
}

/// Whether broker `id` may lead or join an ISR: registered, unfenced and not in controlled
/// shutdown (Kafka's `ClusterControlManager.isActive`).
pub fn is_active(image: &MetadataImage, id: i32) -> bool {
    image
        .brokers
        .get(&id)
        .is_some_and(|b| !b.fenced && !b.in_controlled_shutdown)
}

/// A change to one partition, built from targets as Kafka's `PartitionChangeBuilder`:
/// completes a reassignment whose new replicas are all in sync, elects a leader, and answers
/// the partition's new state, or `None` if nothing changes.
pub struct PartitionChange<'a> {
    current: &'a PartitionState,
    acceptable_leader: &'a dyn Fn(i32) -> bool,
    election: Election,
    target_isr: Vec<i32>,
    target_replicas: Vec<i32>,
    target_adding: Vec<i32>,
    target_removing: Vec<i32>,
}

impl<'a> PartitionChange<'a> {
    /// A change of `current` whose leaders must pass `acceptable_leader` (usually
    /// [`is_active`]); targets start as the current values, election ONLINE.
    pub fn new(current: &'a PartitionState, acceptable_leader: &'a dyn Fn(i32) -> bool) -> Self {
        PartitionChange {
            current,
            acceptable_leader,
            election: Election::Online,
            target_isr: current.isr.clone(),
            target_replicas: current.replicas.clone(),
            target_adding: current.adding_replicas.clone(),
            target_removing: current.removing_replicas.clone(),
        }
    }

    /// Sets the election type.
    pub fn election(mut self, election: Election) -> Self {
        self.election = election;
        self
    }

    /// Sets the target ISR (an empty ISR is never applied: the current one stays).
    pub fn isr(mut self, isr: Vec<i32>) -> Self {
        self.target_isr = isr;
        self
    }

    /// Sets the target replicas.
    pub fn replicas(mut self, replicas: Vec<i32>) -> Self {
        self.target_replicas = replicas;
        self
    }

    /// Sets the replicas a reassignment adds.
    pub fn adding(mut self, adding: Vec<i32>) -> Self {
        self.target_adding = adding;
        self
    }

    /// Sets the replicas a reassignment removes.
    pub fn removing(mut self, removing: Vec<i32>) -> Self {
        self.target_removing = removing;
        self
    }

    fn is_valid_new_leader(&self, replica: i32) -> bool {
        self.target_isr.contains(&replica) && (self.acceptable_leader)(replica)
    }

    /// Kafka's election: the node chosen and whether the choice was unclean.
    fn elect(&self) -> (i32, bool) {
        let current = self.current.leader;
        if self.election == Election::Preferred {
            if let Some(&preferred) = self.target_replicas.first() {
                if self.is_valid_new_leader(preferred) {
                    return (preferred, false);
                }
            }
            if self.is_valid_new_leader(current) {
                return (current, false);
            }
            if let Some(&r) = self
                .target_replicas
                .iter()
                .skip(1)
                .find(|&&r| self.is_valid_new_leader(r))
            {
                return (r, false);
            }
            return (NO_LEADER, false);
        }
        if self.is_valid_new_leader(current) {
            return (current, false);
        }
        if let Some(&r) = self
            .target_replicas
            .iter()
            .find(|&&r| self.is_valid_new_leader(r))
        {
            return (r, false);
        }
        if self.election == Election::Unclean {
            if let Some(&r) = self
                .target_replicas
                .iter()
                .find(|&&r| (self.acceptable_leader)(r))
            {
                return (r, true);
            }
        }
        (NO_LEADER, false)
    }

    /// Completes an ongoing reassignment when the ISR (without the replicas being removed)
    /// holds every remaining replica (Kafka's `maybeCompleteReassignment`).
    fn complete_reassignment_if_needed(&mut self) {
        if self.target_adding.is_empty() && self.target_removing.is_empty() {
            return;
        }
        let mut isr = self.target_isr.clone();
        let mut replicas = self.target_replicas.clone();
        if !self.target_removing.is_empty() {
            isr.retain(|r| !self.target_removing.contains(r));
            if isr.is_empty() {
                return;
            }
            replicas.retain(|r| !self.target_removing.contains(r));
            if replicas.is_empty() {
                return;
            }
        }
        if !replicas.iter().all(|r| isr.contains(r)) {
            return;
        }
        self.target_isr = isr;
        self.target_replicas = replicas;
        self.target_adding.clear();
        self.target_removing.clear();
    }

    /// The partition's state after the change, or `None` when nothing changes.
    pub fn build(mut self) -> Option<PartitionState> {
        self.complete_reassignment_if_needed();
        let current = self.current;
        let mut next = current.clone();
        let mut leader_changed = false;
        let (leader, unclean) = self.elect();
        if leader != current.leader {
            next.leader = leader;
            leader_changed = true;
            if unclean {
                next.isr = vec![leader];
            }
        }
        // Removing replicas other than by a leader change still bumps the leader epoch, so
        // followers of the old assignment are fenced.
        let removes_replicas = !current
            .replicas
            .iter()
            .all(|r| self.target_replicas.contains(r));
        // An unclean election already set the ISR to the new leader alone.
        let isr_set_by_election = leader_changed && unclean;
        if !isr_set_by_election && !self.target_isr.is_empty() && self.target_isr != current.isr {
            next.isr = self.target_isr.clone();
        }
        if !self.target_replicas.is_empty() {
            next.replicas = self.target_replicas.clone();
        }
        next.adding_replicas = self.target_adding.clone();
        next.removing_replicas = self.target_removing.clone();
        if next == *current {
            return None;
        }
        if leader_changed || removes_replicas {
            next.leader_epoch = current.leader_epoch.saturating_add(1);
        }
        next.partition_epoch = current.partition_epoch.saturating_add(1);
        Some(next)
    }
}

/// Records moving `broker`'s leaderships away and removing it from every ISR (Kafka's
/// `handleBrokerFenced` / `handleBrokerInControlledShutdown` partition updates). A partition
/// whose ISR holds only `broker` keeps it in the ISR and loses its leader.
pub fn remove_broker_from_partitions(
    config: &ControllerConfig,
    image: &MetadataImage,
    broker: i32,
) -> Vec<MetadataRecord> {
    let acceptable = |r: i32| r != broker && is_active(image, r);
    let mut records = Vec::new();
    for topic in image.topics.values() {
        let election = if config.unclean_election_enabled(image, topic) {
            Election::Unclean
        } else {
            Election::Online
        };
        for (index, p) in topic.partitions.iter().enumerate() {
            if !p.isr.contains(&broker) {
                continue;
            }
            let isr: Vec<i32> = p.isr.iter().copied().filter(|&r| r != broker).collect();
            let change = PartitionChange::new(p, &acceptable)
                .election(election)
                .isr(isr)
                .build();
            if let Some(state) = change {
                records.push(MetadataRecord::PartitionChange {
                    topic_id: topic.id,
                    partition: index as i32,
                    state,
                });
            }
        }
    }
    records
}

/// Records electing leaders for every leaderless partition now that `broker` is unfenced
/// (it counts as active although the image still shows it fenced): Kafka's
/// `handleBrokerUnfenced`.
pub fn elect_for_unfenced_broker(
    config: &ControllerConfig,
    image: &MetadataImage,
    broker: i32,
) -> Vec<MetadataRecord> {
    let acceptable = |r: i32| r == broker || is_active(image, r);
    let mut records = Vec::new();
    for topic in image.topics.values() {
        let election = if config.unclean_election_enabled(image, topic) {
            Election::Unclean
        } else {
            Election::Online
        };
        for (index, p) in topic.partitions.iter().enumerate() {
            if p.leader != NO_LEADER {
                continue;
            }
            if let Some(state) = PartitionChange::new(p, &acceptable)
                .election(election)
                .build()
            {
                records.push(MetadataRecord::PartitionChange {
                    topic_id: topic.id,
                    partition: index as i32,
                    state,
                });
            }
        }
    }
    records
}

/// Whether `broker` leads any partition (a broker in controlled shutdown may exit once it
/// leads nothing).
pub fn has_leaderships(image: &MetadataImage, broker: i32) -> bool {
    image
        .topics
        .values()
        .any(|t| t.partitions.iter().any(|p| p.leader == broker))
}

/// An AlterPartition request for one partition.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartition {
    /// The leader asking.
    pub broker_id: i32,
    /// Its broker epoch.
    pub broker_epoch: i64,
    /// The topic's id.
    pub topic_id: Uuid,
    /// Partition index.
    pub partition: i32,
    /// The leader's leader epoch.
    pub leader_epoch: i32,
    /// The partition epoch the leader's view is based on.
    pub partition_epoch: i32,
    /// The proposed ISR.
    pub new_isr: Vec<IsrMember>,
}

/// Kafka's `checkBrokerEpoch`: STALE_BROKER_EPOCH unless `id` is registered at `epoch`.
pub fn check_broker_epoch(image: &MetadataImage, id: i32, epoch: i64) -> Result<()> {
    match image.brokers.get(&id) {
        None => Err(ControllerError::new(
            ResponseError::StaleBrokerEpoch,
            format!("No broker registration found for broker id {id}"),
        )),
        Some(b) if b.epoch != epoch => Err(ControllerError::new(
            ResponseError::StaleBrokerEpoch,
            format!(
                "Expected broker epoch {}, but got broker epoch {epoch}",
                b.epoch
            ),
        )),
        Some(_) => Ok(()),
    }
}

/// Decides an AlterPartition as Kafka's controller does. Refusals (`Err`), in Kafka's order:
/// STALE_BROKER_EPOCH; UNKNOWN_TOPIC_ID; UNKNOWN_TOPIC_OR_PARTITION; NOT_CONTROLLER when the
/// leader knows newer epochs than this controller; FENCED_LEADER_EPOCH for an older leader
/// epoch; INVALID_REQUEST from a non-leader; INVALID_UPDATE_VERSION for an older partition
/// epoch; INVALID_REQUEST for an ISR with non-replicas, duplicates or without the leader;
/// INELIGIBLE_REPLICA when a proposed member is fenced, shutting down, unregistered or of
/// another broker epoch. Otherwise the records, the reply's error code (0, or
/// NEW_LEADER_ELECTED when the change completed a reassignment that moved leadership) and
/// the partition's resulting state.
pub fn alter_partition(
    config: &ControllerConfig,
    image: &MetadataImage,
    request: &AlterPartition,
) -> Result<(Vec<MetadataRecord>, i16, PartitionState)> {
    check_broker_epoch(image, request.broker_id, request.broker_epoch)?;
    let topic = image
        .topic_by_id(&request.topic_id)
        .ok_or_else(|| ControllerError::code(ResponseError::UnknownTopicId))?;
    let current = usize::try_from(request.partition)
        .ok()
        .and_then(|i| topic.partitions.get(i))
        .ok_or_else(|| ControllerError::code(ResponseError::UnknownTopicOrPartition))?;
    if request.leader_epoch > current.leader_epoch
        || request.partition_epoch > current.partition_epoch
    {
        return Err(ControllerError::code(ResponseError::NotController));
    }
    if request.leader_epoch < current.leader_epoch {
        return Err(ControllerError::code(ResponseError::FencedLeaderEpoch));
    }
    if request.broker_id != current.leader {
        return Err(ControllerError::code(ResponseError::InvalidRequest));
    }
    if request.partition_epoch < current.partition_epoch {
        return Err(ControllerError::code(ResponseError::InvalidUpdateVersion));
    }
    let new_isr: Vec<i32> = request.new_isr.iter().map(|m| m.broker_id).collect();
    let distinct: BTreeSet<i32> = new_isr.iter().copied().collect();
    if distinct.len() != new_isr.len() || !new_isr.iter().all(|r| current.replicas.contains(r)) {
        return Err(ControllerError::code(ResponseError::InvalidRequest));
    }
    if !new_isr.contains(&current.leader) {
        return Err(ControllerError::code(ResponseError::InvalidRequest));
    }
    let ineligible = request
        .new_isr
        .iter()
        .any(|m| match image.brokers.get(&m.broker_id) {
            None => true,
            Some(b) => {
                b.in_controlled_shutdown
                    || b.fenced
                    || (m.broker_epoch != -1 && m.broker_epoch != b.epoch)
            }
        });
    if ineligible {
        return Err(ControllerError::code(ResponseError::IneligibleReplica));
    }
    let acceptable = |r: i32| is_active(image, r);
    let election = if config.unclean_election_enabled(image, topic) {
        Election::Unclean
    } else {
        Election::Online
    };
    let change = PartitionChange::new(current, &acceptable)
        .election(election)
        .isr(new_isr)
        .build();
    match change {
        None => Ok((vec![], 0, current.clone())),
        Some(state) => {
            let error = if state.leader != current.leader && state.leader != request.broker_id {
                ResponseError::NewLeaderElected.code()
            } else {
                0
            };
            Ok((
                vec![MetadataRecord::PartitionChange {
                    topic_id: topic.id,
                    partition: request.partition,
                    state: state.clone(),
                }],
                error,
                state,
            ))
        }
    }
}

/// ElectLeaders for `partitions` (every partition of every topic, in topic order, when
/// `None`). Per partition: UNKNOWN_TOPIC_OR_PARTITION; ELECTION_NOT_NEEDED when the
/// preferred replica already leads (PREFERRED) or the partition has a leader (UNCLEAN);
/// PREFERRED_LEADER_NOT_AVAILABLE / ELIGIBLE_LEADERS_NOT_AVAILABLE when no election is
/// possible (these three carry Kafka's default text as their message, as Kafka's
/// `new ApiError(error)` does). For `None` the ELECTION_NOT_NEEDED results are kept: Kafka
/// answers an entry for every topic but leaves those partitions out of it, which the API
/// handler does, so it needs to see every topic the controller saw.
pub fn elect_leaders(
    image: &MetadataImage,
    election_type: ElectionType,
    partitions: Option<&[TopicPartitionName]>,
) -> (Vec<MetadataRecord>, Vec<PartitionResult>) {
    let mut records = Vec::new();
    let mut results = Vec::new();
    let one = |topic: &str, partition: i32, records: &mut Vec<MetadataRecord>| {
        let error = elect_leader(image, election_type, topic, partition, records).err();
        PartitionResult {
            topic: topic.to_string(),
            partition,
            error,
        }
    };
    match partitions {
        Some(partitions) => {
            for tp in partitions {
                results.push(one(&tp.topic, tp.partition, &mut records));
            }
        }
        None => {
            for topic in image.topics.values() {
                for index in 0..topic.partitions.len() {
                    results.push(one(&topic.name, index as i32, &mut records));
                }
            }
        }
    }
    (records, results)
}

fn elect_leader(
    image: &MetadataImage,
    election_type: ElectionType,
    topic_name: &str,
    partition: i32,
    records: &mut Vec<MetadataRecord>,
) -> Result<()> {
    let topic = image.topic(topic_name).ok_or_else(|| {
        ControllerError::new(
            ResponseError::UnknownTopicOrPartition,
            format!("No such topic as {topic_name}"),
        )
    })?;
    let current = usize::try_from(partition)
        .ok()
        .and_then(|i| topic.partitions.get(i))
        .ok_or_else(|| {
            ControllerError::new(
                ResponseError::UnknownTopicOrPartition,
                format!("No such partition as {topic_name}-{partition}"),
            )
        })?;
    let not_needed = match election_type {
        ElectionType::Preferred => current.replicas.first() == Some(&current.leader),
        ElectionType::Unclean => current.leader != NO_LEADER,
    };
    if not_needed {
        return Err(with_default_message(ResponseError::ElectionNotNeeded));
    }
    let acceptable = |r: i32| is_active(image, r);
    let election = match election_type {
        ElectionType::Preferred => Election::Preferred,
        ElectionType::Unclean => Election::Unclean,
    };
    match PartitionChange::new(current, &acceptable)
        .election(election)
        .build()
    {
        Some(state) => {
            records.push(MetadataRecord::PartitionChange {
                topic_id: topic.id,
                partition,
                state,
            });
            Ok(())
        }
        None => Err(with_default_message(match election_type {
            ElectionType::Preferred => ResponseError::PreferredLeaderNotAvailable,
            ElectionType::Unclean => ResponseError::EligibleLeadersNotAvailable,
        })),
    }
}

/// `error` with Kafka's default text for it as the message (`new ApiError(error)`, the text
/// of Kafka's `Errors` enum), which Kafka sends on the wire for the election outcomes.
fn with_default_message(error: ResponseError) -> ControllerError {
    let text = match error {
        ResponseError::ElectionNotNeeded => "Leader election not needed for topic partition.",
        ResponseError::PreferredLeaderNotAvailable => "The preferred leader was not available.",
        ResponseError::EligibleLeadersNotAvailable => {
            "Eligible topic partition leaders are not available."
        }
        _ => return ControllerError::code(error),
    };
    ControllerError::new(error, text)
}

/// The automatic leader rebalance (`auto.leader.rebalance.enable`): a preferred election for
/// each partition whose leader is not its preferred replica (leaderless ones included), at
/// most `max_elections`. As in
/// Kafka's KRaft controller every imbalanced partition is considered: the ZooKeeper-era
/// `leader.imbalance.per.broker.percentage` threshold is accepted but not used by Kafka 4.1,
/// so it is not used here either.
pub fn rebalance_leaders(image: &MetadataImage, max_elections: usize) -> Vec<MetadataRecord> {
    let acceptable = |r: i32| is_active(image, r);
    let mut records = Vec::new();
    for topic in image.topics.values() {
        for (index, p) in topic.partitions.iter().enumerate() {
            if records.len() >= max_elections {
                return records;
            }
            // Leaderless partitions count as imbalanced too, as in Kafka.
            if p.replicas.first() == Some(&p.leader) {
                continue;
            }
            if let Some(state) = PartitionChange::new(p, &acceptable)
                .election(Election::Preferred)
                .build()
            {
                records.push(MetadataRecord::PartitionChange {
                    topic_id: topic.id,
                    partition: index as i32,
                    state,
                });
            }
        }
    }
    records
}

/// Unclean elections for leaderless partitions of topics where unclean leader election is
/// enabled (Kafka's periodic `maybeElectUncleanLeaders`), at most `max_elections`.
pub fn elect_unclean_leaders(
    config: &ControllerConfig,
    image: &MetadataImage,
    max_elections: usize,
) -> Vec<MetadataRecord> {
    let mut records = Vec::new();
    for topic in image.topics.values() {
        if !config.unclean_election_enabled(image, topic) {
            continue;
        }
        for (index, p) in topic.partitions.iter().enumerate() {
            if records.len() >= max_elections {
                return records;
            }
            if p.leader == NO_LEADER {
                let _ = elect_leader(
                    image,
                    ElectionType::Unclean,
                    &topic.name,
                    index as i32,
                    &mut records,
                );
            }
        }
    }
    records
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::controller::test_support::*;

    fn only_state(records: &[MetadataRecord]) -> PartitionState {
        match records {
            [MetadataRecord::PartitionChange { state, .. }] => state.clone(),
            other => panic!("expected one partition change, got {other:?}"),
        }
    }

    #[test]
    fn fencing_the_leader_moves_leadership_to_the_next_isr_member_with_new_epochs() {
        let mut image = image_with_brokers(&[1, 2, 3]);
        add_topic(&mut image, "t", vec![partition(&[1, 2, 3], &[1, 2, 3], 1)]);
        let records = remove_broker_from_partitions(&ControllerConfig::default(), &image, 1);
        let s = only_state(&records);
        assert_eq!((s.leader, s.isr.clone()), (2, vec![2, 3]));
        assert_eq!((s.leader_epoch, s.partition_epoch), (6, 8));
    }

    #[test]
    fn fencing_a_follower_shrinks_the_isr_without_a_leader_epoch_bump() {
        let mut image = image_with_brokers(&[1, 2, 3]);
        add_topic(&mut image, "t", vec![partition(&[1, 2, 3], &[1, 2, 3], 1)]);
        let s = only_state(&remove_broker_from_partitions(
            &ControllerConfig::default(),
            &image,
            3,
        ));
        assert_eq!((s.leader, s.isr.clone()), (1, vec![1, 2]));
        assert_eq!((s.leader_epoch, s.partition_epoch), (5, 8));
    }

    #[test]
    fn fencing_the_last_isr_member_leaves_it_in_the_isr_without_a_leader() {
        let mut image = image_with_brokers(&[1, 2]);
        add_topic(&mut image, "t", vec![partition(&[1, 2], &[1], 1)]);
        let s = only_state(&remove_broker_from_partitions(
            &ControllerConfig::default(),
            &image,
            1,
        ));
        assert_eq!((s.leader, s.isr.clone(), s.leader_epoch), (-1, vec![1], 6));
        // With unclean election enabled the out-of-sync replica takes over, alone in the ISR.
        let unclean = ControllerConfig {
            unclean_leader_election_enable: true,
            ..ControllerConfig::default()
        };
        let s = only_state(&remove_broker_from_partitions(&unclean, &image, 1));
        assert_eq!((s.leader, s.isr.clone()), (2, vec![2]));
    }

    #[test]
    fn a_topic_override_enables_unclean_election() {
        let mut image = image_with_brokers(&[1, 2]);
        add_topic(&mut image, "t", vec![partition(&[1, 2], &[1], 1)]);
        let mut configs = std::collections::BTreeMap::new();
        configs.insert("unclean.leader.election.enable".into(), "true".into());
        image.replay(&MetadataRecord::TopicConfigs {
            topic: "t".into(),
            configs,
        });
        let s = only_state(&remove_broker_from_partitions(
            &ControllerConfig::default(),
            &image,
            1,
        ));
        assert_eq!(s.leader, 2);
    }

    #[test]
    fn unfencing_the_last_isr_member_makes_it_leader_again() {
        let mut image = image_with_brokers(&[1, 2]);
        add_topic(&mut image, "t", vec![partition(&[1, 2], &[1], -1)]);
        set_broker(&mut image, 1, true, false);
        let s = only_state(&elect_for_unfenced_broker(
            &ControllerConfig::default(),
            &image,
            1,
        ));
        assert_eq!((s.leader, s.leader_epoch), (1, 6));
        // Broker 2 is not in the ISR: unfencing it elects nobody.
        assert!(elect_for_unfenced_broker(&ControllerConfig::default(), &image, 2).is_empty());
    }

    fn alter(image: &MetadataImage, isr: &[i32]) -> AlterPartition {
        AlterPartition {
            broker_id: 1,
            broker_epoch: image.brokers[&1].epoch,
            topic_id: image.topic("t").unwrap().id,
            partition: 0,
            leader_epoch: 5,
            partition_epoch: 7,
            new_isr: isr
                .iter()
                .map(|&broker_id| IsrMember {
                    broker_id,
                    broker_epoch: -1,
                })
                .collect(),
        }
    }

    #[test]
    fn alter_partition_changes_the_isr_and_bumps_only_the_partition_epoch() {
        let mut image = image_with_brokers(&[1, 2, 3]);
        add_topic(&mut image, "t", vec![partition(&[1, 2, 3], &[1, 2], 1)]);
        let c = ControllerConfig::default();
        let (records, code, s) = alter_partition(&c, &image, &alter(&image, &[1, 2, 3])).unwrap();
        assert_eq!(code, 0);
        assert_eq!(records.len(), 1);
        assert_eq!(
            (s.isr.clone(), s.leader_epoch, s.partition_epoch),
            (vec![1, 2, 3], 5, 8)
        );
    }

    #[test]
    fn alter_partition_refusals_use_kafkas_codes() {
        let mut image = image_with_brokers(&[1, 2, 3]);
        add_topic(&mut image, "t", vec![partition(&[1, 2, 3], &[1, 2], 1)]);
        set_broker(&mut image, 3, true, false);
        let c = ControllerConfig::default();
        let code = |r: AlterPartition| alter_partition(&c, &image, &r).unwrap_err().code;
        let base = alter(&image, &[1, 2]);
        let mut r = base.clone();
        r.broker_epoch = 1;
        assert_eq!(code(r), ResponseError::StaleBrokerEpoch.code());
        let mut r = base.clone();
        r.topic_id = Uuid::from_u128(99);
        assert_eq!(code(r), ResponseError::UnknownTopicId.code());
        let mut r = base.clone();
        r.partition = 4;
        assert_eq!(code(r), ResponseError::UnknownTopicOrPartition.code());
        let mut r = base.clone();
        r.leader_epoch = 6;
        assert_eq!(code(r), ResponseError::NotController.code());
        let mut r = base.clone();
        r.leader_epoch = 4;
        assert_eq!(code(r), ResponseError::FencedLeaderEpoch.code());
        let mut r = base.clone();
        r.partition_epoch = 6;
        assert_eq!(code(r), ResponseError::InvalidUpdateVersion.code());
        let mut r = base.clone();
        r.broker_id = 2;
        r.broker_epoch = image.brokers[&2].epoch;
        assert_eq!(code(r), ResponseError::InvalidRequest.code());
        assert_eq!(
            code(alter(&image, &[2])),
            ResponseError::InvalidRequest.code()
        );
        assert_eq!(
            code(alter(&image, &[1, 1])),
            ResponseError::InvalidRequest.code()
        );
        assert_eq!(
            code(alter(&image, &[1, 4])),
            ResponseError::InvalidRequest.code()
        );
        assert_eq!(
            code(alter(&image, &[1, 3])),
            ResponseError::IneligibleReplica.code()
        );
        let mut r = alter(&image, &[1, 2]);
        r.new_isr[1].broker_epoch = 12345;
        assert_eq!(code(r), ResponseError::IneligibleReplica.code());
    }

    #[test]
    fn preferred_election_moves_leadership_back_or_says_why_not() {
        let mut image = image_with_brokers(&[1, 2, 3]);
        add_topic(
            &mut image,
            "t",
            vec![
                partition(&[1, 2], &[1, 2], 2),
                partition(&[1, 2], &[1, 2], 1),
                partition(&[3, 2], &[2], 2),
            ],
        );
        let tp = |p| TopicPartitionName {
            topic: "t".into(),
            partition: p,
        };
        let (records, results) = elect_leaders(
            &image,
            ElectionType::Preferred,
            Some(&[tp(0), tp(1), tp(2), tp(9)]),
        );
        assert_eq!(records.len(), 1);
        assert_eq!(only_state(&records).leader, 1);
        let codes: Vec<i16> = results
            .iter()
            .map(|r| r.error.as_ref().map_or(0, |e| e.code))
            .collect();
        assert_eq!(
            codes,
            vec![
                0,
                ResponseError::ElectionNotNeeded.code(),
                ResponseError::PreferredLeaderNotAvailable.code(),
                ResponseError::UnknownTopicOrPartition.code()
            ]
        );
        assert_eq!(
            results[1].error.as_ref().unwrap().message.as_deref(),
            Some("Leader election not needed for topic partition.")
        );
        // All partitions: every one is answered (the handler leaves out the ones needing no
        // election), and the election is decided the same way.
        let (all_records, all) = elect_leaders(&image, ElectionType::Preferred, None);
        assert_eq!(all_records, records);
        assert_eq!(
            all.iter()
                .map(|r| r.error.as_ref().map_or(0, |e| e.code))
                .collect::<Vec<_>>(),
            codes[..3].to_vec()
        );
    }

    #[test]
    fn unclean_election_picks_a_live_out_of_sync_replica() {
        let mut image = image_with_brokers(&[1, 2]);
        add_topic(
            &mut image,
            "t",
            vec![partition(&[1, 2], &[1], -1), partition(&[1], &[1], -1)],
        );
        set_broker(&mut image, 1, true, false);
        let tp = |p| TopicPartitionName {
            topic: "t".into(),
            partition: p,
        };
        let (records, results) =
            elect_leaders(&image, ElectionType::Unclean, Some(&[tp(0), tp(1)]));
        let s = only_state(&records);
        assert_eq!((s.leader, s.isr), (2, vec![2]));
        assert!(results[0].error.is_none());
        assert!(results[1]
            .error
            .as_ref()
            .unwrap()
            .is(ResponseError::EligibleLeadersNotAvailable));
    }

    #[test]
    fn rebalance_elects_preferred_leaders_that_are_in_sync_and_live() {
        let mut image = image_with_brokers(&[1, 2, 3]);
        add_topic(
            &mut image,
            "t",
            vec![
                partition(&[1, 2], &[1, 2], 2),
                partition(&[3, 2], &[2], 2),
                partition(&[2, 3], &[2, 3], 2),
            ],
        );
        let records = rebalance_leaders(&image, MAX_ELECTIONS_PER_IMBALANCE);
        assert_eq!(only_state(&records).leader, 1);
        assert!(rebalance_leaders(&image, 0).is_empty());
        // A leaderless partition whose in-sync replica is live gets it as leader.
        add_topic(&mut image, "u", vec![partition(&[3, 2], &[2], -1)]);
        let records = rebalance_leaders(&image, MAX_ELECTIONS_PER_IMBALANCE);
        let leaders: Vec<i32> = records
            .iter()
            .map(|r| match r {
                MetadataRecord::PartitionChange { state, .. } => state.leader,
                other => panic!("{other:?}"),
            })
            .collect();
        assert_eq!(leaders, vec![1, 2]);
    }
}
