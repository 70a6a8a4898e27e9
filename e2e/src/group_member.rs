//! Consumer group members as real clients print them: `kafka-verifiable-consumer.sh`
//! (the Java KafkaConsumer) and `tests/py/groups_member.py` (librdkafka, same event shapes),
//! run in the background against one broker or a cluster. [`Member`] reads their JSON
//! events: the partitions a member owns now, the records it got, its commits.

use std::collections::BTreeSet;

use serde_json::Value;

use crate::tools::Bootstrap;
use crate::{Background, Tools};

/// Path of a helper script in `e2e/tests/py`.
pub fn script(name: &str) -> String {
    format!("{}/tests/py/{name}", env!("CARGO_MANIFEST_DIR"))
}

/// A group member printing kafka-verifiable-consumer.sh events.
pub struct Member {
    /// Name in failure messages.
    pub label: &'static str,
    /// The member's process.
    pub bg: Background,
}

impl Member {
    /// Java: kafka-verifiable-consumer.sh --verbose (commits synchronously after each batch).
    pub fn java(
        t: &Tools,
        b: &impl Bootstrap,
        label: &'static str,
        topic: &str,
        group: &str,
        extra: &[&str],
    ) -> Member {
        let bs = b.bootstrap_servers();
        let mut args = vec![
            "--bootstrap-server",
            bs.as_str(),
            "--topic",
            topic,
            "--group-id",
            group,
            "--verbose",
        ];
        args.extend_from_slice(extra);
        Member {
            label,
            bg: Background::tool(t, "kafka-verifiable-consumer.sh", &args),
        }
    }

    /// librdkafka: py/groups_member.py (confluent-kafka), `conf` as key=value.
    pub fn rdkafka(
        t: &Tools,
        b: &impl Bootstrap,
        label: &'static str,
        topic: &str,
        group: &str,
        conf: &[&str],
    ) -> Member {
        let bs = b.bootstrap_servers();
        let s = script("groups_member.py");
        let mut args = vec!["-u", s.as_str(), bs.as_str(), topic, group];
        args.extend_from_slice(conf);
        Member {
            label,
            bg: Background::tool(t, "python", &args),
        }
    }

    /// The JSON events it printed so far.
    pub fn events(&self) -> Vec<Value> {
        self.bg
            .stdout()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .collect()
    }

    /// Partitions owned now: assigned minus revoked, in event order
    /// (works for eager and cooperative listeners).
    pub fn owned(&self) -> BTreeSet<i64> {
        owned_after(&self.events(), usize::MAX)
    }

    /// Values of the records it consumed (with repeats).
    pub fn values(&self) -> Vec<String> {
        self.events()
            .iter()
            .filter(|e| e["name"] == "record_data")
            .map(|e| e["value"].as_str().unwrap_or("<null>").to_string())
            .collect()
    }

    /// Count of events named `name`.
    pub fn count(&self, name: &str) -> usize {
        self.events().iter().filter(|e| e["name"] == name).count()
    }

    /// True when every consumed record has been followed by a successful commit.
    pub fn all_committed(&self) -> bool {
        let ev = self.events();
        let last_record = ev.iter().rposition(|e| e["name"] == "record_data");
        let last_commit = ev
            .iter()
            .rposition(|e| e["name"] == "offsets_committed" && e["success"] == true);
        match (last_record, last_commit) {
            (None, _) => true,
            (Some(r), Some(c)) => c > r,
            (Some(_), None) => false,
        }
    }

    /// Commits that did not succeed.
    pub fn failed_commits(&self) -> Vec<Value> {
        self.events()
            .into_iter()
            .filter(|e| e["name"] == "offsets_committed" && e["success"] != true)
            .collect()
    }
}

/// Partitions owned after the first `upto` events: assigned minus revoked.
pub fn owned_after(events: &[Value], upto: usize) -> BTreeSet<i64> {
    let mut owned = BTreeSet::new();
    for e in events.iter().take(upto) {
        let ps = || {
            e["partitions"]
                .as_array()
                .cloned()
                .unwrap_or_default()
                .into_iter()
                .map(|p| p["partition"].as_i64().expect("partition"))
        };
        if e["name"] == "partitions_assigned" {
            owned.extend(ps());
        } else if e["name"] == "partitions_revoked" {
            for p in ps() {
                owned.remove(&p);
            }
        }
    }
    owned
}

/// Each member's partitions, record count, failed commits and output, for failure messages.
pub fn describe_members(members: &[&Member]) -> String {
    members
        .iter()
        .map(|m| {
            format!(
                "== {} owns {:?}, {} records, {} failed commits\n{}",
                m.label,
                m.owned(),
                m.values().len(),
                m.failed_commits().len(),
                m.bg
            )
        })
        .collect::<Vec<_>>()
        .join("\n")
}
