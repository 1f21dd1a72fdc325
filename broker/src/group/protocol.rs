//! The group coordinator's part of the cross-shard protocol: what [`ShardMessage::Group`] carries, as
//! plain data (owned, `Send`: decoded request parameters in, typed answers out).
//!
//! Who handles what:
//! - [`GroupRequest::Coordinator`] goes to the shard that owns the group's coordinator partition (the
//!   partition of `__consumer_offsets` the group id hashes to, [`super::partition_for`]) and names that
//!   partition; that shard answers [`GroupResponse::Coordinator`] with the [`GroupAnswer`] variant of the
//!   same name as the [`GroupOperation`], or NOT_COORDINATOR (the partition is not open there) or
//!   COORDINATOR_LOAD_IN_PROGRESS (it is still replaying).
//! - [`GroupRequest::ListGroups`] goes to every shard; each answers [`GroupResponse::ListGroups`] with the
//!   groups of its coordinator partitions, or COORDINATOR_LOAD_IN_PROGRESS while one of them loads.
//!
//! A request for the asking shard itself is served there directly, without a mesh hop. Between two shards
//! requests are served in send order (each in its own task, started in that order). The sending and
//! serving sides are in `routing.rs`.
//!
//! [`ShardMessage::Group`]: crate::messages::ShardMessage::Group

use super::coordinator::{FetchedByTopic, ListedGroup, MemberRef};
use super::records::{CommittedOffset, TxnProducer};
use super::state::JoinParams;
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};

/// A group request to one shard.
#[derive(Debug)]
pub enum GroupRequest {
    /// An operation on one group, by coordinator partition `partition` on the receiving shard (boxed: a
    /// JoinGroup's parameters would make every [`ShardMessage`] several times larger).
    ///
    /// [`ShardMessage`]: crate::messages::ShardMessage
    Coordinator {
        partition: i32,
        operation: Box<GroupOperation>,
    },
    /// The receiving shard's share of ListGroups: the groups of all its coordinator partitions.
    ListGroups,
}

/// The answer to a [`GroupRequest`], of the variant of the same name.
#[derive(Debug)]
pub enum GroupResponse {
    /// Err: the coordinator partition cannot serve (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS).
    Coordinator(Result<GroupAnswer, ResponseError>),
    /// Err: a coordinator partition of the shard is still loading (COORDINATOR_LOAD_IN_PROGRESS).
    ListGroups(Result<Vec<ListedGroup>, ResponseError>),
}

/// A member as a request names it (the owned form of [`MemberRef`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MemberIdentity {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
}

impl MemberIdentity {
    pub fn as_ref(&self) -> MemberRef<'_> {
        MemberRef {
            member_id: &self.member_id,
            instance_id: self.instance_id.as_deref(),
            generation: self.generation,
        }
    }
}

/// One operation on one group, served by its coordinator partition.
#[derive(Debug)]
pub enum GroupOperation {
    /// JoinGroup: the answer is sent once the join phase ends. `version` is the request's API version.
    JoinGroup {
        group_id: String,
        params: JoinParams,
        version: i16,
    },
    /// SyncGroup: the leader brings the assignments; everyone waits for them.
    SyncGroup {
        group_id: String,
        member: MemberIdentity,
        /// Checked against the group's when present (v5+).
        protocol_type: Option<String>,
        protocol_name: Option<String>,
        /// (member id, assignment), from the leader.
        assignments: Vec<(String, Bytes)>,
    },
    Heartbeat {
        group_id: String,
        member: MemberIdentity,
    },
    /// LeaveGroup: (member id, instance id) of each member leaving.
    LeaveGroup {
        group_id: String,
        members: Vec<(String, Option<String>)>,
    },
    /// OffsetCommit of partitions the asking shard has already checked (known topic, metadata size).
    OffsetCommit {
        group_id: String,
        member: MemberIdentity,
        /// (topic, partition, offset)
        offsets: Vec<(String, i32, CommittedOffset)>,
    },
    /// TxnOffsetCommit of partitions the asking shard has already checked: kept pending under the
    /// producer id until its transaction's marker.
    TxnOffsetCommit {
        group_id: String,
        member: MemberIdentity,
        producer: TxnProducer,
        /// (topic, partition, offset)
        offsets: Vec<(String, i32, CommittedOffset)>,
    },
    /// OffsetFetch of the listed partitions by topic, or (None) of every committed one;
    /// `require_stable` (v7+): UNSTABLE_OFFSET_COMMIT where a transaction holds a pending offset.
    OffsetFetch {
        group_id: String,
        topics: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    },
    /// OffsetDelete of partitions of known topics: (topic, partition).
    OffsetDelete {
        group_id: String,
        partitions: Vec<(String, i32)>,
    },
    /// One group of a DescribeGroups request.
    DescribeGroup { group_id: String },
    /// One group of a DeleteGroups request.
    DeleteGroup { group_id: String },
}

impl GroupOperation {
    /// The group the operation is on: it decides the coordinator partition.
    pub fn group_id(&self) -> &str {
        match self {
            GroupOperation::JoinGroup { group_id, .. }
            | GroupOperation::SyncGroup { group_id, .. }
            | GroupOperation::Heartbeat { group_id, .. }
            | GroupOperation::LeaveGroup { group_id, .. }
            | GroupOperation::OffsetCommit { group_id, .. }
            | GroupOperation::TxnOffsetCommit { group_id, .. }
            | GroupOperation::OffsetFetch { group_id, .. }
            | GroupOperation::OffsetDelete { group_id, .. }
            | GroupOperation::DescribeGroup { group_id }
            | GroupOperation::DeleteGroup { group_id } => group_id,
        }
    }
}

/// A coordinator partition's answer to a [`GroupOperation`], of the variant of the same name.
#[derive(Debug)]
pub enum GroupAnswer {
    JoinGroup(JoinGroupResponse),
    SyncGroup(SyncGroupResponse),
    /// None: the member is in good standing.
    Heartbeat(Option<ResponseError>),
    /// Each leaving member's error (None: it left), in request order.
    LeaveGroup(Vec<Option<ResponseError>>),
    /// One error for all the partitions (None: committed).
    OffsetCommit(Option<ResponseError>),
    /// One error for all the partitions (None: appended, pending until the transaction ends).
    TxnOffsetCommit(Option<ResponseError>),
    /// Per topic, each partition's committed offset (None where nothing is committed) or its error.
    OffsetFetch(FetchedByTopic),
    /// Err: the top-level error; else each partition's error (None: deleted or absent), in request order.
    OffsetDelete(Result<Vec<Option<ResponseError>>, ResponseError>),
    DescribeGroup(DescribedGroup),
    /// None: deleted.
    DeleteGroup(Option<ResponseError>),
}

impl GroupAnswer {
    /// The operation's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            GroupAnswer::JoinGroup(_) => "JoinGroup",
            GroupAnswer::SyncGroup(_) => "SyncGroup",
            GroupAnswer::Heartbeat(_) => "Heartbeat",
            GroupAnswer::LeaveGroup(_) => "LeaveGroup",
            GroupAnswer::OffsetCommit(_) => "OffsetCommit",
            GroupAnswer::TxnOffsetCommit(_) => "TxnOffsetCommit",
            GroupAnswer::OffsetFetch(_) => "OffsetFetch",
            GroupAnswer::OffsetDelete(_) => "OffsetDelete",
            GroupAnswer::DescribeGroup(_) => "DescribeGroup",
            GroupAnswer::DeleteGroup(_) => "DeleteGroup",
        }
    }
}
