//! The executor of [`crate::reaction`]: this node acts on every committed metadata image —
//! creates and deletes its partition logs, takes the leader or follower role the image gives
//! it (followers fetch from their leader, leaders send ISR changes to the controller), and
//! applies changed configs (Kafka's brokers do this in `BrokerMetadataPublisher` /
//! `ReplicaManager.applyDelta`).
//!
//! One path for every image: the reaction loop ([`Broker::run_reaction`]) feeds it the images
//! the store publishes, and administrative requests handled here feed it the image that holds
//! their change before they answer, so a client that created a topic on this broker can
//! produce to it at once. [`Broker::react`] serialises both and skips images already acted
//! on; every change it makes is idempotent, so an image seen twice changes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tracing::{info, warn};

use super::{create_logs_of, stopped, Broker};
use crate::controller::{ControllerReply, ControllerRequest, IsrMember};
use crate::error::ApiError;
use crate::group::OFFSETS_TOPIC;
use crate::lifecycle::ControllerChannel;
use crate::log::TopicPartition;
use crate::metadata::{BoxFuture, MetadataImage, PartitionState};
use crate::reaction::{self, Change};
use crate::replica::fetcher::{FetcherConfig, LeaderConnection};
use crate::replica::fetchers::{ConnectLeader, FetcherManager};
use crate::replica::leader_connection::ClientLeaderConnection;
use crate::replica::{AlterPartitionError, AlterPartitionRequest, AlterPartitionSender};
use crate::time::now_ms;
use crate::txn::TRANSACTION_STATE_TOPIC;

/// Kafka's `replica.socket.timeout.ms` default: how long a follower waits for a leader's
/// answer (beyond the fetch's own wait).
const REPLICA_SOCKET_TIMEOUT_MS: u64 = 30_000;

impl Broker {
    /// Acts on every committed metadata image until `shutdown`: first starts replication
    /// (followers' fetchers, leaders' AlterPartition route), then reacts to the current image
    /// and to each one after it. Run it once the broker has registered, so its fetches carry
    /// its broker epoch.
    pub async fn run_reaction(self: Arc<Self>, mut shutdown: watch::Receiver<bool>) {
        self.start_replication();
        let mut images = self.metadata.subscribe();
        let mut first = true;
        loop {
            let image = images.borrow_and_update().clone();
            // The first pass takes every role the image gives this node: the logs opened at
            // start-up were never told whether they lead or follow.
            match self.react_inner(image, std::mem::take(&mut first)).await {
                Ok(elected) => {
                    // Loading a partition's groups reads its log: beside the reaction, so
                    // the next image is acted on meanwhile (requests for those groups
                    // answer COORDINATOR_LOAD_IN_PROGRESS until it is done).
                    for (partition, leader_epoch) in elected {
                        let broker = self.clone();
                        tokio::spawn(async move {
                            broker
                                .groups
                                .on_elected(broker.as_ref(), partition, leader_epoch)
                                .await;
                        });
                    }
                }
                // Logs that could not be created are tried again with the next image.
                Err(e) => warn!(error = ?e, "could not act on the committed metadata"),
            }
            tokio::select! {
                changed = images.changed() => if changed.is_err() { break },
                _ = stopped(&mut shutdown) => break,
            }
        }
        self.replicas.shutdown_fetchers();
    }

    /// Sets how followers reach their leaders (the inter-broker listener each broker
    /// registered) and where leaders send ISR changes (the active controller).
    fn start_replication(&self) {
        let node_id = self.node_id();
        let listener = self
            .config
            .inter_broker_listener_name
            .as_deref()
            .unwrap_or("PLAINTEXT")
            .to_ascii_uppercase();
        let wait_ms = self.config.replica_fetch_wait_max_ms.max(0) as u64;
        let store = self.metadata.clone();
        let connect: ConnectLeader = Arc::new(move |leader| {
            let image = store.image();
            let endpoint = image
                .brokers
                .get(&leader)?
                .endpoints
                .iter()
                .find(|e| e.listener.eq_ignore_ascii_case(&listener))?
                .clone();
            let host = if endpoint.host.contains(':') {
                format!("[{}]", endpoint.host)
            } else {
                endpoint.host
            };
            let connection: Arc<dyn LeaderConnection> = Arc::new(ClientLeaderConnection::new(
                format!("{host}:{}", endpoint.port),
                format!("broker-{node_id}-fetcher-0"),
                REPLICA_SOCKET_TIMEOUT_MS,
                wait_ms,
            ));
            Some(connection)
        });
        let config = FetcherConfig {
            max_bytes: self.config.replica_fetch_max_bytes,
            max_wait_ms: self.config.replica_fetch_wait_max_ms,
            min_bytes: self.config.replica_fetch_min_bytes,
            ..FetcherConfig::new(node_id, self.lifecycle.state().broker_epoch)
        };
        self.replicas
            .set_fetcher_manager(Arc::new(FetcherManager::new(config, connect)));
        self.replicas
            .set_alter_partition_sender(Arc::new(ControllerAlterPartition {
                channel: self.channel.clone(),
                node_id,
                lifecycle: self.lifecycle.clone(),
            }));
    }

    /// Makes this node's state match `image`, unless it already acted on a later one.
    /// Storage failures (a log that cannot be created) are answered after everything else
    /// was done; the image is then not recorded as acted on, so the next one retries them.
    pub(crate) async fn react(&self, image: Arc<MetadataImage>) -> Result<(), ApiError> {
        // The group coordinator loads a `__consumer_offsets` partition it was not told
        // about on first use, so an election first seen here needs no announcement.
        self.react_inner(image, false).await.map(|_| ())
    }

    /// [`Self::react`]; with `all_roles` it also takes every role `image` gives this node,
    /// changed or not. Answers the `__consumer_offsets` partitions this node was elected to
    /// lead, with their leader epochs, for the group coordinator to load.
    async fn react_inner(
        &self,
        image: Arc<MetadataImage>,
        all_roles: bool,
    ) -> Result<Vec<(i32, i32)>, ApiError> {
        let mut applied = self.applied.lock().await;
        if image.offset <= applied.offset && !all_roles {
            return Ok(Vec::new());
        }
        let mut changes = reaction::changes(&applied, &image, self.node_id());
        if all_roles {
            let empty = MetadataImage::new(image.cluster_id.clone());
            let roles: Vec<Change> = reaction::changes(&empty, &image, self.node_id())
                .into_iter()
                .filter(|c| {
                    matches!(
                        c,
                        Change::BecomeLeader { .. } | Change::BecomeFollower { .. }
                    )
                })
                .filter(|c| !changes.contains(c))
                .collect();
            changes.extend(roles);
        }
        if applied.broker_configs != image.broker_configs {
            self.refresh_effective_config_from(&image);
        }
        let result = self.execute(&image, changes).await;
        if applied.brokers != image.brokers || all_roles {
            self.replicas
                .set_ineligible_replicas(&ineligible_replicas(&image));
        }
        if result.is_ok() {
            *applied = image;
        }
        result
    }

    /// Executes `changes` (deletions, creations, roles, configs); answers the
    /// `__consumer_offsets` partitions this node now leads, with their leader epochs.
    async fn execute(
        &self,
        image: &MetadataImage,
        changes: Vec<Change>,
    ) -> Result<Vec<(i32, i32)>, ApiError> {
        let mut creates: BTreeMap<String, Vec<TopicPartition>> = BTreeMap::new();
        let mut deletes = Vec::new();
        let mut roles = Vec::new();
        let mut configs = Vec::new();
        for change in changes {
            match change {
                Change::CreateLog { tp, .. } => {
                    creates.entry(tp.topic.clone()).or_default().push(tp)
                }
                Change::DeleteLog { tp, topic_id } => deletes.push((tp, topic_id)),
                Change::TopicConfig { topic } => configs.push(topic),
                role => roles.push(role),
            }
        }
        if !deletes.is_empty() {
            for (tp, _) in &deletes {
                if tp.topic == OFFSETS_TOPIC {
                    self.groups.on_resigned(tp.partition, None);
                }
                if tp.topic == TRANSACTION_STATE_TOPIC {
                    self.txns.on_resigned(tp.partition);
                }
                self.replicas.remove(tp);
            }
            let logs = self.logs.clone();
            let deleted = tokio::task::spawn_blocking(move || {
                for (tp, topic_id) in deletes {
                    // A log of a newer topic of the same name (created after this image was
                    // committed, by an admin request that raced the loop) stays.
                    let current = logs
                        .get(&tp)
                        .and_then(|l| l.lock().unwrap_or_else(|p| p.into_inner()).topic_id());
                    if current.is_some_and(|id| id != topic_id) {
                        continue;
                    }
                    if let Err(e) = logs.delete(&tp) {
                        warn!(partition = %tp, error = %e, "could not delete partition log");
                    }
                }
            })
            .await;
            if let Err(e) = deleted {
                warn!(error = %e, "deleting partition logs failed");
            }
        }
        let mut result = Ok(());
        for (topic, tps) in creates {
            let Some(t) = image.topic(&topic) else {
                continue;
            };
            let (logs, config, id) = (self.logs.clone(), self.log_config(&t.configs), t.id);
            let created =
                tokio::task::spawn_blocking(move || create_logs_of(&logs, &tps, config, id))
                    .await
                    .map_err(|e| ApiError::new(ResponseError::UnknownServerError, e.to_string()))
                    .and_then(|r| r.map_err(ApiError::from));
            if let Err(e) = created {
                warn!(%topic, error = ?e, "could not create partition logs");
                result = Err(e);
            }
        }
        let now = now_ms();
        let mut elected = Vec::new();
        // A new leader epoch is written to the partition's leader-epoch-checkpoint (fsynced,
        // as Kafka's `LeaderEpochFileCache.assign` does) before the role is taken: a new
        // 2,000-partition topic is hundreds of fsyncs, which must not hold an async worker.
        off_the_async_workers(|| {
            for change in roles {
                match change {
                    Change::BecomeLeader { tp, state, .. } => {
                        match self
                            .replicas
                            .become_leader(&tp, &state, || self.logs.get(&tp), now)
                        {
                            Ok(_) if tp.topic == OFFSETS_TOPIC => {
                                elected.push((tp.partition, state.leader_epoch));
                            }
                            Ok(_) if tp.topic == TRANSACTION_STATE_TOPIC => {
                                // Loading reads the log: beside the reaction, as for
                                // groups; then the prepared transactions are completed.
                                if let Some(me) = self.shared() {
                                    let (p, epoch) = (tp.partition, state.leader_epoch);
                                    tokio::spawn(async move {
                                        me.txns().load(&me, p, epoch).await;
                                    });
                                }
                            }
                            Ok(_) => {}
                            Err(e) => {
                                warn!(partition = %tp, error = %e, "cannot lead the partition")
                            }
                        }
                    }
                    Change::BecomeFollower {
                        tp,
                        topic_id,
                        state,
                    } => {
                        if tp.topic == OFFSETS_TOPIC {
                            // Unreplicated writes and waiting requests of its groups answer
                            // NOT_COORDINATOR; clients find the new coordinator.
                            self.groups
                                .on_resigned(tp.partition, Some(state.leader_epoch));
                        }
                        if tp.topic == TRANSACTION_STATE_TOPIC {
                            self.txns.on_resigned(tp.partition);
                        }
                        if let Err(e) = self
                            .replicas
                            .become_follower(&tp, topic_id, &state, || self.logs.get(&tp))
                        {
                            warn!(partition = %tp, error = %e, "cannot follow the partition");
                        }
                    }
                    _ => {}
                }
            }
        });
        for topic in configs {
            if let Some(t) = image.topic(&topic) {
                self.logs
                    .update_topic_config(&topic, self.log_config(&t.configs));
            }
        }
        result.map(|()| elected)
    }

    /// Rebuilds the effective config from `image`'s dynamic broker configs and gives every
    /// hosted topic its new effective log settings (a cluster default such as
    /// `log.retention.ms` may have changed).
    fn refresh_effective_config_from(&self, image: &MetadataImage) {
        match self.config.with_dynamic(
            &image.broker_config(&self.node_id().to_string()),
            &image.broker_config(""),
        ) {
            Ok(c) => {
                *self.effective.write().unwrap_or_else(|p| p.into_inner()) = Arc::new(c);
            }
            Err(e) => {
                warn!(error = %e, "ignoring invalid dynamic broker configs");
                return;
            }
        }
        for topic in image.topics.values() {
            self.logs
                .update_topic_config(&topic.name, self.log_config(&topic.configs));
        }
    }
}

/// Runs blocking `work` without holding up the other tasks of a multi-threaded runtime
/// (`block_in_place`: this worker's tasks move to another); inline on a current-thread
/// runtime (tests), where that is not possible. Tasks may still be spawned from `work`.
fn off_the_async_workers<R>(work: impl FnOnce() -> R) -> R {
    match tokio::runtime::Handle::try_current().map(|h| h.runtime_flavor()) {
        Ok(tokio::runtime::RuntimeFlavor::MultiThread) => tokio::task::block_in_place(work),
        _ => work(),
    }
}

/// Brokers that may not join an ISR: fenced or in controlled shutdown (Kafka's leaders skip
/// them when expanding, as the controller would refuse them with INELIGIBLE_REPLICA).
fn ineligible_replicas(image: &MetadataImage) -> BTreeSet<i32> {
    image
        .brokers
        .values()
        .filter(|b| b.fenced || b.in_controlled_shutdown)
        .map(|b| b.id)
        .collect()
}

/// A leader's AlterPartition, sent to the active controller over the controller channel
/// (forwarded when another node is active).
struct ControllerAlterPartition {
    channel: Arc<ControllerChannel>,
    node_id: i32,
    lifecycle: Arc<crate::lifecycle::BrokerLifecycle>,
}

impl std::fmt::Debug for ControllerAlterPartition {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ControllerAlterPartition")
            .field("node_id", &self.node_id)
            .finish_non_exhaustive()
    }
}

impl AlterPartitionSender for ControllerAlterPartition {
    fn alter_partition(
        &self,
        request: AlterPartitionRequest,
    ) -> BoxFuture<'static, Result<PartitionState, AlterPartitionError>> {
        let channel = self.channel.clone();
        let request = ControllerRequest::AlterPartition {
            broker_id: self.node_id,
            broker_epoch: self.lifecycle.state().broker_epoch,
            topic_id: request.topic_id,
            partition: request.partition,
            leader_epoch: request.leader_epoch,
            partition_epoch: request.partition_epoch,
            // The leader's view of its followers' broker epochs is not kept per member yet:
            // -1 asks the controller to check only that each is registered and active.
            new_isr: request
                .new_isr
                .iter()
                .map(|&broker_id| IsrMember {
                    broker_id,
                    broker_epoch: -1,
                })
                .collect(),
        };
        Box::pin(async move {
            match channel.submit(request).await {
                Ok(ControllerReply::AlterPartition { state, error_code }) => {
                    if error_code != 0 {
                        info!(error_code, "AlterPartition committed with a new leader");
                    }
                    Ok(state)
                }
                Ok(other) => Err(AlterPartitionError::Unavailable(format!(
                    "unexpected controller reply {other:?}"
                ))),
                Err(e) if e.is(ResponseError::NotController) => {
                    Err(AlterPartitionError::Unavailable(e.to_string()))
                }
                Err(e) => Err(AlterPartitionError::Refused(e.code)),
            }
        })
    }
}
