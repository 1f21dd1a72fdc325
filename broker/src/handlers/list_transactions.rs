//! ListTransactions (key 66), versions 0–1.
//!
//! Gathers the transactional ids of every shard's coordinator partitions, filtered by state (Kafka's
//! names; unknown ones are echoed in `unknown_state_filters`), by producer id, and (v1) by running longer
//! than `duration_filter` ms. A coordinator partition still loading makes the answer
//! COORDINATOR_LOAD_IN_PROGRESS.

use super::simple;
use crate::shard_state::ShardState;
use crate::txn::protocol::ListFilters;
use crate::txn::state::TransactionState;
use kafka_protocol::messages::list_transactions_response::TransactionState as ListedState;
use kafka_protocol::messages::{
    ListTransactionsRequest, ListTransactionsResponse, ProducerId, TransactionalId,
};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 1);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: ListTransactionsRequest, version| async move {
            let mut response = ListTransactionsResponse::default();
            let mut filters = ListFilters {
                duration_ms: if version >= 1 {
                    request.duration_filter
                } else {
                    -1
                },
                ..ListFilters::default()
            };
            for name in request.state_filters {
                match TransactionState::from_name(&name) {
                    Some(known) => filters.states.push(known),
                    None => response.unknown_state_filters.push(name),
                }
            }
            filters.producer_ids = request
                .producer_id_filters
                .iter()
                .map(|producer_id| producer_id.0)
                .collect();
            for shard in crate::txn_router::list_every_shard(&state, filters).await {
                match shard {
                    Ok(listed) => {
                        for transaction in listed {
                            let mut entry = ListedState::default();
                            entry.transactional_id =
                                TransactionalId(super::str_bytes(transaction.transactional_id));
                            entry.producer_id = ProducerId(transaction.producer_id);
                            entry.transaction_state = super::str_bytes(transaction.state);
                            response.transaction_states.push(entry);
                        }
                    }
                    Err(code) => response.error_code = code.code(),
                }
            }
            response
        },
    )
}
