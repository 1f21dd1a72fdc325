//! Unit tests of the fetch handler's request budget.

use super::*;
use bytes::{BufMut, BytesMut};

/// A fake batch of `size` bytes: base offset, length, filler.
fn batch(size: usize) -> Bytes {
    let mut buffer = BytesMut::new();
    buffer.put_i64(0);
    buffer.put_i32((size - 12) as i32);
    buffer.put_bytes(7, size - 12);
    buffer.freeze()
}

fn outcome(parts: Vec<Bytes>) -> Option<FetchOutcome> {
    let mut outcome = FetchOutcome::failed(ResponseError::UnknownServerError);
    outcome.error = None;
    outcome.records = parts;
    Some(outcome)
}

fn kept(outcomes: &[Option<FetchOutcome>]) -> Vec<usize> {
    outcomes
        .iter()
        .map(|outcome| outcome.as_ref().map_or(0, FetchOutcome::records_bytes))
        .collect()
}

#[test]
fn the_budget_spans_partitions_of_every_shard() {
    // Three partitions (as if read by three shards, each within max_bytes on its own).
    let mut outcomes = vec![
        outcome(vec![batch(400), batch(400)]),
        None,
        outcome(vec![batch(300), batch(300)]),
        outcome(vec![batch(100)]),
    ];
    apply_request_budget(&mut outcomes, 1000);
    assert_eq!(kept(&outcomes), vec![800, 0, 0, 0]);
}

#[test]
fn the_first_batch_may_exceed_the_budget_alone() {
    let mut outcomes = vec![outcome(vec![]), outcome(vec![batch(5000), batch(20)])];
    apply_request_budget(&mut outcomes, 1000);
    assert_eq!(kept(&outcomes), vec![0, 5000]);
}

#[test]
fn batches_split_into_header_and_body_parts_are_cut_whole() {
    let first = batch(200);
    let second = batch(200);
    let parts = vec![
        first.slice(..61),
        first.slice(61..),
        second.slice(..61),
        second.slice(61..),
    ];
    let mut outcomes = vec![outcome(parts)];
    apply_request_budget(&mut outcomes, 300);
    assert_eq!(kept(&outcomes), vec![200]);
    assert_eq!(outcomes[0].as_ref().unwrap().records.len(), 2);
}
