//! A partition's replication state on this broker (Kafka's `Partition` leader and follower state).
//!
//! The metadata says who leads a partition and who is in sync; this file keeps what only the leader
//! knows between metadata versions: each follower's log end offset (the offset of its last fetch),
//! when it was last caught up, and the ISR change the leader asked the controller for.
//!
//! # Invariants
//! - The high watermark (see `Partition::maybe_advance_high_watermark`) is the smallest log end offset
//!   of the leader and every follower in the ISR — the ISR as committed, together with the members a
//!   pending change would add (Kafka's *maximal* ISR): a removal counts only once committed, so the
//!   high watermark never counts a replica out too early, and an addition counts at once (it was
//!   caught up to be added). It never goes back.
//! - A follower is *caught up* at a fetch from the leader's log end (Kafka's `lastCaughtUpTimeMs`): at
//!   once when it fetches from the leader's current end, or as of its previous fetch when it fetches
//!   from the end the leader had then. It leaves the ISR after `replica.lag.time.max.ms` without
//!   being caught up, and comes back once its log end reaches the high watermark and the start of the
//!   leader's epoch — both through the controller (an `AlterPartition` record), never locally.
//! - A follower that has not fetched since this broker became leader has an unknown log end: the high
//!   watermark waits for it (or for its removal from the ISR).

use super::Partition;
use crate::metadata::PartitionState;
use kafka_protocol::error::ResponseError;
use std::collections::BTreeMap;
use storage::types::{LeaderEpoch, Offset};

/// How long a proposed ISR change may go unseen in the metadata before the leader proposes again.
const ISR_CHANGE_RETRY_MS: i64 = 5_000;

/// What the leader knows of one follower.
#[derive(Clone, Copy, Debug)]
struct FollowerState {
    /// `None`: it has not fetched since this broker leads.
    log_end_offset: Option<Offset>,
    last_caught_up_ms: i64,
    last_fetch_ms: i64,
    /// The leader's log end at the follower's previous fetch (Kafka's `lastFetchLeaderLogEndOffset`).
    leader_end_at_last_fetch: Offset,
}

/// An ISR change asked of the controller and not yet in the metadata (a metadata version with another
/// partition epoch ends it).
#[derive(Clone, Debug)]
struct PendingIsrChange {
    isr: Vec<i32>,
    proposed_ms: i64,
}

#[derive(Clone, Debug)]
pub struct LeaderState {
    isr: Vec<i32>,
    partition_epoch: i32,
    followers: BTreeMap<i32, FollowerState>,
    pending: Option<PendingIsrChange>,
    /// After a refused change, no other is asked before this time.
    retry_after_ms: i64,
}

/// This broker's part in the partition.
#[derive(Clone, Debug)]
pub enum Role {
    Leader(LeaderState),
    /// Fetches from `leader` (-1: no leader now).
    Follower {
        leader: i32,
    },
}

/// How a metadata version changed this broker's part.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RoleChange {
    BecameLeader,
    StillLeader,
    BecameFollower,
    StillFollower,
}

/// A change of the ISR for the controller (Kafka's AlterPartition request for one partition).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct IsrChange {
    pub leader_epoch: LeaderEpoch,
    pub partition_epoch: i32,
    pub isr: Vec<i32>,
}

impl Role {
    /// The role a new partition starts in, before its first `apply_replica_state`.
    pub fn unassigned() -> Role {
        Role::Follower { leader: -1 }
    }
}

impl Partition {
    pub fn is_leader(&self) -> bool {
        matches!(*self.role.borrow(), Role::Leader(_))
    }

    /// The leader this follower fetches from; `None` when this broker leads (or no one does).
    pub fn followed_leader(&self) -> Option<i32> {
        match *self.role.borrow() {
            Role::Follower { leader } if leader >= 0 => Some(leader),
            _ => None,
        }
    }

    /// How many replicas are in sync (as committed; 0 when this broker does not lead).
    pub fn in_sync_replicas(&self) -> usize {
        match &*self.role.borrow() {
            Role::Leader(state) => state.isr.len(),
            Role::Follower { .. } => 0,
        }
    }

    /// Adopts the metadata's state of the partition for node `node_id` at `now_ms`. A new leader knows
    /// no follower's log end yet and counts its in-sync followers as caught up now (Kafka does, so
    /// they are not dropped before they could fetch).
    pub fn apply_replica_state(
        &self,
        state: &PartitionState,
        node_id: i32,
        now_ms: i64,
    ) -> RoleChange {
        let mut role = self.role.borrow_mut();
        if state.leader != node_id {
            let change = match *role {
                Role::Leader(_) => RoleChange::BecameFollower,
                Role::Follower { .. } => RoleChange::StillFollower,
            };
            *role = Role::Follower {
                leader: state.leader,
            };
            return change;
        }
        let log_end = self.log.log_end_offset();
        match &mut *role {
            Role::Leader(leader) => {
                leader.isr = state.isr.clone();
                if leader.partition_epoch != state.partition_epoch {
                    leader.pending = None;
                }
                leader.partition_epoch = state.partition_epoch;
                leader.followers.retain(|id, _| state.replicas.contains(id));
                for &id in &state.replicas {
                    if id != node_id {
                        leader
                            .followers
                            .entry(id)
                            .or_insert_with(|| new_follower(now_ms, log_end));
                    }
                }
                RoleChange::StillLeader
            }
            Role::Follower { .. } => {
                let followers = state
                    .replicas
                    .iter()
                    .filter(|id| **id != node_id)
                    .map(|&id| (id, new_follower(now_ms, log_end)))
                    .collect();
                *role = Role::Leader(LeaderState {
                    isr: state.isr.clone(),
                    partition_epoch: state.partition_epoch,
                    followers,
                    pending: None,
                    retry_after_ms: 0,
                });
                RoleChange::BecameLeader
            }
        }
    }

    /// The end every in-sync replica has (see the module doc); `None` while an in-sync follower's log
    /// end is unknown, or when this broker does not lead.
    pub(super) fn replicated_end(&self) -> Option<Offset> {
        let role = self.role.borrow();
        let Role::Leader(leader) = &*role else {
            return None;
        };
        let mut end = self.log.durable_end_offset();
        let pending = leader.pending.as_ref().map(|pending| &pending.isr);
        let counted = leader
            .isr
            .iter()
            .chain(pending.into_iter().flatten())
            .filter(|id| leader.followers.contains_key(id));
        for id in counted {
            end = end.min(leader.followers[id].log_end_offset?);
        }
        Some(end)
    }

    /// KIP-392 on this leader: which of `candidates` (the followers the replica selector would send a
    /// consumer to, in replica order; see `crate::replica_selector`) the consumer fetching from
    /// `fetch_offset` should read from instead. Kafka's `findPreferredReadReplica` with its
    /// `RackAwareReplicaSelector`: a candidate must be in the ISR as this leader knows it and have
    /// fetched past `fetch_offset` (its known log end at or beyond it, so it does not answer
    /// OFFSET_OUT_OF_RANGE), and `fetch_offset` must not be below this log's start (the consumer
    /// then gets OFFSET_OUT_OF_RANGE here); among several, the largest log end wins, then the most
    /// recently caught up, then the first in replica order. `None`: the consumer reads here.
    pub fn preferred_read_replica(&self, candidates: &[i32], fetch_offset: Offset) -> Option<i32> {
        if candidates.is_empty() || fetch_offset < self.log_start_offset() {
            return None;
        }
        let role = self.role.borrow();
        let Role::Leader(leader) = &*role else {
            return None;
        };
        let mut best: Option<(i32, Offset, i64)> = None;
        for &id in candidates {
            if !leader.isr.contains(&id) {
                continue;
            }
            let Some(follower) = leader.followers.get(&id) else {
                continue;
            };
            let Some(end) = follower.log_end_offset.filter(|end| *end >= fetch_offset) else {
                continue;
            };
            let better = best.is_none_or(|(_, best_end, best_caught_up)| {
                (end, follower.last_caught_up_ms) > (best_end, best_caught_up)
            });
            if better {
                best = Some((id, end, follower.last_caught_up_ms));
            }
        }
        best.map(|(id, _, _)| id)
    }

    /// A fetch from follower `replica_id` at `fetch_offset` (its log end): records its progress and
    /// moves the high watermark. NOT_LEADER_OR_FOLLOWER when this broker does not lead, or the
    /// replica is not one of the partition's.
    pub(super) fn follower_fetched(
        &self,
        replica_id: i32,
        fetch_offset: Offset,
        now_ms: i64,
    ) -> Result<(), ResponseError> {
        {
            let mut role = self.role.borrow_mut();
            let Role::Leader(leader) = &mut *role else {
                return Err(ResponseError::NotLeaderOrFollower);
            };
            let Some(follower) = leader.followers.get_mut(&replica_id) else {
                return Err(ResponseError::NotLeaderOrFollower);
            };
            let leader_end = self.log.durable_end_offset();
            if fetch_offset >= leader_end {
                follower.last_caught_up_ms = now_ms;
            } else if fetch_offset >= follower.leader_end_at_last_fetch {
                follower.last_caught_up_ms = follower.last_caught_up_ms.max(follower.last_fetch_ms);
            }
            follower.leader_end_at_last_fetch = leader_end;
            follower.last_fetch_ms = now_ms;
            follower.log_end_offset = Some(fetch_offset.min(leader_end));
        }
        self.maybe_advance_high_watermark();
        Ok(())
    }

    /// The ISR change due at `now_ms` (`lag_ms`: `replica.lag.time.max.ms`), if any, recorded as
    /// pending: followers in the ISR not caught up for longer than `lag_ms` leave it; followers out
    /// of it whose log end reached the high watermark and the start of this leader's epoch, that
    /// fetched within `lag_ms` and that `is_live` (registered, not fenced), join it. `None` when this broker does not lead, nothing is due, or a
    /// change is already pending (for less than `ISR_CHANGE_RETRY_MS`).
    pub fn isr_change_due(
        &self,
        now_ms: i64,
        lag_ms: i64,
        is_live: impl Fn(i32) -> bool,
    ) -> Option<IsrChange> {
        let high_watermark = self.high_watermark();
        let epoch_start = self.epoch_start_offset();
        let leader_epoch = self.leader_epoch();
        let mut role = self.role.borrow_mut();
        let Role::Leader(leader) = &mut *role else {
            return None;
        };
        let waiting = leader
            .pending
            .as_ref()
            .is_some_and(|pending| now_ms - pending.proposed_ms < ISR_CHANGE_RETRY_MS);
        if waiting || now_ms < leader.retry_after_ms {
            return None;
        }
        let mut isr: Vec<i32> = leader
            .isr
            .iter()
            .copied()
            .filter(|id| {
                leader
                    .followers
                    .get(id)
                    .is_none_or(|follower| now_ms - follower.last_caught_up_ms <= lag_ms)
            })
            .collect();
        for (&id, follower) in &leader.followers {
            let caught_up = follower
                .log_end_offset
                .is_some_and(|end| end >= high_watermark && end >= epoch_start);
            // A fenced broker is not asked for (the controller refuses it; Kafka's
            // `isReplicaIsrEligible`).
            let recent = now_ms - follower.last_fetch_ms <= lag_ms;
            if !isr.contains(&id) && caught_up && recent && is_live(id) {
                isr.push(id);
            }
        }
        if isr == leader.isr {
            leader.pending = None;
            return None;
        }
        leader.pending = Some(PendingIsrChange {
            isr: isr.clone(),
            proposed_ms: now_ms,
        });
        Some(IsrChange {
            leader_epoch,
            partition_epoch: leader.partition_epoch,
            isr,
        })
    }

    /// The controller refused or lost an ISR change at `now_ms`: the high watermark goes back to
    /// counting the committed ISR only, and the change is asked again (as it is due then) after
    /// `ISR_CHANGE_RETRY_MS`, not at once — a refusal repeated every second would fill the metadata
    /// log.
    pub fn isr_change_failed(&self, now_ms: i64) {
        if let Role::Leader(leader) = &mut *self.role.borrow_mut() {
            leader.pending = None;
            leader.retry_after_ms = now_ms + ISR_CHANGE_RETRY_MS;
        }
        self.maybe_advance_high_watermark();
    }
}

fn new_follower(now_ms: i64, leader_end: Offset) -> FollowerState {
    FollowerState {
        log_end_offset: None,
        last_caught_up_ms: now_ms,
        last_fetch_ms: now_ms,
        leader_end_at_last_fetch: leader_end,
    }
}
