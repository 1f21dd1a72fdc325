//! Transactional offsets (TxnOffsetCommit) through the handlers, on the manual clock: pending offsets are
//! invisible to OffsetFetch (UNSTABLE_OFFSET_COMMIT with `require_stable`) until a COMMIT marker written
//! through the partition manager makes them committed; an ABORT drops them; a replay of
//! `__consumer_offsets` rebuilds committed, aborted and still-pending transactions; the group checks of
//! v3+ and the log's producer-epoch check.

use super::TestShard;
use crate::control::{control, ControlRequest, NewTopic};
use crate::group::OFFSETS_TOPIC;
use crate::partition::requests::MarkerItem;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::offset_commit_request::{
    OffsetCommitRequestPartition, OffsetCommitRequestTopic,
};
use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
use kafka_protocol::messages::sync_group_request::SyncGroupRequestAssignment;
use kafka_protocol::messages::txn_offset_commit_request::{
    TxnOffsetCommitRequestPartition, TxnOffsetCommitRequestTopic,
};
use kafka_protocol::messages::{
    ApiKey, DeleteGroupsRequest, DeleteGroupsResponse, FindCoordinatorRequest,
    FindCoordinatorResponse, GroupId, InitProducerIdRequest, InitProducerIdResponse,
    JoinGroupRequest, JoinGroupResponse, OffsetCommitRequest, OffsetCommitResponse,
    OffsetFetchRequest, OffsetFetchResponse, ProducerId, SyncGroupRequest, SyncGroupResponse,
    TopicName, TxnOffsetCommitRequest, TxnOffsetCommitResponse,
};
use kafka_protocol::protocol::StrBytes;
use std::collections::BTreeMap;
use std::time::Duration;
use storage::TxnMarker;

const TOPIC: &str = "input";

fn group_id(name: &str) -> GroupId {
    GroupId(StrBytes::from_string(name.to_string()))
}

fn shard_with_topic(adjust: impl FnOnce(&mut crate::config::BrokerConfig)) -> TestShard {
    let mut shard = TestShard::start(|config| {
        config.groups.initial_rebalance_delay_ms = 0;
        adjust(config);
    });
    let state = shard.state.clone();
    let request = ControlRequest::CreateTopics {
        topics: vec![NewTopic {
            name: TOPIC.to_string(),
            partitions: 2,
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

/// A fresh producer id (InitProducerId without a transactional id: epoch 0).
fn producer_id(shard: &mut TestShard) -> i64 {
    let mut request = InitProducerIdRequest::default();
    request.transactional_id = None;
    request.transaction_timeout_ms = 60_000;
    let response: InitProducerIdResponse = shard.call(ApiKey::InitProducerId, 4, &request);
    assert_eq!(response.error_code, 0);
    response.producer_id.0
}

/// The member a TxnOffsetCommit names (v3+).
#[derive(Default)]
struct Member {
    member_id: String,
    instance_id: Option<String>,
    generation: i32,
}

fn simple_member() -> Member {
    Member {
        generation: -1,
        ..Member::default()
    }
}

/// TxnOffsetCommit `version` of `(partition, offset)`s of the topic: each partition's error code.
fn txn_commit(
    shard: &mut TestShard,
    version: i16,
    group: &str,
    producer: (i64, i16),
    member: &Member,
    offsets: &[(i32, i64)],
) -> Vec<i16> {
    let mut topic = TxnOffsetCommitRequestTopic::default();
    topic.name = TopicName(StrBytes::from_static_str(TOPIC));
    topic.partitions = offsets
        .iter()
        .map(|&(index, offset)| {
            let mut partition = TxnOffsetCommitRequestPartition::default();
            partition.partition_index = index;
            partition.committed_offset = offset;
            partition.committed_metadata = Some(StrBytes::from_static_str("txn"));
            partition
        })
        .collect();
    let mut request = TxnOffsetCommitRequest::default();
    request.transactional_id = StrBytes::from_static_str("txn-id").into();
    request.group_id = group_id(group);
    request.producer_id = ProducerId(producer.0);
    request.producer_epoch = producer.1;
    request.member_id = StrBytes::from_string(member.member_id.clone());
    request.group_instance_id = member.instance_id.clone().map(StrBytes::from_string);
    request.generation_id = member.generation;
    request.topics = vec![topic];
    let response: TxnOffsetCommitResponse = shard.call(ApiKey::TxnOffsetCommit, version, &request);
    assert_eq!(response.topics.len(), 1);
    response.topics[0]
        .partitions
        .iter()
        .map(|partition| partition.error_code)
        .collect()
}

fn plain_commit(shard: &mut TestShard, group: &str, partition_index: i32, offset: i64) {
    let mut partition = OffsetCommitRequestPartition::default();
    partition.partition_index = partition_index;
    partition.committed_offset = offset;
    let mut topic = OffsetCommitRequestTopic::default();
    topic.name = TopicName(StrBytes::from_static_str(TOPIC));
    topic.partitions = vec![partition];
    let mut request = OffsetCommitRequest::default();
    request.group_id = group_id(group);
    request.generation_id_or_member_epoch = -1;
    request.topics = vec![topic];
    let response: OffsetCommitResponse = shard.call(ApiKey::OffsetCommit, 8, &request);
    assert_eq!(response.topics[0].partitions[0].error_code, 0, "committed");
}

/// OffsetFetch v7 of one partition: (error code, committed offset).
fn fetch(
    shard: &mut TestShard,
    group: &str,
    partition_index: i32,
    require_stable: bool,
) -> (i16, i64) {
    let mut topic = OffsetFetchRequestTopic::default();
    topic.name = TopicName(StrBytes::from_static_str(TOPIC));
    topic.partition_indexes = vec![partition_index];
    let mut request = OffsetFetchRequest::default();
    request.group_id = group_id(group);
    request.topics = Some(vec![topic]);
    request.require_stable = require_stable;
    let response: OffsetFetchResponse = shard.call(ApiKey::OffsetFetch, 7, &request);
    assert_eq!(response.error_code, 0);
    let partition = &response.topics[0].partitions[0];
    (partition.error_code, partition.committed_offset)
}

/// The committed offset a read_uncommitted-style fetch sees (no error expected).
fn committed(shard: &mut TestShard, group: &str, partition_index: i32) -> i64 {
    let (error, offset) = fetch(shard, group, partition_index, false);
    assert_eq!(error, 0);
    offset
}

const UNSTABLE: i16 = 88;

/// Writes `producer_id`'s marker to the offsets partition as the transaction coordinator does.
fn write_marker(shard: &mut TestShard, producer_id: i64, producer_epoch: i16, commit: bool) {
    let state = shard.state.clone();
    let marker = TxnMarker {
        producer_id,
        producer_epoch,
        coordinator_epoch: 0,
        commit,
    };
    let outcomes = shard.simulation.block_on(async move {
        state
            .partitions
            .write_markers(vec![MarkerItem {
                topic: OFFSETS_TOPIC.to_string(),
                partition: 0,
                marker,
            }])
            .await
    });
    assert!(outcomes[0].is_ok(), "marker written: {outcomes:?}");
    shard.simulation.run_until_stalled();
}

/// Closes and reopens the coordinator partition: a replay of `__consumer_offsets`.
fn reload(shard: &mut TestShard) {
    let partition = shard.state.partitions.get(OFFSETS_TOPIC, 0).unwrap();
    shard.state.groups.partition_closed(0);
    shard.state.groups.partition_opened(partition);
    shard.simulation.run_until_stalled();
    assert!(shard.state.groups.get(0).unwrap().is_loaded());
}

#[test]
fn transactional_offsets_are_pending_until_a_commit_marker() {
    let mut shard = shard_with_topic(|_| {});
    let producer = producer_id(&mut shard);
    plain_commit(&mut shard, "g", 0, 3);
    let member = simple_member();
    assert_eq!(
        txn_commit(&mut shard, 4, "g", (producer, 0), &member, &[(0, 10)]),
        vec![0]
    );
    // A second commit of the same producer in the same transaction (base sequence 0 again) is appended,
    // not taken for a duplicate; the later one wins.
    assert_eq!(
        txn_commit(&mut shard, 4, "g", (producer, 0), &member, &[(0, 11)]),
        vec![0]
    );
    assert_eq!(
        committed(&mut shard, "g", 0),
        3,
        "pending offsets are invisible"
    );
    assert_eq!(fetch(&mut shard, "g", 0, true), (UNSTABLE, -1));
    assert_eq!(
        fetch(&mut shard, "g", 1, true),
        (0, -1),
        "other partitions are stable"
    );
    assert_eq!(
        shard.state.groups.get(0).unwrap().open_transactions(),
        vec![producer]
    );

    write_marker(&mut shard, producer, 0, true);
    assert_eq!(fetch(&mut shard, "g", 0, true), (0, 11));
    assert_eq!(committed(&mut shard, "g", 0), 11);
    assert!(shard
        .state
        .groups
        .get(0)
        .unwrap()
        .open_transactions()
        .is_empty());
    // The committed offset survives a replay.
    reload(&mut shard);
    assert_eq!(fetch(&mut shard, "g", 0, true), (0, 11));
}

#[test]
fn an_abort_marker_drops_the_pending_offsets() {
    let mut shard = shard_with_topic(|_| {});
    let producer = producer_id(&mut shard);
    plain_commit(&mut shard, "g", 0, 3);
    let member = simple_member();
    assert_eq!(
        txn_commit(
            &mut shard,
            3,
            "g",
            (producer, 0),
            &member,
            &[(0, 10), (1, 20)]
        ),
        vec![0, 0]
    );
    write_marker(&mut shard, producer, 0, false);
    assert_eq!(fetch(&mut shard, "g", 0, true), (0, 3));
    assert_eq!(fetch(&mut shard, "g", 1, true), (0, -1));
    // A marker of a producer without pending offsets here changes nothing.
    write_marker(&mut shard, producer + 1, 0, true);
    assert_eq!(committed(&mut shard, "g", 0), 3);
    reload(&mut shard);
    assert_eq!(fetch(&mut shard, "g", 0, true), (0, 3));
    assert_eq!(fetch(&mut shard, "g", 1, true), (0, -1));
}

#[test]
fn replay_rebuilds_committed_aborted_and_pending_transactions() {
    let mut shard = shard_with_topic(|_| {});
    let committing = producer_id(&mut shard);
    let aborting = producer_id(&mut shard);
    let open = producer_id(&mut shard);
    let member = simple_member();
    plain_commit(&mut shard, "committed", 1, 1);
    assert_eq!(
        txn_commit(
            &mut shard,
            4,
            "committed",
            (committing, 0),
            &member,
            &[(0, 5), (1, 5)]
        ),
        vec![0, 0]
    );
    // A plain commit written after the transaction's record wins when the transaction commits.
    plain_commit(&mut shard, "committed", 1, 7);
    plain_commit(&mut shard, "aborted", 0, 2);
    assert_eq!(
        txn_commit(&mut shard, 4, "aborted", (aborting, 0), &member, &[(0, 9)]),
        vec![0]
    );
    assert_eq!(
        txn_commit(&mut shard, 4, "open", (open, 0), &member, &[(0, 4)]),
        vec![0]
    );
    write_marker(&mut shard, committing, 0, true);
    write_marker(&mut shard, aborting, 0, false);
    let check = |shard: &mut TestShard| {
        assert_eq!(fetch(shard, "committed", 0, true), (0, 5));
        assert_eq!(
            fetch(shard, "committed", 1, true),
            (0, 7),
            "the later plain commit"
        );
        assert_eq!(fetch(shard, "aborted", 0, true), (0, 2));
        assert_eq!(fetch(shard, "open", 0, true), (UNSTABLE, -1));
        assert_eq!(fetch(shard, "open", 0, false), (0, -1));
    };
    check(&mut shard);
    reload(&mut shard);
    check(&mut shard);
    assert_eq!(
        shard.state.groups.get(0).unwrap().open_transactions(),
        vec![open]
    );
    // The transaction coordinator re-sends the open transaction's marker after the replay.
    write_marker(&mut shard, open, 0, true);
    assert_eq!(fetch(&mut shard, "open", 0, true), (0, 4));
    reload(&mut shard);
    assert_eq!(fetch(&mut shard, "open", 0, true), (0, 4));
}

/// Joins `group` as its only member (static when `instance_id` is given) and syncs.
fn join_and_sync(shard: &mut TestShard, group: &str, instance_id: Option<&str>) -> Member {
    let mut protocol = JoinGroupRequestProtocol::default();
    protocol.name = StrBytes::from_static_str("range");
    protocol.metadata = bytes::Bytes::from_static(b"\x00\x00\x00\x00\x00\x00\xff\xff\xff\xff");
    let mut join = JoinGroupRequest::default();
    join.group_id = group_id(group);
    join.session_timeout_ms = 60_000;
    join.rebalance_timeout_ms = 60_000;
    join.protocol_type = StrBytes::from_static_str("consumer");
    join.protocols = vec![protocol];
    join.group_instance_id = instance_id.map(|id| StrBytes::from_string(id.to_string()));
    let mut joined: JoinGroupResponse = shard.call(ApiKey::JoinGroup, 5, &join);
    if joined.error_code == ResponseError::MemberIdRequired.code() {
        join.member_id = joined.member_id;
        joined = shard.call(ApiKey::JoinGroup, 5, &join);
    }
    assert_eq!(joined.error_code, 0, "joined");
    let mut assignment = SyncGroupRequestAssignment::default();
    assignment.member_id = joined.member_id.clone();
    let mut sync = SyncGroupRequest::default();
    sync.group_id = group_id(group);
    sync.generation_id = joined.generation_id;
    sync.member_id = joined.member_id.clone();
    sync.group_instance_id = join.group_instance_id.clone();
    sync.assignments = vec![assignment];
    let synced: SyncGroupResponse = shard.call(ApiKey::SyncGroup, 3, &sync);
    assert_eq!(synced.error_code, 0, "synced");
    Member {
        member_id: joined.member_id.to_string(),
        instance_id: instance_id.map(str::to_string),
        generation: joined.generation_id,
    }
}

#[test]
fn the_group_and_the_producer_epoch_are_checked() {
    let mut shard = shard_with_topic(|_| {});
    let producer = producer_id(&mut shard);
    let member = join_and_sync(&mut shard, "consumers", Some("instance-1"));
    let code = |error: ResponseError| error.code();

    // v3+: the member must be the group's, of its generation, with its instance id.
    let stale = Member {
        generation: member.generation + 1,
        ..Member {
            member_id: member.member_id.clone(),
            instance_id: member.instance_id.clone(),
            generation: 0,
        }
    };
    assert_eq!(
        txn_commit(&mut shard, 3, "consumers", (producer, 0), &stale, &[(0, 1)]),
        vec![code(ResponseError::IllegalGeneration)]
    );
    let unknown = Member {
        member_id: "someone-else".into(),
        instance_id: None,
        generation: member.generation,
    };
    assert_eq!(
        txn_commit(
            &mut shard,
            3,
            "consumers",
            (producer, 0),
            &unknown,
            &[(0, 1)]
        ),
        vec![code(ResponseError::UnknownMemberId)]
    );
    let fenced = Member {
        member_id: "someone-else".into(),
        instance_id: Some("instance-1".into()),
        generation: member.generation,
    };
    assert_eq!(
        txn_commit(
            &mut shard,
            3,
            "consumers",
            (producer, 0),
            &fenced,
            &[(0, 1)]
        ),
        vec![code(ResponseError::FencedInstanceId)]
    );
    assert_eq!(
        txn_commit(
            &mut shard,
            3,
            "no-such-group",
            (producer, 0),
            &member,
            &[(0, 1)]
        ),
        vec![code(ResponseError::IllegalGeneration)]
    );
    assert_eq!(
        txn_commit(
            &mut shard,
            3,
            "consumers",
            (producer, 0),
            &member,
            &[(0, 1)]
        ),
        vec![0]
    );
    // v0–2 name no member: accepted whatever the group's state.
    assert_eq!(
        txn_commit(
            &mut shard,
            2,
            "consumers",
            (producer, 0),
            &simple_member(),
            &[(1, 2)]
        ),
        vec![0]
    );

    // A newer epoch of the producer fences the older one in the offsets partition's log.
    assert_eq!(
        txn_commit(
            &mut shard,
            4,
            "consumers",
            (producer, 1),
            &member,
            &[(0, 3)]
        ),
        vec![0]
    );
    assert_eq!(
        txn_commit(
            &mut shard,
            4,
            "consumers",
            (producer, 0),
            &member,
            &[(0, 4)]
        ),
        vec![code(ResponseError::InvalidProducerEpoch)]
    );

    // Unknown partitions, an empty group id, no producer.
    assert_eq!(
        txn_commit(
            &mut shard,
            4,
            "consumers",
            (producer, 1),
            &member,
            &[(0, 5), (7, 5)]
        ),
        vec![0, code(ResponseError::UnknownTopicOrPartition)]
    );
    assert_eq!(
        txn_commit(
            &mut shard,
            4,
            "",
            (producer, 1),
            &simple_member(),
            &[(0, 5)]
        ),
        vec![code(ResponseError::InvalidGroupId)]
    );
    assert_eq!(
        txn_commit(&mut shard, 4, "consumers", (-1, -1), &member, &[(0, 5)]),
        vec![code(ResponseError::InvalidProducerIdMapping)]
    );
    write_marker(&mut shard, producer, 1, true);
    assert_eq!(fetch(&mut shard, "consumers", 0, true), (0, 5));
    assert_eq!(fetch(&mut shard, "consumers", 1, true), (0, 2));
}

#[test]
fn pending_offsets_keep_their_group_from_expiry_and_deletion_tombstones_them() {
    let mut shard = shard_with_topic(|config| {
        config.groups.offsets_retention_minutes = 1;
        config.groups.offsets_retention_check_interval_ms = 1_000;
    });
    let producer = producer_id(&mut shard);
    let member = simple_member();
    plain_commit(&mut shard, "g", 0, 3);
    assert_eq!(
        txn_commit(&mut shard, 4, "g", (producer, 0), &member, &[(0, 10)]),
        vec![0]
    );
    // Past the retention: the committed offset of a partition with a pending transactional offset stays.
    shard.simulation.advance(Duration::from_secs(62));
    assert_eq!(committed(&mut shard, "g", 0), 3);
    write_marker(&mut shard, producer, 0, true);
    assert_eq!(committed(&mut shard, "g", 0), 10);

    // DeleteGroups of an empty group with a pending transaction deletes it, pending offsets included
    // (as Kafka does): the transaction's commit then finds nothing.
    let other = producer_id(&mut shard);
    assert_eq!(
        txn_commit(&mut shard, 4, "h", (other, 0), &member, &[(0, 8)]),
        vec![0]
    );
    let mut delete = DeleteGroupsRequest::default();
    delete.groups_names = vec![group_id("h")];
    let deleted: DeleteGroupsResponse = shard.call(ApiKey::DeleteGroups, 2, &delete);
    assert_eq!(deleted.results[0].error_code, 0);
    write_marker(&mut shard, other, 0, true);
    assert_eq!(fetch(&mut shard, "h", 0, true), (0, -1));
    reload(&mut shard);
    assert_eq!(fetch(&mut shard, "h", 0, true), (0, -1));
    assert_eq!(committed(&mut shard, "g", 0), 10);
}

#[test]
fn a_marker_written_while_the_commit_is_being_appended_ends_it() {
    let mut shard = shard_with_topic(|_| {});
    let producer = producer_id(&mut shard);
    for commit in [false, true] {
        let group = if commit { "committed" } else { "aborted" };
        let mut topic = TxnOffsetCommitRequestTopic::default();
        topic.name = TopicName(StrBytes::from_static_str(TOPIC));
        let mut partition = TxnOffsetCommitRequestPartition::default();
        partition.committed_offset = 6;
        topic.partitions = vec![partition];
        let mut request = TxnOffsetCommitRequest::default();
        request.group_id = group_id(group);
        request.producer_id = ProducerId(producer);
        request.topics = vec![topic];
        // The commit and the marker (the coordinator aborting on a timeout, say) are both started before
        // either is answered; the commit's record is first in the log. (On the std file layer the
        // commit's append completes within its first poll, so this pins down the outcome; the branch
        // for a marker heard while the append is still in flight is not reached here.)
        let pending = shard.send(ApiKey::TxnOffsetCommit, 3, &request);
        let state = shard.state.clone();
        let marker = TxnMarker {
            producer_id: producer,
            producer_epoch: 0,
            coordinator_epoch: 0,
            commit,
        };
        let written = shard.simulation.spawn(async move {
            state
                .partitions
                .write_markers(vec![MarkerItem {
                    topic: OFFSETS_TOPIC.to_string(),
                    partition: 0,
                    marker,
                }])
                .await
        });
        shard.simulation.run_until_stalled();
        assert!(written.take_output().expect("marker written")[0].is_ok());
        let frame = pending
            .take_output()
            .expect("answered")
            .expect("a response");
        let response: TxnOffsetCommitResponse =
            super::decode_response(ApiKey::TxnOffsetCommit, 3, frame);
        assert_eq!(response.topics[0].partitions[0].error_code, 0);
        let expected = if commit { 6 } else { -1 };
        assert_eq!(fetch(&mut shard, group, 0, true), (0, expected), "{group}");
    }
    assert!(shard
        .state
        .groups
        .get(0)
        .unwrap()
        .open_transactions()
        .is_empty());
    reload(&mut shard);
    assert_eq!(fetch(&mut shard, "aborted", 0, true), (0, -1));
    assert_eq!(fetch(&mut shard, "committed", 0, true), (0, 6));
}
