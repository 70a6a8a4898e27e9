//! Which transactional ids ListTransactions reports: Kafka's
//! `TransactionStateManager.listTransactionStates` filters (state names, producer ids, and
//! v1's duration, KIP-994) as a pure function of the metadata and `now`.

use std::collections::BTreeSet;

use super::state::{TxnMetadata, TxnState};

/// The filters of one ListTransactions request.
#[derive(Debug, Clone, PartialEq, Eq)]
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
}

impl ListFilter {
    /// The filter of a request with these state names, producer ids and duration (-1 when
    /// the request has none, v0), and the state names Kafka does not know (the response's
    /// `unknown_state_filters`, in request order, without repeats).
    pub fn new(
        state_names: &[&str],
        producer_ids: &[i64],
        duration_ms: i64,
    ) -> (ListFilter, Vec<String>) {
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
        };
        (filter, unknown)
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
        let (f, unknown) = ListFilter::new(&[], &[], -1);
        assert!(unknown.is_empty());
        assert_eq!(listed(&f, &sample(), T0), ["a", "b", "c", "d"]);
    }

    #[test]
    fn state_filters_match_kafkas_names_and_report_unknown_ones() {
        let (f, unknown) = ListFilter::new(&["Ongoing", "Bogus", "ongoing", "Bogus"], &[], -1);
        assert_eq!(unknown, ["Bogus", "ongoing"]);
        assert_eq!(listed(&f, &sample(), T0), ["a", "d"]);
        // Only unknown names: nothing matches (Kafka does not fall back to "all").
        let (f, unknown) = ListFilter::new(&["Running"], &[], -1);
        assert_eq!(unknown, ["Running"]);
        assert!(listed(&f, &sample(), T0).is_empty());
    }

    #[test]
    fn producer_id_filters_select_those_producers() {
        let (f, _) = ListFilter::new(&[], &[3, 4, 99], -1);
        assert_eq!(listed(&f, &sample(), T0), ["c", "d"]);
        let (f, _) = ListFilter::new(&["Ongoing"], &[3, 4], -1);
        assert_eq!(listed(&f, &sample(), T0), ["d"]);
    }

    #[test]
    fn the_duration_filter_keeps_transactions_running_longer_only() {
        // "a" started now, "c" 5 s ago, "d" a minute ago; "b" has no open transaction and
        // passes, as in Kafka (its start is -1).
        let (f, _) = ListFilter::new(&[], &[], 30_000);
        assert_eq!(listed(&f, &sample(), T0), ["b", "d"]);
        let (f, _) = ListFilter::new(&[], &[], 5_000);
        assert_eq!(listed(&f, &sample(), T0), ["b", "d"], "strictly longer");
        let (f, _) = ListFilter::new(&["Ongoing"], &[], 0);
        assert_eq!(listed(&f, &sample(), T0 + 1), ["a", "d"]);
    }
}
