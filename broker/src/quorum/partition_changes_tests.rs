//! Elections and reassignments as the image applies them (`MetadataImage::apply`).

use super::super::image::{Change, MetadataImage};
use super::super::records::{Election, MetadataRecord};
use crate::metadata::PartitionState;
use uuid::Uuid;

const TOPIC: Uuid = Uuid::from_u128(42);

/// Brokers 1..=6 registered, and topic "orders" with one partition: replicas 1, 2, 3, led by `leader`
/// with ISR `isr`.
fn image(isr: &[i32], leader: i32) -> MetadataImage {
    let mut image = MetadataImage::default();
    let mut records: Vec<MetadataRecord> = (1..=6)
        .map(|node_id| MetadataRecord::RegisterBroker {
            node_id,
            incarnation: node_id as u64,
            host: "127.0.0.1".into(),
            port: 9000 + node_id as u16,
            rack: None,
        })
        .collect();
    records.push(MetadataRecord::Topic {
        topic_id: TOPIC,
        name: "orders".into(),
        configs: Vec::new(),
    });
    records.push(MetadataRecord::Partition {
        topic_id: TOPIC,
        partition: 0,
        replicas: vec![1, 2, 3],
        isr: isr.to_vec(),
        leader,
        leader_epoch: 5,
        partition_epoch: 7,
    });
    for record in &records {
        assert_ne!(apply(&mut image, record), Change::Refused, "{record:?}");
    }
    image
}

fn apply(image: &mut MetadataImage, record: &MetadataRecord) -> Change {
    image.apply(image.applied_index + 1, record)
}

fn state(image: &MetadataImage) -> PartitionState {
    image.topics["orders"].partitions[0].clone()
}

fn elect(image: &MetadataImage, election: Election) -> MetadataRecord {
    MetadataRecord::ElectLeader {
        topic_id: TOPIC,
        partition: 0,
        partition_epoch: state(image).partition_epoch,
        election,
    }
}

fn reassign(target: Option<&[i32]>) -> MetadataRecord {
    MetadataRecord::Reassign {
        topic_id: TOPIC,
        partition: 0,
        target: target.map(<[i32]>::to_vec),
    }
}

/// The current leader's ISR change to `isr`.
fn alter(image: &MetadataImage, isr: &[i32]) -> MetadataRecord {
    let state = state(image);
    MetadataRecord::AlterPartition {
        topic_id: TOPIC,
        partition: 0,
        leader: state.leader,
        leader_epoch: state.leader_epoch,
        partition_epoch: state.partition_epoch,
        isr: isr.to_vec(),
    }
}

fn fence(image: &mut MetadataImage, node_id: i32) {
    let epoch = image.brokers[&node_id].epoch;
    apply(image, &MetadataRecord::FenceBroker { node_id, epoch });
}

#[test]
fn a_preferred_election_moves_the_leader_to_the_first_replica_in_sync() {
    let mut image = image(&[1, 2, 3], 2);
    let record = elect(&image, Election::Preferred);
    assert_eq!(apply(&mut image, &record), Change::Topics);
    let after = state(&image);
    assert_eq!(
        (after.leader, after.leader_epoch, after.partition_epoch),
        (1, 6, 8)
    );
    // Not due any more; and the record's partition epoch is stale.
    let again = elect(&image, Election::Preferred);
    assert_eq!(apply(&mut image, &again), Change::Refused);
    assert_eq!(apply(&mut image, &record), Change::Refused);
}

#[test]
fn a_preferred_leader_out_of_sync_or_fenced_is_not_elected() {
    let mut out_of_sync = image(&[2, 3], 2);
    let record = elect(&out_of_sync, Election::Preferred);
    assert_eq!(apply(&mut out_of_sync, &record), Change::Refused);
    assert_eq!(state(&out_of_sync).leader, 2);
    let mut fenced = image(&[1, 2, 3], 2);
    fence(&mut fenced, 1);
    let record = elect(&fenced, Election::Preferred);
    assert_eq!(apply(&mut fenced, &record), Change::Refused);
}

#[test]
fn an_unclean_election_takes_a_live_replica_only_without_a_leader() {
    let mut image = image(&[1], 1);
    let record = elect(&image, Election::Unclean);
    assert_eq!(
        apply(&mut image, &record),
        Change::Refused,
        "it has a leader"
    );
    fence(&mut image, 1);
    assert_eq!(
        state(&image).leader,
        -1,
        "its only in-sync replica is fenced"
    );
    let record = elect(&image, Election::Unclean);
    assert_eq!(apply(&mut image, &record), Change::Topics);
    let after = state(&image);
    assert_eq!((after.leader, after.isr), (2, vec![2]));
}

#[test]
fn a_reassignment_adds_then_completes_once_the_target_is_in_sync() {
    let mut image = image(&[1, 2, 3], 1);
    assert_eq!(
        apply(&mut image, &reassign(Some(&[4, 2, 3]))),
        Change::Topics
    );
    let moving = state(&image);
    assert_eq!(moving.replicas, vec![4, 2, 3, 1]);
    assert_eq!(moving.adding_replicas, vec![4]);
    assert_eq!(moving.removing_replicas, vec![1]);
    assert_eq!((moving.leader, moving.isr.clone()), (1, vec![1, 2, 3]));
    // The leader adds broker 4 to the ISR once it caught up: the target is in sync, so it completes
    // and broker 1, leaving, hands its leadership to the first live replica of the target.
    let record = alter(&image, &[1, 2, 3, 4]);
    assert_eq!(apply(&mut image, &record), Change::Topics);
    let done = state(&image);
    assert_eq!(done.replicas, vec![4, 2, 3]);
    assert_eq!(done.isr, vec![2, 3, 4]);
    assert!(done.adding_replicas.is_empty() && done.removing_replicas.is_empty());
    assert_eq!(
        (done.leader, done.leader_epoch),
        (4, moving.leader_epoch + 1)
    );
}

#[test]
fn a_reassignment_within_the_isr_completes_at_once() {
    let mut image = image(&[1, 2, 3], 1);
    // Dropping a replica: the target is already in sync.
    assert_eq!(apply(&mut image, &reassign(Some(&[2, 3]))), Change::Topics);
    let done = state(&image);
    assert_eq!(
        (done.replicas, done.isr, done.leader),
        (vec![2, 3], vec![2, 3], 2)
    );
    // Reordering: the preferred leader changes, the leader does not.
    assert_eq!(apply(&mut image, &reassign(Some(&[3, 2]))), Change::Topics);
    let reordered = state(&image);
    assert_eq!(
        (reordered.replicas.clone(), reordered.leader),
        (vec![3, 2], 2)
    );
    assert!(!reordered.is_reassigning());
    // The replicas they are already: nothing to do.
    assert_eq!(apply(&mut image, &reassign(Some(&[3, 2]))), Change::Refused);
}

#[test]
fn a_cancelled_reassignment_goes_back_to_the_original_replicas() {
    let mut image = image(&[1, 2, 3], 1);
    apply(&mut image, &reassign(Some(&[4, 2, 3])));
    let record = alter(&image, &[1, 2, 3]);
    assert_eq!(
        apply(&mut image, &record),
        Change::Topics,
        "an ISR change meanwhile"
    );
    assert_eq!(apply(&mut image, &reassign(None)), Change::Topics);
    let reverted = state(&image);
    // Without the replica being added (the order is the reassignment's, as in Kafka).
    assert_eq!(reverted.replicas, vec![2, 3, 1]);
    assert!(!reverted.is_reassigning());
    assert_eq!(reverted.leader, 1);
    // Nothing left to cancel.
    assert_eq!(apply(&mut image, &reassign(None)), Change::Refused);
}

#[test]
fn a_reassignment_naming_unknown_or_repeated_brokers_is_refused() {
    let mut image = image(&[1, 2, 3], 1);
    for target in [&[][..], &[1, 1, 2], &[1, 2, 9]] {
        assert_eq!(
            apply(&mut image, &reassign(Some(target))),
            Change::Refused,
            "{target:?}"
        );
    }
    assert_eq!(state(&image).replicas, vec![1, 2, 3]);
}

#[test]
fn a_new_target_during_a_reassignment_removes_the_replicas_it_drops_only_once_in_sync() {
    let mut image = image(&[1, 2, 3], 1);
    apply(&mut image, &reassign(Some(&[4, 5, 6])));
    // Brokers 1..3 fail: broker 4, caught up meanwhile, is the last in-sync replica and leads.
    let record = alter(&image, &[1, 2, 3, 4]);
    assert_eq!(apply(&mut image, &record), Change::Topics);
    for node_id in 1..=3 {
        fence(&mut image, node_id);
    }
    assert_eq!((state(&image).leader, state(&image).isr), (4, vec![4]));
    // A new target without broker 4 keeps it (removing) until the target is in sync.
    assert_eq!(apply(&mut image, &reassign(Some(&[1, 2]))), Change::Topics);
    let moving = state(&image);
    assert_eq!((moving.leader, moving.isr.clone()), (4, vec![4]));
    assert_eq!(moving.replicas, vec![1, 2, 4, 5, 6, 3]);
    assert_eq!(moving.adding_replicas, Vec::<i32>::new());
    assert_eq!(moving.removing_replicas, vec![4, 5, 6, 3]);
}

#[test]
fn an_isr_change_between_proposal_and_apply_does_not_void_an_election() {
    let mut image = image(&[1, 2, 3], 2);
    let record = elect(&image, Election::Preferred);
    // The leader shrinks its ISR before the election is applied: the partition epoch moved.
    let shrink = alter(&image, &[1, 2]);
    assert_eq!(apply(&mut image, &shrink), Change::Topics);
    assert_eq!(apply(&mut image, &record), Change::Topics);
    assert_eq!(state(&image).leader, 1);
}
