//! The per-partition log settings, resolved from broker defaults and topic overrides.

/// Which timestamp a record batch carries once appended (`message.timestamp.type`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TimestampType {
    /// Keep the producer's timestamps (`CreateTime`, Kafka's default).
    CreateTime,
    /// Overwrite with the broker's clock at append time (`LogAppendTime`).
    LogAppendTime,
}

/// Settings that govern one partition's log. Built by `config::effective_log_config`
/// from the broker config and the topic's overrides; values use Kafka's units.
#[derive(Debug, Clone, PartialEq)]
pub struct LogConfig {
    /// `segment.bytes`: roll the active segment once it would exceed this size.
    pub segment_bytes: u64,
    /// `segment.ms`: roll the active segment once its first batch is this old.
    pub segment_ms: i64,
    /// `retention.ms`: delete closed segments whose newest record is older; -1 = forever.
    pub retention_ms: i64,
    /// `retention.bytes`: delete oldest closed segments while the log is larger; -1 = no limit.
    pub retention_bytes: i64,
    /// `max.message.bytes`: largest record batch accepted (after compression).
    pub max_message_bytes: i32,
    /// `message.timestamp.type`.
    pub timestamp_type: TimestampType,
    /// `index.interval.bytes`: bytes between offset/time index entries.
    pub index_interval_bytes: u64,
    /// `segment.index.bytes`: maximum size of an index file (bounds entries per segment).
    pub segment_index_bytes: u64,
    /// `cleanup.policy` contains `delete` (time/size retention applies).
    pub cleanup_delete: bool,
    /// `cleanup.policy` contains `compact`.
    pub cleanup_compact: bool,
    /// `file.delete.delay.ms`: how long deleted segments linger before removal.
    pub file_delete_delay_ms: i64,
    /// `delete.retention.ms`: how long a tombstone survives after the cleaner first
    /// rewrote its batch (Kafka's delete horizon) on compacted topics.
    pub delete_retention_ms: i64,
    /// `min.compaction.lag.ms`: segments holding records younger than this are not compacted.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a dirty record older than this forces compaction regardless
    /// of the dirty ratio (and bounds how long the active segment stays open).
    pub max_compaction_lag_ms: i64,
    /// `min.cleanable.dirty.ratio`: compact once dirty bytes / cleanable bytes reach it.
    pub min_cleanable_dirty_ratio: f64,
    /// `flush.messages`: fsync the log once this many messages (offsets) are unflushed;
    /// `i64::MAX` (Kafka's default) leaves flushing to the OS.
    pub flush_messages: i64,
    /// `flush.ms`: the log flusher fsyncs a log whose last flush is at least this old
    /// (checked every `log.flush.scheduler.interval.ms`); `i64::MAX` = never.
    pub flush_ms: i64,
    /// `producer.id.expiration.ms` (a broker setting, no topic override): a producer id
    /// idle for longer, without an open transaction, is forgotten at retention time and when
    /// the log is loaded.
    pub producer_id_expiration_ms: i64,
}

impl LogConfig {
    /// Age (in record time) after which the active segment rolls: `segment.ms`, lowered to
    /// `max.compaction.lag.ms` on compacted topics so no record stays uncleanable for longer
    /// (Kafka's `LogConfig.maxSegmentMs`).
    pub fn max_segment_ms(&self) -> i64 {
        if self.cleanup_compact && self.max_compaction_lag_ms > 0 {
            self.segment_ms.min(self.max_compaction_lag_ms)
        } else {
            self.segment_ms
        }
    }
}

impl Default for LogConfig {
    /// Apache Kafka's defaults.
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1024 * 1024 * 1024,
            segment_ms: 7 * 24 * 3600 * 1000,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            max_message_bytes: 1024 * 1024 + 12,
            timestamp_type: TimestampType::CreateTime,
            index_interval_bytes: 4096,
            segment_index_bytes: 10 * 1024 * 1024,
            cleanup_delete: true,
            cleanup_compact: false,
            file_delete_delay_ms: 60_000,
            delete_retention_ms: 24 * 3600 * 1000,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            min_cleanable_dirty_ratio: 0.5,
            flush_messages: i64::MAX,
            flush_ms: i64::MAX,
            producer_id_expiration_ms: super::PRODUCER_ID_EXPIRATION_MS,
        }
    }
}
