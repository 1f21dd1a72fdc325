//! Heartbeat (key 12), versions 0–4.
//!
//! Keeps a member's session alive; REBALANCE_IN_PROGRESS tells it to rejoin. v3+ carries the instance id.

use super::simple;
use crate::group::protocol::MemberIdentity;
use crate::group_router;
use crate::shard_state::ShardState;
use kafka_protocol::messages::{HeartbeatRequest, HeartbeatResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 4);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: HeartbeatRequest, _version| async move {
            let member = MemberIdentity {
                member_id: request.member_id.to_string(),
                instance_id: request.group_instance_id.map(|id| id.to_string()),
                generation: request.generation_id,
            };
            let error = group_router::heartbeat(&state, request.group_id.to_string(), member)
                .await
                .unwrap_or_else(Some);
            let mut response = HeartbeatResponse::default();
            response.error_code = error.map_or(0, |code| code.code());
            response
        },
    )
}
