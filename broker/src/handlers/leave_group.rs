//! LeaveGroup (key 13), versions 0–5.
//!
//! v0–2 name one member; v3+ a batch of members, each by member id and/or instance id (KIP-345), each with
//! its own error. A static member named by instance id with another member id is FENCED_INSTANCE_ID.

use super::{simple, str_bytes};
use crate::group_router;
use crate::shard_state::ShardState;
use kafka_protocol::messages::leave_group_response::MemberResponse;
use kafka_protocol::messages::{LeaveGroupRequest, LeaveGroupResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 5);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: LeaveGroupRequest, version| async move {
            let leaving: Vec<(String, Option<String>)> = if version >= 3 {
                request
                    .members
                    .iter()
                    .map(|member| {
                        (
                            member.member_id.to_string(),
                            member.group_instance_id.as_ref().map(|id| id.to_string()),
                        )
                    })
                    .collect()
            } else {
                vec![(request.member_id.to_string(), None)]
            };
            let group_id = request.group_id.to_string();
            let count = leaving.len();
            let mut response = LeaveGroupResponse::default();
            let results = match group_router::leave_group(&state, group_id, leaving.clone()).await {
                Ok(results) => results,
                Err(code) => {
                    response.error_code = code.code();
                    return response;
                }
            };
            debug_assert_eq!(results.len(), count);
            if version >= 3 {
                response.members = leaving
                    .into_iter()
                    .zip(results)
                    .map(|((member_id, instance_id), error)| {
                        let mut entry = MemberResponse::default();
                        entry.member_id = str_bytes(member_id);
                        entry.group_instance_id = instance_id.map(str_bytes);
                        entry.error_code = error.map_or(0, |code| code.code());
                        entry
                    })
                    .collect();
            } else {
                response.error_code = results
                    .first()
                    .copied()
                    .flatten()
                    .map_or(0, |code| code.code());
            }
            response
        },
    )
}
