//! OffsetFetch (key 9), versions 1–8.
//!
//! v1–7 ask for one group (v2+: a null topic list means every committed partition; v2+ carries a
//! top-level error); v8+ for several groups, each with its own error. A partition without a committed
//! offset gets offset -1 and no error. v5+ returns the committed leader epoch. With `require_stable`
//! (v7+, KIP-447) a partition for which an open transaction holds a pending offset (TxnOffsetCommit not
//! yet ended by a marker) answers UNSTABLE_OFFSET_COMMIT (offset -1), and the client retries; without
//! it the last committed offset is returned.

use super::{simple, str_bytes, topic_name};
use crate::group::coordinator::FetchedByTopic;
use crate::group::records::CommittedOffset;
use crate::group_router;
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_fetch_response::{
    OffsetFetchResponseGroup, OffsetFetchResponsePartition, OffsetFetchResponsePartitions,
    OffsetFetchResponseTopic, OffsetFetchResponseTopics,
};
use kafka_protocol::messages::{GroupId, OffsetFetchRequest, OffsetFetchResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (1, 8);

async fn fetch(
    state: &Rc<ShardState>,
    group_id: String,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Result<FetchedByTopic, ResponseError> {
    group_router::fetch_offsets(state, group_id, topics, require_stable).await
}

/// Response topics from committed offsets, for either layout (v1–7 and v8+ have the same fields in
/// different types). The leader epoch exists from v5.
macro_rules! response_topics {
    ($committed:expr, $topic:ty, $partition:ty, $version:expr) => {
        $committed
            .into_iter()
            .map(|(name, partitions)| {
                let mut topic = <$topic>::default();
                topic.name = topic_name(&name);
                topic.partitions = partitions
                    .into_iter()
                    .map(
                        |(index, value): (i32, Result<Option<CommittedOffset>, ResponseError>)| {
                            let mut partition = <$partition>::default();
                            partition.partition_index = index;
                            partition.committed_offset = -1;
                            partition.metadata = Some(str_bytes(""));
                            if let Err(code) = &value {
                                partition.error_code = code.code();
                            }
                            if let Ok(Some(value)) = value {
                                partition.committed_offset = value.offset;
                                if $version >= 5 {
                                    partition.committed_leader_epoch = value.leader_epoch;
                                }
                                partition.metadata = Some(str_bytes(value.metadata));
                            }
                            partition
                        },
                    )
                    .collect();
                topic
            })
            .collect()
    };
}

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: OffsetFetchRequest, version| async move {
            let require_stable = version >= 7 && request.require_stable;
            let mut response = OffsetFetchResponse::default();
            if version >= 8 {
                for group in request.groups {
                    let topics = group.topics.map(|topics| {
                        topics
                            .into_iter()
                            .map(|topic| (topic.name.to_string(), topic.partition_indexes))
                            .collect()
                    });
                    let mut entry = OffsetFetchResponseGroup::default();
                    entry.group_id = group.group_id.clone();
                    match fetch(&state, group.group_id.to_string(), topics, require_stable).await {
                        Ok(committed) => {
                            entry.topics = response_topics!(
                                committed,
                                OffsetFetchResponseTopics,
                                OffsetFetchResponsePartitions,
                                version
                            );
                        }
                        Err(code) => entry.error_code = code.code(),
                    }
                    response.groups.push(entry);
                }
                return response;
            }
            let wanted: Option<Vec<(String, Vec<i32>)>> = request.topics.map(|topics| {
                topics
                    .into_iter()
                    .map(|topic| (topic.name.to_string(), topic.partition_indexes))
                    .collect()
            });
            let GroupId(group_id) = request.group_id;
            match fetch(&state, group_id.to_string(), wanted.clone(), require_stable).await {
                Ok(committed) => {
                    response.topics = response_topics!(
                        committed,
                        OffsetFetchResponseTopic,
                        OffsetFetchResponsePartition,
                        version
                    );
                }
                // v2+ has a top-level error; v1 only per-partition ones.
                Err(code) if version >= 2 => response.error_code = code.code(),
                Err(code) => {
                    response.topics = wanted
                        .unwrap_or_default()
                        .into_iter()
                        .map(|(name, partitions)| {
                            let mut topic = OffsetFetchResponseTopic::default();
                            topic.name = topic_name(&name);
                            topic.partitions = partitions
                                .into_iter()
                                .map(|index| {
                                    let mut partition = OffsetFetchResponsePartition::default();
                                    partition.partition_index = index;
                                    partition.committed_offset = -1;
                                    partition.metadata = Some(str_bytes(""));
                                    partition.error_code = code.code();
                                    partition
                                })
                                .collect();
                            topic
                        })
                        .collect();
                }
            }
            response
        },
    )
}
