//! Kafka's topic name rules (`org.apache.kafka.common.internals.Topic`), as pure functions.

/// Longest legal topic name. Kafka allows 249 characters so that the partition directory
/// name (`<topic>-<partition>` plus a deletion suffix) stays under 255 bytes.
pub const MAX_NAME_LENGTH: usize = 249;

/// Kafka 4.1's internal topics (`Topic.isInternal`): users may not create, delete, produce
/// to or delete records from them; only the broker's own coordinators append there.
pub const INTERNAL_TOPICS: &[&str] = &[
    "__consumer_offsets",
    "__transaction_state",
    "__share_group_state",
];

/// Why a topic name is refused. The message is sent verbatim to clients (INVALID_TOPIC_EXCEPTION)
/// and mirrors the wording of Apache Kafka.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidTopicName {
    /// The name is the empty string.
    #[error("Topic name is invalid: the empty string is not allowed")]
    Empty,
    /// `.` or `..` would collide with directory navigation.
    #[error("Topic name is invalid: '{0}' is not allowed")]
    Dots(String),
    /// Longer than [`MAX_NAME_LENGTH`].
    #[error("Topic name is invalid: the length of '{0}' is longer than the max allowed length {MAX_NAME_LENGTH}")]
    TooLong(String),
    /// Contains a character outside `[a-zA-Z0-9._-]`.
    #[error("Topic name is invalid: '{0}' contains one or more characters other than ASCII alphanumerics, '.', '_' and '-'")]
    IllegalCharacter(String),
}

/// Checks a topic name against Kafka's rules: not empty, not `.`/`..`, at most 249 characters,
/// only ASCII alphanumerics, `.`, `_` and `-`.
pub fn validate(name: &str) -> Result<(), InvalidTopicName> {
    if name.is_empty() {
        return Err(InvalidTopicName::Empty);
    }
    if name == "." || name == ".." {
        return Err(InvalidTopicName::Dots(name.to_string()));
    }
    if name.len() > MAX_NAME_LENGTH {
        return Err(InvalidTopicName::TooLong(name.to_string()));
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'_' || b == b'-')
    {
        return Err(InvalidTopicName::IllegalCharacter(name.to_string()));
    }
    Ok(())
}

/// True for Kafka's internal topics ([`INTERNAL_TOPICS`]).
pub fn is_internal(name: &str) -> bool {
    INTERNAL_TOPICS.contains(&name)
}

/// Kafka maps `.` to `_` in metric names, so `a.b` and `a_b` collide. Kafka warns on create
/// and refuses the second of two colliding names (INVALID_TOPIC_EXCEPTION).
pub fn unify_collision_chars(name: &str) -> String {
    name.replace('.', "_")
}

/// True if a name contains both `.` and `_`; Kafka prints a warning for such names.
pub fn has_collision_chars(name: &str) -> bool {
    name.contains('.') || name.contains('_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn accepts_kafka_legal_names() {
        for name in ["hello.kafka", "a", "A-b_c.9", &"x".repeat(249)] {
            assert_eq!(validate(name), Ok(()), "{name}");
        }
    }

    #[test]
    fn refuses_illegal_names_with_kafka_messages() {
        assert_eq!(validate(""), Err(InvalidTopicName::Empty));
        assert_eq!(
            validate(".").unwrap_err().to_string(),
            "Topic name is invalid: '.' is not allowed"
        );
        assert!(matches!(validate(".."), Err(InvalidTopicName::Dots(_))));
        assert!(matches!(
            validate(&"x".repeat(250)),
            Err(InvalidTopicName::TooLong(_))
        ));
        for bad in ["bad/name", "with space", "ünï", "a:b", "a*"] {
            let err = validate(bad).unwrap_err();
            assert!(
                err.to_string()
                    .contains("contains one or more characters other than ASCII alphanumerics"),
                "{bad}: {err}"
            );
        }
    }

    #[test]
    fn collision_chars_unify() {
        assert_eq!(unify_collision_chars("a.b"), unify_collision_chars("a_b"));
        assert!(is_internal("__consumer_offsets"));
        assert!(!is_internal("consumer_offsets"));
    }
}
