//! The configuration error type, with the Kafka error code each variant maps to.

use std::path::PathBuf;

/// Kafka's `INVALID_CONFIG` error code.
pub const INVALID_CONFIG: i16 = 40;
/// Kafka's `INVALID_REQUEST` error code.
pub const INVALID_REQUEST: i16 = 42;

/// Why a configuration (file, override, topic config or dynamic broker config) was refused.
///
/// `Display` yields a message in Kafka's own wording, fit to be sent verbatim to CLI users
/// in an `error_message` field; [`ConfigError::kafka_code`] gives the matching error code.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ConfigError {
    /// A value failed to parse or validate, as Kafka's `ConfigException(name, value, reason)`:
    /// "Invalid value abc for configuration num.partitions: Not a number of type INT".
    #[error("Invalid value {value} for configuration {name}: {reason}")]
    InvalidValue {
        /// The configuration key.
        name: String,
        /// The value as supplied.
        value: String,
        /// What was expected.
        reason: String,
    },
    /// A topic configuration name Kafka does not know ("Unknown topic config name: x").
    #[error("Unknown topic config name: {0}")]
    Unknown(String),
    /// Read-only broker keys in a dynamic update
    /// ("Cannot update these configs dynamically: Set(x, y)").
    #[error("Cannot update these configs dynamically: Set({})", .0.join(", "))]
    NotDynamic(Vec<String>),
    /// Any other invalid configuration (cross-key checks, unsupported features); the message
    /// names the key(s) involved.
    #[error("{0}")]
    Invalid(String),
    /// A request-level problem Kafka reports as `INVALID_REQUEST` with this message.
    #[error("{0}")]
    InvalidRequest(String),
    /// The configuration file could not be read.
    #[error("Cannot read configuration file {}: {message}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The operating-system error text.
        message: String,
    },
    /// An error found while loading a configuration file; the message names the file.
    #[error("Invalid configuration file {}: {source}", path.display())]
    InFile {
        /// The file.
        path: PathBuf,
        /// The underlying error.
        source: Box<ConfigError>,
    },
}

impl ConfigError {
    /// The Kafka error code to put in a response: `INVALID_CONFIG` (40) for bad names or
    /// values, `INVALID_REQUEST` (42) for refused dynamic updates and request-level problems.
    pub fn kafka_code(&self) -> i16 {
        match self {
            ConfigError::InvalidValue { .. }
            | ConfigError::Unknown(_)
            | ConfigError::Invalid(_)
            | ConfigError::Io { .. } => INVALID_CONFIG,
            ConfigError::NotDynamic(_) | ConfigError::InvalidRequest(_) => INVALID_REQUEST,
            ConfigError::InFile { source, .. } => source.kafka_code(),
        }
    }

    /// Shorthand for [`ConfigError::InvalidValue`].
    pub(crate) fn invalid_value(name: &str, value: &str, reason: impl Into<String>) -> Self {
        ConfigError::InvalidValue {
            name: name.to_string(),
            value: value.to_string(),
            reason: reason.into(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_and_codes_follow_kafka() {
        let e = ConfigError::invalid_value("num.partitions", "abc", "Not a number of type INT");
        assert_eq!(
            e.to_string(),
            "Invalid value abc for configuration num.partitions: Not a number of type INT"
        );
        assert_eq!(e.kafka_code(), 40);
        let e = ConfigError::Unknown("foo".into());
        assert_eq!(e.to_string(), "Unknown topic config name: foo");
        assert_eq!(e.kafka_code(), 40);
        let e = ConfigError::NotDynamic(vec!["log.dirs".into()]);
        assert_eq!(
            e.to_string(),
            "Cannot update these configs dynamically: Set(log.dirs)"
        );
        assert_eq!(e.kafka_code(), 42);
        let e = ConfigError::InFile {
            path: PathBuf::from("/x/server.properties"),
            source: Box::new(ConfigError::Unknown("a".into())),
        };
        assert!(e.to_string().contains("/x/server.properties"));
        assert_eq!(e.kafka_code(), 40);
    }
}
