//! AlterPartitionReassignments (key 45), versions 0–1: move partitions' replicas to other brokers, or
//! cancel a move under way (replicas null). Version 1 adds `allow_replication_factor_change` (false:
//! a target of another size is INVALID_REPLICATION_FACTOR; v0 allows it).
//!
//! The answer comes once the quorum has committed the change, not when the data has moved: the new
//! replicas then fetch from the leader and the reassignment completes when all of them are in sync
//! (ListPartitionReassignments shows it until then; see `quorum::partition_changes`).

use super::{simple, str_bytes, topic_name};
use crate::control::requests::Reassignment;
use crate::control::{control, topic_outcomes, ControlRequest};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::alter_partition_reassignments_response::{
    ReassignablePartitionResponse, ReassignableTopicResponse,
};
use kafka_protocol::messages::{
    AlterPartitionReassignmentsRequest, AlterPartitionReassignmentsResponse,
};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 1);

/// Most partitions one request may move (each is a record in the metadata log).
pub const MAX_REASSIGNMENTS_PER_REQUEST: usize = 10_000;

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: AlterPartitionReassignmentsRequest, version| async move {
            alter_partition_reassignments(state, request, version).await
        },
    )
}

async fn alter_partition_reassignments(
    state: Rc<ShardState>,
    request: AlterPartitionReassignmentsRequest,
    version: i16,
) -> AlterPartitionReassignmentsResponse {
    let mut response = AlterPartitionReassignmentsResponse::default();
    response.allow_replication_factor_change = request.allow_replication_factor_change;
    let allow_replication_factor_change = version == 0 || request.allow_replication_factor_change;
    let reassignments: Vec<Reassignment> = request
        .topics
        .iter()
        .flat_map(|topic| {
            topic.partitions.iter().map(|partition| Reassignment {
                topic: topic.name.to_string(),
                partition: partition.partition_index,
                target: partition
                    .replicas
                    .as_ref()
                    .map(|replicas| replicas.iter().map(|id| id.0).collect()),
                allow_replication_factor_change,
            })
        })
        .collect();
    let count = reassignments.len();
    let mut outcomes = if count > MAX_REASSIGNMENTS_PER_REQUEST {
        let refusal = (
            ResponseError::PolicyViolation,
            format!("at most {MAX_REASSIGNMENTS_PER_REQUEST} partitions per request"),
        );
        vec![Err(refusal); count]
    } else {
        let request = ControlRequest::Reassign { reassignments };
        topic_outcomes(control(&state, request).await, count)
    }
    .into_iter();
    response.responses = request
        .topics
        .iter()
        .map(|topic| {
            let mut answer = ReassignableTopicResponse::default();
            answer.name = topic_name(&topic.name);
            answer.partitions = topic
                .partitions
                .iter()
                .map(|partition| {
                    let mut result = ReassignablePartitionResponse::default();
                    result.partition_index = partition.partition_index;
                    if let Some(Err((code, message))) = outcomes.next() {
                        tracing::info!(topic = %topic.name.as_str(), partition = partition.partition_index, ?code, %message, "reassignment refused");
                        result.error_code = code.code();
                        result.error_message = Some(str_bytes(message));
                    }
                    result
                })
                .collect();
            answer
        })
        .collect();
    response
}
