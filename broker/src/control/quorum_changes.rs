//! Topic changes through the metadata quorum. The control plane validates a request against its
//! metadata (the quorum's image as last published) and makes the change on a copy; the difference
//! between the two, topic by topic, becomes records (`topic_records`): one entry per topic, applied
//! together or not at all (a `Batch`). Each is proposed (a follower's proposal reaches the leader, the
//! active controller, through Raft) and the answer waits until this node has applied it. Every node
//! applies the same records in the same order and checks them again (a topic created twice at once on
//! two nodes is committed once: the later batch is refused everywhere, and its proposer answers
//! TOPIC_ALREADY_EXISTS). Then the new image is published to the shards here, and the partitions this
//! node leads are open before the answer goes out.
//!
//! This node's dynamic broker configs (resource "<node id>") stay in its own `cluster_metadata.toml`.

use super::requests::{ConfigResource, ControlRequest, ControlResponse};
use super::{broadcast, quorum_publisher};
use crate::metadata::ClusterMetadata;
use crate::partition::manager::UnopenedPartition;
use crate::quorum::image::Change;
use crate::quorum::records::{ConfigTarget, MetadataRecord};
use crate::quorum::topic_changes::{config_records, topic_records};
use crate::quorum::{ProposalError, Quorum};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;

/// How long a topic change waits for the quorum to commit it (a leader included); then
/// REQUEST_TIMED_OUT, which admin clients retry.
pub const COMMIT_TIMEOUT: Duration = Duration::from_secs(10);

/// Waits (at most `COMMIT_TIMEOUT`) until the quorum manages this node's topics: the metadata it
/// publishes carries them (after the migration of the topics from before the quorum).
pub async fn wait_until_managed(state: &Rc<ShardState>) -> Result<(), (ResponseError, String)> {
    let deadline = shard::task::now() + COMMIT_TIMEOUT;
    while !state.metadata().quorum_managed {
        if shard::task::now() >= deadline {
            return Err((
                ResponseError::RequestTimedOut,
                "the metadata quorum has no leader yet".into(),
            ));
        }
        shard::task::sleep(Duration::from_millis(20)).await;
    }
    Ok(())
}

/// Commits the change from `before` to `after` that `request` made (its outcomes in `response`), then
/// publishes the image. Returns the outcomes (refusals of the quorum included) and the partitions this
/// node could not open.
pub async fn commit(
    state: &Rc<ShardState>,
    quorum: &Quorum,
    request: &ControlRequest,
    before: &ClusterMetadata,
    after: ClusterMetadata,
    response: ControlResponse,
) -> (ControlResponse, Vec<UnopenedPartition>) {
    let ControlResponse::Topics(mut outcomes) = response else {
        return (response, Vec::new());
    };
    let mut unopened = Vec::new();
    if after.broker_configs != before.broker_configs {
        // This node's own configs: its file, as before the quorum.
        let mut local = before.clone();
        local.broker_configs = after.broker_configs.clone();
        local.version += 1;
        if let Err(error) = local.persist(&state.config.data_dir) {
            let refused = super::storage_error(&ControlResponse::Topics(outcomes), &error);
            return (refused, Vec::new());
        }
        unopened.extend(broadcast(state, Arc::new(local)).await);
    }
    // One batch per item, proposed all at once and awaited in order.
    let mut proposed = Vec::with_capacity(outcomes.len());
    let mut seen = std::collections::HashSet::new();
    for (position, subject) in subjects(request).into_iter().enumerate() {
        if outcomes[position].is_err() || !seen.insert(subject.clone()) {
            continue;
        }
        let records = match &subject {
            Subject::Topic(name) => {
                topic_records(name, before.topics.get(name), after.topics.get(name))
            }
            Subject::BrokerDefaults => config_records(
                ConfigTarget::BrokerDefault,
                &before.broker_default_configs,
                &after.broker_default_configs,
            ),
            Subject::ThisBroker => Vec::new(),
        };
        let record = match records.len() {
            0 => continue,
            1 => records.into_iter().next().expect("one"),
            _ => MetadataRecord::Batch(records),
        };
        proposed.push((position, quorum.submit(record, COMMIT_TIMEOUT)));
    }
    for (position, reply) in proposed {
        let outcome = match reply.await.unwrap_or(Err(ProposalError::Stopping)) {
            Ok(applied) if applied.change == Change::Refused => Err(refusal(request, position)),
            Ok(_) => Ok(()),
            Err(error @ ProposalError::TooLarge(_)) => {
                Err((ResponseError::PolicyViolation, error.to_string()))
            }
            Err(error @ ProposalError::Unencodable) => {
                Err((ResponseError::InvalidConfig, error.to_string()))
            }
            Err(error) => Err((ResponseError::RequestTimedOut, error.to_string())),
        };
        if let Err((code, message)) = &outcome {
            tracing::info!(?code, %message, "topic change not committed");
        }
        outcomes[position] = outcome;
    }
    match quorum_publisher::publish_locked(state, quorum).await {
        Ok(more) => unopened.extend(more),
        Err(error) => {
            // Committed in the cluster, but this broker cannot serve it yet.
            for outcome in outcomes.iter_mut().filter(|outcome| outcome.is_ok()) {
                *outcome = Err((
                    ResponseError::KafkaStorageError,
                    format!("committed, but this broker cannot write its metadata file: {error}"),
                ));
            }
        }
    }
    (ControlResponse::Topics(outcomes), unopened)
}

/// What each outcome of a request is about.
#[derive(Clone, PartialEq, Eq, Hash)]
enum Subject {
    Topic(String),
    BrokerDefaults,
    ThisBroker,
}

fn subjects(request: &ControlRequest) -> Vec<Subject> {
    match request {
        ControlRequest::CreateTopics { topics, .. } => topics
            .iter()
            .map(|topic| Subject::Topic(topic.name.clone()))
            .collect(),
        ControlRequest::DeleteTopics { names } => names
            .iter()
            .map(|name| Subject::Topic(name.clone()))
            .collect(),
        ControlRequest::CreatePartitions { topics, .. } => topics
            .iter()
            .map(|(name, _)| Subject::Topic(name.clone()))
            .collect(),
        ControlRequest::AlterConfigs { alterations, .. } => alterations
            .iter()
            .map(|alteration| match &alteration.resource {
                ConfigResource::Topic(name) => Subject::Topic(name.clone()),
                ConfigResource::BrokerDefault => Subject::BrokerDefaults,
                ConfigResource::ThisBroker => Subject::ThisBroker,
            })
            .collect(),
        ControlRequest::AllocateProducerId
        | ControlRequest::AlterPartition { .. }
        | ControlRequest::ElectLeaders { .. }
        | ControlRequest::Reassign { .. } => Vec::new(),
    }
}

/// The answer when the quorum refused item `position`'s records: the image changed under the request
/// (another node made a conflicting change first).
fn refusal(request: &ControlRequest, position: usize) -> (ResponseError, String) {
    match request {
        ControlRequest::CreateTopics { topics, .. } => (
            ResponseError::TopicAlreadyExists,
            format!("topic {} already exists", topics[position].name),
        ),
        ControlRequest::CreatePartitions { .. } => (
            ResponseError::InvalidPartitions,
            "the topic's partitions changed concurrently; retry".into(),
        ),
        _ => (
            ResponseError::UnknownTopicOrPartition,
            "the topic was deleted concurrently".into(),
        ),
    }
}
