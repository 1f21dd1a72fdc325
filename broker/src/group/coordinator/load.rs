//! Loading a coordinator partition: its records are replayed in log order from the start of the log (the
//! last record of each key wins; a tombstone removes the key), and only then are requests served.
//!
//! Replay is one pass, reading a bounded amount at a time, and holds only the live state (one entry per
//! live key), so its time is linear in the log's size and its memory in the live keys — with the log
//! compacted, bounded by the live keys, however many commits were made. Replay is correct for any mix
//! of compacted and uncompacted segments as long as the cleaner never leaves an older record of a key
//! after removing a newer one, and drops a tombstone only once no older record of its key remains.
//!
//! Transactions: the offset records of a transactional batch are kept pending under the batch's
//! producer id until a control batch (marker) of that producer commits them (each replacing the committed
//! offset only if its record is later) or aborts them; pending offsets without a marker by the end of
//! the log stay pending (the transaction coordinator sends its markers again when it loads). Replay reads
//! up to the high watermark of the moment it ends, so a marker written while it runs is replayed too.

use super::{CoordinatorPartition, LoadState};
use crate::group::records::{self, GroupRecord};
use crate::group::state::Group;
use std::collections::{HashMap, HashSet};
use storage::types::Offset;

/// Bytes read per round while replaying a partition.
const LOAD_READ_BYTES: usize = 1 << 20;

impl CoordinatorPartition {
    /// Replays the partition from its start: the last record of each key wins.
    pub async fn load(&self) {
        let started = shard::task::now();
        let log = &self.partition.log;
        let mut offset = log.log_start_offset();
        let mut groups: HashMap<String, Group> = HashMap::new();
        // Producer id → groups holding its pending offsets.
        let mut open: HashMap<i64, HashSet<String>> = HashMap::new();
        let mut count = 0usize;
        // Bounded: every round moves `offset` past at least one batch, and stops at the written end
        // (which only transaction markers move while loading: groups are not served yet). Like
        // Kafka's, the replay reads to the log end, not the high watermark: a new leader's high
        // watermark may lag what its log holds until its followers fetch.
        loop {
            let end = self.partition.log.durable_end_offset();
            if offset >= end {
                break;
            }
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
                if header.is_control() {
                    if let Some((commit, _)) = storage::txn::parse_marker(&batch) {
                        complete_txn(&mut groups, &mut open, header.producer_id, commit);
                    }
                    continue;
                }
                let producer = (header.is_transactional() && header.has_producer_id())
                    .then_some(header.producer_id);
                match records::decode_batch_at(batch) {
                    Ok(decoded) => {
                        count += decoded.len();
                        for (position, record) in decoded {
                            replay_record(&mut groups, &mut open, record, position, producer);
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
        // A group known only by offsets that were all tombstoned is gone.
        groups.retain(|_, group| {
            group.protocol_type.is_some() || group.generation > 0 || group.has_offsets()
        });
        let now = shard::task::now();
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
        if !open.is_empty() {
            // Only groups still holding a producer's offsets are indexed.
            open.retain(|producer_id, ids| {
                ids.retain(|id| {
                    groups
                        .get(id)
                        .is_some_and(|group| group.pending_txn_offsets.contains_key(producer_id))
                });
                !ids.is_empty()
            });
            tracing::info!(
                partition = self.index(),
                open_transactions = open.len(),
                "transactional offsets pending"
            );
        }
        *self.groups.borrow_mut() = groups;
        self.transactions.borrow_mut().open = open;
        self.load.set(LoadState::Loaded);
    }
}

/// Replays one record of a non-transactional batch whose log offset is unknown (older than any).
#[cfg(test)]
fn apply_record(groups: &mut HashMap<String, Group>, record: GroupRecord) {
    replay_record(groups, &mut HashMap::new(), record, -1, None);
}

/// A marker of `producer_id`: its pending offsets are committed or dropped in every group holding some.
fn complete_txn(
    groups: &mut HashMap<String, Group>,
    open: &mut HashMap<i64, HashSet<String>>,
    producer_id: i64,
    commit: bool,
) {
    for id in open.remove(&producer_id).into_iter().flatten() {
        if let Some(group) = groups.get_mut(&id) {
            group.complete_txn(producer_id, commit);
        }
    }
}

/// Replays one record, written at log offset `position`, into the groups being loaded; `producer` is
/// the producer id of a transactional batch (its offsets stay pending until its marker).
fn replay_record(
    groups: &mut HashMap<String, Group>,
    open: &mut HashMap<i64, HashSet<String>>,
    record: GroupRecord,
    position: i64,
    producer: Option<i64>,
) {
    match record {
        GroupRecord::Offset {
            group,
            topic,
            partition,
            value,
        } => match value {
            Some(value) => {
                let entry = groups
                    .entry(group.clone())
                    .or_insert_with(|| Group::new(group.clone(), shard::task::wall_clock_ms()));
                match producer {
                    Some(producer_id) => {
                        entry.add_pending_txn_offset(
                            producer_id,
                            (topic, partition),
                            value,
                            position,
                        );
                        open.entry(producer_id).or_default().insert(group);
                    }
                    None => {
                        entry.put_committed_offset((topic, partition), value, position);
                    }
                }
            }
            None => {
                if let Some(entry) = groups.get_mut(&group) {
                    entry.remove_offset(&(topic, partition));
                }
            }
        },
        GroupRecord::Group {
            group,
            value: Some(stored),
        } => {
            groups
                .entry(group.clone())
                .or_insert_with(|| Group::new(group, shard::task::wall_clock_ms()))
                .restore(stored, shard::task::now());
        }
        GroupRecord::Group { group, value: None } => {
            let keep = groups.get(&group).is_some_and(|entry| {
                !entry.offsets.is_empty() || !entry.pending_txn_offsets.is_empty()
            });
            if keep {
                let old = groups.get_mut(&group).expect("kept");
                let mut fresh = Group::new(group.clone(), shard::task::wall_clock_ms());
                fresh.offsets = std::mem::take(&mut old.offsets);
                fresh.offset_positions = std::mem::take(&mut old.offset_positions);
                fresh.pending_txn_offsets = std::mem::take(&mut old.pending_txn_offsets);
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
    use crate::group::records::CommittedOffset;

    #[test]
    fn replay_keeps_the_last_value_and_honours_tombstones() {
        let offset = |value: i64| CommittedOffset {
            offset: value,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: 0,
            expire_timestamp: None,
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
