//! The reassignment planner: new replica lists that spread every topic's replicas and
//! preferred leaders evenly over a set of brokers, as a pure function of the current
//! assignment, so the rules are unit-tested without a cluster. Used after a scale-up (spread
//! onto the new brokers) and before a scale-down (move everything off the brokers that go).
//!
//! Rules, in order (each step moves as little as it can):
//! 1. Replicas on brokers outside the set are moved onto it (draining before a scale-down).
//!    A topic with more replicas than the set has brokers cannot be placed: the whole plan is
//!    refused ([`PlanError`]) and nothing moves.
//! 2. Each topic's replicas are spread so that no two brokers differ by more than one (a new
//!    broker gets its share of every topic, as Kafka's placement does for a new topic).
//! 3. Then the brokers' totals, moving only replicas whose move keeps rule 2.
//! 4. Preferred leaders (the first replica) are chosen among each partition's replicas so that
//!    leaders spread per topic and in total; a partition keeps its leader when that is fair.
//!    Reordering moves no data.
//!
//! Racks: a move never lowers the number of distinct racks a partition spans, and a replica
//! moved off a drained broker goes to the rack least used by the partition.

use std::collections::{BTreeMap, BTreeSet};

/// A broker of the target set.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Broker {
    /// Node id.
    pub id: i32,
    /// `broker.rack`, if set.
    pub rack: Option<String>,
}

/// One partition's replicas, preferred leader first.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Assignment {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
    /// Replica node ids, preferred leader first.
    pub replicas: Vec<i32>,
}

/// Why no plan can be made.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PlanError {
    /// A topic has more replicas than there are brokers to hold them.
    #[error(
        "topic {topic} has replication factor {replication_factor} but only {brokers} brokers would remain"
    )]
    ReplicationFactorTooHigh {
        /// The topic.
        topic: String,
        /// Its partitions' largest replica count.
        replication_factor: usize,
        /// How many brokers the set has.
        brokers: usize,
    },
}

/// The new assignment of every partition whose replicas or preferred leader change, in topic
/// and partition order, to spread `current` over `brokers` by the rules of this module.
/// Partitions that keep their list are left out; an empty plan means balanced already.
pub fn plan(brokers: &[Broker], current: &[Assignment]) -> Result<Vec<Assignment>, PlanError> {
    let ids: Vec<i32> = brokers
        .iter()
        .map(|b| b.id)
        .collect::<BTreeSet<_>>()
        .into_iter()
        .collect();
    let rack: BTreeMap<i32, Option<String>> =
        brokers.iter().map(|b| (b.id, b.rack.clone())).collect();
    for a in current {
        if a.replicas.len() > ids.len() {
            return Err(PlanError::ReplicationFactorTooHigh {
                topic: a.topic.clone(),
                replication_factor: a.replicas.len(),
                brokers: ids.len(),
            });
        }
    }
    let mut order: Vec<usize> = (0..current.len()).collect();
    order.sort_by(|&x, &y| {
        (&current[x].topic, current[x].partition).cmp(&(&current[y].topic, current[y].partition))
    });
    let mut state = State {
        ids: &ids,
        rack: &rack,
        topics: order.iter().map(|&i| current[i].topic.clone()).collect(),
        replicas: order.iter().map(|&i| current[i].replicas.clone()).collect(),
    };
    state.drain();
    let topics: BTreeSet<String> = state.topics.iter().cloned().collect();
    for topic in &topics {
        state.balance_topic(topic);
    }
    state.balance_totals();
    state.choose_leaders();
    Ok(order
        .iter()
        .zip(state.replicas)
        .filter(|(&i, replicas)| current[i].replicas != *replicas)
        .map(|(&i, replicas)| Assignment {
            topic: current[i].topic.clone(),
            partition: current[i].partition,
            replicas,
        })
        .collect())
}

/// The partitions (sorted by topic and partition) being planned.
struct State<'a> {
    ids: &'a [i32],
    rack: &'a BTreeMap<i32, Option<String>>,
    topics: Vec<String>,
    replicas: Vec<Vec<i32>>,
}

impl State<'_> {
    /// Replica count per broker of the set, over the partitions `filter` keeps.
    fn counts(&self, filter: impl Fn(usize) -> bool) -> BTreeMap<i32, usize> {
        let mut counts: BTreeMap<i32, usize> = self.ids.iter().map(|&b| (b, 0)).collect();
        for (p, replicas) in self.replicas.iter().enumerate() {
            if filter(p) {
                for r in replicas {
                    if let Some(c) = counts.get_mut(r) {
                        *c += 1;
                    }
                }
            }
        }
        counts
    }

    fn distinct_racks(&self, replicas: &[i32]) -> usize {
        replicas
            .iter()
            .filter_map(|r| self.rack.get(r).cloned().flatten())
            .collect::<BTreeSet<_>>()
            .len()
    }

    /// Whether partition `p` may move its replica on `from` to `to`: `to` holds none of it
    /// yet, and the partition spans no fewer racks after.
    fn may_move(&self, p: usize, from: i32, to: i32) -> bool {
        let replicas = &self.replicas[p];
        if replicas.contains(&to) {
            return false;
        }
        let after: Vec<i32> = replicas
            .iter()
            .map(|&r| if r == from { to } else { r })
            .collect();
        self.distinct_racks(&after) >= self.distinct_racks(replicas)
    }

    fn replace(&mut self, p: usize, from: i32, to: i32) {
        for r in self.replicas[p].iter_mut() {
            if *r == from {
                *r = to;
            }
        }
    }

    /// Rule 1: replicas on brokers outside the set go to the broker (not yet a replica) whose
    /// rack the partition uses least, then holding fewest of the topic, then fewest in total.
    fn drain(&mut self) {
        for p in 0..self.replicas.len() {
            let gone: Vec<i32> = self.replicas[p]
                .iter()
                .copied()
                .filter(|r| !self.ids.contains(r))
                .collect();
            for from in gone {
                let topic = self.topics[p].clone();
                let topic_counts = self.counts(|q| self.topics[q] == topic);
                let totals = self.counts(|_| true);
                let rack_use = |b: i32| {
                    let mine = self.rack.get(&b).cloned().flatten();
                    self.replicas[p]
                        .iter()
                        .filter(|&&r| r != from)
                        .filter(|r| mine.is_some() && self.rack.get(r).cloned().flatten() == mine)
                        .count()
                };
                let to = self
                    .ids
                    .iter()
                    .copied()
                    .filter(|b| !self.replicas[p].contains(b))
                    .min_by_key(|&b| (rack_use(b), topic_counts[&b], totals[&b], b));
                if let Some(to) = to {
                    self.replace(p, from, to);
                }
            }
        }
    }

    /// One move from the most to the least loaded broker (by `counts` over the partitions
    /// `filter` keeps) allowed by `allowed`; false when the counts are within one of each
    /// other or no partition can move.
    fn move_one(
        &mut self,
        filter: &dyn Fn(&State<'_>, usize) -> bool,
        counts: &BTreeMap<i32, usize>,
        allowed: &dyn Fn(&State<'_>, usize, i32, i32) -> bool,
    ) -> bool {
        // Sources from the most loaded down, destinations from the least loaded up: the first
        // pair more than one apart with a partition that may move.
        let mut by_load: Vec<(usize, i32)> = counts.iter().map(|(&b, &c)| (c, b)).collect();
        by_load.sort_unstable();
        for &(high, from) in by_load.iter().rev() {
            for &(low, to) in &by_load {
                if high <= low + 1 {
                    break;
                }
                let candidate = (0..self.replicas.len()).find(|&p| {
                    filter(self, p)
                        && self.replicas[p].contains(&from)
                        && self.may_move(p, from, to)
                        && allowed(self, p, from, to)
                });
                if let Some(p) = candidate {
                    self.replace(p, from, to);
                    return true;
                }
            }
        }
        false
    }

    /// Rule 2: `topic`'s replicas within one of each other per broker.
    fn balance_topic(&mut self, topic: &str) {
        let filter = |s: &State<'_>, p: usize| s.topics[p] == topic;
        // Each move lowers the spread; the bound only guards against a bug looping forever.
        for _ in 0..self.replicas.len() * self.ids.len().max(1) {
            let counts = self.counts(|p| self.topics[p] == topic);
            if !self.move_one(&filter, &counts, &|_, _, _, _| true) {
                break;
            }
        }
    }

    /// Rule 3: totals within one of each other, never unbalancing a topic (the replica leaves
    /// a broker above the topic's floor for one below its ceiling).
    fn balance_totals(&mut self) {
        let keeps_topic_balance = |s: &State<'_>, p: usize, from: i32, to: i32| {
            let topic = &s.topics[p];
            let counts = s.counts(|q| s.topics[q] == *topic);
            let total: usize = counts.values().sum();
            let n = s.ids.len().max(1);
            let floor = total / n;
            let ceil = total.div_ceil(n);
            counts[&from] > floor && counts[&to] < ceil
        };
        for _ in 0..self.replicas.len() * self.ids.len().max(1) {
            let counts = self.counts(|_| true);
            if !self.move_one(&|_, _| true, &counts, &keeps_topic_balance) {
                break;
            }
        }
    }

    /// Rule 4: a preferred leader per partition. First every partition whose leader is still
    /// within its fair share keeps it; then the others take the replica leading the fewest of
    /// the topic, then the fewest in total; then leaderships move between the replicas of a
    /// partition while that evens the counts out.
    ///
    /// A fair share of `k` leaders over `n` brokers is `k / n` each, and one more for only
    /// `k % n` of them: letting every broker keep up to the ceiling would let three old
    /// brokers keep two leaders each of a 6-partition topic and leave two new ones none.
    fn choose_leaders(&mut self) {
        let n = self.ids.len().max(1);
        let mut per_topic: BTreeMap<String, usize> = BTreeMap::new();
        for t in &self.topics {
            *per_topic.entry(t.clone()).or_default() += 1;
        }
        let mut total = Share::new(self.replicas.len(), n);
        let mut topic_shares: BTreeMap<String, Share> = per_topic
            .iter()
            .map(|(t, &k)| (t.clone(), Share::new(k, n)))
            .collect();
        let mut chosen: Vec<Option<i32>> = vec![None; self.replicas.len()];
        let partitions = || self.replicas.iter().zip(&self.topics);
        for ((replicas, topic), slot) in partitions().zip(chosen.iter_mut()) {
            let Some(&leader) = replicas.first() else {
                continue;
            };
            let Some(share) = topic_shares.get_mut(topic) else {
                continue;
            };
            if share.may_take(leader) && total.may_take(leader) {
                share.take(leader);
                total.take(leader);
                *slot = Some(leader);
            }
        }
        for ((replicas, topic), slot) in partitions().zip(chosen.iter_mut()) {
            if slot.is_some() {
                continue;
            }
            let Some(share) = topic_shares.get_mut(topic) else {
                continue;
            };
            let best = replicas
                .iter()
                .copied()
                .min_by_key(|&b| (share.count(b), total.count(b), b));
            if let Some(b) = best {
                share.take(b);
                total.take(b);
                *slot = Some(b);
            }
        }
        // Moving a leadership from `l` to another replica `r` of the same partition lowers the
        // topic's spread when `l` leads at least two more of it, or keeps it and lowers the
        // totals' spread; each move lowers (sum of squares per topic, sum of squares in total),
        // so this ends.
        for _ in 0..self.replicas.len().saturating_mul(n).max(1) {
            let mut moved = false;
            for ((replicas, topic), slot) in partitions().zip(chosen.iter_mut()) {
                let Some(l) = *slot else { continue };
                let Some(share) = topic_shares.get_mut(topic) else {
                    continue;
                };
                let better = replicas.iter().copied().find(|&r| {
                    let (tl, tr) = (share.count(l), share.count(r));
                    r != l
                        && (tl >= tr + 2 || (tl == tr + 1 && total.count(l) >= total.count(r) + 2))
                });
                if let Some(r) = better {
                    share.give_back(l);
                    total.give_back(l);
                    share.take(r);
                    total.take(r);
                    *slot = Some(r);
                    moved = true;
                }
            }
            if !moved {
                break;
            }
        }
        for (replicas, leader) in self.replicas.iter_mut().zip(chosen) {
            if let Some(leader) = leader {
                if let Some(i) = replicas.iter().position(|&r| r == leader) {
                    let l = replicas.remove(i);
                    replicas.insert(0, l);
                }
            }
        }
    }
}

/// Leaderships handed out of `k` over `n` brokers: `k / n` each, and `k / n + 1` for at most
/// `k % n` of them.
struct Share {
    floor: usize,
    above_floor: usize,
    taken: BTreeMap<i32, usize>,
}

impl Share {
    fn new(k: usize, n: usize) -> Share {
        Share {
            floor: k / n,
            above_floor: k % n,
            taken: BTreeMap::new(),
        }
    }

    fn count(&self, broker: i32) -> usize {
        self.taken.get(&broker).copied().unwrap_or(0)
    }

    /// Whether `broker` may lead one more and stay within a fair share.
    fn may_take(&self, broker: i32) -> bool {
        let c = self.count(broker);
        let at_ceiling = self.taken.values().filter(|&&t| t > self.floor).count();
        c < self.floor || (c == self.floor && at_ceiling < self.above_floor)
    }

    fn take(&mut self, broker: i32) {
        *self.taken.entry(broker).or_default() += 1;
    }

    fn give_back(&mut self, broker: i32) {
        if let Some(c) = self.taken.get_mut(&broker) {
            *c = c.saturating_sub(1);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn brokers(ids: std::ops::Range<i32>) -> Vec<Broker> {
        ids.map(|id| Broker { id, rack: None }).collect()
    }

    /// `partitions` partitions of `topic` with `rf` replicas placed round-robin over `on`, as
    /// Kafka places a new topic.
    fn topic(name: &str, partitions: i32, rf: usize, on: &[i32]) -> Vec<Assignment> {
        (0..partitions)
            .map(|p| Assignment {
                topic: name.into(),
                partition: p,
                replicas: (0..rf).map(|i| on[(p as usize + i) % on.len()]).collect(),
            })
            .collect()
    }

    fn apply(current: &[Assignment], moves: &[Assignment]) -> Vec<Assignment> {
        current
            .iter()
            .map(|a| {
                moves
                    .iter()
                    .find(|m| m.topic == a.topic && m.partition == a.partition)
                    .cloned()
                    .unwrap_or_else(|| a.clone())
            })
            .collect()
    }

    fn spread(counts: impl Iterator<Item = usize>) -> usize {
        let v: Vec<usize> = counts.collect();
        v.iter().max().unwrap_or(&0) - v.iter().min().unwrap_or(&0)
    }

    fn replica_counts(after: &[Assignment], ids: &[i32], topic: Option<&str>) -> Vec<usize> {
        ids.iter()
            .map(|b| {
                after
                    .iter()
                    .filter(|a| topic.is_none_or(|t| a.topic == t))
                    .filter(|a| a.replicas.contains(b))
                    .count()
            })
            .collect()
    }

    fn leader_counts(after: &[Assignment], ids: &[i32], topic: Option<&str>) -> Vec<usize> {
        ids.iter()
            .map(|b| {
                after
                    .iter()
                    .filter(|a| topic.is_none_or(|t| a.topic == t))
                    .filter(|a| a.replicas.first() == Some(b))
                    .count()
            })
            .collect()
    }

    fn uneven_topics() -> Vec<Assignment> {
        let old = [0, 1, 2];
        let mut all = topic("orders", 6, 3, &old);
        all.extend(topic("audit", 1, 3, &old));
        all.extend(topic("clicks", 10, 2, &old));
        all.extend(topic("__consumer_offsets", 5, 3, &old));
        all
    }

    #[test]
    fn scale_up_spreads_every_topic_and_leaders_onto_the_new_brokers() {
        let current = uneven_topics();
        let ids: Vec<i32> = (0..5).collect();
        let moves = plan(&brokers(0..5), &current).expect("plan");
        let after = apply(&current, &moves);
        for t in ["orders", "clicks", "__consumer_offsets"] {
            assert!(
                spread(replica_counts(&after, &ids, Some(t)).into_iter()) <= 1,
                "{t}: {:?}",
                replica_counts(&after, &ids, Some(t))
            );
            assert!(
                spread(leader_counts(&after, &ids, Some(t)).into_iter()) <= 1,
                "{t} leaders: {:?}",
                leader_counts(&after, &ids, Some(t))
            );
        }
        assert!(
            spread(replica_counts(&after, &ids, None).into_iter()) <= 1,
            "{:?}",
            replica_counts(&after, &ids, None)
        );
        assert!(
            spread(leader_counts(&after, &ids, None).into_iter()) <= 1,
            "{:?}",
            leader_counts(&after, &ids, None)
        );
        for (a, b) in current.iter().zip(&after) {
            assert_eq!(a.replicas.len(), b.replicas.len(), "{a:?} -> {b:?}");
            let distinct: BTreeSet<i32> = b.replicas.iter().copied().collect();
            assert_eq!(distinct.len(), b.replicas.len(), "duplicate replica: {b:?}");
        }
        // Minimal: every replica that moved went to a new broker; the old ones only lost some.
        for (a, b) in current.iter().zip(&after) {
            for r in &b.replicas {
                assert!(a.replicas.contains(r) || *r >= 3, "{a:?} -> {b:?}");
            }
        }
    }

    #[test]
    fn a_balanced_cluster_gets_an_empty_plan() {
        let current = topic("t", 6, 3, &[0, 1, 2]);
        assert_eq!(plan(&brokers(0..3), &current), Ok(vec![]));
        let moves = plan(&brokers(0..5), &uneven_topics()).expect("plan");
        let after = apply(&uneven_topics(), &moves);
        assert_eq!(plan(&brokers(0..5), &after), Ok(vec![]), "a plan is stable");
    }

    #[test]
    fn scale_down_moves_every_replica_off_the_brokers_that_go() {
        let ids: Vec<i32> = (0..5).collect();
        let mut current = topic("orders", 10, 3, &ids);
        current.extend(topic("audit", 3, 1, &[3, 4, 4]));
        let moves = plan(&brokers(0..3), &current).expect("plan");
        let after = apply(&current, &moves);
        for a in &after {
            assert!(a.replicas.iter().all(|r| *r < 3), "{a:?}");
        }
        let left = [0, 1, 2];
        assert!(spread(replica_counts(&after, &left, Some("orders")).into_iter()) <= 1);
        assert!(spread(replica_counts(&after, &left, None).into_iter()) <= 1);
    }

    #[test]
    fn a_topic_with_more_replicas_than_brokers_left_refuses_the_whole_plan() {
        let current = topic("wide", 3, 3, &[0, 1, 2]);
        assert_eq!(
            plan(&brokers(0..2), &current),
            Err(PlanError::ReplicationFactorTooHigh {
                topic: "wide".into(),
                replication_factor: 3,
                brokers: 2
            })
        );
        assert_eq!(
            plan(&brokers(0..2), &current).unwrap_err().to_string(),
            "topic wide has replication factor 3 but only 2 brokers would remain"
        );
    }

    #[test]
    fn racks_stay_spread_when_replicas_move() {
        let racked: Vec<Broker> = (0..6)
            .map(|id| Broker {
                id,
                rack: Some(format!("r{}", id % 3)),
            })
            .collect();
        let current = topic("orders", 12, 3, &[0, 1, 2]);
        let moves = plan(&racked, &current).expect("plan");
        assert!(!moves.is_empty());
        let after = apply(&current, &moves);
        for a in &after {
            let racks: BTreeSet<i32> = a.replicas.iter().map(|r| r % 3).collect();
            assert_eq!(racks.len(), 3, "{a:?}");
        }
        let ids: Vec<i32> = (0..6).collect();
        assert!(spread(replica_counts(&after, &ids, None).into_iter()) <= 1);
        // Draining 3..5 puts each replica back on its own rack's remaining broker.
        let wide = topic("wide", 6, 3, &[3, 4, 5]);
        let moves = plan(&racked[..3], &wide).expect("plan");
        for a in apply(&wide, &moves) {
            let racks: BTreeSet<i32> = a.replicas.iter().map(|r| r % 3).collect();
            assert_eq!(racks.len(), 3, "{a:?}");
        }
    }

    #[test]
    fn leaders_move_by_reordering_without_moving_data() {
        let current: Vec<Assignment> = (0..6)
            .map(|p| Assignment {
                topic: "t".into(),
                partition: p,
                replicas: vec![0, 1, 2],
            })
            .collect();
        let moves = plan(&brokers(0..3), &current).expect("plan");
        let after = apply(&current, &moves);
        assert_eq!(leader_counts(&after, &[0, 1, 2], None), vec![2, 2, 2]);
        for a in &after {
            let set: BTreeSet<i32> = a.replicas.iter().copied().collect();
            assert_eq!(set, BTreeSet::from([0, 1, 2]));
        }
        assert_eq!(moves.len(), 4, "two partitions keep leader 0: {moves:?}");
    }
}
