//! One coordinator partition: the transactional ids that hash to one partition of `__transaction_state`,
//! on the shard that owns that partition.
//!
//! Each operation checks the id's metadata and prepares a transition synchronously (no borrow is held
//! across an await), marks it pending, appends it to the partition, and only then applies and
//! acknowledges it (a failed append abandons it). While a transition is pending, other requests for the
//! id get CONCURRENT_TRANSACTIONS, so appends of one id are in the order they were prepared and replay
//! rebuilds the same state.
//!
//! Layout: this file is the partition's state and the client operations (InitProducerId,
//! AddPartitionsToTxn and its verify-only form, EndTxn, DescribeTransactions, ListTransactions);
//! `coordinator/load.rs` replays the partition when it opens; `coordinator/completion.rs` sends a
//! prepared transaction's markers and completes it, and aborts timed-out transactions and removes
//! expired ids.

mod completion;
mod load;

use super::protocol::{DescribedTransaction, ListFilters, ListedTransaction};
use super::records::{self, TxnRecord};
use super::state::{TransactionMetadata, TransactionState, Transit, TxnPartition};
use super::TxnServices;
use crate::config::TransactionConfig;
use crate::partition::Partition;
use kafka_protocol::error::ResponseError;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;

pub struct CoordinatorPartition {
    partition: Rc<Partition>,
    config: TransactionConfig,
    services: Rc<dyn TxnServices>,
    /// The partition's leader epoch when this coordinator started: written into every marker.
    coordinator_epoch: i32,
    load: Cell<LoadState>,
    transactions: RefCell<HashMap<String, TransactionMetadata>>,
}

/// Where a coordinator partition is in its life: requests are served only when `Loaded`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoadState {
    Loading,
    Loaded,
    Unloaded,
}

/// What InitProducerId decided for an existing id (decided without awaiting).
enum InitStep {
    /// Write this transition, then answer its producer id and epoch.
    Write(Transit),
    /// The epoch is exhausted: a new producer id is needed first.
    NeedProducerId,
    /// Fence the producer and abort its ongoing transaction; the client retries.
    FenceAndAbort,
}

impl CoordinatorPartition {
    pub fn new(
        partition: Rc<Partition>,
        config: TransactionConfig,
        services: Rc<dyn TxnServices>,
    ) -> CoordinatorPartition {
        let coordinator_epoch = partition.leader_epoch().0;
        CoordinatorPartition {
            partition,
            config,
            services,
            coordinator_epoch,
            load: Cell::new(LoadState::Loading),
            transactions: RefCell::new(HashMap::new()),
        }
    }

    pub fn index(&self) -> i32 {
        self.partition.index
    }

    pub fn coordinator_epoch(&self) -> i32 {
        self.coordinator_epoch
    }

    pub fn is_loaded(&self) -> bool {
        self.load.get() == LoadState::Loaded
    }

    /// The partition is gone: requests get NOT_COORDINATOR, marker sending stops.
    pub fn unload(&self) {
        self.load.set(LoadState::Unloaded);
        self.transactions.borrow_mut().clear();
    }

    /// A copy of one id's metadata (tests and diagnostics).
    pub fn metadata(&self, transactional_id: &str) -> Option<TransactionMetadata> {
        self.transactions.borrow().get(transactional_id).cloned()
    }

    /// Appends one id's transition (a tombstone for Dead); the error is the one a client expects
    /// (Kafka's mapping in `TransactionStateManager.appendTransactionToLog`).
    async fn append(&self, transactional_id: &str, transit: &Transit) -> Result<(), ResponseError> {
        let record = TxnRecord {
            transactional_id: transactional_id.to_string(),
            value: (transit.state != TransactionState::Dead).then(|| transit.clone()),
        };
        let batch = records::encode_batch(&[record], shard::task::wall_clock_ms());
        let append = self.partition.clone().append_replicated(
            batch,
            storage::batch::AppendOrigin::Client,
            crate::partition::COORDINATOR_WRITE_TIMEOUT,
        );
        append.await.map(|_| ()).map_err(|refusal| {
            tracing::warn!(partition = self.index(), code = ?refusal.error, message = %refusal.message, "cannot write transaction state");
            match refusal.error {
                ResponseError::UnknownTopicOrPartition
                | ResponseError::NotEnoughReplicas
                | ResponseError::NotEnoughReplicasAfterAppend
                | ResponseError::RequestTimedOut => ResponseError::CoordinatorNotAvailable,
                ResponseError::NotLeaderOrFollower | ResponseError::KafkaStorageError => {
                    ResponseError::NotCoordinator
                }
                _ => ResponseError::UnknownServerError,
            }
        })
    }

    /// Writes `transit` (pending on the id) and applies it once written; a failed write abandons it.
    /// NOT_COORDINATOR when the partition was unloaded meanwhile.
    async fn write(&self, transactional_id: &str, transit: Transit) -> Result<(), ResponseError> {
        let result = self.append(transactional_id, &transit).await;
        let mut transactions = self.transactions.borrow_mut();
        let Some(metadata) = transactions.get_mut(transactional_id) else {
            return Err(ResponseError::NotCoordinator);
        };
        if self.load.get() != LoadState::Loaded {
            return Err(ResponseError::NotCoordinator);
        }
        match result {
            Ok(()) => {
                let dead = transit.state == TransactionState::Dead;
                metadata.complete_transition(transit);
                if dead {
                    transactions.remove(transactional_id);
                }
                Ok(())
            }
            Err(error) => {
                metadata.abandon_transition();
                Err(error)
            }
        }
    }

    /// InitProducerId with a transactional id: the producer id and epoch the producer is to use.
    pub async fn init_producer_id(
        self: &Rc<Self>,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    ) -> Result<(i64, i16), ResponseError> {
        if timeout_ms <= 0 || timeout_ms > self.config.max_timeout_ms {
            return Err(ResponseError::InvalidTransactionTimeout);
        }
        if !self.transactions.borrow().contains_key(transactional_id) {
            let producer_id = self.services.allocate_producer_id().await?;
            if !self.is_loaded() {
                return Err(ResponseError::NotCoordinator);
            }
            let now_ms = shard::task::wall_clock_ms();
            self.transactions
                .borrow_mut()
                .entry(transactional_id.to_string())
                .or_insert_with(|| {
                    TransactionMetadata::new(
                        transactional_id.to_string(),
                        producer_id,
                        timeout_ms,
                        now_ms,
                    )
                });
        }
        let mut new_producer_id = None;
        // At most two rounds: the second has the new producer id an exhausted epoch needs.
        loop {
            let step = self.init_step(transactional_id, timeout_ms, expected, new_producer_id)?;
            match step {
                InitStep::Write(transit) => {
                    let answer = (transit.producer_id, transit.producer_epoch);
                    self.write(transactional_id, transit).await?;
                    tracing::info!(
                        transactional_id,
                        producer_id = answer.0,
                        epoch = answer.1,
                        partition = self.index(),
                        "transactional id initialized"
                    );
                    return Ok(answer);
                }
                InitStep::NeedProducerId if new_producer_id.is_none() => {
                    new_producer_id = Some(self.services.allocate_producer_id().await?);
                }
                InitStep::NeedProducerId => return Err(ResponseError::ConcurrentTransactions),
                InitStep::FenceAndAbort => {
                    self.fence_and_abort(transactional_id).await?;
                    return Err(ResponseError::ConcurrentTransactions);
                }
            }
        }
    }

    /// Kafka's `prepareInitProducerIdTransit`, without awaiting.
    fn init_step(
        &self,
        transactional_id: &str,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
        new_producer_id: Option<i64>,
    ) -> Result<InitStep, ResponseError> {
        let mut transactions = self.transactions.borrow_mut();
        let metadata = transactions
            .get_mut(transactional_id)
            .ok_or(ResponseError::NotCoordinator)?;
        if metadata.is_pending() {
            return Err(ResponseError::ConcurrentTransactions);
        }
        // A producer naming its id and epoch is fenced unless the id is new, it holds the current
        // producer id, or it holds the previous one with an exhausted epoch (a retried rotation).
        let valid = |(producer_id, epoch): (i64, i16)| {
            metadata.producer_epoch == super::state::NO_PRODUCER_EPOCH
                || producer_id == metadata.producer_id
                || (producer_id == metadata.last_producer_id
                    && TransactionMetadata::is_epoch_exhausted(epoch))
        };
        if !expected.is_none_or(valid) {
            return Err(ResponseError::ProducerFenced);
        }
        let now_ms = shard::task::wall_clock_ms();
        match metadata.state {
            TransactionState::PrepareCommit | TransactionState::PrepareAbort => {
                Err(ResponseError::ConcurrentTransactions)
            }
            TransactionState::Empty
            | TransactionState::CompleteCommit
            | TransactionState::CompleteAbort => {
                if metadata.is_producer_epoch_exhausted()
                    && expected.is_none_or(|(_, epoch)| epoch == metadata.producer_epoch)
                {
                    let Some(producer_id) = new_producer_id else {
                        return Ok(InitStep::NeedProducerId);
                    };
                    return Ok(InitStep::Write(metadata.prepare_producer_id_rotation(
                        producer_id,
                        timeout_ms,
                        now_ms,
                        expected.is_some(),
                    )));
                }
                metadata
                    .prepare_increment_epoch(timeout_ms, expected.map(|(_, epoch)| epoch), now_ms)
                    .map(InitStep::Write)
            }
            TransactionState::Ongoing => Ok(InitStep::FenceAndAbort),
            TransactionState::Dead | TransactionState::PrepareEpochFence => {
                tracing::error!(transactional_id, state = ?metadata.state, "transactional id in a state it never rests in");
                Err(ResponseError::ConcurrentTransactions)
            }
        }
    }

    /// AddPartitionsToTxn: the partitions join the id's transaction (starting one if none is ongoing).
    pub async fn add_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<TxnPartition>,
    ) -> Result<(), ResponseError> {
        let transit = {
            let mut transactions = self.transactions.borrow_mut();
            let metadata = transactions
                .get_mut(transactional_id)
                .ok_or(ResponseError::InvalidProducerIdMapping)?;
            if metadata.producer_id != producer_id {
                return Err(ResponseError::InvalidProducerIdMapping);
            }
            if metadata.producer_epoch != producer_epoch {
                return Err(ResponseError::ProducerFenced);
            }
            if metadata.is_pending()
                || matches!(
                    metadata.state,
                    TransactionState::PrepareCommit | TransactionState::PrepareAbort
                )
            {
                return Err(ResponseError::ConcurrentTransactions);
            }
            if metadata.state == TransactionState::Ongoing
                && partitions
                    .iter()
                    .all(|partition| metadata.partitions.contains(partition))
            {
                return Ok(());
            }
            if !matches!(
                metadata.state,
                TransactionState::Ongoing
                    | TransactionState::Empty
                    | TransactionState::CompleteCommit
                    | TransactionState::CompleteAbort
            ) {
                return Err(ResponseError::ConcurrentTransactions);
            }
            metadata.prepare_add_partitions(partitions, shard::task::wall_clock_ms())
        };
        self.write(transactional_id, transit).await
    }

    /// AddPartitionsToTxn `verify_only` (KIP-890): each partition's standing in the ongoing transaction
    /// (None: added; INVALID_TXN_STATE: not). Nothing is written.
    pub fn verify_partitions(
        &self,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        partitions: &[TxnPartition],
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        let transactions = self.transactions.borrow();
        let metadata = transactions
            .get(transactional_id)
            .ok_or(ResponseError::InvalidProducerIdMapping)?;
        if metadata.producer_id != producer_id {
            return Err(ResponseError::InvalidProducerIdMapping);
        }
        if metadata.producer_epoch != producer_epoch {
            return Err(ResponseError::ProducerFenced);
        }
        if matches!(
            metadata.state,
            TransactionState::PrepareCommit | TransactionState::PrepareAbort
        ) {
            return Err(ResponseError::ConcurrentTransactions);
        }
        Ok(partitions
            .iter()
            .map(|partition| {
                (!metadata.partitions.contains(partition)).then_some(ResponseError::InvalidTxnState)
            })
            .collect())
    }

    /// EndTxn from the producer: PrepareCommit or PrepareAbort is written and answered; the markers and
    /// the completion follow in the background.
    pub async fn end_transaction(
        self: &Rc<Self>,
        transactional_id: &str,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    ) -> Result<(), ResponseError> {
        let transit = {
            let mut transactions = self.transactions.borrow_mut();
            let metadata = transactions
                .get_mut(transactional_id)
                .ok_or(ResponseError::InvalidProducerIdMapping)?;
            if metadata.producer_id != producer_id {
                return Err(ResponseError::InvalidProducerIdMapping);
            }
            if metadata.producer_epoch != producer_epoch {
                return Err(ResponseError::ProducerFenced);
            }
            if metadata.is_pending() {
                return Err(ResponseError::ConcurrentTransactions);
            }
            use TransactionState::*;
            match (metadata.state, commit) {
                (Ongoing, _) => {
                    metadata.prepare_abort_or_commit(commit, shard::task::wall_clock_ms())
                }
                (CompleteCommit, true) | (CompleteAbort, false) => return Ok(()),
                (PrepareCommit, true) | (PrepareAbort, false) => {
                    return Err(ResponseError::ConcurrentTransactions)
                }
                (state, _) => {
                    tracing::debug!(
                        transactional_id,
                        ?state,
                        commit,
                        "EndTxn in a state that cannot end so"
                    );
                    return Err(ResponseError::InvalidTxnState);
                }
            }
        };
        self.write_prepared(transactional_id, transit).await
    }

    /// Fences the producer of the id's ongoing transaction (epoch bump) and aborts the transaction.
    async fn fence_and_abort(self: &Rc<Self>, transactional_id: &str) -> Result<(), ResponseError> {
        let transit = {
            let mut transactions = self.transactions.borrow_mut();
            let metadata = transactions
                .get_mut(transactional_id)
                .ok_or(ResponseError::NotCoordinator)?;
            if metadata.is_pending() || metadata.state != TransactionState::Ongoing {
                return Err(ResponseError::ConcurrentTransactions);
            }
            metadata.prepare_fenced_abort(shard::task::wall_clock_ms())
        };
        tracing::info!(
            transactional_id,
            epoch = transit.producer_epoch,
            "fencing the producer and aborting its transaction"
        );
        let result = self.write_prepared(transactional_id, transit).await;
        if result.is_err() {
            if let Some(metadata) = self.transactions.borrow_mut().get_mut(transactional_id) {
                metadata.has_failed_epoch_fence = true;
            }
        }
        result
    }

    /// Writes a PrepareCommit/PrepareAbort transition and, once written, starts sending its markers.
    async fn write_prepared(
        self: &Rc<Self>,
        transactional_id: &str,
        transit: Transit,
    ) -> Result<(), ResponseError> {
        let marker = storage::TxnMarker {
            producer_id: transit.producer_id,
            producer_epoch: transit.producer_epoch,
            coordinator_epoch: self.coordinator_epoch,
            commit: transit.state == TransactionState::PrepareCommit,
        };
        let partitions: Vec<TxnPartition> = transit.partitions.iter().cloned().collect();
        self.write(transactional_id, transit).await?;
        let coordinator = self.clone();
        let transactional_id = transactional_id.to_string();
        shard::task::spawn(async move {
            coordinator
                .complete_transaction(transactional_id, marker, partitions)
                .await
        });
        Ok(())
    }

    /// DescribeTransactions of one id (TRANSACTIONAL_ID_NOT_FOUND when it is unknown here).
    pub fn describe(&self, transactional_id: &str) -> Result<DescribedTransaction, ResponseError> {
        let transactions = self.transactions.borrow();
        let metadata = transactions
            .get(transactional_id)
            .filter(|metadata| metadata.state != TransactionState::Dead)
            .ok_or(ResponseError::TransactionalIdNotFound)?;
        Ok(DescribedTransaction {
            state: metadata.state.name(),
            timeout_ms: metadata.timeout_ms,
            start_timestamp_ms: metadata.start_timestamp_ms,
            producer_id: metadata.producer_id,
            producer_epoch: metadata.producer_epoch,
            partitions: metadata.partitions.iter().cloned().collect(),
        })
    }

    /// The ids here that pass `filters` (ListTransactions).
    pub fn list(&self, filters: &ListFilters, now_ms: i64) -> Vec<ListedTransaction> {
        self.transactions
            .borrow()
            .values()
            .filter(|metadata| metadata.state != TransactionState::Dead)
            .filter(|metadata| {
                filters.states.is_empty() || filters.states.contains(&metadata.state)
            })
            .filter(|metadata| {
                filters.producer_ids.is_empty()
                    || filters.producer_ids.contains(&metadata.producer_id)
            })
            .filter(|metadata| {
                filters.duration_ms < 0
                    || (metadata.start_timestamp_ms >= 0
                        && now_ms - metadata.start_timestamp_ms > filters.duration_ms)
            })
            .map(|metadata| ListedTransaction {
                transactional_id: metadata.transactional_id.clone(),
                producer_id: metadata.producer_id,
                state: metadata.state.name(),
            })
            .collect()
    }
}
