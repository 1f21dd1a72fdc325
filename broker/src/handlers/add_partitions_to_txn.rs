//! AddPartitionsToTxn (key 24), versions 0–5.
//!
//! v0–3 (producers): one transaction's partitions join it at the transactional id's coordinator; every
//! partition gets the coordinator's one error. Partitions of unknown topics (or past a topic's partition
//! count) get UNKNOWN_TOPIC_OR_PARTITION and the rest OPERATION_NOT_ATTEMPTED, without asking the
//! coordinator, as Kafka does. Before v2 (KIP-588) PRODUCER_FENCED is answered as INVALID_PRODUCER_EPOCH.
//!
//! v4–5 (KIP-890, brokers): several transactions, each in `results_by_transaction`; a `verify_only` one
//! changes nothing and answers each partition's standing (none: in the transaction; INVALID_TXN_STATE:
//! not).

use super::{simple, topic_name};
use crate::shard_state::ShardState;
use crate::txn::state::TxnPartition;
use crate::txn_router;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::AddPartitionsToTxnTopic;
use kafka_protocol::messages::add_partitions_to_txn_response::{
    AddPartitionsToTxnPartitionResult, AddPartitionsToTxnResult, AddPartitionsToTxnTopicResult,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, TransactionalId,
};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;

pub const VERSIONS: (i16, i16) = (0, 5);

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: AddPartitionsToTxnRequest, version| async move {
            let mut response = AddPartitionsToTxnResponse::default();
            if version <= 3 {
                let transaction = Transaction {
                    transactional_id: request.v3_and_below_transactional_id,
                    producer_id: request.v3_and_below_producer_id.0,
                    producer_epoch: request.v3_and_below_producer_epoch,
                    verify_only: false,
                    topics: request.v3_and_below_topics,
                };
                response.results_by_topic_v3_and_below =
                    add(&state, transaction, version).await.topic_results;
                return response;
            }
            for transaction in request.transactions {
                let transaction = Transaction {
                    transactional_id: transaction.transactional_id,
                    producer_id: transaction.producer_id.0,
                    producer_epoch: transaction.producer_epoch,
                    verify_only: transaction.verify_only,
                    topics: transaction.topics,
                };
                response
                    .results_by_transaction
                    .push(add(&state, transaction, version).await);
            }
            response
        },
    )
}

struct Transaction {
    transactional_id: TransactionalId,
    producer_id: i64,
    producer_epoch: i16,
    verify_only: bool,
    topics: Vec<AddPartitionsToTxnTopic>,
}

/// One transaction's partitions at its coordinator; the result per partition, in request order.
async fn add(
    state: &Rc<ShardState>,
    transaction: Transaction,
    version: i16,
) -> AddPartitionsToTxnResult {
    let partitions: Vec<TxnPartition> = transaction
        .topics
        .iter()
        .flat_map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| (topic.name.to_string(), *partition))
        })
        .collect();
    let metadata = state.metadata();
    let unknown: Vec<bool> = partitions
        .iter()
        // Partitions anywhere in the cluster: their markers go to their leaders (`txn_remote`).
        .map(|(topic, partition)| !metadata.has_partition(topic, *partition))
        .collect();
    let transactional_id = transaction.transactional_id.to_string();
    let errors: Vec<Option<ResponseError>> = if unknown.iter().any(|&unknown| unknown) {
        unknown
            .iter()
            .map(|&unknown| {
                Some(if unknown {
                    ResponseError::UnknownTopicOrPartition
                } else {
                    ResponseError::OperationNotAttempted
                })
            })
            .collect()
    } else if transactional_id.is_empty() {
        vec![Some(ResponseError::InvalidRequest); partitions.len()]
    } else if transaction.verify_only {
        match txn_router::verify_partitions(
            state,
            transactional_id,
            transaction.producer_id,
            transaction.producer_epoch,
            partitions.clone(),
        )
        .await
        {
            Ok(errors) => errors,
            Err(code) => vec![Some(code); partitions.len()],
        }
    } else {
        let error = txn_router::add_partitions(
            state,
            transactional_id,
            transaction.producer_id,
            transaction.producer_epoch,
            partitions.clone(),
        )
        .await
        .err()
        .map(|code| match code {
            ResponseError::ProducerFenced if version < 2 => ResponseError::InvalidProducerEpoch,
            code => code,
        });
        vec![error; partitions.len()]
    };
    let mut errors = errors.into_iter();
    let mut result = AddPartitionsToTxnResult::default();
    result.transactional_id = transaction.transactional_id;
    for topic in transaction.topics {
        let mut topic_result = AddPartitionsToTxnTopicResult::default();
        topic_result.name = topic_name(&topic.name);
        for partition in topic.partitions {
            let mut partition_result = AddPartitionsToTxnPartitionResult::default();
            partition_result.partition_index = partition;
            partition_result.partition_error_code =
                errors.next().flatten().map_or(0, |code| code.code());
            topic_result.results_by_partition.push(partition_result);
        }
        result.topic_results.push(topic_result);
    }
    result
}
