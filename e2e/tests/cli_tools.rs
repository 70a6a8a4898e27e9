//! The broker as people meet it: Apache Kafka's own CLI tools (4.1.0), kcat and
//! the Python clients, asserting on what the tools print.
//!
//! Each test starts its own broker: oxbow-broker by default, or a real Apache
//! Kafka 4.1 with `OXBOW_E2E_TARGET=kafka` (which proves the assertions describe
//! Kafka's real behaviour); with `OXBOW_E2E_BROKERS=3` a cluster of three instead
//! (`oxbow_e2e::Target`: replication factor 3, min.insync.replicas 2), the tools given
//! all three addresses, and the checks that name brokers check the cluster's. On three
//! brokers only the tests that add something there run: the power-loss restart on a
//! cluster of its own, the others as scenarios of [`scenarios_on_one_shared_cluster`] (one
//! cluster for all, two at a time; the rest say they are single-broker tests and return).
//!
//! Consumer groups (kafka-consumer-groups.sh, the verifiable consumer, several members
//! in one group) are exercised in `groups.rs`.

use oxbow_e2e::target::{
    run_alone_unless_shared, run_on_one_cluster, Scenario, COVERED_BY_ONE_BROKER,
};
use oxbow_e2e::tools::{
    configs, create_topic, get_offsets, kcat_produce, produce_lines, run_on, topics,
};
use oxbow_e2e::{single_broker_tools_or_skip, test_name, tools_or_skip, Target, ToolOutput, Tools};
use std::fs;

fn start() -> Target {
    Target::start(&[])
}

/// With `OXBOW_E2E_BROKERS=3`: the CLI tests that add coverage on a cluster and restart no
/// broker, as scenarios on one cluster of three (RF 3, min.insync.replicas 2): the tools'
/// producers with acks=all, Java, librdkafka and Python clients across three leaders,
/// DeleteRecords and CreatePartitions on replicated partitions, the quorum's description.
#[test]
fn scenarios_on_one_shared_cluster() {
    let t = tools_or_skip!();
    let scenarios: [Scenario; 8] = [
        (
            "java_consumer_reads_many_partitions_through_incremental_fetch_sessions",
            java_consumer_reads_many_partitions_through_incremental_fetch_sessions_on,
        ),
        (
            "console_producer_consumer_with_keys",
            console_producer_consumer_with_keys_on,
        ),
        ("verifiable_producer", verifiable_producer_on),
        (
            "kcat_metadata_produce_consume",
            kcat_metadata_produce_consume_on,
        ),
        (
            "python_confluent_kafka_roundtrip",
            python_confluent_kafka_roundtrip_on,
        ),
        (
            "delete_records_moves_log_start_offset",
            delete_records_moves_log_start_offset_on,
        ),
        ("topics_alter_partitions", topics_alter_partitions_on),
        (
            "metadata_quorum_describes_the_voters_and_the_leader",
            metadata_quorum_describes_the_voters_and_the_leader_on,
        ),
    ];
    run_on_one_cluster(&t, &[], &scenarios);
}

/// Console consumer on one partition from `offset` (no group), `n` records,
/// printing `Offset:<o>-<key>-<value>` (the key separator goes between all fields).
fn consume(
    t: &Tools,
    b: &Target,
    topic: &str,
    partition: u32,
    offset: &str,
    n: usize,
) -> ToolOutput {
    let p = partition.to_string();
    let n = n.to_string();
    run_on(
        t,
        b,
        "kafka-console-consumer.sh",
        &[
            "--topic",
            topic,
            "--partition",
            &p,
            "--offset",
            offset,
            "--property",
            "print.offset=true",
            "--property",
            "print.key=true",
            "--property",
            "key.separator=-",
            "--max-messages",
            &n,
            "--timeout-ms",
            "20000",
        ],
    )
    .ok()
}

/// The header line of `kafka-topics.sh --describe` for `topic`.
fn describe_header(out: &ToolOutput, topic: &str) -> String {
    out.line_starting_with(&format!("Topic: {topic}\tTopicId:"))
        .to_string()
}

/// Value of a `Name: value` field in a tab-separated describe line.
fn field<'a>(line: &'a str, name: &str) -> &'a str {
    line.split('\t')
        .map(str::trim)
        .find_map(|f| f.strip_prefix(&format!("{name}:")))
        .map(str::trim)
        .unwrap_or_else(|| panic!("no field {name:?} in line {line:?}"))
}

/// The per-partition lines of `kafka-topics.sh --describe` for `topic`.
fn partition_lines<'a>(out: &'a ToolOutput, topic: &str) -> Vec<&'a str> {
    out.stdout
        .lines()
        .map(str::trim)
        .filter(|l| l.starts_with(&format!("Topic: {topic}\tPartition:")))
        .collect()
}

/// `count` partitions of the target's default replication factor, each with a leader and
/// every replica in sync: on one broker all are broker 0's; on a cluster the replicas are
/// distinct brokers, the leader one of them, and the ISR all of them.
fn assert_partitions(b: &Target, out: &ToolOutput, topic: &str, count: usize) {
    let header = describe_header(out, topic);
    assert_eq!(field(&header, "PartitionCount"), count.to_string(), "{out}");
    let rf = b.replication_factor();
    assert_eq!(field(&header, "ReplicationFactor"), rf.to_string(), "{out}");
    let parts = partition_lines(out, topic);
    assert_eq!(parts.len(), count, "partition lines:\n{out}");
    let ids = |list: &str| -> std::collections::BTreeSet<i32> {
        list.split(',')
            .map(|id| {
                id.parse()
                    .unwrap_or_else(|_| panic!("broker id {id:?}:\n{out}"))
            })
            .collect()
    };
    for (i, line) in parts.iter().enumerate() {
        assert_eq!(field(line, "Partition"), i.to_string(), "{out}");
        let replicas = ids(field(line, "Replicas"));
        assert_eq!(replicas.len(), rf, "distinct replicas: {out}");
        assert!(replicas.iter().all(|id| b.node_ids().contains(id)), "{out}");
        let leader: i32 = field(line, "Leader").parse().unwrap_or(-1);
        assert!(replicas.contains(&leader), "a replica leads: {out}");
        assert_eq!(ids(field(line, "Isr")), replicas, "all in sync: {out}");
    }
}

// ---------------------------------------------------------------------------
// kafka-topics.sh
// ---------------------------------------------------------------------------

// ---------------------------------------------------------------------------
// kafka-features.sh
// ---------------------------------------------------------------------------

/// `kafka-features.sh describe` (ApiVersions v4's features) shows `group.version`, the
/// feature that turns the consumer rebalance protocol (KIP-848) on, as Kafka 4.1 has it:
/// supported 0-1, finalized at 1. (The epoch, Kafka's metadata offset, is not compared.)
#[test]
fn features_describe_shows_group_version() {
    let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);
    let b = start();
    let out = run_on(&t, &b, "kafka-features.sh", &["describe"]).ok();
    let line = out
        .lines()
        .into_iter()
        .find(|l| l.starts_with("Feature: group.version"))
        .unwrap_or_else(|| panic!("no group.version line:\n{out}"));
    let fields: Vec<&str> = line
        .split('\t')
        .map(str::trim)
        .filter(|f| !f.starts_with("Epoch:"))
        .collect();
    assert_eq!(
        fields,
        [
            "Feature: group.version",
            "SupportedMinVersion: 0",
            "SupportedMaxVersion: 1",
            "FinalizedVersionLevel: 1"
        ],
        "{out}"
    );
}

#[test]
fn topics_create_list_describe() {
    let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);
    let b = start();

    topics(&t, &b, &["--create", "--topic", "hello.kafka"])
        .ok()
        .expect_line("Created topic hello.kafka.");
    let rf = b.replication_factor().to_string();
    topics(
        &t,
        &b,
        &[
            "--create",
            "--partitions",
            "3",
            "--replication-factor",
            &rf,
            "--config",
            "retention.ms=172800000",
            "--topic",
            "hello.kafka.2",
        ],
    )
    .ok()
    .expect_line("Created topic hello.kafka.2.");

    let list = topics(&t, &b, &["--list"]).ok();
    assert_eq!(list.lines(), vec!["hello.kafka", "hello.kafka.2"], "{list}");

    let d = topics(&t, &b, &["--describe", "--topic", "hello.kafka.2"]).ok();
    let header = describe_header(&d, "hello.kafka.2");
    let topic_id = field(&header, "TopicId");
    assert_eq!(topic_id.len(), 22, "TopicId is a base64 UUID: {d}");
    assert_ne!(
        topic_id, "AAAAAAAAAAAAAAAAAAAAAA",
        "TopicId is not the zero UUID: {d}"
    );
    let configs = field(&header, "Configs");
    assert!(
        configs.split(',').any(|c| c == "retention.ms=172800000"),
        "Configs should list retention.ms=172800000:\n{d}"
    );
    assert_partitions(&b, &d, "hello.kafka.2", 3);

    // Defaults: num.partitions=1, default.replication.factor (1 alone, 3 in a cluster).
    let d1 = topics(&t, &b, &["--describe", "--topic", "hello.kafka"]).ok();
    assert_partitions(&b, &d1, "hello.kafka", 1);
    let id1 = field(&describe_header(&d1, "hello.kafka"), "TopicId").to_string();
    assert_ne!(id1, topic_id, "each topic has its own id");

    // --describe without --topic shows every topic.
    let all = topics(&t, &b, &["--describe"]).ok();
    describe_header(&all, "hello.kafka");
    describe_header(&all, "hello.kafka.2");
}

#[test]
fn topics_alter_partitions() {
    run_alone_unless_shared(test_name!(), start, topics_alter_partitions_on);
}

/// The body of [`topics_alter_partitions`], also a scenario on the suite's shared cluster.
fn topics_alter_partitions_on(t: &Tools, b: &Target) {
    create_topic(t, b, "grow", 3);

    topics(t, b, &["--alter", "--topic", "grow", "--partitions", "4"]).ok();
    let d = topics(t, b, &["--describe", "--topic", "grow"]).ok();
    assert_partitions(b, &d, "grow", 4);

    // The new partition is usable.
    kcat_produce(t, b, "grow", &["-p", "3"], "in-p3\n");
    assert_eq!(
        get_offsets(t, b, "grow", "-1"),
        vec!["grow:0:0", "grow:1:0", "grow:2:0", "grow:3:1"]
    );

    // Decreasing is refused.
    let dec = topics(t, b, &["--alter", "--topic", "grow", "--partitions", "2"]).failed();
    dec.expect_contains("InvalidPartitionsException");
    dec.expect_contains("Error while executing topic command");
    let d = topics(t, b, &["--describe", "--topic", "grow"]).ok();
    assert_partitions(b, &d, "grow", 4);
}

#[test]
fn topics_create_refusals() {
    let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);
    let b = start();

    // One more replica than there are brokers.
    let too_many = (b.brokers() + 1).to_string();
    let rf = topics(
        &t,
        &b,
        &[
            "--create",
            "--topic",
            "too-many-replicas",
            "--replication-factor",
            &too_many,
        ],
    )
    .failed();
    rf.expect_contains("InvalidReplicationFactorException");
    rf.expect_contains("replication factor");

    create_topic(&t, &b, "dup", 1);
    let dup = topics(&t, &b, &["--create", "--topic", "dup"]).failed();
    dup.expect_contains("TopicExistsException");
    dup.expect_contains("Topic 'dup' already exists.");

    let long = "a".repeat(250);
    for bad in ["bad/name", long.as_str(), ".."] {
        let out = topics(&t, &b, &["--create", "--topic", bad]).failed();
        out.expect_contains("InvalidTopicException");
        out.expect_contains("Topic name is invalid");
    }

    let list = topics(&t, &b, &["--list"]).ok();
    assert_eq!(
        list.lines(),
        vec!["dup"],
        "only the valid topic exists:\n{list}"
    );
}

// ---------------------------------------------------------------------------
// kafka-configs.sh
// ---------------------------------------------------------------------------

#[test]
fn configs_topic_alter_describe() {
    let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);
    let b = start();
    create_topic(&t, &b, "cfg", 1);
    let topic = ["--entity-type", "topics", "--entity-name", "cfg"];

    let none = configs(&t, &b, &[&topic[..], &["--describe"]].concat()).ok();
    none.expect_line("Dynamic configs for topic cfg are:");
    assert!(!none.stdout.contains("retention.ms="), "{none}");

    configs(
        &t,
        &b,
        &[
            &topic[..],
            &["--alter", "--add-config", "retention.ms=86400000"],
        ]
        .concat(),
    )
    .ok()
    .expect_line("Completed updating config for topic cfg.");
    let d = configs(&t, &b, &[&topic[..], &["--describe"]].concat()).ok();
    d.expect_line("Dynamic configs for topic cfg are:");
    let line = d.line_starting_with("retention.ms=");
    assert!(
        line.starts_with(
            "retention.ms=86400000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=86400000"
        ),
        "{d}"
    );

    configs(
        &t,
        &b,
        &[
            &topic[..],
            &["--alter", "--add-config", "min.insync.replicas=2"],
        ]
        .concat(),
    )
    .ok()
    .expect_line("Completed updating config for topic cfg.");
    let d = configs(&t, &b, &[&topic[..], &["--describe"]].concat()).ok();
    assert!(
        d.line_starting_with("min.insync.replicas=").starts_with(
            "min.insync.replicas=2 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:min.insync.replicas=2"
        ),
        "{d}"
    );
    d.line_starting_with("retention.ms=86400000 ");

    // kafka-topics.sh --describe shows the overrides too.
    let td = topics(&t, &b, &["--describe", "--topic", "cfg"]).ok();
    let cfgs = field(&describe_header(&td, "cfg"), "Configs").to_string();
    for want in ["retention.ms=86400000", "min.insync.replicas=2"] {
        assert!(
            cfgs.split(',').any(|c| c == want),
            "Configs should list {want}:\n{td}"
        );
    }

    // --all includes defaults.
    let all = configs(&t, &b, &[&topic[..], &["--describe", "--all"]].concat()).ok();
    all.expect_line("All configs for topic cfg are:");
    all.line_starting_with(
        "cleanup.policy=delete sensitive=false synonyms={DEFAULT_CONFIG:log.cleanup.policy=delete}",
    );
    all.line_starting_with("retention.ms=86400000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=86400000");

    // Unknown configs are refused.
    let bad = configs(
        &t,
        &b,
        &[&topic[..], &["--alter", "--add-config", "bogus.key=1"]].concat(),
    )
    .failed();
    bad.expect_contains("InvalidConfigurationException");

    // --delete-config removes the override.
    configs(
        &t,
        &b,
        &[&topic[..], &["--alter", "--delete-config", "retention.ms"]].concat(),
    )
    .ok()
    .expect_line("Completed updating config for topic cfg.");
    let d = configs(&t, &b, &[&topic[..], &["--describe"]].concat()).ok();
    assert!(!d.stdout.contains("retention.ms="), "{d}");
    d.line_starting_with("min.insync.replicas=2 ");
}

#[test]
fn configs_broker_all_describe() {
    let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);
    let b = Target::start(&[("num.partitions", "3")]);

    for args in [
        &[
            "--entity-type",
            "brokers",
            "--entity-name",
            "0",
            "--all",
            "--describe",
        ][..],
        &["--broker", "0", "--all", "--describe"][..],
    ] {
        let d = configs(&t, &b, args).ok();
        d.expect_line("All configs for broker 0 are:");
        d.expect_line("log.retention.hours=168 sensitive=false synonyms={DEFAULT_CONFIG:log.retention.hours=168}");
        let np = d.line_starting_with("num.partitions=");
        assert!(
            np.starts_with(
                "num.partitions=3 sensitive=false synonyms={STATIC_BROKER_CONFIG:num.partitions=3"
            ),
            "{d}"
        );
        let dirs = d.line_starting_with("log.dirs=");
        let want = format!("log.dirs={} ", b.node(0).data_dir().display());
        assert!(dirs.starts_with(&want), "{d}");
    }

    // num.partitions is the default for new topics.
    topics(&t, &b, &["--create", "--topic", "three"]).ok();
    let d = topics(&t, &b, &["--describe", "--topic", "three"]).ok();
    assert_partitions(&b, &d, "three", 3);
}

// ---------------------------------------------------------------------------
// Console producer / consumer
// ---------------------------------------------------------------------------

#[test]
fn console_producer_consumer_with_keys() {
    run_alone_unless_shared(test_name!(), start, console_producer_consumer_with_keys_on);
}

/// The body of [`console_producer_consumer_with_keys`], also a scenario on the suite's shared cluster.
fn console_producer_consumer_with_keys_on(t: &Tools, b: &Target) {
    create_topic(t, b, "hello.kafka", 1);

    produce_lines(t, b, "hello.kafka", "hello\nkafka\n", &[]);
    produce_lines(
        t,
        b,
        "hello.kafka",
        "key1:no1\nkey2:no2\n",
        &[
            "--property",
            "parse.key=true",
            "--property",
            "key.separator=:",
        ],
    );

    // The console consumer on partition 0 from `offset`, with `--property` settings `props`,
    // `n` records.
    let read = |offset: &str, props: &[&str], n: &str| {
        let mut args = vec![
            "--topic",
            "hello.kafka",
            "--partition",
            "0",
            "--offset",
            offset,
        ];
        for p in props {
            args.extend_from_slice(&["--property", p]);
        }
        args.extend_from_slice(&["--max-messages", n]);
        run_on(t, b, "kafka-console-consumer.sh", &args).ok()
    };
    let out = read("earliest", &["print.key=true", "key.separator=-"], "4");
    assert_eq!(
        out.lines(),
        vec!["null-hello", "null-kafka", "key1-no1", "key2-no2"],
        "{out}"
    );
    out.expect_contains("Processed a total of 4 messages");

    // From a given offset, with offsets, partitions and timestamps printed.
    let out = read(
        "2",
        &[
            "print.partition=true",
            "print.offset=true",
            "print.timestamp=true",
        ],
        "2",
    );
    let lines = out.lines();
    assert_eq!(lines.len(), 2, "{out}");
    for (line, (off, val)) in lines.iter().zip([(2, "no1"), (3, "no2")]) {
        let f: Vec<&str> = line.split('\t').collect();
        assert_eq!(f.len(), 4, "{out}");
        let ts: i64 = f[0]
            .strip_prefix("CreateTime:")
            .unwrap_or_else(|| panic!("CreateTime timestamp: {out}"))
            .parse()
            .expect("numeric timestamp");
        assert!(ts > 1_600_000_000_000, "{out}");
        assert_eq!(f[1], "Partition:0", "{out}");
        assert_eq!(f[2], format!("Offset:{off}"), "{out}");
        assert_eq!(f[3], val, "{out}");
    }
}

#[test]
fn console_producer_headers_and_null_values() {
    let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);
    let b = start();
    create_topic(&t, &b, "hdr", 1);
    produce_lines(
        &t,
        &b,
        "hdr",
        "h1:v1,h2:v2\tk1\tvalue-one\n",
        &[
            "--property",
            "parse.key=true",
            "--property",
            "parse.headers=true",
        ],
    );
    // Without headers; `<NULL>` marks a null value (a tombstone).
    produce_lines(
        &t,
        &b,
        "hdr",
        "k2\tvalue-two\nk3\t<NULL>\n",
        &[
            "--property",
            "parse.key=true",
            "--property",
            "null.marker=<NULL>",
        ],
    );
    let out = run_on(
        &t,
        &b,
        "kafka-console-consumer.sh",
        &[
            "--topic",
            "hdr",
            "--partition",
            "0",
            "--offset",
            "earliest",
            "--property",
            "print.key=true",
            "--property",
            "print.headers=true",
            "--max-messages",
            "3",
        ],
    )
    .ok();
    assert_eq!(
        out.lines(),
        vec![
            "h1:v1,h2:v2\tk1\tvalue-one",
            "NO_HEADERS\tk2\tvalue-two",
            "NO_HEADERS\tk3\tnull"
        ],
        "{out}"
    );
}

#[test]
fn console_consumer_from_beginning_with_group() {
    let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);
    let b = start();
    create_topic(&t, &b, "fb", 1);
    produce_lines(&t, &b, "fb", "a\nb\nc\n", &[]);
    let out = run_on(
        &t,
        &b,
        "kafka-console-consumer.sh",
        &[
            "--topic",
            "fb",
            "--from-beginning",
            "--max-messages",
            "3",
            "--timeout-ms",
            "30000",
        ],
    )
    .ok();
    assert_eq!(out.lines(), vec!["a", "b", "c"], "{out}");
}

// ---------------------------------------------------------------------------
// kafka-delete-records.sh / kafka-get-offsets.sh
// ---------------------------------------------------------------------------

#[test]
fn delete_records_moves_log_start_offset() {
    run_alone_unless_shared(
        test_name!(),
        start,
        delete_records_moves_log_start_offset_on,
    );
}

/// The body of [`delete_records_moves_log_start_offset`], also a scenario on the suite's shared cluster.
fn delete_records_moves_log_start_offset_on(t: &Tools, b: &Target) {
    create_topic(t, b, "del", 1);
    produce_lines(t, b, "del", "m0\nm1\nm2\nm3\nm4\n", &[]);
    assert_eq!(get_offsets(t, b, "del", "-2"), vec!["del:0:0"]);
    assert_eq!(get_offsets(t, b, "del", "-1"), vec!["del:0:5"]);

    let json = b.scratch().join("delete.json");
    fs::write(
        &json,
        r#"{"partitions":[{"topic":"del","partition":0,"offset":3}],"version":1}"#,
    )
    .unwrap();
    let out = run_on(
        t,
        b,
        "kafka-delete-records.sh",
        &["--offset-json-file", json.to_str().unwrap()],
    )
    .ok();
    out.expect_line("Records delete operation completed:");
    out.expect_line("partition: del-0\tlow_watermark: 3");

    assert_eq!(
        get_offsets(t, b, "del", "-2"),
        vec!["del:0:3"],
        "earliest after delete"
    );
    assert_eq!(
        get_offsets(t, b, "del", "-1"),
        vec!["del:0:5"],
        "latest unchanged"
    );
    let c = consume(t, b, "del", 0, "earliest", 2);
    assert_eq!(
        c.lines(),
        vec!["Offset:3-null-m3", "Offset:4-null-m4"],
        "{c}"
    );

    // Deleting up to the high watermark (-1) empties the partition.
    fs::write(
        &json,
        r#"{"partitions":[{"topic":"del","partition":0,"offset":-1}],"version":1}"#,
    )
    .unwrap();
    run_on(
        t,
        b,
        "kafka-delete-records.sh",
        &["--offset-json-file", json.to_str().unwrap()],
    )
    .ok()
    .expect_line("partition: del-0\tlow_watermark: 5");
    assert_eq!(get_offsets(t, b, "del", "-2"), vec!["del:0:5"]);
}

// ---------------------------------------------------------------------------
// kafka-broker-api-versions.sh
// ---------------------------------------------------------------------------

#[test]
fn broker_api_versions() {
    let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);
    let b = start();
    let out = run_on(&t, &b, "kafka-broker-api-versions.sh", &[]).ok();
    // One block per broker, each headed by its address and id.
    for id in b.node_ids() {
        let node = b.node(id as usize).bootstrap();
        let head = out.line_starting_with(&format!("{node} (id: {id} rack: null"));
        assert!(head.ends_with(") -> ("), "{out}");
    }
    assert!(
        out.lines()[0].ends_with(") -> ("),
        "a broker's block comes first: {out}"
    );
    for api in [
        "Produce(0)",
        "Fetch(1)",
        "ListOffsets(2)",
        "Metadata(3)",
        "ApiVersions(18)",
        "CreateTopics(19)",
        "DeleteTopics(20)",
        "DeleteRecords(21)",
        "DescribeConfigs(32)",
        "IncrementalAlterConfigs(44)",
        "CreatePartitions(37)",
    ] {
        let line = out.line_starting_with(&format!("{api}: "));
        assert!(
            line.contains(" to ") && line.contains("[usable: "),
            "{api} must be usable: {line}\n{out}"
        );
    }
    let blocks = out.lines().iter().filter(|l| **l == ")").count();
    assert_eq!(blocks, b.brokers(), "{out}");
}

// ---------------------------------------------------------------------------
// kafka-verifiable-producer.sh
// ---------------------------------------------------------------------------

#[test]
fn verifiable_producer() {
    run_alone_unless_shared(test_name!(), start, verifiable_producer_on);
}

/// The body of [`verifiable_producer`], also a scenario on the suite's shared cluster.
fn verifiable_producer_on(t: &Tools, b: &Target) {
    create_topic(t, b, "verify-test", 1);
    let out = run_on(
        t,
        b,
        "kafka-verifiable-producer.sh",
        &["--topic", "verify-test", "--max-messages", "10"],
    )
    .ok();
    let events: Vec<serde_json::Value> = out
        .lines()
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON: {l:?}: {e}\n{out}")))
        .collect();
    let ok: Vec<&serde_json::Value> = events
        .iter()
        .filter(|e| e["name"] == "producer_send_success")
        .collect();
    assert_eq!(ok.len(), 10, "{out}");
    for (i, e) in ok.iter().enumerate() {
        assert_eq!(e["topic"], "verify-test", "{out}");
        assert_eq!(e["partition"], 0, "{out}");
        assert_eq!(e["offset"], i as u64, "{out}");
        assert_eq!(e["value"], i.to_string(), "{out}");
    }
    assert!(
        !events.iter().any(|e| e["name"] == "producer_send_error"),
        "{out}"
    );
    let data = events
        .iter()
        .find(|e| e["name"] == "tool_data")
        .unwrap_or_else(|| panic!("no tool_data line: {out}"));
    assert_eq!(data["sent"], 10, "{out}");
    assert_eq!(data["acked"], 10, "{out}");
    let c = consume(t, b, "verify-test", 0, "earliest", 10);
    assert_eq!(c.lines().len(), 10, "{c}");
    assert_eq!(c.lines()[9], "Offset:9-null-9", "{c}");
}

/// The Java consumer over many partitions uses incremental fetch sessions (KIP-227) by
/// default: it gets a session from its first full fetch, then sends only changed partitions,
/// and still reads every record. Its FetchSessionHandler logs each step at DEBUG.
#[test]
fn java_consumer_reads_many_partitions_through_incremental_fetch_sessions() {
    run_alone_unless_shared(
        test_name!(),
        start,
        java_consumer_reads_many_partitions_through_incremental_fetch_sessions_on,
    );
}

/// The body of [`java_consumer_reads_many_partitions_through_incremental_fetch_sessions`], also a scenario on the suite's shared cluster.
fn java_consumer_reads_many_partitions_through_incremental_fetch_sessions_on(
    t: &Tools,
    b: &Target,
) {
    create_topic(t, b, "sessions", 40);
    let bs = b.bootstrap();
    let records = 4000;
    let n = records.to_string();
    t.run(
        "kafka-producer-perf-test.sh",
        &[
            "--topic",
            "sessions",
            "--num-records",
            &n,
            "--record-size",
            "100",
            "--throughput",
            "-1",
            // Small batches spread the records over every partition.
            "--producer-props",
            &format!("bootstrap.servers={bs}"),
            "linger.ms=0",
            "batch.size=1000",
        ],
    )
    .ok();
    let log4j = b.scratch().join("fetch-session-log4j2.yaml");
    fs::write(
        &log4j,
        "Configuration:\n  Appenders:\n    Console:\n      name: STDERR\n      target: SYSTEM_ERR\n      PatternLayout:\n        pattern: \"%p %m%n\"\n  Loggers:\n    Logger:\n      - name: org.apache.kafka.clients.FetchSessionHandler\n        level: DEBUG\n    Root:\n      level: WARN\n      AppenderRef:\n        - ref: STDERR\n",
    )
    .expect("write log4j config");
    let args = [
        "--bootstrap-server",
        bs.as_str(),
        "--topic",
        "sessions",
        "--from-beginning",
        "--max-messages",
        n.as_str(),
        "--timeout-ms",
        "60000",
        // Small fetches: the records take many fetches, so most are incremental.
        "--consumer-property",
        "max.partition.fetch.bytes=2048",
    ];
    let mut cmd = std::process::Command::new(t.path("kafka-console-consumer.sh"));
    cmd.args(args).env(
        "KAFKA_LOG4J_OPTS",
        format!("-Dlog4j2.configurationFile={}", log4j.display()),
    );
    let out = oxbow_e2e::run_command(
        cmd,
        "kafka-console-consumer.sh",
        &args,
        None,
        std::time::Duration::from_secs(180),
    )
    .ok();
    assert_eq!(out.stdout.lines().count(), records, "{out}");
    assert!(
        out.stderr
            .contains("full fetch response that created a new incremental fetch session"),
        "no session was created: {out}"
    );
    assert!(
        out.stderr.contains("sent an incremental fetch response"),
        "no incremental fetch was answered: {out}"
    );
    assert!(
        !out.stderr
            .contains("was unable to process the fetch request"),
        "a session error: {out}"
    );
}

// ---------------------------------------------------------------------------
// kcat
// ---------------------------------------------------------------------------

#[test]
fn kcat_metadata_produce_consume() {
    run_alone_unless_shared(test_name!(), start, kcat_metadata_produce_consume_on);
}

/// The body of [`kcat_metadata_produce_consume`], also a scenario on the suite's shared cluster.
fn kcat_metadata_produce_consume_on(t: &Tools, b: &Target) {
    create_topic(t, b, "kc", 2);
    let bs = b.bootstrap();

    // This topic's metadata only: on a shared cluster other scenarios' topics exist too.
    let meta = t.run("kcat", &["-b", &bs, "-L", "-t", "kc"]).ok();
    meta.expect_contains(&format!(" {} brokers:", b.brokers()));
    for id in b.node_ids() {
        meta.expect_contains(&format!(
            "broker {id} at {}",
            b.node(id as usize).bootstrap()
        ));
    }
    meta.expect_contains("topic \"kc\" with 2 partitions:");
    for p in 0..2 {
        // `partition <p>, leader <id>, replicas: <ids>, isrs: <ids>`
        let line = meta.line_starting_with(&format!("partition {p}, leader "));
        let rest = &line[format!("partition {p}, leader ").len()..];
        let (leader, rest) = rest.split_once(", replicas: ").unwrap_or(("", ""));
        let (replicas, isrs) = rest.split_once(", isrs: ").unwrap_or(("", ""));
        let set = |l: &str| -> std::collections::BTreeSet<String> {
            l.split(',').map(str::to_string).collect()
        };
        let replicas = set(replicas);
        assert_eq!(replicas.len(), b.replication_factor(), "{meta}");
        assert!(replicas.contains(leader), "{meta}");
        assert_eq!(set(isrs), replicas, "{meta}");
    }

    // kcat reading partition `p` to its end (after `from`: e.g. `-o 195`), one
    // `key=value@offset` line a record.
    let read = |p: u32, from: &[&str]| {
        let p = p.to_string();
        let mut args = vec!["-b", &bs, "-C", "-t", "kc", "-p", &p];
        args.extend_from_slice(from);
        args.extend_from_slice(&["-e", "-q", "-f", "%k=%s@%o\n"]);
        t.run("kcat", &args).ok()
    };
    let input = "k1:v1\nk2:v2\nk3:v3\nk4:\nk5:last value with spaces\n";
    kcat_produce(t, b, "kc", &["-p", "1", "-K:"], input);
    let out = read(1, &[]);
    assert_eq!(
        out.lines(),
        vec![
            "k1=v1@0",
            "k2=v2@1",
            "k3=v3@2",
            "k4=@3",
            "k5=last value with spaces@4"
        ],
        "{out}"
    );
    // Partition 0 is empty; consuming it to the end prints nothing.
    let empty = read(0, &[]);
    assert_eq!(empty.lines(), Vec::<&str>::new(), "{empty}");

    // Many records, all partitions, offsets contiguous from 0 per partition.
    let many: String = (0..200).map(|i| format!("key{i}:value{i}\n")).collect();
    kcat_produce(t, b, "kc", &["-p", "0", "-K:"], &many);
    let out = read(0, &["-o", "beginning"]);
    let want: Vec<String> = (0..200).map(|i| format!("key{i}=value{i}@{i}")).collect();
    assert_eq!(out.lines(), want, "{out}");
    // From an offset.
    let out = read(0, &["-o", "195"]);
    assert_eq!(out.lines(), want[195..].to_vec(), "{out}");
}

// ---------------------------------------------------------------------------
// Python clients
// ---------------------------------------------------------------------------

fn python_roundtrip(t: &Tools, b: &Target, client: &str) {
    create_topic(t, b, "py", 3);
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/py/roundtrip.py");
    let bs = b.bootstrap();
    let out = t.run("python", &[script, client, &bs, "py", "3", "1000"]);
    let out = out.ok();
    let summary: serde_json::Value = serde_json::from_str(out.lines()[0]).expect("summary JSON");
    assert_eq!(summary["acked"], 1000, "{out}");
    assert_eq!(summary["consumed"], 1000, "{out}");
    assert_eq!(summary["mismatches"], 0, "{out}");
    // The Java tools see the same data.
    assert_eq!(
        get_offsets(t, b, "py", "-1"),
        vec!["py:0:334", "py:1:333", "py:2:333"]
    );
}

#[test]
fn python_kafka_python_roundtrip() {
    let t = single_broker_tools_or_skip!(
        "confluent-kafka's round trip runs on the cluster; one Python client is enough there",
    );
    python_roundtrip(&t, &start(), "kafka-python");
}

#[test]
fn python_confluent_kafka_roundtrip() {
    run_alone_unless_shared(test_name!(), start, python_confluent_kafka_roundtrip_on);
}

/// The body of [`python_confluent_kafka_roundtrip`], also a scenario on the suite's shared
/// cluster.
fn python_confluent_kafka_roundtrip_on(t: &Tools, b: &Target) {
    python_roundtrip(t, b, "confluent-kafka");
}

// ---------------------------------------------------------------------------
// Restarts
// ---------------------------------------------------------------------------

fn restart_preserves_everything(kill9: bool) {
    let t = tools_or_skip!();
    let mut b = start();
    topics(
        &t,
        &b,
        &[
            "--create",
            "--topic",
            "durable",
            "--partitions",
            "2",
            "--config",
            "retention.ms=172800000",
        ],
    )
    .ok();
    create_topic(&t, &b, "other", 1);
    configs(
        &t,
        &b,
        &[
            "--entity-type",
            "topics",
            "--entity-name",
            "other",
            "--alter",
            "--add-config",
            "retention.ms=86400000",
        ],
    )
    .ok();
    for p in 0..2 {
        let lines: String = (0..10).map(|i| format!("k{p}.{i}:v{p}.{i}\n")).collect();
        kcat_produce(&t, &b, "durable", &["-p", &p.to_string(), "-K:"], &lines);
    }
    produce_lines(&t, &b, "other", "x\ny\n", &[]);
    let before = get_offsets(&t, &b, "durable", "-1");
    let id_before = field(
        &describe_header(
            &topics(&t, &b, &["--describe", "--topic", "durable"]).ok(),
            "durable",
        ),
        "TopicId",
    )
    .to_string();
    let p0_before = consume(&t, &b, "durable", 0, "earliest", 10)
        .lines()
        .join("\n");

    // A cluster restarts every node: SIGTERM one after the other (rolling), or kill -9 of
    // all three at once (a power loss) and all started again.
    if kill9 {
        b.kill9_all_and_start_again();
    } else {
        b.restart();
    }

    let list = topics(&t, &b, &["--list"]).ok();
    assert_eq!(list.lines(), vec!["durable", "other"], "{list}");
    let d = topics(&t, &b, &["--describe", "--topic", "durable"]).ok();
    assert_partitions(&b, &d, "durable", 2);
    let header = describe_header(&d, "durable");
    assert_eq!(
        field(&header, "TopicId"),
        id_before,
        "TopicId survives restart: {d}"
    );
    assert!(
        field(&header, "Configs")
            .split(',')
            .any(|c| c == "retention.ms=172800000"),
        "{d}"
    );
    let c = configs(
        &t,
        &b,
        &[
            "--entity-type",
            "topics",
            "--entity-name",
            "other",
            "--describe",
        ],
    )
    .ok();
    c.line_starting_with("retention.ms=86400000 sensitive=false synonyms={DYNAMIC_TOPIC_CONFIG:retention.ms=86400000");

    assert_eq!(
        get_offsets(&t, &b, "durable", "-1"),
        before,
        "high watermarks survive restart"
    );
    assert_eq!(before, vec!["durable:0:10", "durable:1:10"]);
    let p0_after = consume(&t, &b, "durable", 0, "earliest", 10)
        .lines()
        .join("\n");
    assert_eq!(p0_after, p0_before, "records survive restart");
    let other = consume(&t, &b, "other", 0, "earliest", 2);
    assert_eq!(
        other.lines(),
        vec!["Offset:0-null-x", "Offset:1-null-y"],
        "{other}"
    );

    // New records continue at the next offset.
    produce_lines(&t, &b, "other", "z\n", &[]);
    let other = consume(&t, &b, "other", 0, "earliest", 3);
    assert_eq!(
        other.lines(),
        vec!["Offset:0-null-x", "Offset:1-null-y", "Offset:2-null-z"],
        "{other}"
    );
    assert_eq!(get_offsets(&t, &b, "other", "-1"), vec!["other:0:3"]);

    // And a second restart keeps the new record too.
    b.restart();
    let other = consume(&t, &b, "other", 0, "earliest", 3);
    assert_eq!(
        other.lines(),
        vec!["Offset:0-null-x", "Offset:1-null-y", "Offset:2-null-z"],
        "{other}"
    );
}

#[test]
fn restart_sigterm_preserves_topics_configs_records() {
    if Target::single_broker_only(
        "restart_sigterm_preserves_topics_configs_records",
        "cluster_faults.rs rolls three brokers under load; kill -9 of all three runs here",
    ) {
        return;
    }
    restart_preserves_everything(false);
}

#[test]
fn restart_kill9_preserves_topics_configs_records() {
    restart_preserves_everything(true);
}

// ---------------------------------------------------------------------------
// Topic auto-creation
// ---------------------------------------------------------------------------

#[test]
fn auto_create_enabled_uses_num_partitions() {
    let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);
    let b = Target::start(&[
        ("auto.create.topics.enable", "true"),
        ("num.partitions", "2"),
    ]);
    produce_lines(&t, &b, "auto.made", "one\ntwo\n", &[]);
    let d = topics(&t, &b, &["--describe", "--topic", "auto.made"]).ok();
    assert_partitions(&b, &d, "auto.made", 2);
    let total: u64 = get_offsets(&t, &b, "auto.made", "-1")
        .iter()
        .map(|l| l.rsplit(':').next().unwrap().parse::<u64>().unwrap())
        .sum();
    assert_eq!(total, 2, "both records were written");

    // kcat auto-creates too.
    kcat_produce(&t, &b, "auto.kcat", &[], "x\n");
    let d = topics(&t, &b, &["--describe", "--topic", "auto.kcat"]).ok();
    assert_partitions(&b, &d, "auto.kcat", 2);
}

#[test]
fn auto_create_disabled_refuses_unknown_topics() {
    let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);
    let b = Target::start(&[("auto.create.topics.enable", "false")]);
    let bs = b.bootstrap();
    let out = t.run_stdin(
        "kafka-console-producer.sh",
        &[
            "--bootstrap-server",
            &bs,
            "--topic",
            "nope",
            "--producer-property",
            "max.block.ms=5000",
        ],
        "lost\n",
    );
    out.expect_contains("Topic nope not present in metadata after 5000 ms.");
    out.expect_contains("UNKNOWN_TOPIC_OR_PARTITION");

    let list = topics(&t, &b, &["--list"]).ok();
    assert!(list.lines().is_empty(), "no topic was created:\n{list}");
    let d = topics(&t, &b, &["--describe", "--topic", "nope"]).failed();
    d.expect_contains("Topic 'nope' does not exist as expected");
}

/// Time retention deletes whole segments on the retention check interval: the topic's
/// records disappear and consumers start at the new log start offset.
#[test]
fn time_retention_deletes_expired_segments() {
    let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);
    let b = Target::start(&[("log.retention.check.interval.ms", "500")]);
    topics(
        &t,
        &b,
        &[
            "--create",
            "--topic",
            "short-lived",
            "--partitions",
            "1",
            "--config",
            "retention.ms=2000",
            "--config",
            "segment.ms=1000",
        ],
    )
    .ok();
    produce_lines(&t, &b, "short-lived", "r0\nr1\nr2\n", &[]);
    assert_eq!(
        get_offsets(&t, &b, "short-lived", "-1"),
        vec!["short-lived:0:3"]
    );
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    loop {
        let earliest = get_offsets(&t, &b, "short-lived", "-2");
        if earliest == vec!["short-lived:0:3"] {
            break;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "retention never removed the expired records: earliest is {earliest:?}"
        );
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    // Stop expiring (a dynamic config change reaches the log at once), then new records
    // continue at the next offset and stay readable.
    configs(
        &t,
        &b,
        &[
            "--entity-type",
            "topics",
            "--entity-name",
            "short-lived",
            "--alter",
            "--add-config",
            "retention.ms=86400000",
        ],
    )
    .ok();
    produce_lines(&t, &b, "short-lived", "r3\n", &[]);
    let c = consume(&t, &b, "short-lived", 0, "earliest", 1);
    assert_eq!(c.lines(), vec!["Offset:3-null-r3"], "{c}");
}

/// `message.timestamp.type=LogAppendTime` makes consumers see the broker's append time;
/// the default keeps the producer's CreateTime.
#[test]
fn timestamp_types_follow_the_topic_config() {
    let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);
    let b = start();
    create_topic(&t, &b, "create-time", 1);
    topics(
        &t,
        &b,
        &[
            "--create",
            "--topic",
            "append-time",
            "--partitions",
            "1",
            "--config",
            "message.timestamp.type=LogAppendTime",
        ],
    )
    .ok();
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    for topic in ["create-time", "append-time"] {
        produce_lines(&t, &b, topic, "v\n", &[]);
    }
    let read = |topic: &str| {
        run_on(
            &t,
            &b,
            "kafka-console-consumer.sh",
            &[
                "--topic",
                topic,
                "--partition",
                "0",
                "--offset",
                "earliest",
                "--max-messages",
                "1",
                "--property",
                "print.timestamp=true",
            ],
        )
        .ok()
    };
    let line_of = |out: &ToolOutput| {
        out.lines()
            .first()
            .map(|l| l.to_string())
            .unwrap_or_default()
    };
    let created = read("create-time");
    assert!(line_of(&created).starts_with("CreateTime:"), "{created}");
    let appended = read("append-time");
    let line = line_of(&appended);
    let ts: i64 = line
        .strip_prefix("LogAppendTime:")
        .and_then(|rest| rest.split_whitespace().next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("expected LogAppendTime:<ms>, got {line:?}"));
    assert!(
        ts >= before - 1000,
        "append time {ts} is before the produce started ({before})"
    );
}

/// The broker reads every record of every batch (as Kafka's LogValidator does), so each
/// codec as real clients frame it must come through: librdkafka (kcat) and the Java
/// producer, gzip, snappy, lz4 and zstd, to a plain and to a compacted topic.
#[test]
fn compressed_batches_from_real_clients_are_accepted() {
    let t = single_broker_tools_or_skip!(COVERED_BY_ONE_BROKER);
    let b = start();
    let bs = b.bootstrap();
    topics(
        &t,
        &b,
        &[
            "--create",
            "--topic",
            "zipped-compact",
            "--partitions",
            "1",
            "--config",
            "cleanup.policy=compact",
        ],
    )
    .ok();
    create_topic(&t, &b, "zipped", 1);
    let lines: String = (0..200)
        .map(|i| format!("key-{i}:value {i} {}\n", "x".repeat(i % 50)))
        .collect();
    for topic in ["zipped", "zipped-compact"] {
        for codec in ["gzip", "snappy", "lz4", "zstd"] {
            kcat_produce(&t, &b, topic, &["-K:", "-z", codec], &lines);
            produce_lines(
                &t,
                &b,
                topic,
                &lines,
                &[
                    "--compression-codec",
                    codec,
                    "--property",
                    "parse.key=true",
                    "--property",
                    "key.separator=:",
                ],
            );
        }
        let out = t
            .run(
                "kcat",
                &["-b", &bs, "-C", "-t", topic, "-e", "-q", "-f", "%k\n"],
            )
            .ok();
        assert_eq!(out.lines().len(), 8 * 200, "{topic}: {out}");
    }
}

// ---------------------------------------------------------------------------
// kafka-metadata-quorum.sh
// ---------------------------------------------------------------------------

/// Every node is a voter of the metadata quorum and one of them its leader (a single node
/// is the one voter and the leader); the tool's `--status` and `--replication` views say so.
#[test]
fn metadata_quorum_describes_the_voters_and_the_leader() {
    run_alone_unless_shared(
        test_name!(),
        start,
        metadata_quorum_describes_the_voters_and_the_leader_on,
    );
}

/// The body of [`metadata_quorum_describes_the_voters_and_the_leader`], also a scenario on the suite's shared cluster.
fn metadata_quorum_describes_the_voters_and_the_leader_on(t: &Tools, b: &Target) {
    let status = run_on(t, b, "kafka-metadata-quorum.sh", &["describe", "--status"]).ok();
    let leader: i32 = status
        .line_starting_with("LeaderId:")
        .split_whitespace()
        .nth(1)
        .and_then(|id| id.parse().ok())
        .unwrap_or(-1);
    assert!(b.node_ids().contains(&leader), "{status}");
    // `CurrentVoters: [{"id": 0, …}, {"id": 1, …}, …]`
    let mut voters: Vec<i32> = status
        .line_starting_with("CurrentVoters:")
        .split("{\"id\": ")
        .skip(1)
        .map(|v| {
            v.chars()
                .take_while(char::is_ascii_digit)
                .collect::<String>()
                .parse()
                .unwrap_or(-1)
        })
        .collect();
    voters.sort_unstable();
    assert_eq!(voters, b.node_ids(), "{status}");
    status.expect_line("CurrentObservers:       []");
    let hw: i64 = status
        .line_starting_with("HighWatermark:")
        .split_whitespace()
        .nth(1)
        .and_then(|v| v.parse().ok())
        .unwrap_or(-1);
    assert!(hw >= 0, "{status}");
    let replication = run_on(
        t,
        b,
        "kafka-metadata-quorum.sh",
        &["describe", "--replication"],
    )
    .ok();
    // One row per voter: the leader's and (in a cluster) each follower's.
    for id in b.node_ids() {
        let row = replication.line_starting_with(&format!("{id} "));
        let cols: Vec<&str> = row.split_whitespace().collect();
        let want = if id == leader { "Leader" } else { "Follower" };
        assert_eq!(cols.last(), Some(&want), "{replication}");
        if id == leader {
            // The leader's lag is 0 and it was caught up just now (a timestamp, not -1).
            assert_eq!(cols.get(3), Some(&"0"), "{replication}");
            assert!(
                cols.get(5)
                    .and_then(|v| v.parse::<i64>().ok())
                    .unwrap_or(-1)
                    > 0,
                "{replication}"
            );
        }
    }
}
