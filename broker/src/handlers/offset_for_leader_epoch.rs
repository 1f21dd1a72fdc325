//! OffsetForLeaderEpoch (key 23), versions 2–4: where a leader epoch ends in a partition leader's log
//! (Kafka's `endOffsetForEpoch`), so that a consumer (KIP-320) or a follower (KIP-101/KIP-279) finds
//! out whether its log diverged from the leader's after a leader change.
//!
//! For each partition: the largest epoch at or below the requested one that the leader's log has, and
//! where it ends — the start of the next epoch, or the log end for the current epoch; -1 and -1 when
//! the log has no such epoch. `current_leader_epoch` (v2+) is checked as a fetch's is:
//! FENCED_LEADER_EPOCH when older, UNKNOWN_LEADER_EPOCH when newer than the partition's. A partition
//! this broker does not lead answers NOT_LEADER_OR_FOLLOWER. `replica_id` (v3+) changes nothing: the
//! answer is the leader's either way.

use super::simple;
use crate::messages::ShardMessage;
use crate::metadata::NotServed;
use crate::partition::requests::{OffsetLookup, OffsetOutcome, OffsetQuery};
use crate::scatter_gather::{scatter, LocalAnswer, ShardSplit};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_response::{
    EpochEndOffset, OffsetForLeaderTopicResult,
};
use kafka_protocol::messages::{OffsetForLeaderEpochRequest, OffsetForLeaderEpochResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;
use storage::types::LeaderEpoch;

pub const VERSIONS: (i16, i16) = (2, 4);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: OffsetForLeaderEpochRequest, _version| async move {
            epoch_end_offsets(state, request).await
        },
    )
}

async fn epoch_end_offsets(
    state: Rc<ShardState>,
    request: OffsetForLeaderEpochRequest,
) -> OffsetForLeaderEpochResponse {
    let metadata = state.metadata();
    let mut split = ShardSplit::new();
    // (topic index, partition index, why it is not served here), by position.
    let mut asked: Vec<(usize, i32, Option<NotServed>)> = Vec::new();
    for (topic_index, topic) in request.topics.iter().enumerate() {
        let name = topic.topic.to_string();
        for partition in &topic.partitions {
            let route = metadata.route(&name, partition.partition);
            asked.push((topic_index, partition.partition, route.err()));
            match route {
                Ok(shard) => split.push(
                    shard,
                    OffsetQuery {
                        topic: name.clone(),
                        partition: partition.partition,
                        lookup: OffsetLookup::EpochEnd(LeaderEpoch(partition.leader_epoch)),
                        read_committed: false,
                        current_leader_epoch: partition.current_leader_epoch,
                    },
                ),
                Err(_) => split.skip(),
            };
        }
    }
    let local_state = state.clone();
    let answers = scatter(
        &state,
        split,
        |items| async move { LocalAnswer::ready(local_state.partitions.list_offsets(items).await) },
        |items, reply| ShardMessage::ListOffsets { items, reply },
    )
    .await
    .all(Err)
    .await;
    let mut topics: Vec<OffsetForLeaderTopicResult> = request
        .topics
        .iter()
        .map(|topic| {
            let mut result = OffsetForLeaderTopicResult::default();
            result.topic = topic.topic.clone();
            result
        })
        .collect();
    for ((topic_index, partition_index, not_served), outcome) in asked.into_iter().zip(answers) {
        let outcome: OffsetOutcome = match not_served {
            Some(why) => Err(why.error()),
            None => outcome.unwrap_or(Err(ResponseError::UnknownTopicOrPartition)),
        };
        let mut partition = EpochEndOffset::default();
        partition.partition = partition_index;
        match outcome {
            Ok(answer) => {
                partition.leader_epoch = answer.leader_epoch.map_or(-1, |epoch| epoch.0);
                partition.end_offset = answer.offset.0;
            }
            Err(code) => {
                partition.error_code = code.code();
                partition.leader_epoch = -1;
                partition.end_offset = -1;
            }
        }
        topics[topic_index].partitions.push(partition);
    }
    let mut response = OffsetForLeaderEpochResponse::default();
    response.topics = topics;
    response
}
