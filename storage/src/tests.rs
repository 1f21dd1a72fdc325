//! Log-level tests: append/read/roll/recovery/idempotence on `StdFileSystem` and on an
//! O_DIRECT-like wrapper that requires aligned writes.

use crate::batch::testing::{build_batch, simple_batch, BatchSpec};
use crate::batch::BatchHeader;
use crate::cache::BatchCache;
use crate::error::StorageError;
use crate::io::{FileKind, FileSystem, StdFile, StdFileSystem, StorageFile};
use crate::log::{Log, LogConfig, TimestampType};
use crate::types::{LeaderEpoch, Offset};
use bytes::Bytes;
use futures_lite::future::block_on;
use std::io;
use std::path::{Path, PathBuf};
use std::rc::Rc;

/// Like O_DIRECT: segment data files demand 4096-aligned writes. Like ext4, `allocate` grows the
/// file with zeros, and a write inside the allocated size must not cover both pages written before
/// and allocated ones (ext4 would hand it to an io-wq worker; the appender splits such writes).
#[derive(Clone, Copy, Default)]
struct AlignedFs;

struct AlignedFile {
    inner: StdFile,
    align: usize,
    /// End of the pages written through this handle or present at open (page-rounded).
    written_end: std::cell::Cell<u64>,
    /// The size `allocate` last grew the file to (0: never).
    allocated: std::cell::Cell<u64>,
}

impl FileSystem for AlignedFs {
    type File = AlignedFile;
    async fn open(&self, path: &Path, kind: FileKind, create: bool) -> io::Result<AlignedFile> {
        let inner = StdFileSystem.open(path, kind, create).await?;
        let align = if kind == FileKind::SegmentData {
            4096
        } else {
            1
        };
        let written_end = inner.size().await?.next_multiple_of(align as u64);
        Ok(AlignedFile {
            inner,
            align,
            written_end: written_end.into(),
            allocated: 0.into(),
        })
    }
}

impl StorageFile for AlignedFile {
    fn write_alignment(&self) -> usize {
        self.align
    }
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        self.inner.read_at(pos, len).await
    }
    async fn write_parts_at(&self, pos: u64, parts: &[&[u8]], len: usize) -> io::Result<()> {
        assert_eq!(pos % self.align as u64, 0, "unaligned write position {pos}");
        assert_eq!(len % self.align, 0, "unaligned write length {len}");
        assert!(parts.iter().map(|part| part.len()).sum::<usize>() <= len);
        let (end, written_end) = (pos + len as u64, self.written_end.get());
        assert!(
            // (Flushes over 64 KiB may mix them: the appender accepts the io-wq path there.)
            len > 64 << 10
                || end > self.allocated.get()
                || end <= written_end
                || pos >= written_end,
            "write [{pos}, {end}) covers written pages (to {written_end}) and allocated ones"
        );
        self.written_end.set(written_end.max(end));
        self.inner.write_parts_at(pos, parts, len).await
    }
    async fn allocate(&self, offset: u64, len: u64) -> io::Result<()> {
        let len = offset + len;
        if self.align > 1 && len > self.inner.size().await? {
            self.inner.truncate(len).await?; // grows with zeros, like fallocate
            self.allocated.set(len);
        }
        Ok(())
    }
    async fn sync_data(&self) -> io::Result<()> {
        self.inner.sync_data().await
    }
    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.written_end.set(
            self.written_end
                .get()
                .min(len.next_multiple_of(self.align as u64)),
        );
        self.allocated.set(self.allocated.get().min(len));
        self.inner.truncate(len).await
    }
    async fn size(&self) -> io::Result<u64> {
        self.inner.size().await
    }
}

fn open<F: FileSystem>(fs: F, dir: &Path, cfg: LogConfig, cache: usize, clean: bool) -> Log<F> {
    block_on(Log::open(
        fs,
        dir.to_path_buf(),
        cfg,
        Rc::new(BatchCache::new(cache)),
        clean,
    ))
    .unwrap()
}

fn small_cfg() -> LogConfig {
    LogConfig {
        segment_bytes: 2000,
        index_interval_bytes: 100,
        ..Default::default()
    }
}

fn append<F: FileSystem>(log: &Log<F>, b: Vec<u8>, now: i64) -> crate::log::AppendInfo {
    block_on(log.append(Bytes::from(b), LeaderEpoch(0), now)).unwrap()
}

/// Reads the whole log batch by batch; returns the headers.
fn read_all<F: FileSystem>(log: &Log<F>) -> Vec<BatchHeader> {
    let mut out = Vec::new();
    let mut cur = log.log_start_offset();
    let end = log.durable_end_offset();
    while cur < end {
        let b = block_on(log.read(cur, 300, end, true)).unwrap();
        assert!(!b.is_empty(), "empty read at {cur}");
        let hs = crate::validate_batches(&b, u32::MAX).unwrap();
        assert!(hs[0].base_offset <= cur.0 && cur.0 <= hs[0].last_offset());
        cur = Offset(hs.last().unwrap().last_offset() + 1);
        out.extend(hs);
    }
    out
}

fn check_log<F: FileSystem>(log: &Log<F>, expected_batches: usize, records_per_batch: i64) {
    let hs = read_all(log);
    assert_eq!(hs.len(), expected_batches);
    for (i, h) in hs.iter().enumerate() {
        assert_eq!(h.base_offset, i as i64 * records_per_batch);
    }
    // random-access reads of every offset through the index
    for o in 0..log.log_end_offset().0 {
        let b = block_on(log.read(Offset(o), 1, log.durable_end_offset(), true)).unwrap();
        let h = BatchHeader::parse(&b);
        assert!(h.base_offset <= o && o <= h.last_offset(), "offset {o}");
        assert_eq!(b.len(), h.total_size());
    }
}

fn roundtrip<F: FileSystem>(fs: F) {
    let dir = tempfile::tempdir().unwrap();
    let log = open(fs.clone(), dir.path(), small_cfg(), 0, false);
    for i in 0..100 {
        let info = append(&log, simple_batch(3, 20, 1000 + i), 1000 + i);
        assert_eq!(info.base_offset, Offset(i * 3));
        assert_eq!(info.last_offset, Offset(i * 3 + 2));
        assert!(!info.duplicate);
    }
    assert_eq!(log.log_end_offset(), Offset(300));
    assert_eq!(log.durable_end_offset(), Offset(300));
    assert!(log.segment_count() > 5, "segments: {}", log.segment_count());
    check_log(&log, 100, 3);
    block_on(log.close()).unwrap();
    assert!(matches!(
        block_on(log.read(Offset(0), 10, Offset(1), true)),
        Err(StorageError::Closed)
    ));
    // clean reopen: everything is there, offsets continue
    let log = open(fs.clone(), dir.path(), small_cfg(), 0, true);
    assert_eq!(log.log_end_offset(), Offset(300));
    check_log(&log, 100, 3);
    assert_eq!(
        append(&log, simple_batch(3, 20, 5000), 5000).base_offset,
        Offset(300)
    );
    drop(log); // crash: no close
    let log = open(fs.clone(), dir.path(), small_cfg(), 0, false);
    assert_eq!(log.log_end_offset(), Offset(303));
    check_log(&log, 101, 3);
    drop(log);
    // unclean reopen with a cache: reads served from memory for the tail
    let log = open(fs, dir.path(), small_cfg(), 1 << 20, false);
    for _ in 0..5 {
        append(&log, simple_batch(3, 20, 6000), 6000);
    }
    check_log(&log, 106, 3);
}

#[test]
fn roundtrip_std() {
    roundtrip(StdFileSystem);
}

#[test]
fn roundtrip_aligned() {
    roundtrip(AlignedFs);
}

#[test]
fn segment_files_and_indexes() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(StdFileSystem, dir.path(), small_cfg(), 0, false);
    for i in 0..50 {
        append(&log, simple_batch(2, 30, i), i);
    }
    block_on(log.close()).unwrap();
    let bases = log.segment_bases();
    assert_eq!(bases[0], Offset(0));
    for b in &bases {
        let p = dir.path().join(format!("{:020}.log", b.0));
        let len = std::fs::metadata(&p).unwrap().len();
        assert!(len <= 2000);
        let idx = std::fs::read(dir.path().join(format!("{:020}.index", b.0))).unwrap();
        assert_eq!(idx.len() % 8, 0);
        if len > 400 {
            assert!(!idx.is_empty(), "segment {b} has no index entries");
        }
        let entries = crate::index::decode_offset_index(&idx, len).unwrap();
        // every entry points at the batch with that offset
        let data = std::fs::read(&p).unwrap();
        for e in entries {
            let h = BatchHeader::parse(&data[e.position as usize..]);
            assert_eq!(h.base_offset, b.0 + e.relative_offset as i64);
        }
        let t = std::fs::read(dir.path().join(format!("{:020}.timeindex", b.0))).unwrap();
        assert!(crate::index::decode_time_index(&t).is_some());
    }
    // an index file that went bad is rebuilt
    std::fs::write(
        dir.path().join(format!("{:020}.index", bases[1].0)),
        [1u8; 5],
    )
    .unwrap();
    std::fs::remove_file(dir.path().join(format!("{:020}.timeindex", bases[2].0))).unwrap();
    let log = open(StdFileSystem, dir.path(), small_cfg(), 0, true);
    check_log(&log, 50, 2);
    // batch i has timestamp i: the lookup must find it in the rebuilt segment
    let b2 = bases[2].0;
    assert_eq!(
        block_on(log.offset_for_timestamp(b2 / 2)).unwrap(),
        Some((Offset(b2), b2 / 2))
    );
    assert_eq!(
        block_on(log.max_timestamp()).unwrap(),
        Some((Offset(98), 49))
    );
}

#[test]
fn roll_rules() {
    // index full: 2 entries max
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_index_bytes: 24,
        index_interval_bytes: 10,
        ..Default::default()
    };
    let log = open(StdFileSystem, dir.path(), cfg, 0, false);
    for i in 0..10 {
        append(&log, simple_batch(1, 10, i), i);
    }
    assert!(log.segment_count() >= 3, "{}", log.segment_count());
    check_log(&log, 10, 1);

    // time
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_ms: 100,
        ..Default::default()
    };
    let log = open(StdFileSystem, dir.path(), cfg, 0, false);
    append(&log, simple_batch(1, 10, 0), 0);
    append(&log, simple_batch(1, 10, 0), 50);
    assert_eq!(log.segment_count(), 1);
    append(&log, simple_batch(1, 10, 0), 100);
    assert_eq!(log.segment_bases(), vec![Offset(0), Offset(2)]);

    // size: a batch larger than the segment gets its own segment
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        segment_bytes: 500,
        ..Default::default()
    };
    let log = open(StdFileSystem, dir.path(), cfg, 0, false);
    append(&log, simple_batch(1, 10, 0), 0);
    append(&log, simple_batch(1, 1000, 0), 0);
    append(&log, simple_batch(1, 10, 0), 0);
    assert_eq!(log.segment_bases(), vec![Offset(0), Offset(1), Offset(2)]);
    check_log(&log, 3, 1);
}

#[test]
fn read_limits_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(StdFileSystem, dir.path(), small_cfg(), 1 << 20, false);
    let size = simple_batch(2, 100, 0).len();
    for i in 0..10 {
        append(&log, simple_batch(2, 100, i), i);
    }
    let end = log.durable_end_offset();
    assert_eq!(end, Offset(20));
    let reopened = open(StdFileSystem, dir.path(), small_cfg(), 0, true);
    for cache in [true, false] {
        let log = if cache { &log } else { &reopened };
        // KIP-74
        assert_eq!(
            block_on(log.read(Offset(3), 10, end, true)).unwrap().len(),
            size
        );
        assert!(block_on(log.read(Offset(3), 10, end, false))
            .unwrap()
            .is_empty());
        // max_bytes respected, whole batches
        let b = block_on(log.read(Offset(0), 3 * size + 5, end, false)).unwrap();
        assert_eq!(b.len(), 3 * size);
        // upper excludes batches at or beyond it
        let b = block_on(log.read(Offset(0), 1 << 20, Offset(6), true)).unwrap();
        assert_eq!(b.len(), 3 * size);
        assert!(block_on(log.read(Offset(6), 1 << 20, Offset(6), true))
            .unwrap()
            .is_empty());
        assert!(block_on(log.read(end, 1 << 20, end, true))
            .unwrap()
            .is_empty());
        assert!(matches!(
            block_on(log.read(Offset(21), 100, end, true)),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        assert!(matches!(
            block_on(log.read(Offset(-1), 100, end, true)),
            Err(StorageError::OffsetOutOfRange { .. })
        ));
        if !cache {
            break;
        }
    }
    // validation errors
    let mut bad = simple_batch(1, 10, 0);
    let n = bad.len();
    bad[n - 2] ^= 0x55;
    assert!(matches!(
        block_on(log.append(Bytes::from(bad), LeaderEpoch(0), 0)),
        Err(StorageError::CorruptMessage(_))
    ));
    let cfg = LogConfig {
        max_message_bytes: 100,
        ..small_cfg()
    };
    log.set_config(cfg);
    assert!(matches!(
        block_on(log.append(Bytes::from(simple_batch(1, 200, 0)), LeaderEpoch(0), 0)),
        Err(StorageError::MessageTooLarge { .. })
    ));
    assert_eq!(log.log_end_offset(), Offset(20));
}

#[test]
fn log_append_time_and_leader_epoch() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        timestamp_type: TimestampType::LogAppendTime,
        ..Default::default()
    };
    let log = open(StdFileSystem, dir.path(), cfg, 0, false);
    let info =
        block_on(log.append(Bytes::from(simple_batch(3, 10, 5)), LeaderEpoch(7), 12345)).unwrap();
    assert_eq!(info.log_append_time_ms, 12345);
    let b = block_on(log.read(Offset(0), 1 << 20, Offset(3), true)).unwrap();
    let h = crate::validate_batches(&b, 1 << 20).unwrap()[0]; // CRC still valid
    assert!(h.is_log_append_time());
    assert_eq!(h.max_timestamp, 12345);
    assert_eq!(h.partition_leader_epoch, 7);
    assert_eq!(
        block_on(log.offset_for_timestamp(100)).unwrap(),
        Some((Offset(0), 12345))
    );
}

#[test]
fn time_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(StdFileSystem, dir.path(), small_cfg(), 0, false);
    // batch i: records with timestamps 1000 + 10*i + {0,1,2}; one out-of-order batch in between
    for i in 0..60i64 {
        let spec = BatchSpec {
            base_timestamp: 1000 + 10 * i,
            timestamp_deltas: vec![0, 1, 2],
            value_size: 20,
            ..Default::default()
        };
        append(&log, build_batch(&spec), 0);
    }
    assert!(log.segment_count() > 3);
    let mut reopened = None;
    for reopen in [false, true] {
        if reopen {
            block_on(log.close()).unwrap();
            reopened = Some(open(StdFileSystem, dir.path(), small_cfg(), 0, true));
        }
        let log = reopened.as_ref().unwrap_or(&log);
        let q = |ts| block_on(log.offset_for_timestamp(ts)).unwrap();
        assert_eq!(q(0), Some((Offset(0), 1000)));
        assert_eq!(q(1000), Some((Offset(0), 1000)));
        assert_eq!(q(1001), Some((Offset(1), 1001)));
        assert_eq!(q(1003), Some((Offset(3), 1010)));
        assert_eq!(q(1252), Some((Offset(25 * 3 + 2), 1252)));
        assert_eq!(q(1000 + 10 * 59 + 2), Some((Offset(179), 1592)));
        assert_eq!(q(1593), None);
        assert_eq!(
            block_on(log.max_timestamp()).unwrap(),
            Some((Offset(179), 1592))
        );
        if reopen {
            break;
        }
    }
}

#[test]
fn empty_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(StdFileSystem, dir.path(), small_cfg(), 0, false);
    assert_eq!(log.log_end_offset(), Offset(0));
    assert!(block_on(log.read(Offset(0), 100, Offset(0), true))
        .unwrap()
        .is_empty());
    assert_eq!(block_on(log.offset_for_timestamp(0)).unwrap(), None);
    assert_eq!(block_on(log.max_timestamp()).unwrap(), None);
    block_on(log.close()).unwrap();
    let log = open(StdFileSystem, dir.path(), small_cfg(), 0, true);
    assert_eq!(log.log_end_offset(), Offset(0));
    crate::delete_log_dir(dir.path()).unwrap();
    assert!(!dir.path().exists());
}

fn idem(pid: i64, epoch: i16, seq: i32, n: usize) -> Vec<u8> {
    build_batch(&BatchSpec {
        producer_id: pid,
        producer_epoch: epoch,
        base_sequence: seq,
        timestamp_deltas: vec![0; n],
        ..Default::default()
    })
}

#[test]
fn idempotent_producer() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(StdFileSystem, dir.path(), small_cfg(), 0, false);
    let ap = |b: Vec<u8>| block_on(log.append(Bytes::from(b), LeaderEpoch(0), 0));
    let first = ap(idem(1, 0, 0, 3)).unwrap();
    assert_eq!(first.base_offset, Offset(0));
    ap(simple_batch(2, 10, 0)).unwrap(); // non-idempotent in between
    let dup = ap(idem(1, 0, 0, 3)).unwrap();
    assert!(dup.duplicate);
    assert_eq!((dup.base_offset, dup.last_offset), (Offset(0), Offset(2)));
    assert_eq!(log.log_end_offset(), Offset(5));
    assert!(matches!(
        ap(idem(1, 0, 4, 1)),
        Err(StorageError::OutOfOrderSequence(_))
    ));
    assert_eq!(ap(idem(1, 0, 3, 2)).unwrap().base_offset, Offset(5));
    // new epoch must start at 0
    assert!(matches!(
        ap(idem(1, 1, 5, 1)),
        Err(StorageError::OutOfOrderSequence(_))
    ));
    assert_eq!(ap(idem(1, 1, 0, 1)).unwrap().base_offset, Offset(7));
    assert!(matches!(
        ap(idem(1, 0, 5, 1)),
        Err(StorageError::InvalidProducerEpoch(_))
    ));
    // enough appends to roll a few segments (snapshots on roll)
    for seq in 1..=40 {
        ap(idem(2, 0, (seq - 1) * 2, 2)).unwrap();
        ap(idem(1, 1, seq, 1)).unwrap();
    }
    let expect = |log: &Log<StdFileSystem>| {
        let e = log.producer_entry(1).unwrap();
        assert_eq!(e.epoch, 1);
        assert_eq!(e.last_seq(), Some(40));
        let d = block_on(log.append(Bytes::from(idem(1, 1, 40, 1)), LeaderEpoch(0), 0)).unwrap();
        assert!(d.duplicate);
        assert!(matches!(
            block_on(log.append(Bytes::from(idem(1, 0, 41, 1)), LeaderEpoch(0), 0)),
            Err(StorageError::InvalidProducerEpoch(_))
        ));
    };
    expect(&log);
    let end = log.log_end_offset();
    block_on(log.close()).unwrap();
    let snaps = std::fs::read_dir(dir.path())
        .unwrap()
        .filter(|e| {
            e.as_ref()
                .unwrap()
                .file_name()
                .to_str()
                .unwrap()
                .ends_with(".snapshot")
        })
        .count();
    assert!((1..=2).contains(&snaps), "{snaps} snapshots");
    let log = open(StdFileSystem, dir.path(), small_cfg(), 0, true);
    assert_eq!(log.log_end_offset(), end);
    expect(&log);
    // crash, then recovery replays the batches after the newest snapshot
    block_on(log.append(Bytes::from(idem(1, 1, 41, 1)), LeaderEpoch(0), 0)).unwrap();
    drop(log);
    let log = open(StdFileSystem, dir.path(), small_cfg(), 0, false);
    assert_eq!(log.producer_entry(1).unwrap().last_seq(), Some(41));
    // without any snapshot the whole log is replayed
    drop(log);
    for e in std::fs::read_dir(dir.path()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().is_some_and(|x| x == "snapshot") {
            std::fs::remove_file(p).unwrap();
        }
    }
    let log = open(StdFileSystem, dir.path(), small_cfg(), 0, false);
    assert_eq!(log.producer_entry(1).unwrap().last_seq(), Some(41));
    assert!(log.producer_entry(2).is_some());
}

#[test]
fn concurrent_appends_keep_order() {
    for fs_aligned in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        if fs_aligned {
            concurrent::<AlignedFs>(AlignedFs, dir.path());
        } else {
            concurrent::<StdFileSystem>(StdFileSystem, dir.path());
        }
    }
}

fn concurrent<F: FileSystem>(fs: F, dir: &Path) {
    let log = open(fs, dir, small_cfg(), 1 << 16, false);
    let mut futs = Vec::new();
    for i in 0..64usize {
        let log = &log;
        futs.push(Box::pin(async move {
            log.append(
                Bytes::from(simple_batch(1 + i % 3, 30, i as i64)),
                LeaderEpoch(0),
                0,
            )
            .await
            .unwrap()
        }));
    }
    // Poll all of them concurrently (join_all by hand: zip pairs).
    let infos = block_on(async {
        let mut out = Vec::new();
        let mut futs = futs;
        while !futs.is_empty() {
            let n = futs.len().min(8);
            let group: Vec<_> = futs.drain(..n).collect();
            let mut it = group.into_iter();
            let (a, b, c, d, e, f, g, h) = (
                it.next(),
                it.next(),
                it.next(),
                it.next(),
                it.next(),
                it.next(),
                it.next(),
                it.next(),
            );
            let opt = |x: Option<_>| async move {
                match x {
                    Some(f) => Some(f.await),
                    None => None,
                }
            };
            use futures_lite::future::zip;
            let (((ra, rb), (rc, rd)), ((re, rf), (rg, rh))) = zip(
                zip(zip(opt(a), opt(b)), zip(opt(c), opt(d))),
                zip(zip(opt(e), opt(f)), zip(opt(g), opt(h))),
            )
            .await;
            out.extend([ra, rb, rc, rd, re, rf, rg, rh].into_iter().flatten());
        }
        out
    });
    let mut expect = 0;
    for (i, info) in infos.iter().enumerate() {
        assert_eq!(info.base_offset, Offset(expect), "append {i}");
        expect += 1 + (i % 3) as i64;
    }
    assert_eq!(log.durable_end_offset(), Offset(expect));
    let hs = read_all(&log);
    assert_eq!(hs.last().unwrap().last_offset() + 1, expect);
}

#[test]
fn flush_policy_and_cache_budget() {
    let dir = tempfile::tempdir().unwrap();
    let cfg = LogConfig {
        flush_messages: 3,
        flush_ms: 100,
        ..Default::default()
    };
    let log = open(StdFileSystem, dir.path(), cfg, 1000, false);
    block_on(log.flush_if_due(0)).unwrap();
    for i in 0..10 {
        append(&log, simple_batch(1, 100, i), i);
    }
    block_on(log.flush_if_due(50)).unwrap();
    block_on(log.flush_if_due(150)).unwrap();
    block_on(log.flush()).unwrap();
    // the cache keeps only what fits in its budget; reads still work from the files
    check_log(&log, 10, 1);
    block_on(log.close()).unwrap();
    assert!(block_on(log.flush_if_due(1000)).is_err());
    let cache = BatchCache::new(400);
    let id = cache.register();
    for i in 0..10i64 {
        let mut b = simple_batch(1, 100, 0);
        crate::batch::set_base_offset(&mut b, i);
        let b = Bytes::from(b);
        cache.insert(id, b.slice(..61), b.slice(61..));
    }
    assert!(cache.used_bytes() <= 400);
    assert!(cache.read(id, 0, 1 << 20, 10, true).is_none()); // evicted
    let parts = cache.read(id, 9, 1 << 20, 10, true).unwrap();
    assert_eq!(parts.len(), 2, "header and body");
    assert_eq!(
        parts.iter().map(Bytes::len).sum::<usize>(),
        simple_batch(1, 100, 0).len()
    );
    cache.invalidate(id);
    assert_eq!(cache.used_bytes(), 0);
}

#[path = "torn_tail_tests.rs"]
mod torn_tail;
