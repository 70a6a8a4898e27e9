//! What the operator's reconcile loops (KafkaCluster, KafkaTopic) share: the error of a failed
//! API server request, and the per-object exponential backoff after failed passes.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use kube::{Resource, ResourceExt};

/// The first wait after a failed pass; each further consecutive failure doubles it.
const BACKOFF_MIN: Duration = Duration::from_secs(2);

/// The API server refused or failed a request.
#[derive(Debug, thiserror::Error)]
#[error("{action}: {source}")]
pub struct KubeError {
    /// What the operator was doing (`apply StatefulSet/x`, `patch status of KafkaTopic/y`).
    pub action: String,
    /// The API error.
    #[source]
    pub source: kube::Error,
}

/// A `map_err` adapter naming what the operator was doing when the API server failed (`?`
/// then converts the [`KubeError`] into the loop's own error).
pub fn kube_err(action: impl Into<String>) -> impl FnOnce(kube::Error) -> KubeError {
    let action = action.into();
    move |source| KubeError { action, source }
}

/// `namespace/name` of an object, the key of its backoff and of its log lines.
pub fn key<K: Resource>(object: &K) -> String {
    format!(
        "{}/{}",
        object.namespace().unwrap_or_default(),
        object.name_any()
    )
}

/// Consecutive failed passes per object, so a failing object is retried after 2 s, then 4 s,
/// 8 s, ... up to a ceiling, and one success starts it over.
pub struct Backoff {
    max: Duration,
    failures: Mutex<HashMap<String, u32>>,
}

impl Backoff {
    /// A backoff whose waits stop growing at `max`.
    pub fn new(max: Duration) -> Backoff {
        Backoff {
            max,
            failures: Mutex::new(HashMap::new()),
        }
    }

    /// Counts one more failed pass of `key` and returns how long to wait before the next.
    pub fn failed(&self, key: &str) -> Duration {
        let mut failures = self.failures.lock().unwrap_or_else(|p| p.into_inner());
        let n = failures.entry(key.to_string()).or_insert(0);
        *n = n.saturating_add(1);
        self.wait(*n)
    }

    /// Forgets `key`'s failures after a pass that succeeded.
    pub fn succeeded(&self, key: &str) {
        self.failures
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .remove(key);
    }

    /// The wait after the `failures`-th consecutive failure.
    fn wait(&self, failures: u32) -> Duration {
        let factor = 1u32 << failures.saturating_sub(1).min(16);
        BACKOFF_MIN.saturating_mul(factor).min(self.max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn backoff_doubles_from_two_seconds_up_to_its_ceiling_and_a_success_starts_over() {
        let b = Backoff::new(Duration::from_secs(300));
        assert_eq!(b.wait(1), Duration::from_secs(2));
        assert_eq!(b.wait(2), Duration::from_secs(4));
        assert_eq!(b.wait(5), Duration::from_secs(32));
        assert_eq!(b.wait(9), Duration::from_secs(300));
        assert_eq!(b.wait(u32::MAX), Duration::from_secs(300));
        assert_eq!(b.failed("ns/a"), Duration::from_secs(2));
        assert_eq!(b.failed("ns/a"), Duration::from_secs(4));
        assert_eq!(b.failed("ns/b"), Duration::from_secs(2), "per object");
        b.succeeded("ns/a");
        assert_eq!(b.failed("ns/a"), Duration::from_secs(2));
    }
}
