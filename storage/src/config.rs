//! A log's configuration (Kafka's topic-level `segment.*`, `index.interval.bytes`,
//! `max.message.bytes`, `message.timestamp.type`, `flush.*`, `retention.*`, `cleanup.policy` and the
//! cleaner's `*.compaction.lag.ms`, `delete.retention.ms`, `min.cleanable.dirty.ratio`), shared by every
//! storage layer. Re-exported from `log`, where the broker names it. Defaults are Kafka's.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
}

/// Kafka's `cleanup.policy`: which of retention's deletion and the log cleaner's compaction apply
/// (both: `compact,delete`). Neither is allowed (Kafka 4 accepts an empty list: keep everything).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CleanupPolicy {
    /// Retention deletes old segments (`retention.ms`, `retention.bytes`).
    pub delete: bool,
    /// The log cleaner keeps the last record of each key in closed segments.
    pub compact: bool,
}

impl CleanupPolicy {
    pub const DELETE: CleanupPolicy = CleanupPolicy {
        delete: true,
        compact: false,
    };
    pub const COMPACT: CleanupPolicy = CleanupPolicy {
        delete: false,
        compact: true,
    };

    /// Reads Kafka's list form (`delete`, `compact`, `compact,delete`, spaces allowed; unknown words
    /// ignored: the config table validated the list).
    pub fn parse(list: &str) -> CleanupPolicy {
        let mut policy = CleanupPolicy {
            delete: false,
            compact: false,
        };
        for word in list.split(',').map(str::trim) {
            match word {
                "delete" => policy.delete = true,
                "compact" => policy.compact = true,
                _ => {}
            }
        }
        policy
    }
}

#[derive(Clone, Debug)]
pub struct LogConfig {
    pub segment_bytes: u64,
    pub segment_ms: i64,
    pub segment_index_bytes: u64,
    pub index_interval_bytes: u32,
    /// Largest record batch accepted.
    pub max_message_bytes: u32,
    pub timestamp_type: TimestampType,
    /// fsync after this many messages (u64::MAX: never by count).
    pub flush_messages: u64,
    /// fsync when this long passed since the last one (u64::MAX: never).
    pub flush_ms: u64,
    /// `retention.ms`: closed segments whose newest record is older than this are deleted (-1: never).
    pub retention_ms: i64,
    /// `retention.bytes`: the oldest closed segments are deleted while the partition is larger than
    /// this (-1: no limit).
    pub retention_bytes: i64,
    /// `cleanup.policy`.
    pub cleanup_policy: CleanupPolicy,
    /// `delete.retention.ms`: how long the cleaner keeps a tombstone (a null value) once the segment
    /// holding it was cleaned.
    pub delete_retention_ms: i64,
    /// `file.delete.delay.ms`: how long a deleted segment's files stay (renamed `.deleted`) before
    /// they are removed, so reads in flight finish.
    pub file_delete_delay_ms: i64,
    /// `min.cleanable.dirty.ratio`: the cleaner takes a log once this share of it is uncleaned.
    pub min_cleanable_dirty_ratio: f64,
    /// `min.compaction.lag.ms`: a record stays uncompacted at least this long.
    pub min_compaction_lag_ms: i64,
    /// `max.compaction.lag.ms`: a record is compacted at most this long after it was written, whatever
    /// the dirty ratio.
    pub max_compaction_lag_ms: i64,
    /// `producer.id.expiration.ms`: a producer idle this long (no batch or marker), without an open
    /// transaction, is forgotten by the log's producer state.
    pub producer_id_expiration_ms: i64,
}

impl Default for LogConfig {
    fn default() -> Self {
        LogConfig {
            segment_bytes: 1 << 30,
            segment_ms: 7 * 24 * 3600 * 1000,
            segment_index_bytes: 10 << 20,
            index_interval_bytes: 4096,
            max_message_bytes: 1_048_588,
            timestamp_type: TimestampType::CreateTime,
            flush_messages: u64::MAX,
            flush_ms: u64::MAX,
            retention_ms: 7 * 24 * 3600 * 1000,
            retention_bytes: -1,
            cleanup_policy: CleanupPolicy::DELETE,
            delete_retention_ms: 24 * 3600 * 1000,
            file_delete_delay_ms: 60_000,
            min_cleanable_dirty_ratio: 0.5,
            min_compaction_lag_ms: 0,
            max_compaction_lag_ms: i64::MAX,
            producer_id_expiration_ms: 86_400_000,
        }
    }
}
