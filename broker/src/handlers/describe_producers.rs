//! DescribeProducers (key 61), version 0: the producer state of each partition asked for (Kafka's
//! `UnifiedLog.activeProducers`), read on the shard that owns the partition.
//!
//! Per partition, in request order: each producer's id, epoch, last sequence (-1 when it wrote only
//! markers), last timestamp, coordinator epoch and the first offset of its open transaction (-1 when
//! none), by producer id; or UNKNOWN_TOPIC_OR_PARTITION (no such partition in the metadata),
//! NOT_LEADER_OR_FOLLOWER (its shard does not serve it). At most [`MAX_PARTITIONS`] partitions of a
//! request are described; the rest answer INVALID_REQUEST (hostile input: the response grows with
//! partitions × producers).

use super::simple;
use crate::messages::ShardMessage;
use crate::partition::requests::{ActiveProducer, ProducersOutcome};
use crate::partition::TopicPartition;
use crate::scatter_gather::{scatter, LocalAnswer, ShardSplit};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_response::{
    PartitionResponse, ProducerState, TopicResponse,
};
use kafka_protocol::messages::{DescribeProducersRequest, DescribeProducersResponse, ProducerId};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 0);

/// The most partitions one request is answered for.
pub const MAX_PARTITIONS: usize = 10_000;

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: DescribeProducersRequest, _version| async move {
            describe_producers(state, request).await
        },
    )
}

async fn describe_producers(
    state: Rc<ShardState>,
    request: DescribeProducersRequest,
) -> DescribeProducersResponse {
    let metadata = state.metadata();
    let mut split = ShardSplit::new();
    // Per position: (topic index, partition index, an answer known without asking a shard).
    let mut asked: Vec<(usize, i32, Option<ResponseError>)> = Vec::new();
    for (topic_index, topic) in request.topics.iter().enumerate() {
        let name = topic.name.to_string();
        for &index in &topic.partition_indexes {
            let refused = if asked.len() >= MAX_PARTITIONS {
                Some(ResponseError::InvalidRequest)
            } else {
                match metadata.route(&name, index) {
                    Err(why) => Some(why.error()),
                    Ok(shard) => {
                        split.push(shard, (name.clone(), index));
                        None
                    }
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
        |items: Vec<TopicPartition>| async move {
            LocalAnswer::ready(local_state.partitions.describe_producers(&items))
        },
        |items, reply| ShardMessage::DescribeProducers { items, reply },
    )
    .await
    .all(Err)
    .await;
    let mut topics: Vec<TopicResponse> = request
        .topics
        .iter()
        .map(|topic| {
            let mut response = TopicResponse::default();
            response.name = topic.name.clone();
            response
        })
        .collect();
    for ((topic_index, partition_index, refused), answer) in asked.into_iter().zip(answers) {
        let outcome: ProducersOutcome = match refused {
            Some(code) => Err(code),
            None => answer.unwrap_or(Err(ResponseError::NotLeaderOrFollower)),
        };
        let mut partition = PartitionResponse::default();
        partition.partition_index = partition_index;
        match outcome {
            Ok(producers) => {
                partition.active_producers = producers.iter().map(producer_state).collect();
            }
            Err(code) => partition.error_code = code.code(),
        }
        topics[topic_index].partitions.push(partition);
    }
    let mut response = DescribeProducersResponse::default();
    response.topics = topics;
    response
}

fn producer_state(producer: &ActiveProducer) -> ProducerState {
    let mut state = ProducerState::default();
    state.producer_id = ProducerId(producer.producer_id);
    state.producer_epoch = i32::from(producer.producer_epoch);
    state.last_sequence = producer.last_sequence;
    state.last_timestamp = producer.last_timestamp;
    state.coordinator_epoch = producer.coordinator_epoch;
    state.current_txn_start_offset = producer.current_txn_start_offset;
    state
}
