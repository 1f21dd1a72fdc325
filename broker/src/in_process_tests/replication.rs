//! The leader's side of replication through the handlers, on the manual clock: followers' fetches
//! (Fetch with a replica id) move the high watermark, which completes acks=all produces; the ISR and
//! `min.insync.replicas`; leader epochs (KIP-320 checks, diverging epochs, OffsetForLeaderEpoch);
//! which ISR changes the leader finds due; a follower behind the leader's log start restarting its
//! log there; `replica.fsync.before.ack`. The followers are played by the test.

use super::produce_fetch::{
    batch_offsets, create_topic, fetch_request, produce_request, topic_name, TOPIC,
};
use super::{decode_response, TestShard};
use crate::metadata::PartitionState;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::offset_for_leader_epoch_request::{
    OffsetForLeaderPartition, OffsetForLeaderTopic,
};
use kafka_protocol::messages::{
    ApiKey, BrokerId, FetchRequest, FetchResponse, OffsetForLeaderEpochRequest,
    OffsetForLeaderEpochResponse, ProduceResponse,
};
use std::sync::Arc;
use std::time::Duration;
use storage::batch::testing::simple_batch;
use storage::types::Offset;

const LEADER_EPOCH: i32 = 3;

/// Makes this node lead the test topic's partition with followers 5 and 6 and the given ISR.
fn lead_with_followers(shard: &mut TestShard, isr: &[i32], configs: &[(&str, &str)]) {
    create_topic(shard, TOPIC, 1);
    let mut metadata = (*shard.state.metadata()).clone();
    let node = metadata.node_id;
    let topic = metadata.topics.get_mut(TOPIC).expect("created");
    topic.partitions = vec![PartitionState {
        replicas: vec![node, 5, 6],
        isr: isr
            .iter()
            .map(|id| if *id == 0 { node } else { *id })
            .collect(),
        leader: node,
        leader_epoch: LEADER_EPOCH,
        partition_epoch: 0,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    }];
    for (name, value) in configs {
        topic.configs.insert(name.to_string(), value.to_string());
    }
    metadata.version += 1;
    let state = shard.state.clone();
    shard
        .simulation
        .block_on(async move { state.apply_metadata(Arc::new(metadata)).await });
}

fn replica_fetch(replica: i32, offset: i64, last_fetched_epoch: i32) -> FetchRequest {
    let mut request = fetch_request(offset, 0, 0);
    request.replica_id = BrokerId(replica);
    let partition = &mut request.topics[0].partitions[0];
    partition.last_fetched_epoch = last_fetched_epoch;
    partition.current_leader_epoch = LEADER_EPOCH;
    request
}

/// (error, high watermark, batch offsets, diverging epoch and end offset)
fn fetch(shard: &mut TestShard, request: &FetchRequest) -> (i16, i64, Vec<i64>, (i32, i64)) {
    let response: FetchResponse = shard.call(ApiKey::Fetch, 12, request);
    let partition = &response.responses[0].partitions[0];
    let batches = partition
        .records
        .as_ref()
        .map(batch_offsets)
        .unwrap_or_default();
    let diverging = (
        partition.diverging_epoch.epoch,
        partition.diverging_epoch.end_offset,
    );
    (
        partition.error_code,
        partition.high_watermark,
        batches,
        diverging,
    )
}

fn produce_error(shard: &mut TestShard, acks: i16) -> i16 {
    let response: ProduceResponse = shard.call(
        ApiKey::Produce,
        9,
        &produce_request(acks, simple_batch(1, 10, 1)),
    );
    response.responses[0].partition_responses[0].error_code
}

#[test]
fn acks_all_waits_until_every_in_sync_follower_fetched_past_the_records() {
    let mut shard = TestShard::start(|_| {});
    lead_with_followers(&mut shard, &[0, 5, 6], &[]);
    let produce = shard.send(
        ApiKey::Produce,
        9,
        &produce_request(-1, simple_batch(3, 10, 1_000)),
    );
    shard.simulation.run_until_stalled();
    assert!(!produce.is_finished(), "waits for the followers");
    // A consumer sees nothing past the high watermark.
    assert_eq!(
        fetch(&mut shard, &fetch_request(0, 0, 0)),
        (0, 0, vec![], (-1, -1))
    );
    // Follower 5 copies the batch (it reads past the high watermark), then fetches after it.
    assert_eq!(
        fetch(&mut shard, &replica_fetch(5, 0, -1)),
        (0, 0, vec![0], (-1, -1))
    );
    assert_eq!(fetch(&mut shard, &replica_fetch(5, 3, LEADER_EPOCH)).1, 0);
    shard.simulation.run_until_stalled();
    assert!(!produce.is_finished(), "follower 6 has not fetched yet");
    // Follower 6 fetches after the batch: every in-sync replica has it.
    assert_eq!(fetch(&mut shard, &replica_fetch(6, 3, LEADER_EPOCH)).1, 3);
    shard.simulation.run_until_stalled();
    let frame = produce
        .take_output()
        .expect("answered")
        .expect("a response");
    let response: ProduceResponse = decode_response(ApiKey::Produce, 9, frame);
    let answer = &response.responses[0].partition_responses[0];
    assert_eq!((answer.error_code, answer.base_offset), (0, 0));
    assert_eq!(
        fetch(&mut shard, &fetch_request(0, 0, 0)),
        (0, 3, vec![0], (-1, -1))
    );
}

#[test]
fn a_followers_fetch_long_polls_for_new_writes_not_the_high_watermark() {
    let mut shard = TestShard::start(|_| {});
    lead_with_followers(&mut shard, &[0, 5, 6], &[]);
    let mut waiting = replica_fetch(5, 0, -1);
    waiting.min_bytes = 1;
    waiting.max_wait_ms = 10_000;
    let fetch_task = shard.send(ApiKey::Fetch, 12, &waiting);
    shard.simulation.run_until_stalled();
    shard.simulation.advance(Duration::from_millis(100));
    assert!(!fetch_task.is_finished());
    // acks=1 answers after the leader's write; the follower's fetch wakes though the high
    // watermark stays (follower 6 has not fetched).
    assert_eq!(produce_error(&mut shard, 1), 0);
    shard.simulation.run_until_stalled();
    let frame = fetch_task
        .take_output()
        .expect("woken")
        .expect("a response");
    let response: FetchResponse = decode_response(ApiKey::Fetch, 12, frame);
    let partition = &response.responses[0].partitions[0];
    assert_eq!(partition.high_watermark, 0);
    assert_eq!(
        batch_offsets(partition.records.as_ref().expect("records")),
        vec![0]
    );
}

#[test]
fn acks_all_needs_min_insync_replicas_in_sync_and_acks_1_does_not() {
    let mut shard = TestShard::start(|_| {});
    lead_with_followers(&mut shard, &[0], &[("min.insync.replicas", "2")]);
    assert_eq!(
        produce_error(&mut shard, -1),
        ResponseError::NotEnoughReplicas.code()
    );
    assert_eq!(produce_error(&mut shard, 1), 0);
    // Alone in sync, the leader's own write is the high watermark.
    assert_eq!(fetch(&mut shard, &fetch_request(0, 0, 0)).1, 1);
}

#[test]
fn fetches_with_another_leader_epoch_are_fenced_and_a_diverged_follower_is_told_where() {
    let mut shard = TestShard::start(|_| {});
    lead_with_followers(&mut shard, &[0, 5, 6], &[]);
    assert_eq!(produce_error(&mut shard, 1), 0);
    assert_eq!(produce_error(&mut shard, 1), 0);
    let mut stale = fetch_request(0, 0, 0);
    stale.topics[0].partitions[0].current_leader_epoch = LEADER_EPOCH - 1;
    assert_eq!(
        fetch(&mut shard, &stale).0,
        ResponseError::FencedLeaderEpoch.code()
    );
    stale.topics[0].partitions[0].current_leader_epoch = LEADER_EPOCH + 1;
    assert_eq!(
        fetch(&mut shard, &stale).0,
        ResponseError::UnknownLeaderEpoch.code()
    );
    // A follower whose log goes past the leader's in the same epoch diverges at the leader's end.
    assert_eq!(
        fetch(&mut shard, &replica_fetch(5, 4, LEADER_EPOCH)),
        (0, 0, vec![], (LEADER_EPOCH, 2))
    );
    // Past the leader's end in an epoch it cannot compare: cut back to the leader's end, and the
    // follower's log end is not taken (the high watermark stays).
    assert_eq!(
        fetch(&mut shard, &replica_fetch(5, 9, -1)),
        (0, 0, vec![], (-1, 2))
    );
    // A broker that is not a replica is no follower.
    assert_eq!(
        fetch(&mut shard, &replica_fetch(9, 0, -1)).0,
        ResponseError::NotLeaderOrFollower.code()
    );
    // One in step does not.
    assert_eq!(
        fetch(&mut shard, &replica_fetch(5, 2, LEADER_EPOCH)).3,
        (-1, -1)
    );
    // OffsetForLeaderEpoch: the current epoch ends at the log end; a newer one is unknown here.
    let mut request = OffsetForLeaderEpochRequest::default();
    let mut topic = OffsetForLeaderTopic::default();
    topic.topic = topic_name(TOPIC);
    for epoch in [LEADER_EPOCH, LEADER_EPOCH + 5] {
        let mut partition = OffsetForLeaderPartition::default();
        partition.partition = 0;
        partition.current_leader_epoch = LEADER_EPOCH;
        partition.leader_epoch = epoch;
        topic.partitions.push(partition);
    }
    request.topics = vec![topic];
    let response: OffsetForLeaderEpochResponse =
        shard.call(ApiKey::OffsetForLeaderEpoch, 4, &request);
    let answers: Vec<(i16, i32, i64)> = response.topics[0]
        .partitions
        .iter()
        .map(|p| (p.error_code, p.leader_epoch, p.end_offset))
        .collect();
    assert_eq!(answers, vec![(0, LEADER_EPOCH, 2), (0, -1, -1)]);
}

#[test]
fn a_lagging_follower_is_due_to_leave_the_isr_and_a_caught_up_one_to_join_it() {
    let mut shard = TestShard::start(|_| {});
    lead_with_followers(&mut shard, &[0, 5], &[]);
    let partition = shard.state.partitions.get(TOPIC, 0).expect("open");
    let lag_ms = 30_000;
    let start = shard.simulation.wall_clock_ms();
    assert_eq!(produce_error(&mut shard, 1), 0);
    // Follower 6 (not in the ISR) catches up; 5 does not fetch at all.
    fetch(&mut shard, &replica_fetch(6, 0, -1));
    fetch(&mut shard, &replica_fetch(6, 1, LEADER_EPOCH));
    let change = partition
        .isr_change_due(start + 1_000, lag_ms, |_| true)
        .expect("6 joins");
    assert_eq!(
        (change.isr.clone(), change.leader_epoch.0),
        (vec![0, 5, 6], LEADER_EPOCH)
    );
    // Pending: not asked again until it fails or times out.
    assert_eq!(
        partition.isr_change_due(start + 2_000, lag_ms, |_| true),
        None
    );
    // Refused: asked again only after the retry interval.
    partition.isr_change_failed(start + 2_000);
    assert_eq!(
        partition.isr_change_due(start + 3_000, lag_ms, |_| true),
        None
    );
    // A fenced broker is not asked for.
    assert_eq!(
        partition.isr_change_due(start + 8_000, lag_ms, |id| id != 6),
        None
    );
    // Past the lag time without a catch-up, 5 leaves (6 fetched recently enough to be kept out of
    // the shrink, and joins).
    shard.simulation.advance(Duration::from_millis(29_000));
    fetch(&mut shard, &replica_fetch(6, 1, LEADER_EPOCH));
    let change = partition
        .isr_change_due(start + 31_000, lag_ms, |_| true)
        .expect("5 leaves");
    assert_eq!(change.isr, vec![0, 6]);
}

/// Makes this node follow broker 5 for the test topic's partition.
fn follow_broker_5(shard: &mut TestShard) {
    create_topic(shard, TOPIC, 1);
    let mut metadata = (*shard.state.metadata()).clone();
    let node = metadata.node_id;
    let topic = metadata.topics.get_mut(TOPIC).expect("created");
    topic.partitions = vec![PartitionState {
        replicas: vec![5, node, 6],
        isr: vec![5, node, 6],
        leader: 5,
        leader_epoch: LEADER_EPOCH,
        partition_epoch: 0,
        adding_replicas: Vec::new(),
        removing_replicas: Vec::new(),
    }];
    metadata.version += 1;
    let state = shard.state.clone();
    shard
        .simulation
        .block_on(async move { state.apply_metadata(Arc::new(metadata)).await });
}

#[test]
fn a_follower_behind_the_leaders_log_start_restarts_its_log_there() {
    // The leader: 6 batches of 3 records in 6 segments, committed, then the first 4 deleted.
    let mut leader = TestShard::start(|_| {});
    lead_with_followers(
        &mut leader,
        &[0, 5],
        &[("segment.bytes", "100"), ("retention.ms", "-1")],
    );
    for index in 0..6 {
        assert_eq!(
            produce_error_of(&mut leader, simple_batch(3, 10, 1_000 + index)),
            0
        );
    }
    assert_eq!(
        fetch(&mut leader, &replica_fetch(5, 18, LEADER_EPOCH)).1,
        18
    );
    let partition = leader.state.partitions.get(TOPIC, 0).expect("partition");
    let deleted = leader
        .simulation
        .block_on(async move { partition.delete_records(12).await });
    assert_eq!(deleted, Ok(Offset(12)));
    // A follower fetching from below the leader's log start: OFFSET_OUT_OF_RANGE, with that start.
    let response: FetchResponse = leader.call(ApiKey::Fetch, 12, &replica_fetch(5, 3, 0));
    let answer = &response.responses[0].partitions[0];
    assert_eq!(
        (answer.error_code, answer.log_start_offset),
        (ResponseError::OffsetOutOfRange.code(), 12)
    );
    let response: FetchResponse = leader.call(ApiKey::Fetch, 12, &replica_fetch(5, 12, -1));
    let records = response.responses[0].partitions[0]
        .records
        .clone()
        .expect("the records from the log start");
    assert_eq!(batch_offsets(&records), [12, 15]);

    // The follower (log end 0) restarts at the leader's log start, then takes its records.
    let mut follower = TestShard::start(|_| {});
    follow_broker_5(&mut follower);
    let partition = follower.state.partitions.get(TOPIC, 0).expect("partition");
    let restarted = follower.simulation.block_on(async move {
        let _applying = partition.replica_lock.lock().await;
        assert!(!partition
            .truncate_fully_behind_leader(Offset(0))
            .await
            .unwrap());
        assert!(partition
            .truncate_fully_behind_leader(Offset(12))
            .await
            .unwrap());
        let positions = (
            partition.log_start_offset(),
            partition.log_end_offset(),
            partition.high_watermark(),
        );
        // At or past the leader's log start already: nothing to do.
        assert!(!partition
            .truncate_fully_behind_leader(Offset(12))
            .await
            .unwrap());
        partition.append_from_leader(records, 18).await.unwrap();
        (
            positions,
            partition.log_end_offset(),
            partition.high_watermark(),
        )
    });
    assert_eq!(
        restarted,
        ((Offset(12), Offset(12), Offset(12)), Offset(18), Offset(18))
    );
}

fn produce_error_of(shard: &mut TestShard, batch: Vec<u8>) -> i16 {
    let response: ProduceResponse = shard.call(ApiKey::Produce, 9, &produce_request(1, batch));
    response.responses[0].partition_responses[0].error_code
}

#[test]
fn with_fsync_before_ack_an_acks_all_produce_is_fsynced_before_it_waits_for_the_followers() {
    for fsync_before_ack in [false, true] {
        let mut shard = TestShard::start(|config| {
            config.replica_fsync_before_ack = fsync_before_ack;
        });
        lead_with_followers(&mut shard, &[0, 5], &[]);
        let partition = shard.state.partitions.get(TOPIC, 0).expect("partition");
        // acks=1 never fsyncs.
        assert_eq!(produce_error_of(&mut shard, simple_batch(3, 10, 1_000)), 0);
        assert_eq!(partition.log.flushed_end_offset(), Offset(0));
        let produce = shard.send(
            ApiKey::Produce,
            9,
            &produce_request(-1, simple_batch(2, 10, 1_001)),
        );
        shard.simulation.run_until_stalled();
        assert!(!produce.is_finished(), "waits for follower 5");
        let flushed = if fsync_before_ack { 5 } else { 0 };
        assert_eq!(
            partition.log.flushed_end_offset(),
            Offset(flushed),
            "fsync_before_ack: {fsync_before_ack}"
        );
        assert_eq!(fetch(&mut shard, &replica_fetch(5, 5, LEADER_EPOCH)).1, 5);
        shard.simulation.run_until_stalled();
        let frame = produce
            .take_output()
            .expect("answered")
            .expect("a response");
        let response: ProduceResponse = decode_response(ApiKey::Produce, 9, frame);
        assert_eq!(response.responses[0].partition_responses[0].error_code, 0);
    }
}
