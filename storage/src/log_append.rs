//! The append path of the `Log` facade: validation, idempotence checks and offset assignment (in
//! call order, synchronously), then group commit under the writer lock: every queued batch in one
//! gather write, rolling segments as needed.
//!
//! # Invariants
//! * Offsets are assigned contiguously from the log end; the durable end advances, in order, only
//!   once a write completed, and never past the log end.
//! * Record data is never copied: a batch is its rewritten header (61 bytes, owned) and its body, a
//!   slice of the producer's request buffer, which the appender, the batch cache and the O_DIRECT
//!   gather write share.
//! * A roll finishes the active segment (durable end at its end), writes the producer snapshot at
//!   the new base, then starts the new segment (Kafka's `UnifiedLog.roll` over `LocalLog.roll`).
//! * A transaction marker is checked (producer and coordinator epochs) and applied to the producer
//!   state with its offset, like data batches; an ABORT marker's `.txnindex` entry (with the last
//!   stable offset right after it) travels with its batches to the writer, which appends it to the
//!   segment the marker lands in.
//! * The append's leader epoch is assigned at its base offset in the leader-epoch cache when it is
//!   new (`log_epochs.rs`); the writer then rewrites the checkpoint after the segment write.

use super::write_failure::{undone_error, OutcomeCell, WriteFailure, WriteOutcome};
use super::{AppendInfo, Log, Pending, TimestampType};
use crate::batch::{self, AppendOrigin, BatchHeader};
use crate::error::StorageError;
use crate::io::FileSystem;
use crate::producer_state::{CompletedTxn, ProducerStateManager, SequenceCheck};
use crate::segment;
use crate::txn::TxnMarker;
use crate::txn_index::AbortedTxnEntry;
use crate::types::{LeaderEpoch, Offset};
use bytes::{Bytes, BytesMut};
use std::io;
use std::rc::Rc;

impl<F: FileSystem> Log<F> {
    /// Validates, checks idempotence, assigns offsets and writes `records` (see the module doc).
    /// Returns once the bytes are written (not necessarily fsynced).
    pub async fn append(
        &self,
        records: Bytes,
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        self.append_from(records, leader_epoch, now_ms, AppendOrigin::Client)
            .await
    }

    /// Writes a transaction marker (a control batch ending `marker.producer_id`'s transaction)
    /// through the same path as client batches.
    pub async fn append_marker(
        &self,
        marker: TxnMarker,
        leader_epoch: LeaderEpoch,
        now_ms: i64,
    ) -> Result<AppendInfo, StorageError> {
        let batch = crate::txn::marker_batch(&marker, now_ms);
        self.append_from(batch, leader_epoch, now_ms, AppendOrigin::Coordinator)
            .await
    }

    /// Validates, checks and writes `records` appended by `origin`: [`Self::append`] for clients;
    /// a coordinator's own batches (the group coordinator's transactional offset commits) may
    /// carry control batches and have only their producer epoch checked (see
    /// [`check_producer`]).
    pub async fn append_from(
        &self,
        records: Bytes,
        leader_epoch: LeaderEpoch,
        now_ms: i64,
        origin: AppendOrigin,
    ) -> Result<AppendInfo, StorageError> {
        let outcome: OutcomeCell = Rc::new(std::cell::Cell::new(WriteOutcome::Queued));
        let log_start = Offset(self.local.log_start_offset());
        let info = {
            let mut state = self.state.borrow_mut();
            Self::check_usable(&state)?;
            if state.undoing {
                return Err(StorageError::Io(undone_error()));
            }
            let headers = batch::validate_batches_from(
                &records,
                state.config.max_message_bytes,
                state.config.cleanup_policy.compact,
                origin,
            )?;
            // Idempotence and transaction checks. A multi-batch request is checked against a
            // staged copy so that a failure leaves the state untouched.
            let batch_at = batch_positions(&headers);
            let whole_batch = |index: usize| {
                let position = batch_at[index];
                &records[position..position + headers[index].total_size()]
            };
            let mut staged = None;
            let mut aborted = Vec::new();
            if headers.len() == 1 {
                if let SequenceCheck::Duplicate {
                    first_offset,
                    last_offset,
                } = check_producer(&state.producers, &headers[0], whole_batch(0), origin)?
                {
                    return Ok(AppendInfo {
                        base_offset: Offset(first_offset),
                        last_offset: Offset(last_offset),
                        log_append_time_ms: -1,
                        log_start_offset: log_start,
                        duplicate: true,
                        record_count: headers[0].records_count as u32,
                    });
                }
            } else if headers.iter().any(|header| header.has_producer_id()) {
                let mut staged_state = state.producers.clone();
                let mut offset = state.next_offset;
                for (index, header) in headers.iter().enumerate() {
                    if let SequenceCheck::Duplicate { .. } =
                        check_producer(&staged_state, header, whole_batch(index), origin)?
                    {
                        return Err(StorageError::OutOfOrderSequence(
                            "duplicate batch inside a multi-batch produce request".into(),
                        ));
                    }
                    let mut placed = *header;
                    placed.base_offset = offset;
                    offset += header.last_offset_delta as i64 + 1;
                    aborted.extend(aborted_entry(
                        staged_state.apply_batch(&placed, whole_batch(index)),
                    ));
                }
                staged = Some(staged_state);
            }
            let log_append = state.config.timestamp_type == TimestampType::LogAppendTime;
            let base = state.next_offset;
            let mut offset = base;
            let mut position = 0usize;
            let mut out_headers = Vec::with_capacity(headers.len());
            let mut parts = Vec::with_capacity(headers.len());
            let mut records_total = 0u64;
            for header in &headers {
                let size = header.total_size();
                // Only the header changes (base offset, leader epoch, maybe the append time and CRC):
                // it is copied; the records stay in the request buffer.
                let mut header_bytes =
                    BytesMut::from(&records[position..position + batch::HEADER_SIZE]);
                let body = records.slice(position + batch::HEADER_SIZE..position + size);
                batch::set_base_offset(&mut header_bytes, offset);
                batch::set_leader_epoch(&mut header_bytes, leader_epoch.0);
                if log_append {
                    batch::set_log_append_time(&mut header_bytes, &body, now_ms);
                } else if BatchHeader::parse(&header_bytes).max_timestamp != header.max_timestamp {
                    batch::set_max_timestamp(&mut header_bytes, &body, header.max_timestamp);
                }
                let placed = BatchHeader::parse(&header_bytes);
                debug_assert_eq!(placed.total_size(), size);
                debug_assert_eq!(placed.base_offset, offset);
                if staged.is_none() {
                    let batch = &records[position..position + size];
                    let completed = state.producers.apply_batch(&placed, batch);
                    aborted.extend(aborted_entry(completed));
                }
                records_total += placed.records_count as u64;
                out_headers.push(placed);
                parts.push((header_bytes.freeze(), body));
                offset = placed.last_offset() + 1;
                position += size;
            }
            if let Some(staged_state) = staged {
                state.producers = staged_state;
            }
            if state.epochs.is_new(leader_epoch) {
                state.epochs.assign(leader_epoch, Offset(base));
            }
            let last = offset - 1;
            assert!(offset > state.next_offset, "an append assigns offsets");
            state.next_offset = offset;
            state.pending.push_back(Pending {
                parts,
                headers: out_headers,
                aborted,
                last,
                now_ms,
                records: records_total,
                outcome: outcome.clone(),
            });
            AppendInfo {
                base_offset: Offset(base),
                last_offset: Offset(last),
                log_append_time_ms: if log_append { now_ms } else { -1 },
                log_start_offset: log_start,
                duplicate: false,
                record_count: records_total as u32,
            }
        };
        self.commit(&outcome).await?;
        Ok(info)
    }

    /// Waits until the queued append that reports to `outcome` is written: by an earlier writer's
    /// group commit, or by this call taking the writer lock and writing everything queued.
    pub(super) async fn commit(&self, outcome: &OutcomeCell) -> Result<(), StorageError> {
        let _writer = self.writer.lock().await;
        match outcome.get() {
            WriteOutcome::Written => return Ok(()), // an earlier writer's group commit
            WriteOutcome::Undone => return Err(StorageError::Io(undone_error())),
            WriteOutcome::Queued => {}
        }
        if self.state.borrow().failed {
            return Err(StorageError::failed());
        }
        self.write_pending()
            .await
            .map_err(|failure| self.write_failed(failure))?;
        match outcome.get() {
            WriteOutcome::Written => Ok(()),
            _ => Err(StorageError::Io(undone_error())),
        }
    }

    /// The error for a failed `write_pending`; marks the log failed unless the write was undone.
    pub(super) fn write_failed(&self, failure: WriteFailure) -> StorageError {
        match failure {
            WriteFailure::Undone(error) => error.into(),
            WriteFailure::Offline(error) => {
                tracing::error!(dir = %self.dir().display(), %error, "log write failed; log is offline");
                self.state.borrow_mut().failed = true;
                error.into()
            }
        }
    }

    /// Writes every queued batch. Caller holds the writer lock. A failed write is undone when it
    /// can be (see `write_failure`).
    pub(super) async fn write_pending(&self) -> Result<(), WriteFailure> {
        loop {
            let items: Vec<Pending> = self.state.borrow_mut().pending.drain(..).collect();
            if items.is_empty() {
                return Ok(());
            }
            let mut checkpoint = self.local.checkpoint();
            // A roll after some of these batches were appended finalizes them in the old segment:
            // a later failure can then not be undone.
            let (mut appended, mut rolled) = (false, false);
            for item in &items {
                let mut aborted = item.aborted.iter().peekable();
                for (header, (header_bytes, body)) in item.headers.iter().zip(&item.parts) {
                    let config = self.state.borrow().config.clone();
                    if self.local.needs_roll(header, item.now_ms, &config) {
                        rolled |= appended;
                        self.roll(header.base_offset)
                            .await
                            .map_err(WriteFailure::Offline)?;
                        if !appended {
                            checkpoint = self.local.checkpoint();
                        }
                    }
                    appended = true;
                    let interval = config.index_interval_bytes;
                    self.local
                        .append_batch(header, header_bytes, body, item.now_ms, interval);
                    // An ABORT marker's index entry goes to the segment that now holds it.
                    if let Some(entry) =
                        aborted.next_if(|entry| entry.last_offset == header.base_offset)
                    {
                        self.local
                            .append_aborted(*entry)
                            .await
                            .map_err(WriteFailure::Offline)?;
                    }
                }
            }
            let appender = self.local.active_log_appender();
            let segment_bytes = self.state.borrow().config.segment_bytes;
            appender.set_reserve_window(segment::reserve_window(segment_bytes));
            if let Err(error) = appender.flush().await {
                return Err(if rolled {
                    WriteFailure::Offline(error)
                } else {
                    self.undo_write(checkpoint, items, error).await
                });
            }
            self.local.set_active_size(appender.written_size());
            // A new leader epoch among these batches: its checkpoint, once per epoch change.
            if self.state.borrow().epochs.is_dirty() {
                self.persist_epochs().await.map_err(WriteFailure::Offline)?;
            }
            let sync = {
                let mut state = self.state.borrow_mut();
                let last = items.last().expect("items").last;
                assert!(last < state.next_offset, "written past the log end");
                state.durable_end = state.durable_end.max(last + 1);
                state.unsynced_messages += items.iter().map(|item| item.records).sum::<u64>();
                state.dirty = true;
                state.unsynced_messages >= state.config.flush_messages
            };
            for item in items {
                item.outcome.set(WriteOutcome::Written);
                for (header_bytes, body) in item.parts {
                    self.cache.insert(self.id, header_bytes, body);
                }
            }
            if sync {
                self.sync_active().await.map_err(WriteFailure::Offline)?;
            }
        }
    }

    /// fsyncs the active segment (the caller holds the writer lock: everything below the durable end
    /// is in the segments, older segments were fsynced as they were finished); the flushed end
    /// becomes the durable end.
    pub(super) async fn sync_active(&self) -> io::Result<()> {
        let written = self.state.borrow().durable_end;
        self.local.sync_active().await?;
        let mut state = self.state.borrow_mut();
        state.unsynced_messages = 0;
        state.dirty = false;
        state.flushed_end = state.flushed_end.max(written);
        Ok(())
    }

    /// Makes every offset below `end` durable on disk: writes what is queued and fsyncs, unless a
    /// flush since `end` was written already covered it. Concurrent callers share fsyncs (group
    /// flush): those waiting for the writer lock while one fsyncs find their offsets covered by the
    /// next one, which takes everything written meanwhile. Returns whether this call fsynced. An I/O
    /// error marks the log failed, as [`Log::flush`].
    pub async fn flush_to(&self, end: Offset) -> Result<bool, StorageError> {
        if self.state.borrow().flushed_end >= end.0 {
            return Ok(false);
        }
        let _writer = self.writer.lock().await;
        {
            let state = self.state.borrow();
            Self::check_usable(&state)?;
            if state.flushed_end >= end.0 {
                return Ok(false);
            }
        }
        let result = match self.write_pending().await {
            Ok(()) => self.sync_active().await.map_err(WriteFailure::Offline),
            Err(failure) => Err(failure),
        };
        result.map_err(|failure| self.write_failed(failure))?;
        Ok(true)
    }

    /// Makes the active segment inactive-ready (see `LocalLog::finish_active`); everything in it is
    /// durable and fsynced.
    pub(super) async fn finish_active(&self) -> io::Result<()> {
        let end = self.local.finish_active().await?;
        let mut state = self.state.borrow_mut();
        state.durable_end = state.durable_end.max(end);
        assert!(state.durable_end <= state.next_offset);
        state.flushed_end = state.flushed_end.max(state.durable_end);
        state.unsynced_messages = 0;
        state.dirty = false;
        Ok(())
    }

    async fn roll(&self, new_base: i64) -> io::Result<()> {
        self.finish_active().await?;
        let (snapshot_offset, snapshot, segment_bytes) = {
            let state = self.state.borrow();
            let snapshot = state.producers.encode_snapshot();
            (state.next_offset, snapshot, state.config.segment_bytes)
        };
        self.local
            .write_snapshot(snapshot_offset, &snapshot)
            .await?;
        self.local.roll(new_base, segment_bytes).await
    }
}

/// Where each batch of a validated request starts in it.
fn batch_positions(headers: &[BatchHeader]) -> Vec<usize> {
    let mut positions = Vec::with_capacity(headers.len());
    let mut position = 0usize;
    for header in headers {
        positions.push(position);
        position += header.total_size();
    }
    positions
}

/// The `.txnindex` entry of a transaction a marker completed, when it was aborted.
pub(super) fn aborted_entry(completed: Option<CompletedTxn>) -> Option<AbortedTxnEntry> {
    completed
        .filter(|txn| txn.aborted)
        .map(|txn| AbortedTxnEntry {
            producer_id: txn.producer_id,
            first_offset: txn.first_offset,
            last_offset: txn.last_offset,
            last_stable_offset: txn.last_stable_offset,
        })
}

/// Kafka's `ProducerAppendInfo`: sequences are checked only for client appends. A coordinator's
/// data batches (transactional offset commits, written with base sequence 0 each time, as Kafka's
/// coordinator runtime does) are refused only for a fenced (older) producer epoch; control batches
/// and client batches go through [`ProducerStateManager::check_batch`].
fn check_producer(
    producers: &ProducerStateManager,
    header: &BatchHeader,
    batch: &[u8],
    origin: AppendOrigin,
) -> Result<SequenceCheck, StorageError> {
    if origin == AppendOrigin::Client || header.is_control() || !header.has_producer_id() {
        return producers.check_batch(header, batch);
    }
    match producers.get(header.producer_id) {
        Some(entry) if header.producer_epoch < entry.epoch => {
            Err(StorageError::InvalidProducerEpoch(format!(
                "producer {} epoch {} is older than the current epoch {}",
                header.producer_id, header.producer_epoch, entry.epoch
            )))
        }
        _ => Ok(SequenceCheck::Append),
    }
}
