//! Transactions (issue 11) with real clients on one broker: the Java producer of
//! `kafka-producer-perf-test.sh`, librdkafka (confluent-kafka) and Kafka's console consumer
//! with `--isolation-level read_committed`. Against oxbow, or Apache Kafka 4.1 with
//! `OXBOW_E2E_TARGET=kafka`.

use oxbow_e2e::{tools_or_skip, Broker, ToolOutput, Tools};

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
