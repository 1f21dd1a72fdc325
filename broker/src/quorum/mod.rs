//! The metadata quorum (KRaft-style): the controllers replicate one metadata log with Raft, and every
//! node applies it, in log order, to its metadata image.
//!
//! Consensus is raft-rs (TiKV's port of etcd's Raft), a synchronous library with no runtime of its own:
//! one task on the controller shard (shard 0) drives it (`node`), the log and hard state persist in one
//! append-only file (`log_store`), Raft messages travel on the controller port (`wire`, `transport`),
//! and the committed records (`records`) build the image (`image`). Why raft-rs and not openraft: it
//! fits thread-per-core without adapters (no tasks, timers or `Send` bounds of its own), is a released
//! crate rather than an alpha, and a pure state machine is what deterministic simulation needs;
//! ARCHITECTURE.md records the comparison.
//!
//! Identity: Raft ids are node ids + 1 (Raft reserves 0). The voters are `controller_quorum_voters`
//! (default: this node alone — a single broker is a cluster of one on the same code paths); broker-only
//! nodes follow the log as learners (`observers`), and the log is compacted into snapshots of the image
//! (`snapshot`, `memory_log`). A new data
//! directory is formatted (`meta.properties`) with the cluster id the quorum commits first; a directory
//! formatted for another cluster is refused (`transport::Identity`, `node`).
//!
//! What the image holds: the cluster id, the registered brokers (endpoint, rack, epoch, fenced), producer-id
//! blocks, topics with their partitions (replicas, ISR, leader, epochs) and configs, and the dynamic
//! broker defaults. The control plane proposes topic changes (`control::quorum_changes`) and publishes
//! the image to every shard (`control::quorum_publisher`); a broker's topics from before the quorum
//! carried them are migrated once (`migration`).

pub mod image;
pub mod leader_balance;
pub mod log_store;
mod logger;
pub mod memory_log;
pub mod migration;
mod node;
pub mod observers;
pub mod partition_changes;
pub mod placement;
pub mod records;
#[cfg(test)]
mod scale_tests;
#[cfg(test)]
mod simulation_tests;
pub mod snapshot;
pub mod topic_changes;
pub mod transport;
pub mod wire;

use crate::config::BrokerConfig;
use image::MetadataImage;
use log_store::QuorumLog;
use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::Arc;
use transport::{Identity, Transport};

/// Raft messages from other voters queued for the Ready loop before new ones are dropped.
pub const INBOUND_QUEUE_LENGTH: usize = 4096;

/// The Raft id of Kafka node `node_id` (Raft reserves 0).
pub fn raft_id_of(node_id: i32) -> u64 {
    node_id as u64 + 1
}

/// The Kafka node id of Raft id `raft_id`.
pub fn node_of(raft_id: u64) -> i32 {
    raft_id.saturating_sub(1) as i32
}

/// What DescribeQuorum reports: the Raft view of this node.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct QuorumStatus {
    pub leader_id: Option<i32>,
    /// The Raft term (KRaft's leader epoch).
    pub term: u64,
    /// The commit index (KRaft's high watermark).
    pub high_watermark: u64,
    pub voters: Vec<VoterStatus>,
    /// The learners (broker-only nodes), as DescribeQuorum's observers.
    pub observers: Vec<VoterStatus>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
pub struct VoterStatus {
    pub node_id: i32,
    /// The last index known replicated to it (this node: its own last index; -1 when unknown, as on
    /// a follower).
    pub log_end_offset: i64,
    /// Wall-clock milliseconds when this node last heard from it (-1: never).
    pub last_heard_ms: i64,
}

/// The quorum as shard 0 sees it: the latest status and image, and an event notified when the image
/// changes (cluster id, brokers).
#[derive(Default)]
pub struct Quorum {
    pub status: RefCell<QuorumStatus>,
    pub image: RefCell<Rc<MetadataImage>>,
    pub changed: event_listener::Event,
    /// Set when the Ready loop has returned (after `stopped()`), with no write of its own in flight.
    stopped: Cell<bool>,
    stopped_event: event_listener::Event,
    /// Records the control plane asked to commit, for the Ready loop to propose (`propose`).
    proposals: RefCell<VecDeque<Proposal>>,
    proposals_event: event_listener::Event,
}

/// A record to commit, and whom to tell what became of it.
pub(crate) struct Proposal {
    record: records::MetadataRecord,
    deadline: std::time::Instant,
    reply: futures_channel::oneshot::Sender<Result<Applied, ProposalError>>,
}

/// A proposal this node made, applied here.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Applied {
    /// Its index in the metadata log.
    pub index: u64,
    /// What it changed in the image (`Change::None`: it did not fit when applied, e.g. a producer-id
    /// block another node took first).
    pub change: image::Change,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
pub enum ProposalError {
    #[error("the metadata quorum did not commit it in time (no leader, or leadership changed)")]
    TimedOut,
    #[error("the metadata quorum is stopping")]
    Stopping,
    #[error("the change takes {0} bytes in the metadata log, more than one entry may hold ({max})", max = node::MAX_ENTRY_BYTES_PER_MESSAGE)]
    TooLarge(usize),
    #[error(
        "a name, value or list is longer than the metadata log holds ({} bytes, {} items)",
        records::MAX_STRING_BYTES,
        records::MAX_LIST_LENGTH
    )]
    Unencodable,
}

impl Quorum {
    /// Commits `record` through the quorum (any node may propose: a follower's proposal goes to the
    /// leader) and waits, at most `timeout`, until this node has applied it.
    pub async fn propose(
        &self,
        record: records::MetadataRecord,
        timeout: std::time::Duration,
    ) -> Result<Applied, ProposalError> {
        self.submit(record, timeout)
            .await
            .unwrap_or(Err(ProposalError::Stopping))
    }

    /// Queues `record` for the Ready loop at once (so several can be in flight) and returns where its
    /// outcome will come; `propose` waits for it.
    pub fn submit(
        &self,
        record: records::MetadataRecord,
        timeout: std::time::Duration,
    ) -> futures_channel::oneshot::Receiver<Result<Applied, ProposalError>> {
        let (reply, receiver) = futures_channel::oneshot::channel();
        let encoded = record.encode();
        if encoded.len() as u64 > node::MAX_ENTRY_BYTES_PER_MESSAGE {
            // Raft sends an entry whole: a larger one could never reach the other voters' frames.
            let _ = reply.send(Err(ProposalError::TooLarge(encoded.len())));
            return receiver;
        }
        if records::MetadataRecord::decode(&encoded).as_ref() != Ok(&record) {
            // A name, value or list longer than a record holds would be cut: refused instead.
            let _ = reply.send(Err(ProposalError::Unencodable));
            return receiver;
        }
        self.proposals.borrow_mut().push_back(Proposal {
            record,
            deadline: shard::task::now() + timeout,
            reply,
        });
        self.proposals_event.notify(1);
        receiver
    }

    /// Waits (at most `limit`) until the Ready loop has returned. The shard waits for it before its
    /// executor ends: a write still on the blocking pool must find its executor there to report to.
    pub async fn wait_stopped(&self, limit: std::time::Duration) {
        let waiting = async {
            while !self.stopped.get() {
                let listener = self.stopped_event.listen();
                if self.stopped.get() {
                    break;
                }
                listener.await;
            }
        };
        if shard::task::timeout(limit, waiting).await.is_none() {
            tracing::warn!("quorum: the Ready loop did not stop in time");
        }
    }
}

/// Starts the quorum on this (the controller) shard: the transport, the controller listener when there
/// are other voters, and the Ready loop until `stopped()`. `cluster_id` is the directory's
/// (`meta.properties`), if it is formatted; `candidate_cluster_id` is what this node proposes if it leads
/// before any cluster id is committed, and `migration` the topics it proposes if it leads before any
/// node's topics are in the log.
pub fn start(
    config: Arc<BrokerConfig>,
    log: QuorumLog,
    cluster_id: Option<String>,
    candidate_cluster_id: String,
    migration: migration::Migration,
    stopped: impl Fn() -> bool + 'static,
) -> Rc<Quorum> {
    let voters = config.quorum_voters.clone();
    let identity = Rc::new(Identity::new(
        config.node_id,
        config.data_dir.clone(),
        cluster_id,
        voters.len().max(1),
    ));
    let quorum = Rc::new(Quorum::default());
    let (inbound, receiver) = futures_channel::mpsc::channel(INBOUND_QUEUE_LENGTH);
    let observers = Rc::new(observers::Observers::default());
    let transport = Transport::start(&identity, &voters, observers.clone(), &inbound);
    // A controller listens wherever controller_quorum_voters names it, even as the only voter (broker-only
    // nodes may join it); a broker-only node, or a cluster of one by default, has no controller_listen.
    if let Some(address) = config.controller_listen {
        match shard::net::Listener::bind(address) {
            Ok(listener) => {
                tracing::info!(%address, voters = voters.len(), "quorum: listening for the other voters");
                shard::task::spawn(transport::listen(
                    identity.clone(),
                    voters.clone(),
                    observers,
                    listener,
                    inbound.clone(),
                ));
            }
            Err(error) => fatal(&format!(
                "cannot listen on the controller address {address}: {error}"
            )),
        }
    }
    let node = node::Node::new(node::NodeParts {
        log,
        transport: Box::new(transport),
        identity,
        quorum: quorum.clone(),
        config,
        candidate_cluster_id,
        migration,
    })
    .unwrap_or_else(|error| fatal(&format!("cannot start the quorum: {error}")));
    shard::task::spawn(async move {
        // Held for the loop's life: with no other sender (a cluster of one) the inbound queue would
        // otherwise report closed on every poll.
        let _inbound = inbound;
        let quorum = node.quorum();
        node.run(receiver, stopped).await;
        quorum.stopped.set(true);
        quorum.stopped_event.notify(usize::MAX);
    });
    quorum
}

/// Exits the process with status 1 after logging why: for what the node cannot go on from (its
/// directory belongs to another cluster, its quorum log cannot be written).
pub fn fatal(message: &str) -> ! {
    tracing::error!("{message}");
    eprintln!("broker: {message}");
    std::process::exit(1)
}

#[cfg(test)]
mod tests {
    use super::records::{ConfigTarget, MetadataRecord};
    use super::*;

    fn outcome(quorum: &Quorum, record: MetadataRecord) -> Result<Applied, ProposalError> {
        let receiver = quorum.submit(record, std::time::Duration::from_secs(1));
        futures_lite::future::block_on(receiver).expect("answered at once")
    }

    #[test]
    fn what_a_record_cannot_hold_is_refused_before_it_is_proposed() {
        let quorum = Quorum::default();
        let long = MetadataRecord::Config {
            target: ConfigTarget::BrokerDefault,
            name: "log.retention.ms".into(),
            value: Some("9".repeat(records::MAX_STRING_BYTES + 1)),
        };
        assert_eq!(outcome(&quorum, long), Err(ProposalError::Unencodable));
        let huge = MetadataRecord::Batch(
            (0..100)
                .map(|index| MetadataRecord::Config {
                    target: ConfigTarget::BrokerDefault,
                    name: format!("name-{index}"),
                    value: Some("9".repeat(records::MAX_STRING_BYTES)),
                })
                .collect(),
        );
        assert!(matches!(
            outcome(&quorum, huge),
            Err(ProposalError::TooLarge(_))
        ));
        assert!(quorum.proposals.borrow().is_empty(), "nothing queued");
    }
}
