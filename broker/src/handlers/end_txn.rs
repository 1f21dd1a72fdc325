//! EndTxn (key 26), versions 0–4.
//!
//! Commits or aborts the producer's transaction at its transactional id's coordinator: PrepareCommit or
//! PrepareAbort is written and answered; the markers and the completion follow (requests for the id get
//! CONCURRENT_TRANSACTIONS meanwhile). v5 (KIP-890 part 2, a new epoch per transaction) is not offered.
//! Before v2 (KIP-588) PRODUCER_FENCED is answered as INVALID_PRODUCER_EPOCH.

use super::simple;
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{EndTxnRequest, EndTxnResponse, ProducerId};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 4);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: EndTxnRequest, version| async move {
            let mut response = EndTxnResponse::default();
            response.producer_id = ProducerId(-1);
            response.producer_epoch = -1;
            let transactional_id = request.transactional_id.to_string();
            let result = if transactional_id.is_empty() {
                Err(ResponseError::InvalidRequest)
            } else {
                crate::txn_router::end_transaction(
                    &state,
                    transactional_id,
                    request.producer_id.0,
                    request.producer_epoch,
                    request.committed,
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
