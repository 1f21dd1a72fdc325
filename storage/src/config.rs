//! A log's configuration (Kafka's topic-level `segment.*`, `index.interval.bytes`,
//! `max.message.bytes`, `message.timestamp.type`, `flush.*`), shared by every storage layer.
//! Re-exported from `log`, where the broker names it.

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TimestampType {
    CreateTime,
    LogAppendTime,
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
        }
    }
}
