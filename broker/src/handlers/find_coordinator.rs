//! FindCoordinator (key 10), versions 0–6.
//!
//! Consumer groups and transactions do not exist yet, so every key gets COORDINATOR_NOT_AVAILABLE with a
//! message saying so (v1+). v4+ batches several keys into `coordinators`.

use super::{simple, str_bytes};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 6);

const MESSAGE: &str = "this broker has no group or transaction coordinator yet";

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |_state, request: FindCoordinatorRequest, version| async move {
            let code = ResponseError::CoordinatorNotAvailable.code();
            let mut response = FindCoordinatorResponse::default();
            if version >= 4 {
                response.coordinators = request
                    .coordinator_keys
                    .iter()
                    .map(|key| {
                        let mut coordinator = Coordinator::default();
                        coordinator.key = key.clone();
                        coordinator.node_id = BrokerId(-1);
                        coordinator.port = -1;
                        coordinator.error_code = code;
                        coordinator.error_message = Some(str_bytes(MESSAGE));
                        coordinator
                    })
                    .collect();
            } else {
                response.error_code = code;
                response.error_message = Some(str_bytes(MESSAGE));
                response.node_id = BrokerId(-1);
                response.port = -1;
            }
            tracing::debug!(key = %request.key, "FindCoordinator: no coordinator yet");
            response
        },
    )
}
