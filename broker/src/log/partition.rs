//! [`PartitionLog`]: one partition's segmented log with its indexes, leader epoch cache,
//! idempotent and transactional producer state and aborted-transaction index.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use uuid::Uuid;

use super::batch::{self, AppendOrigin, BatchHeader};
use super::checkpoint::{
    self, lock, DirCheckpoints, RECOVERY_POINT_CHECKPOINT, REPLICATION_OFFSET_CHECKPOINT,
};
use super::cleaner;
use super::config::{LogConfig, TimestampType};
use super::error::{Error, IoContext, Result};
use super::leader_epoch::LeaderEpochCache;
use super::meta;
use super::producer_snapshot;
use super::producer_state::{PendingUpdates, ProducerStateManager, SeqCheck};
use super::records::{self, Detail, RecordStream};
use super::segment::{
    self, ScanMode, ScanStop, Segment, INDEX_SUFFIX, LOG_SUFFIX, TIME_INDEX_SUFFIX,
};
use super::txn::{self, AbortedTxn, CompletedTxn, EndTxnMarker, TXN_INDEX_SUFFIX};
use super::{AppendInfo, FetchData, LogSlice, MoreData, TopicPartition, CLEAN_SHUTDOWN_FILE};

/// What the caller knows about a partition before opening it: gathered from the log dir's
/// root files by [`super::LogManager`] (or by [`PartitionLog::open`] for a single log).
#[derive(Debug, Clone, Default)]
pub struct LoadOptions {
    /// The log dir was shut down cleanly: trust indexes and skip CRC recovery.
    pub clean_shutdown: bool,
    /// Offset up to which data is known to be fsynced (`recovery-point-offset-checkpoint`);
    /// segments from the one containing it onwards are recovered after an unclean shutdown.
    pub recovery_point: i64,
    /// Checkpointed log start offset (from DeleteRecords), if any.
    pub log_start_offset: Option<i64>,
    /// Checkpointed high watermark (`replication-offset-checkpoint`), if any. The log opens
    /// with it, clamped to [log start, log end]; without one, at the log start offset. Only
    /// the replica layer raises it (a leader whose ISR is itself alone at once), so a
    /// restarted follower never shows consumers records the cluster has not committed.
    pub high_watermark: Option<i64>,
    /// Where to persist log start offset changes (shared by the dir's partitions).
    pub(crate) checkpoints: Option<Arc<DirCheckpoints>>,
    /// Where a roll leaves its fsync for the log manager (see [`PartitionLog::roll`]);
    /// without it a roll fsyncs at once.
    pub(crate) rolled: Option<Arc<RolledLogs>>,
}

/// Partitions whose rolled segments await their fsync: filled by [`PartitionLog::roll`],
/// drained by the log manager's flusher (Kafka flushes a rolled segment asynchronously,
/// `flushUptoOffsetExclusive` on its scheduler, so the append that rolls never waits).
#[derive(Debug, Default)]
pub(crate) struct RolledLogs(pub(crate) Mutex<Vec<TopicPartition>>);

/// A flush of rolled segments taken from a log under its lock and run without it
/// ([`PartitionLog::begin_roll_flush`], [`RollFlush::sync`], [`PartitionLog::finish_roll_flush`]).
pub(crate) struct RollFlush {
    /// The recovery point once done: the base of the segment created by the last roll.
    target: i64,
    files: Vec<(File, PathBuf)>,
    dir: PathBuf,
    truncations: u64,
}

impl RollFlush {
    /// fsyncs the rolled segments' files and the partition directory. Needs no lock: closed
    /// segments do not change, and the handles stay valid if retention deletes a file.
    pub(crate) fn sync(&self) -> Result<()> {
        for (file, path) in &self.files {
            file.sync_data().ctx("syncing", path)?;
        }
        checkpoint::sync_dir(&self.dir)
    }
}

/// Kafka's default `producer.id.expiration.ms` (1 day), the default of
/// [`LogConfig::producer_id_expiration_ms`].
pub const PRODUCER_ID_EXPIRATION_MS: i64 = 24 * 60 * 60 * 1000;

/// Lifecycle of a log handle (a handle may outlive the log's presence in the manager).
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum State {
    Open,
    /// A rollback after a failed write failed; appends refused until reopen.
    Offline(String),
    Closed,
    Deleted,
}

/// One partition's durable log. Not internally synchronised: callers wrap it in a `Mutex`.
#[derive(Debug)]
pub struct PartitionLog {
    pub(super) dir: PathBuf,
    pub(super) tp: TopicPartition,
    pub(super) config: LogConfig,
    /// Segments by base offset; never empty (the last one is the active segment).
    pub(super) segments: BTreeMap<i64, Segment>,
    pub(super) log_start_offset: i64,
    pub(super) high_watermark: i64,
    recovery_point: i64,
    /// Wall-clock time of the last flush that advanced the recovery point (or of opening),
    /// Kafka's `lastFlushTime`: `flush.ms` is measured from it.
    last_flush_ms: i64,
    epochs: LeaderEpochCache,
    pub(super) producers: ProducerStateManager,
    /// Aborted transactions by the base offset of the segment holding their ABORT marker,
    /// in marker order: the contents of the segments' `.txnindex` files (segments without
    /// an aborted transaction have no entry).
    pub(super) aborted: BTreeMap<i64, Vec<AbortedTxn>>,
    topic_id: Option<Uuid>,
    /// The topic id is recorded but `partition.metadata` is not written yet (Kafka's
    /// `PartitionMetadataFile.dirtyTopicIdOpt`): creating a log only records the id; the
    /// file is written by [`Self::flush_partition_metadata`], in the background after a
    /// creation and at the latest before the first record is appended, so a partition dir
    /// that holds records always names their topic, and one without the file holds none.
    topic_id_unflushed: bool,
    pub(super) checkpoints: Option<Arc<DirCheckpoints>>,
    rolled: Option<Arc<RolledLogs>>,
    /// Recovery point to reach once the rolled segments are fsynced.
    roll_flush_target: Option<i64>,
    /// Bumped by every truncation, so a roll flush taken before one does not advance the
    /// recovery point over rewritten offsets.
    truncations: u64,
    pub(super) state: State,
    /// Log cleaner position (`cleaner-offset-checkpoint`): compacted up to here.
    pub(super) cleaner_offset: Option<i64>,
    /// Earliest delete horizon of a tombstone left by the last compaction (in memory only).
    pub(super) pending_delete_horizon: Option<i64>,
}

/// Parses `<20 digits>.<suffix>` into a base offset.
pub(super) fn parse_segment_name(name: &str) -> Option<(i64, &str)> {
    let (stem, suffix) = name.split_once('.')?;
    if stem.len() != 20 || !stem.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    Some((stem.parse().ok()?, suffix))
}

impl PartitionLog {
    /// Opens (recovering if the last shutdown was not clean) or creates the partition dir.
    /// Clean-shutdown marker, recovery point and log start offset are read from the parent
    /// (the log dir), so a standalone open behaves like a [`super::LogManager`] load.
    pub fn open(dir: &Path, tp: TopicPartition, config: LogConfig) -> Result<Self> {
        let parent = dir.parent().unwrap_or(Path::new("."));
        let checkpoints = match DirCheckpoints::load(parent) {
            Ok(c) => c,
            Err(e) => {
                tracing::warn!(error = %e, "ignoring unreadable log start offset checkpoint");
                DirCheckpoints::empty(parent)
            }
        };
        let recovery_point = checkpoint::read_offsets(&parent.join(RECOVERY_POINT_CHECKPOINT))
            .ok()
            .and_then(|m| m.get(&tp).copied())
            .unwrap_or(0);
        let high_watermark = checkpoint::read_offsets(&parent.join(REPLICATION_OFFSET_CHECKPOINT))
            .ok()
            .and_then(|m| m.get(&tp).copied());
        let options = LoadOptions {
            clean_shutdown: parent.join(CLEAN_SHUTDOWN_FILE).exists(),
            recovery_point,
            log_start_offset: checkpoints.log_start(&tp),
            high_watermark,
            checkpoints: Some(Arc::new(checkpoints)),
            rolled: None,
        };
        Self::open_with(dir, tp, config, options)
    }

    /// Opens with explicitly supplied load options (used by [`super::LogManager`]).
    pub fn open_with(
        dir: &Path,
        tp: TopicPartition,
        config: LogConfig,
        options: LoadOptions,
    ) -> Result<Self> {
        std::fs::create_dir_all(dir).ctx("creating partition directory", dir)?;
        // Finish (or roll back) an interrupted compaction before looking at segments.
        let swapped = cleaner::recover_swaps(dir)?;
        let mut bases = Vec::new();
        let mut index_files = Vec::new();
        for entry in std::fs::read_dir(dir).ctx("listing", dir)? {
            let entry = entry.ctx("listing", dir)?;
            let name = entry.file_name();
            let Some(name) = name.to_str() else { continue };
            let path = entry.path();
            if name.ends_with(".deleted")
                || name.ends_with(".cleaned")
                || name.ends_with(".swap")
                || name.ends_with(".tmp")
            {
                // Leftovers of an interrupted delete/compaction/atomic write.
                std::fs::remove_file(&path).ctx("removing leftover", &path)?;
                continue;
            }
            match parse_segment_name(name) {
                Some((base, LOG_SUFFIX)) => bases.push(base),
                Some((base, INDEX_SUFFIX | TIME_INDEX_SUFFIX | TXN_INDEX_SUFFIX)) => {
                    index_files.push((base, path))
                }
                _ => {}
            }
        }
        bases.sort_unstable();
        for (base, path) in index_files {
            if bases.binary_search(&base).is_err() {
                tracing::info!(path = %path.display(), "removing index without segment");
                std::fs::remove_file(&path).ctx("removing orphan index", &path)?;
            }
        }

        let mut epochs = LeaderEpochCache::load(dir)?;
        let epochs_on_disk = epochs.entries().to_vec();
        // Base of the first segment recovered (CRC-checked, indexes rebuilt): producer state
        // is then loaded from a snapshot no later than it, so the transaction indexes of the
        // recovered segments are recomputed from their batches.
        let mut first_recovered: Option<i64> = None;
        let mut segments = BTreeMap::new();
        let recover_from = if options.clean_shutdown {
            i64::MAX
        } else {
            // The segment containing the recovery point and all later ones may be unflushed.
            bases
                .iter()
                .rev()
                .find(|&&b| b <= options.recovery_point)
                .copied()
                .unwrap_or(i64::MIN)
        };
        let mut recovered_any = false;
        let mut i = 0;
        while i < bases.len() {
            let base = bases[i];
            i += 1;
            let (mut seg, indexes_ok) = Segment::open_existing(dir, base)?;
            // Producer state is loaded after the segments (from a snapshot, then replaying
            // what follows it): the scan only restores segment statistics and epochs.
            let mut on_batch = |h: &BatchHeader, _: Option<EndTxnMarker>| {
                epochs.assign_in_memory(h.partition_leader_epoch, h.base_offset);
            };
            let mut stop = ScanStop::Eof;
            let mut needs_recovery =
                base >= recover_from || !indexes_ok || swapped.binary_search(&base).is_ok();
            if !needs_recovery {
                stop = seg.scan(
                    ScanMode {
                        verify_crc: false,
                        rebuild_indexes: false,
                        index_interval_bytes: config.index_interval_bytes,
                    },
                    &mut on_batch,
                )?;
                if stop != ScanStop::Eof || !seg.indexes_consistent() {
                    tracing::warn!(%tp, base, ?stop, "segment inconsistent after clean shutdown; recovering it");
                    needs_recovery = true;
                }
            }
            if needs_recovery {
                first_recovered = Some(first_recovered.map_or(base, |f| f.min(base)));
                stop = seg.scan(
                    ScanMode {
                        verify_crc: true,
                        rebuild_indexes: true,
                        index_interval_bytes: config.index_interval_bytes,
                    },
                    &mut on_batch,
                )?;
                recovered_any = true;
            }
            if let ScanStop::Invalid { position, reason } = &stop {
                tracing::warn!(
                    %tp, segment = %seg.log_path().display(), position, reason = %reason,
                    dropped_bytes = seg.size() - position,
                    "truncating log at first invalid batch"
                );
                seg.truncate_file(*position)?;
                seg.flush()?;
            }
            let truncated = stop != ScanStop::Eof;
            // A segment that does not continue where the previous one ended (e.g. its own
            // data were lost) still counts; Kafka tolerates gaps.
            segments.insert(base, seg);
            if truncated {
                // Everything after a torn batch is suspect: drop later segments.
                for &later in &bases[i..] {
                    tracing::warn!(%tp, base = later, "deleting segment after truncation point");
                    let (later_seg, _) = Segment::open_existing(dir, later)?;
                    later_seg.delete_files()?;
                }
                break;
            }
        }

        let cleaner_offset = options
            .checkpoints
            .as_ref()
            .and_then(|c| c.cleaner_offset(&tp));
        let mut log = PartitionLog {
            dir: dir.to_path_buf(),
            tp,
            config,
            segments,
            log_start_offset: 0,
            high_watermark: 0,
            recovery_point: 0,
            last_flush_ms: segment::wall_clock_ms(),
            epochs,
            producers: ProducerStateManager::default(),
            aborted: BTreeMap::new(),
            topic_id: meta::read_partition_metadata(dir)?,
            topic_id_unflushed: false,
            checkpoints: options.checkpoints,
            rolled: options.rolled,
            roll_flush_target: None,
            truncations: 0,
            state: State::Open,
            cleaner_offset,
            pending_delete_horizon: None,
        };
        // Drop empty segments that are neither the first nor the last: they carry no data.
        // An empty first segment is kept: the log cleaner leaves one when everything in it
        // was superseded, and it holds the log start offset in place.
        let first_base = log.segments.keys().next().copied();
        let empties: Vec<i64> = log
            .segments
            .iter()
            .rev()
            .skip(1)
            .filter(|(&b, s)| s.size() == 0 && Some(b) != first_base)
            .map(|(&b, _)| b)
            .collect();
        for b in empties {
            if let Some(s) = log.segments.remove(&b) {
                s.delete_files()?;
            }
        }
        if log.segments.is_empty() {
            let start = options.log_start_offset.unwrap_or(0).max(0);
            let seg = Segment::create(dir, start, segment::wall_clock_ms())?;
            log.segments.insert(start, seg);
        }
        let first_base = log.first_segment().base_offset();
        log.log_start_offset = options
            .log_start_offset
            .unwrap_or(first_base)
            .max(first_base);
        let leo = log.log_end_offset();
        if log.log_start_offset > leo {
            // Everything below the checkpointed start was deleted by the user; keep the start.
            let start = log.log_start_offset;
            log.truncate_fully_and_start_at(start)?;
        }
        let leo = log.log_end_offset();
        log.epochs.truncate_from_end(leo);
        log.epochs.truncate_from_start(log.log_start_offset);
        if log.epochs.entries() != epochs_on_disk.as_slice() {
            log.epochs.flush()?;
        }
        // Aborted transactions of the segments the producer snapshot covers come from their
        // `.txnindex` files; a malformed one is recomputed, so no snapshot beyond its segment
        // may be used.
        let mut snapshot_limit = first_recovered.unwrap_or(i64::MAX);
        for &base in log.segments.keys() {
            match txn::read_txn_index(&txn::txn_index_path(dir, base))? {
                Some(entries) if entries.is_empty() => {}
                Some(entries) => {
                    log.aborted.insert(base, entries);
                }
                None => snapshot_limit = snapshot_limit.min(base),
            }
        }
        let loading = std::time::Instant::now();
        let from = log.restore_producer_state(snapshot_limit)?;
        log.producers.expire(
            segment::wall_clock_ms(),
            log.config.producer_id_expiration_ms,
        );
        tracing::debug!(
            tp = %log.tp, snapshot = ?from, replayed_from = from.unwrap_or(first_base),
            leo, producers = log.producers.len(), elapsed_ms = loading.elapsed().as_millis() as u64,
            "loaded producer state"
        );
        if recovered_any {
            log.flush_all_segments()?;
        }
        log.recovery_point = leo;
        // Kafka's `updateHighWatermark` at load: the checkpointed value, never outside the
        // log (a torn tail may end below it; DeleteRecords may have moved the start above).
        log.high_watermark = options
            .high_watermark
            .unwrap_or(log.log_start_offset)
            .clamp(log.log_start_offset, leo);
        log.producers.on_high_watermark(log.high_watermark);
        tracing::debug!(tp = %log.tp, log_start = log.log_start_offset, leo, segments = log.segments.len(), "loaded partition log");
        Ok(log)
    }

    pub(super) fn first_segment(&self) -> &Segment {
        // Invariant: never empty (open and every deletion keep one segment).
        match self.segments.values().next() {
            Some(s) => s,
            None => unreachable!("partition log without segments"),
        }
    }

    pub(super) fn active(&self) -> &Segment {
        match self.segments.values().next_back() {
            Some(s) => s,
            None => unreachable!("partition log without segments"),
        }
    }

    fn active_mut(&mut self) -> &mut Segment {
        match self.segments.values_mut().next_back() {
            Some(s) => s,
            None => unreachable!("partition log without segments"),
        }
    }

    /// The partition this log belongs to.
    pub fn topic_partition(&self) -> &TopicPartition {
        &self.tp
    }

    /// The partition's directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Current settings.
    pub fn config(&self) -> &LogConfig {
        &self.config
    }

    /// Replaces the settings (topic config change); takes effect on the next append/retention.
    pub fn set_config(&mut self, config: LogConfig) {
        self.config = config;
    }

    /// First offset still readable.
    pub fn log_start_offset(&self) -> i64 {
        self.log_start_offset
    }

    /// Offset the next appended record will get.
    pub fn log_end_offset(&self) -> i64 {
        self.active().next_offset()
    }

    /// High watermark: equals the log end offset until replication exists (appends advance
    /// it); [`Self::set_high_watermark`] lets replication take over later.
    pub fn high_watermark(&self) -> i64 {
        self.high_watermark
    }

    /// Sets the high watermark, clamped to `[log start offset, log end offset]`.
    pub fn set_high_watermark(&mut self, hw: i64) {
        self.high_watermark = hw.clamp(self.log_start_offset, self.log_end_offset());
        self.producers.on_high_watermark(self.high_watermark);
    }

    /// Last stable offset (Kafka's): the first offset of the earliest transaction that is
    /// still open or whose marker is not yet below the high watermark (never below the log
    /// start offset), else the high watermark. read_committed consumers read below it.
    pub fn last_stable_offset(&self) -> i64 {
        match self.producers.first_unstable_offset(self.high_watermark) {
            Some(first) if first < self.high_watermark => first.max(self.log_start_offset),
            _ => self.high_watermark,
        }
    }

    /// The aborted transactions a read_committed fetch from `fetch_offset` must return
    /// with data read up to (excluding) `upper_bound_offset` (see
    /// [`LogSlice::fetch_upper_bound_offset`]): those whose range overlaps
    /// `[fetch_offset, upper_bound_offset)`, from the index of the segment holding
    /// `fetch_offset` on, stopping at the first entry whose last stable offset reaches the
    /// bound (nothing written after it can overlap), as Kafka's `collectAbortedTxns`.
    pub fn collect_aborted_transactions(
        &self,
        fetch_offset: i64,
        upper_bound_offset: i64,
    ) -> Vec<AbortedTxn> {
        let start = self
            .segments
            .range(..=fetch_offset)
            .next_back()
            .map_or(i64::MIN, |(&b, _)| b);
        let mut out = Vec::new();
        for entries in self.aborted.range(start..).map(|(_, v)| v) {
            for a in entries {
                if a.last_offset >= fetch_offset && a.first_offset < upper_bound_offset {
                    out.push(*a);
                }
                if a.last_stable_offset >= upper_bound_offset {
                    return out;
                }
            }
        }
        out
    }

    /// Every aborted transaction recorded in the log's `.txnindex` files, oldest first.
    pub fn aborted_transactions(&self) -> Vec<AbortedTxn> {
        self.aborted.values().flatten().copied().collect()
    }

    /// Offset up to which data is known to be fsynced.
    pub fn recovery_point(&self) -> i64 {
        self.recovery_point
    }

    /// Topic id from `partition.metadata`, if known.
    pub fn topic_id(&self) -> Option<Uuid> {
        self.topic_id
    }

    /// Number of segments (diagnostics/tests).
    pub fn segment_count(&self) -> usize {
        self.segments.len()
    }

    /// Base offsets of all segments, oldest first.
    pub fn segment_base_offsets(&self) -> Vec<i64> {
        self.segments.keys().copied().collect()
    }

    /// Total bytes of the segments' `.log` files.
    pub fn size_bytes(&self) -> u64 {
        self.segments.values().map(Segment::size).sum()
    }

    /// Latest leader epoch in the cache.
    pub fn latest_epoch(&self) -> Option<i32> {
        self.epochs.latest_epoch()
    }

    /// The leader epoch cache entries `(epoch, start offset)`, oldest first.
    pub fn epoch_entries(&self) -> Vec<(i32, i64)> {
        self.epochs.entries().to_vec()
    }

    /// OffsetForLeaderEpoch: `(epoch, end offset)` for the largest epoch <= `epoch`, ending
    /// where the next epoch starts (or at the log end offset for the latest epoch);
    /// `(-1, -1)` when unknown.
    pub fn end_offset_for_epoch(&self, epoch: i32) -> (i32, i64) {
        self.epochs.end_offset_for(epoch, self.log_end_offset())
    }

    pub(super) fn ensure_open(&self) -> Result<()> {
        match &self.state {
            State::Open => Ok(()),
            State::Offline(why) => Err(Error::Offline(self.tp.clone(), why.clone())),
            State::Closed => Err(Error::Closed(self.tp.clone())),
            State::Deleted => Err(Error::Deleted(self.tp.clone())),
        }
    }

    fn ensure_readable(&self) -> Result<()> {
        match &self.state {
            State::Deleted => Err(Error::Deleted(self.tp.clone())),
            _ => Ok(()),
        }
    }

    /// [`Self::append_as_leader`] for a partition whose only replica is this broker (the
    /// group coordinator's writes, tests): the high watermark moves to the new log end offset,
    /// as the ISR is the leader alone.
    pub fn append(&mut self, records: &[u8], leader_epoch: i32, now_ms: i64) -> Result<AppendInfo> {
        let info = self.append_as_leader(records, leader_epoch, now_ms)?;
        self.high_watermark = self.log_end_offset();
        self.producers.on_high_watermark(self.high_watermark);
        Ok(info)
    }

    /// Appends the control batch ending `producer_id`'s transaction as this partition's
    /// leader (what WriteTxnMarkers asks of each partition leader; Kafka's append with origin
    /// COORDINATOR). A marker with an older producer epoch than the log has seen is
    /// [`Error::InvalidProducerEpoch`], one from an older coordinator epoch
    /// [`Error::TransactionCoordinatorFenced`]. An ABORT that ends an open transaction is
    /// recorded in the active segment's `.txnindex`; either way the transaction no longer
    /// holds the last stable offset back once the high watermark passes the marker. A marker
    /// for a producer without an open transaction here is written all the same (Kafka does:
    /// the coordinator may retry), and ends nothing. The high watermark does not move.
    pub fn append_txn_marker(
        &mut self,
        producer_id: i64,
        producer_epoch: i16,
        marker: EndTxnMarker,
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        self.ensure_open()?;
        self.producers
            .check_marker(producer_id, producer_epoch, &marker)?;
        let mut data = txn::encode_marker_batch(producer_id, producer_epoch, marker, now_ms);
        let base_offset = self.log_end_offset();
        self.maybe_roll(data.len(), now_ms, base_offset, now_ms)?;
        if let Some(entries) = self.epochs.with_assigned(leader_epoch, base_offset) {
            self.epochs.commit(entries)?;
        }
        let ts = batch::patch_for_append(
            &mut data,
            base_offset,
            leader_epoch,
            self.config.timestamp_type,
            now_ms,
        );
        let Some(h) = BatchHeader::parse(&data) else {
            return Err(Error::InvalidArgument(
                "marker batch shorter than its header".into(),
            ));
        };
        let placed = [(0usize, h)];
        let interval = self.config.index_interval_bytes;
        let tp = self.tp.clone();
        if let Err((e, rolled_back)) = self.active_mut().append(&data, &placed, interval, now_ms) {
            if !rolled_back {
                tracing::error!(%tp, error = %e, "rollback of failed marker append failed; log offline");
                self.state = State::Offline(e.to_string());
            }
            return Err(e);
        }
        self.replay_appended(&placed, &data);
        Ok(AppendInfo {
            base_offset,
            last_offset: base_offset,
            log_append_time: if self.config.timestamp_type == TimestampType::LogAppendTime {
                ts
            } else {
                -1
            },
            log_start_offset: self.log_start_offset,
            duplicate: false,
        })
    }

    /// Replays batches just written to the active segment into the producer state, and
    /// records the transactions their markers ended (aborted ones in the active segment's
    /// `.txnindex`).
    fn replay_appended(&mut self, placed: &[(usize, BatchHeader)], data: &[u8]) {
        let base = self.active().base_offset();
        for (pos, h) in placed {
            let marker = if h.is_control() {
                data.get(*pos..*pos + h.size())
                    .and_then(|bytes| txn::parse_marker(bytes, h).ok())
                    .flatten()
            } else {
                None
            };
            let Some(c) = self.producers.replay(h, marker) else {
                continue;
            };
            if let Some(entry) = complete_txn(&mut self.producers, &c) {
                self.aborted.entry(base).or_default().push(entry);
                let path = txn::txn_index_path(&self.dir, base);
                if let Err(e) = txn::append_txn_index(&path, &entry) {
                    // The index is derived from the log and rewritten at the next load; the
                    // entry in memory is what fetches use meanwhile.
                    tracing::warn!(tp = %self.tp, error = %e, "cannot append to the transaction index");
                }
            }
        }
    }

    /// Rewrites the `.txnindex` of every segment whose file differs from the aborted
    /// transactions in memory (and removes those of segments without any).
    fn write_changed_txn_indexes(&self) -> Result<()> {
        for &base in self.segments.keys() {
            let path = txn::txn_index_path(&self.dir, base);
            let want = self.aborted.get(&base).map_or(&[][..], Vec::as_slice);
            let on_disk = txn::read_txn_index(&path)?;
            if on_disk.as_deref() != Some(want) {
                tracing::info!(tp = %self.tp, base, entries = want.len(), "rewriting transaction index");
                txn::write_txn_index(&path, want)?;
            }
        }
        Ok(())
    }

    /// Appends one or more v2 batches exactly as the client sent them. Validates all first;
    /// appends all or nothing. `leader_epoch` is stamped into each batch and tracked in the
    /// leader epoch cache (a new epoch adds `(epoch, base offset)`). `now_ms` is used for
    /// LogAppendTime and time-based rolling. A retried idempotent batch is not written again:
    /// its original offsets come back with `duplicate: true`. The high watermark does not
    /// move: replication (`crate::replica`) advances it once the ISR has the records.
    pub fn append_as_leader(
        &mut self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
    ) -> Result<AppendInfo> {
        self.append_as_leader_from(records, leader_epoch, now_ms, AppendOrigin::Client)
    }

    /// [`Self::append_as_leader`] for records from `origin`: a coordinator's transactional
    /// batches carry no sequence, so no sequence is checked (Kafka's append with origin
    /// COORDINATOR).
    pub fn append_as_leader_from(
        &mut self,
        records: &[u8],
        leader_epoch: i32,
        now_ms: i64,
        origin: AppendOrigin,
    ) -> Result<AppendInfo> {
        self.ensure_open()?;
        self.flush_partition_metadata()?;
        let batches = batch::validate_records(records, self.config.max_message_bytes, origin)?;
        // Kafka's LogValidator reads every record of every batch; a compacted topic also
        // needs a key on each. Streaming: never more than one record's framing in memory.
        for b in &batches {
            let bytes = &records[b.pos..b.pos + b.header.size()];
            let missing_key = records::validate_client_batch(bytes, &b.header)?;
            if missing_key && self.config.cleanup_compact {
                return Err(Error::MissingKeyOnCompactedTopic(self.tp.clone()));
            }
        }
        let log_append = self.config.timestamp_type == TimestampType::LogAppendTime;
        if batches.is_empty() {
            return Ok(AppendInfo {
                base_offset: -1,
                last_offset: -1,
                log_append_time: -1,
                log_start_offset: self.log_start_offset,
                duplicate: false,
            });
        }

        // Producer state: duplicates short-circuit, violations reject the whole request.
        let mut pending = PendingUpdates::default();
        let mut next = self.log_end_offset();
        for b in &batches {
            if b.header.has_producer_id() {
                match self.producers.check_from(&pending, &b.header, origin)? {
                    SeqCheck::Duplicate(dup) => {
                        tracing::debug!(tp = %self.tp, producer_id = b.header.producer_id, first_offset = dup.first_offset, "duplicate batch from idempotent producer");
                        return Ok(AppendInfo {
                            base_offset: dup.first_offset,
                            last_offset: dup.last_offset,
                            log_append_time: if log_append { dup.timestamp } else { -1 },
                            log_start_offset: self.log_start_offset,
                            duplicate: true,
                        });
                    }
                    SeqCheck::Append => {
                        let ts = if log_append {
                            now_ms
                        } else {
                            b.header.max_timestamp
                        };
                        self.producers.stage(&mut pending, &b.header, next, ts);
                    }
                }
            }
            next += i64::from(b.header.last_offset_delta) + 1;
        }
        let base_offset = self.log_end_offset();
        let last_offset = next - 1;

        // Roll first so the whole request lands in one segment (as Kafka does).
        let max_ts_in_request = if log_append {
            now_ms
        } else {
            batches
                .iter()
                .map(|b| b.header.max_timestamp)
                .max()
                .unwrap_or(-1)
        };
        self.maybe_roll(records.len(), max_ts_in_request, last_offset, now_ms)?;

        // Persist a new leader epoch before the data, so the file never lags the log.
        if let Some(entries) = self.epochs.with_assigned(leader_epoch, base_offset) {
            self.epochs.commit(entries)?;
        }

        let mut data = records.to_vec();
        let mut placed = Vec::with_capacity(batches.len());
        let mut offset = base_offset;
        for b in &batches {
            let end = b.pos + b.header.size();
            batch::patch_for_append(
                &mut data[b.pos..end],
                offset,
                leader_epoch,
                self.config.timestamp_type,
                now_ms,
            );
            let mut h = b.header;
            h.base_offset = offset;
            h.partition_leader_epoch = leader_epoch;
            if log_append {
                h.max_timestamp = now_ms;
            }
            placed.push((b.pos, h));
            offset = h.next_offset();
        }
        let interval = self.config.index_interval_bytes;
        let tp = self.tp.clone();
        if let Err((e, rolled_back)) = self.active_mut().append(&data, &placed, interval, now_ms) {
            if !rolled_back {
                tracing::error!(%tp, error = %e, "rollback of failed append failed; log offline");
                self.state = State::Offline(e.to_string());
            } else {
                tracing::warn!(%tp, error = %e, "append failed and was rolled back");
            }
            return Err(e);
        }
        self.producers.commit(pending);
        Ok(AppendInfo {
            base_offset,
            last_offset,
            log_append_time: if log_append { now_ms } else { -1 },
            log_start_offset: self.log_start_offset,
            duplicate: false,
        })
    }

    /// Appends batches fetched from the partition's leader (Kafka's `appendAsFollower`): they
    /// keep the leader's offsets, leader epochs and timestamps; nothing is re-stamped. Each
    /// batch's framing and CRC are checked, and its offsets must continue the log: the first
    /// batch starts at the log end offset (else [`Error::InvalidArgument`]: the follower
    /// must truncate or reset first) and each batch starts where the previous one ended.
    /// A trailing partial batch (a fetch cut inside it) is ignored. The leader epoch cache
    /// learns each new epoch from the batches, and idempotent producer state is updated
    /// without sequence checks (the leader made them). The high watermark does not move.
    /// Returns the offsets appended (`base_offset == -1` when nothing was).
    pub fn append_as_follower(&mut self, records: &[u8], now_ms: i64) -> Result<AppendInfo> {
        self.ensure_open()?;
        self.flush_partition_metadata()?;
        let mut placed: Vec<(usize, BatchHeader)> = Vec::new();
        let mut pos = 0usize;
        let mut next = self.log_end_offset();
        while pos + batch::HEADER_SIZE <= records.len() {
            let Some(h) = BatchHeader::parse(&records[pos..]) else {
                break;
            };
            if h.magic != 2 {
                return Err(Error::UnsupportedMessageFormat(h.magic));
            }
            let size = h.size();
            if size < batch::HEADER_SIZE {
                return Err(Error::CorruptMessage(format!(
                    "replicated batch at position {pos} declares {size} bytes"
                )));
            }
            if pos + size > records.len() {
                break;
            }
            let bytes = &records[pos..pos + size];
            if !batch::crc_matches(&h, bytes) {
                return Err(Error::CorruptMessage(format!(
                    "replicated batch at offset {} fails its CRC",
                    h.base_offset
                )));
            }
            if h.base_offset != next || h.last_offset_delta < 0 {
                return Err(Error::InvalidArgument(format!(
                    "{}: replicated batch covers offsets {}..={} but the log ends at {next}",
                    self.tp,
                    h.base_offset,
                    h.last_offset()
                )));
            }
            if self.config.max_message_bytes >= 0 && size > self.config.max_message_bytes as usize {
                // Kafka accepts what the leader accepted; the limit applies to producers.
                tracing::debug!(tp = %self.tp, size, "replicated batch larger than max.message.bytes");
            }
            next = h.next_offset();
            placed.push((pos, h));
            pos += size;
        }
        let Some(&(_, first)) = placed.first() else {
            return Ok(AppendInfo {
                base_offset: -1,
                last_offset: -1,
                log_append_time: -1,
                log_start_offset: self.log_start_offset,
                duplicate: false,
            });
        };
        let data = &records[..pos];
        let max_ts = placed
            .iter()
            .map(|(_, h)| h.max_timestamp)
            .max()
            .unwrap_or(-1);
        self.maybe_roll(data.len(), max_ts, next - 1, now_ms)?;
        // Persist new leader epochs before the data, so the file never lags the log.
        let mut entries: Option<Vec<(i32, i64)>> = None;
        for (_, h) in &placed {
            let current = match &entries {
                Some(v) => v.last().map(|&(e, _)| e),
                None => self.epochs.latest_epoch(),
            };
            if h.partition_leader_epoch >= 0 && current.is_none_or(|e| h.partition_leader_epoch > e)
            {
                let mut v = entries
                    .take()
                    .unwrap_or_else(|| self.epochs.entries().to_vec());
                v.retain(|&(_, o)| o <= h.base_offset);
                v.push((h.partition_leader_epoch, h.base_offset));
                entries = Some(v);
            }
        }
        if let Some(v) = entries {
            self.epochs.commit(v)?;
        }
        let interval = self.config.index_interval_bytes;
        let tp = self.tp.clone();
        if let Err((e, rolled_back)) = self.active_mut().append(data, &placed, interval, now_ms) {
            if !rolled_back {
                tracing::error!(%tp, error = %e, "rollback of failed follower append failed; log offline");
                self.state = State::Offline(e.to_string());
            } else {
                tracing::warn!(%tp, error = %e, "follower append failed and was rolled back");
            }
            return Err(e);
        }
        self.replay_appended(&placed, data);
        Ok(AppendInfo {
            base_offset: first.base_offset,
            last_offset: next - 1,
            log_append_time: -1,
            log_start_offset: self.log_start_offset,
            duplicate: false,
        })
    }

    /// Records that leader epoch `epoch` starts at `start_offset` (the log end offset when
    /// this broker becomes leader, Kafka's `assignEpochStartOffset`), so OffsetForLeaderEpoch
    /// answers for the new epoch before anything is appended in it. An epoch not newer than
    /// the latest known one changes nothing.
    pub fn assign_epoch_start_offset(&mut self, epoch: i32, start_offset: i64) -> Result<()> {
        self.ensure_open()?;
        if let Some(entries) = self.epochs.with_assigned(epoch, start_offset) {
            self.epochs.commit(entries)?;
        }
        Ok(())
    }

    /// Kafka's `shouldRoll`: size, age (in record time), full index, or relative offset
    /// overflow. An empty active segment is never rolled.
    fn maybe_roll(
        &mut self,
        incoming_bytes: usize,
        max_timestamp: i64,
        last_offset: i64,
        now_ms: i64,
    ) -> Result<()> {
        let seg = self.active();
        if seg.size() == 0 {
            return Ok(());
        }
        let c = &self.config;
        let should = seg.size() + incoming_bytes as u64 > c.segment_bytes
            || seg.time_waited_for_roll(now_ms, max_timestamp) > c.max_segment_ms()
            || seg.indexes_full(c.segment_index_bytes)
            || last_offset - seg.base_offset() > i64::from(i32::MAX);
        if should {
            self.roll(now_ms)?;
        }
        Ok(())
    }

    /// Closes the active segment and starts a new one at the log end offset. The old
    /// segment's fsync (which lets the recovery point advance to the new base) is left to
    /// the log manager's flusher when the log has one, as Kafka does on its scheduler: the
    /// append that rolls, often on an async worker, does not wait for the disk. A log
    /// opened on its own fsyncs at once.
    pub fn roll(&mut self, now_ms: i64) -> Result<()> {
        self.ensure_open()?;
        let leo = self.log_end_offset();
        if self.active().size() == 0 {
            return Ok(());
        }
        let deferred = self.rolled.is_some();
        let old = self.active_mut();
        old.on_become_inactive()?;
        if !deferred {
            old.flush()?;
        }
        let seg = Segment::create(&self.dir, leo, now_ms)?;
        self.segments.insert(leo, seg);
        // Kafka snapshots the producer state at every roll, so a load replays at most the
        // segments after the latest one; a deferred roll leaves the snapshot's fsync to the
        // roll flush like the segment's.
        self.take_producer_snapshot(!deferred);
        match &self.rolled {
            Some(rolled) => {
                self.roll_flush_target = Some(self.roll_flush_target.map_or(leo, |t| t.max(leo)));
                lock(&rolled.0).push(self.tp.clone());
            }
            None => {
                checkpoint::sync_dir(&self.dir)?;
                self.recovery_point = self.recovery_point.max(leo);
            }
        }
        tracing::debug!(tp = %self.tp, base_offset = leo, "rolled new segment");
        Ok(())
    }

    /// Takes the pending fsync of rolled segments (`None` if there is none any more, e.g.
    /// a flush or close did it): duplicated handles on the segments from the recovery point
    /// up to the last roll. Run it with [`RollFlush::sync`] without the lock, then
    /// [`Self::finish_roll_flush`].
    pub(crate) fn begin_roll_flush(&mut self) -> Result<Option<RollFlush>> {
        let Some(target) = self.roll_flush_target.take() else {
            return Ok(None);
        };
        if self.state != State::Open || target <= self.recovery_point {
            return Ok(None);
        }
        let from = self
            .segments
            .range(..=self.recovery_point)
            .next_back()
            .map_or(i64::MIN, |(&b, _)| b);
        let mut files = Vec::new();
        for seg in self.segments.range(from..target).map(|(_, s)| s) {
            files.extend(seg.sync_handles()?);
        }
        // The snapshots the rolls took (at the bases of the segments they created).
        for (&base, _) in self.segments.range(from + 1..=target) {
            let path = producer_snapshot::snapshot_path(&self.dir, base);
            if let Ok(file) = File::open(&path) {
                files.push((file, path));
            }
        }
        Ok(Some(RollFlush {
            target,
            files,
            dir: self.dir.clone(),
            truncations: self.truncations,
        }))
    }

    /// Advances the recovery point after a successful [`RollFlush::sync`], unless the log
    /// was truncated meanwhile.
    pub(crate) fn finish_roll_flush(&mut self, flush: &RollFlush) {
        if flush.truncations != self.truncations || flush.target <= self.recovery_point {
            return;
        }
        self.recovery_point = flush.target.min(self.log_end_offset());
        self.last_flush_ms = segment::wall_clock_ms();
    }

    /// Bytes of whole batches starting with the batch that contains `offset`, never
    /// including a batch that reaches `max_offset` (exclusive; normally the high watermark),
    /// up to `max_bytes` — but if `min_one_batch` the first batch is returned whole even if
    /// larger. `offset == log end offset` gives no records; `offset < log start offset` or
    /// `> log end offset` is [`Error::OffsetOutOfRange`]. Unlike a fetch, continues across
    /// segment boundaries: reads what [`Self::read_regions`] locates, one segment at a time
    /// (holding one segment file open at a time).
    pub fn read(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<FetchData> {
        let slice = self.read_regions(offset, max_bytes, max_offset, min_one_batch)?;
        let (high_watermark, log_start_offset, last_stable_offset) = (
            slice.high_watermark,
            slice.log_start_offset,
            slice.last_stable_offset,
        );
        let mut out = Vec::with_capacity(slice.size);
        let mut next = slice;
        loop {
            let start = out.len();
            for r in &next.regions {
                r.read_to(&mut out).ctx("reading", &self.dir)?;
            }
            if out.len() == start || out.len() >= max_bytes {
                break;
            }
            // The offset after the last batch just read: batches are whole, and their
            // lengths were checked when the region was located.
            let mut pos = start;
            let mut cursor = None;
            while let Some(h) = out.get(pos..).and_then(BatchHeader::parse) {
                cursor = Some(h.next_offset());
                pos += h.size();
            }
            let Some(cursor) = cursor else { break };
            next = self.read_regions(cursor, max_bytes - out.len(), max_offset, false)?;
        }
        Ok(FetchData {
            records: Bytes::from(out),
            high_watermark,
            log_start_offset,
            last_stable_offset,
        })
    }

    /// Where the batches a fetch returns are, without reading them: cost is index binary
    /// searches and a few header reads per segment touched, independent of the log's length
    /// and of `max_bytes`. As in Kafka (`LocalLog.read`), the batches come from one segment:
    /// the first, from the one holding `offset` on, that has any to give. So a fetch holds
    /// at most one segment file open per partition until it is sent, however small the
    /// segments; the consumer's next fetch continues in the next segment.
    pub fn read_regions(
        &self,
        offset: i64,
        max_bytes: usize,
        max_offset: i64,
        min_one_batch: bool,
    ) -> Result<LogSlice> {
        self.ensure_readable()?;
        let leo = self.log_end_offset();
        if offset < self.log_start_offset || offset > leo {
            return Err(Error::OffsetOutOfRange {
                tp: self.tp.clone(),
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: leo,
            });
        }
        let mut regions = Vec::new();
        let mut size = 0usize;
        let mut more = MoreData::None;
        let mut fetch_upper_bound_offset = None;
        if offset < leo && offset < max_offset {
            let start_base = self
                .segments
                .range(..=offset)
                .next_back()
                .map_or(i64::MIN, |(&b, _)| b);
            let mut cursor = offset;
            for (&base, seg) in self.segments.range(start_base..) {
                let budget = max_bytes.saturating_sub(size);
                let first = size == 0;
                if budget == 0 && !(first && min_one_batch) {
                    break;
                }
                let (region, cont, cut) =
                    seg.slice(cursor, budget, max_offset, first && min_one_batch)?;
                if region.is_some() || cut {
                    // Kafka's DelayedFetch: a read from a segment older than the one its
                    // bound (high watermark or log end) lies in completes a waiting fetch.
                    let later = self.segments.range(base + 1..).next().is_some()
                        && max_offset.min(leo) >= seg.next_offset();
                    more = if later {
                        MoreData::LaterSegment
                    } else if cut {
                        MoreData::InSegment
                    } else {
                        MoreData::None
                    };
                }
                if let Some(region) = region {
                    // Kafka's `fetchUpperBoundOffset`: the offset of the first indexed batch
                    // at or after the end of what was read, else the next segment's base or
                    // the log end: no record read lies at or beyond it.
                    let end = region.position + region.len as u64;
                    fetch_upper_bound_offset =
                        Some(seg.upper_bound_offset(end).unwrap_or_else(|| {
                            self.segments
                                .range(base + 1..)
                                .next()
                                .map_or(leo, |(&b, _)| b)
                        }));
                    size += region.len;
                    regions.push(region);
                    break;
                }
                if !cont {
                    break;
                }
                cursor = cursor.max(seg.next_offset());
            }
        }
        Ok(LogSlice {
            regions,
            size,
            more,
            high_watermark: self.high_watermark,
            log_start_offset: self.log_start_offset,
            last_stable_offset: self.last_stable_offset(),
            fetch_upper_bound_offset,
        })
    }

    /// Returns `(timestamp, offset)` of the stored batch's first record satisfying
    /// `pred(timestamp, offset)`. For LogAppendTime batches every record carries the batch's
    /// max timestamp, as Kafka's record iterator reports, so when the batch's first offset
    /// already qualifies the header answers alone; otherwise the records are streamed
    /// (offsets and timestamps only, stopping at the first match), never inflated whole.
    fn find_record(
        seg: &Segment,
        position: u64,
        h: &BatchHeader,
        pred: impl Fn(i64, i64) -> bool,
    ) -> Result<Option<(i64, i64)>> {
        if h.is_log_append_time() && h.records_count > 0 && pred(h.max_timestamp, h.base_offset) {
            return Ok(Some((h.max_timestamp, h.base_offset)));
        }
        let bytes = seg.read_batch(position, h)?;
        let fallback = |e: Error| {
            // Fall back to the batch granularity rather than failing ListOffsets.
            tracing::warn!(segment = %seg.log_path().display(), position, error = %e, "cannot decode batch; answering with its base offset");
            Some((h.max_timestamp, h.base_offset))
        };
        let mut stream = match RecordStream::new(&bytes, h) {
            Ok(s) => s,
            Err(e) => return Ok(fallback(e)),
        };
        loop {
            match stream.next_record(Detail::Skip) {
                Ok(Some(r)) => {
                    let ts = if h.is_log_append_time() {
                        h.max_timestamp
                    } else {
                        r.timestamp
                    };
                    if pred(ts, r.offset) {
                        return Ok(Some((ts, r.offset)));
                    }
                }
                Ok(None) => return Ok(None),
                Err(e) => return Ok(fallback(e)),
            }
        }
    }

    /// ListOffsets by timestamp: the first record at or after the log start offset whose
    /// timestamp is >= `ts`, as `(timestamp, offset)`. Uses the time index to skip ahead,
    /// scans batch headers, and decodes only the one batch that matches.
    pub fn offset_for_timestamp(&self, ts: i64) -> Result<Option<(i64, i64)>> {
        self.ensure_readable()?;
        let lso = self.log_start_offset;
        for seg in self.segments.values() {
            if seg.size() == 0 || seg.max_timestamp() < ts || seg.next_offset() <= lso {
                continue;
            }
            // Both bounds are safe: batches before the time index hit are older than `ts`,
            // batches before the offset index hit end below the log start.
            let start = seg
                .time_lookup_start(ts)
                .max(seg.offset_lookup_position(lso.max(seg.base_offset())));
            let found =
                seg.find_from(start, |h| h.max_timestamp >= ts && h.last_offset() >= lso)?;
            if let Some((pos, h)) = found {
                if let Some(hit) = Self::find_record(seg, pos, &h, |t, o| t >= ts && o >= lso)? {
                    return Ok(Some(hit));
                }
                // Only records below the log start matched; keep looking further on.
                let mut next_pos = pos + h.size() as u64;
                while let Some((p, h2)) = seg.find_from(next_pos, |h| h.max_timestamp >= ts)? {
                    if let Some(hit) = Self::find_record(seg, p, &h2, |t, o| t >= ts && o >= lso)? {
                        return Ok(Some(hit));
                    }
                    next_pos = p + h2.size() as u64;
                }
            }
        }
        Ok(None)
    }

    /// ListOffsets MAX_TIMESTAMP (-3): the largest timestamp in the log and the offset of the
    /// first record carrying it; `None` for an empty log.
    pub fn max_timestamp(&self) -> Result<Option<(i64, i64)>> {
        self.ensure_readable()?;
        let mut best: Option<&Segment> = None;
        for seg in self.segments.values().filter(|s| s.size() > 0) {
            if best.is_none_or(|b| seg.max_timestamp() > b.max_timestamp()) {
                best = Some(seg);
            }
        }
        let Some(seg) = best else { return Ok(None) };
        let max = seg.max_timestamp();
        let start = seg.offset_lookup_position(seg.offset_of_max_timestamp());
        let found = match seg.find_from(start, |h| h.max_timestamp == max)? {
            Some(f) => Some(f),
            None => seg.find_from(0, |h| h.max_timestamp == max)?,
        };
        let Some((pos, h)) = found else {
            return Ok(None);
        };
        Ok(Self::find_record(seg, pos, &h, |t, _| t == max)?.or(Some((max, h.base_offset))))
    }

    /// DeleteRecords: moves the log start offset to `offset` (<= high watermark, else
    /// [`Error::OffsetOutOfRange`]), deletes segments wholly below it and persists the new
    /// start in the log dir's `log-start-offset-checkpoint`. Returns the log start offset.
    pub fn delete_records_before(&mut self, offset: i64) -> Result<i64> {
        self.ensure_open()?;
        if offset < 0 || offset > self.high_watermark {
            return Err(Error::OffsetOutOfRange {
                tp: self.tp.clone(),
                offset,
                log_start_offset: self.log_start_offset,
                log_end_offset: self.high_watermark,
            });
        }
        if offset <= self.log_start_offset {
            return Ok(self.log_start_offset);
        }
        self.log_start_offset = offset;
        tracing::info!(tp = %self.tp, log_start_offset = offset, "log start offset moved by DeleteRecords");
        self.delete_segments_below_start()?;
        self.after_log_start_moved()?;
        Ok(self.log_start_offset)
    }

    /// Deletes leading segments whose every offset is below the log start (never the active).
    fn delete_segments_below_start(&mut self) -> Result<usize> {
        let bases: Vec<i64> = self.segments.keys().copied().collect();
        let mut deleted = 0;
        for w in bases.windows(2) {
            if w[1] <= self.log_start_offset {
                self.delete_segment(w[0])?;
                deleted += 1;
            } else {
                break;
            }
        }
        Ok(deleted)
    }

    pub(super) fn delete_segment(&mut self, base: i64) -> Result<()> {
        self.aborted.remove(&base);
        if let Some(seg) = self.segments.remove(&base) {
            tracing::info!(tp = %self.tp, base_offset = base, size = seg.size(), "deleting segment");
            seg.delete_files()?;
        }
        Ok(())
    }

    fn after_log_start_moved(&mut self) -> Result<()> {
        let first = self.first_segment().base_offset();
        self.log_start_offset = self.log_start_offset.max(first);
        if self.epochs.truncate_from_start(self.log_start_offset) {
            self.epochs.flush()?;
        }
        self.producers.on_log_start_offset(self.log_start_offset);
        // Snapshots go with the segments below them (Kafka deletes the one at a deleted
        // segment's base); the one at the first segment's base stays: it holds the state of
        // producers whose batches were just deleted.
        self.delete_snapshots(|offset| offset < first);
        self.persist_log_start()
    }

    fn persist_log_start(&self) -> Result<()> {
        if let Some(c) = &self.checkpoints {
            // Like Kafka, only starts ahead of the first segment need remembering.
            let first = self.first_segment().base_offset();
            let value = (self.log_start_offset > first).then_some(self.log_start_offset);
            c.set_log_start(&self.tp, value)?;
        }
        Ok(())
    }

    /// Retention per config: deletes whole closed segments (never the active one) whose
    /// newest record is older than `retention.ms`, then oldest ones while the log exceeds
    /// `retention.bytes`; first rolls the active segment if `segment.ms` has elapsed and it
    /// is non-empty. Also expires producer state idle for `producer.id.expiration.ms`
    /// ([`LogConfig::producer_id_expiration_ms`]). Returns the number of segments deleted.
    pub fn apply_retention(&mut self, now_ms: i64) -> Result<usize> {
        self.ensure_open()?;
        let seg = self.active();
        // Record-time age (Kafka's rule) and wall-clock age must both exceed segment.ms: a
        // producer writing old timestamps must not cause a roll at every retention tick.
        let segment_ms = self.config.max_segment_ms();
        if seg.size() > 0
            && seg.time_waited_for_roll(now_ms, now_ms) > segment_ms
            && seg.wall_clock_age(now_ms) > segment_ms
        {
            self.roll(now_ms)?;
        }
        let expired = self
            .producers
            .expire(now_ms, self.config.producer_id_expiration_ms);
        if expired > 0 {
            tracing::debug!(tp = %self.tp, expired, "expired idle idempotent producers");
        }
        if !self.config.cleanup_delete {
            return Ok(0);
        }
        let mut deleted = 0;
        if self.config.retention_ms >= 0 {
            let retention = self.config.retention_ms;
            deleted +=
                self.delete_closed_while(|s, _| now_ms - s.largest_timestamp() > retention)?;
        }
        if self.config.retention_bytes >= 0 {
            let mut excess = self.size_bytes() as i64 - self.config.retention_bytes;
            deleted += self.delete_closed_while(|s, _| {
                if excess - s.size() as i64 >= 0 {
                    excess -= s.size() as i64;
                    true
                } else {
                    false
                }
            })?;
        }
        if deleted > 0 {
            self.log_start_offset = self
                .log_start_offset
                .max(self.first_segment().base_offset());
            self.after_log_start_moved()?;
        }
        Ok(deleted)
    }

    /// Deletes closed segments from the oldest while `pred` holds and the segment is below
    /// the high watermark (a consumer can't have missed data it could not yet read).
    fn delete_closed_while(
        &mut self,
        mut pred: impl FnMut(&Segment, i64) -> bool,
    ) -> Result<usize> {
        let mut deleted = 0;
        loop {
            if self.segments.len() < 2 {
                break;
            }
            let mut it = self.segments.values();
            let (Some(first), Some(second)) = (it.next(), it.next()) else {
                break;
            };
            let upper = second.base_offset();
            if upper > self.high_watermark || !pred(first, upper) {
                break;
            }
            let base = first.base_offset();
            self.delete_segment(base)?;
            deleted += 1;
        }
        Ok(deleted)
    }

    /// Truncates the log so it ends before `offset` (whole batches: if `offset` is inside a
    /// batch, that batch goes too). Used by replication and recovery.
    pub fn truncate_to(&mut self, offset: i64) -> Result<()> {
        self.ensure_open()?;
        if offset >= self.log_end_offset() {
            return Ok(());
        }
        if offset < self.first_segment().base_offset() || offset < self.log_start_offset {
            return self.truncate_fully_and_start_at(offset.max(0));
        }
        let doomed: Vec<i64> = self.segments.range(offset + 1..).map(|(&b, _)| b).collect();
        for b in doomed {
            if self.segments.len() > 1 {
                self.delete_segment(b)?;
            }
        }
        let interval = self.config.index_interval_bytes;
        let removed = self.active_mut().truncate_to(offset, interval)?;
        tracing::info!(tp = %self.tp, offset, removed_bytes = removed, leo = self.log_end_offset(), "truncated log");
        if self.cleaner_offset.is_some_and(|c| c > offset) {
            self.set_cleaner_offset(Some(offset))?;
        }
        self.after_truncation()
    }

    fn after_truncation(&mut self) -> Result<()> {
        self.truncations += 1;
        let leo = self.log_end_offset();
        if self.epochs.truncate_from_end(leo) {
            self.epochs.flush()?;
        }
        self.restore_producer_state(leo)?;
        self.high_watermark = self.high_watermark.min(leo);
        self.recovery_point = self.recovery_point.min(leo);
        Ok(())
    }

    /// Deletes every segment and restarts the log empty at `offset`. The new segment is
    /// created before the old ones go, so the log always has an active segment even if a
    /// file operation fails half-way.
    pub fn truncate_fully_and_start_at(&mut self, offset: i64) -> Result<()> {
        let interval = self.config.index_interval_bytes;
        match self.segments.get_mut(&offset) {
            Some(seg) => {
                seg.truncate_file(0)?;
                seg.scan(
                    ScanMode {
                        verify_crc: false,
                        rebuild_indexes: true,
                        index_interval_bytes: interval,
                    },
                    &mut |_, _| {},
                )?;
            }
            None => {
                let seg = Segment::create(&self.dir, offset, segment::wall_clock_ms())?;
                self.segments.insert(offset, seg);
            }
        }
        let others: Vec<i64> = self
            .segments
            .keys()
            .copied()
            .filter(|&b| b != offset)
            .collect();
        for b in others {
            self.delete_segment(b)?;
        }
        self.log_start_offset = offset;
        if !self.epochs.entries().is_empty() {
            self.epochs.commit(Vec::new())?;
        }
        self.producers.clear();
        self.delete_snapshots(|_| true);
        self.aborted.clear();
        // A segment reused at `offset` was emptied: so is its transaction index.
        txn::write_txn_index(&txn::txn_index_path(&self.dir, offset), &[])?;
        self.high_watermark = offset;
        self.recovery_point = offset;
        self.set_cleaner_offset(None)?;
        self.truncations += 1;
        tracing::info!(tp = %self.tp, offset, "log truncated fully");
        self.persist_log_start()
    }

    /// Rebuilds the producer state (Kafka's `rebuildProducerState`): deletes snapshots
    /// beyond the log end offset or below the first segment, loads the latest snapshot at or
    /// below `limit` that decodes (a damaged one is logged and deleted, and the next older
    /// one tried), then replays the batches from its offset (from the first segment without
    /// one) and recomputes the aborted transactions whose marker follows it: those before it
    /// are kept as they are in `self.aborted` (read from the `.txnindex` files at load).
    /// Rewrites the `.txnindex` files that change. Returns the offset of the snapshot used.
    fn restore_producer_state(&mut self, limit: i64) -> Result<Option<i64>> {
        let leo = self.log_end_offset();
        let first = self.first_segment().base_offset();
        let mut snapshots = producer_snapshot::list(&self.dir)?;
        snapshots.retain(|&offset, path| {
            let keep = (first..=leo).contains(&offset);
            if !keep {
                tracing::info!(tp = %self.tp, offset, "deleting producer snapshot outside the log");
                if let Err(e) = producer_snapshot::delete(path) {
                    tracing::warn!(tp = %self.tp, error = %e, "cannot delete producer snapshot");
                }
            }
            keep
        });
        self.producers.clear();
        let mut loaded = None;
        for (&offset, path) in snapshots.range(..=limit.min(leo)).rev() {
            match producer_snapshot::read(path) {
                Ok(Ok(entries)) => {
                    self.producers.load_snapshot(&entries);
                    loaded = Some(offset);
                    break;
                }
                Ok(Err(reason)) => {
                    // Never trusted, never fatal: the log still holds the batches to replay.
                    tracing::warn!(tp = %self.tp, path = %path.display(), %reason, "ignoring corrupt producer snapshot");
                    if let Err(e) = producer_snapshot::delete(path) {
                        tracing::warn!(tp = %self.tp, error = %e, "cannot delete producer snapshot");
                    }
                }
                Err(e) => {
                    tracing::warn!(tp = %self.tp, error = %e, "ignoring unreadable producer snapshot")
                }
            }
        }
        let from = loaded.unwrap_or(i64::MIN);
        for entries in self.aborted.values_mut() {
            entries.retain(|a| a.last_offset < from);
        }
        self.aborted.retain(|_, entries| !entries.is_empty());
        let producers = &mut self.producers;
        for (&base, seg) in &self.segments {
            if seg.next_offset() <= from {
                continue;
            }
            let mut seg_aborted = Vec::new();
            // The offset index leads to the batch holding `from` (or one before it).
            let mut pos = if base < from {
                seg.offset_lookup_position(from)
            } else {
                0
            };
            loop {
                // One buffered pass over the data batches, stopping at each control batch:
                // its marker is in its record.
                let found = seg.find_from(pos, |h| {
                    if h.is_control() {
                        return h.last_offset() >= from;
                    }
                    if h.last_offset() >= from {
                        producers.replay(h, None);
                    }
                    false
                })?;
                let Some((p, h)) = found else { break };
                let bytes = seg.read_batch(p, &h)?;
                let marker = txn::parse_marker(&bytes, &h).unwrap_or_else(|e| {
                    tracing::warn!(tp = %self.tp, offset = h.base_offset, error = %e, "ignoring malformed control batch");
                    None
                });
                if let Some(c) = producers.replay(&h, marker) {
                    seg_aborted.extend(complete_txn(producers, &c));
                }
                pos = p + h.size() as u64;
            }
            if !seg_aborted.is_empty() {
                self.aborted.entry(base).or_default().extend(seg_aborted);
            }
        }
        self.producers.on_log_start_offset(self.log_start_offset);
        self.producers.on_high_watermark(self.high_watermark);
        self.write_changed_txn_indexes()?;
        Ok(loaded)
    }

    /// Writes a snapshot of the producer state at the log end offset (Kafka's
    /// `takeSnapshot`), fsynced if `sync`. A failure is logged, not returned: a missing
    /// snapshot only means a longer replay at the next load.
    fn take_producer_snapshot(&self, sync: bool) {
        let offset = self.log_end_offset();
        let entries = self.producers.snapshot();
        match producer_snapshot::write(&self.dir, offset, &entries, sync) {
            Ok(()) => {
                tracing::debug!(tp = %self.tp, offset, producers = entries.len(), "wrote producer snapshot")
            }
            Err(e) => {
                tracing::warn!(tp = %self.tp, offset, error = %e, "cannot write producer snapshot")
            }
        }
    }

    /// Deletes the snapshot files whose offset matches `doomed` (failures are logged: a stale
    /// snapshot is deleted at the next load, as it lies outside the log).
    fn delete_snapshots(&self, doomed: impl Fn(i64) -> bool) {
        let snapshots = match producer_snapshot::list(&self.dir) {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(tp = %self.tp, error = %e, "cannot list producer snapshots");
                return;
            }
        };
        for (offset, path) in snapshots {
            if doomed(offset) {
                if let Err(e) = producer_snapshot::delete(&path) {
                    tracing::warn!(tp = %self.tp, error = %e, "cannot delete producer snapshot");
                }
            }
        }
    }

    fn flush_all_segments(&mut self) -> Result<()> {
        for seg in self.segments.values() {
            seg.flush()?;
        }
        checkpoint::sync_dir(&self.dir)
    }

    /// Messages appended since the last flush: log end offset minus recovery point
    /// (Kafka's `unflushedMessages`, which counts offsets).
    pub fn unflushed_messages(&self) -> i64 {
        (self.log_end_offset() - self.recovery_point).max(0)
    }

    /// True once `flush.messages` messages are unflushed: Kafka flushes such a log before
    /// the append that reached the count is acknowledged. The caller flushes (off the async
    /// workers: an fsync can take long).
    pub fn flush_due_by_messages(&self) -> bool {
        self.unflushed_messages() >= self.config.flush_messages
    }

    /// True if the log flusher must flush this log at `now_ms`: something is unflushed
    /// and the last flush is at least `flush.ms` old (Kafka's `LogManager.flushDirtyLogs`).
    pub fn flush_due_by_time(&self, now_ms: i64) -> bool {
        self.unflushed_messages() > 0
            && now_ms.saturating_sub(self.last_flush_ms) >= self.config.flush_ms
    }

    /// Wall-clock time of the last flush that advanced the recovery point (or of opening).
    pub fn last_flush_ms(&self) -> i64 {
        self.last_flush_ms
    }

    /// fsyncs every segment that may hold unflushed data and advances the recovery point
    /// to the log end offset.
    pub fn flush(&mut self) -> Result<()> {
        if matches!(self.state, State::Deleted) {
            return Ok(());
        }
        self.flush_partition_metadata()?;
        let advances = self.recovery_point < self.log_end_offset();
        let rp = self.recovery_point;
        let from = self
            .segments
            .range(..=rp)
            .next_back()
            .map_or(i64::MIN, |(&b, _)| b);
        for seg in self.segments.range(from..).map(|(_, s)| s) {
            seg.flush()?;
        }
        checkpoint::sync_dir(&self.dir)?;
        self.recovery_point = self.log_end_offset();
        self.roll_flush_target = self.roll_flush_target.filter(|&t| t > self.recovery_point);
        if advances {
            self.last_flush_ms = segment::wall_clock_ms();
        }
        Ok(())
    }

    /// Clean close: records the active segment's max timestamp in its time index, flushes,
    /// and refuses further writes.
    pub fn close(&mut self) -> Result<()> {
        if matches!(self.state, State::Deleted | State::Closed) {
            return Ok(());
        }
        self.active_mut().on_become_inactive()?;
        self.flush()?;
        // The next load starts from this snapshot and replays nothing (Kafka's close).
        self.take_producer_snapshot(true);
        self.state = State::Closed;
        Ok(())
    }

    /// Records the topic id, to be written to `partition.metadata` by
    /// [`Self::flush_partition_metadata`] (Kafka's `PartitionMetadataFile.record`: creating
    /// thousands of partitions must not wait for two fsyncs each). Fails with
    /// [`Error::InconsistentTopicId`] if a different id is already recorded; a log opened
    /// without the file (created, then a crash before the file was written) holds no
    /// records, so it takes whatever id its partition has now.
    pub fn set_topic_id(&mut self, id: Uuid) -> Result<()> {
        match self.topic_id {
            Some(existing) if existing == id => Ok(()),
            Some(existing) => Err(Error::InconsistentTopicId {
                tp: self.tp.clone(),
                existing: meta::uuid_to_kafka_string(existing),
                requested: meta::uuid_to_kafka_string(id),
            }),
            None => {
                self.topic_id = Some(id);
                self.topic_id_unflushed = true;
                Ok(())
            }
        }
    }

    /// Writes `partition.metadata` (atomically, fsynced) if the recorded topic id is not on
    /// disk yet (Kafka's `PartitionMetadataFile.maybeFlush`). Every append calls it before
    /// writing records, so no record reaches the disk under a partition dir that does not
    /// name its topic; a deleted log skips it (its dir is on the way out).
    pub fn flush_partition_metadata(&mut self) -> Result<()> {
        if !self.topic_id_unflushed || self.state == State::Deleted {
            return Ok(());
        }
        if let Some(id) = self.topic_id {
            meta::write_partition_metadata(&self.dir, id)?;
        }
        self.topic_id_unflushed = false;
        Ok(())
    }

    /// Whether the topic id is recorded but `partition.metadata` not written yet.
    pub fn partition_metadata_unflushed(&self) -> bool {
        self.topic_id_unflushed
    }

    /// Marks the handle deleted (the manager renamed the directory); further calls fail
    /// with [`Error::Deleted`].
    pub(crate) fn mark_deleted(&mut self, new_dir: PathBuf) {
        self.state = State::Deleted;
        self.dir = new_dir;
    }

    /// Every producer of the partition's producer state (what DescribeProducers reports),
    /// by producer id.
    pub fn active_producers(&self) -> Vec<super::ActiveProducer> {
        self.producers.active()
    }

    /// Number of idempotent producers tracked (diagnostics).
    pub fn producer_count(&self) -> usize {
        self.producers.len()
    }

    #[cfg(test)]
    pub(crate) fn active_segment_mut(&mut self) -> &mut Segment {
        self.active_mut()
    }
}

/// Ends a replayed transaction in `producers`; returns its `.txnindex` entry if it was
/// aborted (its last stable offset taken before the transaction leaves the open ones).
fn complete_txn(producers: &mut ProducerStateManager, c: &CompletedTxn) -> Option<AbortedTxn> {
    let entry = c.aborted.then(|| AbortedTxn {
        producer_id: c.producer_id,
        first_offset: c.first_offset,
        last_offset: c.last_offset,
        last_stable_offset: producers.last_stable_offset_after(c),
    });
    producers.complete_txn(c);
    entry
}
