//! The operator's Prometheus metrics (served with `--metrics-address`, on in the chart):
//! reconciliations per kind and namespace, their outcome and duration, shaped as Strimzi's
//! cluster operator reports them (`strimzi_reconciliations_total`, `…_successful_total`,
//! `…_failed_total`, `…_duration_seconds`) with Oxbow's prefix.

use std::future::Future;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock};
use std::time::Instant;

use oxbow_metrics::Exporter;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

/// The resource a reconciliation was for.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ResourceLabels {
    /// `KafkaCluster` or `KafkaTopic`.
    pub kind: &'static str,
    /// The resource's namespace.
    pub namespace: String,
}

/// Labels of the duration histogram (per kind: namespaces would multiply the buckets).
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct KindLabel {
    /// `KafkaCluster` or `KafkaTopic`.
    pub kind: &'static str,
}

type Count = Counter<u64, AtomicU64>;

/// Every metric the operator keeps.
pub struct OperatorMetrics {
    reconciliations: Family<ResourceLabels, Count>,
    successful: Family<ResourceLabels, Count>,
    failed: Family<ResourceLabels, Count>,
    duration: Family<KindLabel, Histogram>,
}

static METRICS: LazyLock<OperatorMetrics> = LazyLock::new(|| OperatorMetrics {
    reconciliations: Family::default(),
    successful: Family::default(),
    failed: Family::default(),
    // 1 ms to ~65 s: a pass is usually a few API calls; a roll step or a reassignment
    // batch waits on the brokers.
    duration: Family::new_with_constructor(|| Histogram::new(exponential_buckets(0.001, 4.0, 9))),
});

/// The process' operator metrics.
pub fn metrics() -> &'static OperatorMetrics {
    &METRICS
}

impl OperatorMetrics {
    /// Counts one reconciliation of a `kind` in `namespace` that took `seconds` and
    /// succeeded or not.
    pub fn observe(&self, kind: &'static str, namespace: &str, seconds: f64, ok: bool) {
        let labels = ResourceLabels {
            kind,
            namespace: namespace.to_string(),
        };
        self.reconciliations.get_or_create(&labels).inc();
        if ok {
            self.successful.get_or_create(&labels).inc();
        } else {
            self.failed.get_or_create(&labels).inc();
        }
        self.duration
            .get_or_create(&KindLabel { kind })
            .observe(seconds);
    }

    /// How many reconciliations of `kind` in `namespace` were counted (for tests).
    pub fn reconciliations(&self, kind: &'static str, namespace: &str) -> u64 {
        self.reconciliations
            .get_or_create(&ResourceLabels {
                kind,
                namespace: namespace.to_string(),
            })
            .get()
    }
}

/// Runs one reconciliation `pass` of a `kind` in `namespace` and counts it.
pub async fn metered<T, E>(
    kind: &'static str,
    namespace: Option<String>,
    pass: impl Future<Output = Result<T, E>>,
) -> Result<T, E> {
    let started = Instant::now();
    let result = pass.await;
    metrics().observe(
        kind,
        namespace.as_deref().unwrap_or(""),
        started.elapsed().as_secs_f64(),
        result.is_ok(),
    );
    result
}

/// The exporter of the operator's metrics.
pub fn exporter() -> Arc<Exporter> {
    let mut registry = Registry::default();
    let m = metrics();
    registry.register(
        "oxbow_reconciliations",
        "Reconciliations run, by kind and namespace",
        m.reconciliations.clone(),
    );
    registry.register(
        "oxbow_reconciliations_successful",
        "Reconciliations that succeeded",
        m.successful.clone(),
    );
    registry.register(
        "oxbow_reconciliations_failed",
        "Reconciliations that failed (retried with backoff)",
        m.failed.clone(),
    );
    registry.register(
        "oxbow_reconciliations_duration_seconds",
        "How long a reconciliation pass took, by kind",
        m.duration.clone(),
    );
    Arc::new(Exporter::new(registry, || {}))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn passes_are_counted_by_outcome_and_rendered_with_strimzis_shape() {
        let ok: Result<(), ()> = metered("KafkaTopic", Some("m-ns".into()), async { Ok(()) }).await;
        let failed: Result<(), ()> =
            metered("KafkaTopic", Some("m-ns".into()), async { Err(()) }).await;
        assert!(ok.is_ok() && failed.is_err());
        assert_eq!(metrics().reconciliations("KafkaTopic", "m-ns"), 2);
        let text = exporter().render();
        for line in [
            "oxbow_reconciliations_total{kind=\"KafkaTopic\",namespace=\"m-ns\"} 2",
            "oxbow_reconciliations_successful_total{kind=\"KafkaTopic\",namespace=\"m-ns\"} 1",
            "oxbow_reconciliations_failed_total{kind=\"KafkaTopic\",namespace=\"m-ns\"} 1",
            "oxbow_reconciliations_duration_seconds_count{kind=\"KafkaTopic\"} 2",
        ] {
            assert!(
                text.lines().any(|l| l == line),
                "{line} missing from\n{text}"
            );
        }
    }
}
