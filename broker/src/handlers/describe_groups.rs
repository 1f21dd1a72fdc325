//! DescribeGroups (key 15), versions 0–5.
//!
//! Each group from its coordinator: state, protocol type, the chosen protocol and the members (their
//! subscription and assignment only while Stable, as Kafka). An unknown group is reported as "Dead" with
//! no error. v3+ carries authorized operations (not computed: no ACLs yet), v4+ members' instance ids.

use super::simple;
use crate::group_router;
use crate::shard_state::ShardState;
use kafka_protocol::messages::describe_groups_response::DescribedGroup;
use kafka_protocol::messages::{DescribeGroupsRequest, DescribeGroupsResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 5);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: DescribeGroupsRequest, version| async move {
            let mut response = DescribeGroupsResponse::default();
            for group_id in request.groups {
                let mut described = group_router::describe_group(&state, group_id.to_string())
                    .await
                    .unwrap_or_else(|code| {
                        let mut failed = DescribedGroup::default();
                        failed.error_code = code.code();
                        failed
                    });
                described.group_id = group_id;
                if version < 4 {
                    for member in &mut described.members {
                        member.group_instance_id = None;
                    }
                }
                if version < 3 {
                    described.authorized_operations =
                        DescribedGroup::default().authorized_operations;
                }
                response.groups.push(described);
            }
            response
        },
    )
}
