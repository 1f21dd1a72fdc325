//! Opening a partition's log (Kafka's `LogLoader`): directory scan, recovery across segments, the
//! clean-start tail check, and producer state from a snapshot plus a replay.
//!
//! # Steps
//! 1. [`list_directory`]: create the directory, list the segments' base offsets (from their `.log`
//!    files), which index files exist, and the producer snapshots. No `.log` at all: one empty
//!    segment at offset 0.
//! 2. [`load_segment`] for each segment, oldest first: open its index files and check them cheaply
//!    ([`read_indexes`]: whole files for the active segment, the last entry of each for inactive
//!    ones); after a clean shutdown check the active segment's tail ([`segment::scan_clean_tail`]).
//!    A missing or inconsistent index, or (for the active segment) an unclean shutdown or a damaged
//!    tail, sends the segment through [`segment::recover`]: every batch checked, the torn tail cut
//!    (WARN), the indexes rebuilt. An inactive segment's `.log` is opened only to be recovered.
//! 3. [`resume_active`]: the newest segment gets its writers.
//! 4. [`load_producer_state`]: the newest usable snapshot at or below the log end (newer ones are
//!    deleted) and at or below the first segment whose `.txnindex` does not decode, then a replay
//!    of the batches after it (with none usable, of the whole log). The replay also rebuilds the
//!    `.txnindex` entries of every ABORT marker it meets (`LocalLog::replace_aborted_from`): those
//!    of a recovered active segment after the snapshot, cut with its torn tail, included.
//!
//! # Invariants after loading
//! * Segments are contiguous: an inactive segment's last offset is its successor's base - 1; the
//!   log end is the active segment's last offset + 1 (at least its base).
//! * The log start is the oldest segment's base, or the log-start checkpoint's offset when that is
//!   later (`log_start_checkpoint`), at most the log end; everything on disk below the log end is
//!   durable. Files renamed `.deleted` (segments deleted before the stop) are removed in step 1.

use crate::appender::Appender;
use crate::index::{self, OFFSET_ENTRY_SIZE, TIME_ENTRY_SIZE};
use crate::io::{FileKind, FileSystem, StorageFile};
use crate::local_log::{LocalLog, DELETED_SUFFIX, SNAPSHOT_EXTENSION};
use crate::log_start_checkpoint;
use crate::producer_state::ProducerStateManager;
use crate::segment::{self, CleanTail, IndexFiles, RecoveredWriters, Segment, SegmentWriter};
use crate::segment::{INDEX_EXTENSION, LOG_EXTENSION, TIME_INDEX_EXTENSION};
use crate::segment_files::SegmentFilePool;
use crate::txn_index::{self, AbortedTxnEntry, TXN_INDEX_EXTENSION};
use std::collections::{BTreeMap, BTreeSet};
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// A loaded segment map, with what the facade needs to finish opening.
pub(crate) struct Loaded<F: FileSystem> {
    pub(crate) local: LocalLog<F>,
    /// The recovered log end offset (the next offset to assign).
    pub(crate) log_end: i64,
    /// Offsets of the snapshot files, oldest first.
    pub(crate) snapshots: Vec<i64>,
    /// The base of the first segment whose aborted-transaction index must be rebuilt by the
    /// producer-state replay (its `.txnindex` unreadable).
    pub(crate) txn_rebuild_from: Option<i64>,
}

/// What the partition directory holds.
struct DirectoryListing {
    /// Base offsets of the `.log` files, oldest first (at least one).
    segment_bases: Vec<i64>,
    /// Base offsets with both a `.index` and a `.timeindex` file.
    with_index_files: BTreeSet<i64>,
    /// Base offsets with a `.txnindex` file.
    with_txn_index: BTreeSet<i64>,
    snapshots: Vec<i64>,
}

/// Loads the log in `dir` (steps 1 to 3 of the module doc).
pub(crate) async fn load<F: FileSystem>(
    fs: F,
    dir: PathBuf,
    index_interval_bytes: u32,
    files: Rc<SegmentFilePool<F>>,
    clean_shutdown: bool,
) -> io::Result<Loaded<F>> {
    // A log cleaner swap interrupted by a crash is completed (or undone) first.
    crate::cleaner::swap::complete_swaps(&fs, &dir).await?;
    let listing = list_directory(&fs, &dir).await?;
    let mut segments = BTreeMap::new();
    let mut writer = None;
    let mut txn_rebuild_from = None;
    for (position, &base) in listing.segment_bases.iter().enumerate() {
        let next_base = listing.segment_bases.get(position + 1).copied();
        let with_index_files = listing.with_index_files.contains(&base);
        let location = SegmentLocation {
            dir: &dir,
            base,
            next_base,
            with_index_files,
        };
        let (mut segment, segment_writer) =
            load_segment(&fs, location, index_interval_bytes, clean_shutdown).await?;
        let mut txn_index_usable = true;
        if listing.with_txn_index.contains(&base) {
            let path = dir.join(segment::file_name(base, TXN_INDEX_EXTENSION));
            match txn_index::decode_all(&fs.read_file(&path).await?) {
                Some(entries) => segment.aborted = entries,
                None => txn_index_usable = false,
            }
        }
        // A recovered active segment's entries after the newest snapshot are rebuilt by the
        // replay (those before it were written with their markers, before the snapshot); an
        // unreadable file has its segment replayed whole.
        if !txn_index_usable && txn_rebuild_from.is_none() {
            txn_rebuild_from = Some(base);
        }
        if segment_writer.is_some() {
            writer = segment_writer;
        }
        segments.insert(base, segment);
    }
    let (&last_base, last) = segments.iter().next_back().expect("at least one segment");
    let log_end = (last.last_offset + 1).max(last_base);
    // The log start is the first segment's base, or the checkpointed start (DeleteRecords) if later;
    // never past the log end (an unclean stop may have lost the tail the checkpoint pointed into).
    let checkpoint = log_start_checkpoint::read(&fs, &dir).await?;
    let log_start = checkpoint
        .map_or(listing.segment_bases[0], |offset| {
            offset.max(listing.segment_bases[0])
        })
        .min(log_end);
    let writer = writer.expect("the newest segment is active");
    let local = LocalLog::new(fs, dir, files, segments, writer, log_start);
    debug_assert_eq!(local.end_offset(), log_end);
    Ok(Loaded {
        local,
        log_end,
        snapshots: listing.snapshots,
        txn_rebuild_from,
    })
}

/// Step 1: creates `dir` if needed and lists it.
async fn list_directory<F: FileSystem>(fs: &F, dir: &Path) -> io::Result<DirectoryListing> {
    fs.create_dir_all(dir).await?;
    let mut segment_bases = Vec::new();
    let mut snapshots = Vec::new();
    let mut with_index = BTreeSet::new();
    let mut with_time_index = BTreeSet::new();
    let mut with_txn_index = BTreeSet::new();
    for name in fs.list_dir(dir).await? {
        let Some((offset, extension)) = name.to_str().and_then(segment::parse_file_name) else {
            continue;
        };
        match extension {
            LOG_EXTENSION => segment_bases.push(offset),
            INDEX_EXTENSION => {
                with_index.insert(offset);
            }
            TIME_INDEX_EXTENSION => {
                with_time_index.insert(offset);
            }
            TXN_INDEX_EXTENSION => {
                with_txn_index.insert(offset);
            }
            SNAPSHOT_EXTENSION => snapshots.push(offset),
            // Deleted by retention or DeleteRecords before the stop: no longer part of the log.
            extension if extension.ends_with(DELETED_SUFFIX) => {
                match fs.remove_file(&dir.join(&name)).await {
                    Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                    _ => {}
                }
            }
            _ => {}
        }
    }
    segment_bases.sort();
    snapshots.sort();
    if segment_bases.is_empty() {
        segment_bases.push(0);
    }
    Ok(DirectoryListing {
        segment_bases,
        with_index_files: with_index.intersection(&with_time_index).copied().collect(),
        with_txn_index,
        snapshots,
    })
}

/// Where a segment is and who follows it.
struct SegmentLocation<'a> {
    dir: &'a Path,
    base: i64,
    /// The next segment's base; `None` for the active (newest) segment.
    next_base: Option<i64>,
    /// Both index files were listed.
    with_index_files: bool,
}

/// Step 2: loads one segment, recovering it when needed; the active one also gets its writer.
async fn load_segment<F: FileSystem>(
    fs: &F,
    location: SegmentLocation<'_>,
    index_interval_bytes: u32,
    clean_shutdown: bool,
) -> io::Result<(Segment<F::File>, Option<SegmentWriter<F::File>>)> {
    let SegmentLocation { dir, base, .. } = location;
    let active = location.next_base.is_none();
    let log_path = dir.join(segment::file_name(base, LOG_EXTENSION));
    // Inactive segments' data files are opened only to be recovered (and then closed).
    let active_file = if active {
        Some(Rc::new(
            fs.open(&log_path, FileKind::SegmentData, true).await?,
        ))
    } else {
        None
    };
    let index_path = dir.join(segment::file_name(base, INDEX_EXTENSION));
    let time_index_path = dir.join(segment::file_name(base, TIME_INDEX_EXTENSION));
    let index_files = IndexFiles {
        index: Rc::new(fs.open(&index_path, FileKind::Small, true).await?),
        time_index: Rc::new(fs.open(&time_index_path, FileKind::Small, true).await?),
    };
    let log_size = match &active_file {
        Some(file) => file.size().await?,
        None => fs.file_size(&log_path).await?,
    };
    let index_size = index_files.index.size().await?;
    let time_index_size = index_files.time_index.size().await?;
    let sizes = (index_size, time_index_size);
    let mut segment = Segment {
        base,
        file: active_file.clone(),
        size: log_size,
        last_offset: location
            .next_base
            .map_or(base - 1, |next_base| next_base - 1),
        max_timestamp: -1,
        offset_of_max_timestamp: -1,
        index: None,
        time_index: None,
        aborted: Vec::new(),
    };
    // Cheap consistency check of the index files. A missing index, or an inactive non-empty
    // segment without its final time index entry, means the segment must be rescanned.
    let consistent = (location.with_index_files || log_size == 0)
        && index_size % OFFSET_ENTRY_SIZE as u64 == 0
        && time_index_size % TIME_ENTRY_SIZE as u64 == 0
        && (active || log_size == 0 || time_index_size > 0)
        && read_indexes(&mut segment, &index_files, sizes, log_size, active).await?;
    // After a clean stop the active segment's tail (from its last index entry) is still checked:
    // CRCs, and offset continuity (the base offset is not covered by the CRC). Any damage there
    // sends the segment through the full recovery below.
    let clean_tail = match &active_file {
        Some(file) if consistent && clean_shutdown => {
            let tail = segment::scan_clean_tail(&**file, &segment, log_size).await?;
            if tail.is_none() {
                tracing::warn!(
                    segment = %log_path.display(),
                    "damaged tail after a clean shutdown; recovering the segment"
                );
            }
            tail
        }
        _ => None,
    };
    let recovered = if !consistent || (active && clean_tail.is_none()) {
        let file = match &active_file {
            Some(file) => file.clone(),
            None => Rc::new(fs.open(&log_path, FileKind::SegmentData, false).await?),
        };
        let recovered = segment::recover(
            &mut segment,
            &*file,
            &index_files,
            &log_path,
            log_size,
            index_interval_bytes,
            active,
        )
        .await?;
        Some(recovered)
    } else {
        None
    };
    let Some(file) = active_file else {
        return Ok((segment, None));
    };
    let writer = resume_active(
        &mut segment,
        file,
        recovered,
        clean_tail,
        index_files,
        sizes,
    )
    .await?;
    Ok((segment, Some(writer)))
}

/// Reads and decodes the index files (whole for the active segment, which keeps them in memory;
/// the last entry of each for an inactive one). Sets the segment's max timestamp from the time
/// index. Returns false when they are inconsistent.
async fn read_indexes<File: StorageFile>(
    segment: &mut Segment<File>,
    index_files: &IndexFiles<File>,
    (index_size, time_index_size): (u64, u64),
    log_size: u64,
    active: bool,
) -> io::Result<bool> {
    let index_bytes = read_tail(&*index_files.index, index_size, OFFSET_ENTRY_SIZE, active).await?;
    let time_index_bytes = read_tail(
        &*index_files.time_index,
        time_index_size,
        TIME_ENTRY_SIZE,
        active,
    )
    .await?;
    let (Some(offset_entries), Some(time_entries)) = (
        index::decode_offset_index(&index_bytes, log_size),
        index::decode_time_index(&time_index_bytes),
    ) else {
        return Ok(false);
    };
    if let Some(last) = time_entries.last() {
        segment.max_timestamp = last.timestamp;
        segment.offset_of_max_timestamp = segment.base + last.relative_offset as i64;
    }
    if active {
        segment.index = Some(offset_entries);
        segment.time_index = Some(time_entries);
    }
    Ok(true)
}

/// The whole file (of `size` bytes), or only its last `entry_size` bytes.
async fn read_tail<File: StorageFile>(
    file: &File,
    size: u64,
    entry_size: usize,
    whole: bool,
) -> io::Result<bytes::Bytes> {
    let from = if whole {
        0
    } else {
        size.saturating_sub(entry_size as u64)
    };
    file.read_at(from, (size - from) as usize).await
}

/// Step 3: the active segment's writer, after a recovery or a clean tail check.
async fn resume_active<File: StorageFile>(
    segment: &mut Segment<File>,
    file: Rc<File>,
    recovered: Option<RecoveredWriters<File>>,
    clean_tail: Option<CleanTail>,
    index_files: IndexFiles<File>,
    (index_size, time_index_size): (u64, u64),
) -> io::Result<SegmentWriter<File>> {
    let (bytes_since_index, first_append_ms, index, time_index) = match (recovered, clean_tail) {
        (Some(recovered), _) => (
            recovered.bytes_since_index,
            recovered.first_timestamp,
            recovered.index,
            recovered.time_index,
        ),
        (None, Some(tail)) => {
            segment.last_offset = tail.last_offset;
            segment.max_timestamp = tail.max_timestamp;
            segment.offset_of_max_timestamp = tail.offset_of_max_timestamp;
            let first_timestamp = segment::first_batch_max_timestamp(&*file).await?;
            let index = Appender::open(index_files.index, index_size).await?;
            let time_index = Appender::open(index_files.time_index, time_index_size).await?;
            (
                tail.bytes_since_index,
                first_timestamp,
                Rc::new(index),
                Rc::new(time_index),
            )
        }
        (None, None) => unreachable!("an active segment is recovered or has a clean tail"),
    };
    let log = Rc::new(Appender::open(file, segment.size).await?);
    Ok(SegmentWriter {
        log,
        index,
        time_index,
        bytes_since_index,
        first_append_ms,
    })
}

/// Step 4: producer state from the newest usable snapshot in `[log_start, log_end]` (snapshots past
/// the log end are deleted: they describe truncated data) and at or below `txn_rebuild_from`, then
/// a replay of the batches in `[snapshot, log_end)`, which also rebuilds the aborted-transaction
/// index entries of the markers replayed.
pub(crate) async fn load_producer_state<F: FileSystem>(
    local: &LocalLog<F>,
    snapshots: &[i64],
    log_end: i64,
    txn_rebuild_from: Option<i64>,
) -> io::Result<ProducerStateManager> {
    let log_start = local.log_start_offset();
    let mut from = log_start;
    let mut state = ProducerStateManager::new();
    let newest_usable = txn_rebuild_from.map_or(log_end, |base| base.min(log_end));
    for &snapshot in snapshots.iter().rev() {
        if snapshot > log_end {
            let _ = local.remove_snapshot(snapshot).await;
            continue;
        }
        if snapshot < log_start || snapshot > newest_usable {
            continue;
        }
        let Ok(bytes) = local.read_snapshot(snapshot).await else {
            continue;
        };
        if let Some(decoded) = ProducerStateManager::decode_snapshot(&bytes) {
            state = decoded;
            from = snapshot;
            break;
        }
    }
    let mut current = from;
    let mut aborted = Vec::new();
    while current < log_end {
        let Some(located) = local.locate(current).await? else {
            break;
        };
        let mut last = current - 1;
        let file = &*located.file;
        let chunk = segment::RECOVERY_READ_BYTES;
        segment::scan(
            file,
            located.position,
            located.size,
            chunk,
            false,
            |_, header, bytes| {
                if header.last_offset() >= current {
                    if let Some(completed) = state.apply_batch(header, &bytes) {
                        if completed.aborted {
                            aborted.push(AbortedTxnEntry {
                                producer_id: completed.producer_id,
                                first_offset: completed.first_offset,
                                last_offset: completed.last_offset,
                                last_stable_offset: completed.last_stable_offset,
                            });
                        }
                    }
                }
                last = header.last_offset();
                true
            },
        )
        .await?;
        match local.next_segment_base(located.base) {
            Some(next_base) => current = next_base.max(last + 1),
            None => break,
        }
    }
    local.replace_aborted_from(from, aborted).await?;
    Ok(state)
}
