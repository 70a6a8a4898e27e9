//! The replica layer: one [`Partition`] per partition this broker hosts, holding its log
//! handle and the fetches waiting on it, and the broker's fetch sessions (KIP-227).
//!
//! Delayed fetches wait per partition, as Kafka's fetch purgatory is keyed by partition: an
//! append wakes only the fetches that named that partition, never every waiting fetch on the
//! broker. Replication (issue 8) adds role, ISR, follower offsets and the high watermark to
//! [`Partition`]; its followers fetch through the same path.

pub mod fetch_session;

use std::collections::HashMap;
use std::sync::{Arc, Mutex, RwLock};

use tokio::sync::Notify;

use crate::log::{PartitionLog, TopicPartition};

/// One hosted partition: its log and the wake-ups of the delayed fetches that wait on it.
#[derive(Debug)]
pub struct Partition {
    log: Arc<Mutex<PartitionLog>>,
    waiters: Mutex<Waiters>,
}

#[derive(Debug, Default)]
struct Waiters {
    next_id: u64,
    by_id: HashMap<u64, Arc<Notify>>,
}

impl Partition {
    /// Wraps a partition log.
    pub fn new(log: Arc<Mutex<PartitionLog>>) -> Self {
        Partition {
            log,
            waiters: Mutex::new(Waiters::default()),
        }
    }

    /// The partition's log.
    pub fn log(&self) -> &Arc<Mutex<PartitionLog>> {
        &self.log
    }

    /// Wakes every fetch waiting on this partition: new data may be readable (an append or,
    /// with replication, a high watermark advance). A fetch that is not waiting yet keeps
    /// the wake-up (`Notify` stores a permit), so a wake-up between its read and its wait
    /// is not lost.
    pub fn wake_fetches(&self) {
        let waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        for waker in waiters.by_id.values() {
            waker.notify_one();
        }
    }

    /// Number of fetches waiting on this partition (diagnostics and tests).
    pub fn waiting_fetches(&self) -> usize {
        let waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        waiters.by_id.len()
    }

    /// Registers `waker` to be notified by [`Self::wake_fetches`] until the returned guard
    /// is dropped.
    pub fn watch(self: &Arc<Self>, waker: &Arc<Notify>) -> FetchWatch {
        let mut waiters = self.waiters.lock().unwrap_or_else(|p| p.into_inner());
        let id = waiters.next_id;
        waiters.next_id += 1;
        waiters.by_id.insert(id, waker.clone());
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
        let mut waiters = self
            .partition
            .waiters
            .lock()
            .unwrap_or_else(|p| p.into_inner());
        waiters.by_id.remove(&self.id);
    }
}

/// The partitions this broker hosts, by topic partition. Entries are created on first use
/// from the log manager's logs and removed when a topic is deleted.
#[derive(Debug, Default)]
pub struct ReplicaManager {
    partitions: RwLock<HashMap<TopicPartition, Arc<Partition>>>,
}

impl ReplicaManager {
    /// The partition for `tp`, created around `log()` the first time (`None` if there is
    /// no log).
    pub fn get_or_create(
        &self,
        tp: &TopicPartition,
        log: impl FnOnce() -> Option<Arc<Mutex<PartitionLog>>>,
    ) -> Option<Arc<Partition>> {
        if let Some(p) = self
            .partitions
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .get(tp)
        {
            return Some(p.clone());
        }
        let log = log()?;
        let mut map = self.partitions.write().unwrap_or_else(|p| p.into_inner());
        Some(
            map.entry(tp.clone())
                .or_insert_with(|| Arc::new(Partition::new(log)))
                .clone(),
        )
    }

    /// Forgets `tp` (its log was deleted) and wakes its waiting fetches so they answer now
    /// instead of at their deadline.
    pub fn remove(&self, tp: &TopicPartition) {
        let removed = self
            .partitions
            .write()
            .unwrap_or_else(|p| p.into_inner())
            .remove(tp);
        if let Some(p) = removed {
            p.wake_fetches();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::LogConfig;

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
        let _wa = a.watch(&on_a);
        let _wb = b.watch(&on_b);
        a.wake_fetches();
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
        let w = a.watch(&waker);
        assert_eq!(a.waiting_fetches(), 1);
        drop(w);
        assert_eq!(a.waiting_fetches(), 0);
    }
}
