//! WriteTxnMarkers (key 27), version 1 (Kafka 4 removed v0; KIP-896): a transaction coordinator asks
//! the leader of each partition of a transaction to write its COMMIT or ABORT marker (a control batch
//! with the producer id and epoch and the coordinator epoch; see `storage::txn`). Kafka exposes it as
//! an inter-broker API; our own coordinator sends `ShardMessage::WriteTxnMarkers` directly.
//!
//! Each (marker, partition) pair is written on the shard that owns the partition
//! (`PartitionManager::write_markers`, which tells the partition listeners — the group coordinator
//! completes transactional offset commits on `__consumer_offsets`), pairs of one shard in request
//! order, and answered once written, with the partition's error: UNKNOWN_TOPIC_OR_PARTITION (not in
//! the metadata), NOT_LEADER_OR_FOLLOWER (its shard does not serve it), or the log's refusal
//! (INVALID_PRODUCER_EPOCH, TRANSACTION_COORDINATOR_FENCED, KAFKA_STORAGE_ERROR …). At most
//! [`MAX_PAIRS`] pairs of a request are written; the rest answer INVALID_REQUEST (hostile input: each
//! pair is a disk write).

use super::simple;
use crate::messages::ShardMessage;
use crate::partition::requests::{MarkerItem, MarkerOutcome};
use crate::scatter_gather::{scatter, LocalAnswer, ShardSplit};
use crate::shard_state::ShardState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::write_txn_markers_response::{
    WritableTxnMarkerPartitionResult, WritableTxnMarkerResult, WritableTxnMarkerTopicResult,
};
use kafka_protocol::messages::{WriteTxnMarkersRequest, WriteTxnMarkersResponse};
use net::{DecodedHeader, DispatchFuture};
use std::rc::Rc;
use storage::TxnMarker;

pub const VERSIONS: (i16, i16) = (1, 1);

/// The most (marker, partition) pairs one request writes.
pub const MAX_PAIRS: usize = 10_000;

pub fn handle(state: Rc<ShardState>, header: DecodedHeader) -> DispatchFuture {
    simple(
        state,
        header,
        |state, request: WriteTxnMarkersRequest, _version| async move {
            write_txn_markers(state, request).await
        },
    )
}

/// Where one (marker, partition) pair of the request is answered.
struct Asked {
    marker_index: usize,
    topic_index: usize,
    partition: i32,
    /// The answer when it is known without asking a shard.
    refused: Option<ResponseError>,
}

async fn write_txn_markers(
    state: Rc<ShardState>,
    request: WriteTxnMarkersRequest,
) -> WriteTxnMarkersResponse {
    let metadata = state.metadata();
    let mut split = ShardSplit::new();
    let mut asked: Vec<Asked> = Vec::new();
    for (marker_index, marker) in request.markers.iter().enumerate() {
        let txn_marker = TxnMarker {
            producer_id: marker.producer_id.0,
            producer_epoch: marker.producer_epoch,
            coordinator_epoch: marker.coordinator_epoch,
            commit: marker.transaction_result,
        };
        for (topic_index, topic) in marker.topics.iter().enumerate() {
            let name = topic.name.to_string();
            for &partition in &topic.partition_indexes {
                let refused = if asked.len() >= MAX_PAIRS {
                    Some(ResponseError::InvalidRequest)
                } else {
                    match metadata.route(&name, partition) {
                        Err(why) => Some(why.error()),
                        Ok(shard) => {
                            split.push(
                                shard,
                                MarkerItem {
                                    topic: name.clone(),
                                    partition,
                                    marker: txn_marker,
                                },
                            );
                            None
                        }
                    }
                };
                if refused.is_some() {
                    split.skip();
                }
                asked.push(Asked {
                    marker_index,
                    topic_index,
                    partition,
                    refused,
                });
            }
        }
    }
    let local_state = state.clone();
    let answers = scatter(
        &state,
        split,
        |items| async move {
            LocalAnswer::later(async move { local_state.partitions.write_markers(items).await })
        },
        |items, reply| ShardMessage::WriteTxnMarkers { items, reply },
    )
    .await
    .all(Err)
    .await;
    let mut markers: Vec<WritableTxnMarkerResult> = request
        .markers
        .iter()
        .map(|marker| {
            let mut result = WritableTxnMarkerResult::default();
            result.producer_id = marker.producer_id;
            result.topics = marker
                .topics
                .iter()
                .map(|topic| {
                    let mut topic_result = WritableTxnMarkerTopicResult::default();
                    topic_result.name = topic.name.clone();
                    topic_result
                })
                .collect();
            result
        })
        .collect();
    for (pair, answer) in asked.into_iter().zip(answers) {
        let outcome: MarkerOutcome = match pair.refused {
            Some(code) => Err(code),
            None => answer.unwrap_or(Err(ResponseError::NotLeaderOrFollower)),
        };
        let mut result = WritableTxnMarkerPartitionResult::default();
        result.partition_index = pair.partition;
        result.error_code = outcome.err().map_or(0, |code| code.code());
        markers[pair.marker_index].topics[pair.topic_index]
            .partitions
            .push(result);
    }
    let mut response = WriteTxnMarkersResponse::default();
    response.markers = markers;
    response
}
