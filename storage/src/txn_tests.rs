//! Transactions in the log: the last stable offset, the `.txnindex` files (written, reopened,
//! rebuilt by recovery, truncated, deleted with their segment), `Log::aborted_transactions`,
//! marker fencing through the append path, producer snapshots with an open transaction across a
//! clean close and a kill -9, and producer-id expiration.

use crate::batch::testing::{build_batch, simple_batch, BatchSpec};
use crate::cache::BatchCache;
use crate::error::StorageError;
use crate::io::StdFileSystem;
use crate::log::{Log, LogConfig};
use crate::txn::{AbortedTxn, TxnMarker};
use crate::txn_index::{self, AbortedTxnEntry};
use crate::types::{LeaderEpoch, Offset};
use bytes::Bytes;
use futures_lite::future::block_on;
use std::path::Path;
use std::rc::Rc;

fn config() -> LogConfig {
    LogConfig {
        segment_bytes: 2000,
        index_interval_bytes: 100,
        retention_ms: -1,
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

/// Sequences per producer, so that each test batch follows the last.
#[derive(Default)]
struct Producers(std::collections::HashMap<i64, i32>);

impl Producers {
    /// A transactional (or idempotent) batch of `records` records of `producer_id`, epoch `epoch`.
    fn batch(&mut self, producer_id: i64, epoch: i16, records: usize, txn: bool) -> Bytes {
        let sequence = self.0.entry(producer_id).or_insert(0);
        let batch = build_batch(&BatchSpec {
            producer_id,
            producer_epoch: epoch,
            base_sequence: *sequence,
            transactional: txn,
            timestamp_deltas: vec![0; records],
            ..Default::default()
        });
        *sequence += records as i32;
        Bytes::from(batch)
    }
}

fn append(log: &Log<StdFileSystem>, batch: Bytes) -> Result<i64, StorageError> {
    Ok(block_on(log.append(batch, LeaderEpoch(0), 1_000))?
        .base_offset
        .0)
}

fn marker(
    log: &Log<StdFileSystem>,
    producer_id: i64,
    epoch: i16,
    coordinator_epoch: i32,
    commit: bool,
) -> Result<i64, StorageError> {
    let marker = TxnMarker {
        producer_id,
        producer_epoch: epoch,
        coordinator_epoch,
        commit,
    };
    Ok(block_on(log.append_marker(marker, LeaderEpoch(0), 1_000))?
        .base_offset
        .0)
}

fn commit_all(log: &Log<StdFileSystem>) {
    log.update_high_watermark(log.durable_end_offset());
}

fn aborted(log: &Log<StdFileSystem>, start: i64, upper: i64) -> Vec<AbortedTxn> {
    block_on(log.aborted_transactions(Offset(start), Offset(upper))).unwrap()
}

fn txn(producer_id: i64, first_offset: i64) -> AbortedTxn {
    AbortedTxn {
        producer_id,
        first_offset: Offset(first_offset),
    }
}

fn txn_index_file(dir: &Path, base: i64) -> std::path::PathBuf {
    dir.join(format!("{base:020}.txnindex"))
}

fn read_txn_index(dir: &Path, base: i64) -> Vec<AbortedTxnEntry> {
    txn_index::decode_all(&std::fs::read(txn_index_file(dir, base)).unwrap()).unwrap()
}

#[test]
fn the_last_stable_offset_follows_open_and_completed_transactions() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), false);
    let mut producers = Producers::default();
    assert_eq!(append(&log, producers.batch(1, 0, 2, true)).unwrap(), 0);
    assert_eq!(
        append(&log, Bytes::from(simple_batch(1, 10, 1_000))).unwrap(),
        2
    );
    assert_eq!(append(&log, producers.batch(2, 0, 1, true)).unwrap(), 3);
    commit_all(&log);
    assert_eq!(log.high_watermark(), Offset(4));
    assert_eq!(log.last_stable_offset(), Offset(0));
    assert!(!txn_index_file(dir.path(), 0).exists());

    assert_eq!(marker(&log, 1, 0, 0, false).unwrap(), 4);
    // The marker is not below the high watermark yet: producer 1's data is still unstable.
    assert_eq!(log.last_stable_offset(), Offset(0));
    commit_all(&log);
    assert_eq!(log.last_stable_offset(), Offset(3));
    assert_eq!(
        read_txn_index(dir.path(), 0),
        vec![AbortedTxnEntry {
            producer_id: 1,
            first_offset: 0,
            last_offset: 4,
            last_stable_offset: 3,
        }]
    );
    assert_eq!(aborted(&log, 0, 3), vec![txn(1, 0)]);

    assert_eq!(marker(&log, 2, 0, 0, true).unwrap(), 5);
    commit_all(&log);
    assert_eq!(log.last_stable_offset(), Offset(6));
    assert_eq!(log.last_stable_offset(), log.high_watermark());
    // A commit leaves no entry.
    assert_eq!(read_txn_index(dir.path(), 0).len(), 1);
    assert_eq!(aborted(&log, 0, 6), vec![txn(1, 0)]);
    assert_eq!(aborted(&log, 5, 6), vec![]);

    // Reopened after a clean close: the entries come from the file, the state from the snapshot.
    block_on(log.close()).unwrap();
    drop(log);
    let log = open(dir.path(), true);
    assert_eq!(log.last_stable_offset(), Offset(6));
    assert_eq!(aborted(&log, 0, 6), vec![txn(1, 0)]);
}

#[test]
fn aborted_transactions_follow_kafkas_ranges_across_segments() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), false);
    let mut producers = Producers::default();
    // Ten aborted transactions of one producer, each with a few batches, across segments.
    let mut expected = Vec::new();
    for _ in 0..10 {
        let first = append(&log, producers.batch(1, 0, 3, true)).unwrap();
        append(&log, producers.batch(1, 0, 3, true)).unwrap();
        append(&log, Bytes::from(simple_batch(3, 100, 1_000))).unwrap();
        let last = marker(&log, 1, 0, 0, false).unwrap();
        expected.push((first, last));
        commit_all(&log);
    }
    assert!(log.segment_count() > 3, "segments: {}", log.segment_count());
    let end = log.high_watermark().0;
    assert_eq!(log.last_stable_offset().0, end);
    let all: Vec<AbortedTxn> = expected.iter().map(|(first, _)| txn(1, *first)).collect();
    assert_eq!(aborted(&log, 0, end), all);
    // A fetch from inside the third transaction up to the fifth's first offset.
    let (third_first, _) = expected[2];
    let (fifth_first, _) = expected[4];
    assert_eq!(
        aborted(&log, third_first + 1, fifth_first),
        vec![txn(1, expected[2].0), txn(1, expected[3].0)]
    );
    // Bounded by upper: a range after the last marker has none.
    assert_eq!(aborted(&log, end, end + 10), vec![]);
    let (_, last_marker) = expected[9];
    assert_eq!(aborted(&log, last_marker, end), vec![txn(1, expected[9].0)]);

    // Every segment's file holds the entries of its markers.
    let mut from_files = Vec::new();
    for base in log.segment_bases() {
        if txn_index_file(dir.path(), base.0).exists() {
            for entry in read_txn_index(dir.path(), base.0) {
                assert!(entry.last_offset >= base.0);
                from_files.push((entry.first_offset, entry.last_offset));
            }
        }
    }
    assert_eq!(from_files, expected);

    // Truncation drops the entries at or beyond the cut.
    let (_, seventh_marker) = expected[6];
    block_on(log.truncate_to(Offset(seventh_marker))).unwrap();
    assert_eq!(log.log_end_offset(), Offset(seventh_marker));
    let kept: Vec<AbortedTxn> = all[..6].to_vec();
    let end = log.high_watermark().0;
    // The seventh transaction lost its marker: it is open again.
    assert_eq!(log.last_stable_offset().0, expected[6].0);
    assert_eq!(aborted(&log, 0, end), kept);
    // A kill -9 now: recovery replays and rebuilds the same state.
    drop(log);
    let log = open(dir.path(), false);
    assert_eq!(aborted(&log, 0, log.high_watermark().0), kept);
    assert_eq!(log.last_stable_offset().0, expected[6].0);
}

#[test]
fn recovery_rebuilds_a_lost_or_damaged_txn_index() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), false);
    let mut producers = Producers::default();
    append(&log, producers.batch(1, 0, 2, true)).unwrap();
    marker(&log, 1, 0, 0, false).unwrap();
    append(&log, producers.batch(2, 0, 2, true)).unwrap();
    marker(&log, 2, 0, 0, false).unwrap();
    commit_all(&log);
    assert_eq!(aborted(&log, 0, 6), vec![txn(1, 0), txn(2, 3)]);
    // kill -9 (no close: no snapshot), and the index is lost.
    drop(log);
    std::fs::remove_file(txn_index_file(dir.path(), 0)).unwrap();
    let log = open(dir.path(), false);
    assert_eq!(aborted(&log, 0, 6), vec![txn(1, 0), txn(2, 3)]);
    assert_eq!(read_txn_index(dir.path(), 0).len(), 2);
    block_on(log.close()).unwrap();
    drop(log);
    // A damaged file (not a whole number of entries) is rebuilt too, even after a clean close.
    std::fs::write(txn_index_file(dir.path(), 0), [0u8; 40]).unwrap();
    let log = open(dir.path(), true);
    assert_eq!(aborted(&log, 0, 6), vec![txn(1, 0), txn(2, 3)]);
    assert_eq!(read_txn_index(dir.path(), 0).len(), 2);
}

#[test]
fn a_kill_keeps_an_open_transaction_open_and_a_committed_one_committed() {
    for clean_close in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let log = open(dir.path(), false);
        let mut producers = Producers::default();
        append(&log, producers.batch(1, 0, 2, true)).unwrap(); // committed below
        append(&log, producers.batch(2, 0, 2, true)).unwrap(); // left open
        marker(&log, 1, 0, 3, true).unwrap();
        append(&log, producers.batch(1, 0, 1, true)).unwrap(); // a second, open transaction
        commit_all(&log);
        assert_eq!(log.last_stable_offset(), Offset(2));
        if clean_close {
            block_on(log.close()).unwrap();
        }
        drop(log);
        let log = open(dir.path(), clean_close);
        assert_eq!(log.log_end_offset(), Offset(6));
        assert_eq!(log.high_watermark(), Offset(6));
        assert_eq!(log.last_stable_offset(), Offset(2), "clean: {clean_close}");
        let one = log.producer_entry(1).unwrap();
        assert_eq!(
            (one.current_txn_first_offset, one.coordinator_epoch),
            (5, 3)
        );
        assert_eq!(log.producer_entry(2).unwrap().current_txn_first_offset, 2);
        assert_eq!(aborted(&log, 0, 6), vec![]);
        // The coordinator aborts the open transactions after the restart.
        marker(&log, 2, 0, 3, false).unwrap();
        marker(&log, 1, 0, 3, false).unwrap();
        commit_all(&log);
        assert_eq!(log.last_stable_offset(), log.high_watermark());
        assert_eq!(aborted(&log, 0, 8), vec![txn(2, 2), txn(1, 5)]);
        // The id goes on with a new epoch.
        let mut bumped = Producers::default();
        append(&log, bumped.batch(2, 1, 1, true)).unwrap();
    }
}

#[test]
fn markers_and_batches_are_fenced_as_kafka_does() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), false);
    let mut producers = Producers::default();
    append(&log, producers.batch(1, 2, 1, true)).unwrap();
    // Non-transactional batch inside the open transaction.
    let error = append(&log, producers.batch(1, 2, 1, false)).unwrap_err();
    assert_eq!(error.error_code(), 48, "{error}");
    marker(&log, 1, 2, 5, false).unwrap();
    let error = marker(&log, 1, 1, 5, false).unwrap_err();
    assert_eq!(error.error_code(), 47, "{error}");
    let error = marker(&log, 1, 2, 4, true).unwrap_err();
    assert_eq!(error.error_code(), 52, "{error}");
    let mut old = Producers::default();
    let error = append(&log, old.batch(1, 1, 1, true)).unwrap_err();
    assert_eq!(error.error_code(), 47, "{error}");
    // Nothing refused was written.
    assert_eq!(log.log_end_offset(), Offset(2));
    // Markers from a newer coordinator epoch pass, with or without an open transaction.
    marker(&log, 1, 2, 6, true).unwrap();
    assert_eq!(log.producer_entry(1).unwrap().coordinator_epoch, 6);
}

#[test]
fn deleted_segments_take_their_txn_index_along() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), false);
    let mut producers = Producers::default();
    append(&log, producers.batch(1, 0, 2, true)).unwrap();
    marker(&log, 1, 0, 0, false).unwrap();
    while log.segment_count() < 4 {
        append(&log, Bytes::from(simple_batch(3, 100, 1_000))).unwrap();
    }
    commit_all(&log);
    assert!(txn_index_file(dir.path(), 0).exists());
    let second = log.segment_bases()[1];
    block_on(log.delete_records(second)).unwrap();
    assert!(!txn_index_file(dir.path(), 0).exists());
    let mut name = txn_index_file(dir.path(), 0).into_os_string();
    name.push(".deleted");
    assert!(Path::new(&name).exists(), "renamed for deletion");
    block_on(log.remove_deleted_files(i64::MAX)).unwrap();
    assert!(!Path::new(&name).exists());
    assert_eq!(aborted(&log, second.0, log.high_watermark().0), vec![]);
    assert_eq!(log.last_stable_offset(), log.high_watermark());
}

#[test]
fn the_log_start_passing_an_open_transaction_bounds_the_last_stable_offset() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), false);
    let mut producers = Producers::default();
    append(&log, producers.batch(1, 0, 2, true)).unwrap();
    while log.segment_count() < 3 {
        append(&log, Bytes::from(simple_batch(3, 100, 1_000))).unwrap();
    }
    commit_all(&log);
    assert_eq!(log.last_stable_offset(), Offset(0));
    let second = log.segment_bases()[1];
    block_on(log.delete_records(second)).unwrap();
    assert_eq!(log.last_stable_offset(), second);
    assert!(log.producer_entry(1).is_some());
    marker(&log, 1, 0, 0, false).unwrap();
    commit_all(&log);
    assert_eq!(log.last_stable_offset(), log.high_watermark());
}

#[test]
fn idle_producers_expire_unless_their_transaction_is_open() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), false);
    let mut producers = Producers::default();
    append(&log, producers.batch(1, 0, 1, false)).unwrap();
    append(&log, producers.batch(2, 0, 1, true)).unwrap();
    let expiration = config().producer_id_expiration_ms;
    assert_eq!(expiration, 86_400_000);
    // build_batch stamps records at 1_000.
    assert_eq!(log.remove_expired_producers(1_000 + expiration - 1), 0);
    assert_eq!(log.remove_expired_producers(1_000 + expiration), 1);
    assert!(log.producer_entry(1).is_none());
    assert!(log.producer_entry(2).is_some());
    // An expired producer is unknown again, and may go on at its next sequence (KIP-360).
    append(&log, producers.batch(1, 0, 1, false)).unwrap();
    assert!(log.producer_entry(1).is_some());
}

#[test]
fn a_multi_batch_append_opens_the_transaction_at_its_first_batch() {
    let dir = tempfile::tempdir().unwrap();
    let log = open(dir.path(), false);
    append(&log, Bytes::from(simple_batch(2, 10, 1_000))).unwrap();
    let mut producers = Producers::default();
    let mut request = producers.batch(4, 0, 2, true).to_vec();
    request.extend_from_slice(&producers.batch(4, 0, 3, true));
    assert_eq!(append(&log, Bytes::from(request)).unwrap(), 2);
    commit_all(&log);
    assert_eq!(log.last_stable_offset(), Offset(2));
    assert_eq!(log.producer_entry(4).unwrap().current_txn_first_offset, 2);
    // A refused multi-batch request leaves the state untouched.
    let mut refused = producers.batch(4, 0, 1, true).to_vec();
    refused.extend_from_slice(&producers.batch(4, 0, 1, false));
    assert_eq!(
        append(&log, Bytes::from(refused)).unwrap_err().error_code(),
        48
    );
    assert_eq!(log.log_end_offset(), Offset(7));
    marker(&log, 4, 0, 0, false).unwrap();
    commit_all(&log);
    assert_eq!(aborted(&log, 0, 8), vec![txn(4, 2)]);
    assert_eq!(log.last_stable_offset(), Offset(8));
}
