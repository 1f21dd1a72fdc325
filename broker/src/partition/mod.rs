//! The partition layer: a [`Partition`] owns its log and its replica state, and a shard's
//! [`manager::PartitionManager`] owns its partitions.
//!
//! Layout:
//! - this file: `Partition` — the log plus the leader's view of it: log end offset, high watermark, log
//!   start offset, last stable offset, the leader epoch and its history; appends, reads and offset
//!   lookups of one partition.
//! - [`requests`]: the data-plane work items a shard runs for a request (produce, fetch, list offsets)
//!   and their outcomes; the cross-shard messages carry them.
//! - [`manager`]: the partitions of one shard: open, close and delete them as metadata changes, tell
//!   lifecycle listeners (the group coordinator), run a request's items for this shard.
//! - [`counters`]: the shard's partition-layer counters (appends, reads, delayed operations).
//! - [`delayed`]: delayed fetches and produces, parked in the shard's purgatories until the high
//!   watermark moves or their time runs out.
//! - [`isolation`]: what a read_committed read needs from the batches it read (where they end).
//!
//! # Offsets (invariant, checked where they move)
//! `log_start_offset <= high_watermark <= log_end_offset`, and `last_stable_offset <= high_watermark`.
//! The high watermark is the end of what every in-sync replica has; on a single node the leader is the
//! only in-sync replica and a record counts once it is durable (written; fsynced per the flush policy),
//! so the high watermark follows the durable end. Consumers read below the high watermark only.

pub mod counters;
pub mod delayed;
pub mod isolation;
pub mod manager;
mod manager_requests;
pub mod replica_reads;
pub mod replicas;
pub mod requests;

use crate::partition::delayed::DelayedOperations;
use bytes::Bytes;
use futures_lite::future::poll_once;
use kafka_protocol::error::ResponseError;
use replicas::Role;
use requests::{
    ActiveProducer, FetchOutcome, MarkerOutcome, OffsetAnswer, OffsetOutcome, ProduceOutcome,
    ProduceRefusal,
};
use std::cell::{Cell, RefCell};
use std::rc::Rc;
use storage::batch::AppendOrigin;
use storage::types::{LeaderEpoch, Offset};
use storage::{Log, RetentionOutcome, StorageError};

/// The file layer partitions are stored through: O_DIRECT/io_uring files in production, std files in
/// in-process tests.
pub type Files = shard::files::ShardFileSystem;
pub type PartitionLog = Log<Files>;

/// A partition's name: topic and index.
pub type TopicPartition = (String, i32);

pub struct Partition {
    pub topic: String,
    pub index: i32,
    /// (topic, index), kept so the purgatories can be told of every append without an allocation.
    key: TopicPartition,
    pub log: PartitionLog,
    /// The partition's current leader epoch, as the metadata says (the history of epochs, with the
    /// offset each starts at, is the log's leader-epoch cache).
    leader_epoch: Cell<LeaderEpoch>,
    /// Leader (with what it knows of its followers) or follower: see [`replicas`].
    role: RefCell<Role>,
    /// Held while a replica fetcher applies the leader's answer (append or truncation) and while the
    /// partition becomes leader: a follower's log is never written by both at once.
    pub replica_lock: async_lock::Mutex<()>,
    /// Where waiting fetches and produces of this shard park (shared by its partitions).
    delayed: Rc<DelayedOperations>,
}

impl Partition {
    pub fn new(
        topic: String,
        index: i32,
        log: PartitionLog,
        leader_epoch: LeaderEpoch,
        delayed: Rc<DelayedOperations>,
    ) -> Partition {
        Partition {
            key: (topic.clone(), index),
            topic,
            index,
            log,
            leader_epoch: Cell::new(leader_epoch),
            role: RefCell::new(Role::unassigned()),
            replica_lock: async_lock::Mutex::new(()),
            delayed,
        }
    }

    pub fn key(&self) -> &TopicPartition {
        &self.key
    }

    pub fn leader_epoch(&self) -> LeaderEpoch {
        self.leader_epoch.get()
    }

    /// The epoch the record at `offset` was written in (the log's leader-epoch cache; the current
    /// epoch when the cache does not say).
    pub fn epoch_for_offset(&self, offset: Offset) -> LeaderEpoch {
        self.log
            .epoch_for_offset(offset)
            .unwrap_or_else(|| self.leader_epoch())
    }

    /// Where the current leader epoch starts in the log (the log end when it has no entry yet).
    pub fn epoch_start_offset(&self) -> Offset {
        let current = self.leader_epoch();
        self.log
            .epoch_entries()
            .into_iter()
            .find(|(epoch, _)| *epoch == current)
            .map_or_else(|| self.log_end_offset(), |(_, start)| start)
    }

    /// Adopts leader epoch `epoch` from the metadata; never goes back.
    pub fn set_leader_epoch(&self, epoch: LeaderEpoch) {
        let current = self.leader_epoch();
        assert!(
            epoch >= current,
            "leader epoch going back: {current} -> {epoch}"
        );
        self.leader_epoch.set(epoch);
    }

    /// Becomes leader in the current epoch: the epoch starts at the current log end (Kafka's
    /// `maybeAssignEpochStartOffset` on becoming leader), recorded in the log's leader-epoch cache.
    pub async fn start_leader_epoch(&self) {
        let epoch = self.leader_epoch();
        if let Err(error) = self
            .log
            .assign_epoch_start(epoch, self.log_end_offset())
            .await
        {
            tracing::error!(topic = %self.topic, partition = self.index, %error, "cannot record the leader epoch's start");
        }
    }

    pub fn log_start_offset(&self) -> Offset {
        self.log.log_start_offset()
    }

    pub fn log_end_offset(&self) -> Offset {
        self.log.log_end_offset()
    }

    /// The end of what every in-sync replica has (kept by the log; see [`Self::maybe_advance_high_watermark`]).
    pub fn high_watermark(&self) -> Offset {
        self.log.high_watermark()
    }

    /// Where read_committed consumers stop: below the oldest open (or not yet replicated) transaction, capped by the high watermark (see `storage::Log::last_stable_offset`).
    pub fn last_stable_offset(&self) -> Offset {
        self.log.last_stable_offset()
    }

    /// On a leader, moves the high watermark to the smallest log end offset of the in-sync replicas (a
    /// leader alone in sync: its own written end; see [`replicas`]), and tells the delayed operations:
    /// those waiting for the high watermark, and followers' fetches waiting for the written end, which
    /// every append moves.
    pub(crate) fn maybe_advance_high_watermark(&self) {
        if let Some(end) = self.replicated_end() {
            let before = self.high_watermark();
            let after = self.log.update_high_watermark(end);
            assert!(
                after >= before,
                "high watermark going back: {before} -> {after}"
            );
            debug_assert!(self.log_start_offset() <= after && after <= self.log_end_offset());
        }
        self.delayed.high_watermark_moved(self.key());
    }

    /// Appends `records` (whole batches) and completes the operations waiting for new data. Offsets are
    /// assigned on the first poll, so appends are ordered as they are first polled.
    ///
    /// Once that first poll has begun the write, the rest runs in a task of its own: a caller that goes
    /// away (a client that disconnects mid-produce drops its request's future) must not cancel a segment
    /// write half-way, which leaves the log's appender without the bytes it counted (a later write then
    /// fails an assertion and takes the shard down; found by the wire fuzzer).
    pub async fn append(self: Rc<Self>, records: Bytes) -> ProduceOutcome {
        self.append_from(records, AppendOrigin::Client).await
    }

    /// As [`Self::append`] for batches appended by `origin`: the group coordinator appends its
    /// transactional offset commits as [`AppendOrigin::Coordinator`] (their sequences are not checked).
    pub async fn append_from(
        self: Rc<Self>,
        records: Bytes,
        origin: AppendOrigin,
    ) -> ProduceOutcome {
        let mut append = Box::pin(self.write(records, origin));
        if let Some(done) = poll_once(&mut append).await {
            return done;
        }
        let (sender, receiver) = futures_channel::oneshot::channel();
        shard::task::spawn(async move {
            let _ = sender.send(append.await);
        });
        receiver.await.unwrap_or_else(|_| {
            Err((
                ResponseError::UnknownServerError,
                "append task dropped".to_string(),
            )
                .into())
        })
    }

    /// As [`Self::append_from`], then waits until every in-sync replica has the records (a
    /// coordinator's own writes, which Kafka makes with acks=-1), at most `timeout`:
    /// REQUEST_TIMED_OUT after it, NOT_LEADER_OR_FOLLOWER if leadership moved meanwhile.
    pub async fn append_replicated(
        self: Rc<Self>,
        records: Bytes,
        origin: AppendOrigin,
        timeout: std::time::Duration,
    ) -> ProduceOutcome {
        let epoch = self.leader_epoch();
        let info = self.clone().append_from(records, origin).await?;
        let deadline = shard::task::now() + timeout;
        let required = Offset(info.last_offset.0 + 1);
        let completion = self
            .delayed
            .clone()
            .wait_for_replicas(&self, required, deadline)
            .await;
        if !self.is_leader() || self.leader_epoch() != epoch {
            return Err((ResponseError::NotLeaderOrFollower, String::new()).into());
        }
        match completion {
            delayed::Completion::Satisfied => Ok(info),
            delayed::Completion::Expired => Err((
                ResponseError::RequestTimedOut,
                "the in-sync replicas did not get the records in time".to_string(),
            )
                .into()),
        }
    }

    async fn write(self: Rc<Self>, records: Bytes, origin: AppendOrigin) -> ProduceOutcome {
        // Checked when the write is first polled, as offsets are assigned: a follower's log takes
        // only its leader's batches (a coordinator write racing a change of role is refused).
        if !self.is_leader() {
            return Err((ResponseError::NotLeaderOrFollower, String::new()).into());
        }
        let result = self
            .log
            .append_from(
                records,
                self.leader_epoch(),
                shard::task::wall_clock_ms(),
                origin,
            )
            .await;
        match result {
            Ok(info) => {
                self.maybe_advance_high_watermark();
                Ok(info)
            }
            Err(error) => {
                crate::warn_limited!(APPEND_REJECTED, topic = %self.topic, partition = self.index, %error, "append rejected");
                let record_errors = match &error {
                    StorageError::RecordsWithoutKey { record_indexes } => record_indexes
                        .iter()
                        .map(|index| (*index, KEYLESS_RECORD_MESSAGE.to_string()))
                        .collect(),
                    _ => Vec::new(),
                };
                Err(ProduceRefusal {
                    error: error_code(&error),
                    message: error.to_string(),
                    record_errors,
                })
            }
        }
    }

    /// Writes a transaction marker (see `storage::txn`) and advances the high watermark; the marker's
    /// offset. Like [`Self::append`], a started write finishes even if the caller goes away.
    pub async fn write_marker(self: Rc<Self>, marker: storage::TxnMarker) -> MarkerOutcome {
        if !self.is_leader() {
            return Err(ResponseError::NotLeaderOrFollower);
        }
        let (sender, receiver) = futures_channel::oneshot::channel();
        let partition = self.clone();
        shard::task::spawn(async move {
            let result = partition
                .log
                .append_marker(
                    marker,
                    partition.leader_epoch(),
                    shard::task::wall_clock_ms(),
                )
                .await;
            let outcome = match result {
                Ok(info) => {
                    partition.maybe_advance_high_watermark();
                    Ok(info.base_offset)
                }
                Err(error) => {
                    tracing::warn!(topic = %partition.topic, partition = partition.index, %error, "cannot write a transaction marker");
                    Err(error_code(&error))
                }
            };
            let _ = sender.send(outcome);
        });
        receiver
            .await
            .unwrap_or(Err(ResponseError::UnknownServerError))
    }

    /// Reads whole batches from `fetch_offset` up to the high watermark — for `read_committed`, up to
    /// the last stable offset, with the aborted transactions among the batches read (Kafka passes the
    /// offset after the last batch returned as the upper bound) — at most `max_bytes`, except that with
    /// `min_one` the first batch is returned whatever its size (KIP-74).
    ///
    /// A follower reads the same way, up to its own high watermark (the leader's, as its last fetch
    /// answer said, capped by its log end) and last stable offset, unless `leader_only` (consumers
    /// before Fetch v11: NOT_LEADER_OR_FOLLOWER). A fetch offset past the log end is
    /// OFFSET_OUT_OF_RANGE (the consumer goes back to the leader); one between the high watermark and
    /// the log end reads nothing (KIP-392).
    pub async fn read(
        &self,
        fetch_offset: Offset,
        max_bytes: usize,
        min_one: bool,
        read_committed: bool,
        leader_only: bool,
    ) -> FetchOutcome {
        if leader_only && !self.is_leader() {
            return FetchOutcome::failed(ResponseError::NotLeaderOrFollower);
        }
        let high_watermark = self.high_watermark();
        let last_stable_offset = self.last_stable_offset();
        debug_assert!(last_stable_offset <= high_watermark);
        let upper = if read_committed {
            last_stable_offset
        } else {
            high_watermark
        };
        let result = if max_bytes == 0 && !min_one {
            Ok(Vec::new())
        } else {
            self.log
                .read_batches(fetch_offset, max_bytes, upper, min_one)
                .await
        };
        let result = match result {
            Ok(records) if read_committed => match isolation::end_of_batches(&records) {
                Some(end) => {
                    // Both bounds lie on batch boundaries (the durable end; an open transaction's
                    // first batch), so no batch read straddles them.
                    debug_assert!(
                        end <= upper,
                        "read past the bound: {end} > {upper} ({})",
                        self.topic
                    );
                    self.log
                        .aborted_transactions(fetch_offset, end)
                        .await
                        .map(|aborted| (records, aborted))
                }
                None => Ok((records, Vec::new())),
            },
            Ok(records) => Ok((records, Vec::new())),
            Err(error) => Err(error),
        };
        let (error, records, aborted_transactions) = match result {
            Ok((records, aborted)) => (None, records, aborted),
            Err(error) => {
                if !matches!(error, StorageError::OffsetOutOfRange { .. }) {
                    tracing::warn!(topic = %self.topic, partition = self.index, %error, "fetch failed");
                }
                (Some(error_code(&error)), Vec::new(), Vec::new())
            }
        };
        FetchOutcome {
            error,
            high_watermark: high_watermark.0,
            last_stable_offset: last_stable_offset.0,
            // Read after the read: retention or DeleteRecords may have moved it meanwhile (and made
            // this read out of range).
            log_start_offset: self.log_start_offset().0,
            records,
            aborted_transactions,
            diverging_epoch: None,
            preferred_read_replica: None,
        }
    }

    /// ListOffsets for one partition: earliest (-2), latest (-1), max timestamp (-3), earliest local
    /// (-4), latest tiered (-5), or the first offset with a timestamp at or after `timestamp`. Latest and
    /// the timestamp lookups stop at what the consumer may read (Kafka's `lastFetchableOffset`): the
    /// high watermark, or for `read_committed` the last stable offset (which bounds max timestamp too).
    pub async fn offset_for(&self, timestamp: i64, read_committed: bool) -> OffsetOutcome {
        let last_fetchable = if read_committed {
            self.last_stable_offset()
        } else {
            self.high_watermark()
        };
        let found = |offset: Offset, timestamp: i64| OffsetAnswer {
            offset,
            timestamp,
            leader_epoch: Some(self.epoch_for_offset(offset)),
        };
        match timestamp {
            // LATEST
            -1 => Ok(found(last_fetchable, -1)),
            // EARLIEST, EARLIEST_LOCAL
            -2 | -4 => Ok(found(self.log_start_offset(), -1)),
            // MAX_TIMESTAMP
            -3 => match self.log.max_timestamp().await {
                Ok(Some((offset, timestamp))) if offset < last_fetchable || !read_committed => {
                    Ok(found(offset, timestamp))
                }
                Ok(_) => Ok(OffsetAnswer::NONE),
                Err(error) => Err(error_code(&error)),
            },
            // LATEST_TIERED: nothing is tiered
            -5 => Ok(OffsetAnswer::NONE),
            timestamp if timestamp >= 0 => match self.log.offset_for_timestamp(timestamp).await {
                Ok(Some((offset, at))) if offset < last_fetchable => Ok(found(offset, at)),
                Ok(_) => Ok(OffsetAnswer::NONE),
                Err(error) => Err(error_code(&error)),
            },
            _ => Err(ResponseError::InvalidRequest),
        }
    }

    /// The producers of this partition's producer state (DescribeProducers), by producer id.
    pub fn active_producers(&self) -> Vec<ActiveProducer> {
        let mut producers = self.log.with_producer_state(|state| {
            state
                .entries()
                .map(|entry| ActiveProducer {
                    producer_id: entry.producer_id,
                    producer_epoch: entry.epoch,
                    last_sequence: entry.last_seq().unwrap_or(-1),
                    last_timestamp: entry.last_timestamp,
                    coordinator_epoch: entry.coordinator_epoch,
                    current_txn_start_offset: entry.current_txn_first_offset,
                })
                .collect::<Vec<_>>()
        });
        producers.sort_by_key(|producer| producer.producer_id);
        producers
    }

    /// DeleteRecords on this partition (Kafka's `Partition.deleteRecordsOnLeader`): moves the log start
    /// to `offset` (-1: the high watermark) and returns the new low watermark. POLICY_VIOLATION when
    /// `cleanup.policy` lacks `delete` (a compacted topic), OFFSET_OUT_OF_RANGE below 0 or past the
    /// high watermark; an offset at or below the log start changes nothing.
    pub async fn delete_records(&self, offset: i64) -> Result<Offset, ResponseError> {
        if !self.log.config().cleanup_policy.delete {
            return Err(ResponseError::PolicyViolation);
        }
        let target = match offset {
            -1 => self.high_watermark(),
            offset => Offset(offset),
        };
        self.log
            .delete_records(target)
            .await
            .map_err(|error| error_code(&error))
    }

    /// One bounded step of retention (`retention.ms`, `retention.bytes`, segments below the log
    /// start) at `now_ms`, per the log's current config; see `storage::Log::apply_retention`.
    pub async fn apply_retention(&self, now_ms: i64) -> Result<RetentionOutcome, StorageError> {
        self.log.apply_retention(now_ms).await
    }

    /// Flush, trim, snapshot (clean shutdown or deletion).
    pub async fn close(&self) {
        if let Err(error) = self.log.close().await {
            tracing::error!(topic = %self.topic, partition = self.index, %error, "closing partition");
        }
    }
}

/// How long a coordinator's write waits for the in-sync replicas (Kafka's
/// `offsets.commit.timeout.ms` default).
pub const COORDINATOR_WRITE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

/// Refused appends are client-triggered (corrupt or invalid batches): their log lines are rate-limited.
static APPEND_REJECTED: crate::log_limit::LogLimiter =
    crate::log_limit::LogLimiter::new(std::time::Duration::from_secs(10), 5);

/// Kafka's message for each keyless record a compacted topic refuses (a Produce `record_errors` entry).
const KEYLESS_RECORD_MESSAGE: &str = "Compacted topic cannot accept message without key";

/// The Kafka error a client expects for a storage error (the mapping lives with the errors, in storage).
pub fn error_code(error: &StorageError) -> ResponseError {
    ResponseError::try_from_code(error.error_code()).unwrap_or(ResponseError::UnknownServerError)
}
