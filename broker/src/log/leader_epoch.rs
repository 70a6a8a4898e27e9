//! The leader epoch cache: which leader epoch started at which offset, persisted in the
//! partition's `leader-epoch-checkpoint`. It answers OffsetForLeaderEpoch, which followers
//! and consumers use to detect divergent logs after a leader change.

use std::path::{Path, PathBuf};

use super::checkpoint;
use super::error::Result;

/// File name inside the partition directory.
pub const LEADER_EPOCH_CHECKPOINT: &str = "leader-epoch-checkpoint";

/// Kafka's UNDEFINED_EPOCH.
pub const UNDEFINED_EPOCH: i32 = -1;
/// Kafka's UNDEFINED_EPOCH_OFFSET.
pub const UNDEFINED_EPOCH_OFFSET: i64 = -1;

/// Ordered `(epoch, start offset)` entries: epochs strictly increase, start offsets never
/// decrease (an epoch with no records shares its start with the next one).
#[derive(Debug)]
pub(crate) struct LeaderEpochCache {
    path: PathBuf,
    entries: Vec<(i32, i64)>,
}

impl LeaderEpochCache {
    /// Loads the checkpoint in `dir` (missing file: empty cache).
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let path = dir.join(LEADER_EPOCH_CHECKPOINT);
        let mut entries = checkpoint::read_epochs(&path)?;
        // Defend against a hand-edited file: keep only a monotonic prefix-consistent list.
        entries.sort_by_key(|&(e, _)| e);
        entries.dedup_by_key(|&mut (e, _)| e);
        Ok(LeaderEpochCache { path, entries })
    }

    /// The entries, oldest first.
    pub(crate) fn entries(&self) -> &[(i32, i64)] {
        &self.entries
    }

    /// Latest epoch, if any.
    pub(crate) fn latest_epoch(&self) -> Option<i32> {
        self.entries.last().map(|&(e, _)| e)
    }

    /// The entries after assigning `epoch` at `start_offset`, or `None` if nothing changes.
    /// Separate from [`Self::commit`] so the append path can persist before writing data.
    pub(crate) fn with_assigned(&self, epoch: i32, start_offset: i64) -> Option<Vec<(i32, i64)>> {
        if epoch < 0 {
            return None;
        }
        match self.entries.last() {
            Some(&(e, _)) if epoch <= e => None,
            _ => {
                let mut v = self.entries.clone();
                // Entries whose start is beyond the new start are stale (log was truncated).
                v.retain(|&(_, o)| o <= start_offset);
                v.push((epoch, start_offset));
                Some(v)
            }
        }
    }

    /// Persists `entries` then adopts them.
    pub(crate) fn commit(&mut self, entries: Vec<(i32, i64)>) -> Result<()> {
        checkpoint::write_epochs(&self.path, &entries)?;
        self.entries = entries;
        Ok(())
    }

    /// Assigns in memory only (used while scanning batches during load; the caller flushes).
    /// Returns whether anything changed.
    pub(crate) fn assign_in_memory(&mut self, epoch: i32, start_offset: i64) -> bool {
        match self.with_assigned(epoch, start_offset) {
            Some(v) => {
                self.entries = v;
                true
            }
            None => false,
        }
    }

    /// Writes the current entries to the checkpoint file.
    pub(crate) fn flush(&self) -> Result<()> {
        checkpoint::write_epochs(&self.path, &self.entries)
    }

    /// Removes entries starting at or after `end_offset` (log truncated to `end_offset`).
    /// Returns whether anything changed (caller flushes).
    pub(crate) fn truncate_from_end(&mut self, end_offset: i64) -> bool {
        let before = self.entries.len();
        self.entries.retain(|&(_, o)| o < end_offset);
        before != self.entries.len()
    }

    /// The log start moved to `start_offset`: drop entries wholly before it, keeping the
    /// newest of those with its start moved up to `start_offset` (Kafka's truncateFromStart).
    /// Returns whether anything changed.
    pub(crate) fn truncate_from_start(&mut self, start_offset: i64) -> bool {
        let n_before = self.entries.partition_point(|&(_, o)| o <= start_offset);
        if n_before == 0 {
            return false;
        }
        let (epoch, old_start) = self.entries[n_before - 1];
        if n_before == 1 && old_start == start_offset {
            return false;
        }
        self.entries.drain(..n_before);
        self.entries.insert(0, (epoch, start_offset));
        true
    }

    /// OffsetForLeaderEpoch with Kafka's rules: the latest epoch ends at the log end offset;
    /// an older epoch ends where the next known epoch starts; the reported epoch is the
    /// largest known epoch <= `requested` (or `requested` itself if it predates all entries);
    /// unknown/too-new epochs give `(UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET)`.
    pub(crate) fn end_offset_for(&self, requested: i32, log_end_offset: i64) -> (i32, i64) {
        if requested == UNDEFINED_EPOCH {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        }
        if self.latest_epoch() == Some(requested) {
            return (requested, log_end_offset);
        }
        let higher = self.entries.iter().find(|&&(e, _)| e > requested);
        let Some(&(_, higher_start)) = higher else {
            return (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET);
        };
        match self.entries.iter().rev().find(|&&(e, _)| e <= requested) {
            None => (requested, higher_start),
            Some(&(floor_epoch, _)) => (floor_epoch, higher_start),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cache(entries: &[(i32, i64)]) -> (tempfile::TempDir, LeaderEpochCache) {
        let dir = tempfile::tempdir().unwrap();
        let mut c = LeaderEpochCache::load(dir.path()).unwrap();
        c.commit(entries.to_vec()).unwrap();
        (dir, c)
    }

    #[test]
    fn end_offsets_follow_kafka_rules() {
        let (_d, c) = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert_eq!(c.end_offset_for(5, 30), (5, 30));
        assert_eq!(c.end_offset_for(3, 30), (3, 20));
        assert_eq!(c.end_offset_for(4, 30), (3, 20));
        assert_eq!(c.end_offset_for(0, 30), (0, 0));
        assert_eq!(c.end_offset_for(6, 30), (-1, -1));
        assert_eq!(c.end_offset_for(-1, 30), (-1, -1));
    }

    #[test]
    fn truncation_and_file_format() {
        let (d, mut c) = cache(&[(1, 0), (3, 10), (5, 20)]);
        assert!(c.truncate_from_start(15));
        assert_eq!(c.entries(), &[(3, 15), (5, 20)]);
        assert!(c.truncate_from_end(20));
        assert_eq!(c.entries(), &[(3, 15)]);
        c.flush().unwrap();
        assert_eq!(
            std::fs::read_to_string(d.path().join(LEADER_EPOCH_CHECKPOINT)).unwrap(),
            "0\n1\n3 15\n"
        );
        assert!(c.with_assigned(2, 30).is_none());
        assert_eq!(c.with_assigned(4, 30).unwrap(), vec![(3, 15), (4, 30)]);
    }
}
