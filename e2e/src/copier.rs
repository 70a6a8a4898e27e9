//! Kafka's exactly-once copier, `org.apache.kafka.tools.TransactionalMessageCopier` (in the
//! Kafka tools jar; the copier of Kafka's own exactly-once system tests), as the transaction
//! tests on one broker and on the cluster run it.

use std::time::Duration;

use crate::{poll_until, Background, Tools};

/// Starts the copier from partition 0 of `input` to `output` over `bootstrap`, in
/// transactions of 200, as one member of `group` (subscribing) sending its offsets with the
/// group's metadata.
pub fn start(
    t: &Tools,
    bootstrap: &str,
    input: &str,
    output: &str,
    transactional_id: &str,
    group: &str,
) -> Background {
    let args = [
        "org.apache.kafka.tools.TransactionalMessageCopier",
        "--broker-list",
        bootstrap,
        "--input-topic",
        input,
        "--input-partition",
        "0",
        "--output-topic",
        output,
        "--transactional-id",
        transactional_id,
        "--consumer-group",
        group,
        "--transaction-size",
        "200",
        "--group-mode",
        "--use-group-metadata",
    ];
    Background::tool(t, "kafka-run-class.sh", &args)
}

/// The copier's last reported `totalProcessed` in its JSON status lines on stdout; 0 before
/// the first.
pub fn processed(stdout: &str) -> u64 {
    stdout
        .lines()
        .rev()
        .filter_map(|l| serde_json::from_str::<serde_json::Value>(l).ok())
        .find_map(|v| v.get("totalProcessed").and_then(|n| n.as_u64()))
        .unwrap_or(0)
}

/// Waits up to 180 s until the copier has committed at least `n` records; panics with its
/// output if it exits first.
pub fn wait_processed(copier: &mut Background, n: u64, what: &str) {
    poll_until(what, Duration::from_secs(180), || {
        let processed = processed(&copier.stdout());
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
