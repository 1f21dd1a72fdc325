//! Transaction rules of the producer state (see `producer_txn.rs`).

use super::*;
use crate::batch::testing::{build_batch, BatchSpec};
use crate::txn::{marker_batch, TxnMarker};
use bytes::Bytes;

fn data(producer_id: i64, epoch: i16, sequence: i32, count: usize, base: i64, txn: bool) -> Bytes {
    let mut batch = build_batch(&BatchSpec {
        producer_id,
        producer_epoch: epoch,
        base_sequence: sequence,
        transactional: txn,
        timestamp_deltas: vec![0; count],
        ..Default::default()
    });
    crate::batch::set_base_offset(&mut batch, base);
    Bytes::from(batch)
}

fn marker(producer_id: i64, epoch: i16, coordinator_epoch: i32, commit: bool, base: i64) -> Bytes {
    let batch = marker_batch(
        &TxnMarker {
            producer_id,
            producer_epoch: epoch,
            coordinator_epoch,
            commit,
        },
        1_000,
    );
    let mut batch = batch.to_vec();
    crate::batch::set_base_offset(&mut batch, base);
    Bytes::from(batch)
}

fn apply(state: &mut ProducerStateManager, batch: &Bytes) -> Option<CompletedTxn> {
    let header = BatchHeader::parse(batch);
    state.check_batch(&header, batch).expect("accepted");
    state.apply_batch(&header, batch)
}

fn check(state: &ProducerStateManager, batch: &Bytes) -> Result<SequenceCheck, StorageError> {
    state.check_batch(&BatchHeader::parse(batch), batch)
}

#[test]
fn a_transactional_batch_opens_and_a_marker_completes_the_transaction() {
    let mut state = ProducerStateManager::new();
    assert_eq!(apply(&mut state, &data(1, 0, 0, 2, 10, true)), None);
    assert_eq!(state.get(1).unwrap().current_txn_first_offset, 10);
    // a second batch of the same transaction keeps its first offset
    assert_eq!(apply(&mut state, &data(1, 0, 2, 1, 12, true)), None);
    assert_eq!(state.get(1).unwrap().current_txn_first_offset, 10);
    assert_eq!(apply(&mut state, &data(2, 0, 0, 1, 13, true)), None);
    assert_eq!(state.first_unstable_offset(), Some(10));
    assert_eq!(
        state.open_transactions().collect::<Vec<_>>(),
        vec![(10, 1), (13, 2)]
    );
    let completed = apply(&mut state, &marker(1, 0, 5, false, 14)).unwrap();
    assert_eq!(
        completed,
        CompletedTxn {
            producer_id: 1,
            first_offset: 10,
            last_offset: 14,
            aborted: true,
            // producer 2's transaction is still open
            last_stable_offset: 13,
        }
    );
    let entry = state.get(1).unwrap();
    assert_eq!(
        (entry.current_txn_first_offset, entry.coordinator_epoch),
        (-1, 5)
    );
    // completed but not yet below the high watermark: still unstable
    assert_eq!(state.first_unstable_offset(), Some(10));
    state.on_high_watermark(15);
    assert_eq!(state.first_unstable_offset(), Some(13));
    let completed = apply(&mut state, &marker(2, 0, 5, true, 15)).unwrap();
    assert!(!completed.aborted);
    assert_eq!(completed.last_stable_offset, 16);
    state.on_high_watermark(15);
    assert_eq!(state.first_unstable_offset(), Some(13));
    state.on_high_watermark(16);
    assert_eq!(state.first_unstable_offset(), None);
    // a marker without an open transaction completes nothing
    assert_eq!(apply(&mut state, &marker(1, 0, 5, true, 16)), None);
    assert_eq!(apply(&mut state, &marker(9, 3, 5, false, 17)), None);
    assert_eq!(state.get(9).unwrap().epoch, 3);
}

#[test]
fn markers_from_older_epochs_are_fenced() {
    let mut state = ProducerStateManager::new();
    apply(&mut state, &data(1, 2, 0, 1, 0, true));
    apply(&mut state, &marker(1, 2, 4, true, 1));
    assert!(matches!(
        check(&state, &marker(1, 1, 4, false, 2)),
        Err(StorageError::InvalidProducerEpoch(_))
    ));
    let fenced = check(&state, &marker(1, 2, 3, false, 2)).unwrap_err();
    assert!(matches!(
        fenced,
        StorageError::TransactionCoordinatorFenced(_)
    ));
    assert_eq!(fenced.error_code(), 52);
    assert_eq!(
        check(&state, &marker(1, 3, 4, false, 2)).unwrap(),
        SequenceCheck::Append
    );
    // a transactional batch of an older epoch
    assert!(matches!(
        check(&state, &data(1, 1, 1, 1, 2, true)),
        Err(StorageError::InvalidProducerEpoch(_))
    ));
    // a marker bumping the epoch: the next transaction starts at sequence 0
    apply(&mut state, &marker(1, 3, 4, false, 2));
    assert!(state.get(1).unwrap().batches.is_empty());
    assert_eq!(
        check(&state, &data(1, 3, 0, 1, 3, true)).unwrap(),
        SequenceCheck::Append
    );
}

#[test]
fn a_non_transactional_batch_inside_an_open_transaction_is_refused() {
    let mut state = ProducerStateManager::new();
    apply(&mut state, &data(1, 0, 0, 1, 0, true));
    let error = check(&state, &data(1, 0, 1, 1, 1, false)).unwrap_err();
    assert!(matches!(error, StorageError::InvalidTxnState(_)));
    assert_eq!(error.error_code(), 48);
    // a retry of the transactional batch is still a duplicate
    assert!(matches!(
        check(&state, &data(1, 0, 0, 1, 7, true)).unwrap(),
        SequenceCheck::Duplicate { .. }
    ));
    apply(&mut state, &marker(1, 0, 0, true, 1));
    assert_eq!(
        check(&state, &data(1, 0, 1, 1, 2, false)).unwrap(),
        SequenceCheck::Append
    );
}

#[test]
fn a_snapshot_keeps_open_transactions_and_coordinator_epochs() {
    let mut state = ProducerStateManager::new();
    apply(&mut state, &data(1, 0, 0, 1, 0, true));
    apply(&mut state, &marker(1, 0, 7, true, 1));
    apply(&mut state, &data(1, 0, 1, 1, 2, true));
    apply(&mut state, &data(2, 0, 0, 1, 3, false));
    apply(&mut state, &marker(3, 1, 2, false, 4));
    let back = ProducerStateManager::decode_snapshot(&state.encode_snapshot()).unwrap();
    for producer_id in [1, 2, 3] {
        assert_eq!(back.get(producer_id), state.get(producer_id));
    }
    assert_eq!(back.get(1).unwrap().coordinator_epoch, 7);
    assert_eq!(back.open_transactions().collect::<Vec<_>>(), vec![(2, 1)]);
    assert_eq!(back.first_unstable_offset(), Some(2));
}

#[test]
fn idle_producers_without_an_open_transaction_expire() {
    let mut state = ProducerStateManager::new();
    // build_batch's timestamps start at 1_000
    apply(&mut state, &data(1, 0, 0, 1, 0, false));
    apply(&mut state, &data(2, 0, 0, 1, 1, true));
    assert_eq!(state.remove_expired(1_000 + 99, 100), 0);
    assert_eq!(state.remove_expired(1_000 + 100, 100), 1);
    assert!(state.get(1).is_none());
    assert!(
        state.get(2).is_some(),
        "an open transaction keeps its producer"
    );
    apply(&mut state, &marker(2, 0, 0, false, 2));
    assert_eq!(state.remove_expired(1_000 + 100, 100), 1);
    assert!(state.is_empty());
}

#[test]
fn the_log_start_passing_an_open_transaction_keeps_its_producer() {
    let mut state = ProducerStateManager::new();
    apply(&mut state, &data(1, 0, 0, 1, 0, true));
    apply(&mut state, &data(2, 0, 0, 1, 1, false));
    state.remove_before(5);
    assert!(state.get(1).is_some());
    assert!(state.get(2).is_none());
    state.truncate_from(0);
    assert!(state.is_empty());
    assert_eq!(state.first_unstable_offset(), None);
}
