//! Transactions across brokers: what the transaction router asks of another broker (`inter_broker`).
//!
//! - **Markers** for partitions led by another broker go to that broker as WriteTxnMarkers v1, one
//!   marker per partition, answered per partition. A broker that cannot be reached, does not answer in
//!   time, or does not know the partition yet, answers NOT_LEADER_OR_FOLLOWER for each: the coordinator writes markers again until they
//!   are written (`txn::coordinator::completion`), as Kafka's marker channel does.
//! - **Verification** of a transactional produce whose coordinator is another broker goes to it as
//!   AddPartitionsToTxn v4 with `verify_only` (KIP-890's inter-broker form). One that cannot be asked
//!   answers COORDINATOR_NOT_AVAILABLE, which the produce path turns into a retriable error.

use crate::inter_broker::{self, CallError};
use crate::log_limit::LogLimiter;
use crate::metadata::ClusterMetadata;
use crate::partition::requests::{MarkerItem, MarkerOutcome};
use crate::txn::state::TxnPartition;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::add_partitions_to_txn_request::{
    AddPartitionsToTxnTopic, AddPartitionsToTxnTransaction,
};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    AddPartitionsToTxnRequest, AddPartitionsToTxnResponse, ApiKey, ProducerId, TopicName,
    TransactionalId, WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use std::time::Duration;
use storage::types::Offset;

const WRITE_TXN_MARKERS_VERSION: i16 = 1;
const ADD_PARTITIONS_TO_TXN_VERSION: i16 = 4;

static UNREACHABLE: LogLimiter = LogLimiter::new(Duration::from_secs(10), 3);

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

/// The error an answer's code stands for (None: success).
fn error_of(code: i16) -> Option<ResponseError> {
    ResponseError::try_from_code(code)
}

/// Writes `items` (partitions led by broker `leader`) through that broker; an outcome per item, in
/// order.
pub async fn write_markers(
    metadata: &ClusterMetadata,
    leader: i32,
    items: Vec<MarkerItem>,
) -> Vec<MarkerOutcome> {
    let count = items.len();
    let Some(broker) = metadata.broker(leader) else {
        return vec![Err(ResponseError::NotLeaderOrFollower); count];
    };
    let mut request = WriteTxnMarkersRequest::default();
    request.markers = items
        .iter()
        .map(|item| {
            let mut topic = WritableTxnMarkerTopic::default();
            topic.name = topic_name(&item.topic);
            topic.partition_indexes = vec![item.partition];
            let mut marker = WritableTxnMarker::default();
            marker.producer_id = ProducerId(item.marker.producer_id);
            marker.producer_epoch = item.marker.producer_epoch;
            marker.transaction_result = item.marker.commit;
            marker.coordinator_epoch = item.marker.coordinator_epoch;
            marker.topics = vec![topic];
            marker
        })
        .collect();
    let answer: Result<WriteTxnMarkersResponse, CallError> = inter_broker::call(
        broker,
        ApiKey::WriteTxnMarkers,
        WRITE_TXN_MARKERS_VERSION,
        &request,
    )
    .await;
    let response = match answer {
        Ok(response) => response,
        Err(error) => {
            crate::warn_limited!(UNREACHABLE, %error, "transaction markers not sent to the partitions' leader; retrying");
            return vec![Err(ResponseError::NotLeaderOrFollower); count];
        }
    };
    // One marker per item, answered in order; anything missing is retried.
    (0..count)
        .map(|position| {
            let code = response
                .markers
                .get(position)
                .and_then(|marker| marker.topics.first())
                .and_then(|topic| topic.partitions.first())
                .map(|partition| partition.error_code);
            match code.map(error_of) {
                Some(None) => Ok(Offset::NONE),
                // This broker's metadata has the partition, led there: "unknown" means that broker has
                // not caught up yet (as a shard that has not opened it), so the marker is written again.
                Some(Some(ResponseError::UnknownTopicOrPartition)) | None => {
                    Err(ResponseError::NotLeaderOrFollower)
                }
                Some(Some(error)) => Err(error),
            }
        })
        .collect()
}

/// Asks the coordinator on broker `coordinator` whether `partitions` were added to the transaction of
/// `transactional_id` (producer `producer_id`, `producer_epoch`): an answer per partition, in order
/// (None: added), or one error for all.
pub async fn verify_partitions(
    metadata: &ClusterMetadata,
    coordinator: i32,
    transactional_id: String,
    producer_id: i64,
    producer_epoch: i16,
    partitions: Vec<TxnPartition>,
) -> Result<Vec<Option<ResponseError>>, ResponseError> {
    let broker = metadata
        .broker(coordinator)
        .ok_or(ResponseError::CoordinatorNotAvailable)?;
    let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for (topic, partition) in &partitions {
        by_topic.entry(topic).or_default().push(*partition);
    }
    let mut transaction = AddPartitionsToTxnTransaction::default();
    transaction.transactional_id = TransactionalId(StrBytes::from_string(transactional_id.clone()));
    transaction.producer_id = ProducerId(producer_id);
    transaction.producer_epoch = producer_epoch;
    transaction.verify_only = true;
    transaction.topics = by_topic
        .into_iter()
        .map(|(name, partitions)| {
            let mut topic = AddPartitionsToTxnTopic::default();
            topic.name = topic_name(name);
            topic.partitions = partitions;
            topic
        })
        .collect();
    let mut request = AddPartitionsToTxnRequest::default();
    request.transactions = vec![transaction];
    let response: AddPartitionsToTxnResponse = inter_broker::call(
        broker,
        ApiKey::AddPartitionsToTxn,
        ADD_PARTITIONS_TO_TXN_VERSION,
        &request,
    )
    .await
    .map_err(|error| {
        crate::warn_limited!(UNREACHABLE, %error, "transaction verification: the coordinator's broker not reached");
        ResponseError::CoordinatorNotAvailable
    })?;
    if let Some(error) = error_of(response.error_code) {
        return Err(error);
    }
    let mut answers: BTreeMap<(String, i32), Option<ResponseError>> = BTreeMap::new();
    for result in &response.results_by_transaction {
        for topic in &result.topic_results {
            for partition in &topic.results_by_partition {
                answers.insert(
                    (topic.name.to_string(), partition.partition_index),
                    error_of(partition.partition_error_code),
                );
            }
        }
    }
    Ok(partitions
        .into_iter()
        .map(|asked| {
            answers
                .get(&asked)
                .copied()
                .unwrap_or(Some(ResponseError::CoordinatorNotAvailable))
        })
        .collect())
}
