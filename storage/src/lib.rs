//! Shard-local storage: partition logs made of segments, their indexes, recovery and producer
//! state. Runtime-agnostic: all file access goes through the [`io::FileSystem`] traits.
//!
//! Layout tour:
//! * [`io`] — the file layer traits (`FileSystem`, `StorageFile`) and `StdFileSystem`.
//! * [`types`] — newtypes: `Offset`, `ProducerId`, `ProducerEpoch`, `LeaderEpoch`, `Sequence`.
//! * [`batch`] — the record batch v2 format: `BatchHeader`, `validate_batches`, in-place rewrites
//!   (base offset, leader epoch, LogAppendTime + CRC), and `batch::testing` builders.
//! * [`records`] — record-level validation of produced batches (walk, decompression, counts).
//! * [`appender`] — alignment-aware append writer (O_DIRECT: partial last page kept in memory).
//! * [`index`] — `.index` / `.timeindex` formats and lookups.
//! * [`producer_state`] — idempotent producer state, transaction state (open and completed
//!   transactions, marker fencing: `producer_txn.rs`) and its `.snapshot` format.
//! * [`cache`] — the per-shard `BatchCache` of recently appended batches.
//! * [`config`] — `LogConfig` and `TimestampType` (re-exported from [`log`]).
//! * [`log`] — `Log`, the facade the broker uses (Kafka's `UnifiedLog`): offsets (log start, high
//!   watermark, durable end, log end), append with group commit (`log_append.rs`), write-failure
//!   undo (`log_write_failure.rs`), producer state, flush policy, truncation, close.
//! * [`local_log`] — `LocalLog`: the segment map of a partition directory: roll, reads and time
//!   lookups across segments, `truncate_to` / `delete_segments_before`
//!   (`local_log_truncation.rs`), the log start inside a segment and deletion with `.deleted`
//!   renames (`local_log_retention.rs`), producer snapshot files.
//! * [`log_start_checkpoint`] — the per-partition log-start-offset checkpoint file.
//! * [`leader_epoch_cache`], [`leader_epoch_checkpoint`] — the leader-epoch cache (Kafka's
//!   `LeaderEpochFileCache`) and its `leader-epoch-checkpoint` file; kept by `Log`
//!   (`log_epochs.rs`). `log_follower.rs` (in [`log`]): follower appends and the high watermark
//!   reset; `log_truncation.rs`: `truncate_to`, `delete_segments_before`.
//! * `log_retention.rs` (in [`log`]) — DeleteRecords, retention, delayed file removal.
//! * [`loader`] — opening a log (Kafka's `LogLoader`): directory scan, recovery across segments,
//!   clean-start tail check, producer state from a snapshot plus replay.
//! * [`segment`] — one segment (Kafka's `LogSegment`): its files and their naming, the active
//!   segment's writers, the indexing rule, recovery of one segment, scans within it.
//! * [`segment_files`] — the bounded pool of open inactive-segment files (`SegmentFilePool`).
//! * [`error`] — `StorageError` and its Kafka error codes.
//! * [`txn`] — transaction markers (control batches) and aborted transactions.
//! * [`txn_index`] — the per-segment `.txnindex` aborted-transaction index (Kafka's format).
//! * [`cleaner`] — the log cleaner (compaction): offset map, batch filtering, the crash-safe
//!   `.cleaned`/`.swap` segment swap (`Log::cleanable`, `Log::clean` in `cleaner/log_cleaning.rs`).
pub mod appender;
pub mod batch;
pub mod cache;
pub mod cleaner;
pub mod config;
pub mod error;
pub mod index;
pub mod io;
pub(crate) mod leader_epoch_cache;
pub(crate) mod leader_epoch_checkpoint;
pub(crate) mod loader;
pub(crate) mod local_log;
pub mod log;
pub(crate) mod log_start_checkpoint;
pub mod producer_state;
pub mod read_ahead;
pub mod records;
pub(crate) mod segment;
pub mod segment_files;
pub mod txn;
pub mod txn_index;
pub mod types;

pub use batch::{validate_batches, BatchHeader};
pub use cache::BatchCache;
pub use error::StorageError;
pub use log::{
    delete_log_dir, delete_log_dir_with, AppendInfo, FollowerAppendInfo, Log, LogConfig,
    RetentionOutcome, TimestampType, RETENTION_SEGMENTS_PER_CALL,
};
pub use producer_state::{CompletedTxn, ProducerEntry, ProducerStateManager};
pub use read_ahead::{ReadAheadBudget, ReadAheadConfig, ReadAheadStats};
pub use segment_files::{SegmentFilePool, DEFAULT_OPEN_SEGMENT_FILES};
pub use txn::{AbortedTxn, TxnMarker};
pub use txn_index::AbortedTxnEntry;

#[cfg(test)]
mod local_log_tests;
#[cfg(test)]
mod log_epochs_tests;
#[cfg(test)]
mod log_follower_tests;
#[cfg(test)]
mod log_truncate_fully_tests;
#[cfg(test)]
mod read_ahead_tests;
#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod retention_tests;
#[cfg(test)]
mod segment_files_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod txn_tests;
#[cfg(test)]
mod write_failure_tests;
