//! Read-ahead (`read_ahead`, `local_log_read`): sequential readers served from chunks, batches split
//! across chunks, answers equal to reads without read-ahead, the budget, waiting for reads in flight,
//! and streams dropped when segments change.

use crate::batch::testing::simple_batch;
use crate::batch::BatchHeader;
use crate::cache::BatchCache;
use crate::io::StorageFile;
use crate::io::{BackgroundRead, FileKind, FileSystem, ReadCompletion, StdFile, StdFileSystem};
use crate::log::{Log, LogConfig};
use crate::read_ahead::{ReadAheadConfig, ReadAheadStats};
use crate::segment_files::SegmentFilePool;
use crate::types::{LeaderEpoch, Offset};
use bytes::Bytes;
use futures_lite::future::{block_on, yield_now, zip};
use std::cell::RefCell;
use std::io;
use std::path::Path;
use std::rc::Rc;
use std::time::Duration;

/// Reads left in flight by a [`DeferredFs`] file until the test completes them.
type InFlight = Rc<RefCell<Vec<(u64, usize, Rc<StdFile>, ReadCompletion)>>>;

/// `std` files that can read in the background: at once (`in_flight: None`) or when the test says.
#[derive(Clone, Default)]
struct DeferredFs {
    in_flight: Option<InFlight>,
}

struct DeferredFile {
    inner: Rc<StdFile>,
    in_flight: Option<InFlight>,
}

impl FileSystem for DeferredFs {
    type File = DeferredFile;
    async fn open(&self, path: &Path, kind: FileKind, create: bool) -> io::Result<DeferredFile> {
        Ok(DeferredFile {
            inner: Rc::new(StdFileSystem.open(path, kind, create).await?),
            in_flight: self.in_flight.clone(),
        })
    }
}

impl StorageFile for DeferredFile {
    fn write_alignment(&self) -> usize {
        1
    }
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
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
    fn start_read(&self, pos: u64, len: usize) -> Option<BackgroundRead> {
        match &self.in_flight {
            None => Some(BackgroundRead::done(block_on(self.inner.read_at(pos, len)))),
            Some(in_flight) => {
                let (read, completion) = BackgroundRead::pending();
                in_flight
                    .borrow_mut()
                    .push((pos, len, self.inner.clone(), completion));
                Some(read)
            }
        }
    }
}

/// Completes every read in flight (in reverse order, to show order does not matter).
fn complete_all(in_flight: &InFlight) -> usize {
    let reads: Vec<_> = in_flight.borrow_mut().drain(..).collect();
    let count = reads.len();
    for (pos, len, file, completion) in reads.into_iter().rev() {
        completion.complete(block_on(file.read_at(pos, len)));
    }
    count
}

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 64 << 10,
        index_interval_bytes: 4096,
        ..Default::default()
    }
}

/// A log on `fs` whose pool reads ahead with 4 KiB chunks, 3 per reader, in `budget` bytes; no
/// batch cache, so every read goes to the segments.
fn open(
    fs: DeferredFs,
    dir: &Path,
    budget: usize,
) -> (Log<DeferredFs>, Rc<SegmentFilePool<DeferredFs>>) {
    let pool = Rc::new(
        SegmentFilePool::new(fs.clone(), 16).with_read_ahead(ReadAheadConfig {
            budget_bytes: budget,
            chunk_bytes: 4096,
            chunks_per_reader: 3,
            reclaim_idle: Duration::from_secs(3600),
        }),
    );
    let log = block_on(Log::open_with_file_pool(
        fs,
        dir.to_path_buf(),
        config(),
        Rc::new(BatchCache::new(0)),
        pool.clone(),
        true,
    ))
    .unwrap();
    (log, pool)
}

/// Batches of 1 to 7 records of 300 bytes (about 0.3 to 2.2 KiB each, so many span 4 KiB chunks)
/// until the log holds `records` records over several segments.
fn fill(log: &Log<DeferredFs>, records: i64) {
    let mut n = 0;
    while log.log_end_offset().0 < records {
        let count = 1 + (n % 7) as usize;
        block_on(log.append(
            Bytes::from(simple_batch(count, 300, 1000 + n)),
            LeaderEpoch(0),
            0,
        ))
        .unwrap();
        n += 1;
    }
    assert!(log.segment_count() > 3, "the data should span segments");
}

/// Reads the whole log as a consumer does, `max_bytes` per fetch; returns the bytes of each fetch.
fn consume(log: &Log<DeferredFs>, max_bytes: usize, in_flight: Option<&InFlight>) -> Vec<Bytes> {
    let end = log.log_end_offset();
    let mut next = log.log_start_offset();
    let mut fetches = Vec::new();
    while next < end {
        let read = log.read(next, max_bytes, end, true);
        let bytes = match in_flight {
            None => block_on(read).unwrap(),
            Some(in_flight) => {
                let completer = async {
                    for _ in 0..4 {
                        yield_now().await;
                        complete_all(in_flight);
                    }
                };
                block_on(zip(read, completer)).0.unwrap()
            }
        };
        let mut last = None;
        for (_, header) in crate::batch::iter_batches(&bytes) {
            last = Some(header.last_offset());
        }
        next = Offset(last.expect("a fetch returns at least one batch") + 1);
        fetches.push(bytes);
    }
    fetches
}

fn stats(pool: &SegmentFilePool<DeferredFs>) -> ReadAheadStats {
    pool.read_ahead().stats()
}

#[test]
fn a_sequential_reader_gets_the_same_bytes_from_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let (log, pool) = open(DeferredFs::default(), dir.path(), 1 << 20);
    fill(&log, 2000);
    let with = consume(&log, 10_000, None);
    let after = stats(&pool);
    assert!(after.chunks_started > 20, "{after:?}");
    assert!(after.batches_served > 500, "{after:?}");
    assert!(pool.read_ahead().used_bytes() <= 3 * 4096);

    let dir_without = tempfile::tempdir().unwrap();
    let (plain, plain_pool) = open(DeferredFs::default(), dir_without.path(), 0);
    fill(&plain, 2000);
    let without = consume(&plain, 10_000, None);
    assert_eq!(stats(&plain_pool), ReadAheadStats::default());
    assert_eq!(with, without, "read-ahead changes no answer");
}

#[test]
fn batches_spanning_chunks_come_back_whole() {
    let dir = tempfile::tempdir().unwrap();
    let (log, pool) = open(DeferredFs::default(), dir.path(), 1 << 20);
    fill(&log, 600);
    let end = log.log_end_offset();
    // Two fetches make the reader sequential; the third is served from chunks in slices.
    let mut next = Offset(0);
    for _ in 0..6 {
        let parts = block_on(log.read_batches(next, 9_000, end, true)).unwrap();
        let joined: Vec<u8> = parts.iter().flat_map(|part| part.iter().copied()).collect();
        let mut last = next.0 - 1;
        let mut covered = 0;
        for (_, header) in crate::batch::iter_batches(&joined) {
            assert_eq!(header.base_offset, last + 1, "contiguous batches");
            assert!(matches!(
                crate::batch::check_batch_at(&joined[covered..], true),
                crate::batch::BatchCheck::Valid(_)
            ));
            covered += header.total_size();
            last = header.last_offset();
        }
        assert_eq!(covered, joined.len(), "whole batches only");
        next = Offset(last + 1);
    }
    assert!(stats(&pool).batches_served > 0);
}

#[test]
fn a_reader_waits_for_chunks_in_flight_and_reads_nothing_twice() {
    let dir = tempfile::tempdir().unwrap();
    let in_flight: InFlight = Rc::default();
    let fs = DeferredFs {
        in_flight: Some(in_flight.clone()),
    };
    let (log, pool) = open(fs, dir.path(), 1 << 20);
    fill(&log, 1500);
    let fetches = consume(&log, 10_000, Some(&in_flight));
    let after = stats(&pool);
    assert!(after.waits > 0, "{after:?}");
    assert!(after.batches_served > 300, "{after:?}");

    let dir_without = tempfile::tempdir().unwrap();
    let (plain, _) = open(DeferredFs::default(), dir_without.path(), 0);
    fill(&plain, 1500);
    assert_eq!(fetches, consume(&plain, 10_000, None));
}

/// Two logs of 800 records on one pool reading ahead in 4 KiB chunks with `config`.
fn two_logs(
    dir: &Path,
    config: ReadAheadConfig,
) -> (Vec<Log<DeferredFs>>, Rc<SegmentFilePool<DeferredFs>>) {
    let fs = DeferredFs::default();
    let pool = Rc::new(SegmentFilePool::new(fs.clone(), 16).with_read_ahead(config));
    let logs = (0..2)
        .map(|n| {
            let log = block_on(Log::open_with_file_pool(
                fs.clone(),
                dir.join(format!("t-{n}")),
                self::config(),
                Rc::new(BatchCache::new(0)),
                pool.clone(),
                true,
            ))
            .unwrap();
            fill(&log, 800);
            log
        })
        .collect();
    (logs, pool)
}

/// Reads `reads` fetches of 3,000 bytes from `from`; returns the next offset.
fn read_on(log: &Log<DeferredFs>, from: Offset, reads: usize) -> Offset {
    let end = log.log_end_offset();
    let mut next = from;
    for _ in 0..reads {
        let bytes = block_on(log.read(next, 3000, end, true)).unwrap();
        next = Offset(
            crate::batch::iter_batches(&bytes)
                .last()
                .unwrap()
                .1
                .last_offset()
                + 1,
        );
    }
    next
}

#[test]
fn the_budget_bounds_chunks() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, pool) = two_logs(
        dir.path(),
        ReadAheadConfig {
            budget_bytes: 4 * 4096,
            chunk_bytes: 4096,
            chunks_per_reader: 3,
            reclaim_idle: Duration::from_secs(3600),
        },
    );
    read_on(&logs[0], Offset(0), 2);
    assert_eq!(pool.read_ahead().used_bytes(), 3 * 4096);
    read_on(&logs[1], Offset(0), 2);
    assert!(
        pool.read_ahead().used_bytes() <= 4 * 4096,
        "never above the budget"
    );
    assert!(stats(&pool).refusals > 0);
    drop(logs);
    assert_eq!(
        pool.read_ahead().used_bytes(),
        0,
        "closed logs give their chunks back"
    );
}

#[test]
fn readers_share_the_budget_fairly() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, pool) = two_logs(
        dir.path(),
        ReadAheadConfig {
            budget_bytes: 8 * 4096,
            chunk_bytes: 4096,
            chunks_per_reader: 8,
            reclaim_idle: Duration::from_secs(3600),
        },
    );
    // Alone, the first reader takes its full depth: the whole budget.
    let first = read_on(&logs[0], Offset(0), 2);
    assert_eq!(pool.read_ahead().used_bytes(), 8 * 4096);
    // The second finds the budget spent, but counts from now on: the first's depth falls to half as it
    // reads on, and the second gets the room it leaves.
    let second = read_on(&logs[1], Offset(0), 2);
    read_on(&logs[0], first, 8);
    let before = stats(&pool);
    read_on(&logs[1], second, 3);
    let after = stats(&pool);
    assert!(after.chunks_started > before.chunks_started, "{after:?}");
    assert!(
        after.batches_served >= before.batches_served + 3,
        "{after:?}"
    );
    assert!(pool.read_ahead().used_bytes() <= 8 * 4096);
}

#[test]
fn idle_streams_give_their_chunks_up() {
    let dir = tempfile::tempdir().unwrap();
    let (logs, pool) = two_logs(
        dir.path(),
        ReadAheadConfig {
            budget_bytes: 1 << 20,
            chunk_bytes: 4096,
            chunks_per_reader: 3,
            reclaim_idle: Duration::ZERO, // every stream not reading this instant is idle
        },
    );
    read_on(&logs[0], Offset(0), 2);
    assert_eq!(pool.read_ahead().used_bytes(), 3 * 4096);
    // The second reader's read-ahead looks for idle streams first: the first reader's chunks go.
    read_on(&logs[1], Offset(0), 2);
    assert_eq!(pool.read_ahead().used_bytes(), 3 * 4096);
    // And the first, reading on, still reads correctly (from the file, then from new chunks).
    let next = read_on(&logs[0], Offset(0), 6);
    assert!(next.0 > 20);
}

#[test]
fn truncation_drops_the_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (log, pool) = open(DeferredFs::default(), dir.path(), 1 << 20);
    fill(&log, 1000);
    let end = log.log_end_offset();
    let first = block_on(log.read(Offset(0), 3000, end, true)).unwrap();
    let next = crate::batch::iter_batches(&first)
        .last()
        .unwrap()
        .1
        .last_offset()
        + 1;
    block_on(log.read(Offset(next), 3000, end, true)).unwrap();
    assert!(pool.read_ahead().used_bytes() > 0);
    block_on(log.truncate_to(Offset(next))).unwrap();
    assert_eq!(pool.read_ahead().used_bytes(), 0);
    // New data at the cut offset reads back as written, not as the old bytes.
    let batch = simple_batch(2, 77, 5);
    let info = block_on(log.append(Bytes::from(batch), LeaderEpoch(1), 0)).unwrap();
    let end = log.log_end_offset();
    let read = block_on(log.read(info.base_offset, 100_000, end, true)).unwrap();
    let header = BatchHeader::parse(&read);
    assert_eq!(header.base_offset, info.base_offset.0);
    assert_eq!(header.partition_leader_epoch, 1);
}

#[test]
fn two_readers_of_one_log_each_keep_their_stream() {
    let dir = tempfile::tempdir().unwrap();
    let (log, pool) = open(DeferredFs::default(), dir.path(), 1 << 20);
    fill(&log, 3000);
    let end = log.log_end_offset();
    // Reader A starts at the beginning, reader B in the middle; their fetches alternate.
    let mut next = [Offset(0), Offset(1500)];
    let mut fetched = [0usize; 2];
    for round in 0..20 {
        let reader = round % 2;
        let bytes = block_on(log.read(next[reader], 6000, end, true)).unwrap();
        let last = crate::batch::iter_batches(&bytes).last().unwrap().1;
        assert!(last.base_offset >= next[reader].0 || last.last_offset() >= next[reader].0);
        next[reader] = Offset(last.last_offset() + 1);
        fetched[reader] += bytes.len();
    }
    let after = stats(&pool);
    // Each reader's reads after its first two come from chunks: 16 of 20 reads' batches at least.
    assert!(after.batches_served >= 16, "{after:?}");
    assert!(after.chunks_started >= 8, "{after:?}");
    assert!(fetched.iter().all(|bytes| *bytes > 9 * 5000));
}
