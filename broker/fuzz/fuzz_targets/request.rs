//! A whole request through the broker's request handler (`api::handle_request`), as a
//! connection hands it over: the input is a request frame without its length prefix. Its
//! API key and version are mapped onto one the broker serves (a served pair stays as it is,
//! so real client requests in the seed corpus run unchanged), and Produce requests get their
//! batch CRCs recomputed so mutations reach record validation and the log. One broker lives
//! for the whole run; Fetch waits and JoinGroup rebalance timeouts are capped at 10 ms so long
//! polls do not stall the fuzzer (a request still running after 10 s is reported as a hang);
//! topics `fuzz` and `fuzz-compact` exist from the start. Checked: nothing panics, aborts or
//! hangs, and the broker still answers ApiVersions after every input.
#![no_main]

use std::net::SocketAddr;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::messages::create_topics_request::{CreatableTopic, CreatableTopicConfig};
use kafka_protocol::messages::{
    ApiKey, CreateTopicsRequest, FetchRequest, JoinGroupRequest, ProduceRequest, RequestHeader,
    TopicName,
};
use kafka_protocol::protocol::{Decodable, Encodable, StrBytes};
use libfuzzer_sys::fuzz_target;
use oxbow_broker::api::{handle_request, served_apis, Outcome};
use oxbow_broker::broker::Broker;
use oxbow_broker::config::BrokerConfig;
use oxbow_broker::server::ListenerContext;

mod common;
use common::fix_crcs;

/// The listener every fuzzed request arrives on (the broker's only one).
fn listener() -> ListenerContext {
    ListenerContext {
        name: "PLAINTEXT".into(),
        security_protocol: "PLAINTEXT".into(),
    }
}

struct World {
    runtime: tokio::runtime::Runtime,
    broker: Arc<Broker>,
    _dir: tempfile::TempDir,
}

fn world() -> &'static World {
    static WORLD: OnceLock<World> = OnceLock::new();
    WORLD.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let overrides: Vec<(String, String)> = [
            ("listeners", "PLAINTEXT://127.0.0.1:9092".to_string()),
            ("log.dirs", dir.path().join("data").display().to_string()),
            ("offsets.topic.num.partitions", "1".into()),
            ("group.initial.rebalance.delay.ms", "0".into()),
            // Bounded state across millions of inputs.
            ("oxbow.max.partitions", "64".into()),
            ("log.segment.bytes", "1048576".into()),
        ]
        .into_iter()
        .map(|(k, v)| (k.to_string(), v))
        .collect();
        let (config, _) = BrokerConfig::default_single_node(&overrides).unwrap();
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        let broker = Broker::open(config).unwrap();
        runtime.block_on(async {
            for (name, compact) in [("fuzz", false), ("fuzz-compact", true)] {
                let configs = if compact {
                    vec![CreatableTopicConfig::default()
                        .with_name(StrBytes::from_static_str("cleanup.policy"))
                        .with_value(Some(StrBytes::from_static_str("compact")))]
                } else {
                    Vec::new()
                };
                let request =
                    CreateTopicsRequest::default().with_topics(vec![CreatableTopic::default()
                        .with_name(TopicName(StrBytes::from_static_str(name)))
                        .with_num_partitions(2)
                        .with_replication_factor(1)
                        .with_configs(configs)]);
                let mut frame = BytesMut::new();
                RequestHeader::default()
                    .with_request_api_key(ApiKey::CreateTopics as i16)
                    .with_request_api_version(7)
                    .encode(&mut frame, ApiKey::CreateTopics.request_header_version(7))
                    .unwrap();
                request.encode(&mut frame, 7).unwrap();
                let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
                handle_request(&broker, peer, &listener(), frame.freeze())
                    .await
                    .unwrap();
                assert!(broker.image().topic(name).is_some(), "topic {name} created");
            }
        });
        World {
            runtime,
            broker,
            _dir: dir,
        }
    })
}

/// Maps the frame's API key and version onto a served pair.
fn choose_api(frame: &mut [u8]) -> (ApiKey, i16) {
    let key = i16::from_be_bytes([frame[0], frame[1]]);
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let apis = served_apis();
    let (api, min, max) = apis
        .iter()
        .copied()
        .find(|(k, _, _)| *k as i16 == key)
        .unwrap_or(apis[(key as u16 as usize) % apis.len()]);
    let version = if (min..=max).contains(&version) {
        version
    } else {
        min + (version as u16 % (max - min + 1) as u16) as i16
    };
    frame[0..2].copy_from_slice(&(api as i16).to_be_bytes());
    frame[2..4].copy_from_slice(&version.to_be_bytes());
    (api, version)
}

/// Decodes the request, lets `edit` change it and re-encodes it; the frame unchanged if it
/// does not decode (the broker then sees the original bytes).
fn rewrite<R: Decodable + Encodable>(
    frame: Bytes,
    api: ApiKey,
    version: i16,
    edit: impl FnOnce(&mut R),
) -> Bytes {
    let mut body = frame.clone();
    let header_version = api.request_header_version(version);
    let Ok(header) = RequestHeader::decode(&mut body, header_version) else {
        return frame;
    };
    let Ok(mut request) = R::decode(&mut body, version) else {
        return frame;
    };
    edit(&mut request);
    let mut out = BytesMut::new();
    if header.encode(&mut out, header_version).is_err()
        || request.encode(&mut out, version).is_err()
    {
        return frame;
    }
    out.freeze()
}

/// Produce: every batch's CRC recomputed. Fetch and JoinGroup: waits capped at 10 ms.
fn prepare(frame: Bytes, api: ApiKey, version: i16) -> Bytes {
    match api {
        ApiKey::Produce => rewrite(frame, api, version, |r: &mut ProduceRequest| {
            for topic in &mut r.topic_data {
                for partition in &mut topic.partition_data {
                    if let Some(records) = &partition.records {
                        let mut fixed = records.to_vec();
                        fix_crcs(&mut fixed);
                        partition.records = Some(Bytes::from(fixed));
                    }
                }
            }
        }),
        ApiKey::Fetch => rewrite(frame, api, version, |r: &mut FetchRequest| {
            r.max_wait_ms = r.max_wait_ms.clamp(0, 10);
        }),
        ApiKey::JoinGroup => rewrite(frame, api, version, |r: &mut JoinGroupRequest| {
            r.rebalance_timeout_ms = r.rebalance_timeout_ms.clamp(-1, 10);
        }),
        _ => frame,
    }
}

fuzz_target!(|data: &[u8]| {
    if data.len() < 8 {
        return;
    }
    let w = world();
    let mut frame = data.to_vec();
    let (api, version) = choose_api(&mut frame);
    let frame = prepare(Bytes::from(frame), api, version);
    let peer: SocketAddr = "127.0.0.1:40000".parse().unwrap();
    w.runtime.block_on(async {
        let handled = tokio::time::timeout(
            Duration::from_secs(10),
            handle_request(&w.broker, peer, &listener(), frame),
        )
        .await;
        assert!(
            handled.is_ok(),
            "{api:?} v{version} did not finish within 10 s"
        );
        // ApiVersions v0 (header v1, empty body): the broker still answers.
        let probe = Bytes::from_static(&[0, 18, 0, 0, 0, 0, 0, 1, 0, 4, b'f', b'u', b'z', b'z']);
        match handle_request(&w.broker, peer, &listener(), probe).await {
            Ok(Outcome::Respond(_)) => {}
            other => panic!(
                "the broker stopped answering ApiVersions: {:?}",
                other.is_ok()
            ),
        }
    });
});
