//! One transactional id's state as a pure state machine, with Apache Kafka 4.1's states,
//! transitions and error codes for transaction protocol v1 (see [`crate::txn`] for why v1
//! only). No I/O and no clock: `now` is an argument, and every change is prepared first
//! ([`TxnTransit`], the next state as it will be written to `__transaction_state`) and
//! applied only once that record is written ([`TxnMetadata::complete`]), or dropped if the
//! write failed ([`TxnMetadata::abandon`]). While a transit is pending, every other request
//! gets CONCURRENT_TRANSACTIONS, as in Kafka.
//!
//! Kafka fences a zombie (InitProducerId while a transaction is Ongoing, or a timed-out
//! transaction) through an in-memory `PrepareEpochFence` state that is never written: the
//! record written is PrepareAbort with the bumped epoch. Here that is one transit
//! ([`TxnMetadata::prepare_fence_and_abort`]), and the bumped epoch is taken only once the
//! record is written; a failed write leaves the old epoch, so the next attempt bumps from it
//! (Kafka's `hasFailedEpochFence` reaches the same epoch another way).

use std::collections::{BTreeMap, BTreeSet};

use kafka_protocol::ResponseError;

use super::records::TxnLogValue;

/// No producer id (Kafka's `RecordBatch.NO_PRODUCER_ID`).
pub const NO_PRODUCER_ID: i64 = -1;
/// No producer epoch (Kafka's `RecordBatch.NO_PRODUCER_EPOCH`).
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// A transaction's state, with Kafka's ids (the state byte of the log value) and names (what
/// DescribeTransactions and ListTransactions report).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum TxnState {
    /// No transaction open (after InitProducerId).
    Empty,
    /// Partitions or offsets were added: the transaction is open.
    Ongoing,
    /// EndTxn(commit) was written; markers are being written.
    PrepareCommit,
    /// EndTxn(abort), a fenced zombie or a timeout was written; markers are being written.
    PrepareAbort,
    /// Every commit marker was written.
    CompleteCommit,
    /// Every abort marker was written.
    CompleteAbort,
    /// The transactional id expired and is being removed.
    Dead,
    /// The epoch is being bumped to fence a producer (in memory only in Kafka).
    PrepareEpochFence,
}

impl TxnState {
    /// Kafka's id of the state, as stored in the log value.
    pub fn id(self) -> i8 {
        match self {
            TxnState::Empty => 0,
            TxnState::Ongoing => 1,
            TxnState::PrepareCommit => 2,
            TxnState::PrepareAbort => 3,
            TxnState::CompleteCommit => 4,
            TxnState::CompleteAbort => 5,
            TxnState::Dead => 6,
            TxnState::PrepareEpochFence => 7,
        }
    }

    /// The state with Kafka's id `id`, `None` for an unknown id.
    pub fn from_id(id: i8) -> Option<TxnState> {
        Some(match id {
            0 => TxnState::Empty,
            1 => TxnState::Ongoing,
            2 => TxnState::PrepareCommit,
            3 => TxnState::PrepareAbort,
            4 => TxnState::CompleteCommit,
            5 => TxnState::CompleteAbort,
            6 => TxnState::Dead,
            7 => TxnState::PrepareEpochFence,
            _ => return None,
        })
    }

    /// Kafka's name of the state (`kafka-transactions.sh describe` prints it).
    pub fn name(self) -> &'static str {
        match self {
            TxnState::Empty => "Empty",
            TxnState::Ongoing => "Ongoing",
            TxnState::PrepareCommit => "PrepareCommit",
            TxnState::PrepareAbort => "PrepareAbort",
            TxnState::CompleteCommit => "CompleteCommit",
            TxnState::CompleteAbort => "CompleteAbort",
            TxnState::Dead => "Dead",
            TxnState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    /// The state Kafka names `name` (case-sensitive, as Kafka's `TransactionState.fromName`),
    /// `None` for a name Kafka does not know.
    pub fn from_name(name: &str) -> Option<TxnState> {
        (0..8)
            .filter_map(TxnState::from_id)
            .find(|s| s.name() == name)
    }

    /// The states a transition into `self` may start from (Kafka's `validPreviousStates`).
    fn valid_previous(self) -> &'static [TxnState] {
        use TxnState::*;
        match self {
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            PrepareAbort => &[Ongoing, PrepareEpochFence],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            Dead => &[Empty, CompleteAbort, CompleteCommit],
            PrepareEpochFence => &[Ongoing],
        }
    }
}

/// Whether `epoch` leaves no room for another bump (Kafka's `isEpochExhausted`): a new
/// producer id is handed out instead.
pub fn is_epoch_exhausted(epoch: i16) -> bool {
    epoch >= i16::MAX - 1
}

/// A topic partition in a transaction.
pub type TxnPartition = (String, i32);

/// The transactional ids of `txns` to expire at `now` with `transactional.id.expiration.ms`
/// `expiration_ms` ([`TxnMetadata::should_expire`]), sorted: what one pass of Kafka's
/// `removeExpiredTransactionalIds` tombstones in a partition.
pub fn expired_ids<'a>(
    txns: impl IntoIterator<Item = &'a TxnMetadata>,
    now: i64,
    expiration_ms: i64,
) -> Vec<String> {
    let mut ids: Vec<String> = txns
        .into_iter()
        .filter(|m| m.should_expire(now, expiration_ms))
        .map(|m| m.transactional_id.clone())
        .collect();
    ids.sort();
    ids
}

/// A transactional id's state as the coordinator holds it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnMetadata {
    /// The transactional id.
    pub transactional_id: String,
    /// Producer id in use.
    pub producer_id: i64,
    /// Producer id before the last rotation (not stored by value v0: -1 after a load).
    pub previous_producer_id: i64,
    /// Current epoch of the producer id.
    pub producer_epoch: i16,
    /// Epoch before the last bump, for an InitProducerId retried after its answer was lost
    /// (KIP-360; not stored in the log: -1 after a load, as in Kafka).
    pub last_producer_epoch: i16,
    /// `transaction.timeout.ms` of the producer.
    pub timeout_ms: i32,
    /// Current state.
    pub state: TxnState,
    /// Partitions in the open transaction.
    pub partitions: BTreeSet<TxnPartition>,
    /// When the open transaction started, -1 when none is open.
    pub start_timestamp_ms: i64,
    /// When the state last changed.
    pub last_update_timestamp_ms: i64,
    /// The state a prepared transit goes to, while its record is being written.
    pending: Option<TxnState>,
}

/// The next state of a transactional id, prepared and to be written to
/// `__transaction_state` before it is applied (Kafka's `TxnTransitMetadata`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TxnTransit {
    /// Producer id after the transition.
    pub producer_id: i64,
    /// Previous producer id after the transition.
    pub previous_producer_id: i64,
    /// Producer epoch after the transition.
    pub producer_epoch: i16,
    /// Last producer epoch after the transition.
    pub last_producer_epoch: i16,
    /// Transaction timeout after the transition.
    pub timeout_ms: i32,
    /// State after the transition.
    pub state: TxnState,
    /// Partitions after the transition.
    pub partitions: BTreeSet<TxnPartition>,
    /// Transaction start after the transition.
    pub start_timestamp_ms: i64,
    /// When the transition was prepared.
    pub last_update_timestamp_ms: i64,
}

impl TxnTransit {
    /// The log value that records this transit.
    pub fn to_log_value(&self) -> TxnLogValue {
        let mut partitions: BTreeMap<String, Vec<i32>> = BTreeMap::new();
        for (topic, p) in &self.partitions {
            partitions.entry(topic.clone()).or_default().push(*p);
        }
        TxnLogValue {
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            next_producer_id: NO_PRODUCER_ID,
            producer_epoch: self.producer_epoch,
            timeout_ms: self.timeout_ms,
            state: self.state,
            partitions,
            last_update_timestamp_ms: self.last_update_timestamp_ms,
            start_timestamp_ms: self.start_timestamp_ms,
            client_transaction_version: 0,
        }
    }
}

/// What InitProducerId with a transactional id leads to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum InitPlan {
    /// Write this Empty transit, then answer its producer id and epoch.
    Write(TxnTransit),
    /// A transaction is open: write this PrepareAbort transit (epoch bumped, fencing the
    /// producer that opened it), write the abort markers, and answer CONCURRENT_TRANSACTIONS
    /// so the client retries and gets the next epoch once the abort completes.
    FenceAndAbort(TxnTransit),
    /// The epoch is exhausted: call again with a freshly allocated producer id.
    NeedsProducerId,
}

impl TxnMetadata {
    /// A transactional id seen for the first time: Empty, with `producer_id` and no epoch
    /// yet (the InitProducerId that created it bumps it to 0).
    pub fn new(transactional_id: &str, producer_id: i64, timeout_ms: i32, now: i64) -> Self {
        TxnMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id,
            previous_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TxnState::Empty,
            partitions: BTreeSet::new(),
            start_timestamp_ms: -1,
            last_update_timestamp_ms: now,
            pending: None,
        }
    }

    /// The state a stored value describes, as a loading coordinator rebuilds it (Kafka's
    /// `readTxnRecordValue`: the last epoch is not stored).
    pub fn from_log(transactional_id: &str, value: &TxnLogValue) -> Self {
        let partitions = if value.state == TxnState::Empty {
            BTreeSet::new()
        } else {
            value
                .partitions
                .iter()
                .flat_map(|(t, ps)| ps.iter().map(move |p| (t.clone(), *p)))
                .collect()
        };
        TxnMetadata {
            transactional_id: transactional_id.to_string(),
            producer_id: value.producer_id,
            previous_producer_id: value.previous_producer_id,
            producer_epoch: value.producer_epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: value.timeout_ms,
            state: value.state,
            partitions,
            start_timestamp_ms: value.start_timestamp_ms,
            last_update_timestamp_ms: value.last_update_timestamp_ms,
            pending: None,
        }
    }

    /// The state a prepared transit goes to, if one is being written.
    pub fn pending_state(&self) -> Option<TxnState> {
        self.pending
    }

    /// A transit to `to` at `now` that changes nothing else: every other field is the
    /// current one. Each transition below names only the fields it changes on top of it.
    fn next(&self, to: TxnState, now: i64) -> TxnTransit {
        TxnTransit {
            producer_id: self.producer_id,
            previous_producer_id: self.previous_producer_id,
            producer_epoch: self.producer_epoch,
            last_producer_epoch: self.last_producer_epoch,
            timeout_ms: self.timeout_ms,
            state: to,
            partitions: self.partitions.clone(),
            start_timestamp_ms: self.start_timestamp_ms,
            last_update_timestamp_ms: now,
        }
    }

    /// Prepares `next`, marking its state pending (Kafka's `prepareTransitionTo`). Its state
    /// must be reachable from the current one: the callers below only ask for such
    /// transitions. CONCURRENT_TRANSACTIONS while another transit is pending.
    fn transit(&mut self, next: TxnTransit) -> Result<TxnTransit, ResponseError> {
        if self.pending.is_some() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if !next.state.valid_previous().contains(&self.state) {
            // Kafka throws IllegalStateException here (an UNKNOWN_SERVER_ERROR to the client).
            return Err(ResponseError::UnknownServerError);
        }
        self.pending = Some(next.state);
        Ok(next)
    }

    /// InitProducerId with this transactional id (Kafka's `prepareInitProducerIdTransit`):
    /// `expected` is the producer id and epoch a KIP-360 client sends when it recovers
    /// (`None` for a fresh start); `new_producer_id` is a freshly allocated id, needed only
    /// when the answer is [`InitPlan::NeedsProducerId`]. Errors: CONCURRENT_TRANSACTIONS
    /// while a transition is written or markers are written (the client retries),
    /// PRODUCER_FENCED when `expected` names another producer or an older epoch.
    pub fn prepare_init_producer_id(
        &mut self,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        new_producer_id: Option<i64>,
        now: i64,
    ) -> Result<InitPlan, ResponseError> {
        if self.pending.is_some() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if let Some((pid, epoch)) = expected {
            // Kafka accepts: metadata just created (no epoch yet), the current producer id,
            // or the previous one with an exhausted epoch (a retry after a rotation whose
            // answer was lost).
            let valid = self.producer_epoch == NO_PRODUCER_EPOCH
                || pid == self.producer_id
                || (pid == self.previous_producer_id && is_epoch_exhausted(epoch));
            if !valid {
                return Err(ResponseError::ProducerFenced);
            }
        }
        match self.state {
            TxnState::PrepareCommit | TxnState::PrepareAbort => {
                Err(ResponseError::ConcurrentTransactions)
            }
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => {
                let rotate = is_epoch_exhausted(self.producer_epoch)
                    && expected.is_none_or(|(_, e)| e == self.producer_epoch);
                if rotate {
                    let Some(new_id) = new_producer_id else {
                        return Ok(InitPlan::NeedsProducerId);
                    };
                    let last = if expected.is_some() {
                        self.producer_epoch
                    } else {
                        NO_PRODUCER_EPOCH
                    };
                    let t = self.transit(TxnTransit {
                        producer_id: new_id,
                        previous_producer_id: self.producer_id,
                        producer_epoch: 0,
                        last_producer_epoch: last,
                        timeout_ms,
                        partitions: BTreeSet::new(),
                        start_timestamp_ms: -1,
                        ..self.next(TxnState::Empty, now)
                    })?;
                    return Ok(InitPlan::Write(t));
                }
                let bumped = self.producer_epoch + 1;
                let (epoch, last) = match expected {
                    None => (bumped, NO_PRODUCER_EPOCH),
                    Some((_, e))
                        if self.producer_epoch == NO_PRODUCER_EPOCH || e == self.producer_epoch =>
                    {
                        (bumped, self.producer_epoch)
                    }
                    // A retry of a bump whose answer was lost: the same epoch again.
                    Some((_, e)) if e == self.last_producer_epoch => {
                        (self.producer_epoch, self.last_producer_epoch)
                    }
                    Some(_) => return Err(ResponseError::ProducerFenced),
                };
                let t = self.transit(TxnTransit {
                    previous_producer_id: self.producer_id,
                    producer_epoch: epoch,
                    last_producer_epoch: last,
                    timeout_ms,
                    partitions: BTreeSet::new(),
                    start_timestamp_ms: -1,
                    ..self.next(TxnState::Empty, now)
                })?;
                Ok(InitPlan::Write(t))
            }
            TxnState::Ongoing => self
                .prepare_fence_and_abort(now)
                .map(InitPlan::FenceAndAbort),
            // Never held by a serving coordinator (Kafka treats both as fatal).
            TxnState::Dead | TxnState::PrepareEpochFence => Err(ResponseError::UnknownServerError),
        }
    }

    /// Fences the producer of the open transaction and aborts it: PrepareAbort with the
    /// epoch bumped, so the fenced producer's requests get PRODUCER_FENCED and its markers
    /// are written with an epoch it cannot reach.
    pub fn prepare_fence_and_abort(&mut self, now: i64) -> Result<TxnTransit, ResponseError> {
        if self.state != TxnState::Ongoing {
            return Err(ResponseError::InvalidTxnState);
        }
        if self.producer_epoch == i16::MAX {
            return Err(ResponseError::UnknownServerError);
        }
        self.transit(TxnTransit {
            producer_epoch: self.producer_epoch + 1,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            ..self.next(TxnState::PrepareAbort, now)
        })
    }

    /// AddPartitionsToTxn (and AddOffsetsToTxn with the group's `__consumer_offsets`
    /// partition): `Ok(None)` when every partition is already in the open transaction
    /// (answered at once), otherwise the Ongoing transit to write. Errors as Kafka's
    /// `handleAddPartitionsToTransaction`: INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED,
    /// CONCURRENT_TRANSACTIONS while a transition or the markers are written.
    pub fn prepare_add_partitions(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &BTreeSet<TxnPartition>,
        now: i64,
    ) -> Result<Option<TxnTransit>, ResponseError> {
        if self.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if self.producer_epoch != producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        if self.pending.is_some()
            || matches!(self.state, TxnState::PrepareCommit | TxnState::PrepareAbort)
        {
            return Err(ResponseError::ConcurrentTransactions);
        }
        if self.state == TxnState::Ongoing && partitions.is_subset(&self.partitions) {
            return Ok(None);
        }
        let start = match self.state {
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort => now,
            _ => self.start_timestamp_ms,
        };
        let all = self.partitions.union(partitions).cloned().collect();
        self.transit(TxnTransit {
            partitions: all,
            start_timestamp_ms: start,
            ..self.next(TxnState::Ongoing, now)
        })
        .map(Some)
    }

    /// EndTxn from the client (transaction protocol v1: the epoch must be the current one):
    /// `Ok(None)` when the transaction already ended the same way (a retry, answered at
    /// once), otherwise the PrepareCommit/PrepareAbort transit to write before the markers.
    /// Errors as Kafka's `endTransaction`: INVALID_PRODUCER_ID_MAPPING, PRODUCER_FENCED,
    /// CONCURRENT_TRANSACTIONS (a transition pending, or the same end being completed),
    /// INVALID_TXN_STATE (no transaction open, or it ended the other way).
    pub fn prepare_end_txn(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
        now: i64,
    ) -> Result<Option<TxnTransit>, ResponseError> {
        if self.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if producer_epoch != self.producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        if self.pending.is_some() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        match (self.state, commit) {
            (TxnState::Ongoing, _) => {
                let to = if commit {
                    TxnState::PrepareCommit
                } else {
                    TxnState::PrepareAbort
                };
                self.transit(self.next(to, now)).map(Some)
            }
            (TxnState::CompleteCommit, true) | (TxnState::CompleteAbort, false) => Ok(None),
            (TxnState::PrepareCommit, true) | (TxnState::PrepareAbort, false) => {
                Err(ResponseError::ConcurrentTransactions)
            }
            _ => Err(ResponseError::InvalidTxnState),
        }
    }

    /// Once every marker of a PrepareCommit/PrepareAbort was written: the
    /// CompleteCommit/CompleteAbort transit to write (no partitions left). `None` when there
    /// is nothing to complete (another state, or a transit pending).
    pub fn prepare_complete(&mut self, now: i64) -> Option<TxnTransit> {
        let to = match self.state {
            TxnState::PrepareCommit => TxnState::CompleteCommit,
            TxnState::PrepareAbort => TxnState::CompleteAbort,
            _ => return None,
        };
        self.transit(TxnTransit {
            partitions: BTreeSet::new(),
            ..self.next(to, now)
        })
        .ok()
    }

    /// Whether the open transaction ran past its timeout at `now` and nothing is being
    /// written for it (Kafka's `timedOutTransactions`): the coordinator then fences and
    /// aborts it ([`Self::prepare_fence_and_abort`]).
    pub fn is_timed_out(&self, now: i64) -> bool {
        self.state == TxnState::Ongoing
            && self.pending.is_none()
            && self.start_timestamp_ms + i64::from(self.timeout_ms) < now
    }

    /// Whether this transactional id has been idle long enough at `now` to be expired
    /// after `expiration_ms` (`transactional.id.expiration.ms`), as Kafka's
    /// `TransactionStateManager.shouldExpire`: no transaction open or ending (Empty,
    /// CompleteCommit or CompleteAbort, nothing being written) and the last state change
    /// at least `expiration_ms` before `now`.
    pub fn should_expire(&self, now: i64, expiration_ms: i64) -> bool {
        matches!(
            self.state,
            TxnState::Empty | TxnState::CompleteCommit | TxnState::CompleteAbort
        ) && self.pending.is_none()
            && self.last_update_timestamp_ms <= now.saturating_sub(expiration_ms)
    }

    /// The Dead transit of an expired id (Kafka's `prepareDead`): the tombstone of its key
    /// is written, then the id is forgotten. Its timestamps are not changed.
    pub fn prepare_dead(&mut self) -> Result<TxnTransit, ResponseError> {
        self.transit(TxnTransit {
            partitions: BTreeSet::new(),
            ..self.next(TxnState::Dead, self.last_update_timestamp_ms)
        })
    }

    /// Applies `transit` once its record is written (Kafka's `completeTransitionTo`).
    /// `false` (and nothing changed but the pending mark) if it is not the pending transit.
    pub fn complete(&mut self, transit: &TxnTransit) -> bool {
        if self.pending != Some(transit.state) {
            return false;
        }
        self.pending = None;
        self.producer_id = transit.producer_id;
        self.previous_producer_id = transit.previous_producer_id;
        self.producer_epoch = transit.producer_epoch;
        self.last_producer_epoch = transit.last_producer_epoch;
        self.timeout_ms = transit.timeout_ms;
        self.state = transit.state;
        self.partitions = transit.partitions.clone();
        self.start_timestamp_ms = transit.start_timestamp_ms;
        self.last_update_timestamp_ms = transit.last_update_timestamp_ms;
        true
    }

    /// Drops the pending transit: its record could not be written, the state is unchanged.
    pub fn abandon(&mut self) {
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::ResponseError as E;

    const T0: i64 = 1_000_000;

    fn tp(t: &str, p: i32) -> TxnPartition {
        (t.to_string(), p)
    }

    fn set(ps: &[TxnPartition]) -> BTreeSet<TxnPartition> {
        ps.iter().cloned().collect()
    }

    /// Applies a prepared transit as if its record was written.
    fn write(m: &mut TxnMetadata, t: TxnTransit) -> TxnTransit {
        assert!(m.complete(&t));
        t
    }

    /// A new id after its first InitProducerId: Empty at epoch 0.
    fn initialised() -> TxnMetadata {
        let mut m = TxnMetadata::new("tx", 1000, 60_000, T0);
        match m.prepare_init_producer_id(60_000, None, None, T0).unwrap() {
            InitPlan::Write(t) => {
                write(&mut m, t);
            }
            other => panic!("{other:?}"),
        }
        m
    }

    #[test]
    fn init_gives_epoch_zero_then_bumps_it() {
        let mut m = initialised();
        assert_eq!(
            (m.producer_id, m.producer_epoch, m.state),
            (1000, 0, TxnState::Empty)
        );
        let InitPlan::Write(t) = m
            .prepare_init_producer_id(30_000, None, None, T0 + 1)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((t.producer_epoch, t.timeout_ms), (1, 30_000));
        write(&mut m, t);
        assert_eq!(m.producer_epoch, 1);
    }

    #[test]
    fn a_transaction_commits_through_prepare_and_complete() {
        let mut m = initialised();
        let t = m
            .prepare_add_partitions(1000, 0, &set(&[tp("a", 0)]), T0 + 10)
            .unwrap()
            .unwrap();
        assert_eq!(
            (t.state, t.start_timestamp_ms),
            (TxnState::Ongoing, T0 + 10)
        );
        write(&mut m, t);
        // Adding what is already there is answered without a write.
        assert_eq!(
            m.prepare_add_partitions(1000, 0, &set(&[tp("a", 0)]), T0 + 11),
            Ok(None)
        );
        let t = m
            .prepare_add_partitions(1000, 0, &set(&[tp("b", 1)]), T0 + 12)
            .unwrap()
            .unwrap();
        // The start stays that of the transaction.
        assert_eq!(t.start_timestamp_ms, T0 + 10);
        write(&mut m, t);
        let t = m.prepare_end_txn(1000, 0, true, T0 + 20).unwrap().unwrap();
        assert_eq!(t.state, TxnState::PrepareCommit);
        assert_eq!(t.partitions, set(&[tp("a", 0), tp("b", 1)]));
        write(&mut m, t);
        // Markers are being written: the client's retry and a new AddPartitions wait.
        assert_eq!(
            m.prepare_end_txn(1000, 0, true, T0 + 21),
            Err(E::ConcurrentTransactions)
        );
        assert_eq!(
            m.prepare_end_txn(1000, 0, false, T0 + 21),
            Err(E::InvalidTxnState)
        );
        assert_eq!(
            m.prepare_add_partitions(1000, 0, &set(&[tp("a", 0)]), T0 + 21),
            Err(E::ConcurrentTransactions)
        );
        let t = m.prepare_complete(T0 + 30).unwrap();
        assert_eq!((t.state, t.partitions.len()), (TxnState::CompleteCommit, 0));
        write(&mut m, t);
        // A retried commit is answered at once; an abort now is invalid.
        assert_eq!(m.prepare_end_txn(1000, 0, true, T0 + 31), Ok(None));
        assert_eq!(
            m.prepare_end_txn(1000, 0, false, T0 + 31),
            Err(E::InvalidTxnState)
        );
        // The next transaction starts anew.
        let t = m
            .prepare_add_partitions(1000, 0, &set(&[tp("c", 0)]), T0 + 40)
            .unwrap()
            .unwrap();
        assert_eq!((t.start_timestamp_ms, t.partitions.len()), (T0 + 40, 1));
    }

    #[test]
    fn end_txn_without_a_transaction_is_invalid_state() {
        let mut m = initialised();
        assert_eq!(
            m.prepare_end_txn(1000, 0, true, T0),
            Err(E::InvalidTxnState)
        );
        assert_eq!(
            m.prepare_end_txn(1000, 0, false, T0),
            Err(E::InvalidTxnState)
        );
    }

    #[test]
    fn wrong_ids_and_epochs_get_kafkas_codes() {
        let mut m = initialised();
        let p = set(&[tp("a", 0)]);
        assert_eq!(
            m.prepare_add_partitions(7, 0, &p, T0),
            Err(E::InvalidProducerIdMapping)
        );
        assert_eq!(
            m.prepare_add_partitions(1000, 1, &p, T0),
            Err(E::ProducerFenced)
        );
        assert_eq!(
            m.prepare_end_txn(7, 0, true, T0),
            Err(E::InvalidProducerIdMapping)
        );
        assert_eq!(m.prepare_end_txn(1000, 3, true, T0), Err(E::ProducerFenced));
    }

    #[test]
    fn a_pending_write_makes_others_wait_and_a_failed_one_changes_nothing() {
        let mut m = initialised();
        let before = m.clone();
        let p = set(&[tp("a", 0)]);
        let _t = m.prepare_add_partitions(1000, 0, &p, T0).unwrap().unwrap();
        assert_eq!(m.pending_state(), Some(TxnState::Ongoing));
        assert_eq!(
            m.prepare_add_partitions(1000, 0, &p, T0),
            Err(E::ConcurrentTransactions)
        );
        assert_eq!(
            m.prepare_end_txn(1000, 0, true, T0),
            Err(E::ConcurrentTransactions)
        );
        assert_eq!(
            m.prepare_init_producer_id(60_000, None, None, T0),
            Err(E::ConcurrentTransactions)
        );
        m.abandon();
        assert_eq!(m, before);
    }

    #[test]
    fn a_zombie_is_fenced_by_a_new_init_that_aborts_its_transaction() {
        let mut m = initialised();
        let t = m
            .prepare_add_partitions(1000, 0, &set(&[tp("a", 0)]), T0)
            .unwrap()
            .unwrap();
        write(&mut m, t);
        // The new instance's InitProducerId aborts the open transaction at epoch 1.
        let InitPlan::FenceAndAbort(t) = m
            .prepare_init_producer_id(60_000, None, None, T0 + 5)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((t.state, t.producer_epoch), (TxnState::PrepareAbort, 1));
        assert_eq!(t.partitions, set(&[tp("a", 0)]));
        write(&mut m, t);
        // The zombie (epoch 0) is fenced on everything it tries.
        assert_eq!(
            m.prepare_end_txn(1000, 0, true, T0 + 6),
            Err(E::ProducerFenced)
        );
        assert_eq!(
            m.prepare_add_partitions(1000, 0, &set(&[tp("b", 0)]), T0 + 6),
            Err(E::ProducerFenced)
        );
        // The new instance retries while the abort completes ...
        assert_eq!(
            m.prepare_init_producer_id(60_000, None, None, T0 + 6),
            Err(E::ConcurrentTransactions)
        );
        let t = m.prepare_complete(T0 + 7).unwrap();
        write(&mut m, t);
        assert_eq!(m.state, TxnState::CompleteAbort);
        // ... and then gets epoch 2.
        let InitPlan::Write(t) = m
            .prepare_init_producer_id(60_000, None, None, T0 + 8)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (t.producer_id, t.producer_epoch, t.state),
            (1000, 2, TxnState::Empty)
        );
    }

    #[test]
    fn kip_360_recovery_bumps_for_the_current_producer_and_fences_others() {
        let mut m = initialised();
        // The current producer (epoch 0) recovers: epoch 1, last epoch 0.
        let InitPlan::Write(t) = m
            .prepare_init_producer_id(60_000, Some((1000, 0)), None, T0)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((t.producer_epoch, t.last_producer_epoch), (1, 0));
        write(&mut m, t);
        // Its retry (answer lost) with the old epoch gets the same epoch again.
        let InitPlan::Write(t) = m
            .prepare_init_producer_id(60_000, Some((1000, 0)), None, T0)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((t.producer_epoch, t.last_producer_epoch), (1, 0));
        write(&mut m, t);
        // Another producer id, or an epoch neither current nor last, is fenced.
        assert_eq!(
            m.prepare_init_producer_id(60_000, Some((55, 1)), None, T0),
            Err(E::ProducerFenced)
        );
        assert_eq!(
            m.prepare_init_producer_id(60_000, Some((1000, 7)), None, T0),
            Err(E::ProducerFenced)
        );
    }

    #[test]
    fn an_exhausted_epoch_rotates_the_producer_id() {
        let mut m = initialised();
        m.producer_epoch = i16::MAX - 1;
        let exhausted = Some((1000, i16::MAX - 1));
        assert_eq!(
            m.prepare_init_producer_id(60_000, exhausted, None, T0),
            Ok(InitPlan::NeedsProducerId)
        );
        let InitPlan::Write(t) = m
            .prepare_init_producer_id(60_000, exhausted, Some(2000), T0)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!(
            (t.producer_id, t.previous_producer_id, t.producer_epoch),
            (2000, 1000, 0)
        );
        assert_eq!(t.last_producer_epoch, i16::MAX - 1);
        write(&mut m, t);
        // Its retry (the answer was lost) with the old id and its exhausted epoch gets the
        // new id and epoch again, not PRODUCER_FENCED.
        let InitPlan::Write(t) = m
            .prepare_init_producer_id(60_000, exhausted, None, T0)
            .unwrap()
        else {
            panic!()
        };
        assert_eq!((t.producer_id, t.producer_epoch), (2000, 0));
    }

    #[test]
    fn an_abandoned_transaction_times_out_and_is_fenced() {
        let mut m = initialised();
        let t = m
            .prepare_add_partitions(1000, 0, &set(&[tp("a", 0)]), T0)
            .unwrap()
            .unwrap();
        write(&mut m, t);
        assert!(!m.is_timed_out(T0 + 60_000));
        assert!(m.is_timed_out(T0 + 60_001));
        let t = m.prepare_fence_and_abort(T0 + 60_001).unwrap();
        assert!(!m.is_timed_out(T0 + 60_002), "pending: not picked twice");
        write(&mut m, t);
        assert_eq!((m.state, m.producer_epoch), (TxnState::PrepareAbort, 1));
        assert_eq!(m.prepare_end_txn(1000, 0, true, T0), Err(E::ProducerFenced));
    }

    #[test]
    fn only_idle_ids_without_a_transaction_expire() {
        const WEEK: i64 = 604_800_000;
        let empty = initialised(); // last update T0
        let mut ongoing = initialised();
        ongoing.transactional_id = "ongoing".into();
        let t = ongoing
            .prepare_add_partitions(1000, 0, &set(&[tp("a", 0)]), T0)
            .unwrap()
            .unwrap();
        write(&mut ongoing, t);
        let mut committed = ongoing.clone();
        committed.transactional_id = "committed".into();
        let t = committed
            .prepare_end_txn(1000, 0, true, T0)
            .unwrap()
            .unwrap();
        write(&mut committed, t);
        let mut prepared = committed.clone();
        prepared.transactional_id = "prepared".into();
        let t = committed.prepare_complete(T0).unwrap();
        write(&mut committed, t);
        let mut aborted = ongoing.clone();
        aborted.transactional_id = "aborted".into();
        let t = aborted
            .prepare_end_txn(1000, 0, false, T0)
            .unwrap()
            .unwrap();
        write(&mut aborted, t);
        let t = aborted.prepare_complete(T0 + 5).unwrap();
        write(&mut aborted, t);
        let all = [&empty, &ongoing, &committed, &prepared, &aborted];
        // Idle exactly the expiration: Empty, CompleteCommit expire; CompleteAbort (last
        // updated 5 ms later) not yet; Ongoing and PrepareCommit never.
        assert_eq!(
            expired_ids(all, T0 + WEEK, WEEK),
            vec!["committed".to_string(), "tx".to_string()]
        );
        assert!(expired_ids(all, T0 + WEEK - 1, WEEK).is_empty());
        assert_eq!(
            expired_ids(all, T0 + 10 * WEEK, WEEK),
            vec!["aborted".to_string(), "committed".into(), "tx".into()]
        );
        // An id with a write pending is left alone (Kafka: pendingState must be empty).
        let mut busy = initialised();
        let _pending = busy.prepare_init_producer_id(60_000, None, None, T0 + WEEK);
        assert!(!busy.should_expire(T0 + WEEK, WEEK));
        // Preparing Dead keeps the timestamps and marks the id pending (not picked twice).
        let mut dead = initialised();
        let t = dead.prepare_dead().unwrap();
        assert_eq!(
            (t.state, t.last_update_timestamp_ms, t.producer_epoch),
            (TxnState::Dead, T0, 0)
        );
        assert!(!dead.should_expire(T0 + WEEK, WEEK));
        // An open transaction cannot die.
        assert_eq!(ongoing.prepare_dead(), Err(E::UnknownServerError));
    }

    #[test]
    fn loading_a_stored_value_restores_the_state() {
        let mut m = initialised();
        let t = m
            .prepare_add_partitions(1000, 0, &set(&[tp("a", 0), tp("a", 3), tp("b", 1)]), T0)
            .unwrap()
            .unwrap();
        write(&mut m, t);
        let t = m.prepare_end_txn(1000, 0, false, T0 + 1).unwrap().unwrap();
        let t = write(&mut m, t);
        let bytes = t.to_log_value().encode_v0();
        let value = TxnLogValue::decode(bytes).unwrap();
        let loaded = TxnMetadata::from_log("tx", &value);
        assert_eq!(loaded.state, TxnState::PrepareAbort);
        assert_eq!(loaded.partitions, m.partitions);
        assert_eq!((loaded.producer_id, loaded.producer_epoch), (1000, 0));
        assert_eq!(loaded.start_timestamp_ms, T0);
        assert_eq!(loaded.last_producer_epoch, NO_PRODUCER_EPOCH);
        // A loaded PrepareAbort is completed by the coordinator.
        let mut loaded = loaded;
        assert_eq!(
            loaded.prepare_complete(T0 + 2).map(|t| t.state),
            Some(TxnState::CompleteAbort)
        );
    }

    #[test]
    fn state_ids_and_names_are_kafkas() {
        for id in 0..8 {
            assert_eq!(TxnState::from_id(id).map(TxnState::id), Some(id));
        }
        assert_eq!(TxnState::from_id(8), None);
        assert_eq!(TxnState::PrepareEpochFence.name(), "PrepareEpochFence");
        assert_eq!(TxnState::from_id(4), Some(TxnState::CompleteCommit));
        assert_eq!(TxnState::from_name("Ongoing"), Some(TxnState::Ongoing));
        assert_eq!(TxnState::from_name("ongoing"), None);
        assert_eq!(TxnState::from_name("Running"), None);
    }
}
