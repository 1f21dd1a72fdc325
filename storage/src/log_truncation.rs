//! Truncation of the `Log` facade: [`Log::truncate_to`] (a follower cutting its log back to the
//! leader's, Kafka's `UnifiedLog.truncateTo`), [`Log::truncate_fully_and_start_at`] (a follower
//! whose log end fell below its leader's log start, Kafka's `UnifiedLog.truncateFullyAndStartAt`)
//! and [`Log::delete_segments_before`].

use super::Log;
use crate::error::StorageError;
use crate::io::FileSystem;
use crate::producer_state::ProducerStateManager;
use crate::types::Offset;

impl<F: FileSystem> Log<F> {
    /// Removes every offset at and after `offset` (replication's truncation to a leader's log).
    /// Everything queued is written first. The segment holding `offset` is cut at the batch holding
    /// it (a batch straddling `offset` goes whole, so the log end may end up below `offset`), later
    /// segments are deleted, the batch cache entries past the cut dropped, the durable end and the
    /// high watermark clamped to the new log end, the leader-epoch entries starting at or after it
    /// dropped (Kafka's `truncateFromEnd`; checkpoint rewritten), and the producer state rebuilt from the newest
    /// snapshot at or below the new end plus a replay (newer snapshots are deleted).
    /// Nothing to do when `offset >= log_end_offset`; `OffsetOutOfRange` below the log start
    /// (truncating a whole log to restart at an offset is left for the replication step). An I/O
    /// error marks the log failed. Appends queued before the call are written, then truncated like
    /// the rest: the caller (a follower) takes no produce requests.
    pub async fn truncate_to(&self, offset: Offset) -> Result<(), StorageError> {
        let _writer = self.writer.lock().await;
        Self::check_usable(&self.state.borrow())?;
        self.write_pending()
            .await
            .map_err(|failure| self.write_failed(failure))?;
        let (log_start, log_end) = (
            self.local.log_start_offset(),
            self.state.borrow().next_offset,
        );
        if offset.0 >= log_end {
            // Nothing to cut, but the leader-epoch cache may hold an epoch that starts at the log end
            // with nothing written in it (a leadership this log never wrote in): it goes, as in
            // Kafka's `truncateTo`, or a follower would answer that epoch's divergence forever.
            if self.state.borrow_mut().epochs.truncate_from_end(offset) {
                self.persist_epochs().await.map_err(StorageError::from)?;
            }
            return Ok(());
        }
        if offset.0 < log_start {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                start: Offset(log_start),
                end: Offset(log_end),
            });
        }
        let interval = self.state.borrow().config.index_interval_bytes;
        {
            // Consumers read below the high watermark: none may see data being removed.
            let mut state = self.state.borrow_mut();
            state.high_watermark = state.high_watermark.min(offset.0);
        }
        let result = async {
            let new_end = self.local.truncate_to(offset.0, interval).await?;
            self.cache.invalidate_from(self.id, new_end);
            {
                let mut state = self.state.borrow_mut();
                state.next_offset = new_end;
                state.durable_end = new_end;
                state.flushed_end = state.flushed_end.min(new_end);
                state.high_watermark = state.high_watermark.min(new_end);
                state.epochs.truncate_from_end(Offset(new_end));
            }
            self.persist_epochs().await?;
            self.reload_producer_state().await
        }
        .await;
        if let Err(error) = result {
            tracing::error!(dir = %self.dir().display(), %error, "log truncation failed; log is offline");
            self.state.borrow_mut().failed = true;
            return Err(error.into());
        }
        self.debug_assert_offsets();
        Ok(())
    }

    /// Empties the log and restarts it at `offset` (`offset >= 0`; any offset, below the log end
    /// too): a follower whose log end is below its leader's log start (retention or DeleteRecords
    /// removed what it lacks) cannot fetch what it misses and starts over at the leader's start.
    /// Everything queued is written first (the caller, a follower, takes no produce requests).
    ///
    /// Afterwards (Kafka's `truncateFullyAndStartAt`):
    /// * one segment, empty and active, based at `offset`; every other segment file, index,
    ///   `.txnindex` and producer snapshot is deleted;
    /// * `log_start == high_watermark == durable_end == log_end == offset` (the last stable offset
    ///   too); the batch cache holds nothing of this log;
    /// * the leader-epoch cache is empty and its checkpoint rewritten (`clearAndFlush`): the next
    ///   follower append assigns the epoch of its first batch at `offset`;
    /// * the producer state is empty (no batch of any producer is left);
    /// * the log-start checkpoint says `offset`, so a reopen (clean or not) finds the same log: the
    ///   segment at `offset` and the log start there.
    ///
    /// `OffsetOutOfRange` for a negative `offset`. An I/O error marks the log failed (offline); the
    /// files left form a contiguous log (a prefix of the old one, or the new empty one).
    pub async fn truncate_fully_and_start_at(&self, offset: Offset) -> Result<(), StorageError> {
        // Retention and DeleteRecords move the log start and delete segments under this lock.
        let _lifecycle = self.retention.lock.lock().await;
        let _writer = self.writer.lock().await;
        Self::check_usable(&self.state.borrow())?;
        self.write_pending()
            .await
            .map_err(|failure| self.write_failed(failure))?;
        if offset.0 < 0 {
            let state = self.state.borrow();
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                start: Offset(self.local.log_start_offset()),
                end: Offset(state.next_offset),
            });
        }
        let segment_bytes = {
            // Consumers read below the high watermark: none may see data being removed.
            let mut state = self.state.borrow_mut();
            state.high_watermark = state.high_watermark.min(self.local.log_start_offset());
            state.config.segment_bytes
        };
        self.cache.invalidate(self.id);
        let result = async {
            self.local
                .truncate_fully_and_start_at(offset.0, segment_bytes)
                .await?;
            {
                let mut state = self.state.borrow_mut();
                state.next_offset = offset.0;
                state.durable_end = offset.0;
                state.flushed_end = offset.0;
                state.high_watermark = offset.0;
                state.producers = ProducerStateManager::new();
                state.producers.on_high_watermark(offset.0);
                state.epochs.clear();
                state.unsynced_messages = 0;
                state.dirty = false;
            }
            self.persist_epochs().await
        }
        .await;
        if let Err(error) = result {
            tracing::error!(dir = %self.dir().display(), %error, "full log truncation failed; log is offline");
            self.state.borrow_mut().failed = true;
            return Err(error.into());
        }
        self.debug_assert_offsets();
        Ok(())
    }

    /// Deletes the whole segments whose every offset is below `offset` (retention, DeleteRecords),
    /// never the active segment and never past the high watermark (as Kafka: uncommitted data is
    /// not deleted); the log start offset advances to the first remaining segment's base (the leader-epoch cache's first entry moves up with it). Returns
    /// how many segments were deleted. The producer state keeps its entries (Kafka drops producers
    /// whose batches are all gone: left for the retention step); snapshots below the new log start
    /// are no longer used.
    pub async fn delete_segments_before(&self, offset: Offset) -> Result<usize, StorageError> {
        let _writer = self.writer.lock().await;
        let limit = {
            let state = self.state.borrow();
            Self::check_usable(&state)?;
            offset.0.min(state.high_watermark)
        };
        let deleted = self.local.delete_segments_before(limit).await?;
        let log_start = Offset(self.local.log_start_offset());
        self.state
            .borrow_mut()
            .epochs
            .truncate_from_start(log_start);
        self.debug_assert_offsets();
        Ok(deleted)
    }
}
