//! The group coordinator: consumer groups and their committed offsets.
//!
//! Layout: `state.rs` is one group's state machine (no I/O); `records.rs` the record formats of
//! `__consumer_offsets`; `coordinator.rs` one coordinator partition: the groups that hash to one
//! partition of `__consumer_offsets`, their operations, persistence and replay. This file places groups
//! (Kafka's hash, so a group has the same partition as on a Kafka cluster with as many partitions), keeps
//! each shard's coordinator partitions and runs their timers. A group's requests reach the shard that owns
//! its partition as data: `protocol.rs` is that part of the cross-shard protocol ([`protocol::GroupRequest`]
//! and its answers), `routing.rs` sends them there (or serves them here when this shard owns the
//! partition) and serves them on arrival.
//!
//! Every state change is appended to the group's partition before it is acknowledged, and replayed when
//! the partition opens; until replay ends, requests get COORDINATOR_LOAD_IN_PROGRESS. The internal topic
//! is created on the first FindCoordinator for a group (as Kafka does).
//!
//! Room for KIP-848: a `ConsumerGroupHeartbeat` group would be another kind of group in the same
//! partition map, with its own state machine beside `state.rs` and its own record keys.

pub mod coordinator;
pub mod protocol;
pub mod records;
pub mod state;

use crate::config::GroupConfig;
use crate::metadata::ClusterMetadata;
use crate::partition::manager::PartitionListener;
use crate::partition::Partition;
use coordinator::CoordinatorPartition;
use shard::ShardId;
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};

pub use crate::internal_topics::OFFSETS_TOPIC;

/// The partition of `__consumer_offsets` that coordinates `group_id`: Java's `String.hashCode`, made
/// non-negative as Kafka's `Utils.abs` does, modulo the partition count.
pub fn partition_for(group_id: &str, partitions: i32) -> i32 {
    assert!(partitions > 0);
    let hash = group_id.encode_utf16().fold(0i32, |hash, unit| {
        hash.wrapping_mul(31).wrapping_add(unit as i32)
    });
    (hash & 0x7fff_ffff) % partitions
}

/// The coordinator partitions of one shard. It hears of its partitions as a partition lifecycle
/// listener: a `__consumer_offsets` partition led here gets a coordinator (which replays it), one
/// unloaded or deleted loses it.
pub struct GroupCoordinator {
    config: GroupConfig,
    partitions: RefCell<HashMap<i32, Rc<CoordinatorPartition>>>,
}

impl PartitionListener for GroupCoordinator {
    fn became_leader(&self, partition: &Rc<Partition>) {
        if partition.topic == OFFSETS_TOPIC {
            self.partition_opened(partition.clone());
        }
    }

    fn unloaded(&self, partition: &Partition) {
        if partition.topic == OFFSETS_TOPIC {
            self.partition_closed(partition.index);
        }
    }

    fn deleted(&self, partition: &Partition) {
        self.unloaded(partition);
    }

    /// A COMMIT or ABORT marker written to a `__consumer_offsets` partition ends that producer's
    /// pending transactional offsets there.
    fn marker_written(
        &self,
        partition: &Rc<Partition>,
        marker: &storage::TxnMarker,
        offset: storage::types::Offset,
    ) {
        if partition.topic != OFFSETS_TOPIC {
            return;
        }
        if let Some(coordinator) = self.get(partition.index) {
            coordinator.complete_transaction(marker.producer_id, marker.commit, offset);
        }
    }
}

/// Longest the group timer sleeps before looking again for deadlines. A deadline set while it sleeps and
/// due sooner than this (new members' sessions are at least `group.min.session.timeout.ms` away, so only
/// short join delays) is acted on up to this late; every other deadline exactly when it passes.
const TIMER_RESCAN: Duration = Duration::from_millis(100);
const MIN_TIMER_SLEEP: Duration = Duration::from_millis(1);

impl GroupCoordinator {
    pub fn new(config: GroupConfig) -> GroupCoordinator {
        GroupCoordinator {
            config,
            partitions: RefCell::default(),
        }
    }

    /// A `__consumer_offsets` partition opened on this shard: its coordinator starts loading.
    pub fn partition_opened(&self, partition: Rc<Partition>) {
        let coordinator = Rc::new(CoordinatorPartition::new(partition, self.config.clone()));
        self.partitions
            .borrow_mut()
            .insert(coordinator.index(), coordinator.clone());
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

    /// Session and rebalance timers of every group on this shard.
    pub async fn tick(&self) {
        for coordinator in self.all() {
            coordinator.tick().await;
        }
    }

    /// The earliest group deadline on this shard.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        self.all()
            .iter()
            .filter_map(|coordinator| coordinator.next_deadline(now))
            .min()
    }

    /// The group timer of one shard: sleeps until the earliest deadline of its groups (a session
    /// expiring, a join or sync phase ending) and acts on it then, so a member is removed within a
    /// millisecond or so of its session timeout. It also starts the shard's offset expiry
    /// ([`GroupCoordinator::run_offsets_expiry`]). Returns once `stop()` holds.
    pub async fn run_timer(self: Rc<Self>, stop: impl Fn() -> bool + Clone + 'static) {
        shard::task::spawn(self.clone().run_offsets_expiry(stop.clone()));
        while !stop() {
            let now = shard::task::now();
            let rescan = now + TIMER_RESCAN;
            // At least a millisecond: a deadline that passed without changing anything never spins.
            let wake = self
                .next_deadline(now)
                .map_or(rescan, |deadline| deadline.min(rescan))
                .max(now + MIN_TIMER_SLEEP);
            shard::task::sleep_until(wake).await;
            self.tick().await;
        }
    }
}

impl GroupCoordinator {
    /// Offset expiry of one shard: every `offsets.retention.check.interval.ms` on the runtime's clock,
    /// each coordinator partition here expires its offsets and dead groups (see
    /// `coordinator/expiry.rs`), one after the other, each in bounded steps. Returns once `stop()` holds.
    pub async fn run_offsets_expiry(self: Rc<Self>, stop: impl Fn() -> bool) {
        let interval =
            Duration::from_millis(self.config.offsets_retention_check_interval_ms.max(1));
        loop {
            shard::task::sleep(interval).await;
            if stop() {
                return;
            }
            self.expire_offsets().await;
        }
    }

    /// One expiry pass over every coordinator partition of this shard, at the current wall clock.
    pub async fn expire_offsets(&self) -> coordinator::ExpiryOutcome {
        let now_ms = shard::task::wall_clock_ms();
        let mut total = coordinator::ExpiryOutcome::default();
        for coordinator in self.all() {
            let outcome = coordinator.expire_offsets(now_ms).await;
            total.expired_offsets += outcome.expired_offsets;
            total.dead_groups += outcome.dead_groups;
        }
        total
    }
}

/// Where `group_id` is coordinated: its partition and that partition's shard. None when the offsets
/// topic does not exist yet.
pub fn locate(metadata: &ClusterMetadata, group_id: &str) -> Option<(i32, ShardId)> {
    let topic = metadata.topics.get(OFFSETS_TOPIC)?;
    let partition = partition_for(group_id, topic.partition_count());
    let shard = metadata.shard_of(OFFSETS_TOPIC, partition)?;
    Some((partition, ShardId(shard)))
}

#[cfg(test)]
mod tests {
    use super::partition_for;

    #[test]
    fn groups_hash_like_kafka() {
        // Java: Math.abs("my-group".hashCode()) % 50 etc., computed with Kafka's Utils.abs.
        assert_eq!(partition_for("", 50), 0);
        assert_eq!(partition_for("a", 50), 97 % 50);
        // "my-group".hashCode() == -1_906_497_762; Utils.abs keeps the low 31 bits: 240_985_886.
        assert_eq!(partition_for("my-group", 50), 240_985_886 % 50);
        // A negative hash: "polygenelubricants".hashCode() == i32::MIN; Utils.abs gives 0.
        assert_eq!(partition_for("polygenelubricants", 50), 0);
        for partitions in 1..60 {
            assert!((0..partitions).contains(&partition_for("any-group-id", partitions)));
        }
    }
}
