//! `__consumer_offsets` as a compacted topic, on the manual clock: committed offsets expire after
//! `offsets.retention.minutes` (from the commit for a simple consumer, from when the group became empty
//! for a consumer group) and are tombstoned; a dead group's metadata is tombstoned; replaying many
//! commits of a few keys, tombstones interleaved, rebuilds exactly the last state.

use super::TestShard;
use crate::control::{control, ControlRequest, NewTopic};
use crate::group::records::{self, CommittedOffset, GroupRecord, StoredGroup};
use crate::group::OFFSETS_TOPIC;
use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::leave_group_request::MemberIdentity;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::{
    ApiKey, DescribeGroupsRequest, DescribeGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest,
    LeaveGroupResponse, OffsetCommitRequest, OffsetCommitResponse, OffsetFetchRequest,
    OffsetFetchResponse, SyncGroupRequest, SyncGroupResponse, TopicName,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::{BTreeMap, HashMap};
use std::time::Duration;
use storage::types::Offset;

const TOPIC: &str = "expiring";
const RETENTION: Duration = Duration::from_secs(60);
const CHECK_INTERVAL_MS: u64 = 1_000;

fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

fn shard_with_offsets_topic(adjust: impl FnOnce(&mut crate::config::BrokerConfig)) -> TestShard {
    let mut shard = TestShard::start(|config| {
        config.groups.initial_rebalance_delay_ms = 0;
        config.groups.offsets_retention_minutes = 1;
        config.groups.offsets_retention_check_interval_ms = CHECK_INTERVAL_MS;
        adjust(config);
    });
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
    let mut find = FindCoordinatorRequest::default();
    find.key = StrBytes::from_static_str("any");
    let found: FindCoordinatorResponse = shard.call(ApiKey::FindCoordinator, 3, &find);
    assert_eq!(found.error_code, 0);
    shard.simulation.run_until_stalled();
    shard
}

fn commit(shard: &mut TestShard, group: &str, member_id: &str, generation: i32, offset: i64) {
    let mut partition = OffsetCommitRequestPartition::default();
    partition.partition_index = 0;
    partition.committed_offset = offset;
    let mut topic = OffsetCommitRequestTopic::default();
    topic.name = TopicName(StrBytes::from_static_str(TOPIC));
    topic.partitions = vec![partition];
    let mut request = OffsetCommitRequest::default();
    request.group_id = group_id(group);
    request.member_id = StrBytes::from_string(member_id.to_string());
    request.generation_id_or_member_epoch = generation;
    request.topics = vec![topic];
    let response: OffsetCommitResponse = shard.call(ApiKey::OffsetCommit, 8, &request);
    assert_eq!(response.topics[0].partitions[0].error_code, 0, "committed");
}

/// The committed offset of `group` for the topic's partition 0 (-1: none).
fn fetch(shard: &mut TestShard, group: &str) -> i64 {
    let mut topic = OffsetFetchRequestTopic::default();
    topic.name = TopicName(StrBytes::from_static_str(TOPIC));
    topic.partition_indexes = vec![0];
    let mut request = OffsetFetchRequest::default();
    request.group_id = group_id(group);
    request.topics = Some(vec![topic]);
    let response: OffsetFetchResponse = shard.call(ApiKey::OffsetFetch, 7, &request);
    assert_eq!(response.error_code, 0);
    let partition = &response.topics[0].partitions[0];
    assert_eq!(partition.error_code, 0);
    partition.committed_offset
}

fn group_state(shard: &mut TestShard, group: &str) -> String {
    let mut request = DescribeGroupsRequest::default();
    request.groups = vec![group_id(group)];
    let response: DescribeGroupsResponse = shard.call(ApiKey::DescribeGroups, 5, &request);
    response.groups[0].group_state.to_string()
}

/// Joins `group` as its only member and syncs: (member id, generation).
fn join_and_sync(shard: &mut TestShard, group: &str) -> (String, i32) {
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = StrBytes::from_static_str("range");
    protocol.metadata =
        Bytes::from_static(b"\x00\x00\x00\x00\x00\x01\x00\x08expiring\xff\xff\xff\xff");
    let mut join = JoinGroupRequest::default();
    join.group_id = group_id(group);
    join.session_timeout_ms = 60_000;
    join.rebalance_timeout_ms = 60_000;
    join.protocol_type = StrBytes::from_static_str("consumer");
    join.protocols = vec![protocol];
    let first: JoinGroupResponse = shard.call(ApiKey::JoinGroup, 5, &join);
    join.member_id = first.member_id;
    let joined: JoinGroupResponse = shard.call(ApiKey::JoinGroup, 5, &join);
    assert_eq!(joined.error_code, 0, "joined");
    let mut assignment = SyncGroupRequestAssignment::default();
    assignment.member_id = joined.member_id.clone();
    let mut sync = SyncGroupRequest::default();
    sync.group_id = group_id(group);
    sync.generation_id = joined.generation_id;
    sync.member_id = joined.member_id.clone();
    sync.assignments = vec![assignment];
    let synced: SyncGroupResponse = shard.call(ApiKey::SyncGroup, 3, &sync);
    assert_eq!(synced.error_code, 0, "synced");
    (joined.member_id.to_string(), joined.generation_id)
}

/// Every record of the offsets topic's partition 0, in log order.
fn offsets_topic_records(shard: &mut TestShard) -> Vec<GroupRecord> {
    let partition = shard
        .state
        .partitions
        .get(OFFSETS_TOPIC, 0)
        .expect("offsets partition");
    shard.simulation.block_on(async move {
        let end = partition.high_watermark();
        let mut offset = partition.log.log_start_offset();
        let mut out = Vec::new();
        while offset < end {
            let joined = partition
                .log
                .read(offset, 1 << 20, end, true)
                .await
                .expect("readable");
            for (position, header) in storage::batch::iter_batches(&joined) {
                offset = Offset(header.last_offset() + 1);
                let batch = joined.slice(position..position + header.total_size());
                out.extend(records::decode_batch(batch).expect("decodable"));
            }
        }
        out
    })
}

fn is_offset_tombstone(record: &GroupRecord, wanted: &str) -> bool {
    matches!(record, GroupRecord::Offset { group, value: None, .. } if group == wanted)
}

#[test]
fn offsets_of_empty_groups_expire_after_the_retention_and_are_tombstoned() {
    let mut shard = shard_with_offsets_topic(|_| {});
    // A simple consumer (no group protocol) commits; a consumer group commits while it has a member.
    commit(&mut shard, "simple", "", -1, 5);
    let (member_id, generation) = join_and_sync(&mut shard, "consumers");
    commit(&mut shard, "consumers", &member_id, generation, 7);

    // The consumer group's member stays 40 s, then leaves: the group is Empty from then on.
    shard.simulation.advance(Duration::from_secs(40));
    let mut leave = LeaveGroupRequest::default();
    leave.group_id = group_id("consumers");
    let mut identity = MemberIdentity::default();
    identity.member_id = StrBytes::from_string(member_id);
    leave.members = vec![identity];
    let left: LeaveGroupResponse = shard.call(ApiKey::LeaveGroup, 4, &leave);
    assert_eq!(left.error_code, 0);
    assert_eq!(group_state(&mut shard, "consumers"), "Empty");
    assert_eq!(fetch(&mut shard, "simple"), 5);
    assert_eq!(fetch(&mut shard, "consumers"), 7);

    // 61 s after the commit (plus a check interval): the simple consumer's offset is gone; the consumer
    // group has been empty for only 21 s, and keeps its offset.
    shard
        .simulation
        .advance(Duration::from_secs(21) + Duration::from_millis(CHECK_INTERVAL_MS));
    assert_eq!(fetch(&mut shard, "simple"), -1, "expired");
    assert_eq!(
        fetch(&mut shard, "consumers"),
        7,
        "empty for less than the retention"
    );

    // A minute after it became empty the group's offset expires, and with it the group.
    shard.simulation.advance(RETENTION);
    assert_eq!(fetch(&mut shard, "consumers"), -1, "expired");
    assert_eq!(group_state(&mut shard, "consumers"), "Dead");

    // Each removal is a tombstone in __consumer_offsets; the consumer group's metadata too.
    let written = offsets_topic_records(&mut shard);
    assert!(written
        .iter()
        .any(|record| is_offset_tombstone(record, "simple")));
    assert!(written
        .iter()
        .any(|record| is_offset_tombstone(record, "consumers")));
    assert!(written.iter().any(|record| matches!(
        record,
        GroupRecord::Group { group, value: None } if group == "consumers"
    )));

    // A reload (the coordinator moving or a restart) does not bring them back.
    let partition = shard.state.partitions.get(OFFSETS_TOPIC, 0).unwrap();
    shard.state.groups.partition_closed(0);
    shard.state.groups.partition_opened(partition);
    shard.simulation.run_until_stalled();
    assert_eq!(fetch(&mut shard, "simple"), -1);
    assert_eq!(fetch(&mut shard, "consumers"), -1);
    assert_eq!(group_state(&mut shard, "consumers"), "Dead");
}

/// A deterministic pseudo-random sequence (xorshift), for the replay model below.
struct Sequence(u64);

impl Sequence {
    fn next(&mut self, bound: u64) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0 % bound
    }
}

#[test]
fn replaying_many_commits_of_few_keys_with_tombstones_rebuilds_the_last_state() {
    const RECORDS: usize = 100_000;
    const PER_BATCH: usize = 100;
    let mut shard = shard_with_offsets_topic(|_| {});
    let partition = shard.state.partitions.get(OFFSETS_TOPIC, 0).unwrap();
    let groups = ["g0", "g1", "g2", "g3"];
    // What replay must end with: offsets by (group, partition), and the groups with stored metadata.
    let mut expected_offsets: BTreeMap<(String, i32), i64> = BTreeMap::new();
    let mut expected_generation: HashMap<String, i32> = HashMap::new();
    let mut sequence = Sequence(0x9e37_79b9_7f4a_7c15);
    let mut batch = Vec::with_capacity(PER_BATCH);
    for index in 0..RECORDS {
        let group = groups[sequence.next(groups.len() as u64) as usize].to_string();
        let roll = sequence.next(100);
        let record = if roll < 90 {
            let partition = sequence.next(4) as i32;
            expected_offsets.insert((group.clone(), partition), index as i64);
            GroupRecord::Offset {
                group,
                topic: TOPIC.into(),
                partition,
                value: Some(CommittedOffset {
                    offset: index as i64,
                    leader_epoch: -1,
                    metadata: String::new(),
                    commit_timestamp: 0,
                    expire_timestamp: None,
                }),
            }
        } else if roll < 97 {
            let partition = sequence.next(4) as i32;
            expected_offsets.remove(&(group.clone(), partition));
            GroupRecord::Offset {
                group,
                topic: TOPIC.into(),
                partition,
                value: None,
            }
        } else if roll < 99 {
            expected_generation.insert(group.clone(), index as i32);
            GroupRecord::Group {
                group,
                value: Some(StoredGroup {
                    protocol_type: "consumer".into(),
                    generation: index as i32,
                    protocol: None,
                    leader: None,
                    state_timestamp: 0,
                    members: Vec::new(),
                }),
            }
        } else {
            expected_generation.remove(&group);
            GroupRecord::Group { group, value: None }
        };
        batch.push(record);
        if batch.len() == PER_BATCH {
            let encoded = records::encode_batch(&batch, 0);
            batch.clear();
            let target = partition.clone();
            let outcome = shard
                .simulation
                .block_on(async move { target.append(encoded).await });
            assert!(outcome.is_ok(), "appended");
        }
    }

    shard.state.groups.partition_closed(0);
    let started = std::time::Instant::now();
    shard.state.groups.partition_opened(partition);
    shard.simulation.run_until_stalled();
    let elapsed = started.elapsed();
    eprintln!("replayed {RECORDS} records in {elapsed:?}");
    let coordinator = shard.state.groups.get(0).expect("coordinator");
    assert!(coordinator.is_loaded());
    // Generous on a shared machine: the point is linear, not quadratic, time.
    assert!(
        elapsed < Duration::from_secs(20),
        "replaying {RECORDS} records took {elapsed:?}"
    );

    for group in groups {
        let committed = coordinator.committed(group, None);
        let found: BTreeMap<(String, i32), i64> = committed
            .into_iter()
            .flat_map(|(topic, partitions)| {
                assert_eq!(topic, TOPIC);
                partitions.into_iter().map(|(partition, value)| {
                    ((group.to_string(), partition), value.unwrap().offset)
                })
            })
            .collect();
        let wanted: BTreeMap<(String, i32), i64> = expected_offsets
            .iter()
            .filter(|((name, _), _)| name == group)
            .map(|(key, offset)| (key.clone(), *offset))
            .collect();
        assert_eq!(found, wanted, "offsets of {group}");
        let listed = coordinator
            .list()
            .into_iter()
            .find(|(name, _, _)| name == group);
        match expected_generation.get(group) {
            Some(_) => assert!(listed.is_some(), "{group} has metadata"),
            None if wanted.is_empty() => assert!(listed.is_none(), "{group} is gone"),
            None => {}
        }
    }
    for group in expected_generation.keys() {
        let described = coordinator.describe(group);
        assert_eq!(
            described.protocol_type.to_string(),
            "consumer",
            "{group} restored"
        );
    }
}
