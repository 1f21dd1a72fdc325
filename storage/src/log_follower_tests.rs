//! Follower appends (`log_follower.rs`): a follower fed a leader's batches (cut at arbitrary byte
//! positions, as fetch answers are) holds the same bytes, offsets, leader epochs, aborted
//! transactions and last stable offset, before and after a clean or unclean reopen; misplaced
//! batches are refused whole; the leader's limits are not applied again; the high watermark reset.

use crate::batch::testing::{build_batch, simple_batch, BatchSpec};
use crate::batch::BatchHeader;
use crate::cache::BatchCache;
use crate::config::CleanupPolicy;
use crate::error::StorageError;
use crate::io::StdFileSystem;
use crate::log::{Log, LogConfig};
use crate::txn::TxnMarker;
use crate::types::{LeaderEpoch, Offset};
use bytes::Bytes;
use futures_lite::future::block_on;
use std::path::Path;
use std::rc::Rc;

pub(crate) fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2000,
        index_interval_bytes: 100,
        ..Default::default()
    }
}

pub(crate) fn open(dir: &Path, config: LogConfig, clean: bool) -> Log<StdFileSystem> {
    let cache = Rc::new(BatchCache::new(1 << 20));
    block_on(Log::open(
        StdFileSystem,
        dir.to_path_buf(),
        config,
        cache,
        clean,
    ))
    .unwrap()
}

pub(crate) fn append(log: &Log<StdFileSystem>, batch: Vec<u8>, epoch: i32) -> i64 {
    block_on(log.append(Bytes::from(batch), LeaderEpoch(epoch), 1_000))
        .unwrap()
        .base_offset
        .0
}

fn txn_batch(producer_id: i64, sequence: i32, records: usize) -> Vec<u8> {
    build_batch(&BatchSpec {
        producer_id,
        producer_epoch: 0,
        base_sequence: sequence,
        transactional: true,
        timestamp_deltas: vec![0; records],
        ..Default::default()
    })
}

fn marker(log: &Log<StdFileSystem>, producer_id: i64, commit: bool, epoch: i32) {
    let marker = TxnMarker {
        producer_id,
        producer_epoch: 0,
        coordinator_epoch: 0,
        commit,
    };
    block_on(log.append_marker(marker, LeaderEpoch(epoch), 1_000)).unwrap();
}

/// Every batch of `log` from its start, as the reads return them, concatenated.
pub(crate) fn read_all(log: &Log<StdFileSystem>) -> Vec<u8> {
    let end = log.durable_end_offset();
    let mut from = log.log_start_offset();
    let mut bytes = Vec::new();
    while from < end {
        let read = block_on(log.read(from, 700, end, true)).unwrap();
        let last = crate::batch::iter_batches(&read).last().unwrap().1;
        from = Offset(last.last_offset() + 1);
        bytes.extend_from_slice(&read);
    }
    bytes
}

/// The whole batches of `bytes`, each as its own buffer.
fn batches(bytes: &[u8]) -> Vec<Vec<u8>> {
    crate::batch::iter_batches(bytes)
        .map(|(position, header)| bytes[position..position + header.total_size()].to_vec())
        .collect()
}

/// A leader log with three epochs, an aborted, a committed and an open transaction, and several
/// segments.
pub(crate) fn leader(dir: &Path) -> Log<StdFileSystem> {
    let log = open(dir, config(), true);
    append(&log, simple_batch(3, 20, 1_000), 0);
    append(&log, simple_batch(3, 20, 1_001), 0);
    append(&log, txn_batch(10, 0, 2), 1);
    append(&log, simple_batch(1, 20, 1_002), 1);
    append(&log, txn_batch(11, 0, 2), 1);
    marker(&log, 10, false, 1);
    marker(&log, 11, true, 1);
    for index in 0..12 {
        append(&log, simple_batch(2, 100, 1_003 + index), 3);
    }
    append(&log, txn_batch(12, 0, 1), 3);
    append(&log, simple_batch(1, 20, 1_100), 3);
    log
}

/// Feeds `bytes` to `follower` in fetch answers of at most `chunk` bytes cut anywhere.
pub(crate) fn replicate(follower: &Log<StdFileSystem>, bytes: &[u8], chunk: usize) {
    let mut position = 0;
    while position < bytes.len() {
        let end = (position + chunk).min(bytes.len());
        let answer = Bytes::copy_from_slice(&bytes[position..end]);
        let info = block_on(follower.append_as_follower(answer)).unwrap();
        assert!(info.batch_count > 0, "no progress at {position}");
        position += info.byte_count;
    }
}

fn assert_same(leader: &Log<StdFileSystem>, follower: &Log<StdFileSystem>, context: &str) {
    assert_eq!(read_all(follower), read_all(leader), "{context}");
    assert_eq!(
        follower.log_end_offset(),
        leader.log_end_offset(),
        "{context}"
    );
    assert_eq!(
        follower.epoch_entries(),
        leader.epoch_entries(),
        "{context}"
    );
    let end = leader.log_end_offset();
    let aborted =
        |log: &Log<StdFileSystem>| block_on(log.aborted_transactions(Offset(0), end)).unwrap();
    assert_eq!(aborted(follower), aborted(leader), "{context}");
    assert_eq!(aborted(follower).len(), 1, "{context}");
    leader.update_high_watermark(end);
    follower.reset_high_watermark(end);
    assert_eq!(
        follower.last_stable_offset(),
        leader.last_stable_offset(),
        "{context}"
    );
}

#[test]
fn a_follower_keeps_the_leaders_bytes_offsets_epochs_and_transactions() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = leader(leader_dir.path());
    let bytes = read_all(&leader);
    assert!(leader.segment_count() > 1);
    let follower = open(follower_dir.path(), config(), true);
    replicate(&follower, &bytes, 500);
    assert_same(&leader, &follower, "replicated");
    assert!(follower.segment_count() > 1);
    let epochs: Vec<i32> = follower.epoch_entries().iter().map(|(e, _)| e.0).collect();
    assert_eq!(epochs, [0, 1, 3]);
    assert!(
        leader.last_stable_offset() < leader.log_end_offset(),
        "txn 12 is open"
    );
    let mut follower = follower;
    for clean in [true, false] {
        if clean {
            block_on(follower.close()).unwrap();
        }
        drop(follower);
        follower = open(follower_dir.path(), config(), clean);
        assert_same(&leader, &follower, &format!("reopened, clean: {clean}"));
    }
}

#[test]
fn misplaced_batches_are_refused_whole() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = leader(leader_dir.path());
    let all = batches(&read_all(&leader));
    let follower = open(follower_dir.path(), config(), true);
    let feed = |parts: &[&Vec<u8>]| {
        let bytes: Vec<u8> = parts.iter().flat_map(|part| part.iter().copied()).collect();
        block_on(follower.append_as_follower(Bytes::from(bytes)))
    };
    // A gap before the first batch (offset 3 expected at 0).
    let error = feed(&[&all[1]]).unwrap_err();
    assert!(matches!(
        error,
        StorageError::UnexpectedAppendOffset {
            expected: Offset(0),
            found: Offset(3)
        }
    ));
    assert_eq!(error.error_code(), -1);
    let info = feed(&[&all[0], &all[1]]).unwrap();
    assert_eq!(info.offsets, Some((Offset(0), Offset(5))));
    assert_eq!(
        (info.batch_count, info.byte_count),
        (2, all[0].len() + all[1].len())
    );
    // An overlap, alone or after a good batch: nothing written.
    assert!(feed(&[&all[1]]).is_err());
    assert!(feed(&[&all[2], &all[2]]).is_err());
    // A gap inside the answer: nothing written either.
    assert!(matches!(
        feed(&[&all[2], &all[4]]),
        Err(StorageError::UnexpectedAppendOffset { .. })
    ));
    assert_eq!(follower.log_end_offset(), Offset(6));
    assert_eq!(follower.durable_end_offset(), Offset(6));
    // A damaged batch: its CRC.
    let mut damaged = all[2].clone();
    *damaged.last_mut().unwrap() ^= 1;
    assert!(matches!(
        feed(&[&damaged]),
        Err(StorageError::CorruptMessage(_))
    ));
    // A trailing partial batch is dropped; only a partial batch, or nothing, writes nothing.
    let partial = all[3][..30].to_vec();
    let info = feed(&[&all[2], &partial]).unwrap();
    assert_eq!(
        (info.offsets, info.batch_count),
        (Some((Offset(6), Offset(7))), 1)
    );
    let info = feed(&[&partial]).unwrap();
    assert_eq!(
        (info.offsets, info.batch_count, info.byte_count),
        (None, 0, 0)
    );
    let longer = all[3][..all[3].len() - 1].to_vec();
    assert_eq!(feed(&[&longer]).unwrap().offsets, None);
    assert_eq!(feed(&[]).unwrap().offsets, None);
    assert_eq!(follower.log_end_offset(), Offset(8));
    let info = feed(&[&all[3]]).unwrap();
    assert_eq!(info.offsets, Some((Offset(8), Offset(8))));
    let read = block_on(follower.read(Offset(0), 1 << 20, Offset(9), true)).unwrap();
    let expected: Vec<u8> = all[..4].concat();
    assert_eq!(&read[..], &expected[..]);
}

#[test]
fn a_follower_does_not_apply_the_leaders_limits_again() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = open(leader_dir.path(), config(), true);
    append(&leader, simple_batch(4, 200, 1_000), 2);
    append(&leader, simple_batch(1, 10, 1_000), 2);
    append(&leader, simple_batch(1, 10, 1_000), 2);
    marker(&leader, 5, false, 2);
    let all = batches(&read_all(&leader));
    // Smaller max.message.bytes, keys required (compacted): the follower takes the batches anyway.
    let strict = LogConfig {
        max_message_bytes: 100,
        cleanup_policy: CleanupPolicy {
            delete: false,
            compact: true,
        },
        ..config()
    };
    let follower = open(follower_dir.path(), strict.clone(), true);
    assert!(all[0].len() > 100);
    let info = block_on(follower.append_as_follower(Bytes::from(all[0].clone()))).unwrap();
    assert_eq!(info.offsets, Some((Offset(0), Offset(3))));
    // Control batches too (an ABORT marker of a producer the follower never saw).
    let batches: Vec<u8> = [all[1].clone(), all[2].clone(), all[3].clone()].concat();
    let info = block_on(follower.append_as_follower(Bytes::from(batches))).unwrap();
    assert_eq!(info.offsets, Some((Offset(4), Offset(6))));
    assert_eq!(follower.log_end_offset(), Offset(7));
    // Never backwards, and never a batch larger than a segment.
    assert!(block_on(follower.append_as_follower(Bytes::from(all[2].clone()))).is_err());
    let mut huge = simple_batch(30, 100, 1_000);
    crate::batch::set_base_offset(&mut huge, 7);
    assert!(matches!(
        block_on(follower.append_as_follower(Bytes::from(huge))),
        Err(StorageError::MessageTooLarge { .. })
    ));
    let header = BatchHeader::parse(&read_all(&follower)[all[0].len()..]);
    assert_eq!((header.base_offset, header.partition_leader_epoch), (4, 2));
    assert_eq!(read_all(&follower), read_all(&leader));
}

#[test]
fn reset_high_watermark_moves_it_both_ways_within_the_log() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config(), true);
    for _ in 0..5 {
        append(&log, simple_batch(2, 10, 1_000), 0);
    }
    assert_eq!(log.reset_high_watermark(Offset(0)), Offset(0));
    assert_eq!(log.update_high_watermark(Offset(8)), Offset(8));
    assert_eq!(
        log.update_high_watermark(Offset(5)),
        Offset(8),
        "never backwards"
    );
    assert_eq!(log.reset_high_watermark(Offset(5)), Offset(5));
    assert_eq!(log.high_watermark(), Offset(5));
    assert_eq!(log.reset_high_watermark(Offset(100)), Offset(10));
    assert_eq!(log.reset_high_watermark(Offset(-3)), Offset(0));
    assert_eq!(log.last_stable_offset(), Offset(0));
}

#[test]
fn flush_to_fsyncs_once_up_to_the_requested_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), config(), true);
    assert_eq!(log.flushed_end_offset(), Offset(0));
    append(&log, simple_batch(3, 20, 1_000), 0);
    let end = log.log_end_offset();
    assert_eq!(log.flushed_end_offset(), Offset(0), "written, not fsynced");
    assert!(block_on(log.flush_to(end)).unwrap(), "fsynced");
    assert_eq!(log.flushed_end_offset(), end);
    assert!(!block_on(log.flush_to(end)).unwrap(), "already covered");
    block_on(log.truncate_to(Offset(1))).unwrap();
    assert!(log.flushed_end_offset() <= log.durable_end_offset());
}
