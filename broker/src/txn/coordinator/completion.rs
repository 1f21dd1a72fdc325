//! Completing a prepared transaction (Kafka's `TransactionMarkerChannelManager`): its COMMIT or ABORT
//! marker is written to every partition of the transaction, then CompleteCommit or CompleteAbort.
//!
//! Markers go out through the coordinator's [`TxnServices`](crate::txn::TxnServices), which groups
//! them by owning shard. A retriable failure (the partition not open yet, a storage error) is retried
//! with a growing backoff until it succeeds; a partition whose topic was deleted is skipped; a
//! coordinator that was unloaded, or whose markers are refused as fenced (a newer coordinator epoch),
//! stops. While a transaction is prepared, its id's requests get CONCURRENT_TRANSACTIONS.
//!
//! The timers of a coordinator partition are here too: aborting transactions past their timeout (the
//! producer's epoch is bumped first, so it is fenced) and removing transactional ids idle past
//! `transactional.id.expiration.ms` (a tombstone).

use super::{CoordinatorPartition, LoadState};
use crate::partition::requests::MarkerItem;
use crate::txn::state::{TransactionState, TxnPartition};
use kafka_protocol::error::ResponseError;
use std::rc::Rc;
use std::time::Duration;

const FIRST_RETRY_BACKOFF: Duration = Duration::from_millis(20);
const MAX_RETRY_BACKOFF: Duration = Duration::from_secs(1);

impl CoordinatorPartition {
    /// Whether this coordinator may still act for its partition.
    fn serving(&self) -> bool {
        self.load.get() == LoadState::Loaded
    }

    /// Writes `marker` to every partition of `transactional_id`'s prepared transaction, then completes
    /// it. Returns when done, or when this coordinator can no longer act.
    pub(crate) async fn complete_transaction(
        self: Rc<Self>,
        transactional_id: String,
        marker: storage::TxnMarker,
        partitions: Vec<TxnPartition>,
    ) {
        let mut remaining = partitions;
        let mut backoff = FIRST_RETRY_BACKOFF;
        while !remaining.is_empty() {
            if !self.serving() {
                return;
            }
            let items: Vec<MarkerItem> = remaining
                .iter()
                .map(|(topic, partition)| MarkerItem {
                    topic: topic.clone(),
                    partition: *partition,
                    marker,
                })
                .collect();
            let outcomes = self.services.write_markers(items).await;
            let mut retry = Vec::new();
            for (partition, outcome) in remaining.into_iter().zip(
                outcomes
                    .into_iter()
                    .chain(std::iter::repeat(Err(ResponseError::UnknownServerError))),
            ) {
                match outcome {
                    Ok(_) => {}
                    Err(ResponseError::UnknownTopicOrPartition) => {
                        tracing::info!(%transactional_id, topic = %partition.0, partition = partition.1, "partition deleted; no marker written");
                    }
                    Err(ResponseError::TransactionCoordinatorFenced) => {
                        tracing::warn!(%transactional_id, coordinator_epoch = marker.coordinator_epoch, "markers refused: a newer coordinator took over");
                        return;
                    }
                    Err(error) => {
                        tracing::debug!(%transactional_id, topic = %partition.0, partition = partition.1, ?error, "marker not written; retrying");
                        retry.push(partition);
                    }
                }
            }
            remaining = retry;
            if !remaining.is_empty() {
                shard::task::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
            }
        }
        let mut backoff = FIRST_RETRY_BACKOFF;
        loop {
            let transit = {
                let mut transactions = self.transactions.borrow_mut();
                let Some(metadata) = transactions.get_mut(&transactional_id) else {
                    return;
                };
                let prepared = matches!(
                    metadata.state,
                    TransactionState::PrepareCommit | TransactionState::PrepareAbort
                );
                if !self.serving()
                    || !prepared
                    || metadata.is_pending()
                    || metadata.producer_id != marker.producer_id
                    || metadata.producer_epoch != marker.producer_epoch
                {
                    return;
                }
                metadata.prepare_complete(shard::task::wall_clock_ms())
            };
            let state = transit.state;
            match self.write(&transactional_id, transit).await {
                Ok(()) => {
                    tracing::debug!(%transactional_id, ?state, "transaction completed");
                    return;
                }
                Err(ResponseError::NotCoordinator) => return,
                Err(error) => {
                    tracing::warn!(%transactional_id, ?error, "cannot complete the transaction; retrying");
                    shard::task::sleep(backoff).await;
                    backoff = (backoff * 2).min(MAX_RETRY_BACKOFF);
                }
            }
        }
    }

    /// Aborts every transaction here that has run past its timeout at `now_ms` (Kafka fences the
    /// producer with an epoch bump first, so the timed-out producer cannot go on). How many were aborted.
    pub async fn abort_timed_out(self: &Rc<Self>, now_ms: i64) -> usize {
        if !self.serving() {
            return 0;
        }
        let timed_out: Vec<String> = self
            .transactions
            .borrow()
            .values()
            .filter(|metadata| {
                metadata.state == TransactionState::Ongoing
                    && !metadata.is_pending()
                    && metadata.start_timestamp_ms + i64::from(metadata.timeout_ms) < now_ms
                    && metadata.producer_epoch < i16::MAX
            })
            .map(|metadata| metadata.transactional_id.clone())
            .collect();
        let mut aborted = 0;
        for transactional_id in timed_out {
            match self.fence_and_abort(&transactional_id).await {
                Ok(()) => {
                    tracing::info!(%transactional_id, "transaction timed out; aborted");
                    aborted += 1;
                }
                Err(error) => {
                    tracing::debug!(%transactional_id, ?error, "timed-out transaction not aborted now")
                }
            }
        }
        aborted
    }

    /// Removes every transactional id here without a transaction for `transactional.id.expiration.ms`
    /// at `now_ms` (a tombstone each). How many were removed.
    pub async fn remove_expired(&self, now_ms: i64) -> usize {
        if !self.serving() {
            return 0;
        }
        let expired: Vec<String> = self
            .transactions
            .borrow()
            .values()
            .filter(|metadata| {
                metadata.state.is_idle()
                    && !metadata.is_pending()
                    && metadata.last_update_timestamp_ms
                        <= now_ms.saturating_sub(self.config.id_expiration_ms)
            })
            .map(|metadata| metadata.transactional_id.clone())
            .collect();
        let mut removed = 0;
        for transactional_id in expired {
            let transit = {
                let mut transactions = self.transactions.borrow_mut();
                match transactions.get_mut(&transactional_id) {
                    Some(metadata) if metadata.state.is_idle() && !metadata.is_pending() => {
                        metadata.prepare_dead()
                    }
                    _ => continue,
                }
            };
            match self.write(&transactional_id, transit).await {
                Ok(()) => {
                    tracing::info!(%transactional_id, "transactional id expired; removed");
                    removed += 1;
                }
                Err(error) => {
                    tracing::warn!(%transactional_id, ?error, "cannot remove an expired transactional id")
                }
            }
        }
        removed
    }
}
