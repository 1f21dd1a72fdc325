//! Learners in the Ready loop: broker-only nodes follow the metadata log as raft-rs learners
//! (`observers`).
//!
//! - The leader, for each broker-only node connected to it, proposes a configuration change that adds
//!   it as a learner, unless the configuration has it already (again after `PROPOSAL_RETRY`: raft-rs
//!   takes one configuration change at a time and turns another into an empty entry meanwhile).
//! - Every node applies committed configuration changes in log order. Only the addition of a learner
//!   that is not a voter, while there are fewer than `MAX_LEARNERS`, is taken; anything else (removing
//!   or demoting a voter, joint changes) is skipped, the same way on every node, so the voters stay those of `controller_quorum_voters`. The
//!   configuration is kept with the log (`MemoryLog::conf_state`, in every snapshot), and the changes
//!   after the snapshot are applied again at start.
//! - A learner's traffic is checked: from a node that is not a voter only the messages a learner sends
//!   (answers to appends and heartbeats, forwarded proposals) are taken, and never with a term above
//!   this node's, which would depose a leader.

use super::{node_of, Node, PROPOSAL_RETRY};
use crate::quorum::wire::learner_sends;
use protobuf::Message as _;
use raft::prelude::{ConfChangeSingle, ConfChangeType, ConfChangeV2, Entry, EntryType, Message};
use std::time::Instant;

/// Most learners the configuration holds. Learners are not removed yet, so every broker-only node id
/// ever seen counts: the bound keeps the leader's fan-out and the snapshots' configuration bounded.
pub const MAX_LEARNERS: usize = 1024;

impl Node {
    /// Whether Raft id `id` is one of the configured voters.
    pub(super) fn is_voter(&self, id: u64) -> bool {
        self.raw.raft.prs().conf().voters().contains(id)
    }

    /// As the leader (a duty): proposes each connected broker-only node the configuration lacks as a
    /// learner.
    pub(super) fn add_connected_learners(&mut self, now: Instant) {
        if !self.is_voter(self.raw.raft.id) {
            return;
        }
        self.learners_proposed
            .retain(|_, at| now.duration_since(*at) < PROPOSAL_RETRY);
        for id in self.transport.observers() {
            let learners = self.raw.raft.prs().conf().learners();
            let known = learners.contains(&id) || self.is_voter(id);
            if known || learners.len() >= MAX_LEARNERS || self.learners_proposed.contains_key(&id) {
                continue;
            }
            let mut change = ConfChangeV2::default();
            let mut single = ConfChangeSingle::default();
            single.set_change_type(ConfChangeType::AddLearnerNode);
            single.node_id = id;
            change.set_changes(vec![single].into());
            if self.raw.propose_conf_change(vec![], change).is_ok() {
                self.learners_proposed.insert(id, now);
            }
        }
    }

    /// Applies the committed configuration change in `entry` if it adds a learner (see the module
    /// documentation).
    pub(super) fn apply_conf_change(&mut self, entry: &Entry) {
        let change = match entry.get_entry_type() {
            EntryType::EntryConfChangeV2 => ConfChangeV2::parse_from_bytes(&entry.data).ok(),
            // Nothing here proposes the older form.
            EntryType::EntryConfChange => None,
            EntryType::EntryNormal => return,
        };
        let learner = change
            .as_ref()
            .and_then(|change| match change.get_changes() {
                [single]
                    if single.get_change_type() == ConfChangeType::AddLearnerNode
                        && single.node_id != raft::INVALID_ID
                        && !self.is_voter(single.node_id)
                        && self.raw.raft.prs().conf().learners().len() < MAX_LEARNERS =>
                {
                    Some(single.node_id)
                }
                _ => None,
            });
        let (Some(change), Some(learner)) = (change, learner) else {
            tracing::warn!(
                index = entry.index,
                "quorum: a configuration change other than adding a learner; skipped"
            );
            return;
        };
        match self.raw.apply_conf_change(&change) {
            Ok(conf_state) => {
                self.log.storage().core_mut().conf_state = conf_state;
                tracing::info!(
                    node = node_of(learner),
                    "quorum: a broker-only node follows the metadata log (a learner)"
                );
            }
            Err(error) => tracing::warn!(index = entry.index, %error,
                "quorum: a configuration change not applied"),
        }
    }

    /// Whether a message from a node that is not a voter may reach raft-rs (see the module doc).
    pub(super) fn takes_learner_message(&self, message: &Message) -> bool {
        if self.is_voter(message.from) {
            return true;
        }
        learner_sends(message.get_msg_type()) && message.term <= self.raw.raft.term
    }
}
