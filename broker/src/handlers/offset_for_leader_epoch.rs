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
use crate::partition::requests::{OffsetLookup, OffsetQuery};
use crate::shard_state::ShardState;
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
    // (topic index, partition index), by position.
    let mut asked: Vec<(usize, i32)> = Vec::new();
    let mut queries = Vec::new();
    for (topic_index, topic) in request.topics.iter().enumerate() {
        for partition in &topic.partitions {
            asked.push((topic_index, partition.partition));
            queries.push(OffsetQuery {
                topic: topic.topic.to_string(),
                partition: partition.partition,
                lookup: OffsetLookup::EpochEnd(LeaderEpoch(partition.leader_epoch)),
                read_committed: false,
                current_leader_epoch: partition.current_leader_epoch,
            });
        }
    }
    let answers = super::list_offsets::lookup(&state, queries).await;
    let mut topics: Vec<OffsetForLeaderTopicResult> = request
        .topics
        .iter()
        .map(|topic| {
            let mut result = OffsetForLeaderTopicResult::default();
            result.topic = topic.topic.clone();
            result
        })
        .collect();
    for ((topic_index, partition_index), outcome) in asked.into_iter().zip(answers) {
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
