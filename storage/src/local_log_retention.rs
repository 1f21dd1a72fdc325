//! Moving a partition's log start forward (retention, DeleteRecords): the log start offset inside a
//! segment, the closed segments retention looks at, and deletion of whole old segments with their
//! files renamed `<name>.deleted` first and removed later ([`LocalLog::remove_files`]), so that
//! reads holding a segment's file finish and a crash never leaves half a segment.
//!
//! # Invariants
//! * The log start only moves forward and never past the log end; it is at or above the first
//!   segment's base. A start inside a segment is kept in the log-start checkpoint
//!   (`log_start_checkpoint`), written before the new start is visible.
//! * Only a prefix of the segments, never the active one, is deleted: oldest first, so a crash
//!   part-way leaves contiguous segments. A deleted segment leaves the map before its files are
//!   renamed, so no new read finds it; a read that located it earlier holds its open file (renaming
//!   or unlinking does not close it), and one that opens it by path afterwards gets `NotFound`, which
//!   the facade answers as an offset out of range.
//! * Renamed files (`<base>.log.deleted`, `.index.deleted`, `.timeindex.deleted`, `.txnindex.deleted`, snapshots below
//!   the new first segment) are not part of the log: the loader removes any it finds at open.

use super::{remove_if_present, LocalLog, SNAPSHOT_EXTENSION};
use crate::io::FileSystem;
use crate::log_start_checkpoint;
use crate::segment::{INDEX_EXTENSION, LOG_EXTENSION, TIME_INDEX_EXTENSION};
use crate::txn_index::TXN_INDEX_EXTENSION;
use std::io;
use std::path::PathBuf;

/// What a file renamed for deletion gets appended to its name.
pub(crate) const DELETED_SUFFIX: &str = ".deleted";

/// A closed segment as retention sees it.
#[derive(Clone, Copy, Debug)]
pub(crate) struct ClosedSegment {
    /// The next segment's base: every offset of this one is below it.
    pub(crate) next_base: i64,
    /// Bytes of its `.log`.
    pub(crate) size: u64,
    /// Its largest record timestamp (-1: none known).
    pub(crate) max_timestamp: i64,
}

impl<F: FileSystem> LocalLog<F> {
    /// The closed (inactive) segments, oldest first, at most `limit`.
    pub(crate) fn closed_segments(&self, limit: usize) -> Vec<ClosedSegment> {
        let segments = self.segments.borrow();
        let bases: Vec<i64> = segments.by_base.keys().copied().collect();
        bases
            .windows(2)
            .take(limit)
            .map(|pair| {
                let segment = &segments.by_base[&pair[0]];
                ClosedSegment {
                    next_base: pair[1],
                    size: segment.size,
                    max_timestamp: segment.max_timestamp,
                }
            })
            .collect()
    }

    /// Writes the log-start checkpoint (durably) for `offset`.
    pub(crate) async fn write_log_start_checkpoint(&self, offset: i64) -> io::Result<()> {
        log_start_checkpoint::write(&self.fs, &self.dir, offset).await
    }

    /// Moves the log start to `offset` (which must not be past the end of the segments); a lower
    /// `offset` changes nothing. Returns the log start.
    pub(crate) fn advance_log_start(&self, offset: i64) -> i64 {
        let end = self.end_offset();
        let mut segments = self.segments.borrow_mut();
        assert!(
            offset <= end,
            "log start {offset} past the end of the segments {end}"
        );
        segments.log_start = segments.log_start.max(offset);
        segments.log_start
    }

    /// Takes the oldest `count` segments out of the log (never the active one: `count` is cut to
    /// leave it), advances the log start to at least the first remaining segment's base, then renames
    /// their files and the producer snapshots below that base to `<name>.deleted`. Returns the renamed
    /// paths, for [`LocalLog::remove_files`] once `file.delete.delay.ms` passed; the directory is
    /// fsynced after the renames, so they survive a crash. A rename error stops
    /// the renames (the segments stay out of the map; their files come back at the next open, below
    /// the log start, and are deleted again).
    pub(crate) async fn delete_oldest_segments(
        &self,
        count: usize,
    ) -> (Vec<PathBuf>, io::Result<()>) {
        let (doomed, first_base) = {
            let mut segments = self.segments.borrow_mut();
            let count = count.min(segments.by_base.len() - 1);
            let doomed: Vec<i64> = segments.by_base.keys().take(count).copied().collect();
            for base in &doomed {
                segments.by_base.remove(base);
            }
            let first_base = *segments.by_base.keys().next().expect("the active segment");
            segments.log_start = segments.log_start.max(first_base);
            (doomed, first_base)
        };
        let mut renamed = Vec::new();
        if doomed.is_empty() {
            return (renamed, Ok(()));
        }
        let result = async {
            for &base in &doomed {
                let log_path = self.path(base, LOG_EXTENSION);
                self.forget_file(&log_path);
                for extension in [
                    LOG_EXTENSION,
                    INDEX_EXTENSION,
                    TIME_INDEX_EXTENSION,
                    TXN_INDEX_EXTENSION,
                ] {
                    if let Some(path) = self.rename_for_deletion(base, extension).await? {
                        renamed.push(path);
                    }
                }
            }
            for snapshot in self.snapshot_offsets().await? {
                if snapshot < first_base {
                    if let Some(path) = self
                        .rename_for_deletion(snapshot, SNAPSHOT_EXTENSION)
                        .await?
                    {
                        renamed.push(path);
                    }
                }
            }
            Ok(())
        }
        .await;
        // The renames are durable before the deletion counts as done: a crash must not bring the
        // segments back under their names (and the log start back with them).
        let result = match (result, renamed.is_empty()) {
            (Ok(()), false) => self.fs.sync_dir(&self.dir).await,
            (result, _) => result,
        };
        tracing::info!(
            dir = %self.dir.display(),
            segments_deleted = doomed.len(),
            log_start = self.log_start_offset(),
            "deleted old segments (files renamed .deleted)"
        );
        (renamed, result)
    }

    /// Renames `<base>.<extension>` to `<base>.<extension>.deleted`; `None` when there is no such file.
    async fn rename_for_deletion(&self, base: i64, extension: &str) -> io::Result<Option<PathBuf>> {
        let path = self.path(base, extension);
        let mut deleted = path.clone().into_os_string();
        deleted.push(DELETED_SUFFIX);
        let deleted = PathBuf::from(deleted);
        match self.fs.rename(&path, &deleted).await {
            Ok(()) => Ok(Some(deleted)),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    /// Removes files renamed for deletion (a missing one counts as removed). The pool forgets their
    /// original names again, in case a read that began before the rename put one back.
    pub(crate) async fn remove_files(&self, paths: &[PathBuf]) -> io::Result<()> {
        for path in paths {
            if let Some(original) = path
                .to_str()
                .and_then(|name| name.strip_suffix(DELETED_SUFFIX))
            {
                self.forget_file(std::path::Path::new(original));
            }
            remove_if_present(&self.fs, path).await?;
        }
        Ok(())
    }
}
