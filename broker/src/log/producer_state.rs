//! Idempotent and transactional producer state: per producer id, the epoch and the last few
//! batches' sequence ranges, used to drop retried batches (duplicates) and to reject gaps;
//! the open transaction's first offset and the coordinator epoch of the last marker. The
//! partition's open transactions (by first offset) give its last stable offset.
//!
//! The partition log snapshots this state at every segment roll and at a clean close
//! (`producer_snapshot`, Kafka's `<offset>.snapshot` files) and, on open, loads the latest
//! usable snapshot and replays only the batches after it (headers, plus the marker of each
//! control batch). Producers outlive the batches that taught us about them (retention,
//! compaction): they are forgotten only after `producer.id.expiration.ms` of silence.

use std::collections::{BTreeMap, HashMap, VecDeque};

use super::batch::{AppendOrigin, BatchHeader};
use super::error::{Error, Result};
use super::producer_snapshot::SnapshotEntry;
use super::txn::{CompletedTxn, ControlRecordType, EndTxnMarker};

/// Kafka keeps the metadata of this many recent batches per producer; the Java producer
/// never has more than `max.in.flight.requests.per.connection` (<= 5) outstanding.
pub(crate) const NUM_BATCHES_TO_RETAIN: usize = 5;

/// Where one appended batch of a producer landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct BatchMetadata {
    pub(crate) first_seq: i32,
    pub(crate) last_seq: i32,
    pub(crate) first_offset: i64,
    pub(crate) last_offset: i64,
    /// Max timestamp of the batch as stored (the append time for LogAppendTime topics).
    pub(crate) timestamp: i64,
}

/// What is known about one producer id.
#[derive(Debug, Clone, Default)]
pub(crate) struct ProducerEntry {
    pub(crate) epoch: i16,
    pub(crate) batches: VecDeque<BatchMetadata>,
    /// First offset of the producer's open transaction on this partition, if any.
    pub(crate) current_txn_first_offset: Option<i64>,
    /// Coordinator epoch of the last marker written for the producer (-1 before any).
    pub(crate) coordinator_epoch: i32,
    /// Timestamp of the producer's last batch or marker (Kafka's `lastTimestamp`), -1
    /// before any.
    pub(crate) last_timestamp: i64,
}

/// One producer of a partition as DescribeProducers reports it (Kafka's
/// `UnifiedLog.activeProducers`): every producer id the partition's producer state holds,
/// idempotent or transactional.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ActiveProducer {
    /// The producer id.
    pub producer_id: i64,
    /// Its latest epoch on this partition.
    pub producer_epoch: i16,
    /// The last sequence number it wrote in that epoch, -1 if none is retained.
    pub last_sequence: i32,
    /// Timestamp of its last batch or marker, -1 if none.
    pub last_timestamp: i64,
    /// Coordinator epoch of the last marker written for it, -1 before any.
    pub coordinator_epoch: i32,
    /// First offset of its open transaction on this partition, -1 if none is open.
    pub current_txn_start_offset: i64,
}

impl ProducerEntry {
    fn last_seq(&self) -> i32 {
        self.batches.back().map_or(-1, |b| b.last_seq)
    }

    fn last_offset(&self) -> i64 {
        self.batches.back().map_or(-1, |b| b.last_offset)
    }

    fn push(&mut self, epoch: i16, meta: BatchMetadata) {
        if epoch != self.epoch {
            // A new epoch starts a new sequence space; old batches can't be duplicates.
            self.batches.clear();
            self.epoch = epoch;
        }
        self.last_timestamp = meta.timestamp;
        self.batches.push_back(meta);
        while self.batches.len() > NUM_BATCHES_TO_RETAIN {
            self.batches.pop_front();
        }
    }
}

/// Outcome of checking a batch against producer state.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum SeqCheck {
    /// Append it.
    Append,
    /// A retry of an already-appended batch: answer with the original metadata.
    Duplicate(BatchMetadata),
}

/// Producer state of one partition.
#[derive(Debug, Default, Clone)]
pub(crate) struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
    /// Open transactions: first offset -> producer id (Kafka's `ongoingTxns`).
    ongoing: BTreeMap<i64, i64>,
    /// Ended transactions whose marker is not yet below the high watermark: first offset ->
    /// marker offset (Kafka's `unreplicatedTxns`). They hold the last stable offset back
    /// until the marker is replicated.
    unreplicated: BTreeMap<i64, i64>,
}

/// Tentative updates for one append request; committed only if the write succeeds.
#[derive(Debug, Default)]
pub(crate) struct PendingUpdates {
    updated: HashMap<i64, ProducerEntry>,
}

fn new_entry(epoch: i16) -> ProducerEntry {
    ProducerEntry {
        epoch,
        batches: VecDeque::new(),
        current_txn_first_offset: None,
        coordinator_epoch: -1,
        last_timestamp: -1,
    }
}

fn in_sequence(last_seq: i32, next_seq: i32) -> bool {
    i64::from(next_seq) == i64::from(last_seq) + 1 || (next_seq == 0 && last_seq == i32::MAX)
}

impl ProducerStateManager {
    /// Number of producers tracked (for diagnostics).
    /// Every tracked producer (id, entry).
    pub(crate) fn iter(&self) -> impl Iterator<Item = (&i64, &ProducerEntry)> {
        self.producers.iter()
    }

    pub(crate) fn len(&self) -> usize {
        self.producers.len()
    }

    /// Every producer as DescribeProducers reports it, by producer id.
    pub(crate) fn active(&self) -> Vec<ActiveProducer> {
        let mut active: Vec<ActiveProducer> = self
            .producers
            .iter()
            .map(|(&producer_id, e)| ActiveProducer {
                producer_id,
                producer_epoch: e.epoch,
                last_sequence: e.last_seq(),
                last_timestamp: e.last_timestamp,
                coordinator_epoch: e.coordinator_epoch,
                current_txn_start_offset: e.current_txn_first_offset.unwrap_or(-1),
            })
            .collect();
        active.sort_by_key(|p| p.producer_id);
        active
    }

    /// Entry of a producer, if known.
    #[cfg(test)]
    pub(crate) fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Checks a client batch (with producer id >= 0) against the committed state plus the
    /// request's earlier batches, following Kafka's rules: duplicate of a cached batch ->
    /// `Duplicate`; older epoch -> INVALID_PRODUCER_EPOCH; newer epoch must start at
    /// sequence 0; same epoch must continue the sequence; unknown producers may start anywhere.
    #[cfg(test)]
    pub(crate) fn check(&self, pending: &PendingUpdates, h: &BatchHeader) -> Result<SeqCheck> {
        self.check_from(pending, h, AppendOrigin::Client)
    }

    /// [`Self::check`] for a batch from `origin`: a coordinator's batch is checked for its
    /// epoch only (Kafka's `ProducerAppendInfo` checks sequences of client appends only),
    /// and is never a duplicate (it has no sequence).
    pub(crate) fn check_from(
        &self,
        pending: &PendingUpdates,
        h: &BatchHeader,
        origin: AppendOrigin,
    ) -> Result<SeqCheck> {
        let pid = h.producer_id;
        let client = origin == AppendOrigin::Client;
        if let Some(committed) = self.producers.get(&pid).filter(|_| client) {
            if committed.epoch == h.producer_epoch {
                let last_seq = h.last_sequence();
                if let Some(dup) = committed
                    .batches
                    .iter()
                    .find(|b| b.first_seq == h.base_sequence && b.last_seq == last_seq)
                {
                    return Ok(SeqCheck::Duplicate(*dup));
                }
            }
        }
        let current = pending
            .updated
            .get(&pid)
            .or_else(|| self.producers.get(&pid));
        let Some(current) = current else {
            return Ok(SeqCheck::Append);
        };
        if h.producer_epoch < current.epoch {
            return Err(Error::InvalidProducerEpoch {
                producer_id: pid,
                received: h.producer_epoch,
                current: current.epoch,
            });
        }
        // Sequences are the client's; a coordinator's batch has none.
        if client && h.producer_epoch != current.epoch {
            if h.base_sequence != 0 && current.epoch != -1 {
                return Err(Error::OutOfOrderSequence {
                    producer_id: pid,
                    epoch: h.producer_epoch,
                    expected: 0,
                    received: h.base_sequence,
                });
            }
        } else if client && current.epoch != -1 && !in_sequence(current.last_seq(), h.base_sequence)
        {
            let expected = if current.last_seq() == i32::MAX {
                0
            } else {
                current.last_seq() + 1
            };
            return Err(Error::OutOfOrderSequence {
                producer_id: pid,
                epoch: h.producer_epoch,
                expected,
                received: h.base_sequence,
            });
        }
        if current.current_txn_first_offset.is_some() && !h.is_transactional() {
            // Kafka's ProducerAppendInfo: a producer with an open transaction may only
            // write transactional batches until its marker.
            return Err(Error::InvalidTxnState {
                producer_id: pid,
                offset: current.last_offset() + 1,
            });
        }
        Ok(SeqCheck::Append)
    }

    /// Records an accepted batch in `pending` (after [`Self::check`]).
    pub(crate) fn stage(
        &self,
        pending: &mut PendingUpdates,
        h: &BatchHeader,
        first_offset: i64,
        timestamp: i64,
    ) {
        let entry = pending.updated.entry(h.producer_id).or_insert_with(|| {
            self.producers
                .get(&h.producer_id)
                .cloned()
                .unwrap_or_else(|| new_entry(h.producer_epoch))
        });
        entry.push(h.producer_epoch, meta_of(h, first_offset, timestamp));
        if h.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(first_offset);
        }
    }

    /// Makes a request's staged updates permanent (its write succeeded).
    pub(crate) fn commit(&mut self, pending: PendingUpdates) {
        for (pid, entry) in pending.updated {
            if let Some(first) = entry.current_txn_first_offset {
                self.ongoing.insert(first, pid);
            }
            self.producers.insert(pid, entry);
        }
    }

    /// Checks a marker the coordinator asks this leader to write (Kafka's
    /// `appendEndTxnMarker` for a coordinator append): an older producer epoch is
    /// INVALID_PRODUCER_EPOCH, an older coordinator epoch TRANSACTION_COORDINATOR_FENCED.
    pub(crate) fn check_marker(
        &self,
        producer_id: i64,
        producer_epoch: i16,
        marker: &EndTxnMarker,
    ) -> Result<()> {
        let Some(entry) = self.producers.get(&producer_id) else {
            return Ok(());
        };
        if producer_epoch < entry.epoch {
            return Err(Error::InvalidProducerEpoch {
                producer_id,
                received: producer_epoch,
                current: entry.epoch,
            });
        }
        if marker.coordinator_epoch < entry.coordinator_epoch {
            return Err(Error::TransactionCoordinatorFenced {
                producer_id,
                received: marker.coordinator_epoch,
                current: entry.coordinator_epoch,
            });
        }
        Ok(())
    }

    /// Replays a stored batch (load, rebuild, replication): no validation, as the log is
    /// the truth. `marker` is the decoded marker of a control batch. Returns the transaction
    /// a marker ended, which the caller records in the transaction index if aborted and
    /// then passes to [`Self::complete_txn`].
    pub(crate) fn replay(
        &mut self,
        h: &BatchHeader,
        marker: Option<EndTxnMarker>,
    ) -> Option<CompletedTxn> {
        if !h.has_producer_id() {
            return None;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| new_entry(h.producer_epoch));
        if h.is_control() {
            let marker = marker?;
            let completed = entry.current_txn_first_offset.map(|first| CompletedTxn {
                producer_id: h.producer_id,
                first_offset: first,
                last_offset: h.base_offset,
                aborted: marker.control_type == ControlRecordType::Abort,
            });
            if entry.epoch != h.producer_epoch {
                entry.batches.clear();
                entry.epoch = h.producer_epoch;
            }
            entry.coordinator_epoch = marker.coordinator_epoch;
            entry.last_timestamp = h.max_timestamp;
            entry.current_txn_first_offset = None;
            return completed;
        }
        entry.push(h.producer_epoch, meta_of(h, h.base_offset, h.max_timestamp));
        if h.is_transactional() && entry.current_txn_first_offset.is_none() {
            entry.current_txn_first_offset = Some(h.base_offset);
            self.ongoing.insert(h.base_offset, h.producer_id);
        }
        None
    }

    /// The last stable offset to record with an aborted transaction in the index: the first
    /// offset of the earliest other open transaction, else just past the marker (Kafka's
    /// `lastStableOffset(CompletedTxn)`). Call before [`Self::complete_txn`].
    pub(crate) fn last_stable_offset_after(&self, completed: &CompletedTxn) -> i64 {
        self.ongoing
            .iter()
            .find(|(_, &pid)| pid != completed.producer_id)
            .map_or(completed.last_offset + 1, |(&first, _)| first)
    }

    /// Moves an ended transaction from the open ones to those awaiting replication of
    /// their marker.
    pub(crate) fn complete_txn(&mut self, completed: &CompletedTxn) {
        self.ongoing.remove(&completed.first_offset);
        self.unreplicated
            .insert(completed.first_offset, completed.last_offset);
    }

    /// Forgets ended transactions whose marker is below the high watermark (Kafka's
    /// `onHighWatermarkUpdated`): they no longer hold the last stable offset back.
    pub(crate) fn on_high_watermark(&mut self, high_watermark: i64) {
        self.unreplicated
            .retain(|_, &mut last| last >= high_watermark);
    }

    /// The first offset not yet stable, given the high watermark: the earliest first
    /// offset of an open transaction or of an ended one whose marker is not below the high
    /// watermark (Kafka's `firstUnstableOffset`).
    pub(crate) fn first_unstable_offset(&self, high_watermark: i64) -> Option<i64> {
        let open = self.ongoing.keys().next().copied();
        let unreplicated = self
            .unreplicated
            .iter()
            .find(|(_, &last)| last >= high_watermark)
            .map(|(&first, _)| first);
        match (open, unreplicated) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Forgets producers whose last batch or marker timestamp is older than `max_age_ms` before
    /// `now_ms` (Kafka's `producer.id.expiration.ms`), bounding memory for short-lived
    /// producers. Returns how many were removed.
    pub(crate) fn expire(&mut self, now_ms: i64, max_age_ms: i64) -> usize {
        let before = self.producers.len();
        // A producer with an open transaction never expires (Kafka's `isProducerExpired`):
        // its marker is still to come.
        // Idle since its last batch or marker (Kafka's `lastTimestamp`): a producer whose
        // transactions the coordinator keeps ending is not idle.
        self.producers.retain(|_, e| {
            e.current_txn_first_offset.is_some()
                || now_ms.saturating_sub(e.last_timestamp) <= max_age_ms
        });
        before - self.producers.len()
    }

    /// The state as Kafka's snapshot holds it: per producer its epoch, last batch, last
    /// timestamp, coordinator epoch and open transaction, by producer id. Ended transactions
    /// awaiting replication of their marker are not kept (Kafka does not keep them either):
    /// a snapshot is loaded with the high watermark at or above them.
    pub(crate) fn snapshot(&self) -> Vec<SnapshotEntry> {
        let mut out: Vec<SnapshotEntry> = self
            .producers
            .iter()
            .map(|(&producer_id, e)| {
                let last = e.batches.back();
                SnapshotEntry {
                    producer_id,
                    epoch: e.epoch,
                    last_sequence: last.map_or(-1, |b| b.last_seq),
                    last_offset: last.map_or(-1, |b| b.last_offset),
                    // A batch's offsets and sequences span the same count.
                    offset_delta: last.map_or(0, |b| (b.last_offset - b.first_offset) as i32),
                    timestamp: e.last_timestamp,
                    coordinator_epoch: e.coordinator_epoch,
                    current_txn_first_offset: e.current_txn_first_offset.unwrap_or(-1),
                }
            })
            .collect();
        out.sort_by_key(|e| e.producer_id);
        out
    }

    /// Replaces the state with a snapshot's (Kafka's `loadFromSnapshot`): each producer with
    /// its last batch only, open transactions back among the ongoing ones. Call
    /// [`Self::expire`] afterwards to drop producers idle too long.
    pub(crate) fn load_snapshot(&mut self, entries: &[SnapshotEntry]) {
        self.clear();
        for e in entries {
            let mut entry = new_entry(e.epoch);
            entry.coordinator_epoch = e.coordinator_epoch;
            entry.last_timestamp = e.timestamp;
            if e.last_offset >= 0 {
                entry.batches.push_back(BatchMetadata {
                    first_seq: decrement_sequence(e.last_sequence, e.offset_delta),
                    last_seq: e.last_sequence,
                    first_offset: e.last_offset - i64::from(e.offset_delta),
                    last_offset: e.last_offset,
                    timestamp: e.timestamp,
                });
            }
            if e.current_txn_first_offset >= 0 {
                entry.current_txn_first_offset = Some(e.current_txn_first_offset);
                self.ongoing
                    .insert(e.current_txn_first_offset, e.producer_id);
            }
            self.producers.insert(e.producer_id, entry);
        }
    }

    /// Forgets everything (before a rebuild).
    pub(crate) fn clear(&mut self) {
        self.producers.clear();
        self.ongoing.clear();
        self.unreplicated.clear();
    }

    /// Forgets ended transactions whose marker is below the new log start offset (Kafka's
    /// `onLogStartOffsetIncremented`). Producers stay even when their batches are gone:
    /// since KIP-360 Kafka keeps them until `producer.id.expiration.ms`, so a producer
    /// whose data retention deleted still has its retries recognised and its epoch fenced.
    pub(crate) fn on_log_start_offset(&mut self, log_start_offset: i64) {
        self.unreplicated
            .retain(|_, &mut last| last >= log_start_offset);
    }
}

/// The sequence `decrement` before `sequence`, wrapping below 0 to `i32::MAX` as producer
/// sequences do (Kafka's `DefaultRecordBatch.decrementSequence`).
fn decrement_sequence(sequence: i32, decrement: i32) -> i32 {
    if sequence < decrement {
        (i64::from(i32::MAX) - i64::from(decrement - sequence) + 1) as i32
    } else {
        sequence - decrement
    }
}

fn meta_of(h: &BatchHeader, first_offset: i64, timestamp: i64) -> BatchMetadata {
    BatchMetadata {
        first_seq: h.base_sequence,
        last_seq: h.last_sequence(),
        first_offset,
        last_offset: first_offset + i64::from(h.last_offset_delta),
        timestamp,
    }
}

#[cfg(test)]
mod tests {
    use super::super::batch::test_util::idempotent;
    use super::*;

    fn hdr(count: usize, pid: i64, epoch: i16, seq: i32) -> BatchHeader {
        BatchHeader::parse(&idempotent(count, pid, epoch, seq)).unwrap()
    }

    fn append(m: &mut ProducerStateManager, h: &BatchHeader, off: i64) -> Result<SeqCheck> {
        let mut p = PendingUpdates::default();
        let r = m.check(&p, h)?;
        if r == SeqCheck::Append {
            m.stage(&mut p, h, off, 0);
            m.commit(p);
        }
        Ok(r)
    }

    #[test]
    fn sequence_rules() {
        let mut m = ProducerStateManager::default();
        // Unknown producer: any sequence accepted.
        assert_eq!(
            append(&mut m, &hdr(2, 7, 0, 10), 0).unwrap(),
            SeqCheck::Append
        );
        // Next in sequence.
        assert_eq!(
            append(&mut m, &hdr(3, 7, 0, 12), 2).unwrap(),
            SeqCheck::Append
        );
        // Retry of the first batch -> duplicate with original offsets.
        match append(&mut m, &hdr(2, 7, 0, 10), 99).unwrap() {
            SeqCheck::Duplicate(b) => assert_eq!((b.first_offset, b.last_offset), (0, 1)),
            other => panic!("{other:?}"),
        }
        // Gap.
        assert_eq!(
            append(&mut m, &hdr(1, 7, 0, 20), 5)
                .unwrap_err()
                .kafka_code(),
            45
        );
        // Old epoch.
        assert_eq!(
            append(&mut m, &hdr(1, 7, -1, 15), 5)
                .unwrap_err()
                .kafka_code(),
            47
        );
        // New epoch must start at 0.
        assert_eq!(
            append(&mut m, &hdr(1, 7, 1, 15), 5)
                .unwrap_err()
                .kafka_code(),
            45
        );
        assert_eq!(
            append(&mut m, &hdr(1, 7, 1, 0), 5).unwrap(),
            SeqCheck::Append
        );
        assert_eq!(m.get(7).unwrap().batches.len(), 1);
    }

    #[test]
    fn expires_idle_producers() {
        let mut m = ProducerStateManager::default();
        let mut p = PendingUpdates::default();
        m.stage(&mut p, &hdr(1, 1, 0, 0), 0, 1_000);
        m.stage(&mut p, &hdr(1, 2, 0, 0), 1, 5_000);
        m.commit(p);
        assert_eq!(m.expire(6_000, 2_000), 1);
        assert!(m.get(1).is_none() && m.get(2).is_some());
    }

    #[test]
    fn a_snapshot_keeps_the_last_batch_epochs_and_open_transactions() {
        let mut m = ProducerStateManager::default();
        for i in 0..3 {
            append(&mut m, &hdr(4, 7, 2, i * 4), i64::from(i) * 4).unwrap();
        }
        // Sequences wrapping past i32::MAX: the first sequence is recovered across the wrap.
        append(&mut m, &hdr(3, 8, 0, i32::MAX - 1), 20).unwrap();
        let mut p = PendingUpdates::default();
        let h = BatchHeader::parse(&crate::log::test_util::transactional(2, 9, 1, 0)).unwrap();
        m.stage(&mut p, &h, 30, 5);
        m.commit(p);
        let entries = m.snapshot();
        assert_eq!(
            entries.iter().map(|e| e.producer_id).collect::<Vec<_>>(),
            vec![7, 8, 9]
        );

        let mut loaded = ProducerStateManager::default();
        loaded.load_snapshot(&entries);
        assert_eq!(loaded.active(), m.active());
        assert_eq!(loaded.snapshot(), entries);
        // The last batch is still a duplicate with its original offsets; the open
        // transaction still holds the last stable offset.
        match append(&mut loaded, &hdr(4, 7, 2, 8), 99).unwrap() {
            SeqCheck::Duplicate(b) => assert_eq!((b.first_offset, b.last_offset), (8, 11)),
            other => panic!("{other:?}"),
        }
        assert!(matches!(
            append(&mut loaded, &hdr(3, 8, 0, i32::MAX - 1), 99).unwrap(),
            SeqCheck::Duplicate(_)
        ));
        assert_eq!(loaded.first_unstable_offset(100), Some(30));
        // The epoch is still fenced and the sequence continues.
        assert_eq!(
            append(&mut loaded, &hdr(1, 7, 1, 12), 40)
                .unwrap_err()
                .kafka_code(),
            47
        );
        assert_eq!(
            append(&mut loaded, &hdr(1, 7, 2, 12), 40).unwrap(),
            SeqCheck::Append
        );
    }

    #[test]
    fn producers_outlive_their_deleted_batches() {
        let mut m = ProducerStateManager::default();
        append(&mut m, &hdr(2, 7, 0, 0), 0).unwrap();
        m.on_log_start_offset(1_000);
        assert!(matches!(
            append(&mut m, &hdr(2, 7, 0, 0), 1_000).unwrap(),
            SeqCheck::Duplicate(_)
        ));
    }

    #[test]
    fn keeps_only_five_batches() {
        let mut m = ProducerStateManager::default();
        for i in 0..7 {
            append(&mut m, &hdr(1, 1, 0, i), i64::from(i)).unwrap();
        }
        assert_eq!(m.get(1).unwrap().batches.len(), NUM_BATCHES_TO_RETAIN);
        // Batch 0 fell out of the cache: a retry of it is now out of order, as in Kafka.
        assert_eq!(
            append(&mut m, &hdr(1, 1, 0, 0), 9)
                .unwrap_err()
                .kafka_code(),
            45
        );
        assert!(matches!(
            append(&mut m, &hdr(1, 1, 0, 3), 9).unwrap(),
            SeqCheck::Duplicate(_)
        ));
    }
}
