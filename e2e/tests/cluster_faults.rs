//! Faults 2–7 of issue 8 against a three-node cluster (fault 1, kill -9 of a leader, is in
//! cluster.rs): the active controller killed, a leader frozen past its session, a leader cut
//! off from the other nodes while clients still reach it, a rolling restart, two of three
//! brokers down, and a voter restarted behind a one-way cut. In faults 2–6,
//! `kafka-verifiable-producer.sh` writes with acks=all to a topic of RF 3 and
//! min.insync.replicas=2, and afterwards every record it got acknowledged is read back (kcat)
//! at the partition and offset it was acknowledged at; fault 7 checks the controller.
//!
//! Failure detection is short and equal on both implementations ([`FAST_FAILURE_DETECTION`]),
//! so a test takes about a minute on oxbow. Every test passes against oxbow and against Apache
//! Kafka 4.1 (`OXBOW_E2E_TARGET=kafka`).

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use oxbow_e2e::cluster_tools::{
    active_controller, assert_acknowledged_are_stored, create_topic, describe, describe_excluding,
    leader_of_most, read_all, topics, wait_for_isr, PartitionView, VerifiableProducer,
};
use oxbow_e2e::{tools_or_skip, Cluster, Flavor, Tools};

/// Broker settings of every test here, for oxbow and Kafka alike: a broker is fenced 6 s
/// after its last heartbeat and a follower leaves the ISR 6 s after it stopped catching up
/// (Kafka's defaults, 9 s and 30 s, would make each test minutes long).
const FAST_FAILURE_DETECTION: &[(&str, &str)] = &[
    ("broker.session.timeout.ms", "6000"),
    ("broker.heartbeat.interval.ms", "1000"),
    ("replica.lag.time.max.ms", "6000"),
];

const PARTITIONS: u32 = 3;

/// Records per second of every test's producer.
const RATE: u32 = 200;

/// Three combined nodes of `OXBOW_E2E_TARGET`'s implementation with
/// [`FAST_FAILURE_DETECTION`].
fn three_nodes() -> Cluster {
    Cluster::start(Flavor::from_env(), 3, FAST_FAILURE_DETECTION)
}

/// True when `d` lists all [`PARTITIONS`], each led by a broker other than `v`, with `v`
/// in no ISR: `v` is fenced and its leaderships have moved.
fn led_without(d: &BTreeMap<i32, PartitionView>, v: i32) -> bool {
    d.len() == PARTITIONS as usize
        && d.values()
            .all(|p| p.leader >= 0 && p.leader != v && !p.isr.contains(&v))
}

/// Creates `topic` (RF 3, min.insync.replicas=2), waits for its full ISRs and starts a
/// verifiable producer writing with acks=all at [`RATE`] until stopped, returning once 400
/// records are acknowledged.
fn start_load(t: &Tools, c: &Cluster, topic: &str) -> VerifiableProducer {
    create_topic(t, c, topic, PARTITIONS, 3, &["min.insync.replicas=2"]);
    wait_for_isr(c, topic, PARTITIONS as usize, 3);
    let mut producer = VerifiableProducer::start(t, c, topic, None, RATE, &[]);
    producer.wait_acked(400, Duration::from_secs(90), "warming up");
    producer
}

/// Waits for every replica to be back in every ISR and for more writes, stops the producer
/// (it waits for its sends in flight), then checks that at least `min_acked` records were
/// acknowledged and each is read at its offset.
fn finish_and_verify(
    c: &Cluster,
    topic: &str,
    producer: &mut VerifiableProducer,
    min_acked: usize,
) {
    wait_for_isr(c, topic, PARTITIONS as usize, 3);
    producer.wait_acked_more(
        100,
        Duration::from_secs(60),
        "writes with every replica back",
    );
    producer.stop();
    let acked = producer.acked();
    assert!(
        acked.len() >= min_acked,
        "only {} acknowledged (expected at least {min_acked}):\n{}",
        acked.len(),
        producer.output()
    );
    let stored = read_all(c, topic);
    assert_acknowledged_are_stored(&acked, &stored, PARTITIONS as i64);
}

/// Fault 2: kill -9 the active controller while producing. The other two voters elect a new
/// one; topic administration works again; writes go on; the old controller rejoins.
#[test]
fn a_new_controller_takes_over_after_kill9_of_the_active_one() {
    let t = tools_or_skip!();
    let mut c = three_nodes();
    let mut producer = start_load(&t, &c, "controller-loss");
    let mut old = None;
    c.wait_until(Duration::from_secs(60), "an active controller", |c| {
        old = active_controller(&t, c);
        old.is_some()
    });
    let old = old.unwrap_or(-1);
    c.node_mut(old as usize).kill9();
    let at_kill = producer.acked_count();

    let mut new = None;
    c.wait_until(
        Duration::from_secs(60),
        &format!("a new active controller after kill -9 of {old}"),
        |c| {
            new = active_controller(&t, c).filter(|id| *id != old);
            new.is_some()
        },
    );
    // Topic administration goes to the new controller.
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        let out = topics(
            &t,
            &c,
            &[
                "--create",
                "--topic",
                "after-failover",
                "--partitions",
                "3",
                "--replication-factor",
                "2",
            ],
        );
        if out.success() || out.combined().contains("already exists") {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "creating a topic after controller {old} died keeps failing:\n{out}"
        );
    }
    producer.wait_acked(
        at_kill + 300,
        Duration::from_secs(90),
        "writes after the controller's death",
    );

    c.node_mut(old as usize).start_again();
    wait_for_isr(&c, "after-failover", 3, 2);
    finish_and_verify(&c, "controller-loss", &mut producer, 1000);
}

/// Fault 3: SIGSTOP the broker leading most partitions until the controller has fenced it
/// and moved its leaderships, then SIGCONT. The frozen broker still holds produce requests
/// it read before it froze; thawed, it is a deposed leader and must acknowledge none of
/// them: an acknowledgement from it would name an offset the new leader gave another record.
#[test]
fn a_leader_frozen_past_its_session_acknowledges_nothing_after_it_is_fenced() {
    let t = tools_or_skip!();
    let mut c = three_nodes();
    let topic = "frozen-leader";
    let mut producer = start_load(&t, &c, topic);
    let victim = leader_of_most(&c, topic);
    c.node_mut(victim).pause();
    let v = victim as i32;
    // `describe` asks only the nodes that are not frozen.
    c.wait_until(
        Duration::from_secs(60),
        &format!("broker {victim} fenced: no leadership, in no ISR"),
        |c| led_without(&describe(c, topic), v),
    );
    producer.wait_acked_more(300, Duration::from_secs(90), "writes to the new leaders");
    c.node_mut(victim).resume();
    finish_and_verify(&c, topic, &mut producer, 1000);
}

/// Fault 4: cut the broker leading most partitions off from the other two while clients still
/// reach it (each node in its own network namespace; see `oxbow_e2e::netns`). The majority
/// fences it and elects new leaders; nothing the isolated side holds is acknowledged; after
/// healing it truncates, catches up and rejoins every ISR, and every acknowledged record is
/// where it was acknowledged.
#[test]
fn a_leader_cut_off_from_the_other_nodes_acknowledges_nothing_and_converges_after_healing() {
    let t = tools_or_skip!();
    if let Err(why) = oxbow_e2e::netns::available() {
        eprintln!();
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        eprintln!("!! SKIPPING the network isolation test (fault 4): {why}");
        eprintln!("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!");
        return;
    }
    let flavor = Flavor::from_env();
    let c = match Cluster::start_partitionable(flavor, 3, FAST_FAILURE_DETECTION) {
        Ok(c) => c,
        Err(why) => panic!("network namespaces: {why}"),
    };
    let topic = "isolated-leader";
    let mut producer = start_load(&t, &c, topic);
    let victim = leader_of_most(&c, topic);
    c.isolate(victim);
    let v = victim as i32;
    c.wait_until(
        Duration::from_secs(90),
        &format!("the majority fences isolated broker {victim} and elects new leaders"),
        |c| led_without(&describe_excluding(c, topic, &[victim]), v),
    );
    producer.wait_acked_more(
        300,
        Duration::from_secs(90),
        "writes to the majority's new leaders",
    );
    c.heal(victim);
    finish_and_verify(&c, topic, &mut producer, 1000);
}

/// Fault 5: restart all three brokers one after the other (SIGTERM, controlled shutdown)
/// while producing; each returns to every ISR before the next goes, and writes go on.
#[test]
fn a_rolling_restart_of_all_three_under_load_loses_no_acknowledged_record() {
    let t = tools_or_skip!();
    let mut c = three_nodes();
    let topic = "rolling";
    let mut producer = start_load(&t, &c, topic);
    for id in 0..c.len() {
        c.node_mut(id).restart();
        wait_for_isr(&c, topic, PARTITIONS as usize, 3);
        producer.wait_acked_more(
            200,
            Duration::from_secs(90),
            &format!("writes after restarting broker {id}"),
        );
    }
    finish_and_verify(&c, topic, &mut producer, 1000);
}

/// Produces one record to `topic` with acks=all and no retries (kcat); what kcat printed.
fn produce_once(c: &Cluster, topic: &str) -> String {
    use std::io::Write;
    let child = std::process::Command::new("kcat")
        .args([
            "-b",
            &c.bootstrap(),
            "-P",
            "-t",
            topic,
            "-p",
            "0",
            "-X",
            "acks=all",
            "-X",
            "retries=0",
            "-X",
            "message.timeout.ms=10000",
        ])
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn();
    let mut child = match child {
        Ok(child) => child,
        Err(e) => panic!("cannot run kcat: {e}"),
    };
    if let Some(mut stdin) = child.stdin.take() {
        // kcat reports its own failure to read; nothing to add here.
        let _ = stdin.write_all(b"probe\n");
    }
    match child.wait_with_output() {
        Ok(out) => format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        ),
        Err(e) => panic!("kcat: {e}"),
    }
}

/// Fault 6: two of three brokers down. The first is killed with -9 and fenced; the second
/// shuts down (controlled, which needs the quorum it still has); the survivor alone is the
/// whole ISR, so acks=all writes fail with NOT_ENOUGH_REPLICAS and nothing is acknowledged
/// until the two return; then writes go on and no acknowledged record is lost.
#[test]
fn two_of_three_down_refuses_acks_all_with_not_enough_replicas_and_recovers() {
    let t = tools_or_skip!();
    let mut c = three_nodes();
    let topic = "two-down";
    let mut producer = start_load(&t, &c, topic);
    let first = leader_of_most(&c, topic);
    let second = (first + 1) % 3;
    let survivor = (first + 2) % 3;
    c.node_mut(first).kill9();
    let f = first as i32;
    c.wait_until(
        Duration::from_secs(60),
        &format!("broker {first} fenced and out of every ISR"),
        |c| {
            let d = describe(c, topic);
            d.len() == PARTITIONS as usize
                && d.values()
                    .all(|p| p.leader >= 0 && p.leader != f && p.isr.len() == 2)
        },
    );
    c.node_mut(second).stop();
    let s = survivor as i32;
    c.wait_until(
        Duration::from_secs(60),
        &format!("broker {survivor} alone leads every partition and is its whole ISR"),
        |c| {
            let d = describe(c, topic);
            d.len() == PARTITIONS as usize && d.values().all(|p| p.leader == s && p.isr == vec![s])
        },
    );
    let mut last = String::new();
    c.wait_until(
        Duration::from_secs(60),
        "acks=all refused with NOT_ENOUGH_REPLICAS",
        |c| {
            last = produce_once(c, topic);
            last.contains("Not enough in-sync replicas")
        },
    );
    // From here on nothing may be acknowledged: the ISR is below min.insync.replicas.
    let refused_at = producer.acked_count();
    let probe = produce_once(&c, topic);
    assert!(
        probe.contains("Not enough in-sync replicas"),
        "a second acks=all write: {probe}"
    );
    assert_eq!(
        producer.acked_count(),
        refused_at,
        "acknowledged with one in-sync replica:\n{}",
        producer.output()
    );

    c.node_mut(second).start_again();
    c.node_mut(first).start_again();
    producer.wait_acked(
        refused_at + 300,
        Duration::from_secs(120),
        "writes after both brokers returned",
    );
    // What the waits above guarantee: 300 acknowledged after the return, 100 more once every
    // replica is back (a fixed floor of 1000 failed whenever the warm-up ended early).
    finish_and_verify(&c, topic, &mut producer, refused_at + 400);
}

/// `LeaderId` and `LeaderEpoch` of `kafka-metadata-quorum.sh describe --status` asked of
/// `bootstrap`; None while the tool fails or names no leader.
fn quorum_leader_and_epoch(t: &Tools, bootstrap: &str) -> Option<(i32, i64)> {
    let out = t.run_with(
        "kafka-metadata-quorum.sh",
        &["--bootstrap-server", bootstrap, "describe", "--status"],
        None,
        Duration::from_secs(60),
    );
    if !out.success() {
        return None;
    }
    let field = |name: &str| {
        out.stdout
            .lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().parse::<i64>().ok())
    };
    let leader = field("LeaderId:").filter(|id| *id >= 0)?;
    Some((leader as i32, field("LeaderEpoch:")?))
}

/// Fault 7: a follower voter restarts while the active controller cannot open connections to
/// it (new connections to its CONTROLLER port are dropped, as while a restarted pod's new
/// address is not in DNS yet) though it reaches the controller. The controller stays the same
/// in the same epoch through the cut and after it is lifted: a voter that rejoins does not
/// depose a live leader (Kafka's followers fetch from the leader; oxbow's voter holds its
/// elections while the leader it remembers answers that it leads, `quorum::rejoin`). The fetch
/// timeout is 6 s on both (Kafka's 2 s let a loaded machine's late heartbeats start elections of
/// their own in the 15 s watched); the cut lasts 10 s, well past it.
#[test]
fn a_restarted_voter_the_controller_cannot_reach_yet_does_not_depose_it() {
    let t = tools_or_skip!();
    if let Err(why) = oxbow_e2e::netns::available() {
        eprintln!();
        eprintln!("!! SKIPPING the one-way cut test (fault 7): {why}");
        return;
    }
    let flavor = Flavor::from_env();
    let mut settings = FAST_FAILURE_DETECTION.to_vec();
    settings.push(("controller.quorum.fetch.timeout.ms", "6000"));
    let mut c = match Cluster::start_partitionable(flavor, 3, &settings) {
        Ok(c) => c,
        Err(why) => panic!("network namespaces: {why}"),
    };
    c.wait_for_brokers(3);
    let mut before = None;
    c.wait_until(Duration::from_secs(60), "a quorum leader", |c| {
        before = quorum_leader_and_epoch(&t, &c.bootstrap());
        before.is_some()
    });
    let Some((leader, epoch)) = before else {
        unreachable!("waited for it")
    };
    let follower = (0..c.len())
        .find(|i| *i as i32 != leader)
        .unwrap_or_else(|| unreachable!("three nodes"));
    eprintln!(
        "controller {leader} in epoch {epoch}; restarting voter {follower} behind a one-way cut"
    );
    c.node_mut(follower).stop();
    let cut = c.controller_inbound_cut(follower);
    cut.apply();
    // The restart returns once the node serves clients, which on oxbow needs the leader to
    // have reached it: the cut is lifted from beside it, 10 s on. (The epoch is checked after,
    // not during the cut: it only grows, so the same epoch at the end means no election in
    // between, and a JVM tool's start under load would stretch the cut.)
    let lifter = {
        let cut = cut.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(10));
            cut.lift();
        })
    };
    c.node_mut(follower).start_again();
    lifter
        .join()
        .unwrap_or_else(|_| panic!("the thread lifting the cut panicked"));
    // The way back is open: the restarted voter catches up with metadata committed since.
    let topic = "after-the-cut";
    topics(
        &t,
        &c,
        &[
            "--create",
            "--topic",
            topic,
            "--partitions",
            "1",
            "--replication-factor",
            "3",
        ],
    )
    .ok();
    c.wait_until(
        Duration::from_secs(60),
        &format!("voter {follower} to list {topic}"),
        |c| {
            c.metadata_from(follower).is_some_and(|m| {
                m["topics"]
                    .as_array()
                    .is_some_and(|ts| ts.iter().any(|x| x["topic"] == topic))
            })
        },
    );
    std::thread::sleep(Duration::from_secs(3));
    assert_eq!(
        quorum_leader_and_epoch(&t, &c.bootstrap()),
        Some((leader, epoch)),
        "the controller changed once voter {follower} could be reached again"
    );
}
