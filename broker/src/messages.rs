//! The whole cross-shard protocol: every message one shard sends another is a variant of [`ShardMessage`].
//!
//! Data-plane messages (`Produce`, `Fetch`, `WaitForData`, `ListOffsets`, `DeleteRecords`; their items and outcomes are in
//! `partition::requests`) go to the shard that owns the partitions they name; group messages (`Group`;
//! `group::protocol`) to the shard that owns the group's coordinator partition; control-plane messages
//! (`Control`; `control::requests`) to shard 0, which answers with `ApplyMetadata` broadcasts. No message
//! carries code: each is data the receiver acts on. A request carries a one-shot reply channel; buffers travel as `Bytes` (reference-counted, no
//! copy). Between two shards messages arrive in send order, and the receiver *dispatches* them in that order
//! (offsets of produced batches are assigned before the next message is looked at), so a connection's
//! produce order to a partition on another shard is kept.

use crate::control::requests::{ControlRequest, ControlResponse};
use crate::group::protocol::{GroupRequest, GroupResponse};
use crate::metadata::ClusterMetadata;
use crate::partition::delayed::Completion;
use crate::partition::manager::UnopenedPartition;
use crate::partition::requests::{
    DeleteRecordsItem, DeleteRecordsOutcome, FetchItem, FetchOutcome, MarkerItem, MarkerOutcome,
    OffsetOutcome, OffsetQuery, ProduceItem, ProduceOutcome, ProducersOutcome, WaitItem,
};
use crate::txn::protocol::{TxnRequest, TxnResponse};
use std::sync::Arc;
use std::time::Duration;

/// The one-shot answer to a request (awaitable across shards without lost wake-ups: `shard::mesh`).
pub type Reply<T> = shard::ReplySender<T>;

pub enum ShardMessage {
    /// Append batches to partitions of the receiving shard.
    Produce {
        items: Vec<ProduceItem>,
        reply: Reply<Vec<ProduceOutcome>>,
    },
    /// Read from partitions of the receiving shard (no waiting).
    Fetch {
        items: Vec<FetchItem>,
        max_bytes: usize,
        reply: Reply<Vec<FetchOutcome>>,
    },
    /// Reply once any of the partitions has a high watermark past the offset seen (a delayed fetch in
    /// the receiver's purgatory), or after `max_wait`, or when the asker stops waiting (reply dropped).
    WaitForData {
        items: Vec<WaitItem>,
        max_wait: Duration,
        reply: Reply<Completion>,
    },
    /// ListOffsets for partitions of the receiving shard.
    ListOffsets {
        items: Vec<OffsetQuery>,
        reply: Reply<Vec<OffsetOutcome>>,
    },
    /// DeleteRecords for partitions of the receiving shard.
    DeleteRecords {
        items: Vec<DeleteRecordsItem>,
        reply: Reply<Vec<DeleteRecordsOutcome>>,
    },
    /// Write transaction markers to partitions of the receiving shard (the transaction coordinator's
    /// WriteTxnMarkers), in order; the answers are in item order.
    WriteTxnMarkers {
        items: Vec<MarkerItem>,
        reply: Reply<Vec<MarkerOutcome>>,
    },
    /// The producer state of partitions of the receiving shard (DescribeProducers), in item order.
    DescribeProducers {
        items: Vec<crate::partition::TopicPartition>,
        reply: Reply<Vec<ProducersOutcome>>,
    },
    /// The log sizes in bytes of partitions of the receiving shard (DescribeLogDirs); `None` where the
    /// partition is not open there.
    PartitionSizes {
        items: Vec<crate::partition::TopicPartition>,
        reply: Reply<Vec<Option<u64>>>,
    },
    /// Topic creation/deletion, producer ids …: handled by shard 0.
    Control {
        request: ControlRequest,
        reply: Reply<ControlResponse>,
    },
    /// The metadata quorum's status (DescribeQuorum): handled by shard 0, which runs the quorum.
    DescribeQuorum {
        reply: Reply<crate::quorum::QuorumStatus>,
    },
    /// A new metadata version from shard 0: adopt it, open/close partitions accordingly, then reply.
    ApplyMetadata {
        metadata: Arc<ClusterMetadata>,
        /// The partitions this shard could not open.
        reply: Reply<Vec<UnopenedPartition>>,
    },
    /// A group coordinator request (JoinGroup, OffsetCommit, ListGroups …): see `group::protocol` for the
    /// requests, their answers and which shard serves them.
    Group {
        request: GroupRequest,
        reply: Reply<GroupResponse>,
    },
    /// A transaction coordinator request (InitProducerId, AddPartitionsToTxn, EndTxn …): see
    /// `txn::protocol` for the requests, their answers and which shard serves them.
    Txn {
        request: TxnRequest,
        reply: Reply<TxnResponse>,
    },
}
