//! Delayed operations of one shard's partitions: fetches waiting for data (a high watermark — for
//! read_committed, a last stable offset — past what they saw) and produces waiting for the in-sync
//! replicas (acks=all). Each waits in its purgatory (`crate::purgatory`), keyed by partition, until an
//! event on one of its partitions satisfies it or its deadline passes on the purgatory's timing wheel.
//!
//! A partition calls [`DelayedOperations::high_watermark_moved`] whenever its high watermark or its
//! written end may have moved (followers' fetches wait on the latter), or it stops leading, and the manager does when a partition goes away (deleted, unloaded): the operations watching it
//! re-check their condition. A fetch waiting on a partition that is gone completes (its re-read reports
//! the partition unknown); a produce waiting on one that is gone runs out of time.

use super::{Partition, TopicPartition};
use crate::purgatory::{run_expiration, Purgatory, PurgatoryCounters};
use std::rc::{Rc, Weak};
use std::time::Instant;
use storage::types::Offset;

pub use crate::purgatory::Completion;

/// A partition a delayed fetch watches: the end it has seen there, and which end it reads up to.
pub struct WatchedPartition {
    pub partition: Weak<Partition>,
    pub key: TopicPartition,
    pub seen: Offset,
    pub read_committed: bool,
    /// A follower's fetch: it reads up to the leader's written end, so that is what it waits on —
    /// and on the high watermark moving past `seen_high_watermark` (what its last answer said), which
    /// the follower needs to serve consumers (KIP-392).
    pub replica: bool,
    pub seen_high_watermark: Offset,
}

/// The delayed fetches and produces of one shard.
pub struct DelayedOperations {
    fetches: Rc<Purgatory<TopicPartition>>,
    produces: Rc<Purgatory<TopicPartition>>,
}

impl Default for DelayedOperations {
    fn default() -> Self {
        DelayedOperations::new()
    }
}

impl DelayedOperations {
    pub fn new() -> DelayedOperations {
        let now = shard::task::now();
        DelayedOperations {
            fetches: Rc::new(Purgatory::new(now)),
            produces: Rc::new(Purgatory::new(now)),
        }
    }

    /// Spawns the expiration drivers of both purgatories; they return once `stop()` holds.
    pub fn start_expiration(&self, stop: impl Fn() -> bool + Clone + 'static) {
        shard::task::spawn(run_expiration(self.fetches.clone(), stop.clone()));
        shard::task::spawn(run_expiration(self.produces.clone(), stop));
    }

    /// `partition`'s high watermark may have moved, or it is gone: re-check what waits on it.
    pub fn high_watermark_moved(&self, partition: &TopicPartition) {
        self.fetches.check_and_complete(partition);
        self.produces.check_and_complete(partition);
    }

    /// Waits until one of `partitions` has an end past the offset seen on it (or is gone), or until
    /// `deadline`. The end is the high watermark, or for a read_committed fetch the last stable offset
    /// (Kafka's `DelayedFetch` by isolation level). The last stable offset moves only with the high
    /// watermark (a marker that ends a transaction is an append, which moves the high watermark once
    /// durable), so the high-watermark events wake both kinds.
    pub async fn wait_for_data(
        &self,
        partitions: Vec<WatchedPartition>,
        deadline: Instant,
    ) -> Completion {
        let keys = partitions
            .iter()
            .map(|watched| watched.key.clone())
            .collect();
        let satisfied = move || {
            partitions.iter().any(|watched| {
                watched.partition.upgrade().is_none_or(|partition| {
                    if watched.replica && partition.high_watermark() > watched.seen_high_watermark {
                        return true;
                    }
                    let end = if watched.replica {
                        partition.log.durable_end_offset()
                    } else if watched.read_committed {
                        partition.last_stable_offset()
                    } else {
                        partition.high_watermark()
                    };
                    end > watched.seen
                })
            })
        };
        self.fetches
            .watch(keys, deadline, Box::new(satisfied))
            .await
    }

    /// Waits until `partition`'s high watermark reaches `required` (every in-sync replica has the
    /// records before it: acks=all), or until `deadline`.
    pub async fn wait_for_replicas(
        &self,
        partition: &Rc<Partition>,
        required: Offset,
        deadline: Instant,
    ) -> Completion {
        let key = partition.key().clone();
        let partition = Rc::downgrade(partition);
        let satisfied = move || {
            // A partition that stops leading completes the wait too (its produce then fails).
            partition.upgrade().is_some_and(|partition| {
                partition.high_watermark() >= required || !partition.is_leader()
            })
        };
        self.produces
            .watch(vec![key], deadline, Box::new(satisfied))
            .await
    }

    /// (delayed fetches, delayed produces)
    pub fn counters(&self) -> (PurgatoryCounters, PurgatoryCounters) {
        (self.fetches.counters(), self.produces.counters())
    }
}
