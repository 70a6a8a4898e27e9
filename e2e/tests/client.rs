//! oxbow-client against the broker under test: oxbow, or Apache Kafka 4.1 with
//! `OXBOW_E2E_TARGET=kafka`. The client is what followers, brokers and the operator will talk
//! with, so it must work with Kafka's own broker as well as ours: the ApiVersions handshake,
//! version negotiation, Metadata, CreateTopics, and Produce then Fetch at the versions both
//! sides pick.

use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use oxbow_client::kafka_protocol::messages::*;
use oxbow_client::kafka_protocol::protocol::{Message, StrBytes};
use oxbow_client::kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use oxbow_client::kafka_protocol::ResponseError;
use oxbow_client::{Client, ConnectionConfig};
use oxbow_e2e::Broker;

fn name(s: &str) -> TopicName {
    TopicName(StrBytes::from_string(s.to_string()))
}

/// Three records in one non-idempotent batch as a producer without idempotence sends it:
/// base sequence -1 (the encoder derives it from the first record's sequence).
fn batch() -> Bytes {
    let records: Vec<Record> = (0..3)
        .map(|i| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i,
            sequence: i as i32 - 1,
            timestamp: 1_700_000_000_000 + i,
            key: Some(Bytes::from(format!("key-{i}"))),
            value: Some(Bytes::from(format!("value-{i}"))),
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
    .expect("encode batch");
    buf.freeze()
}

#[test]
fn client_negotiates_creates_a_topic_produces_and_fetches_the_same_bytes() {
    let broker = Broker::start_target(&[]);
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    runtime.block_on(async {
        let client = Client::new([broker.bootstrap()], ConnectionConfig::default());
        let metadata = client
            .metadata(&MetadataRequest::default().with_topics(Some(Vec::new())))
            .await
            .expect("metadata");
        assert_eq!(metadata.brokers.len(), 1, "{metadata:?}");
        let node = metadata.brokers[0].node_id.0;
        let connection = client.connection(node).await.expect("connect by node id");
        // The highest Fetch version both serve (oxbow 17, Kafka 4.1 18): one that
        // addresses topics by id (v13+), as the request below does.
        let fetch_version = connection.negotiate::<FetchRequest>(None).expect("Fetch");
        let (_, broker_max) = connection
            .broker_versions(ApiKey::Fetch)
            .expect("Fetch range");
        assert_eq!(fetch_version, broker_max.min(FetchRequest::VERSIONS.max));
        assert!(fetch_version >= 13, "Fetch v{fetch_version}");

        let created = client
            .send(
                node,
                &CreateTopicsRequest::default()
                    .with_timeout_ms(30_000)
                    .with_topics(vec![create_topics_request::CreatableTopic::default()
                        .with_name(name("client-e2e"))
                        .with_num_partitions(1)
                        .with_replication_factor(1)]),
            )
            .await
            .expect("CreateTopics");
        let topic = &created.topics[0];
        assert_eq!(topic.error_code, 0, "{topic:?}");
        let topic_id = topic.topic_id;
        assert!(!topic_id.is_nil());

        // Kafka elects the new partition's leader asynchronously: until then Produce
        // answers a retriable error, which a producer retries. Both the name and the id:
        // the negotiated version decides which one goes on the wire (Kafka 4.1 serves
        // Produce v13, which addresses topics by id; oxbow serves up to v11, by name).
        let sent = batch();
        let produce = ProduceRequest::default()
            .with_acks(-1)
            .with_timeout_ms(30_000)
            .with_topic_data(vec![produce_request::TopicProduceData::default()
                .with_name(name("client-e2e"))
                .with_topic_id(topic_id)
                .with_partition_data(vec![
                    produce_request::PartitionProduceData::default()
                        .with_index(0)
                        .with_records(Some(sent.clone())),
                ])]);
        let deadline = Instant::now() + Duration::from_secs(30);
        let base_offset = loop {
            let response = client.send(node, &produce).await.expect("Produce");
            let p = &response.responses[0].partition_responses[0];
            if p.error_code == 0 {
                break p.base_offset;
            }
            let retriable = [
                ResponseError::NotLeaderOrFollower.code(),
                ResponseError::UnknownTopicOrPartition.code(),
                ResponseError::LeaderNotAvailable.code(),
            ];
            assert!(retriable.contains(&p.error_code), "{p:?}");
            assert!(Instant::now() < deadline, "no leader within 30 s: {p:?}");
            tokio::time::sleep(Duration::from_millis(100)).await;
        };
        assert_eq!(base_offset, 0);

        let fetch = FetchRequest::default()
            .with_replica_id(BrokerId(-1))
            .with_max_wait_ms(0)
            .with_min_bytes(1)
            .with_max_bytes(1 << 20)
            .with_topics(vec![fetch_request::FetchTopic::default()
                .with_topic(name("client-e2e"))
                .with_topic_id(topic_id)
                .with_partitions(vec![fetch_request::FetchPartition::default()
                    .with_partition(0)
                    .with_fetch_offset(0)
                    .with_partition_max_bytes(1 << 20)])]);
        let fetched = client.send(node, &fetch).await.expect("Fetch");
        assert_eq!(fetched.error_code, 0);
        let data = &fetched.responses[0].partitions[0];
        assert_eq!(data.error_code, 0, "{data:?}");
        assert_eq!(data.high_watermark, 3);
        assert_eq!(data.records.as_deref(), Some(&sent[..]));
    });
}
