//! The transaction coordinator's part of the cross-shard protocol: what [`ShardMessage::Txn`] carries,
//! as plain data (owned, `Send`).
//!
//! - [`TxnRequest::Coordinator`] goes to the shard that owns the transactional id's coordinator partition
//!   (the partition of `__transaction_state` the id hashes to, [`super::partition_for`]) and names that
//!   partition; that shard answers [`TxnResponse::Coordinator`] with the [`TxnAnswer`] of the same name as
//!   the [`TxnOperation`], or NOT_COORDINATOR (the partition is not open there) or
//!   COORDINATOR_LOAD_IN_PROGRESS (it is still replaying).
//! - [`TxnRequest::List`] goes to every shard; each answers [`TxnResponse::List`] with the transactions of
//!   its coordinator partitions that pass the filters.
//!
//! The sending and serving sides are in `txn_router.rs`.
//!
//! [`ShardMessage::Txn`]: crate::messages::ShardMessage::Txn

use super::state::TxnPartition;
use kafka_protocol::error::ResponseError;

/// A transaction request to one shard.
#[derive(Debug)]
pub enum TxnRequest {
    Coordinator {
        partition: i32,
        operation: Box<TxnOperation>,
    },
    /// The receiving shard's share of ListTransactions.
    List(ListFilters),
}

/// The answer to a [`TxnRequest`], of the variant of the same name.
#[derive(Debug)]
pub enum TxnResponse {
    /// Err: the coordinator partition cannot serve (NOT_COORDINATOR, COORDINATOR_LOAD_IN_PROGRESS).
    Coordinator(Result<TxnAnswer, ResponseError>),
    /// Err: a coordinator partition of the shard is still loading.
    List(Result<Vec<ListedTransaction>, ResponseError>),
}

/// One operation on one transactional id, served by its coordinator partition.
#[derive(Debug)]
pub enum TxnOperation {
    /// InitProducerId with a transactional id; `expected`: the producer id and epoch the producer holds
    /// (KIP-360, v3+), when it sent them.
    InitProducerId {
        transactional_id: String,
        timeout_ms: i32,
        expected: Option<(i64, i16)>,
    },
    /// AddPartitionsToTxn (and AddOffsetsToTxn, with the group's offsets partition).
    AddPartitions {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<TxnPartition>,
    },
    /// AddPartitionsToTxn v4+ `verify_only` (KIP-890): whether the partitions are in the transaction.
    VerifyPartitions {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        partitions: Vec<TxnPartition>,
    },
    EndTxn {
        transactional_id: String,
        producer_id: i64,
        producer_epoch: i16,
        commit: bool,
    },
    Describe {
        transactional_id: String,
    },
}

impl TxnOperation {
    /// The transactional id the operation is on: it decides the coordinator partition.
    pub fn transactional_id(&self) -> &str {
        match self {
            TxnOperation::InitProducerId {
                transactional_id, ..
            }
            | TxnOperation::AddPartitions {
                transactional_id, ..
            }
            | TxnOperation::VerifyPartitions {
                transactional_id, ..
            }
            | TxnOperation::EndTxn {
                transactional_id, ..
            }
            | TxnOperation::Describe { transactional_id } => transactional_id,
        }
    }
}

/// A coordinator partition's answer to a [`TxnOperation`], of the variant of the same name.
#[derive(Debug, PartialEq)]
pub enum TxnAnswer {
    /// The producer id and epoch to use.
    InitProducerId(Result<(i64, i16), ResponseError>),
    /// One error for all the partitions.
    AddPartitions(Result<(), ResponseError>),
    /// Err: one error for all; else each partition's (None: in the transaction), in request order.
    VerifyPartitions(Result<Vec<Option<ResponseError>>, ResponseError>),
    EndTxn(Result<(), ResponseError>),
    Describe(Result<DescribedTransaction, ResponseError>),
}

impl TxnAnswer {
    /// The operation's name, for logs.
    pub fn name(&self) -> &'static str {
        match self {
            TxnAnswer::InitProducerId(_) => "InitProducerId",
            TxnAnswer::AddPartitions(_) => "AddPartitions",
            TxnAnswer::VerifyPartitions(_) => "VerifyPartitions",
            TxnAnswer::EndTxn(_) => "EndTxn",
            TxnAnswer::Describe(_) => "Describe",
        }
    }
}

/// DescribeTransactions' view of one transactional id.
#[derive(Clone, Debug, PartialEq)]
pub struct DescribedTransaction {
    pub state: &'static str,
    pub timeout_ms: i32,
    pub start_timestamp_ms: i64,
    pub producer_id: i64,
    pub producer_epoch: i16,
    pub partitions: Vec<TxnPartition>,
}

/// ListTransactions' filters (empty: no filter).
#[derive(Clone, Debug, Default)]
pub struct ListFilters {
    pub states: Vec<super::state::TransactionState>,
    pub producer_ids: Vec<i64>,
    /// Only transactions running longer than this (v1; negative: no filter).
    pub duration_ms: i64,
}

/// ListTransactions' view of one transactional id.
#[derive(Clone, Debug, PartialEq)]
pub struct ListedTransaction {
    pub transactional_id: String,
    pub producer_id: i64,
    pub state: &'static str,
}
