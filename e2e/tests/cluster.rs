//! A replicated cluster of three nodes (issue 8), driven by Apache Kafka's own tools and
//! clients: the cluster forms with one active controller, topics are placed over all
//! brokers, and every record a producer got acknowledged with acks=all is read back at the
//! offset it was acknowledged at after the leader is killed with -9.
//!
//! Every test here describes Apache Kafka 4.1 and passes against it
//! (`OXBOW_E2E_TARGET=kafka`) as well as against oxbow.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use oxbow_e2e::cluster_tools::{
    acked_records, assert_acknowledged_are_stored, create_topic as create, describe,
    leader_of_most, read_all, topics, wait_for_isr,
};
use oxbow_e2e::{tools_or_skip, Background, Cluster, Flavor};

#[test]
fn three_nodes_form_one_cluster_and_spread_replicas_and_leaders() {
    let t = tools_or_skip!();
    let flavor = Flavor::from_env();
    {
        {
            let c = Cluster::start(flavor, 3, &[]);
            // One active controller, three voters.
            let bs = c.bootstrap();
            let status = t
                .run(
                    "kafka-metadata-quorum.sh",
                    &["--bootstrap-server", &bs, "describe", "--status"],
                )
                .ok();
            let leader: i32 = status
                .line_starting_with("LeaderId:")
                .trim_start_matches("LeaderId:")
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("LeaderId: {e}\n{status}"));
            assert!((0..3).contains(&leader), "{status}");
            let voters = status.line_starting_with("CurrentVoters:").to_string();
            for id in 0..3 {
                assert!(voters.contains(&format!("\"id\": {id}")), "{voters}");
            }

            // Six partitions of RF 3: every broker holds every partition and leads two.
            create(&t, &c, "spread", 6, 3, &[]);
            wait_for_isr(&c, "spread", 6, 3);
            let d = describe(&c, "spread");
            let mut led: BTreeMap<i32, usize> = BTreeMap::new();
            for (p, v) in &d {
                let set: BTreeSet<i32> = v.replicas.iter().copied().collect();
                assert_eq!(set, BTreeSet::from([0, 1, 2]), "partition {p}: {d:?}");
                assert_eq!(v.leader, v.replicas[0], "preferred leader leads: {d:?}");
                *led.entry(v.leader).or_default() += 1;
            }
            assert_eq!(
                led.values().copied().collect::<Vec<_>>(),
                vec![2, 2, 2],
                "{d:?}"
            );

            // RF 4 on three brokers is refused with Kafka's message.
            let refused = topics(
                &t,
                &c,
                &[
                    "--create",
                    "--topic",
                    "too-many",
                    "--partitions",
                    "1",
                    "--replication-factor",
                    "4",
                ],
            )
            .failed();
            refused.expect_contains(
                "The target replication factor of 4 cannot be reached because only 3 broker(s) \
                 are registered.",
            );
        }
    }
}

/// Fault 1 of issue 8: kill -9 the broker leading most partitions while a verifiable
/// producer writes with acks=all to RF 3, min.insync.replicas=2. Writes resume on the
/// survivors; the killed broker restarts, catches up and rejoins every ISR; every
/// acknowledged record is read back at the partition and offset it was acknowledged at.
#[test]
fn acknowledged_records_survive_kill9_of_the_leader() {
    let t = tools_or_skip!();
    let flavor = Flavor::from_env();
    let mut c = Cluster::start(flavor, 3, &[]);
    create(&t, &c, "durable", 3, 3, &["min.insync.replicas=2"]);
    wait_for_isr(&c, "durable", 3, 3);
    let bs = c.bootstrap();
    let mut producer = Background::tool(
        &t,
        "kafka-verifiable-producer.sh",
        &[
            "--bootstrap-server",
            &bs,
            "--topic",
            "durable",
            "--max-messages",
            "6000",
            "--throughput",
            "400",
            "--acks",
            "-1",
        ],
    );
    let acked_before = |p: &Background| acked_records(&p.stdout()).len();
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked_before(&producer) < 1500 {
        assert!(
            Instant::now() < deadline,
            "producer made no progress:\n{producer}"
        );
        assert!(
            producer.try_status().is_none(),
            "producer exited:\n{producer}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The broker leading most partitions goes down hard.
    let victim = leader_of_most(&c, "durable");
    c.node_mut(victim).kill9();
    let at_kill = acked_before(&producer);
    // Writes resume on the two survivors.
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked_before(&producer) < at_kill + 500 && producer.try_status().is_none() {
        assert!(
            Instant::now() < deadline,
            "writes did not resume after kill -9 of broker {victim}:\n{producer}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.node_mut(victim).start_again();
    let deadline = Instant::now() + Duration::from_secs(180);
    while producer.try_status().is_none() {
        assert!(
            Instant::now() < deadline,
            "producer did not finish:\n{producer}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The restarted broker catches up and rejoins every ISR.
    wait_for_isr(&c, "durable", 3, 3);
    let acked = acked_records(&producer.stdout());
    assert!(
        acked.len() >= 5000,
        "only {} of 6000 acknowledged:\n{producer}",
        acked.len()
    );
    let stored = read_all(&c, "durable");
    assert_acknowledged_are_stored(&acked, &stored, 3);
}
