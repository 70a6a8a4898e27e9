//! The group coordinator: consumer group membership (the classic rebalance protocol) and
//! committed offsets, kept as records in the internal topic `__consumer_offsets`.
//!
//! [`state`] holds the pure state machine; this module is the thin layer around it: it
//! parks JoinGroup/SyncGroup requests until the state machine replies, writes offsets and
//! group metadata to the group's `__consumer_offsets` partition (chosen like Kafka, by the
//! group id's Java hash), replays that topic on start-up, and drives time (session expiry,
//! rebalance deadlines, offset expiry). It sees the rest of the broker only through
//! [`CoordinatorHost`] (topic sizes, its partitions' logs, creating `__consumer_offsets`),
//! never the broker itself, so it can be tested alone and nothing below imports upward.
//!
//! **Nothing waits for the disk under the coordinator's lock.** State changes happen under
//! one short lock; the records they produce go into a write queue in the same order, and
//! whoever changed state then drains the queue ([`GroupCoordinator::flush_writes`]): the
//! appends run on a blocking thread (a roll may fsync), one drain at a time so the log
//! order is the queue order. Effects that must follow the write (committed offsets become
//! visible, deleted ones disappear) are applied by the drain, in that same order, and only
//! then is the request answered. So heartbeats never wait for an append, a roll or the
//! log cleaner. Time is driven by a deadline queue (member sessions, pending member ids,
//! rebalance deadlines): a tick only visits the groups whose deadline has passed.

pub mod records;
pub mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kafka_protocol::ResponseError;
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use crate::error::ApiError;
use crate::log::PartitionLog;
use crate::time::now_ms;
use records::{GroupValue, OffsetValue, RecordKey};
pub use state::{
    CommittedOffset, Group, GroupLimits, GroupState, JoinRequest, JoinResponse, Reply, SyncRequest,
    SyncResponse, Token,
};

/// The internal topic holding offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Kafka's `offset.metadata.max.bytes` default.
const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// How often sessions and deadlines are checked. Kafka's timers are exact; 100 ms of slack on
/// multi-second timeouts is invisible to clients.
const TICK: Duration = Duration::from_millis(100);

/// What the group coordinator needs from the broker it runs in, and nothing more: the
/// partitions it may commit offsets for, its `__consumer_offsets` partitions (created on
/// first use) and their logs, and its one config value. The broker implements it; tests
/// implement it over logs in a temporary directory. Implementations answer from memory and
/// never block on the disk, except [`CoordinatorHost::ensure_offsets_topic`], which is async.
pub trait CoordinatorHost: Send + Sync {
    /// The number of partitions of `topic`, `None` if the topic does not exist.
    fn partition_count(&self, topic: &str) -> Option<i32>;

    /// Creates `__consumer_offsets` (compacted, `offsets.topic.num.partitions`,
    /// `offsets.topic.replication.factor`, see [`offsets_topic_configs`]) if it does not
    /// exist yet, as Kafka does when a group first needs it, and returns its partition
    /// count; `Err` with Kafka's code if it can neither be created nor found.
    fn ensure_offsets_topic(&self) -> impl Future<Output = Result<i32, ApiError>> + Send;

    /// The log of `__consumer_offsets` partition `partition` and its leader epoch, if this
    /// broker leads it: UNKNOWN_TOPIC_OR_PARTITION if there is no such partition,
    /// NOT_LEADER_OR_FOLLOWER if another broker leads it. Appending to the log is the
    /// caller's business (on a blocking thread: an append may roll and fsync).
    fn offsets_log(&self, partition: i32) -> Result<(Arc<Mutex<PartitionLog>>, i32), ApiError>;

    /// `offsets.retention.minutes` in milliseconds: how long the offsets of an empty group
    /// are kept.
    fn offsets_retention_ms(&self) -> i64;
}

/// The topic configs `__consumer_offsets` is created with, as Kafka's group coordinator
/// sets them: compacted, the producer's compression, `offsets.topic.segment.bytes`.
pub fn offsets_topic_configs(segment_bytes: i32) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("compression.type".to_string(), "producer".to_string()),
        ("segment.bytes".to_string(), segment_bytes.to_string()),
    ])
}

/// One partition's commit request.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Next offset to consume.
    pub offset: i64,
    /// Leader epoch, -1 if unknown.
    pub leader_epoch: i32,
    /// Client metadata (null becomes "").
    pub metadata: Option<String>,
}

struct Inner {
    groups: HashMap<String, Group>,
    waiters: HashMap<Token, Waiter>,
    /// When each group next needs a tick, `(deadline ms, group id)`. Entries may be early
    /// (a heartbeat moved the deadline later): a tick then does nothing and reschedules.
    deadlines: BTreeSet<(i64, String)>,
    /// The entry each group has in `deadlines`.
    scheduled: HashMap<String, i64>,
    /// Records to append, in the order the state changed.
    writes: VecDeque<Write>,
}

/// Records for a group's `__consumer_offsets` partition, what to do once they are written,
/// and who waits for the outcome.
struct Write {
    group_id: String,
    records: Vec<(Bytes, Option<Bytes>)>,
    effect: Effect,
    done: Option<oneshot::Sender<Result<(), ApiError>>>,
}

/// In-memory changes that become true only once their records are in the log.
enum Effect {
    None,
    /// Committed offsets become visible to OffsetFetch.
    Commit(Vec<((String, i32), CommittedOffset)>),
    /// Offsets are gone (OffsetDelete, DeleteGroups, offset expiry); with `remove_group`
    /// the group goes too if nothing is left of it.
    Delete {
        keys: Vec<(String, i32)>,
        remove_group: bool,
    },
}

enum Waiter {
    Join(oneshot::Sender<JoinResponse>),
    Sync(oneshot::Sender<SyncResponse>),
}

/// The group coordinator of this broker.
pub struct GroupCoordinator {
    inner: Mutex<Inner>,
    next_token: AtomicU64,
    limits: GroupLimits,
    /// Held by the one task draining the write queue.
    writer: tokio::sync::Mutex<()>,
}

impl GroupCoordinator {
    /// An empty coordinator; call [`GroupCoordinator::load`] before serving.
    pub fn new(limits: GroupLimits) -> GroupCoordinator {
        GroupCoordinator {
            inner: Mutex::new(Inner {
                groups: HashMap::new(),
                waiters: HashMap::new(),
                deadlines: BTreeSet::new(),
                scheduled: HashMap::new(),
                writes: VecDeque::new(),
            }),
            next_token: AtomicU64::new(1),
            limits,
            writer: tokio::sync::Mutex::new(()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replays `__consumer_offsets` (if it exists) into memory: committed offsets and group
    /// metadata, later records winning and tombstones deleting.
    pub fn load(&self, host: &impl CoordinatorHost) {
        let Some(count) = host.partition_count(OFFSETS_TOPIC) else {
            return;
        };
        let now = now_ms();
        let mut inner = self.lock();
        let mut records = 0usize;
        for partition in 0..count {
            let Ok((log, _)) = host.offsets_log(partition) else {
                continue;
            };
            let log = log.lock().unwrap_or_else(|p| p.into_inner());
            let mut offset = log.log_start_offset();
            let end = log.log_end_offset();
            while offset < end {
                let data = match log.read(offset, 1 << 20, end, true) {
                    Ok(d) => d,
                    Err(e) => {
                        warn!(partition, offset, error = %e, "cannot read __consumer_offsets");
                        break;
                    }
                };
                if data.records.is_empty() {
                    break;
                }
                let mut buf = data.records.clone();
                let mut next = offset;
                while buf.has_remaining() {
                    let Ok(set) = RecordBatchDecoder::decode(&mut buf) else {
                        break;
                    };
                    for r in set.records {
                        next = next.max(r.offset + 1);
                        records += 1;
                        replay(&mut inner.groups, r.key, r.value, now);
                    }
                }
                if next <= offset {
                    break;
                }
                offset = next;
            }
        }
        // A group whose only remaining state was tombstoned is gone.
        inner.groups.retain(|_, g| g.state() != GroupState::Dead);
        let ids: Vec<String> = inner.groups.keys().cloned().collect();
        for id in ids {
            Self::schedule(&mut inner, &id);
        }
        if records > 0 {
            info!(
                groups = inner.groups.len(),
                records, "loaded consumer groups from __consumer_offsets"
            );
        }
    }

    /// The `__consumer_offsets` partition that coordinates `group`, creating the topic on
    /// first use as Kafka does (COORDINATOR_NOT_AVAILABLE if that fails).
    pub(crate) async fn partition_for(
        &self,
        host: &impl CoordinatorHost,
        group: &str,
    ) -> Result<i32, ApiError> {
        let count = match host.partition_count(OFFSETS_TOPIC) {
            Some(count) => count,
            None => host.ensure_offsets_topic().await.map_err(|e| {
                warn!(error = ?e.message, "cannot create __consumer_offsets");
                ApiError::code(ResponseError::CoordinatorNotAvailable)
            })?,
        };
        Ok(records::partition_for(group, count))
    }

    fn token(&self) -> Token {
        self.next_token.fetch_add(1, Ordering::Relaxed)
    }

    /// Delivers replies to parked requests; returns the one for `own`, if any.
    fn deliver(inner: &mut Inner, replies: Vec<Reply>, own: Token) -> Option<Reply> {
        let mut mine = None;
        for reply in replies {
            let token = match &reply {
                Reply::Join(t, _) | Reply::Sync(t, _) => *t,
            };
            if token == own {
                mine = Some(reply);
                continue;
            }
            match (inner.waiters.remove(&token), reply) {
                (Some(Waiter::Join(tx)), Reply::Join(_, r)) => {
                    let _ = tx.send(r);
                }
                (Some(Waiter::Sync(tx)), Reply::Sync(_, r)) => {
                    let _ = tx.send(r);
                }
                _ => {}
            }
        }
        mine
    }

    /// JoinGroup: may wait until the rebalance completes.
    pub async fn join(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
        request: JoinRequest,
    ) -> JoinResponse {
        let member_id = request.member_id.clone();
        if let Err(e) = self.partition_for(host, group_id).await {
            return JoinResponse {
                error_code: e.code,
                ..JoinResponse::error(ResponseError::CoordinatorNotAvailable, &member_id)
            };
        }
        let token = self.token();
        let (tx, rx) = oneshot::channel();
        let immediate = {
            let mut inner = self.lock();
            let now = now_ms();
            let group = inner
                .groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id, now));
            let replies = group.join(token, request, now, &self.limits);
            Self::after_change(&mut inner, group_id);
            match Self::deliver(&mut inner, replies, token) {
                Some(Reply::Join(_, r)) => Some(r),
                _ => {
                    inner.waiters.insert(token, Waiter::Join(tx));
                    None
                }
            }
        };
        self.flush_writes(host).await;
        match immediate {
            Some(r) => r,
            None => rx.await.unwrap_or_else(|_| {
                JoinResponse::error(ResponseError::UnknownServerError, &member_id)
            }),
        }
    }

    /// SyncGroup: followers wait for the leader's assignment.
    pub async fn sync(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
        request: SyncRequest,
    ) -> SyncResponse {
        let token = self.token();
        let (tx, rx) = oneshot::channel();
        let immediate = {
            let mut inner = self.lock();
            let now = now_ms();
            let Some(group) = inner.groups.get_mut(group_id) else {
                return SyncResponse::error(ResponseError::UnknownMemberId);
            };
            let replies = group.sync(token, request, now, &self.limits);
            Self::after_change(&mut inner, group_id);
            match Self::deliver(&mut inner, replies, token) {
                Some(Reply::Sync(_, r)) => Some(r),
                _ => {
                    inner.waiters.insert(token, Waiter::Sync(tx));
                    None
                }
            }
        };
        self.flush_writes(host).await;
        match immediate {
            Some(r) => r,
            None => rx
                .await
                .unwrap_or_else(|_| SyncResponse::error(ResponseError::UnknownServerError)),
        }
    }

    /// Heartbeat: returns the error code. Never waits for the disk: a heartbeat only moves
    /// the member's session deadline later, so the deadline queue needs no update (the
    /// earlier entry fires, finds nothing due and reschedules).
    pub fn heartbeat(
        &self,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
    ) -> i16 {
        let mut inner = self.lock();
        match inner.groups.get_mut(group_id) {
            Some(group) => group.heartbeat(member_id, instance, generation_id, now_ms()),
            None => ResponseError::UnknownMemberId.code(),
        }
    }

    /// LeaveGroup: one error code per member, or the group-level error.
    pub async fn leave(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<i16>, i16> {
        let codes = {
            let mut inner = self.lock();
            let Some(group) = inner.groups.get_mut(group_id) else {
                return Err(ResponseError::UnknownMemberId.code());
            };
            let (codes, replies) = group.leave(members, now_ms(), &self.limits);
            Self::after_change(&mut inner, group_id);
            Self::deliver(&mut inner, replies, 0);
            codes
        };
        self.flush_writes(host).await;
        Ok(codes)
    }

    /// OffsetCommit: one error code per partition (group-level failures repeat per partition).
    /// Answers once the offsets are in the log (they become visible to OffsetFetch then).
    pub async fn commit(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
        commits: Vec<OffsetCommit>,
    ) -> Vec<i16> {
        let (codes, written) =
            self.stage_commit(host, group_id, member_id, instance, generation_id, commits);
        let Some(written) = written else {
            return codes;
        };
        self.flush_writes(host).await;
        let result = written
            .await
            .unwrap_or_else(|_| Err(ApiError::code(ResponseError::CoordinatorNotAvailable)));
        match result {
            Ok(()) => codes,
            Err(e) => {
                // Nothing is acknowledged that was not written.
                let code = if e.code == ResponseError::UnknownTopicOrPartition.code() {
                    ResponseError::CoordinatorNotAvailable.code()
                } else {
                    e.code
                };
                codes
                    .into_iter()
                    .map(|c| if c == 0 { code } else { c })
                    .collect()
            }
        }
    }

    /// The locked part of [`Self::commit`]: validation and the queued write.
    #[allow(clippy::type_complexity)]
    fn stage_commit(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
        commits: Vec<OffsetCommit>,
    ) -> (Vec<i16>, Option<oneshot::Receiver<Result<(), ApiError>>>) {
        let mut inner = self.lock();
        let now = now_ms();
        let group = inner
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, now));
        if let Err(e) = group.validate_offset_commit(member_id, instance, generation_id) {
            let code = e.code();
            if group.state() == GroupState::Empty
                && group.offsets.is_empty()
                && group.members().next().is_none()
            {
                inner.groups.remove(group_id);
            }
            return (vec![code; commits.len()], None);
        }
        let mut codes = Vec::with_capacity(commits.len());
        let mut accepted = Vec::new();
        for c in commits {
            let known = host
                .partition_count(&c.topic)
                .is_some_and(|count| c.partition >= 0 && c.partition < count);
            if !known {
                codes.push(ResponseError::UnknownTopicOrPartition.code());
            } else if c
                .metadata
                .as_ref()
                .is_some_and(|m| m.len() > OFFSET_METADATA_MAX_BYTES)
            {
                codes.push(ResponseError::OffsetMetadataTooLarge.code());
            } else {
                codes.push(0);
                accepted.push(c);
            }
        }
        if accepted.is_empty() {
            return (codes, None);
        }
        let records: Vec<(Bytes, Option<Bytes>)> = accepted
            .iter()
            .map(|c| {
                let key = RecordKey::Offset {
                    group: group_id.to_string(),
                    topic: c.topic.clone(),
                    partition: c.partition,
                };
                let value = OffsetValue {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone().unwrap_or_default(),
                    commit_timestamp: now,
                };
                (key.encode(), Some(value.encode()))
            })
            .collect();
        let offsets = accepted
            .into_iter()
            .map(|c| {
                (
                    (c.topic, c.partition),
                    CommittedOffset {
                        offset: c.offset,
                        leader_epoch: c.leader_epoch,
                        metadata: c.metadata.unwrap_or_default(),
                        commit_timestamp: now,
                    },
                )
            })
            .collect();
        let written = Self::enqueue(&mut inner, group_id, records, Effect::Commit(offsets));
        (codes, Some(written))
    }

    /// Committed offsets of a group: all of them, or those of `partitions` (missing ones
    /// report offset -1 as Kafka does).
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Vec<(String, i32, Option<CommittedOffset>)> {
        let inner = self.lock();
        let group = inner.groups.get(group_id);
        match partitions {
            Some(list) => list
                .into_iter()
                .map(|(t, p)| {
                    let found = group.and_then(|g| g.offsets.get(&(t.clone(), p)).cloned());
                    (t, p, found)
                })
                .collect(),
            None => group
                .map(|g| {
                    g.offsets
                        .iter()
                        .map(|((t, p), o)| (t.clone(), *p, Some(o.clone())))
                        .collect()
                })
                .unwrap_or_default(),
        }
    }

    /// A snapshot of one group for DescribeGroups / ListGroups; `None` if unknown.
    pub fn describe(&self, group_id: &str) -> Option<Group> {
        self.lock().groups.get(group_id).cloned()
    }

    /// Snapshots of every group.
    pub fn groups(&self) -> Vec<Group> {
        self.lock()
            .groups
            .values()
            .filter(|g| g.state() != GroupState::Dead)
            .cloned()
            .collect()
    }

    /// DeleteGroups: only groups without members; writes tombstones for offsets and metadata.
    pub async fn delete_group(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
    ) -> Result<(), ResponseError> {
        let written = {
            let mut inner = self.lock();
            let Some(group) = inner.groups.get(group_id) else {
                return Err(ResponseError::GroupIdNotFound);
            };
            if group.state() != GroupState::Empty {
                return Err(ResponseError::NonEmptyGroup);
            }
            let tombstones = group_tombstones(group);
            let keys = group.offsets.keys().cloned().collect();
            let effect = Effect::Delete {
                keys,
                remove_group: true,
            };
            Self::enqueue(&mut inner, group_id, tombstones, effect)
        };
        self.flush_writes(host).await;
        Self::written(written).await?;
        info!(group = %group_id, "deleted consumer group");
        Ok(())
    }

    /// The outcome of a queued write as a Kafka error.
    async fn written(
        written: oneshot::Receiver<Result<(), ApiError>>,
    ) -> Result<(), ResponseError> {
        match written.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => {
                Err(ResponseError::try_from_code(e.code)
                    .unwrap_or(ResponseError::UnknownServerError))
            }
            Err(_) => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// OffsetDelete: removes committed offsets of partitions the group does not subscribe to.
    pub async fn delete_offsets(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, ResponseError> {
        let (codes, written) = self.stage_delete_offsets(group_id, partitions)?;
        if let Some(written) = written {
            self.flush_writes(host).await;
            Self::written(written).await?;
        }
        Ok(codes)
    }

    /// The locked part of [`Self::delete_offsets`].
    #[allow(clippy::type_complexity)]
    fn stage_delete_offsets(
        &self,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<(Vec<i16>, Option<oneshot::Receiver<Result<(), ApiError>>>), ResponseError> {
        let mut inner = self.lock();
        let Some(group) = inner.groups.get_mut(group_id) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        let subscribed = if group.state() == GroupState::Empty {
            Default::default()
        } else {
            state::subscribed_topics(group)
        };
        let mut codes = Vec::new();
        let mut tombstones = Vec::new();
        for (t, p) in partitions {
            if subscribed.contains(t) {
                codes.push(ResponseError::GroupSubscribedToTopic.code());
            } else {
                codes.push(0);
                if group.offsets.contains_key(&(t.clone(), *p)) {
                    tombstones.push((
                        RecordKey::Offset {
                            group: group_id.to_string(),
                            topic: t.clone(),
                            partition: *p,
                        }
                        .encode(),
                        None,
                    ));
                }
            }
        }
        if tombstones.is_empty() {
            return Ok((codes, None));
        }
        let keys = partitions
            .iter()
            .zip(&codes)
            .filter(|(_, code)| **code == 0)
            .map(|(k, _)| k.clone())
            .collect();
        let effect = Effect::Delete {
            keys,
            remove_group: false,
        };
        let written = Self::enqueue(&mut inner, group_id, tombstones, effect);
        Ok((codes, Some(written)))
    }

    /// What follows every change of a group's state: its metadata record is queued if its
    /// membership changed, and its next deadline is rescheduled.
    fn after_change(inner: &mut Inner, group_id: &str) {
        let changed = inner
            .groups
            .get_mut(group_id)
            .and_then(|g| g.take_dirty().then(|| g.to_value()));
        if let Some(value) = changed {
            Self::enqueue_group(inner, group_id, Some(value));
        }
        Self::schedule(inner, group_id);
    }

    /// Queues the group's metadata record (membership is soft state: a failed write is
    /// logged, members rejoin if it is lost).
    fn enqueue_group(inner: &mut Inner, group_id: &str, value: Option<GroupValue>) {
        if let Some(v) = &value {
            info!(
                group = %group_id,
                generation = v.generation,
                protocol = v.protocol.as_deref().unwrap_or(""),
                members = v.members.len(),
                "group membership changed"
            );
        }
        let record = (
            RecordKey::Group {
                group: group_id.to_string(),
            }
            .encode(),
            value.map(|v| v.encode()),
        );
        inner.writes.push_back(Write {
            group_id: group_id.to_string(),
            records: vec![record],
            effect: Effect::None,
            done: None,
        });
    }

    /// Queues records whose outcome someone waits for.
    fn enqueue(
        inner: &mut Inner,
        group_id: &str,
        records: Vec<(Bytes, Option<Bytes>)>,
        effect: Effect,
    ) -> oneshot::Receiver<Result<(), ApiError>> {
        let (tx, rx) = oneshot::channel();
        inner.writes.push_back(Write {
            group_id: group_id.to_string(),
            records,
            effect,
            done: Some(tx),
        });
        rx
    }

    /// (Re)schedules `group_id` in the deadline queue if its next deadline is earlier than
    /// the entry it has (a later deadline keeps the early entry, which reschedules lazily).
    fn schedule(inner: &mut Inner, group_id: &str) {
        let Some(next) = inner.groups.get(group_id).and_then(Group::next_deadline) else {
            return;
        };
        if inner.scheduled.get(group_id).is_some_and(|&at| at <= next) {
            return;
        }
        if let Some(old) = inner.scheduled.insert(group_id.to_string(), next) {
            inner.deadlines.remove(&(old, group_id.to_string()));
        }
        inner.deadlines.insert((next, group_id.to_string()));
    }

    /// Removes and returns the groups whose deadline is at or before `now`.
    fn take_due(inner: &mut Inner, now: i64) -> Vec<String> {
        let mut due = Vec::new();
        while let Some((at, _)) = inner.deadlines.first() {
            if *at > now {
                break;
            }
            if let Some((at, id)) = inner.deadlines.pop_first() {
                if inner.scheduled.get(&id) == Some(&at) {
                    inner.scheduled.remove(&id);
                }
                due.push(id);
            }
        }
        due
    }

    /// Appends everything queued, in queue order, on a blocking thread; then applies each
    /// write's effect (under the lock, in the same order) and tells its waiter. Returns once
    /// the queue was empty at some point after the call began, so a caller's own write is
    /// done when this returns.
    pub(crate) async fn flush_writes(&self, host: &impl CoordinatorHost) {
        let _writer = self.writer.lock().await;
        loop {
            let batch: Vec<Write> = self.lock().writes.drain(..).collect();
            if batch.is_empty() {
                return;
            }
            let prepared: Vec<Result<PreparedWrite, ApiError>> = batch
                .iter()
                .map(|w| prepare_write(host, &w.group_id, &w.records))
                .collect();
            let count = prepared.len();
            let results = tokio::task::spawn_blocking(move || {
                prepared
                    .into_iter()
                    .map(|p| {
                        let p = p?;
                        let mut log = p.log.lock().unwrap_or_else(|e| e.into_inner());
                        log.append(&p.batch, p.leader_epoch, p.now)?;
                        // flush.messages: Kafka fsyncs before acknowledging the write.
                        if log.flush_due_by_messages() {
                            log.flush()?;
                        }
                        Ok(())
                    })
                    .collect::<Vec<Result<(), ApiError>>>()
            })
            .await
            .unwrap_or_else(|_| {
                vec![Err(ApiError::code(ResponseError::UnknownServerError)); count]
            });
            let mut inner = self.lock();
            for (w, result) in batch.into_iter().zip(results) {
                match &result {
                    Ok(()) => Self::apply(&mut inner, &w.group_id, w.effect),
                    Err(e) if w.done.is_none() => {
                        // Membership is soft state (members rejoin if it is lost); expired
                        // offsets are expired again at the next check.
                        warn!(group = %w.group_id, code = e.code, error = ?e.message, "could not write to __consumer_offsets");
                    }
                    Err(_) => {}
                }
                if let Some(done) = w.done {
                    let _ = done.send(result);
                }
            }
        }
    }

    fn apply(inner: &mut Inner, group_id: &str, effect: Effect) {
        match effect {
            Effect::None => {}
            Effect::Commit(offsets) => {
                let now = now_ms();
                let group = inner
                    .groups
                    .entry(group_id.to_string())
                    .or_insert_with(|| Group::new(group_id, now));
                group.offsets.extend(offsets);
            }
            Effect::Delete { keys, remove_group } => {
                let Some(group) = inner.groups.get_mut(group_id) else {
                    return;
                };
                for k in &keys {
                    group.offsets.remove(k);
                }
                let gone = remove_group
                    && group.state() == GroupState::Empty
                    && group.members().next().is_none()
                    && group.offsets.is_empty();
                if gone {
                    inner.groups.remove(group_id);
                }
            }
        }
    }
}

/// A write ready for the blocking thread: the encoded batch and the log it goes to.
struct PreparedWrite {
    log: Arc<Mutex<PartitionLog>>,
    leader_epoch: i32,
    batch: BytesMut,
    now: i64,
}

/// Encodes `records` as one batch for the group's `__consumer_offsets` partition.
fn prepare_write(
    host: &impl CoordinatorHost,
    group_id: &str,
    records: &[(Bytes, Option<Bytes>)],
) -> Result<PreparedWrite, ApiError> {
    {
        let count = host
            .partition_count(OFFSETS_TOPIC)
            .ok_or_else(|| ApiError::code(ResponseError::CoordinatorNotAvailable))?;
        let partition = records::partition_for(group_id, count);
        let now = now_ms();
        let batch: Vec<Record> = records
            .iter()
            .enumerate()
            .map(|(i, (k, v))| Record {
                transactional: false,
                control: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: i as i64,
                // kafka-protocol's encoder starts a new batch wherever `offset - sequence`
                // changes; number the records and reset the base sequence below.
                sequence: i as i32,
                timestamp: now,
                key: Some(k.clone()),
                value: v.clone(),
                headers: Default::default(),
                delete_horizon: false,
            })
            .collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            batch.iter(),
            &RecordEncodeOptions {
                version: 2,
                compression: Compression::None,
            },
        )
        .map_err(|e| ApiError::new(ResponseError::UnknownServerError, e.to_string()))?;
        mark_non_idempotent(&mut buf);
        let (log, leader_epoch) = host.offsets_log(partition)?;
        Ok(PreparedWrite {
            log,
            leader_epoch,
            batch: buf,
            now,
        })
    }
}

impl GroupCoordinator {
    /// Drives time until shutdown: session expiry, rebalance deadlines, offset expiry.
    pub async fn run(&self, host: &impl CoordinatorHost, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let retention_ms = host.offsets_retention_ms();
        let mut last_expiry = now_ms();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let now = now_ms();
            {
                let mut inner = self.lock();
                for id in Self::take_due(&mut inner, now) {
                    let Some(group) = inner.groups.get_mut(&id) else {
                        continue;
                    };
                    let replies = group.tick(now, &self.limits);
                    Self::after_change(&mut inner, &id);
                    Self::deliver(&mut inner, replies, 0);
                }
                // Kafka's offsets.retention.check.interval.ms default: every 10 minutes.
                if now - last_expiry >= 600_000 {
                    last_expiry = now;
                    Self::expire_offsets(&mut inner, now, retention_ms);
                }
            }
            self.flush_writes(host).await;
        }
    }

    /// Offsets of empty groups expire `offsets.retention.minutes` after the group emptied
    /// (Kafka 2.1+); a group left with nothing is removed.
    fn expire_offsets(inner: &mut Inner, now: i64, retention_ms: i64) {
        let expired: Vec<String> = inner
            .groups
            .values()
            .filter(|g| {
                g.state() == GroupState::Empty && now - g.state_timestamp_ms >= retention_ms
            })
            .map(|g| g.group_id.clone())
            .collect();
        for id in expired {
            let Some(group) = inner.groups.get(&id) else {
                continue;
            };
            let tombstones = group_tombstones(group);
            let keys = group.offsets.keys().cloned().collect();
            info!(group = %id, "expiring offsets of empty group");
            inner.writes.push_back(Write {
                group_id: id,
                records: tombstones,
                effect: Effect::Delete {
                    keys,
                    remove_group: true,
                },
                done: None,
            });
        }
    }
}

/// Tombstones deleting every committed offset of `group` and its metadata.
fn group_tombstones(group: &Group) -> Vec<(Bytes, Option<Bytes>)> {
    let offset_key = |(topic, partition): &(String, i32)| RecordKey::Offset {
        group: group.group_id.clone(),
        topic: topic.clone(),
        partition: *partition,
    };
    let mut tombstones: Vec<(Bytes, Option<Bytes>)> = group
        .offsets
        .keys()
        .map(|k| (offset_key(k).encode(), None))
        .collect();
    tombstones.push((
        RecordKey::Group {
            group: group.group_id.clone(),
        }
        .encode(),
        None,
    ));
    tombstones
}

/// Sets a single v2 batch's base sequence to -1 (no producer) and recomputes its CRC.
fn mark_non_idempotent(batch: &mut BytesMut) {
    const CRC: usize = 17;
    const ATTRIBUTES: usize = 21;
    const BASE_SEQUENCE: usize = 53;
    if batch.len() > BASE_SEQUENCE + 4 {
        batch[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&(-1i32).to_be_bytes());
        let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
        batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

fn replay(groups: &mut HashMap<String, Group>, key: Option<Bytes>, value: Option<Bytes>, now: i64) {
    let Some(key) = key else { return };
    let key = match RecordKey::decode(key) {
        Ok(Some(k)) => k,
        Ok(None) => return,
        Err(e) => {
            warn!(error = %e, "skipping __consumer_offsets record");
            return;
        }
    };
    match key {
        RecordKey::Offset {
            group,
            topic,
            partition,
        } => {
            let entry = groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(&group, now));
            match value.map(OffsetValue::decode) {
                Some(Ok(v)) => {
                    entry.offsets.insert(
                        (topic, partition),
                        CommittedOffset {
                            offset: v.offset,
                            leader_epoch: v.leader_epoch,
                            metadata: v.metadata,
                            commit_timestamp: v.commit_timestamp,
                        },
                    );
                }
                Some(Err(e)) => warn!(error = %e, "skipping __consumer_offsets record"),
                None => {
                    entry.offsets.remove(&(topic, partition));
                }
            }
        }
        RecordKey::Group { group } => match value.map(GroupValue::decode) {
            Some(Ok(v)) => {
                let offsets = groups.remove(&group).map(|g| g.offsets).unwrap_or_default();
                let mut restored = Group::restore(&group, &v, now);
                restored.offsets = offsets;
                groups.insert(group, restored);
            }
            Some(Err(e)) => warn!(error = %e, "skipping __consumer_offsets record"),
            None => {
                if let Some(g) = groups.get_mut(&group) {
                    if g.offsets.is_empty() {
                        g.mark_dead(now);
                    }
                }
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: GroupLimits = GroupLimits {
        min_session_timeout_ms: 6000,
        max_session_timeout_ms: 1_800_000,
        initial_rebalance_delay_ms: 0,
        max_size: 100,
    };

    /// A group with one member (joined without MEMBER_ID_REQUIRED) whose session is 10 s.
    fn group_with_member(id: &str, now: i64) -> Group {
        let mut g = Group::new(id, now);
        let request = JoinRequest {
            member_id: String::new(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::new())],
            require_known_member_id: false,
        };
        g.join(1, request, now, &LIMITS);
        g
    }

    /// A broker reduced to what the coordinator may use: one data topic and
    /// `__consumer_offsets` (created on first use) with real logs in a temporary directory.
    struct TestHost {
        dir: tempfile::TempDir,
        offsets: Mutex<Vec<Arc<Mutex<PartitionLog>>>>,
        creations: AtomicU64,
    }

    impl TestHost {
        const OFFSETS_PARTITIONS: i32 = 3;

        fn new() -> TestHost {
            TestHost {
                dir: tempfile::tempdir().unwrap(),
                offsets: Mutex::new(Vec::new()),
                creations: AtomicU64::new(0),
            }
        }
    }

    impl CoordinatorHost for TestHost {
        fn partition_count(&self, topic: &str) -> Option<i32> {
            match topic {
                "orders" => Some(2),
                OFFSETS_TOPIC => {
                    let created = !self.offsets.lock().unwrap().is_empty();
                    created.then_some(Self::OFFSETS_PARTITIONS)
                }
                _ => None,
            }
        }

        async fn ensure_offsets_topic(&self) -> Result<i32, ApiError> {
            let mut offsets = self.offsets.lock().unwrap();
            if offsets.is_empty() {
                self.creations.fetch_add(1, Ordering::Relaxed);
                for p in 0..Self::OFFSETS_PARTITIONS {
                    let tp = crate::log::TopicPartition::new(OFFSETS_TOPIC, p);
                    let dir = self.dir.path().join(format!("{OFFSETS_TOPIC}-{p}"));
                    let log = PartitionLog::open(&dir, tp, Default::default()).unwrap();
                    offsets.push(Arc::new(Mutex::new(log)));
                }
            }
            Ok(Self::OFFSETS_PARTITIONS)
        }

        fn offsets_log(&self, partition: i32) -> Result<(Arc<Mutex<PartitionLog>>, i32), ApiError> {
            let offsets = self.offsets.lock().unwrap();
            let log = usize::try_from(partition)
                .ok()
                .and_then(|p| offsets.get(p))
                .ok_or_else(|| ApiError::code(ResponseError::UnknownTopicOrPartition))?;
            Ok((log.clone(), 0))
        }

        fn offsets_retention_ms(&self) -> i64 {
            7 * 24 * 3_600_000
        }
    }

    fn commit_of(topic: &str, partition: i32, offset: i64) -> OffsetCommit {
        OffsetCommit {
            topic: topic.into(),
            partition,
            offset,
            leader_epoch: -1,
            metadata: None,
        }
    }

    /// Through the narrow host interface alone: the first group creates `__consumer_offsets`
    /// once, a commit lands in the group's partition log, and a coordinator started later
    /// over the same logs (a restart) serves the committed offset again.
    #[tokio::test]
    async fn committed_offsets_survive_a_coordinator_restart() {
        let host = TestHost::new();
        let first = GroupCoordinator::new(LIMITS);
        let partition = first.partition_for(&host, "payments").await.unwrap();
        assert_eq!(partition, records::partition_for("payments", 3));
        first.partition_for(&host, "payments").await.unwrap();
        assert_eq!(host.creations.load(Ordering::Relaxed), 1);

        let codes = first
            .commit(
                &host,
                "payments",
                "",
                None,
                -1,
                vec![commit_of("orders", 1, 42), commit_of("missing", 0, 7)],
            )
            .await;
        assert_eq!(
            codes,
            vec![0, ResponseError::UnknownTopicOrPartition.code()]
        );
        let (log, _) = host.offsets_log(partition).unwrap();
        assert_eq!(log.lock().unwrap().log_end_offset(), 1);

        let restarted = GroupCoordinator::new(LIMITS);
        restarted.load(&host);
        let fetched = restarted.fetch_offsets("payments", Some(vec![("orders".into(), 1)]));
        assert_eq!(fetched.len(), 1);
        assert_eq!(fetched[0].2.as_ref().map(|o| o.offset), Some(42));
    }

    /// The periodic tick visits only groups whose deadline has passed, not every group.
    #[test]
    fn only_groups_with_a_passed_deadline_are_due() {
        let c = GroupCoordinator::new(LIMITS);
        let mut inner = c.lock();
        for i in 0..1000i64 {
            let id = format!("g{i}");
            inner
                .groups
                .insert(id.clone(), group_with_member(&id, i * 100));
            GroupCoordinator::schedule(&mut inner, &id);
        }
        assert_eq!(inner.deadlines.len(), 1000);
        // Sessions end at 10 s + i * 100 ms: at 10.25 s, g0..g2 are due.
        let due = GroupCoordinator::take_due(&mut inner, 10_250);
        assert_eq!(due, vec!["g0", "g1", "g2"]);
        assert_eq!(inner.deadlines.len(), 997);
        assert!(GroupCoordinator::take_due(&mut inner, 10_250).is_empty());
        // A later deadline (a heartbeat) keeps the early entry; an earlier one replaces it.
        GroupCoordinator::schedule(&mut inner, "g10");
        assert_eq!(inner.scheduled["g10"], 11_000);
        assert_eq!(inner.deadlines.len(), 997);
    }
}
