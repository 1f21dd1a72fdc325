//! The transaction router: routes transaction requests ([`TxnRequest`], `txn/protocol.rs`) to the shard
//! that owns the transactional id's coordinator partition, and serves them there; it is the only part of
//! the transaction coordinator that knows shards. It also creates `__transaction_state` on the first
//! FindCoordinator for a transactional id, and provides the coordinator's services ([`ShardServices`]):
//! producer ids from the control plane and markers written on the partitions' shards.
//!
//! The asking side: [`on_coordinator`] locates the id's coordinator partition and owning shard and maps
//! what can go wrong before a coordinator answers to the errors clients expect:
//! COORDINATOR_NOT_AVAILABLE (no `__transaction_state` yet, or the shard cannot be reached),
//! NOT_COORDINATOR (the partition is not open there), COORDINATOR_LOAD_IN_PROGRESS (still replaying or
//! placed here but not open yet). The serving side: [`serve`], run by the receiving shard (or directly by
//! the asking shard when it is the owner).

use crate::control::{control, internal_topic, topic_outcomes, ControlRequest, ControlResponse};
use crate::messages::ShardMessage;
use crate::metadata::{ClusterMetadata, NotServed};
use crate::partition::requests::{MarkerItem, MarkerOutcome};
use crate::shard_state::ShardState;
use crate::txn::coordinator::CoordinatorPartition;
use crate::txn::protocol::{
    DescribedTransaction, ListFilters, ListedTransaction, TxnAnswer, TxnOperation, TxnRequest,
    TxnResponse,
};
use crate::txn::state::TxnPartition;
use crate::txn::{
    locate, LocalFuture, TransactionCoordinator, TxnServices, TRANSACTION_STATE_TOPIC,
};
use kafka_protocol::error::ResponseError;
use shard::ShardId;
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

/// Sends `request` to shard `to` and waits for its answer; serves it here when `to` is this shard.
async fn exchange(
    state: &Rc<ShardState>,
    to: ShardId,
    request: TxnRequest,
) -> Result<TxnResponse, ResponseError> {
    if to == state.id {
        return Ok(serve(state, request).await);
    }
    let receiver = state
        .send(to, |reply| ShardMessage::Txn { request, reply })
        .await?;
    receiver
        .await
        .map_err(|_| ResponseError::BrokerNotAvailable)
}

/// Runs `operation` on its transactional id's coordinator partition, on the shard that owns it.
pub async fn on_coordinator(
    state: &Rc<ShardState>,
    operation: TxnOperation,
) -> Result<TxnAnswer, ResponseError> {
    let (partition, shard) = locate(&state.metadata(), operation.transactional_id())
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let request = TxnRequest::Coordinator {
        partition,
        operation: Box::new(operation),
    };
    match exchange(state, shard, request).await {
        Ok(TxnResponse::Coordinator(answer)) => answer,
        Ok(TxnResponse::List(_)) => Err(mismatched("a coordinator operation", "List")),
        Err(_) => Err(ResponseError::CoordinatorNotAvailable),
    }
}

/// Each shard's share of ListTransactions, in shard order; a shard that cannot be reached is left out.
pub async fn list_every_shard(
    state: &Rc<ShardState>,
    filters: ListFilters,
) -> Vec<Result<Vec<ListedTransaction>, ResponseError>> {
    let mut results = Vec::with_capacity(state.config.shards);
    for shard in (0..state.config.shards).map(ShardId) {
        match exchange(state, shard, TxnRequest::List(filters.clone())).await {
            Ok(TxnResponse::List(result)) => results.push(result),
            Ok(TxnResponse::Coordinator(_)) => {
                mismatched("List", "a coordinator operation");
            }
            Err(_) => {}
        }
    }
    results
}

/// Serves a transaction request on this shard (the receiving side of [`ShardMessage::Txn`]).
pub async fn serve(state: &ShardState, request: TxnRequest) -> TxnResponse {
    let metadata = state.metadata();
    let placed_here =
        |partition: i32| metadata.shard_of(TRANSACTION_STATE_TOPIC, partition) == Some(state.id.0);
    serve_with(&state.transactions, placed_here, request).await
}

/// [`serve`] over `transactions`, with `placed_here(partition)` telling whether the metadata places a
/// coordinator partition on this shard.
pub async fn serve_with(
    transactions: &TransactionCoordinator,
    placed_here: impl Fn(i32) -> bool,
    request: TxnRequest,
) -> TxnResponse {
    match request {
        TxnRequest::Coordinator {
            partition,
            operation,
        } => {
            let coordinator = match transactions.get(partition) {
                Some(coordinator) if coordinator.is_loaded() => coordinator,
                Some(_) => {
                    return TxnResponse::Coordinator(Err(ResponseError::CoordinatorLoadInProgress))
                }
                None if placed_here(partition) => {
                    return TxnResponse::Coordinator(Err(ResponseError::CoordinatorLoadInProgress))
                }
                None => return TxnResponse::Coordinator(Err(ResponseError::NotCoordinator)),
            };
            TxnResponse::Coordinator(Ok(operate(&coordinator, *operation).await))
        }
        TxnRequest::List(filters) => {
            let coordinators = transactions.all();
            if coordinators
                .iter()
                .any(|coordinator| !coordinator.is_loaded())
            {
                return TxnResponse::List(Err(ResponseError::CoordinatorLoadInProgress));
            }
            let now_ms = shard::task::wall_clock_ms();
            TxnResponse::List(Ok(coordinators
                .iter()
                .flat_map(|coordinator| coordinator.list(&filters, now_ms))
                .collect()))
        }
    }
}

async fn operate(coordinator: &Rc<CoordinatorPartition>, operation: TxnOperation) -> TxnAnswer {
    match operation {
        TxnOperation::InitProducerId {
            transactional_id,
            timeout_ms,
            expected,
        } => TxnAnswer::InitProducerId(
            coordinator
                .init_producer_id(&transactional_id, timeout_ms, expected)
                .await,
        ),
        TxnOperation::AddPartitions {
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
        } => TxnAnswer::AddPartitions(
            coordinator
                .add_partitions(&transactional_id, producer_id, producer_epoch, partitions)
                .await,
        ),
        TxnOperation::VerifyPartitions {
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
        } => TxnAnswer::VerifyPartitions(coordinator.verify_partitions(
            &transactional_id,
            producer_id,
            producer_epoch,
            &partitions,
        )),
        TxnOperation::EndTxn {
            transactional_id,
            producer_id,
            producer_epoch,
            commit,
        } => TxnAnswer::EndTxn(
            coordinator
                .end_transaction(&transactional_id, producer_id, producer_epoch, commit)
                .await,
        ),
        TxnOperation::Describe { transactional_id } => {
            TxnAnswer::Describe(coordinator.describe(&transactional_id))
        }
    }
}

/// An answer of another kind than asked: a bug in `serve`; logged, and the client may retry.
fn mismatched(asked: &'static str, answered: &'static str) -> ResponseError {
    tracing::error!(
        asked,
        answered,
        "a transaction request was answered with another kind of answer"
    );
    ResponseError::CoordinatorNotAvailable
}

/// The answer's payload when it is of `$variant`, else the mismatch error.
macro_rules! expect_answer {
    ($answer:expr, $variant:ident) => {
        match $answer {
            TxnAnswer::$variant(inner) => inner,
            other => Err(mismatched(stringify!($variant), other.name())),
        }
    };
}

// ------------------------------------------------------------------------------------------------------
// One typed call per operation (what the handlers use). Err: the coordinator could not be reached, could
// not serve, or refused (the Kafka error the client gets).

pub async fn init_producer_id(
    state: &Rc<ShardState>,
    transactional_id: String,
    timeout_ms: i32,
    expected: Option<(i64, i16)>,
) -> Result<(i64, i16), ResponseError> {
    let operation = TxnOperation::InitProducerId {
        transactional_id,
        timeout_ms,
        expected,
    };
    expect_answer!(on_coordinator(state, operation).await?, InitProducerId)
}

pub async fn add_partitions(
    state: &Rc<ShardState>,
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<TxnPartition>,
) -> Result<(), ResponseError> {
    let operation = TxnOperation::AddPartitions {
        transactional_id,
        producer_id,
        producer_epoch,
        partitions,
    };
    expect_answer!(on_coordinator(state, operation).await?, AddPartitions)
}

/// Each partition's error (None: in the transaction), in the order of `partitions`.
pub async fn verify_partitions(
    state: &Rc<ShardState>,
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<TxnPartition>,
) -> Result<Vec<Option<ResponseError>>, ResponseError> {
    let metadata = state.metadata();
    if let Some(coordinator) = remote_coordinator(&metadata, &transactional_id) {
        return crate::txn_remote::verify_partitions(
            &metadata,
            coordinator,
            transactional_id,
            producer_id,
            producer_epoch,
            partitions,
        )
        .await;
    }
    let operation = TxnOperation::VerifyPartitions {
        transactional_id,
        producer_id,
        producer_epoch,
        partitions,
    };
    expect_answer!(on_coordinator(state, operation).await?, VerifyPartitions)
}

/// The broker leading the coordinator partition of `transactional_id`, if that is another broker.
fn remote_coordinator(metadata: &ClusterMetadata, transactional_id: &str) -> Option<i32> {
    let topic = metadata.topics.get(TRANSACTION_STATE_TOPIC)?;
    let partition = crate::txn::partition_for(transactional_id, topic.partition_count());
    match metadata.route(TRANSACTION_STATE_TOPIC, partition) {
        Err(NotServed::NotLeader { leader, .. }) if leader >= 0 => Some(leader),
        _ => None,
    }
}

pub async fn end_transaction(
    state: &Rc<ShardState>,
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    commit: bool,
) -> Result<(), ResponseError> {
    let operation = TxnOperation::EndTxn {
        transactional_id,
        producer_id,
        producer_epoch,
        commit,
    };
    expect_answer!(on_coordinator(state, operation).await?, EndTxn)
}

pub async fn describe(
    state: &Rc<ShardState>,
    transactional_id: String,
) -> Result<DescribedTransaction, ResponseError> {
    let operation = TxnOperation::Describe { transactional_id };
    expect_answer!(on_coordinator(state, operation).await?, Describe)
}

/// Creates `__transaction_state` if it does not exist yet (the first FindCoordinator for a
/// transactional id).
pub async fn ensure_transaction_topic(state: &Rc<ShardState>) -> Result<(), ResponseError> {
    if state
        .metadata()
        .topics
        .contains_key(TRANSACTION_STATE_TOPIC)
    {
        return Ok(());
    }
    let Some(topic) = internal_topic(&state.config, TRANSACTION_STATE_TOPIC) else {
        return Err(ResponseError::CoordinatorNotAvailable);
    };
    let request = ControlRequest::CreateTopics {
        topics: vec![topic],
        validate_only: false,
    };
    match topic_outcomes(control(state, request).await, 1).pop() {
        Some(Ok(())) => Ok(()),
        Some(Err((ResponseError::TopicAlreadyExists, _))) => Ok(()),
        Some(Err((code, message))) => {
            tracing::error!(?code, %message, "cannot create {TRANSACTION_STATE_TOPIC}");
            Err(ResponseError::CoordinatorNotAvailable)
        }
        None => Err(ResponseError::CoordinatorNotAvailable),
    }
}

/// Gives the shard's transaction coordinator its services (before its first metadata version is applied).
pub fn install_services(state: &Rc<ShardState>) {
    state.transactions.set_services(Rc::new(ShardServices {
        state: Rc::downgrade(state),
    }));
}

/// The transaction coordinator's services on a shard: producer ids from the control plane, markers to
/// each partition's owning shard (one `WriteTxnMarkers` message per shard; this shard's written here).
pub struct ShardServices {
    pub state: Weak<ShardState>,
}

impl TxnServices for ShardServices {
    fn allocate_producer_id(&self) -> LocalFuture<Result<i64, ResponseError>> {
        let state = self.state.clone();
        Box::pin(async move {
            let state = state.upgrade().ok_or(ResponseError::NotCoordinator)?;
            match control(&state, ControlRequest::AllocateProducerId).await {
                ControlResponse::ProducerId(result) => result,
                ControlResponse::Topics(_) => Err(ResponseError::UnknownServerError),
            }
        })
    }

    fn write_markers(&self, items: Vec<MarkerItem>) -> LocalFuture<Vec<MarkerOutcome>> {
        let state = self.state.clone();
        Box::pin(async move {
            let count = items.len();
            let Some(state) = state.upgrade() else {
                return vec![Err(ResponseError::NotCoordinator); count];
            };
            write_markers(&state, items).await
        })
    }
}

/// Writes markers wherever their partitions live: on this broker's shards, or through the broker that
/// leads them (`txn_remote`). A partition the metadata does not have (its topic was deleted) answers
/// UNKNOWN_TOPIC_OR_PARTITION; one without a leader now, or placed on a shard that has not opened it
/// yet, or whose leader cannot be reached, answers NOT_LEADER_OR_FOLLOWER (retriable).
pub async fn write_markers(state: &Rc<ShardState>, items: Vec<MarkerItem>) -> Vec<MarkerOutcome> {
    let metadata = state.metadata();
    let mut outcomes: Vec<Option<MarkerOutcome>> = (0..items.len()).map(|_| None).collect();
    let mut by_shard: BTreeMap<usize, (Vec<usize>, Vec<MarkerItem>)> = BTreeMap::new();
    let mut by_broker: BTreeMap<i32, (Vec<usize>, Vec<MarkerItem>)> = BTreeMap::new();
    for (position, item) in items.into_iter().enumerate() {
        match metadata.route(&item.topic, item.partition) {
            Ok(shard) => {
                let entry = by_shard.entry(shard).or_default();
                entry.0.push(position);
                entry.1.push(item);
            }
            Err(NotServed::NotLeader { leader, .. }) if leader >= 0 => {
                let entry = by_broker.entry(leader).or_default();
                entry.0.push(position);
                entry.1.push(item);
            }
            // No leader now: NOT_LEADER_OR_FOLLOWER, retried, never taken as written.
            Err(why) => outcomes[position] = Some(Err(why.error())),
        }
    }
    for (leader, (positions, items)) in by_broker {
        let answers = crate::txn_remote::write_markers(&metadata, leader, items).await;
        for (position, answer) in positions.into_iter().zip(answers) {
            outcomes[position] = Some(answer);
        }
    }
    for (shard, (positions, items)) in by_shard {
        let count = items.len();
        let answers = if ShardId(shard) == state.id {
            state.partitions.write_markers(items).await
        } else {
            match state
                .send(ShardId(shard), |reply| ShardMessage::WriteTxnMarkers {
                    items,
                    reply,
                })
                .await
            {
                Ok(receiver) => receiver
                    .await
                    .unwrap_or_else(|_| vec![Err(ResponseError::NotLeaderOrFollower); count]),
                Err(_) => vec![Err(ResponseError::NotLeaderOrFollower); count],
            }
        };
        for (position, answer) in positions.into_iter().zip(answers) {
            // The metadata has the partition: "unknown" means not open there yet.
            outcomes[position] = Some(match answer {
                Err(ResponseError::UnknownTopicOrPartition) => {
                    Err(ResponseError::NotLeaderOrFollower)
                }
                other => other,
            });
        }
    }
    outcomes
        .into_iter()
        .map(|outcome| outcome.unwrap_or(Err(ResponseError::NotLeaderOrFollower)))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures_lite::future::block_on;

    #[test]
    fn a_partition_placed_here_but_not_open_yet_is_loading_else_not_coordinator() {
        let transactions = TransactionCoordinator::new(Default::default());
        let request = || TxnRequest::Coordinator {
            partition: 3,
            operation: Box::new(TxnOperation::Describe {
                transactional_id: "t".into(),
            }),
        };
        match block_on(serve_with(
            &transactions,
            |partition| partition == 3,
            request(),
        )) {
            TxnResponse::Coordinator(Err(code)) => {
                assert_eq!(code, ResponseError::CoordinatorLoadInProgress)
            }
            other => panic!("unexpected answer {other:?}"),
        }
        match block_on(serve_with(&transactions, |_| false, request())) {
            TxnResponse::Coordinator(Err(code)) => assert_eq!(code, ResponseError::NotCoordinator),
            other => panic!("unexpected answer {other:?}"),
        }
        match block_on(serve_with(
            &transactions,
            |_| false,
            TxnRequest::List(ListFilters::default()),
        )) {
            TxnResponse::List(Ok(listed)) => assert!(listed.is_empty()),
            other => panic!("unexpected answer {other:?}"),
        }
    }

    #[test]
    fn an_answer_of_another_operation_is_coordinator_not_available() {
        let taken: Result<(), ResponseError> =
            expect_answer!(TxnAnswer::AddPartitions(Ok(())), EndTxn);
        assert_eq!(taken, Err(ResponseError::CoordinatorNotAvailable));
    }
}
