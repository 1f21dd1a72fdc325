//! Server-side transaction verification of produce (KIP-890 part 1): a transactional batch to a partition
//! where its producer has no open transaction is let in only if the transaction coordinator says the
//! partition was added to the producer's transaction (AddPartitionsToTxn `verify_only`, through the
//! router). This closes the hole where a hanging transaction's late batch (a retry after the transaction
//! ended) would open a transaction nobody ends, holding the last stable offset back forever.
//!
//! Refusals, as Kafka 4.x answers a producer that does not use transaction version 2: INVALID_TXN_STATE
//! (not added), INVALID_PRODUCER_EPOCH (the coordinator says PRODUCER_FENCED), and NOT_ENOUGH_REPLICAS for
//! the coordinator's retriable errors (CONCURRENT_TRANSACTIONS, NOT_COORDINATOR,
//! COORDINATOR_NOT_AVAILABLE, COORDINATOR_LOAD_IN_PROGRESS), which every client retries without a
//! metadata refresh.
//!
//! Produce calls this in its dispatch stage, before any offset is assigned, so pipelined produces of a
//! connection keep their order.

use crate::shard_state::ShardState;
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use std::collections::BTreeMap;
use std::rc::Rc;

/// A partition of a produce request and its record data.
pub struct ProducedPartition<'a> {
    pub topic: String,
    pub partition: i32,
    pub records: &'a Bytes,
}

/// The refusal of each partition that fails verification, by (topic, partition).
pub type Refusals = BTreeMap<(String, i32), (ResponseError, String)>;

/// The producer of a transactional batch in `records` (its first batch): (producer id, epoch).
pub fn transactional_producer(records: &Bytes) -> Option<(i64, i16)> {
    let (_, header) = storage::batch::iter_batches(records).next()?;
    (header.is_transactional() && header.producer_id >= 0)
        .then_some((header.producer_id, header.producer_epoch))
}

/// Whether the partition, if this shard owns it, already has an open transaction of `producer_id`
/// (no need to ask the coordinator). Partitions of other shards are always verified.
fn has_open_transaction(state: &ShardState, topic: &str, partition: i32, producer_id: i64) -> bool {
    state
        .partitions
        .get(topic, partition)
        .is_some_and(|partition| {
            partition
                .log
                .producer_entry(producer_id)
                .is_some_and(|entry| entry.current_txn_first_offset >= 0)
        })
}

/// Verifies the transactional batches of a produce request with `transactional_id`; the partitions to
/// refuse. Batches that are not transactional, and requests without a transactional id, pass.
pub async fn verify(
    state: &Rc<ShardState>,
    transactional_id: Option<&str>,
    partitions: &[ProducedPartition<'_>],
) -> Refusals {
    let mut refusals = Refusals::new();
    // Per producer (id, epoch), the partitions to ask about.
    let mut to_verify: BTreeMap<(i64, i16), Vec<(String, i32)>> = BTreeMap::new();
    for produced in partitions {
        let Some(producer) = transactional_producer(produced.records) else {
            continue;
        };
        if has_open_transaction(state, &produced.topic, produced.partition, producer.0) {
            continue;
        }
        to_verify
            .entry(producer)
            .or_default()
            .push((produced.topic.clone(), produced.partition));
    }
    if to_verify.is_empty() {
        return refusals;
    }
    let Some(transactional_id) = transactional_id.filter(|id| !id.is_empty()) else {
        for asked in to_verify.into_values().flatten() {
            refusals.insert(
                asked,
                (
                    ResponseError::InvalidTxnState,
                    "a transactional batch needs the request's transactional id".into(),
                ),
            );
        }
        return refusals;
    };
    for ((producer_id, epoch), asked) in to_verify {
        let answers = crate::txn_router::verify_partitions(
            state,
            transactional_id.to_string(),
            producer_id,
            epoch,
            asked.clone(),
        )
        .await
        .unwrap_or_else(|code| vec![Some(code); asked.len()]);
        for (partition, answer) in asked.into_iter().zip(answers) {
            if let Some(code) = answer {
                refusals.insert(partition, refusal(code));
            }
        }
    }
    refusals
}

/// The produce error for a coordinator's verification answer.
fn refusal(code: ResponseError) -> (ResponseError, String) {
    match code {
        ResponseError::InvalidTxnState => (
            code,
            "the partition was not added to the transaction".into(),
        ),
        ResponseError::ProducerFenced | ResponseError::InvalidProducerEpoch => (
            ResponseError::InvalidProducerEpoch,
            "the producer was fenced".into(),
        ),
        ResponseError::ConcurrentTransactions
        | ResponseError::NotCoordinator
        | ResponseError::CoordinatorNotAvailable
        | ResponseError::CoordinatorLoadInProgress
        | ResponseError::BrokerNotAvailable => (
            ResponseError::NotEnoughReplicas,
            format!("transaction verification failed ({code:?}); retry"),
        ),
        other => (other, "transaction verification failed".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn coordinator_answers_become_the_errors_producers_expect() {
        assert_eq!(
            refusal(ResponseError::InvalidTxnState).0,
            ResponseError::InvalidTxnState
        );
        assert_eq!(
            refusal(ResponseError::ProducerFenced).0,
            ResponseError::InvalidProducerEpoch
        );
        for retriable in [
            ResponseError::ConcurrentTransactions,
            ResponseError::NotCoordinator,
            ResponseError::CoordinatorLoadInProgress,
            ResponseError::CoordinatorNotAvailable,
        ] {
            assert_eq!(refusal(retriable).0, ResponseError::NotEnoughReplicas);
        }
        assert_eq!(
            refusal(ResponseError::InvalidProducerIdMapping).0,
            ResponseError::InvalidProducerIdMapping
        );
    }

    #[test]
    fn only_transactional_batches_are_verified() {
        assert_eq!(transactional_producer(&Bytes::new()), None);
        assert_eq!(
            transactional_producer(&Bytes::from_static(&[0u8; 10])),
            None
        );
        let marker = storage::TxnMarker {
            producer_id: 7,
            producer_epoch: 2,
            coordinator_epoch: 0,
            commit: true,
        };
        // A control batch is transactional too (clients never send one; the log refuses it).
        let batch = storage::txn::marker_batch(&marker, 0);
        assert_eq!(transactional_producer(&batch), Some((7, 2)));
    }
}
