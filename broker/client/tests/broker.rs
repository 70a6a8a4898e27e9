//! The client against a real oxbow broker (in-process, on a free port): handshake and
//! version negotiation, Metadata, CreateTopics, Produce then Fetch, pipelining, the response
//! size cap, timeouts and reconnection.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use oxbow_broker::broker::Broker;
use oxbow_broker::config::BrokerConfig;
use oxbow_broker::server;
use oxbow_client::kafka_protocol::messages::*;
use oxbow_client::kafka_protocol::protocol::{Message, StrBytes};
use oxbow_client::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use oxbow_client::{Client, Connection, ConnectionConfig, Error};
use tokio::sync::watch;
use uuid::Uuid;

struct TestBroker {
    addr: SocketAddr,
    _broker: Arc<Broker>,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn start_broker() -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let overrides = vec![
        (
            "listeners".to_string(),
            format!("PLAINTEXT://127.0.0.1:{port}"),
        ),
        (
            "log.dirs".to_string(),
            dir.path().join("data").display().to_string(),
        ),
    ];
    let (config, _) = BrokerConfig::default_single_node(&overrides).unwrap();
    let broker = Broker::open(config).unwrap();
    let listeners = server::bind(&broker).await.unwrap();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(server::serve(Arc::clone(&broker), listeners, stopped));
    TestBroker {
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        _broker: broker,
        _stop: stop,
        _dir: dir,
    }
}

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

async fn create_topic(connection: &Connection, topic: &str, partitions: i32) -> Uuid {
    let response = connection
        .send(
            &CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(name(topic))
                    .with_num_partitions(partitions)
                    .with_replication_factor(1)]),
            None,
        )
        .await
        .unwrap();
    assert_eq!(response.topics.len(), 1);
    assert_eq!(response.topics[0].error_code, 0, "{:?}", response.topics[0]);
    response.topics[0].topic_id
}

/// One non-idempotent batch of `count` records of `size` bytes each, as a producer sends it.
fn batch(count: usize, size: usize) -> Bytes {
    let records: Vec<Record> = (0..count)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder derives the base sequence from the first record's (here -1: no
            // idempotent producer) and keeps one batch while `offset - sequence` is constant.
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(vec![b'a' + (i % 26) as u8; size])),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        records.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .unwrap();
    assert_eq!(&buf[53..57], &(-1i32).to_be_bytes(), "base sequence");
    buf.freeze()
}

fn produce(topic: &str, records: Bytes) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(-1)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(name(topic))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records)),
            ])])
}

fn fetch(topic: &str, id: Uuid, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(50 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(name(topic))
            .with_topic_id(id)
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(50 << 20)])])
}

/// The handshake remembers exactly the ranges the broker advertises, and each request goes
/// out at the highest version both the broker and the codec serve.
#[tokio::test]
async fn handshake_remembers_ranges_and_negotiates_the_highest_common_version() {
    let b = start_broker().await;
    let c = Connection::connect(&b.addr.to_string(), ConnectionConfig::default())
        .await
        .unwrap();
    for (key, min, max) in oxbow_broker::api::served_apis() {
        assert_eq!(c.broker_versions(*key), Some((*min, *max)), "{key:?}");
    }
    let (_, fetch_max) = c.broker_versions(ApiKey::Fetch).unwrap();
    assert_eq!(
        c.negotiate::<FetchRequest>(None).unwrap(),
        fetch_max.min(FetchRequest::VERSIONS.max)
    );
    assert_eq!(c.negotiate::<MetadataRequest>(Some(1)).unwrap(), 1);
    // A version the broker does not serve is refused before anything is sent.
    let err = c.negotiate::<FetchRequest>(Some(3)).unwrap_err();
    assert!(matches!(
        err,
        Error::UnsupportedVersion {
            api: ApiKey::Fetch,
            ..
        }
    ));
    let text = err.to_string();
    assert!(
        text.contains(&b.addr.to_string()) && text.contains("Fetch"),
        "{text}"
    );
    // An API the broker does not serve at all.
    let err = c
        .send(&DescribeAclsRequest::default(), None)
        .await
        .unwrap_err();
    assert!(
        matches!(err, Error::UnsupportedVersion { broker: None, .. }),
        "{err}"
    );
    // And the connection is still usable.
    let metadata = c
        .send(&MetadataRequest::default().with_topics(None), Some(1))
        .await
        .unwrap();
    assert_eq!(metadata.brokers.len(), 1);
}

/// Through the bootstrap helper: Metadata finds the broker (past a dead bootstrap address),
/// CreateTopics goes to it by id, and Metadata then lists the topic.
#[tokio::test]
async fn client_bootstraps_creates_a_topic_and_sees_it_in_metadata() {
    let b = start_broker().await;
    let dead = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead_addr = dead.local_addr().unwrap().to_string();
    drop(dead);
    let client = Client::new([dead_addr, b.addr.to_string()], ConnectionConfig::default());
    let metadata = client
        .metadata(&MetadataRequest::default().with_topics(Some(Vec::new())))
        .await
        .unwrap();
    let node = metadata.brokers[0].node_id.0;
    assert_eq!(client.broker_address(node), Some(b.addr.to_string()));

    let created = client
        .send(
            node,
            &CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(name("orders"))
                    .with_num_partitions(3)
                    .with_replication_factor(1)]),
        )
        .await
        .unwrap();
    assert_eq!(created.topics[0].error_code, 0);
    let metadata = client
        .metadata(&MetadataRequest::default().with_topics(Some(vec![
            metadata_request::MetadataRequestTopic::default().with_name(Some(name("orders"))),
        ])))
        .await
        .unwrap();
    assert_eq!(metadata.topics.len(), 1);
    assert_eq!(metadata.topics[0].error_code, 0);
    assert_eq!(metadata.topics[0].partitions.len(), 3);
    assert_eq!(metadata.topics[0].topic_id, created.topics[0].topic_id);

    let unknown = client.connection(node + 100).await.unwrap_err();
    assert!(matches!(unknown, Error::UnknownNode { .. }), "{unknown}");
}

/// What is produced comes back from Fetch byte for byte (the broker stores batches as the
/// producer sent them), at the negotiated Fetch version, which addresses topics by id.
#[tokio::test]
async fn produce_then_fetch_returns_the_same_bytes() {
    let b = start_broker().await;
    let c = Connection::connect(&b.addr.to_string(), ConnectionConfig::default())
        .await
        .unwrap();
    let id = create_topic(&c, "payments", 1).await;
    let sent = batch(10, 100);
    let produced = c
        .send(&produce("payments", sent.clone()), None)
        .await
        .unwrap();
    let partition = &produced.responses[0].partition_responses[0];
    assert_eq!((partition.error_code, partition.base_offset), (0, 0));

    let fetched = c.send(&fetch("payments", id, 0, 0), None).await.unwrap();
    assert_eq!(fetched.error_code, 0);
    let data = &fetched.responses[0].partitions[0];
    assert_eq!(data.error_code, 0);
    assert_eq!(data.high_watermark, 10);
    assert_eq!(data.records.as_deref(), Some(&sent[..]));
}

/// Several requests in flight on one connection, sent from concurrent tasks: each gets its
/// own response (matched by order and correlation id), and an acks=0 produce in between
/// gets none and disturbs nothing.
#[tokio::test]
async fn pipelined_requests_each_get_their_own_response() {
    let b = start_broker().await;
    let c = Arc::new(
        Connection::connect(&b.addr.to_string(), ConnectionConfig::default())
            .await
            .unwrap(),
    );
    for t in ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"] {
        create_topic(&c, t, 1).await;
    }
    let mut tasks = Vec::new();
    for round in 0..5 {
        for t in ["t0", "t1", "t2", "t3", "t4", "t5", "t6", "t7"] {
            let c = c.clone();
            tasks.push(tokio::spawn(async move {
                let request = MetadataRequest::default().with_topics(Some(vec![
                    metadata_request::MetadataRequestTopic::default().with_name(Some(name(t))),
                ]));
                let response = c.send(&request, None).await.unwrap();
                (
                    round,
                    t,
                    response.topics[0].name.clone().map(|n| n.0.to_string()),
                )
            }));
        }
    }
    c.send_without_response(&produce("t0", batch(1, 10)).with_acks(0), None)
        .await
        .unwrap();
    for task in tasks {
        let (round, asked, answered) = task.await.unwrap();
        assert_eq!(answered.as_deref(), Some(asked), "round {round}");
    }
    let id = create_topic(&c, "after", 1).await;
    let fetched = c.send(&fetch("after", id, 0, 0), None).await.unwrap();
    assert_eq!(fetched.responses[0].partitions[0].error_code, 0);
    let fetched = c
        .send(&MetadataRequest::default().with_topics(None), None)
        .await
        .unwrap();
    assert!(fetched.topics.len() >= 9);
}

/// A response larger than the configured maximum fails its request with
/// RESPONSE_TOO_LARGE naming the API and sizes, without reading the body; the connection is
/// closed, and later requests say so.
#[tokio::test]
async fn response_above_the_cap_is_refused_and_closes_the_connection() {
    let b = start_broker().await;
    let writer = Connection::connect(&b.addr.to_string(), ConnectionConfig::default())
        .await
        .unwrap();
    let id = create_topic(&writer, "big", 1).await;
    let produced = writer
        .send(&produce("big", batch(40, 5000)), None)
        .await
        .unwrap();
    assert_eq!(produced.responses[0].partition_responses[0].error_code, 0);

    let capped = Connection::connect(
        &b.addr.to_string(),
        ConnectionConfig {
            max_response_bytes: 64 * 1024,
            ..ConnectionConfig::default()
        },
    )
    .await
    .unwrap();
    // Small responses still pass.
    capped
        .send(&MetadataRequest::default().with_topics(None), None)
        .await
        .unwrap();
    let err = capped
        .send(&fetch("big", id, 0, 0), None)
        .await
        .unwrap_err();
    match &err {
        Error::ResponseTooLarge { api, size, max, .. } => {
            assert_eq!(*api, ApiKey::Fetch);
            assert!(*size > 200_000, "{size}");
            assert_eq!(*max, 64 * 1024);
        }
        other => panic!("expected ResponseTooLarge, got {other}"),
    }
    assert!(err.to_string().contains(&b.addr.to_string()), "{err}");
    assert!(capped.is_closed());
    let after = capped
        .send(&MetadataRequest::default().with_topics(None), None)
        .await
        .unwrap_err();
    assert!(matches!(after, Error::Disconnected { .. }), "{after}");
}

/// A listener that accepts and never answers: the handshake's ApiVersions times out after
/// `request.timeout.ms`, not later, and says which peer and API.
#[tokio::test]
async fn silent_listener_times_out_the_handshake() {
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = silent.local_addr().unwrap().to_string();
    let held = tokio::spawn(async move {
        let mut open = Vec::new();
        loop {
            match silent.accept().await {
                Ok((s, _)) => open.push(s),
                Err(_) => return,
            }
        }
    });
    let config = ConnectionConfig {
        request_timeout: Duration::from_millis(300),
        ..ConnectionConfig::default()
    };
    let started = Instant::now();
    let err = Connection::connect(&addr, config).await.unwrap_err();
    let waited = started.elapsed();
    match &err {
        Error::Timeout { peer, api, timeout } => {
            assert_eq!(peer, &addr);
            assert_eq!(*api, Some(ApiKey::ApiVersions));
            assert_eq!(*timeout, Duration::from_millis(300));
        }
        other => panic!("expected Timeout, got {other}"),
    }
    assert!(waited >= Duration::from_millis(300), "{waited:?}");
    assert!(waited < Duration::from_secs(5), "{waited:?}");
    // The connection setup timeout bounds connect + handshake as a whole.
    let config = ConnectionConfig {
        connect_timeout: Duration::from_millis(200),
        ..ConnectionConfig::default()
    };
    let err = Connection::connect(&addr, config).await.unwrap_err();
    assert!(matches!(err, Error::Timeout { api: None, .. }), "{err}");
    held.abort();
}

/// A request that outlives its timeout fails with Timeout and closes the connection (its
/// late response must not be taken for another request's); the client then opens a new
/// connection to the same broker, which works.
#[tokio::test]
async fn timed_out_request_closes_the_connection_and_the_client_reconnects() {
    let b = start_broker().await;
    let client = Client::new([b.addr.to_string()], ConnectionConfig::default());
    let metadata = client
        .metadata(&MetadataRequest::default().with_topics(Some(Vec::new())))
        .await
        .unwrap();
    let node = metadata.brokers[0].node_id.0;
    let first = client.connection(node).await.unwrap();
    let id = create_topic(&first, "quiet", 1).await;
    // A long poll on an empty partition: the broker holds it for 5 s.
    let err = first
        .send_with_timeout(
            &fetch("quiet", id, 0, 5000),
            None,
            Duration::from_millis(200),
        )
        .await
        .unwrap_err();
    assert!(
        matches!(
            err,
            Error::Timeout {
                api: Some(ApiKey::Fetch),
                ..
            }
        ),
        "{err}"
    );
    assert!(first.is_closed());
    let second = client.connection(node).await.unwrap();
    assert!(!Arc::ptr_eq(&first, &second));
    let response = client
        .send(node, &MetadataRequest::default().with_topics(None))
        .await
        .unwrap();
    assert_eq!(response.topics.len(), 1);
}
