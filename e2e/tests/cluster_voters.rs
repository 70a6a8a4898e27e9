//! The controller quorum changed at runtime (issue 9, KIP-853): a controller that joins
//! through `controller.quorum.bootstrap.servers` is a non-voter (an observer) until
//! `kafka-metadata-quorum.sh add-controller` makes it a voter, and `remove-controller` takes a
//! voter out, one change at a time, without the quorum losing its majority. Driven by Apache
//! Kafka's own tool; passes against Apache Kafka 4.1 (`OXBOW_E2E_TARGET=kafka`, its quorum
//! formatted with `--initial-controllers`) as well as against oxbow (the same list given as
//! `oxbow.initial.controllers`, every node with one shared set of quorum keys).

use std::time::Duration;

use oxbow_e2e::cluster_tools::{
    active_controller, assert_acknowledged_are_stored, create_topic as create, read_all,
    wait_for_isr, wait_for_quorum, VerifiableProducer,
};
use oxbow_e2e::{tools_or_skip, Cluster, Flavor, Tools};

/// The fault tests' equal, short failure detection on both implementations.
const FAST_FAILURE_DETECTION: &[(&str, &str)] = &[
    ("broker.session.timeout.ms", "6000"),
    ("broker.heartbeat.interval.ms", "1000"),
    ("replica.lag.time.max.ms", "6000"),
];

/// `directory.id` of node `id`'s first log dir (its metadata log dir), as
/// `remove-controller --controller-directory-id` needs it.
fn directory_id(c: &Cluster, id: usize) -> String {
    let path = c.node(id).data_dir().join("meta.properties");
    let props = std::fs::read_to_string(&path)
        .unwrap_or_else(|e| panic!("cannot read {}: {e}", path.display()));
    props
        .lines()
        .find_map(|l| l.strip_prefix("directory.id="))
        .map(|v| v.trim().to_string())
        .unwrap_or_else(|| panic!("no directory.id in {}:\n{props}", path.display()))
}

/// `kafka-metadata-quorum.sh --bootstrap-server <running nodes> <args>`, which must succeed.
fn quorum_tool(t: &Tools, c: &Cluster, args: &[&str]) -> String {
    let bs = c.bootstrap();
    let mut all = vec!["--bootstrap-server", bs.as_str()];
    all.extend_from_slice(args);
    let out = t.run_with(
        "kafka-metadata-quorum.sh",
        &all,
        None,
        Duration::from_secs(90),
    );
    assert!(
        out.success(),
        "kafka-metadata-quorum.sh {args:?} failed:\n{out}"
    );
    out.stdout
}

/// Writes `count` records with acks=all to a new RF-3 topic and reads every acknowledged one
/// back at its offset.
fn produce_and_consume(t: &Tools, c: &Cluster, topic: &str, count: u32) {
    create(t, c, topic, 3, 3, &["min.insync.replicas=2"]);
    wait_for_isr(c, topic, 3, 3);
    let mut producer = VerifiableProducer::start(t, c, topic, Some(count), 500, &[]);
    producer.wait_finished(Duration::from_secs(120));
    let acked = producer.acked();
    assert_eq!(acked.len(), count as usize, "{}", producer.output());
    assert_acknowledged_are_stored(&acked, &read_all(c, topic), 3);
}

/// Three voters; a fourth combined node joins as an observer and `add-controller` makes it a
/// voter (four listed); topics and acks=all writes work; kill -9 of the active controller
/// elects another among the four; `remove-controller` of the killed voter leaves the three
/// live ones, and the cluster still works.
#[test]
fn controllers_are_added_and_removed_at_runtime() {
    let t = tools_or_skip!();
    let flavor = Flavor::from_env();
    let mut c = Cluster::start_dynamic(flavor, 3, FAST_FAILURE_DETECTION);
    wait_for_quorum(&t, &c, &[0, 1, 2], &[]);

    // The joining node replicates the metadata log without voting.
    let joined = c.add_joining_node();
    assert_eq!(joined, 3);
    wait_for_quorum(&t, &c, &[0, 1, 2], &[3]);

    let config = c.node(3).config_path().display().to_string();
    let added = quorum_tool(&t, &c, &["--command-config", &config, "add-controller"]);
    assert!(
        added.contains("Added controller 3 with directory id"),
        "{added}"
    );
    let status = wait_for_quorum(&t, &c, &[0, 1, 2, 3], &[]);
    // Adding it again is refused: it votes already.
    let bs = c.bootstrap();
    let again = t.run_with(
        "kafka-metadata-quorum.sh",
        &[
            "--bootstrap-server",
            &bs,
            "--command-config",
            &config,
            "add-controller",
        ],
        None,
        Duration::from_secs(90),
    );
    assert!(
        !again.success() && again.combined().contains("DuplicateVoterException"),
        "a second add-controller of node 3:\n{again}\nstatus before:\n{status}"
    );

    // kraft.version 1: the voter set is dynamic (kafka-features.sh reads ApiVersions).
    let features = t
        .run(
            "kafka-features.sh",
            &["--bootstrap-server", &bs, "describe"],
        )
        .ok();
    let kraft: Vec<&str> = features
        .lines()
        .into_iter()
        .find(|l| l.starts_with("Feature: kraft.version"))
        .unwrap_or_else(|| panic!("no kraft.version line:\n{features}"))
        .split('\t')
        .map(str::trim)
        .filter(|f| !f.starts_with("Epoch:"))
        .collect();
    assert_eq!(
        kraft,
        [
            "Feature: kraft.version",
            "SupportedMinVersion: 0",
            "SupportedMaxVersion: 1",
            "FinalizedVersionLevel: 1"
        ],
        "{features}"
    );

    produce_and_consume(&t, &c, "four-voters", 300);

    // The membership is in the metadata log: the added voter, restarted with the same
    // configuration (bootstrap servers only), is a voter again.
    c.node_mut(3).restart();
    wait_for_quorum(&t, &c, &[0, 1, 2, 3], &[]);

    // kill -9 of the active controller: another of the four takes over.
    let leader = active_controller(&t, &c).expect("an active controller");
    c.node_mut(leader as usize).kill9();
    c.wait_until(Duration::from_secs(60), "another active controller", |c| {
        active_controller(&t, c).is_some_and(|l| l != leader && (0..4).contains(&l))
    });
    let new_leader = active_controller(&t, &c).expect("an active controller");

    // Remove the killed voter, as an operator replaces a lost controller: three live voters
    // stay. (Removing a live voter made Kafka 4.1.0's leader die of a fatal fault,
    // "Unexpected acknowledgement from non-voter 0", when that voter's answer to the leader's
    // BeginQuorumEpoch heartbeat arrived after the change.)
    let removed = leader;
    let dir = directory_id(&c, removed as usize);
    let id = removed.to_string();
    let out = quorum_tool(
        &t,
        &c,
        &[
            "remove-controller",
            "--controller-id",
            &id,
            "--controller-directory-id",
            &dir,
        ],
    );
    // Kafka 4.1 prints "Removed  KRaft controller N with directory id D" (two spaces).
    assert!(
        out.starts_with("Removed")
            && out.contains(&format!(
                "KRaft controller {removed} with directory id {dir}"
            )),
        "{out}"
    );
    let voters: Vec<i32> = (0..4).filter(|v| *v != removed).collect();
    wait_for_quorum(&t, &c, &voters, &[]);
    assert_eq!(
        active_controller(&t, &c),
        Some(new_leader),
        "removing another voter keeps the active controller"
    );

    produce_and_consume(&t, &c, "three-voters", 300);
}

/// A one-controller cluster grows to three voters, as a 1-broker KafkaCluster scaled to 3
/// does: the single initial controller (oxbow: `oxbow.initial.controllers` with one entry,
/// a replicated quorum of one voter, not the single-node mode; Kafka: formatted with one
/// `--initial-controllers` entry) is joined by two nodes with the same quorum keys, which are
/// observers until `add-controller` makes each a voter: 1 → 2 → 3 voters, then RF-3 acks=all
/// writes are read back.
#[test]
fn a_single_controller_grows_to_three_voters() {
    let t = tools_or_skip!();
    let flavor = Flavor::from_env();
    let mut c = Cluster::start_dynamic(flavor, 1, FAST_FAILURE_DETECTION);
    wait_for_quorum(&t, &c, &[0], &[]);
    for id in 1..3 {
        assert_eq!(c.add_joining_node(), id);
    }
    wait_for_quorum(&t, &c, &[0], &[1, 2]);
    for id in 1..3 {
        let config = c.node(id).config_path().display().to_string();
        let added = quorum_tool(&t, &c, &["--command-config", &config, "add-controller"]);
        assert!(
            added.contains(&format!("Added controller {id} with directory id")),
            "{added}"
        );
        let voters: Vec<i32> = (0..=id as i32).collect();
        let observers: Vec<i32> = (id as i32 + 1..3).collect();
        wait_for_quorum(&t, &c, &voters, &observers);
    }
    produce_and_consume(&t, &c, "grown-to-three", 300);
}
