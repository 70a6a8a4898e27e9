//! The replica layer: one [`Partition`] per partition this broker hosts — its log, its role
//! (leader or follower), the ISR, the leader's view of its followers, the high watermark and
//! the delayed produces and fetches waiting on it — and the broker's fetch sessions
//! (KIP-227).
//!
//! Delayed fetches and produces wait per partition, as Kafka's purgatories are keyed by
//! partition: an append wakes only the follower fetches of that partition, a high watermark
//! advance only its consumer fetches and acks=all produces. Replication decisions (high
//! watermark, ISR shrink and expand, acks=all completion) are pure functions in [`isr`]; the
//! follower side fetches through [`fetcher::LeaderConnection`], ISR changes go out through
//! [`AlterPartitionSender`], so both are tested in-process.

pub mod fetch_session;
pub mod fetcher;
pub mod fetchers;
pub mod isr;
pub mod leader_connection;
pub mod partition;
pub mod quota;
#[cfg(test)]
mod replication_tests;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use crate::log::{PartitionLog, TopicPartition};
use crate::metadata::{BoxFuture, PartitionState};

pub use partition::{FetchWaitKind, FetchWatch, FollowerFetch, Partition, Progress};

/// Why the replica layer refused or failed a request; each maps to a Kafka error code.
#[derive(Debug, thiserror::Error)]
pub enum ReplicaError {
    /// This broker does not lead (or follow) the partition in the state the request needs.
    #[error("this broker is not the leader for the partition")]
    NotLeaderOrFollower,
    /// The request's leader epoch is older than the partition's.
    #[error("the leader epoch in the request is older than the partition's")]
    FencedLeaderEpoch,
    /// The request's leader epoch is newer than this broker knows.
    #[error("the leader epoch in the request is newer than this broker knows")]
    UnknownLeaderEpoch,
    /// acks=all with fewer in-sync replicas than `min.insync.replicas`: nothing appended.
    #[error("The size of the current ISR Set({}) is insufficient to satisfy the min.isr requirement of {min_insync_replicas}", isr.iter().map(i32::to_string).collect::<Vec<_>>().join(", "))]
    NotEnoughReplicas {
        /// The committed ISR.
        isr: Vec<i32>,
        /// The effective `min.insync.replicas`.
        min_insync_replicas: i32,
    },
    /// The records were appended, but the ISR shrank below `min.insync.replicas` before
    /// they were replicated.
    #[error("The size of the current ISR {isr_size} is insufficient to satisfy the min.isr requirement of {min_insync_replicas}")]
    NotEnoughReplicasAfterAppend {
        /// Size of the ISR when the high watermark reached the records.
        isr_size: usize,
        /// The effective `min.insync.replicas`.
        min_insync_replicas: i32,
    },
    /// acks=all was not satisfied within the request's timeout.
    #[error("the records were not replicated to the ISR within the request timeout")]
    RequestTimedOut,
    /// The log failed or refused.
    #[error(transparent)]
    Log(#[from] crate::log::Error),
}

impl ReplicaError {
    /// The Kafka error code for a response.
    pub fn kafka_code(&self) -> i16 {
        match self {
            ReplicaError::NotLeaderOrFollower => ResponseError::NotLeaderOrFollower.code(),
            ReplicaError::FencedLeaderEpoch => ResponseError::FencedLeaderEpoch.code(),
            ReplicaError::UnknownLeaderEpoch => ResponseError::UnknownLeaderEpoch.code(),
            ReplicaError::NotEnoughReplicas { .. } => ResponseError::NotEnoughReplicas.code(),
            ReplicaError::NotEnoughReplicasAfterAppend { .. } => {
                ResponseError::NotEnoughReplicasAfterAppend.code()
            }
            ReplicaError::RequestTimedOut => ResponseError::RequestTimedOut.code(),
            ReplicaError::Log(e) => e.kafka_code(),
        }
    }
}

impl From<ReplicaError> for crate::error::ApiError {
    fn from(e: ReplicaError) -> Self {
        // Kafka sends its exception message where it has one (the min.isr refusal, storage
        // failures); the rest go with the code's default message.
        let message = match &e {
            ReplicaError::Log(_) | ReplicaError::NotEnoughReplicas { .. } => Some(e.to_string()),
            _ => None,
        };
        crate::error::ApiError {
            code: e.kafka_code(),
            message,
        }
    }
}

/// An ISR change a partition leader asks the active controller to commit (Kafka's
/// AlterPartition request for one partition).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlterPartitionRequest {
    /// Topic name (for logs; the controller keys by id).
    pub topic: String,
    /// Topic id (nil if the log has none recorded).
    pub topic_id: Uuid,
    /// Partition index.
    pub partition: i32,
    /// The leader sending it (this broker).
    pub leader_id: i32,
    /// The leader epoch the change was decided in: refused with FENCED_LEADER_EPOCH if
    /// the controller has moved on.
    pub leader_epoch: i32,
    /// The partition epoch the change is based on: refused with INVALID_UPDATE_VERSION if
    /// the partition changed since.
    pub partition_epoch: i32,
    /// The proposed ISR.
    pub new_isr: Vec<i32>,
}

/// Why an AlterPartition was not committed.
#[derive(Debug, Clone, thiserror::Error)]
pub enum AlterPartitionError {
    /// The controller refused it with this Kafka error (FENCED_LEADER_EPOCH,
    /// INVALID_UPDATE_VERSION, INELIGIBLE_REPLICA, ...).
    #[error("refused by the controller with error code {0}")]
    Refused(i16),
    /// It could not be sent or answered (no controller, connection failure).
    #[error("not answered: {0}")]
    Unavailable(String),
}

/// Sends a leader's ISR changes to the active controller (wired by the broker to the
/// control channel; in tests to an in-process stand-in). Answers the partition's committed
/// state after the change.
pub trait AlterPartitionSender: Send + Sync + std::fmt::Debug {
    /// Sends `request`; resolves to the committed state or why not.
    fn alter_partition(
        &self,
        request: AlterPartitionRequest,
    ) -> BoxFuture<'static, Result<PartitionState, AlterPartitionError>>;
}

/// The partitions this broker hosts, by topic partition. Entries are created on first use
/// from the log manager's logs and removed when a topic is deleted. It sends the ISR
/// changes its leaders decide through the [`AlterPartitionSender`], if one is set.
#[derive(Debug)]
pub struct ReplicaManager {
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
    replica_lag_time_max_ms: i64,
    alter_partition: RwLock<Option<Arc<dyn AlterPartitionSender>>>,
    fetchers: RwLock<Option<Arc<fetchers::FetcherManager>>>,
    /// What this broker sends, as a leader, for throttled partitions (see [`quota`]).
    leader_quota: quota::ReplicationQuota,
}

impl Default for ReplicaManager {
    fn default() -> Self {
        Self::new(partition::DEFAULT_REPLICA_LAG_TIME_MAX_MS)
    }
}

impl ReplicaManager {
    /// An empty manager whose partitions drop followers that have not caught up for
    /// `replica_lag_time_max_ms` (`replica.lag.time.max.ms`).
    pub fn new(replica_lag_time_max_ms: i64) -> Self {
        ReplicaManager {
            partitions: RwLock::new(HashMap::new()),
            replica_lag_time_max_ms,
            alter_partition: RwLock::new(None),
            fetchers: RwLock::new(None),
            leader_quota: quota::ReplicationQuota::default(),
        }
    }

    /// The leader's replication quota (`leader.replication.throttled.rate`).
    pub fn leader_quota(&self) -> &quota::ReplicationQuota {
        &self.leader_quota
    }

    /// Sets how followed partitions are fetched (one fetcher per leader broker). Until set,
    /// [`Self::become_follower`] records the role but fetches nothing.
    pub fn set_fetcher_manager(&self, manager: Arc<fetchers::FetcherManager>) {
        *self.fetchers.write().unwrap_or_else(|p| p.into_inner()) = Some(manager);
    }

    fn fetcher_manager(&self) -> Option<Arc<fetchers::FetcherManager>> {
        self.fetchers
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Makes this broker the leader of `tp` in the committed `state` (see
    /// [`Partition::become_leader`]) and stops fetching it from a former leader. `log` gives
    /// the partition's log if it is not hosted yet; `None` from it is
    /// UNKNOWN_TOPIC_OR_PARTITION (as a Kafka error in [`ReplicaError::Log`]).
    pub fn become_leader(
        &self,
        tp: &TopicPartition,
        state: &PartitionState,
        log: impl FnOnce() -> Option<Arc<Mutex<PartitionLog>>>,
        now_ms: i64,
    ) -> Result<Arc<Partition>, ReplicaError> {
        let partition = self
            .get_or_create(tp, log)
            .ok_or_else(|| ReplicaError::Log(crate::log::Error::Deleted(tp.clone())))?;
        if let Some(f) = self.fetcher_manager() {
            f.remove_partition(tp);
        }
        partition.become_leader(state, now_ms)?;
        Ok(partition)
    }

    /// Makes this broker a follower of `tp` in the committed `state` (see
    /// [`Partition::become_follower`]): when the leader or its epoch changed, the partition
    /// is (re)added to the leader's fetcher, which truncates it first; with no leader
    /// (`state.leader == -1`) it is not fetched. Needs a tokio runtime.
    pub fn become_follower(
        &self,
        tp: &TopicPartition,
        topic_id: Uuid,
        state: &PartitionState,
        log: impl FnOnce() -> Option<Arc<Mutex<PartitionLog>>>,
    ) -> Result<Arc<Partition>, ReplicaError> {
        let partition = self
            .get_or_create(tp, log)
            .ok_or_else(|| ReplicaError::Log(crate::log::Error::Deleted(tp.clone())))?;
        let changed = partition.become_follower(state);
        if let Some(f) = self.fetcher_manager() {
            if state.leader < 0 {
                f.remove_partition(tp);
            } else if changed || f.leader_of(tp) != Some(state.leader) {
                f.add_partition(
                    tp,
                    partition.clone(),
                    topic_id,
                    state.leader,
                    state.leader_epoch,
                );
            }
        }
        Ok(partition)
    }

    /// Stops every follower fetcher (broker shutdown).
    pub fn shutdown_fetchers(&self) {
        if let Some(f) = self.fetcher_manager() {
            f.shutdown();
        }
    }

    /// Tells every hosted partition which brokers may not join an ISR now (fenced or in
    /// controlled shutdown); leaders skip them when deciding an ISR expansion.
    pub fn set_ineligible_replicas(&self, ineligible: &std::collections::BTreeSet<i32>) {
        let partitions: Vec<Arc<Partition>> = self
            .partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        for p in partitions {
            p.set_ineligible_replicas(ineligible.clone());
        }
    }

    /// `replica.lag.time.max.ms` as configured.
    pub fn replica_lag_time_max_ms(&self) -> i64 {
        self.replica_lag_time_max_ms
    }

    /// Sets where ISR changes go (the active controller). Until set, leaders decide no
    /// ISR change is sent and their ISR stays as committed.
    pub fn set_alter_partition_sender(&self, sender: Arc<dyn AlterPartitionSender>) {
        *self
            .alter_partition
            .write()
            .unwrap_or_else(|p| p.into_inner()) = Some(sender);
    }

    /// The partition for `tp` if hosted.
    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<Partition>> {
        self.partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tp)
            .cloned()
    }

    /// The partition for `tp`, created around `log()` the first time (`None` if there is
    /// no log).
    pub fn get_or_create(
        &self,
        tp: &TopicPartition,
        log: impl FnOnce() -> Option<Arc<Mutex<PartitionLog>>>,
    ) -> Option<Arc<Partition>> {
        if let Some(p) = self.get(tp) {
            return Some(p);
        }
        let log = log()?;
        let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
        Some(
            map.entry(tp.clone())
                .or_insert_with(|| {
                    Arc::new(Partition::with_lag_time(log, self.replica_lag_time_max_ms))
                })
                .clone(),
        )
    }

    /// Forgets `tp` (its log was deleted, or the replica moved away): its delayed produces
    /// answer NOT_LEADER_OR_FOLLOWER and its waiting fetches wake, now instead of at their
    /// deadline.
    pub fn remove(&self, tp: &TopicPartition) {
        if let Some(f) = self.fetcher_manager() {
            f.remove_partition(tp);
        }
        let removed = self
            .partitions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tp);
        if let Some(p) = removed {
            p.resign();
            p.wake_fetches();
        }
    }

    /// Kafka's `isr-expiration` task: asks every led partition to drop followers that have
    /// not caught up within `replica.lag.time.max.ms` at `now_ms`, and sends the changes.
    /// Run it every half of that time, as Kafka does. Returns how many changes were sent.
    pub fn shrink_isrs(&self, now_ms: i64) -> usize {
        let partitions: Vec<Arc<Partition>> = self
            .partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .values()
            .cloned()
            .collect();
        let mut sent = 0;
        for p in partitions {
            if let Some(request) = p.maybe_shrink_isr(now_ms) {
                self.send_alter_partition(&p, request);
                sent += 1;
            }
        }
        sent
    }

    /// Sends `request` for `partition` on a task and hands the outcome back to it. Without
    /// a sender the change is answered as unavailable at once (the partition keeps its
    /// committed ISR and proposes again later). Needs a tokio runtime.
    pub fn send_alter_partition(&self, partition: &Arc<Partition>, request: AlterPartitionRequest) {
        let sender = self
            .alter_partition
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let partition = partition.clone();
        match sender {
            None => partition.on_alter_partition_result(
                &request,
                Err(AlterPartitionError::Unavailable(
                    "no controller connection".into(),
                )),
                crate::time::now_ms(),
            ),
            Some(sender) => {
                tokio::spawn(async move {
                    let result = sender.alter_partition(request.clone()).await;
                    partition.on_alter_partition_result(&request, result, crate::time::now_ms());
                });
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogConfig;
    use tokio::sync::Notify;

    fn partition(dir: &std::path::Path, name: &str) -> Arc<Partition> {
        let tp = TopicPartition::new(name, 0);
        let log = PartitionLog::open(&dir.join(tp.to_string()), tp, LogConfig::default())
            .expect("open log");
        Arc::new(Partition::new(Arc::new(Mutex::new(log))))
    }

    #[tokio::test]
    async fn an_append_wakes_only_the_fetches_of_its_partition() {
        let dir = tempfile::tempdir().expect("tempdir");
        let (a, b) = (partition(dir.path(), "a"), partition(dir.path(), "b"));
        let (on_a, on_b) = (Arc::new(Notify::new()), Arc::new(Notify::new()));
        let _wa = a.watch(FetchWaitKind::Consumer, &on_a);
        let _wb = b.watch(FetchWaitKind::Consumer, &on_b);
        a.wake(FetchWaitKind::Consumer);
        let woke = |n: &Arc<Notify>| {
            let n = n.clone();
            async move {
                tokio::time::timeout(std::time::Duration::from_millis(50), n.notified())
                    .await
                    .is_ok()
            }
        };
        assert!(
            woke(&on_a).await,
            "the fetch on the appended partition wakes"
        );
        assert!(!woke(&on_b).await, "a fetch on another partition sleeps on");
    }

    #[test]
    fn dropping_the_watch_unregisters() {
        let dir = tempfile::tempdir().expect("tempdir");
        let a = partition(dir.path(), "a");
        let waker = Arc::new(Notify::new());
        let w = a.watch(FetchWaitKind::Follower, &waker);
        assert_eq!(a.waiting_fetches(), 1);
        drop(w);
        assert_eq!(a.waiting_fetches(), 0);
    }
}
