//! Cleaner tests on real files: latest value per key, offsets kept, tombstones, a full offset
//! map, compressed batches, compaction lags, keyless records, producer state, and a crash at
//! every file operation of a pass.

use super::{compress, Cleaner, NoPause, CHECKPOINT_FILE};
use crate::batch::testing::varint;
use crate::batch::{compute_crc, BatchHeader, HEADER_SIZE, LOG_OVERHEAD, MAGIC};
use crate::cache::BatchCache;
use crate::config::CleanupPolicy;
use crate::error::StorageError;
use crate::io::{FileKind, FileSystem, StdFile, StdFileSystem, StorageFile};
use crate::log::{Log, LogConfig};
use crate::types::{LeaderEpoch, Offset};
use bytes::Bytes;
use futures_lite::future::block_on;
use std::cell::Cell;
use std::collections::BTreeMap;
use std::io;
use std::path::Path;
use std::rc::Rc;

fn bytes_field(out: &mut Vec<u8>, value: Option<&str>) {
    match value {
        None => varint(out, -1),
        Some(value) => {
            varint(out, value.len() as i64);
            out.extend_from_slice(value.as_bytes());
        }
    }
}

/// A batch of `(key, value)` records (None: null) at `timestamp`, compressed with `codec`, of
/// producer `producer` (-1: none; sequence `sequence`).
fn keyed_batch(
    records: &[(Option<&str>, Option<&str>)],
    timestamp: i64,
    codec: i16,
    producer: (i64, i32),
) -> Vec<u8> {
    let mut body = Vec::new();
    for (index, (key, value)) in records.iter().enumerate() {
        let mut record = vec![0u8];
        varint(&mut record, 0);
        varint(&mut record, index as i64);
        bytes_field(&mut record, *key);
        bytes_field(&mut record, *value);
        varint(&mut record, 0);
        varint(&mut body, record.len() as i64);
        body.extend_from_slice(&record);
    }
    let body = compress(codec, body).unwrap();
    let count = records.len() as i32;
    let mut batch = Vec::new();
    batch.extend_from_slice(&0i64.to_be_bytes());
    batch.extend_from_slice(&((HEADER_SIZE - LOG_OVERHEAD + body.len()) as i32).to_be_bytes());
    batch.extend_from_slice(&(-1i32).to_be_bytes());
    batch.push(MAGIC as u8);
    batch.extend_from_slice(&0u32.to_be_bytes());
    batch.extend_from_slice(&codec.to_be_bytes());
    batch.extend_from_slice(&(count - 1).to_be_bytes());
    batch.extend_from_slice(&timestamp.to_be_bytes());
    batch.extend_from_slice(&timestamp.to_be_bytes());
    batch.extend_from_slice(&producer.0.to_be_bytes());
    batch.extend_from_slice(&(if producer.0 >= 0 { 0i16 } else { -1 }).to_be_bytes());
    batch.extend_from_slice(&(if producer.0 >= 0 { producer.1 } else { -1 }).to_be_bytes());
    batch.extend_from_slice(&count.to_be_bytes());
    batch.extend_from_slice(&body);
    let crc = compute_crc(&batch);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
    batch
}

fn compact_config() -> LogConfig {
    LogConfig {
        segment_bytes: 600,
        index_interval_bytes: 100,
        cleanup_policy: CleanupPolicy::COMPACT,
        min_cleanable_dirty_ratio: 0.01,
        delete_retention_ms: 1_000,
        ..Default::default()
    }
}

fn open<F: FileSystem>(fs: F, dir: &Path, config: LogConfig, clean: bool) -> Log<F> {
    let cache = Rc::new(BatchCache::new(1 << 20));
    block_on(Log::open(fs, dir.to_path_buf(), config, cache, clean)).unwrap()
}

/// Appends and commits (single node: the high watermark follows the written end).
fn append<F: FileSystem>(log: &Log<F>, batch: Vec<u8>, now: i64) -> Result<i64, StorageError> {
    let info = block_on(log.append(Bytes::from(batch), LeaderEpoch(0), now))?;
    log.update_high_watermark(log.durable_end_offset());
    Ok(info.base_offset.0)
}

/// A stored record: offset, key, value.
type Stored = (i64, Option<String>, Option<String>);

/// Every record of the log, with the headers of its batches.
fn read_records<F: FileSystem>(log: &Log<F>) -> (Vec<Stored>, Vec<BatchHeader>) {
    let end = log.durable_end_offset();
    let bytes = block_on(log.read(log.log_start_offset(), usize::MAX >> 1, end, true)).unwrap();
    let mut records = Vec::new();
    let mut headers = Vec::new();
    for (position, header) in crate::batch::iter_batches(&bytes) {
        let batch = &bytes[position..position + header.total_size()];
        assert_eq!(
            compute_crc(batch),
            header.crc,
            "CRC of the batch at {}",
            header.base_offset
        );
        crate::records::for_each_record(&header, batch, |record| {
            let text = |bytes: Option<&[u8]>| bytes.map(|b| String::from_utf8(b.to_vec()).unwrap());
            let value_start = record.bytes.len();
            let _ = value_start;
            records.push((
                header.base_offset + record.offset_delta as i64,
                text(record.key),
                None,
            ));
        })
        .unwrap();
        // Values: decode with kafka-protocol (an independent reader of what we wrote).
        let mut whole = Bytes::copy_from_slice(batch);
        let decoded = kafka_protocol::records::RecordBatchDecoder::decode(&mut whole).unwrap();
        let first = records.len() - decoded.records.len();
        for (slot, record) in records[first..].iter_mut().zip(&decoded.records) {
            assert_eq!(slot.0, record.offset);
            slot.2 = record
                .value
                .as_ref()
                .map(|v| String::from_utf8(v.to_vec()).unwrap());
        }
        headers.push(header);
    }
    let offsets: Vec<i64> = records.iter().map(|record| record.0).collect();
    assert!(
        offsets.windows(2).all(|pair| pair[0] < pair[1]),
        "offsets increase: {offsets:?}"
    );
    (records, headers)
}

/// key -> (offset, value) of the last record per key.
fn latest(records: &[Stored]) -> BTreeMap<String, (i64, Option<String>)> {
    let mut latest = BTreeMap::new();
    for (offset, key, value) in records {
        latest.insert(key.clone().unwrap(), (*offset, value.clone()));
    }
    latest
}

fn clean<F: FileSystem>(log: &Log<F>, cleaner: &mut Cleaner, now: i64) -> super::CleanStats {
    block_on(log.clean(cleaner, now, &NoPause)).unwrap()
}

/// 300 updates of 5 keys, one record per batch.
fn fill<F: FileSystem>(log: &Log<F>, updates: i64, keys: i64, timestamp: i64) {
    for update in 0..updates {
        let key = format!("key-{}", update % keys);
        let value = format!("value-{update}");
        append(
            log,
            keyed_batch(&[(Some(&key), Some(&value))], timestamp, 0, (-1, 0)),
            timestamp,
        )
        .unwrap();
    }
}

#[test]
fn keeps_the_latest_value_per_key_and_the_offsets() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(StdFileSystem, dir.path(), compact_config(), false);
    fill(&log, 300, 5, 1_000);
    let (before, _) = read_records(&log);
    let expected = latest(&before);
    let cleanable = block_on(log.cleanable(2_000)).unwrap();
    assert!(
        cleanable.should_clean && cleanable.dirty_ratio > 0.9,
        "{cleanable:?}"
    );
    let mut cleaner = Cleaner::new(1 << 20, f64::INFINITY);
    let stats = clean(&log, &mut cleaner, 2_000);
    let active_base = log.segment_bases().last().unwrap().0;
    assert_eq!(stats.cleaned_up_to, Some(Offset(active_base)));
    assert!(stats.records_removed > 200, "{stats:?}");
    let (after, _) = read_records(&log);
    assert_eq!(latest(&after), expected);
    let cleaned: Vec<&Stored> = after
        .iter()
        .filter(|record| record.0 < active_base)
        .collect();
    assert!(
        cleaned.len() <= 5,
        "one record per key below the active segment: {cleaned:?}"
    );
    for record in &after {
        assert!(
            before.contains(record),
            "{record:?} kept as it was, at its offset"
        );
    }
    assert!(dir.path().join(CHECKPOINT_FILE).exists());
    // Nothing dirty left; a second pass finds nothing.
    assert!(block_on(log.cleanable(2_000)).is_none());
    // Survives a reopen, clean or not; appends go on at the same offsets.
    let end = log.log_end_offset();
    block_on(log.close()).unwrap();
    for clean_shutdown in [true, false] {
        let log = open(StdFileSystem, dir.path(), compact_config(), clean_shutdown);
        assert_eq!(log.log_end_offset(), end);
        assert_eq!(read_records(&log).0, after);
        // Random access to every offset (gaps included) lands on the batch at or after it.
        for offset in 0..end.0 {
            let bytes = block_on(log.read(Offset(offset), 1, end, true)).unwrap();
            let header = BatchHeader::parse(&bytes);
            assert!(header.last_offset() >= offset, "read at {offset}");
        }
        block_on(log.close()).unwrap();
    }
    let log = open(StdFileSystem, dir.path(), compact_config(), true);
    assert_eq!(
        append(
            &log,
            keyed_batch(&[(Some("key-0"), Some("new"))], 3_000, 0, (-1, 0)),
            3_000
        )
        .unwrap(),
        end.0
    );
}

#[test]
fn tombstones_stay_for_delete_retention_then_go() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(StdFileSystem, dir.path(), compact_config(), false);
    fill(&log, 50, 5, 10_000);
    append(
        &log,
        keyed_batch(&[(Some("key-1"), None)], 10_000, 0, (-1, 0)),
        10_000,
    )
    .unwrap();
    fill(&log, 30, 3, 10_000); // keys 0..2 again (key-1 too: the tombstone is superseded)
    append(
        &log,
        keyed_batch(&[(Some("key-4"), None)], 10_000, 0, (-1, 0)),
        10_000,
    )
    .unwrap();
    fill(&log, 40, 2, 10_000); // roll the tombstone out of the active segment
    let mut cleaner = Cleaner::new(1 << 20, f64::INFINITY);
    // Within delete.retention.ms (1 s) of the tombstone: it stays, the values before it go.
    clean(&log, &mut cleaner, 10_500);
    let (records, _) = read_records(&log);
    let key_4: Vec<&Stored> = records
        .iter()
        .filter(|r| r.1.as_deref() == Some("key-4"))
        .collect();
    assert_eq!(key_4.len(), 1);
    assert_eq!(key_4[0].2, None, "the tombstone is the only key-4 record");
    // Later, once the log is dirty again: the tombstone goes too; key-1's tombstone went with
    // the older values.
    fill(&log, 40, 2, 10_000);
    let stats = clean(&log, &mut cleaner, 11_001);
    let (records, _) = read_records(&log);
    assert!(
        records.iter().all(|r| r.1.as_deref() != Some("key-4")),
        "{stats:?}"
    );
    assert!(records.iter().all(|r| r.2.is_some()), "no tombstone left");
    assert_eq!(latest(&records)["key-1"].1.as_deref(), Some("value-39"));
}

#[test]
fn a_full_offset_map_cleans_up_to_what_it_indexed() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(StdFileSystem, dir.path(), compact_config(), false);
    fill(&log, 200, 40, 1_000);
    let (before, _) = read_records(&log);
    let expected = latest(&before);
    // 16 slots: 14 keys fit, the log has 40.
    let mut cleaner = Cleaner::new(16 * super::SLOT_BYTES, f64::INFINITY);
    let stats = clean(&log, &mut cleaner, 2_000);
    assert!(stats.map_full);
    let first_end = stats.cleaned_up_to.unwrap();
    assert!(first_end.0 > 0 && first_end.0 <= 14, "{stats:?}");
    assert_eq!(latest(&read_records(&log).0), expected);
    // Later passes go on from the checkpoint, and each keeps every key's latest value.
    let mut passes = 1;
    while let Some(cleanable) = block_on(log.cleanable(2_000)) {
        assert!(cleanable.first_dirty_offset >= first_end);
        clean(&log, &mut cleaner, 2_000);
        assert_eq!(latest(&read_records(&log).0), expected);
        passes += 1;
        assert!(passes < 100);
    }
    assert!(passes > 5);
}

#[test]
fn compressed_batches_are_filtered_and_recompressed() {
    for codec in 1..=4i16 {
        let dir = tempfile::tempdir().unwrap();
        let config = LogConfig {
            segment_bytes: 400,
            ..compact_config()
        };
        let log = open(StdFileSystem, dir.path(), config, false);
        for round in 0..12 {
            let values: Vec<String> = (0..4)
                .map(|key| format!("round-{round}-key-{key}"))
                .collect();
            let keys = ["a", "b", "c", "d"];
            let mut records: Vec<(Option<&str>, Option<&str>)> = keys
                .iter()
                .zip(&values)
                .map(|(k, v)| (Some(*k), Some(v.as_str())))
                .collect();
            if round % 3 == 0 {
                records.truncate(2); // keys a and b change more often
            }
            append(&log, keyed_batch(&records, 1_000, codec, (-1, 0)), 1_000).unwrap();
        }
        let (before, _) = read_records(&log);
        let mut cleaner = Cleaner::new(1 << 20, f64::INFINITY);
        let stats = clean(&log, &mut cleaner, 2_000);
        assert!(stats.records_removed > 0, "codec {codec}: {stats:?}");
        let (after, headers) = read_records(&log);
        assert_eq!(latest(&after), latest(&before), "codec {codec}");
        assert!(headers
            .iter()
            .all(|header| header.compression() == codec || header.records_count == 0));
        assert!(after.len() < before.len());
    }
}

#[test]
fn min_compaction_lag_keeps_recent_segments_dirty() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        min_compaction_lag_ms: 5_000,
        ..compact_config()
    };
    let log = open(StdFileSystem, dir.path(), config, false);
    fill(&log, 100, 5, 1_000);
    fill(&log, 100, 5, 9_000);
    let mut cleaner = Cleaner::new(1 << 20, f64::INFINITY);
    // At 10 s only the segments whose records are older than 5 s are cleanable.
    let cleanable = block_on(log.cleanable(10_000)).unwrap();
    let stats = clean(&log, &mut cleaner, 10_000);
    let end = stats.cleaned_up_to.unwrap();
    assert_eq!(end, cleanable.first_uncleanable_offset);
    assert!(end.0 <= 100 && end.0 > 50, "{stats:?}");
    let (records, _) = read_records(&log);
    assert!(records.iter().filter(|r| r.0 >= end.0).count() as i64 >= 200 - end.0 - 1);
    // Later everything closed is.
    let stats = clean(&log, &mut cleaner, 20_000);
    assert_eq!(
        stats.cleaned_up_to,
        Some(*log.segment_bases().last().unwrap())
    );
}

#[test]
fn dirty_ratio_and_max_compaction_lag_decide() {
    let dir = tempfile::tempdir().unwrap();
    let config = LogConfig {
        min_cleanable_dirty_ratio: 0.9,
        ..compact_config()
    };
    let log = open(StdFileSystem, dir.path(), config.clone(), false);
    fill(&log, 100, 50, 1_000);
    let mut cleaner = Cleaner::new(1 << 20, f64::INFINITY);
    clean(&log, &mut cleaner, 2_000);
    fill(&log, 30, 50, 1_000);
    let cleanable = block_on(log.cleanable(2_000)).unwrap();
    assert!(
        cleanable.dirty_ratio < 0.9 && !cleanable.should_clean,
        "{cleanable:?}"
    );
    log.set_config(LogConfig {
        max_compaction_lag_ms: 500,
        ..config.clone()
    });
    let cleanable = block_on(log.cleanable(2_000)).unwrap();
    assert!(cleanable.past_max_compaction_lag && cleanable.should_clean);
    log.set_config(LogConfig {
        cleanup_policy: CleanupPolicy::DELETE,
        ..config
    });
    assert!(
        block_on(log.cleanable(2_000)).is_none(),
        "delete policy: never cleaned"
    );
}

#[test]
fn keyless_records_are_refused_by_a_compacted_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(StdFileSystem, dir.path(), compact_config(), false);
    let keyless = keyed_batch(
        &[(Some("k"), Some("v")), (None, Some("v"))],
        1_000,
        0,
        (-1, 0),
    );
    let error = append(&log, keyless.clone(), 1_000).unwrap_err();
    assert!(
        matches!(&error, StorageError::RecordsWithoutKey { record_indexes } if record_indexes == &[1]),
        "{error}"
    );
    assert_eq!(error.error_code(), 87);
    for codec in 1..=4 {
        let compressed = keyed_batch(&[(None, Some("v"))], 1_000, codec, (-1, 0));
        assert!(matches!(
            append(&log, compressed, 1_000),
            Err(StorageError::RecordsWithoutKey { .. })
        ));
    }
    assert_eq!(log.log_end_offset(), Offset(0));
    log.set_config(LogConfig {
        cleanup_policy: CleanupPolicy::DELETE,
        ..compact_config()
    });
    assert_eq!(append(&log, keyless, 1_000).unwrap(), 0);
}

#[test]
fn a_producers_last_batch_stays_as_an_empty_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(StdFileSystem, dir.path(), compact_config(), false);
    // Producer 9 writes key x twice; others overwrite x afterwards.
    append(
        &log,
        keyed_batch(&[(Some("x"), Some("p9-a"))], 1_000, 0, (9, 0)),
        1_000,
    )
    .unwrap();
    let last = append(
        &log,
        keyed_batch(&[(Some("x"), Some("p9-b"))], 1_000, 0, (9, 1)),
        1_000,
    )
    .unwrap();
    for update in 0..60 {
        let value = format!("other-{update}");
        append(
            &log,
            keyed_batch(&[(Some("x"), Some(&value))], 1_000, 0, (-1, 0)),
            1_000,
        )
        .unwrap();
    }
    let mut cleaner = Cleaner::new(1 << 20, f64::INFINITY);
    clean(&log, &mut cleaner, 2_000);
    let (_, headers) = read_records(&log);
    let kept: Vec<&BatchHeader> = headers
        .iter()
        .filter(|header| header.producer_id == 9)
        .collect();
    assert_eq!(kept.len(), 1, "only the producer's last batch: {kept:?}");
    assert_eq!(
        (
            kept[0].base_offset,
            kept[0].records_count,
            kept[0].base_sequence
        ),
        (last, 0, 1)
    );
    // The producer state rebuilt from the log (no snapshot) still knows sequence 1.
    block_on(log.close()).unwrap();
    for entry in std::fs::read_dir(dir.path()).unwrap() {
        let path = entry.unwrap().path();
        if path
            .extension()
            .is_some_and(|extension| extension == "snapshot")
        {
            std::fs::remove_file(path).unwrap();
        }
    }
    let log = open(StdFileSystem, dir.path(), compact_config(), false);
    assert_eq!(log.producer_entry(9).unwrap().last_seq(), Some(1));
}

/// A file system that fails every operation from the `crash_at`-th one on (counting from when it
/// is armed): a process killed at that point.
#[derive(Clone, Default)]
struct CrashFs {
    operations: Rc<Cell<u64>>,
    crash_at: Rc<Cell<Option<u64>>>,
}

impl CrashFs {
    fn step(&self) -> io::Result<()> {
        let Some(crash_at) = self.crash_at.get() else {
            return Ok(());
        };
        let operation = self.operations.get();
        self.operations.set(operation + 1);
        if operation >= crash_at {
            return Err(io::Error::other("crashed"));
        }
        Ok(())
    }
}

struct CrashFile {
    inner: StdFile,
    fs: CrashFs,
}

impl FileSystem for CrashFs {
    type File = CrashFile;
    async fn open(&self, path: &Path, kind: FileKind, create: bool) -> io::Result<CrashFile> {
        self.step()?;
        Ok(CrashFile {
            inner: StdFileSystem.open(path, kind, create).await?,
            fs: self.clone(),
        })
    }
    async fn remove_file(&self, path: &Path) -> io::Result<()> {
        self.step()?;
        StdFileSystem.remove_file(path).await
    }
    async fn rename(&self, from: &Path, to: &Path) -> io::Result<()> {
        self.step()?;
        StdFileSystem.rename(from, to).await
    }
}

impl StorageFile for CrashFile {
    fn write_alignment(&self) -> usize {
        1
    }
    async fn read_at(&self, pos: u64, len: usize) -> io::Result<Bytes> {
        self.inner.read_at(pos, len).await
    }
    async fn write_parts_at(&self, pos: u64, parts: &[&[u8]], len: usize) -> io::Result<()> {
        self.fs.step()?;
        self.inner.write_parts_at(pos, parts, len).await
    }
    async fn sync_data(&self) -> io::Result<()> {
        self.fs.step()?;
        self.inner.sync_data().await
    }
    async fn truncate(&self, len: u64) -> io::Result<()> {
        self.fs.step()?;
        self.inner.truncate(len).await
    }
    async fn size(&self) -> io::Result<u64> {
        self.inner.size().await
    }
}

/// The segment files of `dir`, by name.
fn segment_files(dir: &Path) -> BTreeMap<String, Vec<u8>> {
    std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().path())
        .filter(|path| path.extension().is_some_and(|extension| extension == "log"))
        .map(|path| {
            (
                path.file_name().unwrap().to_string_lossy().into_owned(),
                std::fs::read(&path).unwrap(),
            )
        })
        .collect()
}

#[test]
fn a_crash_at_any_step_leaves_the_old_or_the_new_segment() {
    // The reference: the same log cleaned without a crash.
    let reference = tempfile::tempdir().unwrap();
    let write = |dir: &Path, fs: CrashFs| {
        let log = open(fs, dir, compact_config(), false);
        fill(&log, 40, 4, 1_000);
        log
    };
    let log = write(reference.path(), CrashFs::default());
    let old_files = segment_files(reference.path());
    let (old_records, _) = read_records(&log);
    let expected = latest(&old_records);
    let mut cleaner = Cleaner::new(1 << 20, f64::INFINITY);
    clean(&log, &mut cleaner, 2_000);
    let new_files = segment_files(reference.path());
    assert!(
        old_files != new_files,
        "the reference clean changed segments"
    );
    drop(log);
    let mut crash_at = 0;
    loop {
        let dir = tempfile::tempdir().unwrap();
        let fs = CrashFs::default();
        let log = write(dir.path(), fs.clone());
        fs.crash_at.set(Some(crash_at));
        let result =
            block_on(log.clean(&mut Cleaner::new(1 << 20, f64::INFINITY), 2_000, &NoPause));
        drop(log);
        // Restart (kill -9: no clean shutdown).
        let log = open(StdFileSystem, dir.path(), compact_config(), false);
        let files = segment_files(dir.path());
        for (name, contents) in &files {
            assert!(
                old_files.get(name) == Some(contents) || new_files.get(name) == Some(contents),
                "crash at operation {crash_at}: {name} is neither the old nor the cleaned segment"
            );
        }
        let leftovers: Vec<String> = std::fs::read_dir(dir.path())
            .unwrap()
            .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|name| name.ends_with(".cleaned") || name.ends_with(".swap"))
            .collect();
        assert!(leftovers.is_empty(), "crash at {crash_at}: {leftovers:?}");
        let (records, _) = read_records(&log);
        assert_eq!(latest(&records), expected, "crash at operation {crash_at}");
        // The log can be cleaned to the end after the restart.
        clean(&log, &mut Cleaner::new(1 << 20, f64::INFINITY), 2_000);
        assert_eq!(segment_files(dir.path()), new_files, "crash at {crash_at}");
        if result.is_ok() {
            break;
        }
        crash_at += 1;
    }
    assert!(crash_at > 20, "every step was crashed: {crash_at}");
}
