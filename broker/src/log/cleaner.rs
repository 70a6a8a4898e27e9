//! Log compaction (`cleanup.policy=compact`), following Apache Kafka's log cleaner.
//!
//! One pass over a partition ([`PartitionLog::compact`]):
//! 1. **Cleanable range.** Only closed segments are touched, never the active one, and only
//!    those wholly below the *first uncleanable offset*: the active segment's base, the high
//!    watermark, and the base of the first segment holding a record younger than
//!    `min.compaction.lag.ms` (judged by the segment's largest timestamp, as Kafka does).
//! 2. **Dirty ratio.** The range splits at the cleaner checkpoint (`cleaner-offset-checkpoint`
//!    in the log dir root, Kafka's text format) into a clean head and a dirty tail. The pass
//!    runs when dirty bytes / (clean + dirty bytes) >= `min.cleanable.dirty.ratio`, or when
//!    the first batch of some dirty segment is older than `max.compaction.lag.ms`.
//! 3. **Offset map.** key -> latest offset over the dirty segments (records are decoded,
//!    decompressing as needed). Full keys are stored, so there are no hash collisions; the
//!    map stops growing at [`MAX_OFFSET_MAP_BYTES`] after a whole segment (like Kafka's
//!    dedupe buffer), and the pass then cleans only up to that segment.
//! 4. **Rewrite.** Every cleanable segment from the log start up to the end of the map is
//!    rewritten, consecutive segments merged while their sizes sum to <= `segment.bytes`
//!    (Kafka's `groupSegmentsBySize`). A record survives if it is the latest for its key.
//!    Records without a key are dropped (Kafka counts them as invalid in compacted logs).
//!    Control and transactional batches are kept byte for byte, and transactional records
//!    are not put in the map (without transaction state an aborted write must never hide
//!    an older committed value).
//! 5. **Batches keep their identity.** A batch losing records is re-encoded with the same
//!    base offset and last offset delta (offsets never change; gaps are normal), partition
//!    leader epoch, producer id/epoch/base sequence, compression codec, timestamp type and
//!    record timestamps; the surviving records' bytes (key, value, headers) are copied
//!    verbatim. A batch losing every record is dropped, except the last batch of a still
//!    tracked idempotent producer, which is kept as an empty batch (header only, Kafka's
//!    `RETAIN_EMPTY`) so that the producer's sequence state survives a reload.
//!
//! **Tombstones** (null value) use Kafka's delete horizon (KIP-534): the first pass that
//! rewrites a batch containing a surviving tombstone stamps `now + delete.retention.ms` into
//! it (attribute bit 6, value in the base timestamp, exactly Kafka's on-disk format). A
//! tombstone is removed by a later pass once that horizon has passed (and, like any record,
//! only if it is still the latest for its key). So a tombstone lives at least
//! `delete.retention.ms` after the first cleaning of its segment, giving consumers time to
//! see it.
//!
//! **Crash safety** (Kafka's swap protocol): a group is written as `<base>.log.cleaned` (plus
//! `.index.cleaned`, `.timeindex.cleaned`) and fsynced; renamed to `.swap` (indexes first,
//! then the log); the originals are deleted; the swap files are renamed to their final names
//! (log first). On open, [`recover_swaps`] completes an interrupted swap: segments whose base
//! lies in the swap's offset range are deleted and the swap takes their place; `.cleaned`
//! files and orphan index swaps are deleted. A kill -9 at any point therefore leaves either
//! the originals or the complete cleaned segment.
//!
//! **Locking.** Closed segments are immutable, so the broker holds the partition's lock only
//! to plan a pass and to swap each cleaned segment in (`compact_shared`); reading, building
//! the map, rewriting and fsyncing run without it, and appends and fetches go on meanwhile.
//! The swap first checks that the segments it replaces are still exactly those that were
//! read (retention, DeleteRecords or a truncation may have removed or changed them); if not,
//! the pass ends there and the next one starts afresh.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::SystemTime;

use bytes::{BufMut, BytesMut};
use kafka_protocol::compression::{Compressor, Gzip, Lz4, Snappy, Zstd};

use super::batch::{self, BatchHeader, COMPRESSION_MASK, DELETE_HORIZON_BIT, HEADER_SIZE};
use super::checkpoint::{self, lock};
use super::error::{Error, IoContext, Result};
use super::partition::{parse_segment_name, PartitionLog, State};
use super::records::{Detail, RecordStream, RecordView};
use super::segment::{
    file_name, for_each_batch_in, wall_clock_ms, BatchVisitor, Segment, INDEX_SUFFIX, LOG_SUFFIX,
    TIME_INDEX_SUFFIX,
};
use super::segment_files::LogReader;
use super::txn;
use super::TopicPartition;

/// Suffix of a segment being written by the cleaner.
pub(crate) const CLEANED_SUFFIX: &str = ".cleaned";
/// Suffix of a cleaned segment that is replacing the originals.
pub(crate) const SWAP_SUFFIX: &str = ".swap";

/// Upper bound on the key bytes (plus per-entry overhead) of one pass's offset map, like
/// Kafka's `log.cleaner.dedupe.buffer.size` (128 MiB).
pub const MAX_OFFSET_MAP_BYTES: usize = 128 * 1024 * 1024;

/// Rough per-entry overhead of the offset map (hash slot, box, offset).
const MAP_ENTRY_OVERHEAD: usize = 48;

/// What one [`PartitionLog::compact`] call did.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct CompactionStats {
    /// Whether a cleaning pass ran (false: not compacted, nothing dirty, or below the ratio).
    pub cleaned: bool,
    /// Dirty ratio of the cleanable range when the pass was considered (0 if nothing dirty).
    pub dirty_ratio: f64,
    /// The pass was forced by `max.compaction.lag.ms` although the ratio was too low.
    pub forced_by_max_lag: bool,
    /// New cleaner checkpoint (end of the cleaned range), -1 if no pass ran.
    pub cleaned_up_to: i64,
    /// Segments in the rewritten range, before and after.
    pub segments_before: usize,
    /// Segments in the rewritten range after the pass.
    pub segments_after: usize,
    /// Bytes of the rewritten range before the pass.
    pub bytes_before: u64,
    /// Bytes of the rewritten range after the pass.
    pub bytes_after: u64,
    /// Records removed (superseded values, expired tombstones, keyless records).
    pub records_removed: u64,
    /// Of which tombstones removed after their delete horizon.
    pub tombstones_removed: u64,
    /// Earliest delete horizon of a tombstone still in the cleaned range: once it has
    /// passed, the next call runs a pass even if nothing is dirty (Kafka does the same for
    /// logs with expired tombstones), so tombstones do not wait for new writes.
    pub next_delete_horizon: Option<i64>,
}

// ---------------------------------------------------------------------------------------
// Record codec (v2 records inside a batch).

/// Reads a zigzag varint/varlong (tests check [`write_varint`] against it).
#[cfg(test)]
fn read_varint(b: &[u8], pos: &mut usize) -> Option<i64> {
    let mut v: u64 = 0;
    let mut shift = 0u32;
    loop {
        let byte = *b.get(*pos)?;
        *pos += 1;
        v |= u64::from(byte & 0x7f) << shift;
        if byte & 0x80 == 0 {
            break;
        }
        shift += 7;
        if shift > 63 {
            return None;
        }
    }
    Some(((v >> 1) as i64) ^ -((v & 1) as i64))
}

/// Writes a zigzag varint/varlong (for values in i32 range this is Kafka's varint).
fn write_varint(out: &mut Vec<u8>, v: i64) {
    let mut z = ((v << 1) ^ (v >> 63)) as u64;
    while z >= 0x80 {
        out.push((z as u8) | 0x80);
        z >>= 7;
    }
    out.push(z as u8);
}

/// Re-encodes a record read with [`Detail::Full`] against a (possibly new) base timestamp;
/// everything from the offset delta on is copied verbatim.
fn encode_record(out: &mut Vec<u8>, r: &RecordView<'_>, base_timestamp: i64) {
    let mut head = Vec::with_capacity(11);
    head.push(r.attributes);
    write_varint(&mut head, r.timestamp.wrapping_sub(base_timestamp));
    write_varint(out, (head.len() + r.tail.len()) as i64);
    out.extend_from_slice(&head);
    out.extend_from_slice(r.tail);
}

fn compress(codec: i16, raw: &[u8]) -> Result<Vec<u8>> {
    fn com<C: Compressor<BytesMut>>(raw: &[u8]) -> anyhow::Result<Vec<u8>> {
        let mut out = BytesMut::new();
        C::compress(&mut out, |tmp| {
            tmp.put_slice(raw);
            Ok(())
        })?;
        Ok(out.to_vec())
    }
    let r = match codec {
        0 => return Ok(raw.to_vec()),
        1 => com::<Gzip>(raw),
        2 => com::<Snappy>(raw),
        3 => com::<Lz4>(raw),
        4 => com::<Zstd>(raw),
        c => Err(anyhow::anyhow!("unknown compression codec {c}")),
    };
    r.map_err(|e| Error::CorruptMessage(format!("cannot compress cleaned batch: {e}")))
}

// ---------------------------------------------------------------------------------------
// Offset map and batch filter.

/// key -> offset of its latest record in the dirty range.
#[derive(Debug, Default)]
struct OffsetMap {
    map: HashMap<Box<[u8]>, i64>,
    bytes: usize,
}

impl OffsetMap {
    fn put(&mut self, key: &[u8], offset: i64) {
        match self.map.get_mut(key) {
            Some(o) => *o = offset,
            None => {
                self.bytes += key.len() + MAP_ENTRY_OVERHEAD;
                self.map.insert(key.into(), offset);
            }
        }
    }

    fn get(&self, key: &[u8]) -> Option<i64> {
        self.map.get(key).copied()
    }
}

/// Adds a segment's records to the map.
fn index_segment(seg: &SourceSegment, map: &mut OffsetMap) -> Result<()> {
    seg.for_each_batch(&mut |_, h, bytes| {
        if h.is_control() || h.is_transactional() || h.records_count <= 0 {
            return Ok(());
        }
        // One record's key at a time: the batch is never inflated whole.
        let mut records = RecordStream::new(bytes, h)?;
        while let Some(r) = records.next_record(Detail::Key)? {
            if let Some(k) = r.key {
                map.put(k, r.offset);
            }
        }
        Ok(())
    })
}

/// What to write for one batch.
enum Outcome {
    /// The original bytes.
    Keep,
    /// Nothing.
    Drop,
    /// A re-encoded batch.
    Rewrite(Vec<u8>, BatchHeader),
}

struct FilterCtx<'a> {
    map: &'a OffsetMap,
    now_ms: i64,
    delete_retention_ms: i64,
    /// producer id -> last offset of its last batch (idempotent producers still tracked).
    producer_last: &'a HashMap<i64, i64>,
}

/// Whether a record survives cleaning, and whether it is an expired tombstone that goes.
fn survives(r: &RecordView<'_>, ctx: &FilterCtx<'_>, tombstones_expired: bool) -> (bool, bool) {
    match r.key {
        None => (false, false),
        Some(k) => {
            let latest = ctx.map.get(k).is_none_or(|o| r.offset >= o);
            if latest && !r.has_value && tombstones_expired {
                (false, true)
            } else {
                (latest, false)
            }
        }
    }
}

/// Decides a batch's fate in two streaming passes over its records (the first keeps one key
/// at a time, the second, run only for a rewrite, one record at a time), so a batch that
/// inflates to gigabytes never sits in memory whole.
fn filter_batch(
    bytes: &[u8],
    h: &BatchHeader,
    ctx: &FilterCtx<'_>,
    stats: &mut CompactionStats,
) -> Result<Outcome> {
    if h.is_control() || h.is_transactional() {
        return Ok(Outcome::Keep);
    }
    let horizon = h.delete_horizon();
    let tombstones_expired = horizon.is_some_and(|t| ctx.now_ms >= t);
    let (mut total, mut retained) = (0usize, 0usize);
    let mut first_retained_ts = None;
    let mut max_retained_ts = -1i64;
    let mut has_tombstone = false;
    let mut records = RecordStream::new(bytes, h)?;
    while let Some(r) = records.next_record(Detail::Key)? {
        total += 1;
        let (keep, expired_tombstone) = survives(&r, ctx, tombstones_expired);
        if expired_tombstone {
            stats.tombstones_removed += 1;
        }
        if keep {
            retained += 1;
            first_retained_ts.get_or_insert(r.timestamp);
            max_retained_ts = max_retained_ts.max(r.timestamp);
            has_tombstone |= !r.has_value;
        }
    }
    stats.records_removed += (total - retained) as u64;
    let producer_last =
        h.has_producer_id() && ctx.producer_last.get(&h.producer_id) == Some(&h.last_offset());
    let Some(first_retained_ts) = first_retained_ts else {
        if !producer_last {
            return Ok(Outcome::Drop);
        }
        if total == 0 {
            return Ok(Outcome::Keep);
        }
        // Kafka's RETAIN_EMPTY: header only, same offsets/producer fields, no compression.
        let eh = BatchHeader {
            attributes: h.attributes & !(COMPRESSION_MASK | DELETE_HORIZON_BIT),
            base_timestamp: h.max_timestamp,
            records_count: 0,
            ..*h
        };
        let out = batch::encode_batch(&eh, &[]);
        let eh = BatchHeader::parse(&out).unwrap_or(eh);
        return Ok(Outcome::Rewrite(out, eh));
    };
    let needs_horizon = has_tombstone && horizon.is_none();
    if has_tombstone {
        let t = horizon.unwrap_or(ctx.now_ms.saturating_add(ctx.delete_retention_ms));
        stats.next_delete_horizon = Some(stats.next_delete_horizon.map_or(t, |m| m.min(t)));
    }
    if retained == total && !needs_horizon {
        return Ok(Outcome::Keep);
    }
    let new_horizon = match horizon {
        Some(t) => Some(t),
        None if has_tombstone => Some(ctx.now_ms.saturating_add(ctx.delete_retention_ms)),
        None => None,
    };
    let base_timestamp = new_horizon.unwrap_or(first_retained_ts);
    let max_timestamp = if h.is_log_append_time() {
        h.max_timestamp
    } else {
        max_retained_ts
    };
    let mut raw = Vec::new();
    let mut records = RecordStream::new(bytes, h)?;
    while let Some(r) = records.next_record(Detail::Full)? {
        if survives(&r, ctx, tombstones_expired).0 {
            encode_record(&mut raw, &r, base_timestamp);
        }
    }
    let payload = compress(h.compression(), &raw)?;
    let mut attributes = h.attributes & !DELETE_HORIZON_BIT;
    if new_horizon.is_some() {
        attributes |= DELETE_HORIZON_BIT;
    }
    let nh = BatchHeader {
        attributes,
        base_timestamp,
        max_timestamp,
        records_count: retained as i32,
        ..*h
    };
    let out = batch::encode_batch(&nh, &payload);
    let nh = BatchHeader::parse(&out).unwrap_or(nh);
    Ok(Outcome::Rewrite(out, nh))
}

// ---------------------------------------------------------------------------------------
// Recovery of interrupted swaps.

/// Offset after the last whole batch of a segment file (its base if it has none).
fn next_offset_of_file(path: &Path, base: i64) -> Result<i64> {
    let file = File::open(path).ctx("opening", path)?;
    let size = file.metadata().ctx("reading metadata of", path)?.len();
    let mut next = base;
    let mut pos = 0u64;
    let mut buf = [0u8; HEADER_SIZE];
    while pos + HEADER_SIZE as u64 <= size {
        file.read_exact_at(&mut buf, pos).ctx("reading", path)?;
        let Some(h) = BatchHeader::parse(&buf) else {
            break;
        };
        if h.batch_length < (HEADER_SIZE - 12) as i32 || pos + h.size() as u64 > size {
            break;
        }
        next = next.max(h.next_offset());
        pos += h.size() as u64;
    }
    Ok(next)
}

fn remove_if_exists(path: &Path) -> Result<()> {
    match std::fs::remove_file(path) {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
        Err(e) => Err(Error::io("deleting", path, e)),
    }
}

/// Completes swaps interrupted by a crash (Kafka's `LogLoader` swap handling): for each
/// `<base>.log.swap`, deletes the segments whose base offset lies in the swap's offset range
/// (they are the originals it replaces), then renames the swap files into place. Deletes
/// `.cleaned` files and index swaps without a log swap. Returns the bases of the completed
/// swaps, whose indexes the caller rebuilds.
pub(crate) fn recover_swaps(dir: &Path) -> Result<Vec<i64>> {
    let mut log_swaps = Vec::new();
    let mut index_swaps = Vec::new();
    for entry in std::fs::read_dir(dir).ctx("listing", dir)? {
        let entry = entry.ctx("listing", dir)?;
        let name = entry.file_name();
        let Some(name) = name.to_str() else { continue };
        let path = entry.path();
        if name.ends_with(CLEANED_SUFFIX) {
            tracing::info!(path = %path.display(), "deleting unfinished cleaned segment file");
            remove_if_exists(&path)?;
        } else if let Some(stem) = name.strip_suffix(SWAP_SUFFIX) {
            match parse_segment_name(stem) {
                Some((base, LOG_SUFFIX)) => log_swaps.push(base),
                _ => index_swaps.push((stem.to_string(), path)),
            }
        }
    }
    log_swaps.sort_unstable();
    for (stem, path) in index_swaps {
        let has_log_swap =
            parse_segment_name(&stem).is_some_and(|(b, _)| log_swaps.binary_search(&b).is_ok());
        if !has_log_swap {
            remove_if_exists(&path)?;
        }
    }
    for &base in &log_swaps {
        let swap = dir.join(format!("{}{SWAP_SUFFIX}", file_name(base, LOG_SUFFIX)));
        let end = next_offset_of_file(&swap, base)?.max(base + 1);
        let mut replaced = Vec::new();
        for entry in std::fs::read_dir(dir).ctx("listing", dir)? {
            let entry = entry.ctx("listing", dir)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            if let Some((b, LOG_SUFFIX | INDEX_SUFFIX | TIME_INDEX_SUFFIX)) =
                parse_segment_name(name)
            {
                if (base..end).contains(&b) {
                    replaced.push(entry.path());
                }
            }
        }
        replaced.sort();
        for p in &replaced {
            remove_if_exists(p)?;
        }
        for ext in [INDEX_SUFFIX, TIME_INDEX_SUFFIX] {
            let from = dir.join(format!("{}{SWAP_SUFFIX}", file_name(base, ext)));
            if from.exists() {
                let to = dir.join(file_name(base, ext));
                std::fs::rename(&from, &to).ctx("renaming", &from)?;
            }
        }
        let to = dir.join(file_name(base, LOG_SUFFIX));
        std::fs::rename(&swap, &to).ctx("renaming", &swap)?;
        checkpoint::sync_dir(dir)?;
        tracing::warn!(
            dir = %dir.display(), base, end, replaced = replaced.len(),
            "completed log cleaner swap interrupted by a crash"
        );
    }
    Ok(log_swaps)
}

// ---------------------------------------------------------------------------------------
// The pass.
//
// A pass has three phases so that the partition lock is held only briefly:
// [`PartitionLog::plan_cleaning`] (locked) picks the segments and takes read handles on
// them; [`CleanPlan::execute`] (unlocked) builds the offset map and writes the cleaned
// segments, fsync included; [`PartitionLog::install_cleaned`] (locked) checks that the
// segments are still the ones that were read and swaps the cleaned ones in. Appends only
// touch the active segment, which is never cleaned; retention, DeleteRecords and
// truncation can remove or change closed segments meanwhile, and the install notices.

/// A closed segment as the cleaner reads it, without the partition lock.
struct SourceSegment {
    base: i64,
    next_offset: i64,
    size: u64,
    /// Opens the `.log` file for the time of one pass over it, so a cleaning pass over many
    /// segments holds one descriptor at a time. A segment deleted meanwhile fails to open,
    /// and the pass is abandoned (see [`compact_shared`]).
    reader: LogReader,
    last_modified: Option<SystemTime>,
}

impl SourceSegment {
    fn for_each_batch(&self, f: &mut BatchVisitor<'_>) -> Result<()> {
        let path = self.reader.path();
        let file = self.reader.open().ctx("opening segment", path)?;
        for_each_batch_in(&file, path, self.size, f)
    }
}

/// What a pass will clean, decided under the partition lock by
/// [`PartitionLog::plan_cleaning`]; run it with [`CleanPlan::execute`] without the lock.
pub(crate) struct CleanPlan {
    tp: TopicPartition,
    dir: PathBuf,
    now_ms: i64,
    segment_bytes: u64,
    index_interval_bytes: u64,
    delete_retention_ms: i64,
    /// The cleanable closed segments from the log start, oldest first.
    segments: Vec<SourceSegment>,
    first_dirty: i64,
    producer_last: HashMap<i64, i64>,
    stats: CompactionStats,
}

/// One group of original segments and what replaces it.
struct CleanedGroup {
    /// `(base, size, next offset)` of each original, to recognise them at install time.
    originals: Vec<(i64, u64, i64)>,
    /// The rewritten segment (`.cleaned` files); `None` when nothing changed.
    cleaned: Option<Segment>,
}

/// The output of [`CleanPlan::execute`], to be installed with
/// [`PartitionLog::install_cleaned`].
pub(crate) struct CleanedSegments {
    groups: Vec<CleanedGroup>,
    end: i64,
    stats: CompactionStats,
}

impl CleanedSegments {
    /// Deletes the `.cleaned` files of groups that will not be installed.
    fn discard(groups: impl IntoIterator<Item = CleanedGroup>, tp: &TopicPartition) {
        for g in groups {
            if let Some(seg) = g.cleaned {
                if let Err(e) = seg.delete_files() {
                    tracing::warn!(%tp, error = %e, "cannot delete a cleaned segment that was not installed; it is removed at next open");
                }
            }
        }
    }
}

impl CleanPlan {
    /// `(base, size, next offset)` of every segment the plan reads.
    pub(crate) fn originals(&self) -> Vec<(i64, u64, i64)> {
        self.segments
            .iter()
            .map(|s| (s.base, s.size, s.next_offset))
            .collect()
    }

    /// Builds the offset map over the dirty segments and writes every group of cleanable
    /// segments up to the end of the map as one `.cleaned` segment (fsynced). Runs without
    /// the partition lock; touches no file of the live log.
    pub(crate) fn execute(self) -> Result<CleanedSegments> {
        let mut stats = self.stats.clone();
        let mut map = OffsetMap::default();
        let mut end = self.first_dirty;
        for seg in self
            .segments
            .iter()
            .filter(|s| s.next_offset > self.first_dirty)
        {
            if map.bytes >= MAX_OFFSET_MAP_BYTES && end > self.first_dirty {
                break;
            }
            index_segment(seg, &mut map)?;
            end = seg.next_offset;
        }
        let to_clean: Vec<&SourceSegment> = self
            .segments
            .iter()
            .filter(|s| s.next_offset <= end)
            .collect();
        stats.segments_before = to_clean.len();
        stats.bytes_before = to_clean.iter().map(|s| s.size).sum();
        let ctx = FilterCtx {
            map: &map,
            now_ms: self.now_ms,
            delete_retention_ms: self.delete_retention_ms,
            producer_last: &self.producer_last,
        };
        let mut groups = Vec::new();
        for group in group_by_size(&to_clean, self.segment_bytes) {
            match self.clean_group(&group, &ctx, &mut stats) {
                Ok(g) => groups.push(g),
                Err(e) => {
                    CleanedSegments::discard(groups, &self.tp);
                    return Err(e);
                }
            }
        }
        Ok(CleanedSegments { groups, end, stats })
    }

    /// Rewrites one group of segments into one `.cleaned` segment.
    fn clean_group(
        &self,
        group: &[&SourceSegment],
        ctx: &FilterCtx<'_>,
        stats: &mut CompactionStats,
    ) -> Result<CleanedGroup> {
        let originals = group
            .iter()
            .map(|s| (s.base, s.size, s.next_offset))
            .collect();
        let Some(first) = group.first() else {
            return Ok(CleanedGroup {
                originals,
                cleaned: None,
            });
        };
        let interval = self.index_interval_bytes;
        let mut cleaned =
            Segment::create_with_suffix(&self.dir, first.base, wall_clock_ms(), CLEANED_SUFFIX)?;
        let mut changed = group.len() > 1;
        let written = (|| -> Result<()> {
            for seg in group {
                seg.for_each_batch(&mut |_, h, bytes| {
                    let (data, header) = match filter_batch(bytes, h, ctx, stats)? {
                        Outcome::Keep => (bytes.to_vec(), *h),
                        Outcome::Drop => {
                            changed = true;
                            return Ok(());
                        }
                        Outcome::Rewrite(v, nh) => {
                            changed = true;
                            (v, nh)
                        }
                    };
                    cleaned
                        .append(&data, &[(0, header)], interval, ctx.now_ms)
                        .map_err(|(e, _)| e)
                })?;
            }
            cleaned.on_become_inactive()?;
            cleaned.flush()?;
            match group.last().and_then(|s| s.last_modified) {
                Some(t) => cleaned.set_last_modified(t),
                None => Ok(()),
            }
        })();
        if let Err(e) = written {
            if let Err(e2) = cleaned.delete_files() {
                tracing::warn!(tp = %self.tp, error = %e2, "cannot delete partial cleaned segment; it is removed at next open");
            }
            return Err(e);
        }
        if !changed {
            cleaned.delete_files()?;
            return Ok(CleanedGroup {
                originals,
                cleaned: None,
            });
        }
        Ok(CleanedGroup {
            originals,
            cleaned: Some(cleaned),
        })
    }
}

/// Consecutive segments merged while their total size fits `segment.bytes` and relative
/// offsets fit the index (Kafka's `groupSegmentsBySize`).
fn group_by_size<'a>(segments: &[&'a SourceSegment], max: u64) -> Vec<Vec<&'a SourceSegment>> {
    let mut groups = Vec::new();
    let mut cur: Vec<&SourceSegment> = Vec::new();
    let mut size = 0u64;
    for &s in segments {
        if let Some(first) = cur.first() {
            if size + s.size > max || s.next_offset - first.base > i64::from(i32::MAX) {
                groups.push(std::mem::take(&mut cur));
                size = 0;
            }
        }
        cur.push(s);
        size += s.size;
    }
    if !cur.is_empty() {
        groups.push(cur);
    }
    groups
}

/// Runs one cleaning pass on a shared log, holding its lock only to plan and to swap the
/// cleaned segments in (see [`PartitionLog::compact`] for the rules and the result).
/// Reading, filtering, writing and fsyncing the cleaned segments happen without the lock,
/// so appends and reads of the partition go on meanwhile.
pub(crate) fn compact_shared(log: &Mutex<PartitionLog>, now_ms: i64) -> Result<CompactionStats> {
    let plan = match lock(log).plan_cleaning(now_ms)? {
        Ok(plan) => plan,
        Err(stats) => return Ok(stats),
    };
    let tp = plan.tp.clone();
    let originals = plan.originals();
    match plan.execute() {
        Ok(cleaned) => lock(log).install_cleaned(cleaned),
        Err(e) => {
            let log = lock(log);
            // A topic deleted meanwhile makes writing the cleaned files fail, and a truncated
            // segment makes reading it fail: those are not faults of the log.
            log.ensure_open()?;
            if !log.still_holds(&originals) {
                tracing::info!(%tp, error = %e, "log changed during the cleaning pass; it is abandoned");
                return Ok(CompactionStats {
                    cleaned_up_to: -1,
                    ..CompactionStats::default()
                });
            }
            Err(e)
        }
    }
}

impl PartitionLog {
    /// Runs one compaction pass if `cleanup.policy` contains `compact` and the log is dirty
    /// enough (see the [module docs](self) for the rules). Returns what was done; a log that
    /// is not compacted, has nothing dirty or is below `min.cleanable.dirty.ratio` gives
    /// `cleaned: false`. This holds `&mut self` throughout; a shared log is cleaned with the
    /// lock held only briefly by the log manager (`compact_shared`).
    ///
    /// Errors while writing the cleaned segment leave the log untouched (the partial files
    /// are deleted); an error after the swap has started takes the log offline, and the
    /// next open completes the swap from the `.swap` files.
    pub fn compact(&mut self, now_ms: i64) -> Result<CompactionStats> {
        match self.plan_cleaning(now_ms)? {
            Ok(plan) => {
                let cleaned = plan.execute()?;
                self.install_cleaned(cleaned)
            }
            Err(stats) => Ok(stats),
        }
    }

    /// Decides whether a pass runs and on which segments: `Ok(Err(stats))` when it does not
    /// (stats say why), else the plan with read handles on the cleanable segments.
    pub(crate) fn plan_cleaning(
        &self,
        now_ms: i64,
    ) -> Result<std::result::Result<CleanPlan, CompactionStats>> {
        self.ensure_open()?;
        let mut stats = CompactionStats {
            cleaned_up_to: -1,
            ..CompactionStats::default()
        };
        if !self.config.cleanup_compact || self.segments.len() < 2 {
            return Ok(Err(stats));
        }
        let active_base = self.active().base_offset();
        let mut bound = active_base.min(self.high_watermark);
        let lag = self.config.min_compaction_lag_ms;
        if lag > 0 {
            let young = self.segments.values().find(|s| {
                s.base_offset() < active_base && now_ms.saturating_sub(s.largest_timestamp()) < lag
            });
            if let Some(s) = young {
                bound = bound.min(s.base_offset());
            }
        }
        let cleanable: Vec<&Segment> = self
            .segments
            .values()
            .take_while(|s| s.base_offset() < active_base && s.next_offset() <= bound)
            .collect();
        let leo = self.log_end_offset();
        let first_dirty = match self.cleaner_offset {
            Some(o) if o >= self.log_start_offset && o <= leo => o,
            _ => self.log_start_offset,
        };
        let (mut clean_bytes, mut dirty_bytes) = (0u64, 0u64);
        let mut oldest_dirty: Option<i64> = None;
        for s in &cleanable {
            if s.next_offset() <= first_dirty {
                clean_bytes += s.size();
            } else {
                dirty_bytes += s.size();
                if let Some(t) = s.first_batch_timestamp() {
                    oldest_dirty = Some(oldest_dirty.map_or(t, |m| m.min(t)));
                }
            }
        }
        let horizon_due = self.pending_delete_horizon.is_some_and(|t| now_ms >= t);
        if dirty_bytes == 0 && !horizon_due {
            return Ok(Err(stats));
        }
        if dirty_bytes > 0 {
            stats.dirty_ratio = dirty_bytes as f64 / (clean_bytes + dirty_bytes) as f64;
        }
        let max_lag = self.config.max_compaction_lag_ms;
        stats.forced_by_max_lag =
            max_lag >= 0 && oldest_dirty.is_some_and(|t| t < now_ms.saturating_sub(max_lag));
        if stats.dirty_ratio < self.config.min_cleanable_dirty_ratio
            && !stats.forced_by_max_lag
            && !horizon_due
        {
            return Ok(Err(stats));
        }
        let mut segments = Vec::with_capacity(cleanable.len());
        for s in cleanable {
            segments.push(SourceSegment {
                base: s.base_offset(),
                next_offset: s.next_offset(),
                size: s.size(),
                reader: s.reader(),
                last_modified: s.last_modified(),
            });
        }
        let producer_last = self
            .producers
            .iter()
            .filter_map(|(&pid, e)| e.batches.back().map(|b| (pid, b.last_offset)))
            .collect();
        Ok(Ok(CleanPlan {
            tp: self.tp.clone(),
            dir: self.dir.clone(),
            now_ms,
            segment_bytes: self.config.segment_bytes,
            index_interval_bytes: self.config.index_interval_bytes,
            delete_retention_ms: self.config.delete_retention_ms,
            segments,
            first_dirty,
            producer_last,
            stats,
        }))
    }

    /// Swaps the cleaned segments in, group by group, with Kafka's crash-safe protocol.
    /// A group whose originals are no longer exactly the segments that were read (deleted by
    /// retention or DeleteRecords, changed by truncation, become active) is not installed,
    /// nor is any later group: the pass ends there without moving the cleaner checkpoint, and
    /// the next pass starts again from the log as it is.
    pub(crate) fn install_cleaned(&mut self, cleaned: CleanedSegments) -> Result<CompactionStats> {
        let CleanedSegments {
            groups,
            end,
            mut stats,
        } = cleaned;
        if let Err(e) = self.ensure_open() {
            CleanedSegments::discard(groups, &self.tp);
            return Err(e);
        }
        let mut groups = groups.into_iter();
        while let Some(group) = groups.next() {
            if !self.still_holds(&group.originals) {
                tracing::info!(
                    tp = %self.tp,
                    base = group.originals.first().map_or(-1, |o| o.0),
                    "log changed during the cleaning pass (retention, DeleteRecords or truncation); the pass ends here"
                );
                CleanedSegments::discard(std::iter::once(group).chain(groups), &self.tp);
                stats.cleaned = false;
                stats.cleaned_up_to = -1;
                return Ok(stats);
            }
            let Some(seg) = group.cleaned else { continue };
            let bases: Vec<i64> = group.originals.iter().map(|o| o.0).collect();
            if let Err(e) = self.swap_in(seg, &bases) {
                CleanedSegments::discard(groups, &self.tp);
                return Err(e);
            }
        }
        let active_base = self.active().base_offset();
        let after: Vec<&Segment> = self
            .segments
            .range(..end)
            .map(|(_, s)| s)
            .filter(|s| s.base_offset() < active_base)
            .collect();
        stats.segments_after = after.len();
        stats.bytes_after = after.iter().map(|s| s.size()).sum();
        stats.cleaned = true;
        stats.cleaned_up_to = end;
        self.pending_delete_horizon = stats.next_delete_horizon;
        self.set_cleaner_offset(Some(end))?;
        tracing::info!(
            tp = %self.tp, end, ratio = stats.dirty_ratio, forced = stats.forced_by_max_lag,
            segments_before = stats.segments_before, segments_after = stats.segments_after,
            bytes_before = stats.bytes_before, bytes_after = stats.bytes_after,
            records_removed = stats.records_removed, tombstones_removed = stats.tombstones_removed,
            "compacted log"
        );
        Ok(stats)
    }

    /// Whether every `(base, size, next offset)` is still a closed segment of this log.
    pub(crate) fn still_holds(&self, originals: &[(i64, u64, i64)]) -> bool {
        let active_base = self.active().base_offset();
        originals.iter().all(|&(base, size, next)| {
            base < active_base
                && self
                    .segments
                    .get(&base)
                    .is_some_and(|s| s.size() == size && s.next_offset() == next)
        })
    }

    /// Replaces the segments at `bases` by `cleaned` (Kafka's swap protocol; see the module
    /// docs for crash safety).
    fn swap_in(&mut self, mut cleaned: Segment, bases: &[i64]) -> Result<()> {
        let Some(&base) = bases.first() else {
            return cleaned.delete_files();
        };
        let is_first = base == self.first_segment().base_offset();
        if cleaned.size() == 0 && !is_first {
            // Nothing survives: the originals simply go (a crash half-way leaves some of
            // them, which only holds superseded records).
            cleaned.delete_files()?;
            for b in bases {
                self.delete_segment(*b)?;
            }
            return checkpoint::sync_dir(&self.dir);
        }
        // The first segment is kept even if empty so the log start offset stays put.
        #[cfg(test)]
        if crash_point() == 3 {
            return Err(Error::InvalidArgument("simulated crash before swap".into()));
        }
        cleaned.rename_files(SWAP_SUFFIX, false)?;
        checkpoint::sync_dir(&self.dir)?;
        #[cfg(test)]
        if crash_point() == 1 {
            return Err(Error::InvalidArgument("simulated crash after swap".into()));
        }
        let swapped = (|| -> Result<()> {
            for b in bases {
                if let Some(seg) = self.segments.remove(b) {
                    seg.delete_files()?;
                }
                #[cfg(test)]
                if crash_point() == 2 {
                    return Err(Error::InvalidArgument(
                        "simulated crash while deleting".into(),
                    ));
                }
            }
            cleaned.rename_files("", true)?;
            checkpoint::sync_dir(&self.dir)
        })();
        match swapped {
            Ok(()) => {
                // The cleaner keeps every transactional and control batch, so the aborted
                // transactions of the originals all move to the cleaned segment's index
                // (as Kafka's cleaner copies them).
                let moved: Vec<_> = bases
                    .iter()
                    .filter_map(|b| self.aborted.remove(b))
                    .flatten()
                    .collect();
                if !moved.is_empty() {
                    let path = txn::txn_index_path(&self.dir, base);
                    if let Err(e) = txn::write_txn_index(&path, &moved) {
                        // Derived data, rewritten at the next load.
                        tracing::warn!(tp = %self.tp, error = %e, "cannot write the cleaned segment's transaction index");
                    }
                    self.aborted.insert(base, moved);
                }
                self.segments.insert(base, cleaned);
                Ok(())
            }
            Err(e) => {
                tracing::error!(tp = %self.tp, error = %e, "log cleaner swap failed; log offline until reopened");
                self.state = State::Offline(e.to_string());
                Err(e)
            }
        }
    }

    /// Records the cleaner position (in memory and in `cleaner-offset-checkpoint`).
    pub(super) fn set_cleaner_offset(&mut self, offset: Option<i64>) -> Result<()> {
        if self.cleaner_offset == offset {
            return Ok(());
        }
        self.cleaner_offset = offset;
        if let Some(c) = &self.checkpoints {
            c.set_cleaner_offset(&self.tp, offset)?;
        }
        Ok(())
    }

    /// The cleaner checkpoint: offset up to which the log has been compacted.
    pub fn cleaner_offset(&self) -> Option<i64> {
        self.cleaner_offset
    }
}

#[cfg(test)]
thread_local! {
    /// Test seam: where [`PartitionLog::compact`] stops as if the process died (0: never;
    /// 3: cleaned files written; 1: renamed to `.swap`; 2: first original deleted).
    static CRASH_POINT: std::cell::Cell<u8> = const { std::cell::Cell::new(0) };
}

#[cfg(test)]
fn crash_point() -> u8 {
    CRASH_POINT.with(|c| c.get())
}

#[cfg(test)]
pub(crate) fn set_crash_point(point: u8) {
    CRASH_POINT.with(|c| c.set(point));
}

#[cfg(test)]
mod codec_tests {
    use super::*;

    #[test]
    fn varint_round_trip() {
        for v in [
            0i64,
            1,
            -1,
            63,
            -64,
            64,
            300,
            -300,
            i64::from(i32::MAX),
            i64::MIN,
            i64::MAX,
        ] {
            let mut b = Vec::new();
            write_varint(&mut b, v);
            let mut p = 0;
            assert_eq!(read_varint(&b, &mut p), Some(v));
            assert_eq!(p, b.len());
        }
    }
}
