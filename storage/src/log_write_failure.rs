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
//! * The leader-epoch entries the failed batches started are dropped (`log_epochs.rs`).
//! * Reads keep being served meanwhile: they never see past the durable end.
//!
//! A failure after a segment roll inside the same write (the roll finalized part of the batches)
//! is not undone: the log goes offline, as before (rare: one roll per segment).

use super::{Log, Pending};
use crate::io::FileSystem;
use crate::io::StorageFile;
use crate::loader;
use crate::local_log::ActiveCheckpoint;
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

impl<F: FileSystem> Log<F> {
    /// Undoes a failed write of `failed` (see the module doc); `checkpoint` is the active segment
    /// before it. The caller holds the writer lock.
    pub(super) async fn undo_write(
        &self,
        checkpoint: ActiveCheckpoint,
        failed: Vec<Pending>,
        error: io::Error,
    ) -> WriteFailure {
        let discarded = {
            let mut state = self.state.borrow_mut();
            state.undoing = true;
            let queued: Vec<Pending> = state.pending.drain(..).collect();
            let discarded: usize = failed.len() + queued.len();
            for item in failed.iter().chain(&queued) {
                item.outcome.set(WriteOutcome::Undone);
            }
            assert!(state.durable_end <= state.next_offset);
            state.next_offset = state.durable_end;
            let log_end = crate::types::Offset(state.next_offset);
            state.epochs.truncate_from_end(log_end);
            discarded
        };
        let (file, log_size) = self.local.restore(checkpoint);
        tracing::warn!(
            dir = %self.dir().display(),
            %error,
            appends = discarded,
            next_offset = self.state.borrow().next_offset,
            "log write failed; undone (appends refused with KAFKA_STORAGE_ERROR, the log stays online)"
        );
        // A partial write must not come back after a crash (its batches were not acknowledged).
        let result = async {
            if file.size().await? > log_size {
                file.truncate(log_size).await?;
            }
            self.reload_producer_state().await
        }
        .await;
        self.state.borrow_mut().undoing = false;
        match result {
            Ok(()) => WriteFailure::Undone(error),
            Err(undo_error) => {
                tracing::error!(dir = %self.dir().display(), error = %undo_error, "undoing a failed write failed");
                WriteFailure::Offline(error)
            }
        }
    }

    /// Rebuilds the producer state from the newest snapshot and the batches on disk (after an
    /// undone write or a truncation).
    pub(super) async fn reload_producer_state(&self) -> io::Result<()> {
        let snapshots = self.local.snapshot_offsets().await?;
        let log_end = self.state.borrow().next_offset;
        self.state.borrow_mut().producers = ProducerStateManager::new();
        let mut producers =
            loader::load_producer_state(&self.local, &snapshots, log_end, None).await?;
        let mut state = self.state.borrow_mut();
        producers.on_high_watermark(state.high_watermark);
        state.producers = producers;
        Ok(())
    }
}

/// The error an append gets when its write was undone.
pub(super) fn undone_error() -> io::Error {
    io::Error::other("the write failed (disk full?) and was undone; retry")
}
