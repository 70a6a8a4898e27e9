//! The metadata quorum's state machine (openraft's `RaftStateMachine`): the
//! [`MetadataImage`], replayed from committed entries in log order and published on a
//! `watch` for `MetadataStore::subscribe`.
//!
//! The image is not written on every apply: a restarted node loads its last snapshot
//! (`quorum-snapshot.json`: the image as JSON with the last applied log id and membership,
//! replaced atomically) and replays the committed entries after it, as openraft drives it.
//! A node that fell behind the leader's purged log receives the leader's snapshot instead.

use std::fs;
use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use openraft::storage::{RaftStateMachine, Snapshot};
use openraft::{
    AnyError, BasicNode, Entry, EntryPayload, LogId, OptionalSend, RaftSnapshotBuilder,
    SnapshotMeta, StorageError, StorageIOError, StoredMembership,
};
use serde::{Deserialize, Serialize};
use tokio::sync::watch;
use tracing::error;

use super::log_store::write_atomically;
use super::TypeConfig;
use crate::metadata::{MetadataImage, METADATA_RECORD_VERSION};

/// File name of the latest snapshot inside the metadata directory.
pub const SNAPSHOT_FILE: &str = "quorum-snapshot.json";

/// What a snapshot holds (also its wire form in InstallSnapshot).
#[derive(Debug, Serialize, Deserialize)]
struct SnapshotFile {
    meta: SnapshotMeta<u64, BasicNode>,
    image: MetadataImage,
}

/// The state machine; clones share one image (the snapshot builder is a clone).
#[derive(Debug, Clone)]
pub struct StateMachine {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    state: Mutex<State>,
    /// The applied image, for `MetadataStore::image` and `subscribe`.
    image: watch::Sender<Arc<MetadataImage>>,
}

#[derive(Debug)]
struct State {
    last_applied: Option<LogId<u64>>,
    membership: StoredMembership<u64, BasicNode>,
    /// The latest snapshot as its serialized bytes, served to followers that need it.
    snapshot: Option<(SnapshotMeta<u64, BasicNode>, Vec<u8>)>,
    snapshot_count: u64,
}

fn corrupt(path: &Path, e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::new(
        std::io::ErrorKind::InvalidData,
        format!("{} is corrupt: {e}", path.display()),
    )
}

impl StateMachine {
    /// Opens the state machine in `dir`, starting from the snapshot there if any (blocking).
    pub fn open(dir: &Path) -> std::io::Result<StateMachine> {
        let path = dir.join(SNAPSHOT_FILE);
        let (image, last_applied, membership, snapshot) = match fs::read(&path) {
            Ok(bytes) => {
                let file: SnapshotFile =
                    serde_json::from_slice(&bytes).map_err(|e| corrupt(&path, e))?;
                let mut image = file.image;
                image.rebuild_indexes();
                (
                    image,
                    file.meta.last_log_id,
                    file.meta.last_membership.clone(),
                    Some((file.meta, bytes)),
                )
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => (
                MetadataImage::new(String::new()),
                None,
                StoredMembership::default(),
                None,
            ),
            Err(e) => {
                return Err(std::io::Error::new(
                    e.kind(),
                    format!("cannot read {}: {e}", path.display()),
                ))
            }
        };
        Ok(StateMachine {
            shared: Arc::new(Shared {
                dir: dir.to_path_buf(),
                state: Mutex::new(State {
                    last_applied,
                    membership,
                    snapshot,
                    snapshot_count: 0,
                }),
                image: watch::Sender::new(Arc::new(image)),
            }),
        })
    }

    fn lock(&self) -> MutexGuard<'_, State> {
        self.shared.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The sender the applied images are published on.
    pub fn images(&self) -> &watch::Sender<Arc<MetadataImage>> {
        &self.shared.image
    }

    /// The image and the last applied log id a snapshot is made of, read together: apply
    /// publishes the image and moves `last_applied` under the same lock.
    fn snapshot_view(&self) -> (Arc<MetadataImage>, Option<LogId<u64>>) {
        let state = self.lock();
        let image = self.shared.image.borrow().clone();
        (image, state.last_applied)
    }

    /// Writes `meta` + the current image as the snapshot file and keeps the bytes.
    async fn persist(
        &self,
        meta: SnapshotMeta<u64, BasicNode>,
        image: Arc<MetadataImage>,
    ) -> std::io::Result<Vec<u8>> {
        let path = self.shared.dir.join(SNAPSHOT_FILE);
        tokio::task::spawn_blocking(move || {
            let bytes = serde_json::to_vec(&SnapshotFile {
                meta,
                image: (*image).clone(),
            })
            .map_err(std::io::Error::other)?;
            write_atomically(&path, &bytes)?;
            Ok(bytes)
        })
        .await
        .map_err(std::io::Error::other)?
    }
}

/// A batch or snapshot written by a newer Oxbow cannot be replayed correctly: the node stops
/// (openraft treats a state machine error as fatal) rather than misread the cluster's state.
fn check_version_of(version: u16) -> Result<(), String> {
    if version > METADATA_RECORD_VERSION {
        return Err(format!(
            "the metadata log holds records of version {version} but this Oxbow reads \
             versions up to {METADATA_RECORD_VERSION}; upgrade this node before it rejoins"
        ));
    }
    Ok(())
}

impl RaftSnapshotBuilder<TypeConfig> for StateMachine {
    async fn build_snapshot(&mut self) -> Result<Snapshot<TypeConfig>, StorageError<u64>> {
        // Openraft builds snapshots in their own task while entries keep applying.
        let (image, last) = self.snapshot_view();
        let meta = {
            let mut state = self.lock();
            state.snapshot_count += 1;
            SnapshotMeta {
                last_log_id: last,
                last_membership: state.membership.clone(),
                snapshot_id: format!(
                    "{}-{}-{}",
                    last.map(|l| l.leader_id.term).unwrap_or(0),
                    last.map(|l| l.index).unwrap_or(0),
                    state.snapshot_count
                ),
            }
        };
        let bytes = self.persist(meta.clone(), image).await.map_err(|e| {
            StorageError::from(StorageIOError::write_snapshot(
                Some(meta.signature()),
                AnyError::new(&e),
            ))
        })?;
        self.lock().snapshot = Some((meta.clone(), bytes.clone()));
        Ok(Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        })
    }
}

impl RaftStateMachine<TypeConfig> for StateMachine {
    type SnapshotBuilder = StateMachine;

    async fn applied_state(
        &mut self,
    ) -> Result<(Option<LogId<u64>>, StoredMembership<u64, BasicNode>), StorageError<u64>> {
        let state = self.lock();
        Ok((state.last_applied, state.membership.clone()))
    }

    async fn apply<I>(&mut self, entries: I) -> Result<Vec<()>, StorageError<u64>>
    where
        I: IntoIterator<Item = Entry<TypeConfig>> + OptionalSend,
        I::IntoIter: OptionalSend,
    {
        let mut image: Option<MetadataImage> = None;
        let mut replies = Vec::new();
        let mut state = self.lock();
        let mut failure = None;
        for entry in entries {
            match entry.payload {
                EntryPayload::Blank => {}
                EntryPayload::Normal(batch) => {
                    if let Err(reason) = check_version_of(batch.version) {
                        error!(index = entry.log_id.index, "{reason}");
                        failure = Some(StorageError::from(StorageIOError::apply(
                            entry.log_id,
                            AnyError::error(reason),
                        )));
                        break;
                    }
                    let image = image.get_or_insert_with(|| (**self.shared.image.borrow()).clone());
                    image.replay_batch(&batch.records, entry.log_id.index as i64);
                }
                EntryPayload::Membership(membership) => {
                    state.membership = StoredMembership::new(Some(entry.log_id), membership);
                }
            }
            state.last_applied = Some(entry.log_id);
            replies.push(());
        }
        if let Some(image) = image {
            self.shared.image.send_replace(Arc::new(image));
        }
        drop(state);
        match failure {
            Some(e) => Err(e),
            None => Ok(replies),
        }
    }

    async fn get_snapshot_builder(&mut self) -> Self::SnapshotBuilder {
        self.clone()
    }

    async fn begin_receiving_snapshot(
        &mut self,
    ) -> Result<Box<Cursor<Vec<u8>>>, StorageError<u64>> {
        Ok(Box::new(Cursor::new(Vec::new())))
    }

    async fn install_snapshot(
        &mut self,
        meta: &SnapshotMeta<u64, BasicNode>,
        snapshot: Box<Cursor<Vec<u8>>>,
    ) -> Result<(), StorageError<u64>> {
        let bytes = snapshot.into_inner();
        let read_err = |e: &dyn std::fmt::Display| {
            StorageError::from(StorageIOError::read_snapshot(
                Some(meta.signature()),
                AnyError::error(e),
            ))
        };
        let file: SnapshotFile = serde_json::from_slice(&bytes).map_err(|e| read_err(&e))?;
        let mut image = file.image;
        image.rebuild_indexes();
        let image = Arc::new(image);
        self.persist(meta.clone(), image.clone())
            .await
            .map_err(|e| {
                StorageError::from(StorageIOError::write_snapshot(
                    Some(meta.signature()),
                    AnyError::new(&e),
                ))
            })?;
        let mut state = self.lock();
        state.last_applied = meta.last_log_id;
        state.membership = meta.last_membership.clone();
        state.snapshot = Some((meta.clone(), bytes));
        self.shared.image.send_replace(image);
        drop(state);
        Ok(())
    }

    async fn get_current_snapshot(
        &mut self,
    ) -> Result<Option<Snapshot<TypeConfig>>, StorageError<u64>> {
        Ok(self.lock().snapshot.clone().map(|(meta, bytes)| Snapshot {
            meta,
            snapshot: Box::new(Cursor::new(bytes)),
        }))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{MetadataBatch, MetadataRecord};
    use openraft::CommittedLeaderId;

    fn batch(version: u16, next_producer_id: i64) -> EntryPayload<TypeConfig> {
        EntryPayload::Normal(MetadataBatch {
            version,
            records: vec![MetadataRecord::ProducerIds { next_producer_id }],
        })
    }

    fn entry(index: u64, payload: EntryPayload<TypeConfig>) -> Entry<TypeConfig> {
        Entry {
            log_id: LogId::new(CommittedLeaderId::new(1, 0), index),
            payload,
        }
    }

    #[tokio::test]
    async fn entries_apply_in_order_and_a_snapshot_restores_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        let mut seen = sm.images().subscribe();
        sm.apply(vec![
            entry(1, batch(1, 100)),
            entry(2, EntryPayload::Blank),
            entry(3, batch(1, 300)),
        ])
        .await
        .unwrap();
        let image = seen.borrow_and_update().clone();
        assert_eq!((image.offset, image.next_producer_id), (3, 300));
        let snapshot = sm.build_snapshot().await.unwrap();
        assert_eq!(snapshot.meta.last_log_id.map(|l| l.index), Some(3));
        drop(sm);

        let mut reopened = StateMachine::open(dir.path()).unwrap();
        assert_eq!(reopened.images().borrow().next_producer_id, 300);
        let (applied, _) = reopened.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(3));

        // Another node installs the snapshot's bytes.
        let other = tempfile::tempdir().unwrap();
        let mut follower = StateMachine::open(other.path()).unwrap();
        follower
            .install_snapshot(&snapshot.meta, snapshot.snapshot)
            .await
            .unwrap();
        assert_eq!(follower.images().borrow().offset, 3);
        assert!(follower.get_current_snapshot().await.unwrap().is_some());
    }

    /// Openraft builds snapshots in their own task while entries keep applying: a snapshot's
    /// image must be exactly the one at its last log id, or a node installing it (or
    /// restarting from it) would skip the entries in between.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_snapshot_built_while_entries_apply_matches_its_last_log_id() {
        let dir = tempfile::tempdir().unwrap();
        let sm = StateMachine::open(dir.path()).unwrap();
        let mut applier = sm.clone();
        let apply = tokio::spawn(async move {
            for i in 1..=20000u64 {
                applier
                    .apply(vec![entry(i, batch(1, i as i64))])
                    .await
                    .unwrap();
            }
        });
        let builder = sm.clone();
        let mut checked = 0;
        while !apply.is_finished() {
            // What build_snapshot takes, without the file write (too slow to race).
            let (image, last) = builder.snapshot_view();
            assert_eq!(
                last.map(|l| l.index as i64).unwrap_or(-1),
                image.offset,
                "snapshot image at {} labelled {last:?}",
                image.offset
            );
            checked += 1;
            tokio::task::yield_now().await;
        }
        apply.await.unwrap();
        assert!(checked > 0);
    }

    #[tokio::test]
    async fn a_batch_of_a_newer_version_stops_the_state_machine() {
        let dir = tempfile::tempdir().unwrap();
        let mut sm = StateMachine::open(dir.path()).unwrap();
        let err = sm
            .apply(vec![
                entry(1, batch(1, 100)),
                entry(2, batch(METADATA_RECORD_VERSION + 1, 200)),
            ])
            .await
            .unwrap_err()
            .to_string();
        assert!(
            err.contains(&format!(
                "records of version {}",
                METADATA_RECORD_VERSION + 1
            )),
            "{err}"
        );
        // What applied before the refused batch stays applied; nothing after it.
        assert_eq!(sm.images().borrow().next_producer_id, 100);
        let (applied, _) = sm.applied_state().await.unwrap();
        assert_eq!(applied.map(|l| l.index), Some(1));
    }
}
