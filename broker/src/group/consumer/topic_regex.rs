//! Regular expression subscriptions (KIP-848): a member sends `SubscribedTopicRegex` and the
//! broker, not the client, lists the topics it matches, as Kafka's group coordinator does
//! (`GroupMetadataManager.maybeUpdateRegularExpressions` and `refreshRegularExpressions`).
//!
//! Kafka compiles the expression with RE2/J and asks `matcher(topic).matches()`: the whole
//! topic name must match (`orders` does not match `order`, `^orders-.*` matches
//! `orders-eu`). Here the `regex` crate compiles it, wrapped in `^(?:...)$` for the same
//! whole-name match. Both are linear-time engines with the same core syntax (classes,
//! repetition, alternation, groups, `(?i)`, `\d`, `\w`, Unicode classes); where they differ:
//! - RE2/J accepts what the `regex` crate refuses, and such an expression is refused with
//!   INVALID_REGULAR_EXPRESSION here although Kafka serves it: `\Q...\E` quoting, `\C`, and
//!   a `[` or `&&` taken literally inside a class (`[[]`, `[a&&b]`: the crate reads a nested
//!   class or an intersection);
//! - the crate accepts what RE2/J refuses (`(?x)` and `(?R)` flags, class set operations),
//!   so an expression Kafka refuses may be served here;
//! - `\d`, `\w`, `\b` are Unicode-aware in the crate and ASCII in RE2/J, which matches the
//!   same topics: topic names are ASCII (`[a-zA-Z0-9._-]`).
//!
//! Every topic the broker knows is matched, internal ones (`__consumer_offsets`,
//! `__transaction_state`) included: Kafka 4.1's `refreshRegularExpressions` filters by
//! DESCRIBE authorization only, and an unauthorized broker has nothing to filter.

use std::collections::BTreeSet;

use kafka_protocol::ResponseError;
use regex::Regex;

use super::{refuse, Refusal};

/// Kafka's `REGEX_BATCH_REFRESH_MIN_INTERVAL_MS`: a group's expressions are resolved again
/// at most this often (a new expression is resolved at once).
pub const REGEX_BATCH_REFRESH_MIN_INTERVAL_MS: i64 = 10_000;

/// What one regular expression resolved to (Kafka's `ResolvedRegularExpression`, persisted
/// as a `ConsumerGroupRegularExpression` record).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ResolvedRegex {
    /// The topics it matches.
    pub topics: BTreeSet<String>,
    /// The metadata version (image offset) the topics were listed from.
    pub version: i64,
    /// When it was resolved (ms since the epoch).
    pub timestamp_ms: i64,
}

/// Compiles a member's expression for whole-name matching, or refuses it with Kafka's
/// INVALID_REGULAR_EXPRESSION and message (`SubscribedTopicRegex `<regex>` is not a valid
/// regular expression: <why>.`).
pub fn compile(regex: &str) -> Result<Regex, Refusal> {
    let invalid = |e: regex::Error| {
        refuse(
            ResponseError::InvalidRegularExpression,
            format!(
                "SubscribedTopicRegex `{regex}` is not a valid regular expression: {}.",
                describe(&e)
            ),
        )
    };
    // Compiled alone first, so an error describes the member's expression and not the
    // anchors around it (an unbalanced `)` would otherwise close the wrapping group).
    Regex::new(regex).map_err(invalid)?;
    Regex::new(&format!("^(?:{regex})$")).map_err(invalid)
}

/// The one-line reason of a `regex` error (its syntax errors span several lines, the last
/// one saying what is wrong, as RE2/J's `getDescription` does).
fn describe(e: &regex::Error) -> String {
    let text = e.to_string();
    text.lines()
        .rev()
        .find_map(|l| l.trim().strip_prefix("error: ").map(str::to_string))
        .unwrap_or_else(|| text.split_whitespace().collect::<Vec<_>>().join(" "))
}

/// The topics among `names` that `regex` matches as a whole. An expression that does not
/// compile (it was checked when a member brought it, so only one written by another
/// coordinator) matches nothing, as Kafka logs and ignores it.
pub fn matching(regex: &str, names: &[String]) -> BTreeSet<String> {
    match compile(regex) {
        Ok(re) => names.iter().filter(|n| re.is_match(n)).cloned().collect(),
        Err(_) => BTreeSet::new(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn names(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn the_whole_topic_name_must_match() {
        let topics = names(&[
            "orders",
            "orders-eu",
            "old-orders",
            "payments",
            "__consumer_offsets",
        ]);
        let set = |l: &[&str]| l.iter().map(|s| s.to_string()).collect::<BTreeSet<_>>();
        assert_eq!(matching("orders", &topics), set(&["orders"]));
        assert_eq!(matching("order", &topics), set(&[]));
        assert_eq!(matching("^orders-.*", &topics), set(&["orders-eu"]));
        assert_eq!(
            matching("orders|pay.*", &topics),
            set(&["orders", "payments"])
        );
        // RE2/J's `matches()` finds the alternative that covers the whole name.
        assert_eq!(
            matching("orders|orders-eu", &topics),
            set(&["orders", "orders-eu"])
        );
        assert_eq!(matching("(?i)ORDERS", &topics), set(&["orders"]));
        assert_eq!(
            matching(".*", &topics).len(),
            5,
            "internal topics are matched too, as in Kafka 4.1"
        );
    }

    #[test]
    fn an_invalid_expression_is_refused_with_kafkas_error() {
        let refusal = compile("orders-(").unwrap_err();
        assert_eq!(refusal.error, ResponseError::InvalidRegularExpression);
        assert_eq!(
            refusal.message,
            "SubscribedTopicRegex `orders-(` is not a valid regular expression: unclosed group."
        );
        // An unbalanced `)` is refused, not absorbed by the anchoring group.
        assert!(compile("a)|(b").is_err());
        // RE2/J's `\Q...\E` quoting is one of the differences: refused here.
        assert!(compile(r"\Qa.b\E").is_err());
        assert!(matching("orders-(", &names(&["orders-("])).is_empty());
    }
}
