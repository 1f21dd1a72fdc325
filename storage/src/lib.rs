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
//! * [`producer_state`] — idempotent producer state and its `.snapshot` format.
//! * [`cache`] — the per-shard `BatchCache` of recently appended batches.
//! * [`log`] — `Log`: a partition directory of segments; append (group commit), read, time
//!   lookups, roll, recovery, flush policy, close.
//! * [`segment_files`] — the bounded pool of open inactive-segment files (`SegmentFilePool`).
//! * [`error`] — `StorageError` and its Kafka error codes.
pub mod appender;
pub mod batch;
pub mod cache;
pub mod error;
pub mod index;
pub mod io;
pub mod log;
pub mod producer_state;
pub mod records;
pub mod segment_files;
pub mod types;

pub use batch::{validate_batches, BatchHeader};
pub use cache::BatchCache;
pub use error::StorageError;
pub use log::{delete_log_dir, AppendInfo, Log, LogConfig, TimestampType};
pub use producer_state::{ProducerEntry, ProducerStateManager};
pub use segment_files::{SegmentFilePool, DEFAULT_OPEN_SEGMENT_FILES};

#[cfg(test)]
mod recovery_tests;
#[cfg(test)]
mod segment_files_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod write_failure_tests;
