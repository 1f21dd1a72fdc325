//! OffsetCommit (key 8), versions 2–8.
//!
//! Partitions of unknown topics get UNKNOWN_TOPIC_OR_PARTITION and metadata over
//! `offset.metadata.max.bytes` OFFSET_METADATA_TOO_LARGE; the rest go to the group's coordinator, whose
//! answer (membership and generation checks, then one append) applies to all of them. Generation -1 with
//! an empty member id commits for a group that does not use the coordinator (an empty group only).
//! v2–4 carry a retention time: other than -1 it sets the offsets' expire timestamp (commit time plus
//! it), which then decides their expiry instead of `offsets.retention.minutes` (Kafka 2.1+); v6+ the
//! leader epoch; v7+ the instance id.

use super::{simple, topic_name, PartitionErrors};
use crate::group::protocol::MemberIdentity;
use crate::group::records::CommittedOffset;
use crate::group_router;
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_commit_response::{
    OffsetCommitResponsePartition, OffsetCommitResponseTopic,
};
use kafka_protocol::messages::{OffsetCommitRequest, OffsetCommitResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (2, 8);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: OffsetCommitRequest, version| async move {
            let metadata = state.metadata();
            let max_metadata = state.config.groups.offset_metadata_max_bytes;
            let now = shard::task::wall_clock_ms();
            let expire_timestamp = (version <= 4 && request.retention_time_ms != -1)
                .then(|| now.saturating_add(request.retention_time_ms));
            // (topic, partition, precheck error)
            let mut layout: PartitionErrors = Vec::new();
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
                                leader_epoch: if version >= 6 {
                                    partition.committed_leader_epoch
                                } else {
                                    -1
                                },
                                metadata: text,
                                commit_timestamp: now,
                                expire_timestamp,
                            },
                        ));
                        None
                    };
                    partitions.push((partition.partition_index, error));
                }
                layout.push((name, partitions));
            }
            let group_id = request.group_id.to_string();
            let outcome = if valid.is_empty() {
                None
            } else {
                let member = MemberIdentity {
                    member_id: request.member_id.to_string(),
                    instance_id: request.group_instance_id.map(|id| id.to_string()),
                    generation: request.generation_id_or_member_epoch,
                };
                group_router::commit_offsets(&state, group_id.clone(), member, valid)
                    .await
                    .unwrap_or_else(Some)
            };
            if let Some(code) = outcome {
                tracing::debug!(group = %group_id, ?code, "offset commit refused");
            }
            let mut response = OffsetCommitResponse::default();
            response.topics = layout
                .into_iter()
                .map(|(name, partitions)| {
                    let mut topic = OffsetCommitResponseTopic::default();
                    topic.name = topic_name(&name);
                    topic.partitions = partitions
                        .into_iter()
                        .map(|(index, error)| {
                            let mut partition = OffsetCommitResponsePartition::default();
                            partition.partition_index = index;
                            partition.error_code = error.or(outcome).map_or(0, |code| code.code());
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
