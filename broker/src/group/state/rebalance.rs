//! The rebalance of one group (see the diagram in `state.rs`): the join phase and its deadlines, the
//! leader's assignment ending the sync phase, member expiry, and the next instant any of these is due.

use super::{join_error, sync_error, Group, GroupState};
use crate::protocol::str_bytes;
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::join_group_response::JoinGroupResponseMember;
use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use std::collections::HashMap;
use std::time::{Duration, Instant};

impl Group {
    /// Starts (or restarts) the join phase.
    pub fn prepare_rebalance(&mut self, now: Instant, initial_delay: Duration, reason: &str) {
        if self.state == GroupState::CompletingRebalance {
            // Members waiting for an assignment that will not come.
            for member in self.members.values_mut() {
                member.assignment = Bytes::new();
                if let Some(sync) = member.awaiting_sync.take() {
                    let _ = sync.send(sync_error(ResponseError::RebalanceInProgress));
                }
            }
        }
        let timeout = self
            .members
            .values()
            .map(|member| member.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO);
        self.rebalance_deadline = Some(now + timeout);
        self.initial_delay_until = (self.state == GroupState::Empty && !initial_delay.is_zero())
            .then(|| (now + initial_delay).min(now + timeout));
        self.sync_deadline = None;
        tracing::info!(group = %self.id, generation = self.generation, from = self.state.name(), reason, "preparing to rebalance");
        self.transition_to(GroupState::PreparingRebalance);
    }

    /// During the initial delay a new member pushes the end of the delay out (never past the rebalance
    /// deadline), as Kafka's InitialDelayedJoin does.
    pub fn extend_initial_delay(&mut self, now: Instant, initial_delay: Duration) {
        if let (Some(until), Some(deadline)) = (self.initial_delay_until, self.rebalance_deadline) {
            if until > now {
                self.initial_delay_until = Some((now + initial_delay).min(deadline));
            }
        }
    }

    /// Ends the join phase if everyone has rejoined (and the initial delay is over), or if the rebalance
    /// deadline passed (members that did not rejoin are removed). Returns true when it completed.
    pub fn try_complete_join(&mut self, now: Instant) -> bool {
        if self.state != GroupState::PreparingRebalance {
            return false;
        }
        if self.initial_delay_until.is_some_and(|until| now < until) {
            return false;
        }
        let all_joined = self.pending.is_empty()
            && self
                .members
                .values()
                .all(|member| member.awaiting_join.is_some());
        let timed_out = self
            .rebalance_deadline
            .is_some_and(|deadline| now >= deadline);
        if !all_joined && !timed_out {
            return false;
        }
        if !all_joined {
            let late: Vec<String> = self
                .members
                .values()
                .filter(|member| member.awaiting_join.is_none())
                .map(|member| member.id.clone())
                .collect();
            for id in late {
                tracing::info!(group = %self.id, member = %id, "member did not rejoin in time; removed");
                self.remove_member(&id);
            }
            self.pending.clear();
        }
        self.complete_join(now);
        true
    }

    fn complete_join(&mut self, now: Instant) {
        self.generation += 1;
        self.rebalance_deadline = None;
        self.initial_delay_until = None;
        if self.members.is_empty() {
            self.transition_to(GroupState::Empty);
            self.protocol = None;
            self.leader = None;
            tracing::info!(group = %self.id, generation = self.generation, "group is empty");
            return;
        }
        self.protocol = self.select_protocol();
        if self.protocol.is_none() {
            // Joins are checked against the other members' protocols, so this cannot happen; if it
            // does, the members are told and the group starts over rather than the shard stopping.
            tracing::error!(group = %self.id, "members share no protocol; group emptied");
            for (id, member) in std::mem::take(&mut self.members) {
                if let Some(join) = member.awaiting_join {
                    let _ = join.send(join_error(ResponseError::InconsistentGroupProtocol, &id));
                }
            }
            self.static_members.clear();
            self.transition_to(GroupState::Empty);
            self.leader = None;
            return;
        }
        if !self
            .leader
            .as_ref()
            .is_some_and(|leader| self.members.contains_key(leader))
        {
            self.leader = self
                .members
                .values()
                .min_by_key(|member| member.seniority)
                .map(|member| member.id.clone());
        }
        self.transition_to(GroupState::CompletingRebalance);
        let sync_timeout = self
            .members
            .values()
            .map(|member| member.rebalance_timeout)
            .max()
            .unwrap_or(Duration::ZERO);
        self.sync_deadline = Some(now + sync_timeout);
        tracing::info!(group = %self.id, generation = self.generation, protocol = ?self.protocol, leader = ?self.leader, members = self.members.len(), "rebalance: join phase complete");
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let response = self.join_response(&id, false);
            let member = self.members.get_mut(&id).expect("listed above");
            member.heartbeat_deadline = now + member.session_timeout;
            if let Some(join) = member.awaiting_join.take() {
                let _ = join.send(response);
            }
        }
    }

    /// The JoinGroup answer for `member_id` in the current generation (the leader gets every member's
    /// metadata).
    pub fn join_response(&self, member_id: &str, skip_assignment: bool) -> JoinGroupResponse {
        let protocol = self.protocol.clone().unwrap_or_default();
        let mut response = JoinGroupResponse::default();
        response.generation_id = self.generation;
        response.protocol_type = self.protocol_type.clone().map(str_bytes);
        response.protocol_name = Some(str_bytes(protocol.clone()));
        response.leader = str_bytes(self.leader.clone().unwrap_or_default());
        response.member_id = str_bytes(member_id);
        response.skip_assignment = skip_assignment;
        if self.leader.as_deref() == Some(member_id) {
            response.members = self
                .members
                .values()
                .map(|member| {
                    let mut entry = JoinGroupResponseMember::default();
                    entry.member_id = str_bytes(member.id.clone());
                    entry.group_instance_id = member.instance_id.clone().map(str_bytes);
                    entry.metadata = member.metadata_for(&protocol);
                    entry
                })
                .collect();
        }
        response
    }

    /// After removing members: what the group does next.
    pub fn after_removal(&mut self, now: Instant, reason: &str) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, Duration::ZERO, reason);
                self.try_complete_join(now);
            }
            GroupState::PreparingRebalance => {
                self.try_complete_join(now);
            }
            GroupState::Empty | GroupState::Dead => {}
        }
    }

    /// The leader's SyncGroup: sets every member's assignment (absent ones get an empty one) and
    /// answers everyone waiting. The caller has already persisted [`Group::stored`] with these.
    pub fn complete_sync(&mut self, assignments: &HashMap<String, Bytes>) {
        assert_eq!(self.state, GroupState::CompletingRebalance);
        let protocol_type = self.protocol_type.clone();
        let protocol = self.protocol.clone();
        for member in self.members.values_mut() {
            member.assignment = assignments.get(&member.id).cloned().unwrap_or_default();
            if let Some(sync) = member.awaiting_sync.take() {
                let mut response = SyncGroupResponse::default();
                response.protocol_type = protocol_type.clone().map(str_bytes);
                response.protocol_name = protocol.clone().map(str_bytes);
                response.assignment = member.assignment.clone();
                let _ = sync.send(response);
            }
        }
        self.sync_deadline = None;
        self.transition_to(GroupState::Stable);
        tracing::info!(group = %self.id, generation = self.generation, "rebalance complete: stable");
    }

    /// Expires members whose session ran out, pending members that never rejoined, and members that did
    /// not sync in time; ends a join phase whose time is up. Returns whether anything changed.
    pub fn expire(&mut self, now: Instant) -> bool {
        let mut changed = false;
        let pending_expired: Vec<String> = self
            .pending
            .iter()
            .filter(|(_, deadline)| **deadline <= now)
            .map(|(id, _)| id.clone())
            .collect();
        for id in pending_expired {
            self.pending.remove(&id);
            changed = true;
        }
        let sync_late = self.state == GroupState::CompletingRebalance
            && self.sync_deadline.is_some_and(|deadline| now >= deadline);
        let expired: Vec<String> = self
            .members
            .values()
            .filter(|member| {
                (!member.waiting() && member.heartbeat_deadline <= now)
                    || (sync_late && member.awaiting_sync.is_none())
            })
            .map(|member| member.id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                tracing::info!(group = %self.id, member = %id, "member session expired; removed");
                self.remove_member(id);
            }
            self.after_removal(now, "member expired");
            changed = true;
        }
        if self.state == GroupState::PreparingRebalance && self.try_complete_join(now) {
            changed = true;
        }
        changed
    }

    /// The earliest instant at which [`Group::expire`] could change something: a member's session
    /// deadline, a KIP-394 pending member's deadline, the sync deadline, the end of the join phase
    /// (its initial delay, then its rebalance deadline). `None`: nothing is timed.
    pub fn next_deadline(&self, now: Instant) -> Option<Instant> {
        let sessions = self
            .members
            .values()
            .filter(|member| !member.waiting())
            .map(|member| member.heartbeat_deadline);
        let sync = self
            .sync_deadline
            .filter(|_| self.state == GroupState::CompletingRebalance);
        let join = match self.state {
            GroupState::PreparingRebalance => self
                .initial_delay_until
                .filter(|&until| until > now)
                .or(self.rebalance_deadline),
            _ => None,
        };
        sessions
            .chain(self.pending.values().copied())
            .chain(sync)
            .chain(join)
            .min()
    }
}

#[cfg(test)]
mod tests {
    use super::super::tests::params;
    use super::*;
    use futures_channel::oneshot;

    #[test]
    fn join_phase_completes_when_all_rejoin_or_on_timeout() {
        let now = shard::task::now();
        let mut group = Group::new("g".into(), 0);
        group.add_member(&params(&["range"]), "a".into(), now);
        group.add_member(&params(&["range"]), "b".into(), now);
        group.prepare_rebalance(now, Duration::ZERO, "test");
        let (a, mut a_rx) = oneshot::channel();
        group.members.get_mut("a").unwrap().awaiting_join = Some(a);
        assert!(!group.try_complete_join(now));
        // b never rejoins: removed at the rebalance deadline.
        assert!(group.try_complete_join(now + Duration::from_secs(31)));
        assert_eq!(group.state, GroupState::CompletingRebalance);
        assert_eq!(group.generation, 1);
        assert!(!group.members.contains_key("b"));
        let response = a_rx.try_recv().unwrap().unwrap();
        assert_eq!(response.leader.as_str(), "a");
        assert_eq!(response.members.len(), 1);
    }

    #[test]
    fn expired_members_are_removed_and_the_last_leaves_an_empty_group() {
        let now = shard::task::now();
        let mut group = Group::new("g".into(), 0);
        group.add_member(&params(&["range"]), "a".into(), now);
        group.prepare_rebalance(now, Duration::ZERO, "test");
        let (a, _a_rx) = oneshot::channel();
        group.members.get_mut("a").unwrap().awaiting_join = Some(a);
        assert!(group.try_complete_join(now));
        let mut assignments = HashMap::new();
        assignments.insert("a".to_string(), Bytes::from_static(b"x"));
        group.complete_sync(&assignments);
        assert_eq!(group.state, GroupState::Stable);
        assert!(!group.expire(now + Duration::from_secs(5)));
        assert!(group.expire(now + Duration::from_secs(11)));
        assert_eq!(group.state, GroupState::Empty);
        assert_eq!(group.generation, 2);
    }

    #[test]
    fn next_deadline_is_the_session_deadline_that_expire_acts_on() {
        let now = shard::task::now();
        let mut group = Group::new("g".into(), 0);
        assert_eq!(group.next_deadline(now), None);
        group.add_member(&params(&["range"]), "a".into(), now);
        group.prepare_rebalance(now, Duration::from_millis(300), "test");
        // The join phase: first its initial delay, once that passed the rebalance deadline.
        assert_eq!(
            group.next_deadline(now),
            Some(now + Duration::from_millis(300))
        );
        let later = now + Duration::from_millis(400);
        assert_eq!(
            group.next_deadline(later),
            Some(now + Duration::from_secs(10))
        );
        let (a, _a_rx) = oneshot::channel();
        group.members.get_mut("a").unwrap().awaiting_join = Some(a);
        assert!(group.try_complete_join(later));
        let mut assignments = HashMap::new();
        assignments.insert("a".to_string(), Bytes::from_static(b"x"));
        group.complete_sync(&assignments);
        let deadline = group.next_deadline(later).unwrap();
        assert_eq!(deadline, group.members["a"].heartbeat_deadline);
        assert!(!group.expire(deadline - Duration::from_millis(1)));
        assert!(group.expire(deadline));
        assert_eq!(group.state, GroupState::Empty);
        assert_eq!(group.next_deadline(deadline), None);
    }
}
