//! Kafka's replication quotas (`ReplicationQuotaManager`): the byte rate a leader sends to
//! throttled followers, bounded by the broker's dynamic `leader.replication.throttled.rate`
//! for the partitions a topic's `leader.replication.throttled.replicas` lists for this
//! broker (`kafka-reassign-partitions.sh --throttle` sets both).
//!
//! The rate is Kafka's `SimpleRate` over `replication.quota.window.num` (11) samples of
//! `replication.quota.window.size.seconds` (1 s): the bytes of the retained samples divided
//! by the time since the oldest one started (at least one window). While it is above the
//! bound, a leader answers a throttled partition's fetch by a follower outside the ISR with no
//! records, as Kafka's `ReplicaManager.readFromLog` does; followers in the ISR are never
//! throttled. What is sent for throttled partitions is recorded whether or not it was cut.

use std::collections::VecDeque;
use std::sync::Mutex;

use crate::metadata::MetadataImage;

/// Kafka's `replication.quota.window.size.seconds` default, in ms.
pub const QUOTA_WINDOW_MS: i64 = 1000;
/// Kafka's `replication.quota.window.num` default.
pub const QUOTA_SAMPLES: usize = 11;

/// The topic config listing the partitions a leader throttles.
pub const LEADER_THROTTLED_REPLICAS: &str = "leader.replication.throttled.replicas";
/// The broker config bounding a leader's throttled replication, bytes/s.
pub const LEADER_THROTTLED_RATE: &str = "leader.replication.throttled.rate";

#[derive(Debug, Clone, Copy)]
struct Sample {
    start_ms: i64,
    bytes: u64,
}

/// One direction's measured replication rate (see the module docs).
#[derive(Debug, Default)]
pub struct ReplicationQuota {
    samples: Mutex<VecDeque<Sample>>,
}

impl ReplicationQuota {
    /// Adds `bytes` sent at `now_ms` to the current sample (a new one once its window passed).
    pub fn record(&self, bytes: u64, now_ms: i64) {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        purge(&mut samples, now_ms);
        match samples.back_mut() {
            Some(last) if now_ms < last.start_ms + QUOTA_WINDOW_MS => last.bytes += bytes,
            _ => samples.push_back(Sample {
                start_ms: now_ms,
                bytes,
            }),
        }
        while samples.len() > QUOTA_SAMPLES {
            samples.pop_front();
        }
    }

    /// The measured rate at `now_ms`, bytes/s (Kafka's `SimpleRate`).
    pub fn rate(&self, now_ms: i64) -> f64 {
        let mut samples = self.samples.lock().unwrap_or_else(|p| p.into_inner());
        purge(&mut samples, now_ms);
        let Some(oldest) = samples.front() else {
            return 0.0;
        };
        let elapsed = (now_ms - oldest.start_ms).max(QUOTA_WINDOW_MS);
        let bytes: u64 = samples.iter().map(|s| s.bytes).sum();
        bytes as f64 * 1000.0 / elapsed as f64
    }

    /// Whether the rate is above `bound` bytes/s (Kafka's `Quota.acceptable` is `<=`).
    pub fn is_exceeded(&self, bound: u64, now_ms: i64) -> bool {
        self.rate(now_ms) > bound as f64
    }
}

/// Drops samples older than the quota's whole window, as Kafka's `purgeObsoleteSamples`.
fn purge(samples: &mut VecDeque<Sample>, now_ms: i64) {
    let expire = QUOTA_SAMPLES as i64 * QUOTA_WINDOW_MS;
    while samples
        .front()
        .is_some_and(|s| now_ms - s.start_ms >= expire)
    {
        samples.pop_front();
    }
}

/// Whether a `*.replication.throttled.replicas` value (`*`, or `partition:broker` pairs)
/// names `partition` on `broker_id`.
pub fn is_throttled_replica(list: &str, partition: i32, broker_id: i32) -> bool {
    list.split(',').map(str::trim).any(|entry| {
        entry == "*"
            || entry.split_once(':').is_some_and(|(p, b)| {
                p.trim().parse::<i32>() == Ok(partition) && b.trim().parse::<i32>() == Ok(broker_id)
            })
    })
}

/// Broker `broker_id`'s dynamic `key` rate in bytes/s, `None` when unset or `Long.MAX_VALUE`
/// (Kafka's default: no throttle). These quotas are per-broker configs only.
pub fn throttle_rate(image: &MetadataImage, broker_id: i32, key: &str) -> Option<u64> {
    image
        .broker_config(&broker_id.to_string())
        .get(key)
        .and_then(|v| v.trim().parse::<i64>().ok())
        .filter(|v| *v >= 0 && *v < i64::MAX)
        .map(|v| v as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_rate_is_kafkas_simple_rate_over_eleven_one_second_windows() {
        let q = ReplicationQuota::default();
        assert_eq!(q.rate(0), 0.0);
        // Less than one window elapsed: divided by one whole window.
        q.record(500_000, 0);
        assert_eq!(q.rate(100), 500_000.0);
        assert!(q.is_exceeded(499_999, 100));
        assert!(!q.is_exceeded(500_000, 100));
        // 2.5 s after the first sample: 1 MB over 2.5 s.
        q.record(500_000, 2000);
        assert_eq!(q.rate(2500), 400_000.0);
        // The first sample expires 11 s after it started.
        assert_eq!(q.rate(11_000), 500_000.0 * 1000.0 / 9000.0);
        assert_eq!(q.rate(13_000), 0.0);
    }

    #[test]
    fn a_sender_kept_under_the_bound_averages_the_bound() {
        // A leader sends 100 KB whenever the quota allows, polling every 10 ms for 30 s
        // with a bound of 1 MB/s: it moves about 30 MB, not more.
        let q = ReplicationQuota::default();
        let mut sent = 0u64;
        for now in (0..30_000).step_by(10) {
            if !q.is_exceeded(1_000_000, now) {
                q.record(100_000, now);
                sent += 100_000;
            }
        }
        assert!((29_000_000..=31_500_000).contains(&sent), "{sent}");
    }

    #[test]
    fn throttled_replicas_are_star_or_partition_broker_pairs() {
        assert!(is_throttled_replica("*", 3, 7));
        assert!(is_throttled_replica("0:1, 1:2", 1, 2));
        assert!(!is_throttled_replica("0:1,1:2", 1, 1));
        assert!(!is_throttled_replica("", 0, 0));
    }
}
