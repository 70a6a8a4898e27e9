//! A voter stands for election at once when the active controller's process is gone, instead
//! of waiting out `controller.quorum.fetch.timeout.ms` (Kafka waits the fetch timeout in every
//! case; this is a deliberate difference in *when* an election starts, nothing else).
//!
//! How a voter knows the process is gone: a TCP connection to the leader's CONTROLLER
//! listener is *refused* (ECONNREFUSED: the kernel answered that nothing listens on that
//! port). A leader that is alive keeps that listener open for as long as it leads: slow,
//! paused (SIGSTOP: the kernel still completes the handshake into the listen backlog), or cut
//! off by the network (the connect times out or fails otherwise), its listener does not
//! refuse, and the voters wait the fetch timeout as before. The same proof fences a gone
//! broker early (`controller::service`, `fence_gone_brokers_at`).
//!
//! When a voter looks: whenever one of its inbound control connections closes (a killed
//! leader's heartbeat connections are closed by its kernel, so both followers notice within
//! moments), once more shortly after such a look found the listener open (a dying process
//! may close its connections just before its listener), and every quarter of the fetch
//! timeout as a fallback.
//!
//! Why the other voters grant the vote: openraft's voters refuse candidates while their
//! leader lease (openraft's `election_timeout_max`, half the fetch timeout here) is valid, and
//! openraft has no call to drop a lease. So every voter checks for itself: a voter that finds
//! the leader's listener refusing stands itself (`Raft::trigger().elect()`), which replaces
//! its committed vote for the old leader by an uncommitted vote for itself, and a voter whose
//! vote is uncommitted has no lease to defend. Between two such candidates of one term,
//! openraft's leader ids order by (term, node id), so the higher id is granted the lower's
//! vote when its log is at least as long; when the rounds cross (one voter asked before it
//! found the leader gone), a candidate that is still without a leader a heartbeat interval
//! later stands again in the next term, for at most one fetch timeout, after which
//! openraft's own timers are as fast.
//!
//! Safety: no live leader is deposed by this, since only a refusing listener starts it and a
//! live leader's listener does not refuse; and if one were (a listener closed while Raft still
//! ran, e.g. during shutdown), Raft's safety is untouched: votes, terms, log comparison and
//! commitment are openraft's, one leader per term and log matching hold; only the moment an
//! election starts changed.

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use openraft::{Raft, ServerState};
use tokio::sync::Notify;
use tokio::time::Instant;
use tracing::{debug, info, warn};

use super::TypeConfig;

/// How long a probe waits for a connection: a refusal on a reachable host comes back at once;
/// anything slower is not a refusal.
const PROBE_CONNECT_TIMEOUT: Duration = Duration::from_secs(1);

/// When the watcher looks at the leader (see the module docs).
#[derive(Debug, Clone, Copy)]
pub(super) struct ProbeTiming {
    /// The pause before a second look after a wake-up, and between elections while the
    /// leader is gone and none has won: the leader's heartbeat interval.
    pub recheck: Duration,
    /// The pause between looks when nothing woke the watcher.
    pub fallback: Duration,
    /// How long after finding the leader gone this node keeps standing again when an
    /// election found no winner: the fetch timeout.
    pub window: Duration,
}

/// Whether a TCP connection to `addr` is refused (nothing listens there). A connection that
/// opens, times out, or fails any other way (unresolvable name, unreachable host) is no proof
/// that the process is gone.
pub(super) async fn listener_refuses(addr: &str) -> bool {
    match tokio::time::timeout(PROBE_CONNECT_TIMEOUT, tokio::net::TcpStream::connect(addr)).await {
        Ok(Err(e)) => e.kind() == std::io::ErrorKind::ConnectionRefused,
        Ok(Ok(_)) | Err(_) => false,
    }
}

/// Watches the leader of this voter (`me`) and stands for election when its control listener
/// (`addresses`, by voter id, else the address the Raft membership names) refuses connections (see the module docs). `closed` is notified
/// whenever an inbound control connection closes. Runs until aborted or Raft stops.
pub(super) async fn stand_when_leader_gone(
    raft: Raft<TypeConfig>,
    me: u64,
    addresses: BTreeMap<u64, String>,
    closed: Arc<Notify>,
    timing: ProbeTiming,
) {
    // The leader this node found gone, and when; kept while no new leader is known.
    let mut gone: Option<(u64, Instant)> = None;
    // A wake-up found the listener open: look once more shortly (a dying process).
    let mut look_again = false;
    // When this node last stood.
    let mut stood: Option<Instant> = None;
    loop {
        let pause = if gone.is_some() || look_again {
            timing.recheck
        } else {
            timing.fallback
        };
        let woken = tokio::select! {
            _ = closed.notified() => true,
            _ = tokio::time::sleep(pause) => false,
        };
        let (state, leader) = {
            let m = raft.metrics();
            let m = m.borrow();
            (m.state, m.current_leader)
        };
        if state == ServerState::Shutdown {
            return;
        }
        if !matches!(state, ServerState::Follower | ServerState::Candidate) {
            gone = None;
            look_again = false;
            continue;
        }
        let target = match leader {
            Some(leader) if leader == me => continue,
            Some(leader) => leader,
            // Granted another candidate's vote, waiting for its first heartbeat: standing
            // again now would only disrupt that leader.
            None if state == ServerState::Follower => continue,
            // A candidate without a winner: stand again, but only for a leader this node
            // found gone, and only within the window.
            None => match gone {
                Some((leader, since)) if since.elapsed() < timing.window => leader,
                _ => {
                    gone = None;
                    look_again = false;
                    continue;
                }
            },
        };
        // Wake-ups come from connections the election itself closes, and the metrics lag
        // behind an election just triggered: stand at most once per heartbeat interval for
        // one gone leader, so a round in flight can finish.
        if gone.is_some_and(|(g, _)| g == target)
            && stood.is_some_and(|at| at.elapsed() < timing.recheck)
        {
            continue;
        }
        // A configured voter's address, else the membership's (a voter added at runtime).
        let addr = match addresses.get(&target) {
            Some(addr) => addr.clone(),
            None => match raft
                .metrics()
                .borrow()
                .membership_config
                .membership()
                .get_node(&target)
            {
                Some(node) => node.addr.clone(),
                None => continue,
            },
        };
        if listener_refuses(&addr).await {
            if gone.is_none_or(|(g, _)| g != target) {
                info!(
                    leader = target,
                    address = %addr,
                    "the active controller's listener refuses connections (its process is \
                     gone): standing for election now"
                );
                gone = Some((target, Instant::now()));
            } else {
                debug!(leader = target, "no leader elected yet: standing again");
            }
            look_again = false;
            stood = Some(Instant::now());
            if let Err(e) = raft.trigger().elect().await {
                warn!(error = %e, "cannot start an election");
                return;
            }
        } else {
            gone = None;
            look_again = woken;
        }
    }
}
