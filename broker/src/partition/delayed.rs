//! Delayed operations of one shard's partitions: fetches waiting for data (a high watermark past what
//! they saw) and produces waiting for the in-sync replicas (acks=all). Each waits in a purgatory keyed
//! by partition until an event on one of its partitions satisfies it or its deadline passes.
//!
//! A partition tells [`DelayedOperations::high_watermark_moved`] whenever its high watermark may have
//! moved, or it went away (deleted, unloaded): the operations watching it re-check their condition.

use super::{Partition, TopicPartition};
use std::rc::{Rc, Weak};
use std::time::Instant;
use storage::types::Offset;

/// How a delayed operation ended.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Completion {
    /// Its condition held (on watching, or after an event on one of its partitions).
    Satisfied,
    /// Its deadline passed first.
    Expired,
}

/// The delayed fetches and produces of one shard.
pub struct DelayedOperations {
    changed: event_listener::Event,
}

impl Default for DelayedOperations {
    fn default() -> Self {
        DelayedOperations::new()
    }
}

impl DelayedOperations {
    pub fn new() -> DelayedOperations {
        DelayedOperations {
            changed: event_listener::Event::new(),
        }
    }

    /// `partition`'s high watermark may have moved, or it is gone: re-check what waits on it.
    pub fn high_watermark_moved(&self, _partition: &TopicPartition) {
        self.changed.notify(usize::MAX);
    }

    /// Waits until one of `partitions` has a high watermark past the offset given with it (or is gone),
    /// or until `deadline`.
    pub async fn wait_for_data(
        &self,
        partitions: Vec<(Weak<Partition>, Offset)>,
        deadline: Instant,
    ) -> Completion {
        let satisfied = move || {
            partitions.iter().any(|(partition, seen)| {
                partition
                    .upgrade()
                    .is_none_or(|partition| partition.high_watermark() > *seen)
            })
        };
        self.wait(satisfied, deadline).await
    }

    /// Waits until `partition`'s high watermark reaches `required` (every in-sync replica has the
    /// records before it: acks=all), or until `deadline`.
    pub async fn wait_for_replicas(
        &self,
        partition: &Rc<Partition>,
        required: Offset,
        deadline: Instant,
    ) -> Completion {
        let partition = Rc::downgrade(partition);
        let satisfied = move || {
            partition
                .upgrade()
                .is_some_and(|partition| partition.high_watermark() >= required)
        };
        self.wait(satisfied, deadline).await
    }

    async fn wait(&self, satisfied: impl Fn() -> bool, deadline: Instant) -> Completion {
        loop {
            let listener = self.changed.listen();
            if satisfied() {
                return Completion::Satisfied;
            }
            let remaining = deadline.saturating_duration_since(shard::task::now());
            if remaining.is_zero() {
                return Completion::Expired;
            }
            if shard::task::timeout(remaining, listener).await.is_none() {
                return Completion::Expired;
            }
        }
    }
}
