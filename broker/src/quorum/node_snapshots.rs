//! Snapshots in the Ready loop.
//!
//! - **Compaction**: once `metadata_log_max_record_bytes_between_snapshots` bytes of entries were written
//!   since the last snapshot (Kafka's `metadata.log.max.record.bytes.between.snapshots`), every node —
//!   leader or follower, each on its own — snapshots its image at its applied index and drops the
//!   entries up to it (`log_store::compact`).
//! - **Sending**: a follower that needs entries the leader dropped is sent the leader's latest snapshot
//!   (raft-rs asks `MemoryLog::snapshot`). A snapshot the follower never acknowledges (lost with its
//!   connection) is reported failed after `SNAPSHOT_TIMEOUT`, so the leader sends it again.
//! - **Installing**: a follower checks a snapshot before raft-rs takes it (once taken it cannot be
//!   refused): its data must decode to an image at the snapshot's index, and its voters must be this
//!   node's. Then the snapshot replaces its log (`log_store::install`) and the image replaces its image.

use super::{fatal, node_of, Node};
use crate::log_limit::LogLimiter;
use crate::quorum::snapshot::{self, MAX_SNAPSHOT_BYTES};
use raft::prelude::{Message, MessageType, Snapshot};
use raft::{ProgressState, SnapshotStatus, StateRole};
use std::rc::Rc;
use std::time::{Duration, Instant};

/// How long the leader waits for a follower to take a snapshot before it sends it again.
const SNAPSHOT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long compaction waits after the image was found too large to snapshot.
const TOO_LARGE_BACKOFF: Duration = Duration::from_secs(60);

static REFUSED_SNAPSHOTS: LogLimiter = LogLimiter::new(Duration::from_secs(10), 3);

impl Node {
    /// Whether raft-rs may take `message`: anything but a snapshot, or a snapshot that fits this node
    /// (see the module documentation). The image it holds is kept for `install_snapshot`.
    pub(super) fn takes_snapshot_message(&mut self, message: &Message) -> bool {
        if message.get_msg_type() != MessageType::MsgSnapshot {
            return true;
        }
        let snapshot = message.get_snapshot();
        let index = snapshot.get_metadata().index;
        if message.term < self.raw.raft.term || index <= self.raw.raft.raft_log.committed {
            // raft-rs ignores a stale snapshot, or one behind what this node committed: not decoded.
            return true;
        }
        let mut theirs: Vec<u64> = snapshot.get_metadata().get_conf_state().voters.clone();
        theirs.sort_unstable();
        let mut ours: Vec<u64> = self.raw.raft.prs().conf().voters().ids().iter().collect();
        ours.sort_unstable();
        let refusal = match snapshot::decode(snapshot.get_data()) {
            Err(error) => error.to_string(),
            Ok(_) if theirs != ours => format!("it names the voters {theirs:?}, not {ours:?}"),
            Ok(image) if image.applied_index != index => format!(
                "its image is at {}, not at the snapshot's index {index}",
                image.applied_index
            ),
            Ok(image) => {
                self.received_snapshot = Some(image);
                return true;
            }
        };
        crate::warn_limited!(REFUSED_SNAPSHOTS, from = node_of(message.from), index, %refusal,
            "quorum: a snapshot refused");
        false
    }

    /// Installs the leader's `snapshot`, which raft-rs took (checked by `takes_snapshot_message`).
    pub(super) async fn install_snapshot(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        let image = match self.received_snapshot.take() {
            Some(image) if image.applied_index == index => image,
            _ => snapshot::decode(snapshot.get_data()).unwrap_or_else(|error| {
                fatal(&format!("the leader's snapshot at {index}: {error}"))
            }),
        };
        if let Err(error) = self.log.install(snapshot).await {
            fatal(&format!("cannot persist the quorum's log: {error}"));
        }
        tracing::info!(
            index,
            topics = image.topics.len(),
            "quorum: installed the leader's snapshot of the metadata log"
        );
        let cluster_id = image.cluster_id.clone();
        *self.quorum.image.borrow_mut() = Rc::new(image);
        self.proposed.clear();
        if let Some(cluster_id) = cluster_id {
            self.adopt_cluster_id(cluster_id);
        }
        self.quorum.changed.notify(usize::MAX);
    }

    /// Snapshots the image and drops the entries it covers, once enough was written since the last.
    pub(super) async fn compact_if_due(&mut self) {
        if self.log.written_since_snapshot() < self.config.metadata_snapshot_bytes {
            return;
        }
        let now = shard::task::now();
        if self
            .compaction_paused_until
            .is_some_and(|until| now < until)
        {
            return;
        }
        let image = self.quorum.image.borrow().clone();
        let index = image.applied_index;
        let storage = self.log.storage();
        let (snapshot_index, last_index, term, conf_state) = {
            let core = storage.core();
            let metadata = core.snapshot().get_metadata();
            (
                metadata.index,
                core.last_index(),
                core.term(index),
                core.conf_state.clone(),
            )
        };
        // Only what is applied and durable here (a leader may apply entries others persisted first).
        let Some(term) = term.filter(|_| index > snapshot_index && index <= last_index) else {
            return;
        };
        let started = Instant::now();
        let data = snapshot::encode(&image);
        if data.len() > MAX_SNAPSHOT_BYTES {
            crate::warn_limited!(
                REFUSED_SNAPSHOTS,
                bytes = data.len(),
                max = MAX_SNAPSHOT_BYTES,
                "quorum: the metadata image is too large to snapshot; the log is not compacted"
            );
            self.compaction_paused_until = Some(now + TOO_LARGE_BACKOFF);
            return;
        }
        let bytes = data.len();
        let mut snapshot = Snapshot::default();
        snapshot.mut_metadata().index = index;
        snapshot.mut_metadata().term = term;
        snapshot.mut_metadata().set_conf_state(conf_state);
        snapshot.set_data(data.into());
        if let Err(error) = self.log.compact(snapshot).await {
            fatal(&format!("cannot persist the quorum's log: {error}"));
        }
        tracing::info!(
            index,
            bytes,
            elapsed_ms = started.elapsed().as_millis() as u64,
            "quorum: compacted the metadata log into a snapshot"
        );
    }

    /// As leader: a follower still waiting for its snapshot after `SNAPSHOT_TIMEOUT` is reported
    /// failed, so raft-rs sends it again.
    pub(super) fn retry_lost_snapshots(&mut self, now: Instant) {
        debug_assert!(self.raw.raft.state == StateRole::Leader);
        let waiting: Vec<u64> = self
            .raw
            .raft
            .prs()
            .iter()
            .filter(|(_, progress)| progress.state == ProgressState::Snapshot)
            .map(|(id, _)| *id)
            .collect();
        self.sending_snapshots.retain(|id, _| waiting.contains(id));
        for id in waiting {
            let since = *self.sending_snapshots.entry(id).or_insert(now);
            if now.duration_since(since) >= SNAPSHOT_TIMEOUT {
                tracing::info!(
                    peer = node_of(id),
                    "quorum: a snapshot not taken in time; sending it again"
                );
                self.raw.report_snapshot(id, SnapshotStatus::Failure);
                self.sending_snapshots.remove(&id);
            }
        }
    }
}
