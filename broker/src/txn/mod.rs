//! The transaction coordinator: transactional ids, their producer ids and epochs, and two-phase commit
//! of their transactions (Kafka's `TransactionCoordinator`, `TransactionStateManager` and
//! `TransactionMarkerChannelManager`).
//!
//! Layout: `state.rs` is one transactional id's state machine (no I/O); `records.rs` the record formats of
//! `__transaction_state`; `coordinator.rs` one coordinator partition: the ids that hash to one partition
//! of `__transaction_state`, their operations, persistence, replay (`coordinator/load.rs`), markers and
//! timers (`coordinator/completion.rs`). This file places ids (the same hash as groups: Kafka's
//! `partitionFor`), keeps each shard's coordinator partitions and runs their timers; `protocol.rs` is the
//! cross-shard protocol, served and sent by `txn_router.rs`, which also provides the coordinator's
//! [`TxnServices`] (producer ids from the control plane, markers to the partitions' shards).
//!
//! Every state change is appended to the id's partition before it is acknowledged, and replayed when the
//! partition opens; until replay ends, requests get COORDINATOR_LOAD_IN_PROGRESS. The coordinator epoch
//! written into markers is the `__transaction_state` partition's leader epoch.

pub mod coordinator;
pub mod protocol;
pub mod records;
pub mod state;

use crate::config::TransactionConfig;
use crate::metadata::ClusterMetadata;
use crate::partition::manager::PartitionListener;
use crate::partition::requests::{MarkerItem, MarkerOutcome};
use crate::partition::Partition;
use coordinator::CoordinatorPartition;
use kafka_protocol::error::ResponseError;
use shard::ShardId;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::time::Duration;

pub use crate::internal_topics::TRANSACTION_STATE_TOPIC;

/// A future of the shard (not `Send`).
pub type LocalFuture<T> = Pin<Box<dyn Future<Output = T>>>;

/// What a coordinator partition needs from the rest of the broker.
pub trait TxnServices {
    /// A fresh producer id (the control plane's persistent counter).
    fn allocate_producer_id(&self) -> LocalFuture<Result<i64, ResponseError>>;
    /// Writes markers to partitions wherever they live; the outcomes in item order.
    /// UNKNOWN_TOPIC_OR_PARTITION only for a partition that no longer exists (its topic was deleted).
    fn write_markers(&self, items: Vec<MarkerItem>) -> LocalFuture<Vec<MarkerOutcome>>;
}

/// The partition of `__transaction_state` that coordinates `transactional_id` (the same hash as groups).
pub fn partition_for(transactional_id: &str, partitions: i32) -> i32 {
    crate::group::partition_for(transactional_id, partitions)
}

/// Where `transactional_id` is coordinated: its partition and that partition's shard. None when
/// `__transaction_state` does not exist yet.
pub fn locate(metadata: &ClusterMetadata, transactional_id: &str) -> Option<(i32, ShardId)> {
    let topic = metadata.topics.get(TRANSACTION_STATE_TOPIC)?;
    let partition = partition_for(transactional_id, topic.partition_count());
    let shard = metadata.shard_of(TRANSACTION_STATE_TOPIC, partition)?;
    Some((partition, ShardId(shard)))
}

/// The coordinator partitions of one shard. It hears of its partitions as a partition lifecycle
/// listener: a `__transaction_state` partition led here gets a coordinator (which replays it), one
/// unloaded or deleted loses it.
pub struct TransactionCoordinator {
    config: TransactionConfig,
    services: RefCell<Option<Rc<dyn TxnServices>>>,
    partitions: RefCell<HashMap<i32, Rc<CoordinatorPartition>>>,
}

impl PartitionListener for TransactionCoordinator {
    fn became_leader(&self, partition: &Rc<Partition>) {
        if partition.topic == TRANSACTION_STATE_TOPIC {
            self.partition_opened(partition.clone());
        }
    }

    fn unloaded(&self, partition: &Partition) {
        if partition.topic == TRANSACTION_STATE_TOPIC {
            self.partition_closed(partition.index);
        }
    }

    fn deleted(&self, partition: &Partition) {
        self.unloaded(partition);
    }
}

impl TransactionCoordinator {
    pub fn new(config: TransactionConfig) -> TransactionCoordinator {
        TransactionCoordinator {
            config,
            services: RefCell::new(None),
            partitions: RefCell::default(),
        }
    }

    /// Gives the coordinator its services (before the first partition opens).
    pub fn set_services(&self, services: Rc<dyn TxnServices>) {
        *self.services.borrow_mut() = Some(services);
    }

    /// A `__transaction_state` partition opened on this shard: its coordinator starts loading.
    pub fn partition_opened(&self, partition: Rc<Partition>) {
        let Some(services) = self.services.borrow().clone() else {
            tracing::error!(
                partition = partition.index,
                "transaction coordinator has no services; partition not served"
            );
            return;
        };
        let coordinator = Rc::new(CoordinatorPartition::new(
            partition,
            self.config.clone(),
            services,
        ));
        if let Some(previous) = self
            .partitions
            .borrow_mut()
            .insert(coordinator.index(), coordinator.clone())
        {
            previous.unload();
        }
        shard::task::spawn(async move { coordinator.load().await });
    }

    pub fn partition_closed(&self, index: i32) {
        if let Some(coordinator) = self.partitions.borrow_mut().remove(&index) {
            coordinator.unload();
        }
    }

    pub fn get(&self, index: i32) -> Option<Rc<CoordinatorPartition>> {
        self.partitions.borrow().get(&index).cloned()
    }

    pub fn all(&self) -> Vec<Rc<CoordinatorPartition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    /// One pass aborting every transaction here past its timeout; how many were aborted.
    pub async fn abort_timed_out(&self) -> usize {
        let now_ms = shard::task::wall_clock_ms();
        let mut aborted = 0;
        for coordinator in self.all() {
            aborted += coordinator.abort_timed_out(now_ms).await;
        }
        aborted
    }

    /// One pass removing every transactional id here idle past `transactional.id.expiration.ms`; how
    /// many were removed.
    pub async fn remove_expired(&self) -> usize {
        let now_ms = shard::task::wall_clock_ms();
        let mut removed = 0;
        for coordinator in self.all() {
            removed += coordinator.remove_expired(now_ms).await;
        }
        removed
    }

    /// The shard's transaction timers, until `stop()` holds: every
    /// `transaction.abort.timed.out.transaction.cleanup.interval.ms` timed-out transactions are aborted
    /// (their producers fenced), every `transaction.remove.expired.transaction.cleanup.interval.ms`
    /// expired transactional ids removed.
    pub fn start_timers(self: &Rc<Self>, stop: impl Fn() -> bool + Clone + 'static) {
        let abort_interval = Duration::from_millis(self.config.abort_timed_out_interval_ms.max(1));
        let coordinator = self.clone();
        let stopped = stop.clone();
        shard::task::spawn(async move {
            loop {
                shard::task::sleep(abort_interval).await;
                if stopped() {
                    return;
                }
                coordinator.abort_timed_out().await;
            }
        });
        let remove_interval = Duration::from_millis(self.config.remove_expired_interval_ms.max(1));
        let coordinator = self.clone();
        shard::task::spawn(async move {
            loop {
                shard::task::sleep(remove_interval).await;
                if stop() {
                    return;
                }
                coordinator.remove_expired().await;
            }
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::TopicMetadata;

    #[test]
    fn a_transactional_id_is_located_like_a_group() {
        let mut metadata = ClusterMetadata::new_cluster();
        assert_eq!(locate(&metadata, "txn"), None);
        let shards = vec![0, 1, 1];
        metadata.topics.insert(
            TRANSACTION_STATE_TOPIC.to_string(),
            TopicMetadata {
                id: uuid::Uuid::new_v4(),
                shards: shards.clone(),
                configs: Default::default(),
                partitions: Vec::new(),
            },
        );
        for id in ["txn", "my-transactional-id", ""] {
            let partition = crate::group::partition_for(id, 3);
            assert_eq!(
                locate(&metadata, id),
                Some((partition, ShardId(shards[partition as usize])))
            );
        }
    }
}
