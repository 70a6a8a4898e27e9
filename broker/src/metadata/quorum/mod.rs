//! The replicated metadata quorum: [`QuorumStore`] implements [`MetadataStore`] on the
//! controller voters with `openraft`. The Raft leader is the active controller; every voter
//! replays the committed metadata log into its [`MetadataImage`].
//!
//! Parts (three thin adapters around `MetadataImage::replay`, as openraft's examples have them):
//! - [`log_store`]: the Raft log and vote on disk in `<first log dir>/__cluster_metadata-0/`;
//! - [`state_machine`]: the image, its snapshots and their installation;
//! - [`network`]: the control channel on the CONTROLLER listener (client, server, framing).
//!
//! Decisions (written down for the lead and the README):
//! - **Membership** starts as `controller.quorum.voters` (or `oxbow.initial.controllers`,
//!   KIP-853's `--initial-controllers` as a config key) and then is what the Raft log says:
//!   AddRaftVoter and RemoveRaftVoter change it one voter at a time ([`voters`]), and a
//!   controller configured with `controller.quorum.bootstrap.servers` alone (or not named by
//!   `oxbow.initial.controllers`) joins as a learner ([`join_quorum`]) until it is added. A
//!   new quorum is bootstrapped by the voter with the lowest id once every configured voter
//!   answers and none has quorum state yet ([`bootstrap`]); the others wait to hear from the
//!   leader. An initial controller also joins, so it rejoins as a learner when it lost its
//!   data after the membership changed. After that each node
//!   restarts from its own log (a voter that lost its disk rejoins empty and is caught up by
//!   the leader, from a snapshot if the log was purged).
//! - **Cluster id**: `cluster.id` when configured, else a random Kafka uuid. The first active
//!   controller of a new quorum commits it as a [`MetadataRecord::ClusterId`] record, so
//!   every node learns the same id from the log. A node whose `cluster.id` or
//!   `meta.properties` names another cluster than its quorum's log stops with a message
//!   naming both ids; one whose `meta.properties` names another `node.id` refuses to start.
//! - **Broker-only nodes** (`process.roles=broker`) are observers that fetch committed
//!   entries from the leader, as Kafka's do ([`observer`] says why not openraft learners);
//!   they never enter the Raft membership. The leader remembers each observer's last fetch
//!   for DescribeQuorum and forgets it after five minutes without one (Kafka's
//!   `OBSERVER_SESSION_TIMEOUT_MS`), so removed brokers leave no trace.
//! - **Timeouts**: a voter that hears nothing from the leader for
//!   `controller.quorum.fetch.timeout.ms` starts an election, as Kafka's does. openraft's
//!   follower waits its leader lease (`election_timeout_max`) *plus* its own election
//!   timeout (drawn once from `[election_timeout_min, election_timeout_max)`) before it
//!   stands, and voters refuse candidates until their lease expired; so both bounds are set
//!   near half the fetch timeout (`QuorumOptions::raft_config`): a follower stands
//!   between 95 % and 100 % of the fetch timeout after the leader's last heartbeat, and a
//!   candidate whose election split tries again after about half the fetch timeout (Kafka
//!   backs off up to `controller.quorum.election.timeout.ms`, 1 s by default). The leader's
//!   heartbeat is a tenth of the fetch timeout; one request between voters is bounded by
//!   `controller.quorum.request.timeout.ms`.
//! - **A voter that restarts does not depose a live leader**: it starts with its election
//!   timer off and turns it on once the leader reached it, or the leader it remembers no
//!   longer answers that it leads, or after ten fetch timeouts ([`rejoin`] says why: the
//!   leader pushes, and on Kubernetes it reaches a restarted pod late).
//! - **A leader whose process is gone** (its CONTROLLER listener refuses connections) is
//!   replaced at once rather than after the fetch timeout: [`leader_probe`] says how and why
//!   that is safe. A paused or partitioned leader is still waited for as above.
//! - **Writes without a quorum**: a leader that has not heard from a majority within the
//!   fetch timeout, or whose proposal is not committed within fetch + election timeout,
//!   answers [`ProposeError::NotController`] (the proposal may still commit later, which
//!   the seam allows: the controller decides again on the new image).

mod leader_probe;
pub mod log_store;
pub mod network;
pub mod observer;
mod rejoin;
pub mod state_machine;
pub mod voters;

use std::collections::BTreeMap;
use std::io::Cursor;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex, RwLock, Weak};
use std::time::Duration;

use openraft::error::{ClientWriteError, RaftError};
use openraft::storage::{RaftLogStorage, RaftStateMachine};
use openraft::{
    BasicNode, ChangeMembers, Config, Raft, RaftLogReader, ServerState, SnapshotPolicy,
};
use tokio::net::TcpListener;
use tokio::sync::{watch, Notify};
use tokio::task::{JoinHandle, JoinSet};
use tracing::{error, info, warn};

use self::log_store::LogStore;
use self::network::{
    serve_control_connection, ControlClient, ControlNetworkFactory, ControlRequest,
    ControlResponse, ControllerHandler, FetchHandler, FetchMetadataRequest, FetchMetadataResponse,
    FetchedMetadata, LocalControl,
};
use self::state_machine::StateMachine;
use super::{
    BoxFuture, BrokerEndpoint, Error, MetadataBatch, MetadataImage, MetadataRecord, MetadataStore,
    ProposeError, QuorumInfo, QuorumReplica, VoterChange, VoterChangeError,
    METADATA_RECORD_VERSION,
};
use crate::config::{BrokerConfig, QuorumVoter};

openraft::declare_raft_types!(
    /// Openraft's types for the metadata quorum: entries hold one [`MetadataBatch`], node ids
    /// are Kafka node ids, a node is its control listener's address.
    pub TypeConfig:
        D = MetadataBatch,
        R = (),
        NodeId = u64,
        Node = BasicNode,
        Entry = openraft::Entry<TypeConfig>,
        SnapshotData = Cursor<Vec<u8>>,
        AsyncRuntime = openraft::TokioRuntime,
);

/// Why the quorum store could not start.
#[derive(Debug, thiserror::Error)]
pub enum StartError {
    /// A file or socket could not be used.
    #[error("{0}")]
    Io(#[from] std::io::Error),
    /// The data directory belongs to another node or cluster, or the config is unusable.
    #[error("{0}")]
    Refused(String),
    /// Openraft refused to start.
    #[error("the metadata quorum could not start: {0}")]
    Raft(String),
}

/// Everything [`QuorumStore`] needs, usually from [`QuorumOptions::from_config`].
#[derive(Debug, Clone)]
pub struct QuorumOptions {
    /// This node's `node.id`; must be one of `voters`.
    pub node_id: i32,
    /// The first log dir: its `meta.properties` pins node and cluster id.
    pub log_dir: PathBuf,
    /// `controller.quorum.voters`, or `oxbow.initial.controllers` when that lists this node
    /// (see `initial_controllers`); empty for a node that joins through `bootstrap_servers`.
    pub voters: Vec<QuorumVoter>,
    /// `voters` is `oxbow.initial.controllers` (KIP-853's `--initial-controllers`), not a
    /// static voter list: it only bootstraps a pristine quorum (as a static list would), the
    /// node also joins through `bootstrap_servers` ([`join_quorum`]), and the restart hold
    /// and leader probe take the list as their first guess of the voters (see
    /// [`QuorumStore::start_with_listener`]).
    pub initial_controllers: bool,
    /// `controller.quorum.bootstrap.servers` as `host:port`: with no voter list naming this
    /// node, it joins the quorum they run as a non-voter (KIP-853, see [`join_quorum`]).
    pub bootstrap_servers: Vec<String>,
    /// This node's control address as the leader should dial it (its first controller
    /// listener as `advertised.listeners` names it, else as bound, a wildcard host taken as
    /// `localhost`), sent when it joins.
    pub own_address: String,
    /// The name voters' control listeners go by (the first of `controller.listener.names`),
    /// as DescribeQuorum v2 lists them.
    pub controller_listener: String,
    /// `cluster.id`, if configured.
    pub cluster_id: Option<String>,
    /// `controller.quorum.election.timeout.ms`.
    pub election_timeout: Duration,
    /// `controller.quorum.fetch.timeout.ms`.
    pub fetch_timeout: Duration,
    /// `controller.quorum.request.timeout.ms`.
    pub request_timeout: Duration,
    /// `controller.quorum.retry.backoff.ms`: pause between bootstrap probes.
    pub retry_backoff: Duration,
    /// A snapshot is taken after this many entries since the last one.
    pub snapshot_after_entries: u64,
    /// Entries kept below the snapshot after a purge (so a briefly lagging voter catches up
    /// from the log rather than a snapshot).
    pub entries_kept_after_snapshot: u64,
}

impl QuorumOptions {
    /// The options of `config`'s node (Kafka's timeouts from `controller.quorum.*`).
    pub fn from_config(config: &BrokerConfig) -> Result<Self, StartError> {
        let log_dir = config
            .log_dirs
            .first()
            .cloned()
            .ok_or_else(|| StartError::Refused("log.dirs is empty".to_string()))?;
        let q = &config.quorum;
        let initial_controllers = q.is_initial_controller(config.node_id);
        Ok(QuorumOptions {
            node_id: config.node_id,
            log_dir,
            // A node the initial list does not name joins like one without it.
            voters: if initial_controllers {
                q.initial_controllers.clone()
            } else {
                q.voters.clone()
            },
            initial_controllers,
            bootstrap_servers: q
                .bootstrap_servers
                .iter()
                .map(|(host, port)| {
                    QuorumVoter {
                        id: -1,
                        host: host.clone(),
                        port: *port,
                    }
                    .address()
                })
                .collect(),
            // Kafka's controllers advertise their CONTROLLER listener in advertised.listeners
            // (KIP-853): a stable name there (a pod's DNS name) beats the bound address (the
            // pod's IP, which changes on restart) in the membership the leader dials.
            own_address: config
                .controller_listeners()
                .first()
                .map(|bound| {
                    config
                        .advertised_listeners
                        .iter()
                        .find(|a| a.name == bound.name && !a.host.is_empty())
                        .unwrap_or(bound)
                })
                .map(|l| {
                    let host = match l.host.as_str() {
                        "" | "0.0.0.0" | "::" => "localhost".to_string(),
                        host => host.to_string(),
                    };
                    QuorumVoter {
                        id: config.node_id,
                        host,
                        port: l.port,
                    }
                    .address()
                })
                .unwrap_or_default(),
            controller_listener: config
                .controller_listener_names
                .first()
                .cloned()
                .unwrap_or_else(|| "CONTROLLER".to_string()),
            cluster_id: config.cluster_id.clone(),
            election_timeout: Duration::from_millis(q.election_timeout_ms),
            fetch_timeout: Duration::from_millis(q.fetch_timeout_ms),
            request_timeout: Duration::from_millis(q.request_timeout_ms),
            retry_backoff: Duration::from_millis(q.retry_backoff_ms.max(20)),
            snapshot_after_entries: 1000,
            entries_kept_after_snapshot: 100,
        })
    }

    /// When the leader probe looks (see [`leader_probe`]): again after a heartbeat interval,
    /// else every quarter of the fetch timeout; standing again for one fetch timeout.
    fn probe_timing(&self) -> leader_probe::ProbeTiming {
        let fetch = self.fetch_timeout.max(Duration::from_millis(40));
        leader_probe::ProbeTiming {
            recheck: (fetch / 10).max(Duration::from_millis(2)),
            fallback: fetch / 4,
            window: fetch,
        }
    }

    /// How a restarted voter holds its elections (see [`rejoin`]): it asks the leader again
    /// every heartbeat interval, and holds for at most ten fetch timeouts.
    fn rejoin_timing(&self) -> rejoin::RejoinTiming {
        let fetch = self.fetch_timeout.max(Duration::from_millis(40));
        rejoin::RejoinTiming {
            recheck: (fetch / 10).max(Duration::from_millis(2)),
            ask_timeout: self.request_timeout.min(fetch),
            give_up_after: fetch * 10,
        }
    }

    /// `<log_dir>/__cluster_metadata-0`.
    pub fn metadata_dir(&self) -> PathBuf {
        self.log_dir.join(crate::log::METADATA_DIR)
    }

    fn raft_config(&self) -> Result<Config, StartError> {
        let ms = |d: Duration| d.as_millis().min(u128::from(u64::MAX)) as u64;
        let fetch = ms(self.fetch_timeout).max(40);
        // openraft's follower stands after lease + own timeout = max + [min, max): with
        // max = fetch / 2 and min = max - fetch / 20 that is [0.95, 1.0) × fetch, Kafka's
        // fetch timeout, with enough spread between voters that one usually stands alone.
        // (Bounds of fetch and fetch + election, as before, made it 2.5–3 × fetch: 5–6 s
        // at Kafka's defaults instead of 2 s.)
        let lease = fetch / 2;
        let config = Config {
            cluster_name: "oxbow-metadata".to_string(),
            election_timeout_min: lease - (fetch / 20).max(1),
            election_timeout_max: lease,
            heartbeat_interval: (fetch / 10).max(2),
            install_snapshot_timeout: ms(self.request_timeout).max(fetch),
            snapshot_policy: SnapshotPolicy::LogsSinceLast(self.snapshot_after_entries.max(1)),
            max_in_snapshot_log_to_keep: self.entries_kept_after_snapshot,
            // A voter of a quorum of several starts with its election timer off; [`rejoin`]
            // turns it on once it knows no live leader would be deposed by it.
            // A node that joins (no voter list) is not a voter yet: it waits like a restarted one.
            // So does an initial controller, even a single one: its quorum may have grown since
            // it bootstrapped (a new quorum of one elects itself when it initializes, whatever
            // this switch says).
            enable_elect: self.voters.len() == 1 && !self.initial_controllers,
            ..Config::default()
        };
        config
            .validate()
            .map_err(|e| StartError::Refused(format!("invalid quorum timeouts: {e}")))
    }
}

/// The leader as the rest of Oxbow should see it: openraft's, except that a leader the
/// membership no longer names as a voter (it removed itself) is no longer taken as the
/// active controller, although openraft 0.9 lets it go on leading (see [`resign`]).
fn effective_leader(m: &openraft::RaftMetrics<u64, BasicNode>) -> Option<u64> {
    match m.current_leader {
        Some(leader) if leader == m.id => m
            .membership_config
            .membership()
            .voter_ids()
            .any(|v| v == m.id)
            .then_some(leader),
        other => other,
    }
}

/// A leader that removed itself from the voters resigns. openraft 0.9's leader "steps down"
/// after such a change but keeps its committed vote, so it goes on leading and heartbeating
/// as a learner and the voters never elect another. So its heartbeats stop (it proposes
/// nothing either: [`effective_leader`] makes it refuse), the voters elect a new leader after
/// `controller.quorum.fetch.timeout.ms` (Kafka's resigning leader sends EndQuorumEpoch,
/// which is faster), and once another leads its heartbeats are switched on again for a later
/// term in which it might lead.
async fn resign(raft: Raft<TypeConfig>) {
    let me = raft.metrics().borrow().id;
    info!(
        node_id = me,
        "removed from the voters while leading: stepping down"
    );
    raft.runtime_config().heartbeat(false);
    let _ = raft
        .metrics()
        .wait_for(|m| m.current_leader != Some(me))
        .await;
    raft.runtime_config().heartbeat(true);
}

/// Kafka node ids are non-negative i32; openraft's are u64.
fn raft_id(node_id: i32) -> u64 {
    u64::try_from(node_id).unwrap_or(u64::MAX)
}

fn kafka_id(id: u64) -> i32 {
    i32::try_from(id).unwrap_or(-1)
}

/// [`MetadataStore`] replicated over the controller voters with Raft (see the module docs).
pub struct QuorumStore {
    node_id: i32,
    raft: Raft<TypeConfig>,
    images: watch::Sender<Arc<MetadataImage>>,
    metadata_dir: PathBuf,
    local_addr: SocketAddr,
    /// Installed by the broker once its controller service exists.
    controller: Arc<RwLock<Option<ControllerHandler>>>,
    /// Control clients to the other voters of `controller.quorum.voters`, for forwarding
    /// controller requests.
    peers: BTreeMap<i32, Arc<ControlClient>>,
    /// Control clients to voters that joined at runtime (KIP-853), by id, with the address
    /// the membership names (a new address replaces the client).
    dynamic_peers: Mutex<BTreeMap<i32, (String, Arc<ControlClient>)>>,
    request_timeout: Duration,
    /// Held while a voter change (AddRaftVoter, RemoveRaftVoter) runs: one at a time.
    voter_change: Arc<tokio::sync::Mutex<()>>,
    fetch_timeout: Duration,
    propose_timeout: Duration,
    /// Set when this node found it belongs to another cluster than its quorum's log.
    refusal: Arc<Mutex<Option<String>>>,
    /// Voters' control listeners, for DescribeQuorum.
    listeners: BTreeMap<i32, Vec<BrokerEndpoint>>,
    /// The name of the control listener (for voters that joined at runtime).
    controller_listener: String,
    /// When the leader last saw each replica's log advance and catch up (ms since the epoch).
    progress: Arc<Mutex<BTreeMap<u64, ReplicaProgress>>>,
    /// Observers' last fetches, while this node leads (cleared when it stops leading).
    observers: Mutex<ObserverFetches>,
    /// The log and state machine Raft drives, read to answer observers.
    log: LogStore,
    state_machine: StateMachine,
    tasks: Mutex<Vec<JoinHandle<()>>>,
    /// Why this node's Raft core stopped on its own (it panicked or hit a storage error), once
    /// it has; see [`QuorumStore::halted`].
    halted: watch::Sender<Option<String>>,
}

/// Kafka's `LeaderState.OBSERVER_SESSION_TIMEOUT_MS`: an observer that has not fetched for
/// this long is no longer listed by DescribeQuorum.
pub const OBSERVER_SESSION_TIMEOUT_MS: i64 = 300_000;

/// How many entries one observer fetch brings at most.
const MAX_ENTRIES_PER_FETCH: u64 = 1000;

/// The leader's record of observers' fetches, for the term it was made in.
#[derive(Debug, Default)]
struct ObserverFetches {
    term: u64,
    by_id: BTreeMap<i32, ReplicaProgress>,
}

impl std::fmt::Debug for QuorumStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QuorumStore")
            .field("node_id", &self.node_id)
            .field("local_addr", &self.local_addr)
            .finish_non_exhaustive()
    }
}

impl QuorumStore {
    /// Starts this node's part of the quorum from a broker config: binds its first
    /// controller listener and calls [`QuorumStore::start_with_listener`].
    pub async fn start(
        config: &BrokerConfig,
        handler: Option<ControllerHandler>,
    ) -> Result<Arc<QuorumStore>, StartError> {
        let options = QuorumOptions::from_config(config)?;
        let listener = config
            .controller_listeners()
            .into_iter()
            .next()
            .ok_or_else(|| {
                StartError::Refused(
                    "a controller voter needs a listener named in controller.listener.names"
                        .to_string(),
                )
            })?;
        let host = if listener.host.is_empty() {
            "0.0.0.0"
        } else {
            listener.host.as_str()
        };
        let socket = TcpListener::bind((host, listener.port))
            .await
            .map_err(|e| {
                std::io::Error::new(e.kind(), format!("cannot bind listener {listener}: {e}"))
            })?;
        Self::start_with_listener(options, socket, handler).await
    }

    /// Starts this node's part of the quorum, serving the control channel on `listener`.
    ///
    /// Refuses to start when `<log_dir>/meta.properties` names another node id, or another
    /// cluster than `cluster.id`. Opens (recovering) the log and the last snapshot, starts
    /// Raft, and, for a quorum never initialized, bootstraps it as the module docs say.
    /// Returns at once: the image fills in as the log commits ([`Self::wait_for_cluster_id`]).
    pub async fn start_with_listener(
        options: QuorumOptions,
        listener: TcpListener,
        handler: Option<ControllerHandler>,
    ) -> Result<Arc<QuorumStore>, StartError> {
        let node_id = options.node_id;
        // Joins only: no voter list, the bootstrap servers lead it to the quorum.
        let joins = options.voters.is_empty() && !options.bootstrap_servers.is_empty();
        let list_key = if options.initial_controllers {
            crate::config::INITIAL_CONTROLLERS_KEY
        } else {
            "controller.quorum.voters"
        };
        if !joins && !options.voters.iter().any(|v| v.id == node_id) {
            return Err(StartError::Refused(format!(
                "node.id {node_id} is not one of {list_key}"
            )));
        }
        if options.initial_controllers && options.bootstrap_servers.is_empty() {
            return Err(StartError::Refused(format!(
                "{list_key} needs controller.quorum.bootstrap.servers"
            )));
        }
        let expected_cluster = check_meta_properties(&options)?;
        let dir = options.metadata_dir();
        let raft_config = Arc::new(options.raft_config()?);
        let (log, sm) = {
            let dir = dir.clone();
            tokio::task::spawn_blocking(move || {
                Ok::<_, std::io::Error>((LogStore::open(&dir)?, StateMachine::open(&dir)?))
            })
            .await
            .map_err(std::io::Error::other)??
        };
        let pristine = log.is_pristine() && sm.images().borrow().offset < 0;
        let images = sm.images().clone();
        let state_machine = sm.clone();
        let network = ControlNetworkFactory {
            request_timeout: options.request_timeout,
        };
        let raft = Raft::new(raft_id(node_id), raft_config, network, log.clone(), sm)
            .await
            .map_err(|e| StartError::Raft(e.to_string()))?;
        let local_addr = listener.local_addr()?;
        info!(node_id, address = %local_addr, pristine, "metadata quorum voter started");

        let peers: BTreeMap<i32, Arc<ControlClient>> = options
            .voters
            .iter()
            .filter(|v| v.id != node_id)
            .map(|v| {
                (
                    v.id,
                    Arc::new(ControlClient::new(v.address(), options.request_timeout)),
                )
            })
            .collect();
        let controller = Arc::new(RwLock::new(handler));
        let store = QuorumStore {
            node_id,
            raft: raft.clone(),
            images,
            metadata_dir: dir,
            local_addr,
            controller: controller.clone(),
            peers,
            dynamic_peers: Mutex::new(BTreeMap::new()),
            request_timeout: options.request_timeout,
            voter_change: Arc::new(tokio::sync::Mutex::new(())),
            fetch_timeout: options.fetch_timeout,
            propose_timeout: options.fetch_timeout + options.election_timeout,
            refusal: Arc::new(Mutex::new(None)),
            halted: watch::channel(None).0,
            listeners: options
                .voters
                .iter()
                .map(|v| {
                    (
                        v.id,
                        vec![BrokerEndpoint {
                            listener: options.controller_listener.clone(),
                            host: v.host.clone(),
                            port: v.port,
                            security_protocol: "PLAINTEXT".to_string(),
                        }],
                    )
                })
                .collect(),
            controller_listener: options.controller_listener.clone(),
            progress: Arc::new(Mutex::new(BTreeMap::new())),
            observers: Mutex::new(ObserverFetches::default()),
            log: log.clone(),
            state_machine,
            tasks: Mutex::new(Vec::new()),
        };
        let store = Arc::new(store);
        let weak: Weak<QuorumStore> = Arc::downgrade(&store);
        // The accept loop lives in the store's tasks: a strong reference would keep the
        // store alive forever.
        let fetch: FetchHandler = Arc::new(move |request| {
            let store = weak.clone();
            Box::pin(async move {
                match store.upgrade() {
                    Some(store) => store.serve_observer_fetch(request).await,
                    None => FetchMetadataResponse {
                        leader_id: None,
                        voters: Vec::new(),
                        quorum: None,
                        records: FetchedMetadata::NotLeader,
                    },
                }
            }) as BoxFuture<'static, _>
        });
        // Closed inbound connections wake the leader probe (a killed leader's go first).
        let closed = Arc::new(Notify::new());
        let leader_reached = Arc::new(AtomicBool::new(false));
        let local = LocalControl {
            node_id,
            initialized: {
                let log = log.clone();
                Arc::new(move || !log.is_pristine())
            },
            fetch_timeout: options.fetch_timeout,
            leader_reached: leader_reached.clone(),
        };
        let mut tasks = vec![tokio::spawn(accept_loop(
            listener,
            raft.clone(),
            controller,
            fetch,
            local,
            closed.clone(),
        ))];
        tasks.push(tokio::spawn(
            rejoin::hold_elections_until_the_leader_reaches_us(
                raft.clone(),
                raft_id(node_id),
                store
                    .peers
                    .iter()
                    .map(|(id, client)| (raft_id(*id), client.clone()))
                    .collect(),
                leader_reached,
                options.rejoin_timing(),
                // An initial controller's quorum may have grown since it bootstrapped: even a
                // list of one holds like a node that joined (decided by what Raft restored).
                if options.initial_controllers {
                    0
                } else {
                    options.voters.len()
                },
                !pristine,
            ),
        ));
        // The restart hold above and this probe reach a voter at its configured address, else
        // at the one the Raft membership names. For an initial controller the configured list
        // is the initial one: a fine first guess (the voters it bootstrapped keep those
        // addresses), and voters added at runtime are found in the membership.
        tasks.push(tokio::spawn(leader_probe::stand_when_leader_gone(
            raft.clone(),
            raft_id(node_id),
            options
                .voters
                .iter()
                .filter(|v| v.id != node_id)
                .map(|v| (raft_id(v.id), v.address()))
                .collect(),
            closed,
            options.probe_timing(),
        )));
        // An initial controller also joins: it returns at once when the membership names it,
        // and makes a listed node that lost its data after the membership changed (or that
        // is no longer a voter) rejoin as a learner instead of waiting for a leader that no
        // longer sends to it.
        if joins || options.initial_controllers {
            tasks.push(tokio::spawn(join_quorum(options.clone(), raft.clone())));
        }
        if !joins && pristine {
            tasks.push(tokio::spawn(bootstrap(
                options.clone(),
                raft.clone(),
                store.peers.clone(),
                log,
            )));
        }
        tasks.push(tokio::spawn(track_progress(
            raft.clone(),
            store.progress.clone(),
        )));
        tasks.push(tokio::spawn(watch_raft_core(
            raft.clone(),
            store.halted.clone(),
            store.refusal.clone(),
        )));
        tasks.push(tokio::spawn(guard_cluster_id(
            raft.clone(),
            store.images.subscribe(),
            expected_cluster,
            node_id,
            store.refusal.clone(),
        )));
        *store.tasks.lock().unwrap_or_else(|p| p.into_inner()) = tasks;
        Ok(store)
    }

    /// Answers an observer's fetch (see [`observer`]): a redirect unless this node leads;
    /// else the committed entries from the fetch offset (waiting up to the request's
    /// `max_wait_ms` for one), or the latest snapshot when the offset was purged. Records
    /// the fetch for DescribeQuorum's observers.
    async fn serve_observer_fetch(&self, request: FetchMetadataRequest) -> FetchMetadataResponse {
        let mut metrics = self.raft.metrics();
        let (leader, term) = {
            let m = metrics.borrow();
            (m.current_leader, m.current_term)
        };
        let respond = |records, quorum| FetchMetadataResponse {
            leader_id: leader.map(kafka_id),
            voters: self.voter_addresses(),
            quorum,
            records,
        };
        if leader != Some(raft_id(self.node_id)) {
            return respond(FetchedMetadata::NotLeader, None);
        }
        let applied_end = |m: &openraft::RaftMetrics<u64, BasicNode>| {
            m.last_applied.map(|l| l.index + 1).unwrap_or(0)
        };
        {
            let now = crate::time::now_ms();
            let end = applied_end(&metrics.borrow());
            let mut observers = self.observers.lock().unwrap_or_else(|p| p.into_inner());
            if observers.term != term {
                *observers = ObserverFetches {
                    term,
                    by_id: BTreeMap::new(),
                };
            }
            let entry = observers
                .by_id
                .entry(request.replica_id)
                .or_insert(ReplicaProgress {
                    matched: None,
                    last_fetch_ms: now,
                    last_caught_up_ms: -1,
                });
            entry.matched = Some(request.fetch_offset);
            entry.last_fetch_ms = now;
            if request.fetch_offset >= end {
                entry.last_caught_up_ms = now;
            }
        }
        // Long poll: hold the fetch until something past its offset is committed.
        let wait = Duration::from_millis(request.max_wait_ms.min(10_000));
        let _ = tokio::time::timeout(wait, async {
            loop {
                if applied_end(&metrics.borrow_and_update()) > request.fetch_offset {
                    return;
                }
                if metrics.changed().await.is_err() {
                    return;
                }
            }
        })
        .await;
        let end = applied_end(&metrics.borrow());
        let mut log = self.log.clone();
        let purged = match log.get_log_state().await {
            Ok(state) => state.last_purged_log_id.map(|l| l.index),
            Err(e) => {
                warn!(error = %e, "cannot read the metadata log for an observer");
                return respond(FetchedMetadata::NotLeader, None);
            }
        };
        let records = if purged.is_some_and(|p| request.fetch_offset <= p) {
            let mut sm = self.state_machine.clone();
            match sm.get_current_snapshot().await {
                Ok(Some(snapshot)) => match String::from_utf8(snapshot.snapshot.into_inner()) {
                    Ok(data) => FetchedMetadata::Snapshot {
                        meta: snapshot.meta,
                        data,
                    },
                    Err(e) => {
                        warn!(error = %e, "the metadata snapshot is not UTF-8");
                        FetchedMetadata::NotLeader
                    }
                },
                Ok(None) | Err(_) => {
                    warn!("the metadata log is purged but there is no snapshot to send");
                    FetchedMetadata::NotLeader
                }
            }
        } else {
            let to = end.min(request.fetch_offset + MAX_ENTRIES_PER_FETCH);
            let entries = if request.fetch_offset < to {
                log.try_get_log_entries(request.fetch_offset..to)
                    .await
                    .unwrap_or_default()
            } else {
                Vec::new()
            };
            FetchedMetadata::Entries(entries)
        };
        respond(records, Some(self.quorum_info()))
    }

    /// Installs the handler that answers controller requests arriving on the control
    /// channel (the lead wires it to the controller service once the broker exists).
    pub fn set_controller_handler(&self, handler: ControllerHandler) {
        *self.controller.write().unwrap_or_else(|p| p.into_inner()) = Some(handler);
    }

    /// Sends a controller request to voter `node_id` over the control channel and returns its
    /// handler's answer; `Err` with a message when the voter is unknown, unreachable, times
    /// out or its handler failed.
    pub async fn call_controller(
        &self,
        node_id: i32,
        request: serde_json::Value,
    ) -> Result<serde_json::Value, String> {
        let client = self
            .peer(node_id)
            .ok_or_else(|| format!("node {node_id} is not another voter of this quorum"))?;
        match client
            .call(&ControlRequest::Controller(request), None)
            .await
        {
            Ok(ControlResponse::Controller(reply)) => reply,
            Ok(other) => Err(format!("unexpected answer from node {node_id}: {other:?}")),
            Err(e) => Err(e.to_string()),
        }
    }

    /// The control client of node `node_id`: a configured voter's, else one to the address
    /// the Raft membership names (a voter or learner that joined at runtime).
    fn peer(&self, node_id: i32) -> Option<Arc<ControlClient>> {
        if let Some(client) = self.peers.get(&node_id) {
            return Some(client.clone());
        }
        let addr = {
            let m = self.raft.metrics();
            let m = m.borrow();
            m.membership_config
                .membership()
                .get_node(&raft_id(node_id))
                .map(|n| n.addr.clone())?
        };
        let mut dynamic = self.dynamic_peers.lock().unwrap_or_else(|p| p.into_inner());
        match dynamic.get(&node_id) {
            Some((known, client)) if *known == addr => Some(client.clone()),
            _ => {
                let client = Arc::new(ControlClient::new(addr.clone(), self.request_timeout));
                dynamic.insert(node_id, (addr, client.clone()));
                Some(client)
            }
        }
    }

    /// Every voter's id and control address as the Raft membership has them, told to
    /// observers (so they follow voters added or removed at runtime).
    fn voter_addresses(&self) -> Vec<(i32, String)> {
        let m = self.raft.metrics();
        let m = m.borrow();
        let membership = m.membership_config.membership();
        membership
            .voter_ids()
            .filter_map(|id| {
                membership
                    .get_node(&id)
                    .map(|n| (kafka_id(id), n.addr.clone()))
            })
            .collect()
    }

    /// What [`voters`]' decisions look at, from openraft's metrics.
    fn quorum_view(&self) -> voters::QuorumView {
        let m = self.raft.metrics().borrow().clone();
        let membership = m.membership_config.membership();
        let committed = m.last_applied.map(|l| l.index);
        // Caught up: it has everything committed, or its log advanced within the fetch
        // timeout (a live follower under a stream of writes is often an entry behind).
        let recent = crate::time::now_ms() - self.fetch_timeout.as_millis() as i64;
        let progress = self
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let mut caught_up: std::collections::BTreeSet<u64> = m
            .replication
            .iter()
            .flatten()
            .filter(|(id, matched)| {
                matched.map(|l| l.index) >= committed
                    || progress
                        .get(id)
                        .is_some_and(|p| p.matched.is_some() && p.last_fetch_ms >= recent)
            })
            .map(|(id, _)| *id)
            .collect();
        caught_up.insert(m.id);
        let membership_index = m.membership_config.log_id().map(|l| l.index);
        voters::QuorumView {
            me: m.id,
            leader: effective_leader(&m),
            voters: membership.voter_ids().collect(),
            learners: membership.learner_ids().collect(),
            caught_up,
            change_pending: membership.get_joint_config().len() > 1 || membership_index > committed,
        }
    }

    /// Carries out a voter change on this node, the leader (see [`voters`] for the rules):
    /// an added node becomes a learner and is caught up, then a voter; a removed one stays a
    /// learner if it is caught up, else leaves the membership (the leader itself steps down
    /// once that commits). Bounded by the
    /// request's TimeoutMs for an add and by three quarters of
    /// `controller.quorum.request.timeout.ms` (the bound of the hop a broker forwards it on),
    /// REQUEST_TIMED_OUT past it. The membership change runs to its end even then, so the
    /// quorum is never left in a joint configuration by a caller that gave up.
    async fn run_voter_change(&self, change: VoterChange) -> Result<(), VoterChangeError> {
        let refused = |r: voters::Refusal| {
            let (error, message) = r.error();
            VoterChangeError {
                code: error.code(),
                message,
            }
        };
        let timed_out = |message: String| VoterChangeError {
            code: kafka_protocol::ResponseError::RequestTimedOut.code(),
            message,
        };
        let guard = self
            .voter_change
            .clone()
            .try_lock_owned()
            .map_err(|_| refused(voters::Refusal::ChangePending))?;
        let view = self.quorum_view();
        let hop = self.request_timeout * 3 / 4;
        let (id, changes, bound, retain) = match &change {
            VoterChange::Add {
                id,
                directory_id,
                host,
                port,
                timeout_ms,
            } => {
                let rid = raft_id(*id);
                voters::check_add(&view, rid, !directory_id.is_nil()).map_err(refused)?;
                let addr = QuorumVoter {
                    id: *id,
                    host: host.clone(),
                    port: *port,
                }
                .address();
                let bound = Duration::from_millis(u64::try_from(*timeout_ms).unwrap_or(0)).min(hop);
                let deadline = tokio::time::Instant::now() + bound;
                // A learner already in the membership (it joined, or a removed voter kept as
                // one) may be known at another address (the pod IP it joined with): Kafka takes a
                // voter's endpoint from AddRaftVoter, and openraft's add_learner keeps a known
                // node's address, so the request's address replaces it first.
                let known = self
                    .raft
                    .metrics()
                    .borrow()
                    .membership_config
                    .membership()
                    .get_node(&rid)
                    .map(|n| n.addr.clone());
                if known.as_ref().is_some_and(|known| *known != addr) {
                    info!(voter = id, %addr, ?known, "adding a voter: updating its address");
                    let set = ChangeMembers::SetNodes(
                        [(rid, BasicNode { addr: addr.clone() })]
                            .into_iter()
                            .collect(),
                    );
                    match tokio::time::timeout_at(deadline, self.raft.change_membership(set, true))
                        .await
                    {
                        Ok(Ok(_)) => {}
                        Ok(Err(e)) => return Err(self.change_failed(e)),
                        Err(_) => {
                            return Err(timed_out(format!(
                                "the address of voter {id} did not change within {bound:?}"
                            )))
                        }
                    }
                }
                info!(voter = id, %addr, "adding a voter: catching it up as a learner");
                match tokio::time::timeout_at(
                    deadline,
                    self.raft.add_learner(rid, BasicNode { addr }, true),
                )
                .await
                {
                    Ok(Ok(_)) => {}
                    Ok(Err(e)) => return Err(self.change_failed(e)),
                    Err(_) => {
                        return Err(timed_out(format!(
                            "voter {id} did not catch up with the leader within {bound:?}"
                        )))
                    }
                }
                // openraft's blocking add_learner takes a learner within
                // `replication_lag_threshold` (5000) entries as caught up, even one it never
                // reached; Kafka adds only a caught-up observer (a voter the leader cannot
                // reach would stall a quorum of one grown to two): wait until its log reaches
                // the leader's log end as it is now.
                let mut metrics = self.raft.metrics();
                let target = metrics.borrow().last_log_index;
                let reached = tokio::time::timeout_at(
                    deadline,
                    metrics.wait_for(|m| {
                        m.replication
                            .as_ref()
                            .and_then(|r| r.get(&rid).cloned().flatten())
                            .map(|l| l.index)
                            >= target
                    }),
                )
                .await;
                if !matches!(reached, Ok(Ok(_))) {
                    return Err(timed_out(format!(
                        "voter {id} did not catch up with the leader within {bound:?}"
                    )));
                }
                let changes = ChangeMembers::AddVoterIds([rid].into_iter().collect());
                (
                    *id,
                    changes,
                    deadline.saturating_duration_since(tokio::time::Instant::now()),
                    true,
                )
            }
            VoterChange::Remove { id, .. } => {
                // openraft's membership holds no directory ids: the id names the voter.
                let rid = raft_id(*id);
                voters::check_remove(&view, rid).map_err(refused)?;
                info!(voter = id, "removing a voter");
                // A removed voter that still replicates (caught up) stays a learner, so a node
                // that goes on running (a combined broker) keeps the log, as Kafka's removed
                // controller goes on as an observer; one that is gone (behind) leaves the
                // membership, so the leader stops sending to it, as Kafka forgets observers
                // that stopped fetching.
                let retain = view.caught_up.contains(&rid);
                (
                    *id,
                    ChangeMembers::RemoveVoters([rid].into_iter().collect()),
                    hop,
                    retain,
                )
            }
        };
        let raft = self.raft.clone();
        let resigns = matches!(change, VoterChange::Remove { id, .. } if id == self.node_id);
        let run = tokio::spawn(async move {
            let result = raft.change_membership(changes, retain).await;
            drop(guard);
            if resigns && result.is_ok() {
                tokio::spawn(resign(raft));
            }
            result
        });
        match tokio::time::timeout(bound, run).await {
            Ok(Ok(Ok(_))) => {
                info!(voter = id, "voter change committed");
                Ok(())
            }
            Ok(Ok(Err(e))) => Err(self.change_failed(e)),
            Ok(Err(e)) => Err(timed_out(format!("the voter change stopped: {e}"))),
            Err(_) => Err(timed_out(format!(
                "the voter change of {id} did not commit within {bound:?} (it goes on)"
            ))),
        }
    }

    fn change_failed(
        &self,
        e: RaftError<u64, ClientWriteError<u64, BasicNode>>,
    ) -> VoterChangeError {
        use kafka_protocol::ResponseError as E;
        let (error, message) = match &e {
            RaftError::APIError(ClientWriteError::ForwardToLeader(_)) => {
                (E::NotController, e.to_string())
            }
            RaftError::APIError(ClientWriteError::ChangeMembershipError(_)) => {
                (E::RequestTimedOut, e.to_string())
            }
            RaftError::Fatal(_) => (E::UnknownServerError, e.to_string()),
        };
        warn!(error = %e, "voter change failed");
        VoterChangeError {
            code: error.code(),
            message,
        }
    }

    /// The address the control channel listens on.
    pub fn local_addr(&self) -> SocketAddr {
        self.local_addr
    }

    /// The refusal the cluster-id guard recorded, if any.
    fn check_refusal(&self) -> Result<(), StartError> {
        match self
            .refusal
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
        {
            Some(reason) => Err(StartError::Refused(reason)),
            None => Ok(()),
        }
    }

    /// Waits up to `timeout` until the metadata log has told this node its cluster id, and
    /// returns it. Fails if the id contradicts `cluster.id` or `meta.properties` (naming both),
    /// or if none arrived in time (no quorum yet).
    pub async fn wait_for_cluster_id(&self, timeout: Duration) -> Result<String, StartError> {
        let mut images = self.images.subscribe();
        // Kafka's default (Long.MAX_VALUE ms) is past any clock: then there is no deadline.
        let deadline = tokio::time::Instant::now().checked_add(timeout);
        loop {
            self.check_refusal()?;
            let id = images.borrow_and_update().cluster_id.clone();
            // The guard task checks a new id first; give it the same image.
            if !id.is_empty() {
                tokio::task::yield_now().await;
                self.check_refusal()?;
                return Ok(id);
            }
            let changed = match deadline {
                Some(deadline) => tokio::time::timeout_at(deadline, images.changed()).await,
                None => Ok(images.changed().await),
            };
            match changed {
                Ok(Ok(())) => {}
                Ok(Err(_)) | Err(_) => {
                    return Err(StartError::Refused(format!(
                        "no metadata quorum formed within {timeout:?}: this node could not \
                         learn the cluster id from the active controller"
                    )))
                }
            }
        }
    }

    /// Openraft's metrics of this node (state, term, leader, log indexes).
    pub fn raft_metrics(&self) -> openraft::RaftMetrics<u64, BasicNode> {
        self.raft.metrics().borrow().clone()
    }

    /// Silences (false) or resumes (true) this node's heartbeats while it leads (openraft's
    /// runtime switch): it stays alive with its listener open, as a paused or partitioned
    /// leader looks to its followers. For fault tests.
    pub fn set_heartbeats(&self, enabled: bool) {
        self.raft.runtime_config().heartbeat(enabled);
    }

    /// Stops this node's part of the quorum: the control listener and its connections close
    /// and Raft stops. The files stay, so a new store on the same directory resumes.
    pub async fn shutdown(&self) {
        let tasks = std::mem::take(&mut *self.tasks.lock().unwrap_or_else(|p| p.into_inner()));
        for task in &tasks {
            task.abort();
        }
        for task in tasks {
            let _ = task.await;
        }
        if let Err(e) = self.raft.shutdown().await {
            warn!(error = %e, "metadata quorum did not shut down cleanly");
        }
    }

    /// Resolves, with the reason, when this node's Raft core has stopped on its own (a panic
    /// or a storage error), not by [`QuorumStore::shutdown`]. The node can no longer vote,
    /// lead or learn metadata: as Kafka's fatal-fault handler halts the process, the caller
    /// should exit, so that a supervisor (the kubelet) starts it again, rather than keep
    /// serving stale metadata while looking healthy.
    pub async fn halted(&self) -> String {
        let mut halted = self.halted.subscribe();
        loop {
            if let Some(reason) = halted.borrow_and_update().clone() {
                return reason;
            }
            if halted.changed().await.is_err() {
                return std::future::pending().await;
            }
        }
    }

    fn store_error(&self, reason: String) -> ProposeError {
        ProposeError::Store(Error::Io {
            path: self.metadata_dir.clone(),
            source: std::io::Error::other(reason),
        })
    }
}

impl Drop for QuorumStore {
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

/// Reads `meta.properties` of the first log dir: another node id refuses the start; another
/// cluster id than `cluster.id` too. Returns the cluster id this node must find in the log.
fn check_meta_properties(options: &QuorumOptions) -> Result<Option<String>, StartError> {
    let path = options.log_dir.join(crate::log::META_PROPERTIES);
    let stored = crate::log::stored_meta_ids(&options.log_dir)
        .map_err(|e| StartError::Refused(e.to_string()))?;
    let Some((stored_node, stored_cluster)) = stored else {
        return Ok(options.cluster_id.clone());
    };
    if let Some(stored) = stored_node {
        if stored.trim().parse::<i32>().ok() != Some(options.node_id) {
            return Err(StartError::Refused(format!(
                "{}: stored node.id {stored} doesn't match the configured node.id {}; this \
                 directory belongs to another node",
                path.display(),
                options.node_id
            )));
        }
    }
    match (stored_cluster, &options.cluster_id) {
        (Some(stored), Some(configured)) if &stored != configured => {
            Err(StartError::Refused(format!(
                "{}: stored cluster.id {stored} doesn't match the configured cluster.id \
                 {configured}; this directory belongs to another cluster",
                path.display()
            )))
        }
        (Some(stored), _) => Ok(Some(stored)),
        (None, configured) => Ok(configured.clone()),
    }
}

/// Accepts control connections until aborted; dropping the task closes them all.
async fn accept_loop(
    listener: TcpListener,
    raft: Raft<TypeConfig>,
    controller: Arc<RwLock<Option<ControllerHandler>>>,
    fetch: FetchHandler,
    local: LocalControl,
    closed: Arc<Notify>,
) {
    // The handler is looked up per request, so connections made before the broker installs
    // it serve controller requests afterwards.
    let dispatch: ControllerHandler = Arc::new(move |request| {
        let handler = controller.read().unwrap_or_else(|p| p.into_inner()).clone();
        Box::pin(async move {
            match handler {
                Some(handler) => handler(request).await,
                None => Err("the controller of this node is not ready yet".to_string()),
            }
        }) as BoxFuture<'static, _>
    });
    let mut connections = JoinSet::new();
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    connections.spawn(serve_control_connection(
                        stream,
                        raft.clone(),
                        Some(dispatch.clone()),
                        Some(fetch.clone()),
                        local.clone(),
                    ));
                }
                Err(e) => {
                    warn!(error = %e, "control listener accept failed");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
            },
            Some(_) = connections.join_next(), if !connections.is_empty() => {
                closed.notify_one();
            }
        }
    }
}

/// A controller that joins through `controller.quorum.bootstrap.servers` (KIP-853) asks the
/// leader to add it as a learner, which then replicates the log to it like to any voter
/// (so it learns the cluster id and DescribeQuorum lists it as an observer), until the
/// membership names it; a restarted node whose log already names it asks nothing. The leader
/// may be any of the bootstrap servers, or the one a non-leader names.
async fn join_quorum(options: QuorumOptions, raft: Raft<TypeConfig>) {
    let me = raft_id(options.node_id);
    let backoff = options.retry_backoff.max(Duration::from_millis(200));
    let mut targets: Vec<String> = options.bootstrap_servers.clone();
    loop {
        let member = {
            let m = raft.metrics();
            let m = m.borrow();
            m.membership_config.membership().get_node(&me).is_some()
        };
        if member {
            info!(
                node_id = options.node_id,
                "this node is in the quorum's membership"
            );
            return;
        }
        let mut next = Vec::new();
        for addr in &targets {
            let client = ControlClient::new(addr.clone(), options.request_timeout);
            let request = ControlRequest::Join {
                node_id: options.node_id,
                addr: options.own_address.clone(),
            };
            match client.call(&request, None).await {
                Ok(ControlResponse::Joined {
                    added: true,
                    error: None,
                    ..
                }) => {
                    info!(leader = %addr, "asked the active controller to add this node as a non-voter");
                }
                Ok(ControlResponse::Joined {
                    leader: Some((_, leader)),
                    ..
                }) if leader != *addr => next.push(leader),
                Ok(ControlResponse::Joined { error: Some(e), .. }) => {
                    warn!(controller = %addr, error = %e, "cannot join the quorum yet")
                }
                Ok(_) => {}
                Err(e) => {
                    warn!(controller = %addr, error = %e, "cannot reach a bootstrap controller")
                }
            }
        }
        targets = next;
        targets.extend(options.bootstrap_servers.iter().cloned());
        targets.dedup();
        tokio::time::sleep(backoff).await;
    }
}

/// Bootstraps a never-initialized quorum: the lowest voter id initializes the membership
/// once every other voter answers and none has quorum state; if one has, this node was
/// wiped and the leader will catch it up, so it does nothing. An initial controller also asks
/// the bootstrap servers that answer (not all need to: a StatefulSet starts its pods one by
/// one), so that a listed node that lost its data after the quorum grew beyond the initial
/// list does not start a second quorum when the other listed nodes are fresh too.
async fn bootstrap(
    options: QuorumOptions,
    raft: Raft<TypeConfig>,
    peers: BTreeMap<i32, Arc<ControlClient>>,
    log: LogStore,
) {
    let lowest = options.voters.iter().map(|v| v.id).min();
    if lowest != Some(options.node_id) {
        return;
    }
    let members: BTreeMap<u64, BasicNode> = options
        .voters
        .iter()
        .map(|v| (raft_id(v.id), BasicNode { addr: v.address() }))
        .collect();
    let others: Vec<(String, ControlClient)> = if options.initial_controllers {
        options
            .bootstrap_servers
            .iter()
            .map(|addr| {
                (
                    addr.clone(),
                    ControlClient::new(addr.clone(), options.request_timeout),
                )
            })
            .collect()
    } else {
        Vec::new()
    };
    // Whether a node has quorum state, as its Hello says (None: no answer).
    async fn initialized(client: &ControlClient) -> Option<bool> {
        match client.call(&ControlRequest::Hello, None).await {
            Ok(ControlResponse::Hello { initialized, .. }) => Some(initialized),
            _ => None,
        }
    }
    loop {
        let mut voters = Vec::new();
        for (id, client) in &peers {
            let answer = initialized(client).await;
            if answer == Some(true) {
                info!(voter = id, "voter has quorum state: waiting for its leader");
            }
            voters.push(answer);
        }
        let mut servers = Vec::new();
        for (addr, client) in &others {
            let answer = initialized(client).await;
            if answer == Some(true) {
                info!(controller = %addr, "a bootstrap controller has quorum state: joining its quorum");
            }
            servers.push(answer);
        }
        match bootstrap_step(log.is_pristine(), &voters, &servers) {
            BootstrapStep::Stop => return,
            BootstrapStep::Wait => tokio::time::sleep(options.retry_backoff).await,
            BootstrapStep::Initialize => {
                match raft.initialize(members).await {
                    Ok(()) => info!("initialized the metadata quorum"),
                    Err(e) => warn!(error = %e, "metadata quorum initialization refused"),
                }
                return;
            }
        }
    }
}

/// What the bootstrapping voter does after one look (see [`bootstrap`]).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum BootstrapStep {
    /// Every other listed voter answered and none, nor any bootstrap server that answered, has
    /// quorum state: this node initializes the membership.
    Initialize,
    /// A listed voter has not answered yet: look again.
    Wait,
    /// The quorum exists: a leader reached this node, or another node has quorum state (this
    /// node was wiped; the leader catches it up, or it joins).
    Stop,
}

/// The rule of [`bootstrap`] for one look: `pristine` is this node's log; `voters` the other
/// listed voters' answers and `bootstrap_servers` the asked bootstrap servers' (whether the
/// node has quorum state; `None`: no answer). Bootstrap servers need not answer: a
/// StatefulSet starts its pods one by one.
fn bootstrap_step(
    pristine: bool,
    voters: &[Option<bool>],
    bootstrap_servers: &[Option<bool>],
) -> BootstrapStep {
    if !pristine
        || voters
            .iter()
            .chain(bootstrap_servers)
            .any(|a| *a == Some(true))
    {
        BootstrapStep::Stop
    } else if voters.iter().all(Option::is_some) {
        BootstrapStep::Initialize
    } else {
        BootstrapStep::Wait
    }
}

/// What the leader last saw of one replica of the metadata log.
#[derive(Debug, Clone, Copy)]
struct ReplicaProgress {
    matched: Option<u64>,
    /// When its matched index last advanced (openraft 0.9 reports no heartbeat times, so a
    /// caught-up replica's time is that of the last entry it acknowledged).
    last_fetch_ms: i64,
    /// When its matched index last reached the leader's log end.
    last_caught_up_ms: i64,
}

/// Records, while this node leads, when each replica's log advanced and caught up, for
/// DescribeQuorum's LastFetchTimestamp and LastCaughtUpTimestamp.
async fn track_progress(
    raft: Raft<TypeConfig>,
    progress: Arc<Mutex<BTreeMap<u64, ReplicaProgress>>>,
) {
    let mut metrics = raft.metrics();
    loop {
        {
            let m = metrics.borrow_and_update();
            let mut progress = progress.lock().unwrap_or_else(|p| p.into_inner());
            match &m.replication {
                None => progress.clear(),
                Some(replication) => {
                    let now = crate::time::now_ms();
                    for (id, matched) in replication {
                        let matched = matched.map(|l| l.index);
                        let entry = progress.entry(*id).or_insert(ReplicaProgress {
                            matched: None,
                            last_fetch_ms: -1,
                            last_caught_up_ms: -1,
                        });
                        if entry.matched != matched || entry.last_fetch_ms < 0 {
                            entry.matched = matched;
                            entry.last_fetch_ms = now;
                        }
                        if matched.is_some() && matched == m.last_log_index {
                            entry.last_caught_up_ms = now;
                        }
                    }
                }
            }
        }
        if metrics.changed().await.is_err() {
            return;
        }
    }
}

/// Waits for the Raft core to end (its metrics channel closes). Aborted with the other tasks
/// by [`QuorumStore::shutdown`] before that stops Raft, so only an end the node did not ask
/// for is reported.
/// The cluster-id guard's refusal, when it stopped Raft, is the reason given.
async fn watch_raft_core(
    raft: Raft<TypeConfig>,
    halted: watch::Sender<Option<String>>,
    refusal: Arc<Mutex<Option<String>>>,
) {
    let mut metrics = raft.metrics();
    while metrics.changed().await.is_ok() {}
    let refused = refusal.lock().unwrap_or_else(|p| p.into_inner()).clone();
    let reason = refused.unwrap_or_else(|| {
        let reason = "the metadata quorum's Raft core stopped (its error is logged above by \
                      openraft::raft::raft_inner): this node can no longer vote or learn \
                      metadata"
            .to_string();
        error!("{reason}");
        reason
    });
    halted.send_replace(Some(reason));
}

/// Commits the cluster id when this node leads a quorum whose log has none, and stops the
/// node when the log's id contradicts the one this node's data or config names.
async fn guard_cluster_id(
    raft: Raft<TypeConfig>,
    mut images: watch::Receiver<Arc<MetadataImage>>,
    expected: Option<String>,
    node_id: i32,
    refusal: Arc<Mutex<Option<String>>>,
) {
    let mut metrics = raft.metrics();
    let mut proposed_in_term = None;
    loop {
        let image_id = images.borrow_and_update().cluster_id.clone();
        if !image_id.is_empty() {
            if let Some(expected) = expected.as_ref().filter(|e| **e != image_id) {
                let reason = format!(
                    "this node's data or cluster.id belongs to cluster {expected}, but the \
                     metadata quorum's log is of cluster {image_id}; refusing to serve it"
                );
                error!(node_id, "{reason}");
                *refusal.lock().unwrap_or_else(|p| p.into_inner()) = Some(reason);
                let _ = raft.shutdown().await;
            }
            return;
        }
        let (leader, term) = {
            let m = metrics.borrow_and_update();
            (m.state == ServerState::Leader, m.current_term)
        };
        if leader && proposed_in_term != Some(term) {
            proposed_in_term = Some(term);
            let id = expected.clone().unwrap_or_else(super::new_cluster_id);
            let batch = MetadataBatch {
                version: METADATA_RECORD_VERSION,
                records: vec![MetadataRecord::ClusterId { cluster_id: id }],
            };
            let raft = raft.clone();
            // Not awaited here: if it never commits (leadership lost), the next leader
            // proposes again.
            tokio::spawn(async move {
                if let Err(e) = raft.client_write(batch).await {
                    warn!(error = %e, "could not commit the cluster id");
                }
            });
        }
        tokio::select! {
            r = images.changed() => if r.is_err() { return },
            r = metrics.changed() => if r.is_err() { return },
        }
    }
}

impl MetadataStore for QuorumStore {
    fn change_voters(&self, change: VoterChange) -> BoxFuture<'_, Result<(), VoterChangeError>> {
        Box::pin(self.run_voter_change(change))
    }

    fn kraft_version(&self) -> i16 {
        1
    }

    fn image(&self) -> Arc<MetadataImage> {
        self.images.borrow().clone()
    }

    fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.images.subscribe()
    }

    fn propose(&self, records: Vec<MetadataRecord>) -> BoxFuture<'_, Result<i64, ProposeError>> {
        Box::pin(async move {
            let (leader, quorum_ack) = {
                let m = self.raft.metrics();
                let m = m.borrow();
                (effective_leader(&m), m.millis_since_quorum_ack)
            };
            if leader != Some(raft_id(self.node_id)) {
                return Err(ProposeError::NotController {
                    leader: leader.map(kafka_id),
                });
            }
            // A leader cut off from the majority cannot commit: say so now rather than
            // after the timeout.
            if quorum_ack.is_some_and(|ms| ms > self.fetch_timeout.as_millis() as u64) {
                return Err(ProposeError::NotController { leader: None });
            }
            let batch = MetadataBatch {
                version: METADATA_RECORD_VERSION,
                records,
            };
            match tokio::time::timeout(self.propose_timeout, self.raft.client_write(batch)).await {
                Ok(Ok(response)) => Ok(response.log_id.index as i64),
                Ok(Err(RaftError::APIError(ClientWriteError::ForwardToLeader(f)))) => {
                    Err(ProposeError::NotController {
                        leader: f.leader_id.map(kafka_id),
                    })
                }
                Ok(Err(e)) => Err(self.store_error(e.to_string())),
                Err(_) => Err(ProposeError::NotController { leader: None }),
            }
        })
    }

    fn active_controller(&self) -> Option<i32> {
        effective_leader(&self.raft.metrics().borrow()).map(kafka_id)
    }

    fn active_controller_changed(&self, seen: Option<i32>) -> BoxFuture<'_, ()> {
        let mut metrics = self.raft.metrics();
        Box::pin(async move {
            let changed = metrics
                .wait_for(|m| effective_leader(m).map(kafka_id) != seen)
                .await
                .is_ok();
            if !changed {
                // Raft stopped: nothing will change; the caller's bound ends the wait.
                std::future::pending::<()>().await;
            }
        })
    }

    fn quorum_info(&self) -> QuorumInfo {
        let m = self.raft.metrics().borrow().clone();
        let own_end = m.last_log_index.map(|i| i as i64 + 1).unwrap_or(0);
        let end_of = |id: u64| -> i64 {
            if id == m.id {
                return own_end;
            }
            m.replication
                .as_ref()
                .and_then(|r| r.get(&id).cloned().flatten())
                .map(|l| l.index as i64 + 1)
                .unwrap_or(-1)
        };
        let progress = self
            .progress
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone();
        let now = crate::time::now_ms();
        let membership = m.membership_config.membership();
        let replica = |id: u64| {
            let (last_fetch_ms, last_caught_up_ms) = if id == m.id {
                // The leader is always caught up with itself; a follower knows nothing.
                if m.state == ServerState::Leader {
                    (now, now)
                } else {
                    (-1, -1)
                }
            } else {
                progress
                    .get(&id)
                    .map(|p| (p.last_fetch_ms, p.last_caught_up_ms))
                    .unwrap_or((-1, -1))
            };
            QuorumReplica {
                id: kafka_id(id),
                log_end_offset: end_of(id),
                last_fetch_ms,
                last_caught_up_ms,
                listeners: self
                    .listeners
                    .get(&kafka_id(id))
                    .cloned()
                    .or_else(|| {
                        // A voter that joined at runtime: its membership address.
                        let addr = &membership.get_node(&id)?.addr;
                        let (host, port) = addr.rsplit_once(':')?;
                        Some(vec![BrokerEndpoint {
                            listener: self.controller_listener.clone(),
                            host: host
                                .trim_start_matches('[')
                                .trim_end_matches(']')
                                .to_string(),
                            port: port.parse().ok()?,
                            security_protocol: "PLAINTEXT".to_string(),
                        }])
                    })
                    .unwrap_or_default(),
            }
        };
        let mut observers: Vec<QuorumReplica> = membership.learner_ids().map(replica).collect();
        if m.state == ServerState::Leader {
            let fetches = self.observers.lock().unwrap_or_else(|p| p.into_inner());
            if fetches.term == m.current_term {
                observers.extend(
                    fetches
                        .by_id
                        .iter()
                        .filter(|(_, p)| now - p.last_fetch_ms < OBSERVER_SESSION_TIMEOUT_MS)
                        .map(|(id, p)| QuorumReplica {
                            id: *id,
                            log_end_offset: p.matched.map(|m| m as i64).unwrap_or(-1),
                            last_fetch_ms: p.last_fetch_ms,
                            last_caught_up_ms: p.last_caught_up_ms,
                            listeners: Vec::new(),
                        }),
                );
            }
        }
        QuorumInfo {
            leader_id: m.current_leader.map(kafka_id).unwrap_or(-1),
            leader_epoch: i32::try_from(m.current_term).unwrap_or(i32::MAX),
            // Applied entries are committed; a leader applies as soon as it commits.
            high_watermark: m.last_applied.map(|l| l.index as i64 + 1).unwrap_or(0),
            voters: membership.voter_ids().map(replica).collect(),
            observers,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn options(dir: &Path, node_id: i32, cluster_id: Option<&str>) -> QuorumOptions {
        QuorumOptions {
            node_id,
            log_dir: dir.to_path_buf(),
            voters: vec![QuorumVoter {
                id: node_id,
                host: "127.0.0.1".into(),
                port: 1,
            }],
            initial_controllers: false,
            bootstrap_servers: Vec::new(),
            own_address: String::new(),
            controller_listener: "CONTROLLER".into(),
            cluster_id: cluster_id.map(str::to_string),
            election_timeout: Duration::from_millis(100),
            fetch_timeout: Duration::from_millis(200),
            request_timeout: Duration::from_millis(200),
            retry_backoff: Duration::from_millis(20),
            snapshot_after_entries: 10,
            entries_kept_after_snapshot: 0,
        }
    }

    /// The operator's shared config on pod 1 (listed) and pod 2 (not): a listed node takes the
    /// initial list as its voters, the other joins; both send the leader their advertised
    /// CONTROLLER name (stable across restarts), not the pod IP they bind.
    #[test]
    fn options_of_a_shared_config_with_initial_controllers() {
        let shared = "process.roles=broker,controller\n\
                      listeners=PLAINTEXT://10.0.0.7:9092,CONTROLLER://10.0.0.7:9093\n\
                      advertised.listeners=PLAINTEXT://b-1.b:9092,CONTROLLER://b-1.b:9093\n\
                      controller.listener.names=CONTROLLER\n\
                      log.dirs=/data\n\
                      controller.quorum.bootstrap.servers=b-0.b:9093,b-1.b:9093\n\
                      oxbow.initial.controllers=0@b-0.b:9093:AAAAAAAAAAAAAAAAAAAAAA,1@b-1.b:9093\n";
        let config = |id: i32| {
            BrokerConfig::from_properties(&format!("{shared}node.id={id}\n"), &[])
                .unwrap()
                .0
        };
        let listed = QuorumOptions::from_config(&config(1)).unwrap();
        assert!(listed.initial_controllers);
        let voters: Vec<String> = listed.voters.iter().map(QuorumVoter::address).collect();
        assert_eq!(voters, ["b-0.b:9093", "b-1.b:9093"]);
        assert_eq!(listed.bootstrap_servers, ["b-0.b:9093", "b-1.b:9093"]);
        assert_eq!(listed.own_address, "b-1.b:9093");
        assert!(!listed.raft_config().unwrap().enable_elect);

        let joining = QuorumOptions::from_config(&config(2)).unwrap();
        assert!(!joining.initial_controllers && joining.voters.is_empty());
        // Without an advertised CONTROLLER listener: the bound address.
        let bound = BrokerConfig::from_properties(
            &format!("{shared}node.id=2\n").replace(",CONTROLLER://b-1.b:9093", ""),
            &[],
        )
        .unwrap()
        .0;
        assert_eq!(
            QuorumOptions::from_config(&bound).unwrap().own_address,
            "10.0.0.7:9093"
        );
    }

    #[test]
    fn the_lowest_voter_initializes_only_a_quorum_nobody_has() {
        use BootstrapStep::*;
        let fresh = Some(false);
        let has = Some(true);
        assert_eq!(bootstrap_step(true, &[fresh, fresh], &[]), Initialize);
        // A single initial controller: no other voter to wait for.
        assert_eq!(bootstrap_step(true, &[], &[fresh, None]), Initialize);
        assert_eq!(bootstrap_step(true, &[fresh, None], &[]), Wait);
        // This node was wiped: a voter or a bootstrap server holds the quorum.
        assert_eq!(bootstrap_step(true, &[fresh, has], &[]), Stop);
        assert_eq!(bootstrap_step(true, &[], &[None, has]), Stop);
        assert_eq!(bootstrap_step(true, &[None], &[has]), Stop);
        // A leader reached it meanwhile.
        assert_eq!(bootstrap_step(false, &[fresh], &[]), Stop);
    }

    #[test]
    fn another_nodes_or_clusters_data_is_refused_naming_both_ids() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join(crate::log::META_PROPERTIES),
            "version=1\nnode.id=2\ncluster.id=AAAAAAAAAAAAAAAAAAAAAQ\n",
        )
        .unwrap();
        let e = check_meta_properties(&options(dir.path(), 1, None))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("stored node.id 2") && e.contains("configured node.id 1"),
            "{e}"
        );
        let e = check_meta_properties(&options(dir.path(), 2, Some("other")))
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("stored cluster.id AAAAAAAAAAAAAAAAAAAAAQ")
                && e.contains("configured cluster.id other"),
            "{e}"
        );
        assert_eq!(
            check_meta_properties(&options(dir.path(), 2, None))
                .unwrap()
                .as_deref(),
            Some("AAAAAAAAAAAAAAAAAAAAAQ")
        );
    }
}
