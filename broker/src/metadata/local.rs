//! A crash-safe, single-broker metadata store: the whole image as one JSON file, replaced
//! atomically (write a temporary file, fsync, rename, fsync the directory) on every change.
//!
//! Metadata changes are rare (topic and config administration), so rewriting the whole
//! image is simpler than a log with snapshots and still O(topics) per change.

use std::fs::{self, File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, RwLock};

use super::{Error, MetadataImage, MetadataRecord, MetadataStore, Result};

/// File name of the image inside the metadata directory.
pub const IMAGE_FILE: &str = "metadata-image.json";

/// [`MetadataStore`] kept in one file on local disk.
#[derive(Debug)]
pub struct LocalMetadataStore {
    path: PathBuf,
    image: RwLock<Arc<MetadataImage>>,
    /// Serialises writers so two changes never interleave their file writes.
    write_lock: Mutex<()>,
}

impl LocalMetadataStore {
    /// Opens the store in `dir` (created if missing). A new store gets a fresh cluster id, or
    /// `cluster_id` if given. An existing store keeps its id; a different `cluster_id` is an
    /// error, because it means the directory belongs to another cluster.
    pub fn open(dir: &Path, cluster_id: Option<&str>) -> Result<Self> {
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
                image.reindex();
                image
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let image = MetadataImage {
                    cluster_id: cluster_id
                        .map(str::to_string)
                        .unwrap_or_else(super::new_cluster_id),
                    // Producer id 0 is valid in Kafka; start there.
                    next_producer_id: 0,
                    ..MetadataImage::default()
                };
                write_atomically(&path, &image)?;
                image
            }
            Err(source) => return Err(Error::Io { path, source }),
        };
        Ok(LocalMetadataStore {
            path,
            image: RwLock::new(Arc::new(image)),
            write_lock: Mutex::new(()),
        })
    }
}

impl MetadataStore for LocalMetadataStore {
    fn image(&self) -> Arc<MetadataImage> {
        match self.image.read() {
            Ok(guard) => guard.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    fn apply(&self, records: Vec<MetadataRecord>) -> Result<Arc<MetadataImage>> {
        let _writer = self.write_lock.lock().unwrap_or_else(|p| p.into_inner());
        let mut next = (*self.image()).clone();
        for record in &records {
            next = next.replay(record)?;
        }
        write_atomically(&self.path, &next)?;
        let next = Arc::new(next);
        match self.image.write() {
            Ok(mut guard) => *guard = next.clone(),
            Err(poisoned) => *poisoned.into_inner() = next.clone(),
        }
        Ok(next)
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
        let store = LocalMetadataStore::open(dir.path(), None).unwrap();
        let cluster_id = store.image().cluster_id.clone();
        let id = new_topic_id();
        store
            .apply(vec![MetadataRecord::Topic(TopicImage {
                name: "t".into(),
                id,
                partitions: vec![PartitionState {
                    replicas: vec![0],
                    isr: vec![0],
                    leader: 0,
                    leader_epoch: 0,
                }],
                configs: BTreeMap::from([("retention.ms".into(), "1000".into())]),
            })])
            .unwrap();
        drop(store);
        let store = LocalMetadataStore::open(dir.path(), None).unwrap();
        let image = store.image();
        assert_eq!(image.cluster_id, cluster_id);
        assert_eq!(
            image.topic_by_id(&id).unwrap().configs["retention.ms"],
            "1000"
        );
        assert!(LocalMetadataStore::open(dir.path(), Some("other")).is_err());
    }

    #[test]
    fn failed_batch_changes_nothing() {
        let dir = tempfile::tempdir().unwrap();
        let store = LocalMetadataStore::open(dir.path(), None).unwrap();
        let before = store.image();
        let err = store.apply(vec![
            MetadataRecord::ProducerIds {
                next_producer_id: 1000,
            },
            MetadataRecord::RemoveTopic {
                name: "missing".into(),
            },
        ]);
        assert!(err.is_err());
        assert_eq!(*store.image(), *before);
    }
}
