//! A consumer group's cycle through the handlers on the manual clock: FindCoordinator (creating the
//! offsets topic), JoinGroup (member id round, then the initial rebalance delay), SyncGroup, Heartbeat,
//! and the session expiring when heartbeats stop.

use super::TestShard;
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, FindCoordinatorRequest, FindCoordinatorResponse, GroupId, HeartbeatRequest,
    HeartbeatResponse, JoinGroupRequest, JoinGroupResponse, SyncGroupRequest, SyncGroupResponse,
};
use kafka_protocol::protocol::StrBytes;
use std::time::Duration;

const GROUP: &str = "in-process-group";
const SESSION_TIMEOUT_MS: i32 = 10_000;

fn join_request(member_id: &str) -> JoinGroupRequest {
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = StrBytes::from_static_str("range");
    protocol.metadata = Bytes::from_static(b"subscription");
    let mut request = JoinGroupRequest::default();
    request.group_id = GroupId(StrBytes::from_static_str(GROUP));
    request.session_timeout_ms = SESSION_TIMEOUT_MS;
    request.rebalance_timeout_ms = 30_000;
    request.member_id = StrBytes::from_string(member_id.to_string());
    request.protocol_type = StrBytes::from_static_str("consumer");
    request.protocols = vec![protocol];
    request
}

fn heartbeat(shard: &mut TestShard, member_id: &str, generation_id: i32) -> i16 {
    let mut request = HeartbeatRequest::default();
    request.group_id = GroupId(StrBytes::from_static_str(GROUP));
    request.generation_id = generation_id;
    request.member_id = StrBytes::from_string(member_id.to_string());
    let response: HeartbeatResponse = shard.call(ApiKey::Heartbeat, 3, &request);
    response.error_code
}

#[test]
fn a_member_joins_syncs_heartbeats_and_expires_on_the_manual_clock() {
    let mut shard = TestShard::start(|config| config.groups.initial_rebalance_delay_ms = 3_000);

    // FindCoordinator creates the offsets topic; its coordinator replays it (nothing to replay).
    let mut find = FindCoordinatorRequest::default();
    find.key = StrBytes::from_static_str(GROUP);
    let found: FindCoordinatorResponse = shard.call(ApiKey::FindCoordinator, 3, &find);
    assert_eq!(found.error_code, 0, "coordinator found");
    assert_eq!(found.node_id.0, shard.state.config.node_id);
    shard.simulation.run_until_stalled();

    // v4+: the first join only hands out a member id.
    let first: JoinGroupResponse = shard.call(ApiKey::JoinGroup, 5, &join_request(""));
    assert_eq!(first.error_code, ResponseError::MemberIdRequired.code());
    let member_id = first.member_id.to_string();
    assert!(!member_id.is_empty());

    // The join completes once the initial rebalance delay has passed on the manual clock.
    let join = shard.send(ApiKey::JoinGroup, 5, &join_request(&member_id));
    shard.simulation.run_until_stalled();
    assert!(
        !join.is_finished(),
        "waits out group.initial.rebalance.delay.ms"
    );
    shard.simulation.advance(Duration::from_millis(3_000));
    let frame = join
        .take_output()
        .expect("joined after the delay")
        .expect("a response");
    let joined: JoinGroupResponse = super::decode_response(ApiKey::JoinGroup, 5, frame);
    assert_eq!(joined.error_code, 0);
    assert_eq!(
        joined.leader.to_string(),
        member_id,
        "the only member leads"
    );
    assert_eq!(joined.members.len(), 1);
    let generation_id = joined.generation_id;

    // The leader's assignment comes back to it.
    let mut assignment = SyncGroupRequestAssignment::default();
    assignment.member_id = StrBytes::from_string(member_id.clone());
    assignment.assignment = Bytes::from_static(b"assignment");
    let mut sync = SyncGroupRequest::default();
    sync.group_id = GroupId(StrBytes::from_static_str(GROUP));
    sync.generation_id = generation_id;
    sync.member_id = StrBytes::from_string(member_id.clone());
    sync.assignments = vec![assignment];
    let synced: SyncGroupResponse = shard.call(ApiKey::SyncGroup, 3, &sync);
    assert_eq!(synced.error_code, 0);
    assert_eq!(synced.assignment, Bytes::from_static(b"assignment"));

    // Heartbeats within the session keep the member.
    for _ in 0..3 {
        shard.simulation.advance(Duration::from_millis(3_000));
        assert_eq!(heartbeat(&mut shard, &member_id, generation_id), 0);
    }
    // Silence past the session timeout removes it.
    shard
        .simulation
        .advance(Duration::from_millis(SESSION_TIMEOUT_MS as u64 + 1));
    assert_eq!(
        heartbeat(&mut shard, &member_id, generation_id),
        ResponseError::UnknownMemberId.code()
    );
}
