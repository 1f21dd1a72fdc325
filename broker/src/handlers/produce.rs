//! Produce (key 0), versions 3–11 (magic-2 record batches).
//!
//! Dispatch stage: split the request by owning shard; assign offsets to the local partitions' batches and
//! put the other shards' parts in their queues — in request order, so pipelined produces from one
//! connection keep their order per partition. Response stage: wait for the writes — and for acks=all, in the
//! partition's delayed-produce purgatory, for the high watermark to pass them (at once on a single node,
//! where the leader is the only in-sync replica; `timeout_ms` bounds the wait) — and answer. acks=0 gets
//! no response at all.
//!
//! A partition this broker does not lead is refused with NOT_LEADER_OR_FOLLOWER, naming the current
//! leader and its endpoint from v10 (KIP-951).
//!
//! Transactional batches are verified with their transaction coordinator first, in the dispatch stage
//! (KIP-890 part 1, `txn_verification`): one to a partition not added to the transaction is refused.

use super::{close, decode, encode, str_bytes, topic_name};
use crate::internal_topics;
use crate::messages::ShardMessage;
use crate::metadata::{ClusterMetadata, NotServed};
use crate::partition::requests::{ProduceItem, ProduceOutcome};
use crate::scatter_gather::{scatter, LocalAnswer, ShardSplit};
use crate::shard_state::ShardState;
use crate::txn_verification::ProducedPartition;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{
    BatchIndexAndErrorMessage, LeaderIdAndEpoch, NodeEndpoint, PartitionProduceResponse,
    TopicProduceResponse,
};
use kafka_protocol::messages::{BrokerId, ProduceRequest, ProduceResponse};
use net::{DecodedHeader, DispatchFuture, Frame, ResponseFuture};
use std::rc::Rc;
use std::time::Duration;

pub const VERSIONS: (i16, i16) = (3, 11);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    let request: ProduceRequest = match decode(&header) {
        Ok(request) => request,
        Err(_) => return close(),
    };
    Box::pin(async move {
        let acks = request.acks;
        let timeout = Duration::from_millis(request.timeout_ms.max(0) as u64);
        let metadata = state.metadata();
        let mut split = ShardSplit::new();
        // Per topic, its partitions in request order; an answer decided here replaces the shard's.
        let mut layout: Vec<(String, Vec<(i32, usize)>)> =
            Vec::with_capacity(request.topic_data.len());
        let mut refused: Vec<(usize, ProduceOutcome)> = Vec::new();
        // Partitions led elsewhere: (topic, index, leader, leader epoch), for v10+'s current leader.
        let mut current_leaders: Vec<(String, i32, i32, i32)> = Vec::new();
        let mut unverified = {
            let produced: Vec<ProducedPartition> = request
                .topic_data
                .iter()
                .flat_map(|topic| {
                    // Only transactional batches are verified: nothing is allocated for the others.
                    topic.partition_data.iter().filter_map(|data| {
                        let records = data.records.as_ref()?;
                        crate::txn_verification::transactional_producer(records)?;
                        Some(ProducedPartition {
                            topic: topic.name.to_string(),
                            partition: data.index,
                            records,
                        })
                    })
                })
                .collect();
            let transactional_id = request.transactional_id.as_ref().map(|id| id.to_string());
            crate::txn_verification::verify(&state, transactional_id.as_deref(), &produced).await
        };
        for topic in request.topic_data {
            let name = topic.name.to_string();
            let min_insync_replicas = metadata.min_insync_replicas(&name);
            let mut partitions = Vec::with_capacity(topic.partition_data.len());
            for data in topic.partition_data {
                let refusal = if !matches!(acks, -1..=1) {
                    Some((
                        ResponseError::InvalidRequiredAcks,
                        format!("acks must be -1, 0 or 1, not {acks}"),
                    ))
                } else if internal_topics::is_internal(&name) {
                    Some((
                        ResponseError::InvalidTopicException,
                        format!("cannot append to internal topic {name}"),
                    ))
                } else if let Some(refusal) = (!unverified.is_empty())
                    .then(|| unverified.remove(&(name.clone(), data.index)))
                    .flatten()
                {
                    Some(refusal)
                } else {
                    match (metadata.route(&name, data.index), data.records) {
                        (Err(NotServed::Unknown), _) => {
                            Some((ResponseError::UnknownTopicOrPartition, String::new()))
                        }
                        (
                            Err(NotServed::NotLeader {
                                leader,
                                leader_epoch,
                            }),
                            _,
                        ) => {
                            current_leaders.push((name.clone(), data.index, leader, leader_epoch));
                            Some((ResponseError::NotLeaderOrFollower, String::new()))
                        }
                        (Ok(_), None) => {
                            Some((ResponseError::InvalidRecord, "no record set".into()))
                        }
                        (Ok(shard), Some(records)) => {
                            let position = split.push(
                                shard,
                                ProduceItem {
                                    topic: name.clone(),
                                    partition: data.index,
                                    records,
                                    acks,
                                    timeout,
                                    min_insync_replicas,
                                },
                            );
                            partitions.push((data.index, position));
                            None
                        }
                    }
                };
                if let Some(refusal) = refusal {
                    let position = split.skip();
                    refused.push((position, Err(refusal.into())));
                    partitions.push((data.index, position));
                }
            }
            layout.push((name, partitions));
        }

        // Dispatch: local appends get their offsets now; remote parts enter their shard's queue.
        let manager_state = state.clone();
        let gather = scatter(
            &state,
            split,
            |items| async move {
                LocalAnswer::later(manager_state.partitions.start_produce(items).await)
            },
            |items, reply| ShardMessage::Produce { items, reply },
        )
        .await;

        let response: ResponseFuture = Box::pin(async move {
            let mut outcomes = gather.all(|code| Err((code, String::new()).into())).await;
            for (position, outcome) in refused {
                outcomes[position] = Some(outcome);
            }
            if acks == 0 {
                return None;
            }
            let mut response = ProduceResponse::default();
            response.responses = layout
                .into_iter()
                .map(|(name, partitions)| {
                    let mut topic = TopicProduceResponse::default();
                    topic.name = topic_name(&name);
                    topic.partition_responses = partitions
                        .into_iter()
                        .map(|(index, position)| {
                            let outcome = outcomes[position].take().unwrap_or(Err((
                                ResponseError::UnknownServerError,
                                String::new(),
                            )
                                .into()));
                            partition_response(index, outcome)
                        })
                        .collect();
                    topic
                })
                .collect();
            if header.api_version >= 10 && !current_leaders.is_empty() {
                point_to_leaders(&mut response, &current_leaders, &metadata);
            }
            encode(&header, &response).map(Frame::from)
        });
        Ok(response)
    })
}

/// KIP-951: a partition refused with NOT_LEADER_OR_FOLLOWER names its current leader, and the response
/// carries those leaders' endpoints, so the client need not refresh its metadata first.
fn point_to_leaders(
    response: &mut ProduceResponse,
    current_leaders: &[(String, i32, i32, i32)],
    metadata: &ClusterMetadata,
) {
    for (name, index, leader, leader_epoch) in current_leaders {
        let partition = response
            .responses
            .iter_mut()
            .filter(|topic| topic.name.as_str() == name)
            .flat_map(|topic| topic.partition_responses.iter_mut())
            .find(|partition| partition.index == *index);
        if let Some(partition) = partition {
            partition.current_leader = LeaderIdAndEpoch::default()
                .with_leader_id(BrokerId(*leader))
                .with_leader_epoch(*leader_epoch);
        }
        let listed = response
            .node_endpoints
            .iter()
            .any(|endpoint| endpoint.node_id.0 == *leader);
        if let (Some(broker), false) = (metadata.broker(*leader), listed) {
            response.node_endpoints.push(
                NodeEndpoint::default()
                    .with_node_id(BrokerId(broker.node_id))
                    .with_host(str_bytes(broker.host.clone()))
                    .with_port(i32::from(broker.port))
                    .with_rack(broker.rack.clone().map(str_bytes)),
            );
        }
    }
}

fn partition_response(index: i32, outcome: ProduceOutcome) -> PartitionProduceResponse {
    let mut response = PartitionProduceResponse::default();
    response.index = index;
    match outcome {
        Ok(info) => {
            response.base_offset = info.base_offset.0;
            response.log_append_time_ms = info.log_append_time_ms;
            response.log_start_offset = info.log_start_offset.0;
        }
        Err(refusal) => {
            response.error_code = refusal.error.code();
            response.base_offset = -1;
            response.log_append_time_ms = -1;
            response.log_start_offset = -1;
            if !refusal.message.is_empty() {
                response.error_message = Some(str_bytes(refusal.message));
            }
            response.record_errors = refusal
                .record_errors
                .into_iter()
                .map(|(batch_index, message)| {
                    let mut record_error = BatchIndexAndErrorMessage::default();
                    record_error.batch_index = batch_index;
                    record_error.batch_index_error_message = Some(str_bytes(message));
                    record_error
                })
                .collect();
        }
    }
    response
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::partition::requests::ProduceRefusal;

    /// librdkafka's 0011 `record_fail` needs every refused record named (it failed when only the
    /// partition error came back).
    #[test]
    fn a_refusal_names_each_record_at_fault() {
        let refusal = ProduceRefusal {
            error: ResponseError::InvalidRecord,
            message: "compacted topic cannot accept a record without a key".into(),
            record_errors: vec![(0, "no key".into()), (10, "no key".into())],
        };
        let response = partition_response(3, Err(refusal));
        assert_eq!(response.index, 3);
        assert_eq!(response.error_code, ResponseError::InvalidRecord.code());
        assert_eq!(response.base_offset, -1);
        let indexes: Vec<i32> = response
            .record_errors
            .iter()
            .map(|record_error| record_error.batch_index)
            .collect();
        assert_eq!(indexes, [0, 10]);
        assert!(response.record_errors[1]
            .batch_index_error_message
            .is_some());
    }
}
