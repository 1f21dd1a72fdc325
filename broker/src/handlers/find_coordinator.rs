//! FindCoordinator (key 10), versions 0–6.
//!
//! Groups (key type 0): this node, once `__consumer_offsets` exists (created here on first use, as Kafka
//! does). Transactions (key type 1): this node, once `__transaction_state` exists (created here on first
//! use, as Kafka does). Any other key type: INVALID_REQUEST. v4+ batches several keys into `coordinators`; v0–3 carry one key.

use super::{simple, str_bytes};
use crate::group_router::ensure_offsets_topic;
use crate::shard_state::ShardState;
use crate::txn_router::ensure_transaction_topic;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::find_coordinator_response::Coordinator;
use kafka_protocol::messages::{BrokerId, FindCoordinatorRequest, FindCoordinatorResponse};
use kafka_protocol::protocol::StrBytes;
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 6);

const GROUP: i8 = 0;
const TRANSACTION: i8 = 1;

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: FindCoordinatorRequest, version| async move {
            let keys: Vec<StrBytes> = if version >= 4 {
                request.coordinator_keys.clone()
            } else {
                vec![request.key.clone()]
            };
            let outcome: Result<(), (ResponseError, &str)> = match request.key_type {
                GROUP => ensure_offsets_topic(&state)
                    .await
                    .map_err(|code| (code, "the offsets topic is not available yet")),
                TRANSACTION => ensure_transaction_topic(&state)
                    .await
                    .map_err(|code| (code, "the transaction state topic is not available yet")),
                _ => Err((
                    ResponseError::InvalidRequest,
                    "unknown coordinator key type",
                )),
            };
            let config = &state.config;
            let coordinators: Vec<Coordinator> = keys
                .into_iter()
                .map(|key| {
                    let mut coordinator = Coordinator::default();
                    coordinator.key = key;
                    match outcome {
                        Ok(()) => {
                            coordinator.node_id = BrokerId(config.node_id);
                            coordinator.host = str_bytes(config.advertise_host.clone());
                            coordinator.port = config.advertise_port as i32;
                        }
                        Err((code, message)) => {
                            coordinator.node_id = BrokerId(-1);
                            coordinator.port = -1;
                            coordinator.error_code = code.code();
                            coordinator.error_message = Some(str_bytes(message));
                        }
                    }
                    coordinator
                })
                .collect();
            let mut response = FindCoordinatorResponse::default();
            if version >= 4 {
                response.coordinators = coordinators;
            } else if let Some(only) = coordinators.into_iter().next() {
                response.error_code = only.error_code;
                response.error_message = only.error_message;
                response.node_id = only.node_id;
                response.host = only.host;
                response.port = only.port;
            }
            response
        },
    )
}
