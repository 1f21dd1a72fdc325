//! The `Log` facade's leader-epoch cache (`leader_epoch_cache`), persisted in
//! `leader-epoch-checkpoint` (`leader_epoch_checkpoint`).
//!
//! # Rules
//! * Opening: the checkpoint is read, entries starting at or after the recovered log end dropped
//!   and the first entry moved up to the log start (Kafka's `truncateFromEnd` / `truncateFromStart`
//!   at load); the file is rewritten if that changed anything.
//! * Appends (leader, `log_append.rs`, and follower, `log_follower.rs`) assign each batch's epoch
//!   at its base offset when the offsets are assigned, in call order; only a new epoch changes the
//!   cache (one comparison per batch otherwise). The writer rewrites the checkpoint after the
//!   segment write that follows a change, under the writer lock: at most one file write per epoch
//!   change. A crash in between leaves the old file, or one naming an epoch whose batch did not
//!   reach the disk: the next open drops it (its start is at or past the log end).
//! * A write that is undone (`log_write_failure.rs`) and `truncate_to` drop the entries at or past
//!   the new log end; a log-start move (DeleteRecords, retention, `delete_segments_before`) moves
//!   the first entry up. The file follows at the next write, truncation or close (the open redoes
//!   both if a crash comes first).
//! * Writers of the file take `file_lock` and write the entries as they are once they hold it, so
//!   the last writer leaves the latest entries. Failing to write it takes the log offline (Kafka
//!   takes the directory offline).

use super::Log;
use crate::error::StorageError;
use crate::io::FileSystem;
use crate::leader_epoch_cache::LeaderEpochCache;
use crate::leader_epoch_checkpoint;
use crate::types::{LeaderEpoch, Offset};
use std::io;
use std::path::Path;

/// What the log needs to write its checkpoint.
pub(super) struct EpochFile<F: FileSystem> {
    fs: F,
    /// One checkpoint write at a time (see the module doc).
    file_lock: async_lock::Mutex<()>,
}

impl<F: FileSystem> EpochFile<F> {
    pub(super) fn new(fs: F) -> Self {
        EpochFile {
            fs,
            file_lock: async_lock::Mutex::new(()),
        }
    }
}

/// The cache of the log in `dir` as the checkpoint has it, fitted to `[log_start, log_end)` (dirty
/// when that changed it).
pub(super) async fn load<F: FileSystem>(
    fs: &F,
    dir: &Path,
    log_start: i64,
    log_end: i64,
) -> io::Result<LeaderEpochCache> {
    let mut cache = LeaderEpochCache::new(leader_epoch_checkpoint::read(fs, dir).await?);
    if cache.truncate_from_end(Offset(log_end)) {
        tracing::info!(dir = %dir.display(), log_end, "leader epoch entries past the log end dropped");
    }
    cache.truncate_from_start(Offset(log_start));
    Ok(cache)
}

impl<F: FileSystem> Log<F> {
    /// Kafka's `LeaderEpochFileCache.assign`: records that `epoch` starts at `start_offset` (a new
    /// leader: its epoch at its log end). An epoch newer than the latest is added (entries starting
    /// at or after `start_offset` removed first); the latest epoch again, an older one (logged at
    /// debug) or a negative epoch change nothing. Returns once the checkpoint is written.
    pub async fn assign_epoch_start(
        &self,
        epoch: LeaderEpoch,
        start_offset: Offset,
    ) -> Result<(), StorageError> {
        {
            let mut state = self.state.borrow_mut();
            Self::check_usable(&state)?;
            if !state.epochs.assign(epoch, start_offset) {
                return Ok(());
            }
        }
        self.persist_epochs().await.map_err(|error| {
            tracing::error!(dir = %self.dir().display(), %error, "leader epoch checkpoint write failed; log is offline");
            self.state.borrow_mut().failed = true;
            StorageError::Io(error)
        })
    }

    /// The newest leader epoch that wrote to the log (or was assigned), if any.
    pub fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.state.borrow().epochs.latest_epoch()
    }

    /// The leader-epoch cache: `(epoch, start offset)`, oldest first.
    pub fn epoch_entries(&self) -> Vec<(LeaderEpoch, Offset)> {
        self.state.borrow().epochs.entries().to_vec()
    }

    /// OffsetForLeaderEpoch (Kafka's `endOffsetFor`): `(epoch, end offset)` of `requested`, the end
    /// offset being the log end offset for the latest epoch, else the start of the first epoch
    /// after `requested`, with the largest epoch <= `requested` (or `requested` itself when it is
    /// older than every entry). `None` (UNDEFINED_EPOCH / UNDEFINED_EPOCH_OFFSET) when the cache is
    /// empty or `requested` is negative or newer than the latest epoch.
    pub fn end_offset_for_epoch(&self, requested: LeaderEpoch) -> Option<(LeaderEpoch, Offset)> {
        let state = self.state.borrow();
        state
            .epochs
            .end_offset_for(requested, Offset(state.next_offset))
    }

    /// The epoch whose range holds `offset` (the latest epoch for offsets after its start); `None`
    /// before the first entry or with an empty cache.
    pub fn epoch_for_offset(&self, offset: Offset) -> Option<LeaderEpoch> {
        self.state.borrow().epochs.epoch_for_offset(offset)
    }

    /// Writes the checkpoint if the cache changed since it was last written.
    pub(super) async fn persist_epochs(&self) -> io::Result<()> {
        let _file = self.epoch_file.file_lock.lock().await;
        let entries = {
            let mut state = self.state.borrow_mut();
            if !state.epochs.is_dirty() {
                return Ok(());
            }
            state.epochs.set_dirty(false);
            state.epochs.entries().to_vec()
        };
        let written =
            leader_epoch_checkpoint::write(&self.epoch_file.fs, self.dir(), &entries).await;
        if written.is_err() {
            self.state.borrow_mut().epochs.set_dirty(true);
        }
        written
    }
}
