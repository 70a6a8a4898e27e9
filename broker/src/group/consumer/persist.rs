//! A consumer group (KIP-848) as records in `__consumer_offsets`, and back.
//!
//! [`changes`] turns a state change of a group into the records that write it, as Kafka's
//! group coordinator does in the same write as the change: the records whose value differs
//! between the state before and after, and tombstones for what is gone (a member that left
//! or was fenced, the whole group when it is removed). [`replay`] applies one record while a
//! `__consumer_offsets` partition loads, so the loaded group has the members, epochs, target
//! and current assignments it had: members continue heartbeating with their ids and epochs.

use std::collections::BTreeMap;

use bytes::Bytes;
use tracing::warn;

use super::topic_regex::ResolvedRegex;
use super::{Assignment, ConsumerGroup, ConsumerMember, MemberState};
use crate::group::records::{
    ConsumerGroupCurrentMemberAssignmentValue, ConsumerGroupMemberMetadataValue,
    ConsumerGroupMetadataValue, ConsumerGroupPartitionMetadataValue,
    ConsumerGroupRegularExpressionValue, ConsumerGroupTargetAssignmentMemberValue,
    ConsumerGroupTargetAssignmentMetadataValue, DecodeError, RecordKey, TopicMetadata,
    TopicPartitions,
};

/// Kafka's `MemberState` byte.
fn state_byte(state: MemberState) -> i8 {
    match state {
        MemberState::Stable => 0,
        MemberState::UnrevokedPartitions => 1,
        MemberState::UnreleasedPartitions => 2,
    }
}

fn state_of(byte: i8) -> MemberState {
    match byte {
        1 => MemberState::UnrevokedPartitions,
        2 => MemberState::UnreleasedPartitions,
        // Kafka's UNKNOWN (127) is never written; a member in it reconciles from scratch.
        _ => MemberState::Stable,
    }
}

fn to_stored(a: &Assignment) -> TopicPartitions {
    a.iter()
        .map(|(topic, ps)| (*topic, ps.iter().copied().collect()))
        .collect()
}

fn from_stored(tps: TopicPartitions) -> Assignment {
    let mut a = Assignment::new();
    for (topic, ps) in tps {
        a.entry(topic).or_default().extend(ps);
    }
    a
}

/// Which kind of record, in the order Kafka writes a heartbeat's records: member metadata,
/// resolved regular expressions, subscription metadata, group epoch, target assignment, its
/// epoch, current assignments. Tombstones go member records first (current, target,
/// metadata), then resolved expressions, then the group's.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Kind {
    MemberMetadata,
    RegularExpression,
    PartitionMetadata,
    GroupMetadata,
    TargetMember,
    TargetMetadata,
    CurrentAssignment,
}

/// The key of a record of `kind`; `member` is the member id of a member's record, the
/// expression of a resolved regular expression's.
fn key_of(group: &str, kind: Kind, member: &str) -> RecordKey {
    let (group, member) = (group.to_string(), member.to_string());
    match kind {
        Kind::MemberMetadata => RecordKey::ConsumerGroupMemberMetadata { group, member },
        Kind::RegularExpression => RecordKey::ConsumerGroupRegularExpression {
            group,
            regex: member,
        },
        Kind::PartitionMetadata => RecordKey::ConsumerGroupPartitionMetadata { group },
        Kind::GroupMetadata => RecordKey::ConsumerGroupMetadata { group },
        Kind::TargetMember => RecordKey::ConsumerGroupTargetAssignmentMember { group, member },
        Kind::TargetMetadata => RecordKey::ConsumerGroupTargetAssignmentMetadata { group },
        Kind::CurrentAssignment => {
            RecordKey::ConsumerGroupCurrentMemberAssignment { group, member }
        }
    }
}

/// Every record value of `group`, by (kind, member id or expression; empty for the group's
/// own records).
fn values(group: &ConsumerGroup) -> BTreeMap<(Kind, String), Bytes> {
    let mut out = BTreeMap::new();
    let whole = |kind| (kind, String::new());
    out.insert(
        whole(Kind::GroupMetadata),
        ConsumerGroupMetadataValue {
            epoch: group.group_epoch,
        }
        .encode(),
    );
    out.insert(
        whole(Kind::PartitionMetadata),
        ConsumerGroupPartitionMetadataValue {
            topics: group
                .subscribed_topics
                .iter()
                .map(|(name, (id, partitions))| TopicMetadata {
                    topic_id: *id,
                    topic_name: name.clone(),
                    num_partitions: *partitions,
                })
                .collect(),
        }
        .encode(),
    );
    out.insert(
        whole(Kind::TargetMetadata),
        ConsumerGroupTargetAssignmentMetadataValue {
            assignment_epoch: group.assignment_epoch,
        }
        .encode(),
    );
    for (id, m) in &group.members {
        out.insert(
            (Kind::MemberMetadata, id.clone()),
            ConsumerGroupMemberMetadataValue {
                instance_id: m.instance_id.clone(),
                rack_id: m.rack_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                subscribed_topic_names: m.subscribed_topic_names.iter().cloned().collect(),
                subscribed_topic_regex: m.subscribed_topic_regex.clone(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                server_assignor: m.server_assignor.clone(),
                classic: m.classic.clone(),
            }
            .encode(),
        );
        out.insert(
            (Kind::CurrentAssignment, id.clone()),
            ConsumerGroupCurrentMemberAssignmentValue {
                member_epoch: m.member_epoch,
                previous_member_epoch: m.previous_member_epoch,
                state: state_byte(m.state),
                assigned_partitions: to_stored(&m.assigned),
                partitions_pending_revocation: to_stored(&m.pending_revocation),
            }
            .encode(),
        );
    }
    for (regex, resolved) in &group.resolved_regexes {
        out.insert(
            (Kind::RegularExpression, regex.clone()),
            ConsumerGroupRegularExpressionValue {
                topics: resolved.topics.iter().cloned().collect(),
                version: resolved.version,
                timestamp: resolved.timestamp_ms,
            }
            .encode(),
        );
    }
    for (id, target) in &group.target {
        out.insert(
            (Kind::TargetMember, id.clone()),
            ConsumerGroupTargetAssignmentMemberValue {
                topic_partitions: to_stored(target),
            }
            .encode(),
        );
    }
    out
}

/// The records that take the log from `before` to `after` (`None`: no such group), as
/// `(key, value)` with `None` values for tombstones: tombstones first (member records, then
/// the group's own), then every record whose value changed, in Kafka's order. Nothing when
/// nothing persisted changed (a plain heartbeat).
pub fn changes(
    group_id: &str,
    before: Option<&ConsumerGroup>,
    after: Option<&ConsumerGroup>,
) -> Vec<(Bytes, Option<Bytes>)> {
    let old = before.map(values).unwrap_or_default();
    let new = after.map(values).unwrap_or_default();
    let mut gone: Vec<&(Kind, String)> = old.keys().filter(|k| !new.contains_key(*k)).collect();
    // Member records, then resolved expressions, then the group's; per member: current,
    // target, metadata.
    gone.sort_by_key(|(kind, member)| {
        let rank = match kind {
            Kind::CurrentAssignment => 0,
            Kind::TargetMember => 1,
            Kind::MemberMetadata => 2,
            Kind::RegularExpression => 3,
            Kind::TargetMetadata => 4,
            Kind::PartitionMetadata => 5,
            Kind::GroupMetadata => 6,
        };
        let class = match rank {
            0..=2 => 0,
            3 => 1,
            _ => 2,
        };
        (class, member.clone(), rank)
    });
    let mut out: Vec<(Bytes, Option<Bytes>)> = gone
        .into_iter()
        .map(|(kind, member)| (key_of(group_id, *kind, member).encode(), None))
        .collect();
    out.extend(
        new.iter()
            .filter(|(k, v)| old.get(*k) != Some(*v))
            .map(|((kind, member), v)| (key_of(group_id, *kind, member).encode(), Some(v.clone()))),
    );
    out
}

/// Applies one consumer group record to `group` (created empty by the caller when absent).
/// Returns `false` when the group is gone (its epoch record was tombstoned). Members get no
/// session here: the coordinator starts their session timers once the partition is loaded,
/// as Kafka does.
pub fn replay(
    group: &mut ConsumerGroup,
    key: &RecordKey,
    value: Option<Bytes>,
    now_ms: i64,
) -> Result<bool, DecodeError> {
    match key {
        RecordKey::ConsumerGroupMetadata { .. } => match value {
            Some(v) => group.group_epoch = ConsumerGroupMetadataValue::decode(v)?.epoch,
            None => return Ok(false),
        },
        RecordKey::ConsumerGroupPartitionMetadata { .. } => {
            group.subscribed_topics = match value {
                Some(v) => ConsumerGroupPartitionMetadataValue::decode(v)?
                    .topics
                    .into_iter()
                    .map(|t| (t.topic_name, (t.topic_id, t.num_partitions)))
                    .collect(),
                None => BTreeMap::new(),
            }
        }
        RecordKey::ConsumerGroupTargetAssignmentMetadata { .. } => {
            if let Some(v) = value {
                group.assignment_epoch =
                    ConsumerGroupTargetAssignmentMetadataValue::decode(v)?.assignment_epoch;
            }
        }
        RecordKey::ConsumerGroupMemberMetadata { member, .. } => match value {
            Some(v) => {
                let v = ConsumerGroupMemberMetadataValue::decode(v)?;
                let m = group
                    .members
                    .entry(member.clone())
                    .or_insert_with(|| ConsumerMember::new(member, now_ms));
                m.instance_id = v.instance_id;
                m.rack_id = v.rack_id;
                m.client_id = v.client_id;
                m.client_host = v.client_host;
                m.subscribed_topic_names = v.subscribed_topic_names.into_iter().collect();
                m.subscribed_topic_regex = v.subscribed_topic_regex;
                m.rebalance_timeout_ms = v.rebalance_timeout_ms;
                m.server_assignor = v.server_assignor;
                m.classic = v.classic;
            }
            None => {
                group.members.remove(member);
            }
        },
        RecordKey::ConsumerGroupTargetAssignmentMember { member, .. } => match value {
            Some(v) => {
                let v = ConsumerGroupTargetAssignmentMemberValue::decode(v)?;
                group
                    .target
                    .insert(member.clone(), from_stored(v.topic_partitions));
            }
            None => {
                group.target.remove(member);
            }
        },
        RecordKey::ConsumerGroupCurrentMemberAssignment { member, .. } => {
            // A tombstone precedes the member's metadata tombstone, which removes it.
            if let Some(v) = value {
                let v = ConsumerGroupCurrentMemberAssignmentValue::decode(v)?;
                let m = group
                    .members
                    .entry(member.clone())
                    .or_insert_with(|| ConsumerMember::new(member, now_ms));
                m.member_epoch = v.member_epoch;
                m.previous_member_epoch = v.previous_member_epoch;
                m.state = state_of(v.state);
                m.assigned = from_stored(v.assigned_partitions);
                m.pending_revocation = from_stored(v.partitions_pending_revocation);
            }
        }
        RecordKey::ConsumerGroupRegularExpression { regex, .. } => match value {
            Some(v) => {
                let v = ConsumerGroupRegularExpressionValue::decode(v)?;
                group.resolved_regexes.insert(
                    regex.clone(),
                    ResolvedRegex {
                        topics: v.topics.into_iter().collect(),
                        version: v.version,
                        timestamp_ms: v.timestamp,
                    },
                );
            }
            None => {
                group.resolved_regexes.remove(regex);
            }
        },
        RecordKey::Offset { .. } | RecordKey::Group { .. } => {
            warn!("not a consumer group record");
        }
    }
    Ok(true)
}

/// Starts the timers of a loaded group's members from `now_ms` (Kafka's `onLoaded`): every
/// member gets a full session (a classic member its own session timeout), and one that
/// still has partitions to revoke its rebalance timeout again. Its regular expressions are resolved again at its first heartbeat (topics
/// may have come and gone while no coordinator had the group).
pub fn start_timers(group: &mut ConsumerGroup, now_ms: i64, session_timeout_ms: i32) {
    group.regexes_refreshed_ms = i64::MIN;
    for m in group.members.values_mut() {
        let session = m
            .classic
            .as_ref()
            .map_or(session_timeout_ms, |c| c.session_timeout_ms);
        m.session_deadline_ms = now_ms + i64::from(session);
        m.revocation_deadline_ms = (m.state == MemberState::UnrevokedPartitions)
            .then(|| now_ms + i64::from(m.rebalance_timeout_ms));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::consumer::{ConsumerGroupConfig, Heartbeat};
    use uuid::Uuid;

    const TOPIC: Uuid = Uuid::from_u128(42);

    fn join(group: &mut ConsumerGroup, id: &str, now: i64) {
        let hb = Heartbeat {
            member_id: id.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(vec!["t".into()]),
            owned: Some(Assignment::new()),
            client_id: format!("client-{id}"),
            client_host: "/127.0.0.1".into(),
            ..Heartbeat::default()
        };
        let lookup = |name: &str| (name == "t").then_some((TOPIC, 4));
        group
            .heartbeat(&hb, &lookup, now, &ConsumerGroupConfig::default(), || {
                unreachable!("v1 members choose their id")
            })
            .unwrap();
    }

    /// Replays `records` into a fresh group, as a load does.
    fn load(group_id: &str, records: &[(Bytes, Option<Bytes>)]) -> Option<ConsumerGroup> {
        let mut group = Some(ConsumerGroup::new(group_id));
        for (k, v) in records {
            let key = RecordKey::decode(k.clone()).unwrap().unwrap();
            let g = group.get_or_insert_with(|| ConsumerGroup::new(group_id));
            if !replay(g, &key, v.clone(), 0).unwrap() {
                group = None;
            }
        }
        group
    }

    /// Loaded state compared without the timers (which restart at load).
    fn without_timers(mut g: ConsumerGroup) -> ConsumerGroup {
        start_timers(&mut g, 0, 0);
        g
    }

    #[test]
    fn replaying_the_changes_rebuilds_the_group() {
        let mut group = ConsumerGroup::new("g");
        let mut log: Vec<(Bytes, Option<Bytes>)> = Vec::new();
        let mut before = None;
        let mut step = |group: &ConsumerGroup, log: &mut Vec<_>| {
            log.extend(changes("g", before.as_ref(), Some(group)));
            before = Some(group.clone());
        };
        join(&mut group, "a", 0);
        step(&group, &mut log);
        join(&mut group, "b", 1);
        step(&group, &mut log);
        assert_eq!(group.members["b"].member_epoch, 2, "b joined at epoch 2");
        assert_eq!(
            without_timers(load("g", &log).unwrap()),
            without_timers(group.clone())
        );

        // A plain heartbeat changes nothing persisted: no records.
        assert!(changes("g", Some(&group), Some(&group)).is_empty());

        // A member removed: its three records are tombstoned, the others rewritten.
        let mut left = group.clone();
        left.remove_member("a");
        let removal = changes("g", Some(&group), Some(&left));
        let tombstones: Vec<RecordKey> = removal
            .iter()
            .filter(|(_, v)| v.is_none())
            .map(|(k, _)| RecordKey::decode(k.clone()).unwrap().unwrap())
            .collect();
        let member = |kind: fn(String, String) -> RecordKey| kind("g".into(), "a".into());
        assert_eq!(
            tombstones,
            vec![
                member(
                    |group, member| RecordKey::ConsumerGroupCurrentMemberAssignment {
                        group,
                        member
                    }
                ),
                member(
                    |group, member| RecordKey::ConsumerGroupTargetAssignmentMember {
                        group,
                        member
                    }
                ),
                member(|group, member| RecordKey::ConsumerGroupMemberMetadata { group, member }),
            ]
        );
        log.extend(removal);
        let loaded = load("g", &log).unwrap();
        assert_eq!(loaded.members.keys().collect::<Vec<_>>(), ["b"]);
        assert_eq!(without_timers(loaded), without_timers(left.clone()));

        // The group removed: everything tombstoned, nothing left after replay.
        log.extend(changes("g", Some(&left), None));
        assert!(load("g", &log).is_none());
    }

    #[test]
    fn a_loaded_member_keeps_heartbeating_with_its_epoch() {
        let mut group = ConsumerGroup::new("g");
        join(&mut group, "a", 0);
        let epoch = group.members["a"].member_epoch;
        let mut loaded = load("g", &changes("g", None, Some(&group))).unwrap();
        start_timers(&mut loaded, 1_000, 45_000);
        assert_eq!(loaded.members["a"].session_deadline_ms, 46_000);
        let hb = Heartbeat {
            member_id: "a".into(),
            member_epoch: epoch,
            client_id: "client-a".into(),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: -1,
            ..Heartbeat::default()
        };
        let lookup = |name: &str| (name == "t").then_some((TOPIC, 4));
        let reply = loaded
            .heartbeat(
                &hb,
                &lookup,
                2_000,
                &ConsumerGroupConfig::default(),
                || unreachable!(),
            )
            .unwrap();
        assert_eq!(reply.member_epoch, epoch, "no new epoch, no rebalance");
        assert_eq!(loaded.group_epoch, group.group_epoch);
        assert!(changes("g", Some(&group), Some(&loaded)).is_empty());
    }

    #[test]
    fn resolved_regexes_are_written_replayed_and_tombstoned() {
        let mut group = ConsumerGroup::new("g");
        struct Two;
        impl crate::group::consumer::Topics for Two {
            fn lookup(&self, name: &str) -> Option<(Uuid, i32)> {
                match name {
                    "t" => Some((TOPIC, 4)),
                    "t2" => Some((Uuid::from_u128(43), 1)),
                    _ => None,
                }
            }
            fn names(&self) -> (i64, Vec<String>) {
                (17, vec!["t".into(), "t2".into(), "u".into()])
            }
        }
        let hb = Heartbeat {
            member_id: "a".into(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(vec![]),
            subscribed_topic_regex: Some("t.*".into()),
            owned: Some(Assignment::new()),
            ..Heartbeat::default()
        };
        group
            .heartbeat(
                &hb,
                &Two,
                5,
                &ConsumerGroupConfig::default(),
                || unreachable!(),
            )
            .unwrap();
        let log = changes("g", None, Some(&group));
        let keys: Vec<RecordKey> = log
            .iter()
            .map(|(k, _)| RecordKey::decode(k.clone()).unwrap().unwrap())
            .collect();
        let regex_key = RecordKey::ConsumerGroupRegularExpression {
            group: "g".into(),
            regex: "t.*".into(),
        };
        // After the member's metadata, before the subscription metadata, as Kafka writes.
        assert!(matches!(
            keys[0],
            RecordKey::ConsumerGroupMemberMetadata { .. }
        ));
        assert_eq!(keys[1], regex_key);
        let value = ConsumerGroupRegularExpressionValue::decode(log[1].1.clone().unwrap()).unwrap();
        assert_eq!(
            value,
            ConsumerGroupRegularExpressionValue {
                topics: vec!["t".into(), "t2".into()],
                version: 17,
                timestamp: 5,
            }
        );
        let loaded = load("g", &log).unwrap();
        assert_eq!(loaded.resolved_regexes, group.resolved_regexes);
        assert_eq!(without_timers(loaded), without_timers(group.clone()));

        // The last member with the expression leaves: its record is tombstoned.
        let mut left = group.clone();
        left.remove_member("a");
        let removal = changes("g", Some(&group), Some(&left));
        assert!(removal.iter().any(|(k, v)| v.is_none()
            && RecordKey::decode(k.clone()).unwrap() == Some(regex_key.clone())));
        let mut all = log.clone();
        all.extend(removal);
        assert!(load("g", &all).unwrap().resolved_regexes.is_empty());
    }
}
