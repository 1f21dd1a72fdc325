//! ListGroups (key 16), versions 0–5.
//!
//! Gathers the groups of every shard's coordinator partitions. v4+ filters by state (case-insensitive),
//! v5+ by group type: every group here is a "classic" group. A coordinator partition still loading makes
//! the answer COORDINATOR_LOAD_IN_PROGRESS, as Kafka does.

use super::{simple, str_bytes};
use crate::group_router;
use crate::shard_state::ShardState;
use kafka_protocol::messages::list_groups_response::ListedGroup;
use kafka_protocol::messages::{GroupId, ListGroupsRequest, ListGroupsResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 5);

const GROUP_TYPE: &str = "classic";

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: ListGroupsRequest, version| async move {
            let shards = group_router::list_every_shard(&state).await;
            let states: Vec<String> = request
                .states_filter
                .iter()
                .map(|name| name.to_lowercase())
                .collect();
            let types: Vec<String> = request
                .types_filter
                .iter()
                .map(|name| name.to_lowercase())
                .collect();
            let mut response = ListGroupsResponse::default();
            if !types.is_empty() && !types.iter().any(|name| name == GROUP_TYPE) {
                return response;
            }
            for shard in shards {
                match shard {
                    Ok(groups) => {
                        for (id, protocol_type, group_state) in groups {
                            if !states.is_empty()
                                && !states.contains(&group_state.name().to_lowercase())
                            {
                                continue;
                            }
                            let mut listed = ListedGroup::default();
                            listed.group_id = GroupId(str_bytes(id));
                            listed.protocol_type = str_bytes(protocol_type);
                            if version >= 4 {
                                listed.group_state = str_bytes(group_state.name());
                            }
                            if version >= 5 {
                                listed.group_type = str_bytes(GROUP_TYPE);
                            }
                            response.groups.push(listed);
                        }
                    }
                    Err(code) => response.error_code = code.code(),
                }
            }
            response
                .groups
                .sort_by(|a, b| a.group_id.as_str().cmp(b.group_id.as_str()));
            response
        },
    )
}
