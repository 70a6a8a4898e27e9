//! Sparse offset (`.index`) and time (`.timeindex`) indexes of one segment.
//!
//! File formats are Kafka's: offset index entries are `relative offset u32 BE, position
//! u32 BE` (8 bytes); time index entries are `timestamp i64 BE, relative offset u32 BE`
//! (12 bytes). Entries are kept in memory as well (the files are small and this avoids
//! mmap, which would need `unsafe`); the files are written with positioned writes and are
//! never preallocated, so their length is always a whole number of entries.
//!
//! Lookups never touch the file, so an index holds a descriptor only while it is written:
//! the file is opened on the first write and [`Index::release`] closes it (a rolled
//! segment's indexes cost no descriptor, see `segment_files`).
//!
//! Both indexes are one [`Index`] (Kafka's `AbstractIndex`) over their entry type
//! ([`OffsetPosition`], [`TimestampOffset`]): opening, validating, writing, truncating and
//! syncing the file are the same; only the lookups differ.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::{IoContext, Result};

/// Size of the largest entry (a [`TimestampOffset`]), for a stack buffer of any entry.
const MAX_ENTRY: usize = 12;

fn open_rw(path: &Path) -> Result<File> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(path)
        .ctx("opening index", path)
}

fn read_all(file: &File, path: &Path) -> Result<Vec<u8>> {
    let len = file.metadata().ctx("reading metadata of", path)?.len() as usize;
    let mut buf = vec![0u8; len];
    file.read_exact_at(&mut buf, 0).ctx("reading", path)?;
    Ok(buf)
}

/// An index file opened only while it is written (see the module docs).
#[derive(Debug)]
struct LazyFile {
    path: PathBuf,
    file: Option<File>,
}

impl LazyFile {
    /// The open handle, opening (creating if missing) the file if needed.
    fn get(&mut self) -> Result<&File> {
        match &mut self.file {
            Some(f) => Ok(f),
            slot => Ok(slot.insert(open_rw(&self.path)?)),
        }
    }

    /// fsyncs through the open handle, or through one opened for the purpose.
    fn sync(&self) -> Result<()> {
        match &self.file {
            Some(f) => f.sync_data().ctx("syncing", &self.path),
            None => open_rw(&self.path)?.sync_data().ctx("syncing", &self.path),
        }
    }

    /// A handle to fsync without the owner's lock: a duplicate of the open one, or a new one.
    fn sync_handle(&self) -> Result<File> {
        match &self.file {
            Some(f) => f.try_clone().ctx("duplicating handle of", &self.path),
            None => open_rw(&self.path),
        }
    }

    fn rename_to(&mut self, new_path: &Path) -> Result<()> {
        std::fs::rename(&self.path, new_path).ctx("renaming", &self.path)?;
        self.path = new_path.to_path_buf();
        Ok(())
    }
}

/// One entry of an index file, in Kafka's on-disk layout.
pub(crate) trait IndexEntry: Copy + std::fmt::Debug {
    /// Bytes of one entry in the file (at most [`MAX_ENTRY`]).
    const SIZE: usize;
    /// The entry stored in `bytes` (exactly [`Self::SIZE`] of them).
    fn decode(bytes: &[u8]) -> Self;
    /// Stores the entry in `bytes` (exactly [`Self::SIZE`] of them).
    fn encode(&self, bytes: &mut [u8]);
    /// Whether the entry may follow `last` in the index: the order lookups rely on. An
    /// entry that may not is ignored when appended, and makes a loaded file invalid.
    fn may_follow(&self, last: &Self) -> bool;
}

/// An offset index entry (Kafka's `OffsetPosition`): the file position of the batch whose
/// last offset is the segment's base offset plus `relative_offset`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OffsetPosition {
    relative_offset: u32,
    position: u32,
}

impl IndexEntry for OffsetPosition {
    const SIZE: usize = 8;

    fn decode(b: &[u8]) -> Self {
        OffsetPosition {
            relative_offset: u32::from_be_bytes([b[0], b[1], b[2], b[3]]),
            position: u32::from_be_bytes([b[4], b[5], b[6], b[7]]),
        }
    }

    fn encode(&self, bytes: &mut [u8]) {
        bytes[..4].copy_from_slice(&self.relative_offset.to_be_bytes());
        bytes[4..].copy_from_slice(&self.position.to_be_bytes());
    }

    /// Strictly increasing in both offset and position.
    fn may_follow(&self, last: &Self) -> bool {
        self.relative_offset > last.relative_offset && self.position > last.position
    }
}

/// A time index entry (Kafka's `TimestampOffset`): up to the segment's base offset plus
/// `relative_offset`, the largest timestamp seen is `timestamp`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct TimestampOffset {
    timestamp: i64,
    relative_offset: u32,
}

impl IndexEntry for TimestampOffset {
    const SIZE: usize = 12;

    fn decode(b: &[u8]) -> Self {
        TimestampOffset {
            timestamp: i64::from_be_bytes([b[0], b[1], b[2], b[3], b[4], b[5], b[6], b[7]]),
            relative_offset: u32::from_be_bytes([b[8], b[9], b[10], b[11]]),
        }
    }

    fn encode(&self, bytes: &mut [u8]) {
        bytes[..8].copy_from_slice(&self.timestamp.to_be_bytes());
        bytes[8..].copy_from_slice(&self.relative_offset.to_be_bytes());
    }

    /// Timestamps strictly increase; offsets do not go back.
    fn may_follow(&self, last: &Self) -> bool {
        self.timestamp > last.timestamp && self.relative_offset >= last.relative_offset
    }
}

/// An index of one segment (Kafka's `AbstractIndex`): its entries in memory, in the order
/// [`IndexEntry::may_follow`] gives, and the file they are written to.
#[derive(Debug)]
pub(crate) struct Index<E> {
    file: LazyFile,
    base_offset: i64,
    entries: Vec<E>,
}

/// Maps offsets to file positions of the batch holding them (sparse: one entry every
/// `index.interval.bytes`). Entry offsets are batch *last* offsets, as in Kafka.
pub(crate) type OffsetIndex = Index<OffsetPosition>;

/// Maps timestamps to offsets: each entry says "up to this offset, the largest timestamp
/// seen is this". Timestamps strictly increase between entries.
pub(crate) type TimeIndex = Index<TimestampOffset>;

impl<E: IndexEntry> Index<E> {
    /// Opens (creating if missing) the index file and loads its entries. Returns
    /// `Ok((index, false))` when the file content is not a valid index (not a whole number
    /// of entries, or entries out of order), with the index emptied, so the caller rebuilds
    /// it from the log.
    pub(crate) fn open(path: &Path, base_offset: i64) -> Result<(Self, bool)> {
        let bytes = read_all(&open_rw(path)?, path)?;
        let mut idx = Index {
            file: LazyFile {
                path: path.to_path_buf(),
                file: None,
            },
            base_offset,
            entries: Vec::with_capacity(bytes.len() / E::SIZE),
        };
        let mut valid = bytes.len() % E::SIZE == 0;
        if valid {
            for chunk in bytes.chunks_exact(E::SIZE) {
                let entry = E::decode(chunk);
                if idx
                    .entries
                    .last()
                    .is_some_and(|last| !entry.may_follow(last))
                {
                    valid = false;
                    break;
                }
                idx.entries.push(entry);
            }
        }
        if !valid {
            idx.reset()?;
        }
        Ok((idx, valid))
    }

    /// Writes `entry` at the end of the file and keeps it, unless it may not follow the
    /// last entry: then it is ignored (`Ok`), because the lookups rely on the order.
    fn push(&mut self, entry: E) -> Result<()> {
        if self
            .entries
            .last()
            .is_some_and(|last| !entry.may_follow(last))
        {
            return Ok(());
        }
        let mut buf = [0u8; MAX_ENTRY];
        entry.encode(&mut buf[..E::SIZE]);
        self.file
            .get()?
            .write_all_at(&buf[..E::SIZE], (self.entries.len() * E::SIZE) as u64)
            .ctx("writing", &self.file.path)?;
        self.entries.push(entry);
        Ok(())
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Whether `max_bytes` (`segment.index.bytes`) worth of entries exist; the segment must roll.
    pub(crate) fn is_full(&self, max_bytes: u64) -> bool {
        (self.entries.len() as u64 + 1) * E::SIZE as u64 > max_bytes.max(E::SIZE as u64)
    }

    /// Keeps only the first `n` entries (rollback of a failed append, or a truncated log).
    pub(crate) fn truncate_entries(&mut self, n: usize) -> Result<()> {
        if n < self.entries.len() {
            self.entries.truncate(n);
        }
        self.file
            .get()?
            .set_len((self.entries.len() * E::SIZE) as u64)
            .ctx("truncating", &self.file.path)
    }

    /// Removes every entry (before a rebuild).
    pub(crate) fn reset(&mut self) -> Result<()> {
        self.truncate_entries(0)
    }

    /// fsyncs the file.
    pub(crate) fn flush(&self) -> Result<()> {
        self.file.sync()
    }

    /// A handle on the file, to fsync it without the owner's lock.
    pub(crate) fn sync_handle(&self) -> Result<File> {
        self.file.sync_handle()
    }

    /// Closes the file until the next write (entries stay in memory).
    pub(crate) fn release(&mut self) {
        self.file.file = None;
    }

    /// Whether the file is open now.
    #[cfg(test)]
    pub(crate) fn is_open(&self) -> bool {
        self.file.file.is_some()
    }

    /// File path (for renames on deletion).
    pub(crate) fn path(&self) -> &Path {
        &self.file.path
    }

    /// Renames the file (an open handle stays valid).
    pub(crate) fn rename_to(&mut self, new_path: &Path) -> Result<()> {
        self.file.rename_to(new_path)
    }

    /// The absolute offset of `relative_offset`.
    fn absolute(&self, relative_offset: u32) -> i64 {
        self.base_offset + i64::from(relative_offset)
    }
}

impl Index<OffsetPosition> {
    /// Last entry as (absolute offset, position).
    pub(crate) fn last(&self) -> Option<(i64, u64)> {
        self.entries
            .last()
            .map(|e| (self.absolute(e.relative_offset), u64::from(e.position)))
    }

    /// Adds an entry. Offsets/positions not beyond the last entry are ignored, because the
    /// lookup relies on strict monotonicity.
    pub(crate) fn append(&mut self, offset: i64, position: u64) -> Result<()> {
        let rel = offset - self.base_offset;
        if !(0..=i64::from(u32::MAX)).contains(&rel) || position > u64::from(u32::MAX) {
            return Ok(());
        }
        self.push(OffsetPosition {
            relative_offset: rel as u32,
            position: position as u32,
        })
    }

    /// Greatest entry with offset <= `target`, as (offset, position); the segment start if none.
    pub(crate) fn lookup(&self, target: i64) -> (i64, u64) {
        let rel = target - self.base_offset;
        if rel < 0 {
            return (self.base_offset, 0);
        }
        let rel = rel.min(i64::from(u32::MAX)) as u32;
        let n = self.entries.partition_point(|e| e.relative_offset <= rel);
        if n == 0 {
            (self.base_offset, 0)
        } else {
            let e = self.entries[n - 1];
            (self.absolute(e.relative_offset), u64::from(e.position))
        }
    }

    /// Greatest indexed batch position <= `position` (a batch boundary), if any. Entries
    /// are sorted by position too, so this is a binary search.
    pub(crate) fn floor_position(&self, position: u64) -> Option<u64> {
        let n = self
            .entries
            .partition_point(|e| u64::from(e.position) <= position);
        (n > 0).then(|| u64::from(self.entries[n - 1].position))
    }

    /// Offset of the first entry whose position is >= `position`, if any (Kafka's
    /// `fetchUpperBoundOffset`).
    pub(crate) fn first_at_or_after_position(&self, position: u64) -> Option<i64> {
        let n = self
            .entries
            .partition_point(|e| u64::from(e.position) < position);
        self.entries
            .get(n)
            .map(|e| self.absolute(e.relative_offset))
    }

    /// Drops entries pointing at or beyond `position` (the log was truncated there).
    pub(crate) fn truncate_to_position(&mut self, position: u64) -> Result<()> {
        let keep = self
            .entries
            .partition_point(|e| u64::from(e.position) < position);
        self.truncate_entries(keep)
    }
}

impl Index<TimestampOffset> {
    /// Last entry as (timestamp, absolute offset).
    pub(crate) fn last(&self) -> Option<(i64, i64)> {
        self.entries
            .last()
            .map(|e| (e.timestamp, self.absolute(e.relative_offset)))
    }

    /// Adds `(timestamp, offset)` only if `timestamp` is larger than the last entry's, keeping
    /// the index monotonic (Kafka's `maybeAppend`).
    pub(crate) fn maybe_append(&mut self, timestamp: i64, offset: i64) -> Result<()> {
        let rel = offset - self.base_offset;
        if !(0..=i64::from(u32::MAX)).contains(&rel) {
            return Ok(());
        }
        self.push(TimestampOffset {
            timestamp,
            relative_offset: rel as u32,
        })
    }

    /// Offset to start a timestamp search from: the entry with the greatest timestamp strictly
    /// below `target` (every batch up to that offset is too old), else the segment start.
    pub(crate) fn lookup_before(&self, target: i64) -> i64 {
        let n = self.entries.partition_point(|e| e.timestamp < target);
        if n == 0 {
            self.base_offset
        } else {
            self.absolute(self.entries[n - 1].relative_offset)
        }
    }

    /// Drops entries whose offset is `>= offset` (the log was truncated there).
    pub(crate) fn truncate_to_offset(&mut self, offset: i64) -> Result<()> {
        let rel = offset - self.base_offset;
        let keep = if rel <= 0 {
            0
        } else {
            self.entries
                .partition_point(|e| i64::from(e.relative_offset) < rel)
        };
        self.truncate_entries(keep)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offset_index_lookup_and_reload() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("00000000000000000100.index");
        let (mut idx, ok) = OffsetIndex::open(&p, 100).unwrap();
        assert!(ok);
        idx.append(110, 4000).unwrap();
        idx.append(120, 8000).unwrap();
        idx.append(115, 9000).unwrap(); // not increasing: ignored
        assert_eq!(idx.lookup(99), (100, 0));
        assert_eq!(idx.lookup(109), (100, 0));
        assert_eq!(idx.lookup(110), (110, 4000));
        assert_eq!(idx.lookup(119), (110, 4000));
        assert_eq!(idx.lookup(500), (120, 8000));
        drop(idx);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 16);
        let (idx, ok) = OffsetIndex::open(&p, 100).unwrap();
        assert!(ok);
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.last(), Some((120, 8000)));
    }

    #[test]
    fn time_index_is_monotonic() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("00000000000000000000.timeindex");
        let (mut idx, _) = TimeIndex::open(&p, 0).unwrap();
        idx.maybe_append(100, 5).unwrap();
        idx.maybe_append(90, 6).unwrap(); // smaller timestamp: ignored
        idx.maybe_append(200, 9).unwrap();
        assert_eq!(idx.len(), 2);
        assert_eq!(idx.lookup_before(100), 0);
        assert_eq!(idx.lookup_before(101), 5);
        assert_eq!(idx.lookup_before(1000), 9);
        let bytes = std::fs::read(&p).unwrap();
        assert_eq!(bytes.len(), 24);
        assert_eq!(&bytes[..8], &100i64.to_be_bytes());
        assert_eq!(&bytes[8..12], &5u32.to_be_bytes());
    }

    #[test]
    fn corrupt_index_is_reported_for_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("00000000000000000000.index");
        std::fs::write(&p, [1u8, 2, 3]).unwrap();
        let (idx, ok) = OffsetIndex::open(&p, 0).unwrap();
        assert!(!ok);
        assert_eq!(idx.len(), 0);
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
    }

    #[test]
    fn time_index_with_a_timestamp_going_back_is_reported_for_rebuild() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("00000000000000000000.timeindex");
        let entry = |ts: i64, rel: u32| [&ts.to_be_bytes()[..], &rel.to_be_bytes()].concat();
        std::fs::write(&p, [entry(100, 5), entry(200, 9)].concat()).unwrap();
        let (idx, ok) = TimeIndex::open(&p, 0).unwrap();
        assert!(ok);
        assert_eq!(idx.last(), Some((200, 9)));
        std::fs::write(&p, [entry(200, 5), entry(100, 9)].concat()).unwrap();
        let (idx, ok) = TimeIndex::open(&p, 0).unwrap();
        assert!(!ok);
        assert_eq!((idx.len(), idx.lookup_before(1000)), (0, 0));
        assert_eq!(std::fs::metadata(&p).unwrap().len(), 0);
    }
}
