//! Transactional offsets on a coordinator partition (KIP-98, KIP-447): TxnOffsetCommit, the markers
//! that end a transaction's offsets, and OffsetFetch with `require_stable`.
//!
//! A TxnOffsetCommit is checked against the group (Kafka's `validateOffsetCommit` for a transactional
//! commit: a simple group may commit with generation -1; a member must be known, its instance id not
//! fenced, its generation current; no rebalance check), appended as a transactional batch of the
//! producer (`records::encode_transactional_batch`, appended with the coordinator's origin: only the
//! producer epoch is checked by the log), and only then kept pending in the group under the producer id
//! (`state/txn_offsets.rs`). The transaction coordinator writes the COMMIT or ABORT marker to this
//! partition; the partition manager tells [`CoordinatorPartition::complete_transaction`], which commits
//! or drops that producer's pending offsets in every group of the partition.
//!
//! Invariant: memory equals a replay of the log (`coordinator/load.rs` applies the same rules in log
//! order). A marker can be written while a TxnOffsetCommit of the same producer is being appended (an
//! abort on timeout); the appends in flight per producer are counted, the last marker written meanwhile
//! is remembered, and an offset whose record precedes that marker takes the marker's outcome at once
//! instead of staying pending.

use super::{CoordinatorPartition, MemberRef};
use crate::group::records::{CommittedOffset, GroupRecord, TxnProducer};
use crate::group::state::{Group, GroupState};
use kafka_protocol::error::ResponseError;
use std::collections::{HashMap, HashSet};
use storage::batch::AppendOrigin;
use storage::types::Offset;

/// OffsetFetch's answer per topic: each partition's committed offset (None: none), or its error
/// (UNSTABLE_OFFSET_COMMIT under `require_stable` while a transaction holds an offset of it).
pub type FetchedByTopic = Vec<(
    String,
    Vec<(i32, Result<Option<CommittedOffset>, ResponseError>)>,
)>;

/// The partition's transactions as the group coordinator sees them.
#[derive(Debug, Default)]
pub(super) struct Transactions {
    /// Producer id → the groups holding pending offsets of its transaction (an entry may outlive its
    /// group's offsets: ending a transaction there is then a no-op).
    pub(super) open: HashMap<i64, HashSet<String>>,
    /// Producers with TxnOffsetCommit appends in flight.
    in_flight: HashMap<i64, InFlight>,
}

#[derive(Debug, Default)]
struct InFlight {
    appends: u32,
    /// The last marker written for the producer while appends were in flight: (its offset, commit).
    ended: Option<(i64, bool)>,
}

impl CoordinatorPartition {
    /// TxnOffsetCommit of already-validated partitions (known topic, metadata size): one answer for all
    /// of them.
    pub async fn commit_transactional(
        &self,
        group_id: &str,
        member: MemberRef<'_>,
        producer: TxnProducer,
        offsets: Vec<(String, i32, CommittedOffset)>,
    ) -> Option<ResponseError> {
        if offsets.is_empty() {
            return None;
        }
        {
            let mut groups = self.groups.borrow_mut();
            if let Err(code) = validate_txn_commit(&mut groups, group_id, member) {
                return Some(code);
            }
            let group = groups.get_mut(group_id).expect("validated above");
            for (topic, partition, _) in &offsets {
                *group
                    .pending_commits
                    .entry((topic.clone(), *partition))
                    .or_default() += 1;
            }
            self.transactions
                .borrow_mut()
                .in_flight
                .entry(producer.producer_id)
                .or_default()
                .appends += 1;
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
        let result = self.append_transactional(&records, producer).await;
        let ended = {
            let mut transactions = self.transactions.borrow_mut();
            let flight = transactions
                .in_flight
                .get_mut(&producer.producer_id)
                .map(|flight| {
                    flight.appends = flight.appends.saturating_sub(1);
                    (flight.appends, flight.ended)
                });
            match flight {
                Some((0, ended)) => {
                    transactions.in_flight.remove(&producer.producer_id);
                    ended
                }
                Some((_, ended)) => ended,
                None => None,
            }
        };
        if !self.is_loaded() {
            // Unloaded meanwhile: the next load replays what was written.
            return Some(result.err().unwrap_or(ResponseError::NotCoordinator));
        }
        let mut groups = self.groups.borrow_mut();
        let group = groups
            .entry(group_id.to_string())
            .or_insert_with(|| Group::new(group_id.to_string(), shard::task::wall_clock_ms()));
        let mut still_pending = false;
        for (index, (topic, partition, value)) in offsets.into_iter().enumerate() {
            let key = (topic, partition);
            if let Some(count) = group.pending_commits.get_mut(&key) {
                *count -= 1;
                if *count == 0 {
                    group.pending_commits.remove(&key);
                }
            }
            let Ok(base) = result else {
                continue;
            };
            let position = base.0 + index as i64;
            match ended {
                // The transaction ended after this record was written: its outcome applies now.
                Some((marker_offset, commit)) if marker_offset > position => {
                    if commit {
                        group.put_committed_offset(key, value, position);
                    }
                }
                _ => {
                    group.add_pending_txn_offset(producer.producer_id, key, value, position);
                    still_pending = true;
                }
            }
        }
        if still_pending {
            self.transactions
                .borrow_mut()
                .open
                .entry(producer.producer_id)
                .or_default()
                .insert(group_id.to_string());
        }
        result.err()
    }

    /// Appends a TxnOffsetCommit's records as one transactional batch of `producer`; the log offset of
    /// the first. The error is the one a transactional producer expects.
    async fn append_transactional(
        &self,
        records: &[GroupRecord],
        producer: TxnProducer,
    ) -> Result<Offset, ResponseError> {
        let batch = crate::group::records::encode_transactional_batch(
            records,
            producer,
            shard::task::wall_clock_ms(),
        );
        self.partition
            .clone()
            .append_replicated(
                batch,
                AppendOrigin::Coordinator,
                crate::partition::COORDINATOR_WRITE_TIMEOUT,
            )
            .await
            .map(|info| info.base_offset)
            .map_err(|refusal| {
                tracing::warn!(partition = self.index(), producer_id = producer.producer_id, code = ?refusal.error, message = %refusal.message, "cannot write transactional offsets");
                match refusal.error {
                    ResponseError::NotLeaderOrFollower | ResponseError::KafkaStorageError => {
                        ResponseError::NotCoordinator
                    }
                    ResponseError::MessageTooLarge | ResponseError::RecordListTooLarge => {
                        ResponseError::InvalidCommitOffsetSize
                    }
                    code @ (ResponseError::InvalidProducerEpoch
                    | ResponseError::ProducerFenced
                    | ResponseError::InvalidTxnState
                    | ResponseError::TransactionCoordinatorFenced) => code,
                    _ => ResponseError::CoordinatorNotAvailable,
                }
            })
    }

    /// A transaction marker of `producer_id` was written to this partition at `marker_offset`: that
    /// producer's pending offsets become committed (COMMIT) or are dropped (ABORT). While the partition
    /// is loading, the replay reads the marker itself.
    pub fn complete_transaction(&self, producer_id: i64, commit: bool, marker_offset: Offset) {
        if !self.is_loaded() {
            return;
        }
        let groups_of = {
            let mut transactions = self.transactions.borrow_mut();
            if let Some(flight) = transactions.in_flight.get_mut(&producer_id) {
                flight.ended = Some((marker_offset.0, commit));
            }
            transactions.open.remove(&producer_id)
        };
        let mut groups = self.groups.borrow_mut();
        let mut ended = 0usize;
        for group_id in groups_of.into_iter().flatten() {
            if let Some(group) = groups.get_mut(&group_id) {
                ended += group.complete_txn(producer_id, commit);
            }
        }
        tracing::debug!(
            partition = self.index(),
            producer_id,
            commit,
            offsets = ended,
            "transaction ended"
        );
    }

    /// OffsetFetch: committed offsets of the listed partitions (or of all of them), with
    /// UNSTABLE_OFFSET_COMMIT for those a transaction holds an offset of when `require_stable`.
    pub fn fetch_offsets(
        &self,
        group_id: &str,
        topics: Option<Vec<(String, Vec<i32>)>>,
        require_stable: bool,
    ) -> FetchedByTopic {
        let committed = self.committed(group_id, topics);
        let groups = self.groups.borrow();
        let group = groups.get(group_id);
        committed
            .into_iter()
            .map(|(topic, partitions)| {
                let partitions = partitions
                    .into_iter()
                    .map(|(partition, value)| {
                        let unstable = require_stable
                            && group.is_some_and(|group| {
                                group.has_pending_txn_offset(&(topic.clone(), partition))
                            });
                        if unstable {
                            (partition, Err(ResponseError::UnstableOffsetCommit))
                        } else {
                            (partition, Ok(value))
                        }
                    })
                    .collect();
                (topic, partitions)
            })
            .collect()
    }

    /// The producers with pending offsets in this partition (for tests and diagnostics).
    pub fn open_transactions(&self) -> Vec<i64> {
        let mut producers: Vec<i64> = self
            .groups
            .borrow()
            .values()
            .flat_map(|group| group.pending_txn_offsets.keys().copied())
            .collect();
        producers.sort_unstable();
        producers.dedup();
        producers
    }
}

/// Kafka's checks of a transactional offset commit (`OffsetMetadataManager.validateTransactionalOffsetCommit`
/// and `ClassicGroup.validateOffsetCommit` with `isTransactional`). A group that does not exist is
/// created (a simple group) for generation -1, else ILLEGAL_GENERATION.
fn validate_txn_commit(
    groups: &mut HashMap<String, Group>,
    group_id: &str,
    member: MemberRef<'_>,
) -> Result<(), ResponseError> {
    if !groups.contains_key(group_id) {
        if member.generation >= 0 {
            return Err(ResponseError::IllegalGeneration);
        }
        groups.insert(
            group_id.to_string(),
            Group::new(group_id.to_string(), shard::task::wall_clock_ms()),
        );
    }
    let group = groups.get(group_id).expect("present or inserted above");
    if group.state == GroupState::Dead {
        return Err(ResponseError::CoordinatorNotAvailable);
    }
    if member.generation < 0 && group.state == GroupState::Empty {
        return Ok(());
    }
    // Versions 0–2 carry no member: a transactional commit without one is accepted whatever the state.
    if member.generation >= 0 || !member.member_id.is_empty() || member.instance_id.is_some() {
        if let Some(instance_id) = member.instance_id {
            match group.static_members.get(instance_id) {
                None => return Err(ResponseError::UnknownMemberId),
                Some(current) if current != member.member_id => {
                    return Err(ResponseError::FencedInstanceId)
                }
                Some(_) => {}
            }
        }
        if !group.members.contains_key(member.member_id) {
            return Err(ResponseError::UnknownMemberId);
        }
        if member.generation != group.generation {
            return Err(ResponseError::IllegalGeneration);
        }
    }
    Ok(())
}
