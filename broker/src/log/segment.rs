//! One log segment: `<base offset>.log` plus its `.index` and `.timeindex`.
//!
//! The `.log` file is a plain concatenation of record batches. Writes use positioned IO at
//! the tracked size, so a failed write can be undone by truncating back to that size.
//!
//! Only the active segment keeps its files open. A rolled segment's `.log` is opened on
//! demand through the broker-wide cache of `segment_files`, and its indexes (kept in memory)
//! are opened only to be written, so a partition costs three descriptors however many
//! segments it has.

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

use super::batch::{crc_matches, BatchHeader, HEADER_SIZE, LOG_OVERHEAD};
use super::error::{Error, IoContext, Result};
use super::index::{OffsetIndex, TimeIndex};
use super::segment_files::{LogReader, SegmentFiles};
use super::txn::{self, EndTxnMarker};
use super::FileRegion;

/// Extension of segment data files.
pub(crate) const LOG_SUFFIX: &str = "log";
/// Extension of offset index files.
pub(crate) const INDEX_SUFFIX: &str = "index";
/// Extension of time index files.
pub(crate) const TIME_INDEX_SUFFIX: &str = "timeindex";

/// How much to read at once when walking batch headers (one syscall covers many small batches).
const SCAN_CHUNK: usize = 64 * 1024;

/// Read-ahead when a fetch walks a few headers from an index entry: entries are at most
/// `index.interval.bytes` (4 KiB by default) apart, so this usually takes one small read.
const LOOKUP_CHUNK: usize = 8 * 1024;

/// Kafka's file name for a segment file: base offset zero-padded to 20 digits.
pub(crate) fn file_name(base_offset: i64, suffix: &str) -> String {
    format!("{base_offset:020}.{suffix}")
}

/// Wall clock in ms; only used for segment creation times (roll fallback) and mtimes.
pub(crate) fn wall_clock_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

/// Reads batch headers sequentially from a segment file through a buffer.
struct BatchReader<'a> {
    file: &'a File,
    path: &'a Path,
    file_size: u64,
    buf: Vec<u8>,
    buf_start: u64,
    chunk: usize,
}

impl<'a> BatchReader<'a> {
    fn new(file: &'a File, path: &'a Path, file_size: u64) -> Self {
        Self::with_chunk(file, path, file_size, SCAN_CHUNK)
    }

    fn with_chunk(file: &'a File, path: &'a Path, file_size: u64, chunk: usize) -> Self {
        BatchReader {
            file,
            path,
            file_size,
            buf: Vec::new(),
            buf_start: 0,
            chunk,
        }
    }

    /// Returns bytes `[pos, pos+len)`, reading ahead by the reader's chunk size; caller
    /// ensures `pos + len <= file_size`.
    fn bytes(&mut self, pos: u64, len: usize) -> Result<&[u8]> {
        let have =
            pos >= self.buf_start && pos + len as u64 <= self.buf_start + self.buf.len() as u64;
        if !have {
            let want = (len.max(self.chunk) as u64).min(self.file_size - pos) as usize;
            self.buf.resize(want, 0);
            self.file
                .read_exact_at(&mut self.buf, pos)
                .ctx("reading", self.path)?;
            self.buf_start = pos;
        }
        let from = (pos - self.buf_start) as usize;
        Ok(&self.buf[from..from + len])
    }
}

/// Callback of [`Segment::for_each_batch`]: `(position, header, whole batch bytes)`.
pub(crate) type BatchVisitor<'a> = dyn FnMut(u64, &BatchHeader, &[u8]) -> Result<()> + 'a;

/// Why a scan stopped before the end of the file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum ScanStop {
    /// Reached the end of the file exactly at a batch boundary.
    Eof,
    /// Found a torn or invalid batch at this position.
    Invalid { position: u64, reason: String },
}

/// Options of [`Segment::scan`].
#[derive(Debug, Clone, Copy)]
pub(crate) struct ScanMode {
    /// Verify each batch's CRC (reads whole batches; used for recovery).
    pub(crate) verify_crc: bool,
    /// Rebuild `.index`/`.timeindex` from scratch while scanning.
    pub(crate) rebuild_indexes: bool,
    /// `index.interval.bytes` for the rebuild.
    pub(crate) index_interval_bytes: u64,
}

/// Mutable statistics that an append changes; saved to undo a failed append.
#[derive(Debug, Clone, Copy)]
struct Stats {
    next_offset: i64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    rolling_base_timestamp: Option<i64>,
    bytes_since_last_index: u64,
}

/// One segment of a partition log. Not synchronised; owned by its `PartitionLog`.
#[derive(Debug)]
pub(crate) struct Segment {
    base_offset: i64,
    /// The `.log` file. Its handles are shared with in-flight fetch responses, which send
    /// from them after the log lock is released (an unlinked or evicted file stays readable
    /// through the handle).
    files: SegmentFiles,
    size: u64,
    offset_index: OffsetIndex,
    time_index: TimeIndex,
    stats: Stats,
    /// Wall-clock time of the first append (or of creation/load while empty/unknown).
    created_ms: i64,
    /// Test seam: the next log write stores only this many bytes, then fails with ENOSPC.
    #[cfg(test)]
    pub(crate) fail_next_write_after: Option<usize>,
}

/// Calls `f(position, header, whole batch bytes)` for every batch in the first `size` bytes
/// of a `.log` file (see [`Segment::reader`]), in order, reading through a buffer.
/// Stops at the end or at a batch that does not fit; `path` only names the file in errors.
pub(crate) fn for_each_batch_in(
    file: &File,
    path: &Path,
    size: u64,
    f: &mut BatchVisitor<'_>,
) -> Result<()> {
    let mut reader = BatchReader::new(file, path, size);
    let mut pos = 0u64;
    while pos + HEADER_SIZE as u64 <= size {
        let Some(h) = BatchHeader::parse(reader.bytes(pos, HEADER_SIZE)?) else {
            break;
        };
        if h.batch_length < (HEADER_SIZE - LOG_OVERHEAD) as i32 || pos + h.size() as u64 > size {
            return Err(Error::CorruptMessage(format!(
                "{} has an invalid batch at position {pos}",
                path.display()
            )));
        }
        f(pos, &h, reader.bytes(pos, h.size())?)?;
        pos += h.size() as u64;
    }
    Ok(())
}

impl Segment {
    fn empty_stats(base_offset: i64) -> Stats {
        Stats {
            next_offset: base_offset,
            max_timestamp: -1,
            offset_of_max_timestamp: -1,
            rolling_base_timestamp: None,
            bytes_since_last_index: 0,
        }
    }

    /// Creates a new, empty segment (all three files exist afterwards). Stale files with the
    /// same base offset are truncated: a new segment is empty by definition.
    pub(crate) fn create(dir: &Path, base_offset: i64, now_ms: i64) -> Result<Segment> {
        Self::create_with_suffix(dir, base_offset, now_ms, "")
    }

    /// [`Self::create`] with `suffix` appended to every file name (`<base>.log.cleaned`, ...);
    /// used by the log cleaner to build a segment beside the ones it replaces.
    pub(crate) fn create_with_suffix(
        dir: &Path,
        base_offset: i64,
        now_ms: i64,
        suffix: &str,
    ) -> Result<Segment> {
        let named = |ext: &str| dir.join(format!("{}{suffix}", file_name(base_offset, ext)));
        let log_path = named(LOG_SUFFIX);
        let files =
            SegmentFiles::create(log_path.clone(), true).ctx("creating segment", &log_path)?;
        let (mut offset_index, _) = OffsetIndex::open(&named(INDEX_SUFFIX), base_offset)?;
        offset_index.reset()?;
        let (mut time_index, _) = TimeIndex::open(&named(TIME_INDEX_SUFFIX), base_offset)?;
        time_index.reset()?;
        Ok(Segment {
            base_offset,
            files,
            size: 0,
            offset_index,
            time_index,
            stats: Self::empty_stats(base_offset),
            created_ms: now_ms,
            #[cfg(test)]
            fail_next_write_after: None,
        })
    }

    /// Loads an existing segment's indexes without reading the log; the `.log` is opened
    /// when first used. Statistics are unknown until [`Self::scan`] runs. The flag is false
    /// if an index file was invalid (and emptied). A missing index file also counts as
    /// invalid (Kafka rebuilds it): an empty index would otherwise be trusted and every read
    /// would scan from the segment start.
    pub(crate) fn open_existing(dir: &Path, base_offset: i64) -> Result<(Segment, bool)> {
        let log_path = dir.join(file_name(base_offset, LOG_SUFFIX));
        let size = std::fs::metadata(&log_path)
            .ctx("opening segment", &log_path)?
            .len();
        let index_path = dir.join(file_name(base_offset, INDEX_SUFFIX));
        let time_index_path = dir.join(file_name(base_offset, TIME_INDEX_SUFFIX));
        let present = size == 0 || (index_path.exists() && time_index_path.exists());
        let (mut offset_index, ok1) = OffsetIndex::open(&index_path, base_offset)?;
        let (mut time_index, ok2) = TimeIndex::open(&time_index_path, base_offset)?;
        offset_index.release();
        time_index.release();
        Ok((
            Segment {
                base_offset,
                files: SegmentFiles::lazy(log_path),
                size,
                offset_index,
                time_index,
                stats: Self::empty_stats(base_offset),
                created_ms: wall_clock_ms(),
                #[cfg(test)]
                fail_next_write_after: None,
            },
            ok1 && ok2 && present,
        ))
    }

    /// Renames the segment's three files to `<base>.<ext><new_suffix>` (handles stay
    /// valid). With `log_first` the `.log` is renamed before the indexes, else after: the
    /// cleaner renames `.cleaned` -> `.swap` indexes first and `.swap` -> final log first,
    /// so a `.log.swap` always has its index files beside it (see `PartitionLog::open`).
    pub(crate) fn rename_files(&mut self, new_suffix: &str, log_first: bool) -> Result<()> {
        let dir = self
            .log_path()
            .parent()
            .unwrap_or(Path::new("."))
            .to_path_buf();
        let named =
            |ext: &str| dir.join(format!("{}{new_suffix}", file_name(self.base_offset, ext)));
        let (log_to, index_to, time_to) = (
            named(LOG_SUFFIX),
            named(INDEX_SUFFIX),
            named(TIME_INDEX_SUFFIX),
        );
        if log_first {
            self.rename_log(log_to.clone())?;
        }
        self.offset_index.rename_to(&index_to)?;
        self.time_index.rename_to(&time_to)?;
        if !log_first {
            self.rename_log(log_to)?;
        }
        Ok(())
    }

    fn rename_log(&mut self, to: PathBuf) -> Result<()> {
        std::fs::rename(self.log_path(), &to).ctx("renaming", self.log_path())?;
        self.files.set_path(to);
        Ok(())
    }

    /// A handle on the `.log` file (see [`SegmentFiles::log`]).
    fn log(&self) -> Result<Arc<File>> {
        self.files.log().ctx("opening segment", self.log_path())
    }

    /// Closes the index files unless this is the active segment: their entries stay in
    /// memory, and a rolled segment should cost no descriptor (see `segment_files`).
    fn release_if_inactive(&mut self) {
        if !self.files.is_pinned() {
            self.offset_index.release();
            self.time_index.release();
        }
    }

    /// Whether any of the segment's files is held open by the segment itself (rather than
    /// by the broker-wide cache): true only for the active segment.
    #[cfg(test)]
    pub(crate) fn holds_open_files(&self) -> bool {
        self.files.is_pinned() || self.offset_index.is_open() || self.time_index.is_open()
    }

    /// A reader of the `.log` file, for reading the first `size` bytes of a closed segment
    /// without its partition's lock: the log cleaner reads through it while appends go on.
    /// It opens the file only while reading (see [`LogReader`]).
    pub(crate) fn reader(&self) -> LogReader {
        self.files.reader()
    }

    /// Duplicated handles on the segment's files with their paths (the `.txnindex` too when
    /// it exists): a closed segment is fsynced through them without its partition's lock
    /// (see `PartitionLog::roll`).
    pub(crate) fn sync_handles(&self) -> Result<Vec<(File, PathBuf)>> {
        let log = self
            .log()?
            .try_clone()
            .ctx("duplicating handle of", self.log_path())?;
        let mut handles = Vec::new();
        if let Some(path) = self.txn_index_path() {
            if let Ok(file) = File::open(&path) {
                handles.push((file, path));
            }
        }
        handles.extend([
            (log, self.log_path().to_path_buf()),
            (
                self.offset_index.sync_handle()?,
                self.offset_index.path().to_path_buf(),
            ),
            (
                self.time_index.sync_handle()?,
                self.time_index.path().to_path_buf(),
            ),
        ]);
        Ok(handles)
    }

    /// The `.txnindex` beside a live segment (none for a cleaner's `.cleaned`/`.swap` one).
    fn txn_index_path(&self) -> Option<PathBuf> {
        let dir = self.log_path().parent().unwrap_or(Path::new("."));
        let live_name = file_name(self.base_offset, LOG_SUFFIX);
        (self.log_path().file_name() == Some(std::ffi::OsStr::new(&live_name)))
            .then(|| txn::txn_index_path(dir, self.base_offset))
    }

    /// Modification time of the `.log` file (from its path: no need to open it).
    pub(crate) fn last_modified(&self) -> Option<SystemTime> {
        std::fs::metadata(self.log_path())
            .and_then(|m| m.modified())
            .ok()
    }

    /// Sets the `.log` file's modification time (the cleaner carries the originals' mtime
    /// over, as Kafka does, so time retention of record-less segments is unchanged).
    pub(crate) fn set_last_modified(&self, t: SystemTime) -> Result<()> {
        self.log()?
            .set_modified(t)
            .ctx("setting mtime of", self.log_path())
    }

    /// Max timestamp of the first batch (-1/None if unknown or empty): the log cleaner's
    /// "earliest dirty record" time for `max.compaction.lag.ms`.
    pub(crate) fn first_batch_timestamp(&self) -> Option<i64> {
        self.stats.rolling_base_timestamp.filter(|&t| t >= 0)
    }

    /// First offset this segment may hold.
    pub(crate) fn base_offset(&self) -> i64 {
        self.base_offset
    }

    /// Offset after the last batch (== base offset when empty).
    pub(crate) fn next_offset(&self) -> i64 {
        self.stats.next_offset
    }

    /// Bytes in the `.log` file.
    pub(crate) fn size(&self) -> u64 {
        self.size
    }

    /// Largest batch max-timestamp in the segment (-1 if none).
    pub(crate) fn max_timestamp(&self) -> i64 {
        self.stats.max_timestamp
    }

    /// Last offset of the first batch carrying [`Self::max_timestamp`].
    pub(crate) fn offset_of_max_timestamp(&self) -> i64 {
        self.stats.offset_of_max_timestamp
    }

    /// Timestamp retention compares against: the newest record time, or the file's mtime
    /// when records carry no timestamps (Kafka's `largestTimestamp`).
    pub(crate) fn largest_timestamp(&self) -> i64 {
        if self.stats.max_timestamp >= 0 {
            return self.stats.max_timestamp;
        }
        self.last_modified()
            .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
            .map_or(-1, |d| d.as_millis() as i64)
    }

    /// How long the segment has been open for roll purposes (Kafka's `timeWaitedForRoll`):
    /// measured in record time from the first batch when it has a timestamp, else wall time.
    pub(crate) fn time_waited_for_roll(&self, now_ms: i64, message_timestamp: i64) -> i64 {
        match self.stats.rolling_base_timestamp {
            Some(t) if t >= 0 => message_timestamp - t,
            _ => now_ms - self.created_ms,
        }
    }

    /// Wall-clock age of the segment's data: since its first append in this process, or
    /// since it was loaded.
    pub(crate) fn wall_clock_age(&self, now_ms: i64) -> i64 {
        now_ms - self.created_ms
    }

    /// Whether either index reached `segment.index.bytes`.
    pub(crate) fn indexes_full(&self, max_index_bytes: u64) -> bool {
        self.offset_index.is_full(max_index_bytes) || self.time_index.is_full(max_index_bytes)
    }

    /// Path of the `.log` file.
    pub(crate) fn log_path(&self) -> &Path {
        self.files.path()
    }

    fn reset_stats(&mut self) {
        self.stats = Self::empty_stats(self.base_offset);
    }

    /// Updates statistics (and, if `index_interval` is given, the indexes) for a batch stored
    /// at `position` — shared by append and rebuild so both produce identical indexes.
    fn track_batch(
        &mut self,
        h: &BatchHeader,
        position: u64,
        index_interval: Option<u64>,
    ) -> Result<()> {
        if h.max_timestamp > self.stats.max_timestamp {
            self.stats.max_timestamp = h.max_timestamp;
            self.stats.offset_of_max_timestamp = h.last_offset();
        }
        if self.stats.rolling_base_timestamp.is_none() {
            self.stats.rolling_base_timestamp = Some(h.max_timestamp);
        }
        if let Some(interval) = index_interval {
            if self.stats.bytes_since_last_index > interval {
                self.offset_index.append(h.last_offset(), position)?;
                self.time_index
                    .maybe_append(self.stats.max_timestamp, self.stats.offset_of_max_timestamp)?;
                self.stats.bytes_since_last_index = 0;
            }
        }
        self.stats.bytes_since_last_index += h.size() as u64;
        self.stats.next_offset = h.next_offset();
        Ok(())
    }

    /// Walks every batch from the start of the file, recomputing statistics, optionally
    /// verifying CRCs and rebuilding indexes, and calling `on_batch` for each valid batch.
    /// Stops at the first torn/invalid batch and reports where; does not truncate.
    pub(crate) fn scan(
        &mut self,
        mode: ScanMode,
        on_batch: &mut dyn FnMut(&BatchHeader, Option<EndTxnMarker>),
    ) -> Result<ScanStop> {
        let stop = self.scan_files(mode, on_batch);
        self.release_if_inactive();
        stop
    }

    fn scan_files(
        &mut self,
        mode: ScanMode,
        on_batch: &mut dyn FnMut(&BatchHeader, Option<EndTxnMarker>),
    ) -> Result<ScanStop> {
        self.reset_stats();
        if mode.rebuild_indexes {
            self.offset_index.reset()?;
            self.time_index.reset()?;
        }
        let file_size = self.size;
        let log = self.log()?;
        let path = self.log_path().to_path_buf();
        let mut reader = BatchReader::new(&log, &path, file_size);
        let mut pos = 0u64;
        let stop = loop {
            let remaining = file_size - pos;
            if remaining == 0 {
                break ScanStop::Eof;
            }
            let invalid = |reason: String| ScanStop::Invalid {
                position: pos,
                reason,
            };
            if remaining < HEADER_SIZE as u64 {
                break invalid(format!("{remaining} trailing bytes (torn batch header)"));
            }
            let Some(h) = BatchHeader::parse(reader.bytes(pos, HEADER_SIZE)?) else {
                break invalid("short header".into());
            };
            if h.batch_length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
                break invalid(format!("batch length {} too small", h.batch_length));
            }
            if h.size() as u64 > remaining {
                break invalid(format!(
                    "batch of {} bytes but only {remaining} remain (torn write)",
                    h.size()
                ));
            }
            if h.magic != 2 {
                break invalid(format!("magic {}", h.magic));
            }
            if h.last_offset_delta < 0
                || h.base_offset < self.stats.next_offset
                || h.last_offset() - self.base_offset > i64::from(u32::MAX)
            {
                break invalid(format!(
                    "offsets {}..={} out of order (expected >= {})",
                    h.base_offset,
                    h.last_offset(),
                    self.stats.next_offset
                ));
            }
            if mode.verify_crc && !crc_matches(&h, reader.bytes(pos, h.size())?) {
                break invalid("CRC mismatch".into());
            }
            let interval = mode.rebuild_indexes.then_some(mode.index_interval_bytes);
            self.track_batch(&h, pos, interval)?;
            let marker = if h.is_control() {
                // The marker of a control batch is needed to replay transactions; a
                // malformed one ends none (as Kafka treats an empty control batch).
                txn::parse_marker(reader.bytes(pos, h.size())?, &h).unwrap_or_else(|e| {
                    tracing::warn!(segment = %path.display(), position = pos, error = %e, "ignoring malformed control batch");
                    None
                })
            } else {
                None
            };
            on_batch(&h, marker);
            pos += h.size() as u64;
        };
        if !mode.rebuild_indexes {
            // Approximate distance to the last index entry so appends keep the spacing.
            let last_pos = self.offset_index.last().map_or(0, |(_, p)| p);
            self.stats.bytes_since_last_index = pos.saturating_sub(last_pos);
        }
        Ok(stop)
    }

    /// Cheap consistency check of trusted indexes against the scanned log (Kafka's
    /// `sanityCheck`): entries must point inside the data.
    pub(crate) fn indexes_consistent(&self) -> bool {
        let off_ok = self
            .offset_index
            .last()
            .is_none_or(|(o, p)| o < self.stats.next_offset && p < self.size);
        let time_ok = self
            .time_index
            .last()
            .is_none_or(|(t, o)| o < self.stats.next_offset && t <= self.stats.max_timestamp);
        off_ok && time_ok
    }

    /// Cuts the log file at `position` (torn tail, truncation) and drops index entries
    /// beyond it. Statistics must be recomputed with [`Self::scan`] afterwards.
    pub(crate) fn truncate_file(&mut self, position: u64) -> Result<()> {
        let result = self.truncate_files(position);
        self.release_if_inactive();
        result
    }

    fn truncate_files(&mut self, position: u64) -> Result<()> {
        self.log()?
            .set_len(position)
            .ctx("truncating", self.log_path())?;
        self.size = position;
        self.offset_index.truncate_to_position(position)
    }

    /// Truncates the segment so that it ends before the batch containing `offset`
    /// (Kafka truncates whole batches). Returns the bytes removed.
    pub(crate) fn truncate_to(&mut self, offset: i64, index_interval_bytes: u64) -> Result<u64> {
        let Some((pos, _)) = self.find_batch(offset)? else {
            return Ok(0);
        };
        let removed = self.size - pos;
        self.truncate_file(pos)?;
        self.time_index.truncate_to_offset(offset)?;
        self.release_if_inactive();
        let stop = self.scan(
            ScanMode {
                verify_crc: false,
                rebuild_indexes: false,
                index_interval_bytes,
            },
            &mut |_, _| {},
        )?;
        if stop != ScanStop::Eof || !self.indexes_consistent() {
            self.scan(
                ScanMode {
                    verify_crc: false,
                    rebuild_indexes: true,
                    index_interval_bytes,
                },
                &mut |_, _| {},
            )?;
        }
        Ok(removed)
    }

    fn write_log(&mut self, data: &[u8], position: u64) -> std::io::Result<()> {
        // The segment appended to is the active one: it keeps its files open.
        self.files.pin()?;
        let log = self.files.log()?;
        #[cfg(test)]
        if let Some(n) = self.fail_next_write_after.take() {
            let n = n.min(data.len());
            log.write_all_at(&data[..n], position)?;
            return Err(std::io::Error::from_raw_os_error(28)); // ENOSPC
        }
        log.write_all_at(data, position)
    }

    /// Appends already-patched batches (`data`, with `(position in data, header)` for each)
    /// at the end of the segment and indexes them. All or nothing: on any write failure the
    /// file and indexes are truncated back and the error (normally [`Error::Storage`]) is
    /// returned with `true`; `false` means the rollback itself failed and the on-disk state
    /// is unknown (the caller takes the log offline).
    pub(crate) fn append(
        &mut self,
        data: &[u8],
        batches: &[(usize, BatchHeader)],
        index_interval_bytes: u64,
        now_ms: i64,
    ) -> std::result::Result<(), (Error, bool)> {
        let start = self.size;
        let saved = self.stats;
        let saved_index = (self.offset_index.len(), self.time_index.len());
        let result = match self.write_log(data, start) {
            Err(source) => Err(Error::Storage {
                path: self.log_path().to_path_buf(),
                source,
            }),
            Ok(()) => batches.iter().try_for_each(|(p, h)| {
                self.track_batch(h, start + *p as u64, Some(index_interval_bytes))
            }),
        };
        match result {
            Ok(()) => {
                if start == 0 {
                    // Age for wall-clock rolling counts from the first batch, not from
                    // when the (empty) segment happened to be created.
                    self.created_ms = now_ms;
                }
                self.size = start + data.len() as u64;
                Ok(())
            }
            Err(e) => {
                let e = match e {
                    Error::Io { path, source, .. } => Error::Storage { path, source },
                    other => other,
                };
                self.stats = saved;
                let rollback = self
                    .log()
                    .and_then(|log| log.set_len(start).ctx("rolling back", self.log_path()))
                    .and_then(|_| self.offset_index.truncate_entries(saved_index.0))
                    .and_then(|_| self.time_index.truncate_entries(saved_index.1));
                Err((e, rollback.is_ok()))
            }
        }
    }

    /// Position and header of the first batch whose last offset is >= `offset`, found via
    /// the offset index then a short forward scan; `None` if the segment has no such batch.
    pub(crate) fn find_batch(&self, offset: i64) -> Result<Option<(u64, BatchHeader)>> {
        if offset >= self.stats.next_offset {
            return Ok(None);
        }
        let (_, start) = self.offset_index.lookup(offset);
        self.find_from_with(start, LOOKUP_CHUNK, |h| h.last_offset() >= offset)
    }

    /// First batch at or after byte `start` satisfying `pred`.
    pub(crate) fn find_from(
        &self,
        start: u64,
        pred: impl FnMut(&BatchHeader) -> bool,
    ) -> Result<Option<(u64, BatchHeader)>> {
        self.find_from_with(start, SCAN_CHUNK, pred)
    }

    /// [`Self::find_from`] reading ahead `chunk` bytes at a time.
    fn find_from_with(
        &self,
        start: u64,
        chunk: usize,
        mut pred: impl FnMut(&BatchHeader) -> bool,
    ) -> Result<Option<(u64, BatchHeader)>> {
        let log = self.log()?;
        let mut reader = BatchReader::with_chunk(&log, self.log_path(), self.size, chunk);
        let mut pos = start;
        while pos + HEADER_SIZE as u64 <= self.size {
            let Some(h) = BatchHeader::parse(reader.bytes(pos, HEADER_SIZE)?) else {
                break;
            };
            if h.batch_length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
                return Err(Error::CorruptMessage(format!(
                    "{} has an invalid batch length at position {pos}",
                    self.log_path().display()
                )));
            }
            if pred(&h) {
                return Ok(Some((pos, h)));
            }
            pos += h.size() as u64;
        }
        Ok(None)
    }

    /// Reads the bytes of one whole batch.
    pub(crate) fn read_batch(&self, position: u64, h: &BatchHeader) -> Result<Vec<u8>> {
        let mut buf = vec![0u8; h.size()];
        self.log()?
            .read_exact_at(&mut buf, position)
            .ctx("reading", self.log_path())?;
        Ok(buf)
    }

    /// The file region of whole batches starting with the one containing `offset`,
    /// stopping before any batch reaching `max_offset` or not fitting in `budget` bytes (the
    /// first batch is taken whole regardless when `min_one_batch`), without reading the
    /// batches: the ends are found with the offset index and a few header reads. Returns
    /// the region (`None` if nothing fits), whether reading should continue with the next
    /// segment (this segment's tail was taken) and whether batches below `max_offset` were
    /// left in this segment for want of budget.
    pub(crate) fn slice(
        &self,
        offset: i64,
        budget: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<(Option<FileRegion>, bool, bool)> {
        let Some((pos, first)) = self.find_batch(offset)? else {
            return Ok((None, true, false));
        };
        let log = self.log()?;
        if first.last_offset() >= max_offset {
            return Ok((None, false, false));
        }
        // Batches reaching `max_offset` (the high watermark) are not visible yet.
        let visible_end = if max_offset < self.stats.next_offset {
            let (_, from) = self.offset_index.lookup(max_offset);
            match self.find_from_with(from.max(pos), LOOKUP_CHUNK, |h| {
                h.last_offset() >= max_offset
            })? {
                Some((p, _)) => p,
                None => self.size,
            }
        } else {
            self.size
        };
        let window = if min_one_batch {
            budget.max(first.size())
        } else {
            budget
        } as u64;
        let limit = pos.saturating_add(window);
        let end = if limit >= visible_end {
            visible_end
        } else {
            // Cut at the last batch boundary within the limit: start from the nearest index
            // entry below it and walk the few headers after it.
            let mut cur = self
                .offset_index
                .floor_position(limit)
                .filter(|&p| p >= pos)
                .unwrap_or(pos);
            let mut reader =
                BatchReader::with_chunk(&log, self.log_path(), self.size, LOOKUP_CHUNK);
            while cur + HEADER_SIZE as u64 <= limit {
                let Some(h) = BatchHeader::parse(reader.bytes(cur, HEADER_SIZE)?) else {
                    break;
                };
                if h.batch_length < (HEADER_SIZE - LOG_OVERHEAD) as i32 {
                    return Err(Error::CorruptMessage(format!(
                        "{} has an invalid batch length at position {cur}",
                        self.log_path().display()
                    )));
                }
                if cur + h.size() as u64 > limit {
                    break;
                }
                cur += h.size() as u64;
            }
            cur
        };
        let region = (end > pos).then(|| FileRegion {
            file: log,
            position: pos,
            len: (end - pos) as usize,
        });
        Ok((region, end == self.size, end < visible_end))
    }

    /// Offset of the first indexed batch starting at or after byte `position` (the batch's
    /// last offset, as the index stores), if the index has one.
    pub(crate) fn upper_bound_offset(&self, position: u64) -> Option<i64> {
        self.offset_index.first_at_or_after_position(position)
    }

    /// Called when the segment stops being the active one (and on clean close): records the
    /// final max timestamp in the time index, as Kafka does, so it survives reopen, and hands
    /// the `.log` handle to the broker-wide cache and closes the indexes (a closed log's
    /// active segment too: the log takes no more appends). A later append pins it again.
    pub(crate) fn on_become_inactive(&mut self) -> Result<()> {
        let result = if self.stats.max_timestamp >= 0 {
            self.time_index
                .maybe_append(self.stats.max_timestamp, self.stats.offset_of_max_timestamp)
        } else {
            Ok(())
        };
        self.files.unpin();
        self.release_if_inactive();
        result
    }

    /// Start offset for a timestamp search (from the time index).
    pub(crate) fn time_lookup_start(&self, timestamp: i64) -> u64 {
        let off = self.time_index.lookup_before(timestamp);
        self.offset_index.lookup(off).1
    }

    /// Position from which to search for `offset` (from the offset index).
    pub(crate) fn offset_lookup_position(&self, offset: i64) -> u64 {
        self.offset_index.lookup(offset).1
    }

    /// fsyncs data and indexes, the `.txnindex` included (Kafka's `LogSegment.flush`): a
    /// load trusts the aborted transactions of segments below the producer snapshot it uses.
    pub(crate) fn flush(&self) -> Result<()> {
        self.log()?.sync_data().ctx("syncing", self.log_path())?;
        self.offset_index.flush()?;
        self.time_index.flush()?;
        if let Some(path) = self.txn_index_path() {
            match File::open(&path) {
                Ok(f) => f.sync_data().ctx("syncing", &path)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("opening", &path, e)),
            }
        }
        Ok(())
    }

    /// Removes the segment's files (missing files are fine: a previous attempt may have
    /// removed some). The `.log` goes first: a crash in between leaves only orphan index
    /// files, which the next load removes.
    pub(crate) fn delete_files(self) -> Result<()> {
        let dir = self.log_path().parent().unwrap_or(Path::new("."));
        // The aborted-transaction index belongs to a live segment too (absent unless it
        // holds an ABORT marker); a cleaner's `.cleaned`/`.swap` segment has none.
        let live_name = file_name(self.base_offset, LOG_SUFFIX);
        let live = self.log_path().file_name() == Some(std::ffi::OsStr::new(&live_name));
        let mut paths = vec![
            self.log_path().to_path_buf(),
            self.offset_index.path().to_path_buf(),
            self.time_index.path().to_path_buf(),
        ];
        if live {
            paths.push(txn::txn_index_path(dir, self.base_offset));
        }
        drop(self);
        for p in paths {
            match std::fs::remove_file(&p) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("deleting", &p, e)),
            }
        }
        Ok(())
    }
}
