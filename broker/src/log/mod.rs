//! Durable segmented partition logs, laid out on disk exactly like Apache Kafka's.
//!
//! A broker has one or more log dirs (`log.dirs`). Each holds `meta.properties`, a `.lock`
//! (held exclusively while the broker runs), the root checkpoints
//! (`recovery-point-offset-checkpoint`, `log-start-offset-checkpoint`,
//! `replication-offset-checkpoint`), a `.kafka_cleanshutdown` marker after a clean stop, and
//! one directory `<topic>-<partition>` per partition containing:
//! - segments `<20-digit base offset>.log` with record batches stored byte-for-byte as
//!   producers sent them (only base offset, leader epoch and, for LogAppendTime topics, the
//!   timestamp are patched),
//! - sparse `.index` (offset -> position) and `.timeindex` (timestamp -> offset) files,
//! - `.txnindex` files (aborted transactions, Kafka's format) beside the segments holding
//!   an ABORT marker,
//! - `<20-digit offset>.snapshot` producer state snapshots (Kafka's format), taken at every
//!   segment roll and at a clean close, loaded at open so only the batches after the
//!   latest one are replayed,
//! - `leader-epoch-checkpoint` and `partition.metadata` (topic id).
//!
//! Compacted topics (`cleanup.policy=compact`) are cleaned by [`PartitionLog::compact`]
//! (see the `cleaner` module); its position is kept in the root `cleaner-offset-checkpoint`.
//!
//! [`LogManager`] owns the dirs and the set of partitions; [`PartitionLog`] is one partition
//! (append, read, ListOffsets lookups, retention, DeleteRecords, truncation, recovery after
//! a crash). Every error maps to a Kafka error code through [`Error::kafka_code`].

mod batch;
mod checkpoint;
mod cleaner;
pub mod config;
mod error;
mod index;
mod leader_epoch;
mod manager;
mod meta;
mod partition;
mod producer_snapshot;
mod producer_state;
mod records;
mod replay;
mod segment;
pub mod segment_files;
mod txn;

#[cfg(test)]
mod tests;

/// Builders of real v2 batches, for tests of the layers above the log.
#[cfg(test)]
pub(crate) use batch::test_util;

use std::fmt;

pub use batch::AppendOrigin;
pub use checkpoint::{
    CLEANER_OFFSET_CHECKPOINT, LOG_START_OFFSET_CHECKPOINT, RECOVERY_POINT_CHECKPOINT,
    REPLICATION_OFFSET_CHECKPOINT,
};
pub use cleaner::{CompactionStats, MAX_OFFSET_MAP_BYTES};
pub use config::{LogConfig, TimestampType};
pub use error::{codes, Error, Result};
pub use leader_epoch::{LEADER_EPOCH_CHECKPOINT, UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET};
pub use manager::{LogDirInfo, LogManager, PartitionDirInfo, LOCK_FILE};
pub(crate) use meta::ensure_meta_properties;
pub use meta::{
    random_kafka_uuid, stored_meta_ids, uuid_from_kafka_string, uuid_to_kafka_string,
    META_PROPERTIES, PARTITION_METADATA,
};
pub use partition::{LoadOptions, PartitionLog, PRODUCER_ID_EXPIRATION_MS};
pub use producer_state::ActiveProducer;
pub use replay::replay_records;
pub use txn::{AbortedTxn, ControlRecordType, EndTxnMarker};

/// The directory of the cluster metadata log inside the first log dir: the name KRaft uses,
/// so operators recognise it. It looks like a partition directory but belongs to the metadata
/// store, not to a topic, so the log manager leaves it alone.
pub const METADATA_DIR: &str = "__cluster_metadata-0";

/// Marker file written by a clean shutdown; its presence lets the next start skip recovery.
pub const CLEAN_SHUTDOWN_FILE: &str = ".kafka_cleanshutdown";

/// A topic partition, displayed (and named on disk) as `topic-partition`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// Builds a topic partition.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        TopicPartition {
            topic: topic.into(),
            partition,
        }
    }

    /// Parses a partition directory name `<topic>-<partition>`; `None` for anything else
    /// (including `...-delete` and `...-future` directories).
    pub fn from_dir_name(name: &str) -> Option<Self> {
        let (topic, partition) = name.rsplit_once('-')?;
        if topic.is_empty()
            || partition.is_empty()
            || !partition.bytes().all(|b| b.is_ascii_digit())
        {
            return None;
        }
        Some(TopicPartition::new(topic, partition.parse().ok()?))
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// Result of [`PartitionLog::append`], carrying what a ProduceResponse partition needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppendInfo {
    /// Offset assigned to the first record of the first batch (-1 if nothing was given).
    pub base_offset: i64,
    /// Offset of the last record appended.
    pub last_offset: i64,
    /// The broker time stamped into the batches if the topic uses LogAppendTime, else -1.
    pub log_append_time: i64,
    /// Log start offset after the append.
    pub log_start_offset: i64,
    /// The request was an idempotent retry: nothing was written, offsets are the original ones.
    pub duplicate: bool,
}

/// A byte range of a segment file holding whole record batches, to be sent as is (with
/// `sendfile`, or read with [`FileRegion::read_to`]). The handle keeps the file readable
/// even if retention or compaction removes the segment meanwhile.
#[derive(Debug, Clone)]
pub struct FileRegion {
    /// The segment's `.log` file.
    pub file: std::sync::Arc<std::fs::File>,
    /// Byte position of the first batch.
    pub position: u64,
    /// Length in bytes (whole batches).
    pub len: usize,
}

impl FileRegion {
    /// Appends the region's bytes to `out`. Fails (with `UnexpectedEof`) if the file was
    /// truncated below the region meanwhile (replication truncating a divergent tail).
    pub fn read_to(&self, out: &mut Vec<u8>) -> std::io::Result<()> {
        use std::os::unix::fs::FileExt;
        let start = out.len();
        out.resize(start + self.len, 0);
        let result = self.file.read_exact_at(&mut out[start..], self.position);
        if result.is_err() {
            out.truncate(start);
        }
        result
    }
}

/// What a read left below its bound (the high watermark or log end offset): what a waiting
/// fetch counts as available, as Kafka's `DelayedFetch` does from offset positions.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum MoreData {
    /// Everything visible from the fetch offset was returned.
    None,
    /// The read's byte limit stopped it inside the segment: at least the limit's worth is
    /// available.
    InSegment,
    /// The bound lies in a later segment than the one read; Kafka completes such a fetch
    /// at once.
    LaterSegment,
}

/// Result of [`PartitionLog::read_regions`]: where the batches of a fetch are, plus what a
/// FetchResponse partition needs besides them.
#[derive(Debug, Clone)]
pub struct LogSlice {
    /// File regions of whole batches, in offset order (at most one: a fetch reads from one
    /// segment, as in Kafka).
    pub regions: Vec<FileRegion>,
    /// Total bytes of `regions`.
    pub size: usize,
    /// Whether batches below the read's bound were left out, and where.
    pub more: MoreData,
    /// High watermark at the time of the read.
    pub high_watermark: i64,
    /// Log start offset at the time of the read.
    pub log_start_offset: i64,
    /// Last stable offset at the time of the read.
    pub last_stable_offset: i64,
    /// `None` if nothing was read, else an offset no record read reaches (Kafka's
    /// `fetchUpperBoundOffset`): a read_committed fetch returns the aborted transactions
    /// overlapping `[fetch offset, this)` ([`PartitionLog::collect_aborted_transactions`]).
    pub fetch_upper_bound_offset: Option<i64>,
}

/// Result of [`PartitionLog::read`], carrying what a FetchResponse partition needs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FetchData {
    /// Whole batches, byte-identical to what is stored.
    pub records: bytes::Bytes,
    /// High watermark at the time of the read.
    pub high_watermark: i64,
    /// Log start offset at the time of the read.
    pub log_start_offset: i64,
    /// Last stable offset at the time of the read.
    pub last_stable_offset: i64,
}
