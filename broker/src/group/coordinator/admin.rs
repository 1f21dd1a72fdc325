//! DescribeGroups, ListGroups and DeleteGroups on a coordinator partition.

use super::CoordinatorPartition;
use crate::group::records::GroupRecord;
use crate::group::state::GroupState;
use crate::protocol::str_bytes;
use kafka_protocol::error::ResponseError;
use kafka_protocol::messages::describe_groups_response::{DescribedGroup, DescribedGroupMember};
use kafka_protocol::messages::GroupId;

/// A listed group: (id, protocol type, state).
pub type ListedGroup = (String, String, GroupState);

impl CoordinatorPartition {
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

    /// DeleteGroups for one group: only an empty group can go (pending transactional offsets do not
    /// keep it, as in Kafka); its metadata and offsets, committed or pending, are tombstoned.
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
            // Pending transactional offsets are tombstoned too (Kafka's `deleteAllOffsets`): a marker
            // that comes later finds nothing to commit.
            let mut keys: Vec<(String, i32)> = group.offsets.keys().cloned().collect();
            keys.extend(
                group
                    .pending_txn_keys()
                    .into_iter()
                    .filter(|key| !group.offsets.contains_key(key)),
            );
            let mut tombstones: Vec<GroupRecord> = keys
                .iter()
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
