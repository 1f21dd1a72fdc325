//! A group's transactional offsets (TxnOffsetCommit, KIP-98/KIP-447), synchronous and free of I/O.
//!
//! A transactional offset is appended to `__consumer_offsets` in a transactional batch of its producer
//! and kept here, pending, under that producer id until the transaction's marker is written to the same
//! partition: a COMMIT moves it to the committed offsets, an ABORT drops it. Until then OffsetFetch does
//! not return it, and with `require_stable` answers UNSTABLE_OFFSET_COMMIT for its partition.
//!
//! Invariants (Kafka's `OffsetMetadataManager`):
//! - every offset, committed or pending, remembers the log offset of the record that holds it
//!   (`position`); when a transaction commits, each of its offsets replaces the committed one only if
//!   its record is later in the log, so memory agrees with a replay of the log whatever the
//!   interleaving of transactional and plain commits;
//! - a tombstone of a key (OffsetDelete, DeleteGroups, expiry) removes the committed offset and every
//!   producer's pending offset of that key;
//! - a group with pending transactional offsets has offsets: it neither dies nor loses the committed
//!   offsets of those partitions to expiry while the transaction is open.

use super::{Group, PendingTxnOffset};
use crate::group::records::CommittedOffset;

impl Group {
    /// Stores a committed offset written at log offset `position`, unless the one it would replace was
    /// written later (a transaction's offset committed meanwhile). Returns whether it was stored.
    pub fn put_committed_offset(
        &mut self,
        key: (String, i32),
        value: CommittedOffset,
        position: i64,
    ) -> bool {
        let later_exists = self.offsets.contains_key(&key)
            && self
                .offset_positions
                .get(&key)
                .is_some_and(|&existing| existing > position);
        if later_exists {
            return false;
        }
        self.offset_positions.insert(key.clone(), position);
        self.offsets.insert(key, value);
        true
    }

    /// Removes a key's committed offset and every pending transactional offset of it (a tombstone).
    pub fn remove_offset(&mut self, key: &(String, i32)) {
        self.offsets.remove(key);
        self.offset_positions.remove(key);
        self.pending_txn_offsets.retain(|_, pending| {
            pending.remove(key);
            !pending.is_empty()
        });
    }

    /// Keeps `value`, written at `position` by `producer_id`'s open transaction, pending.
    pub fn add_pending_txn_offset(
        &mut self,
        producer_id: i64,
        key: (String, i32),
        value: CommittedOffset,
        position: i64,
    ) {
        self.pending_txn_offsets
            .entry(producer_id)
            .or_default()
            .insert(key, PendingTxnOffset { value, position });
    }

    /// Ends `producer_id`'s transaction in this group: on commit its pending offsets become committed
    /// (each only if later than the committed one), on abort they are dropped. Returns how many offsets
    /// were pending.
    pub fn complete_txn(&mut self, producer_id: i64, commit: bool) -> usize {
        let Some(pending) = self.pending_txn_offsets.remove(&producer_id) else {
            return 0;
        };
        let count = pending.len();
        if commit {
            for (key, offset) in pending {
                if !self.put_committed_offset(key.clone(), offset.value, offset.position) {
                    tracing::info!(group = %self.id, topic = %key.0, partition = key.1, producer_id, "a later plain commit wins over the transaction's offset");
                }
            }
        }
        count
    }

    /// Does a transaction hold a pending offset of this partition?
    pub fn has_pending_txn_offset(&self, key: &(String, i32)) -> bool {
        self.pending_txn_offsets
            .values()
            .any(|pending| pending.contains_key(key))
    }

    /// Every partition with a pending transactional offset (any producer).
    pub fn pending_txn_keys(&self) -> Vec<(String, i32)> {
        let mut keys: Vec<(String, i32)> = self
            .pending_txn_offsets
            .values()
            .flat_map(|pending| pending.keys().cloned())
            .collect();
        keys.sort();
        keys.dedup();
        keys
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn offset(value: i64) -> CommittedOffset {
        CommittedOffset {
            offset: value,
            leader_epoch: -1,
            metadata: String::new(),
            commit_timestamp: 0,
            expire_timestamp: None,
        }
    }

    fn key(partition: i32) -> (String, i32) {
        ("t".to_string(), partition)
    }

    #[test]
    fn a_commit_makes_pending_offsets_committed_unless_a_later_plain_commit_exists() {
        let mut group = Group::new("g".into(), 0);
        group.put_committed_offset(key(0), offset(1), 10);
        group.add_pending_txn_offset(7, key(0), offset(5), 20);
        group.add_pending_txn_offset(7, key(1), offset(6), 20);
        assert!(group.has_pending_txn_offset(&key(0)));
        assert!(group.has_offsets());
        // A plain commit of partition 1 after the transaction's record: it wins on commit.
        group.put_committed_offset(key(1), offset(9), 30);
        assert_eq!(group.complete_txn(7, true), 2);
        assert_eq!(
            group.offsets[&key(0)].offset,
            5,
            "the transaction's, written later"
        );
        assert_eq!(
            group.offsets[&key(1)].offset,
            9,
            "the plain commit, written later"
        );
        assert!(!group.has_pending_txn_offset(&key(0)));
        // A plain commit appended before the transaction's offset but applied after it loses.
        assert!(!group.put_committed_offset(key(0), offset(2), 15));
        assert_eq!(group.offsets[&key(0)].offset, 5);
    }

    #[test]
    fn an_abort_drops_pending_offsets_and_a_tombstone_removes_every_producers() {
        let mut group = Group::new("g".into(), 0);
        group.add_pending_txn_offset(7, key(0), offset(5), 20);
        assert_eq!(group.complete_txn(7, false), 1);
        assert!(group.offsets.is_empty() && !group.has_offsets());
        assert_eq!(group.complete_txn(7, true), 0, "nothing left to commit");

        group.add_pending_txn_offset(7, key(0), offset(5), 30);
        group.add_pending_txn_offset(8, key(0), offset(6), 31);
        group.add_pending_txn_offset(8, key(1), offset(6), 31);
        group.put_committed_offset(key(0), offset(1), 29);
        assert_eq!(group.pending_txn_keys(), vec![key(0), key(1)]);
        group.remove_offset(&key(0));
        assert!(!group.offsets.contains_key(&key(0)));
        assert!(!group.has_pending_txn_offset(&key(0)));
        assert!(!group.pending_txn_offsets.contains_key(&7));
        assert!(group.has_pending_txn_offset(&key(1)));
    }
}
