//! The transaction half of the producer state (Kafka's `ProducerStateManager` transaction
//! tracking and `ProducerAppendInfo.appendEndTxnMarker`).
//!
//! # Rules
//! * A transactional data batch opens its producer's transaction at its base offset when none is
//!   open (`ProducerStateManager::update`); the open transactions are indexed by first offset.
//! * A marker (control batch) ends the producer's open transaction: a [`CompletedTxn`] comes out,
//!   with `last_offset` = the marker's offset and the partition's last stable offset once it is
//!   completed (what the `.txnindex` entry of an ABORT records). The entry takes the marker's
//!   producer epoch (a different epoch drops the remembered batches) and coordinator epoch. A
//!   marker with no open transaction is written anyway and completes nothing (Kafka does the same).
//! * Checks of a marker: producer epoch below the entry's -> `InvalidProducerEpoch` (Kafka answers
//!   INVALID_PRODUCER_EPOCH rather than PRODUCER_FENCED since 2.7); coordinator epoch below the
//!   entry's -> `TransactionCoordinatorFenced`.
//! * A completed transaction keeps holding the last stable offset back until the high watermark
//!   passes its marker ([`ProducerStateManager::on_high_watermark`]).
//!
//! # Invariant
//! `ongoing` holds exactly the `(current_txn_first_offset, producer_id)` of the entries with an
//! open transaction.

use super::{ProducerEntry, ProducerStateManager, SequenceCheck};
use crate::batch::BatchHeader;
use crate::error::StorageError;

/// A transaction ended by a marker.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct CompletedTxn {
    pub producer_id: i64,
    pub first_offset: i64,
    /// The marker's offset.
    pub last_offset: i64,
    pub aborted: bool,
    /// The first offset of the oldest transaction still open after this one completed, else
    /// `last_offset + 1` (Kafka's `lastStableOffset(completedTxn)`; the high watermark aside).
    pub last_stable_offset: i64,
}

impl ProducerStateManager {
    /// Checks any batch: a transaction marker (`batch`: the whole control batch, header included)
    /// with the marker rules of the module doc, other batches with [`ProducerStateManager::check`].
    /// A control batch that is not a transaction marker is not checked.
    pub fn check_batch(
        &self,
        header: &BatchHeader,
        batch: &[u8],
    ) -> Result<SequenceCheck, StorageError> {
        if !header.is_control() {
            return self.check(header);
        }
        if let Some((_, coordinator_epoch)) = crate::txn::parse_marker(batch) {
            self.check_marker(header, coordinator_epoch)?;
        }
        Ok(SequenceCheck::Append)
    }

    /// The marker rules: producer epoch and coordinator epoch not below the entry's.
    pub fn check_marker(
        &self,
        header: &BatchHeader,
        coordinator_epoch: i32,
    ) -> Result<(), StorageError> {
        let Some(entry) = self.producers.get(&header.producer_id) else {
            return Ok(());
        };
        if header.producer_epoch < entry.epoch {
            return Err(StorageError::InvalidProducerEpoch(format!(
                "transaction marker for producer {} has epoch {}, older than the current epoch {}",
                header.producer_id, header.producer_epoch, entry.epoch
            )));
        }
        if coordinator_epoch < entry.coordinator_epoch {
            return Err(StorageError::TransactionCoordinatorFenced(format!(
                "transaction marker for producer {} comes from coordinator epoch {}, older than {}",
                header.producer_id, coordinator_epoch, entry.coordinator_epoch
            )));
        }
        Ok(())
    }

    /// Records an appended batch (placed: offsets assigned) and returns the transaction a marker
    /// completed. `batch` is the whole batch as written (only a control batch's record is read;
    /// its header's offsets may be unplaced). Also used to replay the log, without checks.
    pub fn apply_batch(&mut self, header: &BatchHeader, batch: &[u8]) -> Option<CompletedTxn> {
        if !header.is_control() {
            self.update(header);
            return None;
        }
        if !header.has_producer_id() {
            return None;
        }
        let (commit, coordinator_epoch) = crate::txn::parse_marker(batch)?;
        self.update_marker(header, commit, coordinator_epoch)
    }

    /// Records a marker at `header.base_offset` (see the module doc).
    pub fn update_marker(
        &mut self,
        header: &BatchHeader,
        commit: bool,
        coordinator_epoch: i32,
    ) -> Option<CompletedTxn> {
        let producer_id = header.producer_id;
        let entry = self
            .producers
            .entry(producer_id)
            .or_insert_with(|| ProducerEntry::new(producer_id, header.producer_epoch));
        if entry.epoch != header.producer_epoch {
            entry.epoch = header.producer_epoch;
            entry.batches.clear();
        }
        entry.coordinator_epoch = coordinator_epoch;
        entry.last_timestamp = header.max_timestamp;
        let first_offset = entry.current_txn_first_offset;
        if first_offset < 0 {
            return None;
        }
        entry.current_txn_first_offset = -1;
        let removed = self.ongoing.remove(&first_offset);
        debug_assert_eq!(
            removed,
            Some(producer_id),
            "open transaction index out of sync"
        );
        let last_offset = header.base_offset;
        let last_stable_offset = self
            .ongoing
            .keys()
            .next()
            .copied()
            .unwrap_or(last_offset + 1);
        let completed = CompletedTxn {
            producer_id,
            first_offset,
            last_offset,
            aborted: !commit,
            last_stable_offset,
        };
        self.unreplicated.insert(first_offset, completed);
        Some(completed)
    }

    /// The first offset of the oldest transaction that is open, or completed with its marker not
    /// yet below the high watermark (`None`: every transaction is stable).
    pub fn first_unstable_offset(&self) -> Option<i64> {
        let ongoing = self.ongoing.keys().next().copied();
        let unreplicated = self.unreplicated.keys().next().copied();
        match (ongoing, unreplicated) {
            (Some(left), Some(right)) => Some(left.min(right)),
            (left, right) => left.or(right),
        }
    }

    /// The high watermark moved to `high_watermark`: completed transactions whose marker is below
    /// it stop holding the last stable offset back.
    pub fn on_high_watermark(&mut self, high_watermark: i64) {
        self.unreplicated
            .retain(|_, txn| txn.last_offset >= high_watermark);
    }

    /// The open transactions, oldest first: `(first_offset, producer_id)`.
    pub fn open_transactions(&self) -> impl Iterator<Item = (i64, i64)> + '_ {
        self.ongoing
            .iter()
            .map(|(first_offset, producer_id)| (*first_offset, *producer_id))
    }

    /// Removes the producers idle for `expiration_ms` at `now_ms` (last batch or marker timestamp
    /// at least that old) that have no open transaction (Kafka's `removeExpiredProducers` for
    /// `producer.id.expiration.ms`). Returns how many were removed.
    pub fn remove_expired(&mut self, now_ms: i64, expiration_ms: i64) -> usize {
        let before = self.producers.len();
        self.producers.retain(|_, entry| {
            entry.current_txn_first_offset >= 0
                || now_ms.saturating_sub(entry.last_timestamp) < expiration_ms
        });
        before - self.producers.len()
    }

    /// Rebuilds `ongoing` from the entries (after a snapshot load or a truncation).
    pub(super) fn rebuild_ongoing(&mut self) {
        self.ongoing = self
            .producers
            .values()
            .filter(|entry| entry.current_txn_first_offset >= 0)
            .map(|entry| (entry.current_txn_first_offset, entry.producer_id))
            .collect();
    }
}
