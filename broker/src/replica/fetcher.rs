//! The follower side: a [`ReplicaFetcher`] per leader broker replicates the partitions this
//! broker follows from that leader, with Kafka's own requests — OffsetForLeaderEpoch to find
//! where a divergent tail starts, then Fetch with this broker's replica id and broker epoch
//! — sent through a [`LeaderConnection`] (a TCP connection to the leader's inter-broker
//! listener in the broker, a leader [`Partition`] in-process in tests).
//!
//! Each round first truncates the partitions that start a new leader epoch (Kafka's
//! `maybeTruncate` with OffsetForLeaderEpoch, or to the high watermark when the log knows no
//! epoch), then fetches all the others in one request and appends what comes back with the
//! leader's offsets and epochs. Errors are Kafka's follower reactions: OFFSET_OUT_OF_RANGE
//! restarts at the leader's log start (or truncates again), FENCED_LEADER_EPOCH stops the
//! partition until new metadata re-adds it, NOT_LEADER_OR_FOLLOWER and the like back off.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic, ReplicaState};
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    BrokerId, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use kafka_protocol::ResponseError;
use tokio::sync::Notify;
use uuid::Uuid;

use super::{Partition, ReplicaError};
use crate::log::{TopicPartition, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
use crate::metadata::BoxFuture;

/// Why a request to the leader got no answer.
#[derive(Debug, Clone, thiserror::Error)]
#[error("leader connection failed: {0}")]
pub struct ConnectionError(pub String);

/// The requests a follower sends to its leader. Implementations own connecting,
/// reconnecting and timeouts; an `Err` means no answer (the fetcher backs off and retries).
pub trait LeaderConnection: Send + Sync {
    /// Sends a Fetch (the fetcher fills both `replica_id` and `replica_state`, topic names
    /// and ids, so any version from 12 can carry it).
    fn fetch(&self, request: FetchRequest)
        -> BoxFuture<'_, Result<FetchResponse, ConnectionError>>;

    /// Sends an OffsetForLeaderEpoch (v3+: with the follower's replica id).
    fn offset_for_leader_epoch(
        &self,
        request: OffsetForLeaderEpochRequest,
    ) -> BoxFuture<'_, Result<OffsetForLeaderEpochResponse, ConnectionError>>;
}

/// The follower's fetch settings (Kafka's names and defaults).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FetcherConfig {
    /// This broker's `node.id`, sent as the replica id.
    pub replica_id: i32,
    /// This broker's epoch from its registration (-1 if unknown).
    pub broker_epoch: i64,
    /// `replica.fetch.max.bytes` (1048576): bytes per partition.
    pub max_bytes: i32,
    /// `replica.fetch.response.max.bytes` (10485760): bytes per response.
    pub response_max_bytes: i32,
    /// `replica.fetch.wait.max.ms` (500).
    pub max_wait_ms: i32,
    /// `replica.fetch.min.bytes` (1).
    pub min_bytes: i32,
    /// `replica.fetch.backoff.ms` (1000): pause after an error.
    pub backoff_ms: u64,
}

impl FetcherConfig {
    /// Kafka's defaults for replica `replica_id`.
    pub fn new(replica_id: i32, broker_epoch: i64) -> Self {
        FetcherConfig {
            replica_id,
            broker_epoch,
            max_bytes: 1_048_576,
            response_max_bytes: 10_485_760,
            max_wait_ms: 500,
            min_bytes: 1,
            backoff_ms: 1000,
        }
    }
}

/// Where one followed partition stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FetchPhase {
    /// Must find its divergence point before fetching (new leader epoch).
    Truncating,
    /// Fetching.
    Fetching,
    /// Stopped until new metadata re-adds it (FENCED_LEADER_EPOCH, a failed log).
    Failed,
}

#[derive(Debug)]
struct FollowedPartition {
    partition: Arc<Partition>,
    topic_id: Uuid,
    leader_epoch: i32,
    phase: FetchPhase,
    /// Skip this partition until this round (a back-off after a retriable error).
    delayed_rounds: u32,
}

/// What one [`ReplicaFetcher::run_once`] did.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct Round {
    /// Partitions truncated (with the offsets they now end at).
    pub truncated: Vec<(TopicPartition, i64)>,
    /// Bytes of batches appended.
    pub appended_bytes: usize,
    /// The leader could not be reached or answered a top-level error.
    pub failed: bool,
    /// No partition to fetch.
    pub idle: bool,
}

/// Replicates the partitions followed from one leader broker. Drive it with
/// [`Self::run`] (a task) or, in tests, [`Self::run_once`].
pub struct ReplicaFetcher {
    leader_id: i32,
    config: FetcherConfig,
    connection: Arc<dyn LeaderConnection>,
    partitions: Mutex<BTreeMap<TopicPartition, FollowedPartition>>,
    changed: Notify,
}

impl std::fmt::Debug for ReplicaFetcher {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ReplicaFetcher")
            .field("leader_id", &self.leader_id)
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// Kafka's `OffsetTruncationState`: where to truncate, and whether that is final or the
/// follower must ask again with its (now older) latest epoch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct TruncationPoint {
    /// Truncate the log so it ends here.
    pub offset: i64,
    /// No further OffsetForLeaderEpoch round needed.
    pub completed: bool,
}

/// Kafka's follower rule (`AbstractFetcherThread.getOffsetTruncationState`) from the
/// leader's answer `(leader_epoch, end_offset)` to the follower's latest epoch, the
/// follower's own end offset for that epoch (`follower_end_for`), its log end offset and
/// high watermark.
pub fn truncation_point(
    leader_answer: (i32, i64),
    follower_end_for: impl Fn(i32) -> (i32, i64),
    log_end_offset: i64,
    high_watermark: i64,
) -> TruncationPoint {
    let (leader_epoch, leader_end) = leader_answer;
    if leader_end == UNDEFINED_EPOCH_OFFSET {
        // The leader knows no epoch this old: keep what is known committed.
        return TruncationPoint {
            offset: high_watermark.min(log_end_offset),
            completed: true,
        };
    }
    if leader_epoch == UNDEFINED_EPOCH {
        return TruncationPoint {
            offset: leader_end.min(log_end_offset),
            completed: true,
        };
    }
    match follower_end_for(leader_epoch) {
        (UNDEFINED_EPOCH, _) | (_, UNDEFINED_EPOCH_OFFSET) => TruncationPoint {
            offset: leader_end.min(log_end_offset),
            completed: true,
        },
        (epoch, end) if epoch != leader_epoch => TruncationPoint {
            // The follower does not know the leader's epoch: cut back to the end of its own
            // largest epoch below it and ask again.
            offset: end.min(log_end_offset),
            completed: false,
        },
        (_, end) => TruncationPoint {
            offset: end.min(leader_end).min(log_end_offset),
            completed: true,
        },
    }
}

impl ReplicaFetcher {
    /// A fetcher for the partitions led by `leader_id`, reached through `connection`.
    pub fn new(
        leader_id: i32,
        config: FetcherConfig,
        connection: Arc<dyn LeaderConnection>,
    ) -> Self {
        ReplicaFetcher {
            leader_id,
            config,
            connection,
            partitions: Mutex::new(BTreeMap::new()),
            changed: Notify::new(),
        }
    }

    /// The leader this fetcher replicates from.
    pub fn leader_id(&self) -> i32 {
        self.leader_id
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, BTreeMap<TopicPartition, FollowedPartition>> {
        self.partitions.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Starts (or restarts, in a new leader epoch) following `tp` from this leader: the
    /// partition truncates first, then fetches.
    pub fn add_partition(
        &self,
        tp: TopicPartition,
        partition: Arc<Partition>,
        topic_id: Uuid,
        leader_epoch: i32,
    ) {
        self.lock().insert(
            tp,
            FollowedPartition {
                partition,
                topic_id,
                leader_epoch,
                phase: FetchPhase::Truncating,
                delayed_rounds: 0,
            },
        );
        self.changed.notify_one();
    }

    /// Stops following `tp` (it moved to another leader, this broker leads it now, or it
    /// was deleted). Returns whether it was followed.
    pub fn remove_partition(&self, tp: &TopicPartition) -> bool {
        self.lock().remove(tp).is_some()
    }

    /// Number of partitions followed.
    pub fn partition_count(&self) -> usize {
        self.lock().len()
    }

    /// Where `tp` stands, if followed.
    pub fn phase(&self, tp: &TopicPartition) -> Option<FetchPhase> {
        self.lock().get(tp).map(|p| p.phase)
    }

    /// Runs rounds until `shutdown` is notified: waits while there is nothing to fetch,
    /// backs off `replica.fetch.backoff.ms` after a failed round.
    pub async fn run(self: Arc<Self>, shutdown: Arc<Notify>) {
        loop {
            let round = tokio::select! {
                _ = shutdown.notified() => return,
                r = self.run_once(crate::time::now_ms()) => r,
            };
            // A leader that answers at once (nothing to wait for) must not starve the
            // other tasks on this worker.
            tokio::task::yield_now().await;
            if round.idle {
                tokio::select! {
                    _ = shutdown.notified() => return,
                    _ = self.changed.notified() => {}
                }
            } else if round.failed {
                tokio::select! {
                    _ = shutdown.notified() => return,
                    _ = tokio::time::sleep(Duration::from_millis(self.config.backoff_ms)) => {}
                }
            }
        }
    }

    /// One round: truncates the partitions that need it, then sends one Fetch for the
    /// others and appends the answer.
    pub async fn run_once(&self, now_ms: i64) -> Round {
        let mut round = Round::default();
        self.truncate(&mut round).await;
        let fetching: Vec<(TopicPartition, Arc<Partition>, Uuid, i32)> = {
            let mut parts = self.lock();
            let mut out = Vec::new();
            for (tp, p) in parts.iter_mut() {
                if p.phase != FetchPhase::Fetching {
                    continue;
                }
                if p.delayed_rounds > 0 {
                    p.delayed_rounds -= 1;
                    continue;
                }
                out.push((tp.clone(), p.partition.clone(), p.topic_id, p.leader_epoch));
            }
            out
        };
        if fetching.is_empty() {
            let parts = self.lock();
            round.idle = parts.values().all(|p| p.phase == FetchPhase::Failed) || parts.is_empty();
            // Delayed partitions only: a failed round makes the caller back off.
            round.failed = !round.idle;
            return round;
        }
        let request = self.fetch_request(&fetching);
        let response = match self.connection.fetch(request).await {
            Ok(r) => r,
            Err(e) => {
                tracing::warn!(leader = self.leader_id, error = %e, "replica fetch failed");
                round.failed = true;
                return round;
            }
        };
        if response.error_code != 0 {
            tracing::warn!(
                leader = self.leader_id,
                error_code = response.error_code,
                "replica fetch refused"
            );
            round.failed = true;
            return round;
        }
        for topic in response.responses {
            for data in topic.partitions {
                let Some((tp, partition, _, _)) = fetching.iter().find(|(tp, _, id, _)| {
                    tp.partition == data.partition_index
                        && (tp.topic.as_str() == topic.topic.0.as_str() || *id == topic.topic_id)
                }) else {
                    continue;
                };
                self.handle_partition(tp, partition, data, now_ms, &mut round);
            }
        }
        round
    }

    fn fetch_request(
        &self,
        fetching: &[(TopicPartition, Arc<Partition>, Uuid, i32)],
    ) -> FetchRequest {
        let mut topics: Vec<FetchTopic> = Vec::new();
        for (tp, partition, topic_id, leader_epoch) in fetching {
            let (fetch_offset, log_start_offset, last_fetched_epoch) = {
                let log = partition.log().lock().unwrap_or_else(|p| p.into_inner());
                (
                    log.log_end_offset(),
                    log.log_start_offset(),
                    log.latest_epoch().unwrap_or(UNDEFINED_EPOCH),
                )
            };
            let p = FetchPartition::default()
                .with_partition(tp.partition)
                .with_current_leader_epoch(*leader_epoch)
                .with_fetch_offset(fetch_offset)
                .with_last_fetched_epoch(last_fetched_epoch)
                .with_log_start_offset(log_start_offset)
                .with_partition_max_bytes(self.config.max_bytes);
            match topics.last_mut() {
                Some(t) if t.topic.0.as_str() == tp.topic => t.partitions.push(p),
                _ => topics.push(
                    FetchTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(tp.topic.clone())))
                        .with_topic_id(*topic_id)
                        .with_partitions(vec![p]),
                ),
            }
        }
        FetchRequest::default()
            .with_replica_id(BrokerId(self.config.replica_id))
            .with_replica_state(
                ReplicaState::default()
                    .with_replica_id(BrokerId(self.config.replica_id))
                    .with_replica_epoch(self.config.broker_epoch),
            )
            .with_max_wait_ms(self.config.max_wait_ms)
            .with_min_bytes(self.config.min_bytes)
            .with_max_bytes(self.config.response_max_bytes)
            .with_isolation_level(0)
            // Sessionless (Kafka's FINAL_EPOCH): every request names every partition.
            .with_session_id(0)
            .with_session_epoch(-1)
            .with_topics(topics)
    }

    fn handle_partition(
        &self,
        tp: &TopicPartition,
        partition: &Arc<Partition>,
        data: kafka_protocol::messages::fetch_response::PartitionData,
        now_ms: i64,
        round: &mut Round,
    ) {
        let code = data.error_code;
        if code == 0 {
            if data.diverging_epoch.epoch >= 0 {
                // A leader that checks `last_fetched_epoch` (KIP-595) names the divergence.
                self.truncate_to_point(
                    tp,
                    partition,
                    (data.diverging_epoch.epoch, data.diverging_epoch.end_offset),
                    round,
                );
                return;
            }
            let records = data.records.unwrap_or_default();
            match partition.append_as_follower(&records, data.high_watermark, now_ms) {
                Ok(info) => {
                    if info.base_offset >= 0 {
                        round.appended_bytes += records.len();
                    }
                }
                Err(ReplicaError::Log(crate::log::Error::InvalidArgument(why))) => {
                    // The batches do not continue the log: find the divergence again.
                    tracing::warn!(%tp, %why, "replicated batches do not continue the log; truncating again");
                    self.set_phase(tp, FetchPhase::Truncating);
                }
                Err(e) => {
                    tracing::error!(%tp, error = %e, "appending replicated batches failed");
                    self.set_phase(tp, FetchPhase::Failed);
                }
            }
        } else if code == ResponseError::OffsetOutOfRange.code() {
            let leo = partition.log_end_offset();
            if data.log_start_offset > leo {
                // Everything the follower has is below the leader's log start (retention or
                // DeleteRecords removed it there): restart empty at the leader's start.
                tracing::info!(%tp, leo, leader_log_start_offset = data.log_start_offset, "follower behind the leader's log start; restarting there");
                if let Err(e) = partition.truncate_fully_and_start_at(data.log_start_offset) {
                    tracing::error!(%tp, error = %e, "resetting the follower log failed");
                    self.set_phase(tp, FetchPhase::Failed);
                } else {
                    round.truncated.push((tp.clone(), data.log_start_offset));
                }
            } else {
                // The follower is ahead of the leader's log end: find the divergence.
                self.set_phase(tp, FetchPhase::Truncating);
            }
        } else if code == ResponseError::FencedLeaderEpoch.code() {
            // This follower's leader epoch is stale: wait for metadata to re-add it.
            tracing::info!(%tp, leader = self.leader_id, "fetch fenced; waiting for new metadata");
            self.set_phase(tp, FetchPhase::Failed);
        } else {
            // NOT_LEADER_OR_FOLLOWER, UNKNOWN_LEADER_EPOCH (the leader has not seen the new
            // metadata yet), UNKNOWN_TOPIC_OR_PARTITION, storage errors: retry later.
            tracing::debug!(%tp, error_code = code, "replica fetch partition error; backing off");
            self.delay(tp);
            round.failed = true;
        }
    }

    fn set_phase(&self, tp: &TopicPartition, phase: FetchPhase) {
        if let Some(p) = self.lock().get_mut(tp) {
            p.phase = phase;
        }
    }

    fn delay(&self, tp: &TopicPartition) {
        if let Some(p) = self.lock().get_mut(tp) {
            p.delayed_rounds = 1;
        }
    }

    /// Truncates every partition in [`FetchPhase::Truncating`]: with OffsetForLeaderEpoch
    /// for its latest epoch (repeated while the answer names an epoch the follower does not
    /// know), or to the high watermark when its log has no epoch.
    async fn truncate(&self, round: &mut Round) {
        // Each pass lowers the follower's latest epoch, so this ends; the bound guards
        // against a misbehaving leader.
        for _ in 0..16 {
            let pending: Vec<(TopicPartition, Arc<Partition>, i32)> = self
                .lock()
                .iter()
                .filter(|(_, p)| p.phase == FetchPhase::Truncating)
                .map(|(tp, p)| (tp.clone(), p.partition.clone(), p.leader_epoch))
                .collect();
            if pending.is_empty() {
                return;
            }
            let mut asking = Vec::new();
            for (tp, partition, leader_epoch) in pending {
                let latest = partition
                    .log()
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .latest_epoch();
                match latest {
                    Some(epoch) => asking.push((tp, partition, leader_epoch, epoch)),
                    None => {
                        let hw = partition.high_watermark();
                        match partition.truncate_to(hw) {
                            Ok(()) => {
                                round
                                    .truncated
                                    .push((tp.clone(), partition.log_end_offset()));
                                self.set_phase(&tp, FetchPhase::Fetching);
                            }
                            Err(e) => {
                                tracing::error!(%tp, error = %e, "truncation failed");
                                self.set_phase(&tp, FetchPhase::Failed);
                            }
                        }
                    }
                }
            }
            if asking.is_empty() {
                continue;
            }
            let request = self.offset_for_leader_epoch_request(&asking);
            let response = match self.connection.offset_for_leader_epoch(request).await {
                Ok(r) => r,
                Err(e) => {
                    tracing::warn!(leader = self.leader_id, error = %e, "OffsetForLeaderEpoch failed");
                    round.failed = true;
                    return;
                }
            };
            for topic in response.topics {
                for answer in topic.partitions {
                    let Some((tp, partition, _, _)) = asking.iter().find(|(tp, ..)| {
                        tp.topic.as_str() == topic.topic.0.as_str()
                            && tp.partition == answer.partition
                    }) else {
                        continue;
                    };
                    if answer.error_code == 0 {
                        self.truncate_to_point(
                            tp,
                            partition,
                            (answer.leader_epoch, answer.end_offset),
                            round,
                        );
                    } else if answer.error_code == ResponseError::FencedLeaderEpoch.code() {
                        self.set_phase(tp, FetchPhase::Failed);
                    } else {
                        round.failed = true;
                        return;
                    }
                }
            }
        }
    }

    fn truncate_to_point(
        &self,
        tp: &TopicPartition,
        partition: &Arc<Partition>,
        leader_answer: (i32, i64),
        round: &mut Round,
    ) {
        let point = {
            let log = partition.log().lock().unwrap_or_else(|p| p.into_inner());
            truncation_point(
                leader_answer,
                |e| log.end_offset_for_epoch(e),
                log.log_end_offset(),
                log.high_watermark(),
            )
        };
        match partition.truncate_to(point.offset) {
            Ok(()) => {
                tracing::info!(%tp, leader = self.leader_id, ?leader_answer, offset = point.offset, completed = point.completed, "follower truncated by leader epoch");
                round
                    .truncated
                    .push((tp.clone(), partition.log_end_offset()));
                if point.completed {
                    self.set_phase(tp, FetchPhase::Fetching);
                }
            }
            Err(e) => {
                tracing::error!(%tp, error = %e, "truncation failed");
                self.set_phase(tp, FetchPhase::Failed);
            }
        }
    }

    fn offset_for_leader_epoch_request(
        &self,
        asking: &[(TopicPartition, Arc<Partition>, i32, i32)],
    ) -> OffsetForLeaderEpochRequest {
        let mut topics: Vec<OffsetForLeaderTopic> = Vec::new();
        for (tp, _, current_leader_epoch, latest_epoch) in asking {
            let p = OffsetForLeaderPartition::default()
                .with_partition(tp.partition)
                .with_current_leader_epoch(*current_leader_epoch)
                .with_leader_epoch(*latest_epoch);
            match topics.last_mut() {
                Some(t) if t.topic.0.as_str() == tp.topic => t.partitions.push(p),
                _ => topics.push(
                    OffsetForLeaderTopic::default()
                        .with_topic(TopicName(StrBytes::from_string(tp.topic.clone())))
                        .with_partitions(vec![p]),
                ),
            }
        }
        OffsetForLeaderEpochRequest::default()
            .with_replica_id(BrokerId(self.config.replica_id))
            .with_topics(topics)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn truncation_follows_kafkas_follower_rules() {
        // Follower epochs: 0 from 0, 1 from 5, log end 9. Leader: epoch 0 ends at 5.
        let follower = |e: i32| match e {
            0 => (0, 5),
            1 => (1, 9),
            _ => (-1, -1),
        };
        assert_eq!(
            truncation_point((0, 5), follower, 9, 3),
            TruncationPoint {
                offset: 5,
                completed: true
            }
        );
        // The leader's epoch 0 ended earlier than the follower's.
        assert_eq!(truncation_point((0, 4), follower, 9, 3).offset, 4);
        // The leader names an epoch the follower does not have: cut to the follower's
        // largest epoch below it and ask again.
        let only_old = |_e: i32| (0, 5);
        assert_eq!(
            truncation_point((2, 7), only_old, 9, 3),
            TruncationPoint {
                offset: 5,
                completed: false
            }
        );
        // The leader knows no such epoch: keep up to the high watermark.
        assert_eq!(
            truncation_point((-1, -1), follower, 9, 3),
            TruncationPoint {
                offset: 3,
                completed: true
            }
        );
        // Never past the follower's own end.
        assert_eq!(truncation_point((1, 20), follower, 9, 3).offset, 9);
    }
}
