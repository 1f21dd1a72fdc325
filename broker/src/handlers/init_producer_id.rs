//! InitProducerId (key 22), versions 0–5.
//!
//! Without a transactional id (idempotent producers): a fresh producer id (from the control plane's
//! persistent counter) with epoch 0. With a known producer id and epoch (KIP-360, v3+, sent after an
//! UNKNOWN_PRODUCER_ID or a sequence error), the same id with the epoch bumped — or a new id once the
//! epoch would overflow.
//!
//! With a transactional id: the transaction coordinator of the id (`txn_router`) answers — a new id gets
//! a producer id at epoch 0; a known one its epoch bumped (fencing the previous producer; an ongoing
//! transaction is aborted first and the client gets CONCURRENT_TRANSACTIONS and retries), a new producer
//! id once the epoch is exhausted. An empty transactional id is INVALID_REQUEST; a producer id without an
//! epoch (or the reverse) INVALID_REQUEST; a timeout above `transaction.max.timeout.ms`
//! INVALID_TRANSACTION_TIMEOUT. Before v4 (KIP-588) PRODUCER_FENCED is answered as INVALID_PRODUCER_EPOCH.

use super::simple;
use crate::control::{control, ControlRequest, ControlResponse};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{InitProducerIdRequest, InitProducerIdResponse, ProducerId};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 5);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: InitProducerIdRequest, version| async move {
            let mut response = InitProducerIdResponse::default();
            response.producer_id = ProducerId(-1);
            response.producer_epoch = -1;
            if let Some(transactional_id) = &request.transactional_id {
                let result = transactional(&state, transactional_id.to_string(), &request).await;
                match result {
                    Ok((producer_id, epoch)) => {
                        response.producer_id = ProducerId(producer_id);
                        response.producer_epoch = epoch;
                    }
                    Err(ResponseError::ProducerFenced) if version < 4 => {
                        response.error_code = ResponseError::InvalidProducerEpoch.code()
                    }
                    Err(code) => response.error_code = code.code(),
                }
                return response;
            }
            if request.producer_id.0 >= 0
                && request.producer_epoch >= 0
                && request.producer_epoch < i16::MAX - 1
            {
                response.producer_id = request.producer_id;
                response.producer_epoch = request.producer_epoch + 1;
                return response;
            }
            match control(&state, ControlRequest::AllocateProducerId).await {
                ControlResponse::ProducerId(Ok(id)) => {
                    response.producer_id = ProducerId(id);
                    response.producer_epoch = 0;
                }
                ControlResponse::ProducerId(Err(code)) => response.error_code = code.code(),
                ControlResponse::Topics(_) => {
                    response.error_code = ResponseError::UnknownServerError.code()
                }
            }
            response
        },
    )
}

/// InitProducerId for a transactional id, at its coordinator.
async fn transactional(
    state: &Rc<ShardState>,
    transactional_id: String,
    request: &InitProducerIdRequest,
) -> Result<(i64, i16), ResponseError> {
    if transactional_id.is_empty() {
        return Err(ResponseError::InvalidRequest);
    }
    let (producer_id, epoch) = (request.producer_id.0, request.producer_epoch);
    if (producer_id == -1) != (epoch == -1) {
        return Err(ResponseError::InvalidRequest);
    }
    let expected = (producer_id != -1).then_some((producer_id, epoch));
    crate::txn_router::init_producer_id(
        state,
        transactional_id,
        request.transaction_timeout_ms,
        expected,
    )
    .await
}
