//! Reads in flight while the cleaner swaps segments: on a file layer whose every open and read
//! yields to the executor, a reader scanning the log again and again runs interleaved with a
//! cleaner pass, and every scan still finds every key's latest value, at increasing offsets.

use super::{Cleaner, NoPause};
use crate::batch::testing::{build_batch, BatchSpec};
use crate::cache::BatchCache;
use crate::config::CleanupPolicy;
use crate::io::{FileKind, FileSystem, StdFile, StdFileSystem, StorageFile};
use crate::log::{Log, LogConfig};
use crate::types::{LeaderEpoch, Offset};
use bytes::Bytes;
use futures_lite::future::{block_on, yield_now, zip};
use std::cell::Cell;
use std::io;
use std::path::Path;
use std::rc::Rc;

/// `StdFileSystem`, yielding once before every open and read.
#[derive(Clone, Copy, Default)]
struct YieldingFs;

struct YieldingFile(StdFile);

impl FileSystem for YieldingFs {
    type File = YieldingFile;
    async fn open(&self, path: &Path, kind: FileKind, create: bool) -> io::Result<YieldingFile> {
        yield_now().await;
        Ok(YieldingFile(StdFileSystem.open(path, kind, create).await?))
    }
}

impl StorageFile for YieldingFile {
    fn write_alignment(&self) -> usize {
        1
    }
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        yield_now().await;
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

/// A batch of one record: key `key`, a 10-byte value, at sequence-free offset 0.
fn keyed(key: u8) -> Vec<u8> {
    // `build_batch` writes null keys: patch in a one-byte key by rebuilding the record.
    let mut batch = build_batch(&BatchSpec::default());
    let record_start = crate::batch::HEADER_SIZE;
    // record: length, attributes, timestampDelta, offsetDelta, keyLength(-1 = 0x01), ...
    assert_eq!(batch[record_start + 4], 0x01, "null key where expected");
    batch[record_start + 4] = 0x02; // key length 1
    batch.insert(record_start + 5, key);
    batch[record_start] += 2; // record length + 1 (zigzag)
    let length = (batch.len() - crate::batch::LOG_OVERHEAD) as i32;
    batch[8..12].copy_from_slice(&length.to_be_bytes());
    let crc = crate::batch::compute_crc(&batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

#[test]
fn reads_during_a_swap_never_fail_or_lose_latest_values() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        segment_bytes: 500,
        index_interval_bytes: 100,
        cleanup_policy: CleanupPolicy::COMPACT,
        min_cleanable_dirty_ratio: 0.01,
        ..Default::default()
    };
    let cache = Rc::new(BatchCache::new(0));
    let log = block_on(Log::open(
        YieldingFs,
        dir.path().into(),
        config,
        cache,
        false,
    ))
    .unwrap();
    for update in 0..200u8 {
        block_on(log.append(Bytes::from(keyed(update % 7)), LeaderEpoch(0), 1_000)).unwrap();
    }
    log.update_high_watermark(log.durable_end_offset());
    let end = log.durable_end_offset();
    let done = Cell::new(false);
    let scans = Cell::new(0);
    let cleaning = async {
        let stats = log
            .clean(&mut Cleaner::new(1 << 20, f64::INFINITY), 2_000, &NoPause)
            .await;
        done.set(true);
        stats.unwrap()
    };
    let reading = async {
        while !done.get() || scans.get() < 2 {
            let mut latest = [None; 7];
            let mut offset = Offset(0);
            while offset < end {
                let bytes = log.read(offset, 200, end, true).await.unwrap();
                assert!(!bytes.is_empty(), "a read at {offset} found nothing");
                for (position, header) in crate::batch::iter_batches(&bytes) {
                    let batch = &bytes[position..position + header.total_size()];
                    assert_eq!(crate::batch::compute_crc(batch), header.crc);
                    assert!(header.last_offset() >= offset.0, "offsets go forward");
                    crate::records::for_each_record(&header, batch, |record| {
                        let key = record.key.unwrap()[0] as usize;
                        latest[key] = Some(header.base_offset + record.offset_delta as i64);
                    })
                    .unwrap();
                    offset = Offset(header.last_offset() + 1);
                }
            }
            // The last update of key k is at the largest offset o < 200 with o % 7 == k.
            for (key, found) in latest.iter().enumerate() {
                let last = (0..200).rev().find(|offset| offset % 7 == key as i64);
                assert_eq!(*found, last, "key {key}");
            }
            scans.set(scans.get() + 1);
            yield_now().await;
        }
    };
    let (stats, ()) = block_on(zip(cleaning, reading));
    assert!(stats.segments_rewritten > 3, "{stats:?}");
    assert!(scans.get() >= 2);
}
