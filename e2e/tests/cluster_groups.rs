//! Consumer groups on a three-node cluster (issue 8), with Apache Kafka's own clients. A
//! group's coordinator is the leader of its `__consumer_offsets` partition (replicated like
//! any topic), so when that broker dies the coordinator moves with the leadership: members
//! find the new one, go on consuming, and the offsets they committed before are still there.
//!
//! Every test here describes Apache Kafka 4.1 and passes against it
//! (`OXBOW_E2E_TARGET=kafka`) as well as against oxbow.

use std::collections::{BTreeMap, BTreeSet};
use std::time::Duration;

use oxbow_e2e::cluster_tools::{create_topic, wait_for_isr, VerifiableProducer};
use oxbow_e2e::group_member::{describe_members, Member};
use oxbow_e2e::{poll_until as wait_until, tools_or_skip, Cluster, Flavor, ToolOutput, Tools};

const WAIT: Duration = Duration::from_secs(120);

/// `kafka-consumer-groups.sh` against the brokers not in `down`.
fn groups(t: &Tools, c: &Cluster, down: &[usize], args: &[&str]) -> ToolOutput {
    let bs = c.bootstrap_excluding(down);
    let mut all = vec!["--bootstrap-server", bs.as_str()];
    all.extend_from_slice(args);
    t.run("kafka-consumer-groups.sh", &all)
}

/// The node id of `group`'s coordinator, from `--describe --state`'s `COORDINATOR (ID)`
/// column (`host:port (id)`).
fn coordinator(t: &Tools, c: &Cluster, down: &[usize], group: &str) -> Result<i32, String> {
    let out = groups(t, c, down, &["--describe", "--group", group, "--state"]);
    out.stdout
        .lines()
        .find(|l| l.split_whitespace().next() == Some(group))
        .and_then(|l| {
            let open = l.find('(')?;
            let close = open + l[open..].find(')')?;
            l[open + 1..close].trim().parse().ok()
        })
        .ok_or_else(|| out.to_string())
}

/// Per partition of `topic`: (committed offset, log end offset) from `--describe`.
fn committed_and_end(
    t: &Tools,
    c: &Cluster,
    down: &[usize],
    group: &str,
    topic: &str,
) -> Result<BTreeMap<i32, (i64, i64)>, String> {
    let out = groups(t, c, down, &["--describe", "--group", group]);
    let mut rows = BTreeMap::new();
    for line in out.stdout.lines() {
        // GROUP TOPIC PARTITION CURRENT-OFFSET LOG-END-OFFSET LAG CONSUMER-ID HOST CLIENT-ID
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() >= 5 && cols[0] == group && cols[1] == topic {
            let (Ok(p), Ok(end)) = (cols[2].parse::<i32>(), cols[4].parse::<i64>()) else {
                continue;
            };
            rows.insert(p, (cols[3].parse::<i64>().unwrap_or(-1), end));
        }
    }
    if rows.is_empty() {
        Err(out.to_string())
    } else {
        Ok(rows)
    }
}

/// Two Java members consume a topic that a producer (acks=all) is still writing; the broker
/// coordinating their group is killed with -9. The group's coordinator moves to another
/// broker, the members go on, every acknowledged record is consumed (at least once: records
/// after the last commit that reached the old coordinator may come again, as in Kafka) and
/// committed, and a member that joins afterwards starts at the committed offsets: it gets
/// only what is produced after, none of the earlier records.
#[test]
fn group_coordinator_moves_when_its_broker_is_killed() {
    let t = tools_or_skip!();
    let mut c = Cluster::start(
        Flavor::from_env(),
        3,
        &[("group.initial.rebalance.delay.ms", "0")],
    );
    let (topic, group) = ("orders", "moving-coordinator");
    create_topic(&t, &c, topic, 6, 3, &["min.insync.replicas=2"]);
    wait_for_isr(&c, topic, 6, 3);

    let a = Member::java(
        &t,
        &c,
        "java-A",
        topic,
        group,
        &["--session-timeout", "10000"],
    );
    let b = Member::java(
        &t,
        &c,
        "java-B",
        topic,
        group,
        &["--session-timeout", "10000"],
    );
    wait_until("both members own partitions", WAIT, || {
        if a.owned().len() + b.owned().len() == 6 && !a.owned().is_empty() {
            Ok(())
        } else {
            Err(describe_members(&[&a, &b]))
        }
    });
    // The producer retries through the leader moves the kill causes; only what it got
    // acknowledged must be consumed.
    let mut producer = VerifiableProducer::start(
        &t,
        &c,
        topic,
        Some(3000),
        200,
        &[("retries", "2147483647"), ("delivery.timeout.ms", "120000")],
    );
    producer.wait_acked(800, WAIT, "before the kill");
    wait_until("records consumed and committed", WAIT, || {
        let consumed = a.values().len() + b.values().len();
        if consumed >= 500 && a.all_committed() && b.all_committed() {
            Ok(())
        } else {
            Err(describe_members(&[&a, &b]))
        }
    });

    let old = wait_until("the group's coordinator", WAIT, || {
        coordinator(&t, &c, &[], group)
    });
    let killed = usize::try_from(old).expect("node ids are small");
    c.node_mut(killed).kill9();
    eprintln!("killed the coordinator, node {old}");

    producer.wait_finished(Duration::from_secs(240));
    let acked: BTreeSet<String> = producer
        .acked()
        .into_iter()
        .map(|r| r.value.clone())
        .collect();
    assert!(
        acked.len() >= 2900,
        "the producer lost too many sends to the failover: {} of 3000\n{}",
        acked.len(),
        producer.output()
    );
    wait_until(
        "every acknowledged record consumed and committed",
        WAIT,
        || {
            let got: BTreeSet<String> = a.values().into_iter().chain(b.values()).collect();
            let missing = acked.difference(&got).count();
            if missing == 0 && a.all_committed() && b.all_committed() {
                Ok(())
            } else {
                Err(format!(
                    "{missing} of {} missing\n{}",
                    acked.len(),
                    describe_members(&[&a, &b])
                ))
            }
        },
    );
    let new = wait_until("the new coordinator", WAIT, || {
        coordinator(&t, &c, &[killed], group)
    });
    assert_ne!(new, old, "the coordinator did not move");
    // Everything in the topic is committed: the committed offsets reached the log ends
    // (a partition the producer never wrote has none: `-`).
    wait_until("committed offsets at the log end", WAIT, || {
        let rows = committed_and_end(&t, &c, &[killed], group, topic)?;
        let done = |&(committed, end): &(i64, i64)| committed == end || (committed, end) == (-1, 0);
        if rows.len() == 6 && rows.values().all(done) {
            Ok(())
        } else {
            Err(format!("{rows:?}"))
        }
    });

    // The members leave; a new one resumes at the committed offsets.
    let (mut a, mut b) = (a, b);
    a.bg.term();
    b.bg.term();
    let late = Member::java(&t, &c, "java-C", topic, group, &[]);
    wait_until("the new member owns every partition", WAIT, || {
        if late.owned().len() == 6 {
            Ok(())
        } else {
            Err(describe_members(&[&late]))
        }
    });
    let lines: Vec<String> = (0..100).map(|i| format!("late-{i}")).collect();
    let bs = c.bootstrap_excluding(&[killed]);
    t.run_stdin(
        "kafka-console-producer.sh",
        &["--bootstrap-server", &bs, "--topic", topic],
        &(lines.join("\n") + "\n"),
    )
    .ok();
    let want: BTreeSet<String> = lines.into_iter().collect();
    wait_until("the new member gets the late records", WAIT, || {
        let got: BTreeSet<String> = late.values().into_iter().collect();
        if want.is_subset(&got) {
            Ok(())
        } else {
            Err(describe_members(&[&late]))
        }
    });
    let old_ones: Vec<String> = late
        .values()
        .into_iter()
        .filter(|v| !v.starts_with("late-"))
        .collect();
    assert!(
        old_ones.is_empty(),
        "the new member got {} records committed before it joined (first: {:?})\n{}",
        old_ones.len(),
        old_ones.first(),
        describe_members(&[&late])
    );
}
