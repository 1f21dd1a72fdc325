//! DescribeTransactions (key 65), version 0.
//!
//! Each transactional id at its coordinator: its state (Kafka's names), timeout, start time, producer id
//! and epoch, and the partitions of its transaction; TRANSACTIONAL_ID_NOT_FOUND for an unknown id,
//! INVALID_REQUEST for an empty one, and the coordinator errors (NOT_COORDINATOR,
//! COORDINATOR_LOAD_IN_PROGRESS, COORDINATOR_NOT_AVAILABLE) per id.

use super::{simple, topic_name};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_transactions_response::{TopicData, TransactionState};
use kafka_protocol::messages::{
    DescribeTransactionsRequest, DescribeTransactionsResponse, ProducerId,
};
use net::{DecodedHeader, DispatchFuture};
use std::collections::BTreeMap;
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 0);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: DescribeTransactionsRequest, _version| async move {
            let mut response = DescribeTransactionsResponse::default();
            for transactional_id in request.transactional_ids {
                let mut described = TransactionState::default();
                described.producer_id = ProducerId(-1);
                described.producer_epoch = -1;
                described.transaction_start_time_ms = -1;
                let result = if transactional_id.is_empty() {
                    Err(ResponseError::InvalidRequest)
                } else {
                    crate::txn_router::describe(&state, transactional_id.to_string()).await
                };
                described.transactional_id = transactional_id;
                match result {
                    Ok(transaction) => {
                        described.transaction_state = super::str_bytes(transaction.state);
                        described.transaction_timeout_ms = transaction.timeout_ms;
                        described.transaction_start_time_ms = transaction.start_timestamp_ms;
                        described.producer_id = ProducerId(transaction.producer_id);
                        described.producer_epoch = transaction.producer_epoch;
                        let mut topics: BTreeMap<String, Vec<i32>> = BTreeMap::new();
                        for (topic, partition) in transaction.partitions {
                            topics.entry(topic).or_default().push(partition);
                        }
                        for (topic, partitions) in topics {
                            let mut data = TopicData::default();
                            data.topic = topic_name(&topic);
                            data.partitions = partitions;
                            described.topics.push(data);
                        }
                    }
                    Err(code) => described.error_code = code.code(),
                }
                response.transaction_states.push(described);
            }
            response
        },
    )
}
