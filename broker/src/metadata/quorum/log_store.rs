//! The metadata quorum's Raft log and vote on local disk (openraft's `RaftLogStorage`).
//!
//! Files in the metadata directory (`<first log dir>/__cluster_metadata-0/`):
//! - `quorum.log`: frames of `[u32 length][u32 crc32c][JSON]`, each a [`LogRecord`]: the
//!   entries in index order, preceded after a purge by the id of the last purged entry.
//!   Appends are fsynced before openraft is told they are durable. Recovery reads frames until
//!   the first incomplete or corrupt one and truncates the file there (a torn tail write).
//!   A purge rewrites the file without the purged entries (temporary file, fsync, rename),
//!   so the log never grows past the snapshot policy's window.
//! - `quorum-vote.json`: the vote, replaced atomically and fsynced before it is acknowledged
//!   (a voter must never vote twice in one term, even across a crash).
//! - `quorum-committed.json`: the last committed log id, so a restarted node replays its own
//!   committed entries at once instead of waiting for a leader. Not fsynced: an older value
//!   after a crash only means replaying less until the leader says more (committed entries
//!   are durable in `quorum.log` on a majority either way).
//!
//! The metadata log is small (topic and broker administration), so every entry is also kept
//! in memory: reads never touch the disk. Writes run on the blocking pool, one at a time.

use std::collections::BTreeMap;
use std::fmt::Debug;
use std::fs::{self, File, OpenOptions};
use std::io::{Read, Write};
use std::ops::RangeBounds;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{LogFlushed, LogState, RaftLogReader, RaftLogStorage};
use openraft::{AnyError, Entry, LogId, OptionalSend, StorageError, StorageIOError, Vote};
use serde::{Deserialize, Serialize};
use tracing::warn;

use super::TypeConfig;

/// File name of the log inside the metadata directory.
pub const LOG_FILE: &str = "quorum.log";
/// File name of the persisted vote.
pub const VOTE_FILE: &str = "quorum-vote.json";
/// File name of the last committed log id.
pub const COMMITTED_FILE: &str = "quorum-committed.json";

/// Frames larger than this are corrupt (an entry is one metadata batch).
const MAX_FRAME: u32 = 64 * 1024 * 1024;

/// One frame of `quorum.log`.
#[derive(Debug, Serialize, Deserialize)]
enum LogRecord {
    /// Entries up to and including this id were purged (first frame after a purge).
    Purged(LogId<u64>),
    /// One log entry.
    Entry(Entry<TypeConfig>),
}

/// The Raft log store; clones share the same log (openraft reads through a clone while the
/// core appends).
#[derive(Debug, Clone)]
pub struct LogStore {
    inner: Arc<Mutex<LogInner>>,
}

#[derive(Debug)]
struct LogInner {
    dir: PathBuf,
    file: File,
    /// Entries by index, with the file position where each one's frame starts.
    entries: BTreeMap<u64, (Entry<TypeConfig>, u64)>,
    /// File length: where the next frame goes.
    end: u64,
    last_purged: Option<LogId<u64>>,
    vote: Option<Vote<u64>>,
    committed: Option<LogId<u64>>,
}

fn io_err(what: &str, path: &Path, e: std::io::Error) -> std::io::Error {
    std::io::Error::new(e.kind(), format!("{what} {}: {e}", path.display()))
}

fn frame(record: &LogRecord) -> std::io::Result<Vec<u8>> {
    let body = serde_json::to_vec(record).map_err(std::io::Error::other)?;
    let len = u32::try_from(body.len())
        .ok()
        .filter(|l| *l <= MAX_FRAME)
        .ok_or_else(|| std::io::Error::other("metadata log entry too large"))?;
    let mut out = Vec::with_capacity(body.len() + 8);
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(&crc32c::crc32c(&body).to_be_bytes());
    out.extend_from_slice(&body);
    Ok(out)
}

/// Writes `bytes` to `path` atomically and durably: temporary file, fsync, rename, fsync of
/// the directory.
pub(super) fn write_atomically(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    {
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)
            .map_err(|e| io_err("cannot create", &tmp, e))?;
        file.write_all(bytes)
            .and_then(|()| file.sync_all())
            .map_err(|e| io_err("cannot write", &tmp, e))?;
    }
    fs::rename(&tmp, path).map_err(|e| io_err("cannot rename to", path, e))?;
    sync_dir(path)
}

fn sync_dir(path: &Path) -> std::io::Result<()> {
    match path.parent() {
        Some(dir) => File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| io_err("cannot fsync", dir, e)),
        None => Ok(()),
    }
}

impl LogStore {
    /// Opens (or creates) the log in `dir`, recovering after a crash: a torn or corrupt tail
    /// is truncated away. Blocking: call before the runtime needs this thread, or on the
    /// blocking pool.
    pub fn open(dir: &Path) -> std::io::Result<LogStore> {
        fs::create_dir_all(dir).map_err(|e| io_err("cannot create", dir, e))?;
        let vote_path = dir.join(VOTE_FILE);
        let vote = match fs::read(&vote_path) {
            Ok(bytes) => Some(serde_json::from_slice(&bytes).map_err(|e| {
                std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    format!("{} is corrupt: {e}", vote_path.display()),
                )
            })?),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("cannot read", &vote_path, e)),
        };
        let committed_path = dir.join(COMMITTED_FILE);
        let committed = match fs::read(&committed_path) {
            Ok(bytes) => serde_json::from_slice(&bytes).unwrap_or_else(|e| {
                // Written without fsync: a crash may leave it empty. The leader repeats it.
                warn!(path = %committed_path.display(), error = %e, "ignoring unreadable committed log id");
                None
            }),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(io_err("cannot read", &committed_path, e)),
        };
        let path = dir.join(LOG_FILE);
        let mut file = OpenOptions::new()
            .create(true)
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err("cannot open", &path, e))?;
        let mut bytes = Vec::new();
        file.read_to_end(&mut bytes)
            .map_err(|e| io_err("cannot read", &path, e))?;
        let mut entries = BTreeMap::new();
        let mut last_purged = None;
        let mut pos = 0usize;
        let valid_end = loop {
            let Some(header) = bytes.get(pos..pos + 8) else {
                break pos;
            };
            let len = u32::from_be_bytes([header[0], header[1], header[2], header[3]]);
            let crc = u32::from_be_bytes([header[4], header[5], header[6], header[7]]);
            let Some(body) = (len <= MAX_FRAME)
                .then(|| bytes.get(pos + 8..pos + 8 + len as usize))
                .flatten()
            else {
                break pos;
            };
            if crc32c::crc32c(body) != crc {
                break pos;
            }
            match serde_json::from_slice::<LogRecord>(body) {
                Ok(LogRecord::Purged(id)) => last_purged = Some(id),
                Ok(LogRecord::Entry(entry)) => {
                    entries.insert(entry.log_id.index, (entry, pos as u64));
                }
                Err(_) => break pos,
            }
            pos += 8 + len as usize;
        };
        if valid_end < bytes.len() {
            warn!(
                path = %path.display(),
                valid_bytes = valid_end,
                file_bytes = bytes.len(),
                "truncating the torn tail of the metadata log"
            );
            file.set_len(valid_end as u64)
                .and_then(|()| file.sync_all())
                .map_err(|e| io_err("cannot truncate", &path, e))?;
        }
        Ok(LogStore {
            inner: Arc::new(Mutex::new(LogInner {
                dir: dir.to_path_buf(),
                file,
                entries,
                end: valid_end as u64,
                last_purged,
                vote,
                committed,
            })),
        })
    }

    fn lock(&self) -> MutexGuard<'_, LogInner> {
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// True if nothing was ever written: no vote, no entry, no purge (a node that has never
    /// been part of a quorum).
    pub fn is_pristine(&self) -> bool {
        let inner = self.lock();
        inner.vote.is_none() && inner.entries.is_empty() && inner.last_purged.is_none()
    }

    /// Runs `f` on the log on the blocking pool (it writes and fsyncs).
    async fn blocking<T: Send + 'static>(
        &self,
        f: impl FnOnce(&mut LogInner) -> std::io::Result<T> + Send + 'static,
    ) -> std::io::Result<T> {
        let inner = self.inner.clone();
        tokio::task::spawn_blocking(move || {
            let mut guard = inner.lock().unwrap_or_else(|p| p.into_inner());
            f(&mut guard)
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

impl LogInner {
    fn path(&self) -> PathBuf {
        self.dir.join(LOG_FILE)
    }

    fn append(&mut self, entries: Vec<Entry<TypeConfig>>) -> std::io::Result<()> {
        let mut buf = Vec::new();
        let mut placed = Vec::with_capacity(entries.len());
        for entry in entries {
            let pos = self.end + buf.len() as u64;
            buf.extend_from_slice(&frame(&LogRecord::Entry(entry.clone()))?);
            placed.push((entry, pos));
        }
        let path = self.path();
        if let Err(e) = self
            .file
            .write_all(&buf)
            .and_then(|()| self.file.sync_data())
        {
            // Leave no half-written frame behind for the next append to follow.
            let _ = self.file.set_len(self.end);
            return Err(io_err("cannot append to", &path, e));
        }
        self.end += buf.len() as u64;
        for (entry, pos) in placed {
            self.entries.insert(entry.log_id.index, (entry, pos));
        }
        Ok(())
    }

    /// Removes entries from `index` on.
    fn truncate(&mut self, index: u64) -> std::io::Result<()> {
        let Some(pos) = self.entries.range(index..).next().map(|(_, (_, pos))| *pos) else {
            return Ok(());
        };
        let path = self.path();
        self.file
            .set_len(pos)
            .and_then(|()| self.file.sync_all())
            .map_err(|e| io_err("cannot truncate", &path, e))?;
        self.end = pos;
        self.entries.split_off(&index);
        Ok(())
    }

    /// Drops entries up to `log_id` and rewrites the file without them.
    fn purge(&mut self, log_id: LogId<u64>) -> std::io::Result<()> {
        let kept = self.entries.split_off(&(log_id.index + 1));
        self.entries.clear();
        if self.last_purged.is_none_or(|p| p < log_id) {
            self.last_purged = Some(log_id);
        }
        let mut buf = Vec::new();
        if let Some(purged) = self.last_purged {
            buf.extend_from_slice(&frame(&LogRecord::Purged(purged))?);
        }
        for (index, (entry, _)) in kept {
            let pos = buf.len() as u64;
            buf.extend_from_slice(&frame(&LogRecord::Entry(entry.clone()))?);
            self.entries.insert(index, (entry, pos));
        }
        let path = self.path();
        write_atomically(&path, &buf)?;
        self.file = OpenOptions::new()
            .read(true)
            .append(true)
            .open(&path)
            .map_err(|e| io_err("cannot open", &path, e))?;
        self.end = buf.len() as u64;
        Ok(())
    }
}

impl RaftLogReader<TypeConfig> for LogStore {
    async fn try_get_log_entries<RB: RangeBounds<u64> + Clone + Debug + OptionalSend>(
        &mut self,
        range: RB,
    ) -> Result<Vec<Entry<TypeConfig>>, StorageError<u64>> {
        Ok(self
            .lock()
            .entries
            .range(range)
            .map(|(_, (entry, _))| entry.clone())
            .collect())
    }
}

impl RaftLogStorage<TypeConfig> for LogStore {
    type LogReader = LogStore;

    async fn get_log_state(&mut self) -> Result<LogState<TypeConfig>, StorageError<u64>> {
        let inner = self.lock();
        let last = inner
            .entries
            .values()
            .next_back()
            .map(|(e, _)| e.log_id)
            .or(inner.last_purged);
        Ok(LogState {
            last_purged_log_id: inner.last_purged,
            last_log_id: last,
        })
    }

    async fn get_log_reader(&mut self) -> Self::LogReader {
        self.clone()
    }

    async fn save_vote(&mut self, vote: &Vote<u64>) -> Result<(), StorageError<u64>> {
        let vote = *vote;
        self.blocking(move |inner| {
            let bytes = serde_json::to_vec(&vote).map_err(std::io::Error::other)?;
            write_atomically(&inner.dir.join(VOTE_FILE), &bytes)?;
            inner.vote = Some(vote);
            Ok(())
        })
        .await
        .map_err(|e| StorageError::from(StorageIOError::write_vote(AnyError::new(&e))))
    }

    async fn read_vote(&mut self) -> Result<Option<Vote<u64>>, StorageError<u64>> {
        Ok(self.lock().vote)
    }

    async fn save_committed(
        &mut self,
        committed: Option<LogId<u64>>,
    ) -> Result<(), StorageError<u64>> {
        self.blocking(move |inner| {
            let path = inner.dir.join(COMMITTED_FILE);
            let tmp = path.with_extension("tmp");
            let bytes = serde_json::to_vec(&committed).map_err(std::io::Error::other)?;
            fs::write(&tmp, bytes)
                .and_then(|()| fs::rename(&tmp, &path))
                .map_err(|e| io_err("cannot write", &path, e))?;
            inner.committed = committed;
            Ok(())
        })
        .await
        .map_err(|e| StorageError::from(StorageIOError::write_logs(AnyError::new(&e))))
    }

    async fn read_committed(&mut self) -> Result<Option<LogId<u64>>, StorageError<u64>> {
        Ok(self.lock().committed)
    }

    async fn append<I>(
        &mut self,
        entries: I,
        callback: LogFlushed<TypeConfig>,
    ) -> Result<(), StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let entries: Vec<_> = entries.into_iter().collect();
        match self.blocking(move |inner| inner.append(entries)).await {
            Ok(()) => {
                callback.log_io_completed(Ok(()));
                Ok(())
            }
            Err(e) => {
                let err = StorageError::from(StorageIOError::write_logs(AnyError::new(&e)));
                callback.log_io_completed(Err(e));
                Err(err)
            }
        }
    }

    async fn truncate(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.blocking(move |inner| inner.truncate(log_id.index))
            .await
            .map_err(|e| StorageError::from(StorageIOError::write_logs(AnyError::new(&e))))
    }

    async fn purge(&mut self, log_id: LogId<u64>) -> Result<(), StorageError<u64>> {
        self.blocking(move |inner| inner.purge(log_id))
            .await
            .map_err(|e| StorageError::from(StorageIOError::write_logs(AnyError::new(&e))))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{MetadataBatch, MetadataRecord, METADATA_RECORD_VERSION};
    use openraft::{CommittedLeaderId, EntryPayload};

    fn entry(index: u64) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
            payload: EntryPayload::Normal(MetadataBatch {
                version: METADATA_RECORD_VERSION,
                records: vec![MetadataRecord::ProducerIds {
                    next_producer_id: index as i64,
                }],
            }),
        }
    }

    fn indexes(store: &LogStore) -> Vec<u64> {
        store.lock().entries.keys().copied().collect()
    }

    #[tokio::test]
    async fn appends_truncations_purges_and_votes_survive_reopen() {
        let dir = tempfile::tempdir().unwrap();
        let mut store = LogStore::open(dir.path()).unwrap();
        assert!(store.is_pristine());
        store
            .blocking(|inner| inner.append((1..=5).map(entry).collect()))
            .await
            .unwrap();
        store
            .truncate(LogId::new(CommittedLeaderId::new(1, 0), 4))
            .await
            .unwrap();
        store
            .purge(LogId::new(CommittedLeaderId::new(1, 0), 1))
            .await
            .unwrap();
        store
            .blocking(|inner| inner.append(vec![entry(4)]))
            .await
            .unwrap();
        let vote = Vote::new(3, 2);
        store.save_vote(&vote).await.unwrap();
        drop(store);

        let mut store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&store), vec![2, 3, 4]);
        let state = store.get_log_state().await.unwrap();
        assert_eq!(state.last_purged_log_id.map(|l| l.index), Some(1));
        assert_eq!(state.last_log_id.map(|l| l.index), Some(4));
        assert_eq!(store.read_vote().await.unwrap(), Some(vote));
        assert!(!store.is_pristine());
    }

    #[tokio::test]
    async fn a_torn_tail_is_truncated_on_recovery() {
        let dir = tempfile::tempdir().unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        store
            .blocking(|inner| inner.append((1..=3).map(entry).collect()))
            .await
            .unwrap();
        drop(store);
        let path = dir.path().join(LOG_FILE);
        let full = fs::metadata(&path).unwrap().len();
        // A crash in the middle of writing the third frame.
        OpenOptions::new()
            .write(true)
            .open(&path)
            .unwrap()
            .set_len(full - 5)
            .unwrap();
        let store = LogStore::open(dir.path()).unwrap();
        assert_eq!(indexes(&store), vec![1, 2]);
        // The next append lands right after the last whole frame.
        store
            .blocking(|inner| inner.append(vec![entry(3)]))
            .await
            .unwrap();
        drop(store);
        assert_eq!(indexes(&LogStore::open(dir.path()).unwrap()), vec![1, 2, 3]);

        // A flipped byte inside the last frame is caught by its checksum.
        let mut bytes = fs::read(&path).unwrap();
        let last = bytes.len() - 3;
        bytes[last] ^= 0xff;
        fs::write(&path, &bytes).unwrap();
        assert_eq!(indexes(&LogStore::open(dir.path()).unwrap()), vec![1, 2]);
    }
}
