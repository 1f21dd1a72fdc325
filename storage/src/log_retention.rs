//! Moving the log start forward (Kafka's `UnifiedLog.deleteOldSegments` and
//! `maybeIncrementLogStartOffset`): [`Log::delete_records`] (DeleteRecords), [`Log::apply_retention`]
//! (`retention.ms`, `retention.bytes`) and the asynchronous removal of deleted segments' files
//! ([`Log::remove_deleted_files`], after `file.delete.delay.ms`).
//!
//! # Rules (Kafka's)
//! * DeleteRecords moves the log start to any offset up to the high watermark (inside a segment
//!   too); the log-start checkpoint is written and fsynced before the call returns, so the new start
//!   survives a restart or a `kill -9`. Whole segments below it are then deleted.
//! * Retention deletes a prefix of the closed segments, oldest first, each wholly below the high
//!   watermark, while each is (a) wholly below the log start (regardless of `cleanup.policy`, as
//!   Kafka), or with `cleanup.policy` containing `delete`: (b) its largest timestamp is more than
//!   `retention.ms` old (-1: never), or (c) the log stays at least `retention.bytes` without it
//!   (`size - retention.bytes >= segment size`; -1: no limit). The active segment is never deleted.
//!   A segment whose largest timestamp is unknown (-1) is not expired by time.
//! * A call deletes at most [`RETENTION_SEGMENTS_PER_CALL`] segments (`more` says whether it
//!   stopped there), so a caller that yields between calls keeps the shard responsive.
//! * The batch cache drops entries below the new start; producers whose last batch is below it are
//!   forgotten (Kafka's `truncateHead`).
//! * Deleted files are renamed `.deleted` and removed once `file.delete.delay.ms` passed: by
//!   [`Log::remove_deleted_files`] (the broker's retention task), on close, or by the loader at the
//!   next open. A DeleteRecords call has no clock: its files become due `file.delete.delay.ms` after
//!   the first `remove_deleted_files` call that sees them.

use super::Log;
use crate::error::StorageError;
use crate::io::FileSystem;
use crate::types::Offset;
use std::cell::RefCell;
use std::path::PathBuf;

/// The most segments one [`Log::apply_retention`] or [`Log::delete_records`] call deletes.
pub const RETENTION_SEGMENTS_PER_CALL: usize = 16;

/// What one [`Log::apply_retention`] call did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RetentionOutcome {
    pub segments_deleted: usize,
    /// Bytes of the deleted segments' `.log` files.
    pub bytes_deleted: u64,
    pub new_log_start: Offset,
    /// The call stopped at [`RETENTION_SEGMENTS_PER_CALL`]: more may be deletable now.
    pub more: bool,
}

/// A file renamed for deletion, and when it is due to go (`None`: not known yet).
struct DeletedFile {
    path: PathBuf,
    due_ms: Option<i64>,
}

/// The log's share of the lifecycle: one log-start change at a time, and the deleted files due.
#[derive(Default)]
pub(crate) struct RetentionState {
    pub(super) lock: async_lock::Mutex<()>,
    deleted: RefCell<Vec<DeletedFile>>,
}

impl<F: FileSystem> Log<F> {
    /// DeleteRecords: moves the log start offset to `offset` and returns the new low watermark.
    /// `OffsetOutOfRange` when `offset` is negative or past the high watermark; an `offset` at or
    /// below the current start changes nothing (the current start is returned). The new start is
    /// checkpointed durably before it takes effect; then whole segments below it are deleted (files
    /// renamed, removed later).
    pub async fn delete_records(&self, offset: Offset) -> Result<Offset, StorageError> {
        let _lifecycle = self.retention.lock.lock().await;
        let high_watermark = {
            let state = self.state.borrow();
            Self::check_usable(&state)?;
            state.high_watermark
        };
        let start = self.local.log_start_offset();
        if offset.0 < 0 || offset.0 > high_watermark {
            return Err(StorageError::OffsetOutOfRange {
                requested: offset,
                start: Offset(start),
                end: Offset(high_watermark),
            });
        }
        if offset.0 <= start {
            return Ok(Offset(start));
        }
        self.local.write_log_start_checkpoint(offset.0).await?;
        let new_start = self.local.advance_log_start(offset.0);
        self.forget_below(new_start);
        let doomed = self
            .local
            .closed_segments(RETENTION_SEGMENTS_PER_CALL)
            .iter()
            .take_while(|segment| segment.next_base <= new_start)
            .count();
        self.delete_oldest(doomed, None).await;
        tracing::info!(dir = %self.dir().display(), log_start = new_start, "log start moved (DeleteRecords)");
        self.debug_assert_offsets();
        Ok(Offset(new_start))
    }

    /// Applies `retention.ms`, `retention.bytes` and the log start to the closed segments at `now_ms`
    /// (see the module doc), deleting at most [`RETENTION_SEGMENTS_PER_CALL`] of them.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<RetentionOutcome, StorageError> {
        let _lifecycle = self.retention.lock.lock().await;
        let (config, high_watermark) = {
            let state = self.state.borrow();
            Self::check_usable(&state)?;
            (state.config.clone(), state.high_watermark)
        };
        let log_start = self.local.log_start_offset();
        let delete = config.cleanup_policy.delete;
        let retention_bytes =
            (delete && config.retention_bytes >= 0).then_some(config.retention_bytes);
        let retention_ms = (delete && config.retention_ms >= 0).then_some(config.retention_ms);
        let mut excess = retention_bytes
            .map(|limit| self.local.size_in_bytes() as i64 - limit)
            .unwrap_or(i64::MIN);
        let candidates = self.local.closed_segments(RETENTION_SEGMENTS_PER_CALL + 1);
        let mut doomed = 0;
        let mut bytes_deleted = 0u64;
        let mut more = false;
        for segment in &candidates {
            if segment.next_base > high_watermark {
                break;
            }
            let below_start = segment.next_base <= log_start;
            let expired = retention_ms.is_some_and(|retention| {
                segment.max_timestamp >= 0
                    && now_ms.saturating_sub(segment.max_timestamp) > retention
            });
            let oversized = retention_bytes.is_some() && excess - segment.size as i64 >= 0;
            if !(below_start || expired || oversized) {
                break;
            }
            if doomed == RETENTION_SEGMENTS_PER_CALL {
                more = true;
                break;
            }
            excess = excess.saturating_sub(segment.size as i64);
            bytes_deleted += segment.size;
            doomed += 1;
        }
        if doomed > 0 {
            let due_ms = now_ms.saturating_add(config.file_delete_delay_ms.max(0));
            self.delete_oldest(doomed, Some(due_ms)).await;
            self.forget_below(self.local.log_start_offset());
        }
        self.debug_assert_offsets();
        Ok(RetentionOutcome {
            segments_deleted: doomed,
            bytes_deleted,
            new_log_start: Offset(self.local.log_start_offset()),
            more,
        })
    }

    /// Removes the deleted segments' files whose `file.delete.delay.ms` has passed at `now_ms`
    /// (those of a DeleteRecords call get their due time here, on the first call that sees them).
    /// Returns how many files were removed.
    pub async fn remove_deleted_files(&self, now_ms: i64) -> Result<usize, StorageError> {
        let delay_ms = self.state.borrow().config.file_delete_delay_ms.max(0);
        let due: Vec<PathBuf> = {
            let mut deleted = self.retention.deleted.borrow_mut();
            let mut due = Vec::new();
            deleted.retain_mut(|file| {
                let due_ms = *file.due_ms.get_or_insert(now_ms.saturating_add(delay_ms));
                if due_ms <= now_ms {
                    due.push(std::mem::take(&mut file.path));
                    return false;
                }
                true
            });
            due
        };
        self.local.remove_files(&due).await?;
        Ok(due.len())
    }

    /// Deleted files not removed yet (diagnostics and tests).
    pub fn deleted_files_pending(&self) -> usize {
        self.retention.deleted.borrow().len()
    }

    /// Removes every deleted file now (the log is closing).
    pub(super) async fn remove_all_deleted_files(&self) -> Result<(), StorageError> {
        let all: Vec<PathBuf> = self
            .retention
            .deleted
            .borrow_mut()
            .drain(..)
            .map(|file| file.path)
            .collect();
        Ok(self.local.remove_files(&all).await?)
    }

    /// Takes the oldest `count` segments out and queues their renamed files for removal at `due_ms`.
    /// A rename failure is logged: the segments are out of the log already, and whatever files stayed
    /// come back below the log start at the next open, to be deleted again.
    async fn delete_oldest(&self, count: usize, due_ms: Option<i64>) {
        if count == 0 {
            return;
        }
        let (renamed, result) = self.local.delete_oldest_segments(count).await;
        if let Err(error) = result {
            tracing::warn!(dir = %self.dir().display(), %error, "renaming deleted segment files failed");
        }
        let mut deleted = self.retention.deleted.borrow_mut();
        deleted.extend(renamed.into_iter().map(|path| DeletedFile { path, due_ms }));
    }

    /// Drops what the log keeps in memory below `log_start`: cached batches, producers whose last
    /// batch is gone and leader epochs that ended before it (Kafka's `truncateFromStart`; the
    /// checkpoint follows with the next write, see `log_epochs.rs`).
    fn forget_below(&self, log_start: i64) {
        self.cache.invalidate_before(self.id, log_start);
        let mut state = self.state.borrow_mut();
        state.producers.remove_before(log_start);
        state.epochs.truncate_from_start(Offset(log_start));
    }
}
