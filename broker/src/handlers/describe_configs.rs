//! DescribeConfigs (key 32), versions 1–4: topic (resource type 2) and broker (4: this broker's id, or ""
//! for the dynamic defaults of every broker) configs, as the
//! settings table describes them (`crate::config::describe`): each with its value, source
//! (TOPIC_CONFIG / DYNAMIC_BROKER_CONFIG / DYNAMIC_DEFAULT_BROKER_CONFIG / STATIC_BROKER_CONFIG /
//! DEFAULT_CONFIG), read-only and sensitive flags, synonyms when
//! `include_synonyms` is set, and from v3 its type and (when `include_documentation` is set) its
//! documentation line.

use super::{simple, str_bytes};
use crate::config::describe::{
    describe_broker_defaults, describe_broker_with, describe_topic_with, DescribedConfig,
};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_configs_response::{
    DescribeConfigsResourceResult, DescribeConfigsResult, DescribeConfigsSynonym,
};
use kafka_protocol::messages::{DescribeConfigsRequest, DescribeConfigsResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (1, 4);

pub const RESOURCE_TOPIC: i8 = 2;
pub const RESOURCE_BROKER: i8 = 4;

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: DescribeConfigsRequest, version| async move {
            describe_configs(state, request, version)
        },
    )
}

fn describe_configs(
    state: Rc<ShardState>,
    request: DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResponse {
    let metadata = state.metadata();
    let config = &state.config;
    // Settings whose default is derived at run time.
    let runtime_value = |id: &str| match id {
        "max_connections" => Some(config.effective_max_connections().to_string()),
        _ => None,
    };
    let results = request
        .resources
        .iter()
        .map(|resource| {
            let mut result = DescribeConfigsResult::default();
            result.resource_type = resource.resource_type;
            result.resource_name = resource.resource_name.clone();
            let name = resource.resource_name.to_string();
            let entries: Result<Vec<DescribedConfig>, (ResponseError, String)> = match resource
                .resource_type
            {
                RESOURCE_TOPIC => match metadata.topics.get(&name) {
                    Some(topic) => Ok(describe_topic_with(
                        &config.settings,
                        metadata.dynamic_configs(),
                        &topic.configs,
                    )),
                    None => Err((
                        ResponseError::UnknownTopicOrPartition,
                        format!("topic {name} does not exist"),
                    )),
                },
                // Resource "": the dynamic defaults of every broker, as Kafka answers it.
                RESOURCE_BROKER if name.is_empty() => {
                    Ok(describe_broker_defaults(metadata.dynamic_configs()))
                }
                RESOURCE_BROKER if name == config.node_id.to_string() => Ok(describe_broker_with(
                    &config.settings,
                    metadata.dynamic_configs(),
                    &runtime_value,
                )),
                RESOURCE_BROKER => Err((
                    ResponseError::InvalidRequest,
                    format!("this is broker {}, not {name}", config.node_id),
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
                        .filter(|entry| {
                            wanted.is_none_or(|keys| {
                                keys.iter().any(|wanted| wanted.as_str() == entry.name)
                            })
                        })
                        .map(|entry| encode(entry, &request, version))
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

fn encode(
    entry: DescribedConfig,
    request: &DescribeConfigsRequest,
    version: i16,
) -> DescribeConfigsResourceResult {
    let mut config = DescribeConfigsResourceResult::default();
    config.name = str_bytes(entry.name);
    config.value = entry.value.map(str_bytes);
    config.config_source = entry.source.code();
    config.read_only = entry.read_only;
    config.is_sensitive = entry.is_sensitive;
    if request.include_synonyms {
        config.synonyms = entry
            .synonyms
            .into_iter()
            .map(|synonym| {
                let mut described = DescribeConfigsSynonym::default();
                described.name = str_bytes(synonym.name);
                described.value = synonym.value.map(str_bytes);
                described.source = synonym.source.code();
                described
            })
            .collect();
    }
    if version >= 3 {
        config.config_type = entry.config_type.code();
    }
    // Null unless asked for (Kafka's answer); versions before 3 do not carry it.
    config.documentation =
        (version >= 3 && request.include_documentation).then(|| str_bytes(entry.documentation));
    config
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::describe::{describe_broker, ConfigSource};
    use crate::config::Settings;

    fn partitions_entry() -> DescribedConfig {
        describe_broker(&Settings::defaults(), &|_| None)
            .into_iter()
            .find(|entry| entry.name == "num.partitions")
            .unwrap()
    }

    #[test]
    fn synonyms_only_when_asked_and_type_and_documentation_from_v3() {
        let mut request = DescribeConfigsRequest::default();
        let plain = encode(partitions_entry(), &request, 1);
        assert_eq!(plain.value.as_deref(), Some("1"));
        assert_eq!(plain.config_source, ConfigSource::DefaultConfig.code());
        assert!(plain.read_only);
        assert!(plain.synonyms.is_empty());
        assert_eq!(plain.config_type, 0);
        assert_eq!(plain.documentation, None);

        request.include_synonyms = true;
        request.include_documentation = true;
        let v2 = encode(partitions_entry(), &request, 2);
        assert_eq!(v2.synonyms.len(), 1);
        assert_eq!(v2.synonyms[0].source, ConfigSource::DefaultConfig.code());
        assert_eq!((v2.config_type, v2.documentation), (0, None));

        let v3 = encode(partitions_entry(), &request, 3);
        assert_eq!(v3.config_type, 3, "num.partitions is an INT");
        assert!(v3.documentation.is_some_and(|text| !text.is_empty()));
    }
}
