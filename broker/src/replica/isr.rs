//! The leader's replication decisions as pure functions of its view and logical time: the
//! high watermark, which followers leave the ISR (`replica.lag.time.max.ms`), which one may
//! join it, and whether an acks=all produce is done. No I/O and no clock: [`super::Partition`]
//! feeds them its state and `now_ms`, so they are tested with plain asserts.
//!
//! The rules are Kafka's (`Partition.maybeIncrementLeaderHW`, `getOutOfSyncReplicas`,
//! `isFollowerInSync`, `checkEnoughReplicasReachOffset`, `ReplicaState.isCaughtUp`).

/// Kafka's `UnifiedLog.UnknownOffset`: an offset the leader has not learnt yet.
pub const UNKNOWN_OFFSET: i64 = -1;

/// The leader's view of one follower (Kafka's `ReplicaState`), updated by that follower's
/// fetches.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FollowerState {
    /// The follower's log end offset: the offset of its last fetch ([`UNKNOWN_OFFSET`] until
    /// it fetched in this leader epoch).
    pub log_end_offset: i64,
    /// The follower's log start offset as it last reported it.
    pub log_start_offset: i64,
    /// The leader's log end offset when the follower last fetched.
    pub last_fetch_leader_log_end_offset: i64,
    /// When the follower last fetched (0: never).
    pub last_fetch_time_ms: i64,
    /// The last time the follower had everything the leader had (0: never in this epoch).
    pub last_caught_up_time_ms: i64,
    /// The broker epoch the follower sent with its last fetch (-1: unknown).
    pub broker_epoch: i64,
}

impl FollowerState {
    /// The view of a follower when this broker becomes leader in a new epoch (Kafka's
    /// `resetReplicaState` with `isNewLeader`): offsets unknown; an ISR member counts as
    /// caught up now, so it gets `replica.lag.time.max.ms` to fetch before it is dropped.
    pub fn new_leader_epoch(now_ms: i64, in_isr: bool) -> Self {
        FollowerState {
            log_end_offset: UNKNOWN_OFFSET,
            log_start_offset: UNKNOWN_OFFSET,
            last_fetch_leader_log_end_offset: UNKNOWN_OFFSET,
            last_fetch_time_ms: 0,
            last_caught_up_time_ms: if in_isr { now_ms } else { 0 },
            broker_epoch: -1,
        }
    }

    /// The view after a fetch at `fetch_offset` (the follower's log end offset) served when
    /// the leader's log end offset was `leader_log_end_offset` (Kafka's `updateFetchState`):
    /// the follower was caught up at this fetch if it asked from the leader's end, and at
    /// its previous fetch if it now asks from where the leader ended back then.
    pub fn after_fetch(
        &self,
        fetch_offset: i64,
        log_start_offset: i64,
        leader_log_end_offset: i64,
        broker_epoch: i64,
        now_ms: i64,
    ) -> Self {
        let last_caught_up_time_ms = if fetch_offset >= leader_log_end_offset {
            self.last_caught_up_time_ms.max(now_ms)
        } else if fetch_offset >= self.last_fetch_leader_log_end_offset
            && self.last_fetch_leader_log_end_offset != UNKNOWN_OFFSET
        {
            self.last_caught_up_time_ms.max(self.last_fetch_time_ms)
        } else {
            self.last_caught_up_time_ms
        };
        FollowerState {
            log_end_offset: fetch_offset,
            log_start_offset,
            last_fetch_leader_log_end_offset: leader_log_end_offset,
            last_fetch_time_ms: now_ms,
            last_caught_up_time_ms,
            broker_epoch,
        }
    }

    /// Kafka's `isCaughtUp`: the follower has the leader's whole log, or had it within the
    /// last `replica_lag_time_max_ms`.
    pub fn is_caught_up(
        &self,
        leader_log_end_offset: i64,
        now_ms: i64,
        replica_lag_time_max_ms: i64,
    ) -> bool {
        self.log_end_offset == leader_log_end_offset
            || now_ms - self.last_caught_up_time_ms <= replica_lag_time_max_ms
    }
}

/// What the high watermark computation needs to know about one follower.
#[derive(Debug, Clone, Copy)]
pub struct HwFollower {
    /// The follower's view.
    pub state: FollowerState,
    /// Member of the maximal ISR (the committed ISR plus any member of an ISR change in
    /// flight).
    pub in_maximal_isr: bool,
    /// May join the ISR (unfenced, not in controlled shutdown).
    pub isr_eligible: bool,
}

/// Kafka's `maybeIncrementLeaderHW`: the smallest log end offset among the leader and the
/// followers it must wait for — the maximal ISR, and followers outside it that are caught
/// up and eligible (so that they can join rather than chase a moving target). Returns the
/// new high watermark only if it is above `current_hw`: the high watermark never moves
/// backwards.
pub fn advanced_high_watermark(
    current_hw: i64,
    leader_log_end_offset: i64,
    followers: impl IntoIterator<Item = HwFollower>,
    now_ms: i64,
    replica_lag_time_max_ms: i64,
) -> Option<i64> {
    let mut hw = leader_log_end_offset;
    for f in followers {
        let waits_to_join = f.isr_eligible
            && f.state
                .is_caught_up(leader_log_end_offset, now_ms, replica_lag_time_max_ms);
        if f.state.log_end_offset < hw && (f.in_maximal_isr || waits_to_join) {
            hw = f.state.log_end_offset;
        }
    }
    (hw > current_hw).then_some(hw)
}

/// Kafka's `getOutOfSyncReplicas`: the ISR members other than the leader that are not
/// caught up ([`FollowerState::is_caught_up`]). An ISR member the leader has no view of
/// (not a replica any more) is out of sync too.
pub fn out_of_sync_replicas(
    leader_id: i32,
    isr: &[i32],
    follower: impl Fn(i32) -> Option<FollowerState>,
    leader_log_end_offset: i64,
    now_ms: i64,
    replica_lag_time_max_ms: i64,
) -> Vec<i32> {
    isr.iter()
        .copied()
        .filter(|&id| id != leader_id)
        .filter(|&id| {
            follower(id).is_none_or(|f| {
                !f.is_caught_up(leader_log_end_offset, now_ms, replica_lag_time_max_ms)
            })
        })
        .collect()
}

/// Kafka's `isFollowerInSync`: a follower outside the ISR may join once its log end offset
/// reached the high watermark and the start of the leader's current epoch (so it holds
/// nothing the leader may still truncate away).
pub fn may_join_isr(
    follower: &FollowerState,
    high_watermark: i64,
    leader_epoch_start_offset: i64,
) -> bool {
    follower.log_end_offset != UNKNOWN_OFFSET
        && follower.log_end_offset >= high_watermark
        && follower.log_end_offset >= leader_epoch_start_offset
}

/// Where an acks=all produce stands (Kafka's `checkEnoughReplicasReachOffset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AcksAll {
    /// The high watermark has not reached the produce's end yet.
    Wait,
    /// Replicated to the ISR: acknowledge.
    Done,
    /// Replicated to the ISR, but the ISR shrank below `min.insync.replicas` meanwhile:
    /// NOT_ENOUGH_REPLICAS_AFTER_APPEND (the records stay in the log).
    NotEnoughReplicasAfterAppend,
}

/// Whether an acks=all produce whose last offset is `required_offset - 1` can be answered,
/// given the high watermark and the size of the maximal ISR.
pub fn acks_all(
    high_watermark: i64,
    required_offset: i64,
    maximal_isr_size: usize,
    min_insync_replicas: i32,
) -> AcksAll {
    if high_watermark < required_offset {
        AcksAll::Wait
    } else if (maximal_isr_size as i64) < i64::from(min_insync_replicas) {
        AcksAll::NotEnoughReplicasAfterAppend
    } else {
        AcksAll::Done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LAG: i64 = 30_000;

    fn fetched(leo: i64, at: i64) -> FollowerState {
        FollowerState::new_leader_epoch(0, true).after_fetch(leo, 0, leo, 1, at)
    }

    fn member(state: FollowerState) -> HwFollower {
        HwFollower {
            state,
            in_maximal_isr: true,
            isr_eligible: true,
        }
    }

    #[test]
    fn high_watermark_is_the_smallest_isr_log_end_offset_and_never_moves_back() {
        let a = fetched(7, 100);
        let b = fetched(5, 100);
        assert_eq!(
            advanced_high_watermark(0, 10, [member(a), member(b)], 100, LAG),
            Some(5)
        );
        assert_eq!(
            advanced_high_watermark(6, 10, [member(a), member(b)], 100, LAG),
            None,
            "a lower minimum does not move the high watermark back"
        );
        assert_eq!(
            advanced_high_watermark(4, 10, [], 100, LAG),
            Some(10),
            "a leader alone in the ISR has its own log end offset as high watermark"
        );
    }

    #[test]
    fn an_isr_member_that_has_not_fetched_holds_the_high_watermark() {
        let unknown = FollowerState::new_leader_epoch(100, true);
        assert_eq!(
            advanced_high_watermark(3, 10, [member(unknown)], 100, LAG),
            None
        );
    }

    #[test]
    fn a_lagging_follower_outside_the_isr_does_not_hold_the_high_watermark() {
        let out = HwFollower {
            state: fetched(2, 0),
            in_maximal_isr: false,
            isr_eligible: true,
        };
        assert_eq!(
            advanced_high_watermark(0, 10, [out], LAG + 1, LAG),
            Some(10)
        );
        // Caught up recently and eligible: the leader waits for it so it can join.
        assert_eq!(advanced_high_watermark(0, 10, [out], 10, LAG), Some(2));
        let fenced = HwFollower {
            isr_eligible: false,
            ..out
        };
        assert_eq!(advanced_high_watermark(0, 10, [fenced], 10, LAG), Some(10));
    }

    #[test]
    fn a_follower_that_stops_fetching_leaves_the_isr_after_the_lag_time() {
        // Caught up at t=1000, then silent while the leader's log grows.
        let silent = fetched(10, 1_000);
        let view = |id| (id == 2).then_some(silent);
        assert!(out_of_sync_replicas(1, &[1, 2], view, 20, 1_000 + LAG, LAG).is_empty());
        assert_eq!(
            out_of_sync_replicas(1, &[1, 2], view, 20, 1_000 + LAG + 1, LAG),
            vec![2]
        );
        // A follower that has everything stays however long ago it fetched.
        assert!(out_of_sync_replicas(1, &[1, 2], view, 10, 1_000_000, LAG).is_empty());
        // An ISR member the leader has no view of is out of sync; the leader never is.
        assert_eq!(
            out_of_sync_replicas(1, &[1, 3], |_| None, 10, 0, LAG),
            vec![3]
        );
    }

    #[test]
    fn a_follower_fetching_behind_a_moving_leader_counts_as_caught_up_at_its_previous_fetch() {
        // Fetch 1 at t=100 asks from 0 while the leader ends at 10; fetch 2 at t=200 asks
        // from 10 (what the leader had at fetch 1) while the leader ends at 15.
        let first = FollowerState::new_leader_epoch(0, false).after_fetch(0, 0, 10, 1, 100);
        assert_eq!(first.last_caught_up_time_ms, 0);
        let second = first.after_fetch(10, 0, 15, 1, 200);
        assert_eq!(second.last_caught_up_time_ms, 100);
        let third = second.after_fetch(15, 0, 15, 1, 300);
        assert_eq!(third.last_caught_up_time_ms, 300);
    }

    #[test]
    fn a_follower_joins_the_isr_at_the_high_watermark_and_the_epoch_start() {
        let f = fetched(10, 0);
        assert!(may_join_isr(&f, 10, 8));
        assert!(!may_join_isr(&f, 11, 8), "below the high watermark");
        assert!(
            !may_join_isr(&f, 10, 12),
            "below the start of the leader's epoch"
        );
        assert!(!may_join_isr(
            &FollowerState::new_leader_epoch(0, false),
            0,
            0
        ));
    }

    #[test]
    fn acks_all_waits_for_the_high_watermark_then_checks_min_isr() {
        assert_eq!(acks_all(9, 10, 3, 2), AcksAll::Wait);
        assert_eq!(acks_all(10, 10, 3, 2), AcksAll::Done);
        assert_eq!(
            acks_all(12, 10, 1, 2),
            AcksAll::NotEnoughReplicasAfterAppend
        );
    }
}
