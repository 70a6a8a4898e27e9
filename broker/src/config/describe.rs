//! DescribeConfigs results and dynamic broker config checks, computed like Kafka's
//! `ConfigHelper` and `DynamicBrokerConfig`.
//!
//! Synonyms follow Kafka exactly: for a key, the candidate broker names are the key itself
//! or its group (`log.retention.{ms,minutes,hours}`, `log.roll.{ms,hours}`,
//! `log.roll.jitter.{ms,hours}`, `log.flush.interval.ms` + `log.flush.scheduler.interval.ms`);
//! Kafka lists all dynamic per-broker entries, then dynamic cluster defaults, then static
//! (`server.properties`) entries, then non-null defaults, and finally drops leading entries
//! until one named like the described broker key. A consequence Kafka users see: a topic's
//! `retention.ms` without overrides reports `DEFAULT_CONFIG` with no synonyms, because
//! `log.retention.ms` has no default and `log.retention.hours=168` is dropped; with an
//! override it reports just `[DYNAMIC_TOPIC_CONFIG retention.ms=...]`.

use std::collections::{BTreeMap, BTreeSet};

use super::broker::{
    broker_config_key, check_broker_value, BrokerConfig, UpdateMode, LISTENER_ONLY_DYNAMIC,
};
use super::error::ConfigError;
use super::topic::{effective_topic_value, topic_config_keys};
use super::types::{parse_value, ConfigType, Layers, CONFIG_TYPE_UNKNOWN};

/// Where a described value comes from (Kafka's `ConfigSource`); [`ConfigSource::code`] is
/// the wire value.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// 0.
    Unknown,
    /// 1: a topic override.
    DynamicTopicConfig,
    /// 2: a dynamic config of this broker.
    DynamicBrokerConfig,
    /// 3: a dynamic cluster-wide default broker config.
    DynamicDefaultBrokerConfig,
    /// 4: `server.properties` (or an override given at start-up).
    StaticBrokerConfig,
    /// 5: Kafka's default.
    DefaultConfig,
    /// 6: a dynamic broker logger config.
    DynamicBrokerLoggerConfig,
    /// 7: a client metrics subscription config.
    ClientMetricsConfig,
    /// 8: a group config.
    GroupConfig,
}

impl ConfigSource {
    /// The DescribeConfigs wire code: UNKNOWN=0, DYNAMIC_TOPIC_CONFIG=1,
    /// DYNAMIC_BROKER_CONFIG=2, DYNAMIC_DEFAULT_BROKER_CONFIG=3, STATIC_BROKER_CONFIG=4,
    /// DEFAULT_CONFIG=5, DYNAMIC_BROKER_LOGGER_CONFIG=6, CLIENT_METRICS_CONFIG=7,
    /// GROUP_CONFIG=8.
    pub fn code(&self) -> i8 {
        match self {
            ConfigSource::Unknown => 0,
            ConfigSource::DynamicTopicConfig => 1,
            ConfigSource::DynamicBrokerConfig => 2,
            ConfigSource::DynamicDefaultBrokerConfig => 3,
            ConfigSource::StaticBrokerConfig => 4,
            ConfigSource::DefaultConfig => 5,
            ConfigSource::DynamicBrokerLoggerConfig => 6,
            ConfigSource::ClientMetricsConfig => 7,
            ConfigSource::GroupConfig => 8,
        }
    }

    /// The source for a wire code (unknown codes map to `Unknown`).
    pub fn from_code(code: i8) -> ConfigSource {
        match code {
            1 => ConfigSource::DynamicTopicConfig,
            2 => ConfigSource::DynamicBrokerConfig,
            3 => ConfigSource::DynamicDefaultBrokerConfig,
            4 => ConfigSource::StaticBrokerConfig,
            5 => ConfigSource::DefaultConfig,
            6 => ConfigSource::DynamicBrokerLoggerConfig,
            7 => ConfigSource::ClientMetricsConfig,
            8 => ConfigSource::GroupConfig,
            _ => ConfigSource::Unknown,
        }
    }

    /// Kafka's name, e.g. `DEFAULT_CONFIG` (as `kafka-configs.sh` prints synonyms).
    pub fn name(&self) -> &'static str {
        match self {
            ConfigSource::Unknown => "UNKNOWN",
            ConfigSource::DynamicTopicConfig => "DYNAMIC_TOPIC_CONFIG",
            ConfigSource::DynamicBrokerConfig => "DYNAMIC_BROKER_CONFIG",
            ConfigSource::DynamicDefaultBrokerConfig => "DYNAMIC_DEFAULT_BROKER_CONFIG",
            ConfigSource::StaticBrokerConfig => "STATIC_BROKER_CONFIG",
            ConfigSource::DefaultConfig => "DEFAULT_CONFIG",
            ConfigSource::DynamicBrokerLoggerConfig => "DYNAMIC_BROKER_LOGGER_CONFIG",
            ConfigSource::ClientMetricsConfig => "CLIENT_METRICS_CONFIG",
            ConfigSource::GroupConfig => "GROUP_CONFIG",
        }
    }
}

/// One synonym of a described config, in precedence order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigSynonym {
    /// The synonym's key (a topic or broker key).
    pub name: String,
    /// Its value at that level; `None` when sensitive.
    pub value: Option<String>,
    /// The level.
    pub source: ConfigSource,
}

/// One DescribeConfigs result entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedConfig {
    /// The key.
    pub name: String,
    /// Effective value as Kafka prints it; `None` for null or sensitive values.
    pub value: Option<String>,
    /// Whether it cannot be altered (broker keys that are not dynamic; topic keys never).
    pub read_only: bool,
    /// Where the value comes from (the first synonym's source, else `DefaultConfig`).
    pub source: ConfigSource,
    /// PASSWORD keys, and keys of unknown type, are sensitive: value withheld.
    pub sensitive: bool,
    /// Synonyms in precedence order (empty unless requested).
    pub synonyms: Vec<ConfigSynonym>,
    /// Kafka's `ConfigType` code ([`ConfigType::code`], 0 for unknown keys).
    pub config_type: i8,
    /// One-sentence documentation, when requested and known.
    pub documentation: Option<String>,
}

/// Kafka's `DynamicBrokerConfig.brokerConfigSynonyms(name, matchListenerOverride = true)`.
fn broker_synonym_names(name: &str) -> Vec<String> {
    const GROUPS: &[&[&str]] = &[
        &["log.roll.ms", "log.roll.hours"],
        &["log.roll.jitter.ms", "log.roll.jitter.hours"],
        &[
            "log.retention.ms",
            "log.retention.minutes",
            "log.retention.hours",
        ],
    ];
    if name == "log.flush.interval.ms" {
        return vec![
            name.to_string(),
            "log.flush.scheduler.interval.ms".to_string(),
        ];
    }
    if let Some(group) = GROUPS.iter().find(|g| g.contains(&name)) {
        return group.iter().map(|s| s.to_string()).collect();
    }
    if let Some(rest) = name.strip_prefix("listener.name.") {
        if let Some((_, base)) = rest.split_once('.') {
            return vec![name.to_string(), base.to_string()];
        }
    }
    vec![name.to_string()]
}

/// Kafka's `ConfigHelper.configSynonyms`.
fn config_synonyms(
    name: &str,
    per_broker: &BTreeMap<String, String>,
    cluster_default: &BTreeMap<String, String>,
    static_config: &BTreeMap<String, String>,
    sensitive: bool,
) -> Vec<ConfigSynonym> {
    let names = broker_synonym_names(name);
    let mut all = Vec::new();
    let mut add = |n: &str, value: Option<&str>, source: ConfigSource| {
        if let Some(v) = value {
            all.push(ConfigSynonym {
                name: n.to_string(),
                value: if sensitive { None } else { Some(v.to_string()) },
                source,
            });
        }
    };
    for n in &names {
        add(
            n,
            per_broker.get(n).map(String::as_str),
            ConfigSource::DynamicBrokerConfig,
        );
    }
    for n in &names {
        add(
            n,
            cluster_default.get(n).map(String::as_str),
            ConfigSource::DynamicDefaultBrokerConfig,
        );
    }
    for n in &names {
        add(
            n,
            static_config.get(n).map(String::as_str),
            ConfigSource::StaticBrokerConfig,
        );
    }
    for n in &names {
        add(
            n,
            broker_config_key(n).and_then(|d| d.default),
            ConfigSource::DefaultConfig,
        );
    }
    let skip = all.iter().take_while(|s| s.name != name).count();
    all.split_off(skip)
}

fn wanted(keys: Option<&[String]>, name: &str) -> bool {
    match keys {
        None => true,
        Some([]) => true,
        Some(keys) => keys.iter().any(|k| k == name),
    }
}

/// DescribeConfigs for a topic, treating `dynamic_broker` as this node's dynamic per-broker
/// configs (`DYNAMIC_BROKER_CONFIG`, resource name = node id) and ignoring `broker.dynamic`;
/// use [`describe_topic_configs_with`] to also pass the cluster-wide dynamic defaults
/// (resource name "").
///
/// Every topic config (or only those named in `keys`; `None` or empty = all; unknown names
/// are skipped, as Kafka does), sorted by name; value = effective value; source
/// `DYNAMIC_TOPIC_CONFIG` if overridden, else the source of the first broker synonym that
/// survives Kafka's synonym rules, else `DEFAULT_CONFIG`. Synonyms (when `include_synonyms`)
/// start with the topic override, followed by the broker synonyms in Kafka's order.
pub fn describe_topic_configs(
    broker: &BrokerConfig,
    dynamic_broker: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
    keys: Option<&[String]>,
    include_synonyms: bool,
    include_docs: bool,
) -> Vec<DescribedConfig> {
    describe_topic_configs_with(
        broker,
        dynamic_broker,
        &BTreeMap::new(),
        overrides,
        keys,
        include_synonyms,
        include_docs,
    )
}

/// [`describe_topic_configs`] with both dynamic broker levels: `per_broker`
/// (`DYNAMIC_BROKER_CONFIG`, this node) and `cluster_default`
/// (`DYNAMIC_DEFAULT_BROKER_CONFIG`), over `broker.explicit` (`STATIC_BROKER_CONFIG`).
pub fn describe_topic_configs_with(
    broker: &BrokerConfig,
    per_broker: &BTreeMap<String, String>,
    cluster_default: &BTreeMap<String, String>,
    overrides: &BTreeMap<String, String>,
    keys: Option<&[String]>,
    include_synonyms: bool,
    include_docs: bool,
) -> Vec<DescribedConfig> {
    let layers = Layers {
        maps: [per_broker, cluster_default, &broker.explicit],
    };
    topic_config_keys()
        .iter()
        .filter(|def| wanted(keys, def.name))
        .map(|def| {
            let sensitive = def.config_type == ConfigType::Password;
            let value = if sensitive {
                None
            } else {
                effective_topic_value(def, overrides, &layers).to_kafka_string()
            };
            let mut synonyms = Vec::new();
            if overrides.contains_key(def.name) {
                synonyms.push(ConfigSynonym {
                    name: def.name.to_string(),
                    value: value.clone(),
                    source: ConfigSource::DynamicTopicConfig,
                });
            }
            if let Some(primary) = def.synonyms.first() {
                synonyms.extend(config_synonyms(
                    primary.name,
                    per_broker,
                    cluster_default,
                    &broker.explicit,
                    sensitive,
                ));
            }
            let source = synonyms
                .first()
                .map_or(ConfigSource::DefaultConfig, |s| s.source);
            DescribedConfig {
                name: def.name.to_string(),
                value,
                read_only: false,
                source,
                sensitive,
                synonyms: if include_synonyms {
                    synonyms
                } else {
                    Vec::new()
                },
                config_type: def.config_type.code(),
                documentation: include_docs.then(|| def.documentation.to_string()),
            }
        })
        .collect()
}

fn canonical_broker_value(name: &str, raw: Option<&str>) -> Option<String> {
    let def = broker_config_key(name);
    let raw = raw.or_else(|| def.and_then(|d| d.default))?;
    match def {
        Some(d) => match parse_value(name, raw, d.config_type, d.validator) {
            Ok(v) => v.to_kafka_string(),
            Err(_) => Some(raw.to_string()),
        },
        None => Some(raw.to_string()),
    }
}

/// DescribeConfigs for this broker (resource name = its node id): every known broker key
/// plus every other key set statically or dynamically, sorted by name (or only `keys`).
/// Value = effective value (per-broker dynamic > cluster default > static > Kafka default,
/// printed as Kafka prints it); source `DYNAMIC_BROKER_CONFIG` /
/// `DYNAMIC_DEFAULT_BROKER_CONFIG` / `STATIC_BROKER_CONFIG` / `DEFAULT_CONFIG` per Kafka's
/// synonym rules; `read_only` unless the key is dynamically updatable; PASSWORD keys and
/// keys of unknown type are sensitive (value `None`), as in Kafka.
pub fn describe_broker_configs(
    broker: &BrokerConfig,
    dynamic_per_broker: &BTreeMap<String, String>,
    dynamic_default: &BTreeMap<String, String>,
    keys: Option<&[String]>,
    include_synonyms: bool,
    include_docs: bool,
) -> Vec<DescribedConfig> {
    let layers = Layers {
        maps: [dynamic_per_broker, dynamic_default, &broker.explicit],
    };
    let mut names: BTreeSet<&str> = super::broker::broker_config_keys()
        .iter()
        .map(|d| d.name)
        .collect();
    for map in [&broker.explicit, dynamic_per_broker, dynamic_default] {
        names.extend(map.keys().map(String::as_str));
    }
    names
        .into_iter()
        .filter(|name| wanted(keys, name))
        .map(|name| {
            broker_entry(
                name,
                || canonical_broker_value(name, layers.get(name)),
                |sensitive| {
                    config_synonyms(
                        name,
                        dynamic_per_broker,
                        dynamic_default,
                        &broker.explicit,
                        sensitive,
                    )
                },
                include_synonyms,
                include_docs,
            )
        })
        .collect()
}

/// One broker config as DescribeConfigs reports it (Kafka's
/// `ConfigHelper.createBrokerConfigEntry`): PASSWORD keys and keys of unknown type are
/// sensitive, their value withheld (`value` is not called) and `synonyms` asked for
/// withheld values; otherwise the value is `value()`. The source is that of the first
/// synonym (the one in effect), or DEFAULT_CONFIG.
fn broker_entry(
    name: &str,
    value: impl FnOnce() -> Option<String>,
    synonyms: impl FnOnce(bool) -> Vec<ConfigSynonym>,
    include_synonyms: bool,
    include_docs: bool,
) -> DescribedConfig {
    let def = broker_config_key(name);
    let sensitive = def.is_none_or(|d| d.config_type == ConfigType::Password);
    let value = if sensitive { None } else { value() };
    let synonyms = synonyms(sensitive);
    let source = synonyms
        .first()
        .map_or(ConfigSource::DefaultConfig, |s| s.source);
    DescribedConfig {
        name: name.to_string(),
        value,
        read_only: def.is_none_or(|d| d.update_mode == UpdateMode::ReadOnly),
        source,
        sensitive,
        synonyms: if include_synonyms {
            synonyms
        } else {
            Vec::new()
        },
        config_type: def.map_or(CONFIG_TYPE_UNKNOWN, |d| d.config_type.code()),
        documentation: if include_docs {
            def.map(|d| d.documentation.to_string())
        } else {
            None
        },
    }
}

/// DescribeConfigs for the cluster-wide broker default (resource name ""): as Kafka, only
/// the keys set in `dynamic_default` (or the requested subset), each with source
/// `DYNAMIC_DEFAULT_BROKER_CONFIG` and only synonyms of that level.
pub fn describe_cluster_default_broker_configs(
    dynamic_default: &BTreeMap<String, String>,
    keys: Option<&[String]>,
    include_synonyms: bool,
    include_docs: bool,
) -> Vec<DescribedConfig> {
    let empty = BTreeMap::new();
    dynamic_default
        .iter()
        .filter(|(name, _)| wanted(keys, name))
        .map(|(name, raw)| {
            broker_entry(
                name,
                || Some(raw.clone()),
                |sensitive| {
                    config_synonyms(name, &empty, dynamic_default, &empty, sensitive)
                        .into_iter()
                        .filter(|s| s.source == ConfigSource::DynamicDefaultBrokerConfig)
                        .collect()
                },
                include_synonyms,
                include_docs,
            )
        })
        .collect()
}

/// Validates one dynamic broker config update (AlterConfigs / IncrementalAlterConfigs on a
/// broker resource). Read-only keys: `NotDynamic` ("Cannot update these configs
/// dynamically: Set(x)", INVALID_REQUEST as Kafka's broker answers). SSL keystore/truststore
/// keys without a `listener.name.<l>.` prefix: `InvalidRequest`. Bad values: `InvalidValue`
/// (INVALID_CONFIG). Unknown keys are accepted, as Kafka does.
pub fn validate_broker_dynamic_config(name: &str, value: &str) -> Result<(), ConfigError> {
    let configs = BTreeMap::from([(name.to_string(), value.to_string())]);
    validate_broker_dynamic_configs(&configs, true)
}

/// Validates a set of dynamic broker config updates in Kafka's order: read-only keys (all
/// named in one `Set(...)`), listener-only security keys, value types, then — when
/// `per_broker` is false (resource "") — per-broker-only keys ("Cannot update these configs
/// at default cluster level, broker id must be specified: Set(x)", INVALID_REQUEST).
pub fn validate_broker_dynamic_configs(
    configs: &BTreeMap<String, String>,
    per_broker: bool,
) -> Result<(), ConfigError> {
    let base = |name: &str| -> String {
        broker_synonym_names(name)
            .last()
            .cloned()
            .unwrap_or_else(|| name.to_string())
    };
    let read_only: Vec<String> = configs
        .keys()
        .filter(|n| broker_config_key(n).is_some_and(|d| d.update_mode == UpdateMode::ReadOnly))
        .cloned()
        .collect();
    if !read_only.is_empty() {
        return Err(ConfigError::NotDynamic(read_only));
    }
    let listener_only: Vec<String> = configs
        .keys()
        .filter(|n| LISTENER_ONLY_DYNAMIC.contains(&n.as_str()))
        .cloned()
        .collect();
    if !listener_only.is_empty() {
        return Err(ConfigError::InvalidRequest(format!(
            "These security configs can be dynamically updated only per-listener using the \
             listener prefix: Set({})",
            listener_only.join(", ")
        )));
    }
    for (name, value) in configs {
        check_broker_quota(name, value)?;
    }
    for (name, value) in configs {
        check_broker_value(&base(name), value).map_err(|e| match e {
            ConfigError::InvalidValue { value, reason, .. } => ConfigError::InvalidValue {
                name: name.clone(),
                value,
                reason,
            },
            other => other,
        })?;
    }
    if !per_broker {
        let only_per_broker: Vec<String> = configs
            .keys()
            .filter(|n| {
                let b = base(n);
                let per_broker_key =
                    broker_config_key(&b).is_some_and(|d| d.update_mode == UpdateMode::PerBroker);
                per_broker_key
                    && !matches!(
                        b.as_str(),
                        "max.connections" | "max.connection.creation.rate"
                    )
            })
            .cloned()
            .collect();
        if !only_per_broker.is_empty() {
            return Err(ConfigError::InvalidRequest(format!(
                "Cannot update these configs at default cluster level, broker id must be \
                 specified: Set({})",
                only_per_broker.join(", ")
            )));
        }
    }
    Ok(())
}

/// Kafka's broker quota configs (`QuotaConfig.brokerQuotaConfigs`): the replication
/// throttles `kafka-reassign-partitions.sh --throttle` sets on every broker of a
/// reassignment and `--verify` removes. They exist only as dynamic configs (not in
/// server.properties), LONG, at least 0, default `Long.MAX_VALUE` (no throttle). Oxbow
/// stores them, answers them in DescribeConfigs and enforces the leader's rate
/// (`crate::replica::quota`); the follower's rate and the log-dir copy rate are not enforced.
pub(crate) const BROKER_QUOTA_CONFIGS: [&str; 3] = [
    "follower.replication.throttled.rate",
    "leader.replication.throttled.rate",
    "replica.alter.log.dirs.io.max.bytes.per.second",
];

/// Checks a broker quota config's value as Kafka's `DynamicConfig.Broker.validate` does; a
/// `ConfigException` there reaches the client as INVALID_REQUEST with its message.
fn check_broker_quota(name: &str, value: &str) -> Result<(), ConfigError> {
    if !BROKER_QUOTA_CONFIGS.contains(&name) {
        return Ok(());
    }
    let reason = match value.trim().parse::<i64>() {
        Ok(v) if v >= 0 => return Ok(()),
        Ok(_) => "Value must be at least 0",
        Err(_) => "Not a number of type LONG",
    };
    Err(ConfigError::InvalidRequest(format!(
        "Invalid value {value} for configuration {name}: {reason}"
    )))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replication_throttles_are_dynamic_longs_of_at_least_zero() {
        for name in BROKER_QUOTA_CONFIGS {
            // Per broker, as kafka-reassign-partitions.sh --throttle sets them, and as
            // cluster-wide defaults.
            for per_broker in [true, false] {
                let ok = BTreeMap::from([(name.to_string(), "50000000".to_string())]);
                assert_eq!(validate_broker_dynamic_configs(&ok, per_broker), Ok(()));
            }
            let refused = |value: &str| {
                let c = BTreeMap::from([(name.to_string(), value.to_string())]);
                let e = validate_broker_dynamic_configs(&c, true).unwrap_err();
                (e.kafka_code(), e.to_string())
            };
            assert_eq!(
                refused("-1"),
                (
                    42,
                    format!("Invalid value -1 for configuration {name}: Value must be at least 0")
                )
            );
            assert_eq!(
                refused("fast"),
                (
                    42,
                    format!(
                        "Invalid value fast for configuration {name}: Not a number of type LONG"
                    )
                )
            );
        }
    }

    fn broker(text: &str) -> BrokerConfig {
        BrokerConfig::from_properties(text, &[]).unwrap().0
    }

    fn map(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    fn syn(name: &str, value: &str, source: ConfigSource) -> ConfigSynonym {
        ConfigSynonym {
            name: name.to_string(),
            value: Some(value.to_string()),
            source,
        }
    }

    fn find<'a>(all: &'a [DescribedConfig], name: &str) -> &'a DescribedConfig {
        all.iter()
            .find(|c| c.name == name)
            .unwrap_or_else(|| panic!("{name} missing"))
    }

    #[test]
    fn source_codes() {
        assert_eq!(ConfigSource::Unknown.code(), 0);
        assert_eq!(ConfigSource::DynamicTopicConfig.code(), 1);
        assert_eq!(ConfigSource::DynamicBrokerConfig.code(), 2);
        assert_eq!(ConfigSource::DynamicDefaultBrokerConfig.code(), 3);
        assert_eq!(ConfigSource::StaticBrokerConfig.code(), 4);
        assert_eq!(ConfigSource::DefaultConfig.code(), 5);
        assert_eq!(ConfigSource::DynamicBrokerLoggerConfig.code(), 6);
        for code in 0..=8 {
            assert_eq!(ConfigSource::from_code(code).code(), code);
        }
    }

    #[test]
    fn topic_retention_without_override() {
        let b = broker("node.id=1");
        let all = describe_topic_configs(&b, &BTreeMap::new(), &BTreeMap::new(), None, true, true);
        let r = find(&all, "retention.ms");
        assert_eq!(r.value.as_deref(), Some("604800000"));
        assert_eq!(r.source, ConfigSource::DefaultConfig);
        // Kafka drops log.retention.hours because log.retention.ms has no value anywhere.
        assert!(r.synonyms.is_empty(), "{:?}", r.synonyms);
        assert!(!r.read_only && !r.sensitive);
        assert_eq!(r.config_type, 5);
        assert!(r.documentation.is_some());
        let c = find(&all, "cleanup.policy");
        assert_eq!(c.value.as_deref(), Some("delete"));
        assert_eq!(
            c.synonyms,
            vec![syn(
                "log.cleanup.policy",
                "delete",
                ConfigSource::DefaultConfig
            )]
        );
        assert_eq!(c.source, ConfigSource::DefaultConfig);
        assert_eq!(all.len(), topic_config_keys().len());
    }

    #[test]
    fn topic_retention_with_override() {
        let b = broker("node.id=1");
        let overrides = map(&[("retention.ms", "86400000")]);
        let keys = vec!["retention.ms".to_string()];
        let all =
            describe_topic_configs(&b, &BTreeMap::new(), &overrides, Some(&keys), true, false);
        assert_eq!(all.len(), 1);
        let r = &all[0];
        assert_eq!(r.value.as_deref(), Some("86400000"));
        assert_eq!(r.source, ConfigSource::DynamicTopicConfig);
        assert_eq!(
            r.synonyms,
            vec![syn(
                "retention.ms",
                "86400000",
                ConfigSource::DynamicTopicConfig
            )]
        );
        assert_eq!(r.documentation, None);
    }

    #[test]
    fn topic_retention_with_static_and_dynamic_broker_keys() {
        let b = broker("node.id=1\nlog.retention.ms=1000\nlog.retention.hours=24");
        let all = describe_topic_configs(&b, &BTreeMap::new(), &BTreeMap::new(), None, true, false);
        let r = find(&all, "retention.ms");
        assert_eq!(r.value.as_deref(), Some("1000"));
        assert_eq!(r.source, ConfigSource::StaticBrokerConfig);
        assert_eq!(
            r.synonyms,
            vec![
                syn("log.retention.ms", "1000", ConfigSource::StaticBrokerConfig),
                syn(
                    "log.retention.hours",
                    "24",
                    ConfigSource::StaticBrokerConfig
                ),
                syn("log.retention.hours", "168", ConfigSource::DefaultConfig),
            ]
        );
        // Only log.retention.hours in the file: Kafka reports DEFAULT_CONFIG, value derived.
        let b = broker("node.id=1\nlog.retention.hours=24");
        let all = describe_topic_configs(&b, &BTreeMap::new(), &BTreeMap::new(), None, true, false);
        let r = find(&all, "retention.ms");
        assert_eq!(r.value.as_deref(), Some("86400000"));
        assert_eq!(r.source, ConfigSource::DefaultConfig);
        assert!(r.synonyms.is_empty());
        // A dynamic cluster default, then a per-broker value on top.
        let dynamic = map(&[("log.retention.ms", "5000")]);
        let empty = BTreeMap::new();
        let all = describe_topic_configs_with(&b, &empty, &dynamic, &empty, None, true, false);
        let r = find(&all, "retention.ms");
        assert_eq!(r.value.as_deref(), Some("5000"));
        assert_eq!(r.source, ConfigSource::DynamicDefaultBrokerConfig);
        assert_eq!(
            r.synonyms[0],
            syn(
                "log.retention.ms",
                "5000",
                ConfigSource::DynamicDefaultBrokerConfig
            )
        );
        let per = map(&[("log.retention.ms", "7000")]);
        let all = describe_topic_configs(&b, &per, &empty, None, true, false);
        let r = find(&all, "retention.ms");
        assert_eq!(r.value.as_deref(), Some("7000"));
        assert_eq!(r.source, ConfigSource::DynamicBrokerConfig);
        // A static key for a simple synonym.
        let b = broker("node.id=1\nlog.segment.bytes=2097152");
        let all = describe_topic_configs(&b, &BTreeMap::new(), &BTreeMap::new(), None, true, false);
        let s = find(&all, "segment.bytes");
        assert_eq!(s.value.as_deref(), Some("2097152"));
        assert_eq!(s.source, ConfigSource::StaticBrokerConfig);
        assert_eq!(
            s.synonyms,
            vec![
                syn(
                    "log.segment.bytes",
                    "2097152",
                    ConfigSource::StaticBrokerConfig
                ),
                syn(
                    "log.segment.bytes",
                    "1073741824",
                    ConfigSource::DefaultConfig
                ),
            ]
        );
    }

    #[test]
    fn broker_describe() {
        let b = broker("node.id=1\nnum.partitions=3\nfoo.bar=x\nssl.keystore.password=secret");
        let all = describe_broker_configs(&b, &BTreeMap::new(), &BTreeMap::new(), None, true, true);
        let h = find(&all, "log.retention.hours");
        assert_eq!(h.value.as_deref(), Some("168"));
        assert_eq!(h.source, ConfigSource::DefaultConfig);
        assert!(h.read_only);
        assert_eq!(
            h.synonyms,
            vec![syn(
                "log.retention.hours",
                "168",
                ConfigSource::DefaultConfig
            )]
        );
        let ms = find(&all, "log.retention.ms");
        assert_eq!(ms.value, None);
        assert_eq!(ms.source, ConfigSource::DefaultConfig);
        assert!(!ms.read_only);
        let p = find(&all, "num.partitions");
        assert_eq!(p.value.as_deref(), Some("3"));
        assert_eq!(p.source, ConfigSource::StaticBrokerConfig);
        assert_eq!(
            p.synonyms,
            vec![
                syn("num.partitions", "3", ConfigSource::StaticBrokerConfig),
                syn("num.partitions", "1", ConfigSource::DefaultConfig),
            ]
        );
        let pw = find(&all, "ssl.keystore.password");
        assert!(pw.sensitive);
        assert_eq!(pw.value, None);
        assert_eq!(pw.config_type, 9);
        assert_eq!(pw.synonyms[0].value, None);
        let unknown = find(&all, "foo.bar");
        assert!(unknown.sensitive && unknown.read_only);
        assert_eq!(unknown.config_type, 0);
        assert_eq!(unknown.source, ConfigSource::StaticBrokerConfig);
        let id = find(&all, "broker.id");
        assert_eq!(id.value.as_deref(), Some("1"));
        assert_eq!(id.source, ConfigSource::StaticBrokerConfig);
        let policy = find(&all, "log.cleaner.io.max.bytes.per.second");
        assert_eq!(policy.value.as_deref(), Some("1.7976931348623157E308"));
    }

    #[test]
    fn broker_describe_with_dynamic_levels() {
        let b = broker("node.id=1\nlog.retention.ms=1000");
        let per = map(&[("log.retention.ms", "3000")]);
        let def = map(&[("log.retention.ms", "2000"), ("num.io.threads", "4")]);
        let keys = vec!["log.retention.ms".to_string(), "num.io.threads".to_string()];
        let all = describe_broker_configs(&b, &per, &def, Some(&keys), true, false);
        assert_eq!(all.len(), 2);
        let r = find(&all, "log.retention.ms");
        assert_eq!(r.value.as_deref(), Some("3000"));
        assert_eq!(r.source, ConfigSource::DynamicBrokerConfig);
        assert_eq!(
            r.synonyms,
            vec![
                syn(
                    "log.retention.ms",
                    "3000",
                    ConfigSource::DynamicBrokerConfig
                ),
                syn(
                    "log.retention.ms",
                    "2000",
                    ConfigSource::DynamicDefaultBrokerConfig
                ),
                syn("log.retention.ms", "1000", ConfigSource::StaticBrokerConfig),
                syn("log.retention.hours", "168", ConfigSource::DefaultConfig),
            ]
        );
        let io = find(&all, "num.io.threads");
        assert_eq!(io.source, ConfigSource::DynamicDefaultBrokerConfig);
        assert!(!io.read_only);

        let cluster = describe_cluster_default_broker_configs(&def, None, true, false);
        assert_eq!(cluster.len(), 2);
        assert_eq!(
            cluster[0].synonyms,
            vec![syn(
                "log.retention.ms",
                "2000",
                ConfigSource::DynamicDefaultBrokerConfig
            )]
        );
        assert_eq!(cluster[0].source, ConfigSource::DynamicDefaultBrokerConfig);
        // A password set as a cluster default is withheld, in its synonym too.
        let secret = map(&[("ssl.keystore.password", "secret")]);
        let cluster = describe_cluster_default_broker_configs(&secret, None, true, false);
        assert!(cluster[0].sensitive);
        assert_eq!(cluster[0].value, None);
        assert_eq!(
            cluster[0].synonyms,
            vec![ConfigSynonym {
                name: "ssl.keystore.password".into(),
                value: None,
                source: ConfigSource::DynamicDefaultBrokerConfig,
            }]
        );
    }

    #[test]
    fn dynamic_validation() {
        let e = validate_broker_dynamic_config("log.dirs", "/x").unwrap_err();
        assert_eq!(
            e.to_string(),
            "Cannot update these configs dynamically: Set(log.dirs)"
        );
        assert_eq!(e.kafka_code(), 42);
        assert!(validate_broker_dynamic_config("log.retention.hours", "1").is_err());
        assert!(validate_broker_dynamic_config("log.retention.ms", "1000").is_ok());
        assert!(validate_broker_dynamic_config("message.max.bytes", "2000000").is_ok());
        let e = validate_broker_dynamic_config("num.io.threads", "x").unwrap_err();
        assert!(e.to_string().contains("num.io.threads"));
        assert_eq!(e.kafka_code(), 40);
        assert!(validate_broker_dynamic_config("ssl.keystore.location", "/k").is_err());
        assert!(validate_broker_dynamic_config(
            "listener.name.plaintext.ssl.keystore.location",
            "/k"
        )
        .is_ok());
        assert!(validate_broker_dynamic_config("custom.key", "v").is_ok());
        let e = validate_broker_dynamic_configs(&map(&[("listeners", "PLAINTEXT://:1")]), false)
            .unwrap_err();
        assert!(e.to_string().contains("broker id must be specified"));
        assert!(validate_broker_dynamic_configs(&map(&[("log.retention.ms", "1")]), false).is_ok());
        let e =
            validate_broker_dynamic_configs(&map(&[("log.dirs", "/x"), ("node.id", "2")]), true)
                .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Cannot update these configs dynamically: Set(log.dirs, node.id)"
        );
    }
}
