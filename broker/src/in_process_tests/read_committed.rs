//! The read path of transactions through the handlers: Fetch with read_committed (the last stable
//! offset bound, aborted transactions, the long poll on the last stable offset), ListOffsets with
//! read_committed, DescribeProducers and WriteTxnMarkers.
//!
//! Transactional batches are appended to the partition directly (`Partition::append`), as a producer
//! whose partition is already in its transaction would; the transaction coordinator that puts it
//! there is not part of these tests.
//!
//! Tests marked `needs the storage side of transactions` pin down what a real last stable offset and
//! aborted-transaction index give (open transactions hold the LSO, markers end them).

use super::{decode_response, TestShard};
use crate::control::{control, ControlRequest, NewTopic};
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_producers_request::TopicRequest;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::fetch_response::PartitionData;
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::write_txn_markers_request::{
    WritableTxnMarker, WritableTxnMarkerTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, DescribeProducersRequest, DescribeProducersResponse, FetchRequest,
    FetchResponse, ListOffsetsRequest, ListOffsetsResponse, ProducerId, TopicName,
    WriteTxnMarkersRequest, WriteTxnMarkersResponse,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use std::time::Duration;
use storage::batch::testing::{build_batch, simple_batch, BatchSpec};
use storage::types::Offset;
use storage::TxnMarker;

const TOPIC: &str = "transactional";
const PRODUCER: i64 = 1_000;
const EPOCH: i16 = 0;
const COORDINATOR_EPOCH: i32 = 3;

fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

fn shard_with_topic() -> TestShard {
    let mut shard = TestShard::start(|_| {});
    let state = shard.state.clone();
    let request = ControlRequest::CreateTopics {
        topics: vec![NewTopic {
            name: TOPIC.to_string(),
            partitions: 1,
            configs: BTreeMap::new(),
            replication_factor: None,
            assignments: Vec::new(),
        }],
        validate_only: false,
    };
    let response = shard
        .simulation
        .block_on(async move { control(&state, request).await });
    assert!(crate::control::topic_outcomes(response, 1)[0].is_ok());
    shard
}

/// Appends `batch` to partition 0; its base offset.
fn append(shard: &mut TestShard, batch: Vec<u8>) -> i64 {
    let partition = shard.state.partitions.get(TOPIC, 0).expect("partition 0");
    let appended = shard
        .simulation
        .block_on(async move { partition.append(Bytes::from(batch)).await });
    appended.expect("appended").base_offset.0
}

/// A transactional batch of `records` records of [`PRODUCER`] from `sequence`.
fn transactional_batch(sequence: i32, records: usize) -> Vec<u8> {
    build_batch(&BatchSpec {
        producer_id: PRODUCER,
        producer_epoch: EPOCH,
        base_sequence: sequence,
        timestamp_deltas: vec![0; records],
        transactional: true,
        ..Default::default()
    })
}

fn marker(commit: bool) -> TxnMarker {
    TxnMarker {
        producer_id: PRODUCER,
        producer_epoch: EPOCH,
        coordinator_epoch: COORDINATOR_EPOCH,
        commit,
    }
}

/// Writes a marker through the partition (as the coordinator's `ShardMessage::WriteTxnMarkers` does).
fn write_marker(shard: &mut TestShard, commit: bool) -> i64 {
    let partition = shard.state.partitions.get(TOPIC, 0).expect("partition 0");
    let written = shard
        .simulation
        .block_on(async move { partition.write_marker(marker(commit)).await });
    written.expect("marker written").0
}

fn fetch_request(
    offset: i64,
    isolation_level: i8,
    min_bytes: i32,
    max_wait_ms: i32,
) -> FetchRequest {
    let mut partition = FetchPartition::default();
    partition.partition = 0;
    partition.fetch_offset = offset;
    partition.partition_max_bytes = 1 << 20;
    let mut topic = FetchTopic::default();
    topic.topic = topic_name(TOPIC);
    topic.partitions = vec![partition];
    let mut request = FetchRequest::default();
    request.max_wait_ms = max_wait_ms;
    request.min_bytes = min_bytes;
    request.max_bytes = 50 << 20;
    request.isolation_level = isolation_level;
    request.session_epoch = -1;
    request.topics = vec![topic];
    request
}

fn fetch(shard: &mut TestShard, offset: i64, isolation_level: i8) -> PartitionData {
    let response: FetchResponse = shard.call(
        ApiKey::Fetch,
        12,
        &fetch_request(offset, isolation_level, 0, 0),
    );
    let partition = response.responses[0].partitions[0].clone();
    assert_eq!(partition.error_code, 0);
    partition
}

/// (base offset, is control) of each batch in a fetched partition.
fn batches(partition: &PartitionData) -> Vec<(i64, bool)> {
    let records = partition.records.clone().unwrap_or_default();
    storage::batch::iter_batches(&records)
        .map(|(_, header)| (header.base_offset, header.is_control()))
        .collect()
}

/// (producer id, first offset) of each aborted transaction, None when the field is null.
fn aborted(partition: &PartitionData) -> Option<Vec<(i64, i64)>> {
    partition.aborted_transactions.as_ref().map(|aborted| {
        aborted
            .iter()
            .map(|entry| (entry.producer_id.0, entry.first_offset))
            .collect()
    })
}

const READ_UNCOMMITTED: i8 = 0;
const READ_COMMITTED: i8 = 1;

#[test]
fn read_committed_without_transactions_reads_to_the_high_watermark_with_an_empty_aborted_list() {
    let mut shard = shard_with_topic();
    append(&mut shard, simple_batch(3, 10, 1_000));
    append(&mut shard, simple_batch(2, 10, 2_000));
    let committed = fetch(&mut shard, 0, READ_COMMITTED);
    assert_eq!(batches(&committed), vec![(0, false), (3, false)]);
    assert_eq!(committed.high_watermark, 5);
    assert_eq!(committed.last_stable_offset, 5);
    assert_eq!(aborted(&committed), Some(vec![]), "a list, empty");
    let uncommitted = fetch(&mut shard, 0, READ_UNCOMMITTED);
    assert_eq!(batches(&uncommitted), vec![(0, false), (3, false)]);
    assert_eq!(uncommitted.last_stable_offset, 5);
    assert_eq!(aborted(&uncommitted), None, "null for read_uncommitted");
}

#[test]
fn read_committed_stops_at_an_open_transaction_and_lists_it_once_aborted() {
    let mut shard = shard_with_topic();
    append(&mut shard, simple_batch(3, 10, 1_000));
    let first = append(&mut shard, transactional_batch(0, 2));
    assert_eq!(first, 3);
    append(&mut shard, simple_batch(1, 10, 3_000));

    let uncommitted = fetch(&mut shard, 0, READ_UNCOMMITTED);
    assert_eq!(
        batches(&uncommitted),
        vec![(0, false), (3, false), (5, false)]
    );
    assert_eq!(uncommitted.high_watermark, 6);
    assert_eq!(uncommitted.last_stable_offset, 3);

    let committed = fetch(&mut shard, 0, READ_COMMITTED);
    assert_eq!(
        batches(&committed),
        vec![(0, false)],
        "nothing past the LSO"
    );
    assert_eq!(committed.last_stable_offset, 3);
    assert_eq!(aborted(&committed), Some(vec![]));
    assert!(batches(&fetch(&mut shard, 3, READ_COMMITTED)).is_empty());

    let marker_offset = write_marker(&mut shard, false);
    assert_eq!(marker_offset, 6);
    let committed = fetch(&mut shard, 0, READ_COMMITTED);
    assert_eq!(committed.last_stable_offset, 7);
    assert_eq!(committed.high_watermark, 7);
    assert_eq!(
        batches(&committed),
        vec![(0, false), (3, false), (5, false), (6, true)]
    );
    assert_eq!(aborted(&committed), Some(vec![(PRODUCER, 3)]));
    // A read that ends before the transaction does not list it.
    let mut request = fetch_request(0, READ_COMMITTED, 0, 0);
    request.topics[0].partitions[0].partition_max_bytes = 1;
    let response: FetchResponse = shard.call(ApiKey::Fetch, 12, &request);
    let first_batch_only = &response.responses[0].partitions[0];
    assert_eq!(batches(first_batch_only), vec![(0, false)]);
    assert_eq!(aborted(first_batch_only), Some(vec![]));
}

#[test]
fn a_committed_transaction_is_read_without_an_aborted_entry() {
    let mut shard = shard_with_topic();
    append(&mut shard, transactional_batch(0, 2));
    append(&mut shard, transactional_batch(2, 2));
    assert_eq!(fetch(&mut shard, 0, READ_COMMITTED).last_stable_offset, 0);
    write_marker(&mut shard, true);
    let committed = fetch(&mut shard, 0, READ_COMMITTED);
    assert_eq!(committed.last_stable_offset, 5);
    assert_eq!(batches(&committed), vec![(0, false), (2, false), (4, true)]);
    assert_eq!(aborted(&committed), Some(vec![]));
}

#[test]
fn a_read_committed_long_poll_wakes_when_the_last_stable_offset_moves() {
    let mut shard = shard_with_topic();
    let started = shard.simulation.now();
    let waiting = shard.send(
        ApiKey::Fetch,
        12,
        &fetch_request(0, READ_COMMITTED, 1, 10_000),
    );
    shard.simulation.run_until_stalled();
    shard.simulation.advance(Duration::from_millis(100));
    assert!(!waiting.is_finished(), "waits for data");
    append(&mut shard, simple_batch(2, 10, 1_000));
    shard.simulation.run_until_stalled();
    let frame = waiting
        .take_output()
        .expect("woken by the append")
        .expect("a response");
    assert_eq!(shard.simulation.now() - started, Duration::from_millis(100));
    let response: FetchResponse = decode_response(ApiKey::Fetch, 12, frame);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(batches(partition), vec![(0, false)]);
    assert_eq!(partition.last_stable_offset, 2);
}

#[test]
fn a_read_committed_long_poll_waits_out_an_open_transaction_until_its_marker() {
    let mut shard = shard_with_topic();
    append(&mut shard, transactional_batch(0, 2));
    let started = shard.simulation.now();
    let waiting = shard.send(
        ApiKey::Fetch,
        12,
        &fetch_request(0, READ_COMMITTED, 1, 10_000),
    );
    shard.simulation.run_until_stalled();
    shard.simulation.advance(Duration::from_millis(100));
    // More data of the open transaction moves the high watermark, not the LSO: still waiting.
    append(&mut shard, transactional_batch(2, 1));
    shard.simulation.run_until_stalled();
    shard.simulation.advance(Duration::from_millis(100));
    assert!(!waiting.is_finished(), "held at the open transaction");
    write_marker(&mut shard, true);
    shard.simulation.run_until_stalled();
    let frame = waiting
        .take_output()
        .expect("woken by the marker")
        .expect("a response");
    assert_eq!(shard.simulation.now() - started, Duration::from_millis(200));
    let response: FetchResponse = decode_response(ApiKey::Fetch, 12, frame);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(batches(partition), vec![(0, false), (2, false), (3, true)]);
    assert_eq!(partition.last_stable_offset, 4);
}

/// ListOffsets v7 of partition 0: (offset, timestamp).
fn list_offsets(shard: &mut TestShard, timestamp: i64, isolation_level: i8) -> (i64, i64) {
    let mut partition = ListOffsetsPartition::default();
    partition.partition_index = 0;
    partition.timestamp = timestamp;
    let mut topic = ListOffsetsTopic::default();
    topic.name = topic_name(TOPIC);
    topic.partitions = vec![partition];
    let mut request = ListOffsetsRequest::default();
    request.replica_id = BrokerId(-1);
    request.isolation_level = isolation_level;
    request.topics = vec![topic];
    let response: ListOffsetsResponse = shard.call(ApiKey::ListOffsets, 7, &request);
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    (partition.offset, partition.timestamp)
}

#[test]
fn list_offsets_read_committed_answers_the_last_stable_offset() {
    let mut shard = shard_with_topic();
    append(&mut shard, simple_batch(2, 10, 1_000));
    append(&mut shard, simple_batch(2, 10, 2_000));
    assert_eq!(list_offsets(&mut shard, -1, READ_COMMITTED), (4, -1));
    assert_eq!(list_offsets(&mut shard, -1, READ_UNCOMMITTED), (4, -1));
    assert_eq!(list_offsets(&mut shard, 1_500, READ_COMMITTED), (2, 2_000));
    assert_eq!(list_offsets(&mut shard, -3, READ_COMMITTED), (2, 2_000));
}

#[test]
fn list_offsets_read_committed_stops_at_an_open_transaction() {
    let mut shard = shard_with_topic();
    append(&mut shard, simple_batch(2, 10, 1_000));
    append(&mut shard, transactional_batch(0, 2));
    assert_eq!(list_offsets(&mut shard, -1, READ_COMMITTED), (2, -1));
    assert_eq!(list_offsets(&mut shard, -1, READ_UNCOMMITTED), (4, -1));
    // The transactional records (timestamp 1000, offsets 2..4) are past the LSO.
    assert_eq!(list_offsets(&mut shard, 1_000, READ_COMMITTED), (0, 1_000));
    assert_eq!(list_offsets(&mut shard, -3, READ_COMMITTED), (0, 1_000));
    write_marker(&mut shard, false);
    assert_eq!(list_offsets(&mut shard, -1, READ_COMMITTED), (5, -1));
}

fn describe_producers(
    shard: &mut TestShard,
    topics: &[(&str, Vec<i32>)],
) -> DescribeProducersResponse {
    let mut request = DescribeProducersRequest::default();
    request.topics = topics
        .iter()
        .map(|(name, partitions)| {
            let mut topic = TopicRequest::default();
            topic.name = topic_name(name);
            topic.partition_indexes = partitions.clone();
            topic
        })
        .collect();
    shard.call(ApiKey::DescribeProducers, 0, &request)
}

#[test]
fn describe_producers_lists_each_producer_of_a_partition() {
    let mut shard = shard_with_topic();
    append(&mut shard, storage::batch::testing::idempotent_batch(0, 3));
    append(&mut shard, transactional_batch(0, 2));
    let response = describe_producers(&mut shard, &[(TOPIC, vec![0, 7]), ("missing", vec![0])]);
    assert_eq!(response.topics.len(), 2);
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.partition_index, 0);
    assert_eq!(partition.error_code, 0);
    let producers: Vec<(i64, i32, i32)> = partition
        .active_producers
        .iter()
        .map(|producer| {
            (
                producer.producer_id.0,
                producer.producer_epoch,
                producer.last_sequence,
            )
        })
        .collect();
    assert_eq!(producers, vec![(7, 0, 2), (PRODUCER, 0, 1)]);
    let idempotent = &partition.active_producers[0];
    assert_eq!(idempotent.current_txn_start_offset, -1);
    assert_eq!(idempotent.last_timestamp, 1_000);
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    assert_eq!(response.topics[0].partitions[1].partition_index, 7);
    assert_eq!(response.topics[0].partitions[1].error_code, unknown);
    assert_eq!(response.topics[1].partitions[0].error_code, unknown);
}

#[test]
fn describe_producers_shows_the_open_transaction_and_the_marker_coordinator_epoch() {
    let mut shard = shard_with_topic();
    append(&mut shard, simple_batch(1, 10, 1_000));
    append(&mut shard, transactional_batch(0, 2));
    let open = describe_producers(&mut shard, &[(TOPIC, vec![0])]);
    let producer = open.topics[0].partitions[0].active_producers[0].clone();
    assert_eq!(producer.current_txn_start_offset, 1);
    write_marker(&mut shard, true);
    let ended = describe_producers(&mut shard, &[(TOPIC, vec![0])]);
    let producer = ended.topics[0].partitions[0].active_producers[0].clone();
    assert_eq!(producer.current_txn_start_offset, -1);
    assert_eq!(producer.coordinator_epoch, COORDINATOR_EPOCH);
}

fn marker_request(commit: bool, topics: &[(&str, Vec<i32>)]) -> WriteTxnMarkersRequest {
    let mut marker = WritableTxnMarker::default();
    marker.producer_id = ProducerId(PRODUCER);
    marker.producer_epoch = EPOCH;
    marker.transaction_result = commit;
    marker.coordinator_epoch = COORDINATOR_EPOCH;
    marker.topics = topics
        .iter()
        .map(|(name, partitions)| {
            let mut topic = WritableTxnMarkerTopic::default();
            topic.name = topic_name(name);
            topic.partition_indexes = partitions.clone();
            topic
        })
        .collect();
    let mut request = WriteTxnMarkersRequest::default();
    request.markers = vec![marker];
    request
}

#[test]
fn write_txn_markers_writes_a_control_batch_per_partition() {
    let mut shard = shard_with_topic();
    append(&mut shard, transactional_batch(0, 2));
    let request = marker_request(false, &[(TOPIC, vec![0, 5]), ("missing", vec![1])]);
    let response: WriteTxnMarkersResponse = shard.call(ApiKey::WriteTxnMarkers, 1, &request);
    assert_eq!(response.markers.len(), 1);
    let marker = &response.markers[0];
    assert_eq!(marker.producer_id.0, PRODUCER);
    let errors: Vec<Vec<(i32, i16)>> = marker
        .topics
        .iter()
        .map(|topic| {
            topic
                .partitions
                .iter()
                .map(|partition| (partition.partition_index, partition.error_code))
                .collect()
        })
        .collect();
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    assert_eq!(errors, vec![vec![(0, 0), (5, unknown)], vec![(1, unknown)]]);

    // The marker is a control batch after the data; a read_uncommitted consumer skips it.
    let uncommitted = fetch(&mut shard, 0, READ_UNCOMMITTED);
    assert_eq!(batches(&uncommitted), vec![(0, false), (2, true)]);
    assert_eq!(uncommitted.high_watermark, 3);
    let records = uncommitted.records.clone().expect("records");
    let (position, header) = storage::batch::iter_batches(&records)
        .nth(1)
        .expect("the marker");
    let marker_bytes = &records[position..position + header.total_size()];
    assert_eq!(
        storage::txn::parse_marker(marker_bytes),
        Some((false, COORDINATOR_EPOCH))
    );
    assert_eq!(
        (header.producer_id, header.producer_epoch),
        (PRODUCER, EPOCH)
    );
}

#[test]
fn write_txn_markers_bounds_the_pairs_it_writes() {
    let mut shard = shard_with_topic();
    let partitions: Vec<i32> = (0..=crate::handlers::write_txn_markers::MAX_PAIRS as i32).collect();
    let request = marker_request(true, &[("missing", partitions)]);
    let response: WriteTxnMarkersResponse = shard.call(ApiKey::WriteTxnMarkers, 1, &request);
    let answers = &response.markers[0].topics[0].partitions;
    assert_eq!(
        answers.len(),
        crate::handlers::write_txn_markers::MAX_PAIRS + 1
    );
    assert_eq!(
        answers[0].error_code,
        ResponseError::UnknownTopicOrPartition.code()
    );
    assert_eq!(
        answers.last().expect("answers").error_code,
        ResponseError::InvalidRequest.code()
    );
    // Nothing was written to the existing topic.
    assert_eq!(
        shard
            .state
            .partitions
            .get(TOPIC, 0)
            .expect("partition")
            .log_end_offset(),
        Offset(0)
    );
}
