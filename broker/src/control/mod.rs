//! The control plane: the one place where cluster metadata changes (topic creation and deletion,
//! partition increases, producer-id allocation, topic and dynamic broker configs). It runs on shard 0;
//! other shards forward their requests there. Each change: validate against the current metadata and
//! make it on a copy → commit it through the metadata quorum (`quorum_changes`: the copy's difference
//! becomes records, proposed and applied on every node) → publish the quorum's image as a new metadata
//! version (`quorum_publisher`: persist, broadcast to every shard and wait until each has applied it,
//! opening or deleting its partitions) → answer. Without a quorum (the in-process tests' shards) the
//! copy itself is persisted and broadcast. Changes are serialized by a lock held across those steps,
//! so shards see versions in order.

pub mod alter_configs;
pub mod alter_partition;
pub mod partition_moves;
pub mod producer_ids;
pub mod quorum_changes;
pub mod quorum_publisher;
pub mod replica_placement;
pub mod requests;
pub mod unopened;

use crate::config::{validate_topic_name, BrokerConfig, TopicConfig};
use crate::internal_topics;
use crate::messages::ShardMessage;
use crate::metadata::{ClusterMetadata, TopicMetadata};
use crate::partition::manager::UnopenedPartition;
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
pub use requests::{
    topic_outcomes, ConfigAlteration, ConfigResource, ControlRequest, ControlResponse, NewTopic,
    TopicOutcome,
};
use shard::ShardId;
use std::rc::Rc;
use std::sync::Arc;
use uuid::Uuid;

/// Shard 0 owns the control plane.
pub const CONTROL_SHARD: ShardId = ShardId(0);

/// Most partitions one topic may have (a bound, like every other); defined with the settings it bounds.
pub use crate::config::MAX_PARTITIONS_PER_TOPIC;

/// Runs a control request: here on shard 0, else by forwarding it to shard 0.
pub async fn control(state: &Rc<ShardState>, request: ControlRequest) -> ControlResponse {
    if state.id != CONTROL_SHARD {
        let reply = state
            .send(CONTROL_SHARD, |reply| ShardMessage::Control {
                request,
                reply,
            })
            .await;
        return match reply {
            Ok(receiver) => receiver.await.unwrap_or_else(|_| unavailable()),
            Err(_) => unavailable(),
        };
    }
    execute(state, request).await
}

fn unavailable() -> ControlResponse {
    ControlResponse::ProducerId(Err(ResponseError::BrokerNotAvailable))
}

async fn execute(state: &Rc<ShardState>, request: ControlRequest) -> ControlResponse {
    if let ControlRequest::AllocateProducerId = request {
        // Serialized by its own lock: waiting for the quorum must not hold up topic changes.
        return ControlResponse::ProducerId(producer_ids::allocate(state).await);
    }
    if let ControlRequest::AlterPartition {
        topic,
        partition,
        change,
    } = request
    {
        // Not serialized with topic changes either: the record carries the epochs it was made
        // against, and the quorum's apply refuses it if they moved.
        let outcome = alter_partition::propose(state, &topic, partition, change).await;
        return ControlResponse::Topics(vec![outcome]);
    }
    match request {
        // Checked again when applied (see `partition_moves`): not serialized with topic changes.
        ControlRequest::ElectLeaders {
            election,
            partitions,
        } => {
            let outcomes = partition_moves::elect_leaders(state, election, &partitions).await;
            return ControlResponse::Topics(outcomes);
        }
        ControlRequest::Reassign { reassignments } => {
            let outcomes = partition_moves::reassign(state, &reassignments).await;
            return ControlResponse::Topics(outcomes);
        }
        _ => {}
    }
    let quorum = state.quorum.borrow().clone();
    if quorum.is_some() {
        // Until this node's topics from before the quorum are in its log, a change could be lost.
        if let Err(refusal) = quorum_changes::wait_until_managed(state).await {
            return ControlResponse::Topics(vec![Err(refusal); request.outcome_count()]);
        }
    }
    let _serialized = state.control_lock.lock().await;
    let current = state.metadata();
    let mut metadata: ClusterMetadata = (*current).clone();
    let requested = unopened::requested_topics(&request);
    let (response, changed) = change(state, &mut metadata, &request);
    if !changed {
        return response;
    }
    let (response, unopened) = match quorum {
        Some(quorum) => {
            quorum_changes::commit(state, &quorum, &request, &current, metadata, response).await
        }
        None => {
            metadata.version += 1;
            if let Err(error) = metadata.persist(&state.config.data_dir) {
                return storage_error(&response, &error);
            }
            (response, broadcast(state, Arc::new(metadata)).await)
        }
    };
    unopened::fail_unopened(response, &requested, &unopened)
}

/// Every outcome of `response` as KAFKA_STORAGE_ERROR: the metadata file could not be written.
fn storage_error(response: &ControlResponse, error: &std::io::Error) -> ControlResponse {
    tracing::error!(%error, "cannot persist metadata");
    let count = match response {
        ControlResponse::Topics(outcomes) => outcomes.len(),
        ControlResponse::ProducerId(_) => 0,
    };
    ControlResponse::Topics(vec![
        Err((
            ResponseError::KafkaStorageError,
            error.to_string()
        ));
        count
    ])
}

/// Validates `request` against `metadata` and makes its changes there; returns the outcomes and whether
/// anything changed.
fn change(
    state: &Rc<ShardState>,
    metadata: &mut ClusterMetadata,
    request: &ControlRequest,
) -> (ControlResponse, bool) {
    match request {
        ControlRequest::CreateTopics {
            topics,
            validate_only,
        } => {
            let outcomes: Vec<TopicOutcome> = topics
                .iter()
                .map(|topic| create_topic(state, metadata, topic, *validate_only))
                .collect();
            let changed = !validate_only && outcomes.iter().any(Result::is_ok);
            (ControlResponse::Topics(outcomes), changed)
        }
        ControlRequest::DeleteTopics { names } => {
            let outcomes: Vec<TopicOutcome> = names
                .iter()
                .map(|name| delete_topic(metadata, name))
                .collect();
            let changed = outcomes.iter().any(Result::is_ok);
            (ControlResponse::Topics(outcomes), changed)
        }
        ControlRequest::CreatePartitions {
            topics,
            validate_only,
        } => {
            let outcomes: Vec<TopicOutcome> = topics
                .iter()
                .map(|(name, count)| {
                    create_partitions(state, metadata, name, *count, *validate_only)
                })
                .collect();
            let changed = !validate_only && outcomes.iter().any(Result::is_ok);
            (ControlResponse::Topics(outcomes), changed)
        }
        ControlRequest::AlterConfigs {
            alterations,
            validate_only,
        } => {
            let before = metadata.clone();
            let outcomes =
                alter_configs::apply(&state.config, metadata, alterations, *validate_only);
            let changed = *metadata != before;
            (ControlResponse::Topics(outcomes), changed)
        }
        ControlRequest::AllocateProducerId
        | ControlRequest::AlterPartition { .. }
        | ControlRequest::ElectLeaders { .. }
        | ControlRequest::Reassign { .. } => {
            unreachable!("answered by execute")
        }
    }
}

fn delete_topic(metadata: &mut ClusterMetadata, name: &str) -> TopicOutcome {
    if internal_topics::is_internal(name) && metadata.topics.contains_key(name) {
        return Err((
            ResponseError::InvalidTopicException,
            format!("{name} is internal: deleting it would lose its coordinator's state"),
        ));
    }
    match metadata.topics.remove(name) {
        Some(_) => {
            tracing::info!(topic = %name, "deleting topic");
            Ok(())
        }
        None => Err((
            ResponseError::UnknownTopicOrPartition,
            format!("topic {name} does not exist"),
        )),
    }
}

fn create_partitions(
    state: &Rc<ShardState>,
    metadata: &mut ClusterMetadata,
    name: &str,
    count: i32,
    validate_only: bool,
) -> TopicOutcome {
    if internal_topics::is_internal(name) {
        return Err((
            ResponseError::InvalidPartitions,
            format!(
                "{name} is internal: more partitions would move its keys to other coordinators"
            ),
        ));
    }
    let current = match metadata.topics.get(name) {
        Some(topic) => topic.partition_count(),
        None => {
            return Err((
                ResponseError::UnknownTopicOrPartition,
                format!("topic {name} does not exist"),
            ))
        }
    };
    if count <= current {
        return Err((
            ResponseError::InvalidPartitions,
            format!("topic {name} has {current} partitions; the count can only be increased, not set to {count}"),
        ));
    }
    if count > MAX_PARTITIONS_PER_TOPIC {
        return Err((
            ResponseError::InvalidPartitions,
            format!("at most {MAX_PARTITIONS_PER_TOPIC} partitions per topic"),
        ));
    }
    crate::descriptor_budget::check_partition_budget(&state.config, metadata, count - current)?;
    if !validate_only {
        let added = (count - current) as usize;
        let placed = metadata.place_partitions(state.config.shards, added);
        let replicas = if metadata.quorum_managed {
            // The new partitions keep the topic's replication factor.
            let factor = metadata.topics[name]
                .partitions
                .first()
                .map_or(1, |state| state.replicas.len());
            Some(replica_placement::place(
                &state.config,
                metadata,
                name,
                current..count,
                factor,
            )?)
        } else {
            None
        };
        let topic = metadata.topics.get_mut(name).expect("checked above");
        topic.shards.extend(placed);
        if let Some(replicas) = replicas {
            topic.partitions.extend(replicas);
        }
        tracing::info!(topic = %name, from = current, to = count, "partitions added");
    }
    Ok(())
}

fn create_topic(
    state: &Rc<ShardState>,
    metadata: &mut ClusterMetadata,
    topic: &NewTopic,
    validate_only: bool,
) -> TopicOutcome {
    validate_topic_name(&topic.name)
        .map_err(|message| (ResponseError::InvalidTopicException, message))?;
    // The quorum's log owns this name's partition directory (Kafka's answer and message).
    if topic.name == internal_topics::CLUSTER_METADATA_TOPIC {
        return Err((
            ResponseError::InvalidRequest,
            format!("Creation of internal topic {} is prohibited.", topic.name),
        ));
    }
    // An internal topic has the shape its coordinator needs, whoever asks for it.
    let topic = &internal_topic(&state.config, &topic.name).unwrap_or_else(|| topic.clone());
    if metadata.topics.contains_key(&topic.name) {
        return Err((
            ResponseError::TopicAlreadyExists,
            format!("topic {} already exists", topic.name),
        ));
    }
    // Kafka refuses names that collide once '.' and '_' are treated alike (metric names).
    let normalized = topic.name.replace('.', "_");
    if let Some(existing) = metadata
        .topics
        .keys()
        .find(|name| name.replace('.', "_") == normalized)
    {
        return Err((
            ResponseError::InvalidTopicException,
            format!(
                "topic {} collides with existing topic {existing}",
                topic.name
            ),
        ));
    }
    if topic.partitions < 1 || topic.partitions > MAX_PARTITIONS_PER_TOPIC {
        return Err((
            ResponseError::InvalidPartitions,
            format!(
                "partition count {} is not in 1..={MAX_PARTITIONS_PER_TOPIC}",
                topic.partitions
            ),
        ));
    }
    let defaults = state
        .config
        .effective_log_defaults(metadata.dynamic_configs());
    TopicConfig::resolve(&defaults, &topic.configs)
        .map_err(|message| (ResponseError::InvalidConfig, message))?;
    crate::descriptor_budget::check_partition_budget(&state.config, metadata, topic.partitions)?;
    // Replicas (where the quorum manages topics; else this node alone, implicitly).
    let partitions = if metadata.quorum_managed {
        replica_placement::for_new_topic(&state.config, metadata, topic)?
    } else {
        replica_placement::check_single_node(&state.config, topic)?;
        Vec::new()
    };
    if !validate_only {
        let shards = metadata.place_partitions(state.config.shards, topic.partitions as usize);
        tracing::info!(topic = %topic.name, partitions = topic.partitions, ?shards, "creating topic");
        metadata.topics.insert(
            topic.name.clone(),
            TopicMetadata {
                id: Uuid::new_v4(),
                shards,
                configs: topic.configs.clone(),
                partitions,
            },
        );
    }
    Ok(())
}

/// The internal topic `name` as its coordinator needs it (see `internal_topics`); None for other topics.
pub fn internal_topic(config: &BrokerConfig, name: &str) -> Option<NewTopic> {
    Some(NewTopic {
        name: name.to_string(),
        partitions: internal_topics::partition_count(name, config)?,
        configs: internal_topics::topic_configs_for_broker(name, config)?,
        replication_factor: None,
        assignments: Vec::new(),
    })
}

/// Makes every shard adopt `metadata`, shard 0 included; returns once all have, with the partitions
/// that could not be opened.
async fn broadcast(
    state: &Rc<ShardState>,
    metadata: Arc<ClusterMetadata>,
) -> Vec<UnopenedPartition> {
    // Two phases when topics go (or are re-created under another id): every shard first closes and
    // deletes what is gone, then every shard opens what is new. In one phase a shard opening a
    // re-created topic's directory could race another shard deleting the old topic's at the same path.
    let previous = state.metadata();
    let removed = |name: &String, topic: &crate::metadata::TopicMetadata| {
        metadata
            .topics
            .get(name)
            .is_none_or(|now| now.id != topic.id)
    };
    if previous
        .topics
        .iter()
        .any(|(name, topic)| removed(name, topic))
    {
        let mut interim = (*previous).clone();
        interim.topics.retain(|name, topic| !removed(name, topic));
        interim.dropped_topics = metadata.dropped_topics.clone();
        broadcast_once(state, Arc::new(interim)).await;
    }
    broadcast_once(state, metadata).await
}

async fn broadcast_once(
    state: &Rc<ShardState>,
    metadata: Arc<ClusterMetadata>,
) -> Vec<UnopenedPartition> {
    let mut replies = Vec::with_capacity(state.config.shards);
    for peer in (0..state.config.shards)
        .map(ShardId)
        .filter(|&peer| peer != state.id)
    {
        let metadata = metadata.clone();
        match state
            .send(peer, |reply| ShardMessage::ApplyMetadata {
                metadata,
                reply,
            })
            .await
        {
            Ok(receiver) => replies.push(receiver),
            Err(_) => tracing::error!(%peer, "cannot reach shard to apply metadata"),
        }
    }
    let mut unopened = state.apply_metadata(metadata).await;
    for reply in replies {
        if let Ok(more) = reply.await {
            unopened.extend(more);
        }
    }
    unopened
}
