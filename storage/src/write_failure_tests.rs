//! A write that fails (disk full) is undone: nothing of it is acknowledged or readable, reads of
//! what is on disk go on, and appends succeed again at the right offsets once space is free.

use crate::batch::testing::{idempotent_batch, simple_batch};
use crate::batch::BatchHeader;
use crate::cache::BatchCache;
use crate::io::{FileKind, FileSystem, StdFile, StdFileSystem, StorageFile};
use crate::log::{Log, LogConfig};
use crate::types::{LeaderEpoch, Offset};
use crate::StorageError;
use bytes::Bytes;
use futures_lite::future::block_on;
use std::cell::Cell;
use std::io;
use std::path::Path;
use std::rc::Rc;

/// A file system whose segment writes fail with ENOSPC while `full` is set, after writing the
/// first `partial` bytes of the write (a partial write, as a full disk may leave). Segment files
/// demand `alignment`-aligned writes (4096: like O_DIRECT).
#[derive(Clone, Default)]
struct FullDisk {
    full: Rc<Cell<bool>>,
    partial: Rc<Cell<usize>>,
    alignment: usize,
}

struct FullDiskFile {
    inner: StdFile,
    kind: FileKind,
    disk: FullDisk,
}

impl FileSystem for FullDisk {
    type File = FullDiskFile;
    async fn open(&self, path: &Path, kind: FileKind, create: bool) -> io::Result<FullDiskFile> {
        Ok(FullDiskFile {
            inner: StdFileSystem.open(path, kind, create).await?,
            kind,
            disk: self.clone(),
        })
    }
}

impl StorageFile for FullDiskFile {
    fn write_alignment(&self) -> usize {
        match self.kind {
            FileKind::SegmentData => self.disk.alignment.max(1),
            FileKind::Small => 1,
        }
    }
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        self.inner.read_at(pos, len).await
    }
    async fn write_parts_at(&self, pos: u64, parts: &[&[u8]], len: usize) -> io::Result<()> {
        let alignment = self.write_alignment();
        assert!((pos as usize).is_multiple_of(alignment) && len.is_multiple_of(alignment));
        if self.kind == FileKind::SegmentData && self.disk.full.get() {
            let joined: Vec<u8> = parts.concat();
            let partial = self.disk.partial.get().min(joined.len());
            self.inner
                .write_parts_at(pos, &[&joined[..partial]], partial)
                .await?;
            return Err(io::Error::from_raw_os_error(28)); // ENOSPC
        }
        self.inner.write_parts_at(pos, parts, len).await
    }
    async fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data().await
    }
    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.inner.truncate(len).await
    }
    async fn size(&self) -> io::Result<u64> {
        self.inner.size().await
    }
}

fn open<F: FileSystem>(fs: F, dir: &Path, clean: bool) -> Log<F> {
    block_on(Log::open(
        fs,
        dir.to_path_buf(),
        LogConfig::default(),
        Rc::new(BatchCache::new(1 << 20)),
        clean,
    ))
    .unwrap()
}

/// Reads every batch from 0 to `end`: contiguous, each with `records` records.
fn check_readable<F: FileSystem>(log: &Log<F>, end: i64) {
    let mut next = 0;
    while next < end {
        let bytes = block_on(log.read(Offset(next), 1, Offset(end), true)).unwrap();
        let header = BatchHeader::parse(&bytes);
        assert_eq!(header.base_offset, next);
        next = header.last_offset() + 1;
    }
    assert_eq!(next, end);
}

#[test]
fn full_disk_refuses_appends_keeps_reads_and_resumes() {
    for (partial, alignment) in [(0, 1), (30, 1), (100_000, 1), (30, 4096), (5000, 4096)] {
        let dir = tempfile::tempdir().unwrap();
        let disk = FullDisk {
            alignment,
            ..FullDisk::default()
        };
        let log = open(disk.clone(), dir.path(), false);
        let append = |batch: Vec<u8>| block_on(log.append(Bytes::from(batch), LeaderEpoch(0), 5));
        for sequence in 0..5 {
            assert_eq!(
                append(idempotent_batch(sequence * 3, 3))
                    .unwrap()
                    .base_offset,
                Offset(sequence as i64 * 3)
            );
        }
        let segment = dir.path().join(format!("{:020}.log", 0));
        let size = std::fs::metadata(&segment).unwrap().len();

        disk.full.set(true);
        disk.partial.set(partial);
        let error = append(idempotent_batch(15, 3)).unwrap_err();
        assert!(matches!(error, StorageError::Io(_)), "{error}");
        assert_eq!(error.error_code(), 56);
        assert!(!log.is_failed());
        // Two appends queued together (one group commit): both refused.
        let (first, second) = block_on(futures_lite::future::zip(
            log.append(Bytes::from(simple_batch(1, 5, 1)), LeaderEpoch(0), 5),
            log.append(Bytes::from(simple_batch(1, 5, 1)), LeaderEpoch(0), 5),
        ));
        assert!(first.is_err() && second.is_err());
        assert_eq!(log.log_end_offset(), Offset(15));
        assert_eq!(log.durable_end_offset(), Offset(15));
        // The partial write is cut (with alignment, the last page's zero padding too).
        let now = std::fs::metadata(&segment).unwrap().len();
        assert!(
            now <= size && (alignment > 1 || now == size),
            "partial write cut"
        );
        check_readable(&log, 15);

        disk.full.set(false);
        // The idempotent retry is a new write at the failed write's offsets, not a "duplicate".
        let info = append(idempotent_batch(15, 3)).unwrap();
        assert!(!info.duplicate);
        assert_eq!(info.base_offset, Offset(15));
        assert!(append(idempotent_batch(15, 3)).unwrap().duplicate);
        assert_eq!(
            append(simple_batch(2, 5, 1)).unwrap().base_offset,
            Offset(18)
        );
        check_readable(&log, 20);

        // A crash now (no close) recovers exactly the acknowledged batches.
        drop(log);
        let log = open(StdFileSystem, dir.path(), false);
        assert_eq!(log.log_end_offset(), Offset(20));
        check_readable(&log, 20);
    }
}

#[test]
fn crash_while_full_recovers_only_acknowledged_batches() {
    let dir = tempfile::tempdir().unwrap();
    let disk = FullDisk::default();
    let log = open(disk.clone(), dir.path(), false);
    for _ in 0..4 {
        block_on(log.append(Bytes::from(simple_batch(2, 50, 1)), LeaderEpoch(0), 5)).unwrap();
    }
    disk.full.set(true);
    disk.partial.set(10_000); // the whole batch reaches the file, then ENOSPC
    assert!(block_on(log.append(Bytes::from(simple_batch(2, 50, 1)), LeaderEpoch(0), 5)).is_err());
    drop(log);
    let log = open(StdFileSystem, dir.path(), false);
    assert_eq!(log.log_end_offset(), Offset(8));
    check_readable(&log, 8);
}
