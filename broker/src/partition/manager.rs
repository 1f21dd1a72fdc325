//! The partitions of one shard (Kafka's `ReplicaManager`, shard-local): opens, closes and deletes them as
//! metadata versions arrive, tells lifecycle listeners, and runs each request's items for this shard
//! (`manager_requests.rs`).
//!
//! Lifecycle: a partition placed on this shard by the metadata, with a replica on this node, is opened
//! and *becomes leader* or follows another broker (its replica fetcher copies it: see
//! `replica_fetcher`); each version adopts the leader, leader epoch and ISR, and a change of role
//! starts the epoch in the log's leader-epoch cache (a new leader) or tells the listeners the partition
//! is no longer served here (a new follower). One with no replica here any more is *unloaded*
//! (shutdown), or *deleted* (its topic is gone). Listeners hear each event after the map changed — the group
//! coordinator starts or stops a coordinator for its internal topic's partitions this way, so this file
//! knows no topic by name.

use super::counters::PartitionCounters;
use super::delayed::DelayedOperations;
use super::replicas::{IsrChange, RoleChange};
use super::{Files, Partition, TopicPartition};
use crate::config::{BrokerConfig, TopicConfig};
use crate::metadata::{partition_dir, ClusterMetadata};
use crate::partition_dir::claim_partition_dir;
use std::cell::{Cell, RefCell};
use std::collections::HashMap;
use std::rc::Rc;
use std::sync::Arc;
use storage::log::LogConfig;
use storage::types::Offset;
use storage::{BatchCache, Log, SegmentFilePool};

/// A partition that could not be opened: (topic, partition index).
pub type UnopenedPartition = (String, i32);

/// Told when a partition of this shard changes hands. Runs on the shard; must not block.
pub trait PartitionListener {
    /// `partition` was opened here and this shard leads it.
    fn became_leader(&self, partition: &Rc<Partition>);
    /// `partition` is no longer served here (shutdown); its data stays.
    fn unloaded(&self, partition: &Partition);
    /// `partition`'s topic was deleted; its data is going.
    fn deleted(&self, partition: &Partition);
    /// A transaction marker was written to `partition` (at `offset`): the group coordinator makes a
    /// committed transaction's offsets visible, or drops an aborted one's.
    fn marker_written(
        &self,
        partition: &Rc<Partition>,
        marker: &storage::TxnMarker,
        offset: Offset,
    ) {
        let _ = (partition, marker, offset);
    }
}

/// What opening a partition needs from the shard.
pub struct PartitionResources {
    pub config: Arc<BrokerConfig>,
    pub files: Files,
    pub cache: Rc<BatchCache>,
    pub segment_files: Rc<SegmentFilePool<Files>>,
    /// The data directory was shut down cleanly: logs may skip recovery.
    pub clean_start: bool,
}

/// A partition key as borrowed parts, so the map of [`TopicPartition`]s can be searched with a `&str`.
/// Both kinds hash and compare as the tuple `(&str, i32)`, which hashes as `(String, i32)` does.
trait PartitionKey {
    fn parts(&self) -> (&str, i32);
}

impl PartitionKey for TopicPartition {
    fn parts(&self) -> (&str, i32) {
        (&self.0, self.1)
    }
}

impl PartitionKey for (&str, i32) {
    fn parts(&self) -> (&str, i32) {
        *self
    }
}

impl<'a> std::borrow::Borrow<dyn PartitionKey + 'a> for TopicPartition {
    fn borrow(&self) -> &(dyn PartitionKey + 'a) {
        self
    }
}

impl std::hash::Hash for dyn PartitionKey + '_ {
    fn hash<H: std::hash::Hasher>(&self, state: &mut H) {
        self.parts().hash(state)
    }
}

impl PartialEq for dyn PartitionKey + '_ {
    fn eq(&self, other: &Self) -> bool {
        self.parts() == other.parts()
    }
}

impl Eq for dyn PartitionKey + '_ {}

pub struct PartitionManager {
    pub(super) resources: PartitionResources,
    pub(super) partitions: RefCell<HashMap<TopicPartition, Rc<Partition>>>,
    pub(super) delayed: Rc<DelayedOperations>,
    listeners: RefCell<Vec<Rc<dyn PartitionListener>>>,
    pub(super) counters: Rc<PartitionCounters>,
    /// How many metadata versions were fully adopted (partitions opened, roles changed): what the
    /// replica fetchers follow (`replica_fetcher::replication_duties`).
    generation: Cell<u64>,
}

impl PartitionManager {
    pub fn new(resources: PartitionResources) -> PartitionManager {
        PartitionManager {
            resources,
            partitions: RefCell::default(),
            delayed: Rc::new(DelayedOperations::new()),
            listeners: RefCell::default(),
            counters: Rc::default(),
            generation: Cell::new(0),
        }
    }

    /// Moves once each metadata version is fully adopted.
    pub fn generation(&self) -> u64 {
        self.generation.get()
    }

    pub fn counters(&self) -> &PartitionCounters {
        &self.counters
    }

    /// Adds a lifecycle listener (before the first metadata is applied, to hear every partition).
    pub fn subscribe(&self, listener: Rc<dyn PartitionListener>) {
        self.listeners.borrow_mut().push(listener);
    }

    /// Looks the partition up without building a `String` key (every produce and fetch calls this).
    pub fn get(&self, topic: &str, index: i32) -> Option<Rc<Partition>> {
        self.partitions
            .borrow()
            .get(&(topic, index) as &dyn PartitionKey)
            .cloned()
    }

    pub fn len(&self) -> usize {
        self.partitions.borrow().len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn all(&self) -> Vec<Rc<Partition>> {
        self.partitions.borrow().values().cloned().collect()
    }

    pub fn delayed(&self) -> &Rc<DelayedOperations> {
        &self.delayed
    }

    pub(super) fn listeners(&self) -> Vec<Rc<dyn PartitionListener>> {
        self.listeners.borrow().clone()
    }

    /// Adopts metadata version `metadata` (replacing `previous`) on shard `shard`: opens the partitions
    /// newly placed here, closes and deletes those whose topic is gone (or was re-created with another
    /// id). Returns the partitions that could not be opened.
    pub async fn apply_metadata(
        &self,
        shard: usize,
        metadata: &ClusterMetadata,
        previous: &ClusterMetadata,
    ) -> Vec<UnopenedPartition> {
        let data_dir = &self.resources.config.data_dir;
        // Each deleted partition's directory is renamed to its `-delete` name (and the rename fsynced)
        // here, then removed in the background; see `partition_dir`.
        let mut deleted_dirs = Vec::new();
        let owned: Vec<TopicPartition> = self.partitions.borrow().keys().cloned().collect();
        for (topic, index) in owned {
            let gone = match (metadata.topics.get(&topic), previous.topics.get(&topic)) {
                (Some(now), Some(before)) => now.id != before.id || index >= now.partition_count(),
                (Some(now), None) => index >= now.partition_count(),
                (None, _) => true,
            };
            // This node holds no replica of it now (a reassignment moved it away): closed, and its
            // data deleted, as Kafka's StopReplica with deletion does; should the partition come
            // back here, it starts empty and fetches from its leader.
            let not_replicated_here =
                !gone && !metadata.topics[&topic].replicated_on(index, metadata.node_id);
            if !gone && !not_replicated_here {
                continue;
            }
            // Dropped without a deletion (the quorum took over without this node's topic): kept aside.
            let dropped = gone
                && previous
                    .topics
                    .get(&topic)
                    .is_some_and(|before| metadata.dropped_topics.contains(&before.id));
            let removed = self.partitions.borrow_mut().remove(&(topic.clone(), index));
            if let Some(partition) = removed {
                for listener in self.listeners() {
                    if gone && !dropped {
                        listener.deleted(&partition);
                    } else {
                        listener.unloaded(&partition);
                    }
                }
                self.delayed.high_watermark_moved(partition.key());
                partition.close().await;
                let dir = partition_dir(data_dir, &topic, index);
                if dropped {
                    set_aside(&dir);
                } else if gone {
                    deleted_dirs.push(dir);
                    tracing::info!(%topic, partition = index, "partition deleted");
                } else {
                    tracing::info!(%topic, partition = index, "partition no longer replicated here: deleting its replica");
                    deleted_dirs.push(dir);
                }
            }
        }
        // Partitions of a deleted topic this shard held without serving them (led elsewhere, or not
        // yet known after a start) leave their directories too.
        for (topic, before) in &previous.topics {
            if metadata
                .topics
                .get(topic)
                .is_some_and(|now| now.id == before.id)
            {
                continue;
            }
            for (index, &owner) in before.shards.iter().enumerate() {
                let dir = partition_dir(data_dir, topic, index as i32);
                // Only the gone topic's own directory (its recorded id), never another's at that path.
                let its_own = matches!(
                    crate::partition_dir::read_topic_id(&dir),
                    Ok(Some(id)) if id == before.id
                );
                if owner != shard || deleted_dirs.contains(&dir) || !its_own {
                    continue;
                }
                if metadata.dropped_topics.contains(&before.id) {
                    set_aside(&dir);
                } else {
                    tracing::info!(%topic, partition = index, "partition deleted (not served here)");
                    deleted_dirs.push(dir);
                }
            }
        }
        let marked = crate::partition_dir::mark_all_deleted(data_dir, &deleted_dirs);
        crate::partition_dir::remove_in_background(marked);
        let mut unopened = Vec::new();
        // Topic defaults in force: static settings under the dynamic broker configs.
        let defaults = self
            .resources
            .config
            .effective_log_defaults(metadata.dynamic_configs());
        let defaults_changed = metadata.broker_default_configs != previous.broker_default_configs
            || metadata.broker_configs != previous.broker_configs;
        for (topic, topic_metadata) in &metadata.topics {
            // An open partition takes its topic's new configuration at once (AlterConfigs).
            let configs_changed = defaults_changed
                || previous
                    .topics
                    .get(topic)
                    .is_none_or(|before| before.configs != topic_metadata.configs);
            let mut resolved = None;
            for (index, &owner) in topic_metadata.shards.iter().enumerate() {
                let index = index as i32;
                if owner != shard || !topic_metadata.replicated_on(index, metadata.node_id) {
                    continue;
                }
                if let Some(partition) = self.get(topic, index) {
                    self.apply_replica_state(metadata, &partition).await;
                    if configs_changed {
                        if resolved.is_none() {
                            resolved =
                                Some(TopicConfig::resolve(&defaults, &topic_metadata.configs));
                        }
                        match &resolved {
                            Some(Ok(config)) => partition.log.set_config(config.log.clone()),
                            Some(Err(error)) => {
                                tracing::error!(%topic, %error, "topic configs not applied")
                            }
                            None => {}
                        }
                    }
                    continue;
                }
                if let Err(error) = self.open(metadata, &defaults, topic, index).await {
                    tracing::error!(%topic, partition = index, %error, "cannot open partition");
                    unopened.push((topic.clone(), index));
                }
            }
        }
        self.generation.set(self.generation.get() + 1);
        unopened
    }

    async fn open(
        &self,
        metadata: &ClusterMetadata,
        defaults: &LogConfig,
        topic: &str,
        index: i32,
    ) -> Result<(), String> {
        let topic_metadata = &metadata.topics[topic];
        let resources = &self.resources;
        let config = TopicConfig::resolve(defaults, &topic_metadata.configs)?;
        let dir = partition_dir(&resources.config.data_dir, topic, index);
        claim_partition_dir(&dir, topic_metadata.id)?;
        let log = Log::open_with_file_pool(
            resources.files,
            dir,
            config.log,
            resources.cache.clone(),
            resources.segment_files.clone(),
            resources.clean_start,
        )
        .await
        .map_err(|error| error.to_string())?;
        tracing::debug!(%topic, partition = index, log_end_offset = log.log_end_offset().0, "partition open");
        let state = topic_metadata.partition_state(index, metadata.node_id);
        if state.as_ref().is_some_and(|state| state.replicas.len() > 1) {
            // What is committed is known only once the followers fetch (a leader) or the leader
            // says (a follower): until then nothing past the log start is offered to consumers.
            let start = log.log_start_offset();
            log.reset_high_watermark(start);
        }
        let partition = Rc::new(Partition::new(
            topic.to_string(),
            index,
            log,
            metadata.leader_epoch(topic, index),
            self.delayed.clone(),
        ));
        self.partitions
            .borrow_mut()
            .insert(partition.key().clone(), partition.clone());
        self.apply_replica_state(metadata, &partition).await;
        Ok(())
    }

    /// Adopts the metadata's leader, epochs and ISR for `partition` and acts on a change of role: a
    /// new leader starts its epoch in the log and tells the listeners it leads; a leader turned
    /// follower tells them it no longer serves, and its waiting operations re-check (a produce waiting
    /// for replicas then fails NOT_LEADER_OR_FOLLOWER). The high watermark is computed again either
    /// way (an ISR that shrank may let it advance).
    async fn apply_replica_state(&self, metadata: &ClusterMetadata, partition: &Rc<Partition>) {
        let Some(state) =
            metadata.topics[&partition.topic].partition_state(partition.index, metadata.node_id)
        else {
            return;
        };
        let epoch = storage::types::LeaderEpoch(state.leader_epoch);
        if epoch < partition.leader_epoch() {
            // An older version than the partition has seen (cannot happen: versions are applied in
            // order); ignored rather than going back.
            tracing::warn!(topic = %partition.topic, partition = partition.index, "metadata with an older leader epoch ignored");
            return;
        }
        // Becoming leader waits for a replica fetcher's apply in flight (it holds the lock), so a
        // follower's truncation or append never interleaves with the new leader's first writes.
        let _becoming_leader = if state.leader == metadata.node_id && !partition.is_leader() {
            Some(partition.replica_lock.lock().await)
        } else {
            None
        };
        let new_epoch = epoch > partition.leader_epoch();
        partition.set_leader_epoch(epoch);
        let change =
            partition.apply_replica_state(&state, metadata.node_id, shard::task::wall_clock_ms());
        match change {
            RoleChange::StillLeader if new_epoch => partition.start_leader_epoch().await,
            RoleChange::BecameLeader => {
                partition.start_leader_epoch().await;
                tracing::info!(topic = %partition.topic, partition = partition.index, leader_epoch = epoch.0, "leading partition");
                for listener in self.listeners() {
                    listener.became_leader(partition);
                }
            }
            RoleChange::BecameFollower => {
                tracing::info!(topic = %partition.topic, partition = partition.index, leader = state.leader, "following partition");
                for listener in self.listeners() {
                    listener.unloaded(partition);
                }
            }
            RoleChange::StillLeader | RoleChange::StillFollower => {}
        }
        partition.maybe_advance_high_watermark();
    }

    /// This shard's partitions that follow another broker, with the leader each follows.
    pub fn followers(&self) -> Vec<(i32, Rc<Partition>)> {
        self.partitions
            .borrow()
            .values()
            .filter_map(|partition| Some((partition.followed_leader()?, partition.clone())))
            .collect()
    }

    /// The ISR changes due on this shard's partitions at `now_ms` (see `Partition::isr_change_due`).
    pub fn isr_changes_due(
        &self,
        now_ms: i64,
        lag_ms: i64,
        is_live: impl Fn(i32) -> bool,
    ) -> Vec<(Rc<Partition>, IsrChange)> {
        self.all()
            .into_iter()
            .filter_map(|partition| {
                let change = partition.isr_change_due(now_ms, lag_ms, &is_live)?;
                Some((partition, change))
            })
            .collect()
    }

    /// Closes every partition of this shard (clean shutdown): flush, trim, snapshot.
    pub async fn close_all(&self) {
        let partitions: Vec<Rc<Partition>> = self
            .partitions
            .borrow_mut()
            .drain()
            .map(|(_, partition)| partition)
            .collect();
        for partition in &partitions {
            for listener in self.listeners() {
                listener.unloaded(partition);
            }
            self.delayed.high_watermark_moved(partition.key());
        }
        for partition in partitions {
            partition.close().await;
        }
    }

    /// Runs the time-based flush policy of every partition.
    pub async fn flush_if_due(&self, now_ms: i64) {
        for partition in self.all() {
            if let Err(error) = partition.log.flush_if_due(now_ms).await {
                tracing::error!(topic = %partition.topic, partition = partition.index, %error, "periodic flush failed");
            }
        }
    }
}

/// Moves the directory of a partition that left the metadata without a deletion aside (`-stray`),
/// where nothing serves or removes it: an operator decides.
fn set_aside(dir: &std::path::Path) {
    match crate::partition_dir::mark_stray(dir) {
        Ok(moved) => tracing::warn!(
            from = %dir.display(),
            to = %moved.display(),
            "partition dropped from the metadata without a deletion; its directory is kept aside"
        ),
        Err(error) => {
            tracing::warn!(dir = %dir.display(), %error, "cannot move a dropped partition's directory aside")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn borrowed_keys_find_what_owned_keys_stored() {
        let mut map: HashMap<TopicPartition, u32> = HashMap::new();
        for (index, topic) in ["a", "orders", "ordersX", ""].into_iter().enumerate() {
            map.insert((topic.to_string(), index as i32), index as u32);
        }
        for (index, topic) in ["a", "orders", "ordersX", ""].into_iter().enumerate() {
            let key = (topic, index as i32);
            assert_eq!(map.get(&key as &dyn PartitionKey), Some(&(index as u32)));
        }
        assert_eq!(map.get(&("orders", 0) as &dyn PartitionKey), None);
        assert_eq!(map.get(&("order", 1) as &dyn PartitionKey), None);
    }
}
