//! ElectLeaders (key 43), versions 0–2: elect each partition's preferred leader (its first replica), or
//! (v1+, election type 1) an unclean leader for partitions that have none. Version 0 is always a
//! preferred election; v1 adds the election type and a top-level error code.
//!
//! The control plane checks each partition and commits one `ElectLeader` record per partition (see
//! `control::partition_moves`); the answer comes once the quorum has applied them, and the new leaders
//! reach every broker with the next metadata version. Without a topic list (null), every partition is
//! considered and, as Kafka answers, those whose election is not needed are left out of the answer.

use super::{simple, str_bytes, topic_name};
use crate::control::{control, topic_outcomes, ControlRequest};
use crate::quorum::records::Election;
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::elect_leaders_response::{PartitionResult, ReplicaElectionResult};
use kafka_protocol::messages::{ElectLeadersRequest, ElectLeadersResponse};
use net::{DecodedHeader, DispatchFuture};
use std::collections::BTreeMap;
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 2);

/// Most partitions one request may elect (each is a record in the metadata log).
pub const MAX_ELECTIONS_PER_REQUEST: usize = 10_000;

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: ElectLeadersRequest, version| async move {
            elect_leaders(state, request, version).await
        },
    )
}

async fn elect_leaders(
    state: Rc<ShardState>,
    request: ElectLeadersRequest,
    version: i16,
) -> ElectLeadersResponse {
    let mut response = ElectLeadersResponse::default();
    let election = match (version, request.election_type) {
        (0, _) | (_, 0) => Election::Preferred,
        (_, 1) => Election::Unclean,
        (_, other) => {
            response.error_code = ResponseError::InvalidRequest.code();
            tracing::debug!(election_type = other, "ElectLeaders: unknown election type");
            return response;
        }
    };
    let all = request.topic_partitions.is_none();
    let partitions: Vec<(String, i32)> = match request.topic_partitions {
        // Each partition once (Kafka takes the request's partitions as a set).
        Some(topics) => {
            let mut seen = std::collections::HashSet::new();
            topics
                .iter()
                .flat_map(|topic| {
                    let name = topic.topic.to_string();
                    topic
                        .partitions
                        .iter()
                        .map(move |index| (name.clone(), *index))
                })
                .filter(|partition| seen.insert(partition.clone()))
                .collect()
        }
        None => {
            let metadata = state.metadata();
            metadata
                .topics
                .iter()
                .flat_map(|(name, topic)| {
                    (0..topic.partition_count()).map(move |index| (name.clone(), index))
                })
                .collect()
        }
    };
    let outcomes = if partitions.len() > MAX_ELECTIONS_PER_REQUEST && !all {
        vec![
            Err((
                ResponseError::PolicyViolation,
                format!("at most {MAX_ELECTIONS_PER_REQUEST} partitions per request"),
            ));
            partitions.len()
        ]
    } else {
        let count = partitions.len();
        let request = ControlRequest::ElectLeaders {
            election,
            partitions: partitions.clone(),
        };
        topic_outcomes(control(&state, request).await, count)
    };
    let mut by_topic: BTreeMap<String, Vec<PartitionResult>> = BTreeMap::new();
    for ((topic, index), outcome) in partitions.into_iter().zip(outcomes) {
        let mut result = PartitionResult::default();
        result.partition_id = index;
        if let Err((code, message)) = outcome {
            if all && code == ResponseError::ElectionNotNeeded {
                continue;
            }
            result.error_code = code.code();
            result.error_message = Some(str_bytes(message));
        }
        by_topic.entry(topic).or_default().push(result);
    }
    response.replica_election_results = by_topic
        .into_iter()
        .map(|(topic, partition_result)| {
            let mut result = ReplicaElectionResult::default();
            result.topic = topic_name(&topic);
            result.partition_result = partition_result;
            result
        })
        .collect();
    response
}
