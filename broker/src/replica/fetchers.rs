//! [`FetcherManager`]: one [`ReplicaFetcher`] task per leader broker this node follows
//! partitions from (Kafka's `ReplicaFetcherManager` with `num.replica.fetchers=1`). A
//! partition moves between fetchers when its leader changes; a fetcher with no partitions
//! left stops.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::Notify;
use uuid::Uuid;

use super::fetcher::{FetcherConfig, LeaderConnection, ReplicaFetcher};
use super::Partition;
use crate::log::TopicPartition;

/// Opens the connection to a leader broker by id (`None` if its address is unknown, e.g.
/// not registered with the inter-broker listener).
pub type ConnectLeader = Arc<dyn Fn(i32) -> Option<Arc<dyn LeaderConnection>> + Send + Sync>;

struct Running {
    fetcher: Arc<ReplicaFetcher>,
    shutdown: Arc<Notify>,
}

/// The follower side of a broker: which leader each followed partition is fetched from.
pub struct FetcherManager {
    config: FetcherConfig,
    connect: ConnectLeader,
    fetchers: Mutex<HashMap<i32, Running>>,
}

impl std::fmt::Debug for FetcherManager {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FetcherManager")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

impl FetcherManager {
    /// A manager whose fetchers send as `config.replica_id` and reach leaders through
    /// `connect`.
    pub fn new(config: FetcherConfig, connect: ConnectLeader) -> Self {
        FetcherManager {
            config,
            connect,
            fetchers: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<i32, Running>> {
        self.fetchers.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Fetches `tp` from `leader_id` in `leader_epoch` (truncating first), on that leader's
    /// fetcher, started if needed; stops fetching it from any other leader. Returns false
    /// if the leader cannot be reached (no address): the partition is then not fetched
    /// until the next call. Needs a tokio runtime.
    pub fn add_partition(
        &self,
        tp: &TopicPartition,
        partition: Arc<Partition>,
        topic_id: Uuid,
        leader_id: i32,
        leader_epoch: i32,
    ) -> bool {
        self.remove_partition(tp);
        let mut fetchers = self.lock();
        let running = match fetchers.entry(leader_id) {
            std::collections::hash_map::Entry::Occupied(e) => e.into_mut(),
            std::collections::hash_map::Entry::Vacant(e) => {
                let Some(connection) = (self.connect)(leader_id) else {
                    tracing::warn!(%tp, leader_id, "no address for the leader; not fetching");
                    return false;
                };
                let fetcher = Arc::new(ReplicaFetcher::new(leader_id, self.config, connection));
                let shutdown = Arc::new(Notify::new());
                tokio::spawn(fetcher.clone().run(shutdown.clone()));
                e.insert(Running { fetcher, shutdown })
            }
        };
        running
            .fetcher
            .add_partition(tp.clone(), partition, topic_id, leader_epoch);
        true
    }

    /// Stops fetching `tp` (this node leads it now, it has no leader, or it was deleted);
    /// a fetcher left without partitions stops.
    pub fn remove_partition(&self, tp: &TopicPartition) {
        let mut fetchers = self.lock();
        let mut idle = Vec::new();
        for (leader, r) in fetchers.iter() {
            if r.fetcher.remove_partition(tp) && r.fetcher.partition_count() == 0 {
                idle.push(*leader);
            }
        }
        for leader in idle {
            if let Some(r) = fetchers.remove(&leader) {
                r.shutdown.notify_one();
            }
        }
    }

    /// The leader `tp` is fetched from, if any.
    pub fn leader_of(&self, tp: &TopicPartition) -> Option<i32> {
        self.lock()
            .iter()
            .find(|(_, r)| r.fetcher.phase(tp).is_some())
            .map(|(leader, _)| *leader)
    }

    /// Stops every fetcher (broker shutdown).
    pub fn shutdown(&self) {
        for (_, r) in self.lock().drain() {
            r.shutdown.notify_one();
        }
    }
}
