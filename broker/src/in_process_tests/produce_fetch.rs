//! Produce, fetch (with its long poll on the manual clock) and ListOffsets through the handlers.

use super::{decode_response, TestShard};
use crate::control::{control, ControlRequest, NewTopic};
use bytes::Bytes;
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, FetchRequest, FetchResponse, ListOffsetsRequest, ListOffsetsResponse, ProduceRequest,
    ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use std::time::Duration;
use storage::batch::testing::simple_batch;

pub(super) const TOPIC: &str = "in-process";

pub(super) fn topic_name(name: &str) -> TopicName {
    TopicName(StrBytes::from_string(name.to_string()))
}

pub(super) fn create_topic(shard: &mut TestShard, name: &str, partitions: i32) {
    let state = shard.state.clone();
    let request = ControlRequest::CreateTopics {
        topics: vec![NewTopic {
            name: name.to_string(),
            partitions,
            configs: BTreeMap::new(),
            replication_factor: None,
            assignments: Vec::new(),
        }],
        validate_only: false,
    };
    let response = shard
        .simulation
        .block_on(async move { control(&state, request).await });
    let outcomes = crate::control::topic_outcomes(response, 1);
    assert!(outcomes[0].is_ok(), "topic created: {:?}", outcomes[0]);
}

/// The metadata quorum's log owns `__cluster_metadata-0`: no topic may take the name.
#[test]
fn the_cluster_metadata_topic_cannot_be_created() {
    let mut shard = TestShard::start(|_| {});
    let state = shard.state.clone();
    let request = ControlRequest::CreateTopics {
        topics: vec![NewTopic {
            name: crate::internal_topics::CLUSTER_METADATA_TOPIC.to_string(),
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
    let outcomes = crate::control::topic_outcomes(response, 1);
    assert_eq!(
        outcomes[0],
        Err((
            kafka_protocol::error::ResponseError::InvalidRequest,
            "Creation of internal topic __cluster_metadata is prohibited.".to_string()
        ))
    );
}

pub(super) fn produce_request(acks: i16, records: Vec<u8>) -> ProduceRequest {
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(Bytes::from(records));
    let mut topic = TopicProduceData::default();
    topic.name = topic_name(TOPIC);
    topic.partition_data = vec![partition];
    let mut request = ProduceRequest::default();
    request.acks = acks;
    request.timeout_ms = 5_000;
    request.topic_data = vec![topic];
    request
}

/// Produces `records` (acks=all) and returns the base offset.
fn produce(shard: &mut TestShard, records: Vec<u8>) -> i64 {
    let response: ProduceResponse = shard.call(ApiKey::Produce, 9, &produce_request(-1, records));
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 0, "produce accepted");
    partition.base_offset
}

pub(super) fn fetch_request(offset: i64, min_bytes: i32, max_wait_ms: i32) -> FetchRequest {
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
    request.session_epoch = -1;
    request.topics = vec![topic];
    request
}

/// Offsets of the batches in a records field.
pub(super) fn batch_offsets(records: &Bytes) -> Vec<i64> {
    storage::batch::iter_batches(records)
        .map(|(_, header)| header.base_offset)
        .collect()
}

#[test]
fn produced_batches_get_consecutive_offsets_and_fetch_reads_them_back() {
    let mut shard = TestShard::start(|_| {});
    create_topic(&mut shard, TOPIC, 1);
    assert_eq!(produce(&mut shard, simple_batch(3, 10, 1_000)), 0);
    assert_eq!(produce(&mut shard, simple_batch(2, 10, 2_000)), 3);

    let response: FetchResponse = shard.call(ApiKey::Fetch, 12, &fetch_request(0, 0, 0));
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 5);
    assert_eq!(partition.log_start_offset, 0);
    let records = partition.records.clone().expect("records");
    assert_eq!(batch_offsets(&records), vec![0, 3]);
}

#[test]
fn acks_zero_gets_no_response_but_is_written() {
    let mut shard = TestShard::start(|_| {});
    create_topic(&mut shard, TOPIC, 1);
    let task = shard.send(
        ApiKey::Produce,
        9,
        &produce_request(0, simple_batch(1, 10, 1)),
    );
    shard.simulation.run_until_stalled();
    assert_eq!(task.take_output(), Some(None), "no response to acks=0");
    assert_eq!(produce(&mut shard, simple_batch(1, 10, 1)), 1);
}

#[test]
fn a_long_poll_waits_exactly_max_wait_on_the_manual_clock() {
    let mut shard = TestShard::start(|_| {});
    create_topic(&mut shard, TOPIC, 1);
    let fetch = shard.send(ApiKey::Fetch, 12, &fetch_request(0, 1, 500));
    shard.simulation.run_until_stalled();
    assert!(!fetch.is_finished(), "waits for data");
    shard.simulation.advance(Duration::from_millis(499));
    assert!(!fetch.is_finished(), "not before max_wait_ms");
    shard.simulation.advance(Duration::from_millis(1));
    let frame = fetch
        .take_output()
        .expect("answered at max_wait_ms")
        .expect("a response");
    let response: FetchResponse = decode_response(ApiKey::Fetch, 12, frame);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    assert_eq!(partition.high_watermark, 0);
    assert!(partition
        .records
        .as_ref()
        .is_none_or(|records| records.is_empty()));
}

#[test]
fn a_long_poll_completes_as_soon_as_data_arrives() {
    let mut shard = TestShard::start(|_| {});
    create_topic(&mut shard, TOPIC, 1);
    let started = shard.simulation.now();
    let fetch = shard.send(ApiKey::Fetch, 12, &fetch_request(0, 1, 10_000));
    shard.simulation.run_until_stalled();
    shard.simulation.advance(Duration::from_millis(250));
    assert!(!fetch.is_finished());
    assert_eq!(produce(&mut shard, simple_batch(4, 10, 1_000)), 0);
    shard.simulation.run_until_stalled();
    let frame = fetch
        .take_output()
        .expect("woken by the append")
        .expect("a response");
    assert_eq!(shard.simulation.now() - started, Duration::from_millis(250));
    let response: FetchResponse = decode_response(ApiKey::Fetch, 12, frame);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.high_watermark, 4);
    assert_eq!(
        batch_offsets(partition.records.as_ref().expect("records")),
        vec![0]
    );
    let counters = shard.state.partitions.counters().snapshot();
    assert_eq!(counters.delayed_fetches, 1);
    assert_eq!(counters.delayed_fetches_expired, 0);
}

fn list_offsets(shard: &mut TestShard, timestamp: i64) -> (i64, i64, i32) {
    let mut partition = ListOffsetsPartition::default();
    partition.partition_index = 0;
    partition.timestamp = timestamp;
    let mut topic = ListOffsetsTopic::default();
    topic.name = topic_name(TOPIC);
    topic.partitions = vec![partition];
    let mut request = ListOffsetsRequest::default();
    request.replica_id = kafka_protocol::messages::BrokerId(-1);
    request.topics = vec![topic];
    let response: ListOffsetsResponse = shard.call(ApiKey::ListOffsets, 7, &request);
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0, "lookup of {timestamp}");
    (
        partition.offset,
        partition.timestamp,
        partition.leader_epoch,
    )
}

#[test]
fn list_offsets_finds_earliest_latest_max_timestamp_and_by_time() {
    let mut shard = TestShard::start(|_| {});
    create_topic(&mut shard, TOPIC, 1);
    produce(&mut shard, simple_batch(2, 10, 1_000));
    produce(&mut shard, simple_batch(3, 10, 3_000));
    assert_eq!(list_offsets(&mut shard, -2), (0, -1, 0), "earliest");
    assert_eq!(list_offsets(&mut shard, -1), (5, -1, 0), "latest");
    assert_eq!(
        list_offsets(&mut shard, 2_000),
        (2, 3_000, 0),
        "first at or after 2000"
    );
    assert_eq!(
        list_offsets(&mut shard, 5_000),
        (-1, -1, -1),
        "nothing that late"
    );
    assert_eq!(list_offsets(&mut shard, -3).1, 3_000, "max timestamp");
}
