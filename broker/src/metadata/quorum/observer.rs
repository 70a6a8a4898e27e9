//! A broker-only node's view of the metadata quorum (`process.roles=broker`): an
//! [`ObserverStore`] fetches the committed metadata log from the active controller, replays
//! it into its [`MetadataImage`] with the voters' own [`StateMachine`], and never votes.
//!
//! Why fetching, not openraft learners: a learner is pushed to by the leader, so every
//! broker would need a listener the controllers can reach (Kafka's broker-only nodes have
//! no controller listener, and Kafka refuses one), and the leader would have to add it to the
//! Raft membership when it registers and remove it when it leaves (two membership log
//! entries per broker, a membership that grows with every broker ever seen unless someone
//! removes it). Kafka's observers fetch instead: they need only the controllers' addresses
//! (`controller.quorum.voters` or `controller.quorum.bootstrap.servers`), the leader learns
//! of them from their fetches, and forgets one five minutes after its last fetch. Oxbow does
//! the same over the control channel ([`ControlRequest::FetchMetadata`]).
//!
//! What an observer does:
//! - it asks the voters it knows in turn until one answers; a voter that does not lead says
//!   who does, and the observer fetches from that one (the leader's answers also list every
//!   voter's id and address, so `controller.quorum.bootstrap.servers` alone suffices);
//! - each fetch asks for the entries after its last applied index; the leader holds it up to
//!   `max_wait_ms` when nothing new is committed and sends only committed entries, so an
//!   observer never has to truncate. Below the leader's purged log it gets the leader's
//!   snapshot instead;
//! - it writes its own snapshot (`quorum-snapshot.json`, the voters' format) every
//!   [`SNAPSHOT_EVERY_ENTRIES`] applied entries and at shutdown; a restart resumes from it and
//!   fetches the rest (an observer killed with SIGKILL refetches what it applied since);
//! - controller requests (registration, heartbeats, admin requests, AlterPartition) go to
//!   the leader the last fetch named, over a [`ControlClient`] per voter;
//! - DescribeQuorum is answered with the leader's view that came with the last fetch.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use openraft::storage::{RaftSnapshotBuilder, RaftStateMachine};
use tokio::sync::watch;
use tokio::task::JoinHandle;
use tracing::{info, warn};

use super::network::{
    ControlClient, ControlRequest, ControlResponse, FetchMetadataRequest, FetchedMetadata,
};
use super::state_machine::StateMachine;
use super::{check_meta_properties, QuorumOptions, StartError};
use crate::config::BrokerConfig;
use crate::metadata::{
    BoxFuture, MetadataImage, MetadataRecord, MetadataStore, ProposeError, QuorumInfo,
};

/// An observer writes its snapshot after this many applied entries (and at shutdown).
pub const SNAPSHOT_EVERY_ENTRIES: u64 = 1000;

/// How long the leader may hold an observer's fetch when nothing is new (Kafka's
/// `replica.fetch.wait.max.ms` default for the metadata log's fetches is 500 ms).
const FETCH_MAX_WAIT_MS: u64 = 500;

/// What the fetch loop learnt, shared with the store's readers.
#[derive(Debug, Default)]
struct Learnt {
    /// The leader the last answer named.
    leader: Option<i32>,
    /// The voters' control clients by id, from the answers (or the voter list).
    voters: BTreeMap<i32, Arc<ControlClient>>,
    /// The leader's view of the quorum from its last answer.
    quorum: QuorumInfo,
    /// The leader's high watermark (its applied log end) in its last answer.
    leader_end: Option<u64>,
}

/// [`MetadataStore`] of a broker-only node: the committed metadata, fetched (see the module
/// docs). Proposals are refused with the leader's id; the broker's controller channel
/// forwards through [`ObserverStore::call_controller`].
pub struct ObserverStore {
    node_id: i32,
    state_machine: StateMachine,
    request_timeout: Duration,
    learnt: Arc<Mutex<Learnt>>,
    /// The cluster id this node's data or config names, checked against the log's.
    expected_cluster: Option<String>,
    /// Set once the observer has applied what the leader had committed at its first answer.
    caught_up: watch::Sender<bool>,
    tasks: Mutex<Vec<JoinHandle<()>>>,
}

impl std::fmt::Debug for ObserverStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ObserverStore")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl ObserverStore {
    /// Starts observing the quorum `config` names (`controller.quorum.voters` or
    /// `controller.quorum.bootstrap.servers`). See [`ObserverStore::start_with`].
    pub async fn start(config: &BrokerConfig) -> Result<Arc<ObserverStore>, StartError> {
        let options = QuorumOptions::from_config(config)?;
        let bootstrap = config
            .quorum
            .bootstrap_servers
            .iter()
            .map(|(host, port)| {
                if host.contains(':') {
                    format!("[{host}]:{port}")
                } else {
                    format!("{host}:{port}")
                }
            })
            .collect();
        Self::start_with(options, bootstrap).await
    }

    /// Starts observing: refuses another node's or cluster's data (as a voter does), opens
    /// the last snapshot in `<log_dir>/__cluster_metadata-0/` and starts fetching from
    /// `options.voters` (by id) and `bootstrap` (addresses of voters whose ids it learns from
    /// their answers). Returns at once; [`Self::wait_for_cluster_id`] waits for the log.
    pub async fn start_with(
        options: QuorumOptions,
        bootstrap: Vec<String>,
    ) -> Result<Arc<ObserverStore>, StartError> {
        if options.voters.iter().any(|v| v.id == options.node_id) {
            return Err(StartError::Refused(format!(
                "node.id {} is one of controller.quorum.voters: a voter is not an observer",
                options.node_id
            )));
        }
        if options.voters.is_empty() && bootstrap.is_empty() {
            return Err(StartError::Refused(
                "an observer needs controller.quorum.voters or \
                 controller.quorum.bootstrap.servers"
                    .to_string(),
            ));
        }
        let expected_cluster = check_meta_properties(&options)?;
        let dir = options.metadata_dir();
        let state_machine = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || {
                std::fs::create_dir_all(&dir)?;
                StateMachine::open(&dir)
            })
            .await
            .map_err(std::io::Error::other)??
        };
        // Long polls are held up to FETCH_MAX_WAIT_MS on top of the request itself.
        let request_timeout = options.request_timeout + Duration::from_millis(FETCH_MAX_WAIT_MS);
        let learnt = Learnt {
            voters: options
                .voters
                .iter()
                .map(|v| {
                    (
                        v.id,
                        Arc::new(ControlClient::new(v.address(), request_timeout)),
                    )
                })
                .collect(),
            ..Learnt::default()
        };
        let store = Arc::new(ObserverStore {
            node_id: options.node_id,
            state_machine,
            request_timeout,
            learnt: Arc::new(Mutex::new(learnt)),
            expected_cluster,
            caught_up: watch::Sender::new(false),
            tasks: Mutex::new(Vec::new()),
        });
        info!(
            node_id = options.node_id,
            offset = store.image().offset,
            "metadata quorum observer started"
        );
        let task = tokio::spawn(fetch_loop(
            Arc::downgrade(&store),
            bootstrap,
            options.retry_backoff.max(Duration::from_millis(50)),
        ));
        *store.tasks.lock().unwrap_or_else(|p| p.into_inner()) = vec![task];
        Ok(store)
    }

    /// Waits up to `timeout` (`None`: for ever) until this observer has applied everything
    /// the leader had committed when it first answered, and answers the cluster id. Fails
    /// when the log's cluster id contradicts `cluster.id` or `meta.properties`, or in time.
    pub async fn wait_for_cluster_id(&self, timeout: Duration) -> Result<String, StartError> {
        let deadline = tokio::time::Instant::now().checked_add(timeout);
        let mut caught_up = self.caught_up.subscribe();
        let mut images = self.subscribe();
        // Caught up with a log that names the cluster: a new quorum's leader may answer
        // before it has committed the cluster id.
        let wait = async {
            loop {
                let done = *caught_up.borrow_and_update()
                    && !images.borrow_and_update().cluster_id.is_empty();
                if done {
                    break;
                }
                tokio::select! {
                    r = caught_up.changed() => if r.is_err() { break },
                    r = images.changed() => if r.is_err() { break },
                }
            }
        };
        let in_time = match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, wait).await.is_ok(),
            None => {
                wait.await;
                true
            }
        };
        let id = self.image().cluster_id.clone();
        if !in_time || id.is_empty() {
            return Err(StartError::Refused(format!(
                "no active controller answered within {timeout:?}: this node could not fetch \
                 the metadata log"
            )));
        }
        if let Some(expected) = self.expected_cluster.as_ref().filter(|e| **e != id) {
            return Err(StartError::Refused(format!(
                "this node's data or cluster.id belongs to cluster {expected}, but the \
                 metadata quorum's log is of cluster {id}; refusing to serve it"
            )));
        }
        Ok(id)
    }

    /// Sends a controller request to voter `node_id` (the active controller the last fetch
    /// named) and answers its reply; `Err` with a message when the voter is unknown,
    /// unreachable, or its handler failed.
    pub async fn call_controller(
        &self,
        node_id: i32,
        request: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let client = self
            .learnt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .voters
            .get(&node_id)
            .cloned()
            .ok_or_else(|| format!("node {node_id} is not a known voter"))?;
        match client
            .call(&ControlRequest::Controller(request), None)
            .await
        {
            Ok(ControlResponse::Controller(reply)) => reply,
            Ok(other) => Err(format!("unexpected answer from node {node_id}: {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// Stops fetching and writes a snapshot of what was applied, so a restart resumes
    /// from here.
    pub async fn shutdown(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        let mut sm = self.state_machine.clone();
        if let Err(e) = sm.build_snapshot().await {
            warn!(error = %e, "cannot write the metadata snapshot at shutdown");
        }
    }

    /// The index the next fetch asks for: one past the last applied entry.
    async fn fetch_offset(&self) -> u64 {
        let mut sm = self.state_machine.clone();
        match sm.applied_state().await {
            Ok((Some(last), _)) => last.index + 1,
            _ => 0,
        }
    }
}

impl Drop for ObserverStore {
    fn drop(&mut self) {
        for task in self
            .tasks
            .get_mut()
            .unwrap_or_else(|p| p.into_inner())
            .drain(..)
        {
            task.abort();
        }
    }
}

/// Fetches until the store is dropped or shut down (see the module docs).
async fn fetch_loop(
    store: std::sync::Weak<ObserverStore>,
    bootstrap: Vec<String>,
    backoff: Duration,
) {
    // Clients of bootstrap addresses, for as long as their voters' ids are unknown.
    let mut bootstrap_clients: BTreeMap<String, Arc<ControlClient>> = BTreeMap::new();
    let mut next_candidate = 0usize;
    let mut since_snapshot = 0u64;
    loop {
        let Some(store) = store.upgrade() else { return };
        let (leader, candidates) = {
            let learnt = store.learnt.lock().unwrap_or_else(|p| p.into_inner());
            let leader = learnt.leader.and_then(|id| learnt.voters.get(&id).cloned());
            let mut candidates: Vec<Arc<ControlClient>> = learnt.voters.values().cloned().collect();
            for addr in &bootstrap {
                if !candidates.iter().any(|c| c.addr() == addr) {
                    candidates.push(
                        bootstrap_clients
                            .entry(addr.clone())
                            .or_insert_with(|| {
                                Arc::new(ControlClient::new(addr.clone(), store.request_timeout))
                            })
                            .clone(),
                    );
                }
            }
            (leader, candidates)
        };
        let client = match leader {
            Some(client) => client,
            None if candidates.is_empty() => return,
            None => {
                next_candidate = (next_candidate + 1) % candidates.len();
                candidates[next_candidate].clone()
            }
        };
        let request = FetchMetadataRequest {
            replica_id: store.node_id,
            fetch_offset: store.fetch_offset().await,
            max_wait_ms: FETCH_MAX_WAIT_MS,
        };
        let answer = client
            .call(&ControlRequest::FetchMetadata(request.clone()), None)
            .await;
        let response = match answer {
            Ok(ControlResponse::FetchMetadata(response)) => response,
            Ok(other) => {
                warn!(
                    voter = client.addr(),
                    "unexpected answer to a metadata fetch: {other:?}"
                );
                forget_leader(&store);
                drop(store);
                tokio::time::sleep(backoff).await;
                continue;
            }
            Err(e) => {
                tracing::debug!(voter = client.addr(), error = %e, "metadata fetch failed");
                forget_leader(&store);
                drop(store);
                tokio::time::sleep(backoff).await;
                continue;
            }
        };
        {
            let mut learnt = store.learnt.lock().unwrap_or_else(|p| p.into_inner());
            for (id, addr) in &response.voters {
                let known = learnt.voters.get(id).is_some_and(|c| c.addr() == addr);
                if !known {
                    learnt.voters.insert(
                        *id,
                        Arc::new(ControlClient::new(addr.clone(), store.request_timeout)),
                    );
                }
            }
            learnt.leader = response.leader_id;
            if let Some(quorum) = &response.quorum {
                learnt.quorum = quorum.clone();
                learnt.leader_end = u64::try_from(quorum.high_watermark).ok();
            }
        }
        let mut sm = store.state_machine.clone();
        match response.records {
            FetchedMetadata::NotLeader => {
                if response.leader_id.is_none() {
                    // An election is under way: ask again shortly.
                    drop(store);
                    tokio::time::sleep(backoff).await;
                }
                continue;
            }
            FetchedMetadata::Entries(entries) => {
                let applied = entries.len() as u64;
                // Entries must continue the log exactly: a leader answers from the offset
                // asked for, anything else is a bug or a stale answer.
                let contiguous = entries
                    .iter()
                    .enumerate()
                    .all(|(i, e)| e.log_id.index == request.fetch_offset + i as u64);
                if !contiguous {
                    warn!("a metadata fetch answered entries out of order; fetching again");
                    continue;
                }
                if applied > 0 {
                    if let Err(e) = sm.apply(entries).await {
                        // A record this node cannot replay (a newer version): stop, as a
                        // voter's state machine does, rather than misread the cluster.
                        tracing::error!(error = %e, "cannot apply fetched metadata; observer stopped");
                        return;
                    }
                    since_snapshot += applied;
                }
            }
            FetchedMetadata::Snapshot { meta, data } => {
                info!(
                    last = ?meta.last_log_id,
                    "installing the leader's metadata snapshot (the log before it was purged)"
                );
                if let Err(e) = sm
                    .install_snapshot(&meta, Box::new(std::io::Cursor::new(data.into_bytes())))
                    .await
                {
                    warn!(error = %e, "cannot install the leader's metadata snapshot");
                    drop(store);
                    tokio::time::sleep(backoff).await;
                    continue;
                }
                since_snapshot = 0;
            }
        }
        if since_snapshot >= SNAPSHOT_EVERY_ENTRIES {
            match sm.build_snapshot().await {
                Ok(_) => since_snapshot = 0,
                Err(e) => warn!(error = %e, "cannot write the metadata snapshot"),
            }
        }
        let leader_end = store
            .learnt
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .leader_end;
        if !*store.caught_up.borrow()
            && leader_end.is_some()
            && Some(store.fetch_offset().await) >= leader_end
        {
            info!(
                offset = store.image().offset,
                "caught up with the metadata log"
            );
            store.caught_up.send_replace(true);
        }
    }
}

fn forget_leader(store: &ObserverStore) {
    store
        .learnt
        .lock()
        .unwrap_or_else(|p| p.into_inner())
        .leader = None;
}

impl MetadataStore for ObserverStore {
    fn image(&self) -> Arc<MetadataImage> {
        self.state_machine.images().borrow().clone()
    }

    fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.state_machine.images().subscribe()
    }

    fn propose(&self, _records: Vec<MetadataRecord>) -> BoxFuture<'_, Result<i64, ProposeError>> {
        Box::pin(async move {
            Err(ProposeError::NotController {
                leader: self.active_controller(),
            })
        })
    }

    fn active_controller(&self) -> Option<i32> {
        self.learnt.lock().unwrap_or_else(|p| p.into_inner()).leader
    }

    fn kraft_version(&self) -> i16 {
        // The quorum it observes can change its voters (see `super::voters`).
        1
    }

    fn quorum_info(&self) -> QuorumInfo {
        let learnt = self.learnt.lock().unwrap_or_else(|p| p.into_inner());
        let mut info = learnt.quorum.clone();
        if learnt.leader.is_none() {
            info.leader_id = -1;
        }
        info
    }
}
