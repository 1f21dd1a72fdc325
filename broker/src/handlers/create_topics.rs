//! CreateTopics (key 19), versions 2–7.
//!
//! Validates names, partition counts, replication factors or explicit assignments (the control plane
//! checks them against the live brokers: INVALID_REPLICATION_FACTOR beyond; -1 means
//! `default.replication.factor`) and configs (the control plane validates them against the settings table: `TopicConfig::resolve`), then
//! creates the topics through the control plane. v5+ answers with the partition count, replication
//! factor and every config with its source, as DescribeConfigs reports them.

use super::{simple, str_bytes};
use crate::config::describe::{describe_topic_with, ConfigSource};
use crate::control::{control, topic_outcomes, ControlRequest, NewTopic};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_topics_response::{
    CreatableTopicConfigs, CreatableTopicResult,
};
use kafka_protocol::messages::{CreateTopicsRequest, CreateTopicsResponse};
use net::{DecodedHeader, DispatchFuture};
use std::collections::BTreeMap;
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (2, 7);

/// DescribeConfigs / CreateTopics config sources (`ConfigSource`'s codes).
pub const SOURCE_DYNAMIC_TOPIC_CONFIG: i8 = ConfigSource::TopicConfig as i8;
pub const SOURCE_STATIC_BROKER_CONFIG: i8 = ConfigSource::StaticBrokerConfig as i8;
pub const SOURCE_DEFAULT_CONFIG: i8 = ConfigSource::DefaultConfig as i8;

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: CreateTopicsRequest, version| async move {
            create_topics(state, request, version).await
        },
    )
}

async fn create_topics(
    state: Rc<ShardState>,
    request: CreateTopicsRequest,
    version: i16,
) -> CreateTopicsResponse {
    let mut results: Vec<CreatableTopicResult> = Vec::with_capacity(request.topics.len());
    let mut to_create: Vec<(usize, NewTopic)> = Vec::new();
    let mut seen = std::collections::HashSet::new();
    for topic in &request.topics {
        let name = topic.name.to_string();
        let mut result = CreatableTopicResult::default();
        result.name = topic.name.clone();
        result.num_partitions = -1;
        result.replication_factor = -1;
        let partitions = if !topic.assignments.is_empty() {
            topic.assignments.len() as i32
        } else if topic.num_partitions == -1 {
            state.config.num_partitions
        } else {
            topic.num_partitions
        };
        let configs: BTreeMap<String, String> = topic
            .configs
            .iter()
            .filter_map(|config| {
                config
                    .value
                    .as_ref()
                    .map(|value| (config.name.to_string(), value.to_string()))
            })
            .collect();
        let error = if !seen.insert(name.clone()) {
            Some((
                ResponseError::InvalidRequest,
                format!("topic {name} appears more than once in the request"),
            ))
        } else if topic.replication_factor != -1 && !topic.assignments.is_empty() {
            Some((
                ResponseError::InvalidRequest,
                "both replication factor and assignments were given".into(),
            ))
        } else if !topic.assignments.is_empty() && topic.num_partitions != -1 {
            Some((
                ResponseError::InvalidRequest,
                "both partition count and assignments were given".into(),
            ))
        } else {
            None
        };
        match error {
            Some((code, message)) => {
                tracing::info!(topic = %name, ?code, %message, "CreateTopics refused");
                result.error_code = code.code();
                result.error_message = Some(str_bytes(message));
            }
            None => {
                result.num_partitions = partitions;
                to_create.push((
                    results.len(),
                    NewTopic {
                        name,
                        partitions,
                        configs,
                        replication_factor: (topic.replication_factor != -1)
                            .then_some(topic.replication_factor),
                        assignments: topic
                            .assignments
                            .iter()
                            .map(|assignment| assignment.broker_ids.iter().map(|id| id.0).collect())
                            .collect(),
                    },
                ));
            }
        }
        results.push(result);
    }
    if !to_create.is_empty() {
        let topics: Vec<NewTopic> = to_create.iter().map(|(_, topic)| topic.clone()).collect();
        let count = topics.len();
        let outcomes = topic_outcomes(
            control(
                &state,
                ControlRequest::CreateTopics {
                    topics,
                    validate_only: request.validate_only,
                },
            )
            .await,
            count,
        );
        let metadata = state.metadata();
        for ((position, topic), outcome) in to_create.into_iter().zip(outcomes) {
            let result = &mut results[position];
            match outcome {
                Ok(()) => {
                    if let Some(created) = metadata.topics.get(&topic.name) {
                        result.topic_id = created.id;
                        result.replication_factor = created
                            .partition_state(0, metadata.node_id)
                            .map_or(1, |state| state.replicas.len() as i16);
                    } else {
                        // validate_only: what the topic would get.
                        result.replication_factor = topic.replication_factor.unwrap_or(
                            topic
                                .assignments
                                .first()
                                .map_or(state.config.default_replication_factor, |replicas| {
                                    replicas.len() as i16
                                }),
                        );
                    }
                    if version >= 5 {
                        result.configs = Some(
                            describe_topic_with(
                                &state.config.settings,
                                metadata.dynamic_configs(),
                                &topic.configs,
                            )
                            .into_iter()
                            .map(|described| {
                                let mut config = CreatableTopicConfigs::default();
                                config.name = str_bytes(described.name);
                                config.value = described.value.map(str_bytes);
                                config.read_only = described.read_only;
                                config.config_source = described.source.code();
                                config.is_sensitive = described.is_sensitive;
                                config
                            })
                            .collect(),
                        );
                    }
                }
                Err((code, message)) => {
                    tracing::info!(topic = %topic.name, ?code, %message, "CreateTopics refused");
                    result.error_code = code.code();
                    result.error_message = Some(str_bytes(message));
                    result.num_partitions = -1;
                    result.replication_factor = -1;
                }
            }
        }
    }
    let mut response = CreateTopicsResponse::default();
    response.topics = results;
    response
}
