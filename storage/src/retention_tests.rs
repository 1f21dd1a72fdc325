//! Tests of the log start moving forward: DeleteRecords (`Log::delete_records`) and its checkpoint
//! across clean and unclean reopens, retention by time and size (`Log::apply_retention`), bounded
//! steps, the delayed removal of `.deleted` files, and reads racing a deletion.

use crate::batch::testing::{idempotent_batch, simple_batch};
use crate::batch::BatchHeader;
use crate::cache::BatchCache;
use crate::config::CleanupPolicy;
use crate::error::StorageError;
use crate::io::{FileKind, FileSystem, StdFile, StdFileSystem, StorageFile};
use crate::log::{Log, LogConfig, RETENTION_SEGMENTS_PER_CALL};
use crate::log_start_checkpoint;
use crate::types::{LeaderEpoch, Offset};
use bytes::Bytes;
use futures_lite::future::block_on;
use std::io;
use std::path::Path;
use std::rc::Rc;

/// Keeps everything unless a test sets a limit; deleted files go at once unless it sets a delay.
fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2000,
        index_interval_bytes: 100,
        retention_ms: -1,
        retention_bytes: -1,
        file_delete_delay_ms: 0,
        ..Default::default()
    }
}

fn open_with(dir: &Path, config: LogConfig, cache_bytes: usize, clean: bool) -> Log<StdFileSystem> {
    let cache = Rc::new(BatchCache::new(cache_bytes));
    block_on(Log::open(
        StdFileSystem,
        dir.to_path_buf(),
        config,
        cache,
        clean,
    ))
    .unwrap()
}

fn open(dir: &Path, clean: bool) -> Log<StdFileSystem> {
    open_with(dir, config(), 0, clean)
}

/// 100 batches of 3 records (offsets 0..300), batch `n` with timestamp 1000 + n, all committed.
fn fill<F: FileSystem>(log: &Log<F>) {
    for n in 0..100 {
        let info = block_on(log.append(
            Bytes::from(simple_batch(3, 20, 1000 + n)),
            LeaderEpoch(0),
            0,
        ))
        .unwrap();
        assert_eq!(info.base_offset, Offset(n * 3));
    }
    assert!(log.segment_count() > 5);
    assert_eq!(log.update_high_watermark(Offset(300)), Offset(300));
}

fn files_with_suffix(dir: &Path, suffix: &str) -> usize {
    std::fs::read_dir(dir)
        .unwrap()
        .filter(|entry| {
            let name = entry.as_ref().unwrap().file_name();
            name.to_str().unwrap().ends_with(suffix)
        })
        .count()
}

fn out_of_range<T: std::fmt::Debug>(result: Result<T, StorageError>) -> bool {
    matches!(result, Err(StorageError::OffsetOutOfRange { .. }))
}

fn first_header<F: FileSystem>(log: &Log<F>, offset: i64) -> BatchHeader {
    let bytes = block_on(log.read(Offset(offset), 1, Offset(i64::MAX), true)).unwrap();
    BatchHeader::parse(&bytes)
}

#[test]
fn delete_records_moves_the_start_inside_a_segment_and_survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), false);
    fill(&log);
    let segments_before = log.segment_count();
    // Past the high watermark, or negative: out of range, nothing moves.
    log.update_high_watermark(Offset(300));
    assert!(out_of_range(block_on(log.delete_records(Offset(301)))));
    assert!(out_of_range(block_on(log.delete_records(Offset(-1)))));
    assert_eq!(log.log_start_offset(), Offset(0));
    // Inside the third segment.
    let bases = log.segment_bases();
    let target = bases[2].0 + 4;
    assert_eq!(
        block_on(log.delete_records(Offset(target))).unwrap(),
        Offset(target)
    );
    assert_eq!(log.log_start_offset(), Offset(target));
    assert_eq!(log.segment_count(), segments_before - 2);
    assert_eq!(log.segment_bases()[0], bases[2]);
    // Lower offsets change nothing.
    assert_eq!(
        block_on(log.delete_records(Offset(5))).unwrap(),
        Offset(target)
    );
    assert!(out_of_range(block_on(log.read(
        Offset(target - 1),
        100,
        Offset(300),
        true
    ))));
    assert!(first_header(&log, target).last_offset() >= target);
    assert_eq!(
        block_on(log_start_checkpoint::read(&StdFileSystem, dir.path())).unwrap(),
        Some(target)
    );
    // The deleted segments' files are renamed, then removed once due.
    assert_eq!(files_with_suffix(dir.path(), ".log.deleted"), 2);
    assert!(!dir.path().join(format!("{:020}.log", bases[0].0)).exists());
    assert_eq!(block_on(log.remove_deleted_files(0)).unwrap(), 6);
    assert_eq!(files_with_suffix(dir.path(), ".deleted"), 0);
    // Appends report the new start.
    let info =
        block_on(log.append(Bytes::from(simple_batch(1, 20, 0)), LeaderEpoch(0), 0)).unwrap();
    assert_eq!(info.log_start_offset, Offset(target));
    block_on(log.close()).unwrap();

    // Clean reopen.
    let log = open(dir.path(), true);
    assert_eq!(log.log_start_offset(), Offset(target));
    assert!(out_of_range(block_on(log.read(
        Offset(target - 1),
        100,
        Offset(301),
        true
    ))));
    // Up to the high watermark (everything): the start is the log end, in the active segment.
    assert_eq!(
        block_on(log.delete_records(Offset(301))).unwrap(),
        Offset(301)
    );
    assert_eq!(log.segment_count(), 1);
    drop(log); // no close: an unclean stop (kill -9)

    let log = open(dir.path(), false);
    assert_eq!(log.log_start_offset(), Offset(301));
    assert_eq!(log.log_end_offset(), Offset(301));
    let info =
        block_on(log.append(Bytes::from(simple_batch(2, 20, 0)), LeaderEpoch(0), 0)).unwrap();
    assert_eq!(info.base_offset, Offset(301));
    assert_eq!(info.log_start_offset, Offset(301));
}

#[test]
fn checkpoint_is_clamped_and_deleted_leftovers_removed_at_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), false);
    fill(&log);
    block_on(log.delete_records(Offset(100))).unwrap();
    let pending = log.deleted_files_pending();
    assert!(pending > 0);
    drop(log); // unclean: the `.deleted` files are still there
    assert!(files_with_suffix(dir.path(), ".deleted") > 0);
    // A checkpoint past the log end (a tail lost in a crash) is clamped to the end.
    block_on(log_start_checkpoint::write(
        &StdFileSystem,
        dir.path(),
        10_000,
    ))
    .unwrap();
    let log = open(dir.path(), false);
    assert_eq!(files_with_suffix(dir.path(), ".deleted"), 0);
    assert_eq!(log.log_start_offset(), Offset(300));
    assert_eq!(log.log_end_offset(), Offset(300));
    drop(log);
    // A damaged checkpoint is ignored: the first segment's base.
    std::fs::write(dir.path().join(log_start_checkpoint::FILE_NAME), "garbage").unwrap();
    let log = open(dir.path(), false);
    assert_eq!(log.log_start_offset(), log.segment_bases()[0]);
}

#[test]
fn time_retention_deletes_expired_closed_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with(
        dir.path(),
        LogConfig {
            retention_ms: 50,
            file_delete_delay_ms: 1000,
            ..config()
        },
        1 << 20,
        false,
    );
    fill(&log);
    let bases = log.segment_bases();
    // Batch n (offsets 3n..3n+2) has timestamp 1000 + n: a segment's newest record is
    // 1000 + next_base / 3 - 1. At 1080 those older than 1030 expire (retention.ms 50).
    let newest = |next_base: Offset| 1000 + next_base.0 / 3 - 1;
    let outcome = block_on(log.apply_retention(1080)).unwrap();
    let deleted = outcome.segments_deleted;
    assert!(deleted >= 1 && !outcome.more);
    assert_eq!(outcome.new_log_start, log.log_start_offset());
    assert_eq!(log.segment_bases()[0], bases[deleted]);
    assert!(newest(bases[deleted]) < 1030);
    assert!(newest(bases[deleted + 1]) >= 1030);
    let start = log.log_start_offset().0;
    assert_eq!(first_header(&log, start).base_offset, start);
    // The files wait for file.delete.delay.ms.
    assert_eq!(files_with_suffix(dir.path(), ".log.deleted"), deleted);
    assert_eq!(block_on(log.remove_deleted_files(1080 + 999)).unwrap(), 0);
    assert!(block_on(log.remove_deleted_files(1080 + 1000)).unwrap() >= 3 * deleted);
    assert_eq!(files_with_suffix(dir.path(), ".deleted"), 0);
    // Much later: every closed segment expires, the active one stays.
    let outcome = block_on(log.apply_retention(1_000_000)).unwrap();
    assert!(outcome.segments_deleted > 0);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_start_offset(), log.segment_bases()[0]);
    assert_eq!(log.log_end_offset(), Offset(300));
}

thread_local! {
    /// What `DirectoryEventsFs` did to directories, in order.
    static DIRECTORY_EVENTS: std::cell::RefCell<Vec<&'static str>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Std files; records renames and directory fsyncs in `DIRECTORY_EVENTS`.
#[derive(Clone, Copy, Default)]
struct DirectoryEventsFs;

impl FileSystem for DirectoryEventsFs {
    type File = StdFile;
    async fn open(&self, path: &Path, kind: FileKind, create: bool) -> io::Result<StdFile> {
        StdFileSystem.open(path, kind, create).await
    }
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        DIRECTORY_EVENTS.with(|events| events.borrow_mut().push("rename"));
        StdFileSystem.rename(from, to).await
    }
    async fn sync_dir(&self, path: &Path) -> io::Result<()> {
        DIRECTORY_EVENTS.with(|events| events.borrow_mut().push("sync_dir"));
        StdFileSystem.sync_dir(path).await
    }
}

#[test]
fn retention_fsyncs_the_directory_after_its_renames() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        retention_ms: 50,
        ..config()
    };
    let cache = Rc::new(BatchCache::new(0));
    let log = block_on(Log::open(
        DirectoryEventsFs,
        dir.path().to_path_buf(),
        config,
        cache,
        false,
    ))
    .unwrap();
    fill(&log);
    DIRECTORY_EVENTS.with(|events| events.borrow_mut().clear());
    let outcome = block_on(log.apply_retention(1080)).unwrap();
    assert!(outcome.segments_deleted > 0);
    let events = DIRECTORY_EVENTS.with(|events| events.borrow().clone());
    assert!(events.contains(&"rename"), "{events:?}");
    assert_eq!(events.last(), Some(&"sync_dir"), "{events:?}");
    // Nothing to delete: no renames, no fsync.
    DIRECTORY_EVENTS.with(|events| events.borrow_mut().clear());
    assert_eq!(
        block_on(log.apply_retention(1080))
            .unwrap()
            .segments_deleted,
        0
    );
    assert!(DIRECTORY_EVENTS.with(|events| events.borrow().is_empty()));
}

#[test]
fn without_delete_policy_only_segments_below_the_log_start_go() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with(
        dir.path(),
        LogConfig {
            segment_bytes: 200,
            retention_ms: 0,
            retention_bytes: 0,
            cleanup_policy: CleanupPolicy::DELETE,
            ..config()
        },
        0,
        false,
    );
    // Keyless batches (a compacted log refuses them): written first, then the policy turns compact.
    for n in 0..200 {
        block_on(log.append(Bytes::from(simple_batch(3, 20, n)), LeaderEpoch(0), 0)).unwrap();
    }
    log.set_config(LogConfig {
        cleanup_policy: CleanupPolicy::COMPACT,
        ..log.config()
    });
    log.update_high_watermark(Offset(600));
    assert_eq!(
        block_on(log.apply_retention(i64::MAX))
            .unwrap()
            .segments_deleted,
        0
    );
    // DeleteRecords deletes a bounded number of segments itself; retention takes the rest.
    assert_eq!(
        block_on(log.delete_records(Offset(540))).unwrap(),
        Offset(540)
    );
    let bases = log.segment_bases();
    assert!(bases[1].0 <= 540, "segments left below the start");
    let mut deleted = 0;
    loop {
        let outcome = block_on(log.apply_retention(i64::MAX)).unwrap();
        deleted += outcome.segments_deleted;
        if !outcome.more {
            break;
        }
    }
    assert!(deleted > 0);
    let bases = log.segment_bases();
    assert!(bases[0].0 <= 540 && bases.get(1).is_none_or(|next| next.0 > 540));
    assert_eq!(log.log_start_offset(), Offset(540));
}

#[test]
fn size_retention_keeps_at_least_retention_bytes() {
    let dir = tempfile::tempdir().unwrap();
    let limit = 5000;
    let log = open_with(
        dir.path(),
        LogConfig {
            retention_bytes: limit,
            ..config()
        },
        0,
        false,
    );
    fill(&log);
    let size = log.size_in_bytes() as i64;
    let outcome = block_on(log.apply_retention(0)).unwrap();
    assert!(outcome.segments_deleted > 0);
    let after = log.size_in_bytes() as i64;
    assert_eq!(size - after, outcome.bytes_deleted as i64);
    // Kafka's rule: still at least retention.bytes, and deleting the oldest would go below it.
    assert!(after >= limit);
    let bases = log.segment_bases();
    assert!(bases.len() > 1);
    // Nothing more to delete now.
    assert_eq!(
        block_on(log.apply_retention(0)).unwrap().segments_deleted,
        0
    );
    // Reads from the new start work; below it they are out of range.
    let start = log.log_start_offset().0;
    assert_eq!(first_header(&log, start).base_offset, start);
    assert!(out_of_range(block_on(log.read(
        Offset(start - 1),
        1,
        Offset(300),
        true
    ))));
    // Nothing past the high watermark is deleted: a fresh log whose data is not committed.
    let other = tempfile::tempdir().unwrap();
    let log = open_with(
        other.path(),
        LogConfig {
            retention_bytes: 0,
            ..config()
        },
        0,
        false,
    );
    for n in 0..100 {
        block_on(log.append(Bytes::from(simple_batch(3, 20, n)), LeaderEpoch(0), 0)).unwrap();
    }
    assert_eq!(log.high_watermark(), Offset(0));
    assert_eq!(
        block_on(log.apply_retention(0)).unwrap().segments_deleted,
        0
    );
}

#[test]
fn retention_works_in_bounded_steps() {
    let dir = tempfile::tempdir().unwrap();
    let log = open_with(
        dir.path(),
        LogConfig {
            segment_bytes: 200,
            retention_bytes: 0,
            ..config()
        },
        0,
        false,
    );
    for n in 0..200 {
        block_on(log.append(Bytes::from(simple_batch(3, 20, n)), LeaderEpoch(0), 0)).unwrap();
    }
    log.update_high_watermark(Offset(600));
    let closed = log.segment_count() - 1;
    assert!(closed > 2 * RETENTION_SEGMENTS_PER_CALL);
    let mut calls = 0;
    loop {
        let outcome = block_on(log.apply_retention(0)).unwrap();
        assert!(outcome.segments_deleted <= RETENTION_SEGMENTS_PER_CALL);
        calls += 1;
        if !outcome.more {
            break;
        }
        assert_eq!(outcome.segments_deleted, RETENTION_SEGMENTS_PER_CALL);
    }
    assert_eq!(calls, closed.div_ceil(RETENTION_SEGMENTS_PER_CALL));
    assert_eq!(log.segment_count(), 1);
    block_on(log.close()).unwrap();
    assert_eq!(
        files_with_suffix(dir.path(), ".deleted"),
        0,
        "close removes them"
    );
    let log = open(dir.path(), true);
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_end_offset(), Offset(600));
}

#[test]
fn producers_whose_batches_are_gone_are_forgotten() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), false);
    block_on(log.append(Bytes::from(idempotent_batch(0, 2)), LeaderEpoch(0), 0)).unwrap();
    fill_after(&log);
    assert!(log.producer_entry(7).is_some());
    block_on(log.delete_records(Offset(1))).unwrap();
    assert!(log.producer_entry(7).is_some(), "its batch ends at 1");
    block_on(log.delete_records(Offset(2))).unwrap();
    assert!(log.producer_entry(7).is_none());
}

/// 100 more batches after whatever is there, all committed.
fn fill_after<F: FileSystem>(log: &Log<F>) {
    for n in 0..100 {
        block_on(log.append(Bytes::from(simple_batch(3, 20, n)), LeaderEpoch(0), 0)).unwrap();
    }
    log.update_high_watermark(Offset(i64::MAX));
}

/// Std files whose opens and reads suspend once first, so a test can run a deletion while a read
/// waits for its file.
#[derive(Clone, Copy, Default)]
struct SuspendingFs;

struct SuspendingFile(StdFile);

impl FileSystem for SuspendingFs {
    type File = SuspendingFile;
    async fn open(&self, path: &Path, kind: FileKind, create: bool) -> io::Result<SuspendingFile> {
        futures_lite::future::yield_now().await;
        Ok(SuspendingFile(
            StdFileSystem.open(path, kind, create).await?,
        ))
    }
}

impl StorageFile for SuspendingFile {
    fn write_alignment(&self) -> usize {
        1
    }
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        futures_lite::future::yield_now().await;
        self.0.read_at(pos, len).await
    }
    async fn write_parts_at(&self, pos: u64, parts: &[&[u8]], len: usize) -> io::Result<()> {
        self.0.write_parts_at(pos, parts, len).await
    }
    async fn sync_data(&self) -> io::Result<()> {
        self.0.sync_data().await
    }
    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.0.truncate(len).await
    }
    async fn size(&self) -> io::Result<u64> {
        self.0.size().await
    }
}

/// Polls `future` `times` times (it must still be pending), then runs `between`, then finishes it.
fn interleave<T>(
    future: impl std::future::Future<Output = T>,
    times: usize,
    between: impl FnOnce(),
) -> T {
    let mut future = Box::pin(future);
    for _poll in 0..times {
        let polled = block_on(futures_lite::future::poll_once(&mut future));
        assert!(polled.is_none(), "ready at poll {} of {times}", _poll + 1);
    }
    between();
    block_on(future)
}

#[test]
fn reads_racing_a_deletion_finish_or_answer_out_of_range() {
    let dir = tempfile::tempdir().unwrap();
    let cache = Rc::new(BatchCache::new(0));
    let log = block_on(Log::open(
        SuspendingFs,
        dir.path().to_path_buf(),
        config(),
        cache,
        false,
    ))
    .unwrap();
    fill(&log);
    let delete = |offset: i64| {
        block_on(log.delete_records(Offset(offset))).unwrap();
        block_on(log.remove_deleted_files(0)).unwrap();
        block_on(log.remove_deleted_files(0)).unwrap();
        assert_eq!(files_with_suffix(dir.path(), ".deleted"), 0);
    };
    // Waiting to open its segment's file (by path) when the segment goes: out of range.
    let read = log.read_batches(Offset(0), 1 << 20, Offset(300), true);
    let result = interleave(read, 1, || delete(60));
    assert!(
        matches!(result, Err(StorageError::OffsetOutOfRange { .. })),
        "{result:?}"
    );
    // Holding the file (its `.log` open, its `.index` being opened) when the segment goes: the
    // read finishes.
    let start = log.log_start_offset().0;
    let read = log.read_batches(Offset(start), 100, Offset(300), true);
    let result = interleave(read, 2, || delete(200));
    let batches = result.unwrap();
    let first = BatchHeader::parse(&batches[0]);
    assert!(first.base_offset <= start && start <= first.last_offset());
    assert!(out_of_range(block_on(log.read(
        Offset(start),
        100,
        Offset(300),
        true
    ))));
    assert!(first_header(&log, 200).last_offset() >= 200);
}
