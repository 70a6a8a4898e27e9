//! The client against scripted peers that misbehave in ways a real broker does not:
//! an older broker refusing our ApiVersions version (KIP-511), a response out of order, a
//! broker that drops the connection with requests in flight.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use oxbow_client::frame;
use oxbow_client::kafka_protocol::messages::api_versions_response::ApiVersion;
use oxbow_client::kafka_protocol::messages::*;
use oxbow_client::kafka_protocol::protocol::{Decodable, Encodable, HeaderVersion, Message};
use oxbow_client::{Connection, ConnectionConfig, Error};
use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};

/// A peer accepting one connection and running `script` on it.
async fn peer<F, Fut>(script: F) -> String
where
    F: FnOnce(TcpStream) -> Fut + Send + 'static,
    Fut: std::future::Future<Output = ()> + Send,
{
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        if let Ok((stream, _)) = listener.accept().await {
            script(stream).await;
        }
    });
    addr
}

/// The next request's header and body.
async fn read_request(stream: &mut TcpStream) -> Option<(RequestHeader, Bytes)> {
    let mut frame = frame::read_frame(stream, 1 << 20).await.ok()??;
    let key = ApiKey::try_from(i16::from_be_bytes([frame[0], frame[1]])).ok()?;
    let version = i16::from_be_bytes([frame[2], frame[3]]);
    let header = RequestHeader::decode(&mut frame, key.request_header_version(version)).ok()?;
    Some((header, frame))
}

async fn respond<R: Encodable + HeaderVersion>(
    stream: &mut TcpStream,
    correlation_id: i32,
    version: i16,
    response: &R,
) {
    let mut body = BytesMut::new();
    ResponseHeader::default()
        .with_correlation_id(correlation_id)
        .encode(&mut body, R::header_version(version))
        .unwrap();
    response.encode(&mut body, version).unwrap();
    let mut out = BytesMut::new();
    out.extend_from_slice(&(body.len() as i32).to_be_bytes());
    out.extend_from_slice(&body);
    stream.write_all(&out).await.unwrap();
}

fn versions(ranges: &[(ApiKey, i16, i16)]) -> ApiVersionsResponse {
    ApiVersionsResponse::default().with_api_keys(
        ranges
            .iter()
            .map(|(k, min, max)| {
                ApiVersion::default()
                    .with_api_key(*k as i16)
                    .with_min_version(*min)
                    .with_max_version(*max)
            })
            .collect(),
    )
}

/// Answers the handshake (whatever ApiVersions version it comes at) with these ranges.
async fn handshake(stream: &mut TcpStream, ranges: &[(ApiKey, i16, i16)]) {
    let (header, _) = read_request(stream).await.unwrap();
    assert_eq!(header.request_api_key, ApiKey::ApiVersions as i16);
    respond(
        stream,
        header.correlation_id,
        header.request_api_version,
        &versions(ranges),
    )
    .await;
}

fn quick() -> ConnectionConfig {
    ConnectionConfig {
        request_timeout: Duration::from_secs(5),
        ..ConnectionConfig::default()
    }
}

/// A broker that serves ApiVersions only up to v2 answers our newer request with
/// UNSUPPORTED_VERSION in a v0 body listing its range; the client retries at v2 and then
/// negotiates every API within the broker's ranges.
#[tokio::test]
async fn older_broker_gets_the_api_versions_version_it_serves() {
    let (seen_tx, seen_rx) = tokio::sync::oneshot::channel();
    let addr = peer(|mut s| async move {
        let (first, _) = read_request(&mut s).await.unwrap();
        let refusal = versions(&[(ApiKey::ApiVersions, 0, 2)]).with_error_code(35);
        respond(&mut s, first.correlation_id, 0, &refusal).await;
        let (second, mut body) = read_request(&mut s).await.unwrap();
        let request = ApiVersionsRequest::decode(&mut body, second.request_api_version).unwrap();
        let _ = seen_tx.send((
            first.request_api_version,
            second.request_api_version,
            request,
        ));
        let ranges = [(ApiKey::ApiVersions, 0, 2), (ApiKey::Metadata, 0, 7)];
        respond(&mut s, second.correlation_id, 2, &versions(&ranges)).await;
        // Keep the connection open until the client is done.
        let _ = read_request(&mut s).await;
    })
    .await;
    let c = Connection::connect(&addr, quick()).await.unwrap();
    let (first, second, request) = seen_rx.await.unwrap();
    assert_eq!(first, ApiVersionsRequest::VERSIONS.max);
    assert_eq!(second, 2);
    // Below v3 the request has no software name fields: they are not sent.
    assert!(request.client_software_name.is_empty());
    assert_eq!(c.broker_versions(ApiKey::Metadata), Some((0, 7)));
    assert_eq!(c.negotiate::<MetadataRequest>(None).unwrap(), 7);
    assert!(matches!(
        c.negotiate::<FetchRequest>(None),
        Err(Error::UnsupportedVersion { broker: None, .. })
    ));
}

/// A response whose correlation id is not the oldest request's is a protocol violation:
/// that request fails with a protocol error and the connection is closed.
#[tokio::test]
async fn out_of_order_correlation_id_closes_the_connection() {
    let addr = peer(|mut s| async move {
        handshake(
            &mut s,
            &[(ApiKey::ApiVersions, 0, 4), (ApiKey::Metadata, 0, 12)],
        )
        .await;
        let (header, _) = read_request(&mut s).await.unwrap();
        let wrong = header.correlation_id + 7;
        respond(
            &mut s,
            wrong,
            header.request_api_version,
            &MetadataResponse::default(),
        )
        .await;
        let _ = read_request(&mut s).await;
    })
    .await;
    let c = Connection::connect(&addr, quick()).await.unwrap();
    let err = c.send(&MetadataRequest::default(), None).await.unwrap_err();
    match &err {
        Error::Protocol { api, message, .. } => {
            assert_eq!(*api, Some(ApiKey::Metadata));
            assert!(message.contains("correlation id"), "{message}");
        }
        other => panic!("expected a protocol error, got {other}"),
    }
    assert!(c.is_closed());
}

/// A broker that closes the connection with requests in flight fails every one of them
/// with Disconnected, at once (not at their timeouts).
#[tokio::test]
async fn broker_closing_fails_every_request_in_flight() {
    let addr = peer(|mut s| async move {
        handshake(
            &mut s,
            &[(ApiKey::ApiVersions, 0, 4), (ApiKey::Metadata, 0, 12)],
        )
        .await;
        // Take three requests, answer none, hang up.
        for _ in 0..3 {
            read_request(&mut s).await.unwrap();
        }
    })
    .await;
    let c = std::sync::Arc::new(
        Connection::connect(
            &addr,
            ConnectionConfig {
                request_timeout: Duration::from_secs(60),
                ..ConnectionConfig::default()
            },
        )
        .await
        .unwrap(),
    );
    let started = std::time::Instant::now();
    let tasks: Vec<_> = (0..3)
        .map(|_| {
            let c = c.clone();
            tokio::spawn(async move { c.send(&MetadataRequest::default(), None).await })
        })
        .collect();
    for task in tasks {
        let err = task.await.unwrap().unwrap_err();
        assert!(
            matches!(
                err,
                Error::Disconnected {
                    api: Some(ApiKey::Metadata),
                    ..
                }
            ),
            "{err}"
        );
        assert!(err.to_string().contains(&addr), "{err}");
    }
    assert!(started.elapsed() < Duration::from_secs(30));
    assert!(c.is_closed());
}
