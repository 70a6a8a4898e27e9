//! The classic group membership protocol as a pure state machine: JoinGroup, SyncGroup,
//! Heartbeat, LeaveGroup and the passage of time go in; replies to parked requests come
//! out. No I/O and no clock: `now` is an argument, so every rebalance path is tested with
//! logical time (see the tests below).
//!
//! States follow Apache Kafka's classic coordinator: `Empty` → `PreparingRebalance` (members
//! (re)join) → `CompletingRebalance` (the leader computes assignments) → `Stable`, back to
//! `PreparingRebalance` whenever membership or subscriptions change.

use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

use bytes::Bytes;
use indexmap::IndexMap;
use kafka_protocol::ResponseError;

use super::consumer::migration::{
    decode_subscription, downgrade_allowed, protocols_version, MigrationPolicy,
    CONSUMER_PROTOCOL_TYPE,
};
use super::consumer::ConsumerGroup;
use super::records::{GroupValue, StoredMember};

/// A parked request (a JoinGroup or SyncGroup waiting for the rebalance to progress).
pub type Token = u64;

/// The group's state, with Kafka's names (as `kafka-consumer-groups.sh --state` prints them).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    /// No members (offsets may remain).
    Empty,
    /// Waiting for members to (re)join.
    PreparingRebalance,
    /// Waiting for the leader's assignment.
    CompletingRebalance,
    /// Members have their assignments.
    Stable,
    /// Removed.
    Dead,
}

impl GroupState {
    /// Kafka's name of the state.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

/// Broker settings that bound group behaviour.
#[derive(Debug, Clone, Copy)]
pub struct GroupLimits {
    /// `group.min.session.timeout.ms`.
    pub min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms`.
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`.
    pub initial_rebalance_delay_ms: i32,
    /// `group.max.size`.
    pub max_size: usize,
    /// `group.consumer.session.timeout.ms`: the session a consumer-protocol member gets when
    /// its group is loaded from `__consumer_offsets`.
    pub consumer_session_timeout_ms: i32,
    /// `group.consumer.max.size`: a classic group larger than this does not upgrade, and a
    /// classic member does not join a consumer group this large.
    pub consumer_max_size: usize,
    /// `group.consumer.migration.policy`: which conversions between the two kinds of group
    /// happen.
    pub migration_policy: MigrationPolicy,
}

/// A JoinGroup request, as the state machine needs it.
#[derive(Debug, Clone)]
pub struct JoinRequest {
    /// "" for a member joining for the first time.
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub group_instance_id: Option<String>,
    /// Client id from the request header.
    pub client_id: String,
    /// Client address, as Kafka prints it (`/127.0.0.1`).
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout (v1+; the session timeout for v0).
    pub rebalance_timeout_ms: i32,
    /// Protocol type (`consumer`, `connect`).
    pub protocol_type: String,
    /// Supported protocols (assignors) in preference order, with their metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+: a new dynamic member must first get an id (MEMBER_ID_REQUIRED).
    pub require_known_member_id: bool,
}

/// A member as described by the JoinGroup response to the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Its metadata for the selected protocol.
    pub metadata: Bytes,
}

/// The JoinGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResponse {
    /// Kafka error code, 0 on success.
    pub error_code: i16,
    /// Generation the member joined.
    pub generation_id: i32,
    /// Group protocol type.
    pub protocol_type: Option<String>,
    /// Selected protocol.
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader: String,
    /// The member's id (new ones are assigned here).
    pub member_id: String,
    /// All members with metadata — only for the leader.
    pub members: Vec<JoinedMember>,
    /// The leader must not compute a new assignment (a static leader's restart).
    pub skip_assignment: bool,
}

impl JoinResponse {
    /// A response carrying only an error code.
    pub(crate) fn error(error: ResponseError, member_id: &str) -> JoinResponse {
        JoinResponse {
            error_code: error.code(),
            generation_id: -1,
            protocol_type: None,
            protocol_name: None,
            leader: String::new(),
            member_id: member_id.to_string(),
            members: vec![],
            skip_assignment: false,
        }
    }
}

/// A SyncGroup request.
#[derive(Debug, Clone)]
pub struct SyncRequest {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Generation the member believes it is in.
    pub generation_id: i32,
    /// v5+: protocol type the member expects (checked when present).
    pub protocol_type: Option<String>,
    /// v5+: protocol name the member expects (checked when present).
    pub protocol_name: Option<String>,
    /// The leader's assignments by member id (empty for followers).
    pub assignments: Vec<(String, Bytes)>,
}

/// The SyncGroup response.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResponse {
    /// Kafka error code, 0 on success.
    pub error_code: i16,
    /// Group protocol type.
    pub protocol_type: Option<String>,
    /// Selected protocol.
    pub protocol_name: Option<String>,
    /// The member's assignment.
    pub assignment: Bytes,
}

impl SyncResponse {
    /// A response carrying only an error code.
    pub(crate) fn error(error: ResponseError) -> SyncResponse {
        SyncResponse {
            error_code: error.code(),
            protocol_type: None,
            protocol_name: None,
            assignment: Bytes::new(),
        }
    }
}

/// A reply to a parked request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// Answer a parked JoinGroup.
    Join(Token, JoinResponse),
    /// Answer a parked SyncGroup.
    Sync(Token, SyncResponse),
}

/// One member of a group.
#[derive(Debug, Clone)]
pub struct Member {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub group_instance_id: Option<String>,
    /// Client id.
    pub client_id: String,
    /// Client address.
    pub client_host: String,
    /// Session timeout.
    pub session_timeout_ms: i32,
    /// Rebalance timeout.
    pub rebalance_timeout_ms: i32,
    /// Supported protocols with metadata.
    pub protocols: Vec<(String, Bytes)>,
    /// Assignment from the last completed rebalance.
    pub assignment: Bytes,
    last_heartbeat_ms: i64,
    awaiting_join: Option<Token>,
    awaiting_sync: Option<Token>,
}

impl Member {
    /// Metadata for `protocol`, empty if the member does not support it.
    pub fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(n, _)| n == protocol)
            .map(|(_, m)| m.clone())
            .unwrap_or_default()
    }
}

/// A committed offset held in memory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CommittedOffset {
    /// Next offset to consume.
    pub offset: i64,
    /// Leader epoch, -1 if unknown.
    pub leader_epoch: i32,
    /// Client metadata.
    pub metadata: String,
    /// Commit time.
    pub commit_timestamp: i64,
}

/// One consumer group: membership state and committed offsets.
#[derive(Debug, Clone)]
pub struct Group {
    /// Group id.
    pub group_id: String,
    state: GroupState,
    /// Current generation.
    pub generation_id: i32,
    /// Protocol type of the members.
    pub protocol_type: Option<String>,
    /// Selected protocol.
    pub protocol_name: Option<String>,
    /// Leader's member id.
    pub leader: Option<String>,
    members: IndexMap<String, Member>,
    /// Member ids handed out with MEMBER_ID_REQUIRED, with when they expire.
    pending_members: HashMap<String, i64>,
    static_members: HashMap<String, String>,
    rebalance_deadline_ms: i64,
    /// Initial delay in progress: (remaining rebalance time after this window, new member joined in window).
    initial_delay: Option<(i64, bool)>,
    /// When the group last changed state (for offset expiry).
    pub state_timestamp_ms: i64,
    /// Committed offsets by (topic, partition).
    pub offsets: BTreeMap<(String, i32), CommittedOffset>,
    /// Set when the group metadata changed in a way worth persisting.
    dirty: bool,
    /// The membership of a group that uses the consumer rebalance protocol (KIP-848), set by
    /// its first ConsumerGroupHeartbeat; `None` for a classic group. A group is one or the
    /// other: while it is a consumer group its classic members are in here too (served by
    /// `ConsumerGroup::classic_join` and the others), and `members` is empty; it converts
    /// between the two as `group.consumer.migration.policy` allows (`upgrade`,
    /// `downgrade`, see `consumer::migration`); an empty group becomes what its next member
    /// speaks. Committed offsets are shared by both.
    pub consumer: Option<ConsumerGroup>,
}

impl Group {
    /// A new, empty group.
    pub fn new(group_id: &str, now_ms: i64) -> Group {
        Group {
            group_id: group_id.to_string(),
            state: GroupState::Empty,
            generation_id: 0,
            protocol_type: None,
            protocol_name: None,
            leader: None,
            members: IndexMap::new(),
            pending_members: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline_ms: 0,
            initial_delay: None,
            state_timestamp_ms: now_ms,
            offsets: BTreeMap::new(),
            dirty: false,
            consumer: None,
        }
    }

    /// Restores a group from its stored metadata; members keep their sessions from `now_ms`
    /// so consumers that keep heartbeating across a broker restart cause no rebalance.
    pub fn restore(group_id: &str, value: &GroupValue, now_ms: i64) -> Group {
        let mut group = Group::new(group_id, value.state_timestamp);
        group.generation_id = value.generation;
        group.protocol_type = Some(value.protocol_type.clone()).filter(|p| !p.is_empty());
        group.protocol_name = value.protocol.clone();
        group.leader = value.leader.clone();
        for m in &value.members {
            if let Some(instance) = &m.group_instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            let protocol = value.protocol.clone().unwrap_or_default();
            group.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: m.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: vec![(protocol, m.subscription.clone())],
                    assignment: m.assignment.clone(),
                    last_heartbeat_ms: now_ms,
                    awaiting_join: None,
                    awaiting_sync: None,
                },
            );
        }
        group.state = if group.members.is_empty() {
            GroupState::Empty
        } else {
            GroupState::Stable
        };
        group
    }

    /// The stored form of the group's metadata.
    pub fn to_value(&self) -> GroupValue {
        let protocol = self.protocol_name.clone().unwrap_or_default();
        GroupValue {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation_id,
            protocol: self.protocol_name.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_timestamp_ms,
            members: self
                .members
                .values()
                .map(|m| StoredMember {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.group_instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    session_timeout_ms: m.session_timeout_ms,
                    subscription: m.metadata(&protocol),
                    assignment: m.assignment.clone(),
                })
                .collect(),
        }
    }

    /// Current state.
    pub fn state(&self) -> GroupState {
        // A consumer-protocol group with members is not empty for the classic paths: its
        // offsets do not expire and it cannot be deleted. Its own state is
        // `ConsumerGroup::state`.
        if self.has_consumer_members() {
            return GroupState::Stable;
        }
        self.state
    }

    /// True if members of the consumer rebalance protocol (KIP-848) are in the group.
    pub fn has_consumer_members(&self) -> bool {
        self.consumer
            .as_ref()
            .is_some_and(|c| !c.members.is_empty())
    }

    /// Members in join order.
    pub fn members(&self) -> impl Iterator<Item = &Member> {
        self.members.values()
    }

    /// The parked JoinGroup and SyncGroup requests of the members (to answer them when the
    /// group leaves this coordinator).
    pub fn parked_tokens(&self) -> Vec<Token> {
        self.members
            .values()
            .flat_map(|m| m.awaiting_join.into_iter().chain(m.awaiting_sync))
            .collect()
    }

    /// True when the metadata changed since the last call (then it should be persisted).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Drops the classic membership (members, generation, protocol), keeping the offsets
    /// and the consumer group: the group's metadata record was tombstoned (an upgrade to a
    /// consumer group). Returns error replies for the requests its members had parked.
    pub fn clear_membership(&mut self, now_ms: i64) -> Vec<Reply> {
        let mut replies = Vec::new();
        for m in self.members.values() {
            if let Some(t) = m.awaiting_join {
                replies.push(Reply::Join(
                    t,
                    JoinResponse::error(ResponseError::RebalanceInProgress, &m.member_id),
                ));
            }
            if let Some(t) = m.awaiting_sync {
                replies.push(Reply::Sync(
                    t,
                    SyncResponse::error(ResponseError::RebalanceInProgress),
                ));
            }
        }
        let fresh = Group::new(&self.group_id, now_ms);
        let offsets = std::mem::take(&mut self.offsets);
        let consumer = self.consumer.take();
        *self = Group {
            offsets,
            consumer,
            ..fresh
        };
        replies
    }

    /// Turns this classic group into `converted` (its consumer group form, see
    /// `ConsumerGroup::from_classic`): the classic membership goes, requests parked in a
    /// rebalance are answered REBALANCE_IN_PROGRESS (their members rejoin the consumer
    /// group), as Kafka's `convertToConsumerGroup` does. The caller writes the tombstone of
    /// the classic group's record.
    pub fn upgrade(&mut self, converted: ConsumerGroup, now_ms: i64) -> Vec<Reply> {
        let replies = self.clear_membership(now_ms);
        self.consumer = Some(converted);
        replies
    }

    /// Turns the consumer group back into a classic group without `leaving` (its last
    /// member of the consumer protocol, which leaves or is fenced), as Kafka's
    /// `ClassicGroup.fromConsumerGroup` and `convertToClassicGroup` do: the generation is the
    /// group epoch, every member keeps its id, session, protocols and target assignment;
    /// then a rebalance starts (the members rejoin through JoinGroup). The group's record
    /// is written (dirty); the caller writes the consumer group's tombstones before it.
    /// Nothing happens if `downgrade_allowed` says no.
    pub fn downgrade(&mut self, leaving: &str, now_ms: i64, limits: &GroupLimits) -> Vec<Reply> {
        let Some(consumer) = self.consumer.take() else {
            return Vec::new();
        };
        if !downgrade_allowed(limits.migration_policy, &consumer, leaving, limits.max_size) {
            self.consumer = Some(consumer);
            return Vec::new();
        }
        self.downgrade_members(consumer, leaving, now_ms);
        self.prepare_rebalance(now_ms, limits)
    }

    /// Turns the consumer group back into a classic group as a classic static member joins
    /// (without a member id, under `new_id`) in the place of `replaced`, the last static
    /// member of the consumer protocol (Kafka's `convertToClassicGroup` with a joining
    /// member; the caller checked `downgrade_allowed_replacing`). The joining member takes
    /// the replaced one's target assignment and is answered at once, without a leader; the
    /// group rebalances only if its subscription differs from the replaced member's.
    pub fn downgrade_replacing(
        &mut self,
        token: Token,
        replaced: &str,
        new_id: String,
        req: JoinRequest,
        now_ms: i64,
        limits: &GroupLimits,
    ) -> Vec<Reply> {
        let Some(consumer) = self.consumer.clone() else {
            return Vec::new();
        };
        let Some(old) = consumer.members.get(replaced) else {
            return Vec::new();
        };
        let subscription_changed = req
            .protocols
            .first()
            .and_then(|(_, m)| decode_subscription(m))
            .is_none_or(|s| {
                s.topics.into_iter().collect::<BTreeSet<_>>() != old.subscribed_topic_names
            });
        let assignment =
            consumer.classic_target_assignment_at(replaced, protocols_version(&req.protocols));
        // As if `replaced` left; there is no other member of the consumer protocol.
        let mut replies = Vec::new();
        self.downgrade_members(consumer, replaced, now_ms);
        if let Some(instance) = &req.group_instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        self.members.insert(
            new_id.clone(),
            Member {
                member_id: new_id.clone(),
                group_instance_id: req.group_instance_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocols: req.protocols,
                assignment,
                last_heartbeat_ms: now_ms,
                awaiting_join: None,
                awaiting_sync: None,
            },
        );
        self.protocol_name = self.select_protocol();
        let mut response = self.join_response(&new_id, Vec::new());
        response.protocol_name = self
            .members
            .get(&new_id)
            .and_then(|m| m.protocols.first())
            .map(|(n, _)| n.clone());
        replies.push(Reply::Join(token, response));
        if subscription_changed {
            replies.extend(self.prepare_rebalance(now_ms, limits));
        }
        replies
    }

    /// The classic group `consumer` becomes without `leaving`: generation = group epoch,
    /// each classic member with its session, protocols and target assignment; Stable, its
    /// record to be written.
    fn downgrade_members(&mut self, consumer: ConsumerGroup, leaving: &str, now_ms: i64) {
        let mut group = Group::new(&self.group_id, now_ms);
        group.offsets = std::mem::take(&mut self.offsets);
        group.generation_id = consumer.group_epoch;
        group.protocol_type = Some(CONSUMER_PROTOCOL_TYPE.to_string());
        for m in consumer.members.values().filter(|m| m.member_id != leaving) {
            let Some(classic) = &m.classic else { continue };
            if let Some(instance) = &m.instance_id {
                group
                    .static_members
                    .insert(instance.clone(), m.member_id.clone());
            }
            group.members.insert(
                m.member_id.clone(),
                Member {
                    member_id: m.member_id.clone(),
                    group_instance_id: m.instance_id.clone(),
                    client_id: m.client_id.clone(),
                    client_host: m.client_host.clone(),
                    session_timeout_ms: classic.session_timeout_ms,
                    rebalance_timeout_ms: m.rebalance_timeout_ms,
                    protocols: classic.supported_protocols.clone(),
                    assignment: consumer.classic_target_assignment(m),
                    last_heartbeat_ms: now_ms,
                    awaiting_join: None,
                    awaiting_sync: None,
                },
            );
        }
        group.protocol_name = group.select_protocol();
        group.state = GroupState::Stable;
        group.dirty = true;
        *self = group;
    }

    /// Marks the group deleted (DeleteGroups, or expiry of an empty group's last offsets).
    pub fn mark_dead(&mut self, now_ms: i64) {
        self.transition(GroupState::Dead, now_ms);
    }

    fn transition(&mut self, state: GroupState, now_ms: i64) {
        self.state = state;
        self.state_timestamp_ms = now_ms;
    }

    fn new_member_id(prefix: &str) -> String {
        format!("{prefix}-{}", uuid::Uuid::new_v4())
    }

    fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        if self.protocol_type.as_deref() != Some(protocol_type) {
            return false;
        }
        // At least one protocol every current member also supports.
        protocols.iter().any(|(name, _)| {
            self.members
                .values()
                .all(|m| m.protocols.iter().any(|(n, _)| n == name))
        })
    }

    /// Handles a JoinGroup. The returned replies may include one for `token` itself (an
    /// immediate answer) and for other parked joins completed by this one.
    pub fn join(
        &mut self,
        token: Token,
        req: JoinRequest,
        now_ms: i64,
        limits: &GroupLimits,
    ) -> Vec<Reply> {
        let reject =
            |e: ResponseError| vec![Reply::Join(token, JoinResponse::error(e, &req.member_id))];
        if self.state == GroupState::Dead {
            return reject(ResponseError::CoordinatorNotAvailable);
        }
        if req.session_timeout_ms < limits.min_session_timeout_ms
            || req.session_timeout_ms > limits.max_session_timeout_ms
        {
            return reject(ResponseError::InvalidSessionTimeout);
        }
        if self.has_consumer_members() {
            // The coordinator hands a JoinGroup to a consumer group with members to
            // `ConsumerGroup::classic_join`; this path serves classic groups only.
            return reject(ResponseError::InconsistentGroupProtocol);
        }
        self.consumer = None;
        if !self.supports(&req.protocol_type, &req.protocols) {
            return reject(ResponseError::InconsistentGroupProtocol);
        }
        if req.member_id.is_empty() {
            self.join_unknown_member(token, req, now_ms, limits)
        } else {
            self.join_known_member(token, req, now_ms, limits)
        }
    }

    fn join_unknown_member(
        &mut self,
        token: Token,
        req: JoinRequest,
        now_ms: i64,
        limits: &GroupLimits,
    ) -> Vec<Reply> {
        if let Some(instance) = req.group_instance_id.clone() {
            let new_id = Self::new_member_id(&instance);
            if let Some(old_id) = self.static_members.get(&instance).cloned() {
                return self.replace_static_member(token, &old_id, new_id, req, now_ms, limits);
            }
            return self.add_member_and_rebalance(token, new_id, req, now_ms, limits);
        }
        let new_id = Self::new_member_id(if req.client_id.is_empty() {
            "member"
        } else {
            &req.client_id
        });
        if req.require_known_member_id {
            // KIP-394: hand out the id first, so a client that dies before its second join
            // leaves no member behind. The pending id expires after one session timeout.
            self.pending_members
                .insert(new_id.clone(), now_ms + i64::from(req.session_timeout_ms));
            return vec![Reply::Join(
                token,
                JoinResponse::error(ResponseError::MemberIdRequired, &new_id),
            )];
        }
        self.add_member_and_rebalance(token, new_id, req, now_ms, limits)
    }

    fn join_known_member(
        &mut self,
        token: Token,
        req: JoinRequest,
        now_ms: i64,
        limits: &GroupLimits,
    ) -> Vec<Reply> {
        let member_id = req.member_id.clone();
        if self.pending_members.remove(&member_id).is_some() {
            return self.add_member_and_rebalance(token, member_id, req, now_ms, limits);
        }
        if let Some(instance) = &req.group_instance_id {
            if let Some(current) = self.static_members.get(instance) {
                if *current != member_id {
                    return vec![Reply::Join(
                        token,
                        JoinResponse::error(ResponseError::FencedInstanceId, &member_id),
                    )];
                }
            }
        }
        if !self.members.contains_key(&member_id) {
            return vec![Reply::Join(
                token,
                JoinResponse::error(ResponseError::UnknownMemberId, &member_id),
            )];
        }
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let (same_metadata, is_leader) = {
            let m = &self.members[&member_id];
            (
                m.protocols == req.protocols,
                self.leader.as_deref() == Some(member_id.as_str()),
            )
        };
        match self.state {
            GroupState::PreparingRebalance => {
                let mut replies = self.park_join(token, &member_id, req, now_ms);
                replies.extend(self.try_complete_join(now_ms));
                replies
            }
            GroupState::CompletingRebalance | GroupState::Stable
                if same_metadata && !(is_leader && self.state == GroupState::Stable) =>
            {
                // A repeated join with unchanged metadata (e.g. a lost response): answer with
                // the current generation instead of rebalancing everyone.
                if let Some(m) = self.members.get_mut(&member_id) {
                    m.last_heartbeat_ms = now_ms;
                }
                let members = if is_leader {
                    self.joined_members(&protocol)
                } else {
                    vec![]
                };
                vec![Reply::Join(token, self.join_response(&member_id, members))]
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                let mut replies = self.park_join(token, &member_id, req, now_ms);
                replies.extend(self.prepare_rebalance(now_ms, limits));
                replies
            }
            GroupState::Empty | GroupState::Dead => {
                vec![Reply::Join(
                    token,
                    JoinResponse::error(ResponseError::UnknownMemberId, &member_id),
                )]
            }
        }
    }

    fn replace_static_member(
        &mut self,
        token: Token,
        old_id: &str,
        new_id: String,
        req: JoinRequest,
        now_ms: i64,
        limits: &GroupLimits,
    ) -> Vec<Reply> {
        let mut replies = Vec::new();
        let Some(mut member) = self.members.shift_remove(old_id) else {
            return self.add_member_and_rebalance(token, new_id, req, now_ms, limits);
        };
        // The old incarnation's parked requests are fenced.
        if let Some(t) = member.awaiting_join.take() {
            replies.push(Reply::Join(
                t,
                JoinResponse::error(ResponseError::FencedInstanceId, old_id),
            ));
        }
        if let Some(t) = member.awaiting_sync.take() {
            replies.push(Reply::Sync(
                t,
                SyncResponse::error(ResponseError::FencedInstanceId),
            ));
        }
        let same_metadata = member.protocols == req.protocols;
        member.member_id = new_id.clone();
        member.client_id = req.client_id.clone();
        member.client_host = req.client_host.clone();
        member.session_timeout_ms = req.session_timeout_ms;
        member.rebalance_timeout_ms = req.rebalance_timeout_ms;
        member.last_heartbeat_ms = now_ms;
        self.members.insert(new_id.clone(), member);
        if let Some(instance) = &req.group_instance_id {
            self.static_members.insert(instance.clone(), new_id.clone());
        }
        if self.leader.as_deref() == Some(old_id) {
            self.leader = Some(new_id.clone());
        }
        self.dirty = true;
        match self.state {
            GroupState::Stable => {
                // As Kafka does: a static member that restarts within its session keeps its
                // assignment without a rebalance, unless its new metadata would change the
                // group's protocol. Changed subscription metadata alone (sticky assignors put
                // owned partitions there) is stored, not acted upon.
                if let Some(m) = self.members.get_mut(&new_id) {
                    m.protocols = req.protocols.clone();
                }
                if self.select_protocol() == self.protocol_name {
                    let is_leader = self.leader.as_deref() == Some(new_id.as_str());
                    let protocol = self.protocol_name.clone().unwrap_or_default();
                    let members = if is_leader {
                        self.joined_members(&protocol)
                    } else {
                        vec![]
                    };
                    let mut response = self.join_response(&new_id, members);
                    // A restarted leader learns the members but must not reassign (KIP-814).
                    response.skip_assignment = is_leader;
                    replies.push(Reply::Join(token, response));
                } else {
                    replies.extend(self.park_join(token, &new_id, req, now_ms));
                    replies.extend(self.prepare_rebalance(now_ms, limits));
                }
            }
            GroupState::CompletingRebalance if same_metadata => {
                let protocol = self.protocol_name.clone().unwrap_or_default();
                let members = if self.leader.as_deref() == Some(new_id.as_str()) {
                    self.joined_members(&protocol)
                } else {
                    vec![]
                };
                replies.push(Reply::Join(token, self.join_response(&new_id, members)));
            }
            _ => {
                replies.extend(self.park_join(token, &new_id, req, now_ms));
                replies.extend(self.rebalance_for_join(now_ms, limits));
            }
        }
        replies
    }

    fn add_member_and_rebalance(
        &mut self,
        token: Token,
        member_id: String,
        req: JoinRequest,
        now_ms: i64,
        limits: &GroupLimits,
    ) -> Vec<Reply> {
        if self.members.len() >= limits.max_size {
            return vec![Reply::Join(
                token,
                JoinResponse::error(ResponseError::GroupMaxSizeReached, &member_id),
            )];
        }
        if self.members.is_empty() {
            self.protocol_type = Some(req.protocol_type.clone());
        }
        if let Some(instance) = &req.group_instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        self.members.insert(
            member_id.clone(),
            Member {
                member_id: member_id.clone(),
                group_instance_id: req.group_instance_id.clone(),
                client_id: req.client_id.clone(),
                client_host: req.client_host.clone(),
                session_timeout_ms: req.session_timeout_ms,
                rebalance_timeout_ms: req.rebalance_timeout_ms,
                protocols: req.protocols.clone(),
                assignment: Bytes::new(),
                last_heartbeat_ms: now_ms,
                awaiting_join: Some(token),
                awaiting_sync: None,
            },
        );
        if let Some((_, joined)) = self.initial_delay.as_mut() {
            *joined = true;
        }
        self.rebalance_for_join(now_ms, limits)
    }

    /// After a member (re)joined: complete the join if this was the last one awaited, or
    /// start a rebalance if none is under way.
    fn rebalance_for_join(&mut self, now_ms: i64, limits: &GroupLimits) -> Vec<Reply> {
        if self.state == GroupState::PreparingRebalance {
            self.try_complete_join(now_ms)
        } else {
            self.prepare_rebalance(now_ms, limits)
        }
    }

    fn park_join(
        &mut self,
        token: Token,
        member_id: &str,
        req: JoinRequest,
        now_ms: i64,
    ) -> Vec<Reply> {
        let mut replies = Vec::new();
        if let Some(m) = self.members.get_mut(member_id) {
            if let Some(old) = m.awaiting_join.replace(token) {
                replies.push(Reply::Join(
                    old,
                    JoinResponse::error(ResponseError::UnknownMemberId, member_id),
                ));
            }
            m.protocols = req.protocols;
            m.session_timeout_ms = req.session_timeout_ms;
            m.rebalance_timeout_ms = req.rebalance_timeout_ms;
            m.last_heartbeat_ms = now_ms;
        }
        replies
    }

    fn prepare_rebalance(&mut self, now_ms: i64, limits: &GroupLimits) -> Vec<Reply> {
        let mut replies = Vec::new();
        // Members waiting for an assignment from the previous round must rejoin.
        for m in self.members.values_mut() {
            if let Some(t) = m.awaiting_sync.take() {
                replies.push(Reply::Sync(
                    t,
                    SyncResponse::error(ResponseError::RebalanceInProgress),
                ));
            }
        }
        let was_empty = self.state == GroupState::Empty;
        self.transition(GroupState::PreparingRebalance, now_ms);
        let rebalance_timeout = self
            .members
            .values()
            .map(|m| i64::from(m.rebalance_timeout_ms))
            .max()
            .unwrap_or(0);
        if was_empty && limits.initial_rebalance_delay_ms > 0 {
            let delay = i64::from(limits.initial_rebalance_delay_ms).min(rebalance_timeout.max(0));
            self.rebalance_deadline_ms = now_ms + delay;
            self.initial_delay = Some(((rebalance_timeout - delay).max(0), false));
            if delay > 0 {
                return replies;
            }
            self.initial_delay = None;
        } else {
            self.initial_delay = None;
            self.rebalance_deadline_ms = now_ms + rebalance_timeout;
        }
        replies.extend(self.try_complete_join(now_ms));
        replies
    }

    fn all_members_joined(&self) -> bool {
        self.pending_members.is_empty() && self.members.values().all(|m| m.awaiting_join.is_some())
    }

    fn try_complete_join(&mut self, now_ms: i64) -> Vec<Reply> {
        if self.state == GroupState::PreparingRebalance
            && self.initial_delay.is_none()
            && self.all_members_joined()
        {
            return self.complete_join(now_ms);
        }
        Vec::new()
    }

    fn joined_members(&self, protocol: &str) -> Vec<JoinedMember> {
        self.members
            .values()
            .map(|m| JoinedMember {
                member_id: m.member_id.clone(),
                group_instance_id: m.group_instance_id.clone(),
                metadata: m.metadata(protocol),
            })
            .collect()
    }

    fn join_response(&self, member_id: &str, members: Vec<JoinedMember>) -> JoinResponse {
        JoinResponse {
            error_code: 0,
            generation_id: self.generation_id,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol_name.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            member_id: member_id.to_string(),
            members,
            skip_assignment: false,
        }
    }

    /// Kafka's protocol selection: among protocols every member supports, the one most
    /// members list first (ties go to the earliest in the first member's order).
    fn select_protocol(&self) -> Option<String> {
        let first = self.members.values().next()?;
        let candidates: Vec<&String> = first
            .protocols
            .iter()
            .map(|(n, _)| n)
            .filter(|n| {
                self.members
                    .values()
                    .all(|m| m.protocols.iter().any(|(p, _)| p == *n))
            })
            .collect();
        let mut best: Option<(&String, usize)> = None;
        for c in &candidates {
            let votes = self
                .members
                .values()
                .filter(|m| {
                    m.protocols
                        .iter()
                        .map(|(n, _)| n)
                        .find(|n| candidates.contains(n))
                        == Some(*c)
                })
                .count();
            if best.is_none_or(|(_, v)| votes > v) {
                best = Some((c, votes));
            }
        }
        best.map(|(c, _)| c.clone())
    }

    fn complete_join(&mut self, now_ms: i64) -> Vec<Reply> {
        let mut replies = Vec::new();
        // Members that did not rejoin in time are out.
        let absent: Vec<String> = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.member_id.clone())
            .collect();
        for id in absent {
            self.remove_member(&id, &mut replies);
        }
        self.pending_members.clear();
        self.initial_delay = None;
        if self.members.is_empty() {
            self.become_empty(now_ms);
            return replies;
        }
        self.generation_id += 1;
        self.dirty = true;
        self.protocol_name = self.select_protocol();
        if !self
            .leader
            .as_ref()
            .is_some_and(|l| self.members.contains_key(l))
        {
            self.leader = self.members.keys().next().cloned();
        }
        self.transition(GroupState::CompletingRebalance, now_ms);
        // The leader has until the rebalance timeout to send the assignment.
        self.rebalance_deadline_ms = now_ms
            + self
                .members
                .values()
                .map(|m| i64::from(m.rebalance_timeout_ms))
                .max()
                .unwrap_or(0);
        let protocol = self.protocol_name.clone().unwrap_or_default();
        let leader = self.leader.clone().unwrap_or_default();
        let all = self.joined_members(&protocol);
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let members = if id == leader { all.clone() } else { vec![] };
            let response = self.join_response(&id, members);
            if let Some(m) = self.members.get_mut(&id) {
                m.last_heartbeat_ms = now_ms;
                if let Some(t) = m.awaiting_join.take() {
                    replies.push(Reply::Join(t, response));
                }
            }
        }
        replies
    }

    /// The last member left: a new (empty) generation with no protocol or leader.
    fn become_empty(&mut self, now_ms: i64) {
        self.generation_id += 1;
        self.protocol_name = None;
        self.protocol_type = None;
        self.leader = None;
        self.dirty = true;
        self.transition(GroupState::Empty, now_ms);
    }

    fn remove_member(&mut self, member_id: &str, replies: &mut Vec<Reply>) {
        if let Some(m) = self.members.shift_remove(member_id) {
            if let Some(t) = m.awaiting_join {
                replies.push(Reply::Join(
                    t,
                    JoinResponse::error(ResponseError::UnknownMemberId, member_id),
                ));
            }
            if let Some(t) = m.awaiting_sync {
                replies.push(Reply::Sync(
                    t,
                    SyncResponse::error(ResponseError::UnknownMemberId),
                ));
            }
            if let Some(instance) = &m.group_instance_id {
                if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                    self.static_members.remove(instance);
                }
            }
            self.dirty = true;
        }
    }

    fn check_member(
        &self,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
    ) -> Result<(), ResponseError> {
        if let Some(instance) = instance {
            if let Some(current) = self.static_members.get(instance) {
                if current != member_id {
                    return Err(ResponseError::FencedInstanceId);
                }
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if generation_id != self.generation_id {
            return Err(ResponseError::IllegalGeneration);
        }
        Ok(())
    }

    /// Handles a SyncGroup; parks followers until the leader's assignment arrives.
    pub fn sync(
        &mut self,
        token: Token,
        req: SyncRequest,
        now_ms: i64,
        limits: &GroupLimits,
    ) -> Vec<Reply> {
        let reject = |e: ResponseError| vec![Reply::Sync(token, SyncResponse::error(e))];
        if matches!(self.state, GroupState::Dead | GroupState::Empty) {
            return reject(ResponseError::UnknownMemberId);
        }
        if let Err(e) = self.check_member(
            &req.member_id,
            req.group_instance_id.as_deref(),
            req.generation_id,
        ) {
            return reject(e);
        }
        if req
            .protocol_type
            .as_ref()
            .is_some_and(|p| Some(p) != self.protocol_type.as_ref())
            || req
                .protocol_name
                .as_ref()
                .is_some_and(|p| Some(p) != self.protocol_name.as_ref())
        {
            return reject(ResponseError::InconsistentGroupProtocol);
        }
        match self.state {
            GroupState::PreparingRebalance => reject(ResponseError::RebalanceInProgress),
            GroupState::CompletingRebalance => {
                let mut replies = Vec::new();
                if let Some(m) = self.members.get_mut(&req.member_id) {
                    m.last_heartbeat_ms = now_ms;
                    if let Some(old) = m.awaiting_sync.replace(token) {
                        replies.push(Reply::Sync(
                            old,
                            SyncResponse::error(ResponseError::UnknownMemberId),
                        ));
                    }
                }
                if self.leader.as_deref() == Some(req.member_id.as_str()) {
                    let assignments: HashMap<String, Bytes> = req.assignments.into_iter().collect();
                    for m in self.members.values_mut() {
                        m.assignment = assignments.get(&m.member_id).cloned().unwrap_or_default();
                    }
                    self.transition(GroupState::Stable, now_ms);
                    self.dirty = true;
                    let (protocol_type, protocol_name) =
                        (self.protocol_type.clone(), self.protocol_name.clone());
                    for m in self.members.values_mut() {
                        if let Some(t) = m.awaiting_sync.take() {
                            replies.push(Reply::Sync(
                                t,
                                SyncResponse {
                                    error_code: 0,
                                    protocol_type: protocol_type.clone(),
                                    protocol_name: protocol_name.clone(),
                                    assignment: m.assignment.clone(),
                                },
                            ));
                        }
                    }
                }
                let _ = limits;
                replies
            }
            GroupState::Stable => {
                let m = &self.members[&req.member_id];
                vec![Reply::Sync(
                    token,
                    SyncResponse {
                        error_code: 0,
                        protocol_type: self.protocol_type.clone(),
                        protocol_name: self.protocol_name.clone(),
                        assignment: m.assignment.clone(),
                    },
                )]
            }
            GroupState::Empty | GroupState::Dead => reject(ResponseError::UnknownMemberId),
        }
    }

    /// Handles a Heartbeat; returns its error code.
    pub fn heartbeat(
        &mut self,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
        now_ms: i64,
    ) -> i16 {
        if matches!(self.state, GroupState::Dead | GroupState::Empty) {
            return ResponseError::UnknownMemberId.code();
        }
        if let Err(e) = self.check_member(member_id, instance, generation_id) {
            return e.code();
        }
        if let Some(m) = self.members.get_mut(member_id) {
            m.last_heartbeat_ms = now_ms;
        }
        match self.state {
            GroupState::PreparingRebalance => ResponseError::RebalanceInProgress.code(),
            _ => 0,
        }
    }

    /// Handles a LeaveGroup for each `(member id, group instance id)`; returns one error code
    /// per member and replies to parked requests.
    pub fn leave(
        &mut self,
        leaving: &[(String, Option<String>)],
        now_ms: i64,
        limits: &GroupLimits,
    ) -> (Vec<i16>, Vec<Reply>) {
        let mut codes = Vec::with_capacity(leaving.len());
        let mut replies = Vec::new();
        let mut removed_any = false;
        for (member_id, instance) in leaving {
            let target = match instance {
                // v3+: a static member may be removed by instance id alone (admin removal).
                Some(instance) => match self.static_members.get(instance) {
                    Some(current) if member_id.is_empty() || current == member_id => {
                        Ok(current.clone())
                    }
                    Some(_) => Err(ResponseError::FencedInstanceId),
                    None => Err(ResponseError::UnknownMemberId),
                },
                None if self.pending_members.remove(member_id).is_some() => {
                    codes.push(0);
                    continue;
                }
                None if self.members.contains_key(member_id) => Ok(member_id.clone()),
                None => Err(ResponseError::UnknownMemberId),
            };
            match target {
                Ok(id) => {
                    self.remove_member(&id, &mut replies);
                    removed_any = true;
                    codes.push(0);
                }
                Err(e) => codes.push(e.code()),
            }
        }
        if removed_any {
            replies.extend(self.membership_changed(now_ms, limits));
        }
        (codes, replies)
    }

    fn membership_changed(&mut self, now_ms: i64, limits: &GroupLimits) -> Vec<Reply> {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                if self.members.is_empty() {
                    self.become_empty(now_ms);
                    Vec::new()
                } else {
                    self.prepare_rebalance(now_ms, limits)
                }
            }
            GroupState::PreparingRebalance => {
                if self.members.is_empty() {
                    self.complete_join(now_ms)
                } else {
                    self.try_complete_join(now_ms)
                }
            }
            GroupState::Empty | GroupState::Dead => Vec::new(),
        }
    }

    /// The earliest time at which [`Group::tick`] has something to do: a member's session
    /// expiry (members parked in JoinGroup do not expire), a pending member id's expiry, or
    /// the rebalance deadline while a rebalance is in progress. `None`: nothing is due.
    pub fn next_deadline(&self) -> Option<i64> {
        let sessions = self
            .members
            .values()
            .filter(|m| m.awaiting_join.is_none())
            .map(|m| m.last_heartbeat_ms + i64::from(m.session_timeout_ms));
        let pending = self.pending_members.values().copied();
        let rebalance = matches!(
            self.state,
            GroupState::PreparingRebalance | GroupState::CompletingRebalance
        )
        .then_some(self.rebalance_deadline_ms);
        let consumer = self
            .consumer
            .as_ref()
            .and_then(ConsumerGroup::next_deadline);
        sessions
            .chain(pending)
            .chain(rebalance)
            .chain(consumer)
            .min()
    }

    /// Advances time: expires sessions and pending member ids, ends the initial delay, and
    /// completes joins and syncs whose deadlines passed.
    pub fn tick(&mut self, now_ms: i64, limits: &GroupLimits) -> Vec<Reply> {
        let mut replies = Vec::new();
        let expired = self
            .consumer
            .as_ref()
            .map(|c| c.expired(now_ms))
            .unwrap_or_default();
        for id in expired {
            // A fenced member of the consumer protocol may leave only classic members: the
            // group turns back into a classic group (and the others go with the rebalance).
            let downgrade = self.consumer.as_ref().is_some_and(|c| {
                downgrade_allowed(limits.migration_policy, c, &id, limits.max_size)
            });
            tracing::info!(group = %self.group_id, member = %id, "member fenced: its session or rebalance deadline passed");
            if downgrade {
                return self.downgrade(&id, now_ms, limits);
            }
            if let Some(c) = &mut self.consumer {
                c.remove_member(&id);
            }
        }
        self.pending_members.retain(|_, expires| *expires > now_ms);
        // Members parked in JoinGroup are alive by definition; others must heartbeat.
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|m| {
                m.awaiting_join.is_none()
                    && now_ms >= m.last_heartbeat_ms + i64::from(m.session_timeout_ms)
            })
            .map(|m| m.member_id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                self.remove_member(id, &mut replies);
            }
            replies.extend(self.membership_changed(now_ms, limits));
        }
        if self.state == GroupState::PreparingRebalance && now_ms >= self.rebalance_deadline_ms {
            match self.initial_delay {
                Some((remaining, true)) if remaining > 0 => {
                    // New members arrived during the delay: wait a little longer for more.
                    let extra = i64::from(limits.initial_rebalance_delay_ms).min(remaining);
                    self.rebalance_deadline_ms = now_ms + extra;
                    self.initial_delay = Some((remaining - extra, false));
                }
                Some(_) => {
                    self.initial_delay = None;
                    replies.extend(self.complete_join(now_ms));
                }
                None => replies.extend(self.complete_join(now_ms)),
            }
        }
        if self.state == GroupState::CompletingRebalance && now_ms >= self.rebalance_deadline_ms {
            // The leader never sent assignments: drop members that did not sync, start over.
            let absent: Vec<String> = self
                .members
                .values()
                .filter(|m| m.awaiting_sync.is_none())
                .map(|m| m.member_id.clone())
                .collect();
            for id in &absent {
                self.remove_member(id, &mut replies);
            }
            replies.extend(self.membership_changed(now_ms, limits));
            if self.state == GroupState::CompletingRebalance {
                replies.extend(self.prepare_rebalance(now_ms, limits));
            }
        }
        replies
    }

    /// Checks a TxnOffsetCommit as Kafka's `validateOffsetCommit` with `isTransactional`:
    /// as OffsetCommit, except that a commit naming no member, instance or generation is
    /// accepted whatever the group's state, and a rebalance in progress is no refusal. A
    /// consumer-protocol member's stale epoch is ILLEGAL_GENERATION, as Kafka maps it.
    pub fn validate_txn_offset_commit(
        &self,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
    ) -> Result<(), ResponseError> {
        if let Some(consumer) = self.consumer.as_ref().filter(|c| !c.members.is_empty()) {
            return consumer
                .validate_offset_commit(member_id, generation_id)
                .map_err(|e| match e {
                    ResponseError::StaleMemberEpoch => ResponseError::IllegalGeneration,
                    e => e,
                });
        }
        match self.state {
            GroupState::Dead => Err(ResponseError::CoordinatorNotAvailable),
            GroupState::Empty if generation_id < 0 => Ok(()),
            _ if generation_id >= 0 || !member_id.is_empty() || instance.is_some() => {
                self.check_member(member_id, instance, generation_id)
            }
            _ => Ok(()),
        }
    }

    /// Checks an OffsetCommit's member and generation (Kafka's classic-group rules): a
    /// "simple" commit (generation -1, no member) is allowed only for an empty group.
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
    ) -> Result<(), ResponseError> {
        if let Some(consumer) = self.consumer.as_ref().filter(|c| !c.members.is_empty()) {
            return consumer.validate_offset_commit(member_id, generation_id);
        }
        match self.state {
            GroupState::Dead => Err(ResponseError::CoordinatorNotAvailable),
            _ if generation_id < 0 && member_id.is_empty() && self.members.is_empty() => Ok(()),
            GroupState::Empty => Err(ResponseError::UnknownMemberId),
            GroupState::CompletingRebalance => {
                self.check_member(member_id, instance, generation_id)?;
                Err(ResponseError::RebalanceInProgress)
            }
            _ => self.check_member(member_id, instance, generation_id),
        }
    }
}

/// The ids of the topics a consumer-protocol member subscribes to.
pub fn subscribed_topics(group: &Group) -> HashSet<String> {
    use kafka_protocol::messages::ConsumerProtocolSubscription;
    use kafka_protocol::protocol::Decodable;
    let mut topics = HashSet::new();
    if group.protocol_type.as_deref() != Some("consumer") {
        return topics;
    }
    let protocol = group.protocol_name.clone().unwrap_or_default();
    for m in group.members() {
        let mut metadata = m.metadata(&protocol);
        if metadata.len() < 2 {
            continue;
        }
        let version = i16::from_be_bytes([metadata[0], metadata[1]]);
        bytes::Buf::advance(&mut metadata, 2);
        if let Ok(sub) = ConsumerProtocolSubscription::decode(&mut metadata, version.clamp(0, 3)) {
            topics.extend(sub.topics.into_iter().map(|t| t.as_str().to_string()));
        }
    }
    topics
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: GroupLimits = GroupLimits {
        min_session_timeout_ms: 6000,
        max_session_timeout_ms: 1_800_000,
        initial_rebalance_delay_ms: 0,
        max_size: 100,
        consumer_session_timeout_ms: 45_000,
        consumer_max_size: usize::MAX,
        migration_policy: MigrationPolicy::Bidirectional,
    };

    fn join(member_id: &str, protocols: &[&str]) -> JoinRequest {
        JoinRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            client_id: "client".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|p| (p.to_string(), Bytes::from(format!("meta-{p}"))))
                .collect(),
            require_known_member_id: true,
        }
    }

    /// A SyncGroup request of a dynamic member at `generation_id`, with the leader's
    /// `assignments` (member id, assignment) or none.
    fn sync(member_id: &str, generation_id: i32, assignments: &[(&str, &[u8])]) -> SyncRequest {
        SyncRequest {
            member_id: member_id.into(),
            group_instance_id: None,
            generation_id,
            protocol_type: None,
            protocol_name: None,
            assignments: assignments
                .iter()
                .map(|(m, a)| (m.to_string(), Bytes::copy_from_slice(a)))
                .collect(),
        }
    }

    fn join_reply(replies: &[Reply], token: Token) -> JoinResponse {
        replies
            .iter()
            .find_map(|r| match r {
                Reply::Join(t, j) if *t == token => Some(j.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no join reply for {token} in {replies:?}"))
    }

    fn sync_reply(replies: &[Reply], token: Token) -> SyncResponse {
        replies
            .iter()
            .find_map(|r| match r {
                Reply::Sync(t, s) if *t == token => Some(s.clone()),
                _ => None,
            })
            .unwrap_or_else(|| panic!("no sync reply for {token} in {replies:?}"))
    }

    /// Joins a new dynamic member through MEMBER_ID_REQUIRED; returns its id.
    fn new_member(g: &mut Group, token: Token, now: i64) -> (String, Vec<Reply>) {
        let first = join_reply(&g.join(token, join("", &["range"]), now, &LIMITS), token);
        assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
        let replies = g.join(token + 1, join(&first.member_id, &["range"]), now, &LIMITS);
        (first.member_id, replies)
    }

    #[test]
    fn single_member_joins_syncs_and_is_stable() {
        let mut g = Group::new("g", 0);
        let (id, replies) = new_member(&mut g, 1, 0);
        let j = join_reply(&replies, 2);
        assert_eq!(
            (j.error_code, j.generation_id, j.leader.as_str()),
            (0, 1, id.as_str())
        );
        assert_eq!(j.members.len(), 1);
        assert_eq!(j.protocol_name.as_deref(), Some("range"));
        let s = g.sync(3, sync(&id, 1, &[(&id, b"a0")]), 1, &LIMITS);
        assert_eq!(sync_reply(&s, 3).assignment, Bytes::from_static(b"a0"));
        assert_eq!(g.state(), GroupState::Stable);
        assert_eq!(g.heartbeat(&id, None, 1, 2), 0);
        assert_eq!(
            g.heartbeat(&id, None, 0, 2),
            ResponseError::IllegalGeneration.code()
        );
        assert_eq!(
            g.heartbeat("nobody", None, 1, 2),
            ResponseError::UnknownMemberId.code()
        );
    }

    #[test]
    fn second_member_triggers_rebalance_and_both_get_assignments() {
        let mut g = Group::new("g", 0);
        let (a, replies) = new_member(&mut g, 1, 0);
        assert_eq!(join_reply(&replies, 2).generation_id, 1);
        g.sync(3, sync(&a, 1, &[(&a, b"all")]), 0, &LIMITS);
        // B joins: A learns of the rebalance from its heartbeat and rejoins.
        let (b, replies) = new_member(&mut g, 10, 100);
        assert!(
            replies.iter().all(|r| !matches!(r, Reply::Join(11, _))),
            "B waits for A"
        );
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        assert_eq!(
            g.heartbeat(&a, None, 1, 200),
            ResponseError::RebalanceInProgress.code()
        );
        let replies = g.join(20, join(&a, &["range"]), 300, &LIMITS);
        let ja = join_reply(&replies, 20);
        let jb = join_reply(&replies, 11);
        assert_eq!((ja.generation_id, jb.generation_id), (2, 2));
        assert_eq!(ja.leader, a, "the previous leader stays leader");
        assert_eq!(ja.members.len(), 2);
        assert!(jb.members.is_empty());
        // Follower syncs first and waits for the leader.
        assert!(g.sync(21, sync(&b, 2, &[]), 400, &LIMITS).is_empty());
        let replies = g.sync(22, sync(&a, 2, &[(&a, b"p0"), (&b, b"p1")]), 500, &LIMITS);
        assert_eq!(
            sync_reply(&replies, 21).assignment,
            Bytes::from_static(b"p1")
        );
        assert_eq!(
            sync_reply(&replies, 22).assignment,
            Bytes::from_static(b"p0")
        );
        assert_eq!(g.state(), GroupState::Stable);
    }

    #[test]
    fn expired_session_removes_member_and_rebalances() {
        let mut g = Group::new("g", 0);
        let (a, _) = new_member(&mut g, 1, 0);
        let (b, _) = {
            g.sync(3, sync(&a, 1, &[]), 0, &LIMITS);
            new_member(&mut g, 10, 0)
        };
        let replies = g.join(20, join(&a, &["range"]), 0, &LIMITS);
        assert_eq!(join_reply(&replies, 20).generation_id, 2);
        g.sync(21, sync(&a, 2, &[]), 0, &LIMITS);
        g.sync(22, sync(&b, 2, &[]), 0, &LIMITS);
        assert_eq!(g.next_deadline(), Some(10_000), "both sessions end at 10 s");
        // A keeps heartbeating, B goes silent (kill -9).
        for t in (1000..=9000).step_by(1000) {
            g.heartbeat(&a, None, 2, t);
            assert!(g.tick(t, &LIMITS).is_empty());
        }
        assert_eq!(
            g.next_deadline(),
            Some(10_000),
            "B's session is the next deadline"
        );
        g.tick(10_000, &LIMITS);
        // Rebalancing: A's session (heartbeat at 9 s) ends before the 30 s rebalance deadline.
        assert_eq!(g.next_deadline(), Some(19_000));
        assert_eq!(g.state(), GroupState::PreparingRebalance);
        assert!(g.members().all(|m| m.member_id != b));
        let replies = g.join(30, join(&a, &["range"]), 10_100, &LIMITS);
        let j = join_reply(&replies, 30);
        assert_eq!((j.generation_id, j.members.len()), (3, 1));
    }

    #[test]
    fn leave_hands_everything_to_the_rest_and_last_leave_empties() {
        let mut g = Group::new("g", 0);
        let (a, _) = new_member(&mut g, 1, 0);
        g.sync(3, sync(&a, 1, &[]), 0, &LIMITS);
        let (codes, _) = g.leave(&[(a.clone(), None)], 10, &LIMITS);
        assert_eq!(codes, vec![0]);
        assert_eq!(g.state(), GroupState::Empty);
        let (codes, _) = g.leave(&[(a, None)], 10, &LIMITS);
        assert_eq!(codes, vec![ResponseError::UnknownMemberId.code()]);
    }

    #[test]
    fn inconsistent_protocols_are_refused() {
        let mut g = Group::new("g", 0);
        let (_a, _) = new_member(&mut g, 1, 0);
        let r = g.join(5, join("", &["roundrobin"]), 0, &LIMITS);
        assert_eq!(
            join_reply(&r, 5).error_code,
            ResponseError::InconsistentGroupProtocol.code()
        );
        let mut bad = join("", &["range"]);
        bad.session_timeout_ms = 10;
        assert_eq!(
            join_reply(&g.join(6, bad, 0, &LIMITS), 6).error_code,
            ResponseError::InvalidSessionTimeout.code()
        );
    }

    #[test]
    fn protocol_selection_prefers_common_first_choice() {
        let mut g = Group::new("g", 0);
        let limits = LIMITS;
        let r1 = g.join(
            1,
            JoinRequest {
                require_known_member_id: false,
                ..join("", &["cooperative-sticky", "range"])
            },
            0,
            &limits,
        );
        let a = join_reply(&r1, 1).member_id;
        assert_eq!(
            join_reply(&r1, 1).protocol_name.as_deref(),
            Some("cooperative-sticky")
        );
        g.sync(2, sync(&a, 1, &[]), 0, &limits);
        // A member that only knows range joins: range is the only common protocol.
        let r = g.join(
            3,
            JoinRequest {
                require_known_member_id: false,
                ..join("", &["range"])
            },
            0,
            &limits,
        );
        assert!(r.is_empty());
        let r = g.join(4, join(&a, &["cooperative-sticky", "range"]), 0, &limits);
        assert_eq!(join_reply(&r, 4).protocol_name.as_deref(), Some("range"));
    }

    #[test]
    fn static_member_restart_within_session_causes_no_rebalance() {
        let mut g = Group::new("g", 0);
        let mut req = join("", &["range"]);
        req.group_instance_id = Some("i-1".into());
        let r = g.join(1, req.clone(), 0, &LIMITS);
        let first = join_reply(&r, 1);
        assert_eq!(
            (first.error_code, first.generation_id),
            (0, 1),
            "static members skip MEMBER_ID_REQUIRED"
        );
        g.sync(
            2,
            SyncRequest {
                group_instance_id: Some("i-1".into()),
                ..sync(&first.member_id, 1, &[(&first.member_id, b"mine")])
            },
            0,
            &LIMITS,
        );
        // Restart: same instance id, new incarnation without a member id.
        let r = g.join(3, req, 5000, &LIMITS);
        let again = join_reply(&r, 3);
        assert_eq!((again.error_code, again.generation_id), (0, 1));
        assert_ne!(again.member_id, first.member_id);
        assert_eq!(g.state(), GroupState::Stable);
        let s = g.sync(
            4,
            SyncRequest {
                group_instance_id: Some("i-1".into()),
                ..sync(&again.member_id, 1, &[])
            },
            5000,
            &LIMITS,
        );
        assert_eq!(sync_reply(&s, 4).assignment, Bytes::from_static(b"mine"));
        // The old incarnation is fenced.
        assert_eq!(
            g.heartbeat(&first.member_id, Some("i-1"), 1, 5000),
            ResponseError::FencedInstanceId.code()
        );
    }

    #[test]
    fn static_member_restart_with_new_metadata_keeps_the_generation() {
        let mut g = Group::new("g", 0);
        let mut req = join("", &["cooperative-sticky"]);
        req.group_instance_id = Some("i-1".into());
        let first = join_reply(&g.join(1, req.clone(), 0, &LIMITS), 1);
        g.sync(
            2,
            SyncRequest {
                group_instance_id: Some("i-1".into()),
                ..sync(&first.member_id, 1, &[(&first.member_id, b"mine")])
            },
            0,
            &LIMITS,
        );
        // The sticky assignor's metadata changes across restarts (owned partitions).
        req.protocols = vec![(
            "cooperative-sticky".into(),
            Bytes::from_static(b"owned: p0"),
        )];
        let again = join_reply(&g.join(3, req.clone(), 1000, &LIMITS), 3);
        assert_eq!((again.error_code, again.generation_id), (0, 1));
        assert!(
            again.skip_assignment,
            "the restarted leader must not reassign"
        );
        assert_eq!(g.state(), GroupState::Stable);
        // New metadata that changes the group's protocol does force a rebalance.
        req.protocols = vec![
            ("range".into(), Bytes::new()),
            ("cooperative-sticky".into(), Bytes::new()),
        ];
        let r = g.join(4, req, 2000, &LIMITS);
        assert_eq!(join_reply(&r, 4).generation_id, 2);
    }

    #[test]
    fn initial_delay_collects_members_before_the_first_generation() {
        let limits = GroupLimits {
            initial_rebalance_delay_ms: 3000,
            ..LIMITS
        };
        let mut g = Group::new("g", 0);
        let r = g.join(
            1,
            JoinRequest {
                require_known_member_id: false,
                ..join("", &["range"])
            },
            0,
            &limits,
        );
        assert!(r.is_empty());
        let r = g.join(
            2,
            JoinRequest {
                require_known_member_id: false,
                ..join("", &["range"])
            },
            1000,
            &limits,
        );
        assert!(r.is_empty());
        assert!(g.tick(2999, &limits).is_empty());
        // A member joined during the window: one more window.
        assert!(g.tick(3000, &limits).is_empty());
        let r = g.tick(6000, &limits);
        assert_eq!(join_reply(&r, 1).generation_id, 1);
        assert_eq!(join_reply(&r, 2).generation_id, 1);
    }

    #[test]
    fn commits_follow_classic_rules() {
        let mut g = Group::new("g", 0);
        assert_eq!(g.validate_offset_commit("", None, -1), Ok(()));
        let (a, _) = new_member(&mut g, 1, 0);
        assert_eq!(
            g.validate_offset_commit(&a, None, 1),
            Err(ResponseError::RebalanceInProgress)
        );
        g.sync(3, sync(&a, 1, &[]), 0, &LIMITS);
        assert_eq!(g.validate_offset_commit(&a, None, 1), Ok(()));
        assert_eq!(
            g.validate_offset_commit(&a, None, 0),
            Err(ResponseError::IllegalGeneration)
        );
        assert_eq!(
            g.validate_offset_commit("", None, -1),
            Err(ResponseError::UnknownMemberId)
        );
    }
}
