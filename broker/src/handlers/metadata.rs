//! Metadata (key 3), versions 0–12.
//!
//! Lists the cluster's live brokers (the metadata quorum's registrations, with their racks; this broker
//! always among them), the quorum's leader as the controller (see `controller_id`), and the requested
//! topics (all topics when the list is null, or empty in v0) with each partition's leader, leader epoch,
//! replicas, ISR and offline replicas, as the quorum's image has them (LEADER_NOT_AVAILABLE for a
//! partition without a leader). Unknown topics are created on the spot when auto-creation is enabled and
//! the request allows it (always before v4), through the control plane like CreateTopics.

use super::{simple, str_bytes, topic_name};
use crate::config::{validate_topic_name, BrokerConfig};
use crate::control::{control, topic_outcomes, ControlRequest, NewTopic};
use crate::metadata::{BrokerEndpoint, ClusterMetadata};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::metadata_response::{
    MetadataResponseBroker, MetadataResponsePartition, MetadataResponseTopic,
};
use kafka_protocol::messages::{BrokerId, MetadataRequest, MetadataResponse};
use net::{DecodedHeader, DispatchFuture};
use std::collections::BTreeMap;
use std::rc::Rc;
use uuid::Uuid;

pub const VERSIONS: (i16, i16) = (0, 12);

/// "Not requested" for authorized-operations fields.
pub const OPERATIONS_NOT_REQUESTED: i32 = i32::MIN;
/// Every operation allowed (no ACLs yet): READ, WRITE, CREATE, DELETE, ALTER, DESCRIBE, DESCRIBE_CONFIGS,
/// ALTER_CONFIGS.
pub const ALL_TOPIC_OPERATIONS: i32 =
    (1 << 3) | (1 << 4) | (1 << 5) | (1 << 6) | (1 << 7) | (1 << 8) | (1 << 10) | (1 << 11);

/// Every cluster operation allowed (no ACLs yet): CREATE, ALTER, DESCRIBE, CLUSTER_ACTION,
/// DESCRIBE_CONFIGS, ALTER_CONFIGS, IDEMPOTENT_WRITE (Kafka's answer for a superuser).
pub const ALL_CLUSTER_OPERATIONS: i32 =
    (1 << 5) | (1 << 7) | (1 << 8) | (1 << 9) | (1 << 10) | (1 << 11) | (1 << 12);

/// The authorized-operations field of a response: `all` when the request asked for it (there is no
/// authorizer, so everything is allowed), else "not requested".
pub fn authorized_operations(requested: bool, all: i32) -> i32 {
    if requested {
        all
    } else {
        OPERATIONS_NOT_REQUESTED
    }
}

/// The controller clients send topic changes to (CreateTopics, DeleteTopics, CreatePartitions, the
/// config APIs): the metadata quorum's leader, the active controller, when this node lists it. Any
/// broker accepts those requests (its proposals reach the leader through the quorum), so while the
/// leader is unknown or not listed yet (its registration not applied here) this node names itself:
/// a client given a controller it cannot find among the brokers waits for it (librdkafka "waiting
/// for controller"). KRaft's brokers likewise name a live broker, which forwards.
pub fn controller_id(
    config: &BrokerConfig,
    metadata: &ClusterMetadata,
    listed: &[BrokerEndpoint],
) -> i32 {
    metadata
        .controller_id
        .filter(|leader| listed.iter().any(|broker| broker.node_id == *leader))
        .unwrap_or(config.node_id)
}

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: MetadataRequest, version| async move {
            metadata(state, request, version).await
        },
    )
}

enum Wanted {
    Name(String),
    Id(Uuid),
}

async fn metadata(
    state: Rc<ShardState>,
    request: MetadataRequest,
    version: i16,
) -> MetadataResponse {
    let config = state.config.clone();
    let wanted: Option<Vec<Wanted>> = match &request.topics {
        None => None,
        Some(topics) if topics.is_empty() && version == 0 => None,
        Some(topics) => Some(
            topics
                .iter()
                .map(|topic| match &topic.name {
                    Some(name) => Wanted::Name(name.to_string()),
                    None => Wanted::Id(topic.topic_id),
                })
                .collect(),
        ),
    };
    let allow_auto_create =
        config.auto_create_topics_enable && (version < 4 || request.allow_auto_topic_creation);
    if let (Some(wanted), true) = (&wanted, allow_auto_create) {
        let metadata = state.metadata();
        let missing: Vec<NewTopic> = wanted
            .iter()
            .filter_map(|wanted| match wanted {
                Wanted::Name(name)
                    if !metadata.topics.contains_key(name) && validate_topic_name(name).is_ok() =>
                {
                    Some(NewTopic {
                        name: name.clone(),
                        partitions: config.num_partitions,
                        configs: BTreeMap::new(),
                        replication_factor: None,
                        assignments: Vec::new(),
                    })
                }
                _ => None,
            })
            .collect();
        if !missing.is_empty() {
            let count = missing.len();
            for (topic, outcome) in missing.iter().zip(topic_outcomes(
                control(
                    &state,
                    ControlRequest::CreateTopics {
                        topics: missing.clone(),
                        validate_only: false,
                    },
                )
                .await,
                count,
            )) {
                match outcome {
                    Ok(()) => tracing::info!(topic = %topic.name, "auto-created topic"),
                    Err((ResponseError::TopicAlreadyExists, _)) => {}
                    Err((code, message)) => {
                        tracing::warn!(topic = %topic.name, ?code, %message, "auto-creation failed")
                    }
                }
            }
        }
    }

    let metadata = state.metadata();
    let listed = metadata.listed_brokers(&config);
    let include_operations = request.include_topic_authorized_operations;
    let describe = |name: &str, topic: &crate::metadata::TopicMetadata| {
        let mut response = MetadataResponseTopic::default();
        response.name = Some(topic_name(name));
        response.topic_id = topic.id;
        response.is_internal = crate::internal_topics::is_internal(name);
        response.topic_authorized_operations =
            authorized_operations(include_operations, ALL_TOPIC_OPERATIONS);
        response.partitions = (0..topic.partition_count())
            .filter_map(|index| {
                let state = topic.partition_state(index, config.node_id)?;
                let mut partition = MetadataResponsePartition::default();
                partition.partition_index = index;
                partition.leader_id = BrokerId(state.leader);
                partition.leader_epoch = state.leader_epoch;
                partition.replica_nodes = state.replicas.iter().copied().map(BrokerId).collect();
                partition.isr_nodes = state.isr.iter().copied().map(BrokerId).collect();
                // Replicas on brokers not listed (fenced, or not registered yet).
                partition.offline_replicas = state
                    .replicas
                    .iter()
                    .copied()
                    .filter(|replica| !listed.iter().any(|broker| broker.node_id == *replica))
                    .map(BrokerId)
                    .collect();
                if state.leader < 0 {
                    partition.error_code = ResponseError::LeaderNotAvailable.code();
                }
                Some(partition)
            })
            .collect();
        response
    };
    let topics = match wanted {
        None => metadata
            .topics
            .iter()
            .map(|(name, topic)| describe(name, topic))
            .collect(),
        Some(wanted) => wanted
            .iter()
            .map(|wanted| {
                let found = match wanted {
                    Wanted::Name(name) => metadata.topics.get_key_value(name),
                    Wanted::Id(id) => metadata.topic_by_id(*id),
                };
                match (found, wanted) {
                    (Some((name, topic)), _) => describe(name, topic),
                    (None, Wanted::Name(name)) => {
                        let mut response = MetadataResponseTopic::default();
                        response.name = Some(topic_name(name));
                        response.error_code = if validate_topic_name(name).is_err() {
                            ResponseError::InvalidTopicException.code()
                        } else {
                            ResponseError::UnknownTopicOrPartition.code()
                        };
                        response.topic_authorized_operations = OPERATIONS_NOT_REQUESTED;
                        response
                    }
                    (None, Wanted::Id(id)) => {
                        let mut response = MetadataResponseTopic::default();
                        response.topic_id = *id;
                        response.error_code = ResponseError::UnknownTopicId.code();
                        response.topic_authorized_operations = OPERATIONS_NOT_REQUESTED;
                        response
                    }
                }
            })
            .collect(),
    };

    let mut response = MetadataResponse::default();
    response.controller_id = BrokerId(controller_id(&config, &metadata, &listed));
    response.brokers = listed
        .into_iter()
        .map(|endpoint| {
            let mut broker = MetadataResponseBroker::default();
            broker.node_id = BrokerId(endpoint.node_id);
            broker.host = str_bytes(endpoint.host);
            broker.port = endpoint.port as i32;
            broker.rack = endpoint.rack.map(str_bytes);
            broker
        })
        .collect();
    response.cluster_id = Some(str_bytes(metadata.cluster_id.clone()));
    // Only v8–10 carry the field (decoded as false elsewhere, and not encoded there).
    response.cluster_authorized_operations = authorized_operations(
        request.include_cluster_authorized_operations,
        ALL_CLUSTER_OPERATIONS,
    );
    response.topics = topics;
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Kafka's AclOperation codes a superuser is granted on each resource type.
    const CLUSTER: [i32; 7] = [5, 7, 8, 9, 10, 11, 12];
    const TOPIC: [i32; 8] = [3, 4, 5, 6, 7, 8, 10, 11];

    fn bits(codes: &[i32]) -> i32 {
        codes.iter().map(|code| 1 << code).sum()
    }

    #[test]
    fn authorized_operations_answer_what_is_asked() {
        assert_eq!(
            authorized_operations(true, ALL_CLUSTER_OPERATIONS),
            bits(&CLUSTER)
        );
        assert_eq!(ALL_CLUSTER_OPERATIONS.count_ones(), 7);
        assert_eq!(
            authorized_operations(true, ALL_TOPIC_OPERATIONS),
            bits(&TOPIC)
        );
        assert_eq!(
            authorized_operations(false, ALL_CLUSTER_OPERATIONS),
            i32::MIN
        );
        assert_eq!(authorized_operations(false, ALL_TOPIC_OPERATIONS), i32::MIN);
    }
}
