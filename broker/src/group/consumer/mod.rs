//! Consumer groups of the next-generation rebalance protocol (KIP-848) as a pure state
//! machine: ConsumerGroupHeartbeat and the passage of time go in, replies and the group's new
//! state come out. No I/O and no clock (`now_ms` is an argument), as [`super::state`] is for
//! the classic protocol.
//!
//! The broker owns the assignment. Three epochs drive it, as in Kafka's group coordinator:
//! - the **group epoch** goes up whenever what the group must consume changes: a member
//!   joins, leaves, is fenced or changes its subscription, a subscribed topic is created,
//!   deleted or gains partitions, or a subscribed regular expression matches other topics
//!   ([`topic_regex`]);
//! - the **assignment epoch** is the group epoch the target assignment was computed for; a
//!   heartbeat that finds it behind the group epoch runs the assignor ([`assignor`]);
//! - each **member epoch** says which target the member has caught up with. A member moves
//!   towards its target one safe step at a time ([`reconcile`]): partitions it loses are
//!   revoked first, and a partition is given only once no other member owns it, so no
//!   partition is ever consumed by two members and nobody stops for the others.

pub mod assignor;
pub mod migration;
pub mod persist;
pub mod reconcile;
pub mod topic_regex;

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::records::ClassicMemberMetadata;
use assignor::{MemberSpec, ASSIGNORS};
use reconcile::Reconcile;
use topic_regex::{ResolvedRegex, REGEX_BATCH_REFRESH_MIN_INTERVAL_MS};

/// The cluster's topics as a group sees them: looked up by name on every heartbeat, listed
/// in full only to resolve regular expressions.
pub trait Topics {
    /// The id and partition count of `name`, `None` if it does not exist.
    fn lookup(&self, name: &str) -> Option<(Uuid, i32)>;
    /// Every topic name, with the metadata version (image offset) they were read at.
    fn names(&self) -> (i64, Vec<String>);
}

/// A lookup function is a cluster whose topics cannot be listed (no regex matches).
impl<F: Fn(&str) -> Option<(Uuid, i32)>> Topics for F {
    fn lookup(&self, name: &str) -> Option<(Uuid, i32)> {
        self(name)
    }

    fn names(&self) -> (i64, Vec<String>) {
        (-1, Vec::new())
    }
}

/// Partitions by topic id: a member's assignment.
pub type Assignment = BTreeMap<Uuid, BTreeSet<i32>>;

/// The member epoch a heartbeat carries to leave the group.
pub const LEAVE_GROUP_MEMBER_EPOCH: i32 = -1;
/// The member epoch a static member carries to leave for now, keeping its partitions until
/// its session times out or it comes back with the same `group.instance.id`.
pub const LEAVE_GROUP_STATIC_MEMBER_EPOCH: i32 = -2;

/// Broker settings of consumer groups (Kafka's names and defaults).
#[derive(Debug, Clone)]
pub struct ConsumerGroupConfig {
    /// `group.consumer.session.timeout.ms` (45 s): a member not heard from for this long is
    /// removed.
    pub session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms` (5 s): how often members heartbeat.
    pub heartbeat_interval_ms: i32,
    /// `group.consumer.max.size` (no limit by default).
    pub max_size: usize,
}

impl Default for ConsumerGroupConfig {
    fn default() -> Self {
        ConsumerGroupConfig {
            session_timeout_ms: 45_000,
            heartbeat_interval_ms: 5_000,
            max_size: usize::MAX,
        }
    }
}

/// Where a member stands relative to its target (Kafka's `MemberState`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MemberState {
    /// It has everything it should have at its epoch.
    Stable,
    /// It was asked to give up partitions and has not confirmed yet.
    UnrevokedPartitions,
    /// It waits for partitions that other members still own.
    UnreleasedPartitions,
}

impl MemberState {
    /// Kafka's name, as the admin tools print it.
    pub fn name(self) -> &'static str {
        match self {
            MemberState::Stable => "STABLE",
            MemberState::UnrevokedPartitions => "UNREVOKED_PARTITIONS",
            MemberState::UnreleasedPartitions => "UNRELEASED_PARTITIONS",
        }
    }
}

/// One member of a consumer group.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerMember {
    /// Its id (chosen by the client since ConsumerGroupHeartbeat v1, by the broker before).
    pub member_id: String,
    /// `group.instance.id` of a static member.
    pub instance_id: Option<String>,
    /// `client.rack`.
    pub rack_id: Option<String>,
    /// The client id of its last heartbeat.
    pub client_id: String,
    /// The address of its last heartbeat.
    pub client_host: String,
    /// The topics it subscribes to, by name (topics that do not exist yet included).
    pub subscribed_topic_names: BTreeSet<String>,
    /// The regular expression it subscribes with, as it sent it (an empty one is none, as
    /// in Kafka: librdkafka sends `""` with a list of names).
    pub subscribed_topic_regex: Option<String>,
    /// The assignor it asked for (`group.remote.assignor`), if any.
    pub server_assignor: Option<String>,
    /// How long it may take to revoke partitions.
    pub rebalance_timeout_ms: i32,
    /// The target epoch it has caught up with.
    pub member_epoch: i32,
    /// Its epoch before the last change (a heartbeat that lost its response may come with it).
    pub previous_member_epoch: i32,
    /// Where it stands relative to its target.
    pub state: MemberState,
    /// The partitions it has (or is being given) at its epoch.
    pub assigned: Assignment,
    /// The partitions it was asked to give up and still holds.
    pub pending_revocation: Assignment,
    /// When its session ends unless it heartbeats.
    pub session_deadline_ms: i64,
    /// When it is fenced unless it has revoked what it was asked to; for a member of the
    /// classic protocol, unless it has sent the JoinGroup or SyncGroup it was asked for
    /// (Kafka's join and sync timeouts).
    pub revocation_deadline_ms: Option<i64>,
    /// Set when it speaks the classic protocol (JoinGroup, SyncGroup, Heartbeat) in this
    /// group: its session timeout and its protocols with their metadata (see [`migration`]).
    pub classic: Option<ClassicMemberMetadata>,
}

impl ConsumerMember {
    /// A member that has just joined: epoch 0, nothing assigned.
    pub fn new(member_id: &str, now_ms: i64) -> ConsumerMember {
        ConsumerMember {
            member_id: member_id.to_string(),
            instance_id: None,
            rack_id: None,
            client_id: String::new(),
            client_host: String::new(),
            subscribed_topic_names: BTreeSet::new(),
            subscribed_topic_regex: None,
            server_assignor: None,
            rebalance_timeout_ms: 0,
            member_epoch: 0,
            previous_member_epoch: 0,
            state: MemberState::Stable,
            assigned: Assignment::new(),
            pending_revocation: Assignment::new(),
            session_deadline_ms: now_ms,
            revocation_deadline_ms: None,
            classic: None,
        }
    }

    /// True if it speaks the classic protocol.
    pub fn uses_classic(&self) -> bool {
        self.classic.is_some()
    }

    /// The regular expression it subscribes with, if any (not empty).
    pub fn regex(&self) -> Option<&str> {
        self.subscribed_topic_regex
            .as_deref()
            .filter(|r| !r.is_empty())
    }

    pub(crate) fn set_epoch(&mut self, epoch: i32) {
        self.previous_member_epoch = self.member_epoch;
        self.member_epoch = epoch;
    }

    /// True if every partition in `owned` is in its assignment (Kafka's `isSubset`).
    fn owns_only_assigned(&self, owned: Option<&Assignment>) -> bool {
        owned.is_some_and(|owned| {
            owned.iter().all(|(topic, ps)| {
                self.assigned
                    .get(topic)
                    .is_some_and(|mine| ps.is_subset(mine))
            })
        })
    }
}

/// A ConsumerGroupHeartbeat, decoded.
#[derive(Debug, Clone, Default)]
pub struct Heartbeat {
    /// The member id; empty when a v0 client joins.
    pub member_id: String,
    /// 0 to join, the current epoch to heartbeat, -1 to leave, -2 for a static member to
    /// leave for now.
    pub member_epoch: i32,
    /// `group.instance.id`.
    pub instance_id: Option<String>,
    /// `client.rack`.
    pub rack_id: Option<String>,
    /// -1 when unchanged.
    pub rebalance_timeout_ms: i32,
    /// `None` when unchanged.
    pub subscribed_topic_names: Option<Vec<String>>,
    /// `None` when unchanged; empty for none.
    pub subscribed_topic_regex: Option<String>,
    /// `None` when unchanged.
    pub server_assignor: Option<String>,
    /// The partitions it owns; `None` when unchanged since its last heartbeat.
    pub owned: Option<Assignment>,
    /// The request's client id.
    pub client_id: String,
    /// The request's peer address.
    pub client_host: String,
}

/// What a heartbeat is answered with.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HeartbeatReply {
    /// The member id (new for a v0 join).
    pub member_id: String,
    /// Its epoch now.
    pub member_epoch: i32,
    /// How long until its next heartbeat.
    pub heartbeat_interval_ms: i32,
    /// Its assignment, when it changed or the request was a full one.
    pub assignment: Option<Assignment>,
}

/// A refused request: Kafka's error code and its message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    /// The error.
    pub error: ResponseError,
    /// The message the client logs.
    pub message: String,
}

fn refuse(error: ResponseError, message: impl Into<String>) -> Refusal {
    Refusal {
        error,
        message: message.into(),
    }
}

/// The error for a request at another epoch than `member`'s: ILLEGAL_GENERATION for a
/// member of the classic protocol (its generation is its epoch), STALE_MEMBER_EPOCH
/// otherwise, as Kafka's `validateMemberEpoch`.
fn stale_epoch(member: &ConsumerMember) -> ResponseError {
    if member.uses_classic() {
        ResponseError::IllegalGeneration
    } else {
        ResponseError::StaleMemberEpoch
    }
}

/// Checks what a heartbeat must carry before any group is looked at, as Kafka's
/// `throwIfConsumerGroupHeartbeatRequestIsInvalid` does. `version` is the request's
/// ConsumerGroupHeartbeat version (from v1 the client always sends its member id).
pub fn validate_heartbeat(group_id: &str, hb: &Heartbeat, version: i16) -> Result<(), Refusal> {
    let invalid = |m: &str| Err(refuse(ResponseError::InvalidRequest, m));
    if group_id.is_empty() {
        return invalid("GroupId can't be empty.");
    }
    if hb.instance_id.as_deref() == Some("") {
        return invalid("InstanceId can't be empty.");
    }
    if hb.rack_id.as_deref() == Some("") {
        return invalid("RackId can't be empty.");
    }
    if version >= 1 && hb.member_id.is_empty() {
        return invalid("MemberId can't be empty.");
    }
    match hb.member_epoch {
        e if e > 0 || e == LEAVE_GROUP_MEMBER_EPOCH => {
            if hb.member_id.is_empty() {
                return invalid("MemberId can't be empty.");
            }
        }
        0 => {
            if hb.rebalance_timeout_ms == -1 {
                return invalid("RebalanceTimeoutMs must be provided in first request.");
            }
            if hb.owned.as_ref().is_none_or(|o| !o.is_empty()) {
                return invalid("TopicPartitions must be empty when (re-)joining.");
            }
            if hb.subscribed_topic_names.is_none() && hb.subscribed_topic_regex.is_none() {
                return invalid(
                    "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when \
                     (re-)joining.",
                );
            }
        }
        LEAVE_GROUP_STATIC_MEMBER_EPOCH => {
            if hb.member_id.is_empty() {
                return invalid("MemberId can't be empty.");
            }
            if hb.instance_id.is_none() {
                return invalid("InstanceId can't be null.");
            }
        }
        _ => return invalid("MemberEpoch is invalid."),
    }
    if let Some(name) = &hb.server_assignor {
        if !ASSIGNORS.contains(&name.as_str()) {
            return Err(refuse(
                ResponseError::UnsupportedAssignor,
                format!(
                    "ServerAssignor {name} is not supported. Supported assignors: {}.",
                    ASSIGNORS.join(", ")
                ),
            ));
        }
    }
    Ok(())
}

/// The state of a consumer group as the admin tools show it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConsumerGroupState {
    /// No members.
    Empty,
    /// The target assignment is behind the group epoch.
    Assigning,
    /// Some member has not caught up with the target yet.
    Reconciling,
    /// Every member has its target.
    Stable,
}

impl ConsumerGroupState {
    /// Kafka's name (`kafka-consumer-groups.sh --describe --state`).
    pub fn name(self) -> &'static str {
        match self {
            ConsumerGroupState::Empty => "Empty",
            ConsumerGroupState::Assigning => "Assigning",
            ConsumerGroupState::Reconciling => "Reconciling",
            ConsumerGroupState::Stable => "Stable",
        }
    }
}

/// A consumer group (KIP-848): members, epochs and the target assignment.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumerGroup {
    /// The group id.
    pub group_id: String,
    /// Goes up whenever what the group must consume changes.
    pub group_epoch: i32,
    /// The group epoch the target assignment was computed for.
    pub assignment_epoch: i32,
    /// Members by member id.
    pub members: BTreeMap<String, ConsumerMember>,
    /// The target assignment by member id.
    pub target: BTreeMap<String, Assignment>,
    /// The subscribed topics that exist, by name, with their id and partition count, as the
    /// last group epoch saw them.
    pub subscribed_topics: BTreeMap<String, (Uuid, i32)>,
    /// What the members' regular expressions resolved to, by expression.
    pub resolved_regexes: BTreeMap<String, ResolvedRegex>,
    /// When its regular expressions were last resolved against every topic (not persisted:
    /// a loaded group resolves them again at its first heartbeat).
    pub regexes_refreshed_ms: i64,
}

impl ConsumerGroup {
    /// A new, empty group.
    pub fn new(group_id: &str) -> ConsumerGroup {
        ConsumerGroup {
            group_id: group_id.to_string(),
            group_epoch: 0,
            assignment_epoch: 0,
            members: BTreeMap::new(),
            target: BTreeMap::new(),
            subscribed_topics: BTreeMap::new(),
            resolved_regexes: BTreeMap::new(),
            regexes_refreshed_ms: i64::MIN,
        }
    }

    /// Its state as the admin tools show it.
    pub fn state(&self) -> ConsumerGroupState {
        if self.members.is_empty() {
            ConsumerGroupState::Empty
        } else if self.group_epoch > self.assignment_epoch {
            ConsumerGroupState::Assigning
        } else if self
            .members
            .values()
            .any(|m| m.member_epoch != self.assignment_epoch || m.state != MemberState::Stable)
        {
            ConsumerGroupState::Reconciling
        } else {
            ConsumerGroupState::Stable
        }
    }

    /// The assignor the group uses: the one most of its members ask for, else the default
    /// (`uniform`), as Kafka picks it.
    pub fn assignor(&self) -> &'static str {
        let mut votes: BTreeMap<&'static str, usize> = BTreeMap::new();
        for m in self.members.values() {
            if let Some(name) = m.server_assignor.as_deref() {
                if let Some(known) = ASSIGNORS.iter().find(|a| **a == name) {
                    *votes.entry(known).or_default() += 1;
                }
            }
        }
        votes
            .into_iter()
            .max_by_key(|(name, n)| (*n, std::cmp::Reverse(*name)))
            .map_or(ASSIGNORS[0], |(name, _)| name)
    }

    /// Serves one ConsumerGroupHeartbeat (already checked by [`validate_heartbeat`]).
    /// `topics` are the cluster's topics. `new_member_id` is the id a v0 client gets when it
    /// joins. A regular expression new to the group is compiled first (and refused with
    /// INVALID_REGULAR_EXPRESSION, the group unchanged) and resolved at once; the group's
    /// expressions are resolved again by the first heartbeat
    /// [`REGEX_BATCH_REFRESH_MIN_INTERVAL_MS`] after the last time, so a created topic
    /// that matches is assigned (and a deleted one revoked) without any client action.
    pub fn heartbeat(
        &mut self,
        hb: &Heartbeat,
        topics: &dyn Topics,
        now_ms: i64,
        config: &ConsumerGroupConfig,
        new_member_id: impl FnOnce() -> String,
    ) -> Result<HeartbeatReply, Refusal> {
        if self.members.len() >= config.max_size && !self.members.contains_key(&hb.member_id) {
            return Err(refuse(
                ResponseError::GroupMaxSizeReached,
                format!(
                    "The consumer group has reached its maximum capacity of {} members.",
                    config.max_size
                ),
            ));
        }
        match hb.member_epoch {
            LEAVE_GROUP_MEMBER_EPOCH => return self.leave(hb, config),
            LEAVE_GROUP_STATIC_MEMBER_EPOCH => return self.leave_for_now(hb, config),
            _ => {}
        }
        // Kafka compiles an expression only when it is new to the group (one already
        // resolved compiled before); before anything changes, so a refusal changes nothing.
        if let Some(regex) = hb.subscribed_topic_regex.as_deref() {
            if !regex.is_empty() && !self.resolved_regexes.contains_key(regex) {
                topic_regex::compile(regex)?;
            }
        }

        let member_id = if hb.member_id.is_empty() {
            new_member_id()
        } else {
            hb.member_id.clone()
        };
        let before = if hb.member_epoch == 0 {
            self.joining(&member_id, hb.instance_id.as_deref(), now_ms)?
        } else {
            self.known(&member_id, hb)?
        };

        let mut member = before.clone();
        if let Some(id) = &hb.instance_id {
            member.instance_id = Some(id.clone());
        }
        if let Some(rack) = &hb.rack_id {
            member.rack_id = Some(rack.clone());
        }
        if hb.rebalance_timeout_ms != -1 {
            member.rebalance_timeout_ms = hb.rebalance_timeout_ms;
        }
        if let Some(name) = &hb.server_assignor {
            member.server_assignor = Some(name.clone());
        }
        if let Some(names) = &hb.subscribed_topic_names {
            member.subscribed_topic_names = names.iter().cloned().collect();
        }
        if let Some(regex) = &hb.subscribed_topic_regex {
            member.subscribed_topic_regex = Some(regex.clone());
        }
        member.client_id = hb.client_id.clone();
        member.client_host = hb.client_host.clone();

        let current = self.update_member(&before, member, topics, now_ms);
        let mut next = self.reconcile(&current, hb.owned.as_ref());
        next.session_deadline_ms = now_ms + i64::from(config.session_timeout_ms);
        next.revocation_deadline_ms = match (next.state, current.revocation_deadline_ms) {
            (MemberState::UnrevokedPartitions, Some(deadline))
                if current.state == MemberState::UnrevokedPartitions =>
            {
                Some(deadline)
            }
            (MemberState::UnrevokedPartitions, _) => {
                Some(now_ms + i64::from(next.rebalance_timeout_ms))
            }
            _ => None,
        };
        let full = hb.member_epoch == 0
            || (hb.rebalance_timeout_ms != -1
                && (hb.subscribed_topic_names.is_some() || hb.subscribed_topic_regex.is_some())
                && hb.owned.is_some());
        let assignment = (full || next.assigned != before.assigned).then(|| next.assigned.clone());
        let reply = HeartbeatReply {
            member_id: member_id.clone(),
            member_epoch: next.member_epoch,
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            assignment,
        };
        self.members.insert(member_id, next);
        Ok(reply)
    }

    /// Puts `member` (what `before` became with a request's news) in the group, bumps the
    /// group epoch if what the group must consume changed (the member is new, its
    /// subscription changed, its regular expressions or the subscribed topics resolve
    /// differently) and computes the target assignment if it is behind. Returns the member
    /// as it is in the group now (the steps of a heartbeat or a classic JoinGroup before
    /// the member reconciles).
    fn update_member(
        &mut self,
        before: &ConsumerMember,
        member: ConsumerMember,
        topics: &dyn Topics,
        now_ms: i64,
    ) -> ConsumerMember {
        let member_id = member.member_id.clone();
        let mut bump = !self.members.contains_key(&member_id)
            || member.subscribed_topic_names != before.subscribed_topic_names
            || member.regex() != before.regex()
            || member.server_assignor != before.server_assignor;
        self.members.insert(member_id.clone(), member.clone());
        bump |= self.refresh_regexes(topics, now_ms);
        // Topics are looked up on every heartbeat, so a created, deleted or grown topic is
        // noticed by the next heartbeat of any member.
        let subscribed = self.lookup_subscribed_topics(topics);
        if subscribed != self.subscribed_topics {
            self.subscribed_topics = subscribed;
            bump = true;
        }
        if bump {
            self.group_epoch += 1;
        }
        if self.group_epoch > self.assignment_epoch {
            self.compute_target();
        }
        member
    }

    /// The next step of `current` towards its target, given what it reports owning.
    fn reconcile(&self, current: &ConsumerMember, owned: Option<&Assignment>) -> ConsumerMember {
        let empty = Assignment::new();
        let target = self.target.get(&current.member_id).unwrap_or(&empty);
        let owner_epoch = |t: Uuid, p: i32| self.owner_epoch(&current.member_id, t, p);
        Reconcile {
            target_epoch: self.assignment_epoch,
            target,
            owned,
            owner_epoch: &owner_epoch,
        }
        .next(current)
    }

    /// The member a join (epoch 0) starts from. A static member that comes back takes over
    /// the departed instance's place and partitions under its new id; a dynamic member that
    /// rejoins with its id starts again from nothing (it has dropped its partitions).
    fn joining(
        &mut self,
        member_id: &str,
        instance_id: Option<&str>,
        now_ms: i64,
    ) -> Result<ConsumerMember, Refusal> {
        if let Some(instance) = instance_id {
            let previous = self
                .members
                .values()
                .find(|m| m.instance_id.as_deref() == Some(instance))
                .cloned();
            if let Some(previous) = previous {
                if previous.member_epoch != LEAVE_GROUP_STATIC_MEMBER_EPOCH
                    && previous.member_id != member_id
                {
                    return Err(refuse(
                        ResponseError::UnreleasedInstanceId,
                        format!(
                            "Static member {} with instance id {instance} cannot join the group \
                             because the instance id is owned by member {}.",
                            member_id, previous.member_id
                        ),
                    ));
                }
                self.members.remove(&previous.member_id);
                if let Some(target) = self.target.remove(&previous.member_id) {
                    self.target.insert(member_id.to_string(), target);
                }
                let mut replacement = previous;
                replacement.member_id = member_id.to_string();
                replacement.member_epoch = 0;
                replacement.previous_member_epoch = 0;
                self.members
                    .insert(member_id.to_string(), replacement.clone());
                return Ok(replacement);
            }
        }
        if self.members.remove(member_id).is_some() {
            self.target.remove(member_id);
            // Its partitions are free again; the assignor runs for the group.
            self.group_epoch += 1;
        }
        Ok(ConsumerMember::new(member_id, now_ms))
    }

    /// The member a heartbeat with a positive epoch comes from, after Kafka's epoch checks.
    fn known(&self, member_id: &str, hb: &Heartbeat) -> Result<ConsumerMember, Refusal> {
        let Some(member) = self.members.get(member_id) else {
            return Err(refuse(
                ResponseError::UnknownMemberId,
                format!(
                    "Member {member_id} is not a member of group {}.",
                    self.group_id
                ),
            ));
        };
        if let Some(instance) = &hb.instance_id {
            if member.instance_id.as_deref() != Some(instance) {
                return Err(refuse(
                    ResponseError::FencedInstanceId,
                    format!(
                        "Static member {member_id} with instance id {instance} was fenced by \
                         another member."
                    ),
                ));
            }
        }
        let received = hb.member_epoch;
        if received > member.member_epoch
            || (received < member.member_epoch
                && (received != member.previous_member_epoch
                    || !member.owns_only_assigned(hb.owned.as_ref())))
        {
            return Err(refuse(
                ResponseError::FencedMemberEpoch,
                format!(
                    "The consumer group member has a {} member epoch ({received}) than the one \
                     known by the group coordinator ({}). The member must abandon all its \
                     partitions and rejoin.",
                    if received > member.member_epoch {
                        "greater"
                    } else {
                        "smaller"
                    },
                    member.member_epoch
                ),
            ));
        }
        Ok(member.clone())
    }

    fn leave(
        &mut self,
        hb: &Heartbeat,
        config: &ConsumerGroupConfig,
    ) -> Result<HeartbeatReply, Refusal> {
        if !self.members.contains_key(&hb.member_id) {
            return Err(refuse(
                ResponseError::UnknownMemberId,
                format!(
                    "Member {} is not a member of group {}.",
                    hb.member_id, self.group_id
                ),
            ));
        }
        self.remove_member(&hb.member_id);
        Ok(HeartbeatReply {
            member_id: hb.member_id.clone(),
            member_epoch: LEAVE_GROUP_MEMBER_EPOCH,
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            assignment: None,
        })
    }

    fn leave_for_now(
        &mut self,
        hb: &Heartbeat,
        config: &ConsumerGroupConfig,
    ) -> Result<HeartbeatReply, Refusal> {
        let Some(member) = self.members.get_mut(&hb.member_id) else {
            return Err(refuse(
                ResponseError::UnknownMemberId,
                format!(
                    "Member {} is not a member of group {}.",
                    hb.member_id, self.group_id
                ),
            ));
        };
        if member.instance_id != hb.instance_id {
            return Err(refuse(
                ResponseError::FencedInstanceId,
                format!(
                    "Member {} was fenced by another static member.",
                    hb.member_id
                ),
            ));
        }
        // It keeps its partitions (no rebalance) until it comes back or its session ends.
        member.set_epoch(LEAVE_GROUP_STATIC_MEMBER_EPOCH);
        Ok(HeartbeatReply {
            member_id: hb.member_id.clone(),
            member_epoch: LEAVE_GROUP_STATIC_MEMBER_EPOCH,
            heartbeat_interval_ms: config.heartbeat_interval_ms,
            assignment: None,
        })
    }

    /// Removes a member (it left or was fenced); its partitions go to the others at the next
    /// group epoch.
    pub fn remove_member(&mut self, member_id: &str) {
        if self.members.remove(member_id).is_some() {
            self.target.remove(member_id);
            self.group_epoch += 1;
            self.forget_unsubscribed_regexes();
        }
    }

    /// The regular expressions its members subscribe with.
    fn subscribed_regexes(&self) -> BTreeSet<String> {
        self.members
            .values()
            .filter_map(|m| m.regex().map(str::to_string))
            .collect()
    }

    /// Drops the resolution of every expression no member subscribes with any more (its
    /// record is tombstoned, as Kafka's `maybeDeleteResolvedRegularExpressions` does).
    fn forget_unsubscribed_regexes(&mut self) {
        let subscribed = self.subscribed_regexes();
        self.resolved_regexes.retain(|r, _| subscribed.contains(r));
    }

    /// Resolves the group's regular expressions (Kafka's `maybeUpdateRegularExpressions`
    /// and `handleRegularExpressionsResult` in one step): all of them when one is not
    /// resolved yet or the last resolution is [`REGEX_BATCH_REFRESH_MIN_INTERVAL_MS`] old.
    /// Returns true if any now matches other topics (the group epoch must go up). A
    /// resolution that matches the same topics keeps its record unchanged, so a steady group
    /// writes nothing.
    ///
    /// Kafka resolves asynchronously, when a member brings a new expression or the metadata
    /// has new topics since the last resolution, at most every 10 s, and after
    /// `group.consumer.regex.refresh.interval.ms` (10 min) in any case. Here the broker's
    /// image is in memory and listing its topic names costs microseconds, so the
    /// resolution runs inside the heartbeat, and the 10 s minimum interval alone bounds
    /// it: a created topic is noticed as soon as Kafka would at the earliest (the first
    /// heartbeat 10 s after the last resolution), a new expression at once.
    fn refresh_regexes(&mut self, topics: &dyn Topics, now_ms: i64) -> bool {
        self.forget_unsubscribed_regexes();
        let subscribed = self.subscribed_regexes();
        let unresolved = subscribed
            .iter()
            .any(|r| !self.resolved_regexes.contains_key(r));
        let due =
            now_ms.saturating_sub(self.regexes_refreshed_ms) >= REGEX_BATCH_REFRESH_MIN_INTERVAL_MS;
        if subscribed.is_empty() || !(unresolved || due) {
            return false;
        }
        let (version, names) = topics.names();
        let mut changed = false;
        for regex in subscribed {
            let matched = topic_regex::matching(&regex, &names);
            let known = self.resolved_regexes.get(&regex);
            if known.is_some_and(|k| k.topics == matched) {
                continue;
            }
            changed |= known.map_or(!matched.is_empty(), |_| true);
            self.resolved_regexes.insert(
                regex,
                ResolvedRegex {
                    topics: matched,
                    version,
                    timestamp_ms: now_ms,
                },
            );
        }
        self.regexes_refreshed_ms = now_ms;
        changed
    }

    /// True if a member subscribes to `topic`, by name or through what its regular expression
    /// resolved to (Kafka's `isSubscribedToTopic`: OffsetDelete refuses such a topic's
    /// offsets with GROUP_SUBSCRIBED_TO_TOPIC).
    pub fn is_subscribed_to(&self, topic: &str) -> bool {
        self.members
            .values()
            .any(|m| self.member_topics(m).any(|t| t == topic))
    }

    /// The topics a member subscribes to: its names and what its expression resolved to.
    fn member_topics<'a>(&'a self, m: &'a ConsumerMember) -> impl Iterator<Item = &'a String> {
        let resolved = m
            .regex()
            .and_then(|r| self.resolved_regexes.get(r))
            .into_iter()
            .flat_map(|r| r.topics.iter());
        m.subscribed_topic_names.iter().chain(resolved)
    }

    /// Fences the members whose session ended or that did not revoke in time; returns their
    /// ids.
    pub fn tick(&mut self, now_ms: i64) -> Vec<String> {
        let expired = self.expired(now_ms);
        for id in &expired {
            self.remove_member(id);
        }
        expired
    }

    /// The earliest deadline of any member, for the coordinator's timer.
    pub fn next_deadline(&self) -> Option<i64> {
        self.members
            .values()
            .flat_map(|m| std::iter::once(m.session_deadline_ms).chain(m.revocation_deadline_ms))
            .min()
    }

    /// Checks an OffsetCommit (or TxnOffsetCommit) against the group, as Kafka's
    /// `ConsumerGroup.validateOffsetCommit`: a commit without a member (epoch < 0) is allowed
    /// only while the group is empty; a member's commit must carry its current epoch
    /// (STALE_MEMBER_EPOCH otherwise). Kafka also refuses a member's non-transactional commit
    /// older than OffsetCommit v9; no client sends one (member epochs exist only from v9, and
    /// consumer-protocol clients use it), so that rule is not repeated here.
    pub fn validate_offset_commit(
        &self,
        member_id: &str,
        member_epoch: i32,
    ) -> Result<(), ResponseError> {
        if member_epoch < 0 && self.members.is_empty() {
            return Ok(());
        }
        let Some(member) = self.members.get(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if member_epoch != member.member_epoch {
            return Err(stale_epoch(member));
        }
        Ok(())
    }

    /// Checks an OffsetFetch that names a member (v9+): it must be a member at its current
    /// epoch. A fetch without a member id (the admin tools) is always allowed.
    pub fn validate_offset_fetch(
        &self,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), ResponseError> {
        let Some(member_id) = member_id.filter(|id| !id.is_empty()) else {
            return Ok(());
        };
        let Some(member) = self.members.get(member_id) else {
            return Err(ResponseError::UnknownMemberId);
        };
        if member_epoch != member.member_epoch {
            return Err(stale_epoch(member));
        }
        Ok(())
    }

    fn lookup_subscribed_topics(&self, topics: &dyn Topics) -> BTreeMap<String, (Uuid, i32)> {
        self.members
            .values()
            .flat_map(|m| self.member_topics(m))
            .filter_map(|name| topics.lookup(name).map(|found| (name.clone(), found)))
            .collect()
    }

    /// Runs the group's assignor for the current group epoch.
    fn compute_target(&mut self) {
        let specs: BTreeMap<String, MemberSpec> = self
            .members
            .values()
            .map(|m| {
                let topics = self
                    .member_topics(m)
                    .filter_map(|name| self.subscribed_topics.get(name).map(|(id, _)| *id))
                    .collect();
                (m.member_id.clone(), MemberSpec { topics })
            })
            .collect();
        let partitions: BTreeMap<Uuid, i32> = self.subscribed_topics.values().copied().collect();
        self.target = assignor::assign(self.assignor(), &specs, &partitions, &self.target);
        self.assignment_epoch = self.group_epoch;
    }

    /// The epoch of the member other than `except` that owns `topic`-`partition` (assigned or
    /// not yet revoked).
    fn owner_epoch(&self, except: &str, topic: Uuid, partition: i32) -> Option<i32> {
        self.members
            .values()
            .filter(|m| m.member_id != except)
            .find(|m| {
                [&m.assigned, &m.pending_revocation]
                    .iter()
                    .any(|a| a.get(&topic).is_some_and(|ps| ps.contains(&partition)))
            })
            .map(|m| m.member_epoch)
    }
}

#[cfg(test)]
mod tests;
