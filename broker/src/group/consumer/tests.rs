//! The consumer group protocol driven by model clients, with logical time: the invariant a
//! user relies on (no partition is ever owned by two members) is checked after every
//! heartbeat.

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;
use uuid::Uuid;

use super::*;

const TOPIC: &str = "events";

fn topic_id() -> Uuid {
    Uuid::from_u128(42)
}

/// A model of the Java consumer's side: it owns what its last assignment said, dropping
/// partitions at once when they are revoked.
struct Client {
    id: String,
    epoch: i32,
    owned: Assignment,
}

struct World {
    group: ConsumerGroup,
    partitions: i32,
    /// Topics besides `TOPIC`, by name: their id and partition count.
    others: BTreeMap<String, (Uuid, i32)>,
    now: i64,
    config: ConsumerGroupConfig,
    clients: BTreeMap<String, Client>,
}

impl World {
    fn new(partitions: i32) -> World {
        World {
            group: ConsumerGroup::new("g"),
            partitions,
            others: BTreeMap::new(),
            now: 1_000,
            config: ConsumerGroupConfig::default(),
            clients: BTreeMap::new(),
        }
    }

    fn send(&mut self, hb: Heartbeat) -> Result<HeartbeatReply, Refusal> {
        validate_heartbeat("g", &hb, 1)?;
        let cluster = Cluster {
            topics: self.topics(),
        };
        self.group
            .heartbeat(&hb, &cluster, self.now, &self.config, || {
                "generated".to_string()
            })
    }

    fn topics(&self) -> BTreeMap<String, (Uuid, i32)> {
        let mut topics = self.others.clone();
        topics.insert(TOPIC.to_string(), (topic_id(), self.partitions));
        topics
    }

    /// Creates topic `name` with `partitions` partitions.
    fn create(&mut self, name: &str, partitions: i32) {
        let id = Uuid::from_u128(1_000 + self.others.len() as u128);
        self.others.insert(name.to_string(), (id, partitions));
    }

    /// `id` joins subscribing to `names` and `regex`.
    fn join_with(
        &mut self,
        id: &str,
        names: &[&str],
        regex: Option<&str>,
    ) -> Result<HeartbeatReply, Refusal> {
        let reply = self.send(Heartbeat {
            member_id: id.to_string(),
            member_epoch: 0,
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(names.iter().map(|n| n.to_string()).collect()),
            subscribed_topic_regex: regex.map(str::to_string),
            owned: Some(Assignment::new()),
            ..Heartbeat::default()
        })?;
        let mut client = Client {
            id: id.to_string(),
            epoch: 0,
            owned: Assignment::new(),
        };
        apply(&mut client, &reply);
        self.clients.insert(id.to_string(), client);
        self.check_exclusive();
        Ok(reply)
    }

    /// The topics (by name) and partition count that `id` owns.
    fn owned_topics(&self, id: &str) -> BTreeMap<String, usize> {
        let topics = self.topics();
        self.clients[id]
            .owned
            .iter()
            .filter(|(_, ps)| !ps.is_empty())
            .map(|(t, ps)| {
                let name = topics
                    .iter()
                    .find(|(_, (tid, _))| tid == t)
                    .map_or_else(|| format!("deleted {t}"), |(n, _)| n.clone());
                (name, ps.len())
            })
            .collect()
    }
}

/// A cluster whose topics can be listed, as the broker's image is.
struct Cluster {
    topics: BTreeMap<String, (Uuid, i32)>,
}

impl Topics for Cluster {
    fn lookup(&self, name: &str) -> Option<(Uuid, i32)> {
        self.topics.get(name).copied()
    }

    fn names(&self) -> (i64, Vec<String>) {
        (
            self.topics.len() as i64,
            self.topics.keys().cloned().collect(),
        )
    }
}

impl World {
    fn join(&mut self, id: &str) {
        let reply = self
            .send(Heartbeat {
                member_id: id.to_string(),
                member_epoch: 0,
                rebalance_timeout_ms: 30_000,
                subscribed_topic_names: Some(vec![TOPIC.to_string()]),
                owned: Some(Assignment::new()),
                ..Heartbeat::default()
            })
            .unwrap_or_else(|r| panic!("{id} join: {r:?}"));
        let mut client = Client {
            id: id.to_string(),
            epoch: 0,
            owned: Assignment::new(),
        };
        apply(&mut client, &reply);
        self.clients.insert(id.to_string(), client);
        self.check_exclusive();
    }

    /// One heartbeat of `id`, reporting what it owns.
    fn beat(&mut self, id: &str) -> Result<HeartbeatReply, Refusal> {
        let (epoch, owned) = {
            let c = &self.clients[id];
            (c.epoch, c.owned.clone())
        };
        let reply = self.send(Heartbeat {
            member_id: id.to_string(),
            member_epoch: epoch,
            owned: Some(owned),
            ..Heartbeat::default()
        })?;
        if let Some(c) = self.clients.get_mut(id) {
            apply(c, &reply);
        }
        self.check_exclusive();
        Ok(reply)
    }

    /// Heartbeats every client round after round until the group is stable.
    fn settle(&mut self) {
        for _ in 0..10 {
            let ids: Vec<String> = self.clients.keys().cloned().collect();
            for id in ids {
                if let Err(r) = self.beat(&id) {
                    panic!("{id}: {r:?}");
                }
            }
            if self.group.state() == ConsumerGroupState::Stable
                && self
                    .clients
                    .values()
                    .all(|c| c.epoch == self.group.assignment_epoch)
            {
                return;
            }
        }
        panic!("not stable after 10 rounds: {:#?}", self.group);
    }

    fn check_exclusive(&self) {
        let mut seen = BTreeSet::new();
        for c in self.clients.values() {
            for (t, ps) in &c.owned {
                for p in ps {
                    assert!(
                        seen.insert((*t, *p)),
                        "{t}-{p} owned twice (by {} and another)",
                        c.id
                    );
                }
            }
        }
    }

    fn owned_counts(&self) -> Vec<usize> {
        self.clients
            .values()
            .map(|c| c.owned.values().map(BTreeSet::len).sum())
            .collect()
    }

    fn total_owned(&self) -> usize {
        self.owned_counts().iter().sum()
    }
}

fn apply(client: &mut Client, reply: &HeartbeatReply) {
    client.epoch = reply.member_epoch;
    if let Some(a) = &reply.assignment {
        client.owned = a.clone();
    }
}

#[test]
fn members_joining_one_by_one_split_the_partitions_without_ever_sharing_one() {
    let mut w = World::new(6);
    w.join("a");
    w.settle();
    assert_eq!(w.owned_counts(), vec![6]);
    w.join("b");
    w.settle();
    assert_eq!(w.owned_counts(), vec![3, 3]);
    w.join("c");
    w.settle();
    assert_eq!(w.owned_counts(), vec![2, 2, 2]);
    assert_eq!(w.group.state(), ConsumerGroupState::Stable);
}

#[test]
fn a_member_that_leaves_hands_its_partitions_to_the_others() {
    let mut w = World::new(6);
    for id in ["a", "b", "c"] {
        w.join(id);
    }
    w.settle();
    let epoch = w.group.group_epoch;
    let reply = w.send(Heartbeat {
        member_id: "c".to_string(),
        member_epoch: LEAVE_GROUP_MEMBER_EPOCH,
        ..Heartbeat::default()
    });
    assert_eq!(reply.map(|r| r.member_epoch), Ok(LEAVE_GROUP_MEMBER_EPOCH));
    w.clients.remove("c");
    assert!(w.group.group_epoch > epoch);
    w.settle();
    assert_eq!(w.owned_counts(), vec![3, 3]);
    assert_eq!(w.total_owned(), 6);
}

#[test]
fn a_member_that_stops_heartbeating_is_fenced_after_the_session_timeout() {
    let mut w = World::new(4);
    w.join("a");
    w.join("b");
    w.settle();
    w.now += i64::from(w.config.session_timeout_ms) - 1;
    assert!(w.beat("a").is_ok());
    assert!(w.group.tick(w.now).is_empty());
    w.now += 2;
    assert!(w.beat("a").is_ok());
    assert_eq!(w.group.tick(w.now), vec!["b".to_string()]);
    w.clients.remove("b");
    w.settle();
    assert_eq!(w.owned_counts(), vec![4]);
    // The fenced member's next heartbeat is refused; it must rejoin.
    let stale = w.send(Heartbeat {
        member_id: "b".to_string(),
        member_epoch: 3,
        ..Heartbeat::default()
    });
    assert_eq!(
        stale.map_err(|r| r.error),
        Err(ResponseError::UnknownMemberId)
    );
}

#[test]
fn a_member_that_does_not_revoke_within_its_rebalance_timeout_is_fenced() {
    let mut w = World::new(4);
    w.join("a");
    w.settle();
    w.join("b");
    // a heartbeats without reporting what it owns: it keeps partitions pending revocation.
    let reply = w.send(Heartbeat {
        member_id: "a".to_string(),
        member_epoch: w.clients["a"].epoch,
        ..Heartbeat::default()
    });
    assert!(reply.is_ok());
    assert_eq!(w.group.members["a"].state, MemberState::UnrevokedPartitions);
    w.now += 30_001;
    // a keeps heartbeating (its session is alive) but never revokes.
    let reply = w.send(Heartbeat {
        member_id: "a".to_string(),
        member_epoch: w.clients["a"].epoch,
        ..Heartbeat::default()
    });
    assert!(reply.is_ok());
    assert_eq!(w.group.tick(w.now), vec!["a".to_string()]);
}

#[test]
fn epochs_ahead_or_behind_are_fenced_but_a_lost_response_is_forgiven() {
    let mut w = World::new(2);
    w.join("a");
    w.settle();
    let epoch = w.clients["a"].epoch;
    let ahead = w.send(Heartbeat {
        member_id: "a".to_string(),
        member_epoch: epoch + 1,
        ..Heartbeat::default()
    });
    assert_eq!(
        ahead.map_err(|r| r.error),
        Err(ResponseError::FencedMemberEpoch)
    );

    // b joins: a's epoch moves on; a retries with its previous epoch, owning a subset of
    // its current assignment (the response that bumped it was lost).
    w.join("b");
    w.settle();
    let member = w.group.members["a"].clone();
    let retried = w.send(Heartbeat {
        member_id: "a".to_string(),
        member_epoch: member.previous_member_epoch,
        owned: Some(member.assigned.clone()),
        ..Heartbeat::default()
    });
    assert_eq!(retried.map(|r| r.member_epoch), Ok(member.member_epoch));
    let behind = w.send(Heartbeat {
        member_id: "a".to_string(),
        member_epoch: member.previous_member_epoch,
        owned: Some(Assignment::from([(topic_id(), BTreeSet::from([0, 1]))])),
        ..Heartbeat::default()
    });
    assert_eq!(
        behind.map_err(|r| r.error),
        Err(ResponseError::FencedMemberEpoch)
    );
}

#[test]
fn new_partitions_of_a_subscribed_topic_are_assigned_without_client_action() {
    let mut w = World::new(2);
    w.join("a");
    w.join("b");
    w.settle();
    assert_eq!(w.total_owned(), 2);
    w.partitions = 6;
    w.settle();
    assert_eq!(w.owned_counts(), vec![3, 3]);
}

#[test]
fn a_static_member_that_leaves_for_now_comes_back_to_its_partitions_without_a_rebalance() {
    let mut w = World::new(4);
    for (id, instance) in [("a", "ia"), ("b", "ib")] {
        let reply = w.send(Heartbeat {
            member_id: id.to_string(),
            member_epoch: 0,
            instance_id: Some(instance.to_string()),
            rebalance_timeout_ms: 30_000,
            subscribed_topic_names: Some(vec![TOPIC.to_string()]),
            owned: Some(Assignment::new()),
            ..Heartbeat::default()
        });
        let reply = reply.unwrap_or_else(|r| panic!("{r:?}"));
        let mut c = Client {
            id: id.to_string(),
            epoch: 0,
            owned: Assignment::new(),
        };
        apply(&mut c, &reply);
        w.clients.insert(id.to_string(), c);
    }
    w.settle();
    let before = w.group.members["b"].assigned.clone();
    let epoch = w.group.group_epoch;

    // Another process with b's instance id while b is still there: refused.
    let twin = w.send(Heartbeat {
        member_id: "b2".to_string(),
        member_epoch: 0,
        instance_id: Some("ib".to_string()),
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(vec![TOPIC.to_string()]),
        owned: Some(Assignment::new()),
        ..Heartbeat::default()
    });
    assert_eq!(
        twin.map_err(|r| r.error),
        Err(ResponseError::UnreleasedInstanceId)
    );

    let left = w.send(Heartbeat {
        member_id: "b".to_string(),
        member_epoch: LEAVE_GROUP_STATIC_MEMBER_EPOCH,
        instance_id: Some("ib".to_string()),
        ..Heartbeat::default()
    });
    assert_eq!(
        left.map(|r| r.member_epoch),
        Ok(LEAVE_GROUP_STATIC_MEMBER_EPOCH)
    );
    w.clients.remove("b");

    // It restarts with a new member id and the same instance id.
    let back = w.send(Heartbeat {
        member_id: "b-restarted".to_string(),
        member_epoch: 0,
        instance_id: Some("ib".to_string()),
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(vec![TOPIC.to_string()]),
        owned: Some(Assignment::new()),
        ..Heartbeat::default()
    });
    let back = back.unwrap_or_else(|r| panic!("{r:?}"));
    assert_eq!(back.assignment, Some(before));
    assert_eq!(w.group.group_epoch, epoch, "no rebalance");
    assert!(!w.group.members.contains_key("b"));
}

#[test]
fn a_v0_join_gets_a_member_id_from_the_broker() {
    let mut w = World::new(1);
    let hb = Heartbeat {
        member_id: String::new(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(vec![TOPIC.to_string()]),
        owned: Some(Assignment::new()),
        ..Heartbeat::default()
    };
    assert!(validate_heartbeat("g", &hb, 0).is_ok());
    assert_eq!(
        validate_heartbeat("g", &hb, 1).map_err(|r| r.error),
        Err(ResponseError::InvalidRequest)
    );
    let reply = w.send_v0(hb);
    assert_eq!(reply.map(|r| r.member_id), Ok("generated".to_string()));
}

impl World {
    fn send_v0(&mut self, hb: Heartbeat) -> Result<HeartbeatReply, Refusal> {
        validate_heartbeat("g", &hb, 0)?;
        let partitions = self.partitions;
        let lookup = move |name: &str| (name == TOPIC).then_some((topic_id(), partitions));
        self.group
            .heartbeat(&hb, &lookup, self.now, &self.config, || {
                "generated".to_string()
            })
    }
}

#[test]
fn malformed_heartbeats_are_refused_with_kafkas_messages() {
    let join = Heartbeat {
        member_id: "m".to_string(),
        member_epoch: 0,
        rebalance_timeout_ms: 30_000,
        subscribed_topic_names: Some(vec![TOPIC.to_string()]),
        owned: Some(Assignment::new()),
        ..Heartbeat::default()
    };
    assert!(validate_heartbeat("g", &join, 1).is_ok());
    let cases: Vec<(Heartbeat, &str)> = vec![
        (
            Heartbeat {
                rebalance_timeout_ms: -1,
                ..join.clone()
            },
            "RebalanceTimeoutMs must be provided in first request.",
        ),
        (
            Heartbeat {
                subscribed_topic_names: None,
                subscribed_topic_regex: None,
                ..join.clone()
            },
            "Either SubscribedTopicNames or SubscribedTopicRegex must be non-null when \
             (re-)joining.",
        ),
        (
            Heartbeat {
                owned: None,
                ..join.clone()
            },
            "TopicPartitions must be empty when (re-)joining.",
        ),
        (
            Heartbeat {
                member_epoch: -3,
                ..join.clone()
            },
            "MemberEpoch is invalid.",
        ),
        (
            Heartbeat {
                instance_id: Some(String::new()),
                ..join.clone()
            },
            "InstanceId can't be empty.",
        ),
    ];
    for (hb, message) in cases {
        let refused = validate_heartbeat("g", &hb, 1);
        assert_eq!(
            refused,
            Err(Refusal {
                error: ResponseError::InvalidRequest,
                message: message.to_string()
            })
        );
    }
    assert_eq!(
        validate_heartbeat("", &join, 1).map_err(|r| r.error),
        Err(ResponseError::InvalidRequest)
    );
    let unknown_assignor = Heartbeat {
        server_assignor: Some("sticky".to_string()),
        ..join
    };
    assert_eq!(
        validate_heartbeat("g", &unknown_assignor, 1).map_err(|r| r.error),
        Err(ResponseError::UnsupportedAssignor)
    );
}

#[test]
fn offset_commits_and_fetches_must_carry_the_members_current_epoch() {
    let mut w = World::new(2);
    let empty = ConsumerGroup::new("g");
    assert_eq!(empty.validate_offset_commit("", -1), Ok(()));
    w.join("a");
    w.settle();
    let epoch = w.clients["a"].epoch;
    let g = &w.group;
    assert_eq!(g.validate_offset_commit("a", epoch), Ok(()));
    assert_eq!(
        g.validate_offset_commit("a", epoch - 1),
        Err(ResponseError::StaleMemberEpoch)
    );
    assert_eq!(
        g.validate_offset_commit("x", epoch),
        Err(ResponseError::UnknownMemberId)
    );
    assert_eq!(
        g.validate_offset_commit("", -1),
        Err(ResponseError::UnknownMemberId),
        "an admin commit needs an empty group"
    );
    assert_eq!(g.validate_offset_fetch(None, -1), Ok(()));
    assert_eq!(g.validate_offset_fetch(Some("a"), epoch), Ok(()));
    assert_eq!(
        g.validate_offset_fetch(Some("a"), epoch + 1),
        Err(ResponseError::StaleMemberEpoch)
    );
}

#[test]
fn the_assignor_is_the_one_most_members_ask_for() {
    let mut g = ConsumerGroup::new("g");
    assert_eq!(g.assignor(), "uniform");
    for (id, name) in [
        ("a", Some("range")),
        ("b", Some("range")),
        ("c", Some("uniform")),
        ("d", None),
    ] {
        let mut m = ConsumerMember::new(id, 0);
        m.server_assignor = name.map(str::to_string);
        g.members.insert(id.to_string(), m);
    }
    assert_eq!(g.assignor(), "range");
}

fn owned(list: &[(&str, usize)]) -> BTreeMap<String, usize> {
    list.iter().map(|(n, c)| (n.to_string(), *c)).collect()
}

#[test]
fn a_member_with_a_regex_gets_the_matching_topics_only() {
    let mut w = World::new(2);
    w.create("orders-eu", 2);
    w.create("orders-us", 1);
    w.create("old-orders-eu", 1);
    let reply = w.join_with("a", &[], Some("orders-.*")).unwrap();
    // Resolved within the join: the first response already assigns the matching topics.
    assert!(reply.assignment.is_some_and(|a| !a.is_empty()));
    w.settle();
    assert_eq!(
        w.owned_topics("a"),
        owned(&[("orders-eu", 2), ("orders-us", 1)]),
        "the whole name must match: not {TOPIC}, not old-orders-eu"
    );
    let resolved = &w.group.resolved_regexes["orders-.*"];
    assert_eq!(
        resolved.topics.iter().collect::<Vec<_>>(),
        ["orders-eu", "orders-us"]
    );
    assert_eq!(resolved.timestamp_ms, 1_000);
}

#[test]
fn a_matching_topic_created_later_is_assigned_without_client_action() {
    let mut w = World::new(2);
    w.create("orders-eu", 2);
    w.join_with("a", &[], Some("orders-.*")).unwrap();
    w.join_with("b", &[], Some("orders-.*")).unwrap();
    w.settle();
    assert_eq!(w.total_owned(), 2);
    let epoch = w.group.group_epoch;

    w.create("orders-us", 4);
    w.create("payments", 4);
    // Within 10 s of the last resolution the new topic is not looked for yet (Kafka's
    // minimum interval between two resolutions of a group's expressions).
    w.now += REGEX_BATCH_REFRESH_MIN_INTERVAL_MS - 1;
    w.settle();
    assert_eq!(w.group.group_epoch, epoch);
    assert_eq!(w.total_owned(), 2);

    // The first heartbeat after it resolves again: a new epoch, the topic is split.
    w.now += 1;
    w.settle();
    assert_eq!(w.group.group_epoch, epoch + 1);
    assert_eq!(w.total_owned(), 6, "orders-eu and orders-us, not payments");
    assert_eq!(w.owned_counts(), vec![3, 3]);
    assert!(w
        .clients
        .keys()
        .all(|c| !w.owned_topics(c).contains_key("payments")));

    // Nothing changed since: the next resolution keeps the epoch.
    w.now += REGEX_BATCH_REFRESH_MIN_INTERVAL_MS;
    w.settle();
    assert_eq!(w.group.group_epoch, epoch + 1);
}

#[test]
fn a_deleted_matching_topic_is_revoked() {
    let mut w = World::new(2);
    w.create("orders-eu", 2);
    w.create("orders-us", 2);
    w.join_with("a", &[], Some("orders-.*")).unwrap();
    w.settle();
    assert_eq!(
        w.owned_topics("a"),
        owned(&[("orders-eu", 2), ("orders-us", 2)])
    );
    let epoch = w.group.group_epoch;

    w.others.remove("orders-us");
    // Noticed at the next heartbeat, as any subscribed topic that goes away.
    w.now += 1;
    w.settle();
    assert_eq!(w.group.group_epoch, epoch + 1);
    assert_eq!(w.owned_topics("a"), owned(&[("orders-eu", 2)]));
    // The next resolution drops it from the expression's topics too.
    w.now += REGEX_BATCH_REFRESH_MIN_INTERVAL_MS;
    w.settle();
    assert_eq!(
        w.group.resolved_regexes["orders-.*"]
            .topics
            .iter()
            .collect::<Vec<_>>(),
        ["orders-eu"]
    );
}

#[test]
fn an_invalid_regex_is_refused_and_changes_nothing() {
    let mut w = World::new(2);
    w.join("a");
    w.settle();
    let before = w.group.clone();
    let refused = w.join_with("b", &[], Some("orders-(")).unwrap_err();
    assert_eq!(refused.error, ResponseError::InvalidRegularExpression);
    assert_eq!(
        refused.message,
        "SubscribedTopicRegex `orders-(` is not a valid regular expression: unclosed group."
    );
    assert_eq!(w.group, before);

    // A member that switches to an invalid expression is refused too and keeps its own.
    let epoch = w.clients["a"].epoch;
    let switched = w.send(Heartbeat {
        member_id: "a".to_string(),
        member_epoch: epoch,
        subscribed_topic_regex: Some("[".to_string()),
        ..Heartbeat::default()
    });
    assert_eq!(
        switched.map_err(|r| r.error),
        Err(ResponseError::InvalidRegularExpression)
    );
    assert_eq!(w.group, before);
}

#[test]
fn names_and_regexes_together() {
    let mut w = World::new(2);
    w.create("orders-eu", 2);
    w.create("audit", 1);
    // One member by name, one by expression, one by both.
    w.join_with("a", &[TOPIC], None).unwrap();
    w.join_with("b", &[], Some("orders-.*")).unwrap();
    w.join_with("c", &["audit"], Some("orders-.*")).unwrap();
    w.settle();
    assert_eq!(w.owned_topics("a"), owned(&[(TOPIC, 2)]));
    let bc: usize = ["b", "c"]
        .iter()
        .map(|c| w.owned_topics(c).get("orders-eu").copied().unwrap_or(0))
        .sum();
    assert_eq!(bc, 2, "orders-eu is split between b and c");
    assert_eq!(w.owned_topics("c").get("audit"), Some(&1));
    assert_eq!(w.total_owned(), 5);
    assert_eq!(w.group.subscribed_topics.len(), 3);

    // c drops its expression (librdkafka sends an empty one with its names): b gets all of
    // orders-eu; the expression stays resolved for b.
    let epoch = w.clients["c"].epoch;
    let reply = w.send(Heartbeat {
        member_id: "c".to_string(),
        member_epoch: epoch,
        subscribed_topic_names: Some(vec!["audit".to_string()]),
        subscribed_topic_regex: Some(String::new()),
        owned: Some(w.clients["c"].owned.clone()),
        ..Heartbeat::default()
    });
    let reply = reply.unwrap_or_else(|r| panic!("{r:?}"));
    apply(w.clients.get_mut("c").unwrap(), &reply);
    w.settle();
    assert_eq!(w.owned_topics("b"), owned(&[("orders-eu", 2)]));
    assert_eq!(w.owned_topics("c"), owned(&[("audit", 1)]));
    assert!(w.group.resolved_regexes.contains_key("orders-.*"));

    // What OffsetDelete refuses: topics subscribed by name or through an expression.
    assert!(w.group.is_subscribed_to("orders-eu") && w.group.is_subscribed_to("audit"));
    assert!(!w.group.is_subscribed_to("payments"));

    // b leaves: nobody subscribes with the expression, its resolution is dropped.
    w.group.remove_member("b");
    w.clients.remove("b");
    assert!(w.group.resolved_regexes.is_empty());
    w.settle();
    assert_eq!(w.total_owned(), 3);
}
