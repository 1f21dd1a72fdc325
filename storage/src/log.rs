//! A partition's log (Kafka's `UnifiedLog`): the facade the broker uses. It owns what spans the
//! segments: offsets assigned to appends (group commit), the durable end, the high watermark, the
//! producer state, the flush policy, the failed/closed states and the batch cache; it delegates the
//! segments to [`LocalLog`](crate::local_log), opening to [`loader`](crate::loader) and the files of
//! one segment to [`segment`](crate::segment).
//!
//! # Offsets
//! `log_start <= high_watermark <= durable_end <= log_end` at all times (asserted where they move):
//! * `log_end` is the next offset to assign: appends take offsets synchronously, in call order.
//! * `durable_end`: every offset below it is written to the segment files (not necessarily
//!   fsynced); reads never go past it.
//! * `high_watermark`: committed offsets, visible to consumers. On a single node everything
//!   recovered counts as committed, so it starts at the recovered log end; a replicated partition
//!   resets it once the leader tells its committed point ([`Log::reset_high_watermark`], which may
//!   lower it, `log_follower.rs`) and advances it from followers' fetches
//!   ([`Log::update_high_watermark`], never backwards).
//! * `last_stable_offset` (LSO): offsets below it are readable by read_committed consumers. It is
//!   the first unstable offset (the first offset of the oldest transaction that is open, or
//!   completed with its marker not yet below the high watermark: `producer_txn.rs`), raised to the
//!   log start, capped by the high watermark; the high watermark when there is none.
//!   `log_start <= last_stable_offset <= high_watermark` (asserted with the others).
//!
//! # Appends
//! `append` validates and assigns offsets synchronously (so offsets follow call order), queues the
//! batches and then takes the writer lock: whoever holds it writes every queued batch in one
//! gather write (group commit), rolling segments as needed. `durable_end_offset` advances once the
//! write completed. A failed write is undone and refused (see `write_failure`); an I/O error the
//! log cannot undo marks it failed (offline for appends; reads of what is on disk go on).
//!
//! # Replication
//! Follower appends (the leader's batches unchanged) go through the same queue and writer
//! (`log_follower.rs`); the leader-epoch cache and its checkpoint are kept here (`log_epochs.rs`);
//! truncation is in `log_truncation.rs`.

use self::write_failure::{OutcomeCell, WriteFailure};
use crate::cache::BatchCache;
pub use crate::config::{CleanupPolicy, LogConfig, TimestampType};
use crate::error::StorageError;
use crate::io::{FileSystem, StdFileSystem};
use crate::loader;
use crate::local_log::LocalLog;
use crate::producer_state::{ProducerEntry, ProducerStateManager};
use crate::segment_files::{SegmentFilePool, DEFAULT_OPEN_SEGMENT_FILES};
use crate::types::Offset;
use bytes::{Bytes, BytesMut};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

#[path = "log_append.rs"]
mod append;
#[path = "log_epochs.rs"]
mod epochs;
#[path = "log_follower.rs"]
mod follower;
#[path = "log_retention.rs"]
mod retention;
#[path = "log_truncation.rs"]
mod truncation;
#[path = "log_write_failure.rs"]
mod write_failure;
// The log cleaner's passes over this log (`Log::cleanable`, `Log::clean`; see `cleaner`).
#[path = "cleaner/log_cleaning.rs"]
mod cleaning;

pub use follower::FollowerAppendInfo;
pub use retention::{RetentionOutcome, RETENTION_SEGMENTS_PER_CALL};

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AppendInfo {
    pub base_offset: Offset,
    pub last_offset: Offset,
    /// -1 unless the topic uses LogAppendTime.
    pub log_append_time_ms: i64,
    pub log_start_offset: Offset,
    /// An idempotent retry: the offsets are the original ones and nothing was written.
    pub duplicate: bool,
    pub record_count: u32,
}

/// Removes a partition directory and everything in it (DeleteTopics), through [`StdFileSystem`].
/// The log must be closed. See [`delete_log_dir_with`] for another file layer.
pub fn delete_log_dir(dir: &Path) -> io::Result<()> {
    // StdFileSystem's futures complete on their first poll.
    futures_lite::future::block_on(delete_log_dir_with(&StdFileSystem, dir))
}

/// As [`delete_log_dir`], through `fs`. A directory already gone counts as removed.
pub async fn delete_log_dir_with<F: FileSystem>(fs: &F, dir: &Path) -> io::Result<()> {
    match fs.remove_dir_all(dir).await {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        result => result,
    }
}

/// Batches whose offsets were assigned, waiting for the writer.
struct Pending {
    /// Per batch: its header (owned: offsets were assigned in it) and its body (a slice of the
    /// producer's request buffer: not copied).
    parts: Vec<(Bytes, Bytes)>,
    headers: Vec<crate::batch::BatchHeader>,
    /// The `.txnindex` entries of the ABORT markers among them, in offset order.
    aborted: Vec<crate::txn_index::AbortedTxnEntry>,
    last: i64,
    now_ms: i64,
    records: u64,
    /// Tells the append whether its batches were written or undone.
    outcome: OutcomeCell,
}

/// The state that spans the segments (see the module doc for the offsets).
struct LogState {
    next_offset: i64,
    durable_end: i64,
    high_watermark: i64,
    pending: VecDeque<Pending>,
    producers: ProducerStateManager,
    /// The leader-epoch cache (`log_epochs.rs`).
    epochs: crate::leader_epoch_cache::LeaderEpochCache,
    config: LogConfig,
    /// Every offset below it is fsynced (Kafka's recovery point; `log_append.rs`).
    flushed_end: i64,
    unsynced_messages: u64,
    last_sync_ms: Option<i64>,
    dirty: bool,
    failed: bool,
    /// A failed write is being undone: appends are refused until it is.
    undoing: bool,
    closed: bool,
}

pub struct Log<F: FileSystem> {
    local: LocalLog<F>,
    cache: Rc<BatchCache>,
    id: u64,
    state: RefCell<LogState>,
    writer: async_lock::Mutex<()>,
    epoch_file: epochs::EpochFile<F>,
    /// Log-start moves and deleted files (`log_retention.rs`).
    retention: retention::RetentionState,
}

impl<F: FileSystem> Log<F> {
    /// Opens or creates the log in `dir`. With `clean_shutdown == false` the active segment (and
    /// any segment whose indexes are missing or inconsistent) is scanned: every batch's length,
    /// magic and CRC are checked, the torn tail (or zero padding) is truncated and the indexes are
    /// rebuilt. After a clean shutdown only the active segment's tail (after its last index entry)
    /// is checked (CRCs and offset continuity); damage there sends it through the same recovery.
    /// Every truncation is logged at WARN (segment, position, bytes and offsets cut). Producer state
    /// comes from the newest usable snapshot plus a replay of the batches after it (see `loader`).
    ///
    /// The log gets a pool of its own for its inactive segments' files (see
    /// [`Log::open_with_file_pool`] to share one between logs).
    pub async fn open(
        fs: F,
        dir: PathBuf,
        config: LogConfig,
        cache: Rc<BatchCache>,
        clean_shutdown: bool,
    ) -> Result<Self, StorageError> {
        let files = Rc::new(SegmentFilePool::new(fs.clone(), DEFAULT_OPEN_SEGMENT_FILES));
        Self::open_with_file_pool(fs, dir, config, cache, files, clean_shutdown).await
    }

    /// As [`Log::open`], reading inactive segments through `files` (a shard's pool). Only the
    /// active segment's files stay open; an inactive segment's `.log` is opened only when it must
    /// be recovered, and closed again.
    pub async fn open_with_file_pool(
        fs: F,
        dir: PathBuf,
        config: LogConfig,
        cache: Rc<BatchCache>,
        files: Rc<SegmentFilePool<F>>,
        clean_shutdown: bool,
    ) -> Result<Self, StorageError> {
        let interval = config.index_interval_bytes;
        let epoch_file = epochs::EpochFile::new(fs.clone());
        let loaded = loader::load(fs.clone(), dir, interval, files, clean_shutdown).await?;
        let log_end = loaded.log_end;
        let log_start = loaded.local.log_start_offset();
        let epochs = epochs::load(&fs, loaded.local.dir(), log_start, log_end).await?;
        let id = cache.register();
        let log = Log {
            local: loaded.local,
            cache,
            id,
            state: RefCell::new(LogState {
                next_offset: log_end,
                durable_end: log_end,
                high_watermark: log_end,
                pending: VecDeque::new(),
                producers: ProducerStateManager::new(),
                epochs,
                config,
                flushed_end: log_end,
                unsynced_messages: 0,
                last_sync_ms: None,
                dirty: false,
                failed: false,
                undoing: false,
                closed: false,
            }),
            writer: async_lock::Mutex::new(()),
            epoch_file,
            retention: Default::default(),
        };
        log.persist_epochs().await?;
        let mut producers = loader::load_producer_state(
            &log.local,
            &loaded.snapshots,
            log_end,
            loaded.txn_rebuild_from,
        )
        .await?;
        // Everything recovered counts as committed: completed transactions are stable.
        producers.on_high_watermark(log_end);
        log.state.borrow_mut().producers = producers;
        log.debug_assert_offsets();
        Ok(log)
    }

    pub fn id(&self) -> u64 {
        self.id
    }
    pub fn dir(&self) -> &Path {
        self.local.dir()
    }
    pub fn log_start_offset(&self) -> Offset {
        Offset(self.local.log_start_offset())
    }
    /// The next offset to be assigned.
    pub fn log_end_offset(&self) -> Offset {
        Offset(self.state.borrow().next_offset)
    }
    /// Every offset below this has been written to the segment files.
    pub fn durable_end_offset(&self) -> Offset {
        Offset(self.state.borrow().durable_end)
    }

    /// Every offset below this is fsynced (Kafka's recovery point: the recovered log end at open,
    /// then moved by every fsync of the active segment; never above the durable end).
    pub fn flushed_end_offset(&self) -> Offset {
        Offset(self.state.borrow().flushed_end)
    }

    /// Offsets below this are committed. Single node: everything recovered counts as committed, so
    /// it starts at the recovered log end offset; replication will load it from a checkpoint.
    pub fn high_watermark(&self) -> Offset {
        Offset(self.state.borrow().high_watermark)
    }

    /// Moves the high watermark to `offset` clamped to `[log_start_offset, durable_end_offset]`,
    /// never backwards; returns the new value.
    pub fn update_high_watermark(&self, offset: Offset) -> Offset {
        let log_start = self.local.log_start_offset();
        let mut state = self.state.borrow_mut();
        let target = offset.0.clamp(log_start, state.durable_end);
        state.high_watermark = state.high_watermark.max(target);
        let high_watermark = state.high_watermark;
        state.producers.on_high_watermark(high_watermark);
        drop(state);
        self.debug_assert_offsets();
        Offset(high_watermark)
    }

    /// Offsets below this are readable by read_committed consumers (see the module doc): the
    /// first unstable offset, at least the log start, at most the high watermark.
    pub fn last_stable_offset(&self) -> Offset {
        let log_start = self.local.log_start_offset();
        Offset(Self::stable_offset(&self.state.borrow(), log_start))
    }

    fn stable_offset(state: &LogState, log_start: i64) -> i64 {
        match state.producers.first_unstable_offset() {
            Some(first_unstable) => first_unstable.max(log_start).min(state.high_watermark),
            None => state.high_watermark,
        }
    }

    /// The aborted transactions a read_committed fetch from `start` up to `upper` (exclusive) must
    /// skip, oldest first (Kafka's `collectAbortedTransactions`): from the segment holding `start`
    /// on, every aborted transaction of the segments' `.txnindex` entries (kept in memory) with a
    /// marker at or after `start` and data before `upper`, stopping at the first entry whose last
    /// stable offset reaches `upper`.
    pub async fn aborted_transactions(
        &self,
        start: Offset,
        upper: Offset,
    ) -> Result<Vec<crate::txn::AbortedTxn>, StorageError> {
        Self::check_open(&self.state.borrow())?;
        Ok(self
            .local
            .aborted_between(start.0, upper.0)
            .iter()
            .map(crate::txn_index::AbortedTxnEntry::aborted_txn)
            .collect())
    }

    /// Kafka's `producer.id.expiration.ms`: forgets the producers whose last batch or marker is
    /// older than the log's `producer_id_expiration_ms` at `now_ms` and that have no open
    /// transaction. Returns how many were removed.
    pub fn remove_expired_producers(&self, now_ms: i64) -> usize {
        let mut state = self.state.borrow_mut();
        if state.closed {
            return 0;
        }
        let expiration_ms = state.config.producer_id_expiration_ms;
        state.producers.remove_expired(now_ms, expiration_ms)
    }

    /// `log_start <= last_stable_offset <= high_watermark <= durable_end <= log_end`.
    fn debug_assert_offsets(&self) {
        if cfg!(debug_assertions) {
            let log_start = self.local.log_start_offset();
            let state = self.state.borrow();
            let stable = Self::stable_offset(&state, log_start);
            debug_assert!(
                log_start <= stable
                    && stable <= state.high_watermark
                    && state.high_watermark <= state.durable_end
                    && state.flushed_end <= state.durable_end
                    && state.durable_end <= state.next_offset,
                "offsets out of order: log start {log_start}, last stable {stable}, high watermark {}, durable end {}, log end {}",
                state.high_watermark,
                state.durable_end,
                state.next_offset
            );
        }
    }

    pub fn config(&self) -> LogConfig {
        self.state.borrow().config.clone()
    }
    pub fn set_config(&self, config: LogConfig) {
        self.state.borrow_mut().config = config;
    }
    pub fn segment_count(&self) -> usize {
        self.local.segment_count()
    }
    /// Bytes of log data in the segments (what `retention.bytes` and DescribeLogDirs measure).
    pub fn size_in_bytes(&self) -> u64 {
        self.local.size_in_bytes()
    }
    /// Base offsets of the segments, oldest first.
    pub fn segment_bases(&self) -> Vec<Offset> {
        self.local.segment_bases()
    }
    /// The producer state of one producer id (for transactions and diagnostics).
    pub fn producer_entry(&self, producer_id: i64) -> Option<ProducerEntry> {
        self.state.borrow().producers.get(producer_id).cloned()
    }
    /// Runs `f` over the whole producer state (do not await inside).
    pub fn with_producer_state<R>(&self, f: impl FnOnce(&ProducerStateManager) -> R) -> R {
        f(&self.state.borrow().producers)
    }
    pub fn is_failed(&self) -> bool {
        self.state.borrow().failed
    }

    /// Reads only need the log open: a failed log still serves what is on disk (up to the durable
    /// end, which a failed write never moves).
    fn check_open(state: &LogState) -> Result<(), StorageError> {
        if state.closed {
            return Err(StorageError::Closed);
        }
        Ok(())
    }

    fn check_usable(state: &LogState) -> Result<(), StorageError> {
        if state.failed {
            return Err(StorageError::failed());
        }
        if state.closed {
            return Err(StorageError::Closed);
        }
        Ok(())
    }

    /// As [`Log::read_batches`], the batches concatenated into one buffer (a copy when there are
    /// several).
    pub async fn read(
        &self,
        from: Offset,
        max_bytes: usize,
        upper: Offset,
        min_one_batch: bool,
    ) -> Result<Bytes, StorageError> {
        let mut batches = self
            .read_batches(from, max_bytes, upper, min_one_batch)
            .await?;
        Ok(match batches.len() {
            0 => Bytes::new(),
            1 => batches.pop().expect("one batch"),
            _ => {
                let mut joined = BytesMut::with_capacity(batches.iter().map(Bytes::len).sum());
                for batch in batches {
                    joined.extend_from_slice(&batch);
                }
                joined.freeze()
            }
        })
    }

    /// Whole batches starting with the one containing `from`, up to `max_bytes` (at least one
    /// batch when `min_one_batch`, KIP-74), none at or beyond `upper`, in the buffers they live in
    /// (no copy): the batch cache's (a batch is two buffers there, its header and its body) or slices
    /// of what was read from the segment file (one per batch). The buffers concatenated are the
    /// batches; a caller that needs batch boundaries parses the headers.
    /// Served from the batch cache when possible, else from the segment files via the offset index.
    pub async fn read_batches(
        &self,
        from: Offset,
        max_bytes: usize,
        upper: Offset,
        min_one_batch: bool,
    ) -> Result<Vec<Bytes>, StorageError> {
        let end = {
            let state = self.state.borrow();
            Self::check_open(&state)?;
            state.next_offset
        };
        let start = self.local.log_start_offset();
        if from.0 < start || from.0 > end {
            return Err(StorageError::OffsetOutOfRange {
                requested: from,
                start: Offset(start),
                end: Offset(end),
            });
        }
        if from.0 >= upper.0 {
            return Ok(Vec::new());
        }
        if let Some(batches) = self
            .cache
            .read(self.id, from.0, max_bytes, upper.0, min_one_batch)
        {
            return Ok(batches);
        }
        let read = self
            .local
            .read(from.0, max_bytes, upper.0, min_one_batch)
            .await;
        // Retention or DeleteRecords may have taken the segment away while this read waited (for its
        // file, which is then gone): the offset is out of range now, not an I/O error.
        let start = self.local.log_start_offset();
        if from.0 < start && read.as_ref().map_or(true, Vec::is_empty) {
            return Err(StorageError::OffsetOutOfRange {
                requested: from,
                start: Offset(start),
                end: Offset(end),
            });
        }
        Ok(read?)
    }

    /// ListOffsets by timestamp: the first record whose timestamp is >= `timestamp_ms`, as
    /// `(offset, timestamp)`; `None` if there is none. Uses the segments' max timestamps, then the
    /// time index, then scans and decodes the candidate batch.
    pub async fn offset_for_timestamp(
        &self,
        timestamp_ms: i64,
    ) -> Result<Option<(Offset, i64)>, StorageError> {
        Self::check_open(&self.state.borrow())?;
        self.local.offset_for_timestamp(timestamp_ms).await
    }

    /// ListOffsets MAX_TIMESTAMP: `(offset, timestamp)` of the first record carrying the largest
    /// timestamp in the log (exact record offset; with LogAppendTime the batch's first offset).
    pub async fn max_timestamp(&self) -> Result<Option<(Offset, i64)>, StorageError> {
        Self::check_open(&self.state.borrow())?;
        self.local.max_timestamp().await
    }

    /// fsyncs the active segment when `flush_ms` passed since the last fsync and something was
    /// written since (the broker calls this from a timer).
    pub async fn flush_if_due(&self, now_ms: i64) -> Result<(), StorageError> {
        let due = {
            let mut state = self.state.borrow_mut();
            Self::check_usable(&state)?;
            match state.last_sync_ms {
                None => {
                    state.last_sync_ms = Some(now_ms);
                    false
                }
                Some(last_sync_ms) => {
                    let flush_ms = state.config.flush_ms.min(i64::MAX as u64) as i64;
                    state.dirty
                        && state.config.flush_ms != u64::MAX
                        && now_ms - last_sync_ms >= flush_ms
                }
            }
        };
        if due {
            self.flush().await?;
            self.state.borrow_mut().last_sync_ms = Some(now_ms);
        }
        Ok(())
    }

    /// Writes everything queued and fsyncs the active segment now.
    pub async fn flush(&self) -> Result<(), StorageError> {
        let _writer = self.writer.lock().await;
        Self::check_usable(&self.state.borrow())?;
        let result = match self.write_pending().await {
            Ok(()) => self.sync_active().await.map_err(WriteFailure::Offline),
            Err(failure) => Err(failure),
        };
        result.map_err(|failure| self.write_failed(failure))
    }

    /// Writes everything, truncates padding, fsyncs, writes a producer-state snapshot and drops
    /// the log's cache entries. The log must not be used afterwards (calls return `Closed`).
    pub async fn close(&self) -> Result<(), StorageError> {
        let _writer = self.writer.lock().await;
        {
            let state = self.state.borrow();
            if state.closed {
                return Ok(());
            }
            if state.failed {
                return Err(StorageError::failed());
            }
        }
        let result = async {
            self.write_pending()
                .await
                .map_err(|failure| match failure {
                    WriteFailure::Undone(error) | WriteFailure::Offline(error) => error,
                })?;
            self.finish_active().await?;
            let (offset, snapshot) = {
                let state = self.state.borrow();
                (state.next_offset, state.producers.encode_snapshot())
            };
            self.local.write_snapshot(offset, &snapshot).await?;
            self.persist_epochs().await?;
            self.remove_all_deleted_files()
                .await
                .map_err(|error| match error {
                    StorageError::Io(error) => error,
                    other => io::Error::other(other.to_string()),
                })
        }
        .await;
        self.cache.invalidate(self.id);
        self.local.forget_files();
        let mut state = self.state.borrow_mut();
        state.closed = true;
        if let Err(error) = result {
            state.failed = true;
            return Err(error.into());
        }
        Ok(())
    }
}

impl<F: FileSystem> Drop for Log<F> {
    /// A log dropped without `close` (a failed open, a shard stopping) leaves no file in the pool.
    fn drop(&mut self) {
        self.local.forget_files();
    }
}
