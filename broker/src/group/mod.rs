//! The group coordinator: consumer group membership (the classic rebalance protocol and
//! the consumer protocol of KIP-848, with online migration between them) and committed
//! offsets, kept as records in the internal topic `__consumer_offsets`.
//!
//! [`state`] and [`consumer`] hold the pure state machines ([`consumer::migration`] the
//! conversions and the classic members of a consumer group); this module is the thin layer around it: it
//! parks JoinGroup/SyncGroup requests until the state machine replies, writes offsets and
//! group metadata to the group's `__consumer_offsets` partition (chosen like Kafka, by the
//! group id's Java hash), loads a partition's groups when this broker becomes its leader
//! and drops them when it stops leading it, and drives time (session expiry, rebalance
//! deadlines, offset expiry). It sees the rest of the broker only through
//! [`CoordinatorHost`] (topic sizes, its partitions' logs, acks=all appends, creating
//! `__consumer_offsets`), never the broker itself, so it can be tested alone and nothing
//! below imports upward.
//!
//! **Coordinator partitions follow leadership** (Kafka's `CoordinatorRuntime`). Each
//! `__consumer_offsets` partition this broker leads is loaded from its log
//! ([`GroupCoordinator::on_elected`], on the blocking pool) and unloaded when another broker
//! takes it over ([`GroupCoordinator::on_resigned`]). Requests for its groups answer
//! COORDINATOR_LOAD_IN_PROGRESS while it loads and NOT_COORDINATOR when this broker does not
//! serve it, so clients look the coordinator up again. A stale announcement (an older
//! leader epoch) is ignored.
//!
//! **Nothing is acknowledged before it is replicated.** State changes happen under one short
//! lock; the records they produce go into the partition's write queue in the same order,
//! and whoever changed state then drains that queue ([`GroupCoordinator::flush_partition`]):
//! everything queued goes out as one batch through [`CoordinatorHost::append_offsets`]
//! (acks=all: it resolves once the high watermark passed the batch), one batch at a time per
//! partition so the log order is the queue order. Effects that must follow the write
//! (committed offsets become visible to OffsetFetch, deleted ones disappear, the leader's
//! assignment reaches the members) are applied only then, in that same order, and only
//! then is the request answered; a failed write is answered with Kafka's coordinator error
//! ([`coordinator_error`]). So heartbeats never wait for an append, a roll or replication,
//! and a partition whose followers lag delays only its own groups. Time is driven by a
//! deadline queue (member sessions, pending member ids, rebalance deadlines): a tick only
//! visits the groups whose deadline has passed.

pub mod consumer;
pub mod records;
pub mod state;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};
use kafka_protocol::ResponseError;
use tokio::sync::{oneshot, watch};
use tracing::{debug, info, warn};

use crate::error::ApiError;
use crate::log::PartitionLog;
use crate::time::now_ms;
use records::{GroupValue, OffsetValue, RecordKey};
pub use state::{
    CommittedOffset, Group, GroupLimits, GroupState, JoinRequest, JoinResponse, Reply, SyncRequest,
    SyncResponse, Token,
};

/// The internal topic holding offsets and group metadata.
pub const OFFSETS_TOPIC: &str = "__consumer_offsets";

/// Kafka's `offset.metadata.max.bytes` default.
const OFFSET_METADATA_MAX_BYTES: usize = 4096;

/// How often sessions and deadlines are checked. Kafka's timers are exact; 100 ms of slack on
/// multi-second timeouts is invisible to clients.
const TICK: Duration = Duration::from_millis(100);

/// At most this many record bytes (keys and values) go into one coordinator batch; more
/// queued writes wait for the next batch. Well below `message.max.bytes` (1 MiB), as
/// Kafka's runtime keeps its batches below the partition's maximum batch size.
const MAX_BATCH_RECORD_BYTES: usize = 512 * 1024;

/// What the group coordinator needs from the broker it runs in, and nothing more: the
/// partitions it may commit offsets for, its `__consumer_offsets` partitions (created on
/// first use), their logs to load from, acks=all appends to them, and one config value. The
/// broker implements it; tests implement it over replicated partitions in a temporary
/// directory. Implementations answer from memory and never block on the disk, except the
/// async methods.
pub trait CoordinatorHost: Send + Sync {
    /// The number of partitions of `topic`, `None` if the topic does not exist.
    fn partition_count(&self, topic: &str) -> Option<i32>;

    /// The id of `topic`, `None` if it does not exist (consumer-protocol assignments name
    /// topics by id).
    fn topic_id(&self, topic: &str) -> Option<uuid::Uuid>;

    /// Every topic name, with the metadata version (offset of the image) they come from:
    /// what consumer groups resolve their regular expressions against.
    fn topic_names(&self) -> (i64, Vec<String>);

    /// Creates `__consumer_offsets` (compacted, `offsets.topic.num.partitions`,
    /// `offsets.topic.replication.factor`, see [`offsets_topic_configs`]) if it does not
    /// exist yet, as Kafka does when a group first needs it, and returns its partition
    /// count; `Err` with Kafka's code if it can neither be created nor found.
    fn ensure_offsets_topic(&self) -> impl Future<Output = Result<i32, ApiError>> + Send;

    /// The log of `__consumer_offsets` partition `partition` and its leader epoch, if this
    /// broker leads it: UNKNOWN_TOPIC_OR_PARTITION if there is no such partition,
    /// NOT_LEADER_OR_FOLLOWER if another broker leads it. The coordinator only reads it
    /// (loading, on a blocking thread); writes go through [`Self::append_offsets`].
    fn offsets_log(&self, partition: i32) -> Result<(Arc<Mutex<PartitionLog>>, i32), ApiError>;

    /// Appends `batch` (one record batch, magic 2, no producer) to `__consumer_offsets`
    /// partition `partition` as its leader with acks=all, and resolves once the high
    /// watermark has passed it (the ISR has it), with the offset after the batch. Fails with
    /// the code a producer would get: NOT_LEADER_OR_FOLLOWER (this broker does not lead the
    /// partition, or lost the leadership before the batch was replicated),
    /// NOT_ENOUGH_REPLICAS (nothing appended), NOT_ENOUGH_REPLICAS_AFTER_APPEND,
    /// REQUEST_TIMED_OUT (`offsets.commit.timeout.ms` passed), KAFKA_STORAGE_ERROR, ...;
    /// the coordinator maps them with [`coordinator_error`].
    fn append_offsets(
        &self,
        partition: i32,
        batch: Bytes,
    ) -> impl Future<Output = Result<i64, ApiError>> + Send;

    /// `offsets.retention.minutes` in milliseconds: how long the offsets of an empty group
    /// are kept.
    fn offsets_retention_ms(&self) -> i64;
}

/// The topic configs `__consumer_offsets` is created with, as Kafka's group coordinator
/// sets them: compacted, the producer's compression, `offsets.topic.segment.bytes`.
pub fn offsets_topic_configs(segment_bytes: i32) -> BTreeMap<String, String> {
    BTreeMap::from([
        ("cleanup.policy".to_string(), "compact".to_string()),
        ("compression.type".to_string(), "producer".to_string()),
        ("segment.bytes".to_string(), segment_bytes.to_string()),
    ])
}

/// What a client is told when a coordinator write failed with `code`, as Kafka 4.1's
/// coordinator maps append errors (`CoordinatorOperationExceptionHelper`,
/// `appendGroupMetadataErrorToResponseError`): a missing partition, too few in-sync replicas
/// or a replication timeout are COORDINATOR_NOT_AVAILABLE (retry here later); a lost
/// leadership or a failed disk is NOT_COORDINATOR (find the coordinator again); a batch too
/// large is UNKNOWN_SERVER_ERROR; anything else is passed on.
pub fn coordinator_error(code: i16) -> i16 {
    let Some(error) = ResponseError::try_from_code(code) else {
        return code;
    };
    let mapped = match error {
        ResponseError::UnknownTopicOrPartition
        | ResponseError::NotEnoughReplicas
        | ResponseError::NotEnoughReplicasAfterAppend
        | ResponseError::RequestTimedOut => ResponseError::CoordinatorNotAvailable,
        ResponseError::NotLeaderOrFollower | ResponseError::KafkaStorageError => {
            ResponseError::NotCoordinator
        }
        ResponseError::MessageTooLarge
        | ResponseError::RecordListTooLarge
        | ResponseError::InvalidFetchSize => ResponseError::UnknownServerError,
        other => other,
    };
    mapped.code()
}

/// One partition's commit request.
#[derive(Debug, Clone)]
pub struct OffsetCommit {
    /// Topic.
    pub topic: String,
    /// Partition.
    pub partition: i32,
    /// Next offset to consume.
    pub offset: i64,
    /// Leader epoch, -1 if unknown.
    pub leader_epoch: i32,
    /// Client metadata (null becomes "").
    pub metadata: Option<String>,
}

/// Where a hosted `__consumer_offsets` partition is in its life on this coordinator
/// (Kafka's `CoordinatorState`, without the states that need no representation here).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Load {
    /// Its log is being read; its groups' requests answer COORDINATOR_LOAD_IN_PROGRESS.
    Loading,
    /// Its groups are served.
    Active,
    /// Loading failed; its groups' requests answer NOT_COORDINATOR until a newer leader
    /// epoch loads it again.
    Failed,
}

/// A `__consumer_offsets` partition this coordinator serves (or is loading).
#[derive(Debug, Clone, Copy)]
struct Hosted {
    /// The leader epoch it was elected in: announcements with an epoch not newer are stale.
    epoch: i32,
    load: Load,
    /// Tells this tenure apart from a later one, so a load or a write that finishes after
    /// the partition was unloaded (and perhaps loaded again) changes nothing.
    tenure: u64,
}

struct Inner {
    groups: HashMap<String, Group>,
    waiters: HashMap<Token, Waiter>,
    /// When each group next needs a tick, `(deadline ms, group id)`. Entries may be early
    /// (a heartbeat moved the deadline later): a tick then does nothing and reschedules.
    deadlines: BTreeSet<(i64, String)>,
    /// The entry each group has in `deadlines`.
    scheduled: HashMap<String, i64>,
    /// Records to append, per `__consumer_offsets` partition, in the order the state changed.
    writes: BTreeMap<i32, VecDeque<Write>>,
    /// The `__consumer_offsets` partitions this coordinator serves or loads.
    hosted: HashMap<i32, Hosted>,
    /// The partition count of `__consumer_offsets` once known: which partition a group
    /// belongs to.
    offsets_partitions: i32,
    next_tenure: u64,
    /// Offsets committed in transactions whose end marker has not been written yet, per
    /// producer id and group (Kafka's `pendingTransactionalOffsets`): OffsetFetch does not
    /// show them; the COMMIT marker on the group's partition makes them the committed
    /// offsets, the ABORT marker drops them.
    pending_txn: HashMap<i64, PendingTxnOffsets>,
    /// Each consumer group (KIP-848) as its records queued so far describe it: the next
    /// change of the group writes the records that differ from this
    /// ([`consumer::persist::changes`]).
    consumer_logged: HashMap<String, consumer::ConsumerGroup>,
}

/// One producer's transactional offsets not yet ended, per group and partition.
type PendingTxnOffsets = HashMap<String, BTreeMap<(String, i32), CommittedOffset>>;

/// Records for a group's `__consumer_offsets` partition, what to do once they are written,
/// and who waits for the outcome.
struct Write {
    group_id: String,
    records: Vec<(Bytes, Option<Bytes>)>,
    effect: Effect,
    done: Option<oneshot::Sender<Result<(), ApiError>>>,
    /// Replies to parked requests that may go out only once the records are replicated
    /// (the leader's assignment in SyncGroup responses, as Kafka sends them after the
    /// group metadata record is committed).
    held: Vec<Reply>,
    /// The producer id and epoch of a transactional offset commit: its records go out as
    /// a transactional batch of their own, so the end marker of the transaction applies to
    /// them.
    producer: Option<(i64, i16)>,
}

/// In-memory changes that become true only once their records are in the log.
enum Effect {
    None,
    /// Committed offsets become visible to OffsetFetch.
    Commit(Vec<((String, i32), CommittedOffset)>),
    /// Offsets committed in the transaction of `producer_id` become pending: visible only
    /// once the COMMIT marker is written.
    TxnCommit {
        producer_id: i64,
        offsets: Vec<((String, i32), CommittedOffset)>,
    },
    /// Offsets are gone (OffsetDelete, DeleteGroups, offset expiry); with `remove_group`
    /// the group goes too if nothing is left of it.
    Delete {
        keys: Vec<(String, i32)>,
        remove_group: bool,
    },
}

enum Waiter {
    Join(oneshot::Sender<JoinResponse>),
    Sync(oneshot::Sender<SyncResponse>),
}

/// The group coordinator of this broker.
pub struct GroupCoordinator {
    inner: Mutex<Inner>,
    next_token: AtomicU64,
    limits: GroupLimits,
    /// Per `__consumer_offsets` partition, held by the one task draining its write queue.
    writers: Mutex<HashMap<i32, Arc<tokio::sync::Mutex<()>>>>,
}

impl GroupCoordinator {
    /// An empty coordinator serving no partition; [`GroupCoordinator::load`] (a single
    /// node at start) or [`GroupCoordinator::on_elected`] gives it partitions.
    pub fn new(limits: GroupLimits) -> GroupCoordinator {
        GroupCoordinator {
            inner: Mutex::new(Inner {
                groups: HashMap::new(),
                waiters: HashMap::new(),
                deadlines: BTreeSet::new(),
                scheduled: HashMap::new(),
                writes: BTreeMap::new(),
                hosted: HashMap::new(),
                offsets_partitions: 1,
                next_tenure: 0,
                pending_txn: HashMap::new(),
                consumer_logged: HashMap::new(),
            }),
            next_token: AtomicU64::new(1),
            limits,
            writers: Mutex::new(HashMap::new()),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Loads, at start, every `__consumer_offsets` partition this broker leads (all of them
    /// on a single node), reading the logs on the calling thread: committed offsets and
    /// group metadata, later records winning and tombstones deleting. Partitions it does not
    /// lead are left to [`Self::on_elected`].
    pub fn load(&self, host: &impl CoordinatorHost) {
        let Some(count) = host.partition_count(OFFSETS_TOPIC) else {
            return;
        };
        let now = now_ms();
        let mut records = 0usize;
        let mut loaded = 0usize;
        for partition in 0..count {
            let Ok((log, epoch)) = host.offsets_log(partition) else {
                continue;
            };
            let (found, n) = read_groups(&log, partition, now, &self.limits);
            records += n;
            let mut inner = self.lock();
            inner.offsets_partitions = count;
            if inner
                .hosted
                .get(&partition)
                .is_some_and(|h| h.epoch >= epoch)
            {
                continue;
            }
            let tenure = Self::next_tenure(&mut inner);
            inner.hosted.insert(
                partition,
                Hosted {
                    epoch,
                    load: Load::Active,
                    tenure,
                },
            );
            loaded += found.groups.len();
            Self::install(&mut inner, found);
        }
        if records > 0 {
            info!(
                groups = loaded,
                records, "loaded consumer groups from __consumer_offsets"
            );
        }
    }

    fn next_tenure(inner: &mut Inner) -> u64 {
        inner.next_tenure += 1;
        inner.next_tenure
    }

    /// Adds loaded groups (and their pending transactional offsets) to the served ones and
    /// schedules their deadlines.
    fn install(inner: &mut Inner, loaded: Loaded) {
        for (id, group) in loaded.groups {
            match &group.consumer {
                Some(c) => inner.consumer_logged.insert(id.clone(), c.clone()),
                None => inner.consumer_logged.remove(&id),
            };
            inner.groups.insert(id.clone(), group);
            Self::schedule(inner, &id);
        }
        for (producer_id, by_group) in loaded.pending {
            let pending = inner.pending_txn.entry(producer_id).or_default();
            for (group_id, offsets) in by_group {
                pending.entry(group_id).or_default().extend(offsets);
            }
        }
    }

    /// This broker became the leader of `__consumer_offsets` partition `partition` in
    /// `leader_epoch` (Kafka's `onElection`): reads its log on the blocking pool and serves
    /// its groups from then on; meanwhile their requests answer COORDINATOR_LOAD_IN_PROGRESS.
    /// An epoch not newer than the one the partition was loaded in is ignored (a stale or
    /// repeated announcement); a newer one while loading or serving only records the epoch,
    /// as Kafka's runtime does. Resolves when the load is over (or was superseded).
    pub async fn on_elected(&self, host: &impl CoordinatorHost, partition: i32, leader_epoch: i32) {
        let tenure = {
            let mut inner = self.lock();
            if let Some(count) = host.partition_count(OFFSETS_TOPIC) {
                inner.offsets_partitions = count;
            }
            match inner.hosted.get_mut(&partition) {
                Some(h) if h.epoch >= leader_epoch => {
                    info!(
                        partition,
                        leader_epoch,
                        current = h.epoch,
                        "ignoring a stale election for a __consumer_offsets partition"
                    );
                    return;
                }
                Some(h) if h.load != Load::Failed => {
                    h.epoch = leader_epoch;
                    return;
                }
                _ => {}
            }
            let tenure = Self::next_tenure(&mut inner);
            inner.hosted.insert(
                partition,
                Hosted {
                    epoch: leader_epoch,
                    load: Load::Loading,
                    tenure,
                },
            );
            tenure
        };
        info!(partition, leader_epoch, "loading consumer groups");
        // The log is read and its groups installed in the partition's write order: a
        // transaction marker written meanwhile ([`Self::write_txn_marker`]) is either in
        // what is read or applied to what was installed, never lost between the two.
        let writer = self.writer(partition);
        let _writer = writer.lock().await;
        let started = std::time::Instant::now();
        let limits = self.limits;
        let loaded = match host.offsets_log(partition) {
            Ok((log, _)) => tokio::task::spawn_blocking(move || {
                Ok(read_groups(&log, partition, now_ms(), &limits))
            })
            .await
            .unwrap_or_else(|e| {
                Err(ApiError::new(
                    ResponseError::UnknownServerError,
                    e.to_string(),
                ))
            }),
            Err(e) => Err(e),
        };
        let mut inner = self.lock();
        let Some(h) = inner
            .hosted
            .get_mut(&partition)
            .filter(|h| h.tenure == tenure && h.load == Load::Loading)
        else {
            // Unloaded (or loaded again) while reading: this load is void.
            return;
        };
        match loaded {
            Ok((groups, records)) => {
                h.load = Load::Active;
                info!(
                    partition,
                    leader_epoch = h.epoch,
                    groups = groups.groups.len(),
                    pending_transactions = groups.pending.len(),
                    records,
                    elapsed_ms = started.elapsed().as_millis() as u64,
                    "loaded consumer groups"
                );
                Self::install(&mut inner, groups);
            }
            Err(e) => {
                h.load = Load::Failed;
                warn!(partition, code = e.code, error = ?e.message, "loading consumer groups failed");
            }
        }
    }

    /// This broker no longer leads `__consumer_offsets` partition `partition`; `leader_epoch`
    /// is the epoch of the state that says so, `None` if the partition is gone (Kafka's
    /// `onResignation`). Its groups are dropped from memory: parked JoinGroup/SyncGroup
    /// requests and writes not yet replicated are answered NOT_COORDINATOR, so clients find
    /// the new coordinator, which loads the groups from the replicated log. An epoch not
    /// newer than the one the partition was loaded in is ignored.
    pub fn on_resigned(&self, partition: i32, leader_epoch: Option<i32>) {
        let mut inner = self.lock();
        let Some(hosted) = inner.hosted.get(&partition).copied() else {
            return;
        };
        if leader_epoch.is_some_and(|e| hosted.epoch >= e) {
            info!(
                partition,
                leader_epoch,
                current = hosted.epoch,
                "ignoring a stale resignation for a __consumer_offsets partition"
            );
            return;
        }
        inner.hosted.remove(&partition);
        let count = inner.offsets_partitions;
        let ids: Vec<String> = inner
            .groups
            .keys()
            .filter(|id| records::partition_for(id, count) == partition)
            .cloned()
            .collect();
        let not_coordinator = ResponseError::NotCoordinator;
        for id in &ids {
            inner.consumer_logged.remove(id);
            let Some(group) = inner.groups.remove(id) else {
                continue;
            };
            for token in group.parked_tokens() {
                match inner.waiters.remove(&token) {
                    Some(Waiter::Join(tx)) => {
                        let _ = tx.send(JoinResponse::error(not_coordinator, ""));
                    }
                    Some(Waiter::Sync(tx)) => {
                        let _ = tx.send(SyncResponse::error(not_coordinator));
                    }
                    None => {}
                }
            }
            if let Some(at) = inner.scheduled.remove(id) {
                inner.deadlines.remove(&(at, id.clone()));
            }
        }
        for pending in inner.pending_txn.values_mut() {
            pending.retain(|g, _| records::partition_for(g, count) != partition);
        }
        inner.pending_txn.retain(|_, p| !p.is_empty());
        let queued = inner.writes.remove(&partition).unwrap_or_default();
        for w in queued {
            Self::complete(&mut inner, w, &Err(ApiError::code(not_coordinator)));
        }
        info!(
            partition,
            leader_epoch,
            groups = ids.len(),
            "unloaded consumer groups"
        );
    }

    /// The `__consumer_offsets` partition that coordinates `group`, creating the topic on
    /// first use as Kafka does (COORDINATOR_NOT_AVAILABLE if that fails).
    pub(crate) async fn partition_for(
        &self,
        host: &impl CoordinatorHost,
        group: &str,
    ) -> Result<i32, ApiError> {
        let count = match host.partition_count(OFFSETS_TOPIC) {
            Some(count) => count,
            None => host.ensure_offsets_topic().await.map_err(|e| {
                warn!(error = ?e.message, "cannot create __consumer_offsets");
                ApiError::code(ResponseError::CoordinatorNotAvailable)
            })?,
        };
        self.lock().offsets_partitions = count;
        Ok(records::partition_for(group, count))
    }

    /// The partition of `group` if this coordinator serves it now: NOT_COORDINATOR if this
    /// broker does not lead it (or its load failed), COORDINATOR_LOAD_IN_PROGRESS while it
    /// loads. With `create`, `__consumer_offsets` is created on first use (JoinGroup,
    /// OffsetCommit); without, a missing topic is NOT_COORDINATOR (no partition is served).
    /// A partition the committed metadata says this broker leads but that was not announced
    /// yet (the topic was just created, or the reaction to the metadata has not run) is
    /// loaded here first, as the announcement would load it.
    async fn serving(
        &self,
        host: &impl CoordinatorHost,
        group: &str,
        create: bool,
    ) -> Result<i32, ApiError> {
        let partition = if create {
            self.partition_for(host, group).await?
        } else {
            let count = host
                .partition_count(OFFSETS_TOPIC)
                .ok_or_else(|| ApiError::code(ResponseError::NotCoordinator))?;
            self.lock().offsets_partitions = count;
            records::partition_for(group, count)
        };
        let known = self.lock().hosted.get(&partition).map(|h| h.load);
        if known.is_none() {
            match host.offsets_log(partition) {
                Ok((_, epoch)) => self.on_elected(host, partition, epoch).await,
                Err(_) => return Err(ApiError::code(ResponseError::NotCoordinator)),
            }
        }
        Self::check_serving(&self.lock(), partition).map(|()| partition)
    }

    /// Whether `partition` is served now (see [`Self::serving`]); checked again under the
    /// lock that changes a group, since the partition may have been unloaded in between.
    fn check_serving(inner: &Inner, partition: i32) -> Result<(), ApiError> {
        match inner.hosted.get(&partition).map(|h| h.load) {
            Some(Load::Active) => Ok(()),
            Some(Load::Loading) => Err(ApiError::code(ResponseError::CoordinatorLoadInProgress)),
            Some(Load::Failed) | None => Err(ApiError::code(ResponseError::NotCoordinator)),
        }
    }

    fn token(&self) -> Token {
        self.next_token.fetch_add(1, Ordering::Relaxed)
    }

    /// Delivers replies to parked requests; returns the one for `own`, if any.
    fn deliver(inner: &mut Inner, replies: Vec<Reply>, own: Token) -> Option<Reply> {
        let mut mine = None;
        for reply in replies {
            let token = match &reply {
                Reply::Join(t, _) | Reply::Sync(t, _) => *t,
            };
            if token == own {
                mine = Some(reply);
                continue;
            }
            match (inner.waiters.remove(&token), reply) {
                (Some(Waiter::Join(tx)), Reply::Join(_, r)) => {
                    let _ = tx.send(r);
                }
                (Some(Waiter::Sync(tx)), Reply::Sync(_, r)) => {
                    let _ = tx.send(r);
                }
                _ => {}
            }
        }
        mine
    }

    /// JoinGroup: may wait until the rebalance completes.
    pub async fn join(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
        request: JoinRequest,
    ) -> JoinResponse {
        let member_id = request.member_id.clone();
        let error = |e: ApiError| JoinResponse {
            error_code: e.code,
            ..JoinResponse::error(ResponseError::CoordinatorNotAvailable, &member_id)
        };
        let partition = match self.serving(host, group_id, true).await {
            Ok(p) => p,
            Err(e) => return error(e),
        };
        let token = self.token();
        let (tx, rx) = oneshot::channel();
        let (immediate, written) = {
            let mut inner = self.lock();
            if let Err(e) = Self::check_serving(&inner, partition) {
                return error(e);
            }
            let now = now_ms();
            let group = inner
                .groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id, now));
            // A classic static member that takes the place of the last static member of the
            // consumer protocol (joining without a member id) turns the group back into a
            // classic group, if the policy allows.
            let replaced = group
                .consumer
                .as_ref()
                .filter(|c| {
                    request.member_id.is_empty()
                        && c.supports_classic_protocols(&request.protocol_type, &request.protocols)
                })
                .and_then(|c| {
                    let instance = request.group_instance_id.as_deref()?;
                    let replaced = c.static_member(instance)?.member_id.clone();
                    consumer::migration::downgrade_allowed_replacing(
                        self.limits.migration_policy,
                        c,
                        &replaced,
                        self.limits.max_size,
                    )
                    .then_some(replaced)
                });
            if let Some(replaced) = replaced {
                let new_id = uuid::Uuid::new_v4().to_string();
                let replies =
                    group.downgrade_replacing(token, &replaced, new_id, request, now, &self.limits);
                info!(group = %group_id, "downgraded the consumer group to a classic group (static member replaced)");
                let replies = Self::after_change(&mut inner, group_id, replies);
                let own = match Self::deliver(&mut inner, replies, token) {
                    Some(Reply::Join(_, r)) => Some(r),
                    _ => None,
                };
                (own, None)
            } else if let Some(c) = group.consumer.as_mut().filter(|c| !c.members.is_empty()) {
                // A consumer group with members serves classic members itself; the answer
                // goes out once the member's records are written, as Kafka's does.
                let response = c.classic_join(
                    &request,
                    &HostTopics(host),
                    now,
                    self.limits.consumer_max_size,
                    || uuid::Uuid::new_v4().to_string(),
                );
                debug!(group = %group_id, asked = %request.member_id, member = %response.member_id, generation = response.generation_id, error = response.error_code, "classic JoinGroup to a consumer group");
                Self::schedule(&mut inner, group_id);
                let written = Self::queue_consumer_records(&mut inner, group_id);
                (Some(response), written)
            } else {
                let replies = group.join(token, request, now, &self.limits);
                let replies = Self::after_change(&mut inner, group_id, replies);
                match Self::deliver(&mut inner, replies, token) {
                    Some(Reply::Join(_, r)) => (Some(r), None),
                    _ => {
                        inner.waiters.insert(token, Waiter::Join(tx));
                        (None, None)
                    }
                }
            }
        };
        self.flush_partition(host, partition).await;
        if let Some(written) = written {
            if let Err(e) = Self::written(written).await {
                return JoinResponse::error(e, &member_id);
            }
        }
        match immediate {
            Some(r) => r,
            None => rx.await.unwrap_or_else(|_| {
                JoinResponse::error(ResponseError::UnknownServerError, &member_id)
            }),
        }
    }

    /// SyncGroup: followers wait for the leader's assignment, and everyone for the record
    /// holding it to be replicated.
    pub async fn sync(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
        request: SyncRequest,
    ) -> SyncResponse {
        let error = |e: ApiError| SyncResponse {
            error_code: e.code,
            ..SyncResponse::error(ResponseError::CoordinatorNotAvailable)
        };
        let partition = match self.serving(host, group_id, false).await {
            Ok(p) => p,
            Err(e) => return error(e),
        };
        let token = self.token();
        let (tx, rx) = oneshot::channel();
        let immediate = {
            let mut inner = self.lock();
            if let Err(e) = Self::check_serving(&inner, partition) {
                return error(e);
            }
            let now = now_ms();
            let Some(group) = inner.groups.get_mut(group_id) else {
                return SyncResponse::error(ResponseError::UnknownMemberId);
            };
            if let Some(c) = group.consumer.as_mut().filter(|c| !c.members.is_empty()) {
                let response = c.classic_sync(&request, now);
                debug!(group = %group_id, member = %request.member_id, generation = request.generation_id, error = response.error_code, assignment = response.assignment.len(), "classic SyncGroup to a consumer group");
                Self::schedule(&mut inner, group_id);
                return response;
            }
            let replies = group.sync(token, request, now, &self.limits);
            let replies = Self::after_change(&mut inner, group_id, replies);
            match Self::deliver(&mut inner, replies, token) {
                Some(Reply::Sync(_, r)) => Some(r),
                _ => {
                    inner.waiters.insert(token, Waiter::Sync(tx));
                    None
                }
            }
        };
        self.flush_partition(host, partition).await;
        match immediate {
            Some(r) => r,
            None => rx
                .await
                .unwrap_or_else(|_| SyncResponse::error(ResponseError::UnknownServerError)),
        }
    }

    /// Heartbeat: returns the error code. Never waits for the disk: a heartbeat only moves
    /// the member's session deadline later, so the deadline queue needs no update (the
    /// earlier entry fires, finds nothing due and reschedules). While the group's partition
    /// loads the answer is NONE, as Kafka answers "blindly" then.
    pub async fn heartbeat(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
    ) -> i16 {
        if let Err(e) = self.serving(host, group_id, false).await {
            return if e.code == ResponseError::CoordinatorLoadInProgress.code() {
                0
            } else {
                e.code
            };
        }
        let mut inner = self.lock();
        let Some(group) = inner.groups.get_mut(group_id) else {
            return ResponseError::UnknownMemberId.code();
        };
        match group.consumer.as_mut().filter(|c| !c.members.is_empty()) {
            Some(c) => {
                let code = c.classic_heartbeat(member_id, instance, generation_id, now_ms());
                if code != 0 {
                    debug!(group = %group_id, member = %member_id, generation = generation_id, error = code, "classic Heartbeat to a consumer group");
                }
                // A member told to rejoin has a join deadline now.
                Self::schedule(&mut inner, group_id);
                code
            }
            None => group.heartbeat(member_id, instance, generation_id, now_ms()),
        }
    }

    /// ConsumerGroupHeartbeat (KIP-848), already checked with
    /// [`consumer::validate_heartbeat`]. The records of what changed (see
    /// [`consumer::persist`]) are queued under the same lock as the change, and the heartbeat
    /// is answered once they (and whatever was queued before them) are replicated, as Kafka
    /// answers; a heartbeat that changed nothing persisted still waits for the writes before
    /// it, so no member hears of state that is not in the log yet. A failed write is answered
    /// with Kafka's coordinator error and the member retries; the change stays in memory and
    /// its records are not written again (Kafka reverts its in-memory state instead), so a
    /// load after such a failure may find the group one change behind.
    pub async fn consumer_heartbeat(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
        hb: consumer::Heartbeat,
        config: &consumer::ConsumerGroupConfig,
    ) -> Result<consumer::HeartbeatReply, consumer::Refusal> {
        let refusal = |e: ApiError| consumer::Refusal {
            error: to_response_error(e.code),
            message: String::new(),
        };
        let partition = self
            .serving(host, group_id, hb.member_epoch == 0)
            .await
            .map_err(refusal)?;
        let (reply, written) = {
            let mut inner = self.lock();
            Self::check_serving(&inner, partition).map_err(refusal)?;
            let now = now_ms();
            if hb.member_epoch != 0 && !inner.groups.contains_key(group_id) {
                return Err(consumer::Refusal {
                    error: ResponseError::GroupIdNotFound,
                    message: format!("Group {group_id} not found."),
                });
            }
            let group = inner
                .groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id, now));
            let new_id = || uuid::Uuid::new_v4().to_string();
            let policy = self.limits.migration_policy;
            let mut conversion = Conversion::None;
            let reply = if group.members().next().is_some() {
                // A classic group with members: the first heartbeat (epoch 0) of a member
                // of the consumer protocol upgrades it, if the policy allows.
                if hb.member_epoch != 0 {
                    return Err(consumer::migration::not_a_consumer_group(group_id));
                }
                if let Some(reason) =
                    consumer::migration::upgrade_refusal(policy, group, config.max_size)
                {
                    info!(group = %group_id, reason, "cannot upgrade the classic group to a consumer group");
                    return Err(consumer::migration::upgrade_refused(group_id, reason));
                }
                let Some(mut converted) =
                    consumer::ConsumerGroup::from_classic(group, &HostTopics(host), now)
                else {
                    warn!(group = %group_id, "cannot upgrade the classic group: malformed embedded consumer protocol");
                    return Err(consumer::migration::upgrade_refused(
                        group_id,
                        consumer::migration::MALFORMED_PROTOCOL,
                    ));
                };
                // A refused heartbeat leaves the classic group as it was.
                let reply = converted.heartbeat(&hb, &HostTopics(host), now, config, new_id)?;
                info!(group = %group_id, epoch = converted.group_epoch, "upgraded the classic group to a consumer group");
                conversion = Conversion::Upgraded(group.upgrade(converted, now));
                Ok(reply)
            } else if hb.member_epoch == consumer::LEAVE_GROUP_MEMBER_EPOCH
                && group.consumer.as_ref().is_some_and(|c| {
                    consumer::migration::downgrade_allowed(
                        policy,
                        c,
                        &hb.member_id,
                        self.limits.max_size,
                    )
                })
            {
                // The last member of the consumer protocol leaves classic members behind.
                let replies = group.downgrade(&hb.member_id, now, &self.limits);
                info!(group = %group_id, "downgraded the consumer group to a classic group");
                conversion = Conversion::Downgraded(replies);
                Ok(consumer::HeartbeatReply {
                    member_id: hb.member_id.clone(),
                    member_epoch: consumer::LEAVE_GROUP_MEMBER_EPOCH,
                    heartbeat_interval_ms: config.heartbeat_interval_ms,
                    assignment: None,
                })
            } else {
                group
                    .consumer
                    .get_or_insert_with(|| consumer::ConsumerGroup::new(group_id))
                    .heartbeat(&hb, &HostTopics(host), now, config, new_id)
            };
            if group
                .consumer
                .as_ref()
                .is_some_and(|c| c.members.is_empty())
                && group.offsets.is_empty()
            {
                inner.groups.remove(group_id);
            }
            let written = match conversion {
                Conversion::None => {
                    Self::schedule(&mut inner, group_id);
                    Self::queue_consumer_records(&mut inner, group_id)
                }
                Conversion::Upgraded(parked) => {
                    // Kafka's order: the classic group's tombstone, then the consumer
                    // group's records.
                    Self::enqueue_group(&mut inner, group_id, None, Vec::new());
                    Self::schedule(&mut inner, group_id);
                    let written = Self::queue_consumer_records(&mut inner, group_id);
                    Self::deliver(&mut inner, parked, 0);
                    written
                }
                Conversion::Downgraded(replies) => {
                    // The consumer group's tombstones, then the classic group's record.
                    let replies = Self::after_change(&mut inner, group_id, replies);
                    Self::deliver(&mut inner, replies, 0);
                    None
                }
            };
            (reply, written)
        };
        self.flush_partition(host, partition).await;
        if let Some(written) = written {
            Self::written(written)
                .await
                .map_err(|error| consumer::Refusal {
                    error,
                    message: String::new(),
                })?;
        }
        reply
    }

    /// Queues the records that bring the log's view of consumer group `group_id` to its
    /// state in memory (tombstones if the group is gone), if any changed.
    fn queue_consumer_records(
        inner: &mut Inner,
        group_id: &str,
    ) -> Option<oneshot::Receiver<Result<(), ApiError>>> {
        let now = inner.groups.get(group_id).and_then(|g| g.consumer.clone());
        let records =
            consumer::persist::changes(group_id, inner.consumer_logged.get(group_id), now.as_ref());
        if records.is_empty() {
            return None;
        }
        match now {
            Some(c) => inner.consumer_logged.insert(group_id.to_string(), c),
            None => inner.consumer_logged.remove(group_id),
        };
        Some(Self::enqueue(inner, group_id, records, Effect::None))
    }

    /// Checks the member an OffsetFetch (v9+) names: it must be a member of the consumer
    /// group at its current epoch (UNKNOWN_MEMBER_ID, STALE_MEMBER_EPOCH otherwise). A fetch
    /// without a member, or for a classic group, passes.
    pub async fn check_fetch_member(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
        member_id: Option<&str>,
        member_epoch: i32,
    ) -> Result<(), i16> {
        if member_id.is_none_or(str::is_empty) {
            return Ok(());
        }
        let partition = self
            .serving(host, group_id, false)
            .await
            .map_err(|e| e.code)?;
        let inner = self.lock();
        Self::check_serving(&inner, partition).map_err(|e| e.code)?;
        match inner.groups.get(group_id).and_then(|g| g.consumer.as_ref()) {
            Some(c) => c
                .validate_offset_fetch(member_id, member_epoch)
                .map_err(|e| e.code()),
            None => Ok(()),
        }
    }

    /// LeaveGroup: one error code per member, or the group-level error.
    pub async fn leave(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
        members: &[(String, Option<String>)],
    ) -> Result<Vec<i16>, i16> {
        let partition = self
            .serving(host, group_id, false)
            .await
            .map_err(|e| e.code)?;
        let codes = {
            let mut inner = self.lock();
            Self::check_serving(&inner, partition).map_err(|e| e.code)?;
            let Some(group) = inner.groups.get_mut(group_id) else {
                return Err(ResponseError::UnknownMemberId.code());
            };
            let (codes, replies) = match group.consumer.as_mut().filter(|c| !c.members.is_empty()) {
                Some(c) => {
                    let codes = members
                        .iter()
                        .map(
                            |(id, instance)| match c.classic_leave(id, instance.as_deref()) {
                                Ok(()) => 0,
                                Err(e) => e.code(),
                            },
                        )
                        .collect();
                    (codes, Vec::new())
                }
                None => group.leave(members, now_ms(), &self.limits),
            };
            let replies = Self::after_change(&mut inner, group_id, replies);
            Self::deliver(&mut inner, replies, 0);
            codes
        };
        self.flush_partition(host, partition).await;
        Ok(codes)
    }

    /// OffsetCommit: one error code per partition (group-level failures repeat per partition).
    /// Answers once the offsets are replicated (they become visible to OffsetFetch then).
    pub async fn commit(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
        commits: Vec<OffsetCommit>,
    ) -> Vec<i16> {
        let partition = match self.serving(host, group_id, true).await {
            Ok(p) => p,
            Err(e) => return vec![e.code; commits.len()],
        };
        let (codes, written) = self.stage_commit(
            host,
            partition,
            group_id,
            member_id,
            instance,
            generation_id,
            commits,
        );
        let Some(written) = written else {
            return codes;
        };
        self.complete_offset_commit(host, partition, codes, written)
            .await
    }

    /// Writes the queued offset commit `written` of `partition` and waits until it is
    /// replicated; answers `codes` (one per partition of the request), with every accepted
    /// partition (code 0) given the write's error code instead if it failed, and
    /// COORDINATOR_NOT_AVAILABLE if the write was dropped without an outcome:
    /// nothing is acknowledged that was not replicated. Serves OffsetCommit and
    /// TxnOffsetCommit alike.
    async fn complete_offset_commit(
        &self,
        host: &impl CoordinatorHost,
        partition: i32,
        codes: Vec<i16>,
        written: oneshot::Receiver<Result<(), ApiError>>,
    ) -> Vec<i16> {
        self.flush_partition(host, partition).await;
        let result = written
            .await
            .unwrap_or_else(|_| Err(ApiError::code(ResponseError::CoordinatorNotAvailable)));
        match result {
            Ok(()) => codes,
            Err(e) => codes
                .into_iter()
                .map(|c| if c == 0 { e.code } else { c })
                .collect(),
        }
    }

    /// The locked part of [`Self::commit`]: validation and the queued write.
    #[allow(clippy::type_complexity, clippy::too_many_arguments)]
    fn stage_commit(
        &self,
        host: &impl CoordinatorHost,
        partition: i32,
        group_id: &str,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
        commits: Vec<OffsetCommit>,
    ) -> (Vec<i16>, Option<oneshot::Receiver<Result<(), ApiError>>>) {
        let mut inner = self.lock();
        if let Err(e) = Self::check_serving(&inner, partition) {
            return (vec![e.code; commits.len()], None);
        }
        let now = now_ms();
        let group = inner
            .groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id, now));
        if let Err(e) = group.validate_offset_commit(member_id, instance, generation_id) {
            let code = e.code();
            debug!(group = %group_id, member = %member_id, generation = generation_id, error = code, "offset commit refused");
            if group.state() == GroupState::Empty
                && group.offsets.is_empty()
                && group.members().next().is_none()
            {
                inner.groups.remove(group_id);
            }
            return (vec![code; commits.len()], None);
        }
        let mut codes = Vec::with_capacity(commits.len());
        let mut accepted = Vec::new();
        for c in commits {
            let known = host
                .partition_count(&c.topic)
                .is_some_and(|count| c.partition >= 0 && c.partition < count);
            if !known {
                codes.push(ResponseError::UnknownTopicOrPartition.code());
            } else if c
                .metadata
                .as_ref()
                .is_some_and(|m| m.len() > OFFSET_METADATA_MAX_BYTES)
            {
                codes.push(ResponseError::OffsetMetadataTooLarge.code());
            } else {
                codes.push(0);
                accepted.push(c);
            }
        }
        if accepted.is_empty() {
            return (codes, None);
        }
        let records: Vec<(Bytes, Option<Bytes>)> = accepted
            .iter()
            .map(|c| {
                let key = RecordKey::Offset {
                    group: group_id.to_string(),
                    topic: c.topic.clone(),
                    partition: c.partition,
                };
                let value = OffsetValue {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.clone().unwrap_or_default(),
                    commit_timestamp: now,
                };
                (key.encode(), Some(value.encode()))
            })
            .collect();
        let offsets = accepted
            .into_iter()
            .map(|c| {
                (
                    (c.topic, c.partition),
                    CommittedOffset {
                        offset: c.offset,
                        leader_epoch: c.leader_epoch,
                        metadata: c.metadata.unwrap_or_default(),
                        commit_timestamp: now,
                    },
                )
            })
            .collect();
        let written = Self::enqueue(&mut inner, group_id, records, Effect::Commit(offsets));
        (codes, Some(written))
    }

    /// TxnOffsetCommit: offsets committed in the transaction of `producer_id` at
    /// `producer_epoch`, one error code per partition. The records go to the group's
    /// `__consumer_offsets` partition as a transactional batch of that producer; once
    /// replicated they are pending (OffsetFetch does not show them) until the end marker of
    /// the transaction is written there ([`Self::write_txn_marker`]). Checked as Kafka's
    /// `validateTransactionalOffsetCommit`: an unknown group is created for a commit without
    /// generation (generation -1) and refused with ILLEGAL_GENERATION otherwise; then member,
    /// instance and generation as for OffsetCommit, except that a commit naming no member is
    /// accepted and a group completing a rebalance is no reason to refuse.
    #[allow(clippy::too_many_arguments)]
    pub async fn txn_commit(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        member_id: &str,
        instance: Option<&str>,
        generation_id: i32,
        commits: Vec<OffsetCommit>,
    ) -> Vec<i16> {
        let partition = match self.serving(host, group_id, true).await {
            Ok(p) => p,
            Err(e) => return vec![e.code; commits.len()],
        };
        let written = {
            let mut inner = self.lock();
            if let Err(e) = Self::check_serving(&inner, partition) {
                return vec![e.code; commits.len()];
            }
            let now = now_ms();
            let checked = match inner.groups.get(group_id) {
                Some(group) => group.validate_txn_offset_commit(member_id, instance, generation_id),
                None if generation_id < 0 => Ok(()),
                None => Err(ResponseError::IllegalGeneration),
            };
            if let Err(e) = checked {
                return vec![e.code(); commits.len()];
            }
            let mut codes = Vec::with_capacity(commits.len());
            let mut records = Vec::new();
            let mut offsets = Vec::new();
            for c in commits {
                if c.metadata
                    .as_ref()
                    .is_some_and(|m| m.len() > OFFSET_METADATA_MAX_BYTES)
                {
                    codes.push(ResponseError::OffsetMetadataTooLarge.code());
                    continue;
                }
                codes.push(0);
                let committed = CommittedOffset {
                    offset: c.offset,
                    leader_epoch: c.leader_epoch,
                    metadata: c.metadata.unwrap_or_default(),
                    commit_timestamp: now,
                };
                let key = RecordKey::Offset {
                    group: group_id.to_string(),
                    topic: c.topic.clone(),
                    partition: c.partition,
                };
                let value = OffsetValue {
                    offset: committed.offset,
                    leader_epoch: committed.leader_epoch,
                    metadata: committed.metadata.clone(),
                    commit_timestamp: now,
                };
                records.push((key.encode(), Some(value.encode())));
                offsets.push(((c.topic, c.partition), committed));
            }
            if records.is_empty() {
                return codes;
            }
            inner
                .groups
                .entry(group_id.to_string())
                .or_insert_with(|| Group::new(group_id, now));
            let (tx, rx) = oneshot::channel();
            Self::push_write(
                &mut inner,
                Write {
                    group_id: group_id.to_string(),
                    records,
                    effect: Effect::TxnCommit {
                        producer_id,
                        offsets,
                    },
                    done: Some(tx),
                    held: Vec::new(),
                    producer: Some((producer_id, producer_epoch)),
                },
            );
            (codes, rx)
        };
        let (codes, written) = written;
        self.complete_offset_commit(host, partition, codes, written)
            .await
    }

    /// Writes the end marker of `producer_id`'s transaction to `__consumer_offsets`
    /// partition `partition` through `write` (the partition leader's marker append, acks=all)
    /// and then ends the transaction's pending offsets of that partition's groups: a COMMIT
    /// makes them the committed offsets, an ABORT drops them (Kafka's
    /// `replayEndTransactionMarker`). Runs in the partition's write order: no offset batch of
    /// the group coordinator is between its append and its effect meanwhile.
    pub async fn write_txn_marker(
        &self,
        partition: i32,
        producer_id: i64,
        commit: bool,
        write: impl Future<Output = Result<(), ApiError>>,
    ) -> Result<(), ApiError> {
        let writer = self.writer(partition);
        let _writer = writer.lock().await;
        write.await?;
        let mut inner = self.lock();
        let count = inner.offsets_partitions;
        Self::end_txn(&mut inner, producer_id, commit, |g| {
            records::partition_for(g, count) == partition
        });
        Ok(())
    }

    /// Ends `producer_id`'s pending offsets of the groups `owned` selects.
    fn end_txn(inner: &mut Inner, producer_id: i64, commit: bool, owned: impl Fn(&str) -> bool) {
        let Some(pending) = inner.pending_txn.get_mut(&producer_id) else {
            return;
        };
        let ended: Vec<String> = pending.keys().filter(|g| owned(g)).cloned().collect();
        let mut materialized = Vec::new();
        for group_id in ended {
            if let Some(offsets) = pending.remove(&group_id) {
                materialized.push((group_id, offsets));
            }
        }
        if pending.is_empty() {
            inner.pending_txn.remove(&producer_id);
        }
        for (group_id, offsets) in materialized {
            info!(group = %group_id, producer_id, commit, partitions = offsets.len(), "transactional offsets ended");
            if commit {
                let now = now_ms();
                inner
                    .groups
                    .entry(group_id.clone())
                    .or_insert_with(|| Group::new(&group_id, now))
                    .offsets
                    .extend(offsets);
            }
        }
    }

    /// The partitions of `group_id` with offsets committed in a transaction not ended yet:
    /// OffsetFetch with `require_stable` answers UNSTABLE_OFFSET_COMMIT for them.
    pub fn pending_txn_partitions(&self, group_id: &str) -> BTreeSet<(String, i32)> {
        self.lock()
            .pending_txn
            .values()
            .filter_map(|by_group| by_group.get(group_id))
            .flat_map(|offsets| offsets.keys().cloned())
            .collect()
    }

    /// Committed offsets of a group: all of them, or those of `partitions` (missing ones
    /// report offset -1 as Kafka does). Only replicated commits are visible: a commit whose
    /// records the high watermark has not passed yet is not. `Err` with NOT_COORDINATOR or
    /// COORDINATOR_LOAD_IN_PROGRESS when this coordinator does not serve the group now.
    pub async fn fetch_offsets(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
        partitions: Option<Vec<(String, i32)>>,
    ) -> Result<Vec<(String, i32, Option<CommittedOffset>)>, i16> {
        let partition = self
            .serving(host, group_id, false)
            .await
            .map_err(|e| e.code)?;
        let inner = self.lock();
        Self::check_serving(&inner, partition).map_err(|e| e.code)?;
        let group = inner.groups.get(group_id);
        Ok(match partitions {
            Some(list) => list
                .into_iter()
                .map(|(t, p)| {
                    let found = group.and_then(|g| g.offsets.get(&(t.clone(), p)).cloned());
                    (t, p, found)
                })
                .collect(),
            None => group
                .map(|g| {
                    g.offsets
                        .iter()
                        .map(|((t, p), o)| (t.clone(), *p, Some(o.clone())))
                        .collect()
                })
                .unwrap_or_default(),
        })
    }

    /// A snapshot of one group for DescribeGroups; `Ok(None)` if this coordinator serves
    /// its partition but does not know it, `Err` with NOT_COORDINATOR or
    /// COORDINATOR_LOAD_IN_PROGRESS otherwise.
    pub async fn describe(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
    ) -> Result<Option<Group>, i16> {
        let partition = self
            .serving(host, group_id, false)
            .await
            .map_err(|e| e.code)?;
        let inner = self.lock();
        Self::check_serving(&inner, partition).map_err(|e| e.code)?;
        Ok(inner.groups.get(group_id).cloned())
    }

    /// Snapshots of every group this coordinator serves (ListGroups);
    /// COORDINATOR_LOAD_IN_PROGRESS while one of its partitions loads, as Kafka answers.
    pub fn groups(&self) -> Result<Vec<Group>, i16> {
        let inner = self.lock();
        if inner.hosted.values().any(|h| h.load == Load::Loading) {
            return Err(ResponseError::CoordinatorLoadInProgress.code());
        }
        Ok(inner
            .groups
            .values()
            .filter(|g| g.state() != GroupState::Dead)
            .cloned()
            .collect())
    }

    /// DeleteGroups: only groups without members; writes tombstones for offsets and metadata.
    pub async fn delete_group(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
    ) -> Result<(), ResponseError> {
        let partition = self
            .serving(host, group_id, false)
            .await
            .map_err(|e| to_response_error(e.code))?;
        let written = {
            let mut inner = self.lock();
            Self::check_serving(&inner, partition).map_err(|e| to_response_error(e.code))?;
            let Some(group) = inner.groups.get(group_id) else {
                return Err(ResponseError::GroupIdNotFound);
            };
            if group.state() != GroupState::Empty {
                return Err(ResponseError::NonEmptyGroup);
            }
            let mut tombstones = group_tombstones(group);
            let keys = group.offsets.keys().cloned().collect();
            tombstones.extend(Self::consumer_tombstones(&mut inner, group_id));
            let effect = Effect::Delete {
                keys,
                remove_group: true,
            };
            Self::enqueue(&mut inner, group_id, tombstones, effect)
        };
        self.flush_partition(host, partition).await;
        Self::written(written).await?;
        info!(group = %group_id, "deleted consumer group");
        Ok(())
    }

    /// Tombstones for every record of consumer group `group_id` (it is being deleted), and
    /// the log's view of it forgotten.
    fn consumer_tombstones(inner: &mut Inner, group_id: &str) -> Vec<(Bytes, Option<Bytes>)> {
        let before = inner.consumer_logged.remove(group_id);
        consumer::persist::changes(group_id, before.as_ref(), None)
    }

    /// The outcome of a queued write as a Kafka error.
    async fn written(
        written: oneshot::Receiver<Result<(), ApiError>>,
    ) -> Result<(), ResponseError> {
        match written.await {
            Ok(Ok(())) => Ok(()),
            Ok(Err(e)) => Err(to_response_error(e.code)),
            Err(_) => Err(ResponseError::CoordinatorNotAvailable),
        }
    }

    /// OffsetDelete: removes committed offsets of partitions the group does not subscribe to.
    pub async fn delete_offsets(
        &self,
        host: &impl CoordinatorHost,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<Vec<i16>, ResponseError> {
        let partition = self
            .serving(host, group_id, false)
            .await
            .map_err(|e| to_response_error(e.code))?;
        let (codes, written) = self.stage_delete_offsets(partition, group_id, partitions)?;
        if let Some(written) = written {
            self.flush_partition(host, partition).await;
            Self::written(written).await?;
        }
        Ok(codes)
    }

    /// The locked part of [`Self::delete_offsets`].
    #[allow(clippy::type_complexity)]
    fn stage_delete_offsets(
        &self,
        partition: i32,
        group_id: &str,
        partitions: &[(String, i32)],
    ) -> Result<(Vec<i16>, Option<oneshot::Receiver<Result<(), ApiError>>>), ResponseError> {
        let mut inner = self.lock();
        Self::check_serving(&inner, partition).map_err(|e| to_response_error(e.code))?;
        let Some(group) = inner.groups.get_mut(group_id) else {
            return Err(ResponseError::GroupIdNotFound);
        };
        let subscribed = if group.state() == GroupState::Empty {
            Default::default()
        } else {
            state::subscribed_topics(group)
        };
        let mut codes = Vec::new();
        let mut tombstones = Vec::new();
        let consumer = group.consumer.as_ref();
        for (t, p) in partitions {
            if subscribed.contains(t) || consumer.is_some_and(|c| c.is_subscribed_to(t)) {
                codes.push(ResponseError::GroupSubscribedToTopic.code());
            } else {
                codes.push(0);
                if group.offsets.contains_key(&(t.clone(), *p)) {
                    tombstones.push((
                        RecordKey::Offset {
                            group: group_id.to_string(),
                            topic: t.clone(),
                            partition: *p,
                        }
                        .encode(),
                        None,
                    ));
                }
            }
        }
        if tombstones.is_empty() {
            return Ok((codes, None));
        }
        let keys = partitions
            .iter()
            .zip(&codes)
            .filter(|(_, code)| **code == 0)
            .map(|(k, _)| k.clone())
            .collect();
        let effect = Effect::Delete {
            keys,
            remove_group: false,
        };
        let written = Self::enqueue(&mut inner, group_id, tombstones, effect);
        Ok((codes, Some(written)))
    }

    /// What follows every change of a group's state: its metadata record is queued if its
    /// membership changed, and its next deadline is rescheduled. Returns the replies to
    /// deliver now; successful SyncGroup replies of a change that wrote the group's record
    /// are held by that write (the assignment goes out once it is replicated).
    fn after_change(inner: &mut Inner, group_id: &str, replies: Vec<Reply>) -> Vec<Reply> {
        // The tombstones of a consumer group that is gone (downgraded, or empty and turned
        // classic by a join) go before the classic group's record, as Kafka writes them.
        let consumer_gone = inner
            .groups
            .get(group_id)
            .is_none_or(|g| g.consumer.is_none());
        if consumer_gone {
            let _ = Self::queue_consumer_records(inner, group_id);
        }
        let changed = inner
            .groups
            .get_mut(group_id)
            .and_then(|g| g.take_dirty().then(|| g.to_value()));
        let now = match changed {
            Some(value) => {
                let (held, now): (Vec<Reply>, Vec<Reply>) = replies
                    .into_iter()
                    .partition(|r| matches!(r, Reply::Sync(_, s) if s.error_code == 0));
                Self::enqueue_group(inner, group_id, Some(value), held);
                now
            }
            None => replies,
        };
        // Members fenced by a tick, or classic members that left a consumer group: nobody
        // waits for these records (Kafka writes them the same way, unanswered).
        if !consumer_gone {
            let _ = Self::queue_consumer_records(inner, group_id);
        }
        Self::schedule(inner, group_id);
        now
    }

    /// Queues the group's metadata record (membership is soft state: a failed write is
    /// logged, members rejoin if it is lost), with the replies it holds.
    fn enqueue_group(
        inner: &mut Inner,
        group_id: &str,
        value: Option<GroupValue>,
        held: Vec<Reply>,
    ) {
        if let Some(v) = &value {
            info!(
                group = %group_id,
                generation = v.generation,
                protocol = v.protocol.as_deref().unwrap_or(""),
                members = v.members.len(),
                "group membership changed"
            );
        }
        let record = (
            RecordKey::Group {
                group: group_id.to_string(),
            }
            .encode(),
            value.map(|v| v.encode()),
        );
        Self::push_write(
            inner,
            Write {
                group_id: group_id.to_string(),
                records: vec![record],
                effect: Effect::None,
                done: None,
                held,
                producer: None,
            },
        );
    }

    /// Queues records whose outcome someone waits for.
    fn enqueue(
        inner: &mut Inner,
        group_id: &str,
        records: Vec<(Bytes, Option<Bytes>)>,
        effect: Effect,
    ) -> oneshot::Receiver<Result<(), ApiError>> {
        let (tx, rx) = oneshot::channel();
        Self::push_write(
            inner,
            Write {
                group_id: group_id.to_string(),
                records,
                effect,
                done: Some(tx),
                held: Vec::new(),
                producer: None,
            },
        );
        rx
    }

    /// Appends `write` to the queue of its group's partition.
    fn push_write(inner: &mut Inner, write: Write) {
        let partition = records::partition_for(&write.group_id, inner.offsets_partitions);
        inner.writes.entry(partition).or_default().push_back(write);
    }

    /// (Re)schedules `group_id` in the deadline queue if its next deadline is earlier than
    /// the entry it has (a later deadline keeps the early entry, which reschedules lazily).
    fn schedule(inner: &mut Inner, group_id: &str) {
        let Some(next) = inner.groups.get(group_id).and_then(Group::next_deadline) else {
            return;
        };
        if inner.scheduled.get(group_id).is_some_and(|&at| at <= next) {
            return;
        }
        if let Some(old) = inner.scheduled.insert(group_id.to_string(), next) {
            inner.deadlines.remove(&(old, group_id.to_string()));
        }
        inner.deadlines.insert((next, group_id.to_string()));
    }

    /// Removes and returns the groups whose deadline is at or before `now`.
    fn take_due(inner: &mut Inner, now: i64) -> Vec<String> {
        let mut due = Vec::new();
        while let Some((at, _)) = inner.deadlines.first() {
            if *at > now {
                break;
            }
            if let Some((at, id)) = inner.deadlines.pop_first() {
                if inner.scheduled.get(&id) == Some(&at) {
                    inner.scheduled.remove(&id);
                }
                due.push(id);
            }
        }
        due
    }

    fn writer(&self, partition: i32) -> Arc<tokio::sync::Mutex<()>> {
        self.writers
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .entry(partition)
            .or_default()
            .clone()
    }

    /// Appends everything queued for `partition` as batches through
    /// [`CoordinatorHost::append_offsets`] (acks=all), one batch at a time; once a batch is
    /// replicated, applies each of its writes' effects (under the lock, in queue order) and
    /// tells their waiters; a failed batch fails its writes with [`coordinator_error`].
    /// Returns once the queue was empty at some point after the call began, so a caller's
    /// own write is done when this returns.
    pub(crate) async fn flush_partition(&self, host: &impl CoordinatorHost, partition: i32) {
        let writer = self.writer(partition);
        let _writer = writer.lock().await;
        loop {
            let (batch, tenure) = {
                let mut inner = self.lock();
                let tenure = inner
                    .hosted
                    .get(&partition)
                    .filter(|h| h.load == Load::Active)
                    .map(|h| h.tenure);
                let Some(queue) = inner.writes.get_mut(&partition) else {
                    return;
                };
                let mut batch: Vec<Write> = Vec::new();
                let mut bytes = 0;
                while let Some(w) = queue.front() {
                    let size: usize = w
                        .records
                        .iter()
                        .map(|(k, v)| k.len() + v.as_ref().map_or(0, Bytes::len))
                        .sum();
                    if !batch.is_empty() && bytes + size > MAX_BATCH_RECORD_BYTES {
                        break;
                    }
                    // A transactional commit is a batch of its own (its producer's).
                    if batch
                        .first()
                        .is_some_and(|b| b.producer.is_some() || w.producer.is_some())
                    {
                        break;
                    }
                    bytes += size;
                    batch.extend(queue.pop_front());
                }
                if queue.is_empty() {
                    inner.writes.remove(&partition);
                }
                if batch.is_empty() {
                    return;
                }
                (batch, tenure)
            };
            let result = match tenure {
                None => Err(ApiError::code(ResponseError::NotCoordinator)),
                Some(_) => match encode_batch_of(
                    batch.first().and_then(|w| w.producer),
                    batch.iter().flat_map(|w| w.records.iter()),
                ) {
                    Ok(encoded) => host
                        .append_offsets(partition, encoded)
                        .await
                        .map(|_| ())
                        .map_err(|e| {
                            warn!(partition, code = e.code, error = ?e.message, "could not write to __consumer_offsets");
                            ApiError::code(
                                ResponseError::try_from_code(coordinator_error(e.code))
                                    .unwrap_or(ResponseError::UnknownServerError),
                            )
                        }),
                    Err(e) => Err(e),
                },
            };
            let mut inner = self.lock();
            // Unloaded while the batch was out: the new coordinator reads it from the log;
            // the waiters here must look for it.
            let current = inner
                .hosted
                .get(&partition)
                .is_some_and(|h| h.load == Load::Active && Some(h.tenure) == tenure);
            let result = if current {
                result
            } else {
                Err(ApiError::code(ResponseError::NotCoordinator))
            };
            for w in batch {
                Self::complete(&mut inner, w, &result);
            }
        }
    }

    /// Finishes one write with the outcome of its batch: applies its effect and delivers its
    /// held replies on success; on failure tells its waiter, and answers its held SyncGroup
    /// replies with the error (the members rejoin; the group stays as it was in memory,
    /// where Kafka reverts it to CompletingRebalance).
    fn complete(inner: &mut Inner, w: Write, result: &Result<(), ApiError>) {
        match result {
            Ok(()) => {
                Self::apply(inner, &w.group_id, w.effect);
                Self::deliver(inner, w.held, 0);
            }
            Err(e) => {
                if w.done.is_none() {
                    // Membership is soft state (members rejoin if it is lost); expired
                    // offsets are expired again at the next check.
                    warn!(group = %w.group_id, code = e.code, "group metadata not written");
                }
                let code = to_response_error(e.code);
                let failed = w
                    .held
                    .into_iter()
                    .map(|r| match r {
                        Reply::Sync(t, _) => Reply::Sync(t, SyncResponse::error(code)),
                        Reply::Join(t, _) => Reply::Join(t, JoinResponse::error(code, "")),
                    })
                    .collect();
                Self::deliver(inner, failed, 0);
            }
        }
        if let Some(done) = w.done {
            let _ = done.send(result.clone());
        }
    }

    fn apply(inner: &mut Inner, group_id: &str, effect: Effect) {
        match effect {
            Effect::None => {}
            Effect::Commit(offsets) => {
                let now = now_ms();
                let group = inner
                    .groups
                    .entry(group_id.to_string())
                    .or_insert_with(|| Group::new(group_id, now));
                group.offsets.extend(offsets);
            }
            Effect::TxnCommit {
                producer_id,
                offsets,
            } => {
                let now = now_ms();
                inner
                    .groups
                    .entry(group_id.to_string())
                    .or_insert_with(|| Group::new(group_id, now));
                inner
                    .pending_txn
                    .entry(producer_id)
                    .or_default()
                    .entry(group_id.to_string())
                    .or_default()
                    .extend(offsets);
            }
            Effect::Delete { keys, remove_group } => {
                let Some(group) = inner.groups.get_mut(group_id) else {
                    return;
                };
                for k in &keys {
                    group.offsets.remove(k);
                }
                let gone = remove_group
                    && group.state() == GroupState::Empty
                    && group.members().next().is_none()
                    && group.offsets.is_empty();
                if gone {
                    inner.groups.remove(group_id);
                }
            }
        }
    }
}

/// A conversion a ConsumerGroupHeartbeat made, with the replies it owes parked requests.
enum Conversion {
    None,
    /// The classic group became a consumer group.
    Upgraded(Vec<Reply>),
    /// The consumer group became a classic group.
    Downgraded(Vec<Reply>),
}

/// The broker's topics as consumer groups see them.
struct HostTopics<'a, H>(&'a H);

impl<H: CoordinatorHost> consumer::Topics for HostTopics<'_, H> {
    fn lookup(&self, name: &str) -> Option<(uuid::Uuid, i32)> {
        let id = self.0.topic_id(name)?;
        Some((id, self.0.partition_count(name)?))
    }

    fn names(&self) -> (i64, Vec<String>) {
        self.0.topic_names()
    }
}

/// A Kafka error code as a [`ResponseError`] (an unknown code as UNKNOWN_SERVER_ERROR).
fn to_response_error(code: i16) -> ResponseError {
    ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError)
}

/// Encodes `records` as one non-transactional, non-idempotent v2 batch, as every
/// coordinator writes to its internal topic (the transaction coordinator too).
pub(crate) fn encode_coordinator_batch<'a>(
    records: impl Iterator<Item = &'a (Bytes, Option<Bytes>)>,
) -> Result<Bytes, ApiError> {
    encode_batch(records)
}

/// Encodes `records` as one non-transactional, non-idempotent v2 batch.
fn encode_batch<'a>(
    records: impl Iterator<Item = &'a (Bytes, Option<Bytes>)>,
) -> Result<Bytes, ApiError> {
    encode_batch_of(None, records)
}

/// Encodes `records` as one v2 batch: transactional for `producer` (id, epoch), as Kafka's
/// coordinator writes transactional offset commits (no sequence), otherwise without a
/// producer.
fn encode_batch_of<'a>(
    producer: Option<(i64, i16)>,
    records: impl Iterator<Item = &'a (Bytes, Option<Bytes>)>,
) -> Result<Bytes, ApiError> {
    let (producer_id, producer_epoch) = producer.unwrap_or((-1, -1));
    let now = now_ms();
    let batch: Vec<Record> = records
        .enumerate()
        .map(|(i, (k, v))| Record {
            transactional: producer.is_some(),
            control: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch,
            timestamp_type: TimestampType::Creation,
            offset: i as i64,
            // kafka-protocol's encoder starts a new batch wherever `offset - sequence`
            // changes; number the records and reset the base sequence below.
            sequence: i as i32,
            timestamp: now,
            key: Some(k.clone()),
            value: v.clone(),
            headers: Default::default(),
            delete_horizon: false,
        })
        .collect();
    let mut buf = BytesMut::new();
    RecordBatchEncoder::encode(
        &mut buf,
        batch.iter(),
        &RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        },
    )
    .map_err(|e| ApiError::new(ResponseError::UnknownServerError, e.to_string()))?;
    mark_non_idempotent(&mut buf);
    Ok(buf.freeze())
}

/// Reads a `__consumer_offsets` partition's log from its start to its end and replays it:
/// the groups with their committed offsets and metadata (later records winning, tombstones
/// deleting), the offsets of transactions whose marker is not in the log yet (a
/// transactional batch's offsets wait for their producer's marker: COMMIT applies them,
/// ABORT drops them), and the number of records read. Blocking (disk reads). A batch that
/// cannot be read ends the load there (logged), as nothing after it can be trusted to be in
/// order. Members of consumer groups (KIP-848) get their session timers from `now`.
fn read_groups(
    log: &Arc<Mutex<PartitionLog>>,
    partition: i32,
    now: i64,
    limits: &GroupLimits,
) -> (Loaded, usize) {
    let mut groups = HashMap::new();
    let mut pending: HashMap<i64, PendingTxnOffsets> = HashMap::new();
    let records = crate::log::replay_records(log, OFFSETS_TOPIC, partition, |r| {
        if r.control {
            // An end marker: the producer's pending offsets are committed or dropped, as
            // when it was written.
            let Some(commit) = r.key.as_ref().and_then(control_commit) else {
                return;
            };
            let Some(ended) = pending.remove(&r.producer_id) else {
                return;
            };
            if commit {
                for (group_id, offsets) in ended {
                    groups
                        .entry(group_id.clone())
                        .or_insert_with(|| Group::new(&group_id, now))
                        .offsets
                        .extend(offsets);
                }
            }
        } else if r.transactional {
            replay_txn_offset(
                &mut pending,
                &mut groups,
                r.producer_id,
                r.key,
                r.value,
                now,
            );
        } else {
            replay(&mut groups, r.key, r.value, now);
        }
    });
    // A group whose only remaining state was tombstoned is gone.
    groups.retain(|_, g| g.state() != GroupState::Dead);
    for g in groups.values_mut() {
        if let Some(c) = &mut g.consumer {
            consumer::persist::start_timers(c, now, limits.consumer_session_timeout_ms);
        }
    }
    (Loaded { groups, pending }, records)
}

/// What a `__consumer_offsets` partition's log holds: its groups, and the offsets of
/// transactions whose end marker is not in the log yet.
struct Loaded {
    groups: HashMap<String, Group>,
    pending: HashMap<i64, PendingTxnOffsets>,
}

/// Whether a control record's key (version, type) is a COMMIT marker (`Some(true)`) or an
/// ABORT marker (`Some(false)`); `None` for any other control record.
fn control_commit(key: &Bytes) -> Option<bool> {
    match key.get(2..4)? {
        [0, 0] => Some(false),
        [0, 1] => Some(true),
        _ => None,
    }
}

/// Replays an offset record of a transactional batch: pending for `producer_id` until its
/// marker (the group exists from then on, as Kafka's replay creates it).
fn replay_txn_offset(
    pending: &mut HashMap<i64, PendingTxnOffsets>,
    groups: &mut HashMap<String, Group>,
    producer_id: i64,
    key: Option<Bytes>,
    value: Option<Bytes>,
    now: i64,
) {
    let Some(key) = key else { return };
    let (group, topic, partition) = match RecordKey::decode(key) {
        Ok(Some(RecordKey::Offset {
            group,
            topic,
            partition,
        })) => (group, topic, partition),
        Ok(_) => return,
        Err(e) => {
            warn!(error = %e, "skipping __consumer_offsets record");
            return;
        }
    };
    let offsets = pending
        .entry(producer_id)
        .or_default()
        .entry(group.clone())
        .or_default();
    apply_offset_record(offsets, topic, partition, value);
    groups
        .entry(group.clone())
        .or_insert_with(|| Group::new(&group, now));
}

/// Applies one offset commit record's value to `offsets` (a group's committed offsets, or
/// a transaction's pending ones): a value sets the partition's offset, a tombstone removes
/// it, an undecodable value is skipped with a warning.
fn apply_offset_record(
    offsets: &mut BTreeMap<(String, i32), CommittedOffset>,
    topic: String,
    partition: i32,
    value: Option<Bytes>,
) {
    match value.map(OffsetValue::decode) {
        Some(Ok(v)) => {
            offsets.insert(
                (topic, partition),
                CommittedOffset {
                    offset: v.offset,
                    leader_epoch: v.leader_epoch,
                    metadata: v.metadata,
                    commit_timestamp: v.commit_timestamp,
                },
            );
        }
        Some(Err(e)) => warn!(error = %e, "skipping __consumer_offsets record"),
        None => {
            offsets.remove(&(topic, partition));
        }
    }
}

impl GroupCoordinator {
    /// Drives time until shutdown: session expiry, rebalance deadlines, offset expiry. The
    /// records a tick produces are drained by one flush at a time running beside the ticks,
    /// so a partition waiting for its ISR never holds up the sessions of other groups.
    pub async fn run(&self, host: &impl CoordinatorHost, mut shutdown: watch::Receiver<bool>) {
        let mut tick = tokio::time::interval(TICK);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let retention_ms = host.offsets_retention_ms();
        let mut last_expiry = now_ms();
        let mut draining: Option<std::pin::Pin<Box<dyn Future<Output = ()> + Send + '_>>> = None;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = async {
                    if let Some(d) = draining.as_mut() {
                        d.await;
                    }
                }, if draining.is_some() => {
                    draining = None;
                    continue;
                }
                _ = shutdown.changed() => return,
            }
            let now = now_ms();
            let queued = {
                let mut inner = self.lock();
                for id in Self::take_due(&mut inner, now) {
                    let Some(group) = inner.groups.get_mut(&id) else {
                        continue;
                    };
                    let replies = group.tick(now, &self.limits);
                    let replies = Self::after_change(&mut inner, &id, replies);
                    Self::deliver(&mut inner, replies, 0);
                }
                // Kafka's offsets.retention.check.interval.ms default: every 10 minutes.
                if now - last_expiry >= 600_000 {
                    last_expiry = now;
                    Self::expire_offsets(&mut inner, now, retention_ms);
                }
                !inner.writes.is_empty()
            };
            // A flush under way picks up what was queued meanwhile when it gets to that
            // partition, or the next tick starts another.
            if queued && draining.is_none() {
                draining = Some(Box::pin(self.flush_all(host)));
            }
        }
    }

    /// Drains the write queue of every partition that has one, one partition after another.
    async fn flush_all(&self, host: &impl CoordinatorHost) {
        let partitions: Vec<i32> = self.lock().writes.keys().copied().collect();
        for partition in partitions {
            self.flush_partition(host, partition).await;
        }
    }

    /// Offsets of empty groups expire `offsets.retention.minutes` after the group emptied
    /// (Kafka 2.1+); a group left with nothing is removed.
    fn expire_offsets(inner: &mut Inner, now: i64, retention_ms: i64) {
        let expired: Vec<String> = inner
            .groups
            .values()
            .filter(|g| {
                g.state() == GroupState::Empty && now - g.state_timestamp_ms >= retention_ms
            })
            .map(|g| g.group_id.clone())
            .collect();
        for id in expired {
            let Some(group) = inner.groups.get(&id) else {
                continue;
            };
            let mut tombstones = group_tombstones(group);
            let keys = group.offsets.keys().cloned().collect();
            tombstones.extend(Self::consumer_tombstones(inner, &id));
            info!(group = %id, "expiring offsets of empty group");
            Self::push_write(
                inner,
                Write {
                    group_id: id,
                    records: tombstones,
                    effect: Effect::Delete {
                        keys,
                        remove_group: true,
                    },
                    done: None,
                    held: Vec::new(),
                    producer: None,
                },
            );
        }
    }
}

/// Tombstones deleting every committed offset of `group` and its metadata.
fn group_tombstones(group: &Group) -> Vec<(Bytes, Option<Bytes>)> {
    let offset_key = |(topic, partition): &(String, i32)| RecordKey::Offset {
        group: group.group_id.clone(),
        topic: topic.clone(),
        partition: *partition,
    };
    let mut tombstones: Vec<(Bytes, Option<Bytes>)> = group
        .offsets
        .keys()
        .map(|k| (offset_key(k).encode(), None))
        .collect();
    tombstones.push((
        RecordKey::Group {
            group: group.group_id.clone(),
        }
        .encode(),
        None,
    ));
    tombstones
}

/// Sets a single v2 batch's base sequence to -1 (no producer) and recomputes its CRC.
fn mark_non_idempotent(batch: &mut BytesMut) {
    const CRC: usize = 17;
    const ATTRIBUTES: usize = 21;
    const BASE_SEQUENCE: usize = 53;
    if batch.len() > BASE_SEQUENCE + 4 {
        batch[BASE_SEQUENCE..BASE_SEQUENCE + 4].copy_from_slice(&(-1i32).to_be_bytes());
        let crc = crc32c::crc32c(&batch[ATTRIBUTES..]);
        batch[CRC..CRC + 4].copy_from_slice(&crc.to_be_bytes());
    }
}

fn replay(groups: &mut HashMap<String, Group>, key: Option<Bytes>, value: Option<Bytes>, now: i64) {
    let Some(key) = key else { return };
    let key = match RecordKey::decode(key) {
        Ok(Some(k)) => k,
        Ok(None) => return,
        Err(e) => {
            warn!(error = %e, "skipping __consumer_offsets record");
            return;
        }
    };
    match key {
        RecordKey::Offset {
            group,
            topic,
            partition,
        } => {
            let entry = live_group(groups, &group, now);
            apply_offset_record(&mut entry.offsets, topic, partition, value);
        }
        RecordKey::Group { group } => match value.map(GroupValue::decode) {
            Some(Ok(v)) => {
                let (offsets, consumer) = groups
                    .remove(&group)
                    .filter(|g| g.state() != GroupState::Dead)
                    .map(|g| (g.offsets, g.consumer))
                    .unwrap_or_default();
                let mut restored = Group::restore(&group, &v, now);
                restored.offsets = offsets;
                restored.consumer = consumer;
                groups.insert(group, restored);
            }
            Some(Err(e)) => warn!(error = %e, "skipping __consumer_offsets record"),
            None => {
                if let Some(g) = groups.get_mut(&group) {
                    // The classic membership is gone (deleted, or upgraded to the consumer
                    // group whose records follow).
                    let _ = g.clear_membership(now);
                    if g.offsets.is_empty() && g.consumer.is_none() {
                        g.mark_dead(now);
                    }
                }
            }
        },
        key => {
            let group_id = key.group().to_string();
            let tombstone = value.is_none();
            let Some(g) = (if tombstone {
                groups.get_mut(&group_id)
            } else {
                Some(live_group(groups, &group_id, now))
            }) else {
                return;
            };
            let consumer = g
                .consumer
                .get_or_insert_with(|| consumer::ConsumerGroup::new(&group_id));
            match consumer::persist::replay(consumer, &key, value, now) {
                Ok(true) => {}
                Ok(false) => {
                    // The consumer group was deleted; what is left of the group is its
                    // offsets, if any.
                    g.consumer = None;
                    if g.offsets.is_empty() && g.members().next().is_none() {
                        groups.remove(&group_id);
                    }
                }
                Err(e) => warn!(error = %e, "skipping __consumer_offsets record"),
            }
        }
    }
}

/// The replayed group `group_id`, a new one if there is none or it was deleted earlier in
/// the log (a group re-created under the same id after DeleteGroups starts afresh).
fn live_group<'a>(
    groups: &'a mut HashMap<String, Group>,
    group_id: &str,
    now: i64,
) -> &'a mut Group {
    let entry = groups
        .entry(group_id.to_string())
        .or_insert_with(|| Group::new(group_id, now));
    if entry.state() == GroupState::Dead {
        *entry = Group::new(group_id, now);
    }
    entry
}

#[cfg(test)]
mod tests {
    use super::*;

    const LIMITS: GroupLimits = GroupLimits {
        min_session_timeout_ms: 6000,
        max_session_timeout_ms: 1_800_000,
        initial_rebalance_delay_ms: 0,
        max_size: 100,
        consumer_session_timeout_ms: 45_000,
        consumer_max_size: usize::MAX,
        migration_policy: consumer::migration::MigrationPolicy::Bidirectional,
    };

    /// A group with one member (joined without MEMBER_ID_REQUIRED) whose session is 10 s.
    fn group_with_member(id: &str, now: i64) -> Group {
        let mut g = Group::new(id, now);
        let request = JoinRequest {
            member_id: String::new(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::new())],
            require_known_member_id: false,
        };
        g.join(1, request, now, &LIMITS);
        g
    }

    /// A broker reduced to what the coordinator may use: one data topic and
    /// `__consumer_offsets` (created on first use) as real replicated partitions over logs
    /// in a temporary directory. This broker (id 0) leads every partition with `replicas`
    /// as its ISR, so with a follower (id 1) the high watermark moves only when the test
    /// serves that follower's fetches. `refuse` makes appends fail with that error.
    struct TestHost {
        dir: tempfile::TempDir,
        offsets: Mutex<Vec<Arc<crate::replica::Partition>>>,
        creations: AtomicU64,
        replicas: Vec<i32>,
        refuse: Mutex<Option<ResponseError>>,
        /// Partitions another broker leads now (as the committed metadata would say).
        led_elsewhere: Mutex<BTreeSet<i32>>,
    }

    impl TestHost {
        const OFFSETS_PARTITIONS: i32 = 3;

        fn new() -> TestHost {
            Self::with_replicas(vec![0])
        }

        fn with_replicas(replicas: Vec<i32>) -> TestHost {
            TestHost {
                dir: tempfile::tempdir().unwrap(),
                offsets: Mutex::new(Vec::new()),
                creations: AtomicU64::new(0),
                replicas,
                refuse: Mutex::new(None),
                led_elsewhere: Mutex::new(BTreeSet::new()),
            }
        }

        fn partition(&self, partition: i32) -> Arc<crate::replica::Partition> {
            self.offsets.lock().unwrap()[partition as usize].clone()
        }

        /// Serves follower 1's fetch at `offset` (its log end), which moves the high
        /// watermark up to it.
        fn follower_fetches(&self, partition: i32, offset: i64) {
            self.partition(partition)
                .fetch_for_follower(1, 1, offset, 0, 0, 1 << 20, true, now_ms())
                .unwrap();
        }
    }

    impl CoordinatorHost for TestHost {
        fn topic_id(&self, topic: &str) -> Option<uuid::Uuid> {
            self.partition_count(topic)
                .map(|_| uuid::Uuid::from_u128(topic.len() as u128))
        }

        fn topic_names(&self) -> (i64, Vec<String>) {
            let names = ["orders", OFFSETS_TOPIC]
                .into_iter()
                .filter(|t| self.partition_count(t).is_some())
                .map(str::to_string)
                .collect();
            (0, names)
        }

        fn partition_count(&self, topic: &str) -> Option<i32> {
            match topic {
                "orders" => Some(2),
                OFFSETS_TOPIC => {
                    let created = !self.offsets.lock().unwrap().is_empty();
                    created.then_some(Self::OFFSETS_PARTITIONS)
                }
                _ => None,
            }
        }

        async fn ensure_offsets_topic(&self) -> Result<i32, ApiError> {
            let mut offsets = self.offsets.lock().unwrap();
            if offsets.is_empty() {
                self.creations.fetch_add(1, Ordering::Relaxed);
                for p in 0..Self::OFFSETS_PARTITIONS {
                    let tp = crate::log::TopicPartition::new(OFFSETS_TOPIC, p);
                    let dir = self.dir.path().join(format!("{OFFSETS_TOPIC}-{p}"));
                    let log = PartitionLog::open(&dir, tp, Default::default()).unwrap();
                    let partition = crate::replica::Partition::new(Arc::new(Mutex::new(log)));
                    let state = crate::metadata::PartitionState {
                        replicas: self.replicas.clone(),
                        isr: self.replicas.clone(),
                        leader: 0,
                        ..Default::default()
                    };
                    partition.become_leader(&state, now_ms()).unwrap();
                    offsets.push(Arc::new(partition));
                }
            }
            Ok(Self::OFFSETS_PARTITIONS)
        }

        fn offsets_log(&self, partition: i32) -> Result<(Arc<Mutex<PartitionLog>>, i32), ApiError> {
            if self.led_elsewhere.lock().unwrap().contains(&partition) {
                return Err(ApiError::code(ResponseError::NotLeaderOrFollower));
            }
            let offsets = self.offsets.lock().unwrap();
            let p = usize::try_from(partition)
                .ok()
                .and_then(|p| offsets.get(p))
                .ok_or_else(|| ApiError::code(ResponseError::UnknownTopicOrPartition))?;
            Ok((p.log().clone(), 0))
        }

        async fn append_offsets(&self, partition: i32, batch: Bytes) -> Result<i64, ApiError> {
            if let Some(e) = *self.refuse.lock().unwrap() {
                return Err(ApiError::code(e));
            }
            let p = self.partition(partition);
            let (info, epoch) = p.append_records_to_leader_from(
                &batch,
                -1,
                1,
                now_ms(),
                crate::log::AppendOrigin::Coordinator,
            )?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            p.wait_for_acks_all(epoch, info.last_offset + 1, 1, deadline)
                .await?;
            Ok(info.last_offset + 1)
        }

        fn offsets_retention_ms(&self) -> i64 {
            7 * 24 * 3_600_000
        }
    }

    fn commit_of(topic: &str, partition: i32, offset: i64) -> OffsetCommit {
        OffsetCommit {
            topic: topic.into(),
            partition,
            offset,
            leader_epoch: -1,
            metadata: None,
        }
    }

    fn join_request() -> JoinRequest {
        JoinRequest {
            member_id: String::new(),
            group_instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout_ms: 10_000,
            rebalance_timeout_ms: 30_000,
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), Bytes::new())],
            require_known_member_id: true,
        }
    }

    /// The committed offset of `group` for orders-1, as OffsetFetch reports it.
    async fn fetched(
        c: &GroupCoordinator,
        host: &TestHost,
        group: &str,
    ) -> Result<Option<i64>, i16> {
        let rows = c
            .fetch_offsets(host, group, Some(vec![("orders".into(), 1)]))
            .await?;
        Ok(rows[0].2.as_ref().map(|o| o.offset))
    }

    /// Polls `check` until it holds, for at most 10 s.
    async fn eventually(what: &str, mut check: impl FnMut() -> bool) {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !check() {
            assert!(std::time::Instant::now() < deadline, "timed out: {what}");
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Ends `producer_id`'s transaction on `partition` as the transaction coordinator does:
    /// the marker appended by the partition leader, then the group coordinator told.
    async fn end_txn_on(
        c: &GroupCoordinator,
        host: &TestHost,
        partition: i32,
        producer_id: i64,
        commit: bool,
    ) {
        use crate::log::{ControlRecordType, EndTxnMarker};
        let p = host.partition(partition);
        let write = async {
            let marker = EndTxnMarker {
                control_type: if commit {
                    ControlRecordType::Commit
                } else {
                    ControlRecordType::Abort
                },
                coordinator_epoch: 0,
            };
            let (info, epoch) = p.append_txn_marker(producer_id, 0, marker, now_ms())?;
            let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
            p.wait_for_acks_all(epoch, info.last_offset + 1, 1, deadline)
                .await?;
            Ok(())
        };
        c.write_txn_marker(partition, producer_id, commit, write)
            .await
            .unwrap();
    }

    /// Offsets committed in a transaction (TxnOffsetCommit) are written but stay invisible
    /// to OffsetFetch, and pending for require_stable, until the COMMIT marker is written on
    /// the group's partition; an ABORT marker drops them. A coordinator loading the log
    /// replays the same: pending before the marker, committed or dropped after it.
    #[tokio::test]
    async fn transactional_offsets_become_visible_only_with_the_commit_marker() {
        let host = TestHost::new();
        let c = GroupCoordinator::new(LIMITS);
        let partition = c.partition_for(&host, "payments").await.unwrap();
        let orders_1 = ("orders".to_string(), 1);
        let plain = c
            .commit(
                &host,
                "payments",
                "",
                None,
                -1,
                vec![commit_of("orders", 1, 5)],
            )
            .await;
        assert_eq!(plain, vec![0]);
        // A commit naming a generation of a group that does not exist is refused.
        let stale = c
            .txn_commit(
                &host,
                "nobody",
                7000,
                0,
                "m",
                None,
                3,
                vec![commit_of("orders", 1, 1)],
            )
            .await;
        assert_eq!(stale, vec![ResponseError::IllegalGeneration.code()]);

        let codes = c
            .txn_commit(
                &host,
                "payments",
                7000,
                0,
                "",
                None,
                -1,
                vec![commit_of("orders", 1, 42)],
            )
            .await;
        assert_eq!(codes, vec![0]);
        assert_eq!(fetched(&c, &host, "payments").await, Ok(Some(5)));
        assert!(c.pending_txn_partitions("payments").contains(&orders_1));
        let loaded = GroupCoordinator::new(LIMITS);
        loaded.load(&host);
        assert_eq!(fetched(&loaded, &host, "payments").await, Ok(Some(5)));
        assert!(loaded
            .pending_txn_partitions("payments")
            .contains(&orders_1));

        end_txn_on(&c, &host, partition, 7000, true).await;
        assert_eq!(fetched(&c, &host, "payments").await, Ok(Some(42)));
        assert!(c.pending_txn_partitions("payments").is_empty());
        let loaded = GroupCoordinator::new(LIMITS);
        loaded.load(&host);
        assert_eq!(fetched(&loaded, &host, "payments").await, Ok(Some(42)));
        assert!(loaded.pending_txn_partitions("payments").is_empty());

        let codes = c
            .txn_commit(
                &host,
                "payments",
                7001,
                0,
                "",
                None,
                -1,
                vec![commit_of("orders", 1, 99)],
            )
            .await;
        assert_eq!(codes, vec![0]);
        end_txn_on(&c, &host, partition, 7001, false).await;
        assert_eq!(fetched(&c, &host, "payments").await, Ok(Some(42)));
        assert!(c.pending_txn_partitions("payments").is_empty());
        let loaded = GroupCoordinator::new(LIMITS);
        loaded.load(&host);
        assert_eq!(fetched(&loaded, &host, "payments").await, Ok(Some(42)));
        assert!(loaded.pending_txn_partitions("payments").is_empty());
    }

    /// Through the narrow host interface alone: the first group creates `__consumer_offsets`
    /// once, a commit lands in the group's partition log, and a coordinator started later
    /// over the same logs (a restart) serves the committed offset again.
    #[tokio::test]
    async fn committed_offsets_survive_a_coordinator_restart() {
        let host = TestHost::new();
        let first = GroupCoordinator::new(LIMITS);
        let partition = first.partition_for(&host, "payments").await.unwrap();
        assert_eq!(partition, records::partition_for("payments", 3));
        first.partition_for(&host, "payments").await.unwrap();
        assert_eq!(host.creations.load(Ordering::Relaxed), 1);

        let codes = first
            .commit(
                &host,
                "payments",
                "",
                None,
                -1,
                vec![commit_of("orders", 1, 42), commit_of("missing", 0, 7)],
            )
            .await;
        assert_eq!(
            codes,
            vec![0, ResponseError::UnknownTopicOrPartition.code()]
        );
        let (log, _) = host.offsets_log(partition).unwrap();
        assert_eq!(log.lock().unwrap().log_end_offset(), 1);

        let restarted = GroupCoordinator::new(LIMITS);
        restarted.load(&host);
        assert_eq!(fetched(&restarted, &host, "payments").await, Ok(Some(42)));
    }

    /// A consumer-protocol heartbeat as the Java client sends it: the full request when
    /// joining (epoch 0), only the epoch and what it owns afterwards.
    fn consumer_heartbeat(member: &str, epoch: i32, owned: &[i32]) -> consumer::Heartbeat {
        let orders = uuid::Uuid::from_u128("orders".len() as u128);
        consumer::Heartbeat {
            member_id: member.into(),
            member_epoch: epoch,
            rebalance_timeout_ms: if epoch == 0 { 30_000 } else { -1 },
            subscribed_topic_names: (epoch == 0).then(|| vec!["orders".into()]),
            owned: Some(if owned.is_empty() {
                consumer::Assignment::new()
            } else {
                [(orders, owned.iter().copied().collect())].into()
            }),
            client_id: "java".into(),
            client_host: "/127.0.0.1".into(),
            ..consumer::Heartbeat::default()
        }
    }

    /// The keys of every record in the group's `__consumer_offsets` partition, in log
    /// order, with whether each is a tombstone.
    fn logged_keys(host: &TestHost, group: &str) -> Vec<(RecordKey, bool)> {
        let partition = records::partition_for(group, TestHost::OFFSETS_PARTITIONS);
        let (log, _) = host.offsets_log(partition).unwrap();
        let mut keys = Vec::new();
        crate::log::replay_records(&log, OFFSETS_TOPIC, partition, |r| {
            if let Some(Ok(Some(key))) = r.key.map(RecordKey::decode) {
                keys.push((key, r.value.is_none()));
            }
        });
        keys
    }

    /// Online migration through the coordinator, across restarts. A classic member (A) of a
    /// stable classic group; a member of the consumer protocol (C) joins: the classic
    /// group's record is tombstoned, then the consumer group's records follow (Kafka's
    /// order), and a restarted coordinator has A as a classic member of the consumer group
    /// at its generation (its Heartbeat is told to rejoin, for C's epoch). When C leaves,
    /// the consumer group's tombstones come first, then the classic group's record, and a
    /// restarted coordinator has the classic group with A again.
    #[tokio::test]
    async fn migration_is_written_in_kafkas_records_and_survives_restarts() {
        use kafka_protocol::messages::ConsumerProtocolSubscription;
        use kafka_protocol::protocol::{Encodable, StrBytes};
        let host = TestHost::new();
        let config = consumer::ConsumerGroupConfig::default();
        let group = "migrating";
        let mut subscription = BytesMut::new();
        bytes::BufMut::put_i16(&mut subscription, 3);
        ConsumerProtocolSubscription::default()
            .with_topics(vec![StrBytes::from_static_str("orders")])
            .encode(&mut subscription, 3)
            .unwrap();
        let first = GroupCoordinator::new(LIMITS);
        let joined = first
            .join(
                &host,
                group,
                JoinRequest {
                    protocols: vec![("range".into(), subscription.freeze())],
                    require_known_member_id: false,
                    ..join_request()
                },
            )
            .await;
        assert_eq!((joined.error_code, joined.generation_id), (0, 1));
        let a = joined.member_id.clone();
        let assignment = consumer::migration::encode_assignment(
            &[("orders".to_string(), [0, 1].into())].into(),
            3,
        );
        let synced = first
            .sync(
                &host,
                group,
                SyncRequest {
                    member_id: a.clone(),
                    group_instance_id: None,
                    generation_id: 1,
                    protocol_type: Some("consumer".into()),
                    protocol_name: Some("range".into()),
                    assignments: vec![(a.clone(), assignment)],
                },
            )
            .await;
        assert_eq!(synced.error_code, 0);
        let before = logged_keys(&host, group).len();

        let c = first
            .consumer_heartbeat(&host, group, consumer_heartbeat("C", 0, &[]), &config)
            .await
            .unwrap();
        assert_eq!(c.member_epoch, 2, "the group epoch after the generation");
        // The classic member has a whole session from the upgrade on: the next tick does
        // not fence it (it did, and its next commit failed with UNKNOWN_MEMBER_ID).
        let upgraded = first.describe(&host, group).await.unwrap().unwrap();
        let session = upgraded.consumer.as_ref().unwrap().members[&a].session_deadline_ms;
        assert!(session > now_ms() + 5_000, "{session}");
        let upgrade = logged_keys(&host, group).split_off(before);
        assert_eq!(
            upgrade.first(),
            Some(&(
                RecordKey::Group {
                    group: group.into()
                },
                true
            )),
            "{upgrade:?}"
        );
        assert!(upgrade[1..]
            .iter()
            .all(|(k, tombstone)| !tombstone && !matches!(k, RecordKey::Group { .. })));
        assert!(upgrade.iter().any(|(k, _)| matches!(
            k,
            RecordKey::ConsumerGroupMemberMetadata { member, .. } if *member == a
        )));

        let restarted = GroupCoordinator::new(LIMITS);
        restarted.load(&host);
        let loaded = restarted.describe(&host, group).await.unwrap().unwrap();
        assert!(
            loaded.members().next().is_none(),
            "no classic membership left"
        );
        let cg = loaded.consumer.as_ref().unwrap();
        assert_eq!(cg.members[&a].member_epoch, 1);
        assert!(cg.members[&a].uses_classic());
        assert!(!cg.members["C"].uses_classic());
        assert_eq!(
            restarted.heartbeat(&host, group, &a, None, 1).await,
            ResponseError::RebalanceInProgress.code()
        );

        let before = logged_keys(&host, group).len();
        let left = restarted
            .consumer_heartbeat(
                &host,
                group,
                consumer_heartbeat("C", consumer::LEAVE_GROUP_MEMBER_EPOCH, &[]),
                &config,
            )
            .await
            .unwrap();
        assert_eq!(left.member_epoch, consumer::LEAVE_GROUP_MEMBER_EPOCH);
        let downgrade = logged_keys(&host, group).split_off(before);
        let (last, consumer_records) = downgrade.split_last().unwrap();
        assert_eq!(
            last,
            &(
                RecordKey::Group {
                    group: group.into()
                },
                false
            ),
            "{downgrade:?}"
        );
        assert!(
            consumer_records.iter().all(|(_, tombstone)| *tombstone),
            "{downgrade:?}"
        );
        assert!(consumer_records
            .iter()
            .any(|(k, _)| matches!(k, RecordKey::ConsumerGroupMetadata { .. })));

        let again = GroupCoordinator::new(LIMITS);
        again.load(&host);
        let classic = again.describe(&host, group).await.unwrap().unwrap();
        assert!(classic.consumer.is_none(), "a classic group again");
        assert_eq!(
            classic
                .members()
                .map(|m| m.member_id.clone())
                .collect::<Vec<_>>(),
            vec![a.clone()]
        );
        assert_eq!(classic.generation_id, 2);
        assert_eq!(classic.protocol_name.as_deref(), Some("range"));
    }

    /// A consumer group (KIP-848) is written to `__consumer_offsets` before its heartbeats
    /// are answered, and a restarted coordinator resumes it: the member keeps its id and
    /// epoch and goes on heartbeating. Its leave and DeleteGroups write tombstones, so a
    /// later load finds no group; a group re-created under the same id loads again.
    #[tokio::test]
    async fn consumer_group_survives_a_coordinator_restart() {
        let host = TestHost::new();
        let config = consumer::ConsumerGroupConfig::default();
        let group = "kip848";
        let first = GroupCoordinator::new(LIMITS);
        let joined = first
            .consumer_heartbeat(&host, group, consumer_heartbeat("m1", 0, &[]), &config)
            .await
            .unwrap();
        assert_eq!(joined.member_epoch, 1);
        let partition = records::partition_for(group, TestHost::OFFSETS_PARTITIONS);
        let (log, _) = host.offsets_log(partition).unwrap();
        let end = || log.lock().unwrap().log_end_offset();
        let written = end();
        assert!(written > 0, "the join is in the log when it is answered");
        // A heartbeat that changes nothing persisted writes nothing.
        let steady = first
            .consumer_heartbeat(&host, group, consumer_heartbeat("m1", 1, &[0, 1]), &config)
            .await
            .unwrap();
        assert_eq!(steady.member_epoch, 1);
        assert_eq!(end(), written);

        let restarted = GroupCoordinator::new(LIMITS);
        restarted.load(&host);
        let resumed = restarted
            .consumer_heartbeat(&host, group, consumer_heartbeat("m1", 1, &[0, 1]), &config)
            .await
            .unwrap();
        assert_eq!(
            (resumed.member_id.as_str(), resumed.member_epoch),
            ("m1", 1),
            "the member goes on with its epoch, no rejoin"
        );
        assert_eq!(end(), written, "and no rebalance was written");
        let stranger = restarted
            .consumer_heartbeat(&host, group, consumer_heartbeat("m2", 1, &[]), &config)
            .await
            .map_err(|r| r.error);
        assert_eq!(stranger, Err(ResponseError::UnknownMemberId));

        // The member commits, then leaves: the group stays for its offsets.
        let codes = restarted
            .commit(&host, group, "m1", None, 1, vec![commit_of("orders", 1, 7)])
            .await;
        assert_eq!(codes, vec![0]);
        let left = restarted
            .consumer_heartbeat(
                &host,
                group,
                consumer_heartbeat("m1", consumer::LEAVE_GROUP_MEMBER_EPOCH, &[]),
                &config,
            )
            .await
            .unwrap();
        assert_eq!(left.member_epoch, consumer::LEAVE_GROUP_MEMBER_EPOCH);
        let again = GroupCoordinator::new(LIMITS);
        again.load(&host);
        let gone = again
            .consumer_heartbeat(&host, group, consumer_heartbeat("m1", 1, &[0, 1]), &config)
            .await
            .map_err(|r| r.error);
        assert_eq!(gone, Err(ResponseError::UnknownMemberId), "it left");
        assert_eq!(fetched(&again, &host, group).await, Ok(Some(7)));
        again.delete_group(&host, group).await.unwrap();

        let after_delete = GroupCoordinator::new(LIMITS);
        after_delete.load(&host);
        assert!(after_delete.describe(&host, group).await.unwrap().is_none());
        let deleted = after_delete
            .consumer_heartbeat(&host, group, consumer_heartbeat("m1", 1, &[0, 1]), &config)
            .await
            .map_err(|r| r.error);
        assert_eq!(deleted, Err(ResponseError::GroupIdNotFound));
        after_delete
            .consumer_heartbeat(&host, group, consumer_heartbeat("m3", 0, &[]), &config)
            .await
            .unwrap();

        let recreated = GroupCoordinator::new(LIMITS);
        recreated.load(&host);
        let m3 = recreated
            .consumer_heartbeat(&host, group, consumer_heartbeat("m3", 1, &[0, 1]), &config)
            .await
            .unwrap();
        assert_eq!(
            m3.member_epoch, 1,
            "the re-created group loads after the deleted one"
        );
    }

    /// A member subscribing with a regular expression: what it resolved to is written
    /// (ConsumerGroupRegularExpression) before the join is answered, so a restarted
    /// coordinator resumes the group as it was: the member goes on at its epoch, and the
    /// expression resolved again at the first heartbeat after the load matches the same
    /// topics, so nothing is rebalanced or written.
    #[tokio::test]
    async fn a_regex_subscription_survives_a_coordinator_restart() {
        let host = TestHost::new();
        let config = consumer::ConsumerGroupConfig::default();
        let group = "kip848-regex";
        let by_regex = |epoch: i32, owned: &[i32]| consumer::Heartbeat {
            subscribed_topic_names: (epoch == 0).then(Vec::new),
            subscribed_topic_regex: (epoch == 0).then(|| "ord.*".to_string()),
            ..consumer_heartbeat("m1", epoch, owned)
        };
        let first = GroupCoordinator::new(LIMITS);
        let joined = first
            .consumer_heartbeat(&host, group, by_regex(0, &[]), &config)
            .await
            .unwrap();
        assert_eq!(joined.member_epoch, 1);
        let orders = host.topic_id("orders").unwrap();
        assert_eq!(
            joined.assignment,
            Some([(orders, [0, 1].into())].into()),
            "the matching topic, assigned in the join's response"
        );
        let partition = records::partition_for(group, TestHost::OFFSETS_PARTITIONS);
        let (log, _) = host.offsets_log(partition).unwrap();
        let end = || log.lock().unwrap().log_end_offset();
        let written = end();

        let restarted = GroupCoordinator::new(LIMITS);
        restarted.load(&host);
        let resumed = restarted
            .consumer_heartbeat(&host, group, by_regex(1, &[0, 1]), &config)
            .await
            .unwrap();
        assert_eq!(resumed.member_epoch, 1, "no rejoin, no new epoch");
        assert_eq!(resumed.assignment, None, "the assignment is unchanged");
        assert_eq!(end(), written, "nothing rebalanced, nothing written");
    }

    /// A commit is acknowledged, and visible to OffsetFetch, only once the ISR has it: while
    /// the follower has not fetched the record, OffsetFetch still reports the previous
    /// offset and the commit has not answered; the follower's fetch completes both.
    #[tokio::test]
    async fn a_commit_is_visible_and_answered_only_after_replication() {
        let host = Arc::new(TestHost::with_replicas(vec![0, 1]));
        let c = Arc::new(GroupCoordinator::new(LIMITS));
        let partition = c.partition_for(&*host, "payments").await.unwrap();
        let commit = |offset| {
            let (c, host) = (c.clone(), host.clone());
            tokio::spawn(async move {
                c.commit(
                    &*host,
                    "payments",
                    "",
                    None,
                    -1,
                    vec![commit_of("orders", 1, offset)],
                )
                .await
            })
        };
        let first = commit(42);
        let log = host.partition(partition).log().clone();
        eventually("the first commit is appended", || {
            log.lock().unwrap().log_end_offset() == 1
        })
        .await;
        assert_eq!(fetched(&c, &host, "payments").await, Ok(None));
        host.follower_fetches(partition, 1);
        assert_eq!(first.await.unwrap(), vec![0]);
        assert_eq!(fetched(&c, &host, "payments").await, Ok(Some(42)));

        let second = commit(50);
        eventually("the second commit is appended", || {
            log.lock().unwrap().log_end_offset() == 2
        })
        .await;
        assert_eq!(fetched(&c, &host, "payments").await, Ok(Some(42)));
        assert!(!second.is_finished(), "answered before replication");
        host.follower_fetches(partition, 2);
        assert_eq!(second.await.unwrap(), vec![0]);
        assert_eq!(fetched(&c, &host, "payments").await, Ok(Some(50)));
    }

    /// SyncGroup hands the leader's assignment out only once the group record holding it is
    /// replicated (Kafka completes SyncGroup from the append's future): a follower member
    /// parked in SyncGroup gets nothing while the ISR lacks the record.
    #[tokio::test]
    async fn the_assignment_is_answered_only_after_replication() {
        let host = Arc::new(TestHost::with_replicas(vec![0, 1]));
        let c = Arc::new(GroupCoordinator::new(LIMITS));
        let partition = c.partition_for(&*host, "g").await.unwrap();
        let log = host.partition(partition).log().clone();
        let leo = |n| {
            let log = log.clone();
            move || log.lock().unwrap().log_end_offset() == n
        };
        let join = |member_id: &str| {
            let (c, host) = (c.clone(), host.clone());
            let request = JoinRequest {
                member_id: member_id.to_string(),
                require_known_member_id: false,
                ..join_request()
            };
            tokio::spawn(async move { c.join(&*host, "g", request).await })
        };
        let sync = |joined: &JoinResponse, assignments: Vec<(String, Bytes)>| {
            let (c, host) = (c.clone(), host.clone());
            let request = SyncRequest {
                member_id: joined.member_id.clone(),
                group_instance_id: None,
                generation_id: joined.generation_id,
                protocol_type: None,
                protocol_name: None,
                assignments,
            };
            tokio::spawn(async move { c.sync(&*host, "g", request).await })
        };
        // Generation 1: the leader alone.
        let leader = join("");
        eventually("generation 1 is appended", leo(1)).await;
        host.follower_fetches(partition, 1);
        let leader = leader.await.unwrap();
        // Generation 2: a second member joins, the leader rejoins.
        let member = join("");
        eventually("the member waits", || c.lock().waiters.len() == 1).await;
        let rejoined = join(&leader.member_id);
        eventually("generation 2 is appended", leo(2)).await;
        host.follower_fetches(partition, 2);
        let (rejoined, member) = (rejoined.await.unwrap(), member.await.unwrap());
        assert_eq!((rejoined.generation_id, member.generation_id), (2, 2));
        assert_eq!(rejoined.leader, leader.member_id);

        let member_sync = sync(&member, vec![]);
        eventually("the member waits for the assignment", || {
            c.lock().waiters.len() == 1
        })
        .await;
        let leader_sync = sync(
            &rejoined,
            vec![
                (leader.member_id.clone(), Bytes::from_static(b"orders-0")),
                (member.member_id.clone(), Bytes::from_static(b"orders-1")),
            ],
        );
        eventually("the assignment is appended", leo(3)).await;
        // Not a wait for something: a bounded chance for a wrong early answer to show.
        tokio::time::sleep(Duration::from_millis(50)).await;
        assert!(
            !member_sync.is_finished() && !leader_sync.is_finished(),
            "assignment sent before replication"
        );
        host.follower_fetches(partition, 3);
        let (member_sync, leader_sync) = (member_sync.await.unwrap(), leader_sync.await.unwrap());
        assert_eq!(member_sync.error_code, 0);
        assert_eq!(member_sync.assignment, Bytes::from_static(b"orders-1"));
        assert_eq!(leader_sync.assignment, Bytes::from_static(b"orders-0"));
    }

    /// Kafka's mapping of append errors to coordinator errors, applied to a commit whose
    /// write fails: nothing is acknowledged and nothing becomes visible.
    #[tokio::test]
    async fn a_failed_write_answers_the_coordinator_error_and_changes_nothing() {
        let cases = [
            (
                ResponseError::NotEnoughReplicas,
                ResponseError::CoordinatorNotAvailable,
            ),
            (
                ResponseError::NotEnoughReplicasAfterAppend,
                ResponseError::CoordinatorNotAvailable,
            ),
            (
                ResponseError::RequestTimedOut,
                ResponseError::CoordinatorNotAvailable,
            ),
            (
                ResponseError::NotLeaderOrFollower,
                ResponseError::NotCoordinator,
            ),
            (
                ResponseError::KafkaStorageError,
                ResponseError::NotCoordinator,
            ),
            (
                ResponseError::MessageTooLarge,
                ResponseError::UnknownServerError,
            ),
        ];
        for (append_error, answered) in cases {
            assert_eq!(coordinator_error(append_error.code()), answered.code());
            let host = TestHost::new();
            let c = GroupCoordinator::new(LIMITS);
            let ok = c
                .commit(&host, "g", "", None, -1, vec![commit_of("orders", 1, 7)])
                .await;
            assert_eq!(ok, vec![0]);
            *host.refuse.lock().unwrap() = Some(append_error);
            let codes = c
                .commit(&host, "g", "", None, -1, vec![commit_of("orders", 1, 9)])
                .await;
            assert_eq!(codes, vec![answered.code()], "{append_error:?}");
            assert_eq!(
                fetched(&c, &host, "g").await,
                Ok(Some(7)),
                "{append_error:?}"
            );
        }
        assert_eq!(
            coordinator_error(ResponseError::InvalidCommitOffsetSize.code()),
            ResponseError::InvalidCommitOffsetSize.code()
        );
    }

    /// Leadership moves the coordinator: a partition is served only after `on_elected`
    /// loaded it (COORDINATOR_LOAD_IN_PROGRESS meanwhile), `on_resigned` drops its groups
    /// (NOT_COORDINATOR, a parked JoinGroup included), stale announcements change nothing,
    /// and a later election loads the committed offsets again from the log.
    #[tokio::test]
    // The log's lock is held on purpose while the load is under way (nothing else here
    // takes it: requests during a load never touch the log).
    #[allow(clippy::await_holding_lock)]
    async fn groups_load_on_election_and_unload_on_resignation() {
        let host = Arc::new(TestHost::new());
        let writer = GroupCoordinator::new(LIMITS);
        let codes = writer
            .commit(&*host, "g", "", None, -1, vec![commit_of("orders", 1, 42)])
            .await;
        assert_eq!(codes, vec![0]);
        let partition = records::partition_for("g", TestHost::OFFSETS_PARTITIONS);

        // A first member waits out group.initial.rebalance.delay.ms in JoinGroup.
        let c = Arc::new(GroupCoordinator::new(GroupLimits {
            initial_rebalance_delay_ms: 60_000,
            ..LIMITS
        }));
        // The log is busy (held here), so the load cannot finish yet.
        let log = host.partition(partition).log().clone();
        let held = log.lock().unwrap();
        let loading = {
            let (c, host) = (c.clone(), host.clone());
            tokio::spawn(async move { c.on_elected(&*host, partition, 5).await })
        };
        eventually("the load starts", || {
            c.lock().hosted.get(&partition).map(|h| h.load) == Some(Load::Loading)
        })
        .await;
        let load_in_progress = ResponseError::CoordinatorLoadInProgress.code();
        assert_eq!(fetched(&c, &host, "g").await, Err(load_in_progress));
        assert_eq!(
            c.describe(&*host, "g").await.map(|_| ()),
            Err(load_in_progress)
        );
        assert_eq!(c.groups().map(|_| ()), Err(load_in_progress));
        let joined = c.join(&*host, "g", join_request()).await;
        assert_eq!(joined.error_code, load_in_progress);
        // Kafka answers heartbeats "blindly" while loading.
        assert_eq!(c.heartbeat(&*host, "g", "m", None, 1).await, 0);
        drop(held);
        loading.await.unwrap();
        assert_eq!(fetched(&c, &host, "g").await, Ok(Some(42)));

        // A stale election or resignation changes nothing.
        c.on_elected(&*host, partition, 4).await;
        c.on_resigned(partition, Some(5));
        assert_eq!(fetched(&c, &host, "g").await, Ok(Some(42)));

        // A member waits in JoinGroup (MEMBER_ID_REQUIRED first, then the rebalance).
        let first = c.join(&*host, "g", join_request()).await;
        assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
        let parked = {
            let (c, host) = (c.clone(), host.clone());
            let request = JoinRequest {
                member_id: first.member_id.clone(),
                ..join_request()
            };
            tokio::spawn(async move { c.join(&*host, "g", request).await })
        };
        eventually("the join is parked", || !c.lock().waiters.is_empty()).await;

        host.led_elsewhere.lock().unwrap().insert(partition);
        c.on_resigned(partition, Some(6));
        let not_coordinator = ResponseError::NotCoordinator.code();
        assert_eq!(parked.await.unwrap().error_code, not_coordinator);
        assert_eq!(fetched(&c, &host, "g").await, Err(not_coordinator));
        assert!(c.groups().unwrap().is_empty());
        let codes = c
            .commit(&*host, "g", "", None, -1, vec![commit_of("orders", 1, 50)])
            .await;
        assert_eq!(codes, vec![not_coordinator]);

        // Elected again in a newer epoch: the groups come back from the log.
        host.led_elsewhere.lock().unwrap().clear();
        c.on_elected(&*host, partition, 7).await;
        assert_eq!(fetched(&c, &host, "g").await, Ok(Some(42)));
    }

    /// The periodic tick visits only groups whose deadline has passed, not every group.
    #[test]
    fn only_groups_with_a_passed_deadline_are_due() {
        let c = GroupCoordinator::new(LIMITS);
        let mut inner = c.lock();
        for i in 0..1000i64 {
            let id = format!("g{i}");
            inner
                .groups
                .insert(id.clone(), group_with_member(&id, i * 100));
            GroupCoordinator::schedule(&mut inner, &id);
        }
        assert_eq!(inner.deadlines.len(), 1000);
        // Sessions end at 10 s + i * 100 ms: at 10.25 s, g0..g2 are due.
        let due = GroupCoordinator::take_due(&mut inner, 10_250);
        assert_eq!(due, vec!["g0", "g1", "g2"]);
        assert_eq!(inner.deadlines.len(), 997);
        assert!(GroupCoordinator::take_due(&mut inner, 10_250).is_empty());
        // A later deadline (a heartbeat) keeps the early entry; an earlier one replaces it.
        GroupCoordinator::schedule(&mut inner, "g10");
        assert_eq!(inner.scheduled["g10"], 11_000);
        assert_eq!(inner.deadlines.len(), 997);
    }
}
