//! Recovery after a clean stop: the active segment's tail is still checked (CRC and offset
//! continuity), so a damaged base offset or garbage after the last batch is cut, not trusted.

use crate::batch::testing::simple_batch;
use crate::batch::BatchHeader;
use crate::cache::BatchCache;
use crate::io::StdFileSystem;
use crate::log::{Log, LogConfig};
use crate::types::{LeaderEpoch, Offset};
use bytes::Bytes;
use futures_lite::future::block_on;
use proptest::prelude::*;
use std::path::Path;
use std::rc::Rc;

fn config(index_interval_bytes: u32) -> LogConfig {
    LogConfig {
        index_interval_bytes,
        ..Default::default()
    }
}

fn open(dir: &Path, config: LogConfig, clean: bool) -> Log<StdFileSystem> {
    block_on(Log::open(
        StdFileSystem,
        dir.to_path_buf(),
        config,
        Rc::new(BatchCache::new(0)),
        clean,
    ))
    .unwrap()
}

/// Writes `batches` batches of 3 records, closes cleanly; returns each batch's file position.
fn write_and_close(dir: &Path, config: LogConfig, batches: usize) -> Vec<u64> {
    let log = open(dir, config, false);
    let mut positions = Vec::new();
    let mut position = 0u64;
    for i in 0..batches {
        let batch = simple_batch(3, 50, 1_000 + i as i64);
        positions.push(position);
        position += batch.len() as u64;
        block_on(log.append(Bytes::from(batch), LeaderEpoch(0), 1_000)).unwrap();
    }
    block_on(log.close()).unwrap();
    positions
}

fn segment_path(dir: &Path) -> std::path::PathBuf {
    dir.join(format!("{:020}.log", 0))
}

fn patch(path: &Path, position: u64, bytes: &[u8]) {
    use std::os::unix::fs::FileExt;
    let file = std::fs::OpenOptions::new().write(true).open(path).unwrap();
    file.write_all_at(bytes, position).unwrap();
}

/// Every batch readable, contiguous from 0 to the log end; a new append lands right after.
fn check_contiguous(log: &Log<StdFileSystem>, expected_end: i64) {
    assert_eq!(log.log_end_offset(), Offset(expected_end));
    assert_eq!(log.durable_end_offset(), Offset(expected_end));
    let mut next = 0i64;
    while next < expected_end {
        let bytes = block_on(log.read(Offset(next), 1, Offset(expected_end), true)).unwrap();
        let header = BatchHeader::parse(&bytes);
        assert_eq!(header.base_offset, next);
        next = header.last_offset() + 1;
    }
    let info = block_on(log.append(
        Bytes::from(simple_batch(2, 5, 9_000)),
        LeaderEpoch(0),
        9_000,
    ))
    .unwrap();
    assert_eq!(info.base_offset, Offset(expected_end));
}

#[test]
fn corrupt_base_offset_of_the_last_batch_is_cut_after_a_clean_stop() {
    for index_interval_bytes in [4096, 100] {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let positions = write_and_close(&path, config(index_interval_bytes), 10);
        patch(
            &segment_path(&path),
            *positions.last().unwrap(),
            &1_100_000_000_000i64.to_be_bytes(),
        );
        let log = open(&path, config(index_interval_bytes), true);
        check_contiguous(&log, 27);
    }
}

#[test]
fn garbage_after_the_last_batch_is_cut_after_a_clean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    write_and_close(&path, config(4096), 10);
    let size = std::fs::metadata(segment_path(&path)).unwrap().len();
    patch(&segment_path(&path), size, &[0xab; 333]);
    let log = open(&path, config(4096), true);
    check_contiguous(&log, 30);
    assert_eq!(
        std::fs::metadata(segment_path(&path)).unwrap().len(),
        size + simple_batch(2, 5, 9_000).len() as u64
    );
}

#[test]
fn corrupt_base_offset_mid_segment_cuts_from_there_even_after_an_unclean_stop() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("t-0");
    let positions = write_and_close(&path, config(4096), 10);
    patch(&segment_path(&path), positions[4], &7i64.to_be_bytes());
    let log = open(&path, config(4096), false);
    check_contiguous(&log, 12);
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 32, ..ProptestConfig::default() })]

    /// Whatever is done to the tail after a clean stop (the last batch's base offset overwritten,
    /// or bytes appended), the reopened log is contiguous and keeps exactly the undamaged batches.
    #[test]
    fn clean_start_never_trusts_a_damaged_tail(
        batches in 1usize..20,
        new_base in any::<i64>(),
        garbage in proptest::collection::vec(any::<u8>(), 1..300),
        damage_base: bool,
        index_interval_bytes in prop::sample::select(vec![100u32, 4096]),
    ) {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("t-0");
        let positions = write_and_close(&path, config(index_interval_bytes), batches);
        let last_base = (batches as i64 - 1) * 3;
        let expected_end = if damage_base && new_base != last_base {
            patch(&segment_path(&path), positions[batches - 1], &new_base.to_be_bytes());
            last_base
        } else {
            let size = std::fs::metadata(segment_path(&path)).unwrap().len();
            patch(&segment_path(&path), size, &garbage);
            batches as i64 * 3
        };
        let log = open(&path, config(index_interval_bytes), true);
        prop_assert_eq!(log.log_end_offset().0, expected_end);
        check_contiguous(&log, expected_end);
    }
}
