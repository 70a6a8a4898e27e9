//! The control channel between voters, on the CONTROLLER listener (cluster.md, "Control
//! channel"): Oxbow's own protocol, not Kafka's.
//!
//! A frame is a 4-byte big-endian length and a JSON body of at most [`MAX_FRAME_BYTES`]
//! (metadata traffic is small and JSON keeps it readable with a packet capture). A client
//! sends a [`ControlRequest`] and reads one [`ControlResponse`] before sending the next; a
//! server answers each request on the connection it came on. A frame that is too large or
//! not a valid request closes that connection only.
//!
//! The client side ([`ControlClient`]) connects lazily, reconnects after any failure and
//! bounds every request by a timeout. Openraft opens one client per replication stream
//! ([`ControlNetworkFactory`]), so a slow snapshot transfer to one voter does not hold up
//! heartbeats to another.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use openraft::error::{
    InstallSnapshotError, NetworkError, RPCError, RaftError, RemoteError, Unreachable,
};
use openraft::network::{RPCOption, RaftNetwork, RaftNetworkFactory};
use openraft::raft::{
    AppendEntriesRequest, AppendEntriesResponse, InstallSnapshotRequest, InstallSnapshotResponse,
    VoteRequest, VoteResponse,
};
use openraft::{BasicNode, Raft, ServerState};
use serde::{Deserialize, Serialize};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tracing::debug;

use super::TypeConfig;
use crate::metadata::BoxFuture;

/// Largest frame either side accepts (a snapshot chunk is far smaller).
pub const MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

/// A Raft message between voters.
#[derive(Debug, Serialize, Deserialize)]
pub enum RaftRequest {
    /// RequestVote.
    Vote(VoteRequest<u64>),
    /// AppendEntries (also the leader's heartbeat).
    AppendEntries(AppendEntriesRequest<TypeConfig>),
    /// One chunk of a snapshot for a voter that is behind the leader's purged log.
    InstallSnapshot(InstallSnapshotRequest<TypeConfig>),
}

/// A request on the control channel.
#[derive(Debug, Serialize, Deserialize)]
pub enum ControlRequest {
    /// Raft traffic between voters.
    Raft(RaftRequest),
    /// A request for the active controller (broker registration, heartbeats, admin
    /// mutations); opaque here, answered by the handler the broker installs.
    Controller(serde_json::Value),
    /// "Are you there, and has your quorum state been initialized?", asked by the voter that
    /// bootstraps a new quorum before it writes the first membership.
    Hello,
    /// An observer (a broker-only node) fetching committed metadata (see
    /// [`super::observer`]).
    FetchMetadata(FetchMetadataRequest),
    /// "Do you lead, with a majority heard within the fetch timeout?", asked by a voter that
    /// restarted and has not heard from the leader it remembers yet (see [`super::rejoin`]).
    LeaderCheck,
    /// "Add me as a non-voter", from a controller that joins through
    /// `controller.quorum.bootstrap.servers` (KIP-853; see [`super::join_quorum`]): the
    /// leader adds it as an openraft learner reached at `addr`.
    Join {
        /// The joining node's id.
        node_id: i32,
        /// Its control listener's address.
        addr: String,
    },
}

/// An observer's fetch of the committed metadata log, Kafka's Fetch of `__cluster_metadata`
/// by a replica that does not vote.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchMetadataRequest {
    /// The observer's node id (DescribeQuorum lists it among the observers).
    pub replica_id: i32,
    /// The next log index it needs: its last applied index + 1, 0 when it has nothing.
    pub fetch_offset: u64,
    /// How long the leader may hold the request when nothing new is committed.
    pub max_wait_ms: u64,
}

/// What a fetch of the metadata log brings back.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub enum FetchedMetadata {
    /// The answering voter is not the leader: fetch from `leader_id` instead.
    NotLeader,
    /// Committed entries from the fetch offset on, in order (none when nothing new was
    /// committed within the wait).
    Entries(Vec<openraft::Entry<TypeConfig>>),
    /// The fetch offset is below the leader's purged log: its latest snapshot, from which the
    /// observer continues after `meta.last_log_id`.
    Snapshot {
        /// The snapshot's meta data.
        meta: openraft::SnapshotMeta<u64, BasicNode>,
        /// The snapshot file as the leader stores it (JSON).
        data: String,
    },
}

/// The answer to a [`FetchMetadataRequest`].
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct FetchMetadataResponse {
    /// The leader as the answering voter knows it.
    pub leader_id: Option<i32>,
    /// Every voter's id and control address, so an observer that knows the controllers by
    /// `controller.quorum.bootstrap.servers` alone learns their ids.
    pub voters: Vec<(i32, String)>,
    /// The leader's view of the quorum for DescribeQuorum (with `Entries` and `Snapshot`).
    pub quorum: Option<crate::metadata::QuorumInfo>,
    /// The records, or a redirect.
    pub records: FetchedMetadata,
}

/// What a voter installs to answer [`ControlRequest::FetchMetadata`].
pub type FetchHandler =
    Arc<dyn Fn(FetchMetadataRequest) -> BoxFuture<'static, FetchMetadataResponse> + Send + Sync>;

/// The answer to a [`ControlRequest`], variant by variant.
#[derive(Debug, Serialize, Deserialize)]
pub enum ControlResponse {
    /// Answer to [`RaftRequest::Vote`].
    Vote(Result<VoteResponse<u64>, RaftError<u64>>),
    /// Answer to [`RaftRequest::AppendEntries`].
    AppendEntries(Result<AppendEntriesResponse<u64>, RaftError<u64>>),
    /// Answer to [`RaftRequest::InstallSnapshot`].
    InstallSnapshot(Result<InstallSnapshotResponse<u64>, RaftError<u64, InstallSnapshotError>>),
    /// Answer to [`ControlRequest::Controller`]: the handler's reply or its error message.
    Controller(Result<serde_json::Value, String>),
    /// Answer to [`ControlRequest::FetchMetadata`].
    FetchMetadata(Box<FetchMetadataResponse>),
    /// Answer to [`ControlRequest::FetchMetadata`] by a node that serves no observers.
    NotServed(String),
    /// Answer to [`ControlRequest::Hello`].
    Hello {
        /// The answering node's id.
        node_id: i32,
        /// Whether it has a vote, a log or a snapshot (it is or was part of a quorum).
        initialized: bool,
    },
    /// Answer to [`ControlRequest::Join`].
    Joined {
        /// The leader as the answering node knows it: id and control address.
        leader: Option<(i32, String)>,
        /// The joining node is in the membership now (it was added, or was already).
        added: bool,
        /// Why the leader could not add it (a membership change under way: try again).
        error: Option<String>,
    },
    /// Answer to [`ControlRequest::LeaderCheck`].
    LeaderCheck {
        /// The Raft term the answering node leads, when it is the leader and has heard from
        /// a majority within the fetch timeout; `None` otherwise.
        leading_term: Option<u64>,
    },
}

/// What a voter's control server knows of its own node, beside Raft.
#[derive(Clone)]
pub struct LocalControl {
    /// This node's id.
    pub node_id: i32,
    /// Whether this node has a vote, a log or a snapshot (answered to `Hello`).
    pub initialized: Arc<dyn Fn() -> bool + Send + Sync>,
    /// `controller.quorum.fetch.timeout.ms`: a leader that has not heard from a majority
    /// for longer does not answer `LeaderCheck` as the leader.
    pub fetch_timeout: Duration,
    /// Set once a leader's AppendEntries or InstallSnapshot reached this node.
    pub leader_reached: Arc<AtomicBool>,
}

impl LocalControl {
    /// The answer to [`ControlRequest::LeaderCheck`], from this node's Raft metrics.
    fn leader_check(&self, raft: &Raft<TypeConfig>) -> ControlResponse {
        let m = raft.metrics();
        let m = m.borrow();
        let majority_heard = m
            .millis_since_quorum_ack
            .is_some_and(|ms| u128::from(ms) <= self.fetch_timeout.as_millis());
        let leading = m.state == ServerState::Leader && majority_heard;
        ControlResponse::LeaderCheck {
            leading_term: leading.then_some(m.vote.leader_id().term),
        }
    }
}

/// What the broker installs to answer [`ControlRequest::Controller`]: given the request's
/// JSON, the reply's JSON or an error message for the caller.
pub type ControllerHandler = Arc<
    dyn Fn(serde_json::Value) -> BoxFuture<'static, Result<serde_json::Value, String>>
        + Send
        + Sync,
>;

/// Why a control request got no answer.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    /// No connection could be made (the peer is down or unreachable).
    #[error("cannot connect to {addr}: {source}")]
    Connect {
        /// The peer's address.
        addr: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// The connection failed or the peer sent something that is not a response.
    #[error("control channel to {addr} failed: {source}")]
    Io {
        /// The peer's address.
        addr: String,
        /// The underlying error.
        source: std::io::Error,
    },
    /// No answer within the request timeout.
    #[error("no answer from {addr} within {timeout:?}")]
    Timeout {
        /// The peer's address.
        addr: String,
        /// The timeout that passed.
        timeout: Duration,
    },
}

/// Reads one frame; `Ok(None)` at a clean end of stream before a frame starts.
pub async fn read_frame<R: AsyncReadExt + Unpin>(
    reader: &mut R,
) -> std::io::Result<Option<Vec<u8>>> {
    let mut header = [0u8; 4];
    match reader.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e),
    }
    let len = u32::from_be_bytes(header) as usize;
    if len > MAX_FRAME_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidData,
            format!("control frame of {len} bytes exceeds the limit of {MAX_FRAME_BYTES}"),
        ));
    }
    let mut body = vec![0u8; len];
    reader.read_exact(&mut body).await?;
    Ok(Some(body))
}

/// Writes `value` as one frame.
pub async fn write_frame<W: AsyncWriteExt + Unpin, T: Serialize>(
    writer: &mut W,
    value: &T,
) -> std::io::Result<()> {
    let body = serde_json::to_vec(value).map_err(std::io::Error::other)?;
    if body.len() > MAX_FRAME_BYTES {
        return Err(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!(
                "control frame of {} bytes exceeds the limit of {MAX_FRAME_BYTES}",
                body.len()
            ),
        ));
    }
    let mut buf = Vec::with_capacity(body.len() + 4);
    buf.extend_from_slice(&(body.len() as u32).to_be_bytes());
    buf.extend_from_slice(&body);
    writer.write_all(&buf).await?;
    writer.flush().await
}

/// Serves one accepted control connection until the peer closes it or sends a bad frame:
/// Raft requests go to `raft`, controller requests to `controller` (answered with an error
/// when none is installed yet), observers' fetches to `fetch`.
pub async fn serve_control_connection(
    mut stream: TcpStream,
    raft: Raft<TypeConfig>,
    controller: Option<ControllerHandler>,
    fetch: Option<FetchHandler>,
    local: LocalControl,
) {
    let _ = stream.set_nodelay(true);
    let peer = stream.peer_addr().ok();
    loop {
        let body = match read_frame(&mut stream).await {
            Ok(Some(body)) => body,
            Ok(None) => return,
            Err(e) => {
                debug!(?peer, error = %e, "closing control connection");
                return;
            }
        };
        let request: ControlRequest = match serde_json::from_slice(&body) {
            Ok(r) => r,
            Err(e) => {
                debug!(?peer, error = %e, "closing control connection after a malformed request");
                return;
            }
        };
        let response = match request {
            ControlRequest::Raft(RaftRequest::Vote(rpc)) => {
                ControlResponse::Vote(raft.vote(rpc).await)
            }
            ControlRequest::Raft(RaftRequest::AppendEntries(rpc)) => {
                let response = raft.append_entries(rpc).await;
                if response.is_ok() {
                    local.leader_reached.store(true, Ordering::Relaxed);
                }
                ControlResponse::AppendEntries(response)
            }
            ControlRequest::Raft(RaftRequest::InstallSnapshot(rpc)) => {
                let response = raft.install_snapshot(rpc).await;
                if response.is_ok() {
                    local.leader_reached.store(true, Ordering::Relaxed);
                }
                ControlResponse::InstallSnapshot(response)
            }
            ControlRequest::Controller(value) => ControlResponse::Controller(match &controller {
                Some(handler) => handler(value).await,
                None => Err("this node serves no controller requests".to_string()),
            }),
            ControlRequest::FetchMetadata(request) => match &fetch {
                Some(handler) => ControlResponse::FetchMetadata(Box::new(handler(request).await)),
                None => ControlResponse::NotServed("this node serves no observers".to_string()),
            },
            ControlRequest::Hello => ControlResponse::Hello {
                node_id: local.node_id,
                initialized: (local.initialized)(),
            },
            ControlRequest::LeaderCheck => local.leader_check(&raft),
            ControlRequest::Join { node_id, addr } => answer_join(&raft, node_id, addr).await,
        };
        if let Err(e) = write_frame(&mut stream, &response).await {
            debug!(?peer, error = %e, "closing control connection");
            return;
        }
    }
}

/// One connection to a peer's control listener, made on first use and remade after a failure.
#[derive(Debug)]
pub struct ControlClient {
    addr: String,
    timeout: Duration,
    conn: tokio::sync::Mutex<Option<TcpStream>>,
}

impl ControlClient {
    /// A client for the control listener at `addr` (`host:port`) whose requests time out
    /// after `timeout`. Connects on the first request.
    pub fn new(addr: String, timeout: Duration) -> Self {
        ControlClient {
            addr,
            timeout,
            conn: tokio::sync::Mutex::new(None),
        }
    }

    /// The peer's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends `request` and waits for the answer, at most `timeout` (or the client's timeout
    /// when `None`). Any failure drops the connection, so the next call reconnects.
    ///
    /// Cancellation-safe: the connection is taken out for the call and put back only after
    /// its answer was read, so a call abandoned half-way (openraft drops RPC futures) closes
    /// the connection instead of leaving its answer to be read as the next call's.
    pub async fn call(
        &self,
        request: &ControlRequest,
        timeout: Option<Duration>,
    ) -> Result<ControlResponse, CallError> {
        let timeout = timeout.unwrap_or(self.timeout);
        let mut conn = self.conn.lock().await;
        let idle = conn.take();
        let result = tokio::time::timeout(timeout, async {
            let mut stream = match idle {
                Some(stream) => stream,
                None => {
                    let stream = TcpStream::connect(&self.addr).await.map_err(|source| {
                        CallError::Connect {
                            addr: self.addr.clone(),
                            source,
                        }
                    })?;
                    let _ = stream.set_nodelay(true);
                    stream
                }
            };
            let io = |source| CallError::Io {
                addr: self.addr.clone(),
                source,
            };
            write_frame(&mut stream, request).await.map_err(io)?;
            let body = read_frame(&mut stream)
                .await
                .map_err(io)?
                .ok_or_else(|| io(std::io::ErrorKind::UnexpectedEof.into()))?;
            let response =
                serde_json::from_slice(&body).map_err(|e| io(std::io::Error::other(e)))?;
            Ok((stream, response))
        })
        .await;
        match result {
            Ok(Ok((stream, response))) => {
                *conn = Some(stream);
                Ok(response)
            }
            Ok(Err(e)) => Err(e),
            Err(_) => Err(CallError::Timeout {
                addr: self.addr.clone(),
                timeout,
            }),
        }
    }
}

/// Makes a [`ControlNetwork`] per peer for openraft.
#[derive(Debug, Clone)]
pub struct ControlNetworkFactory {
    /// Upper bound of one request (`controller.quorum.request.timeout.ms`).
    pub request_timeout: Duration,
}

impl RaftNetworkFactory<TypeConfig> for ControlNetworkFactory {
    type Network = ControlNetwork;

    async fn new_client(&mut self, target: u64, node: &BasicNode) -> ControlNetwork {
        ControlNetwork {
            target,
            client: Arc::new(ControlClient::new(node.addr.clone(), self.request_timeout)),
            request_timeout: self.request_timeout,
        }
    }
}

/// Openraft's view of one peer: its requests sent over a [`ControlClient`].
#[derive(Debug)]
pub struct ControlNetwork {
    target: u64,
    client: Arc<ControlClient>,
    request_timeout: Duration,
}

impl ControlNetwork {
    async fn send<E: std::error::Error>(
        &self,
        request: RaftRequest,
        option: &RPCOption,
    ) -> Result<ControlResponse, RPCError<u64, BasicNode, E>> {
        // Openraft's hard TTL is derived from its heartbeat; snapshots get their own.
        let timeout = option.hard_ttl().max(self.request_timeout);
        match self
            .client
            .call(&ControlRequest::Raft(request), Some(timeout))
            .await
        {
            Ok(response) => Ok(response),
            Err(e @ CallError::Connect { .. }) => Err(RPCError::Unreachable(Unreachable::new(&e))),
            Err(e) => Err(RPCError::Network(NetworkError::new(&e))),
        }
    }

    fn unexpected<E: std::error::Error>(
        &self,
        response: ControlResponse,
    ) -> RPCError<u64, BasicNode, E> {
        let e = std::io::Error::other(format!("unexpected control response {response:?}"));
        RPCError::Network(NetworkError::new(&e))
    }
}

impl RaftNetwork<TypeConfig> for ControlNetwork {
    async fn append_entries(
        &mut self,
        rpc: AppendEntriesRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<AppendEntriesResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self.send(RaftRequest::AppendEntries(rpc), &option).await? {
            ControlResponse::AppendEntries(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }

    async fn install_snapshot(
        &mut self,
        rpc: InstallSnapshotRequest<TypeConfig>,
        option: RPCOption,
    ) -> Result<
        InstallSnapshotResponse<u64>,
        RPCError<u64, BasicNode, RaftError<u64, InstallSnapshotError>>,
    > {
        match self
            .send(RaftRequest::InstallSnapshot(rpc), &option)
            .await?
        {
            ControlResponse::InstallSnapshot(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }

    async fn vote(
        &mut self,
        rpc: VoteRequest<u64>,
        option: RPCOption,
    ) -> Result<VoteResponse<u64>, RPCError<u64, BasicNode, RaftError<u64>>> {
        match self.send(RaftRequest::Vote(rpc), &option).await? {
            ControlResponse::Vote(r) => {
                r.map_err(|e| RPCError::RemoteError(RemoteError::new(self.target, e)))
            }
            other => Err(self.unexpected(other)),
        }
    }
}

/// Answers [`ControlRequest::Join`]: the leader adds the node as a learner (without waiting
/// for it to catch up); any other node names the leader it knows.
async fn answer_join(raft: &Raft<TypeConfig>, node_id: i32, addr: String) -> ControlResponse {
    let m = raft.metrics().borrow().clone();
    let membership = m.membership_config.membership();
    let leader = m.current_leader.and_then(|l| {
        membership
            .get_node(&l)
            .map(|n| (i32::try_from(l).unwrap_or(-1), n.addr.clone()))
    });
    let answer = |added: bool, error: Option<String>| ControlResponse::Joined {
        leader: leader.clone(),
        added,
        error,
    };
    let Ok(id) = u64::try_from(node_id) else {
        return answer(false, Some(format!("invalid node id {node_id}")));
    };
    if m.current_leader != Some(m.id) {
        return answer(false, None);
    }
    if membership.get_node(&id).is_some() {
        return answer(true, None);
    }
    match raft
        .add_learner(id, BasicNode { addr: addr.clone() }, false)
        .await
    {
        Ok(_) => {
            tracing::info!(node_id, %addr, "added a joining controller as a non-voter");
            answer(true, None)
        }
        Err(e) => answer(false, Some(e.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::net::TcpListener;

    #[tokio::test]
    async fn frames_round_trip_and_oversized_frames_are_refused() {
        let (mut a, mut b) = tokio::io::duplex(1024);
        write_frame(&mut a, &ControlRequest::Hello).await.unwrap();
        let body = read_frame(&mut b).await.unwrap().unwrap();
        assert!(matches!(
            serde_json::from_slice::<ControlRequest>(&body).unwrap(),
            ControlRequest::Hello
        ));
        a.write_all(&(MAX_FRAME_BYTES as u32 + 1).to_be_bytes())
            .await
            .unwrap();
        let err = read_frame(&mut b).await.unwrap_err();
        assert!(err.to_string().contains("exceeds the limit"), "{err}");
        drop(a);
        assert!(read_frame(&mut b).await.unwrap().is_none());
    }

    /// A call abandoned while its answer is on the way must not leave that answer to be
    /// read as the next call's: a stale "Success" to an earlier AppendEntries would make the
    /// leader count an acknowledgement the follower never gave.
    #[tokio::test]
    async fn an_abandoned_call_does_not_answer_the_next_one() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let served = Arc::new(std::sync::atomic::AtomicI32::new(0));
        let late_answer_sent = Arc::new(tokio::sync::Notify::new());
        let sent = late_answer_sent.clone();
        let server = tokio::spawn(async move {
            loop {
                let (mut s, _) = listener.accept().await.unwrap();
                let served = served.clone();
                let sent = sent.clone();
                tokio::spawn(async move {
                    while let Ok(Some(_)) = read_frame(&mut s).await {
                        let n = served.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
                        if n == 0 {
                            // The first answer comes after the caller gave up on it.
                            tokio::time::sleep(Duration::from_millis(300)).await;
                        }
                        let answer = ControlResponse::Hello {
                            node_id: n + 1,
                            initialized: false,
                        };
                        let written = write_frame(&mut s, &answer).await;
                        if n == 0 {
                            sent.notify_one();
                        }
                        if written.is_err() {
                            return;
                        }
                    }
                });
            }
        });
        let client = ControlClient::new(addr.to_string(), Duration::from_secs(5));
        let abandoned = tokio::time::timeout(
            Duration::from_millis(100),
            client.call(&ControlRequest::Hello, None),
        )
        .await;
        assert!(abandoned.is_err());
        // The late answer to the first call is on its way before the second call.
        tokio::time::timeout(Duration::from_secs(10), late_answer_sent.notified())
            .await
            .unwrap();
        match client.call(&ControlRequest::Hello, None).await {
            Ok(ControlResponse::Hello { node_id, .. }) => {
                assert_eq!(node_id, 2, "the second call got the first call's answer")
            }
            other => panic!("unexpected {other:?}"),
        }
        server.abort();
    }

    #[tokio::test]
    async fn a_client_reconnects_after_the_server_went_away_and_times_out_on_silence() {
        let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = ControlClient::new(addr.to_string(), Duration::from_millis(300));
        // A server that answers one Hello per connection, then hangs up.
        let server = tokio::spawn(async move {
            for _ in 0..2 {
                let (mut s, _) = listener.accept().await.unwrap();
                let _ = read_frame(&mut s).await.unwrap();
                write_frame(
                    &mut s,
                    &ControlResponse::Hello {
                        node_id: 7,
                        initialized: false,
                    },
                )
                .await
                .unwrap();
            }
            // A third connection is accepted and never answered.
            let (s, _) = listener.accept().await.unwrap();
            std::future::pending::<()>().await;
            drop(s);
        });
        for _ in 0..2 {
            let mut answered = false;
            // The first call after the server hung up may fail on the dead connection; the
            // next one reconnects.
            for _ in 0..2 {
                if let Ok(ControlResponse::Hello { node_id: 7, .. }) =
                    client.call(&ControlRequest::Hello, None).await
                {
                    answered = true;
                    break;
                }
            }
            assert!(answered);
        }
        let err = loop {
            match client.call(&ControlRequest::Hello, None).await {
                Err(e @ CallError::Timeout { .. }) => break e,
                Err(_) => continue,
                Ok(other) => panic!("unexpected {other:?}"),
            }
        };
        assert!(err.to_string().contains("no answer from"), "{err}");
        server.abort();
    }
}
