//! DeleteTopics (key 20), versions 1–6 (v6 names topics by name or by id).
//!
//! Deletion goes through the control plane; each owning shard closes the partition and removes its
//! directory before the answer is sent.

use super::{simple, str_bytes};
use crate::control::{control, topic_outcomes, ControlRequest};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_topics_response::DeletableTopicResult;
use kafka_protocol::messages::{DeleteTopicsRequest, DeleteTopicsResponse, TopicName};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;
use uuid::Uuid;

pub const VERSIONS: (i16, i16) = (1, 6);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: DeleteTopicsRequest, version| async move {
            delete_topics(state, request, version).await
        },
    )
}

async fn delete_topics(
    state: Rc<ShardState>,
    request: DeleteTopicsRequest,
    version: i16,
) -> DeleteTopicsResponse {
    let wanted: Vec<(Option<TopicName>, Uuid)> = if version >= 6 {
        request
            .topics
            .iter()
            .map(|topic| (topic.name.clone(), topic.topic_id))
            .collect()
    } else {
        request
            .topic_names
            .iter()
            .map(|name| (Some(name.clone()), Uuid::nil()))
            .collect()
    };
    let metadata = state.metadata();
    let mut results = Vec::with_capacity(wanted.len());
    let mut names = Vec::new();
    for (name, id) in &wanted {
        let mut result = DeletableTopicResult::default();
        result.name = name.clone();
        result.topic_id = *id;
        let resolved = match name {
            Some(name) => Some(name.to_string()),
            None => metadata.topic_by_id(*id).map(|(name, _)| name.clone()),
        };
        match resolved {
            Some(resolved) => {
                if let Some(topic) = metadata.topics.get(&resolved) {
                    result.topic_id = topic.id;
                }
                if name.is_none() {
                    result.name = Some(super::topic_name(&resolved));
                }
                names.push((results.len(), resolved));
            }
            None => result.error_code = ResponseError::UnknownTopicId.code(),
        }
        results.push(result);
    }
    if !names.is_empty() {
        let count = names.len();
        let request = ControlRequest::DeleteTopics {
            names: names.iter().map(|(_, name)| name.clone()).collect(),
        };
        for ((position, name), outcome) in names
            .into_iter()
            .zip(topic_outcomes(control(&state, request).await, count))
        {
            if let Err((code, message)) = outcome {
                tracing::info!(topic = %name, ?code, %message, "DeleteTopics refused");
                results[position].error_code = code.code();
                if version >= 5 {
                    results[position].error_message = Some(str_bytes(message));
                }
            }
        }
    }
    let mut response = DeleteTopicsResponse::default();
    response.responses = results;
    response
}
