//! Idempotent producer state: per producer id, the epoch and the last few batches'
//! sequence ranges, used to drop retried batches (duplicates) and to reject gaps.
//!
//! The state is rebuilt on open from batch headers, so it needs no file of its own.

use std::collections::{HashMap, VecDeque};

use super::batch::BatchHeader;
use super::error::{Error, Result};

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
#[derive(Debug, Default)]
pub(crate) struct ProducerStateManager {
    producers: HashMap<i64, ProducerEntry>,
}

/// Tentative updates for one append request; committed only if the write succeeds.
#[derive(Debug, Default)]
pub(crate) struct PendingUpdates {
    updated: HashMap<i64, ProducerEntry>,
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

    /// Entry of a producer, if known.
    #[cfg(test)]
    pub(crate) fn get(&self, producer_id: i64) -> Option<&ProducerEntry> {
        self.producers.get(&producer_id)
    }

    /// Checks a client batch (with producer id >= 0) against the committed state plus the
    /// request's earlier batches, following Kafka's rules: duplicate of a cached batch ->
    /// `Duplicate`; older epoch -> INVALID_PRODUCER_EPOCH; newer epoch must start at
    /// sequence 0; same epoch must continue the sequence; unknown producers may start anywhere.
    pub(crate) fn check(&self, pending: &PendingUpdates, h: &BatchHeader) -> Result<SeqCheck> {
        let pid = h.producer_id;
        if let Some(committed) = self.producers.get(&pid) {
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
        if h.producer_epoch != current.epoch {
            if h.base_sequence != 0 && current.epoch != -1 {
                return Err(Error::OutOfOrderSequence {
                    producer_id: pid,
                    epoch: h.producer_epoch,
                    expected: 0,
                    received: h.base_sequence,
                });
            }
        } else if current.epoch != -1 && !in_sequence(current.last_seq(), h.base_sequence) {
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
                .unwrap_or(ProducerEntry {
                    epoch: h.producer_epoch,
                    batches: VecDeque::new(),
                })
        });
        entry.push(h.producer_epoch, meta_of(h, first_offset, timestamp));
    }

    /// Makes a request's staged updates permanent (its write succeeded).
    pub(crate) fn commit(&mut self, pending: PendingUpdates) {
        self.producers.extend(pending.updated);
    }

    /// Replays a stored batch during load/rebuild: no validation, as the log is the truth.
    pub(crate) fn replay(&mut self, h: &BatchHeader) {
        if !h.has_producer_id() || h.is_control() {
            return;
        }
        let entry = self
            .producers
            .entry(h.producer_id)
            .or_insert_with(|| ProducerEntry {
                epoch: h.producer_epoch,
                batches: VecDeque::new(),
            });
        entry.push(h.producer_epoch, meta_of(h, h.base_offset, h.max_timestamp));
    }

    /// Folds in the state built from a later part of the log (one segment during load).
    pub(crate) fn merge(&mut self, later: ProducerStateManager) {
        for (pid, entry) in later.producers {
            match self.producers.get_mut(&pid) {
                None => {
                    self.producers.insert(pid, entry);
                }
                Some(existing) => {
                    for b in entry.batches {
                        existing.push(entry.epoch, b);
                    }
                }
            }
        }
    }

    /// Forgets producers whose newest batch timestamp is older than `max_age_ms` before
    /// `now_ms` (Kafka's `producer.id.expiration.ms`), bounding memory for short-lived
    /// producers. Returns how many were removed.
    pub(crate) fn expire(&mut self, now_ms: i64, max_age_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, e| {
            e.batches
                .back()
                .is_none_or(|b| now_ms.saturating_sub(b.timestamp) <= max_age_ms)
        });
        before - self.producers.len()
    }

    /// Forgets everything (before a rebuild).
    pub(crate) fn clear(&mut self) {
        self.producers.clear();
    }

    /// Drops producers whose last batch is below the new log start offset: their data is
    /// gone, so like Kafka we stop deduplicating against it.
    pub(crate) fn on_log_start_offset(&mut self, log_start_offset: i64) {
        self.producers
            .retain(|_, e| e.last_offset() >= log_start_offset);
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
