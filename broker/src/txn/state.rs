//! One transactional id's metadata (Kafka's `TransactionMetadata`) and its state machine. No I/O: the
//! coordinator partition (`coordinator.rs`) prepares a transition here, appends it to
//! `__transaction_state`, and completes it once written (or abandons it if the write failed).
//!
//! # States and legal transitions (Kafka 4.x, transaction version 0/1)
//! ```text
//! Empty             <- Empty, CompleteCommit, CompleteAbort          (InitProducerId: epoch bump)
//! Ongoing           <- Ongoing, Empty, CompleteCommit, CompleteAbort (AddPartitionsToTxn / AddOffsetsToTxn)
//! PrepareCommit     <- Ongoing                                       (EndTxn commit)
//! PrepareAbort      <- Ongoing, PrepareEpochFence                    (EndTxn abort, timeout, fencing)
//! CompleteCommit    <- PrepareCommit                                 (every COMMIT marker written)
//! CompleteAbort     <- PrepareAbort                                  (every ABORT marker written)
//! Dead              <- Empty, CompleteCommit, CompleteAbort          (transactional id expired: tombstone)
//! PrepareEpochFence <- Ongoing                                       (never written: becomes PrepareAbort)
//! ```
//!
//! # Invariants
//! - At most one transition is pending per transactional id (`pending`); while one is, every other
//!   request for the id gets CONCURRENT_TRANSACTIONS.
//! - A transition is applied only if it is legal from the current state (asserted: an illegal one is a
//!   coordinator bug, not a client error).
//! - Empty and Complete* hold no partitions; Ongoing and Prepare* hold the transaction's partitions.

use std::collections::BTreeSet;

/// No producer id (Kafka's `RecordBatch.NO_PRODUCER_ID`).
pub const NO_PRODUCER_ID: i64 = -1;
/// No producer epoch (Kafka's `RecordBatch.NO_PRODUCER_EPOCH`).
pub const NO_PRODUCER_EPOCH: i16 = -1;

/// A partition of a transaction: (topic, index).
pub type TxnPartition = (String, i32);

/// Kafka's `TransactionState`, with its id as stored in `TransactionLogValue.TransactionStatus`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum TransactionState {
    Empty = 0,
    Ongoing = 1,
    PrepareCommit = 2,
    PrepareAbort = 3,
    CompleteCommit = 4,
    CompleteAbort = 5,
    Dead = 6,
    PrepareEpochFence = 7,
}

impl TransactionState {
    pub const ALL: [TransactionState; 8] = [
        TransactionState::Empty,
        TransactionState::Ongoing,
        TransactionState::PrepareCommit,
        TransactionState::PrepareAbort,
        TransactionState::CompleteCommit,
        TransactionState::CompleteAbort,
        TransactionState::Dead,
        TransactionState::PrepareEpochFence,
    ];

    pub fn id(self) -> i8 {
        self as i8
    }

    pub fn from_id(id: i8) -> Option<TransactionState> {
        TransactionState::ALL
            .into_iter()
            .find(|state| state.id() == id)
    }

    /// Kafka's name (DescribeTransactions, ListTransactions and their filters).
    pub fn name(self) -> &'static str {
        match self {
            TransactionState::Empty => "Empty",
            TransactionState::Ongoing => "Ongoing",
            TransactionState::PrepareCommit => "PrepareCommit",
            TransactionState::PrepareAbort => "PrepareAbort",
            TransactionState::CompleteCommit => "CompleteCommit",
            TransactionState::CompleteAbort => "CompleteAbort",
            TransactionState::Dead => "Dead",
            TransactionState::PrepareEpochFence => "PrepareEpochFence",
        }
    }

    pub fn from_name(name: &str) -> Option<TransactionState> {
        TransactionState::ALL
            .into_iter()
            .find(|state| state.name() == name)
    }

    /// The states a transition to `self` may start from.
    pub fn valid_previous_states(self) -> &'static [TransactionState] {
        use TransactionState::*;
        match self {
            Empty => &[Empty, CompleteCommit, CompleteAbort],
            Ongoing => &[Ongoing, Empty, CompleteCommit, CompleteAbort],
            PrepareCommit => &[Ongoing],
            PrepareAbort => &[Ongoing, PrepareEpochFence],
            CompleteCommit => &[PrepareCommit],
            CompleteAbort => &[PrepareAbort],
            Dead => &[Empty, CompleteCommit, CompleteAbort],
            PrepareEpochFence => &[Ongoing],
        }
    }

    /// Whether the transactional id has no transaction in progress (it may start one or expire).
    pub fn is_idle(self) -> bool {
        matches!(
            self,
            TransactionState::Empty
                | TransactionState::CompleteCommit
                | TransactionState::CompleteAbort
        )
    }
}

/// What a transition writes: the whole metadata after it (Kafka's `TxnTransitMetadata`).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Transit {
    pub producer_id: i64,
    pub last_producer_id: i64,
    pub producer_epoch: i16,
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TransactionState,
    pub partitions: BTreeSet<TxnPartition>,
    pub start_timestamp_ms: i64,
    pub last_update_timestamp_ms: i64,
}

/// One transactional id's metadata.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct TransactionMetadata {
    pub transactional_id: String,
    pub producer_id: i64,
    /// The producer id before the last rotation (epoch exhaustion), for a retried InitProducerId.
    pub last_producer_id: i64,
    pub producer_epoch: i16,
    /// The epoch before the last bump, for a retried InitProducerId (KIP-360); not stored.
    pub last_producer_epoch: i16,
    pub timeout_ms: i32,
    pub state: TransactionState,
    pub partitions: BTreeSet<TxnPartition>,
    /// When the current transaction began (-1: none).
    pub start_timestamp_ms: i64,
    pub last_update_timestamp_ms: i64,
    /// The state of a transition being written, if any.
    pub pending: Option<TransactionState>,
    /// An epoch fence whose write failed: the next fence reuses its epoch instead of bumping again.
    pub has_failed_epoch_fence: bool,
}

impl TransactionMetadata {
    /// A new transactional id (state Empty, no epoch yet).
    pub fn new(
        transactional_id: String,
        producer_id: i64,
        timeout_ms: i32,
        now_ms: i64,
    ) -> TransactionMetadata {
        TransactionMetadata {
            transactional_id,
            producer_id,
            last_producer_id: NO_PRODUCER_ID,
            producer_epoch: NO_PRODUCER_EPOCH,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms,
            state: TransactionState::Empty,
            partitions: BTreeSet::new(),
            start_timestamp_ms: -1,
            last_update_timestamp_ms: now_ms,
            pending: None,
            has_failed_epoch_fence: false,
        }
    }

    /// Metadata as replayed from a stored transit.
    pub fn restored(transactional_id: String, stored: Transit) -> TransactionMetadata {
        TransactionMetadata {
            transactional_id,
            producer_id: stored.producer_id,
            last_producer_id: stored.last_producer_id,
            producer_epoch: stored.producer_epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            timeout_ms: stored.timeout_ms,
            state: stored.state,
            partitions: stored.partitions,
            start_timestamp_ms: stored.start_timestamp_ms,
            last_update_timestamp_ms: stored.last_update_timestamp_ms,
            pending: None,
            has_failed_epoch_fence: false,
        }
    }

    pub fn is_pending(&self) -> bool {
        self.pending.is_some()
    }

    /// Whether the epoch cannot be bumped again: the producer id must change (Kafka reserves the last
    /// value for fencing).
    pub fn is_epoch_exhausted(epoch: i16) -> bool {
        epoch >= i16::MAX - 1
    }

    pub fn is_producer_epoch_exhausted(&self) -> bool {
        TransactionMetadata::is_epoch_exhausted(self.producer_epoch)
    }

    /// The metadata as it stands (a transit to the current state, for rewriting it).
    pub fn current(&self) -> Transit {
        Transit {
            producer_id: self.producer_id,
            last_producer_id: self.last_producer_id,
            producer_epoch: self.producer_epoch,
            last_producer_epoch: self.last_producer_epoch,
            timeout_ms: self.timeout_ms,
            state: self.state,
            partitions: self.partitions.clone(),
            start_timestamp_ms: self.start_timestamp_ms,
            last_update_timestamp_ms: self.last_update_timestamp_ms,
        }
    }

    /// Marks `transit` pending (asserting it is legal from here) and returns it for writing.
    fn prepare(&mut self, transit: Transit) -> Transit {
        assert!(
            self.pending.is_none(),
            "{}: a transition to {:?} while one to {:?} is pending",
            self.transactional_id,
            transit.state,
            self.pending
        );
        assert!(
            transit.state.valid_previous_states().contains(&self.state),
            "{}: illegal transition {:?} -> {:?}",
            self.transactional_id,
            self.state,
            transit.state
        );
        self.pending = Some(transit.state);
        transit
    }

    /// InitProducerId on an idle id: the epoch bumped (KIP-360: `expected_epoch` is the epoch the
    /// producer holds; a retry of a bump it did not hear the answer to gets the same epoch again).
    /// PRODUCER_FENCED when the producer's epoch is neither the current nor the previous one.
    pub fn prepare_increment_epoch(
        &mut self,
        timeout_ms: i32,
        expected_epoch: Option<i16>,
        now_ms: i64,
    ) -> Result<Transit, kafka_protocol::error::ResponseError> {
        assert!(
            !self.is_producer_epoch_exhausted(),
            "epoch exhaustion rotates the producer id instead"
        );
        let bumped = self.producer_epoch + 1;
        let (epoch, last_epoch) = match expected_epoch {
            None => (bumped, NO_PRODUCER_EPOCH),
            Some(expected)
                if self.producer_epoch == NO_PRODUCER_EPOCH || expected == self.producer_epoch =>
            {
                (bumped, self.producer_epoch)
            }
            Some(expected) if expected == self.last_producer_epoch => {
                (self.producer_epoch, self.last_producer_epoch)
            }
            Some(_) => return Err(kafka_protocol::error::ResponseError::ProducerFenced),
        };
        Ok(self.prepare(Transit {
            producer_epoch: epoch,
            last_producer_epoch: last_epoch,
            timeout_ms,
            state: TransactionState::Empty,
            partitions: BTreeSet::new(),
            start_timestamp_ms: -1,
            last_update_timestamp_ms: now_ms,
            ..self.current()
        }))
    }

    /// InitProducerId with the epoch exhausted: a new producer id at epoch 0.
    pub fn prepare_producer_id_rotation(
        &mut self,
        new_producer_id: i64,
        timeout_ms: i32,
        now_ms: i64,
        record_last_epoch: bool,
    ) -> Transit {
        let last_producer_epoch = if record_last_epoch {
            self.producer_epoch
        } else {
            NO_PRODUCER_EPOCH
        };
        self.prepare(Transit {
            producer_id: new_producer_id,
            last_producer_id: self.producer_id,
            producer_epoch: 0,
            last_producer_epoch,
            timeout_ms,
            state: TransactionState::Empty,
            partitions: BTreeSet::new(),
            start_timestamp_ms: -1,
            last_update_timestamp_ms: now_ms,
        })
    }

    /// Fencing the producer of an ongoing transaction (a new InitProducerId, or the timeout): the
    /// epoch bumped, the transaction then aborted with it. Never written itself.
    pub fn prepare_fence_epoch(&mut self) -> Transit {
        assert!(
            self.producer_epoch < i16::MAX,
            "no epoch left to fence with"
        );
        let epoch = if self.has_failed_epoch_fence {
            self.producer_epoch
        } else {
            self.producer_epoch + 1
        };
        self.prepare(Transit {
            producer_epoch: epoch,
            last_producer_epoch: NO_PRODUCER_EPOCH,
            state: TransactionState::PrepareEpochFence,
            ..self.current()
        })
    }

    /// Fences the producer of the ongoing transaction and aborts it (Kafka's epoch fence followed by
    /// `endTransaction(ABORT)`): the epoch is bumped in memory at once (so the old producer is fenced
    /// even if the write fails, and a failed fence is not bumped twice) and PrepareAbort is prepared at
    /// the bumped epoch.
    pub fn prepare_fenced_abort(&mut self, now_ms: i64) -> Transit {
        let fence = self.prepare_fence_epoch();
        self.pending = None;
        self.producer_epoch = fence.producer_epoch;
        self.last_producer_epoch = NO_PRODUCER_EPOCH;
        self.prepare_abort_or_commit(false, now_ms)
    }

    /// AddPartitionsToTxn / AddOffsetsToTxn: the partitions join the transaction (which starts now if
    /// none was ongoing).
    pub fn prepare_add_partitions(
        &mut self,
        added: impl IntoIterator<Item = TxnPartition>,
        now_ms: i64,
    ) -> Transit {
        let start_timestamp_ms = if self.state.is_idle() {
            now_ms
        } else {
            self.start_timestamp_ms
        };
        let mut partitions = self.partitions.clone();
        partitions.extend(added);
        self.prepare(Transit {
            state: TransactionState::Ongoing,
            partitions,
            start_timestamp_ms,
            last_update_timestamp_ms: now_ms,
            ..self.current()
        })
    }

    /// EndTxn (or an abort by the coordinator): PrepareCommit or PrepareAbort, same partitions.
    pub fn prepare_abort_or_commit(&mut self, commit: bool, now_ms: i64) -> Transit {
        let state = if commit {
            TransactionState::PrepareCommit
        } else {
            TransactionState::PrepareAbort
        };
        self.prepare(Transit {
            state,
            last_update_timestamp_ms: now_ms,
            ..self.current()
        })
    }

    /// Every marker written: CompleteCommit or CompleteAbort, no partitions.
    pub fn prepare_complete(&mut self, now_ms: i64) -> Transit {
        let state = match self.state {
            TransactionState::PrepareCommit => TransactionState::CompleteCommit,
            TransactionState::PrepareAbort => TransactionState::CompleteAbort,
            other => panic!(
                "{}: completing a transaction in state {other:?}",
                self.transactional_id
            ),
        };
        self.prepare(Transit {
            state,
            partitions: BTreeSet::new(),
            last_update_timestamp_ms: now_ms,
            ..self.current()
        })
    }

    /// Expiry of an idle transactional id (written as a tombstone).
    pub fn prepare_dead(&mut self) -> Transit {
        self.prepare(Transit {
            state: TransactionState::Dead,
            partitions: BTreeSet::new(),
            ..self.current()
        })
    }

    /// The pending transition was written: it becomes the state.
    pub fn complete_transition(&mut self, transit: Transit) {
        assert_eq!(
            self.pending,
            Some(transit.state),
            "{}: completing a transition that is not pending",
            self.transactional_id
        );
        assert!(
            transit.state.valid_previous_states().contains(&self.state),
            "{}: illegal transition {:?} -> {:?}",
            self.transactional_id,
            self.state,
            transit.state
        );
        self.pending = None;
        self.producer_id = transit.producer_id;
        self.last_producer_id = transit.last_producer_id;
        self.producer_epoch = transit.producer_epoch;
        self.last_producer_epoch = transit.last_producer_epoch;
        self.timeout_ms = transit.timeout_ms;
        self.state = transit.state;
        self.partitions = transit.partitions;
        self.start_timestamp_ms = transit.start_timestamp_ms;
        self.last_update_timestamp_ms = transit.last_update_timestamp_ms;
    }

    /// The pending transition could not be written: nothing changed.
    pub fn abandon_transition(&mut self) {
        self.pending = None;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::error::ResponseError;

    fn fresh() -> TransactionMetadata {
        TransactionMetadata::new("txn".into(), 1000, 60_000, 1)
    }

    fn apply(metadata: &mut TransactionMetadata, transit: Transit) {
        metadata.complete_transition(transit);
    }

    #[test]
    fn a_commit_cycle_moves_through_the_states() {
        let mut metadata = fresh();
        let transit = metadata.prepare_increment_epoch(60_000, None, 2).unwrap();
        assert!(metadata.is_pending());
        apply(&mut metadata, transit);
        assert_eq!(
            (metadata.state, metadata.producer_epoch),
            (TransactionState::Empty, 0)
        );
        let transit = metadata.prepare_add_partitions([("t".to_string(), 0)], 10);
        apply(&mut metadata, transit);
        assert_eq!(metadata.state, TransactionState::Ongoing);
        assert_eq!(metadata.start_timestamp_ms, 10);
        let transit = metadata.prepare_add_partitions([("t".to_string(), 1)], 20);
        apply(&mut metadata, transit);
        assert_eq!(
            metadata.start_timestamp_ms, 10,
            "the transaction started once"
        );
        assert_eq!(metadata.partitions.len(), 2);
        let transit = metadata.prepare_abort_or_commit(true, 30);
        apply(&mut metadata, transit);
        assert_eq!(metadata.state, TransactionState::PrepareCommit);
        let transit = metadata.prepare_complete(40);
        apply(&mut metadata, transit);
        assert_eq!(metadata.state, TransactionState::CompleteCommit);
        assert!(metadata.partitions.is_empty());
        let transit = metadata.prepare_dead();
        apply(&mut metadata, transit);
        assert_eq!(metadata.state, TransactionState::Dead);
    }

    #[test]
    fn fencing_bumps_the_epoch_and_aborts() {
        let mut metadata = fresh();
        let transit = metadata.prepare_increment_epoch(60_000, None, 2).unwrap();
        apply(&mut metadata, transit);
        let transit = metadata.prepare_add_partitions([("t".to_string(), 0)], 10);
        apply(&mut metadata, transit);
        // The fence is never written: it turns into PrepareAbort at the bumped epoch.
        let abort = metadata.prepare_fenced_abort(20);
        assert_eq!(
            (abort.state, abort.producer_epoch),
            (TransactionState::PrepareAbort, 1)
        );
        assert_eq!(metadata.producer_epoch, 1, "fenced at once");
        // The write failed: a second fence does not bump again.
        metadata.abandon_transition();
        metadata.has_failed_epoch_fence = true;
        let abort = metadata.prepare_fenced_abort(30);
        assert_eq!(abort.producer_epoch, 1);
        apply(&mut metadata, abort);
        assert_eq!(metadata.state, TransactionState::PrepareAbort);
    }

    #[test]
    fn kip_360_retries_get_the_same_epoch_and_strangers_are_fenced() {
        let mut metadata = fresh();
        let transit = metadata.prepare_increment_epoch(60_000, None, 2).unwrap();
        apply(&mut metadata, transit);
        let transit = metadata
            .prepare_increment_epoch(60_000, Some(0), 3)
            .unwrap();
        apply(&mut metadata, transit);
        assert_eq!(
            (metadata.producer_epoch, metadata.last_producer_epoch),
            (1, 0)
        );
        // A retry with the epoch before the bump gets the bumped epoch again.
        let transit = metadata
            .prepare_increment_epoch(60_000, Some(0), 4)
            .unwrap();
        assert_eq!(transit.producer_epoch, 1);
        metadata.abandon_transition();
        assert_eq!(
            metadata.prepare_increment_epoch(60_000, Some(7), 4),
            Err(ResponseError::ProducerFenced)
        );
    }

    #[test]
    fn epoch_exhaustion_rotates_the_producer_id() {
        let mut metadata = fresh();
        metadata.producer_epoch = i16::MAX - 1;
        assert!(metadata.is_producer_epoch_exhausted());
        let transit = metadata.prepare_producer_id_rotation(2000, 60_000, 5, true);
        apply(&mut metadata, transit);
        assert_eq!(
            (
                metadata.producer_id,
                metadata.producer_epoch,
                metadata.last_producer_id
            ),
            (2000, 0, 1000)
        );
    }

    #[test]
    #[should_panic(expected = "illegal transition")]
    fn an_illegal_transition_is_a_bug() {
        let mut metadata = fresh();
        metadata.prepare_abort_or_commit(true, 1);
    }

    #[test]
    #[should_panic(expected = "pending")]
    fn two_pending_transitions_are_a_bug() {
        let mut metadata = fresh();
        metadata.prepare_add_partitions([("t".to_string(), 0)], 1);
        metadata.prepare_add_partitions([("t".to_string(), 1)], 1);
    }

    #[test]
    fn every_state_has_its_kafka_id_and_name() {
        for state in TransactionState::ALL {
            assert_eq!(TransactionState::from_id(state.id()), Some(state));
            assert_eq!(TransactionState::from_name(state.name()), Some(state));
        }
        assert_eq!(TransactionState::PrepareEpochFence.id(), 7);
        assert_eq!(TransactionState::from_id(8), None);
    }
}
