//! Transactions (issue 11) with real clients on one broker: the Java producer of
//! `kafka-producer-perf-test.sh`, librdkafka (confluent-kafka), Kafka's console consumer
//! with `--isolation-level read_committed`, and Kafka's own exactly-once copier
//! (`TransactionalMessageCopier`) killed with -9. Against oxbow, or Apache Kafka 4.1 with
//! `OXBOW_E2E_TARGET=kafka`.

use std::time::{Duration, Instant};

use oxbow_e2e::tools::{create_topic, create_topic_with, run_on};
use oxbow_e2e::{poll_until, tools_or_skip, Background, Broker, Flavor, ToolOutput, Tools};

fn start() -> Broker {
    Broker::start_target(&[])
}

/// `kafka-console-consumer.sh` reading up to `n` records of `topic` from the beginning with
/// `isolation` (`read_committed` or `read_uncommitted`), giving up after `timeout_ms` without
/// a record.
fn read(
    t: &Tools,
    b: &Broker,
    topic: &str,
    isolation: &str,
    n: usize,
    timeout_ms: &str,
) -> ToolOutput {
    let n = n.to_string();
    run_on(
        t,
        b,
        "kafka-console-consumer.sh",
        &[
            "--topic",
            topic,
            "--from-beginning",
            "--isolation-level",
            isolation,
            "--max-messages",
            &n,
            "--timeout-ms",
            timeout_ms,
        ],
    )
}

/// The record values a consumer printed, one a line.
fn printed_values(out: &ToolOutput) -> Vec<String> {
    out.stdout
        .lines()
        .map(str::to_string)
        .filter(|l| !l.is_empty())
        .collect()
}

/// The values of the first `n` records of `topic` from the beginning, read with
/// `isolation` (`read_committed` or `read_uncommitted`); the consumer must succeed.
fn consume(t: &Tools, b: &Broker, topic: &str, isolation: &str, n: usize) -> Vec<String> {
    printed_values(&read(t, b, topic, isolation, n, "30000").ok())
}

fn values(prefix: &str) -> Vec<String> {
    (0..5).map(|i| format!("{prefix}-{i}")).collect()
}

/// Runs `py/txn_producer.py` (librdkafka) in `mode` with transactional id `id`, writing to
/// `topic`; panics unless it exits 0 having printed `done`.
fn txn_producer(t: &Tools, b: &Broker, topic: &str, id: &str, mode: &str) -> ToolOutput {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/txn_producer.py");
    let bs = b.bootstrap();
    let out = t.run("python", &[script, &bs, topic, id, mode]).ok();
    out.expect_line("done");
    out
}

#[test]
fn aborted_records_are_hidden_from_read_committed_only() {
    let t = tools_or_skip!();
    let b = start();
    create_topic(&t, &b, "txn-abort", 1);
    txn_producer(&t, &b, "txn-abort", "tx-abort", "abort-then-commit");
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
    create_topic(&t, &b, "txn-zombie", 1);
    let out = txn_producer(&t, &b, "txn-zombie", "tx-zombie", "zombie");
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
    create_topic(&t, &b, "txn-perf", 1);
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
    create_topic(&t, &b, "txo-in", 1);
    create_topic(&t, &b, "txo-out", 1);
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
    let described = run_on(
        &t,
        &b,
        "kafka-consumer-groups.sh",
        &["--describe", "--group", "txo-group"],
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

/// How many records the copier tests copy.
const COPIED: u64 = 20_000;

/// Produces the values 0..[`COPIED`] to `topic` (acks=all) with Kafka's verifiable producer.
fn produce_copier_input(t: &Tools, b: &Broker, topic: &str) {
    let records = COPIED.to_string();
    let produced = run_on(
        t,
        b,
        "kafka-verifiable-producer.sh",
        &["--topic", topic, "--max-messages", &records, "--acks", "-1"],
    )
    .ok();
    produced.expect_contains(&format!("\"acked\":{COPIED}"));
}

/// [`oxbow_e2e::copier`] from `input` to `output` on broker `b`.
fn copier(t: &Tools, b: &Broker, input: &str, output: &str, id: &str, group: &str) -> Background {
    oxbow_e2e::copier::start(t, &b.bootstrap(), input, output, id, group)
}

/// Waits (up to 5 min) for `copier` to exit and returns whether it succeeded.
fn copier_finished(copier: &mut Background) -> bool {
    let status = poll_until(
        "the copier to copy the rest and exit",
        Duration::from_secs(300),
        || {
            copier.try_status().ok_or_else(|| {
                format!(
                    "processed {}",
                    oxbow_e2e::copier::processed(&copier.stdout())
                )
            })
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
    create_topic(&t, &b, "copy-in", 1);
    create_topic(&t, &b, "copy-out", 1);
    produce_copier_input(&t, &b, "copy-in");
    for round in 1..=2 {
        let mut c = copier(&t, &b, "copy-in", "copy-out", "copier-1", "copier-group");
        // Killed once it has committed some transactions (and is inside another).
        oxbow_e2e::copier::wait_processed(
            &mut c,
            3000,
            &format!("copier {round} copied 3000 records"),
        );
        c.kill9();
    }
    let mut c = copier(&t, &b, "copy-in", "copy-out", "copier-1", "copier-group");
    assert!(copier_finished(&mut c), "the copier failed:\n{c}");
    // It resumed from the offsets the killed copiers committed (at least 3000 each).
    let resumed = oxbow_e2e::copier::processed(&c.stdout());
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
    create_topic(&t, &b, "copyk-in", 1);
    create_topic(&t, &b, "copyk-out", 1);
    produce_copier_input(&t, &b, "copyk-in");
    let mut c = copier(
        &t,
        &b,
        "copyk-in",
        "copyk-out",
        "copier-k",
        "copier-k-group",
    );
    oxbow_e2e::copier::wait_processed(&mut c, 3000, "the copier copied 3000 records");
    b.kill9();
    b.start_again();
    // The same copier finishes: its clients ride out the broker's absence (as they do
    // against Kafka 4.1).
    assert!(copier_finished(&mut c), "the copier failed:\n{c}");
    assert_copied_exactly_once(&t, &b, "copyk-out");
}

/// `kafka-transactions.sh` (Kafka 4.1's tool) with `args` against `b`; panics unless it
/// exits 0.
fn transactions_tool(t: &Tools, b: &Broker, args: &[&str]) -> ToolOutput {
    run_on(t, b, "kafka-transactions.sh", args).ok()
}

/// The table the tool printed: its header's column names and each row's cells (split on
/// whitespace, as `ToolsUtils.prettyPrintTable` pads them), checking the header.
fn table(out: &ToolOutput, header: &[&str]) -> Vec<Vec<String>> {
    let lines = out.lines();
    let printed: Vec<&str> = lines
        .first()
        .map(|l| l.split_whitespace().collect())
        .unwrap_or_default();
    assert_eq!(printed, header, "the header of:\n{out}");
    lines[1..]
        .iter()
        .map(|l| l.split_whitespace().map(str::to_string).collect())
        .collect()
}

const LIST_HEADER: [&str; 4] = [
    "TransactionalId",
    "Coordinator",
    "ProducerId",
    "TransactionState",
];

const PRODUCERS_HEADER: [&str; 6] = [
    "ProducerId",
    "ProducerEpoch",
    "LatestCoordinatorEpoch",
    "LastSequence",
    "LastTimestamp",
    "CurrentTransactionStartOffset",
];

const HANGING_HEADER: [&str; 8] = [
    "Topic",
    "Partition",
    "ProducerId",
    "ProducerEpoch",
    "CoordinatorEpoch",
    "StartOffset",
    "LastTimestamp",
    "Duration(min)",
];

/// `find-hanging --broker-id 0` with a zero timeout (every open transaction older than now
/// is a candidate): the rows of the transactions no coordinator knows about.
fn find_hanging(t: &Tools, b: &Broker) -> Vec<Vec<String>> {
    let out = transactions_tool(
        t,
        b,
        &[
            "find-hanging",
            "--broker-id",
            "0",
            "--max-transaction-timeout",
            "0",
        ],
    );
    table(&out, &HANGING_HEADER)
}

/// A millisecond timestamp the tool printed, checked to lie between `from` and now.
fn timestamp_between(cell: &str, from: u128) -> u128 {
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let ts: u128 = cell
        .parse()
        .unwrap_or_else(|_| panic!("not a timestamp: {cell:?}"));
    assert!(
        (from..=now).contains(&ts),
        "{ts} is not between {from} and {now}"
    );
    ts
}

/// Kafka's `kafka-transactions.sh` against an open transaction of a real transactional
/// producer (librdkafka, left open) and a hanging one (a transactional batch no
/// coordinator knows about): `list` shows the open one Ongoing with its producer id (also
/// with a `--transactional-id-pattern` matching the whole id),
/// `describe` its epoch, timeout, start and partition, `describe-producers` the producer
/// state of its partition with the offset it starts at; `find-hanging --broker-id 0` finds
/// the hanging one only; `abort --start-offset` ends it, so a read_committed consumer gets
/// past it, and it is no longer found.
///
/// Kafka 4.1 checks every transactional produce with the coordinator (KIP-890) so that no
/// client can leave a transaction hanging; the hanging one is made by a client that skips
/// the coordinator, which needs `transaction.partition.verification.enable=false` (oxbow
/// does no such check).
#[test]
fn kafka_transactions_sh_lists_describes_and_aborts_hanging_transactions() {
    let t = tools_or_skip!();
    let b = Broker::start_target(&[("transaction.partition.verification.enable", "false")]);
    create_topic(&t, &b, "txtools-open", 1);
    create_topic(&t, &b, "txtools-hang", 1);
    let bs = b.bootstrap();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/txn_tools.py");
    let started = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis())
        .unwrap_or(0);
    let mut open = Background::tool(
        &t,
        "python",
        &[script, &bs, "open", "txtools-open", "tx-tools"],
    );
    poll_until(
        "the producer to open its transaction",
        Duration::from_secs(90),
        || {
            if let Some(status) = open.try_status() {
                panic!("the producer exited ({status}):\n{open}");
            }
            if open.stdout().lines().any(|l| l == "open") {
                Ok(())
            } else {
                Err(open.to_string())
            }
        },
    );

    // The partition's producer state: the transactional producer, epoch 0, no marker yet,
    // three records (sequences 0..=2) from offset 0.
    let out = transactions_tool(
        &t,
        &b,
        &[
            "describe-producers",
            "--topic",
            "txtools-open",
            "--partition",
            "0",
        ],
    );
    let rows = table(&out, &PRODUCERS_HEADER);
    assert_eq!(rows.len(), 1, "one producer in:\n{out}");
    let producer_id = rows[0][0].clone();
    assert_eq!(rows[0][1..4], ["0", "-1", "2"], "in:\n{out}");
    timestamp_between(&rows[0][4], started);
    assert_eq!(
        rows[0][5], "0",
        "the transaction starts at offset 0 in:\n{out}"
    );

    let out = transactions_tool(&t, &b, &["list"]);
    let rows = table(
        &out,
        &[
            "TransactionalId",
            "Coordinator",
            "ProducerId",
            "TransactionState",
        ],
    );
    assert_eq!(
        rows,
        [["tx-tools", "0", producer_id.as_str(), "Ongoing"]],
        "in:\n{out}"
    );

    // Kafka 4.1's --transactional-id-pattern (ListTransactions v2, KIP-1152): the whole id
    // must match, and a pattern that does not compile is refused.
    let out = transactions_tool(&t, &b, &["list", "--transactional-id-pattern", "tx-t.*"]);
    assert_eq!(
        table(&out, &LIST_HEADER),
        [["tx-tools", "0", producer_id.as_str(), "Ongoing"]],
        "in:\n{out}"
    );
    let out = transactions_tool(&t, &b, &["list", "--transactional-id-pattern", "tx-t"]);
    assert_eq!(
        table(&out, &LIST_HEADER),
        Vec::<Vec<String>>::new(),
        "in:\n{out}"
    );
    run_on(
        &t,
        &b,
        "kafka-transactions.sh",
        &["list", "--transactional-id-pattern", "("],
    )
    .failed()
    .expect_contains("INVALID_REGULAR_EXPRESSION");

    let out = transactions_tool(&t, &b, &["describe", "--transactional-id", "tx-tools"]);
    let rows = table(
        &out,
        &[
            "CoordinatorId",
            "TransactionalId",
            "ProducerId",
            "ProducerEpoch",
            "TransactionState",
            "TransactionTimeoutMs",
            "CurrentTransactionStartTimeMs",
            "TransactionDurationMs",
            "TopicPartitions",
        ],
    );
    assert_eq!(rows.len(), 1, "in:\n{out}");
    let row = &rows[0];
    assert_eq!(
        row[..6],
        [
            "0",
            "tx-tools",
            producer_id.as_str(),
            "0",
            "Ongoing",
            "600000"
        ],
        "in:\n{out}"
    );
    timestamp_between(&row[6], started);
    assert!(row[7].parse::<u64>().is_ok(), "a duration in:\n{out}");
    assert_eq!(row[8], "txtools-open-0", "in:\n{out}");

    // The coordinator knows the open transaction's partition: it is not hanging.
    assert_eq!(find_hanging(&t, &b), Vec::<Vec<String>>::new());

    // A hanging transaction at offset 0 of txtools-hang, then a record after it.
    let out = t
        .run("python", &[script, &bs, "hanging", "txtools-hang"])
        .ok();
    let line = out.line_starting_with("producer-id=").to_string();
    let fields: Vec<&str> = line
        .split(' ')
        .filter_map(|kv| kv.split_once('=').map(|(_, v)| v))
        .collect();
    let (hanging_id, hanging_epoch, start) = (fields[0], fields[1], fields[2]);
    assert_eq!(start, "0", "{line}");
    t.run_stdin(
        "kafka-console-producer.sh",
        &["--bootstrap-server", &bs, "--topic", "txtools-hang"],
        "after-hang\n",
    )
    .ok();
    // read_committed stops at the hanging transaction.
    assert_eq!(
        consume_within(&t, &b, "txtools-hang", 1, "5000"),
        Vec::<String>::new()
    );

    let rows = find_hanging(&t, &b);
    assert_eq!(rows.len(), 1, "only the hanging transaction: {rows:?}");
    assert_eq!(
        rows[0][..6],
        ["txtools-hang", "0", hanging_id, hanging_epoch, "-1", "0"],
        "{rows:?}"
    );
    timestamp_between(&rows[0][6], started);
    assert_eq!(rows[0][7], "0", "{rows:?}");

    transactions_tool(
        &t,
        &b,
        &[
            "abort",
            "--topic",
            "txtools-hang",
            "--partition",
            "0",
            "--start-offset",
            "0",
        ],
    );
    // The abort marker moved the last stable offset past the transaction: read_committed
    // gets the record after it, and none of the aborted ones.
    assert_eq!(
        consume(&t, &b, "txtools-hang", "read_committed", 1),
        ["after-hang"]
    );
    assert_eq!(find_hanging(&t, &b), Vec::<Vec<String>>::new());
    let out = transactions_tool(
        &t,
        &b,
        &[
            "describe-producers",
            "--topic",
            "txtools-hang",
            "--partition",
            "0",
        ],
    );
    let rows = table(&out, &PRODUCERS_HEADER);
    let aborted = rows
        .iter()
        .find(|r| r[0] == hanging_id)
        .unwrap_or_else(|| panic!("no producer {hanging_id} in:\n{out}"));
    // The marker carried coordinator epoch 0 (the tool's choice when none is known) and
    // ended the transaction.
    assert_eq!(aborted[1..4], [hanging_epoch, "0", "2"], "in:\n{out}");
    assert_eq!(aborted[5], "None", "in:\n{out}");
    open.kill9();
}

/// The values a read_committed consumer of `topic` gets from the beginning, up to `n`,
/// waiting at most `timeout_ms` for them (fewer, or none, are not an error here).
fn consume_within(t: &Tools, b: &Broker, topic: &str, n: usize, timeout_ms: &str) -> Vec<String> {
    printed_values(&read(t, b, topic, "read_committed", n, timeout_ms))
}

/// The transactional ids `kafka-transactions.sh list` prints (the first column), polled
/// until the coordinator answers (it may still be loading after a start).
fn listed_ids(t: &Tools, b: &Broker) -> Vec<String> {
    let out = transactions_tool(t, b, &["list"]);
    table(&out, &LIST_HEADER)
        .into_iter()
        .filter_map(|row| row.into_iter().next())
        .collect()
}

/// `transactional.id.expiration.ms` (here 20 s, checked every second): a transactional id
/// that committed its transaction and stays idle is listed by `kafka-transactions.sh list`
/// until it has been idle 20 s, then no longer, and `describe` no longer finds it; a
/// restart (with the 7-day default expiration, so an id read back from the log would stay)
/// lists an id committed just before the stop but not the expired one: the coordinator
/// wrote a tombstone for it to `__transaction_state`.
#[test]
fn an_idle_transactional_id_expires_and_a_restart_does_not_revive_it() {
    let t = tools_or_skip!();
    const EXPIRATION: Duration = Duration::from_secs(20);
    let expiration_ms = EXPIRATION.as_millis().to_string();
    let mut b = Broker::start_target(&[
        ("transactional.id.expiration.ms", expiration_ms.as_str()),
        (
            "transaction.remove.expired.transaction.cleanup.interval.ms",
            "1000",
        ),
    ]);
    create_topic(&t, &b, "txn-expire", 1);
    let produced = Instant::now();
    txn_producer(&t, &b, "txn-expire", "tx-expire", "abort-then-commit");
    let ids = listed_ids(&t, &b);
    assert!(
        produced.elapsed() < EXPIRATION && ids.contains(&"tx-expire".to_string()),
        "tx-expire not listed {:?} after its commit: {ids:?}",
        produced.elapsed()
    );
    poll_until("tx-expire to expire", Duration::from_secs(120), || {
        let ids = listed_ids(&t, &b);
        if ids.contains(&"tx-expire".to_string()) {
            Err(format!("listed: {ids:?}"))
        } else {
            Ok(())
        }
    });
    let gone_after = produced.elapsed();
    assert!(
        gone_after >= EXPIRATION,
        "tx-expire expired {gone_after:?} after its producer started, before being idle {EXPIRATION:?}"
    );
    run_on(
        &t,
        &b,
        "kafka-transactions.sh",
        &["describe", "--transactional-id", "tx-expire"],
    )
    .failed()
    .expect_contains("failed because the ID could not be found");

    // An id committed just before the stop, to show that the restarted coordinator lists
    // what its log holds.
    txn_producer(&t, &b, "txn-expire", "tx-kept", "abort-then-commit");
    b.stop();
    b.set_override("transactional.id.expiration.ms", "604800000");
    b.start_again();
    let ids = poll_until(
        "the restarted coordinator to list tx-kept",
        Duration::from_secs(120),
        || {
            let ids = listed_ids(&t, &b);
            if ids.contains(&"tx-kept".to_string()) {
                Ok(ids)
            } else {
                Err(format!("listed: {ids:?}"))
            }
        },
    );
    assert_eq!(ids, ["tx-kept"], "after the restart");
    eprintln!("tx-expire gone from the list {gone_after:?} after its producer started; after a restart only tx-kept is listed");
}

// ---------------------------------------------------------------------------
// Producer state across restarts (producer state snapshots)
// ---------------------------------------------------------------------------

/// `producer_state.py` (kafka-python at the protocol level) with `args`; must succeed.
fn producer_state(t: &Tools, b: &Broker, args: &[&str]) -> ToolOutput {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/producer_state.py");
    let bs = b.bootstrap();
    let mut all = vec![script, bs.as_str()];
    all.extend_from_slice(args);
    t.run("python", &all).ok()
}

/// `(log start, high watermark, last stable offset)` of partition 0.
fn partition_offsets(t: &Tools, b: &Broker, topic: &str) -> (i64, i64, i64) {
    let out = producer_state(t, b, &["offsets", topic]);
    let line = out.line_starting_with("start=");
    let v: Vec<i64> = line
        .split_whitespace()
        .map(|kv| kv.split_once('=').unwrap().1.parse().unwrap())
        .collect();
    (v[0], v[1], v[2])
}

/// An idempotent producer writes two batches (offsets 0..=4 and 5..=9); 2.6 MB of other
/// records roll two 1 MiB segments; a transactional producer opens a transaction and keeps
/// it open; DeleteRecords deletes the first segment, so none of the idempotent producer's
/// batches is left. Then the broker restarts (SIGTERM, or kill -9 if `killed`), and:
/// - a retry of the producer's last batch is acknowledged with its original offset (5) and
///   not written again (the high watermark does not move): Kafka's duplicate detection,
///   from state whose batches are gone;
/// - its next batch continues the sequence;
/// - the open transaction still holds the last stable offset at its first offset.
fn producer_state_survives(killed: bool, topic: &str) {
    let t = tools_or_skip!();
    let mut b = start();
    let bs = b.bootstrap();
    create_topic_with(&t, &b, topic, 1, &["--config", "segment.bytes=1048576"]);
    let init = producer_state(&t, &b, &["init"]);
    let ids = init.line_starting_with("pid=").to_string();
    let (pid, epoch) = ids.split_once(' ').unwrap();
    let (pid, epoch) = (&pid["pid=".len()..], &epoch["epoch=".len()..]);
    let first = producer_state(&t, &b, &["produce", topic, pid, epoch, "0", "5", "a"]);
    first.expect_line("error=0 base_offset=0");
    let last = ["produce", topic, pid, epoch, "5", "5", "b"];
    producer_state(&t, &b, &last).expect_line("error=0 base_offset=5");

    let props = format!("bootstrap.servers={bs}");
    t.run(
        "kafka-producer-perf-test.sh",
        &[
            "--topic",
            topic,
            "--num-records",
            "2600",
            "--record-size",
            "1000",
            "--throughput",
            "-1",
            "--producer-props",
            &props,
            "acks=all",
        ],
    )
    .ok();
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/txn_producer.py");
    let txn_id = format!("{topic}-holder");
    let mut holder = Background::tool(&t, "python", &[script, &bs, topic, &txn_id, "hold-open"]);
    poll_until(
        "the transaction to be open",
        Duration::from_secs(60),
        || {
            if holder.stdout().lines().any(|l| l == "open") {
                Ok(())
            } else {
                Err(format!("{holder}"))
            }
        },
    );
    let (_, hw, lso) = partition_offsets(&t, &b, topic);
    assert_eq!(
        (hw, lso),
        (2615, 2610),
        "the open transaction holds the LSO"
    );

    let dir = b.data_dir().join(format!("{topic}-0"));
    let mut bases: Vec<i64> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let name = e.ok()?.file_name().into_string().ok()?;
            name.strip_suffix(".log")?.parse().ok()
        })
        .collect();
    bases.sort_unstable();
    assert!(bases.len() >= 3, "two rolls: {bases:?}");
    let json = b.scratch().join("delete.json");
    std::fs::write(
        &json,
        format!(
            r#"{{"partitions":[{{"topic":"{topic}","partition":0,"offset":{}}}],"version":1}}"#,
            bases[1]
        ),
    )
    .unwrap();
    run_on(
        &t,
        &b,
        "kafka-delete-records.sh",
        &["--offset-json-file", json.to_str().unwrap()],
    )
    .ok()
    .expect_line(&format!(
        "partition: {topic}-0\tlow_watermark: {}",
        bases[1]
    ));

    if killed {
        b.kill9();
        b.start_again();
    } else {
        b.restart();
    }

    let (start_after, hw_after, lso_after) = partition_offsets(&t, &b, topic);
    assert_eq!(
        (hw_after, lso_after),
        (hw, lso),
        "after the restart: the high watermark, and the LSO still at the open transaction"
    );
    // oxbow checkpoints a DeleteRecords at once; Kafka every 60 s
    // (`log.flush.start.offset.checkpoint.interval.ms`) and deletes the segment at its next
    // retention check, so after a kill -9 Kafka may come back with its old log start.
    if b.flavor() == Flavor::Oxbow || !killed {
        assert_eq!(start_after, bases[1], "the log start after the restart");
    }
    // Kafka's own tool reads the snapshot files (Kafka's format): the latest one holds the
    // producer with its last batch.
    let latest = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().into_string().ok())
        .filter(|n| n.ends_with(".snapshot"))
        .max()
        .expect("a producer snapshot in the partition directory");
    let dumped = dir.join(&latest);
    let dump = t
        .run("kafka-dump-log.sh", &["--files", dumped.to_str().unwrap()])
        .ok();
    let entry = dump.line_starting_with(&format!("producerId: {pid} producerEpoch: {epoch} "));
    assert!(
        entry.contains("firstSequence: 5 lastSequence: 9 lastOffset: 9 offsetDelta: 4"),
        "{dump}"
    );
    producer_state(&t, &b, &last).expect_line("error=0 base_offset=5");
    let (_, hw_after_retry, _) = partition_offsets(&t, &b, topic);
    assert_eq!(hw_after_retry, hw, "the retry was not written again");
    let next = ["produce", topic, pid, epoch, "10", "1", "c"];
    producer_state(&t, &b, &next).expect_line(&format!("error=0 base_offset={hw}"));
    holder.kill9();
}

#[test]
fn producer_state_survives_a_clean_restart_after_its_batches_are_deleted() {
    producer_state_survives(false, "pstate-clean");
}

#[test]
fn producer_state_survives_a_kill_9_after_its_batches_are_deleted() {
    producer_state_survives(true, "pstate-kill");
}
