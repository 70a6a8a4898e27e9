//! The transaction coordinator: the [`TxnMetadata`] of every transactional id whose
//! `__transaction_state` partition this broker leads, loaded when it becomes the leader and
//! dropped when it stops, as the group coordinator does for `__consumer_offsets`.
//!
//! Every transition is written to `__transaction_state` (acks=all) before it is applied and
//! answered; a PrepareCommit/PrepareAbort, once written, is completed in the background: the
//! end-transaction markers are written to every partition of the transaction, then the
//! CompleteCommit/CompleteAbort record. A load replays the partition and completes the
//! transactions it finds prepared. Open transactions past their timeout are fenced and
//! aborted (epoch bumped) every `transaction.abort.timed.out.transaction.cleanup.interval.ms`,
//! and transactional ids idle longer than `transactional.id.expiration.ms` are expired (a
//! tombstone of their key written, then forgotten) every
//! `transaction.remove.expired.transaction.cleanup.interval.ms`.

use std::collections::{BTreeSet, HashMap};
use std::future::Future;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::ResponseError;
use tokio::sync::watch;
use tracing::{info, warn};

use super::listing::ListFilter;
use super::markers::{self, Outcome};
use super::records::{self, TxnLogValue};
use super::state::{self, InitPlan, TxnMetadata, TxnPartition, TxnState, TxnTransit};
use crate::error::ApiError;
use crate::log::PartitionLog;
use crate::time::now_ms;

/// How long a failed marker or completion write waits before it is tried again (Kafka's
/// marker channel retries on its `retry.backoff.ms`-like request loop).
const MARKER_RETRY_BACKOFF: Duration = Duration::from_millis(100);

/// The most key bytes one batch of expiry tombstones carries: well under the default
/// `max.message.bytes` of `__transaction_state` (Kafka fills batches up to it).
const TOMBSTONE_BATCH_KEY_BYTES: usize = 256 * 1024;

/// What the transaction coordinator needs from the broker it runs in.
pub trait TxnHost: Send + Sync {
    /// The number of partitions of `__transaction_state`, `None` if it does not exist.
    fn txn_topic_partitions(&self) -> Option<i32>;

    /// Creates `__transaction_state` if it does not exist yet (as Kafka does on the first
    /// FindCoordinator for a transactional id) and returns its partition count.
    fn ensure_txn_topic(&self) -> impl Future<Output = Result<i32, ApiError>> + Send;

    /// The log of `__transaction_state` partition `partition` and its leader epoch (the
    /// coordinator epoch), if this broker leads it.
    fn txn_log(&self, partition: i32) -> Result<(Arc<Mutex<PartitionLog>>, i32), ApiError>;

    /// Appends `batch` to `__transaction_state` partition `partition` as leader with
    /// acks=all, resolving once the ISR has it (errors as a producer would get them).
    fn append_txn(
        &self,
        partition: i32,
        batch: Bytes,
    ) -> impl Future<Output = Result<i64, ApiError>> + Send;

    /// A fresh producer id from the cluster's producer id blocks.
    fn new_producer_id(&self) -> impl Future<Output = Result<i64, ApiError>> + Send;

    /// Writes the end-transaction marker of `producer_id`/`producer_epoch` (commit or
    /// abort, stamped with `coordinator_epoch`) to `partition` as its leader (acks=all), as
    /// a WriteTxnMarkers request does, with that request's per-partition errors
    /// (NOT_LEADER_OR_FOLLOWER where this broker does not lead it). What the coordinator
    /// does with each is [`super::markers::outcome`].
    fn write_marker(
        &self,
        partition: TxnPartition,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> impl Future<Output = Result<(), ApiError>> + Send;

    /// Writes the end-transaction marker of one transaction to every partition of
    /// `partitions`, each at its current leader: locally ([`Self::write_marker`]) where this
    /// broker leads it, otherwise with one WriteTxnMarkers request per leading broker over
    /// the inter-broker listener ([`super::markers`]). Answers the error code of each
    /// partition (0 written); a partition that no longer exists is answered 0 (nothing left
    /// to mark), one without a reachable leader NOT_LEADER_OR_FOLLOWER or NETWORK_EXCEPTION.
    fn write_markers(
        &self,
        partitions: &BTreeSet<TxnPartition>,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        coordinator_epoch: i32,
    ) -> impl Future<Output = Vec<(TxnPartition, i16)>> + Send;

    /// `transaction.max.timeout.ms`.
    fn max_transaction_timeout_ms(&self) -> i32;

    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`.
    fn abort_timed_out_interval_ms(&self) -> i64;

    /// `transactional.id.expiration.ms`.
    fn transactional_id_expiration_ms(&self) -> i64;

    /// `transaction.remove.expired.transaction.cleanup.interval.ms`.
    fn remove_expired_interval_ms(&self) -> i64;
}

/// `ids` cut into runs whose keys add up to at most `max_key_bytes` (at least one id a
/// run): one tombstone batch each.
fn tombstone_runs(ids: &[String], max_key_bytes: usize) -> Vec<&[String]> {
    let mut runs = Vec::new();
    let (mut start, mut bytes) = (0, 0);
    for (i, id) in ids.iter().enumerate() {
        if i > start && bytes + id.len() > max_key_bytes {
            runs.push(&ids[start..i]);
            (start, bytes) = (i, 0);
        }
        bytes += id.len();
    }
    if start < ids.len() {
        runs.push(&ids[start..]);
    }
    runs
}

/// A `__transaction_state` partition this broker leads.
struct Hosted {
    /// The leader epoch the partition was loaded at: the coordinator epoch on markers.
    epoch: i32,
    /// Still being read: requests get COORDINATOR_LOAD_IN_PROGRESS.
    loading: bool,
    txns: HashMap<String, TxnMetadata>,
}

#[derive(Default)]
struct Inner {
    hosted: HashMap<i32, Hosted>,
}

/// The transaction coordinator of one broker.
#[derive(Default)]
pub struct TxnCoordinator {
    inner: Mutex<Inner>,
}

/// A transactional id's partition and the coordinator epoch it is served at.
#[derive(Debug, Clone, Copy)]
struct Serving {
    partition: i32,
    epoch: i32,
}

fn err(e: ResponseError) -> ApiError {
    ApiError::code(e)
}

/// What a client is told when a `__transaction_state` write failed: Kafka's
/// `TransactionStateManager.appendTransactionToLog` maps append errors as the group
/// coordinator does.
fn append_error(e: ApiError) -> ApiError {
    let code = crate::group::coordinator_error(e.code);
    ApiError::code(ResponseError::try_from_code(code).unwrap_or(ResponseError::UnknownServerError))
}

impl TxnCoordinator {
    fn lock(&self) -> MutexGuard<'_, Inner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The `__transaction_state` partition of `transactional_id`, creating the topic on
    /// first use (COORDINATOR_NOT_AVAILABLE if that fails).
    pub async fn partition_for(
        &self,
        host: &impl TxnHost,
        transactional_id: &str,
    ) -> Result<i32, ApiError> {
        let count = match host.txn_topic_partitions() {
            Some(c) => c,
            None => host.ensure_txn_topic().await.map_err(|e| {
                warn!(error = ?e.message, "cannot create __transaction_state");
                err(ResponseError::CoordinatorNotAvailable)
            })?,
        };
        Ok(records::partition_for(transactional_id, count))
    }

    /// Whether `partition` is loaded (not loading) here: FindCoordinator answers only then.
    pub fn is_loaded(&self, partition: i32) -> bool {
        self.lock()
            .hosted
            .get(&partition)
            .is_some_and(|h| !h.loading)
    }

    /// The partition of `transactional_id` if this broker serves it now: NOT_COORDINATOR if
    /// it does not lead it, COORDINATOR_LOAD_IN_PROGRESS while it loads. A partition led but
    /// not announced yet is loaded here first.
    async fn serving(
        &self,
        host: &impl TxnHost,
        transactional_id: &str,
    ) -> Result<Serving, ApiError> {
        let count = host
            .txn_topic_partitions()
            .ok_or_else(|| err(ResponseError::NotCoordinator))?;
        let partition = records::partition_for(transactional_id, count);
        let known = self.lock().hosted.contains_key(&partition);
        if !known {
            match host.txn_log(partition) {
                Ok((_, epoch)) => self.on_elected(host, partition, epoch).await,
                Err(_) => return Err(err(ResponseError::NotCoordinator)),
            }
        }
        match self.lock().hosted.get(&partition) {
            None => Err(err(ResponseError::NotCoordinator)),
            Some(h) if h.loading => Err(err(ResponseError::CoordinatorLoadInProgress)),
            Some(h) => Ok(Serving {
                partition,
                epoch: h.epoch,
            }),
        }
    }

    /// Runs `f` on the metadata of `transactional_id` if its partition is still served at
    /// `at.epoch` (NOT_COORDINATOR otherwise).
    fn with_txn<T>(
        &self,
        at: Serving,
        transactional_id: &str,
        f: impl FnOnce(Option<&mut TxnMetadata>) -> Result<T, ApiError>,
    ) -> Result<T, ApiError> {
        let mut inner = self.lock();
        match inner.hosted.get_mut(&at.partition) {
            Some(h) if h.epoch == at.epoch && !h.loading => f(h.txns.get_mut(transactional_id)),
            _ => Err(err(ResponseError::NotCoordinator)),
        }
    }

    /// Writes `transit` of `transactional_id` and applies it once written; on failure the
    /// transit is dropped and the client gets the mapped error.
    async fn write(
        &self,
        host: &impl TxnHost,
        at: Serving,
        transactional_id: &str,
        transit: &TxnTransit,
    ) -> Result<(), ApiError> {
        let key = records::encode_key(transactional_id);
        let value = transit.to_log_value().encode_v0();
        let batch = crate::group::encode_coordinator_batch([(key, Some(value))].iter())?;
        let written = host.append_txn(at.partition, batch).await;
        self.with_txn(at, transactional_id, |m| {
            let Some(m) = m else {
                return Err(err(ResponseError::NotCoordinator));
            };
            match written {
                Ok(_) if m.complete(transit) => Ok(()),
                Ok(_) => Err(err(ResponseError::NotCoordinator)),
                Err(e) => {
                    m.abandon();
                    Err(append_error(e))
                }
            }
        })
    }

    /// InitProducerId with a transactional id: the producer id and epoch to use. Errors as
    /// Kafka's `handleInitProducerId`: INVALID_REQUEST for an empty id,
    /// INVALID_TRANSACTION_TIMEOUT beyond `transaction.max.timeout.ms`, NOT_COORDINATOR,
    /// COORDINATOR_LOAD_IN_PROGRESS, CONCURRENT_TRANSACTIONS (also after fencing an open
    /// transaction, which is being aborted), PRODUCER_FENCED.
    pub async fn init_producer_id(
        self: &Arc<Self>,
        host: &Arc<impl TxnHost + 'static>,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ApiError> {
        if transactional_id.is_empty() {
            return Err(err(ResponseError::InvalidRequest));
        }
        if timeout_ms <= 0 || timeout_ms > host.max_transaction_timeout_ms() {
            return Err(err(ResponseError::InvalidTransactionTimeout));
        }
        let at = self.serving(host.as_ref(), transactional_id).await?;
        let mut fresh: Option<i64> = None;
        if !self.with_txn(at, transactional_id, |m| Ok(m.is_some()))? {
            fresh = Some(host.new_producer_id().await?);
        }
        let plan = loop {
            let now = now_ms();
            let plan = {
                let mut inner = self.lock();
                let h = match inner.hosted.get_mut(&at.partition) {
                    Some(h) if h.epoch == at.epoch && !h.loading => h,
                    _ => return Err(err(ResponseError::NotCoordinator)),
                };
                let m = match h.txns.entry(transactional_id.to_string()) {
                    std::collections::hash_map::Entry::Occupied(o) => o.into_mut(),
                    std::collections::hash_map::Entry::Vacant(v) => {
                        // Another request created it meanwhile if `fresh` was not taken.
                        let Some(id) = fresh.take() else {
                            return Err(err(ResponseError::ConcurrentTransactions));
                        };
                        v.insert(TxnMetadata::new(transactional_id, id, timeout_ms, now))
                    }
                };
                m.prepare_init_producer_id(timeout_ms, expected, fresh, now)
                    .map_err(err)?
            };
            match plan {
                InitPlan::NeedsProducerId => fresh = Some(host.new_producer_id().await?),
                plan => break plan,
            }
        };
        match plan {
            InitPlan::Write(t) => {
                self.write(host.as_ref(), at, transactional_id, &t).await?;
                info!(
                    transactional_id,
                    producer_id = t.producer_id,
                    producer_epoch = t.producer_epoch,
                    partition = at.partition,
                    "initialized transactional id"
                );
                Ok((t.producer_id, t.producer_epoch))
            }
            InitPlan::FenceAndAbort(t) => {
                self.write(host.as_ref(), at, transactional_id, &t).await?;
                info!(
                    transactional_id,
                    producer_epoch = t.producer_epoch,
                    "fenced the producer of an open transaction; aborting it"
                );
                self.spawn_completion(host, at, transactional_id.to_string());
                Err(err(ResponseError::ConcurrentTransactions))
            }
            InitPlan::NeedsProducerId => Err(err(ResponseError::UnknownServerError)),
        }
    }

    /// AddPartitionsToTxn (client path, v0–v3): adds `partitions` to the open transaction
    /// (opening one). Errors as Kafka's `handleAddPartitionsToTransaction`.
    pub async fn add_partitions(
        &self,
        host: &impl TxnHost,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &BTreeSet<TxnPartition>,
    ) -> Result<(), ApiError> {
        if transactional_id.is_empty() {
            return Err(err(ResponseError::InvalidRequest));
        }
        let at = self.serving(host, transactional_id).await?;
        let transit = self.with_txn(at, transactional_id, |m| {
            let m = m.ok_or_else(|| err(ResponseError::InvalidProducerIdMapping))?;
            m.prepare_add_partitions(producer_id, producer_epoch, partitions, now_ms())
                .map_err(err)
        })?;
        match transit {
            None => Ok(()),
            Some(t) => self.write(host, at, transactional_id, &t).await,
        }
    }

    /// EndTxn (transaction protocol v1): writes PrepareCommit/PrepareAbort and answers; the
    /// markers and the completion follow in the background. Errors as Kafka's
    /// `endTransaction` from a client.
    pub async fn end_txn(
        self: &Arc<Self>,
        host: &Arc<impl TxnHost + 'static>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> Result<(), ApiError> {
        if transactional_id.is_empty() {
            return Err(err(ResponseError::InvalidRequest));
        }
        let at = self.serving(host.as_ref(), transactional_id).await?;
        let transit = self.with_txn(at, transactional_id, |m| {
            let m = m.ok_or_else(|| err(ResponseError::InvalidProducerIdMapping))?;
            m.prepare_end_txn(producer_id, producer_epoch, commit, now_ms())
                .map_err(err)
        })?;
        let Some(t) = transit else {
            return Ok(());
        };
        self.write(host.as_ref(), at, transactional_id, &t).await?;
        self.spawn_completion(host, at, transactional_id.to_string());
        Ok(())
    }

    /// Completes a prepared transaction in the background: markers to every partition
    /// (retried until written, the partition is gone, or this broker stops serving the
    /// transactional id), then the Complete record.
    fn spawn_completion(
        self: &Arc<Self>,
        host: &Arc<impl TxnHost + 'static>,
        at: Serving,
        transactional_id: String,
    ) {
        let (this, host) = (self.clone(), host.clone());
        tokio::spawn(async move {
            this.complete(host.as_ref(), at, &transactional_id).await;
        });
    }

    async fn complete(&self, host: &impl TxnHost, at: Serving, transactional_id: &str) {
        // Partitions whose marker is written: only the others are sent again (Kafka
        // re-enqueues just the partitions to retry).
        let mut written: BTreeSet<TxnPartition> = BTreeSet::new();
        loop {
            // What is left to mark, read afresh each round: a resignation ends the work.
            let snapshot = self.with_txn(at, transactional_id, |m| {
                let m = m.ok_or_else(|| err(ResponseError::NotCoordinator))?;
                let commit = match m.state {
                    TxnState::PrepareCommit => true,
                    TxnState::PrepareAbort => false,
                    _ => return Err(err(ResponseError::InvalidTxnState)),
                };
                Ok((
                    m.producer_id,
                    m.producer_epoch,
                    commit,
                    m.partitions.clone(),
                ))
            });
            let Ok((producer_id, producer_epoch, commit, partitions)) = snapshot else {
                return;
            };
            let left: BTreeSet<TxnPartition> = partitions.difference(&written).cloned().collect();
            let mut failed = false;
            let results = host
                .write_markers(&left, producer_id, producer_epoch, commit, at.epoch)
                .await;
            for (tp, code) in results {
                match markers::outcome(code) {
                    Outcome::Done => {
                        written.insert(tp);
                    }
                    Outcome::Fenced => {
                        // A newer producer epoch or coordinator wrote there: this
                        // coordinator's completion is obsolete (Kafka drops its markers).
                        info!(transactional_id, topic = %tp.0, partition = tp.1, code, "marker fenced; no longer completing the transaction here");
                        return;
                    }
                    Outcome::Retry => {
                        warn!(transactional_id, topic = %tp.0, partition = tp.1, code, "marker not written; retrying");
                        failed = true;
                    }
                }
            }
            if !failed {
                let transit = self.with_txn(at, transactional_id, |m| {
                    let m = m.ok_or_else(|| err(ResponseError::NotCoordinator))?;
                    Ok(m.prepare_complete(now_ms()))
                });
                match transit {
                    Ok(Some(t)) => match self.write(host, at, transactional_id, &t).await {
                        Ok(()) => return,
                        Err(e) if e.code == ResponseError::NotCoordinator.code() => return,
                        Err(e) => {
                            warn!(
                                transactional_id,
                                code = e.code,
                                "completion not written; retrying"
                            )
                        }
                    },
                    // Another completion already ran (or is running).
                    Ok(None) | Err(_) => return,
                }
            }
            tokio::time::sleep(MARKER_RETRY_BACKOFF).await;
        }
    }

    /// ListTransactions: the metadata of every transactional id this coordinator serves that
    /// `filter` includes at `now`, sorted by transactional id. COORDINATOR_LOAD_IN_PROGRESS
    /// while any of its partitions loads (Kafka answers nothing then rather than a part).
    pub fn list(&self, filter: &ListFilter, now: i64) -> Result<Vec<TxnMetadata>, ApiError> {
        let inner = self.lock();
        if inner.hosted.values().any(|h| h.loading) {
            return Err(err(ResponseError::CoordinatorLoadInProgress));
        }
        let mut listed: Vec<TxnMetadata> = inner
            .hosted
            .values()
            .flat_map(|h| h.txns.values())
            .filter(|m| filter.includes(m, now))
            .cloned()
            .collect();
        listed.sort_by(|a, b| a.transactional_id.cmp(&b.transactional_id));
        Ok(listed)
    }

    /// DescribeTransactions of one id (Kafka's `handleDescribeTransactions`): its metadata,
    /// or INVALID_REQUEST for an empty id, NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS,
    /// TRANSACTIONAL_ID_NOT_FOUND for an id this coordinator does not know (or a Dead one).
    pub async fn describe(
        &self,
        host: &impl TxnHost,
        transactional_id: &str,
    ) -> Result<TxnMetadata, ApiError> {
        if transactional_id.is_empty() {
            return Err(err(ResponseError::InvalidRequest));
        }
        let at = self.serving(host, transactional_id).await?;
        self.with_txn(at, transactional_id, |m| match m {
            Some(m) if m.state != TxnState::Dead => Ok(m.clone()),
            _ => Err(err(ResponseError::TransactionalIdNotFound)),
        })
    }

    /// Loads `__transaction_state` partition `partition` as its new leader at `epoch`, then
    /// completes the transactions found prepared.
    pub async fn on_elected(&self, host: &impl TxnHost, partition: i32, epoch: i32) {
        {
            let mut inner = self.lock();
            if inner
                .hosted
                .get(&partition)
                .is_some_and(|h| h.epoch >= epoch)
            {
                return;
            }
            inner.hosted.insert(
                partition,
                Hosted {
                    epoch,
                    loading: true,
                    txns: HashMap::new(),
                },
            );
        }
        let txns = match host.txn_log(partition) {
            Ok((log, _)) => tokio::task::spawn_blocking(move || read_txns(&log, partition))
                .await
                .unwrap_or_default(),
            Err(e) => {
                warn!(partition, code = e.code, "cannot load __transaction_state");
                self.lock().hosted.remove(&partition);
                return;
            }
        };
        let mut inner = self.lock();
        let Some(h) = inner
            .hosted
            .get_mut(&partition)
            .filter(|h| h.epoch == epoch)
        else {
            return;
        };
        info!(
            partition,
            epoch,
            transactional_ids = txns.len(),
            "loaded transactions"
        );
        h.txns = txns;
        h.loading = false;
    }

    /// The transactional ids of `partition` left prepared by the previous coordinator.
    fn prepared(&self, partition: i32) -> Vec<(Serving, String)> {
        let inner = self.lock();
        let Some(h) = inner.hosted.get(&partition).filter(|h| !h.loading) else {
            return Vec::new();
        };
        h.txns
            .values()
            .filter(|m| {
                matches!(m.state, TxnState::PrepareCommit | TxnState::PrepareAbort)
                    && m.pending_state().is_none()
            })
            .map(|m| {
                (
                    Serving {
                        partition,
                        epoch: h.epoch,
                    },
                    m.transactional_id.clone(),
                )
            })
            .collect()
    }

    /// [`Self::on_elected`], then the completion of every prepared transaction it found.
    pub async fn load(
        self: &Arc<Self>,
        host: &Arc<impl TxnHost + 'static>,
        partition: i32,
        epoch: i32,
    ) {
        self.on_elected(host.as_ref(), partition, epoch).await;
        for (at, id) in self.prepared(partition) {
            self.spawn_completion(host, at, id);
        }
    }

    /// Drops `partition` after this broker stopped leading it: its requests get
    /// NOT_COORDINATOR and its completions stop (the new leader resumes them).
    pub fn on_resigned(&self, partition: i32) {
        if self.lock().hosted.remove(&partition).is_some() {
            info!(partition, "unloaded transactions");
        }
    }

    /// Fences and aborts every open transaction past its timeout (Kafka's
    /// `abortTimedOutTransactions`) every
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms`, and expires idle
    /// transactional ids ([`Self::remove_expired`]) every
    /// `transaction.remove.expired.transaction.cleanup.interval.ms`, until shutdown.
    pub async fn run(
        self: &Arc<Self>,
        host: &Arc<impl TxnHost + 'static>,
        mut shutdown: watch::Receiver<bool>,
    ) {
        let every = |ms: i64| {
            let period = Duration::from_millis(ms.max(1) as u64);
            // The first pass one period after start, as Kafka schedules both.
            let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + period, period);
            tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
            tick
        };
        let mut abort_tick = every(host.abort_timed_out_interval_ms());
        let mut expire_tick = every(host.remove_expired_interval_ms());
        loop {
            tokio::select! {
                _ = abort_tick.tick() => self.abort_timed_out(host, now_ms()).await,
                _ = expire_tick.tick() => self.remove_expired(host.as_ref(), now_ms()).await,
                _ = shutdown.changed() => return,
            }
        }
    }

    /// One pass of Kafka's `removeExpiredTransactionalIds` at `now`: in every loaded
    /// partition, the ids [`state::expired_ids`] picks are marked Dead (pending), a batch
    /// of tombstones of their keys is written (acks=all), and each is forgotten if the
    /// write succeeded and nothing changed it meanwhile (same coordinator epoch, still
    /// pending Dead); otherwise it stays as it was. A restart replays the tombstones, so
    /// the ids do not come back.
    pub async fn remove_expired(&self, host: &impl TxnHost, now: i64) {
        let expiration_ms = host.transactional_id_expiration_ms();
        let mut picked: Vec<(Serving, Vec<String>)> = Vec::new();
        {
            let mut inner = self.lock();
            for (&partition, h) in inner.hosted.iter_mut().filter(|(_, h)| !h.loading) {
                let ids: Vec<String> = state::expired_ids(h.txns.values(), now, expiration_ms)
                    .into_iter()
                    .filter(|id| h.txns.get_mut(id).is_some_and(|m| m.prepare_dead().is_ok()))
                    .collect();
                if !ids.is_empty() {
                    let at = Serving {
                        partition,
                        epoch: h.epoch,
                    };
                    picked.push((at, ids));
                }
            }
        }
        for (at, ids) in picked {
            for run in tombstone_runs(&ids, TOMBSTONE_BATCH_KEY_BYTES) {
                let entries: Vec<(Bytes, Option<Bytes>)> = run
                    .iter()
                    .map(|id| (records::encode_key(id), None))
                    .collect();
                let written = match crate::group::encode_coordinator_batch(entries.iter()) {
                    Ok(batch) => host.append_txn(at.partition, batch).await.map(|_| ()),
                    Err(e) => Err(e),
                };
                let mut inner = self.lock();
                let Some(h) = inner.hosted.get_mut(&at.partition) else {
                    continue;
                };
                let same_epoch = h.epoch == at.epoch;
                for id in run {
                    let dead = h
                        .txns
                        .get(id)
                        .is_some_and(|m| m.pending_state() == Some(TxnState::Dead));
                    if written.is_ok() && same_epoch && dead {
                        h.txns.remove(id);
                        info!(transactional_id = %id, partition = at.partition, "expired transactional id");
                    } else if let Some(m) = h.txns.get_mut(id).filter(|_| dead) {
                        warn!(transactional_id = %id, code = written.as_ref().err().map(|e| e.code), "cannot expire transactional id");
                        m.abandon();
                    }
                }
            }
        }
    }

    /// One pass of the timeout check at `now`.
    pub async fn abort_timed_out(self: &Arc<Self>, host: &Arc<impl TxnHost + 'static>, now: i64) {
        let mut fenced = Vec::new();
        {
            let mut inner = self.lock();
            for (&partition, h) in inner.hosted.iter_mut().filter(|(_, h)| !h.loading) {
                for m in h.txns.values_mut().filter(|m| m.is_timed_out(now)) {
                    if let Ok(t) = m.prepare_fence_and_abort(now) {
                        let at = Serving {
                            partition,
                            epoch: h.epoch,
                        };
                        fenced.push((at, m.transactional_id.clone(), t));
                    }
                }
            }
        }
        for (at, id, t) in fenced {
            match self.write(host.as_ref(), at, &id, &t).await {
                Ok(()) => {
                    info!(transactional_id = %id, producer_epoch = t.producer_epoch, "aborting a timed-out transaction");
                    self.spawn_completion(host, at, id);
                }
                Err(e) => {
                    warn!(transactional_id = %id, code = e.code, "cannot abort a timed-out transaction")
                }
            }
        }
    }
}

/// Reads a `__transaction_state` partition from its start to its end and replays it (later
/// records win, a tombstone removes the id). Blocking. A batch that cannot be read ends the
/// load there (logged).
fn read_txns(log: &Arc<Mutex<PartitionLog>>, partition: i32) -> HashMap<String, TxnMetadata> {
    let mut txns = HashMap::new();
    crate::log::replay_records(log, records::TRANSACTION_STATE_TOPIC, partition, |r| {
        replay(&mut txns, partition, r.key, r.value)
    });
    txns
}

fn replay(
    txns: &mut HashMap<String, TxnMetadata>,
    partition: i32,
    key: Option<Bytes>,
    value: Option<Bytes>,
) {
    let Some(key) = key else { return };
    let id = match records::decode_key(key) {
        Ok(Some(id)) => id,
        Ok(None) => return,
        Err(e) => {
            warn!(partition, error = %e, "skipping a __transaction_state record");
            return;
        }
    };
    match value {
        None => {
            txns.remove(&id);
        }
        Some(v) => match TxnLogValue::decode(v) {
            Ok(v) => {
                txns.insert(id.clone(), TxnMetadata::from_log(&id, &v));
            }
            Err(e) => {
                warn!(partition, transactional_id = %id, error = %e, "skipping a __transaction_state record")
            }
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ids(names: &[&str]) -> Vec<String> {
        names.iter().map(|s| s.to_string()).collect()
    }

    #[test]
    fn tombstones_are_cut_into_batches_by_key_bytes() {
        let all = ids(&["aaaa", "bbbb", "cccc", "dd", "eeeeeeeeee"]);
        let runs = tombstone_runs(&all, 8);
        assert_eq!(
            runs,
            vec![&all[0..2], &all[2..4], &all[4..5]],
            "8 bytes: two ids of 4, then 4 + 2, then an id longer than the bound alone"
        );
        assert_eq!(tombstone_runs(&all, 1 << 20), vec![&all[..]]);
        assert!(tombstone_runs(&[], 8).is_empty());
    }
}
