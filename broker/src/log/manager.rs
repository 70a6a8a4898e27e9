//! [`LogManager`]: the broker's log dirs and every partition log in them.

use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use uuid::Uuid;

use super::checkpoint::{
    self, lock, DirCheckpoints, RECOVERY_POINT_CHECKPOINT, REPLICATION_OFFSET_CHECKPOINT,
};
use super::cleaner;
use super::config::LogConfig;
use super::error::{Error, IoContext, Result};
use super::meta;
use super::partition::{LoadOptions, PartitionLog, RolledLogs};
use super::{TopicPartition, CLEAN_SHUTDOWN_FILE};

/// Name of the lock file in each log dir.
pub const LOCK_FILE: &str = ".lock";

/// Suffix of partition directories scheduled for removal.
const DELETE_DIR_SUFFIX: &str = "-delete";

/// One partition as reported by DescribeLogDirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDirInfo {
    /// The partition.
    pub tp: TopicPartition,
    /// Bytes of its segment files.
    pub size_bytes: u64,
    /// Lag behind the leader (always 0: no replication yet).
    pub offset_lag: i64,
    /// Whether this is a future replica being moved between dirs (never, for now).
    pub is_future: bool,
}

/// One log dir as reported by DescribeLogDirs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogDirInfo {
    /// Absolute or configured path of the dir.
    pub path: PathBuf,
    /// Kafka's `directory.id` from `meta.properties`.
    pub directory_id: String,
    /// Capacity of the file system in bytes; -1 when unknown (no statvfs without libc).
    pub total_bytes: i64,
    /// Free bytes usable by the broker; -1 when unknown.
    pub usable_bytes: i64,
    /// Partitions stored in this dir.
    pub partitions: Vec<PartitionDirInfo>,
}

/// A log dir owned by this process.
#[derive(Debug)]
struct LogDir {
    path: PathBuf,
    directory_id: String,
    /// Held while the manager runs; dropping it releases the advisory lock.
    lock_file: Mutex<Option<File>>,
    checkpoints: Arc<DirCheckpoints>,
    /// What the dir looked like at startup, for partitions loaded later by `create`.
    clean_at_startup: bool,
    recovery_points_at_startup: BTreeMap<TopicPartition, i64>,
    /// `replication-offset-checkpoint` as found at startup: the high watermarks partitions
    /// loaded later by `create` open with, and that checkpoints keep for unloaded ones.
    high_watermarks_at_startup: BTreeMap<TopicPartition, i64>,
}

#[derive(Debug, Clone)]
struct Entry {
    dir: usize,
    log: Arc<Mutex<PartitionLog>>,
}

/// Owns the broker's log dirs and partition logs. `Send + Sync`: the partition map has its
/// own lock and each partition log its own `Mutex`, so handlers for different partitions
/// never contend. Lock order: map, then one partition at a time (never two partitions).
#[derive(Debug)]
pub struct LogManager {
    dirs: Vec<LogDir>,
    partitions: RwLock<HashMap<TopicPartition, Entry>>,
    /// Renamed `-delete` dirs whose removal failed or has not been attempted yet.
    pending_deletes: Arc<Mutex<Vec<PathBuf>>>,
    /// Serialises partition creation (never held by lookups): two creators of one
    /// partition must not open its files twice.
    creating: Mutex<()>,
    /// Partitions whose rolled segments await their fsync ([`Self::flush_rolled_segments`]).
    rolled: Arc<RolledLogs>,
}

/// How many threads write the `partition.metadata` files of one creation: concurrent
/// fsyncs share the file system's journal commits, so a few writers finish thousands of
/// small files several times sooner than one.
const PARTITION_METADATA_WRITERS: usize = 4;

/// Writes the `partition.metadata` of `logs` on background threads (Kafka's one-off
/// `flush-metadata-file` task per new log). A failure is logged and the file stays pending:
/// the partition's next append or flush writes it, or fails with the error. Without a
/// thread to run on, writes them here.
fn flush_partition_metadata_later(logs: Vec<Arc<Mutex<PartitionLog>>>) {
    if logs.is_empty() {
        return;
    }
    let writers = PARTITION_METADATA_WRITERS
        .min(logs.len().div_ceil(64))
        .max(1);
    let mut shares: Vec<Vec<Arc<Mutex<PartitionLog>>>> = vec![Vec::new(); writers];
    for (i, log) in logs.into_iter().enumerate() {
        shares[i % writers].push(log);
    }
    let write = |share: &[Arc<Mutex<PartitionLog>>]| {
        for log in share {
            let mut log = lock(log);
            if let Err(e) = log.flush_partition_metadata() {
                let tp = log.topic_partition().clone();
                tracing::warn!(%tp, error = %e, "could not write partition.metadata; the next append retries");
            }
        }
    };
    for share in shares {
        let spawned = std::thread::Builder::new()
            .name("partition-metadata".into())
            .spawn({
                let share = share.clone();
                move || write(&share)
            });
        if spawned.is_err() {
            write(&share);
        }
    }
}

fn lock_dir(dir: &Path) -> Result<File> {
    let path = dir.join(LOCK_FILE);
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .create(true)
        .truncate(false)
        .open(&path)
        .ctx("opening lock file", &path)?;
    match file.try_lock() {
        Ok(()) => Ok(file),
        Err(std::fs::TryLockError::WouldBlock) => Err(Error::DirLocked(dir.to_path_buf())),
        Err(std::fs::TryLockError::Error(e)) => Err(Error::io("locking", &path, e)),
    }
}

fn remove_dirs(paths: Vec<PathBuf>, pending: &Mutex<Vec<PathBuf>>) {
    for p in paths {
        match std::fs::remove_dir_all(&p) {
            Ok(()) => tracing::info!(path = %p.display(), "removed deleted partition directory"),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
            Err(e) => {
                tracing::warn!(path = %p.display(), error = %e, "cannot remove deleted partition directory; will retry");
                lock(pending).push(p);
            }
        }
    }
}

impl LogManager {
    /// Creates missing dirs (the error names the dir that cannot be created), locks them,
    /// writes/validates `meta.properties` (node.id or cluster.id mismatch -> error naming the
    /// file), and loads every partition dir found with `config_for(topic)`; a dir whose topic
    /// `config_for` returns `None` is left alone (not loaded, not deleted). Recovery runs for
    /// dirs that were not shut down cleanly; the clean-shutdown markers are removed afterwards.
    pub fn open(
        dirs: &[PathBuf],
        node_id: i32,
        cluster_id: &str,
        config_for: &dyn Fn(&str) -> Option<LogConfig>,
    ) -> Result<Self> {
        if dirs.is_empty() {
            return Err(Error::InvalidArgument("no log dirs configured".into()));
        }
        let mut log_dirs = Vec::new();
        let mut partitions: HashMap<TopicPartition, Entry> = HashMap::new();
        let mut to_remove = Vec::new();
        let rolled = Arc::new(RolledLogs::default());
        for (i, path) in dirs.iter().enumerate() {
            std::fs::create_dir_all(path).ctx("creating log directory", path)?;
            let lock_file = lock_dir(path)?;
            let directory_id = meta::ensure_meta_properties(path, node_id, cluster_id)?;
            let clean = path.join(CLEAN_SHUTDOWN_FILE).exists();
            let recovery_points = match checkpoint::read_offsets(
                &path.join(RECOVERY_POINT_CHECKPOINT),
            ) {
                Ok(m) => m,
                Err(e) => {
                    tracing::warn!(error = %e, "unreadable recovery point checkpoint; recovering all segments");
                    BTreeMap::new()
                }
            };
            let high_watermarks = match checkpoint::read_offsets(
                &path.join(REPLICATION_OFFSET_CHECKPOINT),
            ) {
                Ok(m) => m,
                Err(e) => {
                    // Kafka fails the log dir; starting every partition at its log start
                    // is as safe (leaders raise it, followers learn it from their leader).
                    tracing::warn!(error = %e, "unreadable high watermark checkpoint; high watermarks start at the log start offsets");
                    BTreeMap::new()
                }
            };
            let checkpoints = Arc::new(DirCheckpoints::load(path).unwrap_or_else(|e| {
                tracing::warn!(error = %e, "unreadable log start offset checkpoint; using segment bases");
                DirCheckpoints::empty(path)
            }));
            let mut subdirs: Vec<_> = std::fs::read_dir(path)
                .ctx("listing log directory", path)?
                .filter_map(|e| e.ok())
                .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
                .collect();
            subdirs.sort_by_key(|e| e.file_name());
            for entry in subdirs {
                let name = entry.file_name();
                let Some(name) = name.to_str() else { continue };
                if name.ends_with(DELETE_DIR_SUFFIX) {
                    to_remove.push(entry.path());
                    continue;
                }
                if name == super::METADATA_DIR {
                    continue;
                }
                let Some(tp) = TopicPartition::from_dir_name(name) else {
                    continue;
                };
                let Some(config) = config_for(&tp.topic) else {
                    tracing::info!(%tp, dir = %path.display(), "skipping partition of unknown topic");
                    continue;
                };
                if let Some(existing) = partitions.get(&tp) {
                    return Err(Error::DuplicatePartition {
                        tp,
                        first: dirs[existing.dir].clone(),
                        second: path.clone(),
                    });
                }
                let options = LoadOptions {
                    clean_shutdown: clean,
                    recovery_point: recovery_points.get(&tp).copied().unwrap_or(0),
                    log_start_offset: checkpoints.log_start(&tp),
                    high_watermark: high_watermarks.get(&tp).copied(),
                    checkpoints: Some(checkpoints.clone()),
                    rolled: Some(rolled.clone()),
                };
                let log = PartitionLog::open_with(&entry.path(), tp.clone(), config, options)?;
                partitions.insert(
                    tp,
                    Entry {
                        dir: i,
                        log: Arc::new(Mutex::new(log)),
                    },
                );
            }
            log_dirs.push(LogDir {
                path: path.clone(),
                directory_id,
                lock_file: Mutex::new(Some(lock_file)),
                checkpoints,
                clean_at_startup: clean,
                recovery_points_at_startup: recovery_points,
                high_watermarks_at_startup: high_watermarks,
            });
        }
        // Only now is the marker stale: a crash from here on must trigger recovery.
        for d in &log_dirs {
            let marker = d.path.join(CLEAN_SHUTDOWN_FILE);
            match std::fs::remove_file(&marker) {
                Ok(()) => checkpoint::sync_dir(&d.path)?,
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(Error::io("removing", &marker, e)),
            }
        }
        let manager = LogManager {
            dirs: log_dirs,
            partitions: RwLock::new(partitions),
            pending_deletes: Arc::new(Mutex::new(Vec::new())),
            creating: Mutex::new(()),
            rolled,
        };
        manager.spawn_removal(to_remove);
        tracing::info!(
            dirs = manager.dirs.len(),
            partitions = manager.read_map().len(),
            "log manager started"
        );
        Ok(manager)
    }

    fn read_map(&self) -> std::sync::RwLockReadGuard<'_, HashMap<TopicPartition, Entry>> {
        self.partitions.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write_map(&self) -> std::sync::RwLockWriteGuard<'_, HashMap<TopicPartition, Entry>> {
        self.partitions.write().unwrap_or_else(|e| e.into_inner())
    }

    fn spawn_removal(&self, paths: Vec<PathBuf>) {
        if paths.is_empty() {
            return;
        }
        let pending = self.pending_deletes.clone();
        let spawned = std::thread::Builder::new()
            .name("log-dir-delete".into())
            .spawn({
                let paths = paths.clone();
                move || remove_dirs(paths, &pending)
            });
        if spawned.is_err() {
            // No thread available: retry at the next retention tick.
            lock(&self.pending_deletes).extend(paths);
        }
    }

    /// The log of a partition, if this broker hosts it.
    pub fn get(&self, tp: &TopicPartition) -> Option<Arc<Mutex<PartitionLog>>> {
        self.read_map().get(tp).map(|e| e.log.clone())
    }

    /// Creates the partition in the log dir with the fewest partitions (idempotent: an
    /// existing log is returned; a partition dir already on disk is loaded). With a topic id,
    /// `partition.metadata` is written before this returns (or checked against the recorded
    /// id).
    pub fn create(
        &self,
        tp: &TopicPartition,
        config: LogConfig,
        topic_id: Option<Uuid>,
    ) -> Result<Arc<Mutex<PartitionLog>>> {
        let _creating = lock(&self.creating);
        let (log, dir) = self.create_one(tp, config, topic_id)?;
        if let Some(dir) = dir {
            checkpoint::sync_dir(&self.dirs[dir].path)?;
        }
        lock(&log).flush_partition_metadata()?;
        Ok(log)
    }

    /// [`Self::create`] for many partitions, fsyncing each touched log dir once at the end
    /// (creating a topic with thousands of partitions would otherwise fsync the log dir
    /// thousands of times). Stops at the first failure; partitions created before it stay.
    /// Their `partition.metadata` files are written in the background afterwards, as Kafka
    /// schedules `flush-metadata-file` rather than write it while creating the log: two
    /// fsyncs per partition made a 2,000-partition topic of RF 3 on three brokers take longer
    /// than the admin client's 30 s timeout. Until then the id is in memory only, and every
    /// append writes the file first (see [`PartitionLog::flush_partition_metadata`]).
    pub fn create_many(
        &self,
        tps: &[TopicPartition],
        config: &LogConfig,
        topic_id: Option<Uuid>,
    ) -> Result<()> {
        let _creating = lock(&self.creating);
        let mut touched = vec![false; self.dirs.len()];
        let mut unflushed = Vec::new();
        let mut result = Ok(());
        for tp in tps {
            match self.create_one(tp, config.clone(), topic_id) {
                Ok((log, dir)) => {
                    if let Some(dir) = dir {
                        touched[dir] = true;
                    }
                    if lock(&log).partition_metadata_unflushed() {
                        unflushed.push(log);
                    }
                }
                Err(e) => {
                    result = Err(e);
                    break;
                }
            }
        }
        // The partition dirs are durable before any file in them is written.
        for (dir, _) in touched.iter().enumerate().filter(|(_, t)| **t) {
            checkpoint::sync_dir(&self.dirs[dir].path)?;
        }
        if !tps.is_empty() {
            tracing::info!(partitions = tps.len(), topic = %tps[0].topic, "created partition logs");
        }
        flush_partition_metadata_later(unflushed);
        result
    }

    /// Creates or loads one partition log without fsyncing its log dir; returns the log and
    /// the index of the dir it was created in (`None` if it existed already). The partition
    /// map is locked only to look up and to insert, so lookups of other partitions (every
    /// produce, fetch and commit) never wait for the files being created. Callers hold
    /// `self.creating`.
    fn create_one(
        &self,
        tp: &TopicPartition,
        config: LogConfig,
        topic_id: Option<Uuid>,
    ) -> Result<(Arc<Mutex<PartitionLog>>, Option<usize>)> {
        if let Some(log) = self.get(tp) {
            if let Some(id) = topic_id {
                lock(&log).set_topic_id(id)?;
            }
            return Ok((log, None));
        }
        let name = tp.to_string();
        let existing = self.dirs.iter().position(|d| d.path.join(&name).is_dir());
        let dir_index = match existing {
            Some(i) => i,
            None => {
                let mut counts = vec![0usize; self.dirs.len()];
                for e in self.read_map().values() {
                    counts[e.dir] += 1;
                }
                (0..self.dirs.len())
                    .min_by_key(|&i| (counts[i], i))
                    .unwrap_or(0)
            }
        };
        let d = &self.dirs[dir_index];
        let path = d.path.join(&name);
        let options = LoadOptions {
            clean_shutdown: existing.is_some() && d.clean_at_startup,
            recovery_point: d.recovery_points_at_startup.get(tp).copied().unwrap_or(0),
            log_start_offset: d.checkpoints.log_start(tp),
            high_watermark: existing.and_then(|_| d.high_watermarks_at_startup.get(tp).copied()),
            checkpoints: Some(d.checkpoints.clone()),
            rolled: Some(self.rolled.clone()),
        };
        let mut log = PartitionLog::open_with(&path, tp.clone(), config, options)?;
        if let Some(id) = topic_id {
            log.set_topic_id(id)?;
        }
        tracing::debug!(%tp, dir = %d.path.display(), "created partition log");
        let log = Arc::new(Mutex::new(log));
        self.write_map().insert(
            tp.clone(),
            Entry {
                dir: dir_index,
                log: log.clone(),
            },
        );
        Ok((log, Some(dir_index)))
    }

    /// Deletes a partition: its dir is renamed to `<topic>-<partition>.<uuid hex>-delete` at
    /// once (so it disappears from the layout and a re-created topic starts empty) and the
    /// files are removed in the background. Unknown partitions are a no-op.
    pub fn delete(&self, tp: &TopicPartition) -> Result<()> {
        let Some(entry) = self.write_map().remove(tp) else {
            return Ok(());
        };
        let mut log = lock(&entry.log);
        let old = log.dir().to_path_buf();
        let new = old.with_file_name(format!(
            "{tp}.{}{DELETE_DIR_SUFFIX}",
            Uuid::new_v4().simple()
        ));
        if let Err(e) = std::fs::rename(&old, &new) {
            drop(log);
            self.write_map().insert(tp.clone(), entry);
            return Err(Error::io("renaming for deletion", &old, e));
        }
        log.mark_deleted(new.clone());
        drop(log);
        let d = &self.dirs[entry.dir];
        checkpoint::sync_dir(&d.path)?;
        d.checkpoints.set_log_start(tp, None)?;
        d.checkpoints.set_cleaner_offset(tp, None)?;
        tracing::info!(%tp, renamed_to = %new.display(), "partition deleted");
        self.spawn_removal(vec![new]);
        Ok(())
    }

    /// All hosted partitions, sorted.
    pub fn partitions(&self) -> Vec<TopicPartition> {
        let mut v: Vec<_> = self.read_map().keys().cloned().collect();
        v.sort();
        v
    }

    fn entries(&self) -> Vec<(TopicPartition, Entry)> {
        let mut v: Vec<_> = self
            .read_map()
            .iter()
            .map(|(tp, e)| (tp.clone(), e.clone()))
            .collect();
        v.sort_by(|a, b| a.0.cmp(&b.0));
        v
    }

    /// Applies a topic's new settings to all its partitions.
    pub fn update_topic_config(&self, topic: &str, config: LogConfig) {
        for (tp, e) in self.entries() {
            if tp.topic == topic {
                lock(&e.log).set_config(config.clone());
            }
        }
    }

    /// Runs retention on every partition (errors are logged, not returned, so one bad
    /// partition doesn't stop the others) and retries pending directory removals.
    pub fn run_retention(&self, now_ms: i64) {
        for (tp, e) in self.entries() {
            match lock(&e.log).apply_retention(now_ms) {
                Ok(0) => {}
                Ok(n) => tracing::info!(%tp, segments = n, "retention deleted segments"),
                Err(Error::Deleted(_)) | Err(Error::Closed(_)) => {}
                Err(err) => tracing::error!(%tp, error = %err, "retention failed"),
            }
        }
        let pending = std::mem::take(&mut *lock(&self.pending_deletes));
        remove_dirs(pending, &self.pending_deletes);
    }

    /// Runs one log cleaner pass ([`PartitionLog::compact`]) on every partition whose
    /// `cleanup.policy` contains `compact`. Errors (and panics) are logged per partition, never
    /// returned, so one bad partition doesn't stop the others. Returns the number of
    /// partitions that were actually compacted. Each partition's lock is held only to plan
    /// its pass and to swap cleaned segments in, so appends and fetches go on meanwhile.
    pub fn run_compaction(&self, now_ms: i64) -> usize {
        let mut cleaned = 0;
        for (tp, e) in self.entries() {
            let outcome = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                if !lock(&e.log).config().cleanup_compact {
                    return Ok(None);
                }
                cleaner::compact_shared(&e.log, now_ms).map(Some)
            }));
            match outcome {
                Ok(Ok(Some(stats))) if stats.cleaned => cleaned += 1,
                Ok(Ok(_)) => {}
                Ok(Err(Error::Deleted(_) | Error::Closed(_))) => {}
                Ok(Err(err)) => tracing::error!(%tp, error = %err, "log compaction failed"),
                Err(_) => tracing::error!(%tp, "log compaction panicked"),
            }
        }
        cleaned
    }

    /// Writes the root checkpoints of every dir: recovery points, log start offsets and
    /// high watermarks.
    pub fn checkpoint(&self) -> Result<()> {
        let entries = self.entries();
        let mut result = Ok(());
        for (i, d) in self.dirs.iter().enumerate() {
            let mut recovery = BTreeMap::new();
            let mut starts = BTreeMap::new();
            let mut hws = BTreeMap::new();
            for (tp, e) in entries.iter().filter(|(_, e)| e.dir == i) {
                let log = lock(&e.log);
                recovery.insert(tp.clone(), log.recovery_point());
                hws.insert(tp.clone(), log.high_watermark());
                let first = log.segment_base_offsets().first().copied().unwrap_or(0);
                if log.log_start_offset() > first {
                    starts.insert(tp.clone(), log.log_start_offset());
                }
            }
            // Keep what we knew about partitions that exist on disk but are not loaded.
            for (tp, rp) in &d.recovery_points_at_startup {
                if !recovery.contains_key(tp) && d.path.join(tp.to_string()).is_dir() {
                    recovery.insert(tp.clone(), *rp);
                    if let Some(s) = d.checkpoints.log_start(tp) {
                        starts.insert(tp.clone(), s);
                    }
                }
            }
            for (tp, hw) in &d.high_watermarks_at_startup {
                if !hws.contains_key(tp) && d.path.join(tp.to_string()).is_dir() {
                    hws.insert(tp.clone(), *hw);
                }
            }
            let r = checkpoint::write_offsets(&d.path.join(RECOVERY_POINT_CHECKPOINT), &recovery)
                .and_then(|_| {
                    checkpoint::write_offsets(&d.path.join(REPLICATION_OFFSET_CHECKPOINT), &hws)
                })
                .and_then(|_| d.checkpoints.replace_log_starts(starts));
            if let Err(e) = r {
                tracing::error!(dir = %d.path.display(), error = %e, "checkpoint failed");
                if result.is_ok() {
                    result = Err(e);
                }
            }
        }
        result
    }

    /// Kafka's `flushDirtyLogs`, run by the log flusher every
    /// `log.flush.scheduler.interval.ms`: fsyncs each log that has unflushed messages and
    /// whose last flush is at least its `flush.ms` old at `now_ms`. Blocks on disk: call it
    /// off the async workers. Errors are logged per partition, so one bad disk does not stop
    /// the others; returns the number of logs flushed.
    pub fn flush_dirty_logs(&self, now_ms: i64) -> usize {
        let mut flushed = 0;
        for (tp, e) in self.entries() {
            let mut log = lock(&e.log);
            if !log.flush_due_by_time(now_ms) {
                continue;
            }
            match log.flush() {
                Ok(()) => flushed += 1,
                Err(Error::Deleted(_) | Error::Closed(_)) => {}
                Err(err) => tracing::error!(%tp, error = %err, "scheduled flush failed"),
            }
        }
        flushed
    }

    /// Whether some partition rolled since the last [`Self::flush_rolled_segments`].
    pub fn has_rolled_segments(&self) -> bool {
        !lock(&self.rolled.0).is_empty()
    }

    /// fsyncs the segments rolled since the last call and advances those partitions'
    /// recovery points (Kafka flushes a rolled segment right after the roll, on its
    /// scheduler). Each partition's lock is held only to take duplicated handles and to
    /// record the result, never during the fsync, so appends go on. Blocking: call it off
    /// the async workers. Errors are logged per partition; returns the number flushed.
    pub fn flush_rolled_segments(&self) -> usize {
        let mut tps = std::mem::take(&mut *lock(&self.rolled.0));
        tps.sort();
        tps.dedup();
        let mut flushed = 0;
        for tp in tps {
            let Some(log) = self.get(&tp) else { continue };
            let flush = match lock(&log).begin_roll_flush() {
                Ok(Some(f)) => f,
                Ok(None) => continue,
                Err(err) => {
                    tracing::error!(%tp, error = %err, "cannot flush rolled segments");
                    continue;
                }
            };
            match flush.sync() {
                Ok(()) => {
                    lock(&log).finish_roll_flush(&flush);
                    flushed += 1;
                }
                Err(err) => tracing::error!(%tp, error = %err, "flushing rolled segments failed"),
            }
        }
        flushed
    }

    /// fsyncs every partition log (advancing recovery points).
    pub fn flush_all(&self) -> Result<()> {
        let mut result = Ok(());
        for (tp, e) in self.entries() {
            if let Err(err) = lock(&e.log).flush() {
                tracing::error!(%tp, error = %err, "flush failed");
                if result.is_ok() {
                    result = Err(err);
                }
            }
        }
        result
    }

    /// Clean shutdown: closes (flushes) every log, writes the root checkpoints, then writes
    /// `.kafka_cleanshutdown` in each dir so the next open skips recovery, and releases the
    /// dir locks. The marker is written only if everything before it succeeded.
    pub fn shutdown(&self) -> Result<()> {
        let mut result = Ok(());
        for (tp, e) in self.entries() {
            if let Err(err) = lock(&e.log).close() {
                tracing::error!(%tp, error = %err, "closing log failed");
                if result.is_ok() {
                    result = Err(err);
                }
            }
        }
        if let Err(e) = self.checkpoint() {
            if result.is_ok() {
                result = Err(e);
            }
        }
        if result.is_ok() {
            for d in &self.dirs {
                let marker = d.path.join(CLEAN_SHUTDOWN_FILE);
                let r = File::create(&marker)
                    .and_then(|f| f.sync_all())
                    .ctx("writing", &marker)
                    .and_then(|_| checkpoint::sync_dir(&d.path));
                if let Err(e) = r {
                    result = Err(e);
                    break;
                }
            }
        }
        self.write_map().clear();
        for d in &self.dirs {
            lock(&d.lock_file).take();
        }
        tracing::info!(clean = result.is_ok(), "log manager shut down");
        result
    }

    /// Per dir: path, directory id, capacity (-1: unknown) and partitions with their sizes.
    pub fn log_dirs_description(&self) -> Vec<LogDirInfo> {
        let entries = self.entries();
        self.dirs
            .iter()
            .enumerate()
            .map(|(i, d)| LogDirInfo {
                path: d.path.clone(),
                directory_id: d.directory_id.clone(),
                total_bytes: -1,
                usable_bytes: -1,
                partitions: entries
                    .iter()
                    .filter(|(_, e)| e.dir == i)
                    .map(|(tp, e)| PartitionDirInfo {
                        tp: tp.clone(),
                        size_bytes: lock(&e.log).size_bytes(),
                        offset_lag: 0,
                        is_future: false,
                    })
                    .collect(),
            })
            .collect()
    }

    /// The configured log dirs.
    pub fn log_dirs(&self) -> Vec<PathBuf> {
        self.dirs.iter().map(|d| d.path.clone()).collect()
    }
}
