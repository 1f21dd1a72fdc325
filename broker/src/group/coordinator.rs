//! One coordinator partition: the groups whose id hashes to one partition of `__consumer_offsets`, on
//! the shard that owns that partition.
//!
//! Each operation checks and changes the groups synchronously (no borrow is held across an await),
//! appends what must survive a restart to the partition, and only then acknowledges it. Appends are
//! started in the order the changes were made (a future's first poll assigns its offsets), so replaying
//! the partition in log order rebuilds the same state. A change that raced with the append (a rebalance
//! began while a leader's assignment was being written) is detected afterwards by its generation and
//! dropped, as Kafka does.
//!
//! Layout: this file is the partition's state (its groups, whether it is loaded), its appends and its
//! timers; `coordinator/load.rs` replays the partition when it opens; `coordinator/membership.rs` is
//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup; `coordinator/offsets.rs` OffsetCommit, OffsetFetch and
//! OffsetDelete; `coordinator/admin.rs` DescribeGroups, ListGroups and DeleteGroups;
//! `coordinator/expiry.rs` offset expiry (`offsets.retention.minutes`) and dead groups;
//! `coordinator/txn_offsets.rs` TxnOffsetCommit, the transaction markers that end its offsets, and
//! OffsetFetch's `require_stable`.
//!
//! Every removal is written as a tombstone (a null value under the same key bytes): OffsetDelete,
//! DeleteGroups, expired offsets and dead groups, so the compacted topic forgets them too.

mod admin;
mod expiry;
mod load;
mod membership;
mod offsets;
mod txn_offsets;

pub use admin::ListedGroup;
pub use expiry::{expired_offsets, ExpiryOutcome};
pub use membership::MemberRef;
pub use offsets::CommittedByTopic;
pub use txn_offsets::FetchedByTopic;

use super::records::{self, GroupRecord, StoredGroup};
use super::state::{Group, GroupState};
use crate::config::GroupConfig;
use crate::partition::Partition;
use kafka_protocol::error::ResponseError;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::time::{Duration, Instant};
use storage::types::Offset;

pub struct CoordinatorPartition {
    partition: Rc<Partition>,
    config: GroupConfig,
    load: Cell<LoadState>,
    groups: RefCell<HashMap<String, Group>>,
    /// Which groups hold pending offsets of each producer's transaction, and TxnOffsetCommit appends in
    /// flight (see `coordinator/txn_offsets.rs`).
    transactions: RefCell<txn_offsets::Transactions>,
}

/// Where a coordinator partition is in its life: requests are served only when `Loaded`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoadState {
    /// Replaying the partition (requests get COORDINATOR_LOAD_IN_PROGRESS).
    Loading,
    Loaded,
    /// The partition closed (requests get NOT_COORDINATOR); a replay still running discards its result.
    Unloaded,
}

impl CoordinatorPartition {
    pub fn new(partition: Rc<Partition>, config: GroupConfig) -> CoordinatorPartition {
        CoordinatorPartition {
            partition,
            config,
            load: Cell::new(LoadState::Loading),
            groups: RefCell::new(HashMap::new()),
            transactions: RefCell::default(),
        }
    }

    pub fn index(&self) -> i32 {
        self.partition.index
    }

    pub fn is_loaded(&self) -> bool {
        self.load.get() == LoadState::Loaded
    }

    /// The partition is gone (shutdown): parked responses are dropped, requests get NOT_COORDINATOR.
    pub fn unload(&self) {
        self.load.set(LoadState::Unloaded);
        self.groups.borrow_mut().clear();
        *self.transactions.borrow_mut() = Default::default();
    }

    fn initial_delay(&self) -> Duration {
        Duration::from_millis(self.config.initial_rebalance_delay_ms)
    }

    /// Appends `records` to the partition; the error is the one a group client expects.
    async fn append(&self, records: &[GroupRecord]) -> Result<(), ResponseError> {
        if records.is_empty() {
            return Ok(());
        }
        self.append_at(records).await.map(|_| ())
    }

    /// Appends `records` (at least one) to the partition: the log offset of the first.
    async fn append_at(&self, records: &[GroupRecord]) -> Result<Offset, ResponseError> {
        let batch = records::encode_batch(records, shard::task::wall_clock_ms());
        self.partition
            .clone()
            .append_replicated(
                batch,
                storage::batch::AppendOrigin::Client,
                crate::partition::COORDINATOR_WRITE_TIMEOUT,
            )
            .await
            .map(|info| info.base_offset)
            .map_err(|refusal| {
                tracing::warn!(partition = self.index(), code = ?refusal.error, message = %refusal.message, "cannot write group state");
                match refusal.error {
                    ResponseError::NotLeaderOrFollower => ResponseError::NotCoordinator,
                    ResponseError::MessageTooLarge | ResponseError::RecordListTooLarge => {
                        ResponseError::InvalidCommitOffsetSize
                    }
                    _ => ResponseError::CoordinatorNotAvailable,
                }
            })
    }

    async fn store_group(&self, group_id: &str, stored: StoredGroup) -> Result<(), ResponseError> {
        self.append(&[GroupRecord::Group {
            group: group_id.to_string(),
            value: Some(stored),
        }])
        .await
    }

    /// The earliest deadline of any group here (see [`Group::next_deadline`]).
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        if !self.is_loaded() {
            return None;
        }
        self.groups
            .borrow()
            .values()
            .filter_map(|group| group.next_deadline(now))
            .min()
    }

    /// Session, join and sync deadlines of every group here.
    pub async fn tick(&self) {
        if !self.is_loaded() {
            return;
        }
        let now = shard::task::now();
        let emptied: Vec<GroupRecord> = {
            let mut groups = self.groups.borrow_mut();
            let emptied = groups
                .values_mut()
                .filter_map(|group| {
                    let generation = group.generation;
                    group.expire(now);
                    became_empty(group, generation).map(|stored| GroupRecord::Group {
                        group: group.id.clone(),
                        value: Some(stored),
                    })
                })
                .collect();
            // Groups that never completed a generation nor hold offsets (a client that got its member id
            // and went away) were never stored: they simply go.
            groups.retain(|_, group| {
                !(group.state == GroupState::Empty
                    && group.generation == 0
                    && group.is_empty()
                    && !group.has_offsets())
            });
            emptied
        };
        if !emptied.is_empty() {
            // Not waited for by the ISR: the shard's group timer runs every partition's tick in turn,
            // and a follower slow to fetch must not hold every group's deadlines back.
            let batch = records::encode_batch(&emptied, shard::task::wall_clock_ms());
            let _ = self.partition.clone().append(batch).await;
        }
    }
}

/// A group that went empty (its generation moved on with no members) must be stored.
fn became_empty(group: &Group, generation_before: i32) -> Option<StoredGroup> {
    (group.state == GroupState::Empty && group.generation != generation_before)
        .then(|| group.stored(None))
}
