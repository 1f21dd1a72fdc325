//! FindCoordinator (key 10), versions 0–6.
//!
//! Groups (key type 0): the broker leading the group's `__consumer_offsets` partition (the topic is
//! created here on first use, as Kafka does). Transactions (key type 1): the broker leading the
//! transactional id's `__transaction_state` partition (created likewise). A partition without a live
//! leader answers COORDINATOR_NOT_AVAILABLE. Any other key type: INVALID_REQUEST. v4+ batches several keys into `coordinators`; v0–3 carry one key.

use super::{simple, str_bytes};
use crate::group_router::ensure_offsets_topic;
use crate::internal_topics::{OFFSETS_TOPIC, TRANSACTION_STATE_TOPIC};
use crate::metadata::{BrokerEndpoint, ClusterMetadata};
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
            let metadata = state.metadata();
            let coordinators: Vec<Coordinator> = keys
                .into_iter()
                .map(|key| {
                    let mut coordinator = Coordinator::default();
                    let located = outcome.and_then(|()| {
                        coordinator_of(&state, &metadata, request.key_type, key.as_str())
                    });
                    coordinator.key = key;
                    match located {
                        Ok(broker) => {
                            coordinator.node_id = BrokerId(broker.node_id);
                            coordinator.host = str_bytes(broker.host);
                            coordinator.port = broker.port as i32;
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

/// The broker leading the internal partition that coordinates `key`: COORDINATOR_NOT_AVAILABLE (which
/// clients retry) while it has no live leader.
fn coordinator_of(
    state: &ShardState,
    metadata: &ClusterMetadata,
    key_type: i8,
    key: &str,
) -> Result<BrokerEndpoint, (ResponseError, &'static str)> {
    let unavailable = (
        ResponseError::CoordinatorNotAvailable,
        "the coordinator's partition has no leader now",
    );
    let (topic, partition_of): (&str, fn(&str, i32) -> i32) = if key_type == GROUP {
        (OFFSETS_TOPIC, crate::group::partition_for)
    } else {
        (TRANSACTION_STATE_TOPIC, crate::txn::partition_for)
    };
    let topic = metadata.topics.get(topic).ok_or(unavailable)?;
    let partition = partition_of(key, topic.partition_count());
    let leader = topic
        .partition_state(partition, state.config.node_id)
        .ok_or(unavailable)?
        .leader;
    metadata
        .listed_brokers(&state.config)
        .into_iter()
        .find(|broker| broker.node_id == leader)
        .ok_or(unavailable)
}
