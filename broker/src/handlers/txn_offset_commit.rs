//! TxnOffsetCommit (key 28), versions 0–4: a transactional producer's offsets for a consumer group
//! (`send_offsets_to_transaction`), sent to the group's coordinator after AddOffsetsToTxn.
//!
//! Partitions of unknown topics get UNKNOWN_TOPIC_OR_PARTITION and metadata over
//! `offset.metadata.max.bytes` OFFSET_METADATA_TOO_LARGE; the rest go to the group's coordinator, whose
//! answer (the group checks, then one transactional append) applies to all of them. The offsets stay
//! pending, invisible to OffsetFetch, until the transaction coordinator writes the transaction's marker
//! to the group's `__consumer_offsets` partition (see `group/coordinator/txn_offsets.rs`).
//!
//! Versions: v0–1 as Kafka 0.11; v2 adds the committed leader epoch; v3 (KIP-447) the group's member id,
//! generation and instance id, checked as OffsetCommit's are (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID,
//! FENCED_INSTANCE_ID; without them any group state is accepted); v3+ is flexible. Before v2,
//! COORDINATOR_LOAD_IN_PROGRESS is answered as COORDINATOR_NOT_AVAILABLE (clients before Kafka 2.0 do
//! not retry it). An empty group id is INVALID_GROUP_ID; a producer id or epoch below 0 is
//! INVALID_PRODUCER_ID_MAPPING (no transaction can hold the offsets).

use super::{simple, topic_name, PartitionErrors};
use crate::group::protocol::MemberIdentity;
use crate::group::records::{CommittedOffset, TxnProducer};
use crate::group_router;
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::txn_offset_commit_response::{
    TxnOffsetCommitResponsePartition, TxnOffsetCommitResponseTopic,
};
use kafka_protocol::messages::{TxnOffsetCommitRequest, TxnOffsetCommitResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 4);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: TxnOffsetCommitRequest, version| async move {
            let metadata = state.metadata();
            let max_metadata = state.config.groups.offset_metadata_max_bytes;
            let now = shard::task::wall_clock_ms();
            let mut layout: PartitionErrors = Vec::with_capacity(request.topics.len());
            let mut valid: Vec<(String, i32, CommittedOffset)> = Vec::new();
            for topic in &request.topics {
                let name = topic.name.to_string();
                let mut partitions = Vec::with_capacity(topic.partitions.len());
                for partition in &topic.partitions {
                    let text = partition
                        .committed_metadata
                        .as_ref()
                        .map(|text| text.to_string())
                        .unwrap_or_default();
                    // Any partition of the cluster: its leader may be another broker.
                    let error = if !metadata.has_partition(&name, partition.partition_index) {
                        Some(ResponseError::UnknownTopicOrPartition)
                    } else if text.len() > max_metadata {
                        Some(ResponseError::OffsetMetadataTooLarge)
                    } else {
                        valid.push((
                            name.clone(),
                            partition.partition_index,
                            CommittedOffset {
                                offset: partition.committed_offset,
                                leader_epoch: if version >= 2 {
                                    partition.committed_leader_epoch
                                } else {
                                    -1
                                },
                                metadata: text,
                                commit_timestamp: now,
                                expire_timestamp: None,
                            },
                        ));
                        None
                    };
                    partitions.push((partition.partition_index, error));
                }
                layout.push((name, partitions));
            }
            let group_id = request.group_id.to_string();
            let producer = TxnProducer {
                producer_id: request.producer_id.0,
                producer_epoch: request.producer_epoch,
            };
            let outcome = if group_id.is_empty() {
                Some(ResponseError::InvalidGroupId)
            } else if producer.producer_id < 0 || producer.producer_epoch < 0 {
                Some(ResponseError::InvalidProducerIdMapping)
            } else if valid.is_empty() {
                None
            } else {
                let member = MemberIdentity {
                    member_id: request.member_id.to_string(),
                    instance_id: request.group_instance_id.map(|id| id.to_string()),
                    generation: request.generation_id,
                };
                group_router::commit_transactional_offsets(
                    &state,
                    group_id.clone(),
                    member,
                    producer,
                    valid,
                )
                .await
                .unwrap_or_else(Some)
            };
            let outcome = match outcome {
                Some(ResponseError::CoordinatorLoadInProgress) if version < 2 => {
                    Some(ResponseError::CoordinatorNotAvailable)
                }
                other => other,
            };
            if let Some(code) = outcome {
                tracing::debug!(group = %group_id, producer_id = producer.producer_id, ?code, "transactional offset commit refused");
            }
            // An empty group id refuses every partition; otherwise a partition's own error comes first.
            let refuse_all = group_id.is_empty();
            let mut response = TxnOffsetCommitResponse::default();
            response.topics = layout
                .into_iter()
                .map(|(name, partitions)| {
                    let mut topic = TxnOffsetCommitResponseTopic::default();
                    topic.name = topic_name(&name);
                    topic.partitions = partitions
                        .into_iter()
                        .map(|(index, error)| {
                            let mut partition = TxnOffsetCommitResponsePartition::default();
                            partition.partition_index = index;
                            let error = if refuse_all {
                                outcome
                            } else {
                                error.or(outcome)
                            };
                            partition.error_code = error.map_or(0, |code| code.code());
                            partition
                        })
                        .collect();
                    topic
                })
                .collect();
            response
        },
    )
}
