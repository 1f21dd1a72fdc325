//! What the log does when writing queued batches fails (a full disk, an I/O error): the write is
//! undone so that the log stays as it was before it, and later appends may succeed once the cause
//! is gone (space freed). Kafka takes the whole directory offline instead.
//!
//! # Invariants after an undone write
//! * Nothing of the failed write is acknowledged: every queued append (the failed ones and those
//!   queued behind them, whose offsets follow theirs) is answered with an I/O error
//!   (KAFKA_STORAGE_ERROR, retriable).
//! * The next offset is the durable end again, so a retry gets the offsets the failed write had.
//! * The segment file is truncated back to its written size (a partial write cannot reappear after
//!   a crash), the in-memory indexes and index appenders lose their entries for the failed batches,
//!   and the producer state is rebuilt from the snapshot and the batches on disk.
//! * Reads keep being served meanwhile: they never see past the durable end.
//!
//! A failure after a segment roll inside the same write (the roll finalized part of the batches)
//! is not undone: the log goes offline, as before (rare: one roll per segment).

use super::{Log, Pending};
use crate::io::{FileSystem, StorageFile};
use crate::producer_state::ProducerStateManager;
use std::cell::Cell;
use std::io;
use std::rc::Rc;

/// Where one queued append stands (shared between the append and the writer).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(super) enum WriteOutcome {
    Queued,
    Written,
    /// Its write failed and was undone: not in the log.
    Undone,
}

pub(super) type OutcomeCell = Rc<Cell<WriteOutcome>>;

/// Why writing the queued batches failed.
pub(super) enum WriteFailure {
    /// Undone: the log is as before the write; later writes may succeed.
    Undone(io::Error),
    /// The log's state is unknown: it goes offline (reads of what is on disk still work).
    Offline(io::Error),
}

/// The active segment's state before a write, to go back to when it fails.
pub(super) struct Checkpoint {
    segment_base: i64,
    log_size: u64,
    index_entries: usize,
    time_index_entries: usize,
    index_file_size: u64,
    time_index_file_size: u64,
    last_offset: i64,
    max_ts: i64,
    offset_of_max_ts: i64,
    bytes_since_index: u64,
    first_append_ms: Option<i64>,
}

impl<F: FileSystem> Log<F> {
    pub(super) fn checkpoint(&self) -> Checkpoint {
        let mut i = self.inner.borrow_mut();
        let log_size = i.active.log.logical_size();
        let index_file_size = i.active.idx.logical_size();
        let time_index_file_size = i.active.tidx.logical_size();
        let bytes_since_index = i.active.bytes_since_index;
        let first_append_ms = i.active.first_append_ms;
        let seg = i.active_seg();
        Checkpoint {
            segment_base: seg.base,
            log_size,
            index_entries: seg.index.as_ref().map_or(0, Vec::len),
            time_index_entries: seg.time_index.as_ref().map_or(0, Vec::len),
            index_file_size,
            time_index_file_size,
            last_offset: seg.last_offset,
            max_ts: seg.max_ts,
            offset_of_max_ts: seg.offset_of_max_ts,
            bytes_since_index,
            first_append_ms,
        }
    }

    /// Undoes a failed write of `failed` (see the module doc). The caller holds the writer lock.
    pub(super) async fn undo_write(
        &self,
        checkpoint: Checkpoint,
        failed: Vec<Pending>,
        error: io::Error,
    ) -> WriteFailure {
        let (file, discarded) = {
            let mut i = self.inner.borrow_mut();
            i.undoing = true;
            let queued: Vec<Pending> = i.pending.drain(..).collect();
            let discarded: usize = failed.len() + queued.len();
            for item in failed.iter().chain(&queued) {
                item.outcome.set(WriteOutcome::Undone);
            }
            let seg = i.active_seg();
            assert_eq!(
                seg.base, checkpoint.segment_base,
                "no roll in an undone write"
            );
            seg.last_offset = checkpoint.last_offset;
            seg.max_ts = checkpoint.max_ts;
            seg.offset_of_max_ts = checkpoint.offset_of_max_ts;
            if let Some(index) = seg.index.as_mut() {
                index.truncate(checkpoint.index_entries);
            }
            if let Some(time_index) = seg.time_index.as_mut() {
                time_index.truncate(checkpoint.time_index_entries);
            }
            i.active.bytes_since_index = checkpoint.bytes_since_index;
            i.active.first_append_ms = checkpoint.first_append_ms;
            i.active.idx.discard_after(checkpoint.index_file_size);
            i.active.tidx.discard_after(checkpoint.time_index_file_size);
            i.active.log.discard_after(checkpoint.log_size);
            i.next_offset = i.durable_end;
            (i.active.log.file().clone(), discarded)
        };
        tracing::warn!(
            dir = %self.dir.display(),
            %error,
            appends = discarded,
            next_offset = self.inner.borrow().next_offset,
            "log write failed; undone (appends refused with KAFKA_STORAGE_ERROR, the log stays online)"
        );
        // A partial write must not come back after a crash (its batches were not acknowledged).
        let result = async {
            if file.size().await? > checkpoint.log_size {
                file.truncate(checkpoint.log_size).await?;
            }
            self.reload_producer_state().await
        }
        .await;
        self.inner.borrow_mut().undoing = false;
        match result {
            Ok(()) => WriteFailure::Undone(error),
            Err(undo_error) => {
                tracing::error!(dir = %self.dir.display(), error = %undo_error, "undoing a failed write failed");
                WriteFailure::Offline(error)
            }
        }
    }

    /// Rebuilds the producer state from the newest snapshot and the batches on disk.
    async fn reload_producer_state(&self) -> io::Result<()> {
        let mut snapshots: Vec<i64> = std::fs::read_dir(&self.dir)?
            .filter_map(|entry| entry.ok())
            .filter_map(|entry| {
                let name = entry.file_name();
                let (offset, extension) = super::parse_name(name.to_str()?)?;
                (extension == "snapshot").then_some(offset)
            })
            .collect();
        snapshots.sort();
        self.inner.borrow_mut().producers = ProducerStateManager::new();
        self.load_producer_state(snapshots)
            .await
            .map_err(|error| io::Error::other(error.to_string()))
    }
}

/// The error an append gets when its write was undone.
pub(super) fn undone_error() -> io::Error {
    io::Error::other("the write failed (disk full?) and was undone; retry")
}
