//! Kafka's text checkpoint files and the atomic-replace helper they rely on.
//!
//! Format (shared by the root offset checkpoints and `leader-epoch-checkpoint`):
//! ```text
//! 0                 <- version
//! 2                 <- number of entries
//! <entry line>
//! <entry line>
//! ```
//! Root files use `topic partition offset` lines; the leader epoch file `epoch start_offset`.

use std::collections::BTreeMap;
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};

use super::error::{Error, IoContext, Result};
use super::TopicPartition;

/// Name of the per-dir recovery point checkpoint (offset up to which data is fsynced).
pub const RECOVERY_POINT_CHECKPOINT: &str = "recovery-point-offset-checkpoint";
/// Name of the per-dir log start offset checkpoint (DeleteRecords progress).
pub const LOG_START_OFFSET_CHECKPOINT: &str = "log-start-offset-checkpoint";
/// Name of the per-dir high watermark checkpoint.
pub const REPLICATION_OFFSET_CHECKPOINT: &str = "replication-offset-checkpoint";
/// Name of the per-dir log cleaner checkpoint: per compacted partition, the offset up to
/// which the log has been compacted (everything from there on is "dirty").
pub const CLEANER_OFFSET_CHECKPOINT: &str = "cleaner-offset-checkpoint";

/// Replaces `path` with `contents` so that a crash leaves either the old or the new file,
/// never a mix: write a sibling `.tmp`, fsync it, rename over, fsync the directory.
pub(crate) fn write_atomic(path: &Path, contents: &[u8]) -> Result<()> {
    let mut tmp_name = path.as_os_str().to_owned();
    tmp_name.push(".tmp");
    let tmp = std::path::PathBuf::from(tmp_name);
    {
        let mut f = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .open(&tmp)
            .ctx("creating", &tmp)?;
        f.write_all(contents).ctx("writing", &tmp)?;
        f.sync_all().ctx("syncing", &tmp)?;
    }
    std::fs::rename(&tmp, path).ctx("renaming into place", path)?;
    if let Some(parent) = path.parent() {
        sync_dir(parent)?;
    }
    Ok(())
}

/// fsyncs a directory so renames/creations/deletions inside it are durable.
pub(crate) fn sync_dir(dir: &Path) -> Result<()> {
    File::open(dir)
        .and_then(|d| d.sync_all())
        .ctx("syncing directory", dir)
}

fn parse_lines<'a>(path: &Path, text: &'a str) -> Result<Vec<&'a str>> {
    let bad = |reason: String| Error::BadMetadata {
        path: path.to_path_buf(),
        reason,
    };
    let mut lines = text.lines();
    let version = lines.next().ok_or_else(|| bad("empty checkpoint".into()))?;
    if version.trim() != "0" {
        return Err(bad(format!("unsupported checkpoint version {version:?}")));
    }
    let count: usize = lines
        .next()
        .and_then(|l| l.trim().parse().ok())
        .ok_or_else(|| bad("missing or malformed entry count".into()))?;
    let entries: Vec<&str> = lines.filter(|l| !l.trim().is_empty()).collect();
    if entries.len() != count {
        return Err(bad(format!(
            "expected {count} entries but found {}",
            entries.len()
        )));
    }
    Ok(entries)
}

/// Reads a root offset checkpoint (`topic partition offset`). A missing file is empty.
pub(crate) fn read_offsets(path: &Path) -> Result<BTreeMap<TopicPartition, i64>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(BTreeMap::new()),
        Err(e) => return Err(Error::io("reading", path, e)),
    };
    let mut out = BTreeMap::new();
    for line in parse_lines(path, &text)? {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let parsed = match parts.as_slice() {
            [topic, partition, offset] => partition
                .parse::<i32>()
                .ok()
                .zip(offset.parse::<i64>().ok())
                .map(|(p, o)| (TopicPartition::new(*topic, p), o)),
            _ => None,
        };
        let (tp, offset) = parsed.ok_or_else(|| Error::BadMetadata {
            path: path.to_path_buf(),
            reason: format!("malformed line {line:?}"),
        })?;
        out.insert(tp, offset);
    }
    Ok(out)
}

/// Writes a root offset checkpoint atomically.
pub(crate) fn write_offsets(path: &Path, offsets: &BTreeMap<TopicPartition, i64>) -> Result<()> {
    let mut s = format!("0\n{}\n", offsets.len());
    for (tp, off) in offsets {
        s.push_str(&format!("{} {} {}\n", tp.topic, tp.partition, off));
    }
    write_atomic(path, s.as_bytes())
}

/// Reads `leader-epoch-checkpoint` entries `(epoch, start offset)`. Missing file: empty.
pub(crate) fn read_epochs(path: &Path) -> Result<Vec<(i32, i64)>> {
    let text = match std::fs::read_to_string(path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(Error::io("reading", path, e)),
    };
    let mut out = Vec::new();
    for line in parse_lines(path, &text)? {
        let parts: Vec<&str> = line.split_whitespace().collect();
        let parsed = match parts.as_slice() {
            [e, o] => e.parse::<i32>().ok().zip(o.parse::<i64>().ok()),
            _ => None,
        };
        out.push(parsed.ok_or_else(|| Error::BadMetadata {
            path: path.to_path_buf(),
            reason: format!("malformed line {line:?}"),
        })?);
    }
    Ok(out)
}

/// Writes `leader-epoch-checkpoint` atomically.
pub(crate) fn write_epochs(path: &Path, entries: &[(i32, i64)]) -> Result<()> {
    let mut s = format!("0\n{}\n", entries.len());
    for (e, o) in entries {
        s.push_str(&format!("{e} {o}\n"));
    }
    write_atomic(path, s.as_bytes())
}

/// The log dir's persisted log start offsets, shared by the dir's partitions so that a
/// DeleteRecords is durable the moment it returns (Kafka checkpoints it periodically; we
/// write at once, since the file is tiny and DeleteRecords is rare).
///
/// Also holds the dir's `cleaner-offset-checkpoint` (rewritten after every compaction pass,
/// like Kafka's cleaner does).
#[derive(Debug)]
pub(crate) struct DirCheckpoints {
    dir: PathBuf,
    log_starts: Mutex<BTreeMap<TopicPartition, i64>>,
    cleaner_offsets: Mutex<BTreeMap<TopicPartition, i64>>,
}

fn load_cleaner_offsets(dir: &Path) -> BTreeMap<TopicPartition, i64> {
    match read_offsets(&dir.join(CLEANER_OFFSET_CHECKPOINT)) {
        Ok(m) => m,
        Err(e) => {
            // Losing it only means the next pass treats the whole log as dirty.
            tracing::warn!(error = %e, "ignoring unreadable cleaner offset checkpoint");
            BTreeMap::new()
        }
    }
}

impl DirCheckpoints {
    /// Loads the dir's `log-start-offset-checkpoint` (missing: empty).
    pub(crate) fn load(dir: &Path) -> Result<Self> {
        let log_starts = read_offsets(&dir.join(LOG_START_OFFSET_CHECKPOINT))?;
        Ok(DirCheckpoints {
            dir: dir.to_path_buf(),
            log_starts: Mutex::new(log_starts),
            cleaner_offsets: Mutex::new(load_cleaner_offsets(dir)),
        })
    }

    /// An instance that knows nothing (used when the checkpoint could not be read).
    pub(crate) fn empty(dir: &Path) -> Self {
        DirCheckpoints {
            dir: dir.to_path_buf(),
            log_starts: Mutex::new(BTreeMap::new()),
            cleaner_offsets: Mutex::new(load_cleaner_offsets(dir)),
        }
    }

    /// Checkpointed log start offset of a partition.
    pub(crate) fn log_start(&self, tp: &TopicPartition) -> Option<i64> {
        lock(&self.log_starts).get(tp).copied()
    }

    /// Records (`Some`) or forgets (`None`) a partition's log start offset and rewrites the file.
    pub(crate) fn set_log_start(&self, tp: &TopicPartition, offset: Option<i64>) -> Result<()> {
        let mut map = lock(&self.log_starts);
        let changed = match offset {
            Some(o) => map.insert(tp.clone(), o) != Some(o),
            None => map.remove(tp).is_some(),
        };
        if changed {
            write_offsets(&self.dir.join(LOG_START_OFFSET_CHECKPOINT), &map)?;
        }
        Ok(())
    }

    /// Checkpointed cleaner offset (end of the last compaction pass) of a partition.
    pub(crate) fn cleaner_offset(&self, tp: &TopicPartition) -> Option<i64> {
        lock(&self.cleaner_offsets).get(tp).copied()
    }

    /// Records (`Some`) or forgets (`None`) a partition's cleaner offset and rewrites
    /// `cleaner-offset-checkpoint` if it changed.
    pub(crate) fn set_cleaner_offset(
        &self,
        tp: &TopicPartition,
        offset: Option<i64>,
    ) -> Result<()> {
        let mut map = lock(&self.cleaner_offsets);
        let changed = match offset {
            Some(o) => map.insert(tp.clone(), o) != Some(o),
            None => map.remove(tp).is_some(),
        };
        if changed {
            write_offsets(&self.dir.join(CLEANER_OFFSET_CHECKPOINT), &map)?;
        }
        Ok(())
    }

    /// Replaces the whole map (periodic checkpoint of every partition) and rewrites the file.
    pub(crate) fn replace_log_starts(&self, all: BTreeMap<TopicPartition, i64>) -> Result<()> {
        let mut map = lock(&self.log_starts);
        write_offsets(&self.dir.join(LOG_START_OFFSET_CHECKPOINT), &all)?;
        *map = all;
        Ok(())
    }
}

/// Locks a mutex, ignoring poisoning: the protected data are plain maps that stay
/// consistent even if a holder panicked.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_round_trip_in_kafka_format() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join(RECOVERY_POINT_CHECKPOINT);
        let mut m = BTreeMap::new();
        m.insert(TopicPartition::new("a-b", 3), 42);
        m.insert(TopicPartition::new("x", 0), 7);
        write_offsets(&p, &m).unwrap();
        assert_eq!(
            std::fs::read_to_string(&p).unwrap(),
            "0\n2\na-b 3 42\nx 0 7\n"
        );
        assert_eq!(read_offsets(&p).unwrap(), m);
        assert!(!dir
            .path()
            .join(format!("{RECOVERY_POINT_CHECKPOINT}.tmp"))
            .exists());
        assert!(read_offsets(&dir.path().join("missing"))
            .unwrap()
            .is_empty());
    }

    #[test]
    fn malformed_checkpoint_names_the_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("leader-epoch-checkpoint");
        std::fs::write(&p, "0\n2\n1 0\n").unwrap();
        let err = read_epochs(&p).unwrap_err().to_string();
        assert!(err.contains("leader-epoch-checkpoint"), "{err}");
    }
}
