//! Fetch from follower (KIP-392) through the handlers, on the manual clock: a rack-aware leader
//! sends consumers of another rack to an in-sync follower there (`preferred_read_replica`), and a
//! follower serves consumers' fetches (v11+) up to its own high watermark, with the leader-epoch
//! checks, long polls woken by the high watermark its leader's answers move, and fetch sessions.

use super::produce_fetch::{batch_offsets, create_topic, fetch_request, produce_request, TOPIC};
use super::{decode_response, TestShard};
use crate::config::ReplicaSelector;
use crate::metadata::{BrokerEndpoint, PartitionState};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{ApiKey, BrokerId, FetchRequest, FetchResponse, ProduceResponse};
use kafka_protocol::protocol::StrBytes;
use std::sync::Arc;
use std::time::Duration;
use storage::batch::testing::simple_batch;

const LEADER_EPOCH: i32 = 3;

/// Sets the test topic's partition to `leader` (0: this node) in `epoch`, replicas this node, 5, 6
/// and ISR `isr` (0: this node); brokers: this node in r1, 5 in r2, 6 in r3.
fn set_partition(shard: &mut TestShard, leader: i32, epoch: i32, isr: &[i32]) {
    let mut metadata = (*shard.state.metadata()).clone();
    let node = metadata.node_id;
    let id = |id: &i32| if *id == 0 { node } else { *id };
    metadata.brokers = [(node, "r1"), (5, "r2"), (6, "r3")]
        .into_iter()
        .map(|(node_id, rack)| BrokerEndpoint {
            node_id,
            host: "localhost".into(),
            port: 9092,
            rack: Some(rack.into()),
        })
        .collect();
    let topic = metadata.topics.get_mut(TOPIC).expect("created");
    topic.partitions = vec![PartitionState {
        replicas: vec![node, 5, 6],
        isr: isr.iter().map(id).collect(),
        leader: id(&leader),
        leader_epoch: epoch,
        partition_epoch: epoch,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    }];
    metadata.version += 1;
    let state = shard.state.clone();
    shard
        .simulation
        .block_on(async move { state.apply_metadata(Arc::new(metadata)).await });
}

fn rack_aware(shard_rack: Option<&str>) -> TestShard {
    let rack = shard_rack.map(str::to_string);
    let mut shard = TestShard::start(move |config| {
        config.replica_selector = ReplicaSelector::RackAware;
        config.rack = rack;
    });
    create_topic(&mut shard, TOPIC, 1);
    shard
}

fn consumer_fetch(offset: i64, rack: &str, epoch: i32) -> FetchRequest {
    let mut request = fetch_request(offset, 0, 0);
    request.rack_id = StrBytes::from_string(rack.to_string());
    request.topics[0].partitions[0].current_leader_epoch = epoch;
    request
}

fn replica_fetch(replica: i32, offset: i64, last_fetched_epoch: i32) -> FetchRequest {
    let mut request = fetch_request(offset, 0, 0);
    request.replica_id = BrokerId(replica);
    let partition = &mut request.topics[0].partitions[0];
    partition.last_fetched_epoch = last_fetched_epoch;
    partition.current_leader_epoch = LEADER_EPOCH;
    request
}

/// (error, high watermark, batch offsets, preferred read replica) at `version`.
fn fetch(shard: &mut TestShard, version: i16, request: &FetchRequest) -> (i16, i64, Vec<i64>, i32) {
    let response: FetchResponse = shard.call(ApiKey::Fetch, version, request);
    answer(&response)
}

fn answer(response: &FetchResponse) -> (i16, i64, Vec<i64>, i32) {
    let partition = &response.responses[0].partitions[0];
    let batches = partition
        .records
        .as_ref()
        .map(batch_offsets)
        .unwrap_or_default();
    (
        partition.error_code,
        partition.high_watermark,
        batches,
        partition.preferred_read_replica.0,
    )
}

fn produce(shard: &mut TestShard, records: usize) -> i16 {
    let response: ProduceResponse = shard.call(
        ApiKey::Produce,
        9,
        &produce_request(1, simple_batch(records, 10, 1)),
    );
    response.responses[0].partition_responses[0].error_code
}

#[test]
fn a_rack_aware_leader_sends_consumers_of_another_rack_to_an_in_sync_follower_there() {
    let mut shard = rack_aware(Some("r1"));
    set_partition(&mut shard, 0, LEADER_EPOCH, &[0, 5, 6]);
    assert_eq!(produce(&mut shard, 3), 0);
    // Follower 5 (r2) copies the batch and fetches after it; 6 (r3) never fetched.
    fetch(&mut shard, 12, &replica_fetch(5, 0, -1));
    fetch(&mut shard, 12, &replica_fetch(5, 3, LEADER_EPOCH));
    assert_eq!(
        fetch(&mut shard, 12, &consumer_fetch(0, "r2", -1)),
        (0, 0, vec![], 5),
        "sent to 5, no records, the leader's high watermark"
    );
    // A consumer waiting for min_bytes is answered at once.
    let mut waiting = consumer_fetch(0, "r2", LEADER_EPOCH);
    waiting.min_bytes = 1;
    waiting.max_wait_ms = 10_000;
    assert_eq!(fetch(&mut shard, 11, &waiting).3, 5);
    // 6's log end is unknown, the leader is in r1, r9 has no replica, no rack: read here.
    for rack in ["r3", "r1", "r9", ""] {
        let (error, _, _, preferred) = fetch(&mut shard, 12, &consumer_fetch(0, rack, -1));
        assert_eq!((error, preferred), (0, -1), "rack {rack:?}");
    }
    // Past the follower's log end (it has not fetched the new batch yet): read here; at it, the
    // follower serves (as Kafka: its log end at or past the fetch offset).
    assert_eq!(produce(&mut shard, 2), 0);
    assert_eq!(fetch(&mut shard, 12, &consumer_fetch(5, "r2", -1)).3, -1);
    assert_eq!(fetch(&mut shard, 12, &consumer_fetch(3, "r2", -1)).3, 5);
    // Out of the ISR: read here.
    set_partition(&mut shard, 0, LEADER_EPOCH, &[0, 6]);
    assert_eq!(fetch(&mut shard, 12, &consumer_fetch(0, "r2", -1)).3, -1);
}

#[test]
fn the_leader_selector_and_rack_local_leaders_keep_consumers_on_the_leader() {
    let mut shard = TestShard::start(|config| config.rack = Some("r1".into()));
    create_topic(&mut shard, TOPIC, 1);
    set_partition(&mut shard, 0, LEADER_EPOCH, &[0, 5, 6]);
    assert_eq!(produce(&mut shard, 1), 0);
    fetch(&mut shard, 12, &replica_fetch(5, 1, LEADER_EPOCH));
    assert_eq!(fetch(&mut shard, 12, &consumer_fetch(0, "r2", -1)).3, -1);
}

/// This node leads in `LEADER_EPOCH`, alone in sync, writes batches at 0 (3 records) and 3 (2),
/// then follows broker 5 in the next epoch with its high watermark at 3.
fn follower_with_records() -> TestShard {
    let mut shard = rack_aware(Some("r2"));
    set_partition(&mut shard, 0, LEADER_EPOCH, &[0]);
    assert_eq!(produce(&mut shard, 3), 0);
    assert_eq!(produce(&mut shard, 2), 0);
    set_partition(&mut shard, 5, LEADER_EPOCH + 1, &[5, 0]);
    let partition = shard.state.partitions.get(TOPIC, 0).expect("open");
    assert!(!partition.is_leader());
    partition.follow_high_watermark(3);
    shard
}

#[test]
fn a_follower_serves_consumers_from_v11_up_to_its_high_watermark() {
    let mut shard = follower_with_records();
    let epoch = LEADER_EPOCH + 1;
    assert_eq!(
        fetch(&mut shard, 12, &consumer_fetch(0, "r2", epoch)),
        (0, 3, vec![0], -1)
    );
    assert_eq!(
        fetch(&mut shard, 11, &consumer_fetch(0, "", -1)),
        (0, 3, vec![0], -1)
    );
    // Before v11, only the leader answers.
    let (error, ..) = fetch(&mut shard, 10, &fetch_request(0, 0, 0));
    assert_eq!(error, ResponseError::NotLeaderOrFollower.code());
    // Between the high watermark and the log end: nothing; past the log end: out of range.
    assert_eq!(
        fetch(&mut shard, 12, &consumer_fetch(3, "r2", epoch)),
        (0, 3, vec![], -1)
    );
    assert_eq!(
        fetch(&mut shard, 12, &consumer_fetch(6, "r2", epoch)).0,
        ResponseError::OffsetOutOfRange.code()
    );
    // KIP-320 as on a leader.
    assert_eq!(
        fetch(&mut shard, 12, &consumer_fetch(0, "r2", epoch - 1)).0,
        ResponseError::FencedLeaderEpoch.code()
    );
    assert_eq!(
        fetch(&mut shard, 12, &consumer_fetch(0, "r2", epoch + 1)).0,
        ResponseError::UnknownLeaderEpoch.code()
    );
    // Produce stays the leader's.
    assert_eq!(
        produce(&mut shard, 1),
        ResponseError::NotLeaderOrFollower.code()
    );
}

#[test]
fn a_consumers_long_poll_on_a_follower_wakes_when_its_high_watermark_moves() {
    let mut shard = follower_with_records();
    let mut waiting = consumer_fetch(3, "r2", LEADER_EPOCH + 1);
    waiting.min_bytes = 1;
    waiting.max_wait_ms = 10_000;
    let task = shard.send(ApiKey::Fetch, 12, &waiting);
    shard.simulation.run_until_stalled();
    shard.simulation.advance(Duration::from_millis(100));
    assert!(!task.is_finished(), "nothing past the high watermark yet");
    // The leader's next answer says the high watermark is 5.
    let partition = shard.state.partitions.get(TOPIC, 0).expect("open");
    partition.follow_high_watermark(5);
    shard.simulation.run_until_stalled();
    let frame = task.take_output().expect("woken").expect("a response");
    let response: FetchResponse = decode_response(ApiKey::Fetch, 12, frame);
    assert_eq!(answer(&response), (0, 5, vec![3], -1));
}

#[test]
fn fetch_sessions_work_on_a_follower() {
    let mut shard = follower_with_records();
    let mut full = consumer_fetch(0, "r2", LEADER_EPOCH + 1);
    full.session_id = 0;
    full.session_epoch = 0;
    let response: FetchResponse = shard.call(ApiKey::Fetch, 12, &full);
    assert_ne!(response.session_id, 0);
    assert_eq!(answer(&response), (0, 3, vec![0], -1));
    // Incremental: the consumer moved to 3; nothing new, so no partition is listed.
    let mut incremental = consumer_fetch(3, "r2", LEADER_EPOCH + 1);
    incremental.session_id = response.session_id;
    incremental.session_epoch = 1;
    let quiet: FetchResponse = shard.call(ApiKey::Fetch, 12, &incremental);
    assert_eq!(quiet.error_code, 0);
    assert!(quiet.responses.is_empty(), "no news");
    // The high watermark moves: the next incremental fetch lists the partition with its records.
    shard
        .state
        .partitions
        .get(TOPIC, 0)
        .expect("open")
        .follow_high_watermark(5);
    let mut next = incremental.clone();
    next.topics.clear();
    next.session_epoch = 2;
    let news: FetchResponse = shard.call(ApiKey::Fetch, 12, &next);
    assert_eq!(answer(&news), (0, 5, vec![3], -1));
}

#[test]
fn a_followers_long_poll_on_the_leader_completes_when_the_high_watermark_moves() {
    let mut shard = rack_aware(Some("r1"));
    set_partition(&mut shard, 0, LEADER_EPOCH, &[0, 5, 6]);
    assert_eq!(produce(&mut shard, 1), 0);
    fetch(&mut shard, 12, &replica_fetch(5, 0, -1));
    // Follower 5 has everything and waits; the high watermark is 0 until 6 fetched past the batch.
    let mut waiting = replica_fetch(5, 1, LEADER_EPOCH);
    waiting.min_bytes = 1;
    waiting.max_wait_ms = 10_000;
    let task = shard.send(ApiKey::Fetch, 12, &waiting);
    shard.simulation.run_until_stalled();
    shard.simulation.advance(Duration::from_millis(100));
    assert!(!task.is_finished());
    assert_eq!(
        fetch(&mut shard, 12, &replica_fetch(6, 1, LEADER_EPOCH)).1,
        1
    );
    shard.simulation.run_until_stalled();
    // 5 is told the new high watermark at once (not at its next write or its deadline).
    let frame = task.take_output().expect("woken").expect("a response");
    let response: FetchResponse = decode_response(ApiKey::Fetch, 12, frame);
    assert_eq!(answer(&response), (0, 1, vec![], -1));
}
