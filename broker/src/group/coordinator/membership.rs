//! JoinGroup, SyncGroup, Heartbeat and LeaveGroup on a coordinator partition: the membership checks (in
//! Kafka's order), the group's state machine (`state.rs`) driven through a rebalance, and the responses
//! parked in members until the join or sync phase ends.

use super::{became_empty, CoordinatorPartition};
use crate::group::records::StoredGroup;
use crate::group::state::{join_error, sync_error, Group, GroupState, JoinParams};
use crate::protocol::str_bytes;
use bytes::Bytes;
use futures_channel::oneshot;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use std::collections::HashMap;
use std::time::{Duration, Instant};
use uuid::Uuid;

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

impl CoordinatorPartition {
    pub async fn join(
        &self,
        group_id: String,
        params: JoinParams,
        version: i16,
    ) -> JoinGroupResponse {
        let now = shard::task::now();
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
                groups.insert(
                    group_id.clone(),
                    Group::new(group_id.clone(), shard::task::wall_clock_ms()),
                );
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
        let now = shard::task::now();
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
        let now = shard::task::now();
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
        let now = shard::task::now();
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
