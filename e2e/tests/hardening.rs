//! The broker under a user who does what they should not: clients writing to the
//! coordinators' internal topics, settings that cannot be honoured yet, many listeners,
//! floods of idle and stalled connections.
//!
//! Each test starts its own broker: oxbow-broker by default, or a real Apache Kafka 4.1
//! with `OXBOW_E2E_TARGET=kafka` where the behaviour is Kafka's (which proves the
//! assertions describe Kafka). Waits poll with deadlines.

use oxbow_e2e::{tools_or_skip, Broker, ToolOutput, Tools};
use serde_json::Value;

fn script(name: &str) -> String {
    format!("{}/tests/py/{name}", env!("CARGO_MANIFEST_DIR"))
}

fn groups(t: &Tools, b: &Broker, args: &[&str]) -> ToolOutput {
    let bs = b.bootstrap();
    let mut all = vec!["--bootstrap-server", bs.as_str()];
    all.extend_from_slice(args);
    t.run("kafka-consumer-groups.sh", &all)
}

/// CURRENT-OFFSET of `topic`-0 in `kafka-consumer-groups.sh --describe` of `group`.
#[track_caller]
fn committed_offset(t: &Tools, b: &Broker, group: &str, topic: &str) -> String {
    let out = groups(t, b, &["--group", group, "--describe"]).ok();
    out.stdout
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.len() > 3 && w[0] == group && w[1] == topic && w[2] == "0")
        .map(|w| w[3].to_string())
        .unwrap_or_else(|| panic!("no --describe row for {topic}-0:\n{out}"))
}

/// A client that produces forged offset commits into `__consumer_offsets` and asks
/// DeleteRecords to empty it gets INVALID_TOPIC_EXCEPTION for both (Kafka's
/// ReplicaManager refuses client appends and record deletion on internal topics), and the
/// group's committed offset is unchanged, also after a restart (which replays the topic).
#[test]
fn clients_cannot_write_or_truncate_consumer_offsets() {
    let t = tools_or_skip!();
    let mut b = Broker::start_target(&[("group.initial.rebalance.delay.ms", "0")]);
    let bs = b.bootstrap();
    t.run(
        "kafka-topics.sh",
        &[
            "--bootstrap-server",
            &bs,
            "--create",
            "--topic",
            "owned",
            "--partitions",
            "1",
        ],
    )
    .ok();
    t.run_stdin("kcat", &["-b", &bs, "-P", "-t", "owned"], "a\nb\nc\nd\ne\n")
        .ok();
    // Commits offset 3 for the group (and so creates __consumer_offsets).
    groups(
        &t,
        &b,
        &[
            "--group",
            "victim",
            "--topic",
            "owned",
            "--reset-offsets",
            "--to-offset",
            "3",
            "--execute",
        ],
    )
    .ok();
    assert_eq!(committed_offset(&t, &b, "victim", "owned"), "3");

    let out = t
        .run(
            "python",
            &[
                &script("internal_topics_forge.py"),
                &bs,
                "victim",
                "owned",
                "50",
            ],
        )
        .ok();
    let r: Value = serde_json::from_str(out.lines().last().expect("summary"))
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(r["acked"], 0, "no forged record may be acknowledged: {out}");
    assert_eq!(
        r["errors"],
        serde_json::json!({"TOPIC_EXCEPTION(17)": 50}),
        "every forged record is refused with INVALID_TOPIC_EXCEPTION: {out}"
    );
    assert_eq!(
        r["delete_records_error"], "TOPIC_EXCEPTION(17)",
        "DeleteRecords on __consumer_offsets is INVALID_TOPIC_EXCEPTION: {out}"
    );

    assert_eq!(committed_offset(&t, &b, "victim", "owned"), "3");
    b.restart();
    assert_eq!(
        committed_offset(&t, &b, "victim", "owned"),
        "3",
        "the committed offset survives a restart unchanged"
    );
}
