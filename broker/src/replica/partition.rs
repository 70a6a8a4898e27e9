//! [`Partition`]: one hosted partition — its log, its role (leader or follower) from the
//! committed [`PartitionState`], the leader's view of its followers, the high watermark, and
//! the per-partition signals that delayed fetches and delayed (acks=all) produces wait on.
//!
//! Decisions are the pure functions of [`super::isr`]; this file applies them under the
//! partition's lock. Nothing here does network I/O: an ISR change the leader decides is
//! returned as an [`AlterPartitionRequest`] for the caller to send, and its outcome comes
//! back through [`Partition::on_alter_partition_result`].
//!
//! Lock order: the replication state, then the log. Readers of the log alone (consumer
//! reads, the cleaner, the group coordinator) take only the log's lock.

use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::sync::{watch, Notify};
use uuid::Uuid;

use super::isr::{self, AcksAll, FollowerState, HwFollower};
use super::{AlterPartitionError, AlterPartitionRequest, ReplicaError};
use crate::log::{AppendInfo, EndTxnMarker, LogSlice, PartitionLog};
use crate::metadata::PartitionState;

/// Kafka's default `replica.lag.time.max.ms`.
pub const DEFAULT_REPLICA_LAG_TIME_MAX_MS: i64 = 30_000;

/// What delayed produces wait on: published by the partition whenever its high watermark,
/// role or ISR changes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Progress {
    /// The high watermark.
    pub high_watermark: i64,
    /// The leader epoch while this broker leads the partition; `None` otherwise.
    pub leader_epoch: Option<i32>,
    /// Size of the maximal ISR (committed ISR plus members of a change in flight).
    pub maximal_isr_size: usize,
}

/// Which fetches a waiter belongs to: a follower's fetch waits for appends (it reads up to
/// the log end offset), a consumer's for the high watermark (it reads below it).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchWaitKind {
    /// A consumer (replica id -1): woken by high watermark advances.
    Consumer,
    /// A follower replica: woken by appends to the leader's log.
    Follower,
}

#[derive(Debug)]
enum Role {
    /// No committed state applied yet (a log loaded before metadata named its role).
    Unassigned,
    Leader(Leadership),
    Follower(Followership),
}

/// The leader's replication state (Kafka's `PartitionState` + remote replica states).
#[derive(Debug)]
struct Leadership {
    local_id: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    replicas: Vec<i32>,
    isr: Vec<i32>,
    /// The ISR proposed by an AlterPartition in flight (one at a time, as Kafka).
    pending_isr: Option<Vec<i32>>,
    /// The log end offset when this epoch began: a follower must reach it to join the ISR.
    leader_epoch_start_offset: i64,
    followers: BTreeMap<i32, FollowerState>,
}

impl Leadership {
    /// The committed ISR plus the members of a change in flight: the high watermark and
    /// acks=all wait for all of them, so a record is never acknowledged on an ISR that the
    /// controller may not have agreed to (Kafka's `maximalIsr`).
    fn maximal_isr(&self) -> Vec<i32> {
        let mut m = self.isr.clone();
        for id in self.pending_isr.iter().flatten() {
            if !m.contains(id) {
                m.push(*id);
            }
        }
        m
    }
}

#[derive(Debug)]
struct Followership {
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
}

#[derive(Debug)]
struct Replication {
    role: Role,
    /// Replicas that may not join the ISR now (fenced or in controlled shutdown).
    ineligible: BTreeSet<i32>,
}

#[derive(Debug, Default)]
struct Waiters {
    next_id: u64,
    by_id: HashMap<u64, (FetchWaitKind, Arc<Notify>)>,
}

/// The result of a fetch a follower sent to this leader.
#[derive(Debug)]
pub struct FollowerFetch {
    /// Batches from the fetch offset up to the leader's log end offset (not the high
    /// watermark), within the byte limit.
    pub slice: LogSlice,
    /// An ISR expansion the fetch made possible, for the caller to send.
    pub alter_partition: Option<AlterPartitionRequest>,
}

/// One hosted partition. See the module documentation.
#[derive(Debug)]
pub struct Partition {
    log: Arc<Mutex<PartitionLog>>,
    replica_lag_time_max_ms: i64,
    replication: Mutex<Replication>,
    progress: watch::Sender<Progress>,
    waiters: Mutex<Waiters>,
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|p| p.into_inner())
}

impl Partition {
    /// Wraps a partition log, with Kafka's default `replica.lag.time.max.ms`. The partition
    /// has no role until [`Self::become_leader`] or [`Self::become_follower`].
    pub fn new(log: Arc<Mutex<PartitionLog>>) -> Self {
        Self::with_lag_time(log, DEFAULT_REPLICA_LAG_TIME_MAX_MS)
    }

    /// Wraps a partition log; followers that have not caught up for
    /// `replica_lag_time_max_ms` leave the ISR.
    pub fn with_lag_time(log: Arc<Mutex<PartitionLog>>, replica_lag_time_max_ms: i64) -> Self {
        let hw = lock(&log).high_watermark();
        let (progress, _) = watch::channel(Progress {
            high_watermark: hw,
            leader_epoch: None,
            maximal_isr_size: 0,
        });
        Partition {
            log,
            replica_lag_time_max_ms,
            replication: Mutex::new(Replication {
                role: Role::Unassigned,
                ineligible: BTreeSet::new(),
            }),
            progress,
            waiters: Mutex::new(Waiters::default()),
        }
    }

    /// The partition's log.
    pub fn log(&self) -> &Arc<Mutex<PartitionLog>> {
        &self.log
    }

    /// The high watermark.
    pub fn high_watermark(&self) -> i64 {
        lock(&self.log).high_watermark()
    }

    /// The log end offset.
    pub fn log_end_offset(&self) -> i64 {
        lock(&self.log).log_end_offset()
    }

    /// True while this broker leads the partition.
    pub fn is_leader(&self) -> bool {
        matches!(lock(&self.replication).role, Role::Leader(_))
    }

    /// The leader epoch of the applied state, as leader or follower; `None` before any.
    pub fn leader_epoch(&self) -> Option<i32> {
        match &lock(&self.replication).role {
            Role::Unassigned => None,
            Role::Leader(l) => Some(l.leader_epoch),
            Role::Follower(f) => Some(f.leader_epoch),
        }
    }

    /// The leader this follower replicates from; `None` when leading or unassigned.
    pub fn follower_of(&self) -> Option<i32> {
        match &lock(&self.replication).role {
            Role::Follower(f) => Some(f.leader),
            _ => None,
        }
    }

    /// The committed ISR while leading (`None` otherwise).
    pub fn isr(&self) -> Option<Vec<i32>> {
        match &lock(&self.replication).role {
            Role::Leader(l) => Some(l.isr.clone()),
            _ => None,
        }
    }

    /// The leader's view of follower `id` (`None` when not leading or not a replica).
    pub fn follower_state(&self, id: i32) -> Option<FollowerState> {
        match &lock(&self.replication).role {
            Role::Leader(l) => l.followers.get(&id).copied(),
            _ => None,
        }
    }

    /// A receiver of this partition's [`Progress`]: what delayed produces wait on.
    pub fn progress(&self) -> watch::Receiver<Progress> {
        self.progress.subscribe()
    }

    /// Replicas that may not join the ISR (fenced or in controlled shutdown), from the
    /// broker registrations in the metadata image.
    pub fn set_ineligible_replicas(&self, ineligible: BTreeSet<i32>) {
        lock(&self.replication).ineligible = ineligible;
    }

    /// Makes this broker (`state.leader`) the leader in the committed `state` (Kafka's
    /// `makeLeader`). A new leader epoch records its start offset (the log end offset) in
    /// the leader epoch cache and resets the view of every follower: ISR members count as
    /// caught up now, offsets are unknown until they fetch. The same epoch with a newer
    /// partition epoch (an ISR change committed) keeps the views. A state older than the
    /// applied one is ignored. Returns true if the leader epoch is new.
    pub fn become_leader(&self, state: &PartitionState, now_ms: i64) -> Result<bool, ReplicaError> {
        let mut rep = lock(&self.replication);
        let (same_epoch, old_followers) = match &mut rep.role {
            Role::Leader(l) => {
                if (state.leader_epoch, state.partition_epoch)
                    <= (l.leader_epoch, l.partition_epoch)
                {
                    return Ok(false);
                }
                (
                    l.leader_epoch == state.leader_epoch,
                    std::mem::take(&mut l.followers),
                )
            }
            Role::Follower(f)
                if (state.leader_epoch, state.partition_epoch)
                    < (f.leader_epoch, f.partition_epoch) =>
            {
                return Ok(false);
            }
            _ => (false, BTreeMap::new()),
        };
        let mut log = lock(&self.log);
        let leo = log.log_end_offset();
        let start = match &rep.role {
            Role::Leader(l) if same_epoch => l.leader_epoch_start_offset,
            _ => {
                log.assign_epoch_start_offset(state.leader_epoch, leo)?;
                leo
            }
        };
        let followers = state
            .replicas
            .iter()
            .copied()
            .filter(|&id| id != state.leader)
            .map(|id| {
                let view = match old_followers.get(&id) {
                    Some(v) if same_epoch => *v,
                    _ => FollowerState::new_leader_epoch(now_ms, state.isr.contains(&id)),
                };
                (id, view)
            })
            .collect();
        let leadership = Leadership {
            local_id: state.leader,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
            replicas: state.replicas.clone(),
            isr: state.isr.clone(),
            pending_isr: None,
            leader_epoch_start_offset: start,
            followers,
        };
        tracing::info!(tp = %log.topic_partition(), leader_epoch = state.leader_epoch, partition_epoch = state.partition_epoch, isr = ?state.isr, start_offset = start, "leading partition");
        rep.role = Role::Leader(leadership);
        let advanced = self.maybe_increment_hw(&rep, &mut log, now_ms);
        drop(log);
        self.publish(&rep);
        drop(rep);
        if advanced {
            self.wake(FetchWaitKind::Consumer);
        }
        Ok(!same_epoch)
    }

    /// Makes this broker a follower of `state.leader` in the committed `state` (Kafka's
    /// `makeFollower`). Delayed produces waiting on this partition as leader complete with
    /// NOT_LEADER_OR_FOLLOWER, and waiting fetches wake so they answer now. A state older
    /// than the applied one is ignored. Returns true if the leader or the leader epoch
    /// changed: the follower must then truncate (OffsetForLeaderEpoch) before fetching.
    pub fn become_follower(&self, state: &PartitionState) -> bool {
        let mut rep = lock(&self.replication);
        let changed = match &rep.role {
            Role::Follower(f) => {
                if (state.leader_epoch, state.partition_epoch) < (f.leader_epoch, f.partition_epoch)
                {
                    return false;
                }
                f.leader != state.leader || f.leader_epoch != state.leader_epoch
            }
            Role::Leader(l) => {
                if state.leader_epoch < l.leader_epoch {
                    return false;
                }
                true
            }
            Role::Unassigned => true,
        };
        rep.role = Role::Follower(Followership {
            leader: state.leader,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
        });
        if changed {
            tracing::info!(tp = %lock(&self.log).topic_partition(), leader = state.leader, leader_epoch = state.leader_epoch, "following partition");
        }
        self.publish(&rep);
        drop(rep);
        self.wake(FetchWaitKind::Consumer);
        self.wake(FetchWaitKind::Follower);
        changed
    }

    /// Applies `state` as leader or follower depending on whether `local_id` leads it, if
    /// it is newer than what is applied (a no-op otherwise, so it can run on every
    /// request). Returns whether the role or leader epoch changed.
    pub fn apply_state(
        &self,
        state: &PartitionState,
        local_id: i32,
        now_ms: i64,
    ) -> Result<bool, ReplicaError> {
        if state.leader == local_id {
            self.become_leader(state, now_ms)
        } else {
            Ok(self.become_follower(state))
        }
    }

    /// Appends a producer's batches as leader (Kafka's `appendRecordsToLeader`). With
    /// `required_acks == -1` it first refuses with NOT_ENOUGH_REPLICAS when the ISR is
    /// smaller than `min_insync_replicas`. Returns the append and the leader epoch it was
    /// stamped with (what [`Self::wait_for_acks_all`] waits on). The high watermark advances
    /// at once when the ISR is this broker alone.
    pub fn append_records_to_leader(
        &self,
        records: &[u8],
        required_acks: i16,
        min_insync_replicas: i32,
        now_ms: i64,
    ) -> Result<(AppendInfo, i32), ReplicaError> {
        self.append_records_to_leader_from(
            records,
            required_acks,
            min_insync_replicas,
            now_ms,
            crate::log::AppendOrigin::Client,
        )
    }

    /// [`Self::append_records_to_leader`] for records from `origin` (a coordinator's
    /// transactional offset commits carry no sequence).
    pub fn append_records_to_leader_from(
        &self,
        records: &[u8],
        required_acks: i16,
        min_insync_replicas: i32,
        now_ms: i64,
        origin: crate::log::AppendOrigin,
    ) -> Result<(AppendInfo, i32), ReplicaError> {
        let rep = lock(&self.replication);
        let Role::Leader(l) = &rep.role else {
            return Err(ReplicaError::NotLeaderOrFollower);
        };
        if required_acks == -1 && (l.isr.len() as i64) < i64::from(min_insync_replicas) {
            return Err(ReplicaError::NotEnoughReplicas {
                isr: l.isr.clone(),
                min_insync_replicas,
            });
        }
        let leader_epoch = l.leader_epoch;
        let mut log = lock(&self.log);
        let info = log.append_as_leader_from(records, leader_epoch, now_ms, origin)?;
        if info.duplicate {
            return Ok((info, leader_epoch));
        }
        self.after_leader_append(rep, log, now_ms);
        Ok((info, leader_epoch))
    }

    /// Appends the control batch ending a producer's transaction as leader (what a
    /// WriteTxnMarkers request asks of each partition leader; see
    /// [`PartitionLog::append_txn_marker`] for the checks). Returns the append and the
    /// leader epoch it was stamped with; the high watermark advances at once when the ISR is
    /// this broker alone, as for produced records.
    pub fn append_txn_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: EndTxnMarker,
        now_ms: i64,
    ) -> Result<(AppendInfo, i32), ReplicaError> {
        let rep = lock(&self.replication);
        let Role::Leader(l) = &rep.role else {
            return Err(ReplicaError::NotLeaderOrFollower);
        };
        let leader_epoch = l.leader_epoch;
        let mut log = lock(&self.log);
        let info =
            log.append_txn_marker(producer_id, producer_epoch, marker, leader_epoch, now_ms)?;
        self.after_leader_append(rep, log, now_ms);
        Ok((info, leader_epoch))
    }

    /// What follows every append as leader: the high watermark advances if the ISR allows
    /// (this broker alone), is published, and the fetches waiting for new data are woken
    /// (followers always, consumers when the high watermark moved). The locks are released
    /// before waking, so a woken fetch does not contend for them.
    fn after_leader_append(
        &self,
        rep: MutexGuard<'_, Replication>,
        mut log: MutexGuard<'_, PartitionLog>,
        now_ms: i64,
    ) {
        let advanced = self.maybe_increment_hw(&rep, &mut log, now_ms);
        drop(log);
        if advanced {
            self.publish(&rep);
        }
        drop(rep);
        self.wake(FetchWaitKind::Follower);
        if advanced {
            self.wake(FetchWaitKind::Consumer);
        }
    }

    /// Waits until an acks=all append stamped with `leader_epoch` and ending before
    /// `required_offset` is replicated to the ISR (the high watermark reached it), as
    /// Kafka's delayed produce: `Ok` then, NOT_ENOUGH_REPLICAS_AFTER_APPEND if the ISR is
    /// below `min_insync_replicas` by then, NOT_LEADER_OR_FOLLOWER as soon as this broker
    /// is no longer the leader in that epoch (a deposed leader never acknowledges),
    /// REQUEST_TIMED_OUT at `deadline`.
    pub async fn wait_for_acks_all(
        &self,
        leader_epoch: i32,
        required_offset: i64,
        min_insync_replicas: i32,
        deadline: tokio::time::Instant,
    ) -> Result<(), ReplicaError> {
        let mut rx = self.progress.subscribe();
        let check = |p: &Progress| -> Option<Result<(), ReplicaError>> {
            if p.leader_epoch != Some(leader_epoch) {
                return Some(Err(ReplicaError::NotLeaderOrFollower));
            }
            match isr::acks_all(
                p.high_watermark,
                required_offset,
                p.maximal_isr_size,
                min_insync_replicas,
            ) {
                AcksAll::Wait => None,
                AcksAll::Done => Some(Ok(())),
                AcksAll::NotEnoughReplicasAfterAppend => {
                    Some(Err(ReplicaError::NotEnoughReplicasAfterAppend {
                        isr_size: p.maximal_isr_size,
                        min_insync_replicas,
                    }))
                }
            }
        };
        let outcome = tokio::time::timeout_at(deadline, async {
            loop {
                if let Some(done) = check(&rx.borrow_and_update()) {
                    return done;
                }
                if rx.changed().await.is_err() {
                    // The partition is gone (topic deleted).
                    return Err(ReplicaError::NotLeaderOrFollower);
                }
            }
        })
        .await;
        outcome.unwrap_or(Err(ReplicaError::RequestTimedOut))
    }

    /// Checks a fetch's `current_leader_epoch` against the applied one (Kafka's rules: -1
    /// skips the check; older is FENCED_LEADER_EPOCH; newer is UNKNOWN_LEADER_EPOCH, this
    /// broker has not learnt it yet).
    pub fn check_current_leader_epoch(
        &self,
        current_leader_epoch: i32,
    ) -> Result<(), ReplicaError> {
        if current_leader_epoch < 0 {
            return Ok(());
        }
        let Some(epoch) = self.leader_epoch() else {
            return Err(ReplicaError::NotLeaderOrFollower);
        };
        if current_leader_epoch < epoch {
            Err(ReplicaError::FencedLeaderEpoch)
        } else if current_leader_epoch > epoch {
            Err(ReplicaError::UnknownLeaderEpoch)
        } else {
            Ok(())
        }
    }

    /// Serves a follower's fetch as leader (Kafka's `fetchRecords` for a follower plus
    /// `updateFollowerFetchState`): the fetch offset is the follower's log end offset, so
    /// the leader updates its view of `replica_id`, advances the high watermark (completing
    /// delayed produces, waking consumers) and may decide to add the follower to the ISR;
    /// then reads from the fetch offset up to the log end offset. Refused with
    /// NOT_LEADER_OR_FOLLOWER when not leading or `replica_id` holds no replica, and with
    /// the leader epoch errors of [`Self::check_current_leader_epoch`].
    #[allow(clippy::too_many_arguments)]
    pub fn fetch_for_follower(
        &self,
        replica_id: i32,
        broker_epoch: i64,
        fetch_offset: i64,
        follower_log_start_offset: i64,
        current_leader_epoch: i32,
        max_bytes: usize,
        min_one_batch: bool,
        now_ms: i64,
    ) -> Result<FollowerFetch, ReplicaError> {
        let mut rep = lock(&self.replication);
        let Role::Leader(l) = &mut rep.role else {
            return Err(ReplicaError::NotLeaderOrFollower);
        };
        if current_leader_epoch >= 0 {
            if current_leader_epoch < l.leader_epoch {
                return Err(ReplicaError::FencedLeaderEpoch);
            }
            if current_leader_epoch > l.leader_epoch {
                return Err(ReplicaError::UnknownLeaderEpoch);
            }
        }
        if !l.followers.contains_key(&replica_id) {
            return Err(ReplicaError::NotLeaderOrFollower);
        }
        let mut log = lock(&self.log);
        // Read first: an offset out of range must not move the follower's view.
        let leo = log.log_end_offset();
        let slice = log.read_regions(fetch_offset, max_bytes, leo, min_one_batch)?;
        if let Some(view) = l.followers.get_mut(&replica_id) {
            *view = view.after_fetch(
                fetch_offset,
                follower_log_start_offset,
                leo,
                broker_epoch,
                now_ms,
            );
        }
        let advanced = self.maybe_increment_hw(&rep, &mut log, now_ms);
        let hw = log.high_watermark();
        drop(log);
        let alter = self.maybe_expand_isr(&mut rep, replica_id, hw);
        if advanced || alter.is_some() {
            self.publish(&rep);
        }
        drop(rep);
        if advanced {
            self.wake(FetchWaitKind::Consumer);
        }
        let slice = LogSlice {
            high_watermark: hw,
            ..slice
        };
        Ok(FollowerFetch {
            slice,
            alter_partition: alter,
        })
    }

    /// Kafka's `maybeShrinkIsr`, run periodically: drops the ISR members that have not
    /// caught up within `replica.lag.time.max.ms` at `now_ms`. Returns the AlterPartition to
    /// send (none while another change is in flight, or when all are in sync). The high
    /// watermark may advance once the shrink is committed, not before.
    pub fn maybe_shrink_isr(&self, now_ms: i64) -> Option<AlterPartitionRequest> {
        let mut rep = lock(&self.replication);
        let leo = lock(&self.log).log_end_offset();
        let Role::Leader(l) = &mut rep.role else {
            return None;
        };
        if l.pending_isr.is_some() {
            return None;
        }
        let out = isr::out_of_sync_replicas(
            l.local_id,
            &l.isr,
            |id| l.followers.get(&id).copied(),
            leo,
            now_ms,
            self.replica_lag_time_max_ms,
        );
        if out.is_empty() {
            return None;
        }
        let new_isr: Vec<i32> = l
            .isr
            .iter()
            .copied()
            .filter(|id| !out.contains(id))
            .collect();
        tracing::info!(isr = ?l.isr, ?new_isr, out_of_sync = ?out, leo, "shrinking ISR");
        crate::metrics::metrics().isr_shrunk();
        l.pending_isr = Some(new_isr.clone());
        let request = self.alter_request(l, new_isr);
        self.publish(&rep);
        Some(request)
    }

    /// Kafka's `maybeExpandIsr` after a fetch by `replica_id`.
    fn maybe_expand_isr(
        &self,
        rep: &mut Replication,
        replica_id: i32,
        hw: i64,
    ) -> Option<AlterPartitionRequest> {
        let eligible = !rep.ineligible.contains(&replica_id);
        let Role::Leader(l) = &mut rep.role else {
            return None;
        };
        if l.pending_isr.is_some() || l.isr.contains(&replica_id) || !eligible {
            return None;
        }
        let view = l.followers.get(&replica_id)?;
        if !isr::may_join_isr(view, hw, l.leader_epoch_start_offset) {
            return None;
        }
        let mut new_isr = l.isr.clone();
        new_isr.push(replica_id);
        tracing::info!(isr = ?l.isr, ?new_isr, replica_id, "expanding ISR");
        crate::metrics::metrics().isr_expanded();
        l.pending_isr = Some(new_isr.clone());
        Some(self.alter_request(l, new_isr))
    }

    fn alter_request(&self, l: &Leadership, new_isr: Vec<i32>) -> AlterPartitionRequest {
        let log = lock(&self.log);
        let tp = log.topic_partition();
        AlterPartitionRequest {
            topic: tp.topic.clone(),
            topic_id: log.topic_id().unwrap_or(Uuid::nil()),
            partition: tp.partition,
            leader_id: l.local_id,
            leader_epoch: l.leader_epoch,
            partition_epoch: l.partition_epoch,
            new_isr,
        }
    }

    /// The outcome of an AlterPartition this partition sent: a committed state in the same
    /// leader epoch is applied (its ISR and partition epoch; the high watermark may
    /// advance); a refusal or failure clears the change in flight, so the next check
    /// proposes again (Kafka waits for metadata after INVALID_UPDATE_VERSION and
    /// FENCED_LEADER_EPOCH; the committed state reaches [`Self::become_leader`] then).
    pub fn on_alter_partition_result(
        &self,
        request: &AlterPartitionRequest,
        result: Result<PartitionState, AlterPartitionError>,
        now_ms: i64,
    ) {
        let mut rep = lock(&self.replication);
        let Role::Leader(l) = &mut rep.role else {
            return;
        };
        if l.leader_epoch != request.leader_epoch
            || l.pending_isr.as_ref() != Some(&request.new_isr)
        {
            return;
        }
        l.pending_isr = None;
        match result {
            Ok(state)
                if state.leader_epoch == l.leader_epoch
                    && state.partition_epoch > l.partition_epoch =>
            {
                l.isr = state.isr.clone();
                l.partition_epoch = state.partition_epoch;
                l.replicas = state.replicas.clone();
            }
            Ok(_) => {}
            Err(e) => {
                tracing::warn!(topic = %request.topic, partition = request.partition, error = %e, "AlterPartition failed");
            }
        }
        let mut log = lock(&self.log);
        let advanced = self.maybe_increment_hw(&rep, &mut log, now_ms);
        drop(log);
        self.publish(&rep);
        drop(rep);
        if advanced {
            self.wake(FetchWaitKind::Consumer);
        }
    }

    /// Appends batches fetched from the leader (see [`PartitionLog::append_as_follower`]) and
    /// sets the high watermark to `min(leader_high_watermark, log end offset)` if that is
    /// higher (Kafka's follower never moves it back, except by truncation). Refused with
    /// NOT_LEADER_OR_FOLLOWER unless following.
    pub fn append_as_follower(
        &self,
        records: &[u8],
        leader_high_watermark: i64,
        now_ms: i64,
    ) -> Result<AppendInfo, ReplicaError> {
        let rep = lock(&self.replication);
        if !matches!(rep.role, Role::Follower(_)) {
            return Err(ReplicaError::NotLeaderOrFollower);
        }
        let mut log = lock(&self.log);
        let info = if records.is_empty() {
            None
        } else {
            Some(log.append_as_follower(records, now_ms)?)
        };
        let hw = leader_high_watermark.min(log.log_end_offset());
        let advanced = hw > log.high_watermark();
        if advanced {
            log.set_high_watermark(hw);
        }
        let log_start_offset = log.log_start_offset();
        drop(log);
        if advanced {
            self.publish(&rep);
        }
        drop(rep);
        if advanced {
            self.wake(FetchWaitKind::Consumer);
        }
        Ok(info.unwrap_or(AppendInfo {
            base_offset: -1,
            last_offset: -1,
            log_append_time: -1,
            log_start_offset,
            duplicate: false,
        }))
    }

    /// Truncates a follower's divergent tail so the log ends at `offset` (see
    /// [`PartitionLog::truncate_to`]); the high watermark follows it down if above.
    pub fn truncate_to(&self, offset: i64) -> Result<(), ReplicaError> {
        let rep = lock(&self.replication);
        lock(&self.log).truncate_to(offset)?;
        self.publish(&rep);
        Ok(())
    }

    /// Empties a follower's log and restarts it at `offset` (the leader's log start offset,
    /// after OFFSET_OUT_OF_RANGE below it).
    pub fn truncate_fully_and_start_at(&self, offset: i64) -> Result<(), ReplicaError> {
        let rep = lock(&self.replication);
        lock(&self.log).truncate_fully_and_start_at(offset)?;
        self.publish(&rep);
        Ok(())
    }

    /// Kafka's `maybeIncrementLeaderHW`: applies [`isr::advanced_high_watermark`] to the
    /// log. Returns whether the high watermark moved.
    fn maybe_increment_hw(&self, rep: &Replication, log: &mut PartitionLog, now_ms: i64) -> bool {
        let Role::Leader(l) = &rep.role else {
            return false;
        };
        let maximal = l.maximal_isr();
        let followers = l.followers.iter().map(|(id, state)| HwFollower {
            state: *state,
            in_maximal_isr: maximal.contains(id),
            isr_eligible: !rep.ineligible.contains(id),
        });
        match isr::advanced_high_watermark(
            log.high_watermark(),
            log.log_end_offset(),
            followers,
            now_ms,
            self.replica_lag_time_max_ms,
        ) {
            Some(hw) => {
                log.set_high_watermark(hw);
                true
            }
            None => false,
        }
    }

    /// Publishes the current [`Progress`] to waiting produces (only if it changed).
    fn publish(&self, rep: &Replication) {
        let hw = lock(&self.log).high_watermark();
        let now = match &rep.role {
            Role::Leader(l) => Progress {
                high_watermark: hw,
                leader_epoch: Some(l.leader_epoch),
                maximal_isr_size: l.maximal_isr().len(),
            },
            _ => Progress {
                high_watermark: hw,
                leader_epoch: None,
                maximal_isr_size: 0,
            },
        };
        self.progress.send_if_modified(|p| {
            let changed = *p != now;
            *p = now;
            changed
        });
    }

    /// Stops serving the partition: it left this broker (its topic was deleted, or a
    /// reassignment moved the replica away). Delayed acks=all produces complete with
    /// NOT_LEADER_OR_FOLLOWER at once rather than at their request timeout, so clients retry
    /// at the new leader instead of waiting on a replica that no longer exists.
    pub fn resign(&self) {
        let mut rep = lock(&self.replication);
        rep.role = Role::Unassigned;
        self.publish(&rep);
    }

    /// Wakes the fetches of `kind` waiting on this partition. A fetch that is not waiting
    /// yet keeps the wake-up (`Notify` stores a permit), so a wake-up between its read and
    /// its wait is not lost.
    pub fn wake(&self, kind: FetchWaitKind) {
        let waiters = lock(&self.waiters);
        for (k, waker) in waiters.by_id.values() {
            if *k == kind {
                waker.notify_one();
            }
        }
    }

    /// Wakes every fetch waiting on this partition (the partition is going away).
    pub fn wake_fetches(&self) {
        let waiters = lock(&self.waiters);
        for (_, waker) in waiters.by_id.values() {
            waker.notify_one();
        }
    }

    /// Number of fetches waiting on this partition (diagnostics and tests).
    pub fn waiting_fetches(&self) -> usize {
        lock(&self.waiters).by_id.len()
    }

    /// Registers `waker` to be notified by wake-ups of `kind` until the returned guard is
    /// dropped.
    pub fn watch(self: &Arc<Self>, kind: FetchWaitKind, waker: &Arc<Notify>) -> FetchWatch {
        let mut waiters = lock(&self.waiters);
        let id = waiters.next_id;
        waiters.next_id += 1;
        waiters.by_id.insert(id, (kind, waker.clone()));
        FetchWatch {
            partition: self.clone(),
            id,
        }
    }
}

/// A fetch's registration with one partition; dropping it unregisters.
#[derive(Debug)]
pub struct FetchWatch {
    partition: Arc<Partition>,
    id: u64,
}

impl Drop for FetchWatch {
    fn drop(&mut self) {
        lock(&self.partition.waiters).by_id.remove(&self.id);
    }
}
