//! DeleteRecords (key 21), versions 0–2 (flexible from 2): moves each partition's log start offset
//! (its low watermark) forward, as Kafka's `ReplicaManager.deleteRecords`.
//!
//! Per partition: the new low watermark, or an error — UNKNOWN_TOPIC_OR_PARTITION (no such
//! partition), INVALID_TOPIC_EXCEPTION (an internal topic: Kafka refuses to delete records of
//! `__consumer_offsets`), POLICY_VIOLATION (`cleanup.policy` without `delete`), OFFSET_OUT_OF_RANGE
//! (below 0 other than -1, or past the high watermark). An offset of -1 means the high watermark.
//! The items go to their owning shards (scatter/gather, as ListOffsets); each answers once its new
//! log start is checkpointed (fsynced). On one node every replica has the new start at once, so
//! `timeout_ms` never expires.

use super::simple;
use crate::internal_topics;
use crate::messages::ShardMessage;
use crate::partition::requests::{DeleteRecordsItem, DeleteRecordsOutcome};
use crate::scatter_gather::{scatter, LocalAnswer, ShardSplit};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_response::{
    DeleteRecordsPartitionResult, DeleteRecordsTopicResult,
};
use kafka_protocol::messages::{DeleteRecordsRequest, DeleteRecordsResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 2);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: DeleteRecordsRequest, _version| async move {
            delete_records(state, request).await
        },
    )
}

async fn delete_records(
    state: Rc<ShardState>,
    request: DeleteRecordsRequest,
) -> DeleteRecordsResponse {
    let metadata = state.metadata();
    let mut split = ShardSplit::new();
    // Per position: (topic index, partition index, an answer known without asking a shard).
    let mut asked: Vec<(usize, i32, Option<ResponseError>)> = Vec::new();
    for (topic_index, topic) in request.topics.iter().enumerate() {
        let name = topic.name.to_string();
        let internal = internal_topics::is_internal(&name);
        for partition in &topic.partitions {
            let index = partition.partition_index;
            let refused = match metadata.route(&name, index) {
                Err(why) => Some(why.error()),
                Ok(_) if internal => Some(ResponseError::InvalidTopicException),
                Ok(_) if partition.offset < -1 => Some(ResponseError::OffsetOutOfRange),
                Ok(shard) => {
                    split.push(
                        shard,
                        DeleteRecordsItem {
                            topic: name.clone(),
                            partition: index,
                            offset: partition.offset,
                        },
                    );
                    None
                }
            };
            if refused.is_some() {
                split.skip();
            }
            asked.push((topic_index, index, refused));
        }
    }
    let local_state = state.clone();
    let answers = scatter(
        &state,
        split,
        |items| async move {
            LocalAnswer::later(async move { local_state.partitions.delete_records(items).await })
        },
        |items, reply| ShardMessage::DeleteRecords { items, reply },
    )
    .await
    .all(Err)
    .await;
    let mut topics: Vec<DeleteRecordsTopicResult> = request
        .topics
        .iter()
        .map(|topic| {
            let mut result = DeleteRecordsTopicResult::default();
            result.name = topic.name.clone();
            result
        })
        .collect();
    for ((topic_index, partition_index, refused), answer) in asked.into_iter().zip(answers) {
        let outcome: DeleteRecordsOutcome = match refused {
            Some(code) => Err(code),
            None => answer.unwrap_or(Err(ResponseError::UnknownTopicOrPartition)),
        };
        let mut result = DeleteRecordsPartitionResult::default();
        result.partition_index = partition_index;
        match outcome {
            Ok(low_watermark) => result.low_watermark = low_watermark.0,
            Err(code) => {
                result.error_code = code.code();
                result.low_watermark = -1;
            }
        }
        topics[topic_index].partitions.push(result);
    }
    let mut response = DeleteRecordsResponse::default();
    response.topics = topics;
    response
}
