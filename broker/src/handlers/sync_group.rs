//! SyncGroup (key 14), versions 0–5.
//!
//! The leader sends every member's assignment; the others wait for it. v3+ carries the instance id, v5+
//! the protocol type and name (checked against the group's).

use super::simple;
use crate::group::protocol::MemberIdentity;
use crate::group::state::sync_error;
use crate::group_router;
use crate::shard_state::ShardState;
use kafka_protocol::messages::SyncGroupRequest;
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 5);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: SyncGroupRequest, version| async move {
            let member = MemberIdentity {
                member_id: request.member_id.to_string(),
                instance_id: request.group_instance_id.map(|id| id.to_string()),
                generation: request.generation_id,
            };
            let protocol = (
                request.protocol_type.map(|name| name.to_string()),
                request.protocol_name.map(|name| name.to_string()),
            );
            let assignments = request
                .assignments
                .into_iter()
                .map(|entry| (entry.member_id.to_string(), entry.assignment))
                .collect();
            let group_id = request.group_id.to_string();
            let mut response =
                group_router::sync_group(&state, group_id, member, protocol, assignments)
                    .await
                    .unwrap_or_else(sync_error);
            if version < 5 {
                response.protocol_type = None;
                response.protocol_name = None;
            }
            response
        },
    )
}
