//! A replicated cluster of three nodes (issue 8), driven by Apache Kafka's own tools and
//! clients: the cluster forms with one active controller, topics are placed over all
//! brokers, and every record a producer got acknowledged with acks=all is read back at the
//! offset it was acknowledged at after the leader is killed with -9.
//!
//! Every test here describes Apache Kafka 4.1 and passes against it
//! (`OXBOW_E2E_TARGET=kafka`) as well as against oxbow.

use std::collections::{BTreeMap, BTreeSet};
use std::time::{Duration, Instant};

use oxbow_e2e::cluster_tools::{
    acked_records, assert_acknowledged_are_stored, create_topic as create, describe,
    describe_excluding, leader_of_most, read_all, topics, wait_for_isr,
};
use oxbow_e2e::{tools_or_skip, Background, Cluster, Flavor};

#[test]
fn three_nodes_form_one_cluster_and_spread_replicas_and_leaders() {
    let t = tools_or_skip!();
    let flavor = Flavor::from_env();
    {
        {
            let c = Cluster::start(flavor, 3, &[]);
            // One active controller, three voters.
            let bs = c.bootstrap();
            let status = t
                .run(
                    "kafka-metadata-quorum.sh",
                    &["--bootstrap-server", &bs, "describe", "--status"],
                )
                .ok();
            let leader: i32 = status
                .line_starting_with("LeaderId:")
                .trim_start_matches("LeaderId:")
                .trim()
                .parse()
                .unwrap_or_else(|e| panic!("LeaderId: {e}\n{status}"));
            assert!((0..3).contains(&leader), "{status}");
            let voters = status.line_starting_with("CurrentVoters:").to_string();
            for id in 0..3 {
                assert!(voters.contains(&format!("\"id\": {id}")), "{voters}");
            }

            // Six partitions of RF 3: every broker holds every partition and leads two.
            create(&t, &c, "spread", 6, 3, &[]);
            wait_for_isr(&c, "spread", 6, 3);
            let d = describe(&c, "spread");
            let mut led: BTreeMap<i32, usize> = BTreeMap::new();
            for (p, v) in &d {
                let set: BTreeSet<i32> = v.replicas.iter().copied().collect();
                assert_eq!(set, BTreeSet::from([0, 1, 2]), "partition {p}: {d:?}");
                assert_eq!(v.leader, v.replicas[0], "preferred leader leads: {d:?}");
                *led.entry(v.leader).or_default() += 1;
            }
            assert_eq!(
                led.values().copied().collect::<Vec<_>>(),
                vec![2, 2, 2],
                "{d:?}"
            );

            // RF 4 on three brokers is refused with Kafka's message.
            let refused = topics(
                &t,
                &c,
                &[
                    "--create",
                    "--topic",
                    "too-many",
                    "--partitions",
                    "1",
                    "--replication-factor",
                    "4",
                ],
            )
            .failed();
            refused.expect_contains(
                "The target replication factor of 4 cannot be reached because only 3 broker(s) \
                 are registered.",
            );
        }
    }
}

/// Fault 1 of issue 8: kill -9 the broker leading most partitions while a verifiable
/// producer writes with acks=all to RF 3, min.insync.replicas=2. Writes resume on the
/// survivors; the killed broker restarts, catches up and rejoins every ISR; every
/// acknowledged record is read back at the partition and offset it was acknowledged at.
#[test]
fn acknowledged_records_survive_kill9_of_the_leader() {
    let t = tools_or_skip!();
    let flavor = Flavor::from_env();
    let mut c = Cluster::start(flavor, 3, &[]);
    create(&t, &c, "durable", 3, 3, &["min.insync.replicas=2"]);
    wait_for_isr(&c, "durable", 3, 3);
    let bs = c.bootstrap();
    let mut producer = Background::tool(
        &t,
        "kafka-verifiable-producer.sh",
        &[
            "--bootstrap-server",
            &bs,
            "--topic",
            "durable",
            "--max-messages",
            "6000",
            "--throughput",
            "400",
            "--acks",
            "-1",
        ],
    );
    let acked_before = |p: &Background| acked_records(&p.stdout()).len();
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked_before(&producer) < 1500 {
        assert!(
            Instant::now() < deadline,
            "producer made no progress:\n{producer}"
        );
        assert!(
            producer.try_status().is_none(),
            "producer exited:\n{producer}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    // The broker leading most partitions goes down hard.
    let victim = leader_of_most(&c, "durable");
    c.node_mut(victim).kill9();
    let at_kill = acked_before(&producer);
    // Writes resume on the two survivors.
    let deadline = Instant::now() + Duration::from_secs(120);
    while acked_before(&producer) < at_kill + 500 && producer.try_status().is_none() {
        assert!(
            Instant::now() < deadline,
            "writes did not resume after kill -9 of broker {victim}:\n{producer}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    c.node_mut(victim).start_again();
    let deadline = Instant::now() + Duration::from_secs(180);
    while producer.try_status().is_none() {
        assert!(
            Instant::now() < deadline,
            "producer did not finish:\n{producer}"
        );
        std::thread::sleep(Duration::from_millis(200));
    }
    // The restarted broker catches up and rejoins every ISR.
    wait_for_isr(&c, "durable", 3, 3);
    let acked = acked_records(&producer.stdout());
    assert!(
        acked.len() >= 5000,
        "only {} of 6000 acknowledged:\n{producer}",
        acked.len()
    );
    let stored = read_all(&c, "durable");
    assert_acknowledged_are_stored(&acked, &stored, 3);
}

/// KIP-951: a Produce sent to a broker that does not lead the partition is answered
/// NOT_LEADER_OR_FOLLOWER naming the current leader and its epoch, and the response carries
/// that leader's address, so a producer moves there without a metadata round trip (with
/// `retries=0`, every batch sent before it learns is lost to the user). A Fetch with a
/// stale leader epoch (the leader moved since) is answered FENCED_LEADER_EPOCH with the
/// new leader and its address the same way.
#[test]
fn a_produce_to_a_follower_names_the_leader_and_its_address() {
    use bytes::Bytes;
    use oxbow_client::kafka_protocol::messages::*;
    use oxbow_client::kafka_protocol::protocol::StrBytes;
    use oxbow_client::kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };
    use oxbow_client::kafka_protocol::ResponseError;
    use oxbow_client::{Client, ConnectionConfig};

    let t = tools_or_skip!();
    let mut c = Cluster::start(Flavor::from_env(), 3, &[]);
    topics(
        &t,
        &c,
        &[
            "--create",
            "--topic",
            "hinted",
            "--replica-assignment",
            "0:1",
        ],
    )
    .ok();
    wait_for_isr(&c, "hinted", 1, 2);

    let record = Record {
        transactional: false,
        control: false,
        partition_leader_epoch: 0,
        producer_id: -1,
        producer_epoch: -1,
        timestamp_type: TimestampType::Creation,
        offset: 0,
        sequence: -1,
        timestamp: 1_700_000_000_000,
        key: None,
        value: Some(Bytes::from_static(b"to the wrong broker")),
        headers: Default::default(),
        delete_horizon: false,
    };
    let mut batch = bytes::BytesMut::new();
    RecordBatchEncoder::encode(
        &mut batch,
        std::iter::once(&record),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .expect("encode batch");

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let bootstrap = c.bootstrap();
        let client = Client::new(bootstrap.split(','), ConnectionConfig::default());
        let name = TopicName(StrBytes::from_static_str("hinted"));
        let metadata = client
            .metadata(&MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default().with_name(Some(name.clone())),
            ])))
            .await
            .expect("metadata");
        let topic = &metadata.topics[0];
        let partition = &topic.partitions[0];
        let (leader, epoch) = (partition.leader_id.0, partition.leader_epoch);
        assert_eq!(leader, 0, "{metadata:?}");
        let address = metadata
            .brokers
            .iter()
            .find(|b| b.node_id.0 == leader)
            .map(|b| (b.host.to_string(), b.port))
            .expect("the leader is listed");

        // Broker 1 holds a replica but does not lead it.
        let produce = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(name)
                .with_topic_id(topic.topic_id)
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(batch.freeze())),
                ])]);
        let response = client.send(1, &produce).await.expect("Produce");
        let p = &response.responses[0].partition_responses[0];
        assert_eq!(
            p.error_code,
            ResponseError::NotLeaderOrFollower.code(),
            "{response:?}"
        );
        assert_eq!(
            (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
            (leader, epoch),
            "{response:?}"
        );
        let endpoints: Vec<(i32, String, i32)> = response
            .node_endpoints
            .iter()
            .map(|e| (e.node_id.0, e.host.to_string(), e.port))
            .collect();
        assert_eq!(
            endpoints,
            vec![(leader, address.0, address.1)],
            "{response:?}"
        );

        // Broker 0 goes: broker 1 leads in a later epoch; a fetch naming the old epoch is
        // fenced and told where the leader is now.
        c.node_mut(0).stop();
        let deadline = Instant::now() + Duration::from_secs(60);
        while describe_excluding(&c, "hinted", &[0])
            .get(&0)
            .map(|v| v.leader)
            != Some(1)
        {
            assert!(Instant::now() < deadline, "broker 1 did not take over");
            std::thread::sleep(Duration::from_millis(200));
        }
        let bootstrap = c.bootstrap_excluding(&[0]);
        let client = Client::new(bootstrap.split(','), ConnectionConfig::default());
        let metadata = client
            .metadata(&MetadataRequest::default().with_topics(Some(vec![
                metadata_request::MetadataRequestTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("hinted")))),
            ])))
            .await
            .expect("metadata");
        let new_epoch = metadata.topics[0].partitions[0].leader_epoch;
        assert!(new_epoch > epoch, "{metadata:?}");
        let address = metadata
            .brokers
            .iter()
            .find(|b| b.node_id.0 == 1)
            .map(|b| (b.host.to_string(), b.port))
            .expect("broker 1 is listed");
        let fetch = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(TopicName(StrBytes::from_static_str("hinted")))
                .with_topic_id(topic.topic_id)
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_current_leader_epoch(epoch)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])]);
        let response = client.send(1, &fetch).await.expect("Fetch");
        let p = &response.responses[0].partitions[0];
        assert_eq!(
            p.error_code,
            ResponseError::FencedLeaderEpoch.code(),
            "{response:?}"
        );
        assert_eq!(
            (p.current_leader.leader_id.0, p.current_leader.leader_epoch),
            (1, new_epoch),
            "{response:?}"
        );
        let endpoints: Vec<(i32, String, i32)> = response
            .node_endpoints
            .iter()
            .map(|e| (e.node_id.0, e.host.to_string(), e.port))
            .collect();
        assert_eq!(endpoints, vec![(1, address.0, address.1)], "{response:?}");
    });
}

/// A wide topic on three brokers: `kafka-topics.sh --create` of 2,000 partitions with
/// replication factor 3 answers within the admin client's request timeout (30 s by default;
/// past it the tool retries and fails with TopicExistsException although the topic was
/// made), every partition gets a leader and all three replicas in sync, and every replica's
/// directory ends up with a `partition.metadata` naming the topic's id. Kafka answers once
/// the controller has committed the topic and writes `partition.metadata` in the background;
/// a broker that fsyncs it (twice) per replica before answering took 30.5 s here.
#[test]
fn a_2000_partition_topic_of_rf3_is_created_within_the_admin_timeout() {
    let t = tools_or_skip!();
    let c = Cluster::start(Flavor::from_env(), 3, &[]);
    let started = Instant::now();
    let created = topics(
        &t,
        &c,
        &[
            "--create",
            "--topic",
            "wide",
            "--partitions",
            "2000",
            "--replication-factor",
            "3",
        ],
    );
    let took = started.elapsed();
    eprintln!("kafka-topics.sh --create of 2000 partitions, RF 3, took {took:?}");
    assert!(
        created.success() && created.stdout.contains("Created topic wide."),
        "the create failed after {took:?}:\n{created}"
    );
    assert!(
        took < Duration::from_secs(30),
        "the create took {took:?}, longer than the admin client's 30 s request timeout"
    );
    wait_for_isr(&c, "wide", 2000, 3);
    let described = topics(&t, &c, &["--describe", "--topic", "wide"]).ok();
    let topic_id = described
        .stdout
        .split_whitespace()
        .skip_while(|w| *w != "TopicId:")
        .nth(1)
        .unwrap_or_else(|| panic!("no TopicId in:\n{described}"))
        .to_string();
    // Written in the background, so polled; every broker holds every partition (RF 3).
    c.wait_until(
        Duration::from_secs(120),
        "every replica's partition.metadata names the topic id",
        |c| {
            (0..3).all(|node| {
                (0..2000).all(|p| {
                    let file = c
                        .node(node)
                        .data_dir()
                        .join(format!("wide-{p}"))
                        .join("partition.metadata");
                    std::fs::read_to_string(file)
                        .is_ok_and(|text| text.contains(&format!("topic_id: {topic_id}")))
                })
            })
        },
    );
}

/// DescribeQuorum (what `kafka-metadata-quorum.sh describe --replication` prints) gets the
/// quorum's leader's view from every broker, since brokers forward it to the active
/// controller: the leader's row has its log end offset (at least the high watermark) and a
/// last caught-up time, every voter's log end offset is known. A node that answered from
/// its own view as a follower printed the leader's LogEndOffset as -1 and its own lag as
/// negative (e.g. -21).
#[test]
fn every_broker_answers_describe_quorum_with_the_leaders_view() {
    use oxbow_client::kafka_protocol::messages::*;
    use oxbow_client::kafka_protocol::protocol::StrBytes;
    use oxbow_client::{Client, ConnectionConfig};

    let _t = tools_or_skip!();
    let c = Cluster::start(Flavor::from_env(), 3, &[]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let bootstrap = c.bootstrap();
        let client = Client::new(bootstrap.split(','), ConnectionConfig::default());
        client
            .metadata(&MetadataRequest::default().with_topics(Some(vec![])))
            .await
            .expect("metadata");
        let request = DescribeQuorumRequest::default().with_topics(vec![
            describe_quorum_request::TopicData::default()
                .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
                .with_partitions(vec![
                    describe_quorum_request::PartitionData::default().with_partition_index(0)
                ]),
        ]);
        // Followers catch up within moments of the cluster forming: polled, not assumed.
        let deadline = Instant::now() + Duration::from_secs(30);
        for node in 0..3 {
            loop {
                let response = client.send(node, &request).await.expect("DescribeQuorum");
                let answer = response
                    .topics
                    .first()
                    .and_then(|t| t.partitions.first())
                    .filter(|_| response.error_code == 0);
                let leaders_view = answer.is_some_and(|p| {
                    let leader = p
                        .current_voters
                        .iter()
                        .find(|v| v.replica_id == p.leader_id);
                    p.high_watermark > 0
                        && p.current_voters.len() == 3
                        && leader.is_some_and(|l| {
                            l.log_end_offset >= p.high_watermark && l.last_caught_up_timestamp > 0
                        })
                        && p.current_voters.iter().all(|v| v.log_end_offset >= 0)
                });
                if leaders_view {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "node {node} does not answer with the quorum leader's view: {response:?}"
                );
                tokio::time::sleep(Duration::from_millis(200)).await;
            }
        }
    });
}

/// Issue 9's metrics, read as Prometheus reads them: every broker serves `/metrics` on
/// `oxbow.metrics.listener` with Kafka's metric names (as Strimzi's exporter rules name
/// them). Produced records are counted once, on their leaders; exactly one broker is the
/// active controller; a broker killed with -9 shows up as under-replicated partitions on the
/// survivors, and once it is back in every ISR they are gone again and the leaders counted
/// the ISR expansions. Oxbow only: Kafka serves its metrics through JMX, not HTTP.
#[test]
fn brokers_serve_prometheus_metrics_that_follow_the_cluster() {
    let t = tools_or_skip!();
    let flavor = Flavor::from_env();
    if flavor == Flavor::Kafka {
        println!("skipped on Kafka: it exports metrics through JMX (a Prometheus agent), not HTTP");
        return;
    }
    let mut c = Cluster::start(flavor, 3, &[("oxbow.metrics.listener", "127.0.0.1:0")]);
    let addrs: Vec<String> = (0..3).map(|id| metrics_addr(&c, id)).collect();
    create(&t, &c, "metered", 3, 3, &[]);
    wait_for_isr(&c, "metered", 3, 3);

    let values: String = (0..300).map(|i| format!("m{i}\n")).collect();
    t.run_stdin(
        "kafka-console-producer.sh",
        &["--bootstrap-server", &c.bootstrap(), "--topic", "metered"],
        &values,
    )
    .ok();
    assert_eq!(read_all(&c, "metered").len(), 300);

    let scrapes: Vec<String> = addrs.iter().map(|a| scrape(a)).collect();
    let sum = |name: &str, scrapes: &[String]| -> f64 {
        scrapes.iter().map(|s| sample(s, name).unwrap_or(0.0)).sum()
    };
    assert_eq!(
        sum("kafka_server_brokertopicmetrics_messagesin_total", &scrapes),
        300.0,
        "each produced record is counted once, by its leader"
    );
    assert_eq!(
        sum(
            "kafka_controller_kafkacontroller_activecontrollercount",
            &scrapes
        ),
        1.0
    );
    assert_eq!(
        sum(
            "kafka_server_replicamanager_underreplicatedpartitions",
            &scrapes
        ),
        0.0
    );
    for s in &scrapes {
        assert!(
            s.contains("kafka_network_requestmetrics_requests_total{request=\"Fetch\""),
            "followers fetch from every broker:\n{s}"
        );
        assert!(
            s.contains("# TYPE oxbow_request_duration_seconds histogram"),
            "{s}"
        );
    }

    // Kill -9 a broker: the survivors lead partitions whose ISR lost it.
    c.node_mut(2).kill9();
    let survivors = [addrs[0].clone(), addrs[1].clone()];
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        let s: Vec<String> = survivors.iter().map(|a| scrape(a)).collect();
        if sum("kafka_server_replicamanager_underreplicatedpartitions", &s) > 0.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "no survivor reports under-replicated partitions after kill -9:\n{}",
            s.join("\n")
        );
        std::thread::sleep(Duration::from_millis(250));
    }

    // Back in every ISR: none under-replicated, and the leaders counted the expansions.
    c.node_mut(2).start_again();
    let addrs: Vec<String> = (0..3).map(|id| metrics_addr(&c, id)).collect();
    c.wait_for_full_isrs(Duration::from_secs(120));
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let s: Vec<String> = addrs.iter().map(|a| scrape(a)).collect();
        let under = sum("kafka_server_replicamanager_underreplicatedpartitions", &s);
        let expands = sum("kafka_server_replicamanager_isrexpands_total", &s);
        if under == 0.0 && expands >= 1.0 {
            break;
        }
        assert!(
            Instant::now() < deadline,
            "after the restart: {under} under-replicated, {expands} ISR expansions:\n{}",
            s.join("\n")
        );
        std::thread::sleep(Duration::from_millis(250));
    }
}

/// The address node `id` serves metrics on (it binds port 0 and logs the port it got).
fn metrics_addr(c: &Cluster, id: usize) -> String {
    let deadline = Instant::now() + Duration::from_secs(30);
    loop {
        let log = c.node(id).log();
        // The last start's line: a restarted node binds a new port.
        if let Some(addr) = log
            .lines()
            .rev()
            .filter(|l| l.contains("serving Prometheus metrics"))
            .filter_map(|l| l.split("addr=").nth(1))
            .find_map(|rest| rest.split_whitespace().next())
        {
            return addr.to_string();
        }
        assert!(
            Instant::now() < deadline,
            "node {id} logged no metrics address:\n{log}"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
}

/// `GET /metrics` from `addr`: the body, after checking the status line.
fn scrape(addr: &str) -> String {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr)
        .unwrap_or_else(|e| panic!("cannot connect to the metrics listener {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(10)))
        .expect("set a read timeout");
    s.write_all(b"GET /metrics HTTP/1.1\r\nHost: oxbow\r\nConnection: close\r\n\r\n")
        .expect("send the scrape");
    let mut response = String::new();
    s.read_to_string(&mut response).expect("read the scrape");
    assert!(response.starts_with("HTTP/1.1 200"), "{response}");
    response
}

/// The value of the unlabelled sample `name` in a scrape.
fn sample(scrape: &str, name: &str) -> Option<f64> {
    scrape.lines().find_map(|l| {
        let (n, v) = l.split_once(' ')?;
        (n == name).then(|| v.trim().parse().ok()).flatten()
    })
}
