//! Broker configuration: Kafka 4.1's broker keys with their defaults, and [`BrokerConfig`],
//! the typed view the broker runs with, built from `server.properties` plus overrides.

use std::collections::{BTreeMap, BTreeSet};
use std::fmt;
use std::path::{Path, PathBuf};

use super::error::ConfigError;
use super::properties::parse_properties;
use super::quorum::QuorumConfig;
use super::topic::build_log_config;
use super::types::{parse_value, ConfigType, Layers, Validator, Value};
use crate::log::LogConfig;

/// Whether and how a broker key can be changed at runtime (Kafka's "Dynamic update mode").
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UpdateMode {
    /// Only from `server.properties`; DescribeConfigs reports `read_only = true`.
    ReadOnly,
    /// Dynamically, per broker (resource name = node id).
    PerBroker,
    /// Dynamically, per broker or as a cluster-wide default (resource name "").
    ClusterWide,
}

impl UpdateMode {
    /// Kafka's wording: `read-only`, `per-broker` or `cluster-wide`.
    pub fn as_str(self) -> &'static str {
        match self {
            UpdateMode::ReadOnly => "read-only",
            UpdateMode::PerBroker => "per-broker",
            UpdateMode::ClusterWide => "cluster-wide",
        }
    }
}

/// One known broker configuration key, as Kafka 4.1 defines it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BrokerConfigKey {
    /// The key, e.g. `log.retention.hours`.
    pub name: &'static str,
    /// Its type.
    pub config_type: ConfigType,
    /// The default exactly as Kafka prints it; `None` for Kafka's `null`.
    pub default: Option<&'static str>,
    /// The value check applied when the key is set.
    pub validator: Validator,
    /// Whether it is dynamically updatable.
    pub update_mode: UpdateMode,
    /// One sentence describing the key.
    pub documentation: &'static str,
}

use ConfigType as T;
use UpdateMode::{ClusterWide as CW, PerBroker as PB, ReadOnly as RO};
use Validator as V;

const fn k(
    name: &'static str,
    config_type: ConfigType,
    default: Option<&'static str>,
    validator: Validator,
    update_mode: UpdateMode,
    documentation: &'static str,
) -> BrokerConfigKey {
    BrokerConfigKey {
        name,
        config_type,
        default,
        validator,
        update_mode,
        documentation,
    }
}

const LONG_MAX: Option<&str> = Some("9223372036854775807");
const INT_MAX: Option<&str> = Some("2147483647");
const SECURITY_PROTOCOLS: &[&str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];
pub(crate) const COMPRESSION_TYPES: &[&str] =
    &["uncompressed", "zstd", "lz4", "snappy", "gzip", "producer"];
pub(crate) const CLEANUP_POLICIES: &[&str] = &["compact", "delete"];
pub(crate) const TIMESTAMP_TYPES: &[&str] = &["CreateTime", "LogAppendTime"];
/// Default of `listener.security.protocol.map`, as Kafka prints it.
pub const DEFAULT_LISTENER_SECURITY_PROTOCOL_MAP: &str =
    "SASL_SSL:SASL_SSL,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT";

/// Kafka's broker keys (a broad, commonly used subset of Kafka 4.1's), sorted by name.
#[rustfmt::skip]
static BROKER_CONFIGS: &[BrokerConfigKey] = &[
    k("advertised.listeners", T::String, None, V::None, PB, "Listeners published to clients in metadata, if different from listeners."),
    k("authorizer.class.name", T::String, Some(""), V::None, RO, "Authorizer class; Oxbow has no authorizer and ignores it."),
    k("auto.create.topics.enable", T::Boolean, Some("true"), V::None, RO, "Create a topic automatically when a client asks for metadata of an unknown one."),
    k("auto.leader.rebalance.enable", T::Boolean, Some("true"), V::None, RO, "Periodically move leadership back to preferred replicas."),
    k("background.threads", T::Int, Some("10"), V::AtLeast(1), CW, "Threads for background processing tasks."),
    k("broker.heartbeat.interval.ms", T::Int, Some("2000"), V::None, RO, "Milliseconds between broker heartbeats to the controller."),
    k("broker.id", T::Int, Some("-1"), V::None, RO, "Broker id; an alias of node.id."),
    k("broker.rack", T::String, None, V::None, RO, "Rack of the broker, for rack-aware replica placement."),
    k("broker.session.timeout.ms", T::Int, Some("9000"), V::None, RO, "How long a broker lease lasts without heartbeats."),
    k("compression.gzip.level", T::Int, Some("-1"), V::GzipLevel, CW, "Compression level for gzip."),
    k("compression.lz4.level", T::Int, Some("9"), V::Between(1, 17), CW, "Compression level for lz4."),
    k("compression.type", T::String, Some("producer"), V::OneOf(COMPRESSION_TYPES), CW, "Final compression of topic data; producer keeps the producer's codec."),
    k("compression.zstd.level", T::Int, Some("3"), V::Between(-131072, 22), CW, "Compression level for zstd."),
    k("connection.failed.authentication.delay.ms", T::Int, Some("100"), V::AtLeast(0), RO, "Delay before closing a connection that failed authentication."),
    k("connections.max.idle.ms", T::Long, Some("600000"), V::None, RO, "Close connections idle for longer than this."),
    k("controlled.shutdown.enable", T::Boolean, Some("true"), V::None, RO, "Move leadership away before shutting down."),
    k("controller.listener.names", T::String, None, V::None, RO, "Names of the listeners used by the controller."),
    k("controller.quorum.append.linger.ms", T::Int, Some("25"), V::None, RO, "How long the quorum leader waits to batch writes."),
    k("controller.quorum.bootstrap.servers", T::List, Some(""), V::None, RO, "Endpoints used to discover the controller quorum."),
    k("controller.quorum.election.backoff.max.ms", T::Int, Some("1000"), V::None, RO, "Maximum backoff before starting a new election."),
    k("controller.quorum.election.timeout.ms", T::Int, Some("1000"), V::None, RO, "Time without a leader before an election starts."),
    k("controller.quorum.fetch.timeout.ms", T::Int, Some("2000"), V::None, RO, "Time without a successful fetch before a voter becomes a candidate."),
    k("controller.quorum.request.timeout.ms", T::Int, Some("2000"), V::None, RO, "Timeout for quorum requests."),
    k("controller.quorum.retry.backoff.ms", T::Int, Some("20"), V::None, RO, "Backoff before retrying a failed quorum request."),
    k("controller.quorum.voters", T::List, Some(""), V::None, RO, "Static controller quorum voters, as id@host:port."),
    k("controller.socket.timeout.ms", T::Int, Some("30000"), V::None, RO, "Socket timeout for controller-to-broker channels."),
    k("default.replication.factor", T::Int, Some("1"), V::None, RO, "Replication factor of automatically created topics."),
    k("delete.records.purgatory.purge.interval.requests", T::Int, Some("1"), V::None, RO, "Purge interval of the delete-records purgatory."),
    k("delete.topic.enable", T::Boolean, Some("true"), V::None, RO, "Allow topics to be deleted."),
    k("early.start.listeners", T::String, None, V::None, RO, "Listeners started before authorizer initialisation."),
    k("fetch.max.bytes", T::Int, Some("57671680"), V::AtLeast(1024), RO, "Maximum bytes returned for a fetch request."),
    k("fetch.purgatory.purge.interval.requests", T::Int, Some("1000"), V::None, RO, "Purge interval of the fetch purgatory."),
    k("group.consumer.heartbeat.interval.ms", T::Int, Some("5000"), V::AtLeast(1), RO, "Heartbeat interval of consumer-protocol group members."),
    k("group.consumer.max.heartbeat.interval.ms", T::Int, Some("15000"), V::AtLeast(1), RO, "Maximum heartbeat interval of consumer-protocol groups."),
    k("group.consumer.max.session.timeout.ms", T::Int, Some("60000"), V::AtLeast(1), RO, "Maximum session timeout of consumer-protocol groups."),
    k("group.consumer.max.size", T::Int, INT_MAX, V::AtLeast(1), RO, "Maximum members of a consumer-protocol group."),
    k("group.consumer.migration.policy", T::String, Some("bidirectional"), V::OneOfIgnoreCase(&["disabled", "upgrade", "downgrade", "bidirectional"]), RO, "Which online conversions between classic and consumer groups are allowed."),
    k("group.consumer.min.heartbeat.interval.ms", T::Int, Some("5000"), V::AtLeast(1), RO, "Minimum heartbeat interval of consumer-protocol groups."),
    k("group.consumer.min.session.timeout.ms", T::Int, Some("45000"), V::AtLeast(1), RO, "Minimum session timeout of consumer-protocol groups."),
    k("group.consumer.session.timeout.ms", T::Int, Some("45000"), V::AtLeast(1), RO, "Session timeout of consumer-protocol group members."),
    k("group.coordinator.rebalance.protocols", T::List, Some("classic,consumer"), V::ListOf(&["classic", "consumer", "share", "streams"]), RO, "Rebalance protocols the group coordinator enables."),
    k("group.initial.rebalance.delay.ms", T::Int, Some("3000"), V::None, RO, "Delay of the first rebalance of an empty classic group."),
    k("group.max.session.timeout.ms", T::Int, Some("1800000"), V::None, RO, "Maximum session timeout of classic group members."),
    k("group.max.size", T::Int, INT_MAX, V::AtLeast(1), RO, "Maximum members of a classic group."),
    k("group.min.session.timeout.ms", T::Int, Some("6000"), V::None, RO, "Minimum session timeout of classic group members."),
    k("initial.broker.registration.timeout.ms", T::Int, Some("60000"), V::None, RO, "How long to wait for the initial broker registration."),
    k("inter.broker.listener.name", T::String, None, V::None, RO, "Listener used between brokers."),
    k("leader.imbalance.check.interval.seconds", T::Long, Some("300"), V::AtLeast(1), RO, "Interval of the partition rebalance check."),
    k("leader.imbalance.per.broker.percentage", T::Int, Some("10"), V::None, RO, "Allowed leader imbalance per broker, in percent."),
    k("listener.security.protocol.map", T::String, Some(DEFAULT_LISTENER_SECURITY_PROTOCOL_MAP), V::None, PB, "Map from listener names to security protocols."),
    k("listeners", T::String, Some("PLAINTEXT://:9092"), V::None, PB, "Comma-separated listener URIs the broker binds, NAME://host:port."),
    k("log.cleaner.backoff.ms", T::Long, Some("15000"), V::AtLeast(0), CW, "Sleep of the log cleaner when there is nothing to clean."),
    k("log.cleaner.dedupe.buffer.size", T::Long, Some("134217728"), V::None, CW, "Memory for log deduplication across cleaner threads."),
    k("log.cleaner.delete.retention.ms", T::Long, Some("86400000"), V::AtLeast(0), CW, "Default retention of delete tombstones on compacted topics."),
    k("log.cleaner.enable", T::Boolean, Some("true"), V::None, RO, "Run the log cleaner."),
    k("log.cleaner.io.buffer.load.factor", T::Double, Some("0.9"), V::None, CW, "Load factor of the cleaner's dedupe buffer."),
    k("log.cleaner.io.buffer.size", T::Int, Some("524288"), V::AtLeast(0), CW, "I/O buffer memory of the cleaner threads."),
    k("log.cleaner.io.max.bytes.per.second", T::Double, Some("1.7976931348623157E308"), V::None, CW, "I/O throttle of the log cleaner."),
    k("log.cleaner.max.compaction.lag.ms", T::Long, LONG_MAX, V::AtLeast(1), CW, "Maximum time a message stays uncompacted."),
    k("log.cleaner.min.cleanable.ratio", T::Double, Some("0.5"), V::Between(0, 1), CW, "Minimum dirty ratio for a log to be cleaned."),
    k("log.cleaner.min.compaction.lag.ms", T::Long, Some("0"), V::AtLeast(0), CW, "Minimum time a message stays uncompacted."),
    k("log.cleaner.threads", T::Int, Some("1"), V::AtLeast(0), CW, "Number of log cleaner threads."),
    k("log.cleanup.policy", T::List, Some("delete"), V::ListOf(CLEANUP_POLICIES), CW, "Default cleanup policy of topics: delete and/or compact."),
    k("log.dir", T::String, Some("/tmp/kafka-logs"), V::None, RO, "Data directory, used when log.dirs is not set."),
    k("log.dir.failure.timeout.ms", T::Long, Some("30000"), V::AtLeast(1), RO, "Time before a failed log directory shuts the broker down."),
    k("log.dirs", T::String, None, V::None, RO, "Comma-separated data directories."),
    k("log.flush.interval.messages", T::Long, LONG_MAX, V::AtLeast(1), CW, "Messages accumulated on a partition before a flush."),
    k("log.flush.interval.ms", T::Long, None, V::None, CW, "Maximum time data stays in memory before a flush."),
    k("log.flush.offset.checkpoint.interval.ms", T::Int, Some("60000"), V::AtLeast(0), RO, "Interval of the recovery-point checkpoint."),
    k("log.flush.scheduler.interval.ms", T::Long, LONG_MAX, V::None, RO, "Interval of the log flusher's check."),
    k("log.flush.start.offset.checkpoint.interval.ms", T::Int, Some("60000"), V::AtLeast(0), RO, "Interval of the log-start-offset checkpoint."),
    k("log.index.interval.bytes", T::Int, Some("4096"), V::AtLeast(0), CW, "Bytes between offset index entries."),
    k("log.index.size.max.bytes", T::Int, Some("10485760"), V::AtLeast(4), CW, "Maximum size of an offset index file."),
    k("log.local.retention.bytes", T::Long, Some("-2"), V::AtLeast(-2), CW, "Local retention size for tiered topics; -2 = retention.bytes."),
    k("log.local.retention.ms", T::Long, Some("-2"), V::AtLeast(-2), CW, "Local retention time for tiered topics; -2 = retention.ms."),
    k("log.message.timestamp.after.max.ms", T::Long, Some("3600000"), V::AtLeast(0), CW, "How far in the future a record timestamp may be."),
    k("log.message.timestamp.before.max.ms", T::Long, LONG_MAX, V::AtLeast(0), CW, "How far in the past a record timestamp may be."),
    k("log.message.timestamp.type", T::String, Some("CreateTime"), V::OneOf(TIMESTAMP_TYPES), CW, "Default timestamp type: CreateTime or LogAppendTime."),
    k("log.preallocate", T::Boolean, Some("false"), V::None, CW, "Preallocate segment files."),
    k("log.retention.bytes", T::Long, Some("-1"), V::None, CW, "Maximum size of a partition log before deletion; -1 = unlimited."),
    k("log.retention.check.interval.ms", T::Long, Some("300000"), V::AtLeast(1), RO, "Interval of the retention check."),
    k("log.retention.hours", T::Int, Some("168"), V::None, RO, "Retention in hours; lowest precedence of the retention keys."),
    k("log.retention.minutes", T::Int, None, V::None, RO, "Retention in minutes; overrides log.retention.hours."),
    k("log.retention.ms", T::Long, None, V::None, CW, "Retention in milliseconds; overrides minutes and hours; -1 = unlimited."),
    k("log.roll.hours", T::Int, Some("168"), V::AtLeast(1), RO, "Maximum age of the active segment, in hours."),
    k("log.roll.jitter.hours", T::Int, Some("0"), V::AtLeast(0), RO, "Maximum segment roll jitter, in hours."),
    k("log.roll.jitter.ms", T::Long, None, V::None, CW, "Maximum segment roll jitter, in milliseconds."),
    k("log.roll.ms", T::Long, None, V::None, CW, "Maximum age of the active segment, in milliseconds."),
    k("log.segment.bytes", T::Int, Some("1073741824"), V::AtLeast(1_048_576), CW, "Maximum size of a segment file."),
    k("log.segment.delete.delay.ms", T::Long, Some("60000"), V::AtLeast(0), CW, "Delay before a deleted segment's files are removed."),
    k("max.connection.creation.rate", T::Int, INT_MAX, V::AtLeast(0), CW, "Maximum new connections per second."),
    k("max.connections", T::Int, INT_MAX, V::AtLeast(0), CW, "Maximum open connections."),
    k("max.connections.per.ip", T::Int, INT_MAX, V::AtLeast(0), CW, "Maximum connections from one IP address."),
    k("max.connections.per.ip.overrides", T::String, Some(""), V::None, CW, "Per-IP or per-host connection limits."),
    k("max.incremental.fetch.session.cache.slots", T::Int, Some("1000"), V::AtLeast(0), RO, "Maximum cached incremental fetch sessions."),
    k("message.max.bytes", T::Int, Some("1048588"), V::AtLeast(0), CW, "Largest record batch size accepted, after compression."),
    k("metadata.log.dir", T::String, None, V::None, RO, "Directory of the cluster metadata log."),
    k("metadata.log.max.record.bytes.between.snapshots", T::Long, Some("20971520"), V::AtLeast(1), RO, "Metadata log bytes between snapshots."),
    k("metadata.log.max.snapshot.interval.ms", T::Long, Some("3600000"), V::AtLeast(0), RO, "Maximum time between metadata snapshots."),
    k("metadata.log.segment.bytes", T::Int, Some("1073741824"), V::AtLeast(12), RO, "Segment size of the metadata log."),
    k("metadata.log.segment.ms", T::Long, Some("604800000"), V::None, RO, "Maximum age of a metadata log segment."),
    k("metadata.max.idle.interval.ms", T::Int, Some("500"), V::AtLeast(0), RO, "Interval of no-op records in the metadata log."),
    k("metadata.max.retention.bytes", T::Long, Some("104857600"), V::None, RO, "Retention size of metadata snapshots and log."),
    k("metadata.max.retention.ms", T::Long, Some("604800000"), V::None, RO, "Retention time of metadata snapshots and log."),
    k("metric.reporters", T::List, Some("org.apache.kafka.common.metrics.JmxReporter"), V::None, CW, "Metric reporter classes."),
    k("metrics.num.samples", T::Int, Some("2"), V::AtLeast(1), RO, "Samples kept to compute metrics."),
    k("metrics.recording.level", T::String, Some("INFO"), V::None, RO, "Highest recording level for metrics."),
    k("metrics.sample.window.ms", T::Long, Some("30000"), V::AtLeast(1), RO, "Window of a metrics sample."),
    k("min.insync.replicas", T::Int, Some("1"), V::AtLeast(1), CW, "Minimum in-sync replicas for acks=all writes."),
    k("node.id", T::Int, Some("-1"), V::None, RO, "Node id of this server."),
    k("num.io.threads", T::Int, Some("8"), V::AtLeast(1), CW, "Threads processing requests."),
    k("num.network.threads", T::Int, Some("3"), V::AtLeast(1), CW, "Threads handling network I/O."),
    k("num.partitions", T::Int, Some("1"), V::AtLeast(1), RO, "Default number of partitions of new topics."),
    k("num.recovery.threads.per.data.dir", T::Int, Some("2"), V::AtLeast(1), CW, "Threads per data directory for log recovery and flush at shutdown."),
    k("num.replica.alter.log.dirs.threads", T::Int, None, V::None, RO, "Threads moving replicas between log directories."),
    k("num.replica.fetchers", T::Int, Some("1"), V::None, CW, "Replica fetcher threads per source broker."),
    k("offset.metadata.max.bytes", T::Int, Some("4096"), V::None, RO, "Maximum size of offset commit metadata."),
    k("offsets.commit.timeout.ms", T::Int, Some("5000"), V::AtLeast(1), RO, "Timeout of an offset commit write."),
    k("offsets.load.buffer.size", T::Int, Some("5242880"), V::AtLeast(1), RO, "Batch size for reading the offsets topic."),
    k("offsets.retention.check.interval.ms", T::Long, Some("600000"), V::AtLeast(1), RO, "Interval of the stale-offset check."),
    k("offsets.retention.minutes", T::Int, Some("10080"), V::AtLeast(1), RO, "Retention of committed offsets of empty groups."),
    k("offsets.topic.compression.codec", T::Int, Some("0"), V::None, RO, "Compression codec of the offsets topic."),
    k("offsets.topic.num.partitions", T::Int, Some("50"), V::AtLeast(1), RO, "Partitions of the offsets topic."),
    k("offsets.topic.replication.factor", T::Short, Some("3"), V::AtLeast(1), RO, "Replication factor of the offsets topic."),
    k("offsets.topic.segment.bytes", T::Int, Some("104857600"), V::AtLeast(1), RO, "Segment size of the offsets topic."),
    k("oxbow.advertised.listeners.annotation", T::String, None, V::None, RO, "A pod annotation in oxbow.pod.annotations.file whose value the broker waits for at start and takes as advertised.listeners (Oxbow's own key, for addresses known only once the pod is placed: a node port on its node; unset: off)."),
    k("oxbow.initial.controllers", T::List, Some(""), V::None, RO, "The first voters of a new dynamic quorum, as id@host:port[:directoryId] (Kafka's kafka-storage.sh format --initial-controllers as a key; Oxbow's own key; read only on a pristine metadata log)."),
    k("oxbow.metrics.listener", T::String, None, V::None, RO, "host:port serving Prometheus metrics on /metrics (Oxbow's own key; unset: off)."),
    k("oxbow.pod.annotations.file", T::String, None, V::None, RO, "A Kubernetes downward-API file of the pod's annotations, where oxbow.advertised.listeners.annotation is read (Oxbow's own key; unset: oxbow.rack.annotations.file)."),
    k("oxbow.rack.annotation", T::String, Some(DEFAULT_RACK_ANNOTATION), V::None, RO, "The pod annotation in oxbow.rack.annotations.file whose value becomes broker.rack (Oxbow's own key)."),
    k("oxbow.rack.annotations.file", T::String, None, V::None, RO, "A Kubernetes downward-API file of the pod's annotations; when set and broker.rack is not, the broker waits at start until it holds oxbow.rack.annotation and takes its value as broker.rack (Oxbow's own key; unset: off)."),
    k("principal.builder.class", T::Class, Some("org.apache.kafka.common.security.authenticator.DefaultKafkaPrincipalBuilder"), V::None, PB, "Class building the principal of a connection."),
    k("process.roles", T::List, Some(""), V::ListOf(&["broker", "controller"]), RO, "Roles of this server: broker and/or controller."),
    k("producer.id.expiration.check.interval.ms", T::Int, Some("600000"), V::AtLeast(1), RO, "Interval of the expired producer id check."),
    k("producer.id.expiration.ms", T::Int, Some("86400000"), V::AtLeast(1), CW, "Idle time after which a producer id expires."),
    k("producer.purgatory.purge.interval.requests", T::Int, Some("1000"), V::None, RO, "Purge interval of the produce purgatory."),
    k("queued.max.request.bytes", T::Long, Some("-1"), V::None, RO, "Maximum queued request bytes; -1 = unlimited."),
    k("queued.max.requests", T::Int, Some("500"), V::AtLeast(1), RO, "Maximum queued requests before network threads stop reading."),
    k("remote.log.storage.system.enable", T::Boolean, Some("false"), V::None, RO, "Enable tiered storage."),
    k("replica.fetch.backoff.ms", T::Int, Some("1000"), V::AtLeast(0), RO, "Sleep after a fetch partition error."),
    k("replica.fetch.max.bytes", T::Int, Some("1048576"), V::AtLeast(0), RO, "Bytes fetched per partition by replicas."),
    k("replica.fetch.min.bytes", T::Int, Some("1"), V::None, RO, "Minimum bytes for a replica fetch response."),
    k("replica.fetch.response.max.bytes", T::Int, Some("10485760"), V::AtLeast(0), RO, "Maximum bytes of a replica fetch response."),
    k("replica.fetch.wait.max.ms", T::Int, Some("500"), V::None, RO, "Maximum wait of a replica fetch request."),
    k("replica.high.watermark.checkpoint.interval.ms", T::Long, Some("5000"), V::None, RO, "Interval of the high watermark checkpoint."),
    k("replica.lag.time.max.ms", T::Long, Some("30000"), V::None, RO, "Time after which a lagging follower leaves the ISR."),
    k("replica.selector.class", T::String, None, V::None, RO, "Class selecting the preferred read replica."),
    k("replica.socket.receive.buffer.bytes", T::Int, Some("65536"), V::None, RO, "Socket receive buffer of replica fetchers."),
    k("replica.socket.timeout.ms", T::Int, Some("30000"), V::None, RO, "Socket timeout of replica fetchers."),
    k("request.timeout.ms", T::Int, Some("30000"), V::AtLeast(0), RO, "Timeout of inter-broker and controller requests."),
    k("sasl.enabled.mechanisms", T::List, Some("GSSAPI"), V::None, PB, "SASL mechanisms enabled on the broker."),
    k("sasl.jaas.config", T::Password, None, V::None, PB, "JAAS login configuration."),
    k("sasl.mechanism.controller.protocol", T::String, Some("GSSAPI"), V::None, RO, "SASL mechanism for controller communication."),
    k("sasl.mechanism.inter.broker.protocol", T::String, Some("GSSAPI"), V::None, PB, "SASL mechanism for inter-broker communication."),
    k("security.inter.broker.protocol", T::String, Some("PLAINTEXT"), V::OneOf(SECURITY_PROTOCOLS), RO, "Security protocol between brokers."),
    k("server.max.startup.time.ms", T::Long, LONG_MAX, V::AtLeast(0), RO, "Maximum time to catch up with the metadata log at startup."),
    k("socket.connection.setup.timeout.max.ms", T::Long, Some("30000"), V::None, RO, "Maximum connection setup timeout."),
    k("socket.connection.setup.timeout.ms", T::Long, Some("10000"), V::None, RO, "Initial connection setup timeout."),
    k("socket.listen.backlog.size", T::Int, Some("50"), V::AtLeast(1), RO, "Backlog of pending connections."),
    k("socket.receive.buffer.bytes", T::Int, Some("102400"), V::None, RO, "SO_RCVBUF of server sockets; -1 = OS default."),
    k("socket.request.max.bytes", T::Int, Some("104857600"), V::AtLeast(1), RO, "Largest request accepted on a socket."),
    k("socket.send.buffer.bytes", T::Int, Some("102400"), V::None, RO, "SO_SNDBUF of server sockets; -1 = OS default."),
    k("ssl.client.auth", T::String, Some("none"), V::OneOf(&["required", "requested", "none"]), PB, "Whether TLS client authentication is required."),
    k("ssl.enabled.protocols", T::List, Some("TLSv1.2,TLSv1.3"), V::None, PB, "TLS protocols enabled."),
    k("ssl.endpoint.identification.algorithm", T::String, Some("https"), V::None, PB, "Server host name verification algorithm."),
    k("ssl.key.password", T::Password, None, V::None, PB, "Password of the private key."),
    k("ssl.keystore.location", T::String, None, V::None, PB, "Key store file location."),
    k("ssl.keystore.password", T::Password, None, V::None, PB, "Key store password."),
    k("ssl.keystore.type", T::String, Some("JKS"), V::None, PB, "Key store format."),
    k("ssl.protocol", T::String, Some("TLSv1.3"), V::None, PB, "TLS protocol used to create the SSL context."),
    k("ssl.truststore.location", T::String, None, V::None, PB, "Trust store file location."),
    k("ssl.truststore.password", T::Password, None, V::None, PB, "Trust store password."),
    k("ssl.truststore.type", T::String, Some("JKS"), V::None, PB, "Trust store format."),
    k("transaction.abort.timed.out.transaction.cleanup.interval.ms", T::Int, Some("10000"), V::AtLeast(1), RO, "Interval of the timed-out transaction check."),
    k("transaction.max.timeout.ms", T::Int, Some("900000"), V::AtLeast(1), RO, "Maximum transaction timeout a producer may request."),
    k("transaction.partition.verification.enable", T::Boolean, Some("true"), V::None, CW, "Verify that a partition was added to a transaction before writes."),
    k("transaction.remove.expired.transaction.cleanup.interval.ms", T::Int, Some("3600000"), V::AtLeast(1), RO, "Interval of the expired transactional id check."),
    k("transaction.state.log.load.buffer.size", T::Int, Some("5242880"), V::AtLeast(1), RO, "Batch size for reading the transaction log."),
    k("transaction.state.log.min.isr", T::Int, Some("2"), V::AtLeast(1), RO, "min.insync.replicas of the transaction topic."),
    k("transaction.state.log.num.partitions", T::Int, Some("50"), V::AtLeast(1), RO, "Partitions of the transaction topic."),
    k("transaction.state.log.replication.factor", T::Short, Some("3"), V::AtLeast(1), RO, "Replication factor of the transaction topic."),
    k("transaction.state.log.segment.bytes", T::Int, Some("104857600"), V::AtLeast(1), RO, "Segment size of the transaction topic."),
    k("transactional.id.expiration.ms", T::Int, Some("604800000"), V::AtLeast(1), RO, "Idle time after which a transactional id expires."),
    k("unclean.leader.election.enable", T::Boolean, Some("false"), V::None, CW, "Allow out-of-sync replicas to become leader."),
    k("unclean.leader.election.interval.ms", T::Long, Some("300000"), V::AtLeast(1), RO, "Interval of the unclean leader election check."),
];

/// Security keys Kafka lets change dynamically only with a `listener.name.<l>.` prefix.
pub(crate) const LISTENER_ONLY_DYNAMIC: &[&str] = &[
    "ssl.keystore.type",
    "ssl.keystore.location",
    "ssl.keystore.password",
    "ssl.key.password",
    "ssl.truststore.type",
    "ssl.truststore.location",
    "ssl.truststore.password",
];

/// Keys Oxbow accepts without a warning although Kafka does not define them.
pub const OXBOW_EXTRA_KEYS: &[&str] = &["cluster.id", MAX_PARTITIONS_KEY, SEGMENT_CACHE_SLOTS_KEY];

/// `oxbow.initial.controllers`: the first voters of a new dynamic quorum (see
/// [`QuorumConfig::initial_controllers`]).
pub const INITIAL_CONTROLLERS_KEY: &str = "oxbow.initial.controllers";

/// Oxbow's key naming the downward-API file of the pod's annotations that `broker.rack` is
/// read from (see [`BrokerConfig::rack_annotations_file`]).
pub const RACK_ANNOTATIONS_FILE_KEY: &str = "oxbow.rack.annotations.file";

/// Oxbow's key naming the annotation of that file that holds the rack.
pub const RACK_ANNOTATION_KEY: &str = "oxbow.rack.annotation";

/// The key naming the pod annotation taken as `advertised.listeners` (see
/// [`BrokerConfig::advertised_listeners_annotation`]).
pub(super) const ADVERTISED_LISTENERS_ANNOTATION_KEY: &str =
    "oxbow.advertised.listeners.annotation";

/// Default of [`RACK_ANNOTATION_KEY`]: the annotation oxbow-operator writes on each broker pod
/// from its node's `spec.rack.topologyKey` label.
pub const DEFAULT_RACK_ANNOTATION: &str = "oxbow.dev/rack";

/// Oxbow extra key: the most partitions this broker hosts (all topics, internal ones
/// included); partition-creating requests beyond it get POLICY_VIOLATION. Requests are also
/// checked against the open files limit (`crate::fd_budget`), whichever is lower.
pub const MAX_PARTITIONS_KEY: &str = "oxbow.max.partitions";

/// Default of [`MAX_PARTITIONS_KEY`].
pub const DEFAULT_MAX_PARTITIONS: u64 = 20_000;

/// Oxbow extra key: how many rolled segments' `.log` files stay open in the broker-wide
/// cache (`crate::log::segment_files`); the least recently used beyond it are closed and
/// reopened when read. Named after Kafka's `max.incremental.fetch.session.cache.slots`.
/// Not set: derived from the open files limit (`crate::fd_budget::default_segment_cache_slots`).
pub const SEGMENT_CACHE_SLOTS_KEY: &str = "oxbow.max.segment.cache.slots";

/// Every known broker key, sorted by name.
pub fn broker_config_keys() -> &'static [BrokerConfigKey] {
    BROKER_CONFIGS
}

/// The definition of broker key `name`, if Kafka knows it.
pub fn broker_config_key(name: &str) -> Option<&'static BrokerConfigKey> {
    BROKER_CONFIGS
        .binary_search_by(|d| d.name.cmp(name))
        .ok()
        .map(|i| &BROKER_CONFIGS[i])
}

/// Whether `name` is accepted silently: a known key, an Oxbow extra or a
/// `listener.name.<listener>.<key>` override.
pub(crate) fn is_accepted_key(name: &str) -> bool {
    broker_config_key(name).is_some()
        || OXBOW_EXTRA_KEYS.contains(&name)
        || name.starts_with("listener.name.")
}

/// Checks one raw broker value against its definition (unknown keys pass).
pub(crate) fn check_broker_value(name: &str, raw: &str) -> Result<(), ConfigError> {
    match broker_config_key(name) {
        Some(def) => parse_value(name, raw, def.config_type, def.validator).map(|_| ()),
        None => Ok(()),
    }
}

/// One listener endpoint: `NAME://host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// Listener name, upper-cased (e.g. `PLAINTEXT`).
    pub name: String,
    /// Host or IP without brackets; `0.0.0.0` when the URI left the host empty
    /// (bind on every interface).
    pub host: String,
    /// TCP port; 0 asks the OS for an ephemeral port.
    pub port: u16,
}

impl Listener {
    /// `host:port`, with IPv6 hosts in brackets, fit for `TcpListener::bind`.
    pub fn address(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }
}

impl fmt::Display for Listener {
    /// `NAME://host:port`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}://{}", self.name, self.address())
    }
}

/// The broker's configuration: typed values it runs with, plus the raw keys it was given.
///
/// Build it with [`BrokerConfig::from_properties`], [`BrokerConfig::from_file`] or
/// [`BrokerConfig::default_single_node`]. Values not set fall back to Kafka 4.1's defaults,
/// except where documented on the field.
#[derive(Debug, Clone, PartialEq)]
pub struct BrokerConfig {
    /// `node.id` (or its alias `broker.id`). When neither is set, 1 (with a warning).
    pub node_id: i32,
    /// `listeners` (Kafka default `PLAINTEXT://:9092`); an empty host becomes `0.0.0.0`.
    /// Only PLAINTEXT listeners are accepted.
    pub listeners: Vec<Listener>,
    /// `advertised.listeners`; by default the non-controller `listeners`, where a wildcard
    /// host (empty, `0.0.0.0`, `::`) is advertised as `127.0.0.1` (Kafka would use the
    /// machine's canonical host name; Oxbow targets local use).
    pub advertised_listeners: Vec<Listener>,
    /// `listener.security.protocol.map`, raw.
    pub listener_security_protocol_map: String,
    /// `inter.broker.listener.name`, raw.
    pub inter_broker_listener_name: Option<String>,
    /// `controller.listener.names`, split on commas (upper-cased).
    pub controller_listener_names: Vec<String>,
    /// `process.roles`, as given (checked in `config/quorum.rs`).
    pub process_roles: Vec<String>,
    /// The metadata quorum this node belongs to: roles, voters, bootstrap servers and quorum
    /// timeouts (`controller.quorum.*`).
    pub quorum: QuorumConfig,
    /// `log.dirs` (comma separated), else `log.dir` (Kafka default `/tmp/kafka-logs`);
    /// [`BrokerConfig::default_single_node`] uses `./oxbow-data` (relative to the cwd).
    pub log_dirs: Vec<PathBuf>,
    /// `num.partitions` (1).
    pub num_partitions: i32,
    /// `default.replication.factor` (1; an INT in Kafka, must fit a SHORT here).
    pub default_replication_factor: i16,
    /// `auto.create.topics.enable` (true).
    pub auto_create_topics_enable: bool,
    /// `delete.topic.enable` (true).
    pub delete_topic_enable: bool,
    /// `min.insync.replicas` (1).
    pub min_insync_replicas: i32,
    /// `broker.rack` (null): the rack rack-aware placement spreads replicas over.
    pub broker_rack: Option<String>,
    /// `oxbow.rack.annotations.file` (null: off): the pod's annotations as Kubernetes'
    /// downward API writes them; with `broker.rack` unset the broker waits at start until the
    /// file holds [`BrokerConfig::rack_annotation`] and takes its value as `broker.rack`
    /// (`crate::config::rack`). Oxbow's own key: the operator sets it when the KafkaCluster has
    /// `spec.rack`.
    pub rack_annotations_file: Option<PathBuf>,
    /// `oxbow.rack.annotation` ([`DEFAULT_RACK_ANNOTATION`]): the annotation of that file
    /// naming the rack.
    pub rack_annotation: String,
    /// `oxbow.pod.annotations.file` (null: [`BrokerConfig::rack_annotations_file`]): the pod's
    /// annotations as the downward API writes them, where
    /// [`BrokerConfig::advertised_listeners_annotation`] is read. Not the rack's key: setting
    /// that one makes the broker wait for a rack.
    pub pod_annotations_file: Option<PathBuf>,
    /// `oxbow.advertised.listeners.annotation` (null: off): an annotation of
    /// [`BrokerConfig::pod_annotations_file`] that the broker waits for at start and takes as `advertised.listeners`, as if given
    /// with `--override`. Oxbow's own key: the operator sets it for external listeners, whose
    /// address (the node's, with the broker's own node port) is known only once the pod is
    /// placed, so no pod template can say it.
    pub advertised_listeners_annotation: Option<String>,
    /// `oxbow.metrics.listener` (null: off): where Prometheus metrics are served on
    /// `/metrics` (crate::metrics). Oxbow's own key: Kafka exports metrics through JMX, and
    /// its `metrics.*` keys configure that, so the name stays out of Kafka's namespace.
    pub metrics_listener: Option<std::net::SocketAddr>,
    /// `replica.lag.time.max.ms` (30000): a follower that has not caught up with the
    /// leader's log end for this long leaves the ISR.
    pub replica_lag_time_max_ms: i64,
    /// `replica.fetch.max.bytes` (1048576): bytes a follower fetches per partition.
    pub replica_fetch_max_bytes: i32,
    /// `replica.fetch.wait.max.ms` (500): how long a follower fetch waits for data.
    pub replica_fetch_wait_max_ms: i32,
    /// `replica.fetch.min.bytes` (1): bytes a follower fetch waits for.
    pub replica_fetch_min_bytes: i32,
    /// `unclean.leader.election.enable` (false): whether an out-of-sync replica may become
    /// leader rather than leave a partition offline (topics may override it).
    pub unclean_leader_election_enable: bool,
    /// `unclean.leader.election.interval.ms` (300000): how often the controller tries
    /// unclean elections for leaderless partitions of topics that allow them.
    pub unclean_leader_election_interval_ms: i64,
    /// `broker.session.timeout.ms` (9000): a broker silent for longer is fenced.
    pub broker_session_timeout_ms: i32,
    /// `broker.heartbeat.interval.ms` (2000): how often a broker heartbeats.
    pub broker_heartbeat_interval_ms: i32,
    /// `controlled.shutdown.enable` (true): SIGTERM moves leaderships away before exiting.
    pub controlled_shutdown_enable: bool,
    /// `auto.leader.rebalance.enable` (true): leadership moves back to preferred replicas.
    pub auto_leader_rebalance_enable: bool,
    /// `leader.imbalance.check.interval.seconds` (300): how often that is checked.
    pub leader_imbalance_check_interval_seconds: i64,
    /// `leader.imbalance.per.broker.percentage` (10): accepted and reported; like Kafka
    /// 4.1's KRaft controller, the rebalance does not use it (every partition whose leader
    /// is not its preferred replica is rebalanced).
    pub leader_imbalance_per_broker_percentage: i32,
    /// `message.max.bytes` (1048588).
    pub message_max_bytes: i32,
    /// `socket.request.max.bytes` (104857600).
    pub socket_request_max_bytes: i32,
    /// `max.incremental.fetch.session.cache.slots` (1000).
    pub max_incremental_fetch_session_cache_slots: i32,
    /// `fetch.max.bytes` (57671680): the most record bytes one Fetch response carries,
    /// whatever the request's `max_bytes` asks (the first batch is returned even if larger).
    pub fetch_max_bytes: i32,
    /// `log.retention.check.interval.ms` (300000).
    pub log_retention_check_interval_ms: i64,
    /// `log.flush.interval.ms` (null: governed by `log.flush.scheduler.interval.ms`).
    pub log_flush_interval_ms: Option<i64>,
    /// `log.flush.interval.messages` (Long.MAX_VALUE).
    pub log_flush_interval_messages: i64,
    /// `log.flush.scheduler.interval.ms` (Long.MAX_VALUE): how often the log flusher looks
    /// for logs whose `flush.ms` has passed.
    pub log_flush_scheduler_interval_ms: i64,
    /// `server.max.startup.time.ms` (Long.MAX_VALUE: no limit): how long a node of a
    /// replicated cluster waits at start for its metadata quorum before it gives up and
    /// exits, as Kafka's broker waits to catch up with the metadata log.
    pub server_max_startup_time_ms: i64,
    /// `offsets.topic.num.partitions` (50).
    pub offsets_topic_num_partitions: i32,
    /// `offsets.topic.segment.bytes` (104857600): `segment.bytes` of `__consumer_offsets`
    /// when the coordinator creates it.
    pub offsets_topic_segment_bytes: i32,
    /// `log.cleaner.backoff.ms` (15000): how often the log cleaner looks for dirty logs.
    pub log_cleaner_backoff_ms: i64,
    /// `offsets.topic.replication.factor` (Kafka's 3). Kafka refuses to create
    /// `__consumer_offsets` with fewer live brokers; Oxbow's creator should use
    /// [`BrokerConfig::offsets_topic_replication_factor_for`] (min with live brokers).
    pub offsets_topic_replication_factor: i16,
    /// `offsets.retention.minutes` (10080).
    pub offsets_retention_minutes: i32,
    /// `offsets.commit.timeout.ms` (5000): how long a group coordinator write waits for
    /// the ISR before the request fails (COORDINATOR_NOT_AVAILABLE).
    pub offsets_commit_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms` (3000).
    pub group_initial_rebalance_delay_ms: i32,
    /// `group.min.session.timeout.ms` (6000).
    pub group_min_session_timeout_ms: i32,
    /// `group.max.session.timeout.ms` (1800000).
    pub group_max_session_timeout_ms: i32,
    /// `group.consumer.session.timeout.ms` (45000): consumer-protocol (KIP-848) sessions.
    pub group_consumer_session_timeout_ms: i32,
    /// `group.consumer.heartbeat.interval.ms` (5000).
    pub group_consumer_heartbeat_interval_ms: i32,
    /// `group.consumer.max.size` (no limit).
    pub group_consumer_max_size: i32,
    /// `group.consumer.migration.policy` (bidirectional): online conversions between
    /// classic and consumer groups.
    pub group_consumer_migration_policy: crate::group::consumer::migration::MigrationPolicy,
    /// `transaction.state.log.num.partitions` (50).
    pub transaction_state_log_num_partitions: i32,
    /// `transaction.state.log.replication.factor` (3; same capping rule as the offsets topic).
    pub transaction_state_log_replication_factor: i16,
    /// `transaction.max.timeout.ms` (900000).
    pub transaction_max_timeout_ms: i32,
    /// `transaction.state.log.segment.bytes` (104857600): `segment.bytes` of
    /// `__transaction_state` when the coordinator creates it.
    pub transaction_state_log_segment_bytes: i32,
    /// `transaction.state.log.min.isr` (2): `min.insync.replicas` of `__transaction_state`.
    pub transaction_state_log_min_isr: i32,
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms` (10000): how often
    /// open transactions past their timeout are looked for and aborted.
    pub transaction_abort_timed_out_transaction_cleanup_interval_ms: i32,
    /// `transactional.id.expiration.ms` (604800000, 7 days): how long a transactional id
    /// without an open transaction may stay idle before the coordinator expires it.
    pub transactional_id_expiration_ms: i32,
    /// `transaction.remove.expired.transaction.cleanup.interval.ms` (3600000): how often
    /// expired transactional ids are looked for.
    pub transaction_remove_expired_transaction_cleanup_interval_ms: i32,
    /// `num.network.threads` (3), accepted and recorded.
    pub num_network_threads: i32,
    /// `num.io.threads` (8), accepted and recorded.
    pub num_io_threads: i32,
    /// `oxbow.max.partitions` (an Oxbow extra key, [`DEFAULT_MAX_PARTITIONS`]).
    pub max_partitions: u64,
    /// `oxbow.max.segment.cache.slots` (an Oxbow extra key); `None`: derived from the open
    /// files limit at start-up.
    pub segment_cache_slots: Option<u64>,
    /// `cluster.id` (an Oxbow extra key, not a Kafka `server.properties` key).
    pub cluster_id: Option<String>,
    /// Log defaults for topics without overrides (from `log.segment.bytes`, `log.roll.*`,
    /// `log.retention.*`, `log.index.*`, `log.cleanup.policy`, `log.message.timestamp.type`,
    /// `message.max.bytes`, `log.segment.delete.delay.ms`, ...).
    pub log_defaults: LogConfig,
    /// Every key exactly as given in the file and overrides (overrides win). Per Kafka, when
    /// only one of `node.id`/`broker.id` is given the other is added with the same value;
    /// [`BrokerConfig::default_single_node`] adds its built-in keys here. These are the
    /// `STATIC_BROKER_CONFIG` entries of DescribeConfigs.
    pub explicit: BTreeMap<String, String>,
    /// Dynamic broker configs applied by [`BrokerConfig::with_dynamic`] (cluster defaults
    /// overlaid by per-broker values); they take precedence over `explicit`. Empty at start-up.
    pub dynamic: BTreeMap<String, String>,
}

impl BrokerConfig {
    /// `server.max.startup.time.ms` as the time a node of a replicated cluster waits for its
    /// metadata quorum to name the cluster (a negative value reads as no time at all).
    pub fn server_max_startup_time(&self) -> std::time::Duration {
        std::time::Duration::from_millis(
            u64::try_from(self.server_max_startup_time_ms).unwrap_or(0),
        )
    }

    /// Parses `server.properties` text, then applies `overrides` (which win). Returns the
    /// config and warnings, e.g. "The configuration 'x' was supplied but isn't a known
    /// config.". An invalid value fails with a message naming the key, the value and what
    /// is expected ("Invalid value abc for configuration num.partitions: Not a number of
    /// type INT"); cross-key problems (node.id vs broker.id, listeners, SSL/SASL listeners)
    /// fail with a message naming the keys.
    pub fn from_properties(
        text: &str,
        overrides: &[(String, String)],
    ) -> Result<(BrokerConfig, Vec<String>), ConfigError> {
        let mut explicit = BTreeMap::new();
        for (key, value) in parse_properties(text)? {
            explicit.insert(key, value);
        }
        Self::from_explicit(explicit, overrides)
    }

    /// Reads and parses a `server.properties` file (see [`BrokerConfig::from_properties`]);
    /// every error names the file.
    pub fn from_file(
        path: &Path,
        overrides: &[(String, String)],
    ) -> Result<(BrokerConfig, Vec<String>), ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|e| ConfigError::Io {
            path: path.to_path_buf(),
            message: e.to_string(),
        })?;
        Self::from_properties(&text, overrides).map_err(|e| ConfigError::InFile {
            path: path.to_path_buf(),
            source: Box::new(e),
        })
    }

    /// Takes `rack` as `broker.rack`, as if the file had set it (DescribeConfigs reports it as a
    /// static broker config, where Strimzi's brokers, whose rack their init container writes
    /// into the file, report theirs).
    pub fn set_rack(&mut self, rack: String) {
        self.explicit
            .insert("broker.rack".to_string(), rack.clone());
        self.broker_rack = Some(rack);
    }

    /// The configuration without a file: a single node (`node.id=0`, the id Kafka's classic
    /// `server.properties` and the quick-start guides use, so `kafka-configs.sh --broker 0`
    /// works as users expect) listening on
    /// `PLAINTEXT://127.0.0.1:9092`, data in `./oxbow-data`; these built-in keys are recorded
    /// in `explicit` like a generated `server.properties`. `overrides` win over them.
    pub fn default_single_node(
        overrides: &[(String, String)],
    ) -> Result<(BrokerConfig, Vec<String>), ConfigError> {
        let mut explicit = BTreeMap::new();
        let overridden = |k: &str| overrides.iter().any(|(o, _)| o == k);
        if !overridden("node.id") && !overridden("broker.id") {
            explicit.insert("node.id".to_string(), "0".to_string());
        }
        explicit.insert(
            "listeners".to_string(),
            "PLAINTEXT://127.0.0.1:9092".to_string(),
        );
        if !overridden("log.dir") {
            explicit.insert("log.dirs".to_string(), "./oxbow-data".to_string());
        }
        Self::from_explicit(explicit, overrides)
    }

    fn from_explicit(
        mut explicit: BTreeMap<String, String>,
        overrides: &[(String, String)],
    ) -> Result<(BrokerConfig, Vec<String>), ConfigError> {
        for (key, value) in overrides {
            explicit.insert(key.clone(), value.clone());
        }
        let mut warnings = Vec::new();
        // Kafka's populateSynonyms: node.id and broker.id stand for each other.
        match (
            explicit.get("node.id").cloned(),
            explicit.get("broker.id").cloned(),
        ) {
            (Some(n), None) => {
                explicit.insert("broker.id".to_string(), n);
            }
            (None, Some(b)) => {
                explicit.insert("node.id".to_string(), b);
            }
            (None, None) => {
                warnings.push("node.id is not set; using node.id=0".to_string());
                explicit.insert("node.id".to_string(), "0".to_string());
                explicit.insert("broker.id".to_string(), "0".to_string());
            }
            (Some(_), Some(_)) => {}
        }
        for key in explicit.keys() {
            if !is_accepted_key(key) {
                warnings.push(format!(
                    "The configuration '{key}' was supplied but isn't a known config."
                ));
            }
        }
        for key in explicit.keys() {
            if key == "max.connection.creation.rate"
                || (key.starts_with("listener.name.")
                    && (key.ends_with(".max.connections")
                        || key.ends_with(".max.connection.creation.rate")))
            {
                warnings.push(format!(
                    "The configuration '{key}' is accepted but not applied: Oxbow enforces \
                     max.connections, max.connections.per.ip(.overrides) and \
                     connections.max.idle.ms only."
                ));
            }
        }
        let config = Self::build(explicit, BTreeMap::new())?;
        Ok((config, warnings))
    }

    /// A copy with dynamic broker configs applied: `cluster_default` (resource "") overlaid
    /// by `per_broker` (resource = node id), both over the static keys, re-deriving every
    /// typed field (e.g. `log_defaults`). `explicit` is unchanged; the overlay is kept in
    /// `dynamic`. Fails if a dynamic value is invalid.
    pub fn with_dynamic(
        &self,
        per_broker: &BTreeMap<String, String>,
        cluster_default: &BTreeMap<String, String>,
    ) -> Result<BrokerConfig, ConfigError> {
        let mut dynamic = cluster_default.clone();
        for (k, v) in per_broker {
            dynamic.insert(k.clone(), v.clone());
        }
        Self::build(self.explicit.clone(), dynamic)
    }

    /// The effective raw value of `name`: dynamic, else explicit, else Kafka's default
    /// (`None` for a null default or an unknown, unset key).
    pub fn value(&self, name: &str) -> Option<String> {
        self.dynamic
            .get(name)
            .or_else(|| self.explicit.get(name))
            .cloned()
            .or_else(|| broker_config_key(name).and_then(|d| d.default.map(str::to_string)))
    }

    /// Replication factor to create an internal topic with when `live_brokers` brokers are
    /// up: Kafka fails instead while fewer than the configured factor are alive; Oxbow uses
    /// `min(configured, live_brokers)` (at least 1).
    pub fn offsets_topic_replication_factor_for(&self, live_brokers: usize) -> i16 {
        let live = i16::try_from(live_brokers).unwrap_or(i16::MAX).max(1);
        self.offsets_topic_replication_factor.min(live).max(1)
    }

    /// Replication factor of `__transaction_state` when `live_brokers` brokers are up: the
    /// same rule as [`Self::offsets_topic_replication_factor_for`].
    pub fn transaction_state_replication_factor_for(&self, live_brokers: usize) -> i16 {
        let live = i16::try_from(live_brokers).unwrap_or(i16::MAX).max(1);
        self.transaction_state_log_replication_factor
            .min(live)
            .max(1)
    }

    /// The security protocol of listener `name` (`listener.security.protocol.map`, where
    /// start-up validated every listener); `PLAINTEXT` if the map does not name it.
    pub fn security_protocol_of(&self, name: &str) -> String {
        parse_protocol_map(&self.listener_security_protocol_map)
            .ok()
            .and_then(|m| m.get(&name.to_ascii_uppercase()).cloned())
            .unwrap_or_else(|| "PLAINTEXT".to_string())
    }

    /// The listeners clients connect to: `listeners` minus `controller.listener.names`.
    pub fn client_listeners(&self) -> Vec<&Listener> {
        self.listeners
            .iter()
            .filter(|l| !self.controller_listener_names.contains(&l.name))
            .collect()
    }

    /// The listeners named in `controller.listener.names`: where this node, as a voter,
    /// serves the metadata quorum's control channel.
    pub fn controller_listeners(&self) -> Vec<&Listener> {
        self.listeners
            .iter()
            .filter(|l| self.controller_listener_names.contains(&l.name))
            .collect()
    }

    pub(crate) fn layers<'a>(&'a self, empty: &'a BTreeMap<String, String>) -> Layers<'a> {
        Layers {
            maps: [&self.dynamic, &self.explicit, empty],
        }
    }

    fn build(
        explicit: BTreeMap<String, String>,
        dynamic: BTreeMap<String, String>,
    ) -> Result<BrokerConfig, ConfigError> {
        for (key, value) in explicit.iter().chain(dynamic.iter()) {
            check_broker_value(key, value)?;
        }
        let empty = BTreeMap::new();
        let layers = Layers {
            maps: [&dynamic, &explicit, &empty],
        };
        let get = |name: &str| -> Result<Value, ConfigError> { get_value(&layers, name) };
        let int = |name: &str| -> Result<i32, ConfigError> {
            match get(name)? {
                Value::Int(n) => Ok(n),
                other => Err(type_mismatch(name, &other)),
            }
        };
        let long = |name: &str| -> Result<Option<i64>, ConfigError> {
            match get(name)? {
                Value::Long(n) => Ok(Some(n)),
                Value::Null => Ok(None),
                other => Err(type_mismatch(name, &other)),
            }
        };
        let long_nn = |name: &str| -> Result<i64, ConfigError> {
            long(name)?.ok_or_else(|| ConfigError::Invalid(format!("{name} must be set")))
        };
        let short = |name: &str| -> Result<i16, ConfigError> {
            match get(name)? {
                Value::Short(n) => Ok(n),
                other => Err(type_mismatch(name, &other)),
            }
        };
        let boolean = |name: &str| -> Result<bool, ConfigError> {
            match get(name)? {
                Value::Bool(b) => Ok(b),
                other => Err(type_mismatch(name, &other)),
            }
        };
        let string = |name: &str| -> Result<Option<String>, ConfigError> {
            match get(name)? {
                Value::Str(s) => Ok(Some(s)),
                Value::Null => Ok(None),
                other => Err(type_mismatch(name, &other)),
            }
        };
        let list = |name: &str| -> Result<Vec<String>, ConfigError> {
            match get(name)? {
                Value::List(l) => Ok(l),
                Value::Null => Ok(Vec::new()),
                other => Err(type_mismatch(name, &other)),
            }
        };

        // node.id / broker.id
        let node_id = int("node.id")?;
        let broker_id = int("broker.id")?;
        if layers.get("node.id").is_some()
            && layers.get("broker.id").is_some()
            && node_id != broker_id
        {
            return Err(ConfigError::Invalid(format!(
                "node.id ({node_id}) and broker.id ({broker_id}) are both set but differ; \
                 broker.id is an alias of node.id and must have the same value"
            )));
        }
        if node_id < 0 {
            let raw = layers.get("node.id").unwrap_or("-1");
            return Err(ConfigError::invalid_value(
                "node.id",
                raw,
                "Value must be at least 0",
            ));
        }

        // Listeners.
        let protocol_map_raw = string("listener.security.protocol.map")?.unwrap_or_default();
        let mut protocol_map = parse_protocol_map(&protocol_map_raw)?;
        let controller_listener_names: Vec<String> = string("controller.listener.names")?
            .unwrap_or_default()
            .split(',')
            .map(|s| s.trim().to_ascii_uppercase())
            .filter(|s| !s.is_empty())
            .collect();
        // Kafka's effectiveListenerSecurityProtocolMap: without an explicit map, controller
        // listeners default to PLAINTEXT (so `CONTROLLER://:9093` needs no map entry).
        if layers.get("listener.security.protocol.map").is_none() {
            for name in &controller_listener_names {
                protocol_map
                    .entry(name.clone())
                    .or_insert_with(|| "PLAINTEXT".to_string());
            }
        }
        let protocol_map_raw = protocol_map
            .iter()
            .map(|(k, v)| format!("{k}:{v}"))
            .collect::<Vec<_>>()
            .join(",");
        let listeners_raw = string("listeners")?.unwrap_or_default();
        let listeners = parse_listeners("listeners", &listeners_raw, &protocol_map)?;
        if listeners.is_empty() {
            return Err(ConfigError::invalid_value(
                "listeners",
                &listeners_raw,
                "At least one listener is required",
            ));
        }
        check_unique("listeners", &listeners_raw, &listeners)?;
        for l in &listeners {
            let protocol = protocol_map.get(&l.name).map(String::as_str).unwrap_or("");
            if protocol != "PLAINTEXT" {
                return Err(ConfigError::Invalid(format!(
                    "Listener {l} (configuration listeners) uses security protocol {protocol} \
                     (listener.security.protocol.map); Oxbow supports only PLAINTEXT listeners"
                )));
            }
        }
        let client: Vec<&Listener> = listeners
            .iter()
            .filter(|l| !controller_listener_names.contains(&l.name))
            .collect();
        let process_roles = list("process.roles")?;
        // A controller-only node serves no clients: Kafka refuses any other listener on it.
        let controller_only =
            process_roles.iter().all(|r| r == "controller") && !process_roles.is_empty();
        if controller_only && !client.is_empty() {
            return Err(ConfigError::Invalid(
                "The listeners config must only contain KRaft controller listeners from \
                 controller.listener.names when process.roles=controller"
                    .to_string(),
            ));
        }
        if client.is_empty() && !controller_only {
            return Err(ConfigError::Invalid(format!(
                "listeners ({listeners_raw}) must contain at least one listener that is not \
                 named in controller.listener.names"
            )));
        }
        let advertised_listeners = match string("advertised.listeners")? {
            Some(raw) if !raw.is_empty() => {
                let adv = parse_listeners("advertised.listeners", &raw, &protocol_map)?;
                check_unique("advertised.listeners", &raw, &adv)?;
                let names: BTreeSet<&str> = listeners.iter().map(|l| l.name.as_str()).collect();
                let mut out = Vec::with_capacity(adv.len());
                for mut l in adv {
                    if !names.contains(l.name.as_str()) {
                        return Err(ConfigError::Invalid(format!(
                            "advertised.listeners listener names must be equal to or a subset \
                             of the ones defined in listeners. Found {}. The valid options \
                             based on currently configured listeners are {}",
                            l.name,
                            names.iter().copied().collect::<Vec<_>>().join(",")
                        )));
                    }
                    if raw_host_is(&raw, &l, "0.0.0.0") {
                        return Err(ConfigError::Invalid(
                            "advertised.listeners cannot use the nonroutable meta-address \
                             0.0.0.0. Use a routable IP address."
                                .to_string(),
                        ));
                    }
                    if l.host == "0.0.0.0" {
                        l.host = "127.0.0.1".to_string();
                    }
                    out.push(l);
                }
                out
            }
            _ => client
                .iter()
                .map(|l| {
                    let mut l = (*l).clone();
                    if l.host == "0.0.0.0" || l.host == "::" || l.host.is_empty() {
                        l.host = "127.0.0.1".to_string();
                    }
                    l
                })
                .collect(),
        };
        let inter_broker_listener_name = string("inter.broker.listener.name")?;
        let security_inter_broker = string("security.inter.broker.protocol")?.unwrap_or_default();
        if inter_broker_listener_name.is_some()
            && layers.get("security.inter.broker.protocol").is_some()
        {
            return Err(ConfigError::Invalid(
                "Only one of inter.broker.listener.name and security.inter.broker.protocol \
                 should be set."
                    .to_string(),
            ));
        }
        if let Some(name) = inter_broker_listener_name
            .as_ref()
            .filter(|_| !controller_only)
        {
            let upper = name.to_ascii_uppercase();
            if !advertised_listeners.iter().any(|l| l.name == upper) {
                return Err(ConfigError::Invalid(format!(
                    "inter.broker.listener.name must be a listener name defined in \
                     advertised.listeners. The valid options based on currently configured \
                     listeners are {}",
                    advertised_listeners
                        .iter()
                        .map(|l| l.name.as_str())
                        .collect::<Vec<_>>()
                        .join(",")
                )));
            }
        }
        if security_inter_broker != "PLAINTEXT" {
            return Err(ConfigError::Invalid(format!(
                "security.inter.broker.protocol={security_inter_broker} is not supported; Oxbow \
                 supports only PLAINTEXT"
            )));
        }

        // Connection limits (applied by server/quotas.rs), checked as Kafka's KafkaConfig does.
        let per_ip_overrides = string("max.connections.per.ip.overrides")?.unwrap_or_default();
        if let Err(reason) = crate::server::parse_overrides(&per_ip_overrides) {
            return Err(ConfigError::invalid_value(
                "max.connections.per.ip.overrides",
                &per_ip_overrides,
                reason,
            ));
        }
        if int("max.connections.per.ip")? == 0 && per_ip_overrides.trim().is_empty() {
            return Err(ConfigError::Invalid(
                "max.connections.per.ip can be set to zero only if \
                 max.connections.per.ip.overrides property is set."
                    .to_string(),
            ));
        }

        // The KRaft keys: which quorum this node belongs to (see quorum.rs).
        let quorum = super::quorum::parse_quorum(
            node_id,
            &process_roles,
            layers.get("controller.quorum.voters").unwrap_or(""),
            layers
                .get("controller.quorum.bootstrap.servers")
                .unwrap_or(""),
            layers.get(INITIAL_CONTROLLERS_KEY).unwrap_or(""),
            &listeners,
            &controller_listener_names,
            super::quorum::QuorumTimeouts {
                election_timeout_ms: int("controller.quorum.election.timeout.ms")?,
                fetch_timeout_ms: int("controller.quorum.fetch.timeout.ms")?,
                request_timeout_ms: int("controller.quorum.request.timeout.ms")?,
                retry_backoff_ms: int("controller.quorum.retry.backoff.ms")?,
            },
        )?;

        // Log directories.
        let dirs_raw = match string("log.dirs")? {
            Some(d) => d,
            None => string("log.dir")?.unwrap_or_default(),
        };
        let log_dirs: Vec<PathBuf> = dirs_raw
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(PathBuf::from)
            .collect();
        if log_dirs.is_empty() {
            return Err(ConfigError::invalid_value(
                "log.dirs",
                &dirs_raw,
                "At least one log directory is required",
            ));
        }

        let max_partitions = match layers.get(MAX_PARTITIONS_KEY) {
            None => DEFAULT_MAX_PARTITIONS,
            Some(raw) => raw
                .trim()
                .parse::<u64>()
                .ok()
                .filter(|n| *n >= 1)
                .ok_or_else(|| {
                    ConfigError::invalid_value(MAX_PARTITIONS_KEY, raw, "Value must be at least 1")
                })?,
        };

        let segment_cache_slots = match layers.get(SEGMENT_CACHE_SLOTS_KEY) {
            None => None,
            Some(raw) => Some(
                raw.trim()
                    .parse::<u64>()
                    .ok()
                    .filter(|n| *n >= 1)
                    .ok_or_else(|| {
                        ConfigError::invalid_value(
                            SEGMENT_CACHE_SLOTS_KEY,
                            raw,
                            "Value must be at least 1",
                        )
                    })?,
            ),
        };

        let drf_raw = int("default.replication.factor")?;
        let default_replication_factor = i16::try_from(drf_raw)
            .ok()
            .filter(|n| *n >= 1)
            .ok_or_else(|| {
                ConfigError::invalid_value(
                    "default.replication.factor",
                    layers.get("default.replication.factor").unwrap_or(""),
                    "Value must be between 1 and 32767",
                )
            })?;

        let cluster_id = layers
            .get("cluster.id")
            .map(|s| s.trim().to_string())
            .filter(|s| !s.is_empty());

        let log_defaults = build_log_config(&empty, &layers);

        Ok(BrokerConfig {
            node_id,
            listeners,
            advertised_listeners,
            listener_security_protocol_map: protocol_map_raw,
            inter_broker_listener_name,
            controller_listener_names,
            process_roles,
            quorum,
            log_dirs,
            num_partitions: int("num.partitions")?,
            default_replication_factor,
            auto_create_topics_enable: boolean("auto.create.topics.enable")?,
            delete_topic_enable: boolean("delete.topic.enable")?,
            min_insync_replicas: int("min.insync.replicas")?,
            broker_rack: string("broker.rack")?,
            metrics_listener: match string("oxbow.metrics.listener")? {
                None => None,
                Some(s) if s.trim().is_empty() => None,
                Some(s) => {
                    Some(
                        s.trim().parse().map_err(|_| ConfigError::InvalidValue {
                            name: "oxbow.metrics.listener".into(),
                            value: s.clone(),
                            reason:
                                "expected host:port with a numeric IP address, e.g. 0.0.0.0:9404"
                                    .into(),
                        })?,
                    )
                }
            },
            rack_annotations_file: string(RACK_ANNOTATIONS_FILE_KEY)?
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            pod_annotations_file: string("oxbow.pod.annotations.file")?
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty())
                .map(PathBuf::from),
            advertised_listeners_annotation: string(ADVERTISED_LISTENERS_ANNOTATION_KEY)?
                .map(|s| s.trim().to_string())
                .filter(|s| !s.is_empty()),
            rack_annotation: match string(RACK_ANNOTATION_KEY)? {
                Some(s) if !s.trim().is_empty() => s.trim().to_string(),
                _ => {
                    return Err(ConfigError::invalid_value(
                        RACK_ANNOTATION_KEY,
                        layers.get(RACK_ANNOTATION_KEY).unwrap_or(""),
                        "must name a pod annotation",
                    ))
                }
            },
            replica_lag_time_max_ms: long_nn("replica.lag.time.max.ms")?,
            replica_fetch_max_bytes: int("replica.fetch.max.bytes")?,
            replica_fetch_wait_max_ms: int("replica.fetch.wait.max.ms")?,
            replica_fetch_min_bytes: int("replica.fetch.min.bytes")?,
            unclean_leader_election_enable: boolean("unclean.leader.election.enable")?,
            unclean_leader_election_interval_ms: long_nn("unclean.leader.election.interval.ms")?,
            broker_session_timeout_ms: int("broker.session.timeout.ms")?,
            broker_heartbeat_interval_ms: int("broker.heartbeat.interval.ms")?,
            controlled_shutdown_enable: boolean("controlled.shutdown.enable")?,
            auto_leader_rebalance_enable: boolean("auto.leader.rebalance.enable")?,
            leader_imbalance_check_interval_seconds: long_nn(
                "leader.imbalance.check.interval.seconds",
            )?,
            leader_imbalance_per_broker_percentage: int("leader.imbalance.per.broker.percentage")?,
            message_max_bytes: int("message.max.bytes")?,
            socket_request_max_bytes: int("socket.request.max.bytes")?,
            max_incremental_fetch_session_cache_slots: int(
                "max.incremental.fetch.session.cache.slots",
            )?,
            fetch_max_bytes: int("fetch.max.bytes")?,
            log_retention_check_interval_ms: long_nn("log.retention.check.interval.ms")?,
            log_flush_interval_ms: long("log.flush.interval.ms")?,
            log_flush_interval_messages: long_nn("log.flush.interval.messages")?,
            log_flush_scheduler_interval_ms: long_nn("log.flush.scheduler.interval.ms")?,
            server_max_startup_time_ms: long_nn("server.max.startup.time.ms")?,
            offsets_topic_num_partitions: int("offsets.topic.num.partitions")?,
            offsets_topic_segment_bytes: int("offsets.topic.segment.bytes")?,
            log_cleaner_backoff_ms: long_nn("log.cleaner.backoff.ms")?,
            offsets_topic_replication_factor: short("offsets.topic.replication.factor")?,
            offsets_retention_minutes: int("offsets.retention.minutes")?,
            offsets_commit_timeout_ms: int("offsets.commit.timeout.ms")?,
            group_initial_rebalance_delay_ms: int("group.initial.rebalance.delay.ms")?,
            group_min_session_timeout_ms: int("group.min.session.timeout.ms")?,
            group_max_session_timeout_ms: int("group.max.session.timeout.ms")?,
            group_consumer_session_timeout_ms: int("group.consumer.session.timeout.ms")?,
            group_consumer_heartbeat_interval_ms: int("group.consumer.heartbeat.interval.ms")?,
            group_consumer_max_size: int("group.consumer.max.size")?,
            group_consumer_migration_policy: string("group.consumer.migration.policy")?
                .as_deref()
                .and_then(crate::group::consumer::migration::MigrationPolicy::parse)
                .unwrap_or(crate::group::consumer::migration::MigrationPolicy::Bidirectional),
            transaction_state_log_num_partitions: int("transaction.state.log.num.partitions")?,
            transaction_state_log_replication_factor: short(
                "transaction.state.log.replication.factor",
            )?,
            transaction_max_timeout_ms: int("transaction.max.timeout.ms")?,
            transaction_state_log_segment_bytes: int("transaction.state.log.segment.bytes")?,
            transaction_state_log_min_isr: int("transaction.state.log.min.isr")?,
            transaction_abort_timed_out_transaction_cleanup_interval_ms: int(
                "transaction.abort.timed.out.transaction.cleanup.interval.ms",
            )?,
            transactional_id_expiration_ms: int("transactional.id.expiration.ms")?,
            transaction_remove_expired_transaction_cleanup_interval_ms: int(
                "transaction.remove.expired.transaction.cleanup.interval.ms",
            )?,
            num_network_threads: int("num.network.threads")?,
            num_io_threads: int("num.io.threads")?,
            max_partitions,
            segment_cache_slots,
            cluster_id,
            log_defaults,
            explicit,
            dynamic,
        })
    }
}

fn type_mismatch(name: &str, value: &Value) -> ConfigError {
    ConfigError::Invalid(format!(
        "internal error: unexpected value {value:?} for configuration {name}"
    ))
}

/// Parses the effective value of broker key `name` from `layers` or Kafka's default.
pub(crate) fn get_value(layers: &Layers<'_>, name: &str) -> Result<Value, ConfigError> {
    let Some(def) = broker_config_key(name) else {
        return Ok(layers
            .get(name)
            .map_or(Value::Null, |s| Value::Str(s.to_string())));
    };
    match layers.get(name).or(def.default) {
        Some(raw) => parse_value(name, raw, def.config_type, def.validator),
        None => Ok(Value::Null),
    }
}

/// Parses `listener.security.protocol.map` into upper-cased listener name -> protocol.
fn parse_protocol_map(raw: &str) -> Result<BTreeMap<String, String>, ConfigError> {
    let key = "listener.security.protocol.map";
    let mut map = BTreeMap::new();
    for entry in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let Some((name, protocol)) = entry.split_once(':') else {
            return Err(ConfigError::invalid_value(
                key,
                raw,
                "Expected a comma separated list of LISTENER_NAME:SECURITY_PROTOCOL pairs",
            ));
        };
        let protocol = protocol.trim().to_ascii_uppercase();
        if !SECURITY_PROTOCOLS.contains(&protocol.as_str()) {
            return Err(ConfigError::invalid_value(
                key,
                raw,
                format!(
                    "Unknown security protocol {protocol}; expected one of: {}",
                    SECURITY_PROTOCOLS.join(", ")
                ),
            ));
        }
        map.insert(name.trim().to_ascii_uppercase(), protocol);
    }
    Ok(map)
}

/// Parses `NAME://host:port[,...]` (IPv6 hosts in brackets) as Kafka's endpoint regex does.
fn parse_listeners(
    key: &str,
    raw: &str,
    protocol_map: &BTreeMap<String, String>,
) -> Result<Vec<Listener>, ConfigError> {
    let mut out = Vec::new();
    for item in raw.split(',').map(str::trim).filter(|s| !s.is_empty()) {
        let unparsable = || {
            ConfigError::invalid_value(
                key,
                raw,
                format!("Unable to parse {item} to a broker endpoint"),
            )
        };
        let (name, rest) = item.split_once("://").ok_or_else(unparsable)?;
        if name.is_empty() {
            return Err(unparsable());
        }
        let (host, port) = if let Some(after) = rest.strip_prefix('[') {
            let (host, tail) = after.split_once(']').ok_or_else(unparsable)?;
            (host, tail.strip_prefix(':').ok_or_else(unparsable)?)
        } else {
            rest.rsplit_once(':').ok_or_else(unparsable)?
        };
        let host_ok = host
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '%' | '.' | '_' | ':'));
        if !host_ok {
            return Err(unparsable());
        }
        let port: u16 = port.parse().map_err(|_| {
            ConfigError::invalid_value(
                key,
                raw,
                format!("Invalid port {port} in {item}: must be between 0 and 65535"),
            )
        })?;
        let name = name.to_ascii_uppercase();
        if !protocol_map.contains_key(&name) {
            return Err(ConfigError::invalid_value(
                key,
                raw,
                format!(
                    "No security protocol defined for listener {name} \
                     (see listener.security.protocol.map)"
                ),
            ));
        }
        let host = if host.is_empty() { "0.0.0.0" } else { host };
        out.push(Listener {
            name,
            host: host.to_string(),
            port,
        });
    }
    Ok(out)
}

fn check_unique(key: &str, raw: &str, listeners: &[Listener]) -> Result<(), ConfigError> {
    let mut names = BTreeSet::new();
    let mut ports = BTreeSet::new();
    for l in listeners {
        if !names.insert(l.name.as_str()) {
            return Err(ConfigError::invalid_value(
                key,
                raw,
                "Each listener must have a different name",
            ));
        }
        if l.port != 0 && !ports.insert(l.port) {
            return Err(ConfigError::invalid_value(
                key,
                raw,
                "Each listener must have a different port",
            ));
        }
    }
    Ok(())
}

/// Whether the raw listener list gave `listener` the literal host `host`.
fn raw_host_is(raw: &str, listener: &Listener, host: &str) -> bool {
    raw.split(',').map(str::trim).any(|item| {
        item.to_ascii_uppercase().starts_with(&format!(
            "{}://{}:",
            listener.name,
            host.to_ascii_uppercase()
        ))
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::log::TimestampType;

    fn parse(text: &str) -> Result<(BrokerConfig, Vec<String>), ConfigError> {
        BrokerConfig::from_properties(text, &[])
    }

    #[test]
    fn the_rack_may_come_from_the_pods_annotations() {
        let (c, warnings) = parse("node.id=0").unwrap();
        assert_eq!(c.rack_annotations_file, None, "off by default");
        assert_eq!(c.rack_annotation, "oxbow.dev/rack");
        assert!(warnings.is_empty(), "{warnings:?}");
        let (mut c, warnings) = parse(
            "node.id=0\noxbow.rack.annotations.file=/etc/podinfo/annotations\noxbow.rack.annotation=example.com/zone",
        )
        .unwrap();
        assert!(
            warnings.is_empty(),
            "Oxbow's own keys are known: {warnings:?}"
        );
        assert_eq!(
            c.rack_annotations_file.as_deref(),
            Some(Path::new("/etc/podinfo/annotations"))
        );
        assert_eq!(c.rack_annotation, "example.com/zone");
        c.set_rack("zone-a".into());
        assert_eq!(c.broker_rack.as_deref(), Some("zone-a"));
        assert_eq!(
            c.explicit.get("broker.rack").map(String::as_str),
            Some("zone-a"),
            "DescribeConfigs shows it as a static broker config"
        );
        assert_eq!(c.advertised_listeners_annotation, None, "off by default");
        let (c, warnings) = parse(
            "node.id=0\noxbow.pod.annotations.file=/etc/podinfo/annotations\n\
             oxbow.advertised.listeners.annotation=oxbow.dev/advertised-listeners",
        )
        .unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(
            c.advertised_listeners_annotation.as_deref(),
            Some("oxbow.dev/advertised-listeners")
        );
        assert_eq!(
            c.pod_annotations_file.as_deref(),
            Some(Path::new("/etc/podinfo/annotations"))
        );
        assert_eq!(c.rack_annotations_file, None, "no rack is waited for");
        let empty = parse("oxbow.rack.annotation=").unwrap_err();
        assert!(
            empty.to_string().contains("oxbow.rack.annotation"),
            "{empty}"
        );
    }

    #[test]
    fn cluster_keys_have_kafkas_defaults_and_parse() {
        let (c, _) = parse("").unwrap();
        assert_eq!(c.broker_rack, None);
        assert_eq!(c.replica_lag_time_max_ms, 30000);
        assert_eq!(c.replica_fetch_max_bytes, 1048576);
        assert_eq!(c.fetch_max_bytes, 57671680);
        assert_eq!(c.replica_fetch_wait_max_ms, 500);
        assert_eq!(c.replica_fetch_min_bytes, 1);
        assert!(!c.unclean_leader_election_enable);
        assert_eq!(c.unclean_leader_election_interval_ms, 300000);
        assert_eq!(c.broker_session_timeout_ms, 9000);
        assert_eq!(c.broker_heartbeat_interval_ms, 2000);
        assert!(c.controlled_shutdown_enable);
        assert!(c.auto_leader_rebalance_enable);
        assert_eq!(c.leader_imbalance_check_interval_seconds, 300);
        assert_eq!(c.leader_imbalance_per_broker_percentage, 10);
        let (c, _) = parse(
            "broker.rack=rack-a\nunclean.leader.election.enable=true\nbroker.session.timeout.ms=4500\nreplica.lag.time.max.ms=10000\ncontrolled.shutdown.enable=false",
        )
        .unwrap();
        assert_eq!(c.broker_rack.as_deref(), Some("rack-a"));
        assert!(c.unclean_leader_election_enable);
        assert_eq!(c.broker_session_timeout_ms, 4500);
        assert_eq!(c.replica_lag_time_max_ms, 10000);
        assert!(!c.controlled_shutdown_enable);
        let err = parse("leader.imbalance.check.interval.seconds=0")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("leader.imbalance.check.interval.seconds"),
            "{err}"
        );
        let err = parse("replica.fetch.max.bytes=-1").unwrap_err().to_string();
        assert!(err.contains("replica.fetch.max.bytes"), "{err}");
    }

    #[test]
    fn the_migration_policy_is_read_in_any_case_as_kafka_does() {
        use crate::group::consumer::migration::MigrationPolicy;
        let (c, _) = parse("group.consumer.migration.policy=UPGRADE").unwrap();
        assert_eq!(c.group_consumer_migration_policy, MigrationPolicy::Upgrade);
        let (c, _) = parse("group.consumer.migration.policy=Disabled").unwrap();
        assert_eq!(c.group_consumer_migration_policy, MigrationPolicy::Disabled);
        let err = parse("group.consumer.migration.policy=sideways").unwrap_err();
        assert!(
            err.to_string()
                .contains("String must be one of (case insensitive): disabled, upgrade"),
            "{err}"
        );
    }

    #[test]
    fn table_is_sorted_and_unique() {
        for pair in BROKER_CONFIGS.windows(2) {
            assert!(
                pair[0].name < pair[1].name,
                "{} >= {}",
                pair[0].name,
                pair[1].name
            );
        }
        assert!(BROKER_CONFIGS.len() >= 100);
        // Every default must satisfy its own definition.
        for def in BROKER_CONFIGS {
            if let Some(d) = def.default {
                parse_value(def.name, d, def.config_type, def.validator)
                    .unwrap_or_else(|e| panic!("{}: {e}", def.name));
            }
        }
    }

    #[test]
    fn kafka_defaults() {
        let (c, _) = parse("node.id=0\n").unwrap();
        assert_eq!(c.node_id, 0);
        assert_eq!(c.num_partitions, 1);
        assert_eq!(c.default_replication_factor, 1);
        assert!(c.auto_create_topics_enable);
        assert!(c.delete_topic_enable);
        assert_eq!(c.min_insync_replicas, 1);
        assert_eq!(c.message_max_bytes, 1_048_588);
        assert_eq!(c.socket_request_max_bytes, 104_857_600);
        assert_eq!(c.log_retention_check_interval_ms, 300_000);
        assert_eq!(c.log_flush_interval_ms, None);
        assert_eq!(c.log_flush_interval_messages, i64::MAX);
        assert_eq!(c.offsets_topic_num_partitions, 50);
        assert_eq!(c.offsets_topic_segment_bytes, 104_857_600);
        assert_eq!(c.log_cleaner_backoff_ms, 15_000);
        assert_eq!(c.offsets_topic_replication_factor, 3);
        assert_eq!(c.offsets_topic_replication_factor_for(1), 1);
        assert_eq!(c.offsets_retention_minutes, 10080);
        assert_eq!(c.offsets_commit_timeout_ms, 5000);
        assert_eq!(c.group_initial_rebalance_delay_ms, 3000);
        assert_eq!(c.group_min_session_timeout_ms, 6000);
        assert_eq!(c.group_max_session_timeout_ms, 1_800_000);
        assert_eq!(c.num_network_threads, 3);
        assert_eq!(c.num_io_threads, 8);
        assert_eq!(c.log_dirs, vec![PathBuf::from("/tmp/kafka-logs")]);
        assert_eq!(c.log_defaults, LogConfig::default());
        assert_eq!(
            c.listeners,
            vec![Listener {
                name: "PLAINTEXT".into(),
                host: "0.0.0.0".into(),
                port: 9092
            }]
        );
        assert_eq!(c.advertised_listeners[0].host, "127.0.0.1");
        assert_eq!(c.value("log.retention.hours").as_deref(), Some("168"));
        assert_eq!(c.value("log.retention.ms"), None);
    }

    #[test]
    fn default_single_node() {
        let (c, warnings) = BrokerConfig::default_single_node(&[]).unwrap();
        assert!(warnings.is_empty(), "{warnings:?}");
        assert_eq!(c.node_id, 0);
        assert_eq!(c.listeners[0].address(), "127.0.0.1:9092");
        assert_eq!(
            c.advertised_listeners[0].to_string(),
            "PLAINTEXT://127.0.0.1:9092"
        );
        assert_eq!(c.log_dirs, vec![PathBuf::from("./oxbow-data")]);
        let (c, _) = BrokerConfig::default_single_node(&[
            ("listeners".into(), "PLAINTEXT://:19092".into()),
            ("node.id".into(), "7".into()),
        ])
        .unwrap();
        assert_eq!(c.node_id, 7);
        assert_eq!(c.listeners[0].port, 19092);
        assert_eq!(c.explicit.get("broker.id").map(String::as_str), Some("7"));
    }

    #[test]
    fn node_id_alias() {
        let (c, _) = parse("broker.id=3").unwrap();
        assert_eq!(c.node_id, 3);
        assert_eq!(c.explicit.get("node.id").map(String::as_str), Some("3"));
        let (c, _) = parse("broker.id=3\nnode.id=3").unwrap();
        assert_eq!(c.node_id, 3);
        let err = parse("broker.id=3\nnode.id=4").unwrap_err().to_string();
        assert!(
            err.contains("node.id") && err.contains("broker.id"),
            "{err}"
        );
        let (c, w) = parse("").unwrap();
        assert_eq!(c.node_id, 0);
        assert!(w.iter().any(|w| w.contains("node.id")));
        assert!(parse("node.id=-5").is_err());
    }

    #[test]
    fn overrides_win() {
        let (c, _) = BrokerConfig::from_properties(
            "node.id=1\nnum.partitions=3\n",
            &[("num.partitions".into(), "6".into())],
        )
        .unwrap();
        assert_eq!(c.num_partitions, 6);
        assert_eq!(
            c.explicit.get("num.partitions").map(String::as_str),
            Some("6")
        );
    }

    #[test]
    fn invalid_values_name_the_key() {
        let err = parse("num.partitions=abc").unwrap_err();
        assert_eq!(
            err.to_string(),
            "Invalid value abc for configuration num.partitions: Not a number of type INT"
        );
        assert_eq!(err.kafka_code(), 40);
        let err = parse("num.partitions=0").unwrap_err().to_string();
        assert!(
            err.contains("num.partitions") && err.contains("at least 1"),
            "{err}"
        );
        let err = parse("log.segment.bytes=1000").unwrap_err().to_string();
        assert!(err.contains("Value must be at least 1048576"), "{err}");
        let err = parse("auto.create.topics.enable=maybe")
            .unwrap_err()
            .to_string();
        assert!(err.contains("auto.create.topics.enable"), "{err}");
        let err = parse("listeners=PLAINTEXT://:99999")
            .unwrap_err()
            .to_string();
        assert!(err.contains("listeners") && err.contains("99999"), "{err}");
        let err = parse("listeners=garbage").unwrap_err().to_string();
        assert!(err.contains("Unable to parse garbage"), "{err}");
    }

    #[test]
    fn connection_limits_that_are_not_applied_warn() {
        let (_, w) = parse(
            "node.id=1\nmax.connection.creation.rate=10\n\
             listener.name.plaintext.max.connections=5\nmax.connections=100",
        )
        .unwrap();
        assert_eq!(w.len(), 2, "{w:?}");
        assert!(
            w[0].contains("'listener.name.plaintext.max.connections' is accepted but not applied")
        );
        assert!(w[1].contains("'max.connection.creation.rate' is accepted but not applied"));
    }

    #[test]
    fn unknown_keys_warn() {
        let (_, w) = parse("node.id=1\nfoo.bar=1\ncluster.id=abc\nlistener.name.x.y=z").unwrap();
        assert_eq!(
            w,
            vec!["The configuration 'foo.bar' was supplied but isn't a known config.".to_string()]
        );
    }

    #[test]
    fn kraft_combined_example() {
        let text = "\
process.roles=broker,controller
node.id=1
controller.quorum.bootstrap.servers=localhost:9093
listeners=PLAINTEXT://:9092,CONTROLLER://:9093
inter.broker.listener.name=PLAINTEXT
advertised.listeners=PLAINTEXT://localhost:9092,CONTROLLER://localhost:9093
controller.listener.names=CONTROLLER
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SSL:SSL,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
num.network.threads=3
num.io.threads=8
log.dirs=/tmp/kraft-combined-logs
num.partitions=1
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
log.retention.hours=168
log.retention.check.interval.ms=300000
";
        let (c, w) = parse(text).unwrap();
        assert!(w.is_empty(), "{w:?}");
        assert_eq!(c.listeners.len(), 2);
        assert_eq!(c.client_listeners().len(), 1);
        assert_eq!(c.controller_listener_names, vec!["CONTROLLER".to_string()]);
        assert_eq!(c.advertised_listeners[0].host, "localhost");
        assert_eq!(c.offsets_topic_replication_factor, 1);
        assert_eq!(c.log_dirs, vec![PathBuf::from("/tmp/kraft-combined-logs")]);
        assert_eq!(
            c.process_roles,
            vec!["broker".to_string(), "controller".to_string()]
        );
    }

    /// Kafka maps controller listeners to PLAINTEXT when `listener.security.protocol.map` is
    /// not set, so the combined layout needs no map; with an explicit map it must name them.
    #[test]
    fn controller_listener_defaults_to_plaintext_without_an_explicit_map() {
        let text = "node.id=1\nprocess.roles=broker,controller\n\
                    listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n\
                    controller.listener.names=CONTROLLER\n\
                    controller.quorum.voters=1@localhost:9093\n";
        let (c, _) = parse(text).unwrap();
        assert_eq!(c.security_protocol_of("CONTROLLER"), "PLAINTEXT");
        let err = parse(&format!(
            "{text}listener.security.protocol.map=PLAINTEXT:PLAINTEXT\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains("No security protocol defined for listener CONTROLLER"),
            "{err}"
        );
    }

    /// A controller-only node serves nothing but its controller listener (Kafka refuses any
    /// other) and needs no inter-broker listener; a broker-only node may not serve it.
    #[test]
    fn single_role_nodes_have_kafkas_listener_rules() {
        let controller = "node.id=1\nprocess.roles=controller\n\
                          listeners=CONTROLLER://127.0.0.1:9093\n\
                          controller.listener.names=CONTROLLER\n\
                          inter.broker.listener.name=PLAINTEXT\n\
                          controller.quorum.voters=1@127.0.0.1:9093\n";
        let (c, _) = parse(controller).unwrap();
        assert!(!c.quorum.broker && c.quorum.is_replicated());
        let err = parse(&controller.replace(
            "listeners=CONTROLLER://127.0.0.1:9093",
            "listeners=PLAINTEXT://:9092,CONTROLLER://127.0.0.1:9093",
        ))
        .unwrap_err()
        .to_string();
        assert_eq!(
            err,
            "The listeners config must only contain KRaft controller listeners from \
             controller.listener.names when process.roles=controller"
        );
        let broker = "node.id=3\nprocess.roles=broker\nlisteners=PLAINTEXT://:9092\n\
                      controller.listener.names=CONTROLLER\n\
                      listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
                      controller.quorum.bootstrap.servers=localhost:9093\n";
        let (c, _) = parse(broker).unwrap();
        assert!(c.quorum.is_observer());
    }

    /// The operator's shared server.properties: every pod the same file, its node.id given
    /// per pod; pods 0 and 1 are initial controllers, pod 2 joins (and the key warns nothing).
    #[test]
    fn one_shared_config_with_initial_controllers_serves_every_pod() {
        let shared = "process.roles=broker,controller\n\
                      listeners=PLAINTEXT://:9092,CONTROLLER://:9093\n\
                      controller.listener.names=CONTROLLER\n\
                      controller.quorum.bootstrap.servers=b-0.b:9093,b-1.b:9093\n\
                      oxbow.initial.controllers=0@b-0.b:9093,1@b-1.b:9093\n";
        for (id, listed) in [(0, true), (1, true), (2, false)] {
            let (c, w) = parse(&format!("{shared}node.id={id}\n")).unwrap();
            assert!(w.is_empty(), "{w:?}");
            assert!(c.quorum.is_replicated(), "{id}");
            assert_eq!(c.quorum.is_initial_controller(id), listed);
            assert_eq!(c.quorum.joins_dynamically(), !listed);
            assert_eq!(c.quorum.initial_controllers.len(), 2);
        }
        let err = parse(&format!(
            "{shared}node.id=0\ncontroller.quorum.voters=0@b-0.b:9093\n"
        ))
        .unwrap_err()
        .to_string();
        assert!(
            err.contains(
                "oxbow.initial.controllers and controller.quorum.voters cannot both be set"
            ),
            "{err}"
        );
    }

    #[test]
    fn ssl_listener_is_refused() {
        let err = parse("node.id=1\nlisteners=PLAINTEXT://:9092,SSL://:9093")
            .unwrap_err()
            .to_string();
        assert!(err.contains("SSL") && err.contains("listeners"), "{err}");
        let err = parse("node.id=1\nsecurity.inter.broker.protocol=SASL_SSL")
            .unwrap_err()
            .to_string();
        assert!(err.contains("security.inter.broker.protocol"), "{err}");
        let err = parse("node.id=1\nlisteners=FOO://:9092")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("No security protocol defined for listener FOO"),
            "{err}"
        );
    }

    #[test]
    fn listener_forms() {
        let (c, _) = parse("node.id=1\nlisteners=PLAINTEXT://[::1]:9092").unwrap();
        assert_eq!(c.listeners[0].host, "::1");
        assert_eq!(c.listeners[0].address(), "[::1]:9092");
        let err = parse("node.id=1\nadvertised.listeners=PLAINTEXT://0.0.0.0:9092")
            .unwrap_err()
            .to_string();
        assert!(err.contains("0.0.0.0"), "{err}");
        let err = parse("node.id=1\nlisteners=PLAINTEXT://:9092,PLAINTEXT://:9093")
            .unwrap_err()
            .to_string();
        assert!(err.contains("different name"), "{err}");
    }

    #[test]
    fn log_defaults_from_broker_keys() {
        let (c, _) = parse(
            "node.id=1\nlog.retention.hours=24\nlog.segment.bytes=2097152\n\
             log.roll.hours=1\nlog.cleanup.policy=compact,delete\n\
             log.message.timestamp.type=LogAppendTime\nmessage.max.bytes=2000000\n\
             log.segment.delete.delay.ms=5\nlog.index.interval.bytes=100\n\
             log.index.size.max.bytes=4096\nlog.retention.bytes=1000\n\
             producer.id.expiration.ms=60000\n",
        )
        .unwrap();
        let l = &c.log_defaults;
        assert_eq!(l.producer_id_expiration_ms, 60_000);
        assert_eq!(l.retention_ms, 86_400_000);
        assert_eq!(l.segment_bytes, 2_097_152);
        assert_eq!(l.segment_ms, 3_600_000);
        assert!(l.cleanup_compact && l.cleanup_delete);
        assert_eq!(l.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(l.max_message_bytes, 2_000_000);
        assert_eq!(l.file_delete_delay_ms, 5);
        assert_eq!(l.index_interval_bytes, 100);
        assert_eq!(l.segment_index_bytes, 4096);
        assert_eq!(l.retention_bytes, 1000);
    }

    #[test]
    fn retention_precedence() {
        let ms = |text: &str| parse(text).unwrap().0.log_defaults.retention_ms;
        assert_eq!(ms("node.id=1"), 604_800_000);
        assert_eq!(ms("node.id=1\nlog.retention.hours=1"), 3_600_000);
        assert_eq!(
            ms("node.id=1\nlog.retention.hours=1\nlog.retention.minutes=2"),
            120_000
        );
        assert_eq!(
            ms("node.id=1\nlog.retention.hours=1\nlog.retention.minutes=2\nlog.retention.ms=5"),
            5
        );
        assert_eq!(ms("node.id=1\nlog.retention.ms=-1"), -1);
        assert_eq!(ms("node.id=1\nlog.retention.hours=-1"), -1);
    }

    #[test]
    fn dynamic_overlay() {
        let (c, _) = parse("node.id=1\nlog.retention.ms=1000").unwrap();
        let per = BTreeMap::from([("log.retention.ms".to_string(), "3000".to_string())]);
        let def = BTreeMap::from([
            ("log.retention.ms".to_string(), "2000".to_string()),
            ("num.io.threads".to_string(), "4".to_string()),
        ]);
        let d = c.with_dynamic(&per, &def).unwrap();
        assert_eq!(d.log_defaults.retention_ms, 3000);
        assert_eq!(d.num_io_threads, 4);
        assert_eq!(d.explicit, c.explicit);
        let bad = BTreeMap::from([("num.io.threads".to_string(), "x".to_string())]);
        assert!(c.with_dynamic(&bad, &BTreeMap::new()).is_err());
    }

    #[test]
    fn from_file_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("server.properties");
        std::fs::write(&path, "node.id=2\nnum.partitions=x\n").unwrap();
        let err = BrokerConfig::from_file(&path, &[]).unwrap_err().to_string();
        assert!(
            err.contains("server.properties") && err.contains("num.partitions"),
            "{err}"
        );
        std::fs::write(&path, "node.id=2\nnum.partitions=4\n").unwrap();
        let (c, _) = BrokerConfig::from_file(&path, &[]).unwrap();
        assert_eq!(c.num_partitions, 4);
        let missing = dir.path().join("missing.properties");
        let err = BrokerConfig::from_file(&missing, &[])
            .unwrap_err()
            .to_string();
        assert!(err.contains("missing.properties"), "{err}");
    }
}
