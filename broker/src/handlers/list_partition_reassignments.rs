//! ListPartitionReassignments (key 46), version 0: the reassignments under way (all, or of the
//! partitions asked for), each with its replicas, those it adds and those it removes, as this broker's
//! metadata has them. A partition asked for that is not being moved is left out, as Kafka does.

use super::{simple, topic_name};
use crate::shard_state::ShardState;
use kafka_protocol::messages::list_partition_reassignments_response::{
    OngoingPartitionReassignment, OngoingTopicReassignment,
};
use kafka_protocol::messages::{
    BrokerId, ListPartitionReassignmentsRequest, ListPartitionReassignmentsResponse,
};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 0);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: ListPartitionReassignmentsRequest, _version| async move {
            list_partition_reassignments(&state, request)
        },
    )
}

fn list_partition_reassignments(
    state: &ShardState,
    request: ListPartitionReassignmentsRequest,
) -> ListPartitionReassignmentsResponse {
    let metadata = state.metadata();
    let wanted: Vec<(String, Option<Vec<i32>>)> = match request.topics {
        Some(topics) => topics
            .into_iter()
            .map(|topic| (topic.name.to_string(), Some(topic.partition_indexes)))
            .collect(),
        None => metadata
            .topics
            .keys()
            .map(|name| (name.clone(), None))
            .collect(),
    };
    let ids = |ids: &[i32]| ids.iter().map(|id| BrokerId(*id)).collect::<Vec<_>>();
    let mut response = ListPartitionReassignmentsResponse::default();
    for (name, indexes) in wanted {
        let Some(topic) = metadata.topics.get(&name) else {
            continue;
        };
        let indexes = indexes.unwrap_or_else(|| (0..topic.partition_count()).collect());
        let partitions: Vec<OngoingPartitionReassignment> = indexes
            .into_iter()
            .filter_map(|index| {
                let partition = topic.partitions.get(usize::try_from(index).ok()?)?;
                if !partition.is_reassigning() {
                    return None;
                }
                let mut ongoing = OngoingPartitionReassignment::default();
                ongoing.partition_index = index;
                ongoing.replicas = ids(&partition.replicas);
                ongoing.adding_replicas = ids(&partition.adding_replicas);
                ongoing.removing_replicas = ids(&partition.removing_replicas);
                Some(ongoing)
            })
            .collect();
        if !partitions.is_empty() {
            let mut ongoing = OngoingTopicReassignment::default();
            ongoing.name = topic_name(&name);
            ongoing.partitions = partitions;
            response.topics.push(ongoing);
        }
    }
    response
}
