//! The broker's Prometheus metrics, served on `oxbow.metrics.listener` (off by default).
//!
//! Names are the ones Strimzi's JMX Prometheus exporter rules give Apache Kafka's own
//! metrics (`kafka_server_replicamanager_underreplicatedpartitions`,
//! `kafka_network_requestmetrics_requests_total{request="Produce",version="9"}`, …), so
//! dashboards and alerts written for a Strimzi-run Kafka read an Oxbow broker unchanged.
//! Request latency, which Kafka exposes as JMX percentiles, is a histogram here:
//! `oxbow_request_duration_seconds{request}`.
//!
//! The counters are process-wide (as Kafka's Yammer registry is): one broker runs per process
//! in production. The gauges are computed at each scrape from this broker's metadata image.

use std::collections::HashMap;
use std::sync::atomic::AtomicU64;
use std::sync::{Arc, LazyLock, OnceLock, Weak};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;
use oxbow_metrics::Exporter;
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::metrics::histogram::{exponential_buckets, Histogram};
use prometheus_client::registry::Registry;

use crate::broker::Broker;
use crate::metadata::MetadataImage;

/// Labels of the per-request counters: Kafka's API name and the version asked for.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    /// Kafka's name of the API (`Produce`, `Fetch`, `Metadata`, …).
    pub request: &'static str,
    /// The request's API version.
    pub version: i16,
}

/// Labels of the request latency histogram.
#[derive(Clone, Debug, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct ApiLabel {
    /// Kafka's name of the API.
    pub request: &'static str,
}

type Count = Counter<u64, AtomicU64>;
type Level = Gauge<i64, std::sync::atomic::AtomicI64>;

/// Every metric the broker keeps (see the module documentation for the names).
pub struct BrokerMetrics {
    requests: Family<RequestLabels, Count>,
    request_seconds: Family<ApiLabel, Histogram>,
    messages_in: Count,
    bytes_in: Count,
    bytes_out: Count,
    replication_bytes_out: Count,
    isr_shrinks: Count,
    isr_expands: Count,
    partitions: Level,
    leaders: Level,
    under_replicated: Level,
    under_min_isr: Level,
    active_controller: Level,
    offline_partitions: Level,
    global_partitions: Level,
    global_topics: Level,
}

static METRICS: LazyLock<BrokerMetrics> = LazyLock::new(BrokerMetrics::default);

/// The process' broker metrics.
pub fn metrics() -> &'static BrokerMetrics {
    &METRICS
}

impl Default for BrokerMetrics {
    fn default() -> Self {
        BrokerMetrics {
            requests: Family::default(),
            // 0.1 ms to ~105 s: a fetch may wait up to its max wait (500 ms by default) and
            // an acks=all produce up to its timeout (30 s).
            request_seconds: Family::new_with_constructor(|| {
                Histogram::new(exponential_buckets(0.0001, 4.0, 11))
            }),
            messages_in: Count::default(),
            bytes_in: Count::default(),
            bytes_out: Count::default(),
            replication_bytes_out: Count::default(),
            isr_shrinks: Count::default(),
            isr_expands: Count::default(),
            partitions: Level::default(),
            leaders: Level::default(),
            under_replicated: Level::default(),
            under_min_isr: Level::default(),
            active_controller: Level::default(),
            offline_partitions: Level::default(),
            global_partitions: Level::default(),
            global_topics: Level::default(),
        }
    }
}

/// Kafka's name of an API (`ApiKey`'s variant names are Kafka's request names).
fn api_name(key: ApiKey) -> &'static str {
    static NAMES: OnceLock<std::sync::Mutex<HashMap<i16, &'static str>>> = OnceLock::new();
    let names = NAMES.get_or_init(Default::default);
    let mut names = names.lock().unwrap_or_else(|p| p.into_inner());
    // At most one small string per API key is ever made, so leaking it is bounded.
    names
        .entry(key as i16)
        .or_insert_with(|| Box::leak(format!("{key:?}").into_boxed_str()))
}

impl BrokerMetrics {
    /// Counts a request of `key` at `version` that took `took` to answer.
    pub fn observe_request(&self, key: ApiKey, version: i16, took: Duration) {
        let request = api_name(key);
        self.requests
            .get_or_create(&RequestLabels { request, version })
            .inc();
        self.request_seconds
            .get_or_create(&ApiLabel { request })
            .observe(took.as_secs_f64());
    }

    /// Counts an append from a producer: `records` records in `bytes` bytes.
    pub fn produced(&self, records: u64, bytes: u64) {
        self.messages_in.inc_by(records);
        self.bytes_in.inc_by(bytes);
    }

    /// Counts `bytes` of records sent in a fetch response, to a follower (`replication`) or
    /// to a consumer.
    pub fn fetched(&self, bytes: u64, replication: bool) {
        if replication {
            self.replication_bytes_out.inc_by(bytes);
        } else {
            self.bytes_out.inc_by(bytes);
        }
    }

    /// Counts an ISR shrink proposed by a leader.
    pub fn isr_shrunk(&self) {
        self.isr_shrinks.inc();
    }

    /// Counts an ISR expansion proposed by a leader.
    pub fn isr_expanded(&self) {
        self.isr_expands.inc();
    }

    /// Sets the gauges from broker `me`'s view: `image`, `min_isr` (the broker default; a
    /// topic's own `min.insync.replicas` override wins) and the active controller's id.
    pub fn refresh(
        &self,
        me: i32,
        image: &MetadataImage,
        default_min_isr: i32,
        active_controller: Option<i32>,
    ) {
        let g = gauges(me, image, default_min_isr, active_controller == Some(me));
        self.partitions.set(g.partitions);
        self.leaders.set(g.leaders);
        self.under_replicated.set(g.under_replicated);
        self.under_min_isr.set(g.under_min_isr);
        self.active_controller.set(i64::from(g.active));
        self.offline_partitions.set(g.offline);
        self.global_partitions.set(g.global_partitions);
        self.global_topics.set(g.global_topics);
    }

    fn register(&'static self, r: &mut Registry) {
        r.register(
            "kafka_network_requestmetrics_requests",
            "Requests received, by API and version",
            self.requests.clone(),
        );
        r.register(
            "oxbow_request_duration_seconds",
            "Time from a request's arrival to its response, by API",
            self.request_seconds.clone(),
        );
        r.register(
            "kafka_server_brokertopicmetrics_messagesin",
            "Records appended from producers",
            self.messages_in.clone(),
        );
        r.register(
            "kafka_server_brokertopicmetrics_bytesin",
            "Record bytes appended from producers",
            self.bytes_in.clone(),
        );
        r.register(
            "kafka_server_brokertopicmetrics_bytesout",
            "Record bytes sent to consumers",
            self.bytes_out.clone(),
        );
        r.register(
            "kafka_server_brokertopicmetrics_replicationbytesout",
            "Record bytes sent to followers",
            self.replication_bytes_out.clone(),
        );
        r.register(
            "kafka_server_replicamanager_isrshrinks",
            "ISR shrinks proposed by this broker as leader",
            self.isr_shrinks.clone(),
        );
        r.register(
            "kafka_server_replicamanager_isrexpands",
            "ISR expansions proposed by this broker as leader",
            self.isr_expands.clone(),
        );
        r.register(
            "kafka_server_replicamanager_partitioncount",
            "Partitions with a replica on this broker",
            self.partitions.clone(),
        );
        r.register(
            "kafka_server_replicamanager_leadercount",
            "Partitions this broker leads",
            self.leaders.clone(),
        );
        r.register(
            "kafka_server_replicamanager_underreplicatedpartitions",
            "Partitions this broker leads whose ISR is smaller than their replica set",
            self.under_replicated.clone(),
        );
        r.register(
            "kafka_server_replicamanager_underminisrpartitioncount",
            "Partitions this broker leads whose ISR is below min.insync.replicas",
            self.under_min_isr.clone(),
        );
        r.register(
            "kafka_controller_kafkacontroller_activecontrollercount",
            "1 on the active controller, 0 elsewhere",
            self.active_controller.clone(),
        );
        r.register(
            "kafka_controller_kafkacontroller_offlinepartitionscount",
            "Partitions without a leader (reported by the active controller only)",
            self.offline_partitions.clone(),
        );
        r.register(
            "kafka_controller_kafkacontroller_globalpartitioncount",
            "Partitions in the cluster (reported by the active controller only)",
            self.global_partitions.clone(),
        );
        r.register(
            "kafka_controller_kafkacontroller_globaltopiccount",
            "Topics in the cluster (reported by the active controller only)",
            self.global_topics.clone(),
        );
    }
}

/// The gauge values of one scrape.
#[derive(Debug, Default, PartialEq, Eq)]
struct Gauges {
    partitions: i64,
    leaders: i64,
    under_replicated: i64,
    under_min_isr: i64,
    active: bool,
    offline: i64,
    global_partitions: i64,
    global_topics: i64,
}

/// Computes the gauges from the image, as Kafka's ReplicaManager (for what this broker
/// hosts and leads) and QuorumController (cluster-wide, active controller only) report them.
fn gauges(me: i32, image: &MetadataImage, default_min_isr: i32, active: bool) -> Gauges {
    let mut g = Gauges {
        active,
        ..Gauges::default()
    };
    for topic in image.topics.values() {
        let min_isr = topic
            .configs
            .get("min.insync.replicas")
            .and_then(|v| v.parse::<i32>().ok())
            .unwrap_or(default_min_isr);
        for p in &topic.partitions {
            if p.replicas.contains(&me) {
                g.partitions += 1;
            }
            if p.leader == me {
                g.leaders += 1;
                if p.isr.len() < p.replicas.len() {
                    g.under_replicated += 1;
                }
                if (p.isr.len() as i32) < min_isr {
                    g.under_min_isr += 1;
                }
            }
        }
        if active {
            g.global_topics += 1;
            g.global_partitions += topic.partitions.len() as i64;
            g.offline += topic.partitions.iter().filter(|p| p.leader < 0).count() as i64;
        }
    }
    g
}

/// The exporter of this process' broker metrics, its gauges refreshed from `broker` at each
/// scrape (nothing is refreshed once the broker is gone).
pub fn exporter(broker: Weak<Broker>) -> Arc<Exporter> {
    let mut registry = Registry::default();
    metrics().register(&mut registry);
    Arc::new(Exporter::new(registry, move || {
        if let Some(b) = broker.upgrade() {
            metrics().refresh(
                b.node_id(),
                &b.image(),
                b.effective_config().min_insync_replicas,
                b.active_controller(),
            );
        }
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{PartitionState, TopicImage};

    fn partition(replicas: &[i32], isr: &[i32], leader: i32) -> PartitionState {
        PartitionState {
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            leader,
            ..PartitionState::default()
        }
    }

    fn topic(name: &str) -> TopicImage {
        TopicImage {
            name: name.into(),
            id: uuid::Uuid::nil(),
            partitions: Vec::new(),
            configs: Default::default(),
        }
    }

    #[test]
    fn gauges_count_what_this_broker_hosts_and_leads_and_the_controller_counts_the_cluster() {
        let mut image = MetadataImage::default();
        let mut t = topic("t");
        t.partitions = vec![
            partition(&[1, 2, 3], &[1, 2, 3], 1), // led, in sync
            partition(&[1, 2, 3], &[1], 1),       // led, under-replicated, under min ISR 2
            partition(&[2, 3, 1], &[2, 3], 2),    // hosted, led elsewhere
            partition(&[2, 3, 4], &[], -1),       // offline, not hosted
        ];
        image.topics.insert("t".into(), t);
        let mut one = topic("one");
        one.configs.insert("min.insync.replicas".into(), "1".into());
        one.partitions = vec![partition(&[1, 2], &[1], 1)]; // under-replicated, not under 1
        image.topics.insert("one".into(), one);

        let g = gauges(1, &image, 2, true);
        assert_eq!(
            g,
            Gauges {
                partitions: 4,
                leaders: 3,
                under_replicated: 2,
                under_min_isr: 1,
                active: true,
                offline: 1,
                global_partitions: 5,
                global_topics: 2,
            }
        );
        let follower = gauges(3, &image, 2, false);
        assert_eq!((follower.partitions, follower.leaders), (4, 0));
        assert_eq!((follower.offline, follower.global_topics), (0, 0));
    }

    #[test]
    fn requests_are_counted_by_kafkas_api_name_and_version() {
        let m = BrokerMetrics::default();
        m.observe_request(ApiKey::Produce, 9, Duration::from_millis(3));
        m.observe_request(ApiKey::Produce, 9, Duration::from_millis(5));
        let labels = RequestLabels {
            request: "Produce",
            version: 9,
        };
        assert_eq!(m.requests.get_or_create(&labels).get(), 2);
    }
}
