//! The server-side assignors of consumer groups (KIP-848, `group.consumer.assignors`):
//! `uniform` (the default) and `range`. Pure functions from the members' subscriptions, the
//! subscribed topics' partition counts and the previous target assignment to the next target
//! assignment. Each gives every partition of a subscribed topic to exactly one member that
//! subscribes to it.

use std::collections::{BTreeMap, BTreeSet};

use uuid::Uuid;

use super::Assignment;

/// The assignors served, by the names clients use in `group.remote.assignor`; the first is
/// the default, as in Kafka's `group.consumer.assignors` (`uniform,range`).
pub const ASSIGNORS: [&str; 2] = ["uniform", "range"];

/// What an assignor knows of one member.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemberSpec {
    /// The ids of the existing topics it subscribes to.
    pub topics: BTreeSet<Uuid>,
}

/// Runs the assignor named `name` (one of [`ASSIGNORS`]; anything else is `uniform`).
pub fn assign(
    name: &str,
    members: &BTreeMap<String, MemberSpec>,
    partitions: &BTreeMap<Uuid, i32>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    match name {
        "range" => range(members, partitions),
        _ => uniform(members, partitions, previous),
    }
}

/// Kafka's `uniform` contract: as balanced as the subscriptions allow (two members that can
/// take the same partitions end up at most one partition apart) and sticky (a member keeps
/// what it had in the previous target as far as balance allows, so a rebalance moves as few
/// partitions as it can).
///
/// Method: every member keeps its previous partitions that still exist and that it still
/// subscribes to; the partitions left are given one by one to the least loaded member that
/// subscribes to them; then, while some member has two or more partitions more than a member
/// that could take one of them, one moves. Each move shrinks the spread, so this ends.
pub fn uniform(
    members: &BTreeMap<String, MemberSpec>,
    partitions: &BTreeMap<Uuid, i32>,
    previous: &BTreeMap<String, Assignment>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    let mut taken: BTreeSet<(Uuid, i32)> = BTreeSet::new();
    for (member, spec) in members {
        let Some(before) = previous.get(member) else {
            continue;
        };
        for (topic, ps) in before {
            let Some(&count) = partitions.get(topic) else {
                continue;
            };
            if !spec.topics.contains(topic) {
                continue;
            }
            for &p in ps {
                if p < count && taken.insert((*topic, p)) {
                    add(&mut out, member, *topic, p);
                }
            }
        }
    }

    for (&topic, &count) in partitions {
        for p in 0..count {
            if taken.contains(&(topic, p)) {
                continue;
            }
            let least = members
                .iter()
                .filter(|(_, spec)| spec.topics.contains(&topic))
                .map(|(m, _)| m)
                .min_by_key(|m| (size(&out, m), (*m).clone()));
            if let Some(m) = least.cloned() {
                taken.insert((topic, p));
                add(&mut out, &m, topic, p);
            }
        }
    }

    // Even out: move from the most loaded member to a member at least two below it that
    // subscribes to one of its topics.
    loop {
        let mut moved = false;
        let mut by_load: Vec<String> = out.keys().cloned().collect();
        by_load.sort_by_key(|m| std::cmp::Reverse(size(&out, m)));
        'givers: for giver in &by_load {
            let load = size(&out, giver);
            let mut takers: Vec<&String> = by_load
                .iter()
                .filter(|m| size(&out, m) + 2 <= load)
                .collect();
            takers.sort_by_key(|m| (size(&out, m), (*m).clone()));
            for taker in takers {
                let Some(spec) = members.get(taker) else {
                    continue;
                };
                // The giver's highest partition of a topic the taker subscribes to.
                let candidate = out.get(giver).and_then(|a| {
                    a.iter()
                        .filter(|(t, _)| spec.topics.contains(t))
                        .flat_map(|(t, ps)| ps.iter().map(move |p| (*t, *p)))
                        .max_by_key(|(_, p)| *p)
                });
                if let Some((topic, p)) = candidate {
                    remove(&mut out, giver, topic, p);
                    add(&mut out, taker, topic, p);
                    moved = true;
                    break 'givers;
                }
            }
        }
        if !moved {
            return out;
        }
    }
}

/// Kafka's `range` contract: for each topic, its subscribers in member id order get
/// contiguous ranges of its partitions, the first `partitions % members` of them one more.
/// Members that subscribe to the same topics with the same partition counts get the same
/// partition numbers of each (co-partitioning, which joins rely on).
pub fn range(
    members: &BTreeMap<String, MemberSpec>,
    partitions: &BTreeMap<Uuid, i32>,
) -> BTreeMap<String, Assignment> {
    let mut out: BTreeMap<String, Assignment> = members
        .keys()
        .map(|m| (m.clone(), Assignment::new()))
        .collect();
    for (&topic, &count) in partitions {
        let subscribers: Vec<&String> = members
            .iter()
            .filter(|(_, spec)| spec.topics.contains(&topic))
            .map(|(m, _)| m)
            .collect();
        let Ok(n) = i32::try_from(subscribers.len()) else {
            continue;
        };
        if n == 0 {
            continue;
        }
        let (quota, extra) = (count / n, count % n);
        let mut next = 0;
        for (i, m) in (0..n).zip(subscribers) {
            let share = quota + i32::from(i < extra);
            for p in next..next + share {
                add(&mut out, m, topic, p);
            }
            next += share;
        }
    }
    out
}

fn size(out: &BTreeMap<String, Assignment>, member: &str) -> usize {
    out.get(member)
        .map_or(0, |a| a.values().map(BTreeSet::len).sum())
}

fn add(out: &mut BTreeMap<String, Assignment>, member: &str, topic: Uuid, p: i32) {
    out.entry(member.to_string())
        .or_default()
        .entry(topic)
        .or_default()
        .insert(p);
}

fn remove(out: &mut BTreeMap<String, Assignment>, member: &str, topic: Uuid, p: i32) {
    if let Some(a) = out.get_mut(member) {
        if let Some(ps) = a.get_mut(&topic) {
            ps.remove(&p);
            if ps.is_empty() {
                a.remove(&topic);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(n: u128) -> Uuid {
        Uuid::from_u128(n)
    }

    fn spec(topics: &[u128]) -> MemberSpec {
        MemberSpec {
            topics: topics.iter().map(|n| t(*n)).collect(),
        }
    }

    fn members(list: &[(&str, &[u128])]) -> BTreeMap<String, MemberSpec> {
        list.iter()
            .map(|(m, ts)| (m.to_string(), spec(ts)))
            .collect()
    }

    /// Every partition of every subscribed topic exactly once, to a subscriber.
    fn check_complete(
        members: &BTreeMap<String, MemberSpec>,
        partitions: &BTreeMap<Uuid, i32>,
        out: &BTreeMap<String, Assignment>,
    ) {
        let mut seen = BTreeSet::new();
        for (m, a) in out {
            for (topic, ps) in a {
                assert!(members[m].topics.contains(topic), "{m} got {topic}");
                for p in ps {
                    assert!(seen.insert((*topic, *p)), "{topic}-{p} twice");
                }
            }
        }
        let subscribed: BTreeSet<Uuid> = members.values().flat_map(|s| s.topics.clone()).collect();
        let expected: usize = partitions
            .iter()
            .filter(|(topic, _)| subscribed.contains(topic))
            .map(|(_, n)| usize::try_from(*n).unwrap_or(0))
            .sum();
        assert_eq!(seen.len(), expected);
    }

    fn loads(out: &BTreeMap<String, Assignment>) -> Vec<usize> {
        out.keys().map(|m| size(out, m)).collect()
    }

    #[test]
    fn uniform_balances_one_topic_over_three_members() {
        let ms = members(&[("a", &[1]), ("b", &[1]), ("c", &[1])]);
        let ps = BTreeMap::from([(t(1), 7)]);
        let out = uniform(&ms, &ps, &BTreeMap::new());
        check_complete(&ms, &ps, &out);
        let l = loads(&out);
        assert!(
            l.iter().max() <= Some(&3) && l.iter().min() >= Some(&2),
            "{l:?}"
        );
    }

    #[test]
    fn uniform_is_sticky_when_a_member_joins() {
        let ps = BTreeMap::from([(t(1), 6)]);
        let two = members(&[("a", &[1]), ("b", &[1])]);
        let before = uniform(&two, &ps, &BTreeMap::new());
        let three = members(&[("a", &[1]), ("b", &[1]), ("c", &[1])]);
        let after = uniform(&three, &ps, &before);
        check_complete(&three, &ps, &after);
        assert_eq!(loads(&after), vec![2, 2, 2]);
        // a and b only lost partitions; they kept two of their own each.
        for m in ["a", "b"] {
            let kept = after[m][&t(1)].is_subset(&before[m][&t(1)]);
            assert!(kept, "{m}: {:?} → {:?}", before[m], after[m]);
        }
    }

    #[test]
    fn uniform_gives_a_leaving_members_partitions_to_the_others_only() {
        let ps = BTreeMap::from([(t(1), 6)]);
        let three = members(&[("a", &[1]), ("b", &[1]), ("c", &[1])]);
        let before = uniform(&three, &ps, &BTreeMap::new());
        let two = members(&[("a", &[1]), ("b", &[1])]);
        let after = uniform(&two, &ps, &before);
        check_complete(&two, &ps, &after);
        assert_eq!(loads(&after), vec![3, 3]);
        for m in ["a", "b"] {
            assert!(before[m][&t(1)].is_subset(&after[m][&t(1)]));
        }
    }

    #[test]
    fn uniform_respects_different_subscriptions() {
        // a: topics 1 and 2; b: topic 1 only; c: topic 2 only.
        let ms = members(&[("a", &[1, 2]), ("b", &[1]), ("c", &[2])]);
        let ps = BTreeMap::from([(t(1), 4), (t(2), 4), (t(3), 5)]);
        let out = uniform(&ms, &ps, &BTreeMap::new());
        check_complete(&ms, &ps, &out);
        let l = loads(&out);
        assert!(
            l.iter().max().copied().unwrap_or(0) - l.iter().min().copied().unwrap_or(0) <= 1,
            "{l:?}"
        );
    }

    #[test]
    fn uniform_drops_partitions_of_topics_that_shrank_or_went() {
        let ms = members(&[("a", &[1])]);
        let previous = BTreeMap::from([(
            "a".to_string(),
            Assignment::from([
                (t(1), BTreeSet::from([0, 1, 5])),
                (t(9), BTreeSet::from([0])),
            ]),
        )]);
        let ps = BTreeMap::from([(t(1), 3)]);
        let out = uniform(&ms, &ps, &previous);
        assert_eq!(
            out["a"],
            Assignment::from([(t(1), BTreeSet::from([0, 1, 2]))])
        );
    }

    #[test]
    fn range_gives_contiguous_copartitioned_ranges() {
        let ms = members(&[("a", &[1, 2]), ("b", &[1, 2]), ("c", &[1, 2])]);
        let ps = BTreeMap::from([(t(1), 7), (t(2), 7)]);
        let out = range(&ms, &ps);
        check_complete(&ms, &ps, &out);
        assert_eq!(out["a"][&t(1)], BTreeSet::from([0, 1, 2]));
        assert_eq!(out["b"][&t(1)], BTreeSet::from([3, 4]));
        assert_eq!(out["c"][&t(1)], BTreeSet::from([5, 6]));
        for m in ["a", "b", "c"] {
            assert_eq!(out[m][&t(1)], out[m][&t(2)], "co-partitioned");
        }
    }

    #[test]
    fn more_members_than_partitions_leaves_some_empty() {
        let ms = members(&[("a", &[1]), ("b", &[1]), ("c", &[1])]);
        let ps = BTreeMap::from([(t(1), 2)]);
        for out in [uniform(&ms, &ps, &BTreeMap::new()), range(&ms, &ps)] {
            check_complete(&ms, &ps, &out);
            let mut l = loads(&out);
            l.sort_unstable();
            assert_eq!(l, vec![0, 1, 1]);
        }
    }
}
