//! Open handles of segment `.log` files: the active segment keeps its own, the others share a
//! broker-wide bounded cache.
//!
//! A partition with many rolled segments must not cost one descriptor per segment, or a
//! broker hosting many partitions runs out of them (issue 15). So a rolled (inactive) segment
//! opens its `.log` on first use and leaves the handle in [`SegmentFileCache`], a
//! least-recently-used set of at most `oxbow.max.segment.cache.slots` handles; when it is
//! full the least recently used handle is dropped. The active segment of each partition,
//! written by every append, holds its handle outside the cache ("pinned").
//!
//! Handles are `Arc<File>`: a fetch response that was handed a region of a segment keeps the
//! file open until it has been sent, so evicting a handle (or deleting the segment) only
//! drops the cache's reference and never breaks a send in flight.
//!
//! The cache is one per process, like the open files limit it protects; the broker sizes it
//! at start-up ([`SegmentFileCache::set_capacity`], see `crate::fd_budget`).

use std::fs::{File, OpenOptions};
use std::io;
use std::num::NonZeroUsize;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use lru::LruCache;

/// Capacity of the cache until the broker sets it (a log opened outside a broker, tests).
pub const DEFAULT_SEGMENT_CACHE_SLOTS: usize = 256;

/// Identifies one segment's `.log` in the cache for the segment's lifetime (a renamed file
/// keeps its id, so the cleaner's renames do not orphan a cached handle).
type SegmentId = u64;

/// The broker-wide LRU of open `.log` handles of inactive segments.
#[derive(Debug)]
pub struct SegmentFileCache {
    handles: Mutex<LruCache<SegmentId, Arc<File>>>,
    /// Files opened because their handle was not cached (diagnostics and tests).
    opens: AtomicU64,
}

/// The process's segment file cache.
pub fn segment_file_cache() -> &'static SegmentFileCache {
    static CACHE: OnceLock<SegmentFileCache> = OnceLock::new();
    CACHE.get_or_init(|| SegmentFileCache {
        handles: Mutex::new(LruCache::new(slots(DEFAULT_SEGMENT_CACHE_SLOTS))),
        opens: AtomicU64::new(0),
    })
}

fn slots(n: usize) -> NonZeroUsize {
    NonZeroUsize::new(n).unwrap_or(NonZeroUsize::MIN)
}

fn next_id() -> SegmentId {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    NEXT.fetch_add(1, Ordering::Relaxed)
}

impl SegmentFileCache {
    fn lock(&self) -> MutexGuard<'_, LruCache<SegmentId, Arc<File>>> {
        // A panic while holding the lock cannot leave the LRU half-updated in a way that
        // matters: at worst a handle is missing and gets reopened.
        self.handles
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Sets how many handles the cache keeps (at least one); the least recently used ones
    /// beyond it are closed now (or once their in-flight sends finish).
    pub fn set_capacity(&self, slots_wanted: usize) {
        let evicted: Vec<_> = {
            let mut cache = self.lock();
            let cap = slots(slots_wanted);
            let mut evicted = Vec::new();
            while cache.len() > cap.get() {
                evicted.extend(cache.pop_lru());
            }
            cache.resize(cap);
            evicted
        };
        drop(evicted);
    }

    /// How many handles the cache keeps at most.
    pub fn capacity(&self) -> usize {
        self.lock().cap().get()
    }

    /// How many handles the cache holds now.
    pub fn len(&self) -> usize {
        self.lock().len()
    }

    /// Whether the cache holds no handle.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// How many `.log` files were opened because their handle was not cached, since start.
    pub fn opens(&self) -> u64 {
        self.opens.load(Ordering::Relaxed)
    }

    fn get(&self, id: SegmentId) -> Option<Arc<File>> {
        self.lock().get(&id).cloned()
    }

    fn take(&self, id: SegmentId) -> Option<Arc<File>> {
        self.lock().pop(&id)
    }

    fn insert(&self, id: SegmentId, file: Arc<File>) {
        // Closing the evicted descriptor is a syscall: not under the lock.
        let evicted = self.lock().push(id, file);
        drop(evicted);
    }
}

/// Opens an existing `.log` for reading and writing (recovery truncates inactive segments,
/// the cleaner sets their mtime).
fn open_existing(path: &Path) -> io::Result<File> {
    segment_file_cache().opens.fetch_add(1, Ordering::Relaxed);
    OpenOptions::new().read(true).write(true).open(path)
}

/// The `.log` file of one segment: pinned (held open by the segment) while it is the active
/// segment, otherwise opened on demand through the [`segment_file_cache`].
#[derive(Debug)]
pub(crate) struct SegmentFiles {
    id: SegmentId,
    path: PathBuf,
    pinned: Option<Arc<File>>,
}

impl SegmentFiles {
    /// Creates (or truncates, with `truncate`) the file and pins it: a new segment is the
    /// one being written.
    pub(crate) fn create(path: PathBuf, truncate: bool) -> io::Result<SegmentFiles> {
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(truncate)
            .open(&path)?;
        Ok(SegmentFiles {
            id: next_id(),
            path,
            pinned: Some(Arc::new(file)),
        })
    }

    /// An existing file, not opened until first used.
    pub(crate) fn lazy(path: PathBuf) -> SegmentFiles {
        SegmentFiles {
            id: next_id(),
            path,
            pinned: None,
        }
    }

    /// A handle on the `.log`: the pinned one, the cached one, or a newly opened one that
    /// the cache keeps (possibly closing the least recently used other one).
    pub(crate) fn log(&self) -> io::Result<Arc<File>> {
        if let Some(f) = &self.pinned {
            return Ok(f.clone());
        }
        let cache = segment_file_cache();
        if let Some(f) = cache.get(self.id) {
            return Ok(f);
        }
        let f = Arc::new(open_existing(&self.path)?);
        cache.insert(self.id, f.clone());
        Ok(f)
    }

    /// Keeps the handle open outside the cache (the segment became the one appended to).
    pub(crate) fn pin(&mut self) -> io::Result<()> {
        if self.pinned.is_none() {
            let f = match segment_file_cache().take(self.id) {
                Some(f) => f,
                None => Arc::new(open_existing(&self.path)?),
            };
            self.pinned = Some(f);
        }
        Ok(())
    }

    /// Hands the pinned handle to the cache (the segment was rolled): it stays open while
    /// recently used, as consumers often read a just-rolled segment.
    pub(crate) fn unpin(&mut self) {
        if let Some(f) = self.pinned.take() {
            segment_file_cache().insert(self.id, f);
        }
    }

    /// Whether the handle is held outside the cache.
    pub(crate) fn is_pinned(&self) -> bool {
        self.pinned.is_some()
    }

    /// The file's path.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }

    /// Records a rename of the file (an open handle stays valid).
    pub(crate) fn set_path(&mut self, path: PathBuf) {
        self.path = path;
    }

    /// A reader for use without the segment (and its partition's lock), see [`LogReader`].
    pub(crate) fn reader(&self) -> LogReader {
        LogReader {
            id: self.id,
            path: self.path.clone(),
            pinned: self.pinned.clone(),
        }
    }
}

impl Drop for SegmentFiles {
    fn drop(&mut self) {
        // A deleted or replaced segment's handle must not keep a cache slot (nor its
        // descriptor) until it happens to be evicted.
        drop(segment_file_cache().take(self.id));
    }
}

/// Reads a segment's `.log` without its partition's lock (the log cleaner): uses the cached
/// handle if there is one, else opens the file for the time of one read and does not cache
/// it, so a cleaning pass over many segments holds one descriptor at a time. If the segment
/// was deleted meanwhile, opening fails and the cleaner abandons the pass.
#[derive(Debug, Clone)]
pub(crate) struct LogReader {
    id: SegmentId,
    path: PathBuf,
    pinned: Option<Arc<File>>,
}

impl LogReader {
    /// A handle to read through; drop it when done.
    pub(crate) fn open(&self) -> io::Result<Arc<File>> {
        if let Some(f) = &self.pinned {
            return Ok(f.clone());
        }
        if let Some(f) = segment_file_cache().get(self.id) {
            return Ok(f);
        }
        segment_file_cache().opens.fetch_add(1, Ordering::Relaxed);
        Ok(Arc::new(File::open(&self.path)?))
    }

    /// The file's path when the reader was made.
    pub(crate) fn path(&self) -> &Path {
        &self.path
    }
}
