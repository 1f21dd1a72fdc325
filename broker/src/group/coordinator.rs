//! One coordinator partition: the groups whose id hashes to one partition of `__consumer_offsets`, on
//! the shard that owns that partition.
//!
//! Each operation checks and changes the groups synchronously (no borrow is held across an await),
//! appends what must survive a restart to the partition, and only then acknowledges it. Appends are
//! started in the order the changes were made (a future's first poll assigns its offsets), so replaying
//! the partition in log order rebuilds the same state. A change that raced with the append (a rebalance
//! began while a leader's assignment was being written) is detected afterwards by its generation and
//! dropped, as Kafka does.

use super::records::{self, CommittedOffset, GroupRecord, StoredGroup};
use super::state::{join_error, sync_error, Group, GroupState, JoinParams};
use crate::config::GroupConfig;
use crate::partitions::{append_records, Partition};
use crate::protocol::str_bytes;
use crate::shard_state::now_ms;
use bytes::Bytes;
use futures_channel::oneshot;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::{
    ConsumerProtocolSubscription, GroupId, JoinGroupResponse, SyncGroupResponse,
};
use std::cell::{Cell, RefCell};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::rc::Rc;
use std::time::{Duration, Instant};
use storage::types::Offset;
use uuid::Uuid;

/// Bytes read per round while replaying a partition.
const LOAD_READ_BYTES: usize = 1 << 20;

pub struct CoordinatorPartition {
    partition: Rc<Partition>,
    config: GroupConfig,
    load: Cell<LoadState>,
    groups: RefCell<HashMap<String, Group>>,
}

/// Where a coordinator partition is in its life: requests are served only when `Loaded`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum LoadState {
    /// Replaying the partition (requests get COORDINATOR_LOAD_IN_PROGRESS).
    Loading,
    Loaded,
    /// The partition closed (requests get NOT_COORDINATOR); a replay still running discards its result.
    Unloaded,
}

/// A member's position in a group, as requests name it.
pub struct MemberRef<'a> {
    pub member_id: &'a str,
    pub instance_id: Option<&'a str>,
    pub generation: i32,
}

/// What a join does once the groups are no longer borrowed.
enum JoinStep {
    Answer(Box<JoinGroupResponse>),
    /// The response is parked in the member until the join phase ends.
    Wait(oneshot::Receiver<JoinGroupResponse>),
    /// Store the group first, then answer.
    StoreThenAnswer(StoredGroup, Box<JoinGroupResponse>),
}

/// Committed offsets by topic: (partition, offset if one is committed).
pub type CommittedByTopic = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

/// A listed group: (id, protocol type, state).
pub type ListedGroup = (String, String, GroupState);

impl CoordinatorPartition {
    pub fn new(partition: Rc<Partition>, config: GroupConfig) -> CoordinatorPartition {
        CoordinatorPartition {
            partition,
            config,
            load: Cell::new(LoadState::Loading),
            groups: RefCell::new(HashMap::new()),
        }
    }

    pub fn index(&self) -> i32 {
        self.partition.index
    }

    pub fn is_loaded(&self) -> bool {
        self.load.get() == LoadState::Loaded
    }

    /// The partition is gone (shutdown): parked responses are dropped, requests get NOT_COORDINATOR.
    pub fn unload(&self) {
        self.load.set(LoadState::Unloaded);
        self.groups.borrow_mut().clear();
    }

    fn initial_delay(&self) -> Duration {
        Duration::from_millis(self.config.initial_rebalance_delay_ms)
    }

    /// Replays the partition from its start: the last record of each key wins.
    pub async fn load(&self) {
        let started = Instant::now();
        let log = &self.partition.log;
        let end = self.partition.high_watermark();
        let mut offset = log.log_start_offset();
        let mut groups: HashMap<String, Group> = HashMap::new();
        let mut count = 0usize;
        // Bounded: every round moves `offset` past at least one batch, and stops at `end`.
        while offset < end {
            // Loading is rare: the batches come joined in one buffer, cut at batch boundaries below.
            let joined = match log.read(offset, LOAD_READ_BYTES, end, true).await {
                Ok(joined) => joined,
                Err(error) => {
                    tracing::error!(partition = self.index(), %error, "cannot load group coordinator partition; it stays unavailable");
                    return;
                }
            };
            if joined.is_empty() {
                break;
            }
            let before = offset;
            for (position, header) in storage::batch::iter_batches(&joined) {
                offset = Offset(header.last_offset() + 1);
                let batch = joined.slice(position..position + header.total_size());
                match records::decode_batch(batch) {
                    Ok(decoded) => {
                        count += decoded.len();
                        for record in decoded {
                            apply_record(&mut groups, record);
                        }
                    }
                    Err(error) => {
                        tracing::error!(partition = self.index(), base_offset = header.base_offset, %error, "skipping an unreadable batch");
                    }
                }
            }
            if offset == before {
                tracing::error!(
                    partition = self.index(),
                    offset = offset.0,
                    "group coordinator load made no progress; it stays unavailable"
                );
                return;
            }
        }
        if self.load.get() == LoadState::Unloaded {
            return;
        }
        let now = Instant::now();
        for group in groups.values_mut() {
            for member in group.members.values_mut() {
                member.heartbeat_deadline = now + member.session_timeout;
            }
        }
        let elapsed_ms = started.elapsed().as_millis() as u64;
        if groups.is_empty() {
            tracing::debug!(
                partition = self.index(),
                records = count,
                elapsed_ms,
                "group coordinator loaded"
            );
        } else {
            tracing::info!(
                partition = self.index(),
                groups = groups.len(),
                records = count,
                elapsed_ms,
                "group coordinator loaded"
            );
        }
        *self.groups.borrow_mut() = groups;
        self.load.set(LoadState::Loaded);
    }

    /// Appends `records` to the partition; the error is the one a group client expects.
    async fn append(&self, records: &[GroupRecord]) -> Result<(), ResponseError> {
        if records.is_empty() {
            return Ok(());
        }
        let batch = records::encode_batch(records, now_ms());
        append_records(self.partition.clone(), batch)
            .await
            .map(|_| ())
            .map_err(|(code, message)| {
                tracing::warn!(partition = self.index(), ?code, %message, "cannot write group state");
                match code {
                    ResponseError::NotLeaderOrFollower => ResponseError::NotCoordinator,
                    ResponseError::MessageTooLarge | ResponseError::RecordListTooLarge => {
                        ResponseError::InvalidCommitOffsetSize
                    }
                    _ => ResponseError::CoordinatorNotAvailable,
                }
            })
    }

    async fn store_group(&self, group_id: &str, stored: StoredGroup) -> Result<(), ResponseError> {
        self.append(&[GroupRecord::Group {
            group: group_id.to_string(),
            value: Some(stored),
        }])
        .await
    }

    // ----------------------------------------------------------------------------------------------
    // JoinGroup / SyncGroup / Heartbeat / LeaveGroup

    pub async fn join(
        &self,
        group_id: String,
        params: JoinParams,
        version: i16,
    ) -> JoinGroupResponse {
        let now = Instant::now();
        let session_ms = params.session_timeout.as_millis() as i64;
        if group_id.is_empty() {
            return join_error(ResponseError::InvalidGroupId, &params.member_id);
        }
        if session_ms < self.config.min_session_timeout_ms as i64
            || session_ms > self.config.max_session_timeout_ms as i64
        {
            return join_error(ResponseError::InvalidSessionTimeout, &params.member_id);
        }
        let step = {
            let mut groups = self.groups.borrow_mut();
            if !groups.contains_key(&group_id) {
                if !params.member_id.is_empty() {
                    return join_error(ResponseError::UnknownMemberId, &params.member_id);
                }
                groups.insert(group_id.clone(), Group::new(group_id.clone(), now_ms()));
            }
            let group = groups.get_mut(&group_id).expect("inserted above");
            if group.state == GroupState::Dead {
                return join_error(ResponseError::CoordinatorNotAvailable, &params.member_id);
            }
            if !group.supports(&params.protocol_type, &params.protocols) {
                return join_error(ResponseError::InconsistentGroupProtocol, &params.member_id);
            }
            self.join_locked(group, &params, now, version)
        };
        match step {
            JoinStep::Answer(response) => *response,
            // A static member came back while the group is stable: no rebalance, only its new id is stored.
            JoinStep::StoreThenAnswer(stored, response) => {
                match self.store_group(&group_id, stored).await {
                    Ok(()) => *response,
                    Err(code) => join_error(code, &params.member_id),
                }
            }
            JoinStep::Wait(receiver) => receiver.await.unwrap_or_else(|_| {
                join_error(ResponseError::RebalanceInProgress, &params.member_id)
            }),
        }
    }

    /// The synchronous part of a join.
    fn join_locked(
        &self,
        group: &mut Group,
        params: &JoinParams,
        now: Instant,
        version: i16,
    ) -> JoinStep {
        let delay = self.initial_delay();
        if params.member_id.is_empty() {
            let prefix = params.instance_id.as_deref().unwrap_or(&params.client_id);
            let new_id = format!("{prefix}-{}", Uuid::new_v4());
            if let Some(instance) = params.instance_id.as_deref() {
                if group.static_members.contains_key(instance) {
                    group.replace_static_member(instance, new_id.clone(), params);
                    let member = group.members.get_mut(&new_id).expect("just replaced");
                    member.heartbeat_deadline = now + member.session_timeout;
                    match group.state {
                        GroupState::Stable if group.protocol == group.select_protocol() => {
                            tracing::info!(group = %group.id, instance, member = %new_id, "static member rejoined; no rebalance");
                            let is_leader = group.leader.as_deref() == Some(new_id.as_str());
                            let response = group.join_response(&new_id, is_leader && version >= 9);
                            return JoinStep::StoreThenAnswer(
                                group.stored(None),
                                Box::new(response),
                            );
                        }
                        GroupState::PreparingRebalance => {}
                        _ => group.prepare_rebalance(
                            now,
                            delay,
                            "static member rejoined with other metadata",
                        ),
                    }
                    let receiver = park_join(group, &new_id);
                    group.try_complete_join(now);
                    return JoinStep::Wait(receiver);
                }
            } else if params.require_known_member_id {
                group
                    .pending
                    .insert(new_id.clone(), now + params.session_timeout);
                return JoinStep::Answer(Box::new(join_error(
                    ResponseError::MemberIdRequired,
                    &new_id,
                )));
            }
            group.add_member(params, new_id.clone(), now);
            return JoinStep::Wait(self.park_and_rebalance(group, &new_id, now));
        }

        let member_id = params.member_id.as_str();
        if group.is_fenced(params.instance_id.as_deref(), member_id) {
            return JoinStep::Answer(Box::new(join_error(
                ResponseError::FencedInstanceId,
                member_id,
            )));
        }
        if group.pending.contains_key(member_id) {
            group.add_member(params, member_id.to_string(), now);
            return JoinStep::Wait(self.park_and_rebalance(group, member_id, now));
        }
        let Some(member) = group.members.get_mut(member_id) else {
            return JoinStep::Answer(Box::new(join_error(
                ResponseError::UnknownMemberId,
                member_id,
            )));
        };
        let unchanged = member.same_protocols(&params.protocols);
        member.protocols = params.protocols.clone();
        member.session_timeout = params.session_timeout;
        member.rebalance_timeout = params.rebalance_timeout;
        member.client_id = params.client_id.clone();
        member.client_host = params.client_host.clone();
        member.heartbeat_deadline = now + params.session_timeout;
        let is_leader = group.leader.as_deref() == Some(member_id);
        match group.state {
            GroupState::PreparingRebalance => {
                let receiver = park_join(group, member_id);
                group.try_complete_join(now);
                JoinStep::Wait(receiver)
            }
            // The member lost the previous answer: give it again.
            GroupState::CompletingRebalance if unchanged => {
                JoinStep::Answer(Box::new(group.join_response(member_id, false)))
            }
            // A follower with unchanged metadata: nothing to do.
            GroupState::Stable if unchanged && !is_leader => {
                JoinStep::Answer(Box::new(group.join_response(member_id, false)))
            }
            GroupState::CompletingRebalance | GroupState::Stable => {
                JoinStep::Wait(self.park_and_rebalance(group, member_id, now))
            }
            GroupState::Empty | GroupState::Dead => JoinStep::Answer(Box::new(join_error(
                ResponseError::UnknownMemberId,
                member_id,
            ))),
        }
    }

    /// Parks `member_id`'s join and starts (or continues) the join phase.
    fn park_and_rebalance(
        &self,
        group: &mut Group,
        member_id: &str,
        now: Instant,
    ) -> oneshot::Receiver<JoinGroupResponse> {
        let receiver = park_join(group, member_id);
        match group.state {
            GroupState::PreparingRebalance => group.extend_initial_delay(now, self.initial_delay()),
            GroupState::Empty => {
                group.prepare_rebalance(now, self.initial_delay(), "first member joined")
            }
            _ => group.prepare_rebalance(now, Duration::ZERO, "member joined or changed metadata"),
        }
        group.try_complete_join(now);
        receiver
    }

    pub async fn sync(
        &self,
        group_id: &str,
        member: MemberRef<'_>,
        protocol: (Option<String>, Option<String>),
        assignments: Vec<(String, Bytes)>,
    ) -> SyncGroupResponse {
        let now = Instant::now();
        let (receiver, leader_assignment) = {
            let mut groups = self.groups.borrow_mut();
            let group = match check_member(&mut groups, group_id, &member, now) {
                Ok(group) => group,
                Err(code) => return sync_error(code),
            };
            let (protocol_type, protocol_name) = protocol;
            if protocol_type.is_some_and(|wanted| group.protocol_type.as_ref() != Some(&wanted))
                || protocol_name.is_some_and(|wanted| group.protocol.as_ref() != Some(&wanted))
            {
                return sync_error(ResponseError::InconsistentGroupProtocol);
            }
            match group.state {
                GroupState::PreparingRebalance => {
                    return sync_error(ResponseError::RebalanceInProgress)
                }
                GroupState::Stable => {
                    let mut response = SyncGroupResponse::default();
                    response.protocol_type = group.protocol_type.clone().map(str_bytes);
                    response.protocol_name = group.protocol.clone().map(str_bytes);
                    response.assignment = group.members[member.member_id].assignment.clone();
                    return response;
                }
                GroupState::CompletingRebalance => {}
                GroupState::Empty | GroupState::Dead => {
                    return sync_error(ResponseError::UnknownMemberId)
                }
            }
            let (sender, receiver) = oneshot::channel();
            group
                .members
                .get_mut(member.member_id)
                .expect("checked")
                .awaiting_sync = Some(sender);
            let leader_assignment =
                (group.leader.as_deref() == Some(member.member_id)).then(|| {
                    let map: HashMap<String, Bytes> = assignments.into_iter().collect();
                    (group.stored(Some(&map)), map, group.generation)
                });
            (receiver, leader_assignment)
        };
        if let Some((stored, map, generation)) = leader_assignment {
            let result = self.store_group(group_id, stored).await;
            let mut groups = self.groups.borrow_mut();
            if let Some(group) = groups.get_mut(group_id).filter(|group| {
                group.state == GroupState::CompletingRebalance && group.generation == generation
            }) {
                match result {
                    Ok(()) => group.complete_sync(&map),
                    Err(code) => {
                        for waiting in group.members.values_mut() {
                            if let Some(sync) = waiting.awaiting_sync.take() {
                                let _ = sync.send(sync_error(code));
                            }
                        }
                        group.prepare_rebalance(now, Duration::ZERO, "assignment not stored");
                    }
                }
            }
        }
        receiver
            .await
            .unwrap_or_else(|_| sync_error(ResponseError::RebalanceInProgress))
    }

    /// Heartbeat: None when the member is in good standing.
    pub fn heartbeat(&self, group_id: &str, member: MemberRef<'_>) -> Option<ResponseError> {
        let now = Instant::now();
        let mut groups = self.groups.borrow_mut();
        match check_member(&mut groups, group_id, &member, now) {
            Err(code) => Some(code),
            Ok(group) if group.state == GroupState::PreparingRebalance => {
                Some(ResponseError::RebalanceInProgress)
            }
            Ok(_) => None,
        }
    }

    /// LeaveGroup: per member (member id, instance id) → error (None for success).
    pub async fn leave(
        &self,
        group_id: &str,
        leaving: Vec<(String, Option<String>)>,
    ) -> Vec<Option<ResponseError>> {
        let now = Instant::now();
        let (results, stored) = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups.get_mut(group_id) else {
                return vec![Some(ResponseError::UnknownMemberId); leaving.len()];
            };
            let generation = group.generation;
            let mut removed = false;
            let results = leaving
                .iter()
                .map(|(member_id, instance_id)| {
                    let target = match instance_id {
                        Some(instance) => match group.static_members.get(instance) {
                            None => return Some(ResponseError::UnknownMemberId),
                            Some(current) if !member_id.is_empty() && current != member_id => {
                                return Some(ResponseError::FencedInstanceId)
                            }
                            Some(current) => current.clone(),
                        },
                        None => member_id.clone(),
                    };
                    if group.remove_member(&target) {
                        tracing::info!(group = %group_id, member = %target, "member left");
                        removed = true;
                        None
                    } else {
                        Some(ResponseError::UnknownMemberId)
                    }
                })
                .collect();
            if removed {
                group.after_removal(now, "member left");
            }
            (results, became_empty(group, generation))
        };
        if let Some(stored) = stored {
            let _ = self.store_group(group_id, stored).await;
        }
        results
    }

    /// The earliest deadline of any group here (see [`Group::next_deadline`]).
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        if !self.is_loaded() {
            return None;
        }
        self.groups
            .borrow()
            .values()
            .filter_map(|group| group.next_deadline(now))
            .min()
    }

    /// Session, join and sync deadlines of every group here.
    pub async fn tick(&self) {
        if !self.is_loaded() {
            return;
        }
        let now = Instant::now();
        let emptied: Vec<GroupRecord> = {
            let mut groups = self.groups.borrow_mut();
            let emptied = groups
                .values_mut()
                .filter_map(|group| {
                    let generation = group.generation;
                    group.expire(now);
                    became_empty(group, generation).map(|stored| GroupRecord::Group {
                        group: group.id.clone(),
                        value: Some(stored),
                    })
                })
                .collect();
            // Groups that never completed a generation nor hold offsets (a client that got its member id
            // and went away) were never stored: they simply go.
            groups.retain(|_, group| {
                !(group.state == GroupState::Empty
                    && group.generation == 0
                    && group.is_empty()
                    && group.offsets.is_empty())
            });
            emptied
        };
        let _ = self.append(&emptied).await;
    }

    // ----------------------------------------------------------------------------------------------
    // Offsets

    /// OffsetCommit of already-validated partitions: one answer for all of them (the checks are per
    /// group and member).
    pub async fn commit(
        &self,
        group_id: &str,
        member: MemberRef<'_>,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Option<ResponseError> {
        let now = Instant::now();
        {
            let mut groups = self.groups.borrow_mut();
            match groups.get_mut(group_id) {
                None if member.generation < 0 => {
                    groups.insert(
                        group_id.to_string(),
                        Group::new(group_id.to_string(), now_ms()),
                    );
                }
                None => return Some(ResponseError::IllegalGeneration),
                Some(group) => {
                    if group.is_fenced(member.instance_id, member.member_id) {
                        return Some(ResponseError::FencedInstanceId);
                    }
                    let simple = member.generation < 0 && group.state == GroupState::Empty;
                    if !simple {
                        if group.state == GroupState::CompletingRebalance {
                            return Some(ResponseError::RebalanceInProgress);
                        }
                        let Some(current) = group.members.get_mut(member.member_id) else {
                            return Some(ResponseError::UnknownMemberId);
                        };
                        if member.generation != group.generation {
                            return Some(ResponseError::IllegalGeneration);
                        }
                        current.heartbeat_deadline = now + current.session_timeout;
                    }
                }
            }
        }
        let records: Vec<GroupRecord> = offsets
            .iter()
            .map(|(topic, partition, value)| GroupRecord::Offset {
                group: group_id.to_string(),
                topic: topic.clone(),
                partition: *partition,
                value: Some(value.clone()),
            })
            .collect();
        if let Err(code) = self.append(&records).await {
            return Some(code);
        }
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id.to_string(), now_ms()));
        for (topic, partition, value) in offsets {
            group.offsets.insert((topic, partition), value);
        }
        None
    }

    /// Committed offsets of `group_id`: of the listed partitions (None where nothing is committed), or
    /// all of them.
    pub fn committed(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
    ) -> CommittedByTopic {
        let groups = self.groups.borrow();
        let offsets = groups.get(group_id).map(|group| &group.offsets);
        match topics {
            Some(topics) => topics
                .into_iter()
                .map(|(topic, partitions)| {
                    let found = partitions
                        .into_iter()
                        .map(|partition| {
                            let value = offsets
                                .and_then(|offsets| offsets.get(&(topic.clone(), partition)))
                                .cloned();
                            (partition, value)
                        })
                        .collect();
                    (topic, found)
                })
                .collect(),
            None => {
                let mut by_topic: BTreeMap<String, Vec<(i32, Option<CommittedOffset>)>> =
                    BTreeMap::new();
                for ((topic, partition), value) in offsets.into_iter().flatten() {
                    by_topic
                        .entry(topic.clone())
                        .or_default()
                        .push((*partition, Some(value.clone())));
                }
                for partitions in by_topic.values_mut() {
                    partitions.sort_by_key(|(partition, _)| *partition);
                }
                by_topic.into_iter().collect()
            }
        }
    }

    /// OffsetDelete: Err(top-level error) or each partition's error (None for deleted or absent).
    pub async fn delete_offsets(
        &self,
        group_id: &str,
        partitions: Vec<(String, i32)>,
    ) -> Result<Vec<Option<ResponseError>>, ResponseError> {
        let (results, tombstones) = {
            let groups = self.groups.borrow();
            let Some(group) = groups.get(group_id).filter(|g| g.state != GroupState::Dead) else {
                return Err(ResponseError::GroupIdNotFound);
            };
            let subscribed: HashSet<String> = if group.state == GroupState::Empty {
                HashSet::new()
            } else if group.protocol_type.as_deref() == Some("consumer") {
                subscribed_topics(group)
            } else {
                return Err(ResponseError::NonEmptyGroup);
            };
            let mut tombstones = Vec::new();
            let results = partitions
                .into_iter()
                .map(|(topic, partition)| {
                    if subscribed.contains(&topic) {
                        return Some(ResponseError::GroupSubscribedToTopic);
                    }
                    if group.offsets.contains_key(&(topic.clone(), partition)) {
                        tombstones.push(GroupRecord::Offset {
                            group: group_id.to_string(),
                            topic,
                            partition,
                            value: None,
                        });
                    }
                    None
                })
                .collect();
            (results, tombstones)
        };
        self.append(&tombstones).await?;
        if let Some(group) = self.groups.borrow_mut().get_mut(group_id) {
            for record in &tombstones {
                if let GroupRecord::Offset {
                    topic, partition, ..
                } = record
                {
                    group.offsets.remove(&(topic.clone(), *partition));
                }
            }
        }
        Ok(results)
    }

    // ----------------------------------------------------------------------------------------------
    // Admin: DescribeGroups, ListGroups, DeleteGroups

    pub fn describe(&self, group_id: &str) -> DescribedGroup {
        let groups = self.groups.borrow();
        let mut described = DescribedGroup::default();
        described.group_id = GroupId(str_bytes(group_id));
        described.authorized_operations = i32::MIN;
        let Some(group) = groups.get(group_id) else {
            described.group_state = str_bytes(GroupState::Dead.name());
            return described;
        };
        described.group_state = str_bytes(group.state.name());
        described.protocol_type = str_bytes(group.protocol_type.clone().unwrap_or_default());
        let stable = group.state == GroupState::Stable;
        let protocol = group.protocol.clone().unwrap_or_default();
        if stable {
            described.protocol_data = str_bytes(protocol.clone());
        }
        described.members = group
            .members
            .values()
            .map(|member| {
                let mut entry = DescribedGroupMember::default();
                entry.member_id = str_bytes(member.id.clone());
                entry.group_instance_id = member.instance_id.clone().map(str_bytes);
                entry.client_id = str_bytes(member.client_id.clone());
                entry.client_host = str_bytes(member.client_host.clone());
                if stable {
                    entry.member_metadata = member.metadata_for(&protocol);
                    entry.member_assignment = member.assignment.clone();
                }
                entry
            })
            .collect();
        described
    }

    pub fn list(&self) -> Vec<ListedGroup> {
        self.groups
            .borrow()
            .values()
            .map(|group| {
                (
                    group.id.clone(),
                    group.protocol_type.clone().unwrap_or_default(),
                    group.state,
                )
            })
            .collect()
    }

    /// DeleteGroups for one group: only an empty group can go; its metadata and offsets are tombstoned.
    pub async fn delete(&self, group_id: &str) -> Option<ResponseError> {
        let tombstones = {
            let mut groups = self.groups.borrow_mut();
            let Some(group) = groups
                .get_mut(group_id)
                .filter(|g| g.state != GroupState::Dead)
            else {
                return Some(ResponseError::GroupIdNotFound);
            };
            if group.state != GroupState::Empty || !group.is_empty() {
                return Some(ResponseError::NonEmptyGroup);
            }
            group.state = GroupState::Dead;
            let mut tombstones: Vec<GroupRecord> = group
                .offsets
                .keys()
                .map(|(topic, partition)| GroupRecord::Offset {
                    group: group_id.to_string(),
                    topic: topic.clone(),
                    partition: *partition,
                    value: None,
                })
                .collect();
            tombstones.push(GroupRecord::Group {
                group: group_id.to_string(),
                value: None,
            });
            tombstones
        };
        let result = self.append(&tombstones).await;
        let mut groups = self.groups.borrow_mut();
        match result {
            Ok(()) => {
                groups.remove(group_id);
                tracing::info!(group = %group_id, "group deleted");
                None
            }
            Err(code) => {
                if let Some(group) = groups.get_mut(group_id) {
                    group.state = GroupState::Empty;
                }
                Some(code)
            }
        }
    }
}

fn park_join(group: &mut Group, member_id: &str) -> oneshot::Receiver<JoinGroupResponse> {
    let (sender, receiver) = oneshot::channel();
    let member = group
        .members
        .get_mut(member_id)
        .expect("parked member exists");
    member.awaiting_join = Some(sender);
    receiver
}

/// The checks SyncGroup and Heartbeat share (Kafka's order); refreshes the member's session.
fn check_member<'a>(
    groups: &'a mut HashMap<String, Group>,
    group_id: &str,
    member: &MemberRef<'_>,
    now: Instant,
) -> Result<&'a mut Group, ResponseError> {
    let group = groups
        .get_mut(group_id)
        .ok_or(ResponseError::UnknownMemberId)?;
    match group.state {
        GroupState::Dead => return Err(ResponseError::CoordinatorNotAvailable),
        GroupState::Empty => return Err(ResponseError::UnknownMemberId),
        _ => {}
    }
    if group.is_fenced(member.instance_id, member.member_id) {
        return Err(ResponseError::FencedInstanceId);
    }
    let current = group
        .members
        .get_mut(member.member_id)
        .ok_or(ResponseError::UnknownMemberId)?;
    if member.generation != group.generation {
        return Err(ResponseError::IllegalGeneration);
    }
    current.heartbeat_deadline = now + current.session_timeout;
    Ok(group)
}

/// A group that went empty (its generation moved on with no members) must be stored.
fn became_empty(group: &Group, generation_before: i32) -> Option<StoredGroup> {
    (group.state == GroupState::Empty && group.generation != generation_before)
        .then(|| group.stored(None))
}

/// Topics the members of a consumer-protocol group subscribe to (from their subscription metadata).
fn subscribed_topics(group: &Group) -> HashSet<String> {
    let protocol = group.protocol.clone().unwrap_or_default();
    let mut topics = HashSet::new();
    for member in group.members.values() {
        let mut metadata = member.metadata_for(&protocol);
        if metadata.len() < 2 {
            continue;
        }
        let version = i16::from_be_bytes([metadata[0], metadata[1]]);
        bytes::Buf::advance(&mut metadata, 2);
        // Client-supplied bytes: decoded under the decode guard like a request body.
        match net::decode_request::<ConsumerProtocolSubscription>(&metadata, version.clamp(0, 3)) {
            Ok(subscription) => {
                topics.extend(subscription.topics.iter().map(|topic| topic.to_string()))
            }
            Err(error) => {
                tracing::debug!(group = %group.id, member = %member.id, %error, "unreadable subscription")
            }
        }
    }
    topics
}

/// Replays one record into the groups being loaded.
fn apply_record(groups: &mut HashMap<String, Group>, record: GroupRecord) {
    match record {
        GroupRecord::Offset {
            group,
            topic,
            partition,
            value,
        } => match value {
            Some(value) => {
                groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(group, now_ms()))
                    .offsets
                    .insert((topic, partition), value);
            }
            None => {
                if let Some(entry) = groups.get_mut(&group) {
                    entry.offsets.remove(&(topic, partition));
                }
            }
        },
        GroupRecord::Group {
            group,
            value: Some(stored),
        } => {
            groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(group, now_ms()))
                .restore(stored, Instant::now());
        }
        GroupRecord::Group { group, value: None } => {
            let keep = groups
                .get(&group)
                .is_some_and(|entry| !entry.offsets.is_empty());
            if keep {
                let offsets = std::mem::take(&mut groups.get_mut(&group).expect("kept").offsets);
                let mut fresh = Group::new(group.clone(), now_ms());
                fresh.offsets = offsets;
                groups.insert(group, fresh);
            } else {
                groups.remove(&group);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn replay_keeps_the_last_value_and_honours_tombstones() {
        let offset = |value: i64| CommittedOffset {
            offset: value,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: 0,
        };
        let mut groups = HashMap::new();
        for record in [
            GroupRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
                value: Some(offset(5)),
            },
            GroupRecord::Offset {
                group: "g".into(),
                topic: "t".into(),
                partition: 0,
                value: Some(offset(9)),
            },
            GroupRecord::Offset {
                group: "h".into(),
                topic: "t".into(),
                partition: 1,
                value: Some(offset(1)),
            },
            GroupRecord::Offset {
                group: "h".into(),
                topic: "t".into(),
                partition: 1,
                value: None,
            },
            GroupRecord::Group {
                group: "h".into(),
                value: None,
            },
        ] {
            apply_record(&mut groups, record);
        }
        assert_eq!(groups["g"].offsets[&("t".to_string(), 0)].offset, 9);
        assert!(!groups.contains_key("h"));
    }
}
