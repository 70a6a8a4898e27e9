//! Online migration between the classic protocol and the consumer protocol (KIP-848), as
//! Kafka 4.x does it (`group.consumer.migration.policy`).
//!
//! - **Upgrade**: the first ConsumerGroupHeartbeat (epoch 0) to a classic group that has
//!   members turns it into a consumer group ([`ConsumerGroup::from_classic`]): every member
//!   keeps its generation as its epoch and its assignment as its target, and stays a member
//!   of the classic protocol. The new member's join bumps the group epoch, so the classic
//!   members are told REBALANCE_IN_PROGRESS by their next Heartbeat and rejoin.
//! - **Classic members of a consumer group** keep using JoinGroup, SyncGroup, Heartbeat and
//!   LeaveGroup ([`ConsumerGroup::classic_join`] and the others). The server-side assignor
//!   computes their partitions; a JoinGroup is one reconciliation step (the partitions it
//!   owns are in its subscription), answered at once with its epoch as the generation and
//!   no leader, so it syncs as a follower and gets its assignment in SyncGroup.
//! - **Downgrade**: when the last member of the consumer protocol leaves (or is fenced)
//!   and the others speak the classic protocol, the group turns back into a classic group
//!   (`Group::downgrade`) that rebalances at once.
//!
//! The decisions ([`upgrade_refusal`], [`downgrade_allowed`]) are pure functions of the
//! policy and the group.

use std::collections::{BTreeMap, BTreeSet};

use bytes::{BufMut, Bytes, BytesMut};
use kafka_protocol::messages::consumer_protocol_assignment::TopicPartition as AssignedPartitions;
use kafka_protocol::messages::{ConsumerProtocolAssignment, ConsumerProtocolSubscription};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::{refuse, Assignment, ConsumerGroup, ConsumerMember, MemberState, Refusal, Topics};
use crate::group::records::ClassicMemberMetadata;
use crate::group::state::{Group, JoinRequest, JoinResponse, SyncRequest, SyncResponse};

/// The protocol type of consumers (Kafka's `ConsumerProtocol.PROTOCOL_TYPE`): only groups
/// of this type convert.
pub const CONSUMER_PROTOCOL_TYPE: &str = "consumer";

/// `group.consumer.migration.policy`: which conversions between a classic group and a
/// consumer group are allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MigrationPolicy {
    /// Neither.
    Disabled,
    /// Classic to consumer only.
    Upgrade,
    /// Consumer to classic only.
    Downgrade,
    /// Both (Kafka 4.x's default).
    Bidirectional,
}

impl MigrationPolicy {
    /// Kafka's names: `disabled`, `upgrade`, `downgrade`, `bidirectional` (any case).
    pub fn parse(name: &str) -> Option<MigrationPolicy> {
        match name.to_ascii_lowercase().as_str() {
            "disabled" => Some(MigrationPolicy::Disabled),
            "upgrade" => Some(MigrationPolicy::Upgrade),
            "downgrade" => Some(MigrationPolicy::Downgrade),
            "bidirectional" => Some(MigrationPolicy::Bidirectional),
            _ => None,
        }
    }

    /// True if a classic group may become a consumer group.
    pub fn upgrade_enabled(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Upgrade | MigrationPolicy::Bidirectional
        )
    }

    /// True if a consumer group may become a classic group.
    pub fn downgrade_enabled(self) -> bool {
        matches!(
            self,
            MigrationPolicy::Downgrade | MigrationPolicy::Bidirectional
        )
    }
}

/// Why the classic group `group` (with members) may not become a consumer group, or `None`
/// when it may (Kafka's `validateOnlineUpgrade`; the member that asked is refused with
/// [`upgrade_refused`]). `consumer_max_size` is `group.consumer.max.size`.
pub fn upgrade_refusal(
    policy: MigrationPolicy,
    group: &Group,
    consumer_max_size: usize,
) -> Option<&'static str> {
    if !policy.upgrade_enabled() {
        Some("online upgrade is disabled")
    } else if group.protocol_type.as_deref() != Some(CONSUMER_PROTOCOL_TYPE) {
        Some("the group does not use the consumer embedded protocol")
    } else if group.members().count() > consumer_max_size {
        Some("the group size exceeds the consumer group maximum size")
    } else {
        None
    }
}

/// True if the consumer group turns back into a classic group when `leaving` (a member of
/// the consumer protocol) leaves or is fenced: every other member speaks the classic
/// protocol, at least one remains, the policy allows it and the classic group would not be
/// too large (Kafka's `validateOnlineDowngradeWithFencedMember`). `classic_max_size` is
/// `group.max.size`.
pub fn downgrade_allowed(
    policy: MigrationPolicy,
    group: &ConsumerGroup,
    leaving: &str,
    classic_max_size: usize,
) -> bool {
    let Some(member) = group.members.get(leaving) else {
        return false;
    };
    let others = group.members.len() - 1;
    !member.uses_classic()
        && group
            .members
            .values()
            .filter(|m| m.member_id != leaving)
            .all(ConsumerMember::uses_classic)
        && others >= 1
        && policy.downgrade_enabled()
        && others <= classic_max_size
}

/// True if the consumer group turns back into a classic group when a classic member with
/// the instance id of static member `replaced` (of the consumer protocol) joins in its
/// place: every other member speaks the classic protocol, the policy allows it and the
/// classic group would not be too large (Kafka's
/// `validateOnlineDowngradeWithReplacedMember`).
pub fn downgrade_allowed_replacing(
    policy: MigrationPolicy,
    group: &ConsumerGroup,
    replaced: &str,
    classic_max_size: usize,
) -> bool {
    group
        .members
        .get(replaced)
        .is_some_and(|m| !m.uses_classic())
        && group
            .members
            .values()
            .filter(|m| m.member_id != replaced)
            .all(ConsumerMember::uses_classic)
        && policy.downgrade_enabled()
        && group.members.len() <= classic_max_size
}

/// A member's subscription in the embedded consumer protocol, as its JoinGroup carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// The topics it subscribes to.
    pub topics: Vec<String>,
    /// The partitions it still owns (cooperative assignors; empty for eager ones), by topic
    /// name.
    pub owned: Vec<(String, Vec<i32>)>,
    /// `client.rack` (v3+).
    pub rack_id: Option<String>,
}

/// The version a consumer-protocol message starts with, and the rest.
fn split_version(metadata: &Bytes) -> Option<(i16, Bytes)> {
    if metadata.len() < 2 {
        return None;
    }
    let version = i16::from_be_bytes([metadata[0], metadata[1]]);
    Some((version, metadata.slice(2..)))
}

/// Decodes a `ConsumerProtocolSubscription` (version first; versions above 3 read as 3,
/// whose fields they keep, as Kafka's `ConsumerProtocol` does).
pub fn decode_subscription(metadata: &Bytes) -> Option<Subscription> {
    let (version, mut body) = split_version(metadata)?;
    let sub = ConsumerProtocolSubscription::decode(&mut body, version.clamp(0, 3)).ok()?;
    Some(Subscription {
        topics: sub.topics.iter().map(|t| t.as_str().to_string()).collect(),
        owned: sub
            .owned_partitions
            .into_iter()
            .map(|tp| (tp.topic.0.as_str().to_string(), tp.partitions))
            .collect(),
        rack_id: sub.rack_id.map(|r| r.as_str().to_string()),
    })
}

/// Decodes a `ConsumerProtocolAssignment` into partitions by topic name; an empty one (a
/// member that has not synced yet) is no partitions.
pub fn decode_assignment(assignment: &Bytes) -> Option<Vec<(String, Vec<i32>)>> {
    if assignment.is_empty() {
        return Some(Vec::new());
    }
    let (version, mut body) = split_version(assignment)?;
    let a = ConsumerProtocolAssignment::decode(&mut body, version.clamp(0, 3)).ok()?;
    Some(
        a.assigned_partitions
            .into_iter()
            .map(|tp| (tp.topic.0.as_str().to_string(), tp.partitions))
            .collect(),
    )
}

/// Encodes partitions by topic name as a `ConsumerProtocolAssignment` of `version` (that of
/// the member's subscription, at most 3).
pub fn encode_assignment(partitions: &BTreeMap<String, BTreeSet<i32>>, version: i16) -> Bytes {
    let version = version.clamp(0, 3);
    let assignment = ConsumerProtocolAssignment::default().with_assigned_partitions(
        partitions
            .iter()
            .map(|(topic, ps)| {
                AssignedPartitions::default()
                    .with_topic(kafka_protocol::messages::TopicName(StrBytes::from_string(
                        topic.clone(),
                    )))
                    .with_partitions(ps.iter().copied().collect())
            })
            .collect(),
    );
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    // Encoding a message built here cannot fail (no field exceeds its type's bounds).
    if assignment.encode(&mut buf, version).is_err() {
        buf.truncate(2);
    }
    buf.freeze()
}

/// Partitions by topic name as partitions by topic id; topics that do not exist are left
/// out.
fn to_ids(partitions: &[(String, Vec<i32>)], topics: &dyn Topics) -> Assignment {
    let mut out = Assignment::new();
    for (name, ps) in partitions {
        if let Some((id, _)) = topics.lookup(name) {
            out.entry(id).or_default().extend(ps.iter().copied());
        }
    }
    out.retain(|_, ps| !ps.is_empty());
    out
}

/// The consumer-protocol version of a member's subscription (the first protocol's).
fn subscription_version(classic: &ClassicMemberMetadata) -> i16 {
    protocols_version(&classic.supported_protocols)
}

/// The consumer-protocol version of the first protocol's metadata.
pub fn protocols_version(protocols: &[(String, Bytes)]) -> i16 {
    protocols
        .first()
        .and_then(|(_, m)| split_version(m))
        .map_or(0, |(v, _)| v)
}

/// The name of a member's first protocol: the one a classic member of a consumer group
/// is told it uses.
fn protocol_name(classic: &ClassicMemberMetadata) -> String {
    classic
        .supported_protocols
        .first()
        .map(|(n, _)| n.clone())
        .unwrap_or_default()
}

impl ConsumerGroup {
    /// The consumer group a classic group becomes (Kafka's `fromClassicGroup`): the group
    /// and target epochs are its generation; each member keeps its id, session, protocols
    /// and assignment (as its target too) at the generation's epoch, stable, and its session
    /// starts again at `now_ms` (as Kafka schedules each converted member's session
    /// timeout). `None` if a member's subscription or assignment is not the embedded
    /// consumer protocol.
    pub fn from_classic(group: &Group, topics: &dyn Topics, now_ms: i64) -> Option<ConsumerGroup> {
        let mut converted = ConsumerGroup::new(&group.group_id);
        converted.group_epoch = group.generation_id;
        converted.assignment_epoch = group.generation_id;
        let protocol = group.protocol_name.clone().unwrap_or_default();
        for m in group.members() {
            let subscription = decode_subscription(&m.metadata(&protocol))?;
            let assigned = to_ids(&decode_assignment(&m.assignment)?, topics);
            let member = ConsumerMember {
                instance_id: m.group_instance_id.clone(),
                rack_id: subscription.rack_id,
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                subscribed_topic_names: subscription.topics.into_iter().collect(),
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                member_epoch: group.generation_id,
                previous_member_epoch: group.generation_id,
                state: MemberState::Stable,
                assigned: assigned.clone(),
                classic: Some(ClassicMemberMetadata {
                    session_timeout_ms: m.session_timeout_ms,
                    supported_protocols: m.protocols.clone(),
                }),
                // Not the classic member's last heartbeat: a member that was waiting in
                // JoinGroup has none to go by, and Kafka gives every member a full session.
                session_deadline_ms: now_ms + i64::from(m.session_timeout_ms),
                ..ConsumerMember::new(&m.member_id, now_ms)
            };
            converted.target.insert(m.member_id.clone(), assigned);
            converted.members.insert(m.member_id.clone(), member);
        }
        converted.subscribed_topics = converted.lookup_subscribed_topics(topics);
        Some(converted)
    }

    /// Partitions by topic id as partitions by name, through the subscribed topics.
    pub fn topic_names(&self, assignment: &Assignment) -> BTreeMap<String, BTreeSet<i32>> {
        let names: BTreeMap<Uuid, &String> = self
            .subscribed_topics
            .iter()
            .map(|(name, (id, _))| (*id, name))
            .collect();
        assignment
            .iter()
            .filter_map(|(id, ps)| names.get(id).map(|n| ((*n).clone(), ps.clone())))
            .collect()
    }

    /// `member`'s target assignment in the embedded consumer protocol, at the version of
    /// its subscription (what a downgraded classic group starts from).
    pub fn classic_target_assignment(&self, member: &ConsumerMember) -> Bytes {
        let version = member.classic.as_ref().map_or(0, subscription_version);
        self.classic_target_assignment_at(&member.member_id, version)
    }

    /// The target assignment of member `member_id` in the embedded consumer protocol of
    /// `version`.
    pub fn classic_target_assignment_at(&self, member_id: &str, version: i16) -> Bytes {
        let empty = Assignment::new();
        let target = self.target.get(member_id).unwrap_or(&empty);
        encode_assignment(&self.topic_names(target), version)
    }

    /// True if a member joining with `protocol_type` and `protocols` can be served: the
    /// consumer protocol type, and a protocol every classic member supports (Kafka's
    /// `supportsClassicProtocols`).
    pub fn supports_classic_protocols(
        &self,
        protocol_type: &str,
        protocols: &[(String, Bytes)],
    ) -> bool {
        protocol_type == CONSUMER_PROTOCOL_TYPE
            && protocols.iter().any(|(name, _)| {
                self.members.values().all(|m| {
                    m.classic
                        .as_ref()
                        .is_none_or(|c| c.supported_protocols.iter().any(|(n, _)| n == name))
                })
            })
    }

    /// The member of the classic protocol a SyncGroup, Heartbeat or LeaveGroup names, as
    /// Kafka's `validateConsumerGroupMember` and `throwIfMemberDoesNotUseClassicProtocol`
    /// find it: by instance id when one is given (FENCED_INSTANCE_ID if it is another
    /// member's), else by member id; UNKNOWN_MEMBER_ID if none or not a classic member.
    fn classic_member(
        &self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<&ConsumerMember, ResponseError> {
        let member = match instance_id {
            Some(instance) => {
                let m = self
                    .static_member(instance)
                    .ok_or(ResponseError::UnknownMemberId)?;
                if !member_id.is_empty() && m.member_id != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
                m
            }
            None => self
                .members
                .get(member_id)
                .ok_or(ResponseError::UnknownMemberId)?,
        };
        if !member.uses_classic() {
            return Err(ResponseError::UnknownMemberId);
        }
        Ok(member)
    }

    /// The member with `group.instance.id` `instance`.
    pub fn static_member(&self, instance: &str) -> Option<&ConsumerMember> {
        self.members
            .values()
            .find(|m| m.instance_id.as_deref() == Some(instance))
    }

    /// A JoinGroup to this consumer group (with members), as Kafka's
    /// `classicGroupJoinToConsumerGroup`: the member (created if new) takes its
    /// subscription from its first protocol's metadata, the group epoch goes up if that
    /// changed what the group consumes, and the member makes one reconciliation step with
    /// the partitions its subscription says it owns. Answered at once with its epoch as the
    /// generation, its first protocol and no leader (it syncs as a follower).
    /// `new_member_id` names a member that joins without an id.
    pub fn classic_join(
        &mut self,
        req: &JoinRequest,
        topics: &dyn Topics,
        now_ms: i64,
        max_size: usize,
        new_member_id: impl FnOnce() -> String,
    ) -> JoinResponse {
        let unknown = req.member_id.is_empty();
        let member_id = if unknown {
            new_member_id()
        } else {
            req.member_id.clone()
        };
        let error = |e: ResponseError| JoinResponse::error(e, &member_id);
        if self.members.len() >= max_size && !self.members.contains_key(&member_id) {
            return error(ResponseError::GroupMaxSizeReached);
        }
        if !self.supports_classic_protocols(&req.protocol_type, &req.protocols) {
            return error(ResponseError::InconsistentGroupProtocol);
        }
        if unknown && req.require_known_member_id && req.group_instance_id.is_none() {
            return error(ResponseError::MemberIdRequired);
        }
        let Some(subscription) = req
            .protocols
            .first()
            .and_then(|(_, metadata)| decode_subscription(metadata))
        else {
            return error(ResponseError::UnknownServerError);
        };

        let before = match &req.group_instance_id {
            Some(instance) => match self.static_member(instance).cloned() {
                // A static member that rejoins without its id takes over the previous
                // instance's place and partitions under the new id.
                Some(previous) if unknown => {
                    self.members.remove(&previous.member_id);
                    if let Some(target) = self.target.remove(&previous.member_id) {
                        self.target.insert(member_id.clone(), target);
                    }
                    let replacement = ConsumerMember {
                        member_id: member_id.clone(),
                        member_epoch: 0,
                        previous_member_epoch: 0,
                        ..previous
                    };
                    self.members.insert(member_id.clone(), replacement.clone());
                    replacement
                }
                Some(existing) if existing.member_id != member_id => {
                    return error(ResponseError::FencedInstanceId);
                }
                Some(existing) => existing,
                None if unknown => ConsumerMember::new(&member_id, now_ms),
                None => return error(ResponseError::UnknownMemberId),
            },
            None => self
                .members
                .get(&member_id)
                .cloned()
                .unwrap_or_else(|| ConsumerMember::new(&member_id, now_ms)),
        };

        let mut member = before.clone();
        if let Some(instance) = &req.group_instance_id {
            member.instance_id = Some(instance.clone());
        }
        if let Some(rack) = subscription.rack_id {
            member.rack_id = Some(rack);
        }
        if req.rebalance_timeout_ms != -1 {
            member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        }
        member.subscribed_topic_names = subscription.topics.iter().cloned().collect();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.classic = Some(ClassicMemberMetadata {
            session_timeout_ms: req.session_timeout_ms,
            supported_protocols: req.protocols.clone(),
        });
        let current = self.update_member(&before, member, topics, now_ms);
        let owned = to_ids(&subscription.owned, topics);
        let mut next = self.reconcile(&current, Some(&owned));
        next.session_deadline_ms = now_ms + i64::from(req.session_timeout_ms);
        // Kafka's sync timeout: it must sync within its rebalance timeout.
        next.revocation_deadline_ms = Some(now_ms + i64::from(next.rebalance_timeout_ms));
        let response = JoinResponse {
            error_code: 0,
            generation_id: next.member_epoch,
            protocol_type: Some(CONSUMER_PROTOCOL_TYPE.to_string()),
            protocol_name: next.classic.as_ref().map(protocol_name),
            leader: String::new(),
            member_id: member_id.clone(),
            members: Vec::new(),
            skip_assignment: false,
        };
        self.members.insert(member_id, next);
        response
    }

    /// A SyncGroup from a classic member (Kafka's `classicGroupSyncToConsumerGroup`): its
    /// generation must be its epoch (ILLEGAL_GENERATION), the protocol type and name those
    /// it was given (INCONSISTENT_GROUP_PROTOCOL), and no newer rebalance may wait for it
    /// (REBALANCE_IN_PROGRESS, unless it is revoking partitions). Answers its assigned
    /// partitions.
    pub fn classic_sync(&mut self, req: &SyncRequest, now_ms: i64) -> SyncResponse {
        let member = match self.classic_member(&req.member_id, req.group_instance_id.as_deref()) {
            Ok(m) => m,
            Err(e) => return SyncResponse::error(e),
        };
        if req.generation_id != member.member_epoch {
            return SyncResponse::error(ResponseError::IllegalGeneration);
        }
        let classic = member.classic.clone().unwrap_or(ClassicMemberMetadata {
            session_timeout_ms: 0,
            supported_protocols: Vec::new(),
        });
        let name = protocol_name(&classic);
        if req
            .protocol_type
            .as_deref()
            .is_some_and(|t| t != CONSUMER_PROTOCOL_TYPE)
            || req.protocol_name.as_deref().is_some_and(|n| n != name)
        {
            return SyncResponse::error(ResponseError::InconsistentGroupProtocol);
        }
        let member_id = member.member_id.clone();
        if self.must_rejoin_for_new_epoch(member) {
            self.start_join_timeout(&member_id, now_ms);
            return SyncResponse::error(ResponseError::RebalanceInProgress);
        }
        let assignment = encode_assignment(
            &self.topic_names(&member.assigned),
            subscription_version(&classic),
        );
        if let Some(m) = self.members.get_mut(&member_id) {
            m.revocation_deadline_ms = None;
            m.session_deadline_ms = now_ms + i64::from(classic.session_timeout_ms);
        }
        SyncResponse {
            error_code: 0,
            protocol_type: req.protocol_type.clone(),
            protocol_name: req.protocol_name.clone(),
            assignment,
        }
    }

    /// Kafka's `throwIfRebalanceInProgress`: the group epoch moved past the member's and it
    /// is not in the middle of revoking (then it rejoins once it has).
    fn must_rejoin_for_new_epoch(&self, member: &ConsumerMember) -> bool {
        self.group_epoch > member.member_epoch && member.state != MemberState::UnrevokedPartitions
    }

    /// Kafka's join timeout: a member told to rejoin must do so within its rebalance
    /// timeout (a deadline already running is kept).
    fn start_join_timeout(&mut self, member_id: &str, now_ms: i64) {
        if let Some(m) = self.members.get_mut(member_id) {
            if m.revocation_deadline_ms.is_none() {
                m.revocation_deadline_ms = Some(now_ms + i64::from(m.rebalance_timeout_ms));
            }
        }
    }

    /// A Heartbeat from a classic member (Kafka's `classicGroupHeartbeatToConsumerGroup`):
    /// extends its session; REBALANCE_IN_PROGRESS when it must rejoin: the group epoch
    /// moved past its epoch, it has partitions to revoke, or partitions it waits for are
    /// free now. Returns the error code.
    pub fn classic_heartbeat(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> i16 {
        let member = match self.classic_member(member_id, instance_id) {
            Ok(m) => m,
            Err(e) => return e.code(),
        };
        if generation_id != member.member_epoch {
            return ResponseError::IllegalGeneration.code();
        }
        let rejoin = member.member_epoch < self.group_epoch
            || member.state == MemberState::UnrevokedPartitions
            || (member.state == MemberState::UnreleasedPartitions
                && !self.waiting_on_unreleased(member));
        let member_id = member.member_id.clone();
        let session = member.classic.as_ref().map_or(0, |c| c.session_timeout_ms);
        if let Some(m) = self.members.get_mut(&member_id) {
            m.session_deadline_ms = now_ms + i64::from(session);
        }
        if rejoin {
            self.start_join_timeout(&member_id, now_ms);
            return ResponseError::RebalanceInProgress.code();
        }
        0
    }

    /// True if a partition of the member's target is still owned by another member.
    fn waiting_on_unreleased(&self, member: &ConsumerMember) -> bool {
        let empty = Assignment::new();
        let target = self.target.get(&member.member_id).unwrap_or(&empty);
        target.iter().any(|(topic, ps)| {
            ps.iter().any(|p| {
                !member.assigned.get(topic).is_some_and(|a| a.contains(p))
                    && self.owner_epoch(&member.member_id, *topic, *p).is_some()
            })
        })
    }

    /// A LeaveGroup of one classic member (Kafka's `classicGroupLeaveToConsumerGroup`): by
    /// instance id when given (an empty member id is an admin's removal), else by member
    /// id. The group epoch goes up, so the others rebalance.
    pub fn classic_leave(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
    ) -> Result<(), ResponseError> {
        let id = self
            .classic_member(member_id, instance_id)?
            .member_id
            .clone();
        self.remove_member(&id);
        Ok(())
    }

    /// The members whose session ended or that missed a deadline (revocation, join or
    /// sync), without removing them.
    pub fn expired(&self, now_ms: i64) -> Vec<String> {
        self.members
            .values()
            .filter(|m| {
                m.session_deadline_ms <= now_ms
                    || m.revocation_deadline_ms.is_some_and(|d| d <= now_ms)
            })
            .map(|m| m.member_id.clone())
            .collect()
    }
}

/// The answer to a ConsumerGroupHeartbeat that is not a join (epoch 0) for a classic
/// group with members.
pub fn not_a_consumer_group(group_id: &str) -> Refusal {
    refuse(
        ResponseError::GroupIdNotFound,
        format!("Group {group_id} is not a consumer group."),
    )
}

/// The answer to a join that may not upgrade the classic group, `reason` from
/// [`upgrade_refusal`] or a malformed embedded protocol: GROUP_ID_NOT_FOUND with Kafka
/// 4.1's message (the Java client gives up with GroupIdNotFoundException).
pub fn upgrade_refused(group_id: &str, reason: &str) -> Refusal {
    refuse(
        ResponseError::GroupIdNotFound,
        format!("Cannot upgrade classic group {group_id} to consumer group because {reason}."),
    )
}

/// Why a classic group whose embedded protocol cannot be read does not upgrade.
pub const MALFORMED_PROTOCOL: &str = "the embedded consumer protocol is malformed";

#[cfg(test)]
mod tests {
    use std::collections::BTreeMap;

    use kafka_protocol::messages::consumer_protocol_subscription::TopicPartition as OwnedPartitions;
    use kafka_protocol::messages::TopicName;

    use super::*;
    use crate::group::consumer::{persist, ConsumerGroupConfig, Heartbeat};
    use crate::group::records::{GroupValue, StoredMember};
    use crate::group::state::{GroupLimits, GroupState, Reply};

    const TOPIC: &str = "events";

    fn topic_id() -> Uuid {
        Uuid::from_u128(42)
    }

    /// The cluster: one topic of four partitions.
    fn cluster(name: &str) -> Option<(Uuid, i32)> {
        (name == TOPIC).then(|| (topic_id(), 4))
    }

    fn limits(policy: MigrationPolicy) -> GroupLimits {
        GroupLimits {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 0,
            max_size: 100,
            consumer_session_timeout_ms: 45_000,
            consumer_max_size: usize::MAX,
            migration_policy: policy,
        }
    }

    /// A `ConsumerProtocolSubscription` v3 to `TOPIC` owning `owned`, as the Java client
    /// writes it.
    fn subscription(owned: &[i32]) -> Bytes {
        let sub = ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str(TOPIC)])
            .with_owned_partitions(if owned.is_empty() {
                vec![]
            } else {
                vec![OwnedPartitions::default()
                    .with_topic(TopicName(StrBytes::from_static_str(TOPIC)))
                    .with_partitions(owned.to_vec())]
            })
            .with_generation_id(-1);
        let mut buf = BytesMut::new();
        buf.put_i16(3);
        sub.encode(&mut buf, 3).unwrap();
        buf.freeze()
    }

    fn assignment(partitions: &[i32]) -> Bytes {
        encode_assignment(
            &[(TOPIC.to_string(), partitions.iter().copied().collect())].into(),
            3,
        )
    }

    fn partitions(a: &Bytes) -> BTreeSet<i32> {
        decode_assignment(a)
            .unwrap()
            .into_iter()
            .flat_map(|(t, ps)| {
                assert_eq!(t, TOPIC);
                ps
            })
            .collect()
    }

    fn stored(id: &str, assigned: &[i32]) -> StoredMember {
        StoredMember {
            member_id: id.into(),
            group_instance_id: None,
            client_id: format!("client-{id}"),
            client_host: "/127.0.0.1".into(),
            rebalance_timeout_ms: 30_000,
            session_timeout_ms: 10_000,
            subscription: subscription(&[]),
            assignment: assignment(assigned),
        }
    }

    /// A stable classic group at generation 3: A owns partitions 0 and 1, B 2 and 3.
    fn classic_group(protocol_type: &str) -> Group {
        Group::restore(
            "g",
            &GroupValue {
                protocol_type: protocol_type.into(),
                generation: 3,
                protocol: Some("range".into()),
                leader: Some("A".into()),
                state_timestamp: 0,
                members: vec![stored("A", &[0, 1]), stored("B", &[2, 3])],
            },
            1_000,
        )
    }

    fn join_request(id: &str, protocols: &[&str], owned: &[i32]) -> JoinRequest {
        JoinRequest {
            member_id: id.into(),
            group_instance_id: None,
            client_id: format!("client-{id}"),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: CONSUMER_PROTOCOL_TYPE.into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), subscription(owned)))
                .collect(),
            require_known_member_id: true,
        }
    }

    fn sync_request(id: &str, generation: i32, protocol: &str) -> SyncRequest {
        SyncRequest {
            member_id: id.into(),
            group_instance_id: None,
            generation_id: generation,
            protocol_type: Some(CONSUMER_PROTOCOL_TYPE.into()),
            protocol_name: Some(protocol.into()),
            assignments: vec![],
        }
    }

    fn consumer_join(id: &str) -> Heartbeat {
        Heartbeat {
            member_id: id.into(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(vec![TOPIC.into()]),
            owned: Some(Assignment::new()),
            ..Heartbeat::default()
        }
    }

    fn converted() -> ConsumerGroup {
        ConsumerGroup::from_classic(&classic_group("consumer"), &cluster, 1_000).unwrap()
    }

    #[test]
    fn policies_parse_and_allow_their_directions() {
        use MigrationPolicy::*;
        for (name, policy, up, down) in [
            ("disabled", Disabled, false, false),
            ("upgrade", Upgrade, true, false),
            ("Downgrade", Downgrade, false, true),
            ("BIDIRECTIONAL", Bidirectional, true, true),
        ] {
            assert_eq!(MigrationPolicy::parse(name), Some(policy));
            assert_eq!(
                (policy.upgrade_enabled(), policy.downgrade_enabled()),
                (up, down)
            );
        }
        assert_eq!(MigrationPolicy::parse("both"), None);
    }

    #[test]
    fn upgrade_is_refused_by_policy_protocol_type_and_size() {
        let group = classic_group("consumer");
        assert_eq!(
            upgrade_refusal(MigrationPolicy::Bidirectional, &group, 2),
            None
        );
        assert_eq!(upgrade_refusal(MigrationPolicy::Upgrade, &group, 2), None);
        assert_eq!(
            upgrade_refusal(MigrationPolicy::Downgrade, &group, 2),
            Some("online upgrade is disabled")
        );
        assert_eq!(
            upgrade_refusal(MigrationPolicy::Disabled, &group, 2),
            Some("online upgrade is disabled")
        );
        assert_eq!(
            upgrade_refusal(MigrationPolicy::Bidirectional, &group, 1),
            Some("the group size exceeds the consumer group maximum size")
        );
        assert_eq!(
            upgrade_refusal(MigrationPolicy::Bidirectional, &classic_group("connect"), 2),
            Some("the group does not use the consumer embedded protocol")
        );
        assert_eq!(
            upgrade_refused("g", "online upgrade is disabled").message,
            "Cannot upgrade classic group g to consumer group because online upgrade is disabled."
        );
    }

    #[test]
    fn a_classic_group_converts_with_its_generation_and_assignments() {
        let c = converted();
        assert_eq!((c.group_epoch, c.assignment_epoch), (3, 3));
        let a = &c.members["A"];
        assert_eq!(
            (a.member_epoch, a.previous_member_epoch, a.state),
            (3, 3, MemberState::Stable)
        );
        assert_eq!(a.assigned, [(topic_id(), [0, 1].into())].into());
        assert_eq!(c.target["B"], [(topic_id(), [2, 3].into())].into());
        assert_eq!(a.subscribed_topic_names, [TOPIC.to_string()].into());
        assert_eq!(a.client_id, "client-A");
        let classic = a.classic.as_ref().unwrap();
        assert_eq!(classic.session_timeout_ms, 10_000);
        assert_eq!(classic.supported_protocols[0].0, "range");
        // Each member's session starts again at the conversion (here at 1 s): the classic
        // members are not fenced by the first tick after it.
        assert!(c.expired(1_000 + 9_999).is_empty());
        assert_eq!(c.expired(1_000 + 10_000), ["A", "B"]);
        assert_eq!(c.subscribed_topics[TOPIC], (topic_id(), 4));
        // Malformed embedded protocol: no conversion.
        let mut bad = classic_group("consumer");
        bad = Group::restore(
            "g",
            &GroupValue {
                members: vec![StoredMember {
                    subscription: Bytes::from_static(&[0]),
                    ..stored("A", &[0])
                }],
                ..bad.to_value()
            },
            1_000,
        );
        assert!(ConsumerGroup::from_classic(&bad, &cluster, 1_000).is_none());
    }

    /// What a model client owns, as its last answer said.
    #[derive(Default)]
    struct Model {
        generation: i32,
        owned: BTreeSet<i32>,
    }

    /// The classic members (eager: they give up everything before rejoining) and one
    /// consumer member move the converted group to a new, complete assignment; no partition
    /// is ever owned by two of them.
    #[test]
    fn classic_members_reconcile_with_a_consumer_member_without_overlap() {
        let mut c = converted();
        let config = ConsumerGroupConfig::default();
        let mut now = 2_000;
        let mut models: BTreeMap<&str, Model> = BTreeMap::new();
        models.insert(
            "A",
            Model {
                generation: 3,
                owned: [0, 1].into(),
            },
        );
        models.insert(
            "B",
            Model {
                generation: 3,
                owned: [2, 3].into(),
            },
        );
        let joined = c
            .heartbeat(
                &consumer_join("C"),
                &cluster,
                now,
                &config,
                || unreachable!(),
            )
            .unwrap();
        assert_eq!(joined.member_epoch, 4, "the join bumps the group epoch");
        let mut c_owned: BTreeSet<i32> = BTreeSet::new();
        let mut c_epoch = joined.member_epoch;
        let owned_ids = |ps: &BTreeSet<i32>| -> Assignment { [(topic_id(), ps.clone())].into() };
        let check = |models: &BTreeMap<&str, Model>, c_owned: &BTreeSet<i32>| {
            let mut seen = c_owned.clone();
            for m in models.values() {
                for p in &m.owned {
                    assert!(seen.insert(*p), "partition {p} owned twice");
                }
            }
        };
        for _round in 0..10 {
            now += 1_000;
            for id in ["A", "B"] {
                let model = models.get_mut(id).unwrap();
                let code = c.classic_heartbeat(id, None, model.generation, now);
                if code == ResponseError::RebalanceInProgress.code() {
                    // Eager: everything is revoked before the JoinGroup.
                    model.owned.clear();
                    let joined = c.classic_join(
                        &join_request(id, &["range"], &[]),
                        &cluster,
                        now,
                        usize::MAX,
                        || unreachable!(),
                    );
                    assert_eq!(joined.error_code, 0);
                    assert_eq!(
                        (joined.leader.as_str(), joined.members.len()),
                        ("", 0),
                        "a follower"
                    );
                    assert_eq!(joined.protocol_name.as_deref(), Some("range"));
                    let synced =
                        c.classic_sync(&sync_request(id, joined.generation_id, "range"), now);
                    assert_eq!(synced.error_code, 0);
                    model.generation = joined.generation_id;
                    model.owned = partitions(&synced.assignment);
                } else {
                    assert_eq!(code, 0);
                }
                check(&models, &c_owned);
            }
            let hb = Heartbeat {
                member_id: "C".into(),
                member_epoch: c_epoch,
                owned: Some(owned_ids(&c_owned)),
                ..Heartbeat::default()
            };
            let reply = c
                .heartbeat(&hb, &cluster, now, &config, || unreachable!())
                .unwrap();
            c_epoch = reply.member_epoch;
            if let Some(a) = reply.assignment {
                c_owned = a.get(&topic_id()).cloned().unwrap_or_default();
            }
            check(&models, &c_owned);
        }
        assert_eq!(c.state().name(), "Stable");
        let sizes: Vec<usize> = models
            .values()
            .map(|m| m.owned.len())
            .chain([c_owned.len()])
            .collect();
        assert_eq!(sizes.iter().sum::<usize>(), 4, "every partition owned");
        assert!(sizes.iter().all(|&n| n >= 1), "{sizes:?}");
        assert!(models.values().all(|m| m.generation == c.group_epoch));
    }

    #[test]
    fn classic_requests_get_kafkas_errors() {
        let mut c = converted();
        let config = ConsumerGroupConfig::default();
        c.heartbeat(
            &consumer_join("C"),
            &cluster,
            2_000,
            &config,
            || unreachable!(),
        )
        .unwrap();
        let code = |r: &SyncResponse| ResponseError::try_from_code(r.error_code);
        assert_eq!(
            code(&c.classic_sync(&sync_request("A", 2, "range"), 2_000)),
            Some(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            code(&c.classic_sync(&sync_request("A", 3, "roundrobin"), 2_000)),
            Some(ResponseError::InconsistentGroupProtocol)
        );
        assert_eq!(
            code(&c.classic_sync(&sync_request("A", 3, "range"), 2_000)),
            Some(ResponseError::RebalanceInProgress),
            "the group epoch moved past A's"
        );
        assert_eq!(
            code(&c.classic_sync(&sync_request("C", 4, "range"), 2_000)),
            Some(ResponseError::UnknownMemberId),
            "C speaks the consumer protocol"
        );
        assert_eq!(
            c.classic_heartbeat("A", None, 3, 2_000),
            ResponseError::RebalanceInProgress.code()
        );
        assert!(
            c.members["A"].revocation_deadline_ms.is_some(),
            "a join deadline"
        );
        assert_eq!(
            c.classic_heartbeat("A", None, 7, 2_000),
            ResponseError::IllegalGeneration.code()
        );
        assert_eq!(
            c.classic_heartbeat("nobody", None, 3, 2_000),
            ResponseError::UnknownMemberId.code()
        );

        let join = |c: &mut ConsumerGroup, req: JoinRequest, max: usize| {
            let r = c.classic_join(&req, &cluster, 2_000, max, || "new-id".to_string());
            (ResponseError::try_from_code(r.error_code), r.member_id)
        };
        let connect = JoinRequest {
            protocol_type: "connect".into(),
            ..join_request("D", &["range"], &[])
        };
        assert_eq!(
            join(&mut c, connect, 9).0,
            Some(ResponseError::InconsistentGroupProtocol)
        );
        assert_eq!(
            join(&mut c, join_request("D", &["roundrobin"], &[]), 9).0,
            Some(ResponseError::InconsistentGroupProtocol),
            "the classic members support range only"
        );
        assert_eq!(
            join(&mut c, join_request("", &["range"], &[]), 9),
            (Some(ResponseError::MemberIdRequired), "new-id".to_string())
        );
        assert_eq!(
            join(&mut c, join_request("D", &["range"], &[]), 3).0,
            Some(ResponseError::GroupMaxSizeReached)
        );
        assert_eq!(
            join(&mut c, join_request("D", &["roundrobin", "range"], &[]), 9).0,
            None
        );
        assert!(c.members["D"].uses_classic());

        // Offsets: a classic member's stale generation is ILLEGAL_GENERATION, a consumer
        // member's stale epoch STALE_MEMBER_EPOCH.
        assert_eq!(
            c.validate_offset_commit("A", 2),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            c.validate_offset_commit("C", 2),
            Err(ResponseError::StaleMemberEpoch)
        );
        assert_eq!(c.validate_offset_commit("A", 3), Ok(()));

        assert_eq!(
            c.classic_leave("C", None),
            Err(ResponseError::UnknownMemberId)
        );
        let epoch = c.group_epoch;
        assert_eq!(c.classic_leave("B", None), Ok(()));
        assert!(!c.members.contains_key("B"));
        assert_eq!(c.group_epoch, epoch + 1, "the others rebalance");
    }

    #[test]
    fn downgrade_needs_a_leaving_consumer_member_classic_others_and_the_policy() {
        let mut c = converted();
        let config = ConsumerGroupConfig::default();
        let bi = MigrationPolicy::Bidirectional;
        c.heartbeat(
            &consumer_join("C"),
            &cluster,
            2_000,
            &config,
            || unreachable!(),
        )
        .unwrap();
        assert!(downgrade_allowed(bi, &c, "C", 100));
        assert!(downgrade_allowed(MigrationPolicy::Downgrade, &c, "C", 100));
        assert!(!downgrade_allowed(MigrationPolicy::Upgrade, &c, "C", 100));
        assert!(!downgrade_allowed(MigrationPolicy::Disabled, &c, "C", 100));
        assert!(
            !downgrade_allowed(bi, &c, "C", 1),
            "two classic members > group.max.size"
        );
        assert!(
            !downgrade_allowed(bi, &c, "A", 100),
            "A is a classic member"
        );
        assert!(!downgrade_allowed(bi, &c, "nobody", 100));
        c.heartbeat(
            &consumer_join("E"),
            &cluster,
            2_000,
            &config,
            || unreachable!(),
        )
        .unwrap();
        assert!(
            !downgrade_allowed(bi, &c, "C", 100),
            "E still speaks the consumer protocol"
        );
        let mut alone = ConsumerGroup::new("g");
        alone
            .heartbeat(
                &consumer_join("C"),
                &cluster,
                2_000,
                &config,
                || unreachable!(),
            )
            .unwrap();
        assert!(
            !downgrade_allowed(bi, &alone, "C", 100),
            "nobody would remain"
        );
    }

    /// The last consumer member leaves: a classic group at the group epoch, whose members
    /// hold their target assignment and rebalance at once (and complete it by rejoining).
    #[test]
    fn the_group_downgrades_and_its_members_rebalance() {
        let mut group = classic_group("consumer");
        let lim = limits(MigrationPolicy::Bidirectional);
        let mut c = ConsumerGroup::from_classic(&group, &cluster, 1_000).unwrap();
        c.heartbeat(
            &consumer_join("C"),
            &cluster,
            2_000,
            &ConsumerGroupConfig::default(),
            || unreachable!(),
        )
        .unwrap();
        let epoch = c.group_epoch;
        let target_a = c.topic_names(&c.target["A"]);
        group.upgrade(c, 2_000);
        assert!(group.members().next().is_none() && group.has_consumer_members());

        // With the upgrade-only policy, C's session end only removes it.
        let mut kept = group.clone();
        let fenced = kept.tick(2_000 + 45_000, &limits(MigrationPolicy::Upgrade));
        assert!(fenced.is_empty());
        assert!(kept
            .consumer
            .as_ref()
            .is_some_and(|c| !c.members.contains_key("C")));
        assert!(kept.members().next().is_none(), "still a consumer group");

        // C's session ends (the classic members' would too, later: they heartbeat).
        if let Some(c) = group.consumer.as_mut() {
            for m in c.members.values_mut().filter(|m| m.uses_classic()) {
                m.session_deadline_ms = i64::MAX;
            }
        }
        group.tick(2_000 + 45_000, &lim);
        assert!(group.consumer.is_none(), "a classic group again");
        assert_eq!(group.state(), GroupState::PreparingRebalance);
        assert_eq!(group.generation_id, epoch);
        assert_eq!(group.protocol_name.as_deref(), Some("range"));
        let a = group.members().find(|m| m.member_id == "A").unwrap();
        assert_eq!(
            decode_assignment(&a.assignment).unwrap(),
            target_a
                .into_iter()
                .map(|(t, ps)| (t, ps.into_iter().collect()))
                .collect::<Vec<_>>()
        );
        assert!(group.take_dirty(), "its record is written");

        let now = 50_000;
        let mut replies = group.join(1, join_request("A", &["range"], &[]), now, &lim);
        replies.extend(group.join(2, join_request("B", &["range"], &[]), now, &lim));
        let generations: Vec<i32> = replies
            .iter()
            .filter_map(|r| match r {
                Reply::Join(_, j) if j.error_code == 0 => Some(j.generation_id),
                _ => None,
            })
            .collect();
        assert_eq!(generations, vec![epoch + 1, epoch + 1], "{replies:?}");
        assert_eq!(group.state(), GroupState::CompletingRebalance);
    }

    /// A classic static member takes the place of the last static member of the consumer
    /// protocol: a classic group at once, the newcomer with the replaced member's target,
    /// answered without a rebalance; one with another subscription starts a rebalance.
    #[test]
    fn a_classic_static_member_replacing_the_last_consumer_member_downgrades() {
        let lim = limits(MigrationPolicy::Bidirectional);
        let setup = || {
            let mut group = classic_group("consumer");
            let mut c = ConsumerGroup::from_classic(&group, &cluster, 1_000).unwrap();
            let static_join = Heartbeat {
                instance_id: Some("i".into()),
                ..consumer_join("S")
            };
            c.heartbeat(
                &static_join,
                &cluster,
                2_000,
                &ConsumerGroupConfig::default(),
                || unreachable!(),
            )
            .unwrap();
            group.upgrade(c, 2_000);
            group
        };
        let group = setup();
        let c = group.consumer.as_ref().unwrap();
        assert!(downgrade_allowed_replacing(
            MigrationPolicy::Downgrade,
            c,
            "S",
            3
        ));
        assert!(!downgrade_allowed_replacing(
            MigrationPolicy::Upgrade,
            c,
            "S",
            3
        ));
        assert!(!downgrade_allowed_replacing(
            MigrationPolicy::Bidirectional,
            c,
            "S",
            2
        ));
        assert!(!downgrade_allowed_replacing(
            MigrationPolicy::Bidirectional,
            c,
            "A",
            3
        ));
        let epoch = c.group_epoch;
        let target_s = c.topic_names(&c.target["S"]);

        let mut same = setup();
        let req = JoinRequest {
            group_instance_id: Some("i".into()),
            ..join_request("", &["range"], &[])
        };
        let replies = same.downgrade_replacing(7, "S", "S2".into(), req.clone(), 3_000, &lim);
        let Some(Reply::Join(7, joined)) = replies.first() else {
            panic!("{replies:?}")
        };
        assert_eq!(
            (
                joined.error_code,
                joined.generation_id,
                joined.member_id.as_str()
            ),
            (0, epoch, "S2")
        );
        assert_eq!(
            (joined.leader.as_str(), joined.protocol_name.as_deref()),
            ("", Some("range"))
        );
        assert!(same.consumer.is_none());
        assert_eq!(
            same.state(),
            GroupState::Stable,
            "same subscription: no rebalance"
        );
        let s2 = same.members().find(|m| m.member_id == "S2").unwrap();
        assert_eq!(
            decode_assignment(&s2.assignment).unwrap(),
            target_s
                .into_iter()
                .map(|(t, ps)| (t, ps.into_iter().collect()))
                .collect::<Vec<_>>()
        );
        assert_eq!(same.members().count(), 3);

        let mut other = setup();
        let mut changed = req;
        changed.protocols = vec![("range".into(), {
            let mut buf = BytesMut::new();
            buf.put_i16(0);
            ConsumerProtocolSubscription::default()
                .with_topics(vec![StrBytes::from_static_str("other")])
                .encode(&mut buf, 0)
                .unwrap();
            buf.freeze()
        })];
        other.downgrade_replacing(8, "S", "S2".into(), changed, 3_000, &lim);
        assert_eq!(other.state(), GroupState::PreparingRebalance);
    }

    #[test]
    fn classic_members_survive_the_records() {
        let mut c = converted();
        c.heartbeat(
            &consumer_join("C"),
            &cluster,
            2_000,
            &ConsumerGroupConfig::default(),
            || unreachable!(),
        )
        .unwrap();
        let mut loaded = ConsumerGroup::new("g");
        for (key, value) in persist::changes("g", None, Some(&c)) {
            let key = crate::group::records::RecordKey::decode(key)
                .unwrap()
                .unwrap();
            assert!(persist::replay(&mut loaded, &key, value, 9_000).unwrap());
        }
        persist::start_timers(&mut loaded, 9_000, 45_000);
        assert_eq!(loaded.members["A"].classic, c.members["A"].classic);
        assert_eq!(loaded.members["C"].classic, None);
        assert_eq!(
            loaded.members["A"].session_deadline_ms,
            9_000 + 10_000,
            "its own session"
        );
        assert_eq!(loaded.members["C"].session_deadline_ms, 9_000 + 45_000);
        assert_eq!(loaded.members["A"].member_epoch, 3);
    }
}
