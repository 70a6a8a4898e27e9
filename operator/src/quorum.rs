//! The metadata quorum follows `spec.controllers` at runtime, which Strimzi cannot do: every
//! broker pod is a combined node (`process.roles=broker,controller`), the voters are the
//! brokers with the lowest ordinals `0..controllers`, and the operator adds and removes voters
//! on the running quorum one at a time with KIP-853's AddRaftVoter and RemoveRaftVoter (what
//! `kafka-metadata-quorum.sh add-controller` and `remove-controller` send). No broker
//! restarts for it.
//!
//! [`next_step`] decides, from what DescribeQuorum says, one change per pass:
//! - nothing while a voter's pod is not ready or the voter lags: a change then could leave the
//!   quorum without a majority of caught-up voters (the brokers refuse such a change too, with
//!   REQUEST_TIMED_OUT, but the operator does not send one it knows will fail);
//! - adds before removes, lowest id first, so the quorum only ever shrinks from a larger set
//!   and a scale-up to more voters never passes through fewer;
//! - an add only once the node has joined as an observer, is ready and has caught up;
//! - removes highest id first, the active controller last: removing it makes it resign once
//!   the change commits, and another voter takes over, so the active controller moves off a
//!   broker that is scaled away before its pod goes.

use std::collections::BTreeSet;

/// How many metadata log entries behind the high watermark a node may be and still count as
/// caught up. The brokers themselves catch a new voter up before they add it (bounded by the
/// request's timeout); this only keeps the operator from sending an add that would time out.
pub const CAUGHT_UP_LAG: i64 = 1000;

/// One node as DescribeQuorum lists it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QuorumReplica {
    /// Node id.
    pub id: i32,
    /// Its metadata log end offset as the leader knows it (-1: unknown).
    pub log_end_offset: i64,
}

/// The metadata quorum as the active controller described it (DescribeQuorum).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QuorumView {
    /// The active controller.
    pub leader: i32,
    /// The quorum's high watermark.
    pub high_watermark: i64,
    /// The voters.
    pub voters: Vec<QuorumReplica>,
    /// Nodes that replicate the metadata log without a vote.
    pub observers: Vec<QuorumReplica>,
}

impl QuorumView {
    /// The voters' node ids, sorted.
    pub fn voter_ids(&self) -> Vec<i32> {
        let mut ids: Vec<i32> = self.voters.iter().map(|v| v.id).collect();
        ids.sort_unstable();
        ids
    }

    fn caught_up(&self, replica: &QuorumReplica) -> bool {
        replica.id == self.leader
            || (replica.log_end_offset >= 0
                && self.high_watermark - replica.log_end_offset <= CAUGHT_UP_LAG)
    }
}

/// What the operator does next about the voters.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum VoterStep {
    /// The voters are the first `controllers` brokers.
    Settled,
    /// AddRaftVoter for this node.
    Add(i32),
    /// RemoveRaftVoter for this node.
    Remove(i32),
    /// A change is due but must wait; why.
    Wait(String),
}

/// The next voter change that makes the voters of `view` the node ids `0..controllers`.
/// `ready` holds the node ids whose pods are ready.
pub fn next_step(controllers: i32, view: &QuorumView, ready: &BTreeSet<i32>) -> VoterStep {
    let wanted: BTreeSet<i32> = (0..controllers).collect();
    let current: BTreeSet<i32> = view.voters.iter().map(|v| v.id).collect();
    if wanted == current {
        return VoterStep::Settled;
    }
    for voter in &view.voters {
        if !ready.contains(&voter.id) {
            return VoterStep::Wait(format!("voter {} is not ready", voter.id));
        }
        if !view.caught_up(voter) {
            return VoterStep::Wait(format!(
                "voter {} lags the metadata log (log end {}, high watermark {})",
                voter.id, voter.log_end_offset, view.high_watermark
            ));
        }
    }
    if let Some(&id) = wanted.difference(&current).next() {
        let Some(observer) = view.observers.iter().find(|o| o.id == id) else {
            return VoterStep::Wait(format!("node {id} has not joined the quorum yet"));
        };
        if !ready.contains(&id) {
            return VoterStep::Wait(format!("node {id} is not ready"));
        }
        if !view.caught_up(observer) {
            return VoterStep::Wait(format!(
                "node {id} is catching up on the metadata log (log end {}, high watermark {})",
                observer.log_end_offset, view.high_watermark
            ));
        }
        return VoterStep::Add(id);
    }
    let extra: Vec<i32> = current.difference(&wanted).copied().collect();
    match extra.iter().rev().find(|id| **id != view.leader) {
        Some(&id) => VoterStep::Remove(id),
        None => extra
            .first()
            .map_or(VoterStep::Settled, |&id| VoterStep::Remove(id)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replica(id: i32, log_end_offset: i64) -> QuorumReplica {
        QuorumReplica { id, log_end_offset }
    }

    fn view(leader: i32, voters: &[i32], observers: &[i32]) -> QuorumView {
        QuorumView {
            leader,
            high_watermark: 5000,
            voters: voters.iter().map(|&id| replica(id, 5000)).collect(),
            observers: observers.iter().map(|&id| replica(id, 5000)).collect(),
        }
    }

    fn ready(ids: &[i32]) -> BTreeSet<i32> {
        ids.iter().copied().collect()
    }

    #[test]
    fn voters_that_match_need_nothing() {
        let v = view(1, &[0, 1, 2], &[3, 4]);
        assert_eq!(
            next_step(3, &v, &ready(&[0, 1, 2, 3, 4])),
            VoterStep::Settled
        );
    }

    #[test]
    fn more_controllers_adds_the_lowest_missing_observer_first() {
        let v = view(0, &[0, 1, 2], &[3, 4]);
        assert_eq!(
            next_step(5, &v, &ready(&[0, 1, 2, 3, 4])),
            VoterStep::Add(3)
        );
        let v = view(0, &[0, 1, 2, 3], &[4]);
        assert_eq!(
            next_step(5, &v, &ready(&[0, 1, 2, 3, 4])),
            VoterStep::Add(4)
        );
    }

    #[test]
    fn an_add_waits_for_the_node_to_join_be_ready_and_catch_up() {
        let all = ready(&[0, 1, 2, 3]);
        let v = view(0, &[0, 1, 2], &[]);
        assert_eq!(
            next_step(4, &v, &all),
            VoterStep::Wait("node 3 has not joined the quorum yet".into())
        );
        let v = view(0, &[0, 1, 2], &[3]);
        assert!(
            matches!(next_step(4, &v, &ready(&[0, 1, 2])), VoterStep::Wait(w) if w == "node 3 is not ready")
        );
        let mut lagging = view(0, &[0, 1, 2], &[]);
        lagging.observers.push(replica(3, 5000 - CAUGHT_UP_LAG - 1));
        assert!(
            matches!(next_step(4, &lagging, &all), VoterStep::Wait(w) if w.contains("catching up"))
        );
        lagging.observers[0].log_end_offset = 5000 - CAUGHT_UP_LAG;
        assert_eq!(next_step(4, &lagging, &all), VoterStep::Add(3));
    }

    #[test]
    fn no_change_while_a_voter_is_down_or_lagging() {
        let v = view(0, &[0, 1, 2], &[3]);
        assert_eq!(
            next_step(4, &v, &ready(&[0, 2, 3])),
            VoterStep::Wait("voter 1 is not ready".into())
        );
        let mut lagging = view(0, &[0, 1, 2, 3], &[]);
        lagging.voters[2].log_end_offset = -1;
        assert!(matches!(
            next_step(3, &lagging, &ready(&[0, 1, 2, 3])),
            VoterStep::Wait(w) if w.starts_with("voter 2 lags")
        ));
    }

    #[test]
    fn fewer_controllers_removes_the_highest_voter_and_the_active_controller_last() {
        let all = ready(&[0, 1, 2, 3, 4]);
        let v = view(0, &[0, 1, 2, 3, 4], &[]);
        assert_eq!(next_step(3, &v, &all), VoterStep::Remove(4));
        let v = view(4, &[0, 1, 2, 3, 4], &[]);
        assert_eq!(next_step(3, &v, &all), VoterStep::Remove(3));
        let v = view(4, &[0, 1, 2, 4], &[3]);
        assert_eq!(next_step(3, &v, &all), VoterStep::Remove(4));
    }

    #[test]
    fn adds_come_before_removes_when_both_are_due() {
        // Voters {0, 1, 5} (say, from another layout) and controllers 3: add 2, then remove 5.
        let v = view(5, &[0, 1, 5], &[2, 3, 4]);
        let all = ready(&[0, 1, 2, 3, 4, 5]);
        assert_eq!(next_step(3, &v, &all), VoterStep::Add(2));
        let v = view(5, &[0, 1, 2, 5], &[3, 4]);
        assert_eq!(next_step(3, &v, &all), VoterStep::Remove(5));
    }

    #[test]
    fn the_leader_counts_as_caught_up_whatever_it_reports() {
        let mut v = view(0, &[0, 1], &[2]);
        v.voters[0].log_end_offset = -1;
        assert_eq!(next_step(3, &v, &ready(&[0, 1, 2])), VoterStep::Add(2));
    }
}
