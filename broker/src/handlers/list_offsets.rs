//! ListOffsets (key 2), versions 1–8: earliest (-2), latest (-1), max timestamp (-3, v7+), earliest local
//! (-4, v8), latest tiered (-5), or the first offset whose timestamp is at or after a given time.

use super::simple;
use crate::messages::ShardMessage;
use crate::partitions::{self, OffsetOutcome, OffsetQuery};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::list_offsets_response::{
    ListOffsetsPartitionResponse, ListOffsetsTopicResponse,
};
use kafka_protocol::messages::{ListOffsetsRequest, ListOffsetsResponse};
use net::{DecodedHeader, DispatchFuture};
use shard::ShardId;
use std::collections::BTreeMap;
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
    let metadata = state.metadata();
    let read_committed = request.isolation_level == 1;
    let mut per_shard: BTreeMap<usize, Vec<(usize, OffsetQuery)>> = BTreeMap::new();
    let mut answers: Vec<(usize, i32, OffsetOutcome)> = Vec::new();
    for (topic_index, topic) in request.topics.iter().enumerate() {
        let name = topic.name.to_string();
        for partition in &topic.partitions {
            let position = answers.len();
            answers.push((
                topic_index,
                partition.partition_index,
                Err(ResponseError::UnknownTopicOrPartition),
            ));
            if let Some(shard) = metadata.shard_of(&name, partition.partition_index) {
                per_shard.entry(shard).or_default().push((
                    position,
                    OffsetQuery {
                        topic: name.clone(),
                        partition: partition.partition_index,
                        timestamp: partition.timestamp,
                        read_committed,
                    },
                ));
            }
        }
    }
    // Other shards first, so they look up while this shard does its own part.
    let mut local = None;
    let mut remote = Vec::new();
    for (shard, entries) in per_shard {
        let (positions, items): (Vec<usize>, Vec<OffsetQuery>) = entries.into_iter().unzip();
        if shard == state.id.0 {
            local = Some((positions, items));
        } else {
            let count = items.len();
            let receiver = state
                .send(ShardId(shard), |reply| ShardMessage::ListOffsets {
                    items,
                    reply,
                })
                .await;
            remote.push((positions, count, receiver));
        }
    }
    if let Some((positions, items)) = local {
        for (position, outcome) in positions
            .into_iter()
            .zip(partitions::list_offsets(&state, items).await)
        {
            answers[position].2 = outcome;
        }
    }
    for (positions, count, receiver) in remote {
        let outcomes = match receiver {
            Ok(receiver) => receiver
                .await
                .unwrap_or_else(|_| vec![Err(ResponseError::BrokerNotAvailable); count]),
            Err(code) => vec![Err(code); count],
        };
        for (position, outcome) in positions.into_iter().zip(outcomes) {
            answers[position].2 = outcome;
        }
    }
    let mut topics: Vec<ListOffsetsTopicResponse> = request
        .topics
        .iter()
        .map(|topic| {
            let mut response = ListOffsetsTopicResponse::default();
            response.name = topic.name.clone();
            response
        })
        .collect();
    for (topic_index, partition_index, outcome) in answers {
        let mut partition = ListOffsetsPartitionResponse::default();
        partition.partition_index = partition_index;
        match outcome {
            Ok((offset, timestamp)) => {
                partition.offset = offset;
                partition.timestamp = timestamp;
                // The leader epoch field exists from v4 on.
                partition.leader_epoch = if offset >= 0 && version >= 4 { 0 } else { -1 };
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
