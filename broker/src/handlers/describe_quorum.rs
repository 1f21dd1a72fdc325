//! DescribeQuorum (key 55), versions 0–2: the metadata quorum's state, for operators
//! (`kafka-metadata-quorum.sh describe --status`).
//!
//! The only partition it knows is `__cluster_metadata`-0, the metadata log; any other is answered
//! UNKNOWN_TOPIC_OR_PARTITION. Every broker answers from its own view rather than forwarding to the
//! leader: the leader id, its epoch (the Raft term) and the high watermark (the commit index) as this
//! node knows them; each voter's log end offset where this node knows it (the leader knows everyone's,
//! a follower only its own; -1 elsewhere) and when this node last heard from it; the same for the
//! observers (broker-only nodes, the quorum's learners). v2 adds the voters' controller endpoints
//! (`controller_quorum_voters`).

use super::{simple, str_bytes};
use crate::control::CONTROL_SHARD;
use crate::messages::ShardMessage;
use crate::quorum::QuorumStatus;
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_quorum_response::{
    Listener, Node, PartitionData, ReplicaState, TopicData,
};
use kafka_protocol::messages::{BrokerId, DescribeQuorumRequest, DescribeQuorumResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 2);

/// The metadata log's topic and partition (Kafka's names).
pub const METADATA_TOPIC: &str = "__cluster_metadata";
pub const METADATA_PARTITION: i32 = 0;

/// The listener name the voters' endpoints are reported under (v2).
const CONTROLLER_LISTENER: &str = "CONTROLLER";

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: DescribeQuorumRequest, version| async move {
            let status = status(&state).await;
            let mut response = DescribeQuorumResponse::default();
            for topic in request.topics {
                let mut answer = TopicData::default();
                let known_topic = topic.topic_name.0.as_str() == METADATA_TOPIC;
                answer.topic_name = topic.topic_name;
                for partition in topic.partitions {
                    let mut data = PartitionData::default();
                    data.partition_index = partition.partition_index;
                    match &status {
                        _ if !known_topic || partition.partition_index != METADATA_PARTITION => {
                            refuse(&mut data, ResponseError::UnknownTopicOrPartition)
                        }
                        None => refuse(&mut data, ResponseError::BrokerNotAvailable),
                        Some(status) => describe_partition(&mut data, status),
                    }
                    answer.partitions.push(data);
                }
                response.topics.push(answer);
            }
            if version >= 2 {
                response.nodes = state
                    .config
                    .quorum_voters
                    .iter()
                    .map(|voter| {
                        let mut listener = Listener::default();
                        listener.name = str_bytes(CONTROLLER_LISTENER.to_string());
                        listener.host = str_bytes(voter.host.clone());
                        listener.port = voter.port;
                        let mut node = Node::default();
                        node.node_id = BrokerId(voter.node_id);
                        node.listeners = vec![listener];
                        node
                    })
                    .collect();
            }
            response
        },
    )
}

fn refuse(data: &mut PartitionData, error: ResponseError) {
    data.error_code = error.code();
    data.leader_id = BrokerId(-1);
    data.leader_epoch = -1;
    data.high_watermark = -1;
}

fn describe_partition(data: &mut PartitionData, status: &QuorumStatus) {
    data.leader_id = BrokerId(status.leader_id.unwrap_or(-1));
    data.leader_epoch = i32::try_from(status.term).unwrap_or(i32::MAX);
    data.high_watermark = status.high_watermark as i64;
    let replica_of = |voter: &crate::quorum::VoterStatus| {
        let mut replica = ReplicaState::default();
        replica.replica_id = BrokerId(voter.node_id);
        replica.log_end_offset = voter.log_end_offset;
        replica.last_fetch_timestamp = voter.last_heard_ms;
        replica.last_caught_up_timestamp = if voter.log_end_offset >= status.high_watermark as i64 {
            voter.last_heard_ms
        } else {
            -1
        };
        replica
    };
    data.current_voters = status.voters.iter().map(replica_of).collect();
    // KRaft's observers: the broker-only nodes, the learners of the quorum.
    data.observers = status.observers.iter().map(replica_of).collect();
}

/// The quorum's status from shard 0, which runs it; `None` if shard 0 cannot be reached.
async fn status(state: &Rc<ShardState>) -> Option<QuorumStatus> {
    if state.id == CONTROL_SHARD {
        return Some(state.quorum_status());
    }
    let receiver = state
        .send(CONTROL_SHARD, |reply| ShardMessage::DescribeQuorum {
            reply,
        })
        .await
        .ok()?;
    receiver.await.ok()
}
