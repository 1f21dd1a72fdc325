//! One consumer group's state machine (Kafka's classic group protocol), synchronous and free of I/O: the
//! coordinator (`coordinator.rs`) calls it, persists what it says to persist, and completes the
//! responses it parks in the members. Each state change is stamped with the runtime's wall clock
//! (`state_timestamp`, from which an Empty group's offsets expire).
//!
//! ```text
//!            join / first member                 all joined, or rebalance timeout
//!   Empty ─────────────────────► PreparingRebalance ─────────────────────► CompletingRebalance
//!     ▲   (initial delay first)        ▲      │ no members left                 │ leader's SyncGroup
//!     └────────────────────────────────┼──────┘ (generation + 1)                ▼ (assignment stored)
//!                                      └──── join with new metadata, leave, ── Stable
//!                                            member expiry, leader rejoin
//! ```
//!
//! Invariants: `generation` only grows; a member is in at most one of `members` / `pending`; every
//! static member's instance id maps to exactly one member id (`static_members`); in
//! CompletingRebalance and Stable `protocol` is set and every member supports it.
//!
//! Layout: this file is the group, its members, protocol selection and its stored form;
//! `state/rebalance.rs` the rebalance itself (join phase, sync, expiry, deadlines);
//! `state/txn_offsets.rs` transactional offsets waiting for their transaction's marker.

mod rebalance;
mod txn_offsets;

use super::records::{CommittedOffset, StoredGroup, StoredMember};
use bytes::Bytes;
use futures_channel::oneshot;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::{JoinGroupResponse, SyncGroupResponse};
use std::collections::{BTreeMap, HashMap};
use std::time::{Duration, Instant};

use crate::protocol::str_bytes;

/// A transactional offset waiting for its transaction's marker, with the log offset of its record
/// (see `state/txn_offsets.rs`).
#[derive(Clone, Debug, PartialEq)]
pub struct PendingTxnOffset {
    pub value: CommittedOffset,
    pub position: i64,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
    Dead,
}

impl GroupState {
    /// The name DescribeGroups and ListGroups report.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
            GroupState::Dead => "Dead",
        }
    }
}

pub struct Member {
    pub id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    /// (protocol name, metadata), in the member's order of preference.
    pub protocols: Vec<(String, Bytes)>,
    pub assignment: Bytes,
    /// A JoinGroup waiting for the rebalance to complete.
    pub awaiting_join: Option<oneshot::Sender<JoinGroupResponse>>,
    /// A SyncGroup waiting for the leader's assignment.
    pub awaiting_sync: Option<oneshot::Sender<SyncGroupResponse>>,
    /// The member is removed when this passes while it is not waiting on a join or sync.
    pub heartbeat_deadline: Instant,
    /// Join order: the leader is the longest-standing member.
    pub seniority: u64,
}

impl Member {
    pub fn metadata_for(&self, protocol: &str) -> Bytes {
        self.protocols
            .iter()
            .find(|(name, _)| name == protocol)
            .map(|(_, metadata)| metadata.clone())
            .unwrap_or_default()
    }

    pub fn same_protocols(&self, protocols: &[(String, Bytes)]) -> bool {
        self.protocols == protocols
    }

    fn waiting(&self) -> bool {
        self.awaiting_join.is_some() || self.awaiting_sync.is_some()
    }
}

/// What a join asks of the caller.
#[derive(Debug)]
pub struct JoinParams {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout: Duration,
    pub rebalance_timeout: Duration,
    pub protocol_type: String,
    pub protocols: Vec<(String, Bytes)>,
    /// KIP-394 (JoinGroup v4+): a new member first gets MEMBER_ID_REQUIRED and its id.
    pub require_known_member_id: bool,
}

pub struct Group {
    pub id: String,
    pub state: GroupState,
    /// None for a group that only stores offsets ("simple" consumers).
    pub protocol_type: Option<String>,
    pub protocol: Option<String>,
    pub generation: i32,
    pub leader: Option<String>,
    pub members: BTreeMap<String, Member>,
    /// KIP-394 members that were given an id and have not joined with it yet: id → deadline.
    pub pending: HashMap<String, Instant>,
    pub static_members: HashMap<String, String>,
    pub offsets: HashMap<(String, i32), CommittedOffset>,
    /// Commits being appended, by partition: their offsets neither expire nor let the group die until
    /// the append ends (Kafka's `pendingOffsetCommits`).
    pub pending_commits: HashMap<(String, i32), u32>,
    /// The log offset of the record that holds each committed offset (Kafka's `recordOffset`; absent:
    /// unknown, older than any): a transaction's offset replaces a committed one only if written later.
    pub offset_positions: HashMap<(String, i32), i64>,
    /// Transactional offsets waiting for their transaction's marker, by producer id (see
    /// `state/txn_offsets.rs`).
    pub pending_txn_offsets: HashMap<i64, HashMap<(String, i32), PendingTxnOffset>>,
    /// PreparingRebalance: when the join phase ends whether or not everyone rejoined.
    pub rebalance_deadline: Option<Instant>,
    /// The first rebalance of an empty group waits this long for more members (extended per join,
    /// never past `rebalance_deadline`).
    pub initial_delay_until: Option<Instant>,
    /// CompletingRebalance: when members that have not synced are removed.
    pub sync_deadline: Option<Instant>,
    /// Wall-clock ms of the last state change (Kafka's `currentStateTimestamp`; -1: unknown, from an old
    /// record). An Empty group's offsets expire `offsets.retention.minutes` after it.
    pub state_timestamp: i64,
    next_seniority: u64,
}

impl Group {
    pub fn new(id: String, now_ms: i64) -> Group {
        Group {
            id,
            state: GroupState::Empty,
            protocol_type: None,
            protocol: None,
            generation: 0,
            leader: None,
            members: BTreeMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            offsets: HashMap::new(),
            pending_commits: HashMap::new(),
            offset_positions: HashMap::new(),
            pending_txn_offsets: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            sync_deadline: None,
            state_timestamp: now_ms,
            next_seniority: 0,
        }
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty() && self.pending.is_empty()
    }

    /// Moves to `state`, stamping the time of the change (on the runtime's wall clock).
    pub fn transition_to(&mut self, state: GroupState) {
        self.state = state;
        self.state_timestamp = shard::task::wall_clock_ms();
    }

    /// Kafka's `hasOffsets`: committed offsets, commits on their way, or transactional offsets waiting
    /// for their transaction to end.
    pub fn has_offsets(&self) -> bool {
        !self.offsets.is_empty()
            || !self.pending_commits.is_empty()
            || !self.pending_txn_offsets.is_empty()
    }

    /// A static member whose instance id now belongs to another member id has been replaced.
    pub fn is_fenced(&self, instance_id: Option<&str>, member_id: &str) -> bool {
        match instance_id.and_then(|instance| self.static_members.get(instance)) {
            Some(current) => current != member_id,
            None => false,
        }
    }

    /// Protocols every member supports (for a new member: also supported by it).
    fn candidate_protocols<'a>(&'a self, extra: Option<&'a [(String, Bytes)]>) -> Vec<&'a str> {
        let mut lists: Vec<&[(String, Bytes)]> = self
            .members
            .values()
            .map(|member| member.protocols.as_slice())
            .collect();
        lists.extend(extra);
        let Some(first) = lists.first() else {
            return Vec::new();
        };
        first
            .iter()
            .map(|(name, _)| name.as_str())
            .filter(|name| {
                lists
                    .iter()
                    .all(|list| list.iter().any(|(other, _)| other == name))
            })
            .collect()
    }

    /// Can a member with this protocol type and these protocols join?
    pub fn supports(&self, protocol_type: &str, protocols: &[(String, Bytes)]) -> bool {
        if self.members.is_empty() {
            return !protocol_type.is_empty() && !protocols.is_empty();
        }
        self.protocol_type.as_deref() == Some(protocol_type)
            && !self.candidate_protocols(Some(protocols)).is_empty()
    }

    /// Kafka's choice: each member votes for its most preferred protocol among those all support; most
    /// votes wins (ties to the earliest candidate).
    pub fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols(None);
        let mut votes: Vec<(usize, &str)> = candidates.iter().map(|name| (0, *name)).collect();
        for member in self.members.values() {
            if let Some((name, _)) = member
                .protocols
                .iter()
                .find(|(name, _)| candidates.contains(&name.as_str()))
            {
                if let Some(entry) = votes.iter_mut().find(|(_, candidate)| candidate == name) {
                    entry.0 += 1;
                }
            }
        }
        let best = votes.iter().map(|(count, _)| *count).max()?;
        votes
            .iter()
            .find(|(count, _)| *count == best)
            .map(|(_, name)| name.to_string())
    }

    pub fn add_member(&mut self, params: &JoinParams, member_id: String, now: Instant) {
        debug_assert!(!self.members.contains_key(&member_id));
        if self.members.is_empty() {
            self.protocol_type = Some(params.protocol_type.clone());
        }
        if let Some(instance) = &params.instance_id {
            self.static_members
                .insert(instance.clone(), member_id.clone());
        }
        self.pending.remove(&member_id);
        self.next_seniority += 1;
        self.members.insert(
            member_id.clone(),
            Member {
                id: member_id,
                instance_id: params.instance_id.clone(),
                client_id: params.client_id.clone(),
                client_host: params.client_host.clone(),
                session_timeout: params.session_timeout,
                rebalance_timeout: params.rebalance_timeout,
                protocols: params.protocols.clone(),
                assignment: Bytes::new(),
                awaiting_join: None,
                awaiting_sync: None,
                heartbeat_deadline: now + params.session_timeout,
                seniority: self.next_seniority,
            },
        );
    }

    /// Replaces a static member's id (a restarted instance): the old id is fenced from now on, and its
    /// parked responses get FENCED_INSTANCE_ID.
    pub fn replace_static_member(
        &mut self,
        instance_id: &str,
        new_id: String,
        params: &JoinParams,
    ) {
        let old_id = self.static_members[instance_id].clone();
        let mut member = self
            .members
            .remove(&old_id)
            .expect("static member is a member");
        if let Some(join) = member.awaiting_join.take() {
            let _ = join.send(join_error(ResponseError::FencedInstanceId, &old_id));
        }
        if let Some(sync) = member.awaiting_sync.take() {
            let _ = sync.send(sync_error(ResponseError::FencedInstanceId));
        }
        member.id = new_id.clone();
        member.client_id = params.client_id.clone();
        member.client_host = params.client_host.clone();
        member.session_timeout = params.session_timeout;
        member.rebalance_timeout = params.rebalance_timeout;
        member.protocols = params.protocols.clone();
        if self.leader.as_deref() == Some(old_id.as_str()) {
            self.leader = Some(new_id.clone());
        }
        self.static_members
            .insert(instance_id.to_string(), new_id.clone());
        self.members.insert(new_id, member);
    }

    /// Removes a member (left, expired, fenced out): its parked responses are dropped, and the group
    /// rebalances or completes a join phase waiting on it.
    pub fn remove_member(&mut self, member_id: &str) -> bool {
        let Some(member) = self.members.remove(member_id) else {
            return self.pending.remove(member_id).is_some();
        };
        if let Some(instance) = &member.instance_id {
            if self.static_members.get(instance).map(String::as_str) == Some(member_id) {
                self.static_members.remove(instance);
            }
        }
        if self.leader.as_deref() == Some(member_id) {
            self.leader = None;
        }
        true
    }

    /// The group as stored in `__consumer_offsets`.
    pub fn stored(&self, assignments: Option<&HashMap<String, Bytes>>) -> StoredGroup {
        let protocol = self.protocol.clone().unwrap_or_default();
        StoredGroup {
            protocol_type: self.protocol_type.clone().unwrap_or_default(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            state_timestamp: self.state_timestamp,
            members: self
                .members
                .values()
                .map(|member| StoredMember {
                    member_id: member.id.clone(),
                    instance_id: member.instance_id.clone(),
                    client_id: member.client_id.clone(),
                    client_host: member.client_host.clone(),
                    rebalance_timeout_ms: member.rebalance_timeout.as_millis() as i32,
                    session_timeout_ms: member.session_timeout.as_millis() as i32,
                    subscription: member.metadata_for(&protocol),
                    assignment: match assignments {
                        Some(assignments) => {
                            assignments.get(&member.id).cloned().unwrap_or_default()
                        }
                        None => member.assignment.clone(),
                    },
                })
                .collect(),
        }
    }

    /// Restores a group from its stored metadata (on load): Stable with its members if it had any, else
    /// Empty. Members get a full session to show up again.
    pub fn restore(&mut self, stored: StoredGroup, now: Instant) {
        self.protocol_type = (!stored.protocol_type.is_empty()).then_some(stored.protocol_type);
        self.generation = stored.generation;
        self.protocol = stored.protocol;
        self.leader = stored.leader;
        self.state_timestamp = stored.state_timestamp;
        self.members.clear();
        self.static_members.clear();
        self.pending.clear();
        let protocol = self.protocol.clone().unwrap_or_default();
        for member in stored.members {
            if let Some(instance) = &member.instance_id {
                self.static_members
                    .insert(instance.clone(), member.member_id.clone());
            }
            self.next_seniority += 1;
            let session_timeout = Duration::from_millis(member.session_timeout_ms.max(0) as u64);
            self.members.insert(
                member.member_id.clone(),
                Member {
                    id: member.member_id,
                    instance_id: member.instance_id,
                    client_id: member.client_id,
                    client_host: member.client_host,
                    session_timeout,
                    rebalance_timeout: Duration::from_millis(
                        member.rebalance_timeout_ms.max(0) as u64
                    ),
                    protocols: vec![(protocol.clone(), member.subscription)],
                    assignment: member.assignment,
                    awaiting_join: None,
                    awaiting_sync: None,
                    heartbeat_deadline: now + session_timeout,
                    seniority: self.next_seniority,
                },
            );
        }
        self.state = if self.members.is_empty() || self.protocol.is_none() {
            self.members.clear();
            self.static_members.clear();
            GroupState::Empty
        } else {
            GroupState::Stable
        };
    }
}

pub fn join_error(code: ResponseError, member_id: &str) -> JoinGroupResponse {
    let mut response = JoinGroupResponse::default();
    response.error_code = code.code();
    response.generation_id = -1;
    response.member_id = str_bytes(member_id);
    response
}

pub fn sync_error(code: ResponseError) -> SyncGroupResponse {
    let mut response = SyncGroupResponse::default();
    response.error_code = code.code();
    response
}

#[cfg(test)]
mod tests {
    use super::*;

    pub(super) fn params(protocols: &[&str]) -> JoinParams {
        JoinParams {
            member_id: String::new(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: protocols
                .iter()
                .map(|name| (name.to_string(), Bytes::from_static(b"m")))
                .collect(),
            require_known_member_id: true,
        }
    }

    #[test]
    fn protocol_is_chosen_by_votes_among_common_ones() {
        let now = shard::task::now();
        let mut group = Group::new("g".into(), 0);
        group.add_member(&params(&["range", "roundrobin"]), "a".into(), now);
        group.add_member(&params(&["roundrobin", "range"]), "b".into(), now);
        group.add_member(&params(&["roundrobin"]), "c".into(), now);
        assert_eq!(group.select_protocol().as_deref(), Some("roundrobin"));
        assert!(group.supports("consumer", &params(&["roundrobin", "sticky"]).protocols));
        assert!(!group.supports("consumer", &params(&["sticky"]).protocols));
        assert!(!group.supports("connect", &params(&["roundrobin"]).protocols));
    }

    #[test]
    fn a_replaced_static_member_is_fenced() {
        let now = shard::task::now();
        let mut group = Group::new("g".into(), 0);
        let mut static_params = params(&["range"]);
        static_params.instance_id = Some("i".into());
        group.add_member(&static_params, "old".into(), now);
        group.leader = Some("old".into());
        group.replace_static_member("i", "new".into(), &static_params);
        assert!(group.is_fenced(Some("i"), "old"));
        assert!(!group.is_fenced(Some("i"), "new"));
        assert_eq!(group.leader.as_deref(), Some("new"));
        assert!(group.members.contains_key("new") && !group.members.contains_key("old"));
    }
}
