//! The broker under a user who does what they should not: clients writing to the
//! coordinators' internal topics, settings that cannot be honoured yet, many listeners,
//! floods of idle and stalled connections.
//!
//! Each test starts its own broker: oxbow-broker by default, or a real Apache Kafka 4.1
//! with `OXBOW_E2E_TARGET=kafka` where the behaviour is Kafka's (which proves the
//! assertions describe Kafka). Waits poll with deadlines.

use oxbow_e2e::group_member::script;
use oxbow_e2e::tools::{create_topic, create_topic_with, groups, kcat_produce};
use oxbow_e2e::{
    free_port, oxbow_broker_bin, run_command, tools_or_skip, Broker, ToolOutput, Tools,
};
use serde_json::Value;
use std::net::TcpStream;
use std::process::{Command, Stdio};
use std::thread;
use std::time::{Duration, Instant};

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
    create_topic(&t, &b, "owned", 1);
    kcat_produce(&t, &b, "owned", &[], "a\nb\nc\nd\ne\n");
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

/// Runs `oxbow-broker` on a `server.properties` with `props` until it exits (it must, within
/// 30 s) and returns what it printed.
fn oxbow_until_exit(dir: &std::path::Path, name: &str, props: &str) -> ToolOutput {
    let path = dir.join(format!("{name}.properties"));
    std::fs::write(&path, props).expect("write server.properties");
    let bin = oxbow_broker_bin();
    let mut cmd = Command::new(&bin);
    cmd.arg(&path).env("NO_COLOR", "1");
    let arg = path.display().to_string();
    run_command(cmd, "oxbow-broker", &[&arg], None, Duration::from_secs(30))
}

/// A broker-only node (`process.roles=broker`, a quorum observer) that names itself among
/// the voters is refused at start with Kafka's message naming the keys, exit code 2, rather
/// than run as something else. (Broker-only nodes that are configured right join the
/// cluster: e2e/tests/cluster_roles.rs.)
#[test]
fn a_broker_only_node_listed_as_a_voter_fails_start_up_naming_the_key() {
    let dir = tempfile::tempdir().expect("temp dir");
    let broker_only = format!(
        "node.id=1\nprocess.roles=broker\nlisteners=PLAINTEXT://127.0.0.1:{}\n\
         controller.listener.names=CONTROLLER\n\
         controller.quorum.voters=1@127.0.0.1:{}\nlog.dirs={}\n",
        free_port(),
        free_port(),
        dir.path().join("data-b").display()
    );
    let out = oxbow_until_exit(dir.path(), "broker-only", &broker_only);
    assert_eq!(out.status.code(), Some(2), "{out}");
    assert!(
        out.stderr.contains(
            "If process.roles contains just the 'broker' role, the node id 1 must not be \
             included in the set of voters controller.quorum.voters="
        ),
        "{out}"
    );
}

/// Kafka's combined single-node layout (`process.roles=broker,controller`, the quorum being
/// this node's own controller listener) describes exactly what Oxbow serves: it starts and
/// clients are served on its PLAINTEXT listener.
#[test]
fn a_combined_single_node_quorum_config_is_accepted() {
    let t = tools_or_skip!();
    let dir = tempfile::tempdir().expect("temp dir");
    let (port, cport) = (free_port(), free_port());
    let path = dir.path().join("server.properties");
    std::fs::write(
        &path,
        format!(
            "node.id=0\nprocess.roles=broker,controller\n\
             listeners=PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{cport}\n\
             advertised.listeners=PLAINTEXT://127.0.0.1:{port}\n\
             controller.listener.names=CONTROLLER\n\
             listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT\n\
             controller.quorum.voters=0@127.0.0.1:{cport}\n\
             log.dirs={}\n",
            dir.path().join("data").display()
        ),
    )
    .expect("write server.properties");
    let log = std::fs::File::create(dir.path().join("broker.log")).expect("log file");
    let mut child = Command::new(oxbow_broker_bin())
        .arg(&path)
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .spawn()
        .expect("start oxbow-broker");
    let deadline = Instant::now() + Duration::from_secs(30);
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], port));
    while TcpStream::connect_timeout(&addr, Duration::from_millis(200)).is_err() {
        let exited = child.try_wait().expect("try_wait");
        let log = std::fs::read_to_string(dir.path().join("broker.log")).unwrap_or_default();
        assert!(exited.is_none(), "oxbow-broker exited: {exited:?}\n{log}");
        assert!(
            Instant::now() < deadline,
            "not listening within 30 s:\n{log}"
        );
        thread::sleep(Duration::from_millis(50));
    }
    let bs = format!("127.0.0.1:{port}");
    let out = t.run("kcat", &["-b", &bs, "-L", "-m", "10"]);
    let _ = child.kill();
    let _ = child.wait();
    let out = out.ok();
    assert!(
        out.stdout
            .contains(&format!("broker 0 at 127.0.0.1:{port}")),
        "{out}"
    );
}

/// Host:port of every broker as `confluent_kafka.AdminClient.describe_cluster()` (the
/// DescribeCluster API) reports them via `bootstrap`.
fn described_cluster_nodes(t: &Tools, bootstrap: &str) -> String {
    let code = "import sys\n\
from confluent_kafka.admin import AdminClient\n\
a = AdminClient({'bootstrap.servers': sys.argv[1]})\n\
d = a.describe_cluster(request_timeout=30).result()\n\
print(','.join(f'{n.host}:{n.port}' for n in d.nodes))\n";
    let out = t.run("python", &["-c", code, bootstrap]).ok();
    out.stdout.trim().to_string()
}

/// Two listeners (INTERNAL on 127.0.0.1, EXTERNAL on 127.0.0.2): Metadata, FindCoordinator
/// and DescribeCluster answer each client with the advertised address of the listener its
/// request came in on, as Kafka does — the setup Kubernetes needs for in-cluster and outside
/// clients.
#[test]
fn each_listener_is_answered_with_its_own_advertised_address() {
    let t = tools_or_skip!();
    let external = free_port();
    let kafka = oxbow_e2e::Flavor::from_env() == oxbow_e2e::Flavor::Kafka;
    let controller = if kafka {
        ",CONTROLLER://127.0.0.1:{controller_port}"
    } else {
        ""
    };
    let listeners =
        format!("INTERNAL://127.0.0.1:{{port}},EXTERNAL://127.0.0.2:{external}{controller}");
    let advertised = format!("INTERNAL://127.0.0.1:{{port}},EXTERNAL://127.0.0.2:{external}");
    let b = Broker::start_target(&[
        ("listeners", &listeners),
        ("advertised.listeners", &advertised),
        (
            "listener.security.protocol.map",
            "INTERNAL:PLAINTEXT,EXTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT",
        ),
        ("inter.broker.listener.name", "INTERNAL"),
        ("group.initial.rebalance.delay.ms", "0"),
    ]);
    let internal = b.bootstrap();
    let external = format!("127.0.0.2:{external}");

    for bs in [&internal, &external] {
        let out = t.run("kcat", &["-b", bs, "-L", "-m", "30"]).ok();
        assert!(
            out.stdout.contains(&format!("broker 0 at {bs}")),
            "Metadata via {bs} advertises {bs}: {out}"
        );
        assert_eq!(
            described_cluster_nodes(&t, bs),
            *bs,
            "DescribeCluster via {bs}"
        );
    }

    create_topic(&t, &external, "two-doors", 1);
    groups(
        &t,
        &external,
        &[
            "--group",
            "door-group",
            "--topic",
            "two-doors",
            "--reset-offsets",
            "--to-earliest",
            "--execute",
        ],
    )
    .ok();
    for bs in [&internal, &external] {
        let out = groups(&t, bs, &["--group", "door-group", "--describe", "--state"]).ok();
        let coordinator = out
            .stdout
            .lines()
            .map(|l| l.split_whitespace().collect::<Vec<_>>())
            .find(|w| w.first() == Some(&"door-group"))
            .and_then(|w| w.get(1).map(|s| s.to_string()))
            .unwrap_or_else(|| panic!("no --state row: {out}"));
        assert_eq!(coordinator, *bs, "FindCoordinator via {bs}: {out}");
    }
}

/// 1,700 connections — 1,500 idle, 200 stalled after declaring 100 MB requests — keep
/// oxbow-broker under 100 MiB resident while a normal producer and consumer are served.
/// Oxbow-only: Apache Kafka 4.1 with a 512 MiB heap runs out of memory here.
#[test]
fn idle_and_stalled_connections_cost_little_memory() {
    let t = tools_or_skip!();
    let b = Broker::start_with(&[("group.initial.rebalance.delay.ms", "0")]);
    let pid = b.pid().expect("running").to_string();
    // The client holds 1,700 sockets: raise its open files limit (soft up to hard).
    let cmd = format!(
        "ulimit -n 4096 && exec {} {} {} {pid} 1500 200",
        t.path("python").display(),
        script("connection_flood.py"),
        b.bootstrap()
    );
    let out = run_command(
        {
            let mut c = Command::new("bash");
            c.args(["-c", &cmd]);
            c
        },
        "bash",
        &["-c", &cmd],
        None,
        Duration::from_secs(300),
    )
    .ok();
    let r: Value = serde_json::from_str(out.lines().last().expect("summary"))
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(r["opened"], 1700, "{out}");
    assert_eq!(r["closed_by_broker"], 0, "{out}");
    assert_eq!(r["undelivered"], 0, "{out}");
    assert_eq!(r["consumed"], true, "{out}");
    let rss_kib = r["rss_kib"]["VmRSS"].as_u64().expect("VmRSS");
    eprintln!(
        "broker memory with 1,700 connections open: {}",
        r["rss_kib"]
    );
    assert!(
        rss_kib < 100 * 1024,
        "broker RSS {rss_kib} KiB with 1,700 connections must stay under 100 MiB: {out}"
    );
}

/// `max.connections.per.ip.overrides` and `connections.max.idle.ms` as Kafka applies them:
/// the connection over an address's limit is closed right after it is accepted while other
/// addresses are served, and a connection on which nothing arrives is closed once the idle
/// time has passed (not before).
#[test]
fn per_address_limits_and_idle_expiry_behave_as_in_kafka() {
    let t = tools_or_skip!();
    let b = Broker::start_target(&[
        ("max.connections.per.ip.overrides", "127.0.0.2:2"),
        ("connections.max.idle.ms", "3000"),
    ]);
    let out = t
        .run(
            "python",
            &[&script("connection_limits.py"), &b.bootstrap(), "3000"],
        )
        .ok();
    let r: Value = serde_json::from_str(out.lines().last().expect("summary"))
        .unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(r["first_two_served"], true, "{out}");
    assert_eq!(r["third_closed"], true, "{out}");
    assert_eq!(r["other_address_served"], true, "{out}");
    assert_eq!(r["idle_closed"], true, "{out}");
    let after = r["idle_closed_after_ms"].as_u64().expect("ms");
    assert!(after >= 2900, "closed only once idle for 3 s: {out}");
}

/// Descriptors the process `pid` has open (entries of `/proc/<pid>/fd`).
fn open_fds_of(pid: u32) -> usize {
    std::fs::read_dir(format!("/proc/{pid}/fd")).map_or(0, |d| d.count())
}

/// Issue 15: a partition with more rolled segments than the broker may open descriptors
/// (`ulimit -n 1024`, 1,200 segments) used to stop the broker from starting; now only each
/// partition's active segment keeps its files open and rolled ones go through a bounded
/// cache, so it starts, serves every record of every segment, and stays within a few
/// hundred descriptors. When even the active segments do not fit (`ulimit -n 600` with 61
/// partitions) start-up is refused with a message naming `ulimit -n` and the counts.
/// Oxbow-only: Apache Kafka keeps every segment's files open (and maps its indexes).
#[test]
fn a_low_open_files_limit_still_serves_every_rolled_segment() {
    let t = tools_or_skip!();
    let mut b = Broker::start();
    let bs = b.bootstrap();
    // segment.index.bytes=4 holds one index entry and index.interval.bytes=0 adds one from
    // the second batch on: two single-record batches per segment.
    create_topic_with(
        &t,
        &b,
        "segs",
        1,
        &[
            "--config",
            "segment.index.bytes=4",
            "--config",
            "index.interval.bytes=0",
        ],
    );
    create_topic(&t, &b, "wide", 60);
    let records: Vec<String> = (0..2_400).map(|i| format!("record {i} of segs")).collect();
    let input: String = records.iter().map(|r| format!("{r}\n")).collect();
    kcat_produce(
        &t,
        &b,
        "segs",
        &["-p", "0", "-X", "batch.num.messages=1"],
        &input,
    );
    b.stop();
    let segments = std::fs::read_dir(b.data_dir().join("segs-0"))
        .expect("segs-0")
        .filter(|e| {
            e.as_ref()
                .is_ok_and(|e| e.file_name().to_string_lossy().ends_with(".log"))
        })
        .count();
    let limit = 1024;
    assert!(
        segments > limit,
        "{segments} segments: more than the {limit} descriptors are needed to show anything"
    );

    // Not even the 61 partitions' active segments fit under 600: refused, clearly.
    b.set_open_files_limit(Some(600));
    let refused = b.start_until_exit();
    assert!(
        !refused.success(),
        "start-up under ulimit -n 600 must fail: {refused}"
    );
    let said = refused.combined();
    assert!(
        said.contains("ulimit -n") && said.contains("61 partitions"),
        "the refusal names ulimit -n and the partitions: {refused}"
    );

    b.set_open_files_limit(Some(limit as u64));
    b.start_again();
    let pid = b.pid().expect("running");
    let out = t
        .run(
            "kcat",
            &[
                "-b",
                &bs,
                "-C",
                "-t",
                "segs",
                "-p",
                "0",
                "-o",
                "beginning",
                "-e",
                "-q",
                "-f",
                "%o %s\n",
            ],
        )
        .ok();
    let expected: Vec<String> = records
        .iter()
        .enumerate()
        .map(|(i, r)| format!("{i} {r}"))
        .collect();
    assert_eq!(
        out.lines(),
        expected,
        "every record of every segment, in order"
    );
    let fds = open_fds_of(pid);
    eprintln!("{segments} segments in segs-0, 61 partitions: {fds} descriptors open after reading them all");
    // 3 per partition's active segment, 64 cache slots (derived from ulimit -n 1024),
    // and the broker's own (listener, connections, metadata store, runtime).
    assert!(
        fds <= 3 * 61 + 64 + 100,
        "{fds} descriptors open with {segments} segments"
    );
}
