//! Produce (key 0), versions 3–11 (magic-2 record batches).
//!
//! Dispatch stage: split the request by owning shard; assign offsets to the local partitions' batches and
//! put the other shards' parts in their queues — in request order, so pipelined produces from one
//! connection keep their order per partition. Response stage: wait for the writes, answer (acks=1 and
//! acks=all are the same on a single node: the record is in the log of every in-sync replica). acks=0 gets
//! no response at all.

use super::{close, decode, encode, str_bytes, topic_name};
use crate::group::OFFSETS_TOPIC;
use crate::messages::ShardMessage;
use crate::partitions::{start_produce, ProduceItem, ProduceOutcome};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::produce_response::{PartitionProduceResponse, TopicProduceResponse};
use kafka_protocol::messages::{ProduceRequest, ProduceResponse};
use net::{DecodedHeader, DispatchFuture, Frame, ResponseFuture};
use shard::ShardId;
use std::collections::BTreeMap;
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (3, 11);

/// Where one partition's answer comes from.
enum Slot {
    /// The n-th item sent to this shard.
    Shard(usize, usize),
    Failed(ResponseError, String),
}

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    let request: ProduceRequest = match decode(&header) {
        Ok(request) => request,
        Err(_) => return close(),
    };
    Box::pin(async move {
        let acks = request.acks;
        let metadata = state.metadata();
        let mut per_shard: BTreeMap<usize, Vec<ProduceItem>> = BTreeMap::new();
        let mut layout: Vec<(String, Vec<(i32, Slot)>)> =
            Vec::with_capacity(request.topic_data.len());
        for topic in request.topic_data {
            let name = topic.name.to_string();
            let mut partitions = Vec::with_capacity(topic.partition_data.len());
            for data in topic.partition_data {
                let slot = if !matches!(acks, -1..=1) {
                    Slot::Failed(
                        ResponseError::InvalidRequiredAcks,
                        format!("acks must be -1, 0 or 1, not {acks}"),
                    )
                } else if name == OFFSETS_TOPIC {
                    Slot::Failed(
                        ResponseError::InvalidTopicException,
                        format!("cannot append to internal topic {OFFSETS_TOPIC}"),
                    )
                } else {
                    match (metadata.shard_of(&name, data.index), data.records) {
                        (None, _) => {
                            Slot::Failed(ResponseError::UnknownTopicOrPartition, String::new())
                        }
                        (Some(_), None) => {
                            Slot::Failed(ResponseError::InvalidRecord, "no record set".into())
                        }
                        (Some(shard), Some(records)) => {
                            let items = per_shard.entry(shard).or_default();
                            items.push(ProduceItem {
                                topic: name.clone(),
                                partition: data.index,
                                records,
                            });
                            Slot::Shard(shard, items.len() - 1)
                        }
                    }
                };
                partitions.push((data.index, slot));
            }
            layout.push((name, partitions));
        }

        // Dispatch, in order: local appends get their offsets now; remote parts enter their shard's queue.
        let mut local = None;
        let mut remote = Vec::new();
        for (shard, items) in per_shard {
            if shard == state.id.0 {
                local = Some(start_produce(&state, items).await);
            } else {
                let count = items.len();
                let receiver = state
                    .send(ShardId(shard), |reply| ShardMessage::Produce {
                        items,
                        reply,
                    })
                    .await;
                remote.push((shard, count, receiver));
            }
        }
        let local_shard = state.id.0;

        let response: ResponseFuture = Box::pin(async move {
            let mut results: BTreeMap<usize, Vec<ProduceOutcome>> = BTreeMap::new();
            if let Some(local) = local {
                results.insert(local_shard, local.await);
            }
            for (shard, count, receiver) in remote {
                let outcomes = match receiver {
                    Ok(receiver) => receiver.await.unwrap_or_else(|_| {
                        vec![Err((ResponseError::BrokerNotAvailable, String::new())); count]
                    }),
                    Err(code) => vec![Err((code, String::new())); count],
                };
                results.insert(shard, outcomes);
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
                        .map(|(index, slot)| {
                            let outcome = match slot {
                                Slot::Shard(shard, position) => {
                                    results.get_mut(&shard).map(|outcomes| {
                                        std::mem::replace(
                                            &mut outcomes[position],
                                            Err((ResponseError::UnknownServerError, String::new())),
                                        )
                                    })
                                }
                                Slot::Failed(code, message) => Some(Err((code, message))),
                            };
                            partition_response(
                                index,
                                outcome.unwrap_or(Err((
                                    ResponseError::UnknownServerError,
                                    String::new(),
                                ))),
                            )
                        })
                        .collect();
                    topic
                })
                .collect();
            encode(&header, &response).map(Frame::from)
        });
        Ok(response)
    })
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
        Err((code, message)) => {
            response.error_code = code.code();
            response.base_offset = -1;
            response.log_append_time_ms = -1;
            response.log_start_offset = -1;
            if !message.is_empty() {
                response.error_message = Some(str_bytes(message));
            }
        }
    }
    response
}
