//! IncrementalAlterConfigs (key 44), versions 0–1: SET, DELETE, APPEND and SUBTRACT (list configs only)
//! on a topic's overrides or a level of dynamic broker configs; only the names given change. Resource
//! checks, errors and the control-plane round trip are AlterConfigs' (`alter_configs::alter`); an
//! unknown operation code answers INVALID_REQUEST.

use super::alter_configs::{alter, AskedResource};
use super::{simple, str_bytes};
use crate::config::alter::{ConfigChange, Operation};
use crate::shard_state::ShardState;
use kafka_protocol::messages::incremental_alter_configs_response::AlterConfigsResourceResponse;
use kafka_protocol::messages::{IncrementalAlterConfigsRequest, IncrementalAlterConfigsResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 1);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: IncrementalAlterConfigsRequest, _version| async move {
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
                            let operation = Operation::from_code(config.config_operation)
                                .ok_or_else(|| {
                                    format!(
                                        "unknown config operation {} for {}",
                                        config.config_operation,
                                        config.name.as_str()
                                    )
                                })?;
                            Ok(ConfigChange {
                                name: config.name.to_string(),
                                operation,
                                value: config.value.as_ref().map(|value| value.to_string()),
                            })
                        })
                        .collect(),
                })
                .collect();
            let outcomes = alter(&state, resources, false, request.validate_only).await;
            let mut response = IncrementalAlterConfigsResponse::default();
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
