//! Consumer groups (classic protocol) end to end, with real clients: Apache
//! Kafka's own tools (kafka-console-consumer.sh, kafka-consumer-groups.sh,
//! kafka-verifiable-consumer.sh — the Java KafkaConsumer), librdkafka
//! (confluent-kafka in Python, kcat) and kafka-python.
//!
//! Each test starts its own broker: oxbow-broker by default, or a real Apache
//! Kafka 4.1 with `OXBOW_E2E_TARGET=kafka` (which proves the assertions describe
//! Kafka's real behaviour); with `OXBOW_E2E_BROKERS=3` a cluster of three instead
//! (`oxbow_e2e::Target`: replication factor 3 for topics and `__consumer_offsets`,
//! min.insync.replicas 2), so the coordinator is one broker of three and every commit
//! is replicated. On three brokers only the tests that add something there run: those
//! that restart brokers on a cluster of their own, the others as scenarios of
//! [`scenarios_on_one_shared_cluster`] (one cluster for all, two at a time; the rest say
//! they are single-broker tests and return). Waits poll with deadlines.
//!
//! Group members run as background processes ([`Bg`]) printing one JSON event
//! per line: kafka-verifiable-consumer.sh for Java, `py/groups_member.py` (same
//! event shapes) for librdkafka. [`Member`] reads those events: which partitions
//! the member owns now (assigned minus revoked) and which records it got.

use oxbow_e2e::group_member::{describe_members, script, Member};
use oxbow_e2e::target::{
    run_alone_unless_shared, run_on_one_cluster, Scenario, COVERED_BY_ONE_BROKER,
};
use oxbow_e2e::tools::{
    create_topic, end_offsets, groups, kcat_produce, produce_lines, run_on, table,
};
use oxbow_e2e::{
    poll_until as wait_until, single_broker_tools_or_skip, test_name, tools_or_skip,
    Background as Bg, Target, ToolOutput, Tools,
};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::thread;
use std::time::{Duration, Instant};

/// A broker for group tests: no initial rebalance delay (test speed).
fn start() -> Target {
    Target::start(&[("group.initial.rebalance.delay.ms", "0")])
}

/// With `OXBOW_E2E_BROKERS=3`: the group tests that add coverage on a cluster and restart no
/// broker, as scenarios on one cluster of three. Their coordinator is one broker of three and
/// every commit goes to RF-3 `__consumer_offsets` with min.insync.replicas 2: Java,
/// librdkafka and kcat members share and hand over partitions, commit, reset and delete
/// offsets, and get Kafka's errors for bad commits.
#[test]
fn scenarios_on_one_shared_cluster() {
    let t = tools_or_skip!();
    let scenarios: [Scenario; 6] = [
        (
            "group_members_share_partitions_and_take_over",
            group_members_share_partitions_and_take_over_on,
        ),
        (
            "consumer_groups_list_describe_members_state",
            consumer_groups_list_describe_members_state_on,
        ),
        (
            "verifiable_consumer_consumes_and_commits",
            verifiable_consumer_consumes_and_commits_on,
        ),
        (
            "group_of_three_librdkafka_members_and_kcat",
            group_of_three_librdkafka_members_and_kcat_on,
        ),
        (
            "consumer_groups_reset_offsets_and_delete",
            consumer_groups_reset_offsets_and_delete_on,
        ),
        (
            "bad_offset_commits_get_kafka_errors",
            bad_offset_commits_get_kafka_errors_on,
        ),
    ];
    run_on_one_cluster(&t, &[("group.initial.rebalance.delay.ms", "0")], &scenarios);
}

const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// Tools
// ---------------------------------------------------------------------------

/// `count` records `k<i>:<prefix>-<i>` via kcat (keys spread them over partitions).
/// Returns the values.
fn produce_keyed(t: &Tools, b: &Target, topic: &str, prefix: &str, count: usize) -> Vec<String> {
    let values: Vec<String> = (0..count).map(|i| format!("{prefix}-{i}")).collect();
    let input: String = values
        .iter()
        .enumerate()
        .map(|(i, v)| format!("k{prefix}{i}:{v}\n"))
        .collect();
    kcat_produce(
        t,
        b,
        topic,
        &["-K:", "-X", "topic.request.required.acks=-1"],
        &input,
    );
    values
}

/// The `--describe` row of `topic`/`partition`.
#[track_caller]
fn describe_row(out: &ToolOutput, topic: &str, partition: i32) -> BTreeMap<String, String> {
    table(out, "GROUP")
        .into_iter()
        .find(|r| r["TOPIC"] == topic && r["PARTITION"] == partition.to_string())
        .unwrap_or_else(|| panic!("no describe row for {topic}-{partition}:\n{out}"))
}

/// The single row of `--describe --state`.
#[track_caller]
fn state_row(t: &Tools, b: &Target, group: &str) -> (BTreeMap<String, String>, ToolOutput) {
    let out = groups(t, b, &["--group", group, "--describe", "--state"]).ok();
    let rows = table(&out, "GROUP");
    assert_eq!(rows.len(), 1, "one --state row:\n{out}");
    (rows[0].clone(), out)
}

/// Console consumer in a group: `--max-messages n`, values printed as
/// `key-value`. Returns the printed lines.
fn consume_group(
    t: &Tools,
    b: &Target,
    topic: &str,
    group: &str,
    n: usize,
    extra: &[&str],
) -> ToolOutput {
    let bs = b.bootstrap();
    let n = n.to_string();
    let mut args = vec![
        "--bootstrap-server",
        bs.as_str(),
        "--topic",
        topic,
        "--group",
        group,
        "--max-messages",
        &n,
        "--timeout-ms",
        "30000",
    ];
    args.extend_from_slice(extra);
    t.run("kafka-console-consumer.sh", &args).ok()
}

/// Waits until the members own disjoint partition sets covering `0..partitions`,
/// with the given number of partitions each (`None`: any non-empty share).
/// Returns the time it took.
#[track_caller]
fn wait_assignment(
    members: &[&Member],
    partitions: i64,
    each: Option<&[usize]>,
    timeout: Duration,
) -> Duration {
    let started = Instant::now();
    wait_until("a complete, disjoint assignment", timeout, || {
        let owned: Vec<BTreeSet<i64>> = members.iter().map(|m| m.owned()).collect();
        let total: usize = owned.iter().map(BTreeSet::len).sum();
        let union: BTreeSet<i64> = owned.iter().flatten().copied().collect();
        let sizes: Vec<usize> = owned.iter().map(BTreeSet::len).collect();
        let sizes_ok = match each {
            Some(want) => sizes == want,
            None => sizes.iter().all(|&s| s > 0),
        };
        if total == partitions as usize && union == (0..partitions).collect() && sizes_ok {
            Ok(())
        } else {
            Err(describe_members(members))
        }
    });
    started.elapsed()
}

/// Waits until the members together have consumed every value in `want`, and
/// committed it; then asserts each was consumed exactly once in total.
#[track_caller]
fn wait_delivered_once(members: &[&Member], want: &[String]) {
    wait_until("every record consumed and committed", WAIT, || {
        let got: BTreeSet<String> = members.iter().flat_map(|m| m.values()).collect();
        let missing = want.iter().filter(|v| !got.contains(*v)).count();
        if missing == 0 && members.iter().all(|m| m.all_committed()) {
            Ok(())
        } else {
            Err(format!(
                "{missing} of {} missing\n{}",
                want.len(),
                describe_members(members)
            ))
        }
    });
    let mut counts: BTreeMap<String, usize> = BTreeMap::new();
    for m in members {
        for v in m.values() {
            *counts.entry(v).or_default() += 1;
        }
    }
    let dups: Vec<(&String, &usize)> = counts.iter().filter(|(_, &c)| c > 1).collect();
    assert!(
        dups.is_empty(),
        "records delivered more than once: {:?}\n{}",
        &dups[..dups.len().min(20)],
        describe_members(members)
    );
    for m in members {
        assert!(
            m.failed_commits().is_empty(),
            "failed commits:\n{}",
            describe_members(members)
        );
    }
}

/// Which members got records of this batch (by value prefix).
fn got_some(m: &Member, prefix: &str) -> bool {
    m.values().iter().any(|v| v.starts_with(prefix))
}

// ---------------------------------------------------------------------------
// 1. kafka-console-consumer.sh with and without --group
// ---------------------------------------------------------------------------

#[test]
fn console_consumer_group_from_beginning() {
    let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);
    // Kafka's default initial rebalance delay (3 s), as users run it.
    let b = Target::start(&[("group.initial.rebalance.delay.ms", "3000")]);
    create_topic(&t, &b, "hello.kafka", 1);
    produce_lines(&t, &b, "hello.kafka", "hello\n", &[]);
    produce_lines(
        &t,
        &b,
        "hello.kafka",
        "key1:no1\n",
        &[
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=:",
        ],
    );
    let props = [
        "--from-beginning",
        "--property",
        "print.key=true",
        "--property",
        "key.separator=-",
    ];

    let out = consume_group(&t, &b, "hello.kafka", "hello-group", 2, &props);
    assert_eq!(out.lines(), vec!["null-hello", "key1-no1"], "{out}");
    out.expect_contains("Processed a total of 2 messages");

    // The group committed its position: --from-beginning only applies to a
    // group without offsets, so the same group gets only what is new.
    produce_lines(&t, &b, "hello.kafka", "world\n", &[]);
    let out = consume_group(&t, &b, "hello.kafka", "hello-group", 1, &props);
    assert_eq!(out.lines(), vec!["null-world"], "{out}");

    // Without --group: a generated group id, reading from the beginning.
    let out = run_on(
        &t,
        &b,
        "kafka-console-consumer.sh",
        &[
            "--topic",
            "hello.kafka",
            "--from-beginning",
            "--property",
            "print.key=true",
            "--property",
            "key.separator=-",
            "--max-messages",
            "3",
            "--timeout-ms",
            "30000",
        ],
    )
    .ok();
    assert_eq!(
        out.lines(),
        vec!["null-hello", "key1-no1", "null-world"],
        "{out}"
    );

    let list = groups(&t, &b, &["--list"]).ok();
    assert!(list.lines().contains(&"hello-group"), "{list}");
    assert!(
        list.lines()
            .iter()
            .any(|g| g.starts_with("console-consumer-")),
        "the generated group is listed too:\n{list}"
    );
}

// ---------------------------------------------------------------------------
// 2. kafka-consumer-groups.sh --list / --describe / --members / --state
// ---------------------------------------------------------------------------

#[test]
fn consumer_groups_list_describe_members_state() {
    run_alone_unless_shared(
        test_name!(),
        start,
        consumer_groups_list_describe_members_state_on,
    );
}

/// The body of [`consumer_groups_list_describe_members_state`], also a scenario on the suite's shared cluster.
fn consumer_groups_list_describe_members_state_on(t: &Tools, b: &Target) {
    create_topic(t, b, "hello.kafka", 2);
    produce_lines(
        t,
        b,
        "hello.kafka",
        "a\nb\nc\n",
        &[
            "--property",
            "partitioner.class=org.apache.kafka.clients.producer.RoundRobinPartitioner",
        ],
    );
    let ends = end_offsets(t, b, "hello.kafka");
    assert_eq!(ends.values().sum::<i64>(), 3, "{ends:?}");

    let bs = b.bootstrap();
    let mut cc = Bg::tool(
        t,
        "kafka-console-consumer.sh",
        &[
            "--bootstrap-server",
            &bs,
            "--topic",
            "hello.kafka",
            "--group",
            "hello-group",
            "--from-beginning",
            "--consumer-property",
            "auto.commit.interval.ms=500",
        ],
    );
    wait_until("the console consumer prints 3 records", WAIT, || {
        let n = cc.stdout().lines().count();
        if n == 3 {
            Ok(())
        } else {
            Err(cc.to_string())
        }
    });

    let list = groups(t, b, &["--list"]).ok();
    // On a shared cluster other scenarios' groups are listed too.
    let listed: Vec<&str> = list
        .lines()
        .into_iter()
        .filter(|g| !b.is_shared() || g.starts_with("hello"))
        .collect();
    assert_eq!(listed, vec!["hello-group"], "{list}");

    // CURRENT-OFFSET appears with the first auto-commit.
    let d = wait_until("committed offsets in --describe", WAIT, || {
        let d = groups(t, b, &["--group", "hello-group", "--describe"]);
        let rows = table(&d, "GROUP");
        let done = rows.len() == 2
            && rows
                .iter()
                .all(|r| r["CURRENT-OFFSET"] == r["LOG-END-OFFSET"]);
        if done {
            Ok(d)
        } else {
            Err(d.to_string())
        }
    });
    for p in 0..2 {
        let r = describe_row(&d, "hello.kafka", p);
        assert_eq!(r["GROUP"], "hello-group", "{d}");
        assert_eq!(r["CURRENT-OFFSET"], ends[&p].to_string(), "{d}");
        assert_eq!(r["LOG-END-OFFSET"], ends[&p].to_string(), "{d}");
        assert_eq!(r["LAG"], "0", "{d}");
        assert!(r["CONSUMER-ID"].starts_with("console-consumer-"), "{d}");
        assert_eq!(r["HOST"], "/127.0.0.1", "{d}");
        assert_eq!(r["CLIENT-ID"], "console-consumer", "{d}");
    }
    assert!(!d.combined().contains("has no active members"), "{d}");

    // Lag shows records not yet consumed... they are consumed at once here,
    // so produce and check that LOG-END-OFFSET moves and LAG returns to 0.
    produce_lines(
        t,
        b,
        "hello.kafka",
        "d\n",
        &[
            "--property",
            "partitioner.class=org.apache.kafka.clients.producer.RoundRobinPartitioner",
        ],
    );
    wait_until("the 4th record consumed and committed", WAIT, || {
        let d = groups(t, b, &["--group", "hello-group", "--describe"]);
        let rows = table(&d, "GROUP");
        let total: i64 = rows
            .iter()
            .filter_map(|r| r["CURRENT-OFFSET"].parse::<i64>().ok())
            .sum();
        let lag: i64 = rows
            .iter()
            .filter_map(|r| r["LAG"].parse::<i64>().ok())
            .sum();
        if rows.len() == 2 && total == 4 && lag == 0 {
            Ok(())
        } else {
            Err(d.to_string())
        }
    });

    let m = groups(t, b, &["--group", "hello-group", "--describe", "--members"]).ok();
    let rows = table(&m, "GROUP");
    assert_eq!(rows.len(), 1, "{m}");
    assert!(
        rows[0]["CONSUMER-ID"].starts_with("console-consumer-"),
        "{m}"
    );
    assert_eq!(rows[0]["HOST"], "/127.0.0.1", "{m}");
    assert_eq!(rows[0]["CLIENT-ID"], "console-consumer", "{m}");
    assert_eq!(rows[0]["#PARTITIONS"], "2", "{m}");

    let mv = groups(
        t,
        b,
        &[
            "--group",
            "hello-group",
            "--describe",
            "--members",
            "--verbose",
        ],
    )
    .ok();
    let rows = table(&mv, "GROUP");
    assert_eq!(rows.len(), 1, "{mv}");
    assert_eq!(rows[0]["CURRENT-ASSIGNMENT"], "hello.kafka:0,1", "{mv}");

    let (s, so) = state_row(t, b, "hello-group");
    assert_eq!(s["STATE"], "Stable", "{so}");
    assert_eq!(s["ASSIGNMENT-STRATEGY"], "range", "{so}");
    assert_eq!(s["#MEMBERS"], "1", "{so}");
    // `host:port (id)` of the broker that coordinates the group (node 0 when alone).
    let coordinator = &s["COORDINATOR (ID)"];
    assert!(
        b.node_ids()
            .iter()
            .any(|&id| *coordinator == format!("{} ({id})", b.node(id as usize).bootstrap())),
        "{so}"
    );

    // Idle: the consumer leaves; offsets stay.
    cc.term();
    let d = groups(t, b, &["--group", "hello-group", "--describe"]).ok();
    d.expect_contains("Consumer group 'hello-group' has no active members.");
    for p in 0..2 {
        let r = describe_row(&d, "hello.kafka", p);
        assert_eq!(r["CONSUMER-ID"], "-", "{d}");
        assert_eq!(r["HOST"], "-", "{d}");
        assert_eq!(r["CLIENT-ID"], "-", "{d}");
        assert_eq!(r["LAG"], "0", "{d}");
    }
    let (s, so) = state_row(t, b, "hello-group");
    assert_eq!(s["STATE"], "Empty", "{so}");
    assert_eq!(s["#MEMBERS"], "0", "{so}");
    let m = groups(t, b, &["--group", "hello-group", "--describe", "--members"]).ok();
    m.expect_contains("Consumer group 'hello-group' has no active members.");

    let nope = groups(t, b, &["--group", "nope", "--describe"]);
    nope.expect_contains("Group nope not found.");
}

// ---------------------------------------------------------------------------
// 3. --reset-offsets, --delete-offsets, --delete
// ---------------------------------------------------------------------------

/// `YYYY-MM-DDTHH:MM:SS.sssZ` for milliseconds since the epoch.
fn iso_utc(ms: i64) -> String {
    let secs = ms.div_euclid(1000);
    let (days, sod) = (secs.div_euclid(86400), secs.rem_euclid(86400));
    // Howard Hinnant's civil_from_days.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z - era * 146_097;
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}Z",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60,
        ms.rem_euclid(1000)
    )
}

#[test]
fn iso_utc_formats() {
    assert_eq!(iso_utc(0), "1970-01-01T00:00:00.000Z");
    assert_eq!(iso_utc(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
}

#[test]
fn consumer_groups_reset_offsets_and_delete() {
    run_alone_unless_shared(
        test_name!(),
        start,
        consumer_groups_reset_offsets_and_delete_on,
    );
}

/// The body of [`consumer_groups_reset_offsets_and_delete`], also a scenario on the suite's shared cluster.
fn consumer_groups_reset_offsets_and_delete_on(t: &Tools, b: &Target) {
    create_topic(t, b, "reset", 1);
    // Two producer runs, so m3 is later than m2 (for --to-datetime).
    produce_lines(t, b, "reset", "m0\nm1\nm2\n", &[]);
    produce_lines(t, b, "reset", "m3\nm4\n", &[]);
    let bs = b.bootstrap();
    let ts = run_on(
        t,
        b,
        "kafka-console-consumer.sh",
        &[
            "--topic",
            "reset",
            "--partition",
            "0",
            "--offset",
            "earliest",
            "--property",
            "print.timestamp=true",
            "--max-messages",
            "5",
        ],
    )
    .ok();
    let stamps: Vec<i64> = ts
        .lines()
        .iter()
        .map(|l| {
            l.split('\t')
                .next()
                .and_then(|s| s.strip_prefix("CreateTime:"))
                .expect("CreateTime")
                .parse()
                .expect("ms")
        })
        .collect();
    assert_eq!(stamps.len(), 5, "{ts}");
    assert!(stamps[3] > stamps[2], "m3 is produced after m2: {ts}");

    let one = ["--consumer-property", "max.poll.records=1"];
    let out = consume_group(t, b, "reset", "G", 5, &["--from-beginning"]);
    assert_eq!(out.lines(), vec!["m0", "m1", "m2", "m3", "m4"], "{out}");

    let reset = |how: &[&str]| -> ToolOutput {
        let mut args = vec!["--group", "G", "--reset-offsets", "--topic", "reset"];
        args.extend_from_slice(how);
        args.push("--execute");
        let out = groups(t, b, &args).ok();
        let rows = table(&out, "GROUP");
        assert_eq!(rows.len(), 1, "{out}");
        assert_eq!(rows[0]["TOPIC"], "reset", "{out}");
        assert_eq!(rows[0]["PARTITION"], "0", "{out}");
        out
    };
    let new_offset = |out: &ToolOutput| table(out, "GROUP")[0]["NEW-OFFSET"].clone();
    let current = || {
        let d = groups(t, b, &["--group", "G", "--describe"]).ok();
        let r = describe_row(&d, "reset", 0);
        (r["CURRENT-OFFSET"].clone(), r["LAG"].clone())
    };

    let r = reset(&["--to-earliest"]);
    assert_eq!(new_offset(&r), "0", "{r}");
    assert_eq!(current(), ("0".to_string(), "5".to_string()));
    let out = consume_group(t, b, "reset", "G", 1, &one);
    assert_eq!(out.lines(), vec!["m0"], "{out}");

    let r = reset(&["--to-latest"]);
    assert_eq!(new_offset(&r), "5", "{r}");
    assert_eq!(current(), ("5".to_string(), "0".to_string()));

    let r = reset(&["--to-offset", "2"]);
    assert_eq!(new_offset(&r), "2", "{r}");
    let r = reset(&["--shift-by", "-1"]);
    assert_eq!(new_offset(&r), "1", "{r}");
    let out = consume_group(t, b, "reset", "G", 1, &one);
    assert_eq!(out.lines(), vec!["m1"], "{out}");

    let when = iso_utc(stamps[3]);
    let r = reset(&["--to-datetime", &when]);
    assert_eq!(new_offset(&r), "3", "{when}: {r}");
    let out = consume_group(t, b, "reset", "G", 2, &one);
    assert_eq!(out.lines(), vec!["m3", "m4"], "{out}");

    // --dry-run shows without changing.
    let dry = groups(
        t,
        b,
        &[
            "--group",
            "G",
            "--reset-offsets",
            "--topic",
            "reset",
            "--to-earliest",
            "--dry-run",
        ],
    )
    .ok();
    assert_eq!(table(&dry, "GROUP")[0]["NEW-OFFSET"], "0", "{dry}");
    assert_eq!(current().0, "5");

    // While a member is active: no reset, no delete.
    let mut cc = Bg::tool(
        t,
        "kafka-console-consumer.sh",
        &[
            "--bootstrap-server",
            &bs,
            "--topic",
            "reset",
            "--group",
            "G",
        ],
    );
    wait_until("the console consumer joins", WAIT, || {
        let (s, so) = state_row(t, b, "G");
        if s["STATE"] == "Stable" && s["#MEMBERS"] == "1" {
            Ok(())
        } else {
            Err(so.to_string())
        }
    });
    let refused = groups(
        t,
        b,
        &[
            "--group",
            "G",
            "--reset-offsets",
            "--topic",
            "reset",
            "--to-earliest",
            "--execute",
        ],
    );
    refused.expect_contains("Assignments can only be reset if the group 'G' is inactive, but the current state is Stable.");
    let refused = groups(t, b, &["--group", "G", "--delete"]);
    refused.expect_contains("Group 'G' could not be deleted due to: org.apache.kafka.common.errors.GroupNotEmptyException: The group is not empty.");
    assert_eq!(current().0, "5", "nothing changed");
    cc.term();

    // --delete-offsets: the group forgets the partition; --from-beginning applies again.
    let del = groups(
        t,
        b,
        &["--group", "G", "--delete-offsets", "--topic", "reset"],
    )
    .ok();
    del.expect_contains("Request succeeded for deleting offsets from group G.");
    let rows = table(&del, "TOPIC");
    assert_eq!(rows.len(), 1, "{del}");
    assert_eq!(rows[0]["PARTITION"], "0", "{del}");
    assert_eq!(rows[0]["STATUS"], "Successful", "{del}");
    let out = consume_group(
        t,
        b,
        "reset",
        "G",
        1,
        &[
            "--from-beginning",
            "--consumer-property",
            "max.poll.records=1",
        ],
    );
    assert_eq!(out.lines(), vec!["m0"], "{out}");

    let del = groups(t, b, &["--group", "G", "--delete"]).ok();
    del.expect_contains("Deletion of requested consumer groups ('G') was successful.");
    let list = groups(t, b, &["--list"]).ok();
    assert!(!list.lines().contains(&"G"), "{list}");
    groups(t, b, &["--group", "G", "--describe"]).expect_contains("Group G not found.");
}

// ---------------------------------------------------------------------------
// 4. kafka-verifiable-consumer.sh
// ---------------------------------------------------------------------------

#[test]
fn verifiable_consumer_consumes_and_commits() {
    run_alone_unless_shared(
        test_name!(),
        start,
        verifiable_consumer_consumes_and_commits_on,
    );
}

/// The body of [`verifiable_consumer_consumes_and_commits`], also a scenario on the suite's shared cluster.
fn verifiable_consumer_consumes_and_commits_on(t: &Tools, b: &Target) {
    create_topic(t, b, "verify-test", 1);
    let bs = b.bootstrap();
    run_on(
        t,
        b,
        "kafka-verifiable-producer.sh",
        &["--topic", "verify-test", "--max-messages", "10"],
    )
    .ok()
    .expect_contains("\"acked\":10");
    let out = t
        .run(
            "kafka-verifiable-consumer.sh",
            &[
                "--topic",
                "verify-test",
                "--group-id",
                "test-group",
                "--bootstrap-server",
                &bs,
                "--max-messages",
                "10",
            ],
        )
        .ok();
    let events: Vec<Value> = out
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}\n{out}")))
        .collect();
    let names: Vec<&str> = events
        .iter()
        .map(|e| e["name"].as_str().unwrap_or(""))
        .collect();
    assert_eq!(names.first(), Some(&"startup_complete"), "{out}");
    assert_eq!(names.last(), Some(&"shutdown_complete"), "{out}");
    let assigned = events
        .iter()
        .find(|e| e["name"] == "partitions_assigned")
        .unwrap_or_else(|| panic!("{out}"));
    assert_eq!(
        assigned["partitions"],
        serde_json::json!([{"topic": "verify-test", "partition": 0}]),
        "{out}"
    );
    let consumed: Vec<&Value> = events
        .iter()
        .filter(|e| e["name"] == "records_consumed")
        .collect();
    assert_eq!(
        consumed
            .iter()
            .map(|e| e["count"].as_u64().unwrap())
            .sum::<u64>(),
        10,
        "{out}"
    );
    let min = consumed
        .iter()
        .map(|e| e["partitions"][0]["minOffset"].as_i64().unwrap())
        .min();
    let max = consumed
        .iter()
        .map(|e| e["partitions"][0]["maxOffset"].as_i64().unwrap())
        .max();
    assert_eq!((min, max), (Some(0), Some(9)), "{out}");
    let commits: Vec<&Value> = events
        .iter()
        .filter(|e| e["name"] == "offsets_committed")
        .collect();
    assert!(!commits.is_empty(), "{out}");
    assert!(commits.iter().all(|e| e["success"] == true), "{out}");
    let last = commits.last().unwrap();
    assert_eq!(
        last["offsets"],
        serde_json::json!([{"topic": "verify-test", "partition": 0, "offset": 10}]),
        "{out}"
    );

    let d = groups(t, b, &["--group", "test-group", "--describe"]).ok();
    let r = describe_row(&d, "verify-test", 0);
    assert_eq!(
        (r["CURRENT-OFFSET"].as_str(), r["LAG"].as_str()),
        ("10", "0"),
        "{d}"
    );
    // Run again: nothing new to read, it starts at the committed offset.
    run_on(
        t,
        b,
        "kafka-verifiable-producer.sh",
        &["--topic", "verify-test", "--max-messages", "3"],
    )
    .ok();
    let out = t
        .run(
            "kafka-verifiable-consumer.sh",
            &[
                "--topic",
                "verify-test",
                "--group-id",
                "test-group",
                "--bootstrap-server",
                &bs,
                "--max-messages",
                "3",
            ],
        )
        .ok();
    let consumed: Vec<Value> = out
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["name"] == "records_consumed")
        .collect();
    assert_eq!(
        consumed
            .iter()
            .map(|e| e["count"].as_u64().unwrap())
            .sum::<u64>(),
        3,
        "{out}"
    );
    assert_eq!(consumed[0]["partitions"][0]["minOffset"], 10, "{out}");
}

// ---------------------------------------------------------------------------
// 5. Several members: Java and librdkafka in one group
// ---------------------------------------------------------------------------

#[test]
fn group_members_share_partitions_and_take_over() {
    run_alone_unless_shared(
        test_name!(),
        start,
        group_members_share_partitions_and_take_over_on,
    );
}

/// The body of [`group_members_share_partitions_and_take_over`], also a scenario on the suite's shared cluster.
fn group_members_share_partitions_and_take_over_on(t: &Tools, b: &Target) {
    create_topic(t, b, "six", 6);
    let (topic, group) = ("six", "mixed-group");

    // Java members (range is the first assignor both clients know).
    let a = Member::java(t, b, "java-A", topic, group, &[]);
    let mut bm = Member::java(t, b, "java-B", topic, group, &["--session-timeout", "6000"]);
    wait_assignment(&[&a, &bm], 6, Some(&[3, 3]), WAIT);
    let mut all = produce_keyed(t, b, topic, "one", 300);
    wait_delivered_once(&[&a, &bm], &all);
    assert!(
        got_some(&a, "one-") && got_some(&bm, "one-"),
        "{}",
        describe_members(&[&a, &bm])
    );

    // A librdkafka member joins: 2 partitions each.
    let mut c = Member::rdkafka(
        t,
        b,
        "rdkafka-C",
        topic,
        group,
        &["session.timeout.ms=45000"],
    );
    wait_assignment(&[&a, &bm, &c], 6, Some(&[2, 2, 2]), WAIT);
    let (s, so) = state_row(t, b, group);
    assert_eq!(
        (
            s["STATE"].as_str(),
            s["#MEMBERS"].as_str(),
            s["ASSIGNMENT-STRATEGY"].as_str()
        ),
        ("Stable", "3", "range"),
        "{so}"
    );
    all.extend(produce_keyed(t, b, topic, "two", 300));
    wait_delivered_once(&[&a, &bm, &c], &all);
    for m in [&a, &bm, &c] {
        assert!(
            got_some(m, "two-"),
            "{} got records:\n{}",
            m.label,
            describe_members(&[&a, &bm, &c])
        );
    }

    // C closes: it leaves at once, A and B take over long before C's 45 s session timeout.
    let left = Instant::now();
    assert!(c.bg.term().success(), "{}", c.bg);
    assert!(c.bg.stdout().contains("shutdown_complete"), "{}", c.bg);
    wait_assignment(&[&a, &bm], 6, Some(&[3, 3]), WAIT);
    let took = left.elapsed();
    assert!(
        took < Duration::from_secs(15),
        "takeover after a clean leave took {took:?}"
    );
    all.extend(produce_keyed(t, b, topic, "three", 300));
    wait_delivered_once(&[&a, &bm, &c], &all);
    assert!(!got_some(&c, "three-"));

    // B is killed (no LeaveGroup): removed once its 6 s session times out.
    let killed = Instant::now();
    let b_owned = bm.owned();
    bm.bg.kill9();
    let took = wait_assignment(&[&a], 6, Some(&[6]), WAIT);
    let took_from_kill = killed.elapsed();
    eprintln!("takeover after SIGKILL of a member with session.timeout.ms=6000: {took_from_kill:?} (wait {took:?})");
    assert!(
        took_from_kill >= Duration::from_secs(3),
        "a killed member is only removed by its session timeout (6 s, heartbeats every 3 s), not at once: {took_from_kill:?}"
    );
    assert!(
        took_from_kill < Duration::from_secs(30),
        "{took_from_kill:?}"
    );
    assert!(!b_owned.is_empty());
    all.extend(produce_keyed(t, b, topic, "four", 300));
    wait_delivered_once(&[&a, &bm, &c], &all);
    let (s, so) = state_row(t, b, group);
    assert_eq!(
        (s["STATE"].as_str(), s["#MEMBERS"].as_str()),
        ("Stable", "1"),
        "{so}"
    );
}

#[test]
fn group_of_three_librdkafka_members_and_kcat() {
    run_alone_unless_shared(
        test_name!(),
        start,
        group_of_three_librdkafka_members_and_kcat_on,
    );
}

/// The body of [`group_of_three_librdkafka_members_and_kcat`], also a scenario on the suite's shared cluster.
fn group_of_three_librdkafka_members_and_kcat_on(t: &Tools, b: &Target) {
    // Not "six": the mixed group's topic, on the shared cluster.
    create_topic(t, b, "six-rdk", 6);
    let (topic, group) = ("six-rdk", "rdk-group");
    let x = Member::rdkafka(t, b, "rdk-X", topic, group, &[]);
    let y = Member::rdkafka(t, b, "rdk-Y", topic, group, &[]);
    let mut z = Member::rdkafka(
        t,
        b,
        "rdk-Z",
        topic,
        group,
        &["partition.assignment.strategy=range"],
    );
    wait_assignment(&[&x, &y, &z], 6, Some(&[2, 2, 2]), WAIT);
    let mut all = produce_keyed(t, b, topic, "one", 600);
    wait_delivered_once(&[&x, &y, &z], &all);
    for m in [&x, &y, &z] {
        assert!(got_some(m, "one-"), "{}", describe_members(&[&x, &y, &z]));
    }
    z.bg.term();
    wait_assignment(&[&x, &y], 6, Some(&[3, 3]), Duration::from_secs(15));
    all.extend(produce_keyed(t, b, topic, "two", 300));
    wait_delivered_once(&[&x, &y, &z], &all);

    // kcat -G (balanced consumer) in its own group reads everything.
    let bs = b.bootstrap();
    let mut k = Bg::tool(
        t,
        "kcat",
        &[
            "-b",
            &bs,
            "-u",
            "-G",
            "kcat-group",
            "-f",
            "%s\n",
            "-X",
            "auto.offset.reset=earliest",
            topic,
        ],
    );
    wait_until("kcat -G consumes all records", WAIT, || {
        let got: BTreeSet<String> = k.stdout().lines().map(str::to_string).collect();
        if all.iter().all(|v| got.contains(v)) {
            Ok(())
        } else {
            Err(format!("{} of {}\n{}", got.len(), all.len(), k))
        }
    });
    let d = wait_until("kcat-group in --describe with a member", WAIT, || {
        let d = groups(t, b, &["--group", "kcat-group", "--describe"]);
        if table(&d, "GROUP").len() == 6
            && table(&d, "GROUP")
                .iter()
                .all(|r| r["CLIENT-ID"] == "rdkafka")
        {
            Ok(d)
        } else {
            Err(d.to_string())
        }
    });
    assert!(d.combined().contains("/127.0.0.1"), "{d}");
    k.term();
}

#[test]
fn group_resumes_at_committed_offsets_after_broker_restart() {
    let t = tools_or_skip!();
    let mut b = start();
    create_topic(&t, &b, "durable", 3);
    let (topic, group) = ("durable", "durable-group");
    let mut first = Member::java(&t, &b, "java-1", topic, group, &[]);
    // A librdkafka member of another group stays up while the broker restarts.
    let live = Member::rdkafka(&t, &b, "rdk-live", topic, "live-group", &[]);
    wait_assignment(&[&first], 3, Some(&[3]), WAIT);
    wait_assignment(&[&live], 3, Some(&[3]), WAIT);
    let before = produce_keyed(&t, &b, topic, "before", 90);
    wait_delivered_once(&[&first], &before);
    wait_delivered_once(&[&live], &before);
    first.bg.term();
    let ends = end_offsets(&t, &b, topic);
    let committed = |b: &Target| -> BTreeMap<i32, String> {
        let d = groups(&t, b, &["--group", group, "--describe"]).ok();
        table(&d, "GROUP")
            .iter()
            .map(|r| (r["PARTITION"].parse().unwrap(), r["CURRENT-OFFSET"].clone()))
            .collect()
    };
    let want: BTreeMap<i32, String> = ends.iter().map(|(p, o)| (*p, o.to_string())).collect();
    assert_eq!(committed(&b), want);

    b.restart();
    assert_eq!(
        committed(&b),
        want,
        "committed offsets survive a broker restart"
    );
    let after = produce_keyed(&t, &b, topic, "after", 90);
    let second = Member::java(&t, &b, "java-2", topic, group, &[]);
    wait_delivered_once(&[&second], &after);
    let stray: Vec<String> = second
        .values()
        .into_iter()
        .filter(|v| v.starts_with("before-"))
        .collect();
    assert!(
        stray.is_empty(),
        "records committed before the restart were delivered again: {stray:?}\n{}",
        second.bg
    );

    // The member that stayed up rejoins by itself and continues where it was.
    let mut everything = before.clone();
    everything.extend(after.iter().cloned());
    wait_delivered_once(&[&live], &everything);
}

// ---------------------------------------------------------------------------
// 6. Assignors
// ---------------------------------------------------------------------------

fn assignor_case(class: &str, protocol: &str, cooperative: bool) {
    let t = single_broker_tools_or_skip!(
        &format!("assignor {protocol}"),
        "the assignors run in the clients; the single-broker run covers them",
    );
    let b = start();
    create_topic(&t, &b, "six", 6);
    let (topic, group) = ("six", "assignor-group");
    let strat = format!("org.apache.kafka.clients.consumer.{class}");
    let a = Member::java(
        &t,
        &b,
        "java-A",
        topic,
        group,
        &["--assignment-strategy", &strat],
    );
    wait_assignment(&[&a], 6, Some(&[6]), WAIT);
    let a_events_before = a.events().len();
    let mut bm = Member::java(
        &t,
        &b,
        "java-B",
        topic,
        group,
        &["--assignment-strategy", &strat],
    );
    wait_assignment(&[&a, &bm], 6, Some(&[3, 3]), WAIT);
    let (s, so) = state_row(&t, &b, group);
    assert_eq!(
        (
            s["STATE"].as_str(),
            s["ASSIGNMENT-STRATEGY"].as_str(),
            s["#MEMBERS"].as_str()
        ),
        ("Stable", protocol, "2"),
        "{so}"
    );

    // What A gave up when B joined.
    let a_events = a.events();
    let revoked: Vec<BTreeSet<i64>> = a_events[a_events_before..]
        .iter()
        .filter(|e| e["name"] == "partitions_revoked")
        .map(|e| {
            e["partitions"]
                .as_array()
                .unwrap()
                .iter()
                .map(|p| p["partition"].as_i64().unwrap())
                .collect()
        })
        .collect();
    let revoked_all: BTreeSet<i64> = revoked.iter().flatten().copied().collect();
    if cooperative {
        // Incremental: A only gives up the partitions B gets, and keeps the rest throughout.
        assert_eq!(
            revoked_all,
            bm.owned(),
            "cooperative: A revokes exactly what moves to B\n{}",
            describe_members(&[&a, &bm])
        );
        assert!(revoked_all.is_disjoint(&a.owned()));
    } else {
        assert_eq!(
            revoked_all,
            (0..6).collect(),
            "eager: A revokes everything\n{}",
            describe_members(&[&a, &bm])
        );
    }

    let mut all = produce_keyed(&t, &b, topic, "one", 300);
    wait_delivered_once(&[&a, &bm], &all);
    assert!(got_some(&a, "one-") && got_some(&bm, "one-"));

    let a_kept = a.owned();
    bm.bg.term();
    wait_assignment(&[&a], 6, Some(&[6]), Duration::from_secs(20));
    if cooperative || class == "StickyAssignor" {
        assert!(a_kept.is_subset(&a.owned()));
    }
    all.extend(produce_keyed(&t, &b, topic, "two", 120));
    wait_delivered_once(&[&a, &bm], &all);
}

#[test]
fn assignor_round_robin() {
    assignor_case("RoundRobinAssignor", "roundrobin", false);
}

#[test]
fn assignor_sticky() {
    assignor_case("StickyAssignor", "sticky", false);
}

#[test]
fn assignor_cooperative_sticky() {
    assignor_case("CooperativeStickyAssignor", "cooperative-sticky", true);
}

// ---------------------------------------------------------------------------
// 7. Static membership
// ---------------------------------------------------------------------------

#[test]
fn static_member_restart_causes_no_rebalance() {
    let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);
    let b = start();
    create_topic(&t, &b, "six", 6);
    let (topic, group) = ("six", "static-group");
    // 90 s: the restart below starts three JVM tools, which took over 30 s on a loaded
    // 2-core CI machine; Kafka allows up to group.max.session.timeout.ms (30 min).
    let static_args = ["--group-instance-id", "i1", "--session-timeout", "90000"];
    // The static member joins first and owns everything; when the other member
    // joins, it rejoins owning partitions (its subscription metadata then lists
    // them), so its restart comes back with different metadata, as in real life.
    let mut s1 = Member::java(&t, &b, "static-i1", topic, group, &static_args);
    wait_assignment(&[&s1], 6, Some(&[6]), WAIT);
    let other = Member::java(
        &t,
        &b,
        "dynamic-other",
        topic,
        group,
        &["--session-timeout", "90000"],
    );
    wait_assignment(&[&s1, &other], 6, Some(&[3, 3]), WAIT);
    let mut all = produce_keyed(&t, &b, topic, "one", 120);
    wait_delivered_once(&[&s1, &other], &all);
    let s1_owned = s1.owned();
    let other_rebalances = (
        other.count("partitions_assigned"),
        other.count("partitions_revoked"),
    );
    let members_before = {
        let d = groups(&t, &b, &["--group", group, "--describe", "--members"]).ok();
        table(&d, "GROUP")
            .iter()
            .map(|r| r["CONSUMER-ID"].clone())
            .collect::<BTreeSet<_>>()
    };

    // Stop the static member: it does not leave the group.
    let stopped = Instant::now();
    s1.bg.term();
    let (s, so) = state_row(&t, &b, group);
    assert_eq!(
        (s["STATE"].as_str(), s["#MEMBERS"].as_str()),
        ("Stable", "2"),
        "the static member stays a member:\n{so}"
    );

    // Back within the session timeout, with the same group.instance.id.
    let s1b = Member::java(&t, &b, "static-i1-again", topic, group, &static_args);
    wait_until(
        "the restarted static member gets its partitions back",
        WAIT,
        || {
            if s1b.owned() == s1_owned {
                Ok(())
            } else {
                Err(describe_members(&[&s1b, &other]))
            }
        },
    );
    all.extend(produce_keyed(&t, &b, topic, "two", 120));
    wait_delivered_once(&[&s1, &s1b, &other], &all);
    assert!(got_some(&s1b, "two-"));
    assert!(
        stopped.elapsed() < Duration::from_secs(90),
        "the test must stay within the session timeout"
    );
    assert_eq!(
        (
            other.count("partitions_assigned"),
            other.count("partitions_revoked")
        ),
        other_rebalances,
        "no rebalance: the other member was never revoked or reassigned\n{}",
        describe_members(&[&s1b, &other])
    );
    assert_eq!(other.owned().len(), 3);
    let d = groups(&t, &b, &["--group", group, "--describe", "--members"]).ok();
    let rows = table(&d, "GROUP");
    assert_eq!(rows.len(), 2, "{d}");
    let members_after: BTreeSet<String> = rows.iter().map(|r| r["CONSUMER-ID"].clone()).collect();
    assert_eq!(
        members_before.intersection(&members_after).count(),
        1,
        "the static member has a new member id, the other the same:\n{d}"
    );
    assert!(rows.iter().all(|r| r["#PARTITIONS"] == "3"), "{d}");
    assert_eq!(
        rows.iter()
            .filter(|r| r["GROUP-INSTANCE-ID"] == "i1")
            .count(),
        1,
        "{d}"
    );
}

// ---------------------------------------------------------------------------
// 8. Bad commits
// ---------------------------------------------------------------------------

#[test]
fn bad_offset_commits_get_kafka_errors() {
    run_alone_unless_shared(test_name!(), start, bad_offset_commits_get_kafka_errors_on);
}

/// The body of [`bad_offset_commits_get_kafka_errors`], also a scenario on the suite's shared cluster.
fn bad_offset_commits_get_kafka_errors_on(t: &Tools, b: &Target) {
    create_topic(t, b, "bad", 2);
    let bs = b.bootstrap();
    kcat_produce(t, b, "bad", &["-p", "0"], "a\nb\nc\n");
    let out = t
        .run(
            "python",
            &[&script("groups_bad_commits.py"), &bs, "bad", "g8"],
        )
        .ok();
    let r: Value = serde_json::from_str(out.lines().last().expect("summary"))
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(r["assignment"], serde_json::json!([0, 1]), "{out}");
    assert_eq!(
        r["unknown_topic"]["error"], "UnknownTopicOrPartitionError",
        "{out}"
    );
    assert_eq!(r["unknown_topic"]["code"], 3, "{out}");
    assert_eq!(r["unknown_partition"]["code"], 3, "{out}");
    assert_eq!(
        r["stale_generation"]["error"], "IllegalGenerationError",
        "{out}"
    );
    assert_eq!(r["stale_generation"]["code"], 22, "{out}");
    assert_eq!(
        r["unknown_member"]["error"], "UnknownMemberIdError",
        "{out}"
    );
    assert_eq!(r["good"]["code"], 0, "{out}");
    assert_eq!(r["rdkafka_unknown_topic"], "UNKNOWN_TOPIC_OR_PART", "{out}");
    let after: Vec<String> = (0..10).map(|i| format!("after-{i}")).collect();
    assert_eq!(r["after_values"], serde_json::json!(after), "{out}");
    assert_eq!(
        r["generation_after"], r["generation"],
        "no rebalance from bad commits: {out}"
    );
    assert_eq!(r["committed_p0"], 13, "{out}");

    // The group is healthy: committed offsets show, and a new member resumes there.
    let d = groups(t, b, &["--group", "g8", "--describe"]).ok();
    assert_eq!(describe_row(&d, "bad", 0)["CURRENT-OFFSET"], "13", "{d}");
    assert!(!d.stdout.contains("no-such-topic"), "{d}");
    kcat_produce(t, b, "bad", &["-p", "1"], "x\ny\n");
    let v = t
        .run(
            "kafka-verifiable-consumer.sh",
            &[
                "--topic",
                "bad",
                "--group-id",
                "g8",
                "--bootstrap-server",
                &bs,
                "--max-messages",
                "2",
                "--verbose",
            ],
        )
        .ok();
    let values: Vec<String> = v
        .lines()
        .iter()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["name"] == "record_data")
        .map(|e| e["value"].as_str().unwrap().to_string())
        .collect();
    assert_eq!(values, vec!["x", "y"], "{v}");
}

// ---------------------------------------------------------------------------
// The request path never stalls: compaction and topic creation vs heartbeats
// ---------------------------------------------------------------------------

/// Bytes of the `.log` files in a partition directory (0 if it is missing).
fn log_bytes(dir: &std::path::Path) -> u64 {
    std::fs::read_dir(dir)
        .map(|entries| {
            entries
                .filter_map(Result::ok)
                .filter(|e| e.file_name().to_string_lossy().ends_with(".log"))
                .filter_map(|e| e.metadata().ok())
                .map(|m| m.len())
                .sum()
        })
        .unwrap_or(0)
}

/// Issue 7: while a large `__consumer_offsets` partition is compacted and a
/// topic with 2,000 partitions is created, a group of real consumers with a
/// 6 s session timeout keeps every member: no rebalance (no partition is
/// revoked or newly assigned, which any generation change causes with the eager
/// protocol), and every member is still in the group.
///
/// `__consumer_offsets` has one partition with 1 MiB segments and the cleaner
/// looks every second, so the offsets committed by a filler (librdkafka, 200 MB
/// of mostly superseded commits) are cleaned while the group commits too.
///
/// Not on three brokers: 200 MB of commits replicated three times would take most of the
/// cluster phase's time budget; `cluster.rs` creates 2,000 partitions of RF 3 on three
/// brokers within the admin client's timeout, and `cluster_groups.rs` moves a coordinator.
#[test]
fn group_keeps_members_while_offsets_compact_and_topic_created() {
    let t = single_broker_tools_or_skip!(
        "200 MB of commits on RF 3 exceeds the cluster phase's budget; cluster.rs creates the \
         2,000 partitions on three brokers",
    );
    keeps_members_while_offsets_compact_and_topic_created(&t);
}

fn keeps_members_while_offsets_compact_and_topic_created(t: &Tools) {
    let b = Target::start(&[
        ("group.initial.rebalance.delay.ms", "0"),
        ("offsets.topic.num.partitions", "1"),
        ("offsets.topic.segment.bytes", "1048576"),
        ("log.cleaner.backoff.ms", "1000"),
    ]);
    let (topic, group) = ("work", "steady-group");
    create_topic(t, &b, topic, 6);
    create_topic(t, &b, "filler", 100);
    let session = ["session.timeout.ms=6000"];
    let a = Member::java(
        t,
        &b,
        "java-A",
        topic,
        group,
        &["--session-timeout", "6000"],
    );
    let m_b = Member::rdkafka(t, &b, "rdkafka-B", topic, group, &session);
    let m_c = Member::rdkafka(t, &b, "rdkafka-C", topic, group, &session);
    let members = [&a, &m_b, &m_c];
    wait_assignment(&members, 6, Some(&[2, 2, 2]), WAIT);
    // Records keep flowing to every partition, so every member commits throughout (to the
    // partition being cleaned). Keyed (keys 0..59 hash to all six partitions): without keys
    // the sticky partitioner fills one partition at a time, and a 60 s run has left two
    // partitions, one member's, without a record.
    let bs = b.bootstrap();
    let _producer = Bg::tool(
        t,
        "kafka-verifiable-producer.sh",
        &[
            "--bootstrap-server",
            &bs,
            "--topic",
            topic,
            "--throughput",
            "50",
            "--max-messages",
            "-1",
            "--repeating-keys",
            "60",
        ],
    );
    wait_until("members consuming", WAIT, || {
        if members.iter().all(|m| m.count("offsets_committed") > 0) {
            Ok(())
        } else {
            Err(describe_members(&members))
        }
    });
    let before: Vec<(BTreeSet<i64>, usize, usize)> = members
        .iter()
        .map(|m| {
            (
                m.owned(),
                m.count("partitions_assigned"),
                m.count("partitions_revoked"),
            )
        })
        .collect();

    let started = Instant::now();
    let filler_script = script("offsets_filler.py");
    let mut filler = Bg::tool(
        t,
        "python",
        &[
            "-u",
            &filler_script,
            &bs,
            "filler",
            "100",
            "10",
            "100",
            "2000",
        ],
    );
    // The wide topic is created while the filler commits and the cleaner works.
    thread::sleep(Duration::from_secs(3));
    let created = Instant::now();
    create_topic(t, &b, "wide", 2000);
    let create_took = created.elapsed();
    wait_until(
        "the filler to finish",
        Duration::from_secs(180),
        || match filler.try_status() {
            Some(status) => {
                assert!(status.success(), "filler failed:\n{filler}");
                Ok(())
            }
            _ => Err(filler.to_string()),
        },
    );
    assert!(filler.stdout().contains("\"filled\""), "{filler}");
    // The cleaner has really worked: much of the 200 MB of superseded commits is gone.
    // Every replica compacts its own copy: each broker's (all of them in a cluster, RF 3).
    let offsets_dirs: Vec<std::path::PathBuf> = b
        .node_ids()
        .iter()
        .map(|&id| b.node(id as usize).data_dir().join("__consumer_offsets-0"))
        .collect();
    wait_until(
        "__consumer_offsets-0 compacted",
        Duration::from_secs(120),
        || {
            let big: Vec<String> = offsets_dirs
                .iter()
                .map(|dir| (dir, log_bytes(dir)))
                .filter(|(_, bytes)| *bytes >= 120_000_000)
                .map(|(dir, bytes)| format!("{bytes} bytes of segments in {}", dir.display()))
                .collect();
            if big.is_empty() {
                Ok(())
            } else {
                Err(big.join("\n"))
            }
        },
    );
    // Longer than a session: a member whose heartbeats were stalled would be gone by now.
    let settle = Instant::now() + Duration::from_secs(10);
    while Instant::now() < settle {
        thread::sleep(Duration::from_millis(200));
    }
    eprintln!(
        "filler + compaction + topic creation took {:?}; creating 2000 partitions took {create_took:?}; __consumer_offsets-0 now {:?} bytes",
        started.elapsed(),
        offsets_dirs.iter().map(|d| log_bytes(d)).collect::<Vec<_>>()
    );
    let after: Vec<(BTreeSet<i64>, usize, usize)> = members
        .iter()
        .map(|m| {
            (
                m.owned(),
                m.count("partitions_assigned"),
                m.count("partitions_revoked"),
            )
        })
        .collect();
    assert_eq!(
        before,
        after,
        "a member lost its partitions or the group rebalanced while the offsets were compacted:\n{}\n{}",
        describe_members(&members),
        b.log_tail(60)
    );
    let (s, so) = state_row(t, &b, group);
    assert_eq!(
        (s["STATE"].as_str(), s["#MEMBERS"].as_str()),
        ("Stable", "3"),
        "{so}"
    );
}

// ---------------------------------------------------------------------------
// 9. The consumer rebalance protocol (KIP-848, group.protocol=consumer)
// ---------------------------------------------------------------------------

/// Java consumers with `--group-protocol consumer` (the broker assigns, members heartbeat
/// with ConsumerGroupHeartbeat): three split a topic, one leaves, one is killed with -9 and
/// is removed after the broker-side session timeout, a librdkafka member joins; every record
/// is consumed exactly once and committed, and `kafka-consumer-groups.sh` shows the group as a consumer
/// group with the members and the `uniform` assignor.
#[test]
fn consumer_protocol_members_split_leave_die_and_join() {
    let t = single_broker_tools_or_skip!(
        "not run on three brokers yet (KIP-848 membership is not persisted across a \
         coordinator failover); the single-broker run covers the protocol",
    );
    // Session and heartbeat are broker settings with this protocol; short ones for test
    // speed (Kafka's minimums are lowered to allow them).
    let b = Target::start(&[
        ("group.consumer.min.session.timeout.ms", "6000"),
        ("group.consumer.session.timeout.ms", "6000"),
        ("group.consumer.min.heartbeat.interval.ms", "1000"),
        ("group.consumer.heartbeat.interval.ms", "1000"),
    ]);
    create_topic(&t, &b, "six-kip848", 6);
    let (topic, group) = ("six-kip848", "kip848-group");
    let consumer = ["--group-protocol", "consumer"];

    let a = Member::java(&t, &b, "java-A", topic, group, &consumer);
    let mut bm = Member::java(&t, &b, "java-B", topic, group, &consumer);
    let mut c = Member::java(&t, &b, "java-C", topic, group, &consumer);
    wait_assignment(&[&a, &bm, &c], 6, Some(&[2, 2, 2]), WAIT);
    let mut all = produce_keyed(&t, &b, topic, "one", 300);
    wait_delivered_once(&[&a, &bm, &c], &all);

    let (s, so) = state_row(&t, &b, group);
    assert_eq!(
        (
            s["STATE"].as_str(),
            s["#MEMBERS"].as_str(),
            s["ASSIGNMENT-STRATEGY"].as_str()
        ),
        ("Stable", "3", "uniform"),
        "{so}"
    );
    let members = groups(&t, &b, &["--describe", "--group", group, "--members"]).ok();
    let rows = table(&members, "GROUP");
    assert_eq!(rows.len(), 3, "{members}");
    assert!(rows.iter().all(|r| r["#PARTITIONS"] == "2"), "{members}");
    let listed = groups(&t, &b, &["--list", "--type"]).ok();
    assert!(
        listed
            .lines()
            .iter()
            .any(|l| l.split_whitespace().collect::<Vec<_>>() == [group, "Consumer"]),
        "{listed}"
    );

    // C closes: it leaves with epoch -1; A and B take its partitions at once. (The tool
    // exits with 143 after SIGTERM with this protocol, on Kafka too; what matters is that
    // it closed its consumer.)
    let left = Instant::now();
    c.bg.term();
    assert!(c.bg.stdout().contains("shutdown_complete"), "{}", c.bg);
    wait_assignment(&[&a, &bm], 6, Some(&[3, 3]), WAIT);
    assert!(
        left.elapsed() < Duration::from_secs(15),
        "{:?}",
        left.elapsed()
    );
    all.extend(produce_keyed(&t, &b, topic, "two", 300));
    wait_delivered_once(&[&a, &bm, &c], &all);
    assert!(!got_some(&c, "two-"));

    // B is killed: the broker removes it when its 6 s session ends, not before.
    let killed = Instant::now();
    bm.bg.kill9();
    wait_assignment(&[&a], 6, Some(&[6]), WAIT);
    let took = killed.elapsed();
    assert!(
        took >= Duration::from_secs(4) && took < Duration::from_secs(30),
        "a killed member leaves by its session timeout (6 s): {took:?}"
    );
    all.extend(produce_keyed(&t, &b, topic, "three", 300));
    wait_delivered_once(&[&a, &bm, &c], &all);

    // D, a librdkafka member (group.protocol=consumer), joins: half each, and everything
    // still exactly once.
    let d = Member::rdkafka(
        &t,
        &b,
        "rdkafka-D",
        topic,
        group,
        &["group.protocol=consumer"],
    );
    wait_assignment(&[&a, &d], 6, Some(&[3, 3]), WAIT);
    all.extend(produce_keyed(&t, &b, topic, "four", 300));
    wait_delivered_once(&[&a, &bm, &c, &d], &all);
    assert!(got_some(&d, "four-"), "{}", describe_members(&[&a, &d]));
}

/// KIP-848 groups are kept in `__consumer_offsets`: the broker is killed with -9 and started
/// again from its log dir while two Java members (`group.protocol=consumer`) run. The loaded
/// group has them with their ids and epochs, so they go on without rejoining (no new
/// assignment, `--describe --members --verbose` shows the same members at the same epochs),
/// and every record produced before and after is consumed exactly once and committed.
#[test]
fn consumer_protocol_group_survives_a_broker_kill9() {
    let t = single_broker_tools_or_skip!(
        "it kills its one broker; the coordinator moving within a cluster is \
         cluster_groups.rs's",
    );
    let mut b = Target::start(&[
        ("group.consumer.min.heartbeat.interval.ms", "1000"),
        ("group.consumer.heartbeat.interval.ms", "1000"),
    ]);
    let (topic, group) = ("kip848-durable", "kip848-durable-group");
    create_topic(&t, &b, topic, 4);
    let consumer = ["--group-protocol", "consumer"];
    let a = Member::java(&t, &b, "java-A", topic, group, &consumer);
    let c = Member::java(&t, &b, "java-B", topic, group, &consumer);
    wait_assignment(&[&a, &c], 4, Some(&[2, 2]), WAIT);
    let mut all = produce_keyed(&t, &b, topic, "before", 200);
    wait_delivered_once(&[&a, &c], &all);

    // Member id -> its epoch, as the admin tool prints them.
    let members = |b: &Target| -> (BTreeMap<String, String>, ToolOutput) {
        let out = groups(
            &t,
            b,
            &["--describe", "--group", group, "--members", "--verbose"],
        );
        let rows = table(&out, "GROUP")
            .into_iter()
            .map(|r| {
                let epoch = r.get("CURRENT-EPOCH").cloned().unwrap_or_default();
                (r["CONSUMER-ID"].clone(), epoch)
            })
            .collect();
        (rows, out)
    };
    let (before, out) = members(&b);
    assert_eq!(before.len(), 2, "{out}");
    assert!(before.values().all(|e| !e.is_empty()), "{out}");
    let assigned = |m: &Member| m.count("partitions_assigned");
    let assigned_before = (assigned(&a), assigned(&c));

    b.kill9_all_and_start_again();
    let after = wait_until("the members described after the restart", WAIT, || {
        let (rows, out) = members(&b);
        if rows.len() == 2 {
            Ok(rows)
        } else {
            Err(out.to_string())
        }
    });
    assert_eq!(
        after, before,
        "the same members at the same epochs after the restart"
    );

    all.extend(produce_keyed(&t, &b, topic, "after", 200));
    wait_delivered_once(&[&a, &c], &all);
    assert!(got_some(&a, "after-") && got_some(&c, "after-"));
    assert_eq!(
        (assigned(&a), assigned(&c)),
        assigned_before,
        "no member was given a new assignment (it would have rejoined)\n{}",
        describe_members(&[&a, &c])
    );
    let (still, out) = members(&b);
    assert_eq!(still, before, "{out}");
}

/// A regular expression subscription resolved by the broker (KIP-848), with two real
/// clients in groups of their own: a librdkafka consumer (confluent-kafka,
/// `group.protocol=consumer`) subscribing to `^regex-orders-.*`, which it sends as
/// ConsumerGroupHeartbeat's SubscribedTopicRegex (`(^regex-orders-.*)`), and a Java
/// consumer with `subscribe(SubscriptionPattern("regex-orders-.*"))` (`java/RegexMember.java`;
/// the Java client then asks Metadata for the assigned topics by id). Each consumes the
/// matching topic, then a matching topic created after it joined (the broker resolves the
/// expression again and assigns it; the clients do nothing), never the topic that does not
/// match; the group tool describes each on the matching partitions only, and cannot delete
/// the offsets of a topic matched by the expression. Internal topics are
/// matched too, as Kafka 4.1 matches them: a member on `^__consumer_offsets` is assigned its
/// partitions.
#[test]
fn consumer_protocol_regex_subscription_picks_up_a_created_topic() {
    let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);
    let b = Target::start(&[
        ("group.consumer.min.heartbeat.interval.ms", "1000"),
        ("group.consumer.heartbeat.interval.ms", "1000"),
    ]);
    create_topic(&t, &b, "regex-orders-eu", 2);
    create_topic(&t, &b, "regex-payments", 2);
    let rdkafka = Member::rdkafka(
        &t,
        &b,
        "rdkafka-regex",
        "^regex-orders-.*",
        "regex-group",
        &["group.protocol=consumer"],
    );
    let java_member = format!("{}/tests/java/RegexMember.java", env!("CARGO_MANIFEST_DIR"));
    let bs = b.bootstrap();
    let java = Member {
        label: "java-regex",
        bg: Bg::tool(
            &t,
            "kafka-run-class.sh",
            &[&java_member, &bs, "regex-orders-.*", "regex-group-java"],
        ),
    };
    let members = [(&rdkafka, "regex-group"), (&java, "regex-group-java")];
    // The records a member got, by topic.
    let got = |m: &Member, topic: &str| -> BTreeSet<String> {
        m.events()
            .iter()
            .filter(|e| e["name"] == "record_data" && e["topic"] == topic)
            .filter_map(|e| e["value"].as_str().map(str::to_string))
            .collect()
    };
    let wait_all = |topic: &str, want: &[String]| {
        for (m, _) in members {
            wait_until(
                &format!("every record of {topic} consumed by {}", m.label),
                WAIT,
                || {
                    let have = got(m, topic);
                    let missing = want.iter().filter(|v| !have.contains(*v)).count();
                    if missing == 0 {
                        Ok(())
                    } else {
                        Err(format!("{missing} of {} missing\n{}", want.len(), m.bg))
                    }
                },
            );
        }
    };
    let eu = produce_keyed(&t, &b, "regex-orders-eu", "eu", 100);
    let payments = produce_keyed(&t, &b, "regex-payments", "pay", 100);
    wait_all("regex-orders-eu", &eu);

    // A matching topic created after they joined, and records in it: they are consumed.
    let created = Instant::now();
    create_topic(&t, &b, "regex-orders-us", 3);
    let us = produce_keyed(&t, &b, "regex-orders-us", "us", 100);
    wait_all("regex-orders-us", &us);
    eprintln!(
        "records of a topic created after the members joined consumed by both {:?} after its \
         creation",
        created.elapsed()
    );
    let more_payments = produce_keyed(&t, &b, "regex-payments", "pay-late", 50);
    let eu_late = produce_keyed(&t, &b, "regex-orders-eu", "eu-late", 50);
    wait_all("regex-orders-eu", &eu_late);
    assert_eq!(payments.len() + more_payments.len(), 150);

    for (m, group) in members {
        // Never the topic that does not match: not assigned, no record of it consumed.
        let assigned_topics: BTreeSet<String> = m
            .events()
            .iter()
            .filter(|e| e["name"] == "partitions_assigned")
            .flat_map(|e| e["partitions"].as_array().cloned().unwrap_or_default())
            .filter_map(|p| p["topic"].as_str().map(str::to_string))
            .collect();
        assert_eq!(
            assigned_topics,
            BTreeSet::from(["regex-orders-eu".to_string(), "regex-orders-us".to_string()]),
            "{}",
            m.bg
        );
        assert!(got(m, "regex-payments").is_empty(), "{}", m.bg);

        // The group tool sees the member on the five matching partitions only.
        let (rows, out) = wait_until(&format!("{group} described on both topics"), WAIT, || {
            let out = groups(&t, &b, &["--describe", "--group", group]);
            let rows = table(&out, "GROUP");
            if rows.len() == 5 {
                Ok((rows, out))
            } else {
                Err(out.to_string())
            }
        });
        let described: BTreeSet<(String, String)> = rows
            .iter()
            .map(|r| (r["TOPIC"].clone(), r["PARTITION"].clone()))
            .collect();
        let want: BTreeSet<(String, String)> = [("eu", 2), ("us", 3)]
            .iter()
            .flat_map(|(t, n)| (0..*n).map(move |p| (format!("regex-orders-{t}"), p.to_string())))
            .collect();
        assert_eq!(described, want, "{out}");
    }

    // A topic the group subscribes to through its expression keeps its offsets: OffsetDelete
    // answers GROUP_SUBSCRIBED_TO_TOPIC for each partition.
    let del = groups(
        &t,
        &b,
        &[
            "--group",
            "regex-group",
            "--delete-offsets",
            "--topic",
            "regex-orders-us",
        ],
    );
    let rows = table(&del, "TOPIC");
    assert_eq!(rows.len(), 3, "{del}");
    assert!(
        rows.iter()
            .all(|r| r["STATUS"].contains("GroupSubscribedToTopicException")),
        "{del}"
    );

    // Kafka 4.1 excludes no internal topic from what an expression matches.
    let internal = Member::rdkafka(
        &t,
        &b,
        "rdkafka-internal",
        "^__consumer_offsets",
        "regex-internal-group",
        &["group.protocol=consumer"],
    );
    wait_until("__consumer_offsets assigned by a regex", WAIT, || {
        let out = groups(&t, &b, &["--describe", "--group", "regex-internal-group"]);
        let rows = table(&out, "GROUP");
        if !rows.is_empty() && rows.iter().all(|r| r["TOPIC"] == "__consumer_offsets") {
            Ok(())
        } else {
            Err(format!("{out}\n{}", internal.bg))
        }
    });
}

// ---------------------------------------------------------------------------
// 10. Online migration between the classic and the consumer protocol
// ---------------------------------------------------------------------------

/// A broker for the classic/consumer migration tests: no initial rebalance delay and 1 s
/// consumer heartbeats (test speed), with `extra` settings.
fn start_migrating(extra: &[(&str, &str)]) -> Target {
    let mut settings = vec![
        ("group.initial.rebalance.delay.ms", "0"),
        ("group.consumer.min.heartbeat.interval.ms", "1000"),
        ("group.consumer.heartbeat.interval.ms", "1000"),
    ];
    settings.extend_from_slice(extra);
    Target::start(&settings)
}

/// The type `kafka-consumer-groups.sh --list --type` prints for `group` ("Classic",
/// "Consumer"), with the tool's output.
fn group_type(t: &Tools, b: &Target, group: &str) -> (String, ToolOutput) {
    let out = groups(t, b, &["--list", "--type"]).ok();
    let kind = out
        .lines()
        .iter()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|cols| cols.first() == Some(&group))
        .and_then(|cols| cols.get(1).map(|c| c.to_string()))
        .unwrap_or_default();
    (kind, out)
}

/// Online migration (KIP-848's `group.consumer.migration.policy=bidirectional`, Kafka 4.x's
/// default): three Java members (kafka-verifiable-consumer.sh) of a classic group are rolled
/// one by one to `--group-protocol consumer`. The first one's ConsumerGroupHeartbeat turns
/// the group into a consumer group while the two classic members keep consuming in it (the
/// broker assigns their partitions through JoinGroup and SyncGroup); then they are rolled
/// back one by one to `--group-protocol classic`, and when the last member of the consumer
/// protocol leaves, the group is a classic group again. After every step the three members
/// split the six partitions two each, every record produced so far was consumed exactly once
/// and committed, and `kafka-consumer-groups.sh` shows the group's type and assignor change.
#[test]
fn classic_group_migrates_to_consumer_and_back_online() {
    let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);
    let b = start_migrating(&[]);
    let (topic, group) = ("migrate-six", "migrate-group");
    create_topic(&t, &b, topic, 6);
    let classic = ["--group-protocol", "classic"];
    let consumer = ["--group-protocol", "consumer"];

    let mut live = [
        Member::java(&t, &b, "A-classic", topic, group, &classic),
        Member::java(&t, &b, "B-classic", topic, group, &classic),
        Member::java(&t, &b, "C-classic", topic, group, &classic),
    ];
    wait_assignment(&live.iter().collect::<Vec<_>>(), 6, Some(&[2, 2, 2]), WAIT);
    let mut all = produce_keyed(&t, &b, topic, "start", 120);
    wait_delivered_once(&live.iter().collect::<Vec<_>>(), &all);
    let (kind, out) = group_type(&t, &b, group);
    assert_eq!(kind, "Classic", "{out}");
    let mut ids = member_ids(&t, &b, group);

    // (new member's label, its protocol, the type and assignor the group has after the step)
    let steps: [(&'static str, &[&str], &str, &str); 6] = [
        ("A-consumer", &consumer, "Consumer", "uniform"),
        ("B-consumer", &consumer, "Consumer", "uniform"),
        ("C-consumer", &consumer, "Consumer", "uniform"),
        ("A-classic-again", &classic, "Consumer", "uniform"),
        ("B-classic-again", &classic, "Consumer", "uniform"),
        ("C-classic-again", &classic, "Classic", "range"),
    ];
    let mut retired: Vec<Member> = Vec::new();
    for (step, (label, protocol, want_type, want_assignor)) in steps.into_iter().enumerate() {
        let slot = step % 3;
        // Rolling: the old member closes (it leaves the group), then its successor starts.
        live[slot].bg.term();
        assert!(
            live[slot].bg.stdout().contains("shutdown_complete"),
            "{}",
            live[slot].bg
        );
        let next = Member::java(&t, &b, label, topic, group, protocol);
        retired.push(std::mem::replace(&mut live[slot], next));
        wait_assignment(&live.iter().collect::<Vec<_>>(), 6, Some(&[2, 2, 2]), WAIT);
        all.extend(produce_keyed(&t, &b, topic, label, 120));
        let everyone: Vec<&Member> = live.iter().chain(retired.iter()).collect();
        wait_delivered_once(&everyone, &all);
        assert!(
            got_some(&live[slot], label),
            "{}",
            describe_members(&everyone)
        );
        let (kind, out) = group_type(&t, &b, group);
        assert_eq!(kind, want_type, "after {label} joined: {out}");
        wait_until("the group stable with its assignor", WAIT, || {
            let out = groups(&t, &b, &["--group", group, "--describe", "--state"]);
            let rows = table(&out, "GROUP");
            let row = rows.first().map(|r| {
                (
                    r["STATE"].clone(),
                    r["#MEMBERS"].clone(),
                    r["ASSIGNMENT-STRATEGY"].clone(),
                )
            });
            if row == Some(("Stable".into(), "3".into(), want_assignor.to_string())) {
                Ok(())
            } else {
                Err(format!("after {label} joined: {out}"))
            }
        });
        // The two members that were not rolled went through the conversion as members: the
        // group kept their ids (a member fenced by the conversion rejoins under a new one).
        let now = member_ids(&t, &b, group);
        assert_eq!(
            ids.intersection(&now).count(),
            2,
            "after {label} joined: members before {ids:?}, now {now:?}\n{}",
            describe_members(&everyone)
        );
        ids = now;
    }
}

/// The member ids `kafka-consumer-groups.sh --describe --members` lists for `group`.
fn member_ids(t: &Tools, b: &Target, group: &str) -> BTreeSet<String> {
    let d = groups(t, b, &["--group", group, "--describe", "--members"]).ok();
    table(&d, "GROUP")
        .iter()
        .map(|r| r["CONSUMER-ID"].clone())
        .collect()
}

/// The one-way policies refuse the other direction as Kafka does. With
/// `group.consumer.migration.policy=downgrade` a Java member of the consumer protocol that
/// joins a classic group with members is refused (GROUP_ID_NOT_FOUND, "Cannot upgrade
/// classic group … because online upgrade is disabled.": the Java client gives up with
/// GroupIdNotFoundException) and the classic members consume on. With `upgrade`, the group upgrades, but when its consumer-protocol
/// member leaves, the classic members stay in a consumer group (no downgrade) and take its
/// partitions.
#[test]
fn one_way_migration_policies_refuse_the_other_direction() {
    let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);
    let classic = ["--group-protocol", "classic"];
    let consumer = ["--group-protocol", "consumer"];
    let broker = |policy: &str| start_migrating(&[("group.consumer.migration.policy", policy)]);

    // downgrade only: no upgrade.
    let b = broker("downgrade");
    let (topic, group) = ("no-upgrade", "no-upgrade-group");
    create_topic(&t, &b, topic, 4);
    let a = Member::java(&t, &b, "A-classic", topic, group, &classic);
    let bm = Member::java(&t, &b, "B-classic", topic, group, &classic);
    wait_assignment(&[&a, &bm], 4, Some(&[2, 2]), WAIT);
    let mut c = Member::java(&t, &b, "C-consumer", topic, group, &consumer);
    wait_until("the consumer-protocol member gives up", WAIT, || {
        match c.bg.try_status() {
            Some(_) => Ok(()),
            None => Err(c.bg.to_string()),
        }
    });
    let refused = c.bg.to_string();
    assert!(
        refused.contains("GroupIdNotFoundException")
            && refused.contains(&format!(
                "Cannot upgrade classic group {group} to consumer group because online upgrade is disabled."
            )),
        "{refused}"
    );
    let all = produce_keyed(&t, &b, topic, "after-refusal", 100);
    wait_delivered_once(&[&a, &bm, &c], &all);
    assert_eq!(c.values().len(), 0);
    let (kind, out) = group_type(&t, &b, group);
    assert_eq!(kind, "Classic", "{out}");
    drop((a, bm, c, b));

    // upgrade only: no downgrade.
    let b = broker("upgrade");
    let (topic, group) = ("no-downgrade", "no-downgrade-group");
    create_topic(&t, &b, topic, 6);
    let a = Member::java(&t, &b, "A-classic", topic, group, &classic);
    let bm = Member::java(&t, &b, "B-classic", topic, group, &classic);
    wait_assignment(&[&a, &bm], 6, Some(&[3, 3]), WAIT);
    let mut c = Member::java(&t, &b, "C-consumer", topic, group, &consumer);
    wait_assignment(&[&a, &bm, &c], 6, Some(&[2, 2, 2]), WAIT);
    let (kind, out) = group_type(&t, &b, group);
    assert_eq!(kind, "Consumer", "{out}");
    let mut all = produce_keyed(&t, &b, topic, "upgraded", 120);
    wait_delivered_once(&[&a, &bm, &c], &all);
    c.bg.term();
    wait_assignment(&[&a, &bm], 6, Some(&[3, 3]), WAIT);
    all.extend(produce_keyed(&t, &b, topic, "left", 120));
    wait_delivered_once(&[&a, &bm, &c], &all);
    assert!(!got_some(&c, "left-"));
    let (kind, out) = group_type(&t, &b, group);
    assert_eq!(kind, "Consumer", "still a consumer group: {out}");
}

/// A static member (`--group-instance-id`) rolled from the consumer protocol back to the
/// classic one: the group of a classic static member and a static member of the consumer
/// protocol is a consumer group; that member closes (it leaves for now, keeping its
/// partitions), and a classic member with its instance id takes its place: the group is a
/// classic group again at once (Kafka's downgrade on a static member's replacement), the
/// newcomer consumes the replaced member's partitions, and every record is consumed once.
#[test]
fn a_classic_static_member_replacing_the_last_consumer_member_downgrades() {
    let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);
    let b = start_migrating(&[]);
    let (topic, group) = ("static-migrate", "static-migrate-group");
    create_topic(&t, &b, topic, 4);
    let classic_a = ["--group-protocol", "classic", "--group-instance-id", "a"];
    let consumer_s = ["--group-protocol", "consumer", "--group-instance-id", "s"];
    let classic_s = ["--group-protocol", "classic", "--group-instance-id", "s"];
    let a = Member::java(&t, &b, "A-classic", topic, group, &classic_a);
    wait_assignment(&[&a], 4, Some(&[4]), WAIT);
    let mut s = Member::java(&t, &b, "S-consumer", topic, group, &consumer_s);
    wait_assignment(&[&a, &s], 4, Some(&[2, 2]), WAIT);
    let mut all = produce_keyed(&t, &b, topic, "upgraded", 100);
    wait_delivered_once(&[&a, &s], &all);
    let (kind, out) = group_type(&t, &b, group);
    assert_eq!(kind, "Consumer", "{out}");
    let s_owned = s.owned();

    s.bg.term();
    let s2 = Member::java(&t, &b, "S-classic", topic, group, &classic_s);
    wait_assignment(&[&a, &s2], 4, Some(&[2, 2]), WAIT);
    assert_eq!(s2.owned(), s_owned, "the replaced member's partitions");
    let (kind, out) = group_type(&t, &b, group);
    assert_eq!(kind, "Classic", "{out}");
    all.extend(produce_keyed(&t, &b, topic, "downgraded", 100));
    wait_delivered_once(&[&a, &s, &s2], &all);
    assert!(got_some(&s2, "downgraded-"));
}
