//! The group router (Redpanda's `group_router`): routes group requests ([`GroupRequest`],
//! `group/protocol.rs`) to the shard that owns the group's coordinator partition, and serves them there.
//! It is the only part of the group coordinator that knows shards; `group/` itself knows only its
//! partitions. It also creates the offsets topic on the first FindCoordinator.
//!
//! The asking side: [`on_coordinator`] is the one place a group operation is routed: it locates the
//! group's coordinator partition and owning shard and maps what can go wrong before a coordinator answers
//! to the errors clients expect: COORDINATOR_NOT_AVAILABLE (no offsets topic yet, or the shard cannot be
//! reached), NOT_COORDINATOR (the partition is not open there), COORDINATOR_LOAD_IN_PROGRESS (still
//! replaying). The typed calls below it (one per operation) are what the handlers use. The serving side:
//! [`serve`], run by the receiving shard (or directly by the asking shard when it is the owner).

use crate::control::{control, internal_topic, topic_outcomes, ControlRequest};
use crate::group::coordinator::{CoordinatorPartition, FetchedByTopic, ListedGroup};
use crate::group::protocol::{
    GroupAnswer, GroupOperation, GroupRequest, GroupResponse, MemberIdentity,
};
use crate::group::records::{CommittedOffset, TxnProducer};
use crate::group::state::JoinParams;
use crate::group::{locate, GroupCoordinator, OFFSETS_TOPIC};
use crate::messages::ShardMessage;
use crate::metadata::ClusterMetadata;
use crate::shard_state::ShardState;
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use shard::ShardId;
use std::rc::Rc;

/// Sends `request` to shard `to` and waits for its answer; serves it here when `to` is this shard. Err
/// (BROKER_NOT_AVAILABLE) when the shard cannot be reached or dropped the request.
async fn exchange(
    state: &Rc<ShardState>,
    to: ShardId,
    request: GroupRequest,
) -> Result<GroupResponse, ResponseError> {
    if to == state.id {
        return Ok(serve(state, request).await);
    }
    let receiver = state
        .send(to, |reply| ShardMessage::Group { request, reply })
        .await?;
    receiver
        .await
        .map_err(|_| ResponseError::BrokerNotAvailable)
}

/// Runs `operation` on its group's coordinator partition, on the shard that owns it.
pub async fn on_coordinator(
    state: &Rc<ShardState>,
    operation: GroupOperation,
) -> Result<GroupAnswer, ResponseError> {
    let (partition, shard) = coordinator_of(&state.metadata(), operation.group_id())?;
    let request = GroupRequest::Coordinator {
        partition,
        operation: Box::new(operation),
    };
    match exchange(state, shard, request).await {
        Ok(GroupResponse::Coordinator(answer)) => answer,
        Ok(other) => Err(mismatched("a coordinator operation", &other)),
        Err(_) => Err(ResponseError::CoordinatorNotAvailable),
    }
}

/// The group's coordinator partition and its shard; COORDINATOR_NOT_AVAILABLE while the offsets topic
/// does not exist.
fn coordinator_of(
    metadata: &ClusterMetadata,
    group_id: &str,
) -> Result<(i32, ShardId), ResponseError> {
    locate(metadata, group_id).ok_or(ResponseError::CoordinatorNotAvailable)
}

/// Each shard's share of ListGroups, in shard order; a shard that cannot be reached is left out.
pub async fn list_every_shard(
    state: &Rc<ShardState>,
) -> Vec<Result<Vec<ListedGroup>, ResponseError>> {
    let mut results = Vec::with_capacity(state.config.shards);
    for shard in (0..state.config.shards).map(ShardId) {
        match exchange(state, shard, GroupRequest::ListGroups).await {
            Ok(GroupResponse::ListGroups(result)) => results.push(result),
            Ok(other) => {
                mismatched("ListGroups", &other);
            }
            Err(_) => {}
        }
    }
    results
}

/// Serves a group request on this shard (the receiving side of [`ShardMessage::Group`]).
///
/// A coordinator partition the shard's metadata places here but that is not open yet (a metadata
/// version being applied: the offsets topic was just created, and another shard already answered
/// FindCoordinator) answers COORDINATOR_LOAD_IN_PROGRESS, as a loading coordinator does, so clients
/// retry; NOT_COORDINATOR is for partitions placed elsewhere.
pub async fn serve(state: &ShardState, request: GroupRequest) -> GroupResponse {
    let metadata = state.metadata();
    let placed_here =
        |partition: i32| metadata.shard_of(OFFSETS_TOPIC, partition) == Some(state.id.0);
    serve_with(&state.groups, placed_here, request).await
}

/// [`serve`] over `groups`, with `placed_here(partition)` telling whether the metadata places a
/// coordinator partition on this shard.
pub async fn serve_with(
    groups: &GroupCoordinator,
    placed_here: impl Fn(i32) -> bool,
    request: GroupRequest,
) -> GroupResponse {
    match request {
        GroupRequest::Coordinator {
            partition,
            operation,
        } => GroupResponse::Coordinator(
            serve_operation(groups, partition, placed_here(partition), *operation).await,
        ),
        GroupRequest::ListGroups => GroupResponse::ListGroups(list_here(groups)),
    }
}

async fn serve_operation(
    groups: &GroupCoordinator,
    partition: i32,
    placed_here: bool,
    operation: GroupOperation,
) -> Result<GroupAnswer, ResponseError> {
    let Some(coordinator) = groups.get(partition) else {
        return Err(if placed_here {
            ResponseError::CoordinatorLoadInProgress
        } else {
            ResponseError::NotCoordinator
        });
    };
    if !coordinator.is_loaded() {
        return Err(ResponseError::CoordinatorLoadInProgress);
    }
    Ok(operate(&coordinator, operation).await)
}

/// Runs one operation on a loaded coordinator partition; the answer has the operation's name.
async fn operate(coordinator: &CoordinatorPartition, operation: GroupOperation) -> GroupAnswer {
    match operation {
        GroupOperation::JoinGroup {
            group_id,
            params,
            version,
        } => GroupAnswer::JoinGroup(coordinator.join(group_id, params, version).await),
        GroupOperation::SyncGroup {
            group_id,
            member,
            protocol_type,
            protocol_name,
            assignments,
        } => GroupAnswer::SyncGroup(
            coordinator
                .sync(
                    &group_id,
                    member.as_ref(),
                    (protocol_type, protocol_name),
                    assignments,
                )
                .await,
        ),
        GroupOperation::Heartbeat { group_id, member } => {
            GroupAnswer::Heartbeat(coordinator.heartbeat(&group_id, member.as_ref()))
        }
        GroupOperation::LeaveGroup { group_id, members } => {
            GroupAnswer::LeaveGroup(coordinator.leave(&group_id, members).await)
        }
        GroupOperation::OffsetCommit {
            group_id,
            member,
            offsets,
        } => GroupAnswer::OffsetCommit(
            coordinator
                .commit(&group_id, member.as_ref(), offsets)
                .await,
        ),
        GroupOperation::TxnOffsetCommit {
            group_id,
            member,
            producer,
            offsets,
        } => GroupAnswer::TxnOffsetCommit(
            coordinator
                .commit_transactional(&group_id, member.as_ref(), producer, offsets)
                .await,
        ),
        GroupOperation::OffsetFetch {
            group_id,
            topics,
            require_stable,
        } => GroupAnswer::OffsetFetch(coordinator.fetch_offsets(&group_id, topics, require_stable)),
        GroupOperation::OffsetDelete {
            group_id,
            partitions,
        } => GroupAnswer::OffsetDelete(coordinator.delete_offsets(&group_id, partitions).await),
        GroupOperation::DescribeGroup { group_id } => {
            GroupAnswer::DescribeGroup(coordinator.describe(&group_id))
        }
        GroupOperation::DeleteGroup { group_id } => {
            GroupAnswer::DeleteGroup(coordinator.delete(&group_id).await)
        }
    }
}

/// The groups of every coordinator partition of this shard; none while one of them is still loading.
fn list_here(groups: &GroupCoordinator) -> Result<Vec<ListedGroup>, ResponseError> {
    let coordinators = groups.all();
    if coordinators
        .iter()
        .any(|coordinator| !coordinator.is_loaded())
    {
        return Err(ResponseError::CoordinatorLoadInProgress);
    }
    Ok(coordinators
        .iter()
        .flat_map(|coordinator| coordinator.list())
        .collect())
}

/// An answer of another kind than asked: a bug in `serve`; logged, and the client may retry.
fn mismatched(asked: &'static str, response: &GroupResponse) -> ResponseError {
    let answered = match response {
        GroupResponse::Coordinator(Ok(answer)) => answer.name(),
        GroupResponse::Coordinator(Err(_)) => "a coordinator error",
        GroupResponse::ListGroups(_) => "ListGroups",
    };
    tracing::error!(
        asked,
        answered,
        "a group request was answered with another kind of answer"
    );
    ResponseError::CoordinatorNotAvailable
}

/// The answer's payload when it is of `$variant`, else the mismatch error.
macro_rules! expect_answer {
    ($answer:expr, $variant:ident) => {
        match $answer {
            GroupAnswer::$variant(inner) => Ok(inner),
            other => Err(mismatched(
                stringify!($variant),
                &GroupResponse::Coordinator(Ok(other)),
            )),
        }
    };
}

// ------------------------------------------------------------------------------------------------------
// One typed call per operation (what the handlers use). Err: the coordinator could not be reached or
// could not serve (see `on_coordinator`).

pub async fn join_group(
    state: &Rc<ShardState>,
    group_id: String,
    params: JoinParams,
    version: i16,
) -> Result<JoinGroupResponse, ResponseError> {
    let operation = GroupOperation::JoinGroup {
        group_id,
        params,
        version,
    };
    expect_answer!(on_coordinator(state, operation).await?, JoinGroup)
}

pub async fn sync_group(
    state: &Rc<ShardState>,
    group_id: String,
    member: MemberIdentity,
    protocol: (Option<String>, Option<String>),
    assignments: Vec<(String, Bytes)>,
) -> Result<SyncGroupResponse, ResponseError> {
    let (protocol_type, protocol_name) = protocol;
    let operation = GroupOperation::SyncGroup {
        group_id,
        member,
        protocol_type,
        protocol_name,
        assignments,
    };
    expect_answer!(on_coordinator(state, operation).await?, SyncGroup)
}

/// None: the member is in good standing.
pub async fn heartbeat(
    state: &Rc<ShardState>,
    group_id: String,
    member: MemberIdentity,
) -> Result<Option<ResponseError>, ResponseError> {
    let operation = GroupOperation::Heartbeat { group_id, member };
    expect_answer!(on_coordinator(state, operation).await?, Heartbeat)
}

/// Each member's error (None: it left), in the order of `members`: (member id, instance id).
pub async fn leave_group(
    state: &Rc<ShardState>,
    group_id: String,
    members: Vec<(String, Option<String>)>,
) -> Result<Vec<Option<ResponseError>>, ResponseError> {
    let operation = GroupOperation::LeaveGroup { group_id, members };
    expect_answer!(on_coordinator(state, operation).await?, LeaveGroup)
}

/// One error for all the offsets (None: committed).
pub async fn commit_offsets(
    state: &Rc<ShardState>,
    group_id: String,
    member: MemberIdentity,
    offsets: Vec<(String, i32, CommittedOffset)>,
) -> Result<Option<ResponseError>, ResponseError> {
    let operation = GroupOperation::OffsetCommit {
        group_id,
        member,
        offsets,
    };
    expect_answer!(on_coordinator(state, operation).await?, OffsetCommit)
}

/// One error for all the offsets (None: appended; pending until the producer's transaction ends).
pub async fn commit_transactional_offsets(
    state: &Rc<ShardState>,
    group_id: String,
    member: MemberIdentity,
    producer: TxnProducer,
    offsets: Vec<(String, i32, CommittedOffset)>,
) -> Result<Option<ResponseError>, ResponseError> {
    let operation = GroupOperation::TxnOffsetCommit {
        group_id,
        member,
        producer,
        offsets,
    };
    expect_answer!(on_coordinator(state, operation).await?, TxnOffsetCommit)
}

pub async fn fetch_offsets(
    state: &Rc<ShardState>,
    group_id: String,
    topics: Option<Vec<(String, Vec<i32>)>>,
    require_stable: bool,
) -> Result<FetchedByTopic, ResponseError> {
    let operation = GroupOperation::OffsetFetch {
        group_id,
        topics,
        require_stable,
    };
    expect_answer!(on_coordinator(state, operation).await?, OffsetFetch)
}

/// The outer Err: the coordinator could not serve; the inner one: the group's top-level error.
pub async fn delete_offsets(
    state: &Rc<ShardState>,
    group_id: String,
    partitions: Vec<(String, i32)>,
) -> Result<Result<Vec<Option<ResponseError>>, ResponseError>, ResponseError> {
    let operation = GroupOperation::OffsetDelete {
        group_id,
        partitions,
    };
    expect_answer!(on_coordinator(state, operation).await?, OffsetDelete)
}

pub async fn describe_group(
    state: &Rc<ShardState>,
    group_id: String,
) -> Result<DescribedGroup, ResponseError> {
    let operation = GroupOperation::DescribeGroup { group_id };
    expect_answer!(on_coordinator(state, operation).await?, DescribeGroup)
}

/// None: deleted.
pub async fn delete_group(
    state: &Rc<ShardState>,
    group_id: String,
) -> Result<Option<ResponseError>, ResponseError> {
    let operation = GroupOperation::DeleteGroup { group_id };
    expect_answer!(on_coordinator(state, operation).await?, DeleteGroup)
}

/// Creates `__consumer_offsets` if it does not exist yet (the first FindCoordinator for a group).
pub async fn ensure_offsets_topic(state: &Rc<ShardState>) -> Result<(), ResponseError> {
    if state.metadata().topics.contains_key(OFFSETS_TOPIC) {
        return Ok(());
    }
    let Some(topic) = internal_topic(&state.config, OFFSETS_TOPIC) else {
        return Err(ResponseError::CoordinatorNotAvailable);
    };
    let request = ControlRequest::CreateTopics {
        topics: vec![topic],
        validate_only: false,
    };
    match topic_outcomes(control(state, request).await, 1).pop() {
        Some(Ok(())) => Ok(()),
        Some(Err((ResponseError::TopicAlreadyExists, _))) => Ok(()),
        Some(Err((code, message))) => {
            tracing::error!(?code, %message, "cannot create {OFFSETS_TOPIC}");
            Err(ResponseError::CoordinatorNotAvailable)
        }
        None => Err(ResponseError::CoordinatorNotAvailable),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::{partition_for, OFFSETS_TOPIC};
    use crate::metadata::TopicMetadata;
    use futures_lite::future::block_on;

    fn metadata_with_offsets_topic(shards: Vec<usize>) -> ClusterMetadata {
        let mut metadata = ClusterMetadata::new_cluster();
        metadata.topics.insert(
            OFFSETS_TOPIC.to_string(),
            TopicMetadata {
                id: uuid::Uuid::new_v4(),
                shards,
                configs: Default::default(),
                partitions: Vec::new(),
            },
        );
        metadata
    }

    #[test]
    fn a_group_is_routed_to_the_shard_of_its_partition() {
        let metadata = ClusterMetadata::new_cluster();
        assert_eq!(
            coordinator_of(&metadata, "g"),
            Err(ResponseError::CoordinatorNotAvailable)
        );
        let shards = vec![0, 1, 1, 0, 1];
        let metadata = metadata_with_offsets_topic(shards.clone());
        for group_id in ["g", "my-group", "other", ""] {
            let partition = partition_for(group_id, shards.len() as i32);
            assert_eq!(
                coordinator_of(&metadata, group_id),
                Ok((partition, ShardId(shards[partition as usize])))
            );
        }
    }

    #[test]
    fn a_partition_placed_here_but_not_open_yet_is_loading() {
        let groups = GroupCoordinator::new(crate::config::GroupConfig::default());
        let request = GroupRequest::Coordinator {
            partition: 3,
            operation: Box::new(GroupOperation::Heartbeat {
                group_id: "g".into(),
                member: MemberIdentity {
                    member_id: "m".into(),
                    instance_id: None,
                    generation: 1,
                },
            }),
        };
        match block_on(serve_with(&groups, |partition| partition == 3, request)) {
            GroupResponse::Coordinator(Err(code)) => {
                assert_eq!(code, ResponseError::CoordinatorLoadInProgress)
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }

    #[test]
    fn a_partition_not_open_here_is_not_coordinator() {
        let groups = GroupCoordinator::new(crate::config::GroupConfig::default());
        let request = GroupRequest::Coordinator {
            partition: 3,
            operation: Box::new(GroupOperation::Heartbeat {
                group_id: "g".into(),
                member: MemberIdentity {
                    member_id: "m".into(),
                    instance_id: None,
                    generation: 1,
                },
            }),
        };
        match block_on(serve_with(&groups, |_| false, request)) {
            GroupResponse::Coordinator(Err(code)) => {
                assert_eq!(code, ResponseError::NotCoordinator)
            }
            other => panic!("unexpected answer {other:?}"),
        }
    }

    #[test]
    fn a_shard_without_coordinator_partitions_lists_no_groups() {
        let groups = GroupCoordinator::new(crate::config::GroupConfig::default());
        match block_on(serve_with(&groups, |_| false, GroupRequest::ListGroups)) {
            GroupResponse::ListGroups(Ok(listed)) => assert!(listed.is_empty()),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    #[test]
    fn an_answer_of_another_operation_is_coordinator_not_available() {
        let answer = GroupAnswer::Heartbeat(None);
        let taken: Result<Option<ResponseError>, ResponseError> =
            expect_answer!(answer, DeleteGroup);
        assert_eq!(taken, Err(ResponseError::CoordinatorNotAvailable));
        let taken: Result<Option<ResponseError>, ResponseError> = expect_answer!(
            GroupAnswer::Heartbeat(Some(ResponseError::RebalanceInProgress)),
            Heartbeat
        );
        assert_eq!(taken, Ok(Some(ResponseError::RebalanceInProgress)));
        assert_eq!(
            mismatched(
                "ListGroups",
                &GroupResponse::Coordinator(Ok(GroupAnswer::DeleteGroup(None)))
            ),
            ResponseError::CoordinatorNotAvailable
        );
    }
}
