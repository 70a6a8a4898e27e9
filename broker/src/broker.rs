//! The broker's shared state and the operations several APIs share: topic creation (by
//! CreateTopics and by auto-creation), partition lookup, producer-id allocation, and the
//! background tasks (retention, checkpoints) with their clean shutdown.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{self, BrokerConfig};
use crate::controller::service::ControllerTimers;
use crate::controller::{Controller, ControllerConfig, ControllerReply, ControllerRequest};
use crate::error::ApiError;
use crate::group::{self, CoordinatorHost, GroupCoordinator, GroupLimits, OFFSETS_TOPIC};
use crate::lifecycle::{BrokerLifecycle, ControllerChannel, ControllerForwarder};
use crate::log::{LogConfig, LogManager, PartitionLog, TopicPartition};
use crate::metadata::quorum::observer::ObserverStore;
use crate::metadata::quorum::QuorumStore;
use crate::metadata::{
    BrokerEndpoint, BrokerRegistration, LocalMetadataStore, MetadataImage, MetadataRecord,
    MetadataStore, PartitionState, TopicImage,
};
use crate::replica::fetch_session::FetchSessionCache;
use crate::replica::{Partition, ReplicaManager};
use crate::time::now_ms;
use crate::txn::coordinator::{TxnCoordinator, TxnHost};
use crate::txn::markers::{self, MarkerChannels};
use crate::txn::state::TxnPartition;
use crate::txn::TRANSACTION_STATE_TOPIC;

mod react;

/// Where the metadata store lives, inside the first log dir (see [`crate::log::METADATA_DIR`]).
pub use crate::log::METADATA_DIR;

/// Kafka's `log.initial.task.delay.ms` default: the log flusher's first run comes this long
/// after start-up.
const LOG_INITIAL_TASK_DELAY_MS: u64 = 30_000;

/// Producer ids are reserved from the metadata store in blocks, so a restart never hands
/// out an id twice without writing the store on every InitProducerId.
const PRODUCER_ID_BLOCK: i64 = 1000;

/// A topic to create (CreateTopics, auto-creation); the controller decides it.
pub use crate::controller::NewTopic;

/// One running broker.
pub struct Broker {
    config: BrokerConfig,
    metadata: Arc<dyn MetadataStore>,
    logs: Arc<LogManager>,
    /// Hosted partitions with their waiting fetches.
    replicas: ReplicaManager,
    /// Incremental fetch sessions (KIP-227), sharded with a lock per shard.
    fetch_sessions: FetchSessionCache,
    /// (next id, end of the reserved block); async because reserving a block writes the store.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// The static config with dynamic broker configs applied; rebuilt when those change.
    effective: std::sync::RwLock<Arc<BrokerConfig>>,
    groups: GroupCoordinator,
    /// The transaction coordinator (its completions run in the background, hence shared).
    txns: Arc<TxnCoordinator>,
    /// The transaction coordinator's connections to the other brokers, for the markers of
    /// partitions they lead.
    markers: Arc<MarkerChannels>,
    /// This broker itself, for the transaction coordinator's background work.
    me: std::sync::OnceLock<std::sync::Weak<Broker>>,
    /// Serialises topic-level administration so two CreateTopics for one name cannot race.
    admin: tokio::sync::Mutex<()>,
    /// The route to the active controller (this node's own, or forwarded).
    channel: Arc<ControllerChannel>,
    /// This broker's registration and heartbeats.
    lifecycle: Arc<BrokerLifecycle>,
    /// The last metadata image this node acted on (see [`Broker::react`]).
    applied: tokio::sync::Mutex<Arc<MetadataImage>>,
}

/// How long a WriteTxnMarkers request to another broker waits for its answer (Kafka's marker
/// channel uses `request.timeout.ms`, 30 s by default); the leader answers sooner, after its
/// acks=all wait of at most `offsets.commit.timeout.ms`.
const MARKER_REQUEST_TIMEOUT: Duration = Duration::from_millis(30_000);

/// How long an administrative request waits for the controller's answer and for this
/// node's image to include the change (Kafka's default `request.timeout.ms`).
const CONTROLLER_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

impl Broker {
    /// Opens the metadata store and every partition log (recovering after a crash) and makes
    /// sure each partition the metadata knows has its log.
    pub fn open(config: BrokerConfig) -> anyhow::Result<Arc<Broker>> {
        let first_dir: PathBuf = config
            .log_dirs
            .first()
            .cloned()
            .context("log.dirs is empty")?;
        std::fs::create_dir_all(&first_dir).with_context(|| {
            format!(
                "cannot create log directory {} (log.dirs)",
                first_dir.display()
            )
        })?;
        let store = LocalMetadataStore::open(
            &first_dir.join(METADATA_DIR),
            config.node_id,
            config.cluster_id.as_deref(),
        )
        .context("cannot open the cluster metadata store")?;
        let store = Arc::new(store);
        let broker = Broker::open_with_store(config, store.clone(), None)?;
        broker.register_single_node(&store)?;
        Ok(broker)
    }

    /// Opens every partition log over `store` (the single node's local store, or the
    /// replicated quorum with `forwarder` reaching the other nodes' controllers). Nodes with
    /// the controller role run a [`Controller`] that decides when this node is active.
    pub fn open_with_store(
        config: BrokerConfig,
        store: Arc<dyn MetadataStore>,
        forwarder: Option<Arc<dyn ControllerForwarder>>,
    ) -> anyhow::Result<Arc<Broker>> {
        let image = store.image();
        let soft_limit = crate::fd_budget::raise_nofile_limit();
        let cache_slots = config
            .segment_cache_slots
            .unwrap_or_else(|| crate::fd_budget::default_segment_cache_slots(soft_limit));
        let (mut dirs, mut segments) = (0, 0);
        for dir in &config.log_dirs {
            let (p, s) = crate::fd_budget::count_segments(dir);
            dirs += p;
            segments += s;
        }
        let hosted = image
            .topics
            .values()
            .flat_map(|t| t.partitions.iter())
            .filter(|p| p.replicas.contains(&config.node_id))
            .count() as u64;
        crate::fd_budget::check_startup(
            dirs,
            segments,
            hosted.saturating_sub(dirs),
            soft_limit,
            crate::fd_budget::open_fds(),
            cache_slots,
        )
        .map_err(anyhow::Error::msg)?;
        crate::log::segment_files::segment_file_cache()
            .set_capacity(usize::try_from(cache_slots).unwrap_or(usize::MAX));
        tracing::info!(
            open_files_limit = soft_limit,
            segment_cache_slots = cache_slots,
            "rolled segments' files are opened on demand and kept in a cache of {cache_slots} slots"
        );
        let config_for = |topic: &str| {
            image
                .topic(topic)
                .map(|t| config::effective_log_config(&config, &t.configs))
        };
        let logs = LogManager::open(
            &config.log_dirs,
            config.node_id,
            &image.cluster_id,
            &config_for,
        )
        .context("cannot open the log directories")?;
        let effective = config
            .with_dynamic(
                &image.broker_config(&config.node_id.to_string()),
                &image.broker_config(""),
            )
            .unwrap_or_else(|e| {
                warn!(error = %e, "ignoring invalid dynamic broker configs");
                config.clone()
            });
        let limits = GroupLimits {
            min_session_timeout_ms: config.group_min_session_timeout_ms,
            max_session_timeout_ms: config.group_max_session_timeout_ms,
            initial_rebalance_delay_ms: config.group_initial_rebalance_delay_ms,
            max_size: usize::MAX,
            consumer_session_timeout_ms: config.group_consumer_session_timeout_ms,
            consumer_max_size: usize::try_from(config.group_consumer_max_size)
                .unwrap_or(usize::MAX),
            migration_policy: config.group_consumer_migration_policy,
        };
        let is_controller = config.process_roles.is_empty()
            || config.process_roles.iter().any(|r| r == "controller");
        let controller = is_controller.then(|| {
            Arc::new(Controller::new(
                config.node_id,
                store.clone(),
                ControllerConfig::from_broker(&config),
            ))
        });
        let channel = Arc::new(ControllerChannel::new(
            config.node_id,
            store.clone(),
            controller,
            forwarder,
            CONTROLLER_REQUEST_TIMEOUT,
        ));
        let lifecycle = Arc::new(BrokerLifecycle::new(
            config.node_id,
            config.broker_rack.clone(),
            registration_endpoints(&config),
            Duration::from_millis(config.broker_heartbeat_interval_ms.max(10) as u64),
        ));
        let broker = Broker {
            groups: GroupCoordinator::new(limits),
            txns: Arc::new(TxnCoordinator::default()),
            markers: Arc::new(MarkerChannels::new(config.node_id, MARKER_REQUEST_TIMEOUT)),
            me: std::sync::OnceLock::new(),
            effective: std::sync::RwLock::new(Arc::new(effective)),
            // Ids come in blocks from the controller; the first request fetches one.
            producer_ids: tokio::sync::Mutex::new((0, 0)),
            channel,
            lifecycle,
            metadata: store,
            logs: Arc::new(logs),
            replicas: ReplicaManager::new(config.replica_lag_time_max_ms),
            fetch_sessions: FetchSessionCache::new(
                config.max_incremental_fetch_session_cache_slots.max(0) as usize,
            ),
            admin: tokio::sync::Mutex::new(()),
            // The logs of `image` are opened below; the roles it gives are taken by the
            // reaction loop's first pass.
            applied: tokio::sync::Mutex::new(image.clone()),
            config,
        };
        for topic in image.topics.values() {
            let config = broker.log_config(&topic.configs);
            create_logs(&broker.logs, broker.node_id(), topic, config)
                .with_context(|| format!("cannot open the logs of topic {}", topic.name))?;
        }
        broker.groups.load(&broker);
        info!(
            node_id = broker.config.node_id,
            cluster_id = %image.cluster_id,
            topics = image.topics.len(),
            partitions = broker.logs.partitions().len(),
            "broker started"
        );
        let broker = Arc::new(broker);
        let _ = broker.me.set(Arc::downgrade(&broker));
        Ok(broker)
    }

    /// Starts a node of a replicated cluster (`controller.quorum.voters` names several
    /// nodes, or this node has one role only): joins the metadata quorum as a voter, or as
    /// an observer when it is broker-only, waits until the quorum has told it the cluster
    /// id, opens the logs, and (a voter) answers controller requests forwarded by other nodes
    /// with its own controller. Answers the broker and its quorum member (to shut down last).
    pub async fn start_replicated(
        config: BrokerConfig,
    ) -> anyhow::Result<(Arc<Broker>, QuorumMember)> {
        if config.quorum.is_observer() {
            return Self::start_observer(config).await;
        }
        let (quorum, cluster_id) = crate::controller_node::join_quorum(&config).await?;
        info!(%cluster_id, "joined the metadata quorum");
        let forwarder = Arc::new(QuorumForwarder(quorum.clone()));
        let broker = Self::open_replicated(config, quorum.clone(), forwarder).await?;
        if let Some(controller) = broker.channel.local_controller().cloned() {
            crate::controller_node::serve_forwarded(&quorum, controller);
        }
        Ok((broker, QuorumMember::Voter(quorum)))
    }

    /// Starts a broker-only node: observes the quorum (fetching the metadata log from the
    /// active controller until caught up), then opens the logs; its controller requests
    /// go to the active controller.
    async fn start_observer(config: BrokerConfig) -> anyhow::Result<(Arc<Broker>, QuorumMember)> {
        let observer = ObserverStore::start(&config)
            .await
            .context("cannot start observing the metadata quorum")?;
        let cluster_id = observer
            .wait_for_cluster_id(config.server_max_startup_time())
            .await
            .context("cannot fetch the metadata log within server.max.startup.time.ms")?;
        info!(%cluster_id, "caught up with the metadata quorum as an observer");
        let forwarder = Arc::new(ObserverForwarder(observer.clone()));
        let broker = Self::open_replicated(config, observer.clone(), forwarder).await?;
        Ok((broker, QuorumMember::Observer(observer)))
    }

    /// [`Self::open_with_store`] for a node of a replicated cluster, once its quorum member
    /// (voter or observer) knows the cluster id: `store` is that member's view of the
    /// metadata log and `forwarder` reaches the active controller. Opening the logs reads
    /// the disk, so it runs on a blocking thread.
    async fn open_replicated(
        config: BrokerConfig,
        store: Arc<dyn MetadataStore>,
        forwarder: Arc<dyn ControllerForwarder>,
    ) -> anyhow::Result<Arc<Broker>> {
        tokio::task::spawn_blocking(move || Broker::open_with_store(config, store, Some(forwarder)))
            .await
            .context("start-up panicked")?
    }

    /// A single node is its own controller and trivially caught up with its own metadata:
    /// it registers, unfenced, before serving (replacing its previous run's registration
    /// without the fencing a restarted cluster member goes through: there is no other broker
    /// to move leaderships to), so its image lists it as Kafka's would. The lifecycle's later
    /// registration through the controller carries the same incarnation and changes nothing.
    fn register_single_node(&self, store: &LocalMetadataStore) -> anyhow::Result<()> {
        let image = store.image();
        let epoch = image.offset + 1;
        let registration = BrokerRegistration {
            id: self.config.node_id,
            incarnation_id: self.lifecycle.incarnation_id(),
            epoch,
            rack: self.config.broker_rack.clone(),
            endpoints: registration_endpoints(&self.config),
            fenced: false,
            in_controlled_shutdown: false,
        };
        store
            .commit_blocking(&[MetadataRecord::RegisterBroker(registration)])
            .context("cannot record this node's registration")?;
        self.lifecycle.set_registered(epoch);
        Ok(())
    }

    /// The static configuration.
    pub fn config(&self) -> &BrokerConfig {
        &self.config
    }

    /// This broker's id.
    pub fn node_id(&self) -> i32 {
        self.config.node_id
    }

    /// The current metadata image.
    pub fn image(&self) -> Arc<MetadataImage> {
        self.metadata.image()
    }

    /// The metadata quorum's state as this node sees it (a follower voter knows only the
    /// leader, epoch and high watermark; DescribeQuorum asks the active controller instead).
    pub fn quorum_info(&self) -> crate::metadata::QuorumInfo {
        self.metadata.quorum_info()
    }

    /// The `kraft.version` feature level of this node's metadata store (ApiVersions): 1 in a
    /// replicated cluster, whose voters can change at runtime, 0 for the single node.
    pub fn kraft_version(&self) -> i16 {
        self.metadata.kraft_version()
    }

    /// The group coordinator.
    pub fn groups(&self) -> &GroupCoordinator {
        &self.groups
    }

    /// The transaction coordinator.
    pub fn txns(&self) -> &Arc<TxnCoordinator> {
        &self.txns
    }

    /// This broker as shared (for work that outlives a request); `None` only while it is
    /// being built or dropped.
    pub fn shared(&self) -> Option<Arc<Broker>> {
        self.me.get().and_then(std::sync::Weak::upgrade)
    }

    /// The log manager.
    pub fn logs(&self) -> &LogManager {
        &self.logs
    }

    /// Host and port clients of `listener` should use for this broker: the advertised
    /// address of that listener, as Kafka answers Metadata, FindCoordinator and
    /// DescribeCluster on the listener the request came in on. `None` if `listener` is not
    /// in `advertised.listeners` (which may list a subset of `listeners`): Kafka then leaves
    /// this broker out of its answers on that listener.
    pub fn advertised_endpoint(&self, listener: &str) -> Option<(String, i32)> {
        self.config
            .advertised_listeners
            .iter()
            .find(|l| l.name == listener)
            .map(|l| {
                let host = if l.host.is_empty() || l.host == "0.0.0.0" {
                    "127.0.0.1".to_string()
                } else {
                    l.host.clone()
                };
                (host, i32::from(l.port))
            })
    }

    /// Ids of live brokers: the registered, unfenced ones (this broker alone until it has
    /// registered).
    pub fn live_brokers(&self) -> Vec<i32> {
        let live: Vec<i32> = self
            .image()
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.id)
            .collect();
        if live.is_empty() {
            vec![self.config.node_id]
        } else {
            live
        }
    }

    /// Host and port of broker `id` on `listener`, as clients of that listener reach it:
    /// this broker's own advertised address, or another's from its registration. `None` if
    /// the broker is unknown, fenced, or has no endpoint on that listener.
    pub fn endpoint_of(
        &self,
        image: &MetadataImage,
        id: i32,
        listener: &str,
    ) -> Option<(String, i32)> {
        if id == self.config.node_id {
            return self.advertised_endpoint(listener);
        }
        let broker = image.brokers.get(&id).filter(|b| !b.fenced)?;
        broker
            .endpoints
            .iter()
            .find(|e| e.listener == listener)
            .map(|e| (e.host.clone(), i32::from(e.port)))
    }

    /// Broker `id`'s `broker.rack`: this broker's own setting, or another's from its
    /// registration.
    pub fn rack_of(&self, image: &MetadataImage, id: i32) -> Option<String> {
        if id == self.config.node_id {
            self.config.broker_rack.clone()
        } else {
            image.brokers.get(&id).and_then(|b| b.rack.clone())
        }
    }

    /// The live brokers reachable on `listener`: (id, host, port, rack), by id. This broker is
    /// listed even before its registration reaches the image.
    pub fn brokers_on(
        &self,
        image: &MetadataImage,
        listener: &str,
    ) -> Vec<(i32, String, i32, Option<String>)> {
        let mut ids: Vec<i32> = image
            .brokers
            .values()
            .filter(|b| !b.fenced)
            .map(|b| b.id)
            .collect();
        if !ids.contains(&self.config.node_id) {
            ids.push(self.config.node_id);
            ids.sort_unstable();
        }
        ids.into_iter()
            .filter_map(|id| {
                let (host, port) = self.endpoint_of(image, id, listener)?;
                Some((id, host, port, self.rack_of(image, id)))
            })
            .collect()
    }

    /// The active controller's node id, if one is known.
    pub fn active_controller(&self) -> Option<i32> {
        self.metadata.active_controller()
    }

    /// The controller id Metadata and DescribeCluster tell clients. Kafka 4.1's KRaft brokers
    /// answer a random live broker, never the active controller (which may be a
    /// controller-only node clients cannot reach): whichever broker receives an admin request
    /// forwards it to the active controller.
    ///
    /// Oxbow answers itself instead, a deliberate difference in *which* broker, not in what
    /// the id means. The broker answering this request is the one broker the client has just
    /// reached; a random pick can name a broker that died a moment ago and is still listed
    /// until the controller fences it, and an admin client that sends its CreateTopics there
    /// waits its whole request timeout (measured: the 2 s that made the controller-failover
    /// bench vary 0.05–1.31x). Admin requests are small and forwarded anyway, so spreading
    /// them over brokers buys nothing. A node without the broker role does not serve clients;
    /// should one be asked, it keeps Kafka's answer.
    pub fn controller_id_for_clients(&self) -> i32 {
        let me = self.config.node_id;
        let is_broker = self.config.process_roles.is_empty()
            || self.config.process_roles.iter().any(|r| r == "broker");
        if is_broker {
            return me;
        }
        let live = self.live_brokers();
        let pick = uuid::Uuid::new_v4().as_u128() % live.len().max(1) as u128;
        live.get(pick as usize).copied().unwrap_or(-1)
    }

    /// How many of `partitions` this broker hosts (the logs a decision would create here).
    fn hosted(&self, partitions: &[PartitionState]) -> usize {
        partitions
            .iter()
            .filter(|p| p.replicas.contains(&self.config.node_id))
            .count()
    }

    /// The effective log settings for a topic's overrides.
    pub fn log_config(&self, overrides: &BTreeMap<String, String>) -> LogConfig {
        config::effective_log_config(&self.effective_config(), overrides)
    }

    /// The static config with the dynamic broker configs (`kafka-configs.sh --entity-type
    /// brokers --alter`) layered on top, as log and topic defaults see it.
    pub fn effective_config(&self) -> Arc<BrokerConfig> {
        self.effective
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// The fetch session cache (each call locks one of its shards, never across a read).
    pub(crate) fn fetch_sessions(&self) -> &FetchSessionCache {
        &self.fetch_sessions
    }

    /// The log of `topic`/`partition` if this broker leads it; UNKNOWN_TOPIC_OR_PARTITION if
    /// either is unknown, NOT_LEADER_OR_FOLLOWER if another broker leads it.
    pub(crate) fn leader_log(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(Arc<Mutex<PartitionLog>>, PartitionState), ApiError> {
        let (p, state) = self.leader_partition(topic, partition)?;
        Ok((p.log().clone(), state))
    }

    /// The partition `topic`/`partition` (its log and waiting fetches) if this broker leads
    /// it; errors as [`Self::leader_log`].
    pub(crate) fn leader_partition(
        &self,
        topic: &str,
        partition: i32,
    ) -> Result<(Arc<Partition>, PartitionState), ApiError> {
        let image = self.image();
        let state = image
            .topic(topic)
            .and_then(|t| {
                usize::try_from(partition)
                    .ok()
                    .and_then(|p| t.partitions.get(p))
            })
            .cloned()
            .ok_or_else(|| ApiError::code(ResponseError::UnknownTopicOrPartition))?;
        if state.leader != self.node_id() {
            return Err(ApiError::code(ResponseError::NotLeaderOrFollower));
        }
        let tp = TopicPartition {
            topic: topic.to_string(),
            partition,
        };
        let partition = self
            .replicas
            .get_or_create(&tp, || self.logs.get(&tp))
            .ok_or_else(|| ApiError::code(ResponseError::UnknownTopicOrPartition))?;
        // Applies the committed state if the partition has not seen it yet (a no-op
        // otherwise), so the partition leads in the image's leader epoch with its ISR.
        partition.become_leader(&state, now_ms())?;
        Ok((partition, state))
    }

    /// The hosted partitions: their roles, ISR, high watermarks and delayed operations.
    pub(crate) fn replica_manager(&self) -> &ReplicaManager {
        &self.replicas
    }

    /// Refuses `adding` new partitions that would exceed `oxbow.max.partitions` or the
    /// descriptors left under the open files limit (see [`crate::fd_budget`]), with
    /// POLICY_VIOLATION and a message saying which and why: a broker that runs out of
    /// descriptors half-way through creating logs cannot serve, nor start again.
    fn check_partition_budget(&self, adding: usize) -> Result<(), ApiError> {
        let (soft, _) = crate::fd_budget::nofile_limits();
        let refusal = crate::fd_budget::refuse_new_partitions(
            adding as u64,
            self.logs.partitions().len() as u64,
            self.config.max_partitions,
            soft,
            crate::fd_budget::open_fds(),
            crate::log::segment_files::segment_file_cache().capacity() as u64,
        );
        match refusal {
            Some(why) => Err(ApiError::new(ResponseError::PolicyViolation, why)),
            None => Ok(()),
        }
    }

    /// True for a node that is a cluster of its own (no quorum peers).
    pub fn is_single_node(&self) -> bool {
        !self.channel.forwards()
    }

    /// Has the active controller decide and commit `request` (see [`ControllerChannel`]).
    pub(crate) async fn submit(
        &self,
        request: ControllerRequest,
    ) -> Result<ControllerReply, ApiError> {
        self.channel.submit(request).await.map_err(ApiError::from)
    }

    /// Waits until this node's image satisfies `done` (a committed change has reached it),
    /// answering that image; REQUEST_TIMED_OUT after [`CONTROLLER_REQUEST_TIMEOUT`].
    async fn await_image(
        &self,
        done: impl Fn(&MetadataImage) -> bool,
    ) -> Result<Arc<MetadataImage>, ApiError> {
        let mut images = self.metadata.subscribe();
        let waited = tokio::time::timeout(CONTROLLER_REQUEST_TIMEOUT, async {
            loop {
                let image = images.borrow_and_update().clone();
                if done(&image) {
                    return Some(image);
                }
                if images.changed().await.is_err() {
                    return None;
                }
            }
        })
        .await;
        match waited {
            Ok(Some(image)) => Ok(image),
            _ => Err(ApiError::new(
                ResponseError::RequestTimedOut,
                "the change was committed but has not reached this broker yet",
            )),
        }
    }

    /// Creates a topic after checking it as Apache Kafka's controller does. With
    /// `validate_only` nothing changes. Errors carry Kafka's code and message.
    pub(crate) async fn create_topic(
        &self,
        new: NewTopic,
        validate_only: bool,
    ) -> Result<TopicImage, ApiError> {
        let _admin = self.admin.lock().await;
        // The controller plans the topic first, so this broker can refuse what it could not
        // host (its descriptor budget) before anything is committed.
        let planned = match self
            .submit(ControllerRequest::CreateTopic {
                topic: new.clone(),
                validate_only: true,
            })
            .await?
        {
            ControllerReply::TopicCreated(topic) => topic,
            other => return Err(unexpected(&other)),
        };
        self.check_partition_budget(self.hosted(&planned.partitions))?;
        if validate_only {
            return Ok(planned);
        }
        let topic = match self
            .submit(ControllerRequest::CreateTopic {
                topic: new,
                validate_only: false,
            })
            .await?
        {
            ControllerReply::TopicCreated(topic) => topic,
            other => return Err(unexpected(&other)),
        };
        let id = topic.id;
        // Acting on the image creates this broker's logs (on the blocking pool: thousands
        // of partitions are thousands of directories and fsyncs) before the client hears
        // back, so it can produce to the topic here at once.
        let image = self
            .await_image(|i| i.topic(&topic.name).is_some_and(|t| t.id == id))
            .await?;
        self.react(image).await?;
        info!(topic = %topic.name, partitions = topic.partitions.len(), "created topic");
        Ok(topic)
    }

    /// Deletes a topic and its logs.
    pub(crate) async fn delete_topic(&self, name: &str) -> Result<uuid::Uuid, ApiError> {
        let _admin = self.admin.lock().await;
        let id = match self
            .submit(ControllerRequest::DeleteTopic {
                name: name.to_string(),
            })
            .await?
        {
            ControllerReply::TopicDeleted { id } => id,
            other => return Err(unexpected(&other)),
        };
        let image = self
            .await_image(|i| i.topic(name).is_none_or(|t| t.id != id))
            .await?;
        // Acting on the image stops serving the partitions and deletes their logs.
        self.react(image).await?;
        info!(topic = %name, "deleted topic");
        Ok(id)
    }

    /// Raises a topic's partition count to `count` (CreatePartitions). Decreases are refused
    /// with Kafka's INVALID_PARTITIONS message.
    pub(crate) async fn create_partitions(
        &self,
        name: &str,
        count: i32,
        assignments: Option<Vec<Vec<i32>>>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let _admin = self.admin.lock().await;
        let image = self.image();
        let current = image.topic(name).map_or(0, |t| t.partitions.len());
        // The placement is the controller's; the budget check counts every new partition as
        // possibly hosted here (exact on one broker, an upper bound in a cluster).
        let adding = usize::try_from(count).unwrap_or(0).saturating_sub(current);
        let request = |validate_only| ControllerRequest::CreatePartitions {
            topic: name.to_string(),
            count,
            assignments: assignments.clone(),
            validate_only,
        };
        self.submit(request(true)).await?;
        self.check_partition_budget(adding)?;
        if validate_only {
            return Ok(());
        }
        self.submit(request(false)).await?;
        let wanted = usize::try_from(count).unwrap_or(usize::MAX);
        let next = self
            .await_image(|i| i.topic(name).is_some_and(|t| t.partitions.len() >= wanted))
            .await?;
        self.react(next).await?;
        info!(topic = %name, from = current, to = count, "increased partitions");
        Ok(())
    }

    /// Replaces a topic's config overrides after validating each entry.
    pub(crate) async fn set_topic_configs(
        &self,
        name: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let _admin = self.admin.lock().await;
        self.submit(ControllerRequest::AlterTopicConfigs {
            topic: name.to_string(),
            configs: configs.clone(),
            validate_only,
        })
        .await?;
        if validate_only {
            return Ok(());
        }
        let image = self
            .await_image(|i| i.topic(name).is_none_or(|t| t.configs == configs))
            .await?;
        self.react(image).await
    }

    /// Replaces the dynamic configs of a broker entity (`""` = cluster default).
    pub(crate) async fn set_broker_configs(
        &self,
        entity: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let _admin = self.admin.lock().await;
        self.submit(ControllerRequest::AlterBrokerConfigs {
            entity: entity.to_string(),
            configs: configs.clone(),
            validate_only,
        })
        .await?;
        if validate_only {
            return Ok(());
        }
        let image = self
            .await_image(|i| i.broker_config(entity) == configs)
            .await?;
        // Topic defaults may have changed (log.retention.ms, log.segment.bytes, ...):
        // acting on the image gives every log its new effective settings.
        self.react(image).await
    }

    /// A coordinator's append to its internal `topic` (see
    /// [`CoordinatorHost::append_offsets`] for how it is acknowledged), with origin
    /// coordinator: transactional offset commits carry a producer id and epoch but no
    /// sequence.
    pub(crate) async fn append_internal(
        &self,
        topic: &str,
        partition: i32,
        batch: bytes::Bytes,
    ) -> Result<i64, ApiError> {
        let (handle, _) = self.leader_partition(topic, partition)?;
        let overrides = self
            .image()
            .topic(topic)
            .map(|t| t.configs.clone())
            .unwrap_or_default();
        let min_insync_replicas =
            config::effective_min_insync_replicas(&self.effective_config(), &overrides);
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(self.config.offsets_commit_timeout_ms.max(1) as u64);
        // An append may roll a segment and fsync (flush.messages): on the blocking pool.
        let appending = handle.clone();
        let (info, leader_epoch) = tokio::task::spawn_blocking(move || {
            let appended = appending.append_records_to_leader_from(
                &batch,
                -1,
                min_insync_replicas,
                now_ms(),
                crate::log::AppendOrigin::Coordinator,
            )?;
            let mut log = appending.log().lock().unwrap_or_else(|p| p.into_inner());
            if log.flush_due_by_messages() {
                log.flush()?;
            }
            Ok::<_, crate::replica::ReplicaError>(appended)
        })
        .await
        .map_err(|e| ApiError::new(ResponseError::UnknownServerError, e.to_string()))??;
        let end = info.last_offset + 1;
        handle
            .wait_for_acks_all(leader_epoch, end, min_insync_replicas, deadline)
            .await?;
        Ok(end)
    }

    /// A fresh producer id, never handed out before by this cluster: ids come from the
    /// controller in blocks, so a restart (or another broker) never repeats one.
    pub(crate) async fn allocate_producer_id(&self) -> Result<i64, ApiError> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            match self
                .submit(ControllerRequest::AllocateProducerIds {
                    broker_id: self.node_id(),
                    broker_epoch: self.lifecycle.state().broker_epoch,
                    count: PRODUCER_ID_BLOCK,
                })
                .await?
            {
                ControllerReply::ProducerIds { first, count } => *ids = (first, first + count),
                other => return Err(unexpected(&other)),
            }
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
    }

    /// Registers this broker with the active controller and heartbeats until it is
    /// unfenced (or `wait` passes: a broker that cannot reach a quorum still starts, and
    /// keeps trying in [`Self::run_lifecycle`]).
    pub async fn register(&self, wait: Duration) {
        let cluster_id = self.image().cluster_id.clone();
        let deadline = tokio::time::Instant::now() + wait;
        let registered = tokio::time::timeout_at(
            deadline,
            self.lifecycle.register(&self.channel, &cluster_id),
        )
        .await;
        if registered.is_err() {
            warn!("not registered with a controller yet; serving and retrying");
            return;
        }
        while tokio::time::Instant::now() < deadline {
            match self
                .lifecycle
                .heartbeat(&self.channel, self.image().offset, false)
                .await
            {
                Ok(reply) if !reply.is_fenced => return,
                Ok(_) => {}
                Err(e) => warn!(error = %e, "heartbeat failed"),
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        warn!("still fenced by the controller; serving and retrying");
    }

    /// Heartbeats (and the controller's timers on a controller node) until `shutdown`. A
    /// single node does neither: it is the only broker and its own controller, so there is
    /// no session to lose (a starved heartbeat task must not fence the whole cluster).
    pub async fn run_lifecycle(self: Arc<Self>, shutdown: watch::Receiver<bool>) {
        if self.is_single_node() {
            return;
        }
        let controller = self.channel.local_controller().cloned().map(|c| {
            let timers = ControllerTimers::from_broker(&self.config);
            tokio::spawn(c.run(timers, shutdown.clone()))
        });
        self.lifecycle
            .clone()
            .run(
                self.channel.clone(),
                self.metadata.clone(),
                self.image().cluster_id.clone(),
                shutdown,
            )
            .await;
        if let Some(c) = controller {
            let _ = c.await;
        }
    }

    /// Controlled shutdown (SIGTERM, `controlled.shutdown.enable`): leaderships move to other
    /// in-sync replicas before this broker exits. A single node has nowhere to move them.
    pub async fn controlled_shutdown(&self) {
        if !self.config.controlled_shutdown_enable || self.is_single_node() {
            return;
        }
        let done = self
            .lifecycle
            .controlled_shutdown(
                &self.channel,
                self.metadata.as_ref(),
                CONTROLLER_REQUEST_TIMEOUT,
            )
            .await;
        if done {
            info!("controlled shutdown complete: this broker leads no partition");
        } else {
            warn!("controlled shutdown did not complete in time; exiting anyway");
        }
    }

    /// Periodic work: retention every `log.retention.check.interval.ms`, offset checkpoints
    /// every minute (Kafka's `log.flush.offset.checkpoint.interval.ms`), compaction, and the
    /// log flusher (`flush.ms`, see [`LogManager::flush_dirty_logs`]); disk work runs on the
    /// blocking pool. Runs until `shutdown`.
    pub async fn run_background(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        let retention_every =
            Duration::from_millis(self.config.log_retention_check_interval_ms.max(1) as u64);
        let mut retention = tokio::time::interval(retention_every);
        let mut checkpoint = tokio::time::interval(Duration::from_secs(60));
        // Kafka's log.cleaner.backoff.ms: how often compacted logs are checked.
        let mut compaction = tokio::time::interval(Duration::from_millis(
            self.config.log_cleaner_backoff_ms.max(1) as u64,
        ));
        compaction.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Kafka's isr-expiration task runs every half replica.lag.time.max.ms.
        let mut isr_expiration = tokio::time::interval(Duration::from_millis(
            (self.config.replica_lag_time_max_ms / 2).max(1) as u64,
        ));
        isr_expiration.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Kafka's log flusher: first run after log.initial.task.delay.ms (30 s), then every
        // log.flush.scheduler.interval.ms; it flushes the logs whose flush.ms has passed.
        // With the default interval (Long.MAX_VALUE) it runs once, as Kafka's does.
        let flush_interval = match self.config.log_flush_scheduler_interval_ms {
            i64::MAX => None,
            ms => Some(Duration::from_millis(ms.max(1) as u64)),
        };
        let mut next_flush_check =
            Some(tokio::time::Instant::now() + Duration::from_millis(LOG_INITIAL_TASK_DELAY_MS));
        retention.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        checkpoint.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        // Rolled segments are fsynced here shortly after the roll, not by the append that
        // rolled them (Kafka schedules that flush at once on its scheduler).
        let mut rolled = tokio::time::interval(Duration::from_millis(100));
        rolled.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = retention.tick() => {
                    let broker = self.clone();
                    let _ = tokio::task::spawn_blocking(move || broker.logs.run_retention(now_ms())).await;
                }
                _ = sleep_until_some(next_flush_check) => {
                    let broker = self.clone();
                    let _ = tokio::task::spawn_blocking(move || broker.logs.flush_dirty_logs(now_ms())).await;
                    next_flush_check = flush_interval.and_then(|i| tokio::time::Instant::now().checked_add(i));
                }
                _ = rolled.tick() => {
                    if self.logs.has_rolled_segments() {
                        let broker = self.clone();
                        let _ = tokio::task::spawn_blocking(move || broker.logs.flush_rolled_segments()).await;
                    }
                }
                _ = isr_expiration.tick() => {
                    self.replicas.shrink_isrs(now_ms());
                }
                _ = compaction.tick() => {
                    let broker = self.clone();
                    let _ = tokio::task::spawn_blocking(move || broker.logs.run_compaction(now_ms())).await;
                }
                _ = checkpoint.tick() => {
                    let broker = self.clone();
                    let _ = tokio::task::spawn_blocking(move || {
                        if let Err(e) = broker.logs.checkpoint() {
                            warn!(error = %e, "writing offset checkpoints failed");
                        }
                    }).await;
                }
                _ = stopped(&mut shutdown) => break,
            }
        }
    }

    /// Flushes every log and writes the clean-shutdown marker.
    pub fn shutdown(&self) -> anyhow::Result<()> {
        self.logs
            .shutdown()
            .context("clean shutdown of the logs failed")?;
        info!("broker stopped cleanly");
        Ok(())
    }
}

/// The group coordinator reaches the broker only through this: topic sizes from the
/// current image, `__consumer_offsets` created through the same path as CreateTopics, and
/// the logs this broker leads.
impl CoordinatorHost for Broker {
    fn partition_count(&self, topic: &str) -> Option<i32> {
        self.image().topic(topic).map(|t| t.partitions.len() as i32)
    }

    fn topic_id(&self, topic: &str) -> Option<uuid::Uuid> {
        self.image().topic(topic).map(|t| t.id)
    }

    fn topic_names(&self) -> (i64, Vec<String>) {
        let image = self.image();
        (image.offset, image.topics.keys().cloned().collect())
    }

    async fn ensure_offsets_topic(&self) -> Result<i32, ApiError> {
        if let Some(count) = self.partition_count(OFFSETS_TOPIC) {
            return Ok(count);
        }
        let config = self.config();
        let new = NewTopic {
            name: OFFSETS_TOPIC.to_string(),
            num_partitions: config.offsets_topic_num_partitions,
            replication_factor: config
                .offsets_topic_replication_factor_for(self.live_brokers().len()),
            assignments: BTreeMap::new(),
            configs: group::offsets_topic_configs(config.offsets_topic_segment_bytes),
        };
        match self.create_topic(new, false).await {
            Ok(t) => Ok(t.partitions.len() as i32),
            // Another group's first request created it meanwhile.
            Err(e) if e.code == ResponseError::TopicAlreadyExists.code() => {
                Ok(self.partition_count(OFFSETS_TOPIC).unwrap_or(1))
            }
            Err(e) => Err(e),
        }
    }

    fn offsets_log(&self, partition: i32) -> Result<(Arc<Mutex<PartitionLog>>, i32), ApiError> {
        let (log, state) = self.leader_log(OFFSETS_TOPIC, partition)?;
        Ok((log, state.leader_epoch))
    }

    /// As a producer with acks=all would (Kafka's coordinator appends, then waits for the
    /// high watermark): refused before appending with NOT_ENOUGH_REPLICAS when the ISR is
    /// below the topic's `min.insync.replicas`; answered once the ISR has the batch, or with
    /// NOT_LEADER_OR_FOLLOWER as soon as this broker stops leading in that epoch, or
    /// REQUEST_TIMED_OUT after `offsets.commit.timeout.ms`.
    async fn append_offsets(&self, partition: i32, batch: bytes::Bytes) -> Result<i64, ApiError> {
        self.append_internal(OFFSETS_TOPIC, partition, batch).await
    }

    fn offsets_retention_ms(&self) -> i64 {
        i64::from(self.config.offsets_retention_minutes) * 60_000
    }
}

/// The transaction coordinator reaches the broker only through this (see [`TxnHost`]).
impl TxnHost for Broker {
    fn txn_topic_partitions(&self) -> Option<i32> {
        self.image()
            .topic(TRANSACTION_STATE_TOPIC)
            .map(|t| t.partitions.len() as i32)
    }

    /// Created as Kafka's `TransactionStateManager.transactionTopicConfigs` says, through the
    /// same path as CreateTopics. The replication factor is capped by the live brokers (as
    /// for `__consumer_offsets`), and `min.insync.replicas` by that factor: Kafka refuses to
    /// create the topic instead, and a single broker with Kafka's defaults then serves no
    /// transactions at all.
    async fn ensure_txn_topic(&self) -> Result<i32, ApiError> {
        if let Some(count) = self.txn_topic_partitions() {
            return Ok(count);
        }
        let config = self.config();
        let rf = config.transaction_state_replication_factor_for(self.live_brokers().len());
        let new = NewTopic {
            name: TRANSACTION_STATE_TOPIC.to_string(),
            num_partitions: config.transaction_state_log_num_partitions,
            replication_factor: rf,
            assignments: BTreeMap::new(),
            configs: crate::txn::records::transaction_state_topic_configs(
                config.transaction_state_log_segment_bytes,
                config.transaction_state_log_min_isr.min(i32::from(rf)),
            ),
        };
        match self.create_topic(new, false).await {
            Ok(t) => Ok(t.partitions.len() as i32),
            Err(e) if e.code == ResponseError::TopicAlreadyExists.code() => {
                Ok(self.txn_topic_partitions().unwrap_or(1))
            }
            Err(e) => Err(e),
        }
    }

    fn txn_log(&self, partition: i32) -> Result<(Arc<Mutex<PartitionLog>>, i32), ApiError> {
        let (log, state) = self.leader_log(TRANSACTION_STATE_TOPIC, partition)?;
        Ok((log, state.leader_epoch))
    }

    async fn append_txn(&self, partition: i32, batch: bytes::Bytes) -> Result<i64, ApiError> {
        self.append_internal(TRANSACTION_STATE_TOPIC, partition, batch)
            .await
    }

    async fn new_producer_id(&self) -> Result<i64, ApiError> {
        self.allocate_producer_id().await
    }

    /// What Kafka's WriteTxnMarkers handler does on the partition leader: the control batch
    /// appended with acks=all. Only partitions this broker leads are written (the coordinator
    /// sends the others' markers to their leaders: [`TxnHost::write_markers`]). On a `__consumer_offsets`
    /// partition the group coordinator then ends the transaction's pending offsets there
    /// (committed or dropped), as Kafka's handler tells it.
    async fn write_marker(
        &self,
        partition: TxnPartition,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<(), ApiError> {
        let offsets_partition = (partition.0 == OFFSETS_TOPIC).then_some(partition.1);
        let write = self.append_marker(
            partition,
            producer_id,
            producer_epoch,
            commit,
            coordinator_epoch,
        );
        match offsets_partition {
            Some(index) => {
                self.groups()
                    .write_txn_marker(index, producer_id, commit, write)
                    .await
            }
            None => write.await,
        }
    }

    /// Routed by this broker's current image (Kafka's marker channel asks its metadata
    /// cache the same way); the local writes and the requests to other brokers run at once.
    async fn write_markers(
        &self,
        partitions: &BTreeSet<TxnPartition>,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Vec<(TxnPartition, i16)> {
        let image = self.image();
        let routes = markers::route(partitions, self.node_id(), |(topic, index)| {
            let t = image.topic(topic)?;
            let p = t.partitions.get(usize::try_from(*index).ok()?)?;
            Some(p.leader)
        });
        let mut results: Vec<(TxnPartition, i16)> =
            routes.gone.into_iter().map(|tp| (tp, 0)).collect();
        let not_leader = ResponseError::NotLeaderOrFollower.code();
        results.extend(routes.leaderless.into_iter().map(|tp| (tp, not_leader)));
        let local = futures::future::join_all(routes.local.into_iter().map(|tp| async move {
            let written = self
                .write_marker(
                    tp.clone(),
                    producer_id,
                    producer_epoch,
                    commit,
                    coordinator_epoch,
                )
                .await;
            (tp, written.map_or_else(|e| e.code, |()| 0))
        }));
        let remote = futures::future::join_all(routes.remote.into_iter().map(
            |(leader, tps)| {
                let address = self.inter_broker_address(&image, leader);
                async move {
                    let Some(address) = address else {
                        // Known as leader but not reachable on the inter-broker listener
                        // (Kafka's `Node.noNode`): retried with a later image.
                        return tps.into_iter().map(|tp| (tp, not_leader)).collect();
                    };
                    // Queued for that broker: sent with the markers of the other
                    // transactions queued for it meanwhile, in one request.
                    let marker = markers::PendingMarker {
                        producer_id,
                        producer_epoch,
                        commit,
                        coordinator_epoch,
                        partitions: tps.clone(),
                    };
                    match self.markers.write(leader, address.clone(), marker).await {
                        Ok(codes) => codes,
                        Err(e) => {
                            warn!(broker = leader, %address, error = %e, "cannot send transaction markers");
                            let code = ResponseError::NetworkException.code();
                            tps.into_iter().map(|tp| (tp, code)).collect::<Vec<_>>()
                        }
                    }
                }
            },
        ));
        let (local, remote) = tokio::join!(local, remote);
        results.extend(local);
        results.extend(remote.into_iter().flatten());
        results
    }

    fn max_transaction_timeout_ms(&self) -> i32 {
        self.config.transaction_max_timeout_ms
    }

    fn abort_timed_out_interval_ms(&self) -> i64 {
        i64::from(
            self.config
                .transaction_abort_timed_out_transaction_cleanup_interval_ms,
        )
    }

    fn transactional_id_expiration_ms(&self) -> i64 {
        i64::from(self.config.transactional_id_expiration_ms)
    }

    fn remove_expired_interval_ms(&self) -> i64 {
        i64::from(
            self.config
                .transaction_remove_expired_transaction_cleanup_interval_ms,
        )
    }
}

impl Broker {
    /// `host:port` of broker `id`'s inter-broker listener (`inter.broker.listener.name`,
    /// PLAINTEXT by default) as it registered it, `None` if it is unknown or fenced.
    fn inter_broker_address(&self, image: &MetadataImage, id: i32) -> Option<String> {
        let listener = self
            .config
            .inter_broker_listener_name
            .as_deref()
            .unwrap_or("PLAINTEXT");
        let broker = image.brokers.get(&id).filter(|b| !b.fenced)?;
        let endpoint = broker
            .endpoints
            .iter()
            .find(|e| e.listener.eq_ignore_ascii_case(listener))?;
        Some(if endpoint.host.contains(':') {
            format!("[{}]:{}", endpoint.host, endpoint.port)
        } else {
            format!("{}:{}", endpoint.host, endpoint.port)
        })
    }

    /// The end-transaction marker appended to `partition` as its leader, acks=all.
    async fn append_marker(
        &self,
        partition: TxnPartition,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Result<(), ApiError> {
        use crate::log::{ControlRecordType, EndTxnMarker};
        let (handle, _) = self.leader_partition(&partition.0, partition.1)?;
        let overrides = self
            .image()
            .topic(&partition.0)
            .map(|t| t.configs.clone())
            .unwrap_or_default();
        let min_insync_replicas =
            config::effective_min_insync_replicas(&self.effective_config(), &overrides);
        let deadline = tokio::time::Instant::now()
            + Duration::from_millis(self.config.offsets_commit_timeout_ms.max(1) as u64);
        let marker = EndTxnMarker {
            control_type: if commit {
                ControlRecordType::Commit
            } else {
                ControlRecordType::Abort
            },
            coordinator_epoch,
        };
        let appending = handle.clone();
        let (info, leader_epoch) = tokio::task::spawn_blocking(move || {
            appending.append_txn_marker(producer_id, producer_epoch, marker, now_ms())
        })
        .await
        .map_err(|e| ApiError::new(ResponseError::UnknownServerError, e.to_string()))??;
        handle
            .wait_for_acks_all(
                leader_epoch,
                info.last_offset + 1,
                min_insync_replicas,
                deadline,
            )
            .await?;
        Ok(())
    }
}

/// Creates (or loads) the logs of `topic`'s partitions that `node_id` hosts, with one fsync
/// of each log dir at the end rather than one per partition. Blocking.
fn create_logs(
    logs: &LogManager,
    node_id: i32,
    topic: &TopicImage,
    config: LogConfig,
) -> Result<(), crate::log::Error> {
    let hosted: Vec<TopicPartition> = topic
        .partitions
        .iter()
        .enumerate()
        .filter(|(_, p)| p.replicas.contains(&node_id))
        .map(|(index, _)| TopicPartition {
            topic: topic.name.clone(),
            partition: index as i32,
        })
        .collect();
    create_logs_of(logs, &hosted, config, topic.id)
}

/// Creates (or loads) the logs of `tps`, all of topic `topic_id`, that do not exist yet,
/// with one fsync of each log dir at the end. Blocking.
fn create_logs_of(
    logs: &LogManager,
    tps: &[TopicPartition],
    config: LogConfig,
    topic_id: uuid::Uuid,
) -> Result<(), crate::log::Error> {
    let missing: Vec<TopicPartition> = tps
        .iter()
        .filter(|tp| logs.get(tp).is_none())
        .cloned()
        .collect();
    logs.create_many(&missing, &config, Some(topic_id))
}

/// Forwards controller requests over the metadata quorum's control channel.
struct QuorumForwarder(Arc<QuorumStore>);

/// A broker-only node reaches the active controller through the voters its observer knows.
struct ObserverForwarder(Arc<ObserverStore>);

impl ControllerForwarder for ObserverForwarder {
    fn forward(
        &self,
        leader: i32,
        request: serde_json::Value,
    ) -> crate::metadata::BoxFuture<'_, Result<serde_json::Value, String>> {
        Box::pin(self.0.call_controller(leader, request))
    }
}

/// This node's part of the metadata quorum, stopped after the broker.
pub enum QuorumMember {
    /// A controller voter.
    Voter(Arc<QuorumStore>),
    /// A broker-only node replaying the log it fetches.
    Observer(Arc<ObserverStore>),
}

impl QuorumMember {
    /// Resolves, with the reason, when a voter's Raft core stopped on its own
    /// ([`QuorumStore::halted`]); never for an observer.
    pub async fn halted(&self) -> String {
        match self {
            QuorumMember::Voter(q) => q.halted().await,
            QuorumMember::Observer(_) => std::future::pending().await,
        }
    }

    /// Stops it (a voter's Raft, an observer's fetching, writing its snapshot).
    pub async fn shutdown(&self) {
        match self {
            QuorumMember::Voter(q) => q.shutdown().await,
            QuorumMember::Observer(o) => o.shutdown().await,
        }
    }
}

impl ControllerForwarder for QuorumForwarder {
    fn forward(
        &self,
        leader: i32,
        request: serde_json::Value,
    ) -> crate::metadata::BoxFuture<'_, Result<serde_json::Value, String>> {
        Box::pin(self.0.call_controller(leader, request))
    }
}

/// The endpoints this broker registers: its advertised listeners with their security
/// protocols (wildcard hosts advertised as loopback, as [`Broker::advertised_endpoint`]),
/// less the controller listeners: a combined node may advertise its CONTROLLER listener (a
/// KIP-853 controller joins at that address), which is not a broker endpoint, as Kafka's
/// `effectiveAdvertisedBrokerListeners` leaves it out too.
fn registration_endpoints(config: &BrokerConfig) -> Vec<BrokerEndpoint> {
    config
        .advertised_listeners
        .iter()
        .filter(|l| !config.controller_listener_names.contains(&l.name))
        .map(|l| BrokerEndpoint {
            listener: l.name.clone(),
            host: if l.host.is_empty() || l.host == "0.0.0.0" {
                "127.0.0.1".to_string()
            } else {
                l.host.clone()
            },
            port: l.port,
            security_protocol: config.security_protocol_of(&l.name),
        })
        .collect()
}

/// A controller reply of the wrong kind: a bug between broker and controller versions.
fn unexpected(reply: &ControllerReply) -> ApiError {
    ApiError::new(
        ResponseError::UnknownServerError,
        format!("unexpected controller reply {reply:?}"),
    )
}

/// Sleeps until `deadline`, or forever if there is none.
async fn sleep_until_some(deadline: Option<tokio::time::Instant>) {
    match deadline {
        Some(d) => tokio::time::sleep_until(d).await,
        None => std::future::pending().await,
    }
}

/// Resolves once the shutdown flag is set (without holding the watch's guard across awaits).
async fn stopped(shutdown: &mut watch::Receiver<bool>) {
    let _ = shutdown.wait_for(|stop| *stop).await.map(|_| ());
}
