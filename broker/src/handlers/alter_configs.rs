//! AlterConfigs (key 33), versions 0–2: replaces the whole set of a resource's configs — a topic's
//! overrides (resource type 2) or one level of dynamic broker configs (type 4: name "" for every broker,
//! this broker's node id for its own) — as Kafka does. IncrementalAlterConfigs shares the resource
//! checks and the control-plane round trip ([`alter`]).
//!
//! Errors per resource: INVALID_CONFIG with a message (unknown name, bad value, a broker setting that
//! needs a restart), UNKNOWN_TOPIC_OR_PARTITION, INVALID_REQUEST (another broker's id, an unsupported
//! resource type, a name or resource given twice). `validate_only` checks without changing anything.

use super::describe_configs::{RESOURCE_BROKER, RESOURCE_TOPIC};
use super::{simple, str_bytes};
use crate::config::alter::{ConfigChange, Operation};
use crate::control::{control, topic_outcomes, ConfigAlteration, ConfigResource, ControlRequest};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{AlterConfigsRequest, AlterConfigsResponse};
use kafka_protocol::protocol::StrBytes;
use net::{DecodedHeader, DispatchFuture};
use std::collections::HashSet;
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 2);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: AlterConfigsRequest, _version| async move {
            let resources = request
                .resources
                .iter()
                .map(|resource| AskedResource {
                    resource_type: resource.resource_type,
                    resource_name: resource.resource_name.clone(),
                    changes: resource
                        .configs
                        .iter()
                        .map(|config| {
                            Ok(ConfigChange {
                                name: config.name.to_string(),
                                operation: Operation::Set,
                                value: config.value.as_ref().map(|value| value.to_string()),
                            })
                        })
                        .collect(),
                })
                .collect();
            let outcomes = alter(&state, resources, true, request.validate_only).await;
            let mut response = AlterConfigsResponse::default();
            response.responses = outcomes
                .into_iter()
                .map(|(resource_type, resource_name, outcome)| {
                    let mut answer = AlterConfigsResourceResponse::default();
                    answer.resource_type = resource_type;
                    answer.resource_name = resource_name;
                    // Null on success, as Kafka answers.
                    answer.error_message = None;
                    if let Err((code, message)) = outcome {
                        answer.error_code = code.code();
                        answer.error_message = Some(str_bytes(message));
                    }
                    answer
                })
                .collect();
            response
        },
    )
}

/// One resource of a request, its changes decoded (an unknown operation code: INVALID_REQUEST).
pub struct AskedResource {
    pub resource_type: i8,
    pub resource_name: StrBytes,
    pub changes: Vec<Result<ConfigChange, String>>,
}

/// An outcome per resource, in request order, with the resource's type and name.
pub type ResourceOutcome = (i8, StrBytes, Result<(), (ResponseError, String)>);

/// Checks each resource and runs the valid ones through the control plane (one metadata version).
pub async fn alter(
    state: &Rc<ShardState>,
    resources: Vec<AskedResource>,
    replace_all: bool,
    validate_only: bool,
) -> Vec<ResourceOutcome> {
    let mut seen = HashSet::new();
    let duplicated: HashSet<(i8, StrBytes)> = resources
        .iter()
        .filter(|resource| !seen.insert((resource.resource_type, resource.resource_name.clone())))
        .map(|resource| (resource.resource_type, resource.resource_name.clone()))
        .collect();
    let mut outcomes: Vec<ResourceOutcome> = Vec::with_capacity(resources.len());
    let mut alterations: Vec<(usize, ConfigAlteration)> = Vec::new();
    for resource in resources {
        let key = (resource.resource_type, resource.resource_name.clone());
        let checked = if duplicated.contains(&key) {
            Err((
                ResponseError::InvalidRequest,
                format!(
                    "resource {} of type {} appears more than once in the request",
                    resource.resource_name.as_str(),
                    resource.resource_type
                ),
            ))
        } else {
            check_resource(state, &resource, replace_all)
        };
        let outcome = match checked {
            Ok(alteration) => {
                alterations.push((outcomes.len(), alteration));
                Ok(())
            }
            Err(error) => {
                tracing::info!(resource = %resource.resource_name.as_str(), ?error, "config alteration refused");
                Err(error)
            }
        };
        outcomes.push((resource.resource_type, resource.resource_name, outcome));
    }
    // Resources refused above keep the error recorded while checking.
    if !alterations.is_empty() {
        let count = alterations.len();
        let request = ControlRequest::AlterConfigs {
            alterations: alterations
                .iter()
                .map(|(_, alteration)| alteration.clone())
                .collect(),
            validate_only,
        };
        let answers = topic_outcomes(control(state, request).await, count);
        for ((position, _), answer) in alterations.into_iter().zip(answers) {
            if let Err((code, message)) = &answer {
                tracing::info!(resource = %outcomes[position].1.as_str(), ?code, %message, "config alteration refused");
            }
            outcomes[position].2 = answer;
        }
    }
    outcomes
}

/// The alteration a resource asks for, or why it is refused before reaching the control plane.
fn check_resource(
    state: &ShardState,
    resource: &AskedResource,
    replace_all: bool,
) -> Result<ConfigAlteration, (ResponseError, String)> {
    let name = resource.resource_name.as_str();
    let target = match resource.resource_type {
        RESOURCE_TOPIC => ConfigResource::Topic(name.to_string()),
        RESOURCE_BROKER if name.is_empty() => ConfigResource::BrokerDefault,
        RESOURCE_BROKER if name == state.config.node_id.to_string() => ConfigResource::ThisBroker,
        RESOURCE_BROKER => {
            return Err((
                ResponseError::InvalidRequest,
                format!("this is broker {}, not {name:?}", state.config.node_id),
            ))
        }
        other => {
            return Err((
                ResponseError::InvalidRequest,
                format!("resource type {other} is not supported"),
            ))
        }
    };
    let mut names = HashSet::new();
    let mut changes = Vec::with_capacity(resource.changes.len());
    for change in &resource.changes {
        let change = change
            .clone()
            .map_err(|message| (ResponseError::InvalidRequest, message))?;
        if !names.insert(change.name.clone()) {
            return Err((
                ResponseError::InvalidRequest,
                format!("config {} is given more than once", change.name),
            ));
        }
        if change.operation != Operation::Delete && change.value.is_none() {
            return Err((
                ResponseError::InvalidConfig,
                format!("config {} has no value", change.name),
            ));
        }
        changes.push(change);
    }
    Ok(ConfigAlteration {
        resource: target,
        replace_all,
        changes,
    })
}
