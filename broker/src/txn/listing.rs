//! Which transactional ids ListTransactions reports: Kafka's
//! `TransactionStateManager.listTransactionStates` filters (state names, producer ids, v1's
//! duration, KIP-994, and v2's transactional id pattern, KIP-1152) as a pure function of the
//! metadata and `now`.
//!
//! Kafka compiles the pattern with RE2/J and asks `matcher(id).matches()`: the whole id must
//! match (`tx-t` does not match `tx-tools`, `tx-t.*` does). Here the `regex` crate compiles
//! it inside `^(?:...)$`; the two engines share their core syntax, and differ at the edges
//! as [`crate::group::consumer::topic_regex`] describes.

use std::collections::BTreeSet;

use regex::Regex;

use super::state::{TxnMetadata, TxnState};

/// The filters of one ListTransactions request.
#[derive(Debug, Clone)]
pub struct ListFilter {
    /// The known states asked for.
    states: BTreeSet<TxnState>,
    /// Whether any state filter was given at all: if only unknown names were, nothing
    /// matches (as in Kafka).
    by_state: bool,
    /// Producer ids asked for; empty = any.
    producer_ids: BTreeSet<i64>,
    /// Only transactions running longer than this many ms; negative = any.
    duration_ms: i64,
    /// Only ids this expression matches as a whole; `None` = any.
    id_pattern: Option<Regex>,
}

/// A transactional id pattern that does not compile: Kafka answers the whole request with
/// INVALID_REGULAR_EXPRESSION.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InvalidPattern(pub String);

impl ListFilter {
    /// The filter of a request with these state names, producer ids, duration (-1 when the
    /// request has none, v0) and transactional id pattern (`None` or empty: any id; before
    /// v2 there is none), and the state names Kafka does not know (the response's
    /// `unknown_state_filters`, in request order, without repeats). [`InvalidPattern`] when
    /// the pattern does not compile.
    pub fn new(
        state_names: &[&str],
        producer_ids: &[i64],
        duration_ms: i64,
        id_pattern: Option<&str>,
    ) -> Result<(ListFilter, Vec<String>), InvalidPattern> {
        let id_pattern = match id_pattern.filter(|p| !p.is_empty()) {
            None => None,
            Some(p) => {
                let invalid = |e: regex::Error| InvalidPattern(e.to_string());
                // Compiled alone first, so an unbalanced `)` cannot close the anchoring
                // group and pass.
                Regex::new(p).map_err(invalid)?;
                Some(Regex::new(&format!("^(?:{p})$")).map_err(invalid)?)
            }
        };
        let mut states = BTreeSet::new();
        let mut unknown: Vec<String> = Vec::new();
        for name in state_names {
            match TxnState::from_name(name) {
                Some(s) => {
                    states.insert(s);
                }
                None if !unknown.iter().any(|u| u == name) => unknown.push(name.to_string()),
                None => {}
            }
        }
        let filter = ListFilter {
            states,
            by_state: !state_names.is_empty(),
            producer_ids: producer_ids.iter().copied().collect(),
            duration_ms,
            id_pattern,
        };
        Ok((filter, unknown))
    }

    /// Whether `m` is listed at `now`. Dead ids are never listed (they are being removed).
    /// The duration is measured from the transaction's start: an id with no open
    /// transaction (start -1) counts as running since the epoch and passes any duration,
    /// as in Kafka.
    pub fn includes(&self, m: &TxnMetadata, now: i64) -> bool {
        if m.state == TxnState::Dead {
            return false;
        }
        if !self.producer_ids.is_empty() && !self.producer_ids.contains(&m.producer_id) {
            return false;
        }
        if self.by_state && !self.states.contains(&m.state) {
            return false;
        }
        if self.duration_ms >= 0 && now.saturating_sub(m.start_timestamp_ms) <= self.duration_ms {
            return false;
        }
        if let Some(re) = &self.id_pattern {
            return re.is_match(&m.transactional_id);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const T0: i64 = 1_000_000;

    fn meta(id: &str, producer_id: i64, state: TxnState, start: i64) -> TxnMetadata {
        let mut m = TxnMetadata::new(id, producer_id, 60_000, T0);
        m.state = state;
        m.start_timestamp_ms = start;
        m
    }

    fn listed(filter: &ListFilter, all: &[TxnMetadata], now: i64) -> Vec<String> {
        all.iter()
            .filter(|m| filter.includes(m, now))
            .map(|m| m.transactional_id.clone())
            .collect()
    }

    fn sample() -> Vec<TxnMetadata> {
        vec![
            meta("a", 1, TxnState::Ongoing, T0),
            meta("b", 2, TxnState::Empty, -1),
            meta("c", 3, TxnState::CompleteCommit, T0 - 5_000),
            meta("d", 4, TxnState::Ongoing, T0 - 60_000),
            meta("gone", 5, TxnState::Dead, -1),
        ]
    }

    #[test]
    fn no_filter_lists_every_id_but_dead_ones() {
        let (f, unknown) = ListFilter::new(&[], &[], -1, None).unwrap();
        assert!(unknown.is_empty());
        assert_eq!(listed(&f, &sample(), T0), ["a", "b", "c", "d"]);
    }

    #[test]
    fn state_filters_match_kafkas_names_and_report_unknown_ones() {
        let (f, unknown) =
            ListFilter::new(&["Ongoing", "Bogus", "ongoing", "Bogus"], &[], -1, None).unwrap();
        assert_eq!(unknown, ["Bogus", "ongoing"]);
        assert_eq!(listed(&f, &sample(), T0), ["a", "d"]);
        // Only unknown names: nothing matches (Kafka does not fall back to "all").
        let (f, unknown) = ListFilter::new(&["Running"], &[], -1, None).unwrap();
        assert_eq!(unknown, ["Running"]);
        assert!(listed(&f, &sample(), T0).is_empty());
    }

    #[test]
    fn producer_id_filters_select_those_producers() {
        let (f, _) = ListFilter::new(&[], &[3, 4, 99], -1, None).unwrap();
        assert_eq!(listed(&f, &sample(), T0), ["c", "d"]);
        let (f, _) = ListFilter::new(&["Ongoing"], &[3, 4], -1, None).unwrap();
        assert_eq!(listed(&f, &sample(), T0), ["d"]);
    }

    #[test]
    fn the_duration_filter_keeps_transactions_running_longer_only() {
        // "a" started now, "c" 5 s ago, "d" a minute ago; "b" has no open transaction and
        // passes, as in Kafka (its start is -1).
        let (f, _) = ListFilter::new(&[], &[], 30_000, None).unwrap();
        assert_eq!(listed(&f, &sample(), T0), ["b", "d"]);
        let (f, _) = ListFilter::new(&[], &[], 5_000, None).unwrap();
        assert_eq!(listed(&f, &sample(), T0), ["b", "d"], "strictly longer");
        let (f, _) = ListFilter::new(&["Ongoing"], &[], 0, None).unwrap();
        assert_eq!(listed(&f, &sample(), T0 + 1), ["a", "d"]);
    }

    #[test]
    fn the_id_pattern_must_match_the_whole_id() {
        let all = sample();
        let (f, _) = ListFilter::new(&[], &[], -1, Some("[a-c]")).unwrap();
        assert_eq!(listed(&f, &all, T0), ["a", "b", "c"]);
        let ids = [
            meta("tx-tools", 1, TxnState::Ongoing, T0),
            meta("other", 2, TxnState::Ongoing, T0),
        ];
        let (f, _) = ListFilter::new(&[], &[], -1, Some("tx-t.*")).unwrap();
        assert_eq!(listed(&f, &ids, T0), ["tx-tools"]);
        for part in ["tx-t", "tools", "x-t"] {
            let (f, _) = ListFilter::new(&[], &[], -1, Some(part)).unwrap();
            assert!(listed(&f, &ids, T0).is_empty(), "{part} is only a part");
        }
        let (f, _) = ListFilter::new(&["Ongoing"], &[], -1, Some("a|d|e")).unwrap();
        assert_eq!(listed(&f, &all, T0), ["a", "d"]);
        // Empty: every id, as no pattern.
        let (f, _) = ListFilter::new(&[], &[], -1, Some("")).unwrap();
        assert_eq!(listed(&f, &all, T0).len(), 4);
        assert!(ListFilter::new(&[], &[], -1, Some("(")).is_err());
        assert!(ListFilter::new(&[], &[], -1, Some("a)|(b")).is_err());
    }
}
