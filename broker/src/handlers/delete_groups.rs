//! DeleteGroups (key 42), versions 0–2.
//!
//! Each group at its coordinator: GROUP_ID_NOT_FOUND if unknown, NON_EMPTY_GROUP while it has members;
//! otherwise its metadata and committed offsets are tombstoned.

use super::simple;
use crate::group_router;
use crate::shard_state::ShardState;
use kafka_protocol::messages::delete_groups_response::DeletableGroupResult;
use kafka_protocol::messages::{DeleteGroupsRequest, DeleteGroupsResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 2);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: DeleteGroupsRequest, _version| async move {
            let mut response = DeleteGroupsResponse::default();
            for group_id in request.groups_names {
                let error = group_router::delete_group(&state, group_id.to_string())
                    .await
                    .unwrap_or_else(Some);
                let mut result = DeletableGroupResult::default();
                result.group_id = group_id;
                result.error_code = error.map_or(0, |code| code.code());
                response.results.push(result);
            }
            response
        },
    )
}
