//! Topic configuration: Kafka 4.1's topic keys, their broker synonyms, validation and the
//! effective per-topic [`LogConfig`].

use std::collections::BTreeMap;

use super::broker::{
    get_value, BrokerConfig, CLEANUP_POLICIES, COMPRESSION_TYPES, TIMESTAMP_TYPES,
};
use super::error::ConfigError;
use super::types::{parse_value, ConfigType, Layers, Validator, Value};
use crate::log::{LogConfig, TimestampType};

/// How a broker synonym's value converts to the topic key's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SynonymConversion {
    /// Same unit.
    Identity,
    /// Broker value in minutes, topic value in milliseconds.
    MinutesToMs,
    /// Broker value in hours, topic value in milliseconds.
    HoursToMs,
}

/// A broker key a topic key falls back to.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BrokerSynonym {
    /// The broker key, e.g. `log.retention.minutes`.
    pub name: &'static str,
    /// Unit conversion to the topic key.
    pub conversion: SynonymConversion,
}

/// One topic configuration key, as Kafka 4.1 defines it.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct TopicConfigKey {
    /// The key, e.g. `retention.ms`.
    pub name: &'static str,
    /// Its type.
    pub config_type: ConfigType,
    /// The default exactly as Kafka prints it.
    pub default: Option<&'static str>,
    /// The value check.
    pub validator: Validator,
    /// Broker keys it falls back to, in precedence order (Kafka's
    /// `ServerTopicConfigSynonyms.ALL_TOPIC_CONFIG_SYNONYMS`); empty when none.
    pub synonyms: &'static [BrokerSynonym],
    /// One sentence describing the key.
    pub documentation: &'static str,
}

use ConfigType as T;
use SynonymConversion::{HoursToMs, Identity, MinutesToMs};
use Validator as V;

const fn s(name: &'static str) -> BrokerSynonym {
    BrokerSynonym {
        name,
        conversion: Identity,
    }
}

const fn minutes(name: &'static str) -> BrokerSynonym {
    BrokerSynonym {
        name,
        conversion: MinutesToMs,
    }
}

const fn hours(name: &'static str) -> BrokerSynonym {
    BrokerSynonym {
        name,
        conversion: HoursToMs,
    }
}

const fn t(
    name: &'static str,
    config_type: ConfigType,
    default: Option<&'static str>,
    validator: Validator,
    synonyms: &'static [BrokerSynonym],
    documentation: &'static str,
) -> TopicConfigKey {
    TopicConfigKey {
        name,
        config_type,
        default,
        validator,
        synonyms,
        documentation,
    }
}

const LONG_MAX: Option<&str> = Some("9223372036854775807");

/// Kafka 4.1's topic configs, sorted by name (`message.format.version`,
/// `message.timestamp.difference.max.ms` and `message.downconversion.enable` were removed
/// in 4.0).
#[rustfmt::skip]
static TOPIC_CONFIGS: &[TopicConfigKey] = &[
    t("cleanup.policy", T::List, Some("delete"), V::ListOf(CLEANUP_POLICIES), &[s("log.cleanup.policy")], "Retention policy of old segments: delete and/or compact."),
    t("compression.gzip.level", T::Int, Some("-1"), V::GzipLevel, &[s("compression.gzip.level")], "Compression level used with gzip."),
    t("compression.lz4.level", T::Int, Some("9"), V::Between(1, 17), &[s("compression.lz4.level")], "Compression level used with lz4."),
    t("compression.type", T::String, Some("producer"), V::OneOf(COMPRESSION_TYPES), &[s("compression.type")], "Final compression of the topic's data; producer keeps the producer's codec."),
    t("compression.zstd.level", T::Int, Some("3"), V::Between(-131072, 22), &[s("compression.zstd.level")], "Compression level used with zstd."),
    t("delete.retention.ms", T::Long, Some("86400000"), V::AtLeast(0), &[s("log.cleaner.delete.retention.ms")], "How long delete tombstones are kept on compacted topics."),
    t("file.delete.delay.ms", T::Long, Some("60000"), V::AtLeast(0), &[s("log.segment.delete.delay.ms")], "Delay before a deleted segment's files are removed."),
    t("flush.messages", T::Long, LONG_MAX, V::AtLeast(1), &[s("log.flush.interval.messages")], "Messages between forced fsyncs."),
    t("flush.ms", T::Long, LONG_MAX, V::AtLeast(0), &[s("log.flush.interval.ms"), s("log.flush.scheduler.interval.ms")], "Time between forced fsyncs."),
    t("follower.replication.throttled.replicas", T::List, Some(""), V::ThrottledReplicas, &[], "Replicas whose follower-side replication is throttled."),
    t("index.interval.bytes", T::Int, Some("4096"), V::AtLeast(0), &[s("log.index.interval.bytes")], "Bytes between offset index entries."),
    t("leader.replication.throttled.replicas", T::List, Some(""), V::ThrottledReplicas, &[], "Replicas whose leader-side replication is throttled."),
    t("local.retention.bytes", T::Long, Some("-2"), V::AtLeast(-2), &[s("log.local.retention.bytes")], "Local retention size of a tiered topic; -2 = retention.bytes."),
    t("local.retention.ms", T::Long, Some("-2"), V::AtLeast(-2), &[s("log.local.retention.ms")], "Local retention time of a tiered topic; -2 = retention.ms."),
    t("max.compaction.lag.ms", T::Long, LONG_MAX, V::AtLeast(1), &[s("log.cleaner.max.compaction.lag.ms")], "Maximum time a message stays uncompacted."),
    t("max.message.bytes", T::Int, Some("1048588"), V::AtLeast(0), &[s("message.max.bytes")], "Largest record batch size accepted, after compression."),
    t("message.timestamp.after.max.ms", T::Long, Some("3600000"), V::AtLeast(0), &[s("log.message.timestamp.after.max.ms")], "How far in the future a record timestamp may be."),
    t("message.timestamp.before.max.ms", T::Long, LONG_MAX, V::AtLeast(0), &[s("log.message.timestamp.before.max.ms")], "How far in the past a record timestamp may be."),
    t("message.timestamp.type", T::String, Some("CreateTime"), V::OneOf(TIMESTAMP_TYPES), &[s("log.message.timestamp.type")], "Whether record timestamps are CreateTime or LogAppendTime."),
    t("min.cleanable.dirty.ratio", T::Double, Some("0.5"), V::Between(0, 1), &[s("log.cleaner.min.cleanable.ratio")], "Dirty ratio above which the log is compacted."),
    t("min.compaction.lag.ms", T::Long, Some("0"), V::AtLeast(0), &[s("log.cleaner.min.compaction.lag.ms")], "Minimum time a message stays uncompacted."),
    t("min.insync.replicas", T::Int, Some("1"), V::AtLeast(1), &[s("min.insync.replicas")], "Minimum in-sync replicas for acks=all writes."),
    t("preallocate", T::Boolean, Some("false"), V::None, &[s("log.preallocate")], "Preallocate segment files."),
    t("remote.log.copy.disable", T::Boolean, Some("false"), V::None, &[], "Stop copying segments to remote storage."),
    t("remote.log.delete.on.disable", T::Boolean, Some("false"), V::None, &[], "Delete remote data when tiering is disabled."),
    t("remote.storage.enable", T::Boolean, Some("false"), V::None, &[], "Enable tiered storage for the topic."),
    t("retention.bytes", T::Long, Some("-1"), V::None, &[s("log.retention.bytes")], "Maximum size of a partition before old segments are deleted; -1 = unlimited."),
    t("retention.ms", T::Long, Some("604800000"), V::AtLeast(-1), &[s("log.retention.ms"), minutes("log.retention.minutes"), hours("log.retention.hours")], "How long records are kept before deletion; -1 = forever."),
    t("segment.bytes", T::Int, Some("1073741824"), V::AtLeast(1_048_576), &[s("log.segment.bytes")], "Maximum size of a segment file."),
    t("segment.index.bytes", T::Int, Some("10485760"), V::AtLeast(4), &[s("log.index.size.max.bytes")], "Maximum size of a segment's offset index."),
    t("segment.jitter.ms", T::Long, Some("0"), V::AtLeast(0), &[s("log.roll.jitter.ms"), hours("log.roll.jitter.hours")], "Maximum random jitter subtracted from segment.ms."),
    t("segment.ms", T::Long, Some("604800000"), V::AtLeast(1), &[s("log.roll.ms"), hours("log.roll.hours")], "Maximum age of the active segment before it is rolled."),
    t("unclean.leader.election.enable", T::Boolean, Some("false"), V::None, &[s("unclean.leader.election.enable")], "Allow out-of-sync replicas to become leader."),
];

/// Every topic config Kafka 4.1 knows, sorted by name.
pub fn topic_config_keys() -> &'static [TopicConfigKey] {
    TOPIC_CONFIGS
}

/// The definition of topic config `name`.
pub fn topic_config_key(name: &str) -> Option<&'static TopicConfigKey> {
    TOPIC_CONFIGS
        .binary_search_by(|d| d.name.cmp(name))
        .ok()
        .map(|i| &TOPIC_CONFIGS[i])
}

/// Validates one topic config (CreateTopics, AlterConfigs, IncrementalAlterConfigs).
/// Unknown name: `ConfigError::Unknown` ("Unknown topic config name: x", INVALID_CONFIG);
/// bad value: `ConfigError::InvalidValue` in Kafka's words (INVALID_CONFIG).
pub fn validate_topic_config(name: &str, value: &str) -> Result<(), ConfigError> {
    let def = topic_config_key(name).ok_or_else(|| ConfigError::Unknown(name.to_string()))?;
    parse_value(name, value, def.config_type, def.validator).map(|_| ())
}

/// Validates a whole set of topic overrides (first error wins, in name order).
pub fn validate_topic_configs(configs: &BTreeMap<String, String>) -> Result<(), ConfigError> {
    configs
        .iter()
        .try_for_each(|(name, value)| validate_topic_config(name, value))
}

fn convert(value: &Value, conversion: SynonymConversion, to: ConfigType) -> Value {
    let scaled = |n: i64| match conversion {
        Identity => n,
        MinutesToMs => n.saturating_mul(60_000),
        HoursToMs => n.saturating_mul(3_600_000),
    };
    match (value.as_i64(), to) {
        (Some(n), ConfigType::Long) => Value::Long(scaled(n)),
        (Some(n), ConfigType::Int) => {
            Value::Int(i32::try_from(scaled(n)).unwrap_or(if n < 0 { i32::MIN } else { i32::MAX }))
        }
        _ => value.clone(),
    }
}

/// The broker-level value a topic key falls back to: the first synonym that is set (dynamic,
/// static) or has a non-null Kafka default, converted to the topic unit; `None` when the key
/// has no broker synonym.
pub(crate) fn broker_fallback(def: &TopicConfigKey, broker: &Layers<'_>) -> Option<Value> {
    for syn in def.synonyms {
        let Ok(v) = get_value(broker, syn.name) else {
            // An invalid broker value cannot occur after BrokerConfig validation; skip it.
            continue;
        };
        if v == Value::Null {
            continue;
        }
        let mut v = convert(&v, syn.conversion, def.config_type);
        // KafkaConfig.logRetentionTimeMillis: any negative retention means unlimited.
        if def.name == "retention.ms" {
            if let Value::Long(n) = v {
                if n < 0 {
                    v = Value::Long(-1);
                }
            }
        }
        return Some(v);
    }
    None
}

/// The effective value of topic key `def`: a valid override, else the broker fallback, else
/// the topic default.
pub(crate) fn effective_topic_value(
    def: &TopicConfigKey,
    overrides: &BTreeMap<String, String>,
    broker: &Layers<'_>,
) -> Value {
    if let Some(raw) = overrides.get(def.name) {
        if let Ok(v) = parse_value(def.name, raw, def.config_type, def.validator) {
            return v;
        }
    }
    if let Some(v) = broker_fallback(def, broker) {
        return v;
    }
    def.default
        .and_then(|d| parse_value(def.name, d, def.config_type, def.validator).ok())
        .unwrap_or(Value::Null)
}

fn topic_value(name: &str, overrides: &BTreeMap<String, String>, broker: &Layers<'_>) -> Value {
    match topic_config_key(name) {
        Some(def) => effective_topic_value(def, overrides, broker),
        None => Value::Null,
    }
}

/// Builds a `LogConfig` from topic overrides over broker layers (shared with `BrokerConfig`).
pub(crate) fn build_log_config(
    overrides: &BTreeMap<String, String>,
    broker: &Layers<'_>,
) -> LogConfig {
    let d = LogConfig::default();
    let long = |name: &str, fallback: i64| {
        topic_value(name, overrides, broker)
            .as_i64()
            .unwrap_or(fallback)
    };
    let unsigned = |name: &str, fallback: u64| {
        topic_value(name, overrides, broker)
            .as_i64()
            .and_then(|n| u64::try_from(n).ok())
            .unwrap_or(fallback)
    };
    let max_message_bytes = match topic_value("max.message.bytes", overrides, broker) {
        Value::Int(n) => n,
        _ => d.max_message_bytes,
    };
    let timestamp_type = match topic_value("message.timestamp.type", overrides, broker) {
        Value::Str(s) if s == "LogAppendTime" => TimestampType::LogAppendTime,
        _ => TimestampType::CreateTime,
    };
    let (cleanup_delete, cleanup_compact) = match topic_value("cleanup.policy", overrides, broker) {
        Value::List(l) => (
            l.iter().any(|p| p == "delete"),
            l.iter().any(|p| p == "compact"),
        ),
        _ => (d.cleanup_delete, d.cleanup_compact),
    };
    LogConfig {
        segment_bytes: unsigned("segment.bytes", d.segment_bytes),
        segment_ms: long("segment.ms", d.segment_ms),
        retention_ms: long("retention.ms", d.retention_ms),
        retention_bytes: long("retention.bytes", d.retention_bytes),
        max_message_bytes,
        timestamp_type,
        index_interval_bytes: unsigned("index.interval.bytes", d.index_interval_bytes),
        segment_index_bytes: unsigned("segment.index.bytes", d.segment_index_bytes),
        cleanup_delete,
        cleanup_compact,
        file_delete_delay_ms: long("file.delete.delay.ms", d.file_delete_delay_ms),
        delete_retention_ms: long("delete.retention.ms", d.delete_retention_ms),
        min_compaction_lag_ms: long("min.compaction.lag.ms", d.min_compaction_lag_ms),
        max_compaction_lag_ms: long("max.compaction.lag.ms", d.max_compaction_lag_ms),
        min_cleanable_dirty_ratio: match topic_value("min.cleanable.dirty.ratio", overrides, broker)
        {
            Value::Double(r) => r,
            _ => d.min_cleanable_dirty_ratio,
        },
        flush_messages: long("flush.messages", d.flush_messages),
        flush_ms: long("flush.ms", d.flush_ms),
        // A broker key only: Kafka has no topic-level override for it.
        producer_id_expiration_ms: broker
            .get("producer.id.expiration.ms")
            .and_then(|v| v.trim().parse::<i64>().ok())
            .filter(|&ms| ms >= 1)
            .unwrap_or(d.producer_id_expiration_ms),
    }
}

/// Effective `LogConfig` for a topic: a (valid) topic override wins, else the broker's
/// configuration (dynamic configs applied via [`BrokerConfig::with_dynamic`], then
/// `server.properties`, following Kafka's synonym precedence such as
/// `log.retention.ms` > `log.retention.minutes` > `log.retention.hours`), else Kafka's
/// default. Invalid overrides (which validation should have refused) are ignored.
pub fn effective_log_config(
    broker: &BrokerConfig,
    topic_overrides: &BTreeMap<String, String>,
) -> LogConfig {
    let empty = BTreeMap::new();
    build_log_config(topic_overrides, &broker.layers(&empty))
}

/// Effective `min.insync.replicas` for a topic: override, else broker, else 1.
pub fn effective_min_insync_replicas(
    broker: &BrokerConfig,
    topic_overrides: &BTreeMap<String, String>,
) -> i32 {
    effective_topic_config_value(broker, topic_overrides, "min.insync.replicas")
        .and_then(|v| v.parse().ok())
        .unwrap_or(1)
}

/// Effective value of any topic config, as Kafka prints it (e.g. `"604800000"`), or `None`
/// for an unknown name.
pub fn effective_topic_config_value(
    broker: &BrokerConfig,
    topic_overrides: &BTreeMap<String, String>,
    name: &str,
) -> Option<String> {
    let def = topic_config_key(name)?;
    let empty = BTreeMap::new();
    effective_topic_value(def, topic_overrides, &broker.layers(&empty)).to_kafka_string()
}

/// Whether a topic key's first broker synonym is a known broker key (sanity for the tables).
#[cfg(test)]
fn synonyms_known(def: &TopicConfigKey) -> bool {
    def.synonyms
        .iter()
        .all(|s| super::broker::broker_config_key(s.name).is_some())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn broker(text: &str) -> BrokerConfig {
        BrokerConfig::from_properties(text, &[]).unwrap().0
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn table_is_sorted_valid_and_linked() {
        for pair in TOPIC_CONFIGS.windows(2) {
            assert!(pair[0].name < pair[1].name);
        }
        for def in TOPIC_CONFIGS {
            assert!(synonyms_known(def), "{}", def.name);
            if let Some(d) = def.default {
                validate_topic_config(def.name, d).unwrap();
            }
        }
    }

    #[test]
    fn validation() {
        let e = validate_topic_config("retention.mss", "1").unwrap_err();
        assert_eq!(e, ConfigError::Unknown("retention.mss".into()));
        assert_eq!(e.to_string(), "Unknown topic config name: retention.mss");
        assert_eq!(e.kafka_code(), 40);
        let e = validate_topic_config("retention.ms", "-2").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid value -2 for configuration retention.ms: Value must be at least -1"
        );
        let e = validate_topic_config("cleanup.policy", "remove").unwrap_err();
        assert!(e
            .to_string()
            .contains("String must be one of: compact, delete"));
        let e = validate_topic_config("compression.type", "brotli").unwrap_err();
        assert!(e
            .to_string()
            .contains("uncompressed, zstd, lz4, snappy, gzip, producer"));
        let e = validate_topic_config("segment.bytes", "1024").unwrap_err();
        assert!(e.to_string().contains("at least 1048576"));
        assert!(validate_topic_config("message.timestamp.type", "LogAppendTime").is_ok());
        assert!(validate_topic_config("min.cleanable.dirty.ratio", "0.1").is_ok());
        assert!(validate_topic_config("message.downconversion.enable", "true").is_err());
        assert!(validate_topic_configs(&map(&[("retention.ms", "1"), ("x", "y")])).is_err());
    }

    #[test]
    fn effective_config_precedence() {
        let b = broker("node.id=1\nlog.retention.hours=24\nmin.insync.replicas=2");
        let lc = effective_log_config(&b, &BTreeMap::new());
        assert_eq!(lc.retention_ms, 86_400_000);
        let lc = effective_log_config(&b, &map(&[("retention.ms", "1000")]));
        assert_eq!(lc.retention_ms, 1000);
        assert_eq!(effective_min_insync_replicas(&b, &BTreeMap::new()), 2);
        assert_eq!(
            effective_min_insync_replicas(&b, &map(&[("min.insync.replicas", "3")])),
            3
        );
        let lc = effective_log_config(
            &b,
            &map(&[
                ("segment.bytes", "2000000"),
                ("segment.ms", "100"),
                ("cleanup.policy", "compact"),
                ("max.message.bytes", "10"),
                ("message.timestamp.type", "LogAppendTime"),
                ("file.delete.delay.ms", "0"),
            ]),
        );
        assert_eq!(lc.segment_bytes, 2_000_000);
        assert_eq!(lc.segment_ms, 100);
        assert!(lc.cleanup_compact && !lc.cleanup_delete);
        assert_eq!(lc.max_message_bytes, 10);
        assert_eq!(lc.timestamp_type, TimestampType::LogAppendTime);
        assert_eq!(lc.file_delete_delay_ms, 0);
        // An invalid override is ignored rather than trusted.
        let lc = effective_log_config(&b, &map(&[("retention.ms", "soon")]));
        assert_eq!(lc.retention_ms, 86_400_000);
    }

    #[test]
    fn dynamic_broker_defaults_apply() {
        let b = broker("node.id=1");
        let dynamic_default = map(&[("log.retention.ms", "5000")]);
        let b = b.with_dynamic(&BTreeMap::new(), &dynamic_default).unwrap();
        assert_eq!(
            effective_log_config(&b, &BTreeMap::new()).retention_ms,
            5000
        );
        assert_eq!(
            effective_topic_config_value(&b, &BTreeMap::new(), "retention.ms").as_deref(),
            Some("5000")
        );
    }

    #[test]
    fn flush_and_segment_synonyms() {
        let b = broker("node.id=1\nlog.flush.scheduler.interval.ms=3000\nlog.roll.ms=10");
        let e = |n| effective_topic_config_value(&b, &BTreeMap::new(), n);
        assert_eq!(e("flush.ms").as_deref(), Some("3000"));
        assert_eq!(e("segment.ms").as_deref(), Some("10"));
        assert_eq!(e("min.cleanable.dirty.ratio").as_deref(), Some("0.5"));
        assert_eq!(e("cleanup.policy").as_deref(), Some("delete"));
        assert_eq!(e("remote.storage.enable").as_deref(), Some("false"));
        assert_eq!(e("nope"), None);
    }
}
