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
//! - a leader's AppendEntries or InstallSnapshot reached it (from then on openraft's timers
//!   watch that leader as usual);
//! - it is a follower whose vote names no other node (a new quorum), or it is a candidate (an
//!   election is under way anyway);
//! - it asked the node its vote names ([`ControlRequest::LeaderCheck`]) and that node answers
//!   that it does not lead that term or a later one with a majority heard within the fetch
//!   timeout (deposed, or cut off from the others), or cannot be connected to at all (its
//!   process or its DNS name is gone), or does not understand the question (an older
//!   version). A question that times out (a paused or slow leader) is asked again: the other
//!   voters replace a leader that stays silent, and this node's vote then moves;
//! - ten fetch timeouts passed (the leader answers but never reaches this node: a one-way
//!   cut, where standing is the only way left to make progress).
//!
//! The node its vote names is looked up at every look, not once: a voter that was the leader
//! before its restart comes back as leader of its old term (openraft restores it), learns the
//! newer leader from its peers' answers and becomes its follower, and that newer leader, just
//! as unable to resolve the restarted pod's name yet, must not be deposed either.
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

use super::network::{CallError, ControlClient, ControlRequest, ControlResponse};
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
    /// Keep the election timer off and look again later.
    Hold,
    /// Ask the node the vote names whether it leads, then decide again with its answer.
    Ask(u64),
    /// Turn the election timer on, for the reason given.
    Release(&'static str),
}

/// What the node a vote names answered to [`ControlRequest::LeaderCheck`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Answer {
    /// It leads this term, with a majority heard within the fetch timeout.
    Leads(u64),
    /// It does not lead, or it answered something else (an older version).
    DoesNotLead,
    /// No connection could be made: refused, unresolvable or unreachable.
    Unreachable,
    /// Connected, but no answer within the timeout.
    NoAnswerInTime,
}

/// What one look saw.
#[derive(Debug, Clone, Copy)]
pub(super) struct Look {
    /// This node's id.
    pub me: u64,
    /// Its state, and the term and node of its vote (`None` for a vote of term 0: none yet).
    pub state: ServerState,
    pub vote: Option<(u64, u64)>,
    /// Whether a leader's AppendEntries or InstallSnapshot reached it.
    pub leader_reached: bool,
    /// What the node the vote names answered, when asked.
    pub answer: Option<Answer>,
    /// How long this node has held, and the most it may.
    pub held: Duration,
    pub give_up_after: Duration,
}

/// The decision for one look.
pub(super) fn decide(look: &Look) -> Decision {
    if look.leader_reached {
        return Decision::Release("a leader reached it");
    }
    if look.held >= look.give_up_after {
        return Decision::Release("the leader answers but has not reached it for too long");
    }
    match look.state {
        // Restored as the leader of its old term: it learns from its peers' answers whether
        // another one leads now.
        ServerState::Leader => return Decision::Hold,
        // Not a voter yet (a new node before the leader sent it the membership), or Raft has
        // not published its first metrics yet (they start as Learner): look again.
        ServerState::Learner => return Decision::Hold,
        ServerState::Follower => {}
        ServerState::Candidate | ServerState::Shutdown => {
            return Decision::Release("an election is under way")
        }
    }
    let (term, leader) = match look.vote {
        Some((term, leader)) if leader != look.me => (term, leader),
        _ => return Decision::Release("its vote names no other node"),
    };
    match look.answer {
        None => Decision::Ask(leader),
        Some(Answer::Leads(leading)) if leading >= term => Decision::Hold,
        Some(Answer::NoAnswerInTime) => Decision::Hold,
        Some(Answer::Leads(_) | Answer::DoesNotLead) => {
            Decision::Release("the node its vote names does not lead")
        }
        Some(Answer::Unreachable) => Decision::Release("the node its vote names cannot be reached"),
    }
}

/// Runs the rules of the module docs for a voter that just started, then ends; `peers` are
/// the other configured voters' control clients by Raft id (a node its vote names that is not
/// among them, a voter added at runtime, is asked at the address the Raft membership names), `leader_reached` is set by the control
/// server, `configured_voters` is the size of the configured voter list (the one that set
/// `enable_elect` off), `restored` whether this node's log or vote was on disk at start.
pub(super) async fn hold_elections_until_the_leader_reaches_us(
    raft: Raft<TypeConfig>,
    me: u64,
    peers: BTreeMap<u64, Arc<ControlClient>>,
    leader_reached: Arc<AtomicBool>,
    timing: RejoinTiming,
    configured_voters: usize,
    restored: bool,
) {
    // The configured list, not Raft's metrics: this task starts beside Raft's own start-up,
    // and metrics read before openraft has loaded the membership from the log hold an empty
    // one. Counting that as "a quorum of one" turned elections on at once in a restarted
    // voter of three, which then deposed the live controller in the next election timeout
    // (seen in pod logs of e2e/k8s scenario 87: no "holding elections" line, an election
    // 2 s after start, the active controller moved during a roll).
    // A node that joins a dynamic quorum (KIP-853) has no configured list (0): it goes on below
    // and decides by what Raft restored.
    if configured_voters == 1 {
        // A quorum of one elects itself at once (openraft does not wait for its timer
        // there); nothing to hold.
        raft.runtime_config().elect(true);
        return;
    }
    let started = Instant::now();
    // Raft's metrics start as a follower with no vote and no log until its core has loaded
    // what is on disk; a look before that sees "its vote names no other node" and releases
    // at once (seen in the same pod logs as above). A node with nothing on disk has nothing
    // to load: its first look releases it, rightly (a new quorum).
    if restored {
        let loaded = raft
            .wait(Some(timing.give_up_after))
            .metrics(
                |m| {
                    m.vote.leader_id().term > 0
                        || m.last_log_index.is_some()
                        || m.purged.is_some()
                        || m.snapshot.is_some()
                },
                "the stored vote and log loaded",
            )
            .await;
        if let Err(e) = loaded {
            warn!(error = %e, "Raft did not publish its restored state; deciding on what it shows");
        }
    }
    let mut announced: Option<u64> = None;
    // Clients to voters found in the membership only, with the address they were made for.
    let mut found: BTreeMap<u64, (String, Arc<ControlClient>)> = BTreeMap::new();
    loop {
        let (state, vote) = {
            let m = raft.metrics();
            let m = m.borrow();
            let id = m.vote.leader_id();
            (
                m.state,
                (id.term > 0)
                    .then(|| id.voted_for().map(|l| (id.term, l)))
                    .flatten(),
            )
        };
        let mut look = Look {
            me,
            state,
            vote,
            leader_reached: leader_reached.load(Ordering::Relaxed),
            answer: None,
            held: started.elapsed(),
            give_up_after: timing.give_up_after,
        };
        let mut decision = decide(&look);
        if let Decision::Ask(leader) = decision {
            let client = peers.get(&leader).cloned().or_else(|| {
                let addr = raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .get_node(&leader)
                    .map(|n| n.addr.clone())?;
                match found.get(&leader) {
                    Some((known, client)) if *known == addr => Some(client.clone()),
                    _ => {
                        let client = Arc::new(ControlClient::new(addr.clone(), timing.ask_timeout));
                        found.insert(leader, (addr, client.clone()));
                        Some(client)
                    }
                }
            });
            let answer = match client {
                Some(client) => match client
                    .call(&ControlRequest::LeaderCheck, Some(timing.ask_timeout))
                    .await
                {
                    Ok(ControlResponse::LeaderCheck {
                        leading_term: Some(term),
                    }) => Answer::Leads(term),
                    Ok(_) | Err(CallError::Io { .. }) => Answer::DoesNotLead,
                    Err(CallError::Connect { .. }) => Answer::Unreachable,
                    Err(CallError::Timeout { .. }) => Answer::NoAnswerInTime,
                },
                None => Answer::Unreachable,
            };
            look.answer = Some(answer);
            look.leader_reached = leader_reached.load(Ordering::Relaxed);
            decision = decide(&look);
            if decision == Decision::Hold && announced != Some(leader) {
                announced = Some(leader);
                info!(
                    leader,
                    term = vote.map(|(t, _)| t),
                    "the active controller is alive and has not reached this restarted voter \
                     yet: holding elections until it does"
                );
            }
        }
        match decision {
            Decision::Hold | Decision::Ask(_) => tokio::time::sleep(timing.recheck).await,
            Decision::Release(why) => {
                let held_ms = look.held.as_millis() as u64;
                if look.held >= look.give_up_after {
                    warn!(
                        reason = why,
                        held_ms, "standing for election is allowed again"
                    );
                } else {
                    info!(
                        reason = why,
                        held_ms, "standing for election is allowed again"
                    );
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
            me: 1,
            state: ServerState::Follower,
            vote: Some((5, 0)),
            leader_reached: false,
            answer: None,
            held: Duration::from_millis(300),
            give_up_after: Duration::from_secs(10),
        }
    }

    fn released(l: Look) -> bool {
        matches!(decide(&l), Decision::Release(_))
    }

    #[test]
    fn a_follower_asks_the_node_its_vote_names_and_holds_while_it_leads() {
        assert_eq!(decide(&look()), Decision::Ask(0));
        let leads = |term| Look {
            answer: Some(Answer::Leads(term)),
            ..look()
        };
        assert_eq!(decide(&leads(5)), Decision::Hold);
        // A later term of the same node (it won again meanwhile) is still a live leader.
        assert_eq!(decide(&leads(6)), Decision::Hold);
    }

    #[test]
    fn a_restored_leader_holds_until_it_learns_who_leads_now() {
        let restored = Look {
            state: ServerState::Leader,
            vote: Some((5, 1)),
            ..look()
        };
        assert_eq!(decide(&restored), Decision::Hold);
        // Its peers answered with term 6 of node 2: it follows 2 and asks it.
        let follows = Look {
            vote: Some((6, 2)),
            ..look()
        };
        assert_eq!(decide(&follows), Decision::Ask(2));
    }

    #[test]
    fn releases_when_there_is_no_leader_to_protect() {
        assert!(released(Look {
            vote: None,
            ..look()
        }));
        assert!(released(Look {
            vote: Some((5, 1)),
            ..look()
        }));
        assert!(released(Look {
            state: ServerState::Candidate,
            ..look()
        }));
    }

    #[test]
    fn a_learner_holds_until_raft_says_more() {
        // Raft's first metrics say Learner before the core reports the loaded state.
        let first = Look {
            state: ServerState::Learner,
            ..look()
        };
        assert_eq!(decide(&first), Decision::Hold);
    }

    #[test]
    fn releases_once_a_leader_reached_it() {
        assert!(released(Look {
            leader_reached: true,
            ..look()
        }));
        assert!(released(Look {
            leader_reached: true,
            state: ServerState::Leader,
            ..look()
        }));
    }

    #[test]
    fn releases_when_the_leader_is_gone_deposed_or_stale() {
        for answer in [Answer::DoesNotLead, Answer::Unreachable, Answer::Leads(4)] {
            assert!(released(Look {
                answer: Some(answer),
                ..look()
            }));
        }
    }

    #[test]
    fn a_leader_that_does_not_answer_in_time_is_asked_again() {
        let silent = Look {
            answer: Some(Answer::NoAnswerInTime),
            ..look()
        };
        assert_eq!(decide(&silent), Decision::Hold);
    }

    #[test]
    fn releases_after_holding_too_long_even_if_the_leader_answers() {
        assert!(released(Look {
            held: Duration::from_secs(10),
            answer: Some(Answer::Leads(5)),
            ..look()
        }));
    }
}
