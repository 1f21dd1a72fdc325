//! The leader-epoch cache of one partition (Kafka's `LeaderEpochFileCache`, KIP-101 / KIP-279):
//! for each leader epoch that wrote to the log, the offset of its first batch. Followers use it to
//! find where their log diverges from the leader's (OffsetForLeaderEpoch); the log keeps it in
//! memory and in `leader-epoch-checkpoint` (`leader_epoch_checkpoint`).
//!
//! # Invariants (asserted after every change)
//! * Epochs are non-negative and strictly increasing.
//! * Start offsets are non-negative and non-decreasing.
//!
//! # Rules
//! * [`LeaderEpochCache::assign`]: an epoch newer than the latest is appended, after removing the
//!   entries whose start offset is at or after the new one (Kafka's `removeConflicts`: they were
//!   written by older epochs at offsets the new epoch now owns). The latest epoch again, or an
//!   older one, changes nothing (Kafka would truncate the newer entries for an older epoch; here a
//!   stale epoch must not rewrite the history, the caller truncates explicitly).
//! * [`LeaderEpochCache::truncate_from_end`]: the log was cut at `end`: entries starting at or after
//!   it go.
//! * [`LeaderEpochCache::truncate_from_start`]: the log start moved to `start`: entries starting at
//!   or before it go, except the last of them, which stays with its start moved up to `start`.
//!
//! Every change sets `dirty`; the log writes the checkpoint and clears it.

use crate::types::{LeaderEpoch, Offset};

#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(crate) struct LeaderEpochCache {
    /// `(epoch, start offset)`, oldest first.
    entries: Vec<(LeaderEpoch, Offset)>,
    /// Changed since the checkpoint was last written.
    dirty: bool,
}

impl LeaderEpochCache {
    /// A cache of `entries` (as read from the checkpoint). Panics if they break the invariants
    /// (the checkpoint decoder refuses such a file).
    pub(crate) fn new(entries: Vec<(LeaderEpoch, Offset)>) -> Self {
        let cache = LeaderEpochCache {
            entries,
            dirty: false,
        };
        cache.assert_invariants();
        cache
    }

    /// Whether `entries` hold the invariants of the module doc.
    pub(crate) fn valid(entries: &[(LeaderEpoch, Offset)]) -> bool {
        entries
            .iter()
            .all(|(epoch, offset)| epoch.0 >= 0 && offset.0 >= 0)
            && entries
                .windows(2)
                .all(|pair| pair[0].0 < pair[1].0 && pair[0].1 <= pair[1].1)
    }

    fn assert_invariants(&self) {
        assert!(
            Self::valid(&self.entries),
            "leader epoch cache out of order: {:?}",
            self.entries
        );
    }

    pub(crate) fn entries(&self) -> &[(LeaderEpoch, Offset)] {
        &self.entries
    }

    pub(crate) fn latest_epoch(&self) -> Option<LeaderEpoch> {
        self.entries.last().map(|(epoch, _)| *epoch)
    }

    /// Whether [`LeaderEpochCache::assign`] would add `epoch` (the append path's cheap test).
    #[inline]
    pub(crate) fn is_new(&self, epoch: LeaderEpoch) -> bool {
        epoch.0 >= 0 && self.latest_epoch().is_none_or(|latest| epoch > latest)
    }

    pub(crate) fn is_dirty(&self) -> bool {
        self.dirty
    }

    pub(crate) fn set_dirty(&mut self, dirty: bool) {
        self.dirty = dirty;
    }

    /// Kafka's `assign` (see the module doc); returns whether the cache changed. A negative epoch
    /// (a batch written without one) or offset is ignored.
    pub(crate) fn assign(&mut self, epoch: LeaderEpoch, start_offset: Offset) -> bool {
        if start_offset.0 < 0 || !self.is_new(epoch) {
            if epoch.0 >= 0 && self.latest_epoch().is_some_and(|latest| epoch < latest) {
                tracing::debug!(%epoch, %start_offset, latest = ?self.latest_epoch(), "older leader epoch ignored");
            }
            return false;
        }
        let kept = self
            .entries
            .partition_point(|(_, offset)| *offset < start_offset);
        if kept < self.entries.len() {
            tracing::warn!(
                %epoch,
                %start_offset,
                removed = ?&self.entries[kept..],
                "new leader epoch removes conflicting entries"
            );
            self.entries.truncate(kept);
        }
        self.entries.push((epoch, start_offset));
        self.dirty = true;
        self.assert_invariants();
        true
    }

    /// Kafka's `truncateFromEnd`: drops the entries starting at or after `end`.
    pub(crate) fn truncate_from_end(&mut self, end: Offset) -> bool {
        let kept = self.entries.partition_point(|(_, offset)| *offset < end);
        if kept == self.entries.len() {
            return false;
        }
        self.entries.truncate(kept);
        self.dirty = true;
        self.assert_invariants();
        true
    }

    /// Kafka's `clearAndFlush` (the caller writes the checkpoint): drops every entry, for a log
    /// emptied and restarted at another offset. Returns whether the cache changed.
    pub(crate) fn clear(&mut self) -> bool {
        if self.entries.is_empty() {
            return false;
        }
        self.entries.clear();
        self.dirty = true;
        true
    }

    /// Kafka's `truncateFromStart`: the entry covering `start` begins there; older ones go.
    pub(crate) fn truncate_from_start(&mut self, start: Offset) -> bool {
        let removed = self.entries.partition_point(|(_, offset)| *offset <= start);
        if removed == 0 {
            return false;
        }
        let (covering, covering_start) = self.entries[removed - 1];
        if removed == 1 && covering_start == start {
            return false;
        }
        self.entries.drain(..removed - 1);
        self.entries[0] = (covering, start);
        self.dirty = true;
        self.assert_invariants();
        true
    }

    /// Kafka's `endOffsetFor`: `(epoch, end offset)` of `requested` for a log ending at `log_end`.
    /// * `None` (UNDEFINED_EPOCH, UNDEFINED_EPOCH_OFFSET): empty cache, negative `requested`, or
    ///   `requested` newer than the latest epoch.
    /// * `requested` is the latest epoch: `(requested, log_end)`.
    /// * `requested` older than the first entry: `(requested, first start offset)` (Kafka: the data
    ///   of older epochs is gone; the follower truncates to where the leader's log starts).
    /// * otherwise: the largest epoch <= `requested` and the start offset of the first epoch after
    ///   `requested`.
    pub(crate) fn end_offset_for(
        &self,
        requested: LeaderEpoch,
        log_end: Offset,
    ) -> Option<(LeaderEpoch, Offset)> {
        let latest = self.latest_epoch()?;
        if requested.0 < 0 || requested > latest {
            return None;
        }
        if requested == latest {
            return Some((requested, log_end));
        }
        let higher = self
            .entries
            .partition_point(|(epoch, _)| *epoch <= requested);
        let higher_start = self.entries[higher].1;
        match higher.checked_sub(1) {
            None => Some((requested, higher_start)),
            Some(floor) => Some((self.entries[floor].0, higher_start)),
        }
    }

    /// Kafka's `epochForOffset`: the epoch whose range holds `offset` (the latest for offsets past
    /// its start); `None` before the first entry.
    pub(crate) fn epoch_for_offset(&self, offset: Offset) -> Option<LeaderEpoch> {
        let after = self.entries.partition_point(|(_, start)| *start <= offset);
        after.checked_sub(1).map(|index| self.entries[index].0)
    }
}

#[cfg(test)]
#[path = "leader_epoch_cache_tests.rs"]
mod tests;
