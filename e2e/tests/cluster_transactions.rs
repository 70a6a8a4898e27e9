//! Transactions on a three-node cluster (issue 11), with librdkafka (confluent-kafka) and
//! Kafka's `kafka-transactions.sh`. A transactional id's coordinator is the leader of its
//! `__transaction_state` partition (replicated, RF 3, min ISR 2); it writes the commit and
//! abort markers of partitions led by the other brokers by sending them WriteTxnMarkers,
//! and when its broker dies the coordinator moves with the leadership and the transactions
//! go on.
//!
//! Every test here describes Apache Kafka 4.1 and passes against it
//! (`OXBOW_E2E_TARGET=kafka`) as well as against oxbow.

use std::collections::BTreeSet;
use std::time::Duration;

use oxbow_e2e::cluster_tools::{create_topic, describe, topics, wait_for_isr};
use oxbow_e2e::{poll_until, tools_or_skip, Background, Cluster, Flavor, Tools};

const WAIT: Duration = Duration::from_secs(120);
const SCRIPT: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/txn_cluster.py");
const PARTITIONS: u32 = 6;

/// The values `topic` holds for `isolation`, read to the end of every partition by the
/// nodes not in `down`, sorted (duplicates kept).
fn consume(t: &Tools, c: &Cluster, down: &[usize], topic: &str, isolation: &str) -> Vec<String> {
    let bs = c.bootstrap_excluding(down);
    let out = t
        .run(
            "python",
            &[
                SCRIPT,
                &bs,
                "consume",
                topic,
                &PARTITIONS.to_string(),
                isolation,
            ],
        )
        .ok();
    out.expect_line("end");
    let mut values: Vec<String> = out
        .lines()
        .into_iter()
        .filter(|l| *l != "end")
        .map(str::to_string)
        .collect();
    values.sort();
    values
}

/// The transactions the producer printed as ended: (committed, aborted) indexes.
fn ended(stdout: &str) -> (BTreeSet<u32>, BTreeSet<u32>) {
    let (mut committed, mut aborted) = (BTreeSet::new(), BTreeSet::new());
    for line in stdout.lines() {
        let mut words = line.split_whitespace();
        match (words.next(), words.next().and_then(|i| i.parse().ok())) {
            (Some("committed"), Some(i)) => {
                committed.insert(i);
            }
            (Some("aborted"), Some(i)) => {
                aborted.insert(i);
            }
            _ => {}
        }
    }
    (committed, aborted)
}

/// (CoordinatorId, TransactionState) of `id` from `kafka-transactions.sh describe`.
fn describe_txn(t: &Tools, c: &Cluster, down: &[usize], id: &str) -> Result<(i32, String), String> {
    let bs = c.bootstrap_excluding(down);
    let out = t.run(
        "kafka-transactions.sh",
        &[
            "--bootstrap-server",
            &bs,
            "describe",
            "--transactional-id",
            id,
        ],
    );
    let lines = out.lines();
    // CoordinatorId TransactionalId ProducerId ProducerEpoch TransactionState ...
    let header: Vec<&str> = lines
        .first()
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    let row: Vec<&str> = lines
        .get(1)
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    match (header.first(), header.get(4), row.first(), row.get(4)) {
        (Some(&"CoordinatorId"), Some(&"TransactionState"), Some(c), Some(s)) => c
            .parse()
            .map(|c| (c, s.to_string()))
            .map_err(|_| out.to_string()),
        _ => Err(out.to_string()),
    }
}

/// A transactional producer commits and aborts transactions that each write to all six
/// partitions of a topic (RF 3, min ISR 2) whose leaders are on all three brokers, so every
/// transaction needs markers on brokers other than its coordinator. Mid-run the
/// coordinator's broker is killed with -9: the coordinator moves to another broker (which
/// loads the transaction state and finishes what was prepared), the producer finds it and
/// finishes every transaction, and a read_committed consumer reads each record of every
/// committed transaction exactly once and none of an aborted one (which read_uncommitted
/// does show).
#[test]
fn transactions_commit_and_abort_across_brokers_through_a_coordinator_kill() {
    let t = tools_or_skip!();
    let mut c = Cluster::start(Flavor::from_env(), 3, &[]);
    let (topic, id) = ("txn-spread", "txn-cluster-1");
    create_topic(&t, &c, topic, PARTITIONS, 3, &["min.insync.replicas=2"]);
    wait_for_isr(&c, topic, PARTITIONS as usize, 3);
    let leaders: BTreeSet<i32> = poll_until("every partition's leader", WAIT, || {
        let parts = describe(&c, topic);
        let leaders: BTreeSet<i32> = parts.values().map(|p| p.leader).collect();
        if parts.len() == PARTITIONS as usize && !leaders.contains(&-1) {
            Ok(leaders)
        } else {
            Err(format!("{parts:?}"))
        }
    });
    assert_eq!(
        leaders,
        BTreeSet::from([0, 1, 2]),
        "the topic's partitions are not led by all three brokers"
    );

    // The last one (45) commits.
    const TRANSACTIONS: u32 = 46;
    let bs = c.bootstrap();
    let mut producer = Background::tool(
        &t,
        "python",
        &[
            SCRIPT,
            &bs,
            "produce",
            topic,
            &PARTITIONS.to_string(),
            id,
            &TRANSACTIONS.to_string(),
        ],
    );
    let progress = |p: &mut Background, n: usize, what: &str| {
        poll_until(what, WAIT, || {
            if let Some(status) = p.try_status() {
                panic!("the producer exited ({status}) before {what}:\n{p}");
            }
            let (committed, aborted) = ended(&p.stdout());
            if committed.len() + aborted.len() >= n {
                Ok(())
            } else {
                Err(format!("{} ended", committed.len() + aborted.len()))
            }
        })
    };
    progress(&mut producer, 3, "the first transactions");
    let (old, _) = poll_until("the transaction's coordinator", WAIT, || {
        describe_txn(&t, &c, &[], id)
    });
    // Created on first use with `transaction.state.log.replication.factor` (3).
    let state = poll_until("__transaction_state's partitions", WAIT, || {
        let state = describe(&c, "__transaction_state");
        if state.is_empty() {
            Err("no answer".to_string())
        } else {
            Ok(state)
        }
    });
    assert!(
        state.values().all(|p| p.replicas.len() == 3),
        "__transaction_state is not replicated to all three brokers: {state:?}"
    );
    progress(&mut producer, 10, "ten transactions");
    let killed = usize::try_from(old).expect("node ids are small");
    c.node_mut(killed).kill9();
    let at_kill = {
        let (committed, aborted) = ended(&producer.stdout());
        committed.len() + aborted.len()
    };
    eprintln!("killed the coordinator, node {old}, after {at_kill} transactions");
    assert!(
        at_kill < TRANSACTIONS as usize,
        "the kill was not mid-run: all {at_kill} transactions had ended"
    );

    let finished = poll_until("the producer to finish", Duration::from_secs(300), || {
        producer
            .try_status()
            .ok_or_else(|| format!("{} ended", ended(&producer.stdout()).0.len()))
    });
    assert!(finished.success(), "the producer failed:\n{producer}");
    let (committed, aborted) = ended(&producer.stdout());
    assert_eq!(
        committed.len() + aborted.len(),
        TRANSACTIONS as usize,
        "transactions not ended:\n{producer}"
    );
    // Every transaction meant to commit did (a retried commit is still a commit).
    let meant: BTreeSet<u32> = (0..TRANSACTIONS).filter(|i| i % 3 != 2).collect();
    assert_eq!(committed, meant, "\n{producer}");

    let records = |txns: &BTreeSet<u32>| -> Vec<String> {
        let mut v: Vec<String> = txns
            .iter()
            .flat_map(|i| (0..PARTITIONS).map(move |p| format!("t{i}-p{p}")))
            .collect();
        v.sort();
        v
    };
    let want = records(&committed);
    // The markers of the last transactions may still be on their way: the last stable
    // offsets reach the ends once they are written.
    let got = poll_until(
        "read_committed to read every committed record",
        WAIT,
        || {
            let got = consume(&t, &c, &[killed], topic, "read_committed");
            if got.len() >= want.len() {
                Ok(got)
            } else {
                Err(format!("{} of {} records", got.len(), want.len()))
            }
        },
    );
    assert_eq!(
        got, want,
        "read_committed did not read exactly the committed records once each"
    );
    let all = consume(&t, &c, &[killed], topic, "read_uncommitted");
    let aborted_seen = records(&aborted)
        .into_iter()
        .filter(|r| all.binary_search(r).is_ok())
        .count();
    assert_eq!(
        aborted_seen,
        aborted.len() * PARTITIONS as usize,
        "read_uncommitted does not show the aborted records"
    );

    // The coordinator moved, and it completed the last transaction.
    let (new, state) = poll_until(
        "the new coordinator's completion",
        WAIT,
        || match describe_txn(&t, &c, &[killed], id)? {
            (new, state) if state == "CompleteCommit" => Ok((new, state)),
            other => Err(format!("{other:?}")),
        },
    );
    assert_ne!(new, old, "the coordinator did not move");
    assert_eq!(state, "CompleteCommit");
}

/// How many records the copier test copies.
const COPIED: u64 = 20_000;

/// Kafka's exactly-once copier (`TransactionalMessageCopier`, group mode with the group's
/// metadata, transactions of 200) copies 20 000 records from a one-partition topic to a
/// six-partition one, both RF 3: each transaction's markers go to output partitions on all
/// three brokers and to the group's `__consumer_offsets` partition (its offsets are
/// committed with the transaction). The broker coordinating the copier's transactional id is
/// killed with -9 mid-copy; the copier rides it out and finishes, and the output read with
/// read_committed holds every input value exactly once.
#[test]
fn the_transactional_copier_survives_a_kill_9_of_the_coordinators_broker() {
    let t = tools_or_skip!();
    let mut c = Cluster::start(Flavor::from_env(), 3, &[]);
    let (input, output, id, group) = ("copy-in", "copy-out", "copier-c", "copier-c-group");
    create_topic(&t, &c, input, 1, 3, &["min.insync.replicas=2"]);
    create_topic(&t, &c, output, PARTITIONS, 3, &["min.insync.replicas=2"]);
    wait_for_isr(&c, input, 1, 3);
    wait_for_isr(&c, output, PARTITIONS as usize, 3);
    let bs = c.bootstrap();
    let records = COPIED.to_string();
    t.run(
        "kafka-verifiable-producer.sh",
        &[
            "--bootstrap-server",
            &bs,
            "--topic",
            input,
            "--max-messages",
            &records,
            "--acks",
            "-1",
        ],
    )
    .ok()
    .expect_contains(&format!("\"acked\":{COPIED}"));

    let mut copier = oxbow_e2e::copier::start(&t, &bs, input, output, id, group);
    oxbow_e2e::copier::wait_processed(&mut copier, 1000, "the copier copied 1000 records");
    let (old, _) = poll_until("the copier's coordinator", WAIT, || {
        describe_txn(&t, &c, &[], id)
    });
    oxbow_e2e::copier::wait_processed(&mut copier, 3000, "the copier copied 3000 records");
    let killed = usize::try_from(old).expect("node ids are small");
    c.node_mut(killed).kill9();
    eprintln!(
        "killed the coordinator, node {old}, at {} copied",
        oxbow_e2e::copier::processed(&copier.stdout())
    );

    let status = poll_until("the copier to finish", Duration::from_secs(300), || {
        copier.try_status().ok_or_else(|| {
            format!(
                "processed {}",
                oxbow_e2e::copier::processed(&copier.stdout())
            )
        })
    });
    assert!(status.success(), "the copier failed:\n{copier}");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/txn_offsets.py");
    let bs = c.bootstrap_excluding(&[killed]);
    // The last transaction's markers may still be on their way when the copier exits:
    // read again until the last stable offsets reach the ends (a duplicate never goes away).
    let want = format!("records={COPIED} distinct={COPIED} missing=0 duplicates=0");
    poll_until(
        "read_committed to read every record exactly once",
        WAIT,
        || {
            let out = t
                .run("python", &[script, &bs, "count", output, &records])
                .ok();
            let line = out
                .lines()
                .last()
                .map(|l| l.to_string())
                .unwrap_or_default();
            if line == want {
                Ok(())
            } else if !line.ends_with("duplicates=0") {
                panic!("duplicates in the output: {line}");
            } else {
                Err(line)
            }
        },
    );
    let (new, _) = poll_until("the new coordinator", WAIT, || {
        describe_txn(&t, &c, &[killed], id)
    });
    assert_ne!(new, old, "the coordinator did not move");
}

/// A commit left prepared by a dead coordinator is completed by the next one. A
/// transaction writes to six partitions of RF 3 and to a partition of RF 1 on broker B (not
/// the coordinator). B is killed with -9 before the commit: the coordinator writes
/// PrepareCommit but cannot write B's marker (that partition has no leader), so
/// `kafka-transactions.sh describe` shows PrepareCommit. Then the coordinator's broker is
/// killed and B started again: the broker that takes the `__transaction_state` partition
/// over loads the prepared commit, sends the markers (B's partition is back) and writes
/// CompleteCommit; a read_committed consumer reads every record of the transaction.
#[test]
fn a_new_coordinator_completes_a_commit_its_predecessor_left_prepared() {
    let t = tools_or_skip!();
    let mut c = Cluster::start(Flavor::from_env(), 3, &[]);
    let (spread, pinned, id) = ("held-spread", "held-pinned", "txn-held");
    create_topic(&t, &c, spread, PARTITIONS, 3, &["min.insync.replicas=2"]);
    // Partition i on broker i only.
    topics(
        &t,
        &c,
        &[
            "--create",
            "--topic",
            pinned,
            "--replica-assignment",
            "0,1,2",
        ],
    )
    .ok();
    wait_for_isr(&c, spread, PARTITIONS as usize, 3);
    wait_for_isr(&c, pinned, 3, 1);

    let dir = tempfile::tempdir().expect("a scratch directory");
    let dir_arg = dir.path().to_string_lossy().to_string();
    let bs = c.bootstrap();
    let mut producer = Background::tool(&t, "python", &[SCRIPT, &bs, "hold", id, &dir_arg]);
    let printed = |p: &mut Background, line: &str, what: &str| {
        poll_until(what, WAIT, || {
            if p.stdout().lines().any(|l| l == line) {
                return Ok(());
            }
            if let Some(status) = p.try_status() {
                panic!("the producer exited ({status}) before {what}:\n{p}");
            }
            Err(p.stdout())
        })
    };
    printed(&mut producer, "ready", "the producer to initialise");
    let (coordinator, _) = poll_until("the transaction's coordinator", WAIT, || {
        describe_txn(&t, &c, &[], id)
    });
    let b = (coordinator + 1) % 3;
    let mut partitions: Vec<String> = (0..PARTITIONS).map(|p| format!("{spread}:{p}")).collect();
    partitions.push(format!("{pinned}:{b}"));
    std::fs::write(dir.path().join("partitions"), partitions.join("\n") + "\n")
        .expect("the partitions file");
    printed(
        &mut producer,
        "produced",
        "the transaction's records delivered",
    );

    let (b, coord) = (
        usize::try_from(b).expect("small"),
        usize::try_from(coordinator).expect("small"),
    );
    c.node_mut(b).kill9();
    std::fs::write(dir.path().join("go"), "").expect("the go file");
    printed(&mut producer, "committed", "EndTxn(commit) answered");
    // B's marker cannot be written: the commit stays prepared at the same coordinator.
    let held = poll_until("the commit prepared", WAIT, || {
        match describe_txn(&t, &c, &[b], id)? {
            (at, state) if state == "PrepareCommit" => Ok(at),
            other => Err(format!("{other:?}")),
        }
    });
    assert_eq!(
        held, coordinator,
        "the coordinator moved before it was killed"
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        describe_txn(&t, &c, &[b], id).map(|(_, s)| s),
        Ok("PrepareCommit".to_string()),
        "the commit completed without B's marker"
    );

    c.node_mut(coord).kill9();
    c.node_mut(b).start_again();
    let new = poll_until(
        "the new coordinator's completion",
        WAIT,
        || match describe_txn(&t, &c, &[coord], id)? {
            (at, state) if state == "CompleteCommit" => Ok(at),
            other => Err(format!("{other:?}")),
        },
    );
    assert_ne!(new, coordinator, "the coordinator did not move");

    let mut want: Vec<String> = partitions
        .iter()
        .map(|tp| format!("held-{}", tp.replace(':', "-")))
        .collect();
    want.sort();
    let mut got = consume(&t, &c, &[coord], spread, "read_committed");
    // Only B's partition: the dead coordinator's has no other replica.
    let only_b = format!("={b}");
    got.extend(poll_until("B's partition readable", WAIT, || {
        let bs = c.bootstrap_excluding(&[coord]);
        let out = t.run(
            "python",
            &[SCRIPT, &bs, "consume", pinned, &only_b, "read_committed"],
        );
        if out.success() {
            Ok(out
                .lines()
                .into_iter()
                .filter(|l| *l != "end")
                .map(str::to_string)
                .collect::<Vec<_>>())
        } else {
            Err(out.to_string())
        }
    }));
    got.sort();
    assert_eq!(
        got, want,
        "read_committed does not show the completed commit"
    );
}
