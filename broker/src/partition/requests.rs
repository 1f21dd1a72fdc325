//! The data-plane work one shard runs for a request on the partitions it owns — append, read, wait,
//! list offsets — and the outcomes it sends back. The cross-shard messages (`messages`) carry these;
//! the local part of a request runs them directly.

use bytes::Bytes;
use kafka_protocol::error::ResponseError;
use std::time::Duration;
use storage::types::{LeaderEpoch, Offset};
use storage::{AbortedTxn, AppendInfo};

/// Batches to append to one partition. `acks` is the request's: -1 (all in-sync replicas), 1 (the
/// leader) or 0 (no answer); `timeout` bounds how long an acks=-1 append waits for the replicas.
pub struct ProduceItem {
    pub topic: String,
    pub partition: i32,
    pub records: Bytes,
    pub acks: i16,
    pub timeout: Duration,
    /// The topic's `min.insync.replicas`: an acks=-1 append needs that many replicas in sync, before
    /// (NOT_ENOUGH_REPLICAS) and after (NOT_ENOUGH_REPLICAS_AFTER_APPEND) it is written.
    pub min_insync_replicas: usize,
}

/// The append's outcome, or why it was refused.
pub type ProduceOutcome = Result<AppendInfo, ProduceRefusal>;

/// A refused append: the partition's Kafka error, a message for the client and, for INVALID_RECORD,
/// the records at fault (Produce v8+ `record_errors`: index in its batch, message).
#[derive(Debug)]
pub struct ProduceRefusal {
    pub error: ResponseError,
    pub message: String,
    pub record_errors: Vec<(i32, String)>,
}

impl From<(ResponseError, String)> for ProduceRefusal {
    fn from((error, message): (ResponseError, String)) -> ProduceRefusal {
        ProduceRefusal {
            error,
            message,
            record_errors: Vec::new(),
        }
    }
}

/// A read of one partition.
pub struct FetchItem {
    pub topic: String,
    pub partition: i32,
    pub fetch_offset: i64,
    pub partition_max_bytes: usize,
    pub read_committed: bool,
    /// The leader epoch the fetcher knows (KIP-320; -1: not given): an older one is FENCED_LEADER_EPOCH,
    /// a newer one UNKNOWN_LEADER_EPOCH.
    pub current_leader_epoch: i32,
    /// A follower's fetch (`None`: a consumer's).
    pub replica: Option<ReplicaFetch>,
    /// Only a leader may answer (consumers before Fetch v11; Kafka's `fetchOnlyFromLeader`): a
    /// follower answers NOT_LEADER_OR_FOLLOWER. From v11 a follower serves consumers (KIP-392).
    pub leader_only: bool,
    /// A consumer's fetch on a leader whose replica selector would send it elsewhere: the in-sync
    /// followers in the consumer's rack, in replica order (see `crate::replica_selector`). The leader
    /// picks one that has the fetch offset and answers it as `preferred_read_replica` without records.
    pub preferred_candidates: Vec<i32>,
}

/// What a follower's fetch tells its leader besides the offset.
#[derive(Clone, Copy, Debug)]
pub struct ReplicaFetch {
    pub replica_id: i32,
    /// The epoch of the last batch the follower has (-1: none): the leader answers a diverging epoch
    /// when its own log differs there (KIP-595's check, replacing KIP-101's separate round trip).
    pub last_fetched_epoch: i32,
}

pub struct FetchOutcome {
    pub error: Option<ResponseError>,
    pub high_watermark: i64,
    pub last_stable_offset: i64,
    pub log_start_offset: i64,
    /// Whole batches, each in the buffer it lives in (batch cache or segment read): no copy.
    pub records: Vec<Bytes>,
    /// read_committed: the aborted transactions overlapping the batches read, oldest first (the
    /// consumer drops their records); always empty for read_uncommitted.
    pub aborted_transactions: Vec<AbortedTxn>,
    /// A follower's log differs from the leader's from this epoch on: (epoch, end offset of that epoch
    /// on the leader); the follower truncates before it fetches again.
    pub diverging_epoch: Option<(LeaderEpoch, Offset)>,
    /// A consumer should fetch from this replica instead (KIP-392); the answer carries no records.
    pub preferred_read_replica: Option<i32>,
}

impl FetchOutcome {
    pub fn failed(code: ResponseError) -> FetchOutcome {
        FetchOutcome {
            error: Some(code),
            high_watermark: -1,
            last_stable_offset: -1,
            log_start_offset: -1,
            records: Vec::new(),
            aborted_transactions: Vec::new(),
            diverging_epoch: None,
            preferred_read_replica: None,
        }
    }

    pub fn records_bytes(&self) -> usize {
        self.records.iter().map(Bytes::len).sum()
    }
}

/// A partition a long-polling fetch waits on, and the end it has already seen: the high watermark,
/// or for read_committed the last stable offset.
pub struct WaitItem {
    pub topic: String,
    pub partition: i32,
    pub seen: Offset,
    pub read_committed: bool,
    /// A follower's fetch waits for the leader's log end (what it reads), not the high watermark.
    pub replica: bool,
    /// A follower's fetch: the high watermark its last answer carried. A move past it completes the
    /// wait too, so the follower learns it at once and can serve consumers up to it (KIP-392);
    /// ignored for consumers.
    pub seen_high_watermark: Offset,
}

/// A ListOffsets lookup of one partition, or an OffsetForLeaderEpoch one.
pub struct OffsetQuery {
    pub topic: String,
    pub partition: i32,
    pub lookup: OffsetLookup,
    pub read_committed: bool,
    /// The leader epoch the asker knows (-1: none), checked as a fetch's is (KIP-320).
    pub current_leader_epoch: i32,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum OffsetLookup {
    /// ListOffsets: a timestamp, or one of its special values (-1 latest, -2 earliest …).
    Timestamp(i64),
    /// OffsetForLeaderEpoch: where this epoch ends in the leader's log (the answer's `leader_epoch`
    /// is the largest epoch at or below it the leader has; -1 and offset -1 when it has none).
    EpochEnd(LeaderEpoch),
}

/// What a ListOffsets lookup found.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct OffsetAnswer {
    pub offset: Offset,
    pub timestamp: i64,
    /// The epoch the offset was written in; None when nothing was found.
    pub leader_epoch: Option<LeaderEpoch>,
}

impl OffsetAnswer {
    /// Nothing found: offset and timestamp -1.
    pub const NONE: OffsetAnswer = OffsetAnswer {
        offset: Offset(-1),
        timestamp: -1,
        leader_epoch: None,
    };
}

pub type OffsetOutcome = Result<OffsetAnswer, ResponseError>;

/// A DeleteRecords item: move one partition's log start to `offset` (-1: the high watermark).
pub struct DeleteRecordsItem {
    pub topic: String,
    pub partition: i32,
    pub offset: i64,
}

/// The partition's new low watermark (log start offset), or the Kafka error.
pub type DeleteRecordsOutcome = Result<Offset, ResponseError>;

/// A transaction marker to write to one partition (WriteTxnMarkers: the transaction coordinator
/// ending a producer's transaction there).
pub struct MarkerItem {
    pub topic: String,
    pub partition: i32,
    pub marker: storage::TxnMarker,
}

/// The marker's offset once written, or the Kafka error (NOT_LEADER_OR_FOLLOWER,
/// UNKNOWN_TOPIC_OR_PARTITION, KAFKA_STORAGE_ERROR, TRANSACTION_COORDINATOR_FENCED …).
pub type MarkerOutcome = Result<Offset, ResponseError>;

/// One producer of a partition as DescribeProducers reports it (Kafka's `activeProducers`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActiveProducer {
    pub producer_id: i64,
    pub producer_epoch: i16,
    /// The sequence of its last batch; -1 when it has none (only markers).
    pub last_sequence: i32,
    pub last_timestamp: i64,
    pub coordinator_epoch: i32,
    /// The first offset of its open transaction; -1 when none is open.
    pub current_txn_start_offset: i64,
}

/// A partition's producers, or the Kafka error (NOT_LEADER_OR_FOLLOWER when it is not served here).
pub type ProducersOutcome = Result<Vec<ActiveProducer>, ResponseError>;
