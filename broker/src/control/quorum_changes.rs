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
use crate::quorum::{ProposalError, Quorum};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use std::collections::BTreeMap;
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
            Subject::Topic(name) => topic_records(name, before, &after),
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
        // A name or value longer than a record holds would be cut: refused instead.
        if MetadataRecord::decode(&record.encode()).as_ref() != Ok(&record) {
            outcomes[position] = Err((
                ResponseError::InvalidConfig,
                format!(
                    "a name or value is longer than the metadata log holds ({} bytes)",
                    crate::quorum::records::MAX_STRING_BYTES
                ),
            ));
            continue;
        }
        proposed.push((position, quorum.submit(record, COMMIT_TIMEOUT)));
    }
    for (position, reply) in proposed {
        let outcome = match reply.await.unwrap_or(Err(ProposalError::Stopping)) {
            Ok(applied) if applied.change == Change::Refused => Err(refusal(request, position)),
            Ok(_) => Ok(()),
            Err(error @ ProposalError::TooLarge(_)) => {
                Err((ResponseError::PolicyViolation, error.to_string()))
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
        ControlRequest::AllocateProducerId => Vec::new(),
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

/// The records that turn topic `name` of `before` into that of `after`: a new topic with its
/// partitions, a removal, added partitions, changed configs.
pub fn topic_records(
    name: &str,
    before: &ClusterMetadata,
    after: &ClusterMetadata,
) -> Vec<MetadataRecord> {
    let old = before.topics.get(name);
    let new = after.topics.get(name);
    let mut records = Vec::new();
    match (old, new) {
        (Some(old), new) if new.is_none_or(|new| new.id != old.id) => {
            records.push(MetadataRecord::RemoveTopic { topic_id: old.id });
        }
        _ => {}
    }
    let Some(new) = new else {
        return records;
    };
    let existing = match old {
        Some(old) if old.id == new.id => {
            records.extend(config_records(
                ConfigTarget::Topic(name.to_string()),
                &old.configs,
                &new.configs,
            ));
            old.partitions.len()
        }
        _ => {
            records.push(MetadataRecord::Topic {
                topic_id: new.id,
                name: name.to_string(),
                configs: new
                    .configs
                    .iter()
                    .map(|(key, value)| (key.clone(), value.clone()))
                    .collect(),
            });
            0
        }
    };
    for (index, state) in new.partitions.iter().enumerate().skip(existing) {
        records.push(MetadataRecord::Partition {
            topic_id: new.id,
            partition: index as i32,
            replicas: state.replicas.clone(),
            isr: state.isr.clone(),
            leader: state.leader,
            leader_epoch: state.leader_epoch,
            partition_epoch: state.partition_epoch,
        });
    }
    records
}

/// `Config` records turning `old` into `new`.
fn config_records(
    target: ConfigTarget,
    old: &BTreeMap<String, String>,
    new: &BTreeMap<String, String>,
) -> Vec<MetadataRecord> {
    let removed = old
        .keys()
        .filter(|name| !new.contains_key(*name))
        .map(|name| MetadataRecord::Config {
            target: target.clone(),
            name: name.clone(),
            value: None,
        });
    let set = new
        .iter()
        .filter(|(name, value)| old.get(*name) != Some(value))
        .map(|(name, value)| MetadataRecord::Config {
            target: target.clone(),
            name: name.clone(),
            value: Some(value.clone()),
        });
    removed.chain(set).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::metadata::{PartitionState, TopicMetadata};
    use uuid::Uuid;

    fn partition(leader: i32) -> PartitionState {
        PartitionState {
            replicas: vec![leader, leader + 1],
            isr: vec![leader],
            leader,
            leader_epoch: 0,
            partition_epoch: 0,
        }
    }

    fn with_topic(partitions: usize, configs: &[(&str, &str)]) -> (ClusterMetadata, Uuid) {
        let mut metadata = ClusterMetadata::new_cluster();
        let id = Uuid::new_v4();
        metadata.topics.insert(
            "orders".into(),
            TopicMetadata {
                id,
                shards: vec![0; partitions],
                configs: configs
                    .iter()
                    .map(|(key, value)| (key.to_string(), value.to_string()))
                    .collect(),
                partitions: (0..partitions as i32).map(partition).collect(),
            },
        );
        (metadata, id)
    }

    #[test]
    fn a_new_topic_is_its_record_then_its_partitions() {
        let before = ClusterMetadata::new_cluster();
        let (after, id) = with_topic(2, &[("retention.ms", "5")]);
        let records = topic_records("orders", &before, &after);
        assert_eq!(records.len(), 3);
        assert_eq!(
            records[0],
            MetadataRecord::Topic {
                topic_id: id,
                name: "orders".into(),
                configs: vec![("retention.ms".into(), "5".into())],
            }
        );
        assert!(matches!(
            &records[2],
            MetadataRecord::Partition { partition: 1, leader: 1, replicas, .. } if replicas == &vec![1, 2]
        ));
    }

    #[test]
    fn deletion_growth_and_config_changes() {
        let (before, id) = with_topic(1, &[("retention.ms", "5"), ("segment.bytes", "4096")]);
        let after = ClusterMetadata::new_cluster();
        assert_eq!(
            topic_records("orders", &before, &after),
            vec![MetadataRecord::RemoveTopic { topic_id: id }]
        );
        let mut after = before.clone();
        let topic = after.topics.get_mut("orders").unwrap();
        topic.partitions.push(partition(2));
        topic.shards.push(0);
        topic.configs.remove("segment.bytes");
        topic.configs.insert("retention.ms".into(), "6".into());
        let records = topic_records("orders", &before, &after);
        assert_eq!(
            records,
            vec![
                MetadataRecord::Config {
                    target: ConfigTarget::Topic("orders".into()),
                    name: "segment.bytes".into(),
                    value: None
                },
                MetadataRecord::Config {
                    target: ConfigTarget::Topic("orders".into()),
                    name: "retention.ms".into(),
                    value: Some("6".into())
                },
                MetadataRecord::Partition {
                    topic_id: id,
                    partition: 1,
                    replicas: vec![2, 3],
                    isr: vec![2],
                    leader: 2,
                    leader_epoch: 0,
                    partition_epoch: 0,
                },
            ]
        );
        assert!(topic_records("orders", &before, &before).is_empty());
    }
}
