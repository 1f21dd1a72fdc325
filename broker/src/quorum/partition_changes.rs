//! Changes to one partition's ISR, leader and replicas, as the metadata image applies them (Kafka's
//! `PartitionChangeBuilder`): a leader's ISR change (AlterPartition), an election (ElectLeaders) and a
//! reassignment (AlterPartitionReassignments). Each is a pure function of the partition and the
//! brokers, so every node applies it the same way; one that does not fit is refused and changes
//! nothing.
//!
//! **Reassignment** (KIP-455, as KRaft keeps it): moving replicas `R` to a target `T`, the partition's
//! replicas become `T` followed by what of `R` is not in `T`; `adding_replicas` = `T − R` and
//! `removing_replicas` = `R − T`. The added replicas open the partition as followers and fetch; the
//! leader adds each to the ISR once it is caught up (an ordinary AlterPartition). The reassignment
//! completes in the same apply that makes all of `T` in sync: the replicas become `T`, the ISR keeps
//! only members of `T`, and a leader outside `T` gives way to the first live replica of `T` (every one
//! of them is in sync, so nothing committed is lost). Brokers that hold no replica any more delete
//! theirs. Cancelling goes back to `R` (the replicas without those being added), keeping the ISR's
//! members of `R`.
//!
//! Invariants kept: replicas distinct and not empty, the ISR among them, the leader -1 or in the ISR,
//! `adding_replicas` and `removing_replicas` disjoint subsets of the replicas; the leader epoch moves
//! with every new leader and the partition epoch with every change.

use super::records::Election;
use crate::metadata::PartitionState as PartitionImage;

/// A partition's invariants: its replicas are distinct and not empty, its ISR is among them, and its
/// leader is -1 (none) or in its ISR.
pub fn is_well_formed(replicas: &[i32], isr: &[i32], leader: i32) -> bool {
    let distinct = replicas
        .iter()
        .enumerate()
        .all(|(i, id)| !replicas[..i].contains(id));
    !replicas.is_empty()
        && distinct
        && isr.iter().all(|id| replicas.contains(id))
        && (leader == -1 || isr.contains(&leader))
}

/// A new leader (or -1): both epochs move if it is another.
pub(super) fn set_leader(partition: &mut PartitionImage, leader: i32) {
    if leader != partition.leader {
        partition.leader = leader;
        partition.leader_epoch = partition.leader_epoch.wrapping_add(1);
        partition.partition_epoch = partition.partition_epoch.wrapping_add(1);
    }
}

/// The leader's ISR change: applied only if the leader and both epochs are still the partition's, the
/// new ISR is distinct, holds the leader and only replicas, and every member it adds is `live`. A
/// reassignment whose target is now all in sync completes.
pub(super) fn alter_isr(
    partition: &mut PartitionImage,
    leader: i32,
    leader_epoch: i32,
    partition_epoch: i32,
    isr: &[i32],
    live: impl Fn(&i32) -> bool,
) -> bool {
    // Stale (another leader or a change since) or malformed: the leader looks again and asks anew.
    let current = partition.leader == leader
        && partition.leader_epoch == leader_epoch
        && partition.partition_epoch == partition_epoch;
    let added_live = isr
        .iter()
        .filter(|id| !partition.isr.contains(id))
        .all(&live);
    if !current
        || !added_live
        || leader == -1
        || !is_well_formed(&partition.replicas, isr, leader)
        || isr.iter().enumerate().any(|(i, id)| isr[..i].contains(id))
    {
        return false;
    }
    partition.isr = isr.to_vec();
    partition.partition_epoch = partition.partition_epoch.wrapping_add(1);
    complete_reassignment(partition, &live);
    true
}

/// Whether a preferred-leader election would move the partition's leader: its first replica (the
/// preferred leader) is a `live` member of the ISR and does not lead.
pub fn preferred_election_due(partition: &PartitionImage, live: impl Fn(&i32) -> bool) -> bool {
    partition.replicas.first().is_some_and(|&preferred| {
        partition.leader != preferred && partition.isr.contains(&preferred) && live(&preferred)
    })
}

/// Elects a leader as `election` says; false (nothing changed) if the election is not due.
///
/// - Preferred: the first replica, if `preferred_election_due`.
/// - Unclean: only a partition without a leader; its first `live` ISR member, else its first `live`
///   replica, which becomes the ISR alone (what only the old ISR had is lost, and logged).
pub(super) fn elect(
    partition: &mut PartitionImage,
    election: Election,
    live: impl Fn(&i32) -> bool,
    topic: &str,
    index: i32,
) -> bool {
    match election {
        Election::Preferred => {
            if !preferred_election_due(partition, &live) {
                return false;
            }
            let preferred = partition.replicas[0];
            tracing::info!(%topic, partition = index, leader = preferred, "preferred leader elected");
            set_leader(partition, preferred);
            true
        }
        Election::Unclean => {
            if partition.leader != -1 {
                return false;
            }
            if let Some(&leader) = partition.isr.iter().find(|id| live(id)) {
                set_leader(partition, leader);
                return true;
            }
            // A replica being added may hold nothing yet: the others first.
            let adding = &partition.adding_replicas;
            let Some(&leader) = partition
                .replicas
                .iter()
                .filter(|id| !adding.contains(id))
                .chain(adding.iter())
                .find(|id| live(id))
            else {
                return false;
            };
            tracing::warn!(
                %topic,
                partition = index,
                leader,
                old_isr = ?partition.isr,
                "unclean leader election: an out-of-sync replica leads; records only the old ISR had are lost"
            );
            partition.isr = vec![leader];
            set_leader(partition, leader);
            true
        }
    }
}

/// Starts (or replaces) a reassignment to `target`, or cancels the ongoing one (`None`). False
/// (nothing changed) if `target` is empty, repeats a broker or names one not `registered`, if it is
/// the replicas already, or if there is nothing to cancel or cancelling would leave no ISR.
pub(super) fn reassign(
    partition: &mut PartitionImage,
    target: Option<&[i32]>,
    registered: impl Fn(&i32) -> bool,
    live: impl Fn(&i32) -> bool,
) -> bool {
    let Some(target) = target else {
        // What the replicas were before the ongoing reassignment added to them.
        let original: Vec<i32> = partition
            .replicas
            .iter()
            .copied()
            .filter(|id| !partition.adding_replicas.contains(id))
            .collect();
        if !partition.is_reassigning() {
            return false;
        }
        let isr: Vec<i32> = partition
            .isr
            .iter()
            .copied()
            .filter(|id| original.contains(id))
            .collect();
        if isr.is_empty() {
            return false;
        }
        partition.replicas = original;
        partition.adding_replicas.clear();
        partition.removing_replicas.clear();
        partition.isr = isr;
        if !partition.isr.contains(&partition.leader) {
            let leader = partition.isr.iter().copied().find(|id| live(id));
            set_leader(partition, leader.unwrap_or(-1));
        }
        partition.partition_epoch = partition.partition_epoch.wrapping_add(1);
        return true;
    };
    let distinct = target
        .iter()
        .enumerate()
        .all(|(i, id)| !target[..i].contains(id));
    if target.is_empty() || !distinct || !target.iter().all(registered) {
        return false;
    }
    if !partition.is_reassigning() && partition.replicas == target {
        return false;
    }
    // From every current replica, as KRaft does: one an earlier reassignment added that this target
    // drops is removed like the others, once the target is in sync (never dropped from the ISR at
    // once, which could leave the partition without the only replica that has its records).
    let current = partition.replicas.clone();
    let mut replicas = target.to_vec();
    replicas.extend(current.iter().filter(|id| !target.contains(id)));
    partition.adding_replicas = target
        .iter()
        .copied()
        .filter(|id| !current.contains(id))
        .collect();
    partition.removing_replicas = current
        .iter()
        .copied()
        .filter(|id| !target.contains(id))
        .collect();
    partition.replicas = replicas;
    partition.partition_epoch = partition.partition_epoch.wrapping_add(1);
    complete_reassignment(partition, &live);
    true
}

/// Completes the reassignment if every replica of its target is in the ISR (see the module
/// documentation); true if it did. (A target that only reorders the replicas adds and removes
/// nothing: `reassign` sets it and nothing is left to complete.)
pub(super) fn complete_reassignment(
    partition: &mut PartitionImage,
    live: impl Fn(&i32) -> bool,
) -> bool {
    let target = partition.target_replicas();
    if !partition.is_reassigning() || !target.iter().all(|id| partition.isr.contains(id)) {
        return false;
    }
    partition.isr.retain(|id| target.contains(id));
    partition.replicas = target;
    partition.adding_replicas.clear();
    partition.removing_replicas.clear();
    if !partition.replicas.contains(&partition.leader) {
        let leader = partition.replicas.iter().copied().find(|id| live(id));
        set_leader(partition, leader.unwrap_or(-1));
    }
    partition.partition_epoch = partition.partition_epoch.wrapping_add(1);
    true
}

#[cfg(test)]
#[path = "partition_changes_tests.rs"]
mod tests;
