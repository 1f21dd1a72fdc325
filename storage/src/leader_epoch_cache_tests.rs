//! The leader-epoch cache's rules, after Kafka's `LeaderEpochFileCacheTest` cases (own versions).

use super::LeaderEpochCache;
use crate::types::{LeaderEpoch, Offset};

fn cache(entries: &[(i32, i64)]) -> LeaderEpochCache {
    LeaderEpochCache::new(
        entries
            .iter()
            .map(|&(epoch, offset)| (LeaderEpoch(epoch), Offset(offset)))
            .collect(),
    )
}

fn entries(cache: &LeaderEpochCache) -> Vec<(i32, i64)> {
    cache
        .entries()
        .iter()
        .map(|(epoch, offset)| (epoch.0, offset.0))
        .collect()
}

fn end_offset(cache: &LeaderEpochCache, requested: i32, log_end: i64) -> Option<(i32, i64)> {
    cache
        .end_offset_for(LeaderEpoch(requested), Offset(log_end))
        .map(|(epoch, offset)| (epoch.0, offset.0))
}

#[test]
fn assign_adds_newer_epochs_only() {
    let mut cache = LeaderEpochCache::default();
    assert_eq!(cache.latest_epoch(), None);
    assert!(cache.assign(LeaderEpoch(2), Offset(6)));
    assert!(cache.is_dirty());
    cache.set_dirty(false);
    // The latest epoch again, at any offset: nothing.
    assert!(!cache.assign(LeaderEpoch(2), Offset(10)));
    assert!(!cache.assign(LeaderEpoch(2), Offset(3)));
    // An older epoch: ignored.
    assert!(!cache.assign(LeaderEpoch(1), Offset(7)));
    // Negative epoch or offset: ignored.
    assert!(!cache.assign(LeaderEpoch(-1), Offset(7)));
    assert!(!cache.assign(LeaderEpoch(5), Offset(-1)));
    assert!(!cache.is_dirty());
    assert!(cache.assign(LeaderEpoch(3), Offset(8)));
    assert!(cache.assign(LeaderEpoch(5), Offset(8)), "an empty epoch 3");
    assert_eq!(entries(&cache), [(2, 6), (5, 8)]);
    assert_eq!(cache.latest_epoch(), Some(LeaderEpoch(5)));
    assert!(cache.is_new(LeaderEpoch(6)));
    assert!(!cache.is_new(LeaderEpoch(5)));
    assert!(!cache.is_new(LeaderEpoch(4)));
}

#[test]
fn assign_removes_conflicting_entries() {
    let mut cache = cache(&[(2, 6), (3, 8), (4, 11)]);
    // Epoch 5 starts at 7: the entries starting at or after 7 were written by older epochs there.
    assert!(cache.assign(LeaderEpoch(5), Offset(7)));
    assert_eq!(entries(&cache), [(2, 6), (5, 7)]);
    assert!(cache.assign(LeaderEpoch(6), Offset(0)));
    assert_eq!(entries(&cache), [(6, 0)]);
}

#[test]
fn end_offset_for_follows_kafka() {
    let empty = LeaderEpochCache::default();
    assert_eq!(end_offset(&empty, 0, 10), None);
    let cache = cache(&[(2, 6), (3, 8), (5, 11)]);
    // The latest epoch: the log end.
    assert_eq!(end_offset(&cache, 5, 20), Some((5, 20)));
    // An older epoch: the start of the next one.
    assert_eq!(end_offset(&cache, 3, 20), Some((3, 11)));
    assert_eq!(end_offset(&cache, 2, 20), Some((2, 8)));
    // An epoch the cache skipped: the largest epoch below it, ending where the next one starts.
    assert_eq!(end_offset(&cache, 4, 20), Some((3, 11)));
    // Older than every entry: the requested epoch ending at the first start (Kafka).
    assert_eq!(end_offset(&cache, 1, 20), Some((1, 6)));
    // Newer than the latest, or undefined: nothing.
    assert_eq!(end_offset(&cache, 6, 20), None);
    assert_eq!(end_offset(&cache, -1, 20), None);
}

#[test]
fn truncate_from_end_drops_entries_at_or_past_the_end() {
    let mut cache = cache(&[(2, 6), (3, 8), (4, 11)]);
    assert!(!cache.truncate_from_end(Offset(12)));
    assert!(!cache.is_dirty());
    assert!(cache.truncate_from_end(Offset(9)));
    assert_eq!(entries(&cache), [(2, 6), (3, 8)]);
    assert!(cache.truncate_from_end(Offset(8)));
    assert_eq!(entries(&cache), [(2, 6)]);
    assert!(cache.is_dirty());
    assert!(cache.truncate_from_end(Offset(0)));
    assert!(cache.entries().is_empty());
    assert!(!cache.truncate_from_end(Offset(0)));
}

#[test]
fn truncate_from_start_keeps_the_entry_covering_the_start() {
    let base = cache(&[(2, 6), (3, 8), (4, 11)]);
    for (start, expected, changed) in [
        (5, vec![(2, 6), (3, 8), (4, 11)], false),
        (6, vec![(2, 6), (3, 8), (4, 11)], false),
        (7, vec![(2, 7), (3, 8), (4, 11)], true),
        (8, vec![(3, 8), (4, 11)], true),
        (9, vec![(3, 9), (4, 11)], true),
        (11, vec![(4, 11)], true),
        (15, vec![(4, 15)], true),
    ] {
        let mut cache = base.clone();
        assert_eq!(cache.truncate_from_start(Offset(start)), changed, "{start}");
        assert_eq!(entries(&cache), expected, "{start}");
        assert_eq!(cache.is_dirty(), changed);
    }
}

#[test]
fn epoch_for_offset_finds_the_covering_epoch() {
    let cache = cache(&[(2, 6), (3, 8), (5, 11)]);
    let epoch = |offset| cache.epoch_for_offset(Offset(offset)).map(|epoch| epoch.0);
    assert_eq!(epoch(5), None);
    assert_eq!(epoch(6), Some(2));
    assert_eq!(epoch(7), Some(2));
    assert_eq!(epoch(8), Some(3));
    assert_eq!(epoch(10), Some(3));
    assert_eq!(epoch(11), Some(5));
    assert_eq!(epoch(1000), Some(5));
    assert_eq!(
        LeaderEpochCache::default().epoch_for_offset(Offset(0)),
        None
    );
}

#[test]
fn invariants_are_checked() {
    assert!(LeaderEpochCache::valid(&[]));
    assert!(LeaderEpochCache::valid(&[
        (LeaderEpoch(1), Offset(5)),
        (LeaderEpoch(2), Offset(5))
    ]));
    assert!(!LeaderEpochCache::valid(&[
        (LeaderEpoch(2), Offset(5)),
        (LeaderEpoch(2), Offset(6))
    ]));
    assert!(!LeaderEpochCache::valid(&[
        (LeaderEpoch(1), Offset(6)),
        (LeaderEpoch(2), Offset(5))
    ]));
    assert!(!LeaderEpochCache::valid(&[(LeaderEpoch(-1), Offset(5))]));
    assert!(!LeaderEpochCache::valid(&[(LeaderEpoch(1), Offset(-5))]));
    let refused = std::panic::catch_unwind(|| cache(&[(3, 1), (2, 2)]));
    assert!(refused.is_err());
}
