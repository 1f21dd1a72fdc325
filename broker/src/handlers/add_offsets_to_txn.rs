//! AddOffsetsToTxn (key 25), versions 0–4.
//!
//! Adds the group's `__consumer_offsets` partition (the group's coordinator partition,
//! `group::partition_for`) to the transaction, at the transactional id's coordinator, so the
//! transaction's offset commits are ended by its markers. Before v2 (KIP-588) PRODUCER_FENCED is
//! answered as INVALID_PRODUCER_EPOCH.

use super::simple;
use crate::group::{partition_for, OFFSETS_TOPIC};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{AddOffsetsToTxnRequest, AddOffsetsToTxnResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 4);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: AddOffsetsToTxnRequest, version| async move {
            let mut response = AddOffsetsToTxnResponse::default();
            let transactional_id = request.transactional_id.to_string();
            let result = if transactional_id.is_empty() {
                Err(ResponseError::InvalidRequest)
            } else {
                let offsets_partitions = state
                    .metadata()
                    .topics
                    .get(OFFSETS_TOPIC)
                    .map_or(state.config.groups.offsets_topic_partitions, |topic| {
                        topic.partition_count()
                    });
                let partition = partition_for(&request.group_id.to_string(), offsets_partitions);
                crate::txn_router::add_partitions(
                    &state,
                    transactional_id,
                    request.producer_id.0,
                    request.producer_epoch,
                    vec![(OFFSETS_TOPIC.to_string(), partition)],
                )
                .await
            };
            response.error_code = match result {
                Ok(()) => 0,
                Err(ResponseError::ProducerFenced) if version < 2 => {
                    ResponseError::InvalidProducerEpoch.code()
                }
                Err(code) => code.code(),
            };
            response
        },
    )
}
