//! Transactions (issue 11) with real clients on one broker: the Java producer of
//! `kafka-producer-perf-test.sh`, librdkafka (confluent-kafka), Kafka's console consumer
//! with `--isolation-level read_committed`, and Kafka's own exactly-once copier
//! (`TransactionalMessageCopier`) killed with -9. Against oxbow, or Apache Kafka 4.1 with
//! `OXBOW_E2E_TARGET=kafka`.

use std::time::Duration;

use oxbow_e2e::{poll_until, tools_or_skip, Background, Broker, ToolOutput, Tools};

fn start() -> Broker {
    Broker::start_target(&[])
}

fn create_topic(t: &Tools, b: &Broker, topic: &str) {
    let bs = b.bootstrap();
    t.run(
        "kafka-topics.sh",
        &[
            "--bootstrap-server",
            &bs,
            "--create",
            "--topic",
            topic,
            "--partitions",
            "1",
        ],
    )
    .ok();
}

/// The values of the first `n` records of `topic` from the beginning, read with
/// `isolation` (`read_committed` or `read_uncommitted`).
fn consume(t: &Tools, b: &Broker, topic: &str, isolation: &str, n: usize) -> Vec<String> {
    let bs = b.bootstrap();
    let n = n.to_string();
    let out: ToolOutput = t
        .run(
            "kafka-console-consumer.sh",
            &[
                "--bootstrap-server",
                &bs,
                "--topic",
                topic,
                "--from-beginning",
                "--isolation-level",
                isolation,
                "--max-messages",
                &n,
                "--timeout-ms",
                "30000",
            ],
        )
        .ok();
    out.stdout
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

fn values(prefix: &str) -> Vec<String> {
    (0..5).map(|i| format!("{prefix}-{i}")).collect()
}

#[test]
fn aborted_records_are_hidden_from_read_committed_only() {
    let t = tools_or_skip!();
    let b = start();
    create_topic(&t, &b, "txn-abort");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/txn_producer.py");
    let bs = b.bootstrap();
    let out = t
        .run(
            "python",
            &[script, &bs, "txn-abort", "tx-abort", "abort-then-commit"],
        )
        .ok();
    out.expect_line("done");
    // One partition: the aborted records come first, so read_committed showing any of
    // them would show them among its first five.
    assert_eq!(
        consume(&t, &b, "txn-abort", "read_committed", 5),
        values("committed")
    );
    let mut all = values("aborted");
    all.extend(values("committed"));
    assert_eq!(consume(&t, &b, "txn-abort", "read_uncommitted", 10), all);
}

#[test]
fn a_zombie_with_the_same_transactional_id_is_fenced() {
    let t = tools_or_skip!();
    let b = start();
    create_topic(&t, &b, "txn-zombie");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/txn_producer.py");
    let bs = b.bootstrap();
    let out = t
        .run(
            "python",
            &[script, &bs, "txn-zombie", "tx-zombie", "zombie"],
        )
        .ok();
    out.expect_line("done");
    // librdkafka reports the fencing (PRODUCER_FENCED or INVALID_PRODUCER_EPOCH from the
    // broker) as its fatal _FENCED error.
    out.expect_line("A: _FENCED fatal=True");
    // The zombie's transaction was aborted by the new producer's initialisation.
    assert_eq!(
        consume(&t, &b, "txn-zombie", "read_committed", 5),
        values("fresh")
    );
}

#[test]
fn java_transactional_perf_producer_commits_what_read_committed_reads() {
    let t = tools_or_skip!();
    let b = start();
    create_topic(&t, &b, "txn-perf");
    let bs = b.bootstrap();
    let out = t
        .run(
            "kafka-producer-perf-test.sh",
            &[
                "--topic",
                "txn-perf",
                "--num-records",
                "2000",
                "--record-size",
                "100",
                "--throughput",
                "-1",
                "--transactional-id",
                "tx-perf",
                "--transaction-duration-ms",
                "200",
                "--producer-props",
                &format!("bootstrap.servers={bs}"),
            ],
        )
        .ok();
    out.expect_contains("2000 records sent");
    assert_eq!(
        consume(&t, &b, "txn-perf", "read_committed", 2000).len(),
        2000
    );
}

#[test]
fn offsets_sent_to_a_transaction_are_committed_with_it_only() {
    let t = tools_or_skip!();
    let b = start();
    create_topic(&t, &b, "txo-in");
    create_topic(&t, &b, "txo-out");
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/txn_offsets.py");
    let bs = b.bootstrap();
    let out = t
        .run(
            "python",
            &[
                script,
                &bs,
                "send-offsets",
                "txo-in",
                "txo-out",
                "txo-group",
                "tx-offsets",
            ],
        )
        .ok();
    // While the transaction is open its offsets are not the group's (-1001: none).
    out.expect_line("committed-while-open=-1001");
    out.expect_line("after-commit=5");
    // The aborted transaction's offsets (10) never become the group's.
    out.expect_line("after-abort=5");
    out.expect_line("done");
    let described = t
        .run(
            "kafka-consumer-groups.sh",
            &[
                "--bootstrap-server",
                &bs,
                "--describe",
                "--group",
                "txo-group",
            ],
        )
        .ok();
    let row: Vec<&str> = described
        .lines()
        .into_iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|f| f.get(1) == Some(&"txo-in") && f.get(2) == Some(&"0"))
        .unwrap_or_else(|| panic!("no txo-in 0 row in:\n{}", described.combined()));
    assert_eq!(row.get(3), Some(&"5"), "CURRENT-OFFSET in {row:?}");
    let copied: Vec<String> = (0..5).map(|i| format!("IN-{i}")).collect();
    assert_eq!(consume(&t, &b, "txo-out", "read_committed", 5), copied);
}

/// The `totalProcessed` of the copier's last status line (0 before the first).
fn copier_processed(stdout: &str) -> u64 {
    stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.get("totalProcessed").and_then(|n| n.as_u64()))
        .unwrap_or(0)
}

/// How many records the copier tests copy.
const COPIED: u64 = 20_000;

/// Produces the values 0..[`COPIED`] to `topic` (acks=all) with Kafka's verifiable producer.
fn produce_copier_input(t: &Tools, b: &Broker, topic: &str) {
    let bs = b.bootstrap();
    let records = COPIED.to_string();
    let produced = t
        .run(
            "kafka-verifiable-producer.sh",
            &[
                "--bootstrap-server",
                &bs,
                "--topic",
                topic,
                "--max-messages",
                &records,
                "--acks",
                "-1",
            ],
        )
        .ok();
    produced.expect_contains(&format!("\"acked\":{COPIED}"));
}

/// Kafka's `TransactionalMessageCopier` from `input` to `output` in transactions of 200, as
/// one member of `group` (subscribing) sending its offsets with the group's metadata.
fn copier(t: &Tools, b: &Broker, input: &str, output: &str, id: &str, group: &str) -> Background {
    let bs = b.bootstrap();
    let args = [
        "org.apache.kafka.tools.TransactionalMessageCopier",
        "--broker-list",
        &bs,
        "--input-topic",
        input,
        "--input-partition",
        "0",
        "--output-topic",
        output,
        "--transactional-id",
        id,
        "--consumer-group",
        group,
        "--transaction-size",
        "200",
        "--group-mode",
        "--use-group-metadata",
    ];
    Background::tool(t, "kafka-run-class.sh", &args)
}

/// Waits until `copier` has committed at least `n` records; panics if it exits first.
fn copied_at_least(copier: &mut Background, n: u64, what: &str) {
    poll_until(what, Duration::from_secs(180), || {
        let processed = copier_processed(&copier.stdout());
        if let Some(status) = copier.try_status() {
            panic!("the copier exited ({status}) before {what}:\n{copier}");
        }
        if processed >= n {
            Ok(())
        } else {
            Err(format!("processed {processed}"))
        }
    });
}

/// Waits (up to 5 min) for `copier` to exit and returns whether it succeeded.
fn copier_finished(copier: &mut Background) -> bool {
    let status = poll_until(
        "the copier to copy the rest and exit",
        Duration::from_secs(300),
        || {
            copier
                .try_status()
                .ok_or_else(|| format!("processed {}", copier_processed(&copier.stdout())))
        },
    );
    status.success()
}

/// Asserts that `topic`, read with read_committed, holds every value 0..[`COPIED`] once.
fn assert_copied_exactly_once(t: &Tools, b: &Broker, topic: &str) {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/txn_offsets.py");
    let bs = b.bootstrap();
    let counted = t
        .run(
            "python",
            &[script, &bs, "count", topic, &COPIED.to_string()],
        )
        .ok();
    counted.expect_line(&format!(
        "records={COPIED} distinct={COPIED} missing=0 duplicates=0"
    ));
}

/// Kafka's exactly-once copier copies 20 000 records from one topic to another in
/// transactions of 200 (consumed offsets sent with each through the group's metadata),
/// and is killed with -9 twice mid-copy and restarted with the same transactional id and
/// group: the new copier fences the old one's transaction (aborted), resumes from the
/// committed offsets, and the output read with read_committed holds every input value
/// exactly once.
#[test]
fn the_transactional_copier_killed_twice_copies_every_record_exactly_once() {
    let t = tools_or_skip!();
    let b = start();
    create_topic(&t, &b, "copy-in");
    create_topic(&t, &b, "copy-out");
    produce_copier_input(&t, &b, "copy-in");
    for round in 1..=2 {
        let mut c = copier(&t, &b, "copy-in", "copy-out", "copier-1", "copier-group");
        // Killed once it has committed some transactions (and is inside another).
        copied_at_least(&mut c, 3000, &format!("copier {round} copied 3000 records"));
        c.kill9();
    }
    let mut c = copier(&t, &b, "copy-in", "copy-out", "copier-1", "copier-group");
    assert!(copier_finished(&mut c), "the copier failed:\n{c}");
    // It resumed from the offsets the killed copiers committed (at least 3000 each).
    let resumed = copier_processed(&c.stdout());
    assert!(
        resumed > 0 && resumed <= COPIED - 6000,
        "the last copier processed {resumed} records:\n{c}"
    );
    assert_copied_exactly_once(&t, &b, "copy-out");
}

/// The broker is killed with -9 while the copier copies and started again from the same
/// log dir: the transaction coordinator reloads `__transaction_state` and ends the
/// transactions it finds, the group coordinator reloads the offsets (committed and
/// pending) of `__consumer_offsets`, the copier's clients reconnect and it finishes without
/// a restart; the output read with read_committed holds every input value exactly once.
#[test]
fn the_transactional_copier_survives_a_kill_9_of_the_broker() {
    let t = tools_or_skip!();
    let mut b = start();
    create_topic(&t, &b, "copyk-in");
    create_topic(&t, &b, "copyk-out");
    produce_copier_input(&t, &b, "copyk-in");
    let mut c = copier(
        &t,
        &b,
        "copyk-in",
        "copyk-out",
        "copier-k",
        "copier-k-group",
    );
    copied_at_least(&mut c, 3000, "the copier copied 3000 records");
    b.kill9();
    b.start_again();
    // The same copier finishes: its clients ride out the broker's absence (as they do
    // against Kafka 4.1).
    assert!(copier_finished(&mut c), "the copier failed:\n{c}");
    assert_copied_exactly_once(&t, &b, "copyk-out");
}
