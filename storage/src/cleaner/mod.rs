//! The log cleaner (Kafka's `LogCleaner` / `Cleaner`): compaction of logs whose `cleanup.policy`
//! holds `compact`, keeping the last record of each key in the closed segments.
//!
//! # What is cleaned
//! A log is split at two offsets:
//! * the *first dirty offset*, persisted in `<partition dir>/cleaner-offset.checkpoint` (see
//!   `swap`): everything below it was cleaned once (the *clean* section);
//! * the *first uncleanable offset*: the base of the first segment that is the active one, reaches
//!   past the high watermark, or holds a record newer than `now - min.compaction.lag.ms` (by its
//!   max timestamp).
//!
//! Between them lies the *dirty* section (whole closed segments, the one holding the first dirty
//! offset counted whole). A log is cleanable when `dirty / (clean + dirty)` bytes reaches
//! `min.cleanable.dirty.ratio`, or when the first dirty segment's newest record is older than
//! `now - max.compaction.lag.ms` (Kafka looks at its first record: this errs on the late side by
//! at most one segment's time span). The broker cleans the dirtiest cleanable log first.
//!
//! # A pass ([`Log::clean`](crate::Log::clean))
//! 1. Index: the dirty section's records, batch by batch, go into the [`OffsetMap`] (key -> last
//!    offset). When the next batch may not fit, indexing stops and the pass cleans only up to the
//!    last offset indexed (Kafka does the same); the next pass goes on from there.
//! 2. Rewrite every closed segment from the log start up to the end of the indexed range, one for
//!    one (segments are not grouped: a segment keeps its base and file names; a fully emptied
//!    segment stays as an empty file — merging small neighbours as Kafka does is left to do). A
//!    record stays iff its key is not in the map or its offset is at or after the map's (the
//!    latest for its key), except: keyless records go (Kafka drops them too); a tombstone (null
//!    value) in the indexed range goes when its batch's max timestamp is older than
//!    `now - delete.retention.ms` (Kafka 3.1+ stamps a "delete horizon" into the batch on the
//!    first clean instead; using the record time keeps the batch bytes unchanged and gives
//!    consumers `delete.retention.ms` after the tombstone was written). Batches are rewritten as
//!    `filter` documents: offsets, batch boundaries and producer fields are kept; control batches
//!    are kept untouched (every transaction marker stays: Kafka drops one once its transaction's
//!    data is gone and `delete.retention.ms` passed; that is not done here). The data batches of
//!    aborted transactions go whole (the segments' `.txnindex` ranges: `log_cleaning.rs`), and the
//!    cleanable range ends at the last stable offset.
//! 3. Swap each rewritten segment in (`swap`: `.cleaned` -> `.swap` -> final, crash safe), skip
//!    a segment nothing was removed from, then checkpoint the end of the indexed range. A crash
//!    before the checkpoint only makes the next pass redo work.
//!
//! Memory is bounded by the offset map (`log.cleaner.dedupe.buffer.size` per shard) plus one read
//! chunk and one decompressed batch; I/O by a [`Throttle`] (`log.cleaner.io.max.bytes.per.second`)
//! whose waits, like the yields between chunks, go through the caller's [`CleanerPacer`] (storage
//! does not know the runtime).
//!
//! # Reads during a swap
//! See `local_log_cleaning`: the new segment holds its file open while files are renamed, a read
//! that already holds the old file keeps reading it (the inode lives until it lets go), and a
//! lookup that raced with the swap starts again.

mod filter;
mod offset_map;
pub(crate) mod swap;

#[cfg(test)]
mod swap_read_tests;
#[cfg(test)]
mod tests;
#[cfg(test)]
mod throughput_tests;
#[cfg(test)]
mod txn_tests;

pub use filter::{compress, filter_batch, FilteredBatch, RecordDecision};
pub use offset_map::{OffsetMap, LOAD_FACTOR, SLOT_BYTES};
pub use swap::CHECKPOINT_FILE;

use crate::types::Offset;
use std::time::{Duration, Instant};

/// How the cleaner waits: `pause(Duration::ZERO)` is a yield to other tasks, a longer pause is
/// the I/O throttle's wait. The broker implements it with its runtime's sleep.
#[allow(async_fn_in_trait)]
pub trait CleanerPacer {
    async fn pause(&self, duration: Duration);
}

/// A pacer that never waits (tests, tools).
pub struct NoPause;

impl CleanerPacer for NoPause {
    async fn pause(&self, _duration: Duration) {}
}

/// Kafka's `Throttler`: keeps the cleaner's read + write rate under a limit by telling it how long
/// to wait.
#[derive(Debug)]
pub struct Throttle {
    bytes_per_second: f64,
    window_start: Instant,
    window_bytes: f64,
}

impl Throttle {
    /// A limit of `bytes_per_second` (infinite, NaN or <= 0: no limit).
    pub fn new(bytes_per_second: f64) -> Throttle {
        Throttle {
            bytes_per_second,
            window_start: Instant::now(),
            window_bytes: 0.0,
        }
    }

    fn unlimited(&self) -> bool {
        !(self.bytes_per_second.is_finite() && self.bytes_per_second > 0.0)
    }

    /// Counts `bytes` of I/O; returns how long to wait to stay under the limit.
    pub fn charge(&mut self, bytes: u64) -> Duration {
        if self.unlimited() {
            return Duration::ZERO;
        }
        self.window_bytes += bytes as f64;
        let elapsed = self.window_start.elapsed().as_secs_f64();
        let due = self.window_bytes / self.bytes_per_second;
        let wait = (due - elapsed).max(0.0);
        if elapsed > 1.0 && wait == 0.0 {
            // A fresh window, so that idle time is not banked as credit.
            self.window_start = Instant::now();
            self.window_bytes = 0.0;
        }
        Duration::from_secs_f64(wait)
    }
}

/// One shard's cleaner: its offset map and I/O throttle, reused across passes.
pub struct Cleaner {
    pub(crate) map: OffsetMap,
    pub(crate) throttle: Throttle,
}

impl Cleaner {
    /// A cleaner with an offset map of `dedupe_buffer_bytes` and an I/O limit of
    /// `io_max_bytes_per_second` (reads plus writes).
    pub fn new(dedupe_buffer_bytes: usize, io_max_bytes_per_second: f64) -> Cleaner {
        Cleaner {
            map: OffsetMap::with_memory(dedupe_buffer_bytes),
            throttle: Throttle::new(io_max_bytes_per_second),
        }
    }

    /// Changes the I/O limit (a dynamic broker config).
    pub fn set_io_max_bytes_per_second(&mut self, bytes_per_second: f64) {
        self.throttle = Throttle::new(bytes_per_second);
    }
}

/// Where a log stands for the cleaner ([`Log::cleanable`](crate::Log::cleanable)).
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CleanableLog {
    pub first_dirty_offset: Offset,
    pub first_uncleanable_offset: Offset,
    pub clean_bytes: u64,
    pub dirty_bytes: u64,
    /// `dirty / (clean + dirty)`.
    pub dirty_ratio: f64,
    /// The dirty section holds a record older than `max.compaction.lag.ms`.
    pub past_max_compaction_lag: bool,
    /// The ratio reaches `min.cleanable.dirty.ratio`, or the lag is past.
    pub should_clean: bool,
}

/// What one pass did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CleanStats {
    /// The new first dirty offset (checkpointed); `None` when nothing was cleaned.
    pub cleaned_up_to: Option<Offset>,
    pub segments_rewritten: u64,
    pub bytes_read: u64,
    pub bytes_written: u64,
    pub records_read: u64,
    pub records_removed: u64,
    /// The offset map filled before the dirty section was indexed.
    pub map_full: bool,
}
