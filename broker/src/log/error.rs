//! Errors of the log layer and the Kafka error code each one is reported as.

use std::path::{Path, PathBuf};

use super::TopicPartition;

/// Result alias for the log layer.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Kafka error codes used by the log layer (subset of Kafka's `Errors` table).
pub mod codes {
    /// OFFSET_OUT_OF_RANGE.
    pub const OFFSET_OUT_OF_RANGE: i16 = 1;
    /// CORRUPT_MESSAGE.
    pub const CORRUPT_MESSAGE: i16 = 2;
    /// UNKNOWN_TOPIC_OR_PARTITION.
    pub const UNKNOWN_TOPIC_OR_PARTITION: i16 = 3;
    /// NOT_LEADER_OR_FOLLOWER.
    pub const NOT_LEADER_OR_FOLLOWER: i16 = 6;
    /// MESSAGE_TOO_LARGE.
    pub const MESSAGE_TOO_LARGE: i16 = 10;
    /// UNSUPPORTED_FOR_MESSAGE_FORMAT.
    pub const UNSUPPORTED_FOR_MESSAGE_FORMAT: i16 = 43;
    /// OUT_OF_ORDER_SEQUENCE_NUMBER.
    pub const OUT_OF_ORDER_SEQUENCE_NUMBER: i16 = 45;
    /// INVALID_PRODUCER_EPOCH.
    pub const INVALID_PRODUCER_EPOCH: i16 = 47;
    /// INVALID_TXN_STATE.
    pub const INVALID_TXN_STATE: i16 = 48;
    /// TRANSACTION_COORDINATOR_FENCED.
    pub const TRANSACTION_COORDINATOR_FENCED: i16 = 52;
    /// KAFKA_STORAGE_ERROR.
    pub const KAFKA_STORAGE_ERROR: i16 = 56;
    /// INVALID_RECORD.
    pub const INVALID_RECORD: i16 = 87;
    /// INCONSISTENT_TOPIC_ID.
    pub const INCONSISTENT_TOPIC_ID: i16 = 103;
}

/// Everything that can go wrong in the log layer. Each variant maps to exactly one Kafka
/// error code via [`Error::kafka_code`], so request handlers never need to match variants.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file-system operation failed; the message names the operation and the path so an
    /// operator can act on it.
    #[error("{op} {path}: {source}")]
    Io {
        /// What was being done ("writing", "opening", ...).
        op: &'static str,
        /// The file or directory involved.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },
    /// Writing an append failed (disk full, EIO, ...). The segment was rolled back to its
    /// previous length, so the log is still consistent and later appends may succeed.
    #[error("storage error appending to {path}: {source}")]
    Storage {
        /// The segment file that could not be written.
        path: PathBuf,
        /// The underlying OS error.
        #[source]
        source: std::io::Error,
    },
    /// The log can no longer be written (a rollback after a failed write also failed, so
    /// the on-disk state is unknown until the log is reopened and recovered).
    #[error("log {0} is offline after an unrecoverable I/O error: {1}")]
    Offline(TopicPartition, String),
    /// A record batch is malformed or fails its CRC.
    #[error("corrupt record batch: {0}")]
    CorruptMessage(String),
    /// A record batch is larger than `max.message.bytes`.
    #[error("record batch of {size} bytes exceeds max.message.bytes ({max})")]
    MessageTooLarge {
        /// Size of the offending batch, header included.
        size: usize,
        /// The configured limit.
        max: i32,
    },
    /// A batch uses a message format older than v2 (magic 2), which this broker never stores.
    #[error("record batch magic {0} is not supported (only magic 2)")]
    UnsupportedMessageFormat(i8),
    /// A batch is well-formed but violates Kafka's rules for client batches.
    #[error("invalid record batch: {0}")]
    InvalidRecord(String),
    /// A record without a key was produced to a compacted topic (Kafka's exact message).
    #[error("Compacted topic cannot accept message without key in topic partition {0}.")]
    MissingKeyOnCompactedTopic(TopicPartition),
    /// A fetch/list/delete offset outside `[log start offset, log end offset]`.
    #[error("offset {offset} is out of range for {tp} (log start {log_start_offset}, end {log_end_offset})")]
    OffsetOutOfRange {
        /// The partition.
        tp: TopicPartition,
        /// The offset that was asked for.
        offset: i64,
        /// Current log start offset.
        log_start_offset: i64,
        /// Current upper bound (log end offset or high watermark, depending on the call).
        log_end_offset: i64,
    },
    /// Idempotent producer sent a sequence number that does not follow the last one.
    #[error("out of order sequence number for producer {producer_id} (epoch {epoch}): expected {expected}, got {received}")]
    OutOfOrderSequence {
        /// The producer id.
        producer_id: i64,
        /// The producer epoch of the batch.
        epoch: i16,
        /// The sequence the broker expected (0 for the first batch of a new epoch).
        expected: i32,
        /// The batch's base sequence.
        received: i32,
    },
    /// Idempotent producer used an epoch older than the one the broker already saw.
    #[error("producer {producer_id} epoch {received} is older than current epoch {current}")]
    InvalidProducerEpoch {
        /// The producer id.
        producer_id: i64,
        /// Epoch in the batch.
        received: i16,
        /// Epoch already recorded for the producer.
        current: i16,
    },
    /// A transactional producer wrote a non-transactional batch while its transaction on
    /// this partition was still open (Kafka's InvalidTxnStateException).
    #[error("expected a transactional write from producer {producer_id} at offset {offset}: its transaction is still open")]
    InvalidTxnState {
        /// The producer id.
        producer_id: i64,
        /// Offset the batch would have had.
        offset: i64,
    },
    /// A transaction marker from a coordinator epoch older than one already seen for the
    /// producer: it comes from a coordinator that lost its `__transaction_state` partition.
    #[error(
        "marker for producer {producer_id} has coordinator epoch {received}, older than {current}"
    )]
    TransactionCoordinatorFenced {
        /// The producer id.
        producer_id: i64,
        /// Coordinator epoch of the marker.
        received: i32,
        /// Coordinator epoch already recorded for the producer.
        current: i32,
    },
    /// `partition.metadata` records a different topic id than the caller supplied: the
    /// directory belongs to an older incarnation of the topic.
    #[error("partition {tp} has topic id {existing} on disk but {requested} was supplied")]
    InconsistentTopicId {
        /// The partition.
        tp: TopicPartition,
        /// Topic id recorded on disk (Kafka's base64 form).
        existing: String,
        /// Topic id supplied by the caller (Kafka's base64 form).
        requested: String,
    },
    /// The partition was deleted; holders of a stale handle get this.
    #[error("partition {0} has been deleted")]
    Deleted(TopicPartition),
    /// The log was closed by a clean shutdown.
    #[error("partition {0} is closed (broker shutting down)")]
    Closed(TopicPartition),
    /// Another process (or another `LogManager`) holds the directory's `.lock`.
    #[error("log directory {0} is locked by another broker process (remove the other process, not the .lock file)")]
    DirLocked(PathBuf),
    /// A log directory's `meta.properties` (or another metadata file) disagrees with the
    /// broker's configuration, or cannot be parsed.
    #[error("{path}: {reason}")]
    BadMetadata {
        /// The offending file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// The same partition exists in two log directories.
    #[error("partition {tp} found in both {first} and {second}")]
    DuplicatePartition {
        /// The partition.
        tp: TopicPartition,
        /// First directory.
        first: PathBuf,
        /// Second directory.
        second: PathBuf,
    },
    /// A caller passed an argument the log cannot act on (e.g. no log dirs).
    #[error("{0}")]
    InvalidArgument(String),
}

impl Error {
    /// The Kafka protocol error code to put in a response for this error.
    pub fn kafka_code(&self) -> i16 {
        use codes::*;
        match self {
            Error::Io { .. } | Error::Storage { .. } | Error::Offline(..) => KAFKA_STORAGE_ERROR,
            Error::CorruptMessage(_) => CORRUPT_MESSAGE,
            Error::MessageTooLarge { .. } => MESSAGE_TOO_LARGE,
            Error::UnsupportedMessageFormat(_) => UNSUPPORTED_FOR_MESSAGE_FORMAT,
            Error::InvalidRecord(_) | Error::MissingKeyOnCompactedTopic(_) => INVALID_RECORD,
            Error::OffsetOutOfRange { .. } => OFFSET_OUT_OF_RANGE,
            Error::OutOfOrderSequence { .. } => OUT_OF_ORDER_SEQUENCE_NUMBER,
            Error::InvalidProducerEpoch { .. } => INVALID_PRODUCER_EPOCH,
            Error::InvalidTxnState { .. } => INVALID_TXN_STATE,
            Error::TransactionCoordinatorFenced { .. } => TRANSACTION_COORDINATOR_FENCED,
            Error::InconsistentTopicId { .. } => INCONSISTENT_TOPIC_ID,
            Error::Deleted(_) => UNKNOWN_TOPIC_OR_PARTITION,
            // Clients retry NOT_LEADER_OR_FOLLOWER after refreshing metadata, which is the
            // right reaction to a broker that is going away.
            Error::Closed(_) => NOT_LEADER_OR_FOLLOWER,
            Error::DirLocked(_)
            | Error::BadMetadata { .. }
            | Error::DuplicatePartition { .. }
            | Error::InvalidArgument(_) => KAFKA_STORAGE_ERROR,
        }
    }

    /// Builds an [`Error::Io`]; used through [`IoContext`].
    pub(crate) fn io(op: &'static str, path: &Path, source: std::io::Error) -> Self {
        Error::Io {
            op,
            path: path.to_path_buf(),
            source,
        }
    }
}

/// Attaches the operation and path to a raw `std::io::Error` so messages are actionable.
pub(crate) trait IoContext<T> {
    /// Wraps the error as [`Error::Io`] naming `op` and `path`.
    fn ctx(self, op: &'static str, path: &Path) -> Result<T>;
}

impl<T> IoContext<T> for std::io::Result<T> {
    fn ctx(self, op: &'static str, path: &Path) -> Result<T> {
        self.map_err(|e| Error::io(op, path, e))
    }
}
