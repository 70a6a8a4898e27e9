//! Wire-level behaviour that real CLI tools cannot provoke: malformed and oversized frames,
//! unsupported versions, pipelining order, CRC failures, acks=0 and long-poll fetches.
//! The broker runs in-process; the client is the kafka-protocol codec over a raw socket.

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::messages::*;
use kafka_protocol::protocol::{Decodable, Request, StrBytes};
use kafka_protocol::records::{
    Compression, Record, RecordBatchDecoder, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use oxbow_broker::broker::Broker;
use oxbow_broker::config::BrokerConfig;
use oxbow_broker::server;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio::sync::watch;

struct TestBroker {
    addr: SocketAddr,
    broker: Arc<Broker>,
    _stop: watch::Sender<bool>,
    _dir: tempfile::TempDir,
}

async fn start(extra: &[(&str, &str)]) -> TestBroker {
    let dir = tempfile::tempdir().unwrap();
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let mut overrides = vec![
        (
            "listeners".to_string(),
            format!("PLAINTEXT://127.0.0.1:{port}"),
        ),
        (
            "log.dirs".to_string(),
            dir.path().join("data").display().to_string(),
        ),
    ];
    overrides.extend(extra.iter().map(|(k, v)| (k.to_string(), v.to_string())));
    let (config, _) = BrokerConfig::default_single_node(&overrides).unwrap();
    let broker = Broker::open(config).unwrap();
    let listeners = server::bind(&broker).await.unwrap();
    let (stop, stopped) = watch::channel(false);
    tokio::spawn(server::serve(Arc::clone(&broker), listeners, stopped));
    TestBroker {
        addr: format!("127.0.0.1:{port}").parse().unwrap(),
        broker,
        _stop: stop,
        _dir: dir,
    }
}

struct Client {
    stream: TcpStream,
    next_correlation: i32,
}

impl Client {
    async fn connect(addr: SocketAddr) -> Client {
        Client {
            stream: TcpStream::connect(addr).await.unwrap(),
            next_correlation: 1,
        }
    }

    /// `request` as one frame at `version`, with the next correlation id (framing and
    /// header versions are oxbow-client's, so the tests and the client agree on them).
    fn frame<R: Request>(&mut self, version: i16, request: &R) -> (i32, BytesMut) {
        let correlation_id = self.next_correlation;
        self.next_correlation += 1;
        let frame = oxbow_client::frame::encode_request(
            request,
            version,
            correlation_id,
            Some("wire-test"),
        )
        .unwrap();
        (correlation_id, BytesMut::from(&frame[..]))
    }

    /// The next response frame (without the size prefix); `None` once the broker closed
    /// the connection.
    async fn read_response(&mut self) -> Option<Bytes> {
        oxbow_client::frame::read_frame(&mut self.stream, i32::MAX as usize)
            .await
            .ok()
            .flatten()
    }

    async fn call<R: Request>(&mut self, version: i16, request: &R) -> R::Response {
        let (correlation_id, frame) = self.frame(version, request);
        self.stream.write_all(&frame).await.unwrap();
        let body = self.read_response().await.expect("connection closed");
        let (header, response) =
            oxbow_client::frame::decode_response::<R::Response>(body, version).unwrap();
        assert_eq!(header.correlation_id, correlation_id);
        response
    }

    async fn is_closed(&mut self) -> bool {
        let mut buf = [0u8; 1];
        matches!(
            tokio::time::timeout(Duration::from_secs(5), self.stream.read(&mut buf)).await,
            Ok(Ok(0)) | Ok(Err(_))
        )
    }
}

async fn api_versions_ok(addr: SocketAddr) {
    let mut c = Client::connect(addr).await;
    let r: ApiVersionsResponse = c.call(3, &ApiVersionsRequest::default()).await;
    assert_eq!(r.error_code, 0);
    assert!(r
        .api_keys
        .iter()
        .any(|k| k.api_key == ApiKey::Produce as i16 && k.min_version == 0));
}

/// `group.version` is advertised as Kafka 4.1 does: supported 0-1 from ApiVersions v4 (a
/// range starting at 0 is left out of v3 responses, KAFKA-17011), finalized at 1 in both.
#[tokio::test]
async fn api_versions_advertise_group_version() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    let feature = |name: &str| StrBytes::from_string(name.into());
    let r: ApiVersionsResponse = c.call(4, &ApiVersionsRequest::default()).await;
    let supported = r
        .supported_features
        .iter()
        .find(|f| f.name == feature("group.version"))
        .map(|f| (f.min_version, f.max_version));
    assert_eq!(supported, Some((0, 1)));
    let finalized = |r: &ApiVersionsResponse| {
        r.finalized_features
            .iter()
            .find(|f| f.name == feature("group.version"))
            .map(|f| (f.min_version_level, f.max_version_level))
    };
    assert_eq!(finalized(&r), Some((1, 1)));
    let v3: ApiVersionsResponse = c.call(3, &ApiVersionsRequest::default()).await;
    assert!(v3
        .supported_features
        .iter()
        .all(|f| f.name != feature("group.version")));
    assert_eq!(finalized(&v3), Some((1, 1)));
}

/// A single node has no metadata quorum whose voters could change: kraft.version is
/// supported 0-1 but not finalized (level 0), and AddRaftVoter / RemoveRaftVoter answer
/// UNSUPPORTED_VERSION, as Kafka's leader does when kraft.version is 0.
#[tokio::test]
async fn a_single_node_refuses_voter_changes_with_kraft_version_0() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    let r: ApiVersionsResponse = c.call(4, &ApiVersionsRequest::default()).await;
    let name = StrBytes::from_static_str("kraft.version");
    let supported = r
        .supported_features
        .iter()
        .find(|f| f.name == name)
        .map(|f| (f.min_version, f.max_version));
    assert_eq!(supported, Some((0, 1)));
    assert!(r.finalized_features.iter().all(|f| f.name != name));

    let add: AddRaftVoterResponse = c
        .call(
            0,
            &AddRaftVoterRequest::default()
                // null: any cluster (kafka-metadata-quorum.sh sends none).
                .with_cluster_id(None)
                .with_timeout_ms(1000)
                .with_voter_id(1)
                .with_voter_directory_id(uuid::Uuid::from_u128(7))
                .with_listeners(vec![add_raft_voter_request::Listener::default()
                    .with_name(StrBytes::from_static_str("CONTROLLER"))
                    .with_host(StrBytes::from_static_str("127.0.0.1"))
                    .with_port(9093)]),
        )
        .await;
    assert_eq!(add.error_code, 35, "{add:?}");
    let remove: RemoveRaftVoterResponse = c
        .call(
            0,
            &RemoveRaftVoterRequest::default()
                .with_cluster_id(None)
                .with_voter_id(0),
        )
        .await;
    assert_eq!(remove.error_code, 35, "{remove:?}");
}

fn batch(values: &[&str]) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: false,
            control: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // The encoder splits batches where `offset - sequence` changes.
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(v.to_string())),
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
    // A producer without idempotence sends base sequence -1; fix the header and its CRC.
    buf[53..57].copy_from_slice(&(-1i32).to_be_bytes());
    let crc = crc32c::crc32c(&buf[21..]);
    buf[17..21].copy_from_slice(&crc.to_be_bytes());
    buf.freeze()
}

fn produce_request(topic: &str, records: Bytes, acks: i16) -> ProduceRequest {
    ProduceRequest::default()
        .with_acks(acks)
        .with_timeout_ms(5000)
        .with_topic_data(vec![produce_request::TopicProduceData::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partition_data(vec![
                produce_request::PartitionProduceData::default()
                    .with_index(0)
                    .with_records(Some(records)),
            ])])
}

fn fetch_request(topic: &str, offset: i64, max_wait_ms: i32) -> FetchRequest {
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(max_wait_ms)
        .with_min_bytes(1)
        .with_max_bytes(1 << 20)
        .with_topics(vec![fetch_request::FetchTopic::default()
            .with_topic(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![fetch_request::FetchPartition::default()
                .with_partition(0)
                .with_fetch_offset(offset)
                .with_partition_max_bytes(1 << 20)])])
}

async fn create_topic(c: &mut Client, name: &str) {
    let r: CreateTopicsResponse = c
        .call(
            7,
            &CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_string(name.into())))
                    .with_num_partitions(1)
                    .with_replication_factor(1)]),
        )
        .await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
}

fn values_of(records: &Bytes) -> Vec<String> {
    let mut buf = records.clone();
    let mut out = Vec::new();
    while buf.has_remaining() {
        let set = RecordBatchDecoder::decode(&mut buf).unwrap();
        out.extend(
            set.records
                .into_iter()
                .map(|r| String::from_utf8(r.value.unwrap().to_vec()).unwrap()),
        );
    }
    out
}

#[tokio::test]
async fn malformed_frame_closes_only_that_connection() {
    let b = start(&[]).await;
    let mut bad = Client::connect(b.addr).await;
    // A frame with an API key that does not exist.
    bad.stream
        .write_all(&[0, 0, 0, 10, 0x7f, 0x7f, 0, 0, 0, 0, 0, 1, 0, 0])
        .await
        .unwrap();
    assert!(
        bad.is_closed().await,
        "unknown API key must close the connection"
    );

    let mut truncated = Client::connect(b.addr).await;
    // A Metadata v12 request whose body is cut short.
    truncated
        .stream
        .write_all(&[0, 0, 0, 9, 0, 3, 0, 12, 0, 0, 0, 1, 0])
        .await
        .unwrap();
    assert!(
        truncated.is_closed().await,
        "undecodable body must close the connection"
    );
    api_versions_ok(b.addr).await;
}

#[tokio::test]
async fn oversized_and_negative_frames_close_the_connection() {
    let b = start(&[("socket.request.max.bytes", "1024")]).await;
    let mut big = Client::connect(b.addr).await;
    big.stream.write_all(&2048i32.to_be_bytes()).await.unwrap();
    assert!(big.is_closed().await);
    let mut negative = Client::connect(b.addr).await;
    negative
        .stream
        .write_all(&(-5i32).to_be_bytes())
        .await
        .unwrap();
    assert!(negative.is_closed().await);
    api_versions_ok(b.addr).await;
}

#[tokio::test]
async fn unsupported_api_versions_version_gets_v0_error_with_ranges() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    let (correlation_id, mut frame) = c.frame(3, &ApiVersionsRequest::default());
    frame[6..8].copy_from_slice(&99i16.to_be_bytes()); // request_api_version
    c.stream.write_all(&frame).await.unwrap();
    let mut body = c.read_response().await.unwrap();
    let header = ResponseHeader::decode(&mut body, 0).unwrap();
    assert_eq!(header.correlation_id, correlation_id);
    let r = ApiVersionsResponse::decode(&mut body, 0).unwrap();
    assert_eq!(r.error_code, 35);
    assert!(r.api_keys.iter().any(|k| k.api_key == ApiKey::Fetch as i16));
}

#[tokio::test]
async fn pipelined_requests_are_answered_in_order() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    let mut all = BytesMut::new();
    let mut ids = Vec::new();
    for i in 0..20 {
        let (id, frame) = if i % 2 == 0 {
            c.frame(3, &ApiVersionsRequest::default())
        } else {
            c.frame(12, &MetadataRequest::default().with_topics(None))
        };
        ids.push(id);
        all.extend_from_slice(&frame);
    }
    c.stream.write_all(&all).await.unwrap();
    for (i, id) in ids.iter().enumerate() {
        let mut body = c.read_response().await.unwrap();
        let header_version = if i % 2 == 0 { 0 } else { 1 };
        assert_eq!(
            ResponseHeader::decode(&mut body, header_version)
                .unwrap()
                .correlation_id,
            *id
        );
    }
}

#[tokio::test]
async fn corrupt_batch_is_refused_and_nothing_is_written() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "crc").await;
    let good = batch(&["a", "b"]);
    let mut bad = BytesMut::from(&good[..]);
    let last = bad.len() - 1;
    bad[last] ^= 0xff; // flip a bit inside the CRC-covered region
    let r: ProduceResponse = c.call(9, &produce_request("crc", bad.freeze(), -1)).await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 2,
        "CORRUPT_MESSAGE"
    );
    let r: ProduceResponse = c.call(9, &produce_request("crc", good.clone(), -1)).await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 0,
        "{:?}",
        r.responses[0].partition_responses[0].error_message
    );
    assert_eq!(
        r.responses[0].partition_responses[0].base_offset, 0,
        "the corrupt batch took no offsets"
    );
    let f: FetchResponse = c.call(12, &fetch_request("crc", 0, 0)).await;
    let p = &f.responses[0].partitions[0];
    assert_eq!(p.high_watermark, 2);
    assert_eq!(values_of(p.records.as_ref().unwrap()), vec!["a", "b"]);
}

#[tokio::test]
async fn acks_zero_gets_no_response_but_is_written() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "fire").await;
    let (_, frame) = c.frame(9, &produce_request("fire", batch(&["x"]), 0));
    c.stream.write_all(&frame).await.unwrap();
    // The next response on the connection must be the fetch's, not a produce response.
    let f: FetchResponse = c.call(12, &fetch_request("fire", 0, 2000)).await;
    assert_eq!(
        values_of(f.responses[0].partitions[0].records.as_ref().unwrap()),
        vec!["x"]
    );
}

#[tokio::test]
async fn fetch_long_polls_until_data_arrives() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "wait").await;
    let addr = b.addr;
    let producer = tokio::spawn(async move {
        tokio::time::sleep(Duration::from_millis(300)).await;
        let mut p = Client::connect(addr).await;
        let _: ProduceResponse = p
            .call(9, &produce_request("wait", batch(&["late"]), 1))
            .await;
    });
    let started = Instant::now();
    let f: FetchResponse = c.call(12, &fetch_request("wait", 0, 10_000)).await;
    let waited = started.elapsed();
    producer.await.unwrap();
    assert_eq!(
        values_of(f.responses[0].partitions[0].records.as_ref().unwrap()),
        vec!["late"]
    );
    assert!(
        waited < Duration::from_secs(5),
        "fetch returned after {waited:?}, not when data arrived"
    );
    assert!(
        waited >= Duration::from_millis(250),
        "fetch returned before any data existed"
    );
}

#[tokio::test]
async fn unknown_topic_and_offset_out_of_range_are_error_codes() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    let f: FetchResponse = c.call(12, &fetch_request("nope", 0, 0)).await;
    assert_eq!(f.responses[0].partitions[0].error_code, 3);
    create_topic(&mut c, "range").await;
    let f: FetchResponse = c.call(12, &fetch_request("range", 5, 0)).await;
    assert_eq!(f.responses[0].partitions[0].error_code, 1);
}

fn commit_request(
    group: &str,
    member: &str,
    generation: i32,
    topic: &str,
    metadata: &str,
) -> OffsetCommitRequest {
    OffsetCommitRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.into())))
        .with_member_id(StrBytes::from_string(member.into()))
        .with_generation_id_or_member_epoch(generation)
        .with_topics(vec![
            offset_commit_request::OffsetCommitRequestTopic::default()
                .with_name(TopicName(StrBytes::from_string(topic.into())))
                .with_partitions(vec![
                    offset_commit_request::OffsetCommitRequestPartition::default()
                        .with_partition_index(0)
                        .with_committed_offset(1)
                        .with_committed_metadata(Some(StrBytes::from_string(metadata.into()))),
                ]),
        ])
}

#[tokio::test]
async fn bad_group_requests_get_kafka_errors_and_the_group_stays_healthy() {
    let b = start(&[("group.initial.rebalance.delay.ms", "0")]).await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "g-topic").await;
    let code = |r: &OffsetCommitResponse| r.topics[0].partitions[0].error_code;

    // A simple (generation -1) commit to an empty group works; unknown topics and oversized
    // metadata are refused per partition.
    let r: OffsetCommitResponse = c.call(8, &commit_request("g", "", -1, "g-topic", "")).await;
    assert_eq!(code(&r), 0);
    let r: OffsetCommitResponse = c.call(8, &commit_request("g", "", -1, "missing", "")).await;
    assert_eq!(code(&r), 3, "UNKNOWN_TOPIC_OR_PARTITION");
    let r: OffsetCommitResponse = c
        .call(
            8,
            &commit_request("g", "", -1, "g-topic", &"m".repeat(5000)),
        )
        .await;
    assert_eq!(code(&r), 12, "OFFSET_METADATA_TOO_LARGE");
    let r: OffsetCommitResponse = c.call(8, &commit_request("", "", -1, "g-topic", "")).await;
    assert_eq!(code(&r), 24, "INVALID_GROUP_ID");

    // Join: first MEMBER_ID_REQUIRED, then generation 1.
    let join = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str("g")))
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(StrBytes::from_string(member.into()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0"))])
    };
    let r: JoinGroupResponse = c.call(7, &join("")).await;
    assert_eq!(r.error_code, 79, "MEMBER_ID_REQUIRED");
    let member = r.member_id.as_str().to_string();
    let r: JoinGroupResponse = c.call(7, &join(&member)).await;
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    let r: SyncGroupResponse = c
        .call(
            5,
            &SyncGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_generation_id(1)
                .with_member_id(StrBytes::from_string(member.clone()))
                .with_assignments(vec![
                    sync_group_request::SyncGroupRequestAssignment::default()
                        .with_member_id(StrBytes::from_string(member.clone()))
                        .with_assignment(Bytes::from_static(b"assignment")),
                ]),
        )
        .await;
    assert_eq!(
        (r.error_code, r.assignment.as_ref()),
        (0, &b"assignment"[..])
    );

    // Commits from an old generation or an unknown member are refused.
    let r: OffsetCommitResponse = c
        .call(8, &commit_request("g", &member, 0, "g-topic", ""))
        .await;
    assert_eq!(code(&r), 22, "ILLEGAL_GENERATION");
    let r: OffsetCommitResponse = c
        .call(8, &commit_request("g", "ghost", 1, "g-topic", ""))
        .await;
    assert_eq!(code(&r), 25, "UNKNOWN_MEMBER_ID");

    // The group is still healthy: the member heartbeats and commits.
    let hb: HeartbeatResponse = c
        .call(
            4,
            &HeartbeatRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_generation_id(1)
                .with_member_id(StrBytes::from_string(member.clone())),
        )
        .await;
    assert_eq!(hb.error_code, 0);
    let r: OffsetCommitResponse = c
        .call(8, &commit_request("g", &member, 1, "g-topic", "meta"))
        .await;
    assert_eq!(code(&r), 0);
    let f: OffsetFetchResponse = c
        .call(
            7,
            &OffsetFetchRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str("g")))
                .with_topics(None),
        )
        .await;
    let p = &f.topics[0].partitions[0];
    assert_eq!(
        (p.committed_offset, p.metadata.as_ref().map(|m| m.as_str())),
        (1, Some("meta"))
    );
}

#[tokio::test]
async fn records_over_the_size_limit_are_refused_and_nothing_is_written() {
    let b = start(&[("message.max.bytes", "2000")]).await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "big").await;
    let big = "x".repeat(5000);
    let r: ProduceResponse = c.call(9, &produce_request("big", batch(&[&big]), -1)).await;
    assert_eq!(
        r.responses[0].partition_responses[0].error_code, 10,
        "MESSAGE_TOO_LARGE"
    );
    let r: ProduceResponse = c
        .call(9, &produce_request("big", batch(&["small"]), -1))
        .await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(
        (p.error_code, p.base_offset),
        (0, 0),
        "the refused batch took no offset"
    );
}

#[tokio::test]
async fn huge_declared_array_lengths_do_not_take_the_broker_down() {
    let b = start(&[]).await;
    // CreateTopics v4 (not flexible): header, then `topics` declared with i32::MAX entries
    // but no data behind the count. A decoder that reserves capacity for the declared count
    // would try to allocate hundreds of GiB and abort the process.
    for (key, version) in [
        (ApiKey::CreateTopics, 4i16),
        (ApiKey::Metadata, 4),
        (ApiKey::Produce, 7),
    ] {
        let mut c = Client::connect(b.addr).await;
        let mut body = BytesMut::new();
        body.put_i16(key as i16);
        body.put_i16(version);
        body.put_i32(1);
        body.put_i16(-1); // null client id
        if key == ApiKey::Produce {
            body.put_i16(-1); // transactional id
            body.put_i16(1); // acks
            body.put_i32(1000); // timeout
        }
        body.put_i32(i32::MAX);
        let mut frame = BytesMut::new();
        frame.put_i32(body.len() as i32);
        frame.extend_from_slice(&body);
        c.stream.write_all(&frame).await.unwrap();
        assert!(
            c.is_closed().await,
            "{key:?}: malformed request must close the connection"
        );
    }
    // Flexible versions encode lengths as varints: CreateTopics v5 with a huge compact array.
    let mut c = Client::connect(b.addr).await;
    let mut body = BytesMut::new();
    body.put_i16(ApiKey::CreateTopics as i16);
    body.put_i16(5);
    body.put_i32(2);
    body.put_i16(-1);
    body.put_u8(0); // header tagged fields
    body.extend_from_slice(&[0xff, 0xff, 0xff, 0xff, 0x07]); // varint 2^31-1
    let mut frame = BytesMut::new();
    frame.put_i32(body.len() as i32);
    frame.extend_from_slice(&body);
    c.stream.write_all(&frame).await.unwrap();
    assert!(c.is_closed().await);
    api_versions_ok(b.addr).await;
}

/// Garbage after a valid header, for every API and version the broker advertises: no
/// frame may crash the broker or wedge it.
#[tokio::test]
async fn random_bodies_for_every_api_never_take_the_broker_down() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    let versions: ApiVersionsResponse = c.call(3, &ApiVersionsRequest::default()).await;
    // More rounds with OXBOW_FUZZ_ROUNDS=N; xorshift keeps every run reproducible.
    let iterations: usize = std::env::var("OXBOW_FUZZ_ROUNDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(8);
    let mut state: u64 = 0x9e37_79b9_7f4a_7c15;
    let mut next = move || {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        state
    };
    for api in &versions.api_keys {
        for version in api.min_version..=api.max_version {
            for _ in 0..iterations {
                let len = (next() % 96) as usize;
                let mut body = BytesMut::new();
                body.put_i16(api.api_key);
                body.put_i16(version);
                body.put_i32(7);
                body.put_i16(-1);
                for _ in 0..len {
                    body.put_u8(next() as u8);
                }
                let mut frame = BytesMut::new();
                frame.put_i32(body.len() as i32);
                frame.extend_from_slice(&body);
                let mut conn = TcpStream::connect(b.addr).await.unwrap();
                conn.write_all(&frame).await.unwrap();
                // Read whatever comes back (or the close) without waiting on parked requests.
                let mut sink = [0u8; 256];
                let _ = tokio::time::timeout(Duration::from_millis(50), conn.read(&mut sink)).await;
            }
        }
    }
    // Mutations of well-formed requests reach deeper into the decoders: flipped bytes,
    // counts forced to i32::MAX, truncation.
    create_topic(&mut c, "fuzz").await;
    let samples = vec![
        c.frame(9, &produce_request("fuzz", batch(&["a", "b"]), 1))
            .1,
        c.frame(12, &fetch_request("fuzz", 0, 0)).1,
        c.frame(12, &MetadataRequest::default().with_topics(None)).1,
        c.frame(8, &commit_request("g", "", -1, "fuzz", "m")).1,
    ];
    for sample in &samples {
        for _ in 0..iterations * 4 {
            let mut frame = sample.clone();
            let at = 4 + (next() as usize % (frame.len() - 4));
            match next() % 3 {
                0 => frame[at] ^= next() as u8,
                1 if at + 4 <= frame.len() => {
                    frame[at..at + 4].copy_from_slice(&i32::MAX.to_be_bytes())
                }
                _ => {
                    frame.truncate(at);
                    let size = (frame.len() - 4) as i32;
                    frame[..4].copy_from_slice(&size.to_be_bytes());
                }
            }
            let mut conn = TcpStream::connect(b.addr).await.unwrap();
            conn.write_all(&frame).await.unwrap();
            let mut sink = [0u8; 256];
            let _ = tokio::time::timeout(Duration::from_millis(50), conn.read(&mut sink)).await;
        }
    }
    api_versions_ok(b.addr).await;
}

/// A full disk: the producer gets KAFKA_STORAGE_ERROR, the broker keeps serving, and every
/// acknowledged batch stays readable. Needs root to mount a small tmpfs; outside CI a
/// non-root run skips with a message.
#[tokio::test]
async fn full_disk_refuses_writes_and_loses_nothing_acknowledged() {
    let mount_point = tempfile::tempdir().unwrap();
    let mounted = std::process::Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=3m", "tmpfs"])
        .arg(mount_point.path())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    if !mounted {
        assert!(
            std::env::var("CI").is_err(),
            "CI must be able to mount a tmpfs for the full-disk test"
        );
        eprintln!("SKIPPED full_disk test: cannot mount a tmpfs (needs root)");
        return;
    }
    struct Unmount(std::path::PathBuf);
    impl Drop for Unmount {
        fn drop(&mut self) {
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.0)
                .status();
        }
    }
    let _unmount = Unmount(mount_point.path().to_path_buf());
    let dir = mount_point.path().join("data").display().to_string();
    let b = start(&[("log.dirs", dir.as_str())]).await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "full").await;

    let value = "v".repeat(100_000);
    let mut acknowledged = Vec::new();
    let mut refused = None;
    for i in 0..100 {
        let record = format!("{i:03}{value}");
        let r: ProduceResponse = c
            .call(9, &produce_request("full", batch(&[&record]), -1))
            .await;
        let p = &r.responses[0].partition_responses[0];
        if p.error_code == 0 {
            acknowledged.push((p.base_offset, record));
        } else {
            refused = Some(p.error_code);
            break;
        }
    }
    assert_eq!(
        refused,
        Some(56),
        "a full disk must be KAFKA_STORAGE_ERROR to the producer"
    );
    assert!(
        acknowledged.len() >= 10,
        "only {} batches fit",
        acknowledged.len()
    );
    api_versions_ok(b.addr).await;

    // Everything acknowledged is readable, in order, with contiguous offsets.
    let mut offset = 0;
    let mut read = Vec::new();
    while offset < acknowledged.len() as i64 {
        let f: FetchResponse = c.call(12, &fetch_request("full", offset, 0)).await;
        let p = &f.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        let values = values_of(p.records.as_ref().unwrap());
        assert!(!values.is_empty(), "no data at offset {offset}");
        offset += values.len() as i64;
        read.extend(values);
    }
    let expected: Vec<String> = acknowledged.iter().map(|(_, r)| r.clone()).collect();
    assert_eq!(read.len(), expected.len());
    assert!(
        read == expected,
        "acknowledged records differ after the disk filled up"
    );
    let offsets: Vec<i64> = acknowledged.iter().map(|(o, _)| *o).collect();
    assert_eq!(offsets, (0..acknowledged.len() as i64).collect::<Vec<_>>());
}

/// Only the group coordinator writes `__consumer_offsets`: a client's Produce gets
/// INVALID_TOPIC_EXCEPTION for the partition (acks=0: the connection is closed, as for any
/// failed acks=0 produce), DeleteRecords too, and the partition's log end offset is unchanged.
#[tokio::test]
async fn clients_cannot_produce_to_or_delete_records_of_internal_topics() {
    let b = start(&[("offsets.topic.num.partitions", "1")]).await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "g-topic").await;
    // A commit creates __consumer_offsets and writes one record there.
    let r: OffsetCommitResponse = c.call(8, &commit_request("g", "", -1, "g-topic", "")).await;
    assert_eq!(r.topics[0].partitions[0].error_code, 0);
    let before = offsets_end_offset(&mut c).await;
    assert!(before >= 1);

    let r: ProduceResponse = c
        .call(
            9,
            &produce_request("__consumer_offsets", batch(&["forged"]), -1),
        )
        .await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 17, "INVALID_TOPIC_EXCEPTION");
    assert_eq!(p.base_offset, -1);

    let r: DeleteRecordsResponse = c
        .call(
            2,
            &DeleteRecordsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![delete_records_request::DeleteRecordsTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("__consumer_offsets")))
                    .with_partitions(vec![
                        delete_records_request::DeleteRecordsPartition::default()
                            .with_partition_index(0)
                            .with_offset(-1),
                    ])]),
        )
        .await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 17, "INVALID_TOPIC_EXCEPTION");
    assert_eq!(p.low_watermark, -1);

    let mut zero = Client::connect(b.addr).await;
    let (_, frame) = zero.frame(
        9,
        &produce_request("__consumer_offsets", batch(&["forged"]), 0),
    );
    zero.stream.write_all(&frame).await.unwrap();
    assert!(
        zero.is_closed().await,
        "a refused acks=0 produce closes the connection"
    );

    let after = offsets_end_offset(&mut c).await;
    assert_eq!(after, before, "nothing was appended to __consumer_offsets");
}

/// The log end offset of `__consumer_offsets`-0.
async fn offsets_end_offset(c: &mut Client) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_static_str("__consumer_offsets")))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1),
            ])]);
    let r: ListOffsetsResponse = c.call(7, &request).await;
    r.topics[0].partitions[0].offset
}

/// The recovery point (offset up to which the log is fsynced) of `topic`-0.
fn recovery_point(b: &TestBroker, topic: &str) -> i64 {
    let log = b
        .broker
        .logs()
        .get(&oxbow_broker::log::TopicPartition::new(topic, 0))
        .unwrap();
    let rp = log.lock().unwrap().recovery_point();
    rp
}

/// `log.flush.interval.messages` and the topic's `flush.messages` are enforced as in Kafka:
/// a produce that brings a partition's unflushed messages to the limit is acknowledged only
/// after the log is fsynced (the recovery point reaches the log end); without them the
/// broker leaves flushing to the OS.
#[tokio::test]
async fn flush_messages_fsyncs_before_the_produce_is_acknowledged() {
    let b = start(&[("log.flush.interval.messages", "1")]).await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "every").await;
    let r: ProduceResponse = c
        .call(9, &produce_request("every", batch(&["a", "b"]), 1))
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(recovery_point(&b, "every"), 2, "flushed before the ack");

    // A topic override of 3 beats the broker's 1.
    let r: CreateTopicsResponse = c
        .call(
            7,
            &CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("third")))
                    .with_num_partitions(1)
                    .with_replication_factor(1)
                    .with_configs(vec![
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(StrBytes::from_static_str("flush.messages"))
                            .with_value(Some(StrBytes::from_static_str("3"))),
                    ])]),
        )
        .await;
    assert_eq!(r.topics[0].error_code, 0);
    for (i, expected) in [(0, 0), (1, 0), (2, 3)] {
        let r: ProduceResponse = c
            .call(9, &produce_request("third", batch(&[&format!("v{i}")]), 1))
            .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
        assert_eq!(recovery_point(&b, "third"), expected, "after produce {i}");
    }

    let d = start(&[]).await;
    let mut c = Client::connect(d.addr).await;
    create_topic(&mut c, "lazy").await;
    let r: ProduceResponse = c.call(9, &produce_request("lazy", batch(&["a"]), 1)).await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(
        recovery_point(&d, "lazy"),
        0,
        "the default leaves flushing to the OS"
    );
}

/// Issue 15's 128-byte Produce: a batch with a valid CRC declaring `recordsCount = 2^31-1`
/// (`lastOffsetDelta = 2^31-2`) and no records behind its header.
fn batch_declaring_records_it_does_not_have() -> Bytes {
    let mut b = BytesMut::new();
    b.put_i64(0); // baseOffset
    b.put_i32(49); // batchLength: the v2 header alone
    b.put_i32(0); // partitionLeaderEpoch
    b.put_i8(2); // magic
    b.put_u32(0); // crc, computed below
    b.put_i16(0); // attributes
    b.put_i32(i32::MAX - 1); // lastOffsetDelta
    b.put_i64(0); // baseTimestamp
    b.put_i64(0); // maxTimestamp
    b.put_i64(-1); // producerId
    b.put_i16(-1); // producerEpoch
    b.put_i32(-1); // baseSequence
    b.put_i32(i32::MAX); // recordsCount
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

#[tokio::test]
async fn declared_record_counts_never_size_an_allocation() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    let r: CreateTopicsResponse = c
        .call(
            7,
            &CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("compacted")))
                    .with_num_partitions(1)
                    .with_replication_factor(1)
                    .with_configs(vec![
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(StrBytes::from_static_str("cleanup.policy"))
                            .with_value(Some(StrBytes::from_static_str("compact"))),
                    ])]),
        )
        .await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    create_topic(&mut c, "plain").await;
    for topic in ["compacted", "plain"] {
        let r: ProduceResponse = c
            .call(
                9,
                &produce_request(topic, batch_declaring_records_it_does_not_have(), -1),
            )
            .await;
        let p = &r.responses[0].partition_responses[0];
        // Kafka's record iterator: "Incorrect declared batch size, premature EOF reached".
        assert_eq!(
            p.error_code, 87,
            "INVALID_RECORD on {topic}: {:?}",
            p.error_message
        );
        let r: ProduceResponse = c.call(9, &produce_request(topic, batch(&["a"]), -1)).await;
        let p = &r.responses[0].partition_responses[0];
        assert_eq!(
            (p.error_code, p.base_offset),
            (0, 0),
            "{topic}: the bad batch took no offsets"
        );
    }
    api_versions_ok(b.addr).await;
}

/// A gzip batch of one record whose value is `value_bytes` zero bytes: the compressed batch
/// is about 1/1000 of that, and is built as a stream so the test itself never holds it.
fn gzip_bomb_batch(value_bytes: usize, timestamp: i64) -> Bytes {
    use std::io::Write;
    fn varint(out: &mut Vec<u8>, v: i64) {
        let mut z = ((v << 1) ^ (v >> 63)) as u64;
        while z >= 0x80 {
            out.push((z as u8) | 0x80);
            z >>= 7;
        }
        out.push(z as u8);
    }
    let mut fields = vec![0u8]; // attributes
    varint(&mut fields, 0); // timestamp delta
    varint(&mut fields, 0); // offset delta
    varint(&mut fields, 1); // key length
    fields.push(b'k');
    varint(&mut fields, value_bytes as i64);
    let mut record = Vec::new();
    varint(&mut record, (fields.len() + value_bytes + 1) as i64);
    record.extend_from_slice(&fields);
    let mut gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::best());
    gz.write_all(&record).unwrap();
    let zeros = vec![0u8; 1 << 20];
    let mut left = value_bytes;
    while left > 0 {
        let n = left.min(zeros.len());
        gz.write_all(&zeros[..n]).unwrap();
        left -= n;
    }
    gz.write_all(&[0]).unwrap(); // no headers
    let payload = gz.finish().unwrap();
    let mut b = BytesMut::new();
    b.put_i64(0);
    b.put_i32((49 + payload.len()) as i32);
    b.put_i32(0);
    b.put_i8(2);
    b.put_u32(0);
    b.put_i16(1); // gzip
    b.put_i32(0); // lastOffsetDelta
    b.put_i64(timestamp);
    b.put_i64(timestamp);
    b.put_i64(-1);
    b.put_i16(-1);
    b.put_i32(-1);
    b.put_i32(1);
    b.extend_from_slice(&payload);
    let crc = crc32c::crc32c(&b[21..]);
    b[17..21].copy_from_slice(&crc.to_be_bytes());
    b.freeze()
}

/// Peak resident memory of this process (the broker runs in it) since the last reset.
fn peak_rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).unwrap();
    let kib: u64 = line.split_whitespace().nth(1).unwrap().parse().unwrap();
    kib * 1024
}

/// Resets the peak so the next reading covers only what follows (Linux `clear_refs` 5).
fn reset_peak_rss() {
    std::fs::write("/proc/self/clear_refs", "5").unwrap();
}

#[tokio::test]
async fn a_small_compressed_batch_costs_no_more_memory_than_its_records_need() {
    // OXBOW_BOMB_MIB=1024 reproduces issue 15's figure (a 1 MiB batch inflating to 1 GiB).
    let inflated: usize = std::env::var("OXBOW_BOMB_MIB")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(128usize)
        << 20;
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    let r: CreateTopicsResponse = c
        .call(
            7,
            &CreateTopicsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![create_topics_request::CreatableTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("bomb-compacted")))
                    .with_num_partitions(1)
                    .with_replication_factor(1)
                    .with_configs(vec![
                        create_topics_request::CreatableTopicConfig::default()
                            .with_name(StrBytes::from_static_str("cleanup.policy"))
                            .with_value(Some(StrBytes::from_static_str("compact"))),
                    ])]),
        )
        .await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    create_topic(&mut c, "bomb-plain").await;
    let ts = 1_700_000_000_000;
    let bomb = gzip_bomb_batch(inflated, ts);
    assert!(bomb.len() < 1 << 20, "within the default max.message.bytes");
    for topic in ["bomb-compacted", "bomb-plain"] {
        reset_peak_rss();
        let before = peak_rss_bytes();
        let r: ProduceResponse = c.call(9, &produce_request(topic, bomb.clone(), -1)).await;
        let p = &r.responses[0].partition_responses[0];
        // Kafka 4.1 accepts it: the batch is valid, only very compressible.
        assert_eq!(p.error_code, 0, "{topic}: {:?}", p.error_message);
        let produce_peak = peak_rss_bytes().saturating_sub(before);
        reset_peak_rss();
        let before = peak_rss_bytes();
        let r: ListOffsetsResponse = c
            .call(
                7,
                &ListOffsetsRequest::default()
                    .with_replica_id(BrokerId(-1))
                    .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
                        .with_name(TopicName(StrBytes::from_string(topic.into())))
                        .with_partitions(vec![
                            list_offsets_request::ListOffsetsPartition::default()
                                .with_partition_index(0)
                                .with_timestamp(ts),
                        ])]),
            )
            .await;
        let p = &r.topics[0].partitions[0];
        assert_eq!((p.error_code, p.offset, p.timestamp), (0, 0, ts), "{topic}");
        let lookup_peak = peak_rss_bytes().saturating_sub(before);
        eprintln!(
            "{topic}: {} MiB inflated; peak RSS growth: produce {} MiB, ListOffsets {} MiB",
            inflated >> 20,
            produce_peak >> 20,
            lookup_peak >> 20
        );
        for (what, peak) in [("produce", produce_peak), ("ListOffsets", lookup_peak)] {
            assert!(
                peak < 64 << 20,
                "{topic}: {what} grew the peak RSS by {} MiB for a {} KiB batch",
                peak >> 20,
                bomb.len() >> 10
            );
        }
    }
}

/// Manual replica assignments are checked as Kafka 4.1's controller checks them, with its
/// messages: counts set next to an assignment, and one partition assigned twice (the second
/// assignment must not silently replace the first). A refused topic is not created.
#[tokio::test]
async fn manual_assignments_are_refused_with_kafkas_messages() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    let assigned = |name: &str, rf: i16, parts: &[(i32, i32)]| {
        CreateTopicsRequest::default()
            .with_timeout_ms(5000)
            .with_topics(vec![create_topics_request::CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(name.into())))
                .with_num_partitions(-1)
                .with_replication_factor(rf)
                .with_assignments(
                    parts
                        .iter()
                        .map(|&(partition, broker)| {
                            create_topics_request::CreatableReplicaAssignment::default()
                                .with_partition_index(partition)
                                .with_broker_ids(vec![BrokerId(broker)])
                        })
                        .collect(),
                )])
    };
    let refusal = |r: &CreateTopicsResponse| {
        let t = &r.topics[0];
        (
            t.error_code,
            t.error_message
                .as_ref()
                .map(|m| m.to_string())
                .unwrap_or_default(),
        )
    };
    let r: CreateTopicsResponse = c.call(7, &assigned("a", 1, &[(0, 0)])).await;
    assert_eq!(
        refusal(&r),
        (
            42,
            "A manual partition assignment was specified, but replication factor was not set to -1."
                .to_string()
        ),
        "INVALID_REQUEST"
    );
    let r: CreateTopicsResponse = c.call(7, &assigned("a", -1, &[(0, 0), (0, 0)])).await;
    assert_eq!(
        refusal(&r),
        (
            39,
            "Found multiple manual partition assignments for partition 0".to_string()
        ),
        "INVALID_REPLICA_ASSIGNMENT"
    );
    let r: CreateTopicsResponse = c.call(7, &assigned("a", -1, &[(0, 0), (1, 0)])).await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    assert_eq!(r.topics[0].num_partitions, 2);
}

fn create_topics_request(name: &str, partitions: i32) -> CreateTopicsRequest {
    CreateTopicsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![create_topics_request::CreatableTopic::default()
            .with_name(TopicName(StrBytes::from_string(name.into())))
            .with_num_partitions(partitions)
            .with_replication_factor(1)])
}

/// Issue 15: one CreatePartitions to 15,619 partitions exhausted the open files limit and
/// left a broker that could not start. Partition-creating requests (CreateTopics,
/// CreatePartitions, auto-creation) are refused beyond `oxbow.max.partitions` or the
/// descriptors left under `ulimit -n`, with POLICY_VIOLATION and a message saying why, and
/// a refused request changes nothing.
#[tokio::test]
async fn partition_counts_beyond_the_broker_budget_are_refused_and_change_nothing() {
    let b = start(&[("oxbow.max.partitions", "5"), ("num.partitions", "3")]).await;
    let mut c = Client::connect(b.addr).await;
    let r: CreateTopicsResponse = c.call(7, &create_topics_request("big", 6)).await;
    let t = &r.topics[0];
    assert_eq!(t.error_code, 44, "POLICY_VIOLATION: {:?}", t.error_message);
    let msg = t
        .error_message
        .as_ref()
        .map(|m| m.to_string())
        .unwrap_or_default();
    assert!(msg.contains("oxbow.max.partitions=5"), "{msg}");

    let r: CreateTopicsResponse = c.call(7, &create_topics_request("small", 3)).await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    let r: CreatePartitionsResponse = c
        .call(
            3,
            &CreatePartitionsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(vec![
                    create_partitions_request::CreatePartitionsTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str("small")))
                        .with_count(6)
                        .with_assignments(None),
                ]),
        )
        .await;
    let p = &r.results[0];
    assert_eq!(p.error_code, 44, "POLICY_VIOLATION: {:?}", p.error_message);

    // Auto-creation (num.partitions=3 more) is refused the same way.
    let r: MetadataResponse = c
        .call(
            12,
            &MetadataRequest::default()
                .with_allow_auto_topic_creation(true)
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                )
                .with_name(Some(TopicName(StrBytes::from_static_str("auto"))))])),
        )
        .await;
    assert_eq!(
        r.topics[0].error_code, 44,
        "POLICY_VIOLATION for auto-creation"
    );

    // Nothing changed: "small" still has 3 partitions, "big" and "auto" do not exist.
    let r: MetadataResponse = c
        .call(12, &MetadataRequest::default().with_topics(None))
        .await;
    let mut seen: Vec<(String, usize)> = r
        .topics
        .iter()
        .map(|t| (t.name.as_ref().unwrap().to_string(), t.partitions.len()))
        .collect();
    seen.sort();
    assert_eq!(seen, vec![("small".to_string(), 3)]);
}

/// A connection from `local` (a loopback address) to the broker.
async fn connect_from(local: &str, addr: SocketAddr) -> Client {
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind(format!("{local}:0").parse().unwrap()).unwrap();
    Client {
        stream: socket.connect(addr).await.unwrap(),
        next_correlation: 1,
    }
}

/// True if ApiVersions is answered on `c` within `wait`.
async fn answers_within(c: &mut Client, wait: Duration) -> bool {
    let (_, frame) = c.frame(3, &ApiVersionsRequest::default());
    if c.stream.write_all(&frame).await.is_err() {
        return false;
    }
    matches!(
        tokio::time::timeout(wait, c.read_response()).await,
        Ok(Some(_))
    )
}

/// `max.connections.per.ip` and its overrides as Kafka applies them: the connection over
/// an address's limit is closed at once, other addresses are unaffected, and a freed slot
/// can be used again.
#[tokio::test]
async fn connections_over_the_per_ip_limit_are_closed() {
    let b = start(&[
        ("max.connections.per.ip", "2"),
        ("max.connections.per.ip.overrides", "127.0.0.2:1"),
    ])
    .await;
    let mut first = connect_from("127.0.0.1", b.addr).await;
    let mut second = connect_from("127.0.0.1", b.addr).await;
    assert!(answers_within(&mut first, Duration::from_secs(10)).await);
    assert!(answers_within(&mut second, Duration::from_secs(10)).await);
    let mut third = connect_from("127.0.0.1", b.addr).await;
    assert!(
        third.is_closed().await,
        "the third from 127.0.0.1 is closed"
    );

    let mut other = connect_from("127.0.0.2", b.addr).await;
    assert!(answers_within(&mut other, Duration::from_secs(10)).await);
    let mut other_again = connect_from("127.0.0.2", b.addr).await;
    assert!(
        other_again.is_closed().await,
        "override: one from 127.0.0.2"
    );

    drop(first);
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let mut again = connect_from("127.0.0.1", b.addr).await;
        if answers_within(&mut again, Duration::from_secs(2)).await {
            break;
        }
        assert!(Instant::now() < deadline, "a freed slot is not reused");
    }
}

/// `max.connections`: once it is reached, the next client is not refused but waits until a
/// connection closes, then is served (Kafka's acceptor blocks the same way).
#[tokio::test]
async fn max_connections_makes_the_next_client_wait_for_a_slot() {
    let b = start(&[("max.connections", "2")]).await;
    let mut first = Client::connect(b.addr).await;
    let mut second = Client::connect(b.addr).await;
    assert!(answers_within(&mut first, Duration::from_secs(10)).await);
    assert!(answers_within(&mut second, Duration::from_secs(10)).await);
    let mut third = Client::connect(b.addr).await;
    assert!(
        !answers_within(&mut third, Duration::from_millis(700)).await,
        "the third is not served while two are open"
    );
    drop(first);
    let response = tokio::time::timeout(Duration::from_secs(10), third.read_response())
        .await
        .expect("served once a slot is free");
    assert!(response.is_some());
}

/// `connections.max.idle.ms`: a connection with nothing arriving (idle, or stalled in the
/// middle of a frame) is closed; one that keeps sending requests is not.
#[tokio::test]
async fn idle_and_stalled_connections_are_closed_after_connections_max_idle_ms() {
    let b = start(&[("connections.max.idle.ms", "500")]).await;
    let started = Instant::now();
    let mut idle = Client::connect(b.addr).await;
    let mut stalled = Client::connect(b.addr).await;
    // Declares a 1 MB request, sends 10 bytes of it and stops.
    stalled
        .stream
        .write_all(&1_000_000i32.to_be_bytes())
        .await
        .unwrap();
    stalled.stream.write_all(&[0u8; 10]).await.unwrap();
    let mut busy = Client::connect(b.addr).await;
    for _ in 0..6 {
        assert!(answers_within(&mut busy, Duration::from_secs(5)).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert!(idle.is_closed().await, "idle connection closed");
    assert!(stalled.is_closed().await, "stalled connection closed");
    assert!(started.elapsed() >= Duration::from_millis(500));
    assert!(
        answers_within(&mut busy, Duration::from_secs(5)).await,
        "a connection in use stays open"
    );
}

/// A Fetch v12 of `topic` partition 0 in session `session_id` at `epoch`, listing the
/// partition at `offset` unless `None`, forgetting it if `forget`.
fn session_fetch(
    topic: &str,
    session_id: i32,
    epoch: i32,
    offset: Option<i64>,
    forget: bool,
) -> FetchRequest {
    let name = TopicName(StrBytes::from_string(topic.into()));
    let mut r = fetch_request(topic, offset.unwrap_or(0), 200)
        .with_session_id(session_id)
        .with_session_epoch(epoch);
    if offset.is_none() {
        r.topics.clear();
    }
    if forget {
        r.forgotten_topics_data = vec![fetch_request::ForgottenTopic::default()
            .with_topic(name)
            .with_partitions(vec![0])];
    }
    r
}

#[tokio::test]
async fn fetch_sessions_follow_kip_227() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "sess").await;
    let _: ProduceResponse = c
        .call(9, &produce_request("sess", batch(&["a", "b"]), 1))
        .await;

    // A full fetch (epoch 0) creates a session and answers every partition.
    let full: FetchResponse = c
        .call(12, &session_fetch("sess", 0, 0, Some(0), false))
        .await;
    assert_eq!(full.error_code, 0);
    let id = full.session_id;
    assert!(id > 0, "no session created: {full:?}");
    let p = &full.responses[0].partitions[0];
    assert_eq!(values_of(p.records.as_ref().unwrap()), vec!["a", "b"]);
    assert_eq!(p.high_watermark, 2);

    // Epoch 1 moves the fetch offset to 2: nothing new, same high watermark, so the
    // incremental response leaves the partition out.
    let inc: FetchResponse = c
        .call(12, &session_fetch("sess", id, 1, Some(2), false))
        .await;
    assert_eq!((inc.error_code, inc.session_id), (0, id));
    assert!(
        inc.responses.is_empty(),
        "unchanged partition sent: {inc:?}"
    );

    // New data: epoch 2 names no partition, the session remembers offset 2.
    let _: ProduceResponse = c.call(9, &produce_request("sess", batch(&["c"]), 1)).await;
    let inc: FetchResponse = c.call(12, &session_fetch("sess", id, 2, None, false)).await;
    assert_eq!(inc.session_id, id);
    let p = &inc.responses[0].partitions[0];
    assert_eq!(values_of(p.records.as_ref().unwrap()), vec!["c"]);
    assert_eq!(p.high_watermark, 3);

    // A repeated epoch and an unknown session fail as a whole with Kafka's codes.
    let stale: FetchResponse = c.call(12, &session_fetch("sess", id, 2, None, false)).await;
    assert_eq!(stale.error_code, 71, "INVALID_FETCH_SESSION_EPOCH");
    assert_eq!(stale.session_id, 0);
    assert!(stale.responses.is_empty());
    let unknown: FetchResponse = c
        .call(12, &session_fetch("sess", id ^ 0x5a5a, 1, None, false))
        .await;
    assert_eq!(unknown.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");

    // Forgetting the last partition closes the session (sessionless answer, id 0).
    let closed: FetchResponse = c.call(12, &session_fetch("sess", id, 3, None, true)).await;
    assert_eq!((closed.error_code, closed.session_id), (0, 0));
    let gone: FetchResponse = c.call(12, &session_fetch("sess", id, 4, None, false)).await;
    assert_eq!(gone.error_code, 70, "FETCH_SESSION_ID_NOT_FOUND");

    // Epoch -1 (FINAL) never creates a session.
    let sessionless: FetchResponse = c
        .call(12, &session_fetch("sess", 0, -1, Some(0), false))
        .await;
    assert_eq!(sessionless.session_id, 0);
    assert_eq!(sessionless.responses[0].partitions[0].high_watermark, 3);
}

#[tokio::test]
async fn zero_session_cache_slots_mean_full_fetches_only() {
    let b = start(&[("max.incremental.fetch.session.cache.slots", "0")]).await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "nosess").await;
    let full: FetchResponse = c
        .call(12, &session_fetch("nosess", 0, 0, Some(0), false))
        .await;
    assert_eq!((full.error_code, full.session_id), (0, 0));
    assert_eq!(full.responses[0].partitions[0].error_code, 0);
}

/// As in Kafka 4.x, `max.incremental.fetch.session.cache.slots` is split over 8 shards:
/// 8 slots give one session per shard, so eight consumers get sessions and a ninth (every
/// shard full of young sessions) does not; 7 slots give no session at all.
#[tokio::test]
async fn session_cache_slots_are_split_over_eight_shards() {
    let b = start(&[("max.incremental.fetch.session.cache.slots", "8")]).await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "shards").await;
    let mut ids = Vec::new();
    for _ in 0..9 {
        let full: FetchResponse = c
            .call(12, &session_fetch("shards", 0, 0, Some(0), false))
            .await;
        assert_eq!(full.error_code, 0);
        ids.push(full.session_id);
    }
    assert!(ids[..8].iter().all(|&id| id > 0), "{ids:?}");
    assert_eq!(ids[8], 0, "a ninth session found room: {ids:?}");
    // Every session is served incrementally from its own shard.
    for &id in &ids[..8] {
        let inc: FetchResponse = c
            .call(12, &session_fetch("shards", id, 1, None, false))
            .await;
        assert_eq!((inc.error_code, inc.session_id), (0, id));
    }

    let b = start(&[("max.incremental.fetch.session.cache.slots", "7")]).await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "noshard").await;
    let full: FetchResponse = c
        .call(12, &session_fetch("noshard", 0, 0, Some(0), false))
        .await;
    assert_eq!((full.error_code, full.session_id), (0, 0));
}

/// A batch of one record whose value is `size` bytes of `fill`.
fn sized_batch(size: usize, fill: char) -> Bytes {
    batch(&[&fill.to_string().repeat(size)])
}

/// `fetch.max.bytes` caps a response whatever the request's `max_bytes` says, as in Kafka
/// (min of the two), yet a first batch larger than the cap is still returned whole; the
/// request's `min_bytes` is capped the same way, so a fetch asking for more than the cap
/// answers at once when more than the cap is waiting.
#[tokio::test]
async fn fetch_max_bytes_caps_the_response() {
    let b = start(&[("fetch.max.bytes", "1024")]).await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "capped").await;
    for (size, fill) in [(600, 'a'), (600, 'b'), (2000, 'c')] {
        let r: ProduceResponse = c
            .call(9, &produce_request("capped", sized_batch(size, fill), 1))
            .await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let values = |r: &FetchResponse| -> Vec<usize> {
        let p = &r.responses[0].partitions[0];
        assert_eq!(p.error_code, 0);
        values_of(p.records.as_ref().expect("records"))
            .iter()
            .map(String::len)
            .collect()
    };
    // Asked for 1 MiB and to wait for it: one 600-byte batch fits under the cap, two do not,
    // and the 3,200 bytes waiting are more than the (capped) minimum, so no wait.
    let mut first = fetch_request("capped", 0, 10_000).with_min_bytes(1 << 20);
    first.max_bytes = 1 << 20;
    let started = Instant::now();
    let r: FetchResponse = c.call(12, &first).await;
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "waited {:?} for min_bytes above fetch.max.bytes",
        started.elapsed()
    );
    assert_eq!(values(&r), vec![600]);
    // The 2,000-byte batch alone exceeds the cap and is still returned whole.
    let r: FetchResponse = c.call(12, &fetch_request("capped", 2, 0)).await;
    assert_eq!(values(&r), vec![2000]);
}

/// A listener left out of `advertised.listeners` is served, but, as in Kafka, this broker
/// is not an address for its clients: Metadata lists no broker and its partitions are
/// LISTENER_NOT_FOUND without a leader, FindCoordinator is COORDINATOR_NOT_AVAILABLE and
/// DescribeCluster lists no broker. The advertised listener gets its own address.
#[tokio::test]
async fn an_unadvertised_listener_gets_no_broker_address() {
    let dir = tempfile::tempdir().unwrap();
    let overrides: Vec<(String, String)> = [
        ("listeners", "SHOWN://127.0.0.1:0,HIDDEN://127.0.0.1:0"),
        ("advertised.listeners", "SHOWN://shown.example:19092"),
        (
            "listener.security.protocol.map",
            "SHOWN:PLAINTEXT,HIDDEN:PLAINTEXT",
        ),
        ("inter.broker.listener.name", "SHOWN"),
        ("offsets.topic.num.partitions", "1"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .chain([(
        "log.dirs".to_string(),
        dir.path().join("data").display().to_string(),
    )])
    .collect();
    let (config, _) = BrokerConfig::default_single_node(&overrides).unwrap();
    let broker = Broker::open(config).unwrap();
    let listeners = server::bind(&broker).await.unwrap();
    let addr_of = |name: &str| {
        listeners
            .iter()
            .find(|l| l.context.name == name)
            .unwrap()
            .socket
            .local_addr()
            .unwrap()
    };
    let (shown, hidden) = (addr_of("SHOWN"), addr_of("HIDDEN"));
    let (_stop, stopped) = watch::channel(false);
    tokio::spawn(server::serve(Arc::clone(&broker), listeners, stopped));

    let mut s = Client::connect(shown).await;
    create_topic(&mut s, "seen").await;
    let mut h = Client::connect(hidden).await;
    let request = MetadataRequest::default()
        .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
        )
        .with_name(Some(TopicName(StrBytes::from_static_str("seen"))))]));

    let r: MetadataResponse = s.call(12, &request).await;
    assert_eq!(r.brokers.len(), 1);
    assert_eq!(r.brokers[0].host.as_str(), "shown.example");
    assert_eq!(r.brokers[0].port, 19092);
    assert_eq!(r.topics[0].partitions[0].error_code, 0);

    let r: MetadataResponse = h.call(12, &request).await;
    assert!(r.brokers.is_empty(), "{:?}", r.brokers);
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 72, "LISTENER_NOT_FOUND");
    assert_eq!(p.leader_id, BrokerId(-1));
    assert_eq!(p.offline_replicas, vec![BrokerId(0)]);

    let find = FindCoordinatorRequest::default()
        .with_key_type(0)
        .with_coordinator_keys(vec![StrBytes::from_static_str("g")]);
    let r: FindCoordinatorResponse = s.call(4, &find).await;
    assert_eq!(r.coordinators[0].error_code, 0);
    assert_eq!(r.coordinators[0].host.as_str(), "shown.example");
    let r: FindCoordinatorResponse = h.call(4, &find).await;
    assert_eq!(
        r.coordinators[0].error_code, 15,
        "COORDINATOR_NOT_AVAILABLE"
    );

    let r: DescribeClusterResponse = h.call(1, &DescribeClusterRequest::default()).await;
    assert!(r.brokers.is_empty());
}

/// DescribeCluster names a live broker as the controller (Kafka's KRaft brokers answer a
/// random alive broker) and, as Kafka's brokers do, refuses to describe the controllers
/// (endpointType 2, v1+: MISMATCHED_ENDPOINT_TYPE) or an unknown type
/// (UNSUPPORTED_ENDPOINT_TYPE).
#[tokio::test]
async fn describe_cluster_describes_brokers_only() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    let r: DescribeClusterResponse = c.call(1, &DescribeClusterRequest::default()).await;
    assert_eq!(r.error_code, 0);
    assert_eq!(r.controller_id, BrokerId(0));
    assert_eq!(r.brokers.len(), 1);
    let controllers = DescribeClusterRequest::default().with_endpoint_type(2);
    let r: DescribeClusterResponse = c.call(1, &controllers).await;
    assert_eq!(r.error_code, 114, "MISMATCHED_ENDPOINT_TYPE");
    assert!(r.brokers.is_empty());
    assert_eq!(
        r.error_message.as_deref(),
        Some(
            "The request was sent to an endpoint of type BROKER, but we wanted an endpoint of \
             type CONTROLLER"
        )
    );
    let r: DescribeClusterResponse = c
        .call(1, &DescribeClusterRequest::default().with_endpoint_type(9))
        .await;
    assert_eq!(r.error_code, 115, "UNSUPPORTED_ENDPOINT_TYPE");
}

/// Issue 7: the group coordinator never waits for the disk under the lock heartbeats need.
/// While an offset commit waits for the `__consumer_offsets` partition (held here for 3 s,
/// as a slow disk, a segment roll or the log cleaner could hold it), heartbeats of the
/// group are still answered at once, and the commit completes once the partition is free.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn heartbeats_are_answered_while_a_commit_waits_for_the_offsets_partition() {
    let b = start(&[
        ("group.initial.rebalance.delay.ms", "0"),
        ("offsets.topic.num.partitions", "1"),
    ])
    .await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "hb-topic").await;
    let group = || GroupId(StrBytes::from_static_str("hb"));
    let join = |member: &str| {
        JoinGroupRequest::default()
            .with_group_id(group())
            .with_session_timeout_ms(10_000)
            .with_rebalance_timeout_ms(10_000)
            .with_member_id(StrBytes::from_string(member.into()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(vec![join_group_request::JoinGroupRequestProtocol::default(
            )
            .with_name(StrBytes::from_static_str("range"))
            .with_metadata(Bytes::from_static(b"\0\0\0\0\0\0"))])
    };
    let r: JoinGroupResponse = c.call(7, &join("")).await;
    let member = r.member_id.as_str().to_string();
    let r: JoinGroupResponse = c.call(7, &join(&member)).await;
    assert_eq!((r.error_code, r.generation_id), (0, 1));
    let r: SyncGroupResponse = c
        .call(
            5,
            &SyncGroupRequest::default()
                .with_group_id(group())
                .with_generation_id(1)
                .with_member_id(StrBytes::from_string(member.clone()))
                .with_assignments(vec![]),
        )
        .await;
    assert_eq!(r.error_code, 0);

    let log = b
        .broker
        .logs()
        .get(&oxbow_broker::log::TopicPartition::new(
            "__consumer_offsets",
            0,
        ))
        .expect("offsets partition");
    let (held_tx, held_rx) = std::sync::mpsc::channel();
    let holder = std::thread::spawn(move || {
        let _held = log.lock().unwrap();
        held_tx.send(()).unwrap();
        std::thread::sleep(Duration::from_secs(3));
    });
    held_rx.recv().unwrap();
    let held_since = Instant::now();
    let mut committer = Client::connect(b.addr).await;
    let commit_member = member.clone();
    let commit = tokio::spawn(async move {
        let r: OffsetCommitResponse = committer
            .call(
                8,
                &commit_request("hb", &commit_member, 1, "hb-topic", "while held"),
            )
            .await;
        (r.topics[0].partitions[0].error_code, Instant::now())
    });
    // Heartbeats every 100 ms while the partition is held: each is answered promptly.
    let mut pace = tokio::time::interval(Duration::from_millis(100));
    let mut slowest = Duration::ZERO;
    let mut beats = 0;
    while held_since.elapsed() < Duration::from_millis(2500) {
        pace.tick().await;
        let sent = Instant::now();
        let hb: HeartbeatResponse = c
            .call(
                4,
                &HeartbeatRequest::default()
                    .with_group_id(group())
                    .with_generation_id(1)
                    .with_member_id(StrBytes::from_string(member.clone())),
            )
            .await;
        assert_eq!(hb.error_code, 0);
        slowest = slowest.max(sent.elapsed());
        beats += 1;
    }
    assert!(
        slowest < Duration::from_millis(500),
        "a heartbeat waited {slowest:?} for a commit stuck on the offsets partition ({beats} heartbeats)"
    );
    holder.join().unwrap();
    let (code, answered) = commit.await.unwrap();
    assert_eq!(code, 0, "the commit succeeds once the partition is free");
    assert!(answered.duration_since(held_since) >= Duration::from_millis(2900));
}

/// Fetch v13+ names topics by id (Kafka 4.1 serves Fetch up to v17): records come back
/// under the topic id, an unknown id is UNKNOWN_TOPIC_ID, sessions are keyed by id, and a
/// session created with ids refuses a request by name (FETCH_SESSION_TOPIC_ID_ERROR).
#[tokio::test]
async fn fetch_v13_and_later_use_topic_ids() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "ids").await;
    let _: ProduceResponse = c.call(9, &produce_request("ids", batch(&["x"]), 1)).await;
    let m: MetadataResponse = c
        .call(
            12,
            &MetadataRequest::default()
                .with_topics(Some(vec![metadata_request::MetadataRequestTopic::default(
                )
                .with_name(Some(TopicName(StrBytes::from_static_str("ids"))))])),
        )
        .await;
    let id = m.topics[0].topic_id;
    let by_id = |topic_id: uuid::Uuid, session_id: i32, epoch: i32| {
        let mut r = fetch_request("", 0, 0)
            .with_session_id(session_id)
            .with_session_epoch(epoch);
        r.topics[0].topic = TopicName(StrBytes::from_static_str(""));
        r.topics[0].topic_id = topic_id;
        r
    };
    for version in [13i16, 15, 16, 17] {
        let f: FetchResponse = c.call(version, &by_id(id, 0, -1)).await;
        assert_eq!(f.responses[0].topic_id, id, "v{version}");
        let p = &f.responses[0].partitions[0];
        assert_eq!(p.error_code, 0, "v{version}");
        assert_eq!(
            values_of(p.records.as_ref().unwrap()),
            vec!["x"],
            "v{version}"
        );
    }
    let unknown = uuid::Uuid::from_u128(0x1234);
    let f: FetchResponse = c.call(13, &by_id(unknown, 0, -1)).await;
    assert_eq!(f.responses[0].topic_id, unknown);
    assert_eq!(
        f.responses[0].partitions[0].error_code, 100,
        "UNKNOWN_TOPIC_ID"
    );

    let full: FetchResponse = c.call(17, &by_id(id, 0, 0)).await;
    let session = full.session_id;
    assert!(session > 0, "{full:?}");
    let by_name: FetchResponse = c
        .call(12, &session_fetch("ids", session, 1, None, false))
        .await;
    assert_eq!(by_name.error_code, 106, "FETCH_SESSION_TOPIC_ID_ERROR");
}

/// A group's coordinator is found only once its `__consumer_offsets` partition is loaded:
/// the topic enters the metadata image before its logs exist (they are created on the
/// blocking pool), and a FindCoordinator answered in between let a group commit offsets
/// that could not be written (its records were lost; a restart then replayed a group
/// without them). While the logs are being created the answer is COORDINATOR_NOT_AVAILABLE,
/// which clients retry; once it is 0, the group's commits are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn coordinator_is_found_only_once_its_offsets_partition_exists() {
    const PARTITIONS: i32 = 1000;
    let b = start(&[
        ("offsets.topic.num.partitions", "1000"),
        ("group.initial.rebalance.delay.ms", "0"),
    ])
    .await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "g-topic").await;
    // A group whose partition is among the last to be created.
    let group = (0..)
        .map(|i| format!("late-{i}"))
        .find(|g| oxbow_broker::group::records::partition_for(g, PARTITIONS) >= PARTITIONS - 10)
        .unwrap();
    let partition = oxbow_broker::group::records::partition_for(&group, PARTITIONS);
    let data = b._dir.path().join("data");
    let find = |key: &str| {
        FindCoordinatorRequest::default()
            .with_key_type(0)
            .with_coordinator_keys(vec![StrBytes::from_string(key.to_string())])
    };
    // Another group's FindCoordinator creates `__consumer_offsets`.
    let mut creator = Client::connect(b.addr).await;
    let first = tokio::spawn(async move {
        let r: FindCoordinatorResponse = creator.call(4, &find("first")).await;
        r.coordinators[0].error_code
    });
    // Wait until the creation is under way: the first partition's directory exists.
    let deadline = Instant::now() + Duration::from_secs(60);
    while !data.join("__consumer_offsets-0").exists() {
        assert!(
            Instant::now() < deadline,
            "__consumer_offsets-0 never appeared"
        );
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    let mut saw_not_available = false;
    loop {
        let r: FindCoordinatorResponse = c.call(4, &find(&group)).await;
        let code = r.coordinators[0].error_code;
        if code == 0 {
            assert!(
                data.join(format!("__consumer_offsets-{partition}"))
                    .exists(),
                "coordinator found before its partition's log exists"
            );
            break;
        }
        assert_eq!(code, 15, "COORDINATOR_NOT_AVAILABLE while loading");
        saw_not_available = true;
        assert!(
            Instant::now() < deadline,
            "coordinator never became available"
        );
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let r: OffsetCommitResponse = c
        .call(8, &commit_request(&group, "", -1, "g-topic", ""))
        .await;
    assert_eq!(
        r.topics[0].partitions[0].error_code, 0,
        "the commit is written"
    );
    assert_eq!(first.await.unwrap(), 0);
    // Creating 1,000 partitions takes long enough to be observed; if a fast disk ever
    // finishes first, the test still checked that a found coordinator has its log.
    if !saw_not_available {
        eprintln!("note: __consumer_offsets was created before the first lookup");
    }
}

/// A Fetch with a replica id is a follower's: a broker that holds no replica of that id
/// refuses it with NOT_LEADER_OR_FOLLOWER, as Kafka's leader does, instead of serving it as a
/// consumer read (a follower read would also move the high watermark).
#[tokio::test]
async fn a_follower_fetch_from_a_broker_that_is_not_a_replica_is_refused() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "follow").await;
    let p: ProduceResponse = c
        .call(9, &produce_request("follow", batch(&["a"]), -1))
        .await;
    assert_eq!(p.responses[0].partition_responses[0].error_code, 0);
    let consumer: FetchResponse = c.call(12, &fetch_request("follow", 0, 0)).await;
    assert_eq!(
        values_of(
            consumer.responses[0].partitions[0]
                .records
                .as_ref()
                .unwrap()
        ),
        vec!["a"]
    );
    let follower: FetchResponse = c
        .call(
            12,
            &fetch_request("follow", 0, 0).with_replica_id(BrokerId(5)),
        )
        .await;
    let part = &follower.responses[0].partitions[0];
    assert_eq!(part.error_code, 6, "NOT_LEADER_OR_FOLLOWER");
    assert!(part.records.as_ref().is_none_or(|r| r.is_empty()));
}

fn tp_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.into()))
}

/// (error code, message) of each partition result of an ElectLeaders response, by topic.
fn election_outcomes(r: &ElectLeadersResponse) -> Vec<(String, i32, i16, Option<String>)> {
    r.replica_election_results
        .iter()
        .flat_map(|t| {
            t.partition_result.iter().map(|p| {
                (
                    t.topic.0.to_string(),
                    p.partition_id,
                    p.error_code,
                    p.error_message.as_ref().map(|m| m.to_string()),
                )
            })
        })
        .collect()
}

#[tokio::test]
async fn leader_elections_answer_each_partition_as_kafkas_controller_does() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    let r: CreateTopicsResponse = c.call(7, &create_topics_request("elect", 2)).await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    let named = |election_type: i8| {
        ElectLeadersRequest::default()
            .with_election_type(election_type)
            .with_timeout_ms(5000)
            .with_topic_partitions(Some(vec![
                elect_leaders_request::TopicPartitions::default()
                    .with_topic(tp_name("elect"))
                    .with_partitions(vec![0, 5]),
                elect_leaders_request::TopicPartitions::default()
                    .with_topic(tp_name("missing"))
                    .with_partitions(vec![0]),
            ]))
    };
    let not_needed = Some("Leader election not needed for topic partition.".to_string());
    for version in [0, 1, 2] {
        let r: ElectLeadersResponse = c.call(version, &named(0)).await;
        assert_eq!(r.error_code, 0);
        assert_eq!(
            election_outcomes(&r),
            vec![
                ("elect".into(), 0, 84, not_needed.clone()),
                (
                    "elect".into(),
                    5,
                    3,
                    Some("No such partition as elect-5".into())
                ),
                (
                    "missing".into(),
                    0,
                    3,
                    Some("No such topic as missing".into())
                ),
            ],
            "ElectLeaders v{version}: ELECTION_NOT_NEEDED, UNKNOWN_TOPIC_OR_PARTITION"
        );
    }
    // UNCLEAN: the partition has a leader, so no election is needed either.
    let r: ElectLeadersResponse = c.call(2, &named(1)).await;
    assert_eq!(election_outcomes(&r)[0].2, 84);
    // Every partition (null list): each topic is listed, without the partitions whose
    // preferred leader already leads.
    let r: ElectLeadersResponse = c
        .call(
            2,
            &ElectLeadersRequest::default()
                .with_timeout_ms(5000)
                .with_topic_partitions(None),
        )
        .await;
    assert_eq!(r.error_code, 0);
    let topics: Vec<(String, usize)> = r
        .replica_election_results
        .iter()
        .map(|t| (t.topic.0.to_string(), t.partition_result.len()))
        .collect();
    assert_eq!(topics, vec![("elect".to_string(), 0)]);
    // An unknown election type fails the whole request, on every partition.
    let r: ElectLeadersResponse = c.call(2, &named(7)).await;
    assert_eq!(r.error_code, 42, "INVALID_REQUEST");
    let outcomes = election_outcomes(&r);
    assert_eq!(outcomes.len(), 3);
    assert!(outcomes
        .iter()
        .all(|o| o.2 == 42 && o.3.as_deref() == Some("Unknown election type 7")));
}

#[tokio::test]
async fn partition_reassignments_are_refused_and_listed_as_kafkas_controller_does() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    let r: CreateTopicsResponse = c.call(7, &create_topics_request("moving", 2)).await;
    assert_eq!(r.topics[0].error_code, 0, "{:?}", r.topics[0].error_message);
    let target = |partition: i32, replicas: Option<&[i32]>| {
        alter_partition_reassignments_request::ReassignablePartition::default()
            .with_partition_index(partition)
            .with_replicas(replicas.map(|r| r.iter().map(|&b| BrokerId(b)).collect()))
    };
    let request = AlterPartitionReassignmentsRequest::default()
        .with_timeout_ms(5000)
        .with_topics(vec![
            alter_partition_reassignments_request::ReassignableTopic::default()
                .with_name(tp_name("moving"))
                .with_partitions(vec![
                    target(0, Some(&[0, 1])),
                    target(1, None),
                    target(1, Some(&[0])),
                    target(9, Some(&[0])),
                    target(0, Some(&[])),
                ]),
            alter_partition_reassignments_request::ReassignableTopic::default()
                .with_name(tp_name("missing"))
                .with_partitions(vec![target(0, Some(&[0]))]),
        ]);
    let r: AlterPartitionReassignmentsResponse = c.call(0, &request).await;
    assert_eq!(r.error_code, 0);
    let outcomes: Vec<(String, i32, i16, Option<String>)> = r
        .responses
        .iter()
        .flat_map(|t| {
            t.partitions.iter().map(|p| {
                (
                    t.name.0.to_string(),
                    p.partition_index,
                    p.error_code,
                    p.error_message.as_ref().map(|m| m.to_string()),
                )
            })
        })
        .collect();
    assert_eq!(outcomes.len(), 6, "{outcomes:?}");
    // Broker 1 is not registered: INVALID_REPLICA_ASSIGNMENT (39).
    assert_eq!(outcomes[0].2, 39, "{outcomes:?}");
    // Nothing to cancel: NO_REASSIGNMENT_IN_PROGRESS (85) without a message, as Kafka
    // sends an exception whose text is the code's default.
    assert_eq!(outcomes[1], ("moving".into(), 1, 85, None));
    // The current assignment: nothing to do, success.
    assert_eq!(outcomes[2], ("moving".into(), 1, 0, None));
    assert_eq!(
        outcomes[3],
        (
            "moving".into(),
            9,
            3,
            Some("Unable to find partition moving:9.".into())
        )
    );
    assert_eq!(outcomes[4].2, 39, "an empty replica list: {outcomes:?}");
    assert_eq!(
        outcomes[5],
        (
            "missing".into(),
            0,
            3,
            Some("Unable to find a topic named missing.".into())
        )
    );
    // No reassignment started: none is listed, for every topic or for named partitions.
    let r: ListPartitionReassignmentsResponse = c
        .call(
            0,
            &ListPartitionReassignmentsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(None),
        )
        .await;
    assert_eq!((r.error_code, r.topics.len()), (0, 0));
    let r: ListPartitionReassignmentsResponse = c
        .call(
            0,
            &ListPartitionReassignmentsRequest::default()
                .with_timeout_ms(5000)
                .with_topics(Some(vec![
                    list_partition_reassignments_request::ListPartitionReassignmentsTopics::default()
                        .with_name(tp_name("moving"))
                        .with_partition_indexes(vec![0, 1, 7]),
                ])),
        )
        .await;
    assert_eq!((r.error_code, r.topics.len()), (0, 0));
    // The refused targets changed nothing.
    let image = b.broker.image();
    let topic = image.topic("moving").unwrap();
    assert!(topic
        .partitions
        .iter()
        .all(|p| p.replicas == vec![0] && p.adding_replicas.is_empty()));
}

/// A transactional producer's batch (attribute bit 4) of `values`, sequence from 0.
fn transactional_batch(values: &[&str], producer_id: i64) -> Bytes {
    let records: Vec<Record> = values
        .iter()
        .enumerate()
        .map(|(i, v)| Record {
            transactional: true,
            control: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: 0,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            sequence: i as i32,
            timestamp: 1_700_000_000_000 + i as i64,
            key: Some(Bytes::from(format!("k{i}"))),
            value: Some(Bytes::from(v.to_string())),
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
    buf.freeze()
}

async fn latest_offset(c: &mut Client, topic: &str, isolation_level: i8) -> i64 {
    let request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_isolation_level(isolation_level)
        .with_topics(vec![list_offsets_request::ListOffsetsTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.into())))
            .with_partitions(vec![
                list_offsets_request::ListOffsetsPartition::default()
                    .with_partition_index(0)
                    .with_timestamp(-1),
            ])]);
    let r: ListOffsetsResponse = c.call(7, &request).await;
    let p = &r.topics[0].partitions[0];
    assert_eq!(p.error_code, 0);
    p.offset
}

#[tokio::test]
async fn a_read_committed_consumer_stops_at_the_first_open_transaction() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "txn").await;
    for records in [
        batch(&["before-1", "before-2"]),
        transactional_batch(&["open-1", "open-2"], 4000),
        batch(&["after"]),
    ] {
        let r: ProduceResponse = c.call(9, &produce_request("txn", records, 1)).await;
        assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    }
    let fetch =
        |isolation_level: i8| fetch_request("txn", 0, 0).with_isolation_level(isolation_level);
    let uncommitted: FetchResponse = c.call(12, &fetch(0)).await;
    let p = &uncommitted.responses[0].partitions[0];
    assert_eq!((p.high_watermark, p.last_stable_offset), (5, 2));
    assert_eq!(p.aborted_transactions, None);
    assert_eq!(
        values_of(p.records.as_ref().unwrap()),
        vec!["before-1", "before-2", "open-1", "open-2", "after"]
    );
    let committed: FetchResponse = c.call(12, &fetch(1)).await;
    let p = &committed.responses[0].partitions[0];
    assert_eq!((p.high_watermark, p.last_stable_offset), (5, 2));
    assert_eq!(p.aborted_transactions, Some(vec![]));
    assert_eq!(
        values_of(p.records.as_ref().unwrap()),
        vec!["before-1", "before-2"]
    );
    // From the last stable offset on, a read_committed consumer gets nothing yet.
    let at_lso: FetchResponse = c
        .call(12, &fetch_request("txn", 2, 0).with_isolation_level(1))
        .await;
    let p = &at_lso.responses[0].partitions[0];
    assert_eq!(p.error_code, 0);
    assert!(p.records.as_ref().is_none_or(|r| r.is_empty()));
    assert_eq!(latest_offset(&mut c, "txn", 0).await, 5);
    assert_eq!(latest_offset(&mut c, "txn", 1).await, 2);
}

/// Error codes a transactional client retries: a coordinator still loading or being
/// created, a transaction still ending.
const RETRIABLE_TXN_CODES: [i16; 4] = [15, 14, 16, 51];

/// Evaluates `$call` (an error code) until it is not retriable, for at most 20 s.
macro_rules! until_settled {
    ($what:expr, $call:expr) => {{
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let code: i16 = $call;
            if !RETRIABLE_TXN_CODES.contains(&code) {
                break code;
            }
            assert!(
                Instant::now() < deadline,
                "{}: still {code} after 20 s",
                $what
            );
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }};
}

/// The committed offset of `g-wire` for `src`-0 and its error code, as OffsetFetch v7
/// answers with `require_stable`.
async fn stable_offset(c: &mut Client, require_stable: bool) -> (i16, i64) {
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_static_str("g-wire")))
        .with_require_stable(require_stable)
        .with_topics(Some(vec![
            offset_fetch_request::OffsetFetchRequestTopic::default()
                .with_name(TopicName(StrBytes::from_static_str("src")))
                .with_partition_indexes(vec![0]),
        ]));
    let r: OffsetFetchResponse = c.call(7, &request).await;
    assert_eq!(r.error_code, 0);
    let p = &r.topics[0].partitions[0];
    (p.error_code, p.committed_offset)
}

/// sendOffsetsToTransaction on the wire: AddOffsetsToTxn, then TxnOffsetCommit; until the
/// transaction commits, OffsetFetch shows no offset, and with `require_stable` (what a
/// read_committed consumer asks) answers UNSTABLE_OFFSET_COMMIT for the partition; once
/// EndTxn commits (and the marker reached `__consumer_offsets`) the offset is the group's.
#[tokio::test]
async fn offsets_committed_in_a_transaction_are_unstable_until_it_commits() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "src").await;
    let txn_id = || TransactionalId(StrBytes::from_static_str("tx-wire"));
    let found = until_settled!("FindCoordinator", {
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_static_str("tx-wire"))
            .with_key_type(1);
        let r: FindCoordinatorResponse = c.call(3, &request).await;
        r.error_code
    });
    assert_eq!(found, 0);
    let mut producer: (i64, i16);
    let init = until_settled!("InitProducerId", {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(txn_id()))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let r: InitProducerIdResponse = c.call(4, &request).await;
        producer = (r.producer_id.0, r.producer_epoch);
        r.error_code
    });
    assert_eq!(init, 0);
    let (producer_id, producer_epoch) = producer;
    let added = until_settled!("AddOffsetsToTxn", {
        let request = AddOffsetsToTxnRequest::default()
            .with_transactional_id(txn_id())
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_group_id(GroupId(StrBytes::from_static_str("g-wire")));
        let r: AddOffsetsToTxnResponse = c.call(3, &request).await;
        r.error_code
    });
    assert_eq!(added, 0);
    let committed = until_settled!("TxnOffsetCommit", {
        let request = TxnOffsetCommitRequest::default()
            .with_transactional_id(txn_id())
            .with_group_id(GroupId(StrBytes::from_static_str("g-wire")))
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_generation_id(-1)
            .with_topics(vec![
                txn_offset_commit_request::TxnOffsetCommitRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_static_str("src")))
                    .with_partitions(vec![
                        txn_offset_commit_request::TxnOffsetCommitRequestPartition::default()
                            .with_partition_index(0)
                            .with_committed_offset(7)
                            .with_committed_leader_epoch(-1),
                    ]),
            ]);
        let r: TxnOffsetCommitResponse = c.call(3, &request).await;
        r.topics[0].partitions[0].error_code
    });
    assert_eq!(committed, 0);
    let unstable = kafka_protocol::ResponseError::UnstableOffsetCommit.code();
    assert_eq!(stable_offset(&mut c, true).await, (unstable, -1));
    assert_eq!(stable_offset(&mut c, false).await, (0, -1));
    let ended: EndTxnResponse = c
        .call(
            3,
            &EndTxnRequest::default()
                .with_transactional_id(txn_id())
                .with_producer_id(ProducerId(producer_id))
                .with_producer_epoch(producer_epoch)
                .with_committed(true),
        )
        .await;
    assert_eq!(ended.error_code, 0);
    // The marker follows EndTxn's answer: poll until the offset is stable.
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let seen = stable_offset(&mut c, true).await;
        if seen == (0, 7) {
            break;
        }
        assert!(seen.0 == unstable, "unexpected {seen:?}");
        assert!(Instant::now() < deadline, "still {seen:?} after 20 s");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// Opens a transaction of `txn_id` on `topic`-0 as a v1 transactional client does
/// (FindCoordinator, InitProducerId, AddPartitionsToTxn) and writes `values` in it; returns
/// the producer id (epoch 0) and the offset the transaction starts at.
async fn open_transaction(
    c: &mut Client,
    txn_id: &str,
    topic: &str,
    values: &[&str],
) -> (i64, i64) {
    let id = || TransactionalId(StrBytes::from_string(txn_id.into()));
    let found = until_settled!("FindCoordinator", {
        let request = FindCoordinatorRequest::default()
            .with_key(StrBytes::from_string(txn_id.into()))
            .with_key_type(1);
        let r: FindCoordinatorResponse = c.call(3, &request).await;
        r.error_code
    });
    assert_eq!(found, 0);
    let mut producer_id: i64;
    let init = until_settled!("InitProducerId", {
        let request = InitProducerIdRequest::default()
            .with_transactional_id(Some(id()))
            .with_transaction_timeout_ms(60_000)
            .with_producer_id(ProducerId(-1))
            .with_producer_epoch(-1);
        let r: InitProducerIdResponse = c.call(4, &request).await;
        producer_id = r.producer_id.0;
        assert!(r.error_code != 0 || r.producer_epoch == 0);
        r.error_code
    });
    assert_eq!(init, 0);
    let added = until_settled!("AddPartitionsToTxn", {
        let request = AddPartitionsToTxnRequest::default()
            .with_v3_and_below_transactional_id(id())
            .with_v3_and_below_producer_id(ProducerId(producer_id))
            .with_v3_and_below_producer_epoch(0)
            .with_v3_and_below_topics(vec![
                add_partitions_to_txn_request::AddPartitionsToTxnTopic::default()
                    .with_name(TopicName(StrBytes::from_string(topic.into())))
                    .with_partitions(vec![0]),
            ]);
        let r: AddPartitionsToTxnResponse = c.call(3, &request).await;
        r.results_by_topic_v3_and_below[0].results_by_partition[0].partition_error_code
    });
    assert_eq!(added, 0);
    let r: ProduceResponse = c
        .call(
            9,
            &produce_request(topic, transactional_batch(values, producer_id), -1),
        )
        .await;
    let p = &r.responses[0].partition_responses[0];
    assert_eq!(p.error_code, 0);
    (producer_id, p.base_offset)
}

fn list_transactions(
    states: &[&str],
    producer_ids: &[i64],
    duration_ms: i64,
) -> ListTransactionsRequest {
    ListTransactionsRequest::default()
        .with_state_filters(
            states
                .iter()
                .map(|s| StrBytes::from_string(s.to_string()))
                .collect(),
        )
        .with_producer_id_filters(producer_ids.iter().map(|&p| ProducerId(p)).collect())
        .with_duration_filter(duration_ms)
}

/// The (transactional id, producer id, state) rows of a ListTransactions answer.
fn listed(r: &ListTransactionsResponse) -> Vec<(String, i64, String)> {
    assert_eq!(r.error_code, 0);
    r.transaction_states
        .iter()
        .map(|s| {
            (
                s.transactional_id.0.to_string(),
                s.producer_id.0,
                s.transaction_state.to_string(),
            )
        })
        .collect()
}

/// ListTransactions and DescribeTransactions answer from the coordinator's state as
/// Kafka's do: an open transaction is listed Ongoing with its producer id, filtered by
/// state, producer id, duration and id pattern (unknown state names returned), and described with its
/// epoch, timeout, start time and partitions; unknown and empty ids get Kafka's errors.
#[tokio::test]
async fn open_transactions_are_listed_and_described() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "txl").await;
    let before = oxbow_broker::time::now_ms();
    let (pid, _) = open_transaction(&mut c, "tx-list", "txl", &["open-1"]).await;
    let ongoing = vec![("tx-list".to_string(), pid, "Ongoing".to_string())];
    let r: ListTransactionsResponse = c.call(1, &list_transactions(&[], &[], -1)).await;
    assert_eq!(listed(&r), ongoing);
    let r: ListTransactionsResponse = c
        .call(
            1,
            &list_transactions(&["Ongoing", "Running", "ongoing"], &[], -1),
        )
        .await;
    assert_eq!(listed(&r), ongoing);
    let unknown: Vec<&str> = r.unknown_state_filters.iter().map(|s| s.as_str()).collect();
    assert_eq!(unknown, ["Running", "ongoing"]);
    let r: ListTransactionsResponse = c
        .call(1, &list_transactions(&["CompleteCommit"], &[], -1))
        .await;
    assert_eq!(listed(&r), []);
    let r: ListTransactionsResponse = c.call(0, &list_transactions(&[], &[pid + 1], -1)).await;
    assert_eq!(listed(&r), []);
    let r: ListTransactionsResponse = c.call(0, &list_transactions(&[], &[pid], -1)).await;
    assert_eq!(listed(&r), ongoing);
    // Running for less than a minute: not listed with a one-minute duration filter.
    let r: ListTransactionsResponse = c.call(1, &list_transactions(&[], &[], 60_000)).await;
    assert_eq!(listed(&r), []);
    // v2: the pattern must match the whole id; one that does not compile fails the request.
    let pattern = |p: &str| {
        list_transactions(&[], &[], -1)
            .with_transactional_id_pattern(Some(StrBytes::from_string(p.into())))
    };
    let r: ListTransactionsResponse = c.call(2, &pattern("tx-l.*")).await;
    assert_eq!(listed(&r), ongoing);
    let r: ListTransactionsResponse = c.call(2, &pattern("tx-l")).await;
    assert_eq!(listed(&r), []);
    let r: ListTransactionsResponse = c.call(2, &pattern("(")).await;
    let invalid_regex = kafka_protocol::ResponseError::InvalidRegularExpression.code();
    assert_eq!(
        (r.error_code, r.transaction_states.len()),
        (invalid_regex, 0)
    );

    let id = |s: &str| TransactionalId(StrBytes::from_string(s.into()));
    let r: DescribeTransactionsResponse = c
        .call(
            0,
            &DescribeTransactionsRequest::default().with_transactional_ids(vec![
                id("tx-list"),
                id("tx-unknown"),
                id(""),
            ]),
        )
        .await;
    let d = &r.transaction_states[0];
    assert_eq!(
        (d.error_code, d.transactional_id.0.as_str()),
        (0, "tx-list")
    );
    assert_eq!(d.transaction_state.as_str(), "Ongoing");
    assert_eq!((d.producer_id.0, d.producer_epoch), (pid, 0));
    assert_eq!(d.transaction_timeout_ms, 60_000);
    assert!(
        d.transaction_start_time_ms >= before
            && d.transaction_start_time_ms <= oxbow_broker::time::now_ms()
    );
    let topics: Vec<(String, Vec<i32>)> = d
        .topics
        .iter()
        .map(|t| (t.topic.0.to_string(), t.partitions.clone()))
        .collect();
    assert_eq!(topics, [("txl".to_string(), vec![0])]);
    let not_found = kafka_protocol::ResponseError::TransactionalIdNotFound.code();
    let invalid = kafka_protocol::ResponseError::InvalidRequest.code();
    assert_eq!(r.transaction_states[1].error_code, not_found);
    assert_eq!(r.transaction_states[2].error_code, invalid);
}

fn describe_producers(topics: &[(&str, &[i32])]) -> DescribeProducersRequest {
    DescribeProducersRequest::default().with_topics(
        topics
            .iter()
            .map(|(name, partitions)| {
                describe_producers_request::TopicRequest::default()
                    .with_name(TopicName(StrBytes::from_string(name.to_string())))
                    .with_partition_indexes(partitions.to_vec())
            })
            .collect(),
    )
}

/// (producer id, epoch, last sequence, coordinator epoch, transaction start offset) of
/// each producer of a DescribeProducers partition answer, after asserting it succeeded.
fn producers(p: &describe_producers_response::PartitionResponse) -> Vec<(i64, i32, i32, i32, i64)> {
    assert_eq!(p.error_code, 0, "{:?}", p.error_message);
    p.active_producers
        .iter()
        .map(|s| {
            (
                s.producer_id.0,
                s.producer_epoch,
                s.last_sequence,
                s.coordinator_epoch,
                s.current_txn_start_offset,
            )
        })
        .collect()
}

/// DescribeProducers answers from the partition's producer state as Kafka's does: the
/// transactional producer with its epoch, last sequence, the batch's timestamp and the
/// offset its open transaction starts at; partitions and topics that do not exist, and
/// invalid names, get Kafka's errors.
#[tokio::test]
async fn producers_of_a_partition_are_described() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    create_topic(&mut c, "txp").await;
    let r: ProduceResponse = c
        .call(9, &produce_request("txp", batch(&["plain"]), 1))
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    let (pid, start) = open_transaction(&mut c, "tx-producers", "txp", &["a", "b", "c"]).await;
    assert_eq!(start, 1);
    let r: DescribeProducersResponse = c
        .call(
            0,
            &describe_producers(&[("txp", &[0, 3]), ("txp-none", &[0]), ("bad name", &[0])]),
        )
        .await;
    let txp = &r.topics[0];
    assert_eq!(producers(&txp.partitions[0]), [(pid, 0, 2, -1, 1)]);
    // The last timestamp is the batch's (its last record's).
    assert_eq!(
        txp.partitions[0].active_producers[0].last_timestamp,
        1_700_000_000_002
    );
    let unknown = kafka_protocol::ResponseError::UnknownTopicOrPartition.code();
    let invalid = kafka_protocol::ResponseError::InvalidTopicException.code();
    assert_eq!(
        (
            txp.partitions[1].partition_index,
            txp.partitions[1].error_code
        ),
        (3, unknown)
    );
    assert_eq!(r.topics[1].partitions[0].error_code, unknown);
    assert_eq!(r.topics[2].partitions[0].error_code, invalid);
}

fn write_marker(
    producer_id: i64,
    producer_epoch: i16,
    coordinator_epoch: i32,
    topics: &[(&str, &[i32])],
) -> WriteTxnMarkersRequest {
    WriteTxnMarkersRequest::default().with_markers(vec![
        write_txn_markers_request::WritableTxnMarker::default()
            .with_producer_id(ProducerId(producer_id))
            .with_producer_epoch(producer_epoch)
            .with_transaction_result(false)
            .with_coordinator_epoch(coordinator_epoch)
            .with_topics(
                topics
                    .iter()
                    .map(|(name, partitions)| {
                        write_txn_markers_request::WritableTxnMarkerTopic::default()
                            .with_name(TopicName(StrBytes::from_string(name.to_string())))
                            .with_partition_indexes(partitions.to_vec())
                    })
                    .collect(),
            ),
    ])
}

/// The error codes of a WriteTxnMarkers answer, partition by partition in request order.
fn marker_codes(r: &WriteTxnMarkersResponse) -> Vec<i16> {
    r.markers
        .iter()
        .flat_map(|m| m.topics.iter())
        .flat_map(|t| t.partitions.iter().map(|p| p.error_code))
        .collect()
}

/// WriteTxnMarkers, as `kafka-transactions.sh abort` sends it to a partition's leader,
/// aborts an open transaction there: the last stable offset moves past it, a read_committed
/// fetch skips its records; markers from an older coordinator epoch or producer epoch, and
/// to partitions that do not exist, get Kafka's errors. The four APIs of
/// `kafka-transactions.sh` are advertised.
#[tokio::test]
async fn an_abort_marker_ends_an_open_transaction_on_its_partition() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    let versions: ApiVersionsResponse = c.call(3, &ApiVersionsRequest::default()).await;
    for (key, max) in [(27, 1), (61, 0), (65, 0), (66, 2)] {
        assert!(
            versions
                .api_keys
                .iter()
                .any(|k| k.api_key == key && k.max_version == max),
            "API {key} v{max} is advertised"
        );
    }
    create_topic(&mut c, "txw").await;
    let (pid, start) = open_transaction(&mut c, "tx-markers", "txw", &["open-1", "open-2"]).await;
    assert_eq!(start, 0);
    let r: ProduceResponse = c
        .call(9, &produce_request("txw", batch(&["after"]), 1))
        .await;
    assert_eq!(r.responses[0].partition_responses[0].error_code, 0);
    assert_eq!(
        latest_offset(&mut c, "txw", 1).await,
        0,
        "held at the open transaction"
    );

    let unknown = kafka_protocol::ResponseError::UnknownTopicOrPartition.code();
    let r: WriteTxnMarkersResponse = c
        .call(
            1,
            &write_marker(pid, 0, 3, &[("txw", &[0, 9]), ("txw-none", &[0])]),
        )
        .await;
    assert_eq!(r.markers[0].producer_id.0, pid);
    assert_eq!(marker_codes(&r), [0, unknown, unknown]);
    // The marker is offset 3: the last stable offset is the log end, and read_committed
    // gets the record after the aborted ones only.
    assert_eq!(latest_offset(&mut c, "txw", 1).await, 4);
    let fetched: FetchResponse = c
        .call(12, &fetch_request("txw", 0, 0).with_isolation_level(1))
        .await;
    let p = &fetched.responses[0].partitions[0];
    assert_eq!(p.last_stable_offset, 4);
    assert_eq!(
        values_of(p.records.as_ref().unwrap()),
        ["open-1", "open-2", "after"],
        "the records come back with their aborted transaction ..."
    );
    let aborted: Vec<(i64, i64)> = p
        .aborted_transactions
        .iter()
        .flatten()
        .map(|a| (a.producer_id.0, a.first_offset))
        .collect();
    assert_eq!(aborted, [(pid, 0)], "... for the consumer to drop them");

    let fenced = kafka_protocol::ResponseError::TransactionCoordinatorFenced.code();
    let r: WriteTxnMarkersResponse = c.call(1, &write_marker(pid, 0, 1, &[("txw", &[0])])).await;
    assert_eq!(marker_codes(&r), [fenced]);
    let r: WriteTxnMarkersResponse = c.call(1, &write_marker(pid, 1, 3, &[("txw", &[0])])).await;
    assert_eq!(marker_codes(&r), [0]);
    let stale = kafka_protocol::ResponseError::InvalidProducerEpoch.code();
    let r: WriteTxnMarkersResponse = c.call(1, &write_marker(pid, 0, 3, &[("txw", &[0])])).await;
    assert_eq!(marker_codes(&r), [stale]);
    let r: DescribeProducersResponse = c.call(0, &describe_producers(&[("txw", &[0])])).await;
    let (_, epoch, _, coordinator_epoch, txn_start) = producers(&r.topics[0].partitions[0])[0];
    assert_eq!((epoch, coordinator_epoch, txn_start), (1, 3, -1));
}

/// DescribeQuorum at every version it is served: a v0 or v1 client (the operator's probe and
/// `kafka_probe.py` ask v0) gets an answer, not a closed connection, with the fields its
/// version has (v1: the fetch timestamps; v2: the voters' endpoints).
#[tokio::test]
async fn describe_quorum_answers_every_version() {
    let b = start(&[]).await;
    let mut c = Client::connect(b.addr).await;
    let request = DescribeQuorumRequest::default().with_topics(vec![
        describe_quorum_request::TopicData::default()
            .with_topic_name(TopicName(StrBytes::from_static_str("__cluster_metadata")))
            .with_partitions(vec![
                describe_quorum_request::PartitionData::default().with_partition_index(0)
            ]),
    ]);
    for version in [0, 1, 2] {
        let r: DescribeQuorumResponse = c.call(version, &request).await;
        assert_eq!(r.error_code, 0, "v{version}: {:?}", r.error_message);
        let p = &r.topics[0].partitions[0];
        assert_eq!(p.error_code, 0, "v{version}");
        assert_eq!(p.leader_id.0, 0, "v{version}: the single node leads");
        let voters: Vec<i32> = p.current_voters.iter().map(|v| v.replica_id.0).collect();
        assert_eq!(voters, vec![0], "v{version}");
        assert!(p.current_voters[0].log_end_offset >= 0, "v{version}");
        assert_eq!(
            p.current_voters[0].last_fetch_timestamp == -1,
            version == 0,
            "v{version}: fetch timestamps from v1 only"
        );
        assert_eq!(
            r.nodes.is_empty(),
            version < 2,
            "v{version}: endpoints from v2 only"
        );
    }
}
