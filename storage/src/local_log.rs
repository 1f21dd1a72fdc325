//! The segment map of one partition directory (Kafka's `LocalLog`): which segments exist, the active
//! one's writers, rolls, reads and time lookups across segments, truncation and deletion of whole
//! segments, and the producer-state snapshot files beside them.
//!
//! # Directory layout
//! ```text
//! <dir>/00000000000000000000.log        segment based at 0 (see `segment`)
//! <dir>/00000000000000000000.index
//! <dir>/00000000000000000000.timeindex
//! <dir>/00000000000000000000.txnindex   aborted transactions (only once one is written: `txn_index`)
//! <dir>/00000000000000001234.log ...    next segment, base offset 1234
//! <dir>/00000000000000001234.snapshot   producer state before offset 1234 (see `producer_state`)
//! ```
//!
//! # Invariants
//! * There is always at least one segment; the newest is the active one (the only one written,
//!   the only one whose files stay open; inactive `.log` files are read through the shard's
//!   `SegmentFilePool`).
//! * Segments are contiguous: an inactive segment's last offset is its successor's base - 1.
//! * The log start offset is at or above the first segment's base (inside a segment after
//!   DeleteRecords: `local_log_retention.rs`, kept in the log-start checkpoint) and at or below the
//!   log end; reads below it are refused.
//! * Removing data never leaves a gap on disk: truncation deletes segments newest first, deletion
//!   of old segments oldest first, so a crash part-way leaves contiguous segments.
//! * Every file access goes through the [`FileSystem`] trait, directory operations included.

use crate::appender::Appender;
use crate::batch::{self, BatchHeader};
use crate::config::LogConfig;
use crate::error::StorageError;
use crate::index::{self, OFFSET_ENTRY_SIZE, TIME_ENTRY_SIZE};
use crate::io::{FileKind, FileSystem, StorageFile};
use crate::read_ahead::ReadAhead;
use crate::segment::{self, Segment, SegmentWriter, INDEX_EXTENSION, LOG_EXTENSION};
use crate::segment::{find_record, scan, TIME_INDEX_EXTENSION};
use crate::segment_files::SegmentFilePool;
use crate::types::Offset;
use bytes::Bytes;
use std::cell::RefCell;
use std::collections::BTreeMap;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

#[path = "local_log_retention.rs"]
mod retention;
#[path = "local_log_truncation.rs"]
mod truncation;
// Reads across segments, with read-ahead.
#[path = "local_log_read.rs"]
mod read;
// The segments' aborted-transaction indexes (see `txn_index`).
#[path = "local_log_txn.rs"]
mod transactions;

pub(crate) use retention::DELETED_SUFFIX;

// The log cleaner's segment swap (see `cleaner`).
#[path = "local_log_cleaning.rs"]
mod cleaning;
pub(crate) use cleaning::SegmentSummary;

pub(crate) use truncation::ActiveCheckpoint;

pub(crate) const SNAPSHOT_EXTENSION: &str = "snapshot";

/// The segment holding an offset, and where to scan it from.
pub(crate) struct Located<File> {
    pub(crate) base: i64,
    pub(crate) file: Rc<File>,
    /// The position the offset index names for the offset.
    pub(crate) position: u64,
    /// The segment's readable size.
    pub(crate) size: u64,
}

pub(crate) struct Segments<File: StorageFile> {
    by_base: BTreeMap<i64, Segment<File>>,
    writer: SegmentWriter<File>,
    log_start: i64,
    /// The active segment's `.txnindex`, once opened for an append (`local_log_txn.rs`).
    txn_file: Option<Rc<File>>,
}

impl<File: StorageFile> Segments<File> {
    fn active(&mut self) -> &mut Segment<File> {
        self.by_base
            .values_mut()
            .next_back()
            .expect("a log has at least one segment")
    }
}

pub(crate) struct LocalLog<F: FileSystem> {
    fs: F,
    dir: PathBuf,
    /// Open inactive-segment files (usually shared by the shard's logs).
    files: Rc<SegmentFilePool<F>>,
    segments: RefCell<Segments<F::File>>,
    /// The sequential reader's chunks (`read_ahead`, used by `local_log_read.rs`).
    read_ahead: ReadAhead,
}

impl<F: FileSystem> LocalLog<F> {
    /// A log of the loaded `segments` (at least one; the newest is active, written by `writer`).
    pub(crate) fn new(
        fs: F,
        dir: PathBuf,
        files: Rc<SegmentFilePool<F>>,
        segments: BTreeMap<i64, Segment<F::File>>,
        writer: SegmentWriter<F::File>,
        log_start: i64,
    ) -> Self {
        let first_base = *segments.keys().next().expect("at least one segment");
        assert!(log_start >= first_base, "log start below the first segment");
        LocalLog {
            fs,
            dir,
            read_ahead: ReadAhead::new(files.read_ahead().clone()),
            files,
            segments: RefCell::new(Segments {
                by_base: segments,
                writer,
                log_start,
                txn_file: None,
            }),
        }
    }

    pub(crate) fn dir(&self) -> &Path {
        &self.dir
    }

    fn path(&self, base: i64, extension: &str) -> PathBuf {
        self.dir.join(segment::file_name(base, extension))
    }

    pub(crate) fn log_start_offset(&self) -> i64 {
        self.segments.borrow().log_start
    }

    /// One past the active segment's last offset (at least its base): the end of what was appended
    /// to the segments (queued appends not included).
    pub(crate) fn end_offset(&self) -> i64 {
        let segments = self.segments.borrow();
        let (&base, active) = segments.by_base.iter().next_back().expect("a segment");
        (active.last_offset + 1).max(base)
    }

    pub(crate) fn segment_count(&self) -> usize {
        self.segments.borrow().by_base.len()
    }

    pub(crate) fn segment_bases(&self) -> Vec<Offset> {
        let segments = self.segments.borrow();
        segments.by_base.keys().map(|base| Offset(*base)).collect()
    }

    /// Bytes of log data in the segments (`.log` files' readable sizes; indexes not counted, as
    /// Kafka's `Log.size`).
    pub(crate) fn size_in_bytes(&self) -> u64 {
        let segments = self.segments.borrow();
        segments.by_base.values().map(|segment| segment.size).sum()
    }

    /// Base offset of the segment after the one based at `base`, if any.
    pub(crate) fn next_segment_base(&self, base: i64) -> Option<i64> {
        let segments = self.segments.borrow();
        segments
            .by_base
            .range(base + 1..)
            .next()
            .map(|(next_base, _)| *next_base)
    }

    /// Drops the pool's open files of this directory (a log closed or dropped).
    pub(crate) fn forget_files(&self) {
        self.read_ahead.clear();
        self.files.forget_dir(&self.dir);
    }

    /// Drops the pool's reference to the segment file `path` and the read-ahead chunks (a segment
    /// deleted, replaced or cut: what was read of it may no longer be its contents).
    fn forget_file(&self, path: &Path) {
        self.read_ahead.clear();
        self.files.forget(path);
    }

    // ---- the write path (the facade holds its writer lock) ----

    /// Whether the batch `header`, appended at `now_ms`, must start a new segment: the active one
    /// would pass `segment_bytes`, is older than `segment_ms`, its indexes are full, or the batch's
    /// offsets do not fit its relative offsets. An empty segment never rolls.
    pub(crate) fn needs_roll(&self, header: &BatchHeader, now_ms: i64, config: &LogConfig) -> bool {
        let mut segments = self.segments.borrow_mut();
        let size = segments.writer.log.logical_size();
        let first_append_ms = segments.writer.first_append_ms;
        let active = segments.active();
        if active.is_empty() {
            return false;
        }
        let index_entries = active.index.as_ref().map_or(0, Vec::len) as u64;
        let time_index_entries = active.time_index.as_ref().map_or(0, Vec::len) as u64;
        size + header.total_size() as u64 > config.segment_bytes
            || first_append_ms.is_some_and(|first| now_ms - first >= config.segment_ms)
            || (index_entries + 1) * OFFSET_ENTRY_SIZE as u64 > config.segment_index_bytes
            || (time_index_entries + 1) * TIME_ENTRY_SIZE as u64 > config.segment_index_bytes
            || header.last_offset() - active.base > u32::MAX as i64
    }

    /// Queues one batch (its rewritten header and its body, by reference) on the active segment's
    /// appender, with the index entries it earns; `flush` of [`LocalLog::active_log_appender`]
    /// writes them.
    pub(crate) fn append_batch(
        &self,
        header: &BatchHeader,
        header_bytes: &Bytes,
        body: &Bytes,
        now_ms: i64,
        index_interval_bytes: u32,
    ) {
        let mut segments = self.segments.borrow_mut();
        let segments = &mut *segments;
        let position = segments.writer.log.logical_size();
        let mut bytes_since_index = segments.writer.bytes_since_index;
        segments.writer.first_append_ms.get_or_insert(now_ms);
        let active = segments
            .by_base
            .values_mut()
            .next_back()
            .expect("a segment");
        let (offset_entry, time_entry) = active.record_batch(
            position,
            header,
            index_interval_bytes,
            &mut bytes_since_index,
        );
        let writer = &mut segments.writer;
        writer.bytes_since_index = bytes_since_index;
        if let Some(entry) = offset_entry {
            writer.index.append(Bytes::copy_from_slice(&entry.encode()));
        }
        if let Some(entry) = time_entry {
            writer
                .time_index
                .append(Bytes::copy_from_slice(&entry.encode()));
        }
        writer.log.append(header_bytes.clone());
        writer.log.append(body.clone());
    }

    pub(crate) fn active_log_appender(&self) -> Rc<Appender<F::File>> {
        self.segments.borrow().writer.log.clone()
    }

    /// Records that the active segment's appender has written `size` bytes.
    pub(crate) fn set_active_size(&self, size: u64) {
        self.segments.borrow_mut().active().size = size;
    }

    /// fdatasyncs the active segment's `.log`.
    pub(crate) async fn sync_active(&self) -> io::Result<()> {
        let file = self.segments.borrow().writer.log.file().clone();
        file.sync_data().await?;
        self.sync_txn_index().await
    }

    /// Makes the active segment inactive-ready: final time index entry, everything written,
    /// padding truncated, fsynced. Returns its end offset (last offset + 1).
    pub(crate) async fn finish_active(&self) -> io::Result<i64> {
        let (log, index, time_index) = {
            let mut segments = self.segments.borrow_mut();
            let writer = &segments.writer;
            let appenders = (
                writer.log.clone(),
                writer.index.clone(),
                writer.time_index.clone(),
            );
            if let Some(entry) = segments.active().add_final_time_entry() {
                appenders.2.append(Bytes::copy_from_slice(&entry.encode()));
            }
            appenders
        };
        segment::finalize(&log).await?;
        segment::finalize(&index).await?;
        segment::finalize(&time_index).await?;
        self.sync_txn_index().await?;
        let mut segments = self.segments.borrow_mut();
        let active = segments.active();
        active.size = log.logical_size();
        Ok(active.last_offset + 1)
    }

    /// Starts a new, empty active segment at `new_base`. The caller finished the active one
    /// ([`LocalLog::finish_active`]) and wrote the producer snapshot first (UnifiedLog's share of a
    /// roll). `segment_bytes` sizes the preallocation hint.
    pub(crate) async fn roll(&self, new_base: i64, segment_bytes: u64) -> io::Result<()> {
        let end = self.end_offset();
        assert!(
            new_base >= end,
            "roll to {new_base} below the log end {end}"
        );
        let (file, writer) = self.create_segment(new_base, segment_bytes).await?;
        let mut segments = self.segments.borrow_mut();
        // The finished segment is inactive now: its file is read through the pool from here on (the
        // descriptor closes once the old appender and reads in progress let go of it).
        segments.active().file = None;
        segments
            .by_base
            .insert(new_base, Segment::empty(new_base, file));
        segments.writer = writer;
        segments.txn_file = None;
        tracing::debug!(dir = %self.dir.display(), new_base, "rolled segment");
        Ok(())
    }

    /// Creates the empty files of a segment based at `base` (log, offset index, time index; the log's
    /// preallocated to `segment_bytes`, up to 1 GiB) and its writer.
    pub(crate) async fn create_segment(
        &self,
        base: i64,
        segment_bytes: u64,
    ) -> io::Result<(Rc<F::File>, SegmentWriter<F::File>)> {
        let file = Rc::new(self.create_empty(base, LOG_EXTENSION).await?);
        let index = Rc::new(self.create_empty(base, INDEX_EXTENSION).await?);
        let time_index = Rc::new(self.create_empty(base, TIME_INDEX_EXTENSION).await?);
        let _ = file.preallocate(segment_bytes.min(1 << 30)).await;
        let writer = SegmentWriter {
            log: Rc::new(Appender::open(file.clone(), 0).await?),
            index: Rc::new(Appender::open(index, 0).await?),
            time_index: Rc::new(Appender::open(time_index, 0).await?),
            bytes_since_index: 0,
            first_append_ms: None,
        };
        Ok((file, writer))
    }

    /// Opens (creating) the segment file `<base>.<extension>`, emptied.
    async fn create_empty(&self, base: i64, extension: &str) -> io::Result<F::File> {
        let kind = if extension == LOG_EXTENSION {
            FileKind::SegmentData
        } else {
            FileKind::Small
        };
        let file = self
            .fs
            .open(&self.path(base, extension), kind, true)
            .await?;
        if file.size().await? > 0 {
            file.truncate(0).await?;
        }
        Ok(file)
    }

    // ---- reads ----

    /// The segment holding `offset` and the position to scan from.
    pub(crate) async fn locate(&self, offset: i64) -> io::Result<Option<Located<F::File>>> {
        // A cleaner swap may replace the segment while its file or index is being opened: the
        // segment's size then differs from the one seen first, and the lookup starts again.
        let mut attempts = 0;
        loop {
            attempts += 1;
            let located = self.locate_once(offset).await?;
            match located {
                Err(path) if attempts < 4 => self.forget_file(&path),
                Err(_) => return Err(io::Error::other("segment replaced during every lookup")),
                Ok(located) => return Ok(located),
            }
        }
    }

    /// One attempt of [`LocalLog::locate`]; `Err(path)` when the segment changed meanwhile.
    async fn locate_once(
        &self,
        offset: i64,
    ) -> io::Result<Result<Option<Located<F::File>>, PathBuf>> {
        let (base, file, size, loaded) = {
            let segments = self.segments.borrow();
            let Some((&base, segment)) = segments.by_base.range(..=offset).next_back() else {
                return Ok(Ok(None));
            };
            let loaded = segment.index.is_some();
            (base, segment.file.clone(), segment.size, loaded)
        };
        let file = match file {
            Some(file) => file,
            None => self.files.get(&self.path(base, LOG_EXTENSION)).await?,
        };
        if !loaded {
            let bytes = self.read_small_file(base, INDEX_EXTENSION).await?;
            let entries = bytes
                .and_then(|bytes| index::decode_offset_index(&bytes, size))
                .unwrap_or_default();
            if let Some(segment) = self.segments.borrow_mut().by_base.get_mut(&base) {
                segment.index.get_or_insert(entries);
            }
        }
        // A segment deleted (retention, DeleteRecords) while its index loaded is still read: this
        // read holds its file, scanned from the start.
        let segments = self.segments.borrow();
        let Some(segment) = segments.by_base.get(&base) else {
            return Ok(Ok(Some(Located {
                base,
                file,
                position: 0,
                size,
            })));
        };
        if segment.size != size {
            return Ok(Err(self.path(base, LOG_EXTENSION)));
        }
        Ok(Ok(Some(Located {
            base,
            file,
            position: segment.scan_position(offset),
            size: segment.size,
        })))
    }

    /// A segment's index file read whole (`None` when it cannot be opened); closed at once.
    async fn read_small_file(&self, base: i64, extension: &str) -> io::Result<Option<Bytes>> {
        let path = self.path(base, extension);
        match self.fs.open(&path, FileKind::Small, false).await {
            Ok(file) => {
                let size = file.size().await?;
                Ok(Some(file.read_at(0, size as usize).await?))
            }
            Err(_) => Ok(None),
        }
    }

    /// The first record whose timestamp is >= `timestamp`, as `(offset, timestamp)`: the segments'
    /// max timestamps pick candidates, their time indexes a position, a scan the batch, and a decode
    /// of the batch the record.
    pub(crate) async fn offset_for_timestamp(
        &self,
        timestamp: i64,
    ) -> Result<Option<(Offset, i64)>, StorageError> {
        let candidates: Vec<i64> = {
            let segments = self.segments.borrow();
            segments
                .by_base
                .values()
                .filter(|segment| {
                    segment.offset_of_max_timestamp >= 0 && segment.max_timestamp >= timestamp
                })
                .map(|segment| segment.base)
                .collect()
        };
        for base in candidates {
            let relative = self.time_lookup(base, timestamp).await?;
            let Some(located) = self.locate(base + relative as i64).await? else {
                continue;
            };
            let mut found = None;
            let file = &*located.file;
            scan(
                file,
                located.position,
                located.size,
                64 << 10,
                false,
                |_, header, bytes| {
                    if header.max_timestamp >= timestamp {
                        found = Some((*header, bytes));
                        return false;
                    }
                    true
                },
            )
            .await?;
            if let Some((header, bytes)) = found {
                if let Some((offset, found_timestamp)) = find_record(&bytes, &header, timestamp)? {
                    return Ok(Some((Offset(offset), found_timestamp)));
                }
            }
        }
        Ok(None)
    }

    /// The relative offset the time index of the segment at `base` names for `timestamp`
    /// (loading the index when it is not in memory).
    async fn time_lookup(&self, base: i64, timestamp: i64) -> io::Result<u32> {
        let loaded = {
            let segments = self.segments.borrow();
            let segment = segments.by_base.get(&base);
            segment.is_some_and(|segment| segment.time_index.is_some())
        };
        if !loaded {
            let bytes = self.read_small_file(base, TIME_INDEX_EXTENSION).await?;
            let entries = bytes
                .and_then(|bytes| index::decode_time_index(&bytes))
                .unwrap_or_default();
            if let Some(segment) = self.segments.borrow_mut().by_base.get_mut(&base) {
                segment.time_index.get_or_insert(entries);
            }
        }
        let segments = self.segments.borrow();
        Ok(segments
            .by_base
            .get(&base)
            .and_then(|segment| segment.time_index.as_deref())
            .map_or(0, |entries| index::lookup_time(entries, timestamp)))
    }

    /// `(offset, timestamp)` of the first record carrying the largest timestamp in the log.
    pub(crate) async fn max_timestamp(&self) -> Result<Option<(Offset, i64)>, StorageError> {
        let best = {
            let segments = self.segments.borrow();
            let mut best: Option<(i64, i64)> = None;
            for segment in segments.by_base.values() {
                if segment.offset_of_max_timestamp >= 0
                    && best.is_none_or(|(timestamp, _)| segment.max_timestamp > timestamp)
                {
                    best = Some((segment.max_timestamp, segment.offset_of_max_timestamp));
                }
            }
            best
        };
        let Some((timestamp, offset)) = best else {
            return Ok(None);
        };
        // max_bytes 1 with min_one_batch: exactly the batch holding `offset`.
        let Some(bytes) = self.read(offset, 1, i64::MAX, true).await?.pop() else {
            return Ok(None);
        };
        if bytes.len() < batch::HEADER_SIZE {
            return Ok(None);
        }
        let header = BatchHeader::parse(&bytes);
        let found = find_record(&bytes, &header, timestamp)?;
        Ok(found.map(|(offset, timestamp)| (Offset(offset), timestamp)))
    }

    // ---- producer-state snapshot files ----

    /// Writes `<offset>.snapshot` (fsynced) and keeps only the two newest snapshots.
    pub(crate) async fn write_snapshot(&self, offset: i64, data: &[u8]) -> io::Result<()> {
        let path = self.path(offset, SNAPSHOT_EXTENSION);
        let file = Rc::new(self.fs.open(&path, FileKind::Small, true).await?);
        let appender = segment::write_whole(file.clone(), data).await?;
        drop(appender);
        file.sync_data().await?;
        let snapshots = self.snapshot_offsets().await?;
        let keep_from = snapshots.len().saturating_sub(2);
        for old in &snapshots[..keep_from] {
            let _ = self.remove_snapshot(*old).await;
        }
        Ok(())
    }

    /// Offsets of the snapshot files in the directory, oldest first.
    pub(crate) async fn snapshot_offsets(&self) -> io::Result<Vec<i64>> {
        let mut snapshots: Vec<i64> = self
            .fs
            .list_dir(&self.dir)
            .await?
            .iter()
            .filter_map(|name| {
                let (offset, extension) = segment::parse_file_name(name.to_str()?)?;
                (extension == SNAPSHOT_EXTENSION).then_some(offset)
            })
            .collect();
        snapshots.sort();
        Ok(snapshots)
    }

    pub(crate) async fn read_snapshot(&self, offset: i64) -> io::Result<Bytes> {
        let path = self.path(offset, SNAPSHOT_EXTENSION);
        self.fs.read_file(&path).await
    }

    pub(crate) async fn remove_snapshot(&self, offset: i64) -> io::Result<()> {
        let path = self.path(offset, SNAPSHOT_EXTENSION);
        self.fs.remove_file(&path).await
    }
}

/// For the segment files of an entry being dropped (a deleted segment): removes one file, a
/// missing one counting as removed.
async fn remove_if_present<F: FileSystem>(fs: &F, path: &Path) -> io::Result<()> {
    match fs.remove_file(path).await {
        Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(()),
        result => result,
    }
}
