//! The partitions of one shard (Kafka's `ReplicaManager`, shard-local): opens, closes and deletes them as
//! metadata versions arrive, tells lifecycle listeners, and runs each request's items for this shard —
//! called directly for the local part of a request, from the mesh loop for a part another shard sent.
//!
//! Lifecycle: a partition placed on this shard by the metadata is opened and *becomes leader* (single
//! node: this shard leads every partition it owns; a later version with a newer leader epoch starts that
//! epoch in its history); one no longer placed here is *unloaded* (shutdown)
//! or *deleted* (its topic is gone). Listeners hear each event after the map changed — the group
//! coordinator starts or stops a coordinator for its internal topic's partitions this way, so this file
//! knows no topic by name.

use super::counters::PartitionCounters;
use super::delayed::{Completion, DelayedOperations, WatchedPartition};
use super::requests::{
    DeleteRecordsItem, DeleteRecordsOutcome, FetchItem, FetchOutcome, MarkerItem, MarkerOutcome,
    OffsetOutcome, OffsetQuery, ProduceItem, ProduceOutcome, ProducersOutcome, WaitItem,
};
use super::{Files, Partition, TopicPartition};
use crate::config::{BrokerConfig, TopicConfig};
use crate::metadata::{partition_dir, ClusterMetadata};
use crate::partition_dir::claim_partition_dir;
use futures_lite::future::poll_once;
use kafka_protocol::error::ResponseError;
use std::cell::RefCell;
use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::rc::Rc;
use std::sync::Arc;
use std::time::Duration;
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

type Pending<T> = Pin<Box<dyn Future<Output = T>>>;

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
    resources: PartitionResources,
    partitions: RefCell<HashMap<TopicPartition, Rc<Partition>>>,
    delayed: Rc<DelayedOperations>,
    listeners: RefCell<Vec<Rc<dyn PartitionListener>>>,
    counters: Rc<PartitionCounters>,
}

impl PartitionManager {
    pub fn new(resources: PartitionResources) -> PartitionManager {
        PartitionManager {
            resources,
            partitions: RefCell::default(),
            delayed: Rc::new(DelayedOperations::new()),
            listeners: RefCell::default(),
            counters: Rc::default(),
        }
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

    fn listeners(&self) -> Vec<Rc<dyn PartitionListener>> {
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
            // Another node leads it now (or none does): it is no longer served here, its data stays.
            let led_elsewhere = !gone && !metadata.topics[&topic].led_by(index, metadata.node_id);
            if !gone && !led_elsewhere {
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
                    tracing::info!(%topic, partition = index, "partition no longer led here");
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
                if owner != shard || !topic_metadata.led_by(index, metadata.node_id) {
                    continue;
                }
                if let Some(partition) = self.get(topic, index) {
                    // Still led here: a newer epoch (a leader change) starts at the current log end.
                    partition.become_leader(metadata.leader_epoch(topic, index));
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
        for listener in self.listeners() {
            listener.became_leader(&partition);
        }
        Ok(())
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

    /// Dispatch stage of a produce: assigns offsets to every item's batches, in order, and returns a
    /// future that completes once they are written (and, for acks=-1, replicated).
    pub async fn start_produce(&self, items: Vec<ProduceItem>) -> Pending<Vec<ProduceOutcome>> {
        let mut pending: Vec<Pending<ProduceOutcome>> = Vec::with_capacity(items.len());
        for item in items {
            let Some(partition) = self.get(&item.topic, item.partition) else {
                pending.push(Box::pin(std::future::ready(Err((
                    ResponseError::UnknownTopicOrPartition,
                    String::new(),
                )
                    .into()))));
                continue;
            };
            let bytes = item.records.len();
            let counters = self.counters.clone();
            let append = partition.clone().append(item.records);
            let mut append: Pending<ProduceOutcome> = Box::pin(async move {
                let outcome = append.await;
                match &outcome {
                    Ok(info) => counters.appended(bytes, info.record_count),
                    Err(_) => counters.append_refused(),
                }
                outcome
            });
            // Run the append up to its first suspension: offsets are assigned now, in request order.
            let appended = match poll_once(&mut append).await {
                Some(done) => Box::pin(std::future::ready(done)),
                None => append,
            };
            if item.acks == -1 {
                let delayed = self.delayed.clone();
                let counters = self.counters.clone();
                let deadline = shard::task::now() + item.timeout;
                pending.push(Box::pin(async move {
                    let info = appended.await?;
                    let required = Offset(info.last_offset.0 + 1);
                    let completion = delayed
                        .wait_for_replicas(&partition, required, deadline)
                        .await;
                    counters.delayed_produce(completion == Completion::Expired);
                    match completion {
                        Completion::Satisfied => Ok(info),
                        Completion::Expired => Err((
                            ResponseError::RequestTimedOut,
                            "the in-sync replicas did not get the records in time".to_string(),
                        )
                            .into()),
                    }
                }));
            } else {
                pending.push(appended);
            }
        }
        Box::pin(async move {
            let mut outcomes = Vec::with_capacity(pending.len());
            for append in pending {
                outcomes.push(append.await);
            }
            outcomes
        })
    }

    /// Reads for a fetch. `max_bytes` is the request's remaining total budget (soft: the first partition
    /// with data returns at least one whole batch, as KIP-74 asks).
    pub async fn read(&self, items: Vec<FetchItem>, mut max_bytes: usize) -> Vec<FetchOutcome> {
        let mut min_one = true;
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            let Some(partition) = self.get(&item.topic, item.partition) else {
                outcomes.push(FetchOutcome::failed(ResponseError::UnknownTopicOrPartition));
                continue;
            };
            let limit = item.partition_max_bytes.min(max_bytes);
            let outcome = partition
                .read(
                    Offset(item.fetch_offset),
                    limit,
                    min_one,
                    item.read_committed,
                )
                .await;
            self.counters.read(outcome.records_bytes());
            if !outcome.records.is_empty() {
                min_one = false;
                max_bytes = max_bytes.saturating_sub(outcome.records_bytes());
            }
            outcomes.push(outcome);
        }
        outcomes
    }

    /// Waits until any listed partition's high watermark (read_committed: last stable offset) passes the
    /// offset seen, or `max_wait` passes. Partitions not on this shard are left out; with none at all, it
    /// just waits out `max_wait`.
    pub async fn wait_for_data(&self, items: Vec<WaitItem>, max_wait: Duration) -> Completion {
        let deadline = shard::task::now() + max_wait;
        let partitions: Vec<_> = items
            .iter()
            .filter_map(|item| {
                let partition = self.get(&item.topic, item.partition)?;
                Some(WatchedPartition {
                    partition: Rc::downgrade(&partition),
                    key: partition.key().clone(),
                    seen: item.seen,
                    read_committed: item.read_committed,
                })
            })
            .collect();
        if partitions.is_empty() {
            shard::task::sleep_until(deadline).await;
            return Completion::Expired;
        }
        let completion = self.delayed.wait_for_data(partitions, deadline).await;
        self.counters
            .delayed_fetch(completion == Completion::Expired);
        completion
    }

    /// The log size in bytes of each partition (DescribeLogDirs); `None` where it is not open here.
    pub fn sizes(&self, items: &[TopicPartition]) -> Vec<Option<u64>> {
        let partitions = self.partitions.borrow();
        items
            .iter()
            .map(|key| {
                partitions
                    .get(key)
                    .map(|partition| partition.log.size_in_bytes())
            })
            .collect()
    }

    /// ListOffsets lookups.
    pub async fn list_offsets(&self, items: Vec<OffsetQuery>) -> Vec<OffsetOutcome> {
        let mut outcomes = Vec::with_capacity(items.len());
        for query in items {
            self.counters.offset_lookup();
            outcomes.push(match self.get(&query.topic, query.partition) {
                Some(partition) => {
                    partition
                        .offset_for(query.timestamp, query.read_committed)
                        .await
                }
                None => Err(ResponseError::UnknownTopicOrPartition),
            });
        }
        outcomes
    }

    /// DeleteRecords items, in order.
    pub async fn delete_records(&self, items: Vec<DeleteRecordsItem>) -> Vec<DeleteRecordsOutcome> {
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            outcomes.push(match self.get(&item.topic, item.partition) {
                Some(partition) => partition.delete_records(item.offset).await,
                None => Err(ResponseError::UnknownTopicOrPartition),
            });
        }
        outcomes
    }

    /// Writes transaction markers, in order, and tells the listeners of each one written.
    pub async fn write_markers(&self, items: Vec<MarkerItem>) -> Vec<MarkerOutcome> {
        let mut outcomes = Vec::with_capacity(items.len());
        for item in items {
            let Some(partition) = self.get(&item.topic, item.partition) else {
                outcomes.push(Err(ResponseError::UnknownTopicOrPartition));
                continue;
            };
            let outcome = partition.clone().write_marker(item.marker).await;
            if let Ok(offset) = outcome {
                for listener in self.listeners() {
                    listener.marker_written(&partition, &item.marker, offset);
                }
            }
            outcomes.push(outcome);
        }
        outcomes
    }

    /// The producers of each partition (DescribeProducers); NOT_LEADER_OR_FOLLOWER where the partition
    /// is not open here (Kafka's answer for a partition this broker does not lead).
    pub fn describe_producers(&self, items: &[TopicPartition]) -> Vec<ProducersOutcome> {
        items
            .iter()
            .map(|(topic, index)| match self.get(topic, *index) {
                Some(partition) => Ok(partition.active_producers()),
                None => Err(ResponseError::NotLeaderOrFollower),
            })
            .collect()
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
