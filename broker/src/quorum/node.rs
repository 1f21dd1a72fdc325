//! The Ready loop: one task on shard 0 drives raft-rs's `RawNode` — logical ticks, messages from the
//! other voters, this node's proposals — and handles each `Ready` in the order raft-rs requires:
//!
//! 1. send the messages that may leave before persisting (a leader's appends);
//! 2. install the leader's snapshot, if it sent one (`snapshots`), then apply the committed entries
//!    to the metadata image;
//! 3. persist the new entries and hard state (`log_store`: one write, one fsync);
//! 4. send the messages that needed them durable (votes, append responses);
//! 5. advance, and do the same for the light ready (more commits, more messages);
//! 6. compact the log into a snapshot of the image once enough was written since the last (`snapshots`).
//!
//! Besides, on each tick the node does its controller duties: as leader, it commits the cluster id once
//! (the candidate is this node's `cluster_metadata.toml` id, so a single broker upgraded to the quorum
//! keeps its id) and fences brokers it has not heard from within `broker.session.timeout.ms` (and
//! unfences them when it hears them again); as any node, it registers itself once the cluster id is
//! known, again after every start.

use super::image::{Change, MetadataImage};
use super::log_store::QuorumLog;
use super::memory_log::MemoryLog;
use super::records::MetadataRecord;
use super::transport::{Identity, RaftTransport};
use super::{
    fatal, node_of, raft_id_of, Applied, Proposal, ProposalError, Quorum, QuorumStatus, VoterStatus,
};
use crate::config::BrokerConfig;
use futures_channel::mpsc;
use raft::prelude::{Entry, EntryType, Message};
use raft::{RawNode, StateRole};
use std::collections::{HashMap, VecDeque};
use std::rc::Rc;
use std::sync::Arc;
use std::time::{Duration, Instant};

/// One logical Raft tick.
pub const TICK: Duration = Duration::from_millis(100);
/// Ticks without a leader's word before a follower campaigns (randomized up to twice this).
pub const ELECTION_TICKS: usize = 10;
/// Ticks between a leader's heartbeats.
pub const HEARTBEAT_TICKS: usize = 2;
/// Bytes of entries per append message.
pub const MAX_ENTRY_BYTES_PER_MESSAGE: u64 = 1 << 20;
/// How long a stopping leader tries to hand its leadership over before it stops anyway.
const HANDOVER_LIMIT: Duration = Duration::from_secs(2);
/// How long a proposal this node is waiting to see applied is left before it is proposed again.
const PROPOSAL_RETRY: Duration = Duration::from_secs(1);

#[path = "node_learners.rs"]
mod learners;
#[path = "node_snapshots.rs"]
mod snapshots;

pub(super) struct Node {
    raw: RawNode<MemoryLog>,
    log: QuorumLog,
    transport: Box<dyn RaftTransport>,
    identity: Rc<Identity>,
    quorum: Rc<Quorum>,
    config: Arc<BrokerConfig>,
    /// Random per process start: this node's registration is the one carrying it.
    incarnation: u64,
    candidate_cluster_id: String,
    /// This node's topics from before the quorum carried them, proposed if it leads first.
    migration: super::migration::Migration,
    last_heard: HashMap<u64, Instant>,
    leader_since: Option<Instant>,
    /// What this node proposed and when (so a duty is not proposed again on every tick).
    proposed: HashMap<MetadataRecord, Instant>,
    /// The directory's identity to write once the quorum committed the cluster id (`meta.properties`).
    format: Option<crate::meta_properties::MetaProperties>,
    /// Control-plane requests (`Quorum::propose`) waiting for a leader to propose them to.
    requested_queue: VecDeque<Proposal>,
    /// Control-plane requests proposed and not yet applied here, by request number.
    requested: HashMap<u64, (Instant, ProposalReply)>,
    next_request: u64,
    /// Followers the leader is sending a snapshot to, and since when (`snapshots`).
    sending_snapshots: HashMap<u64, Instant>,
    /// The image of the leader's snapshot this node let raft-rs take, until it installs it.
    received_snapshot: Option<MetadataImage>,
    /// Compaction waits until then after the image was too large to snapshot.
    compaction_paused_until: Option<Instant>,
    /// Broker-only nodes this voter proposed as learners, and when (`learners`).
    learners_proposed: HashMap<u64, Instant>,
    /// When the active controller last looked for leaders to move back (`leader_balance`).
    balance_checked: Option<Instant>,
}

type ProposalReply = futures_channel::oneshot::Sender<Result<Applied, ProposalError>>;

pub(super) struct NodeParts {
    pub log: QuorumLog,
    pub transport: Box<dyn RaftTransport>,
    pub identity: Rc<Identity>,
    pub quorum: Rc<Quorum>,
    pub config: Arc<BrokerConfig>,
    pub candidate_cluster_id: String,
    pub migration: super::migration::Migration,
}

impl Node {
    pub fn new(parts: NodeParts) -> Result<Node, String> {
        // The image starts from the log's snapshot, if it has one; entries after it are applied again.
        let storage = parts.log.storage();
        let snapshot_index = storage.core().snapshot().get_metadata().index;
        if snapshot_index > 0 {
            let image = super::snapshot::decode(storage.core().snapshot().get_data())
                .map_err(|error| format!("{}: {error}", parts.log.path().display()))?;
            if image.applied_index != snapshot_index {
                return Err(format!(
                    "{}: its snapshot at {snapshot_index} holds the image at {}",
                    parts.log.path().display(),
                    image.applied_index
                ));
            }
            *parts.quorum.image.borrow_mut() = Rc::new(image);
        }
        let raft_config = raft::Config {
            id: raft_id_of(parts.config.node_id),
            election_tick: ELECTION_TICKS,
            heartbeat_tick: HEARTBEAT_TICKS,
            max_size_per_msg: MAX_ENTRY_BYTES_PER_MESSAGE,
            max_inflight_msgs: 256,
            check_quorum: true,
            pre_vote: true,
            // Every committed entry after the snapshot is applied again at start: the image is rebuilt
            // from the log.
            applied: snapshot_index,
            ..raft::Config::default()
        };
        let logger = slog::Logger::root(super::logger::TracingDrain, slog::o!());
        let raw =
            RawNode::new(&raft_config, storage, &logger).map_err(|error| error.to_string())?;
        let mut node = Node {
            raw,
            log: parts.log,
            transport: parts.transport,
            identity: parts.identity,
            quorum: parts.quorum,
            config: parts.config,
            incarnation: incarnation(),
            // The directory's own id, unless it cannot stand in meta.properties (a hand-edited
            // cluster_metadata.toml): then a new one.
            candidate_cluster_id: if crate::meta_properties::is_valid_cluster_id(
                &parts.candidate_cluster_id,
            ) {
                parts.candidate_cluster_id
            } else {
                crate::metadata::ClusterMetadata::new_cluster().cluster_id
            },
            migration: parts.migration,
            last_heard: HashMap::new(),
            leader_since: None,
            proposed: HashMap::new(),
            format: None,
            requested_queue: VecDeque::new(),
            requested: HashMap::new(),
            next_request: 0,
            sending_snapshots: HashMap::new(),
            received_snapshot: None,
            compaction_paused_until: None,
            learners_proposed: HashMap::new(),
            balance_checked: None,
        };
        let cluster_id = node.quorum.image.borrow().cluster_id.clone();
        if let Some(cluster_id) = cluster_id {
            node.adopt_cluster_id(cluster_id);
        }
        Ok(node)
    }

    pub fn quorum(&self) -> Rc<Quorum> {
        self.quorum.clone()
    }

    /// Runs until `stopped()` — and, on a leader with other voters, until it has handed its
    /// leadership to the most caught-up follower (at most `HANDOVER_LIMIT`), so the others do not wait
    /// out an election timeout (KRaft's resignation on shutdown).
    pub async fn run(mut self, mut inbound: mpsc::Receiver<Message>, stopped: impl Fn() -> bool) {
        use futures_lite::StreamExt;
        if self.voter_count() == 1 && self.is_voter(self.raw.raft.id) {
            // A cluster of one needs no election timeout: it is its own majority.
            let _ = self.raw.campaign();
        }
        let mut next_tick = shard::task::now() + TICK;
        let mut handing_over_since: Option<Instant> = None;
        loop {
            if stopped() && !self.hand_over(&mut handing_over_since) {
                return;
            }
            let proposed = self.quorum.proposals_event.listen();
            let message = if self.quorum.proposals.borrow().is_empty() {
                let next_message = async {
                    match inbound.next().await {
                        Some(message) => Some(message),
                        // Closed (it never is while the node runs): wait for the tick instead.
                        None => std::future::pending().await,
                    }
                };
                futures_lite::future::or(next_message, async {
                    futures_lite::future::or(proposed, shard::task::sleep_until(next_tick)).await;
                    None
                })
                .await
            } else {
                None
            };
            if let Some(message) = message {
                self.step(message);
            }
            while let Ok(message) = inbound.try_recv() {
                self.step(message);
            }
            let now = shard::task::now();
            if now >= next_tick {
                self.raw.tick();
                next_tick = (next_tick + TICK).max(now);
                self.duties(now);
            }
            self.propose_requested(now);
            for peer in self.transport.take_unreachable() {
                self.raw.report_unreachable(peer);
            }
            self.handle_ready().await;
            self.compact_if_due().await;
            self.publish_status();
        }
    }

    /// Proposes what the control plane asked for (`Quorum::propose`) once there is a leader to take it,
    /// tagging each entry with this node's id, this start's incarnation and a request number (the
    /// entry's context) so that its waiter is answered when this node applies it — and never by an
    /// entry an earlier start proposed, whose request numbers began at 1 too. Requests past their deadline are answered
    /// `TimedOut` (never proposed, or proposed and lost with a leader change).
    fn propose_requested(&mut self, now: Instant) {
        self.requested_queue
            .extend(self.quorum.proposals.borrow_mut().drain(..));
        let mut still_queued = VecDeque::new();
        while let Some(proposal) = self.requested_queue.pop_front() {
            if now >= proposal.deadline {
                let _ = proposal.reply.send(Err(ProposalError::TimedOut));
                continue;
            }
            if self.raw.raft.leader_id == raft::INVALID_ID {
                still_queued.push_back(proposal);
                continue;
            }
            self.next_request += 1;
            let context = self.context_of(self.next_request);
            match self.raw.propose(context, proposal.record.encode()) {
                Ok(()) => {
                    self.requested
                        .insert(self.next_request, (proposal.deadline, proposal.reply));
                }
                Err(_) => still_queued.push_back(proposal),
            }
        }
        self.requested_queue = still_queued;
        let expired: Vec<u64> = self
            .requested
            .iter()
            .filter(|(_, (deadline, _))| now >= *deadline)
            .map(|(request, _)| *request)
            .collect();
        for request in expired {
            if let Some((_, reply)) = self.requested.remove(&request) {
                let _ = reply.send(Err(ProposalError::TimedOut));
            }
        }
    }

    /// An entry's context for this start's request `request`: node id (i32), incarnation (u64),
    /// request number (u64), big-endian.
    fn context_of(&self, request: u64) -> Vec<u8> {
        let mut context = self.config.node_id.to_be_bytes().to_vec();
        context.extend_from_slice(&self.incarnation.to_be_bytes());
        context.extend_from_slice(&request.to_be_bytes());
        context
    }

    /// The waiter of this start's request whose entry carries `context`, if any.
    fn requested_by_context(&mut self, context: &[u8]) -> Option<ProposalReply> {
        let request = u64::from_be_bytes(context.get(12..20)?.try_into().ok()?);
        if context != self.context_of(request).as_slice() {
            return None;
        }
        self.requested.remove(&request).map(|(_, reply)| reply)
    }

    fn voter_count(&self) -> usize {
        self.raw.raft.prs().conf().voters().ids().len()
    }

    /// While stopping: whether to keep running to hand the leadership over (see `run`).
    fn hand_over(&mut self, since: &mut Option<Instant>) -> bool {
        let now = shard::task::now();
        if self.raw.raft.state != StateRole::Leader || self.voter_count() == 1 {
            return false;
        }
        match since {
            Some(started) => now.duration_since(*started) < HANDOVER_LIMIT,
            None => {
                let own = self.raw.raft.id;
                let heard_within = TICK * ELECTION_TICKS as u32;
                let alive = |id: &u64| {
                    self.last_heard
                        .get(id)
                        .is_some_and(|heard| now.duration_since(*heard) < heard_within)
                };
                let transferee = self
                    .raw
                    .raft
                    .prs()
                    .iter()
                    .filter(|(id, _)| **id != own && self.is_voter(**id) && alive(id))
                    .max_by_key(|(id, progress)| (progress.matched, std::cmp::Reverse(**id)))
                    .map(|(id, _)| *id);
                let Some(transferee) = transferee else {
                    return false;
                };
                tracing::info!(
                    to = node_of(transferee),
                    "quorum: stopping; handing the quorum's leadership over"
                );
                self.raw.transfer_leader(transferee);
                *since = Some(now);
                true
            }
        }
    }

    fn step(&mut self, message: Message) {
        if !self.takes_learner_message(&message) {
            tracing::debug!(from = node_of(message.from), kind = ?message.get_msg_type(),
                "quorum: a message a learner does not send; dropped");
            return;
        }
        self.last_heard.insert(message.from, shard::task::now());
        if !self.takes_snapshot_message(&message) {
            return;
        }
        // An honest leader never commits past what it knows this node holds; raft-rs would panic on it.
        if message.get_msg_type() == raft::prelude::MessageType::MsgHeartbeat
            && message.commit > self.raw.raft.raft_log.last_index()
        {
            tracing::warn!(
                from = node_of(message.from),
                commit = message.commit,
                "quorum: a heartbeat committing past this node's log; dropped"
            );
            return;
        }
        if let Err(error) = self.raw.step(message) {
            tracing::debug!(%error, "quorum: message not taken");
        }
    }

    async fn handle_ready(&mut self) {
        if !self.raw.has_ready() {
            return;
        }
        let mut ready = self.raw.ready();
        self.transport.send(ready.take_messages());
        if !ready.snapshot().is_empty() {
            self.install_snapshot(ready.snapshot().clone()).await;
        }
        self.apply(ready.take_committed_entries());
        if let Err(error) = self.log.persist(ready.entries(), ready.hs()).await {
            // A voter that cannot persist its votes and entries must not go on (Raft's safety rests on it).
            fatal(&format!("cannot persist the quorum's log: {error}"));
        }
        self.transport.send(ready.take_persisted_messages());
        let mut light = self.raw.advance(ready);
        if let Some(commit) = light.commit_index() {
            // Kept in memory; the next persisted hard state carries it (a lower commit after a crash is
            // learned again from the leader).
            self.log.storage().core_mut().hard_state.commit = commit;
        }
        self.transport.send(light.take_messages());
        self.apply(light.take_committed_entries());
        self.raw.advance_apply();
        if let Some(properties) = self.format.take() {
            let data_dir = self.config.data_dir.clone();
            let written = shard::task::spawn_blocking(move || properties.persist(&data_dir)).await;
            if let Err(error) = written {
                fatal(&format!("cannot format the data directory: {error}"));
            }
        }
    }

    fn apply(&mut self, entries: Vec<Entry>) {
        if entries.is_empty() {
            return;
        }
        // Changed in place unless someone else holds the current image (then copied once). Taken out
        // of the quorum for the loop, which does not yield, so nobody sees the placeholder.
        let mut shared: Rc<MetadataImage> = std::mem::take(&mut *self.quorum.image.borrow_mut());
        let image = Rc::make_mut(&mut shared);
        let mut changed = false;
        for entry in entries {
            if entry.get_entry_type() != EntryType::EntryNormal {
                self.apply_conf_change(&entry);
                image.skip(entry.index);
                continue;
            }
            if entry.data.is_empty() {
                image.skip(entry.index);
                continue;
            }
            match MetadataRecord::decode(&entry.data) {
                Ok(record) => {
                    self.proposed.remove(&record);
                    let change = image.apply(entry.index, &record);
                    match change {
                        Change::None | Change::ProducerIds | Change::Refused => {}
                        Change::ClusterId => {
                            self.adopt_cluster_id(image.cluster_id.clone().expect("just set"));
                            changed = true;
                        }
                        Change::Brokers | Change::Topics => changed = true,
                    }
                    if let Some(waiting) = self.requested_by_context(&entry.context) {
                        let _ = waiting.send(Ok(Applied {
                            index: entry.index,
                            change,
                        }));
                    }
                }
                Err(error) => {
                    tracing::error!(index = entry.index, %error, "metadata log: a record this broker cannot read; skipped");
                    image.skip(entry.index);
                }
            }
        }
        *self.quorum.image.borrow_mut() = shared;
        if changed {
            self.quorum.changed.notify(usize::MAX);
        }
    }

    /// The quorum committed the cluster id: a new directory is formatted with it; a directory formatted
    /// for another cluster is refused.
    fn adopt_cluster_id(&mut self, cluster_id: String) {
        if let Some(refusal) = self.identity.foreign_directory(&cluster_id) {
            fatal(&refusal);
        }
        if self.identity.cluster_id.borrow().is_none() {
            tracing::info!(%cluster_id, "quorum: the cluster id is committed; formatting the data directory");
            *self.identity.cluster_id.borrow_mut() = Some(cluster_id.clone());
            self.format = Some(crate::meta_properties::MetaProperties {
                cluster_id,
                node_id: self.config.node_id,
            });
        }
    }

    fn duties(&mut self, now: Instant) {
        // Once a tick, not per proposal (a rebalance may propose many at once).
        self.proposed
            .retain(|_, at| now.duration_since(*at) < PROPOSAL_RETRY);
        let image = self.quorum.image.borrow().clone();
        let registered = image
            .brokers
            .get(&self.config.node_id)
            .is_some_and(|broker| broker.incarnation == self.incarnation);
        let leads = self.raw.raft.state == StateRole::Leader;
        if !leads {
            self.leader_since = None;
            self.balance_checked = None;
            self.sending_snapshots.clear();
        } else {
            let leader_since = *self.leader_since.get_or_insert(now);
            let caught_up = self.raw.raft.commit_to_current_term()
                && image.applied_index >= self.raw.raft.raft_log.committed;
            if image.cluster_id.is_none() && caught_up {
                let cluster_id = self.candidate_cluster_id.clone();
                self.propose(now, MetadataRecord::ClusterId { cluster_id });
            }
            if caught_up {
                self.fence_or_unfence(now, leader_since, &image);
                self.rebalance_leaders(now, leader_since, &image);
            }
            self.retry_lost_snapshots(now);
            self.add_connected_learners(now);
            // After this node's registration, so that the partitions it migrates (led by itself)
            // find it live. A controller-only node never registers, and has no topics to migrate.
            if caught_up && (registered || !self.config.process_roles.broker) {
                let migration: Vec<MetadataRecord> =
                    self.migration.next(&image).into_iter().cloned().collect();
                for record in migration {
                    self.propose(now, record);
                }
            }
        }
        // Only brokers register: a controller-only node votes but serves no partitions.
        if image.cluster_id.is_some() && !registered && self.config.process_roles.broker {
            let record = MetadataRecord::RegisterBroker {
                node_id: self.config.node_id,
                incarnation: self.incarnation,
                host: self.config.advertise_host.clone(),
                port: self.config.advertise_port,
                rack: self.config.rack.clone(),
            };
            self.propose(now, record);
        }
    }

    /// The active controller's view of the other brokers' liveness (it never fences itself). A broker
    /// is silent when nothing came from it within the session timeout since this node became leader.
    fn fence_or_unfence(&mut self, now: Instant, leader_since: Instant, image: &MetadataImage) {
        let session = self.config.broker_session_timeout;
        let recently = 2 * self
            .config
            .broker_heartbeat_interval
            .max(TICK * HEARTBEAT_TICKS as u32);
        let mut records = Vec::new();
        for broker in image.brokers.values() {
            if broker.node_id == self.config.node_id {
                continue;
            }
            let heard = self.last_heard.get(&raft_id_of(broker.node_id)).copied();
            let last_sign = heard.map_or(leader_since, |heard| heard.max(leader_since));
            let (node_id, epoch) = (broker.node_id, broker.epoch);
            if !broker.fenced && now.duration_since(last_sign) > session {
                tracing::info!(
                    node_id,
                    epoch,
                    "quorum: fencing a broker not heard from within the session timeout"
                );
                records.push(MetadataRecord::FenceBroker { node_id, epoch });
            } else if broker.fenced
                && heard.is_some_and(|heard| now.duration_since(heard) < recently)
            {
                tracing::info!(
                    node_id,
                    epoch,
                    "quorum: unfencing a broker heard from again"
                );
                records.push(MetadataRecord::UnfenceBroker { node_id, epoch });
            }
        }
        for record in records {
            self.propose(now, record);
        }
    }

    /// Every `leader.imbalance.check.interval.seconds` of leadership: the preferred-leader elections
    /// that `leader_balance` finds due (a new controller waits one interval, so brokers that just came
    /// back can catch up first).
    fn rebalance_leaders(&mut self, now: Instant, leader_since: Instant, image: &MetadataImage) {
        let balance = &self.config.leader_balance;
        let last = self.balance_checked.unwrap_or(leader_since);
        if !balance.enabled || now.duration_since(last) < balance.check_interval {
            return;
        }
        self.balance_checked = Some(now);
        let elections = super::leader_balance::elections_due(image, balance.imbalance_percentage);
        if !elections.is_empty() {
            tracing::info!(
                partitions = elections.len(),
                "quorum: moving leadership back to preferred leaders"
            );
        }
        for record in elections {
            self.propose(now, record);
        }
    }

    /// Proposes `record` unless it was proposed within `PROPOSAL_RETRY` (raft-rs forwards a follower's
    /// proposal to the leader, and drops it while there is none; the duty proposes it again).
    fn propose(&mut self, now: Instant, record: MetadataRecord) {
        if self
            .proposed
            .get(&record)
            .is_some_and(|at| now.duration_since(*at) < PROPOSAL_RETRY)
        {
            return;
        }
        if self.raw.propose(vec![], record.encode()).is_ok() {
            self.proposed.insert(record, now);
        }
    }

    fn publish_status(&self) {
        let raft = &self.raw.raft;
        let leads = raft.state == StateRole::Leader;
        let now = shard::task::now();
        let wall_now = shard::task::wall_clock_ms();
        let mut voters: Vec<u64> = raft.prs().conf().voters().ids().iter().collect();
        voters.sort_unstable();
        let learners: Vec<u64> = raft.prs().conf().learners().iter().copied().collect();
        let status_of = |id: u64| {
            let log_end_offset = if id == raft.id {
                raft.raft_log.last_index() as i64
            } else if leads {
                raft.prs()
                    .get(id)
                    .map_or(-1, |progress| progress.matched as i64)
            } else {
                -1
            };
            let last_heard_ms = if id == raft.id {
                wall_now
            } else {
                self.last_heard.get(&id).map_or(-1, |heard| {
                    wall_now - now.duration_since(*heard).as_millis() as i64
                })
            };
            VoterStatus {
                node_id: node_of(id),
                log_end_offset,
                last_heard_ms,
            }
        };
        let observers = learners.into_iter().map(status_of).collect();
        let voters = voters.into_iter().map(status_of).collect();
        let leader_id = (raft.leader_id != raft::INVALID_ID).then(|| node_of(raft.leader_id));
        let leader_changed = self.quorum.status.borrow().leader_id != leader_id;
        *self.quorum.status.borrow_mut() = QuorumStatus {
            leader_id,
            term: raft.term,
            high_watermark: raft.raft_log.committed,
            voters,
            observers,
        };
        if leader_changed {
            tracing::info!(leader = ?leader_id, term = raft.term, "quorum: leader changed");
            // The active controller is published to the shards (Metadata's controller id).
            self.quorum.changed.notify(usize::MAX);
        }
    }
}

fn incarnation() -> u64 {
    let bytes = uuid::Uuid::new_v4().into_bytes();
    u64::from_be_bytes(bytes[..8].try_into().expect("8 bytes"))
}
