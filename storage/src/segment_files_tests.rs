//! Descriptor tests of the inactive-segment file pool: a log with many segments holds open only its
//! active segment's files plus at most the pool's capacity, reads stay correct, and a file evicted
//! while a read holds it stays readable until that read is done.

use crate::batch::testing::simple_batch;
use crate::batch::BatchHeader;
use crate::cache::BatchCache;
use crate::io::{FileKind, FileSystem, StdFile, StdFileSystem, StorageFile};
use crate::log::{Log, LogConfig};
use crate::segment_files::SegmentFilePool;
use crate::types::{LeaderEpoch, Offset};
use bytes::Bytes;
use futures_lite::future::{block_on, yield_now, zip};
use std::cell::Cell;
use std::io;
use std::path::Path;
use std::rc::Rc;

/// Files open now and the most open at once since the last reset.
#[derive(Default)]
struct OpenFiles {
    now: Cell<usize>,
    most: Cell<usize>,
}

impl OpenFiles {
    fn reset_most(&self) {
        self.most.set(self.now.get());
    }
}

/// `StdFileSystem` that counts its open files; reads yield once first when `yield_reads` is set, so
/// that concurrent reads interleave under `block_on`.
#[derive(Clone)]
struct CountingFs {
    open_files: Rc<OpenFiles>,
    yield_reads: bool,
}

struct CountedFile {
    inner: StdFile,
    open_files: Rc<OpenFiles>,
    yield_reads: bool,
}

impl Drop for CountedFile {
    fn drop(&mut self) {
        self.open_files.now.set(self.open_files.now.get() - 1);
    }
}

impl FileSystem for CountingFs {
    type File = CountedFile;
    async fn open(&self, path: &Path, kind: FileKind, create: bool) -> io::Result<CountedFile> {
        let inner = StdFileSystem.open(path, kind, create).await?;
        let now = self.open_files.now.get() + 1;
        self.open_files.now.set(now);
        self.open_files
            .most
            .set(self.open_files.most.get().max(now));
        Ok(CountedFile {
            inner,
            open_files: self.open_files.clone(),
            yield_reads: self.yield_reads,
        })
    }
}

impl StorageFile for CountedFile {
    fn write_alignment(&self) -> usize {
        1
    }
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        if self.yield_reads {
            yield_now().await;
        }
        self.inner.read_at(pos, len).await
    }
    async fn write_parts_at(&self, pos: u64, parts: &[&[u8]], len: usize) -> io::Result<()> {
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

fn counting_fs(yield_reads: bool) -> CountingFs {
    CountingFs {
        open_files: Rc::new(OpenFiles::default()),
        yield_reads,
    }
}

/// The active segment's `.log`, `.index` and `.timeindex`.
const ACTIVE_FILES: usize = 3;
const POOL: usize = 2;

fn many_segments_config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        ..Default::default()
    }
}

fn open_log(
    fs: &CountingFs,
    dir: &Path,
    pool: &Rc<SegmentFilePool<CountingFs>>,
    clean: bool,
) -> Log<CountingFs> {
    block_on(Log::open_with_file_pool(
        fs.clone(),
        dir.to_path_buf(),
        many_segments_config(),
        // No batch cache: every read goes to the segment files.
        Rc::new(BatchCache::new(0)),
        pool.clone(),
        clean,
    ))
    .unwrap()
}

/// Reads every offset (random access through the indexes) and the whole log front to back.
fn read_everything(log: &Log<CountingFs>) {
    let end = log.durable_end_offset();
    for offset in 0..end.0 {
        let bytes = block_on(log.read(Offset(offset), 1, end, true)).unwrap();
        let header = BatchHeader::parse(&bytes);
        assert!(
            header.base_offset <= offset && offset <= header.last_offset(),
            "offset {offset}"
        );
        assert_eq!(bytes.len(), header.total_size());
    }
    let mut next = Offset(0);
    while next < end {
        let bytes = block_on(log.read(next, 250, end, true)).unwrap();
        let headers = crate::validate_batches(&bytes, u32::MAX).unwrap();
        assert_eq!(headers[0].base_offset, next.0);
        next = Offset(headers.last().unwrap().last_offset() + 1);
    }
    assert_eq!(next, end);
}

#[test]
fn many_segments_hold_only_the_active_files_and_the_pool_open() {
    let dir = tempfile::tempdir().unwrap();
    let fs = counting_fs(false);
    let pool = Rc::new(SegmentFilePool::new(fs.clone(), POOL));
    let log = open_log(&fs, dir.path(), &pool, false);
    for i in 0..200 {
        block_on(log.append(
            Bytes::from(simple_batch(2, 40, 1000 + i)),
            LeaderEpoch(0),
            1000 + i,
        ))
        .unwrap();
    }
    let segments = log.segment_count();
    assert!(segments > 50, "segments: {segments}");
    // Rolled segments let go of their files.
    assert_eq!(fs.open_files.now.get(), ACTIVE_FILES);
    fs.open_files.reset_most();
    read_everything(&log);
    assert!(
        fs.open_files.most.get() <= ACTIVE_FILES + POOL,
        "open at once: {}",
        fs.open_files.most.get()
    );
    assert!(
        pool.opens() as usize > segments,
        "the pool reopened evicted files: {}",
        pool.opens()
    );
    block_on(log.close()).unwrap();
    drop(log);
    assert_eq!(fs.open_files.now.get(), 0, "close leaves nothing open");
    assert_eq!(pool.open_count(), 0);

    // Clean and unclean reopens open only the active segment's files (an unclean one also rescans
    // the active segment), then serve everything within the same bound.
    for clean in [true, false] {
        let log = open_log(&fs, dir.path(), &pool, clean);
        assert_eq!(log.segment_count(), segments);
        assert_eq!(
            fs.open_files.now.get(),
            ACTIVE_FILES,
            "after opening (clean: {clean})"
        );
        fs.open_files.reset_most();
        read_everything(&log);
        // Plus one: the `.index` / `.timeindex` of an inactive segment is opened, read whole and
        // closed on its first lookup.
        let bound = ACTIVE_FILES + POOL + 1;
        let most = fs.open_files.most.get();
        assert!(most <= bound, "open at once: {most}, bound {bound}");
        assert_eq!(
            block_on(log.offset_for_timestamp(1100))
                .unwrap()
                .map(|(offset, _)| offset),
            Some(Offset(200))
        );
        assert!(fs.open_files.most.get() <= bound);
        drop(log); // without close: dropping forgets the pool's files too
        assert_eq!(fs.open_files.now.get(), 0);
    }
}

#[test]
fn a_damaged_inactive_segment_is_recovered_and_closed_again() {
    let dir = tempfile::tempdir().unwrap();
    let fs = counting_fs(false);
    let pool = Rc::new(SegmentFilePool::new(fs.clone(), POOL));
    let log = open_log(&fs, dir.path(), &pool, false);
    for i in 0..40 {
        block_on(log.append(
            Bytes::from(simple_batch(2, 40, 1000 + i)),
            LeaderEpoch(0),
            1000 + i,
        ))
        .unwrap();
    }
    block_on(log.close()).unwrap();
    let bases = log.segment_bases();
    drop(log);
    // Losing every index sends each inactive segment through recovery at open.
    for base in &bases {
        std::fs::remove_file(dir.path().join(format!("{:020}.index", base.0))).unwrap();
    }
    fs.open_files.reset_most();
    let log = open_log(&fs, dir.path(), &pool, true);
    assert_eq!(fs.open_files.now.get(), ACTIVE_FILES);
    assert!(
        fs.open_files.most.get() <= ACTIVE_FILES,
        "recovery opens one segment at a time"
    );
    assert_eq!(log.log_end_offset(), Offset(80));
    read_everything(&log);
}

#[test]
fn a_file_evicted_while_a_read_holds_it_stays_readable() {
    let dir = tempfile::tempdir().unwrap();
    let fs = counting_fs(true);
    let (first, second) = (dir.path().join("first.log"), dir.path().join("second.log"));
    std::fs::write(&first, b"first file").unwrap();
    std::fs::write(&second, b"second file").unwrap();
    let pool = SegmentFilePool::new(fs.clone(), 1);
    let held = block_on(pool.get(&first)).unwrap();
    let other = block_on(pool.get(&second)).unwrap();
    // The pool let go of `first`; the holder keeps its descriptor until it is done.
    assert_eq!(pool.open_count(), 1);
    assert_eq!(fs.open_files.now.get(), 2);
    assert_eq!(&block_on(held.read_at(0, 100)).unwrap()[..], b"first file");
    drop(held);
    assert_eq!(fs.open_files.now.get(), 1);
    assert_eq!(
        &block_on(other.read_at(0, 100)).unwrap()[..],
        b"second file"
    );
    drop(other);
    pool.forget_dir(dir.path());
    assert_eq!(fs.open_files.now.get(), 0);
}

#[test]
fn concurrent_reads_of_segments_evicting_each_other_are_correct() {
    let dir = tempfile::tempdir().unwrap();
    let fs = counting_fs(true);
    let pool = Rc::new(SegmentFilePool::new(fs.clone(), 1));
    let log = open_log(&fs, dir.path(), &pool, false);
    for i in 0..100 {
        block_on(log.append(
            Bytes::from(simple_batch(2, 40, 1000 + i)),
            LeaderEpoch(0),
            1000 + i,
        ))
        .unwrap();
    }
    let end = log.durable_end_offset();
    // Each pair reads two different inactive segments at once: the second read's open evicts the
    // first's file from the pool while the first read is still scanning it.
    for offset in (0..end.0 - 20).step_by(7) {
        let (early, late) = block_on(zip(
            log.read(Offset(offset), 1, end, true),
            log.read(Offset(offset + 20), 1, end, true),
        ));
        for (wanted, bytes) in [(offset, early.unwrap()), (offset + 20, late.unwrap())] {
            let header = BatchHeader::parse(&bytes);
            assert!(header.base_offset <= wanted && wanted <= header.last_offset());
        }
        assert!(pool.open_count() <= 1);
    }
    assert!(fs.open_files.now.get() <= ACTIVE_FILES + 1);
}
