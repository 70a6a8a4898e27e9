//! Kafka's `ConfigDef` value model: types, validators, parsing and string conversion.

use super::error::ConfigError;

/// A configuration's type, as Kafka's `ConfigDef.Type`; [`ConfigType::code`] is the
/// `ConfigType` code sent in DescribeConfigs responses.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigType {
    /// `BOOLEAN` (code 1).
    Boolean,
    /// `STRING` (code 2).
    String,
    /// `INT`, 32-bit (code 3).
    Int,
    /// `SHORT`, 16-bit (code 4).
    Short,
    /// `LONG`, 64-bit (code 5).
    Long,
    /// `DOUBLE` (code 6).
    Double,
    /// `LIST`, comma separated (code 7).
    List,
    /// `CLASS`, a Java class name, accepted and kept as text (code 8).
    Class,
    /// `PASSWORD`, sensitive: never shown in DescribeConfigs (code 9).
    Password,
}

/// DescribeConfigs' `ConfigType` code for a key of unknown type.
pub const CONFIG_TYPE_UNKNOWN: i8 = 0;

impl ConfigType {
    /// DescribeConfigs' `ConfigType` code: BOOLEAN=1 STRING=2 INT=3 SHORT=4 LONG=5 DOUBLE=6
    /// LIST=7 CLASS=8 PASSWORD=9 (UNKNOWN=0 is [`CONFIG_TYPE_UNKNOWN`]).
    pub fn code(self) -> i8 {
        match self {
            ConfigType::Boolean => 1,
            ConfigType::String => 2,
            ConfigType::Int => 3,
            ConfigType::Short => 4,
            ConfigType::Long => 5,
            ConfigType::Double => 6,
            ConfigType::List => 7,
            ConfigType::Class => 8,
            ConfigType::Password => 9,
        }
    }

    /// Kafka's upper-case type name, as in "Not a number of type INT".
    pub fn name(self) -> &'static str {
        match self {
            ConfigType::Boolean => "BOOLEAN",
            ConfigType::String => "STRING",
            ConfigType::Int => "INT",
            ConfigType::Short => "SHORT",
            ConfigType::Long => "LONG",
            ConfigType::Double => "DOUBLE",
            ConfigType::List => "LIST",
            ConfigType::Class => "CLASS",
            ConfigType::Password => "PASSWORD",
        }
    }
}

/// A value check, as Kafka's `ConfigDef.Validator`s, with Kafka's error texts.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Validator {
    /// Anything the type accepts.
    None,
    /// `Range.atLeast(n)`: "Value must be at least n".
    AtLeast(i64),
    /// `Range.between(min, max)`: "... at least min" / "... no more than max".
    Between(i64, i64),
    /// `ValidString.in(...)`, case-sensitive: "String must be one of: a, b".
    OneOf(&'static [&'static str]),
    /// `CaseInsensitiveValidString.in(...)`: "String must be one of (case insensitive): a, b".
    OneOfIgnoreCase(&'static [&'static str]),
    /// `ValidList.in(...)`: every element must be one of these.
    ListOf(&'static [&'static str]),
    /// gzip level: 1..=9 or -1.
    GzipLevel,
    /// Throttled replica list: `*` or `partition:broker` pairs.
    ThrottledReplicas,
}

impl Validator {
    /// Kafka's textual form of the valid values (as in the "Valid Values" doc column).
    pub fn describe(self) -> Option<String> {
        match self {
            Validator::None => None,
            Validator::AtLeast(n) => Some(format!("[{n},...]")),
            Validator::Between(a, b) => Some(format!("[{a},...,{b}]")),
            Validator::OneOf(v) | Validator::ListOf(v) => Some(format!("[{}]", v.join(", "))),
            Validator::OneOfIgnoreCase(v) => Some(format!("(case insensitive) [{}]", v.join(", "))),
            Validator::GzipLevel => Some("[1,...,9] or -1".to_string()),
            Validator::ThrottledReplicas => {
                Some("[partitionId]:[brokerId],[partitionId]:[brokerId],...".to_string())
            }
        }
    }
}

/// A parsed configuration value.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Value {
    Null,
    Bool(bool),
    Int(i32),
    Short(i16),
    Long(i64),
    Double(f64),
    Str(String),
    List(Vec<String>),
}

impl Value {
    /// Kafka's `ConfigDef.convertToString`: how DescribeConfigs prints the value.
    pub(crate) fn to_kafka_string(&self) -> Option<String> {
        match self {
            Value::Null => None,
            Value::Bool(b) => Some(b.to_string()),
            Value::Int(n) => Some(n.to_string()),
            Value::Short(n) => Some(n.to_string()),
            Value::Long(n) => Some(n.to_string()),
            Value::Double(d) => Some(java_double_to_string(*d)),
            Value::Str(s) => Some(s.clone()),
            Value::List(l) => Some(l.join(",")),
        }
    }

    pub(crate) fn as_i64(&self) -> Option<i64> {
        match self {
            Value::Int(n) => Some(i64::from(*n)),
            Value::Short(n) => Some(i64::from(*n)),
            Value::Long(n) => Some(*n),
            _ => None,
        }
    }
}

/// Java's `Double.toString`: `0.5`, `1.0`, `1.7976931348623157E308`.
pub(crate) fn java_double_to_string(d: f64) -> String {
    if d.is_nan() {
        return "NaN".to_string();
    }
    if d.is_infinite() {
        return if d > 0.0 { "Infinity" } else { "-Infinity" }.to_string();
    }
    let abs = d.abs();
    if abs == 0.0 || (1e-3..1e7).contains(&abs) {
        let s = format!("{d}");
        if s.contains('.') {
            s
        } else {
            format!("{s}.0")
        }
    } else {
        let s = format!("{d:e}");
        let (mantissa, exp) = s.split_once('e').unwrap_or((s.as_str(), "0"));
        let mantissa = if mantissa.contains('.') {
            mantissa.to_string()
        } else {
            format!("{mantissa}.0")
        };
        format!("{mantissa}E{exp}")
    }
}

fn not_a_number(name: &str, raw: &str, ty: ConfigType) -> ConfigError {
    ConfigError::invalid_value(name, raw, format!("Not a number of type {}", ty.name()))
}

/// Parses `raw` as Kafka's `ConfigDef.parseType` would (trimming first), then applies the
/// validator. Errors carry Kafka's texts and name the key and the value as supplied.
pub(crate) fn parse_value(
    name: &str,
    raw: &str,
    ty: ConfigType,
    validator: Validator,
) -> Result<Value, ConfigError> {
    let t = raw.trim();
    let value = match ty {
        ConfigType::Boolean => {
            if t.eq_ignore_ascii_case("true") {
                Value::Bool(true)
            } else if t.eq_ignore_ascii_case("false") {
                Value::Bool(false)
            } else {
                return Err(ConfigError::invalid_value(
                    name,
                    raw,
                    "Expected value to be either true or false",
                ));
            }
        }
        ConfigType::String | ConfigType::Password => Value::Str(t.to_string()),
        ConfigType::Class => {
            if t.is_empty() {
                Value::Null
            } else {
                Value::Str(t.to_string())
            }
        }
        ConfigType::Int => Value::Int(t.parse().map_err(|_| not_a_number(name, raw, ty))?),
        ConfigType::Short => Value::Short(t.parse().map_err(|_| not_a_number(name, raw, ty))?),
        ConfigType::Long => Value::Long(t.parse().map_err(|_| not_a_number(name, raw, ty))?),
        ConfigType::Double => {
            let d: f64 = t.parse().map_err(|_| not_a_number(name, raw, ty))?;
            Value::Double(d)
        }
        ConfigType::List => {
            if t.is_empty() {
                Value::List(Vec::new())
            } else {
                Value::List(t.split(',').map(|s| s.trim().to_string()).collect())
            }
        }
    };
    validate(name, raw, &value, validator)?;
    Ok(value)
}

fn validate(name: &str, raw: &str, value: &Value, validator: Validator) -> Result<(), ConfigError> {
    let number = |v: &Value| -> Option<f64> {
        match v {
            Value::Int(n) => Some(f64::from(*n)),
            Value::Short(n) => Some(f64::from(*n)),
            #[allow(clippy::cast_precision_loss)]
            Value::Long(n) => Some(*n as f64),
            Value::Double(d) => Some(*d),
            _ => None,
        }
    };
    // Compare integers exactly, doubles as doubles.
    let below = |v: &Value, min: i64| match v {
        Value::Double(d) => {
            #[allow(clippy::cast_precision_loss)]
            let m = min as f64;
            *d < m
        }
        other => other.as_i64().is_some_and(|n| n < min),
    };
    let above = |v: &Value, max: i64| match v {
        Value::Double(d) => {
            #[allow(clippy::cast_precision_loss)]
            let m = max as f64;
            *d > m
        }
        other => other.as_i64().is_some_and(|n| n > max),
    };
    match validator {
        Validator::None => Ok(()),
        Validator::AtLeast(min) => {
            if number(value).is_some() && below(value, min) {
                return Err(ConfigError::invalid_value(
                    name,
                    raw,
                    format!("Value must be at least {min}"),
                ));
            }
            Ok(())
        }
        Validator::Between(min, max) => {
            if number(value).is_some() && below(value, min) {
                return Err(ConfigError::invalid_value(
                    name,
                    raw,
                    format!("Value must be at least {min}"),
                ));
            }
            if number(value).is_some() && above(value, max) {
                return Err(ConfigError::invalid_value(
                    name,
                    raw,
                    format!("Value must be no more than {max}"),
                ));
            }
            Ok(())
        }
        Validator::OneOf(valid) => match value {
            Value::Str(s) if !valid.contains(&s.as_str()) => Err(ConfigError::invalid_value(
                name,
                raw,
                format!("String must be one of: {}", valid.join(", ")),
            )),
            _ => Ok(()),
        },
        Validator::OneOfIgnoreCase(valid) => match value {
            Value::Str(s) if !valid.iter().any(|v| v.eq_ignore_ascii_case(s)) => {
                Err(ConfigError::invalid_value(
                    name,
                    raw,
                    format!(
                        "String must be one of (case insensitive): {}",
                        valid.join(", ")
                    ),
                ))
            }
            _ => Ok(()),
        },
        Validator::ListOf(valid) => match value {
            Value::List(items) => {
                for item in items {
                    if !valid.contains(&item.as_str()) {
                        return Err(ConfigError::invalid_value(
                            name,
                            item,
                            format!("String must be one of: {}", valid.join(", ")),
                        ));
                    }
                }
                Ok(())
            }
            _ => Ok(()),
        },
        Validator::GzipLevel => match value.as_i64() {
            Some(level) if level > 9 || (level < 1 && level != -1) => {
                Err(ConfigError::invalid_value(
                    name,
                    raw,
                    "Value must be between 1 and 9 or equal to -1",
                ))
            }
            _ => Ok(()),
        },
        Validator::ThrottledReplicas => match value {
            Value::List(items) => {
                let ok = (items.len() == 1 && items[0] == "*")
                    || items.iter().all(|item| {
                        item.split_once(':').is_some_and(|(p, b)| {
                            p.trim().parse::<i32>().is_ok() && b.trim().parse::<i32>().is_ok()
                        })
                    });
                if ok {
                    Ok(())
                } else {
                    Err(ConfigError::invalid_value(
                        name,
                        raw,
                        format!(
                            "{name} must be the literal '*' or a list of replicas in the following \
                             format: [partitionId]:[brokerId],[partitionId]:[brokerId],..."
                        ),
                    ))
                }
            }
            _ => Ok(()),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn java_doubles() {
        assert_eq!(java_double_to_string(0.5), "0.5");
        assert_eq!(java_double_to_string(1.0), "1.0");
        assert_eq!(java_double_to_string(0.9), "0.9");
        assert_eq!(java_double_to_string(f64::MAX), "1.7976931348623157E308");
        assert_eq!(java_double_to_string(1e7), "1.0E7");
    }

    #[test]
    fn parse_errors_use_kafka_texts() {
        let e = parse_value(
            "num.partitions",
            "abc",
            ConfigType::Int,
            Validator::AtLeast(1),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid value abc for configuration num.partitions: Not a number of type INT"
        );
        let e = parse_value(
            "num.partitions",
            "0",
            ConfigType::Int,
            Validator::AtLeast(1),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid value 0 for configuration num.partitions: Value must be at least 1"
        );
        let e = parse_value("x", "yes", ConfigType::Boolean, Validator::None).unwrap_err();
        assert!(e
            .to_string()
            .ends_with("Expected value to be either true or false"));
        let e = parse_value("r", "1.5", ConfigType::Double, Validator::Between(0, 1)).unwrap_err();
        assert!(e.to_string().ends_with("Value must be no more than 1"));
        let e = parse_value(
            "cleanup.policy",
            "delete,foo",
            ConfigType::List,
            Validator::ListOf(&["compact", "delete"]),
        )
        .unwrap_err();
        assert_eq!(
            e.to_string(),
            "Invalid value foo for configuration cleanup.policy: String must be one of: compact, delete"
        );
        assert!(parse_value("s", "99999", ConfigType::Short, Validator::None).is_err());
        assert!(parse_value("g", "0", ConfigType::Int, Validator::GzipLevel).is_err());
        assert!(parse_value("g", "-1", ConfigType::Int, Validator::GzipLevel).is_ok());
    }

    #[test]
    fn parsing_trims_and_normalises() {
        assert_eq!(
            parse_value("b", " TRUE ", ConfigType::Boolean, Validator::None).unwrap(),
            Value::Bool(true)
        );
        let v = parse_value("l", "compact, delete", ConfigType::List, Validator::None).unwrap();
        assert_eq!(v.to_kafka_string().as_deref(), Some("compact,delete"));
        let v = parse_value("l", "", ConfigType::List, Validator::None).unwrap();
        assert_eq!(v.to_kafka_string().as_deref(), Some(""));
        let v = parse_value("t", "*", ConfigType::List, Validator::ThrottledReplicas);
        assert!(v.is_ok());
        let v = parse_value(
            "t",
            "0:1,1:2",
            ConfigType::List,
            Validator::ThrottledReplicas,
        );
        assert!(v.is_ok());
        let v = parse_value("t", "0-1", ConfigType::List, Validator::ThrottledReplicas);
        assert!(v.is_err());
    }
}

/// Raw configuration maps consulted in precedence order (first map holding a key wins).
#[derive(Debug, Clone, Copy)]
pub(crate) struct Layers<'a> {
    pub(crate) maps: [&'a std::collections::BTreeMap<String, String>; 3],
}

impl<'a> Layers<'a> {
    /// The raw value of `name` in the first map that has it.
    pub(crate) fn get(&self, name: &str) -> Option<&'a str> {
        self.maps
            .iter()
            .find_map(|m| m.get(name).map(String::as_str))
    }
}
