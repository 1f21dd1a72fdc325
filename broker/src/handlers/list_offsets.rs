//! ListOffsets (key 2), versions 1–8: earliest (-2), latest (-1), max timestamp (-3, v7+), earliest local
//! (-4, v8), latest tiered (-5), or the first offset whose timestamp is at or after a given time.
//! With `isolation_level` 1 (read_committed, v2+) latest is the last stable offset, and the timestamp
//! lookups (and max timestamp) find nothing at or past it, as Kafka's `lastFetchableOffset`.

use super::simple;
use crate::messages::ShardMessage;
use crate::metadata::NotServed;
use crate::partition::requests::{OffsetLookup, OffsetOutcome, OffsetQuery};
use crate::scatter_gather::{scatter, LocalAnswer, ShardSplit};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (1, 8);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: ListOffsetsRequest, version| async move {
            list_offsets(state, request, version).await
        },
    )
}

async fn list_offsets(
    state: Rc<ShardState>,
    request: ListOffsetsRequest,
    version: i16,
) -> ListOffsetsResponse {
    let read_committed = request.isolation_level == 1;
    // (topic index, partition index), by position.
    let mut asked: Vec<(usize, i32)> = Vec::new();
    let mut queries = Vec::new();
    for (topic_index, topic) in request.topics.iter().enumerate() {
        for partition in &topic.partitions {
            asked.push((topic_index, partition.partition_index));
            queries.push(OffsetQuery {
                topic: topic.name.to_string(),
                partition: partition.partition_index,
                lookup: OffsetLookup::Timestamp(partition.timestamp),
                read_committed,
                current_leader_epoch: partition.current_leader_epoch,
            });
        }
    }
    let answers = lookup(&state, queries).await;
    let mut topics: Vec<ListOffsetsTopicResponse> = request
        .topics
        .iter()
        .map(|topic| {
            let mut response = ListOffsetsTopicResponse::default();
            response.name = topic.name.clone();
            response
        })
        .collect();
    for ((topic_index, partition_index), outcome) in asked.into_iter().zip(answers) {
        let mut partition = ListOffsetsPartitionResponse::default();
        partition.partition_index = partition_index;
        match outcome {
            Ok(answer) => {
                partition.offset = answer.offset.0;
                partition.timestamp = answer.timestamp;
                // The leader epoch field exists from v4 on.
                partition.leader_epoch = match answer.leader_epoch {
                    Some(epoch) if answer.offset.0 >= 0 && version >= 4 => epoch.0,
                    _ => -1,
                };
            }
            Err(code) => {
                partition.error_code = code.code();
                partition.offset = -1;
                partition.timestamp = -1;
                partition.leader_epoch = -1;
            }
        }
        topics[topic_index].partitions.push(partition);
    }
    let mut response = ListOffsetsResponse::default();
    response.topics = topics;
    response
}

/// Runs each offset lookup (ListOffsets, OffsetForLeaderEpoch) on the shard that owns its partition;
/// the outcomes in query order. A partition not led here answers why (NOT_LEADER_OR_FOLLOWER,
/// UNKNOWN_TOPIC_OR_PARTITION).
pub(super) async fn lookup(
    state: &Rc<ShardState>,
    queries: Vec<OffsetQuery>,
) -> Vec<OffsetOutcome> {
    let metadata = state.metadata();
    let mut split = ShardSplit::new();
    let mut not_served: Vec<Option<NotServed>> = Vec::with_capacity(queries.len());
    for query in queries {
        match metadata.route(&query.topic, query.partition) {
            Ok(shard) => {
                split.push(shard, query);
                not_served.push(None);
            }
            Err(why) => {
                split.skip();
                not_served.push(Some(why));
            }
        }
    }
    let local_state = state.clone();
    let answers = scatter(
        state,
        split,
        |items| async move { LocalAnswer::ready(local_state.partitions.list_offsets(items).await) },
        |items, reply| ShardMessage::ListOffsets { items, reply },
    )
    .await
    .all(Err)
    .await;
    not_served
        .into_iter()
        .zip(answers)
        .map(|(why, outcome)| match why {
            Some(why) => Err(why.error()),
            None => outcome.unwrap_or(Err(ResponseError::UnknownTopicOrPartition)),
        })
        .collect()
}
