//! The roll planner: which broker pod to restart next when pods run an old configuration, as a
//! pure function of what the operator observed (pods and partitions), so the rules are unit-
//! tested without a cluster. The reconciler ([`crate::controller`]) observes, calls [`plan`]
//! and deletes at most one pod per decision (the StatefulSet is `OnDelete`, so the
//! StatefulSet controller recreates it from the current template).
//!
//! A pod is stale ([`stale_reason`]) when its config-hash annotation differs from the
//! StatefulSet template's, or when it carries `oxbow.dev/manual-rolling-update=true`.
//!
//! Rules (issue 9, Strimzi's KafkaRoller in spirit):
//! - one broker at a time: nothing is restarted while a broker is not ready, or while a ready
//!   broker is still missing from the ISR of a partition it replicates (it is catching up,
//!   e.g. after the previous restart);
//! - a stale broker that is not ready is restarted first: it is out of service already, so
//!   restarting it costs no availability and may be what it needs;
//! - never a broker whose restart would take a partition's ISR below its `min.insync.replicas`
//!   (so a partition with one replica and min.insync.replicas 1 holds the roll: its restart
//!   would make it unavailable; the Wait reason names it);
//! - the active controller last, lowest node id first among the others.

/// One broker as observed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BrokerState {
    /// Node id (the pod ordinal).
    pub id: i32,
    /// Whether its pod runs an older configuration than the StatefulSet's (config hash).
    pub stale: bool,
    /// Whether its pod is ready.
    pub ready: bool,
}

/// One partition as the cluster's Metadata describes it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionState {
    /// `topic-partition`, for the reasons given.
    pub name: String,
    /// Replica node ids.
    pub replicas: Vec<i32>,
    /// In-sync replica node ids.
    pub isr: Vec<i32>,
    /// The topic's effective `min.insync.replicas`.
    pub min_insync_replicas: i32,
}

/// What to do now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RollDecision {
    /// No broker runs an old configuration.
    Done,
    /// Delete this broker's pod now.
    Restart(i32),
    /// Restart nothing now; the reason says what is awaited.
    Wait(String),
}

/// A broker pod as listed by the API server.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PodObservation {
    /// Whether the pod exists (a deleted one is absent until the StatefulSet recreates it).
    pub exists: bool,
    /// Whether it is being deleted (`deletionTimestamp` set).
    pub terminating: bool,
    /// Whether its `Ready` condition is `True`.
    pub ready: bool,
    /// Its config-hash annotation, if any.
    pub config_hash: Option<String>,
    /// Whether it carries the manual rolling update annotation set to `true`.
    pub manual: bool,
}

/// Why `pod` must restart to run the StatefulSet template whose hash is `desired_hash`, or
/// `None` if it need not. A pod that is absent or already being deleted is not stale: its
/// replacement is made from the current template.
pub fn stale_reason(pod: &PodObservation, desired_hash: &str) -> Option<String> {
    if !pod.exists || pod.terminating {
        return None;
    }
    if pod.manual {
        return Some("manual rolling update annotation".to_string());
    }
    match pod.config_hash.as_deref() {
        Some(h) if h == desired_hash => None,
        Some(h) => Some(format!("config hash {h} is not {desired_hash}")),
        None => Some(format!("no config hash, the template's is {desired_hash}")),
    }
}

/// The broker behind `pod` for the planner.
pub fn broker_state(id: i32, pod: &PodObservation, desired_hash: &str) -> BrokerState {
    BrokerState {
        id,
        stale: stale_reason(pod, desired_hash).is_some(),
        ready: pod.exists && !pod.terminating && pod.ready,
    }
}

/// [`next_restart`] when what the brokers report may be unknown: `partitions` is `Err` with
/// the reason when the cluster could not be asked, and `active_controller` is `None` when no
/// quorum leader is known. Without them only a stale broker that is down may restart (it
/// serves nothing); a healthy broker waits, since its restart could take a partition below
/// `min.insync.replicas` or restart the controller before the others.
pub fn plan(
    brokers: &[BrokerState],
    partitions: Result<&[PartitionState], &str>,
    active_controller: Option<i32>,
) -> RollDecision {
    let decision = next_restart(brokers, partitions.unwrap_or(&[]), active_controller);
    let restarts_a_ready_broker = matches!(
        decision,
        RollDecision::Restart(id) if brokers.iter().any(|b| b.id == id && b.ready)
    );
    if !restarts_a_ready_broker {
        return decision;
    }
    if let Err(why) = partitions {
        return RollDecision::Wait(format!("the partitions are unknown: {why}"));
    }
    if active_controller.is_none() {
        return RollDecision::Wait("no active controller is known".to_string());
    }
    decision
}

/// Why the cluster has not settled after a restart, or `None` once it has: every broker
/// ready, and every replica on one of `brokers` back in its partition's ISR (a replica on a
/// node that is not a broker any more cannot come back, so it does not hold the roll).
pub fn unsettled(brokers: &[BrokerState], partitions: &[PartitionState]) -> Option<String> {
    if let Some(down) = brokers.iter().find(|b| !b.ready) {
        return Some(format!("broker {} is not ready", down.id));
    }
    for p in partitions {
        let lagging = p
            .replicas
            .iter()
            .find(|r| !p.isr.contains(r) && brokers.iter().any(|b| b.id == **r));
        if let Some(lagging) = lagging {
            return Some(format!(
                "broker {lagging} is not in the ISR of {} yet",
                p.name
            ));
        }
    }
    None
}

/// The next step of a roll over `brokers`, given the partitions and the active controller.
pub fn next_restart(
    brokers: &[BrokerState],
    partitions: &[PartitionState],
    active_controller: Option<i32>,
) -> RollDecision {
    let mut stale: Vec<&BrokerState> = brokers.iter().filter(|b| b.stale).collect();
    if stale.is_empty() {
        return RollDecision::Done;
    }
    stale.sort_by_key(|b| b.id);
    // Already out of service: restarting it takes nothing more away.
    if let Some(down) = stale.iter().find(|b| !b.ready) {
        return RollDecision::Restart(down.id);
    }
    if let Some(why) = unsettled(brokers, partitions) {
        return RollDecision::Wait(why);
    }
    // Controller last: the others in id order, then it.
    stale.sort_by_key(|b| (Some(b.id) == active_controller, b.id));
    let mut blocked = Vec::new();
    for candidate in stale {
        let blocking = partitions.iter().find(|p| {
            p.isr.contains(&candidate.id)
                && (p.isr.len() as i64 - 1) < i64::from(p.min_insync_replicas)
        });
        match blocking {
            None => return RollDecision::Restart(candidate.id),
            Some(p) => blocked.push(format!(
                "broker {}: {} would have {} in-sync replicas, below min.insync.replicas {}",
                candidate.id,
                p.name,
                p.isr.len().saturating_sub(1),
                p.min_insync_replicas
            )),
        }
    }
    RollDecision::Wait(blocked.join("; "))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(stale: &[i32], not_ready: &[i32]) -> Vec<BrokerState> {
        (0..3)
            .map(|id| BrokerState {
                id,
                stale: stale.contains(&id),
                ready: !not_ready.contains(&id),
            })
            .collect()
    }

    fn partition(name: &str, replicas: &[i32], isr: &[i32], min_isr: i32) -> PartitionState {
        PartitionState {
            name: name.into(),
            replicas: replicas.to_vec(),
            isr: isr.to_vec(),
            min_insync_replicas: min_isr,
        }
    }

    fn pod(hash: &str) -> PodObservation {
        PodObservation {
            exists: true,
            ready: true,
            config_hash: Some(hash.into()),
            ..PodObservation::default()
        }
    }

    #[test]
    fn a_pod_is_stale_by_its_hash_or_the_manual_annotation_never_while_going_away() {
        assert_eq!(stale_reason(&pod("a"), "a"), None);
        assert_eq!(
            stale_reason(&pod("b"), "a").as_deref(),
            Some("config hash b is not a")
        );
        let manual = PodObservation {
            manual: true,
            ..pod("a")
        };
        assert_eq!(
            stale_reason(&manual, "a").as_deref(),
            Some("manual rolling update annotation")
        );
        let terminating = PodObservation {
            terminating: true,
            ..pod("b")
        };
        assert_eq!(stale_reason(&terminating, "a"), None);
        assert_eq!(stale_reason(&PodObservation::default(), "a"), None);
        // Going away or absent: not ready, so the roll waits for its replacement.
        let b = broker_state(1, &terminating, "a");
        assert_eq!(
            b,
            BrokerState {
                id: 1,
                stale: false,
                ready: false
            }
        );
        let b = broker_state(2, &pod("b"), "a");
        assert!(b.stale && b.ready);
    }

    #[test]
    fn without_partitions_or_controller_only_a_stale_broker_that_is_down_restarts() {
        let parts = [partition("t-0", &[0, 1, 2], &[0, 1, 2], 2)];
        let all = brokers(&[0, 1, 2], &[]);
        assert_eq!(
            plan(&all, Err("no broker answered"), Some(0)),
            RollDecision::Wait("the partitions are unknown: no broker answered".into())
        );
        assert_eq!(
            plan(&all, Ok(&parts), None),
            RollDecision::Wait("no active controller is known".into())
        );
        assert_eq!(
            plan(&brokers(&[0, 1, 2], &[2]), Err("no broker answered"), None),
            RollDecision::Restart(2)
        );
        assert_eq!(plan(&brokers(&[], &[]), Err("x"), None), RollDecision::Done);
        assert_eq!(plan(&all, Ok(&parts), Some(0)), RollDecision::Restart(1));
    }

    #[test]
    fn the_roll_is_settled_once_every_broker_is_ready_and_back_in_every_isr() {
        let parts = [
            partition("t-0", &[0, 1, 2], &[0, 1, 2], 2),
            partition("t-1", &[1, 2, 3], &[1, 2], 2),
        ];
        // Node 3 is not a broker of the cluster any more: it cannot rejoin.
        assert_eq!(unsettled(&brokers(&[], &[]), &parts), None);
        assert_eq!(
            unsettled(&brokers(&[], &[2]), &parts).as_deref(),
            Some("broker 2 is not ready")
        );
        let lagging = [partition("t-0", &[0, 1, 2], &[0, 1], 2)];
        assert_eq!(
            unsettled(&brokers(&[], &[]), &lagging).as_deref(),
            Some("broker 2 is not in the ISR of t-0 yet")
        );
    }

    #[test]
    fn nothing_stale_is_done() {
        assert_eq!(
            next_restart(&brokers(&[], &[]), &[], Some(0)),
            RollDecision::Done
        );
    }

    #[test]
    fn the_active_controller_goes_last_and_the_others_by_id() {
        let parts = [partition("t-0", &[0, 1, 2], &[0, 1, 2], 2)];
        assert_eq!(
            next_restart(&brokers(&[0, 1, 2], &[]), &parts, Some(0)),
            RollDecision::Restart(1)
        );
        assert_eq!(
            next_restart(&brokers(&[0, 2], &[]), &parts, Some(0)),
            RollDecision::Restart(2)
        );
        assert_eq!(
            next_restart(&brokers(&[0], &[]), &parts, Some(0)),
            RollDecision::Restart(0)
        );
        // No known controller: plain id order.
        assert_eq!(
            next_restart(&brokers(&[0, 1, 2], &[]), &parts, None),
            RollDecision::Restart(0)
        );
    }

    #[test]
    fn a_broker_down_mid_roll_stops_the_roll_unless_it_is_stale_itself() {
        let parts = [partition("t-0", &[0, 1, 2], &[0, 2], 2)];
        // Broker 1 (already restarted) is not back: wait, whatever else is stale.
        let d = next_restart(&brokers(&[0, 2], &[1]), &parts, Some(0));
        assert_eq!(d, RollDecision::Wait("broker 1 is not ready".into()));
        // A stale broker that is down is restarted first: it serves nothing now.
        assert_eq!(
            next_restart(&brokers(&[0, 1, 2], &[1]), &parts, Some(1)),
            RollDecision::Restart(1)
        );
    }

    #[test]
    fn the_next_restart_waits_until_the_last_one_is_back_in_every_isr() {
        let parts = [
            partition("t-0", &[0, 1, 2], &[0, 1, 2], 2),
            partition("t-1", &[1, 2, 0], &[2, 0], 2),
        ];
        let d = next_restart(&brokers(&[0, 2], &[]), &parts, Some(0));
        assert_eq!(
            d,
            RollDecision::Wait("broker 1 is not in the ISR of t-1 yet".into())
        );
    }

    #[test]
    fn never_below_min_insync_replicas_even_for_an_already_under_replicated_partition() {
        // t-0 lost broker 2 for good (it is not a broker any more): ISR 0,1 with min ISR 2.
        let three = [
            BrokerState {
                id: 0,
                stale: true,
                ready: true,
            },
            BrokerState {
                id: 1,
                stale: true,
                ready: true,
            },
        ];
        let parts = [partition("t-0", &[0, 1, 2], &[0, 1], 2)];
        match next_restart(&three, &parts, Some(0)) {
            RollDecision::Wait(why) => {
                assert!(
                    why.contains(
                        "broker 1: t-0 would have 1 in-sync replicas, below min.insync.replicas 2"
                    ),
                    "{why}"
                );
                assert!(why.contains("broker 0: t-0"), "{why}");
            }
            other => panic!("expected to wait, got {other:?}"),
        }
        // A broker outside that partition's ISR may go: it takes nothing from it.
        let parts = [
            partition("t-0", &[0, 1], &[0, 1], 2),
            partition("u-0", &[2], &[2], 1),
        ];
        let d = next_restart(&brokers(&[0, 1, 2], &[]), &parts, Some(0));
        assert_eq!(
            d,
            RollDecision::Wait(
                "broker 1: t-0 would have 1 in-sync replicas, below min.insync.replicas 2; \
             broker 2: u-0 would have 0 in-sync replicas, below min.insync.replicas 1; \
             broker 0: t-0 would have 1 in-sync replicas, below min.insync.replicas 2"
                    .into()
            )
        );
        let parts = [
            partition("t-0", &[0, 1, 2], &[0, 1, 2], 2),
            partition("u-0", &[2], &[2], 0),
        ];
        assert_eq!(
            next_restart(&brokers(&[2], &[]), &parts, Some(0)),
            RollDecision::Restart(2)
        );
    }
}
