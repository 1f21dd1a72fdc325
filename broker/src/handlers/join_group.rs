//! JoinGroup (key 11), versions 0–9.
//!
//! v0 has no rebalance timeout (the session timeout stands in); v4+ asks a new member to rejoin with the
//! id it is given (KIP-394, MEMBER_ID_REQUIRED); v5+ carries `group.instance.id` (static membership,
//! KIP-345); v7+ returns the protocol type; v9 tells a rejoining static leader to skip the assignment
//! (KIP-814). The response is parked until the join phase of the rebalance ends.

use super::{close, decode, encode, respond_later, str_bytes};
use crate::group::state::{join_error, JoinParams};
use crate::group_router;
use crate::shard_state::ShardState;
use kafka_protocol::messages::{JoinGroupRequest, JoinGroupResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;
use std::time::Duration;

pub const VERSIONS: (i16, i16) = (0, 9);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    let request: JoinGroupRequest = match decode(&header) {
        Ok(request) => request,
        Err(_) => return close(),
    };
    let version = header.api_version;
    respond_later(async move {
        let group_id = request.group_id.to_string();
        let member_id = request.member_id.to_string();
        let rebalance_timeout_ms = if version >= 1 {
            request.rebalance_timeout_ms
        } else {
            request.session_timeout_ms
        };
        let params = JoinParams {
            member_id: member_id.clone(),
            instance_id: request.group_instance_id.map(|id| id.to_string()),
            client_id: header.client_id.clone().unwrap_or_default(),
            client_host: header
                .client_host
                .map(|host| format!("/{host}"))
                .unwrap_or_default(),
            session_timeout: Duration::from_millis(request.session_timeout_ms.max(0) as u64),
            rebalance_timeout: Duration::from_millis(rebalance_timeout_ms.max(0) as u64),
            protocol_type: request.protocol_type.to_string(),
            protocols: request
                .protocols
                .into_iter()
                .map(|protocol| (protocol.name.to_string(), protocol.metadata))
                .collect(),
            require_known_member_id: version >= 4,
        };
        let mut response = group_router::join_group(&state, group_id, params, version)
            .await
            .unwrap_or_else(|code| join_error(code, &member_id));
        fit_to_version(&mut response, version);
        encode(&header, &response)
    })
}

/// Fields older versions cannot carry.
fn fit_to_version(response: &mut JoinGroupResponse, version: i16) {
    if version < 7 && response.protocol_name.is_none() {
        response.protocol_name = Some(str_bytes(""));
    }
    if version < 9 {
        response.skip_assignment = false;
    }
    if version < 5 {
        for member in &mut response.members {
            member.group_instance_id = None;
        }
    }
}
