//! Removing data from the segment map: [`LocalLog::truncate_to`] (everything at and after an offset:
//! replication's log truncation), [`LocalLog::delete_segments_before`] (whole old segments:
//! retention and DeleteRecords), [`LocalLog::truncate_fully_and_start_at`] (every segment, the log
//! restarted empty at an offset: a follower behind its leader's log start), and
//! [`LocalLog::restore`] (an unacknowledged write of the active segment, back to its
//! [`ActiveCheckpoint`]: see `write_failure`).
//!
//! # Invariants
//! * Truncation keeps the segment holding the offset, cut at the first batch whose last offset is at
//!   or after it (a batch holding the offset goes whole, as in Kafka), makes it the active segment
//!   and rebuilds its indexes from the data kept ([`segment::recover`]: one scan of the segment);
//!   later segments are deleted newest first, each `.log` before its indexes, so that a crash
//!   part-way leaves a contiguous log whose reopen does not bring removed offsets back.
//! * Deletion removes only segments whose every offset is below the given offset, never the active
//!   one, oldest first; the log start offset becomes the first remaining segment's base. The log
//!   start is not checkpointed: segments whose files could not be deleted come back at the next
//!   open.
//! * The caller (the `Log` facade) holds its writer lock and has written everything queued.

use super::{remove_if_present, LocalLog};
use crate::appender::Appender;
use crate::io::{FileKind, FileSystem, StorageFile};
use crate::segment::{self, IndexFiles, Segment, SegmentWriter};
use crate::segment::{INDEX_EXTENSION, LOG_EXTENSION, TIME_INDEX_EXTENSION};
use crate::txn_index::TXN_INDEX_EXTENSION;
use std::io;
use std::rc::Rc;

/// The active segment's state before a write, to go back to when it fails (see `write_failure`).
pub(crate) struct ActiveCheckpoint {
    segment_base: i64,
    log_size: u64,
    index_entries: usize,
    time_index_entries: usize,
    index_file_size: u64,
    time_index_file_size: u64,
    last_offset: i64,
    max_timestamp: i64,
    offset_of_max_timestamp: i64,
    bytes_since_index: u64,
    first_append_ms: Option<i64>,
}

impl<F: FileSystem> LocalLog<F> {
    pub(crate) fn checkpoint(&self) -> ActiveCheckpoint {
        let mut segments = self.segments.borrow_mut();
        let writer = &segments.writer;
        let (log_size, index_file_size, time_index_file_size) = (
            writer.log.logical_size(),
            writer.index.logical_size(),
            writer.time_index.logical_size(),
        );
        let (bytes_since_index, first_append_ms) =
            (writer.bytes_since_index, writer.first_append_ms);
        let active = segments.active();
        ActiveCheckpoint {
            segment_base: active.base,
            log_size,
            index_entries: active.index.as_ref().map_or(0, Vec::len),
            time_index_entries: active.time_index.as_ref().map_or(0, Vec::len),
            index_file_size,
            time_index_file_size,
            last_offset: active.last_offset,
            max_timestamp: active.max_timestamp,
            offset_of_max_timestamp: active.offset_of_max_timestamp,
            bytes_since_index,
            first_append_ms,
        }
    }

    /// Puts the active segment back as it was at `checkpoint` (in memory: indexes, appenders'
    /// unwritten buffers). Returns its `.log` file and the size to truncate it back to.
    pub(crate) fn restore(&self, checkpoint: ActiveCheckpoint) -> (Rc<F::File>, u64) {
        let mut segments = self.segments.borrow_mut();
        let active = segments.active();
        assert_eq!(
            active.base, checkpoint.segment_base,
            "no roll in an undone write"
        );
        assert!(checkpoint.last_offset <= active.last_offset);
        active.last_offset = checkpoint.last_offset;
        active.max_timestamp = checkpoint.max_timestamp;
        active.offset_of_max_timestamp = checkpoint.offset_of_max_timestamp;
        if let Some(index) = active.index.as_mut() {
            index.truncate(checkpoint.index_entries);
        }
        if let Some(time_index) = active.time_index.as_mut() {
            time_index.truncate(checkpoint.time_index_entries);
        }
        let writer = &mut segments.writer;
        writer.bytes_since_index = checkpoint.bytes_since_index;
        writer.first_append_ms = checkpoint.first_append_ms;
        writer.index.discard_after(checkpoint.index_file_size);
        writer
            .time_index
            .discard_after(checkpoint.time_index_file_size);
        writer.log.discard_after(checkpoint.log_size);
        (writer.log.file().clone(), checkpoint.log_size)
    }

    /// Removes every offset at and after `offset` (`log_start <= offset`): segments based after the
    /// one holding it are deleted, that one is cut and becomes the active segment, its indexes
    /// rebuilt. Returns the new end offset (at most `offset`; below it when `offset` lies inside a
    /// batch). An I/O error leaves the in-memory map as it was (the caller takes the log offline);
    /// the files form a contiguous log that recovery reopens.
    pub(crate) async fn truncate_to(
        &self,
        offset: i64,
        index_interval_bytes: u32,
    ) -> io::Result<i64> {
        let (keep_base, keep_is_active, doomed, old_aborted) = {
            let segments = self.segments.borrow();
            assert!(
                offset >= segments.log_start,
                "truncation to {offset} below the log start {}",
                segments.log_start
            );
            let (&keep_base, _) = segments
                .by_base
                .range(..=offset)
                .next_back()
                .expect("a segment at or below the log start");
            let doomed: Vec<i64> = segments
                .by_base
                .range(keep_base + 1..)
                .map(|(base, _)| *base)
                .collect();
            let old_aborted = segments.by_base[&keep_base].aborted.clone();
            (keep_base, doomed.is_empty(), doomed, old_aborted)
        };
        let located = self
            .locate(offset)
            .await?
            .expect("the segment holding the offset");
        debug_assert_eq!(located.base, keep_base);
        let cut = segment::position_of_batch_holding(
            &*located.file,
            located.position,
            located.size,
            offset,
        )
        .await?;
        let log_file = located.file;
        let index_files = if keep_is_active {
            let segments = self.segments.borrow();
            IndexFiles {
                index: segments.writer.index.file().clone(),
                time_index: segments.writer.time_index.file().clone(),
            }
        } else {
            let index_path = self.path(keep_base, INDEX_EXTENSION);
            let time_index_path = self.path(keep_base, TIME_INDEX_EXTENSION);
            IndexFiles {
                index: Rc::new(self.fs.open(&index_path, FileKind::Small, true).await?),
                time_index: Rc::new(
                    self.fs
                        .open(&time_index_path, FileKind::Small, true)
                        .await?,
                ),
            }
        };
        for &base in doomed.iter().rev() {
            self.remove_segment_files(base).await?;
        }
        let log_path = self.path(keep_base, LOG_EXTENSION);
        // The kept segment's `.log` is written from here on: the pool must not hand it out.
        self.forget_file(&log_path);
        log_file.truncate(cut).await?;
        log_file.sync_data().await?;
        let mut kept = Segment::empty(keep_base, log_file.clone());
        kept.size = cut;
        let recovered = segment::recover(
            &mut kept,
            &*log_file,
            &index_files,
            &log_path,
            cut,
            index_interval_bytes,
            true,
        )
        .await?;
        let writer = SegmentWriter {
            log: Rc::new(Appender::open(log_file, kept.size).await?),
            index: recovered.index,
            time_index: recovered.time_index,
            bytes_since_index: recovered.bytes_since_index,
            first_append_ms: recovered.first_timestamp,
        };
        let new_end = (kept.last_offset + 1).max(keep_base);
        assert!(
            new_end <= offset,
            "truncation to {offset} kept up to {new_end}"
        );
        // Aborted transactions whose marker was cut go with it.
        kept.aborted = old_aborted
            .iter()
            .filter(|entry| entry.last_offset < new_end)
            .copied()
            .collect();
        if kept.aborted != old_aborted {
            self.rewrite_txn_index(keep_base, &kept.aborted).await?;
        }
        let mut segments = self.segments.borrow_mut();
        for base in &doomed {
            segments.by_base.remove(base);
        }
        segments.by_base.insert(keep_base, kept);
        segments.writer = writer;
        segments.txn_file = None;
        assert!(segments.log_start <= new_end);
        tracing::info!(dir = %self.dir.display(), offset, new_end, segments_deleted = doomed.len(), "truncated log");
        Ok(new_end)
    }

    /// Replaces every segment with one empty active segment based at `offset` (Kafka's
    /// `LocalLog.truncateFullyAndStartAt`); the log start and the log end become `offset`. The old
    /// segments' files go newest first, each `.log` before its indexes (a crash part-way leaves a
    /// contiguous prefix of the old log, which the follower truncates fully again), and every
    /// producer snapshot with them; then the new segment's files are created, the directory fsynced
    /// and the log start checkpointed at `offset`, so that a reopen finds the segment at `offset`
    /// with the log start there. An I/O error leaves the in-memory map as it was (the caller takes
    /// the log offline).
    pub(crate) async fn truncate_fully_and_start_at(
        &self,
        offset: i64,
        segment_bytes: u64,
    ) -> io::Result<()> {
        let doomed: Vec<i64> = self.segments.borrow().by_base.keys().copied().collect();
        for &base in doomed.iter().rev() {
            self.remove_segment_files(base).await?;
        }
        for snapshot in self.snapshot_offsets().await? {
            self.remove_snapshot(snapshot).await?;
        }
        let (file, writer) = self.create_segment(offset, segment_bytes).await?;
        self.fs.sync_dir(&self.dir).await?;
        self.write_log_start_checkpoint(offset).await?;
        let mut segments = self.segments.borrow_mut();
        segments.by_base.clear();
        segments
            .by_base
            .insert(offset, Segment::empty(offset, file));
        segments.writer = writer;
        segments.log_start = offset;
        segments.txn_file = None;
        drop(segments);
        tracing::info!(dir = %self.dir.display(), offset, segments_deleted = doomed.len(), "truncated log fully");
        Ok(())
    }

    /// Deletes the whole segments whose every offset is below `offset` (never the active segment),
    /// oldest first, and advances the log start offset to the first remaining segment's base.
    /// Returns how many segments were deleted.
    pub(crate) async fn delete_segments_before(&self, offset: i64) -> io::Result<usize> {
        let doomed: Vec<i64> = {
            let mut segments = self.segments.borrow_mut();
            let bases: Vec<i64> = segments.by_base.keys().copied().collect();
            // A segment's offsets are below its successor's base; the active one has no successor.
            let doomed: Vec<i64> = bases
                .windows(2)
                .take_while(|pair| pair[1] <= offset)
                .map(|pair| pair[0])
                .collect();
            for base in &doomed {
                segments.by_base.remove(base);
            }
            let first_base = *segments.by_base.keys().next().expect("the active segment");
            let previous_start = segments.log_start;
            segments.log_start = segments.log_start.max(first_base);
            assert!(segments.log_start >= previous_start);
            assert!(doomed.is_empty() || segments.log_start <= offset);
            doomed
        };
        for &base in &doomed {
            self.remove_segment_files(base).await?;
        }
        if !doomed.is_empty() {
            tracing::info!(
                dir = %self.dir.display(),
                segments_deleted = doomed.len(),
                log_start = self.log_start_offset(),
                "deleted old segments"
            );
        }
        Ok(doomed.len())
    }

    /// Deletes a segment's files, `.log` first (an index without its `.log` is ignored at open; a
    /// `.log` without its index would be recovered and come back).
    async fn remove_segment_files(&self, base: i64) -> io::Result<()> {
        let log_path = self.path(base, LOG_EXTENSION);
        self.forget_file(&log_path);
        remove_if_present(&self.fs, &log_path).await?;
        remove_if_present(&self.fs, &self.path(base, INDEX_EXTENSION)).await?;
        remove_if_present(&self.fs, &self.path(base, TIME_INDEX_EXTENSION)).await?;
        remove_if_present(&self.fs, &self.path(base, TXN_INDEX_EXTENSION)).await
    }
}
