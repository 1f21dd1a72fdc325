//! DescribeConfigs (key 32), versions 1–4: topic (resource type 2) and broker (4) configs, each with its
//! value and source (an override is DYNAMIC_TOPIC_CONFIG / STATIC_BROKER_CONFIG, else DEFAULT_CONFIG).

use super::create_topics::{
    SOURCE_DEFAULT_CONFIG, SOURCE_DYNAMIC_TOPIC_CONFIG, SOURCE_STATIC_BROKER_CONFIG,
};
use super::{simple, str_bytes};
use crate::config::TopicConfig;
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (1, 4);

/// (name, value, is it set explicitly, its source when set)
type ConfigEntry = (&'static str, String, bool, i8);

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: DescribeConfigsRequest, _version| async move {
            describe_configs(state, request)
        },
    )
}

fn describe_configs(
    state: Rc<ShardState>,
    request: DescribeConfigsRequest,
) -> DescribeConfigsResponse {
    let metadata = state.metadata();
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let mut result = DescribeConfigsResult::default();
            result.resource_type = resource.resource_type;
            result.resource_name = resource.resource_name.clone();
            let name = resource.resource_name.to_string();
            let entries: Result<Vec<ConfigEntry>, (ResponseError, String)> = match resource
                .resource_type
            {
                RESOURCE_TOPIC => match metadata.topics.get(&name) {
                    Some(topic) => Ok(TopicConfig::describe(
                        &state.config.log_defaults,
                        &topic.configs,
                    )
                    .into_iter()
                    .map(|(key, value, set)| (key, value, set, SOURCE_DYNAMIC_TOPIC_CONFIG))
                    .collect()),
                    None => Err((
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic {name} does not exist"),
                    )),
                },
                RESOURCE_BROKER if name.is_empty() || name == state.config.node_id.to_string() => {
                    Ok(state
                        .config
                        .describe()
                        .into_iter()
                        .map(|(key, value, is_default)| {
                            (key, value, !is_default, SOURCE_STATIC_BROKER_CONFIG)
                        })
                        .collect())
                }
                RESOURCE_BROKER => Err((
                    ResponseError::InvalidRequest,
                    format!("this is broker {}, not {name}", state.config.node_id),
                )),
                other => Err((
                    ResponseError::InvalidRequest,
                    format!("resource type {other} is not supported"),
                )),
            };
            match entries {
                Ok(entries) => {
                    let wanted = resource.configuration_keys.as_ref();
                    result.configs = entries
                        .into_iter()
                        .filter(|(key, ..)| {
                            wanted.is_none_or(|keys| {
                                keys.iter().any(|wanted| wanted.as_str() == *key)
                            })
                        })
                        .map(|(key, value, set, set_source)| {
                            let source = if set {
                                set_source
                            } else {
                                SOURCE_DEFAULT_CONFIG
                            };
                            let mut config = DescribeConfigsResourceResult::default();
                            config.name = str_bytes(key);
                            config.value = Some(str_bytes(value.clone()));
                            config.config_source = source;
                            if request.include_synonyms {
                                let mut synonym = DescribeConfigsSynonym::default();
                                synonym.name = str_bytes(key);
                                synonym.value = Some(str_bytes(value));
                                synonym.source = source;
                                config.synonyms = vec![synonym];
                            }
                            config
                        })
                        .collect();
                }
                Err((code, message)) => {
                    result.error_code = code.code();
                    result.error_message = Some(str_bytes(message));
                }
            }
            result
        })
        .collect();
    let mut response = DescribeConfigsResponse::default();
    response.results = results;
    response
}
