//! The follower side of replication on the `Log` facade (Kafka's `UnifiedLog.appendAsFollower`):
//! [`Log::append_as_follower`] writes a leader's batches unchanged, and
//! [`Log::reset_high_watermark`] takes the leader's high watermark (or resets it after opening).
//!
//! # Follower appends
//! * Input: a leader's Fetch answer for this partition: whole batches, possibly followed by one
//!   truncated batch (a fetch answer is cut at its size limit), which is dropped silently.
//! * Each whole batch is checked as recovery checks one (length, magic 2, CRC, record count within
//!   lastOffsetDelta + 1) and must fit a segment (`segment_bytes`, Kafka's
//!   RecordBatchTooLargeException). Nothing else is refused: the leader accepted the batches, so
//!   `max.message.bytes`, the compacted-topic key rule, control batches, transactional batches and
//!   producer sequences are not checked here (Kafka's origin REPLICATION).
//! * Offsets are the leader's: the first batch must start at the log end offset and each next one
//!   right after the previous batch's last offset, else `UnexpectedAppendOffset` and nothing is
//!   written. (Kafka accepts a gap after the log end: a compacted leader's log may skip offsets
//!   between batches. Here segments hold contiguous batches (`segment.rs`, recovery's continuity
//!   check), so a gap is refused too; replicating such a log is left for later.)
//! * The bytes are written as they came (offsets, leader epochs, timestamps, CRC kept), through
//!   the leader's path: the pending queue, the writer lock and its group commit, segment rolls and
//!   the batch cache (`log_append.rs`). The buffers are sliced, not copied.
//! * Producer state: every batch is applied without checks, markers included, so that an ABORT
//!   marker gets its `.txnindex` entry and the last stable offset holds on the follower too.
//! * Each batch's `partition_leader_epoch` is assigned at its base offset in the leader-epoch cache
//!   (`log_epochs.rs`).
//!
//! # High watermark
//! [`Log::update_high_watermark`] only moves forward; [`Log::reset_high_watermark`] sets it, lower
//! too. Lowering it does not bring back the completed transactions the producer state already let go
//! of (those whose marker was below the old high watermark): the last stable offset stays at most
//! the new high watermark but may be above such a transaction's first offset. Kafka's
//! `updateHighWatermark` behaves the same; the exact state comes back with the next open or
//! truncation (both rebuild the producer state).

use super::append::aborted_entry;
use super::write_failure::{undone_error, OutcomeCell, WriteOutcome};
use super::{Log, Pending};
use crate::batch::{self, BatchCheck, BatchHeader};
use crate::error::StorageError;
use crate::io::FileSystem;
use crate::types::{LeaderEpoch, Offset};
use bytes::Bytes;
use std::rc::Rc;

/// What [`Log::append_as_follower`] wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FollowerAppendInfo {
    /// The first and last offsets written; `None` when the input held no whole batch.
    pub offsets: Option<(Offset, Offset)>,
    /// Whole batches written.
    pub batch_count: usize,
    /// Bytes written (the whole batches; a dropped partial batch is not counted).
    pub byte_count: usize,
}

impl<F: FileSystem> Log<F> {
    /// Appends a leader's batches as they are (see the module doc). Returns once they are written
    /// (not necessarily fsynced).
    pub async fn append_as_follower(
        &self,
        records: Bytes,
    ) -> Result<FollowerAppendInfo, StorageError> {
        let outcome: OutcomeCell = Rc::new(std::cell::Cell::new(WriteOutcome::Queued));
        let info = {
            let mut state = self.state.borrow_mut();
            Self::check_usable(&state)?;
            if state.undoing {
                return Err(StorageError::Io(undone_error()));
            }
            let max_batch_bytes = state.config.segment_bytes.min(i32::MAX as u64) as usize;
            let headers = whole_batches(&records, state.next_offset, max_batch_bytes)?;
            let (Some(first), Some(last)) = (headers.first(), headers.last()) else {
                return Ok(FollowerAppendInfo {
                    offsets: None,
                    batch_count: 0,
                    byte_count: 0,
                });
            };
            let (first_offset, last_offset) = (first.base_offset, last.last_offset());
            let mut parts = Vec::with_capacity(headers.len());
            let mut aborted = Vec::new();
            let mut records_total = 0u64;
            let mut position = 0usize;
            for header in &headers {
                let size = header.total_size();
                let completed = state
                    .producers
                    .apply_batch(header, &records[position..position + size]);
                aborted.extend(aborted_entry(completed));
                let epoch = LeaderEpoch(header.partition_leader_epoch);
                if state.epochs.is_new(epoch) {
                    state.epochs.assign(epoch, Offset(header.base_offset));
                }
                records_total += header.records_count as u64;
                parts.push((
                    records.slice(position..position + batch::HEADER_SIZE),
                    records.slice(position + batch::HEADER_SIZE..position + size),
                ));
                position += size;
            }
            assert!(
                last_offset >= state.next_offset,
                "a follower append moves the log end"
            );
            state.next_offset = last_offset + 1;
            let batch_count = headers.len();
            state.pending.push_back(Pending {
                parts,
                headers,
                aborted,
                last: last_offset,
                now_ms: now_ms(),
                records: records_total,
                outcome: outcome.clone(),
            });
            FollowerAppendInfo {
                offsets: Some((Offset(first_offset), Offset(last_offset))),
                batch_count,
                byte_count: position,
            }
        };
        self.commit(&outcome).await?;
        Ok(info)
    }

    /// Sets the high watermark to `offset` clamped to `[log_start_offset, durable_end_offset]`,
    /// lower than it was too (a replicated partition right after opening, whose committed point the
    /// leader tells; a follower taking the leader's high watermark); returns the new value. See the
    /// module doc for the producer state.
    pub fn reset_high_watermark(&self, offset: Offset) -> Offset {
        let log_start = self.local.log_start_offset();
        let mut state = self.state.borrow_mut();
        let high_watermark = offset.0.clamp(log_start, state.durable_end);
        state.high_watermark = high_watermark;
        state.producers.on_high_watermark(high_watermark);
        drop(state);
        self.debug_assert_offsets();
        Offset(high_watermark)
    }
}

/// The headers of the whole batches at the start of `records` (a trailing partial batch left
/// out), checked as the module doc says; the first must start at `log_end`.
fn whole_batches(
    records: &[u8],
    log_end: i64,
    max_batch_bytes: usize,
) -> Result<Vec<BatchHeader>, StorageError> {
    let mut headers = Vec::new();
    let mut position = 0usize;
    let mut expected = log_end;
    while position < records.len() {
        let header = match batch::check_batch_at(&records[position..], true) {
            BatchCheck::Valid(header) => header,
            BatchCheck::Incomplete => break,
            BatchCheck::Invalid(error) => return Err(error),
        };
        if header.total_size() > max_batch_bytes {
            return Err(StorageError::MessageTooLarge {
                size: header.total_size(),
                max: max_batch_bytes,
            });
        }
        if header.base_offset != expected {
            return Err(StorageError::UnexpectedAppendOffset {
                expected: Offset(expected),
                found: Offset(header.base_offset),
            });
        }
        expected = header.last_offset() + 1;
        position += header.total_size();
        headers.push(header);
    }
    Ok(headers)
}

/// The wall clock (time-based segment rolls); the follower path gets no `now_ms` from its caller.
fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |elapsed| elapsed.as_millis() as i64)
}
