//! The error type of every storage operation, with the Kafka error code each maps to.

use crate::types::Offset;

#[derive(thiserror::Error, Debug)]
pub enum StorageError {
    /// An I/O error; the log is marked failed and every later call fails too (KAFKA_STORAGE_ERROR).
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
    #[error("corrupt message: {0}")]
    CorruptMessage(String),
    #[error("record batch of {size} bytes exceeds the maximum of {max}")]
    MessageTooLarge { size: usize, max: usize },
    #[error("invalid record: {0}")]
    InvalidRecord(String),
    /// A compacted log refuses records without a key (INVALID_RECORD); `record_indexes` are their
    /// indexes in their batch (Produce's `record_errors`), at most one batch's records.
    #[error("compacted topic cannot accept a record without a key ({} such record(s))", record_indexes.len())]
    RecordsWithoutKey { record_indexes: Vec<i32> },
    #[error("unsupported record batch magic {0} (only magic 2 is supported)")]
    UnsupportedMagic(i8),
    #[error("offset {requested} out of range [{start}, {end}]")]
    OffsetOutOfRange {
        requested: Offset,
        start: Offset,
        end: Offset,
    },
    #[error("out of order sequence: {0}")]
    OutOfOrderSequence(String),
    #[error("invalid producer epoch: {0}")]
    InvalidProducerEpoch(String),
    /// A producer with an open transaction wrote a non-transactional batch (INVALID_TXN_STATE).
    #[error("invalid transaction state: {0}")]
    InvalidTxnState(String),
    /// A transaction marker from a coordinator epoch older than the one that last wrote a marker
    /// for this producer (TRANSACTION_COORDINATOR_FENCED).
    #[error("transaction coordinator fenced: {0}")]
    TransactionCoordinatorFenced(String),
    /// A follower append whose batches do not start at the log end offset or do not follow each
    /// other (Kafka's `UnexpectedAppendOffsetException` / `OffsetsOutOfOrderException`;
    /// UNKNOWN_SERVER_ERROR): `found` is the base offset of the batch that should start at
    /// `expected`.
    #[error(
        "unexpected append offset: expected a batch at offset {expected}, found one at {found}"
    )]
    UnexpectedAppendOffset { expected: Offset, found: Offset },
    /// The log was closed (or is closing); the broker should not use it any more.
    #[error("log is closed")]
    Closed,
}

impl StorageError {
    /// The Kafka protocol error code for this error.
    pub fn error_code(&self) -> i16 {
        match self {
            StorageError::Io(_) => 56,                           // KAFKA_STORAGE_ERROR
            StorageError::CorruptMessage(_) => 2,                // CORRUPT_MESSAGE
            StorageError::MessageTooLarge { .. } => 10,          // MESSAGE_TOO_LARGE
            StorageError::InvalidRecord(_) => 87,                // INVALID_RECORD
            StorageError::RecordsWithoutKey { .. } => 87,        // INVALID_RECORD
            StorageError::UnsupportedMagic(_) => 43,             // UNSUPPORTED_FOR_MESSAGE_FORMAT
            StorageError::OffsetOutOfRange { .. } => 1,          // OFFSET_OUT_OF_RANGE
            StorageError::OutOfOrderSequence(_) => 45,           // OUT_OF_ORDER_SEQUENCE_NUMBER
            StorageError::InvalidProducerEpoch(_) => 47,         // INVALID_PRODUCER_EPOCH
            StorageError::InvalidTxnState(_) => 48,              // INVALID_TXN_STATE
            StorageError::TransactionCoordinatorFenced(_) => 52, // TRANSACTION_COORDINATOR_FENCED
            StorageError::UnexpectedAppendOffset { .. } => -1,   // UNKNOWN_SERVER_ERROR
            // The partition is going away (shutdown, deletion): retriable, the client refreshes metadata.
            StorageError::Closed => 6, // NOT_LEADER_OR_FOLLOWER
        }
    }

    pub(crate) fn failed() -> StorageError {
        StorageError::Io(std::io::Error::other(
            "log is offline after an earlier I/O error",
        ))
    }
}
