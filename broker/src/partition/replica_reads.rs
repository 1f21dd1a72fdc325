//! Both ends of a follower's fetch for one partition: the leader reading for a follower, and the
//! follower taking what the leader sent.
//!
//! # Leader epochs (KIP-320, KIP-101/KIP-279, KIP-595)
//! - A fetch names the leader epoch its sender knows (`current_leader_epoch`, -1 for none): older than
//!   this broker's is FENCED_LEADER_EPOCH, newer is UNKNOWN_LEADER_EPOCH — either way the sender
//!   refreshes its metadata.
//! - A follower's fetch also names the epoch of its last batch (`last_fetched_epoch`). The leader looks
//!   that epoch up in its leader-epoch cache: if it does not have it, or it ended before the fetch
//!   offset, the logs diverge there and the answer carries the *diverging epoch* — the largest epoch
//!   the leader has at or below it and where that epoch ends on the leader — instead of records.
//! - The follower truncates to the smaller of that end and where the same epoch ends in its own log
//!   (if it has that epoch; else where its own largest epoch below it ends), then fetches again with
//!   its new last epoch; the leader checks again. It never truncates to its high watermark blindly,
//!   so records acknowledged by a leader it was in sync with are never cut.
//!
//! # A follower behind the leader's log start
//! A fetch from below the leader's log start is OFFSET_OUT_OF_RANGE (with the leader's log start in
//! the answer). When the follower's log end is below that start (retention or DeleteRecords removed
//! what it misses), it empties its log and restarts it at the leader's log start
//! ([`Partition::truncate_fully_behind_leader`], Kafka's `handleOutOfRangeError` /
//! `truncateFullyAndStartAt`), then fetches from there. A follower whose log end is at or past the
//! leader's start keeps its log (the answer was a race with the leader's retention: it fetches
//! again after a back-off).

use super::requests::{FetchOutcome, OffsetAnswer, ReplicaFetch};
use super::{error_code, Partition};
use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use storage::types::{LeaderEpoch, Offset};
use storage::StorageError;

impl Partition {
    /// KIP-320's check of the epoch a fetch (or a ListOffsets) names.
    pub fn check_leader_epoch(&self, current_leader_epoch: i32) -> Result<(), ResponseError> {
        let epoch = self.leader_epoch().0;
        match current_leader_epoch {
            requested if requested < 0 || requested == epoch => Ok(()),
            requested if requested < epoch => Err(ResponseError::FencedLeaderEpoch),
            _ => Err(ResponseError::UnknownLeaderEpoch),
        }
    }

    /// The leader's side of a follower's fetch from `fetch_offset`: checks the epochs, answers a
    /// diverging epoch or records the follower's progress (moving the high watermark), then reads
    /// whole batches up to this log's written end (not the high watermark: followers copy what is not
    /// committed yet), at most `max_bytes` (with `min_one`, at least the first batch).
    pub async fn read_for_follower(
        &self,
        fetch_offset: Offset,
        max_bytes: usize,
        min_one: bool,
        replica: ReplicaFetch,
        now_ms: i64,
    ) -> FetchOutcome {
        if !self.is_leader() {
            return FetchOutcome::failed(ResponseError::NotLeaderOrFollower);
        }
        if let Some(diverging) = self.divergence(fetch_offset, replica.last_fetched_epoch) {
            return FetchOutcome {
                diverging_epoch: Some(diverging),
                ..self.positions()
            };
        }
        let written_end = self.log.durable_end_offset();
        if fetch_offset > written_end {
            // Past what this leader has, in an epoch it cannot compare: the follower is cut back to
            // this log's end (an undefined epoch with the end, as for an unknown epoch above). Its
            // log end is not taken, so it never moves the high watermark past what is here.
            return FetchOutcome {
                diverging_epoch: Some((LeaderEpoch(-1), written_end)),
                ..self.positions()
            };
        }
        if fetch_offset < self.log_start_offset() {
            return FetchOutcome {
                error: Some(ResponseError::OffsetOutOfRange),
                ..self.positions()
            };
        }
        if let Err(error) = self.follower_fetched(replica.replica_id, fetch_offset, now_ms) {
            return FetchOutcome::failed(error);
        }
        let result = if max_bytes == 0 && !min_one {
            Ok(Vec::new())
        } else {
            self.log
                .read_batches(fetch_offset, max_bytes, written_end, min_one)
                .await
        };
        match result {
            Ok(records) => FetchOutcome {
                records,
                ..self.positions()
            },
            Err(error) => {
                if !matches!(error, StorageError::OffsetOutOfRange { .. }) {
                    tracing::warn!(topic = %self.topic, partition = self.index, %error, "follower fetch failed");
                }
                FetchOutcome {
                    error: Some(error_code(&error)),
                    ..self.positions()
                }
            }
        }
    }

    /// OffsetForLeaderEpoch on this leader: where `epoch` ends in its log, with the largest epoch at
    /// or below it that the log has (Kafka's `endOffsetForEpoch`); -1 and -1 when it has none.
    pub fn epoch_end_offset(&self, epoch: LeaderEpoch) -> OffsetAnswer {
        let (found, end) = self
            .log
            .end_offset_for_epoch(epoch)
            .unwrap_or((LeaderEpoch(-1), Offset(-1)));
        OffsetAnswer {
            offset: end,
            timestamp: -1,
            leader_epoch: Some(found),
        }
    }

    /// Where a follower whose last batch is of `last_fetched_epoch`, fetching from `fetch_offset`,
    /// diverges from this log (see the module doc); `None` when it does not.
    fn divergence(
        &self,
        fetch_offset: Offset,
        last_fetched_epoch: i32,
    ) -> Option<(LeaderEpoch, Offset)> {
        if last_fetched_epoch < 0 {
            return None;
        }
        let requested = LeaderEpoch(last_fetched_epoch);
        match self.log.end_offset_for_epoch(requested) {
            Some((epoch, end)) if epoch == requested && end >= fetch_offset => None,
            Some(found) => Some(found),
            // This log has no epoch information to compare (an empty cache, or an epoch newer than
            // any it knows): a follower past its end is cut back to it (an undefined epoch with the
            // end, on which it truncates to the smaller end); one within it goes on.
            None => {
                let end = self.log.durable_end_offset();
                (fetch_offset > end).then_some((LeaderEpoch(-1), end))
            }
        }
    }

    /// An answer without records: this partition's offsets.
    pub(crate) fn positions(&self) -> FetchOutcome {
        FetchOutcome {
            error: None,
            high_watermark: self.high_watermark().0,
            last_stable_offset: self.last_stable_offset().0,
            log_start_offset: self.log_start_offset().0,
            records: Vec::new(),
            aborted_transactions: Vec::new(),
            diverging_epoch: None,
            preferred_read_replica: None,
        }
    }

    /// The follower's side: appends `records` as the leader sent them (offsets and bytes kept), then
    /// takes the leader's high watermark (capped by this log's end). Returns how many bytes were
    /// appended.
    pub async fn append_from_leader(
        &self,
        records: Bytes,
        leader_high_watermark: i64,
    ) -> Result<usize, StorageError> {
        let appended = if records.is_empty() {
            0
        } else {
            self.log.append_as_follower(records).await?.byte_count
        };
        if !self.is_leader() {
            self.follow_high_watermark(leader_high_watermark);
        }
        Ok(appended)
    }

    /// The follower's side of the leader's log start (retention, DeleteRecords): this log's start
    /// follows it up to what this follower knows is committed (Kafka's
    /// `maybeIncrementLogStartOffset` on followers), so deleted records do not come back after a
    /// leader change.
    pub async fn follow_log_start(&self, leader_log_start: i64) -> Result<(), StorageError> {
        let target = Offset(leader_log_start).min(self.high_watermark());
        if target > self.log_start_offset() {
            self.log.delete_records(target).await?;
        }
        Ok(())
    }

    /// A follower's high watermark is the leader's, capped by its own log end (it may go back: a new
    /// leader may know less than the old one told). Consumers reading from this follower (KIP-392)
    /// long-poll on it: a move tells the delayed fetches.
    pub fn follow_high_watermark(&self, leader_high_watermark: i64) {
        if leader_high_watermark < 0 {
            return;
        }
        let target = Offset(leader_high_watermark).min(self.log.durable_end_offset());
        if target != self.high_watermark() {
            self.log.reset_high_watermark(target);
            self.delayed.high_watermark_moved(self.key());
        }
    }

    /// The follower's side of an OFFSET_OUT_OF_RANGE answer carrying the leader's log start
    /// `leader_log_start` (see the module doc): when this log ends below it, the log is emptied
    /// and restarts there (`storage::Log::truncate_fully_and_start_at`: no epochs, no producers,
    /// the high watermark at the new start). Returns whether it did. The caller holds the
    /// partition's replica lock.
    pub async fn truncate_fully_behind_leader(
        &self,
        leader_log_start: Offset,
    ) -> Result<bool, StorageError> {
        let log_end = self.log_end_offset();
        if self.is_leader() || leader_log_start <= log_end {
            return Ok(false);
        }
        tracing::info!(
            topic = %self.topic,
            partition = self.index,
            log_end = log_end.0,
            leader_log_start = leader_log_start.0,
            "follower behind the leader's log start: truncating fully and starting at the leader's log start"
        );
        self.log
            .truncate_fully_and_start_at(leader_log_start)
            .await?;
        Ok(true)
    }

    /// The follower's truncation after the leader answered a diverging epoch (see the module doc).
    /// Returns the new log end.
    pub async fn truncate_diverging(
        &self,
        leader_epoch: LeaderEpoch,
        leader_end: Offset,
    ) -> Result<Offset, StorageError> {
        let log_end = self.log_end_offset();
        let target = if leader_end.0 < 0 {
            // The leader knows no such epoch: keep what the high watermark covers (Kafka's fallback).
            self.high_watermark().min(log_end)
        } else if leader_epoch.0 < 0 {
            leader_end.min(log_end)
        } else {
            match self.log.end_offset_for_epoch(leader_epoch) {
                Some((_, own_end)) => own_end.min(leader_end).min(log_end),
                None => leader_end.min(log_end),
            }
        };
        let target = target.max(self.log_start_offset());
        if target < log_end {
            tracing::info!(
                topic = %self.topic,
                partition = self.index,
                from = log_end.0,
                to = target.0,
                leader_epoch = leader_epoch.0,
                "truncating to the leader's log"
            );
        }
        // At the log end too: an epoch this log started but never wrote in leaves its cache.
        self.log.truncate_to(target).await?;
        Ok(self.log_end_offset())
    }
}
