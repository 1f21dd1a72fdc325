//! Offset expiry on a coordinator partition (Kafka 2.1+, KIP-211): committed offsets are removed, and
//! tombstoned in `__consumer_offsets`, once they are older than `offsets.retention.minutes`, measured
//!
//! - for a group with a protocol type that is Empty: from the moment it became empty (its state
//!   timestamp; from each offset's commit time if that is unknown, as for a group stored by an old
//!   Kafka);
//! - for a Stable consumer-protocol group whose subscriptions are known: from each offset's commit time,
//!   only for topics no member subscribes to;
//! - for a group without a protocol type (a "simple" consumer that only commits): from each offset's
//!   commit time;
//! - never for a group in a rebalance.
//!
//! An offset with an explicit expire timestamp (value version 1, from OffsetCommit v2–4 with a retention
//! time) expires when the clock reaches it instead. Offsets with a commit still being appended, or with a
//! transactional offset waiting for its transaction's marker, are kept (and so is their group).
//! An Empty group left without offsets is Dead: it is forgotten and, if it ever had a generation (and so
//! a metadata record), its metadata is tombstoned too.
//!
//! Invariant: what an expiry step removes from memory and the tombstones it appends are decided in one
//! synchronous step and appended right after, so a commit arriving meanwhile is appended after the
//! tombstone and wins on replay, as it does in memory.

use super::offsets::subscribed_topics;
use super::CoordinatorPartition;
use crate::group::records::GroupRecord;
use crate::group::state::{Group, GroupState};

/// Groups looked at per step; a step's tombstones are appended before the next step starts.
const GROUPS_PER_STEP: usize = 256;
/// Most tombstones per appended batch (a group with many partitions gets several batches).
const RECORDS_PER_BATCH: usize = 1_000;

/// What one expiry pass over a partition did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ExpiryOutcome {
    pub expired_offsets: usize,
    pub dead_groups: usize,
}

impl CoordinatorPartition {
    /// One expiry pass over this partition's groups at wall-clock `now_ms`, in steps of a bounded number
    /// of groups. Tombstones that cannot be appended are logged: the offsets stay removed from memory
    /// (as in Kafka) and the next load brings them back, to expire again.
    pub async fn expire_offsets(&self, now_ms: i64) -> ExpiryOutcome {
        let mut outcome = ExpiryOutcome::default();
        if !self.is_loaded() {
            return outcome;
        }
        let retention_ms =
            i64::try_from(self.config.offsets_retention_minutes.saturating_mul(60_000))
                .unwrap_or(i64::MAX);
        let ids: Vec<String> = self.groups.borrow().keys().cloned().collect();
        for step in ids.chunks(GROUPS_PER_STEP) {
            if !self.is_loaded() {
                break;
            }
            let tombstones = {
                let mut groups = self.groups.borrow_mut();
                let mut tombstones = Vec::new();
                for id in step {
                    let Some(group) = groups.get_mut(id) else {
                        continue;
                    };
                    for (topic, partition) in expired_offsets(group, now_ms, retention_ms) {
                        group.remove_offset(&(topic.clone(), partition));
                        outcome.expired_offsets += 1;
                        tombstones.push(GroupRecord::Offset {
                            group: id.clone(),
                            topic,
                            partition,
                            value: None,
                        });
                    }
                    if group.state == GroupState::Empty && group.is_empty() && !group.has_offsets()
                    {
                        tracing::info!(group = %id, generation = group.generation, "group is empty and has no offsets: dead");
                        outcome.dead_groups += 1;
                        // A group that never had a generation only stored offsets: no metadata to delete.
                        if group.generation > 0 {
                            tombstones.push(GroupRecord::Group {
                                group: id.clone(),
                                value: None,
                            });
                        }
                        groups.remove(id);
                    }
                }
                tombstones
            };
            for batch in tombstones.chunks(RECORDS_PER_BATCH) {
                if let Err(code) = self.append(batch).await {
                    tracing::warn!(
                        partition = self.index(),
                        ?code,
                        "expired offsets not tombstoned"
                    );
                }
            }
        }
        if outcome != ExpiryOutcome::default() {
            tracing::info!(
                partition = self.index(),
                expired_offsets = outcome.expired_offsets,
                dead_groups = outcome.dead_groups,
                "removed expired offsets"
            );
        }
        outcome
    }
}

/// The offsets of `group` that have expired at `now_ms` (Kafka's `GroupMetadata.removeExpiredOffsets`).
pub fn expired_offsets(group: &Group, now_ms: i64, retention_ms: i64) -> Vec<(String, i32)> {
    // (base timestamp: the group's state timestamp, else each commit's; topics that never expire)
    let (state_base, subscribed) = match (group.protocol_type.as_deref(), group.state) {
        (Some(_), GroupState::Empty) => (Some(group.state_timestamp).filter(|&at| at >= 0), None),
        (Some("consumer"), GroupState::Stable) => match subscribed_topics(group) {
            Some(topics) => (None, Some(topics)),
            None => return Vec::new(),
        },
        (None, _) => (None, None),
        _ => return Vec::new(),
    };
    group
        .offsets
        .iter()
        .filter(|(key, committed)| {
            if group.pending_commits.contains_key(*key)
                || group.has_pending_txn_offset(key)
                || subscribed
                    .as_ref()
                    .is_some_and(|topics| topics.contains(&key.0))
            {
                return false;
            }
            match committed.expire_timestamp {
                Some(expire_at) => now_ms >= expire_at,
                None => {
                    let base = state_base.unwrap_or(committed.commit_timestamp);
                    now_ms.saturating_sub(base) >= retention_ms
                }
            }
        })
        .map(|(key, _)| key.clone())
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::group::records::CommittedOffset;
    use crate::group::state::JoinParams;
    use bytes::{BufMut, Bytes, BytesMut};
    use std::time::Duration;

    const RETENTION_MS: i64 = 60_000;

    fn committed(commit_timestamp: i64, expire_timestamp: Option<i64>) -> CommittedOffset {
        CommittedOffset {
            offset: 1,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp,
            expire_timestamp,
        }
    }

    fn sorted(mut keys: Vec<(String, i32)>) -> Vec<(String, i32)> {
        keys.sort();
        keys
    }

    /// A consumer-protocol subscription (v0) to `topics`.
    fn subscription(topics: &[&str]) -> Bytes {
        let mut buf = BytesMut::new();
        buf.put_i16(0);
        buf.put_i32(topics.len() as i32);
        for topic in topics {
            buf.put_i16(topic.len() as i16);
            buf.put_slice(topic.as_bytes());
        }
        buf.put_i32(-1);
        buf.freeze()
    }

    #[test]
    fn a_simple_consumers_offsets_expire_by_commit_time() {
        let mut group = Group::new("g".into(), 0);
        group
            .offsets
            .insert(("old".into(), 0), committed(1_000, None));
        group
            .offsets
            .insert(("new".into(), 0), committed(50_000, None));
        assert!(expired_offsets(&group, 60_999, RETENTION_MS).is_empty());
        assert_eq!(
            expired_offsets(&group, 61_000, RETENTION_MS),
            vec![("old".to_string(), 0)]
        );
        // A commit being appended keeps its partition.
        group.pending_commits.insert(("old".into(), 0), 1);
        assert!(expired_offsets(&group, 61_000, RETENTION_MS).is_empty());
    }

    #[test]
    fn an_empty_groups_offsets_expire_from_when_it_became_empty() {
        let mut group = Group::new("g".into(), 0);
        group.protocol_type = Some("consumer".into());
        group.state_timestamp = 100_000;
        group
            .offsets
            .insert(("t".into(), 0), committed(1_000, None));
        group
            .offsets
            .insert(("t".into(), 1), committed(90_000, None));
        assert!(expired_offsets(&group, 159_999, RETENTION_MS).is_empty());
        assert_eq!(
            sorted(expired_offsets(&group, 160_000, RETENTION_MS)),
            vec![("t".to_string(), 0), ("t".to_string(), 1)]
        );
        // Unknown state timestamp (an old record): each commit's time.
        group.state_timestamp = -1;
        assert_eq!(
            expired_offsets(&group, 61_000, RETENTION_MS),
            vec![("t".to_string(), 0)]
        );
    }

    #[test]
    fn an_explicit_expire_timestamp_decides() {
        let mut group = Group::new("g".into(), 0);
        group
            .offsets
            .insert(("t".into(), 0), committed(0, Some(5_000)));
        group
            .offsets
            .insert(("t".into(), 1), committed(0, Some(1_000_000)));
        assert_eq!(
            expired_offsets(&group, 5_000, RETENTION_MS),
            vec![("t".to_string(), 0)]
        );
        assert_eq!(expired_offsets(&group, 999_999, RETENTION_MS).len(), 1);
    }

    #[test]
    fn a_stable_group_keeps_subscribed_topics_and_a_rebalancing_one_everything() {
        let now = shard::task::now();
        let mut group = Group::new("g".into(), 0);
        let params = JoinParams {
            member_id: String::new(),
            instance_id: None,
            client_id: "c".into(),
            client_host: "/127.0.0.1".into(),
            session_timeout: Duration::from_secs(10),
            rebalance_timeout: Duration::from_secs(30),
            protocol_type: "consumer".into(),
            protocols: vec![("range".into(), subscription(&["subscribed"]))],
            require_known_member_id: false,
        };
        group.add_member(&params, "m".into(), now);
        group.protocol = Some("range".into());
        group.state = GroupState::Stable;
        group
            .offsets
            .insert(("subscribed".into(), 0), committed(0, None));
        group
            .offsets
            .insert(("dropped".into(), 0), committed(0, None));
        assert_eq!(
            expired_offsets(&group, RETENTION_MS, RETENTION_MS),
            vec![("dropped".to_string(), 0)]
        );
        group.state = GroupState::PreparingRebalance;
        assert!(expired_offsets(&group, RETENTION_MS, RETENTION_MS).is_empty());
        // Unreadable subscriptions: nothing is known to be unsubscribed.
        group.state = GroupState::Stable;
        group.members.get_mut("m").unwrap().protocols =
            vec![("range".into(), Bytes::from_static(b"\x00"))];
        assert!(expired_offsets(&group, RETENTION_MS, RETENTION_MS).is_empty());
    }
}
