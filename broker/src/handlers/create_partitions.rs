//! CreatePartitions (key 37), versions 0–3: increase a topic's partition count (never decrease).

use super::{simple, str_bytes};
use crate::control::{control, topic_outcomes, ControlRequest};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::create_partitions_response::CreatePartitionsTopicResult;
use kafka_protocol::messages::{CreatePartitionsRequest, CreatePartitionsResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 3);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: CreatePartitionsRequest, _version| async move {
            create_partitions(state, request).await
        },
    )
}

async fn create_partitions(
    state: Rc<ShardState>,
    request: CreatePartitionsRequest,
) -> CreatePartitionsResponse {
    let mut results = Vec::with_capacity(request.topics.len());
    let mut wanted = Vec::new();
    for topic in &request.topics {
        let mut result = CreatePartitionsTopicResult::default();
        result.name = topic.name.clone();
        let bad_assignment = topic.assignments.as_ref().is_some_and(|assignments| {
            assignments
                .iter()
                .any(|a| a.broker_ids.len() != 1 || a.broker_ids[0].0 != state.config.node_id)
        });
        if bad_assignment {
            result.error_code = ResponseError::InvalidReplicaAssignment.code();
            result.error_message = Some(str_bytes(format!(
                "only broker {} exists",
                state.config.node_id
            )));
        } else {
            wanted.push((results.len(), topic.name.to_string(), topic.count));
        }
        results.push(result);
    }
    if !wanted.is_empty() {
        let count = wanted.len();
        let request = ControlRequest::CreatePartitions {
            topics: wanted
                .iter()
                .map(|(_, name, count)| (name.clone(), *count))
                .collect(),
            validate_only: request.validate_only,
        };
        for ((position, name, _), outcome) in wanted
            .into_iter()
            .zip(topic_outcomes(control(&state, request).await, count))
        {
            if let Err((code, message)) = outcome {
                tracing::info!(topic = %name, ?code, %message, "CreatePartitions refused");
                results[position].error_code = code.code();
                results[position].error_message = Some(str_bytes(message));
            }
        }
    }
    let mut response = CreatePartitionsResponse::default();
    response.results = results;
    response
}
