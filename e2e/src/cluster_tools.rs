//! Kafka's own tools against a [`Cluster`], for the replication and fault tests (issue 8):
//! topic administration and `--describe` parsed into leaders and ISRs, the active controller
//! from `kafka-metadata-quorum.sh`, a `kafka-verifiable-producer.sh` writing with acks=all
//! whose acknowledgements are counted, and the check that every acknowledged record is read
//! back (with kcat) at the partition and offset it was acknowledged at.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use serde_json::Value;

use crate::{Background, Cluster, Tools};

/// `kafka-topics.sh --bootstrap-server <running nodes> <args>`, as for any target.
pub use crate::tools::topics;

/// One partition as `kafka-topics.sh --describe` prints it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionView {
    /// The leader's id, -1 (`none`) without one.
    pub leader: i32,
    /// Assigned replicas, preferred leader first.
    pub replicas: Vec<i32>,
    /// In-sync replicas.
    pub isr: Vec<i32>,
}

/// Partition index → leader, replicas and ISR as the running nodes' Metadata reports them
/// (`kcat -L -J`: no JVM start per poll); empty while no node answers, so callers poll it.
pub fn describe(c: &Cluster, topic: &str) -> BTreeMap<i32, PartitionView> {
    describe_excluding(c, topic, &[])
}

/// Like [`describe`], but only as nodes other than `excluded` see it: an isolated node keeps
/// reporting its stale view, so an answer that came from it counts as none.
pub fn describe_excluding(
    c: &Cluster,
    topic: &str,
    excluded: &[usize],
) -> BTreeMap<i32, PartitionView> {
    let mut parts = BTreeMap::new();
    let bs = c.bootstrap_excluding(excluded);
    if bs.is_empty() {
        return parts;
    }
    let out = std::process::Command::new("kcat")
        .args(["-b", &bs, "-L", "-J", "-t", topic, "-m", "5"])
        .stdin(std::process::Stdio::null())
        .output();
    let Some(meta) = out
        .ok()
        .filter(|o| o.status.success())
        .and_then(|o| serde_json::from_slice::<Value>(&o.stdout).ok())
    else {
        return parts;
    };
    let from = meta["originating_broker"]["id"].as_i64().unwrap_or(-1);
    if excluded.iter().any(|e| *e as i64 == from) {
        return parts;
    }
    let ids = |v: &Value| -> Vec<i32> {
        v.as_array()
            .map(|a| {
                a.iter()
                    .filter_map(|r| r["id"].as_i64().map(|id| id as i32))
                    .collect()
            })
            .unwrap_or_default()
    };
    let Some(topics) = meta["topics"].as_array() else {
        return parts;
    };
    for t in topics
        .iter()
        .filter(|t| t["topic"] == topic && t["error"].is_null())
    {
        for p in t["partitions"].as_array().into_iter().flatten() {
            let Some(index) = p["partition"].as_i64() else {
                continue;
            };
            parts.insert(
                index as i32,
                PartitionView {
                    leader: p["leader"].as_i64().unwrap_or(-1) as i32,
                    replicas: ids(&p["replicas"]),
                    isr: ids(&p["isrs"]),
                },
            );
        }
    }
    parts
}

/// Waits (up to 120 s) until every partition of `topic` (expecting `count`) has a leader and
/// an ISR of `isr` members.
pub fn wait_for_isr(c: &Cluster, topic: &str, count: usize, isr: usize) {
    c.wait_until(
        Duration::from_secs(120),
        &format!("{topic}: {count} partitions with a leader and {isr} in-sync replicas"),
        |c| {
            let d = describe(c, topic);
            d.len() == count && d.values().all(|v| v.leader >= 0 && v.isr.len() == isr)
        },
    );
}

/// Creates `topic` with replication factor `rf` and `--config` entries `configs`, through
/// [`crate::tools::create_topic_with`] (panics unless the tool says it created it).
pub fn create_topic(
    t: &Tools,
    c: &Cluster,
    topic: &str,
    partitions: u32,
    rf: u32,
    configs: &[&str],
) {
    let r = rf.to_string();
    let mut extra = vec!["--replication-factor", r.as_str()];
    for cfg in configs {
        extra.extend_from_slice(&["--config", cfg]);
    }
    crate::tools::create_topic_with(t, c, topic, partitions, &extra);
}

/// The broker leading most partitions of `topic` (the lowest id on a tie).
pub fn leader_of_most(c: &Cluster, topic: &str) -> usize {
    let mut led: BTreeMap<i32, usize> = BTreeMap::new();
    for v in describe(c, topic).values() {
        if v.leader >= 0 {
            *led.entry(v.leader).or_default() += 1;
        }
    }
    let most = led.values().copied().max().unwrap_or(0);
    match led.iter().find(|(_, n)| **n == most) {
        Some((id, _)) if most > 0 => *id as usize,
        _ => panic!("{topic} has no partition with a leader"),
    }
}

/// The active controller's id from `kafka-metadata-quorum.sh describe --status` (`LeaderId`),
/// None while the tool fails or no leader is known.
pub fn active_controller(t: &Tools, c: &Cluster) -> Option<i32> {
    let bs = c.bootstrap();
    let out = t.run_with(
        "kafka-metadata-quorum.sh",
        &["--bootstrap-server", &bs, "describe", "--status"],
        None,
        Duration::from_secs(60),
    );
    if !out.success() {
        return None;
    }
    out.stdout
        .lines()
        .map(str::trim)
        .find_map(|l| l.strip_prefix("LeaderId:"))
        .and_then(|id| id.trim().parse().ok())
        .filter(|id: &i32| *id >= 0)
}

/// One acknowledged record: where the producer was told it landed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub struct Acked {
    /// Partition index.
    pub partition: i64,
    /// Offset the broker acknowledged.
    pub offset: i64,
    /// The record's value (the verifiable producer's counter).
    pub value: String,
}

/// The `producer_send_success` events of `kafka-verifiable-producer.sh`'s stdout.
pub fn acked_records(producer_stdout: &str) -> Vec<Acked> {
    producer_stdout
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|e| e["name"] == "producer_send_success")
        .map(|e| Acked {
            partition: e["partition"].as_i64().unwrap_or(-1),
            offset: e["offset"].as_i64().unwrap_or(-1),
            value: e["value"].as_str().unwrap_or_default().to_string(),
        })
        .collect()
}

/// Reads every record of `topic` below the high watermark with kcat (from each partition's
/// leader, start to end): (partition, offset) → value.
pub fn read_all(c: &Cluster, topic: &str) -> BTreeMap<(i64, i64), String> {
    let bs = c.bootstrap();
    let out = std::process::Command::new("kcat")
        .args([
            "-b",
            &bs,
            "-C",
            "-t",
            topic,
            "-o",
            "beginning",
            "-e",
            "-q",
            "-f",
            "%p %o %s\\n",
        ])
        .stdin(std::process::Stdio::null())
        .output();
    let out = match out {
        Ok(out) => out,
        Err(e) => panic!("cannot run kcat: {e}"),
    };
    assert!(
        out.status.success(),
        "kcat failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .filter_map(|l| {
            let mut f = l.splitn(3, ' ');
            let p = f.next()?.parse().ok()?;
            let o = f.next()?.parse().ok()?;
            Some(((p, o), f.next().unwrap_or_default().to_string()))
        })
        .collect()
}

/// Asserts the durability promise of acks=all: every acknowledged record is stored at the
/// partition and offset it was acknowledged at (so no offset was acknowledged twice, e.g. by a
/// deposed leader), and every partition's offsets are contiguous from its first stored one.
pub fn assert_acknowledged_are_stored(
    acked: &[Acked],
    stored: &BTreeMap<(i64, i64), String>,
    partitions: i64,
) {
    let mut lost = Vec::new();
    for a in acked {
        match stored.get(&(a.partition, a.offset)) {
            Some(v) if *v == a.value => {}
            other => lost.push(format!("{a:?} read back as {other:?}")),
        }
    }
    assert!(
        lost.is_empty(),
        "{} of {} acknowledged records lost or moved, first: {:?}",
        lost.len(),
        acked.len(),
        &lost[..lost.len().min(5)]
    );
    for p in 0..partitions {
        let offsets: Vec<i64> = stored
            .keys()
            .filter(|(sp, _)| *sp == p)
            .map(|(_, o)| *o)
            .collect();
        for w in offsets.windows(2) {
            assert_eq!(w[1], w[0] + 1, "partition {p} has a gap at {}", w[0]);
        }
    }
}

/// `kafka-verifiable-producer.sh` writing with acks=all in the background; its
/// acknowledgements are counted from its JSON events.
pub struct VerifiableProducer {
    process: Background,
    /// Holds the `--producer.config` file while the tool runs.
    _config: tempfile::NamedTempFile,
}

impl VerifiableProducer {
    /// Starts writing records (values "0", "1", …) to `topic` at `throughput` records/s with
    /// acks=all, `max_messages` of them or, with None, until [`VerifiableProducer::stop`];
    /// `config` goes into its `--producer.config` (client settings, equal for both broker
    /// flavours).
    pub fn start(
        t: &Tools,
        c: &Cluster,
        topic: &str,
        max_messages: Option<u32>,
        throughput: u32,
        config: &[(&str, &str)],
    ) -> VerifiableProducer {
        use std::io::Write;
        let mut file = match tempfile::NamedTempFile::new() {
            Ok(f) => f,
            Err(e) => panic!("producer config file: {e}"),
        };
        for (k, v) in config {
            if let Err(e) = writeln!(file, "{k}={v}") {
                panic!("writing the producer config: {e}");
            }
        }
        let path = file.path().display().to_string();
        let max = max_messages.map_or_else(|| "-1".to_string(), |m| m.to_string());
        let (bs, rate) = (c.bootstrap(), throughput.to_string());
        let process = Background::tool(
            t,
            "kafka-verifiable-producer.sh",
            &[
                "--bootstrap-server",
                &bs,
                "--topic",
                topic,
                "--max-messages",
                &max,
                "--throughput",
                &rate,
                "--acks",
                "-1",
                "--producer.config",
                &path,
            ],
        );
        VerifiableProducer {
            process,
            _config: file,
        }
    }

    /// Every acknowledgement so far.
    pub fn acked(&self) -> Vec<Acked> {
        acked_records(&self.process.stdout())
    }

    /// How many records were acknowledged so far.
    pub fn acked_count(&self) -> usize {
        self.acked().len()
    }

    /// True while the tool runs.
    pub fn running(&mut self) -> bool {
        self.process.try_status().is_none()
    }

    /// Waits until at least `n` records are acknowledged; panics (with the tool's output) after
    /// `timeout` or when the tool exits first.
    pub fn wait_acked(&mut self, n: usize, timeout: Duration, what: &str) {
        let deadline = Instant::now() + timeout;
        while self.acked_count() < n {
            assert!(
                self.running(),
                "{what}: the producer exited with {} acknowledged:\n{}",
                self.acked_count(),
                self.process
            );
            assert!(
                Instant::now() < deadline,
                "{what}: {} of {n} acknowledged after {timeout:?}:\n{}",
                self.acked_count(),
                self.process
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }

    /// Like [`VerifiableProducer::wait_acked`], for `more` acknowledgements beyond those so far.
    pub fn wait_acked_more(&mut self, more: usize, timeout: Duration, what: &str) {
        let now = self.acked_count();
        self.wait_acked(now + more, timeout, what);
    }

    /// Waits for the tool to finish (it stops after `--max-messages` sends resolved).
    pub fn wait_finished(&mut self, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while self.running() {
            assert!(
                Instant::now() < deadline,
                "the producer did not finish within {timeout:?}:\n{}",
                self.process
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops the tool with SIGTERM: it closes its producer, which waits for the sends in
    /// flight, so every acknowledgement is printed. Panics if it had exited already (a
    /// producer that gave up is a failure of the test, shown with its output).
    pub fn stop(&mut self) {
        assert!(
            self.running(),
            "the producer exited before it was stopped:\n{}",
            self.process
        );
        self.process.term();
    }

    /// Everything the tool printed, for failure messages.
    pub fn output(&self) -> String {
        self.process.to_string()
    }
}

/// The ids in a `kafka-metadata-quorum.sh describe --status` line such as
/// `CurrentObservers: [{"id": 3, "directoryId": "…"}, …]`.
pub fn ids_in(line: &str) -> BTreeSet<i32> {
    line.split("\"id\":")
        .skip(1)
        .filter_map(|rest| {
            rest.trim_start()
                .split(|c: char| !c.is_ascii_digit())
                .next()
                .and_then(|n| n.parse().ok())
        })
        .collect()
}

/// Waits until `describe --status` lists exactly `voters` and `observers`, and
/// `describe --replication` names each voter Leader or Follower and each observer Observer,
/// as Kafka prints them; answers the status output.
pub fn wait_for_quorum(t: &Tools, c: &Cluster, voters: &[i32], observers: &[i32]) -> String {
    let voters: BTreeSet<i32> = voters.iter().copied().collect();
    let observers: BTreeSet<i32> = observers.iter().copied().collect();
    let mut last = String::new();
    c.wait_until(
        Duration::from_secs(90),
        "the quorum's voters and observers",
        |c| {
            let bs = c.bootstrap();
            let status = t.run_with(
                "kafka-metadata-quorum.sh",
                &["--bootstrap-server", &bs, "describe", "--status"],
                None,
                Duration::from_secs(60),
            );
            let replication = t.run_with(
                "kafka-metadata-quorum.sh",
                &["--bootstrap-server", &bs, "describe", "--replication"],
                None,
                Duration::from_secs(60),
            );
            last = format!("{status}\n{replication}");
            if !status.success() || !replication.success() {
                return false;
            }
            let line = |prefix: &str| {
                status
                    .stdout
                    .lines()
                    .find(|l| l.starts_with(prefix))
                    .map(ids_in)
                    .unwrap_or_default()
            };
            // --replication: one row per replica, its node id first and its status last.
            let rows: BTreeMap<i32, String> = replication
                .stdout
                .lines()
                .filter_map(|l| {
                    let mut cols = l.split_whitespace();
                    let id = cols.next()?.parse().ok()?;
                    Some((id, cols.last()?.to_string()))
                })
                .collect();
            line("CurrentVoters:") == voters
                && line("CurrentObservers:") == observers
                && voters.iter().all(|v| {
                    rows.get(v)
                        .is_some_and(|s| s == "Leader" || s == "Follower")
                })
                && observers
                    .iter()
                    .all(|o| rows.get(o).is_some_and(|s| s == "Observer"))
        },
    );
    last
}
