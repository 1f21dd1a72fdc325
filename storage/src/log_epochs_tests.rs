//! The log's leader-epoch cache (`log_epochs.rs`): epochs assigned by appends and
//! `assign_epoch_start`, the checkpoint written once per epoch change and read back by a clean or
//! unclean reopen, truncation from the end and from the start, damaged and stale checkpoints.

use crate::batch::testing::simple_batch;
use crate::cache::BatchCache;
use crate::io::StdFileSystem;
use crate::log::{Log, LogConfig};
use crate::types::{LeaderEpoch, Offset};
use bytes::Bytes;
use futures_lite::future::block_on;
use std::path::Path;
use std::rc::Rc;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2000,
        index_interval_bytes: 100,
        file_delete_delay_ms: 0,
        ..Default::default()
    }
}

fn open(dir: &Path, clean: bool) -> Log<StdFileSystem> {
    let cache = Rc::new(BatchCache::new(1 << 20));
    block_on(Log::open(
        StdFileSystem,
        dir.to_path_buf(),
        config(),
        cache,
        clean,
    ))
    .unwrap()
}

/// Appends a batch of two records at `epoch`; returns its base offset.
fn append(log: &Log<StdFileSystem>, epoch: i32) -> i64 {
    let batch = Bytes::from(simple_batch(2, 100, 1_000));
    block_on(log.append(batch, LeaderEpoch(epoch), 1_000))
        .unwrap()
        .base_offset
        .0
}

fn entries(log: &Log<StdFileSystem>) -> Vec<(i32, i64)> {
    log.epoch_entries()
        .iter()
        .map(|(epoch, offset)| (epoch.0, offset.0))
        .collect()
}

fn checkpoint(dir: &Path) -> Option<String> {
    std::fs::read_to_string(dir.join("leader-epoch-checkpoint")).ok()
}

#[test]
fn appends_assign_epochs_and_the_checkpoint_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), true);
    assert_eq!(log.latest_epoch(), None);
    assert_eq!(checkpoint(dir.path()), None, "nothing to write yet");
    append(&log, 0);
    append(&log, 0);
    assert_eq!(append(&log, 2), 4);
    assert_eq!(checkpoint(dir.path()).unwrap(), "0\n2\n0 0\n2 4\n");
    // The same epoch again writes nothing (the file removed stays removed); an older one neither.
    std::fs::remove_file(dir.path().join("leader-epoch-checkpoint")).unwrap();
    append(&log, 2);
    append(&log, 1);
    assert_eq!(checkpoint(dir.path()), None);
    for _ in 0..10 {
        append(&log, 5);
    }
    assert!(log.segment_count() > 1);
    assert_eq!(entries(&log), [(0, 0), (2, 4), (5, 10)]);
    assert_eq!(checkpoint(dir.path()).unwrap(), "0\n3\n0 0\n2 4\n5 10\n");
    assert_eq!(log.latest_epoch(), Some(LeaderEpoch(5)));
    let mut log = log;
    for clean in [true, false] {
        if clean {
            block_on(log.close()).unwrap();
        }
        drop(log);
        log = open(dir.path(), clean);
        assert_eq!(entries(&log), [(0, 0), (2, 4), (5, 10)], "clean: {clean}");
    }
}

#[test]
fn assign_epoch_start_and_lookups() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), true);
    assert_eq!(log.end_offset_for_epoch(LeaderEpoch(0)), None);
    assert_eq!(log.epoch_for_offset(Offset(0)), None);
    append(&log, 1);
    append(&log, 1);
    // A new leader at epoch 3 starts at the log end; appends at epoch 3 then add nothing.
    block_on(log.assign_epoch_start(LeaderEpoch(3), log.log_end_offset())).unwrap();
    assert_eq!(checkpoint(dir.path()).unwrap(), "0\n2\n1 0\n3 4\n");
    block_on(log.assign_epoch_start(LeaderEpoch(3), Offset(9))).unwrap();
    block_on(log.assign_epoch_start(LeaderEpoch(2), Offset(9))).unwrap();
    append(&log, 3);
    assert_eq!(entries(&log), [(1, 0), (3, 4)]);
    assert_eq!(log.log_end_offset(), Offset(6));
    let end = |epoch| log.end_offset_for_epoch(LeaderEpoch(epoch));
    assert_eq!(end(3), Some((LeaderEpoch(3), Offset(6))));
    assert_eq!(end(2), Some((LeaderEpoch(1), Offset(4))));
    assert_eq!(end(1), Some((LeaderEpoch(1), Offset(4))));
    assert_eq!(end(0), Some((LeaderEpoch(0), Offset(0))));
    assert_eq!(end(4), None);
    assert_eq!(log.epoch_for_offset(Offset(3)), Some(LeaderEpoch(1)));
    assert_eq!(log.epoch_for_offset(Offset(4)), Some(LeaderEpoch(3)));
    // A newer epoch starting inside older ones removes them.
    block_on(log.assign_epoch_start(LeaderEpoch(4), Offset(2))).unwrap();
    assert_eq!(entries(&log), [(1, 0), (4, 2)]);
    assert_eq!(checkpoint(dir.path()).unwrap(), "0\n2\n1 0\n4 2\n");
}

#[test]
fn truncation_drops_entries_and_persists() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), true);
    append(&log, 0);
    append(&log, 1);
    append(&log, 1);
    append(&log, 2);
    assert_eq!(entries(&log), [(0, 0), (1, 2), (2, 6)]);
    block_on(log.truncate_to(Offset(5))).unwrap();
    assert_eq!(
        log.log_end_offset(),
        Offset(4),
        "the straddling batch goes whole"
    );
    assert_eq!(entries(&log), [(0, 0), (1, 2)]);
    assert_eq!(checkpoint(dir.path()).unwrap(), "0\n2\n0 0\n1 2\n");
    block_on(log.truncate_to(Offset(2))).unwrap();
    assert_eq!(entries(&log), [(0, 0)]);
    drop(log);
    let log = open(dir.path(), false);
    assert_eq!(entries(&log), [(0, 0)]);
    // Appending again at epoch 3 after the truncation.
    assert_eq!(append(&log, 3), 2);
    assert_eq!(entries(&log), [(0, 0), (3, 2)]);
}

#[test]
fn the_log_start_moves_the_first_entry() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), true);
    append(&log, 0);
    append(&log, 0);
    append(&log, 1);
    append(&log, 2);
    log.update_high_watermark(log.log_end_offset());
    block_on(log.delete_records(Offset(5))).unwrap();
    assert_eq!(entries(&log), [(1, 5), (2, 6)]);
    // The checkpoint follows at the next write, or the open redoes it.
    drop(log);
    let log = open(dir.path(), false);
    assert_eq!(log.log_start_offset(), Offset(5));
    assert_eq!(entries(&log), [(1, 5), (2, 6)]);
    assert_eq!(checkpoint(dir.path()).unwrap(), "0\n2\n1 5\n2 6\n");
}

#[test]
fn damaged_or_stale_checkpoints() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), true);
    append(&log, 0);
    append(&log, 1);
    block_on(log.close()).unwrap();
    drop(log);
    // Entries starting at or past the recovered log end (4) are dropped, and the file rewritten.
    std::fs::write(
        dir.path().join("leader-epoch-checkpoint"),
        "0\n4\n0 0\n1 2\n2 4\n3 9\n",
    )
    .unwrap();
    let log = open(dir.path(), true);
    assert_eq!(entries(&log), [(0, 0), (1, 2)]);
    assert_eq!(checkpoint(dir.path()).unwrap(), "0\n2\n0 0\n1 2\n");
    drop(log);
    // A file that does not parse: an empty cache; the next new epoch writes a good file.
    std::fs::write(dir.path().join("leader-epoch-checkpoint"), "0\n2\n0 0\n").unwrap();
    let log = open(dir.path(), false);
    assert_eq!(entries(&log), []);
    assert_eq!(log.end_offset_for_epoch(LeaderEpoch(1)), None);
    append(&log, 1);
    assert_eq!(entries(&log), [(1, 4)]);
    assert_eq!(checkpoint(dir.path()).unwrap(), "0\n1\n1 4\n");
}

/// An epoch a leader started at its log end and never wrote in leaves the cache when the log is
/// truncated to that end (nothing cut): else a follower keeps answering that epoch's divergence.
#[test]
fn truncating_to_the_log_end_drops_an_epoch_never_written_in() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), true);
    append(&log, 6);
    block_on(log.assign_epoch_start(LeaderEpoch(7), log.log_end_offset())).unwrap();
    assert_eq!(entries(&log), [(6, 0), (7, 2)]);
    block_on(log.truncate_to(log.log_end_offset())).unwrap();
    assert_eq!(entries(&log), [(6, 0)]);
    assert_eq!(log.log_end_offset(), Offset(2));
    assert_eq!(checkpoint(dir.path()).unwrap(), "0\n1\n6 0\n");
}
