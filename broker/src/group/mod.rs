//! The group coordinator: consumer group membership (the classic rebalance protocol) and
//! committed offsets, kept as records in the internal topic `__consumer_offsets`.
//!
//! [`state`] holds the pure state machine; this module is the thin layer around it: it
//! parks JoinGroup/SyncGroup requests until the state machine replies, writes offsets and
//! group metadata to the group's `__consumer_offsets` partition (chosen like Kafka, by the
//! group id's Java hash), replays that topic on start-up, and drives time (session expiry,
//! rebalance deadlines, offset expiry).

pub mod records;
pub mod state;

use std::collections::{BTreeMap, HashMap};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;
use std::time::Duration;

use bytes::{Buf, Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kafka_protocol::ResponseError;
use tokio::sync::{oneshot, watch};
use tracing::{info, warn};

use crate::api::ApiError;
use crate::broker::{now_ms, Broker, NewTopic};
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
}

impl GroupCoordinator {
    /// An empty coordinator; call [`GroupCoordinator::load`] before serving.
    pub fn new(limits: GroupLimits) -> GroupCoordinator {
        GroupCoordinator {
            inner: Mutex::new(Inner {
                groups: HashMap::new(),
                waiters: HashMap::new(),
            }),
            next_token: AtomicU64::new(1),
            limits,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Replays `__consumer_offsets` (if it exists) into memory: committed offsets and group
    /// metadata, later records winning and tombstones deleting.
    pub fn load(&self, broker: &Broker) {
        let image = broker.image();
        let Some(topic) = image.topic(OFFSETS_TOPIC) else {
            return;
        };
        let now = now_ms();
        let mut inner = self.lock();
        let mut records = 0usize;
        for partition in 0..topic.partitions.len() as i32 {
            let Ok((log, _)) = broker.leader_log(OFFSETS_TOPIC, partition) else {
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
        broker: &Broker,
        group: &str,
    ) -> Result<i32, ApiError> {
        let count = match broker.image().topic(OFFSETS_TOPIC) {
            Some(t) => t.partitions.len() as i32,
            None => {
                let config = broker.config();
                let rf = config.offsets_topic_replication_factor_for(broker.live_brokers().len());
                let new = NewTopic {
                    name: OFFSETS_TOPIC.to_string(),
                    num_partitions: config.offsets_topic_num_partitions,
                    replication_factor: rf,
                    assignments: BTreeMap::new(),
                    configs: BTreeMap::from([
                        ("cleanup.policy".to_string(), "compact".to_string()),
                        ("compression.type".to_string(), "producer".to_string()),
                        (
                            "segment.bytes".to_string(),
                            config.offsets_topic_segment_bytes.to_string(),
                        ),
                    ]),
                };
                match broker.create_topic(new, false).await {
                    Ok(t) => t.partitions.len() as i32,
                    Err(e) if e.code == ResponseError::TopicAlreadyExists.code() => broker
                        .image()
                        .topic(OFFSETS_TOPIC)
                        .map(|t| t.partitions.len() as i32)
                        .unwrap_or(1),
                    Err(e) => {
                        warn!(error = ?e.message, "cannot create __consumer_offsets");
                        return Err(ApiError::code(ResponseError::CoordinatorNotAvailable));
                    }
                }
            }
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
        broker: &Broker,
        group_id: &str,
        request: JoinRequest,
    ) -> JoinResponse {
        let member_id = request.member_id.clone();
        if let Err(e) = self.partition_for(broker, group_id).await {
            return JoinResponse {
                error_code: e.code,
                ..JoinResponse::error(ResponseError::CoordinatorNotAvailable, &member_id)
            };
        }
        let token = self.token();
        let (tx, rx) = oneshot::channel();
        {
            let mut inner = self.lock();
            let now = now_ms();
            let group = inner
                .groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id, now));
            let replies = group.join(token, request, now, &self.limits);
            let dirty = group.take_dirty().then(|| group.to_value());
            if let Some(value) = dirty {
                self.persist_group(broker, group_id, Some(value));
            }
            if let Some(Reply::Join(_, r)) = Self::deliver(&mut inner, replies, token) {
                return r;
            }
            inner.waiters.insert(token, Waiter::Join(tx));
        }
        rx.await
            .unwrap_or_else(|_| JoinResponse::error(ResponseError::UnknownServerError, &member_id))
    }

    /// SyncGroup: followers wait for the leader's assignment.
    pub async fn sync(
        &self,
        broker: &Broker,
        group_id: &str,
        request: SyncRequest,
    ) -> SyncResponse {
        let token = self.token();
        let (tx, rx) = oneshot::channel();
        {
            let mut inner = self.lock();
            let now = now_ms();
            let Some(group) = inner.groups.get_mut(group_id) else {
                return SyncResponse::error(ResponseError::UnknownMemberId);
            };
            let replies = group.sync(token, request, now, &self.limits);
            if let Some(value) = group.take_dirty().then(|| group.to_value()) {
                self.persist_group(broker, group_id, Some(value));
            }
            if let Some(Reply::Sync(_, r)) = Self::deliver(&mut inner, replies, token) {
                return r;
            }
            inner.waiters.insert(token, Waiter::Sync(tx));
        }
        rx.await
            .unwrap_or_else(|_| SyncResponse::error(ResponseError::UnknownServerError))
    }

    /// Heartbeat: returns the error code.
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
    pub fn leave(
        &self,
        broker: &Broker,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<i16>, i16> {
        let mut inner = self.lock();
        let Some(group) = inner.groups.get_mut(group_id) else {
            return Err(ResponseError::UnknownMemberId.code());
        };
        let (codes, replies) = group.leave(members, now_ms(), &self.limits);
        if let Some(value) = group.take_dirty().then(|| group.to_value()) {
            self.persist_group(broker, group_id, Some(value));
        }
        Self::deliver(&mut inner, replies, 0);
        Ok(codes)
    }

    /// OffsetCommit: one error code per partition (group-level failures repeat per partition).
    pub fn commit(
        &self,
        broker: &Broker,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
        commits: Vec<OffsetCommit>,
    ) -> Vec<i16> {
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
            return vec![code; commits.len()];
        }
        let image = broker.image();
        let mut codes = Vec::with_capacity(commits.len());
        let mut accepted = Vec::new();
        for c in commits {
            let known = image
                .topic(&c.topic)
                .is_some_and(|t| c.partition >= 0 && (c.partition as usize) < t.partitions.len());
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
            return codes;
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
        if let Err(e) = self.append(broker, group_id, &records) {
            // Nothing is acknowledged that was not written.
            let code = if e.code == ResponseError::UnknownTopicOrPartition.code() {
                ResponseError::CoordinatorNotAvailable.code()
            } else {
                e.code
            };
            return codes
                .into_iter()
                .map(|c| if c == 0 { code } else { c })
                .collect();
        }
        let group = inner
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, now));
        for c in accepted {
            group.offsets.insert(
                (c.topic, c.partition),
                CommittedOffset {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.unwrap_or_default(),
                    commit_timestamp: now,
                },
            );
        }
        codes
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
    pub fn delete_group(&self, broker: &Broker, group_id: &str) -> Result<(), ResponseError> {
        let mut inner = self.lock();
        let Some(group) = inner.groups.get(group_id) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        if group.state() != GroupState::Empty {
            return Err(ResponseError::NonEmptyGroup);
        }
        let tombstones = group_tombstones(group);
        self.append(broker, group_id, &tombstones).map_err(|e| {
            ResponseError::try_from_code(e.code).unwrap_or(ResponseError::UnknownServerError)
        })?;
        inner.groups.remove(group_id);
        info!(group = %group_id, "deleted consumer group");
        Ok(())
    }

    /// OffsetDelete: removes committed offsets of partitions the group does not subscribe to.
    pub fn delete_offsets(
        &self,
        broker: &Broker,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, ResponseError> {
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
        if !tombstones.is_empty() {
            self.append(broker, group_id, &tombstones).map_err(|e| {
                ResponseError::try_from_code(e.code).unwrap_or(ResponseError::UnknownServerError)
            })?;
            for ((t, p), code) in partitions.iter().zip(&codes) {
                if *code == 0 {
                    group.offsets.remove(&(t.clone(), *p));
                }
            }
        }
        Ok(codes)
    }

    fn persist_group(&self, broker: &Broker, group_id: &str, value: Option<GroupValue>) {
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
        if let Err(e) = self.append(broker, group_id, &[record]) {
            // Membership is soft state: members rejoin if it is lost. Offsets are not written here.
            warn!(group = %group_id, error = ?e.message, "could not persist group metadata");
        }
    }

    fn append(
        &self,
        broker: &Broker,
        group_id: &str,
        records: &[(Bytes, Option<Bytes>)],
    ) -> Result<(), ApiError> {
        let count = broker
            .image()
            .topic(OFFSETS_TOPIC)
            .map(|t| t.partitions.len() as i32)
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
        let (log, state) = broker.leader_log(OFFSETS_TOPIC, partition)?;
        let mut guard = log.lock().unwrap_or_else(|p| p.into_inner());
        guard.append(&buf, state.leader_epoch, now)?;
        if guard.flush_due_by_messages() {
            drop(guard);
            flush_in_background(log);
        }
        Ok(())
    }

    /// Drives time until shutdown: session expiry, rebalance deadlines, offset expiry.
    pub async fn run(&self, broker: &Broker, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let retention_ms = i64::from(broker.config().offsets_retention_minutes) * 60_000;
        let mut last_expiry = now_ms();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = shutdown.changed() => return,
            }
            let now = now_ms();
            let mut inner = self.lock();
            let ids: Vec<String> = inner.groups.keys().cloned().collect();
            for id in ids {
                let Some(group) = inner.groups.get_mut(&id) else {
                    continue;
                };
                let replies = group.tick(now, &self.limits);
                if let Some(value) = group.take_dirty().then(|| group.to_value()) {
                    self.persist_group(broker, &id, Some(value));
                }
                Self::deliver(&mut inner, replies, 0);
            }
            // Kafka's offsets.retention.check.interval.ms default: every 10 minutes.
            if now - last_expiry >= 600_000 {
                last_expiry = now;
                self.expire_offsets(broker, &mut inner, now, retention_ms);
            }
        }
    }

    /// Offsets of empty groups expire `offsets.retention.minutes` after the group emptied
    /// (Kafka 2.1+); a group left with nothing is removed.
    fn expire_offsets(&self, broker: &Broker, inner: &mut Inner, now: i64, retention_ms: i64) {
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
            if self.append(broker, &id, &tombstones).is_ok() {
                info!(group = %id, "expired offsets of empty group");
                inner.groups.remove(&id);
            }
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

/// Flushes an `__consumer_offsets` log that reached `flush.messages`. The coordinator appends
/// under its group lock on an async worker, so the fsync goes to the blocking pool instead of
/// holding every group's requests behind it; unlike Kafka, the write is acknowledged before
/// that fsync completes. Outside a runtime (tests) it flushes in place.
fn flush_in_background(log: std::sync::Arc<std::sync::Mutex<crate::log::PartitionLog>>) {
    let flush = move || {
        let mut log = log.lock().unwrap_or_else(|p| p.into_inner());
        if let Err(e) = log.flush() {
            warn!(partition = %log.topic_partition(), error = %e, "flushing __consumer_offsets failed");
        }
    };
    match tokio::runtime::Handle::try_current() {
        Ok(runtime) => {
            runtime.spawn_blocking(flush);
        }
        Err(_) => flush(),
    }
}
