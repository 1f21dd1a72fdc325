//! Leader elections (Kafka's ElectLeaders) and partition reassignments (AlterPartitionReassignments),
//! as the control plane proposes them: each partition is checked against the quorum's image for the
//! error Kafka answers (ELECTION_NOT_NEEDED, PREFERRED_LEADER_NOT_AVAILABLE,
//! INVALID_REPLICA_ASSIGNMENT, NO_REASSIGNMENT_IN_PROGRESS, …), then one `ElectLeader` or `Reassign`
//! record per partition is proposed, all at once, and each outcome is what the quorum's apply made of
//! it (`quorum::partition_changes`). The records carry what they need to be checked again when
//! applied, so these changes are not serialized with topic changes (as AlterPartition is not).

use super::requests::{Reassignment, TopicOutcome};
use crate::metadata::PartitionState;
use crate::quorum::image::{Change, MetadataImage};
use crate::quorum::partition_changes::preferred_election_due;
use crate::quorum::records::{Election, MetadataRecord};
use crate::quorum::{Applied, ProposalError, Quorum};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use std::rc::Rc;
use std::time::Duration;

/// How long the proposals may wait for the quorum (a leaderless quorum commits nothing).
const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Elects leaders of `partitions` as `election` says; one outcome per partition, in order.
pub async fn elect_leaders(
    state: &Rc<ShardState>,
    election: Election,
    partitions: &[(String, i32)],
) -> Vec<TopicOutcome> {
    let Some(quorum) = state.quorum.borrow().clone() else {
        return vec![Err(no_quorum()); partitions.len()];
    };
    let image = quorum.image.borrow().clone();
    let checked = partitions
        .iter()
        .map(|(topic, index)| {
            let (topic_id, partition) = find(&image, topic, *index)?;
            check_election(&image, partition, election)?;
            Ok(Some(MetadataRecord::ElectLeader {
                topic_id,
                partition: *index,
                partition_epoch: partition.partition_epoch,
                election,
            }))
        })
        .collect();
    let refused = match election {
        Election::Preferred => (
            ResponseError::PreferredLeaderNotAvailable,
            "the preferred leader is no longer a live in-sync replica",
        ),
        Election::Unclean => (
            ResponseError::EligibleLeadersNotAvailable,
            "the partition has a leader now, or no live replica",
        ),
    };
    let outcomes = propose_all(&quorum, checked, refused).await;
    // A refused election is checked again, so that one made meanwhile (by the controller's own
    // rebalancing, or a duplicate) is ELECTION_NOT_NEEDED rather than a failure.
    let image = quorum.image.borrow().clone();
    outcomes
        .into_iter()
        .zip(partitions)
        .map(|(outcome, (topic, index))| match outcome {
            Err((code, _)) if code == refused.0 => find(&image, topic, *index)
                .and_then(|(_, partition)| check_election(&image, partition, election))
                .and(outcome),
            outcome => outcome,
        })
        .collect()
}

/// Starts or cancels `reassignments`; one outcome per reassignment, in order.
pub async fn reassign(state: &Rc<ShardState>, reassignments: &[Reassignment]) -> Vec<TopicOutcome> {
    let Some(quorum) = state.quorum.borrow().clone() else {
        return vec![Err(no_quorum()); reassignments.len()];
    };
    let image = quorum.image.borrow().clone();
    let checked = reassignments
        .iter()
        .map(|reassignment| {
            let (topic_id, partition) = find(&image, &reassignment.topic, reassignment.partition)?;
            check_reassignment(&image, partition, reassignment)?;
            // Already the replicas, with nothing under way: done without a record, as Kafka answers.
            if !partition.is_reassigning()
                && reassignment.target.as_deref() == Some(&partition.replicas[..])
            {
                return Ok(None);
            }
            Ok(Some(MetadataRecord::Reassign {
                topic_id,
                partition: reassignment.partition,
                target: reassignment.target.clone(),
            }))
        })
        .collect();
    let refused = (
        ResponseError::InvalidReplicaAssignment,
        "the partition changed since it was checked (retry)",
    );
    propose_all(&quorum, checked, refused).await
}

/// Topic `topic`'s id and partition `index`, or UNKNOWN_TOPIC_OR_PARTITION.
fn find<'a>(
    image: &'a MetadataImage,
    topic: &str,
    index: i32,
) -> Result<(uuid::Uuid, &'a PartitionState), (ResponseError, String)> {
    image
        .topics
        .get(topic)
        .and_then(|found| {
            let partition = found.partitions.get(usize::try_from(index).ok()?)?;
            Some((found.id, partition))
        })
        .ok_or_else(|| {
            (
                ResponseError::UnknownTopicOrPartition,
                format!("no partition {topic}-{index}"),
            )
        })
}

/// The error Kafka answers for an election that is not due, if it is not.
fn check_election(
    image: &MetadataImage,
    partition: &PartitionState,
    election: Election,
) -> Result<(), (ResponseError, String)> {
    let live = |id: &i32| image.brokers.get(id).is_some_and(|broker| !broker.fenced);
    match election {
        Election::Preferred => {
            let preferred = partition.replicas.first().copied().unwrap_or(-1);
            if partition.leader == preferred {
                return Err((
                    ResponseError::ElectionNotNeeded,
                    format!("broker {preferred}, the preferred leader, leads already"),
                ));
            }
            if !preferred_election_due(partition, live) {
                return Err((
                    ResponseError::PreferredLeaderNotAvailable,
                    format!("the preferred leader {preferred} is not a live in-sync replica"),
                ));
            }
        }
        Election::Unclean => {
            if partition.leader != -1 {
                return Err((
                    ResponseError::ElectionNotNeeded,
                    format!("broker {} leads", partition.leader),
                ));
            }
            if !partition.replicas.iter().any(live) {
                return Err((
                    ResponseError::EligibleLeadersNotAvailable,
                    "no replica is on a live broker".into(),
                ));
            }
        }
    }
    Ok(())
}

/// The error Kafka answers for a reassignment that cannot be made, if it cannot.
fn check_reassignment(
    image: &MetadataImage,
    partition: &PartitionState,
    reassignment: &Reassignment,
) -> Result<(), (ResponseError, String)> {
    let invalid = |message: String| Err((ResponseError::InvalidReplicaAssignment, message));
    let Some(target) = &reassignment.target else {
        if !partition.is_reassigning() {
            return Err((
                ResponseError::NoReassignmentInProgress,
                "no reassignment of this partition is in progress".into(),
            ));
        }
        let original_in_sync = partition
            .isr
            .iter()
            .any(|id| !partition.adding_replicas.contains(id));
        if !original_in_sync {
            return invalid(
                "cancelling would leave the partition without an in-sync replica".into(),
            );
        }
        return Ok(());
    };
    if target.is_empty() {
        return invalid("the target replica list is empty".into());
    }
    // Before the quadratic checks below: a list longer than the brokers repeats one or names one
    // unknown.
    if target.len() > image.brokers.len() {
        return invalid(format!(
            "{} replicas named, {} brokers registered",
            target.len(),
            image.brokers.len()
        ));
    }
    if let Some((i, id)) = target
        .iter()
        .enumerate()
        .find(|(i, id)| target[..*i].contains(id))
    {
        return invalid(format!("broker {id} is named twice (position {i})"));
    }
    if let Some(id) = target.iter().find(|id| !image.brokers.contains_key(id)) {
        return invalid(format!("broker {id} is not registered"));
    }
    let current = partition.target_replicas().len();
    if !reassignment.allow_replication_factor_change && target.len() != current {
        return Err((
            ResponseError::InvalidReplicationFactor,
            format!(
                "the replication factor would change from {current} to {} (allow_replication_factor_change is false)",
                target.len()
            ),
        ));
    }
    Ok(())
}

/// Submits every record at once and waits for each (`None`: nothing to propose, done); a record the
/// apply refused gets `refused`.
async fn propose_all(
    quorum: &Rc<Quorum>,
    records: Vec<Result<Option<MetadataRecord>, (ResponseError, String)>>,
    refused: (ResponseError, &str),
) -> Vec<TopicOutcome> {
    let pending: Vec<_> = records
        .into_iter()
        .map(|record| {
            record.map(|record| record.map(|record| quorum.submit(record, COMMIT_TIMEOUT)))
        })
        .collect();
    let mut outcomes = Vec::with_capacity(pending.len());
    for pending in pending {
        outcomes.push(match pending {
            Err(error) => Err(error),
            Ok(None) => Ok(()),
            Ok(Some(receiver)) => {
                let applied: Result<Applied, ProposalError> =
                    receiver.await.unwrap_or(Err(ProposalError::Stopping));
                match applied {
                    Ok(applied) if applied.change == Change::Topics => Ok(()),
                    Ok(_) => Err((refused.0, refused.1.to_string())),
                    Err(error) => Err((ResponseError::RequestTimedOut, error.to_string())),
                }
            }
        });
    }
    outcomes
}

fn no_quorum() -> (ResponseError, String) {
    (
        ResponseError::NotController,
        "no metadata quorum on this node".into(),
    )
}
