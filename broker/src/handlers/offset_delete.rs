//! OffsetDelete (key 47), version 0.
//!
//! Deletes committed offsets of a group: allowed for an empty group, and for a consumer group's topics
//! that no member subscribes to (others get GROUP_SUBSCRIBED_TO_TOPIC). Unknown group: GROUP_ID_NOT_FOUND.

use super::{simple, topic_name, PartitionErrors};
use crate::group_router;
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_delete_response::{
    OffsetDeleteResponsePartition, OffsetDeleteResponseTopic,
};
use kafka_protocol::messages::{OffsetDeleteRequest, OffsetDeleteResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 0);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: OffsetDeleteRequest, _version| async move {
            let metadata = state.metadata();
            let mut known = Vec::new();
            let mut layout: PartitionErrors = Vec::new();
            for topic in &request.topics {
                let name = topic.name.to_string();
                let partitions = topic
                    .partitions
                    .iter()
                    .map(|partition| {
                        let index = partition.partition_index;
                        if !metadata.has_partition(&name, index) {
                            (index, Some(ResponseError::UnknownTopicOrPartition))
                        } else {
                            known.push((name.clone(), index));
                            (index, None)
                        }
                    })
                    .collect();
                layout.push((name, partitions));
            }
            let group_id = request.group_id.to_string();
            let mut response = OffsetDeleteResponse::default();
            let results = match group_router::delete_offsets(&state, group_id, known).await {
                Ok(Ok(results)) => results,
                Ok(Err(code)) | Err(code) => {
                    response.error_code = code.code();
                    return response;
                }
            };
            let mut results = results.into_iter();
            response.topics = layout
                .into_iter()
                .map(|(name, partitions)| {
                    let mut topic = OffsetDeleteResponseTopic::default();
                    topic.name = topic_name(&name);
                    topic.partitions = partitions
                        .into_iter()
                        .map(|(index, error)| {
                            let error = match error {
                                Some(code) => Some(code),
                                None => results.next().flatten(),
                            };
                            let mut partition = OffsetDeleteResponsePartition::default();
                            partition.partition_index = index;
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
