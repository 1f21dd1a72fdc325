//! InitProducerId (key 22), versions 0–5, for idempotent producers.
//!
//! Without a transactional id: a fresh producer id (from the control plane's persistent counter) with
//! epoch 0. With a known producer id and epoch (KIP-360, v3+, sent after an UNKNOWN_PRODUCER_ID or a
//! sequence error), the same id with the epoch bumped — or a new id once the epoch would overflow.
//! Transactional ids are refused until the transaction coordinator exists.

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
        |state, request: InitProducerIdRequest, _version| async move {
            let mut response = InitProducerIdResponse::default();
            response.producer_id = ProducerId(-1);
            response.producer_epoch = -1;
            if request.transactional_id.is_some() {
                tracing::warn!(transactional_id = ?request.transactional_id, "transactions are not supported yet");
                response.error_code = ResponseError::TransactionalIdAuthorizationFailed.code();
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
