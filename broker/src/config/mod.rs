//! Kafka's configuration, names and defaults exactly as Apache Kafka 4.1 reports them.
//!
//! - [`BrokerConfig`]: `server.properties` (Java properties format) plus `--override`
//!   pairs, validated like Kafka's `ConfigDef` against a table of Kafka's broker keys
//!   ([`broker_config_keys`]); unknown keys produce warnings.
//! - Topic configs ([`topic_config_keys`]): validation ([`validate_topic_config`]) and the
//!   effective per-topic [`crate::log::LogConfig`] ([`effective_log_config`]), falling back
//!   to broker keys through Kafka's synonyms (`retention.ms` <- `log.retention.ms`,
//!   `log.retention.minutes`, `log.retention.hours`, ...).
//! - [`rack`]: `broker.rack` from the pod's annotations (`oxbow.rack.annotations.file`),
//!   for brokers on Kubernetes with a KafkaCluster's `spec.rack`.
//! - DescribeConfigs ([`describe_topic_configs`], [`describe_broker_configs`]): values,
//!   sources and synonyms computed the way Kafka's `ConfigHelper` does, and dynamic broker
//!   update checks ([`validate_broker_dynamic_config`]).
//!
//! Deliberate deviations from Kafka are documented where they occur (default advertised
//! host `127.0.0.1`, default node id 1, only PLAINTEXT listeners, `./oxbow-data` when no
//! file is given, internal-topic replication factor capped by live brokers, a static
//! controller quorum only (no KIP-853 dynamic membership) and no broker-only nodes yet:
//! `quorum.rs`).

mod broker;
mod describe;
mod error;
mod properties;
mod quorum;
pub mod rack;
mod topic;
mod types;

pub use broker::{
    broker_config_key, broker_config_keys, BrokerConfig, BrokerConfigKey, Listener, UpdateMode,
    DEFAULT_LISTENER_SECURITY_PROTOCOL_MAP, DEFAULT_MAX_PARTITIONS, DEFAULT_RACK_ANNOTATION,
    INITIAL_CONTROLLERS_KEY, MAX_PARTITIONS_KEY, OXBOW_EXTRA_KEYS, RACK_ANNOTATIONS_FILE_KEY,
    RACK_ANNOTATION_KEY, SEGMENT_CACHE_SLOTS_KEY,
};
pub use describe::{
    describe_broker_configs, describe_cluster_default_broker_configs, describe_topic_configs,
    describe_topic_configs_with, validate_broker_dynamic_config, validate_broker_dynamic_configs,
    ConfigSource, ConfigSynonym, DescribedConfig,
};
pub use error::{ConfigError, INVALID_CONFIG, INVALID_REQUEST};
pub use properties::parse_properties;
pub use quorum::{QuorumConfig, QuorumVoter};
pub use topic::{
    effective_log_config, effective_min_insync_replicas, effective_topic_config_value,
    topic_config_key, topic_config_keys, validate_topic_config, validate_topic_configs,
    BrokerSynonym, SynonymConversion, TopicConfigKey,
};
pub use types::{ConfigType, Validator, CONFIG_TYPE_UNKNOWN};
