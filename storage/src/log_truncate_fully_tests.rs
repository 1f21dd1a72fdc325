//! `Log::truncate_fully_and_start_at` (`log_truncation.rs`): a follower whose log end is below its
//! leader's log start empties its log and restarts at that start; the log holds one empty segment
//! there, with no epochs and no producers, survives a clean or unclean reopen as it is, and takes
//! the leader's batches from that offset on.

use crate::batch::testing::simple_batch;
use crate::error::StorageError;
use crate::io::StdFileSystem;
use crate::log::Log;
use crate::log_follower_tests::{append, config, leader, open, read_all, replicate};
use crate::types::{LeaderEpoch, Offset};
use futures_lite::future::block_on;
use std::path::Path;

/// A follower log that fell behind: a few batches of epoch 0, an open transaction.
fn stale_follower(dir: &Path) -> Log<StdFileSystem> {
    let log = open(dir, config(), true);
    for index in 0..4 {
        append(&log, simple_batch(3, 20, 1_000 + index), 0);
    }
    log.update_high_watermark(log.log_end_offset());
    log
}

/// Every file name in `dir`, sorted.
fn files(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = std::fs::read_dir(dir)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().into_string().unwrap())
        .collect();
    names.sort();
    names
}

fn assert_restarted_at(log: &Log<StdFileSystem>, offset: Offset, context: &str) {
    assert_eq!(log.segment_bases(), [offset], "{context}");
    assert_eq!(log.log_start_offset(), offset, "{context}");
    assert_eq!(log.log_end_offset(), offset, "{context}");
    assert_eq!(log.durable_end_offset(), offset, "{context}");
    assert_eq!(log.high_watermark(), offset, "{context}");
    assert_eq!(log.last_stable_offset(), offset, "{context}");
    assert!(log.epoch_entries().is_empty(), "{context}");
    assert_eq!(log.latest_epoch(), None, "{context}");
    assert!(
        log.with_producer_state(|producers| producers.first_unstable_offset().is_none()),
        "{context}"
    );
    assert!(matches!(
        block_on(log.read(Offset(0), 1 << 20, Offset(i64::MAX), true)),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert!(block_on(log.read(offset, 1 << 20, Offset(i64::MAX), true))
        .unwrap()
        .is_empty());
}

#[test]
fn a_full_truncation_leaves_one_empty_segment_and_survives_reopening() {
    let dir = tempfile::tempdir().unwrap();
    let start = Offset(1_000);
    for clean in [true, false] {
        let log = stale_follower(dir.path());
        block_on(log.truncate_fully_and_start_at(start)).unwrap();
        assert_restarted_at(&log, start, "after the call");
        let names = files(dir.path());
        assert!(
            names
                .iter()
                .all(|name| !name.starts_with("00000000000000000000")),
            "old files left: {names:?}"
        );
        if clean {
            block_on(log.close()).unwrap();
        }
        drop(log);
        let log = open(dir.path(), config(), clean);
        assert_restarted_at(&log, start, &format!("reopened, clean: {clean}"));
        block_on(log.close()).unwrap();
        drop(log);
        // The next round starts from an empty directory again.
        std::fs::remove_dir_all(dir.path()).unwrap();
    }
}

#[test]
fn a_follower_truncated_fully_takes_the_leaders_batches_from_its_log_start() {
    let (leader_dir, follower_dir) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let leader = leader(leader_dir.path());
    leader.update_high_watermark(leader.log_end_offset());
    let bases = leader.segment_bases();
    assert!(bases.len() > 2, "{bases:?}");
    let leader_start = bases[1];
    block_on(leader.delete_segments_before(leader_start)).unwrap();
    assert_eq!(leader.log_start_offset(), leader_start);

    let follower = stale_follower(follower_dir.path());
    assert!(follower.log_end_offset() < leader_start);
    block_on(follower.truncate_fully_and_start_at(leader_start)).unwrap();
    assert_restarted_at(&follower, leader_start, "truncated");
    replicate(&follower, &read_all(&leader), 500);
    let check = |follower: &Log<StdFileSystem>, context: &str| {
        assert_eq!(read_all(follower), read_all(&leader), "{context}");
        assert_eq!(follower.log_start_offset(), leader_start, "{context}");
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
        assert_eq!(follower.latest_epoch(), Some(LeaderEpoch(3)), "{context}");
    };
    check(&follower, "replicated");
    let mut follower = follower;
    for clean in [true, false] {
        if clean {
            block_on(follower.close()).unwrap();
        }
        drop(follower);
        follower = open(follower_dir.path(), config(), clean);
        check(&follower, &format!("reopened, clean: {clean}"));
    }
}

#[test]
fn a_negative_start_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let log = stale_follower(dir.path());
    let end = log.log_end_offset();
    assert!(matches!(
        block_on(log.truncate_fully_and_start_at(Offset(-1))),
        Err(StorageError::OffsetOutOfRange { .. })
    ));
    assert_eq!(log.log_end_offset(), end);
    assert!(!log.is_failed());
}
