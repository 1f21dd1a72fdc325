//! OffsetCommit, OffsetFetch and OffsetDelete on a coordinator partition: committed offsets are checked
//! against the group's membership, appended, and only then visible.

use super::{CoordinatorPartition, MemberRef};
use crate::group::records::{CommittedOffset, GroupRecord};
use crate::group::state::{Group, GroupState};
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::ConsumerProtocolSubscription;
use std::collections::{BTreeMap, HashSet};
use storage::types::Offset;

/// Committed offsets by topic: (partition, offset if one is committed).
pub type CommittedByTopic = Vec<(String, Vec<(i32, Option<CommittedOffset>)>)>;

impl CoordinatorPartition {
    /// OffsetCommit of already-validated partitions: one answer for all of them (the checks are per
    /// group and member).
    pub async fn commit(
        &self,
        group_id: &str,
        member: MemberRef<'_>,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Option<ResponseError> {
        let now = shard::task::now();
        {
            let mut groups = self.groups.borrow_mut();
            if !groups.contains_key(group_id) {
                if member.generation >= 0 {
                    return Some(ResponseError::IllegalGeneration);
                }
                groups.insert(
                    group_id.to_string(),
                    Group::new(group_id.to_string(), shard::task::wall_clock_ms()),
                );
            }
            let group = groups.get_mut(group_id).expect("present or inserted above");
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
            for (topic, partition, _) in &offsets {
                *group
                    .pending_commits
                    .entry((topic.clone(), *partition))
                    .or_default() += 1;
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
        // The log offset of each record decides against a transaction's offset of the same partition.
        let result = if records.is_empty() {
            Ok(Offset(0))
        } else {
            self.append_at(&records).await
        };
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id.to_string(), shard::task::wall_clock_ms()));
        for (index, (topic, partition, value)) in offsets.into_iter().enumerate() {
            let key = (topic, partition);
            if let Some(count) = group.pending_commits.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    group.pending_commits.remove(&key);
                }
            }
            if let Ok(base) = result {
                group.put_committed_offset(key, value, base.0 + index as i64);
            }
        }
        result.err()
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
                subscribed_topics(group).unwrap_or_default()
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
                    // A pending transactional offset is tombstoned too (Kafka's OffsetDelete).
                    let key = (topic.clone(), partition);
                    if group.offsets.contains_key(&key) || group.has_pending_txn_offset(&key) {
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
                    group.remove_offset(&(topic.clone(), *partition));
                }
            }
        }
        Ok(results)
    }
}

/// Topics the members of a consumer-protocol group subscribe to (from their subscription metadata);
/// None when a member's subscription cannot be read (Kafka's `subscribedTopics` is then unknown).
pub(super) fn subscribed_topics(group: &Group) -> Option<HashSet<String>> {
    let protocol = group.protocol.clone().unwrap_or_default();
    let mut topics = HashSet::new();
    for member in group.members.values() {
        let mut metadata = member.metadata_for(&protocol);
        if metadata.len() < 2 {
            tracing::debug!(group = %group.id, member = %member.id, "subscription too short");
            return None;
        }
        let version = i16::from_be_bytes([metadata[0], metadata[1]]);
        bytes::Buf::advance(&mut metadata, 2);
        // Client-supplied bytes: decoded under the decode guard like a request body.
        match net::decode_request::<ConsumerProtocolSubscription>(&metadata, version.clamp(0, 3)) {
            Ok(subscription) => {
                topics.extend(subscription.topics.iter().map(|topic| topic.to_string()))
            }
            Err(error) => {
                tracing::debug!(group = %group.id, member = %member.id, %error, "unreadable subscription");
                return None;
            }
        }
    }
    Some(topics)
}
