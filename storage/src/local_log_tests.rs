//! Tests of what the layer split added: `truncate_to`, `delete_segments_before`, the high
//! watermark, and fault injection reaching directory and snapshot I/O through the file layer.

use crate::batch::testing::{idempotent_batch, simple_batch};
use crate::batch::{iter_batches, BatchHeader};
use crate::cache::BatchCache;
use crate::error::StorageError;
use crate::index;
use crate::io::{FileKind, FileSystem, StdFile, StdFileSystem};
use crate::log::{Log, LogConfig};
use crate::types::{LeaderEpoch, Offset};
use bytes::Bytes;
use futures_lite::future::block_on;
use std::cell::Cell;
use std::ffi::OsString;
use std::io;
use std::path::Path;
use std::rc::Rc;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2000,
        index_interval_bytes: 100,
        ..Default::default()
    }
}

fn open<F: FileSystem>(fs: F, dir: &Path, cache_bytes: usize, clean: bool) -> Log<F> {
    let cache = Rc::new(BatchCache::new(cache_bytes));
    block_on(Log::open(fs, dir.to_path_buf(), config(), cache, clean)).unwrap()
}

fn append<F: FileSystem>(log: &Log<F>, batch: Vec<u8>) -> Offset {
    let info = block_on(log.append(Bytes::from(batch), LeaderEpoch(0), 0)).unwrap();
    info.base_offset
}

/// 100 batches of 3 records (offsets 0..300), batch `n` with timestamp 1000 + n: many segments.
fn fill<F: FileSystem>(log: &Log<F>) {
    for n in 0..100 {
        assert_eq!(append(log, simple_batch(3, 20, 1000 + n)), Offset(n * 3));
    }
    assert!(log.segment_count() > 5);
}

fn assert_offsets<F: FileSystem>(log: &Log<F>) {
    let (start, high_watermark) = (log.log_start_offset(), log.high_watermark());
    let (durable_end, end) = (log.durable_end_offset(), log.log_end_offset());
    assert!(start <= high_watermark && high_watermark <= durable_end && durable_end <= end);
    let bases = log.segment_bases();
    assert!(bases.windows(2).all(|pair| pair[0] < pair[1]));
    assert!(bases[0] <= start && *bases.last().unwrap() <= end);
}

/// Reads every offset in `[log start, log end)` on its own; returns each batch's header by offset.
fn read_each<F: FileSystem>(log: &Log<F>) -> Vec<BatchHeader> {
    let end = log.log_end_offset();
    (log.log_start_offset().0..end.0)
        .map(|offset| {
            let bytes = block_on(log.read(Offset(offset), 1, end, true)).unwrap();
            let header = BatchHeader::parse(&bytes);
            assert!(header.base_offset <= offset && offset <= header.last_offset());
            assert_eq!(bytes.len(), header.total_size());
            header
        })
        .collect()
}

/// Every index entry of every segment names a batch start with that offset; the time index is
/// monotonic and within the segment. The log must be closed (index files flushed).
fn assert_index_files(dir: &Path) {
    for entry in std::fs::read_dir(dir).unwrap() {
        let path = entry.unwrap().path();
        if path.extension().is_none_or(|extension| extension != "log") {
            continue;
        }
        let base: i64 = path.file_stem().unwrap().to_str().unwrap().parse().unwrap();
        let data = std::fs::read(&path).unwrap();
        let starts: Vec<(usize, i64)> = iter_batches(&data)
            .map(|(position, header)| (position, header.base_offset))
            .collect();
        let index_bytes = std::fs::read(path.with_extension("index")).unwrap();
        let entries = index::decode_offset_index(&index_bytes, data.len() as u64).unwrap();
        for entry in entries {
            let expected = (entry.position as usize, base + entry.relative_offset as i64);
            assert!(starts.contains(&expected), "{path:?}: {entry:?}");
        }
        let time_bytes = std::fs::read(path.with_extension("timeindex")).unwrap();
        let last = starts.last().map_or(base - 1, |_| {
            let header = BatchHeader::parse(&data[starts.last().unwrap().0..]);
            header.last_offset()
        });
        for entry in index::decode_time_index(&time_bytes).unwrap() {
            assert!(
                base + entry.relative_offset as i64 <= last,
                "{path:?}: {entry:?}"
            );
        }
    }
}

#[test]
fn truncate_to_removes_everything_at_and_after_the_offset() {
    // Cut points: inside an inactive segment, a segment's base, the active segment, mid-batch,
    // and the log start.
    for (cut, expected_end) in [(150, 150), (151, 150), (297, 297), (0, 0), (-1, -1)] {
        let dir = tempfile::tempdir().unwrap();
        let log = open(StdFileSystem, dir.path(), 1 << 20, false);
        fill(&log);
        log.update_high_watermark(Offset(300));
        let bases = log.segment_bases();
        let (cut, expected_end) = if cut < 0 {
            (bases[3].0, bases[3].0) // exactly a segment's base
        } else {
            (cut, expected_end)
        };
        block_on(log.truncate_to(Offset(cut))).unwrap();
        assert_eq!(log.log_end_offset(), Offset(expected_end), "cut {cut}");
        assert_eq!(log.durable_end_offset(), Offset(expected_end));
        assert_eq!(log.high_watermark(), Offset(expected_end));
        assert!(log
            .segment_bases()
            .iter()
            .all(|base| base.0 <= expected_end));
        assert_offsets(&log);
        let headers = read_each(&log);
        assert_eq!(headers.len() as i64, expected_end);
        assert!(
            block_on(log.read(Offset(expected_end), 1000, Offset(i64::MAX), true))
                .unwrap()
                .is_empty()
        );
        // Appends continue at the new end, in the cache and on disk.
        assert_eq!(
            append(&log, simple_batch(3, 20, 9999)),
            Offset(expected_end)
        );
        assert_offsets(&log);
        block_on(log.close()).unwrap();
        assert_index_files(dir.path());
        for clean in [true, false] {
            let log = open(StdFileSystem, dir.path(), 0, clean);
            assert_eq!(log.log_end_offset(), Offset(expected_end + 3));
            let headers = read_each(&log);
            assert_eq!(headers.len() as i64, expected_end + 3);
            assert_eq!(
                headers.last().unwrap().max_timestamp,
                9999,
                "old data came back"
            );
            assert_eq!(log.segment_bases()[0], Offset(0));
            if clean {
                block_on(log.close()).unwrap();
            }
        }
    }
}

#[test]
fn truncate_to_outside_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(StdFileSystem, dir.path(), 0, false);
    fill(&log);
    let segments = log.segment_count();
    block_on(log.truncate_to(Offset(300))).unwrap();
    block_on(log.truncate_to(Offset(1000))).unwrap();
    assert_eq!(log.log_end_offset(), Offset(300));
    assert_eq!(log.segment_count(), segments);
    log.update_high_watermark(Offset(300));
    let deleted = block_on(log.delete_segments_before(Offset(100))).unwrap();
    assert!(deleted > 0);
    let start = log.log_start_offset();
    assert!(matches!(
        block_on(log.truncate_to(Offset(start.0 - 1))),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    block_on(log.truncate_to(start)).unwrap();
    assert_eq!(log.log_end_offset(), start);
    assert_eq!(log.segment_count(), 1);
    assert_offsets(&log);
    assert_eq!(append(&log, simple_batch(1, 5, 0)), start);
}

#[test]
fn truncate_to_rebuilds_the_producer_state() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(StdFileSystem, dir.path(), 1 << 20, false);
    // 60 batches of 2 records: rolls write snapshots along the way.
    for batch in 0..60 {
        assert_eq!(
            append(&log, idempotent_batch(batch * 2, 2)),
            Offset(batch as i64 * 2)
        );
    }
    assert!(log.segment_count() > 2);
    block_on(log.truncate_to(Offset(50))).unwrap();
    assert_eq!(log.log_end_offset(), Offset(50));
    assert_eq!(log.producer_entry(7).unwrap().last_seq(), Some(49));
    // The truncated batch is not a duplicate any more: it is appended again at the new end.
    let info =
        block_on(log.append(Bytes::from(idempotent_batch(50, 2)), LeaderEpoch(0), 0)).unwrap();
    assert!(!info.duplicate);
    assert_eq!(info.base_offset, Offset(50));
    block_on(log.close()).unwrap();
    let log = open(StdFileSystem, dir.path(), 0, true);
    assert_eq!(log.producer_entry(7).unwrap().last_seq(), Some(51));
    let retry =
        block_on(log.append(Bytes::from(idempotent_batch(50, 2)), LeaderEpoch(0), 0)).unwrap();
    assert!(retry.duplicate);
}

#[test]
fn delete_segments_before_removes_whole_old_segments_only() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(StdFileSystem, dir.path(), 0, false);
    fill(&log);
    // Nothing is deleted past the high watermark (still 0: nothing committed yet).
    assert_eq!(
        block_on(log.delete_segments_before(Offset(150))).unwrap(),
        0
    );
    assert_eq!(log.update_high_watermark(Offset(1000)), Offset(300));
    let bases = log.segment_bases();
    let deleted = block_on(log.delete_segments_before(Offset(150))).unwrap();
    let kept = log.segment_bases();
    assert_eq!(deleted + kept.len(), bases.len());
    assert_eq!(log.log_start_offset(), kept[0]);
    assert!(kept[0].0 <= 150 && kept.get(1).is_none_or(|next| next.0 > 150));
    for base in &bases[..deleted] {
        assert!(!dir.path().join(format!("{:020}.log", base.0)).exists());
        assert!(!dir.path().join(format!("{:020}.index", base.0)).exists());
    }
    assert_offsets(&log);
    assert!(matches!(
        block_on(log.read(Offset(kept[0].0 - 1), 100, Offset(300), true)),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    let headers = read_each(&log);
    assert_eq!(headers.len() as i64, 300 - kept[0].0);
    // The active segment is never deleted.
    block_on(log.delete_segments_before(Offset(i64::MAX))).unwrap();
    assert_eq!(log.segment_count(), 1);
    assert_eq!(log.log_start_offset(), log.segment_bases()[0]);
    assert_eq!(append(&log, simple_batch(3, 20, 0)), Offset(300));
    log.update_high_watermark(Offset(303));
    assert_offsets(&log);
    let start = log.log_start_offset();
    block_on(log.close()).unwrap();
    let log = open(StdFileSystem, dir.path(), 0, true);
    assert_eq!(log.log_start_offset(), start);
    assert_eq!(log.log_end_offset(), Offset(303));
    assert_eq!(read_each(&log).len() as i64, 303 - start.0);
}

#[test]
fn high_watermark_is_clamped_and_monotonic() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(StdFileSystem, dir.path(), 0, false);
    assert_eq!(log.high_watermark(), Offset(0));
    fill(&log);
    assert_eq!(log.high_watermark(), Offset(0));
    assert_eq!(log.update_high_watermark(Offset(10)), Offset(10));
    assert_eq!(log.update_high_watermark(Offset(5)), Offset(10));
    assert_eq!(log.update_high_watermark(Offset(i64::MAX)), Offset(300));
    assert_eq!(log.last_stable_offset(), Offset(300));
    drop(log);
    // Reopened: everything recovered counts as committed.
    let log = open(StdFileSystem, dir.path(), 0, false);
    assert_eq!(log.high_watermark(), Offset(300));
}

/// Fails directory listings and file removals on demand.
#[derive(Clone, Default)]
struct DirectoryFaults {
    fail_list: Rc<Cell<bool>>,
    fail_remove: Rc<Cell<bool>>,
}

impl FileSystem for DirectoryFaults {
    type File = StdFile;
    async fn open(&self, path: &Path, kind: FileKind, create: bool) -> io::Result<StdFile> {
        StdFileSystem.open(path, kind, create).await
    }
    async fn list_dir(&self, path: &Path) -> io::Result<Vec<OsString>> {
        if self.fail_list.get() {
            return Err(io::Error::other("injected: listing fails"));
        }
        StdFileSystem.list_dir(path).await
    }
    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        if self.fail_remove.get() {
            return Err(io::Error::other("injected: removal fails"));
        }
        StdFileSystem.remove_file(path).await
    }
}

#[test]
fn directory_faults_reach_open_snapshots_and_deletion() {
    let dir = tempfile::tempdir().unwrap();
    let faults = DirectoryFaults::default();
    faults.fail_list.set(true);
    let cache = Rc::new(BatchCache::new(0));
    let path = dir.path().to_path_buf();
    let opened = block_on(Log::open(faults.clone(), path, config(), cache, false));
    assert!(matches!(opened, Err(StorageError::Io(_))));
    faults.fail_list.set(false);
    let log = open(faults.clone(), dir.path(), 0, false);
    fill(&log);
    log.update_high_watermark(Offset(300));
    faults.fail_remove.set(true);
    assert!(matches!(
        block_on(log.delete_segments_before(Offset(150))),
        Err(StorageError::Io(_))
    ));
    faults.fail_remove.set(false);
    // The snapshot written on close prunes old snapshots after listing the directory.
    faults.fail_list.set(true);
    assert!(block_on(log.close()).is_err());
    assert!(log.is_failed());
    faults.fail_list.set(false);
    block_on(crate::delete_log_dir_with(&faults, dir.path())).unwrap();
    assert!(!dir.path().exists());
    block_on(crate::delete_log_dir_with(&faults, dir.path())).unwrap();
}
