//! Clusters with more brokers than controllers (issue 8, `process.roles`): broker-only
//! nodes (`process.roles=broker`, quorum observers) beside combined voters, and Kafka's
//! separated mode (controller-only voters, broker-only brokers). Driven by Apache Kafka's own
//! tools; every test passes against Apache Kafka 4.1 (`OXBOW_E2E_TARGET=kafka`) as well as
//! against oxbow.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use oxbow_e2e::cluster_tools::{
    active_controller, assert_acknowledged_are_stored, create_topic as create, describe, read_all,
    wait_for_isr, wait_for_quorum, VerifiableProducer,
};
use oxbow_e2e::{tools_or_skip, Cluster, Flavor, Role};

/// The fault tests' equal, short failure detection on both implementations.
const FAST_FAILURE_DETECTION: &[(&str, &str)] = &[
    ("broker.session.timeout.ms", "6000"),
    ("broker.heartbeat.interval.ms", "1000"),
    ("replica.lag.time.max.ms", "6000"),
];

/// The ids Metadata lists as brokers and the controller id it names (`kcat -L -J`).
fn metadata_brokers(c: &Cluster) -> (BTreeSet<i32>, i32) {
    let m = c.metadata().unwrap_or_default();
    let brokers = m["brokers"]
        .as_array()
        .map(|a| {
            a.iter()
                .filter_map(|b| b["id"].as_i64().map(|id| id as i32))
                .collect()
        })
        .unwrap_or_default();
    (brokers, m["controllerid"].as_i64().unwrap_or(-1) as i32)
}

/// Three combined voters and two broker-only nodes: the broker-only nodes are the quorum's
/// observers, receive replicas and leaderships like any broker, and one killed with -9 while
/// an acks=all producer writes loses nothing acknowledged and rejoins every ISR after its
/// restart.
#[test]
fn broker_only_nodes_observe_the_quorum_and_host_replicas() {
    let t = tools_or_skip!();
    let flavor = Flavor::from_env();
    let roles = [
        Role::Combined,
        Role::Combined,
        Role::Combined,
        Role::Broker,
        Role::Broker,
    ];
    let mut c = Cluster::start_roles(flavor, &roles, FAST_FAILURE_DETECTION);
    wait_for_quorum(&t, &c, &[0, 1, 2], &[3, 4]);
    let (brokers, _) = metadata_brokers(&c);
    assert_eq!(brokers, BTreeSet::from([0, 1, 2, 3, 4]));

    // Ten partitions of RF 3 over five brokers: every broker holds replicas and leads.
    create(&t, &c, "spread5", 10, 3, &[]);
    wait_for_isr(&c, "spread5", 10, 3);
    let d = describe(&c, "spread5");
    let mut held: BTreeMap<i32, usize> = BTreeMap::new();
    let mut led: BTreeMap<i32, usize> = BTreeMap::new();
    for v in d.values() {
        for r in &v.replicas {
            *held.entry(*r).or_default() += 1;
        }
        *led.entry(v.leader).or_default() += 1;
    }
    assert_eq!(
        held.values().copied().collect::<Vec<_>>(),
        vec![6; 5],
        "{d:?}"
    );
    assert_eq!(
        led.values().copied().collect::<Vec<_>>(),
        vec![2; 5],
        "{d:?}"
    );

    // kill -9 a broker-only node under acks=all writes (unbounded, as the fault tests: a
    // bounded run's last sends to the dead leader's partitions may expire before the
    // controller fences it).
    create(&t, &c, "observed", 5, 3, &["min.insync.replicas=2"]);
    wait_for_isr(&c, "observed", 5, 3);
    let mut producer = VerifiableProducer::start(&t, &c, "observed", None, 200, &[]);
    producer.wait_acked(400, Duration::from_secs(90), "before the kill");
    c.node_mut(3).kill9();
    let at_kill = producer.acked_count();
    producer.wait_acked(at_kill + 300, Duration::from_secs(90), "after the kill");
    c.node_mut(3).start_again();
    wait_for_isr(&c, "observed", 5, 3);
    let now = producer.acked_count();
    producer.wait_acked(now + 100, Duration::from_secs(60), "with node 3 back");
    producer.stop();
    let acked = producer.acked();
    assert_acknowledged_are_stored(&acked, &read_all(&c, "observed"), 5);
    // The restarted observer is listed again.
    wait_for_quorum(&t, &c, &[0, 1, 2], &[3, 4]);
}

/// Kafka's separated mode: three controller-only voters and two broker-only brokers.
/// The controllers serve no clients and are never brokers (Metadata lists and names only the
/// brokers), topics land on the brokers, and when the active controller is killed with -9
/// another is elected and topic administration works again.
#[test]
fn controller_only_voters_serve_broker_only_nodes() {
    let t = tools_or_skip!();
    let flavor = Flavor::from_env();
    let roles = [
        Role::Controller,
        Role::Controller,
        Role::Controller,
        Role::Broker,
        Role::Broker,
    ];
    let mut c = Cluster::start_roles(flavor, &roles, FAST_FAILURE_DETECTION);
    wait_for_quorum(&t, &c, &[0, 1, 2], &[3, 4]);
    let (brokers, controller) = metadata_brokers(&c);
    assert_eq!(brokers, BTreeSet::from([3, 4]));
    // KRaft brokers name a live broker as the controller, never a controller-only node.
    assert!(brokers.contains(&controller), "controller id {controller}");

    create(&t, &c, "separated", 4, 2, &[]);
    wait_for_isr(&c, "separated", 4, 2);
    for (p, v) in describe(&c, "separated") {
        let set: BTreeSet<i32> = v.replicas.iter().copied().collect();
        assert_eq!(set, BTreeSet::from([3, 4]), "partition {p}");
    }
    let mut producer = VerifiableProducer::start(&t, &c, "separated", Some(500), 500, &[]);
    producer.wait_finished(Duration::from_secs(120));
    let acked = producer.acked();
    assert_eq!(acked.len(), 500, "{}", producer.output());
    assert_acknowledged_are_stored(&acked, &read_all(&c, "separated"), 4);

    let leader = active_controller(&t, &c).expect("an active controller");
    assert!((0..3).contains(&leader), "active controller {leader}");
    c.node_mut(leader as usize).kill9();
    c.wait_until(Duration::from_secs(60), "another active controller", |c| {
        active_controller(&t, c).is_some_and(|l| l != leader)
    });
    create(&t, &c, "after-failover", 2, 2, &[]);
    wait_for_isr(&c, "after-failover", 2, 2);
}
