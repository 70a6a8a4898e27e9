//! One connection to one broker: the ApiVersions handshake, version negotiation, pipelined
//! requests with their correlation ids, bounded responses and per-request timeouts.
//!
//! A writer task owns the socket's write half and a reader task its read half. `send`
//! registers the request in the in-flight queue and hands its frame to the writer under one
//! lock, so the queue's order is the wire's order; Kafka answers in request order per
//! connection, so the reader gives each response to the queue's head. A caller that gives up
//! (its future dropped) never leaves half a frame on the wire, because the writer task, not
//! the caller, writes.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse};
use kafka_protocol::protocol::{Message, Request, StrBytes};
use kafka_protocol::ResponseError;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot, OwnedSemaphorePermit, Semaphore};
use tokio::task::JoinHandle;
use tracing::{debug, warn};

use crate::error::{Error, Result};
use crate::frame::{self, FrameError};

/// The largest response accepted by default: Kafka's `socket.request.max.bytes` (100 MiB),
/// which bounds what a broker accepts, plus 1 MiB for headers around the largest batches a
/// fetch can carry (`fetch.max.bytes` is 50 MiB, `replica.fetch.response.max.bytes` 10 MiB).
pub const DEFAULT_MAX_RESPONSE_BYTES: usize = 100 * 1024 * 1024 + 1024 * 1024;

/// Settings of a connection, with Kafka's client defaults.
#[derive(Debug, Clone)]
pub struct ConnectionConfig {
    /// `client.id`, sent in every request header (brokers log it and quotas key on it).
    pub client_id: Option<String>,
    /// `request.timeout.ms` (Kafka's default 30 s): how long a request waits for its
    /// response before it fails with [`Error::Timeout`] and the connection is closed.
    pub request_timeout: Duration,
    /// `socket.connection.setup.timeout.ms` (Kafka's default 10 s): TCP connect plus the
    /// ApiVersions handshake.
    pub connect_timeout: Duration,
    /// The largest response accepted; a larger size prefix fails the request with
    /// [`Error::ResponseTooLarge`] and closes the connection without reading the body.
    pub max_response_bytes: usize,
    /// `max.in.flight.requests.per.connection` (Kafka's default 5): further requests wait
    /// for a response before they are sent.
    pub max_in_flight: usize,
}

impl Default for ConnectionConfig {
    fn default() -> Self {
        ConnectionConfig {
            client_id: Some("oxbow-client".to_string()),
            request_timeout: Duration::from_millis(30_000),
            connect_timeout: Duration::from_millis(10_000),
            max_response_bytes: DEFAULT_MAX_RESPONSE_BYTES,
            max_in_flight: 5,
        }
    }
}

/// A request sent and waiting for its response.
struct InFlight {
    correlation_id: i32,
    api: ApiKey,
    reply: oneshot::Sender<Result<Bytes>>,
}

/// What `send`, the reader and the writer share.
struct State {
    next_correlation_id: i32,
    in_flight: VecDeque<InFlight>,
    /// Frames for the writer task; `None` once the connection is closed.
    outgoing: Option<mpsc::UnboundedSender<Bytes>>,
    /// Why the connection closed, once it has.
    closed: Option<String>,
}

struct Shared {
    peer: String,
    state: Mutex<State>,
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Closes the connection: the head of the in-flight queue (the request the failure is
    /// about) gets `head_error`, every other request [`Error::Disconnected`] with `reason`.
    /// Later calls keep the first reason.
    fn close(&self, reason: &str, head_error: Option<Error>) {
        let (head, rest) = {
            let mut state = self.lock();
            if state.closed.is_none() {
                state.closed = Some(reason.to_string());
            }
            state.outgoing = None;
            let mut queue = std::mem::take(&mut state.in_flight);
            let head = if head_error.is_some() {
                queue.pop_front()
            } else {
                None
            };
            (head, queue)
        };
        if let (Some(head), Some(error)) = (head, head_error) {
            let _ = head.reply.send(Err(error));
        }
        for request in rest {
            let _ = request.reply.send(Err(Error::Disconnected {
                peer: self.peer.clone(),
                api: Some(request.api),
                reason: reason.to_string(),
            }));
        }
    }
}

/// An open connection to one broker, after the ApiVersions handshake.
///
/// Requests may be sent concurrently from several tasks (`&self`); up to
/// [`ConnectionConfig::max_in_flight`] are on the wire at once and responses are matched in
/// order. After a timeout, an I/O failure, an oversized response or a protocol violation
/// the connection is closed for good: every later request fails with
/// [`Error::Disconnected`] and the owner opens a new one ([`crate::Client`] does so).
pub struct Connection {
    shared: Arc<Shared>,
    config: ConnectionConfig,
    /// The broker's ranges from ApiVersions: key -> (min, max).
    versions: HashMap<i16, (i16, i16)>,
    permits: Arc<Semaphore>,
    reader: JoinHandle<()>,
    writer: JoinHandle<()>,
}

impl Drop for Connection {
    fn drop(&mut self) {
        self.reader.abort();
        self.writer.abort();
    }
}

impl std::fmt::Debug for Connection {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Connection")
            .field("peer", &self.shared.peer)
            .field("closed", &self.closed_reason())
            .finish()
    }
}

impl Connection {
    /// Connects to `addr` (`host:port`) and runs the ApiVersions handshake, remembering the
    /// broker's version ranges. Fails with [`Error::Timeout`] if both together take longer
    /// than [`ConnectionConfig::connect_timeout`], with [`Error::Io`] if the connection is
    /// refused, or with the handshake's error.
    pub async fn connect(addr: &str, config: ConnectionConfig) -> Result<Connection> {
        let timeout = config.connect_timeout;
        match tokio::time::timeout(timeout, Self::connect_inner(addr, config)).await {
            Ok(result) => result,
            Err(_) => Err(Error::Timeout {
                peer: addr.to_string(),
                api: None,
                timeout,
            }),
        }
    }

    async fn connect_inner(addr: &str, config: ConnectionConfig) -> Result<Connection> {
        let io_error = |source| Error::Io {
            peer: addr.to_string(),
            api: None,
            source,
        };
        let stream = TcpStream::connect(addr).await.map_err(io_error)?;
        // Requests are whole frames written at once; Nagle would only delay them.
        stream.set_nodelay(true).map_err(io_error)?;
        let (read, write) = stream.into_split();
        let (outgoing, frames) = mpsc::unbounded_channel();
        let shared = Arc::new(Shared {
            peer: addr.to_string(),
            state: Mutex::new(State {
                next_correlation_id: 0,
                in_flight: VecDeque::new(),
                outgoing: Some(outgoing),
                closed: None,
            }),
        });
        let reader = tokio::spawn(read_responses(
            shared.clone(),
            read,
            config.max_response_bytes,
        ));
        let writer = tokio::spawn(write_requests(shared.clone(), write, frames));
        let mut connection = Connection {
            shared,
            permits: Arc::new(Semaphore::new(config.max_in_flight.max(1))),
            config,
            versions: HashMap::new(),
            reader,
            writer,
        };
        connection.versions = connection.handshake().await?;
        debug!(peer = %addr, apis = connection.versions.len(), "connected");
        Ok(connection)
    }

    /// ApiVersions at the highest version this codec knows. A broker that does not serve it
    /// answers UNSUPPORTED_VERSION in a v0 body listing its own ApiVersions range (KIP-511);
    /// the handshake then retries once at the highest version both serve.
    async fn handshake(&self) -> Result<HashMap<i16, (i16, i16)>> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("oxbow-client"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let mut version = ApiVersionsRequest::VERSIONS.max;
        for _ in 0..2 {
            let frame = self
                .round_trip(&request, version, self.config.request_timeout)
                .await?;
            let response = match frame::decode_response::<ApiVersionsResponse>(
                frame.clone(),
                version,
            ) {
                Ok((_, r)) if r.error_code != ResponseError::UnsupportedVersion.code() => {
                    if r.error_code != 0 {
                        return Err(self.protocol_error(
                            ApiKey::ApiVersions,
                            format!("ApiVersions failed with error code {}", r.error_code),
                        ));
                    }
                    r
                }
                // UNSUPPORTED_VERSION, or a body that only decodes as v0.
                first => {
                    let (_, v0) =
                        frame::decode_response::<ApiVersionsResponse>(frame, 0).map_err(|e| {
                            let why = first.err().unwrap_or(e);
                            self.protocol_error(ApiKey::ApiVersions, why)
                        })?;
                    let theirs = v0
                        .api_keys
                        .iter()
                        .find(|k| k.api_key == ApiKey::ApiVersions as i16)
                        .map(|k| k.max_version)
                        .unwrap_or(0);
                    let next = theirs.min(ApiVersionsRequest::VERSIONS.max);
                    if next >= version {
                        return Err(self.protocol_error(
                            ApiKey::ApiVersions,
                            format!("ApiVersions v{version} refused, but the broker lists up to v{theirs}"),
                        ));
                    }
                    version = next;
                    continue;
                }
            };
            return Ok(response
                .api_keys
                .iter()
                .map(|k| (k.api_key, (k.min_version, k.max_version)))
                .collect());
        }
        Err(self.protocol_error(
            ApiKey::ApiVersions,
            "no ApiVersions version both sides serve".to_string(),
        ))
    }

    /// The broker's address as it was given to [`Connection::connect`].
    pub fn peer(&self) -> &str {
        &self.shared.peer
    }

    /// The version range the broker advertised for `api` in ApiVersions, `None` if it does
    /// not serve it.
    pub fn broker_versions(&self, api: ApiKey) -> Option<(i16, i16)> {
        self.versions.get(&(api as i16)).copied()
    }

    /// Why the connection is closed, `None` while it is usable.
    pub fn closed_reason(&self) -> Option<String> {
        self.shared.lock().closed.clone()
    }

    /// Whether the connection is closed (see [`Connection::closed_reason`]).
    pub fn is_closed(&self) -> bool {
        self.closed_reason().is_some()
    }

    /// The version a request of type `Req` is sent at: `requested` if both the broker and
    /// this codec serve it, otherwise the highest both serve; [`Error::UnsupportedVersion`]
    /// if there is none (or `requested` is outside either range).
    pub fn negotiate<Req: Request>(&self, requested: Option<i16>) -> Result<i16> {
        let api = api_key::<Req>(self.peer())?;
        let client = (Req::VERSIONS.min, Req::VERSIONS.max);
        let broker = self.broker_versions(api);
        let unsupported = || Error::UnsupportedVersion {
            peer: self.peer().to_string(),
            api,
            broker,
            client,
            requested,
        };
        let (broker_min, broker_max) = broker.ok_or_else(unsupported)?;
        let (min, max) = (broker_min.max(client.0), broker_max.min(client.1));
        match requested {
            Some(v) if v >= min && v <= max => Ok(v),
            Some(_) => Err(unsupported()),
            None if min <= max => Ok(max),
            None => Err(unsupported()),
        }
    }

    /// Sends `request` at the negotiated version (see [`Connection::negotiate`]) and returns
    /// the decoded response, waiting at most [`ConnectionConfig::request_timeout`]. Kafka
    /// error codes are in the response; `Err` means no usable response (see [`Error`]).
    /// Not for Produce with acks=0, which has no response: use
    /// [`Connection::send_without_response`].
    ///
    /// The version is the broker's to decide, so fill in what every version in range needs:
    /// e.g. both topic name and topic id in Produce and Fetch (Kafka 4.1 negotiates Produce
    /// v13 and Fetch v13+, which carry only the id; older versions only the name).
    pub async fn send<Req: Request>(
        &self,
        request: &Req,
        version: Option<i16>,
    ) -> Result<Req::Response> {
        self.send_with_timeout(request, version, self.config.request_timeout)
            .await
    }

    /// [`Connection::send`] with another timeout for this request, e.g. a long-poll Fetch
    /// whose `max_wait_ms` approaches the request timeout.
    pub async fn send_with_timeout<Req: Request>(
        &self,
        request: &Req,
        version: Option<i16>,
        timeout: Duration,
    ) -> Result<Req::Response> {
        let version = self.negotiate::<Req>(version)?;
        let api = api_key::<Req>(self.peer())?;
        let frame = self.round_trip(request, version, timeout).await?;
        frame::decode_response::<Req::Response>(frame, version)
            .map(|(_, response)| response)
            .map_err(|message| self.protocol_error(api, message))
    }

    /// Sends a request that gets no response (Produce with acks=0) at the negotiated
    /// version. Returns once the frame is queued for the socket; a failure to write closes
    /// the connection and shows in the next request.
    pub async fn send_without_response<Req: Request>(
        &self,
        request: &Req,
        version: Option<i16>,
    ) -> Result<()> {
        let version = self.negotiate::<Req>(version)?;
        let api = api_key::<Req>(self.peer())?;
        let _permit = self.permit(api).await?;
        let mut state = self.shared.lock();
        let correlation_id = next_correlation_id(&mut state);
        let frame = self.encode(request, version, correlation_id)?;
        self.queue_frame(&state, api, frame)
    }

    /// Sends `request` at `version` and waits for its response frame (after the size
    /// prefix, header still in it). On timeout the connection is closed: the response, if
    /// it ever comes, would be taken for the next request's.
    async fn round_trip<Req: Request>(
        &self,
        request: &Req,
        version: i16,
        timeout: Duration,
    ) -> Result<Bytes> {
        let api = api_key::<Req>(self.peer())?;
        let _permit = self.permit(api).await?;
        let response = {
            let mut state = self.shared.lock();
            let correlation_id = next_correlation_id(&mut state);
            let frame = self.encode(request, version, correlation_id)?;
            self.queue_frame(&state, api, frame)?;
            let (reply, response) = oneshot::channel();
            state.in_flight.push_back(InFlight {
                correlation_id,
                api,
                reply,
            });
            response
        };
        match tokio::time::timeout(timeout, response).await {
            Ok(Ok(result)) => result,
            Ok(Err(_)) => Err(self.disconnected(api)),
            Err(_) => {
                let reason = format!("{api:?} timed out after {} ms", timeout.as_millis());
                warn!(peer = %self.peer(), "{reason}; closing the connection");
                self.shared.close(&reason, None);
                Err(Error::Timeout {
                    peer: self.peer().to_string(),
                    api: Some(api),
                    timeout,
                })
            }
        }
    }

    async fn permit(&self, api: ApiKey) -> Result<OwnedSemaphorePermit> {
        self.permits
            .clone()
            .acquire_owned()
            .await
            .map_err(|_| self.disconnected(api))
    }

    fn encode<Req: Request>(
        &self,
        request: &Req,
        version: i16,
        correlation_id: i32,
    ) -> Result<Bytes> {
        frame::encode_request(
            request,
            version,
            correlation_id,
            self.config.client_id.as_deref(),
        )
        .map_err(|message| {
            let api = ApiKey::try_from(Req::KEY).ok();
            Error::Protocol {
                peer: self.peer().to_string(),
                api,
                message: format!("cannot encode the v{version} request: {message}"),
            }
        })
    }

    /// Hands a frame to the writer task, under the state lock so the wire order is the
    /// in-flight queue's order.
    fn queue_frame(&self, state: &State, api: ApiKey, frame: Bytes) -> Result<()> {
        match &state.outgoing {
            Some(outgoing) if outgoing.send(frame).is_ok() => Ok(()),
            _ => Err(Error::Disconnected {
                peer: self.peer().to_string(),
                api: Some(api),
                reason: state
                    .closed
                    .clone()
                    .unwrap_or_else(|| "the writer stopped".to_string()),
            }),
        }
    }

    fn disconnected(&self, api: ApiKey) -> Error {
        Error::Disconnected {
            peer: self.peer().to_string(),
            api: Some(api),
            reason: self.closed_reason().unwrap_or_else(|| "closed".to_string()),
        }
    }

    fn protocol_error(&self, api: ApiKey, message: String) -> Error {
        Error::Protocol {
            peer: self.peer().to_string(),
            api: Some(api),
            message,
        }
    }
}

fn next_correlation_id(state: &mut State) -> i32 {
    let id = state.next_correlation_id;
    // Wrapping is fine: matching is by queue order, the id only double-checks it.
    state.next_correlation_id = id.wrapping_add(1);
    id
}

fn api_key<Req: Request>(peer: &str) -> Result<ApiKey> {
    ApiKey::try_from(Req::KEY).map_err(|_| Error::Protocol {
        peer: peer.to_string(),
        api: None,
        message: format!("unknown API key {}", Req::KEY),
    })
}

/// The writer task: writes queued frames in order until the queue closes or a write fails.
async fn write_requests(
    shared: Arc<Shared>,
    mut write: OwnedWriteHalf,
    mut frames: mpsc::UnboundedReceiver<Bytes>,
) {
    while let Some(frame) = frames.recv().await {
        if let Err(e) = write.write_all(&frame).await {
            let reason = format!("write failed: {e}");
            let head_error = Error::Io {
                peer: shared.peer.clone(),
                api: None,
                source: e,
            };
            shared.close(&reason, Some(head_error));
            return;
        }
    }
    let _ = write.shutdown().await;
}

/// The reader task: hands each response to the oldest request in flight, until the stream
/// ends or breaks the protocol; then closes the connection, failing what is in flight.
async fn read_responses(shared: Arc<Shared>, mut read: OwnedReadHalf, max: usize) {
    loop {
        let result = frame::read_frame(&mut read, max).await;
        let head_api = shared.lock().in_flight.front().map(|r| r.api);
        let frame = match result {
            Ok(Some(frame)) => frame,
            Ok(None) => {
                shared.close("closed by the broker", None);
                return;
            }
            Err(FrameError::TooLarge { size, max }) => {
                let error = match head_api {
                    Some(api) => Error::ResponseTooLarge {
                        peer: shared.peer.clone(),
                        api,
                        size,
                        max,
                    },
                    None => Error::Protocol {
                        peer: shared.peer.clone(),
                        api: None,
                        message: format!("unsolicited frame of {size} bytes"),
                    },
                };
                warn!(peer = %shared.peer, size, max, "response exceeds the limit; closing the connection");
                shared.close(&error.to_string(), Some(error));
                return;
            }
            Err(FrameError::Io(e)) => {
                let reason = format!("read failed: {e}");
                let error = Error::Io {
                    peer: shared.peer.clone(),
                    api: head_api,
                    source: e,
                };
                shared.close(&reason, Some(error));
                return;
            }
        };
        let head = {
            let mut state = shared.lock();
            let matches = state
                .in_flight
                .front()
                .is_some_and(|r| Some(r.correlation_id) == frame::correlation_id(&frame));
            if matches {
                state.in_flight.pop_front()
            } else {
                None
            }
        };
        match head {
            Some(request) => {
                // The caller may have given up; that is its business.
                let _ = request.reply.send(Ok(frame));
            }
            None => {
                let message = format!(
                    "response with correlation id {:?} does not match the oldest request in flight",
                    frame::correlation_id(&frame)
                );
                let error = Error::Protocol {
                    peer: shared.peer.clone(),
                    api: head_api,
                    message: message.clone(),
                };
                shared.close(&message, Some(error));
                return;
            }
        }
    }
}
