//! DeleteRecords through its handler (low watermark, -1, errors, ListOffsets earliest and Fetch
//! below the start afterwards) and the shard's retention task on the manual clock.

use super::TestShard;
use crate::control::{control, ControlRequest, NewTopic};
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::delete_records_request::{
    DeleteRecordsPartition, DeleteRecordsTopic,
};
use kafka_protocol::messages::fetch_request::{FetchPartition, FetchTopic};
use kafka_protocol::messages::list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic};
use kafka_protocol::messages::produce_request::{PartitionProduceData, TopicProduceData};
use kafka_protocol::messages::{
    ApiKey, DeleteRecordsRequest, DeleteRecordsResponse, FetchRequest, FetchResponse,
    ListOffsetsRequest, ListOffsetsResponse, ProduceRequest, ProduceResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use std::time::Duration;
use storage::batch::testing::simple_batch;

const TOPIC: &str = "retained";

fn name(topic: &str) -> TopicName {
    TopicName(StrBytes::from_string(topic.to_string()))
}

fn create_topic(shard: &mut TestShard, configs: &[(&str, &str)]) {
    let state = shard.state.clone();
    let request = ControlRequest::CreateTopics {
        topics: vec![NewTopic {
            name: TOPIC.to_string(),
            partitions: 1,
            configs: configs
                .iter()
                .map(|(key, value)| (key.to_string(), value.to_string()))
                .collect::<BTreeMap<_, _>>(),
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

fn produce(shard: &mut TestShard, records: Vec<u8>) -> i64 {
    let mut partition = PartitionProduceData::default();
    partition.index = 0;
    partition.records = Some(Bytes::from(records));
    let mut topic = TopicProduceData::default();
    topic.name = name(TOPIC);
    topic.partition_data = vec![partition];
    let mut request = ProduceRequest::default();
    request.acks = -1;
    request.timeout_ms = 5_000;
    request.topic_data = vec![topic];
    let response: ProduceResponse = shard.call(ApiKey::Produce, 9, &request);
    let partition = &response.responses[0].partition_responses[0];
    assert_eq!(partition.error_code, 0);
    partition.base_offset
}

/// DeleteRecords of `(topic, partition, offset)` items: each `(error code, low watermark)`.
fn delete_records(
    shard: &mut TestShard,
    version: i16,
    items: &[(&str, i32, i64)],
) -> Vec<(i16, i64)> {
    let mut request = DeleteRecordsRequest::default();
    request.timeout_ms = 1_000;
    for (topic, partition, offset) in items {
        let mut entry = DeleteRecordsPartition::default();
        entry.partition_index = *partition;
        entry.offset = *offset;
        let mut topic_entry = DeleteRecordsTopic::default();
        topic_entry.name = name(topic);
        topic_entry.partitions = vec![entry];
        request.topics.push(topic_entry);
    }
    let response: DeleteRecordsResponse = shard.call(ApiKey::DeleteRecords, version, &request);
    response
        .topics
        .iter()
        .map(|topic| {
            let partition = &topic.partitions[0];
            (partition.error_code, partition.low_watermark)
        })
        .collect()
}

fn earliest(shard: &mut TestShard) -> i64 {
    let mut partition = ListOffsetsPartition::default();
    partition.timestamp = -2;
    let mut topic = ListOffsetsTopic::default();
    topic.name = name(TOPIC);
    topic.partitions = vec![partition];
    let mut request = ListOffsetsRequest::default();
    request.replica_id = kafka_protocol::messages::BrokerId(-1);
    request.topics = vec![topic];
    let response: ListOffsetsResponse = shard.call(ApiKey::ListOffsets, 7, &request);
    response.topics[0].partitions[0].offset
}

/// Fetches from `offset`: (error code, log start offset).
fn fetch(shard: &mut TestShard, offset: i64) -> (i16, i64) {
    let mut partition = FetchPartition::default();
    partition.fetch_offset = offset;
    partition.partition_max_bytes = 1 << 20;
    let mut topic = FetchTopic::default();
    topic.topic = name(TOPIC);
    topic.partitions = vec![partition];
    let mut request = FetchRequest::default();
    request.max_bytes = 1 << 20;
    request.session_epoch = -1;
    request.topics = vec![topic];
    let response: FetchResponse = shard.call(ApiKey::Fetch, 12, &request);
    let partition = &response.responses[0].partitions[0];
    (partition.error_code, partition.log_start_offset)
}

#[test]
fn delete_records_moves_the_low_watermark() {
    let mut shard = TestShard::start(|_| {});
    create_topic(&mut shard, &[]);
    for _ in 0..4 {
        produce(&mut shard, simple_batch(5, 10, 1_000));
    }
    let out_of_range = ResponseError::OffsetOutOfRange.code();
    let unknown = ResponseError::UnknownTopicOrPartition.code();
    for version in 0..=2 {
        assert_eq!(
            delete_records(&mut shard, version, &[(TOPIC, 0, 21)]),
            vec![(out_of_range, -1)]
        );
    }
    assert_eq!(
        delete_records(
            &mut shard,
            2,
            &[(TOPIC, 0, 7), ("nope", 0, 1), (TOPIC, 3, 1)]
        ),
        vec![(0, 7), (unknown, -1), (unknown, -1)]
    );
    assert_eq!(earliest(&mut shard), 7);
    assert_eq!(fetch(&mut shard, 3), (out_of_range, 7));
    assert_eq!(fetch(&mut shard, 7).0, 0);
    // Lower: no change; -1: the high watermark.
    assert_eq!(
        delete_records(&mut shard, 1, &[(TOPIC, 0, 2)]),
        vec![(0, 7)]
    );
    assert_eq!(
        delete_records(&mut shard, 1, &[(TOPIC, 0, -2)]),
        vec![(out_of_range, -1)]
    );
    assert_eq!(
        delete_records(&mut shard, 0, &[(TOPIC, 0, -1)]),
        vec![(0, 20)]
    );
    assert_eq!(earliest(&mut shard), 20);
    assert_eq!(produce(&mut shard, simple_batch(1, 10, 1_000)), 20);
}

#[test]
fn a_compacted_topic_refuses_delete_records() {
    let mut shard = TestShard::start(|_| {});
    create_topic(&mut shard, &[("cleanup.policy", "compact")]);
    let policy = ResponseError::PolicyViolation.code();
    assert_eq!(
        delete_records(&mut shard, 2, &[(TOPIC, 0, 0)]),
        vec![(policy, -1)]
    );
}

#[test]
fn the_retention_task_deletes_old_segments_on_its_interval() {
    let mut shard = TestShard::start(|config| {
        config.lifecycle.retention_check_interval_ms = 5_000;
    });
    create_topic(
        &mut shard,
        &[
            ("segment.bytes", "300"),
            ("retention.bytes", "600"),
            // The records' timestamps (1970) would all have expired by time.
            ("retention.ms", "-1"),
            ("file.delete.delay.ms", "2000"),
        ],
    );
    for _ in 0..30 {
        produce(&mut shard, simple_batch(2, 40, 1_000));
    }
    let partition = shard.state.partitions.get(TOPIC, 0).expect("partition");
    let segments = partition.log.segment_count();
    assert!(segments > 5);
    let size = partition.log.size_in_bytes();
    shard.simulation.advance(Duration::from_millis(4_000));
    assert_eq!(
        partition.log.segment_count(),
        segments,
        "not before the interval"
    );
    shard.simulation.advance(Duration::from_millis(1_000));
    let after = partition.log.size_in_bytes();
    assert!(after < size && after >= 600, "size {size} -> {after}");
    let start = partition.log_start_offset().0;
    assert!(start > 0);
    assert_eq!(earliest(&mut shard), start);
    assert_eq!(
        fetch(&mut shard, 0),
        (ResponseError::OffsetOutOfRange.code(), start)
    );
    let dir = partition.log.dir().to_path_buf();
    let deleted = |dir: &std::path::Path| {
        std::fs::read_dir(dir)
            .unwrap()
            .filter(|entry| {
                entry
                    .as_ref()
                    .unwrap()
                    .file_name()
                    .to_string_lossy()
                    .ends_with(".deleted")
            })
            .count()
    };
    assert!(deleted(&dir) > 0, "renamed first");
    shard.simulation.advance(Duration::from_millis(2_000));
    assert_eq!(deleted(&dir), 0, "removed after file.delete.delay.ms");
    assert_eq!(partition.log.deleted_files_pending(), 0);
}

#[test]
fn the_retention_task_expires_idle_producer_ids_on_their_interval() {
    let mut shard = TestShard::start(|config| {
        config.lifecycle.producer_id_expiration_check_interval_ms = 5_000;
    });
    create_topic(&mut shard, &[("retention.ms", "-1")]);
    // Producer 7's batch is stamped at 1970 + 1 s: idle far longer than producer.id.expiration.ms.
    produce(&mut shard, storage::batch::testing::idempotent_batch(0, 1));
    let partition = shard.state.partitions.get(TOPIC, 0).expect("partition");
    assert!(partition.log.producer_entry(7).is_some());
    shard.simulation.advance(Duration::from_millis(4_000));
    assert!(
        partition.log.producer_entry(7).is_some(),
        "not before the interval"
    );
    shard.simulation.advance(Duration::from_millis(1_000));
    assert!(partition.log.producer_entry(7).is_none(), "expired");
}
