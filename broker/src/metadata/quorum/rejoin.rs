//! A voter that restarts while the active controller is alive does not depose it.
//!
//! The problem: openraft's leader pushes its log to the followers, so a restarted voter
//! hears from the leader only once the leader can connect back to it. On Kubernetes that
//! takes a while: the pod's new address reaches the leader through DNS, and the name was
//! unresolvable (and cached as such) while the pod was gone. Meanwhile the restarted voter's
//! election timer runs out (about one fetch timeout), it stands in a higher term, and when the
//! leader finally reaches it, the higher term in its answer makes the leader step down: a
//! rolling restart moved the active controller from broker to broker, and the operator, which
//! restarts the active controller last, saw it move (e2e/k8s scenario 87). Kafka's followers
//! fetch from the leader themselves, and since KIP-996 a voter stands only after a pre-vote
//! that voters refuse while they hear from a leader; neither lets a rejoining voter disrupt a
//! working quorum.
//!
//! What Oxbow does, with openraft's election switch (`Config::enable_elect`): a voter of a
//! quorum of several starts with its election timer off, and turns it on as soon as any of
//! these holds:
//! - it remembers no committed leader (a new quorum, or an election was under way), or it
//!   remembers itself;
//! - a leader's AppendEntries or InstallSnapshot reached it (from then on openraft's timers
//!   watch that leader as usual);
//! - it asked the leader it remembers ([`ControlRequest::LeaderCheck`]) and that node does
//!   not answer that it leads that term or a later one with a majority heard within the fetch
//!   timeout: it is gone, paused, cut off, or deposed;
//! - five fetch timeouts passed (the leader answers but never reaches this node: a one-way
//!   cut, where standing is the only way to make progress).
//!
//! Safety is untouched: this only delays when a node may start an election; votes, terms
//! and logs are openraft's. Liveness is bounded by the last rule, and a dead leader is noticed
//! on the first question (a refused or failed connection), after which the timer, which
//! started at boot, fires at once.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::{Raft, ServerState};
use tokio::time::Instant;
use tracing::{info, warn};

use super::network::{ControlClient, ControlRequest, ControlResponse};
use super::TypeConfig;

/// When a restarted voter asks, and how long it holds (see [`super::QuorumOptions`]).
#[derive(Debug, Clone, Copy)]
pub(super) struct RejoinTiming {
    /// The pause between two questions to the leader: its heartbeat interval.
    pub recheck: Duration,
    /// How long one question may take.
    pub ask_timeout: Duration,
    /// The most this node holds its elections.
    pub give_up_after: Duration,
}

/// Whether a restarted voter still holds its elections, given what it knows now (the rules
/// of the module docs, as a pure function of one look).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Decision {
    /// Keep the election timer off and ask again later.
    Hold,
    /// Turn the election timer on, for the reason given.
    Release(&'static str),
}

/// What one look saw.
#[derive(Debug, Clone, Copy)]
pub(super) struct Look {
    /// The committed leader this node remembered at start, and its term.
    pub remembered: Option<(u64, u64)>,
    /// This node's id.
    pub me: u64,
    /// Its current term and state.
    pub term: u64,
    pub state: ServerState,
    /// Whether a leader's AppendEntries or InstallSnapshot reached it.
    pub leader_reached: bool,
    /// What the remembered leader answered: `Some(Some(term))` it leads that term,
    /// `Some(None)` it does not lead, `None` no answer (not asked yet, or it failed).
    pub answer: Option<Option<u64>>,
    /// How long this node has held.
    pub held: Duration,
    pub give_up_after: Duration,
}

/// The decision for one look.
pub(super) fn decide(look: &Look) -> Decision {
    let Some((leader, term)) = look.remembered else {
        return Decision::Release("it remembers no committed leader");
    };
    if leader == look.me {
        return Decision::Release("it was the leader itself");
    }
    if look.leader_reached {
        return Decision::Release("a leader reached it");
    }
    if look.term > term || look.state != ServerState::Follower {
        return Decision::Release("its vote changed");
    }
    if look.held >= look.give_up_after {
        return Decision::Release("the leader answers but has not reached it for too long");
    }
    match look.answer {
        Some(Some(leading)) if leading >= term => Decision::Hold,
        Some(Some(_)) | Some(None) => Decision::Release("the leader it remembers no longer leads"),
        None => Decision::Release("the leader it remembers does not answer"),
    }
}

/// Runs the rules of the module docs for a voter that just started, then ends; `peers` are
/// the other voters' control clients by Raft id, `leader_reached` is set by the control
/// server.
pub(super) async fn hold_elections_until_the_leader_reaches_us(
    raft: Raft<TypeConfig>,
    me: u64,
    peers: BTreeMap<u64, Arc<ControlClient>>,
    leader_reached: Arc<AtomicBool>,
    timing: RejoinTiming,
) {
    let (remembered, voters) = {
        let m = raft.metrics();
        let m = m.borrow();
        let voters = m.membership_config.membership().voter_ids().count();
        let vote = m.vote;
        let remembered = vote
            .is_committed()
            .then(|| {
                vote.leader_id()
                    .voted_for()
                    .map(|l| (l, vote.leader_id().term))
            })
            .flatten();
        (remembered, voters)
    };
    if voters <= 1 {
        // A quorum of one elects itself at once (openraft does not wait for its timer
        // there); nothing to hold.
        raft.runtime_config().elect(true);
        return;
    }
    let started = Instant::now();
    let mut held_logged = false;
    loop {
        let (term, state) = {
            let m = raft.metrics();
            let m = m.borrow();
            (m.vote.leader_id().term, m.state)
        };
        let mut look = Look {
            remembered,
            me,
            term,
            state,
            leader_reached: leader_reached.load(Ordering::Relaxed),
            answer: None,
            held: started.elapsed(),
            give_up_after: timing.give_up_after,
        };
        // Ask only when nothing else decides: the question costs a round trip.
        let mut decision = decide(&Look {
            answer: Some(Some(u64::MAX)),
            ..look
        });
        if decision == Decision::Hold {
            look.answer = match remembered.and_then(|(leader, _)| peers.get(&leader)) {
                Some(client) => match client
                    .call(&ControlRequest::LeaderCheck, Some(timing.ask_timeout))
                    .await
                {
                    Ok(ControlResponse::LeaderCheck { leading_term }) => Some(leading_term),
                    _ => None,
                },
                None => None,
            };
            look.leader_reached = leader_reached.load(Ordering::Relaxed);
            decision = decide(&look);
        }
        match decision {
            Decision::Hold => {
                if !held_logged {
                    held_logged = true;
                    if let Some((leader, term)) = remembered {
                        info!(
                            leader,
                            term,
                            "the active controller is alive and has not reached this restarted \
                             voter yet: holding elections until it does"
                        );
                    }
                }
                tokio::time::sleep(timing.recheck).await;
            }
            Decision::Release(why) => {
                if look.held >= look.give_up_after {
                    warn!(reason = why, "standing for election is allowed again");
                } else if held_logged {
                    info!(reason = why, "standing for election is allowed again");
                }
                raft.runtime_config().elect(true);
                return;
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn look() -> Look {
        Look {
            remembered: Some((0, 5)),
            me: 1,
            term: 5,
            state: ServerState::Follower,
            leader_reached: false,
            answer: Some(Some(5)),
            held: Duration::from_millis(300),
            give_up_after: Duration::from_secs(10),
        }
    }

    #[test]
    fn holds_while_the_remembered_leader_says_it_leads_and_has_not_reached_it() {
        assert_eq!(decide(&look()), Decision::Hold);
        // A later term of the same leader (it won again meanwhile) is still a live leader.
        let later = Look {
            answer: Some(Some(6)),
            ..look()
        };
        assert_eq!(decide(&later), Decision::Hold);
    }

    #[test]
    fn releases_when_there_is_no_leader_to_protect() {
        for l in [
            Look {
                remembered: None,
                ..look()
            },
            Look {
                remembered: Some((1, 5)),
                ..look()
            },
        ] {
            assert!(matches!(decide(&l), Decision::Release(_)), "{l:?}");
        }
    }

    #[test]
    fn releases_once_the_leader_reached_it_or_its_vote_moved() {
        for l in [
            Look {
                leader_reached: true,
                ..look()
            },
            Look { term: 6, ..look() },
            Look {
                state: ServerState::Candidate,
                ..look()
            },
        ] {
            assert!(matches!(decide(&l), Decision::Release(_)), "{l:?}");
        }
    }

    #[test]
    fn releases_when_the_leader_is_gone_deposed_or_stale() {
        for answer in [None, Some(None), Some(Some(4))] {
            let l = Look { answer, ..look() };
            assert!(matches!(decide(&l), Decision::Release(_)), "{l:?}");
        }
    }

    #[test]
    fn releases_after_holding_too_long_even_if_the_leader_answers() {
        let l = Look {
            held: Duration::from_secs(10),
            ..look()
        };
        assert!(matches!(decide(&l), Decision::Release(_)));
    }
}
