//! A replicated cluster of three nodes (issue 8), driven by Apache Kafka's own tools and
//! clients: the cluster forms with one active controller, topics are placed over all
//! brokers, and every record a producer got acknowledged with acks=all is read back at the
//! offset it was acknowledged at after the leader is killed with -9.
//!
//! Every test here describes Apache Kafka 4.1 and passes against it
//! (`OXBOW_E2E_TARGET=kafka`) as well as against oxbow.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use oxbow_e2e::{tools_or_skip, Background, Cluster, Flavor, ToolOutput, Tools};
use serde_json::Value;

fn topics(t: &Tools, c: &Cluster, args: &[&str]) -> ToolOutput {
    let bs = c.bootstrap();
    let mut all = vec!["--bootstrap-server", bs.as_str()];
    all.extend_from_slice(args);
    t.run("kafka-topics.sh", &all)
}

/// Partition index → (leader, replicas, isr) from `kafka-topics.sh --describe`.
fn describe(t: &Tools, c: &Cluster, topic: &str) -> BTreeMap<i32, (i32, Vec<i32>, Vec<i32>)> {
    let out = topics(t, c, &["--describe", "--topic", topic]);
    let mut parts = BTreeMap::new();
    for line in out.lines() {
        let fields: BTreeMap<&str, &str> = line
            .split('\t')
            .filter_map(|f| f.trim().split_once(": "))
            .collect();
        let Some(p) = fields.get("Partition").and_then(|p| p.parse().ok()) else {
            continue;
        };
        let ids = |k: &str| -> Vec<i32> {
            fields
                .get(k)
                .map(|v| v.split(',').filter_map(|x| x.trim().parse().ok()).collect())
                .unwrap_or_default()
        };
        let leader = fields
            .get("Leader")
            .and_then(|l| l.trim().parse().ok())
            .unwrap_or(-1);
        parts.insert(p, (leader, ids("Replicas"), ids("Isr")));
    }
    parts
}

/// Waits until every partition of `topic` (expecting `count`) has a leader and an ISR of
/// `isr` members.
fn wait_for_isr(t: &Tools, c: &Cluster, topic: &str, count: usize, isr: usize) {
    c.wait_until(
        Duration::from_secs(120),
        &format!("{topic}: {count} partitions with a leader and {isr} in-sync replicas"),
        |c| {
            let d = describe(t, c, topic);
            d.len() == count && d.values().all(|(l, _, i)| *l >= 0 && i.len() == isr)
        },
    );
}

fn create(t: &Tools, c: &Cluster, topic: &str, partitions: u32, rf: u32, configs: &[&str]) {
    let (p, r) = (partitions.to_string(), rf.to_string());
    let mut args = vec![
        "--create",
        "--topic",
        topic,
        "--partitions",
        &p,
        "--replication-factor",
        &r,
    ];
    for cfg in configs {
        args.extend_from_slice(&["--config", cfg]);
    }
    topics(t, c, &args).ok();
}

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
            wait_for_isr(&t, &c, "spread", 6, 3);
            let d = describe(&t, &c, "spread");
            let mut led: BTreeMap<i32, usize> = BTreeMap::new();
            for (p, (leader, replicas, _)) in &d {
                let set: BTreeSet<i32> = replicas.iter().copied().collect();
                assert_eq!(set, BTreeSet::from([0, 1, 2]), "partition {p}: {d:?}");
                assert_eq!(*leader, replicas[0], "preferred leader leads: {d:?}");
                *led.entry(*leader).or_default() += 1;
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

/// One acknowledged record: where the producer was told it landed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Acked {
    partition: i64,
    offset: i64,
    value: String,
}

fn acked_records(producer_stdout: &str) -> Vec<Acked> {
    producer_stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["name"] == "producer_send_success")
        .map(|e| Acked {
            partition: e["partition"].as_i64().unwrap_or(-1),
            offset: e["offset"].as_i64().unwrap_or(-1),
            value: e["value"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// Reads every record of `topic` with kcat: (partition, offset) → value.
fn read_all(c: &Cluster, topic: &str) -> BTreeMap<(i64, i64), String> {
    let out = std::process::Command::new("kcat")
        .args([
            "-b",
            &c.bootstrap(),
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%p %o %s\\n",
        ])
        .output()
        .expect("kcat");
    assert!(
        out.status.success(),
        "kcat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ' ');
            let p = f.next()?.parse().ok()?;
            let o = f.next()?.parse().ok()?;
            Some(((p, o), f.next().unwrap_or_default().to_string()))
        })
        .collect()
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
    wait_for_isr(&t, &c, "durable", 3, 3);
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
    let d = describe(&t, &c, "durable");
    let mut led: BTreeMap<i32, usize> = BTreeMap::new();
    for (leader, _, _) in d.values() {
        *led.entry(*leader).or_default() += 1;
    }
    let victim = led
        .iter()
        .max_by_key(|(_, n)| **n)
        .map(|(id, _)| *id)
        .expect("a leader");
    c.node_mut(victim as usize).kill9();
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
    c.node_mut(victim as usize).start_again();
    let deadline = Instant::now() + Duration::from_secs(180);
    while producer.try_status().is_none() {
        assert!(
            Instant::now() < deadline,
            "producer did not finish:\n{producer}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The restarted broker catches up and rejoins every ISR.
    wait_for_isr(&t, &c, "durable", 3, 3);
    let acked = acked_records(&producer.stdout());
    assert!(
        acked.len() >= 5000,
        "only {} of 6000 acknowledged:\n{producer}",
        acked.len()
    );
    let stored = read_all(&c, "durable");
    let mut lost = Vec::new();
    for a in &acked {
        match stored.get(&(a.partition, a.offset)) {
            Some(v) if *v == a.value => {}
            other => lost.push(format!("{a:?} read back as {other:?}")),
        }
    }
    assert!(
        lost.is_empty(),
        "{} acknowledged records lost or moved, first: {:?}",
        lost.len(),
        &lost[..lost.len().min(5)]
    );
    // Offsets stay contiguous per partition: nothing acknowledged sits in a hole.
    for p in 0..3 {
        let offsets: Vec<i64> = stored
            .keys()
            .filter(|(sp, _)| *sp == p)
            .map(|(_, o)| *o)
            .collect();
        for w in offsets.windows(2) {
            assert_eq!(w[1], w[0] + 1, "partition {p} has a gap at {}", w[0]);
        }
    }
}
