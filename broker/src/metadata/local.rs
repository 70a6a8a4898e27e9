//! A crash-safe, single-broker metadata store: the whole image as one JSON file, replaced
//! atomically (write a temporary file, fsync, rename, fsync the directory) on every change.
//!
//! Metadata changes are rare (topic and config administration), so rewriting the whole
//! image is simpler than a log with snapshots and still O(topics) per change. This node is
//! always the active controller of its one-node cluster: every proposal is accepted.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use tokio::sync::watch;

use super::{
    BoxFuture, Error, MetadataImage, MetadataRecord, MetadataStore, ProposeError, QuorumInfo,
    QuorumReplica, Result,
};

/// File name of the image inside the metadata directory.
pub const IMAGE_FILE: &str = "metadata-image.json";

/// [`MetadataStore`] kept in one file on local disk.
#[derive(Debug)]
pub struct LocalMetadataStore {
    /// This node's id: the one voter and active controller.
    node_id: i32,
    /// Shared with the blocking threads that write the file.
    inner: Arc<Inner>,
}

#[derive(Debug)]
struct Inner {
    path: PathBuf,
    /// The latest image, published to subscribers.
    image: watch::Sender<Arc<MetadataImage>>,
    /// Serialises writers so two changes never interleave their file writes.
    write_lock: Mutex<()>,
}

impl LocalMetadataStore {
    /// Opens the store in `dir` (created if missing). A new store gets a fresh cluster id, or
    /// `cluster_id` if given. An existing store keeps its id; a different `cluster_id` is an
    /// error, because it means the directory belongs to another cluster.
    pub fn open(dir: &Path, node_id: i32, cluster_id: Option<&str>) -> Result<Self> {
        fs::create_dir_all(dir).map_err(|source| Error::Io {
            path: dir.to_path_buf(),
            source,
        })?;
        let path = dir.join(IMAGE_FILE);
        let image = match fs::read(&path) {
            Ok(bytes) => {
                let mut image: MetadataImage =
                    serde_json::from_slice(&bytes).map_err(|e| Error::Corrupt {
                        path: path.clone(),
                        reason: e.to_string(),
                    })?;
                if let Some(wanted) = cluster_id {
                    if wanted != image.cluster_id {
                        return Err(Error::Corrupt {
                            path: path.clone(),
                            reason: format!(
                                "it belongs to cluster {} but cluster.id is {wanted}",
                                image.cluster_id
                            ),
                        });
                    }
                }
                image.rebuild_indexes();
                image
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                // Producer id 0 is valid in Kafka; the image starts there.
                let image = MetadataImage::new(
                    cluster_id
                        .map(str::to_string)
                        .unwrap_or_else(super::new_cluster_id),
                );
                write_atomically(&path, &image)?;
                image
            }
            Err(source) => return Err(Error::Io { path, source }),
        };
        Ok(LocalMetadataStore {
            node_id,
            inner: Arc::new(Inner {
                path,
                image: watch::Sender::new(Arc::new(image)),
                write_lock: Mutex::new(()),
            }),
        })
    }

    /// Commits `records` now, blocking on the file write, and answers their offset. For
    /// start-up, before the async runtime serves anything (a single node registering
    /// itself); everything else goes through [`MetadataStore::propose`].
    pub fn commit_blocking(&self, records: &[MetadataRecord]) -> Result<i64> {
        self.inner.commit(records)
    }
}

impl Inner {
    /// Makes `records` durable as one change and publishes the resulting image (blocking:
    /// it fsyncs). On error the published image is unchanged.
    fn commit(&self, records: &[MetadataRecord]) -> Result<i64> {
        let _writer = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = (**self.image.borrow()).clone();
        let offset = next.offset + 1;
        next.replay_batch(records, offset);
        write_atomically(&self.path, &next)?;
        self.image.send_replace(Arc::new(next));
        Ok(offset)
    }
}

impl MetadataStore for LocalMetadataStore {
    fn image(&self) -> Arc<MetadataImage> {
        self.inner.image.borrow().clone()
    }

    fn subscribe(&self) -> watch::Receiver<Arc<MetadataImage>> {
        self.inner.image.subscribe()
    }

    fn propose(&self, records: Vec<MetadataRecord>) -> BoxFuture<'_, Result<i64, ProposeError>> {
        let inner = self.inner.clone();
        Box::pin(async move {
            // The file write fsyncs: keep it off the async workers.
            let offset = tokio::task::spawn_blocking(move || inner.commit(&records))
                .await
                .map_err(|e| {
                    ProposeError::Store(Error::Io {
                        path: PathBuf::new(),
                        source: std::io::Error::other(e.to_string()),
                    })
                })??;
            Ok(offset)
        })
    }

    fn active_controller(&self) -> Option<i32> {
        Some(self.node_id)
    }

    fn quorum_info(&self) -> QuorumInfo {
        let offset = self.image().offset;
        // The one voter is the leader and always caught up with itself.
        let now = crate::time::now_ms();
        let me = QuorumReplica {
            id: self.node_id,
            log_end_offset: offset + 1,
            last_fetch_ms: now,
            last_caught_up_ms: now,
            listeners: vec![],
        };
        QuorumInfo {
            leader_id: self.node_id,
            leader_epoch: 0,
            high_watermark: offset + 1,
            voters: vec![me],
            observers: vec![],
        }
    }
}

fn write_atomically(path: &Path, image: &MetadataImage) -> Result<()> {
    let io = |source| Error::Io {
        path: path.to_path_buf(),
        source,
    };
    let bytes = serde_json::to_vec_pretty(image).map_err(|e| Error::Corrupt {
        path: path.to_path_buf(),
        reason: e.to_string(),
    })?;
    let tmp = path.with_extension("json.tmp");
    {
        let mut file = OpenOptions::new()
            .create(true)
            .write(true)
            .truncate(true)
            .open(&tmp)
            .map_err(io)?;
        file.write_all(&bytes).map_err(io)?;
        file.sync_all().map_err(io)?;
    }
    fs::rename(&tmp, path).map_err(io)?;
    if let Some(dir) = path.parent() {
        File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{new_topic_id, PartitionState, TopicImage};
    use std::collections::BTreeMap;

    #[test]
    fn survives_reopen_and_keeps_cluster_id() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalMetadataStore::open(dir.path(), 0, None).unwrap();
        let cluster_id = store.image().cluster_id.clone();
        let id = new_topic_id();
        store
            .commit_blocking(&[MetadataRecord::Topic(TopicImage {
                name: "t".into(),
                id,
                partitions: vec![PartitionState {
                    replicas: vec![0],
                    isr: vec![0],
                    leader: 0,
                    ..PartitionState::default()
                }],
                configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            })])
            .unwrap();
        drop(store);
        let store = LocalMetadataStore::open(dir.path(), 0, None).unwrap();
        let image = store.image();
        assert_eq!(image.cluster_id, cluster_id);
        assert_eq!(
            image.topic_by_id(&id).unwrap().configs["retention.ms"],
            "1000"
        );
        assert!(LocalMetadataStore::open(dir.path(), 0, Some("other")).is_err());
    }

    #[test]
    fn failed_write_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalMetadataStore::open(dir.path(), 0, None).unwrap();
        let before = store.image();
        // A directory where the temporary file must go makes the write fail.
        std::fs::create_dir(dir.path().join("metadata-image.json.tmp")).unwrap();
        let err = store.commit_blocking(&[MetadataRecord::ProducerIds {
            next_producer_id: 1000,
        }]);
        assert!(err.is_err());
        assert_eq!(*store.image(), *before);
    }

    #[tokio::test]
    async fn proposals_commit_in_order_and_reach_subscribers() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalMetadataStore::open(dir.path(), 3, None).unwrap();
        let mut updates = store.subscribe();
        let first = store
            .propose(vec![MetadataRecord::ProducerIds {
                next_producer_id: 1000,
            }])
            .await
            .unwrap();
        let second = store
            .propose(vec![MetadataRecord::ProducerIds {
                next_producer_id: 2000,
            }])
            .await
            .unwrap();
        assert_eq!((first, second), (0, 1));
        assert!(updates.has_changed().unwrap());
        let seen = updates.borrow_and_update().clone();
        assert_eq!((seen.offset, seen.next_producer_id), (1, 2000));
        assert_eq!(store.active_controller(), Some(3));
        assert_eq!(store.quorum_info().high_watermark, 2);
    }
}
