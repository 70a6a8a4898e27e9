//! Sparse offset (`.index`) and time (`.timeindex`) indexes of one segment.
//!
//! File formats are Kafka's: offset index entries are `relative offset u32 BE, position
//! u32 BE` (8 bytes); time index entries are `timestamp i64 BE, relative offset u32 BE`
//! (12 bytes). Entries are kept in memory as well (the files are small and this avoids
//! mmap, which would need `unsafe`); the files are written with positioned writes and are
//! never preallocated, so their length is always a whole number of entries.
//!
//! Lookups never touch the file, so an index holds a descriptor only while it is written:
//! the file is opened on the first write and [`OffsetIndex::release`] closes it (a rolled
//! segment's indexes cost no descriptor, see `segment_files`).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use super::error::{IoContext, Result};

const OFFSET_ENTRY: usize = 8;
const TIME_ENTRY: usize = 12;

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

/// Maps offsets to file positions of the batch holding them (sparse: one entry every
/// `index.interval.bytes`). Entry offsets are batch *last* offsets, as in Kafka.
#[derive(Debug)]
pub(crate) struct OffsetIndex {
    file: LazyFile,
    base_offset: i64,
    /// (relative offset, position), strictly increasing in both.
    entries: Vec<(u32, u32)>,
}

impl OffsetIndex {
    /// Opens (creating if missing) the index file and loads its entries. Returns
    /// `Ok((index, false))` when the file content is not a valid index, with the index emptied,
    /// so the caller rebuilds it from the log.
    pub(crate) fn open(path: &Path, base_offset: i64) -> Result<(Self, bool)> {
        let bytes = read_all(&open_rw(path)?, path)?;
        let mut idx = OffsetIndex {
            file: LazyFile {
                path: path.to_path_buf(),
                file: None,
            },
            base_offset,
            entries: Vec::with_capacity(bytes.len() / OFFSET_ENTRY),
        };
        let mut valid = bytes.len() % OFFSET_ENTRY == 0;
        if valid {
            for chunk in bytes.chunks_exact(OFFSET_ENTRY) {
                let rel = u32::from_be_bytes([chunk[0], chunk[1], chunk[2], chunk[3]]);
                let pos = u32::from_be_bytes([chunk[4], chunk[5], chunk[6], chunk[7]]);
                if let Some(&(lr, lp)) = idx.entries.last() {
                    if rel <= lr || pos <= lp {
                        valid = false;
                        break;
                    }
                }
                idx.entries.push((rel, pos));
            }
        }
        if !valid {
            idx.reset()?;
        }
        Ok((idx, valid))
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Last entry as (absolute offset, position).
    pub(crate) fn last(&self) -> Option<(i64, u64)> {
        self.entries
            .last()
            .map(|&(r, p)| (self.base_offset + i64::from(r), u64::from(p)))
    }

    /// Whether `max_bytes` (`segment.index.bytes`) worth of entries exist; the segment must roll.
    pub(crate) fn is_full(&self, max_bytes: u64) -> bool {
        (self.entries.len() as u64 + 1) * OFFSET_ENTRY as u64 > max_bytes.max(OFFSET_ENTRY as u64)
    }

    /// Adds an entry. Offsets/positions not beyond the last entry are ignored, because the
    /// lookup relies on strict monotonicity.
    pub(crate) fn append(&mut self, offset: i64, position: u64) -> Result<()> {
        let rel = offset - self.base_offset;
        if !(0..=i64::from(u32::MAX)).contains(&rel) || position > u64::from(u32::MAX) {
            return Ok(());
        }
        let (rel, pos) = (rel as u32, position as u32);
        if let Some(&(lr, lp)) = self.entries.last() {
            if rel <= lr || pos <= lp {
                return Ok(());
            }
        }
        let mut buf = [0u8; OFFSET_ENTRY];
        buf[..4].copy_from_slice(&rel.to_be_bytes());
        buf[4..].copy_from_slice(&pos.to_be_bytes());
        self.file
            .get()?
            .write_all_at(&buf, (self.entries.len() * OFFSET_ENTRY) as u64)
            .ctx("writing", &self.file.path)?;
        self.entries.push((rel, pos));
        Ok(())
    }

    /// Greatest entry with offset <= `target`, as (offset, position); the segment start if none.
    pub(crate) fn lookup(&self, target: i64) -> (i64, u64) {
        let rel = target - self.base_offset;
        if rel < 0 {
            return (self.base_offset, 0);
        }
        let rel = rel.min(i64::from(u32::MAX)) as u32;
        let n = self.entries.partition_point(|&(r, _)| r <= rel);
        if n == 0 {
            (self.base_offset, 0)
        } else {
            let (r, p) = self.entries[n - 1];
            (self.base_offset + i64::from(r), u64::from(p))
        }
    }

    /// Greatest indexed batch position <= `position` (a batch boundary), if any. Entries
    /// are sorted by position too, so this is a binary search.
    pub(crate) fn floor_position(&self, position: u64) -> Option<u64> {
        let n = self
            .entries
            .partition_point(|&(_, p)| u64::from(p) <= position);
        (n > 0).then(|| u64::from(self.entries[n - 1].1))
    }

    /// Offset of the first entry whose position is >= `position`, if any (Kafka's
    /// `fetchUpperBoundOffset`).
    pub(crate) fn first_at_or_after_position(&self, position: u64) -> Option<i64> {
        let n = self
            .entries
            .partition_point(|&(_, p)| u64::from(p) < position);
        self.entries
            .get(n)
            .map(|&(r, _)| self.base_offset + i64::from(r))
    }

    /// Drops entries pointing at or beyond `position` (the log was truncated there).
    pub(crate) fn truncate_to_position(&mut self, position: u64) -> Result<()> {
        let keep = self
            .entries
            .partition_point(|&(_, p)| u64::from(p) < position);
        self.truncate_entries(keep)
    }

    /// Keeps only the first `n` entries (rollback of a failed append).
    pub(crate) fn truncate_entries(&mut self, n: usize) -> Result<()> {
        if n < self.entries.len() {
            self.entries.truncate(n);
        }
        self.file
            .get()?
            .set_len((self.entries.len() * OFFSET_ENTRY) as u64)
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
}

/// Maps timestamps to offsets: each entry says "up to this offset, the largest timestamp
/// seen is this". Timestamps strictly increase between entries.
#[derive(Debug)]
pub(crate) struct TimeIndex {
    file: LazyFile,
    base_offset: i64,
    /// (timestamp, relative offset).
    entries: Vec<(i64, u32)>,
}

impl TimeIndex {
    /// Opens (creating if missing) and loads the time index; `false` means the content was
    /// invalid and has been discarded so the caller rebuilds it.
    pub(crate) fn open(path: &Path, base_offset: i64) -> Result<(Self, bool)> {
        let bytes = read_all(&open_rw(path)?, path)?;
        let mut idx = TimeIndex {
            file: LazyFile {
                path: path.to_path_buf(),
                file: None,
            },
            base_offset,
            entries: Vec::with_capacity(bytes.len() / TIME_ENTRY),
        };
        let mut valid = bytes.len() % TIME_ENTRY == 0;
        if valid {
            for chunk in bytes.chunks_exact(TIME_ENTRY) {
                let mut ts = [0u8; 8];
                ts.copy_from_slice(&chunk[..8]);
                let ts = i64::from_be_bytes(ts);
                let rel = u32::from_be_bytes([chunk[8], chunk[9], chunk[10], chunk[11]]);
                if let Some(&(lt, lr)) = idx.entries.last() {
                    if ts <= lt || rel < lr {
                        valid = false;
                        break;
                    }
                }
                idx.entries.push((ts, rel));
            }
        }
        if !valid {
            idx.reset()?;
        }
        Ok((idx, valid))
    }

    /// Last entry as (timestamp, absolute offset).
    pub(crate) fn last(&self) -> Option<(i64, i64)> {
        self.entries
            .last()
            .map(|&(t, r)| (t, self.base_offset + i64::from(r)))
    }

    /// Whether the index reached `segment.index.bytes`.
    pub(crate) fn is_full(&self, max_bytes: u64) -> bool {
        (self.entries.len() as u64 + 1) * TIME_ENTRY as u64 > max_bytes.max(TIME_ENTRY as u64)
    }

    /// Adds `(timestamp, offset)` only if `timestamp` is larger than the last entry's, keeping
    /// the index monotonic (Kafka's `maybeAppend`).
    pub(crate) fn maybe_append(&mut self, timestamp: i64, offset: i64) -> Result<()> {
        let rel = offset - self.base_offset;
        if !(0..=i64::from(u32::MAX)).contains(&rel) {
            return Ok(());
        }
        let rel = rel as u32;
        if let Some(&(lt, lr)) = self.entries.last() {
            if timestamp <= lt || rel < lr {
                return Ok(());
            }
        }
        let mut buf = [0u8; TIME_ENTRY];
        buf[..8].copy_from_slice(&timestamp.to_be_bytes());
        buf[8..].copy_from_slice(&rel.to_be_bytes());
        self.file
            .get()?
            .write_all_at(&buf, (self.entries.len() * TIME_ENTRY) as u64)
            .ctx("writing", &self.file.path)?;
        self.entries.push((timestamp, rel));
        Ok(())
    }

    /// Offset to start a timestamp search from: the entry with the greatest timestamp strictly
    /// below `target` (every batch up to that offset is too old), else the segment start.
    pub(crate) fn lookup_before(&self, target: i64) -> i64 {
        let n = self.entries.partition_point(|&(t, _)| t < target);
        if n == 0 {
            self.base_offset
        } else {
            self.base_offset + i64::from(self.entries[n - 1].1)
        }
    }

    /// Drops entries whose offset is `>= offset` (the log was truncated there).
    pub(crate) fn truncate_to_offset(&mut self, offset: i64) -> Result<()> {
        let rel = offset - self.base_offset;
        let keep = if rel <= 0 {
            0
        } else {
            self.entries.partition_point(|&(_, r)| i64::from(r) < rel)
        };
        self.truncate_entries(keep)
    }

    /// Keeps only the first `n` entries.
    pub(crate) fn truncate_entries(&mut self, n: usize) -> Result<()> {
        if n < self.entries.len() {
            self.entries.truncate(n);
        }
        self.file
            .get()?
            .set_len((self.entries.len() * TIME_ENTRY) as u64)
            .ctx("truncating", &self.file.path)
    }

    /// Number of entries.
    pub(crate) fn len(&self) -> usize {
        self.entries.len()
    }

    /// Removes every entry.
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

    /// File path.
    pub(crate) fn path(&self) -> &Path {
        &self.file.path
    }

    /// Renames the file (an open handle stays valid).
    pub(crate) fn rename_to(&mut self, new_path: &Path) -> Result<()> {
        self.file.rename_to(new_path)
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
}
