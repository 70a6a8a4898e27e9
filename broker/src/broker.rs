//! The broker's shared state and the operations several APIs share: topic creation (by
//! CreateTopics and by auto-creation), partition lookup, producer-id allocation, and the
//! background tasks (retention, checkpoints) with their clean shutdown.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::Context as _;
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tracing::{info, warn};

use crate::config::{self, BrokerConfig};
use crate::controller::placement::PlacementBroker;
use crate::controller::{topics, ControllerConfig};
use crate::error::ApiError;
use crate::group::{self, CoordinatorHost, GroupCoordinator, GroupLimits, OFFSETS_TOPIC};
use crate::log::{LogConfig, LogManager, PartitionLog, TopicPartition};
use crate::metadata::{
    LocalMetadataStore, MetadataImage, MetadataRecord, MetadataStore, PartitionState, ProposeError,
    TopicImage,
};
use crate::replica::fetch_session::FetchSessionCache;
use crate::replica::{Partition, ReplicaManager};
use crate::time::now_ms;

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
    /// Incremental fetch sessions (KIP-227).
    fetch_sessions: Mutex<FetchSessionCache>,
    /// (next id, end of the reserved block); async because reserving a block writes the store.
    producer_ids: tokio::sync::Mutex<(i64, i64)>,
    /// The static config with dynamic broker configs applied; rebuilt when those change.
    effective: std::sync::RwLock<Arc<BrokerConfig>>,
    groups: GroupCoordinator,
    /// Serialises topic-level administration so two CreateTopics for one name cannot race.
    admin: tokio::sync::Mutex<()>,
}

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
        };
        let broker = Broker {
            groups: GroupCoordinator::new(limits),
            effective: std::sync::RwLock::new(Arc::new(effective)),
            producer_ids: tokio::sync::Mutex::new((image.next_producer_id, image.next_producer_id)),
            metadata: Arc::new(store),
            logs: Arc::new(logs),
            replicas: ReplicaManager::default(),
            fetch_sessions: Mutex::new(FetchSessionCache::new(
                config.max_incremental_fetch_session_cache_slots.max(0) as usize,
            )),
            admin: tokio::sync::Mutex::new(()),
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
        Ok(Arc::new(broker))
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

    /// Commits metadata records and answers the image that includes them. NOT_CONTROLLER
    /// when this node is not the active controller; a store failure is reported to the
    /// client as UNKNOWN_SERVER_ERROR with the store's message (the request had been valid).
    async fn commit(&self, records: Vec<MetadataRecord>) -> Result<Arc<MetadataImage>, ApiError> {
        match self.metadata.propose(records).await {
            Ok(_offset) => Ok(self.metadata.image()),
            Err(e @ ProposeError::NotController { .. }) => {
                Err(ApiError::new(ResponseError::NotController, e.to_string()))
            }
            Err(ProposeError::Store(e)) => Err(ApiError::new(
                ResponseError::UnknownServerError,
                e.to_string(),
            )),
        }
    }

    /// The metadata quorum's state as this node sees it (DescribeQuorum).
    pub fn quorum_info(&self) -> crate::metadata::QuorumInfo {
        self.metadata.quorum_info()
    }

    /// The group coordinator.
    pub fn groups(&self) -> &GroupCoordinator {
        &self.groups
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

    /// Ids of live brokers (just this one until the cluster layer exists).
    pub fn live_brokers(&self) -> Vec<i32> {
        vec![self.config.node_id]
    }

    /// The brokers the controller places replicas on: the registered brokers of `image`,
    /// or this broker alone while none is registered (a single node, which is its own
    /// controller and registers nothing).
    fn placement_brokers(&self, image: &MetadataImage) -> Vec<PlacementBroker> {
        let registered = crate::controller::placement::placement_brokers(image);
        if !registered.is_empty() {
            return registered;
        }
        vec![PlacementBroker {
            id: self.config.node_id,
            rack: self.config.broker_rack.clone(),
            usable: true,
        }]
    }

    /// The settings controller decisions take from this broker's configuration.
    fn controller_config(&self) -> ControllerConfig {
        ControllerConfig::from_broker(&self.config)
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

    fn refresh_effective_config(&self) {
        let image = self.image();
        match self.config.with_dynamic(
            &image.broker_config(&self.node_id().to_string()),
            &image.broker_config(""),
        ) {
            Ok(c) => *self.effective.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c),
            Err(e) => warn!(error = %e, "ignoring invalid dynamic broker configs"),
        }
    }

    /// Runs `f` on the fetch session cache (held only for the call: never across a read).
    pub(crate) fn fetch_sessions<T>(&self, f: impl FnOnce(&mut FetchSessionCache) -> T) -> T {
        f(&mut self
            .fetch_sessions
            .lock()
            .unwrap_or_else(|p| p.into_inner()))
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

    /// Creates the logs this broker hosts for `topic` on a blocking thread: thousands of
    /// partitions mean thousands of directories, files and fsyncs, which must not occupy an
    /// async worker (heartbeats and fetches are served meanwhile).
    async fn ensure_logs(&self, topic: &TopicImage) -> Result<(), ApiError> {
        let config = self.log_config(&topic.configs);
        let logs = self.logs.clone();
        let node_id = self.node_id();
        let topic = topic.clone();
        tokio::task::spawn_blocking(move || create_logs(&logs, node_id, &topic, config))
            .await
            .map_err(|e| ApiError::new(ResponseError::UnknownServerError, e.to_string()))?
            .map_err(ApiError::from)
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

    /// Creates a topic after checking it as Apache Kafka's controller does. With
    /// `validate_only` nothing changes. Errors carry Kafka's code and message.
    pub(crate) async fn create_topic(
        &self,
        new: NewTopic,
        validate_only: bool,
    ) -> Result<TopicImage, ApiError> {
        let _admin = self.admin.lock().await;
        let image = self.image();
        let brokers = self.placement_brokers(&image);
        let topic = topics::plan_topic(&image, &brokers, &self.controller_config(), new)?;
        self.check_partition_budget(self.hosted(&topic.partitions))?;
        if validate_only {
            return Ok(topic);
        }
        self.commit(vec![MetadataRecord::Topic(topic.clone())])
            .await?;
        self.ensure_logs(&topic).await?;
        info!(topic = %topic.name, partitions = topic.partitions.len(), "created topic");
        Ok(topic)
    }

    /// Deletes a topic and its logs.
    pub(crate) async fn delete_topic(&self, name: &str) -> Result<uuid::Uuid, ApiError> {
        let _admin = self.admin.lock().await;
        let image = self.image();
        let (record, id) = topics::plan_delete_topic(&image, &self.controller_config(), name)?;
        let partition_count = image.topic(name).map_or(0, |t| t.partitions.len());
        self.commit(vec![record]).await?;
        // Renames and fsyncs per partition: on a blocking thread.
        let logs = self.logs.clone();
        let (topic_name, count) = (name.to_string(), partition_count);
        let deleted = tokio::task::spawn_blocking(move || {
            for index in 0..count {
                let tp = TopicPartition {
                    topic: topic_name.clone(),
                    partition: index as i32,
                };
                if let Err(e) = logs.delete(&tp) {
                    warn!(partition = %tp, error = %e, "could not delete partition log");
                }
            }
        })
        .await;
        if let Err(e) = deleted {
            warn!(topic = %name, error = %e, "deleting partition logs failed");
        }
        for index in 0..partition_count {
            self.replicas
                .remove(&TopicPartition::new(name, index as i32));
        }
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
        let brokers = self.placement_brokers(&image);
        let new_partitions =
            topics::plan_create_partitions(&image, &brokers, name, count, assignments.as_deref())?;
        let current = image.topic(name).map_or(0, |t| t.partitions.len());
        self.check_partition_budget(self.hosted(&new_partitions))?;
        if validate_only {
            return Ok(());
        }
        let next = self
            .commit(vec![MetadataRecord::AddPartitions {
                topic: name.to_string(),
                partitions: new_partitions,
            }])
            .await?;
        if let Some(topic) = next.topic(name) {
            self.ensure_logs(topic).await?;
        }
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
        let record = topics::plan_topic_configs(&self.image(), name, configs.clone())?;
        if validate_only {
            return Ok(());
        }
        self.commit(vec![record]).await?;
        self.logs
            .update_topic_config(name, self.log_config(&configs));
        Ok(())
    }

    /// Replaces the dynamic configs of a broker entity (`""` = cluster default).
    pub(crate) async fn set_broker_configs(
        &self,
        entity: &str,
        configs: BTreeMap<String, String>,
        validate_only: bool,
    ) -> Result<(), ApiError> {
        let _admin = self.admin.lock().await;
        let record = topics::plan_broker_configs(entity, configs)?;
        if validate_only {
            return Ok(());
        }
        self.commit(vec![record]).await?;
        // Topic defaults may have changed (log.retention.ms, log.segment.bytes, ...).
        self.refresh_effective_config();
        let image = self.image();
        for topic in image.topics.values() {
            self.logs
                .update_topic_config(&topic.name, self.log_config(&topic.configs));
        }
        Ok(())
    }

    /// A fresh producer id, never handed out before by this cluster.
    pub(crate) async fn allocate_producer_id(&self) -> Result<i64, ApiError> {
        let mut ids = self.producer_ids.lock().await;
        if ids.0 >= ids.1 {
            let end = ids.0 + PRODUCER_ID_BLOCK;
            self.commit(vec![MetadataRecord::ProducerIds {
                next_producer_id: end,
            }])
            .await?;
            ids.1 = end;
        }
        let id = ids.0;
        ids.0 += 1;
        Ok(id)
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

    fn offsets_retention_ms(&self) -> i64 {
        i64::from(self.config.offsets_retention_minutes) * 60_000
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
    let missing: Vec<TopicPartition> = topic
        .partitions
        .iter()
        .enumerate()
        .filter(|(_, p)| p.replicas.contains(&node_id))
        .map(|(index, _)| TopicPartition {
            topic: topic.name.clone(),
            partition: index as i32,
        })
        .filter(|tp| logs.get(tp).is_none())
        .collect();
    logs.create_many(&missing, &config, Some(topic.id))
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
