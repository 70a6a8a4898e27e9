//! Moving one member of a consumer group (KIP-848) from its current assignment towards its
//! target assignment, one safe step at a time.
//!
//! The rule that makes the protocol incremental: a partition is never given to a member while
//! another member still owns it. So a member first gives up (revokes) what it must lose, and
//! only then, at the next epoch, receives what is new; a partition still owned elsewhere is
//! held back ("unreleased") until its owner has revoked it. Kafka's `CurrentAssignmentBuilder`
//! follows the same rule; this is a pure function of the member, the target and who owns what.

use super::{Assignment, ConsumerMember, MemberState};
use uuid::Uuid;

/// Everything the next step of `member` depends on.
pub struct Reconcile<'a> {
    /// The group's target assignment epoch.
    pub target_epoch: i32,
    /// The member's partitions in the target assignment.
    pub target: &'a Assignment,
    /// The partitions the member reported owning in this heartbeat (`None`: not reported,
    /// which counts as still owning everything it was asked to revoke).
    pub owned: Option<&'a Assignment>,
    /// The epoch of the member that currently owns a partition, or `None` when nobody
    /// (other than this member) owns it.
    pub owner_epoch: &'a dyn Fn(Uuid, i32) -> Option<i32>,
}

impl Reconcile<'_> {
    /// The member after this step: unchanged when it cannot progress yet.
    pub fn next(&self, member: &ConsumerMember) -> ConsumerMember {
        match member.state {
            MemberState::Stable => {
                if member.member_epoch == self.target_epoch {
                    member.clone()
                } else {
                    self.step(member, member.member_epoch)
                }
            }
            MemberState::UnrevokedPartitions => {
                if self.still_owns(&member.pending_revocation) {
                    member.clone()
                } else {
                    // Revocation acknowledged: the member moves to the next epoch.
                    self.step(member, member.member_epoch + 1)
                }
            }
            MemberState::UnreleasedPartitions => self.step(member, member.member_epoch),
        }
    }

    /// True if the member reported (or may still hold, when it reported nothing) any of
    /// `partitions`.
    fn still_owns(&self, partitions: &Assignment) -> bool {
        let Some(owned) = self.owned else {
            return true;
        };
        owned.iter().any(|(topic, ps)| {
            partitions
                .get(topic)
                .is_some_and(|pending| ps.iter().any(|p| pending.contains(p)))
        })
    }

    fn step(&self, member: &ConsumerMember, epoch: i32) -> ConsumerMember {
        let mut kept = Assignment::new();
        let mut revoke = Assignment::new();
        let mut add = Assignment::new();
        let mut unreleased = false;
        let topics: std::collections::BTreeSet<Uuid> = self
            .target
            .keys()
            .chain(member.assigned.keys())
            .copied()
            .collect();
        for topic in topics {
            let empty = Default::default();
            let target = self.target.get(&topic).unwrap_or(&empty);
            let current = member.assigned.get(&topic).unwrap_or(&empty);
            for &p in current {
                if target.contains(&p) {
                    kept.entry(topic).or_default().insert(p);
                } else {
                    revoke.entry(topic).or_default().insert(p);
                }
            }
            for &p in target {
                if current.contains(&p) {
                    continue;
                }
                if (self.owner_epoch)(topic, p).is_some() {
                    unreleased = true;
                } else {
                    add.entry(topic).or_default().insert(p);
                }
            }
        }
        let mut next = member.clone();
        if !revoke.is_empty() && self.still_owns(&revoke) {
            // Revoke first, staying at the current epoch; nothing new until acknowledged.
            next.state = MemberState::UnrevokedPartitions;
            next.set_epoch(epoch);
            next.assigned = kept;
            next.pending_revocation = revoke;
            return next;
        }
        for (topic, ps) in add {
            kept.entry(topic).or_default().extend(ps);
        }
        next.state = if unreleased {
            MemberState::UnreleasedPartitions
        } else {
            MemberState::Stable
        };
        next.set_epoch(self.target_epoch);
        next.assigned = kept;
        next.pending_revocation = Assignment::new();
        next
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::BTreeSet;

    fn topic() -> Uuid {
        Uuid::from_u128(7)
    }

    fn a(ps: &[i32]) -> Assignment {
        if ps.is_empty() {
            return Assignment::new();
        }
        Assignment::from([(topic(), ps.iter().copied().collect::<BTreeSet<i32>>())])
    }

    fn member(epoch: i32, assigned: &[i32]) -> ConsumerMember {
        let mut m = ConsumerMember::new("m", 0);
        m.member_epoch = epoch;
        m.previous_member_epoch = epoch - 1;
        m.assigned = a(assigned);
        m
    }

    fn nobody(_: Uuid, _: i32) -> Option<i32> {
        None
    }

    #[test]
    fn a_stable_member_at_the_target_epoch_is_unchanged() {
        let m = member(3, &[0, 1]);
        let target = a(&[0, 1]);
        let next = Reconcile {
            target_epoch: 3,
            target: &target,
            owned: None,
            owner_epoch: &nobody,
        }
        .next(&m);
        assert_eq!(next, m);
    }

    #[test]
    fn new_free_partitions_are_given_at_once_with_the_target_epoch() {
        let m = member(3, &[0]);
        let target = a(&[0, 1, 2]);
        let next = Reconcile {
            target_epoch: 4,
            target: &target,
            owned: None,
            owner_epoch: &nobody,
        }
        .next(&m);
        assert_eq!(next.assigned, a(&[0, 1, 2]));
        assert_eq!((next.member_epoch, next.previous_member_epoch), (4, 3));
        assert_eq!(next.state, MemberState::Stable);
    }

    #[test]
    fn partitions_to_lose_are_revoked_first_at_the_same_epoch() {
        let m = member(3, &[0, 1, 2]);
        let target = a(&[0, 3]);
        let owned = a(&[0, 1, 2]);
        let next = Reconcile {
            target_epoch: 4,
            target: &target,
            owned: Some(&owned),
            owner_epoch: &nobody,
        }
        .next(&m);
        assert_eq!(next.state, MemberState::UnrevokedPartitions);
        assert_eq!(next.member_epoch, 3, "no new epoch before the revocation");
        assert_eq!(next.assigned, a(&[0]), "nothing new while revoking");
        assert_eq!(next.pending_revocation, a(&[1, 2]));

        // Still reporting partition 1: no progress.
        let owned = a(&[0, 1]);
        let waiting = Reconcile {
            target_epoch: 4,
            target: &target,
            owned: Some(&owned),
            owner_epoch: &nobody,
        }
        .next(&next);
        assert_eq!(waiting, next);

        // Revoked: the next epoch, with the new partition.
        let owned = a(&[0]);
        let done = Reconcile {
            target_epoch: 4,
            target: &target,
            owned: Some(&owned),
            owner_epoch: &nobody,
        }
        .next(&next);
        assert_eq!(done.state, MemberState::Stable);
        assert_eq!(done.member_epoch, 4);
        assert_eq!(done.assigned, a(&[0, 3]));
        assert!(done.pending_revocation.is_empty());
    }

    #[test]
    fn a_member_that_already_dropped_what_it_loses_skips_the_revocation() {
        let m = member(3, &[0, 1]);
        let target = a(&[0]);
        let owned = a(&[0]);
        let next = Reconcile {
            target_epoch: 4,
            target: &target,
            owned: Some(&owned),
            owner_epoch: &nobody,
        }
        .next(&m);
        assert_eq!(next.state, MemberState::Stable);
        assert_eq!((next.member_epoch, next.assigned.clone()), (4, a(&[0])));
    }

    #[test]
    fn a_partition_another_member_still_owns_is_held_back() {
        let m = member(3, &[0]);
        let target = a(&[0, 1]);
        let owner = |_: Uuid, p: i32| (p == 1).then_some(3);
        let next = Reconcile {
            target_epoch: 4,
            target: &target,
            owned: None,
            owner_epoch: &owner,
        }
        .next(&m);
        assert_eq!(next.state, MemberState::UnreleasedPartitions);
        assert_eq!((next.member_epoch, next.assigned.clone()), (4, a(&[0])));

        // Released by its owner: given on the next heartbeat.
        let later = Reconcile {
            target_epoch: 4,
            target: &target,
            owned: None,
            owner_epoch: &nobody,
        }
        .next(&next);
        assert_eq!(later.state, MemberState::Stable);
        assert_eq!(later.assigned, a(&[0, 1]));
    }
}
