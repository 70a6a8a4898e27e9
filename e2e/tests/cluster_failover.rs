//! Controller failover on a three-node cluster with Kafka's default quorum timeouts
//! (`controller.quorum.fetch.timeout.ms` 2 s): when the active controller's process is gone
//! (kill -9), oxbow's voters find its CONTROLLER listener refusing connections and elect a
//! new one at once instead of waiting out the fetch timeout; a paused (SIGSTOP) controller,
//! whose listener still accepts, is waited for as Kafka's voters do.
//!
//! The early election is oxbow's own (Kafka always waits the fetch timeout): against Apache
//! Kafka 4.1 (`OXBOW_E2E_TARGET=kafka`) these tests check only that a new controller is
//! elected and topic administration works again, and print the times.

use std::time::{Duration, Instant};

use oxbow_client::kafka_protocol::messages::*;
use oxbow_client::kafka_protocol::protocol::StrBytes;
use oxbow_client::{Client, ConnectionConfig};
use oxbow_e2e::{tools_or_skip, Cluster, Flavor};

/// What oxbow's voters log when they find the leader's listener refusing.
const STANDING_EARLY: &str = "standing for election now";

/// How long a new controller may take on oxbow after kill -9 of the active one: below
/// Kafka's fetch timeout (2 s), which both sides waited before.
const ELECTION_BOUND: Duration = Duration::from_millis(1500);

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn describe_quorum_request() -> DescribeQuorumRequest {
    DescribeQuorumRequest::default().with_topics(vec![describe_quorum_request::TopicData::default(
    )
    .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
    .with_partitions(vec![
        describe_quorum_request::PartitionData::default().with_partition_index(0)
    ])])
}

/// The quorum's leader as node `node` answers DescribeQuorum (brokers ask the active
/// controller); `None` on an error or no leader.
async fn quorum_leader(client: &Client, node: i32) -> Option<i32> {
    let response = client.send(node, &describe_quorum_request()).await.ok()?;
    if response.error_code != 0 {
        return None;
    }
    let leader = response.topics.first()?.partitions.first()?.leader_id.0;
    (leader >= 0).then_some(leader)
}

/// Polls node `node` until it names a quorum leader other than `not`, answering it and the
/// time it was seen.
async fn new_leader_seen_by(client: &Client, node: i32, not: Option<i32>) -> (i32, Instant) {
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        if let Some(leader) = quorum_leader(client, node)
            .await
            .filter(|l| Some(*l) != not)
        {
            return (leader, Instant::now());
        }
        assert!(
            Instant::now() < deadline,
            "node {node} named no quorum leader other than {not:?} within 60 s"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// Creates `topic` through node `node`, retrying Kafka's retriable answers (NOT_CONTROLLER,
/// REQUEST_TIMED_OUT) and failed requests until it is created; answers when it was.
async fn create_topic_through(client: &Client, node: i32, topic: &str) -> Instant {
    let deadline = Instant::now() + Duration::from_secs(60);
    let request = CreateTopicsRequest::default()
        .with_timeout_ms(30_000)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_string())))
            .with_num_partitions(1)
            .with_replication_factor(2)]);
    loop {
        let last = match client.send(node, &request).await {
            Ok(response) => match response.topics.first() {
                Some(t) if t.error_code == 0 => return Instant::now(),
                Some(t) if t.error_code == 41 || t.error_code == 7 => format!("{t:?}"),
                other => panic!("CreateTopics {topic} through node {node}: {other:?}"),
            },
            Err(e) => e.to_string(),
        };
        assert!(
            Instant::now() < deadline,
            "CreateTopics {topic} through node {node} kept failing: {last}"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A three-node cluster with its active controller and a surviving node through which topics
/// were created before the fault, so that the connections to it are up.
struct Setup {
    flavor: Flavor,
    cluster: Cluster,
    rt: tokio::runtime::Runtime,
    client: Client,
    /// The active controller at the start.
    old: i32,
    /// Another node, asked after the fault.
    survivor: i32,
}

fn three_nodes_and_their_controller(first_topic: &str) -> Setup {
    let flavor = Flavor::from_env();
    let cluster = Cluster::start(flavor, 3, &[]);
    let rt = runtime();
    let client = Client::new(cluster.bootstrap().split(','), ConnectionConfig::default());
    let old = rt.block_on(new_leader_seen_by(&client, 0, None)).0;
    let survivor = (0..3).find(|n| *n != old).unwrap_or(0);
    rt.block_on(create_topic_through(&client, survivor, first_topic));
    Setup {
        flavor,
        cluster,
        rt,
        client,
        old,
        survivor,
    }
}

/// kill -9 of the active controller: a new one is elected and a CreateTopics sent through
/// another broker right after the kill is answered, on oxbow within [`ELECTION_BOUND`] (the
/// survivors log that they stood because the old leader's listener refused); with the
/// fetch timeout's election (2 s at the defaults) this fails.
#[test]
fn a_killed_active_controller_is_replaced_before_the_fetch_timeout() {
    let _t = tools_or_skip!();
    let Setup {
        flavor,
        cluster: mut c,
        rt,
        client,
        old,
        survivor,
    } = three_nodes_and_their_controller("before-kill");

    let killed_at = Instant::now();
    c.node_mut(old as usize).kill9();
    let (new, elected_at) = rt.block_on(new_leader_seen_by(&client, survivor, Some(old)));
    let created_at = rt.block_on(create_topic_through(&client, survivor, "after-kill"));
    let elected = elected_at - killed_at;
    let created = created_at - killed_at;
    eprintln!(
        "{flavor:?}: controller {old} killed; node {survivor} named {new} after {elected:?}, \
         CreateTopics answered after {created:?}"
    );
    assert_ne!(new, old);
    if flavor == Flavor::Oxbow {
        assert!(
            elected < ELECTION_BOUND,
            "a new controller took {elected:?} after kill -9 (bound {ELECTION_BOUND:?})"
        );
        assert!(
            created < Duration::from_secs(2),
            "CreateTopics took {created:?} after kill -9 of the controller"
        );
        // Right after the kill the dead node may still be listed (until it is fenced);
        // Metadata names the answering broker as the one to send admin requests to, never
        // the dead one (Kafka names a random live broker).
        let metadata = rt
            .block_on(client.send(
                survivor,
                &MetadataRequest::default().with_topics(Some(vec![])),
            ))
            .expect("Metadata");
        assert_eq!(
            metadata.controller_id.0, survivor,
            "controller named by node {survivor}"
        );
        let stood = (0..3)
            .filter(|n| *n != old as usize)
            .any(|n| c.node(n).log().contains(STANDING_EARLY));
        assert!(stood, "no survivor logged {STANDING_EARLY:?}");
    }
}

/// SIGSTOP of the active controller: its listener still accepts connections (the kernel
/// completes them into the backlog), so no voter stands early; the new controller comes
/// from the fetch timeout's election, as on Kafka, and the thawed old one follows it.
#[test]
fn a_paused_active_controller_is_not_replaced_before_the_fetch_timeout() {
    let _t = tools_or_skip!();
    let Setup {
        flavor,
        cluster: mut c,
        rt,
        client,
        old,
        survivor,
    } = three_nodes_and_their_controller("before-pause");

    let paused_at = Instant::now();
    c.node_mut(old as usize).pause();
    let (new, elected_at) = rt.block_on(new_leader_seen_by(&client, survivor, Some(old)));
    let elected = elected_at - paused_at;
    eprintln!("{flavor:?}: controller {old} paused; node {survivor} named {new} after {elected:?}");
    assert_ne!(new, old);
    if flavor == Flavor::Oxbow {
        for n in (0..3).filter(|n| *n != old as usize) {
            let log = c.node(n).log();
            assert!(
                !log.contains(STANDING_EARLY),
                "node {n} stood early although controller {old} was only paused:\n{log}"
            );
        }
    }
    c.node_mut(old as usize).resume();
    // The thawed node learns of the new term and follows: asked through it, the quorum's
    // leader is the new one.
    let deadline = Instant::now() + Duration::from_secs(60);
    while rt.block_on(quorum_leader(&client, old)) != Some(new) {
        assert!(
            Instant::now() < deadline,
            "node {old} does not follow {new} after SIGCONT"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    rt.block_on(create_topic_through(&client, old, "after-pause"));
}

/// The topic names node `node` lists in Metadata, with how many brokers; `None` on an error.
async fn topics_seen_by(client: &Client, node: i32) -> Option<(Vec<String>, usize)> {
    let response = client
        .send(node, &MetadataRequest::default().with_topics(None))
        .await
        .ok()?;
    let names = response
        .topics
        .iter()
        .filter(|t| t.error_code == 0)
        .filter_map(|t| t.name.as_ref().map(|n| n.to_string()))
        .collect();
    Some((names, response.brokers.len()))
}

/// A voter that comes back with an empty log (a new disk; a KafkaCluster pod on ephemeral
/// storage replaced with a fresh `emptyDir`) is caught up by the leader and the quorum keeps
/// committing. Before, oxbow's leader's Raft core panicked on the follower's reverted log
/// ("follower log reversion is not allowed"), metadata froze on every node while each still
/// looked healthy, and the wiped broker never registered again.
#[test]
fn a_voter_back_with_an_empty_log_is_caught_up() {
    let _t = tools_or_skip!();
    let Setup {
        flavor,
        cluster: mut c,
        rt,
        client,
        old,
        survivor,
    } = three_nodes_and_their_controller("before-wipe");
    let wiped = survivor as usize;
    c.node_mut(wiped).kill9();
    c.node_mut(wiped).wipe_data();
    c.node_mut(wiped).start_again();
    // Topic administration goes on through the controller and through the wiped node.
    rt.block_on(create_topic_through(&client, old, "after-wipe"));
    rt.block_on(create_topic_through(
        &client,
        survivor,
        "through-the-wiped-node",
    ));
    // Every node, the wiped one included, learns all three topics and lists three brokers.
    let deadline = Instant::now() + Duration::from_secs(60);
    for node in 0..3 {
        loop {
            let seen = rt.block_on(topics_seen_by(&client, node));
            let complete = seen.as_ref().is_some_and(|(names, brokers)| {
                *brokers == 3
                    && ["before-wipe", "after-wipe", "through-the-wiped-node"]
                        .iter()
                        .all(|t| names.iter().any(|n| n == t))
            });
            if complete {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "{flavor:?}: node {node} (node {wiped} wiped) still sees {seen:?}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
    if flavor == Flavor::Oxbow {
        for n in 0..3 {
            let log = c.node(n).log();
            assert!(
                !log.contains("panicked") && !log.contains("Raft core stopped"),
                "node {n}'s metadata quorum failed after node {wiped} came back wiped:\n{log}"
            );
        }
    }
}
